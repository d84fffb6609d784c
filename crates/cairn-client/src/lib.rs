//! A cluster-aware Rust client for cairn,
//! the Raft-replicated, Redis-protocol cache and lock service.
//!
//! * **Routing**: learns slot → group → leader from `CLUSTER SLOTS` and
//!   sends each keyed request straight to its group's leader; follows
//!   `-MOVED` and refreshes on errors and periodically.
//! * **Load balancing** wherever there is a choice (stale reads, keyless
//!   commands, bootstrap): [`strategy::Random`], [`strategy::RoundRobin`],
//!   [`strategy::Weighted`], [`strategy::LeastOutstanding`], or your own
//!   [`strategy::LoadBalance`].
//! * **Connections**: a small pool of pipelined connections per node (many
//!   concurrent requests share one socket), a circuit breaker per node,
//!   a timeout on everything.
//! * **Retries** with exponential backoff and jitter, for errors that prove
//!   nothing was applied. A write whose outcome is unknown is never
//!   retried silently: it fails with [`Error::OutcomeUnknown`] unless the
//!   command opted in ([`Cmd::idempotent`], [`Cmd::retry_if_unknown`]).
//! * **Transactions**: [`Client::transaction`] pins one connection to the
//!   leader of a key's group for `WATCH` / `MULTI` / `EXEC`
//!   ([`Transaction`]); an EXEC aborted by a concurrent write to a watched
//!   key is [`TxResult::Aborted`], not an error.
//! * **Locks**: [`Client::lock`] returns a [`LockGuard`] that renews in the
//!   background, tells you at once when the lock is lost
//!   ([`LockGuard::lost`]), releases on drop, and exposes the fencing token
//!   for guarded writes ([`Client::set_fenced`]).
//!
//! # Quick start
//!
//! Start a local 3-node cluster with `cairn dev --nodes 3 --port 7001`, then:
//!
//! ```no_run
//! use std::time::Duration;
//! use cairn_client::{Client, ClientConfig, LockOptions};
//!
//! # async fn demo() -> cairn_client::Result<()> {
//! let client = Client::connect(ClientConfig::new(["127.0.0.1:7001"])).await?;
//!
//! client.set("greeting", "hello", Some(Duration::from_secs(60))).await?;
//! let v: Option<String> = client.get("greeting").await?;
//! assert_eq!(v.as_deref(), Some("hello"));
//!
//! let visits = client.incr_by("visits", 1).await?;
//!
//! if let Some(guard) = client.lock("{job}:lock", LockOptions::default()).await? {
//!     // Applied only while this guard's grant still holds the lock.
//!     client.set_fenced("{job}:data", "result", &guard).await?;
//!     guard.release().await?;
//! }
//! # let _ = visits;
//! # Ok(())
//! # }
//! ```
//!
//! # What a write's error means
//!
//! | error | applied? |
//! |---|---|
//! | `Ok(..)` | yes |
//! | [`Error::Server`] (`-WRONGTYPE`, `-FENCED`, ...) | no |
//! | [`Error::Unavailable`] (no leader, connection refused, ...) | no |
//! | [`Error::OutcomeUnknown`] | maybe: read it back |
#[cfg(feature = "blocking")]
pub mod blocking;
mod client;
mod cmd;
mod config;
mod conn;
mod error;
mod lock;
mod node;
mod retry;
pub mod slot;
pub mod strategy;
mod topology;
mod tx;
mod value;

pub use cairn_proto::Frame;
pub use client::{Client, ClientStats};
pub use cmd::{Cmd, ReadFrom, ToArg};
pub use config::ClientConfig;
pub use error::{Error, Result, ServerError};
pub use lock::{LockGuard, LockOptions, LockStatus};
pub use retry::RetryPolicy;
pub use tx::{Transaction, TxResult};
pub use value::FromReply;
