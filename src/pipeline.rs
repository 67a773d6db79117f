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
use crate::state::{CommentState, StateHandle};
use crate::ticket::TicketStage;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
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

/// What the pipeline works with besides its configuration.
pub struct Deps {
    pub analyzer: Analyzer,
    pub jira: Option<Arc<JiraClient>>,
    pub state: Option<StateHandle>,
    /// Logs that failed in earlier runs: processed first, before the source's.
    pub retries: Vec<LogEvent>,
    /// Logs given up after `--max-retries` runs (reported), and that limit.
    pub given_up: (Vec<String>, u32),
    /// Where the checkpoint of this source is kept (`None` for a file source).
    pub checkpoint_key: Option<String>,
}

/// Run the whole pipeline until the source is exhausted, `--limit` is reached, or `shutdown`
/// resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    progress: Progress,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<Report> {
    let Deps {
        analyzer,
        jira,
        state,
        retries,
        given_up,
        checkpoint_key,
    } = deps;
    // Outcomes are recorded (processed ids, the retry list) for a checkpointed source only.
    let source_state = state.clone().filter(|_| checkpoint_key.is_some());
    let mut collector = Collector::new(&config, progress, source_state.clone())?;
    collector.given_up(&given_up.0, given_up.1);
    let reopen = config.jira.as_ref().is_some_and(|j| j.reopen);
    let writable_state = state.clone().filter(|s| s.writable);
    let shared = Arc::new(Shared {
        dedup: Deduplicator::new(),
        analyzer,
        tickets: TicketStage::new(jira.clone(), config.dry_run, reopen, config.max_tickets)
            .with_state(state.clone()),
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
    let window_end = match &config.source {
        SourceConfig::Datadog(dd) => Some(dd.to),
        SourceConfig::File(_) => None,
    };
    let source_future: std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> =
        match config.source.clone() {
            SourceConfig::File(input) => {
                Box::pin(source::file::run(input, config.max_line_bytes, tx.clone()))
            }
            // A checkpoint at or past the window's end (a clock set back): nothing to fetch.
            SourceConfig::Datadog(dd) if dd.to <= dd.from => {
                tracing::info!(
                    "the window {} to {} is empty: nothing to fetch",
                    dd.from,
                    dd.to
                );
                Box::pin(async { Ok(()) })
            }
            SourceConfig::Datadog(dd) => Box::pin(
                DatadogSource {
                    service: Service::new("Datadog", config.rate_limit, RetryPolicy::default())?,
                    api_base: config.site.api_base.clone(),
                    config: dd,
                    page_size: config.batch_size,
                    limit: config.limit,
                    max_body_bytes: crate::source::datadog::MAX_BODY_BYTES,
                }
                .run(tx.clone()),
            ),
        };
    // Ids on the retry list not yet taken: the first time an id comes it is the retry; the
    // window may bring the same log again, and that copy is already being handled.
    let mut retry_ids: HashSet<String> = retries.iter().map(|e| e.id.clone()).collect();
    let source = tokio::spawn(async move {
        // Earlier runs' failures first, then the new logs.
        for event in retries {
            if tx.send(SourceItem::Event(event)).await.is_err() {
                return Ok(());
            }
        }
        drop(tx);
        source_future.await
    });

    let mut in_flight = FuturesUnordered::new();
    let mut taking = true;
    let mut interrupted = false;
    let mut source_ended = false;
    let mut events: u64 = 0;
    let mut warnings_seen = false;
    // The newest timestamp taken from the source (logs come oldest first): the checkpoint can
    // move up to it when the run stops before its window is done.
    let mut last_fetched: Option<DateTime<Utc>> = None;
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
                    let retry = retry_ids.remove(&event.id);
                    if !retry {
                        events += 1;
                        last_fetched = event.timestamp.max(last_fetched);
                        if let Some(state) = &source_state {
                            if state.with(|s| s.is_seen(&event.id))? {
                                collector.add(Outcome::already_processed(event.id))?;
                                if config.limit.is_some_and(|limit| events >= limit) {
                                    taking = false;
                                }
                                continue;
                            }
                        }
                    }
                    let printed = fingerprint::fingerprint(&event);
                    // Fingerprinted first, so redaction never changes a fingerprint; nothing
                    // after this line sees the raw text.
                    let (event, template) = redact_event(&config.redact, event, printed.template);
                    in_flight.push(spawn_log(shared.clone(), event, printed.fingerprint, template));
                    if config.limit.is_some_and(|limit| events >= limit) {
                        taking = false;
                    }
                }
                Some(SourceItem::Skipped(s)) => {
                    if s.unreadable {
                        collector.unreadable(&s);
                    }
                    collector.fetched();
                    collector.add(Outcome::skipped_record(s.location, s.reason))?;
                }
                Some(SourceItem::Warning(w)) => {
                    warnings_seen = true;
                    collector.warning(w);
                }
                Some(SourceItem::Fetched { latency, .. }) => collector.fetch_latency(latency),
                // Shown, but the result is complete: the checkpoint may move.
                Some(SourceItem::Notice(n)) => collector.notice(n),
                Some(SourceItem::Cut(c)) => collector.cut(&c),
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
        let cooldown =
            chrono::Duration::from_std(config.comment_cooldown).unwrap_or(chrono::Duration::MAX);
        comment_recurrences(
            jira,
            &mut collector,
            &config.site,
            writable_state.as_ref(),
            cooldown,
            config.now,
        )
        .await;
    }
    collector.flush_state()?;
    // Every log up to the checkpoint now has a final outcome recorded (or is on the retry list).
    if let (Some(state), Some(key), Some(end)) = (&writable_state, &checkpoint_key, window_end) {
        let complete = source_ended
            && source_error.is_none()
            && fatal.is_none()
            && !interrupted
            && !warnings_seen;
        // A partial result (Datadog's timeout status or warnings) may lack logs older than the
        // newest one it returned: the checkpoint stays, and the next run reads the span again.
        let until = if complete {
            Some(end)
        } else if warnings_seen {
            None
        } else {
            last_fetched
        };
        // A log stamped past the window (a clock far ahead) must not carry the checkpoint with it.
        let until = until.map(|t| t.min(end));
        if let Some(until) = until {
            state.with(|s| s.advance_checkpoint(key, until, CHECKPOINT_KEEP_IDS))?;
        }
    }
    let trips = jira.as_ref().map_or(0, |j| j.breaker_trips()) + shared.analyzer.breaker_trips();
    collector.llm_fallbacks(shared.analyzer.fallbacks());
    collector.finish(interrupted, fatal.or(source_error), trips)
}

