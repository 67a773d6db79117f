//! The state store: what a run must remember for the next one, in one SQLite file, or in a
//! PostgreSQL database that runners on several hosts share (`pg`, docs/scale.md).
//!
//! In: the path (`$XDG_STATE_HOME/triage/state.db`, or `--state PATH`) or a `postgres://` URL,
//! and the clock every time it writes or compares is read from (`crate::clock`; the system's
//! unless a test gives another). Out: a `StateStore` (one interface over both backends) holding the run lock, or
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

//!
//! Where things are: this module holds the interface (`StateStore`, the records it returns,
//! the export format); `handle` the writer thread a run talks to (`StateHandle`); `sqlite` the
//! SQLite backend with its migrations; `pg` and `pg_tls` the PostgreSQL backend.

mod handle;
pub(crate) mod pg;
mod pg_tls;
mod sqlite;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::clock::Clock;
use crate::grouping::{
    StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge, TemplateSnapshot,
};

pub use handle::{on_writer_thread, Asked, StateHandle, BATCH_AGE, BATCH_MAX, GROUP_COMMIT_AGE};
use sqlite::SqliteStore;

/// JSON text of a list of tokens or flags (these cannot fail to serialize).
fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v).single()
}

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

/// A change to a ticket's comment state ([`Store::change_comment_state`]), applied in one
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

/// The answer to [`Store::try_lease`].
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

/// What each backend (SQLite, PostgreSQL) provides, in its own SQL. [`StateStore`] adds the
/// batch bookkeeping, the pending counts and the export format on top, and hands the rest of
/// the interface on (`Deref`), so both backends answer every call the same way.
pub trait Store: Send {
    /// The store as it may be shown (a URL without its password).
    fn shown(&self) -> String;
    /// Whether this store is shared by runners on several hosts (PostgreSQL).
    fn is_shared(&self) -> bool {
        false
    }
    /// The PostgreSQL backend, for readers that query it directly (`triage status`).
    fn as_postgres(&self) -> Option<&pg::PgStore> {
        None
    }
    /// The TLS protocol of a PostgreSQL connection as the server sees it (`pg_stat_ssl`), e.g.
    /// `TLSv1.3`; `None` when it is not encrypted or the store is SQLite.
    fn connection_tls(&self) -> Result<Option<String>, StateError> {
        Ok(None)
    }
    /// Open the writer's batch transaction.
    fn begin(&mut self) -> Result<(), StateError>;
    /// Commit the writer's batch transaction.
    fn commit(&mut self) -> Result<(), StateError>;
    /// Give up the writer's batch transaction (after a failed commit).
    fn rollback(&mut self);
    /// Record a batch of final outcomes; returns what was added to each ticket's pending count.
    fn record(&mut self, batch: &[Processed]) -> Result<Vec<(String, u64)>, StateError>;
    /// One exported table's rows, each a JSON object of `columns`.
    fn export_table(&self, table: &str, columns: &[&str]) -> Result<Vec<String>, StateError>;
    /// Add one imported row (a JSON object of `columns`) unless its key is there; 1 if added.
    fn import_row(&mut self, table: &str, columns: &[&str], row: &str) -> Result<u64, StateError>;
    /// The schema version this store is at.
    fn schema_version(&self) -> Result<usize, StateError>;
    /// The time up to which every log of `source` is final.
    fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StateError>;
    /// Move the checkpoint forward (never back), and forget processed ids well behind it.
    fn advance_checkpoint(
        &mut self,
        source: &str,
        until: DateTime<Utc>,
        keep_ids_for: chrono::Duration,
    ) -> Result<(), StateError>;
    /// Which of these logs an earlier run (or this one) already gave a final outcome: one
    /// round trip for a batch of logs.
    fn seen_among(&self, log_ids: &[String]) -> Result<HashSet<String>, StateError>;
    /// Whether an earlier run (or this one) already gave this log a final outcome.
    fn is_seen(&self, log_id: &str) -> Result<bool, StateError> {
        Ok(!self.seen_among(&[log_id.to_string()])?.is_empty())
    }
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
    fn cached_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        ttl: chrono::Duration,
    ) -> Result<Option<String>, StateError>;
    /// Remember what `analyzer` said about `fingerprint` (JSON), replacing an older answer.
    fn cache_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        analysis: &str,
    ) -> Result<(), StateError>;
    /// When a ticket was last commented and what has recurred since.
    fn comment_state(&self, ticket: &str) -> Result<CommentState, StateError>;
    /// A ticket was just created at `at`: its creation counts as its last update.
    fn note_created_ticket(&self, ticket: &str, at: DateTime<Utc>) -> Result<(), StateError>;
    /// Change what a ticket has accumulated: its pending count moved by `change.pending`
    /// (atomically, whatever other runners add meanwhile), the rest set as given.
    fn change_comment_state(&self, ticket: &str, change: &CommentChange) -> Result<(), StateError>;
    /// Remember the hashes of the summary and description triage wrote on a ticket.
    fn remember_written(
        &self,
        ticket: &str,
        summary: &str,
        description: &str,
    ) -> Result<(), StateError>;
    /// The hashes of the summary and description triage last wrote on a ticket.
    fn written(&self, ticket: &str) -> Result<Option<(String, String)>, StateError>;
    /// Everything the template miner learned, with the ticket recorded for each template.
    fn load_templates(&self) -> Result<TemplateSnapshot, StateError>;
    /// Save what the template miner changed, in one transaction.
    fn save_templates(&mut self, changes: &TemplateChanges) -> Result<(), StateError>;
    /// Start a run's row; returns its id.
    fn begin_run(&self, started: DateTime<Utc>) -> Result<i64, StateError>;
    /// End a run's row with its exit code and summary.
    fn end_run(&self, id: i64, exit_code: u8, summary: &Value) -> Result<(), StateError>;
    /// Record a finished run of this job.
    fn record_run(
        &self,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
        exit_code: u8,
        summary: &Value,
    ) -> Result<(), StateError>;
    /// Mark the run lock as released.
    fn release_lock(&self);
    /// When the last run that exited 0 ended.
    fn last_success(&self) -> Result<Option<DateTime<Utc>>, StateError>;
}

