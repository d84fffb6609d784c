//! Peer transport: **one TCP connection per pair of nodes** carries the
//! requests of every group in both directions, and their responses.
//!
//! Either node of a pair dials when it needs the connection and has none.
//! The connection dialled by the lower node id is the pair's *canonical*
//! one. A node keeps one connection per peer: a canonical connection
//! replaces a non-canonical one, a non-canonical one is refused while a
//! canonical one is up, and otherwise the newer replaces the older. Both
//! nodes apply the same rule, so two dials that cross settle on the
//! canonical connection (the other is closed; requests written on it fail
//! at once and are retried by their callers).
//!
//! A connection opens with a HELLO frame each way carrying `from` and `to`
//! node ids: the acceptor refuses a HELLO addressed to another node id
//! (a stale address) or from itself, the dialer a reply from a node other
//! than the one it dialled.
//!
//! With a cluster secret ([`PeerNet::set_secret`]) both sides prove they
//! know it before anything else is read (docs/design/tls.md): the dialer's
//! HELLO carries a fresh 32-byte nonce, the acceptor's HELLO its own nonce
//! and an HMAC-SHA256 over both ids and both nonces, and the dialer answers
//! with an AUTH frame, an HMAC over the same with another label. Nothing
//! from a connection is handed to Raft before the AUTH checks out, so a
//! stranger cannot join, vote or append, and a frame captured from an
//! earlier connection is useless (the nonces differ). The secret never
//! crosses the wire. A node with the wrong secret, or with none when the
//! other has one, is refused with a log line that says which.
//!
//! Frames are [`PeerFrame`]s (length, version, group, kind, CRC-32C); a
//! request or response payload is `request id u64 BE | body`; responses
//! set the kind's high bit. Bounds: at most `INFLIGHT_BYTES` of requests in
//! flight per peer (callers wait for room), at most `QUEUE` frames queued
//! per peer, at most `HANDLERS_PER_CONN` inbound requests being served per
//! connection, frames over `FRAME_MAX` close the connection. A broken
//! connection fails every request written on it and is re-dialled with
//! exponential backoff (50 ms .. 400 ms) and jitter; one that reads nothing
//! for `SILENT_AFTER` is closed and re-dialled (PINGs keep idle ones alive).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::frame::{encode_parts, PeerFrame};
use crate::host::BoxFuture;

// Kinds 1-3 were the openraft engine's AppendEntries, Vote and
// InstallSnapshot requests, kind 4 one forwarded command; not reused.
/// A batch of forwarded client commands (see `forward.rs`).
pub const K_FORWARD: u8 = 9;
pub const K_ADMIN: u8 = 5;
/// First frame each way on a new connection: `from u64 BE | to u64 BE`.
pub const K_HELLO: u8 = 6;
/// The dialer's proof of the cluster secret: `HMAC u8[32]` (only when a
/// secret is set).
pub const K_AUTH: u8 = 10;
/// No-op frame (request id 0, no answer): written on a connection only to
/// learn whether it still works (see [`Peer::probe`]).
pub const K_PING: u8 = 7;
/// One-way batch of Raft messages for many groups (request id 0, no
/// answer): see `wire::RaftBatch`.
pub const K_RAFT: u8 = 8;
pub const RESPONSE: u8 = 0x80;

/// Largest frame accepted: a log entry may carry a 512 MB value.
pub const FRAME_MAX: usize = 600 << 20;
const INFLIGHT_BYTES: usize = 64 << 20;
const HANDLERS_PER_CONN: usize = 512;
const QUEUE: usize = 4096;
const WRITE_COALESCE: usize = 256 << 10;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Re-dialling a known peer stays this frequent: after a partition heals,
/// the pair is connected again within about this long (a refused or
/// unanswered dial costs one SYN).
const BACKOFF_MAX: Duration = Duration::from_millis(400);
/// A TCP connect that has not completed by then is given up and tried
/// again: the kernel would resend a lost SYN only after 1 s, then 3 s.
/// Assumes peers less than 300 ms apart (round trip), as the election
/// timeout (1 s by default) does anyway.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// A connection that has written nothing for this long writes a PING, so
/// that its peer hears from it at least this often.
const PING_EVERY: Duration = Duration::from_millis(100);
/// A connection that has read nothing for this long is closed and
/// re-dialled. TCP keeps a connection whose packets were dropped for a
/// while (a partition, heavy loss) in retransmission backoff — 0.2, 0.4,
/// 0.8, 1.6, 3.2 s... — and everything to and from that peer waits behind
/// it, long after the network healed; a fresh connection does not. Also
/// gives up on a stopped (SIGSTOP) peer: what was waiting on it fails and
/// is retried elsewhere. Many PING intervals, so a busy machine's late
/// timers do not close healthy connections.
pub const SILENT_AFTER: Duration = Duration::from_millis(750);
/// The most TCP backs off to between resends of an unacknowledged segment
/// on a peer connection (Linux: 120 s; 1 s is the least the kernel
/// accepts): a connection that lost segments for a while resends again
/// within a second of the network healing. The least time (200 ms on
/// Linux) is left alone: 50 ms halved the stalls under 20% loss but, in
/// the 30-minute campaign, a leader whose packets were suddenly delayed
/// 100 ± 50 ms (more than the timeout) stalled a node for 5.3 s
/// (docs/VERIFICATION.md, session 20).
const RTO_MAX: Duration = Duration::from_secs(1);
/// Linux's `TCP_RTO_MAX_MS` and `TCP_RTO_MIN_US` socket options (6.15;
/// not in the libc crate yet).
#[cfg(target_os = "linux")]
const TCP_RTO_MAX_MS: libc::c_int = 44;
#[cfg(all(target_os = "linux", test))]
const TCP_RTO_MIN_US: libc::c_int = 45;
const CONNECT_GRACE: Duration = Duration::from_millis(150);
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// A HELLO frame is at most 80 bytes of payload; anything longer is not one.
const HELLO_MAX: usize = 128;
const NONCE: usize = 32;
const MAC: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("peer {0} unreachable")]
    Unreachable(u64),
    #[error("connection to peer {0} lost before the reply")]
    Lost(u64),
    #[error("request to peer {0} timed out")]
    Timeout(u64),
}

/// Test hook: peers this node pretends it cannot reach (requests to them
/// fail as unreachable, requests from them are dropped unanswered).
#[derive(Default)]
pub struct Faults {
    blocked: Mutex<HashSet<u64>>,
}

impl Faults {
    pub fn block(&self, peer: u64) {
        self.blocked.lock().insert(peer);
    }
    pub fn heal(&self) {
        self.blocked.lock().clear();
    }
    pub fn is_blocked(&self, peer: u64) -> bool {
        self.blocked.lock().contains(&peer)
    }
}

/// Serves inbound peer requests: `handle(group, kind, body)` returns the
/// response body (`None`: no answer, the caller times out).
pub type Handler = Arc<dyn Fn(u16, u8, Vec<u8>) -> BoxFuture<Option<Vec<u8>>> + Send + Sync>;

/// Takes inbound one-way frames (`K_RAFT`): `sink(from, body)`, called on
/// the connection's reader task; must not block.
pub type Sink = Arc<dyn Fn(u64, &[u8]) + Send + Sync>;

