//! Linearizability checking: Wing–Gong search with Lowe's just-in-time
//! linearization and memoization, split per key (P-compositionality).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::history::{History, HistoryError, Op, Outcome};
use crate::model::Model;

/// Errors from [`check`]: the history is malformed or does not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The history failed [`History::validate`].
    #[error(transparent)]
    History(#[from] HistoryError),
    /// An op the model does not know (e.g. a set op under [`crate::Register`]).
    #[error("op {index} on key {key:?}: the {model} model does not support {call:?}")]
    Unsupported {
        /// Index of the op.
        index: usize,
        /// Its key.
        key: String,
        /// The model's name.
        model: &'static str,
        /// The call.
        call: crate::history::Call,
    },
}

/// How much search one key may use before its result is
/// [`KeyResult::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Maximum search steps (model applications and backtracks) per key.
    /// Memory grows with it: each step may memoize one (bitset, state)
    /// pair of about `ops / 8` bytes plus the state.
    pub max_steps: u64,
    /// Maximum wall time per key.
    pub max_time: Option<Duration>,
}

impl Default for Budget {
    /// One million steps and 30 s per key.
    fn default() -> Self {
        Budget {
            max_steps: 1_000_000,
            max_time: Some(Duration::from_secs(30)),
        }
    }
}

impl Budget {
    /// A budget of `max_steps` steps and no time limit (deterministic).
    pub fn steps(max_steps: u64) -> Budget {
        Budget {
            max_steps,
            max_time: None,
        }
    }
}

/// The overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every key is linearizable.
    Linearizable,
    /// At least one key is not.
    NotLinearizable,
    /// No key is proven non-linearizable, but at least one ran out of budget.
    Unknown,
}

/// Why a key's search stopped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum UnknownReason {
    /// [`Budget::max_steps`] was reached.
    Steps,
    /// [`Budget::max_time`] was reached.
    Time,
}

/// Evidence that a key is not linearizable. Indices refer to
/// [`History::ops`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Witness {
    /// The longest sequence of ops the search could linearize, in
    /// linearization order.
    pub longest_prefix: Vec<usize>,
    /// The model state after that prefix (`Debug` rendering).
    pub state_after_prefix: String,
    /// The op whose completion was reached with no way to linearize it
    /// after that prefix (the search's dead end).
    pub stuck_op: usize,
    /// The ops invoked before `stuck_op` completed that were not in the
    /// prefix (the stuck op included): the candidates the search tried to
    /// place next. Together with the prefix this is the part of the history
    /// that matters.
    pub candidates: Vec<usize>,
}

impl Witness {
    /// A human-readable rendering against the checked history.
    pub fn describe(&self, history: &History) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let show = |s: &mut String, i: usize| {
            if let Some(op) = history.ops.get(i) {
                let _ = writeln!(
                    s,
                    "    #{i} p{} {:?} [{}, {}] -> {:?}",
                    op.process,
                    op.call,
                    op.invoke_ns,
                    op.complete_ns
                        .map_or_else(|| "inf".to_owned(), |c| c.to_string()),
                    op.outcome
                );
            }
        };
        let _ = writeln!(
            s,
            "  longest linearizable prefix ({} ops):",
            self.longest_prefix.len()
        );
        for &i in &self.longest_prefix {
            show(&mut s, i);
        }
        let _ = writeln!(s, "  state after prefix: {}", self.state_after_prefix);
        let _ = writeln!(
            s,
            "  stuck: op #{} cannot be linearized; candidates were:",
            self.stuck_op
        );
        for &i in &self.candidates {
            show(&mut s, i);
        }
        s
    }
}

/// One key's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum KeyResult {
    /// A linearization exists.
    Linearizable {
        /// Search steps used.
        steps: u64,
    },
    /// No linearization exists.
    NotLinearizable {
        /// Search steps used.
        steps: u64,
        /// Why.
        witness: Witness,
    },
    /// The budget ran out first. Never reported as linearizable.
    Unknown {
        /// Search steps used.
        steps: u64,
        /// Which limit was hit.
        reason: UnknownReason,
    },
}

impl KeyResult {
    /// Whether this is [`KeyResult::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, KeyResult::Linearizable { .. })
    }

    /// Whether this is [`KeyResult::NotLinearizable`].
    pub fn is_violation(&self) -> bool {
        matches!(self, KeyResult::NotLinearizable { .. })
    }

    /// Whether this is [`KeyResult::Unknown`].
    pub fn is_unknown(&self) -> bool {
        matches!(self, KeyResult::Unknown { .. })
    }
}

/// The result of [`check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The overall verdict: any violation wins, then any unknown.
    pub verdict: Verdict,
    /// Per-key results.
    pub keys: BTreeMap<String, KeyResult>,
}

impl Report {
    /// Whether the verdict is [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }
}

