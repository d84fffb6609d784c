//! The cluster nemesis: a seeded schedule of faults, and its execution
//! against a running [`Cluster`].
//!
//! A [`Schedule`] is a pure function of its seed and [`ScheduleSpec`]: the
//! same seed always gives the same faults, in the same order, with the same
//! timings and the same choices among nodes ([`Step::pick`]). Which node is
//! "the leader" is only known when a step starts: it is resolved then, by
//! asking every node (from the client host) who leads the group of the
//! workload's key ([`Cluster::leader_of`]). Steps run one at a time: each
//! fault is applied, held, then undone (network healed, process resumed or
//! restarted) before the next one.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::workload::Rng;
use crate::LabError;

/// Which node a process or total-isolation fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The current leader of the workload's group.
    Leader,
    /// A node that does not lead it (chosen by the step's pick).
    Follower,
}

/// A fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Cut the leader off from every other node, both ways; the client
    /// host still reaches every node, so clients keep talking to the old
    /// leader (the classic stale-read trap).
    IsolateLeader,
    /// Split the nodes into a majority and a minority (both ways; clients
    /// reach everyone), with the leader on the given side.
    Halves {
        /// The leader is in the minority (else in the majority, and a
        /// follower is cut off and lags).
        leader_in_minority: bool,
    },
    /// Drop everything one way only between the leader and the other
    /// nodes (note: this also blocks new TCP connections both ways).
    OneWay {
        /// Drop the leader's packets to the others (else the reverse).
        from_leader: bool,
    },
    /// Cut a node off from everything, the client host included.
    IsolateNode(Role),
    /// SIGKILL a node, keep it down for the hold time, restart it with the
    /// same arguments and data directory.
    KillRestart(Role),
    /// SIGKILL a node and restart it at once (same data dir), faster than
    /// the others' election timeout: a leader comes back believing it
    /// still leads (openraft restores a leader whose committed vote is its
    /// own). The hold time is quiet time after the restart.
    CrashRestart(Role),
    /// SIGSTOP a node for the hold time (longer than the election
    /// timeout), then SIGCONT.
    Pause(Role),
    /// Drop this percentage of packets at random on every link between
    /// nodes and between the client host and the nodes.
    Loss(u8),
}

impl Fault {
    /// A short stable name for tables (`isolate-leader`, `kill-leader`...).
    pub fn name(&self) -> String {
        let role = |r: &Role| match r {
            Role::Leader => "leader",
            Role::Follower => "follower",
        };
        match self {
            Fault::IsolateLeader => "isolate-leader".into(),
            Fault::Halves {
                leader_in_minority: true,
            } => "halves-leader-minority".into(),
            Fault::Halves {
                leader_in_minority: false,
            } => "halves-leader-majority".into(),
            Fault::OneWay { from_leader: true } => "one-way-from-leader".into(),
            Fault::OneWay { from_leader: false } => "one-way-to-leader".into(),
            Fault::IsolateNode(r) => format!("isolate-{}-total", role(r)),
            Fault::KillRestart(r) => format!("kill-restart-{}", role(r)),
            Fault::CrashRestart(r) => format!("crash-restart-{}", role(r)),
            Fault::Pause(r) => format!("pause-{}", role(r)),
            Fault::Loss(p) => format!("loss-{p}pct"),
        }
    }

    /// Every kind of fault, for randomized campaigns.
    pub fn all() -> Vec<Fault> {
        vec![
            Fault::IsolateLeader,
            Fault::Halves {
                leader_in_minority: true,
            },
            Fault::Halves {
                leader_in_minority: false,
            },
            Fault::OneWay { from_leader: true },
            Fault::OneWay { from_leader: false },
            Fault::IsolateNode(Role::Leader),
            Fault::IsolateNode(Role::Follower),
            Fault::KillRestart(Role::Leader),
            Fault::KillRestart(Role::Follower),
            Fault::CrashRestart(Role::Leader),
            Fault::Pause(Role::Leader),
            Fault::Pause(Role::Follower),
            Fault::Loss(20),
        ]
    }

    fn is_pause(&self) -> bool {
        matches!(self, Fault::Pause(_))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One scheduled fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// When to inject it, in milliseconds after the schedule starts.
    pub at_ms: u64,
    /// How long to hold it before undoing it.
    pub hold_ms: u64,
    /// What to inject.
    pub fault: Fault,
    /// Random bits for choices made when the step runs (which follower,
    /// which nodes form the minority).
    pub pick: u64,
}

/// How a schedule is generated.
#[derive(Clone, Debug)]
pub struct ScheduleSpec {
    /// The faults to draw from.
    pub faults: Vec<Fault>,
    /// `true`: each fault exactly once, in a seeded order; `false`: draw
    /// with replacement until `total_ms` is used up.
    pub each_once: bool,
    /// Quiet time before the first fault.
    pub warmup_ms: u64,
    /// Hold time range of a fault (inclusive).
    pub hold_ms: (u64, u64),
    /// Minimum hold of a pause (make it exceed the election timeout).
    pub pause_min_ms: u64,
    /// Quiet time range between faults (inclusive).
    pub gap_ms: (u64, u64),
    /// With `each_once == false`: no fault may end after this.
    pub total_ms: u64,
}

/// A seeded fault schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was generated from.
    pub seed: u64,
    /// The faults, in time order, never overlapping.
    pub steps: Vec<Step>,
}

