//! The run's tally: every number of a run and its problems, added up and nothing else.
//!
//! In: every `Outcome` (after the outcome writer has written it), the source's warnings, cut
//! lines, unreadable records and page timings, the given-up logs, the end-of-run ticket phase's
//! result, the analyzer's fallbacks and the rate limits' waits. Out: the problems by
//! fingerprint (each with its [`Tally`] of occurrences, first/last seen and hosts, and its
//! leader's report), the ticket work of the end of the run, and at the end the report's summary
//! and ticket entries.
//! No I/O, no clock, nothing async, nothing that fails: what is written, said or stored about
//! an outcome is `outcome_writer`'s. Memory: one entry per distinct problem.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::analyze::Severity;
use crate::config::{Config, DatadogSite};
use crate::grouping::fingerprint::Fingerprint;
use crate::grouping::TemplateMiner;
use crate::jira::content::{self, ProblemFacts};
use crate::outcome::{LeaderReport, Outcome, TicketAction};
use crate::pipeline::report::{LimiterWait, Report, Stages, Summary, TicketEntry};
use crate::pipeline::stats::Stats;
use crate::ticket::facts::{self, Span};
use crate::ticket::known::Tally;
use crate::ticket::recurrence::{PhaseResult, TicketWork};

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

/// What the summary and the ticket entries say about the run that no outcome tells.
#[derive(Debug, Clone)]
pub struct RunShape {
    pub async_mode: bool,
    pub workers: usize,
    pub dry_run: bool,
    /// For the facts (and the log links) of each problem.
    pub site: DatadogSite,
    /// The Jira base URL, for each ticket's page in the report.
    pub jira_url: Option<String>,
}

impl RunShape {
    pub fn of(config: &Config) -> Self {
        RunShape {
            async_mode: config.async_mode,
            workers: config.workers,
            dry_run: config.dry_run,
            site: config.site.clone(),
            jira_url: config.jira.as_ref().map(|j| j.base_url.clone()),
        }
    }
}

/// How the run ended: what the summary takes besides the tallies.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub elapsed: Duration,
    pub interrupted: bool,
    pub error: Option<String>,
    pub breaker_trips: u64,
}

/// Every number of one run, and its problems.
pub struct RunTally {
    shape: RunShape,
    stats: Stats,
    already_processed: u64,
    given_up: u64,
    problems: HashMap<Fingerprint, Problem>,
    /// Input records that could not be read, and the first of them (where, and why).
    unreadable: u64,
    first_unreadable: Option<String>,
    /// Input lines cut to `--max-line-bytes`.
    lines_cut: u64,
    /// Problems the `llm` analyzer failed on.
    llm_fallbacks: u64,
    /// How long calls waited on each service's local rate limit.
    limiter_waits: Vec<LimiterWait>,
}

