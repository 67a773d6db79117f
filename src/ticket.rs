//! The ticket stage (leaders only): find the open ticket for a problem, else create one.
//!
//! In: a problem's facts (from `jira::content`) and its fingerprint. Out: a `Resolution`
//! (created / existing / would_create / capped) or an error that fails this problem's leader log
//! (the deduplicator then promotes the next log of the problem).
//!
//! Dry run is decided here, at the Jira boundary: everything is computed, reads still happen when
//! Jira is configured, and the write is replaced by `would_create`. The `--max-tickets` cap is a
//! reservation counter: a leader reserves a place before it creates and gives it back if the
//! create fails, so the cap holds exactly however many workers race for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::fingerprint::Fingerprint;
use crate::jira::client::Found;
use crate::jira::content::{self, ProblemFacts};
use crate::jira::JiraClient;
use crate::outcome::{Resolution, TicketAction};
use crate::state::StateHandle;

/// Creates and finds tickets, or says what it would do.
#[derive(Debug)]
pub struct TicketStage {
    jira: Option<Arc<JiraClient>>,
    /// Fingerprint → key of tickets earlier runs created (search can lag behind them).
    state: Option<StateHandle>,
    dry_run: bool,
    reopen: bool,
    cap: Option<Arc<TicketCap>>,
    /// Per fingerprint, other labels its ticket may carry (merged templates, the old label).
    also: Arc<DashMap<Fingerprint, Vec<Fingerprint>>>,
}

/// An exact cap on tickets created in one run.
#[derive(Debug)]
pub struct TicketCap {
    max: u64,
    used: AtomicU64,
}

impl TicketCap {
    pub fn new(max: u64) -> Self {
        TicketCap {
            max,
            used: AtomicU64::new(0),
        }
    }

