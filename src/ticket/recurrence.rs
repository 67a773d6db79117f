//! The end of a run, on Jira: tickets say what happened.
//!
//! In: the problems the collector added up (their ticket key and whole-run facts), the state,
//! and the run's interrupt. Out: a [`PhaseResult`] for the collector to add up (comments and
//! updates made, Jira latencies, warnings); a failed call becomes a warning, never an error.
//!
//! - A ticket created in this run was written from its first log; it is brought up to date with
//!   the whole run's occurrence count, first and last seen, and hosts (the same text a dry run
//!   shows as its `draft`). That update is the ticket's baseline: what recurs later is counted
//!   from it.
//! - A ticket that existed before this run (or was reopened) gets at most one comment per run,
//!   and with a state store at most one per `--comment-cooldown`: the occurrences since the last
//!   comment (or update; a ticket's creation counts as one, so a ticket created by a run killed
//!   before its update is covered too), and it says since when. Counts are saved as pending before each call,
//!   so a run killed meanwhile leaves them for the next comment instead of losing them.
//!
//! A ticket's pending count is only ever moved, never written whole ([`CommentChange`]): a
//! comment or an update takes off what it reported, and what other runners (or other jobs on
//! the same store) added meanwhile stays for the next comment. So every occurrence recorded is
//! told once, by the update of the run that created the ticket or by one comment.
//!
//! An interrupt stops this phase: no new call starts, the one in flight gets the grace period.

use chrono::{DateTime, Utc};

use crate::jira::content::ProblemFacts;
use crate::jira::JiraClient;
use crate::shutdown::Shutdown;
use crate::state::{CommentChange, CommentState, StateHandle};

/// What the collector hands over: one ticket and its whole-run facts.
#[derive(Debug)]
pub struct TicketWork {
    pub key: String,
    pub facts: ProblemFacts,
    /// The problem's route's own comment cooldown, instead of `--comment-cooldown`.
    pub cooldown: Option<std::time::Duration>,
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

/// Bring created tickets up to date, then comment on recurring ones.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    jira: &JiraClient,
    state: Option<&StateHandle>,
    counted: bool,
    created: Vec<TicketWork>,
    recurring: Vec<TicketWork>,
    cooldown: chrono::Duration,
    now: DateTime<Utc>,
    shutdown: &mut Shutdown<'_>,
) -> PhaseResult {
    let mut out = PhaseResult::default();
    let baseline = CommentChange {
        last_comment: Some(now),
        ..CommentChange::default()
    };
    // A ticket its create describes whole (one log) needs no update: its baseline is saved
    // now, all of them in one call. Its create reported its one log, which no pending count
    // holds: nothing is taken off.
    let (described, created): (Vec<TicketWork>, Vec<TicketWork>) =
        created.into_iter().partition(|w| {
            let f = &w.facts;
            f.occurrences == 1 && f.first_seen == f.last_seen && f.hosts.len() <= 1
        });
    if !described.is_empty() && !shutdown.fired() {
        let saved = described
            .into_iter()
            .map(|w| (w.key, baseline.clone()))
            .collect();
        save_all(state, saved, &mut out, shutdown).await;
    }
    for TicketWork { key, facts, .. } in created {
        if out.interrupted || shutdown.fired() {
            out.interrupted = true;
            break;
        }
        // Until the update lands, this run's other logs wait as pending for the next comment:
        // with a checkpointed source they were counted as they were recorded, else they are
        // added now.
        let added = if counted {
            0
        } else {
            facts.occurrences.saturating_sub(1)
        };
        let waiting = CommentChange {
            last_comment: Some(now),
            pending: added as i64,
            first_seen: facts.first_seen,
            last_seen: facts.last_seen,
            hosts: facts.hosts.clone(),
        };
        save(state, &key, waiting, &mut out, shutdown).await;
        if out.interrupted {
            break;
        }
        let started = std::time::Instant::now();
        let draft = crate::jira::content::ticket(&facts);
        let call = jira.update(&key, &draft);
        let Some(result) = shutdown.bounded(call).await else {
            out.interrupted = true;
            break;
        };
        out.jira_times.push(started.elapsed());
        if let Err(e) = result {
            out.warnings
                .push(format!("could not bring {key} up to date: {e:#}"));
            continue;
        }
        out.updated += 1;
        // The ticket now tells the whole run: later occurrences count from here. Its count
        // (all but the first log, which its create reported) leaves the pending count: this
        // run's own share of it, no more, so what other runners added stays.
        let reported = facts.occurrences.saturating_sub(1);
        let Some(state) = state else { continue };
        let own = move |s: &mut crate::state::StateStore| {
            let own = (s.counted_here(&key) + added).min(reported);
            let baseline = CommentChange {
                last_comment: Some(now),
                pending: -(own as i64),
                ..CommentChange::default()
            };
            s.change_comment_state(&key, &baseline)
        };
        match shutdown.bounded(state.call(own)).await {
            None => out.interrupted = true,
            Some(Err(e)) => out.warnings.push(format!("state store: {e:#}")),
            Some(Ok(())) => {}
        }
    }
    // On a shared store, a ticket's comment is decided by one runner at a time: the others
    // leave its counts pending (the holder's comment, or the next one, reports them).
    let mut leased: Vec<String> = Vec::new();
    for TicketWork {
        key,
        mut facts,
        cooldown: own_cooldown,
    } in recurring
    {
        let cooldown = own_cooldown
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or(cooldown);
        if out.interrupted || shutdown.fired() {
            out.interrupted = true;
            break;
        }
        if let Some(shared) = state.filter(|s| s.shared && s.writable) {
            let lease = comment_lease(&key);
            match shared.call(move |s| s.try_lease(&lease)).await {
                Ok(crate::state::Lease::Taken) => leased.push(key.clone()),
                Ok(crate::state::Lease::Held) => continue,
                Err(e) => {
                    out.warnings.push(format!("state store: {e:#}"));
                    continue;
                }
            }
        }
        // This run's occurrences that no pending count holds yet (none with a checkpointed
        // source: each was counted as it was recorded).
        let added = if counted { 0 } else { facts.occurrences };
        let mut pending = stored(state, &key, &mut out, shutdown).await;
        if out.interrupted {
            break;
        }
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
            facts.counted_since = p.last_comment;
            if p.last_comment.is_some_and(|last| now - last < cooldown) {
                save_pending(
                    state,
                    &key,
                    p.last_comment,
                    &facts,
                    added,
                    &mut out,
                    shutdown,
                )
                .await;
                continue;
            }
        }
        if facts.occurrences == 0 {
            continue;
        }
        let last = pending.as_ref().and_then(|p| p.last_comment);
        let saved = save_pending(state, &key, last, &facts, added, &mut out, shutdown).await;
        if out.interrupted {
            // The counts may not be saved as pending: no comment is sent that could count them
            // twice.
            break;
        }
        let started = std::time::Instant::now();
        let Some(result) = shutdown.bounded(jira.comment(&key, &facts)).await else {
            out.interrupted = true;
            break;
        };
        out.jira_times.push(started.elapsed());
        match result {
            Ok(()) => {
                out.commented += 1;
                // What the comment reported leaves the pending count (of it, only what was
                // saved there); what other runners added since it was read stays.
                let reported = if saved {
                    facts.occurrences
                } else {
                    facts.occurrences.saturating_sub(added)
                };
                let fresh = CommentChange {
                    last_comment: Some(now),
                    pending: -(reported as i64),
                    ..CommentChange::default()
                };
                save(state, &key, fresh, &mut out, shutdown).await;
            }
            // The counts stay pending for the next run's comment.
            Err(e) => out
                .warnings
                .push(format!("could not comment on {key}: {e:#}")),
        }
    }
    if let Some(state) = state {
        for key in leased {
            let lease = comment_lease(&key);
            if let Err(e) = state.call(move |s| s.release_lease(&lease)).await {
                out.warnings.push(format!("state store: {e:#}"));
            }
        }
    }
    out
}

