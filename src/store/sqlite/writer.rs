//! Group commit. SQLite admits one writer at a time and a durable commit costs a disk sync, so
//! every write goes to one writer task, which runs whatever is waiting in a single transaction,
//! syncs once, and only then answers each caller. Under load hundreds of requests share a sync;
//! when idle, a write commits alone at once.
//!
//! Three kinds of work share a commit. Generic jobs each run in their own savepoint, so one failing
//! job undoes only itself. Ingest requests, and the results of delivered attempts (the bulk of the
//! delivery worker's writes), are each merged into a handful of multi-row statements (see
//! [`super::intake`] and [`super::claims::record_delivered_many`]): per-statement overhead, not the
//! disk, is what limits a busy writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tracing::{debug, error};

use super::claims::record_delivered_many;
use super::intake::ingest_many;
use crate::clock::SharedClock;
use crate::store::queue::{HandOver, HandoffSlot};
use crate::store::{AttemptRecord, Handoff, IngestBatch, IngestOutcome, Recorded, StoreError, StoreResult};

/// The writer's time: read once per transaction from the clock, and strictly increasing from one
/// transaction to the next (by a millisecond when the clock has not moved), so that everything
/// committed later carries a later time. Receipt times, window closes and granularity changes all
/// come from here, which is what keeps a message from landing in a window already closed.
#[derive(Clone)]
pub(super) struct BatchClock(Arc<AtomicI64>);

impl BatchClock {
    /// The current transaction's time; meaningful inside a job.
    pub fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0.load(Ordering::Acquire)).single().unwrap_or_default()
    }

    fn advance(&self, clock: &SharedClock) -> DateTime<Utc> {
        // Only the writer thread advances it, so load-then-store does not race.
        let next = clock.now().timestamp_millis().max(self.0.load(Ordering::Acquire).saturating_add(1));
        self.0.store(next, Ordering::Release);
        Utc.timestamp_millis_opt(next).single().unwrap_or_default()
    }
}

/// How many waiting items one transaction takes at most. Large enough that a burst shares a sync,
/// small enough that one transaction never holds the write lock for long.
const MAX_WORK_PER_COMMIT: usize = 512;

/// Something for the writer to do.
pub(super) enum Work {
    Job(Box<dyn WriteJob>),
    Ingest(IngestBatch, oneshot::Sender<StoreResult<IngestOutcome>>),
    Delivered(AttemptRecord, oneshot::Sender<StoreResult<Recorded>>),
}

/// The handle to the writer task.
pub(super) struct Writer {
    /// `None` once closed.
    sender: std::sync::RwLock<Option<mpsc::Sender<Work>>>,
    /// Fires when the writer has stopped; awaited on close, so the last commit lands before the
    /// process exits.
    stopped: Mutex<Option<oneshot::Receiver<()>>>,
    /// Set, with the cause, if the writer thread died: every write would fail from then on.
    death: watch::Receiver<Option<String>>,
    clock: BatchClock,
}

