//! Load balancing: which node serves a request when more than one could
//! (a stale read among a group's replicas, a keyless command, bootstrap).
//!
//! The one thing not to get wrong: a strategy only ever sees nodes the
//! client may use (open circuit breakers are filtered out first), and its
//! answer is clamped to the candidates, so a buggy custom strategy can
//! skew load but never index out of bounds.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One node a request could go to, as a strategy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    addr: &'a str,
    outstanding: usize,
    server_load: Option<f64>,
}

impl<'a> Candidate<'a> {
    /// A candidate; public so custom strategies can be tested alone.
    pub fn new(addr: &'a str, outstanding: usize) -> Candidate<'a> {
        Candidate {
            addr,
            outstanding,
            server_load: None,
        }
    }

    /// The same candidate with a server-reported load.
    pub fn with_server_load(mut self, load: f64) -> Candidate<'a> {
        self.server_load = Some(load);
        self
    }

    /// The load the node last reported, in the unit of the strategy's
    /// [`LoadBalance::server_load`] signal; `None` until a report
    /// arrived (or when the strategy asks for none).
    pub fn server_load(&self) -> Option<f64> {
        self.server_load
    }

    /// The node's address, `host:port`.
    pub fn addr(&self) -> &'a str {
        self.addr
    }

    /// Requests this client has sent to the node and not yet seen answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

/// Picks one of several candidate nodes. Implement it for a custom
/// strategy and pass it to
/// [`ClientConfig::strategy`](crate::ClientConfig::strategy).
///
/// `candidates` is never empty; return an index into it. Called on the
/// request path, so it should be quick and must not block.
pub trait LoadBalance: Send + Sync + Debug + 'static {
    /// The index of the chosen candidate.
    fn pick(&self, candidates: &[Candidate<'_>]) -> usize;

    /// The load figure this strategy wants the client to read from each
    /// node (every [`ClientConfig::server_load_interval`]), handed back in
    /// [`Candidate::server_load`]. `None` (the default): no polling.
    ///
    /// [`ClientConfig::server_load_interval`]: crate::ClientConfig::server_load_interval
    fn server_load(&self) -> Option<LoadSignal> {
        None
    }
}

/// A load figure cairn reports in `INFO`, read with one small request per
/// node per interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadSignal {
    /// `connected_clients` from `INFO clients`: connections open on the
    /// node now (every client's, idle ones included).
    ConnectedClients,
    /// `total_commands_processed` from `INFO stats`, as a rate: commands
    /// per second between the last two reports (all clients').
    CommandsPerSecond,
}

impl LoadSignal {
    /// The `INFO` section and field that carry the figure.
    pub(crate) fn info_field(self) -> (&'static str, &'static str) {
        match self {
            LoadSignal::ConnectedClients => ("clients", "connected_clients"),
            LoadSignal::CommandsPerSecond => ("stats", "total_commands_processed"),
        }
    }

    /// Whether the field is a running total to turn into a rate.
    pub(crate) fn is_counter(self) -> bool {
        matches!(self, LoadSignal::CommandsPerSecond)
    }
}

/// Uniformly random.
// Non-exhaustive so settings (a seed, say) can be added without a
// breaking change: build with `Random::default()`.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Random;

