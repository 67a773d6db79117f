//! `triage` turns a stream of error logs into the smallest honest set of Jira tickets: one
//! ticket per distinct problem, kept current as the problem recurs.
//!
//! The data flow (see `pipeline` for the loop that drives it):
//!
//! ```text
//! source ──LogEvent──▶ ingest ─────────────────────────▶ worker pool ──Outcome──▶ collector
//! (datadog | file)    (one loop, arrival order:          (leaders only,         (stats, report,
//!                      fingerprint, claim in `dedup`:     N slots; N = 1 is      progress; the
//!                      Leader → pool, Follower → parked)  sequential)            only adder)
//!                                  leader, in `ticket`: find ──▶ known: record
//!                                                            └─▶ new: analyze ──▶ create
//! end of run, in `ticket::recurrence`: tickets filed before the input ended brought up to date
//! (new problems wait for it, so most need nothing), recurrences commented, merges labelled
//! ```
//!
//! A leader's "find" is batched (`jira::lookup`): ingest queues each new leader's lookup as it
//! claims it, and the lookups of many problems go out in one JQL search.
//!
//! The map, one concern per folder (docs/architecture.md draws it, with where to start for each
//! kind of change):
//! - `source/`: where logs come from (`file`, `datadog`);
//! - `grouping/`: a log to its fingerprint (significant line, masking, the template miner, its
//!   stored templates, `[[group]]` rules);
//! - `analyze/`: what a problem's ticket says (rules, or an LLM);
//! - `ticket/` and `jira/` beside it: finding, creating and keeping tickets current
//!   (`ticket::recurrence` at the end of the run), and the Jira client, its content and ADF;
//! - `pipeline/`: the run (its phases in `pipeline::run`, the loop, the collector, the report,
//!   stats and progress);
//! - `state/`: what runs remember (the store interface, the writer thread, SQLite, PostgreSQL);
//! - `config/`: the flags and their environment names (`cli`), `triage.toml` (`file`), `.env`
//!   files (`envfile`), all of it checked into a [`config::Config`]; each service owns its own
//!   part (`jira::config`);
//! - around them: `http` (limiter with server-driven AIMD, retry, request; the one way out,
//!   inside each log's deadline), `shutdown` (the interrupt every phase listens to, with its
//!   grace period), `tasks` (the one owner of the run's tasks, which tells them to stop),
//!   `route` (per problem, where its ticket goes) and `explain` (those decisions
//!   for `triage route --explain`), `redact` and `private` (secrets and files), `clock` (the
//!   wall clock every component reads the time from), and the other commands (`check`,
//!   `status`, `metrics`).
//!
//! `main.rs` only parses the command line into a checked [`config::Config`] and calls [`run`].

pub mod analyze;
pub mod breaker;
pub mod check;
pub mod clock;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod event;
pub mod explain;
pub mod grouping;
pub mod http;
pub mod jira;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod private;
pub mod redact;
pub mod route;
pub mod shutdown;
pub mod source;
pub mod state;
pub mod status;
pub mod tasks;
pub mod templates;
pub mod ticket;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use pipeline::report::Report;

/// How far before the checkpoint a window starts, to catch logs Datadog indexed late; ids already
/// processed in that overlap are recognised and skipped.
pub const CHECKPOINT_OVERLAP: chrono::Duration = chrono::Duration::minutes(5);

/// Process logs as `config` says until the source is exhausted or `shutdown` resolves.
///
/// `shutdown` is the interrupt (Ctrl-C / SIGTERM in the binary): when it resolves, no new work
/// starts, calls in flight get `--shutdown-grace`, and the run returns its partial report
/// (`summary.interrupted`, exit 130) with the state consistent.
///
/// Errors are fatal problems found before any log was processed (the state lock is held,
/// Jira refuses the credentials, the report file cannot be written, ...). A source that fails
/// midway returns `Ok` with `summary.error` set, since the logs fetched before the failure were
/// processed and are reported.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Report> {
    run_with(config, shutdown, &tasks::Tasks::new()).await
}

