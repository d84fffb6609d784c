//! One cluster node as the client sees it: a bounded pool of multiplexed
//! connections per mode, the requests in flight to it, and a circuit
//! breaker.
//!
//! The one thing not to get wrong: the breaker only steers choices; it
//! never hides an error. A request the breaker turns away fails as
//! *not sent*, which the retry loop may send elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cairn_proto::Frame;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cmd::encode_args;
use crate::conn::{Conn, ConnError, ConnLimits};

/// Whether a connection serves linearizable traffic or stale reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    ReadWrite,
    /// `READONLY`: reads served from the node's own copy.
    ReadOnly,
}

/// When a node's breaker opens and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BreakerPolicy {
    /// Consecutive failures that open a closed breaker.
    pub failures: u32,
    /// The first cool-down; each failed probe doubles it...
    pub cooldown_ms: u64,
    /// ...up to this.
    pub cooldown_ms_max: u64,
}

/// A circuit breaker: closed, open until a moment, or half-open with at
/// most one probe in flight.
///
/// `failures` consecutive failures open it for a cool-down. When the
/// cool-down is over the breaker admits exactly one request, the probe;
/// everyone else is turned away until the probe ends. A successful probe
/// closes the breaker; a failed one reopens it for twice the previous
/// cool-down (capped). A probe dropped before its outcome is known (its
/// caller gave up) frees the probe slot for the next request.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    state: std::sync::Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    /// Consecutive failures while closed.
    failures: u32,
    /// Open (or half-open) since the last close.
    open: bool,
    /// While open: no request before this moment.
    open_until_ms: u64,
    /// The cool-down in force (0 until the breaker first opens).
    cooldown_ms: u64,
    /// Half-open: the one probe is out.
    probing: bool,
}

/// Leave to send one request through a breaker; report the outcome with
/// [`Permit::finish`]. A probe dropped unfinished frees the probe slot.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    finished: bool,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request could be admitted now: closed, or half-open
    /// with the probe slot free. Steers choices; [`admit`](Self::admit)
    /// decides.
    pub(crate) fn allows(&self, now_ms: u64) -> bool {
        let s = self.state();
        !s.open || (now_ms >= s.open_until_ms && !s.probing)
    }

    /// Admits one request, or `None` when the breaker is open or its one
    /// probe is already out.
    pub(crate) fn admit(&self, now_ms: u64) -> Option<Permit<'_>> {
        let mut s = self.state();
        let probe = if !s.open {
            false
        } else if now_ms >= s.open_until_ms && !s.probing {
            s.probing = true;
            true
        } else {
            return None;
        };
        Some(Permit {
            breaker: self,
            probe,
            finished: false,
        })
    }

    fn record(&self, probe: bool, ok: bool, now_ms: u64, p: &BreakerPolicy) {
        let mut s = self.state();
        match (probe, ok) {
            (true, true) => *s = BreakerState::default(),
            (true, false) => {
                s.probing = false;
                s.cooldown_ms = s
                    .cooldown_ms
                    .saturating_mul(2)
                    .clamp(p.cooldown_ms, p.cooldown_ms_max.max(p.cooldown_ms));
                s.open_until_ms = now_ms.saturating_add(s.cooldown_ms);
            }
            // Sent while closed. Once open, only the probe decides: a
            // late answer to a request sent before the opening proves
            // little about the node now, and a late failure must not
            // push the cool-down further.
            (false, _) if s.open => {}
            (false, true) => s.failures = 0,
            (false, false) => {
                s.failures = s.failures.saturating_add(1);
                if s.failures >= p.failures.max(1) {
                    s.open = true;
                    s.cooldown_ms = p.cooldown_ms;
                    s.open_until_ms = now_ms.saturating_add(p.cooldown_ms);
                }
            }
        }
    }
}

impl Permit<'_> {
    /// Whether this request is the half-open breaker's probe.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records the request's outcome: `ok` when the node answered.
    pub(crate) fn finish(mut self, ok: bool, now_ms: u64, policy: &BreakerPolicy) {
        self.finished = true;
        self.breaker.record(self.probe, ok, now_ms, policy);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.finished {
            self.breaker.state().probing = false;
        }
    }
}

/// Connections of one mode: `size` slots, each connected lazily and
/// replaced when its task has ended.
#[derive(Debug)]
struct Pool {
    slots: Box<[Mutex<Option<Conn>>]>,
    next: AtomicUsize,
    mode: Mode,
}

