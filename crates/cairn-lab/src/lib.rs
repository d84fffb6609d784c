//! cairn's fault lab: a few namespaced "hosts" on a private bridge, with
//! process nemeses (kill, pause, resume) and network nemeses (partitions,
//! isolation, loss), plus the register workload client used against them.
//!
//! Topology of one [`Lab`] (every name starts with a per-run prefix such as
//! `cl3fa9`):
//!
//! ```text
//!   <p>sw   switch namespace: bridge br0, nft table `bridge cairnlab`
//!   <p>n1 .. <p>nN   node hosts, eth0 = 10.213.0.<i>/24
//!   <p>c    client host, eth0 = 10.213.0.250/24
//! ```
//!
//! Nothing in the root network namespace is touched, and nothing should
//! ever talk to a lab address from it: the root namespace has a default
//! route off the machine. Run every node *and* every client inside the lab
//! ([`Lab::spawn`]); clients call [`assert_not_root_netns`] first.
//!
//! See `docs/design/faultlab.md`.

#![warn(missing_docs)]

pub mod avail;
pub mod campaign;
pub mod cluster;
pub mod delay;
pub mod loopback;
pub mod nemesis;
pub mod probe;
pub mod workload;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where run markers live: one file per live lab, holding the owner's PID.
pub const MARKER_DIR: &str = "/run/cairn-lab";
/// The lab subnet (a /24); node `i` (0-based) is `.i+1`, the client `.250`.
pub const LAB_NET: [u8; 3] = [10, 213, 0];
/// The last octet of the client host's address.
pub const CLIENT_OCTET: u8 = 250;
/// Most node hosts a lab may have.
pub const MAX_HOSTS: usize = 200;

