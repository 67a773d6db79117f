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
//!   ([`Deferral`]). Then each takes the fingerprint its template stands for now and the whole
//!   of its problem as the run saw it (counts, hosts, merged templates' labels), so its ticket
//!   is filed in one create that the end of the run need not rewrite, and all their lookups go
//!   out together.
//! - **worker pool**: at most `workers` leaders in flight (a `JoinSet`); without `--async` that
//!   is 1, on the same code path, so both modes file the same tickets and differ only in time.
//!   Each leader has one deadline (`--timeout`), passed down to the HTTP layer. A leader that
//!   fails hands its problem to the oldest parked log of it, which starts with a fresh deadline.
//! - **collector**: every outcome is added up there, in the order the loop sees it.
//! - **ticket phase** (`ticket::recurrence`), once every leader is done: tickets created before
//!   the input ended are brought up to date (once), recurring ones commented on, merged ones
//!   labelled, `workers` tickets at once.
//!
//! Stopping: an interrupt (`Shutdown`) stops taking logs and starting leaders at once; leaders
//! in flight get the grace period (`--shutdown-grace`), then are cancelled and their logs (and
//! their parked logs) become `failed` (kept for the next run's retry). The ticket phase and the
//! state flush that follow listen to the same interrupt. Nothing started here outlives `run`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::collector::Collector;
use crate::config::{Config, SourceConfig};
use crate::dedup::{Claim, Deduplicator};
use crate::event::LogEvent;
use crate::grouping::fingerprint::{self, Fingerprint};
use crate::grouping::{MinerConfig, TemplateMiner, TemplateSnapshot};
use crate::http::{HttpError, RetryPolicy, Service};
use crate::jira::JiraClient;
use crate::outcome::{LeaderReport, Outcome, OutcomeKind, Resolution, Seen, Stage, TicketAction};
use crate::progress::Progress;
use crate::report::Report;
use crate::shutdown::Shutdown;
use crate::source::datadog::DatadogSource;
use crate::source::{self, SourceItem};
use crate::state::StateHandle;
use crate::ticket::known::{Tally, Whole};
use crate::ticket::{self, LeadFailure, TicketStage};

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
}

/// Logs of *young* templates (born beside a sibling in their family, see `grouping`), held
/// back until the input ends: by then the template may have merged into its sibling, and its
/// logs join the sibling's ticket instead of filing one that the merge would leave behind.
#[derive(Default)]
struct Held {
    logs: Vec<(Fingerprint, Pending)>,
    fingerprints: HashSet<Fingerprint>,
}

impl Held {
    fn holds(&self, fp: &Fingerprint) -> bool {
        self.fingerprints.contains(fp)
    }

    fn hold(&mut self, fp: Fingerprint, pending: Pending) {
        self.fingerprints.insert(fp.clone());
        self.logs.push((fp, pending));
    }

    /// Everything held goes on, in arrival order, under the fingerprint its template stands for
    /// now (the sibling's, when it merged), as a leader or behind one.
    fn release(
        &mut self,
        miner: &TemplateMiner,
        dedup: &mut Deduplicator<Fingerprint, Resolution, Pending>,
        waiting: &mut VecDeque<(Fingerprint, Pending)>,
        collector: &mut Collector,
        tickets: Option<&TicketStage>,
        deferring: bool,
    ) -> anyhow::Result<()> {
        self.fingerprints.clear();
        for (fp, mut p) in std::mem::take(&mut self.logs) {
            let now = miner.resolve(&fp);
            if now != fp {
                if let Some(tickets) = tickets {
                    // A ticket found under the young label (or the log's masking-only one)
                    // still counts.
                    let old = fingerprint::fingerprint(&p.event).fingerprint;
                    tickets.search_also(&now, &[fp.clone(), old]);
                }
                if let Some(t) = miner.template_of(&now) {
                    p.template = t.to_string();
                }
            }
            match dedup.claim(&now, p) {
                Claim::Lead(p) => {
                    if let (Some(tickets), false) = (tickets, deferring) {
                        tickets.prefetch(&now);
                    }
                    waiting.push_back((now, p));
                }
                Claim::Parked => {}
                Claim::Resolved(res, p) => collector.add(follower(p, now, &res))?,
            }
        }
        Ok(())
    }
}

/// A log waiting to lead, or parked behind its leader.
struct Pending {
    event: LogEvent,
    template: String,
    /// A leader's: what the run knows of its problem beyond this log, for its ticket's create.
    whole: Option<Whole>,
}

impl Pending {
    fn new(event: LogEvent, template: String) -> Self {
        Pending {
            event,
            template,
            whole: None,
        }
    }
}

