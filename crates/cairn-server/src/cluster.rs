//! Cluster mode: how a command reaches its Raft group.
//!
//! For each keyed command the connection computes the group of its keys
//! (all keys must be in one group, else -CROSSSLOT). Then:
//! - a write is proposed to the group when this node leads it; otherwise
//!   a cluster-aware connection (one that asked CLUSTER SLOTS/SHARDS/NODES)
//!   gets `-MOVED slot host:port`, and a plain client's request is
//!   forwarded to the leader over the peer connection;
//! - a read waits for a read-index confirmation (shared by all reads of
//!   the group waiting at that moment), then runs on the local copy; a
//!   connection that sent READONLY reads the local copy directly.
//!
//! Outcomes are never dropped silently: a committed write's reply, or
//! `-TRYAGAIN` (nothing was proposed: no leader right now; retry), or
//! `-UNKNOWN` (proposed, fate unknown: the leader changed or the link
//! broke before the commit was confirmed).

use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use cairn_cluster::{
    decode_argvs, BoxFuture, Cluster, ClusterError, Forward, Host, NodeInfo, Stamp,
};
use cairn_engine::slot::slot;
use cairn_proto::{Frame, Protocol, ReplyWriter};

use crate::cmd::{self, Flow, Spec, READONLY, WRITE};
use crate::conn::ConnState;
use crate::join::join_all;
use crate::{unix_ms, Shared};

/// How long a request waits for a group to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(3);
const RETRY_PAUSE: Duration = Duration::from_millis(25);

pub(crate) const TRYAGAIN: &str =
    "TRYAGAIN no leader for this slot's group right now (nothing was applied); retry";

/// What a node answers a forwarded request for a group it no longer
/// leads, having proposed nothing: the proxy asks the new leader instead
/// (a leadership transfer must not turn a write into -UNKNOWN). Worded
/// for a client too, should an older proxy pass it on.
const NOT_LEADER_HERE: &str =
    "TRYAGAIN not this group's leader any more (nothing was applied); retry";

/// A command that must wait for the cluster before it can be answered.
pub(crate) struct Deferred {
    pub idx: usize,
    pub argv: Vec<Vec<u8>>,
    /// Target group; `None` = every group (FLUSHALL).
    pub group: Option<u16>,
    pub write: bool,
    /// A command that may need memory (DENYOOM): under maxmemory the
    /// leader evicts first.
    pub denyoom: bool,
    pub slot: u16,
    /// CLUSTER ADDNODE / DELNODE: a membership change of every group.
    pub admin: Option<AdminOp>,
}

pub(crate) enum AdminOp {
    Add(u64, NodeInfo),
    Remove(u64),
    /// CLUSTER SETTING name value: a cluster-wide setting via the meta group.
    Setting(String, String),
    /// CLUSTER REBALANCE: each group's leadership back to its preferred node.
    Rebalance,
}

/// Settings `CLUSTER SETTING` may set: the ones every leader's eviction
/// decisions depend on.
pub(crate) const CLUSTER_SETTINGS: &[&str] = &[
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    cairn_cluster::AUTO_REBALANCE,
];

