//! A cairn cluster in the lab: node `i` (0-based) runs on lab host `i`
//! with node id `i + 1`, listens on `10.213.0.<i+1>:PORT` (peers on
//! `PORT + 10000`), and keeps its durable Raft log and snapshots in
//! `<lab dir>/node<i+1>` so a SIGKILLed node restarts with its state.
//!
//! Everything that talks to a node runs in the lab's client host: probes
//! (`cairn-lab leader`, `wait-cluster`, `digest`) and workloads
//! (`cairn-lab workload --targets ...`) are started there with
//! [`Lab::exec`] / [`Lab::spawn`]; this process only starts processes,
//! sends signals and edits nftables rules.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::probe::Digest;
use crate::{Lab, LabError, ProcId};

/// How to run the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `cairn` binary.
    pub cairn: PathBuf,
    /// The `cairn-lab` binary (probes and workloads in the client host).
    pub tool: PathBuf,
    /// Number of nodes (at most the lab's node hosts).
    pub nodes: usize,
    /// RESP port of every node (peer port: +10000).
    pub port: u16,
    /// Raft groups (`--cluster-groups`).
    pub groups: u16,
    /// `--durability durable` (else `volatile`).
    pub durable: bool,
    /// `--heartbeat-interval` in ms.
    pub heartbeat_ms: u64,
    /// `--election-timeout-min` in ms.
    pub election_min_ms: u64,
    /// `--election-timeout-max` in ms.
    pub election_max_ms: u64,
    /// `--unsafe-stale-reads` on every node (TEST ONLY: reads skip the
    /// linearizability check; the lab must catch it).
    pub unsafe_stale_reads: bool,
    /// `--threads`.
    pub threads: usize,
    /// `--log` filter of the nodes.
    pub log: String,
}

impl ClusterSpec {
    /// Three durable nodes, 16 groups, port 6390, one thread each, and
    /// Raft timings generous enough for a debug build on a busy machine
    /// (heartbeat 250 ms, election timeout 1-2 s).
    pub fn new(cairn: impl Into<PathBuf>, tool: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            cairn: cairn.into(),
            tool: tool.into(),
            nodes: 3,
            port: 6390,
            groups: 16,
            durable: true,
            heartbeat_ms: 250,
            election_min_ms: 1000,
            election_max_ms: 2000,
            unsafe_stale_reads: false,
            threads: 1,
            log: "warn".into(),
        }
    }
}

#[derive(Default)]
struct NodeState {
    proc: Option<ProcId>,
    /// Killed by us and not restarted yet.
    down: bool,
    paused: bool,
    /// Processes started for this node (1 + restarts).
    starts: u32,
}

/// A running cluster on a [`Lab`]; the lab owns (and cleans up) the
/// processes.
pub struct Cluster<'l> {
    lab: &'l Lab,
    spec: ClusterSpec,
    state: Mutex<Vec<NodeState>>,
}

/// Probe answers of `cairn-lab leader`.
#[derive(Clone, Debug)]
pub struct LeaderProbe {
    /// The leader named by most nodes (node index).
    pub leader: Option<usize>,
    /// The raw JSON answer.
    pub raw: String,
}