/// New problems wait before their tickets are looked up and filed (see [`Deferral`]).
struct Deferral {
    /// Still deferring: leaders wait in the queue, unsent and not looked up.
    on: bool,
    /// When the first leader began to wait: the deferral ends `max` after it.
    since: Option<tokio::time::Instant>,
    max: Duration,
    /// Per fingerprint (as each log was given it), the logs taken so far.
    tallies: HashMap<Fingerprint, Tally>,
}

impl Deferral {
    fn new(on: bool, max: Duration) -> Self {
        Deferral {
            on,
            since: None,
            max,
            tallies: HashMap::new(),
        }
    }

    /// When the deferral ends at the latest, once a leader waits.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.since.filter(|_| self.on).map(|s| s + self.max)
    }

    /// One more log of `fp`, taken from the source.
    fn tally(&mut self, fp: &Fingerprint, event: &LogEvent) {
        self.tallies
            .entry(fp.clone())
            .or_default()
            .add(event.timestamp, event.host.as_deref());
    }

    /// What the run knows now of `fp`'s problem alone (the deferral is over).
    fn own(&self, fp: &Fingerprint) -> Whole {
        Whole {
            tally: self.tallies.get(fp).cloned().unwrap_or_default(),
            ..Whole::default()
        }
    }

    /// End the deferral: every leader waiting now takes the fingerprint its template stands for
    /// now (a template merged into another's joins that problem, its logs parked behind the
    /// other's leader), is given the whole of its problem as the run knows it (its logs and
    /// those of templates merged into it, their fingerprints, its template now), and its
    /// ticket is looked up, all in one go: the lookups go out in as few searches as they fit.
    fn end(
        &mut self,
        miner: &TemplateMiner,
        dedup: &mut Deduplicator<Fingerprint, Resolution, Pending>,
        waiting: &mut VecDeque<(Fingerprint, Pending)>,
        collector: &mut Collector,
        tickets: Option<&TicketStage>,
    ) -> anyhow::Result<()> {
        if !self.on {
            return Ok(());
        }
        self.on = false;
        // The whole of each problem, under the fingerprint it stands for now.
        let mut wholes: HashMap<Fingerprint, Whole> = HashMap::new();
        let mut fps: Vec<&Fingerprint> = self.tallies.keys().collect();
        fps.sort();
        for fp in fps {
            let now = miner.resolve(fp);
            let whole = wholes.entry(now.clone()).or_default();
            whole.tally.absorb(&self.tallies[fp]);
            if *fp != now {
                whole.aliases.push(fp.clone());
            }
        }
        // Templates merged in the run: their fingerprints too (one born and merged in the same
        // log never gave a log its fingerprint).
        for merge in miner.run_merges() {
            for fp in [&merge.from, &merge.into] {
                let fp = Fingerprint::from_raw(fp.as_str());
                let now = miner.resolve(&fp);
                if let Some(whole) = wholes.get_mut(&now) {
                    if fp != now && !whole.aliases.contains(&fp) {
                        whole.aliases.push(fp);
                    }
                }
            }
        }
        // Leaders whose template merged into another's: their logs go to that problem.
        let (stay, moved): (Vec<_>, Vec<_>) = std::mem::take(waiting)
            .into_iter()
            .partition(|(fp, _)| miner.resolve(fp) == *fp);
        waiting.extend(stay);
        for (fp, p) in moved {
            let now = miner.resolve(&fp);
            let parked = dedup.abandon(&fp);
            for mut p in std::iter::once(p).chain(parked) {
                if let Some(t) = miner.template_of(&now) {
                    p.template = t.to_string();
                }
                match dedup.claim(&now, p) {
                    Claim::Lead(p) => waiting.push_back((now.clone(), p)),
                    Claim::Parked => {}
                    Claim::Resolved(res, p) => collector.add(follower(p, now.clone(), &res))?,
                }
            }
        }
        for (fp, p) in waiting.iter_mut() {
            let mut whole = wholes.remove(fp).unwrap_or_default();
            whole.template = miner.template_of(fp).map(str::to_string);
            if let Some(t) = &whole.template {
                p.template = t.clone();
            }
            if let Some(tickets) = tickets {
                // Tickets may carry the merged templates' labels: looked up in the same search.
                tickets.search_also(fp, &whole.aliases);
            }
            p.whole = Some(whole);
        }
        if let Some(tickets) = tickets {
            for (fp, _) in waiting.iter() {
                tickets.prefetch(fp);
            }
        }
        Ok(())
    }
}

