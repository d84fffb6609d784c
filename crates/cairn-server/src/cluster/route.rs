//! Where a command goes in cluster mode: run here, wait for a group, or
//! an error (CROSSSLOT, invalid write) before anything is proposed.

use cairn_cluster::NodeInfo;
use cairn_engine::slot::slot;

use super::deferred::Then;
use super::{AdminOp, Deferred};
use crate::cmd::{self, Spec, READONLY, WRITE};
use crate::session::ConnState;
use crate::{unix_ms, Shared};

/// Settings `CLUSTER SETTING` may set: the ones every leader's eviction
/// decisions depend on.
pub(crate) const CLUSTER_SETTINGS: &[&str] = &[
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    cairn_cluster::AUTO_REBALANCE,
    cairn_cluster::REPLICATION_FACTOR,
    cairn_cluster::meta::REPAIR_TIMEOUT,
    cairn_cluster::meta::REBALANCE_PAUSED,
    cairn_cluster::meta::REBALANCE_THROTTLE,
    cairn_cluster::meta::REBALANCE_MAX_MOVES,
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
        "WEIGHT" => Some((|| {
            if !(4..=5).contains(&argv.len()) {
                return Err("ERR wrong number of arguments for 'cluster|weight' command".into());
            }
            let id = id()?;
            let w = std::str::from_utf8(argv[3])
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|&w| w <= cairn_cluster::meta::MAX_WEIGHT)
                .ok_or_else(|| {
                    format!(
                        "ERR weight must be an integer from 0 to {}",
                        cairn_cluster::meta::MAX_WEIGHT
                    )
                })?;
            let zone = match argv.get(4) {
                Some(z) if z.is_empty() || z.len() > cairn_cluster::meta::MAX_ZONE_LEN => {
                    return Err(format!(
                        "ERR zone must be 1 to {} bytes",
                        cairn_cluster::meta::MAX_ZONE_LEN
                    ))
                }
                Some(z) => Some(String::from_utf8_lossy(z).into_owned()),
                None => None,
            };
            Ok(AdminOp::Weight(id, w, zone))
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
            list_wait: None,
            lock_wait: None,
            then: Then::Reply,
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
                list_wait: None,
                lock_wait: None,
                then: Then::Reply,
            })),
        };
    }
    if spec.first_key <= 0 || spec.flags & (WRITE | READONLY) == 0 {
        return Route::Local;
    }
    let mut group = None;
    let mut first_slot = 0;
    for i in spec.keys_of(argv) {
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
    if spec.name == "cairn.exec" {
        // Every key of the transaction in the routing key's group: an
        // entry applies to one group's keyspace only.
        match cmd::multi::exec_keys(argv) {
            Err(e) => return Route::Error(e),
            Ok(keys) => {
                if keys
                    .iter()
                    .any(|k| cluster.group_of_slot(u32::from(slot(k))) != group)
                {
                    return Route::Error(
                        "CROSSSLOT Keys in request don't hash to the same slot".into(),
                    );
                }
            }
        }
    }
    // A BITFIELD of GETs only is a read (BITFIELD_RO's work), served
    // like one: from a READONLY connection's replica, or after a read
    // barrier, never through the log.
    let write = spec.flags & WRITE != 0
        && !(spec.name == "bitfield" && cairn_engine::cmd::bitfield::only_reads(argv));
    // (Only from a replica this node holds: a group placed elsewhere is
    // read through its leader.)
    if !write && (conn.readonly || shared.config.unsafe_stale_reads) && cluster.hosts(group) {
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
        list_wait: None,
        lock_wait: None,
        then: Then::Reply,
    }))
}
