//! The pipeline: source → ingest → bounded worker pool → collector. The only place with
//! concurrency.
//!
//! One loop owns the run. It takes items from the source's bounded channel only while fewer than
//! `workers` logs are in flight (so `workers = 1` is the sequential mode, on the same code path),
//! fingerprints each log in arrival order (so a fingerprint never depends on scheduling), spawns
//! one task per log, and feeds every finished outcome to the collector. On shutdown (Ctrl-C,
//! SIGTERM) it stops taking new logs and lets the ones in flight finish.
//!
//! Each log task claims its fingerprint from the deduplicator: the leader analyzes the problem
//! and files its ticket, followers wait for the leader's ticket. A log that fails or exceeds its
//! deadline becomes a `failed` outcome; its problem's next log takes over as leader.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::analyze::Analyzer;
use crate::collector::Collector;
use crate::config::{Config, DatadogSite, SourceConfig};
use crate::dedup::{Claim, Deduplicator, Followed};
use crate::event::LogEvent;
use crate::fingerprint::{self, Fingerprint};
use crate::http::{HttpError, RetryPolicy, Service};
use crate::jira::content::ProblemFacts;
use crate::jira::JiraClient;
use crate::outcome::{LeaderReport, Outcome, OutcomeKind, Resolution, Seen, Stage, TicketAction};
use crate::progress::Progress;
use crate::report::Report;
use crate::source::datadog::DatadogSource;
use crate::source::{self, SourceItem};
use crate::ticket::TicketStage;
use tokio_util::sync::CancellationToken;

/// What every log task shares.
struct Shared {
    dedup: Deduplicator<Fingerprint, Resolution>,
    analyzer: Analyzer,
    tickets: TicketStage,
    site: DatadogSite,
    per_log_timeout: Duration,
    /// Whether the ticket stage talks to Jira (its latency is then the `jira` stage's).
    jira_enabled: bool,
    /// Set when a failure ends the whole run (Jira refused the credentials midway).
    fatal: CancellationToken,
    fatal_reason: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn fail_run(&self, reason: String) {
        if let Ok(mut slot) = self.fatal_reason.lock() {
            slot.get_or_insert(reason);
        }
        self.fatal.cancel();
    }
}

/// Run the whole pipeline until the source is exhausted, `--limit` is reached, or `shutdown`
/// resolves.
pub async fn run(
    config: Config,
    analyzer: Analyzer,
    jira: Option<Arc<JiraClient>>,
    progress: Progress,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Report> {
    let mut collector = Collector::new(&config, progress)?;
    let reopen = config.jira.as_ref().is_some_and(|j| j.reopen);
    let shared = Arc::new(Shared {
        dedup: Deduplicator::new(),
        analyzer,
        tickets: TicketStage::new(jira.clone(), config.dry_run, reopen, config.max_tickets),
        site: config.site.clone(),
        per_log_timeout: config.per_log_timeout,
        jira_enabled: jira.is_some(),
        fatal: CancellationToken::new(),
        fatal_reason: std::sync::Mutex::new(None),
    });
    let workers = config.workers.max(1);
    // Room for a couple of Datadog pages, or a few thousand file records, ahead of the workers.
    let (tx, mut rx) =
        mpsc::channel::<SourceItem>((config.batch_size as usize * 2).max(workers * 4).max(256));
    let source = match config.source.clone() {
        SourceConfig::File(input) => tokio::spawn(source::file::run(input, tx)),
        SourceConfig::Datadog(dd) => {
            let datadog = DatadogSource {
                service: Service::new("Datadog", config.rate_limit, RetryPolicy::default())?,
                api_base: config.site.api_base.clone(),
                config: dd,
                page_size: config.batch_size,
                limit: config.limit,
            };
            tokio::spawn(datadog.run(tx))
        }
    };

    let mut in_flight = FuturesUnordered::new();
    let mut taking = true;
    let mut interrupted = false;
    let mut source_ended = false;
    let mut events: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown, if taking => {
                taking = false;
                interrupted = true;
            }
            () = shared.fatal.cancelled(), if taking => taking = false,
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => collector.add(outcome)?,
            item = rx.recv(), if taking && in_flight.len() < workers => match item {
                None => {
                    taking = false;
                    source_ended = true;
                }
                Some(SourceItem::Event(event)) => {
                    collector.fetched();
                    events += 1;
                    let printed = fingerprint::fingerprint(&event);
                    in_flight.push(spawn_log(shared.clone(), event, printed.fingerprint, printed.template));
                    if config.limit.is_some_and(|limit| events >= limit) {
                        taking = false;
                    }
                }
                Some(SourceItem::Skipped(s)) => {
                    collector.fetched();
                    collector.add(Outcome::skipped_record(s.location, s.reason))?;
                }
                Some(SourceItem::Warning(w)) => collector.warning(w),
                Some(SourceItem::Fetched { latency, .. }) => collector.fetch_latency(latency),
            },
            else => break,
        }
    }
    // Hang up. A source that ended by itself is asked how it ended; one we stopped taking from
    // (limit, interrupt) may be blocked on input that never comes (an open stdin), so it is
    // dropped: nothing it could still say matters to this run.
    drop(rx);
    let source_error = if source_ended {
        match source.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) => Some(format!("the source task failed: {e}")),
        }
    } else {
        source.abort();
        None
    };
    let fatal = shared.fatal_reason.lock().ok().and_then(|mut r| r.take());
    if let (Some(jira), false, None) = (&jira, config.dry_run, &fatal) {
        comment_recurrences(jira, &mut collector, &config.site).await;
    }
    collector.finish(interrupted, fatal.or(source_error))
}