/// A leader's work, finished.
struct LeaderDone {
    fingerprint: Fingerprint,
    event: Arc<LogEvent>,
    template: Arc<str>,
    turn: u64,
    result: Result<LeaderReport, LeadFailure>,
    timings: ticket::Timings,
}

/// Run the whole pipeline until the source is exhausted, `--limit` is reached, or `shutdown`
/// fires.
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
    } = deps;
    // Outcomes are recorded (processed ids, the retry list) for a checkpointed source only.
    let source_state = state.clone().filter(|_| checkpoint_key.is_some());
    let mut collector = Collector::new(&config, progress, source_state.clone())?;
    collector.given_up(&given_up.0, given_up.1);
    let writable_state = state.clone().filter(|s| s.writable);
    let workers = config.workers.max(1);
    // Room for a couple of Datadog pages, or a few thousand file records, ahead of the workers.
    // The source writes one item at a time into a channel read in the same task, which hands
    // them on in batches: one cross-thread wake per batch instead of one per log. Room for a
    // couple of Datadog pages, or a few thousand file records, ahead of the workers.
    let (tx, source_rx) = mpsc::channel::<SourceItem>(HANDOFF_BATCH);
    let ahead = (config.batch_size as usize * 2).max(workers * 4).max(256);
    let (batch_tx, mut rx) = mpsc::channel::<Vec<SourceItem>>(ahead.div_ceil(HANDOFF_BATCH));
    let mut buffered: std::vec::IntoIter<SourceItem> = Vec::new().into_iter();
    let window_end = match &config.source {
        SourceConfig::Datadog(dd) => Some(dd.to),
        SourceConfig::File(_) => None,
    };
    // A handle on the Datadog service (its limiter) for the summary.
    let mut datadog_service: Option<Service> = None;
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
                    service: {
                        let service =
                            Service::new("Datadog", config.rate_limit, RetryPolicy::default())?;
                        datadog_service = Some(service.clone());
                        service
                    },
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
    let produce = async move {
        // Earlier runs' failures first, then the new logs.
        for event in retries {
            if tx.send(SourceItem::Event(event)).await.is_err() {
                return Ok(());
            }
        }
        drop(tx);
        source_future.await
    };
    let source = tokio::spawn(async move {
        let (result, ()) = tokio::join!(produce, hand_on(source_rx, batch_tx));
        result
    });

    let mut dedup: Deduplicator<Fingerprint, Resolution, Pending> = Deduplicator::new();
    let mut leaders: JoinSet<LeaderDone> = JoinSet::new();
    // Leaders in flight, by fingerprint: what is left of them if they are cancelled.
    let mut running: HashMap<Fingerprint, Arc<LogEvent>> = HashMap::new();
    // Each leader's turn, in the order leaders start: the order `--max-tickets` is granted in.
    let mut next_turn: u64 = 0;
    // Leaders waiting for a worker slot, in the order they became leaders.
    let mut waiting: VecDeque<(Fingerprint, Pending)> = VecDeque::new();
    let mut miner = load_miner(state.as_ref())
        .await?
        .with_rules(config.groups.clone());
    let mut taking = true;
    let mut interrupted = false;
    let mut fatal: Option<String> = None;
    let mut source_ended = false;
    let mut events: u64 = 0;
    let mut warnings_seen = false;
    // The newest timestamp taken from the source (logs come oldest first): the checkpoint can
    // move up to it when the run stops before its window is done.
    let mut last_fetched: Option<DateTime<Utc>> = None;
    let per_log_timeout = config.per_log_timeout;
    let mut held = Held::default();
    // With Jira, new problems wait for the input's end before their tickets are looked up and
    // filed, at most half the per-log deadline.
    let mut deferral = Deferral::new(jira.is_some(), per_log_timeout / 2);
    let mut deferred_left = 0usize;
    // Taking logs until LOOKAHEAD leaders wait, then not until half of them have a slot.
    let mut filling = true;
    // The loop, in a block of its own: a failure inside it (the state store, the report file)
    // ends the loop but not the run; the clean-up below runs on every path.
    // The log being taken when a failure ended the loop.
    let mut in_hand: Option<LogEvent> = None;
    let looped: anyhow::Result<()> = async {
    loop {
        let stopping = interrupted || fatal.is_some();
        let stage = jira.is_some().then_some(&*tickets);
        if !taking && !stopping && !held.logs.is_empty() {
            // The input is done: every merge it could cause has happened.
            held.release(
                &miner,
                &mut dedup,
                &mut waiting,
                &mut collector,
                stage,
                deferral.on,
            )?;
        }
        // New problems wait for the input to end (their tickets are then filed with all the
        // run knows of them, in one create each), for at most `deferral.max`, and while the
        // loop can take more logs.
        if deferral.on
            && (!taking
                || stopping
                || waiting.len() >= LOOKAHEAD
                || dedup.parked() >= MAX_PARKED
                || deferral
                    .deadline()
                    .is_some_and(|d| tokio::time::Instant::now() >= d))
        {
            deferral.end(&miner, &mut dedup, &mut waiting, &mut collector, stage)?;
            // Leaders that only waited for the deferral still start when an interrupt ended it
            // (without it they would be running or done by now), within the grace period.
            if stopping {
                deferred_left = waiting.len();
            }
        }
        if deferral.on && deferral.since.is_none() && !waiting.is_empty() {
            deferral.since = Some(tokio::time::Instant::now());
        }
        while (!stopping || deferred_left > 0) && !deferral.on && leaders.len() < workers {
            let Some((fp, pending)) = waiting.pop_front() else {
                break;
            };
            deferred_left = deferred_left.saturating_sub(1);
            let whole = pending.whole.unwrap_or_else(|| deferral.own(&fp));
            let event = Arc::new(pending.event);
            running.insert(fp.clone(), event.clone());
            let turn = next_turn;
            next_turn += 1;
            tickets.register_turn(turn);
            leaders.spawn(lead(
                tickets.clone(),
                fp,
                event,
                Arc::from(pending.template),
                turn,
                per_log_timeout,
                whole,
            ));
        }
        if leaders.is_empty() && deferred_left == 0 && (!taking || (stopping && waiting.is_empty()))
        {
            break;
        }
        if waiting.len() >= LOOKAHEAD {
            filling = false;
        } else if waiting.len() <= LOOKAHEAD / 2 {
            filling = true;
        }
        let can_take = taking && filling && dedup.parked() < MAX_PARKED;
        tokio::select! {
            biased;
            () = sleep_until_some(deferral.deadline()), if deferral.deadline().is_some() => {
                // The input goes on too long for new problems to wait for it: the loop's top
                // ends the deferral.
            }
            () = shutdown.next_step(interrupted), if !interrupted || !leaders.is_empty() => {
                if !interrupted {
                    interrupted = true;
                    taking = false;
                } else {
                    // The grace period is over: cancel what is still in flight.
                    leaders.abort_all();
                    tickets.abort().await;
                    while leaders.join_next().await.is_some() {}
                    break;
                }
            }
            Some(joined) = leaders.join_next(), if !leaders.is_empty() => {
                let done = match joined {
                    Ok(done) => done,
                    // Only an abort ends a leader task without its result, and aborts leave
                    // the loop above.
                    Err(e) => anyhow::bail!("a leader task ended without its result: {e}"),
                };
                running.remove(&done.fingerprint);
                tickets.end_turn(done.turn);
                let fp = done.fingerprint.clone();
                match leader_finished(done, &mut collector)? {
                    Ok(resolution) => {
                        if let Some(key) = &resolution.key {
                            miner.note_ticket(&fp, key);
                        }
                        for p in dedup.resolve(&fp, resolution.clone()) {
                            collector.add(follower(p, fp.clone(), &resolution))?;
                        }
                    }
                    Err(auth) => {
                        if let Some(reason) = auth {
                            fatal.get_or_insert(reason);
                            taking = false;
                        }
                        if let Some(next) = dedup.fail(&fp) {
                            waiting.push_back((fp, next));
                        }
                    }
                }
            }
            first = next_item(&mut rx, &mut buffered), if can_take => {
                // The rest of the batch at hand is taken in the same turn, as long as the loop
                // may take: one pass through this `select!` per batch, not per log.
                let mut item = first;
                loop {
                    match item {
                        None => {
                            taking = false;
                            source_ended = true;
                        }
                        Some(SourceItem::Event(event)) => {
                            collector.fetched();
                            let retry = !retry_ids.is_empty() && retry_ids.remove(&event.id);
                            let mut already = false;
                            if !retry {
                                events += 1;
                                last_fetched = event.timestamp.max(last_fetched);
                                if let Some(state) = &source_state {
                                    let id = event.id.clone();
                                    match state.call(move |s| s.is_seen(&id)).await {
                                        Ok(seen) => already = seen,
                                        Err(e) => {
                                            // Reported as failed with the others left over.
                                            in_hand = Some(event);
                                            return Err(e);
                                        }
                                    }
                                }
                            }
                            if already {
                                collector.add(Outcome::already_processed(event.id))?;
                            } else {
                                // Redacted first: nothing after this line sees the raw text,
                                // and the templates the miner learns and stores hold no secret.
                                let event = config.redact.event(event);
                                let printed = miner.fingerprint(&event);
                                // A template is saved before any ticket can carry its label: the
                                // writer applies operations in order, and a create commits first.
                                if let Err(e) =
                                    save_templates(&mut miner, writable_state.as_ref(), false).await
                                {
                                    in_hand = Some(event);
                                    return Err(e);
                                }
                                if printed.new_in_run && jira.is_some() {
                                    // Tickets filed before templates were learned carry the
                                    // masking-only label: search it too (in the same query), and
                                    // merged templates' labels.
                                    let mut also = printed.also.clone();
                                    also.push(fingerprint::fingerprint(&event).fingerprint);
                                    tickets.search_also(&printed.fingerprint, &also);
                                }
                                if jira.is_some() {
                                    // For the create of its problem's ticket.
                                    deferral.tally(&printed.fingerprint, &event);
                                }
                                let pending = Pending::new(event, printed.template);
                                if printed.young || held.holds(&printed.fingerprint) {
                                    held.hold(printed.fingerprint, pending);
                                    if held.logs.len() >= MAX_HELD {
                                        let stage = jira.is_some().then_some(&*tickets);
                                        held.release(
                                            &miner,
                                            &mut dedup,
                                            &mut waiting,
                                            &mut collector,
                                            stage,
                                            deferral.on,
                                        )?;
                                    }
                                } else {
                                    match dedup.claim(&printed.fingerprint, pending) {
                                        Claim::Lead(p) => {
                                            if jira.is_some() && !deferral.on {
                                                tickets.prefetch(&printed.fingerprint);
                                            }
                                            waiting.push_back((printed.fingerprint, p));
                                        }
                                        Claim::Parked => {}
                                        Claim::Resolved(res, p) => {
                                            collector.add(follower(p, printed.fingerprint, &res))?;
                                        }
                                    }
                                }
                            }
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
                    }
                    if !(taking && waiting.len() < LOOKAHEAD && dedup.parked() < MAX_PARKED) {
                        break;
                    }
                    match buffered.next() {
                        Some(next) => item = Some(next),
                        None => break,
                    }
                }
            }
            else => break,
        }
    }
    Ok(())
    }
    .await;
    if let Err(e) = looped {
        // Nothing more is taken or started; what is in flight is stopped, and its logs are
        // failed below like any other unfinished log, kept for the next run's retry.
        fatal.get_or_insert(format!("{e:#}"));
        leaders.abort_all();
        tickets.abort().await;
        while leaders.join_next().await.is_some() {}
    }
    // Whatever did not finish: leaders cancelled after the grace period, leaders that never
    // got a slot, and the logs parked behind them. Each is failed and kept for a retry.
    let why = if interrupted {
        "interrupted before it was processed"
    } else {
        "not processed: the run stopped"
    };
    // Each is added even when an earlier add failed (the state store gone): the report lists
    // them all, and the first failure becomes the run's error.
    let mut left: Vec<Outcome> = Vec::new();
    if let Some(event) = in_hand.take() {
        left.push(unprocessed(event, None, String::new(), why));
    }
    let unfinished: Vec<Fingerprint> = running.keys().cloned().collect();
    for fp in unfinished {
        if let Some(event) = running.remove(&fp) {
            let event = Arc::try_unwrap(event).unwrap_or_else(|e| (*e).clone());
            left.push(unprocessed(event, Some(&fp), String::new(), why));
        }
        for p in dedup.abandon(&fp) {
            left.push(unprocessed(p.event, Some(&fp), p.template, why));
        }
    }
    for (fp, p) in std::mem::take(&mut held.logs) {
        left.push(unprocessed(p.event, Some(&fp), p.template, why));
    }
    for (fp, p) in std::mem::take(&mut waiting) {
        left.push(unprocessed(p.event, Some(&fp), p.template, why));
        for p in dedup.abandon(&fp) {
            left.push(unprocessed(p.event, Some(&fp), p.template, why));
        }
    }
    for outcome in left {
        if let Err(e) = collector.add(outcome) {
            fatal.get_or_insert(format!("{e:#}"));
        }
    }
    debug_assert_eq!(dedup.parked(), 0, "every parked log has an outcome");
    // Hang up. A source that ended by itself is asked how it ended; one we stopped taking from
    // (limit, interrupt) may be blocked on input that never comes (an open stdin), so it is
    // stopped: nothing it could still say matters to this run.
    drop(rx);
    drop(buffered);
    let source_error = if source_ended {
        match source.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) => Some(format!("the source task failed: {e}")),
        }
    } else {
        source.abort();
        let _ = source.await;
        None
    };
    // Creates still at Jira after their log's deadline finish (or, after an interrupt, get
    // what is left of the grace period).
    if shutdown.bounded(tickets.drain()).await.is_none() {
        interrupted = true;
        tickets.abort().await;
    }
    interrupted |= shutdown.poll_now();
    let merges = miner.take_run_merges();
    if let (Some(jira), false, None, false) = (&jira, config.dry_run, &fatal, interrupted) {
        let cooldown =
            chrono::Duration::from_std(config.comment_cooldown).unwrap_or(chrono::Duration::MAX);
        let (created, recurring) = collector.ticket_work(&config.site);
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
            None => {
                interrupted = true;
                Vec::new()
            }
        };
        if !interrupted {
            let phase = ticket::recurrence::run(
                jira,
                writable_state.as_ref(),
                collector.counts_occurrences(),
                ticket::recurrence::Plan {
                    created,
                    recurring,
                    merges: steps,
                },
                cooldown,
                config.now,
                // As many tickets at once as leaders: 1 without `--async`.
                workers,
                shutdown,
            )
            .await;
            interrupted |= phase.interrupted;
            collector.ticket_phase(phase);
        }
    }
    collector.regroup(&miner);
    // Saving state: the templates, every outcome, then the checkpoint, within the grace period
    // if interrupted.
    let saved = shutdown
        .bounded(async {
            save_templates(&mut miner, writable_state.as_ref(), true).await?;
            save_state(
                &mut collector,
                writable_state.as_ref(),
                checkpoint_key.as_deref(),
                window_end,
                Completion {
                    complete: source_ended
                        && source_error.is_none()
                        && fatal.is_none()
                        && !interrupted
                        && !warnings_seen,
                    warnings_seen,
                    last_fetched,
                },
            )
            .await
        })
        .await;
    match saved {
        Some(Ok(())) => {}
        // The report is still written, with the failure as the run's error.
        Some(Err(e)) => {
            let e = format!("could not save the state: {e:#}");
            if fatal.is_some() {
                collector.warning(e);
            } else {
                fatal = Some(e);
            }
        }
        None => {
            interrupted = true;
            collector.warning(
                "interrupted while saving the state: the logs not yet saved are processed again next run"
                    .into(),
            );
        }
    }
    interrupted |= shutdown.fired();
    let trips = jira.as_ref().map_or(0, |j| j.breaker_trips()) + tickets.analyzer_breaker_trips();
    collector.llm_fallbacks(tickets.analyzer_fallbacks());
    collector.limiter_waits(
        datadog_service
            .iter()
            .filter_map(Service::limiter_wait)
            .chain(jira.as_ref().and_then(|j| j.limiter_wait()))
            .collect(),
    );
    collector.finish(interrupted, fatal.or(source_error), trips)
}

