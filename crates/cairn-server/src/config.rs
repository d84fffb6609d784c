//! Server configuration: defaults that need no file, an optional TOML
//! file, command-line overrides, and the settings CONFIG SET may change
//! at run time.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};

use cairn_engine::Policy;
use serde::Deserialize;

/// Everything `cairn server` can be told. Field names match the TOML
/// keys and Redis' config names (with `_` for `-`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Like Redis' shipped config, loopback only
    /// unless told otherwise.
    pub bind: String,
    /// RESP port (0 picks a free port).
    pub port: u16,
    /// Memory limit for the keyspace, e.g. "64mb"; 0 or "" = unlimited.
    #[serde(deserialize_with = "de_memory")]
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub maxmemory_samples: u32,
    pub maxclients: usize,
    /// Worker threads; 0 = one per CPU but one (at least 1), leaving a core
    /// to the kernel's network processing and co-located clients.
    pub threads: usize,
    /// Keyspace shards (a power of two from 1 to 1024); 0 = 16 per
    /// worker thread, rounded to a power of two.
    pub shards: usize,
    /// Threads driving the Raft groups and the peer transport (cluster
    /// mode); 0 = the default, 2.
    pub raft_threads: usize,
    /// Raft loops per node (cluster mode): OS threads that step the
    /// groups, group g on loop g mod N (1 to 64; default 1, measured:
    /// docs/BENCHMARKS.md).
    pub raft_loops: usize,
    /// The OS scheduling policy of every thread of the process: `normal`
    /// or `batch` (Linux SCHED_BATCH: a woken thread does not preempt a
    /// running one; fewer context switches where threads outnumber
    /// cores). Applied at startup by the `cairn` binary.
    pub sched_policy: String,
    #[serde(deserialize_with = "de_memory")]
    pub proto_max_bulk_len: u64,
    #[serde(deserialize_with = "de_memory")]
    pub client_query_buffer_limit: u64,
    /// Close connections idle this many seconds (0 = never).
    pub timeout: u64,
    /// Background task frequency (active expiry), 1..=500.
    pub hz: u32,
    pub lfu_log_factor: u32,
    pub lfu_decay_time: u32,
    pub slowlog_log_slower_than: i64,
    pub slowlog_max_len: u64,
    pub latency_monitor_threshold: u64,
    /// Seconds to wait for connections to finish on shutdown.
    pub shutdown_timeout: u64,
    /// This node's id in a cluster (0 = standalone).
    pub node_id: u64,
    /// Peer (Raft) port; 0 = RESP port + 10000, as Redis Cluster's bus.
    pub peer_port: u16,
    /// The cluster's initial members, `ID=HOST:PORT@PEERPORT,...`
    /// (empty = standalone). Every member gets the same list.
    pub cluster_peers: String,
    /// Raft data groups the 16384 slots are split over (power of two).
    pub cluster_groups: u16,
    /// Replicas per data group of a new cluster: `all` (every member) or
    /// a count (docs/design/sharding.md); afterwards `CLUSTER SETTING
    /// replication-factor`.
    pub replication_factor: String,
    /// Data directory (Raft log and snapshots). Required when durable.
    pub dir: String,
    /// `durable` (fsync before acknowledging) or `volatile` (memory-only
    /// log: survives a minority of failures, not a full-cluster loss).
    pub durability: String,
    /// Raft election timeout range and heartbeat, milliseconds.
    pub election_timeout_min: u64,
    pub election_timeout_max: u64,
    pub heartbeat_interval: u64,
    /// The default user's password (empty = none: `default` is nopass).
    pub requirepass: String,
    /// ACL file (`user <name> <rule>...` lines) loaded at start and by
    /// ACL LOAD, written by ACL SAVE; empty = none.
    pub aclfile: String,
    /// Connections one user may have logged in at once (AUTH / HELLO
    /// AUTH past it is refused); 0 = no limit.
    pub maxclients_per_user: usize,
    /// TEST ONLY: serve reads from the local replica without the
    /// linearizability check. The fault lab must catch this.
    pub unsafe_stale_reads: bool,
    /// TLS port for RESP clients, beside the plain `port` (unset = no
    /// TLS; 0 picks a free port). Redis' `tls-port`.
    pub tls_port: Option<u16>,
    /// PEM certificate chain and private key of this node.
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// PEM CA bundle client certificates must chain to.
    pub tls_ca_cert_file: String,
    /// `yes` (a client certificate is required, Redis' default),
    /// `optional` (checked when given) or `no`.
    pub tls_auth_clients: String,
    /// `CN`: a client whose certificate was verified is logged in as the
    /// ACL user its subject's Common Name names (when that user exists
    /// and is on); `off` (default).
    pub tls_auth_clients_user: String,
    /// File holding the cluster secret every node proves to its peers
    /// (at least 16 bytes; trailing whitespace ignored). Never given on
    /// the command line itself: a flag names the file.
    pub cluster_secret_file: String,
    /// Start a cluster on non-loopback addresses without peer
    /// authentication (refused otherwise).
    pub insecure: bool,
    /// The audit log file (JSON lines in a hash chain; empty = none).
    pub audit_log: String,
    /// Whether audit records name the keys a command touched.
    pub audit_log_keys: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 6379,
            maxmemory: 0,
            maxmemory_policy: "noeviction".into(),
            maxmemory_samples: 5,
            maxclients: 10_000,
            threads: 0,
            raft_threads: 0,
            raft_loops: 1,
            sched_policy: "normal".into(),
            shards: 0,
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            timeout: 0,
            hz: 10,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            latency_monitor_threshold: 0,
            shutdown_timeout: 10,
            node_id: 0,
            peer_port: 0,
            cluster_peers: String::new(),
            cluster_groups: 64,
            replication_factor: "all".into(),
            dir: String::new(),
            durability: "durable".into(),
            election_timeout_min: 250,
            election_timeout_max: 400,
            heartbeat_interval: 100,
            requirepass: String::new(),
            aclfile: String::new(),
            maxclients_per_user: 0,
            unsafe_stale_reads: false,
            tls_port: None,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_cert_file: String::new(),
            tls_auth_clients: "yes".into(),
            tls_auth_clients_user: "off".into(),
            cluster_secret_file: String::new(),
            insecure: false,
            audit_log: String::new(),
            audit_log_keys: true,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("invalid value for '{name}': {why}")]
    Invalid { name: &'static str, why: String },
    #[error("config file: {0}")]
    File(String),
}

