//! Sources of logs. Each runs as its own task and pushes `SourceItem`s into a bounded channel,
//! so a slow pipeline slows the source down (backpressure) and no source holds all logs in memory.
//!
//! A source ends with `Ok(())` when it has nothing more, or when the pipeline hung up (a `--limit`
//! was reached, or the run was interrupted). It ends with `Err` only for a failure that makes the
//! rest of the input unreachable (a Datadog outage after the retries, an unreadable file); what it
//! sent before that is still processed and reported.
//!
//! Memory is bounded by the source, not by the input: the file source reads at most
//! `--max-line-bytes` of a line (the rest is cut), and every HTTP body is read with a cap.

pub mod datadog;
pub mod file;

use std::time::Duration;

use crate::event::LogEvent;

/// What a source sends down the pipeline.
#[derive(Debug)]
pub enum SourceItem {
    /// One log to process.
    Event(LogEvent),
    /// A record that could not become a log: counted as `skipped`, reported once, the run goes on.
    Skipped(Skipped),
    /// Something the user should know about the input (a partial Datadog result), shown once.
    /// A warning means the result may be incomplete: the checkpoint does not move past it.
    Warning(String),
    /// Something worth saying about the input that does not make the result incomplete (a log
    /// stamped outside the asked window, an input whose format was a guess), shown once.
    Notice(String),
    /// A line longer than `--max-line-bytes` was cut to that length before it was read.
    Cut(Cut),
    /// One fetch from the source finished (a Datadog page): its latency feeds the `fetch` stats.
    Fetched { latency: Duration, events: usize },
    /// How many bytes of an `--input` file the records sent so far came from: sent every so
    /// often and when the file ends, so the progress bar can count toward the file's size.
    Read { bytes: u64 },
}

/// A record that was not a usable log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it was: `path:line` (or `path:line:column` inside a JSON document).
    pub location: String,
    /// Why it was skipped.
    pub reason: String,
    /// The input itself is bad (malformed JSON, not UTF-8, a record of `--input` that is not a
    /// log): counted as unreadable, and a run with such records exits 3 (1 if nothing was read).
    /// A Datadog log without a message is skipped but is not an input error.
    pub unreadable: bool,
}

/// A line cut to `--max-line-bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Where it was: `path:line`.
    pub location: String,
    /// Its full length in bytes.
    pub length: u64,
    /// The length it was cut to.
    pub kept: u64,
}

/// The sending half every source writes to; `false` from `send` means the pipeline hung up.
pub type ItemSender = tokio::sync::mpsc::Sender<SourceItem>;
