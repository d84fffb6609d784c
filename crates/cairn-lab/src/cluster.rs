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
//!
//! Clock and disk faults need a node's process wrapped at start-up
//! ([`NodeEnv`]): libfaketime for its wall clock, a time namespace for its
//! monotonic clock, a private size-limited tmpfs for its data dir, libfiu
//! for failing syscalls. The wrappers are kept across restarts.

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

/// How a node's process is wrapped (clock and disk faults). The default
/// is a plain `cairn server`. Kept across restarts until changed with
/// [`Cluster::set_env`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeEnv {
    /// Preload libfaketime (`FAKETIME_DONT_FAKE_MONOTONIC=1`,
    /// `FAKETIME_NO_CACHE=1`): the wall-clock offset is read from
    /// [`Cluster::clock_file`] at every call, so
    /// [`Cluster::set_wall_clock_offset`] moves it at run time. Only
    /// `CLOCK_REALTIME` is faked: faking the monotonic clock hangs tokio.
    pub faketime: bool,
    /// Run in a new time namespace (`unshare --fork --kill-child --time`)
    /// whose `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` are this many seconds
    /// ahead (an offset, not a rate; fixed for the process's life).
    pub monotonic_offset_secs: Option<i64>,
    /// Keep the data dir on a tmpfs of this many bytes, mounted in a
    /// private mount namespace held by a `sleep` process on the node's host
    /// (so the data outlives restarts and vanishes with the lab); the node
    /// enters it with `nsenter -m`. See [`Cluster::fill_disk`].
    pub tmpfs_bytes: Option<u64>,
    /// Preload libfiu (`fiu_run_preload.so` + `fiu_posix_preload.so`, as
    /// `fiu-run -x` does) with a control FIFO in the lab folder; failure
    /// points are switched with [`Cluster::fiu_ctrl`].
    pub fiu: bool,
}

impl NodeEnv {
    /// No wrapper at all.
    pub fn is_plain(&self) -> bool {
        *self == NodeEnv::default()
    }
}

/// Most bytes a node's private tmpfs may have (a bound on what a test
/// can make the lab hold in memory).
pub const TMPFS_BYTES_MAX: u64 = 1 << 30;

/// The file name of the filler [`Cluster::fill_disk`] writes into a
/// node's data dir (cairn keeps its files in `log/` and `snapshots/`).
pub const FILLER: &str = "cairn-lab-filler";

