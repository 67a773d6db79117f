//! `triage status`: what the state file holds for the configured job, for a person or a script.
//!
//! In: the state path and the job (Datadog source and Jira) that the same settings would give a
//! run. Out: the job's last runs (start, duration, exit code, counts), its checkpoint, its retry
//! list and the tickets it knows (fingerprint, key, last comment), as text or one JSON line.
//! Read-only: the file is opened with `SQLITE_OPEN_READ_ONLY` and no lock is taken, so it is
//! safe while a run holds the lock (SQLite's WAL lets a reader see the last commit). Fails
//! when the state file cannot be read; a missing file is an empty status, not an error.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::config::cli::Cli;
use crate::config::{parse_base_url, ConfigError, DatadogSite};
use crate::pipeline::report::{plural, SCHEMA_VERSION};
use crate::state::Scope;

/// One job's part of the state.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema_version: u32,
    /// The state file.
    pub state: PathBuf,
    /// Whether the state file exists yet.
    pub exists: bool,
    /// The job: its log source (empty for `--input`) and its Jira (empty without Jira).
    pub job: Job,
    /// The last runs of this job, newest first.
    pub runs: Vec<RunRow>,
    /// The time up to which every log of the source is final.
    pub checkpoint: Option<DateTime<Utc>>,
    /// Logs waiting to be retried.
    pub retry: Vec<RetryRow>,
    /// Tickets this job created or matched, oldest first.
    pub tickets: Vec<TicketRow>,
    /// Other jobs with runs recorded in the same file.
    pub other_jobs: Vec<Job>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub source: String,
    pub jira: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub started: Option<DateTime<Utc>>,
    pub duration_ms: i64,
    pub exit_code: i64,
    pub fetched: i64,
    pub processed: i64,
    pub created: i64,
    pub existing: i64,
    pub commented: i64,
    pub duplicates: i64,
    pub skipped: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetryRow {
    pub id: String,
    /// Runs that have tried it.
    pub runs: i64,
    pub first_failed: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketRow {
    pub fingerprint: String,
    pub key: String,
    pub created: Option<DateTime<Utc>>,
    /// When the last recurrence comment was posted.
    pub last_comment: Option<DateTime<Utc>>,
    /// Occurrences counted since then, not yet commented.
    pub pending: i64,
}

/// The state file and the job the settings describe, computed as a run computes them, but
/// without needing any secret.
pub fn target(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(PathBuf, Scope), ConfigError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let path = if cli.no_state {
        return Err(ConfigError::Usage(
            "triage status reads the state file: drop --no-state".into(),
        ));
    } else if let Some(path) = &cli.state {
        path.clone()
    } else if let Some(dir) = set("XDG_STATE_HOME") {
        PathBuf::from(dir).join("triage/state.db")
    } else if let Some(home) = set("HOME") {
        PathBuf::from(home).join(".local/state/triage/state.db")
    } else {
        return Err(ConfigError::Usage(
            "no state file: neither XDG_STATE_HOME nor HOME is set; give --state PATH".into(),
        ));
    };
    let source = match &cli.input {
        Some(_) => String::new(),
        None => {
            let site = DatadogSite::resolve(&cli.dd_site, cli.dd_api_url.as_deref())?;
            Scope::datadog(&site.api_base, &cli.query)
        }
    };
    let url = cli.jira_url.clone().filter(|s| !s.trim().is_empty());
    let project = cli
        .jira_project
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| set("JIRA_PROJECT_KEY"));
    let jira = match (url, project) {
        (Some(url), Some(project)) => {
            Scope::jira(&parse_base_url("JIRA_URL", &url)?, project.trim())
        }
        _ => String::new(),
    };
    Ok((path, Scope { source, jira }))
}

fn from_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(|v| Utc.timestamp_millis_opt(v).single())
}

