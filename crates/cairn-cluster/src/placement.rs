//! Replica placement: which nodes hold each data group's replicas and
//! which replica should lead it (docs/design/placement.md).
//!
//! [`place`] is a pure function of the members (id, weight, zone), the
//! number of groups, the replication factor and the current placement:
//! every node computes the same answer from the same meta state, whatever
//! the order of its input. Each node gets an integer quota — the floor or
//! the ceiling of its weighted share of all replicas, after the zone rule
//! and the one-replica-per-group limit — and the placement starts from
//! the current one, keeps every replica still allowed and moves only what
//! the quotas require. Rendezvous ranks (a hash of group and node) break
//! the ties, so which groups a node takes looks random but is stable.
//!
//! The one thing not to get wrong: a from-scratch recompute is *not*
//! minimal under a load bound. Always pass the current placement; the
//! number of replicas copied is then [`minimum_moves`] or close to it.
//!
//! ```
//! use cairn_cluster::placement::{moves, place, Member};
//! let nodes: Vec<Member> = (1..=3).map(|id| Member::new(id, 1)).collect();
//! let three = place(&nodes, 64, 3, None).unwrap();
//! let four_nodes: Vec<Member> = (1..=4).map(|id| Member::new(id, 1)).collect();
//! let four = place(&four_nodes, 64, 3, Some(&three)).unwrap();
//! // Node 4 takes its quarter of the 192 replicas, nothing else moves.
//! assert_eq!(moves(&three, &four).len(), 48);
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

use crate::meta::MAX_MEMBERS;

/// The replication factor when the cluster's settings name none.
pub const REPLICATION_DEFAULT: usize = 3;

/// A member as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node id (positive, unique).
    pub id: u64,
    /// Relative capacity: a node of weight 2 gets twice the replicas and
    /// leaders of a node of weight 1. 0 = draining: it gets nothing.
    pub weight: u32,
    /// Failure domain (rack, zone). Replicas of a group are spread over as
    /// many zones as the replication factor allows. A node without a label
    /// is a zone of its own.
    pub zone: Option<String>,
}

impl Member {
    /// A member without a zone label.
    pub fn new(id: u64, weight: u32) -> Self {
        Member {
            id,
            weight,
            zone: None,
        }
    }

    /// A member in zone `zone`.
    pub fn in_zone(id: u64, weight: u32, zone: &str) -> Self {
        Member {
            id,
            weight,
            zone: Some(zone.to_string()),
        }
    }
}

/// Where every data group's replicas are: `groups[g]` lists the node ids
/// of group `g`, its preferred leader first, the others in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Replicas per group, preferred leader first.
    pub groups: Vec<Vec<u64>>,
}

impl Placement {
    /// The preferred leader of group `g`, if it has replicas.
    pub fn leader(&self, g: u16) -> Option<u64> {
        self.groups.get(g as usize).and_then(|r| r.first().copied())
    }

    /// Replicas held per node (nodes holding none are absent).
    pub fn replicas_per_node(&self) -> BTreeMap<u64, usize> {
        let mut n = BTreeMap::new();
        for &id in self.groups.iter().flatten() {
            *n.entry(id).or_insert(0) += 1;
        }
        n
    }

    /// Groups each node is the preferred leader of (nodes leading none
    /// are absent).
    pub fn leaders_per_node(&self) -> BTreeMap<u64, usize> {
        let mut n = BTreeMap::new();
        for id in self.groups.iter().filter_map(|r| r.first()) {
            *n.entry(*id).or_insert(0) += 1;
        }
        n
    }
}

/// One membership change of one group, as a controller carries it out:
/// add `add` (learner, catch up by snapshot, promote), then remove
/// `remove`. A move with an `add` copies the group's data once; one with
/// only a `remove` copies nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    /// The data group.
    pub group: u16,
    /// The node that gains a replica.
    pub add: Option<u64>,
    /// The node that loses one.
    pub remove: Option<u64>,
}

/// Inputs [`place`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Two members with one id.
    #[error("node {0} is listed twice")]
    DuplicateNode(u64),
    /// Node ids are positive (0 means "none" elsewhere in the cluster).
    #[error("node id 0 is not valid")]
    ZeroNodeId,
    /// More members than the meta group admits.
    #[error("at most {MAX_MEMBERS} nodes, got {0}")]
    TooManyNodes(usize),
    /// A replication factor of 0 would place nothing.
    #[error("the replication factor must be at least 1")]
    ZeroReplication,
}

/// Places `groups` data groups with `rf` replicas each (fewer when fewer
/// nodes have weight) on `members`, starting from `current` (see the
/// module doc). Deterministic and independent of the order of `members`.
/// With no member of positive weight every group is left empty: a caller
/// must not apply that.
pub fn place(
    members: &[Member],
    groups: u16,
    rf: usize,
    current: Option<&Placement>,
) -> Result<Placement, PlacementError> {
    let lay = Layout::new(members, groups, rf)?;
    let kept = lay.keep(current);
    let counts = lay.counts(&kept);
    let target = lay.quotas(&counts).iter().map(|s| s.target).collect();
    let mut work = Work {
        lay: &lay,
        sets: kept.clone(),
        kept,
        count: counts,
        target,
    };
    work.fill_holes();
    work.shed_surplus();
    let prev: Vec<Option<usize>> = (0..lay.groups)
        .map(|g| {
            current
                .and_then(|p| p.groups.get(g))
                .and_then(|r| r.first())
                .and_then(|&id| lay.index(id))
        })
        .collect();
    // The greedy choice can land a node over its quota that a second pass,
    // starting from the first's answer, corrects; iterate to the fixed
    // point (so placing again from the result changes nothing, which the
    // controller relies on: it stores a placement only when it differs).
    let mut leaders = choose_leaders(&lay, &work.sets, &prev);
    for _ in 0..8 {
        let again = choose_leaders(&lay, &work.sets, &leaders);
        if again == leaders {
            break;
        }
        leaders = again;
    }
    let groups = work
        .sets
        .iter()
        .zip(leaders)
        .map(|(set, leader)| {
            let mut ids: Vec<u64> = set
                .iter()
                .filter(|&&x| Some(x) != leader)
                .map(|&x| lay.ids[x])
                .collect();
            ids.sort_unstable();
            if let Some(l) = leader {
                ids.insert(0, lay.ids[l]);
            }
            ids
        })
        .collect();
    Ok(Placement { groups })
}

/// The membership changes that turn `from` into `to`, per group in group
/// order: each added replica paired with a removed one (both in id order),
/// the rest unpaired. The replicas copied are the moves with an `add`.
pub fn moves(from: &Placement, to: &Placement) -> Vec<Move> {
    let empty = Vec::new();
    let len = from.groups.len().max(to.groups.len()).min(1 << 16);
    let mut out = Vec::new();
    for g in 0..len {
        let a = from.groups.get(g).unwrap_or(&empty);
        let b = to.groups.get(g).unwrap_or(&empty);
        let mut adds: Vec<u64> = b.iter().filter(|id| !a.contains(id)).copied().collect();
        let mut removes: Vec<u64> = a.iter().filter(|id| !b.contains(id)).copied().collect();
        adds.sort_unstable();
        removes.sort_unstable();
        for i in 0..adds.len().max(removes.len()) {
            out.push(Move {
                group: g as u16,
                add: adds.get(i).copied(),
                remove: removes.get(i).copied(),
            });
        }
    }
    out
}