/// Parses CLUSTER ADDNODE <id> <host:port[@peerport]> | DELNODE <id>.
fn admin_op(argv: &[&[u8]]) -> Option<Result<AdminOp, String>> {
    let sub = String::from_utf8_lossy(argv.get(1)?).to_ascii_uppercase();
    let id = || -> Result<u64, String> {
        std::str::from_utf8(argv.get(2).copied().unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| "ERR invalid node id".to_string())
    };
    match sub.as_str() {
        "ADDNODE" => Some((|| {
            if argv.len() != 4 {
                return Err("ERR wrong number of arguments for 'cluster|addnode' command".into());
            }
            let id = id()?;
            let spec = format!("{id}={}", String::from_utf8_lossy(argv[3]));
            let peers = crate::config::parse_peers(&spec).map_err(|e| format!("ERR {e}"))?;
            let p = peers.into_values().next().ok_or("ERR bad address")?;
            Ok(AdminOp::Add(
                id,
                NodeInfo {
                    peer: p.peer,
                    resp: p.resp,
                },
            ))
        })()),
        "SETTING" => Some((|| {
            if argv.len() != 4 {
                return Err("ERR wrong number of arguments for 'cluster|setting' command".into());
            }
            let name = String::from_utf8_lossy(argv[2]).to_ascii_lowercase();
            let value = String::from_utf8_lossy(argv[3]).to_string();
            if !CLUSTER_SETTINGS.contains(&name.as_str()) {
                return Err(format!(
                    "ERR '{name}' is not a cluster-wide setting (one of: {})",
                    CLUSTER_SETTINGS.join(", ")
                ));
            }
            // Validate here, so a bad value never reaches the meta log.
            crate::cmd::config::validate(&name, &value)?;
            Ok(AdminOp::Setting(name, value))
        })()),
        "REBALANCE" => Some(if argv.len() == 2 {
            Ok(AdminOp::Rebalance)
        } else {
            Err("ERR wrong number of arguments for 'cluster|rebalance' command".into())
        }),
        "DELNODE" => Some((|| {
            if argv.len() != 3 {
                return Err("ERR wrong number of arguments for 'cluster|delnode' command".into());
            }
            Ok(AdminOp::Remove(id()?))
        })()),
        _ => None,
    }
}

pub(crate) enum Route {
    /// Run it here and now (no keys, or a READONLY connection's read).
    Local,
    Deferred(Box<Deferred>),
    Error(String),
}

/// Decides how a command runs in cluster mode.
pub(crate) fn route(shared: &Shared, conn: &ConnState, idx: usize, argv: &[&[u8]]) -> Route {
    let Some(cluster) = shared.cluster.get() else {
        return Route::Local;
    };
    let spec: &Spec = &cmd::table()[idx];
    let owned = || argv.iter().map(|a| a.to_vec()).collect::<Vec<_>>();
    if spec.name == "flushall" || spec.name == "flushdb" {
        return Route::Deferred(Box::new(Deferred {
            idx,
            argv: owned(),
            group: None,
            write: true,
            denyoom: false,
            slot: 0,
            admin: None,
        }));
    }
    if spec.name == "cluster" {
        return match admin_op(argv) {
            None => Route::Local,
            Some(Err(e)) => Route::Error(e),
            Some(Ok(op)) => Route::Deferred(Box::new(Deferred {
                idx,
                argv: Vec::new(),
                group: None,
                write: true,
                denyoom: false,
                slot: 0,
                admin: Some(op),
            })),
        };
    }
    if spec.first_key <= 0 || spec.flags & (WRITE | READONLY) == 0 {
        return Route::Local;
    }
    let mut group = None;
    let mut first_slot = 0;
    for i in spec.key_positions(argv.len()) {
        let s = slot(argv[i]);
        let g = cluster.group_of_slot(s as u32);
        match group {
            None => {
                group = Some(g);
                first_slot = s;
            }
            Some(g0) if g0 != g => {
                return Route::Error("CROSSSLOT Keys in request don't hash to the same slot".into())
            }
            _ => {}
        }
    }
    let Some(group) = group else {
        return Route::Local;
    };
    let write = spec.flags & WRITE != 0;
    if !write && (conn.readonly || shared.config.unsafe_stale_reads) {
        return Route::Local;
    }
    // Only valid commands reach the log: arity, syntax and range errors
    // are answered here (on the receiving node, and again on the leader
    // for a forwarded one), never proposed.
    if write {
        if let Err(e) = cairn_engine::replicated::check_argv(argv, unix_ms()) {
            return Route::Error(e);
        }
    }
    Route::Deferred(Box::new(Deferred {
        idx,
        argv: owned(),
        group: Some(group),
        write,
        denyoom: spec.flags & cmd::DENYOOM != 0,
        slot: first_slot,
        admin: None,
    }))
}