/// Sleep until `at`; never, without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Items handed from the source to the loop at once.
const HANDOFF_BATCH: usize = 256;

/// Move the source's items on to the loop in batches of what is there, up to `HANDOFF_BATCH`.
async fn hand_on(mut items: mpsc::Receiver<SourceItem>, batches: mpsc::Sender<Vec<SourceItem>>) {
    loop {
        // Room at the loop first: meanwhile the source fills its channel without waking
        // anyone, and the batch taken next is a full one.
        let Ok(room) = batches.reserve().await else {
            return;
        };
        let mut batch = Vec::with_capacity(HANDOFF_BATCH);
        if items.recv_many(&mut batch, HANDOFF_BATCH).await == 0 {
            return;
        }
        room.send(batch);
    }
}

/// The next item from the source: from the batch at hand, else the next batch (cancel-safe:
/// a batch is taken only in the poll that returns its first item).
async fn next_item(
    rx: &mut mpsc::Receiver<Vec<SourceItem>>,
    buffered: &mut std::vec::IntoIter<SourceItem>,
) -> Option<SourceItem> {
    if let Some(item) = buffered.next() {
        return Some(item);
    }
    loop {
        *buffered = rx.recv().await?.into_iter();
        if let Some(item) = buffered.next() {
            return Some(item);
        }
    }
}