/// A lower bound on the replicas any placement within the load bound must
/// copy to get from `from` to a placement of `members`: the larger of
/// (a) what the nodes below the floor of their share lack, and (b) the
/// replicas that must go (above the ceiling of a share, beyond `rf`, or
/// beyond the zone limit) plus the replicas the groups lack, less what
/// they have in excess. A join: about the new node's share; a removal:
/// the removed node's replicas.
pub fn minimum_moves(
    from: &Placement,
    members: &[Member],
    groups: u16,
    rf: usize,
) -> Result<usize, PlacementError> {
    let lay = Layout::new(members, groups, rf)?;
    let quotas = lay.quotas(&lay.counts(&lay.keep(Some(from))));
    // Every current replica on a node of positive weight, once per group.
    let held: Vec<Vec<usize>> = (0..lay.groups)
        .map(|g| {
            let mut set: Vec<usize> = from
                .groups
                .get(g)
                .into_iter()
                .flatten()
                .filter_map(|&id| lay.index(id))
                .collect();
            set.sort_unstable();
            set.dedup();
            set
        })
        .collect();
    let counts = lay.counts(&held);
    let below: usize = quotas
        .iter()
        .zip(&counts)
        .map(|(q, &c)| q.lo.saturating_sub(c))
        .sum();
    let above: usize = quotas
        .iter()
        .zip(&counts)
        .map(|(q, &c)| c.saturating_sub(q.hi))
        .sum();
    let beyond_rf: usize = held.iter().map(|set| set.len().saturating_sub(lay.r)).sum();
    let beyond_zone: usize = held
        .iter()
        .map(|set| {
            let mut per_zone = vec![0usize; lay.zones];
            for &x in set {
                per_zone[lay.zone[x]] += 1;
            }
            per_zone
                .iter()
                .map(|&n| n.saturating_sub(lay.zone_cap))
                .sum::<usize>()
        })
        .sum();
    let removals = above.max(beyond_rf).max(beyond_zone);
    let net: i64 = held.iter().map(|set| lay.r as i64 - set.len() as i64).sum();
    Ok(below.max((removals as i64 + net).max(0) as usize))
}

/// The rendezvous rank of `node` for group `g`: a fixed 64-bit mix (no
/// std hasher, whose output may change between Rust releases).
fn rank(g: usize, node: u64) -> u64 {
    mix(mix(node) ^ (g as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The normalized inputs: the nodes of positive weight in id order
/// (indices below are positions in `ids`) and the derived limits.
struct Layout {
    ids: Vec<u64>,
    weight: Vec<u64>,
    zone: Vec<usize>,
    zones: usize,
    groups: usize,
    /// Replicas per group: min(rf, nodes).
    r: usize,
    /// Replicas of one group in one zone at most.
    zone_cap: usize,
}

impl Layout {
    fn new(members: &[Member], groups: u16, rf: usize) -> Result<Layout, PlacementError> {
        if rf == 0 {
            return Err(PlacementError::ZeroReplication);
        }
        if members.len() > MAX_MEMBERS {
            return Err(PlacementError::TooManyNodes(members.len()));
        }
        let mut sorted: Vec<&Member> = members.iter().collect();
        sorted.sort_by_key(|m| m.id);
        if let Some(pair) = sorted.windows(2).find(|p| p[0].id == p[1].id) {
            return Err(PlacementError::DuplicateNode(pair[0].id));
        }
        if sorted.first().is_some_and(|m| m.id == 0) {
            return Err(PlacementError::ZeroNodeId);
        }
        sorted.retain(|m| m.weight > 0);
        // Labelled zones first, in label order; then one zone per
        // unlabelled node, in id order.
        let labels: BTreeMap<&str, usize> = sorted
            .iter()
            .filter_map(|m| m.zone.as_deref())
            .map(|z| (z, 0))
            .collect();
        let labels: BTreeMap<&str, usize> =
            labels.keys().enumerate().map(|(i, z)| (*z, i)).collect();
        let mut zones = labels.len();
        let zone = sorted
            .iter()
            .map(|m| match m.zone.as_deref().and_then(|z| labels.get(z)) {
                Some(&z) => z,
                None => {
                    zones += 1;
                    zones - 1
                }
            })
            .collect::<Vec<_>>();
        let r = rf.min(sorted.len());
        let mut lay = Layout {
            ids: sorted.iter().map(|m| m.id).collect(),
            weight: sorted.iter().map(|m| u64::from(m.weight)).collect(),
            zone,
            zones,
            groups: groups as usize,
            r,
            zone_cap: 0,
        };
        lay.zone_cap = lay.spread_limit();
        Ok(lay)
    }

    /// Replicas of a group per zone at most: ceil(r / zones), so r ≤ zones
    /// means distinct zones; raised while small zones could not hold r.
    fn spread_limit(&self) -> usize {
        if self.r == 0 {
            return 0;
        }
        let sizes = self.zone_sizes();
        let mut cap = self.r.div_ceil(self.zones);
        while sizes.iter().map(|&n| n.min(cap)).sum::<usize>() < self.r {
            cap += 1;
        }
        cap
    }

    fn zone_sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.zones];
        for &z in &self.zone {
            sizes[z] += 1;
        }
        sizes
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// The current replicas that stay allowed, in their current order:
    /// on a node of positive weight, once per group, within the zone
    /// limit and the replica count.
    fn keep(&self, current: Option<&Placement>) -> Vec<Vec<usize>> {
        (0..self.groups)
            .map(|g| {
                let mut kept: Vec<usize> = Vec::with_capacity(self.r);
                let reps = current.and_then(|p| p.groups.get(g));
                for x in reps.into_iter().flatten().filter_map(|&id| self.index(id)) {
                    let in_zone = kept
                        .iter()
                        .filter(|&&y| self.zone[y] == self.zone[x])
                        .count();
                    if kept.len() < self.r && !kept.contains(&x) && in_zone < self.zone_cap {
                        kept.push(x);
                    }
                }
                kept
            })
            .collect()
    }

    fn counts(&self, sets: &[Vec<usize>]) -> Vec<usize> {
        let mut c = vec![0; self.ids.len()];
        for &x in sets.iter().flatten() {
            c[x] += 1;
        }
        c
    }

    /// Each node's quota of replicas: zones first (by weight, at most
    /// `groups × min(zone_cap, nodes in zone)`), then the nodes of each
    /// zone (by weight, at most one replica per group). Ties in rounding
    /// go to whoever holds more now, so a balanced placement stays put.
    fn quotas(&self, counts: &[usize]) -> Vec<Quota> {
        let n = self.ids.len();
        let mut zone_items = vec![Item::default(); self.zones];
        let sizes = self.zone_sizes();
        for (z, item) in zone_items.iter_mut().enumerate() {
            item.cap = (self.groups * sizes[z].min(self.zone_cap)) as u64;
            item.tie = mix(z as u64);
        }
        for x in 0..n {
            let item = &mut zone_items[self.zone[x]];
            item.weight += self.weight[x];
            item.current += counts[x] as u64;
        }
        let zone_quota = apportion((self.groups * self.r) as u64, &zone_items);
        let mut out = vec![Quota::default(); n];
        for (z, zq) in zone_quota.iter().enumerate() {
            let members: Vec<usize> = (0..n).filter(|&x| self.zone[x] == z).collect();
            let items: Vec<Item> = members
                .iter()
                .map(|&x| Item {
                    weight: self.weight[x],
                    cap: self.groups as u64,
                    current: counts[x] as u64,
                    tie: mix(self.ids[x]),
                })
                .collect();
            for (&x, q) in members.iter().zip(apportion(zq.target as u64, &items)) {
                out[x] = q;
            }
        }
        out
    }
}

/// One claimant of an apportioned total.
#[derive(Clone, Copy, Debug, Default)]
struct Item {
    weight: u64,
    cap: u64,
    current: u64,
    tie: u64,
}

/// An integer share: `lo`/`hi` are the floor and ceiling of the exact
/// share, `target` the one chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Quota {
    lo: usize,
    hi: usize,
    target: usize,
}

/// Splits `total` in proportion to the weights, no item above its cap
/// (water-filling: capped items get their cap, the rest share what is
/// left), in exact integer arithmetic, then rounds: the units left after
/// the floors go to items holding at least their ceiling now, then to the
/// largest remainders, then by `tie`.
fn apportion(total: u64, items: &[Item]) -> Vec<Quota> {
    let mut capped = vec![false; items.len()];
    let (rest, free_weight) = loop {
        let rest = total.saturating_sub(
            items
                .iter()
                .zip(&capped)
                .filter(|(_, &c)| c)
                .map(|(i, _)| i.cap)
                .sum(),
        );
        let free_weight: u64 = items
            .iter()
            .zip(&capped)
            .filter(|(_, &c)| !c)
            .map(|(i, _)| i.weight)
            .sum();
        let mut changed = false;
        for (i, c) in items.iter().zip(capped.iter_mut()) {
            if !*c
                && u128::from(rest) * u128::from(i.weight)
                    > u128::from(i.cap) * u128::from(free_weight)
            {
                *c = true;
                changed = true;
            }
        }
        if !changed {
            break (rest, free_weight);
        }
    };
    let mut out: Vec<Quota> = Vec::with_capacity(items.len());
    let mut remainders: Vec<(usize, u128)> = Vec::new();
    for (k, (i, &c)) in items.iter().zip(&capped).enumerate() {
        let (floor, rem) = if c {
            (i.cap, 0)
        } else if free_weight == 0 {
            (0, 0)
        } else {
            let exact = u128::from(rest) * u128::from(i.weight);
            let fw = u128::from(free_weight);
            ((exact / fw) as u64, exact % fw)
        };
        if rem > 0 {
            remainders.push((k, rem));
        }
        let lo = floor as usize;
        let hi = lo + usize::from(rem > 0);
        out.push(Quota { lo, hi, target: lo });
    }
    let assigned: u64 = out.iter().map(|q| q.lo as u64).sum();
    let extra = total.saturating_sub(assigned) as usize;
    remainders.sort_by_key(|&(k, rem)| {
        let holds_ceiling = items[k].current >= out[k].hi as u64;
        (Reverse(holds_ceiling), Reverse(rem), items[k].tie)
    });
    for &(k, _) in remainders.iter().take(extra) {
        out[k].target += 1;
    }
    out
}

/// The placement being built: node indices per group and per-node counts
/// against the quotas.
struct Work<'a> {
    lay: &'a Layout,
    sets: Vec<Vec<usize>>,
    /// What `keep` kept: replacing one of these copies data; replacing a
    /// replica added in this run only changes where a copy goes.
    kept: Vec<Vec<usize>>,
    count: Vec<usize>,
    target: Vec<usize>,
}

