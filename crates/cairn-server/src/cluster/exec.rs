//! Running deferred commands: a write's commit, a read's barrier, here or
//! through the group's leader; pipelines run concurrently and answer in
//! order.

use std::time::{Duration, Instant};

use cairn_cluster::ClusterError;
use cairn_engine::cmd::lock_acquire::{LockAcquire, SemAcquire};
use cairn_engine::cmd::Command;
use cairn_proto::{Frame, Protocol, ReplyWriter};

use super::deferred::{LockWait, Then};
use super::jobs::make_room;
use super::{AdminOp, Deferred};
use crate::cmd::{self, Flow};
use crate::join::join_all;
use crate::lockwait::{wait_for_grant, WaitEnd};
use crate::session::ConnState;
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

/// After an ACL change committed: waits (at most 2 s) until this node
/// installed it, so that the client's next command here (AUTH as the new
/// user) sees it. The users are installed only by the task that follows
/// the meta state (jobs.rs), in commit order; this only waits for it.
async fn users_installed(shared: &Shared, c: &cairn_cluster::Cluster, sets: &[(String, String)]) {
    let rx = c.subscribe_meta();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let (committed, epoch) = {
            let st = rx.borrow();
            let committed = sets.iter().all(|(k, v)| st.settings.get(k) == Some(v));
            (committed, st.epoch)
        };
        if committed && shared.acl.meta_epoch() >= epoch {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs a deferred command to its outcome and writes the reply.
pub(crate) async fn execute(
    shared: &Shared,
    conn: &mut ConnState,
    mut d: Deferred,
    out: &mut Vec<u8>,
) {
    let proto = conn.proto;
    if let Some(w) = d.list_wait.take() {
        let reply = crate::listwait::standalone_wait(shared, conn, w).await;
        crate::listwait::write_reply(out, proto, cmd::table()[d.idx].name, &reply);
        return;
    }
    if let (Some(g), true) = (d.group, crate::listwait::is_blocking(&d)) {
        match crate::listwait::cluster_wait(shared, conn, &d, g).await {
            Ok(Output::Resp3(b)) => {
                crate::listwait::write_reply(out, proto, cmd::table()[d.idx].name, &b)
            }
            other => deliver(conn, &d, other, out),
        }
        return;
    }
    if let Some(w) = &d.lock_wait {
        let reply = standalone_lock_wait(shared, conn, w).await;
        write_resp3(out, proto, &reply);
        return;
    }
    if let (Some(AdminOp::Rebalance), Some(c)) = (&d.admin, shared.cluster.get()) {
        let mut w = ReplyWriter::new(out, proto);
        match c.rebalance().await {
            Ok(moved) => w.int(moved as i64),
            Err(e) => w.error(&format!("ERR rebalance incomplete: {e}")),
        }
        return;
    }
    if let (Some(AdminOp::Users(sets, count)), Some(c)) = (&d.admin, shared.cluster.get()) {
        let mut r = Ok(());
        for (k, v) in sets {
            r = c.set_setting(k, v).await;
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            users_installed(shared, c, sets).await;
        }
        let mut w = ReplyWriter::new(out, proto);
        match (r, count) {
            (Ok(()), Some(n)) => w.int(*n),
            (Ok(()), None) => w.simple("OK"),
            (Err(e), _) => w.error(&format!("ERR ACL change failed: {e}")),
        }
        return;
    }
    if let Some(op) = &d.admin {
        let r = match (shared.cluster.get(), op) {
            (None, _) => Err("cluster not started".to_string()),
            (Some(c), AdminOp::Add(id, node)) => c.add_node(*id, node.clone()).await,
            (Some(c), AdminOp::Remove(id)) => c.remove_node(*id).await,
            (Some(c), AdminOp::Setting(k, v)) => c.set_setting(k, v).await,
            (Some(c), AdminOp::Weight(id, w, zone)) => c.set_weight(*id, *w, zone.as_deref()).await,
            (Some(_), AdminOp::Rebalance | AdminOp::Users(..)) => Ok(()),
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
        Some(g) => match run_in_group(shared, conn, &d, g, true).await {
            Ok(o) => lock_wait_after(shared, conn, &d, g, o).await,
            Err(e) => Err(e),
        },
    };
    deliver(conn, &d, reply, out);
}

/// Writes a deferred command's outcome for its client, as `d.then` says.
fn deliver(conn: &mut ConnState, d: &Deferred, reply: Result<Output, String>, out: &mut Vec<u8>) {
    let proto = conn.proto;
    match (d.then, reply) {
        (_, Err(e)) => ReplyWriter::new(out, proto).error(&e),
        (Then::Watch, Ok(Output::Resp3(b) | Output::Written(b))) => {
            match crate::cmd::multi::record_watch(conn, d, &b) {
                Ok(()) => ReplyWriter::new(out, proto).simple("OK"),
                Err(e) => ReplyWriter::new(out, proto).error(&e),
            }
        }
        // A transaction a WATCH'ed change aborted: Redis' null array.
        (Then::Exec, Ok(Output::Resp3(b))) if b == b"_\r\n" => {
            ReplyWriter::new(out, proto).null_array()
        }
        (then, Ok(Output::Resp3(bytes))) => write_resp3_of(out, proto, &bytes, &d.argv, then),
        (_, Ok(Output::Written(bytes))) => out.extend_from_slice(&bytes),
    }
}

/// [`write_resp3`] for the reply of `argv` (or, for EXEC, of each
/// command of the transaction `argv`): where Redis answers a RESP2 client
/// flat pairs and a RESP3 one nested pairs (ZRANGE ... WITHSCORES,
/// ZPOPMIN with a count: `cairn_engine::cmd::resp2_flattens`), the RESP3
/// reply is flattened.
fn write_resp3_of(out: &mut Vec<u8>, proto: Protocol, resp3: &[u8], argv: &[Vec<u8>], then: Then) {
    use cairn_engine::cmd::resp2_flattens;
    let args: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
    let flat: Vec<bool> = match then {
        Then::Exec => match cairn_engine::cmd::exec::Exec::parse(&args) {
            Ok(tx) => tx.cmds.iter().map(|c| resp2_flattens(c)).collect(),
            Err(_) => Vec::new(),
        },
        _ => vec![resp2_flattens(&args)],
    };
    if proto == Protocol::Resp3 || !flat.contains(&true) {
        return write_resp3(out, proto, resp3);
    }
    let frame = match Frame::decode(resp3, usize::MAX) {
        Ok(Some((f, _))) => f,
        _ => return ReplyWriter::new(out, proto).error("ERR malformed reply from the cluster"),
    };
    let frame = match (then, frame) {
        (Then::Exec, Frame::Array(items)) => Frame::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, f)| {
                    if flat.get(i) == Some(&true) {
                        flatten(f)
                    } else {
                        f
                    }
                })
                .collect(),
        ),
        (Then::Exec, other) => other,
        (_, f) => flatten(f),
    };
    write_frame(&mut ReplyWriter::new(out, proto), &frame);
}

