//! The audit log (docs/design/audit.md): JSON lines in a hash chain.
//!
//! Recorded: every authentication (AUTH, HELLO AUTH; success and
//! failure), every command refused by the ACL (NOAUTH included), and every
//! administrative command that ran (@admin: ACL, CONFIG, CLIENT, CLUSTER,
//! SHUTDOWN, LOCK.FORCERELEASE ...; and FLUSHALL/FLUSHDB). Never a value
//! or an argument: the command's name, and its key names unless
//! `audit-log-keys no`.
//!
//! Each line is `{"seq":N,...,"prev":"<hex>","hash":"<hex>"}` where
//! `hash` is the SHA-256 of the line up to (not including) `,"hash":`,
//! and `prev` the previous line's `hash` (64 zeros for the first). An
//! edited, inserted or removed line breaks the chain at that line
//! ([`verify`]); rewriting every later line to hide it changes the last
//! hash, which INFO shows (`audit_last_hash`) for an outside monitor to
//! anchor.
//!
//! Writing: commands queue their events on a bounded channel; one thread
//! appends them in batches, one `fdatasync` per batch, so a command never
//! waits for the disk. A full queue drops events and counts them; the
//! next record written says how many (`"event":"dropped"`). At start the
//! existing file is checked: a torn last line (a crash mid-write) is cut,
//! the chain continues from the last whole record, and a file whose chain
//! is broken stops the server (an operator must look at it first).
//!
//! In cluster mode the log is the cluster's: events are not chained here
//! but shipped in batches to the meta group (`META.AUDIT`), which orders
//! every node's records into one chain; each node writes that chain to
//! its own file ([`Audit::attach`]). A record is thus on a majority once
//! its batch commits, and every node's file holds the same lines. A file
//! that picks the chain up in the middle (a node that joined later, or
//! missed more records than the meta group keeps) starts with a
//! `continues` header naming the first record and the hash before it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cairn_cluster::meta::{audit_line, sha256_hex, AUDIT_ZERO as ZERO};
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Events waiting for the writer at most.
pub const QUEUE: usize = 10_000;
/// Events written per batch (one fsync) at most, and shipped to the
/// meta group per proposal in cluster mode.
const BATCH: usize = 512;
/// Cluster mode: how long one shipment may wait for the meta group, and
/// tries at shutdown before what is left is given up.
const SHIP_TIMEOUT: Duration = Duration::from_secs(5);
const SHIP_TRIES_AT_CLOSE: u32 = 3;

/// One thing to record.
#[derive(Clone, Debug, Default)]
pub struct Event {
    /// `auth`, `denied` or `command`.
    pub kind: &'static str,
    pub user: String,
    pub client: String,
    /// The command as ACL names it (`config|set`), lowercase.
    pub command: String,
    /// For `auth`: whether it succeeded. For `denied`: the reason
    /// (`noauth`, `command`, `key`).
    pub outcome: &'static str,
    pub keys: Vec<String>,
}

/// Counters the writer thread and INFO share.
#[derive(Default)]
struct State {
    dropped: AtomicU64,
    written: AtomicU64,
    last: Mutex<String>,
}

/// The audit log of one node.
pub struct Audit {
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    state: std::sync::Arc<State>,
    keys: bool,
    node: u64,
    /// Cluster mode, until [`Audit::attach`]: the queue's receiving end
    /// and the file.
    pending: Mutex<Option<(mpsc::Receiver<Event>, FileChain)>>,
}

/// JSON string body of `s` (quotes not included).
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Splits a line into (body, hash): the body is what the hash covers.
fn split_line(line: &str) -> Option<(&str, &str)> {
    let at = line.rfind(",\"hash\":\"")?;
    let (body, rest) = line.split_at(at);
    let h = rest.strip_prefix(",\"hash\":\"")?.strip_suffix("\"}")?;
    (h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some((body, h))
}

/// A field's raw text in a body: `"name":` then up to the next `,"` or
/// the end (enough for the fields the chain needs: seq and prev).
fn field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":");
    let at = body.find(&key)? + key.len();
    let rest = &body[at..];
    let end = rest.find(",\"").unwrap_or(rest.len());
    Some(&rest[..end])
}

