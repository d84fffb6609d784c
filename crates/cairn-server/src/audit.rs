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

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;

/// Events waiting for the writer at most.
pub const QUEUE: usize = 10_000;
/// Events written per batch (one fsync) at most.
const BATCH: usize = 512;
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    tx: Mutex<Option<mpsc::SyncSender<Event>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    state: std::sync::Arc<State>,
    keys: bool,
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

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
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
    let mut n = 0u64;
    let mut good_len = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let got = r
            .read_line(&mut line)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        if got == 0 {
            break;
        }
        if !line.ends_with('\n') {
            return Ok(Verified {
                records: n,
                last_hash: prev,
                good_len,
                torn_tail: true,
            });
        }
        let text = line.trim_end_matches('\n');
        let at = n + 1;
        let (body, h) = split_line(text).ok_or(format!("line {at}: not an audit record"))?;
        if sha256_hex(body.as_bytes()) != h {
            return Err(format!("line {at}: hash mismatch (the record was edited)"));
        }
        let p = field(body, "prev").map(|p| p.trim_matches('"'));
        if p != Some(prev.as_str()) {
            return Err(format!(
                "line {at}: chain broken (a record before it was removed, or this one inserted)"
            ));
        }
        if field(body, "seq") != Some(at.to_string().as_str()) {
            return Err(format!("line {at}: sequence number is not {at}"));
        }
        prev = h.to_string();
        n = at;
        good_len += got as u64;
    }
    Ok(Verified {
        records: n,
        last_hash: prev,
        good_len,
        torn_tail: false,
    })
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

struct Writer {
    file: File,
    seq: u64,
    prev: String,
    node: u64,
}

impl Writer {
    fn record(&mut self, e: &Event, keys: bool, dropped: u64, out: &mut String) -> String {
        self.seq += 1;
        out.clear();
        out.push_str(&format!(
            "{{\"seq\":{},\"ts_ms\":{},\"node\":{},\"event\":\"",
            self.seq,
            crate::unix_ms(),
            self.node
        ));
        escape(if dropped > 0 { "dropped" } else { e.kind }, out);
        out.push('"');
        if dropped > 0 {
            out.push_str(&format!(",\"count\":{dropped}"));
        } else {
            for (name, v) in [
                ("user", &e.user),
                ("client", &e.client),
                ("command", &e.command),
            ] {
                if !v.is_empty() {
                    out.push_str(&format!(",\"{name}\":\""));
                    escape(v, out);
                    out.push('"');
                }
            }
            if !e.outcome.is_empty() {
                out.push_str(",\"outcome\":\"");
                escape(e.outcome, out);
                out.push('"');
            }
            if keys && !e.keys.is_empty() {
                out.push_str(",\"keys\":[");
                for (i, k) in e.keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    escape(k, out);
                    out.push('"');
                }
                out.push(']');
            }
        }
        out.push_str(&format!(",\"prev\":\"{}\"", self.prev));
        let h = sha256_hex(out.as_bytes());
        out.push_str(&format!(",\"hash\":\"{h}\"}}\n"));
        self.prev = h.clone();
        h
    }
}

impl Audit {
    /// Opens (or creates) the log at `path`, checks what is there, and
    /// starts the writer thread.
    pub fn open(path: &Path, node: u64, keys: bool) -> Result<Audit, String> {
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
        let (tx, rx) = mpsc::sync_channel::<Event>(QUEUE);
        let state = std::sync::Arc::new(State {
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(seq),
            last: Mutex::new(prev.clone()),
        });
        let mut w = Writer {
            file,
            seq,
            prev,
            node,
        };
        let st = state.clone();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("cairn-audit".into())
            .spawn(move || {
                let mut line = String::new();
                let mut buf = Vec::with_capacity(64 << 10);
                // Ends when every sender is gone (close) and the queue is drained.
                while let Ok(first) = rx.recv() {
                    buf.clear();
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match rx.recv_timeout(Duration::from_millis(0)) {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    let lost = st.dropped.swap(0, Relaxed);
                    if lost > 0 {
                        w.record(&Event::default(), keys, lost, &mut line);
                        buf.extend_from_slice(line.as_bytes());
                    }
                    for e in &batch {
                        w.record(e, keys, 0, &mut line);
                        buf.extend_from_slice(line.as_bytes());
                    }
                    if let Err(e) = w.file.write_all(&buf).and_then(|_| w.file.sync_data()) {
                        // The chain on disk may now end in a torn record; the
                        // next start cuts it. Keep going: later writes may
                        // succeed, and verify shows any gap.
                        tracing::error!(file = %shown, error = %e, "cannot write the audit log");
                    }
                    st.written.store(w.seq, Relaxed);
                    *st.last.lock() = w.prev.clone();
                }
            })
            .map_err(|e| format!("starting the audit writer: {e}"))?;
        Ok(Audit {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            state,
            keys,
        })
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

    /// Writes what is queued and stops the writer (at shutdown).
    pub fn close(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
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
        let a = Audit::open(&p, 1, true).unwrap();
        for i in 0..5 {
            a.record(ev("command", &format!("u{i}")));
        }
        a.close();
        let v = verify(&p).unwrap();
        assert_eq!(v.records, 5);
        assert_eq!(a.position(), (5, v.last_hash.clone()));
        // Reopened, the chain goes on from record 5.
        let a = Audit::open(&p, 1, true).unwrap();
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
        assert!(Audit::open(&p, 1, true).is_err());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_torn_last_record_is_cut_at_start() {
        let p = tmp("torn");
        let a = Audit::open(&p, 1, false).unwrap();
        a.record(ev("auth", "a"));
        a.record(ev("auth", "b"));
        a.close();
        let whole = std::fs::read(&p).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(br#"{"seq":3,"ts_ms":1,"nod"#);
        std::fs::write(&p, &torn).unwrap();
        let v = verify(&p).unwrap();
        assert!(v.torn_tail && v.records == 2);
        let a = Audit::open(&p, 1, false).unwrap();
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
        let a = Audit::open(&p, 1, true).unwrap();
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
