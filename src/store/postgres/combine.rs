//! Requests that arrive at the same moment share a transaction: each waits in a queue, and
//! whoever gets one of a few transaction slots takes everything waiting (up to a size) and runs
//! it as one. Under load, thirty requests cost about one transaction's round trips and one WAL
//! flush; when idle, a request runs alone at once. The SQLite writer merges the same way.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, oneshot};

use crate::store::{StoreError, StoreResult};

type Waiting<T, R> = (T, oneshot::Sender<StoreResult<R>>);

/// Requests of one kind waiting for a transaction, and the slots to run one.
pub(super) struct Combiner<T, R> {
    waiting: std::sync::Mutex<Vec<Waiting<T, R>>>,
    slots: Arc<Semaphore>,
    /// How much a request weighs (e.g. its messages), and how much one transaction takes.
    weight: fn(&T) -> usize,
    per_transaction: usize,
}

impl<T: Send + 'static, R: Send + 'static> Combiner<T, R> {
    /// At most `slots` transactions in flight; each takes requests until they weigh
    /// `per_transaction` (at least one request).
    pub fn new(slots: usize, weight: fn(&T) -> usize, per_transaction: usize) -> Self {
        Combiner {
            waiting: std::sync::Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(slots)),
            weight,
            per_transaction,
        }
    }

    /// Takes waiting requests, oldest first, up to a transaction's weight.
    fn take(&self) -> Vec<Waiting<T, R>> {
        let mut waiting = self.waiting.lock().expect("combiner queue");
        let mut weight = 0;
        let n = waiting
            .iter()
            .take_while(|(item, _)| {
                let take = weight < self.per_transaction;
                weight += (self.weight)(item).max(1);
                take
            })
            .count();
        waiting.drain(..n).collect()
    }

    /// Runs `item` in a transaction shared with whatever else is waiting: `run` gets the
    /// requests in arrival order and returns one result per request, in the same order. The
    /// transaction runs in a task of its own, so a caller that goes away (a client hanging up)
    /// never cuts off the others' commit.
    pub async fn submit<F, Fut>(&self, item: T, run: F) -> StoreResult<R>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<StoreResult<R>>> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        self.waiting.lock().expect("combiner queue").push((item, reply));
        // Whoever gets a slot takes everything waiting, this request or not; a request taken by
        // another is answered by it.
        tokio::select! {
            biased;
            answered = &mut answer => return answered.map_err(|_| StoreError::Closed)?,
            slot = self.slots.clone().acquire_owned() => {
                let slot = slot.map_err(|_| StoreError::Closed)?;
                let group = self.take();
                if !group.is_empty() {
                    let (items, replies): (Vec<T>, Vec<_>) = group.into_iter().unzip();
                    let transaction = run(items);
                    tokio::spawn(async move {
                        let results = transaction.await;
                        drop(slot);
                        for (reply, result) in replies.into_iter().zip(results) {
                            // The caller may have gone away; the commit stands either way.
                            let _ = reply.send(result);
                        }
                    });
                }
            }
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }
}
