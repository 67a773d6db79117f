//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use std::sync::OnceLock;

use assert_cmd::Command;
use clap::Parser;
use serde_json::{json, Value};
use wiremock::Request;

/// The sample data shipped with the repository.
pub fn sample_logs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs.jsonl")
}

/// Distinct problems `triage` finds in `examples/logs.jsonl`: the 14 templates of
/// examples/gen_logs.rs --problems, except that `pool=orders`, `pool=ledger` and
/// `pool=refunds` stay three problems (a value seen with only three values reads as structure,
/// see docs/grouping.md).
pub const SAMPLE_PROBLEMS: u64 = 16;
/// Logs in `examples/logs.jsonl`.
pub const SAMPLE_LOGS: u64 = 300;

/// A fixture file from tests/fixtures (copied from the upstream sources listed in its SOURCE.md).
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// The response bodies of a recorded Datadog cassette, parsed.
pub fn cassette_bodies(name: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(fixture(&format!("datadog/{name}"))).expect("cassette exists");
    let v: Value = serde_json::from_str(&text).expect("cassette is JSON");
    v["http_interactions"]
        .as_array()
        .expect("interactions")
        .iter()
        .map(|i| {
            serde_json::from_str(
                i["response"]["body"]["string"]
                    .as_str()
                    .expect("body string"),
            )
            .expect("body JSON")
        })
        .collect()
}

/// The `triage` binary, run in an empty temporary directory (so no stray `.env` is read) with
/// an environment that holds nothing but PATH (and XDG_CONFIG_HOME inside that directory).
pub struct Triage {
    pub cmd: Command,
    pub dir: tempfile::TempDir,
}

pub fn triage() -> Triage {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::cargo_bin("triage").expect("binary built");
    // The config file is looked for in the working directory and in XDG_CONFIG_HOME: both
    // point into the temporary directory, so no developer's triage.toml is read.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"))
        .current_dir(dir.path());
    Triage { cmd, dir }
}

/// Read a report written with --report.
pub fn read_report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("report is JSON")
}

/// Generate `n` JSONL logs over `problems` problems (distinct services, one message shape each).
pub fn generated_logs(n: usize, problems: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let p = i % problems;
        out.push_str(&format!(
            "{{\"id\":\"log-{i}\",\"type\":\"log\",\"attributes\":{{\"status\":\"error\",\"service\":\"svc{p}\",\
             \"host\":\"host-{}\",\"timestamp\":\"2026-11-23T09:{:02}:{:02}Z\",\
             \"message\":\"request {i} to 10.0.0.{} failed after {}ms\"}}}}\n",
            i % 3,
            (i / 60) % 60,
            i % 60,
            i % 250,
            i * 7 % 1000
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Jira: bodies built from tests/fixtures/jira (the recorded responses and the Cloud spec)
// ---------------------------------------------------------------------------------------------

pub fn jira_fixture(rel: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("jira/{rel}"))).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Atlassian's Jira Cloud platform OpenAPI spec (parsed once per test binary).
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| jira_fixture("atlassian-openapi/swagger-v3.v3.json"))
}

/// The spec's own example response of one operation.
pub fn spec_example(api_path: &str, verb: &str, status: &str) -> Value {
    let example = &spec()["paths"][api_path][verb]["responses"][status]["content"]
        ["application/json"]["example"];
    serde_json::from_str(example.as_str().expect("the spec has this example")).expect("JSON")
}

pub fn myself_v3() -> Value {
    spec_example("/rest/api/3/myself", "get", "200")
}

/// The command line of a Jira Cloud run (project OPS) against `uri`, reading `input`, quiet
/// and without the local rate limit; the token comes from the environment.
pub fn cloud_args(uri: &str, input: &Path, extra: &[&str]) -> Vec<String> {
    let input = input.to_str().expect("a UTF-8 path");
    let base = [
        "triage",
        "--input",
        input,
        "--jira-url",
        uri,
        "--jira-project",
        "OPS",
        "--jira-email",
        "bot@example.com",
        "--no-rate-limit",
        "-q",
    ];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// A Jira Cloud on loopback that knows the run's credentials (`GET /myself`) and, with
/// `no_tickets`, finds no ticket for any label (every search answers an empty page).
pub async fn cloud_jira(no_tickets: bool) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/myself"))
        .respond_with(ResponseTemplate::new(200).set_body_json(myself_v3()))
        .mount(&server)
        .await;
    if no_tickets {
        Mock::given(method("POST"))
            .and(path("/rest/api/3/search/jql"))
            .respond_with(ResponseTemplate::new(200).set_body_json(search_page(vec![])))
            .mount(&server)
            .await;
    }
    server
}