/// A request waiting for its response.
struct Pending {
    tx: oneshot::Sender<Vec<u8>>,
    /// Serial of the connection it was written on (0: not written yet).
    conn: u64,
}

/// The connection in use with a peer.
struct Current {
    serial: u64,
    canonical: bool,
    close: watch::Sender<bool>,
}

/// Everything about one peer: its request queue, the requests waiting
/// for responses, and the connection in use.
struct Peer {
    target: u64,
    /// Where to dial it; empty while only known from an inbound connection.
    addr: Mutex<String>,
    tx: mpsc::Sender<(u64, Vec<u8>)>,
    /// Taken by the writer of the connection in use.
    rx: tokio::sync::Mutex<mpsc::Receiver<(u64, Vec<u8>)>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next: AtomicU64,
    budget: Arc<Semaphore>,
    stop: AtomicBool,
    current: Mutex<Option<Current>>,
    serials: AtomicU64,
    /// Notified when a connection comes up.
    up: tokio::sync::Notify,
    /// Wakes the dial loop: connection lost, address learned, stop.
    redial: tokio::sync::Notify,
}

impl Peer {
    fn connected(&self) -> bool {
        self.current.lock().is_some()
    }

    /// Makes a new connection the one in use, by the rule in the module
    /// docs: its serial and close signal, or `None` if it is refused.
    fn install(&self, canonical: bool) -> Option<(u64, watch::Receiver<bool>)> {
        let mut cur = self.current.lock();
        if let Some(c) = cur.as_ref() {
            if c.canonical && !canonical {
                return None;
            }
            let _ = c.close.send(true);
        }
        let serial = self.serials.fetch_add(1, Relaxed) + 1;
        let (close, closed) = watch::channel(false);
        *cur = Some(Current {
            serial,
            canonical,
            close,
        });
        drop(cur);
        self.up.notify_waiters();
        Some((serial, closed))
    }

    /// Connection `serial` ended: fails the requests written on it and,
    /// if it was the one in use, lets the dial loop reconnect.
    fn ended(&self, serial: u64) {
        {
            let mut cur = self.current.lock();
            if cur.as_ref().is_some_and(|c| c.serial == serial) {
                *cur = None;
            }
        }
        self.pending.lock().retain(|_, p| p.conn != serial);
        self.redial.notify_one();
    }

    /// Writes a PING on the connection in use. A node refusing a dial
    /// because it has a canonical connection calls this: the dialer would
    /// not dial if it had that connection, so it may be stale (the peer
    /// restarted while the network dropped its FIN); the PING then draws a
    /// reset, the connection ends and the next dial is accepted.
    fn probe(&self) {
        let _ = self.tx.try_send((0, message(0, K_PING, 0, &[])));
    }

    fn close(&self) {
        self.stop.store(true, Relaxed);
        if let Some(c) = self.current.lock().as_ref() {
            let _ = c.close.send(true);
        }
        self.redial.notify_one();
    }
}

pub struct PeerNet {
    me: u64,
    /// Source address of outbound peer connections: the peer listener's
    /// IP when it is a specific one, so peers (and firewalls, and the
    /// fault lab's loopback proxy) see connections come from the address
    /// this node is known by. `None`: the kernel chooses.
    source: Option<std::net::IpAddr>,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    pub faults: Arc<Faults>,
    rt: tokio::runtime::Handle,
    handler: OnceLock<Handler>,
    sink: OnceLock<Sink>,
    stopped: AtomicBool,
    /// The cluster secret's HMAC key, when peers must prove it.
    secret: OnceLock<ring::hmac::Key>,
    /// Mutual TLS on every peer connection, when set.
    tls: OnceLock<PeerTls>,
    /// This node's share of [`PEER_AUTH_FAILURES`].
    auth_failures: AtomicU64,
    /// A connection that brings nothing in for this long is closed and
    /// re-dialled (ms; see [`SILENT_AFTER`]).
    silent_after_ms: AtomicU64,
    /// Connections closed for silence, since start.
    pub silent_closes: AtomicU64,
}

