//! The run's report: the `summary` object, the per-log entries and the per-ticket entries, in
//! the format DESIGN.md fixes, plus the short text table a person reads.
//!
//! The `logs` part is streamed: each entry is appended to `<report>.partial` as its log
//! finishes, so memory does not grow with the number of logs. At the end the whole report is
//! written to `<report>.tmp` (summary, logs copied from the partial file, tickets) and renamed
//! over `<report>`, so a reader never sees half a report.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::pipeline::stats::Percentiles;

/// The version of the JSON this program prints (`--output json`) and writes (`--report`): it
/// changes only when a field is removed or changes meaning; new fields may appear at any time.
/// The schemas are docs/summary.schema.json and docs/report.schema.json.
pub const SCHEMA_VERSION: u32 = 1;

/// A summary (or any object) with `"schema_version"` first, as it is printed and written.
#[derive(Debug, Clone, Copy)]
pub struct Versioned<'a, T>(pub &'a T);

impl<T: Serialize> Serialize for Versioned<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Inner<'b, U: Serialize> {
            schema_version: u32,
            #[serde(flatten)]
            value: &'b U,
        }
        Inner {
            schema_version: SCHEMA_VERSION,
            value: self.0,
        }
        .serialize(s)
    }
}

/// The `summary` object (also what `--output json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `async` or `sequential`.
    pub mode: &'static str,
    pub workers: usize,
    pub dry_run: bool,
    pub fetched: u64,
    pub processed: u64,
    pub created: u64,
    pub commented: u64,
    /// Tickets created in this run that its end brought up to date (whole-run figures).
    pub updated: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Distinct tickets this run created, matched, or would create.
    pub tickets: u64,
    pub elapsed_ms: u64,
    pub stages: Stages,
    pub existing: u64,
    pub would_create: u64,
    /// Distinct problems (fingerprints) seen.
    pub problems: u64,
    pub warnings: u64,
    pub logs_per_second: f64,
    /// The run was interrupted (Ctrl-C / SIGTERM) before the source was exhausted.
    pub interrupted: bool,
    /// Why the run stopped early, when a fatal error ended it (the logs before it were processed).
    pub error: Option<String>,
    /// Logs an overlapping window fetched again that an earlier run had already processed
    /// (counted in `skipped` too).
    pub already_processed: u64,
    /// Failed logs no longer retried after `--max-retries` runs.
    pub given_up: u64,
    /// Times a service's circuit breaker opened.
    pub breaker_trips: u64,
    /// Input records that could not be read (malformed JSON, not UTF-8, a record of `--input`
    /// that is not a log); counted in `skipped` too. Any makes the run exit 3.
    pub unreadable: u64,
    /// Input lines longer than `--max-line-bytes`, cut to that length before they were read.
    pub lines_cut: u64,
    /// Problems the `llm` analyzer failed on, analyzed by the rules instead.
    pub llm_fallbacks: u64,
    /// Services whose local rate limit bounded the run: calls waited on it for at least a
    /// tenth of the run (and 100 ms). Empty when no limit slowed the run down.
    pub rate_limited: Vec<LimiterWait>,
}

pub use crate::http::LimiterWait;

#[derive(Debug, Clone, Serialize)]
pub struct Stages {
    pub fetch: Percentiles,
    pub analyze: Percentiles,
    pub jira: Percentiles,
}

/// One entry of `logs`.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry<'a> {
    pub id: &'a str,
    pub fingerprint: Option<&'a str>,
    pub outcome: &'static str,
    pub ticket: Option<&'a str>,
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<crate::outcome::Stage>,
}

/// One entry of `tickets`: a distinct problem and what happened to its ticket.
#[derive(Debug, Clone, Serialize)]
pub struct TicketEntry {
    pub fingerprint: String,
    /// The problem's message template (variable parts as `<*>`), as the miner learned it.
    pub template: String,
    pub key: Option<String>,
    /// The ticket's page in Jira (`<JIRA_URL>/browse/<key>`); absent without a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub action: &'static str,
    pub summary: String,
    pub severity: &'static str,
    pub occurrences: u64,
    pub category: &'static str,
    pub service: Option<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub hosts: Vec<String>,
    pub labels: Vec<String>,
    /// The config file's `[[route]]` the problem took; absent when none matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Dry run: the exact ticket the Jira sink would send (summary, labels, ADF description).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<serde_json::Value>,
}

