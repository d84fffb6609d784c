//! Peer transport: every node keeps one outbound TCP connection to each
//! peer and sends its requests for all groups over it; responses come
//! back on the same connection, matched by request id.
//!
//! Frames are [`PeerFrame`]s (length, version, group, kind, CRC-32C); a
//! payload is `request id u64 BE | body`. Responses set the kind's high
//! bit. Bounds: at most `INFLIGHT_BYTES` of requests in flight per peer
//! (callers wait for room), at most `HANDLERS_PER_CONN` requests being
//! served per inbound connection, frames over `FRAME_MAX` close the
//! connection. A connection that breaks fails every request waiting on it
//! and is re-dialled with exponential backoff (50 ms .. 2 s) and jitter.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::frame::PeerFrame;
use crate::host::BoxFuture;

pub const K_APPEND: u8 = 1;
pub const K_VOTE: u8 = 2;
pub const K_SNAPSHOT: u8 = 3;
pub const K_FORWARD: u8 = 4;
pub const K_ADMIN: u8 = 5;
pub const RESPONSE: u8 = 0x80;

/// Largest frame accepted: a log entry may carry a 512 MB value.
pub const FRAME_MAX: usize = 600 << 20;
const INFLIGHT_BYTES: usize = 64 << 20;
const HANDLERS_PER_CONN: usize = 512;
const QUEUE: usize = 4096;
const WRITE_COALESCE: usize = 256 << 10;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_GRACE: Duration = Duration::from_millis(150);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("peer {0} unreachable")]
    Unreachable(u64),
    #[error("connection to peer {0} lost before the reply")]
    Lost(u64),
    #[error("request to peer {0} timed out")]
    Timeout(u64),
}

/// Test hook: targets this node pretends it cannot reach (requests fail
/// as unreachable, inbound requests from them are dropped).
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

struct PeerClient {
    target: u64,
    addr: Mutex<String>,
    tx: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>,
    next: AtomicU64,
    connected: AtomicBool,
    budget: Arc<Semaphore>,
    stop: AtomicBool,
    /// Notified when a connection comes up.
    up: tokio::sync::Notify,
}

pub struct PeerNet {
    me: u64,
    /// Source address of outbound peer connections: the peer listener's
    /// IP when it is a specific one, so peers (and firewalls, and the
    /// fault lab's loopback proxy) see connections come from the address
    /// this node is known by. `None`: the kernel chooses.
    source: Option<std::net::IpAddr>,
    peers: Mutex<HashMap<u64, Arc<PeerClient>>>,
    pub faults: Arc<Faults>,
    rt: tokio::runtime::Handle,
}

