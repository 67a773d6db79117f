//! The outcome writer: every side effect of a run's outcomes, in one place.
//!
//! In: every `Outcome`, once, before the tally counts it (with the tally as it stands, for the
//! numbers a line quotes); the warnings, notices, cut lines, given-up logs and bytes read worth
//! saying; at the end the `Report` and the tally's problems. Out: each outcome's record queued
//! to the state store (only when this run may write) and committed by `flush_state`; each log's
//! line in the `--report` file; the skipped/failed/warning lines and the progress bar on
//! stderr; at the end the report file, with a dry run's drafts in Jira's markup (wiki for Jira
//! REST v2, ADF otherwise).
//! What is counted is the tally's (`tally`); nothing here adds anything up but what has been
//! shown already.

use std::collections::{HashMap, HashSet};

use crate::config::Config;
use crate::grouping::fingerprint::Fingerprint;
use crate::jira::content;
use crate::outcome::{Outcome, OutcomeKind, TicketAction};
use crate::pipeline::progress::Progress;
use crate::pipeline::report::{LogEntry, Report, ReportWriter};
use crate::pipeline::tally::RunTally;
use crate::state::{Processed, StateHandle};

/// Skipped records reported one by one on stderr before they are only counted.
const MAX_SKIPPED_SHOWN: u64 = 50;

pub struct OutcomeWriter {
    /// Where final outcomes are recorded (only when this run may write).
    state: Option<StateHandle>,
    report: Option<ReportWriter>,
    progress: Progress,
    /// Warnings and notices already said: each is said once.
    said: HashSet<String>,
    /// Drafts in wiki markup, as Jira Server / Data Center (REST v2) gets them.
    wiki: bool,
}

impl OutcomeWriter {
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
        Ok(OutcomeWriter {
            state: state.filter(|s| s.writable),
            report,
            progress,
            said: HashSet::new(),
            wiki: config
                .jira
                .as_ref()
                .is_some_and(|j| j.api == crate::jira::config::JiraApi::V2),
        })
    }

    /// A warning: said the first time only.
    pub fn warning(&mut self, message: &str) {
        if self.said.insert(message.to_string()) {
            self.progress.println(&format!("warning: {message}"));
        }
    }

    /// Something about the input worth saying that is not a warning: said the first time only.
    pub fn notice(&mut self, message: String) {
        if self.said.insert(message.clone()) {
            self.progress.println(&format!("note: {message}"));
        }
    }

    /// The `nth` line cut to `--max-line-bytes`: said for the first few.
    pub fn cut(&mut self, cut: &crate::source::Cut, nth: u64) {
        if nth <= MAX_SKIPPED_SHOWN {
            self.progress.println(&format!(
                "cut {}: the line is {} bytes, longer than --max-line-bytes; read its first {} bytes",
                cut.location, cut.length, cut.kept
            ));
        }
    }

    /// Logs that failed in `--max-retries` runs and are no longer retried: said, not dropped
    /// silently.
    pub fn given_up(&mut self, ids: &[String], runs: u32) {
        for id in ids {
            self.progress.println(&format!(
                "given up: log {id} failed in {runs} runs and will not be retried again"
            ));
        }
    }

    /// The records taken so far came from this many bytes of the input file: the progress
    /// bar moves toward the file's size.
    pub fn input_read(&mut self, bytes: u64) {
        self.progress.read_to(bytes);
    }

    /// Whether outcomes are recorded to the state store.
    pub fn records_state(&self) -> bool {
        self.state.is_some()
    }

    /// Everything said, written and recorded about one outcome; `tally` has not counted it yet.
    pub fn outcome(&mut self, outcome: &Outcome, tally: &RunTally) -> anyhow::Result<()> {
        let kind = outcome.kind();
        if let Some(w) = outcome.work().and_then(|w| w.warning.as_deref()) {
            self.warning(w);
        }
        let error = outcome.error();
        self.say(outcome, kind, error.as_deref(), tally);
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
        Ok(())
    }

    /// A skipped record (the first few) or a failed log, on stderr.
    fn say(&mut self, outcome: &Outcome, kind: OutcomeKind, error: Option<&str>, tally: &RunTally) {
        match outcome {
            Outcome::SkippedRecord { location, .. } => {
                // This record among every skipped log so far, itself included.
                let nth = tally.stats().skipped + 1;
                if nth <= MAX_SKIPPED_SHOWN {
                    self.progress.println(&format!(
                        "skipped {location}: {}",
                        error.unwrap_or("unusable record")
                    ));
                }
                if nth == MAX_SKIPPED_SHOWN {
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
                    error.unwrap_or("unknown error")
                ));
            }
            _ => {}
        }
    }

    /// One more log counted into `tally`: the progress line moves.
    pub fn counted(&mut self, tally: &RunTally) {
        self.progress.inc();
        let stats = tally.stats();
        if stats.processed().is_multiple_of(64) && self.progress.shown() {
            self.progress.message(format!(
                "{}, {} failed",
                crate::pipeline::report::plural(
                    tally.problem_count() as u64,
                    "problem",
                    "problems"
                ),
                stats.failed
            ));
        }
    }

    /// Problems merged at the end of the run: their logs' entries in the report name the
    /// fingerprint each now stands for.
    pub fn remap(&mut self, remap: HashMap<String, String>) {
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

    /// Whether the run writes a report file (which needs the problems for its drafts).
    pub fn writes_report(&self) -> bool {
        self.report.is_some()
    }

    /// The run is over: the progress bar goes.
    pub fn end_progress(&mut self) {
        self.progress.finish();
    }

    /// Write the report file, if there is one. A dry run's drafts are built one at a time as
    /// the report is written, never all at once (they are the largest thing a problem has),
    /// from the problems in `tally`.
    pub fn finish(self, report: &Report, tally: &RunTally) -> anyhow::Result<()> {
        let Some(writer) = self.report else {
            return Ok(());
        };
        let wiki = self.wiki;
        writer.finish(report, |t| {
            if t.action != TicketAction::WouldCreate.as_str() {
                return None;
            }
            let facts = tally.facts_of(&t.fingerprint)?;
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
        })
    }
}