/// What `run` returns.
#[derive(Debug, Clone)]
pub struct Report {
    pub summary: Summary,
    pub tickets: Vec<TicketEntry>,
    /// Problems a route muted (no ticket; their logs are skipped). Not in the report file.
    pub muted: Vec<TicketEntry>,
}

/// Appends log entries to the partial file, then assembles the final report.
#[derive(Debug)]
pub struct ReportWriter {
    path: PathBuf,
    partial: PathBuf,
    logs: BufWriter<File>,
    entries: u64,
    /// Fingerprints merged into another during the run: their log entries show the survivor.
    remap: std::collections::HashMap<String, String>,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

impl ReportWriter {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let partial = sibling(path, ".partial");
        let file = crate::private::create_file(&partial)
            .with_context(|| format!("cannot write the report next to {}", path.display()))?;
        Ok(ReportWriter {
            path: path.to_path_buf(),
            partial,
            logs: BufWriter::new(file),
            entries: 0,
            remap: std::collections::HashMap::new(),
        })
    }

    pub fn log(&mut self, entry: &LogEntry<'_>) -> anyhow::Result<()> {
        if self.entries > 0 {
            self.logs.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.logs, entry)?;
        self.entries += 1;
        Ok(())
    }

    /// Show these fingerprints as the ones they were merged into, in every log entry.
    pub fn remap(&mut self, remap: std::collections::HashMap<String, String>) {
        self.remap = remap;
    }
}

/// Copy the streamed log entries (one per line), rewriting merged fingerprints.
fn copy_logs(
    partial: &Path,
    remap: &std::collections::HashMap<String, String>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    {
        let partial = File::open(partial)?;
        if remap.is_empty() {
            std::io::copy(&mut std::io::BufReader::new(partial), out)?;
            return Ok(());
        }
        use std::io::BufRead;
        for (i, line) in std::io::BufReader::new(partial).lines().enumerate() {
            let line = line?;
            let entry = line.strip_suffix(',').unwrap_or(&line);
            let mut value: serde_json::Value = serde_json::from_str(entry)?;
            if let Some(into) = value["fingerprint"].as_str().and_then(|fp| remap.get(fp)) {
                value["fingerprint"] = serde_json::Value::String(into.clone());
            }
            if i > 0 {
                out.write_all(b",\n")?;
            }
            serde_json::to_writer(&mut *out, &value)?;
        }
        Ok(())
    }
}

impl ReportWriter {
    /// Write `{"summary":..,"logs":[..],"tickets":[..]}` and move it into place. `draft` gives
    /// a ticket's dry-run draft, built as its entry is written (so drafts are never all in
    /// memory at once); an entry that already holds one keeps it.
    pub fn finish(
        mut self,
        report: &Report,
        draft: impl Fn(&TicketEntry) -> Option<serde_json::Value>,
    ) -> anyhow::Result<()> {
        self.logs.flush()?;
        drop(self.logs);
        let tmp = sibling(&self.path, ".tmp");
        let write = || -> anyhow::Result<()> {
            let mut out = BufWriter::new(crate::private::create_file(&tmp)?);
            write!(out, "{{\"schema_version\":{SCHEMA_VERSION},\n\"summary\":")?;
            serde_json::to_writer_pretty(&mut out, &Versioned(&report.summary))?;
            out.write_all(b",\n\"logs\":[\n")?;
            copy_logs(&self.partial, &self.remap, &mut out)?;
            out.write_all(b"\n],\n\"tickets\":[")?;
            for (i, ticket) in report.tickets.iter().enumerate() {
                out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
                match (&ticket.draft, draft(ticket)) {
                    (None, Some(d)) => {
                        let mut entry = ticket.clone();
                        entry.draft = Some(d);
                        serde_json::to_writer_pretty(&mut out, &entry)?;
                    }
                    _ => serde_json::to_writer_pretty(&mut out, ticket)?,
                }
            }
            out.write_all(b"\n]}\n")?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(())
        };
        write().with_context(|| format!("writing the report {}", self.path.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("moving the report into {}", self.path.display()))?;
        let _ = std::fs::remove_file(&self.partial);
        Ok(())
    }
}

/// `1 problem`, `0 problems`, `2 problems`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A rate for people: whole numbers from 10 up, one decimal below (`0.4`, not `0`).
pub fn rate(per_second: f64) -> String {
    if per_second >= 10.0 || per_second == 0.0 {
        format!("{per_second:.0}")
    } else {
        format!("{per_second:.1}")
    }
}

/// The text summary: a table of tickets, then the totals.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    ticket_table(report, &mut out);
    out.push('\n');
    totals(&report.summary, &mut out);
    notes(&report.summary, &mut out);
    out
}