impl Pool {
    fn new(size: usize, mode: Mode) -> Pool {
        Pool {
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            mode,
        }
    }

    async fn get(&self, addr: &str, limits: &ConnLimits) -> Result<Conn, String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let (c, replies) = Conn::connect(addr, limits, &handshake(self.mode)).await?;
        // CLUSTER SLOTS may fail (a standalone server); READONLY must not
        // fail on a cluster node, or reads would not be what was asked.
        if let (Mode::ReadOnly, Some(Frame::Error(e))) = (self.mode, replies.get(1)) {
            if !e.ends_with(b"cluster support disabled") {
                return Err(format!("READONLY refused: {}", String::from_utf8_lossy(e)));
            }
        }
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// What a new connection sends first: `CLUSTER SLOTS` makes cairn treat
/// it as cluster-aware (it answers `-MOVED` rather than proxying a
/// request for a group led elsewhere), `READONLY` allows stale reads.
fn handshake(mode: Mode) -> Vec<Bytes> {
    let mut out = vec![encoded(&[b"CLUSTER", b"SLOTS"])];
    if mode == Mode::ReadOnly {
        out.push(encoded(&[b"READONLY"]));
    }
    out
}

pub(crate) fn encoded(args: &[&[u8]]) -> Bytes {
    let mut v = Vec::new();
    encode_args(&mut v, args.iter().copied());
    Bytes::from(v)
}

/// The load a node last reported and, for a running total, the sample
/// the next rate is measured from.
#[derive(Debug, Default)]
pub(crate) struct LoadReport {
    value: Option<f64>,
    last: Option<(u64, Instant)>,
}

impl LoadReport {
    /// Takes one reading: the figure itself, or for a `counter` the rate
    /// per second since the previous reading (none yet after the first,
    /// or when the counter went back: the node restarted).
    pub(crate) fn update(&mut self, counter: bool, raw: u64, at: Instant) {
        if !counter {
            self.value = Some(raw as f64);
            return;
        }
        if let Some((prev, t)) = self.last {
            let secs = at.saturating_duration_since(t).as_secs_f64();
            if raw >= prev && secs > 0.0 {
                self.value = Some((raw - prev) as f64 / secs);
            }
        }
        self.last = Some((raw, at));
    }