/// Runs a deferred command to its outcome and writes the reply.
pub(crate) async fn execute(shared: &Shared, conn: &mut ConnState, d: Deferred, out: &mut Vec<u8>) {
    let proto = conn.proto;
    if let (Some(AdminOp::Rebalance), Some(c)) = (&d.admin, shared.cluster.get()) {
        let mut w = ReplyWriter::new(out, proto);
        match c.rebalance().await {
            Ok(moved) => w.int(moved as i64),
            Err(e) => w.error(&format!("ERR rebalance incomplete: {e}")),
        }
        return;
    }
    if let Some(op) = &d.admin {
        let r = match (shared.cluster.get(), op) {
            (None, _) => Err("cluster not started".to_string()),
            (Some(c), AdminOp::Add(id, node)) => c.add_node(*id, node.clone()).await,
            (Some(c), AdminOp::Remove(id)) => c.remove_node(*id).await,
            (Some(c), AdminOp::Setting(k, v)) => c.set_setting(k, v).await,
            (Some(_), AdminOp::Rebalance) => Ok(()),
        };
        let mut w = ReplyWriter::new(out, proto);
        match r {
            Ok(()) => w.simple("OK"),
            Err(e) => w.error(&format!("ERR cluster change failed: {e}")),
        }
        return;
    }
    let reply = match d.group {
        None => flush_all(shared, &d).await,
        Some(g) => run_in_group(shared, conn, &d, g, true).await,
    };
    match reply {
        Ok(Output::Resp3(bytes)) => write_resp3(out, proto, &bytes),
        Ok(Output::Written(bytes)) => out.extend_from_slice(&bytes),
        Err(e) => ReplyWriter::new(out, proto).error(&e),
    }
}

enum Output {
    /// A reply in RESP3, to convert to the connection's protocol.
    Resp3(Vec<u8>),
    /// A reply already in the connection's protocol.
    Written(Vec<u8>),
}

fn error_text(e: &ClusterError) -> String {
    match e {
        ClusterError::NotLeader(_) | ClusterError::NoQuorum(_) => TRYAGAIN.into(),
        ClusterError::Unknown(why) => {
            format!("UNKNOWN outcome unknown ({why}): the write may or may not have been applied")
        }
        ClusterError::Shutdown => "ERR server is shutting down".into(),
    }
}

/// What the cluster part of a command produced.
enum Step {
    Done(Output),
    /// The read barrier passed: run the read on this node's copy now.
    ReadLocal,
}

async fn run_in_group(
    shared: &Shared,
    conn: &mut ConnState,
    d: &Deferred,
    g: u16,
    may_forward: bool,
) -> Result<Output, String> {
    match group_step(shared, conn.cluster_aware, d, g, may_forward).await? {
        Step::Done(o) => Ok(o),
        Step::ReadLocal => Ok(Output::Written(run_local(shared, conn, d))),
    }
}

