//! One multiplexed, pipelined connection to one node.
//!
//! A single task owns the socket and selects over three things: bytes to
//! read, bytes to write, and new requests. Replies are paired with
//! requests by order (RESP answers a connection's commands in order).
//!
//! The one thing not to get wrong: which requests may have reached the
//! server when the connection fails. Each queued request remembers the
//! byte offset where its encoding ends; a request whose last byte was
//! written is *maybe sent* (its outcome is unknown), the others were
//! *never sent* and may be retried anywhere. A server cannot act on a
//! request it has not received whole.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cairn_proto::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

/// Bounds and timeouts of one connection.
#[derive(Clone, Debug)]
pub(crate) struct ConnLimits {
    pub connect_timeout: Duration,
    /// Requests written (or being written) and awaiting their replies.
    pub inflight_max: usize,
    /// Requests handed to the connection but not yet taken by its task.
    pub queue_max: usize,
    /// Unsent bytes the task buffers before it stops taking requests.
    pub write_buffer_max: usize,
    /// Largest announced length in a reply (bulk bytes, element count).
    pub reply_len_max: usize,
}

/// Why a request on a connection got no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConnError {
    /// The request never left this process whole: nothing was applied.
    NotSent(String),
    /// The request was written, or may have been, and no reply came.
    MaybeSent(String),
}

type ReplySlot = oneshot::Sender<Result<Frame, ConnError>>;

struct Request {
    bytes: Bytes,
    reply: ReplySlot,
}

/// A handle to a connection's task; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    tx: mpsc::Sender<Request>,
}

impl Conn {
    /// Connects to `addr`, sends the `handshake` requests pipelined and
    /// waits for their replies (returned in order) before any other
    /// request may use the connection.
    pub(crate) async fn connect(
        addr: &str,
        limits: &ConnLimits,
        handshake: &[Bytes],
    ) -> Result<(Conn, Vec<Frame>), String> {
        let started = Instant::now();
        let mut stream = match timeout(limits.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(format!(
                    "connect timed out after {:?}",
                    limits.connect_timeout
                ))
            }
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Ok(Ok(s)) => s,
        };
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set_nodelay: {e}"))?;
        let left = limits.connect_timeout.saturating_sub(started.elapsed());
        let replies = timeout(
            left,
            handshake_io(&mut stream, handshake, limits.reply_len_max),
        )
        .await
        .map_err(|_| "handshake timed out".to_string())??;
        let (tx, rx) = mpsc::channel(limits.queue_max.max(1));
        tokio::spawn(run(stream, rx, limits.clone()));
        Ok((Conn { tx }, replies))
    }

    /// Whether the connection's task has ended (socket failed or closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends `requests` pipelined, in order, and waits for all their
    /// replies, at most until `deadline`. A request that could not be
    /// queued ends the batch: it and the rest are *not sent*.
    pub(crate) async fn call_many(
        &self,
        requests: Vec<Bytes>,
        deadline: Instant,
    ) -> Vec<Result<Frame, ConnError>> {
        let mut pending = Vec::with_capacity(requests.len());
        let mut out = Vec::with_capacity(requests.len());
        let total = requests.len();
        for bytes in requests {
            let (reply, rx) = oneshot::channel();
            let sent =
                tokio::time::timeout_at(deadline, self.tx.send(Request { bytes, reply })).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
            pending.push(rx);
        }
        for rx in pending {
            out.push(match tokio::time::timeout_at(deadline, rx).await {
                Err(_) => Err(ConnError::MaybeSent(
                    "timed out waiting for the reply".into(),
                )),
                Ok(Err(_)) => Err(ConnError::MaybeSent("connection task ended".into())),
                Ok(Ok(r)) => r,
            });
        }
        while out.len() < total {
            out.push(Err(ConnError::NotSent(
                "connection closed or queue full".into(),
            )));
        }
        out
    }

    /// Sends one request and waits for its reply, at most until `deadline`.
    pub(crate) async fn call(&self, bytes: Bytes, deadline: Instant) -> Result<Frame, ConnError> {
        let (reply, rx) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.tx.send(Request { bytes, reply })).await {
            Err(_) => {
                return Err(ConnError::NotSent(
                    "connection queue full until the deadline".into(),
                ))
            }
            Ok(Err(_)) => return Err(ConnError::NotSent("connection closed".into())),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(ConnError::MaybeSent(
                "timed out waiting for the reply".into(),
            )),
            Ok(Err(_)) => Err(ConnError::MaybeSent("connection task ended".into())),
            Ok(Ok(r)) => r,
        }
    }
}