fn between(rng: &mut Rng, (lo, hi): (u64, u64)) -> u64 {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    lo + rng.below(hi - lo + 1)
}

impl Schedule {
    /// Generates the schedule of `seed`: the same seed and spec always
    /// give the same schedule.
    pub fn generate(seed: u64, spec: &ScheduleSpec) -> Schedule {
        let mut rng = Rng::new(seed ^ 0x006e_656d_6573_6973);
        let mut faults = spec.faults.clone();
        if spec.each_once {
            // Fisher-Yates.
            for i in (1..faults.len()).rev() {
                let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
                faults.swap(i, j);
            }
        }
        let mut steps = Vec::new();
        let mut t = spec.warmup_ms;
        let mut i = 0;
        loop {
            let fault = if spec.each_once {
                match faults.get(i) {
                    Some(f) => *f,
                    None => break,
                }
            } else if faults.is_empty() {
                break;
            } else {
                faults[usize::try_from(rng.below(faults.len() as u64)).unwrap_or(0)]
            };
            i += 1;
            let mut hold = between(&mut rng, spec.hold_ms);
            if fault.is_pause() {
                hold = hold.max(spec.pause_min_ms);
            }
            let pick = rng.next_u64();
            if !spec.each_once && t + hold > spec.total_ms {
                break;
            }
            steps.push(Step {
                at_ms: t,
                hold_ms: hold,
                fault,
                pick,
            });
            t += hold + between(&mut rng, spec.gap_ms);
        }
        Schedule { seed, steps }
    }

    /// When the last fault is undone, in milliseconds from the start.
    pub fn end_ms(&self) -> u64 {
        self.steps
            .iter()
            .map(|s| s.at_ms + s.hold_ms)
            .max()
            .unwrap_or(0)
    }

    /// A multi-line rendering (seed first), for logs.
    pub fn describe(&self) -> String {
        let mut s = format!("nemesis schedule, seed {}:\n", self.seed);
        for st in &self.steps {
            s.push_str(&format!(
                "  at {:>6} ms hold {:>5} ms  {}  (pick {:016x})\n",
                st.at_ms, st.hold_ms, st.fault, st.pick
            ));
        }
        s
    }

    /// Runs the schedule against `cluster`, with step times relative to
    /// `start`. `key` names the workload's group (its leader is the
    /// target). Stops early (after undoing the current fault) when `stop`
    /// is set. Every fault is undone before returning, even on error.
    pub fn run(
        &self,
        cluster: &Cluster<'_>,
        key: &str,
        start: Instant,
        stop: &AtomicBool,
    ) -> Result<Vec<Event>, LabError> {
        let mut events = Vec::new();
        let result = self.run_steps(cluster, key, start, stop, &mut events);
        let healed = cluster.heal_all();
        let at_ms = elapsed_ms(start);
        events.push(Event {
            at_ms,
            fault: None,
            text: "nemesis: healed everything".into(),
        });
        result.and(healed).map(|()| events)
    }