/// The part of a command that waits for its group: the write's commit, or
/// the read's barrier, here or through the leader.
async fn group_step(
    shared: &Shared,
    cluster_aware: bool,
    d: &Deferred,
    g: u16,
    may_forward: bool,
) -> Result<Step, String> {
    let Some(cluster) = shared.cluster.get() else {
        return Err("ERR cluster not started".into());
    };
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let leader = cluster.leader(g);
        let me = cluster.node_id();
        let r: Result<Step, ClusterError> = match &leader {
            Some((id, _)) if *id == me => {
                if d.write {
                    if d.denyoom {
                        make_room(shared, cluster, g).await?;
                    }
                    cluster
                        .write(g, &d.argv)
                        .await
                        .map(|r| Step::Done(Output::Resp3(r)))
                } else if cluster.lease_read(g) {
                    // Under the lease, with no write of this node to the
                    // group in flight: no round, no trip through the loop.
                    Ok(Step::ReadLocal)
                } else {
                    cluster.read_barrier(g).await.map(|()| Step::ReadLocal)
                }
            }
            Some(l) if may_forward => {
                if cluster_aware {
                    return Err(format!("MOVED {} {}", d.slot, l.1.resp));
                }
                match cluster.forward(l, g, &d.argv, d.write).await {
                    Ok(r) if is_not_leader_here(&r) => Err(ClusterError::NotLeader(None)),
                    r => r.map(|r| Step::Done(Output::Resp3(r))),
                }
            }
            // A forwarded request that finds another leader, or none:
            // nothing was proposed here; the proxy finds the leader.
            _ if !may_forward => return Err(NOT_LEADER_HERE.into()),
            _ => Err(ClusterError::NotLeader(None)),
        };
        match r {
            Ok(o) => return Ok(o),
            Err(ClusterError::NotLeader(_)) | Err(ClusterError::NoQuorum(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            // A read changes nothing: whatever happened, retrying is safe.
            Err(ClusterError::Unknown(why)) if !d.write => {
                return Err(format!("TRYAGAIN read not answered ({why}); retry"))
            }
            Err(e) => return Err(error_text(&e)),
        }
    }
}

fn is_not_leader_here(reply: &[u8]) -> bool {
    reply.len() == NOT_LEADER_HERE.len() + 3
        && reply.first() == Some(&b'-')
        && reply[1..].starts_with(NOT_LEADER_HERE.as_bytes())
}

/// Runs a pipeline of deferred commands: their cluster parts all at once
/// (each is handed to its group's loop in pipeline order, so commands of
/// one group keep their order and share rounds), then each reply in
/// order — reads run on the local copy at that point, after their
/// barriers. Commands of different groups may commit in any order, as
/// with a Redis Cluster client pipelining to several nodes.
///
/// A read must not see a write the client pipelined after it (Redis
/// answers a connection's commands one at a time): a write to a group
/// that an earlier read of the pipeline reads ends the batch, and starts
/// the next one once the read's reply is known.
pub(crate) async fn execute_all(
    shared: &Shared,
    conn: &mut ConnState,
    mut ds: Vec<Deferred>,
    out: &mut Vec<u8>,
) {
    while !ds.is_empty() {
        let mut read: Vec<u16> = Vec::new();
        let mut end = 0;
        for d in &ds {
            if let Some(g) = d.group {
                if d.write && read.contains(&g) {
                    break;
                }
                if !d.write && !read.contains(&g) {
                    read.push(g);
                }
            }
            end += 1;
        }
        let rest = ds.split_off(end.max(1));
        execute_batch(shared, conn, ds, out).await;
        ds = rest;
    }
}

async fn execute_batch(
    shared: &Shared,
    conn: &mut ConnState,
    ds: Vec<Deferred>,
    out: &mut Vec<u8>,
) {
    if ds.len() <= 1 {
        for d in ds {
            execute(shared, conn, d, out).await;
        }
        return;
    }
    let aware = conn.cluster_aware;
    let steps = join_all(ds.iter().map(|d| async move {
        match d.group {
            Some(g) if d.admin.is_none() => Some(group_step(shared, aware, d, g, true).await),
            _ => None,
        }
    }))
    .await;
    let proto = conn.proto;
    for (d, step) in ds.into_iter().zip(steps) {
        match step {
            None => execute(shared, conn, d, out).await,
            Some(Ok(Step::Done(Output::Resp3(bytes)))) => write_resp3(out, proto, &bytes),
            Some(Ok(Step::Done(Output::Written(bytes)))) => out.extend_from_slice(&bytes),
            Some(Ok(Step::ReadLocal)) => {
                let bytes = run_local(shared, conn, &d);
                out.extend_from_slice(&bytes);
            }
            Some(Err(e)) => ReplyWriter::new(out, proto).error(&e),
        }
    }
}

/// Keys one `CAIRN.EVICT` proposal names, and proposals one command may
/// make before it proceeds anyway (bounded work per command, as Redis
/// bounds eviction by time).
const EVICT_BATCH: usize = 32;
const EVICT_ROUNDS: usize = 8;

/// Under maxmemory with an evicting policy, the leader of `g` picks
/// victims in `g` by the policy and commits their removal through the
/// log until the node is under the limit. Only the written group evicts:
/// memory is freed where it is being consumed (every group is on every
/// node, so each node's memory is the same sum). -OOM when `g` has
/// nothing left to evict.
async fn make_room(shared: &Shared, cluster: &Cluster, g: u16) -> Result<(), String> {
    use std::sync::atomic::Ordering::Relaxed;
    const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
    let s = &shared.settings;
    let over = || {
        let max = s.maxmemory.load(Relaxed) as usize;
        max > 0 && shared.db.bytes_used() > max
    };
    if !over() {
        return Ok(());
    }
    let locks = shared.evicting.get_or_init(|| {
        (0..cluster.groups())
            .map(|_| tokio::sync::Mutex::new(()))
            .collect()
    });
    let _one_at_a_time = match locks.get(g as usize) {
        Some(l) => l.lock().await,
        None => return Ok(()),
    };
    for _ in 0..EVICT_ROUNDS {
        if !over() {
            return Ok(());
        }
        let (victims, empty) = {
            let mut ks = shared.db.lock(g as usize);
            let v = ks.pick_victims(
                s.policy(),
                s.samples.load(Relaxed) as usize,
                unix_ms(),
                EVICT_BATCH,
            );
            (v, ks.is_empty())
        };
        if victims.is_empty() {
            // Nothing of this group holds the memory: let the write in
            // (its key becomes evictable); keys of this group that the
            // policy may not evict (volatile-* without TTLs) refuse it.
            return if empty { Ok(()) } else { Err(OOM.into()) };
        }
        let mut argv: Vec<&[u8]> = vec![b"CAIRN.EVICT"];
        argv.extend(victims.iter().map(|v| v.as_slice()));
        cluster.write(g, &argv).await.map_err(|e| error_text(&e))?;
    }
    Ok(())
}

/// Applies the cluster-wide settings of the meta group here whenever they
/// change (`CLUSTER SETTING`); a local `CONFIG SET` still changes this node
/// only, as in Redis Cluster, until the next cluster-wide change.
pub(crate) async fn follow_settings(shared: Arc<Shared>) {
    let Some(cluster) = shared.cluster.get() else {
        return;
    };
    let mut rx = cluster.subscribe_meta();
    let mut shutdown = shared.shutdown.subscribe();
    let mut applied: std::collections::BTreeMap<String, String> = Default::default();
    loop {
        let settings = rx.borrow_and_update().settings.clone();
        for (k, v) in &settings {
            if applied.get(k) != Some(v) && CLUSTER_SETTINGS.contains(&k.as_str()) {
                match crate::cmd::config::set(&shared, k, v) {
                    Ok(()) => {
                        tracing::info!(setting = %k, value = %v, "cluster-wide setting applied")
                    }
                    Err(e) => {
                        tracing::warn!(setting = %k, error = %e, "cluster-wide setting refused")
                    }
                }
            }
        }
        applied = settings;
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = shutdown.wait_for(|v| *v) => return,
        }
    }
}