/// What [`verify`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// The first and last record's sequence numbers (`first` is 1 unless
    /// the file starts with a `continues` header; `records` is 0 for an
    /// empty file).
    pub first: u64,
    pub records: u64,
    pub last_hash: String,
    /// Bytes of whole records (a torn last line is past this).
    pub good_len: u64,
    /// Whether the file ends in a partial line (a crash mid-write).
    pub torn_tail: bool,
}

/// Checks a whole audit file: every line's hash, every `prev` against the
/// line before, `seq` counting up by one from 1. The error names the
/// first bad line (1-based) and why.
pub fn verify(path: &Path) -> Result<Verified, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = BufReader::new(f);
    let mut prev = ZERO.to_string();
    // The last record's sequence number, the first's, and the line number.
    let (mut n, mut first, mut lineno) = (0u64, 1u64, 0u64);
    let mut good_len = 0u64;
    let mut line = String::new();
    let done = |n, first, prev, good_len, torn_tail| Verified {
        first,
        records: n,
        last_hash: prev,
        good_len,
        torn_tail,
    };
    loop {
        line.clear();
        let got = r
            .read_line(&mut line)
            .map_err(|e| format!("line {}: {e}", lineno + 1))?;
        if got == 0 {
            break;
        }
        if !line.ends_with('\n') {
            return Ok(done(n, first, prev, good_len, true));
        }
        lineno += 1;
        let text = line.trim_end_matches('\n');
        let at = lineno;
        let (body, h) = split_line(text).ok_or(format!("line {at}: not an audit record"))?;
        if sha256_hex(body.as_bytes()) != h {
            return Err(format!("line {at}: hash mismatch (the record was edited)"));
        }
        let p = field(body, "prev").map(|p| p.trim_matches('"'));
        if at == 1 && field(body, "seq") == Some("0") {
            // A `continues` header: the chain is picked up at record
            // `from`, whose `prev` the header names.
            let from = field(body, "from").and_then(|f| f.parse::<u64>().ok());
            match (field(body, "event"), from, p) {
                (Some("\"continues\""), Some(from), Some(p)) if from > 1 && p.len() == 64 => {
                    (n, first, prev) = (from - 1, from, p.to_string());
                }
                _ => return Err("line 1: malformed continues header".into()),
            }
            good_len += got as u64;
            continue;
        }
        if p != Some(prev.as_str()) {
            return Err(format!(
                "line {at}: chain broken (a record before it was removed, or this one inserted)"
            ));
        }
        let want = n + 1;
        if field(body, "seq") != Some(want.to_string().as_str()) {
            return Err(format!("line {at}: sequence number is not {want}"));
        }
        prev = h.to_string();
        n = want;
        good_len += got as u64;
    }
    Ok(done(n, first, prev, good_len, false))
}

/// The last `n` whole lines of an audit file.
pub fn tail(path: &Path, n: usize) -> Result<Vec<String>, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = std::collections::VecDeque::with_capacity(n.min(4096));
    for l in BufReader::new(f).lines() {
        let l = l.map_err(|e| e.to_string())?;
        if lines.len() == n {
            lines.pop_front();
        }
        if n > 0 {
            lines.push_back(l);
        }
    }
    Ok(lines.into())
}

/// A record's own fields, `"ts_ms":...` to the last one (see
/// [`audit_line`]); a `dropped` record when `dropped > 0`.
fn fragment(e: &Event, keys: bool, dropped: u64, node: u64) -> String {
    let mut out = format!(
        "\"ts_ms\":{},\"node\":{node},\"event\":\"",
        crate::unix_ms()
    );
    escape(if dropped > 0 { "dropped" } else { e.kind }, &mut out);
    out.push('"');
    if dropped > 0 {
        out.push_str(&format!(",\"count\":{dropped}"));
        return out;
    }
    for (name, v) in [
        ("user", &e.user),
        ("client", &e.client),
        ("command", &e.command),
    ] {
        if !v.is_empty() {
            out.push_str(&format!(",\"{name}\":\""));
            escape(v, &mut out);
            out.push('"');
        }
    }
    if !e.outcome.is_empty() {
        out.push_str(",\"outcome\":\"");
        escape(e.outcome, &mut out);
        out.push('"');
    }
    if keys && !e.keys.is_empty() {
        out.push_str(",\"keys\":[");
        for (i, k) in e.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            escape(k, &mut out);
            out.push('"');
        }
        out.push(']');
    }
    out
}

