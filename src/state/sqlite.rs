//! The SQLite backend: one file, one connection, the schema and its migrations.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{
    from_ms, json_text, ms, Clock, CommentChange, CommentState, FailedLog, Lease, Processed, Scope,
    StateError, Store,
};
use crate::grouping::{
    StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge, TemplateSnapshot,
};

/// Schema migrations, applied in order; `user_version` counts how many have run.
/// Never edit a released step: add a new one.
pub(super) const MIGRATIONS: &[&str] = &[
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

/// The SQLite backend: one file.
pub(super) struct SqliteStore {
    conn: Connection,
    pub(super) path: PathBuf,
    scope: Scope,
    /// Where the times it writes and compares come from.
    clock: Clock,
    /// The run lock; `None` for a read-only store (a dry run).
    _lock: Option<RunLock>,
}

impl SqliteStore {
    /// One row of a query, its statement prepared once per connection (hot paths run it for
    /// every problem).
    pub(super) fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }

    /// Run a statement, prepared once per connection.
    pub(super) fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// Open (creating the folder and the file if needed), take the job's run lock, migrate.
    pub fn open(path: &Path, scope: Scope, clock: Clock) -> Result<Self, StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private::create_dir_all(dir).map_err(io)?;
        }
        let lock = take_lock(path, &scope, &clock)?;
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
            clock,
            _lock: Some(lock),
        })
    }

    /// Open for reading only, without the lock (a dry run looks, never writes).
    /// `Ok(None)` when there is no store yet.
    pub fn open_read_only(
        path: &Path,
        scope: Scope,
        clock: Clock,
    ) -> Result<Option<Self>, StateError> {
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
            clock,
            _lock: None,
        }))
    }

    pub(super) fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