/// A Jira Cloud status, with the status category keys Jira really uses (new/indeterminate/done).
pub fn status(done: bool) -> Value {
    if done {
        json!({"name": "Done", "id": "10002",
               "statusCategory": {"id": 3, "key": "done", "colorName": "green", "name": "Done"}})
    } else {
        json!({"name": "In Progress", "id": "3",
               "statusCategory": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"}})
    }
}

/// The issue of the spec's search/jql example, re-keyed and given this problem's label.
pub fn cloud_issue(id: u64, key: &str, label: &str, done: bool) -> Value {
    let mut issue = spec_example("/rest/api/3/search/jql", "post", "200")["issues"][0].clone();
    issue["id"] = json!(id.to_string());
    issue["key"] = json!(key);
    issue["self"] = json!(format!(
        "https://your-domain.atlassian.net/rest/api/3/issue/{id}"
    ));
    let fields = &mut issue["fields"];
    fields["summary"] = json!(format!("An earlier ticket for {label}"));
    fields["labels"] = json!(["triage", label]);
    fields["status"] = status(done);
    issue
}

/// The spec's search/jql 200 example holding these issues.
pub fn search_page(issues: Vec<Value>) -> Value {
    let mut page = spec_example("/rest/api/3/search/jql", "post", "200");
    page["issues"] = Value::Array(issues);
    page["isLast"] = json!(true);
    page
}

/// The spec's create 201 example, re-keyed.
pub fn created(id: u64, key: &str) -> Value {
    let mut c = spec_example("/rest/api/3/issue", "post", "201");
    c["id"] = json!(id.to_string());
    c["key"] = json!(key);
    c["self"] = json!(format!(
        "https://your-domain.atlassian.net/rest/api/3/issue/{id}"
    ));
    c
}

pub fn label(fp: &str) -> String {
    format!("triage-{fp}")
}

/// The label a search's JQL asks for (`labels = "..."`).
pub fn jql_label(req: &Request) -> String {
    jql_labels(req).swap_remove(0)
}

/// Every label a search asks for: `labels = "a"`, or `labels in ("a", "b", ...)` when the
/// problem has other labels too (its masking-only label, merged templates); the problem's own
/// label comes first.
pub fn jql_labels(req: &Request) -> Vec<String> {
    let body: Value = req.body_json().expect("search body is JSON");
    let jql = body["jql"].as_str().expect("jql").to_string();
    let start = jql
        .find("labels = ")
        .or_else(|| jql.find("labels in ("))
        .expect("a label restriction");
    let end = jql[start..]
        .find(" ORDER BY")
        .map_or(jql.len(), |e| start + e);
    jql[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The fingerprint label among a create body's labels.
pub fn body_label(body: &Value) -> String {
    body["fields"]["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(Value::as_str)
        .find(|l| l.starts_with("triage-"))
        .expect("a triage-<fp> label")
        .to_string()
}

pub fn json_of(req: &Request) -> Value {
    req.body_json().expect("request body is JSON")
}

/// All text of an ADF document, space separated.
pub fn adf_text(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(t)) = o.get("text") {
                    out.push_str(t);
                    out.push(' ');
                }
                for (k, child) in o {
                    if k != "text" {
                        walk(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    out
}

/// The checked configuration `main` would build from `args`, with `env` as the environment.
pub fn checked_config(args: &[String], env: &[(&str, &str)]) -> triage::config::Config {
    checked_config_with_clock(args, env, triage::clock::Clock::system())
}

/// [`checked_config`], the run reading the time from `clock`.
pub fn checked_config_with_clock(
    args: &[String],
    env: &[(&str, &str)],
    clock: triage::clock::Clock,
) -> triage::config::Config {
    let cli = triage::config::cli::Cli::try_parse_from(args).expect("valid command line");
    let env: std::collections::HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (config, _) =
        triage::config::Config::from_cli_with_clock(&cli, true, &|k| env.get(k).cloned(), clock)
            .expect("valid configuration");
    config
}

/// Run the library as `main` does: parse, check the config (secrets from `env`), run.
pub async fn run_lib(args: &[String], env: &[(&str, &str)]) -> triage::Report {
    run_lib_until(args, env, std::future::pending()).await
}

/// [`run_lib`], with `shutdown` as its interrupt.
pub async fn run_lib_until(
    args: &[String],
    env: &[(&str, &str)],
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> triage::Report {
    triage::run(checked_config(args, env), shutdown)
        .await
        .expect("the run starts")
}

/// `POST /rest/api/3/issue` → 201 with ids 10000, 10001, ... and keys `{project}-1`, ...
pub fn create_mock(project: &str) -> wiremock::Mock {
    use std::sync::atomic::{AtomicU64, Ordering};
    let n = AtomicU64::new(0);
    let project = project.to_string();
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/rest/api/3/issue"))
        .respond_with(move |_: &Request| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            wiremock::ResponseTemplate::new(201)
                .set_body_json(created(10_000 + i, &format!("{project}-{}", i + 1)))
        })
        .named("POST issue (201)")
}

/// None of `secrets` appears in `text`.
pub fn assert_no_secret_in(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret in the output:\n{text}");
    }
}

/// A finished run's JSON summary (`--output json` on stdout), once its exit code is `code`
/// (stderr shown when it is not).
pub fn json_summary(out: &std::process::Output, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the summary is JSON")
}

/// A run's files: the input logs and where its report goes.
pub struct Case {
    _dir: tempfile::TempDir,
    pub input: PathBuf,
    pub report: PathBuf,
}

impl Case {
    pub fn new(logs: &str) -> Case {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("logs.jsonl");
        std::fs::write(&input, logs).expect("write logs");
        let report = dir.path().join("report.json");
        Case {
            _dir: dir,
            input,
            report,
        }
    }

    /// The report's `logs` entries.
    pub fn logs(&self) -> Vec<Value> {
        read_report(&self.report)["logs"]
            .as_array()
            .expect("logs")
            .clone()
    }
}
