//! The run loop: ingest in arrival order, lead, settle what waits; see the module above for
//! the rules. One [`Loop`] owns everything the loop changes, the collector included, until
//! [`Loop::drive`] returns; the phases after it take its parts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::end::save_templates;
use super::feed::Feed;
use super::hold::{Deferral, Held};
use super::leader::{follower, leader_finished, unprocessed, LeaderDone, Leaders, Pending};
use super::{LOOKAHEAD, MAX_HELD, MAX_PARKED};
use crate::config::Config;
use crate::dedup::{Claim, Deduplicator};
use crate::event::LogEvent;
use crate::grouping::fingerprint::{self, Fingerprint};
use crate::grouping::TemplateMiner;
use crate::outcome::{Outcome, Resolution};
use crate::pipeline::collector::Collector;
use crate::shutdown::Shutdown;
use crate::source::SourceItem;
use crate::state::StateHandle;
use crate::tasks::TaskGroup;
use crate::ticket::{Leader, TicketStage};

/// Everything the loop owns while it runs.
pub(super) struct Loop<'c> {
    config: &'c Config,
    tickets: Arc<TicketStage>,
    /// Jira is configured: tickets are looked up and filed.
    with_jira: bool,
    /// Where outcomes are recorded (a checkpointed source only) and where templates are saved.
    source_state: Option<StateHandle>,
    writable_state: Option<StateHandle>,
    pub(super) collector: Collector,
    pub(super) miner: TemplateMiner,
    dedup: Deduplicator<Fingerprint, Arc<Resolution>, Pending>,
    /// Leaders in flight: each one task of the run's, its end sent back here.
    leaders: Leaders,
    /// Leaders in flight, by fingerprint: what is left of them if they are cancelled.
    running: HashMap<Fingerprint, Arc<LogEvent>>,
    /// Each leader's turn, in the order leaders start: the order `--max-tickets` is granted in.
    next_turn: u64,
    /// Leaders waiting for a worker slot, in the order they became leaders.
    waiting: VecDeque<(Fingerprint, Pending)>,
    held: Held,
    deferral: Deferral,
    /// Leaders that only waited for a deferral an interrupt ended: they still start.
    deferred_left: usize,
    /// Taking logs until LOOKAHEAD leaders wait, then not until half of them have a slot.
    filling: bool,
    /// Ids on the retry list not yet taken: the first time an id comes it is the retry; the
    /// window may bring the same log again, and that copy is already being handled.
    retry_ids: HashSet<String>,
    /// The log being taken when a failure ended the loop.
    in_hand: Option<LogEvent>,
    /// Whether logs of the batch at hand were processed by an earlier run, asked ahead.
    asked: HashMap<String, bool>,
    taking: bool,
    pub(super) interrupted: bool,
    pub(super) fatal: Option<String>,
    pub(super) source_ended: bool,
    events: u64,
    pub(super) warnings_seen: bool,
    /// The newest timestamp taken from the source (logs come oldest first): the checkpoint can
    /// move up to it when the run stops before its window is done.
    pub(super) last_fetched: Option<DateTime<Utc>>,
}

/// What the loop is given.
pub(super) struct LoopParts<'c> {
    pub(super) config: &'c Config,
    pub(super) tickets: Arc<TicketStage>,
    pub(super) with_jira: bool,
    pub(super) source_state: Option<StateHandle>,
    pub(super) writable_state: Option<StateHandle>,
    pub(super) collector: Collector,
    pub(super) miner: TemplateMiner,
    pub(super) retry_ids: HashSet<String>,
    /// Where the leaders' tasks are spawned: a group of the run's.
    pub(super) leaders: TaskGroup,
}

impl<'c> Loop<'c> {
    /// The loop's tally and whether it was interrupted; the rest (the miner, parked logs) is
    /// dropped, so the report of a run with many problems is built without them in memory.
    pub(super) fn into_collector(self) -> (Collector, bool) {
        (self.collector, self.interrupted)
    }

    pub(super) fn new(parts: LoopParts<'c>) -> Self {
        let LoopParts {
            config,
            tickets,
            with_jira,
            source_state,
            writable_state,
            collector,
            miner,
            retry_ids,
            leaders,
        } = parts;
        Loop {
            config,
            tickets,
            with_jira,
            source_state,
            writable_state,
            collector,
            miner,
            dedup: Deduplicator::new(),
            leaders: Leaders::new(leaders),
            running: HashMap::new(),
            next_turn: 0,
            waiting: VecDeque::new(),
            held: Held::default(),
            // With Jira, new problems wait for the input's end before their tickets are looked
            // up and filed, at most half the per-log deadline.
            deferral: Deferral::new(with_jira, config.per_log_timeout / 2),
            deferred_left: 0,
            filling: true,
            retry_ids,
            in_hand: None,
            asked: HashMap::new(),
            taking: true,
            interrupted: false,
            fatal: None,
            source_ended: false,
            events: 0,
            warnings_seen: false,
            last_fetched: None,
        }
    }