const BRIDGE: &str = "br0";
const NFT_TABLE: &str = "cairnlab";
const NFT_CHAIN: &str = "cut";
/// Length of a prefix: "cl" + 4 hex digits.
const PREFIX_LEN: usize = 6;

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab cannot run here (not root, no `ip`, no network namespaces).
    /// Tests should skip with this reason, not fail, unless told otherwise.
    #[error("fault lab unavailable: {0}")]
    LabUnavailable(String),
    /// The `nft` command is missing.
    #[error("the `nft` command is missing: install it with `apt-get install nftables`")]
    NftMissing,
    /// A command ran but failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A command could not be started.
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A host index out of range.
    #[error("no host {0} in this lab")]
    NoSuchHost(usize),
    /// A process id this lab did not start.
    #[error("no process {0:?} in this lab")]
    NoSuchProc(ProcId),
    /// Sending a signal failed (e.g. the process is gone).
    #[error("signal {signal} to pid {pid}: {source}")]
    Signal {
        /// The signal number.
        signal: i32,
        /// The target.
        pid: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// The safety guard: this process is in the root network namespace.
    #[error("refusing to reach lab addresses from the root network namespace (it has a default route off the machine); run inside a lab namespace: {0}")]
    InRootNetns(String),
    /// A bad argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Waiting for the topology timed out.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// A host of the lab: `0..hosts` are node hosts, [`Lab::client`] the client.
pub type Host = usize;

/// A process started by [`Lab::spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId(pub u64);

struct HostInfo {
    ns: String,
    port: String,
    addr: Ipv4Addr,
}

struct ProcEntry {
    child: Child,
    pid: u32,
    log: PathBuf,
    status: Option<ExitStatus>,
}

/// A running lab: namespaces, bridge, processes. Dropping it kills every
/// process it started and deletes its namespaces.
pub struct Lab {
    prefix: String,
    switch_ns: String,
    hosts: Vec<HostInfo>,
    dir: PathBuf,
    marker: PathBuf,
    procs: Mutex<BTreeMap<u64, ProcEntry>>,
    next_proc: AtomicU64,
    cleaned: AtomicBool,
}

fn render(program: &str, args: &[&str]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs a command to completion; a non-zero exit is an error.
fn run_cmd(program: &str, args: &[&str]) -> Result<String, LabError> {
    let cmd = render(program, args);
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| {
            if source.kind() == ErrorKind::NotFound && program == "nft" {
                return LabError::NftMissing;
            }
            LabError::Spawn {
                cmd: cmd.clone(),
                source,
            }
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, LabError> {
    run_cmd("ip", args)
}

/// Names of all network namespaces (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>, LabError> {
    let out = ip(&["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Checks the lab can run here: root, `ip netns` works, `nft` present.
pub fn check_available() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(LabError::LabUnavailable(format!(
            "needs root (euid is {euid}) to create network namespaces"
        )));
    }
    match Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(LabError::LabUnavailable(
                "the `ip` command is missing: install it with `apt-get install iproute2`".into(),
            ))
        }
        Err(e) => {
            return Err(LabError::LabUnavailable(format!(
                "cannot run `ip netns list`: {e}"
            )))
        }
        Ok(o) if !o.status.success() => {
            return Err(LabError::LabUnavailable(format!(
                "`ip netns list` failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )))
        }
        Ok(_) => {}
    }
    match Command::new("nft")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => Err(LabError::NftMissing),
        Err(e) => Err(LabError::LabUnavailable(format!("cannot run `nft`: {e}"))),
        Ok(_) => Ok(()),
    }
}

/// The safety guard: fails when this process may be in the root network
/// namespace (which routes off the machine). Lab clients call it before
/// connecting to any lab address.
///
/// It refuses when
/// - this process's network namespace is PID 1's (inode comparison of
///   `/proc/self/ns/net` and `/proc/1/ns/net`), or, where PID 1's is
///   unreadable (sandboxes hide it even from root), when this namespace is
///   not one of the named namespaces under `/run/netns`;
/// - or this namespace has a usable default route (IPv4 or IPv6): a lab
///   namespace has none, so a packet to a lab address can never leave.
pub fn assert_not_root_netns() -> Result<(), LabError> {
    let mine = fs::metadata("/proc/self/ns/net").map_err(|e| {
        LabError::InRootNetns(format!("cannot stat /proc/self/ns/net ({e}); refusing"))
    })?;
    let me = (mine.dev(), mine.ino());
    match fs::metadata("/proc/1/ns/net") {
        Ok(init) => {
            if me == (init.dev(), init.ino()) {
                return Err(LabError::InRootNetns(format!(
                    "net namespace inode {} is PID 1's",
                    mine.ino()
                )));
            }
        }
        Err(e) => {
            let named = fs::read_dir("/run/netns")
                .map(|dir| {
                    dir.flatten().any(|entry| {
                        fs::metadata(entry.path()).is_ok_and(|m| (m.dev(), m.ino()) == me)
                    })
                })
                .unwrap_or(false);
            if !named {
                return Err(LabError::InRootNetns(format!(
                    "cannot stat /proc/1/ns/net ({e}) and net namespace inode {} is not a named one under /run/netns",
                    mine.ino()
                )));
            }
        }
    }
    if let Some(route) = default_route() {
        return Err(LabError::InRootNetns(format!(
            "this network namespace has a default route ({route}); a lab namespace has none"
        )));
    }
    Ok(())
}

const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// A usable default route of this process's network namespace, described.
fn default_route() -> Option<String> {
    if let Ok(v4) = fs::read_to_string("/proc/self/net/route") {
        for line in v4.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                continue;
            }
            let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
            if f[1] == "00000000"
                && f[7] == "00000000"
                && flags & RTF_UP != 0
                && flags & RTF_REJECT == 0
            {
                return Some(format!("IPv4 default via dev {}", f[0]));
            }
        }
    }
    if let Ok(v6) = fs::read_to_string("/proc/self/net/ipv6_route") {
        for line in v6.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let flags = u32::from_str_radix(f[8], 16).unwrap_or(0);
            if f[0].bytes().all(|b| b == b'0')
                && f[1] == "00"
                && flags & RTF_UP != 0
                && flags & RTF_REJECT == 0
            {
                return Some(format!("IPv6 default via dev {}", f[9]));
            }
        }
    }
    None
}

/// Start time of a process (field 22 of /proc/PID/stat), to tell a live
/// owner from a reused PID.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // starttime is field 22, the 20th from field 3 (state).
    stat_fields(&stat)?.nth(19)?.parse().ok()
}