    /// Take a place under the cap; false when the cap is reached.
    pub fn try_reserve(&self) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Give a place back (the create it was reserved for failed).
    pub fn release(&self) {
        self.used.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TicketStage {
    pub fn new(
        jira: Option<Arc<JiraClient>>,
        dry_run: bool,
        reopen: bool,
        max_tickets: Option<u64>,
    ) -> Self {
        TicketStage {
            jira,
            state: None,
            dry_run,
            reopen,
            cap: max_tickets.map(|m| Arc::new(TicketCap::new(m))),
            also: Arc::new(DashMap::new()),
        }
    }

    /// Decide and carry out what this problem's ticket needs.
    ///
    /// With Jira, the work runs in its own task under the fingerprint's label lock: if this
    /// log's deadline passes while a create is at Jira, the create still finishes and is
    /// recorded, and the leader that replaces this one finds it instead of creating another.
    pub async fn file(
        &self,
        fingerprint: &Fingerprint,
        facts: &ProblemFacts,
    ) -> anyhow::Result<Resolution> {
        let Some(jira) = self.jira.clone() else {
            return Ok(match self.reserve() {
                false => Resolution::new(TicketAction::Capped, None),
                true => Resolution::new(TicketAction::WouldCreate, None),
            });
        };
        let (cap, dry_run, reopen) = (self.cap.clone(), self.dry_run, self.reopen);
        let state = self.state.clone();
        let (fingerprint, facts) = (fingerprint.clone(), facts.clone());
        let also = self
            .also
            .get(&fingerprint)
            .map(|a| a.value().clone())
            .unwrap_or_default();
        tokio::spawn(async move {
            let _label = jira.lock_label(&fingerprint).await;
            file_with_jira(
                &jira,
                state.as_ref(),
                cap.as_deref(),
                (dry_run, reopen),
                &fingerprint,
                &also,
                facts,
            )
            .await
        })
        .await
        .map_err(|e| anyhow::anyhow!("the ticket task stopped unexpectedly: {e}"))?
    }

    /// Search these labels too when looking for `fingerprint`'s ticket (at most 20 kept).
    pub fn search_also(&self, fingerprint: &Fingerprint, also: &[Fingerprint]) {
        let mut entry = self.also.entry(fingerprint.clone()).or_default();
        for fp in also {
            if fp != fingerprint && !entry.contains(fp) && entry.len() < 20 {
                entry.push(fp.clone());
            }
        }
    }

    /// Use the state store: remember created tickets, and find them by key when search lags.
    pub fn with_state(mut self, state: Option<StateHandle>) -> Self {
        self.state = state;
        self
    }

    fn reserve(&self) -> bool {
        self.cap.as_ref().is_none_or(|c| c.try_reserve())
    }
}

async fn file_with_jira(
    jira: &JiraClient,
    state: Option<&StateHandle>,
    cap: Option<&TicketCap>,
    (dry_run, reopen): (bool, bool),
    fingerprint: &Fingerprint,
    also: &[Fingerprint],
    facts: ProblemFacts,
) -> anyhow::Result<Resolution> {
    if let Some(refusal) = jira.refused(fingerprint) {
        anyhow::bail!(refusal);
    }
    let mut found = jira.find_also(fingerprint, also).await?;
    if found == Found::default() {
        // Nothing by label: search may lag behind a ticket an earlier run created moments ago
        // (under this fingerprint, or one of its other labels).
        let mut remembered = None;
        if let Some(s) = state {
            for fp in std::iter::once(fingerprint).chain(also) {
                remembered = s.with(|s| s.ticket_for(fp.as_str()))?;
                if remembered.is_some() {
                    found.needs_label = fp != fingerprint;
                    break;
                }
            }
        }
        if let Some(key) = remembered {
            match jira.issue(&key).await? {
                Some(issue) if issue.is_done() => found.done = Some(key),
                Some(_) => found.open = Some(key),
                None => {}
            }
        }
    }
    if found.open.is_none() && found.created_in_run.is_none() {
        found = settle_unfinished_create(jira, state, fingerprint, found).await?;
    }
    if let Some(key) = found.created_in_run {
        return Ok(Resolution::new(TicketAction::Created, Some(key)));
    }
    if let Some(key) = found.open {
        if found.needs_label && !dry_run {
            // Found by an old or merged label: give it this fingerprint's label, so the
            // next search finds it directly.
            let label = content::fingerprint_label(fingerprint.as_str());
            jira.add_label(&key, &label).await?;
            if let Some(state) = state.filter(|s| s.writable) {
                if let Err(e) = state.with(|s| s.remember_ticket(fingerprint.as_str(), &key)) {
                    tracing::warn!("state store: {e:#}");
                }
            }
        }
        return Ok(Resolution::new(TicketAction::Existing, Some(key)));
    }
    if let (Some(done), true) = (&found.done, reopen) {
        if dry_run {
            return Ok(Resolution::new(
                TicketAction::WouldReopen,
                Some(done.clone()),
            ));
        }
        jira.reopen(done).await?;
        return Ok(Resolution::new(TicketAction::Reopened, Some(done.clone())));
    }
    if cap.is_some_and(|c| !c.try_reserve()) {
        return Ok(Resolution::new(TicketAction::Capped, None));
    }
    let recurrence_of = found.done;
    if dry_run {
        return Ok(Resolution {
            action: TicketAction::WouldCreate,
            key: None,
            recurrence_of,
        });
    }
    let facts = ProblemFacts {
        recurrence_of: recurrence_of.clone(),
        ..facts
    };
    if let Some(state) = state.filter(|s| s.writable) {
        state.with(|s| s.begin_create(fingerprint.as_str()))?;
    }
    match jira.create(fingerprint, &content::ticket(&facts)).await {
        Ok(key) => {
            if let Some(state) = state.filter(|s| s.writable) {
                // Written at once, in its own transaction: a run killed after this point
                // still knows the ticket exists.
                if let Err(e) = state.with(|s| s.remember_ticket(fingerprint.as_str(), &key)) {
                    tracing::warn!("state store: {e:#}");
                }
            }
            Ok(Resolution {
                action: TicketAction::Created,
                key: Some(key),
                recurrence_of,
            })
        }
        Err(e) => {
            if let Some(cap) = cap {
                cap.release();
            }
            Err(e)
        }
    }
}

/// How long after a create Jira's search may still not show the new issue.
const SEARCH_SETTLE: chrono::Duration = chrono::Duration::seconds(15);

/// An earlier run began a create for this fingerprint and died before the answer: the ticket
/// may exist without search showing it yet. Search again until it shows up or the create is old
/// enough for search to have caught up.
async fn settle_unfinished_create(
    jira: &JiraClient,
    state: Option<&StateHandle>,
    fingerprint: &Fingerprint,
    mut found: Found,
) -> anyhow::Result<Found> {
    let Some(begun) = state
        .map(|s| s.with(|s| s.create_begun(fingerprint.as_str())))
        .transpose()?
        .flatten()
    else {
        return Ok(found);
    };
    let mut wait = std::time::Duration::from_millis(500);
    while found.open.is_none() && chrono::Utc::now() - begun < SEARCH_SETTLE {
        tracing::info!(
            "a create for {fingerprint} began at {begun} and was never answered: searching again"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(4));
        found = jira.find(fingerprint).await?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_cap_holds_exactly_under_64_racing_tasks() {
        let cap = Arc::new(TicketCap::new(7));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let cap = cap.clone();
                tokio::spawn(async move {
                    let got = cap.try_reserve();
                    // Every fifth create fails and gives its place back.
                    if got && i % 5 == 0 {
                        cap.release();
                        return false;
                    }
                    got
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            won += t.await.unwrap() as u32;
        }
        assert_eq!(won, 7);
    }
}