/// One comment per ticket per run, now that the run knows each problem's count: on tickets that
/// existed before this run (and on reopened ones).
async fn comment_recurrences(jira: &JiraClient, collector: &mut Collector, site: &DatadogSite) {
    let due: Vec<(String, ProblemFacts)> = collector
        .problems()
        .filter_map(|p| {
            let res = &p.leader.as_ref()?.resolution;
            matches!(res.action, TicketAction::Existing | TicketAction::Reopened)
                .then(|| Some((res.key.clone()?, p.facts(site)?)))
                .flatten()
        })
        .collect();
    for (key, facts) in due {
        let started = Instant::now();
        let result = jira.comment(&key, &facts).await;
        collector.stats_mut().jira.record(started.elapsed());
        match result {
            Ok(()) => collector.stats_mut().commented += 1,
            Err(e) => collector.warning(format!("could not comment on {key}: {e:#}")),
        }
    }
}

/// Spawn one log's task; a panic inside it becomes that log's `failed` outcome.
fn spawn_log(
    shared: Arc<Shared>,
    event: LogEvent,
    fingerprint: Fingerprint,
    template: String,
) -> impl Future<Output = Outcome> {
    let id = event.id.clone();
    let fp = fingerprint.clone();
    let task = tokio::spawn(process(shared, event, fingerprint, template));
    async move {
        task.await.unwrap_or_else(|e| Outcome {
            log_id: id,
            fingerprint: Some(fp),
            kind: OutcomeKind::Failed,
            ticket: None,
            stage: None,
            error: Some(format!("internal error: {e}")),
            seen: None,
            leader: None,
            analyze_time: None,
            jira_time: None,
            warning: None,
        })
    }
}

/// The stage a log is in, readable after its future was dropped by the deadline.
struct StageMark(AtomicU8);

impl StageMark {
    fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }
    fn get(&self) -> Stage {
        match self.0.load(Ordering::Relaxed) {
            x if x == Stage::Analyze as u8 => Stage::Analyze,
            x if x == Stage::Jira as u8 => Stage::Jira,
            _ => Stage::Dedup,
        }
    }
}

#[derive(Default)]
struct Timings {
    analyze: Option<Duration>,
    jira: Option<Duration>,
    /// A problem worth a warning that did not fail the log (the llm analyzer fell back).
    warning: Option<String>,
}

/// What one log's work came to, before it is turned into an `Outcome`.
enum Handled {
    Followed(Resolution),
    Led(Box<LeaderReport>),
}

