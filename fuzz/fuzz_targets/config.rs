//! Fuzzes the config file decoder (`Config::from_toml`: TOML, then
//! `validate`) and the value parsers it shares with CONFIG SET and the
//! command line (`parse_memory`, `parse_peers`). The file is untrusted
//! text: any bytes give a config or an error, never a panic, and an
//! accepted config
//! - still validates, and every derived setting is in range (worker
//!   threads, Raft threads, shard count, the runtime `Settings` and protocol limits, a
//!   cluster member list that names this node);
//! - round-trips: rendered back to TOML (every field, memory sizes as
//!   strings so values above i64::MAX survive) it parses to the same
//!   config.
//!
//! CONFIG SET's per-parameter parser is private to the server (it needs a
//! running server's state); its value syntax is `parse_memory` and plain
//! integers, both covered here.

#![no_main]

use cairn_server::config::{parse_peers, Settings};
use cairn_server::{parse_memory, Config};
use libfuzzer_sys::fuzz_target;

/// Renders every field of `c` as TOML. The destructuring lists every
/// field, so a new one fails the build until it is rendered here too.
fn render(c: &Config) -> String {
    let Config {
        bind,
        port,
        maxmemory,
        maxmemory_policy,
        maxmemory_samples,
        maxclients,
        threads,
        shards,
        raft_threads,
        raft_loops,
        sched_policy,
        proto_max_bulk_len,
        client_query_buffer_limit,
        timeout,
        hz,
        lfu_log_factor,
        lfu_decay_time,
        slowlog_log_slower_than,
        slowlog_max_len,
        latency_monitor_threshold,
        shutdown_timeout,
        node_id,
        peer_port,
        cluster_peers,
        cluster_groups,
        replication_factor,
        dir,
        durability,
        election_timeout_min,
        election_timeout_max,
        heartbeat_interval,
        requirepass,
        aclfile,
        unsafe_stale_reads,
        tls_port,
        tls_cert_file,
        tls_key_file,
        tls_ca_cert_file,
        tls_auth_clients,
        tls_auth_clients_user,
        cluster_secret_file,
        insecure,
        audit_log,
        audit_log_keys,
        maxclients_per_user,
    } = c;
    let mut t = toml::Table::new();
    let mut int = |k: &str, v: i64| {
        t.insert(k.into(), toml::Value::Integer(v));
    };
    // Integer fields come from TOML integers (i64), so they fit.
    let i = |v: u64| i64::try_from(v).expect("a TOML integer field above i64::MAX");
    let u = |v: usize| i64::try_from(v).expect("a TOML integer field above i64::MAX");
    int("port", i64::from(*port));
    int("maxmemory_samples", i64::from(*maxmemory_samples));
    int("maxclients", u(*maxclients));
    int("maxclients_per_user", u(*maxclients_per_user));
    int("threads", u(*threads));
    int("shards", u(*shards));
    int("raft_threads", u(*raft_threads));
    int("raft_loops", u(*raft_loops));
    int("timeout", i(*timeout));
    int("hz", i64::from(*hz));
    int("lfu_log_factor", i64::from(*lfu_log_factor));
    int("lfu_decay_time", i64::from(*lfu_decay_time));
    int("slowlog_log_slower_than", *slowlog_log_slower_than);
    int("slowlog_max_len", i(*slowlog_max_len));
    int("latency_monitor_threshold", i(*latency_monitor_threshold));
    int("shutdown_timeout", i(*shutdown_timeout));
    int("node_id", i(*node_id));
    int("peer_port", i64::from(*peer_port));
    int("cluster_groups", i64::from(*cluster_groups));
    int("election_timeout_min", i(*election_timeout_min));
    int("election_timeout_max", i(*election_timeout_max));
    int("heartbeat_interval", i(*heartbeat_interval));
    let mut s = |k: &str, v: String| {
        t.insert(k.into(), toml::Value::String(v));
    };
    // Memory sizes may come from "<n>gb" strings and exceed i64::MAX.
    s("maxmemory", maxmemory.to_string());
    s("proto_max_bulk_len", proto_max_bulk_len.to_string());
    s(
        "client_query_buffer_limit",
        client_query_buffer_limit.to_string(),
    );
    s("bind", bind.clone());
    s("maxmemory_policy", maxmemory_policy.clone());
    s("cluster_peers", cluster_peers.clone());
    s("dir", dir.clone());
    s("durability", durability.clone());
    s("sched_policy", sched_policy.clone());
    s("replication_factor", replication_factor.clone());
    s("requirepass", requirepass.clone());
    s("aclfile", aclfile.clone());
    s("tls_cert_file", tls_cert_file.clone());
    s("tls_key_file", tls_key_file.clone());
    s("tls_ca_cert_file", tls_ca_cert_file.clone());
    s("tls_auth_clients", tls_auth_clients.clone());
    s("tls_auth_clients_user", tls_auth_clients_user.clone());
    s("cluster_secret_file", cluster_secret_file.clone());
    t.insert(
        "unsafe_stale_reads".into(),
        toml::Value::Boolean(*unsafe_stale_reads),
    );
    t.insert("insecure".into(), toml::Value::Boolean(*insecure));
    t.insert("audit_log".into(), toml::Value::String(audit_log.clone()));
    t.insert("audit_log_keys".into(), toml::Value::Boolean(*audit_log_keys));
    if let Some(p) = tls_port {
        t.insert("tls_port".into(), toml::Value::Integer(i64::from(*p)));
    }
    toml::to_string(&t).expect("rendering a TOML table")
}