impl RunTally {
    pub fn new(shape: RunShape) -> Self {
        RunTally {
            shape,
            stats: Stats::default(),
            already_processed: 0,
            given_up: 0,
            problems: HashMap::new(),
            unreadable: 0,
            first_unreadable: None,
            lines_cut: 0,
            llm_fallbacks: 0,
            limiter_waits: Vec::new(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A record was taken from the source.
    pub fn fetched(&mut self) {
        self.stats.fetched += 1;
    }

    /// How long the source took to fetch a page of records.
    pub fn fetch_latency(&mut self, latency: Duration) {
        self.stats.fetch.record(latency);
    }

    /// A warning about the input or the run (counted every time it is said).
    pub fn warning(&mut self) {
        self.stats.warnings += 1;
    }

    /// A source record that is an input error (it is also added as a skipped outcome).
    pub fn unreadable(&mut self, skipped: &crate::source::Skipped) {
        self.unreadable += 1;
        if self.first_unreadable.is_none() {
            self.first_unreadable = Some(format!("{}: {}", skipped.location, skipped.reason));
        }
    }

    /// A line was cut to `--max-line-bytes`; how many were, with it.
    pub fn cut(&mut self) -> u64 {
        self.lines_cut += 1;
        self.lines_cut
    }

    /// How many problems the `llm` analyzer fell back to the rules on.
    pub fn llm_fallbacks(&mut self, count: u64) {
        self.llm_fallbacks = count;
    }

    /// How long calls waited on each service's rate limit; the summary names those that
    /// bounded the run.
    pub fn limiter_waits(&mut self, waits: Vec<LimiterWait>) {
        self.limiter_waits = waits;
    }

    /// Logs that failed in `--max-retries` runs and are no longer retried.
    pub fn given_up(&mut self, count: u64) {
        self.given_up += count;
    }

    /// Count one log's outcome, and add its facts to its problem.
    pub fn add(&mut self, outcome: Outcome) {
        self.stats.count(outcome.kind());
        if let Some(work) = outcome.work() {
            if work.warning.is_some() {
                self.warning();
            }
            if let Some(d) = work.analyze_time {
                self.stats.analyze.record(d);
            }
            if let Some(d) = work.jira_time {
                self.stats.jira.record(d);
            }
        }
        if let Outcome::AlreadyProcessed { .. } = outcome {
            self.already_processed += 1;
        }
        self.add_to_problem(outcome);
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

    /// How many distinct problems so far.
    pub fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// The problems seen so far, with a leader (those that have a ticket decision).
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems.values().filter(|p| p.leader.is_some())
    }

    /// The whole-run facts of one problem, by its fingerprint (as the report names it).
    pub fn facts_of(&self, fingerprint: &str) -> Option<ProblemFacts> {
        let fp = Fingerprint::from_raw(fingerprint.to_string());
        self.problems.get(&fp)?.facts(&self.shape.site)
    }

    /// Apply what the template miner knows at the end of the run: problems whose templates
    /// merged become one (under the surviving fingerprint), and each problem shows its final
    /// template. Out: each fingerprint merged away, and the one it now stands for (for the
    /// report's log entries).
    pub fn regroup(&mut self, miner: &TemplateMiner) -> HashMap<String, String> {
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
        remap
    }

    /// The tickets the end of the run tells Jira about: those created in this run (brought up
    /// to date with the whole run), and those that existed before it or were reopened (a
    /// recurrence comment).
    pub fn ticket_work(&self) -> (Vec<TicketWork>, Vec<TicketWork>) {
        let mut created = Vec::new();
        let mut recurring = Vec::new();
        let mut problems: Vec<&Problem> = self.problems().collect();
        // A stable order: the same run makes the same calls.
        problems.sort_by(|a, b| a.fingerprint.as_str().cmp(b.fingerprint.as_str()));
        for p in problems {
            let Some(leader) = &p.leader else { continue };
            let (Some(key), Some(facts)) = (&leader.resolution.key, p.facts(&self.shape.site))
            else {
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

    /// Add up what the end-of-run ticket phase did (its warnings are counted here; saying them
    /// is the writer's).
    pub fn ticket_phase(&mut self, phase: PhaseResult) {
        self.stats.commented += phase.commented;
        self.stats.updated += phase.updated;
        for t in phase.jira_times {
            self.stats.jira.record(t);
        }
        self.stats.warnings += phase.warnings.len() as u64;
    }

    /// The run's report: its summary and ticket entries. `keep_problems`: the problems are
    /// still needed afterwards (a report file's drafts); without, each is dropped as soon as
    /// its entry is built.
    pub fn report(&mut self, end: RunEnd, keep_problems: bool) -> Report {
        let error = end.error.or_else(|| self.nothing_readable(end.interrupted));
        let problems_seen = self.problems.len() as u64;
        let (tickets, muted) = self.ticket_entries(keep_problems);
        let summary = self.summary(SummaryInput {
            tickets: tickets.len() as u64,
            problems: problems_seen,
            elapsed: end.elapsed,
            interrupted: end.interrupted,
            error,
            breaker_trips: end.breaker_trips,
        });
        Report {
            summary,
            tickets,
            muted,
        }
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
    /// One pass, straight into the two lists (no intermediate list of every entry). Without
    /// `keep_problems` each problem is dropped as soon as its entry is built, so the problems
    /// and the entries never all live at once.
    fn ticket_entries(&mut self, keep_problems: bool) -> (Vec<TicketEntry>, Vec<TicketEntry>) {
        let mut tickets: Vec<(Severity, TicketEntry)> = Vec::with_capacity(self.problems.len());
        let mut muted: Vec<TicketEntry> = Vec::new();
        let shape = &self.shape;
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
                if let Some(t) = entry(shape, p, p.template.to_string(), p.service.clone(), hosts) {
                    sort_in(t);
                }
            }
        } else {
            for (_, mut p) in std::mem::take(&mut self.problems) {
                // Built from the problem, then given its strings rather than copies of them.
                let Some((severity, mut t)) = entry(shape, &p, String::new(), None, Vec::new())
                else {
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
            mode: if self.shape.async_mode {
                "async"
            } else {
                "sequential"
            },
            workers: self.shape.workers,
            dry_run: self.shape.dry_run,
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

/// One problem's ticket entry (none for a problem without a ticket decision, or capped), with
/// the severity it is ordered by.
fn entry(
    shape: &RunShape,
    p: &Problem,
    template: String,
    service: Option<String>,
    hosts: Vec<String>,
) -> Option<(Severity, TicketEntry)> {
    let leader = p.leader.as_ref()?;
    let res = &leader.resolution;
    if res.action == TicketAction::Capped {
        return None;
    }
    let facts = p.facts(&shape.site)?;
    let (summary, labels) = content::summary_and_labels(&facts);
    let severity = leader.analysis.severity;
    Some((
        severity,
        TicketEntry {
            fingerprint: p.fingerprint.to_string(),
            template,
            key: res.key.clone(),
            url: shape
                .jira_url
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
}

/// What the summary takes besides the tallies.
struct SummaryInput {
    tickets: u64,
    problems: u64,
    elapsed: Duration,
    interrupted: bool,
    error: Option<String>,
    breaker_trips: u64,
}

#[cfg(test)]
mod tests;