    /// Take logs and lead until the input ends, `--limit` is reached, an interrupt's grace
    /// period is over, or a failure. A failure ends the loop, not the run: it becomes the run's
    /// error, and what is in flight is stopped for [`Loop::fail_unfinished`].
    pub(super) async fn drive(&mut self, feed: &mut Feed, shutdown: &mut Shutdown<'_>) {
        if let Err(e) = self.turns(feed, shutdown).await {
            self.fatal.get_or_insert(format!("{e:#}"));
            self.stop_leaders();
        }
    }

    async fn turns(&mut self, feed: &mut Feed, shutdown: &mut Shutdown<'_>) -> anyhow::Result<()> {
        loop {
            self.settle()?;
            let stopping = self.interrupted || self.fatal.is_some();
            if self.leaders.is_empty()
                && self.deferred_left == 0
                && (!self.taking || (stopping && self.waiting.is_empty()))
            {
                return Ok(());
            }
            if self.waiting.len() >= LOOKAHEAD {
                self.filling = false;
            } else if self.waiting.len() <= LOOKAHEAD / 2 {
                self.filling = true;
            }
            let can_take = self.taking && self.filling && self.dedup.parked() < MAX_PARKED;
            let deadline = self.deferral.deadline();
            tokio::select! {
                biased;
                () = sleep_until_some(deadline), if deadline.is_some() => {
                    // The input goes on too long for new problems to wait for it: `settle`
                    // ends the deferral.
                }
                () = shutdown.next_step(self.interrupted),
                    if !self.interrupted || !self.leaders.is_empty() =>
                {
                    if !self.interrupted {
                        self.interrupted = true;
                        self.taking = false;
                    } else {
                        // The grace period is over: what is still in flight is told to stop.
                        self.stop_leaders();
                        return Ok(());
                    }
                }
                Some(done) = self.leaders.next(), if !self.leaders.is_empty() => {
                    self.leader_done(done)?;
                }
                first = feed.next(), if can_take => self.take(first, feed).await?,
                else => return Ok(()),
            }
        }
    }

    /// Before each turn: held logs go on once the input is done, the deferral ends when its
    /// time is up, and leaders start while there are worker slots.
    fn settle(&mut self) -> anyhow::Result<()> {
        let stopping = self.interrupted || self.fatal.is_some();
        if !self.taking && !stopping && !self.held.logs.is_empty() {
            // The input is done: every merge it could cause has happened.
            self.release_held()?;
        }
        let stage = self.with_jira.then_some(&*self.tickets);
        // New problems wait for the input to end (their tickets are then filed with all the
        // run knows of them, in one create each), for at most `deferral.max`, and while the
        // loop can take more logs.
        if self.deferral.on
            && (!self.taking
                || stopping
                || self.waiting.len() >= LOOKAHEAD
                || self.dedup.parked() >= MAX_PARKED
                || self
                    .deferral
                    .deadline()
                    .is_some_and(|d| tokio::time::Instant::now() >= d))
        {
            self.deferral.end(
                &self.miner,
                &mut self.dedup,
                &mut self.waiting,
                &mut self.collector,
                stage,
            )?;
            // Leaders that only waited for the deferral still start when an interrupt ended it
            // (without it they would be running or done by now), within the grace period.
            if stopping {
                self.deferred_left = self.waiting.len();
            }
        }
        if self.deferral.on && self.deferral.since.is_none() && !self.waiting.is_empty() {
            self.deferral.since = Some(tokio::time::Instant::now());
        }
        self.start_leaders(stopping);
        Ok(())
    }

    /// Held logs go on: as leaders or behind them, under the fingerprint their template
    /// stands for now.
    fn release_held(&mut self) -> anyhow::Result<()> {
        let stage = self.with_jira.then_some(&*self.tickets);
        self.held.release(
            &self.miner,
            &mut self.dedup,
            &mut self.waiting,
            &mut self.collector,
            stage,
            self.deferral.on,
        )
    }

