//! The ticket stage: everything a problem's leader does, and what the end of a run tells Jira.
//!
//! In: a leader log (event, fingerprint, template) and its deadline. Out: a [`LeaderReport`]
//! (created / existing / reopened / would_create / capped, with the analysis the ticket is
//! described by), or a [`LeadFailure`] that fails this leader log (the pipeline then hands the
//! problem to its next parked log).
//!
//! Find before analyse: the open ticket is looked up first (by label, else by the key the state
//! remembers, waiting for search to catch up with an unanswered create of an earlier run or of
//! this one: a create without a usable answer is taken as probably created), and
//! only a problem that needs a new ticket is analyzed; the analysis is cached by fingerprint in
//! the state (with a time to live, [`ANALYSIS_TTL`]), so a reopened or re-created ticket does
//! not ask the analyzer again. A known ticket is described by the cached analysis, else by the
//! offline `rules` analyzer: it never costs an LLM call.
//!
//! Dry run is decided here, at the Jira boundary: reads still happen when Jira is configured,
//! the write becomes `would_create`. The `--max-tickets` cap is granted in arrival order
//! ([`TicketCap`]): a leader's turn is its place in the order leaders start, and it gets a place
//! exactly when earlier turns created fewer than the cap, so sequential and async runs pick the
//! same problems. A problem found with a ticket never takes a place; a failed create gives its
//! place back.
//!
//! With Jira, a leader's work runs under the fingerprint's label lock and the log's deadline
//! (its task's: no retry or server-requested wait goes past it). If the deadline passes while a
//! create is at Jira, that one attempt still finishes and is recorded
//! ([`TicketStage::outlives_deadline`]), and the leader that replaces this one finds it instead
//! of creating another; nothing new is started after the deadline.
//!
//! A new ticket is created from what the pipeline knows of its problem ([`known::Whole`]: the
//! run's logs of it so far, merged templates' labels), not from its leader log alone, and the
//! leader reports what the create told ([`known::Told`]) so the end of the run can tell whether
//! anything is left to write.
//!
//! [`facts`] is the one place `ProblemFacts` are built; [`recurrence`] finishes at the end of a
//! run (the whole run's figures on tickets filed before the input ended, one comment on
//! recurring ones, merges).

mod cap;
pub mod facts;
pub mod known;
pub mod recurrence;

pub use cap::TicketCap;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::analyze::{rules, Analysis, Analyzer};
use crate::config::DatadogSite;
use crate::event::LogEvent;
use dashmap::DashMap;

use crate::config::Config;
use crate::grouping::fingerprint::Fingerprint;
use crate::jira::client::Found;
use crate::jira::config::JiraApi;
use crate::jira::content;
use crate::jira::{JiraClient, JiraError};
use crate::outcome::{LeaderReport, Resolution, Stage, TicketAction};
use crate::route::{Fields, Routes, Subject};
use crate::state::StateHandle;

/// How long a cached analysis is used instead of asking the analyzer again.
pub const ANALYSIS_TTL: chrono::Duration = chrono::Duration::days(7);

/// Finds, analyzes and creates.
#[derive(Debug)]
pub struct TicketStage {
    jira: Option<Arc<JiraClient>>,
    /// Fingerprint → key of tickets earlier runs created (search can lag behind them), and the
    /// analysis cache.
    state: Option<StateHandle>,
    analyzer: Analyzer,
    /// This analyzer's name in the analysis cache; `None` for the rules analyzer (cheaper to
    /// run than to look up).
    cache_key: Option<String>,
    site: DatadogSite,
    dry_run: bool,
    reopen: bool,
    cap: Option<TicketCap>,
    /// Per fingerprint, other labels its ticket may carry (merged templates, the old
    /// masking-only label).
    also: DashMap<Fingerprint, Vec<Fingerprint>>,
    /// Per fingerprint, when this run sent a create whose answer was lost or unreadable (the
    /// ticket probably exists though search may not show it yet): the in-memory twin of the
    /// state's unfinished-create record, so a run without state settles the same way.
    ambiguous: DashMap<Fingerprint, chrono::DateTime<chrono::Utc>>,
    /// Fingerprints whose create lease this run holds (see [`TicketStage::claim`]).
    leases: DashMap<Fingerprint, ()>,
    /// The run's "now" (`--now`): when a ticket created in this run counts as last updated.
    now: chrono::DateTime<chrono::Utc>,
    /// The run's clock: when a create was sent, to tell how long search may still lag it.
    clock: crate::clock::Clock,
    /// The config file's routes: where each problem's ticket goes, or whether it is muted.
    routes: Routes,
    /// Per fingerprint claimed ahead of its worker slot, what the state knows of it, asked
    /// while its Jira lookup is out (see [`TicketStage::prefetch`]).
    local: DashMap<Fingerprint, LocalAsk>,
    /// Per fingerprint whose ticket this run created, what the create told Jira: a later leader
    /// of the problem (its first one cut off by its deadline) reports it too.
    told: DashMap<Fingerprint, known::Told>,
    /// State store errors that did not fail a log (a cache write, a lease given back): the
    /// report's warnings, taken at the end of the run ([`TicketStage::take_store_warnings`]).
    store_warnings: Mutex<Vec<String>>,
}