async fn handshake_io(
    stream: &mut TcpStream,
    handshake: &[Bytes],
    len_max: usize,
) -> Result<Vec<Frame>, String> {
    let mut out = Vec::new();
    for h in handshake {
        out.extend_from_slice(h);
    }
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("handshake write: {e}"))?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut replies = Vec::with_capacity(handshake.len());
    while replies.len() < handshake.len() {
        match Frame::decode(&buf, len_max) {
            Err(e) => return Err(format!("handshake reply: {e}")),
            Ok(Some((f, used))) => {
                buf.advance(used);
                replies.push(f);
            }
            Ok(None) => {
                buf.reserve(16 * 1024);
                let n = stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| format!("handshake read: {e}"))?;
                if n == 0 {
                    return Err("closed during the handshake".into());
                }
            }
        }
    }
    if !buf.is_empty() {
        return Err("unexpected bytes after the handshake replies".into());
    }
    Ok(replies)
}

/// The state of one connection's task.
struct Pipe {
    limits: ConnLimits,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes written to the socket since the start.
    written: u64,
    /// Bytes queued for writing since the start.
    queued: u64,
    /// Requests awaiting replies, with the offset where each one ends.
    pending: VecDeque<(u64, ReplySlot)>,
}

impl Pipe {
    fn new(limits: ConnLimits) -> Pipe {
        Pipe {
            limits,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: Vec::with_capacity(16 * 1024),
            wpos: 0,
            written: 0,
            queued: 0,
            pending: VecDeque::new(),
        }
    }

    fn may_take(&self) -> bool {
        self.pending.len() < self.limits.inflight_max
            && self.wbuf.len() < self.limits.write_buffer_max
    }

    fn take(&mut self, r: Request) {
        self.wbuf.extend_from_slice(&r.bytes);
        self.queued += r.bytes.len() as u64;
        self.pending.push_back((self.queued, r.reply));
    }

    fn wrote(&mut self, n: usize) {
        self.wpos += n;
        self.written += n as u64;
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
    }

    /// Hands every complete reply in the read buffer to its request.
    fn deliver(&mut self) -> Result<(), String> {
        loop {
            match Frame::decode(&self.rbuf, self.limits.reply_len_max) {
                Err(e) => return Err(format!("bad reply: {e}")),
                Ok(None) => return Ok(()),
                Ok(Some((frame, used))) => {
                    self.rbuf.advance(used);
                    let Some((_, slot)) = self.pending.pop_front() else {
                        return Err("a reply without a request".into());
                    };
                    // The caller may have given up (timeout): drop the reply.
                    let _ = slot.send(Ok(frame));
                }
            }
        }
    }

    /// Fails every request still waiting, each as sent or not.
    fn fail_all(&mut self, why: &str) {
        for (end, slot) in self.pending.drain(..) {
            let e = if end <= self.written {
                ConnError::MaybeSent(why.to_string())
            } else {
                ConnError::NotSent(why.to_string())
            };
            let _ = slot.send(Err(e));
        }
    }
}