/// FLUSHALL in cluster mode: proposed to every group in turn (not atomic
/// across groups, like FLUSHALL in Redis Cluster, which is per node).
async fn flush_all(shared: &Shared, d: &Deferred) -> Result<Output, String> {
    let Some(cluster) = shared.cluster.get() else {
        return Err("ERR cluster not started".into());
    };
    let argv: Vec<&[u8]> = vec![&d.argv[0]];
    for g in 0..cluster.groups() {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let r = match cluster.leader(g) {
                Some((id, _)) if id == cluster.node_id() => cluster.write(g, &argv).await,
                Some(l) => cluster.forward(&l, g, &argv, true).await,
                None => Err(ClusterError::NotLeader(None)),
            };
            match r {
                Ok(reply) if reply.first() == Some(&b'-') && Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await
                }
                Ok(reply) if reply.first() == Some(&b'-') => {
                    return Ok(Output::Resp3(reply));
                }
                Ok(_) => break,
                Err(ClusterError::NotLeader(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await
                }
                Err(e) => return Err(error_text(&e)),
            }
        }
    }
    Ok(Output::Resp3(b"+OK\r\n".to_vec()))
}

/// Runs a read on this node's copy (after the barrier), in the
/// connection's protocol.
fn run_local(shared: &Shared, conn: &mut ConnState, d: &Deferred) -> Vec<u8> {
    let argv: Vec<&[u8]> = d.argv.iter().map(|a| a.as_slice()).collect();
    let mut out = Vec::new();
    let _: Flow = cmd::run_handler(shared, conn, d.idx, &argv, &mut out, unix_ms());
    out
}