#[derive(Default)]
struct NodeState {
    proc: Option<ProcId>,
    /// How the process is wrapped.
    env: NodeEnv,
    /// The process holding the node's private mount namespace (tmpfs).
    holder: Option<ProcId>,
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
        Cluster::start_with(lab, spec, &[], ready_limit)
    }

    /// Like [`Cluster::start`], node `i` wrapped as `envs[i]` (missing
    /// entries: plain).
    pub fn start_with(
        lab: &'l Lab,
        spec: ClusterSpec,
        envs: &[NodeEnv],
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
        for (i, env) in envs.iter().enumerate().take(cluster.spec.nodes) {
            cluster.set_env(i, env.clone())?;
        }
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

    /// The cluster secret every node proves to its peers: written (mode
    /// 0600) into the lab's directory on first use.
    pub fn secret_file(&self) -> PathBuf {
        let path = self.lab.dir().join("cluster-secret");
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let secret = format!(
                "cairn-lab-{:016x}{:016x}\n",
                std::process::id(),
                self.lab.dir().to_string_lossy().len() as u64 ^ 0x5bd1_e995_dead_beef
            );
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, secret.as_bytes()));
        }
        path
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
            // The lab's nodes listen on non-loopback lab addresses, where
            // cairn insists on peer authentication.
            "--cluster-secret-file",
            &self.secret_file().to_string_lossy(),
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
        let env = self.env(i);
        let mut cmd: Vec<String> = Vec::new();
        if let Some(bytes) = env.tmpfs_bytes {
            let holder = self.ensure_holder(i, bytes)?;
            cmd.extend(["nsenter".into(), "-t".into(), holder.to_string()]);
            cmd.extend(["-m".into(), "--".into()]);
        }
        if let Some(secs) = env.monotonic_offset_secs {
            let secs = secs.to_string();
            cmd.extend(
                ["unshare", "--fork", "--kill-child", "--time", "--monotonic"].map(String::from),
            );
            cmd.extend([secs.clone(), "--boottime".into(), secs]);
        }
        let mut preload = Vec::new();
        let mut vars = Vec::new();
        if env.faketime {
            preload.push(find_lib(FAKETIME_LIBS)?);
            let file = self.clock_file(i);
            if !file.exists() {
                self.set_wall_clock_offset(i, 0)?;
            }
            vars.push(format!("FAKETIME_TIMESTAMP_FILE={}", file.display()));
            vars.push("FAKETIME_NO_CACHE=1".into());
            vars.push("FAKETIME_DONT_FAKE_MONOTONIC=1".into());
        }
        if env.fiu {
            preload.push(find_lib(FIU_RUN_LIBS)?);
            preload.push(find_lib(FIU_POSIX_LIBS)?);
            vars.push(format!("FIU_CTRL_FIFO={}", self.fiu_fifo(i).display()));
            vars.push("FIU_ENABLE=".into());
        }
        if !preload.is_empty() {
            let libs: Vec<String> = preload.iter().map(|p| p.display().to_string()).collect();
            cmd.push("env".into());
            cmd.extend(vars);
            cmd.push(format!("LD_PRELOAD={}", libs.join(" ")));
        }
        cmd.push(self.spec.cairn.to_string_lossy().into_owned());
        cmd.extend(self.args(i));
        let p = self.lab.spawn(i, &cmd[0], &cmd[1..])?;
        let mut st = self.state();
        let n = st.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        n.proc = Some(p);
        n.down = false;
        n.paused = false;
        n.starts += 1;
        Ok(p)
    }

    /// How node `i` is wrapped.
    pub fn env(&self, i: usize) -> NodeEnv {
        self.state()
            .get(i)
            .map(|n| n.env.clone())
            .unwrap_or_default()
    }

    /// Wraps node `i` as `env` from its next start on. The tmpfs size of
    /// a node cannot change once its holder runs (the data lives there).
    pub fn set_env(&self, i: usize, env: NodeEnv) -> Result<(), LabError> {
        if env
            .tmpfs_bytes
            .is_some_and(|b| b == 0 || b > TMPFS_BYTES_MAX)
        {
            return Err(LabError::Invalid(format!(
                "tmpfs of {:?} bytes (1..={TMPFS_BYTES_MAX})",
                env.tmpfs_bytes
            )));
        }
        let mut st = self.state();
        let n = st.get_mut(i).ok_or(LabError::NoSuchHost(i))?;
        if n.holder.is_some() && env.tmpfs_bytes != n.env.tmpfs_bytes {
            return Err(LabError::Invalid(format!(
                "n{}: its data lives on a tmpfs of {:?} bytes; cannot change it to {:?}",
                i + 1,
                n.env.tmpfs_bytes,
                env.tmpfs_bytes
            )));
        }
        n.env = env;
        Ok(())
    }

    /// Kills node `i` (if it runs) and starts it again wrapped as `env`.
    pub fn restart_with(&self, i: usize, env: NodeEnv) -> Result<(), LabError> {
        if let Some(p) = self.proc(i) {
            if self.lab.try_wait(p)?.is_none() {
                self.kill(i)?;
            }
        }
        self.set_env(i, env)?;
        self.restart(i)
    }

    // ----- clock faults ----------------------------------------------------

    /// The libfaketime timestamp file of node `i` (`<lab dir>/n<i+1>.faketime`).
    pub fn clock_file(&self, i: usize) -> PathBuf {
        self.lab.dir().join(format!("n{}.faketime", i + 1))
    }

    /// Moves node `i`'s wall clock to `secs` seconds from the real time
    /// (a node under [`NodeEnv::faketime`] reads it at its next
    /// `clock_gettime(CLOCK_REALTIME)`). The file is replaced atomically.
    pub fn set_wall_clock_offset(&self, i: usize, secs: i64) -> Result<(), LabError> {
        let file = self.clock_file(i);
        let tmp = file.with_extension("faketime.tmp");
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| LabError::Io { what, path, source }
        };
        std::fs::write(&tmp, format!("{secs:+}s\n")).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &file).map_err(io("renaming", &file))
    }

    // ----- disk faults -----------------------------------------------------

    /// The PID of the process holding node `i`'s private mount namespace
    /// (its data dir is a tmpfs there), starting it if needed.
    fn ensure_holder(&self, i: usize, bytes: u64) -> Result<u32, LabError> {
        if let Some(h) = self.state().get(i).and_then(|n| n.holder) {
            if self.lab.try_wait(h)?.is_none() {
                return self.lab.pid(h);
            }
            // Its namespace, and the node's data with it, is gone.
            return Err(LabError::Invalid(format!(
                "the mount namespace holder of n{} died: {}",
                i + 1,
                self.lab.log(h)
            )));
        }
        let dir = self.data_dir(i).to_string_lossy().into_owned();
        let script = format!(
            "mount -t tmpfs -o size={bytes},mode=0755 cairnlab \"$0\" && exec sleep 2147483647"
        );
        let h = self.lab.spawn(
            i,
            "unshare",
            &[
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                &dir,
            ],
        )?;
        let pid = self.lab.pid(h)?;
        if let Some(n) = self.state().get_mut(i) {
            n.holder = Some(h);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mounts =
                std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
            let mounted = mounts
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(dir.as_str()) && l.contains(" tmpfs "));
            // `sh` has exec'd `sleep` once the mount is done.
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if mounted && comm.trim() == "sleep" {
                return Ok(pid);
            }
            if let Some(status) = self.lab.try_wait(h)? {
                return Err(LabError::Command {
                    cmd: format!("unshare --mount sh -c '{script}'"),
                    status: status.to_string(),
                    stderr: self.lab.log(h),
                });
            }
            if std::time::Instant::now() > deadline {
                return Err(LabError::Timeout(format!(
                    "tmpfs of n{} not mounted after 10 s",
                    i + 1
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `sh -c script` in node `i`'s private mount namespace (`$0` is
    /// its data dir), at most 30 s; returns its stdout.
    pub fn in_node_mounts(&self, i: usize, script: &str) -> Result<String, LabError> {
        let holder = self
            .state()
            .get(i)
            .and_then(|n| n.holder)
            .ok_or_else(|| LabError::Invalid(format!("n{} has no private tmpfs", i + 1)))?;
        let pid = self.lab.pid(holder)?.to_string();
        let dir = self.data_dir(i).to_string_lossy().into_owned();
        crate::run_cmd(
            "timeout",
            &[
                "30", "nsenter", "-t", &pid, "-m", "--", "sh", "-c", script, &dir,
            ],
        )
    }

    /// Fills node `i`'s tmpfs (a [`FILLER`] file in its data dir, written
    /// until `ENOSPC`); returns the bytes left free (0 unless root's
    /// reserve applies).
    pub fn fill_disk(&self, i: usize) -> Result<u64, LabError> {
        let out = self.in_node_mounts(
            i,
            &format!(
                "dd if=/dev/zero of=\"$0/{FILLER}\" bs=64k 2>/dev/null; stat -f -c '%a %S' \"$0\""
            ),
        )?;
        let mut f = out.split_whitespace().map(|x| x.parse::<u64>().ok());
        match (f.next().flatten(), f.next().flatten()) {
            (Some(blocks), Some(size)) => Ok(blocks * size),
            _ => Err(LabError::Invalid(format!("stat -f printed {out:?}"))),
        }
    }

    /// Removes the filler of [`Cluster::fill_disk`].
    pub fn free_disk(&self, i: usize) -> Result<(), LabError> {
        self.in_node_mounts(i, &format!("rm -f \"$0/{FILLER}\""))
            .map(|_| ())
    }

    /// Remounts node `i`'s tmpfs read-only (or read-write again). Linux
    /// refuses (`EBUSY`) while a process has a file there open for
    /// writing, so do it while the node is down.
    pub fn set_read_only(&self, i: usize, read_only: bool) -> Result<(), LabError> {
        let mode = if read_only { "ro" } else { "rw" };
        self.in_node_mounts(i, &format!("mount -o remount,{mode} \"$0\""))
            .map(|_| ())
    }

    /// The libfiu control FIFO prefix of node `i`.
    fn fiu_fifo(&self, i: usize) -> PathBuf {
        self.lab.dir().join(format!("n{}-fiu", i + 1))
    }

    /// Sends a libfiu control command (e.g. `enable
    /// name=posix/io/sync/fdatasync`) to node `i`, which must run under
    /// [`NodeEnv::fiu`]. `fiu-ctrl` writes to the node's FIFO and waits
    /// for its answer (at most 10 s here).
    pub fn fiu_ctrl(&self, i: usize, command: &str) -> Result<(), LabError> {
        let pid = self.server_pid(i)?.to_string();
        let fifo = self.fiu_fifo(i).to_string_lossy().into_owned();
        crate::run_cmd(
            "timeout",
            &["10", "fiu-ctrl", "-f", &fifo, "-c", command, &pid],
        )
        .map(|_| ())
    }

    /// The PID of node `i`'s `cairn` process itself: the process started
    /// ([`Lab::spawn`] execs in place through `env` and `nsenter`), or its
    /// child where `unshare --fork` sits in between.
    pub fn server_pid(&self, i: usize) -> Result<u32, LabError> {
        let p = self.proc(i).ok_or(LabError::NoSuchHost(i))?;
        let pid = self.lab.pid(p)?;
        if self.env(i).monotonic_offset_secs.is_none() {
            return Ok(pid);
        }
        descendants(pid).first().copied().ok_or_else(|| {
            LabError::Invalid(format!("n{}: unshare (pid {pid}) has no child", i + 1))
        })
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
        // `unshare --fork` stands between the process started and cairn;
        // cairn must be gone (its data dir lock and ports released)
        // before a restart.
        let children = self.lab.pid(p).map(descendants).unwrap_or_default();
        self.lab.kill(p)?;
        for &c in &children {
            let _ = crate::kill_pid(c, libc::SIGKILL);
        }
        wait_gone(&children, Duration::from_secs(10))?;
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

    /// Deletes node `i`'s durable data (its data dir's contents; on a
    /// private tmpfs, inside its mount namespace). The node must be down.
    pub fn wipe_data_dir(&self, i: usize) -> Result<(), LabError> {
        if let Some(p) = self.proc(i) {
            if self.lab.try_wait(p)?.is_none() {
                return Err(LabError::Invalid(format!("n{} runs: kill it first", i + 1)));
            }
        }
        if self.env(i).tmpfs_bytes.is_some()
            && self.state().get(i).is_some_and(|n| n.holder.is_some())
        {
            return self
                .in_node_mounts(i, "find \"$0\" -mindepth 1 -delete")
                .map(|_| ());
        }
        let dir = self.data_dir(i);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LabError::Io {
                what: "removing",
                path: dir,
                source,
            }),
        }
    }

    /// Records that node `i`'s process ended on purpose (e.g. it refused
    /// to start), so [`Cluster::crashed`] does not report it and
    /// [`Cluster::heal_all`] starts it again.
    pub fn mark_down(&self, i: usize) {
        if let Some(n) = self.state().get_mut(i) {
            n.down = true;
            n.paused = false;
        }
    }

    /// SIGSTOPs node `i`.
    pub fn pause(&self, i: usize) -> Result<(), LabError> {
        let p = self.proc(i).ok_or(LabError::NoSuchHost(i))?;
        self.lab.pause(p)?;
        if self.env(i).monotonic_offset_secs.is_some() {
            signal_pid(self.server_pid(i)?, libc::SIGSTOP)?;
        }
        if let Some(n) = self.state().get_mut(i) {
            n.paused = true;
        }
        Ok(())
    }

    /// SIGCONTs node `i`.
    pub fn resume(&self, i: usize) -> Result<(), LabError> {
        let p = self.proc(i).ok_or(LabError::NoSuchHost(i))?;
        self.lab.resume(p)?;
        if self.env(i).monotonic_offset_secs.is_some() {
            signal_pid(self.server_pid(i)?, libc::SIGCONT)?;
        }
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

    /// The last `lines` lines of node `i`'s current log, backtrace frames
    /// left out (with `RUST_BACKTRACE=1` they would push the error message
    /// itself out of the tail; seen in the session-3 campaign).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Some(p) = self.proc(i) else {
            return String::new();
        };
        let log = self.lab.log(p);
        let all: Vec<&str> = log.lines().filter(|l| !is_backtrace_frame(l)).collect();
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
        let _ = p;
        let pid = self.server_pid(i).map_err(|e| e.to_string())?;
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

    /// Sends one command to node `i` from the client host (bash's
    /// `/dev/tcp` inside the client namespace, followed by `QUIT`) and
    /// returns the raw RESP reply text (the command's reply, then `+OK`
    /// for the `QUIT`), or why it failed. Waits at most `limit` (at
    /// least 1 s) for the replies.
    pub fn command(&self, i: usize, args: &[&str], limit: Duration) -> Result<String, LabError> {
        let ip = self.lab.addr(i)?.to_string();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        req.push_str("*1\r\n$4\r\nQUIT\r\n");
        let script =
            "exec 3<>\"/dev/tcp/$1/$2\" || exit 2; printf '%s' \"$3\" >&3; timeout \"$4\" cat <&3";
        let port = self.spec.port.to_string();
        let secs = limit.as_secs().max(1);
        let (status, log) = self.lab.exec(
            self.lab.client(),
            "bash",
            &["-c", script, "bash", &ip, &port, &req, &secs.to_string()],
            Duration::from_secs(secs + 5),
        )?;
        if !status.success() {
            return Err(LabError::Command {
                cmd: format!("{} to n{}", args.join(" "), i + 1),
                status: status.to_string(),
                stderr: log,
            });
        }
        Ok(log)
    }

    /// Starts a workload in the client host against every node (slot `i`
    /// uses node `i mod n`), writing its history to `out`.
    pub fn spawn_workload(&self, w: &WorkloadSpec, out: &Path) -> Result<ProcId, LabError> {
        let args = w.args(&self.targets(), out);
        self.lab
            .spawn(self.lab.client(), &self.spec.tool.to_string_lossy(), &args)
    }
}

/// Where Debian and others put libfaketime (`faketime` package).
const FAKETIME_LIBS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
    "/usr/lib64/faketime/libfaketime.so.1",
];
/// libfiu's control preload (`fiu-utils` package).
const FIU_RUN_LIBS: &[&str] = &[
    "/usr/lib/fiu/fiu_run_preload.so",
    "/usr/local/lib/fiu/fiu_run_preload.so",
    "/usr/lib64/fiu/fiu_run_preload.so",
];
/// libfiu's POSIX wrappers (`posix/io/sync/fdatasync`...).
const FIU_POSIX_LIBS: &[&str] = &[
    "/usr/lib/fiu/fiu_posix_preload.so",
    "/usr/local/lib/fiu/fiu_posix_preload.so",
    "/usr/lib64/fiu/fiu_posix_preload.so",
];

/// The first of `candidates` that exists, or why the lab cannot wrap
/// nodes with it.
fn find_lib(candidates: &[&str]) -> Result<PathBuf, LabError> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            let pkg = if candidates == FAKETIME_LIBS {
                "faketime"
            } else {
                "fiu-utils"
            };
            LabError::LabUnavailable(format!(
                "none of {candidates:?} exists: install it with `apt-get install {pkg}`"
            ))
        })
}

