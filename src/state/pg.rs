//! The PostgreSQL backend: one database shared by every runner of a team.
//!
//! In: a `postgres://user[:password]@host[:port]/db[?sslmode=…]` URL. Out: the same store as the
//! SQLite one (`super::sqlite::SqliteStore`), with the same tables and meaning, so runners on several
//! hosts share checkpoints, processed ids, retries, tickets, comment cooldowns, unfinished
//! creates, the analysis cache and the learned templates.
//!
//! The sync `postgres` client runs on the state writer's own std::thread (never on the async
//! runtime: its internal `block_on` would panic inside a runtime context). Locks are PostgreSQL
//! session advisory locks, held by the writer's connection: a runner that dies, on any host,
//! loses its connection and so its locks at once, and no process id is ever compared.
//! - the job's run lock (`pg_try_advisory_lock`): a second runner of the same job exits 75;
//! - a fingerprint's create lease: held from before a create until its key is recorded;
//! - creating and migrating the schema: `pg_advisory_xact_lock` inside the migrating transaction.

use std::cell::RefCell;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use postgres::Client;

use super::pg_tls;
use serde_json::Value;

use super::{
    from_ms, json_text, ms, Clock, CommentChange, CommentState, FailedLog, Lease, Processed, Scope,
    StateError, Store, StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge,
    TemplateSnapshot,
};

