//! Requests that arrive at the same moment share a transaction: each waits in a queue, and when a
//! transaction may start it takes everything waiting (up to a size) and runs it as one. Under
//! load, thirty requests cost about one transaction's round trips and one WAL flush; when idle, a
//! request runs alone at once. The SQLite writer merges the same way.
//!
//! While one transaction is in flight, the next starts beside it only once [`SIDE_BY_SIDE`] is
//! waiting; otherwise what arrives waits for the one in flight to finish and goes in the next.
//! Under many small requests (single messages, single delivered attempts) that makes one large
//! group at a time rather than several small ones side by side: measured under the load
//! benchmark's end-to-end phase, about sixteen ingest requests a transaction instead of six, and
//! half the statements and commits per message. Under bulk (requests of a hundred messages, a
//! backlog being drained), transactions go side by side, up to the slots, on as many of
//! PostgreSQL's cores: one at a time, bulk ingest and draining ran 40 % slower.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// The weight waiting (messages, attempts) for which another transaction starts beside those in
/// flight: more than gathers while one transaction runs under a steady load of small requests
/// (the end-to-end benchmark's 32 connections gather about sixteen), reached at once by bulk.
pub(super) const SIDE_BY_SIDE: usize = 64;

type Waiting<T, R> = (T, oneshot::Sender<StoreResult<R>>);

/// Runs one transaction: the requests in arrival order in, one result per request out, in the
/// same order.
type Run<T, R> = Box<dyn Fn(Vec<T>) -> BoxFuture<'static, Vec<StoreResult<R>>> + Send + Sync>;

/// Requests of one kind waiting for a transaction, and how transactions are started.
pub(super) struct Combiner<T, R>(Arc<Inner<T, R>>);

struct Inner<T, R> {
    state: Mutex<State<T, R>>,
    run: Run<T, R>,
    /// Transactions in flight at most.
    slots: usize,
    /// How much a request weighs (e.g. its messages), and how much one transaction takes.
    weight: fn(&T) -> usize,
    per_transaction: usize,
}

struct State<T, R> {
    waiting: Vec<Waiting<T, R>>,
    /// The weight of `waiting`.
    weight: usize,
    in_flight: usize,
}