async fn run(mut stream: TcpStream, mut rx: mpsc::Receiver<Request>, limits: ConnLimits) {
    let mut p = Pipe::new(limits);
    let mut open = true;
    let (mut rd, mut wr) = stream.split();
    let why = loop {
        if !open && p.pending.is_empty() {
            // Every handle is gone and nothing is owed: close quietly.
            return;
        }
        if p.rbuf.capacity() - p.rbuf.len() < 4096 {
            p.rbuf.reserve(16 * 1024);
        }
        let writing = p.wpos < p.wbuf.len();
        let taking = open && p.may_take();
        tokio::select! {
            r = rd.read_buf(&mut p.rbuf) => match r {
                Ok(0) => break "connection closed by the server".to_string(),
                Err(e) => break format!("read: {e}"),
                Ok(_) => {
                    if let Err(e) = p.deliver() {
                        break e;
                    }
                }
            },
            r = wr.write(&p.wbuf[p.wpos..]), if writing => match r {
                Ok(0) => break "write returned zero".to_string(),
                Err(e) => break format!("write: {e}"),
                Ok(n) => p.wrote(n),
            },
            req = rx.recv(), if taking => match req {
                None => open = false,
                Some(r) => {
                    p.take(r);
                    // Batch whatever else is queued into the same write.
                    while p.may_take() {
                        match rx.try_recv() {
                            Ok(r) => p.take(r),
                            Err(_) => break,
                        }
                    }
                }
            },
        }
    };
    p.fail_all(&why);
    // Requests still queued were never taken: never sent.
    rx.close();
    while let Ok(r) = rx.try_recv() {
        let _ = r.reply.send(Err(ConnError::NotSent(why.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn limits() -> ConnLimits {
        ConnLimits {
            connect_timeout: Duration::from_secs(2),
            inflight_max: 4,
            queue_max: 4,
            write_buffer_max: 1 << 16,
            reply_len_max: 1 << 20,
        }
    }

    fn ping() -> Bytes {
        Bytes::from_static(b"*1\r\n$4\r\nPING\r\n")
    }

    async fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        (l, a)
    }

    #[tokio::test]
    async fn replies_pair_with_requests_in_order_across_split_reads() {
        let (l, addr) = listener().await;
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let mut got = 0;
            while got < ping().len() {
                got += s.read(&mut buf).await.unwrap();
            }
            s.write_all(b"+HELLO\r\n").await.unwrap();
            // Wait for three requests, then answer them a byte at a time.
            let mut got = 0;
            while got < 3 * ping().len() {
                got += s.read(&mut buf).await.unwrap();
            }
            for b in b":1\r\n$3\r\ntwo\r\n:3\r\n" {
                s.write_all(&[*b]).await.unwrap();
            }
            let _ = s.read(&mut buf).await;
        });
        let (c, hs) = Conn::connect(&addr, &limits(), &[ping()]).await.unwrap();
        assert_eq!(hs, vec![Frame::Simple(b"HELLO".to_vec())]);
        let d = Instant::now() + Duration::from_secs(5);
        let (a, b, e) = tokio::join!(c.call(ping(), d), c.call(ping(), d), c.call(ping(), d));
        // join! sends them in order, so the replies come back in order.
        assert_eq!(a.unwrap(), Frame::Integer(1));
        assert_eq!(b.unwrap(), Frame::Bulk(b"two".to_vec()));
        assert_eq!(e.unwrap(), Frame::Integer(3));
    }

    #[tokio::test]
    async fn a_dropped_connection_fails_written_requests_as_maybe_sent() {
        let (l, addr) = listener().await;
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 64];
            let mut got = 0;
            while got < ping().len() {
                got += s.read(&mut buf).await.unwrap();
            }
            // Read the request, then close without a reply.
        });
        let (c, _) = Conn::connect(&addr, &limits(), &[]).await.unwrap();
        let r = c
            .call(ping(), Instant::now() + Duration::from_secs(5))
            .await;
        assert!(matches!(r, Err(ConnError::MaybeSent(_))), "{r:?}");
        // The task has ended: later requests are refused unsent.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.is_closed() && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let r = c
            .call(ping(), Instant::now() + Duration::from_secs(1))
            .await;
        assert!(matches!(r, Err(ConnError::NotSent(_))), "{r:?}");
    }

    #[test]
    fn only_requests_written_whole_count_as_sent() {
        let mut p = Pipe::new(limits());
        let mut rxs = Vec::new();
        for _ in 0..3 {
            let (reply, rx) = oneshot::channel();
            p.take(Request {
                bytes: ping(),
                reply,
            });
            rxs.push(rx);
        }
        // The first request and half of the second reached the socket.
        p.wrote(ping().len() + 3);
        p.fail_all("gone");
        let got: Vec<_> = rxs.into_iter().map(|mut r| r.try_recv().unwrap()).collect();
        assert!(matches!(got[0], Err(ConnError::MaybeSent(_))));
        assert!(matches!(got[1], Err(ConnError::NotSent(_))));
        assert!(matches!(got[2], Err(ConnError::NotSent(_))));
    }

    #[test]
    fn the_task_stops_taking_requests_at_its_bounds() {
        let mut p = Pipe::new(limits());
        for _ in 0..4 {
            assert!(p.may_take());
            let (reply, _rx) = oneshot::channel();
            p.take(Request {
                bytes: ping(),
                reply,
            });
        }
        assert!(!p.may_take(), "inflight_max is 4");
    }
}