/// The current TLS configurations for peer connections: called once per
/// connection, so certificates reloaded by the caller take effect for new
/// connections.
#[derive(Clone)]
pub struct PeerTls(
    pub  Arc<
        dyn Fn() -> (
                Arc<tokio_rustls::rustls::ServerConfig>,
                Arc<tokio_rustls::rustls::ClientConfig>,
            ) + Send
            + Sync,
    >,
);

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// A peer connection: plain TCP, or TLS over it (either side's).
enum PeerStream {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            PeerStream::Client(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
            PeerStream::Server(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            PeerStream::Client(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
            PeerStream::Server(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            PeerStream::Client(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
            PeerStream::Server(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            PeerStream::Client(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
            PeerStream::Server(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Writes `data` and flushes it (TLS keeps records until flushed).
async fn send_all(s: &mut PeerStream, data: &[u8]) -> std::io::Result<()> {
    s.write_all(data).await?;
    s.flush().await
}

/// Handshakes refused because the other side did not prove the cluster
/// secret (or offered one this node does not have), since start.
pub static PEER_AUTH_FAILURES: AtomicU64 = AtomicU64::new(0);

impl PeerNet {
    /// Makes every peer connection prove `secret` (both ways) before it
    /// is used. Call before the first connection; later calls are ignored.
    pub fn set_tls(&self, tls: PeerTls) {
        let _ = self.tls.set(tls);
    }

    /// How long a connection may bring nothing in before it is closed
    /// and re-dialled (default [`SILENT_AFTER`]); for tests.
    #[cfg(test)]
    pub fn set_silent_after(&self, d: Duration) {
        self.silent_after_ms
            .store(d.as_millis().max(1) as u64, Relaxed);
    }

    fn silent_after(&self) -> Duration {
        Duration::from_millis(self.silent_after_ms.load(Relaxed))
    }

    pub fn set_secret(&self, secret: &[u8]) {
        let _ = self
            .secret
            .set(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret));
    }

    pub fn new(
        me: u64,
        source: Option<std::net::IpAddr>,
        rt: tokio::runtime::Handle,
    ) -> Arc<PeerNet> {
        Arc::new(PeerNet {
            me,
            source: source.filter(|ip| !ip.is_unspecified()),
            peers: Mutex::new(HashMap::new()),
            faults: Arc::new(Faults::default()),
            rt,
            handler: OnceLock::new(),
            sink: OnceLock::new(),
            stopped: AtomicBool::new(false),
            secret: OnceLock::new(),
            tls: OnceLock::new(),
            auth_failures: AtomicU64::new(0),
            silent_after_ms: AtomicU64::new(SILENT_AFTER.as_millis() as u64),
            silent_closes: AtomicU64::new(0),
        })
    }

    /// The peer `target`, created (with its dial loop) on first use.
    /// `addr` (when not empty) is where to dial it from now on.
    fn peer(self: &Arc<Self>, target: u64, addr: &str) -> Arc<Peer> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(&target) {
            if !addr.is_empty() {
                let mut a = p.addr.lock();
                if *a != addr {
                    let learned = a.is_empty();
                    *a = addr.to_string();
                    if learned {
                        p.redial.notify_one();
                    }
                }
            }
            return p.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let p = Arc::new(Peer {
            target,
            addr: Mutex::new(addr.to_string()),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            budget: Arc::new(Semaphore::new(INFLIGHT_BYTES)),
            stop: AtomicBool::new(self.stopped.load(Relaxed)),
            current: Mutex::new(None),
            serials: AtomicU64::new(0),
            up: tokio::sync::Notify::new(),
            redial: tokio::sync::Notify::new(),
        });
        self.rt.spawn(dial_loop(self.clone(), p.clone()));
        peers.insert(target, p.clone());
        p
    }

    /// Sends one request and waits for its response body.
    pub async fn call(
        self: &Arc<Self>,
        target: u64,
        addr: &str,
        group: u16,
        kind: u8,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        if self.faults.is_blocked(target) {
            return Err(NetError::Unreachable(target));
        }
        let p = self.peer(target, addr);
        if !p.connected() {
            // A connection being (re)dialled gets a moment before the
            // request is given up as unreachable.
            let wait = p.up.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if !p.connected() {
                let _ = tokio::time::timeout(CONNECT_GRACE.min(timeout), wait).await;
            }
            if !p.connected() {
                return Err(NetError::Unreachable(target));
            }
        }
        let permits = body.len().clamp(1, INFLIGHT_BYTES) as u32;
        let fut = async {
            let _permit = p
                .budget
                .clone()
                .acquire_many_owned(permits)
                .await
                .map_err(|_| NetError::Lost(target))?;
            let id = p.next.fetch_add(1, Relaxed);
            let frame = message(group, kind, id, &body);
            drop(body);
            let (otx, orx) = oneshot::channel();
            p.pending.lock().insert(id, Pending { tx: otx, conn: 0 });
            let guard = PendingGuard { p: &p, id };
            if p.tx.send((id, frame)).await.is_err() {
                return Err(NetError::Lost(target));
            }
            let r = orx.await.map_err(|_| NetError::Lost(target));
            drop(guard);
            r
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout(target)),
        }
    }

    /// Queues a one-way frame of `kind` to `target` without waiting: dropped
    /// (like a lost packet) when the peer is blocked or its queue is full.
    /// Callable from any thread.
    pub fn send_oneway(self: &Arc<Self>, target: u64, addr: &str, kind: u8, body: &[u8]) -> bool {
        if self.faults.is_blocked(target) || self.stopped.load(Relaxed) {
            return false;
        }
        let p = self.peer(target, addr);
        p.tx.try_send((0, message(0, kind, 0, body))).is_ok()
    }

    /// Sets where inbound one-way frames go (before `serve`).
    pub fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    /// Accepts peer connections until `stop`; `handler` serves the
    /// requests that arrive on every connection, accepted or dialled.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        handler: Handler,
        mut stop: watch::Receiver<bool>,
    ) {
        let _ = self.handler.set(handler);
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.changed() => return,
            };
            let Ok((stream, from)) = accepted else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(accept(self.clone(), stream, from));
        }
    }

    /// Counts a handshake refused for authentication (here and in the
    /// process-wide [`PEER_AUTH_FAILURES`]).
    fn refused(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
        PEER_AUTH_FAILURES.fetch_add(1, Relaxed);
    }

    /// Handshakes this node refused for authentication since it started.
    /// A process has one node, whose count is the global one (INFO reads
    /// that); tests run several nodes side by side and need their own.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Relaxed)
    }

    /// Closes every connection and stops dialling.
    pub fn shutdown(&self) {
        self.stopped.store(true, Relaxed);
        for p in self.peers.lock().values() {
            p.close();
        }
    }
}

/// Removes a request's pending slot however the call ends.
struct PendingGuard<'a> {
    p: &'a Peer,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.p.pending.lock().remove(&self.id);
    }
}

/// Connects to `addr`, from `source` when given and of the same family.
async fn connect(addr: &str, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let target = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    match source.filter(|ip| ip.is_ipv4() == target.is_ipv4()) {
        Some(ip) => {
            let sock = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            sock.bind(SocketAddr::new(ip, 0))?;
            sock.connect(target).await
        }
        None => TcpStream::connect(target).await,
    }
}

/// A request, response or PING frame: payload `id u64 BE | body`.
fn message(group: u16, kind: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 24);
    encode_parts(group, kind, &[&id.to_be_bytes(), body], &mut out);
    out
}

fn hello(from: u64, to: u64, extra: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    let (f, t) = (from.to_be_bytes(), to.to_be_bytes());
    let mut parts: Vec<&[u8]> = vec![&f, &t];
    parts.extend_from_slice(extra);
    encode_parts(0, K_HELLO, &parts, &mut out);
    out
}

/// A HELLO as read: ids, and whatever followed them (a nonce, a MAC).
struct Hello {
    from: u64,
    to: u64,
    extra: Vec<u8>,
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one frame of `kind` at most `max` bytes long (header excluded,
/// see [`PeerFrame::decode`]) into `buf`
/// (which may already hold bytes): its payload, and `buf` keeps the bytes
/// read past it.
async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    kind: u8,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    loop {
        match PeerFrame::decode(buf, max) {
            Ok(Some((f, used))) => {
                if f.kind != kind {
                    return Err(bad(&format!(
                        "expected a frame of kind {kind}, got kind {}",
                        f.kind
                    )));
                }
                buf.drain(..used);
                return Ok(f.payload);
            }
            Ok(None) => {}
            Err(e) => return Err(bad(&e.to_string())),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(bad("closed during the handshake"));
        }
    }
}

/// Reads the HELLO that opens a connection.
async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Hello> {
    let payload = read_first(stream, buf, K_HELLO, HELLO_MAX).await?;
    if payload.len() < 16 {
        return Err(bad("the first frame is not a HELLO"));
    }
    let id = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    Ok(Hello {
        from: id(&payload[..8]),
        to: id(&payload[8..16]),
        extra: payload[16..].to_vec(),
    })
}

/// What each side MACs: a label (so the acceptor's proof cannot be sent
/// back as the dialer's), the dialer and acceptor ids, both nonces.
fn proof(
    key: &ring::hmac::Key,
    label: &[u8],
    dialer: u64,
    acceptor: u64,
    nd: &[u8],
    na: &[u8],
) -> ring::hmac::Tag {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(b"cairn peer v1 ");
    ctx.update(label);
    ctx.update(&dialer.to_be_bytes());
    ctx.update(&acceptor.to_be_bytes());
    ctx.update(nd);
    ctx.update(na);
    ctx.sign()
}

fn verify(
    key: &ring::hmac::Key,
    label: &[u8],
    dialer: u64,
    acceptor: u64,
    nd: &[u8],
    na: &[u8],
    mac: &[u8],
) -> bool {
    let mut msg = Vec::with_capacity(14 + label.len() + 16 + nd.len() + na.len());
    msg.extend_from_slice(b"cairn peer v1 ");
    msg.extend_from_slice(label);
    msg.extend_from_slice(&dialer.to_be_bytes());
    msg.extend_from_slice(&acceptor.to_be_bytes());
    msg.extend_from_slice(nd);
    msg.extend_from_slice(na);
    // Constant time.
    ring::hmac::verify(key, &msg, mac).is_ok()
}

fn nonce() -> std::io::Result<[u8; NONCE]> {
    use ring::rand::SecureRandom;
    let mut n = [0u8; NONCE];
    ring::rand::SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| std::io::Error::other("no randomness for the peer handshake"))?;
    Ok(n)
}

