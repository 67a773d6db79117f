//! The end of a run, on Jira: tickets say what happened.
//!
//! In: a [`Plan`]: the problems the collector added up (their ticket key, whole-run facts and,
//! for a ticket this run created, what its create told), the merge steps the run found, the
//! state, the number of tickets to handle at once (`--workers` with `--async`, else 1), and the
//! run's interrupt. Out: a [`PhaseResult`] for the collector to add up (comments and updates
//! made, Jira latencies, warnings); a failed call becomes a warning, never an error.
//!
//! - A ticket created in this run whose create already told the whole run (the usual case: new
//!   problems are filed once the input has ended) is not written again; only its baseline is
//!   recorded. One filed before the input ended gets one edit: the tickets are read back first
//!   (batched), labels are only added (`update.labels[].add`), the summary and description are
//!   changed only while Jira still holds what triage wrote (hashes in the state: a person's
//!   edit stays), and when a person rewrote the description the figures go in a comment
//!   instead. That write is the ticket's baseline: what recurs later is counted from it.
//! - A ticket that existed before this run (or was reopened) gets at most one comment per run,
//!   and with a state store at most one per `--comment-cooldown`: the occurrences since the last
//!   comment (or update; a ticket's creation counts as one, so a ticket created by a run killed
//!   before its end is covered too), and it says since when. Counts are saved as pending
//!   before each call, so a run killed meanwhile leaves them for the next comment instead of
//!   losing them.
//! - A merge of two known templates labels the surviving ticket (in the same edit, when that
//!   ticket is brought up to date) or comments on a younger ticket where its problem went.
//!
//! A ticket's pending count is only ever moved, never written whole ([`CommentChange`]): a
//! comment or an update takes off what it reported, and what other runners (or other jobs on
//! the same store) added meanwhile stays for the next comment. So every occurrence recorded is
//! told once, by the create or update of the run that created the ticket or by one comment.
//!
//! Up to `workers` tickets are handled at once, each one's steps in order; work on the same
//! ticket (two problems whose lookups found one ticket) is handled in order, as one ticket.
//! What each ticket's work did is added up in the input order, so the result does not depend on
//! the worker count or on scheduling. The Jira client's limiter bounds the rate of the calls.
//!
//! An interrupt stops this phase: no ticket and no Jira call starts after it; the work in
//! flight gets the grace period, then is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::jira::content::ProblemFacts;
use crate::jira::model::Issue;
use crate::jira::JiraClient;
use crate::shutdown::Shutdown;
use crate::state::{CommentChange, StateError, StateHandle, StateStore};
use crate::ticket::known::{Told, Written};

/// What the collector hands over: one ticket and its whole-run facts.
#[derive(Debug)]
pub struct TicketWork {
    pub key: String,
    pub facts: ProblemFacts,
    /// The problem's route's own comment cooldown, instead of `--comment-cooldown`.
    pub cooldown: Option<std::time::Duration>,
    /// What this run's create of the ticket told Jira (a ticket created in this run).
    pub told: Option<Told>,
}

/// A step of telling tickets that two known problems are one (templates merged): add labels
/// to the surviving ticket, or tell a younger ticket where its problem went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeStep {
    /// Add these labels (one `update.labels[].add` each, in one call).
    Label { key: String, add: Vec<String> },
    /// Comment on `key` that its problem is now counted on `survivor`.
    Comment {
        key: String,
        survivor: String,
        label: String,
    },
}

impl MergeStep {
    fn key(&self) -> &str {
        match self {
            MergeStep::Label { key, .. } | MergeStep::Comment { key, .. } => key,
        }
    }
}

/// What the phase did, for the collector to add up.
#[derive(Debug, Default)]
pub struct PhaseResult {
    pub commented: u64,
    pub updated: u64,
    pub jira_times: Vec<std::time::Duration>,
    pub warnings: Vec<String>,
    /// The phase stopped early (interrupt).
    pub interrupted: bool,
}