impl Store for SqliteStore {
    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn seen_among(&self, log_ids: &[String]) -> Result<HashSet<String>, StateError> {
        let mut seen = HashSet::new();
        // Within SQLite's bound on parameters per statement (999 on old builds).
        for chunk in log_ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("SELECT log_id FROM seen WHERE source = ? AND log_id IN ({marks})");
            let params = std::iter::once(&self.scope.source).chain(chunk);
            let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(0)
                })
                .map_err(|e| self.err(e))?;
            for id in rows {
                seen.insert(id.map_err(|e| self.err(e))?);
            }
        }
        Ok(seen)
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

    /// The schema version this store is at.
    fn schema_version(&self) -> Result<usize, StateError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
            .map(|v| v as usize)
            .map_err(|e| self.err(e))
    }

    /// The time up to which every log of `source` is final.
    fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StateError> {
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
    fn advance_checkpoint(
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
            params![source, ms(until), ms(self.clock.now())],
        )
        .and_then(|_| tx.execute("DELETE FROM seen WHERE source = ?1 AND ts_ms IS NOT NULL AND ts_ms < ?2", params![source, ms(until - keep_ids_for)]))
        .and_then(|_| tx.commit())
        .map_err(|e| self.err(e))
    }

    /// Record a batch of final outcomes in one transaction: each log is seen; failed ones go on
    /// the retry list (one more run counted), succeeded ones leave it. Returns what was added
    /// to each ticket's pending count.
    fn record(&mut self, batch: &[Processed]) -> Result<Vec<(String, u64)>, StateError> {
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
            let now = ms(self.clock.now());
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
    fn failed_logs(&self) -> Result<Vec<FailedLog>, StateError> {
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
    fn give_up(&mut self, ids: &[String]) -> Result<(), StateError> {
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
    fn ticket_for(&self, fingerprint: &str) -> Result<Option<String>, StateError> {
        self.row(
            "SELECT key FROM tickets WHERE jira = ?1 AND fingerprint = ?2",
            params![self.scope.jira, fingerprint],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Remember a ticket the moment it exists, and that its create finished (one transaction).
    fn remember_ticket(&mut self, fingerprint: &str, key: &str) -> Result<(), StateError> {
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
        .and_then(|mut s| s.execute(params![jira, fingerprint, key, ms(self.clock.now())]))
        .map_err(err)?;
        tx.prepare_cached("DELETE FROM creating WHERE jira = ?1 AND fingerprint = ?2")
            .and_then(|mut s| s.execute(params![jira, fingerprint]))
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Note that a create is about to be sent: if the run dies before the answer, the next run
    /// knows Jira may hold a ticket its search does not show yet.
    fn begin_create(&self, fingerprint: &str) -> Result<(), StateError> {
        self.exec(
            "INSERT INTO creating (jira, fingerprint, started_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(jira, fingerprint) DO UPDATE SET started_ms = excluded.started_ms",
            params![self.scope.jira, fingerprint, ms(self.clock.now())],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// When an unfinished create for this fingerprint was begun, if there is one.
    fn create_begun(&self, fingerprint: &str) -> Result<Option<DateTime<Utc>>, StateError> {
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
    fn cached_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        ttl: chrono::Duration,
    ) -> Result<Option<String>, StateError> {
        self
            .row(
                "SELECT analysis FROM analyses WHERE fingerprint = ?1 AND analyzer = ?2 AND created_ms >= ?3",
                params![fingerprint, analyzer, ms(self.clock.now() - ttl)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Remember what `analyzer` said about `fingerprint` (JSON), replacing an older answer.
    fn cache_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        analysis: &str,
    ) -> Result<(), StateError> {
        self
            .exec(
                "INSERT INTO analyses (fingerprint, analyzer, analysis, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(fingerprint, analyzer) DO UPDATE SET analysis = excluded.analysis, created_ms = excluded.created_ms",
                params![fingerprint, analyzer, analysis, ms(self.clock.now())],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn remember_written(
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

    fn written(&self, ticket: &str) -> Result<Option<(String, String)>, StateError> {
        self.conn
            .query_row(
                "SELECT summary, description FROM written WHERE jira = ?1 AND ticket = ?2",
                params![self.scope.jira, ticket],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn comment_state(&self, ticket: &str) -> Result<CommentState, StateError> {
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
    fn note_created_ticket(&self, ticket: &str, at: DateTime<Utc>) -> Result<(), StateError> {
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
    fn change_comment_state(&self, ticket: &str, change: &CommentChange) -> Result<(), StateError> {
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
    fn load_templates(&self) -> Result<TemplateSnapshot, StateError> {
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
                        coalesce((SELECT min(key) FROM tickets k WHERE k.fingerprint = t.fingerprint
                                    AND (?1 = '' OR k.jira = ?1)),
                                 (SELECT min(k.key) FROM tickets k JOIN template_merges m
                                    ON k.fingerprint = m.fingerprint WHERE m.into_fingerprint = t.fingerprint
                                    AND (?1 = '' OR k.jira = ?1))),
                        t.vars
                 FROM templates t ORDER BY t.id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![self.scope.jira], |r| {
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
    fn save_templates(&mut self, changes: &TemplateChanges) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let now = ms(self.clock.now());
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
    fn begin_run(&self, started: DateTime<Utc>) -> Result<i64, StateError> {
        self.exec("INSERT INTO runs (started_ms) VALUES (?1)", [ms(started)])
            .map(|_| self.conn.last_insert_rowid())
            .map_err(|e| self.err(e))
    }

    fn end_run(&self, id: i64, exit_code: u8, summary: &Value) -> Result<(), StateError> {
        self.exec(
            "UPDATE runs SET ended_ms = ?2, exit_code = ?3, summary = ?4 WHERE id = ?1",
            params![id, ms(self.clock.now()), exit_code, summary.to_string()],
        )
        .map(|_| ())
        .map_err(|e| self.err(e))
    }

    /// Record a finished run of this job: when it started and ended, its exit code, its counts.
    fn record_run(
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
    fn release_lock(&self) {
        if let Some(lock) = &self._lock {
            let _ = lock.0.set_len(0);
        }
    }

    /// When the last run that exited 0 ended.
    fn last_success(&self) -> Result<Option<DateTime<Utc>>, StateError> {
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

fn take_lock(db: &Path, scope: &Scope, clock: &Clock) -> Result<RunLock, StateError> {
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
                clock.now().to_rfc3339()
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