/// Checks that `history` is linearizable with respect to `model`, key by
/// key. Validates the history first.
pub fn check<M: Model>(
    history: &History,
    model: &M,
    budget: &Budget,
) -> Result<Report, CheckError> {
    history.validate()?;
    for (index, op) in history.ops.iter().enumerate() {
        if !model.supports(&op.call) {
            return Err(CheckError::Unsupported {
                index,
                key: op.key.clone(),
                model: model.name(),
                call: op.call.clone(),
            });
        }
    }
    let mut keys = BTreeMap::new();
    let mut verdict = Verdict::Linearizable;
    for (key, idx) in history.by_key() {
        let result = check_ops(&history.ops, &idx, model, budget);
        verdict = match (&result, verdict) {
            (KeyResult::NotLinearizable { .. }, _) | (_, Verdict::NotLinearizable) => {
                Verdict::NotLinearizable
            }
            (KeyResult::Unknown { .. }, _) | (_, Verdict::Unknown) => Verdict::Unknown,
            _ => Verdict::Linearizable,
        };
        keys.insert(key.to_owned(), result);
    }
    Ok(Report { verdict, keys })
}

/// Checks one key's ops (`idx` indexes `ops`), assumed validated and
/// supported by the model. Ops of other keys are not excluded: pass only
/// one key's indices.
pub fn check_ops<M: Model>(ops: &[Op], idx: &[usize], model: &M, budget: &Budget) -> KeyResult {
    Search::new(ops, idx, model).run(model, budget)
}

const HEAD: usize = 0;
const NONE: usize = usize::MAX;