    fn run_steps(
        &self,
        cluster: &Cluster<'_>,
        key: &str,
        start: Instant,
        stop: &AtomicBool,
        events: &mut Vec<Event>,
    ) -> Result<(), LabError> {
        for step in &self.steps {
            if !sleep_until(start + Duration::from_millis(step.at_ms), stop) {
                return Ok(());
            }
            let leader = cluster.leader_of(key)?;
            let n = cluster.nodes();
            let (lead, known) = match leader {
                Some(l) => (l, true),
                // No node names a leader: pick one by the step's bits.
                None => (usize::try_from(step.pick % n as u64).unwrap_or(0), false),
            };
            let others: Vec<usize> = (0..n).filter(|&i| i != lead).collect();
            let follower = others
                .get(usize::try_from((step.pick >> 8) % others.len().max(1) as u64).unwrap_or(0))
                .copied()
                .unwrap_or(lead);
            let role = |r: &Role| match r {
                Role::Leader => lead,
                Role::Follower => follower,
            };
            let who = |i: usize| format!("n{}", i + 1);
            let text = match step.fault {
                Fault::IsolateLeader => {
                    cluster.lab().partition_groups(&[lead], &others)?;
                    format!(
                        "cut {} from {:?}",
                        who(lead),
                        others.iter().map(|&i| who(i)).collect::<Vec<_>>()
                    )
                }
                Fault::Halves { leader_in_minority } => {
                    // Minority: (n-1)/2 nodes; the leader on its side, the
                    // rest drawn by the pick.
                    let small = (n - 1) / 2;
                    let mut order = others.clone();
                    let mut rng = Rng::new(step.pick);
                    for i in (1..order.len()).rev() {
                        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
                        order.swap(i, j);
                    }
                    let minority: Vec<usize> = if leader_in_minority {
                        std::iter::once(lead)
                            .chain(order.iter().copied())
                            .take(small)
                            .collect()
                    } else {
                        order.iter().copied().take(small).collect()
                    };
                    let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
                    cluster.lab().partition_groups(&minority, &majority)?;
                    format!(
                        "minority {:?} | majority {:?}",
                        minority.iter().map(|&i| who(i)).collect::<Vec<_>>(),
                        majority.iter().map(|&i| who(i)).collect::<Vec<_>>()
                    )
                }
                Fault::OneWay { from_leader } => {
                    for &o in &others {
                        if from_leader {
                            cluster.lab().partition_one_way(lead, o)?;
                        } else {
                            cluster.lab().partition_one_way(o, lead)?;
                        }
                    }
                    if from_leader {
                        format!("drop {} -> others", who(lead))
                    } else {
                        format!("drop others -> {}", who(lead))
                    }
                }
                Fault::IsolateNode(r) => {
                    let x = role(&r);
                    cluster.lab().isolate(x)?;
                    format!("isolate {} from everything", who(x))
                }
                Fault::KillRestart(r) => {
                    let x = role(&r);
                    cluster.kill(x)?;
                    format!("SIGKILL {}", who(x))
                }
                Fault::CrashRestart(r) => {
                    let x = role(&r);
                    cluster.kill(x)?;
                    cluster.restart(x)?;
                    format!("SIGKILL {} and restart at once", who(x))
                }
                Fault::Pause(r) => {
                    let x = role(&r);
                    cluster.pause(x)?;
                    format!("SIGSTOP {}", who(x))
                }
                Fault::Loss(p) => {
                    let lab = cluster.lab();
                    let client = lab.client();
                    for a in 0..n {
                        for b in (a + 1..n).chain(std::iter::once(client)) {
                            lab.loss(a, b, p)?;
                            lab.loss(b, a, p)?;
                        }
                    }
                    format!("{p}% loss on every link")
                }
            };
            let leader_note = if known {
                format!("leader n{}", lead + 1)
            } else {
                "leader unknown".into()
            };
            let ev = Event {
                at_ms: elapsed_ms(start),
                fault: Some(step.fault),
                text: format!("nemesis: {} ({leader_note}): {text}", step.fault),
            };
            eprintln!("[{:>6} ms] {}", ev.at_ms, ev.text);
            events.push(ev);
            sleep_until(Instant::now() + Duration::from_millis(step.hold_ms), stop);
            // Undo.
            let undo = match step.fault {
                Fault::KillRestart(r) => {
                    cluster.restart(role(&r))?;
                    format!("restarted {}", who(role(&r)))
                }
                Fault::Pause(r) => {
                    cluster.resume(role(&r))?;
                    format!("SIGCONT {}", who(role(&r)))
                }
                Fault::CrashRestart(_) => "quiet time over".into(),
                _ => {
                    cluster.lab().heal()?;
                    "healed the network".into()
                }
            };
            let ev = Event {
                at_ms: elapsed_ms(start),
                fault: None,
                text: format!("nemesis: {undo}"),
            };
            eprintln!("[{:>6} ms] {}", ev.at_ms, ev.text);
            events.push(ev);
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Something the nemesis did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds after the schedule's start.
    pub at_ms: u64,
    /// The fault injected (`None` for an undo).
    pub fault: Option<Fault>,
    /// What was done, to which nodes.
    pub text: String,
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Sleeps until `t` in small steps; `false` if `stop` was set first.
fn sleep_until(t: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(each_once: bool) -> ScheduleSpec {
        ScheduleSpec {
            faults: Fault::all(),
            each_once,
            warmup_ms: 1000,
            hold_ms: (1000, 4000),
            pause_min_ms: 2500,
            gap_ms: (500, 2000),
            total_ms: 60_000,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        for each_once in [true, false] {
            let a = Schedule::generate(42, &spec(each_once));
            let b = Schedule::generate(42, &spec(each_once));
            assert_eq!(a, b);
            assert_eq!(a.describe(), b.describe());
            let c = Schedule::generate(43, &spec(each_once));
            assert_ne!(a.steps, c.steps, "seeds 42 and 43 gave the same schedule");
        }
    }

    #[test]
    fn schedules_respect_the_spec() {
        for seed in 0..50 {
            let s = Schedule::generate(seed, &spec(true));
            assert_eq!(s.steps.len(), Fault::all().len());
            let mut seen: Vec<Fault> = s.steps.iter().map(|s| s.fault).collect();
            seen.sort();
            let mut all = Fault::all();
            all.sort();
            assert_eq!(seen, all, "each fault exactly once");
            let r = Schedule::generate(seed, &spec(false));
            assert!(r.end_ms() <= 60_000);
            for sched in [&s, &r] {
                assert!(sched.steps[0].at_ms >= 1000);
                for w in sched.steps.windows(2) {
                    assert!(w[0].at_ms + w[0].hold_ms + 500 <= w[1].at_ms, "overlap");
                }
                for st in &sched.steps {
                    if st.fault.is_pause() {
                        assert!(st.hold_ms >= 2500);
                    }
                    assert!(st.hold_ms >= 1000);
                }
            }
        }
    }
}
