//! The progress bar on stderr: shown only when stderr is a terminal and `--quiet` is off.
//!
//! The collector is its only writer. Without a known total (a stream of unknown length) it is a
//! spinner with counts and rate; with `--limit` it is a bar.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone)]
pub struct Progress(ProgressBar);

impl Progress {
    /// A visible bar when `show`, else one that draws nothing.
    pub fn new(show: bool, total: Option<u64>) -> Self {
        if !show {
            return Progress(ProgressBar::hidden());
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
        Progress(bar)
    }

    pub fn inc(&self) {
        self.0.inc(1);
    }

    pub fn message(&self, msg: String) {
        self.0.set_message(msg);
    }

    /// Print a line above the bar (or plainly when hidden) without garbling it.
    pub fn println(&self, line: &str) {
        if self.0.is_hidden() {
            eprintln!("{line}");
        } else {
            self.0.println(line);
        }
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}