/// What stands in place of the table when there are no problems to list.
fn no_problems(report: &Report) -> Option<&'static str> {
    let s = &report.summary;
    if !report.tickets.is_empty() {
        None
    } else if s.unreadable > 0 && s.unreadable == s.fetched {
        Some("No log could be read.")
    } else {
        Some("No problems found.")
    }
}

/// The problems, one line each, or what stood in their way.
fn ticket_table(report: &Report, out: &mut String) {
    use std::fmt::Write as _;
    if let Some(none) = no_problems(report) {
        out.push_str(none);
        out.push('\n');
    } else {
        let _ = writeln!(
            out,
            "{:<12}  {:<8}  {:>6}  {:<10}  TITLE",
            "ACTION", "SEVERITY", "LOGS", "TICKET"
        );
        for t in &report.tickets {
            let title: String = if t.summary.chars().count() > 90 {
                t.summary
                    .chars()
                    .take(89)
                    .chain(std::iter::once('…'))
                    .collect()
            } else {
                t.summary.clone()
            };
            let _ = writeln!(
                out,
                "{:<12}  {:<8}  {:>6}  {:<10}  {}",
                t.action,
                t.severity,
                t.occurrences,
                t.key.as_deref().unwrap_or("-"),
                title
            );
        }
    }
}

/// `300 logs: 0 created, 0 existing, 16 would create, 284 duplicates, 0 commented, 0 skipped,
/// 0 failed`: the logs per outcome, the first line of the totals.
fn counts_line(s: &Summary) -> String {
    format!(
        "{}: {} created, {} existing, {} would create, {}, {} commented, {} skipped, {} failed",
        plural(s.processed, "log", "logs"),
        s.created,
        s.existing,
        s.would_create,
        plural(s.duplicates, "duplicate", "duplicates"),
        s.commented,
        s.skipped,
        s.failed
    )
}

/// `16 problems, 16 tickets (dry run: nothing written to Jira) in 0.10 s (3087 logs/s, async,
/// 10 workers)`: the run's size and time, the second line of the totals.
fn size_line(s: &Summary) -> String {
    let mode = if s.mode == "async" {
        format!("async, {}", plural(s.workers as u64, "worker", "workers"))
    } else {
        "sequential".to_string()
    };
    format!(
        "{}, {}{} in {:.2} s ({} logs/s, {mode})",
        plural(s.problems, "problem", "problems"),
        plural(s.tickets, "ticket", "tickets"),
        if s.dry_run {
            " (dry run: nothing written to Jira)"
        } else {
            ""
        },
        s.elapsed_ms as f64 / 1000.0,
        rate(s.logs_per_second)
    )
}

