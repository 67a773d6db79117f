//! The collector: the one place that adds up outcomes.
//!
//! In: every `Outcome` (and the source's warnings and page timings), in completion order, from
//! the pipeline's single consuming loop, so nothing here needs a lock. Out: the counters, the
//! per-problem facts (occurrences, first/last seen, hosts), the streamed `logs` part of the
//! report, the progress bar, and at the end the `Report`.
//! Memory: one entry per distinct problem; log entries go straight to the report file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::analyze::Severity;
use crate::config::{Config, DatadogSite};
use crate::grouping::fingerprint::Fingerprint;
use crate::grouping::TemplateMiner;
use crate::jira::content::{self, ProblemFacts};
use crate::outcome::{LeaderReport, Outcome, OutcomeKind, TicketAction};
use crate::pipeline::progress::Progress;
use crate::pipeline::report::{LogEntry, Report, ReportWriter, Stages, Summary, TicketEntry};
use crate::pipeline::stats::Stats;
use crate::state::{Processed, StateHandle};
use crate::ticket::facts::{self, Span};
use crate::ticket::known::Tally;
use crate::ticket::recurrence::{PhaseResult, TicketWork};

/// Skipped records reported one by one on stderr before they are only counted.
const MAX_SKIPPED_SHOWN: u64 = 50;

/// What one problem looked like over this run.
#[derive(Debug, Clone)]
pub struct Problem {
    pub fingerprint: Fingerprint,
    pub service: Option<String>,
    pub template: Arc<str>,
    /// How often, when and where (hosts sorted): added up exactly as
    /// the pipeline adds up a new problem for its create, so the two can be compared
    /// ([`crate::ticket::known::MAX_HOSTS`] hosts at most).
    pub seen: Tally,
    /// Boxed: most of a problem's size, and a problem without one (yet) needs no room for it.
    pub leader: Option<Box<LeaderReport>>,
}

impl Problem {
    /// Fold another problem (a template merged into this one) into this one.
    fn absorb(&mut self, other: Problem) {
        self.seen.absorb(&other.seen);
        if self.leader.is_none() {
            self.leader = other.leader;
        }
    }

    /// The facts a ticket or comment about this problem is written from: the whole run.
    pub fn facts(&self, site: &DatadogSite) -> Option<ProblemFacts> {
        let leader = self.leader.as_ref()?;
        Some(facts::build(
            &self.fingerprint,
            self.service.as_deref(),
            &self.template,
            leader,
            Span {
                occurrences: self.seen.occurrences,
                first_seen: self.seen.first_seen,
                last_seen: self.seen.last_seen,
                hosts: &self.seen.hosts,
            },
            site,
        ))
    }
}

pub struct Collector {
    stats: Stats,
    /// Where final outcomes are recorded (only when this run may write).
    state: Option<StateHandle>,
    already_processed: u64,
    given_up: u64,
    problems: HashMap<Fingerprint, Problem>,
    report: Option<ReportWriter>,
    progress: Progress,
    warnings: HashSet<String>,
    site: DatadogSite,
    /// Drafts in wiki markup, as Jira Server / Data Center (REST v2) gets them.
    wiki: bool,
    /// The Jira base URL, for each ticket's page in the report.
    jira_url: Option<String>,
    dry_run: bool,
    async_mode: bool,
    workers: usize,
    started: Instant,
    /// Input records that could not be read, and the first of them (where, and why).
    unreadable: u64,
    first_unreadable: Option<String>,
    /// Input lines cut to `--max-line-bytes`.
    lines_cut: u64,
    /// Problems the `llm` analyzer failed on.
    llm_fallbacks: u64,
    /// How long calls waited on each service's local rate limit.
    limiter_waits: Vec<crate::pipeline::report::LimiterWait>,
}

impl Collector {
    pub fn new(
        config: &Config,
        progress: Progress,
        state: Option<StateHandle>,
    ) -> anyhow::Result<Self> {
        let report = config
            .report
            .as_deref()
            .map(ReportWriter::create)
            .transpose()?;
        Ok(Collector {
            stats: Stats::default(),
            state: state.filter(|s| s.writable),
            already_processed: 0,
            given_up: 0,
            problems: HashMap::new(),
            report,
            progress,
            warnings: HashSet::new(),
            site: config.site.clone(),
            wiki: config
                .jira
                .as_ref()
                .is_some_and(|j| j.api == crate::jira::config::JiraApi::V2),
            jira_url: config.jira.as_ref().map(|j| j.base_url.clone()),
            dry_run: config.dry_run,
            async_mode: config.async_mode,
            workers: config.workers,
            started: Instant::now(),
            unreadable: 0,
            first_unreadable: None,
            lines_cut: 0,
            llm_fallbacks: 0,
            limiter_waits: Vec::new(),
        })
    }

