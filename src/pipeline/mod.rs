//! The pipeline: source → ingest → worker pool (leaders only) → collector. The only place with
//! concurrency.
//!
//! One loop owns the run, and it is the single consumer of everything:
//! - **ingest**, in arrival order: take a log from the source's bounded channel, fingerprint it,
//!   and claim its fingerprint in the deduplicator. The first log of a problem *leads*; a later
//!   one is *parked* while its leader works (no task, no worker slot, no deadline of its own), or
//!   is done at once when its leader already finished. So neither a fingerprint nor the leader of
//!   a problem depends on the worker count or on scheduling. Up to `LOOKAHEAD` leaders wait for
//!   a slot; each one's ticket is looked up as it is claimed (`TicketStage::prefetch`), so the
//!   lookups of many problems go out in one batched Jira search.
//! - **deferral** (with Jira): new problems' leaders wait for the input's end before they are
//!   looked up or started, at most half of `--timeout` and while fewer than `LOOKAHEAD` wait
//!   (`hold::Deferral`). Then each takes the fingerprint its template stands for now and the whole
//!   of its problem as the run saw it (counts, hosts, merged templates' labels), so its ticket
//!   is filed in one create that the end of the run need not rewrite, and all their lookups go
//!   out together.
//! - **worker pool**: at most `workers` leaders in flight, each one task of the run's
//!   (`leader::Leaders`); without `--async` that is 1, on the same code path, so both modes
//!   file the same tickets and differ only in time. Each leader has one deadline (`--timeout`),
//!   its task's, which the HTTP layer reads. A leader that fails hands its problem to the
//!   oldest parked log of it, which starts with a fresh deadline.
//! - **collector**: every outcome is added up there, in the order the loop sees it.
//! - **ticket phase** (`ticket::recurrence`), once every leader is done: tickets created before
//!   the input ended are brought up to date (once), recurring ones commented on, merged ones
//!   labelled, `workers` tickets at once.
//!
//! Stopping: an interrupt (`Shutdown`) stops taking logs and starting leaders at once; leaders
//! in flight get the grace period (`--shutdown-grace`), then are told to stop and their logs
//! (and their parked logs) become `failed` (kept for the next run's retry). The ticket phase
//! and the state flush that follow listen to the same interrupt. Nothing started here outlives
//! `run`: every task (the source, the leaders, the Jira lookups) is spawned through the run's
//! owner (`tasks::Tasks`), which `run` waits for before the ticket phase, and tells to stop
//! once the grace period is over; a task is aborted only if it has not ended by itself soon
//! after.
//!
//! Where things are: `run` below reads as the story of a run; `feed` starts and stops the
//! source task; `run_loop` is the loop (`Loop`, which owns the collector while it runs);
//! `hold` the waiting rooms (held logs, parked followers, the deferral); `leader` one
//! leader's work and what its end means for the logs behind it; `end` the end-of-run ticket
//! steps and what is loaded from and saved to the state store; `collector` holds the run's
//! `tally` (every number and the problems, pure) and its `outcome_writer` (the state record,
//! the report file and stderr lines each outcome causes).

pub mod collector;
mod end;
mod feed;
mod hold;
mod leader;
pub mod outcome_writer;
pub mod progress;
pub mod report;
mod run_loop;
pub mod stats;
pub mod tally;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::{Config, SourceConfig};
use crate::event::LogEvent;
use crate::http::Service;
use crate::jira::JiraClient;
use crate::pipeline::collector::Collector;
use crate::pipeline::progress::Progress;
use crate::pipeline::report::Report;
use crate::shutdown::Shutdown;
use crate::state::StateHandle;
use crate::tasks::{Tasks, STOP_WAIT};
use crate::ticket::{self, TicketStage};

use end::{load_miner, merge_steps, save_state, save_templates, Completion};
use feed::Feed;
use run_loop::{Loop, LoopParts};

/// Logs parked behind their leaders before the loop stops taking more from the source: a slow
/// leader with a burst of its problem behind it holds memory, not the other problems.
const MAX_PARKED: usize = 100_000;
/// Logs of young templates held back at most; past it they all go on (see `Held`).
const MAX_HELD: usize = 10_000;

