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
pub mod check;
pub mod cli;
pub mod collector;
pub mod config;
pub mod dedup;
pub mod event;
pub mod fingerprint;
pub mod http;
pub mod jira;
pub mod outcome;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod source;
pub mod stats;
pub mod ticket;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use report::Report;

/// Process logs as `config` says until the source is exhausted or `shutdown` resolves.
///
/// Errors are fatal problems found before any log was processed (the report file cannot be
/// written, ...). A source that fails midway returns `Ok` with `summary.error` set, since the logs
/// fetched before the failure were processed and are reported.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Report> {
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
            let service = http::Service::new("LLM", config.rate_limit, policy)?;
            analyze::Analyzer::Llm(analyze::llm::LlmAnalyzer::new(
                service,
                base_url,
                model,
                api_key.clone(),
            ))
        }
    };
    let progress = progress::Progress::new(config.progress, config.limit);
    pipeline::run(config, analyzer, jira, progress, shutdown).await
}

/// Build the Jira client and check the credentials once (`GET /myself`).
async fn connect_jira(
    jira: &config::JiraConfig,
    config: &Config,
) -> anyhow::Result<jira::JiraClient> {
    let service = http::Service::new("Jira", config.rate_limit, http::RetryPolicy::default())?;
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
    } else if s.failed > 0 {
        exit::SOME_FAILED
    } else {
        exit::OK
    }
}

/// Exit codes.
pub mod exit {
    /// Done, every log processed.
    pub const OK: u8 = 0;
    /// Fatal: configuration, authentication, or source.
    pub const FATAL: u8 = 1;
    /// Usage: a bad flag or value (clap's own code).
    pub const USAGE: u8 = 2;
    /// Done, but some logs failed.
    pub const SOME_FAILED: u8 = 3;
    /// Interrupted by Ctrl-C or SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}
