//! Forwarding client commands to a group's leader on another node, in
//! batches per peer and in order.
//!
//! A node that receives a command for a group it does not lead proxies it
//! (plain Redis clients never see -MOVED). Commands bound for one peer
//! queue on that peer's *forwarder*; its task takes everything queued at
//! once (up to `BATCH_ITEMS` commands or `BATCH_BYTES`) and sends it as one
//! `K_FORWARD` request, so N commands forwarded together cost one frame,
//! one response and one handler on the leader, not N.
//!
//! Order: commands a connection pipelines to one group must reach the
//! leader's Raft loop in the order the client sent them. Each stage hands
//! work on in order — the connection polls its commands in order
//! (`join_all`), each queues on the forwarder at once, the forwarder
//! writes batches in order on the one connection per peer, and the
//! receiving node starts each request's handler before it reads the next
//! frame ([`start`]); the leader's handler hands a batch's commands to
//! their groups in order on its first poll. Only a leader change or a lost
//! connection in between can reorder (as with any Redis failover).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::host::Forward;
use crate::net::{NetError, PeerNet, K_FORWARD};
use crate::node::ClusterError;

/// Commands per batch at most (the receiver refuses larger batches).
pub(crate) const BATCH_ITEMS: usize = 4096;
/// A batch is closed once its arguments reach this size.
const BATCH_BYTES: usize = 4 << 20;
/// Commands queued per peer at most; callers wait for room beyond it.
const QUEUE: usize = 16384;

/// One command waiting to be forwarded, and where its reply goes.
struct Item {
    req: Forward,
    addr: String,
    tx: oneshot::Sender<Result<Vec<u8>, ClusterError>>,
}

/// One reply of a batch, in the batch's order.
#[derive(Serialize, Deserialize)]
struct Reply(#[serde(with = "serde_bytes")] Vec<u8>);

/// The queue of commands bound for one peer.
pub(crate) struct Forwarder {
    tx: mpsc::Sender<Item>,
}

impl Forwarder {
    /// A forwarder for peer `to`; its task runs on the current runtime
    /// until the forwarder is dropped.
    pub(crate) fn new(net: Arc<PeerNet>, to: u64, timeout: Duration) -> Forwarder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(net, to, rx, timeout));
        Forwarder { tx }
    }

    /// Forwards one command (peer address `addr`) and waits for its RESP3
    /// reply. The command is queued before the first wait.
    pub(crate) async fn call(&self, addr: &str, req: Forward) -> Result<Vec<u8>, ClusterError> {
        let (tx, rx) = oneshot::channel();
        let item = Item {
            req,
            addr: addr.to_string(),
            tx,
        };
        if self.tx.send(item).await.is_err() {
            return Err(ClusterError::Shutdown);
        }
        rx.await.unwrap_or(Err(ClusterError::Shutdown))
    }
}

async fn run(net: Arc<PeerNet>, to: u64, mut rx: mpsc::Receiver<Item>, timeout: Duration) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.req.argv.len();
        let mut items = vec![first];
        while items.len() < BATCH_ITEMS && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(it) => {
                    bytes += it.req.argv.len();
                    items.push(it);
                }
                Err(_) => break,
            }
        }
        let addr = items.last().map(|i| i.addr.clone()).unwrap_or_default();
        let mut reqs = Vec::with_capacity(items.len());
        let mut txs = Vec::with_capacity(items.len());
        for it in items {
            reqs.push(it.req);
            txs.push(it.tx);
        }
        let body = match postcard::to_allocvec(&reqs) {
            Ok(b) => b,
            Err(e) => {
                fail_all(txs, || ClusterError::Unknown(e.to_string()));
                continue;
            }
        };
        drop(reqs);
        let net = net.clone();
        // The request is written (queued on the peer's connection) now, in
        // batch order; its reply is awaited on a task of its own.
        start(async move {
            let r = net.call(to, &addr, 0, K_FORWARD, body, timeout).await;
            deliver(r, txs);
        })
        .await;
    }
}

fn fail_all(
    txs: Vec<oneshot::Sender<Result<Vec<u8>, ClusterError>>>,
    err: impl Fn() -> ClusterError,
) {
    for tx in txs {
        let _ = tx.send(Err(err()));
    }
}