/// What the state knows of a problem before anything is created: the ticket an earlier run
/// recorded under one of its labels (the label's index, the key), and when a create for it
/// was begun and never answered (`None` on a shared store, where it is read under the lease).
type Local = (
    Option<(usize, String)>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// A [`Local`] read sent ahead, for these labels.
#[derive(Debug)]
struct LocalAsk {
    labels: Vec<String>,
    asked: crate::state::Asked<Local>,
}

/// Read a problem's [`Local`] view: `labels` its own label first; `own` its fingerprint when
/// its begun create is to be read too.
fn read_local(
    s: &crate::state::StateStore,
    labels: &[String],
    own: Option<&str>,
) -> Result<Local, crate::state::StateError> {
    let mut remembered = None;
    for (i, fp) in labels.iter().enumerate() {
        if let Some(key) = s.ticket_for(fp)? {
            remembered = Some((i, key));
            break;
        }
    }
    let begun = match own {
        Some(fp) => s.create_begun(fp)?,
        None => None,
    };
    Ok((remembered, begun))
}

/// A problem's labels as the state keys them: its own first, then its other labels.
fn local_labels(fingerprint: &Fingerprint, also: &[Fingerprint]) -> Vec<String> {
    std::iter::once(fingerprint)
        .chain(also)
        .map(|fp| fp.to_string())
        .collect()
}

/// The stage a leader is in, readable after its future was dropped by the deadline.
#[derive(Debug, Default)]
pub struct StageMark(AtomicU8);

impl StageMark {
    fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> Stage {
        match self.0.load(Ordering::Relaxed) {
            x if x == Stage::Analyze as u8 => Stage::Analyze,
            x if x == Stage::Jira as u8 => Stage::Jira,
            _ => Stage::Dedup,
        }
    }
}

/// What a leader's work measured, kept even when the work is cut off.
#[derive(Debug, Default)]
pub struct Timings {
    pub analyze: Option<Duration>,
    pub jira: Option<Duration>,
    /// Something worth a warning that did not fail the log (the llm analyzer fell back).
    pub warning: Option<String>,
}

/// How far a leader's work got: read at its deadline while the work may go on.
#[derive(Debug, Default)]
pub struct Progress {
    pub stage: StageMark,
    pub timings: Mutex<Timings>,
}

impl Progress {
    fn record(&self, f: impl FnOnce(&mut Timings)) {
        if let Ok(mut t) = self.timings.lock() {
            f(&mut t);
        }
    }

    /// The timings so far.
    pub fn take_timings(&self) -> Timings {
        self.timings
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }
}

/// One problem's leader, as the pipeline hands it over.
#[derive(Debug)]
pub struct Leader {
    pub event: Arc<LogEvent>,
    pub fingerprint: Fingerprint,
    pub template: Arc<str>,
    /// Its place in the order leaders start: the order `--max-tickets` is granted in.
    pub turn: u64,
    /// What the run knows of the problem beyond this log, for its ticket's create.
    pub whole: Option<known::Whole>,
}

/// A ticket to create: what it says, where it goes, and what it was told (recorded once it
/// exists).
struct NewTicket<'a> {
    draft: &'a content::TicketDraft<'a>,
    description: &'a content::Description,
    route: &'a Fields,
    told: &'a known::Told,
}

/// Why a leader log failed.
#[derive(Debug)]
pub struct LeadFailure {
    pub stage: Stage,
    pub error: anyhow::Error,
    /// Set when the failure stops the run (Jira refused the credentials): what to tell.
    pub fatal: Option<String>,
}

/// Why finding or creating a problem's ticket failed: Jira's own error, typed, so a refusal
/// of the credentials stays fatal and a create that may have been made is searched for; or
/// anything else on the way (the state store, the deadline).
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error(transparent)]
    Jira(#[from] JiraError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<TicketError> for LeadFailure {
    fn from(error: TicketError) -> LeadFailure {
        match error {
            TicketError::Jira(e) => jira_failure(e),
            TicketError::Other(error) => LeadFailure {
                stage: Stage::Jira,
                error,
                fatal: None,
            },
        }
    }
}