/// Read the job's part of the state file, read-only.
pub fn read(path: &Path, scope: &Scope, last_runs: usize) -> anyhow::Result<Status> {
    if crate::state::is_postgres(path) {
        return read_postgres(path, scope, last_runs);
    }
    let mut status = Status::empty(path.to_path_buf(), path.exists(), scope);
    if !status.exists {
        return Ok(status);
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the state file {} read-only", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let has = |table: &str| -> anyhow::Result<bool> {
        Ok(conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    };
    let ctx = || format!("reading the state file {}", path.display());
    if has("job_runs").with_context(ctx)? {
        let mut stmt = conn.prepare(
            "SELECT started_ms, ended_ms, exit_code, fetched, processed, created, existing, commented,
                    duplicates, skipped, failed
             FROM job_runs WHERE source = ?1 AND jira = ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![scope.source, scope.jira, last_runs as i64], |r| {
            let started: i64 = r.get(0)?;
            let ended: i64 = r.get(1)?;
            Ok(RunRow {
                started: from_ms(Some(started)),
                duration_ms: (ended - started).max(0),
                exit_code: r.get(2)?,
                fetched: r.get(3)?,
                processed: r.get(4)?,
                created: r.get(5)?,
                existing: r.get(6)?,
                commented: r.get(7)?,
                duplicates: r.get(8)?,
                skipped: r.get(9)?,
                failed: r.get(10)?,
            })
        })?;
        status.runs = rows.collect::<Result<_, _>>().with_context(ctx)?;
        let mut stmt = conn.prepare(
            "SELECT DISTINCT source, jira FROM job_runs WHERE NOT (source = ?1 AND jira = ?2)
             ORDER BY source, jira",
        )?;
        let rows = stmt.query_map(params![scope.source, scope.jira], |r| {
            Ok(Job {
                source: r.get(0)?,
                jira: r.get(1)?,
            })
        })?;
        status.other_jobs = rows.collect::<Result<_, _>>().with_context(ctx)?;
    }
    if has("checkpoints").with_context(ctx)? && !scope.source.is_empty() {
        status.checkpoint = from_ms(
            conn.query_row(
                "SELECT until_ms FROM checkpoints WHERE source = ?1",
                [&scope.source],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .with_context(ctx)?,
        );
    }
    // The per-job columns exist from schema 4 on; an older file is read by the next run.
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version >= 4 {
        let mut stmt = conn.prepare(
            "SELECT log_id, runs, first_failed_ms, error FROM failed WHERE source = ?1
             ORDER BY coalesce(first_failed_ms, 0), log_id",
        )?;
        let rows = stmt.query_map([&scope.source], |r| {
            Ok(RetryRow {
                id: r.get(0)?,
                runs: r.get(1)?,
                first_failed: from_ms(r.get(2)?),
                error: r.get(3)?,
            })
        })?;
        status.retry = rows.collect::<Result<_, _>>().with_context(ctx)?;
        let mut stmt = conn.prepare(
            "SELECT t.fingerprint, t.key, t.created_ms, c.last_ms, coalesce(c.pending, 0)
             FROM tickets t LEFT JOIN comments c ON c.jira = t.jira AND c.ticket = t.key
             WHERE t.jira = ?1 ORDER BY t.created_ms, t.key",
        )?;
        let rows = stmt.query_map([&scope.jira], |r| {
            Ok(TicketRow {
                fingerprint: r.get(0)?,
                key: r.get(1)?,
                created: from_ms(r.get(2)?),
                last_comment: from_ms(r.get(3)?),
                pending: r.get(4)?,
            })
        })?;
        status.tickets = rows.collect::<Result<_, _>>().with_context(ctx)?;
    }
    Ok(status)
}

/// The job's part of a PostgreSQL store (the same tables and columns as the file's).
fn read_postgres(url: &Path, scope: &Scope, last_runs: usize) -> anyhow::Result<Status> {
    let shown = crate::state::display_target(url);
    let store = crate::state::StateStore::open_read_only(url, scope.clone())?;
    let mut status = Status::empty(PathBuf::from(&shown), store.is_some(), scope);
    let Some(store) = store else {
        return Ok(status);
    };
    let Some(pg) = store.as_postgres() else {
        return Ok(status);
    };
    let mut c = pg.client();
    let ctx = || format!("reading the state store {shown}");
    let ms = |r: &postgres::Row, i: usize| from_ms(r.get::<_, Option<i64>>(i));
    for r in c
        .query(
            "SELECT started_ms, ended_ms, exit_code, fetched, processed, created, existing, commented,
                    duplicates, skipped, failed
             FROM job_runs WHERE source = $1 AND jira = $2 ORDER BY id DESC LIMIT $3",
            &[&scope.source, &scope.jira, &(last_runs as i64)],
        )
        .with_context(ctx)?
    {
        let (started, ended): (i64, i64) = (r.get(0), r.get(1));
        status.runs.push(RunRow {
            started: from_ms(Some(started)),
            duration_ms: (ended - started).max(0),
            exit_code: r.get::<_, i32>(2) as i64,
            fetched: r.get(3),
            processed: r.get(4),
            created: r.get(5),
            existing: r.get(6),
            commented: r.get(7),
            duplicates: r.get(8),
            skipped: r.get(9),
            failed: r.get(10),
        });
    }
    for r in c
        .query(
            "SELECT DISTINCT source, jira FROM job_runs WHERE NOT (source = $1 AND jira = $2)
             ORDER BY source, jira",
            &[&scope.source, &scope.jira],
        )
        .with_context(ctx)?
    {
        status.other_jobs.push(Job {
            source: r.get(0),
            jira: r.get(1),
        });
    }
    if !scope.source.is_empty() {
        status.checkpoint = c
            .query_opt(
                "SELECT until_ms FROM checkpoints WHERE source = $1",
                &[&scope.source],
            )
            .with_context(ctx)?
            .and_then(|r| ms(&r, 0));
    }
    for r in c
        .query(
            "SELECT log_id, runs, first_failed_ms, error FROM failed WHERE source = $1
             ORDER BY coalesce(first_failed_ms, 0), log_id",
            &[&scope.source],
        )
        .with_context(ctx)?
    {
        status.retry.push(RetryRow {
            id: r.get(0),
            runs: r.get(1),
            first_failed: ms(&r, 2),
            error: r.get(3),
        });
    }
    for r in c
        .query(
            "SELECT t.fingerprint, t.key, t.created_ms, c.last_ms, coalesce(c.pending, 0)
             FROM tickets t LEFT JOIN comments c ON c.jira = t.jira AND c.ticket = t.key
             WHERE t.jira = $1 ORDER BY t.created_ms, t.key",
            &[&scope.jira],
        )
        .with_context(ctx)?
    {
        status.tickets.push(TicketRow {
            fingerprint: r.get(0),
            key: r.get(1),
            created: ms(&r, 2),
            last_comment: ms(&r, 3),
            pending: r.get(4),
        });
    }
    Ok(status)
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

fn job_name(job: &Job) -> String {
    format!(
        "source: {}; Jira: {}",
        if job.source.is_empty() {
            "a file (--input)"
        } else {
            &job.source
        },
        if job.jira.is_empty() {
            "none"
        } else {
            &job.jira
        }
    )
}

impl Status {
    /// Nothing read yet: `state` as shown, whether it exists, and the job.
    fn empty(state: PathBuf, exists: bool, scope: &Scope) -> Self {
        Status {
            schema_version: SCHEMA_VERSION,
            state,
            exists,
            job: Job {
                source: scope.source.clone(),
                jira: scope.jira.clone(),
            },
            runs: Vec::new(),
            checkpoint: None,
            retry: Vec::new(),
            tickets: Vec::new(),
            other_jobs: Vec::new(),
        }
    }

    /// The status as a person reads it.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "State file: {}", self.state.display());
        let _ = writeln!(out, "Job: {}", job_name(&self.job));
        if !self.exists {
            out.push_str("\nNo state yet: no run has finished with this state file.\n");
            return out;
        }
        out.push('\n');
        if self.runs.is_empty() {
            out.push_str("Last runs: none recorded for this job\n");
        } else {
            let _ = writeln!(out, "Last runs (newest first):");
            let _ = writeln!(
                out,
                "  {:<20}  {:>9}  {:>4}  {:>7}  {:>7}  {:>8}  {:>9}  {:>10}  {:>7}  {:>6}",
                "STARTED",
                "DURATION",
                "EXIT",
                "FETCHED",
                "CREATED",
                "EXISTING",
                "COMMENTED",
                "DUPLICATES",
                "SKIPPED",
                "FAILED"
            );
            for r in &self.runs {
                let _ = writeln!(
                    out,
                    "  {:<20}  {:>7.1} s  {:>4}  {:>7}  {:>7}  {:>8}  {:>9}  {:>10}  {:>7}  {:>6}",
                    time(r.started),
                    r.duration_ms as f64 / 1000.0,
                    r.exit_code,
                    r.fetched,
                    r.created,
                    r.existing,
                    r.commented,
                    r.duplicates,
                    r.skipped,
                    r.failed
                );
            }
        }
        let _ = writeln!(
            out,
            "Checkpoint: {}",
            match (&self.checkpoint, self.job.source.is_empty()) {
                (_, true) => "none (a file is read whole each time)".to_string(),
                (Some(t), _) => format!("{} (every log up to then is final)", time(Some(*t))),
                (None, _) => "none yet (the next run reads the last 15 minutes)".to_string(),
            }
        );
        let _ = writeln!(
            out,
            "Retry list: {}",
            plural(self.retry.len() as u64, "log", "logs")
        );
        for r in &self.retry {
            let error: String = r.error.as_deref().unwrap_or("").chars().take(80).collect();
            let _ = writeln!(
                out,
                "  {}  failed in {}, first at {}: {error}",
                r.id,
                plural(r.runs.max(0) as u64, "run", "runs"),
                time(r.first_failed)
            );
        }
        let _ = writeln!(
            out,
            "Tickets: {}",
            plural(self.tickets.len() as u64, "known", "known")
        );
        if !self.tickets.is_empty() {
            let _ = writeln!(
                out,
                "  {:<18}  {:<12}  {:<20}  {:<20}  PENDING",
                "FINGERPRINT", "KEY", "CREATED", "LAST COMMENT"
            );
            for t in &self.tickets {
                let _ = writeln!(
                    out,
                    "  {:<18}  {:<12}  {:<20}  {:<20}  {}",
                    t.fingerprint,
                    t.key,
                    time(t.created),
                    time(t.last_comment),
                    t.pending
                );
            }
        }
        if !self.other_jobs.is_empty() {
            let _ = writeln!(
                out,
                "\nOther jobs in this file (select one with the same --query, DD_SITE/DD_API_URL, JIRA_URL and JIRA_PROJECT as its runs):"
            );
            for job in &self.other_jobs {
                let _ = writeln!(out, "  {}", job_name(job));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{CommentChange, Processed, StateStore};

    #[test]
    fn a_job_sees_its_runs_checkpoint_retries_and_tickets_while_a_run_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let scope = Scope {
            source: "datadog http://127.0.0.1:1 status:error".into(),
            jira: "http://127.0.0.1:2 OPS".into(),
        };
        let mut store = StateStore::open(&db, scope.clone()).unwrap();
        let t = |ms| Utc.timestamp_millis_opt(ms).single().unwrap();
        store
            .record(&[Processed {
                id: "log-9".into(),
                timestamp: None,
                failed: Some((serde_json::json!({"message": "m"}), "Jira 503".into())),
                recurrence: None,
            }])
            .unwrap();
        store.remember_ticket("fp1", "OPS-1").unwrap();
        store
            .change_comment_state(
                "OPS-1",
                &CommentChange {
                    last_comment: Some(t(5_000)),
                    pending: 2,
                    ..CommentChange::default()
                },
            )
            .unwrap();
        store
            .advance_checkpoint(&scope.source, t(9_000), chrono::Duration::hours(6))
            .unwrap();
        let summary = serde_json::json!({"fetched": 7, "processed": 7, "created": 1, "failed": 1});
        store.record_run(t(1_000), t(3_500), 3, &summary).unwrap();
        let other = StateStore::open(
            &db,
            Scope {
                source: String::new(),
                jira: String::new(),
            },
        )
        .unwrap();
        other
            .record_run(t(1_000), t(2_000), 0, &serde_json::json!({}))
            .unwrap();

        // `store` still holds this job's run lock.
        let status = read(&db, &scope, 10).unwrap();
        assert_eq!(status.runs.len(), 1);
        let run = &status.runs[0];
        assert_eq!(
            (
                run.duration_ms,
                run.exit_code,
                run.fetched,
                run.created,
                run.failed
            ),
            (2_500, 3, 7, 1, 1)
        );
        assert_eq!(status.checkpoint, Some(t(9_000)));
        assert_eq!(status.retry.len(), 1);
        assert_eq!(status.retry[0].id, "log-9");
        assert_eq!(status.tickets.len(), 1);
        assert_eq!(status.tickets[0].key, "OPS-1");
        assert_eq!(status.tickets[0].last_comment, Some(t(5_000)));
        assert_eq!(status.tickets[0].pending, 2);
        assert_eq!(status.other_jobs.len(), 1);
        let text = status.render_text();
        assert!(text.contains("Retry list: 1 log\n"), "{text}");
        assert!(text.contains("OPS-1"), "{text}");
        drop(store);
    }

    #[test]
    fn a_missing_file_is_an_empty_status_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("none.db");
        let status = read(&db, &Scope::default(), 10).unwrap();
        assert!(!status.exists && status.runs.is_empty());
        assert!(!db.exists());
        assert!(status.render_text().contains("No state yet"));
    }
}
