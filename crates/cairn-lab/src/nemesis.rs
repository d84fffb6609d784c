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

use crate::cluster::{Cluster, NodeEnv};
use crate::delay::{Delay, DelaySpec};
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
    /// the others' election timeout (the openraft engine restored such a
    /// leader as leader of its old term; raft-rs restarts it as a
    /// follower). The hold time is quiet time after the restart.
    CrashRestart(Role),
    /// SIGSTOP a node for the hold time (longer than the election
    /// timeout), then SIGCONT.
    Pause(Role),
    /// Drop this percentage of packets at random on every link between
    /// nodes and between the client host and the nodes.
    Loss(u8),
    /// Jump a node's wall clock (libfaketime, `CLOCK_REALTIME` only) one
    /// hour ahead, half-way through the hold to ten minutes behind, and
    /// back to the real time at the end. A node not yet under libfaketime
    /// is first SIGKILLed and restarted under it (same data dir), once:
    /// it stays wrapped.
    WallClockJump(Role),
    /// SIGKILL a node and restart it at once in a new time namespace whose
    /// monotonic and boot-time clocks are 1 to 30 days (the step's pick)
    /// ahead of the host's; it keeps that offset. The hold is quiet time.
    MonotonicRestart(Role),
    /// Fill a node's data-dir tmpfs to `ENOSPC` for the hold time, then
    /// free the space and SIGKILL + restart the node (cairn's log store
    /// fails for good after a failed write). Needs the node started with
    /// [`NodeEnv::tmpfs_bytes`](crate::cluster::NodeEnv::tmpfs_bytes).
    DiskFull(Role),
    /// Make every `fsync`/`fdatasync` of a node fail (libfiu,
    /// `posix/io/sync/*`) for the hold time, then switch it off and
    /// SIGKILL + restart the node. A node not yet under libfiu is first
    /// restarted under it, once.
    FsyncFails(Role),
    /// SIGKILL a follower (never node 1, which bootstraps from an empty
    /// dir), delete its data directory and start it again: it must refuse
    /// (non-zero exit, [`WIPED_REFUSAL`] in its log). Undo: `CLUSTER
    /// DELNODE` on a healthy node, start it with an empty dir, `CLUSTER
    /// ADDNODE` it back (docs/OPERATIONS.md). Membership changes: not for
    /// the campaign.
    WipeRejoin,
    /// Add 100 ± 50 ms (seeded by the step's pick) to everything a node
    /// sends, peers and clients alike (NFQUEUE delayer, [`crate::delay`]),
    /// for the hold time.
    Latency(Role),
    /// `CLUSTER REBALANCE` on a node (the step's pick): every group whose
    /// leader is not its preferred node hands its leadership over (cairn's
    /// leadership transfer: the leader stops taking requests and sending
    /// appends, the preferred node campaigns once the followers' leases
    /// lapsed). Nothing to undo.
    Rebalance,
}

/// What a node whose durable data dir was wiped must say when it refuses
/// to start as a member of an initialized cluster.
pub const WIPED_REFUSAL: &str =
    "data directory is empty but this node is a member of an initialized cluster";