/// [`run`], spawning its tasks through `tasks`, their one owner (a new one for each run): none
/// of them is left when it returns, however the run ended (a test passes its own owner to see
/// that).
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    tasks: &tasks::Tasks,
) -> anyhow::Result<Report> {
    let started = config.clock.now();
    tracing::debug!(
        "run starting: {}, {}",
        match &config.source {
            config::SourceConfig::Datadog(dd) => format!("Datadog query {:?}", dd.query),
            config::SourceConfig::File(input) => format!("logs from {input}"),
        },
        if config.dry_run {
            "dry run"
        } else {
            "writing to Jira"
        }
    );
    let mut shutdown = shutdown::Shutdown::new(shutdown, config.shutdown_grace);
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
    let state = match &config.state {
        Some(path) => {
            let clock = config.clock.clone();
            state::StateHandle::open(path, scope.clone(), !config.dry_run, clock).await?
        }
        None => None,
    };
    let result = run_with_state(config, scope, state.clone(), &mut shutdown, started, tasks).await;
    // The store is closed (its last batch committed, its lock released) before `run` returns;
    // after an interrupt, within what is left of the grace period.
    if let Some(state) = state {
        match shutdown.bounded(state.close()).await {
            Some(closed) => closed?,
            None => tracing::warn!("interrupted while closing the state store"),
        }
    }
    result
}

async fn run_with_state(
    mut config: Config,
    scope: state::Scope,
    state: Option<state::StateHandle>,
    shutdown: &mut shutdown::Shutdown<'_>,
    started: chrono::DateTime<chrono::Utc>,
    tasks: &tasks::Tasks,
) -> anyhow::Result<Report> {
    let clock = config.clock.clone();
    // Checkpoints, processed ids and the retry list belong to a Datadog source; a file is
    // read whole each time it is given.
    let checkpoint_key = (!scope.source.is_empty()).then(|| scope.source.clone());
    if let (Some(state), Some(key), config::SourceConfig::Datadog(dd)) =
        (&state, &checkpoint_key, &mut config.source)
    {
        if !config.from_explicit {
            let k = key.clone();
            let checkpoint = state.call(move |s| s.checkpoint(&k)).await?;
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
    // The credentials check (`GET /myself`) runs alongside the start of the run: the client
    // holds every other call's result until the check has answered, and a refusal stays fatal
    // with the check's own message (see `connect_jira`).
    let jira = match &config.jira {
        Some(jira) => Some(Arc::new(
            connect_jira(jira, &config)?.with_tasks(tasks.group()),
        )),
        None => None,
    };
    let jira_config = config.jira.clone();
    let check = async {
        match (&jira, &jira_config) {
            (Some(client), Some(jira)) => check_jira(client, jira).await,
            _ => Ok(()),
        }
    };
    let rest = start_and_run(
        config,
        state.clone(),
        shutdown,
        jira.clone(),
        checkpoint_key,
        tasks,
    );
    let (checked, ran) = tokio::join!(check, rest);
    checked?;
    let (report, run_id, metrics_file) = ran?;
    let code = exit_code(&report);
    let mut last_success = None;
    if let Some(state) = &state {
        let summary = serde_json::to_value(&report.summary)?;
        let versioned = serde_json::to_value(pipeline::report::Versioned(&report.summary))?;
        let bookkeeping = async {
            if let Some(id) = run_id {
                state
                    .call_durable(move |s| s.end_run(id, code, &summary))
                    .await?;
                let clock = clock.clone();
                state
                    .call_durable(move |s| s.record_run(started, clock.now(), code, &versioned))
                    .await?;
            }
            state.call(|s| s.last_success()).await
        };
        // The state writer may be waiting for a state file another process holds: after an
        // interrupt, the run's own record gets no more than the grace period either.
        match shutdown.bounded(bookkeeping).await {
            Some(last) => last_success = last?,
            None => tracing::warn!(
                "interrupted while recording the run in the state store: it is recorded if the store frees up before the process ends"
            ),
        }
    }
    if let Some(path) = metrics_file {
        let last_success = last_success.or_else(|| (code == exit::OK).then(|| clock.now()));
        metrics::write(&path, &report, code, last_success, &clock)?;
    }
    Ok(report)
}

/// Everything of a run after the Jira client is built, up to its report: the run's id in the
/// state store and where its metrics go come back with it. Jira's results wait for the
/// credentials check (the client holds them); what would give something up or record the run
/// in the state store waits for it too.
async fn start_and_run(
    config: Config,
    state: Option<state::StateHandle>,
    shutdown: &mut shutdown::Shutdown<'_>,
    jira: Option<Arc<jira::JiraClient>>,
    checkpoint_key: Option<String>,
    tasks: &tasks::Tasks,
) -> anyhow::Result<(Report, Option<i64>, Option<std::path::PathBuf>)> {
    let (analyzer, cache_key) = match &config.analyzer {
        config::AnalyzerConfig::Rules => (analyze::Analyzer::Rules, None),
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
            (
                analyze::Analyzer::Llm(analyze::llm::LlmAnalyzer::new(
                    service,
                    base_url,
                    model,
                    api_key.clone(),
                )),
                Some(format!("llm {model}")),
            )
        }
    };
    // Only once every service is reachable: a run that cannot start gives nothing up.
    let checked_jira = jira.clone();
    let reachable = || async {
        match &checked_jira {
            Some(client) => client.credentials_checked().await,
            None => true,
        }
    };
    let (retries, given_up) = match &state {
        Some(state) if checkpoint_key.is_some() => {
            if !reachable().await {
                anyhow::bail!("Jira's credentials check failed");
            }
            take_retries(state, config.max_retries).await?
        }
        _ => (Vec::new(), Vec::new()),
    };
    // The run is recorded once the check has passed, alongside the pipeline.
    let writable = state.clone().filter(|s| s.writable);
    let now = config.now;
    let begin = async {
        match writable {
            Some(s) => match reachable().await {
                true => Some(s.call(move |s| s.begin_run(now)).await),
                false => None,
            },
            None => None,
        }
    };
    let progress = pipeline::progress::Progress::new(
        config.progress,
        pipeline::progress::Total::of(
            config.limit,
            pipeline::progress::input_bytes(&config.source),
        ),
    );
    let metrics_file = config.metrics_file.clone();
    let tickets = Arc::new(ticket::TicketStage::new(
        &config,
        jira.clone(),
        state.clone(),
        analyzer,
        cache_key,
    ));
    let deps = pipeline::Deps {
        tickets,
        jira,
        state: state.clone(),
        retries,
        given_up: (given_up, config.max_retries),
        checkpoint_key,
        tasks: tasks.clone(),
    };
    let (run_id, report) = tokio::join!(begin, pipeline::run(config, deps, progress, shutdown));
    let run_id = run_id.transpose()?;
    Ok((report?, run_id, metrics_file))
}

/// Split the retry list: logs to retry now, and ids given up after `max_retries` runs.
async fn take_retries(
    state: &state::StateHandle,
    max_retries: u32,
) -> anyhow::Result<(Vec<event::LogEvent>, Vec<String>)> {
    let failed = state.call(|s| s.failed_logs()).await?;
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
        let ids = given_up.clone();
        state.call_durable(move |s| s.give_up(&ids)).await?;
    }
    Ok((retries, given_up))
}

