//! The state store: what a run must remember for the next one, in one SQLite file, or in a
//! PostgreSQL database that runners on several hosts share (`pg`, docs/scale.md).
//!
//! In: the path (`$XDG_STATE_HOME/triage/state.db`, or `--state PATH`) or a `postgres://` URL.
//! Out: a `StateStore` (one interface over both backends) holding the run lock, or
//! `StateError::Locked` naming the process that holds it.
//!
//! It keeps:
//! - a checkpoint per source (site + query): the time up to which every log is final;
//! - the ids of logs already processed near that boundary, so an overlapping window skips them;
//! - fingerprint → ticket key, written the moment a ticket is created;
//! - per ticket, when it was last commented and what has recurred since (the comment cooldown);
//! - logs that failed, with the number of runs that tried them, to retry first next time;
//! - what the analyzer said about each fingerprint (a cache with a time to live);
//! - a row per run (start, end, counts, exit code), and one per finished run of each job;
//! - the template miner's learned templates, families and merges (`grouping`), shared by every
//!   job on the store, so a problem keeps its fingerprint from run to run.
//!
//! A run reaches the store only through a [`StateHandle`]: one writer thread that owns the
//! connection, applies operations in order and commits them in batches (WAL journal), so a run
//! killed at any point leaves the store as it was after its last commit, and no SQLite call
//! runs on the async runtime. A store written by an older schema is migrated in place
//! (`MIGRATIONS`), never rejected. One run at a time: an exclusive lock on `<db>.lock` held for
//! the store's lifetime; the kernel drops it when a process dies, so a killed run's lock is
//! simply taken over by the next one.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::grouping::{
    StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge, TemplateSnapshot,
};

/// JSON text of a list of tokens or flags (these cannot fail to serialize).
fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// Schema migrations, applied in order; `user_version` counts how many have run.
/// Never edit a released step: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the first layout.
    "CREATE TABLE IF NOT EXISTS checkpoints (source TEXT PRIMARY KEY, until_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS seen (log_id TEXT PRIMARY KEY, ts_ms INTEGER);
     CREATE TABLE IF NOT EXISTS tickets (fingerprint TEXT PRIMARY KEY, key TEXT NOT NULL, created_ms INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS failed (log_id TEXT PRIMARY KEY, event TEXT NOT NULL, error TEXT, runs INTEGER NOT NULL DEFAULT 1);
     CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_ms INTEGER NOT NULL, ended_ms INTEGER,
                        exit_code INTEGER, summary TEXT);",
    // 2: the comment cooldown, and when a failed log first failed.
    "CREATE TABLE IF NOT EXISTS comments (ticket TEXT PRIMARY KEY, last_ms INTEGER, pending INTEGER NOT NULL DEFAULT 0,
                            first_ms INTEGER, last_seen_ms INTEGER, hosts TEXT NOT NULL DEFAULT '[]');
     ALTER TABLE failed ADD COLUMN first_failed_ms INTEGER;
     CREATE INDEX IF NOT EXISTS seen_ts ON seen (ts_ms);",
    // 3: creates begun and not known to have finished (a run killed while Jira was answering).
    "CREATE TABLE IF NOT EXISTS creating (fingerprint TEXT PRIMARY KEY, started_ms INTEGER NOT NULL);",
    // 4: one store serves several jobs: processed logs and retries belong to a source (API
    // URL and query), tickets and comments to a Jira (URL and project). Rows from before get
    // the empty scope, and the first run that opens the store adopts them (`adopt_unscoped`).
    "CREATE TABLE IF NOT EXISTS seen4 (source TEXT NOT NULL, log_id TEXT NOT NULL, ts_ms INTEGER, PRIMARY KEY (source, log_id));
     INSERT INTO seen4 SELECT '', log_id, ts_ms FROM seen;
     DROP TABLE seen;
     ALTER TABLE seen4 RENAME TO seen;
     CREATE INDEX IF NOT EXISTS seen_ts ON seen (ts_ms);
     CREATE TABLE IF NOT EXISTS failed4 (source TEXT NOT NULL, log_id TEXT NOT NULL, event TEXT NOT NULL, error TEXT,
                           runs INTEGER NOT NULL DEFAULT 1, first_failed_ms INTEGER, PRIMARY KEY (source, log_id));
     INSERT INTO failed4 SELECT '', log_id, event, error, runs, first_failed_ms FROM failed;
     DROP TABLE failed;
     ALTER TABLE failed4 RENAME TO failed;
     CREATE TABLE IF NOT EXISTS tickets4 (jira TEXT NOT NULL, fingerprint TEXT NOT NULL, key TEXT NOT NULL, created_ms INTEGER NOT NULL,
                            PRIMARY KEY (jira, fingerprint));
     INSERT INTO tickets4 SELECT '', fingerprint, key, created_ms FROM tickets;
     DROP TABLE tickets;
     ALTER TABLE tickets4 RENAME TO tickets;
     CREATE TABLE IF NOT EXISTS comments4 (jira TEXT NOT NULL, ticket TEXT NOT NULL, last_ms INTEGER, pending INTEGER NOT NULL DEFAULT 0,
                             first_ms INTEGER, last_seen_ms INTEGER, hosts TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (jira, ticket));
     INSERT INTO comments4 SELECT '', ticket, last_ms, pending, first_ms, last_seen_ms, hosts FROM comments;
     DROP TABLE comments;
     ALTER TABLE comments4 RENAME TO comments;
     CREATE TABLE IF NOT EXISTS creating4 (jira TEXT NOT NULL, fingerprint TEXT NOT NULL, started_ms INTEGER NOT NULL,
                             PRIMARY KEY (jira, fingerprint));
     INSERT INTO creating4 SELECT '', fingerprint, started_ms FROM creating;
     DROP TABLE creating;
     ALTER TABLE creating4 RENAME TO creating;",
    // 5: one row per finished run, per job, written when the run ends (`triage status`).
    "CREATE TABLE IF NOT EXISTS job_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, jira TEXT NOT NULL,
                            started_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL, exit_code INTEGER NOT NULL,
                            fetched INTEGER NOT NULL, processed INTEGER NOT NULL, created INTEGER NOT NULL,
                            existing INTEGER NOT NULL, commented INTEGER NOT NULL, duplicates INTEGER NOT NULL,
                            skipped INTEGER NOT NULL, failed INTEGER NOT NULL, summary TEXT NOT NULL);
     CREATE INDEX IF NOT EXISTS job_runs_by_job ON job_runs (source, jira, id);",
    // 6: the analysis cache: what the analyzer said about a fingerprint, so a problem whose
    // ticket is reopened or filed again is not analyzed again while the entry is fresh.
    "CREATE TABLE IF NOT EXISTS analyses (fingerprint TEXT NOT NULL, analyzer TEXT NOT NULL, analysis TEXT NOT NULL,
                            created_ms INTEGER NOT NULL, PRIMARY KEY (fingerprint, analyzer));",
    // 7: the template miner's store (see `grouping`): families, learned templates with the
    // fingerprint each was born with, and merges (an old fingerprint now meaning another).
    "CREATE TABLE IF NOT EXISTS template_families (id INTEGER PRIMARY KEY, service TEXT NOT NULL, tokens TEXT NOT NULL,
                                     variable TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS templates (fingerprint TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE, family INTEGER NOT NULL,
                             service TEXT NOT NULL, template TEXT NOT NULL, tokens TEXT NOT NULL,
                             count INTEGER NOT NULL, first_ms INTEGER, last_ms INTEGER, last_used INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS template_merges (fingerprint TEXT PRIMARY KEY, into_fingerprint TEXT NOT NULL, merged_ms INTEGER NOT NULL);",
    // 8: hashes of a ticket's summary and description as triage last wrote them: triage changes
    // them only while Jira still holds what it wrote (a person's edit stays).
    "CREATE TABLE IF NOT EXISTS written (jira TEXT NOT NULL, ticket TEXT NOT NULL, summary TEXT NOT NULL,
                           description TEXT NOT NULL, PRIMARY KEY (jira, ticket));",
    // 9: what each template's variables were seen to hold (`triage templates --show`).
    "ALTER TABLE templates ADD COLUMN vars TEXT NOT NULL DEFAULT '[]';",
];

