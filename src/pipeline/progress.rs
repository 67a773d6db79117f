//! The progress bar on stderr: shown only when stderr is a terminal and `--quiet` is off; and
//! the plain lines written to stderr.
//!
//! The outcome writer is the bar's only writer. Without a known total (standard input,
//! Datadog) it is a spinner with the count and rate of logs; with `--limit` it is a bar of logs
//! toward the limit, and for an `--input` file a bar of the bytes read toward the file's size
//! (the file source says how far it has read), each with the percentage and an ETA. Rates are
//! whole logs per second (`311/s`).
//!
//! When stderr is not a terminal (cron, CI, a file), every line written here starts with the
//! UTC time in RFC 3339, like the log lines, so a log file shows when each run happened.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::config::{InputPath, SourceConfig};

/// Whether stderr lines get a timestamp (stderr is not a terminal), decided once per process.
fn stamped() -> bool {
    static STAMPED: OnceLock<bool> = OnceLock::new();
    *STAMPED.get_or_init(|| !std::io::stderr().is_terminal())
}

/// The current UTC time as RFC 3339 with milliseconds: `2026-11-23T09:00:00.123Z`. By the
/// system clock, whatever clock a run reads: a line says when it was written, and the process's
/// log lines (the `tracing` timer) have no run to ask.
pub fn utc_now_rfc3339() -> String {
    crate::clock::Clock::system()
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

/// What the progress bar counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// A stream of unknown length (standard input, Datadog): a spinner with the count and rate.
    Unknown,
    /// `--limit N`: a bar of logs toward N.
    Logs(u64),
    /// A file of this many bytes: a bar of the bytes read toward its size, beside the logs
    /// counted (no pass over the file beforehand to count its records).
    Bytes(u64),
}

impl Total {
    /// `--limit` first (the run ends there, whatever the input); else the size of the input
    /// file, when it is a regular file that is not empty; else unknown.
    pub fn of(limit: Option<u64>, input_bytes: Option<u64>) -> Total {
        match (limit, input_bytes) {
            (Some(n), _) => Total::Logs(n),
            (None, Some(bytes)) if bytes > 0 => Total::Bytes(bytes),
            _ => Total::Unknown,
        }
    }
}

/// The size of the `--input` file: `None` for standard input, for a path that is not a
/// regular file (a pipe, a device) and for Datadog.
pub fn input_bytes(source: &SourceConfig) -> Option<u64> {
    match source {
        SourceConfig::File(InputPath::Path(path)) => std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len()),
        SourceConfig::File(InputPath::Stdin) | SourceConfig::Datadog(_) => None,
    }
}

/// A rate for the progress line, in whole logs per second: `311/s`, `<1/s` below one, `0/s`
/// before there is one.
pub fn per_second(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        "0/s".to_string()
    } else if rate < 1.0 {
        "<1/s".to_string()
    } else {
        format!("{rate:.0}/s")
    }
}

/// The spinner's line: logs so far, their rate, the time taken, and the outcome writer's message.
const SPINNER: &str = "{spinner} {pos} logs {rate} [{elapsed}] {msg}";
/// `--limit`'s bar: logs toward the limit.
const LOGS_BAR: &str = "{spinner} [{bar:30}] {pos}/{len} logs {percent}% {rate} ETA {eta} {msg}";
/// A file's bar: bytes read toward its size; the logs are counted beside it.
const BYTES_BAR: &str =
    "{spinner} [{bar:30}] {percent}% of {total_bytes} {logs} logs {rate} ETA {eta} {msg}";