/// How far behind the checkpoint processed ids are kept, to recognise logs an overlapping window
/// fetches again.
const CHECKPOINT_KEEP_IDS: chrono::Duration = chrono::Duration::hours(6);

/// One comment per ticket per run, now that the run knows each problem's count: on tickets that
/// existed before this run (and on reopened ones). With a state store, at most one comment per
/// `--comment-cooldown` across runs: occurrences in between are added up into the next comment.
async fn comment_recurrences(
    jira: &JiraClient,
    collector: &mut Collector,
    site: &DatadogSite,
    state: Option<&StateHandle>,
    cooldown: chrono::Duration,
    now: DateTime<Utc>,
) {
    // With a checkpointed source, each log's occurrence was added to its ticket's pending
    // count as the log was recorded; otherwise this run's counts are added here.
    let counted = collector.counts_occurrences();
    let stored = |collector: &mut Collector, key: &str| match state {
        Some(state) => match state.with(|s| s.comment_state(key)) {
            Ok(p) => Some(p),
            Err(e) => {
                collector.warning(format!("state store: {e:#}"));
                None
            }
        },
        None => None,
    };
    // A ticket created in this run describes its first log: that starts its cooldown, and this
    // run's other occurrences wait for its next comment.
    let created: Vec<(String, ProblemFacts)> = collector
        .problems()
        .filter_map(|p| {
            let res = &p.leader.as_ref()?.resolution;
            (res.action == TicketAction::Created)
                .then(|| Some((res.key.clone()?, p.facts(site)?)))
                .flatten()
        })
        .collect();
    for (key, mut facts) in created {
        facts.occurrences = if counted {
            stored(collector, &key).map_or(0, |p| p.pending)
        } else {
            facts.occurrences.saturating_sub(1)
        };
        save_pending(state, collector, &key, Some(now), &facts);
    }
    let due: Vec<(String, ProblemFacts)> = collector
        .problems()
        .filter_map(|p| {
            let res = &p.leader.as_ref()?.resolution;
            matches!(res.action, TicketAction::Existing | TicketAction::Reopened)
                .then(|| Some((res.key.clone()?, p.facts(site)?)))
                .flatten()
        })
        .collect();
    for (key, mut facts) in due {
        let mut pending = stored(collector, &key);
        if let Some(p) = &mut pending {
            // What recurred since the last comment, with this run's figures.
            if counted {
                facts.occurrences = p.pending;
            } else {
                facts.occurrences += p.pending;
            }
            facts.first_seen = facts
                .first_seen
                .min(p.first_seen)
                .or(facts.first_seen)
                .or(p.first_seen);
            facts.last_seen = facts.last_seen.max(p.last_seen);
            for h in p.hosts.drain(..) {
                if !facts.hosts.contains(&h) && facts.hosts.len() < 50 {
                    facts.hosts.push(h);
                }
            }
            if p.last_comment.is_some_and(|last| now - last < cooldown) {
                save_pending(state, collector, &key, p.last_comment, &facts);
                continue;
            }
        }
        // Keep the counts until Jira has the comment: a run killed meanwhile leaves them for
        // the next comment instead of losing them.
        let last = pending.as_ref().and_then(|p| p.last_comment);
        save_pending(state, collector, &key, last, &facts);
        let started = Instant::now();
        let result = jira.comment(&key, &facts).await;
        collector.stats_mut().jira.record(started.elapsed());
        match result {
            Ok(()) => {
                collector.stats_mut().commented += 1;
                if let Some(state) = state {
                    let fresh = CommentState {
                        last_comment: Some(now),
                        ..CommentState::default()
                    };
                    if let Err(e) = state.with(|s| s.save_comment_state(&key, &fresh)) {
                        collector.warning(format!("state store: {e:#}"));
                    }
                }
            }
            Err(e) => {
                // The counts stay pending for the next run's comment.
                collector.warning(format!("could not comment on {key}: {e:#}"));
            }
        }
    }
}

/// Remember occurrences not yet commented on, to add them to the ticket's next comment.
fn save_pending(
    state: Option<&StateHandle>,
    collector: &mut Collector,
    key: &str,
    last_comment: Option<DateTime<Utc>>,
    facts: &ProblemFacts,
) {
    let Some(state) = state else { return };
    let saved = CommentState {
        last_comment,
        pending: facts.occurrences,
        first_seen: facts.first_seen,
        last_seen: facts.last_seen,
        hosts: facts.hosts.clone(),
    };
    if let Err(e) = state.with(|s| s.save_comment_state(key, &saved)) {
        collector.warning(format!("state store: {e:#}"));
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
            retry_event: None,
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
    let retry_value = result.is_err().then(|| event.to_value());
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
        retry_event: None,
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
            outcome.retry_event = retry_value;
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

/// The event and its template with secrets (and the chosen personal data) removed.
fn redact_event(
    redactor: &crate::redact::Redactor,
    event: LogEvent,
    template: String,
) -> (LogEvent, String) {
    let template = redactor.text(&template).into_owned();
    (redactor.event(event), template)
}