impl<'l> Cluster<'l> {
    /// Starts every node and waits (at most `ready_limit`) until each one
    /// knows a leader for every group.
    pub fn start(
        lab: &'l Lab,
        spec: ClusterSpec,
        ready_limit: Duration,
    ) -> Result<Cluster<'l>, LabError> {
        if spec.nodes == 0 || spec.nodes > lab.node_count() {
            return Err(LabError::Invalid(format!(
                "{} nodes on a lab of {} node hosts",
                spec.nodes,
                lab.node_count()
            )));
        }
        let cluster = Cluster {
            lab,
            state: Mutex::new((0..spec.nodes).map(|_| NodeState::default()).collect()),
            spec,
        };
        for i in 0..cluster.spec.nodes {
            cluster.spawn_node(i)?;
        }
        cluster.wait_ready(ready_limit)?;
        Ok(cluster)
    }

    fn state(&self) -> MutexGuard<'_, Vec<NodeState>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lab it runs on.
    pub fn lab(&self) -> &'l Lab {
        self.lab
    }

    /// Its spec.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.spec.nodes
    }

    /// `IP:PORT` of node `i`.
    pub fn addr(&self, i: usize) -> String {
        let ip = self
            .lab
            .addr(i)
            .map_or_else(|_| "0.0.0.0".into(), |a| a.to_string());
        format!("{ip}:{}", self.spec.port)
    }

    /// Every node's `IP:PORT`.
    pub fn addrs(&self) -> Vec<String> {
        (0..self.nodes()).map(|i| self.addr(i)).collect()
    }

    /// The `--targets` argument naming every node.
    pub fn targets(&self) -> String {
        self.addrs().join(",")
    }

    /// The node listening at `addr`.
    pub fn node_of(&self, addr: &str) -> Option<usize> {
        (0..self.nodes()).find(|&i| self.addr(i) == addr)
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.lab.dir().join(format!("node{}", i + 1))
    }

    /// The arguments node `i` is started with (the same on every restart).
    pub fn args(&self, i: usize) -> Vec<String> {
        let s = &self.spec;
        let peers: Vec<String> = (0..s.nodes)
            .map(|j| format!("{}={}", j + 1, self.addr(j)))
            .collect();
        let ip = self
            .lab
            .addr(i)
            .map_or_else(|_| "0.0.0.0".into(), |a| a.to_string());
        let mut args: Vec<String> = [
            "server",
            "--bind",
            &ip,
            "--port",
            &s.port.to_string(),
            "--node-id",
            &(i + 1).to_string(),
            "--cluster-peers",
            &peers.join(","),
            "--cluster-groups",
            &s.groups.to_string(),
            "--durability",
            if s.durable { "durable" } else { "volatile" },
            "--dir",
            &self.data_dir(i).to_string_lossy(),
            "--threads",
            &s.threads.to_string(),
            "--heartbeat-interval",
            &s.heartbeat_ms.to_string(),
            "--election-timeout-min",
            &s.election_min_ms.to_string(),
            "--election-timeout-max",
            &s.election_max_ms.to_string(),
            "--log",
            &s.log,
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        if s.unsafe_stale_reads {
            args.push("--unsafe-stale-reads".into());
        }
        args
    }

    fn spawn_node(&self, i: usize) -> Result<ProcId, LabError> {
        let dir = self.data_dir(i);
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            what: "creating",
            path: dir,
            source,
        })?;
        let args = self.args(i);
        let p = self
            .lab
            .spawn(i, &self.spec.cairn.to_string_lossy(), &args)?;
        let mut st = self.state();
        let n = st.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        n.proc = Some(p);
        n.down = false;
        n.paused = false;
        n.starts += 1;
        Ok(p)
    }

    /// The current process of node `i`.
    pub fn proc(&self, i: usize) -> Option<ProcId> {
        self.state().get(i).and_then(|n| n.proc)
    }

    /// Every process ever started for the nodes' current incarnations.
    pub fn procs(&self) -> Vec<ProcId> {
        self.state().iter().filter_map(|n| n.proc).collect()
    }

    /// How many processes node `i` has had (1 + restarts).
    pub fn starts(&self, i: usize) -> u32 {
        self.state().get(i).map_or(0, |n| n.starts)
    }

    /// SIGKILLs node `i` (it stays down until [`Cluster::restart`]).
    pub fn kill(&self, i: usize) -> Result<(), LabError> {
        let p = self.proc(i).ok_or(LabError::NoSuchHost(i))?;
        self.lab.kill(p)?;
        let mut st = self.state();
        if let Some(n) = st.get_mut(i) {
            n.down = true;
            n.paused = false;
        }
        Ok(())
    }

    /// Starts node `i` again with the same arguments and data directory
    /// (after a kill, or after it died). A no-op while it runs.
    pub fn restart(&self, i: usize) -> Result<(), LabError> {
        if let Some(p) = self.proc(i) {
            if self.lab.try_wait(p)?.is_none() {
                return Ok(());
            }
        }
        self.spawn_node(i).map(|_| ())
    }

    /// SIGSTOPs node `i`.
    pub fn pause(&self, i: usize) -> Result<(), LabError> {
        let p = self.proc(i).ok_or(LabError::NoSuchHost(i))?;
        self.lab.pause(p)?;
        if let Some(n) = self.state().get_mut(i) {
            n.paused = true;
        }
        Ok(())
    }

    /// SIGCONTs node `i`.
    pub fn resume(&self, i: usize) -> Result<(), LabError> {
        let p = self.proc(i).ok_or(LabError::NoSuchHost(i))?;
        self.lab.resume(p)?;
        if let Some(n) = self.state().get_mut(i) {
            n.paused = false;
        }
        Ok(())
    }

    /// Heals the network, resumes paused nodes and restarts killed ones.
    /// Returns the first error after trying everything.
    pub fn heal_all(&self) -> Result<(), LabError> {
        let mut first = self.lab.heal().err();
        for i in 0..self.nodes() {
            let (paused, down) = self
                .state()
                .get(i)
                .map_or((false, false), |n| (n.paused, n.down));
            if paused {
                if let Err(e) = self.resume(i) {
                    first.get_or_insert(e);
                }
            }
            if down {
                if let Err(e) = self.restart(i) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Nodes whose process exited without the nemesis killing it, with
    /// the tail of their log.
    pub fn crashed(&self) -> Vec<(usize, String)> {
        let procs: Vec<(usize, Option<ProcId>, bool)> = self
            .state()
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.proc, n.down))
            .collect();
        let mut out = Vec::new();
        for (i, p, down) in procs {
            let Some(p) = p else { continue };
            if down {
                continue;
            }
            if let Ok(Some(status)) = self.lab.try_wait(p) {
                out.push((i, format!("{status}; log tail:\n{}", self.log_tail(i, 30))));
            }
        }
        out
    }

    /// The last `lines` lines of node `i`'s current log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Some(p) = self.proc(i) else {
            return String::new();
        };
        let log = self.lab.log(p);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Writes the stack of every thread of node `i`'s process (`gdb -p
    /// PID -batch -ex 'thread apply all bt'`, if gdb is installed) to
    /// `<lab dir>/n<i+1>-stacks-<k>.txt`: evidence when a node stops
    /// answering. Returns the file.
    pub fn dump_stacks(&self, i: usize) -> Result<PathBuf, String> {
        let p = self.proc(i).ok_or("no process")?;
        if let Some(status) = self.lab.try_wait(p).ok().flatten() {
            return Err(format!("the process has exited: {status}"));
        }
        let pid = self.lab.pid(p).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("timeout")
            .args([
                "60",
                "gdb",
                "-p",
                &pid.to_string(),
                "-batch",
                "-ex",
                "thread apply all bt",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run gdb: {e}"))?;
        let mut k = 1;
        let path = loop {
            let path = self.lab.dir().join(format!("n{}-stacks-{k}.txt", i + 1));
            if !path.exists() {
                break path;
            }
            k += 1;
        };
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// Runs `cairn-lab ARGS` in the client host, at most `limit`; returns
    /// its exit status success and output.
    fn tool(&self, args: &[&str], limit: Duration) -> Result<(bool, String), LabError> {
        let (status, log) = self.lab.exec(
            self.lab.client(),
            &self.spec.tool.to_string_lossy(),
            args,
            limit,
        )?;
        Ok((status.success(), log))
    }

    /// Waits (at most `limit`) until every node answers and knows a leader
    /// for every group.
    pub fn wait_ready(&self, limit: Duration) -> Result<(), LabError> {
        let ms = limit.as_millis().to_string();
        let targets = self.targets();
        let (ok, log) = self.tool(
            &["wait-cluster", "--targets", &targets, "--timeout-ms", &ms],
            limit + Duration::from_secs(10),
        )?;
        if ok {
            return Ok(());
        }
        let logs: Vec<String> = (0..self.nodes())
            .map(|i| {
                let stacks = self.dump_stacks(i).map_or_else(
                    |e| format!("no stacks: {e}"),
                    |p| format!("stacks in {}", p.display()),
                );
                format!("--- n{} ({stacks}) ---\n{}", i + 1, self.log_tail(i, 20))
            })
            .collect();
        Err(LabError::Timeout(format!(
            "cluster not ready: {}\n{}",
            log.trim(),
            logs.join("\n")
        )))
    }

    /// Asks every node (from the client host) who leads `key`'s group;
    /// the answer most nodes give, as a node index.
    pub fn leader_of(&self, key: &str) -> Result<Option<usize>, LabError> {
        Ok(self.leader_probe(key)?.leader)
    }

    /// Like [`Cluster::leader_of`], with the raw per-node answers.
    pub fn leader_probe(&self, key: &str) -> Result<LeaderProbe, LabError> {
        let targets = self.targets();
        let (_, log) = self.tool(
            &[
                "leader",
                "--targets",
                &targets,
                "--key",
                key,
                "--timeout-ms",
                "700",
            ],
            Duration::from_secs(20),
        )?;
        let raw = json_line(&log).unwrap_or_else(|| log.trim().to_owned());
        let leader = serde_json::from_str::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("leader")?.as_str().map(str::to_owned))
            .and_then(|a| self.node_of(&a));
        Ok(LeaderProbe { leader, raw })
    }

    /// Every node's `CLUSTER DIGEST` (group → applied index, digest), or
    /// why it did not answer.
    pub fn digests(&self) -> Result<Vec<Result<Digest, String>>, LabError> {
        let targets = self.targets();
        let (_, log) = self.tool(
            &["digest", "--targets", &targets, "--timeout-ms", "1000"],
            Duration::from_secs(20),
        )?;
        let raw = json_line(&log)
            .ok_or_else(|| LabError::Invalid(format!("cairn-lab digest printed no JSON: {log}")))?;
        let v: serde_json::Value = serde_json::from_str(&raw)
            .map_err(|e| LabError::Invalid(format!("digest JSON {raw}: {e}")))?;
        Ok(self
            .addrs()
            .iter()
            .map(|a| match v.get(a) {
                Some(serde_json::Value::Object(groups)) => {
                    let mut d = Digest::new();
                    for (g, pair) in groups {
                        let g: Option<u16> = g.parse().ok();
                        let idx = pair.get(0).and_then(serde_json::Value::as_u64);
                        let dig = pair.get(1).and_then(serde_json::Value::as_str);
                        if let (Some(g), Some(idx), Some(dig)) = (g, idx, dig) {
                            d.insert(g, (idx, dig.to_owned()));
                        }
                    }
                    Ok(d)
                }
                Some(serde_json::Value::String(e)) => Err(e.clone()),
                other => Err(format!("no answer ({other:?})")),
            })
            .collect())
    }

    /// Compares the replicas: polls every node's `CLUSTER DIGEST` (at
    /// most `limit`) until all report the same applied index for every
    /// group, then their digests must be equal. `Ok(None)`: all equal.
    /// `Ok(Some(text))`: either `"DIVERGED: ..."` (equal applied index,
    /// different state, seen twice in a row: a replication bug) or a note
    /// that the replicas did not converge in time (a lagging replica, not
    /// necessarily a bug).
    pub fn compare_replicas(&self, limit: Duration) -> Result<Option<String>, LabError> {
        let deadline = std::time::Instant::now() + limit;
        let mut last = String::new();
        let mut diverged_once: Option<String> = None;
        loop {
            let all = self.digests()?;
            let mut answers = Vec::new();
            for (i, d) in all.iter().enumerate() {
                match d {
                    Ok(d) => answers.push((i, d)),
                    Err(e) => last = format!("n{} did not answer: {e}", i + 1),
                }
            }
            if answers.len() == self.nodes() {
                let (_, first) = answers[0];
                let mut lagging = None;
                let mut diverged = None;
                for &(i, d) in &answers[1..] {
                    for (g, (idx, dig)) in first {
                        match d.get(g) {
                            Some((i2, d2)) if i2 == idx && d2 != dig => {
                                diverged.get_or_insert(format!(
                                    "group {g} at applied index {idx}: n1 digest {dig}, n{} digest {d2}",
                                    i + 1
                                ));
                            }
                            Some((i2, _)) if i2 != idx => {
                                lagging.get_or_insert(format!(
                                    "group {g}: n1 applied {idx}, n{} applied {i2}",
                                    i + 1
                                ));
                            }
                            None => {
                                lagging.get_or_insert(format!("group {g} missing on n{}", i + 1));
                            }
                            _ => {}
                        }
                    }
                }
                match (diverged, lagging) {
                    // Twice in a row (an apply may race the digest).
                    (Some(d), _) if diverged_once.as_deref() == Some(d.as_str()) => {
                        return Ok(Some(format!("DIVERGED: {d}")));
                    }
                    (Some(d), _) => {
                        diverged_once = Some(d.clone());
                        last = d;
                    }
                    (None, Some(l)) => {
                        diverged_once = None;
                        last = l;
                    }
                    (None, None) => return Ok(None),
                }
            }
            if std::time::Instant::now() >= deadline {
                return Ok(Some(format!(
                    "replicas did not converge in {limit:?}: {last}"
                )));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Starts a workload in the client host against every node (slot `i`
    /// uses node `i mod n`), writing its history to `out`.
    pub fn spawn_workload(&self, w: &WorkloadSpec, out: &Path) -> Result<ProcId, LabError> {
        let args = w.args(&self.targets(), out);
        self.lab
            .spawn(self.lab.client(), &self.spec.tool.to_string_lossy(), &args)
    }
}

/// The last line of `log` that looks like a JSON object.
fn json_line(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .map(|l| l.trim().to_owned())
}

/// Arguments of one `cairn-lab workload` run.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// `register` or `counter`.
    pub kind: String,
    /// Number of keys.
    pub keys: usize,
    /// Key prefix (use a hash tag to keep every key in one group).
    pub key_prefix: String,
    /// Concurrent client slots.
    pub processes: usize,
    /// Per-operation timeout.
    pub timeout_ms: u64,
    /// How long to issue operations.
    pub duration_ms: u64,
    /// Pause between a slot's operations.
    pub think_ms: u64,
    /// Share of reads, in percent.
    pub read_percent: u8,
    /// Key rotation (`--ops-per-key`; 0 = fixed keys).
    pub ops_per_key: u64,
    /// Seed of the operation mix.
    pub seed: u64,
}

impl WorkloadSpec {
    /// The first key (`<prefix>k0`): the nemesis targets its group.
    pub fn first_key(&self) -> String {
        format!("{}k0", self.key_prefix)
    }

    /// Command-line arguments for `cairn-lab`.
    pub fn args(&self, targets: &str, out: &Path) -> Vec<String> {
        vec![
            "workload".into(),
            "--kind".into(),
            self.kind.clone(),
            "--targets".into(),
            targets.into(),
            "--keys".into(),
            self.keys.to_string(),
            "--key-prefix".into(),
            self.key_prefix.clone(),
            "--ops".into(),
            "100000000".into(),
            "--processes".into(),
            self.processes.to_string(),
            "--timeout-ms".into(),
            self.timeout_ms.to_string(),
            "--duration-ms".into(),
            self.duration_ms.to_string(),
            "--think-ms".into(),
            self.think_ms.to_string(),
            "--read-percent".into(),
            self.read_percent.to_string(),
            "--ops-per-key".into(),
            self.ops_per_key.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ]
    }
}
