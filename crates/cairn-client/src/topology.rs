//! The client's map of the cluster: slot → group → leader and replicas,
//! learned from `CLUSTER SLOTS`.
//!
//! The one thing not to get wrong: a snapshot is immutable. Refreshes and
//! `-MOVED` patches build a new one and swap it in, so a request routes by
//! one consistent view; the 16384-entry slot map is shared between
//! snapshots (a MOVED copies only the small group table).

use std::sync::Arc;

use cairn_proto::Frame;

use crate::slot::SLOTS;

/// No group serves this slot (yet).
const UNASSIGNED: u16 = u16::MAX;

/// The nodes holding one group, its leader first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupRoute {
    pub nodes: Vec<Arc<str>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Topology {
    slot_group: Arc<[u16]>,
    groups: Vec<GroupRoute>,
}

impl Topology {
    /// A single standalone node serving every slot.
    pub(crate) fn standalone(addr: Arc<str>) -> Topology {
        Topology {
            slot_group: vec![0u16; SLOTS as usize].into(),
            groups: vec![GroupRoute { nodes: vec![addr] }],
        }
    }

    /// Knows nothing yet: every request goes to a node the strategy picks
    /// (which answers `-MOVED` with the leader).
    pub(crate) fn empty() -> Topology {
        Topology {
            slot_group: vec![UNASSIGNED; SLOTS as usize].into(),
            groups: Vec::new(),
        }
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id],
    /// ...], ...]`, the first node the leader. An empty host means the
    /// node that answered (`asked`), as in Redis.
    pub(crate) fn from_cluster_slots(reply: &Frame, asked: &str) -> Result<Topology, String> {
        let Frame::Array(ranges) = reply else {
            return Err(format!("CLUSTER SLOTS: not an array: {reply:?}"));
        };
        let mut slot_group = vec![UNASSIGNED; SLOTS as usize];
        let mut groups = Vec::with_capacity(ranges.len());
        for r in ranges {
            let (start, end, nodes) = parse_range(r, asked)?;
            if groups.len() >= UNASSIGNED as usize {
                return Err("CLUSTER SLOTS: too many ranges".into());
            }
            let g = groups.len() as u16;
            slot_group[start as usize..=end as usize].fill(g);
            groups.push(GroupRoute { nodes });
        }
        Ok(Topology {
            slot_group: slot_group.into(),
            groups,
        })
    }

    /// The route of `slot`, if some group serves it.
    pub(crate) fn route(&self, slot: u16) -> Option<&GroupRoute> {
        let g = *self.slot_group.get(slot as usize)?;
        self.groups.get(g as usize)
    }

    /// The leader this snapshot knows for `slot`.
    pub(crate) fn leader(&self, slot: u16) -> Option<&Arc<str>> {
        self.route(slot).and_then(|g| g.nodes.first())
    }

    /// A copy that names `addr` the leader of `slot`'s group: the node
    /// moves to the front of the group's list (added if missing). A slot
    /// no group serves yet gets a group of its own.
    pub(crate) fn with_moved(&self, slot: u16, addr: &str) -> Topology {
        let mut t = self.clone();
        let Some(g) = t.slot_group.get(slot as usize).copied() else {
            return t;
        };
        if g == UNASSIGNED {
            let mut map = t.slot_group.to_vec();
            map[slot as usize] = t.groups.len().min(UNASSIGNED as usize - 1) as u16;
            t.slot_group = map.into();
            t.groups.push(GroupRoute {
                nodes: vec![addr.into()],
            });
            return t;
        }
        let nodes = &mut t.groups[g as usize].nodes;
        let leader: Arc<str> = match nodes.iter().position(|n| &**n == addr) {
            Some(i) => nodes.remove(i),
            None => addr.into(),
        };
        nodes.insert(0, leader);
        t
    }