/// A state store, SQLite or PostgreSQL: the one interface the writer thread and the readers
/// use. Every method runs on the calling thread (the state writer's own std::thread during a
/// run: neither backend may be called from the async runtime).
pub struct StateStore {
    backend: Box<dyn Store>,
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

/// The rest of the interface: every [`Store`] call, answered by the backend.
impl std::ops::Deref for StateStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.backend
    }
}

impl std::ops::DerefMut for StateStore {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.backend
    }
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("target", &self.target())
            .finish()
    }
}

impl StateStore {
    /// Open the store `target` names (a SQLite file, or a `postgres://` URL), take the job's
    /// run lock, create or migrate the schema. It reads the time from the system clock.
    pub fn open(target: &Path, scope: Scope) -> Result<Self, StateError> {
        StateStore::open_with_clock(target, scope, Clock::system())
    }

    /// [`StateStore::open`], every time it writes or compares read from `clock`.
    pub fn open_with_clock(target: &Path, scope: Scope, clock: Clock) -> Result<Self, StateError> {
        let backend = if is_postgres(target) {
            Box::new(pg::PgStore::open(
                target.to_str().unwrap_or_default(),
                scope,
                true,
                clock,
            )?) as Box<dyn Store>
        } else {
            Box::new(SqliteStore::open(target, scope, clock)?)
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
        StateStore::open_read_only_with_clock(target, scope, Clock::system())
    }

    /// [`StateStore::open_read_only`], the times it compares read from `clock`.
    pub fn open_read_only_with_clock(
        target: &Path,
        scope: Scope,
        clock: Clock,
    ) -> Result<Option<Self>, StateError> {
        let backend = if is_postgres(target) {
            match pg::PgStore::open(target.to_str().unwrap_or_default(), scope, false, clock) {
                Ok(p) if p.is_current()? => Box::new(p) as Box<dyn Store>,
                Ok(_) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            match SqliteStore::open_read_only(target, scope, clock)? {
                Some(s) => Box::new(s),
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
        self.backend.shown()
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
            let json_rows = self.backend.export_table(table, columns)?;
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
                let added = self.backend.import_row(table, columns, &row)?;
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

    /// Open the writer's batch transaction.
    pub fn begin(&mut self) -> Result<(), StateError> {
        self.backend.begin()?;
        self.in_batch = true;
        Ok(())
    }

    /// Commit the writer's batch transaction.
    pub fn commit(&mut self) -> Result<(), StateError> {
        self.in_batch = false;
        let committed = self.backend.commit();
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
        self.backend.rollback()
    }

    /// Record a batch of final outcomes in one transaction: each log is seen; failed ones go on
    /// the retry list (one more run counted), succeeded ones leave it. A log new to this job
    /// that is one more occurrence of a ticket adds one to the ticket's pending count.
    pub fn record(&mut self, batch: &[Processed]) -> Result<(), StateError> {
        let added = self.backend.record(batch)?;
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
}

#[cfg(test)]
mod tests;
