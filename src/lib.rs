//! `triage` turns a stream of error logs into the smallest honest set of Jira tickets: one
//! ticket per distinct problem, kept current as the problem recurs.
//!
//! The data flow (see `pipeline` for the loop that drives it):
//!
//! ```text
//! source ──LogEvent──▶ ingest ──(event, fingerprint)──▶ worker pool ──Outcome──▶ collector
//! (datadog | file)    (ordered)                         (N permits)             (stats, report,
//!                                                            │                    progress)
//!                                deduplicator ◀── claim(fp): Leader | Follower
//!                                                            │
//!                          leader only: analyze ──▶ ticket stage (find → create | comment)
//! ```
//!
//! `main.rs` only parses the command line into a checked [`config::Config`] and calls [`run`].

pub mod analyze;
pub mod breaker;
pub mod check;
pub mod cli;
pub mod collector;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod event;
pub mod fingerprint;
pub mod http;
pub mod jira;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod private;
pub mod progress;
pub mod redact;
pub mod report;
pub mod source;
pub mod state;
pub mod stats;
pub mod ticket;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use report::Report;

/// How far before the checkpoint a window starts, to catch logs Datadog indexed late; ids already
/// processed in that overlap are recognised and skipped.
pub const CHECKPOINT_OVERLAP: chrono::Duration = chrono::Duration::minutes(5);

/// Process logs as `config` says until the source is exhausted or `shutdown` resolves.
///
/// Errors are fatal problems found before any log was processed (the state lock is held,
/// Jira refuses the credentials, the report file cannot be written, ...). A source that fails
/// midway returns `Ok` with `summary.error` set, since the logs fetched before the failure were
/// processed and are reported.
pub async fn run(
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Report> {
    let scope = state::Scope {
        source: match &config.source {
            config::SourceConfig::Datadog(dd) => {
                state::Scope::datadog(&config.site.api_base, &dd.query)
            }
            config::SourceConfig::File(_) => String::new(),
        },
        jira: config
            .jira
            .as_ref()
            .map(|j| state::Scope::jira(&j.base_url, &j.project))
            .unwrap_or_default(),
    };
    // Checkpoints, processed ids and the retry list belong to a Datadog source; a file is
    // read whole each time it is given.
    let checkpoint_key = (!scope.source.is_empty()).then(|| scope.source.clone());
    let state = open_state(&config, scope)?;
    let _release = ReleaseLock(state.clone());
    if let (Some(state), Some(key), config::SourceConfig::Datadog(dd)) =
        (&state, &checkpoint_key, &mut config.source)
    {
        if !config.from_explicit {
            let checkpoint = state.with(|s| s.checkpoint(key))?;
            // Far ahead of the clock, a checkpoint came from a log stamped in the future (older
            // versions let it move there); it would make every run fetch nothing.
            let checkpoint = checkpoint.filter(|&c| {
                let bogus = c > config.now + chrono::Duration::days(1);
                if bogus {
                    tracing::warn!(
                        "ignoring the checkpoint {c}: it is in the future; reading the default window {} to {}",
                        dd.from,
                        dd.to
                    );
                }
                !bogus
            });
            if let Some(checkpoint) = checkpoint {
                dd.from = checkpoint - CHECKPOINT_OVERLAP;
                tracing::info!(
                    "continuing from the checkpoint {checkpoint} (window {} to {})",
                    dd.from,
                    dd.to
                );
            }
        }
    }
    let jira = match &config.jira {
        Some(jira) => Some(Arc::new(connect_jira(jira, &config).await?)),
        None => None,
    };
    let analyzer = match &config.analyzer {
        config::AnalyzerConfig::Rules => analyze::Analyzer::Rules,
        config::AnalyzerConfig::Llm {
            base_url,
            model,
            api_key,
        } => {
            let policy = http::RetryPolicy {
                max_attempts: 3,
                ..http::RetryPolicy::default()
            };
            let service = http::Service::new("LLM", config.rate_limit, policy)?
                .with_breaker(config.breaker.0, config.breaker.1);
            analyze::Analyzer::Llm(analyze::llm::LlmAnalyzer::new(
                service,
                base_url,
                model,
                api_key.clone(),
            ))
        }
    };
    // Only once every service is reachable: a run that cannot start gives nothing up.
    let (retries, given_up) = match &state {
        Some(state) if checkpoint_key.is_some() => take_retries(state, config.max_retries)?,
        _ => (Vec::new(), Vec::new()),
    };
    let run_id = match state.as_ref().filter(|s| s.writable) {
        Some(s) => Some(s.with(|s| s.begin_run(config.now))?),
        None => None,
    };
    let progress = progress::Progress::new(config.progress, config.limit);
    let metrics_file = config.metrics_file.clone();
    let deps = pipeline::Deps {
        analyzer,
        jira,
        state: state.clone(),
        retries,
        given_up: (given_up, config.max_retries),
        checkpoint_key,
    };
    let report = pipeline::run(config, deps, progress, shutdown).await?;
    let code = exit_code(&report);
    let mut last_success = None;
    if let Some(state) = &state {
        if let Some(id) = run_id {
            let summary = serde_json::to_value(&report.summary)?;
            state.with(|s| s.end_run(id, code, &summary))?;
        }
        last_success = state.with(|s| s.last_success())?;
    }
    if let Some(path) = metrics_file {
        let last_success = last_success.or_else(|| (code == exit::OK).then(chrono::Utc::now));
        metrics::write(&path, &report, code, last_success)?;
    }
    Ok(report)
}

/// Marks the state lock released however `run` returns (other handles may outlive it in tasks
/// the runtime has not dropped yet).
struct ReleaseLock(Option<state::StateHandle>);

impl Drop for ReleaseLock {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            let _ = state.with(|s| {
                s.release_lock();
                Ok(())
            });
        }
    }
}