    /// Every node named, each once, in order of first appearance.
    pub(crate) fn nodes(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for g in &self.groups {
            for n in &g.nodes {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// How many groups lead at each node (for tests and stats).
    #[cfg(test)]
    pub(crate) fn groups(&self) -> &[GroupRoute] {
        &self.groups
    }
}

fn int(f: Option<&Frame>) -> Option<i64> {
    match f {
        Some(Frame::Integer(n)) => Some(*n),
        _ => None,
    }
}

fn parse_range(r: &Frame, asked: &str) -> Result<(u16, u16, Vec<Arc<str>>), String> {
    let bad = || format!("CLUSTER SLOTS: bad range {r:?}");
    let Frame::Array(items) = r else {
        return Err(bad());
    };
    let (Some(start), Some(end)) = (int(items.first()), int(items.get(1))) else {
        return Err(bad());
    };
    if !(0..i64::from(SLOTS)).contains(&start) || !(start..i64::from(SLOTS)).contains(&end) {
        return Err(bad());
    }
    let mut nodes = Vec::new();
    for n in &items[2..] {
        let Frame::Array(parts) = n else {
            return Err(bad());
        };
        let host = match parts.first() {
            Some(Frame::Bulk(h)) | Some(Frame::Simple(h)) => {
                String::from_utf8_lossy(h).into_owned()
            }
            _ => return Err(bad()),
        };
        let port = int(parts.get(1))
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(bad)?;
        let addr: Arc<str> = if host.is_empty() || host == "?" {
            let h = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
            format!("{h}:{port}").into()
        } else if host.contains(':') {
            format!("[{host}]:{port}").into()
        } else {
            format!("{host}:{port}").into()
        };
        nodes.push(addr);
    }
    if nodes.is_empty() {
        return Err(bad());
    }
    Ok((start as u16, end as u16, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Frame {
        Frame::Array(vec![
            Frame::Bulk(host.as_bytes().to_vec()),
            Frame::Integer(port),
            Frame::Bulk(b"0001".to_vec()),
        ])
    }

    fn range(a: i64, b: i64, nodes: Vec<Frame>) -> Frame {
        let mut v = vec![Frame::Integer(a), Frame::Integer(b)];
        v.extend(nodes);
        Frame::Array(v)
    }

    fn sample() -> Topology {
        let reply = Frame::Array(vec![
            range(
                0,
                8191,
                vec![node("127.0.0.1", 7001), node("127.0.0.1", 7002)],
            ),
            range(8192, 16383, vec![node("", 7002), node("127.0.0.1", 7001)]),
        ]);
        Topology::from_cluster_slots(&reply, "127.0.0.1:7002").unwrap()
    }

    #[test]
    fn cluster_slots_maps_every_slot_to_its_leader() {
        let t = sample();
        assert_eq!(t.leader(0).map(|a| &**a), Some("127.0.0.1:7001"));
        assert_eq!(t.leader(8191).map(|a| &**a), Some("127.0.0.1:7001"));
        // The empty host is the node that answered.
        assert_eq!(t.leader(8192).map(|a| &**a), Some("127.0.0.1:7002"));
        assert_eq!(t.leader(16383).map(|a| &**a), Some("127.0.0.1:7002"));
        assert_eq!(t.route(100).unwrap().nodes.len(), 2);
        assert_eq!(t.nodes().len(), 2);
    }

    #[test]
    fn moved_promotes_the_named_node_in_that_group_only() {
        let t = sample().with_moved(5, "127.0.0.1:7002");
        assert_eq!(t.leader(5).map(|a| &**a), Some("127.0.0.1:7002"));
        assert_eq!(
            t.leader(8191).map(|a| &**a),
            Some("127.0.0.1:7002"),
            "same group"
        );
        assert_eq!(t.route(5).unwrap().nodes.len(), 2, "no duplicate");
        assert_eq!(t.leader(9000).map(|a| &**a), Some("127.0.0.1:7002"));
        let t = t.with_moved(9000, "127.0.0.1:7009");
        assert_eq!(t.leader(9000).map(|a| &**a), Some("127.0.0.1:7009"));
        assert_eq!(t.route(9000).unwrap().nodes.len(), 3);
    }

    #[test]
    fn moved_on_an_unknown_slot_routes_just_that_slot() {
        let t = Topology::empty().with_moved(42, "h:1");
        assert_eq!(t.leader(42).map(|a| &**a), Some("h:1"));
        assert_eq!(t.leader(43), None);
    }

    #[test]
    fn malformed_replies_are_rejected_with_context() {
        let bad = [
            Frame::Integer(3),
            Frame::Array(vec![range(5, 2, vec![node("h", 1)])]),
            Frame::Array(vec![range(0, 16384, vec![node("h", 1)])]),
            Frame::Array(vec![range(0, 1, vec![])]),
            Frame::Array(vec![range(0, 1, vec![node("h", 0)])]),
            Frame::Array(vec![Frame::Array(vec![Frame::Integer(0)])]),
        ];
        for f in bad {
            assert!(Topology::from_cluster_slots(&f, "h:1").is_err(), "{f:?}");
        }
    }

    #[test]
    fn standalone_serves_every_slot_from_one_node() {
        let t = Topology::standalone("h:1".into());
        assert!(t.leader(0).is_some() && t.leader(16383).is_some());
        assert_eq!(t.groups().len(), 1);
    }
}