/// The counts, the run's size and time, and the stage latencies.
fn totals(s: &Summary, out: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "{}", counts_line(s));
    let _ = writeln!(out, "{}", size_line(s));
    let stage = |name: &str, p: &Percentiles| match (p.p50_ms, p.p95_ms) {
        (Some(a), Some(b)) => format!("{name} {a:.2}/{b:.2}"),
        _ => format!("{name} -"),
    };
    let _ = writeln!(
        out,
        "latency p50/p95 ms: {}, {}, {}",
        stage("fetch", &s.stages.fetch),
        stage("analyze", &s.stages.analyze),
        stage("jira", &s.stages.jira)
    );
}

/// What the reader should know beyond the counts: skipped, given up, slowed down, cut,
/// interrupted or stopped.
fn notes(s: &Summary, out: &mut String) {
    use std::fmt::Write as _;
    if s.already_processed > 0 {
        let _ = writeln!(
            out,
            "{} already processed by an earlier run and skipped",
            plural(s.already_processed, "log was", "logs were")
        );
    }
    if s.given_up > 0 {
        let _ = writeln!(
            out,
            "{} given up after too many runs (listed on stderr)",
            plural(s.given_up, "failed log was", "failed logs were")
        );
    }
    for w in &s.rate_limited {
        let _ = writeln!(
            out,
            "waited {:.1} s for the {} limit of {}/s; raise --rate-limit if your {} allows more",
            w.waited_ms as f64 / 1000.0,
            w.service,
            w.limit,
            w.service
        );
    }
    if s.breaker_trips > 0 {
        let _ = writeln!(
            out,
            "Circuit breaker opened {}: calls to a failing service were paused; the affected logs will be retried next run",
            plural(s.breaker_trips, "time", "times")
        );
    }
    if s.unreadable > 0 {
        let _ = writeln!(
            out,
            "{} not be read (listed on stderr and in --report)",
            plural(s.unreadable, "input record could", "input records could")
        );
    }
    if s.lines_cut > 0 {
        let _ = writeln!(
            out,
            "{} longer than --max-line-bytes {} cut to that length",
            plural(s.lines_cut, "input line", "input lines"),
            if s.lines_cut == 1 { "was" } else { "were" }
        );
    }
    if s.llm_fallbacks > 0 {
        let _ = writeln!(
            out,
            "{} back to the rules analyzer (the llm analyzer failed; the reason is on stderr)",
            plural(s.llm_fallbacks, "analysis fell", "analyses fell")
        );
    }
    if s.interrupted {
        out.push_str("Interrupted: logs in flight were finished; the rest were not taken.\n");
    }
    if let Some(e) = &s.error {
        let _ = writeln!(out, "Stopped early: {e}");
    }
}

/// The run as GitHub-flavoured Markdown, for a CI job's summary page
/// (`triage --output markdown >> "$GITHUB_STEP_SUMMARY"`): a heading, the counts and the run's
/// size (the text summary's first two lines), one table row per problem (action, severity,
/// logs, title, and the ticket as a link to its page in Jira), then the notes the text summary
/// ends with (interrupted, stopped early, ...) as a list.
///
/// Every cell and note is escaped ([`markdown_text`]): a title cannot add a column, end the
/// row, or bring a link, an image or HTML into the page.
pub fn render_markdown(report: &Report) -> String {
    use std::fmt::Write as _;
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## triage: {} in {}{}\n",
        plural(s.problems, "problem", "problems"),
        plural(s.processed, "log", "logs"),
        if s.dry_run { " (dry run)" } else { "" }
    );
    let _ = writeln!(out, "{}\n", markdown_text(&counts_line(s)));
    let _ = writeln!(out, "{}\n", markdown_text(&size_line(s)));
    if let Some(none) = no_problems(report) {
        let _ = writeln!(out, "{none}");
    } else {
        out.push_str("| Action | Severity | Logs | Title | Ticket |\n");
        out.push_str("| --- | --- | ---: | --- | --- |\n");
        for t in &report.tickets {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                markdown_text(t.action),
                markdown_text(t.severity),
                t.occurrences,
                markdown_text(&t.summary),
                markdown_ticket(t)
            );
        }
    }
    let mut notes_text = String::new();
    notes(s, &mut notes_text);
    if !notes_text.is_empty() {
        out.push('\n');
        for line in notes_text.lines() {
            let _ = writeln!(out, "- {}", markdown_text(line));
        }
    }
    out
}