fn invalid(name: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        why: why.into(),
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::File(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if Policy::parse(&self.maxmemory_policy).is_none() {
            return Err(invalid(
                "maxmemory-policy",
                format!("unknown policy '{}'", self.maxmemory_policy),
            ));
        }
        if !(1..=64).contains(&self.maxmemory_samples) {
            return Err(invalid("maxmemory-samples", "must be 1..64"));
        }
        if self.maxclients == 0 {
            return Err(invalid("maxclients", "must be at least 1"));
        }
        if self.shards != 0 && (!self.shards.is_power_of_two() || self.shards > 1024) {
            return Err(invalid("shards", "must be a power of two up to 1024"));
        }
        if self.threads > 1024 {
            return Err(invalid("threads", "must be at most 1024"));
        }
        if self.raft_threads > 256 {
            return Err(invalid("raft-threads", "must be at most 256"));
        }
        if !(1..=64).contains(&self.raft_loops) {
            return Err(invalid("raft-loops", "must be 1..64"));
        }
        if self.sched_policy != "normal" && self.sched_policy != "batch" {
            return Err(invalid("sched-policy", "must be normal or batch"));
        }
        if self.proto_max_bulk_len < 1024 {
            return Err(invalid("proto-max-bulk-len", "must be at least 1024"));
        }
        if self.client_query_buffer_limit < 1024 * 1024 {
            return Err(invalid("client-query-buffer-limit", "must be at least 1mb"));
        }
        if !(1..=500).contains(&self.hz) {
            return Err(invalid("hz", "must be 1..500"));
        }
        if self.tls_port.is_some() {
            self.tls_files()?;
        }
        if !self.tls_auth_clients_user.eq_ignore_ascii_case("off")
            && !self.tls_auth_clients_user.eq_ignore_ascii_case("cn")
        {
            return Err(invalid("tls-auth-clients-user", "must be off or CN"));
        }
        self.bind
            .parse::<std::net::IpAddr>()
            .map_err(|_| invalid("bind", format!("'{}' is not an IP address", self.bind)))?;
        if self.is_cluster() {
            let peers = parse_peers(&self.cluster_peers)?;
            if !peers.contains_key(&self.node_id) {
                return Err(invalid(
                    "node-id",
                    format!("{} is not among cluster-peers", self.node_id),
                ));
            }
            if !crate::cmd::config::replication_factor_ok(&self.replication_factor) {
                return Err(invalid(
                    "replication-factor",
                    "must be all or a count from 1 to 64",
                ));
            }
            if !self.cluster_groups.is_power_of_two() || self.cluster_groups > 16384 {
                return Err(invalid(
                    "cluster-groups",
                    "must be a power of two up to 16384",
                ));
            }
            match self.durability.as_str() {
                "durable" if self.dir.is_empty() => {
                    return Err(invalid("dir", "durable mode needs a data directory"))
                }
                "durable" | "volatile" => {}
                _ => return Err(invalid("durability", "must be durable or volatile")),
            }
            if self.cluster_secret_file.is_empty() && self.tls_port.is_none() && !self.insecure {
                let exposed = std::iter::once(self.bind.clone())
                    .chain(peers.values().map(|p| p.peer.clone()))
                    .find(|a| !is_loopback(a));
                if let Some(a) = exposed {
                    return Err(invalid(
                        "cluster-secret-file",
                        format!(
                            "the cluster listens on or dials {a}, which is not a loopback address: \
                             give every node the same cluster-secret-file so peers authenticate \
                             (or start with --insecure to accept any peer)"
                        ),
                    ));
                }
            }
            if self.heartbeat_interval == 0
                || self.election_timeout_min <= self.heartbeat_interval
                || self.election_timeout_max <= self.election_timeout_min
            {
                return Err(invalid(
                    "election-timeout",
                    "need heartbeat-interval < election-timeout-min < election-timeout-max",
                ));
            }
        }
        Ok(())
    }

    /// Whether this node is part of a Raft cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster_peers.is_empty()
    }

    /// The TLS settings, checked (not the files: those are read at start).
    pub fn tls_files(&self) -> Result<crate::tls::TlsFiles, ConfigError> {
        if self.tls_cert_file.is_empty() || self.tls_key_file.is_empty() {
            return Err(invalid(
                "tls-port",
                "TLS needs tls-cert-file and tls-key-file",
            ));
        }
        let client_auth = crate::tls::ClientAuth::parse(&self.tls_auth_clients)
            .ok_or_else(|| invalid("tls-auth-clients", "must be yes, no or optional"))?;
        if self.is_cluster() && self.tls_ca_cert_file.is_empty() {
            return Err(invalid(
                "tls-ca-cert-file",
                "a cluster with TLS uses it between nodes too (mutual TLS): give the CA that signed every node's certificate",
            ));
        }
        if client_auth != crate::tls::ClientAuth::None && self.tls_ca_cert_file.is_empty() {
            return Err(invalid(
                "tls-auth-clients",
                "checking client certificates needs tls-ca-cert-file (or set tls-auth-clients no)",
            ));
        }
        Ok(crate::tls::TlsFiles {
            cert: self.tls_cert_file.clone().into(),
            key: self.tls_key_file.clone().into(),
            ca: (!self.tls_ca_cert_file.is_empty()).then(|| self.tls_ca_cert_file.clone().into()),
            client_auth,
        })
    }

    /// The peer port this node listens on.
    pub fn peer_port(&self) -> u16 {
        if self.peer_port != 0 {
            self.peer_port
        } else {
            self.port.wrapping_add(10000)
        }
    }

    pub fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        // Measured on 2 cores with the load generator on the same box: two
        // workers oversubscribe the CPUs and lose to one at -P 1 (rps 0.90x
        // and a worse p99 than one worker); see docs/BENCHMARKS.md.
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        cpus.saturating_sub(1).max(1)
    }

    /// Threads of the Raft runtime. Two by default whatever the CPU
    /// count: on a 16-core machine a 3-node cluster's durable SETs at 64
    /// clients were latency-bound, and 4 or 8 threads per node gave 4-17%
    /// less throughput than 2, with more CPU per SET (docs/BENCHMARKS.md,
    /// benches/cairn-threads.sh).
    pub fn raft_worker_threads(&self) -> usize {
        if self.raft_threads > 0 {
            return self.raft_threads;
        }
        2
    }

    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            return self.shards;
        }
        (self.worker_threads() * 16).next_power_of_two().min(1024)
    }
}