/// The file's end of the chain: the last record's number and hash.
struct FileChain {
    file: File,
    path: PathBuf,
    seq: u64,
    prev: String,
}

impl FileChain {
    /// Appends `text` (whole lines) with one `fdatasync`.
    fn append(&mut self, text: &[u8]) -> std::io::Result<()> {
        self.file.write_all(text)?;
        self.file.sync_data()
    }

    /// Standalone: chains `e` after the last record (into `out`).
    fn record(&mut self, e: &Event, keys: bool, dropped: u64, node: u64, out: &mut String) {
        self.seq += 1;
        let (line, h) = audit_line(self.seq, &fragment(e, keys, dropped, node), &self.prev);
        out.push_str(&line);
        out.push('\n');
        self.prev = h;
    }

    /// Cluster mode: moves this file aside (`<file>.<unix ms>`) and starts
    /// an empty one, when the chain cannot continue it.
    fn rotate(&mut self, why: &str) -> std::io::Result<()> {
        let aside = PathBuf::from(format!("{}.{}", self.path.display(), crate::unix_ms()));
        std::fs::rename(&self.path, &aside)?;
        tracing::warn!(file = %self.path.display(), moved_to = %aside.display(), reason = why, "audit log moved aside; a new file continues the cluster's chain");
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        (self.seq, self.prev) = (0, ZERO.to_string());
        Ok(())
    }

    /// Cluster mode: writes every record of the cluster's chain that this
    /// file lacks. Returns whether it wrote anything.
    fn catch_up(&mut self, cl: &cairn_cluster::Cluster, node: u64) -> std::io::Result<bool> {
        let mut wrote = false;
        loop {
            let s = cl.audit_since(self.seq, BATCH);
            let Some(first) = s.lines.first() else {
                return Ok(wrote);
            };
            let first_prev = split_line(first)
                .and_then(|(body, _)| field(body, "prev"))
                .map(|p| p.trim_matches('"').to_string())
                .unwrap_or_default();
            let mut text = String::new();
            if s.first == self.seq + 1 && first_prev != self.prev {
                self.rotate("its records are not the cluster's (another cluster's log?)")?;
            } else if s.first > self.seq + 1 && self.seq > 0 {
                self.rotate(&format!(
                    "records {} to {} are no longer kept by the cluster",
                    self.seq + 1,
                    s.first - 1
                ))?;
            }
            if s.first > self.seq + 1 {
                // Picked up in the middle: say where, and the hash before.
                let body = format!(
                    "\"ts_ms\":{},\"node\":{node},\"event\":\"continues\",\"from\":{}",
                    crate::unix_ms(),
                    s.first
                );
                text.push_str(&audit_line(0, &body, &first_prev).0);
                text.push('\n');
            }
            for l in &s.lines {
                text.push_str(l);
                text.push('\n');
            }
            self.append(text.as_bytes())?;
            self.seq = s.first + s.lines.len() as u64 - 1;
            self.prev = s
                .lines
                .last()
                .and_then(|l| split_line(l))
                .map(|(_, h)| h.to_string())
                .unwrap_or_default();
            wrote = true;
        }
    }
}