/// Open the state store: locked for a real run, read-only (and unlocked) for a dry run.
fn open_state(config: &Config, scope: state::Scope) -> anyhow::Result<Option<state::StateHandle>> {
    let Some(path) = &config.state else {
        return Ok(None);
    };
    if config.dry_run {
        return Ok(state::StateStore::open_read_only(path, scope)?
            .map(|s| state::StateHandle::new(s, false)));
    }
    Ok(Some(state::StateHandle::new(
        state::StateStore::open(path, scope)?,
        true,
    )))
}

/// Split the retry list: logs to retry now, and ids given up after `max_retries` runs.
fn take_retries(
    state: &state::StateHandle,
    max_retries: u32,
) -> anyhow::Result<(Vec<event::LogEvent>, Vec<String>)> {
    let failed = state.with(|s| s.failed_logs())?;
    let mut retries = Vec::new();
    let mut given_up = Vec::new();
    for log in failed {
        match event::LogEvent::from_value(log.event, || log.id.clone()) {
            // `runs` counts the first failure too: a log is retried `max_retries` times.
            Ok(event) if log.runs <= max_retries => retries.push(event),
            _ => given_up.push(log.id),
        }
    }
    if state.writable && !given_up.is_empty() {
        state.with(|s| s.give_up(&given_up))?;
    }
    Ok((retries, given_up))
}

/// Build the Jira client and check the credentials once (`GET /myself`).
async fn connect_jira(
    jira: &config::JiraConfig,
    config: &Config,
) -> anyhow::Result<jira::JiraClient> {
    let service = http::Service::new("Jira", config.rate_limit, http::RetryPolicy::default())?
        .with_breaker(config.breaker.0, config.breaker.1);
    let client = jira::JiraClient::new(service, jira.clone());
    match client.myself().await {
        Ok(name) => {
            tracing::debug!("Jira: signed in as {name}");
            Ok(client)
        }
        Err(e) if e.is_auth() => Err(anyhow::anyhow!(
            "{e}: check JIRA_URL ({}) and {}",
            jira.base_url,
            match jira.auth {
                config::JiraAuth::Basic { .. } => "JIRA_EMAIL and JIRA_API_TOKEN (Jira Cloud)",
                config::JiraAuth::Bearer(_) => "JIRA_PAT (Jira Server / Data Center)",
            }
        )),
        Err(e) => Err(anyhow::anyhow!(
            "cannot reach Jira at {}: {e}",
            jira.base_url
        )),
    }
}

/// The process exit code for a finished run, as DESIGN.md fixes them.
pub fn exit_code(report: &Report) -> u8 {
    let s = &report.summary;
    if s.error.is_some() {
        exit::FATAL
    } else if s.interrupted {
        exit::INTERRUPTED
    } else if s.failed > 0 || s.unreadable > 0 {
        exit::SOME_FAILED
    } else {
        exit::OK
    }
}

/// Exit codes.
pub mod exit {
    /// Done, every log processed.
    pub const OK: u8 = 0;
    /// Fatal: configuration, authentication, or source; or no input record could be read.
    pub const FATAL: u8 = 1;
    /// Usage: a bad flag or value (clap's own code).
    pub const USAGE: u8 = 2;
    /// Done, but some logs failed or some input records could not be read.
    pub const SOME_FAILED: u8 = 3;
    /// Another run holds the state lock.
    pub const LOCKED: u8 = 75;
    /// Interrupted by Ctrl-C or SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}
