//! CLUSTER INFO | MYID | KEYSLOT | SLOTS | SHARDS | NODES | HELP
//!
//! cairn maps Redis Cluster's model onto Raft groups: each group owns a
//! contiguous slot range; the group's Raft leader plays the "master" and
//! the other voters the "replicas". Every node leads some groups, so a
//! node shows up as master of the ranges it leads. Node ids are the
//! configured numeric ids as 40 hex digits.

use cairn_cluster::NodeInfo;
use cairn_engine::slot::slot;

use super::{help, sub, sub_arity, unknown_subcommand, Ctx, Flow};

const DISABLED: &str = "ERR This instance has cluster support disabled";

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let sub = sub(argv);
    if sub == "HELP" {
        return help(
            ctx,
            &[
                "INFO", "    Return information about the cluster.",
                "KEYSLOT <key>", "    Return the hash slot for <key>.",
                "MYID", "    Return the node id.",
                "DIGEST", "    (cairn) Per group held here: applied log index and state digest of this replica.",
                "ADDNODE <id> <host:port[@peerport]>", "    (cairn) Add a running node to every group (learner, then voter).",
                "DELNODE <id>", "    (cairn) Remove a node from every group.",
                "SETTING <name> <value>", "    (cairn) Set maxmemory, maxmemory-policy, maxmemory-samples, cluster-auto-rebalance, replication-factor, replica-repair-timeout, rebalance-paused, rebalance-throttle or rebalance-max-moves on every node (meta group).",
                "WEIGHT <id> <weight> [<zone>]", "    (cairn) A node's placement weight (0 drains it) and zone; groups move to match.",
                "META", "    (cairn) The meta group's state on this node: epoch, members, settings.",
                "REBALANCE", "    (cairn) Move each group's leadership back to its preferred node; returns how many moved.",
                "NODES", "    Return cluster configuration seen by node.",
                "SHARDS", "    Return information about slot range mappings and the nodes associated with them.",
                "SLOTS", "    Return information about slots range mappings.",
            ],
        );
    }
    if sub == "KEYSLOT" {
        if argv.len() != 3 {
            return sub_arity(ctx, argv);
        }
        ctx.out.int(slot(argv[2]) as i64);
        return Flow::Continue;
    }
    let Some(cluster) = ctx.shared.cluster.get() else {
        ctx.out.error(DISABLED);
        return Flow::Continue;
    };
    let me = cluster.node_id();
    match sub.as_str() {
        "MYID" => ctx.out.bulk(node_name(me).as_bytes()),
        // cairn extension: the meta group's state as applied here.
        "META" => {
            let m = cluster.meta();
            let mut text = format!("epoch:{}\r\n", m.epoch);
            for (id, n) in &m.members {
                let joined = if m.joined.contains(id) {
                    "joined"
                } else {
                    "new"
                };
                text.push_str(&format!("member:{id} {} {} {joined}\r\n", n.resp, n.peer));
            }
            for (k, v) in &m.settings {
                text.push_str(&format!("setting:{k} {v}\r\n"));
            }
            ctx.out.verbatim("txt", text.as_bytes());
        }
        // cairn extension: per group "group applied-index digest" of this
        // node's replica, to compare replicas (equal index ⇒ equal digest);
        // groups this node holds no replica of (a replication factor below
        // the member count) are left out.
        "DIGEST" => {
            let topo = cluster.topology();
            let mut text = String::new();
            for g in topo.iter().filter(|g| cluster.hosts(g.group)) {
                let d = ctx.shared.db.lock(g.group as usize).digest();
                text.push_str(&format!("{} {} {:016x}\n", g.group, g.last_applied, d));
            }
            ctx.out.bulk(text.as_bytes());
        }
        "INFO" => {
            let topo = cluster.topology();
            let ok = topo.iter().filter(|g| g.leader.is_some()).count();
            let slots_ok: u32 = topo
                .iter()
                .filter(|g| g.leader.is_some())
                .map(|g| g.slots.1 - g.slots.0 + 1)
                .sum();
            let leaders: std::collections::BTreeSet<u64> = topo
                .iter()
                .filter_map(|g| g.leader.as_ref().map(|l| l.0))
                .collect();
            let epoch = topo.iter().map(|g| g.term).max().unwrap_or(0);
            let state = if ok == topo.len() { "ok" } else { "fail" };
            let text = format!(
                "cluster_state:{state}\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:{slots_ok}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:{epoch}\r\ncluster_my_epoch:{epoch}\r\ncairn_groups:{}\r\ncairn_groups_with_leader:{ok}\r\ncairn_groups_led_here:{}\r\n",
                16384 - slots_ok,
                cluster.members().len(),
                leaders.len(),
                topo.len(),
                topo.iter().filter(|g| g.is_leader).count(),
            );
            ctx.out.verbatim("txt", text.as_bytes());
        }
        "SLOTS" => {
            ctx.conn.cluster_aware = true;
            let topo = cluster.topology();
            ctx.out.array(topo.len());
            for g in &topo {
                // Leader first (the "master"), then the other voters.
                let mut nodes: Vec<_> = g.leader.iter().cloned().collect();
                for v in &g.voters {
                    if g.leader.as_ref().map(|l| l.0) != Some(v.0) {
                        nodes.push(v.clone());
                    }
                }
                ctx.out.array(2 + nodes.len());
                ctx.out.int(g.slots.0 as i64);
                ctx.out.int(g.slots.1 as i64);
                for (id, n) in nodes {
                    let (h, p) = host_port(&n);
                    ctx.out.array(3);
                    ctx.out.bulk(h.as_bytes());
                    ctx.out.int(p as i64);
                    ctx.out.bulk(node_name(id).as_bytes());
                }
            }
        }
        "SHARDS" => {
            ctx.conn.cluster_aware = true;
            let topo = cluster.topology();
            ctx.out.array(topo.len());
            for g in &topo {
                ctx.out.map(2);
                ctx.out.bulk(b"slots");
                ctx.out.array(2);
                ctx.out.int(g.slots.0 as i64);
                ctx.out.int(g.slots.1 as i64);
                ctx.out.bulk(b"nodes");
                ctx.out.array(g.voters.len());
                for (id, n) in &g.voters {
                    let (h, p) = host_port(n);
                    let leader = g.leader.as_ref().map(|l| l.0) == Some(*id);
                    ctx.out.map(7);
                    ctx.out.bulk(b"id");
                    ctx.out.bulk(node_name(*id).as_bytes());
                    ctx.out.bulk(b"port");
                    ctx.out.int(p as i64);
                    ctx.out.bulk(b"ip");
                    ctx.out.bulk(h.as_bytes());
                    ctx.out.bulk(b"endpoint");
                    ctx.out.bulk(h.as_bytes());
                    ctx.out.bulk(b"role");
                    ctx.out.bulk(if leader {
                        b"master" as &[u8]
                    } else {
                        b"replica"
                    });
                    ctx.out.bulk(b"replication-offset");
                    ctx.out.int(g.last_applied as i64);
                    ctx.out.bulk(b"health");
                    ctx.out.bulk(b"online");
                }
            }
        }
        "NODES" => {
            ctx.conn.cluster_aware = true;
            let topo = cluster.topology();
            let mut text = String::new();
            for (id, n) in cluster.members() {
                let (h, p) = host_port(&n);
                let cport = n
                    .peer
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .unwrap_or(0);
                let led: Vec<String> = topo
                    .iter()
                    .filter(|g| g.leader.as_ref().map(|l| l.0) == Some(id))
                    .map(|g| format!("{}-{}", g.slots.0, g.slots.1))
                    .collect();
                let flags = if id == me { "myself,master" } else { "master" };
                let epoch = topo.iter().map(|g| g.term).max().unwrap_or(0);
                text.push_str(&format!(
                    "{} {h}:{p}@{cport} {flags} - 0 0 {epoch} connected {}\n",
                    node_name(id),
                    led.join(" ")
                ));
            }
            ctx.out.verbatim("txt", text.as_bytes());
        }
        _ => return unknown_subcommand(ctx, argv),
    }
    Flow::Continue
}

/// This node's cluster id as Redis Cluster clients expect it: 40 hex.
pub(crate) fn node_name(id: u64) -> String {
    format!("{id:040x}")
}

/// Splits `host:port` for CLUSTER replies.
pub(crate) fn host_port(n: &NodeInfo) -> (String, u16) {
    match n.resp.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(0)),
        None => (n.resp.clone(), 0),
    }
}
