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

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

type Key = (usize, Box<[u8]>, Box<[u8]>);

/// Connections waiting for a lock grant, by (shard, lock, owner).
pub(crate) type LockWaits = Waits<Key, u64>;

/// Connections of this node waiting for something a command applied
/// here may bring about, keyed by what they wait for, in arrival order:
/// a lock's grant to one owner (this module), or a list becoming
/// non-empty (`listwait.rs`). The one "pending reply" mechanism: a
/// waiter registers under the shard's lock after checking it must wait,
/// and whoever applies a command under that lock wakes it, so no wake is
/// missed.
pub(crate) struct Waits<K, T>(Mutex<HashMap<K, VecDeque<oneshot::Sender<T>>>>);

impl<K, T> Default for Waits<K, T> {
    fn default() -> Self {
        Waits(Mutex::new(HashMap::new()))
    }
}

/// Keys waited for per node and kind at most, and waiters per key (every
/// wait is bounded; connections are bounded by maxclients anyway).
pub(crate) const WAITS_MAX: usize = 100_000;

impl<K: Hash + Eq, T> Waits<K, T> {
    /// Registers a wait for `key`, last in line (or first: a waiter that
    /// was woken but found nothing keeps its place); `None` when too many
    /// connections wait already.
    pub fn register(&self, key: K, first: bool) -> Option<oneshot::Receiver<T>> {
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
        let q = m.entry(key).or_default();
        if q.len() >= WAITS_MAX {
            q.retain(|tx| !tx.is_closed());
            if q.len() >= WAITS_MAX {
                return None;
            }
        }
        let (tx, rx) = oneshot::channel();
        if first {
            q.push_front(tx);
        } else {
            q.push_back(tx);
        }
        Some(rx)
    }

    /// Wakes every connection waiting for `key`.
    pub fn wake_all(&self, key: &K, value: T)
    where
        T: Clone,
    {
        if let Some(txs) = self.0.lock().remove(key) {
            for tx in txs {
                let _ = tx.send(value.clone());
            }
        }
    }

    /// Wakes the longest-waiting connection for `key` that still
    /// listens; whether there was one.
    pub fn wake_first(&self, key: &K, value: T) -> bool {
        let mut m = self.0.lock();
        let Some(q) = m.get_mut(key) else {
            return false;
        };
        let mut value = Some(value);
        while let Some(tx) = q.pop_front() {
            match value.take().map(|v| tx.send(v)) {
                Some(Ok(())) => break,
                Some(Err(v)) => value = Some(v),
                None => break,
            }
        }
        if q.is_empty() {
            m.remove(key);
        }
        value.is_none()
    }

    /// Forgets the waits on `key` that ended (their receiver dropped).
    pub fn forget(&self, key: &K) {
        let mut m = self.0.lock();
        if let Some(v) = m.get_mut(key) {
            v.retain(|tx| !tx.is_closed());
            if v.is_empty() {
                m.remove(key);
            }
        }
    }

    /// The keys waited for that `f` selects.
    pub fn keys_where(&self, f: impl Fn(&K) -> bool) -> Vec<K>
    where
        K: Clone,
    {
        self.0.lock().keys().filter(|k| f(k)).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.0.lock().values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }
}

impl Waits<Key, u64> {
    /// Wakes the connections waiting for these grants (call with the
    /// shard locked, right after the command that made them).
    pub fn notify(&self, shard: usize, grants: Vec<cairn_engine::locks::Grant>) {
        for g in grants {
            self.wake_all(&(shard, g.name, g.owner), g.token);
        }
    }
}

/// How a wait ended.
pub(crate) enum WaitEnd {
    Granted(u64),
    /// WAIT ran out, the client was killed, or the server is stopping:
    /// the owner must leave the queue.
    Gave,
}