impl Audit {
    /// Opens (or creates) the log at `path` and checks what is there.
    /// Standalone, starts the writer thread; in cluster mode the log is
    /// written once [`Audit::attach`] gives it the cluster.
    pub fn open(path: &Path, node: u64, keys: bool, cluster: bool) -> Result<Audit, String> {
        let (seq, prev) = if path.exists() {
            let v = verify(path).map_err(|e| {
                format!(
                    "{}: {e}; the server will not add to a broken audit log (check it with `cairn audit verify`, then move it aside)",
                    path.display()
                )
            })?;
            if v.torn_tail {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                f.set_len(v.good_len)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| format!("{}: cutting a torn last record: {e}", path.display()))?;
                tracing::warn!(file = %path.display(), "audit log ended in a torn record (a crash mid-write); cut it");
            }
            (v.records, v.last_hash)
        } else {
            (0, ZERO.to_string())
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let _ = file.seek(std::io::SeekFrom::End(0));
        let (tx, rx) = mpsc::channel::<Event>(QUEUE);
        let state = std::sync::Arc::new(State {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(seq),
            last: Mutex::new(prev.clone()),
        });
        let w = FileChain {
            file,
            path: path.to_path_buf(),
            seq,
            prev,
        };
        let audit = Audit {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
            state,
            keys,
            node,
            pending: Mutex::new(None),
        };
        if cluster {
            *audit.pending.lock() = Some((rx, w));
        } else {
            let st = audit.state.clone();
            let t = std::thread::Builder::new()
                .name("cairn-audit".into())
                .spawn(move || write_local(w, rx, st, keys, node))
                .map_err(|e| format!("starting the audit writer: {e}"))?;
            *audit.thread.lock() = Some(t);
        }
        Ok(audit)
    }

    /// Cluster mode: starts shipping the queued events to the cluster's
    /// chain and writing the chain to the file.
    pub fn attach(&self, cl: cairn_cluster::Cluster) -> Result<(), String> {
        let Some((rx, w)) = self.pending.lock().take() else {
            return Ok(());
        };
        let (st, keys, node) = (self.state.clone(), self.keys, self.node);
        let t = std::thread::Builder::new()
            .name("cairn-audit".into())
            .spawn(move || ship_and_write(w, rx, st, keys, node, cl))
            .map_err(|e| format!("starting the audit writer: {e}"))?;
        *self.thread.lock() = Some(t);
        Ok(())
    }