/// Whether `addr` (an IP, `IP:PORT` or `[IP]:PORT`; a host name counts
/// as `localhost` only) is a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
        return sa.ip().is_loopback();
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

/// Reads the cluster secret from its file: at least 16 bytes once
/// trailing whitespace (a final newline) is cut.
pub fn read_secret(path: &str) -> Result<Vec<u8>, ConfigError> {
    let mut s =
        std::fs::read(path).map_err(|e| invalid("cluster-secret-file", format!("{path}: {e}")))?;
    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
        s.pop();
    }
    if s.len() < 16 {
        return Err(invalid(
            "cluster-secret-file",
            format!("{path}: the secret must be at least 16 bytes"),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = path,
                    "the cluster secret file is readable by other users: chmod 600 it"
                );
            }
        }
    }
    Ok(s)
}

/// A cluster member as configured: where clients and peers reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    pub resp: String,
    pub peer: String,
}

/// Parses `ID=HOST:PORT@PEERPORT[,...]` (PEERPORT defaults to
/// PORT + 10000).
pub fn parse_peers(s: &str) -> Result<std::collections::BTreeMap<u64, PeerSpec>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let bad = || {
            invalid(
                "cluster-peers",
                format!("'{item}' is not ID=HOST:PORT[@PEERPORT]"),
            )
        };
        let (id, addr) = item.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        if id == 0 {
            return Err(invalid("cluster-peers", "node ids start at 1"));
        }
        let (resp, peer_port) = match addr.split_once('@') {
            Some((r, p)) => (r, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (addr, None),
        };
        let sa: std::net::SocketAddr = resp.parse().map_err(|_| bad())?;
        let pp = peer_port.unwrap_or(sa.port().wrapping_add(10000));
        let spec = PeerSpec {
            resp: sa.to_string(),
            peer: std::net::SocketAddr::new(sa.ip(), pp).to_string(),
        };
        if out.insert(id, spec).is_some() {
            return Err(invalid(
                "cluster-peers",
                format!("node id {id} given twice"),
            ));
        }
    }
    if out.is_empty() {
        return Err(invalid("cluster-peers", "no members"));
    }
    Ok(out)
}