fn auth_failed(net: &PeerNet, what: String) -> std::io::Error {
    net.refused();
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, what)
}

/// Socket options of every peer connection: no Nagle delay, and a
/// retransmission backoff capped at [`RTO_MAX`] where the kernel has the
/// option (Linux 6.15 and later; elsewhere the kernel's default stays).
fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let max_ms = libc::c_int::try_from(RTO_MAX.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt on a descriptor this stream owns, with a
        // pointer to a c_int and its size; an unknown option only returns
        // an error.
        unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                TCP_RTO_MAX_MS,
                (&max_ms as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Dials peer `p` and exchanges HELLOs (and, with a secret, proofs): the
/// stream and the bytes read past the handshake.
async fn dial(net: &PeerNet, p: &Peer, addr: &str) -> std::io::Result<(PeerStream, Vec<u8>)> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect(addr, net.source))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tune(&tcp);
    let mut stream = match net.tls.get() {
        None => PeerStream::Plain(tcp),
        Some(tls) => {
            // The node certificate must name the address peers dial (an
            // IP address or a host name), as any TLS server's.
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from((tls.0)().1);
            let s = connector.connect(name, tcp).await.map_err(|e| {
                net.refused();
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("TLS with node {} at {addr}: {e}", p.target),
                )
            })?;
            PeerStream::Client(Box::new(s))
        }
    };
    let nd = nonce()?;
    let secret = net.secret.get();
    let offer: &[&[u8]] = if secret.is_some() { &[&nd] } else { &[] };
    send_all(&mut stream, &hello(net.me, p.target, offer)).await?;
    let mut rest = Vec::with_capacity(256);
    let h = read_hello(&mut stream, &mut rest).await?;
    if h.from != p.target || h.to != net.me {
        return Err(std::io::Error::other(format!(
            "{addr} answered as node {} (for node {}), not node {}",
            h.from, h.to, p.target
        )));
    }
    match secret {
        None if h.extra.is_empty() => {}
        None => {
            return Err(auth_failed(net, format!(
                "node {} at {addr} proves a cluster secret and this node has none: set cluster-secret-file here too",
                p.target
            )))
        }
        Some(key) => {
            if h.extra.len() != NONCE + MAC {
                return Err(auth_failed(net, format!(
                    "node {} at {addr} does not use a cluster secret: set the same cluster-secret-file there",
                    p.target
                )));
            }
            let (na, mac) = h.extra.split_at(NONCE);
            if !verify(key, b"accept", net.me, p.target, &nd, na, mac) {
                return Err(auth_failed(net, format!(
                    "node {} at {addr} failed to prove the cluster secret (a different cluster-secret-file?)",
                    p.target
                )));
            }
            let tag = proof(key, b"dial", net.me, p.target, &nd, na);
            let mut out = Vec::with_capacity(64);
            encode_parts(0, K_AUTH, &[tag.as_ref()], &mut out);
            send_all(&mut stream, &out).await?;
        }
    }
    Ok((stream, rest))
}

async fn dial_loop(net: Arc<PeerNet>, p: Arc<Peer>) {
    let mut backoff = BACKOFF_MIN;
    let mut seed = net.me.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ p.target;
    loop {
        if p.stop.load(Relaxed) {
            return;
        }
        let addr = p.addr.lock().clone();
        if p.connected() || addr.is_empty() {
            // Woken when the connection ends or an address is learned;
            // the timeout only bounds a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_secs(1), p.redial.notified()).await;
            continue;
        }
        let dialled = tokio::time::timeout(HELLO_TIMEOUT, dial(&net, &p, &addr)).await;
        match dialled {
            Ok(Ok((stream, rest))) => {
                backoff = BACKOFF_MIN;
                run_conn(&net, &p, stream, rest, net.me < p.target).await;
            }
            Ok(Err(e)) => tracing::debug!(peer = p.target, %addr, error = %e, "dial failed"),
            Err(_) => tracing::debug!(peer = p.target, %addr, "dial timed out"),
        }
        // Exponential backoff with jitter (xorshift).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let jitter = Duration::from_millis(seed % (backoff.as_millis() as u64 / 2 + 1));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// An accepted connection: HELLO (and, with a secret, the proofs), then
/// the same as a dialled one.
async fn accept(net: Arc<PeerNet>, tcp: TcpStream, addr: SocketAddr) {
    tune(&tcp);
    let mut stream = match net.tls.get() {
        None => PeerStream::Plain(tcp),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from((tls.0)().0);
            match tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => PeerStream::Server(Box::new(s)),
                Ok(Err(e)) => {
                    net.refused();
                    tracing::error!(%addr, error = %e, "peer TLS handshake failed (no certificate from this cluster's CA?); refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%addr, "no TLS handshake within {HELLO_TIMEOUT:?}; closing");
                    return;
                }
            }
        }
    };
    let mut rest = Vec::with_capacity(256);
    let greeted = tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut stream, &mut rest)).await;
    let h = match greeted {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::warn!(%addr, error = %e, "peer connection without a valid HELLO; closing");
            return;
        }
        Err(_) => {
            tracing::warn!(%addr, "no HELLO within {HELLO_TIMEOUT:?}; closing");
            return;
        }
    };
    let from = h.from;
    if h.to != net.me || from == net.me {
        tracing::warn!(%addr, from, to = h.to, "HELLO not for this node ({}); closing", net.me);
        return;
    }
    if net.stopped.load(Relaxed) {
        return;
    }
    match net.secret.get() {
        None if h.extra.is_empty() => {}
        None => {
            net.refused();
            tracing::error!(%addr, from, "peer offers a cluster secret handshake and this node has no secret: set cluster-secret-file here too; closing");
            return;
        }
        Some(key) => {
            if h.extra.len() != NONCE {
                net.refused();
                tracing::error!(%addr, from, "peer did not offer the cluster secret handshake (no cluster-secret-file there?); refused");
                return;
            }
            let nd = h.extra;
            let Ok(na) = nonce() else { return };
            let tag = proof(key, b"accept", from, net.me, &nd, &na);
            if send_all(&mut stream, &hello(net.me, from, &[&na, tag.as_ref()]))
                .await
                .is_err()
            {
                return;
            }
            let auth = tokio::time::timeout(
                HELLO_TIMEOUT,
                read_first(&mut stream, &mut rest, K_AUTH, MAC + 64),
            )
            .await;
            let ok = match auth {
                Ok(Ok(mac)) if mac.len() == MAC => {
                    verify(key, b"dial", from, net.me, &nd, &na, &mac)
                }
                _ => false,
            };
            if !ok {
                net.refused();
                tracing::error!(%addr, from, "peer failed to prove the cluster secret (wrong cluster-secret-file?); refused");
                return;
            }
        }
    }
    let p = net.peer(from, "");
    // Refused (a canonical connection is up): close without answering,
    // the dialer backs off and uses the canonical connection meanwhile.
    let Some((serial, closed)) = p.install(from < net.me) else {
        p.probe();
        return;
    };
    // Without a secret the acceptor's HELLO goes out once the connection
    // is installed (with one it went out with the proof).
    if net.secret.get().is_none()
        && send_all(&mut stream, &hello(net.me, from, &[]))
            .await
            .is_err()
    {
        p.ended(serial);
        return;
    }
    serve_conn(&net, &p, stream, rest, serial, closed).await;
}