/// An array of pairs as one flat array (anything else as it is).
fn flatten(f: Frame) -> Frame {
    match f {
        Frame::Array(items) if items.iter().all(|i| matches!(i, Frame::Array(_))) => Frame::Array(
            items
                .into_iter()
                .flat_map(|i| match i {
                    Frame::Array(pair) => pair,
                    other => vec![other],
                })
                .collect(),
        ),
        other => other,
    }
}

pub(crate) enum Output {
    /// A reply in RESP3, to convert to the connection's protocol.
    Resp3(Vec<u8>),
    /// A reply already in the connection's protocol.
    Written(Vec<u8>),
}

pub(super) fn error_text(e: &ClusterError) -> String {
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

pub(crate) async fn run_in_group(
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
    // Set once a relay came back "nothing applied": the retries forward
    // (this replica may not know the leader that hints name, say right
    // after a restart while the group is quiet).
    let mut relay_refused = false;
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
                // WATCH and EXEC are forwarded even for a cluster-aware
                // client: the transaction lives on this connection.
                if cluster_aware && d.then == Then::Reply {
                    shared
                        .moved
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(format!("MOVED {} {}", d.slot, l.1.resp));
                }
                shared
                    .forwarded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !relay_refused && relayable(shared, cluster, d, g) {
                    // Through the Raft traffic, answered from this
                    // replica's apply (docs/design/multiraft.md).
                    let r = cluster.relay(g, &d.argv).await;
                    relay_refused = matches!(r, Err(ClusterError::NotLeader(_)));
                    r.map(|r| Step::Done(Output::Resp3(r)))
                } else {
                    if !d.write {
                        // Behind this node's relayed writes to the group.
                        cluster.relay_gate(g).await.map_err(|e| error_text(&e))?;
                    }
                    match cluster.forward(l, g, &d.argv, d.write).await {
                        Ok(r) if is_not_leader_here(&r) => Err(ClusterError::NotLeader(None)),
                        r => r.map(|r| Step::Done(Output::Resp3(r))),
                    }
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
            // A read changes nothing: one whose forward was lost (its peer
            // connection closed, its leader deposed) is simply sent again.
            Err(ClusterError::Unknown(_)) if !d.write && Instant::now() < deadline => {
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

/// Whether a write may be relayed through this node's replica of the
/// group instead of forwarded: a plain write (not part of a transaction
/// or a WATCH), on a node that holds a replica, and not one that may need
/// the leader to evict first (`maxmemory` set and the command may grow
/// memory: the leader's `make_room` runs only on the forward path).
fn relayable(shared: &Shared, cluster: &cairn_cluster::Cluster, d: &Deferred, g: u16) -> bool {
    d.write
        && d.then == Then::Reply
        && cluster.hosts(g)
        && !(d.denyoom
            && shared
                .settings
                .maxmemory
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0)
}

/// The error reply `NOT_LEADER_HERE` becomes on the wire.
fn is_not_leader_here(reply: &[u8]) -> bool {
    reply
        .strip_prefix(b"-")
        .and_then(|r| r.strip_suffix(b"\r\n"))
        == Some(NOT_LEADER_HERE.as_bytes())
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
            // A blocking pop waits on its own, in `execute`.
            Some(g) if d.admin.is_none() && !crate::listwait::is_blocking(d) => {
                Some(group_step(shared, aware, d, g, true).await)
            }
            _ => None,
        }
    }))
    .await;
    let proto = conn.proto;
    for (d, step) in ds.into_iter().zip(steps) {
        match step {
            None => execute(shared, conn, d, out).await,
            Some(Ok(Step::Done(Output::Resp3(bytes)))) if queued_at(&bytes).is_some() => {
                let g = d.group.unwrap_or(0);
                match lock_wait_after(shared, conn, &d, g, Output::Resp3(bytes)).await {
                    Ok(Output::Resp3(b)) => write_resp3(out, proto, &b),
                    Ok(Output::Written(b)) => out.extend_from_slice(&b),
                    Err(e) => ReplyWriter::new(out, proto).error(&e),
                }
            }
            Some(Ok(Step::Done(o))) => deliver(conn, &d, Ok(o), out),
            Some(Ok(Step::ReadLocal)) => {
                let bytes = run_local(shared, conn, &d);
                deliver(conn, &d, Ok(Output::Written(bytes)), out);
            }
            Some(Err(e)) => deliver(conn, &d, Err(e), out),
        }
    }
}