/// Whether the clock and disk wrappers can run here: libfaketime, libfiu
/// (and `fiu-ctrl`), `unshare` with time namespaces, `nsenter`. The
/// reason names the package to install.
pub fn check_wrappers() -> Result<(), LabError> {
    find_lib(FAKETIME_LIBS)?;
    find_lib(FIU_RUN_LIBS)?;
    find_lib(FIU_POSIX_LIBS)?;
    for (tool, pkg) in [
        ("fiu-ctrl", "fiu-utils"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).exists()));
        if !found {
            return Err(LabError::LabUnavailable(format!(
                "`{tool}` is missing: install it with `apt-get install {pkg}`"
            )));
        }
    }
    if !Path::new("/proc/self/ns/time").exists() {
        return Err(LabError::LabUnavailable(
            "this kernel has no time namespaces (Linux >= 5.6 with CONFIG_TIME_NS)".into(),
        ));
    }
    Ok(())
}

/// Every descendant of `pid` (children first), from
/// `/proc/PID/task/*/children`, at most 64.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids
                .split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok())
            {
                if out.len() < 64 && !out.contains(&k) {
                    out.push(k);
                    todo.push(k);
                }
            }
        }
    }
    out
}

/// Waits (at most `limit`) until none of `pids` runs.
///
/// A process counts as gone only when every one of its threads has
/// exited (`/proc/PID/task/*` all zombies, or the process reaped). The
/// thread-group leader of a SIGKILLed process turns zombie while its other
/// threads may still be finishing (a thread in `fdatasync` takes the
/// signal only when the flush returns), and the file table — cairn's data
/// directory lock and listening sockets — is released only by the last of
/// them. Waiting for the leader alone let the campaign start a node's next
/// incarnation too early, which then failed to take the lock or a port and
/// exited with status 1 (the 22 "died on its own" nodes of the session-3
/// campaign, all running behind `unshare --fork`).
fn wait_gone(pids: &[u32], limit: Duration) -> Result<(), LabError> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| !process_gone(p)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(LabError::Timeout(format!(
                "processes {left:?} still run {limit:?} after SIGKILL"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` no longer runs any thread (see [`wait_gone`]).
fn process_gone(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    let states = tasks.flatten().filter_map(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| stat_state(&s))
    });
    all_exited(states)
}

/// The state letter of a `/proc/.../stat` line.
fn stat_state(stat: &str) -> Option<char> {
    crate::stat_fields(stat)?.next()?.chars().next()
}

/// True when no thread state is a live one (`Z` zombie, `X` dead).
fn all_exited(states: impl IntoIterator<Item = char>) -> bool {
    states.into_iter().all(|c| c == 'Z' || c == 'X')
}

fn signal_pid(pid: u32, signal: i32) -> Result<(), LabError> {
    crate::kill_pid(pid, signal).map_err(|source| LabError::Signal {
        signal,
        pid,
        source,
    })
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
    /// `register`, `counter`, `set` or `lock`.
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

/// A line of a Rust backtrace (`  12: symbol` or `       at file:line`).
fn is_backtrace_frame(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("at ")
        || t.split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod log_tail_tests {
    #[test]
    fn backtrace_frames_are_recognized_and_messages_are_not() {
        use super::is_backtrace_frame as f;
        assert!(f("   4: core::ops::function::FnOnce::call_once"));
        assert!(f(
            "             at /rustc/abc/library/core/src/ops/function.rs:250:5"
        ));
        assert!(!f("Error: starting server"));
        assert!(!f("    data directory is locked: 12: busy"));
        assert!(!f("2026-11-26T08:58:49Z  INFO cairn_server: ready"));
    }
}

#[cfg(test)]
mod wait_gone_tests {
    use super::{all_exited, process_gone, stat_state};

    #[test]
    fn a_zombie_leader_with_a_live_thread_still_runs() {
        // SIGKILLed cairn: the main thread is a zombie, the log writer is
        // still in fdatasync (D). Its files are not released yet.
        assert!(!all_exited(['Z', 'D']));
        assert!(!all_exited(['Z', 'R', 'S']));
        assert!(all_exited(['Z']));
        assert!(all_exited(['Z', 'X']));
        assert!(all_exited([]));
    }

    #[test]
    fn stat_state_skips_a_command_name_with_spaces_and_parens() {
        assert_eq!(stat_state("123 (cairn) S 1 2 3"), Some('S'));
        assert_eq!(stat_state("123 (a) b) (c) Z 1 2 3"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
    }

    /// The state the session-3 campaign tripped on, made on purpose: the
    /// main thread has exited (a zombie, what the old wait looked at)
    /// while another thread still runs (and would still hold the
    /// process's files). The process is not gone until that thread ends.
    #[test]
    fn a_zombie_main_thread_is_not_gone_while_another_thread_runs() {
        let script = "import ctypes, threading, time\n\
                      t = threading.Thread(target=time.sleep, args=(1.5,))\n\
                      t.start()\n\
                      ctypes.CDLL(None).pthread_exit(None)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .spawn()
            .expect("python3 (scripts/test.sh installs it)");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| stat_state(&s))
            != Some('Z')
        {
            assert!(
                std::time::Instant::now() < deadline,
                "main thread never exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            !process_gone(pid),
            "a process with a live thread was taken for gone"
        );
        let status = child.wait().expect("wait");
        assert!(status.success(), "{status}");
        assert!(process_gone(pid));
    }

    #[test]
    fn a_real_process_runs_until_killed_and_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        assert!(!process_gone(child.id()));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(process_gone(child.id()));
    }
}