    /// Queues `e`; never blocks (a full queue drops it and counts it).
    pub fn record(&self, mut e: Event) {
        if !self.keys {
            e.keys.clear();
        }
        let tx = self.tx.lock();
        let Some(tx) = tx.as_ref() else { return };
        if tx.try_send(e).is_err() {
            self.state.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Records written so far, and the last record's hash (INFO).
    pub fn position(&self) -> (u64, String) {
        (
            self.state.written.load(Relaxed),
            self.state.last.lock().clone(),
        )
    }

    /// Writes (or, in cluster mode, ships) what is queued and stops the
    /// writer (at shutdown; in cluster mode before the cluster stops).
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// Standalone: chains and appends events in batches, one `fdatasync`
/// each. Ends when every sender is gone and the queue is drained.
fn write_local(
    mut w: FileChain,
    mut rx: mpsc::Receiver<Event>,
    st: std::sync::Arc<State>,
    keys: bool,
    node: u64,
) {
    let mut text = String::new();
    while let Some(first) = rx.blocking_recv() {
        text.clear();
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let lost = st.dropped.swap(0, Relaxed);
        if lost > 0 {
            w.record(&Event::default(), keys, lost, node, &mut text);
        }
        for e in &batch {
            w.record(e, keys, 0, node, &mut text);
        }
        if let Err(e) = w.append(text.as_bytes()) {
            // The chain on disk may now end in a torn record; the next
            // start cuts it. Keep going: later writes may succeed, and
            // verify shows any gap.
            tracing::error!(file = %w.path.display(), error = %e, "cannot write the audit log");
        }
        st.written.store(w.seq, Relaxed);
        *st.last.lock() = w.prev.clone();
    }
}

/// Cluster mode: ships queued events to the meta group in batches (one
/// proposal in flight; a failed one is retried with the same batch
/// number, so it is appended once) and writes the cluster's chain to the
/// file as it grows. At close, what is queued is shipped (a few tries).
fn ship_and_write(
    mut w: FileChain,
    mut rx: mpsc::Receiver<Event>,
    st: std::sync::Arc<State>,
    keys: bool,
    node: u64,
    cl: cairn_cluster::Cluster,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the audit writer; audit records are lost");
            return;
        }
    };
    let catch_up = |w: &mut FileChain| match w.catch_up(&cl, node) {
        Ok(true) => {
            st.written.store(w.seq, Relaxed);
            *st.last.lock() = w.prev.clone();
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(file = %w.path.display(), error = %e, "cannot write the audit log")
        }
    };
    rt.block_on(async {
        // Batches are numbered (boot, n): above every earlier run's, even
        // if the clock went back (as far as this node has applied).
        let mut boot = 0;
        let mut chain = cl.subscribe_audit();
        let mut batch_no = 0u64;
        let mut batch: Vec<String> = Vec::new();
        let (mut open, mut fails, mut numbered) = (true, 0u32, false);
        loop {
            catch_up(&mut w);
            if !numbered {
                let lost = st.dropped.swap(0, Relaxed);
                if lost > 0 {
                    batch.push(fragment(&Event::default(), keys, lost, node));
                }
                while open && batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(fragment(&e, keys, 0, node)),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                    }
                }
                if batch.is_empty() {
                    if !open {
                        break;
                    }
                    tokio::select! {
                        e = rx.recv() => match e {
                            Some(e) => batch.push(fragment(&e, keys, 0, node)),
                            None => open = false,
                        },
                        r = chain.changed() => if r.is_err() { open = false },
                    }
                    // Gather what else is queued before shipping.
                    continue;
                }
                // A new batch (a resent one keeps its number: it is
                // appended once however often it is sent).
                if boot == 0 {
                    let before = cl.audit_sent().map_or(0, |(b, _)| b);
                    boot = crate::unix_ms().max(before + 1);
                }
                batch_no += 1;
                fails = 0;
                numbered = true;
            }
            let r = {
                let ship = cl.audit_append(boot, batch_no, &batch, SHIP_TIMEOUT);
                tokio::pin!(ship);
                loop {
                    tokio::select! {
                        r = &mut ship => break r,
                        c = chain.changed() => {
                            if c.is_err() {
                                break Err("the cluster stopped".to_string());
                            }
                            catch_up(&mut w);
                        }
                    }
                }
            };
            match r {
                Ok(()) => {
                    batch.clear();
                    numbered = false;
                }
                Err(e) => {
                    fails += 1;
                    if fails == 1 || fails.is_power_of_two() {
                        tracing::warn!(error = %e, records = batch.len(), tries = fails, "audit records not yet replicated; retrying");
                    }
                    if !open && fails >= SHIP_TRIES_AT_CLOSE {
                        tracing::error!(records = batch.len(), "shutting down: audit records that never reached the cluster are lost");
                        break;
                    }
                    let pause = Duration::from_millis((50u64 << fails.min(5)).min(2000));
                    tokio::time::sleep(pause).await;
                }
            }
        }
        // What was shipped last may not be applied here yet.
        let _ = tokio::time::timeout(Duration::from_millis(500), chain.changed()).await;
        catch_up(&mut w);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("cairn-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn ev(kind: &'static str, user: &str) -> Event {
        Event {
            kind,
            user: user.into(),
            client: "127.0.0.1:5000".into(),
            command: "config|set".into(),
            outcome: "",
            keys: vec!["k\"1\n".into()],
        }
    }

    #[test]
    fn a_chain_verifies_continues_after_reopen_and_breaks_where_tampered() {
        let p = tmp("chain");
        let a = Audit::open(&p, 1, true, false).unwrap();
        for i in 0..5 {
            a.record(ev("command", &format!("u{i}")));
        }
        a.close();
        let v = verify(&p).unwrap();
        assert_eq!(v.records, 5);
        assert_eq!(a.position(), (5, v.last_hash.clone()));
        // Reopened, the chain goes on from record 5.
        let a = Audit::open(&p, 1, true, false).unwrap();
        a.record(ev("auth", "bob"));
        a.close();
        assert_eq!(verify(&p).unwrap().records, 6);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(r#""keys":["k\"1\n"]"#), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let write = |ls: &[String]| std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        let own: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        // Edited.
        let mut t = own.clone();
        t[2] = t[2].replace("u2", "u9");
        write(&t);
        assert!(verify(&p).unwrap_err().starts_with("line 3: hash mismatch"));
        // Removed.
        let mut t = own.clone();
        t.remove(1);
        write(&t);
        assert!(verify(&p).unwrap_err().starts_with("line 2: chain broken"));
        // Inserted (a copy of a real record).
        let mut t = own.clone();
        t.insert(3, own[1].clone());
        write(&t);
        assert!(verify(&p).unwrap_err().starts_with("line 4: chain broken"));
        // A broken log is not added to.
        assert!(Audit::open(&p, 1, true, false).is_err());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_file_that_continues_the_chain_verifies_and_its_header_is_checked() {
        let p = tmp("continues");
        let frag = |i: u64| format!("\"ts_ms\":{i},\"node\":2,\"event\":\"auth\"");
        // Records 1..=5 of a chain; the file holds 4 and 5 after a header.
        let mut prev = ZERO.to_string();
        let mut lines = Vec::new();
        for i in 1..=5 {
            let (l, h) = audit_line(i, &frag(i), &prev);
            lines.push(l);
            prev = h;
        }
        let before4 = split_line(&lines[3])
            .and_then(|(b, _)| field(b, "prev"))
            .unwrap()
            .trim_matches('"')
            .to_string();
        let header = audit_line(
            0,
            "\"ts_ms\":9,\"node\":2,\"event\":\"continues\",\"from\":4",
            &before4,
        )
        .0;
        let write = |ls: &[&String]| {
            let text: String = ls.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&p, text).unwrap()
        };
        write(&[&header, &lines[3], &lines[4]]);
        let v = verify(&p).unwrap();
        assert_eq!(
            (v.first, v.records, v.last_hash.as_str()),
            (4, 5, prev.as_str())
        );
        // Without its header, or without the record after it, it fails.
        write(&[&lines[3], &lines[4]]);
        assert!(verify(&p).unwrap_err().starts_with("line 1: chain broken"));
        write(&[&header, &lines[4]]);
        assert!(verify(&p).unwrap_err().starts_with("line 2: chain broken"));
        // A header anywhere but the first line is a broken chain.
        write(&[&lines[0], &header]);
        assert!(verify(&p).is_err());
        // Reopened, the chain goes on after record 5.
        write(&[&header, &lines[3], &lines[4]]);
        let a = Audit::open(&p, 2, true, false).unwrap();
        a.record(ev("auth", "z"));
        a.close();
        assert_eq!(verify(&p).unwrap().records, 6);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_torn_last_record_is_cut_at_start() {
        let p = tmp("torn");
        let a = Audit::open(&p, 1, false, false).unwrap();
        a.record(ev("auth", "a"));
        a.record(ev("auth", "b"));
        a.close();
        let whole = std::fs::read(&p).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(br#"{"seq":3,"ts_ms":1,"nod"#);
        std::fs::write(&p, &torn).unwrap();
        let v = verify(&p).unwrap();
        assert!(v.torn_tail && v.records == 2);
        let a = Audit::open(&p, 1, false, false).unwrap();
        a.record(ev("auth", "c"));
        a.close();
        let v = verify(&p).unwrap();
        assert_eq!((v.records, v.torn_tail), (3, false));
        // audit-log-keys no: no key names.
        assert!(!std::fs::read_to_string(&p).unwrap().contains("\"keys\""));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_full_queue_drops_and_says_so() {
        let p = tmp("full");
        let a = Audit::open(&p, 1, true, false).unwrap();
        // Stop the writer from draining: fill faster than it writes is not
        // reliable, so count drops directly.
        a.state.dropped.store(7, Relaxed);
        a.record(ev("auth", "x"));
        a.close();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains(r#""event":"dropped","count":7"#),
            "{text}"
        );
        assert_eq!(verify(&p).unwrap().records, 2);
        let _ = std::fs::remove_file(&p);
    }
}
