//! The binary as a user meets it: flags, exit codes, stdout/stderr, the report file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use predicates::prelude::*;
use serde_json::Value;

#[test]
fn help_documents_every_flag_env_name_and_exit_code_without_secret_values() {
    let mut t = triage();
    let out = t
        .cmd
        .env("DD_API_KEY", "dd-secret-value-123")
        .env("JIRA_API_TOKEN", "jira-secret-value-456")
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    for flag in [
        "--dry-run",
        "--async",
        "--workers",
        "--batch-size",
        "--timeout",
        "--rate-limit",
        "--no-rate-limit",
        "--query",
        "--from",
        "--to",
        "--limit",
        "--input",
        "--analyzer",
        "--max-tickets",
        "--output",
        "--report",
        "--quiet",
        "--verbose",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    for env in [
        "ASYNC_ENABLED",
        "ASYNC_MAX_WORKERS",
        "ASYNC_BATCH_SIZE",
        "ASYNC_TIMEOUT_SECONDS",
        "TRIAGE_RATE_LIMIT",
        "DD_QUERY",
        "TRIAGE_ANALYZER",
        "MAX_TICKETS_PER_RUN",
        "DD_API_KEY",
        "JIRA_URL",
        "JIRA_PAT",
        "JIRA_PROJECT",
    ] {
        assert!(help.contains(env), "--help lacks {env}");
    }
    for code in ["130", "interrupted", "some logs failed"] {
        assert!(help.contains(code), "--help lacks exit code text {code}");
    }
    assert!(!help.contains("dd-secret-value-123") && !help.contains("jira-secret-value-456"));
}

#[test]
fn out_of_range_values_exit_2_naming_the_setting() {
    for (args, needle) in [
        (vec!["--workers", "0"], "--workers"),
        (vec!["--workers", "1000"], "--workers"),
        (vec!["--batch-size", "5000"], "--batch-size"),
        (vec!["--output", "xml"], "--output"),
        (vec!["--input", "/nonexistent/logs.jsonl"], "--input"),
        (vec!["--from", "now-5m", "--to", "now-10m"], "window"),
        (vec!["--from", "yesterday"], "--from"),
    ] {
        let mut t = triage();
        t.cmd.arg("--dry-run").args(&args);
        if !args.contains(&"--input") {
            t.cmd.args(["--input", "-"]).write_stdin("");
        }
        t.cmd
            .assert()
            .code(2)
            .stderr(predicate::str::contains(needle));
    }
}

#[test]
fn the_sample_run_finds_the_known_problems() {
    let mut t = triage();
    let out = t
        .cmd
        .args([
            "--dry-run",
            "--async",
            "--workers",
            "10",
            "--output",
            "json",
            "--input",
        ])
        .arg(sample_logs())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let summary: Value =
        serde_json::from_slice(&out).expect("--output json prints the summary object");
    assert_eq!(summary["mode"], "async");
    assert_eq!(summary["workers"], 10);
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["fetched"], SAMPLE_LOGS);
    assert_eq!(summary["processed"], SAMPLE_LOGS);
    assert_eq!(summary["tickets"], SAMPLE_PROBLEMS);
    assert_eq!(summary["would_create"], SAMPLE_PROBLEMS);
    assert_eq!(summary["duplicates"], SAMPLE_LOGS - SAMPLE_PROBLEMS);
    assert_eq!(summary["failed"], 0);
    assert!(summary["stages"]["analyze"]["p95_ms"].is_number());
}

/// Fingerprint per log id and occurrences per ticket, from a report.
fn shape(report: &Value) -> (BTreeMap<String, String>, BTreeMap<String, u64>) {
    let logs = report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["fingerprint"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let tickets = report["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["fingerprint"].as_str().unwrap().to_string(),
                t["occurrences"].as_u64().unwrap(),
            )
        })
        .collect();
    (logs, tickets)
}

