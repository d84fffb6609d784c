//! One client connection: read, parse, execute, write — in batches.
//!
//! Every read is parsed completely and all replies of the batch go out in
//! one write, so a pipelining client costs one read and one write per
//! batch, not per command. Before writing, a connection yields once so the
//! worker's other ready connections run first and the writes go out back
//! to back (docs/design/core.md, "Syscalls per request").
//!
//! Bounds (the thing not to get wrong):
//! - input: a request may not exceed the query-buffer limit (1 GB) nor a
//!   bulk the bulk limit (512 MB); past either the client gets Redis'
//!   error and is disconnected;
//! - output: replies are flushed whenever 64 KB are pending, and no more
//!   input is read until they are written, so a client that never reads
//!   only stalls itself: its memory stays at one batch of replies.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use cairn_proto::RequestParser;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cmd::Flow;
use crate::session::ConnState;
use crate::stats::{bump, WorkerStats};
use crate::{unix_ms, Shared};

/// Cluster commands gathered into one pipeline at most (they run
/// concurrently; their replies go out in order).
const PIPELINE_MAX: usize = 256;
/// Replies pending before the batch is interrupted to write them.
const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Buffers bigger than this are given back after use.
const BUFFER_KEEP_BYTES: usize = 256 * 1024;

/// A client's byte stream: plain TCP or TLS over it.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Called after a read that did not fill the buffer.
    fn drained(&self) {}
    /// The TCP socket underneath (to notice a client that went away while
    /// its command waits).
    fn tcp(&self) -> &TcpStream;
    /// The Common Name of the client's verified certificate (TLS).
    fn cert_name(&self) -> Option<String> {
        None
    }
}

impl Transport for TcpStream {
    fn drained(&self) {
        forget_readable(self);
    }
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// A short read of decrypted bytes says nothing about the socket (rustls
/// may hold more records), so nothing is assumed.
impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
    fn cert_name(&self) -> Option<String> {
        let certs = self.get_ref().1.peer_certificates()?;
        crate::tls::common_name(certs.first()?)
    }
}

pub(crate) async fn serve(shared: Arc<Shared>, stats: Arc<WorkerStats>, stream: TcpStream) {
    let (Ok(addr), Ok(laddr)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    serve_stream(shared, stats, stream, addr, laddr).await;
}

/// A connection to the TLS port: the handshake (bounded by
/// [`crate::tls::HANDSHAKE_TIMEOUT`] and by shutdown), then the same
/// loop as plain connections.
pub(crate) async fn serve_tls(shared: Arc<Shared>, stats: Arc<WorkerStats>, stream: TcpStream) {
    let (Ok(addr), Ok(laddr)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    let Some(tls) = shared.tls.as_ref() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let acceptor = tls.acceptor();
    let mut shutdown = shared.shutdown.subscribe();
    let handshake = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                bump(&stats.tls_handshake_failures, 1);
                tracing::debug!(client = %addr, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                bump(&stats.tls_handshake_failures, 1);
                tracing::debug!(client = %addr, "TLS handshake timed out");
                return;
            }
        },
        _ = shutdown.wait_for(|v| *v) => return,
    };
    serve_stream(shared, stats, stream, addr, laddr).await;
}

async fn serve_stream<S: Transport>(
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    mut stream: S,
    addr: std::net::SocketAddr,
    laddr: std::net::SocketAddr,
) {
    let max = shared.settings.maxclients.load(Relaxed);
    let Some(info) = shared.clients.register(addr, laddr, max) else {
        bump(&stats.rejected_connections, 1);
        let _ = stream
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        let _ = stream.flush().await;
        return;
    };
    let id = info.id;
    if *shared.shutdown.borrow() {
        shared.clients.remove(id);
        return;
    }
    let mut conn = ConnState::new(info, stats);
    conn.auth.epoch = shared.acl.epoch();
    conn.auth.user = shared.acl.initial();
    // tls-auth-clients-user CN: a verified client certificate logs the
    // connection in as the enabled ACL user its Common Name names.
    if shared
        .config
        .tls_auth_clients_user
        .eq_ignore_ascii_case("cn")
    {
        if let Some(name) = stream.cert_name() {
            if let Some(u) = shared.acl.get(name.as_bytes()).filter(|u| u.enabled) {
                *conn.info.user.lock() = name.clone();
                conn.auth.user = Some(u);
                if let Some(a) = &shared.audit {
                    a.record(crate::audit::Event {
                        kind: "auth",
                        user: name,
                        client: conn.info.addr.to_string(),
                        command: "tls-certificate".into(),
                        outcome: "ok",
                        keys: Vec::new(),
                    });
                }
            }
        }
    }
    run(&shared, &mut conn, &mut stream).await;
    shared.clients.remove(id);
}