/// Writes a RESP3 reply in the connection's protocol.
pub(crate) fn write_resp3(out: &mut Vec<u8>, proto: Protocol, resp3: &[u8]) {
    if proto == Protocol::Resp3 {
        out.extend_from_slice(resp3);
        return;
    }
    let mut w = ReplyWriter::new(out, proto);
    match Frame::decode(resp3, usize::MAX) {
        Ok(Some((f, _))) => write_frame(&mut w, &f),
        _ => w.error("ERR malformed reply from the cluster"),
    }
}

fn write_frame(w: &mut ReplyWriter<'_>, f: &Frame) {
    match f {
        Frame::Simple(s) => w.simple(&String::from_utf8_lossy(s)),
        Frame::Error(e) => w.error(&String::from_utf8_lossy(e)),
        Frame::Integer(n) => w.int(*n),
        Frame::Bulk(b) | Frame::BigNumber(b) => w.bulk(b),
        Frame::Verbatim { text, .. } => w.bulk(text),
        Frame::Null => w.null(),
        Frame::Double(v) => w.double(*v),
        Frame::Boolean(b) => w.int(*b as i64),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            w.array(items.len());
            for i in items {
                write_frame(w, i);
            }
        }
        Frame::Map(pairs) => {
            w.map(pairs.len());
            for (k, v) in pairs {
                write_frame(w, k);
                write_frame(w, v);
            }
        }
    }
}

/// The cluster layer's view of this server: replicated commands apply to
/// the shard whose index is the group id.
pub(crate) struct ServerHost {
    pub shared: OnceLock<Weak<Shared>>,
}

impl ServerHost {
    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.get()?.upgrade()
    }
}

impl Host for ServerHost {
    fn apply(&self, group: u16, at: Stamp, argv: &[&[u8]], out: &mut Vec<u8>) {
        let Some(shared) = self.shared() else {
            return;
        };
        let i = group as usize;
        let mut ks = shared.db.lock(i);
        let mut w = ReplyWriter::new(out, Protocol::Resp3);
        cairn_engine::replicated::apply_argv(&mut *ks, argv, at.ts_ms, &mut w);
        shared.db.refresh(i, &ks);
    }

    fn snapshot(&self, group: u16) -> Vec<u8> {
        let Some(shared) = self.shared() else {
            return Vec::new();
        };
        let ks = shared.db.lock(group as usize);
        let mut out = Vec::new();
        if let Err(e) = cairn_engine::snapshot::write(&ks, &mut out) {
            tracing::error!(group, error = %e, "snapshot failed");
        }
        out
    }