/// Waits until `owner` is granted `name` (shard `shard`) with a token
/// above `after`, for at most `wait_ms`, or until the client is killed or
/// the server stops.
///
/// `after` (cluster mode) is the stamp of the command that queued the
/// owner. This node may lag the leader: until it applies that command it
/// may still show the owner holding an earlier grant it has released
/// since, or apply that earlier grant now. Tokens grow with the log, so a
/// grant this wait is for carries a token above `after`; anything else is
/// stale and ignored. Standalone passes 0 (its table is never behind).
pub(crate) async fn wait_for_grant(
    shared: &crate::Shared,
    killed: &std::sync::atomic::AtomicBool,
    shard: usize,
    name: &[u8],
    owner: &[u8],
    wait_ms: u64,
    after: u64,
) -> WaitEnd {
    let mut shutdown = shared.shutdown.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    // Each turn registers (again, after a stale grant consumed the last
    // registration); bounded by the deadline.
    'register: loop {
        let rx = {
            let ks = shared.db.lock(shard);
            if let Some(t) = ks.locks.holder_token(name, owner).filter(|&t| t > after) {
                return WaitEnd::Granted(t);
            }
            shared
                .lock_waits
                .register((shard, name.into(), owner.into()), false)
        };
        let Some(mut rx) = rx else {
            return WaitEnd::Gave;
        };
        loop {
            tokio::select! {
                r = &mut rx => match r {
                    Ok(t) if t > after => return WaitEnd::Granted(t),
                    Ok(_) => continue 'register,
                    Err(_) => break 'register,
                },
                _ = tokio::time::sleep_until(deadline) => break 'register,
                _ = shutdown.wait_for(|v| *v) => break 'register,
                // CLIENT KILL: checked a few times a second.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if killed.load(std::sync::atomic::Ordering::Relaxed) {
                        break 'register;
                    }
                }
            }
        }
    }
    shared
        .lock_waits
        .forget(&(shard, name.into(), owner.into()));
    WaitEnd::Gave
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;
    use crate::Shared;

    /// A server's shared state with one shard in cluster mode (tokens from
    /// stamps, no local expiry), and no listener.
    pub(crate) fn shared() -> Arc<Shared> {
        let config = crate::Config::default();
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let db = crate::db::Shards::new(1, 7);
        db.set_lazy_expire(false);
        Arc::new(Shared {
            settings: crate::config::Settings::new(&config),
            db,
            clients: Default::default(),
            workers: Vec::new(),
            slowlog: Default::default(),
            latency: Default::default(),
            started: std::time::Instant::now(),
            run_id: String::new(),
            local_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_addr: None,
            tls: None,
            audit: None,
            shutdown,
            cluster: std::sync::OnceLock::new(),
            evicting: std::sync::OnceLock::new(),
            lock_waits: Default::default(),
            list_waits: Default::default(),
            list_blocked: Default::default(),
            forwarded: Default::default(),
            moved: Default::default(),
            acl: crate::acl::Acl::new(""),
            config,
        })
    }

    /// Applies one lock operation at `stamp` (index << 16) on this node,
    /// as the host does, waking waiters.
    fn apply(s: &Shared, index: u64, pos: u64, f: impl FnOnce(&mut cairn_engine::locks::Locks)) {
        let mut ks = s.db.lock(0);
        ks.set_stamp(index, pos);
        f(&mut ks.locks);
        let grants = ks.locks.take_grants();
        s.lock_waits.notify(0, grants);
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// The bound on waits is a handled case: past it, registering
    /// answers `None` (the client gets an error), and the waits nobody
    /// listens to any more make room again.
    #[test]
    fn waits_are_bounded_and_abandoned_ones_make_room() {
        let waits: Waits<usize, ()> = Waits::default();
        let mut held: Vec<_> = (0..WAITS_MAX)
            .map(|k| waits.register(k, false).expect("room"))
            .collect();
        assert!(waits.register(WAITS_MAX, false).is_none());
        held.truncate(WAITS_MAX - 1);
        assert!(waits.register(WAITS_MAX, false).is_some());
        // One key's queue is bounded too.
        let one: Waits<usize, ()> = Waits::default();
        let mut q: Vec<_> = (0..WAITS_MAX)
            .map(|_| one.register(0, false).expect("room"))
            .collect();
        assert!(one.register(0, true).is_none());
        q.pop();
        assert!(one.register(0, true).is_some());
    }

    /// Wake-first serves the longest waiter that still listens, and a
    /// waiter registered at the front goes before the others.
    #[test]
    fn wake_first_skips_abandoned_waiters_in_order() {
        let waits: Waits<u8, u8> = Waits::default();
        let a = waits.register(1, false).expect("room");
        let mut b = waits.register(1, false).expect("room");
        let mut c = waits.register(1, true).expect("room");
        assert!(waits.wake_first(&1, 7));
        assert_eq!(c.try_recv(), Ok(7));
        drop(a);
        assert!(waits.wake_first(&1, 8));
        assert_eq!(b.try_recv(), Ok(8));
        assert!(!waits.wake_first(&1, 9));
    }

    /// A node that lags the leader must not answer a queued owner with a
    /// grant it had before (released since at the leader), whether it
    /// still shows that grant or applies it only now: only a grant after
    /// the queueing command counts. (Found by the contended-lock
    /// benchmark: a waiter was answered its previous token, and its
    /// release then found the lock not held.)
    #[test]
    fn a_lagging_node_ignores_the_owners_earlier_grants() {
        let s = shared();
        let never = Arc::new(AtomicBool::new(false));
        let n2 = never.clone();
        // This node still shows o holding its earlier grant (stamp 1);
        // the leader has applied o's release and queued o again at 5.
        apply(&s, 1, 0, |l| {
            l.acquire(b"x", b"o", 60_000, false, 0).unwrap();
        });
        let after = 5 << 16;
        let s2 = s.clone();
        let r = run(async move {
            let wait = wait_for_grant(&s2, &n2, 0, b"x", b"o", 5_000, after);
            let apply_rest = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                apply(&s2, 2, 0, |l| {
                    l.release(b"x", b"o", 1 << 16, 0);
                });
                apply(&s2, 4, 1, |l| {
                    l.acquire(b"x", b"b", 60_000, false, 0).unwrap();
                });
                apply(&s2, 5, 0, |l| {
                    l.acquire(b"x", b"o", 60_000, true, 0).unwrap();
                });
                apply(&s2, 7, 0, |l| {
                    l.release(b"x", b"b", (4 << 16) | 1, 0);
                });
            };
            let (r, ()) = tokio::join!(wait, apply_rest);
            r
        });
        assert!(matches!(r, WaitEnd::Granted(t) if t == 7 << 16));

        // The earlier grant applied only after the wait began: its
        // notification is stale, ignored, and the real one still counts.
        let s = shared();
        let s2 = s.clone();
        let r = run(async move {
            let wait = wait_for_grant(&s2, &never, 0, b"y", b"o", 5_000, after);
            let apply_rest = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                apply(&s2, 1, 0, |l| {
                    l.acquire(b"y", b"b", 60_000, false, 0).unwrap();
                });
                apply(&s2, 2, 0, |l| {
                    l.acquire(b"y", b"o", 60_000, true, 0).unwrap();
                });
                // b leaves: o is granted at 3 — an earlier wait's grant.
                apply(&s2, 3, 0, |l| {
                    l.release(b"y", b"b", 1 << 16, 0);
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                apply(&s2, 4, 0, |l| {
                    l.release(b"y", b"o", 3 << 16, 0);
                });
                apply(&s2, 4, 1, |l| {
                    l.acquire(b"y", b"b", 60_000, false, 0).unwrap();
                });
                apply(&s2, 5, 0, |l| {
                    l.acquire(b"y", b"o", 60_000, true, 0).unwrap();
                });
                apply(&s2, 7, 0, |l| {
                    l.release(b"y", b"b", (4 << 16) | 1, 0);
                });
            };
            let (r, ()) = tokio::join!(wait, apply_rest);
            r
        });
        assert!(matches!(r, WaitEnd::Granted(t) if t == 7 << 16));
    }
}
