//! `--metrics-file`: the run's results in Prometheus text format, for node_exporter's textfile
//! collector. Written to `<path>.tmp` and renamed, so the collector never reads half a file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::pipeline::report::Report;

/// Render the metrics of one run, which ended `ended`.
pub fn render(
    report: &Report,
    exit_code: u8,
    last_success: Option<DateTime<Utc>>,
    ended: DateTime<Utc>,
) -> String {
    use std::fmt::Write as _;
    let s = &report.summary;
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "triage_logs",
        "Logs in the last run, by outcome.",
        "gauge",
        &[
            ("{outcome=\"created\"}", s.created as f64),
            ("{outcome=\"existing\"}", s.existing as f64),
            ("{outcome=\"duplicate\"}", s.duplicates as f64),
            ("{outcome=\"would_create\"}", s.would_create as f64),
            ("{outcome=\"skipped\"}", s.skipped as f64),
            ("{outcome=\"failed\"}", s.failed as f64),
        ],
    );
    metric(
        "triage_logs_fetched",
        "Records taken from the source in the last run.",
        "gauge",
        &[("", s.fetched as f64)],
    );
    metric(
        "triage_tickets",
        "Distinct tickets the last run created, matched or would create.",
        "gauge",
        &[("", s.tickets as f64)],
    );
    metric(
        "triage_comments",
        "Recurrence comments posted in the last run.",
        "gauge",
        &[("", s.commented as f64)],
    );
    metric(
        "triage_logs_given_up",
        "Failed logs no longer retried, in the last run.",
        "gauge",
        &[("", s.given_up as f64)],
    );
    metric(
        "triage_circuit_breaker_trips",
        "Times a circuit breaker opened in the last run.",
        "gauge",
        &[("", s.breaker_trips as f64)],
    );
    metric(
        "triage_input_unreadable",
        "Input records the last run could not read (any makes it exit 3).",
        "gauge",
        &[("", s.unreadable as f64)],
    );
    metric(
        "triage_llm_fallbacks",
        "Problems the llm analyzer failed on in the last run (analyzed by the rules instead).",
        "gauge",
        &[("", s.llm_fallbacks as f64)],
    );
    metric(
        "triage_run_duration_seconds",
        "Wall time of the last run.",
        "gauge",
        &[("", s.elapsed_ms as f64 / 1000.0)],
    );
    metric(
        "triage_run_exit_code",
        "Exit code of the last run.",
        "gauge",
        &[("", f64::from(exit_code))],
    );
    metric(
        "triage_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        "gauge",
        &[("", ended.timestamp() as f64)],
    );
    if let Some(t) = last_success {
        metric(
            "triage_last_success_timestamp_seconds",
            "When the last run that exited 0 ended (Unix time).",
            "gauge",
            &[("", t.timestamp() as f64)],
        );
    }
    out
}

/// Write the metrics atomically: a temporary file beside `path`, then a rename. The run ended
/// now, by `clock`.
pub fn write(
    path: &Path,
    report: &Report,
    exit_code: u8,
    last_success: Option<DateTime<Utc>>,
    clock: &crate::clock::Clock,
) -> anyhow::Result<()> {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let text = render(report, exit_code, last_success, clock.now());
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing --metrics-file {}", path.display()))
}