/// The reply of a `LOCK.ACQUIRE ... WAIT` that queued its owner,
/// `+QUEUED <stamp>`: the stamp of the queueing command, which every
/// grant it may wait for exceeds.
fn queued_at(reply: &[u8]) -> Option<u64> {
    let n = reply.strip_prefix(b"+QUEUED ")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// A `LOCK.ACQUIRE ... WAIT` whose owner was queued waits here, on the
/// node its client is connected to (every node applies the group's
/// entries, so it hears of the grant itself): until granted, or WAIT runs
/// out and the owner leaves the queue through the log. Other replies
/// pass through.
async fn lock_wait_after(
    shared: &Shared,
    conn: &mut ConnState,
    d: &Deferred,
    g: u16,
    o: Output,
) -> Result<Output, String> {
    let name = cmd::table()[d.idx].name;
    let after = match &o {
        Output::Resp3(b) if name == "lock.acquire" || name == "sem.acquire" => queued_at(b),
        _ => None,
    };
    let Some(after) = after else {
        return Ok(o);
    };
    let argv: Vec<&[u8]> = d.argv.iter().map(|a| a.as_slice()).collect();
    let parsed = if name == "sem.acquire" {
        SemAcquire::parse(&argv).map(|c| (c.name, c.owner, c.wait_ms))
    } else {
        LockAcquire::<false>::parse(&argv).map(|c| (c.name, c.owner, c.wait_ms))
    };
    let Ok((name, owner, wait_ms)) = parsed else {
        return Ok(o);
    };
    let (name, owner) = (name.to_vec(), owner.to_vec());
    let killed = conn.info.clone();
    // Only a grant made after the queueing command counts: this node may
    // not have applied the owner's release of an earlier grant yet.
    match wait_for_grant(
        shared,
        &killed.killed,
        g as usize,
        &name,
        &owner,
        wait_ms,
        after,
    )
    .await
    {
        WaitEnd::Granted(t) => return Ok(Output::Resp3(format!(":{t}\r\n").into_bytes())),
        WaitEnd::Gave => {}
    }
    let Some(idx) = cmd::lookup(b"lock.dequeue") else {
        return Err("ERR lock.dequeue missing".into());
    };
    let dq = Deferred {
        idx,
        argv: vec![b"LOCK.DEQUEUE".to_vec(), name, owner],
        group: Some(g),
        write: true,
        denyoom: false,
        slot: d.slot,
        admin: None,
        list_wait: None,
        lock_wait: None,
        then: Then::Reply,
    };
    match run_in_group(shared, conn, &dq, g, true).await {
        Ok(Output::Resp3(b)) if b == b":0\r\n" => Ok(Output::Resp3(b"_\r\n".to_vec())),
        Ok(Output::Resp3(b)) if b.first() == Some(&b':') => Ok(Output::Resp3(b)),
        Ok(_) | Err(_) => Err(
            "UNKNOWN the wait ended but the owner could not be taken out of the lock's queue: \
             it may still be granted the lock (LOCK.DEQUEUE or LOCK.RELEASE to be sure)"
                .into(),
        ),
    }
}

/// Standalone: the same wait, on this node's lock table.
async fn standalone_lock_wait(shared: &Shared, conn: &mut ConnState, w: &LockWait) -> Vec<u8> {
    let info = conn.info.clone();
    let end = wait_for_grant(
        shared,
        &info.killed,
        w.shard,
        &w.name,
        &w.owner,
        w.wait_ms,
        0,
    )
    .await;
    let token = match end {
        WaitEnd::Granted(t) => Some(t),
        WaitEnd::Gave => {
            let mut ks = shared.db.lock(w.shard);
            let now = ks.locks.now_us();
            ks.locks.dequeue(&w.name, &w.owner, now)
        }
    };
    match token {
        Some(t) => format!(":{t}\r\n").into_bytes(),
        None => b"_\r\n".to_vec(),
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