impl Work<'_> {
    fn deficit(&self, x: usize) -> usize {
        self.target[x].saturating_sub(self.count[x])
    }

    /// Whether `x` may join group `g` once `leaving` has left it.
    fn may_join(&self, g: usize, x: usize, leaving: Option<usize>) -> bool {
        let set = &self.sets[g];
        let z = self.lay.zone[x];
        let in_zone = set
            .iter()
            .filter(|&&y| Some(y) != leaving && self.lay.zone[y] == z)
            .count();
        !set.contains(&x) && in_zone < self.lay.zone_cap
    }

    fn swap(&mut self, g: usize, leaving: Option<usize>, joining: usize) {
        if let Some(l) = leaving {
            self.sets[g].retain(|&y| y != l);
            self.count[l] -= 1;
        }
        self.sets[g].push(joining);
        self.count[joining] += 1;
    }

    /// The best node below its quota to join `g` in place of `leaving`:
    /// the largest deficit, then the highest rendezvous rank.
    fn best_joiner(
        &self,
        g: usize,
        leaving: Option<usize>,
        banned: Option<usize>,
    ) -> Option<usize> {
        (0..self.lay.ids.len())
            .filter(|&y| Some(y) != banned && self.deficit(y) > 0 && self.may_join(g, y, leaving))
            .max_by_key(|&y| (self.deficit(y), rank(g, self.lay.ids[y])))
    }

    /// Gives every group its `r` replicas: a node below quota when one can
    /// join, else by a chain of reassignments, else the least loaded node
    /// that may join (over its quota: only when the zones leave no choice).
    fn fill_holes(&mut self) {
        for g in 0..self.lay.groups {
            while self.sets[g].len() < self.lay.r {
                if let Some(y) = self.best_joiner(g, None, None) {
                    self.swap(g, None, y);
                } else if !self.augment(&[(g, None)], None) && !self.overfill(g) {
                    break; // unreachable: r ≤ nodes
                }
            }
        }
    }

    fn overfill(&mut self, g: usize) -> bool {
        let lay = self.lay;
        let load = |y: usize| self.count[y] as i64 - self.target[y] as i64;
        let pick = |zones: bool| {
            (0..lay.ids.len())
                .filter(|&y| !self.sets[g].contains(&y) && (!zones || self.may_join(g, y, None)))
                .min_by_key(|&y| (load(y), Reverse(rank(g, lay.ids[y]))))
        };
        match pick(true).or_else(|| pick(false)) {
            Some(y) => {
                self.swap(g, None, y);
                true
            }
            None => false,
        }
    }

    /// Moves replicas off nodes above their quota onto nodes below it,
    /// the largest surplus first, one replica at a time.
    fn shed_surplus(&mut self) {
        let n = self.lay.ids.len();
        let mut stuck = vec![false; n];
        loop {
            let over = (0..n)
                .filter(|&x| !stuck[x] && self.count[x] > self.target[x])
                .max_by_key(|&x| {
                    (
                        self.count[x] - self.target[x],
                        Reverse(mix(self.lay.ids[x])),
                    )
                });
            let Some(x) = over else { break };
            if !self.shed_direct(x) {
                let starts: Vec<(usize, Option<usize>)> = (0..self.lay.groups)
                    .filter(|&h| self.sets[h].contains(&x))
                    .map(|h| (h, Some(x)))
                    .collect();
                if !self.augment(&starts, Some(x)) {
                    stuck[x] = true;
                }
            }
        }
    }

    /// One replica of `x` handed to a node below quota: the largest
    /// deficit, then a group `x` does not lead now (fewer leadership
    /// changes), then the highest rendezvous rank of the new node.
    fn shed_direct(&mut self, x: usize) -> bool {
        let best = (0..self.lay.groups)
            .filter(|&h| self.sets[h].contains(&x))
            .filter_map(|h| {
                let y = self.best_joiner(h, Some(x), None)?;
                let leads = self.kept[h].first() == Some(&x);
                Some(((self.deficit(y), !leads, rank(h, self.lay.ids[y])), h, y))
            })
            .max_by_key(|&(key, _, _)| key);
        if let Some((_, h, y)) = best {
            self.swap(h, Some(x), y);
        }
        best.is_some()
    }

    /// Finds the cheapest chain "y joins group h_k in place of x_k, x_k
    /// joins h_(k-1) in place of x_(k-1), ..., x_1 joins a start group in
    /// place of its `leaving`", ending at a node `y` below quota, and
    /// applies it. Cost = replicas disturbed that were kept (a replica
    /// added in this run moves for free). A 0-1 BFS over the states
    /// (group, the replica leaving it) — not over groups alone: which
    /// replica leaves decides who may join under the zone rule, so a group
    /// reached first with one leaving replica must stay reachable with
    /// another. A chain never visits a group twice (each step is checked
    /// against the group as it is). Not complete: a state is settled by
    /// its first cheapest chain, so a costlier one that avoids a group the
    /// first passed is dropped (docs/design/placement.md, step 6).
    /// O(groups × r × (nodes + groups) × r). `banned` never joins (the
    /// node shedding).
    fn augment(&mut self, starts: &[(usize, Option<usize>)], banned: Option<usize>) -> bool {
        let (gn, n) = (self.lay.groups, self.lay.ids.len());
        // State (g, slot): slot < r is `sets[g][slot]` leaving, slot r is
        // nobody leaving (a hole to fill).
        let width = self.lay.r + 1;
        let mut member_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for (g, set) in self.sets.iter().enumerate() {
            for (slot, &x) in set.iter().enumerate() {
                member_of[x].push((g, slot));
            }
        }
        let mut dist = vec![usize::MAX; gn * width];
        let mut parent: Vec<Option<usize>> = vec![None; gn * width];
        let mut done = vec![false; gn * width];
        let mut queue = VecDeque::new();
        for &(g, l) in starts {
            let slot = match l {
                Some(x) => match self.sets[g].iter().position(|&y| y == x) {
                    Some(slot) => slot,
                    None => continue,
                },
                None => width - 1,
            };
            let s = g * width + slot;
            if dist[s] == usize::MAX {
                dist[s] = 0;
                queue.push_back(s);
            }
        }
        while let Some(s) = queue.pop_front() {
            if std::mem::replace(&mut done[s], true) {
                continue;
            }
            let (h, out) = (s / width, leaving(&self.sets, s, width));
            if let Some(y) = self.best_joiner(h, out, banned) {
                self.apply_chain(s, y, &parent, width);
                return true;
            }
            for (x, groups_of_x) in member_of.iter().enumerate() {
                if Some(x) == banned || !self.may_join(h, x, out) {
                    continue;
                }
                for &(h2, slot) in groups_of_x {
                    let t = h2 * width + slot;
                    let cost = dist[s] + usize::from(self.kept[h2].contains(&x));
                    if done[t] || cost >= dist[t] || on_chain(&parent, s, h2, width) {
                        continue;
                    }
                    dist[t] = cost;
                    parent[t] = Some(s);
                    if cost == dist[s] {
                        queue.push_front(t);
                    } else {
                        queue.push_back(t);
                    }
                }
            }
        }
        false
    }

    /// Applies the chain ending at state `end`, `joining` taking the place
    /// there of the replica leaving: each state's leaving replica is read
    /// before any swap (a swap reorders its group's set), then the swaps
    /// run from the end back to the start.
    fn apply_chain(&mut self, end: usize, joining: usize, parent: &[Option<usize>], width: usize) {
        let mut chain = vec![end];
        while let Some(&p) = chain.last().and_then(|&s| parent[s].as_ref()) {
            chain.push(p);
        }
        let steps: Vec<(usize, Option<usize>)> = chain
            .iter()
            .map(|&s| (s / width, leaving(&self.sets, s, width)))
            .collect();
        let mut joining = joining;
        for (g, l) in steps {
            self.swap(g, l, joining);
            match l {
                Some(l) => joining = l,
                None => break,
            }
        }
    }
}