impl LoadBalance for Random {
    fn pick(&self, candidates: &[Candidate<'_>]) -> usize {
        fastrand::usize(..candidates.len())
    }
}

/// Each candidate in turn. With a changing candidate list the rotation
/// continues from the counter, so no node is favoured.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl LoadBalance for RoundRobin {
    fn pick(&self, candidates: &[Candidate<'_>]) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

/// Random in proportion to weights: static ones by address, or derived
/// from the load each node reports ([`Weighted::by_server_load`]).
///
/// Static: nodes not named get `default_weight`; a node of weight 0 is
/// picked only when every candidate weighs 0 (then uniformly).
#[derive(Debug)]
pub struct Weighted {
    weights: HashMap<String, u32>,
    default_weight: u32,
    signal: Option<LoadSignal>,
}

/// In server-load mode no node weighs less than this share of the
/// lightest-loaded candidate's weight: it keeps taking a little traffic,
/// and clients that all see the same idle node do not all stampede to it.
pub const SERVER_LOAD_WEIGHT_FLOOR: f64 = 0.1;

impl Weighted {
    /// Weights by `host:port`; unnamed nodes weigh 1.
    pub fn new<I, S>(weights: I) -> Weighted
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        Weighted {
            weights: weights.into_iter().map(|(a, w)| (a.into(), w)).collect(),
            default_weight: 1,
            signal: None,
        }
    }

    /// Weights from the load each node reports, refreshed by the client
    /// every [`ClientConfig::server_load_interval`] (one `INFO` request
    /// per node). A node reporting load `L` weighs `1 / (1 + L)`, but no
    /// less than [`SERVER_LOAD_WEIGHT_FLOOR`] × the largest candidate
    /// weight; a node with no report yet weighs the mean of those with
    /// one (all equal when none has reported).
    ///
    /// [`ClientConfig::server_load_interval`]: crate::ClientConfig::server_load_interval
    pub fn by_server_load(signal: LoadSignal) -> Weighted {
        Weighted {
            signal: Some(signal),
            ..Weighted::new(std::iter::empty::<(String, u32)>())
        }
    }

    /// The weight of nodes the map does not name.
    pub fn default_weight(mut self, w: u32) -> Weighted {
        self.default_weight = w;
        self
    }

    fn weight(&self, addr: &str) -> u64 {
        u64::from(*self.weights.get(addr).unwrap_or(&self.default_weight))
    }
}

/// Weights by `1 / (1 + load)`, floored and with unknown loads at the
/// mean, as [`Weighted::by_server_load`] documents.
pub(crate) fn load_weights(candidates: &[Candidate<'_>]) -> Vec<f64> {
    let raw: Vec<Option<f64>> = candidates
        .iter()
        .map(|c| c.server_load.map(|l| 1.0 / (1.0 + l.max(0.0))))
        .collect();
    let known: Vec<f64> = raw.iter().flatten().copied().collect();
    let mean = if known.is_empty() {
        1.0
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    let w: Vec<f64> = raw.iter().map(|r| r.unwrap_or(mean)).collect();
    let floor = w.iter().copied().fold(0.0, f64::max) * SERVER_LOAD_WEIGHT_FLOOR;
    w.into_iter().map(|x| x.max(floor)).collect()
}

fn pick_by(weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return fastrand::usize(..weights.len());
    }
    let mut r = fastrand::f64() * total;
    for (i, w) in weights.iter().enumerate() {
        if r < *w {
            return i;
        }
        r -= w;
    }
    weights.len() - 1
}

impl LoadBalance for Weighted {
    fn server_load(&self) -> Option<LoadSignal> {
        self.signal
    }

    fn pick(&self, candidates: &[Candidate<'_>]) -> usize {
        if self.signal.is_some() {
            return pick_by(&load_weights(candidates));
        }
        let total: u64 = candidates.iter().map(|c| self.weight(c.addr)).sum();
        if total == 0 {
            return fastrand::usize(..candidates.len());
        }
        let mut r = fastrand::u64(..total);
        for (i, c) in candidates.iter().enumerate() {
            let w = self.weight(c.addr);
            if r < w {
                return i;
            }
            r -= w;
        }
        candidates.len() - 1
    }
}

/// Least outstanding requests by the power of two choices: two distinct
/// random candidates, the one with fewer requests in flight wins (the
/// first drawn on a tie, itself a uniform draw). Nearly as even as
/// always taking the global minimum, without every client herding onto
/// the same idle node.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct LeastOutstanding;

impl LoadBalance for LeastOutstanding {
    fn pick(&self, candidates: &[Candidate<'_>]) -> usize {
        let n = candidates.len();
        if n < 2 {
            return 0;
        }
        let i = fastrand::usize(..n);
        let mut j = fastrand::usize(..n - 1);
        if j >= i {
            j += 1;
        }
        if candidates[j].outstanding < candidates[i].outstanding {
            j
        } else {
            i
        }
    }
}

/// Asks `strategy` and keeps the answer within the candidates.
pub(crate) fn choose(strategy: &dyn LoadBalance, candidates: &[Candidate<'_>]) -> usize {
    debug_assert!(!candidates.is_empty());
    strategy.pick(candidates).min(candidates.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHOICES: usize = 100_000;
    const ADDRS: [&str; 3] = ["a:1", "b:2", "c:3"];

    /// Shares of `CHOICES` picks among candidates with the given
    /// outstanding counts, from a fixed seed.
    fn shares(s: &dyn LoadBalance, outstanding: [usize; 3]) -> [f64; 3] {
        fastrand::seed(7);
        let cands: Vec<Candidate> = ADDRS
            .iter()
            .zip(outstanding)
            .map(|(a, o)| Candidate::new(a, o))
            .collect();
        let mut counts = [0usize; 3];
        for _ in 0..CHOICES {
            counts[choose(s, &cands)] += 1;
        }
        counts.map(|c| c as f64 / CHOICES as f64)
    }

    fn assert_within_2pp(name: &str, got: [f64; 3], want: [f64; 3]) {
        println!("{name}: measured {got:.4?}, target {want:.4?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 0.02, "{name}: {got:?} vs target {want:?}");
        }
    }

    const THIRD: f64 = 1.0 / 3.0;

    #[test]
    fn random_spreads_evenly() {
        assert_within_2pp("random", shares(&Random, [0; 3]), [THIRD; 3]);
    }

    #[test]
    fn round_robin_spreads_evenly() {
        let got = shares(&RoundRobin::default(), [0; 3]);
        assert_within_2pp("round-robin", got, [THIRD; 3]);
        // Strict rotation: no candidate gets two turns more than another.
        let spread =
            got.iter().cloned().fold(0.0, f64::max) - got.iter().cloned().fold(1.0, f64::min);
        assert!(spread * CHOICES as f64 <= 1.5, "{got:?}");
    }

    #[test]
    fn weighted_follows_weights_1_2_3() {
        let w = Weighted::new([("a:1", 1), ("b:2", 2), ("c:3", 3)]);
        assert_within_2pp(
            "weighted 1:2:3",
            shares(&w, [0; 3]),
            [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0],
        );
    }

    #[test]
    fn weighted_skips_weight_zero_and_defaults_the_rest() {
        let w = Weighted::new([("a:1", 0)]).default_weight(1);
        assert_within_2pp("weighted 0:1:1", shares(&w, [0; 3]), [0.0, 0.5, 0.5]);
        let none = Weighted::new([("a:1", 0), ("b:2", 0), ("c:3", 0)]);
        assert_within_2pp("weighted all 0", shares(&none, [0; 3]), [THIRD; 3]);
    }

    fn load_shares(loads: [Option<f64>; 3]) -> [f64; 3] {
        fastrand::seed(3);
        let s = Weighted::by_server_load(LoadSignal::ConnectedClients);
        let cands: Vec<Candidate> = ADDRS
            .iter()
            .zip(loads)
            .map(|(a, l)| match l {
                Some(l) => Candidate::new(a, 0).with_server_load(l),
                None => Candidate::new(a, 0),
            })
            .collect();
        let mut counts = [0usize; 3];
        for _ in 0..CHOICES {
            counts[choose(&s, &cands)] += 1;
        }
        counts.map(|c| c as f64 / CHOICES as f64)
    }

    #[test]
    fn server_load_weights_are_inverse_to_load_and_floored() {
        // Weights 1/1, 1/4, 1/101 → floored at 0.1: 1 : 0.25 : 0.1.
        let got = load_shares([Some(0.0), Some(3.0), Some(100.0)]);
        assert_within_2pp(
            "server load 0/3/100",
            got,
            [1.0 / 1.35, 0.25 / 1.35, 0.1 / 1.35],
        );
        // Equal loads: equal shares, whatever the level.
        let got = load_shares([Some(50.0); 3]);
        assert_within_2pp("server load equal", got, [THIRD; 3]);
    }

    #[test]
    fn a_node_without_a_report_weighs_the_mean_of_those_with_one() {
        // Known weights 1/2 and 1/8, mean 5/16 for the silent node.
        let got = load_shares([Some(1.0), Some(7.0), None]);
        let t = 0.5 + 0.125 + 0.3125;
        assert_within_2pp("server load 1/7/?", got, [0.5 / t, 0.125 / t, 0.3125 / t]);
        assert_within_2pp("no reports at all", load_shares([None; 3]), [THIRD; 3]);
    }

    #[test]
    fn only_server_load_mode_asks_for_polling() {
        assert_eq!(LoadBalance::server_load(&Weighted::new([("a:1", 1)])), None);
        let s = Weighted::by_server_load(LoadSignal::CommandsPerSecond);
        assert_eq!(
            LoadBalance::server_load(&s),
            Some(LoadSignal::CommandsPerSecond)
        );
        assert_eq!(LoadBalance::server_load(&LeastOutstanding), None);
    }

    #[test]
    fn least_outstanding_is_even_when_loads_are_equal() {
        assert_within_2pp(
            "least-outstanding equal",
            shares(&LeastOutstanding, [4; 3]),
            [THIRD; 3],
        );
    }

    #[test]
    fn least_outstanding_prefers_less_loaded_nodes() {
        // Two distinct random picks of three: the idle node is in 2/3 of
        // the pairs, the middle one wins only against the busiest (1/3),
        // the busiest never.
        let got = shares(&LeastOutstanding, [0, 5, 10]);
        assert_within_2pp("least-outstanding 0/5/10", got, [2.0 / 3.0, THIRD, 0.0]);
    }

    /// Replays a discrete load: each step one request arrives, node `i`
    /// finishes one request every `every[i]` steps. Returns each node's
    /// share of the requests.
    fn simulate(s: &dyn LoadBalance, every: [usize; 3], steps: usize) -> [f64; 3] {
        fastrand::seed(11);
        let mut queue = [0usize; 3];
        let mut sent = [0usize; 3];
        for t in 1..=steps {
            let cands: Vec<Candidate> = ADDRS
                .iter()
                .zip(queue)
                .map(|(a, o)| Candidate::new(a, o))
                .collect();
            let i = choose(s, &cands);
            queue[i] += 1;
            sent[i] += 1;
            for (q, e) in queue.iter_mut().zip(every) {
                if t % e == 0 {
                    *q = q.saturating_sub(1);
                }
            }
        }
        sent.map(|c| c as f64 / steps as f64)
    }

    #[test]
    fn least_outstanding_moves_load_away_from_a_slow_node() {
        // Nodes a and b finish a request per step, c one per 10 steps:
        // capacity 2.1 per step for 1 arrival, so only c can fall behind.
        let lo = simulate(&LeastOutstanding, [1, 1, 10], CHOICES);
        let rr = simulate(&RoundRobin::default(), [1, 1, 10], CHOICES);
        println!("slow node c: least-outstanding {lo:.3?}, round-robin {rr:.3?}");
        assert!(
            (rr[2] - THIRD).abs() < 0.01,
            "round-robin is blind to load: {rr:?}"
        );
        // c can serve at most a tenth of the requests before its queue
        // grows; least-outstanding keeps it near that.
        assert!(lo[2] < 0.15, "slow node kept too much load: {lo:?}");
    }

    #[derive(Debug)]
    struct OutOfRange;
    impl LoadBalance for OutOfRange {
        fn pick(&self, _: &[Candidate<'_>]) -> usize {
            usize::MAX
        }
    }

    #[test]
    fn a_custom_strategy_out_of_range_is_clamped() {
        let c = [Candidate::new("a:1", 0), Candidate::new("b:2", 0)];
        assert_eq!(choose(&OutOfRange, &c), 1);
    }
}