/// Build the Jira client, its results held until [`check_jira`] has checked the credentials.
fn connect_jira(
    jira: &jira::config::JiraConfig,
    config: &Config,
) -> anyhow::Result<jira::JiraClient> {
    let service = http::Service::new("Jira", config.rate_limit, http::RetryPolicy::default())?
        .with_breaker(config.breaker.0, config.breaker.1);
    Ok(jira::JiraClient::new(service, jira.clone())
        .with_search_projects(config.routes.projects(&jira.project))
        .unverified())
}

/// Check the credentials once (`GET /myself`); a refusal is fatal for the run.
async fn check_jira(
    client: &jira::JiraClient,
    jira: &jira::config::JiraConfig,
) -> anyhow::Result<()> {
    match client.verify().await {
        Ok(name) => {
            tracing::debug!("Jira: signed in as {name}");
            Ok(())
        }
        Err(e) if e.is_auth() => Err(anyhow::anyhow!(
            "{e}: check JIRA_URL ({}) and {}",
            jira.base_url,
            match jira.auth {
                jira::config::JiraAuth::Basic { .. } =>
                    "JIRA_EMAIL and JIRA_API_TOKEN (Jira Cloud)",
                jira::config::JiraAuth::Bearer(_) => "JIRA_PAT (Jira Server / Data Center)",
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
