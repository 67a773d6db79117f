//! One leader: the first log of a problem, worked on under its deadline by the ticket stage,
//! and what its end means for the logs behind it.
//!
//! A leader is one task of the run's ([`Leaders`]), spawned with its log's deadline. Its end
//! ([`LeaderDone`]) goes to the loop when its work is done or its deadline passes, whichever
//! comes first: the loop then hands the problem on and the worker slot is free. With Jira, work
//! still going at the deadline (a create may be at Jira) goes on in the same task to its own
//! end, so its answer is recorded and the leader that replaces this one, waiting for the
//! problem's label lock meanwhile, finds the ticket instead of creating another. Told to stop
//! (the grace period is over, or the run failed), the task ends where it is.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::event::LogEvent;
use crate::grouping::fingerprint::Fingerprint;
use crate::outcome::{LeaderReport, Log, Outcome, Resolution, Seen, Work};
use crate::pipeline::collector::Collector;
use crate::tasks::TaskGroup;
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

/// The leaders in flight: their tasks (a group of the run's, told to stop together) and their
/// ends, as they come.
pub(super) struct Leaders {
    tasks: TaskGroup,
    /// Handed to every leader's task, for its end.
    ends: mpsc::UnboundedSender<LeaderDone>,
    done: mpsc::UnboundedReceiver<LeaderDone>,
    /// Leaders started whose end has not come yet: each holds a worker slot.
    in_flight: usize,
}

impl Leaders {
    pub(super) fn new(tasks: TaskGroup) -> Self {
        let (ends, done) = mpsc::unbounded_channel();
        Leaders {
            tasks,
            ends,
            done,
            in_flight: 0,
        }
    }

    /// Leaders whose end has not come yet.
    pub(super) fn len(&self) -> usize {
        self.in_flight
    }

    pub(super) fn is_empty(&self) -> bool {
        self.in_flight == 0
    }

    /// Start `leader` in its own task, under a deadline `timeout` from now.
    pub(super) fn start(
        &mut self,
        tickets: Arc<TicketStage>,
        leader: ticket::Leader,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        let ends = self.ends.clone();
        self.in_flight += 1;
        self.tasks
            .spawn_with_deadline(deadline, lead(tickets, leader, deadline, timeout, ends));
    }

    /// The next leader's end (cancel-safe: an end is taken only in the poll that returns it).
    pub(super) async fn next(&mut self) -> Option<LeaderDone> {
        // Never `None`: `self.ends` is a sender.
        let done = self.done.recv().await?;
        self.in_flight -= 1;
        Some(done)
    }

    /// Tell every leader still in flight, and the work going on after a deadline, to stop.
    /// Their ends never come; the run waits for their tasks.
    pub(super) fn stop(&self) {
        self.tasks.stop();
    }
}

/// One leader's work under its deadline (the task's): its end is sent at the deadline or when
/// the work is done, and a panic inside the work becomes its failure.
async fn lead(
    tickets: Arc<TicketStage>,
    leader: ticket::Leader,
    deadline: Instant,
    timeout: Duration,
    ends: mpsc::UnboundedSender<LeaderDone>,
) {
    let (fingerprint, event, template, turn) = (
        leader.fingerprint.clone(),
        leader.event.clone(),
        leader.template.clone(),
        leader.turn,
    );
    let progress = ticket::Progress::default();
    let work = AssertUnwindSafe(tickets.lead(leader, &progress)).catch_unwind();
    tokio::pin!(work);
    let (result, cut) = tokio::select! {
        // Work done at the deadline counts as done.
        biased;
        done = &mut work => {
            let result = done.unwrap_or_else(|_| Err(LeadFailure {
                stage: progress.stage.get(),
                error: anyhow::anyhow!("internal error: the leader's work panicked"),
                fatal: None,
            }));
            (result, false)
        }
        () = tokio::time::sleep_until(deadline) => {
            let failure = LeadFailure {
                stage: progress.stage.get(),
                error: anyhow::anyhow!("timed out after {} s (--timeout)", timeout.as_secs()),
                fatal: None,
            };
            (Err(failure), true)
        }
    };
    // The loop may be gone (the run stopped): nobody is left to tell.
    let _ = ends.send(LeaderDone {
        fingerprint,
        event,
        template,
        turn,
        result,
        timings: progress.take_timings(),
    });
    if cut && tickets.outlives_deadline() {
        // Nothing new is started past the deadline; what was in flight finishes and is
        // recorded, and its result is nobody's.
        let _ = work.await;
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
