//! The leader's background work in cluster mode: active expiry, eviction
//! before a write, and cluster-wide settings.

use std::sync::Arc;
use std::time::Duration;

use cairn_cluster::Cluster;

use super::exec::error_text;
use super::CLUSTER_SETTINGS;
use crate::{unix_ms, Shared};

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
pub(super) async fn make_room(shared: &Shared, cluster: &Cluster, g: u16) -> Result<(), String> {
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
        let (settings, epoch) = {
            let st = rx.borrow_and_update();
            (st.settings.clone(), st.epoch)
        };
        for (k, v) in &settings {
            if applied.get(k) == Some(v) {
                continue;
            }
            if let Some(user) = crate::acl::meta_user(k) {
                // Users are cluster-wide (docs/design/acl.md).
                if let Err(e) = shared.acl.install(&user, v) {
                    tracing::warn!(setting = %k, error = %e, "replicated ACL user refused");
                }
                continue;
            }
            if CLUSTER_SETTINGS.contains(&k.as_str()) {
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
        shared.acl.set_meta_epoch(epoch);
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = shutdown.wait_for(|v| *v) => return,
        }
    }
}

/// Active expiry in cluster mode: for each group this node leads, look
/// for expired keys and propose their deletion through the log.
pub(crate) async fn expire_cron(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut cursors: Vec<usize> = Vec::new();
    let mut hash_cursors: Vec<Vec<u8>> = Vec::new();
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
        // Hash fields past their deadline (HEXPIRE): the log removes them.
        hash_cursors.resize(cluster.groups() as usize, Vec::new());
        for g in 0..cluster.groups() {
            if !cluster.is_leader(g) {
                continue;
            }
            let keys = {
                let ks = shared.db.lock(g as usize);
                let (keys, next) = ks.hash_expired_keys(&hash_cursors[g as usize], 64, now);
                hash_cursors[g as usize] = next;
                keys
            };
            if keys.is_empty() {
                continue;
            }
            let mut argv: Vec<&[u8]> = vec![b"CAIRN.HPURGE"];
            argv.extend(keys.iter().map(|k| k.as_slice()));
            if let Err(e) = cluster.write(g, &argv).await {
                tracing::debug!(group = g, error = %e, "field expiry proposal failed");
            }
        }
    }
}

/// Lock leases in cluster mode: for each group this node leads, commit
/// the end of every grant whose lease ran out by this node's monotonic
/// clock (`CAIRN.LOCKEXPIRE name token owner renewed`; apply ignores it if
/// that grant no longer holds or was renewed since). Every 10 ms: a crashed holder's lock passes on within
/// its lease plus about that. docs/design/locks.md.
/// The lock expiry scan's period while no group this node leads holds a
/// lock.
const LOCK_SCAN_IDLE_MS: u64 = 100;

pub(crate) async fn lock_expire_cron(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    // Every 10 ms while a group this node leads holds a lock; every
    // 100 ms while none does, so an idle node is not woken 100 times a
    // second for nothing (a lease granted in such a stretch may end up to
    // 100 ms late: never early, docs/design/locks.md).
    let mut busy = false;
    loop {
        let period = Duration::from_millis(if busy { 10 } else { LOCK_SCAN_IDLE_MS });
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let Some(cluster) = shared.cluster.get() else {
            continue;
        };
        let now = crate::mono_us();
        busy = false;
        for g in 0..cluster.groups() {
            if !cluster.is_leader(g) {
                continue;
            }
            let expired = {
                let ks = shared.db.lock(g as usize);
                if ks.locks.is_empty() {
                    continue;
                }
                busy = true;
                ks.locks.expired(now, 64)
            };
            for (name, owner, token, renewed) in expired {
                let token = token.to_string();
                let renewed = renewed.to_string();
                let argv: [&[u8]; 5] = [
                    b"CAIRN.LOCKEXPIRE",
                    &name,
                    token.as_bytes(),
                    &owner,
                    renewed.as_bytes(),
                ];
                if let Err(e) = cluster.write(g, &argv).await {
                    tracing::debug!(group = g, error = %e, "lock expiry proposal failed");
                }
            }
        }
    }
}
