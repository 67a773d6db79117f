//! The collector: the one place outcomes arrive, owned by the run (the loop while it runs).
//!
//! In: every `Outcome` (and the source's warnings, notices, cut lines and page timings), in
//! completion order, from the pipeline's single consuming loop, so nothing here needs a lock.
//! Out: at the end the `Report`. It holds two parts and lets each do one thing: the
//! [`OutcomeWriter`] is told each outcome first and does everything it causes outside (the
//! state record, the report file's line, the lines and bar on stderr); the [`RunTally`] then
//! counts it (every number, and the problems). The report's content is the tally's; writing
//! it (in Jira's markup for a dry run's drafts) is the writer's.

use std::time::Instant;

use crate::config::Config;
use crate::grouping::TemplateMiner;
use crate::outcome::Outcome;
use crate::pipeline::outcome_writer::OutcomeWriter;
use crate::pipeline::progress::Progress;
use crate::pipeline::report::{LimiterWait, Report};
use crate::pipeline::tally::{RunEnd, RunShape, RunTally};
use crate::state::StateHandle;
use crate::ticket::recurrence::{PhaseResult, TicketWork};

pub struct Collector {
    tally: RunTally,
    writer: OutcomeWriter,
    started: Instant,
}

impl Collector {
    pub fn new(
        config: &Config,
        progress: Progress,
        state: Option<StateHandle>,
    ) -> anyhow::Result<Self> {
        Ok(Collector {
            tally: RunTally::new(RunShape::of(config)),
            writer: OutcomeWriter::new(config, progress, state)?,
            started: Instant::now(),
        })
    }

    /// A record was taken from the source.
    pub fn fetched(&mut self) {
        self.tally.fetched();
    }

    pub fn fetch_latency(&mut self, latency: std::time::Duration) {
        self.tally.fetch_latency(latency);
    }

    /// A warning about the input: shown once, counted every time.
    pub fn warning(&mut self, message: String) {
        self.writer.warning(&message);
        self.tally.warning();
    }

    /// Something about the input worth saying that is not a warning (the result is complete):
    /// shown once, not counted.
    pub fn notice(&mut self, message: String) {
        self.writer.notice(message);
    }

    /// A source record that is an input error (it is also added as a skipped outcome).
    pub fn unreadable(&mut self, skipped: &crate::source::Skipped) {
        self.tally.unreadable(skipped);
    }

    /// A line was cut to `--max-line-bytes`: said on stderr (the first few), counted always.
    pub fn cut(&mut self, cut: &crate::source::Cut) {
        let nth = self.tally.cut();
        self.writer.cut(cut, nth);
    }

    /// How many problems the `llm` analyzer fell back to the rules on.
    pub fn llm_fallbacks(&mut self, count: u64) {
        self.tally.llm_fallbacks(count);
    }

    /// How long calls waited on each service's rate limit; the summary names those that
    /// bounded the run.
    pub fn limiter_waits(&mut self, waits: Vec<LimiterWait>) {
        self.tally.limiter_waits(waits);
    }

    /// One log's outcome: written (state, report line, stderr), then counted. Counted even when
    /// writing it failed (the error is the caller's to report).
    pub fn add(&mut self, outcome: Outcome) -> anyhow::Result<()> {
        let written = self.writer.outcome(&outcome, &self.tally);
        self.tally.add(outcome);
        self.writer.counted(&self.tally);
        written
    }

    /// The records taken so far came from this many bytes of the input file: the progress
    /// bar moves toward the file's size.
    pub fn input_read(&mut self, bytes: u64) {
        self.writer.input_read(bytes);
    }

    /// Whether each log's occurrence is counted into its ticket's pending comment count as the
    /// log is recorded (a checkpointed source with a writable state).
    pub fn counts_occurrences(&self) -> bool {
        self.writer.records_state()
    }

    /// Logs that failed in `--max-retries` runs and are no longer retried: reported, not
    /// dropped silently.
    pub fn given_up(&mut self, ids: &[String], runs: u32) {
        self.writer.given_up(ids, runs);
        self.tally.given_up(ids.len() as u64);
    }

    /// Apply what the template miner knows at the end of the run: problems whose templates
    /// merged become one (under the surviving fingerprint, in `tickets` and in every log entry
    /// of the report), and each problem shows its final template.
    pub fn regroup(&mut self, miner: &TemplateMiner) {
        let remap = self.tally.regroup(miner);
        self.writer.remap(remap);
    }

    /// Commit every outcome recorded so far to the state store.
    pub async fn flush_state(&mut self) -> anyhow::Result<()> {
        self.writer.flush_state().await
    }

    /// The tickets the end of the run tells Jira about: those created in this run, and those
    /// that existed before it or were reopened.
    pub fn ticket_work(&self) -> (Vec<TicketWork>, Vec<TicketWork>) {
        self.tally.ticket_work()
    }

    /// The labels each ticket this run created carried in its create, by ticket key.
    pub fn created_labels(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.tally.created_labels()
    }

    /// Add up what the end-of-run ticket phase did, and say its warnings.
    pub fn ticket_phase(&mut self, phase: PhaseResult) {
        for w in &phase.warnings {
            self.writer.warning(w);
        }
        self.tally.ticket_phase(phase);
    }

    /// Close the run: build the summary and tickets, and write the report file.
    pub fn finish(
        self,
        interrupted: bool,
        error: Option<String>,
        breaker_trips: u64,
    ) -> anyhow::Result<Report> {
        let Collector {
            mut tally,
            mut writer,
            started,
        } = self;
        writer.end_progress();
        let end = RunEnd {
            elapsed: started.elapsed(),
            interrupted,
            error,
            breaker_trips,
        };
        let report = tally.report(end, writer.writes_report());
        writer.finish(&report, &tally)?;
        Ok(report)
    }
}