/// The replica leaving its group in search state `s` (`None`: a hole).
fn leaving(sets: &[Vec<usize>], s: usize, width: usize) -> Option<usize> {
    (s % width < width - 1)
        .then(|| sets[s / width].get(s % width).copied())
        .flatten()
}

/// Whether the chain ending at state `s` already passes group `g`.
fn on_chain(parent: &[Option<usize>], mut s: usize, g: usize, width: usize) -> bool {
    loop {
        if s / width == g {
            return true;
        }
        match parent[s] {
            Some(p) => s = p,
            None => return false,
        }
    }
}

/// A preferred leader per group: each node's quota of leaders is its
/// share of the groups in proportion to the replicas it holds (rounded as
/// in [`apportion`], ties to who leads more now); current leaders stay
/// where their node is within quota, the other groups take the replica
/// with the most quota left (rendezvous rank breaks ties), a chain of
/// reassignments when every replica is full, and the least loaded replica
/// as the last resort.
fn choose_leaders(lay: &Layout, sets: &[Vec<usize>], prev: &[Option<usize>]) -> Vec<Option<usize>> {
    let n = lay.ids.len();
    let counts = lay.counts(sets);
    let prev: Vec<Option<usize>> = prev
        .iter()
        .zip(sets)
        .map(|(p, set)| p.filter(|x| set.contains(x)))
        .collect();
    let mut led_before = vec![0u64; n];
    for &x in prev.iter().flatten() {
        led_before[x] += 1;
    }
    let items: Vec<Item> = (0..n)
        .map(|x| Item {
            weight: counts[x] as u64,
            cap: counts[x] as u64,
            current: led_before[x],
            tie: mix(lay.ids[x]),
        })
        .collect();
    let total = sets.iter().filter(|s| !s.is_empty()).count() as u64;
    let quota: Vec<usize> = apportion(total, &items).iter().map(|q| q.target).collect();
    let mut lead = Leaders {
        sets,
        quota,
        count: vec![0; n],
        leader: vec![None; sets.len()],
    };
    for (g, p) in prev.iter().enumerate() {
        if let Some(x) = *p {
            if lead.count[x] < lead.quota[x] {
                lead.set(g, x);
            }
        }
    }
    for (g, set) in sets.iter().enumerate() {
        if set.is_empty() || lead.leader[g].is_some() {
            continue;
        }
        let spare = set
            .iter()
            .copied()
            .filter(|&x| lead.count[x] < lead.quota[x])
            .max_by_key(|&x| (lead.quota[x] - lead.count[x], rank(g, lay.ids[x])));
        match spare {
            Some(x) => lead.set(g, x),
            None if lead.augment(g) => {}
            None => {
                let least = set.iter().copied().min_by_key(|&x| {
                    let over = lead.count[x] as i64 - lead.quota[x] as i64;
                    (over, Reverse(rank(g, lay.ids[x])))
                });
                if let Some(x) = least {
                    lead.set(g, x);
                }
            }
        }
    }
    lead.leader
}