/// Leaders claimed ahead of the worker pool: their tickets are looked up in batched searches
/// while they wait for a slot. Once this many wait, the loop takes no more logs until half of
/// them have a slot, so the next lookups again go out together.
const LOOKAHEAD: usize = 200;

/// What the pipeline works with besides its configuration.
pub struct Deps {
    pub tickets: Arc<TicketStage>,
    pub jira: Option<Arc<JiraClient>>,
    pub state: Option<StateHandle>,
    /// Logs that failed in earlier runs: processed first, before the source's.
    pub retries: Vec<LogEvent>,
    /// Logs given up after `--max-retries` runs (reported), and that limit.
    pub given_up: (Vec<String>, u32),
    /// Where the checkpoint of this source is kept (`None` for a file source).
    pub checkpoint_key: Option<String>,
    /// The owner of every task the run spawns.
    pub tasks: Tasks,
}

/// Run the whole pipeline until the source is exhausted, `--limit` is reached, or `shutdown`
/// fires. Every exit path after the source has started runs the same clean-up: unfinished logs
/// are failed (kept for a retry), the source task is stopped, the run's tasks are waited for
/// (told to stop once an interrupt's grace period is over), the state is saved as far as it
/// can be and the report is written.
pub async fn run(
    config: Config,
    deps: Deps,
    progress: Progress,
    shutdown: &mut Shutdown<'_>,
) -> anyhow::Result<Report> {
    let Deps {
        tickets,
        jira,
        state,
        retries,
        given_up,
        checkpoint_key,
        tasks,
    } = deps;
    // Open: outcomes are recorded (processed ids, the retry list) for a checkpointed source
    // only; the miner continues from what earlier runs learned.
    let source_state = state.clone().filter(|_| checkpoint_key.is_some());
    let writable_state = state.clone().filter(|s| s.writable);
    let mut collector = Collector::new(&config, progress, source_state.clone())?;
    collector.given_up(&given_up.0, given_up.1);
    let miner = load_miner(state.as_ref())
        .await?
        .with_rules(config.groups.clone());
    let retry_ids: HashSet<String> = retries.iter().map(|e| e.id.clone()).collect();

    // Start the source; from here on every path runs the clean-up below, and whatever way
    // `run` is left, every task it started is told to stop.
    let _stop = tasks.stop_on_drop();
    let mut feed = Feed::start(&config, retries, tasks.group())?;

    // Ingest and lead until the input ends, a limit, an interrupt or a failure.
    let mut run = Loop::new(LoopParts {
        config: &config,
        tickets: tickets.clone(),
        with_jira: jira.is_some(),
        source_state,
        writable_state: writable_state.clone(),
        collector,
        miner,
        retry_ids,
        leaders: tasks.group(),
    });
    run.drive(&mut feed, shutdown).await;
    run.fail_unfinished();
    let datadog = feed.datadog.clone();
    let source_error = feed.stop(run.source_ended).await;

    // No leader starts now: lookups queued for leaders that will not run are told to stop.
    tickets.no_more_leaders();
    // Creates still at Jira after their log's deadline finish (or, after an interrupt, get
    // what is left of the grace period, and are then told to stop). After this no task of the
    // run is left.
    if shutdown.bounded(tasks.wait()).await.is_none() {
        run.interrupted = true;
        tasks.stop(STOP_WAIT).await;
    }
    run.interrupted |= shutdown.poll_now();

    // The end of the run's ticket work: updates, recurrences, merges.
    if let (Some(jira), false, None, false) = (&jira, config.dry_run, &run.fatal, run.interrupted) {
        run.interrupted |=
            end_of_run_tickets(&config, jira, &mut run, writable_state.as_ref(), shutdown).await;
    }
    run.collector.regroup(&run.miner);

    // Save the templates, every outcome, then the checkpoint.
    save(
        &mut run,
        writable_state.as_ref(),
        checkpoint_key.as_deref(),
        window_end(&config),
        source_error.is_none(),
        shutdown,
    )
    .await;
    run.interrupted |= shutdown.fired();

    // Report.
    let fatal = run.fatal.take().or(source_error);
    report(run, &tickets, jira.as_deref(), datadog.as_ref(), fatal)
}