impl<T: Send + 'static, R: Send + 'static> Combiner<T, R> {
    /// At most `slots` transactions in flight; each takes requests until they weigh
    /// `per_transaction` (at least one request), and `run` stores them.
    pub fn new<F, Fut>(slots: usize, weight: fn(&T) -> usize, per_transaction: usize, run: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<StoreResult<R>>> + Send + 'static,
    {
        Combiner(Arc::new(Inner {
            state: Mutex::new(State { waiting: Vec::new(), weight: 0, in_flight: 0 }),
            run: Box::new(move |items| Box::pin(run(items))),
            slots,
            weight,
            per_transaction,
        }))
    }

    /// Stores `item` in a transaction shared with whatever else is waiting. The transaction runs
    /// in a task of its own, so a caller that goes away (a client hanging up) never cuts off the
    /// others' commit.
    pub async fn submit(&self, item: T) -> StoreResult<R> {
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.0.state.lock().expect("combiner state");
            state.weight += (self.0.weight)(&item).max(1);
            state.waiting.push((item, reply));
        }
        self.0.start();
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl<T: Send + 'static, R: Send + 'static> Inner<T, R> {
    /// Starts the transactions that may start now: the first whenever anything waits, another
    /// beside those in flight only for [`SIDE_BY_SIDE`], none past the slots.
    fn start(self: &Arc<Self>) {
        let mut groups = Vec::new();
        {
            let mut state = self.state.lock().expect("combiner state");
            while !state.waiting.is_empty()
                && state.in_flight < self.slots
                && (state.in_flight == 0 || state.weight >= SIDE_BY_SIDE)
            {
                groups.push(self.take(&mut state));
                state.in_flight += 1;
            }
        }
        // Spawned with the state unlocked: a runtime shutting down drops a task as it is spawned,
        // and its `Finished` counts it out (and starts the next) at once.
        for group in groups {
            let (items, replies): (Vec<T>, Vec<_>) = group.into_iter().unzip();
            let transaction = (self.run)(items);
            // Counted out when the task ends, however it ends (a panic included), and then the
            // next transaction may start.
            let done = Finished(self.clone());
            tokio::spawn(async move {
                let results = transaction.await;
                drop(done);
                for (reply, result) in replies.into_iter().zip(results) {
                    // The caller may have gone away; the commit stands either way.
                    let _ = reply.send(result);
                }
            });
        }
    }

    /// Takes waiting requests, oldest first, up to a transaction's weight.
    fn take(&self, state: &mut State<T, R>) -> Vec<Waiting<T, R>> {
        let mut weight = 0;
        let n = state
            .waiting
            .iter()
            .take_while(|(item, _)| {
                let take = weight < self.per_transaction;
                if take {
                    weight += (self.weight)(item).max(1);
                }
                take
            })
            .count();
        state.weight -= weight;
        state.waiting.drain(..n).collect()
    }
}

/// A transaction in flight; dropped when it has finished.
struct Finished<T: Send + 'static, R: Send + 'static>(Arc<Inner<T, R>>);

impl<T: Send + 'static, R: Send + 'static> Drop for Finished<T, R> {
    fn drop(&mut self) {
        self.0.state.lock().expect("combiner state").in_flight -= 1;
        self.0.start();
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;

    use futures::poll;
    use tokio::sync::{Semaphore, mpsc};

    use super::*;

    /// A combiner whose transactions report what they took and finish one per permit of `gate`;
    /// a request weighs its value.
    fn gated(taken: mpsc::UnboundedSender<Vec<usize>>, gate: Arc<Semaphore>) -> Combiner<usize, usize> {
        Combiner::new(
            4,
            |n: &usize| *n,
            500,
            move |items: Vec<usize>| {
                let (taken, gate) = (taken.clone(), gate.clone());
                async move {
                    taken.send(items.clone()).expect("the test listens");
                    gate.acquire().await.expect("the gate stays open").forget();
                    items.into_iter().map(Ok).collect()
                }
            },
        )
    }

    fn in_flight(combiner: &Combiner<usize, usize>) -> (usize, usize) {
        let state = combiner.0.state.lock().unwrap();
        (state.in_flight, state.waiting.len())
    }

    #[tokio::test]
    async fn small_requests_wait_for_the_transaction_in_flight_and_a_bulk_starts_beside_it() {
        let (sender, mut taken) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let combiner = gated(sender, gate.clone());

        // Alone: it starts at once.
        let mut first = pin!(combiner.submit(1));
        assert!(poll!(first.as_mut()).is_pending());
        assert_eq!(taken.recv().await, Some(vec![1]));
        // Small ones arriving meanwhile wait for it, whatever slots are free.
        let mut small = [pin!(combiner.submit(2)), pin!(combiner.submit(3)), pin!(combiner.submit(4))];
        for request in &mut small {
            assert!(poll!(request.as_mut()).is_pending());
        }
        assert_eq!(in_flight(&combiner), (1, 3));
        // When it finishes, they go together in the next.
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(taken.recv().await, Some(vec![2, 3, 4]));
        assert_eq!(in_flight(&combiner), (1, 0));

        // A bulk starts beside the one in flight.
        let mut bulk = pin!(combiner.submit(SIDE_BY_SIDE));
        assert!(poll!(bulk.as_mut()).is_pending());
        assert_eq!(taken.recv().await, Some(vec![SIDE_BY_SIDE]));
        assert_eq!(in_flight(&combiner), (2, 0));

        gate.add_permits(2);
        assert_eq!(bulk.await.unwrap(), SIDE_BY_SIDE);
        for (request, expected) in small.into_iter().zip([2, 3, 4]) {
            assert_eq!(request.await.unwrap(), expected);
        }
        assert_eq!(in_flight(&combiner), (0, 0));
    }

    #[tokio::test]
    async fn no_more_than_the_slots_run_side_by_side() {
        let (sender, mut taken) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let combiner = gated(sender, gate.clone());
        // Each a full transaction's weight: one transaction each, four at most at once.
        let mut requests: Vec<_> = (0..6).map(|_| Box::pin(combiner.submit(500))).collect();
        for request in &mut requests {
            assert!(poll!(request.as_mut()).is_pending());
        }
        for _ in 0..4 {
            assert_eq!(taken.recv().await, Some(vec![500]));
        }
        assert_eq!(in_flight(&combiner), (4, 2));
        gate.add_permits(6);
        for request in requests {
            assert_eq!(request.await.unwrap(), 500);
        }
        assert_eq!(in_flight(&combiner), (0, 0));
    }
}
