//! The writer thread a run reaches the store through: it owns the connection, applies
//! operations in order and commits them in batches, so no store call runs on the async
//! runtime.

use std::path::Path;

use super::{is_postgres, Processed, Scope, StateError, StateStore};
use crate::clock::Clock;

/// How many queued writes one transaction may hold before it is committed.
pub const BATCH_MAX: usize = 512;
/// How long a queued write may wait for its commit.
pub const BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(200);

/// A call's work on the store; it returns how to answer its caller once the call's batch is
/// committed (`Err`: the commit failed), for a durable call, or at once otherwise.
type Job = Box<dyn FnOnce(&mut StateStore) -> Answer + Send>;
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// How long a durable call may wait for other queued writes to join its commit.
pub const GROUP_COMMIT_AGE: std::time::Duration = std::time::Duration::from_millis(5);

enum Op {
    /// Run a closure inside the open batch; `durable` commits the batch (and it) first.
    Call { job: Job, durable: bool },
    /// Record one final outcome (batched).
    Record(Processed),
    /// Commit what is batched, then answer.
    Flush(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The store as the run shares it: one writer thread owns the SQLite connection, fed by a
/// channel, so no SQLite call ever runs on an async runtime thread. Writes are batched into
/// transactions of at most [`BATCH_MAX`] operations or [`BATCH_AGE`], whichever comes first:
/// a run killed meanwhile loses at most the batch not yet committed, and the next run handles
/// those logs again. A fact that must be on disk before something else happens (a create about
/// to be sent to Jira) goes through [`StateHandle::call_durable`], which commits first.
#[derive(Debug, Clone)]
pub struct StateHandle {
    tx: std::sync::mpsc::Sender<Op>,
    /// The writer thread, joined by [`StateHandle::close`].
    thread: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Transactions committed so far (for tests and the benchmark).
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub writable: bool,
    /// A store other runners share (PostgreSQL): their tickets and leases are seen.
    pub shared: bool,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Call { .. } => "Call",
            Op::Record(_) => "Record",
            Op::Flush(_) => "Flush",
        })
    }
}