/// Redis' `memtoull`: "1k"=1000, "1kb"=1024, likewise m/mb, g/gb; ""
/// is 0.
pub fn parse_memory(s: &str) -> Option<u64> {
    if s.trim().is_empty() {
        return Some(0);
    }
    cairn_cluster::meta::parse_bytes(s)
}

fn de_memory<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        N(u64),
        S(String),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::N(n) => Ok(n),
        NumOrStr::S(s) => parse_memory(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid memory size '{s}'"))),
    }
}

/// The settings CONFIG SET may change while running. Readers take a
/// relaxed snapshot; a change applies from the next command on.
pub struct Settings {
    pub maxmemory: AtomicU64,
    pub policy: AtomicU8,
    pub samples: AtomicU32,
    pub maxclients: AtomicUsize,
    pub bulk_len_max: AtomicUsize,
    pub query_buffer_max: AtomicUsize,
    pub timeout_s: AtomicU64,
    pub lfu_log_factor: AtomicU32,
    pub lfu_decay_time: AtomicU32,
    pub slowlog_slower_than_us: AtomicU64,
    pub slowlog_max_len: AtomicU64,
    pub latency_threshold_ms: AtomicU64,
    pub hz: AtomicU32,
}

impl Settings {
    pub fn new(c: &Config) -> Settings {
        Settings {
            maxmemory: AtomicU64::new(c.maxmemory),
            policy: AtomicU8::new(policy_index(
                Policy::parse(&c.maxmemory_policy).unwrap_or_default(),
            )),
            samples: AtomicU32::new(c.maxmemory_samples),
            maxclients: AtomicUsize::new(c.maxclients),
            bulk_len_max: AtomicUsize::new(c.proto_max_bulk_len as usize),
            query_buffer_max: AtomicUsize::new(c.client_query_buffer_limit as usize),
            timeout_s: AtomicU64::new(c.timeout),
            lfu_log_factor: AtomicU32::new(c.lfu_log_factor),
            lfu_decay_time: AtomicU32::new(c.lfu_decay_time),
            slowlog_slower_than_us: AtomicU64::new(if c.slowlog_log_slower_than < 0 {
                u64::MAX
            } else {
                c.slowlog_log_slower_than as u64
            }),
            slowlog_max_len: AtomicU64::new(c.slowlog_max_len),
            latency_threshold_ms: AtomicU64::new(c.latency_monitor_threshold),
            hz: AtomicU32::new(c.hz),
        }
    }