/// One search: events in a doubly linked list (node 0 is the head
/// sentinel), ops numbered densely `0..n`.
struct Search<'a, M: Model> {
    ops: Vec<&'a Op>,
    /// History index of each dense op.
    orig: Vec<usize>,
    /// Whether each dense op has a known reply (must be linearized).
    determinate: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per node: the dense op.
    node_op: Vec<usize>,
    /// Per node: call (`true`) or return.
    node_call: Vec<bool>,
    /// Per dense op: its return node (`NONE` for `Info`).
    ret_node: Vec<usize>,
    init: M::State,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(all: &'a [Op], idx: &[usize], model: &M) -> Self {
        let mut ops = Vec::new();
        let mut orig = Vec::new();
        let mut determinate = Vec::new();
        for &i in idx {
            let op = &all[i];
            let keep = match op.outcome {
                Outcome::Ok(_) => true,
                Outcome::Fail => false,
                Outcome::Info => !model.is_read_only(&op.call),
            };
            if keep {
                determinate.push(matches!(op.outcome, Outcome::Ok(_)));
                ops.push(op);
                orig.push(i);
            }
        }
        // Events: (time, is_return, dense op). Calls sort before returns at
        // equal times, so touching intervals count as concurrent (never a
        // false violation). `Info` ops have no return event: it would sit
        // at +inf, and the search stops once every determinate op is
        // linearized, so it would never be reached.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (d, op) in ops.iter().enumerate() {
            events.push((op.invoke_ns, false, d));
            if determinate[d] {
                events.push((op.complete_ns.unwrap_or(u64::MAX), true, d));
            }
        }
        events.sort_unstable();
        let nodes = events.len() + 1;
        let mut next = vec![NONE; nodes];
        let mut prev = vec![NONE; nodes];
        let mut node_op = vec![NONE; nodes];
        let mut node_call = vec![false; nodes];
        let mut ret_node = vec![NONE; ops.len()];
        for (k, &(_, is_ret, d)) in events.iter().enumerate() {
            let node = k + 1;
            prev[node] = node - 1;
            next[node - 1] = node;
            node_op[node] = d;
            node_call[node] = !is_ret;
            if is_ret {
                ret_node[d] = node;
            }
        }
        Search {
            ops,
            orig,
            determinate,
            next,
            prev,
            node_op,
            node_call,
            ret_node,
            init: model.init(),
        }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NONE {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NONE {
            self.prev[n] = node;
        }
    }

    /// Removes an op's call (and return) events: it is linearized.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.ret_node[self.node_op[call]];
        if ret != NONE {
            self.unlink(ret);
        }
    }

    /// Undoes [`Search::lift`] (dancing links: reverse order).
    fn unlift(&mut self, call: usize) {
        let ret = self.ret_node[self.node_op[call]];
        if ret != NONE {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn run(mut self, model: &M, budget: &Budget) -> KeyResult {
        let n = self.ops.len();
        let words = n.div_ceil(64).max(1);
        let mut linearized = vec![0u64; words];
        let mut cache: hashbrown::HashSet<(Box<[u64]>, M::State), foldhash::fast::FixedState> =
            hashbrown::HashSet::with_hasher(foldhash::fast::FixedState::default());
        let mut state = self.init.clone();
        // (call node linearized, state before it, phase it was chosen in)
        let mut stack: Vec<(usize, M::State, bool)> = Vec::new();
        let mut remaining = self.determinate.iter().filter(|&&d| d).count();
        // Candidates at each search node are tried in two phases: ops with
        // a known reply first, indeterminate (`Info`) ops only when none of
        // those fits. Same candidates, better order: an `Info` op is then
        // linearized only when an observation needs its effect.
        let has_info = remaining < n;
        let mut info_phase = false;
        let mut best: Option<Witness> = None;
        let start = Instant::now();
        let mut steps: u64 = 0;
        let mut entry = self.next[HEAD];
        loop {
            if remaining == 0 {
                return KeyResult::Linearizable { steps };
            }
            steps += 1;
            if steps > budget.max_steps {
                return KeyResult::Unknown {
                    steps: steps - 1,
                    reason: UnknownReason::Steps,
                };
            }
            if steps & 1023 == 0 {
                if let Some(limit) = budget.max_time {
                    if start.elapsed() > limit {
                        return KeyResult::Unknown {
                            steps,
                            reason: UnknownReason::Time,
                        };
                    }
                }
            }
            // While a determinate op is unlinearized its return node is in
            // the list, so the scan meets a return before running off the
            // end.
            debug_assert!(entry != NONE);
            if entry == NONE {
                return KeyResult::Unknown {
                    steps,
                    reason: UnknownReason::Steps,
                };
            }
            let node = entry;
            let d = self.node_op[node];
            if self.node_call[node] {
                if self.determinate[d] == info_phase || (info_phase && self.has_twin_before(node)) {
                    // Not this phase's candidate, or an interchangeable
                    // twin of an earlier one.
                    entry = self.next[node];
                    continue;
                }
                let op = self.ops[d];
                let ret = match &op.outcome {
                    Outcome::Ok(v) => Some(v),
                    _ => None,
                };
                if let Some(next_state) = model.step(&state, &op.call, ret) {
                    let (w, bit) = (d / 64, 1u64 << (d % 64));
                    linearized[w] |= bit;
                    let key = (linearized.clone().into_boxed_slice(), next_state);
                    if !cache.contains(&key) {
                        let next_state = key.1.clone();
                        cache.insert(key);
                        stack.push((node, std::mem::replace(&mut state, next_state), info_phase));
                        info_phase = false;
                        self.lift(node);
                        if self.determinate[d] {
                            remaining -= 1;
                        }
                        entry = self.next[HEAD];
                        continue;
                    }
                    linearized[w] &= !bit;
                }
                entry = self.next[node];
            } else {
                // An unlinearized op's return: every candidate before it
                // was tried (in this phase).
                if !info_phase && has_info {
                    info_phase = true;
                    entry = self.next[HEAD];
                    continue;
                }
                // Something before it must be undone.
                if best
                    .as_ref()
                    .is_none_or(|b| stack.len() > b.longest_prefix.len())
                {
                    best = Some(self.witness(&stack, &state, node));
                }
                let Some((call, prev_state, phase)) = stack.pop() else {
                    let witness = best.unwrap_or_else(|| self.witness(&stack, &state, node));
                    return KeyResult::NotLinearizable { steps, witness };
                };
                let d = self.node_op[call];
                linearized[d / 64] &= !(1u64 << (d % 64));
                state = prev_state;
                info_phase = phase;
                self.unlift(call);
                if self.determinate[d] {
                    remaining += 1;
                }
                entry = self.next[call];
            }
        }
    }

    /// Whether an earlier pending indeterminate op has the same call as
    /// `node`'s. Pending `Info` ops with equal calls are interchangeable
    /// (neither has a return bound, and the earlier was invoked first), so
    /// trying only the earliest of each prunes symmetric branches.
    fn has_twin_before(&self, node: usize) -> bool {
        let call = &self.ops[self.node_op[node]].call;
        let mut at = self.next[HEAD];
        while at != node && at != NONE {
            let d = self.node_op[at];
            if self.node_call[at] && !self.determinate[d] && self.ops[d].call == *call {
                return true;
            }
            at = self.next[at];
        }
        false
    }

    fn witness(&self, stack: &[(usize, M::State, bool)], state: &M::State, ret: usize) -> Witness {
        let mut candidates = Vec::new();
        let mut node = self.next[HEAD];
        while node != NONE && node != ret {
            if self.node_call[node] {
                candidates.push(self.orig[self.node_op[node]]);
            }
            node = self.next[node];
        }
        Witness {
            longest_prefix: stack
                .iter()
                .map(|&(call, _, _)| self.orig[self.node_op[call]])
                .collect(),
            state_after_prefix: format!("{state:?}"),
            stuck_op: self.orig[self.node_op[ret]],
            candidates,
        }
    }
}