/// What the end of a run does on Jira: bring created tickets up to date, comment on recurring
/// ones, tell tickets of merged problems.
#[derive(Debug, Default)]
pub struct Plan {
    pub created: Vec<TicketWork>,
    pub recurring: Vec<TicketWork>,
    pub merges: Vec<MergeStep>,
}

/// Carry out `plan`, as many tickets at once as the run has leaders (`--workers`; 1 without
/// `--async`), with the run's clock and `--comment-cooldown`.
pub async fn run(
    config: &crate::config::Config,
    jira: &JiraClient,
    state: Option<&StateHandle>,
    counted: bool,
    plan: Plan,
    shutdown: &mut Shutdown<'_>,
) -> PhaseResult {
    let cooldown =
        chrono::Duration::from_std(config.comment_cooldown).unwrap_or(chrono::Duration::MAX);
    let (now, workers) = (config.now, config.workers.max(1));
    let Plan {
        created,
        recurring,
        mut merges,
    } = plan;
    let mut out = PhaseResult::default();
    // A ticket its create describes whole (one log) needs nothing more: no update, and its
    // baseline is the creation the leader recorded with its key (`note_created_ticket`: last
    // told at the run's start, nothing pending). Writing it again here would only clear the
    // span another runner may have saved as pending since.
    let created: Vec<TicketWork> = created
        .into_iter()
        .filter(|w| {
            let f = &w.facts;
            !(f.occurrences == 1 && f.first_seen == f.last_seen && f.hosts.len() <= 1)
        })
        .collect();
    // Tickets whose create did not tell the whole run are read first, in batched searches:
    // what a person changed since is left as it is.
    let to_read: Vec<String> = created
        .iter()
        .filter(|w| !w.covered())
        .map(|w| w.key.clone())
        .collect();
    let reads = read_tickets(jira, &to_read, shutdown, &mut out).await;
    let merge_labels = labels_for_updates(&mut merges, &to_read);
    // The work, in input order (updates, then comments, then merges), gathered per ticket.
    let work: Vec<Work> = created
        .into_iter()
        .map(Work::Update)
        .chain(recurring.into_iter().map(Work::Comment))
        .chain(merges.into_iter().map(Work::Merge))
        .collect();
    let slots: Vec<Mutex<Slot>> = work.iter().map(|_| Mutex::default()).collect();
    let phase = Phase {
        jira,
        state,
        counted,
        cooldown,
        now,
        stop: AtomicBool::new(false),
        reads,
        merge_labels,
    };
    out.interrupted |= phase
        .run_units(per_ticket(work), &slots, workers, shutdown)
        .await;
    // Added up in input order, whatever order the work finished in.
    let mut leased = Vec::new();
    for slot in slots {
        let Slot { out: done, lease } = slot.into_inner().unwrap_or_else(|e| e.into_inner());
        out.commented += done.commented;
        out.updated += done.updated;
        out.jira_times.extend(done.jira_times);
        out.warnings.extend(done.warnings);
        out.interrupted |= done.interrupted;
        leased.extend(lease);
    }
    if let Some(state) = state {
        release_comment_leases(state, leased, shutdown, &mut out).await;
    }
    out
}

/// The tickets to bring up to date, read in batched searches (by key).
async fn read_tickets(
    jira: &JiraClient,
    keys: &[String],
    shutdown: &mut Shutdown<'_>,
    out: &mut PhaseResult,
) -> HashMap<String, crate::jira::model::Issue> {
    let mut reads = HashMap::new();
    if keys.is_empty() || shutdown.poll_now() {
        return reads;
    }
    let started = Instant::now();
    match shutdown.bounded(jira.read_tickets(keys)).await {
        Some(Ok(issues)) => {
            reads.extend(issues.into_iter().map(|i| (i.key.clone(), i)));
            out.jira_times.push(started.elapsed());
        }
        Some(Err(e)) => out.warnings.push(format!(
            "could not read the tickets to bring up to date ({e:#}): their summaries and \
             descriptions are left as they are"
        )),
        None => out.interrupted = true,
    }
    reads
}

