//! The state-machine adapter: how the Raft engine applies replicated
//! commands to this server's keyspaces, snapshots and restores them, and
//! runs requests other nodes forward to this leader.

use std::sync::{Arc, OnceLock, Weak};

use cairn_cluster::{decode_argvs, BoxFuture, Forward, Host, Stamp};
use cairn_proto::{Protocol, ReplyWriter};

use super::exec::{error_text, run_in_group, Output};
use super::{route, Route};
use crate::cmd;
use crate::join::join_all;
use crate::session::{ConnState, ForwardedClient};
use crate::{unix_ms, Shared};

/// The cluster layer's view of this server: replicated commands apply to
/// the shard whose index is the group id.
pub(crate) struct ServerHost {
    pub shared: OnceLock<Weak<Shared>>,
    /// The client forwarded requests run as (one, not one per request).
    pub forwarded: Arc<ForwardedClient>,
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
        // The command's place in the group's history: the token of a
        // lock it grants, the version of every key it changes (WATCH).
        ks.set_stamp(at.index, u64::from(at.position));
        let mut w = ReplyWriter::new(out, Protocol::Resp3);
        cairn_engine::replicated::apply_argv(&mut *ks, argv, at.ts_ms, &mut w);
        // A release or expiry that handed a lock to a waiter: wake the
        // waiting connection if it is on this node.
        let grants = ks.locks.take_grants();
        shared.lock_waits.notify(i, grants);
        // A push that made a list non-empty: wake the connection blocked
        // on it longest, if it waits on this node.
        crate::listwait::wake_ready(&shared, i, &mut ks);
        shared.db.refresh(i, &ks);
    }

    fn prefetch(&self, group: u16, keys: &[&[u8]]) {
        let Some(shared) = self.shared() else {
            return;
        };
        let ks = shared.db.lock(group as usize);
        for k in keys {
            ks.prefetch(k);
        }
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
        // Leases of the locks it holds count from now here: never earlier
        // than they would have on a replica that applied their grants.
        ks.locks.set_clock(crate::mono_us);
        ks.locks.start_leases(crate::mono_us());
        ks.set_access_tracking(shared.tracking());
        ks.set_string_len_max(
            shared
                .settings
                .bulk_len_max
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        shared.db.replace(group as usize, ks);
        // Any list may have changed: waiters here look again.
        crate::listwait::after_restore(&shared, group as usize);
        Ok(())
    }

    fn clear(&self, group: u16) {
        // Through restore, so every piece of per-group state (locks,
        // waiters looking again, settings) is reset as a snapshot does.
        let mut empty = Vec::new();
        let written = cairn_engine::snapshot::write(&cairn_engine::Keyspace::new(0), &mut empty);
        if let Err(e) = written
            .map_err(|e| e.to_string())
            .and_then(|_| self.restore(group, &empty))
        {
            tracing::error!(group, error = %e, "clearing a group this node left");
        }
    }

    fn forward(&self, reqs: Vec<Forward>) -> BoxFuture<Vec<Vec<u8>>> {
        let shared = self.shared();
        let from = self.forwarded.clone();
        Box::pin(async move {
            let Some(shared) = shared else {
                return vec![b"-ERR server stopped\r\n".to_vec(); reqs.len()];
            };
            // join_all's first poll starts each command in batch order.
            join_all(reqs.into_iter().map(|r| serve_forwarded(&shared, &from, r))).await
        })
    }
}

/// Executes a request another node forwarded: as the group's leader,
/// never forwarding again (no loops); RESP3 reply.
pub(crate) async fn serve_forwarded(
    shared: &Shared,
    from: &ForwardedClient,
    req: Forward,
) -> Vec<u8> {
    // The peer transport starts serving while the node is still starting
    // (`Cluster::start` has not returned, `shared.cluster` is unset): then
    // `route` would take this node for a standalone one and run the
    // command on a keyspace still being recovered. A proxy whose forward
    // to a killed leader was retried on the leader's restarted process got
    // nil for acknowledged keys that way (CI, lab test
    // restarted_leader_serves_no_stale_reads, session 13). Retryable.
    if shared.cluster.get().is_none() {
        return b"-TRYAGAIN node is starting, try again\r\n".to_vec();
    }
    // Slices of the request's own buffer: nothing copied here.
    let mut argv: Vec<&[u8]> = Vec::new();
    if decode_argvs(&req.argv, |a| argv = a.to_vec()).is_err() || argv.is_empty() {
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
    let Some(idx) = cmd::lookup(argv[0]) else {
        ReplyWriter::new(&mut out, Protocol::Resp3).error("ERR unknown command");
        return out;
    };
    let mut conn = ConnState::forwarded(from);
    let d = match route(shared, &conn, idx, &argv) {
        Route::Deferred(d) => d,
        Route::Error(e) => {
            ReplyWriter::new(&mut out, Protocol::Resp3).error(&e);
            return out;
        }
        Route::Local => {
            let _ = cmd::run_handler(shared, &mut conn, idx, &argv, &mut out, unix_ms());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A forwarded read reaching a node whose cluster is not started yet
    /// (its keyspace still empty or being recovered) is refused as
    /// retryable, never answered from that keyspace.
    #[tokio::test(flavor = "current_thread")]
    async fn a_forwarded_read_before_the_cluster_started_is_refused() {
        let shared = crate::lockwait::tests::shared();
        let from = ForwardedClient::new(cmd::table().len());
        let mut argv = Vec::new();
        cairn_cluster::encode_argv(&mut argv, &[&b"GET"[..], &b"k"[..]]);
        let req = Forward { group: 0, argv };
        let reply = serve_forwarded(&shared, &from, req).await;
        assert!(
            reply.starts_with(b"-TRYAGAIN"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
}
