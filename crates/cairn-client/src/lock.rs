//! A distributed lock held by this process: acquire (optionally waiting),
//! renew in the background, learn at once when it is lost, release on
//! drop, and fence writes with its token.
//!
//! The one thing not to get wrong: the client must never believe it holds
//! the lock after the server has let it go. It counts the lease from the
//! moment it *sent* the last successful acquire or renewal (the server
//! counts from later, when it applied it), keeps a margin off the end,
//! and reports the lock lost when that safe end passes without a
//! renewal, whether or not it could reach the cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_proto::Frame;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::client::Client;
use crate::cmd::{Cmd, ToArg};
use crate::error::{Error, Result};
use crate::retry::{classify, Verdict};
use crate::slot::slot;

/// How to acquire and keep a lock.
#[derive(Clone, Debug)]
pub struct LockOptions {
    lease: Duration,
    wait: Option<Duration>,
    owner: Option<String>,
    safety: f64,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            lease: Duration::from_secs(10),
            wait: None,
            owner: None,
            safety: 0.9,
        }
    }
}

impl LockOptions {
    /// The lease asked for at each acquire and renewal (default 10 s, at
    /// least 10 ms). Renewal runs every third of it.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d.max(Duration::from_millis(10));
        self
    }

    /// Wait up to `d` in the lock's FIFO queue when another owner holds it
    /// (default: do not wait).
    pub fn wait(mut self, d: Duration) -> Self {
        self.wait = Some(d);
        self
    }

    /// The owner id (default: unique per guard: process id and a random
    /// number). Two holders must never share one.
    pub fn owner(mut self, o: impl Into<String>) -> Self {
        self.owner = Some(o.into());
        self
    }

    /// The fraction of the lease the client trusts (default 0.9, clamped
    /// to 0.1–0.95): the rest covers clock-rate drift and scheduling.
    pub fn safety(mut self, f: f64) -> Self {
        self.safety = f.clamp(0.1, 0.95);
        self
    }

    fn trusted(&self) -> Duration {
        self.lease.mul_f64(self.safety)
    }
}

/// Whether the lock is still held, as the renewal task sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockStatus {
    /// Held at least until this instant (client's monotonic clock).
    Held {
        /// The safe end of the lease.
        until: Instant,
    },
    /// Lost; the reason.
    Lost(String),
}

/// A held lock. Renewed in the background while it lives; released when
/// dropped (best effort: otherwise the lease ends it).
#[derive(Debug)]
pub struct LockGuard {
    client: Client,
    name: Vec<u8>,
    owner: String,
    token: i64,
    status: watch::Receiver<LockStatus>,
    stop: Option<oneshot::Sender<()>>,
}

