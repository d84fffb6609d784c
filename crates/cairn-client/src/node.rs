//! One cluster node as the client sees it: a bounded pool of multiplexed
//! connections per mode, the requests in flight to it, and a circuit
//! breaker.
//!
//! The one thing not to get wrong: the breaker only steers choices; it
//! never hides an error. A request the breaker turns away fails as
//! *not sent*, which the retry loop may send elsewhere.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cairn_proto::Frame;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cmd::encode_args;
use crate::conn::{Conn, ConnError, ConnLimits};

/// Whether a connection serves linearizable traffic or stale reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    ReadWrite,
    /// `READONLY`: reads served from the node's own copy.
    ReadOnly,
}

/// Counts consecutive failures; `threshold` of them open the breaker for
/// `cooldown_ms`. After the cool-down requests flow again; the next
/// failure reopens it at once (the count is still over the threshold), a
/// success closes it.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
}

impl Breaker {
    pub(crate) fn allows(&self, now_ms: u64) -> bool {
        self.open_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.open_until_ms.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn failure(&self, now_ms: u64, threshold: u32, cooldown_ms: u64) {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= threshold {
            self.open_until_ms
                .store(now_ms + cooldown_ms, Ordering::Relaxed);
        }
    }
}

/// Connections of one mode: `size` slots, each connected lazily and
/// replaced when its task has ended.
#[derive(Debug)]
struct Pool {
    slots: Box<[Mutex<Option<Conn>>]>,
    next: AtomicUsize,
    mode: Mode,
}

impl Pool {
    fn new(size: usize, mode: Mode) -> Pool {
        Pool {
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            mode,
        }
    }

    async fn get(&self, addr: &str, limits: &ConnLimits) -> Result<Conn, String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let (c, replies) = Conn::connect(addr, limits, &handshake(self.mode)).await?;
        // CLUSTER SLOTS may fail (a standalone server); READONLY must not
        // fail on a cluster node, or reads would not be what was asked.
        if let (Mode::ReadOnly, Some(Frame::Error(e))) = (self.mode, replies.get(1)) {
            if !e.ends_with(b"cluster support disabled") {
                return Err(format!("READONLY refused: {}", String::from_utf8_lossy(e)));
            }
        }
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// What a new connection sends first: `CLUSTER SLOTS` makes cairn treat
/// it as cluster-aware (it answers `-MOVED` rather than proxying a
/// request for a group led elsewhere), `READONLY` allows stale reads.
fn handshake(mode: Mode) -> Vec<Bytes> {
    let mut out = vec![encoded(&[b"CLUSTER", b"SLOTS"])];
    if mode == Mode::ReadOnly {
        out.push(encoded(&[b"READONLY"]));
    }
    out
}

pub(crate) fn encoded(args: &[&[u8]]) -> Bytes {
    let mut v = Vec::new();
    encode_args(&mut v, args.iter().copied());
    Bytes::from(v)
}

#[derive(Debug)]
pub(crate) struct Node {
    pub addr: Arc<str>,
    rw: Pool,
    ro: Pool,
    outstanding: AtomicUsize,
    pub breaker: Breaker,
}

/// Counts a request as outstanding on its node while alive.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Node {
    pub(crate) fn new(addr: Arc<str>, pool_size: usize) -> Node {
        Node {
            addr,
            rw: Pool::new(pool_size, Mode::ReadWrite),
            ro: Pool::new(pool_size, Mode::ReadOnly),
            outstanding: AtomicUsize::new(0),
            breaker: Breaker::default(),
        }
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Sends `bytes` on a pooled connection of `mode` and waits for the
    /// reply until `deadline`.
    pub(crate) async fn call(
        &self,
        bytes: Bytes,
        mode: Mode,
        limits: &ConnLimits,
        deadline: Instant,
    ) -> Result<Frame, ConnError> {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(&self.outstanding);
        let pool = match mode {
            Mode::ReadWrite => &self.rw,
            Mode::ReadOnly => &self.ro,
        };
        let conn = match tokio::time::timeout_at(deadline, pool.get(&self.addr, limits)).await {
            Err(_) => {
                return Err(ConnError::NotSent(
                    "no connection before the deadline".into(),
                ))
            }
            Ok(Err(e)) => return Err(ConnError::NotSent(e)),
            Ok(Ok(c)) => c,
        };
        conn.call(bytes, deadline).await
    }

    /// A connection of its own, not pooled: for a command that blocks its
    /// connection (`LOCK.ACQUIRE ... WAIT`).
    pub(crate) async fn dedicated(&self, limits: &ConnLimits) -> Result<Conn, String> {
        Conn::connect(&self.addr, limits, &handshake(Mode::ReadWrite))
            .await
            .map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_failures_for_the_cooldown() {
        let b = Breaker::default();
        b.failure(100, 3, 1000);
        b.failure(100, 3, 1000);
        assert!(b.allows(100), "two failures of three");
        b.failure(100, 3, 1000);
        assert!(!b.allows(100) && !b.allows(1099));
        assert!(b.allows(1100), "cool-down over");
        // Half-open: one more failure reopens at once.
        b.failure(1100, 3, 1000);
        assert!(!b.allows(1100));
        b.success();
        assert!(b.allows(1100));
        b.failure(1100, 3, 1000);
        assert!(b.allows(1100), "the count starts again after a success");
    }
}