    pub fn policy(&self) -> Policy {
        Policy::ALL[self.policy.load(Relaxed) as usize % Policy::ALL.len()]
    }

    pub fn set_policy(&self, p: Policy) {
        self.policy.store(policy_index(p), Relaxed);
    }

    pub fn limits(&self) -> cairn_proto::Limits {
        cairn_proto::Limits {
            bulk_len_max: self.bulk_len_max.load(Relaxed),
            query_buffer_max: self.query_buffer_max.load(Relaxed),
            ..cairn_proto::Limits::default()
        }
    }
}

fn policy_index(p: Policy) -> u8 {
    Policy::ALL.iter().position(|q| *q == p).unwrap_or(0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(bind: &str, peers: &str) -> Config {
        Config {
            bind: bind.into(),
            node_id: 1,
            cluster_peers: peers.into(),
            durability: "volatile".into(),
            ..Config::default()
        }
    }

    #[test]
    fn a_cluster_off_loopback_needs_a_secret_or_insecure() {
        assert!(cluster("127.0.0.1", "1=127.0.0.1:7001,2=127.0.0.2:7002")
            .validate()
            .is_ok());
        assert!(is_loopback("localhost:17001") && is_loopback("[::1]:7001"));
        assert!(!is_loopback("10.0.0.1:7001") && !is_loopback("db.example:7001"));
        let e = cluster("10.0.0.1", "1=10.0.0.1:7001,2=10.0.0.2:7002")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("cluster-secret-file"), "{e}");
        // A loopback bind does not hide a peer reached off the machine.
        assert!(cluster("127.0.0.1", "1=127.0.0.1:7001,2=10.0.0.2:7002")
            .validate()
            .is_err());
        let mut c = cluster("10.0.0.1", "1=10.0.0.1:7001,2=10.0.0.2:7002");
        c.insecure = true;
        assert!(c.validate().is_ok());
        let mut c = cluster("10.0.0.1", "1=10.0.0.1:7001,2=10.0.0.2:7002");
        c.cluster_secret_file = "/some/file".into();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_short_or_missing_secret_is_refused() {
        let d = std::env::temp_dir().join(format!("cairn-secret-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("s");
        std::fs::write(&f, "short\n").unwrap();
        assert!(read_secret(&f.to_string_lossy()).is_err());
        std::fs::write(&f, "0123456789abcdef0123\n\n").unwrap();
        assert_eq!(
            read_secret(&f.to_string_lossy()).unwrap(),
            b"0123456789abcdef0123"
        );
        assert!(read_secret(&d.join("missing").to_string_lossy()).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn tls_settings_are_checked() {
        let mut c = Config {
            tls_port: Some(0),
            ..Config::default()
        };
        assert!(c.validate().is_err(), "no certificate");
        c.tls_cert_file = "n.crt".into();
        c.tls_key_file = "n.key".into();
        assert!(c.validate().is_err(), "client auth without a CA");
        c.tls_auth_clients = "no".into();
        assert!(c.validate().is_ok());
        c.tls_auth_clients = "maybe".into();
        assert!(c.validate().is_err());
    }
    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// The config file is untrusted input: any text gives a config
        /// or an error naming the problem, never a panic.
        #[test]
        fn arbitrary_config_text_never_panics(text in "\\PC{0,200}") {
            let _ = Config::from_toml(&text);
        }

        #[test]
        fn arbitrary_known_keys_and_values_never_panic(
            key in proptest::sample::select(vec![
                "bind", "port", "maxmemory", "maxmemory_policy", "maxmemory_samples", "maxclients",
                "threads", "raft_threads", "raft_loops", "sched_policy", "shards", "proto_max_bulk_len", "client_query_buffer_limit", "hz",
            ]),
            value in proptest::prop_oneof![
                proptest::num::i64::ANY.prop_map(|v| v.to_string()),
                "\"[a-z0-9.:-]{0,12}\"",
                proptest::strategy::Just("[1, 2]".to_string()),
                proptest::strategy::Just("{ a = 1 }".to_string()),
            ],
        ) {
            let text = format!("{key} = {value}\n");
            if let Ok(c) = Config::from_toml(&text) {
                proptest::prop_assert!(c.validate().is_ok());
            }
        }
    }

    #[test]
    fn memory_units_follow_redis() {
        assert_eq!(parse_memory("64mb"), Some(64 * 1024 * 1024));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("1KB"), Some(1024));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("1tb"), None);
        assert_eq!(parse_memory("-1"), None);
    }

    #[test]
    fn toml_file_overrides_defaults_and_rejects_unknown_keys() {
        let c = Config::from_toml(
            "port = 7000\nmaxmemory = \"64mb\"\nmaxmemory_policy = \"allkeys-lru\"\n",
        )
        .unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.maxmemory, 64 << 20);
        assert!(matches!(
            Config::from_toml("prot = 1"),
            Err(ConfigError::File(_))
        ));
        assert!(matches!(
            Config::from_toml("maxmemory_policy = \"lru\""),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Config::from_toml("shards = 3"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Config::from_toml("bind = \"localhost:1\""),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn raft_threads_default_to_two_and_are_bounded() {
        assert_eq!(Config::default().raft_worker_threads(), 2);
        assert_eq!(
            Config::from_toml("raft_threads = 6")
                .unwrap()
                .raft_worker_threads(),
            6
        );
        assert!(matches!(
            Config::from_toml("raft_threads = 257"),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn sched_policy_is_normal_or_batch() {
        assert_eq!(Config::default().sched_policy, "normal");
        assert_eq!(
            Config::from_toml("sched_policy = \"batch\"")
                .unwrap()
                .sched_policy,
            "batch"
        );
        assert!(matches!(
            Config::from_toml("sched_policy = \"fifo\""),
            Err(ConfigError::Invalid {
                name: "sched-policy",
                ..
            })
        ));
    }
}