/// A state store problem.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run holds the lock: exit 75.
    #[error("another triage run holds the state lock {}: {holder}; wait for it to finish, or use --state PATH / --no-state", .path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("state store {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state store {}: {source}", .path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A PostgreSQL store problem; `target` is the URL without its password.
    #[error("state store {target}: {message}")]
    Postgres { target: String, message: String },
}

/// A failed log waiting to be retried.
#[derive(Debug, Clone)]
pub struct FailedLog {
    pub id: String,
    /// The event as JSON (Datadog shape).
    pub event: Value,
    /// Runs that have tried it so far.
    pub runs: u32,
}

/// What recurred on a ticket since its last comment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommentState {
    pub last_comment: Option<DateTime<Utc>>,
    pub pending: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub hosts: Vec<String>,
}

/// A change to a ticket's comment state ([`StateStore::change_comment_state`]), applied in one
/// statement. The pending count is moved, never set: other runners on a shared store (and
/// other jobs on a shared file) add their logs to it at any moment, and a count written back
/// whole would drop what they added since it was read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommentChange {
    /// When the ticket was last commented on or brought up to date (set as given).
    pub last_comment: Option<DateTime<Utc>>,
    /// Added to the pending count: occurrences saved for the next comment (positive), or those
    /// a comment or an update just reported (negative). The count never goes below 0.
    pub pending: i64,
    /// The rest of what the next comment reports (set as given).
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub hosts: Vec<String>,
}

/// One processed log, as the store records it.
#[derive(Debug, Clone)]
pub struct Processed {
    pub id: String,
    pub timestamp: Option<DateTime<Utc>>,
    /// `Some(event)` when the log failed and should be retried.
    pub failed: Option<(Value, String)>,
    /// The ticket this log is one more occurrence of, not yet told to Jira: it is added to the
    /// ticket's pending count in the same transaction, so a killed run loses no count.
    pub recurrence: Option<String>,
}

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
    /// `Ok(None)` when there is no store yet).
    pub async fn open(path: &Path, scope: Scope, writable: bool) -> anyhow::Result<Option<Self>> {
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
                    StateStore::open(&path, scope).map(Some)
                } else {
                    StateStore::open_read_only(&path, scope)
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

/// Which job a store is opened for. One state file can serve several jobs (another query,
/// another Jira project, a test server): each sees only its own processed logs, retries,
/// tickets and comments, and holds its own run lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The log source (`Scope::datadog`); empty for a file, which keeps no processed ids and
    /// no retry list.
    pub source: String,
    /// The Jira (`Scope::jira`); empty without Jira.
    pub jira: String,
}

impl Scope {
    pub fn datadog(api_base: &str, query: &str) -> String {
        format!("datadog {} {}", api_base.trim_end_matches('/'), query)
    }

    pub fn jira(base_url: &str, project: &str) -> String {
        format!("{} {}", base_url.trim_end_matches('/'), project)
    }

    /// A short name for this job, for its lock file.
    fn lock_name(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\n{}", self.source, self.jira));
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub(crate) mod pg;
mod pg_tls;

/// Whether `--state` names a PostgreSQL database (`postgres://…` or `postgresql://…`) rather
/// than a SQLite file.
pub fn is_postgres(target: &Path) -> bool {
    target
        .to_str()
        .is_some_and(|t| t.starts_with("postgres://") || t.starts_with("postgresql://"))
}

/// `target` as it may be shown: a PostgreSQL URL without its password, a file path as it is.
pub fn display_target(target: &Path) -> String {
    match target.to_str() {
        Some(url) if is_postgres(target) => pg::redact_url(url),
        _ => target.display().to_string(),
    }
}

/// The answer to [`StateStore::try_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This run now holds the fingerprint's create lease: it may create (after looking again).
    Taken,
    /// Another live runner holds it: wait for the key it records.
    Held,
}

/// The tables `triage state export` writes and `import` reads, with their columns (the same
/// names on both backends). Run history ids are not imported: the store numbers them anew.
const EXPORT_TABLES: &[(&str, &[&str])] = &[
    ("checkpoints", &["source", "until_ms", "updated_ms"]),
    ("seen", &["source", "log_id", "ts_ms"]),
    (
        "failed",
        &[
            "source",
            "log_id",
            "event",
            "error",
            "runs",
            "first_failed_ms",
        ],
    ),
    ("tickets", &["jira", "fingerprint", "key", "created_ms"]),
    (
        "comments",
        &[
            "jira",
            "ticket",
            "last_ms",
            "pending",
            "first_ms",
            "last_seen_ms",
            "hosts",
        ],
    ),
    ("creating", &["jira", "fingerprint", "started_ms"]),
    ("written", &["jira", "ticket", "summary", "description"]),
    ("runs", &["started_ms", "ended_ms", "exit_code", "summary"]),
    (
        "job_runs",
        &[
            "source",
            "jira",
            "started_ms",
            "ended_ms",
            "exit_code",
            "fetched",
            "processed",
            "created",
            "existing",
            "commented",
            "duplicates",
            "skipped",
            "failed",
            "summary",
        ],
    ),
    (
        "analyses",
        &["fingerprint", "analyzer", "analysis", "created_ms"],
    ),
    (
        "template_families",
        &["id", "service", "tokens", "variable"],
    ),
    (
        "templates",
        &[
            "fingerprint",
            "id",
            "family",
            "service",
            "template",
            "tokens",
            "count",
            "first_ms",
            "last_ms",
            "last_used",
            "vars",
        ],
    ),
    (
        "template_merges",
        &["fingerprint", "into_fingerprint", "merged_ms"],
    ),
];

/// The first line of an export.
const EXPORT_HEADER: &str = "triage-state";

/// What `import` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Rows read from the input.
    pub read: u64,
    /// Rows the store did not have and now has (a row whose key is there already is kept).
    pub added: u64,
}

enum Backend {
    Sqlite(SqliteStore),
    Pg(Box<pg::PgStore>),
}

/// A state store, SQLite or PostgreSQL: the one interface the writer thread and the readers
/// use. Every method runs on the calling thread (the state writer's own std::thread during a
/// run: neither backend may be called from the async runtime).
pub struct StateStore {
    backend: Backend,
    /// Set by [`StateHandle::close`]: the writer thread ends after this operation.
    stop: bool,
    /// What this store (this run) added to tickets' pending counts, committed.
    counted: std::collections::HashMap<String, u64>,
    /// What it added in the open batch transaction: counted once it commits, dropped if it
    /// rolls back.
    counting: std::collections::HashMap<String, u64>,
    /// A batch transaction is open (`begin`).
    in_batch: bool,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("target", &self.target())
            .finish()
    }
}