    /// Start waiting leaders while there are worker slots.
    fn start_leaders(&mut self, stopping: bool) {
        while (!stopping || self.deferred_left > 0)
            && !self.deferral.on
            && self.leaders.len() < self.config.workers.max(1)
        {
            let Some((fp, pending)) = self.waiting.pop_front() else {
                break;
            };
            self.deferred_left = self.deferred_left.saturating_sub(1);
            let whole = pending.whole.unwrap_or_else(|| self.deferral.own(&fp));
            let event = Arc::new(pending.event);
            self.running.insert(fp.clone(), event.clone());
            let turn = self.next_turn;
            self.next_turn += 1;
            self.tickets.register_turn(turn);
            let leader = Leader {
                event,
                fingerprint: fp,
                template: pending.template,
                turn,
                whole: Some(whole),
            };
            self.leaders
                .start(self.tickets.clone(), leader, self.config.per_log_timeout);
        }
    }

    /// Tell the leaders in flight, and the ticket work behind them, to stop; their logs stay in
    /// `running` for [`Loop::fail_unfinished`], and the run waits for their tasks.
    fn stop_leaders(&mut self) {
        self.leaders.stop();
        self.tickets.no_more_leaders();
    }

    /// A leader finished: its followers are done with it, or the next of them leads.
    fn leader_done(&mut self, done: LeaderDone) -> anyhow::Result<()> {
        self.running.remove(&done.fingerprint);
        self.tickets.end_turn(done.turn);
        let fp = done.fingerprint.clone();
        match leader_finished(done, &mut self.collector)? {
            Ok(resolution) => {
                if let Some(key) = &resolution.key {
                    self.miner.note_ticket(&fp, key);
                }
                // Shared: every later log of the problem holds the same resolution.
                for p in self.dedup.resolve(&fp, resolution.clone()) {
                    self.collector
                        .add(follower(p, fp.clone(), resolution.clone()))?;
                }
            }
            Err(auth) => {
                if let Some(reason) = auth {
                    self.fatal.get_or_insert(reason);
                    self.taking = false;
                }
                if let Some(next) = self.dedup.fail(&fp) {
                    self.waiting.push_back((fp, next));
                }
            }
        }
        Ok(())
    }

