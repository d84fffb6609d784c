//! Blocking pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP on lists, and
//! BZPOPMIN, BZPOPMAX, BZMPOP on sorted sets (docs/design/datatypes.md,
//! "Blocking pops").
//!
//! A wait is for a key *and a type*: a zset written where a BLPOP waits
//! wakes nobody (the BLPOP keeps waiting, as in Redis), nor a list where
//! a BZPOPMIN waits.
//!
//! The same "pending reply" mechanism as lock waits (`lockwait::Waits`):
//! a connection whose pop found every list empty registers, per list, in
//! a FIFO queue of this node, and the command that next leaves one of
//! those lists non-empty — applied here, under the shard's lock — wakes
//! the longest-waiting connection (`wake_ready`). The woken connection
//! then *attempts* its pop again: standalone under the shard locks, in
//! cluster mode as an ordinary write through its group's log (so an
//! acknowledged pop is never lost or duplicated, whoever leads). An
//! attempt that finds the lists empty again (another client was first)
//! re-registers at the front of the queue.
//!
//! The thing not to get wrong: no wake may be lost. A waiter registers
//! under the shard lock (standalone: in the same critical section as its
//! failed attempt; cluster mode: *before* proposing its attempt, so every
//! push ordered after the attempt is applied after the registration), and
//! a waiter that ends without using a wake it may have consumed passes it
//! on (`pass_on`) to the next waiter of any list that is non-empty.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use cairn_engine::keyspace::{Blocked, Keyspace};
use cairn_proto::{Protocol, ReplyWriter};
use tokio::sync::oneshot;

use crate::cluster::deferred::{Deferred, Then};
use crate::cmd::{Ctx, Flow};
use crate::lockwait::Waits;
use crate::session::ConnState;
use crate::Shared;

/// A key waited on: (shard, key, what for: a list or a sorted set).
pub(crate) type ListKey = (usize, Box<[u8]>, Blocked);

/// Waiting connections by list.
pub(crate) type ListWaits = Waits<ListKey, ()>;

/// What a connection's blocking pop waits with (kept by the connection's
/// deferred command until it runs).
pub(crate) struct ListWait {
    pub argv: Vec<Vec<u8>>,
    /// The lists, each with its shard.
    pub keys: Vec<ListKey>,
    /// 0: forever.
    pub timeout_ms: u64,
    /// One per list: a wake from whoever made it non-empty.
    pub wakes: Vec<oneshot::Receiver<()>>,
}

const TOO_MANY: &str = "ERR too many clients blocked on lists; try again later";
/// RESP3 null: what an attempt that found nothing answers.
const NULL: &[u8] = b"_\r\n";

/// Call with shard `i` locked, right after a command applied to it:
/// wakes the first waiter of each list the command left non-empty.
pub(crate) fn wake_ready(shared: &Shared, i: usize, ks: &mut Keyspace) {
    if !ks.watches_lists() {
        return;
    }
    let (ready, overflow) = ks.take_ready_lists();
    let waits = &shared.list_waits;
    if overflow {
        for k in waits.keys_where(|k| k.0 == i) {
            waits.wake_first(&k, ());
        }
    } else {
        for (key, kind) in ready {
            waits.wake_first(&(i, key, kind), ());
        }
    }
    if waits.is_empty() {
        ks.set_watch_lists(false);
    }
}

/// After shard `i` was replaced by a snapshot (cluster mode): the new
/// keyspace watches lists again if anyone waits, and every waiter of the
/// shard looks again (its lists may have been filled).
pub(crate) fn after_restore(shared: &Shared, i: usize) {
    let mut ks = shared.db.lock(i);
    ks.set_watch_lists(!shared.list_waits.is_empty());
    for k in shared.list_waits.keys_where(|k| k.0 == i) {
        shared.list_waits.wake_first(&k, ());
    }
}

/// Registers a wait on every list, each under its shard's lock; `None`
/// when the node's bound on waiters is reached (nothing stays
/// registered then).
fn register(shared: &Shared, keys: &[ListKey], first: bool) -> Option<Vec<oneshot::Receiver<()>>> {
    let mut wakes = Vec::with_capacity(keys.len());
    for k in keys {
        let mut ks = shared.db.lock(k.0);
        ks.set_watch_lists(true);
        wakes.push(shared.list_waits.register(k.clone(), first)?);
    }
    Some(wakes)
}

/// A waiter that stops waiting: its queue entries go, and any list of
/// its that holds elements wakes its next waiter (this one may have
/// consumed the wake meant for it).
fn pass_on(shared: &Shared, keys: &[ListKey], wakes: Vec<oneshot::Receiver<()>>) {
    drop(wakes);
    for k in keys {
        shared.list_waits.forget(k);
        let ks = shared.db.lock(k.0);
        if ks.peek_ready(&k.1, k.2) {
            shared.list_waits.wake_first(k, ());
        }
    }
}