fn check_accepted(c: &Config) {
    c.validate().expect("an accepted config validates again");
    let threads = c.worker_threads();
    assert!(threads >= 1, "no worker thread");
    assert!(c.threads == 0 || threads == c.threads, "threads {threads}");
    let raft = c.raft_worker_threads();
    assert!((1..=256).contains(&raft), "raft threads {raft}");
    assert!(c.raft_threads == 0 || raft == c.raft_threads);
    let shards = c.shard_count();
    assert!(
        shards.is_power_of_two() && shards <= 1024,
        "shard count {shards}"
    );
    assert!(c.maxmemory_samples >= 1 && c.maxmemory_samples <= 64);
    assert!((1..=500).contains(&c.hz));
    let _ = c.peer_port();
    if c.is_cluster() {
        let peers = parse_peers(&c.cluster_peers).expect("validated peers parse");
        assert!(peers.contains_key(&c.node_id), "node id not a member");
        assert!(c.cluster_groups.is_power_of_two());
        assert!(
            c.replication_factor == "all"
                || c.replication_factor.parse::<usize>().is_ok_and(|n| (1..=64).contains(&n)),
            "replication factor {:?}",
            c.replication_factor
        );
        assert!(c.election_timeout_min < c.election_timeout_max);
    }
    let settings = Settings::new(c);
    let limits = settings.limits();
    assert!(limits.bulk_len_max >= 1024);
    assert!(limits.query_buffer_max >= 1024 * 1024);
    let _ = settings.policy();

    let text = render(c);
    let again = Config::from_toml(&text)
        .unwrap_or_else(|e| panic!("the rendering of an accepted config fails: {e}\n{text}"));
    assert_eq!(&again, c, "round trip differs; rendered:\n{text}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(c) = Config::from_toml(&text) {
        check_accepted(&c);
    }
    if let Some(n) = parse_memory(&text) {
        // A plain number is itself, in bytes.
        if let Ok(plain) = text.trim().parse::<u64>() {
            assert_eq!(n, plain);
        }
    }
    if let Ok(peers) = parse_peers(&text) {
        assert!(!peers.is_empty());
        for (id, p) in &peers {
            assert!(*id >= 1);
            let resp: std::net::SocketAddr = p.resp.parse().expect("resp address");
            let peer: std::net::SocketAddr = p.peer.parse().expect("peer address");
            assert_eq!(resp.ip(), peer.ip());
        }
    }
});