/// How far the source got, for the checkpoint.
struct Completion {
    complete: bool,
    warnings_seen: bool,
    last_fetched: Option<DateTime<Utc>>,
}

/// Commit every outcome, then move the checkpoint as far as it is safe.
/// The template miner, continuing from what the state store learned in earlier runs.
async fn load_miner(state: Option<&StateHandle>) -> anyhow::Result<TemplateMiner> {
    let snapshot = match state {
        Some(state) => state.call(|s| s.load_templates()).await?,
        None => TemplateSnapshot::default(),
    };
    Ok(TemplateMiner::from_snapshot(
        MinerConfig::default(),
        snapshot,
    ))
}

/// Save the miner's changes: at once when a template was born, generalised, merged or
/// evicted (`needs_save`), and everything (counts too) when `all`.
async fn save_templates(
    miner: &mut TemplateMiner,
    state: Option<&StateHandle>,
    all: bool,
) -> anyhow::Result<()> {
    let Some(state) = state else { return Ok(()) };
    if all || miner.needs_save() {
        let changes = miner.take_changes();
        state.call(move |s| s.save_templates(&changes)).await?;
    }
    Ok(())
}

/// Two known templates turned out to be one problem: the ticket that survives carries both
/// labels, so either finds it. The survivor's own ticket wins; otherwise the merged one's
/// ticket gets the survivor's label; a younger ticket of the merged template is told where its
/// problem went (it is not closed: people may have worked on it). Nothing is created here.
///
/// A merge whose two labels a ticket created in this run already carries (`created`: labels by
/// ticket key) needs nothing. The others' tickets are looked up in batched searches; what to
/// do is returned, for the ticket phase to carry out with the rest of the run's ticket work.
async fn merge_steps(
    jira: &JiraClient,
    merges: &[crate::grouping::TemplateMerge],
    created: &HashMap<String, Vec<String>>,
) -> Result<Vec<ticket::recurrence::MergeStep>, String> {
    use crate::jira::content::fingerprint_label;
    use ticket::recurrence::MergeStep;
    let pending: Vec<(String, String)> = merges
        .iter()
        .map(|m| (fingerprint_label(&m.into), fingerprint_label(&m.from)))
        .filter(|(into, from)| {
            !created
                .values()
                .any(|labels| labels.contains(into) && labels.contains(from))
        })
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let mut labels: Vec<String> = Vec::new();
    for (into, from) in &pending {
        for l in [into, from] {
            if !labels.contains(l) {
                labels.push(l.clone());
            }
        }
    }
    let mut tickets: Vec<(String, Vec<String>)> = Vec::new();
    for chunk in labels.chunks(crate::jira::lookup::CHUNK_LABELS) {
        let found = jira
            .open_with_labels(chunk)
            .await
            .map_err(|e| format!("could not look up the tickets of merged problems: {e:#}"))?;
        for (key, labels) in found {
            if !tickets.iter().any(|(k, _)| *k == key) {
                tickets.push((key, labels));
            }
        }
    }
    // Labels to add, by ticket, in the order first needed; comments in merge order.
    let mut adds: Vec<(String, Vec<String>)> = Vec::new();
    let mut comments: Vec<MergeStep> = Vec::new();
    for (into, from) in &pending {
        let of_merge: Vec<usize> = (0..tickets.len())
            .filter(|&i| tickets[i].1.contains(into) || tickets[i].1.contains(from))
            .collect();
        let chosen = of_merge
            .iter()
            .copied()
            .find(|&i| tickets[i].1.contains(into))
            .or_else(|| {
                of_merge
                    .iter()
                    .copied()
                    .find(|&i| tickets[i].1.contains(from))
            });
        let Some(chosen) = chosen else { continue };
        let key = tickets[chosen].0.clone();
        for label in [into, from] {
            if !tickets[chosen].1.contains(label) {
                tickets[chosen].1.push(label.clone());
                match adds.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, add)) => add.push(label.clone()),
                    None => adds.push((key.clone(), vec![label.clone()])),
                }
            }
        }
        for &i in &of_merge {
            let (other, other_labels) = &tickets[i];
            if *other != key && other_labels.contains(from) && !other_labels.contains(into) {
                let step = MergeStep::Comment {
                    key: other.clone(),
                    survivor: key.clone(),
                    label: from.clone(),
                };
                if !comments.contains(&step) {
                    comments.push(step);
                }
            }
        }
    }
    Ok(adds
        .into_iter()
        .map(|(key, add)| MergeStep::Label { key, add })
        .chain(comments)
        .collect())
}