/// A ticket's cell: its key as a link to its page, the key alone without a page, `—` without
/// a key (a dry run's new problem).
fn markdown_ticket(t: &TicketEntry) -> String {
    match (&t.key, &t.url) {
        (Some(key), Some(url)) => format!("[{}]({})", markdown_text(key), link_destination(url)),
        (Some(key), None) => markdown_text(key),
        (None, _) => "—".to_string(),
    }
}

/// Text as one line of Markdown that reads as itself: line breaks and other control
/// characters become spaces (a table row is one line), and every character Markdown could
/// read as syntax is escaped with a backslash: `|` (a new column), `[ ] < >` (links, images,
/// HTML, autolinks), `` ` * _ ~ $ `` (code, emphasis, strikethrough, maths), `&` (entities),
/// `\` itself, and `# - +` at the start (a heading or a list). An `_` inside a word
/// (`would_create`) cannot start emphasis and is left as it is.
pub fn markdown_text(text: &str) -> String {
    let chars: Vec<char> = text.trim().chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let inside_word = |i: usize| {
            i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
        };
        let escape = match c {
            '\\' | '|' | '[' | ']' | '<' | '>' | '`' | '*' | '~' | '$' | '&' => true,
            '_' => !inside_word(i),
            '#' | '-' | '+' => i == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// A URL as a Markdown link destination: the characters that could end the link or the table
/// row (spaces, brackets, `|`, quotes, backslashes, controls) are percent-encoded.
fn link_destination(url: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        if c.is_ascii_graphic() && !matches!(c, '(' | ')' | '<' | '>' | '|' | '"' | '\\' | '`') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// The page of ticket `key` in the Jira at `base_url` (no trailing slash): `<base>/browse/<key>`,
/// the key percent-encoded as one path segment.
pub fn browse_url(base_url: &str, key: &str) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{base_url}/browse/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_summary() -> Summary {
        let none = Percentiles {
            count: None,
            p50_ms: None,
            p95_ms: None,
        };
        Summary {
            mode: "sequential",
            workers: 1,
            dry_run: true,
            fetched: 2,
            processed: 2,
            created: 0,
            updated: 0,
            commented: 0,
            duplicates: 1,
            failed: 0,
            skipped: 0,
            tickets: 1,
            elapsed_ms: 5,
            stages: Stages {
                fetch: none,
                analyze: none,
                jira: none,
            },
            existing: 0,
            would_create: 1,
            problems: 1,
            warnings: 0,
            logs_per_second: 400.0,
            interrupted: false,
            error: None,
            already_processed: 0,
            given_up: 0,
            breaker_trips: 0,
            unreadable: 0,
            lines_cut: 0,
            llm_fallbacks: 0,
            rate_limited: Vec::new(),
        }
    }

    #[test]
    fn report_file_holds_every_log_once_and_is_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut w = ReportWriter::create(&path).unwrap();
        for id in ["a", "b"] {
            w.log(&LogEntry {
                id,
                fingerprint: Some("f"),
                outcome: "duplicate",
                ticket: None,
                error: None,
                stage: None,
            })
            .unwrap();
        }
        let report = Report {
            summary: empty_summary(),
            tickets: vec![],
            muted: vec![],
        };
        w.finish(&report, |_| None).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["logs"].as_array().unwrap().len(), 2);
        assert_eq!(v["summary"]["processed"], 2);
        assert_eq!(v["summary"]["stages"]["analyze"], serde_json::json!({}));
        assert!(!dir.path().join("r.json.partial").exists());
    }

    #[test]
    fn text_summary_says_when_a_rate_limit_bounded_the_run() {
        let wait = LimiterWait {
            service: "Jira",
            limit: 10,
            waited_ms: 3_140,
        };
        assert!(wait.bounded(std::time::Duration::from_secs(5)));
        assert!(!wait.bounded(std::time::Duration::from_secs(60)));
        let short = LimiterWait {
            waited_ms: 90,
            ..wait.clone()
        };
        assert!(!short.bounded(std::time::Duration::from_millis(100)));
        let mut summary = empty_summary();
        let text = render_text(&Report {
            summary: summary.clone(),
            tickets: Vec::new(),
            muted: Vec::new(),
        });
        assert!(!text.contains("raise --rate-limit"), "{text}");
        summary.rate_limited = vec![wait];
        let text = render_text(&Report {
            summary,
            tickets: Vec::new(),
            muted: Vec::new(),
        });
        assert!(
            text.contains(
                "waited 3.1 s for the Jira limit of 10/s; raise --rate-limit if your Jira allows more"
            ),
            "{text}"
        );
    }

    #[test]
    fn text_summary_names_the_mode_and_dry_run() {
        let text = render_text(&Report {
            summary: empty_summary(),
            tickets: vec![],
            muted: vec![],
        });
        assert!(text.contains("sequential"));
        assert!(text.contains("dry run"));
        assert!(!text.contains("could not be read") && !text.contains("fell back"));
    }

    #[test]
    fn text_summary_counts_unreadable_input_cut_lines_and_llm_fallbacks() {
        let mut summary = empty_summary();
        summary.unreadable = 2;
        summary.lines_cut = 1;
        summary.llm_fallbacks = 14;
        let text = render_text(&Report {
            summary,
            tickets: vec![],
            muted: vec![],
        });
        assert!(text.contains("2 input records could not be read"), "{text}");
        assert!(
            text.contains("1 input line longer than --max-line-bytes was cut"),
            "{text}"
        );
        assert!(
            text.contains("14 analyses fell back to the rules analyzer"),
            "{text}"
        );
    }

    #[test]
    fn counts_of_one_are_singular_and_rates_are_rounded() {
        let mut summary = empty_summary();
        summary.logs_per_second = 1234.56;
        let text = render_text(&Report {
            summary: summary.clone(),
            tickets: vec![],
            muted: vec![],
        });
        assert!(text.contains("2 logs: "), "{text}");
        assert!(text.contains(", 1 duplicate, "), "{text}");
        assert!(text.contains("1 problem, 1 ticket "), "{text}");
        assert!(text.contains("(1235 logs/s"), "{text}");
        summary.processed = 1;
        summary.duplicates = 0;
        summary.logs_per_second = 0.44;
        summary.mode = "async";
        let text = render_text(&Report {
            summary,
            tickets: vec![],
            muted: vec![],
        });
        assert!(text.contains("1 log: "), "{text}");
        assert!(text.contains(", 0 duplicates, "), "{text}");
        assert!(text.contains("(0.4 logs/s, async, 1 worker)"), "{text}");
    }

    fn ticket(summary: &str, key: Option<&str>) -> TicketEntry {
        TicketEntry {
            fingerprint: "5b9b11ea7f13748f".into(),
            template: "write <*> no space left on device".into(),
            key: key.map(str::to_string),
            url: key.map(|k| browse_url("https://jira.example.com/jira", k)),
            action: if key.is_some() {
                "created"
            } else {
                "would_create"
            },
            summary: summary.into(),
            severity: "critical",
            occurrences: 14,
            category: "disk",
            service: Some("search".into()),
            first_seen: None,
            last_seen: None,
            hosts: Vec::new(),
            labels: vec!["triage-5b9b11ea7f13748f".into()],
            route: None,
            draft: None,
        }
    }

    /// The cells of a Markdown table row: split at every `|` not escaped by a backslash.
    fn cells(row: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut escaped = false;
        for c in row.chars() {
            match c {
                '|' if !escaped => cells.push(String::new()),
                _ => {
                    if let Some(cell) = cells.last_mut() {
                        cell.push(c);
                    }
                }
            }
            escaped = c == '\\' && !escaped;
        }
        cells
    }

    #[test]
    fn markdown_title_with_a_pipe_and_a_newline_keeps_the_table_shape() {
        let hostile = "checkout: a | b\nc\r\n| <script>alert(1)</script> [x](https://evil.example) `rm` *em* _u_ &amp; \\| $x$";
        let report = Report {
            summary: empty_summary(),
            tickets: vec![ticket(hostile, None), ticket("plain title", Some("OPS-12"))],
            muted: vec![],
        };
        let md = render_markdown(&report);
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        // Header, delimiter, and one row per ticket: the newlines did not end the row.
        assert_eq!(rows.len(), 4, "{md}");
        let header = cells(rows[0]).len();
        for row in &rows {
            assert_eq!(
                cells(row).len(),
                header,
                "a row with another shape: {row}\n{md}"
            );
        }
        let title = &cells(rows[2])[4];
        assert!(title.contains(r"a \| b c  \| "), "{title}");
        for raw in ["<script>", "[x](", "`rm`", "*em*", "_u_"] {
            assert!(!title.contains(raw), "{raw} left as Markdown in {title}");
        }
        for escaped in [
            r"\<script\>",
            r"\[x\](https://evil.example)",
            r"\`rm\`",
            r"\*em\*",
            r"\_u\_",
            r"\&amp;",
            r"\$x\$",
        ] {
            assert!(title.contains(escaped), "{escaped} not in {title}");
        }
        // A backslash before a pipe is escaped itself, so the pipe stays escaped.
        assert!(title.contains(r"\\\|"), "{title}");
        assert_eq!(
            cells(rows[2])[5].trim(),
            "—",
            "a dry run's new problem has no ticket"
        );
        assert_eq!(
            cells(rows[3])[5].trim(),
            "[OPS-12](https://jira.example.com/jira/browse/OPS-12)"
        );
    }

    #[test]
    fn markdown_carries_the_counts_and_what_stopped_the_run() {
        let mut summary = empty_summary();
        summary.interrupted = true;
        summary.error = Some("Datadog: 503 <html> | down".into());
        let md = render_markdown(&Report {
            summary,
            tickets: vec![],
            muted: vec![],
        });
        assert!(
            md.starts_with("## triage: 1 problem in 2 logs (dry run)\n"),
            "{md}"
        );
        assert!(
            md.contains("\n2 logs: 0 created, 0 existing, 1 would create, 1 duplicate, 0 commented, 0 skipped, 0 failed\n"),
            "{md}"
        );
        assert!(md.contains("(dry run: nothing written to Jira)"), "{md}");
        assert!(md.contains("\nNo problems found.\n"), "{md}");
        assert!(md.contains("\n- Interrupted: "), "{md}");
        assert!(
            md.contains(r"- Stopped early: Datadog: 503 \<html\> \| down"),
            "{md}"
        );
    }

    #[test]
    fn markdown_text_leaves_words_alone_and_escapes_syntax() {
        assert_eq!(markdown_text("would_create"), "would_create");
        assert_eq!(markdown_text("  a\tb\u{7}c  "), "a b c");
        assert_eq!(markdown_text("# not a heading"), r"\# not a heading");
        assert_eq!(markdown_text("- not a list"), r"\- not a list");
        assert_eq!(markdown_text("issue #12 - ok"), "issue #12 - ok");
        assert_eq!(markdown_text("_x_ __init__"), r"\_x\_ \_\_init\_\_");
    }

    #[test]
    fn a_ticket_page_is_under_browse_with_the_key_as_one_segment() {
        assert_eq!(
            browse_url("https://jira.example.com:8443/jira", "OPS-12"),
            "https://jira.example.com:8443/jira/browse/OPS-12"
        );
        assert_eq!(
            browse_url("https://j.example", "A/../B C)"),
            "https://j.example/browse/A%2F..%2FB%20C%29"
        );
        assert_eq!(
            link_destination("https://j.example/a b(c)|d"),
            "https://j.example/a%20b%28c%29%7Cd"
        );
    }

    #[test]
    fn printed_json_carries_the_schema_version() {
        let v = serde_json::to_value(Versioned(&empty_summary())).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["processed"], 2);
    }
}