/// How a wait for a wake ended.
enum Woken {
    Yes,
    /// Timeout, CLIENT KILL, shutdown, or the client went away.
    Gave,
}

/// Waits for a wake on any of `wakes`, until `deadline`.
async fn wait_wake(
    shared: &Shared,
    conn: &ConnState,
    wakes: &mut [oneshot::Receiver<()>],
    deadline: Option<tokio::time::Instant>,
) -> Woken {
    let mut shutdown = shared.shutdown.subscribe();
    let any = std::future::poll_fn(|cx| {
        for rx in wakes.iter_mut() {
            if Pin::new(rx).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    });
    tokio::pin!(any);
    let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    let until = deadline.unwrap_or(far);
    loop {
        tokio::select! {
            () = &mut any => return Woken::Yes,
            _ = tokio::time::sleep_until(until) => return Woken::Gave,
            _ = shutdown.wait_for(|v| *v) => return Woken::Gave,
            // CLIENT KILL: checked a few times a second.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if conn.info.killed.load(std::sync::atomic::Ordering::Relaxed) {
                    return Woken::Gave;
                }
            }
        }
    }
}

fn deadline_of(timeout_ms: u64) -> Option<tokio::time::Instant> {
    (timeout_ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(timeout_ms))
}

/// Writes a blocking pop's RESP3 reply in the connection's protocol: a
/// null is Redis' null array for BLPOP, BRPOP, BLMPOP and the zset pops
/// in RESP2.
pub(crate) fn write_reply(out: &mut Vec<u8>, proto: Protocol, name: &str, reply: &[u8]) {
    if reply == NULL
        && matches!(
            name,
            "blpop" | "brpop" | "blmpop" | "bzpopmin" | "bzpopmax" | "bzmpop"
        )
    {
        ReplyWriter::new(out, proto).null_array();
    } else {
        crate::cluster::exec::write_resp3(out, proto, reply);
    }
}

/// The blocking command's handler (standalone; cluster mode routes the
/// command to its group and waits in `cluster_wait`): one attempt now,
/// and if every list is empty, a wait.
pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let (keys, timeout_ms, kind) = match cairn_engine::cmd::blpop::wait_of(argv) {
        Some(Ok(w)) => w,
        Some(Err(e)) => {
            ctx.out.error(e.msg());
            return Flow::Continue;
        }
        None => {
            ctx.out.error("ERR not a blocking command");
            return Flow::Continue;
        }
    };
    let shared = ctx.shared;
    let keys: Vec<ListKey> = keys
        .iter()
        .map(|k| (shared.db.index_of(k), Box::from(*k), kind))
        .collect();
    let reply = match attempt(shared, ctx.spec, argv, ctx.now_ms, Some(&keys), false) {
        Ok(reply) => reply,
        Err(None) => {
            ctx.out.error(TOO_MANY);
            return Flow::Continue;
        }
        Err(Some(wakes)) => {
            ctx.conn.deferred.push(Deferred {
                idx: crate::cmd::lookup(argv[0]).unwrap_or(0),
                argv: argv.iter().map(|a| a.to_vec()).collect(),
                group: None,
                write: true,
                denyoom: false,
                slot: 0,
                admin: None,
                lock_wait: None,
                list_wait: Some(Box::new(ListWait {
                    argv: argv.iter().map(|a| a.to_vec()).collect(),
                    keys,
                    timeout_ms,
                    wakes,
                })),
                then: Then::Reply,
            });
            return Flow::Defer;
        }
    };
    let proto = ctx.out.proto;
    write_reply(ctx.out.out, proto, ctx.spec.name, &reply);
    Flow::Continue
}

/// Standalone: applies the pop under its shards' locks (RESP3 reply).
/// When it finds nothing and `register` names the lists, registers the
/// wait in the same critical section: `Err(Some(wakes))`, or
/// `Err(None)` when too many connections wait.
fn attempt(
    shared: &Shared,
    spec: &crate::cmd::Spec,
    argv: &[&[u8]],
    now_ms: u64,
    register_keys: Option<&[ListKey]>,
    first: bool,
) -> Result<Vec<u8>, Option<Vec<oneshot::Receiver<()>>>> {
    let mut guard = shared.db.lock_keys(spec.keys_of(argv).map(|i| argv[i]));
    let mut out = Vec::new();
    cairn_engine::replicated::apply_argv(
        &mut guard,
        argv,
        now_ms,
        &mut ReplyWriter::new(&mut out, Protocol::Resp3),
    );
    guard.each_locked(|i, ks| wake_ready(shared, i, ks));
    let Some(keys) = register_keys.filter(|_| out == NULL) else {
        return Ok(out);
    };
    // Registering needs each shard's lock, which the guard holds: do it
    // through the guard so no push slips in between.
    let mut wakes = Vec::with_capacity(keys.len());
    for k in keys {
        guard.with_shard(k.0, |ks| ks.set_watch_lists(true));
        match shared.list_waits.register(k.clone(), first) {
            Some(rx) => wakes.push(rx),
            None => {
                drop(guard);
                pass_on(shared, keys, wakes);
                return Err(None);
            }
        }
    }
    Err(Some(wakes))
}