/// The style of `template` with the `{rate}` and `{logs}` keys. `logs` counts the logs when
/// the bar's position counts something else (bytes); else the position is the logs.
fn style(template: &str, logs: Option<Arc<AtomicU64>>) -> ProgressStyle {
    let base = match ProgressStyle::with_template(template) {
        Ok(style) => style.progress_chars("=> "),
        // The templates are constants a test parses: this is never reached.
        Err(_) => ProgressStyle::default_spinner(),
    };
    match logs {
        None => base.with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = w.write_str(&per_second(state.per_sec()));
        }),
        Some(logs) => {
            let counted = logs.clone();
            base.with_key("logs", move |_: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{}", counted.load(Ordering::Relaxed));
            })
            .with_key(
                "rate",
                move |state: &ProgressState, w: &mut dyn fmt::Write| {
                    let seconds = state.elapsed().as_secs_f64();
                    let rate = if seconds > 0.0 {
                        logs.load(Ordering::Relaxed) as f64 / seconds
                    } else {
                        0.0
                    };
                    let _ = w.write_str(&per_second(rate));
                },
            )
        }
    }
}

/// `None` when hidden: then counting a log costs nothing (a hidden bar still takes its lock
/// and reads the clock on every update).
#[derive(Debug, Clone)]
pub struct Progress(Option<Bar>);

#[derive(Debug, Clone)]
struct Bar {
    bar: ProgressBar,
    /// Logs counted, when the bar's position counts the bytes of the input file.
    logs: Option<Arc<AtomicU64>>,
}