    fn restore(&self, group: u16, data: &[u8]) -> Result<(), String> {
        let Some(shared) = self.shared() else {
            return Err("server stopped".into());
        };
        let seed = crate::random_seed();
        let (mut ks, _) =
            cairn_engine::snapshot::read(&mut &data[..], seed).map_err(|e| e.to_string())?;
        ks.set_lazy_expire(false);
        ks.set_access_tracking(shared.tracking());
        ks.set_string_len_max(
            shared
                .settings
                .bulk_len_max
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        shared.db.replace(group as usize, ks);
        Ok(())
    }

    fn forward(&self, reqs: Vec<Forward>) -> BoxFuture<Vec<Vec<u8>>> {
        let shared = self.shared();
        Box::pin(async move {
            let Some(shared) = shared else {
                return vec![b"-ERR server stopped\r\n".to_vec(); reqs.len()];
            };
            // join_all's first poll starts each command in batch order.
            join_all(reqs.into_iter().map(|r| serve_forwarded(&shared, r))).await
        })
    }
}

/// Executes a request another node forwarded: as the group's leader,
/// never forwarding again (no loops); RESP3 reply.
async fn serve_forwarded(shared: &Shared, req: Forward) -> Vec<u8> {
    let mut argv: Vec<Vec<u8>> = Vec::new();
    if decode_argvs(&req.argv, |a| argv = a.iter().map(|x| x.to_vec()).collect()).is_err()
        || argv.is_empty()
    {
        return b"-ERR malformed forwarded request\r\n".to_vec();
    }
    let mut out = Vec::new();
    // FLUSHALL/FLUSHDB arrive per group.
    if argv[0].eq_ignore_ascii_case(b"flushall") || argv[0].eq_ignore_ascii_case(b"flushdb") {
        let Some(cluster) = shared.cluster.get() else {
            return b"-ERR cluster not started\r\n".to_vec();
        };
        return match cluster.write(req.group, &argv).await {
            Ok(r) => r,
            Err(e) => {
                ReplyWriter::new(&mut out, Protocol::Resp3).error(&error_text(&e));
                out
            }
        };
    }
    let Some(idx) = cmd::lookup(&argv[0]) else {
        ReplyWriter::new(&mut out, Protocol::Resp3).error("ERR unknown command");
        return out;
    };
    let mut conn = ConnState::detached();
    let refs: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
    let d = match route(shared, &conn, idx, &refs) {
        Route::Deferred(d) => d,
        Route::Error(e) => {
            ReplyWriter::new(&mut out, Protocol::Resp3).error(&e);
            return out;
        }
        Route::Local => {
            let _ = cmd::run_handler(shared, &mut conn, idx, &refs, &mut out, unix_ms());
            return out;
        }
    };
    let Some(g) = d.group else {
        ReplyWriter::new(&mut out, Protocol::Resp3).error("ERR cannot forward this command");
        return out;
    };
    match run_in_group(shared, &mut conn, &d, g, false).await {
        Ok(Output::Resp3(b)) | Ok(Output::Written(b)) => b,
        Err(e) => {
            ReplyWriter::new(&mut out, Protocol::Resp3).error(&e);
            out
        }
    }
}

/// Active expiry in cluster mode: for each group this node leads, look
/// for expired keys and propose their deletion through the log.
pub(crate) async fn expire_cron(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut cursors: Vec<usize> = Vec::new();
    loop {
        let hz = shared
            .settings
            .hz
            .load(std::sync::atomic::Ordering::Relaxed)
            .clamp(1, 500) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(1000 / hz)) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let Some(cluster) = shared.cluster.get() else {
            continue;
        };
        cursors.resize(cluster.groups() as usize, 0);
        let now = unix_ms();
        for g in 0..cluster.groups() {
            if !cluster.is_leader(g) {
                continue;
            }
            let keys = {
                let ks = shared.db.lock(g as usize);
                let (keys, next) = ks.expired_keys(cursors[g as usize], 64, now);
                cursors[g as usize] = next;
                keys
            };
            if keys.is_empty() {
                continue;
            }
            let mut argv: Vec<&[u8]> = vec![b"CAIRN.EXPIRED"];
            argv.extend(keys.iter().map(|k| k.as_slice()));
            if let Err(e) = cluster.write(g, &argv).await {
                tracing::debug!(group = g, error = %e, "expiry proposal failed");
            }
        }
    }
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