/// The lease name under which one runner at a time decides a ticket's recurrence comment.
fn comment_lease(key: &str) -> String {
    format!("comment on {key}")
}

/// A ticket's comment state. State calls wait for the writer, which may itself wait for a
/// state file another process holds: after an interrupt, no longer than the grace period
/// (`out.interrupted` is set when it ran out).
async fn stored(
    state: Option<&StateHandle>,
    key: &str,
    out: &mut PhaseResult,
    shutdown: &mut Shutdown<'_>,
) -> Option<CommentState> {
    let state = state?;
    let key = key.to_string();
    let Some(answer) = shutdown
        .bounded(state.call(move |s| s.comment_state(&key)))
        .await
    else {
        out.interrupted = true;
        return None;
    };
    match answer {
        Ok(p) => Some(p),
        Err(e) => {
            out.warnings.push(format!("state store: {e:#}"));
            None
        }
    }
}

/// Change a ticket's comment state, within the grace period after an interrupt. Whether it
/// was changed.
async fn save(
    state: Option<&StateHandle>,
    key: &str,
    change: CommentChange,
    out: &mut PhaseResult,
    shutdown: &mut Shutdown<'_>,
) -> bool {
    save_all(state, vec![(key.to_string(), change)], out, shutdown).await
}

/// Change the comment states of several tickets in one state call. Whether they were changed.
async fn save_all(
    state: Option<&StateHandle>,
    changes: Vec<(String, CommentChange)>,
    out: &mut PhaseResult,
    shutdown: &mut Shutdown<'_>,
) -> bool {
    let Some(state) = state else { return false };
    let all = move |s: &mut crate::state::StateStore| {
        changes
            .iter()
            .try_for_each(|(key, c)| s.change_comment_state(key, c))
    };
    match shutdown.bounded(state.call(all)).await {
        None => {
            out.interrupted = true;
            false
        }
        Some(Err(e)) => {
            out.warnings.push(format!("state store: {e:#}"));
            false
        }
        Some(Ok(())) => true,
    }
}

/// Remember occurrences not yet commented on, to add them to the ticket's next comment:
/// `added` more pending, and the span `facts` covers. Whether it was saved.
async fn save_pending(
    state: Option<&StateHandle>,
    key: &str,
    last_comment: Option<DateTime<Utc>>,
    facts: &ProblemFacts,
    added: u64,
    out: &mut PhaseResult,
    shutdown: &mut Shutdown<'_>,
) -> bool {
    let change = CommentChange {
        last_comment,
        pending: added as i64,
        first_seen: facts.first_seen,
        last_seen: facts.last_seen,
        hosts: facts.hosts.clone(),
    };
    save(state, key, change, out, shutdown).await
}
