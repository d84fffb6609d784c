//! CONFIG GET pattern [pattern ...] | SET name value [name value ...] |
//! RESETSTAT | HELP

use std::sync::atomic::Ordering::Relaxed;

use cairn_engine::glob::glob_match;
use cairn_engine::Policy;

use super::{help, sub, sub_arity, unknown_subcommand, Ctx, Flow};
use crate::config::parse_memory;
use crate::Shared;

/// Parameters CONFIG knows: name, whether SET may change it.
const PARAMS: &[(&str, bool)] = &[
    ("maxmemory", true),
    ("maxmemory-policy", true),
    ("maxmemory-samples", true),
    ("maxclients", true),
    ("proto-max-bulk-len", true),
    ("client-query-buffer-limit", true),
    ("timeout", true),
    ("requirepass", true),
    ("aclfile", false),
    ("hz", true),
    ("lfu-log-factor", true),
    ("lfu-decay-time", true),
    ("slowlog-log-slower-than", true),
    ("slowlog-max-len", true),
    ("latency-monitor-threshold", true),
    ("bind", false),
    ("port", false),
    ("databases", false),
    ("save", false),
    ("appendonly", false),
    ("io-threads", false),
    ("cluster-enabled", false),
    // Fixed: every replica must convert a hash at the same size
    // (docs/design/datatypes.md).
    ("hash-max-listpack-entries", false),
    ("hash-max-listpack-value", false),
    // Set at start; the certificate files are re-read when they change
    // (docs/design/tls.md).
    ("tls-port", false),
    ("tls-cert-file", false),
    ("tls-key-file", false),
    ("tls-ca-cert-file", false),
    ("tls-auth-clients", false),
    // Fixed for the same reason: sets convert at the same size everywhere.
    ("set-max-intset-entries", false),
    ("set-max-listpack-entries", false),
    ("set-max-listpack-value", false),
    // And sorted sets.
    ("zset-max-listpack-entries", false),
    ("zset-max-listpack-value", false),
];

fn get(sh: &Shared, name: &str) -> String {
    let s = &sh.settings;
    match name {
        "maxmemory" => s.maxmemory.load(Relaxed).to_string(),
        "maxmemory-policy" => s.policy().name().to_string(),
        "maxmemory-samples" => s.samples.load(Relaxed).to_string(),
        "maxclients" => s.maxclients.load(Relaxed).to_string(),
        "proto-max-bulk-len" => s.bulk_len_max.load(Relaxed).to_string(),
        "client-query-buffer-limit" => s.query_buffer_max.load(Relaxed).to_string(),
        "timeout" => s.timeout_s.load(Relaxed).to_string(),
        "hz" => s.hz.load(Relaxed).to_string(),
        "lfu-log-factor" => s.lfu_log_factor.load(Relaxed).to_string(),
        "lfu-decay-time" => s.lfu_decay_time.load(Relaxed).to_string(),
        "slowlog-log-slower-than" => match s.slowlog_slower_than_us.load(Relaxed) {
            u64::MAX => "-1".to_string(),
            v => v.to_string(),
        },
        "slowlog-max-len" => s.slowlog_max_len.load(Relaxed).to_string(),
        "latency-monitor-threshold" => s.latency_threshold_ms.load(Relaxed).to_string(),
        "bind" => sh.config.bind.clone(),
        "requirepass" => sh.acl.requirepass(),
        "aclfile" => sh.config.aclfile.clone(),
        "port" => sh.local_addr.port().to_string(),
        "tls-port" => sh.tls_addr.map_or(0, |a| a.port()).to_string(),
        "tls-cert-file" => sh.config.tls_cert_file.clone(),
        "tls-key-file" => sh.config.tls_key_file.clone(),
        "tls-ca-cert-file" => sh.config.tls_ca_cert_file.clone(),
        "tls-auth-clients" => sh.config.tls_auth_clients.clone(),
        "databases" => "1".into(),
        "save" => String::new(),
        "appendonly" => "no".into(),
        "io-threads" => sh.workers.len().to_string(),
        "cluster-enabled" => if sh.cluster.get().is_some() {
            "yes"
        } else {
            "no"
        }
        .into(),
        "hash-max-listpack-entries" => cairn_engine::hash::LISTPACK_ENTRIES_MAX.to_string(),
        "hash-max-listpack-value" => cairn_engine::hash::LISTPACK_VALUE_MAX.to_string(),
        "set-max-intset-entries" => cairn_engine::set::INTSET_ENTRIES_MAX.to_string(),
        "set-max-listpack-entries" => cairn_engine::set::LISTPACK_ENTRIES_MAX.to_string(),
        "set-max-listpack-value" => cairn_engine::set::LISTPACK_VALUE_MAX.to_string(),
        "zset-max-listpack-entries" => cairn_engine::zset::LISTPACK_ENTRIES_MAX.to_string(),
        "zset-max-listpack-value" => cairn_engine::zset::LISTPACK_VALUE_MAX.to_string(),
        _ => String::new(),
    }
}