    /// Take `first` and the rest of the batch at hand, as long as the loop may take: one pass
    /// through the loop's `select!` per batch, not per log.
    async fn take(&mut self, first: Option<SourceItem>, feed: &mut Feed) -> anyhow::Result<()> {
        let mut item = first;
        loop {
            match item {
                None => {
                    self.taking = false;
                    self.source_ended = true;
                }
                Some(SourceItem::Event(event)) => self.take_event(event, feed).await?,
                Some(SourceItem::Skipped(s)) => {
                    if s.unreadable {
                        self.collector.unreadable(&s);
                    }
                    self.collector.fetched();
                    self.collector.add(Outcome::SkippedRecord {
                        location: s.location,
                        reason: s.reason,
                    })?;
                }
                Some(SourceItem::Warning(w)) => {
                    self.warnings_seen = true;
                    self.collector.warning(w);
                }
                Some(SourceItem::Fetched { latency, .. }) => self.collector.fetch_latency(latency),
                // Shown, but the result is complete: the checkpoint may move.
                Some(SourceItem::Notice(n)) => self.collector.notice(n),
                Some(SourceItem::Cut(c)) => self.collector.cut(&c),
                Some(SourceItem::Read { bytes }) => self.collector.input_read(bytes),
            }
            if !(self.taking && self.waiting.len() < LOOKAHEAD && self.dedup.parked() < MAX_PARKED)
            {
                return Ok(());
            }
            match feed.next_at_hand() {
                Some(next) => item = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// One log from the source: skipped if an earlier run processed it, else ingested.
    async fn take_event(&mut self, event: LogEvent, feed: &Feed) -> anyhow::Result<()> {
        self.collector.fetched();
        let retry = !self.retry_ids.is_empty() && self.retry_ids.remove(&event.id);
        let mut already = false;
        if !retry {
            self.events += 1;
            self.last_fetched = event.timestamp.max(self.last_fetched);
            if self.source_state.is_some() {
                match self.was_seen(&event.id, feed).await {
                    Ok(seen) => already = seen,
                    Err(e) => {
                        // Reported as failed with the others left over.
                        self.in_hand = Some(event);
                        return Err(e);
                    }
                }
            }
        }
        if already {
            self.collector
                .add(Outcome::AlreadyProcessed { log_id: event.id })?;
        } else {
            self.ingest(event).await?;
        }
        if self.config.limit.is_some_and(|limit| self.events >= limit) {
            self.taking = false;
        }
        Ok(())
    }

    /// Whether an earlier run already processed log `id`. The state store is asked once for
    /// this log and the rest of the batch at hand (not retries), in one round trip; the
    /// answers wait in `asked` for their logs.
    async fn was_seen(&mut self, id: &str, feed: &Feed) -> anyhow::Result<bool> {
        if let Some(seen) = self.asked.remove(id) {
            return Ok(seen);
        }
        let Some(state) = &self.source_state else {
            return Ok(false);
        };
        let mut ids = vec![id.to_string()];
        ids.extend(
            feed.event_ids_at_hand()
                .filter(|i| !self.retry_ids.contains(*i) && !self.asked.contains_key(*i))
                .map(str::to_string),
        );
        let asked = ids.clone();
        let seen = state.call(move |s| s.seen_among(&asked)).await?;
        for other in ids.into_iter().skip(1) {
            let was = seen.contains(&other);
            self.asked.insert(other, was);
        }
        Ok(seen.contains(id))
    }

    /// A new log (redacted by the feed): fingerprinted, then held (young template), led,
    /// parked or done.
    async fn ingest(&mut self, event: LogEvent) -> anyhow::Result<()> {
        let printed = self.miner.fingerprint(&event);
        // A template is saved before any ticket can carry its label: the writer applies
        // operations in order, and a create commits first.
        if let Err(e) = save_templates(&mut self.miner, self.writable_state.as_ref(), false).await {
            self.in_hand = Some(event);
            return Err(e);
        }
        if self.with_jira {
            if printed.new_in_run {
                // Tickets filed before templates were learned carry the masking-only label:
                // search it too (in the same query), and merged templates' labels.
                let mut also = printed.also.clone();
                also.push(fingerprint::fingerprint(&event).fingerprint);
                self.tickets.search_also(&printed.fingerprint, &also);
            }
            // For the create of its problem's ticket.
            self.deferral.tally(&printed.fingerprint, &event);
        }
        let pending = Pending::new(event, printed.template);
        if printed.young || self.held.holds(&printed.fingerprint) {
            self.held.hold(printed.fingerprint, pending);
            if self.held.logs.len() >= MAX_HELD {
                self.release_held()?;
            }
            return Ok(());
        }
        match self.dedup.claim(&printed.fingerprint, pending) {
            Claim::Lead(p) => {
                if self.with_jira && !self.deferral.on {
                    self.tickets.prefetch(&printed.fingerprint);
                }
                self.waiting.push_back((printed.fingerprint, p));
            }
            Claim::Parked => {}
            Claim::Resolved(res, p) => {
                self.collector.add(follower(p, printed.fingerprint, res))?;
            }
        }
        Ok(())
    }

    /// Whatever did not finish: leaders told to stop after the grace period or by a failure,
    /// leaders that never got a slot, held logs, the logs parked behind them and the log in
    /// hand. Each is failed and kept for a retry; each is added even when an earlier add failed
    /// (the state store gone), so the report lists them all, and the first failure becomes the
    /// run's error.
    pub(super) fn fail_unfinished(&mut self) {
        let why = if self.interrupted {
            "interrupted before it was processed"
        } else {
            "not processed: the run stopped"
        };
        let mut left: Vec<Outcome> = Vec::new();
        if let Some(event) = self.in_hand.take() {
            left.push(unprocessed(event, None, Arc::from(""), why));
        }
        let unfinished: Vec<Fingerprint> = self.running.keys().cloned().collect();
        for fp in unfinished {
            if let Some(event) = self.running.remove(&fp) {
                let event = Arc::try_unwrap(event).unwrap_or_else(|e| (*e).clone());
                left.push(unprocessed(event, Some(&fp), Arc::from(""), why));
            }
            for p in self.dedup.abandon(&fp) {
                left.push(unprocessed(p.event, Some(&fp), p.template, why));
            }
        }
        for (fp, p) in std::mem::take(&mut self.held.logs) {
            left.push(unprocessed(p.event, Some(&fp), p.template, why));
        }
        for (fp, p) in std::mem::take(&mut self.waiting) {
            left.push(unprocessed(p.event, Some(&fp), p.template, why));
            for p in self.dedup.abandon(&fp) {
                left.push(unprocessed(p.event, Some(&fp), p.template, why));
            }
        }
        for outcome in left {
            if let Err(e) = self.collector.add(outcome) {
                self.fatal.get_or_insert(format!("{e:#}"));
            }
        }
        debug_assert_eq!(self.dedup.parked(), 0, "every parked log has an outcome");
    }
}

/// Sleep until `at`; never, without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