    /// A record was taken from the source.
    pub fn fetched(&mut self) {
        self.stats.fetched += 1;
    }

    pub fn fetch_latency(&mut self, latency: std::time::Duration) {
        self.stats.fetch.record(latency);
    }

    /// A warning about the input: shown once, counted every time.
    pub fn warning(&mut self, message: String) {
        self.stats.warnings += 1;
        if self.warnings.insert(message.clone()) {
            self.progress.println(&format!("warning: {message}"));
        }
    }

    /// Something about the input worth saying that is not a warning (the result is complete):
    /// shown once, not counted.
    pub fn notice(&mut self, message: String) {
        if self.warnings.insert(message.clone()) {
            self.progress.println(&format!("note: {message}"));
        }
    }

    /// A source record that is an input error (it is also added as a skipped outcome).
    pub fn unreadable(&mut self, skipped: &crate::source::Skipped) {
        self.unreadable += 1;
        if self.first_unreadable.is_none() {
            self.first_unreadable = Some(format!("{}: {}", skipped.location, skipped.reason));
        }
    }

    /// A line was cut to `--max-line-bytes`: said on stderr (the first few), counted always.
    pub fn cut(&mut self, cut: &crate::source::Cut) {
        self.lines_cut += 1;
        if self.lines_cut <= MAX_SKIPPED_SHOWN {
            self.progress.println(&format!(
                "cut {}: the line is {} bytes, longer than --max-line-bytes; read its first {} bytes",
                cut.location, cut.length, cut.kept
            ));
        }
    }

    /// How many problems the `llm` analyzer fell back to the rules on.
    pub fn llm_fallbacks(&mut self, count: u64) {
        self.llm_fallbacks = count;
    }

    /// How long calls waited on each service's rate limit; the summary names those that
    /// bounded the run.
    pub fn limiter_waits(&mut self, waits: Vec<crate::pipeline::report::LimiterWait>) {
        self.limiter_waits = waits;
    }

    pub fn add(&mut self, outcome: Outcome) -> anyhow::Result<()> {
        let kind = outcome.kind();
        self.stats.count(kind);
        if let Some(work) = outcome.work() {
            if let Some(w) = &work.warning {
                self.warning(w.clone());
            }
            if let Some(d) = work.analyze_time {
                self.stats.analyze.record(d);
            }
            if let Some(d) = work.jira_time {
                self.stats.jira.record(d);
            }
        }
        let error = outcome.error();
        match &outcome {
            Outcome::AlreadyProcessed { .. } => self.already_processed += 1,
            Outcome::SkippedRecord { location, .. } => {
                if self.stats.skipped <= MAX_SKIPPED_SHOWN {
                    self.progress.println(&format!(
                        "skipped {location}: {}",
                        error.as_deref().unwrap_or("unusable record")
                    ));
                }
                if self.stats.skipped == MAX_SKIPPED_SHOWN {
                    self.progress
                        .println("further skipped records are counted, not shown (see --report)");
                }
            }
            _ if kind == OutcomeKind::Failed => {
                self.progress.println(&format!(
                    "failed {} at {}: {}",
                    outcome.log_id(),
                    outcome
                        .stage()
                        .map(|s| format!("{s:?}").to_lowercase())
                        .unwrap_or_default(),
                    error.as_deref().unwrap_or("unknown error")
                ));
            }
            _ => {}
        }
        if let Some(report) = &mut self.report {
            report.log(&LogEntry {
                id: outcome.log_id(),
                fingerprint: outcome.fingerprint().map(Fingerprint::as_str),
                outcome: kind.as_str(),
                ticket: outcome.ticket(),
                error: error.as_deref(),
                stage: outcome.stage(),
            })?;
        }
        if let (Some(state), Some(seen)) = (&self.state, outcome.seen()) {
            let failed = outcome
                .retry_event()
                .map(|ev| (ev.clone(), error.clone().unwrap_or_default()));
            // Every log of a ticket's problem but the one its description was written from.
            let recurrence = matches!(kind, OutcomeKind::Existing | OutcomeKind::Duplicate)
                .then(|| outcome.ticket().map(str::to_string))
                .flatten();
            // Queued to the state writer, committed with its batch.
            state.record(Processed {
                id: outcome.log_id().to_string(),
                timestamp: seen.timestamp,
                failed,
                recurrence,
            })?;
        }
        self.add_to_problem(outcome);
        self.counted_one();
        Ok(())
    }

