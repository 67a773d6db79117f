//! One leader: the first log of a problem, worked on under its deadline by the ticket stage,
//! and what its end means for the logs behind it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::event::LogEvent;
use crate::grouping::fingerprint::Fingerprint;
use crate::outcome::{LeaderReport, Log, Outcome, Resolution, Seen, Work};
use crate::pipeline::collector::Collector;
use crate::ticket::known::Whole;
use crate::ticket::{self, LeadFailure, TicketStage};

/// A log waiting to lead, or parked behind its leader.
pub(super) struct Pending {
    pub(super) event: LogEvent,
    pub(super) template: Arc<str>,
    /// A leader's: what the run knows of its problem beyond this log, for its ticket's create.
    pub(super) whole: Option<Whole>,
}

impl Pending {
    pub(super) fn new(event: LogEvent, template: Arc<str>) -> Self {
        Pending {
            event,
            template,
            whole: None,
        }
    }
}

/// A leader's work, finished.
pub(super) struct LeaderDone {
    pub(super) fingerprint: Fingerprint,
    pub(super) event: Arc<LogEvent>,
    pub(super) template: Arc<str>,
    pub(super) turn: u64,
    pub(super) result: Result<LeaderReport, LeadFailure>,
    pub(super) timings: ticket::Timings,
}

/// One leader's work under its deadline; a panic inside it becomes its failure.
pub(super) async fn lead(
    tickets: Arc<TicketStage>,
    fingerprint: Fingerprint,
    event: Arc<LogEvent>,
    template: Arc<str>,
    turn: u64,
    timeout: Duration,
    whole: Whole,
) -> LeaderDone {
    let deadline = tokio::time::Instant::now() + timeout;
    let progress = Arc::new(ticket::Progress::default());
    let work = tickets.lead(
        ticket::Leader {
            event: event.clone(),
            fingerprint: fingerprint.clone(),
            template: template.clone(),
            turn,
            whole: Some(whole),
        },
        deadline,
        progress.clone(),
    );
    let work = crate::http::with_deadline(deadline, tokio::time::timeout_at(deadline, work));
    let result = match AssertUnwindSafe(work).catch_unwind().await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(LeadFailure {
            stage: progress.stage.get(),
            error: anyhow::anyhow!("timed out after {} s (--timeout)", timeout.as_secs()),
            fatal: None,
        }),
        Err(_) => Err(LeadFailure {
            stage: progress.stage.get(),
            error: anyhow::anyhow!("internal error: the leader's work panicked"),
            fatal: None,
        }),
    };
    LeaderDone {
        fingerprint,
        event,
        template,
        turn,
        result,
        timings: progress.take_timings(),
    }
}

/// Add a finished leader's outcome. `Ok(resolution)` for its followers, or `Err(fatal reason)`
/// when it failed (`Some` when the failure ends the run: Jira refused the credentials).
pub(super) fn leader_finished(
    done: LeaderDone,
    collector: &mut Collector,
) -> anyhow::Result<Result<Arc<Resolution>, Option<String>>> {
    let LeaderDone {
        fingerprint,
        event,
        template,
        result,
        timings,
        ..
    } = done;
    let event = Arc::try_unwrap(event).unwrap_or_else(|e| (*e).clone());
    let work = Work {
        analyze_time: timings.analyze,
        jira_time: timings.jira,
        warning: timings.warning,
    };
    let (outcome, answer) = match result {
        Ok(report) => {
            let res = report.resolution.clone();
            let log = log_of(event, fingerprint, template);
            let report = Box::new(report);
            (Outcome::Led { log, report, work }, Ok(res))
        }
        Err(LeadFailure {
            stage,
            error,
            fatal,
        }) => {
            let retry_event = event.to_value();
            let outcome = Outcome::LeadFailed {
                log: log_of(event, fingerprint, template),
                stage,
                error: format!("{error:#}"),
                retry_event,
                work,
            };
            (outcome, Err(fatal))
        }
    };
    collector.add(outcome)?;
    Ok(answer)
}

/// The log an outcome is about.
fn log_of(event: LogEvent, fingerprint: Fingerprint, template: Arc<str>) -> Log {
    let (id, seen) = seen_of(event, template);
    Log {
        id,
        fingerprint,
        seen,
    }
}

/// A log's id, and the facts of it the collector adds up.
fn seen_of(event: LogEvent, template: Arc<str>) -> (String, Seen) {
    let seen = Seen {
        timestamp: event.timestamp,
        host: event.host,
        service: event.service,
        template,
    };
    (event.id, seen)
}

/// A log whose problem's leader resolved: one more occurrence of that ticket.
pub(super) fn follower(p: Pending, fingerprint: Fingerprint, res: Arc<Resolution>) -> Outcome {
    Outcome::Followed {
        log: log_of(p.event, fingerprint, p.template),
        resolution: res,
    }
}

/// A log the run took but did not finish: failed, and kept for the next run's retry. Without a
/// fingerprint when the run stopped before it had one.
pub(super) fn unprocessed(
    event: LogEvent,
    fingerprint: Option<&Fingerprint>,
    template: Arc<str>,
    why: &'static str,
) -> Outcome {
    let retry_event = event.to_value();
    let (id, seen) = seen_of(event, template);
    Outcome::Unfinished {
        id,
        fingerprint: fingerprint.cloned(),
        seen,
        why,
        retry_event,
    }
}