async fn process(
    shared: Arc<Shared>,
    event: LogEvent,
    fingerprint: Fingerprint,
    template: String,
) -> Outcome {
    let mark = StageMark(AtomicU8::new(Stage::Dedup as u8));
    let timings = std::sync::Mutex::new(Timings::default());
    let work = handle(&shared, &event, &fingerprint, &template, &mark, &timings);
    let result = match tokio::time::timeout(shared.per_log_timeout, work).await {
        Ok(result) => result,
        Err(_) => Err((
            mark.get(),
            anyhow::anyhow!(
                "timed out after {} s (--timeout)",
                shared.per_log_timeout.as_secs()
            ),
        )),
    };
    let timings = timings.into_inner().unwrap_or_default();
    let seen = Seen {
        timestamp: event.timestamp,
        host: event.host.clone(),
        service: event.service.clone(),
        template,
    };
    let mut outcome = Outcome {
        log_id: event.id,
        fingerprint: Some(fingerprint),
        kind: OutcomeKind::Failed,
        ticket: None,
        stage: None,
        error: None,
        seen: Some(seen),
        leader: None,
        analyze_time: timings.analyze,
        jira_time: timings.jira,
        warning: timings.warning,
    };
    match result {
        Ok(Handled::Followed(res)) => {
            outcome.ticket = res.key;
            outcome.kind = if res.action == TicketAction::Capped {
                outcome.error =
                    Some("the --max-tickets cap was reached before this problem's ticket".into());
                OutcomeKind::Skipped
            } else {
                OutcomeKind::Duplicate
            };
        }
        Ok(Handled::Led(report)) => {
            let res = &report.resolution;
            outcome.ticket = res.key.clone();
            outcome.kind = match res.action {
                TicketAction::Created => OutcomeKind::Created,
                TicketAction::Existing => OutcomeKind::Existing,
                TicketAction::WouldCreate => OutcomeKind::WouldCreate,
                TicketAction::Reopened | TicketAction::WouldReopen => OutcomeKind::Existing,
                TicketAction::Capped => {
                    outcome.error = Some(
                        "the --max-tickets cap was reached before this problem's ticket".into(),
                    );
                    OutcomeKind::Skipped
                }
            };
            outcome.leader = Some(report);
        }
        Err((stage, e)) => {
            if let Some(auth) = e.downcast_ref::<HttpError>().filter(|h| h.is_auth()) {
                shared.fail_run(format!("{auth}: check JIRA_URL and the Jira credentials (JIRA_EMAIL + JIRA_API_TOKEN, or JIRA_PAT)"));
            }
            outcome.stage = Some(stage);
            outcome.error = Some(format!("{e:#}"));
        }
    }
    outcome
}

async fn handle(
    shared: &Shared,
    event: &LogEvent,
    fingerprint: &Fingerprint,
    template: &str,
    mark: &StageMark,
    timings: &std::sync::Mutex<Timings>,
) -> Result<Handled, (Stage, anyhow::Error)> {
    let guard = match shared.dedup.claim(fingerprint) {
        Claim::Leader(guard) => guard,
        Claim::Follower(follower) => match follower.wait().await {
            Followed::Resolved(res) => return Ok(Handled::Followed(res)),
            Followed::Promoted(guard) => guard,
        },
    };
    mark.set(Stage::Analyze);
    let started = Instant::now();
    let (analysis, fallback) = shared.analyzer.analyze(event, template).await;
    record(timings, |t| {
        t.analyze = Some(started.elapsed());
        t.warning = fallback;
    });

    mark.set(Stage::Jira);
    let facts = ProblemFacts {
        fingerprint: fingerprint.to_string(),
        service: event.service.clone(),
        title: analysis.title.clone(),
        summary: analysis.summary.clone(),
        category: analysis.category.as_str().to_string(),
        severity: analysis.severity.as_str().to_string(),
        template: template.to_string(),
        sample_message: event.message.clone(),
        sample_log_id: event.id.clone(),
        log_link: Some(shared.site.log_link(&event.id, event.timestamp)),
        hosts: event.host.iter().cloned().collect(),
        first_seen: event.timestamp,
        last_seen: event.timestamp,
        occurrences: 1,
        recurrence_of: None,
    };
    let started = Instant::now();
    let filed = shared.tickets.file(fingerprint, &facts).await;
    if shared.jira_enabled {
        record(timings, |t| t.jira = Some(started.elapsed()));
    }
    let resolution = filed.map_err(|e| (Stage::Jira, e))?;
    // Followers get the resolution only after the leader's work is complete; a guard dropped
    // before this line (error, deadline, panic) hands the problem to the next log instead.
    guard.resolve(resolution.clone());
    Ok(Handled::Led(Box::new(LeaderReport {
        analysis,
        sample_id: event.id.clone(),
        sample_message: event.message.clone(),
        sample_timestamp: event.timestamp,
        resolution,
    })))
}

fn record(timings: &std::sync::Mutex<Timings>, f: impl FnOnce(&mut Timings)) {
    if let Ok(mut t) = timings.lock() {
        f(&mut t);
    }
}
