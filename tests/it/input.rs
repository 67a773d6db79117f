//! `--input` under bad and hostile input, as a user meets it: exit codes, what stderr says, and
//! the counts in the text and JSON summaries.

use crate::common::*;
use predicates::prelude::*;
use serde_json::Value;

fn event(id: &str, message: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"log","attributes":{{"status":"error","service":"checkout","message":"{message}"}}}}"#
    )
}

/// Run `triage --dry-run --no-state --input -` on `input` with extra arguments.
fn run_on(input: impl Into<Vec<u8>>, args: &[&str]) -> (Option<i32>, String, String) {
    let mut t = triage();
    let out = t
        .cmd
        .args(["--dry-run", "--no-state", "--input", "-"])
        .args(args)
        .write_stdin(input.into())
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("a JSON summary ({e}):\n{stdout}"))
}

#[test]
fn a_truncated_json_array_exits_1_and_says_no_log_could_be_read() {
    let (code, stdout, stderr) = run_on("[{\"message\":\"a\"\n", &[]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no log could be read") && stderr.contains("stdin:1"),
        "{stderr}"
    );
    assert!(stderr.contains("malformed JSON"), "{stderr}");
    assert!(stdout.starts_with("No log could be read."), "{stdout}");
    let (code, stdout, _) = run_on("[{\"message\":\"a\"\n", &["--output", "json"]);
    assert_eq!(code, Some(1));
    let s = json(&stdout);
    assert_eq!(
        (s["unreadable"].as_u64(), s["processed"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(s["error"]
        .as_str()
        .unwrap()
        .contains("no log could be read"));
}

#[test]
fn empty_input_is_not_an_error() {
    let (code, stdout, _) = run_on("\n\n", &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("No problems found"));
}

#[test]
fn unreadable_lines_exit_3_and_are_counted_in_the_text_and_json_summaries() {
    let input = format!(
        "{}\n{{\"id\": broken\n{}\n",
        event("a", "disk full on /var"),
        event("b", "disk full on /var")
    );
    let (code, stdout, stderr) = run_on(input.clone(), &[]);
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 input record could not be read"),
        "{stdout}"
    );
    assert!(stderr.contains("stdin:2"), "{stderr}");
    let mut t = triage();
    let metrics = t.dir.path().join("triage.prom");
    let out = t
        .cmd
        .args([
            "--dry-run",
            "--no-state",
            "--output",
            "json",
            "--input",
            "-",
        ])
        .arg("--metrics-file")
        .arg(&metrics)
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("\ntriage_input_unreadable 1\n"), "{prom}");
    assert!(prom.contains("\ntriage_run_exit_code 3\n"), "{prom}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["unreadable"], 1);
    assert_eq!(s["skipped"], 1);
    assert_eq!(s["would_create"], 1);
    assert_eq!(s["duplicates"], 1);
}

#[test]
fn invalid_utf8_in_json_lines_costs_exactly_that_line_with_its_true_number() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"message\":\"bad \xC3\x28 bytes\"}\n");
    for i in 2..=4 {
        input.extend_from_slice(event(&format!("ok{i}"), "disk full").as_bytes());
        input.push(b'\n');
    }
    input.extend_from_slice(b"\xFF\xFE\n");
    input.extend_from_slice(event("ok6", "disk full").as_bytes());
    input.push(b'\n');
    let mut t = triage();
    let report = t.dir.path().join("r.json");
    let out = t
        .cmd
        .args([
            "--dry-run",
            "--no-state",
            "--output",
            "json",
            "--input",
            "-",
        ])
        .arg("--report")
        .arg(&report)
        .write_stdin(input)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("stdin:1: line is not valid UTF-8"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stdin:5: line is not valid UTF-8"),
        "{stderr}"
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (s["processed"].as_u64(), s["unreadable"].as_u64()),
        (Some(6), Some(2))
    );
    let mut ids: Vec<String> = read_report(&report)["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    // Every record once; a bad line is reported as soon as it is read, a log when its problem
    // is resolved, so the order is not the input's.
    ids.sort();
    assert_eq!(ids, ["ok2", "ok3", "ok4", "ok6", "stdin:1", "stdin:5"]);
}

#[test]
fn a_malformed_first_line_keeps_the_1000_valid_lines_after_it() {
    let mut input = String::from("{\"id\": \"x\", \"attributes\": {\"message\": trunc\n");
    for i in 0..1000 {
        input.push_str(&event(
            &format!("L{i}"),
            "payment failed: upstream timed out",
        ));
        input.push('\n');
    }
    let (code, stdout, stderr) = run_on(input, &["--output", "json"]);
    assert_eq!(code, Some(3), "{stderr}");
    let s = json(&stdout);
    assert_eq!(s["processed"], 1001);
    assert_eq!(s["unreadable"], 1);
    assert_eq!(s["would_create"], 1);
    assert_eq!(s["duplicates"], 999);
    assert!(!stderr.contains("ambiguous"), "{stderr}");
}

#[test]
fn an_ambiguous_file_is_read_line_by_line_and_says_so() {
    let mut input = String::new();
    for i in 0..12 {
        if i % 3 == 0 {
            input.push_str(&event(&format!("e{i}"), "disk full"));
        } else {
            input.push_str("{\"message\": ");
        }
        input.push('\n');
    }
    // The first line is a fragment, so the file is sampled.
    let input = format!("{{\"message\": \n{input}");
    let (code, stdout, stderr) = run_on(input, &["--output", "json"]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("the format is ambiguous"), "{stderr}");
    assert_eq!(json(&stdout)["unreadable"], 9);
}

#[test]
fn a_line_longer_than_max_line_bytes_is_cut_and_the_summary_says_so() {
    let long = event("big", &"stack frame at module::function ".repeat(3000));
    let input = format!("{}\n{long}\n{}\n", event("a", "x"), event("b", "y"));
    let (code, stdout, stderr) = run_on(input.clone(), &["--max-line-bytes", "4096"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("1 input line longer than --max-line-bytes was cut"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "cut stdin:2: the line is {} bytes",
            long.len() + 1
        )),
        "{stderr}"
    );
    let (_, stdout, _) = run_on(input, &["--max-line-bytes", "4096", "--output", "json"]);
    let s = json(&stdout);
    assert_eq!(
        (s["lines_cut"].as_u64(), s["processed"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(s["unreadable"], 0);
}

#[test]
fn max_line_bytes_below_1_kib_is_a_usage_error() {
    let mut t = triage();
    t.cmd
        .args([
            "--dry-run",
            "--no-state",
            "--input",
            "-",
            "--max-line-bytes",
            "10",
        ])
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--max-line-bytes"));
}
