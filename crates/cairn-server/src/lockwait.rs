//! Waiting for a lock: `LOCK.ACQUIRE ... WAIT ms` (docs/design/locks.md).
//!
//! The queue of waiters is state of the lock table (replicated in cluster
//! mode), so its order survives failover. This module is the node-local
//! half: the connections waiting here, keyed by (shard, lock, owner). A
//! grant made by applying a command — a release, an expiry, a forced
//! release handing the lock to the first waiter — is reported by the
//! lock table (`take_grants`) to whoever applied it, which wakes the
//! connection waiting for that owner on this node: in cluster mode every
//! replica applies every entry, so the node the client waits on hears of
//! its grant as soon as it applies it, whoever leads. A wait whose time
//! runs out (or whose client is killed, or the server stops) takes its
//! owner out of the queue (`LOCK.DEQUEUE`, through the log in cluster
//! mode); if the grant came first, the wait succeeded after all.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

type Key = (usize, Box<[u8]>, Box<[u8]>);

/// Connections of this node waiting for a grant.
#[derive(Default)]
pub(crate) struct Waits(Mutex<HashMap<Key, Vec<oneshot::Sender<u64>>>>);

/// Waiting connections per node at most (every wait is bounded).
const WAITS_MAX: usize = 100_000;

impl Waits {
    /// Registers a wait for `owner`'s grant of `name` in shard `shard`;
    /// `None` when too many connections wait already. Call with the
    /// shard locked, after checking the owner does not hold the lock
    /// (grants are reported under the same lock: none is missed).
    pub fn register(
        &self,
        shard: usize,
        name: &[u8],
        owner: &[u8],
    ) -> Option<oneshot::Receiver<u64>> {
        let mut m = self.0.lock();
        if m.len() >= WAITS_MAX {
            // Drop the waits nobody listens to any more first.
            m.retain(|_, v| {
                v.retain(|tx| !tx.is_closed());
                !v.is_empty()
            });
            if m.len() >= WAITS_MAX {
                return None;
            }
        }
        let (tx, rx) = oneshot::channel();
        m.entry((shard, name.into(), owner.into()))
            .or_default()
            .push(tx);
        Some(rx)
    }

    /// Wakes the connections waiting for these grants (call with the
    /// shard locked, right after the command that made them).
    pub fn notify(&self, shard: usize, grants: Vec<cairn_engine::locks::Grant>) {
        if grants.is_empty() {
            return;
        }
        let mut m = self.0.lock();
        for g in grants {
            if let Some(txs) = m.remove(&(shard, g.name, g.owner)) {
                for tx in txs {
                    let _ = tx.send(g.token);
                }
            }
        }
    }

    /// Forgets a wait that ended without its grant.
    pub fn forget(&self, shard: usize, name: &[u8], owner: &[u8]) {
        let mut m = self.0.lock();
        let key: Key = (shard, name.into(), owner.into());
        if let Some(v) = m.get_mut(&key) {
            v.retain(|tx| !tx.is_closed());
            if v.is_empty() {
                m.remove(&key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().values().map(Vec::len).sum()
    }
}

/// How a wait ended.
pub(crate) enum WaitEnd {
    Granted(u64),
    /// WAIT ran out, the client was killed, or the server is stopping:
    /// the owner must leave the queue.
    Gave,
}

/// Waits until `owner` is granted `name` (shard `shard`), for at most
/// `wait_ms`, or until the client is killed or the server stops.
pub(crate) async fn wait_for_grant(
    shared: &crate::Shared,
    killed: &std::sync::atomic::AtomicBool,
    shard: usize,
    name: &[u8],
    owner: &[u8],
    wait_ms: u64,
) -> WaitEnd {
    let rx = {
        let ks = shared.db.lock(shard);
        if let Some(t) = ks.locks.holder_token(name, owner) {
            return WaitEnd::Granted(t);
        }
        shared.lock_waits.register(shard, name, owner)
    };
    let Some(mut rx) = rx else {
        return WaitEnd::Gave;
    };
    let mut shutdown = shared.shutdown.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    loop {
        tokio::select! {
            r = &mut rx => match r {
                Ok(t) => return WaitEnd::Granted(t),
                Err(_) => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.wait_for(|v| *v) => break,
            // CLIENT KILL: checked a few times a second.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if killed.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    drop(rx);
    shared.lock_waits.forget(shard, name, owner);
    WaitEnd::Gave
}