/// Runs a dialled connection, if it may become the one in use.
async fn run_conn(net: &PeerNet, p: &Peer, stream: PeerStream, rest: Vec<u8>, canonical: bool) {
    let Some((serial, closed)) = p.install(canonical) else {
        return;
    };
    serve_conn(net, p, stream, rest, serial, closed).await;
}

/// Reads and writes connection `serial` until it breaks or is closed.
async fn serve_conn(
    net: &PeerNet,
    p: &Peer,
    stream: PeerStream,
    rest: Vec<u8>,
    serial: u64,
    closed: watch::Receiver<bool>,
) {
    let (resp_tx, resp_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    match stream {
        // Plain TCP splits without a lock between the halves.
        PeerStream::Plain(tcp) => {
            let (rd, wr) = tcp.into_split();
            tokio::select! {
                _ = write_loop(p, wr, resp_rx, serial, closed.clone()) => {}
                _ = read_loop(net, p, rd, rest, resp_tx, closed) => {}
            }
        }
        tls => {
            let (rd, wr) = tokio::io::split(tls);
            tokio::select! {
                _ = write_loop(p, wr, resp_rx, serial, closed.clone()) => {}
                _ = read_loop(net, p, rd, rest, resp_tx, closed) => {}
            }
        }
    }
    p.ended(serial);
}

/// Writes this node's requests (from the peer's queue) and its responses
/// (from `resp_rx`), many frames per `send`.
async fn write_loop<W: AsyncWrite + Unpin>(
    p: &Peer,
    mut wr: W,
    mut resp_rx: mpsc::Receiver<Vec<u8>>,
    serial: u64,
    mut closed: watch::Receiver<bool>,
) {
    // One future for the whole connection (not one per select).
    let closed = async move {
        let _ = closed.wait_for(|c| *c).await;
    };
    tokio::pin!(closed);
    // The previous connection's writer lets go of the queue once closed.
    let mut rx = tokio::select! {
        rx = p.rx.lock() => rx,
        _ = &mut closed => return,
    };
    let mut reqs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut resps: Vec<Vec<u8>> = Vec::new();
    let mut buf = Vec::new();
    // Due when nothing was written for PING_EVERY (the peer's silence
    // check, `read_loop`).
    let ping = tokio::time::sleep(PING_EVERY);
    tokio::pin!(ping);
    loop {
        let mut pinging = false;
        tokio::select! {
            biased;
            _ = &mut closed => return,
            r = resp_rx.recv() => match r {
                Some(f) => resps.push(f),
                None => return,
            },
            r = rx.recv() => match r {
                Some(f) => reqs.push(f),
                None => return,
            },
            () = &mut ping => pinging = true,
        }
        buf.clear();
        if pinging {
            buf.extend_from_slice(&message(0, K_PING, 0, &[]));
        } else {
            coalesce(&mut rx, &mut resp_rx, &mut reqs, &mut resps).await;
        }
        for f in resps.drain(..) {
            buf.extend_from_slice(&f);
        }
        {
            // Requests whose callers gave up are not sent; the others are
            // marked as written on this connection.
            let mut pending = p.pending.lock();
            for (id, f) in reqs.drain(..) {
                if id == 0 {
                    buf.extend_from_slice(&f);
                } else if let Some(w) = pending.get_mut(&id) {
                    w.conn = serial;
                    buf.extend_from_slice(&f);
                }
            }
        }
        if buf.is_empty() {
            continue;
        }
        // flush: a no-op on TCP; TLS holds records until flushed.
        let written = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        };
        tokio::select! {
            r = written => if r.is_err() { return },
            _ = &mut closed => return,
        }
        ping.as_mut()
            .reset(tokio::time::Instant::now() + PING_EVERY);
    }
}

/// Takes more queued frames (up to `WRITE_COALESCE` bytes) so that one
/// `send` carries the messages of many groups. Before giving up on empty
/// queues it yields once: the tasks woken together with this one (the
/// groups whose appends one fsync completed) get to queue their messages
/// first. Measured on the 3-node SET benchmark: fewer sends per write.
async fn coalesce(
    rx: &mut mpsc::Receiver<(u64, Vec<u8>)>,
    resp_rx: &mut mpsc::Receiver<Vec<u8>>,
    reqs: &mut Vec<(u64, Vec<u8>)>,
    resps: &mut Vec<Vec<u8>>,
) {
    let mut bytes: usize = reqs.iter().map(|(_, f)| f.len()).sum::<usize>()
        + resps.iter().map(Vec::len).sum::<usize>();
    let mut yielded = false;
    while bytes < WRITE_COALESCE {
        let mut got = false;
        if let Ok(f) = resp_rx.try_recv() {
            bytes += f.len();
            resps.push(f);
            got = true;
        }
        if let Ok(f) = rx.try_recv() {
            bytes += f.1.len();
            reqs.push(f);
            got = true;
        }
        if got {
            continue;
        }
        if yielded {
            break;
        }
        yielded = true;
        tokio::task::yield_now().await;
    }
}

