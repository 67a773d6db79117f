//! The progress bar on stderr: shown only when stderr is a terminal and `--quiet` is off; and
//! the plain lines written to stderr.
//!
//! The collector is the bar's only writer. Without a known total (a stream of unknown length) it
//! is a spinner with counts and rate; with `--limit` it is a bar. When stderr is not a terminal
//! (cron, CI, a file), every line written here starts with the UTC time in RFC 3339, like the
//! log lines, so a log file shows when each run happened.

use std::time::Duration;

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether stderr lines get a timestamp (stderr is not a terminal), decided once per process.
fn stamped() -> bool {
    static STAMPED: OnceLock<bool> = OnceLock::new();
    *STAMPED.get_or_init(|| !std::io::stderr().is_terminal())
}

/// The current UTC time as RFC 3339 with milliseconds: `2026-11-23T09:00:00.123Z`.
pub fn utc_now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Write one line to stderr, stamped with the time when stderr is not a terminal.
pub fn stderr_line(line: &str) {
    if stamped() {
        eprintln!("{} {line}", utc_now_rfc3339());
    } else {
        eprintln!("{line}");
    }
}

/// The log lines' timestamp (`tracing` timer): UTC, RFC 3339, milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct UtcRfc3339;

impl tracing_subscriber::fmt::time::FormatTime for UtcRfc3339 {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&utc_now_rfc3339())
    }
}

/// `None` when hidden: then counting a log costs nothing (a hidden bar still takes its lock
/// and reads the clock on every update).
#[derive(Debug, Clone)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A visible bar when `show`, else one that draws nothing.
    pub fn new(show: bool, total: Option<u64>) -> Self {
        if !show {
            return Progress(None);
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{spinner} [{bar:30}] {pos}/{len} logs {per_sec} {msg}",
                    )
                    .expect("static progress template is valid")
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {pos} logs {per_sec} [{elapsed}] {msg}")
                    .expect("static progress template is valid"),
            ),
        };
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(bar))
    }

    /// Whether the bar is drawn (else there is no point in building its message).
    pub fn shown(&self) -> bool {
        self.0.as_ref().is_some_and(|b| !b.is_hidden())
    }

    pub fn inc(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    pub fn message(&self, msg: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(msg);
        }
    }

    /// Print a line above the bar (or plainly when hidden) without garbling it.
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => stderr_line(line),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