async fn save_state(
    collector: &mut Collector,
    state: Option<&StateHandle>,
    checkpoint_key: Option<&str>,
    window_end: Option<DateTime<Utc>>,
    done: Completion,
) -> anyhow::Result<()> {
    collector.flush_state().await?;
    // Every log up to the checkpoint now has a final outcome recorded (or is on the retry list).
    if let (Some(state), Some(key), Some(end)) = (state, checkpoint_key, window_end) {
        // A partial result (Datadog's timeout status or warnings) may lack logs older than the
        // newest one it returned: the checkpoint stays, and the next run reads the span again.
        let until = if done.complete {
            Some(end)
        } else if done.warnings_seen {
            None
        } else {
            done.last_fetched
        };
        // A log stamped past the window (a clock far ahead) must not carry the checkpoint with it.
        let until = until.map(|t| t.min(end));
        if let Some(until) = until {
            let key = key.to_string();
            state
                .call_durable(move |s| s.advance_checkpoint(&key, until, CHECKPOINT_KEEP_IDS))
                .await?;
        }
    }
    Ok(())
}

/// How far behind the checkpoint processed ids are kept, to recognise logs an overlapping window
/// fetches again.
const CHECKPOINT_KEEP_IDS: chrono::Duration = chrono::Duration::hours(6);