fn unique_owner() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "cairn-client-{}-{:016x}-{}",
        std::process::id(),
        fastrand::u64(..),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl Client {
    /// Acquires the lock `name`: `Some(guard)` once held, `None` when
    /// another owner holds it (after waiting, if [`LockOptions::wait`]).
    ///
    /// Acquiring again with the same owner is safe (the server answers the
    /// same token), so a lost reply is retried. A waited acquire holds a
    /// connection of its own for the wait: it blocks that connection.
    pub async fn lock(&self, name: impl ToArg, opts: LockOptions) -> Result<Option<LockGuard>> {
        let mut name_bytes = Vec::new();
        name.write_arg(&mut name_bytes);
        let owner = opts.owner.clone().unwrap_or_else(unique_owner);
        let lease_ms = opts.lease.as_millis() as u64;
        let acquire = || {
            Cmd::new("LOCK.ACQUIRE")
                .arg(&name_bytes)
                .arg(&owner)
                .arg(lease_ms)
        };
        let sent = Instant::now();
        let (token, sent) = match opts.wait {
            None => match self.query::<Option<i64>>(&acquire()).await? {
                None => return Ok(None),
                Some(t) => (t, sent),
            },
            Some(wait) => {
                let Some(t) = self
                    .acquire_waiting(&name_bytes, &owner, lease_ms, wait)
                    .await?
                else {
                    return Ok(None);
                };
                // When in the wait it was granted is unknown: renew now to
                // learn a send time the lease is known to outlive.
                let sent = Instant::now();
                self.renew(&name_bytes, &owner, t, lease_ms, sent + opts.trusted())
                    .await?;
                (t, sent)
            }
        };
        let until = sent + opts.trusted();
        let (tx, rx) = watch::channel(LockStatus::Held { until });
        let (stop_tx, stop_rx) = oneshot::channel();
        let renewal = Renewal {
            client: self.clone(),
            name: name_bytes.clone(),
            owner: owner.clone(),
            token,
            lease: opts.lease,
            trusted: opts.trusted(),
        };
        tokio::spawn(renewal.run(sent, tx, stop_rx));
        Ok(Some(LockGuard {
            client: self.clone(),
            name: name_bytes,
            owner,
            token,
            status: rx,
            stop: Some(stop_tx),
        }))
    }

    /// `LOCK.ACQUIRE ... WAIT` on a dedicated connection to the lock's
    /// leader, retried (same owner) until granted or `wait` runs out;
    /// then `LOCK.DEQUEUE`, which also catches a grant that raced the end.
    async fn acquire_waiting(
        &self,
        name: &[u8],
        owner: &str,
        lease_ms: u64,
        wait: Duration,
    ) -> Result<Option<i64>> {
        let inner = &self.inner;
        let end = Instant::now() + wait;
        let probe = Cmd::new("LOCK.ACQUIRE").arg(name);
        let mut tries = 0u32;
        while Instant::now() < end && tries < inner.cfg.retry.attempts() * 2 {
            tries += 1;
            let left_ms = end
                .saturating_duration_since(Instant::now())
                .as_millis()
                .max(1) as u64;
            let cmd = Cmd::new("LOCK.ACQUIRE")
                .arg(name)
                .arg(owner)
                .arg(lease_ms)
                .arg("WAIT")
                .arg(left_ms);
            let Some((node, _)) = inner.target(&probe) else {
                tokio::time::sleep(inner.cfg.retry.backoff_for(tries)).await;
                continue;
            };
            let r = match node.dedicated(&inner.limits).await {
                Err(e) => Err(crate::conn::ConnError::NotSent(e)),
                Ok(conn) => {
                    let d =
                        Instant::now() + Duration::from_millis(left_ms) + inner.cfg.attempt_timeout;
                    conn.call(cmd.encode(), d).await
                }
            };
            match classify(r) {
                Verdict::Done(Frame::Integer(t)) => return Ok(Some(t)),
                Verdict::Done(Frame::Null) => break,
                Verdict::Done(f) => {
                    return Err(Error::Protocol(format!("LOCK.ACQUIRE answered {f:?}")))
                }
                Verdict::Refused(e) => return Err(Error::Server(e)),
                Verdict::Moved { .. } => {
                    // Let the pooled path learn the new leader.
                    let _ = inner.refresh_now().await;
                }
                Verdict::Retry(_) | Verdict::Unknown(_) => {
                    tokio::time::sleep(inner.cfg.retry.backoff_for(tries.min(6))).await;
                }
            }
        }
        // Out of the queue, unless granted meanwhile (then: its token).
        let dequeue = Cmd::new("LOCK.DEQUEUE").arg(name).arg(owner);
        match self.query::<i64>(&dequeue).await? {
            0 => Ok(None),
            t => Ok(Some(t)),
        }
    }

    /// One renewal, retried (it is idempotent) until `until`.
    async fn renew(
        &self,
        name: &[u8],
        owner: &str,
        token: i64,
        lease_ms: u64,
        until: Instant,
    ) -> Result<()> {
        let cmd = Cmd::new("LOCK.RENEW")
            .arg(name)
            .arg(owner)
            .arg(token)
            .arg(lease_ms);
        match self.inner.execute(&cmd, cmd.encode(), until).await {
            Ok(_) => Ok(()),
            Err(Error::Server(e)) if e.code() == "LOCKLOST" => {
                Err(Error::LockLost(e.text().to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// `SET key value FENCE lock token`: applied only while `guard` still
    /// holds its lock (else [`Error::is_fenced`]). Put the key and the lock
    /// in one slot with a hash tag (`{job}:data`, `{job}:lock`).
    pub async fn set_fenced(
        &self,
        key: impl ToArg,
        value: impl ToArg,
        guard: &LockGuard,
    ) -> Result<()> {
        let cmd = Cmd::new("SET")
            .arg(key)
            .arg(value)
            .arg("FENCE")
            .arg(&guard.name)
            .arg(guard.token);
        self.execute(&cmd).await.map(drop)
    }
}

struct Renewal {
    client: Client,
    name: Vec<u8>,
    owner: String,
    token: i64,
    lease: Duration,
    trusted: Duration,
}

impl Renewal {
    /// Renews every third of the lease until stopped; on `-LOCKLOST`, or
    /// when the safe end passes without a renewal, reports the loss.
    async fn run(
        self,
        mut sent: Instant,
        status: watch::Sender<LockStatus>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let lease_ms = self.lease.as_millis() as u64;
        loop {
            let until = sent + self.trusted;
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep_until(sent + self.lease / 3) => {}
            }
            let attempt = Instant::now();
            let renewed = tokio::select! {
                _ = &mut stop => return,
                r = self.renew_until(lease_ms, until) => r,
            };
            match renewed {
                Ok(()) => {
                    sent = attempt;
                    status.send_replace(LockStatus::Held {
                        until: sent + self.trusted,
                    });
                }
                Err(why) => {
                    status.send_replace(LockStatus::Lost(why));
                    return;
                }
            }
        }
    }

    /// Renewal attempts until one succeeds, the server says the lock is
    /// lost, or `until`. Each round is a whole retried request.
    async fn renew_until(&self, lease_ms: u64, until: Instant) -> std::result::Result<(), String> {
        let mut last = String::from("lease ran out before a renewal");
        let mut round = 0;
        while Instant::now() < until {
            let r = self
                .client
                .renew(&self.name, &self.owner, self.token, lease_ms, until)
                .await;
            match r {
                Ok(()) => return Ok(()),
                Err(Error::LockLost(why)) => return Err(why),
                Err(e) => last = format!("no renewal before the lease's safe end: {e}"),
            }
            round += 1;
            let pause = self.client.inner.cfg.retry.backoff_for(round.min(6));
            tokio::time::sleep_until(until.min(Instant::now() + pause)).await;
        }
        Err(last)
    }
}

impl LockGuard {
    /// The fencing token of this grant: pass it with every write the lock
    /// protects.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// The lock's name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The owner id this guard holds the lock as.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The current status; `Held { until }` is the client's safe end of
    /// the lease.
    pub fn status(&self) -> LockStatus {
        self.status.borrow().clone()
    }

    /// Whether the lock is held and its safe end has not passed.
    pub fn is_held(&self) -> bool {
        matches!(self.status(), LockStatus::Held { until } if Instant::now() < until)
    }

    /// Resolves when the lock is lost (at once if it already is), with the
    /// reason. Select on it beside the guarded work.
    pub async fn lost(&self) -> String {
        let mut rx = self.status.clone();
        loop {
            if let LockStatus::Lost(why) = &*rx.borrow_and_update() {
                return why.clone();
            }
            if rx.changed().await.is_err() {
                return "the renewal task ended".into();
            }
        }
    }

    /// Stops renewing and releases the lock; `true` when it was still
    /// held with this token.
    pub async fn release(mut self) -> Result<bool> {
        self.stop.take();
        let cmd = Cmd::new("LOCK.RELEASE")
            .arg(&self.name)
            .arg(&self.owner)
            .arg(self.token);
        self.client.query(&cmd).await
    }

    /// The slot of the lock's name, for putting guarded keys beside it.
    pub fn slot(&self) -> u16 {
        slot(&self.name)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Dropping the sender stops the renewal task.
        if self.stop.take().is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let cmd = Cmd::new("LOCK.RELEASE")
            .arg(&self.name)
            .arg(&self.owner)
            .arg(self.token);
        rt.spawn(async move {
            let _ = client.execute(&cmd).await;
        });
    }
}
