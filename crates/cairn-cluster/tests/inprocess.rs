//! Three nodes in one process on loopback, with a key-value test host:
//! replication, convergence, partitions (the transport's fault hook),
//! failover, and restart from the durable log.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cairn_cluster::{
    decode_argvs, BoxFuture, Cluster, ClusterConfig, ClusterError, Forward, Host, NodeInfo,
};
use parking_lot::Mutex;

type Kv = BTreeMap<Vec<u8>, Vec<u8>>;

/// A tiny state machine: SET k v → +OK, INCR k → :n, GET k (unused here).
#[derive(Default)]
struct KvHost {
    groups: Mutex<BTreeMap<u16, Kv>>,
    cluster: OnceLock<Cluster>,
}

impl KvHost {
    fn state(&self, g: u16) -> Kv {
        self.groups.lock().get(&g).cloned().unwrap_or_default()
    }
}

impl Host for KvHost {
    fn apply(&self, group: u16, _at: cairn_cluster::Stamp, argv: &[&[u8]], out: &mut Vec<u8>) {
        let mut gs = self.groups.lock();
        let m = gs.entry(group).or_default();
        match argv {
            [b"SET", k, v] => {
                m.insert(k.to_vec(), v.to_vec());
                out.extend_from_slice(b"+OK\r\n");
            }
            [b"INCR", k] => {
                let n: i64 = m
                    .get(*k)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                    .unwrap_or(0)
                    + 1;
                m.insert(k.to_vec(), n.to_string().into_bytes());
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            _ => out.extend_from_slice(b"-ERR unknown\r\n"),
        }
    }
    fn snapshot(&self, group: u16) -> Vec<u8> {
        let m = self.state(group);
        let mut out = Vec::new();
        for (k, v) in m {
            cairn_cluster::encode_argv(&mut out, &[k, v]);
        }
        out
    }
    fn restore(&self, group: u16, data: &[u8]) -> Result<(), String> {
        let mut m = BTreeMap::new();
        decode_argvs(data, |kv| {
            m.insert(kv[0].to_vec(), kv[1].to_vec());
        })?;
        self.groups.lock().insert(group, m);
        Ok(())
    }
    fn clear(&self, group: u16) {
        self.groups.lock().remove(&group);
    }
    fn forward(&self, reqs: Vec<Forward>) -> BoxFuture<Vec<Vec<u8>>> {
        let c = self.cluster.get().cloned();
        Box::pin(async move {
            let mut out = Vec::with_capacity(reqs.len());
            for req in reqs {
                let Some(c) = &c else {
                    out.push(b"-ERR not started\r\n".to_vec());
                    continue;
                };
                let mut argv = Vec::new();
                let _ = decode_argvs(&req.argv, |a| argv = a.iter().map(|x| x.to_vec()).collect());
                out.push(match c.write(req.group, &argv).await {
                    Ok(r) => r,
                    Err(e) => format!("-TRYAGAIN {e}\r\n").into_bytes(),
                });
            }
            out
        })
    }
}

struct Node {
    cluster: Cluster,
    host: Arc<KvHost>,
}

fn members(ports: &[u16]) -> BTreeMap<u64, NodeInfo> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                i as u64 + 1,
                NodeInfo {
                    peer: format!("127.0.0.1:{p}"),
                    resp: format!("127.0.0.1:{}", 7000 + i),
                },
            )
        })
        .collect()
}

fn start(id: u64, ports: &[u16], groups: u16, dir: Option<std::path::PathBuf>) -> Node {
    start_with(id, ports, groups, dir, 1)
}

fn start_with(
    id: u64,
    ports: &[u16],
    groups: u16,
    dir: Option<std::path::PathBuf>,
    loops: usize,
) -> Node {
    let mut cfg = ClusterConfig::new(
        id,
        format!("127.0.0.1:{}", ports[id as usize - 1])
            .parse()
            .unwrap(),
        members(ports),
    );
    cfg.groups = groups;
    cfg.dir = dir;
    cfg.snapshot_logs = 200;
    cfg.raft_loops = loops;
    let host = Arc::new(KvHost::default());
    let cluster = Cluster::start(cfg, host.clone()).unwrap();
    let _ = host.cluster.set(cluster.clone());
    Node { cluster, host }
}