impl TicketStage {
    /// The ticket stage the checked configuration describes (site, dry run, `--reopen`,
    /// `--max-tickets`, the run's "now" and its clock, the routes), working with these
    /// services.
    pub fn new(
        config: &Config,
        jira: Option<Arc<JiraClient>>,
        state: Option<StateHandle>,
        analyzer: Analyzer,
        cache_key: Option<String>,
    ) -> Self {
        TicketStage {
            jira,
            state,
            analyzer,
            cache_key,
            site: config.site.clone(),
            dry_run: config.dry_run,
            reopen: config.jira.as_ref().is_some_and(|j| j.reopen),
            cap: config.max_tickets.map(TicketCap::new),
            also: DashMap::new(),
            ambiguous: DashMap::new(),
            leases: DashMap::new(),
            now: config.now,
            clock: config.clock.clone(),
            routes: config.routes.clone(),
            local: DashMap::new(),
            told: DashMap::new(),
            store_warnings: Mutex::new(Vec::new()),
        }
    }

    /// The route a problem takes, decided from its leader log, template and analysis, and what
    /// that route sets on the run's day.
    fn route(&self, event: &LogEvent, template: &str, analysis: &Analysis) -> Fields {
        let subject = Subject {
            service: event.service.as_deref(),
            tags: &event.tags,
            status: &event.status,
            category: analysis.category.as_str(),
            severity: analysis.severity.as_str(),
            template,
        };
        Fields::of(self.routes.decide(&subject), self.now.date_naive())
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

    /// A problem got a leader that waits for a worker slot: look its ticket up now, in a batched
    /// search with the others waiting (see `jira::lookup`), so its leader finds it known.
    pub fn prefetch(&self, fingerprint: &Fingerprint) {
        let Some(jira) = &self.jira else {
            return;
        };
        if jira.refused(fingerprint).is_some() {
            return;
        }
        let also = self
            .also
            .get(fingerprint)
            .map(|a| a.value().clone())
            .unwrap_or_default();
        jira.prefetch(fingerprint, &also);
        // The state's view too, read while the search is out.
        if let Some(state) = &self.state {
            let labels = local_labels(fingerprint, &also);
            let own = (!self.shared_store()).then(|| fingerprint.to_string());
            let read = labels.clone();
            let asked = state.ask(move |s| read_local(s, &read, own.as_deref()));
            self.local
                .insert(fingerprint.clone(), LocalAsk { labels, asked });
        }
    }

    /// Whether the state is a store other runners share and this run writes to.
    fn shared_store(&self) -> bool {
        self.state
            .as_ref()
            .is_some_and(|s| s.shared && s.writable && !self.dry_run)
    }

    /// How many times the analyzer's circuit breaker opened.
    pub fn analyzer_breaker_trips(&self) -> u64 {
        self.analyzer.breaker_trips()
    }

    /// How many analyses fell back from the LLM to the rules analyzer.
    pub fn analyzer_fallbacks(&self) -> u64 {
        self.analyzer.fallbacks()
    }

    /// A state store error that does not fail the log: the run goes on, and the report says
    /// it (the one rule for a non-fatal store error; the end-of-run phase follows it too).
    fn store_warning(&self, error: &anyhow::Error) {
        let message = format!("state store: {error:#}");
        // Shown once with the run's other warnings; logged as it happens for `-v`.
        tracing::debug!("{message}");
        if let Ok(mut warnings) = self.store_warnings.lock() {
            if warnings.len() < 20 && !warnings.contains(&message) {
                warnings.push(message);
            }
        }
    }

    /// The state store errors that did not fail a log, for the report's warnings.
    pub fn take_store_warnings(&self) -> Vec<String> {
        self.store_warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// The leader's work for one problem, by its task's deadline. `progress` says how far it
    /// got if the caller stops waiting.
    pub async fn lead(
        &self,
        leader: Leader,
        progress: &Progress,
    ) -> Result<LeaderReport, LeadFailure> {
        let Some(jira) = &self.jira else {
            let Leader {
                event,
                fingerprint,
                template,
                turn,
                ..
            } = &leader;
            let turn = *turn;
            // No Jira: analysis only, and what would be created.
            progress.stage.set(Stage::Analyze);
            let analysis = self
                .analyze_new(event, fingerprint, template, progress)
                .await;
            let route = self.route(event, template, &analysis);
            let action = if route.muted {
                self.no_place(turn);
                TicketAction::Muted
            } else if self.take_place(turn).await? {
                self.placed(turn);
                TicketAction::WouldCreate
            } else {
                TicketAction::Capped
            };
            return Ok(leader_report(
                event,
                analysis,
                Resolution::new(action, None).routed(&route),
            ));
        };
        let _label = jira.lock_label(&leader.fingerprint).await;
        let result = self.lead_with_jira(jira, &leader, progress).await;
        if let Some(cap) = &self.cap {
            cap.settle(leader.turn);
        }
        // Created (key recorded), found, capped or failed: the lease goes back either way.
        self.release_lease(&leader.fingerprint).await;
        result
    }

    /// Whether a leader's work goes on after its log's deadline, once its leader has failed:
    /// with Jira, where a create that may be at Jira is not repeated blindly, so its answer is
    /// waited for and recorded. Without Jira nothing is written, and the work is dropped.
    pub fn outlives_deadline(&self) -> bool {
        self.jira.is_some()
    }

    /// A new leader got a worker slot: `turn` is its place in the order the cap is granted in
    /// (increasing, in the order leaders start).
    pub fn register_turn(&self, turn: u64) {
        if let Some(cap) = &self.cap {
            cap.register(turn);
        }
    }

    /// `turn`'s leader is over: a turn that never decided takes no place under the cap.
    pub fn end_turn(&self, turn: u64) {
        if let Some(cap) = &self.cap {
            cap.abandon(turn);
        }
    }

    /// A place under the cap for `turn` (always, without a cap), waiting for earlier turns to
    /// settle no longer than the log's deadline.
    async fn take_place(&self, turn: u64) -> Result<bool, LeadFailure> {
        let Some(cap) = &self.cap else {
            return Ok(true);
        };
        let acquire = cap.acquire(turn);
        let granted = match crate::http::current_deadline() {
            Some(deadline) => tokio::time::timeout_at(deadline, acquire).await.ok(),
            None => Some(acquire.await),
        };
        granted.ok_or_else(|| {
            cap.not_needed(turn);
            failure(
                Stage::Jira,
                "the log's deadline passed while earlier problems settled the --max-tickets cap",
            )
        })
    }

    /// `turn` takes no place under the cap (a known ticket, a muted problem, a failed create).
    fn no_place(&self, turn: u64) {
        if let Some(cap) = &self.cap {
            cap.not_needed(turn);
        }
    }

    /// `turn`'s ticket was created (or would be, in a dry run).
    fn placed(&self, turn: u64) {
        if let Some(cap) = &self.cap {
            cap.commit(turn);
        }
    }

    /// No leader starts any more: the lookups prefetched for leaders that will not run are told
    /// to stop, and the state reads asked for them are dropped.
    pub fn no_more_leaders(&self) {
        if let Some(jira) = &self.jira {
            jira.stop_lookups();
        }
        self.local.clear();
    }

    async fn lead_with_jira(
        &self,
        jira: &Arc<JiraClient>,
        leader: &Leader,
        progress: &Progress,
    ) -> Result<LeaderReport, LeadFailure> {
        progress.stage.set(Stage::Jira);
        let cx = Lead {
            jira,
            leader,
            progress,
            started: Instant::now(),
        };
        let fingerprint = &leader.fingerprint;
        if let Some(refusal) = jira.refused(fingerprint) {
            return Err(jira_failure(JiraError::Failed(refusal)));
        }
        let found = self.find(jira, fingerprint).await?;
        if let Some(report) = self.lead_known(&cx, &found).await? {
            return Ok(report);
        }
        self.lead_new(&cx, found.done).await
    }

    /// The problem has a ticket (created in this run, open, or done and reopened), or the cap
    /// left it none: its resolution, routed by the analysis it is described by (cached, else
    /// the offline rules). `None`: a new ticket is needed.
    async fn lead_known(
        &self,
        cx: &Lead<'_>,
        found: &Found,
    ) -> Result<Option<LeaderReport>, LeadFailure> {
        let (jira, event, fingerprint, template) = cx.parts();
        let has_ticket = found.created_in_run.is_some()
            || found.open.is_some()
            || (found.done.is_some() && self.reopen);
        if has_ticket {
            // A known problem never takes a place under the cap.
            self.no_place(cx.leader.turn);
        }
        // A muted problem with a ticket is left alone, before anything is written.
        let known_analysis = if has_ticket {
            let analysis = self.known_analysis(event, fingerprint, template).await;
            let route = self.route(event, template, &analysis);
            if route.muted {
                cx.progress.record(|t| t.jira = Some(cx.started.elapsed()));
                let resolution = Resolution::new(TicketAction::Muted, None).routed(&route);
                return Ok(Some(leader_report(event, analysis, resolution)));
            }
            Some((analysis, route))
        } else {
            None
        };
        let known = |action, key: &String| Resolution::new(action, Some(key.clone()));
        let resolution = if let Some(key) = &found.created_in_run {
            known(TicketAction::Created, key)
        } else if let Some(key) = &found.open {
            if found.needs_label && !self.dry_run {
                // Found by an old or merged label: give it this fingerprint's label, so the
                // next search finds it directly.
                let label = content::fingerprint_label(fingerprint.as_str());
                jira.add_label(key, &label).await.map_err(jira_failure)?;
                if let Some(state) = self.state.as_ref().filter(|s| s.writable) {
                    let (fp, k) = (fingerprint.to_string(), key.clone());
                    if let Err(e) = state.call(move |s| s.remember_ticket(&fp, &k)).await {
                        self.store_warning(&e);
                    }
                }
            }
            known(TicketAction::Existing, key)
        } else if let (Some(done), true) = (&found.done, self.reopen) {
            if self.dry_run {
                known(TicketAction::WouldReopen, done)
            } else {
                jira.reopen(done).await.map_err(jira_failure)?;
                known(TicketAction::Reopened, done)
            }
        } else if !self.take_place(cx.leader.turn).await? {
            Resolution::new(TicketAction::Capped, None)
        } else {
            return Ok(None);
        };
        let (analysis, route, resolution) = match known_analysis {
            Some((analysis, route)) => (analysis, route, resolution),
            // Capped: described the cheap way and routed; a muted problem is muted, not
            // capped (it would not have taken a place under the cap).
            None => {
                let analysis = self.known_analysis(event, fingerprint, template).await;
                let route = self.route(event, template, &analysis);
                let resolution = if route.muted {
                    Resolution::new(TicketAction::Muted, None)
                } else {
                    resolution
                };
                (analysis, route, resolution)
            }
        };
        cx.progress.record(|t| t.jira = Some(cx.started.elapsed()));
        let mut report = leader_report(event, analysis, resolution.routed(&route));
        if report.resolution.action == TicketAction::Created {
            report.told = self
                .told
                .get(fingerprint)
                .map(|t| Box::new(t.value().clone()));
        }
        Ok(Some(report))
    }

    /// A new ticket: only now is the problem analyzed; then it is muted, drafted (a dry run)
    /// or created with everything the run knows of it (`whole`).
    async fn lead_new(
        &self,
        cx: &Lead<'_>,
        recurrence_of: Option<String>,
    ) -> Result<LeaderReport, LeadFailure> {
        let (jira, event, fingerprint, template) = cx.parts();
        cx.progress.stage.set(Stage::Analyze);
        let analyze_started = Instant::now();
        let analysis = self
            .analyze_new(event, fingerprint, template, cx.progress)
            .await;
        let analyze_time = analyze_started.elapsed();
        cx.progress.stage.set(Stage::Jira);
        let jira_time = || Some(cx.started.elapsed().saturating_sub(analyze_time));
        let route = self.route(event, template, &analysis);
        if route.muted {
            self.no_place(cx.leader.turn);
            cx.progress.record(|t| t.jira = jira_time());
            let resolution = Resolution::new(TicketAction::Muted, None).routed(&route);
            return Ok(leader_report(event, analysis, resolution));
        }
        let resolution = |action, key| {
            Resolution {
                recurrence_of: recurrence_of.clone(),
                ..Resolution::new(action, key)
            }
            .routed(&route)
        };
        if self.dry_run {
            self.placed(cx.leader.turn);
            cx.progress.record(|t| t.jira = jira_time());
            return Ok(leader_report(
                event,
                analysis,
                resolution(TicketAction::WouldCreate, None),
            ));
        }
        let facts = facts::of_new_ticket(
            fingerprint,
            event,
            template,
            &analysis,
            recurrence_of.clone(),
            &self.site,
            cx.leader.whole.as_ref(),
        );
        let draft = content::ticket(&facts);
        // Rendered once: sent, and hashed as what triage wrote.
        let description = draft.description(jira.api() == JiraApi::V2);
        let labels = crate::jira::client::create_labels(&draft, &route)
            .into_iter()
            .map(str::to_string)
            .collect();
        let told = known::Told::of(&facts, &draft.summary, &description, labels);
        let result = self
            .create(
                jira,
                fingerprint,
                NewTicket {
                    draft: &draft,
                    description: &description,
                    route: &route,
                    told: &told,
                },
            )
            .await;
        cx.progress.record(|t| t.jira = jira_time());
        let key = match result {
            Ok(key) => key,
            Err(e) => match self.settle_failed_create(jira, fingerprint, &told, e).await {
                Ok(key) => key,
                Err(e) => {
                    self.no_place(cx.leader.turn);
                    // Jira's own message, with the route whose fields it refused.
                    let mut failure = LeadFailure::from(e);
                    if let Some(name) = &route.route {
                        failure.error = failure.error.context(format!("route '{name}'"));
                    }
                    return Err(failure);
                }
            },
        };
        self.placed(cx.leader.turn);
        let mut report = leader_report(
            event,
            analysis,
            resolution(TicketAction::Created, Some(key)),
        );
        report.told = Some(Box::new(told));
        Ok(report)
    }

    /// A create that failed. When it got no usable answer it may have gone through: search for
    /// it until search has caught up, before this problem is handed to a log that would create
    /// again. The key when it is found, else the create's error.
    async fn settle_failed_create(
        &self,
        jira: &Arc<JiraClient>,
        fingerprint: &Fingerprint,
        told: &known::Told,
        error: TicketError,
    ) -> Result<String, TicketError> {
        if !self.ambiguous.contains_key(fingerprint) {
            return Err(error);
        }
        tracing::warn!("the create for {fingerprint} got no usable answer ({error:#}): searching for it before creating again");
        if let Ok(Found {
            open: Some(key), ..
        }) = self
            .settle_unfinished_create(jira, fingerprint, Found::default(), None)
            .await
        {
            self.ambiguous.remove(fingerprint);
            self.remember_created(fingerprint, &key, &told.written);
            self.told.insert(fingerprint.clone(), told.clone());
            return Ok(key);
        }
        Err(error)
    }

    /// Record in the state (when writable) that `fingerprint`'s ticket is `key`, created now
    /// (which the comment cooldown counts as its last update). Committed at once, and the
    /// leader goes on meanwhile: its log's outcome is recorded after this, so never without it,
    /// and a run killed first leaves the begun create for the next one to settle.
    fn remember_created(&self, fingerprint: &Fingerprint, key: &str, written: &known::Written) {
        if let Some(state) = self.state.as_ref().filter(|s| s.writable) {
            let (fp, k, at) = (fingerprint.to_string(), key.to_string(), self.now);
            let written = written.clone();
            state.send_durable(move |s| {
                s.remember_ticket(&fp, &k)?;
                s.note_created_ticket(&k, at)?;
                s.remember_written(&k, &written.summary, &written.description)
            });
        }
    }

    /// The problem's ticket as Jira and the state know it.
    async fn find(
        &self,
        jira: &Arc<JiraClient>,
        fingerprint: &Fingerprint,
    ) -> Result<Found, TicketError> {
        let also = self
            .also
            .get(fingerprint)
            .map(|a| a.value().clone())
            .unwrap_or_default();
        let labels = local_labels(fingerprint, &also);
        let asked = self
            .local
            .remove(fingerprint)
            .map(|(_, a)| a)
            .filter(|a| a.labels == labels);
        let mut found = jira.find_also(fingerprint, &also).await?;
        let shared = self.shared_store();
        // What the state knows (read while the search was out, when the problem waited for a
        // slot): with nothing found by label, the ticket an earlier run recorded (search may
        // lag behind a ticket created moments ago, under this fingerprint or one of its other
        // labels); and, on a store of this run alone, a create begun and never answered. A
        // shared store's begun create is read under its lease.
        let no_ticket = found.open.is_none() && found.created_in_run.is_none();
        let mut begun = None;
        if let Some(state) = self.state.as_ref().filter(|_| no_ticket) {
            let (remembered, recorded) = match asked {
                Some(a) => a.asked.answer().await?,
                None => {
                    let own = (!shared).then(|| fingerprint.to_string());
                    state
                        .call(move |s| read_local(s, &labels, own.as_deref()))
                        .await?
                }
            };
            begun = (!shared).then_some(recorded);
            let remembered = remembered.filter(|_| found == Found::default());
            if let Some((i, key)) = remembered {
                found.needs_label = i != 0;
                match jira.issue(&key).await? {
                    Some(issue) if issue.is_done() => found.done = Some(key),
                    Some(_) => found.open = Some(key),
                    None => {}
                }
            }
        }
        if found.open.is_none() && found.created_in_run.is_none() {
            found = if shared && !(found.done.is_some() && self.reopen) {
                // Another runner's begun create may be in flight right now: only the lease's
                // next holder settles it.
                self.claim(jira, fingerprint, found).await?
            } else {
                self.settle_unfinished_create(jira, fingerprint, found, begun)
                    .await?
            };
        }
        Ok(found)
    }

    /// Cross-runner dedup: take the fingerprint's create lease before creating. While another
    /// runner holds it (it is creating this very problem's ticket), wait for the key it
    /// records instead of creating a second ticket. Once taken, look again: the previous
    /// holder may have recorded a key just now, or died while its create was in flight (its
    /// begun create is then settled by searching Jira before anything is created).
    async fn claim(
        &self,
        jira: &Arc<JiraClient>,
        fingerprint: &Fingerprint,
        mut found: Found,
    ) -> anyhow::Result<Found> {
        let Some(state) = self.state.as_ref() else {
            return Ok(found);
        };
        let give_up = Instant::now() + LEASE_WAIT;
        let mut wait = Duration::from_millis(100);
        let mut waited = false;
        loop {
            let fp = fingerprint.to_string();
            let lease = state.call(move |s| s.try_lease(&fp)).await?;
            if lease == crate::state::Lease::Taken {
                self.leases.insert(fingerprint.clone(), ());
            }
            let fp = fingerprint.to_string();
            if let Some(key) = state.call(move |s| s.ticket_for(&fp)).await? {
                self.release_lease(fingerprint).await;
                tracing::info!("another runner created {key} for {fingerprint}: using it");
                match jira.issue(&key).await? {
                    Some(issue) if issue.is_done() => found.done = Some(key),
                    _ => found.open = Some(key),
                }
                return Ok(found);
            }
            if lease == crate::state::Lease::Taken {
                found = self
                    .settle_unfinished_create(jira, fingerprint, found, None)
                    .await?;
                return Ok(found);
            }
            if Instant::now() >= give_up {
                anyhow::bail!(
                    "another runner has held the create lease of {fingerprint} for {}s without \
                     recording a ticket: not creating a second one (the log is retried next run)",
                    LEASE_WAIT.as_secs()
                );
            }
            if !waited {
                tracing::info!(
                    "another runner is creating the ticket for {fingerprint}: waiting for its key"
                );
            }
            waited = true;
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// Give back the fingerprint's create lease, if this run holds it.
    async fn release_lease(&self, fingerprint: &Fingerprint) {
        if self.leases.remove(fingerprint).is_none() {
            return;
        }
        if let Some(state) = &self.state {
            let fp = fingerprint.to_string();
            if let Err(e) = state.call(move |s| s.release_lease(&fp)).await {
                self.store_warning(&e);
            }
        }
    }

    /// Send the create, recorded before it leaves and after it is answered.
    async fn create(
        &self,
        jira: &JiraClient,
        fingerprint: &Fingerprint,
        ticket: NewTicket<'_>,
    ) -> Result<String, TicketError> {
        let NewTicket {
            draft,
            description,
            route,
            told,
        } = ticket;
        if crate::http::current_deadline().is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(
                anyhow::anyhow!("the log's deadline passed before its ticket was created").into(),
            );
        }
        let writable = self.state.as_ref().filter(|s| s.writable);
        if let Some(state) = writable {
            // On disk before the create leaves: a run killed while Jira answers tells the next
            // one to look for this ticket before creating another.
            let fp = fingerprint.to_string();
            state.call_durable(move |s| s.begin_create(&fp)).await?;
        }
        // In memory too, for a run without (writable) state: kept unless Jira's answer says
        // nothing was created.
        self.ambiguous.insert(fingerprint.clone(), self.clock.now());
        let key = match jira.create(fingerprint, draft, description, route).await {
            Ok(key) => key,
            Err(e) => {
                if !e.maybe_applied() {
                    self.ambiguous.remove(fingerprint);
                }
                return Err(e.into());
            }
        };
        self.ambiguous.remove(fingerprint);
        self.remember_created(fingerprint, &key, &told.written);
        self.told.insert(fingerprint.clone(), told.clone());
        Ok(key)
    }

    /// The analysis of a problem that needs a new ticket: cached, else asked (and cached).
    async fn analyze_new(
        &self,
        event: &LogEvent,
        fingerprint: &Fingerprint,
        template: &str,
        progress: &Progress,
    ) -> Analysis {
        let started = Instant::now();
        if let Some(cached) = self.cached(fingerprint).await {
            progress.record(|t| t.analyze = Some(started.elapsed()));
            return cached;
        }
        let (analysis, fallback) = self.analyzer.analyze(event, template).await;
        progress.record(|t| {
            t.analyze = Some(started.elapsed());
            t.warning = fallback.clone();
        });
        if let (None, Some(key), Some(state)) = (
            fallback,
            &self.cache_key,
            self.state.as_ref().filter(|s| s.writable),
        ) {
            if let Ok(json) = serde_json::to_string(&analysis) {
                let (fp, key) = (fingerprint.to_string(), key.clone());
                if let Err(e) = state
                    .call(move |s| s.cache_analysis(&fp, &key, &json))
                    .await
                {
                    self.store_warning(&e);
                }
            }
        }
        analysis
    }

    /// How a problem that already has a ticket is described: cached, else by the rules.
    async fn known_analysis(
        &self,
        event: &LogEvent,
        fingerprint: &Fingerprint,
        template: &str,
    ) -> Analysis {
        match self.cached(fingerprint).await {
            Some(a) => a,
            None => rules::analyze(event, template),
        }
    }

    async fn cached(&self, fingerprint: &Fingerprint) -> Option<Analysis> {
        let (key, state) = (self.cache_key.clone()?, self.state.as_ref()?);
        let fp = fingerprint.to_string();
        let json = state
            .call(move |s| s.cached_analysis(&fp, &key, ANALYSIS_TTL))
            .await
            .map_err(|e| self.store_warning(&e))
            .ok()??;
        serde_json::from_str(&json).ok()
    }

    /// An earlier run began a create for this fingerprint and died before the answer: the
    /// ticket may exist without search showing it yet. Search again until it shows up or the
    /// create is old enough for search to have caught up.
    /// `recorded`: the state's begun create, when the caller has just read it.
    async fn settle_unfinished_create(
        &self,
        jira: &Arc<JiraClient>,
        fingerprint: &Fingerprint,
        mut found: Found,
        recorded: Option<Option<chrono::DateTime<chrono::Utc>>>,
    ) -> Result<Found, TicketError> {
        let recorded = match (recorded, &self.state) {
            (Some(recorded), _) => recorded,
            (None, Some(state)) => {
                let fp = fingerprint.to_string();
                state.call(move |s| s.create_begun(&fp)).await?
            }
            (None, None) => None,
        };
        let in_memory = self.ambiguous.get(fingerprint).map(|b| *b.value());
        let Some(begun) = recorded.max(in_memory) else {
            return Ok(found);
        };
        // How much of the search lag allowance is left since the create began (none: search
        // has caught up, and what it showed stands).
        let lag = chrono::Duration::from_std(jira.search_lag()).unwrap_or(chrono::Duration::MAX);
        let Ok(left) = (lag - (self.clock.now() - begun)).to_std() else {
            return Ok(found);
        };
        // Creating before it has caught up could file a second ticket; past the deadline the
        // next log of this problem (or the next run) looks again.
        found = crate::jira::client::until_search_settles(
            tokio::time::Instant::now() + left,
            found,
            |f: &Found| f.open.is_some(),
            || {
                tracing::info!(
                    "a create for {fingerprint} began at {begun} and was never answered: searching again"
                );
                jira.find(fingerprint)
            },
            || {
                JiraError::Failed(format!(
                    "a create for {fingerprint} began at {begun} got no usable answer, and search \
                     has not shown it within the log's deadline (--jira-search-lag {}s)",
                    jira.search_lag().as_secs_f64()
                ))
            },
        )
        .await?;
        Ok(found)
    }
}

/// How long a runner waits for another runner's create of the same problem before giving
/// up on the log for this run (a live holder's create is bounded by the HTTP timeouts well
/// within this; a dead holder's lease is gone with its connection).
const LEASE_WAIT: Duration = Duration::from_secs(120);

fn failure(stage: Stage, message: &str) -> LeadFailure {
    LeadFailure {
        stage,
        error: anyhow::anyhow!(message.to_string()),
        fatal: None,
    }
}

/// One leader's work with Jira, as its steps see it.
struct Lead<'a> {
    jira: &'a Arc<JiraClient>,
    leader: &'a Leader,
    progress: &'a Progress,
    started: Instant,
}

impl<'a> Lead<'a> {
    /// The Jira client, the log, its fingerprint and its template.
    fn parts(&self) -> (&'a Arc<JiraClient>, &'a LogEvent, &'a Fingerprint, &'a str) {
        let l = self.leader;
        (self.jira, &l.event, &l.fingerprint, &l.template)
    }
}

/// A leader's failure at Jira; fatal for the run when Jira refused the credentials.
fn jira_failure(error: JiraError) -> LeadFailure {
    LeadFailure {
        stage: Stage::Jira,
        fatal: error.fatal_message(),
        error: error.into(),
    }
}

fn leader_report(event: &LogEvent, analysis: Analysis, resolution: Resolution) -> LeaderReport {
    LeaderReport {
        analysis,
        sample_id: event.id.clone(),
        sample_message: event.message.clone(),
        sample_timestamp: event.timestamp,
        resolution: std::sync::Arc::new(resolution),
        told: None,
    }
}

#[cfg(test)]
mod tests;