#[test]
fn sequential_and_async_modes_produce_the_same_fingerprints_and_tickets() {
    let mut reports = Vec::new();
    for args in [
        vec![],
        vec!["--async", "--workers", "64"],
        vec!["--async", "--workers", "3"],
    ] {
        let mut t = triage();
        let path = t.dir.path().join("report.json");
        t.cmd
            .arg("--dry-run")
            .args(&args)
            .arg("--input")
            .arg(sample_logs())
            .arg("--report")
            .arg(&path);
        t.cmd.assert().code(0);
        let report = read_report(&path);
        assert_eq!(
            report["logs"].as_array().unwrap().len() as u64,
            SAMPLE_LOGS,
            "every log exactly once"
        );
        let ids: BTreeSet<_> = report["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].clone().to_string())
            .collect();
        assert_eq!(ids.len() as u64, SAMPLE_LOGS, "no log twice");
        reports.push(shape(&report));
    }
    assert_eq!(reports[0], reports[1]);
    assert_eq!(reports[0], reports[2]);
    assert_eq!(reports[0].1.len() as u64, SAMPLE_PROBLEMS);
}

#[test]
fn workers_without_async_run_sequentially_and_say_so_once() {
    let mut t = triage();
    let assert = t
        .cmd
        .args(["--dry-run", "--workers", "8", "--input"])
        .arg(sample_logs())
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert_eq!(stderr.matches("without --async").count(), 1, "{stderr}");
    assert!(String::from_utf8_lossy(&assert.get_output().stdout).contains("sequential"));
}

#[test]
fn a_live_run_without_jira_exits_1_naming_the_missing_variables() {
    let mut t = triage();
    t.cmd
        .arg("--input")
        .arg(sample_logs())
        .env("JIRA_URL", "https://acme.atlassian.net")
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("JIRA_PROJECT")
                .and(predicate::str::contains("JIRA_API_TOKEN")),
        );
}

#[test]
fn malformed_lines_are_skipped_with_their_line_number_and_nothing_else_is_lost_and_exit_3() {
    let good = std::fs::read_to_string(sample_logs()).unwrap();
    let mut lines: Vec<&str> = good.lines().take(20).collect();
    lines.insert(3, "{\"id\": truncated");
    lines.insert(
        7,
        r#"{"id":"no-message","type":"log","attributes":{"status":"error"}}"#,
    );
    let input = lines.join("\n");
    let mut t = triage();
    let path = t.dir.path().join("r.json");
    let assert = t
        .cmd
        .args(["--dry-run", "--output", "json", "--input", "-", "--report"])
        .arg(&path)
        .write_stdin(input)
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains("stdin:4"), "{stderr}");
    assert!(stderr.contains("stdin:8"), "{stderr}");
    let summary: Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(summary["skipped"], 2);
    assert_eq!(summary["unreadable"], 2);
    assert_eq!(summary["processed"], 22);
    assert_eq!(read_report(&path)["logs"].as_array().unwrap().len(), 22);
}

#[test]
fn max_tickets_caps_exactly_with_64_workers() {
    let mut t = triage();
    let out = t
        .cmd
        .args([
            "--dry-run",
            "--async",
            "--workers",
            "64",
            "--max-tickets",
            "3",
            "--output",
            "json",
            "--input",
            "-",
        ])
        .write_stdin(generated_logs(2000, 40))
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let s: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(s["would_create"], 3);
    assert_eq!(s["tickets"], 3);
    assert_eq!(s["problems"], 40);
    assert_eq!(s["processed"], 2000);
    // The three capped-in problems' followers are duplicates; every other log is skipped.
    assert_eq!(
        s["skipped"].as_u64().unwrap() + s["duplicates"].as_u64().unwrap() + 3,
        2000
    );
}

#[test]
fn text_output_is_a_table_with_totals() {
    let mut t = triage();
    let out = t
        .cmd
        .args(["--dry-run", "--input"])
        .arg(sample_logs())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("ACTION"), "{text}");
    assert_eq!(text.matches("would_create").count() as u64, SAMPLE_PROBLEMS);
    assert!(text.contains("300 logs:"));
    assert!(text.contains("logs/s"));
}

