//! A synchronous client for code without an async runtime: the async
//! [`Client`](crate::Client) driven by a one-worker tokio runtime of its
//! own, so connections, topology refresh and lock renewal keep running
//! between calls.
//!
//! The one thing not to get wrong: these methods block the calling
//! thread; never call them from inside an async runtime (tokio panics).
//! Use the async client there.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::{
    ClientConfig, ClientStats, Cmd, Error, Frame, FromReply, LockOptions, LockStatus, Result, ToArg,
};

/// The blocking counterpart of [`crate::Client`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    rt: Arc<Runtime>,
    inner: crate::Client,
}

impl Client {
    /// Connects as [`crate::Client::connect`] does.
    pub fn connect(cfg: ClientConfig) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cairn-client")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the client's runtime: {e}")))?;
        let inner = rt.block_on(crate::Client::connect(cfg))?;
        Ok(Client {
            rt: Arc::new(rt),
            inner,
        })
    }

    /// The async client inside, for code that has both worlds.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// See [`crate::Client::execute`].
    pub fn execute(&self, cmd: &Cmd) -> Result<Frame> {
        self.rt.block_on(self.inner.execute(cmd))
    }

    /// See [`crate::Client::query`].
    pub fn query<T: FromReply>(&self, cmd: &Cmd) -> Result<T> {
        self.rt.block_on(self.inner.query(cmd))
    }

    /// See [`crate::Client::get`].
    pub fn get<T: FromReply>(&self, key: impl ToArg) -> Result<Option<T>> {
        self.rt.block_on(self.inner.get(key))
    }

    /// See [`crate::Client::set`].
    pub fn set(&self, key: impl ToArg, value: impl ToArg, ttl: Option<Duration>) -> Result<()> {
        self.rt.block_on(self.inner.set(key, value, ttl))
    }

    /// See [`crate::Client::del`].
    pub fn del(&self, key: impl ToArg) -> Result<bool> {
        self.rt.block_on(self.inner.del(key))
    }

    /// See [`crate::Client::incr_by`].
    pub fn incr_by(&self, key: impl ToArg, by: i64) -> Result<i64> {
        self.rt.block_on(self.inner.incr_by(key, by))
    }

    /// See [`crate::Client::counter`].
    pub fn counter(&self, key: impl ToArg) -> Result<i64> {
        self.rt.block_on(self.inner.counter(key))
    }

    /// See [`crate::Client::stats`].
    pub fn stats(&self) -> ClientStats {
        self.inner.stats()
    }

    /// See [`crate::Client::lock`]; the guard renews on the client's
    /// runtime while this thread does other work.
    pub fn lock(&self, name: impl ToArg, opts: LockOptions) -> Result<Option<LockGuard>> {
        let g = self.rt.block_on(self.inner.lock(name, opts))?;
        Ok(g.map(|g| LockGuard {
            guard: Some(g),
            rt: self.rt.clone(),
        }))
    }

    /// See [`crate::Client::set_fenced`].
    pub fn set_fenced(&self, key: impl ToArg, value: impl ToArg, guard: &LockGuard) -> Result<()> {
        let g = guard.get()?;
        self.rt.block_on(self.inner.set_fenced(key, value, g))
    }
}

/// The blocking counterpart of [`crate::LockGuard`]; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    guard: Option<crate::LockGuard>,
    rt: Arc<Runtime>,
}

impl LockGuard {
    fn get(&self) -> Result<&crate::LockGuard> {
        self.guard
            .as_ref()
            .ok_or_else(|| Error::LockLost("the guard was released".into()))
    }

    /// The fencing token (0 once released).
    pub fn token(&self) -> i64 {
        self.guard.as_ref().map_or(0, |g| g.token())
    }

    /// See [`crate::LockGuard::is_held`].
    pub fn is_held(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.is_held())
    }

    /// See [`crate::LockGuard::status`].
    pub fn status(&self) -> LockStatus {
        self.guard
            .as_ref()
            .map_or_else(|| LockStatus::Lost("released".into()), |g| g.status())
    }

    /// Blocks until the lock is lost or `timeout` passes: the reason, or
    /// `None` if it is still held.
    pub fn wait_lost(&self, timeout: Duration) -> Option<String> {
        let g = self.guard.as_ref()?;
        self.rt
            .block_on(async { tokio::time::timeout(timeout, g.lost()).await.ok() })
    }

    /// See [`crate::LockGuard::release`].
    pub fn release(mut self) -> Result<bool> {
        let g = self
            .guard
            .take()
            .ok_or_else(|| Error::LockLost("already released".into()))?;
        self.rt.block_on(g.release())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // The async guard's drop spawns its release on the current runtime.
        let _in_rt = self.rt.enter();
        self.guard.take();
    }
}