/// The fields of a `/proc/.../stat` line from field 3 (state) on: the
/// command name before them may itself hold spaces and parentheses, so
/// they start after the last ')'.
pub(crate) fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

fn kill_pid(pid: u32, signal: i32) -> Result<(), std::io::Error> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// PIDs of processes inside a namespace (`ip netns pids`).
fn netns_pids(ns: &str) -> Vec<u32> {
    ip(&["netns", "pids", ns])
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in the namespaces starting with `prefix` and
/// deletes those namespaces. Returns the first error, after trying all.
fn destroy_prefix(prefix: &str) -> Result<(), LabError> {
    let namespaces: Vec<String> = list_netns()?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    for ns in &namespaces {
        for pid in netns_pids(ns) {
            let _ = kill_pid(pid, libc::SIGCONT);
            let _ = kill_pid(pid, libc::SIGKILL);
        }
    }
    // Killed processes leave the namespace when they exit; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && namespaces.iter().any(|ns| !netns_pids(ns).is_empty()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = None;
    for ns in &namespaces {
        if let Err(e) = ip(&["netns", "del", ns]) {
            // A concurrent reaper may have deleted it first: that is fine.
            if list_netns().map_or(true, |left| left.contains(ns)) {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Removes the namespaces of earlier labs whose owning process is dead
/// (their marker under [`MARKER_DIR`] names a PID that no longer runs, or
/// one reused by another process). Returns the prefixes reaped.
pub fn reap_stale() -> Result<Vec<String>, LabError> {
    let entries = match fs::read_dir(MARKER_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LabError::Io {
                what: "reading",
                path: MARKER_DIR.into(),
                source,
            })
        }
    };
    let mut reaped = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != PREFIX_LEN || !name.starts_with("cl") {
            continue;
        }
        let path = entry.path();
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let mut fields = text.split_whitespace();
        let pid: Option<u32> = fields.next().and_then(|f| f.parse().ok());
        let start: Option<u64> = fields.next().and_then(|f| f.parse().ok());
        let alive = match pid {
            Some(pid) => match (proc_start_time(pid), start) {
                (Some(now), Some(then)) => now == then,
                (Some(_), None) => true,
                (None, _) => false,
            },
            // A marker being written right now is empty for an instant.
            None => entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < Duration::from_secs(10)),
        };
        if alive {
            continue;
        }
        destroy_prefix(&name)?;
        let _ = fs::remove_file(&path);
        reaped.push(name);
    }
    Ok(reaped)
}

/// Creates a fresh marker file, choosing an unused prefix.
fn claim_prefix() -> Result<(String, PathBuf), LabError> {
    fs::create_dir_all(MARKER_DIR).map_err(|source| LabError::Io {
        what: "creating",
        path: MARKER_DIR.into(),
        source,
    })?;
    let existing = list_netns()?;
    let pid = std::process::id();
    let start = proc_start_time(pid).unwrap_or(0);
    for attempt in 0..64u64 {
        // RandomState is randomly keyed per instance.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        h.write_u32(pid);
        let prefix = format!("cl{:04x}", h.finish() & 0xffff);
        if existing.iter().any(|n| n.starts_with(&prefix)) {
            continue;
        }
        let path = Path::new(MARKER_DIR).join(&prefix);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                writeln!(f, "{pid} {start}").map_err(|source| LabError::Io {
                    what: "writing",
                    path: path.clone(),
                    source,
                })?;
                return Ok((prefix, path));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(LabError::Io {
                    what: "creating",
                    path,
                    source,
                })
            }
        }
    }
    Err(LabError::Invalid(
        "no free lab prefix after 64 tries (stale markers in /run/cairn-lab?)".into(),
    ))
}

