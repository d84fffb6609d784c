//! MULTI/EXEC transactions with optimistic WATCH, on a connection of
//! their own.
//!
//! The one thing not to get wrong: WATCH, MULTI, the queued commands and
//! EXEC must all travel on one connection, because the server keeps the
//! watched versions and the queue per connection. The pool's connections
//! are shared by many concurrent requests, so a transaction checks out a
//! dedicated, unpooled connection to the leader of its keys' group and
//! closes it when dropped (which also makes the server forget any WATCH
//! or half-built MULTI).

use bytes::Bytes;
use cairn_proto::Frame;
use tokio::time::Instant;

use crate::cmd::{Cmd, ToArg};
use crate::conn::{Conn, ConnError};
use crate::error::{Error, Result, ServerError};
use crate::node::encoded;
use crate::retry::parse_moved;
use crate::slot::slot;
use crate::value::FromReply;
use crate::Client;

/// What `EXEC` did.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
#[non_exhaustive]
pub enum TxResult {
    /// Applied atomically; one reply per queued command, in order (a
    /// command's own error, `-WRONGTYPE` say, is its reply here).
    Committed(Vec<Frame>),
    /// Not applied: a watched key changed after `WATCH` (`EXEC` answered
    /// a null reply). Read again and retry.
    Aborted,
}

/// A transaction in the making: one dedicated connection to the leader
/// of the group of the key it was opened with. Every key it touches must
/// be in that group (use one `{tag}`); the server answers `-CROSSSLOT`
/// otherwise. Dropping it closes the connection.
///
/// ```no_run
/// # use cairn_client::{Client, Cmd, TxResult};
/// # async fn demo(client: &Client) -> cairn_client::Result<()> {
/// // Move one unit from {acct}:a to {acct}:b, retrying on conflicts.
/// for _ in 0..100 {
///     let mut tx = client.transaction("{acct}:a").await?;
///     tx.watch(["{acct}:a", "{acct}:b"]).await?;
///     let a: i64 = tx.query::<Option<i64>>(&Cmd::new("GET").arg("{acct}:a")).await?.unwrap_or(0);
///     let b: i64 = tx.query::<Option<i64>>(&Cmd::new("GET").arg("{acct}:b")).await?.unwrap_or(0);
///     let writes = [
///         Cmd::new("SET").arg("{acct}:a").arg(a - 1),
///         Cmd::new("SET").arg("{acct}:b").arg(b + 1),
///     ];
///     match tx.exec(&writes).await? {
///         TxResult::Committed(_) => break,
///         TxResult::Aborted => continue, // someone wrote in between
///         _ => unreachable!(),
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Transaction {
    client: Client,
    conn: Conn,
    addr: String,
}

impl Client {
    /// Opens a transaction on a dedicated connection to the leader of
    /// `key`'s group (by the client's topology). Nothing is sent yet
    /// besides the connection's handshake.
    pub async fn transaction(&self, key: impl ToArg) -> Result<Transaction> {
        let mut k = Vec::new();
        key.write_arg(&mut k);
        let inner = &self.inner;
        let topo = inner.topo();
        let addr = topo.leader(slot(&k)).cloned();
        // No topology (a standalone server): the seed serves every key.
        let addr = addr.or_else(|| inner.cfg.seeds.first().map(|s| s.as_str().into()));
        let Some(addr) = addr else {
            return Err(Error::Unavailable {
                attempts: 0,
                last: "no node known for the transaction's key".into(),
            });
        };
        let node = inner.node(&addr);
        let conn = node
            .dedicated(&inner.limits)
            .await
            .map_err(|reason| Error::Connection {
                addr: addr.to_string(),
                reason,
            })?;
        Ok(Transaction {
            client: self.clone(),
            conn,
            addr: addr.to_string(),
        })
    }
}

impl Transaction {
    /// The node this transaction runs on, `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `WATCH keys...`: `exec` aborts if any of them changes before it.
    pub async fn watch<I, K>(&mut self, keys: I) -> Result<()>
    where
        I: IntoIterator<Item = K>,
        K: ToArg,
    {
        let mut c = Cmd::new("WATCH");
        for k in keys {
            c = c.arg(k);
        }
        self.call(c.encode()).await.map(drop)
    }

    /// Runs one command on the transaction's connection now (outside
    /// MULTI): typically a `GET` of a watched key.
    pub async fn query<T: FromReply>(&mut self, cmd: &Cmd) -> Result<T> {
        T::from_reply(self.call(cmd.encode()).await?)
    }

    /// `MULTI`, `cmds`, `EXEC`, pipelined in one round trip. The
    /// connection stays usable for another round (watch again first).
    ///
    /// Errors: a command refused while queueing (or a key of another
    /// group) makes the server discard the whole transaction:
    /// [`Error::Server`] (`EXECABORT`, `CROSSSLOT`, ...), nothing applied.
    /// A connection lost after the batch was written is
    /// [`Error::OutcomeUnknown`]: the transaction may have been applied.
    pub async fn exec(&mut self, cmds: &[Cmd]) -> Result<TxResult> {
        let mut batch = Vec::with_capacity(cmds.len() + 2);
        batch.push(encoded(&[b"MULTI"]));
        batch.extend(cmds.iter().map(Cmd::encode));
        batch.push(encoded(&[b"EXEC"]));
        let deadline = self.deadline();
        let mut replies = self.conn.call_many(batch, deadline).await;
        let exec = replies
            .pop()
            .unwrap_or_else(|| Err(ConnError::NotSent("empty batch".into())));
        // A queueing error explains an EXECABORT better than EXECABORT.
        let queue_error = replies.into_iter().find_map(|r| match r {
            Ok(Frame::Error(e)) => Some(e),
            _ => None,
        });
        match self.reply(exec)? {
            Frame::Array(items) => Ok(TxResult::Committed(items)),
            Frame::Null => Ok(TxResult::Aborted),
            Frame::Error(e) => Err(self.server_error(&queue_error.unwrap_or(e))),
            other => Err(Error::Protocol(format!("EXEC answered {other:?}"))),
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.client.inner.cfg.attempt_timeout
    }

    async fn call(&mut self, bytes: Bytes) -> Result<Frame> {
        let r = self.conn.call(bytes, self.deadline()).await;
        match self.reply(r)? {
            Frame::Error(e) => Err(self.server_error(&e)),
            f => Ok(f),
        }
    }

    fn reply(&self, r: std::result::Result<Frame, ConnError>) -> Result<Frame> {
        match r {
            Ok(f) => Ok(f),
            Err(ConnError::NotSent(reason)) => Err(Error::Connection {
                addr: self.addr.clone(),
                reason,
            }),
            Err(ConnError::MaybeSent(reason)) => Err(Error::OutcomeUnknown {
                reason: format!("{}: {reason}", self.addr),
            }),
        }
    }

    /// A `-MOVED` means the group's leader moved: the topology is patched
    /// so that the next transaction goes to the new leader.
    fn server_error(&self, e: &[u8]) -> Error {
        let e = ServerError::new(e);
        if e.code() == "MOVED" {
            if let Some((slot, addr)) = parse_moved(e.text()) {
                self.client.inner.apply_moved(slot, &addr);
            }
        }
        Error::Server(e)
    }
}