/// Labels a merge adds to a ticket brought up to date go in its one update: taken out of
/// `merges`, by ticket.
fn labels_for_updates(
    merges: &mut Vec<MergeStep>,
    updated: &[String],
) -> HashMap<String, Vec<String>> {
    let mut merge_labels: HashMap<String, Vec<String>> = HashMap::new();
    merges.retain(|step| match step {
        MergeStep::Label { key, add } if updated.contains(key) => {
            merge_labels
                .entry(key.clone())
                .or_default()
                .extend(add.iter().cloned());
            false
        }
        _ => true,
    });
    merge_labels
}

/// The work gathered per ticket (a unit: one ticket's steps, in order), each step with its
/// index in the input.
fn per_ticket(work: Vec<Work>) -> Vec<Vec<(usize, Work)>> {
    let mut units: Vec<Vec<(usize, Work)>> = Vec::new();
    let mut unit_of: HashMap<String, usize> = HashMap::new();
    for (i, w) in work.into_iter().enumerate() {
        let u = *unit_of.entry(w.key().to_string()).or_insert_with(|| {
            units.push(Vec::new());
            units.len() - 1
        });
        units[u].push((i, w));
    }
    units
}

/// The comment leases are given back once every ticket is done (after an interrupt, within
/// the grace period; a lease not given back goes with the store's connection).
async fn release_comment_leases(
    state: &StateHandle,
    leased: Vec<String>,
    shutdown: &mut Shutdown<'_>,
    out: &mut PhaseResult,
) {
    for key in leased {
        let lease = comment_lease(&key);
        match shutdown
            .bounded(state.call(move |s| s.release_lease(&lease)))
            .await
        {
            None => {
                out.interrupted = true;
                return;
            }
            Some(Err(e)) => out.warnings.push(format!("state store: {e:#}")),
            Some(Ok(())) => {}
        }
    }
}

impl Phase<'_> {
    /// Up to `workers` tickets at once, each ticket's steps in order, until all are done or an
    /// interrupt's grace period is over. Whether the interrupt left work undone.
    async fn run_units(
        &self,
        units: Vec<Vec<(usize, Work)>>,
        slots: &[Mutex<Slot>],
        workers: usize,
        shutdown: &mut Shutdown<'_>,
    ) -> bool {
        let mut waiting = units.into_iter();
        // Futures of this task, not tasks: nothing here outlives the phase.
        let mut running = FuturesUnordered::new();
        let mut stopping = false;
        loop {
            if !stopping && shutdown.poll_now() {
                stopping = true;
                self.stop.store(true, Ordering::SeqCst);
            }
            while !stopping && running.len() < workers.max(1) {
                let Some(unit) = waiting.next() else { break };
                running.push(self.unit(unit, slots));
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = shutdown.next_step(stopping) => {
                    if stopping {
                        // The grace period is over: what is still in flight is dropped.
                        return true;
                    }
                    stopping = true;
                    self.stop.store(true, Ordering::SeqCst);
                }
                Some(()) = running.next() => {}
            }
        }
        stopping && waiting.len() > 0
    }
}

/// One piece of the phase's work.
enum Work {
    /// Bring a ticket created in this run up to date.
    Update(TicketWork),
    /// Comment on a ticket that recurred.
    Comment(TicketWork),
    /// Tell a ticket about a merge.
    Merge(MergeStep),
}

impl Work {
    fn key(&self) -> &str {
        match self {
            Work::Update(w) | Work::Comment(w) => &w.key,
            Work::Merge(m) => m.key(),
        }
    }
}

impl TicketWork {
    /// Whether the ticket's create already told everything the whole run would write.
    fn covered(&self) -> bool {
        let labels = crate::jira::content::summary_and_labels(&self.facts).1;
        self.told
            .as_ref()
            .is_some_and(|t| t.covers(&self.facts, &labels))
    }
}