thread_local! {
    /// Set on the writer thread: the one thread allowed to touch the connection of a handle.
    static WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a state writer thread.
pub fn on_writer_thread() -> bool {
    WRITER_THREAD.with(|w| w.get())
}

impl StateHandle {
    /// Open the store on its own writer thread: locked and writable, or read-only (a dry run;
    /// `Ok(None)` when there is no store yet); it reads the time from `clock`.
    pub async fn open(
        path: &Path,
        scope: Scope,
        writable: bool,
        clock: Clock,
    ) -> anyhow::Result<Option<Self>> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        let path = path.to_path_buf();
        let path_shown = path.clone();
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = commits.clone();
        let thread = std::thread::Builder::new()
            .name("triage-state".into())
            .spawn(move || {
                WRITER_THREAD.with(|w| w.set(true));
                let opened = if writable {
                    StateStore::open_with_clock(&path, scope, clock).map(Some)
                } else {
                    StateStore::open_read_only_with_clock(&path, scope, clock)
                };
                match opened {
                    Ok(Some(store)) => {
                        let _ = ready_tx.send(Ok(true));
                        writer_loop(store, rx, writable, &counted);
                    }
                    Ok(None) => {
                        let _ = ready_tx.send(Ok(false));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        let opened = ready_rx
            .await
            .map_err(|_| anyhow::anyhow!("the state writer thread stopped while opening"))?;
        let handle = StateHandle {
            tx,
            thread: std::sync::Arc::new(std::sync::Mutex::new(Some(thread))),
            commits,
            writable,
            shared: is_postgres(&path_shown),
        };
        match opened {
            Ok(true) => Ok(Some(handle)),
            Ok(false) => {
                handle.join().await;
                Ok(None)
            }
            Err(e) => {
                handle.join().await;
                Err(e.into())
            }
        }
    }

    /// Run `f` on the store, in order after everything sent before it, inside the open batch.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateStore) -> Result<T, StateError> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.call_inner(f, false).await
    }

    /// Like [`StateHandle::call`], and the batch with `f`'s writes is committed before this
    /// returns: a fact that must survive a kill before the next step is taken.
    pub async fn call_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateStore) -> Result<T, StateError> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.call_inner(f, true).await
    }

    /// Like [`StateHandle::call`], but `f` is sent now and its answer awaited later (or never:
    /// dropping the receiver is fine): to overlap a read with something slower.
    pub fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateStore) -> Result<T, StateError> + Send + 'static,
    ) -> Asked<T> {
        Asked(self.send_call(f, false))
    }

    async fn call_inner<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateStore) -> Result<T, StateError> + Send + 'static,
        durable: bool,
    ) -> anyhow::Result<T> {
        Asked(self.send_call(f, durable)).answer().await
    }

    fn send_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateStore) -> Result<T, StateError> + Send + 'static,
        durable: bool,
    ) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<T>>> {
        let (tx, rx) = tokio::sync::oneshot::channel::<anyhow::Result<T>>();
        let job: Job = Box::new(move |store| {
            let result = f(store);
            Box::new(move |committed: Result<(), String>| {
                let answer = match (result, committed) {
                    (Err(e), _) => Err(e.into()),
                    (Ok(_), Err(e)) => Err(anyhow::anyhow!("state store: commit failed: {e}")),
                    (Ok(v), Ok(())) => Ok(v),
                };
                let _ = tx.send(answer);
            })
        });
        self.tx
            .send(Op::Call { job, durable })
            .map_err(|_| anyhow::anyhow!("the state writer has stopped"))?;
        Ok(rx)
    }

    /// Like [`StateHandle::call_durable`] (in order after everything sent before it, committed
    /// as soon as the writer is free), without waiting for it: for a fact the caller's next
    /// step does not depend on. Whatever is sent after it is committed with it or later. A
    /// failure is logged.
    pub fn send_durable(
        &self,
        f: impl FnOnce(&mut StateStore) -> Result<(), StateError> + Send + 'static,
    ) {
        let job: Job = Box::new(move |store| {
            if let Err(e) = f(store) {
                tracing::warn!("state store: {e}");
            }
            // A failed commit is logged by the writer.
            Box::new(|_| {})
        });
        if self.tx.send(Op::Call { job, durable: true }).is_err() {
            tracing::warn!("state store: the state writer has stopped");
        }
    }

    /// Queue one final outcome; it is committed with its batch.
    pub fn record(&self, processed: Processed) -> anyhow::Result<()> {
        self.tx
            .send(Op::Record(processed))
            .map_err(|_| anyhow::anyhow!("the state writer has stopped"))
    }

    /// Commit everything queued so far.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Op::Flush(tx))
            .map_err(|_| anyhow::anyhow!("the state writer has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the state writer stopped before committing"))?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Transactions the writer has committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Commit what is queued, stop the writer and wait for it: the store is closed and its run
    /// lock released when this returns (other clones of the handle can no longer write).
    pub async fn close(&self) -> anyhow::Result<()> {
        let flushed = if self.thread.lock().map(|t| t.is_some()).unwrap_or(false) {
            self.flush().await
        } else {
            Ok(())
        };
        self.join().await;
        flushed
    }

    /// Stop the writer after what is queued, and wait until it has closed the store.
    async fn join(&self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            // Closing: the writer ends when it reads this, after what was queued before it.
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let stop: Job = Box::new(move |store| {
                store.stop = true;
                Box::new(move |_| {
                    let _ = done_tx.send(());
                })
            });
            let _ = self.tx.send(Op::Call {
                job: stop,
                durable: true,
            });
            let _ = done_rx.await;
            // The thread has left its loop (or is about to): joining it waits only for the
            // store's drop (closing the connection, freeing the lock file).
            let (joined_tx, joined_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = thread.join();
                let _ = joined_tx.send(());
            });
            let _ = joined_rx.await;
        }
    }
}

/// A state call sent, its answer to come ([`StateHandle::ask`]).
#[derive(Debug)]
pub struct Asked<T>(anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<T>>>);

impl<T> Asked<T> {
    /// Wait for the answer.
    pub async fn answer(self) -> anyhow::Result<T> {
        self.0?
            .await
            .map_err(|_| anyhow::anyhow!("the state writer stopped before answering"))?
    }
}