/// Schema steps, applied in order; `triage_schema.version` counts how many have run.
/// Never edit a released step: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store keeps at its schema 7, plus who holds each job's run lock.
    "CREATE TABLE IF NOT EXISTS checkpoints (source TEXT PRIMARY KEY, until_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS seen (source TEXT NOT NULL, log_id TEXT NOT NULL, ts_ms BIGINT, PRIMARY KEY (source, log_id));
     CREATE INDEX IF NOT EXISTS seen_ts ON seen (ts_ms);
     CREATE TABLE IF NOT EXISTS failed (source TEXT NOT NULL, log_id TEXT NOT NULL, event TEXT NOT NULL, error TEXT,
                                        runs BIGINT NOT NULL DEFAULT 1, first_failed_ms BIGINT, PRIMARY KEY (source, log_id));
     CREATE TABLE IF NOT EXISTS tickets (jira TEXT NOT NULL, fingerprint TEXT NOT NULL, key TEXT NOT NULL,
                                         created_ms BIGINT NOT NULL, PRIMARY KEY (jira, fingerprint));
     CREATE TABLE IF NOT EXISTS comments (jira TEXT NOT NULL, ticket TEXT NOT NULL, last_ms BIGINT,
                                          pending BIGINT NOT NULL DEFAULT 0, first_ms BIGINT, last_seen_ms BIGINT,
                                          hosts TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (jira, ticket));
     CREATE TABLE IF NOT EXISTS creating (jira TEXT NOT NULL, fingerprint TEXT NOT NULL, started_ms BIGINT NOT NULL,
                                          PRIMARY KEY (jira, fingerprint));
     CREATE TABLE IF NOT EXISTS runs (id BIGSERIAL PRIMARY KEY, started_ms BIGINT NOT NULL, ended_ms BIGINT,
                                      exit_code INTEGER, summary TEXT);
     CREATE TABLE IF NOT EXISTS job_runs (id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, jira TEXT NOT NULL,
                                          started_ms BIGINT NOT NULL, ended_ms BIGINT NOT NULL, exit_code INTEGER NOT NULL,
                                          fetched BIGINT NOT NULL, processed BIGINT NOT NULL, created BIGINT NOT NULL,
                                          existing BIGINT NOT NULL, commented BIGINT NOT NULL, duplicates BIGINT NOT NULL,
                                          skipped BIGINT NOT NULL, failed BIGINT NOT NULL, summary TEXT NOT NULL);
     CREATE INDEX IF NOT EXISTS job_runs_by_job ON job_runs (source, jira, id);
     CREATE TABLE IF NOT EXISTS analyses (fingerprint TEXT NOT NULL, analyzer TEXT NOT NULL, analysis TEXT NOT NULL,
                                          created_ms BIGINT NOT NULL, PRIMARY KEY (fingerprint, analyzer));
     CREATE TABLE IF NOT EXISTS template_families (id BIGINT PRIMARY KEY, service TEXT NOT NULL, tokens TEXT NOT NULL,
                                                   variable TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS templates (fingerprint TEXT PRIMARY KEY, id BIGINT NOT NULL UNIQUE, family BIGINT NOT NULL,
                                           service TEXT NOT NULL, template TEXT NOT NULL, tokens TEXT NOT NULL,
                                           count BIGINT NOT NULL, first_ms BIGINT, last_ms BIGINT, last_used BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS template_merges (fingerprint TEXT PRIMARY KEY, into_fingerprint TEXT NOT NULL,
                                                 merged_ms BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS run_locks (job TEXT PRIMARY KEY, holder TEXT NOT NULL, since_ms BIGINT NOT NULL);",
    // 2: hashes of a ticket's summary and description as triage last wrote them (SQLite's 8).
    "CREATE TABLE IF NOT EXISTS written (jira TEXT NOT NULL, ticket TEXT NOT NULL, summary TEXT NOT NULL,
                                         description TEXT NOT NULL, PRIMARY KEY (jira, ticket));",
    // 3: what each template's variables were seen to hold (SQLite's 9).
    "ALTER TABLE templates ADD COLUMN IF NOT EXISTS vars TEXT NOT NULL DEFAULT '[]';",
];

/// The advisory lock key that serializes creating and migrating the schema.
const MIGRATION_LOCK: i64 = 0x7472_6961_6765_0001;

/// An advisory lock key for `what` (a job's run lock, a fingerprint's lease).
fn lock_key(kind: &str, parts: &[&str]) -> i64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(kind.as_bytes());
    for p in parts {
        h.update(b"\n");
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// A PostgreSQL URL as it may be shown: the password (in the user part or as a `password=`
/// parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (user, host) = authority.split_at(at);
            match user.find(':') {
                Some(c) => format!("{}:***{}", &user[..c], host),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.find('?') {
        Some(q) => {
            let (path, query) = tail.split_at(q + 1);
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

/// This host's name, for the run lock's holder (shown to a runner that is refused).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

pub struct PgStore {
    client: RefCell<Client>,
    target: String,
    scope: Scope,
    /// Where the times it writes and compares come from.
    clock: Clock,
    /// The job's run lock key, when this store holds it.
    run_lock: Option<i64>,
    /// Inside the writer's batch transaction.
    in_tx: bool,
}

impl PgStore {
    /// Connect, create or migrate the schema (writable), take the job's run lock (writable).
    pub fn open(url: &str, scope: Scope, writable: bool, clock: Clock) -> Result<Self, StateError> {
        let target = redact_url(url);
        let fail = |message: String| StateError::Postgres {
            target: target.clone(),
            message,
        };
        // `sslmode`/`sslrootcert` are read here (libpq's meaning), not by the `postgres` crate.
        let (plain_url, tls) = pg_tls::split_url(url).map_err(&fail)?;
        let mut config: postgres::Config = plain_url
            .parse()
            .map_err(|e: postgres::Error| fail(format!("not a PostgreSQL URL: {e}")))?;
        config.ssl_mode(pg_tls::crate_mode(tls.mode));
        let connector = pg_tls::connector(&tls).map_err(&fail)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        config.application_name("triage");
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        let client = config
            .connect(connector)
            .map_err(|e| fail(pg_tls::explain(&tls, describe(&e))))?;
        let mut store = PgStore {
            client: RefCell::new(client),
            target: target.clone(),
            scope,
            clock,
            run_lock: None,
            in_tx: false,
        };
        match store.connection_tls() {
            Ok(Some(version)) => tracing::debug!("connected to {} over {version}", store.target),
            Ok(None) => tracing::debug!("connected to {} without TLS", store.target),
            Err(e) => tracing::debug!("{e}"),
        }
        if writable {
            store.take_run_lock()?;
            store.migrate()?;
            // Who holds the lock, for a runner that is refused (best effort: the lock itself
            // is what counts).
            if let Err(e) = store.note_holder() {
                tracing::debug!("{e}");
            }
        } else {
            store.check_version()?;
        }
        Ok(store)
    }

    /// The connection, for a reader's own queries (`triage status`; not during a run).
    pub(crate) fn client(&self) -> std::cell::RefMut<'_, Client> {
        self.client.borrow_mut()
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    fn err(&self, e: postgres::Error) -> StateError {
        StateError::Postgres {
            target: self.target.clone(),
            message: describe(&e),
        }
    }

    /// The version the database's schema is at (0 before triage created it).
    fn version(&self) -> Result<usize, StateError> {
        let mut c = self.client.borrow_mut();
        let exists: bool = c
            .query_one("SELECT to_regclass('triage_schema') IS NOT NULL", &[])
            .map_err(|e| self.err(e))?
            .get(0);
        if !exists {
            return Ok(0);
        }
        let row = c
            .query_opt("SELECT version FROM triage_schema", &[])
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get::<_, i32>(0).max(0) as usize).unwrap_or(0))
    }

    fn newer(&self, version: usize) -> StateError {
        StateError::Postgres {
            target: self.target.clone(),
            message: format!(
                "written by a newer version of triage (schema {version}; this version knows up to {}): \
                 upgrade triage, or use another --state",
                MIGRATIONS.len()
            ),
        }
    }

    fn check_version(&self) -> Result<(), StateError> {
        let version = self.version()?;
        if version > MIGRATIONS.len() {
            return Err(self.newer(version));
        }
        Ok(())
    }

    /// Whether the schema is this binary's (a dry run reads only such a store).
    pub fn is_current(&self) -> Result<bool, StateError> {
        Ok(self.version()? == MIGRATIONS.len())
    }

    /// Create or migrate the schema in one transaction under an advisory transaction lock, the
    /// version read again under it: runners starting together on a new database all succeed.
    fn migrate(&mut self) -> Result<(), StateError> {
        self.check_version()?;
        if self.is_current()? {
            return Ok(());
        }
        let target = self.target.clone();
        let err = |e: postgres::Error| StateError::Postgres {
            target: target.clone(),
            message: describe(&e),
        };
        let mut c = self.client.borrow_mut();
        let mut tx = c.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(err)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS triage_schema (version INTEGER NOT NULL)")
            .map_err(err)?;
        let version = tx
            .query_opt("SELECT version FROM triage_schema", &[])
            .map_err(err)?
            .map(|r| r.get::<_, i32>(0).max(0) as usize);
        if version.is_none() {
            tx.execute("INSERT INTO triage_schema (version) VALUES (0)", &[])
                .map_err(err)?;
        }
        let version = version.unwrap_or(0);
        if version > MIGRATIONS.len() {
            drop(tx);
            drop(c);
            return Err(self.newer(version));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.batch_execute(step).map_err(err)?;
            tx.execute(
                "UPDATE triage_schema SET version = $1",
                &[&((i + 1) as i32)],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Take the job's run lock: a session advisory lock, so it is the server that knows
    /// whether its holder is alive (a dead runner's connection, and its lock, are gone).
    fn take_run_lock(&mut self) -> Result<(), StateError> {
        let key = lock_key("run lock", &[&self.scope.source, &self.scope.jira]);
        let job = format!("{}\n{}", self.scope.source, self.scope.jira);
        let mut c = self.client.borrow_mut();
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(|e| self.err(e))?
            .get(0);
        // The holder's row exists only once the schema does (the first run creates it after
        // taking the lock).
        let has_table: bool = c
            .query_one("SELECT to_regclass('run_locks') IS NOT NULL", &[])
            .map_err(|e| self.err(e))?
            .get(0);
        let left = if has_table {
            c.query_opt("SELECT holder FROM run_locks WHERE job = $1", &[&job])
                .map_err(|e| self.err(e))?
                .map(|r| r.get::<_, String>(0))
        } else {
            None
        };
        if !got {
            // A holder that started a moment ago may not have written its name yet.
            let mut left = left;
            for _ in 0..40 {
                if left.is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                left = c
                    .query_opt(
                        "SELECT holder FROM run_locks WHERE job = $1 AND to_regclass('run_locks') IS NOT NULL",
                        &[&job],
                    )
                    .ok()
                    .flatten()
                    .map(|r| r.get::<_, String>(0));
            }
            return Err(StateError::Locked {
                path: self.target.clone().into(),
                holder: match left {
                    Some(h) => format!("triage {h}"),
                    None => "a running triage".into(),
                },
            });
        }
        if let Some(left) = left {
            tracing::warn!(
                "the run that held this job's lock ({left}) did not finish: taking over its lock; \
                 logs it had not finished are processed again from the checkpoint"
            );
        }
        drop(c);
        self.run_lock = Some(key);
        Ok(())
    }

    /// Write who holds the run lock (after the schema exists).
    fn note_holder(&self) -> Result<(), StateError> {
        if self.run_lock.is_none() {
            return Ok(());
        }
        let job = format!("{}\n{}", self.scope.source, self.scope.jira);
        let holder = format!(
            "on {} pid {} since {}",
            host_name(),
            std::process::id(),
            self.clock.now().to_rfc3339()
        );
        self.client
            .borrow_mut()
            .execute(
                "INSERT INTO run_locks (job, holder, since_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, since_ms = excluded.since_ms",
                &[&job, &holder, &ms(self.clock.now())],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Run `f` atomically: in a savepoint inside the writer's batch (a failed statement does
    /// not spoil the batch), or in its own transaction outside one.
    fn atomic<T>(
        &self,
        f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StateError> {
        let mut f = f;
        let mut c = self.client.borrow_mut();
        let (open, ok, undo) = if self.in_tx {
            (
                "SAVEPOINT triage_op",
                "RELEASE SAVEPOINT triage_op",
                "ROLLBACK TO SAVEPOINT triage_op",
            )
        } else {
            ("BEGIN", "COMMIT", "ROLLBACK")
        };
        let mut attempt = 0;
        loop {
            c.batch_execute(open).map_err(|e| self.err(e))?;
            match f(&mut c) {
                Ok(v) => {
                    c.batch_execute(ok).map_err(|e| self.err(e))?;
                    return Ok(v);
                }
                Err(e) => {
                    let _ = c.batch_execute(undo);
                    // Two runners writing the same rows in another order: the server picks
                    // one to fail; its work is undone to the savepoint and done again.
                    let retry = e.code().is_some_and(|code| {
                        *code == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                            || *code == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                    });
                    attempt += 1;
                    if !retry || attempt >= 5 {
                        return Err(self.err(e));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(
                        10 * attempt + fastrand::u64(0..20),
                    ));
                }
            }
        }
    }

    /// One read (no transaction of its own needed).
    fn read<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StateError> {
        if self.in_tx {
            // A failed read inside the batch must not abort it.
            return self.atomic(f);
        }
        let mut c = self.client.borrow_mut();
        f(&mut c).map_err(|e| self.err(e))
    }
}

impl Store for PgStore {
    fn shown(&self) -> String {
        self.target().to_string()
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn as_postgres(&self) -> Option<&PgStore> {
        Some(self)
    }

    fn seen_among(&self, log_ids: &[String]) -> Result<HashSet<String>, StateError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT log_id FROM seen WHERE source = $1 AND log_id = ANY($2)",
                &[&self.scope.source, &log_ids],
            )
        })?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    /// The TLS protocol of this connection as the server reports it, `None` when plain text.
    fn connection_tls(&self) -> Result<Option<String>, StateError> {
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
                &[],
            )
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Each row of `table` as a JSON object text.
    fn export_table(&self, table: &str, columns: &[&str]) -> Result<Vec<String>, StateError> {
        let sql = format!(
            "SELECT row_to_json(t)::text FROM (SELECT {} FROM {table}) t",
            columns.join(", ")
        );
        let rows = self.read(|c| c.query(sql.as_str(), &[]))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// Insert one exported row (a JSON object text) unless its key is there; 1 when added.
    fn import_row(&mut self, table: &str, columns: &[&str], row: &str) -> Result<u64, StateError> {
        let sql = format!(
            "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_record(NULL::{table}, $1::text::json)
             ON CONFLICT DO NOTHING",
            cols = columns.join(", ")
        );
        self.atomic(|c| c.execute(sql.as_str(), &[&row]))
    }

    fn begin(&mut self) -> Result<(), StateError> {
        self.client
            .borrow_mut()
            .batch_execute("BEGIN")
            .map_err(|e| self.err(e))?;
        self.in_tx = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StateError> {
        self.in_tx = false;
        self.client
            .borrow_mut()
            .batch_execute("COMMIT")
            .map_err(|e| self.err(e))
    }

    fn rollback(&mut self) {
        self.in_tx = false;
        let _ = self.client.borrow_mut().batch_execute("ROLLBACK");
    }

    fn schema_version(&self) -> Result<usize, StateError> {
        self.version()
    }

    fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        self.read(|c| {
            c.query_opt(
                "SELECT until_ms FROM checkpoints WHERE source = $1",
                &[&source],
            )
        })
        .map(|r| r.and_then(|r| from_ms(r.get(0))))
    }

    fn advance_checkpoint(
        &mut self,
        source: &str,
        until: DateTime<Utc>,
        keep_ids_for: chrono::Duration,
    ) -> Result<(), StateError> {
        self.atomic(|c| {
            c.execute(
                "INSERT INTO checkpoints (source, until_ms, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (source) DO UPDATE SET until_ms = GREATEST(checkpoints.until_ms, excluded.until_ms),
                   updated_ms = excluded.updated_ms",
                &[&source, &ms(until), &ms(self.clock.now())],
            )?;
            c.execute(
                "DELETE FROM seen WHERE source = $1 AND ts_ms IS NOT NULL AND ts_ms < $2",
                &[&source, &ms(until - keep_ids_for)],
            )?;
            Ok(())
        })
    }

    /// Returns what was added to each ticket's pending count.
    fn record(&mut self, batch: &[Processed]) -> Result<Vec<(String, u64)>, StateError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (source, jira) = (self.scope.source.clone(), self.scope.jira.clone());
        self.atomic(|c| {
            let seen = c.prepare(
                "INSERT INTO seen (source, log_id, ts_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )?;
            let fail = c.prepare(
                "INSERT INTO failed (source, log_id, event, error, runs, first_failed_ms) VALUES ($1, $2, $3, $4, 1, $5)
                 ON CONFLICT (source, log_id) DO UPDATE SET error = excluded.error, runs = failed.runs + 1",
            )?;
            let done = c.prepare("DELETE FROM failed WHERE source = $1 AND log_id = $2")?;
            let count = c.prepare(
                "INSERT INTO comments (jira, ticket, pending) VALUES ($1, $2, $3)
                 ON CONFLICT (jira, ticket) DO UPDATE SET pending = comments.pending + excluded.pending",
            )?;
            let now = ms(self.clock.now());
            // Tickets' counts are shared by every runner of the Jira: added last, in key
            // order, so two runners' batches never wait on each other in a cycle.
            let mut counts: std::collections::BTreeMap<&str, i64> = Default::default();
            for p in batch {
                let ts = p.timestamp.map(ms);
                let new = c.execute(&seen, &[&source, &p.id, &ts])?;
                // A log that failed was seen then, uncounted: it counts when its retry succeeds.
                let retried = match &p.failed {
                    Some((event, error)) => {
                        c.execute(&fail, &[&source, &p.id, &event.to_string(), error, &now])?;
                        0
                    }
                    None => c.execute(&done, &[&source, &p.id])?,
                };
                if let (true, Some(ticket)) = (new + retried > 0, &p.recurrence) {
                    *counts.entry(ticket.as_str()).or_default() += 1;
                }
            }
            for (ticket, n) in &counts {
                c.execute(&count, &[&jira, ticket, n])?;
            }
            Ok(counts
                .into_iter()
                .map(|(ticket, n)| (ticket.to_string(), n as u64))
                .collect())
        })
    }

    fn failed_logs(&self) -> Result<Vec<FailedLog>, StateError> {
        let rows = self.read(|c| {
            c.query(
                "SELECT log_id, event, runs FROM failed WHERE source = $1
                 ORDER BY coalesce(first_failed_ms, 0), log_id",
                &[&self.scope.source],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| FailedLog {
                id: r.get(0),
                event: serde_json::from_str(r.get(1)).unwrap_or(Value::Null),
                runs: r.get::<_, i64>(2).max(0) as u32,
            })
            .collect())
    }

    fn give_up(&mut self, ids: &[String]) -> Result<(), StateError> {
        let source = self.scope.source.clone();
        self.atomic(|c| {
            for id in ids {
                c.execute(
                    "DELETE FROM failed WHERE source = $1 AND log_id = $2",
                    &[&source, id],
                )?;
            }
            Ok(())
        })
    }

    fn ticket_for(&self, fingerprint: &str) -> Result<Option<String>, StateError> {
        self.read(|c| {
            c.query_opt(
                "SELECT key FROM tickets WHERE jira = $1 AND fingerprint = $2",
                &[&self.scope.jira, &fingerprint],
            )
        })
        .map(|r| r.map(|r| r.get(0)))
    }

    fn remember_ticket(&mut self, fingerprint: &str, key: &str) -> Result<(), StateError> {
        let jira = self.scope.jira.clone();
        self.atomic(|c| {
            c.execute(
                "INSERT INTO tickets (jira, fingerprint, key, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (jira, fingerprint) DO UPDATE SET key = excluded.key",
                &[&jira, &fingerprint, &key, &ms(self.clock.now())],
            )?;
            c.execute(
                "DELETE FROM creating WHERE jira = $1 AND fingerprint = $2",
                &[&jira, &fingerprint],
            )?;
            Ok(())
        })
    }

    fn begin_create(&self, fingerprint: &str) -> Result<(), StateError> {
        self.atomic(|c| {
            c.execute(
                "INSERT INTO creating (jira, fingerprint, started_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (jira, fingerprint) DO UPDATE SET started_ms = excluded.started_ms",
                &[&self.scope.jira, &fingerprint, &ms(self.clock.now())],
            )
            .map(|_| ())
        })
    }

    fn create_begun(&self, fingerprint: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        self.read(|c| {
            c.query_opt(
                "SELECT started_ms FROM creating WHERE jira = $1 AND fingerprint = $2",
                &[&self.scope.jira, &fingerprint],
            )
        })
        .map(|r| r.and_then(|r| from_ms(r.get(0))))
    }

    /// The fingerprint's create lease: a session advisory lock on (Jira, fingerprint). It is
    /// not part of the batch transaction: taken and released at once, and a runner that dies
    /// loses it with its connection (its begun create is then settled by the next holder).
    fn try_lease(&self, fingerprint: &str) -> Result<Lease, StateError> {
        let key = lock_key("create lease", &[&self.scope.jira, fingerprint]);
        let got: bool = self
            .read(|c| c.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))?
            .get(0);
        Ok(if got { Lease::Taken } else { Lease::Held })
    }

    fn release_lease(&self, fingerprint: &str) -> Result<(), StateError> {
        let key = lock_key("create lease", &[&self.scope.jira, fingerprint]);
        self.read(|c| c.query_one("SELECT pg_advisory_unlock($1)", &[&key]))
            .map(|_| ())
    }

    fn cached_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        ttl: chrono::Duration,
    ) -> Result<Option<String>, StateError> {
        self.read(|c| {
            c.query_opt(
                "SELECT analysis FROM analyses WHERE fingerprint = $1 AND analyzer = $2 AND created_ms >= $3",
                &[&fingerprint, &analyzer, &ms(self.clock.now() - ttl)],
            )
        })
        .map(|r| r.map(|r| r.get(0)))
    }

    fn cache_analysis(
        &self,
        fingerprint: &str,
        analyzer: &str,
        analysis: &str,
    ) -> Result<(), StateError> {
        self.atomic(|c| {
            c.execute(
                "INSERT INTO analyses (fingerprint, analyzer, analysis, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (fingerprint, analyzer) DO UPDATE SET analysis = excluded.analysis,
                   created_ms = excluded.created_ms",
                &[&fingerprint, &analyzer, &analysis, &ms(self.clock.now())],
            )
            .map(|_| ())
        })
    }

    fn comment_state(&self, ticket: &str) -> Result<CommentState, StateError> {
        let row = self.read(|c| {
            c.query_opt(
                "SELECT last_ms, pending, first_ms, last_seen_ms, hosts FROM comments
                 WHERE jira = $1 AND ticket = $2",
                &[&self.scope.jira, &ticket],
            )
        })?;
        Ok(row
            .map(|r| CommentState {
                last_comment: r.get::<_, Option<i64>>(0).and_then(from_ms),
                pending: r.get::<_, i64>(1).max(0) as u64,
                first_seen: r.get::<_, Option<i64>>(2).and_then(from_ms),
                last_seen: r.get::<_, Option<i64>>(3).and_then(from_ms),
                hosts: serde_json::from_str(r.get(4)).unwrap_or_default(),
            })
            .unwrap_or_default())
    }

    fn remember_written(
        &self,
        ticket: &str,
        summary: &str,
        description: &str,
    ) -> Result<(), StateError> {
        self.atomic(|c| {
            c.execute(
                "INSERT INTO written (jira, ticket, summary, description) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (jira, ticket) DO UPDATE SET summary = excluded.summary,
                   description = excluded.description",
                &[&self.scope.jira, &ticket, &summary, &description],
            )
            .map(|_| ())
        })
    }

    fn written(&self, ticket: &str) -> Result<Option<(String, String)>, StateError> {
        let row = self.read(|c| {
            c.query_opt(
                "SELECT summary, description FROM written WHERE jira = $1 AND ticket = $2",
                &[&self.scope.jira, &ticket],
            )
        })?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn note_created_ticket(&self, ticket: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.atomic(|c| {
            c.execute(
                "INSERT INTO comments (jira, ticket, last_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (jira, ticket) DO UPDATE SET last_ms = COALESCE(comments.last_ms, excluded.last_ms)",
                &[&self.scope.jira, &ticket, &ms(at)],
            )
            .map(|_| ())
        })
    }

    /// The pending count is moved in the statement itself, under the row's lock: what another
    /// runner's `record` adds meanwhile is kept whichever commits first.
    fn change_comment_state(&self, ticket: &str, change: &CommentChange) -> Result<(), StateError> {
        let hosts = serde_json::to_string(&change.hosts).unwrap_or_else(|_| "[]".into());
        self.atomic(|c| {
            c.execute(
                "INSERT INTO comments (jira, ticket, last_ms, pending, first_ms, last_seen_ms, hosts)
                 VALUES ($1, $2, $3, GREATEST($4::BIGINT, 0), $5, $6, $7)
                 ON CONFLICT (jira, ticket) DO UPDATE SET last_ms = excluded.last_ms,
                   pending = GREATEST(comments.pending + $4::BIGINT, 0),
                   first_ms = excluded.first_ms, last_seen_ms = excluded.last_seen_ms, hosts = excluded.hosts",
                &[
                    &self.scope.jira,
                    &ticket,
                    &change.last_comment.map(ms),
                    &change.pending,
                    &change.first_seen.map(ms),
                    &change.last_seen.map(ms),
                    &hosts,
                ],
            )
            .map(|_| ())
        })
    }

    fn load_templates(&self) -> Result<TemplateSnapshot, StateError> {
        let (families, templates, merges) = self.read(|c| {
            Ok((
                c.query(
                    "SELECT id, service, tokens, variable FROM template_families ORDER BY id",
                    &[],
                )?,
                c.query(
                    "SELECT t.fingerprint, t.id, t.family, t.service, t.template, t.tokens, t.count,
                            t.first_ms, t.last_ms, t.last_used,
                            coalesce((SELECT min(key) FROM tickets k WHERE k.fingerprint = t.fingerprint
                                    AND ($1 = '' OR k.jira = $1)),
                                     (SELECT min(k.key) FROM tickets k JOIN template_merges m
                                        ON k.fingerprint = m.fingerprint WHERE m.into_fingerprint = t.fingerprint
                                    AND ($1 = '' OR k.jira = $1))),
                            t.vars
                     FROM templates t ORDER BY t.id",
                    &[&self.scope.jira],
                )?,
                c.query(
                    "SELECT fingerprint, into_fingerprint FROM template_merges ORDER BY merged_ms, fingerprint",
                    &[],
                )?,
            ))
        })?;
        let bad = |what: &str, e: serde_json::Error| StateError::Postgres {
            target: self.target.clone(),
            message: format!("a stored {what} is not valid JSON: {e}"),
        };
        let mut snapshot = TemplateSnapshot::default();
        for r in families {
            snapshot.families.push(StoredFamily {
                id: r.get::<_, i64>(0) as u64,
                service: r.get(1),
                tokens: serde_json::from_str(r.get(2)).map_err(|e| bad("family", e))?,
                variable: serde_json::from_str(r.get(3)).map_err(|e| bad("family", e))?,
            });
        }
        for r in templates {
            snapshot.templates.push(StoredTemplate {
                fingerprint: r.get(0),
                id: r.get::<_, i64>(1) as u64,
                family: r.get::<_, i64>(2) as u64,
                service: r.get(3),
                template: r.get(4),
                tokens: serde_json::from_str(r.get(5)).map_err(|e| bad("template", e))?,
                count: r.get::<_, i64>(6).max(0) as u64,
                first_seen: r.get::<_, Option<i64>>(7).and_then(from_ms),
                last_seen: r.get::<_, Option<i64>>(8).and_then(from_ms),
                last_used: r.get::<_, i64>(9).max(0) as u64,
                ticket: r.get(10),
                // What an older version could not write, or cannot be read, is only shown.
                values: serde_json::from_str(r.get(11)).unwrap_or_default(),
            });
        }
        for r in merges {
            snapshot.merges.push(TemplateMerge {
                from: r.get(0),
                into: r.get(1),
            });
        }
        Ok(snapshot)
    }

    /// Save what the template miner changed. Runners learning at the same moment may give
    /// different templates the same id (each numbers from its own snapshot): a template whose
    /// id another runner took first is not saved (the fingerprint, which tickets key on,
    /// depends only on the template, so nothing is lost but this runner's count).
    fn save_templates(&mut self, changes: &TemplateChanges) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let now = ms(self.clock.now());
        self.atomic(|c| {
            for f in &changes.families {
                c.execute(
                    "INSERT INTO template_families (id, service, tokens, variable) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET tokens = excluded.tokens, variable = excluded.variable
                     WHERE template_families.service = excluded.service",
                    &[
                        &(f.id as i64),
                        &f.service,
                        &json_text(&f.tokens),
                        &json_text(&f.variable),
                    ],
                )?;
            }
            for t in &changes.templates {
                let updated = c.execute(
                    "UPDATE templates SET template = $2, tokens = $3, count = $4, first_ms = $5, last_ms = $6,
                       last_used = $7, vars = $8 WHERE fingerprint = $1",
                    &[
                        &t.fingerprint,
                        &t.template,
                        &json_text(&t.tokens),
                        &(t.count as i64),
                        &t.first_seen.map(ms),
                        &t.last_seen.map(ms),
                        &(t.last_used as i64),
                        &json_text(&t.values),
                    ],
                )?;
                if updated == 0 {
                    c.execute(
                        "INSERT INTO templates (fingerprint, id, family, service, template, tokens, count, first_ms,
                                                last_ms, last_used, vars)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
                        &[
                            &t.fingerprint,
                            &(t.id as i64),
                            &(t.family as i64),
                            &t.service,
                            &t.template,
                            &json_text(&t.tokens),
                            &(t.count as i64),
                            &t.first_seen.map(ms),
                            &t.last_seen.map(ms),
                            &(t.last_used as i64),
                            &json_text(&t.values),
                        ],
                    )?;
                }
            }
            for fp in &changes.removed {
                c.execute("DELETE FROM templates WHERE fingerprint = $1", &[fp])?;
            }
            for m in &changes.merges {
                c.execute(
                    "INSERT INTO template_merges (fingerprint, into_fingerprint, merged_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (fingerprint) DO UPDATE SET into_fingerprint = excluded.into_fingerprint",
                    &[&m.from, &m.into, &now],
                )?;
            }
            if !changes.removed.is_empty() {
                c.execute(
                    "DELETE FROM template_families WHERE id NOT IN (SELECT family FROM templates)",
                    &[],
                )?;
            }
            Ok(())
        })
    }

    fn begin_run(&self, started: DateTime<Utc>) -> Result<i64, StateError> {
        self.atomic(|c| {
            c.query_one(
                "INSERT INTO runs (started_ms) VALUES ($1) RETURNING id",
                &[&ms(started)],
            )
            .map(|r| r.get(0))
        })
    }

    fn end_run(&self, id: i64, exit_code: u8, summary: &Value) -> Result<(), StateError> {
        self.atomic(|c| {
            c.execute(
                "UPDATE runs SET ended_ms = $2, exit_code = $3, summary = $4 WHERE id = $1",
                &[
                    &id,
                    &ms(self.clock.now()),
                    &(exit_code as i32),
                    &summary.to_string(),
                ],
            )
            .map(|_| ())
        })
    }

    fn record_run(
        &self,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
        exit_code: u8,
        summary: &Value,
    ) -> Result<(), StateError> {
        let count = |name: &str| summary[name].as_u64().unwrap_or(0) as i64;
        self.atomic(|c| {
            c.execute(
                "INSERT INTO job_runs (source, jira, started_ms, ended_ms, exit_code, fetched, processed,
                                       created, existing, commented, duplicates, skipped, failed, summary)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    &self.scope.source,
                    &self.scope.jira,
                    &ms(started),
                    &ms(ended),
                    &(exit_code as i32),
                    &count("fetched"),
                    &count("processed"),
                    &count("created"),
                    &count("existing"),
                    &count("commented"),
                    &count("duplicates"),
                    &count("skipped"),
                    &count("failed"),
                    &summary.to_string(),
                ],
            )
            .map(|_| ())
        })
    }

    /// The run is over: forget who held the lock, then give the lock back.
    fn release_lock(&self) {
        if let Some(key) = self.run_lock {
            let job = format!("{}\n{}", self.scope.source, self.scope.jira);
            let mut c = self.client.borrow_mut();
            let _ = c.execute("DELETE FROM run_locks WHERE job = $1", &[&job]);
            let _ = c.query_one("SELECT pg_advisory_unlock($1)", &[&key]);
        }
    }

    fn last_success(&self) -> Result<Option<DateTime<Utc>>, StateError> {
        self.read(|c| c.query_one("SELECT max(ended_ms) FROM runs WHERE exit_code = 0", &[]))
            .map(|r| r.get::<_, Option<i64>>(0).and_then(from_ms))
    }
}

impl Drop for PgStore {
    /// A store closed normally says so (its holder row goes, its locks are given back); a
    /// killed runner's row stays, and the next holder warns that it took the lock over.
    fn drop(&mut self) {
        if self.in_tx {
            self.rollback();
        }
        self.release_lock();
    }
}

/// A PostgreSQL error as one clear line (a lost connection said so in plain words).
fn describe(e: &postgres::Error) -> String {
    if e.is_closed() {
        return "the connection to PostgreSQL was lost (the server closed it or went away)".into();
    }
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact_url("postgres://triage:s3cret@db.internal:5432/triage?sslmode=require"),
            "postgres://triage:***@db.internal:5432/triage?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://u@h/db?password=s3cret&sslmode=verify-full"),
            "postgresql://u@h/db?password=***&sslmode=verify-full"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert!(!redact_url("postgres://u:p%40ss@h").contains("p%40ss"));
    }
}