/// What one piece of work did, kept as it happens: work dropped at the end of the grace period
/// still counts what it did.
#[derive(Default)]
struct Slot {
    out: PhaseResult,
    /// The ticket whose comment lease this work took.
    lease: Option<String>,
}

/// A piece of work's slot.
struct Out<'s>(&'s Mutex<Slot>);

impl Out<'_> {
    fn with<T>(&self, f: impl FnOnce(&mut Slot) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn warn(&self, warning: String) {
        self.with(|s| s.out.warnings.push(warning));
    }

    fn interrupted(&self) {
        self.with(|s| s.out.interrupted = true);
    }
}

/// What every piece of work shares.
struct Phase<'a> {
    jira: &'a JiraClient,
    state: Option<&'a StateHandle>,
    counted: bool,
    cooldown: chrono::Duration,
    now: DateTime<Utc>,
    /// Set when the interrupt comes: no Jira call starts after it.
    stop: AtomicBool,
    /// The tickets to bring up to date as Jira held them at the phase's start, by key.
    reads: HashMap<String, Issue>,
    /// Labels merges add to tickets brought up to date, by key: sent with the update.
    merge_labels: HashMap<String, Vec<String>>,
}

impl Phase<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One ticket's work, in order.
    async fn unit(&self, unit: Vec<(usize, Work)>, slots: &[Mutex<Slot>]) {
        for (i, work) in unit {
            let out = Out(&slots[i]);
            match work {
                Work::Update(w) => self.update(w, &out).await,
                Work::Comment(w) => self.comment(w, &out).await,
                Work::Merge(m) => self.merge(m, &out).await,
            }
        }
    }

    /// Bring a ticket created in this run up to date with the whole run: nothing to write when
    /// its create already told it; else one edit (labels added, the summary and description
    /// changed only while they are what triage wrote) and, when a person's edit of the
    /// description stays, a comment with the figures instead.
    async fn update(&self, work: TicketWork, out: &Out<'_>) {
        if self.stopped() {
            out.interrupted();
            return;
        }
        let covered = work.covered();
        let TicketWork {
            key, facts, told, ..
        } = work;
        // Until the update lands, this run's other logs wait as pending for the next comment:
        // with a checkpointed source they were counted as they were recorded, else they are
        // added now.
        let added = if self.counted || covered {
            0
        } else {
            facts.occurrences.saturating_sub(1)
        };
        if !covered {
            self.save_pending(&key, Some(self.now), &facts, added, out)
                .await;
            if self.stopped() {
                out.interrupted();
                return;
            }
            if !self.write_update(&key, &facts, told.as_ref(), out).await {
                return;
            }
        }
        // The ticket now tells the whole run: later occurrences count from here. Its count
        // (all but the first log, which its create reported) leaves the pending count: this
        // run's own share of it, no more, so what other runners added stays.
        let reported = facts.occurrences.saturating_sub(1);
        let now = self.now;
        self.call(out, move |s| {
            let own = (s.counted_here(&key) + added).min(reported);
            let baseline = CommentChange {
                last_comment: Some(now),
                pending: -(own as i64),
                ..CommentChange::default()
            };
            s.change_comment_state(&key, &baseline)
        })
        .await;
    }

    /// The one follow-up write of a ticket this run created. Whether it went through.
    async fn write_update(
        &self,
        key: &str,
        facts: &ProblemFacts,
        told: Option<&Told>,
        out: &Out<'_>,
    ) -> bool {
        let wiki = self.jira.api() == crate::jira::config::JiraApi::V2;
        let draft = crate::jira::content::ticket(facts);
        let description = draft.description(wiki);
        let ours = Written::of(&draft.summary, &description);
        // What triage last wrote: the state's record, else this run's create.
        let k = key.to_string();
        let written = match self.call(out, move |s| s.written(&k)).await.flatten() {
            Some((summary, description)) => Some(Written {
                summary,
                description,
            }),
            None => told.map(|t| t.written.clone()),
        };
        // Read with the others at the phase's start; one that search did not show yet, alone.
        let alone = match self.reads.get(key) {
            Some(_) => None,
            None => {
                let started = Instant::now();
                let read = self.jira.read_ticket(key).await;
                out.with(|s| s.out.jira_times.push(started.elapsed()));
                read.unwrap_or_else(|e| {
                    out.warn(format!("could not read {key} ({e:#}): its summary and description are left as they are"));
                    None
                })
            }
        };
        let read = self.reads.get(key).or(alone.as_ref());
        // A field is triage's to change while Jira still holds what triage wrote there.
        let now = read.map(|r| {
            Written::new(
                r.fields.summary.as_deref().unwrap_or_default(),
                r.fields
                    .description
                    .as_ref()
                    .unwrap_or(&serde_json::Value::Null),
            )
        });
        let (summary_ours, description_ours) = match (&now, &written) {
            (Some(now), Some(then)) => (
                now.summary == then.summary,
                now.description == then.description,
            ),
            _ => (false, false),
        };
        let changed = |then: Option<&String>, now: &String| then != Some(now);
        let summary = (summary_ours
            && changed(written.as_ref().map(|w| &w.summary), &ours.summary))
        .then_some(draft.summary.as_str());
        let description = (description_ours
            && changed(written.as_ref().map(|w| &w.description), &ours.description))
        .then_some(&description);
        // Only triage's search labels are ensured; a label a person or a route set (or took
        // away) is theirs.
        let mut add: Vec<String> = Vec::new();
        let merged = self.merge_labels.get(key).into_iter().flatten();
        for l in draft
            .labels
            .iter()
            .filter(|l| l.starts_with(crate::jira::content::TRIAGE_LABEL))
            .chain(merged)
        {
            if read.is_none_or(|r| !r.fields.labels.contains(l)) && !add.contains(l) {
                add.push(l.clone());
            }
        }
        let started = Instant::now();
        let result = self.jira.edit(key, &add, summary, description).await;
        out.with(|s| s.out.jira_times.push(started.elapsed()));
        if let Err(e) = result {
            out.warn(format!("could not bring {key} up to date: {e:#}"));
            return false;
        }
        if !add.is_empty() || summary.is_some() || description.is_some() {
            out.with(|s| s.out.updated += 1);
        }
        if summary.is_some() || description.is_some() {
            let kept = written.unwrap_or_default();
            let record = Written {
                summary: if summary.is_some() {
                    ours.summary
                } else {
                    kept.summary
                },
                description: if description.is_some() {
                    ours.description
                } else {
                    kept.description
                },
            };
            let k = key.to_string();
            self.call(out, move |s| {
                s.remember_written(&k, &record.summary, &record.description)
            })
            .await;
        }
        if !description_ours {
            // A person changed the description (or it could not be read): the figures go in a
            // comment instead.
            let started = Instant::now();
            let result = self.jira.comment(key, facts).await;
            out.with(|s| s.out.jira_times.push(started.elapsed()));
            match result {
                Ok(()) => out.with(|s| s.out.commented += 1),
                Err(e) => {
                    out.warn(format!("could not comment on {key}: {e:#}"));
                    return false;
                }
            }
        }
        true
    }

    /// Tell a ticket about a merge; a failure is a warning.
    async fn merge(&self, step: MergeStep, out: &Out<'_>) {
        if self.stopped() {
            out.interrupted();
            return;
        }
        let started = Instant::now();
        let result = match &step {
            MergeStep::Label { key, add } => self
                .jira
                .edit(key, add, None, None)
                .await
                .map_err(|e| format!("could not label {key} with {}: {e:#}", add.join(", "))),
            MergeStep::Comment {
                key,
                survivor,
                label,
            } => self
                .jira
                .comment_merged(key, survivor, label)
                .await
                .map_err(|e| format!("could not comment on {key}: {e:#}")),
        };
        out.with(|s| s.out.jira_times.push(started.elapsed()));
        if let Err(w) = result {
            out.warn(w);
        }
    }

    /// Comment on a ticket that recurred, unless its cooldown holds or another runner decides.
    async fn comment(&self, work: TicketWork, out: &Out<'_>) {
        let TicketWork {
            key,
            mut facts,
            cooldown,
            ..
        } = work;
        let cooldown = cooldown
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or(self.cooldown);
        if self.stopped() {
            out.interrupted();
            return;
        }
        // On a shared store, a ticket's comment is decided by one runner at a time: the others
        // leave its counts pending (the holder's comment, or the next one, reports them).
        if let Some(shared) = self.state.filter(|s| s.shared && s.writable) {
            let lease = comment_lease(&key);
            match shared.call(move |s| s.try_lease(&lease)).await {
                Ok(crate::state::Lease::Taken) => out.with(|s| s.lease = Some(key.clone())),
                Ok(crate::state::Lease::Held) => return,
                Err(e) => {
                    out.warn(format!("state store: {e:#}"));
                    return;
                }
            }
        }
        // This run's occurrences that no pending count holds yet (none with a checkpointed
        // source: each was counted as it was recorded).
        let added = if self.counted { 0 } else { facts.occurrences };
        let k = key.clone();
        let mut stored = self.call(out, move |s| s.comment_state(&k)).await;
        if let Some(p) = &mut stored {
            // What recurred since the last comment, with this run's figures.
            if self.counted {
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
            facts.counted_since = p.last_comment;
            if p.last_comment
                .is_some_and(|last| self.now - last < cooldown)
            {
                self.save_pending(&key, p.last_comment, &facts, added, out)
                    .await;
                return;
            }
        }
        if facts.occurrences == 0 {
            return;
        }
        let last = stored.as_ref().and_then(|p| p.last_comment);
        let saved = self.save_pending(&key, last, &facts, added, out).await;
        if self.stopped() {
            // The counts stay pending for the next run's comment.
            out.interrupted();
            return;
        }
        let started = Instant::now();
        let result = self.jira.comment(&key, &facts).await;
        out.with(|s| s.out.jira_times.push(started.elapsed()));
        match result {
            Ok(()) => {
                out.with(|s| s.out.commented += 1);
                // What the comment reported leaves the pending count (of it, only what was
                // saved there); what other runners added since it was read stays.
                let reported = if saved {
                    facts.occurrences
                } else {
                    facts.occurrences.saturating_sub(added)
                };
                let fresh = CommentChange {
                    last_comment: Some(self.now),
                    pending: -(reported as i64),
                    ..CommentChange::default()
                };
                self.call(out, move |s| s.change_comment_state(&key, &fresh))
                    .await;
            }
            // The counts stay pending for the next run's comment.
            Err(e) => out.warn(format!("could not comment on {key}: {e:#}")),
        }
    }

    /// Remember occurrences not yet commented on, to add them to the ticket's next comment:
    /// `added` more pending, and the span `facts` covers. Whether it was saved.
    async fn save_pending(
        &self,
        key: &str,
        last_comment: Option<DateTime<Utc>>,
        facts: &ProblemFacts,
        added: u64,
        out: &Out<'_>,
    ) -> bool {
        let change = CommentChange {
            last_comment,
            pending: added as i64,
            first_seen: facts.first_seen,
            last_seen: facts.last_seen,
            hosts: facts.hosts.clone(),
        };
        let key = key.to_string();
        self.call(out, move |s| s.change_comment_state(&key, &change))
            .await
            .is_some()
    }

    /// A state call; a failure becomes a warning (`None`, as without a state store).
    async fn call<T: Send + 'static>(
        &self,
        out: &Out<'_>,
        f: impl FnOnce(&mut StateStore) -> Result<T, StateError> + Send + 'static,
    ) -> Option<T> {
        match self.state?.call(f).await {
            Ok(v) => Some(v),
            Err(e) => {
                out.warn(format!("state store: {e:#}"));
                None
            }
        }
    }
}

/// The lease name under which one runner at a time decides a ticket's recurrence comment.
fn comment_lease(key: &str) -> String {
    format!("comment on {key}")
}