impl PeerNet {
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
        })
    }

    fn client(&self, target: u64, addr: &str) -> Arc<PeerClient> {
        let mut peers = self.peers.lock();
        if let Some(c) = peers.get(&target) {
            let mut a = c.addr.lock();
            if *a != addr {
                *a = addr.to_string();
            }
            return c.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let c = Arc::new(PeerClient {
            target,
            addr: Mutex::new(addr.to_string()),
            tx,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            budget: Arc::new(Semaphore::new(INFLIGHT_BYTES)),
            stop: AtomicBool::new(false),
            up: tokio::sync::Notify::new(),
        });
        self.rt
            .spawn(dial_loop(c.clone(), rx, self.me, self.source));
        peers.insert(target, c.clone());
        c
    }

    /// Sends one request and waits for its response body.
    pub async fn call(
        &self,
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
        let c = self.client(target, addr);
        if !c.connected.load(Relaxed) {
            // A connection being (re)dialled gets a moment before the
            // request is given up as unreachable.
            let wait = c.up.notified();
            if !c.connected.load(Relaxed) {
                let _ = tokio::time::timeout(CONNECT_GRACE.min(timeout), wait).await;
            }
            if !c.connected.load(Relaxed) {
                return Err(NetError::Unreachable(target));
            }
        }
        let permits = body.len().clamp(1, INFLIGHT_BYTES) as u32;
        let fut = async {
            let _permit = c
                .budget
                .clone()
                .acquire_many_owned(permits)
                .await
                .map_err(|_| NetError::Lost(target))?;
            let id = c.next.fetch_add(1, Relaxed);
            let mut payload = Vec::with_capacity(8 + body.len());
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&body);
            drop(body);
            let mut frame = Vec::with_capacity(payload.len() + 16);
            PeerFrame {
                group,
                kind,
                payload,
            }
            .encode(&mut frame);
            let (otx, orx) = oneshot::channel();
            c.pending.lock().insert(id, otx);
            let guard = PendingGuard { c: &c, id };
            if c.tx.send(frame).await.is_err() {
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

    pub fn shutdown(&self) {
        for c in self.peers.lock().values() {
            c.stop.store(true, Relaxed);
        }
    }
}

/// Removes a request's pending slot however the call ends.
struct PendingGuard<'a> {
    c: &'a PeerClient,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.c.pending.lock().remove(&self.id);
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

async fn dial_loop(
    c: Arc<PeerClient>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    me: u64,
    source: Option<std::net::IpAddr>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut seed = me.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c.target;
    while !c.stop.load(Relaxed) {
        let addr = c.addr.lock().clone();
        let conn = tokio::time::timeout(Duration::from_secs(1), connect(&addr, source)).await;
        if let Ok(Ok(stream)) = conn {
            let _ = stream.set_nodelay(true);
            // Requests queued while disconnected were already failed.
            while rx.try_recv().is_ok() {}
            c.connected.store(true, Relaxed);
            c.up.notify_waiters();
            backoff = BACKOFF_MIN;
            run_client_conn(&c, stream, &mut rx).await;
            c.connected.store(false, Relaxed);
            // Fail everything that was waiting on this connection.
            c.pending.lock().clear();
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

/// Appends queued frames to `buf` (up to `WRITE_COALESCE` bytes) so that
/// one `send` carries the messages of many groups. Before giving up on an
/// empty queue it yields once: the tasks woken together with this one (the
/// groups whose appends one fsync completed) get to queue their messages
/// first. Measured on the 3-node SET benchmark: fewer sends per write.
async fn coalesce(buf: &mut Vec<u8>, rx: &mut mpsc::Receiver<Vec<u8>>) {
    let mut yielded = false;
    while buf.len() < WRITE_COALESCE {
        match rx.try_recv() {
            Ok(f) => buf.extend_from_slice(&f),
            Err(_) if !yielded => {
                yielded = true;
                tokio::task::yield_now().await;
            }
            Err(_) => break,
        }
    }
}

async fn run_client_conn(c: &PeerClient, stream: TcpStream, rx: &mut mpsc::Receiver<Vec<u8>>) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = async {
        let mut buf = Vec::new();
        while let Some(f) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(&f);
            coalesce(&mut buf, rx).await;
            if wr.write_all(&buf).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        loop {
            loop {
                match PeerFrame::decode(&buf, FRAME_MAX) {
                    Ok(Some((f, used))) => {
                        buf.drain(..used);
                        if f.kind & RESPONSE == 0 || f.payload.len() < 8 {
                            tracing::warn!(peer = c.target, "unexpected frame from peer");
                            return;
                        }
                        let id = u64::from_be_bytes(f.payload[..8].try_into().unwrap_or([0; 8]));
                        let tx = c.pending.lock().remove(&id);
                        if let Some(tx) = tx {
                            let mut p = f.payload;
                            p.drain(..8);
                            let _ = tx.send(p);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(peer = c.target, error = %e, "bad frame from peer");
                        return;
                    }
                }
            }
            if c.stop.load(Relaxed) {
                return;
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
}

/// Serves inbound peer requests: `handle(from_conn, group, kind, body)`
/// returns the response body.
pub type Handler = Arc<dyn Fn(u16, u8, Vec<u8>) -> BoxFuture<Option<Vec<u8>>> + Send + Sync>;

pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut stop2 = stop.clone();
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop2.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_conn(stream, peer, handler.clone(), stop.clone()));
    }
}

async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let writer = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(f) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(&f);
            coalesce(&mut buf, &mut rx).await;
            if wr.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let handlers = Arc::new(Semaphore::new(HANDLERS_PER_CONN));
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    'conn: loop {
        loop {
            match PeerFrame::decode(&buf, FRAME_MAX) {
                Ok(Some((f, used))) => {
                    buf.drain(..used);
                    if f.kind & RESPONSE != 0 || f.payload.len() < 8 {
                        tracing::warn!(%peer, "unexpected frame on a peer connection");
                        break 'conn;
                    }
                    let Ok(permit) = handlers.clone().acquire_owned().await else {
                        break 'conn;
                    };
                    let (group, kind) = (f.group, f.kind);
                    let mut payload = f.payload;
                    let id: Vec<u8> = payload.drain(..8).collect();
                    let h = handler.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let resp = h(group, kind, payload).await;
                        drop(permit);
                        if let Some(resp) = resp {
                            let mut p = id;
                            p.extend_from_slice(&resp);
                            let mut out = Vec::with_capacity(p.len() + 16);
                            PeerFrame {
                                group,
                                kind: kind | RESPONSE,
                                payload: p,
                            }
                            .encode(&mut out);
                            let _ = tx.send(out).await;
                        }
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "bad frame from peer; closing");
                    break 'conn;
                }
            }
        }
        let r = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = stop.changed() => break 'conn,
        };
        match r {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(tx);
    writer.abort();
}