impl Progress {
    /// A visible bar when `show`, else one that draws nothing.
    pub fn new(show: bool, total: Total) -> Self {
        if !show {
            return Progress(None);
        }
        let (len, template, logs) = match total {
            Total::Unknown => (None, SPINNER, None),
            Total::Logs(n) => (Some(n), LOGS_BAR, None),
            Total::Bytes(n) => (Some(n), BYTES_BAR, Some(Arc::new(AtomicU64::new(0)))),
        };
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr())
            .with_style(style(template, logs.clone()));
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(Bar { bar, logs }))
    }

    /// Whether the bar is drawn (else there is no point in building its message).
    pub fn shown(&self) -> bool {
        self.0.as_ref().is_some_and(|b| !b.bar.is_hidden())
    }

    pub fn inc(&self) {
        match &self.0 {
            Some(Bar {
                logs: Some(logs), ..
            }) => {
                logs.fetch_add(1, Ordering::Relaxed);
            }
            Some(Bar { bar, logs: None }) => bar.inc(1),
            None => {}
        }
    }

    /// The logs so far came from this many bytes of the input file (a bar of bytes only).
    pub fn read_to(&self, bytes: u64) {
        if let Some(Bar { bar, logs: Some(_) }) = &self.0 {
            bar.set_position(bar.length().map_or(bytes, |len| bytes.min(len)));
        }
    }

    pub fn message(&self, msg: String) {
        if let Some(b) = &self.0 {
            b.bar.set_message(msg);
        }
    }

    /// Print a line above the bar (or plainly when hidden) without garbling it.
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(b) if !b.bar.is_hidden() => b.bar.println(line),
            _ => stderr_line(line),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_logs_per_second() {
        assert_eq!(per_second(311.2164), "311/s");
        assert_eq!(per_second(12345.6), "12346/s");
        assert_eq!(per_second(1.0), "1/s");
        assert_eq!(per_second(0.4), "<1/s");
        assert_eq!(per_second(0.0), "0/s");
        assert_eq!(per_second(f64::NAN), "0/s");
        assert_eq!(per_second(f64::INFINITY), "0/s");
    }

    #[test]
    fn the_total_is_the_limit_else_the_file_size_else_unknown() {
        assert_eq!(Total::of(Some(25), Some(4096)), Total::Logs(25));
        assert_eq!(Total::of(Some(25), None), Total::Logs(25));
        assert_eq!(Total::of(None, Some(4096)), Total::Bytes(4096));
        assert_eq!(Total::of(None, Some(0)), Total::Unknown);
        assert_eq!(Total::of(None, None), Total::Unknown);
    }

    #[test]
    fn only_a_regular_file_has_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.jsonl");
        std::fs::write(&path, "{}\n{}\n").unwrap();
        let file = |p: &std::path::Path| SourceConfig::File(InputPath::Path(p.to_path_buf()));
        assert_eq!(input_bytes(&file(&path)), Some(6));
        assert_eq!(input_bytes(&file(dir.path())), None, "a directory");
        assert_eq!(input_bytes(&file(&dir.path().join("gone"))), None);
        assert_eq!(input_bytes(&SourceConfig::File(InputPath::Stdin)), None);
        #[cfg(unix)]
        assert_eq!(
            input_bytes(&file(std::path::Path::new("/dev/null"))),
            None,
            "a device"
        );
    }

    /// A terminal in memory: what the bar draws, line by line.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<std::sync::Mutex<Vec<String>>>);

    impl Screen {
        /// The last line drawn (the padding written after it is not a line).
        fn last(&self) -> String {
            let written = self.0.lock().unwrap();
            let line = written.iter().rev().find(|s| !s.trim().is_empty());
            line.map(|s| s.trim_end().to_string()).unwrap_or_default()
        }
        fn push(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_string());
            Ok(())
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A bar of `total` drawn on a [`Screen`], as [`Progress::new`] builds it.
    fn drawn(total: Total) -> (Progress, ProgressBar, Screen) {
        let screen = Screen::default();
        let (len, template, logs) = match total {
            Total::Unknown => (None, SPINNER, None),
            Total::Logs(n) => (Some(n), LOGS_BAR, None),
            Total::Bytes(n) => (Some(n), BYTES_BAR, Some(Arc::new(AtomicU64::new(0)))),
        };
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let bar =
            ProgressBar::with_draw_target(len, target).with_style(style(template, logs.clone()));
        (
            Progress(Some(Bar {
                bar: bar.clone(),
                logs,
            })),
            bar,
            screen,
        )
    }

    /// The word of `line` that ends with `/s`.
    fn rate_in(line: &str) -> String {
        line.split_whitespace()
            .find(|w| w.ends_with("/s"))
            .unwrap_or_default()
            .to_string()
    }

    fn whole(rate: &str) -> bool {
        rate == "<1/s"
            || rate
                .strip_suffix("/s")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    #[test]
    fn every_template_parses() {
        for template in [SPINNER, LOGS_BAR, BYTES_BAR] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn a_file_bar_counts_bytes_and_shows_the_logs_with_a_whole_rate() {
        let (progress, bar, screen) = drawn(Total::Bytes(1000));
        for _ in 0..7 {
            progress.inc();
        }
        progress.read_to(500);
        assert_eq!(bar.position(), 500);
        bar.tick();
        let line = screen.last();
        assert!(line.contains("50% of 1000 B 7 logs "), "{line}");
        assert!(whole(&rate_in(&line)), "{line}");
        assert!(line.contains(" ETA "), "{line}");
        progress.read_to(5000);
        assert_eq!(bar.position(), 1000, "never past the file's size");
    }

    #[test]
    fn a_limit_bar_counts_logs_toward_the_limit_with_a_whole_rate() {
        let (progress, bar, screen) = drawn(Total::Logs(25));
        for _ in 0..10 {
            progress.inc();
        }
        progress.read_to(999);
        assert_eq!(bar.position(), 10, "bytes do not move a bar of logs");
        bar.tick();
        let line = screen.last();
        assert!(line.contains(" 10/25 logs 40% "), "{line}");
        assert!(whole(&rate_in(&line)), "{line}");
    }

    #[test]
    fn a_spinner_counts_logs_with_a_whole_rate() {
        let (progress, _, screen) = drawn(Total::Unknown);
        for _ in 0..3 {
            progress.inc();
        }
        progress.message("2 problems, 0 failed".into());
        let line = screen.last();
        assert!(line.contains(" 3 logs "), "{line}");
        assert!(whole(&rate_in(&line)), "{line}");
        assert!(line.ends_with("2 problems, 0 failed"), "{line}");
    }

    #[test]
    fn a_hidden_bar_counts_nothing() {
        let hidden = Progress::new(false, Total::Bytes(1000));
        hidden.inc();
        hidden.read_to(10);
        assert!(!hidden.shown());
    }
}
