//! Leader placement: which node should lead each data group, and the
//! automatic rebalancer that moves leadership back after failures.
//!
//! Group `g` prefers the `(g mod n)`-th of its `n` voters in id order, so
//! leaders spread evenly (16 groups over 3 nodes: 6, 5, 5) and every node
//! computes the same answer from its own view. After a node restarts the
//! others lead its groups; `CLUSTER REBALANCE` moves them back by hand,
//! and the rebalancer here does it on its own: every node pulls back the
//! groups that prefer it, one leadership transfer at a time, once every
//! data group has had a leader for [`SETTLE`] (an unsettled cluster —
//! an election under way, a node cut off — is left alone), at most one
//! move per [`PACE`], each node only for itself (so two nodes never fight
//! over one group). The cluster-wide setting `cluster-auto-rebalance no`
//! turns it off (`CLUSTER SETTING`).
//!
//! Cost: a transfer is one MsgTimeoutNow and one election round in one
//! group (the group refuses proposals for that round trip); a restarted
//! node of a 64-group, 3-node cluster takes back its ~21 groups in about
//! 21 × PACE.

use std::time::Duration;

/// How long every data group must have had a known leader before the
/// rebalancer moves anything.
pub(crate) const SETTLE: Duration = Duration::from_secs(5);
/// At most one move per node this often.
pub(crate) const PACE: Duration = Duration::from_millis(500);
/// The meta-group setting that switches the rebalancer off (`no`).
pub const AUTO_REBALANCE: &str = "cluster-auto-rebalance";

/// The node that should lead group `g`, given its voters (any order) and
/// the placement's preferred leader (`placed`, used while it is a voter:
/// with a replication factor set, docs/design/placement.md balances
/// leaders over the nodes holding each group; else the `g mod n` rule).
pub(crate) fn preferred(g: u16, voters: &[u64], placed: Option<u64>) -> Option<u64> {
    if let Some(p) = placed.filter(|p| voters.contains(p)) {
        return Some(p);
    }
    if voters.is_empty() {
        return None;
    }
    let mut v = voters.to_vec();
    v.sort_unstable();
    Some(v[g as usize % v.len()])
}

/// The next group node `me` should take leadership of: one that prefers
/// `me`, has a leader that is another voter, and has `me` as a voter.
/// `groups[g]` = (voters, leader (0 = none), the placement's preferred
/// leader). Scans from `start` so that a group whose transfer keeps
/// failing does not block the others.
pub(crate) fn next_move(
    me: u64,
    groups: &[(Vec<u64>, u64, Option<u64>)],
    start: usize,
) -> Option<u16> {
    let n = groups.len();
    (0..n).map(|i| (start + i) % n).find_map(|g| {
        let (voters, leader, placed) = &groups[g];
        let g16 = u16::try_from(g).ok()?;
        (*leader != 0 && *leader != me && preferred(g16, voters, *placed) == Some(me))
            .then_some(g16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_spreads_groups_evenly_whatever_the_voter_order() {
        let mut count = [0usize; 4];
        for g in 0..16u16 {
            let p = preferred(g, &[3, 1, 2], None).unwrap();
            assert_eq!(Some(p), preferred(g, &[1, 2, 3], None));
            count[p as usize] += 1;
        }
        assert_eq!(&count[1..], &[6, 5, 5]);
        assert_eq!(preferred(0, &[], None), None);
        // The placement's choice wins while it is a voter.
        assert_eq!(preferred(0, &[1, 2, 3], Some(3)), Some(3));
        assert_eq!(preferred(0, &[1, 2, 3], Some(9)), Some(1));
    }

    #[test]
    fn a_node_pulls_only_the_groups_that_prefer_it() {
        // Node 1 restarted: node 2 leads everything.
        let groups: Vec<(Vec<u64>, u64, Option<u64>)> =
            (0..6).map(|_| (vec![1, 2, 3], 2, None)).collect();
        assert_eq!(next_move(1, &groups, 0), Some(0));
        assert_eq!(next_move(1, &groups, 1), Some(3));
        assert_eq!(next_move(3, &groups, 0), Some(2));
        // Node 2 leads what it prefers and wants nothing more.
        assert_eq!(next_move(2, &groups, 0), None);
        // No leader (an election under way), or not a voter: no move.
        let unsettled: Vec<(Vec<u64>, u64, Option<u64>)> =
            (0..6).map(|_| (vec![1, 2, 3], 0, None)).collect();
        assert_eq!(next_move(1, &unsettled, 0), None);
        let elsewhere: Vec<(Vec<u64>, u64, Option<u64>)> =
            (0..6).map(|_| (vec![2, 3, 4], 2, None)).collect();
        assert_eq!(next_move(1, &elsewhere, 0), None);
        // A placed leader: node 3 pulls group 0, node 1 nothing there.
        let placed: Vec<(Vec<u64>, u64, Option<u64>)> = vec![(vec![1, 2, 3], 2, Some(3))];
        assert_eq!(next_move(3, &placed, 0), Some(0));
        assert_eq!(next_move(1, &placed, 0), None);
    }
}
