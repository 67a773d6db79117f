//! The command line as a new user meets it: install-time conventions (`--version`,
//! completions, the manual page, grouped `--help`), colour and timestamps on stderr, what
//! `triage check` says about a half-configured service, errors that name the environment
//! variable or the `.env` line, the JSON formats and their schemas, and `triage status`.

use std::path::Path;

use crate::common::*;
use predicates::prelude::*;
use serde_json::Value;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

// ---------------------------------------------------------------------------------------------
// --version, completions, man, --help
// ---------------------------------------------------------------------------------------------

#[test]
fn version_names_the_commit_and_the_build_date() {
    let mut t = triage();
    let out = t
        .cmd
        .arg("--version")
        .assert()
        .success()
        .get_output()
        .clone();
    let text = stdout_of(&out);
    let re = regex::Regex::new(
        r"^triage \d+\.\d+\.\d+ \(commit ([0-9a-f]{7,40}|unknown), built \d{4}-\d{2}-\d{2}\)\n$",
    )
    .unwrap();
    assert!(re.is_match(&text), "{text:?}");
}

#[test]
fn completions_for_each_shell_and_a_manual_page() {
    for (shell, needle) in [
        ("bash", "--dry-run"),
        ("zsh", "--dry-run"),
        ("fish", "dry-run"),
        ("powershell", "--dry-run"),
    ] {
        let mut t = triage();
        let out = t
            .cmd
            .args(["completions", shell])
            .assert()
            .success()
            .get_output()
            .clone();
        let script = stdout_of(&out);
        assert!(
            script.contains("triage") && script.contains(needle) && script.contains("status"),
            "{shell}: {script}"
        );
    }
    let mut t = triage();
    t.cmd
        .args(["completions", "tcsh"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tcsh"));
    let mut t = triage();
    let out = t.cmd.arg("man").assert().success().get_output().clone();
    let page = stdout_of(&out);
    assert!(page.contains(".TH triage 1"), "{page}");
    assert!(page.contains("dry\\-run"), "{page}");
}

#[test]
fn help_groups_the_flags_under_headings() {
    let mut t = triage();
    let out = t.cmd.arg("--help").assert().success().get_output().clone();
    let help = stdout_of(&out);
    let at = |heading: &str| {
        help.find(&format!("\n{heading}:\n"))
            .unwrap_or_else(|| panic!("no heading {heading}: in\n{help}"))
    };
    let (input, pipeline, jira, state, output) = (
        at("Input"),
        at("Pipeline"),
        at("Jira"),
        at("State"),
        at("Output"),
    );
    let under = |flag: &str, start: usize| {
        let pos = help
            .find(&format!("--{flag}"))
            .unwrap_or_else(|| panic!("--{flag}"));
        let next = [input, pipeline, jira, state, output]
            .into_iter()
            .filter(|&h| h > start)
            .min()
            .unwrap_or(help.len());
        assert!(
            pos > start && pos < next,
            "--{flag} is not under its heading"
        );
    };
    under("from", input);
    under("workers", pipeline);
    under("jira-url", jira);
    under("state", state);
    under("report", output);
    under("color", output);
}

// ---------------------------------------------------------------------------------------------
// Colour and timestamps
// ---------------------------------------------------------------------------------------------

#[test]
fn stderr_that_is_not_a_terminal_gets_no_colour_and_a_utc_timestamp_on_every_line() {
    let stamp = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z ").unwrap();
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut t = triage();
        t.cmd
            .args(["-v", "--dry-run", "--no-state", "--workers", "4", "--input"])
            .arg(sample_logs())
            .args(extra);
        for (k, v) in env {
            t.cmd.env(k, v);
        }
        let out = t.cmd.assert().code(0).get_output().clone();
        stderr_of(&out)
    };
    let plain = run(&[], &[]);
    assert!(plain.lines().count() >= 2, "a note and a log line: {plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "no ANSI codes in a pipe: {plain:?}"
    );
    for line in plain.lines() {
        assert!(stamp.is_match(line), "no timestamp: {line:?}");
    }
    assert!(plain.contains("DEBUG"), "{plain}");
    let forced = run(&["--color", "always"], &[("NO_COLOR", "1")]);
    assert!(
        forced.contains("\u{1b}["),
        "--color always wins: {forced:?}"
    );
    let never = run(&["--color=never"], &[]);
    assert!(!never.contains('\u{1b}'), "{never:?}");
}

// ---------------------------------------------------------------------------------------------
// triage check
// ---------------------------------------------------------------------------------------------

#[test]
fn check_fails_a_partly_configured_jira_naming_the_empty_variable() {
    let mut t = triage();
    let out = t
        .cmd
        .arg("check")
        .env("JIRA_URL", "http://127.0.0.1:9")
        .env("JIRA_PROJECT", "OPS")
        .env("JIRA_EMAIL", "bot@example.com")
        .env("JIRA_API_TOKEN", "")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let text = stdout_of(&out);
    let jira = text
        .lines()
        .find(|l| l.starts_with("jira"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        jira.contains("FAIL") && jira.contains("JIRA_API_TOKEN"),
        "{jira}"
    );
    assert!(!jira.contains("JIRA_URL"), "JIRA_URL is set: {jira}");
}

#[test]
fn check_fails_a_datadog_with_one_key_and_takes_flags_after_the_subcommand() {
    let mut t = triage();
    let out = t
        .cmd
        .args(["check", "--analyzer", "llm"])
        .env("DD_API_KEY", "dd-secret-value-123")
        .env("DD_APP_KEY", "  ")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let text = stdout_of(&out);
    let line = |s: &str| {
        text.lines()
            .find(|l| l.starts_with(s))
            .unwrap_or_else(|| panic!("no {s} line: {text}"))
            .to_string()
    };
    assert!(
        line("datadog").contains("FAIL") && line("datadog").contains("DD_APP_KEY"),
        "{text}"
    );
    assert!(
        line("llm").contains("FAIL") && line("llm").contains("OPENAI_API_KEY"),
        "{text}"
    );
    assert!(line("jira").contains("skipped"), "{text}");
    assert!(!text.contains("dd-secret-value-123") && !stderr_of(&out).contains("dd-secret"));
}

// ---------------------------------------------------------------------------------------------
// Environment and .env
// ---------------------------------------------------------------------------------------------

#[test]
fn a_bad_environment_value_names_the_variable_and_what_it_accepts() {
    for (name, value, expected) in [
        (
            "ASYNC_MAX_WORKERS",
            "abc",
            "ASYNC_MAX_WORKERS=abc: expected a whole number in 1..=256",
        ),
        (
            "ASYNC_ENABLED",
            "maybe",
            "ASYNC_ENABLED=maybe: expected one of true, false, yes, no, on, off, 1, 0",
        ),
        (
            "TRIAGE_ANALYZER",
            "gpt",
            "TRIAGE_ANALYZER=gpt: expected one of rules, llm",
        ),
        (
            "ASYNC_BATCH_SIZE",
            "5000",
            "ASYNC_BATCH_SIZE=5000: expected a whole number in 1..=1000",
        ),
    ] {
        let mut t = triage();
        t.cmd
            .args(["--dry-run", "--no-state", "--input", "-"])
            .env(name, value)
            .write_stdin("")
            .assert()
            .code(2)
            .stderr(predicate::str::contains(expected));
    }
    // On the command line the flag is named, with the same explanation.
    let mut t = triage();
    t.cmd
        .args(["--workers", "abc", "--dry-run", "--input", "-"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--workers").and(predicate::str::contains(
                "expected a whole number in 1..=256",
            )),
        );
}

#[test]
fn an_empty_environment_value_means_not_set() {
    let mut t = triage();
    let out = t
        .cmd
        .args([
            "--dry-run",
            "--no-state",
            "--async",
            "--output",
            "json",
            "--input",
        ])
        .arg(sample_logs())
        .env("ASYNC_MAX_WORKERS", "")
        .env("TRIAGE_ANALYZER", "")
        .env("JIRA_URL", "")
        .env("JIRA_API_TOKEN", "")
        .assert()
        .code(0)
        .get_output()
        .clone();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["workers"], 5, "the default");
    assert!(
        !stderr_of(&out).contains("partly configured"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_malformed_env_file_line_stops_the_run_naming_the_line_without_showing_it() {
    let t = triage();
    std::fs::write(
        t.dir.path().join(".env"),
        "# settings\nASYNC_MAX_WORKERS=7\nJIRA_API_TOKEN hunter2-secret\n",
    )
    .unwrap();
    let mut t = t;
    let out = t
        .cmd
        .args(["--dry-run", "--no-state", "--input"])
        .arg(sample_logs())
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = stderr_of(&out);
    assert!(err.contains(".env:3"), "{err}");
    assert!(!err.contains("hunter2"), "the line is not echoed: {err}");
    assert!(err.contains("nothing from this file was applied"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn env_file_reads_another_file_and_the_environment_still_wins() {
    let t = triage();
    let conf = t.dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("triage.env"),
        "ASYNC_ENABLED=yes\nASYNC_MAX_WORKERS=7\nTRIAGE_ANALYZER=\n",
    )
    .unwrap();
    // ./.env is not read when --env-file is given.
    std::fs::write(t.dir.path().join(".env"), "ASYNC_MAX_WORKERS=2\n").unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut cmd = triage().cmd;
        cmd.current_dir(t.dir.path())
            .args(["--dry-run", "--no-state", "--output", "json", "--env-file"])
            .arg(conf.join("triage.env"))
            .arg("--input")
            .arg(sample_logs());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.assert().code(0).get_output().clone();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let s = run(&[]);
    assert_eq!(
        (s["mode"].as_str(), s["workers"].as_u64()),
        (Some("async"), Some(7))
    );
    let s = run(&[("ASYNC_MAX_WORKERS", "3")]);
    assert_eq!(s["workers"], 3);
    let mut t2 = triage();
    t2.cmd
        .args(["--dry-run", "--env-file", "no/such.env", "--input", "-"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no/such.env"));
}

// ---------------------------------------------------------------------------------------------
// JSON output, schemas, plurals
// ---------------------------------------------------------------------------------------------

fn schema(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("schema exists")).expect("JSON")
}

/// Resolves the schemas' relative `$ref`s to the files beside them in docs/.
struct Docs;

impl jsonschema::Retrieve for Docs {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        Ok(schema(name))
    }
}

fn validate(schema_name: &str, instance: &Value) {
    let validator = jsonschema::options()
        .with_retriever(Docs)
        .build(&schema(schema_name))
        .expect("the schema is valid");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema_name}: {errors:#?}");
}

#[test]
fn json_output_is_one_versioned_line_and_both_formats_match_their_schemas() {
    let mut t = triage();
    let report = t.dir.path().join("report.json");
    let out = t
        .cmd
        .args(["--dry-run", "--no-state", "--output", "json", "--report"])
        .arg(&report)
        .arg("--input")
        .arg(sample_logs())
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = stdout_of(&out);
    assert_eq!(text.lines().count(), 1, "one line per run: {text}");
    let summary: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(summary["schema_version"], 1);
    validate("summary.schema.json", &summary);
    let report = read_report(&report);
    assert_eq!(report["schema_version"], 1);
    validate("report.schema.json", &report);
    // The schemas are not empty promises: a wrong type or a missing field is caught.
    let mut broken = summary.clone();
    broken["processed"] = Value::from("many");
    let summary_schema = jsonschema::validator_for(&schema("summary.schema.json")).unwrap();
    assert!(!summary_schema.is_valid(&broken));
    let mut broken = summary;
    broken.as_object_mut().unwrap().remove("schema_version");
    assert!(!summary_schema.is_valid(&broken));
}

#[test]
fn one_log_one_problem_is_singular() {
    let mut t = triage();
    let out = t
        .cmd
        .args(["--dry-run", "--no-state", "--input", "-"])
        .write_stdin(generated_logs(1, 1))
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = stdout_of(&out);
    assert!(text.contains("\n1 log: "), "{text}");
    assert!(text.contains("0 duplicates"), "{text}");
    assert!(text.contains("\n1 problem, 1 ticket "), "{text}");
}

// ---------------------------------------------------------------------------------------------
// triage status
// ---------------------------------------------------------------------------------------------

const PROJECT: &str = "OPS";

/// A lenient Jira Cloud: who am I, no existing ticket, creates OPS-1, OPS-2, ..., and accepts
/// updates and comments.
async fn jira() -> MockServer {
    let server = cloud_jira(true).await;
    let n = std::sync::atomic::AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(move |_: &Request| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ResponseTemplate::new(201)
                .set_body_json(created(10_000 + i, &format!("{PROJECT}-{}", i + 1)))
        })
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(r"^/rest/api/3/issue/[^/]+$"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_runs_tickets_and_retries_and_reads_while_a_run_holds_the_lock() {
    let server = jira().await;
    let t = triage();
    let db = t.dir.path().join("state.db");
    let env = |cmd: &mut assert_cmd::Command| {
        cmd.current_dir(t.dir.path())
            .env("JIRA_URL", server.uri())
            .env("JIRA_PROJECT", PROJECT)
            .env("JIRA_EMAIL", "bot@example.com")
            .env("JIRA_API_TOKEN", "jira-secret-value-456")
            .arg("--state")
            .arg(&db);
    };
    // A real run over 6 logs of 2 problems records its row at the end.
    let mut cmd = triage().cmd;
    env(&mut cmd);
    let logs = generated_logs(6, 2);
    let out = tokio::task::spawn_blocking(move || {
        cmd.args(["--input", "-"])
            .write_stdin(logs)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    // Another job's run holds its lock on the same file meanwhile; then this job's own lock is
    // held too (a run in progress): status only reads.
    let scope = triage::state::Scope {
        source: String::new(),
        jira: triage::state::Scope::jira(&server.uri(), PROJECT),
    };
    let held = triage::state::StateStore::open(&db, scope).expect("take the job's lock");
    let mut cmd = triage().cmd;
    env(&mut cmd);
    let out = cmd
        .args(["status", "--input", "-", "--output", "json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    drop(held);
    let text = stdout_of(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["schema_version"], 1);
    let runs = status["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{status}");
    assert_eq!(runs[0]["exit_code"], 0);
    assert_eq!(runs[0]["fetched"], 6);
    assert_eq!(runs[0]["created"], 2);
    assert!(runs[0]["started"].is_string() && runs[0]["duration_ms"].is_number());
    let tickets = status["tickets"].as_array().unwrap();
    let mut keys: Vec<&str> = tickets.iter().map(|t| t["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["OPS-1", "OPS-2"]);
    assert!(tickets
        .iter()
        .all(|t| t["fingerprint"].as_str().unwrap().len() >= 8));
    assert!(status["retry"].as_array().unwrap().is_empty());
    assert!(!text.contains("jira-secret-value-456"));

    // The text form says the same to a person.
    let mut cmd = triage().cmd;
    env(&mut cmd);
    let out = cmd
        .args(["status", "--input", "-"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = stdout_of(&out);
    assert!(text.contains("Last runs (newest first):"), "{text}");
    assert!(
        text.contains("OPS-2") && text.contains("Retry list: 0 logs"),
        "{text}"
    );
    assert!(
        text.contains("Checkpoint: none (a file is read whole each time)"),
        "{text}"
    );
}

#[test]
fn status_of_a_missing_state_file_says_so_and_creates_nothing() {
    let mut t = triage();
    let db = t.dir.path().join("none/state.db");
    t.cmd
        .args(["status", "--state"])
        .arg(&db)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("No state yet"));
    assert!(!db.exists() && !db.parent().unwrap().exists());
}