/// The wall-clock offsets of [`Fault::WallClockJump`]: first, then from
/// half-way through the hold.
pub const CLOCK_JUMPS_SECS: (i64, i64) = (3600, -600);

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
            Fault::WallClockJump(r) => format!("clock-jump-{}", role(r)),
            Fault::MonotonicRestart(r) => format!("monotonic-restart-{}", role(r)),
            Fault::DiskFull(r) => format!("disk-full-{}", role(r)),
            Fault::FsyncFails(r) => format!("fsync-fails-{}", role(r)),
            Fault::WipeRejoin => "wipe-rejoin-follower".into(),
            Fault::Latency(r) => format!("latency-{}", role(r)),
            Fault::Rebalance => "rebalance".into(),
        }
    }

    /// Every kind of fault safe for randomized campaigns on a plain
    /// cluster. Left out: [`Fault::DiskFull`] (needs nodes started on a
    /// private tmpfs), [`Fault::FsyncFails`] and [`Fault::WipeRejoin`]
    /// (see docs/design/faultlab.md, "Clock and disk faults").
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
            Fault::WallClockJump(Role::Leader),
            Fault::WallClockJump(Role::Follower),
            Fault::MonotonicRestart(Role::Leader),
            Fault::MonotonicRestart(Role::Follower),
            Fault::Latency(Role::Leader),
            Fault::Latency(Role::Follower),
            Fault::Rebalance,
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
            node: None,
            text: "nemesis: healed everything".into(),
            unhealthy: Vec::new(),
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
            // The node a WipeRejoin hit (not a role).
            let mut target = None;
            // A Latency fault's delayer; dropping it (also on an early
            // return) removes the rules and stops the process.
            let mut latency: Option<Delay<'_>> = None;
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
            // A Halves fault's minority.
            let mut cut_off: Vec<usize> = Vec::new();
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
                    cut_off.clone_from(&minority);
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
                Fault::WallClockJump(r) => {
                    let x = role(&r);
                    let mut note = String::new();
                    let env = cluster.env(x);
                    if !env.faketime {
                        cluster.restart_with(
                            x,
                            NodeEnv {
                                faketime: true,
                                ..env
                            },
                        )?;
                        note = format!("SIGKILLed {} and restarted it under libfaketime; ", who(x));
                    }
                    cluster.set_wall_clock_offset(x, CLOCK_JUMPS_SECS.0)?;
                    format!("{note}wall clock of {} {:+} s", who(x), CLOCK_JUMPS_SECS.0)
                }
                Fault::MonotonicRestart(r) => {
                    let x = role(&r);
                    let secs = 86_400 * (1 + i64::try_from(step.pick % 30).unwrap_or(0));
                    let env = NodeEnv {
                        monotonic_offset_secs: Some(secs),
                        ..cluster.env(x)
                    };
                    cluster.restart_with(x, env)?;
                    format!(
                        "SIGKILL {} and restart it with CLOCK_MONOTONIC {secs:+} s",
                        who(x)
                    )
                }
                Fault::DiskFull(r) => {
                    let x = role(&r);
                    let free = cluster.fill_disk(x)?;
                    format!(
                        "filled the data-dir tmpfs of {} ({free} bytes left)",
                        who(x)
                    )
                }
                Fault::FsyncFails(r) => {
                    let x = role(&r);
                    let env = cluster.env(x);
                    let mut note = String::new();
                    if !env.fiu {
                        cluster.restart_with(x, NodeEnv { fiu: true, ..env })?;
                        note = format!("SIGKILLed {} and restarted it under libfiu; ", who(x));
                        // fiu's control thread starts with the process.
                        cluster.wait_ready(Duration::from_secs(30))?;
                    }
                    cluster.fiu_ctrl(x, FSYNC_FAILS_ON)?;
                    format!("{note}every fsync/fdatasync of {} fails", who(x))
                }
                Fault::Latency(r) => {
                    let x = role(&r);
                    let spec = DelaySpec {
                        seed: step.pick,
                        lifetime_ms: step.hold_ms + 60_000,
                        ..DelaySpec::new(100, 50)
                    };
                    latency = Some(Delay::on_node(cluster, x, &spec)?);
                    format!("delay everything {} sends by 100 ± 50 ms", who(x))
                }
                Fault::Rebalance => {
                    let x = usize::try_from(step.pick % n as u64).unwrap_or(0);
                    // Each move takes about one election timeout.
                    let limit = Duration::from_secs(120);
                    let reply = match cluster.command(x, &["CLUSTER", "REBALANCE"], limit) {
                        Ok(r) => r.lines().next().unwrap_or("").to_owned(),
                        Err(e) => format!("failed: {e}"),
                    };
                    format!("CLUSTER REBALANCE via {} -> {reply}", who(x))
                }
                Fault::WipeRejoin => {
                    let x = wipe_target(n, lead, step.pick)?;
                    target = Some(x);
                    format!(
                        "SIGKILL {}, wipe its data dir, start it: {}",
                        who(x),
                        wipe(cluster, x)?
                    )
                }
            };
            let hit = match step.fault {
                Fault::IsolateNode(r)
                | Fault::KillRestart(r)
                | Fault::CrashRestart(r)
                | Fault::Pause(r)
                | Fault::WallClockJump(r)
                | Fault::MonotonicRestart(r)
                | Fault::DiskFull(r)
                | Fault::FsyncFails(r)
                | Fault::Latency(r) => Some(role(&r)),
                Fault::WipeRejoin => target,
                _ => None,
            };
            let unhealthy: Vec<usize> = match step.fault {
                Fault::IsolateLeader | Fault::OneWay { .. } => vec![lead],
                Fault::Halves { .. } => cut_off,
                // A slow node still answers; loss hits every node alike.
                Fault::Latency(_) | Fault::Loss(_) | Fault::Rebalance => Vec::new(),
                _ => hit.into_iter().collect(),
            };
            let leader_note = if known {
                format!("leader n{}", lead + 1)
            } else {
                "leader unknown".into()
            };
            let ev = Event {
                at_ms: elapsed_ms(start),
                fault: Some(step.fault),
                node: hit,
                text: format!("nemesis: {} ({leader_note}): {text}", step.fault),
                unhealthy,
            };
            eprintln!("[{:>6} ms] {}", ev.at_ms, ev.text);
            events.push(ev);
            let held = Instant::now();
            if let Fault::WallClockJump(r) = step.fault {
                sleep_until(held + Duration::from_millis(step.hold_ms / 2), stop);
                cluster.set_wall_clock_offset(role(&r), CLOCK_JUMPS_SECS.1)?;
                let ev = Event {
                    at_ms: elapsed_ms(start),
                    fault: None,
                    node: Some(role(&r)),
                    text: format!(
                        "nemesis: wall clock of {} {:+} s",
                        who(role(&r)),
                        CLOCK_JUMPS_SECS.1
                    ),
                    unhealthy: Vec::new(),
                };
                eprintln!("[{:>6} ms] {}", ev.at_ms, ev.text);
                events.push(ev);
            }
            sleep_until(held + Duration::from_millis(step.hold_ms), stop);
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
                Fault::CrashRestart(_) | Fault::MonotonicRestart(_) => "quiet time over".into(),
                Fault::WallClockJump(r) => {
                    cluster.set_wall_clock_offset(role(&r), 0)?;
                    format!("wall clock of {} back to the real time", who(role(&r)))
                }
                Fault::DiskFull(r) => {
                    let x = role(&r);
                    cluster.free_disk(x)?;
                    let note = kill_and_restart(cluster, x)?;
                    format!("freed the tmpfs of {}; {note}", who(x))
                }
                Fault::FsyncFails(r) => {
                    let x = role(&r);
                    // The process may have exited on the failure.
                    let _ = cluster.fiu_ctrl(x, FSYNC_FAILS_OFF);
                    let note = kill_and_restart(cluster, x)?;
                    format!("fsync of {} works again; {note}", who(x))
                }
                Fault::WipeRejoin => {
                    let x = target.ok_or_else(|| LabError::Invalid("no wipe target".into()))?;
                    rejoin(cluster, x)?
                }
                Fault::Rebalance => "nothing to undo".into(),
                Fault::Latency(_) => match latency.take() {
                    Some(d) => {
                        let st = d.stop()?;
                        format!(
                            "removed the delay ({} packets held, mean {} µs, at most {} at once, {} dropped at the cap, {} verdicts refused)",
                            st.released, st.hold_us_mean, st.held_max, st.dropped_cap, st.verdict_errors
                        )
                    }
                    None => "no delay to remove".into(),
                },
                _ => {
                    cluster.lab().heal()?;
                    "healed the network".into()
                }
            };
            let ev = Event {
                at_ms: elapsed_ms(start),
                fault: None,
                node: hit,
                text: format!("nemesis: {undo}"),
                unhealthy: Vec::new(),
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

/// libfiu command making every fsync and fdatasync fail (random errno of
/// the valid ones: `EIO`, `EBADF`, `EINVAL`, `EROFS`).
pub const FSYNC_FAILS_ON: &str = "enable name=posix/io/sync/*";
/// libfiu command ending [`FSYNC_FAILS_ON`].
pub const FSYNC_FAILS_OFF: &str = "disable name=posix/io/sync/*";

/// How long a wiped node may take to refuse.
const WIPED_REFUSAL_LIMIT: Duration = Duration::from_secs(20);

/// The node [`Fault::WipeRejoin`] hits: a non-leader other than node 1
/// (index 0), chosen by `pick`.
fn wipe_target(n: usize, lead: usize, pick: u64) -> Result<usize, LabError> {
    let candidates: Vec<usize> = (1..n).filter(|&i| i != lead).collect();
    if candidates.is_empty() {
        return Err(LabError::Invalid(format!(
            "no follower other than n1 to wipe in a cluster of {n}"
        )));
    }
    let k = usize::try_from(pick % candidates.len() as u64).unwrap_or(0);
    Ok(candidates[k])
}

/// SIGKILLs node `x` (if it still runs) and starts it again; says how it
/// had ended.
fn kill_and_restart(cluster: &Cluster<'_>, x: usize) -> Result<String, LabError> {
    let p = cluster
        .proc(x)
        .ok_or_else(|| LabError::Invalid(format!("n{} has no process", x + 1)))?;
    let note = match cluster.lab().try_wait(p)? {
        Some(status) => format!("n{} had exited ({status}); started it", x + 1),
        None => {
            cluster.kill(x)?;
            format!("SIGKILLed n{} (still running) and started it", x + 1)
        }
    };
    cluster.restart(x)?;
    Ok(note)
}

/// The [`Fault::WipeRejoin`] injection: kill, wipe, start, and report
/// whether the node refused (`REFUSED ...`) or not (`DID NOT REFUSE`:
/// then it is killed again, to keep a member without its votes out).
fn wipe(cluster: &Cluster<'_>, x: usize) -> Result<String, LabError> {
    cluster.kill(x)?;
    cluster.wipe_data_dir(x)?;
    cluster.restart(x)?;
    let p = cluster
        .proc(x)
        .ok_or_else(|| LabError::Invalid(format!("n{} has no process", x + 1)))?;
    match cluster.lab().wait_timeout(p, WIPED_REFUSAL_LIMIT)? {
        Some(status) => {
            let said = cluster.lab().log(p).contains(WIPED_REFUSAL);
            let verdict = match (status.success(), said) {
                (false, true) => "REFUSED with the expected message",
                (false, false) => "exited non-zero WITHOUT the expected message",
                (true, _) => "exited with status 0",
            };
            cluster.mark_down(x);
            Ok(format!("{verdict} ({status})"))
        }
        None => {
            cluster.kill(x)?;
            Ok(format!(
                "DID NOT REFUSE: still running {WIPED_REFUSAL_LIMIT:?} after starting on an empty dir; SIGKILLed it"
            ))
        }
    }
}

/// The documented recovery of a wiped node: `CLUSTER DELNODE` on a
/// healthy node, start it with an empty dir, `CLUSTER ADDNODE` it back.
fn rejoin(cluster: &Cluster<'_>, x: usize) -> Result<String, LabError> {
    let id = (x + 1).to_string();
    let healthy = (0..cluster.nodes())
        .find(|&i| i != x)
        .ok_or_else(|| LabError::Invalid("no healthy node".into()))?;
    let del = cluster.command(
        healthy,
        &["CLUSTER", "DELNODE", &id],
        Duration::from_secs(30),
    )?;
    cluster.wipe_data_dir(x)?;
    cluster.restart(x)?;
    let peer = format!(
        "{}@{}",
        cluster.addr(x),
        u32::from(cluster.spec().port) + 10_000
    );
    let add = cluster.command(
        healthy,
        &["CLUSTER", "ADDNODE", &id, &peer],
        Duration::from_secs(60),
    )?;
    let first = |r: &str| r.lines().next().unwrap_or("").to_owned();
    Ok(format!(
        "CLUSTER DELNODE {id} -> {}; started n{} on an empty dir; CLUSTER ADDNODE {id} {peer} -> {}",
        first(&del),
        x + 1,
        first(&add)
    ))
}

/// Something the nemesis did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds after the schedule's start.
    pub at_ms: u64,
    /// The fault injected (`None` for an undo).
    pub fault: Option<Fault>,
    /// The node (index) a single-node fault hit, on its injection and its
    /// undo.
    pub node: Option<usize>,
    /// What was done, to which nodes.
    pub text: String,
    /// On an injection: the nodes that cannot be expected to answer while
    /// the fault lasts (down, paused, cut off from the majority); clients
    /// of the other nodes should be served (see `avail.rs`).
    pub unhealthy: Vec<usize>,
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