async fn run<S: Transport>(shared: &Shared, conn: &mut ConnState, stream: &mut S) {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut parser = RequestParser::new();
    let info = conn.info.clone();
    // Created once: CLIENT KILL and server shutdown both notify it, and a
    // permit stored while the batch runs is seen at the next read.
    let cancel = info.kill.notified();
    tokio::pin!(cancel);
    let mut pending_input = false;
    loop {
        if !pending_input {
            let need = parser.bytes_needed();
            if need > rbuf.len() {
                rbuf.reserve(need - rbuf.len());
            } else if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK);
            }
            let spare = rbuf.capacity() - rbuf.len();
            let timeout_s = shared.settings.timeout_s.load(Relaxed);
            let n = if timeout_s == 0 {
                tokio::select! {
                    biased;
                    _ = &mut cancel => return,
                    r = stream.read_buf(&mut rbuf) => r,
                }
            } else {
                tokio::select! {
                    biased;
                    _ = &mut cancel => return,
                    r = stream.read_buf(&mut rbuf) => r,
                    _ = tokio::time::sleep(Duration::from_secs(timeout_s)) => return,
                }
            };
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    bump(&conn.stats.net_input_bytes, n as u64);
                    if n < spare {
                        stream.drained();
                    }
                }
            }
        }
        let mut flow = process(shared, conn, &mut parser, &mut rbuf, &mut wbuf);
        if flow == Batch::Defer {
            let ds = std::mem::take(&mut conn.deferred);
            let blocking = ds
                .iter()
                .any(|d| d.list_wait.is_some() || crate::listwait::is_blocking(d));
            if blocking {
                // A blocked pop ends when its client goes away (Redis
                // unblocks a disconnected client): its wait is dropped,
                // which hands any wake on to the next waiter.
                tokio::select! {
                    () = crate::cluster::execute_all(shared, conn, ds, &mut wbuf) => {}
                    () = client_gone(stream.tcp()) => return,
                }
            } else {
                crate::cluster::execute_all(shared, conn, ds, &mut wbuf).await;
            }
            flow = Batch::OutputFull;
        }
        pending_input = flow == Batch::OutputFull;
        if !wbuf.is_empty() {
            // Let the worker's other ready connections read and execute
            // first, then the replies go out back to back: a client woken
            // by the first reply is still running when the rest arrive,
            // instead of being woken (an IPI on loopback) once per reply.
            tokio::task::yield_now().await;
            conn.info.obuf.store(wbuf.len(), Relaxed);
            // flush: TLS keeps records in rustls until flushed (a no-op
            // on TCP).
            if stream.write_all(&wbuf).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            bump(&conn.stats.net_output_bytes, wbuf.len() as u64);
            wbuf.clear();
            conn.info.obuf.store(0, Relaxed);
            if wbuf.capacity() > BUFFER_KEEP_BYTES {
                wbuf = Vec::with_capacity(READ_CHUNK);
            }
        }
        if flow == Batch::Close || info.killed.load(Relaxed) {
            return;
        }
        if rbuf.is_empty() && rbuf.capacity() > BUFFER_KEEP_BYTES {
            rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        conn.info.qbuf.store(rbuf.len(), Relaxed);
        if rbuf.len() > shared.settings.query_buffer_max.load(Relaxed) {
            tracing::warn!(
                client = conn.info.id,
                "closing client that reached max query buffer length"
            );
            return;
        }
    }
}

/// Resolves when the client closed its side (or the socket failed);
/// stays pending once the client sends more (it is read after the wait).
async fn client_gone(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// A short read drained the socket, so the next read would only return
/// EAGAIN: mark the stream not readable without that syscall (a third of
/// the syscalls of an unpipelined request). Safe on a current-thread
/// runtime: the I/O driver cannot run during this task's poll, so data
/// arriving from now on raises a fresh epoll edge that sets readiness again.
fn forget_readable(stream: &TcpStream) {
    let _ = stream.try_io(tokio::io::Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Batch {
    /// All complete requests were executed; read more.
    Done,
    /// Replies reached the flush size; write them, then continue parsing.
    OutputFull,
    /// Commands wait for the cluster (`conn.deferred`): run them, then
    /// continue parsing.
    Defer,
    Close,
}

fn process(
    shared: &Shared,
    conn: &mut ConnState,
    parser: &mut RequestParser,
    rbuf: &mut BytesMut,
    wbuf: &mut Vec<u8>,
) -> Batch {
    let limits = shared.settings.limits();
    let now_ms = unix_ms();
    let mut off = 0;
    let mut spare: Vec<&'static [u8]> = Vec::with_capacity(8);
    let mut outcome = Batch::Done;
    loop {
        let input = &rbuf[off..];
        match parser.parse(input, &limits) {
            Ok(Some(n)) => {
                let args = parser.args(input);
                off += n;
                if args.is_empty() {
                    continue;
                }
                let mut argv = recycle(std::mem::take(&mut spare));
                args.collect_into(&mut argv);
                let flow = crate::dispatch::dispatch(shared, conn, &argv, wbuf, now_ms);
                spare = recycle(argv);
                if flow == Flow::Close {
                    outcome = Batch::Close;
                    break;
                }
                if flow == Flow::Barrier {
                    // Not consumed: parsed again once the pipeline answered.
                    off -= n;
                    outcome = Batch::Defer;
                    break;
                }
                if flow == Flow::Defer {
                    if conn.deferred.len() >= PIPELINE_MAX {
                        outcome = Batch::Defer;
                        break;
                    }
                    continue;
                }
                if wbuf.len() >= OUTPUT_FLUSH_BYTES {
                    outcome = Batch::OutputFull;
                    break;
                }
            }
            Ok(None) => break,
            Err(_) if !conn.deferred.is_empty() => {
                // The error's reply goes after the pipeline's: parse this
                // request again from its start once they answered.
                *parser = RequestParser::new();
                outcome = Batch::Defer;
                break;
            }
            Err(e) => {
                let mut w = cairn_proto::ReplyWriter::new(wbuf, conn.proto);
                w.error(&format!("ERR {e}"));
                outcome = Batch::Close;
                break;
            }
        }
    }
    rbuf.advance(off);
    if !conn.deferred.is_empty() && outcome != Batch::Close {
        outcome = Batch::Defer;
    }
    outcome
}

/// Empties a vector of borrowed slices and hands its allocation back
/// with a new lifetime (in-place collect reuses the buffer), so argument
/// lists cost no allocation per command.
fn recycle<'b>(mut v: Vec<&[u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| -> &'b [u8] { &[] }).collect()
}