    /// The log's facts added to its problem (a log with a fingerprint), and its leader's report.
    fn add_to_problem(&mut self, outcome: Outcome) {
        let (fp, seen, leader) = match outcome {
            Outcome::Led { log, report, .. } => (log.fingerprint, log.seen, Some(report)),
            Outcome::LeadFailed { log, .. } | Outcome::Followed { log, .. } => {
                (log.fingerprint, log.seen, None)
            }
            Outcome::Unfinished {
                fingerprint: Some(fp),
                seen,
                ..
            } => (fp, seen, None),
            _ => return,
        };
        let crate::outcome::Seen {
            timestamp,
            host,
            service,
            template,
        } = seen;
        let problem = match self.problems.entry(fp) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let fingerprint = e.key().clone();
                e.insert(Problem {
                    fingerprint,
                    service,
                    template,
                    seen: Tally::default(),
                    leader: None,
                })
            }
        };
        problem.seen.add(timestamp, host.as_deref());
        if let Some(leader) = leader {
            problem.leader = Some(leader);
        }
    }

    /// The records taken so far came from this many bytes of the input file: the progress
    /// bar moves toward the file's size.
    pub fn input_read(&mut self, bytes: u64) {
        self.progress.read_to(bytes);
    }

    /// One more log added: the progress line moves.
    fn counted_one(&mut self) {
        self.progress.inc();
        if self.stats.processed().is_multiple_of(64) && self.progress.shown() {
            self.progress.message(format!(
                "{}, {} failed",
                crate::pipeline::report::plural(self.problems.len() as u64, "problem", "problems"),
                self.stats.failed
            ));
        }
    }

    /// Whether each log's occurrence is counted into its ticket's pending comment count as the
    /// log is recorded (a checkpointed source with a writable state).
    pub fn counts_occurrences(&self) -> bool {
        self.state.is_some()
    }

    /// The problems seen so far, with a leader (those that have a ticket decision).
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems.values().filter(|p| p.leader.is_some())
    }

    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Logs that failed in `--max-retries` runs and are no longer retried: reported, not dropped silently.
    pub fn given_up(&mut self, ids: &[String], runs: u32) {
        self.given_up += ids.len() as u64;
        for id in ids {
            self.progress.println(&format!(
                "given up: log {id} failed in {runs} runs and will not be retried again"
            ));
        }
    }

    /// Apply what the template miner knows at the end of the run: problems whose templates
    /// merged become one (under the surviving fingerprint, in `tickets` and in every log entry
    /// of the report), and each problem shows its final template.
    pub fn regroup(&mut self, miner: &TemplateMiner) {
        let mut remap = HashMap::new();
        let mut fps: Vec<Fingerprint> = self.problems.keys().cloned().collect();
        fps.sort();
        for fp in fps {
            let into = miner.resolve(&fp);
            if into == fp {
                continue;
            }
            remap.insert(fp.to_string(), into.to_string());
            let Some(gone) = self.problems.remove(&fp) else {
                continue;
            };
            match self.problems.get_mut(&into) {
                Some(p) => p.absorb(gone),
                None => {
                    self.problems.insert(
                        into.clone(),
                        Problem {
                            fingerprint: into,
                            ..gone
                        },
                    );
                }
            }
        }
        for (fp, p) in &mut self.problems {
            if let Some(t) = miner.shared_template(fp) {
                p.template = t.clone();
            }
        }
        if let Some(report) = &mut self.report {
            report.remap(remap);
        }
    }

    /// Commit every outcome recorded so far to the state store.
    pub async fn flush_state(&mut self) -> anyhow::Result<()> {
        if let Some(state) = &self.state {
            state.flush().await?;
        }
        Ok(())
    }

    /// The tickets the end of the run tells Jira about: those created in this run (brought up
    /// to date with the whole run), and those that existed before it or were reopened (a
    /// recurrence comment).
    pub fn ticket_work(&self, site: &DatadogSite) -> (Vec<TicketWork>, Vec<TicketWork>) {
        let mut created = Vec::new();
        let mut recurring = Vec::new();
        let mut problems: Vec<&Problem> = self.problems().collect();
        // A stable order: the same run makes the same calls.
        problems.sort_by(|a, b| a.fingerprint.as_str().cmp(b.fingerprint.as_str()));
        for p in problems {
            let Some(leader) = &p.leader else { continue };
            let (Some(key), Some(facts)) = (&leader.resolution.key, p.facts(site)) else {
                continue;
            };
            let work = TicketWork {
                key: key.clone(),
                facts,
                cooldown: leader.resolution.comment_cooldown,
                told: leader.told.as_deref().cloned(),
            };
            match leader.resolution.action {
                TicketAction::Created => created.push(work),
                TicketAction::Existing | TicketAction::Reopened => recurring.push(work),
                _ => {}
            }
        }
        (created, recurring)
    }

    /// The labels each ticket this run created carried in its create, by ticket key.
    pub fn created_labels(&self) -> HashMap<String, Vec<String>> {
        self.problems()
            .filter_map(|p| {
                let leader = p.leader.as_ref()?;
                Some((
                    leader.resolution.key.clone()?,
                    leader.told.as_ref()?.labels.clone(),
                ))
            })
            .collect()
    }

    /// Add up what the end-of-run ticket phase did.
    pub fn ticket_phase(&mut self, phase: PhaseResult) {
        self.stats.commented += phase.commented;
        self.stats.updated += phase.updated;
        for t in phase.jira_times {
            self.stats.jira.record(t);
        }
        for w in phase.warnings {
            self.warning(w);
        }
    }

    /// Close the run: build the summary and tickets, and write the report file.
    pub fn finish(
        mut self,
        interrupted: bool,
        error: Option<String>,
        breaker_trips: u64,
    ) -> anyhow::Result<Report> {
        self.progress.finish();
        let error = error.or_else(|| self.nothing_readable(interrupted));
        let elapsed = self.started.elapsed();
        let problems_seen = self.problems.len() as u64;
        let (tickets, muted) = self.ticket_entries();
        let summary = self.summary(SummaryInput {
            tickets: tickets.len() as u64,
            problems: problems_seen,
            elapsed,
            interrupted,
            error,
            breaker_trips,
        });
        let report = Report {
            summary,
            tickets,
            muted,
        };
        if let Some(writer) = self.report {
            // A dry run's drafts: built one at a time as the report is written, never all at
            // once (they are the largest thing a problem has).
            let (problems, site, wiki) = (&self.problems, &self.site, self.wiki);
            writer.finish(&report, |t| {
                if t.action != TicketAction::WouldCreate.as_str() {
                    return None;
                }
                let fp = Fingerprint::from_raw(t.fingerprint.clone());
                let facts = problems.get(&fp)?.facts(site)?;
                let draft = content::ticket(&facts);
                Some(serde_json::json!({
                    "summary": draft.summary,
                    "labels": draft.labels,
                    "description": if wiki {
                        serde_json::Value::String(draft.description_wiki())
                    } else {
                        draft.description_adf()
                    },
                }))
            })?;
        }
        Ok(report)
    }

    /// Input that held records, none of them readable: nothing was done, and that is fatal.
    fn nothing_readable(&self, interrupted: bool) -> Option<String> {
        let first = self.first_unreadable.as_deref()?;
        (!interrupted && self.unreadable == self.stats.fetched).then(|| {
            format!(
                "no log could be read from the input: {} record(s), none readable (first: {first})",
                self.unreadable
            )
        })
    }

    /// The report's ticket entries, most severe and most frequent first (the fingerprint breaks
    /// ties, so the order is stable), and the muted problems beside them.
    ///
    /// One pass, straight into the two lists (no intermediate list of every entry). Without a
    /// report file nothing needs the problems afterwards: each is dropped as soon as its entry
    /// is built, so the problems and the entries never all live at once.
    fn ticket_entries(&mut self) -> (Vec<TicketEntry>, Vec<TicketEntry>) {
        let keep_problems = self.report.is_some();
        let mut tickets: Vec<(Severity, TicketEntry)> = Vec::with_capacity(self.problems.len());
        let mut muted: Vec<TicketEntry> = Vec::new();
        let site = self.site.clone();
        let jira_url = self.jira_url.clone();
        let entry = |p: &Problem, template: String, service: Option<String>, hosts: Vec<String>| {
            let leader = p.leader.as_ref()?;
            let res = &leader.resolution;
            if res.action == TicketAction::Capped {
                return None;
            }
            let facts = p.facts(&site)?;
            let (summary, labels) = content::summary_and_labels(&facts);
            let severity = leader.analysis.severity;
            Some((
                severity,
                TicketEntry {
                    fingerprint: p.fingerprint.to_string(),
                    template,
                    key: res.key.clone(),
                    url: jira_url
                        .as_deref()
                        .zip(res.key.as_deref())
                        .map(|(base, key)| crate::pipeline::report::browse_url(base, key)),
                    action: res.action.as_str(),
                    summary,
                    severity: severity.as_str(),
                    occurrences: p.seen.occurrences,
                    category: leader.analysis.category.as_str(),
                    service,
                    first_seen: p.seen.first_seen,
                    last_seen: p.seen.last_seen,
                    hosts,
                    labels,
                    route: res.route.clone(),
                    draft: None,
                },
            ))
        };
        let mut sort_in = |(severity, t): (Severity, TicketEntry)| {
            // Muted problems have no ticket: kept beside the report (`triage route --explain`).
            if t.action == TicketAction::Muted.as_str() {
                muted.push(t);
            } else {
                tickets.push((severity, t));
            }
        };
        if keep_problems {
            for p in self.problems.values() {
                let hosts = p.seen.hosts.clone();
                if let Some(t) = entry(p, p.template.to_string(), p.service.clone(), hosts) {
                    sort_in(t);
                }
            }
        } else {
            for (_, mut p) in std::mem::take(&mut self.problems) {
                // Built from the problem, then given its strings rather than copies of them.
                let Some((severity, mut t)) = entry(&p, String::new(), None, Vec::new()) else {
                    continue;
                };
                t.template = p.template.to_string();
                t.service = p.service.take();
                t.hosts = std::mem::take(&mut p.seen.hosts);
                sort_in((severity, t));
            }
        }
        tickets.sort_by(|(sa, a), (sb, b)| {
            sb.cmp(sa)
                .then(b.occurrences.cmp(&a.occurrences))
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        (tickets.into_iter().map(|(_, t)| t).collect(), muted)
    }

    /// The run's summary from the tallies.
    fn summary(&mut self, run: SummaryInput) -> Summary {
        let s = &self.stats;
        let processed = s.processed();
        let elapsed = run.elapsed;
        Summary {
            mode: if self.async_mode {
                "async"
            } else {
                "sequential"
            },
            workers: self.workers,
            dry_run: self.dry_run,
            fetched: s.fetched,
            processed,
            created: s.created,
            commented: s.commented,
            updated: s.updated,
            duplicates: s.duplicates,
            failed: s.failed,
            skipped: s.skipped,
            tickets: run.tickets,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            stages: Stages {
                fetch: s.fetch.percentiles(),
                analyze: s.analyze.percentiles(),
                jira: s.jira.percentiles(),
            },
            existing: s.existing,
            would_create: s.would_create,
            problems: run.problems,
            warnings: s.warnings,
            logs_per_second: if elapsed.as_secs_f64() > 0.0 {
                (processed as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0
            } else {
                0.0
            },
            interrupted: run.interrupted,
            error: run.error,
            already_processed: self.already_processed,
            given_up: self.given_up,
            breaker_trips: run.breaker_trips,
            unreadable: self.unreadable,
            lines_cut: self.lines_cut,
            llm_fallbacks: self.llm_fallbacks,
            rate_limited: std::mem::take(&mut self.limiter_waits)
                .into_iter()
                .filter(|w| w.bounded(elapsed))
                .collect(),
        }
    }
}

/// What the summary takes besides the tallies.
struct SummaryInput {
    tickets: u64,
    problems: u64,
    elapsed: std::time::Duration,
    interrupted: bool,
    error: Option<String>,
    breaker_trips: u64,
}