/// The cells of a Markdown table row, split at the `|` that no backslash escapes, trimmed.
fn markdown_cells(row: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in row.chars() {
        if c == '|' && !escaped {
            cells.push(String::new());
        } else if let Some(cell) = cells.last_mut() {
            cell.push(c);
        }
        escaped = c == '\\' && !escaped;
    }
    // What is outside the first and last `|` of the row.
    cells.remove(0);
    cells.pop();
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// `300 logs: 0 created, ..., 0 failed` as the summary's field names and their values.
fn markdown_counts(line: &str) -> BTreeMap<String, u64> {
    let (logs, rest) = line.split_once(": ").expect("N logs: ...");
    let mut counts = BTreeMap::new();
    let mut add = |part: &str| {
        let (n, what) = part.split_once(' ').expect("N what");
        let field = match what {
            "log" | "logs" => "processed",
            "duplicate" | "duplicates" => "duplicates",
            "would create" => "would_create",
            other => other,
        };
        counts.insert(field.to_string(), n.parse::<u64>().expect("a count"));
    };
    add(logs);
    rest.split(", ").for_each(&mut add);
    counts
}

#[test]
fn markdown_output_shows_the_facts_of_the_json_summary_and_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let run = |output: &str, report: Option<&std::path::Path>| {
        let mut t = triage();
        t.cmd
            .args(["--dry-run", "--no-state", "--async", "--workers", "4"])
            .args(["--output", output, "--input"])
            .arg(sample_logs());
        if let Some(path) = report {
            t.cmd.arg("--report").arg(path);
        }
        t.cmd.assert().code(0).get_output().stdout.clone()
    };
    let markdown = String::from_utf8(run("markdown", Some(&report_path))).unwrap();
    let json: Value = serde_json::from_slice(&run("json", None)).unwrap();
    let report = read_report(&report_path);

    assert!(
        markdown.starts_with(&format!(
            "## triage: {SAMPLE_PROBLEMS} problems in {SAMPLE_LOGS} logs (dry run)\n"
        )),
        "{markdown}"
    );
    let counts_line = markdown
        .lines()
        .find(|l| l.starts_with(&format!("{SAMPLE_LOGS} logs: ")))
        .expect("the counts line");
    let counts = markdown_counts(counts_line);
    assert_eq!(counts.len(), 8, "{counts_line}");
    for (field, n) in &counts {
        assert_eq!(json[field].as_u64(), Some(*n), "{field} in {counts_line}");
        assert_eq!(report["summary"][field].as_u64(), Some(*n), "{field}");
    }
    assert!(
        markdown.contains("(dry run: nothing written to Jira)"),
        "{markdown}"
    );

    let rows: Vec<Vec<String>> = markdown
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(markdown_cells)
        .collect();
    assert_eq!(rows[0], ["Action", "Severity", "Logs", "Title", "Ticket"]);
    let problems = &rows[2..];
    let tickets = report["tickets"].as_array().unwrap();
    assert_eq!(problems.len() as u64, SAMPLE_PROBLEMS);
    assert_eq!(json["tickets"].as_u64(), Some(problems.len() as u64));
    assert_eq!(problems.len(), tickets.len());
    for (row, ticket) in problems.iter().zip(tickets) {
        assert_eq!(row.len(), 5, "{row:?}");
        assert_eq!(row[0], ticket["action"].as_str().unwrap());
        assert_eq!(row[1], ticket["severity"].as_str().unwrap());
        assert_eq!(row[2], ticket["occurrences"].to_string());
        assert_eq!(row[4], "—", "a dry run without Jira has no ticket key");
        // The title, unescaped, is the ticket's summary.
        let mut title = String::new();
        let mut chars = row[3].chars();
        while let Some(c) = chars.next() {
            title.push(if c == '\\' { chars.next().unwrap() } else { c });
        }
        assert_eq!(title, ticket["summary"].as_str().unwrap());
    }
    let occurrences: u64 = problems.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    assert_eq!(occurrences, SAMPLE_LOGS);
}

#[test]
fn markdown_is_refused_by_the_commands_that_list_something() {
    for args in [
        vec!["status"],
        vec!["templates"],
        vec!["route", "--explain", "--input", "-"],
    ] {
        let mut t = triage();
        let state = t.dir.path().join("state.db");
        t.cmd
            .args(&args)
            .arg("--state")
            .arg(&state)
            .args(["--output", "markdown"])
            .write_stdin("");
        t.cmd.assert().code(2).stderr(predicate::str::contains(
            "--output markdown is for the run's summary only",
        ));
    }
}

#[test]
fn limit_stops_after_n_logs() {
    let mut t = triage();
    let out = t
        .cmd
        .args(["--dry-run", "--limit", "25", "--output", "json", "--input"])
        .arg(sample_logs())
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let s: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(s["processed"], 25);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_taking_logs_finishes_in_flight_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("triage"))
        .env_clear()
        .current_dir(dir.path())
        .args([
            "--dry-run",
            "--async",
            "--output",
            "json",
            "--input",
            "-",
            "--report",
        ])
        .arg(&report)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(generated_logs(50, 5).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // stdin stays open: the source would wait forever for more logs. The 50 logs take
    // milliseconds; the wait covers process start-up on a loaded machine.
    std::thread::sleep(Duration::from_millis(2500));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(
        out.status.code(),
        Some(130),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("partial summary on stdout");
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["processed"], 50);
    assert_eq!(read_report(&report)["logs"].as_array().unwrap().len(), 50);
}