impl Writer {
    /// Starts the writer on a thread of its own. Between its statements the writer waits for
    /// SQLite's worker thread; on the shared runtime it would then queue behind every HTTP request
    /// before running again, and that queueing, not SQLite, would bound ingest.
    pub fn start(
        conn: SqliteConnection,
        clock: SharedClock,
        handoff: HandoffSlot,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel(4096);
        let (stopped_tx, stopped_rx) = oneshot::channel();
        let batch_clock = BatchClock(Arc::new(AtomicI64::new(i64::MIN)));
        batch_clock.advance(&clock);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let loop_clock = batch_clock.clone();
        let (death_tx, death) = watch::channel(None);
        std::thread::Builder::new().name("chatbundle-writer".into()).spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| {
                runtime.block_on(writer_loop(conn, rx, clock, loop_clock, handoff))
            });
            if let Err(panic) = std::panic::catch_unwind(run) {
                let cause = crate::supervise::panic_message(&*panic);
                error!(%cause, "the store's writer thread died");
                let _ = death_tx.send(Some(format!("the store's writer thread died: {cause}")));
            }
            let _ = stopped_tx.send(());
        })?;
        Ok(Writer {
            sender: std::sync::RwLock::new(Some(tx)),
            stopped: Mutex::new(Some(stopped_rx)),
            death,
            clock: batch_clock,
        })
    }

    /// Resolves with the cause if the writer thread dies; never if it stops because it was closed.
    pub fn died(&self) -> BoxFuture<'static, String> {
        let mut death = self.death.clone();
        Box::pin(async move {
            let cause = death.wait_for(Option::is_some).await.map(|cause| cause.clone());
            match cause {
                Ok(cause) => cause.unwrap_or_default(),
                // Closed in order: nothing will ever be reported.
                Err(_) => std::future::pending().await,
            }
        })
    }

    /// The transaction time, for jobs to read while they run.
    pub fn clock(&self) -> BatchClock {
        self.clock.clone()
    }

    async fn send(&self, work: Work) -> StoreResult<()> {
        let sender = self.sender.read().expect("writer lock").clone().ok_or(StoreError::Closed)?;
        sender.send(work).await.map_err(|_| StoreError::Closed)
    }

    /// Runs `f` inside the next group commit and returns its result once that commit is durable.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Work::Job(Box::new(ClosureJob { f: Some(f), reply: Some(reply), result: None }))).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores an ingest request in the next group commit; returns once it is durable.
    pub async fn ingest(&self, batch: IngestBatch) -> StoreResult<IngestOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Work::Ingest(batch, reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Records a delivered attempt in the next group commit; returns once it is durable.
    pub async fn delivered(&self, attempt: AttemptRecord) -> StoreResult<Recorded> {
        let (reply, answer) = oneshot::channel();
        self.send(Work::Delivered(attempt, reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the writer finish what is queued, then stops it.
    pub async fn close(&self) {
        self.sender.write().expect("writer lock").take();
        if let Some(stopped) = self.stopped.lock().await.take() {
            let _ = stopped.await;
        }
    }
}

/// A unit of work: run inside a savepoint, then told whether its commit landed.
pub(super) trait WriteJob: Send {
    /// Runs the job; `true` when it succeeded and its savepoint should be kept.
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool>;
    /// Answers the caller with the job's result, or with `failure` when the commit did not land.
    fn finish(self: Box<Self>, failure: Option<StoreError>);
}

struct ClosureJob<T, F> {
    f: Option<F>,
    reply: Option<oneshot::Sender<StoreResult<T>>>,
    result: Option<StoreResult<T>>,
}

impl<T, F> WriteJob for ClosureJob<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let f = self.f.take().expect("a job runs once");
            let result = f(conn).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(mut self: Box<Self>, failure: Option<StoreError>) {
        let result = match (self.result.take(), failure) {
            (Some(Err(e)), _) => Err(e),
            (_, Some(failure)) => Err(failure),
            (Some(ok), None) => ok,
            (None, None) => Err(StoreError::Closed),
        };
        if let Some(reply) = self.reply.take() {
            // The caller may have gone away (a client hung up); the data is committed either way.
            let _ = reply.send(result);
        }
    }
}

async fn writer_loop(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Work>,
    clock: SharedClock,
    batch_clock: BatchClock,
    handoff: HandoffSlot,
) {
    let mut work = Vec::with_capacity(MAX_WORK_PER_COMMIT);
    while queue.recv_many(&mut work, MAX_WORK_PER_COMMIT).await > 0 {
        let mut jobs = Vec::new();
        let mut ingests = Vec::new();
        let mut replies = Vec::new();
        let mut delivered = Vec::new();
        let mut delivered_replies = Vec::new();
        for item in work.drain(..) {
            match item {
                Work::Job(job) => jobs.push(job),
                Work::Ingest(batch, reply) => {
                    crate::fault::Fault::Writer.trip();
                    ingests.push(batch);
                    replies.push(reply);
                }
                Work::Delivered(attempt, reply) => {
                    delivered.push(attempt);
                    delivered_replies.push(reply);
                }
            }
        }
        let started = std::time::Instant::now();
        let now = batch_clock.advance(&clock);
        let handoff = handoff.get();
        let (committed, ingested, recorded) =
            wait_here(run_batch(&mut conn, &mut jobs, (&ingests, handoff), &delivered, now));
        debug!(
            jobs = jobs.len(),
            ingests = ingests.len(),
            delivered = delivered.len(),
            micros = started.elapsed().as_micros() as u64,
            "group commit"
        );
        let failure = committed.err();
        if let Some(e) = &failure {
            error!(error = %e, jobs = jobs.len(), ingests = ingests.len(), "group commit failed");
        }
        for job in jobs {
            job.finish(failure.clone());
        }
        // Deliveries leased for the worker go to it as soon as they are durable.
        let ingested = ingested.map(|(outcomes, handed)| {
            if let (Some(handed), None) = (handed, &failure) {
                handed.send();
            }
            outcomes
        });
        answer(replies, failure.clone(), ingested);
        answer(delivered_replies, failure, recorded);
    }
    if let Err(e) = conn.close().await {
        error!(error = %e, "closing the writer connection");
    }
    debug!("writer stopped");
}

/// Answers each merged caller with its result, or all of them with the failure.
fn answer<T>(
    replies: Vec<oneshot::Sender<StoreResult<T>>>,
    failure: Option<StoreError>,
    results: StoreResult<Vec<T>>,
) {
    match failure.map_or(results, Err) {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs one transaction. The first result is the commit's; the second is the ingest part's (with
/// the deliveries it leased for the worker, when `handoff` is given) and the third the delivered
/// attempts' (each merged part succeeds or fails as a whole, in a savepoint of its own).
async fn run_batch(
    conn: &mut SqliteConnection,
    jobs: &mut [Box<dyn WriteJob>],
    (ingests, handoff): (&[IngestBatch], Option<&Handoff>),
    delivered: &[AttemptRecord],
    now: DateTime<Utc>,
) -> (StoreResult<()>, StoreResult<(Vec<IngestOutcome>, Option<HandOver>)>, StoreResult<Vec<Recorded>>) {
    // Savepoints are taken only where they separate one unit of work from another. A unit alone
    // in its transaction that fails takes the transaction with it, and reports its own error.
    let alone = usize::from(!ingests.is_empty()) + usize::from(!delivered.is_empty()) + jobs.len() == 1;
    let mut ingested = Ok((Vec::new(), None));
    let mut recorded = Ok(Vec::new());
    let mut control = Control::default();
    let committed: StoreResult<()> = async {
        control.push("BEGIN IMMEDIATE");
        let mut failed = false;
        if !ingests.is_empty() {
            control.savepoint(conn, alone, "ingest").await?;
            ingested = ingest_many(conn, ingests, now, handoff).await;
            failed |= ingested.is_err();
            control.release(alone, "ingest", ingested.is_err());
        }
        if !delivered.is_empty() {
            control.savepoint(conn, alone, "delivered").await?;
            recorded = record_delivered_many(conn, delivered).await;
            failed |= recorded.is_err();
            control.release(alone, "delivered", recorded.is_err());
        }
        for job in jobs.iter_mut() {
            control.savepoint(conn, alone, "job").await?;
            let ok = job.run(conn).await;
            failed |= !ok;
            control.release(alone, "job", !ok);
        }
        control.push(if alone && failed { "ROLLBACK" } else { "COMMIT" });
        control.run(conn).await
    }
    .await;
    if committed.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    (committed, ingested, recorded)
}

/// The transaction-control statements (BEGIN, SAVEPOINT, RELEASE, ROLLBACK TO, COMMIT) due
/// before the next statement of work. Each call to SQLite is a round trip to its thread, so the
/// ones that follow each other (the release of one part and the savepoint of the next) go in one
/// call.
#[derive(Default)]
struct Control(String);

impl Control {
    fn push(&mut self, statement: &str) {
        if !self.0.is_empty() {
            self.0.push_str("; ");
        }
        self.0.push_str(statement);
    }

    /// Opens a part's savepoint (unless the part is alone) and runs what is due.
    async fn savepoint(&mut self, conn: &mut SqliteConnection, alone: bool, name: &str) -> StoreResult<()> {
        if !alone {
            self.push(&format!("SAVEPOINT {name}"));
        }
        self.run(conn).await
    }

    /// Ends a part's savepoint, undoing the part if it failed; run with what comes next.
    fn release(&mut self, alone: bool, name: &str, failed: bool) {
        if alone {
            return;
        }
        if failed {
            self.push(&format!("ROLLBACK TO {name}"));
        }
        self.push(&format!("RELEASE {name}"));
    }

    async fn run(&mut self, conn: &mut SqliteConnection) -> StoreResult<()> {
        if !self.0.is_empty() {
            let statements = std::mem::take(&mut self.0);
            // Prepared once and kept, like any statement: there are only a few such sequences.
            sqlx::query(sqlx::AssertSqlSafe(statements)).execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// How long the writer keeps the core between two of a transaction's statements before it sleeps.
const STAY_AWAKE: std::time::Duration = std::time::Duration::from_micros(200);

/// Runs a transaction to its end on the writer thread itself, staying awake between statements.
///
/// Every statement is a round trip to sqlx's SQLite thread. Awaited on the writer's runtime, each
/// answer wakes the writer through the runtime's I/O driver (an eventfd write, then `epoll_wait`
/// returning): about 50 µs a statement on this machine's VMs, far more than most statements take
/// in SQLite, and a transaction has twenty of them. Here the writer gives the core away
/// (`yield_now`) while it waits, so the answer finds it awake: about 20 µs a statement. Past
/// [`STAY_AWAKE`] (a long close step, a large insert) it sleeps until woken, as before. The
/// transaction's futures need nothing from the runtime's drivers (no timers, no sockets): only
/// sqlx's channels, which wake through the waker given here.
fn wait_here<F: std::future::Future>(transaction: F) -> F::Output {
    struct Wake {
        woken: std::sync::atomic::AtomicBool,
        thread: std::thread::Thread,
    }
    impl std::task::Wake for Wake {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, Ordering::Release);
            self.thread.unpark();
        }
    }
    let wake = Arc::new(Wake { woken: false.into(), thread: std::thread::current() });
    let waker = std::task::Waker::from(wake.clone());
    let mut context = std::task::Context::from_waker(&waker);
    let mut transaction = std::pin::pin!(transaction);
    loop {
        wake.woken.store(false, Ordering::Release);
        if let std::task::Poll::Ready(output) = transaction.as_mut().poll(&mut context) {
            return output;
        }
        let waiting = std::time::Instant::now();
        while !wake.woken.load(Ordering::Acquire) {
            if waiting.elapsed() < STAY_AWAKE {
                std::thread::yield_now();
            } else {
                // Returns at once if woken since the flag was read.
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// An answer from another thread reaches the transaction whether it comes while the writer is
    /// still awake or after it has gone to sleep (past `STAY_AWAKE`), and several in a row.
    #[test]
    fn a_transaction_gets_answers_that_come_soon_and_late() {
        for delay in [Duration::ZERO, STAY_AWAKE * 10] {
            let answers: Vec<u32> = wait_here(async move {
                let mut answers = Vec::new();
                for n in 0..3 {
                    let (reply, answer) = oneshot::channel();
                    std::thread::spawn(move || {
                        // The other side of the round trip takes its time, as SQLite's thread may.
                        std::thread::sleep(delay);
                        let _ = reply.send(n);
                    });
                    answers.push(answer.await.expect("answered"));
                }
                answers
            });
            assert_eq!(answers, vec![0, 1, 2], "delay {delay:?}");
        }
    }
}