    pub(crate) fn value(&self) -> Option<f64> {
        self.value
    }
}

#[derive(Debug)]
pub(crate) struct Node {
    pub addr: Arc<str>,
    rw: Pool,
    ro: Pool,
    outstanding: AtomicUsize,
    pub breaker: Breaker,
    breaker_policy: BreakerPolicy,
    /// Only kept when the strategy asks for server-reported load.
    pub load: std::sync::Mutex<LoadReport>,
    /// The client's clock origin: breaker times are milliseconds since.
    epoch: Instant,
}

/// The error of a request the breaker turned away (never sent).
pub(crate) const BREAKER_OPEN: &str = "circuit breaker open";

/// Counts a request as outstanding on its node while alive.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Node {
    pub(crate) fn new(
        addr: Arc<str>,
        pool_size: usize,
        breaker_policy: BreakerPolicy,
        epoch: Instant,
    ) -> Node {
        Node {
            addr,
            rw: Pool::new(pool_size, Mode::ReadWrite),
            ro: Pool::new(pool_size, Mode::ReadOnly),
            outstanding: AtomicUsize::new(0),
            breaker: Breaker::default(),
            breaker_policy,
            load: std::sync::Mutex::default(),
            epoch,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn server_load(&self) -> Option<f64> {
        self.load.lock().unwrap_or_else(|e| e.into_inner()).value()
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Sends `bytes` on a pooled connection of `mode` and waits for the
    /// reply until `deadline`, if the node's breaker admits it; the
    /// outcome feeds the breaker (any reply, error replies included,
    /// proves the node alive).
    pub(crate) async fn call(
        &self,
        bytes: Bytes,
        mode: Mode,
        limits: &ConnLimits,
        deadline: Instant,
    ) -> Result<Frame, ConnError> {
        let Some(permit) = self.breaker.admit(self.now_ms()) else {
            return Err(ConnError::NotSent(BREAKER_OPEN.into()));
        };
        let r = self.send(bytes, mode, limits, deadline).await;
        permit.finish(r.is_ok(), self.now_ms(), &self.breaker_policy);
        r
    }

    async fn send(
        &self,
        bytes: Bytes,
        mode: Mode,
        limits: &ConnLimits,
        deadline: Instant,
    ) -> Result<Frame, ConnError> {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(&self.outstanding);
        let pool = match mode {
            Mode::ReadWrite => &self.rw,
            Mode::ReadOnly => &self.ro,
        };
        let conn = match tokio::time::timeout_at(deadline, pool.get(&self.addr, limits)).await {
            Err(_) => {
                return Err(ConnError::NotSent(
                    "no connection before the deadline".into(),
                ))
            }
            Ok(Err(e)) => return Err(ConnError::NotSent(e)),
            Ok(Ok(c)) => c,
        };
        conn.call(bytes, deadline).await
    }

    /// A connection of its own, not pooled: for a command that blocks its
    /// connection (`LOCK.ACQUIRE ... WAIT`).
    pub(crate) async fn dedicated(&self, limits: &ConnLimits) -> Result<Conn, String> {
        Conn::connect(&self.addr, limits, &handshake(Mode::ReadWrite))
            .await
            .map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{Notify, Semaphore};

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        cooldown_ms: 1000,
        cooldown_ms_max: 3000,
    };

    fn fail(b: &Breaker, now: u64) {
        b.admit(now).expect("admitted").finish(false, now, &POLICY);
    }

    /// Opens `b` at `now` (three failures while closed).
    fn open(b: &Breaker, now: u64) {
        for _ in 0..3 {
            fail(b, now);
        }
    }

    #[test]
    fn a_counter_report_becomes_a_rate_between_two_readings() {
        let t0 = Instant::now();
        let mut r = LoadReport::default();
        r.update(true, 1000, t0);
        assert_eq!(r.value(), None, "one reading is no rate");
        r.update(true, 1500, t0 + Duration::from_millis(500));
        assert_eq!(r.value(), Some(1000.0));
        // A restarted node's counter goes back: keep the old figure,
        // measure from the new baseline.
        r.update(true, 10, t0 + Duration::from_secs(1));
        assert_eq!(r.value(), Some(1000.0));
        r.update(true, 110, t0 + Duration::from_secs(2));
        assert_eq!(r.value(), Some(100.0));
        let mut g = LoadReport::default();
        g.update(false, 42, t0);
        assert_eq!(g.value(), Some(42.0), "a gauge is taken as is");
    }

    #[test]
    fn breaker_opens_after_threshold_failures_for_the_cooldown() {
        let b = Breaker::default();
        fail(&b, 100);
        fail(&b, 100);
        assert!(b.allows(100), "two failures of three");
        b.admit(100).expect("closed").finish(true, 100, &POLICY);
        fail(&b, 100);
        fail(&b, 100);
        assert!(b.allows(100), "the count starts again after a success");
        fail(&b, 100);
        assert!(!b.allows(100) && !b.allows(1099));
        assert!(b.admit(1099).is_none(), "still cooling down");
        assert!(b.allows(1100), "cool-down over");
    }

    #[test]
    fn half_open_breaker_admits_exactly_one_probe() {
        let b = Breaker::default();
        open(&b, 0);
        let probe = b.admit(1000).expect("the probe");
        assert!(probe.is_probe());
        for t in [1000, 1001, 5000] {
            assert!(
                b.admit(t).is_none(),
                "a second request at {t} while probing"
            );
            assert!(!b.allows(t), "steered away while probing");
        }
        probe.finish(true, 1010, &POLICY);
        // Closed: everyone is admitted, none of them a probe.
        let permits: Vec<_> = (0..5).map(|_| b.admit(1010).expect("closed")).collect();
        assert!(permits.iter().all(|p| !p.is_probe()));
    }

    #[test]
    fn a_failed_probe_reopens_for_a_growing_capped_cooldown() {
        let b = Breaker::default();
        open(&b, 0);
        // Cool-downs after each failed probe: 2 s, then 3 s (the cap), 3 s.
        let mut t = 1000;
        for cooldown in [2000, 3000, 3000] {
            b.admit(t).expect("probe").finish(false, t, &POLICY);
            assert!(b.admit(t + cooldown - 1).is_none(), "reopened at {t}");
            t += cooldown;
            assert!(b.allows(t), "half-open again at {t}");
        }
        // A success resets the cool-down to the first one.
        b.admit(t).expect("probe").finish(true, t, &POLICY);
        open(&b, t);
        assert!(b.admit(t + 999).is_none() && b.allows(t + 1000));
    }

    #[test]
    fn a_probe_dropped_unfinished_frees_the_probe_slot() {
        let b = Breaker::default();
        open(&b, 0);
        drop(b.admit(1000).expect("probe"));
        let again = b.admit(1000).expect("the slot is free again");
        assert!(
            again.is_probe(),
            "still half-open: the dropped probe proved nothing"
        );
    }

    #[test]
    fn answers_to_requests_sent_before_the_opening_do_not_decide() {
        let b = Breaker::default();
        let early: Vec<_> = (0..2).map(|_| b.admit(0).expect("closed")).collect();
        open(&b, 0);
        let mut early = early.into_iter();
        early.next().expect("one").finish(true, 10, &POLICY);
        assert!(!b.allows(10), "a late success does not close it");
        early.next().expect("two").finish(false, 900, &POLICY);
        assert!(
            b.allows(1000),
            "a late failure does not extend the cool-down"
        );
    }

    /// A node that answers `PING` only when the test adds a permit to
    /// `release`, counting the PINGs that arrive and signalling each.
    struct HeldServer {
        addr: String,
        pings: Arc<AtomicUsize>,
        arrived: Arc<Notify>,
        release: Arc<Semaphore>,
    }

    async fn held_server() -> HeldServer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let (pings, arrived, release) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Notify::new()),
            Arc::new(Semaphore::new(0)),
        );
        let srv = (pings.clone(), arrived.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (pings, arrived, release) = srv.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Ok(Some((Frame::Array(parts), used))) =
                            Frame::decode(&buf, 1 << 20)
                        {
                            buf.drain(..used);
                            let reply: &[u8] =
                                if parts.first() == Some(&Frame::Bulk(b"PING".to_vec())) {
                                    pings.fetch_add(1, Ordering::SeqCst);
                                    arrived.notify_one();
                                    let Ok(p) = release.acquire().await else {
                                        return;
                                    };
                                    p.forget();
                                    b"+PONG\r\n"
                                } else {
                                    b"-ERR This instance has cluster support disabled\r\n"
                                };
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        HeldServer {
            addr,
            pings,
            arrived,
            release,
        }
    }

    fn limits() -> ConnLimits {
        ConnLimits {
            connect_timeout: Duration::from_secs(5),
            inflight_max: 16,
            queue_max: 16,
            write_buffer_max: 1 << 16,
            reply_len_max: 1 << 20,
        }
    }

    #[tokio::test]
    async fn after_the_cooldown_only_one_of_many_concurrent_requests_reaches_the_node() {
        let srv = held_server().await;
        // No cool-down: the breaker is half-open as soon as it opens.
        let policy = BreakerPolicy {
            failures: 1,
            cooldown_ms: 0,
            cooldown_ms_max: 0,
        };
        let node = Arc::new(Node::new(
            srv.addr.as_str().into(),
            2,
            policy,
            Instant::now(),
        ));
        node.breaker
            .admit(0)
            .expect("closed")
            .finish(false, 0, &policy);
        assert!(node.breaker.allows(node.now_ms()), "half-open");

        let deadline = Instant::now() + Duration::from_secs(30);
        let call = |n: Arc<Node>| async move {
            n.call(encoded(&[b"PING"]), Mode::ReadWrite, &limits(), deadline)
                .await
        };
        let probe = tokio::spawn(call(node.clone()));
        // Bounded: the test fails rather than hangs if the probe never arrives.
        tokio::time::timeout(Duration::from_secs(10), srv.arrived.notified())
            .await
            .expect("the probe reached the node");
        let mut others = Vec::new();
        for _ in 0..10 {
            others.push(tokio::spawn(call(node.clone())));
        }
        for o in others {
            let r = o.await.expect("task");
            assert_eq!(r, Err(ConnError::NotSent(BREAKER_OPEN.into())));
        }
        assert_eq!(
            srv.pings.load(Ordering::SeqCst),
            1,
            "only the probe reached the node"
        );

        srv.release.add_permits(1);
        assert_eq!(
            probe.await.expect("task"),
            Ok(Frame::Simple(b"PONG".to_vec()))
        );
        // The probe succeeded: closed, every request flows again.
        srv.release.add_permits(5);
        let mut after = Vec::new();
        for _ in 0..5 {
            after.push(tokio::spawn(call(node.clone())));
        }
        for a in after {
            assert!(a.await.expect("task").is_ok());
        }
        assert_eq!(srv.pings.load(Ordering::SeqCst), 6);
    }
}
