//! INFO [section ...]: server, clients, memory, persistence, stats,
//! replication, cpu, keyspace (default) plus commandstats (all).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::{table, Ctx, Flow};

/// The Redis version cairn reports, so clients enable the features it
/// supports (HELLO, RESP3, SET options).
pub(crate) const REDIS_VERSION: &str = "7.2.0";

const DEFAULT_SECTIONS: [&str; 9] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
];

pub(crate) fn run(ctx: &mut Ctx<'_>, argv: &[&[u8]]) -> Flow {
    let mut wanted: Vec<String> = argv[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    if wanted.is_empty() || wanted.iter().any(|w| w == "default") {
        wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string()));
    }
    if wanted.iter().any(|w| w == "all" || w == "everything") {
        wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string()));
        wanted.push("commandstats".into());
    }
    let text = render(ctx, &wanted);
    ctx.out.verbatim("txt", text.as_bytes());
    Flow::Continue
}

pub(crate) fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_stime), t(ru.ru_utime))
}

pub(crate) fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

fn render(ctx: &Ctx<'_>, wanted: &[String]) -> String {
    let sh = ctx.shared;
    let has = |s: &str| wanted.iter().any(|w| w == s);
    let mut o = String::new();
    let sum = |f: &dyn Fn(&crate::stats::WorkerStats) -> u64| {
        sh.workers.iter().map(|w| f(w)).sum::<u64>()
    };
    if has("server") {
        let uptime = sh.started.elapsed().as_secs();
        let _ = write!(
            o,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\ncairn_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:{}\r\nexecutable:cairn\r\nio_threads_active:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            sh.run_id,
            sh.local_addr.port(),
            uptime / 86400,
            sh.settings.hz.load(Relaxed),
            sh.workers.len(),
        );
    }
    if has("clients") {
        let _ = write!(
            o,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:0\r\n\r\n",
            sh.clients.count(),
            sh.settings.maxclients.load(Relaxed),
            sh.lock_waits.len() + sh.list_blocked.load(Relaxed)
        );
    }
    if has("memory") {
        let used = sh.db.bytes_used() as u64;
        let clients = sh.clients.buffer_bytes() as u64;
        let rss = rss_bytes();
        let max = sh.settings.maxmemory.load(Relaxed);
        let _ = write!(
            o,
            "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_dataset:{used}\r\nused_memory_clients:{clients}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_allocator:jemalloc\r\n\r\n",
            used + clients,
            human(used + clients),
            human(rss),
            human(max),
            sh.settings.policy().name(),
            if used > 0 { rss as f64 / used as f64 } else { 0.0 },
        );
    }
    if has("persistence") {
        o.push_str("# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\n\r\n");
    }
    let mut ks_stats = cairn_engine::Stats::default();
    let mut keys = 0;
    let mut expires = 0;
    sh.db.for_each(|_, ks| {
        ks_stats.hits += ks.stats.hits;
        ks_stats.misses += ks.stats.misses;
        ks_stats.expired_keys += ks.stats.expired_keys;
        ks_stats.evicted_keys += ks.stats.evicted_keys;
        keys += ks.len();
        expires += ks.volatile_len();
    });
    if has("stats") {
        let audit = sh
            .audit
            .as_ref()
            .map_or((0, String::new()), |a| a.position());
        let commands: u64 = sum(&|w| w.commands.iter().map(|c| c.calls.load(Relaxed)).sum());
        let _ = write!(
            o,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{commands}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\ntotal_error_replies:{}\r\ntls_handshake_failures:{}\r\ntls_cert_reloads:{}\r\ntls_cert_reload_failures:{}\r\naudit_records:{}\r\naudit_last_hash:{}\r\n\r\n",
            sum(&|w| w.connections_received.load(Relaxed)),
            sum(&|w| w.net_input_bytes.load(Relaxed)),
            sum(&|w| w.net_output_bytes.load(Relaxed)),
            sum(&|w| w.rejected_connections.load(Relaxed)),
            ks_stats.expired_keys,
            ks_stats.evicted_keys,
            ks_stats.hits,
            ks_stats.misses,
            sum(&|w| w.commands.iter().map(|c| c.failed.load(Relaxed) + c.rejected.load(Relaxed)).sum()),
            sum(&|w| w.tls_handshake_failures.load(Relaxed)),
            sh.tls.as_ref().map_or(0, |t| t.reloads()),
            sh.tls.as_ref().map_or(0, |t| t.reload_failures()),
            audit.0,
            audit.1,
        );
    }
    if has("replication") {
        o.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    }
    if ctx.shared.cluster.get().is_some() {
        o = o.replacen("redis_mode:standalone", "redis_mode:cluster", 1);
    }
    if has("cluster") {
        match ctx.shared.cluster.get() {
            None => o.push_str("# Cluster\r\ncluster_enabled:0\r\n\r\n"),
            Some(c) => {
                let st = c.stats();
                let topo = c.topology();
                let pl = c.placement_progress();
                let _ = write!(
                    o,
                    "# Cluster\r\ncluster_enabled:1\r\ncairn_node_id:{}\r\ncairn_groups:{}\r\ncairn_groups_led:{}\r\ncairn_groups_without_leader:{}\r\ncairn_writes_proposed:{}\r\ncairn_log_entries_proposed:{}\r\ncairn_reads_lease:{}\r\ncairn_reads_lease_fast:{}\r\ncairn_reads_read_index:{}\r\ncairn_durability:{}\r\ncairn_log_appends:{}\r\ncairn_log_fsyncs:{}\r\ncairn_log_bytes:{}\r\ncairn_groups_quiet:{}\r\ncairn_groups_quiesced_total:{}\r\ncairn_groups_woken_total:{}\r\ncairn_raft_messages_sent:{}\r\ncairn_raft_frames_sent:{}\r\ncairn_loop_iterations:{}\r\ncairn_requests_forwarded:{}\r\ncairn_moved_replies:{}\r\ncairn_peer_auth:{}\r\ncairn_peer_auth_failures:{}\r\ncairn_replication_factor:{}\r\ncairn_groups_hosted:{}\r\ncairn_placement_groups_placed:{}\r\ncairn_placement_groups_total:{}\r\ncairn_placement_settled:{}\r\n",
                    c.node_id(),
                    topo.len(),
                    topo.iter().filter(|g| g.is_leader).count(),
                    topo.iter().filter(|g| g.leader.is_none()).count(),
                    st.writes,
                    st.batches,
                    st.lease_reads,
                    st.fast_reads,
                    st.index_reads,
                    ctx.shared.config.durability,
                    st.log_appends,
                    st.log_fsyncs,
                    st.log_bytes,
                    st.groups_quiet,
                    st.quiesced,
                    st.woken,
                    st.messages_sent,
                    st.frames_sent,
                    st.loop_iterations,
                    ctx.shared.forwarded.load(std::sync::atomic::Ordering::Relaxed),
                    ctx.shared.moved.load(std::sync::atomic::Ordering::Relaxed),
                    match (
                        ctx.shared.tls.as_ref().is_some_and(|t| t.peer().is_some()),
                        !ctx.shared.config.cluster_secret_file.is_empty(),
                    ) {
                        (true, true) => "tls+secret",
                        (true, false) => "tls",
                        (false, true) => "secret",
                        (false, false) => "none",
                    },
                    cairn_cluster::peer_auth_failures(),
                    pl.replication_factor
                        .map_or_else(|| "all".to_string(), |n| n.to_string()),
                    pl.hosted,
                    pl.placed,
                    pl.groups,
                    u8::from(!pl.placing && pl.placed == pl.groups),
                );
                let _ = write!(
                    o,
                    "cairn_relay_fences:{}\r\ncairn_peer_silent_closes:{}\r\n",
                    st.relay_fences, st.peer_silent_closes
                );
                // The rebalance (docs/OPERATIONS.md, "Rebalancing").
                let (epoch, copies, minimum) = pl
                    .plan
                    .as_ref()
                    .map_or((0, 0, 0), |p| (p.epoch, p.copies, p.minimum.unwrap_or(0)));
                let _ = write!(
                    o,
                    "cairn_rebalance_paused:{}\r\ncairn_rebalance_throttle:{}\r\ncairn_rebalance_max_moves:{}\r\ncairn_rebalance_adds_left:{}\r\ncairn_rebalance_removes_left:{}\r\ncairn_rebalance_snapshots_sent:{}\r\ncairn_rebalance_bytes_sent:{}\r\ncairn_rebalance_snapshots_deferred:{}\r\ncairn_rebalance_plan_epoch:{epoch}\r\ncairn_rebalance_plan_copies:{copies}\r\ncairn_rebalance_plan_minimum:{minimum}\r\n\r\n",
                    u8::from(pl.paused),
                    pl.throttle,
                    pl.max_moves,
                    pl.adds_left,
                    pl.removes_left,
                    pl.snapshots_sent,
                    pl.snapshot_bytes_sent,
                    pl.snapshots_deferred,
                );
            }
        }
    }
    if has("cpu") {
        let (sys, user) = cpu_seconds();
        let _ = write!(
            o,
            "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n\r\n"
        );
    }
    if has("commandstats") {
        o.push_str("# Commandstats\r\n");
        for (i, s) in table().iter().enumerate() {
            let calls = sum(&|w| w.commands[i].calls.load(Relaxed));
            let rejected = sum(&|w| w.commands[i].rejected.load(Relaxed));
            if calls == 0 && rejected == 0 {
                continue;
            }
            let usec = sum(&|w| w.commands[i].usec.load(Relaxed));
            let failed = sum(&|w| w.commands[i].failed.load(Relaxed));
            let per = if calls > 0 {
                usec as f64 / calls as f64
            } else {
                0.0
            };
            let _ = write!(
                o,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls={rejected},failed_calls={failed}\r\n",
                s.name
            );
        }
        o.push_str("\r\n");
    }
    if has("keyspace") {
        o.push_str("# Keyspace\r\n");
        if keys > 0 {
            let _ = write!(o, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
        }
        o.push_str("\r\n");
    }
    while o.ends_with("\r\n\r\n") {
        o.truncate(o.len() - 2);
    }
    o
}