/// One leader's work under its deadline; a panic inside it becomes its failure.
async fn lead(
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
        }),
        Err(_) => Err(LeadFailure {
            stage: progress.stage.get(),
            error: anyhow::anyhow!("internal error: the leader's work panicked"),
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
fn leader_finished(
    done: LeaderDone,
    collector: &mut Collector,
) -> anyhow::Result<Result<Resolution, Option<String>>> {
    let LeaderDone {
        fingerprint,
        event,
        template,
        result,
        timings,
        ..
    } = done;
    let event = Arc::try_unwrap(event).unwrap_or_else(|e| (*e).clone());
    let seen = Seen {
        timestamp: event.timestamp,
        host: event.host.clone(),
        service: event.service.clone(),
        template: template.to_string(),
    };
    let mut outcome = Outcome {
        log_id: String::new(),
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
    let answer = match result {
        Ok(report) => {
            let res = report.resolution.clone();
            outcome.ticket = res.key.clone();
            outcome.kind = match res.action {
                TicketAction::Created => OutcomeKind::Created,
                TicketAction::Existing => OutcomeKind::Existing,
                TicketAction::WouldCreate => OutcomeKind::WouldCreate,
                TicketAction::Reopened | TicketAction::WouldReopen => OutcomeKind::Existing,
                TicketAction::Capped => {
                    outcome.error = Some(CAPPED.into());
                    OutcomeKind::Skipped
                }
                TicketAction::Muted => {
                    outcome.error = Some(res.muted_reason());
                    OutcomeKind::Skipped
                }
            };
            outcome.leader = Some(Box::new(report));
            Ok(res)
        }
        Err(LeadFailure { stage, error }) => {
            outcome.retry_event = Some(event.to_value());
            let fatal = error
                .downcast_ref::<HttpError>()
                .filter(|h| h.is_auth())
                .map(|auth| format!("{auth}: check JIRA_URL and the Jira credentials (JIRA_EMAIL + JIRA_API_TOKEN, or JIRA_PAT)"));
            outcome.stage = Some(stage);
            outcome.error = Some(format!("{error:#}"));
            Err(fatal)
        }
    };
    outcome.log_id = event.id;
    collector.add(outcome)?;
    Ok(answer)
}

const CAPPED: &str = "the --max-tickets cap was reached before this problem's ticket";

/// A log whose problem's leader resolved: one more occurrence of that ticket.
fn follower(p: Pending, fingerprint: Fingerprint, res: &Resolution) -> Outcome {
    let (kind, error) = match res.action {
        TicketAction::Capped => (OutcomeKind::Skipped, Some(CAPPED.to_string())),
        TicketAction::Muted => (OutcomeKind::Skipped, Some(res.muted_reason())),
        _ => (OutcomeKind::Duplicate, None),
    };
    let event = p.event;
    Outcome {
        log_id: event.id,
        fingerprint: Some(fingerprint),
        kind,
        ticket: res.key.clone(),
        stage: None,
        error,
        seen: Some(Seen {
            timestamp: event.timestamp,
            host: event.host,
            service: event.service,
            template: p.template,
        }),
        leader: None,
        analyze_time: None,
        jira_time: None,
        warning: None,
        retry_event: None,
    }
}

/// A log the run stopped before it was done with: failed, kept for the next run's retry.
/// A log the run took but did not finish: failed, and kept for the next run's retry. Without a
/// fingerprint when the run stopped before it had one.
fn unprocessed(
    event: LogEvent,
    fingerprint: Option<&Fingerprint>,
    template: String,
    why: &str,
) -> Outcome {
    let retry_event = Some(event.to_value());
    Outcome {
        fingerprint: fingerprint.cloned(),
        kind: OutcomeKind::Failed,
        ticket: None,
        stage: Some(Stage::Dedup),
        error: Some(why.to_string()),
        seen: Some(Seen {
            timestamp: event.timestamp,
            host: event.host,
            service: event.service,
            template,
        }),
        leader: None,
        analyze_time: None,
        jira_time: None,
        warning: None,
        retry_event,
        log_id: event.id,
    }
}
