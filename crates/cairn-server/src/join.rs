//! Runs a batch of futures to completion on the current task, outputs in
//! input order: the first poll runs each one, in order, up to its first
//! wait (a pipeline's commands reach their groups in the client's order);
//! after that only the futures whose own wakers fired are polled again.
//!
//! A naive join polls every pending future on every wake-up: for a
//! forwarded batch of n commands finishing one group at a time that is
//! O(n²) polls, which showed up in profiles of the proxy path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;

/// What the child wakers share with the joining task.
#[derive(Default)]
struct Woken {
    /// Indices of children woken since the last poll (duplicates allowed).
    ready: Mutex<Vec<usize>>,
    /// The joining task's waker, as of its last poll.
    parent: Mutex<Option<Waker>>,
}

struct Child {
    idx: usize,
    woken: Arc<Woken>,
}

impl Wake for Child {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.ready.lock().push(self.idx);
        if let Some(w) = self.woken.parent.lock().as_ref() {
            w.wake_by_ref();
        }
    }
}

/// Polls every future until all are done; outputs in input order.
pub(crate) async fn join_all<F: Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let woken = Arc::new(Woken::default());
    let wakers: Vec<Waker> = (0..futs.len())
        .map(|idx| {
            Waker::from(Arc::new(Child {
                idx,
                woken: woken.clone(),
            }))
        })
        .collect();
    // Everything is polled the first time, in order.
    woken.ready.lock().extend(0..futs.len());
    let mut left = futs.len();
    std::future::poll_fn(|cx| {
        {
            let mut parent = woken.parent.lock();
            if !parent.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *parent = Some(cx.waker().clone());
            }
        }
        loop {
            let ready = std::mem::take(&mut *woken.ready.lock());
            if ready.is_empty() {
                break;
            }
            for i in ready {
                if outs[i].is_some() {
                    continue;
                }
                let mut ccx = Context::from_waker(&wakers[i]);
                if let Poll::Ready(v) = futs[i].as_mut().poll(&mut ccx) {
                    outs[i] = Some(v);
                    left -= 1;
                }
            }
        }
        if left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn outputs_come_in_input_order_whatever_order_they_finish_in() {
        let delays = [30u64, 0, 10, 20, 0, 5];
        let started = Arc::new(Mutex::new(Vec::new()));
        let outs = join_all(delays.iter().enumerate().map(|(i, &d)| {
            let started = started.clone();
            async move {
                started.lock().push(i);
                tokio::time::sleep(Duration::from_millis(d)).await;
                tokio::task::yield_now().await;
                i * 10
            }
        }))
        .await;
        assert_eq!(outs, vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(
            *started.lock(),
            vec![0, 1, 2, 3, 4, 5],
            "first polls in order"
        );
    }

    #[tokio::test]
    async fn only_woken_futures_are_polled_again() {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..50)
            .map(|_| tokio::sync::oneshot::channel::<u8>())
            .unzip();
        let handle = {
            let polls = polls.clone();
            tokio::spawn(async move {
                join_all(rxs.into_iter().map(|rx| {
                    let polls = polls.clone();
                    let mut rx = Box::pin(rx);
                    std::future::poll_fn(move |cx| {
                        polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        rx.as_mut().poll(cx)
                    })
                }))
                .await
            })
        };
        for (i, tx) in txs.into_iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let _ = tx.send(i as u8);
        }
        let outs = handle.await.unwrap();
        assert_eq!(outs.len(), 50);
        assert!(outs.iter().enumerate().all(|(i, v)| *v == Ok(i as u8)));
        // 50 first polls + about one per completion; a naive join needs
        // about 50 * 51 / 2.
        let n = polls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(n <= 150, "{n} polls for 50 futures");
    }
}