/// The writer thread: apply operations in order, commit by count and by age.
///
/// Group commit: a durable call is answered only once its batch is committed, and that commit
/// waits for nothing but the operations already queued behind it (at most [`BATCH_MAX`] of them,
/// or [`GROUP_COMMIT_AGE`]): the `begin` writes of many creates sent at once share one commit
/// instead of queueing one commit each.
fn writer_loop(
    mut store: StateStore,
    rx: std::sync::mpsc::Receiver<Op>,
    writable: bool,
    commits: &std::sync::atomic::AtomicU64,
) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let shared = store.is_shared();
    let mut batch = Batch::default();
    // An operation read while deciding whether a group commit may wait for it.
    let mut peeked: Option<Op> = None;
    loop {
        let op = match peeked.take() {
            Some(op) => op,
            None => match batch.opened {
                Some(since) => match rx.recv_timeout(BATCH_AGE.saturating_sub(since.elapsed())) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        batch.commit(&mut store, commits);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                },
            },
        };
        if writable && batch.opened.is_none() {
            match store.begin() {
                Ok(()) => batch.opened = Some(std::time::Instant::now()),
                Err(e) => batch.failed(e.to_string()),
            }
        }
        let mut commit_now = false;
        match op {
            Op::Record(p) => {
                if writable {
                    batch.records.push(p);
                    batch.pending += 1;
                }
            }
            Op::Call { job, durable } => {
                // A shared store commits each call at once, never in a group: a transaction
                // held open across calls would hold row locks other runners wait for, and two
                // runners taking them in different orders deadlock.
                let durable = durable || shared;
                commit_now = shared;
                // Closures read what was recorded before them.
                batch.write_records(&mut store);
                let answer = job(&mut store);
                batch.pending += 1;
                if durable {
                    batch.awaiting.push(answer);
                    batch
                        .awaiting_since
                        .get_or_insert_with(std::time::Instant::now);
                } else {
                    answer(Ok(()));
                }
            }
            Op::Flush(answer) => {
                batch.commit(&mut store, commits);
                let _ = answer.send(match batch.last_error.take() {
                    None => Ok(()),
                    Some(e) => Err(e),
                });
            }
        }
        if batch.pending >= BATCH_MAX || store.stop {
            commit_now = true;
        } else if !batch.awaiting.is_empty() && !commit_now {
            // Group commit: the writes already queued join it; an empty queue (or a durable
            // call that has waited long enough) commits now.
            let waited = batch
                .awaiting_since
                .is_some_and(|t| t.elapsed() >= GROUP_COMMIT_AGE);
            if waited {
                commit_now = true;
            } else {
                match rx.try_recv() {
                    Ok(op) => peeked = Some(op),
                    Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => commit_now = true,
                }
            }
        }
        if commit_now {
            batch.commit(&mut store, commits);
        }
        if store.stop {
            break;
        }
    }
    batch.commit(&mut store, commits);
}

/// What the writer holds between two commits.
#[derive(Default)]
struct Batch {
    /// Operations applied (or queued) since the last commit.
    pending: usize,
    /// When the open transaction began (`None`: none is open).
    opened: Option<std::time::Instant>,
    /// Processed logs not yet written: written together, before the next call or commit.
    records: Vec<Processed>,
    /// Durable calls applied and not yet committed: answered by the next commit, and since when.
    awaiting: Vec<Answer>,
    awaiting_since: Option<std::time::Instant>,
    /// The first failure since the last flush, for whoever asks next.
    last_error: Option<String>,
}

impl Batch {
    /// A failure: logged, and kept for the next flush.
    fn failed(&mut self, error: String) {
        tracing::warn!("{error}");
        self.last_error.get_or_insert(error);
    }

    /// Write the queued processed logs into the open transaction.
    fn write_records(&mut self, store: &mut StateStore) {
        if !self.records.is_empty() {
            if let Err(e) = store.record(&self.records) {
                self.failed(e.to_string());
            }
            self.records.clear();
        }
    }

    /// Commit what is open; a failure is reported to the durable calls it held, to whoever
    /// asks next (a flush), and logged.
    fn commit(&mut self, store: &mut StateStore, commits: &std::sync::atomic::AtomicU64) {
        self.write_records(store);
        let mut committed = Ok(());
        if self.opened.take().is_some() {
            match store.commit() {
                Ok(()) => {
                    commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed(e.to_string());
                    committed = Err(e.to_string());
                    store.rollback();
                }
            }
        }
        for answer in self.awaiting.drain(..) {
            answer(committed.clone());
        }
        self.awaiting_since = None;
        self.pending = 0;
    }
}