fn deliver(r: Result<Vec<u8>, NetError>, txs: Vec<oneshot::Sender<Result<Vec<u8>, ClusterError>>>) {
    let body = match r {
        Ok(b) => b,
        // Never sent: the caller may look for the leader again and retry.
        Err(NetError::Unreachable(_)) => return fail_all(txs, || ClusterError::NotLeader(None)),
        Err(e) => {
            let e = e.to_string();
            return fail_all(txs, || ClusterError::Unknown(e.clone()));
        }
    };
    match postcard::from_bytes::<Vec<Reply>>(&body) {
        Ok(replies) if replies.len() == txs.len() => {
            for (tx, r) in txs.into_iter().zip(replies) {
                let _ = tx.send(Ok(r.0));
            }
        }
        _ => fail_all(txs, || {
            ClusterError::Unknown("malformed reply to a forwarded batch".into())
        }),
    }
}

/// Decodes a forwarded batch (`None`: malformed or over `BATCH_ITEMS`).
pub(crate) fn decode_batch(body: &[u8]) -> Option<Vec<Forward>> {
    let reqs: Vec<Forward> = postcard::from_bytes(body).ok()?;
    (!reqs.is_empty() && reqs.len() <= BATCH_ITEMS).then_some(reqs)
}

/// Encodes a batch's replies, in the batch's order.
pub(crate) fn encode_replies(replies: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    let replies: Vec<Reply> = replies.into_iter().map(Reply).collect();
    postcard::to_allocvec(&replies).ok()
}

/// Polls `fut` once on the calling task — whatever it does before its
/// first wait happens now, in the caller's order — then, if it is not
/// done, finishes it on a task of its own. (A plain `tokio::spawn` runs
/// tasks in no guaranteed order: the last one spawned often runs first.)
pub(crate) async fn start<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut fut = Box::pin(fut);
    let done = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
    if !done {
        tokio::spawn(fut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_replies_round_trip_and_bounds_hold() {
        let reqs: Vec<Forward> = (0..3)
            .map(|g| Forward {
                group: g,
                argv: vec![g as u8; 3],
            })
            .collect();
        let body = postcard::to_allocvec(&reqs).unwrap();
        let back = decode_batch(&body).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[2].group, 2);
        assert_eq!(back[2].argv, vec![2, 2, 2]);
        // Empty and oversized batches are refused.
        assert!(decode_batch(&postcard::to_allocvec(&Vec::<Forward>::new()).unwrap()).is_none());
        let many: Vec<Forward> = (0..=BATCH_ITEMS)
            .map(|_| Forward {
                group: 0,
                argv: vec![],
            })
            .collect();
        assert!(decode_batch(&postcard::to_allocvec(&many).unwrap()).is_none());
        assert!(decode_batch(&[0xff, 0xff, 0xff]).is_none());
        // Replies: a count that does not match the batch fails every caller.
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        deliver(
            Ok(encode_replies(vec![b"+A\r\n".to_vec()]).unwrap()),
            vec![tx1, tx2],
        );
        assert!(matches!(
            rx1.blocking_recv(),
            Ok(Err(ClusterError::Unknown(_)))
        ));
        assert!(matches!(
            rx2.blocking_recv(),
            Ok(Err(ClusterError::Unknown(_)))
        ));
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        let replies = vec![b"+A\r\n".to_vec(), b":2\r\n".to_vec()];
        deliver(Ok(encode_replies(replies).unwrap()), vec![tx1, tx2]);
        assert_eq!(rx1.blocking_recv().unwrap().unwrap(), b"+A\r\n");
        assert_eq!(rx2.blocking_recv().unwrap().unwrap(), b":2\r\n");
        // Unreachable: never sent, so the callers may retry elsewhere.
        let (tx1, rx1) = oneshot::channel();
        deliver(Err(NetError::Unreachable(2)), vec![tx1]);
        assert!(matches!(
            rx1.blocking_recv(),
            Ok(Err(ClusterError::NotLeader(None)))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_runs_each_future_up_to_its_first_wait_in_call_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..200 {
            let tx = tx.clone();
            start(async move {
                let _ = tx.send(i);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            })
            .await;
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        assert_eq!(got, (0..200).collect::<Vec<_>>());
    }
}