/// The run's last phase: what the ticket stage and the services counted joins the tally, and
/// the report is built (the miner and the parked logs are dropped first).
fn report(
    mut run: Loop<'_>,
    tickets: &TicketStage,
    jira: Option<&JiraClient>,
    datadog: Option<&Service>,
    fatal: Option<String>,
) -> anyhow::Result<Report> {
    let trips = jira.map_or(0, |j| j.breaker_trips()) + tickets.analyzer_breaker_trips();
    run.collector.llm_fallbacks(tickets.analyzer_fallbacks());
    for warning in tickets.take_store_warnings() {
        run.collector.warning(warning);
    }
    run.collector.limiter_waits(
        datadog
            .and_then(Service::limiter_wait)
            .into_iter()
            .chain(jira.and_then(|j| j.limiter_wait()))
            .collect(),
    );
    let (collector, interrupted) = run.into_collector();
    collector.finish(interrupted, fatal, trips)
}

/// The end of a Datadog window (the checkpoint's target); none for a file.
fn window_end(config: &Config) -> Option<DateTime<Utc>> {
    match &config.source {
        SourceConfig::Datadog(dd) => Some(dd.to),
        SourceConfig::File(_) => None,
    }
}

/// The ticket phase (`ticket::recurrence`): tickets created before the input ended brought up
/// to date, recurring ones commented on, merged ones labelled. Whether an interrupt cut it.
async fn end_of_run_tickets(
    config: &Config,
    jira: &JiraClient,
    run: &mut Loop<'_>,
    writable_state: Option<&StateHandle>,
    shutdown: &mut Shutdown<'_>,
) -> bool {
    let merges = run.miner.take_run_merges();
    let collector: &mut Collector = &mut run.collector;
    let (created, recurring) = collector.ticket_work();
    // Merges the run's creates did not already carry: their tickets are looked up together.
    let steps = match shutdown
        .bounded(merge_steps(jira, &merges, &collector.created_labels()))
        .await
    {
        Some(Ok(steps)) => steps,
        Some(Err(warning)) => {
            collector.warning(warning);
            Vec::new()
        }
        None => return true,
    };
    let phase = ticket::recurrence::run(
        config,
        jira,
        writable_state,
        collector.counts_occurrences(),
        ticket::recurrence::Plan {
            created,
            recurring,
            merges: steps,
        },
        shutdown,
    )
    .await;
    let interrupted = phase.interrupted;
    collector.ticket_phase(phase);
    interrupted
}

/// Save the templates, every outcome, then the checkpoint, within the grace period if
/// interrupted. A failure is the run's error (or a warning beside an earlier one); the report
/// is written either way.
async fn save(
    run: &mut Loop<'_>,
    writable_state: Option<&StateHandle>,
    checkpoint_key: Option<&str>,
    window_end: Option<DateTime<Utc>>,
    source_ok: bool,
    shutdown: &mut Shutdown<'_>,
) {
    let completion = Completion {
        complete: run.source_ended
            && source_ok
            && run.fatal.is_none()
            && !run.interrupted
            && !run.warnings_seen,
        warnings_seen: run.warnings_seen,
        last_fetched: run.last_fetched,
    };
    let (miner, collector) = (&mut run.miner, &mut run.collector);
    let saved = shutdown
        .bounded(async {
            save_templates(miner, writable_state, true).await?;
            save_state(
                collector,
                writable_state,
                checkpoint_key,
                window_end,
                completion,
            )
            .await
        })
        .await;
    match saved {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            let e = format!("could not save the state: {e:#}");
            if run.fatal.is_some() {
                run.collector.warning(e);
            } else {
                run.fatal = Some(e);
            }
        }
        None => {
            run.interrupted = true;
            run.collector.warning(
                "interrupted while saving the state: the logs not yet saved are processed again next run"
                    .into(),
            );
        }
    }
}