macro_rules! delegate {
    () => {};
    ($(#[$m:meta])* fn $name:ident(&mut self $(, $arg:ident : $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        $(#[$m])* pub fn $name(&mut self $(, $arg: $ty)*) -> $ret {
            match &mut self.backend {
                Backend::Sqlite(s) => s.$name($($arg),*),
                Backend::Pg(p) => p.$name($($arg),*),
            }
        }
        delegate!($($rest)*);
    };
    ($(#[$m:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; $($rest:tt)*) => {
        $(#[$m])* pub fn $name(&self $(, $arg: $ty)*) -> $ret {
            match &self.backend {
                Backend::Sqlite(s) => s.$name($($arg),*),
                Backend::Pg(p) => p.$name($($arg),*),
            }
        }
        delegate!($($rest)*);
    };
}

impl StateStore {
    /// Open the store `target` names (a SQLite file, or a `postgres://` URL), take the job's
    /// run lock, create or migrate the schema.
    pub fn open(target: &Path, scope: Scope) -> Result<Self, StateError> {
        let backend = if is_postgres(target) {
            Backend::Pg(Box::new(pg::PgStore::open(
                target.to_str().unwrap_or_default(),
                scope,
                true,
            )?))
        } else {
            Backend::Sqlite(SqliteStore::open(target, scope)?)
        };
        Ok(StateStore {
            backend,
            stop: false,
            counted: Default::default(),
            counting: Default::default(),
            in_batch: false,
        })
    }

    /// Open for reading only, without the lock (a dry run looks, never writes).
    /// `Ok(None)` when there is no store yet (or one of an older layout).
    pub fn open_read_only(target: &Path, scope: Scope) -> Result<Option<Self>, StateError> {
        let backend = if is_postgres(target) {
            match pg::PgStore::open(target.to_str().unwrap_or_default(), scope, false) {
                Ok(p) if p.is_current()? => Backend::Pg(Box::new(p)),
                Ok(_) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            match SqliteStore::open_read_only(target, scope)? {
                Some(s) => Backend::Sqlite(s),
                None => return Ok(None),
            }
        };
        Ok(Some(StateStore {
            backend,
            stop: false,
            counted: Default::default(),
            counting: Default::default(),
            in_batch: false,
        }))
    }

    /// The store as it may be shown (a URL without its password).
    pub fn target(&self) -> String {
        match &self.backend {
            Backend::Sqlite(s) => s.path.display().to_string(),
            Backend::Pg(p) => p.target().to_string(),
        }
    }

    /// Write the whole store as JSON Lines: a header line, then one line per row
    /// (`{"table": …, "row": {column: value}}`), table by table. Returns the rows written.
    pub fn export(&self, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
        writeln!(
            out,
            "{}",
            serde_json::json!({"format": EXPORT_HEADER, "version": 1})
        )?;
        let mut rows = 0u64;
        for (table, columns) in EXPORT_TABLES {
            let json_rows = match &self.backend {
                Backend::Sqlite(s) => s.export_table(table, columns)?,
                Backend::Pg(p) => p.export_table(table, columns)?,
            };
            for row in json_rows {
                let row: Value = serde_json::from_str(&row)?;
                writeln!(out, "{}", serde_json::json!({"table": table, "row": row}))?;
                rows += 1;
            }
        }
        out.flush()?;
        Ok(rows)
    }

    /// Read an export (JSON Lines, as [`StateStore::export`] writes it) into this store, in one
    /// transaction: rows whose key the store has already are kept as they are.
    pub fn import(&mut self, input: impl std::io::BufRead) -> anyhow::Result<Imported> {
        let mut done = Imported::default();
        self.begin()?;
        let result = (|| -> anyhow::Result<()> {
            for (n, line) in input.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line)
                    .map_err(|e| anyhow::anyhow!("line {}: not JSON: {e}", n + 1))?;
                if v.get("format").is_some() {
                    anyhow::ensure!(
                        v["format"] == EXPORT_HEADER && v["version"] == 1,
                        "line {}: not a triage state export this version reads",
                        n + 1
                    );
                    continue;
                }
                let table = v["table"].as_str().unwrap_or_default();
                let Some((table, columns)) = EXPORT_TABLES.iter().find(|(t, _)| *t == table) else {
                    anyhow::bail!("line {}: unknown table {table:?}", n + 1);
                };
                anyhow::ensure!(v["row"].is_object(), "line {}: no row object", n + 1);
                let row = v["row"].to_string();
                let added = match &mut self.backend {
                    Backend::Sqlite(s) => s.import_row(table, columns, &row)?,
                    Backend::Pg(p) => p.import_row(table, columns, &row)?,
                };
                done.read += 1;
                done.added += added;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.commit()?;
                Ok(done)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// The PostgreSQL backend, for readers that query it directly (`triage status`).
    pub(crate) fn postgres(&self) -> Option<&pg::PgStore> {
        match &self.backend {
            Backend::Pg(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// The TLS protocol of this store's PostgreSQL connection as the server sees it
    /// (`pg_stat_ssl`), e.g. `TLSv1.3`; `None` when it is not encrypted or the store is SQLite.
    pub fn connection_tls(&self) -> Result<Option<String>, StateError> {
        match &self.backend {
            Backend::Pg(p) => p.connection_tls(),
            Backend::Sqlite(_) => Ok(None),
        }
    }

    /// Whether this is a PostgreSQL store (shared by runners on several hosts).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// Open the writer's batch transaction.
    pub fn begin(&mut self) -> Result<(), StateError> {
        match &mut self.backend {
            Backend::Sqlite(s) => s.begin(),
            Backend::Pg(p) => p.begin(),
        }?;
        self.in_batch = true;
        Ok(())
    }

    /// Commit the writer's batch transaction.
    pub fn commit(&mut self) -> Result<(), StateError> {
        self.in_batch = false;
        let committed = match &mut self.backend {
            Backend::Sqlite(s) => s.commit(),
            Backend::Pg(p) => p.commit(),
        };
        let counting = std::mem::take(&mut self.counting);
        if committed.is_ok() {
            for (ticket, n) in counting {
                *self.counted.entry(ticket).or_default() += n;
            }
        }
        committed
    }

    /// Give up the writer's batch transaction (after a failed commit).
    pub fn rollback(&mut self) {
        self.in_batch = false;
        self.counting.clear();
        match &mut self.backend {
            Backend::Sqlite(s) => s.rollback(),
            Backend::Pg(p) => p.rollback(),
        }
    }

    /// Record a batch of final outcomes in one transaction: each log is seen; failed ones go on
    /// the retry list (one more run counted), succeeded ones leave it. A log new to this job
    /// that is one more occurrence of a ticket adds one to the ticket's pending count.
    pub fn record(&mut self, batch: &[Processed]) -> Result<(), StateError> {
        let added = match &mut self.backend {
            Backend::Sqlite(s) => s.record(batch),
            Backend::Pg(p) => p.record(batch),
        }?;
        let into = if self.in_batch {
            &mut self.counting
        } else {
            &mut self.counted
        };
        for (ticket, n) in added {
            *into.entry(ticket).or_default() += n;
        }
        Ok(())
    }

    /// How many occurrences this store (this run) has added to `ticket`'s pending count, with
    /// what the open batch holds: the share of the count that the run's own logs make up.
    pub fn counted_here(&self, ticket: &str) -> u64 {
        self.counted.get(ticket).copied().unwrap_or(0)
            + self.counting.get(ticket).copied().unwrap_or(0)
    }

    delegate! {
        /// The schema version this store is at.
        fn schema_version(&self) -> Result<usize, StateError>;
        /// The time up to which every log of `source` is final.
        fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StateError>;
        /// Move the checkpoint forward (never back), and forget processed ids well behind it.
        fn advance_checkpoint(&mut self, source: &str, until: DateTime<Utc>, keep_ids_for: chrono::Duration) -> Result<(), StateError>;
        /// Whether an earlier run (or this one) already gave this log a final outcome.
        fn is_seen(&self, log_id: &str) -> Result<bool, StateError>;
        /// Failed logs waiting for a retry, oldest failure first.
        fn failed_logs(&self) -> Result<Vec<FailedLog>, StateError>;
        /// Take logs off the retry list for good (given up after too many runs).
        fn give_up(&mut self, ids: &[String]) -> Result<(), StateError>;
        /// The ticket an earlier run (or another runner) created for a fingerprint.
        fn ticket_for(&self, fingerprint: &str) -> Result<Option<String>, StateError>;
        /// Remember a ticket the moment it exists, and that its create finished.
        fn remember_ticket(&mut self, fingerprint: &str, key: &str) -> Result<(), StateError>;
        /// Note that a create is about to be sent (see `create_begun`).
        fn begin_create(&self, fingerprint: &str) -> Result<(), StateError>;
        /// When an unfinished create for this fingerprint was begun, if there is one.
        fn create_begun(&self, fingerprint: &str) -> Result<Option<DateTime<Utc>>, StateError>;
        /// Take the fingerprint's create lease (cross-runner dedup; always taken on SQLite,
        /// where the job's run lock already makes this run the only one).
        fn try_lease(&self, fingerprint: &str) -> Result<Lease, StateError>;
        /// Give the fingerprint's create lease back (after its key is recorded, or nothing was
        /// created).
        fn release_lease(&self, fingerprint: &str) -> Result<(), StateError>;
        /// What `analyzer` said about `fingerprint`, if it said it less than `ttl` ago (JSON).
        fn cached_analysis(&self, fingerprint: &str, analyzer: &str, ttl: chrono::Duration) -> Result<Option<String>, StateError>;
        /// Remember what `analyzer` said about `fingerprint` (JSON), replacing an older answer.
        fn cache_analysis(&self, fingerprint: &str, analyzer: &str, analysis: &str) -> Result<(), StateError>;
        fn comment_state(&self, ticket: &str) -> Result<CommentState, StateError>;
        /// A ticket was just created at `at`: its creation counts as its last update.
        fn note_created_ticket(&self, ticket: &str, at: DateTime<Utc>) -> Result<(), StateError>;
        /// Change what a ticket has accumulated: its pending count moved by `change.pending`
        /// (atomically, whatever other runners add meanwhile), the rest set as given.
        fn change_comment_state(&self, ticket: &str, change: &CommentChange) -> Result<(), StateError>;
        /// Remember the hashes of the summary and description triage wrote on a ticket.
        fn remember_written(&self, ticket: &str, summary: &str, description: &str) -> Result<(), StateError>;
        /// The hashes of the summary and description triage last wrote on a ticket.
        fn written(&self, ticket: &str) -> Result<Option<(String, String)>, StateError>;
        /// Everything the template miner learned, with the ticket recorded for each template.
        fn load_templates(&self) -> Result<TemplateSnapshot, StateError>;
        /// Save what the template miner changed, in one transaction.
        fn save_templates(&mut self, changes: &TemplateChanges) -> Result<(), StateError>;
        /// Start a run's row; returns its id.
        fn begin_run(&self, started: DateTime<Utc>) -> Result<i64, StateError>;
        fn end_run(&self, id: i64, exit_code: u8, summary: &Value) -> Result<(), StateError>;
        /// Record a finished run of this job.
        fn record_run(&self, started: DateTime<Utc>, ended: DateTime<Utc>, exit_code: u8, summary: &Value) -> Result<(), StateError>;
        /// Mark the run lock as released.
        fn release_lock(&self) -> ();
        /// When the last run that exited 0 ended.
        fn last_success(&self) -> Result<Option<DateTime<Utc>>, StateError>;
    }
}

/// The SQLite backend: one file.
struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    scope: Scope,
    /// The run lock; `None` for a read-only store (a dry run).
    _lock: Option<RunLock>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v).single()
}

impl SqliteStore {
    /// One row of a query, its statement prepared once per connection (hot paths run it for
    /// every problem).
    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }

    /// Run a statement, prepared once per connection.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }
    /// Open (creating the folder and the file if needed), take the job's run lock, migrate.
    pub fn open(path: &Path, scope: Scope) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private::create_dir_all(dir).map_err(io)?;
        }
        let lock = take_lock(path, &scope)?;
        // SQLite gives its -wal and -shm files the database file's mode.
        crate::private::create_if_missing(path).map_err(io)?;
        let sql = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        // Openers racing on a new file: SQLite answers one of two connections that would
        // deadlock (both switching the file to WAL) "busy" at once, without waiting; the open
        // is tried again, up to the busy timeout.
        let busy_timeout = std::time::Duration::from_secs(5);
        let started = std::time::Instant::now();
        let conn = loop {
            match open_sqlite(path, &scope, busy_timeout) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < busy_timeout =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(5..25)));
                }
                opened => break opened.map_err(sql)?,
            }
        };
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            scope,
            _lock: Some(lock),
        })
    }

    /// Open for reading only, without the lock (a dry run looks, never writes).
    /// `Ok(None)` when there is no store yet.
    pub fn open_read_only(path: &Path, scope: Scope) -> Result<Option<Self>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let sql = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        check_not_newer(version).map_err(sql)?;
        if version as usize != MIGRATIONS.len() {
            // An older layout: a dry run does not migrate it; the next real run will.
            return Ok(None);
        }
        Ok(Some(SqliteStore {
            conn,
            path: path.to_path_buf(),
            scope,
            _lock: None,
        }))
    }

    /// Open the writer's batch transaction.
    fn begin(&mut self) -> Result<(), StateError> {
        self.conn.execute_batch("BEGIN").map_err(|e| self.err(e))
    }

    fn commit(&mut self) -> Result<(), StateError> {
        self.conn.execute_batch("COMMIT").map_err(|e| self.err(e))
    }

    fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    /// Each row of `table` as a JSON object text.
    fn export_table(&self, table: &str, columns: &[&str]) -> Result<Vec<String>, StateError> {
        let fields: Vec<String> = columns.iter().map(|c| format!("'{c}', {c}")).collect();
        let sql = format!("SELECT json_object({}) FROM {table}", fields.join(", "));
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Insert one exported row (a JSON object text) unless its key is there; 1 when added.
    fn import_row(&mut self, table: &str, columns: &[&str], row: &str) -> Result<u64, StateError> {
        let values: Vec<String> = columns
            .iter()
            .map(|c| format!("json_extract(?1, '$.{c}')"))
            .collect();
        let sql = format!(
            "INSERT OR IGNORE INTO {table} ({}) SELECT {}",
            columns.join(", "),
            values.join(", ")
        );
        self.exec(&sql, [row])
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// One file, one runner per job (the run lock): nobody else creates for this job.
    fn try_lease(&self, _fingerprint: &str) -> Result<Lease, StateError> {
        Ok(Lease::Taken)
    }

    fn release_lease(&self, _fingerprint: &str) -> Result<(), StateError> {
        Ok(())
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version this store is at.
    pub fn schema_version(&self) -> Result<usize, StateError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
            .map_err(|e| self.err(e))
    }

    /// The time up to which every log of `source` is final.
    pub fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        self.row(
            "SELECT until_ms FROM checkpoints WHERE source = ?1",
            [source],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|v| v.and_then(from_ms))
        .map_err(|e| self.err(e))
    }

    /// Move the checkpoint forward (never back), and forget processed ids well behind it.
    pub fn advance_checkpoint(
        &mut self,
        source: &str,
        until: DateTime<Utc>,
        keep_ids_for: chrono::Duration,
    ) -> Result<(), StateError> {
        let tx = self.conn.savepoint().map_err(|e| StateError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        tx.execute(
            "INSERT INTO checkpoints (source, until_ms, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(source) DO UPDATE SET until_ms = max(until_ms, excluded.until_ms), updated_ms = excluded.updated_ms",
            params![source, ms(until), ms(Utc::now())],
        )
        .and_then(|_| tx.execute("DELETE FROM seen WHERE source = ?1 AND ts_ms IS NOT NULL AND ts_ms < ?2", params![source, ms(until - keep_ids_for)]))
        .and_then(|_| tx.commit())
        .map_err(|e| self.err(e))
    }

    /// Whether an earlier run (or this one) already gave this log a final outcome.
    pub fn is_seen(&self, log_id: &str) -> Result<bool, StateError> {
        self.row(
            "SELECT 1 FROM seen WHERE source = ?1 AND log_id = ?2",
            params![self.scope.source, log_id],
            |_| Ok(()),
        )
        .optional()
        .map(|v| v.is_some())
        .map_err(|e| self.err(e))
    }

    /// Record a batch of final outcomes in one transaction: each log is seen; failed ones go on
    /// the retry list (one more run counted), succeeded ones leave it. Returns what was added
    /// to each ticket's pending count.
    pub fn record(&mut self, batch: &[Processed]) -> Result<Vec<(String, u64)>, StateError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let jira = self.scope.jira.clone();
        let source = self.scope.source.clone();
        let mut added: std::collections::BTreeMap<String, u64> = Default::default();
        let tx = self.conn.savepoint().map_err(err)?;
        {
            let mut seen = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO seen (source, log_id, ts_ms) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            let mut fail = tx
                .prepare_cached(
                    "INSERT INTO failed (source, log_id, event, error, runs, first_failed_ms) VALUES (?1, ?2, ?3, ?4, 1, ?5)
                     ON CONFLICT(source, log_id) DO UPDATE SET error = excluded.error, runs = runs + 1",
                )
                .map_err(err)?;
            let mut done = tx
                .prepare_cached("DELETE FROM failed WHERE source = ?1 AND log_id = ?2")
                .map_err(err)?;
            let mut count = tx
                .prepare_cached(
                    "INSERT INTO comments (jira, ticket, pending) VALUES (?1, ?2, 1)
                     ON CONFLICT(jira, ticket) DO UPDATE SET pending = pending + 1",
                )
                .map_err(err)?;
            let now = ms(Utc::now());
            for p in batch {
                let new = seen
                    .execute(params![source, p.id, p.timestamp.map(ms)])
                    .map_err(err)?;
                // A log that failed was seen then, uncounted: it counts when its retry succeeds.
                let retried = match &p.failed {
                    Some((event, error)) => {
                        fail.execute(params![source, p.id, event.to_string(), error, now])
                            .map_err(err)?;
                        0
                    }
                    None => done.execute(params![source, p.id]).map_err(err)?,
                };
                if let (true, Some(ticket)) = (new + retried > 0, &p.recurrence) {
                    count.execute(params![jira, ticket]).map_err(err)?;
                    *added.entry(ticket.clone()).or_default() += 1;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(added.into_iter().collect())
    }

    /// Failed logs waiting for a retry, oldest failure first.
    pub fn failed_logs(&self) -> Result<Vec<FailedLog>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT log_id, event, runs FROM failed WHERE source = ?1 ORDER BY coalesce(first_failed_ms, 0), log_id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([&self.scope.source], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, event, runs) = row.map_err(|e| self.err(e))?;
            let event = serde_json::from_str(&event).unwrap_or(Value::Null);
            out.push(FailedLog {
                id,
                event,
                runs: runs.max(0) as u32,
            });
        }
        Ok(out)
    }

    /// Take logs off the retry list for good (given up after too many runs).
    pub fn give_up(&mut self, ids: &[String]) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let source = self.scope.source.clone();
        let tx = self.conn.savepoint().map_err(err)?;
        for id in ids {
            tx.execute(
                "DELETE FROM failed WHERE source = ?1 AND log_id = ?2",
                params![source, id],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The ticket an earlier run created for a fingerprint.
    pub fn ticket_for(&self, fingerprint: &str) -> Result<Option<String>, StateError> {
        self.row(
            "SELECT key FROM tickets WHERE jira = ?1 AND fingerprint = ?2",
            params![self.scope.jira, fingerprint],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Remember a ticket the moment it exists, and that its create finished (one transaction).
    pub fn remember_ticket(&mut self, fingerprint: &str, key: &str) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let jira = self.scope.jira.clone();
        let tx = self.conn.savepoint().map_err(err)?;
        tx.prepare_cached(
            "INSERT INTO tickets (jira, fingerprint, key, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(jira, fingerprint) DO UPDATE SET key = excluded.key",
        )
        .and_then(|mut s| s.execute(params![jira, fingerprint, key, ms(Utc::now())]))
        .map_err(err)?;
        tx.prepare_cached("DELETE FROM creating WHERE jira = ?1 AND fingerprint = ?2")
            .and_then(|mut s| s.execute(params![jira, fingerprint]))
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Note that a create is about to be sent: if the run dies before the answer, the next run
    /// knows Jira may hold a ticket its search does not show yet.
    pub fn begin_create(&self, fingerprint: &str) -> Result<(), StateError> {
        self.exec(
            "INSERT INTO creating (jira, fingerprint, started_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(jira, fingerprint) DO UPDATE SET started_ms = excluded.started_ms",
            params![self.scope.jira, fingerprint, ms(Utc::now())],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// When an unfinished create for this fingerprint was begun, if there is one.
    pub fn create_begun(&self, fingerprint: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        self.row(
            "SELECT started_ms FROM creating WHERE jira = ?1 AND fingerprint = ?2",
            params![self.scope.jira, fingerprint],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map(|t| t.and_then(from_ms))
        .map_err(|e| self.err(e))
    }

    /// What `analyzer` said about `fingerprint`, if it said it less than `ttl` ago (JSON).
    pub fn cached_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        ttl: chrono::Duration,
    ) -> Result<Option<String>, StateError> {
        self
            .row(
                "SELECT analysis FROM analyses WHERE fingerprint = ?1 AND analyzer = ?2 AND created_ms >= ?3",
                params![fingerprint, analyzer, ms(Utc::now() - ttl)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Remember what `analyzer` said about `fingerprint` (JSON), replacing an older answer.
    pub fn cache_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        analysis: &str,
    ) -> Result<(), StateError> {
        self
            .exec(
                "INSERT INTO analyses (fingerprint, analyzer, analysis, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(fingerprint, analyzer) DO UPDATE SET analysis = excluded.analysis, created_ms = excluded.created_ms",
                params![fingerprint, analyzer, analysis, ms(Utc::now())],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn remember_written(
        &self,
        ticket: &str,
        summary: &str,
        description: &str,
    ) -> Result<(), StateError> {
        self.exec(
            "INSERT INTO written (jira, ticket, summary, description) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(jira, ticket) DO UPDATE SET summary = excluded.summary, description = excluded.description",
            params![self.scope.jira, ticket, summary, description],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    pub fn written(&self, ticket: &str) -> Result<Option<(String, String)>, StateError> {
        self.conn
            .query_row(
                "SELECT summary, description FROM written WHERE jira = ?1 AND ticket = ?2",
                params![self.scope.jira, ticket],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn comment_state(&self, ticket: &str) -> Result<CommentState, StateError> {
        self
            .row(
                "SELECT last_ms, pending, first_ms, last_seen_ms, hosts FROM comments WHERE jira = ?1 AND ticket = ?2",
                params![self.scope.jira, ticket],
                |r| {
                    Ok(CommentState {
                        last_comment: r.get::<_, Option<i64>>(0)?.and_then(from_ms),
                        pending: r.get::<_, i64>(1)?.max(0) as u64,
                        first_seen: r.get::<_, Option<i64>>(2)?.and_then(from_ms),
                        last_seen: r.get::<_, Option<i64>>(3)?.and_then(from_ms),
                        hosts: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| self.err(e))
    }

    /// A ticket was just created at `at`: its creation counts as its last update, so the comment
    /// cooldown covers it even when the run dies before it brings the ticket up to date (a later
    /// update or comment replaces this).
    pub fn note_created_ticket(&self, ticket: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self
            .exec(
                "INSERT INTO comments (jira, ticket, last_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(jira, ticket) DO UPDATE SET last_ms = COALESCE(last_ms, excluded.last_ms)",
                params![self.scope.jira, ticket, ms(at)],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Change what a ticket has accumulated: the pending count moved by `change.pending` in the
    /// statement itself (never below 0), the rest set as given.
    pub fn change_comment_state(
        &self,
        ticket: &str,
        change: &CommentChange,
    ) -> Result<(), StateError> {
        self
            .exec(
                "INSERT INTO comments (jira, ticket, last_ms, pending, first_ms, last_seen_ms, hosts) VALUES (?1, ?2, ?3, max(?4, 0), ?5, ?6, ?7)
                 ON CONFLICT(jira, ticket) DO UPDATE SET last_ms = excluded.last_ms, pending = max(pending + ?4, 0),
                   first_ms = excluded.first_ms, last_seen_ms = excluded.last_seen_ms, hosts = excluded.hosts",
                params![
                    self.scope.jira,
                    ticket,
                    change.last_comment.map(ms),
                    change.pending,
                    change.first_seen.map(ms),
                    change.last_seen.map(ms),
                    serde_json::to_string(&change.hosts).unwrap_or_else(|_| "[]".into())
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Everything the template miner learned, with the ticket recorded for each template
    /// (under its own fingerprint or one merged into it; any Jira).
    pub fn load_templates(&self) -> Result<TemplateSnapshot, StateError> {
        let err = |e| self.err(e);
        let json_err = |e: serde_json::Error| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        };
        let mut snapshot = TemplateSnapshot::default();
        let mut stmt = self
            .conn
            .prepare("SELECT id, service, tokens, variable FROM template_families ORDER BY id")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredFamily {
                    id: r.get::<_, i64>(0)? as u64,
                    service: r.get(1)?,
                    tokens: serde_json::from_str(&r.get::<_, String>(2)?).map_err(json_err)?,
                    variable: serde_json::from_str(&r.get::<_, String>(3)?).map_err(json_err)?,
                })
            })
            .map_err(err)?;
        for row in rows {
            snapshot.families.push(row.map_err(err)?);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.fingerprint, t.id, t.family, t.service, t.template, t.tokens, t.count,
                        t.first_ms, t.last_ms, t.last_used,
                        coalesce((SELECT min(key) FROM tickets k WHERE k.fingerprint = t.fingerprint),
                                 (SELECT min(k.key) FROM tickets k JOIN template_merges m
                                    ON k.fingerprint = m.fingerprint WHERE m.into_fingerprint = t.fingerprint)),
                        t.vars
                 FROM templates t ORDER BY t.id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredTemplate {
                    fingerprint: r.get(0)?,
                    id: r.get::<_, i64>(1)? as u64,
                    family: r.get::<_, i64>(2)? as u64,
                    service: r.get(3)?,
                    template: r.get(4)?,
                    tokens: serde_json::from_str(&r.get::<_, String>(5)?).map_err(json_err)?,
                    count: r.get::<_, i64>(6)?.max(0) as u64,
                    first_seen: r.get::<_, Option<i64>>(7)?.and_then(from_ms),
                    last_seen: r.get::<_, Option<i64>>(8)?.and_then(from_ms),
                    last_used: r.get::<_, i64>(9)?.max(0) as u64,
                    ticket: r.get(10)?,
                    // What an older version could not write, or cannot be read, is only shown.
                    values: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
                })
            })
            .map_err(err)?;
        for row in rows {
            snapshot.templates.push(row.map_err(err)?);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT fingerprint, into_fingerprint FROM template_merges ORDER BY merged_ms, fingerprint")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TemplateMerge {
                    from: r.get(0)?,
                    into: r.get(1)?,
                })
            })
            .map_err(err)?;
        for row in rows {
            snapshot.merges.push(row.map_err(err)?);
        }
        Ok(snapshot)
    }

    /// Save what the template miner changed, in one transaction.
    pub fn save_templates(&mut self, changes: &TemplateChanges) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let now = ms(Utc::now());
        let tx = self.conn.savepoint().map_err(err)?;
        {
            let mut family = tx
                .prepare_cached(
                    "INSERT INTO template_families (id, service, tokens, variable) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO UPDATE SET tokens = excluded.tokens, variable = excluded.variable",
                )
                .map_err(err)?;
            for f in &changes.families {
                family
                    .execute(params![
                        f.id as i64,
                        f.service,
                        json_text(&f.tokens),
                        json_text(&f.variable)
                    ])
                    .map_err(err)?;
            }
            let mut template = tx
                .prepare_cached(
                    "INSERT INTO templates (fingerprint, id, family, service, template, tokens, count, first_ms, last_ms, last_used, vars)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(fingerprint) DO UPDATE SET template = excluded.template, tokens = excluded.tokens,
                       count = excluded.count, first_ms = excluded.first_ms, last_ms = excluded.last_ms,
                       last_used = excluded.last_used, vars = excluded.vars",
                )
                .map_err(err)?;
            for t in &changes.templates {
                template
                    .execute(params![
                        t.fingerprint,
                        t.id as i64,
                        t.family as i64,
                        t.service,
                        t.template,
                        json_text(&t.tokens),
                        t.count as i64,
                        t.first_seen.map(ms),
                        t.last_seen.map(ms),
                        t.last_used as i64,
                        json_text(&t.values)
                    ])
                    .map_err(err)?;
            }
            let mut remove = tx
                .prepare_cached("DELETE FROM templates WHERE fingerprint = ?1")
                .map_err(err)?;
            for fp in &changes.removed {
                remove.execute([fp]).map_err(err)?;
            }
            let mut merge = tx
                .prepare_cached(
                    "INSERT INTO template_merges (fingerprint, into_fingerprint, merged_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(fingerprint) DO UPDATE SET into_fingerprint = excluded.into_fingerprint",
                )
                .map_err(err)?;
            for m in &changes.merges {
                merge.execute(params![m.from, m.into, now]).map_err(err)?;
            }
        }
        if !changes.removed.is_empty() {
            tx.execute(
                "DELETE FROM template_families WHERE id NOT IN (SELECT family FROM templates)",
                [],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Start a run's row; returns its id.
    pub fn begin_run(&self, started: DateTime<Utc>) -> Result<i64, StateError> {
        self.exec("INSERT INTO runs (started_ms) VALUES (?1)", [ms(started)])
            .map(|_| self.conn.last_insert_rowid())
            .map_err(|e| self.err(e))
    }

    pub fn end_run(&self, id: i64, exit_code: u8, summary: &Value) -> Result<(), StateError> {
        self.exec(
            "UPDATE runs SET ended_ms = ?2, exit_code = ?3, summary = ?4 WHERE id = ?1",
            params![id, ms(Utc::now()), exit_code, summary.to_string()],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Record a finished run of this job: when it started and ended, its exit code, its counts.
    pub fn record_run(
        &self,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
        exit_code: u8,
        summary: &Value,
    ) -> Result<(), StateError> {
        let count = |name: &str| summary[name].as_u64().unwrap_or(0) as i64;
        self
            .exec(
                "INSERT INTO job_runs (source, jira, started_ms, ended_ms, exit_code, fetched, processed,
                                       created, existing, commented, duplicates, skipped, failed, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    self.scope.source,
                    self.scope.jira,
                    ms(started),
                    ms(ended),
                    exit_code,
                    count("fetched"),
                    count("processed"),
                    count("created"),
                    count("existing"),
                    count("commented"),
                    count("duplicates"),
                    count("skipped"),
                    count("failed"),
                    summary.to_string()
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Mark the run lock as released (it is freed when the process exits): a lock file that
    /// still names a process is then known to be left by a killed run.
    pub fn release_lock(&self) {
        if let Some(lock) = &self._lock {
            let _ = lock.0.set_len(0);
        }
    }

    /// When the last run that exited 0 ended.
    pub fn last_success(&self) -> Result<Option<DateTime<Utc>>, StateError> {
        self.row(
            "SELECT max(ended_ms) FROM runs WHERE exit_code = 0",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .map(|v| v.and_then(from_ms))
        .map_err(|e| self.err(e))
    }
}

/// Give rows written before stores were scoped (schema 4) to the first job that opens the store.
fn adopt_unscoped(conn: &mut Connection, scope: &Scope) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if !scope.source.is_empty() {
        for table in ["seen", "failed"] {
            tx.execute(
                &format!("UPDATE OR IGNORE {table} SET source = ?1 WHERE source = ''"),
                [&scope.source],
            )?;
        }
    }
    if !scope.jira.is_empty() {
        for table in ["tickets", "comments", "creating"] {
            tx.execute(
                &format!("UPDATE OR IGNORE {table} SET jira = ?1 WHERE jira = ''"),
                [&scope.jira],
            )?;
        }
    }
    tx.commit()
}

/// Create or migrate the schema, safe when several processes open a new or old store at once
/// (jobs on one file hold different run locks): the version is read again inside one
/// IMMEDIATE transaction (the file's single writer lock, waited for up to the busy timeout),
/// so exactly one opener applies the missing steps and the others find them done. The
/// `IF NOT EXISTS` in the steps keeps a step that was applied without its version (a store
/// touched by hand) from failing.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    check_not_newer(version)?;
    if version as usize == MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    check_not_newer(version)?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()
}

/// Open a writable SQLite store: WAL, the busy timeout, the schema created or migrated, rows of
/// older unscoped versions adopted by `scope`.
fn open_sqlite(
    path: &Path,
    scope: &Scope,
    busy_timeout: std::time::Duration,
) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    // The busy timeout first: switching a new file to WAL and migrating it wait for a process
    // that is doing the same at this moment.
    conn.busy_timeout(busy_timeout)?;
    // NORMAL before WAL: switching a new file to WAL then syncs less.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Every statement a run repeats stays prepared.
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    adopt_unscoped(&mut conn, scope)?;
    Ok(conn)
}

/// Refuse a store written by a newer version of triage: its layout is unknown here, and using it
/// could lose or misread what that version recorded.
fn check_not_newer(version: i64) -> rusqlite::Result<()> {
    if version > MIGRATIONS.len() as i64 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "written by a newer version of triage (schema {version}; this version knows up to {}): \
                 upgrade triage, or use another --state PATH",
                MIGRATIONS.len()
            )),
        ));
    }
    Ok(())
}

/// Take `<db>.lock` exclusively, or say who holds it.
/// The held run lock. Dropping it empties the lock file, so a file still naming a process
/// when the next run takes the lock was left by a run that was killed.
struct RunLock(File);

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.0.set_len(0);
    }
}

fn take_lock(db: &Path, scope: &Scope) -> Result<RunLock, StateError> {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.lock", scope.lock_name()));
    let path = db.with_file_name(name);
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    let mut file = crate::private::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            let mut left = String::new();
            let _ = file.read_to_string(&mut left);
            if !left.trim().is_empty() {
                tracing::warn!(
                    "the run that held {} ({}) did not finish: taking over its lock; \
                     logs it had not finished are processed again from the checkpoint",
                    path.display(),
                    left.trim()
                );
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(
                file,
                "pid {} since {}",
                std::process::id(),
                Utc::now().to_rfc3339()
            )
            .map_err(io)?;
            file.flush().map_err(io)?;
            Ok(RunLock(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(StateError::Locked {
                path: db.to_path_buf(),
                holder: if holder.is_empty() {
                    "a running process".into()
                } else {
                    format!("triage {holder}")
                },
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(source: &str, jira: &str) -> Scope {
        Scope {
            source: source.into(),
            jira: jira.into(),
        }
    }

    #[test]
    fn a_second_open_is_refused_naming_the_holder_and_a_dropped_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let first = StateStore::open(&db, job("src", "jira")).unwrap();
        match StateStore::open(&db, job("src", "jira")) {
            Err(StateError::Locked { holder, .. }) => assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            ),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Another job on the same file runs meanwhile.
        StateStore::open(&db, job("src", "other jira")).expect("another job's lock");
        drop(first);
        StateStore::open(&db, job("src", "jira"))
            .expect("the lock of a finished holder is taken over");
    }

    #[test]
    fn openers_racing_on_a_new_file_all_succeed_and_create_the_schema_once() {
        // Seen before: four runs started together on a new file, three exited 1 with
        // "table checkpoints already exists". Each thread is its own connection and job.
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("state.db");
            let n = 8;
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (db, barrier) = (db.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        StateStore::open(&db, job(&format!("src {i}"), "J OPS"))
                            .map(|s| s.schema_version().unwrap())
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            for t in threads {
                assert_eq!(
                    t.join().unwrap(),
                    Ok(MIGRATIONS.len()),
                    "round {round}: every opener succeeds"
                );
            }
        }
    }

    #[test]
    fn jobs_sharing_a_file_see_only_their_own_logs_retries_tickets_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let mut a = StateStore::open(&db, job("datadog A q", "J1 OPS")).unwrap();
        let b = StateStore::open(&db, job("datadog B q", "J2 OPS")).unwrap();
        a.record(&[Processed {
            id: "l1".into(),
            timestamp: None,
            failed: Some((serde_json::json!({"message": "m"}), "down".into())),
            recurrence: None,
        }])
        .unwrap();
        a.remember_ticket("fp", "OPS-1").unwrap();
        a.change_comment_state(
            "OPS-1",
            &CommentChange {
                pending: 4,
                ..CommentChange::default()
            },
        )
        .unwrap();
        assert!(a.is_seen("l1").unwrap() && !b.is_seen("l1").unwrap());
        assert_eq!(
            (
                a.failed_logs().unwrap().len(),
                b.failed_logs().unwrap().len()
            ),
            (1, 0)
        );
        assert_eq!(a.ticket_for("fp").unwrap().as_deref(), Some("OPS-1"));
        assert_eq!(b.ticket_for("fp").unwrap(), None);
        assert_eq!(b.comment_state("OPS-1").unwrap().pending, 0);
        assert_eq!(a.comment_state("OPS-1").unwrap().pending, 4);
    }

    #[test]
    fn a_store_written_by_the_first_schema_is_migrated_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO tickets (fingerprint, key, created_ms) VALUES ('fp1', 'OPS-7', 0)",
                [],
            )
            .unwrap();
            conn.execute("INSERT INTO failed (log_id, event, error, runs) VALUES ('l1', '{\"message\":\"x\"}', 'e', 2)", []).unwrap();
            conn.execute(
                "INSERT INTO checkpoints (source, until_ms, updated_ms) VALUES ('s', 1000, 0)",
                [],
            )
            .unwrap();
        }
        // The first job to open the store adopts what was written before stores were scoped.
        let store = StateStore::open(&db, job("s", "J OPS")).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
        assert_eq!(store.ticket_for("fp1").unwrap().as_deref(), Some("OPS-7"));
        assert_eq!(store.failed_logs().unwrap()[0].runs, 2);
        assert_eq!(
            store.checkpoint("s").unwrap().unwrap().timestamp_millis(),
            1000
        );
        assert_eq!(
            store.comment_state("OPS-7").unwrap(),
            CommentState::default()
        );
    }

    #[test]
    fn each_new_log_of_a_ticket_adds_one_to_its_pending_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "J OPS")).unwrap();
        let log = |id: &str| Processed {
            id: id.into(),
            timestamp: None,
            failed: None,
            recurrence: Some("OPS-3".into()),
        };
        store.record(&[log("a"), log("b")]).unwrap();
        // The same log again (an overlapping window) is not a new occurrence.
        store.record(&[log("b"), log("c")]).unwrap();
        assert_eq!(store.comment_state("OPS-3").unwrap().pending, 3);
        assert_eq!(store.counted_here("OPS-3"), 3);
    }

    #[test]
    fn a_log_that_failed_counts_once_when_its_retry_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "J OPS")).unwrap();
        let failed = Processed {
            id: "r".into(),
            timestamp: None,
            failed: Some((serde_json::json!({"message": "x"}), "Jira: HTTP 503".into())),
            recurrence: None,
        };
        store.record(std::slice::from_ref(&failed)).unwrap();
        // It failed again in the next run: still not an occurrence told anywhere.
        store.record(&[failed]).unwrap();
        assert_eq!(store.comment_state("OPS-3").unwrap().pending, 0);
        let succeeded = Processed {
            id: "r".into(),
            timestamp: None,
            failed: None,
            recurrence: Some("OPS-3".into()),
        };
        store.record(std::slice::from_ref(&succeeded)).unwrap();
        assert!(store.failed_logs().unwrap().is_empty());
        assert_eq!(store.comment_state("OPS-3").unwrap().pending, 1);
        // Seen again (an overlapping window): counted once.
        store.record(&[succeeded]).unwrap();
        assert_eq!(store.comment_state("OPS-3").unwrap().pending, 1);
        assert_eq!(store.counted_here("OPS-3"), 1);
    }

    #[test]
    fn a_pending_count_is_moved_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        // Two jobs on one file, one Jira: both count the same ticket's occurrences.
        let mut a = StateStore::open(&db, job("src A", "J OPS")).unwrap();
        let mut b = StateStore::open(&db, job("src B", "J OPS")).unwrap();
        let log = |id: &str| Processed {
            id: id.into(),
            timestamp: None,
            failed: None,
            recurrence: Some("OPS-3".into()),
        };
        let t = |s| Utc.timestamp_opt(s, 0).single();
        a.record(&[log("a1"), log("a2")]).unwrap();
        let read = a.comment_state("OPS-3").unwrap();
        b.record(&[log("b1")]).unwrap();
        let saved = CommentChange {
            last_comment: t(100),
            pending: 0,
            first_seen: t(50),
            last_seen: t(90),
            hosts: vec!["web-1".into()],
        };
        a.change_comment_state("OPS-3", &saved).unwrap();
        assert_eq!(
            a.comment_state("OPS-3").unwrap(),
            CommentState {
                last_comment: t(100),
                pending: 3,
                first_seen: t(50),
                last_seen: t(90),
                hosts: vec!["web-1".into()],
            }
        );
        b.record(&[log("b2")]).unwrap();
        let commented = CommentChange {
            last_comment: t(200),
            pending: -(read.pending as i64),
            ..CommentChange::default()
        };
        a.change_comment_state("OPS-3", &commented).unwrap();
        assert_eq!(
            b.comment_state("OPS-3").unwrap(),
            CommentState {
                last_comment: t(200),
                pending: 2,
                ..CommentState::default()
            }
        );
        assert_eq!((a.counted_here("OPS-3"), b.counted_here("OPS-3")), (2, 2));
        // Never below 0, also for a ticket without a row yet.
        for ticket in ["OPS-3", "OPS-4"] {
            let over = CommentChange {
                pending: -5,
                ..CommentChange::default()
            };
            a.change_comment_state(ticket, &over).unwrap();
            assert_eq!(a.comment_state(ticket).unwrap().pending, 0);
        }
    }

    #[test]
    fn a_runs_own_share_of_a_count_holds_only_what_its_batches_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "J OPS")).unwrap();
        let log = |id: &str| Processed {
            id: id.into(),
            timestamp: None,
            failed: None,
            recurrence: Some("OPS-5".into()),
        };
        store.begin().unwrap();
        store.record(&[log("a"), log("b")]).unwrap();
        // The open batch counts for the calls inside it.
        assert_eq!(store.counted_here("OPS-5"), 2);
        store.rollback();
        assert_eq!(store.counted_here("OPS-5"), 0);
        assert_eq!(store.comment_state("OPS-5").unwrap().pending, 0);
        store.begin().unwrap();
        store.record(&[log("a"), log("b"), log("c")]).unwrap();
        store.commit().unwrap();
        store.record(&[log("d")]).unwrap();
        assert_eq!(store.counted_here("OPS-5"), 4);
        assert_eq!(store.comment_state("OPS-5").unwrap().pending, 4);
        assert_eq!(store.counted_here("OPS-6"), 0);
    }

    #[test]
    fn outcomes_checkpoints_and_the_retry_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "")).unwrap();
        let t = |s| Some(Utc.timestamp_millis_opt(s).unwrap());
        store
            .record(&[
                Processed {
                    id: "a".into(),
                    timestamp: t(1_000),
                    failed: None,
                    recurrence: None,
                },
                Processed {
                    id: "b".into(),
                    timestamp: t(2_000),
                    failed: Some((serde_json::json!({"message": "m"}), "boom".into())),
                    recurrence: None,
                },
            ])
            .unwrap();
        assert!(
            store.is_seen("a").unwrap()
                && store.is_seen("b").unwrap()
                && !store.is_seen("c").unwrap()
        );
        assert_eq!(store.failed_logs().unwrap().len(), 1);
        store
            .record(&[Processed {
                id: "b".into(),
                timestamp: t(2_000),
                failed: None,
                recurrence: None,
            }])
            .unwrap();
        assert!(
            store.failed_logs().unwrap().is_empty(),
            "a retried log that succeeds leaves the list"
        );
        store
            .advance_checkpoint(
                "src",
                t(5_000).unwrap(),
                chrono::Duration::milliseconds(3_500),
            )
            .unwrap();
        store
            .advance_checkpoint(
                "src",
                t(4_000).unwrap(),
                chrono::Duration::milliseconds(3_500),
            )
            .unwrap();
        assert_eq!(
            store.checkpoint("src").unwrap(),
            t(5_000),
            "never moves back"
        );
        assert!(
            !store.is_seen("a").unwrap(),
            "ids far behind the checkpoint are forgotten"
        );
        assert!(store.is_seen("b").unwrap());
    }
}
