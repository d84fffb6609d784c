//! Availability under faults: the longest stretch in which the clients of
//! a healthy node completed no request.
//!
//! Each workload process records when each of its successful requests
//! completed, per target node ([`crate::workload::Stats::ok_times`]), and
//! the wall-clock time of its time 0; the campaign lines those up with
//! its nemesis events. For each injected fault the window runs from the
//! injection to its undo plus [`SETTLE_MS`] (a healed partition or a
//! restarted node may still cost an election), cut at the next injection
//! and at the end of the workload. In that window, for every node the
//! fault left healthy (see [`crate::nemesis::Event::unhealthy`]), the
//! longest gap between successive successful completions of requests sent
//! to that node (the window's ends count as completions) is the stretch;
//! the fault's figure is the largest over its healthy nodes.
//!
//! The target the issue sets: while a majority is healthy, requests sent
//! to healthy nodes complete within the election timeout + 1 s.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::nemesis::Event;

/// How long after a fault's undo its window still runs.
pub const SETTLE_MS: u64 = 1000;

/// What a workload writes beside its history (`<history>.ok-times.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OkTimes {
    /// Wall-clock time of the history's time 0 (ns since the epoch).
    pub start_unix_ns: u64,
    /// Completion times (history ns) of successful requests, per target.
    pub ok_ns: Vec<Vec<u64>>,
}

impl OkTimes {
    /// The sidecar path of a history file.
    pub fn path_for(history: &Path) -> std::path::PathBuf {
        let mut p = history.as_os_str().to_owned();
        p.push(".ok-times.json");
        p.into()
    }
}

/// Completion times per target in ms after `start_unix_ns` (the nemesis'
/// time 0), merged over workloads and sorted.
pub fn merge(sets: &[OkTimes], start_unix_ns: u64, targets: usize) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::new(); targets];
    for s in sets {
        for (t, times) in s.ok_ns.iter().enumerate().take(targets) {
            for &ns in times {
                let abs = s.start_unix_ns.saturating_add(ns);
                // Completions before the nemesis' time 0 do not matter.
                if let Some(rel) = abs.checked_sub(start_unix_ns) {
                    out[t].push(rel / 1_000_000);
                }
            }
        }
    }
    for v in &mut out {
        v.sort_unstable();
    }
    out
}

/// The longest interval in `[from, to]` without a time of `sorted`.
pub fn longest_gap(sorted: &[u64], from: u64, to: u64) -> u64 {
    if to <= from {
        return 0;
    }
    let lo = sorted.partition_point(|&t| t <= from);
    let hi = sorted.partition_point(|&t| t < to);
    let mut prev = from;
    let mut longest = 0;
    for &t in &sorted[lo..hi] {
        longest = longest.max(t - prev);
        prev = t;
    }
    longest.max(to - prev)
}

/// One injected fault's figure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The fault's name.
    pub fault: String,
    /// Longest stretch (ms) without a completed request at a healthy node.
    pub longest_ms: u64,
    /// The node (index) where it happened.
    pub node: usize,
}

/// The figure of every injected fault of a round. `end_ms`: when the
/// workloads stopped issuing requests (nemesis time).
pub fn stalls(events: &[Event], times: &[Vec<u64>], end_ms: u64) -> Vec<Stall> {
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let Some(fault) = ev.fault else { continue };
        let from = ev.at_ms;
        let next_injection = events[i + 1..]
            .iter()
            .find(|e| e.fault.is_some())
            .map(|e| e.at_ms);
        let undo = events[i + 1..]
            .iter()
            .take_while(|e| e.fault.is_none())
            .last()
            .map_or(end_ms, |e| e.at_ms);
        let to = (undo + SETTLE_MS)
            .min(next_injection.unwrap_or(u64::MAX))
            .min(end_ms);
        let mut worst: Option<(u64, usize)> = None;
        for (node, t) in times.iter().enumerate() {
            if ev.unhealthy.contains(&node) {
                continue;
            }
            let g = longest_gap(t, from, to);
            if worst.is_none_or(|(w, _)| g > w) {
                worst = Some((g, node));
            }
        }
        if let Some((longest_ms, node)) = worst {
            out.push(Stall {
                fault: fault.name(),
                longest_ms,
                node,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nemesis::{Fault, Role};

    #[test]
    fn longest_gap_counts_the_window_ends() {
        assert_eq!(longest_gap(&[], 100, 400), 300);
        assert_eq!(longest_gap(&[50, 150, 160, 390, 500], 100, 400), 230);
        // A burst at the start, silence to the end.
        assert_eq!(longest_gap(&[101, 102], 100, 400), 298);
        assert_eq!(longest_gap(&[1, 2, 3], 400, 100), 0);
    }

    fn ev(at_ms: u64, fault: Option<Fault>, unhealthy: Vec<usize>) -> Event {
        Event {
            at_ms,
            fault,
            node: None,
            text: String::new(),
            unhealthy,
        }
    }

    #[test]
    fn a_stall_at_a_healthy_node_counts_and_one_at_the_faulty_node_does_not() {
        let events = vec![
            ev(1000, Some(Fault::Pause(Role::Leader)), vec![0]),
            ev(4000, None, vec![]),
            ev(9000, Some(Fault::IsolateLeader), vec![2]),
            ev(10_000, None, vec![]),
        ];
        // n1 (paused) silent throughout; n2 silent 1500..3000; n3 steady.
        let steady: Vec<u64> = (0..200).map(|i| i * 100).collect();
        let n2: Vec<u64> = steady
            .iter()
            .copied()
            .filter(|&t| !(1500..3000).contains(&t))
            .collect();
        let times = vec![Vec::new(), n2, steady.clone()];
        let s = stalls(&events, &times, 20_000);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].fault, Fault::Pause(Role::Leader).name());
        assert_eq!((s[0].longest_ms, s[0].node), (1600, 1));
        // Second fault: n1 is healthy again but its clients completed
        // nothing: the whole window [9000, 11000] counts.
        assert_eq!((s[1].longest_ms, s[1].node), (2000, 0));
    }

    #[test]
    fn times_are_lined_up_on_the_nemesis_clock() {
        let a = OkTimes {
            start_unix_ns: 5_000_000_000,
            ok_ns: vec![vec![1_000_000, 3_000_000_000], vec![]],
        };
        let b = OkTimes {
            start_unix_ns: 4_000_000_000,
            ok_ns: vec![vec![2_500_000_000], vec![7_000_000]],
        };
        // Nemesis time 0 = 4.5 s: b's 7 ms completion came before it.
        let m = merge(&[a, b], 4_500_000_000, 2);
        assert_eq!(m, vec![vec![501, 2000, 3500], vec![]]);
    }
}