/// A connection's registrations while it waits. However the wait ends
/// (a reply, a timeout, or the future dropped because the client went
/// away), dropping this forgets them and passes on any wake it may have
/// taken (`pass_on`), so no element is left with its waiters asleep.
struct Waiting<'s> {
    shared: &'s Shared,
    keys: Vec<ListKey>,
    wakes: Vec<oneshot::Receiver<()>>,
}

impl<'s> Waiting<'s> {
    fn new(shared: &'s Shared, keys: Vec<ListKey>, wakes: Vec<oneshot::Receiver<()>>) -> Self {
        shared
            .list_blocked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting {
            shared,
            keys,
            wakes,
        }
    }

    /// Ends this round's registrations (after a wake, before the next
    /// attempt).
    fn clear(&mut self) {
        self.wakes.clear();
        for k in &self.keys {
            self.shared.list_waits.forget(k);
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared
            .list_blocked
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        pass_on(self.shared, &self.keys, std::mem::take(&mut self.wakes));
    }
}

/// Standalone: the wait after a failed first attempt; the RESP3 reply.
pub(crate) async fn standalone_wait(
    shared: &Shared,
    conn: &mut ConnState,
    w: Box<ListWait>,
) -> Vec<u8> {
    let ListWait {
        argv,
        keys,
        timeout_ms,
        wakes,
    } = *w;
    let mut waiting = Waiting::new(shared, keys, wakes);
    let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
    let Some(idx) = crate::cmd::lookup(argv[0]) else {
        return b"-ERR unknown command\r\n".to_vec();
    };
    let spec = &crate::cmd::table()[idx];
    let deadline = deadline_of(timeout_ms);
    loop {
        if let Woken::Gave = wait_wake(shared, conn, &mut waiting.wakes, deadline).await {
            return NULL.to_vec();
        }
        waiting.clear();
        match attempt(
            shared,
            spec,
            &argv,
            crate::unix_ms(),
            Some(&waiting.keys),
            true,
        ) {
            Ok(reply) => return reply,
            Err(None) => return format!("-{TOO_MANY}\r\n").into_bytes(),
            // Someone else was first: wait again, first in line.
            Err(Some(again)) => waiting.wakes = again,
        }
    }
}

/// Whether a deferred command is a blocking pop (cluster mode waits for
/// it in `cluster_wait`).
pub(crate) fn is_blocking(d: &Deferred) -> bool {
    let name = crate::cmd::table()[d.idx].name;
    matches!(
        name,
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "blmpop" | "bzpopmin" | "bzpopmax" | "bzmpop"
    )
}

/// Cluster mode: registers on this node, proposes the attempt through
/// the group's log, and waits for a wake to propose it again, until it
/// pops something or its time runs out. Failover needs nothing special:
/// the registration is this node's, every node applies the group's
/// writes whoever leads, and an attempt is proposed to whichever node
/// leads when it is made (an attempt whose outcome is unknown is
/// answered as any write's: -UNKNOWN).
pub(crate) async fn cluster_wait(
    shared: &Shared,
    conn: &mut ConnState,
    d: &Deferred,
    g: u16,
) -> Result<crate::cluster::exec::Output, String> {
    use crate::cluster::exec::{run_in_group, Output};
    let argv: Vec<&[u8]> = d.argv.iter().map(|a| a.as_slice()).collect();
    let (keys, timeout_ms, kind) = match cairn_engine::cmd::blpop::wait_of(&argv) {
        Some(Ok(w)) => w,
        // Not waiting: the group answers (the error, or the attempt).
        _ => return run_in_group(shared, conn, d, g, true).await,
    };
    let keys: Vec<ListKey> = keys
        .iter()
        .map(|k| (g as usize, Box::from(*k), kind))
        .collect();
    let deadline = deadline_of(timeout_ms);
    let mut first = false;
    let mut waiting = Waiting::new(shared, keys, Vec::new());
    loop {
        // Registered before the attempt is proposed: a push ordered
        // after the attempt in the log is applied here after this.
        match register(shared, &waiting.keys, first) {
            Some(wakes) => waiting.wakes = wakes,
            None => return Err(TOO_MANY.into()),
        }
        match run_in_group(shared, conn, d, g, true).await {
            Ok(Output::Resp3(b)) if b == NULL => {}
            other => return other,
        }
        if let Woken::Gave = wait_wake(shared, conn, &mut waiting.wakes, deadline).await {
            return Ok(Output::Resp3(NULL.to_vec()));
        }
        waiting.clear();
        first = true;
    }
}