/// `all` or a replica count from 1 to the most members a cluster has.
pub(crate) fn replication_factor_ok(value: &str) -> bool {
    value == "all"
        || matches!(value.parse::<usize>(), Ok(n) if (1..=cairn_cluster::MAX_MEMBERS).contains(&n))
}

/// Checks a value of a cluster-wide setting (`CLUSTER SETTING`) without
/// applying it, with CONFIG SET's wording.
pub(crate) fn validate(name: &str, value: &str) -> Result<(), String> {
    let ok = match name {
        "maxmemory" => parse_memory(value).is_some(),
        "maxmemory-policy" => Policy::parse(value).is_some(),
        "maxmemory-samples" => matches!(value.parse::<u64>(), Ok(1..=64)),
        cairn_cluster::AUTO_REBALANCE => matches!(value, "yes" | "no"),
        cairn_cluster::REPLICATION_FACTOR => replication_factor_ok(value),
        cairn_cluster::meta::REPAIR_TIMEOUT => matches!(value.parse::<u64>(), Ok(0..=86_400)),
        cairn_cluster::meta::REBALANCE_PAUSED => matches!(value, "yes" | "no"),
        cairn_cluster::meta::REBALANCE_THROTTLE => {
            cairn_cluster::meta::parse_bytes(value).is_some()
        }
        cairn_cluster::meta::REBALANCE_MAX_MOVES => matches!(value.parse::<u64>(), Ok(1..=64)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "ERR Invalid argument '{value}' for CLUSTER SETTING '{name}'"
        ))
    }
}