/// Writes through whichever node leads the group, retrying while there
/// is no leader; returns the reply.
fn write(rt: &tokio::runtime::Runtime, nodes: &[Option<Node>], g: u16, argv: &[&[u8]]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in nodes.iter().flatten() {
            if n.cluster.is_leader(g) {
                match rt.block_on(n.cluster.write(g, argv)) {
                    Ok(r) => return r,
                    Err(ClusterError::NotLeader(_)) | Err(ClusterError::Unknown(_)) => {}
                    Err(e) => panic!("write failed: {e}"),
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader for group {g}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_converged(nodes: &[Option<Node>], groups: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let live: Vec<&Node> = nodes.iter().flatten().collect();
        let same = (0..groups).all(|g| {
            let s0 = live[0].host.state(g);
            live.iter().all(|n| n.host.state(g) == s0)
        });
        if same {
            return;
        }
        assert!(Instant::now() < deadline, "replicas did not converge");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops every node still running.
fn shutdown_all(nodes: &mut [Option<Node>]) {
    for n in nodes.iter_mut() {
        if let Some(n) = n.take() {
            n.cluster.shutdown();
        }
    }
}

/// Group `g`'s voters as its current leader sees them, sorted (empty
/// while no node leads it).
fn leader_voters(nodes: &[Option<Node>], g: u16) -> Vec<u64> {
    let mut voters: Vec<u64> = nodes
        .iter()
        .flatten()
        .map(|n| n.cluster.topology().swap_remove(g as usize))
        .find(|t| t.is_leader)
        .map(|t| t.voters.iter().map(|(id, _)| *id).collect())
        .unwrap_or_default();
    voters.sort_unstable();
    voters
}

/// A runtime for the test's own calls and `n` durable nodes.
fn durable_nodes(n: usize, groups: u16) -> Started {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..n).map(|_| cairn_check::ports::free_port()).collect();
    let nodes = (1..=n as u64)
        .map(|id| {
            Some(start(
                id,
                &ports,
                groups,
                Some(dirs[id as usize - 1].path().into()),
            ))
        })
        .collect();
    (rt, dirs, ports, nodes)
}

type Started = (
    tokio::runtime::Runtime,
    Vec<tempfile::TempDir>,
    Vec<u16>,
    Vec<Option<Node>>,
);

/// A runtime for the test's own calls and three durable nodes.
fn three_durable_nodes(groups: u16) -> Started {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| cairn_check::ports::free_port()).collect();
    let nodes = (1..=3)
        .map(|id| {
            Some(start(
                id,
                &ports,
                groups,
                Some(dirs[id as usize - 1].path().into()),
            ))
        })
        .collect();
    (rt, dirs, ports, nodes)
}

/// The id of the node (of three) that leads group `g` now.
fn leader_id(nodes: &[Option<Node>], g: u16) -> u64 {
    (1..=3u64)
        .find(|&id| {
            nodes[id as usize - 1]
                .as_ref()
                .unwrap()
                .cluster
                .is_leader(g)
        })
        .expect("the group has a leader")
}

/// Cuts group `g`'s leader off from the other nodes, both ways; returns
/// its id.
fn isolate_leader(nodes: &[Option<Node>], g: u16) -> u64 {
    let leader = leader_id(nodes, g);
    for id in 1..=3u64 {
        let c = &nodes[id as usize - 1].as_ref().unwrap().cluster;
        if id == leader {
            for o in (1..=3).filter(|&o| o != leader) {
                c.block_peer(o);
            }
        } else {
            c.block_peer(leader);
        }
    }
    leader
}

#[test]
fn three_nodes_replicate_fail_over_and_recover_from_disk() {
    let groups = 4;
    let (rt, dirs, ports, mut nodes) = three_durable_nodes(groups);
    // Replication: every group takes writes; all replicas agree.
    for i in 0..300u32 {
        let g = (i % groups as u32) as u16;
        let r = write(&rt, &nodes, g, &[b"INCR", format!("c{g}").as_bytes()]);
        assert!(r.starts_with(b":"), "{:?}", String::from_utf8_lossy(&r));
    }
    wait_converged(&nodes, groups);
    for g in 0..groups {
        let s = nodes[0].as_ref().unwrap().host.state(g);
        assert_eq!(s.get(format!("c{g}").as_bytes()).unwrap(), b"75");
    }
    // Failover: isolate group 0's leader; the others elect a new one and
    // keep taking writes; the old leader's counter catches up on heal.
    let leader = isolate_leader(&nodes, 0);
    let t0 = Instant::now();
    let others: Vec<Option<Node>> = Vec::new();
    drop(others);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let new_leader = (1..=3u64).filter(|&id| id != leader).find(|&id| {
            nodes[id as usize - 1]
                .as_ref()
                .unwrap()
                .cluster
                .is_leader(0)
        });
        if let Some(nl) = new_leader {
            let c = &nodes[nl as usize - 1].as_ref().unwrap().cluster;
            if let Ok(r) = rt.block_on(c.write(0, &[b"INCR".as_slice(), b"c0"])) {
                assert_eq!(r, b":76\r\n");
                break;
            }
        }
        assert!(Instant::now() < deadline, "no failover");
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("failover after isolation took {:?}", t0.elapsed());
    for n in nodes.iter().flatten() {
        n.cluster.heal();
    }
    wait_converged(&nodes, groups);
    // Snapshots, then a full stop and restart from disk: nothing lost.
    for n in nodes.iter().flatten() {
        n.cluster.snapshot_all();
    }
    std::thread::sleep(Duration::from_millis(300));
    shutdown_all(&mut nodes);
    let mut nodes: Vec<Option<Node>> = (1..=3)
        .map(|id| {
            Some(start(
                id,
                &ports,
                groups,
                Some(dirs[id as usize - 1].path().to_path_buf()),
            ))
        })
        .collect();
    let r = write(&rt, &nodes, 0, &[b"INCR", b"c0"]);
    assert_eq!(r, b":77\r\n");
    let r = write(&rt, &nodes, 3, &[b"INCR", b"c3"]);
    assert_eq!(r, b":76\r\n");
    wait_converged(&nodes, groups);
    shutdown_all(&mut nodes);
}

/// Waits until every running node's meta state counts `n` joined members.
fn wait_joined(nodes: &[Option<Node>], n: usize) {
    wait_for(&format!("{n} joined members"), || {
        nodes
            .iter()
            .flatten()
            .all(|x| x.cluster.meta().joined.len() == n)
    });
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The meta group: seeded with the initial members, every node joined;
/// settings replicate; a member restarted with a wiped durable directory
/// refuses to start; DELNODE + ADDNODE bring a fresh node back, caught up.
#[test]
fn meta_group_tracks_members_settings_and_refuses_a_wiped_member() {
    let groups = 4;
    let (rt, _dirs, ports, mut nodes) = three_durable_nodes(groups);
    wait_for(
        "the meta state on every node to list and mark joined 3 members",
        || {
            nodes.iter().flatten().all(|n| {
                let m = n.cluster.meta();
                m.members.len() == 3 && m.joined.len() == 3
            })
        },
    );
    for g in 0..groups {
        write(&rt, &nodes, g, &[b"SET", b"k", format!("v{g}").as_bytes()]);
    }
    // A cluster-wide setting, set through node 2, reaches every node.
    let n2 = &nodes[1].as_ref().unwrap().cluster;
    rt.block_on(n2.set_setting("maxmemory", "1mb")).unwrap();
    wait_for("the setting on every node", || {
        nodes.iter().flatten().all(|n| {
            n.cluster
                .meta()
                .settings
                .get("maxmemory")
                .map(String::as_str)
                == Some("1mb")
        })
    });
    // Node 3 loses its data directory: it must refuse to rejoin.
    nodes[2].take().unwrap().cluster.shutdown();
    let wiped = tempfile::tempdir().unwrap();
    let mut cfg3 = ClusterConfig::new(
        3,
        format!("127.0.0.1:{}", ports[2]).parse().unwrap(),
        members(&ports),
    );
    cfg3.groups = groups;
    cfg3.dir = Some(wiped.path().into());
    let err = match Cluster::start(cfg3.clone(), Arc::new(KvHost::default())) {
        Ok(_) => panic!("a wiped member must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("data directory is empty but this node is a member"),
        "{err}"
    );
    // The documented recovery: remove it, start it empty, add it back.
    let n1 = nodes[0].as_ref().unwrap().cluster.clone();
    rt.block_on(n1.remove_node(3)).unwrap();
    assert!(!n1.meta().members.contains_key(&3));
    assert!(n1
        .topology()
        .iter()
        .all(|g| g.voters.iter().all(|(id, _)| *id != 3)));
    write(&rt, &nodes, 0, &[b"SET", b"k", b"after-remove"]);
    let fresh = tempfile::tempdir().unwrap();
    cfg3.dir = Some(fresh.path().into());
    let host3 = Arc::new(KvHost::default());
    let c3 = Cluster::start(cfg3, host3.clone()).expect("a removed node starts empty and waits");
    let _ = host3.cluster.set(c3.clone());
    nodes[2] = Some(Node {
        cluster: c3,
        host: host3,
    });
    let info = members(&ports)[&3].clone();
    rt.block_on(n1.add_node(3, info)).unwrap();
    for g in 0..groups {
        let voters: Vec<u64> = n1.topology()[g as usize]
            .voters
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(voters, vec![1, 2, 3], "group {g}");
    }
    write(&rt, &nodes, 1, &[b"SET", b"k", b"after-add"]);
    wait_converged(&nodes, groups);
    assert_eq!(
        nodes[2]
            .as_ref()
            .unwrap()
            .host
            .state(0)
            .get(b"k".as_slice())
            .unwrap(),
        b"after-remove"
    );
    wait_for("node 3 marked joined again", || {
        n1.meta().joined.contains(&3)
    });
    shutdown_all(&mut nodes);
}

/// Followers apply a commit within a round of the leader's reply, so
/// READONLY reads of a follower trail the leader only briefly.
#[test]
fn followers_apply_each_commit_soon_after_the_leader_answers() {
    let groups = 2;
    let (rt, _dirs, _ports, nodes) = three_durable_nodes(groups);
    let mut worst = Duration::ZERO;
    for i in 0..50u32 {
        let g = (i % groups as u32) as u16;
        let key = format!("lag{i}");
        write(&rt, &nodes, g, &[b"SET", key.as_bytes(), b"v"]);
        let t = Instant::now();
        loop {
            let all = nodes
                .iter()
                .flatten()
                .all(|n| n.host.state(g).contains_key(key.as_bytes()));
            if all {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "a follower never applied {key}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        worst = worst.max(t.elapsed());
    }
    eprintln!("worst follower lag after the leader's reply: {worst:?}");
    for n in nodes.into_iter().flatten() {
        n.cluster.shutdown();
    }
}

/// A relayed write whose batch is lost on the way to the leader (the
/// follower's frames to it dropped for a moment, no new term) is refused
/// as "not the leader" — nothing applied, safe to retry — once an empty
/// batch relayed behind it applies, not after the 10 s relay timeout.
#[test]
fn a_relayed_write_lost_on_the_way_is_refused_soon_and_never_applies() {
    let (rt, _dirs, _ports, mut nodes) = three_durable_nodes(2);
    let g = 1;
    write(&rt, &nodes, g, &[b"SET", b"k", b"before"]);
    let leader = leader_id(&nodes, g);
    let f = (1..=3u64).find(|&id| id != leader).unwrap();
    let fc = nodes[f as usize - 1].as_ref().unwrap().cluster.clone();
    wait_for("the follower knows the leader", || {
        fc.leader(g).map(|l| l.0) == Some(leader)
    });
    let fences = fc.stats().relay_fences;
    fc.block_peer(leader);
    let t0 = Instant::now();
    let lost: [&[u8]; 3] = [b"SET", b"k", b"lost"];
    let (r, ()) = rt.block_on(async {
        tokio::join!(fc.relay(g, &lost), async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            fc.heal();
        })
    });
    let took = t0.elapsed();
    assert!(
        matches!(r, Err(ClusterError::NotLeader(_))),
        "a lost relayed write answered {r:?}"
    );
    assert!(took < Duration::from_secs(8), "settled only after {took:?}");
    assert!(
        fc.stats().relay_fences > fences,
        "no empty batch was relayed"
    );
    // The next relayed write goes through, and the lost one never applied.
    let r = rt
        .block_on(fc.relay(g, &[b"SET".as_slice(), b"k".as_slice(), b"after"]))
        .unwrap();
    assert_eq!(r, b"+OK\r\n");
    wait_converged(&nodes, 2);
    for n in nodes.iter().flatten() {
        assert_eq!(
            n.host.state(g).get(&b"k"[..]).map(Vec::as_slice),
            Some(&b"after"[..])
        );
    }
    shutdown_all(&mut nodes);
}

/// Quiescence: an idle cluster's groups stop ticking and heartbeating on
/// every node (a few liveness frames per peer remain); a write or a read
/// wakes a group; a leader cut off while its group is quiesced is
/// replaced (its followers notice the silence and campaign).
#[test]
fn idle_groups_quiesce_wake_on_requests_and_fail_over_when_their_leader_goes_silent() {
    let groups = 8;
    let (rt, _dirs, _ports, nodes) = three_durable_nodes(groups);
    for g in 0..groups {
        write(&rt, &nodes, g, &[b"SET", b"k", b"v"]);
    }
    let all = groups as u64 + 1; // and the meta group
    let quiet_everywhere = || {
        nodes
            .iter()
            .flatten()
            .all(|n| n.cluster.stats().groups_quiet == all)
    };
    wait_for("every group to quiesce on every node", quiet_everywhere);
    // Idle: no group sends anything. Ticking, each node would send ~120
    // heartbeats and responses a second here (9 groups, 2 peers, 10 a
    // second). A slow moment can wake a group (a liveness frame late by
    // more than an election timeout), so look for one silent second in
    // five.
    let mut counts = Vec::new();
    let silent = (0..5).any(|_| {
        let before: Vec<u64> = nodes
            .iter()
            .flatten()
            .map(|n| n.cluster.stats().messages_sent)
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let sent: Vec<u64> = nodes
            .iter()
            .flatten()
            .zip(&before)
            .map(|(n, b)| n.cluster.stats().messages_sent - b)
            .collect();
        counts.push(sent.clone());
        sent.iter().all(|&m| m < 10)
    });
    assert!(
        silent,
        "raft messages sent per node in each idle second: {counts:?}"
    );
    // A write wakes its group; a linearizable read too.
    let r = write(&rt, &nodes, 0, &[b"INCR", b"n"]);
    assert_eq!(r, b":1\r\n");
    wait_for("quiet again", quiet_everywhere);
    let reader = nodes
        .iter()
        .flatten()
        .find(|n| n.cluster.is_leader(1))
        .expect("group 1 has a leader");
    rt.block_on(reader.cluster.read_barrier(1))
        .expect("read on a quiesced group");
    wait_for("quiet again", quiet_everywhere);
    // The leader of group 2 goes silent (cut off both ways).
    let leader = isolate_leader(&nodes, 2);
    let t0 = Instant::now();
    let others: Vec<&Node> = (1..=3u64)
        .filter(|&id| id != leader)
        .map(|id| nodes[id as usize - 1].as_ref().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    'wait: loop {
        for n in &others {
            if n.cluster.is_leader(2) {
                if let Ok(r) = rt.block_on(n.cluster.write(2, &[b"INCR".as_slice(), b"n"])) {
                    assert_eq!(r, b":1\r\n");
                    break 'wait;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new leader for a quiesced group"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("failover of a quiesced group took {:?}", t0.elapsed());
    for n in nodes.iter().flatten() {
        n.cluster.heal();
    }
    wait_converged(&nodes, groups);
    wait_for("quiet after healing", quiet_everywhere);
    for n in nodes.into_iter().flatten() {
        n.cluster.shutdown();
    }
}

/// Several raft loops per node (groups split g mod N): every group
/// replicates, survives a full restart from disk, and quiesces.
#[test]
fn three_loops_per_node_replicate_restart_and_quiesce() {
    let groups = 8;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| cairn_check::ports::free_port()).collect();
    let boot = |dirs: &[tempfile::TempDir]| -> Vec<Option<Node>> {
        (1..=3)
            .map(|id| {
                Some(start_with(
                    id,
                    &ports,
                    groups,
                    Some(dirs[id as usize - 1].path().into()),
                    3,
                ))
            })
            .collect()
    };
    let mut nodes = boot(&dirs);
    for i in 0..80u32 {
        let g = (i % groups as u32) as u16;
        write(&rt, &nodes, g, &[b"INCR", format!("c{g}").as_bytes()]);
    }
    wait_converged(&nodes, groups);
    shutdown_all(&mut nodes);
    let nodes = boot(&dirs);
    for g in 0..groups {
        let r = write(&rt, &nodes, g, &[b"INCR", format!("c{g}").as_bytes()]);
        assert_eq!(r, b":11\r\n", "group {g}");
    }
    wait_converged(&nodes, groups);
    wait_for("every group quiet", || {
        nodes
            .iter()
            .flatten()
            .all(|n| n.cluster.stats().groups_quiet == groups as u64 + 1)
    });
    for n in nodes.into_iter().flatten() {
        n.cluster.shutdown();
    }
}

/// The placement controller (docs/design/sharding.md, steps 1 and 6):
/// lowering `replication-factor` to 2 stores a balanced placement, the
/// reconciler shrinks every data group to its two placed voters (the meta
/// group stays on all three), and the node outside each group drops its
/// replica (empty keyspace, also after a restart from its tombstone);
/// writes go on; raising it back to 3 brings every group back to three
/// voters, caught up by snapshot.
#[test]
fn the_replication_factor_places_and_reconciles_every_group() {
    let groups = 8;
    let (rt, dirs, ports, mut nodes) = three_durable_nodes(groups);
    wait_joined(&nodes, 3);
    for g in 0..groups {
        write(&rt, &nodes, g, &[b"SET", b"k", format!("v{g}").as_bytes()]);
    }
    let n1 = nodes[0].as_ref().unwrap().cluster.clone();
    rt.block_on(n1.set_setting("replication-factor", "2"))
        .unwrap();
    wait_for("every group on its two placed voters", || {
        let st = n1.meta();
        st.wanted_placement(groups).is_none()
            && st.placement.len() == groups as usize
            && (0..groups).all(|g| {
                let mut want = st.placement(g);
                want.sort_unstable();
                want.len() == 2 && leader_voters(&nodes, g) == want
            })
    });
    let st = n1.meta();
    let mut per = BTreeMap::new();
    for g in 0..groups {
        for id in st.placement(g) {
            *per.entry(id).or_insert(0) += 1;
        }
    }
    // 16 replicas on 3 nodes: 5 or 6 each.
    assert!(per.values().all(|&n| n == 5 || n == 6), "{per:?}");
    assert_eq!(per.values().sum::<i32>(), 16);
    assert_eq!(
        n1.meta()
            .target_voters(groups, groups)
            .into_iter()
            .collect::<Vec<_>>(),
        vec![1, 2, 3],
        "the meta group stays on every member"
    );
    for g in 0..groups {
        assert_eq!(
            write(&rt, &nodes, g, &[b"INCR", b"n"]),
            b":1\r\n",
            "group {g} still writes"
        );
    }
    let outside = |g: u16| -> usize {
        let placed = st.placement(g);
        (1..=3u64).find(|id| !placed.contains(id)).unwrap() as usize - 1
    };
    wait_for("each group's outsider to drop its replica", || {
        (0..groups).all(|g| {
            let n = nodes[outside(g)].as_ref().unwrap();
            !n.cluster.hosts(g) && n.host.state(g).is_empty()
        })
    });
    // Node 3 restarts: its retired groups come back as tombstones (no
    // data, not hosted), its others from their logs.
    nodes[2].take().unwrap().cluster.shutdown();
    nodes[2] = Some(start(3, &ports, groups, Some(dirs[2].path().into())));
    {
        let n3 = nodes[2].as_ref().unwrap();
        wait_for("node 3's hosted groups caught up", || {
            (0..groups).all(|g| {
                let hosted = st.placement(g).contains(&3);
                let has_n =
                    n3.host.state(g).get(b"n".as_slice()).map(Vec::as_slice) == Some(&b"1"[..]);
                n3.cluster.hosts(g) == hosted && has_n == hosted
            })
        });
    }
    rt.block_on(n1.set_setting("replication-factor", "3"))
        .unwrap();
    wait_for("every group back on three voters", || {
        n1.meta().wanted_placement(groups).is_none()
            && (0..groups).all(|g| leader_voters(&nodes, g) == vec![1, 2, 3])
    });
    for g in 0..groups {
        write(&rt, &nodes, g, &[b"INCR", b"n"]);
    }
    wait_converged(&nodes, groups);
    for n in nodes.iter().flatten() {
        for g in 0..groups {
            assert_eq!(
                n.host.state(g).get(b"n".as_slice()).map(Vec::as_slice),
                Some(&b"2"[..])
            );
        }
    }
    shutdown_all(&mut nodes);
}

/// Sharding step 2 (docs/design/sharding.md): with 4 nodes and
/// replication factor 3, the node outside each group's placement hosts
/// no replica of it, yet knows its leader from the leader's hints and
/// forwards to it, also after that leader is killed and another elected.
#[test]
fn unhosted_groups_route_by_the_leaders_hints() {
    let groups = 8;
    let (rt, _dirs, _ports, mut nodes) = durable_nodes(4, groups);
    wait_joined(&nodes, 4);
    let n1 = nodes[0].as_ref().unwrap().cluster.clone();
    rt.block_on(n1.set_setting("replication-factor", "3"))
        .unwrap();
    let leader_of = |nodes: &[Option<Node>], g: u16| -> Option<u64> {
        nodes
            .iter()
            .flatten()
            .find(|n| n.cluster.is_leader(g))
            .map(|n| n.cluster.node_id())
    };
    wait_for("every group on its three placed voters", || {
        let st = n1.meta();
        st.wanted_placement(groups).is_none()
            && (0..groups).all(|g| {
                let mut want = st.placement(g);
                want.sort_unstable();
                want.len() == 3
                    && nodes
                        .iter()
                        .flatten()
                        .all(|n| n.cluster.hosts(g) == want.contains(&n.cluster.node_id()))
            })
    });
    let st = n1.meta();
    let outsider = |g: u16| -> usize {
        let placed = st.placement(g);
        (1..=4u64)
            .find(|id| !placed.contains(id))
            .expect("one node is outside") as usize
            - 1
    };
    for g in 0..groups {
        let o = nodes[outsider(g)].as_ref().unwrap();
        wait_for("the outsider to learn the leader", || {
            leader_of(&nodes, g).is_some()
                && o.cluster.leader(g).map(|l| l.0) == leader_of(&nodes, g)
        });
        let l = o.cluster.leader(g).unwrap();
        let r = rt.block_on(o.cluster.forward(&l, g, &[b"INCR".as_slice(), b"n"], true));
        assert_eq!(
            r.unwrap(),
            b":1\r\n",
            "group {g} through node {}",
            o.cluster.node_id()
        );
        let mut voters: Vec<u64> = o.cluster.topology()[g as usize]
            .voters
            .iter()
            .map(|(id, _)| *id)
            .collect();
        voters.sort_unstable();
        let mut want = st.placement(g);
        want.sort_unstable();
        assert_eq!(voters, want, "the outsider lists the placed voters");
    }
    // Kill group 0's leader: the outsider follows the new one.
    let g = 0;
    let o = outsider(g);
    let dead = leader_of(&nodes, g).unwrap();
    nodes[dead as usize - 1].take().unwrap().cluster.shutdown();
    let oc = nodes[o].as_ref().unwrap().cluster.clone();
    wait_for("a new leader known to the outsider", || {
        let now = leader_of(&nodes, g);
        now.is_some() && now != Some(dead) && oc.leader(g).map(|l| l.0) == now
    });
    let l = oc.leader(g).unwrap();
    let r = rt.block_on(oc.forward(&l, g, &[b"INCR".as_slice(), b"n"], true));
    assert_eq!(r.unwrap(), b":2\r\n");
    shutdown_all(&mut nodes);
}

/// Repair (docs/design/sharding.md): with replication factor 3 on 4 nodes
/// and `replica-repair-timeout` 2 s, a node that stops is marked down
/// after the timeout and every group it held gets a replica on the other
/// three; writes go on; when it comes back it is marked up and groups are
/// placed on it again, caught up.
#[test]
fn a_lost_node_is_replaced_and_placed_again_when_back() {
    let groups = 8;
    let (rt, dirs, ports, mut nodes) = durable_nodes(4, groups);
    wait_joined(&nodes, 4);
    let n1 = nodes[0].as_ref().unwrap().cluster.clone();
    rt.block_on(n1.set_setting("replica-repair-timeout", "2"))
        .unwrap();
    rt.block_on(n1.set_setting("replication-factor", "3"))
        .unwrap();
    let settled = |nodes: &[Option<Node>]| -> bool {
        let st = n1.meta();
        st.wanted_placement(groups).is_none()
            && (0..groups).all(|g| {
                let mut want = st.placement(g);
                want.sort_unstable();
                want.len() == 3 && leader_voters(nodes, g) == want
            })
    };
    wait_for("the placement on 4 nodes", || settled(&nodes));
    for g in 0..groups {
        write(&rt, &nodes, g, &[b"INCR", b"n"]);
    }
    // Node 4 stops (n1 stays: it is the one asked).
    nodes[3].take().unwrap().cluster.shutdown();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(n1.meta().down.contains(&4) && settled(&nodes)) {
        assert!(Instant::now() < deadline, "groups never left node 4");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = n1.meta();
    assert!((0..groups).all(|g| !st.placement(g).contains(&4)));
    for g in 0..groups {
        assert_eq!(write(&rt, &nodes, g, &[b"INCR", b"n"]), b":2\r\n");
    }
    // Back: marked up, placed on again, caught up.
    nodes[3] = Some(start(4, &ports, groups, Some(dirs[3].path().into())));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(!n1.meta().down.contains(&4)
        && (0..groups).any(|g| n1.meta().placement(g).contains(&4))
        && settled(&nodes))
    {
        assert!(Instant::now() < deadline, "node 4 never placed on again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = n1.meta();
    let n4 = nodes[3].as_ref().unwrap();
    wait_for("node 4's groups caught up", || {
        (0..groups).all(|g| {
            let placed = st.placement(g).contains(&4);
            n4.cluster.hosts(g) == placed
                && (!placed
                    || n4.host.state(g).get(b"n".as_slice()).map(Vec::as_slice) == Some(&b"2"[..]))
        })
    });
    shutdown_all(&mut nodes);
}

/// Sharding step 4's controls (docs/design/sharding.md): with
/// `rebalance-paused` a new placement is stored but no replica moves;
/// with `rebalance-throttle` the leaders put snapshots off while their
/// bucket is in debt; resumed, every group reaches its placement, the
/// copies are counted (snapshots and bytes), and the stored plan's copies
/// equal the minimum.
#[test]
fn rebalance_pauses_resumes_and_throttles_snapshots() {
    let groups = 8;
    let (rt, _dirs, _ports, mut nodes) = three_durable_nodes(groups);
    wait_joined(&nodes, 3);
    // About 1 MiB per group, so that a snapshot is worth throttling.
    let value = vec![b'x'; 16 << 10];
    for g in 0..groups {
        for k in 0..64 {
            write(
                &rt,
                &nodes,
                g,
                &[b"SET", format!("k{k}").as_bytes(), &value],
            );
        }
    }
    let n1 = nodes[0].as_ref().unwrap().cluster.clone();
    rt.block_on(n1.set_setting("replication-factor", "2"))
        .unwrap();
    wait_for("every group on two voters", || {
        let st = n1.meta();
        st.wanted_placement(groups).is_none()
            && st.placement.len() == groups as usize
            && (0..groups).all(|g| leader_voters(&nodes, g).len() == 2)
    });
    let sent = |nodes: &[Option<Node>]| -> (u64, u64, u64) {
        nodes.iter().flatten().fold((0, 0, 0), |acc, n| {
            let p = n.cluster.placement_progress();
            (
                acc.0 + p.snapshots_sent,
                acc.1 + p.snapshot_bytes_sent,
                acc.2 + p.snapshots_deferred,
            )
        })
    };
    let before = sent(&nodes);

    rt.block_on(n1.set_setting("rebalance-paused", "yes"))
        .unwrap();
    rt.block_on(n1.set_setting("rebalance-throttle", "1mb"))
        .unwrap();
    rt.block_on(n1.set_setting("replication-factor", "3"))
        .unwrap();
    wait_for("the new placement stored", || {
        let st = n1.meta();
        st.wanted_placement(groups).is_none() && (0..groups).all(|g| st.placement(g).len() == 3)
    });
    // Paused: several reconcile rounds go by and nothing moves.
    std::thread::sleep(Duration::from_secs(3));
    for g in 0..groups {
        assert_eq!(
            leader_voters(&nodes, g).len(),
            2,
            "group {g} moved while paused"
        );
    }
    let p = n1.placement_progress();
    assert!(p.paused);
    assert_eq!(p.throttle, 1 << 20);
    assert_eq!((p.adds_left, p.removes_left), (groups as usize, 0));
    assert_eq!(p.placed, 0);
    assert_eq!(sent(&nodes).0, before.0, "no snapshot sent while paused");

    rt.block_on(n1.set_setting("rebalance-paused", "no"))
        .unwrap();
    wait_for("every group on its three placed voters", || {
        (0..groups).all(|g| leader_voters(&nodes, g) == vec![1, 2, 3])
    });
    let after = sent(&nodes);
    assert!(
        after.0 - before.0 >= groups as u64,
        "a snapshot per copied replica: {before:?} -> {after:?}"
    );
    assert!(
        after.1 - before.1 >= groups as u64 * 64 * (16 << 10),
        "the snapshots' bytes: {before:?} -> {after:?}"
    );
    // ~8 MiB from three leaders' 1 MiB buckets at 1 MiB/s: some wait.
    assert!(after.2 > before.2, "the throttle put some off: {after:?}");
    let plan = nodes
        .iter()
        .flatten()
        .filter_map(|n| n.cluster.placement_progress().plan)
        .max_by_key(|p| p.epoch)
        .expect("the meta leader reports its plan");
    assert_eq!(
        (plan.copies, plan.minimum),
        (groups as usize, Some(groups as usize))
    );
    let p = n1.placement_progress();
    assert_eq!(
        (p.adds_left, p.removes_left, p.placed),
        (0, 0, groups as usize)
    );
    for g in 0..groups {
        write(&rt, &nodes, g, &[b"INCR", b"n"]);
    }
    wait_converged(&nodes, groups);
    shutdown_all(&mut nodes);
}

/// Zones on a running cluster: 4 nodes in two zones, replication factor
/// 2: every group ends with one voter in each zone (docs/design/placement.md).
#[test]
fn replicas_of_a_group_are_spread_over_zones() {
    let groups = 8;
    let (rt, _dirs, _ports, mut nodes) = durable_nodes(4, groups);
    wait_joined(&nodes, 4);
    let n1 = nodes[0].as_ref().unwrap().cluster.clone();
    // Ids 1 and 2 in zone a, 3 and 4 in b: by id, the default placement
    // could well put a group on 1 and 2.
    for (id, zone) in [(1, "a"), (2, "a"), (3, "b"), (4, "b")] {
        rt.block_on(n1.set_weight(id, 1, Some(zone))).unwrap();
    }
    rt.block_on(n1.set_setting("replication-factor", "2"))
        .unwrap();
    wait_for("every group on one node of each zone", || {
        let st = n1.meta();
        st.wanted_placement(groups).is_none()
            && (0..groups).all(|g| {
                let v = leader_voters(&nodes, g);
                let mut placed = st.placement(g);
                placed.sort_unstable();
                v == placed && v.len() == 2 && v[0] <= 2 && v[1] >= 3
            })
    });
    for g in 0..groups {
        assert_eq!(write(&rt, &nodes, g, &[b"INCR", b"z"]), b":1\r\n");
    }
    shutdown_all(&mut nodes);
}