struct Leaders<'a> {
    sets: &'a [Vec<usize>],
    quota: Vec<usize>,
    count: Vec<usize>,
    leader: Vec<Option<usize>>,
}

impl Leaders<'_> {
    fn set(&mut self, g: usize, x: usize) {
        if let Some(old) = self.leader[g].replace(x) {
            self.count[old] -= 1;
        }
        self.count[x] += 1;
    }

    /// An augmenting path: group `g` takes a full replica `x` as leader,
    /// a group `x` led hands over to another of its replicas, ..., until
    /// a replica with quota left. BFS over groups, O(groups × r).
    fn augment(&mut self, g: usize) -> bool {
        let mut led: Vec<Vec<usize>> = vec![Vec::new(); self.count.len()];
        for (h, l) in self.leader.iter().enumerate() {
            if let Some(x) = *l {
                led[x].push(h);
            }
        }
        // via[h] = (the group h's leader moves to, that leader).
        let mut via: Vec<Option<(usize, usize)>> = vec![None; self.sets.len()];
        let mut seen = vec![false; self.sets.len()];
        seen[g] = true;
        let mut queue = VecDeque::from([g]);
        while let Some(h) = queue.pop_front() {
            let moved = via[h].map(|(_, x)| x);
            let spare = self.sets[h]
                .iter()
                .copied()
                .find(|&x| Some(x) != moved && self.count[x] < self.quota[x]);
            if let Some(mut x) = spare {
                let mut h = h;
                loop {
                    self.set(h, x);
                    match via[h] {
                        Some((p, l)) => (h, x) = (p, l),
                        None => return true,
                    }
                }
            }
            for &x in &self.sets[h] {
                if Some(x) == moved {
                    continue;
                }
                for &h2 in &led[x] {
                    if !std::mem::replace(&mut seen[h2], true) {
                        via[h2] = Some((h, x));
                        queue.push_back(h2);
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const GROUPS: u16 = 64;

    fn equal(ids: impl IntoIterator<Item = u64>) -> Vec<Member> {
        ids.into_iter().map(|id| Member::new(id, 1)).collect()
    }

    /// Replicas copied from `from` to `to`.
    fn copies(from: &Placement, to: &Placement) -> usize {
        moves(from, to).iter().filter(|m| m.add.is_some()).count()
    }

    /// Max over mean of the per-node counts (nodes of positive weight,
    /// holding none included in the mean).
    fn max_over_mean(counts: &BTreeMap<u64, usize>, nodes: usize) -> f64 {
        let total: usize = counts.values().sum();
        let max = counts.values().copied().max().unwrap_or(0);
        max as f64 * nodes as f64 / total as f64
    }

    /// What every placement must satisfy: exactly min(rf, live nodes)
    /// distinct replicas per group, all on nodes of positive weight, and
    /// no zone holding more of a group than the spread rule allows.
    fn check(p: &Placement, members: &[Member], groups: u16, rf: usize) {
        let live: BTreeMap<u64, String> = members
            .iter()
            .filter(|m| m.weight > 0)
            .map(|m| {
                (
                    m.id,
                    m.zone.clone().unwrap_or_else(|| format!("node {}", m.id)),
                )
            })
            .collect();
        let r = rf.min(live.len());
        let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
        for z in live.values() {
            *sizes.entry(z).or_insert(0) += 1;
        }
        let mut cap = r.div_ceil(sizes.len().max(1));
        while sizes.values().map(|&n| n.min(cap)).sum::<usize>() < r {
            cap += 1;
        }
        assert_eq!(p.groups.len(), groups as usize);
        for (g, reps) in p.groups.iter().enumerate() {
            assert_eq!(reps.len(), r, "group {g}: {reps:?}");
            let distinct: BTreeSet<u64> = reps.iter().copied().collect();
            assert_eq!(distinct.len(), r, "group {g} repeats a node: {reps:?}");
            let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
            for id in reps {
                let zone = live.get(id).unwrap_or_else(|| panic!("group {g} on {id}"));
                *per_zone.entry(zone).or_insert(0) += 1;
            }
            assert!(
                per_zone.values().all(|&n| n <= cap),
                "group {g}: {per_zone:?}, at most {cap} per zone"
            );
        }
    }

    /// One membership change: the new placement, the replicas it copies
    /// and the theoretical minimum; asserts the invariants and the 1.1 bound.
    fn step(from: &Placement, members: &[Member], rf: usize) -> (Placement, usize, usize) {
        let to = place(members, GROUPS, rf, Some(from)).unwrap();
        check(&to, members, GROUPS, rf);
        let (n, min) = (
            copies(from, &to),
            minimum_moves(from, members, GROUPS, rf).unwrap(),
        );
        assert!(n * 10 <= min * 11, "{n} replicas copied, minimum {min}");
        (to, n, min)
    }

    #[test]
    fn replicas_and_leaders_stay_within_the_bound_for_3_to_10_nodes() {
        for n in [3u64, 4, 5, 6, 7, 10] {
            let p = place(&equal(1..=n), GROUPS, 3, None).unwrap();
            check(&p, &equal(1..=n), GROUPS, 3);
            let (rep, lead) = (
                max_over_mean(&p.replicas_per_node(), n as usize),
                max_over_mean(&p.leaders_per_node(), n as usize),
            );
            assert!(rep <= 1.1, "{n} nodes: replicas max/mean {rep}");
            assert!(lead <= 1.2, "{n} nodes: leaders max/mean {lead}");
            // Integer quotas: every node within one of the mean.
            let mean = 192.0 / n as f64;
            for (id, c) in p.replicas_per_node() {
                assert!(
                    (c as f64 - mean).abs() < 1.0,
                    "{n} nodes: node {id} has {c}"
                );
            }
            assert_eq!(p.replicas_per_node().len(), n as usize);
        }
    }

    #[test]
    fn weights_one_to_two_give_shares_within_ten_percent() {
        let cases: [(&[u32], u16, usize); 3] = [
            (&[1, 1, 2, 2, 2], 64, 3),
            (&[1, 2], 256, 1),
            (&[1, 2, 2], 64, 2),
        ];
        for (weights, groups, rf) in cases {
            let members: Vec<Member> = (1..)
                .zip(weights)
                .map(|(id, &w)| Member::new(id, w))
                .collect();
            let p = place(&members, groups, rf, None).unwrap();
            check(&p, &members, groups, rf);
            let (total, weight_sum) = (
                groups as f64 * rf as f64,
                weights.iter().sum::<u32>() as f64,
            );
            let (counts, leaders) = (p.replicas_per_node(), p.leaders_per_node());
            for m in &members {
                let share = m.weight as f64 / weight_sum;
                let got = counts[&m.id] as f64 / total;
                assert!(
                    (got - share).abs() <= 0.1 * share,
                    "{weights:?}: node {} {got} vs {share}",
                    m.id
                );
                let led = leaders[&m.id] as f64 / groups as f64;
                assert!(
                    (led - share).abs() <= 0.1 * share,
                    "{weights:?}: node {} leads {led}",
                    m.id
                );
            }
        }
    }

    #[test]
    fn a_heavy_node_holds_at_most_one_replica_per_group_and_the_rest_share_evenly() {
        let mut members = equal(1..=4);
        members.push(Member::new(5, 10));
        let p = place(&members, GROUPS, 3, None).unwrap();
        check(&p, &members, GROUPS, 3);
        let counts = p.replicas_per_node();
        assert_eq!(counts[&5], 64);
        assert!((1..=4).all(|id| counts[&id] == 32), "{counts:?}");
    }

    #[test]
    fn a_draining_node_gets_nothing_and_only_its_replicas_move() {
        let p = place(&equal(1..=5), GROUPS, 3, None).unwrap();
        let mut members = equal(1..=5);
        members[2].weight = 0;
        let had = p.replicas_per_node()[&3];
        let (q, n, min) = step(&p, &members, 3);
        assert!(!q.replicas_per_node().contains_key(&3));
        assert_eq!((n, min), (had, had));
    }

    #[test]
    fn replicas_of_a_group_never_share_a_zone_when_there_are_enough_zones() {
        let members: Vec<Member> = (1..=6)
            .map(|id| Member::in_zone(id, 1, ["a", "b", "c"][id as usize % 3]))
            .collect();
        let p = place(&members, GROUPS, 3, None).unwrap();
        check(&p, &members, GROUPS, 3);
        let zone = |id: u64| {
            members
                .iter()
                .find(|m| m.id == id)
                .and_then(|m| m.zone.clone())
        };
        for reps in &p.groups {
            let zones: BTreeSet<_> = reps.iter().map(|&id| zone(id)).collect();
            assert_eq!(zones.len(), 3, "{reps:?}");
        }
        assert!(p.replicas_per_node().values().all(|&c| c == 32));
        // A seventh node in zone a: the zone still holds one replica per
        // group, so it takes its share from zone a's nodes only.
        let mut seven = members.clone();
        seven.push(Member::in_zone(7, 1, "a"));
        let (q, n, min) = step(&p, &seven, 3);
        let counts = q.replicas_per_node();
        assert_eq!(counts[&7] + counts[&3] + counts[&6], 64);
        assert_eq!((n, min), (21, 21), "{counts:?}");
    }

    #[test]
    fn with_fewer_zones_than_replicas_every_group_uses_every_zone() {
        let members: Vec<Member> = (1..=6)
            .map(|id| Member::in_zone(id, 1, ["a", "b"][id as usize % 2]))
            .collect();
        let p = place(&members, GROUPS, 3, None).unwrap();
        check(&p, &members, GROUPS, 3);
        for reps in &p.groups {
            let in_a = reps.iter().filter(|&&id| id % 2 == 0).count();
            assert!(in_a == 1 || in_a == 2, "{reps:?}");
        }
        assert!(max_over_mean(&p.replicas_per_node(), 6) <= 1.1);
    }

    #[test]
    fn a_lone_zone_takes_one_replica_of_every_group_even_above_its_weight() {
        // Zone rule first: 3 zones, rf 3, so zone c's only node holds all.
        let mut members: Vec<Member> = (1..=4)
            .map(|id| Member::in_zone(id, 1, ["a", "b"][id as usize % 2]))
            .collect();
        members.push(Member::in_zone(5, 1, "c"));
        let p = place(&members, GROUPS, 3, None).unwrap();
        check(&p, &members, GROUPS, 3);
        assert_eq!(p.replicas_per_node()[&5], 64);
    }

    #[test]
    fn small_and_odd_clusters_get_min_rf_nodes_replicas() {
        for (n, rf) in [(1u64, 3), (2, 3), (2, 2), (3, 1), (4, 5)] {
            let p = place(&equal(1..=n), 16, rf, None).unwrap();
            check(&p, &equal(1..=n), 16, rf);
        }
        let empty = place(&[], 16, 3, None).unwrap();
        assert_eq!(empty.groups, vec![Vec::<u64>::new(); 16]);
        let drained = place(&[Member::new(1, 0)], 4, 3, None).unwrap();
        assert!(drained.groups.iter().all(Vec::is_empty));
        assert_eq!(place(&equal(1..=3), 0, 3, None).unwrap().groups.len(), 0);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let dup = [Member::new(4, 1), Member::new(2, 1), Member::new(4, 2)];
        assert_eq!(
            place(&dup, 8, 3, None),
            Err(PlacementError::DuplicateNode(4))
        );
        assert_eq!(
            place(&equal(0..3), 8, 3, None),
            Err(PlacementError::ZeroNodeId)
        );
        assert_eq!(
            place(&equal(1..3), 8, 0, None),
            Err(PlacementError::ZeroReplication)
        );
        let many = equal(1..=MAX_MEMBERS as u64 + 1);
        assert_eq!(
            place(&many, 8, 3, None),
            Err(PlacementError::TooManyNodes(MAX_MEMBERS + 1))
        );
        assert_eq!(
            minimum_moves(&Placement::default(), &dup, 8, 3),
            Err(PlacementError::DuplicateNode(4))
        );
    }

    #[test]
    fn joins_and_removals_move_no_more_than_the_minimum_allows() {
        let p3 = place(&equal(1..=3), GROUPS, 3, None).unwrap();
        // The 4th node takes 192/4 = 48; the 5th 192/5 = 38.4.
        let (p4, n, _) = step(&p3, &equal(1..=4), 3);
        assert_eq!(n, 48);
        let (p5, n, _) = step(&p4, &equal(1..=5), 3);
        assert!(n == 38 || n == 39, "{n}");
        // Removing node 5 moves exactly its replicas; so does losing node 2.
        let had = p5.replicas_per_node()[&5];
        let (p4b, n, _) = step(&p5, &equal(1..=4), 3);
        assert_eq!(n, had);
        let had = p4b.replicas_per_node()[&2];
        let (_, n, _) = step(&p4b, &equal([1, 3, 4]), 3);
        assert_eq!(n, had);
        // Two joins at once: 3 → 5 moves 2 × 38.4.
        let (_, n, _) = step(&p3, &equal(1..=5), 3);
        assert!((76..=77).contains(&n), "{n}");
    }

    #[test]
    fn placing_again_moves_nothing_and_keeps_every_leader() {
        for n in [3u64, 5, 7] {
            let p = place(&equal(1..=n), GROUPS, 3, None).unwrap();
            assert_eq!(place(&equal(1..=n), GROUPS, 3, Some(&p)).unwrap(), p);
        }
    }

    #[test]
    fn leaders_stay_balanced_after_joins_and_mostly_stay_put() {
        let p4 = place(&equal(1..=4), GROUPS, 3, None).unwrap();
        let p5 = place(&equal(1..=5), GROUPS, 3, Some(&p4)).unwrap();
        assert!(max_over_mean(&p5.leaders_per_node(), 5) <= 1.2);
        // Node 5 needs ~13 leaders; few others should change.
        let changed = (0..GROUPS)
            .filter(|&g| p4.leader(g) != p5.leader(g))
            .count();
        assert!(changed <= 16, "{changed} leaders changed");
    }

    /// A tiny deterministic generator (no RNG in the placement's tests).
    fn shuffled(members: &[Member], seed: u64) -> Vec<Member> {
        let mut v = members.to_vec();
        let mut s = seed;
        for i in (1..v.len()).rev() {
            s = mix(s.wrapping_add(0x9e37_79b9_7f4a_7c15));
            v.swap(i, (s % (i as u64 + 1)) as usize);
        }
        v
    }

    #[test]
    fn input_order_does_not_change_the_placement() {
        let members: Vec<Member> = (1..=7)
            .map(|id| Member {
                id: id * 11,
                weight: 1 + (id % 3) as u32,
                zone: None,
            })
            .collect();
        let base = place(&members, GROUPS, 3, None).unwrap();
        let next = place(&members[1..], GROUPS, 3, Some(&base)).unwrap();
        for seed in 0..8 {
            let m = shuffled(&members, seed);
            assert_eq!(place(&m, GROUPS, 3, None).unwrap(), base, "seed {seed}");
            let fewer: Vec<Member> = m.into_iter().filter(|x| x.id != 11).collect();
            assert_eq!(
                place(&fewer, GROUPS, 3, Some(&base)).unwrap(),
                next,
                "seed {seed}"
            );
        }
    }

    /// Plain rendezvous (top `r` ranks per group, no load bound): what
    /// the bound pass is compared with.
    fn rendezvous_unbounded(n: u64, groups: u16, r: usize) -> Placement {
        let groups = (0..groups as usize)
            .map(|g| {
                let mut ids: Vec<u64> = (1..=n).collect();
                ids.sort_by_key(|&id| Reverse(rank(g, id)));
                ids.truncate(r);
                ids
            })
            .collect();
        Placement { groups }
    }

    /// A consistent-hash ring with `vnodes` points per node: each group
    /// takes the first `r` distinct nodes clockwise of its own point.
    fn ring_unbounded(n: u64, groups: u16, r: usize, vnodes: u64) -> Placement {
        let mut ring: Vec<(u64, u64)> = (1..=n)
            .flat_map(|id| (0..vnodes).map(move |v| (mix(id << 20 | v), id)))
            .collect();
        ring.sort_unstable();
        let groups = (0..groups as u64)
            .map(|g| {
                let start = ring.partition_point(|&(p, _)| p < mix(g ^ 0x5bd1_e995));
                let mut ids = Vec::new();
                for &(_, id) in ring.iter().cycle().skip(start).take(ring.len()) {
                    if ids.len() < r && !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                ids
            })
            .collect();
        Placement { groups }
    }

    /// The figures of docs/design/placement.md:
    /// `cargo test -p cairn-cluster --lib placement_table -- --nocapture`.
    #[test]
    fn placement_table() {
        println!("64 groups x rf 3, equal weights, placed from scratch");
        println!("nodes | max/mean replicas | max/mean leaders | plain HRW | ring x100 vnodes");
        for n in [3u64, 4, 5, 6, 7, 10] {
            let p = place(&equal(1..=n), GROUPS, 3, None).unwrap();
            let (hrw, ring) = (
                rendezvous_unbounded(n, GROUPS, 3),
                ring_unbounded(n, GROUPS, 3, 100),
            );
            let spread = |p: &Placement| max_over_mean(&p.replicas_per_node(), n as usize);
            println!(
                "{n:>5} | {:>17.3} | {:>16.3} | {:>9.3} | {:>16.3}",
                spread(&p),
                max_over_mean(&p.leaders_per_node(), n as usize),
                spread(&hrw),
                spread(&ring),
            );
            if n >= 5 {
                assert!(spread(&p) < spread(&hrw).min(spread(&ring)), "{n} nodes");
            }
        }
        println!("membership changes, each placed from the previous placement");
        println!("change | replicas copied | minimum | max/mean replicas | max/mean leaders | leaders changed");
        let p3 = place(&equal(1..=3), GROUPS, 3, None).unwrap();
        let mut prev = p3.clone();
        let chain: [(&str, Vec<u64>); 5] = [
            ("3 -> 4 (join)", (1..=4).collect()),
            ("4 -> 5 (join)", (1..=5).collect()),
            ("5 -> 4 (remove 5)", (1..=4).collect()),
            ("4 -> 3 (2 lost)", vec![1, 3, 4]),
            ("3 -> 5 (two joins)", vec![1, 3, 4, 5, 6]),
        ];
        for (name, ids) in chain {
            let nodes = ids.len();
            let (next, n, min) = step(&prev, &equal(ids), 3);
            let changed = (0..GROUPS)
                .filter(|&g| prev.leader(g) != next.leader(g))
                .count();
            println!(
                "{name:<18} | {n:>15} | {min:>7} | {:>17.3} | {:>16.3} | {changed:>15}",
                max_over_mean(&next.replicas_per_node(), nodes),
                max_over_mean(&next.leaders_per_node(), nodes),
            );
            prev = next;
        }
        // Recomputing from scratch is not minimal; neither are the plain
        // hashes (their 4 -> 5 moves, for comparison).
        let p4 = place(&equal(1..=4), GROUPS, 3, Some(&p3)).unwrap();
        let scratch = place(&equal(1..=5), GROUPS, 3, None).unwrap();
        let min = minimum_moves(&p4, &equal(1..=5), GROUPS, 3).unwrap();
        let hrw = copies(
            &rendezvous_unbounded(4, GROUPS, 3),
            &rendezvous_unbounded(5, GROUPS, 3),
        );
        let ring = copies(
            &ring_unbounded(4, GROUPS, 3, 100),
            &ring_unbounded(5, GROUPS, 3, 100),
        );
        println!(
            "4 -> 5 from scratch: {} copied (minimum {min}); plain HRW {hrw}, ring {ring}",
            copies(&p4, &scratch)
        );
        assert!(copies(&p4, &scratch) > min);
        let members: Vec<Member> = (1..)
            .zip([1, 1, 2, 2, 2])
            .map(|(id, w)| Member::new(id, w))
            .collect();
        let p = place(&members, GROUPS, 3, None).unwrap();
        let (counts, leaders) = (p.replicas_per_node(), p.leaders_per_node());
        println!(
            "weights 1,1,2,2,2: replicas {counts:?} (exact 24,24,48,48,48), leaders {leaders:?}"
        );
        let start = std::time::Instant::now();
        let big: Vec<Member> = equal(1..=MAX_MEMBERS as u64);
        let a = place(&big[1..], 1024, 3, None).unwrap();
        let b = place(&big, 1024, 3, Some(&a)).unwrap();
        println!(
            "1024 groups, 63 -> 64 nodes: {} copied, both placements in {:?} (this build)",
            copies(&a, &b),
            start.elapsed()
        );
        let start = std::time::Instant::now();
        let _ = place(&equal(1..=5), GROUPS, 3, Some(&p4)).unwrap();
        println!(
            "64 groups, 4 -> 5 nodes: {:?} (this build)",
            start.elapsed()
        );
    }

    fn members_from(spec: &[(u32, usize)]) -> Vec<Member> {
        (1..)
            .zip(spec)
            .map(|(id, &(weight, zone))| Member {
                id,
                weight,
                zone: (zone > 0).then(|| format!("z{zone}")),
            })
            .collect()
    }

    /// Whether every node of positive weight holds exactly the quota
    /// `place` aimed at when it started from `from`.
    fn at_quota(
        p: &Placement,
        members: &[Member],
        from: &Placement,
        groups: u16,
        rf: usize,
    ) -> bool {
        let lay = Layout::new(members, groups, rf).unwrap();
        let quotas = lay.quotas(&lay.counts(&lay.keep(Some(from))));
        let counts = p.replicas_per_node();
        lay.ids
            .iter()
            .zip(&quotas)
            .all(|(id, q)| counts.get(id).copied().unwrap_or(0) == q.target)
    }

    /// Found by the proptest in CI (session 21): node 2 was one over its
    /// quota and node 1 one under; the one fixing chain (node 5 takes
    /// node 2's place in group 39, node 1 takes node 5's in group 6) was
    /// missed because the search had already reached group 6 with node 3
    /// leaving it, which lets no one of node 1's zone in. The placement
    /// stayed off quota, and placing again moved a replica: the controller
    /// would have copied data twice for one membership change.
    #[test]
    fn a_chain_may_enter_a_group_through_any_of_its_replicas() {
        let m1 = members_from(&[(1, 1), (2, 0), (1, 3), (1, 3), (1, 2), (2, 0)]);
        let m2 = members_from(&[(2, 3), (2, 1), (1, 0), (3, 1), (2, 3), (2, 3)]);
        let p1 = place(&m1, 43, 4, None).unwrap();
        let p2 = place(&m2, 43, 4, Some(&p1)).unwrap();
        check(&p2, &m2, 43, 4);
        assert!(
            at_quota(&p2, &m2, &p1, 43, 4),
            "{:?}",
            p2.replicas_per_node()
        );
        assert_eq!(place(&m2, 43, 4, Some(&p2)).unwrap(), p2);
    }

    /// 1,500 fixed pseudo-random changes (the proptest below draws 96 new
    /// ones per run): every placement reaches its quotas and is a fixed
    /// point. Before the chain search covered every leaving replica, about
    /// 1 change in 1,300 missed a quota and 1 in 20,000 moved again.
    #[test]
    fn many_changes_reach_their_quotas_and_place_again_to_themselves() {
        let mut seed = 20261208u64;
        let mut next = |below: u64| {
            seed = mix(seed.wrapping_add(0x9E37_79B9_7F4A_7C15));
            seed % below
        };
        for case in 0..1500 {
            let mut spec = |min: u64| -> Vec<(u32, usize)> {
                (0..min + next(9 - min))
                    .map(|_| (next(4) as u32, next(4) as usize))
                    .collect()
            };
            let (before, after) = (spec(1), spec(0));
            let (m1, m2) = (members_from(&before), members_from(&after));
            let groups = 1 + next(47) as u16;
            let rf = 1 + next(4) as usize;
            let p1 = place(&m1, groups, rf, None).unwrap();
            let p2 = place(&m2, groups, rf, Some(&p1)).unwrap();
            let what = format!("case {case}: {before:?} -> {after:?}, {groups} groups, rf {rf}");
            assert!(at_quota(&p2, &m2, &p1, groups, rf), "{what}");
            assert_eq!(place(&m2, groups, rf, Some(&p2)).unwrap(), p2, "{what}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn any_change_keeps_the_invariants_and_is_never_below_the_minimum(
            before in proptest::collection::vec((0u32..4, 0usize..4), 1..9),
            after in proptest::collection::vec((0u32..4, 0usize..4), 0..9),
            groups in 1u16..48,
            rf in 1usize..5,
        ) {
            let (m1, m2) = (members_from(&before), members_from(&after));
            let p1 = place(&m1, groups, rf, None).unwrap();
            check(&p1, &m1, groups, rf);
            let p2 = place(&m2, groups, rf, Some(&p1)).unwrap();
            check(&p2, &m2, groups, rf);
            // With zones the "minimum" can overstate what a placement
            // within the zone rule needs (its quotas are per node, the
            // zone limit moves them): a lower bound only without zones.
            if m1.iter().chain(&m2).all(|m| m.zone.is_none()) {
                prop_assert!(copies(&p1, &p2) >= minimum_moves(&p1, &m2, groups, rf).unwrap());
            }
            prop_assert_eq!(&place(&m2, groups, rf, Some(&p2)).unwrap(), &p2);
            let reversed: Vec<Member> = m2.iter().rev().cloned().collect();
            prop_assert_eq!(&place(&reversed, groups, rf, Some(&p1)).unwrap(), &p2);
        }

        #[test]
        fn without_zones_every_node_ends_within_its_quota(
            before in proptest::collection::vec(0u32..4, 1..9),
            after in proptest::collection::vec(0u32..4, 1..9),
            groups in 1u16..48,
            rf in 1usize..5,
        ) {
            let unzoned = |w: &[u32]| -> Vec<Member> { (1..).zip(w).map(|(id, &w)| Member::new(id, w)).collect() };
            let (m1, m2) = (unzoned(&before), unzoned(&after));
            let p1 = place(&m1, groups, rf, None).unwrap();
            let p2 = place(&m2, groups, rf, Some(&p1)).unwrap();
            let lay = Layout::new(&m2, groups, rf).unwrap();
            let quotas = lay.quotas(&lay.counts(&lay.keep(Some(&p1))));
            let counts = p2.replicas_per_node();
            for (id, q) in lay.ids.iter().zip(&quotas) {
                let c = counts.get(id).copied().unwrap_or(0);
                prop_assert!(q.lo <= c && c <= q.hi, "node {} holds {} of {:?}", id, c, q);
            }
        }
    }
}