pub(crate) fn set(sh: &Shared, name: &str, value: &str) -> Result<(), String> {
    let s = &sh.settings;
    let num = |lo: u64, hi: u64| -> Result<u64, String> {
        match value.parse::<u64>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(format!("argument must be between {lo} and {hi} inclusive")),
        }
    };
    let mem = || parse_memory(value).ok_or_else(|| "argument must be a memory value".to_string());
    match name {
        "maxmemory" => s.maxmemory.store(mem()?, Relaxed),
        "maxmemory-policy" => {
            let p = Policy::parse(value).ok_or_else(|| "argument(s) must be one of the following: volatile-lru, allkeys-lru, volatile-lfu, allkeys-lfu, volatile-random, allkeys-random, volatile-ttl, noeviction".to_string())?;
            s.set_policy(p);
            sh.db.set_tracking(sh.tracking());
        }
        "maxmemory-samples" => s.samples.store(num(1, 64)? as u32, Relaxed),
        // Read from the meta state by the cluster's rebalancer.
        // Read by the cluster layer from the meta state itself.
        cairn_cluster::AUTO_REBALANCE
        | cairn_cluster::REPLICATION_FACTOR
        | cairn_cluster::meta::REPAIR_TIMEOUT
        | cairn_cluster::meta::REBALANCE_PAUSED
        | cairn_cluster::meta::REBALANCE_THROTTLE
        | cairn_cluster::meta::REBALANCE_MAX_MOVES => {}
        "maxclients" => s.maxclients.store(num(1, 1_000_000)? as usize, Relaxed),
        "proto-max-bulk-len" => {
            let v = mem()?;
            if v < 1024 {
                return Err("argument must be at least 1kb".into());
            }
            s.bulk_len_max.store(v as usize, Relaxed);
            sh.db.set_string_len_max(v as usize);
        }
        "client-query-buffer-limit" => {
            let v = mem()?;
            if v < 1024 * 1024 {
                return Err("argument must be at least 1mb".into());
            }
            s.query_buffer_max.store(v as usize, Relaxed);
        }
        "timeout" => s.timeout_s.store(num(0, i32::MAX as u64)?, Relaxed),
        "requirepass" => sh.acl.set_requirepass(value),
        "hz" => s.hz.store(num(1, 500)? as u32, Relaxed),
        "lfu-log-factor" => {
            s.lfu_log_factor
                .store(num(0, i32::MAX as u64)? as u32, Relaxed);
            sh.db.set_tracking(sh.tracking());
        }
        "lfu-decay-time" => {
            s.lfu_decay_time
                .store(num(0, i32::MAX as u64)? as u32, Relaxed);
            sh.db.set_tracking(sh.tracking());
        }
        "slowlog-log-slower-than" => {
            let v: i64 = value
                .parse()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
            s.slowlog_slower_than_us
                .store(if v < 0 { u64::MAX } else { v as u64 }, Relaxed);
        }
        "slowlog-max-len" => s.slowlog_max_len.store(num(0, i32::MAX as u64)?, Relaxed),
        "latency-monitor-threshold" => s
            .latency_threshold_ms
            .store(num(0, i64::MAX as u64)?, Relaxed),
        _ => return Err("unknown".into()),
    }
    Ok(())
}

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    match sub(argv).as_str() {
        "GET" if argv.len() >= 3 => {
            let mut found: Vec<&str> = Vec::new();
            for pat in &argv[2..] {
                let pat = pat.to_ascii_lowercase();
                for (name, _) in PARAMS {
                    if glob_match(&pat, name.as_bytes()) && !found.contains(name) {
                        found.push(name);
                    }
                }
            }
            ctx.out.map(found.len());
            for name in found {
                ctx.out.bulk(name.as_bytes());
                ctx.out.bulk(get(ctx.shared, name).as_bytes());
            }
        }
        "SET" if argv.len() >= 4 && argv.len().is_multiple_of(2) => {
            // Validate every pair first so a failing call changes nothing.
            let pairs: Vec<(String, String)> = argv[2..]
                .chunks(2)
                .map(|p| {
                    (
                        String::from_utf8_lossy(p[0]).to_ascii_lowercase(),
                        String::from_utf8_lossy(p[1]).into_owned(),
                    )
                })
                .collect();
            for (name, _) in &pairs {
                match PARAMS.iter().find(|(n, _)| n == name) {
                    None => {
                        ctx.out.error(&format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                        ));
                        return Flow::Continue;
                    }
                    Some((_, false)) => {
                        ctx.out.error(&format!("ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"));
                        return Flow::Continue;
                    }
                    Some(_) => {}
                }
            }
            // Values are checked as they are applied: on a failure, the
            // pairs applied before it go back to their old values, so a
            // failing call changes nothing (as Redis 7).
            let mut undo: Vec<(&str, String)> = Vec::new();
            for (name, value) in &pairs {
                let old = get(ctx.shared, name);
                if let Err(why) = set(ctx.shared, name, value) {
                    for (n, v) in undo.into_iter().rev() {
                        let _ = set(ctx.shared, n, &v);
                    }
                    ctx.out.error(&format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
                    ));
                    return Flow::Continue;
                }
                undo.push((name, old));
            }
            ctx.out.simple("OK");
        }
        "RESETSTAT" if argv.len() == 2 => {
            for w in &ctx.shared.workers {
                w.reset();
            }
            ctx.shared
                .db
                .for_each(|_, ks| ks.stats = Default::default());
            ctx.shared.slowlog.lock().entries.clear();
            ctx.out.simple("OK");
        }
        "REWRITE" if argv.len() == 2 => ctx
            .out
            .error("ERR The server is running without a config file"),
        "HELP" if argv.len() == 2 => {
            return help(
                ctx,
                &[
                    "GET <pattern>",
                    "    Return parameters matching the glob-like <pattern> and their values.",
                    "SET <directive> <value>",
                    "    Set the configuration <directive> to <value>.",
                    "RESETSTAT",
                    "    Reset statistics reported by the INFO command.",
                ],
            )
        }
        "GET" | "SET" | "RESETSTAT" | "REWRITE" | "HELP" => return sub_arity(ctx, argv),
        _ => return unknown_subcommand(ctx, argv),
    }
    Flow::Continue
}