/// Reads frames: responses complete this node's requests, requests go to
/// the handler (at most `HANDLERS_PER_CONN` at once) and their responses
/// to the writer.
async fn read_loop<R: AsyncRead + Unpin>(
    net: &PeerNet,
    p: &Peer,
    mut rd: R,
    rest: Vec<u8>,
    resp_tx: mpsc::Sender<Vec<u8>>,
    mut closed: watch::Receiver<bool>,
) {
    let closed = async move {
        let _ = closed.wait_for(|c| *c).await;
    };
    tokio::pin!(closed);
    let handlers = Arc::new(Semaphore::new(HANDLERS_PER_CONN));
    let mut buf = rest;
    buf.reserve(64 << 10);
    let silent_after = net.silent_after();
    let silence = tokio::time::sleep(silent_after);
    tokio::pin!(silence);
    loop {
        loop {
            let (f, used) = match PeerFrame::decode(&buf, FRAME_MAX) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = p.target, error = %e, "bad frame from peer; closing");
                    return;
                }
            };
            buf.drain(..used);
            if f.payload.len() < 8 || f.kind == K_HELLO || f.kind == K_AUTH {
                tracing::warn!(
                    peer = p.target,
                    kind = f.kind,
                    "unexpected frame from peer; closing"
                );
                return;
            }
            if f.kind == K_PING {
                continue;
            }
            if f.kind == K_RAFT {
                if !net.faults.is_blocked(p.target) {
                    if let Some(sink) = net.sink.get() {
                        sink(p.target, &f.payload[8..]);
                    }
                }
                continue;
            }
            let mut payload = f.payload;
            let id = u64::from_be_bytes(payload[..8].try_into().unwrap_or([0; 8]));
            payload.drain(..8);
            if f.kind & RESPONSE != 0 {
                let w = p.pending.lock().remove(&id);
                if let Some(w) = w {
                    let _ = w.tx.send(payload);
                }
                continue;
            }
            if net.faults.is_blocked(p.target) {
                continue;
            }
            let Some(handler) = net.handler.get().cloned() else {
                // Not serving yet (the node is starting): no answer, the
                // sender times out and retries.
                continue;
            };
            let permit = tokio::select! {
                p = handlers.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = &mut closed => return,
            };
            let (group, kind) = (f.group, f.kind);
            let tx = resp_tx.clone();
            // Started here, before the next frame is read: requests are
            // handled in the order they were sent (forwarded pipelines
            // depend on it), then finish concurrently.
            crate::forward::start(async move {
                let resp = handler(group, kind, payload).await;
                drop(permit);
                if let Some(resp) = resp {
                    let _ = tx.send(message(group, kind | RESPONSE, id, &resp)).await;
                }
            })
            .await;
        }
        if p.stop.load(Relaxed) {
            return;
        }
        let r = tokio::select! {
            // Data already there is read before the silence check (this
            // task may have waited for a handler slot).
            biased;
            r = rd.read_buf(&mut buf) => r,
            _ = &mut closed => return,
            () = &mut silence => {
                net.silent_closes.fetch_add(1, Relaxed);
                tracing::info!(
                    peer = p.target,
                    after_ms = silent_after.as_millis() as u64,
                    "peer connection silent; closing it and dialling again"
                );
                return;
            }
        };
        match r {
            Ok(0) | Err(_) => return,
            Ok(_) => silence
                .as_mut()
                .reset(tokio::time::Instant::now() + silent_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node on a free loopback port whose handler answers
    /// `node id | body`.
    async fn node(id: u64) -> (Arc<PeerNet>, String, watch::Sender<bool>) {
        node_with(id, None, None).await
    }

    fn current(net: &PeerNet, target: u64) -> Option<(u64, bool)> {
        let peers = net.peers.lock();
        let p = peers.get(&target)?;
        let c = p.current.lock();
        c.as_ref().map(|c| (c.serial, c.canonical))
    }

    async fn call(
        net: &Arc<PeerNet>,
        target: u64,
        addr: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, NetError> {
        let mut last = Err(NetError::Unreachable(target));
        // The first calls may find the connection still being dialled.
        for _ in 0..50 {
            last = net
                .call(
                    target,
                    addr,
                    7,
                    K_ADMIN,
                    body.to_vec(),
                    Duration::from_secs(2),
                )
                .await;
            if last.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    }

    /// A node like [`node`], with a cluster secret and/or peer TLS.
    async fn node_with(
        id: u64,
        secret: Option<&[u8]>,
        tls: Option<PeerTls>,
    ) -> (Arc<PeerNet>, String, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let net = PeerNet::new(id, None, tokio::runtime::Handle::current());
        if let Some(s) = secret {
            net.set_secret(s);
        }
        if let Some(t) = tls {
            net.set_tls(t);
        }
        let handler: Handler = Arc::new(move |_g, _k, body| {
            Box::pin(async move {
                let mut out = id.to_be_bytes().to_vec();
                out.extend_from_slice(&body);
                Some(out)
            })
        });
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(net.clone().serve(listener, handler, stop_rx));
        (net, addr, stop)
    }

    async fn call_once(net: &Arc<PeerNet>, target: u64, addr: &str) -> Result<Vec<u8>, NetError> {
        net.call(
            target,
            addr,
            7,
            K_ADMIN,
            b"q".to_vec(),
            Duration::from_millis(600),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peers_with_the_same_secret_talk_and_any_mismatch_is_refused() {
        let s1: &[u8] = b"correct horse battery staple 01";
        let (a, _a_addr, _sa) = node_with(1, Some(s1), None).await;
        let (_b, b_addr, _sb) = node_with(2, Some(s1), None).await;
        assert_eq!(
            call(&a, 2, &b_addr, b"x").await.unwrap(),
            [&2u64.to_be_bytes()[..], b"x"].concat()
        );
        let before = PEER_AUTH_FAILURES.load(Relaxed);
        // Wrong secret, no secret on the dialer, no secret on the acceptor.
        let (c, _, _sc) = node_with(3, Some(b"another secret entirely, 0002"), None).await;
        let (d, _, _sd) = node_with(4, None, None).await;
        let (_e, e_addr, _se) = node_with(5, None, None).await;
        for _ in 0..5 {
            assert!(
                call_once(&c, 2, &b_addr).await.is_err(),
                "wrong secret let in"
            );
            assert!(call_once(&d, 2, &b_addr).await.is_err(), "no secret let in");
            assert!(
                call_once(&a, 5, &e_addr).await.is_err(),
                "talked to a node without the secret"
            );
        }
        assert!(PEER_AUTH_FAILURES.load(Relaxed) > before);
        // The good pair still works.
        assert!(call(&a, 2, &b_addr, b"y").await.is_ok());
    }

    /// A hostile peer that knows node ids but not the secret: it replays
    /// the bytes a real node sent (HELLO with an old nonce, its AUTH) and
    /// then a request frame; the node answers nothing and hands nothing on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replayed_handshake_and_frame_get_nothing() {
        let secret: &[u8] = b"correct horse battery staple 01";
        let served = Arc::new(AtomicU64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let net = PeerNet::new(2, None, tokio::runtime::Handle::current());
        net.set_secret(secret);
        let count = served.clone();
        let handler: Handler = Arc::new(move |_g, _k, _body| {
            count.fetch_add(1, Relaxed);
            Box::pin(async move { Some(b"answer".to_vec()) })
        });
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(net.clone().serve(listener, handler, stop_rx));

        // Capture a real dialer's handshake: a fake acceptor records what
        // node 1 (with the secret) sends.
        let trap = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let trap_addr = trap.local_addr().unwrap().to_string();
        let dialer = PeerNet::new(1, None, tokio::runtime::Handle::current());
        dialer.set_secret(secret);
        let captured = tokio::spawn(async move {
            let (mut s, _) = trap.accept().await.unwrap();
            let mut buf = vec![0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            buf.truncate(n);
            buf
        });
        let _ = call_once(&dialer, 2, &trap_addr).await;
        let hello_bytes = captured.await.unwrap();
        assert!(!hello_bytes.is_empty(), "nothing captured");

        // Replay it to the real node, then a forged AUTH and a request.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&hello_bytes).await.unwrap();
        let mut forged = Vec::new();
        encode_parts(0, K_AUTH, &[&[7u8; 32]], &mut forged);
        let _ = s.write_all(&forged).await;
        let _ = s.write_all(&message(7, K_ADMIN, 1, b"q")).await;
        // The connection is closed without a response frame.
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut got)).await;
        let answered = PeerFrame::decode(&got, FRAME_MAX)
            .ok()
            .flatten()
            .map(|(f, used)| {
                // Past the node's own HELLO (nonce and proof), any frame at all?
                f.kind != K_HELLO
                    || PeerFrame::decode(&got[used..], FRAME_MAX)
                        .ok()
                        .flatten()
                        .is_some()
            })
            .unwrap_or(false);
        assert!(!answered, "the node answered a replayed handshake");
        assert_eq!(
            served.load(Relaxed),
            0,
            "a replayed request reached the handler"
        );
    }

    /// A real session recorded on the wire and replayed whole: node 1
    /// (with the secret) reaches node 2 through a recording TCP relay,
    /// makes a call and sends a Raft batch (both delivered); node 1 goes
    /// away, and everything it sent on that connection (HELLO with its
    /// nonce, its proof, the request, the Raft frame) is sent again to
    /// node 2 as one stream. Node 2 answers no frame past its own HELLO,
    /// hands nothing to its handler or its Raft sink, and counts a refusal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recorded_session_replayed_whole_delivers_nothing() {
        let secret: &[u8] = b"correct horse battery staple 01";
        let calls = Arc::new(AtomicU64::new(0));
        let rafts = Arc::new(AtomicU64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b_addr = listener.local_addr().unwrap().to_string();
        let b = PeerNet::new(2, None, tokio::runtime::Handle::current());
        b.set_secret(secret);
        let r = rafts.clone();
        b.set_sink(Arc::new(move |from, body| {
            assert_eq!((from, body), (1, &b"raft batch"[..]));
            r.fetch_add(1, Relaxed);
        }));
        let c = calls.clone();
        let handler: Handler = Arc::new(move |_g, _k, body| {
            c.fetch_add(1, Relaxed);
            Box::pin(async move { Some(body) })
        });
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(b.clone().serve(listener, handler, stop_rx));

        // The relay: forwards each connection to node 2 and records what
        // the dialer sent on it.
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay.local_addr().unwrap().to_string();
        type Recording = Arc<Mutex<Vec<u8>>>;
        let sessions: Arc<Mutex<Vec<Recording>>> = Arc::default();
        let recs = sessions.clone();
        let to = b_addr.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = relay.accept().await {
                let Ok(outbound) = TcpStream::connect(&to).await else {
                    continue;
                };
                let rec = Arc::new(Mutex::new(Vec::new()));
                recs.lock().push(rec.clone());
                tokio::spawn(async move {
                    let (mut ir, mut iw) = inbound.into_split();
                    let (mut or, mut ow) = outbound.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 << 10];
                        while let Ok(n) = ir.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            rec.lock().extend_from_slice(&buf[..n]);
                            if ow.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = ow.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut or, &mut iw).await;
                        let _ = iw.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });

        let a = PeerNet::new(1, None, tokio::runtime::Handle::current());
        a.set_secret(secret);
        assert_eq!(
            call(&a, 2, &relay_addr, b"through the relay")
                .await
                .unwrap(),
            b"through the relay"
        );
        assert!(a.send_oneway(2, &relay_addr, K_RAFT, b"raft batch"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rafts.load(Relaxed) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the Raft batch never arrived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (calls_before, rafts_before) = (calls.load(Relaxed), rafts.load(Relaxed));
        assert_eq!((calls_before, rafts_before), (1, 1));
        // Node 1 leaves; node 2 drops the connection.
        a.shutdown();
        while current(&b, 1).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the session never ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The recorded session: HELLO, AUTH, the request, the Raft batch.
        let recorded: Vec<u8> = sessions
            .lock()
            .iter()
            .map(|r| r.lock().clone())
            .find(|bytes| {
                let mut rest = &bytes[..];
                let mut kinds = Vec::new();
                while let Ok(Some((f, used))) = PeerFrame::decode(rest, FRAME_MAX) {
                    kinds.push(f.kind);
                    rest = &rest[used..];
                }
                kinds.starts_with(&[K_HELLO, K_AUTH])
                    && kinds.contains(&K_RAFT)
                    && kinds.contains(&K_ADMIN)
            })
            .expect("a recorded session with a call and a Raft frame");

        let refused = b.auth_failures();
        let mut s = TcpStream::connect(&b_addr).await.unwrap();
        let _ = s.write_all(&recorded).await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        // Node 2's HELLO (a fresh nonce and its proof) and then nothing.
        let (first, used) = PeerFrame::decode(&got, FRAME_MAX)
            .ok()
            .flatten()
            .expect("node 2's HELLO");
        assert_eq!(first.kind, K_HELLO);
        assert!(
            PeerFrame::decode(&got[used..], FRAME_MAX)
                .ok()
                .flatten()
                .is_none(),
            "node 2 answered a replayed session: {got:?}"
        );
        assert_eq!(
            calls.load(Relaxed),
            calls_before,
            "a replayed call was served"
        );
        assert_eq!(
            rafts.load(Relaxed),
            rafts_before,
            "a replayed Raft frame was delivered"
        );
        assert_eq!(
            b.auth_failures(),
            refused + 1,
            "the replay was not counted as refused"
        );
        assert!(current(&b, 1).is_none());
    }

    /// A CA and, signed by it, a node certificate for 127.0.0.1 usable
    /// both ways; the peer TLS configurations made from them.
    #[allow(deprecated)]
    fn tls_configs() -> PeerTls {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        };
        use tokio_rustls::rustls;
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        leaf.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let roots = Arc::new(roots);
        let chain = vec![cert.der().clone()];
        let pk = || rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), pk())
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, pk())
            .unwrap();
        let pair = (Arc::new(server), Arc::new(client));
        PeerTls(Arc::new(move || pair.clone()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peers_talk_mutual_tls_and_refuse_plain_or_foreign_peers() {
        let ours = tls_configs();
        let (a, a_addr, _sa) = node_with(1, None, Some(ours.clone())).await;
        let (_b, b_addr, _sb) = node_with(2, None, Some(ours.clone())).await;
        // Requests bigger than a TLS record, both ways.
        let big = vec![7u8; 100_000];
        assert_eq!(
            call(&a, 2, &b_addr, &big).await.unwrap(),
            [&2u64.to_be_bytes()[..], &big].concat()
        );
        let before = PEER_AUTH_FAILURES.load(Relaxed);
        // A plain peer, and a TLS peer whose certificate another CA
        // signed: neither gets an answer, either way round.
        let (plain, plain_addr, _sp) = node_with(3, None, None).await;
        let (foreign, foreign_addr, _sf) = node_with(4, None, Some(tls_configs())).await;
        for _ in 0..3 {
            assert!(
                call_once(&plain, 2, &b_addr).await.is_err(),
                "plain peer let in"
            );
            assert!(
                call_once(&foreign, 2, &b_addr).await.is_err(),
                "foreign CA let in"
            );
            assert!(
                call_once(&a, 3, &plain_addr).await.is_err(),
                "talked TLS to a plain node"
            );
            assert!(
                call_once(&a, 4, &foreign_addr).await.is_err(),
                "trusted a foreign CA"
            );
        }
        assert!(PEER_AUTH_FAILURES.load(Relaxed) > before);
        // A raw HELLO on the TLS port gets nothing back.
        let mut s = TcpStream::connect(&b_addr).await.unwrap();
        s.write_all(&hello(1, 2, &[])).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut got)).await;
        assert!(
            PeerFrame::decode(&got, FRAME_MAX).ok().flatten().is_none(),
            "a plain HELLO was answered on a TLS peer port"
        );
        assert!(call(&a, 2, &b_addr, b"still").await.is_ok());
        let _ = a_addr;
    }

    /// Peer sockets back off to 1 s at most between resends, not the
    /// kernel's 120 s, and keep its 200 ms least timeout (where the kernel
    /// has the options; this machine's does).
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn peer_sockets_get_short_retransmission_timeouts() {
        use std::os::fd::AsRawFd;
        let get = |tcp: &TcpStream, opt: libc::c_int| {
            let mut v: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt into a c_int with its size.
            let r = unsafe {
                libc::getsockopt(
                    tcp.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    opt,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            (r == 0).then_some(v)
        };
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let Some(before) = get(&tcp, TCP_RTO_MAX_MS) else {
            eprintln!("kernel without TCP_RTO_MAX_MS: nothing to check");
            return;
        };
        assert_eq!(before, 120_000, "the kernel default");
        let min = get(&tcp, TCP_RTO_MIN_US);
        tune(&tcp);
        assert_eq!(get(&tcp, TCP_RTO_MAX_MS), Some(1000), "rto max ms");
        assert_eq!(get(&tcp, TCP_RTO_MIN_US), min, "rto min left alone");
        assert!(tcp.nodelay().unwrap());
    }

    /// A peer that completes the handshake and then never writes again
    /// (a stopped process, or a connection stuck in TCP retransmission
    /// backoff): the connection is closed and dialled again; one that
    /// merely has nothing to say stays up, kept alive by PINGs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_peer_connection_is_closed_and_redialled_an_idle_one_is_kept() {
        let (a, _a_addr, _sa) = node(1).await;
        a.set_silent_after(Duration::from_millis(300));
        let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mute_addr = mute.local_addr().unwrap().to_string();
        let (conn_tx, mut conn_rx) = mpsc::channel::<Duration>(16);
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = mute.accept().await else {
                    return;
                };
                let tx = conn_tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    // Node 1's HELLO, answered as node 9; then only reads
                    // (PINGs) until node 1 gives up on the connection.
                    let _ = read_hello(&mut s, &mut buf).await;
                    let _ = s.write_all(&hello(9, 1, &[])).await;
                    let t0 = tokio::time::Instant::now();
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = s.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = tx.send(t0.elapsed()).await;
                });
            }
        });
        // The first call dials; nothing ever answers it.
        let r = call_once(&a, 9, &mute_addr).await;
        assert!(r.is_err(), "a mute peer answered: {r:?}");
        let lived = tokio::time::timeout(Duration::from_secs(20), conn_rx.recv())
            .await
            .expect("node 1 never closed the silent connection")
            .expect("mute peer gone");
        assert!(
            lived >= Duration::from_millis(300),
            "closed after {lived:?}"
        );
        assert!(a.silent_closes.load(Relaxed) >= 1);
        // ... and dialled it again without being asked.
        tokio::time::timeout(Duration::from_secs(20), conn_rx.recv())
            .await
            .expect("the silent peer was not dialled again")
            .expect("mute peer gone");

        // Two real nodes with nothing to say: PINGs keep the connection.
        let (b, b_addr, _sb) = node(2).await;
        b.set_silent_after(Duration::from_millis(600));
        a.set_silent_after(Duration::from_millis(600));
        call(&a, 2, &b_addr, b"x").await.unwrap();
        let before = current(&a, 2);
        tokio::time::sleep(Duration::from_millis(3000)).await;
        // (Node 1 keeps closing its connections to the mute peer.)
        assert_eq!(current(&a, 2), before, "an idle connection was replaced");
        assert_eq!(b.silent_closes.load(Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crossing_dials_settle_on_one_canonical_connection_serving_both_ways() {
        let (a, a_addr, _sa) = node(1).await;
        let (b, b_addr, _sb) = node(2).await;
        // Both dial at once.
        let (ra, rb) = tokio::join!(call(&a, 2, &b_addr, b"x"), call(&b, 1, &a_addr, b"y"));
        assert_eq!(ra.unwrap(), [&2u64.to_be_bytes()[..], b"x"].concat());
        assert_eq!(rb.unwrap(), [&1u64.to_be_bytes()[..], b"y"].concat());
        // Settled: each side uses one connection, the one node 1 dialled.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (ca, cb) = (current(&a, 2), current(&b, 1));
            if ca.is_some_and(|c| c.1) && cb.is_some_and(|c| c.1) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not settled: {ca:?} {cb:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And it stays the one: many calls both ways, no new connection.
        let (sa, sb) = (current(&a, 2), current(&b, 1));
        for i in 0..200u32 {
            let body = i.to_be_bytes();
            let (x, y) = tokio::join!(
                a.call(
                    2,
                    &b_addr,
                    1,
                    K_ADMIN,
                    body.to_vec(),
                    Duration::from_secs(2)
                ),
                b.call(
                    1,
                    &a_addr,
                    1,
                    K_ADMIN,
                    body.to_vec(),
                    Duration::from_secs(2)
                )
            );
            assert_eq!(x.unwrap(), [&2u64.to_be_bytes()[..], &body].concat());
            assert_eq!(y.unwrap(), [&1u64.to_be_bytes()[..], &body].concat());
        }
        assert_eq!((current(&a, 2), current(&b, 1)), (sa, sb));
        a.shutdown();
        b.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_higher_id_can_open_the_connection_and_a_restarted_peer_is_redialled() {
        let (a, a_addr, _sa) = node(1).await;
        let (b, b_addr, sb) = node(2).await;
        // Only node 2 (the higher id) needs the connection: it dials, and
        // node 1 answers on it (its own calls go over the same one).
        assert!(call(&b, 1, &a_addr, b"hi").await.is_ok());
        assert_eq!(current(&b, 1).map(|c| c.1), Some(false));
        assert_eq!(current(&a, 2).map(|c| c.1), Some(false));
        assert!(
            call(&a, 2, "", b"back").await.is_ok(),
            "node 1 answers over the inbound connection"
        );
        // Node 2 goes away; node 1 notices and, once node 2 is back on
        // the same address, dials it.
        b.shutdown();
        let _ = sb.send(true);
        drop(b);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            current(&a, 2).is_none(),
            "node 1 still holds the dead connection"
        );
        let listener = loop {
            match TcpListener::bind(&b_addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let b2 = PeerNet::new(2, None, tokio::runtime::Handle::current());
        let handler: Handler = Arc::new(|_g, _k, body| Box::pin(async move { Some(body) }));
        let (_s2, s2_rx) = watch::channel(false);
        tokio::spawn(b2.clone().serve(listener, handler, s2_rx));
        // Node 1 learned node 2's address from an inbound connection only
        // (""), so give it the address as a real caller would.
        assert_eq!(call(&a, 2, &b_addr, b"again").await.unwrap(), b"again");
        assert_eq!(current(&a, 2).map(|c| c.1), Some(true));
        a.shutdown();
        b2.shutdown();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hello_for_another_node_or_garbage_gets_no_service() {
        let (_b, b_addr, _sb) = node(2).await;
        // Node 1 believes node 3 listens at node 2's address.
        let a = PeerNet::new(1, None, tokio::runtime::Handle::current());
        let r = a
            .call(
                3,
                &b_addr,
                1,
                K_ADMIN,
                b"x".to_vec(),
                Duration::from_millis(500),
            )
            .await;
        assert!(
            r.is_err(),
            "node 2 answered a request meant for node 3: {r:?}"
        );
        // Raw garbage, and a request before any HELLO: closed unanswered.
        for bytes in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), {
            let mut f = Vec::new();
            PeerFrame {
                group: 0,
                kind: K_ADMIN,
                payload: vec![0; 9],
            }
            .encode(&mut f);
            f
        }] {
            let mut s = TcpStream::connect(&b_addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .expect("closed within the HELLO timeout")
                .unwrap_or(0);
            assert_eq!(n, 0, "answered {:?}", &buf[..n]);
        }
        a.shutdown();
    }
}