impl Lab {
    /// Creates a lab with `hosts` node hosts and one client host, all on
    /// one bridge. Reaps stale labs of dead runs first.
    pub fn new(hosts: usize) -> Result<Lab, LabError> {
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(LabError::Invalid(format!(
                "hosts must be 1..={MAX_HOSTS}, got {hosts}"
            )));
        }
        check_available()?;
        if let Ok(reaped) = reap_stale() {
            if !reaped.is_empty() {
                eprintln!("cairn-lab: reaped stale labs {reaped:?}");
            }
        }
        let (prefix, marker) = claim_prefix()?;
        let dir = std::env::temp_dir().join(format!("cairn-lab-{prefix}"));
        let mut infos = Vec::with_capacity(hosts + 1);
        for i in 0..hosts {
            let octet = u8::try_from(i + 1)
                .map_err(|_| LabError::Invalid(format!("host {i} out of range")))?;
            infos.push(HostInfo {
                ns: format!("{prefix}n{}", i + 1),
                port: format!("v{}", i + 1),
                addr: Ipv4Addr::new(LAB_NET[0], LAB_NET[1], LAB_NET[2], octet),
            });
        }
        infos.push(HostInfo {
            ns: format!("{prefix}c"),
            port: "vc".into(),
            addr: Ipv4Addr::new(LAB_NET[0], LAB_NET[1], LAB_NET[2], CLIENT_OCTET),
        });
        // From here on, Drop cleans up whatever was created.
        let lab = Lab {
            switch_ns: format!("{prefix}sw"),
            prefix,
            hosts: infos,
            dir,
            marker,
            procs: Mutex::new(BTreeMap::new()),
            next_proc: AtomicU64::new(1),
            cleaned: AtomicBool::new(false),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&self) -> Result<(), LabError> {
        fs::create_dir_all(&self.dir).map_err(|source| LabError::Io {
            what: "creating",
            path: self.dir.clone(),
            source,
        })?;
        let sw = self.switch_ns.as_str();
        ip(&["netns", "add", sw])?;
        ip(&["-n", sw, "link", "set", "lo", "up"])?;
        ip(&["-n", sw, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", sw, "link", "set", BRIDGE, "up"])?;
        self.nft(&["add", "table", "bridge", NFT_TABLE])?;
        self.nft(&[
            "add",
            "chain",
            "bridge",
            NFT_TABLE,
            NFT_CHAIN,
            "{ type filter hook forward priority 0; policy accept; }",
        ])?;
        for h in &self.hosts {
            let ns = h.ns.as_str();
            let cidr = format!("{}/24", h.addr);
            ip(&["netns", "add", ns])?;
            // The veth is created inside the switch namespace and its host
            // end moved straight into the host namespace: the root
            // namespace never sees either end.
            ip(&[
                "-n", sw, "link", "add", &h.port, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ])?;
            ip(&["-n", sw, "link", "set", &h.port, "master", BRIDGE])?;
            ip(&["-n", sw, "link", "set", &h.port, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        self.wait_links(Duration::from_secs(5))
    }

    /// Waits until every host link and switch port has carrier.
    fn wait_links(&self, limit: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + limit;
        for h in &self.hosts {
            loop {
                let host = ip(&["-n", &h.ns, "-o", "link", "show", "eth0"])?;
                let port = ip(&["-n", &self.switch_ns, "-o", "link", "show", &h.port])?;
                if host.contains("LOWER_UP") && port.contains("LOWER_UP") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(LabError::Timeout(format!("link of {} never came up", h.ns)));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn nft(&self, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["netns", "exec", self.switch_ns.as_str(), "nft"];
        full.extend_from_slice(args);
        match ip(&full) {
            // `ip netns exec` reports a missing program as exit 255 with
            // "No such file or directory" on stderr.
            Err(LabError::Command { stderr, .. })
                if stderr.contains("No such file or directory") && stderr.contains("nft") =>
            {
                Err(LabError::NftMissing)
            }
            other => other,
        }
    }

    fn host(&self, host: Host) -> Result<&HostInfo, LabError> {
        self.hosts.get(host).ok_or(LabError::NoSuchHost(host))
    }

    /// The per-run prefix every namespace of this lab starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number of node hosts.
    pub fn node_count(&self) -> usize {
        self.hosts.len() - 1
    }

    /// The client host (for workload clients).
    pub fn client(&self) -> Host {
        self.hosts.len() - 1
    }

    /// A host's address on the lab network.
    pub fn addr(&self, host: Host) -> Result<Ipv4Addr, LabError> {
        Ok(self.host(host)?.addr)
    }

    /// A host's network namespace name.
    pub fn netns(&self, host: Host) -> Result<&str, LabError> {
        Ok(&self.host(host)?.ns)
    }

    /// Every namespace of this lab (switch first).
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.switch_ns.clone())
            .chain(self.hosts.iter().map(|h| h.ns.clone()))
            .collect()
    }

    /// The folder holding process logs (removed on cleanup unless
    /// `CAIRN_LAB_KEEP_LOGS` is set or the thread is panicking).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn procs(&self) -> MutexGuard<'_, BTreeMap<u64, ProcEntry>> {
        // A panic while holding the lock leaves the map consistent.
        self.procs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts `program args...` inside `host`'s namespace (`ip netns exec`,
    /// which execs in place, so the returned process is the program itself).
    /// stdout and stderr go to one log file ([`Lab::log_path`]).
    pub fn spawn<S: AsRef<str>>(
        &self,
        host: Host,
        program: &str,
        args: &[S],
    ) -> Result<ProcId, LabError> {
        let ns = self.host(host)?.ns.clone();
        let id = self.next_proc.fetch_add(1, Ordering::Relaxed);
        let base = Path::new(program)
            .file_name()
            .map_or_else(|| "proc".into(), |s| s.to_string_lossy().into_owned());
        let log = self.dir.join(format!("{id}-{ns}-{base}.log"));
        let io_err = |source| LabError::Io {
            what: "creating",
            path: log.clone(),
            source,
        };
        let out = File::create(&log).map_err(io_err)?;
        let err = out.try_clone().map_err(io_err)?;
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, program])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LabError::Spawn {
                cmd: format!("ip netns exec {ns} {}", render(program, &args)),
                source,
            })?;
        let pid = child.id();
        self.procs().insert(
            id,
            ProcEntry {
                child,
                pid,
                log,
                status: None,
            },
        );
        Ok(ProcId(id))
    }

    /// The OS PID of a process.
    pub fn pid(&self, proc: ProcId) -> Result<u32, LabError> {
        self.procs()
            .get(&proc.0)
            .map(|e| e.pid)
            .ok_or(LabError::NoSuchProc(proc))
    }

    /// PIDs of every process this lab started.
    pub fn pids(&self) -> Vec<u32> {
        self.procs().values().map(|e| e.pid).collect()
    }

    /// The log file of a process (its stdout and stderr).
    pub fn log_path(&self, proc: ProcId) -> Result<PathBuf, LabError> {
        self.procs()
            .get(&proc.0)
            .map(|e| e.log.clone())
            .ok_or(LabError::NoSuchProc(proc))
    }

    /// The log of a process so far (lossy UTF-8; empty if unreadable).
    pub fn log(&self, proc: ProcId) -> String {
        self.log_path(proc)
            .ok()
            .and_then(|p| fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn signal(&self, proc: ProcId, signal: i32) -> Result<(), LabError> {
        let procs = self.procs();
        let e = procs.get(&proc.0).ok_or(LabError::NoSuchProc(proc))?;
        if let Some(status) = e.status {
            return Err(LabError::Signal {
                signal,
                pid: e.pid,
                source: std::io::Error::other(format!("process already exited: {status}")),
            });
        }
        kill_pid(e.pid, signal).map_err(|source| LabError::Signal {
            signal,
            pid: e.pid,
            source,
        })
    }

    /// SIGKILLs a process (continuing it first if paused) and reaps it.
    pub fn kill(&self, proc: ProcId) -> Result<ExitStatus, LabError> {
        let mut procs = self.procs();
        let e = procs.get_mut(&proc.0).ok_or(LabError::NoSuchProc(proc))?;
        if let Some(status) = e.status {
            return Ok(status);
        }
        let _ = kill_pid(e.pid, libc::SIGCONT);
        let _ = e.child.kill();
        let status = e.child.wait().map_err(|source| LabError::Signal {
            signal: libc::SIGKILL,
            pid: e.pid,
            source,
        })?;
        e.status = Some(status);
        Ok(status)
    }

    /// SIGSTOPs a process.
    pub fn pause(&self, proc: ProcId) -> Result<(), LabError> {
        self.signal(proc, libc::SIGSTOP)
    }

    /// SIGCONTs a process.
    pub fn resume(&self, proc: ProcId) -> Result<(), LabError> {
        self.signal(proc, libc::SIGCONT)
    }

    /// The exit status if the process has exited (non-blocking).
    pub fn try_wait(&self, proc: ProcId) -> Result<Option<ExitStatus>, LabError> {
        let mut procs = self.procs();
        let e = procs.get_mut(&proc.0).ok_or(LabError::NoSuchProc(proc))?;
        if e.status.is_none() {
            e.status = e.child.try_wait().map_err(|source| LabError::Io {
                what: "waiting for",
                path: e.log.clone(),
                source,
            })?;
        }
        Ok(e.status)
    }

    /// Waits for a process to exit, at most `limit` (then `Ok(None)`).
    pub fn wait_timeout(
        &self,
        proc: ProcId,
        limit: Duration,
    ) -> Result<Option<ExitStatus>, LabError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait(proc)? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a process to exit.
    pub fn wait(&self, proc: ProcId) -> Result<ExitStatus, LabError> {
        loop {
            if let Some(s) = self.wait_timeout(proc, Duration::from_secs(3600))? {
                return Ok(s);
            }
        }
    }

    /// Runs a command in `host` to completion (killed after `limit`),
    /// returning its exit status and log.
    pub fn exec<S: AsRef<str>>(
        &self,
        host: Host,
        program: &str,
        args: &[S],
        limit: Duration,
    ) -> Result<(ExitStatus, String), LabError> {
        let p = self.spawn(host, program, args)?;
        let status = match self.wait_timeout(p, limit)? {
            Some(s) => s,
            None => {
                self.kill(p)?;
                return Err(LabError::Timeout(format!(
                    "`{program}` in {} ran over {limit:?}; log: {}",
                    self.host(host)?.ns,
                    self.log(p)
                )));
            }
        };
        Ok((status, self.log(p)))
    }

    // ----- network nemesis -------------------------------------------------

    fn drop_rule(
        &self,
        from: Option<Host>,
        to: Option<Host>,
        extra: &[&str],
    ) -> Result<(), LabError> {
        let mut args: Vec<String> = ["add", "rule", "bridge", NFT_TABLE, NFT_CHAIN]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if let Some(f) = from {
            args.extend(["ip".into(), "saddr".into(), self.addr(f)?.to_string()]);
        }
        if let Some(t) = to {
            args.extend(["ip".into(), "daddr".into(), self.addr(t)?.to_string()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args.push("drop".into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nft(&refs).map(|_| ())
    }

    /// Drops every packet from `from` to `to` (a one-way cut; note that it
    /// also prevents new TCP connections in both directions).
    pub fn partition_one_way(&self, from: Host, to: Host) -> Result<(), LabError> {
        if from == to {
            return Err(LabError::Invalid(format!(
                "cannot cut host {from} from itself"
            )));
        }
        self.drop_rule(Some(from), Some(to), &[])
    }

    /// Drops every packet between `a` and `b`, both ways.
    pub fn partition(&self, a: Host, b: Host) -> Result<(), LabError> {
        self.partition_one_way(a, b)?;
        self.partition_one_way(b, a)
    }

    /// Cuts every host of `a` from every host of `b`, both ways.
    pub fn partition_groups(&self, a: &[Host], b: &[Host]) -> Result<(), LabError> {
        for &x in a {
            for &y in b {
                self.partition(x, y)?;
            }
        }
        Ok(())
    }

    /// Drops every packet to and from `host`.
    pub fn isolate(&self, host: Host) -> Result<(), LabError> {
        self.drop_rule(Some(host), None, &[])?;
        self.drop_rule(None, Some(host), &[])
    }

    /// Drops `percent`% of packets from `from` to `to`, at random.
    pub fn loss(&self, from: Host, to: Host, percent: u8) -> Result<(), LabError> {
        match percent {
            0 => Ok(()),
            100.. => self.partition_one_way(from, to),
            p => {
                let p = p.to_string();
                self.drop_rule(
                    Some(from),
                    Some(to),
                    &["numgen", "random", "mod", "100", "<", &p],
                )
            }
        }
    }

    /// The current nemesis rules (`nft list chain`), for logs.
    pub fn rules(&self) -> Result<String, LabError> {
        self.nft(&["list", "chain", "bridge", NFT_TABLE, NFT_CHAIN])
    }

    /// Removes every network fault.
    pub fn heal(&self) -> Result<(), LabError> {
        self.nft(&["flush", "chain", "bridge", NFT_TABLE, NFT_CHAIN])
            .map(|_| ())
    }

    // ----- cleanup ---------------------------------------------------------

    /// Kills every process the lab started (and anything else inside its
    /// namespaces), deletes the namespaces (their veths and the bridge go
    /// with them), the marker and the log folder. Idempotent; also run by
    /// `Drop`. Returns the first error after trying everything.
    pub fn cleanup(&self) -> Result<(), LabError> {
        if self.cleaned.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut first: Option<LabError> = None;
        {
            let mut procs = self.procs();
            for e in procs.values_mut() {
                if e.status.is_some() {
                    continue;
                }
                let _ = kill_pid(e.pid, libc::SIGCONT);
                let _ = e.child.kill();
                match e.child.wait() {
                    Ok(s) => e.status = Some(s),
                    Err(source) => {
                        first.get_or_insert(LabError::Signal {
                            signal: libc::SIGKILL,
                            pid: e.pid,
                            source,
                        });
                    }
                }
            }
        }
        if let Err(e) = destroy_prefix(&self.prefix) {
            first.get_or_insert(e);
        }
        match list_netns() {
            Ok(left) => {
                let left: Vec<_> = left
                    .into_iter()
                    .filter(|n| n.starts_with(&self.prefix))
                    .collect();
                if !left.is_empty() {
                    first.get_or_insert(LabError::Invalid(format!(
                        "namespaces left after cleanup: {left:?}"
                    )));
                }
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
        // Keep the marker if namespaces may remain, so a later
        // reap_stale() retries.
        if first.is_none() {
            let _ = fs::remove_file(&self.marker);
        }
        // A failing test (dropping the lab while panicking) keeps its logs,
        // histories and data dirs as evidence.
        if std::env::var_os("CAIRN_LAB_KEEP_LOGS").is_none() && !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cairn-lab: logs kept in {}", self.dir.display());
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("cairn-lab: cleanup of {} failed: {e}", self.prefix);
        }
    }
}
