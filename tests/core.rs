//! The pipeline core's promises, each against local mocks: the same report whatever the worker
//! count; an interrupt honoured in every phase; one deadline for a log, down to the HTTP layer,
//! and nothing outliving `run`; no SQLite call stalling the runtime; find before analyse; and
//! tickets that describe the whole run.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const V3: &str = "/rest/api/3";
const TOKEN: &str = "jira-api-token-SECRET-core";

/// Run the library as `main` does, with `shutdown` as its interrupt.
async fn run_lib(
    args: &[String],
    env: &[(&str, &str)],
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> triage::Report {
    let cli = triage::cli::Cli::try_parse_from(args).expect("valid command line");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (config, _) = triage::config::Config::from_cli(&cli, true, &|k| env.get(k).cloned())
        .expect("valid configuration");
    triage::run(config, shutdown).await.expect("the run starts")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write input");
    p
}

/// A Jira Cloud run against `uri`, reading `input`.
fn cloud_args(uri: &str, input: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = strings(&[
        "triage",
        "--input",
        input.to_str().unwrap(),
        "--jira-url",
        uri,
        "--jira-project",
        "OPS",
        "--jira-email",
        "bot@example.com",
        "--no-rate-limit",
        "-q",
    ]);
    a.extend(strings(extra));
    a
}

const CLOUD_ENV: &[(&str, &str)] = &[("JIRA_API_TOKEN", TOKEN)];

async fn jira_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{V3}/myself")))
        .respond_with(ResponseTemplate::new(200).set_body_json(myself_v3()))
        .mount(&server)
        .await;
    server
}

/// `POST issue` → 201 with keys OPS-1, OPS-2, ...
fn create_mock() -> Mock {
    let n = AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(move |_: &Request| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            ResponseTemplate::new(201).set_body_json(created(10_000 + i, &format!("OPS-{}", i + 1)))
        })
}

fn fingerprint_of(line: &str) -> String {
    let value: Value = serde_json::from_str(line).expect("log line is JSON");
    let event = triage::event::LogEvent::from_value(value, || "no-id".into()).expect("a log");
    // The fingerprint a run gives this log as the first of its problem.
    triage::grouping::TemplateMiner::default()
        .fingerprint(&event)
        .fingerprint
        .as_str()
        .to_string()
}

/// One log of `service` on `host` at second `s`, with a message unique to `id`.
fn log(id: &str, service: &str, host: &str, s: u32, detail: &str) -> String {
    json!({
        "id": id, "type": "log",
        "attributes": {
            "status": "error", "service": service, "host": host,
            "timestamp": format!("2026-11-23T09:{:02}:{:02}Z", s / 60, s % 60),
            "message": format!("upstream call failed after {s}ms {detail}"),
        }
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Arrival order: the same report whatever the worker count
// ---------------------------------------------------------------------------------------------

/// A report without what legitimately differs between modes (timings, the mode itself), with
/// its logs in id order.
fn comparable(report: &Value) -> Value {
    let mut r = report.clone();
    for k in ["elapsed_ms", "logs_per_second", "stages", "mode", "workers"] {
        r["summary"].as_object_mut().unwrap().remove(k);
    }
    let mut logs = r["logs"].as_array().unwrap().clone();
    logs.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    r["logs"] = Value::Array(logs);
    r
}

/// 3,000 logs over 150 problems, in bursts of four logs of one problem, every log's message and
/// host its own: whichever log leads a problem shows in its ticket (sample, summary, draft).
/// Sequential and async runs with 1, 4 and 32 workers, several times each, must write the
/// very same report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_and_async_write_identical_reports_run_after_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..3000u32 {
        let p = (i / 4) % 150;
        text.push_str(&log(
            &format!("log-{i:05}"),
            &format!("svc{p}"),
            &format!("host-{}", i % 11),
            i % 3600,
            &format!("request {i}"),
        ));
        text.push('\n');
    }
    let input = write(dir.path(), "logs.jsonl", &text);
    let mut reference: Option<Value> = None;
    for (n, extra) in [
        vec![],
        vec!["--async", "--workers", "32"],
        vec!["--async", "--workers", "4"],
        vec!["--async", "--workers", "32"],
        vec!["--async", "--workers", "1"],
        vec!["--async", "--workers", "32"],
    ]
    .into_iter()
    .enumerate()
    {
        let report_path = dir.path().join(format!("report-{n}.json"));
        let mut args = strings(&[
            "triage",
            "--dry-run",
            "--no-state",
            "-q",
            "--input",
            input.to_str().unwrap(),
            "--report",
            report_path.to_str().unwrap(),
        ]);
        args.extend(strings(&extra));
        let summary = run_lib(&args, &[], std::future::pending()).await.summary;
        assert_eq!(summary.processed, 3000);
        let report = comparable(&read_report(&report_path));
        match &reference {
            None => reference = Some(report),
            Some(r) => assert!(
                *r == report,
                "run {n} ({extra:?}) differs from the sequential run"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Stop when asked, in every phase
// ---------------------------------------------------------------------------------------------

async fn after(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Draining: three logs of three problems whose Jira search takes 8 s. An interrupt at 0.3 s
/// with a 0.5 s grace ends the run well before the search would answer: exit 130, every log
/// failed and kept for a retry, nothing created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_logs_are_in_flight_ends_the_run_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let server = jira_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(search_page(vec![]))
                .set_delay(Duration::from_secs(8)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let text: String = (0..3)
        .map(|i| log(&format!("l{i}"), &format!("svc{i}"), "h", i, "") + "\n")
        .collect();
    let input = write(dir.path(), "logs.jsonl", &text);
    let started = Instant::now();
    let report = run_lib(
        &cloud_args(
            &server.uri(),
            &input,
            &["--async", "--workers", "4", "--shutdown-grace", "500ms"],
        ),
        CLOUD_ENV,
        after(300),
    )
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let s = &report.summary;
    assert!(s.interrupted, "{s:?}");
    assert_eq!(triage::exit_code(&report), 130);
    assert_eq!((s.processed, s.failed, s.created), (3, 3, 0), "{s:?}");
    server.verify().await;
}

/// Recurrence comments: the ticket exists, its comment takes 8 s to be answered. An interrupt
/// during that call ends the phase after the grace period: exit 130, and the occurrences stay
/// pending for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_comments_are_posted_ends_the_run_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let server = jira_server().await;
    let text: String = (0..4)
        .map(|i| log(&format!("l{i}"), "svc", "h", i, "") + "\n")
        .collect();
    let fp = fingerprint_of(text.lines().next().unwrap());
    let lbl = label(&fp);
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |_: &Request| {
            ResponseTemplate::new(200)
                .set_body_json(search_page(vec![cloud_issue(20_001, "OPS-9", &lbl, false)]))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue/OPS-9/comment")))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(8)))
        .expect(1)
        .mount(&server)
        .await;
    let input = write(dir.path(), "logs.jsonl", &text);
    let state = dir.path().join("state.db");
    let started = Instant::now();
    let report = run_lib(
        &cloud_args(
            &server.uri(),
            &input,
            &[
                "--state",
                state.to_str().unwrap(),
                "--shutdown-grace",
                "300ms",
            ],
        ),
        CLOUD_ENV,
        after(1000),
    )
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let s = &report.summary;
    assert!(s.interrupted, "{s:?}");
    assert_eq!((s.existing, s.duplicates, s.commented), (1, 3, 0), "{s:?}");
    assert_eq!(triage::exit_code(&report), 130);
    let store = triage::state::StateStore::open_read_only(
        &state,
        triage::state::Scope {
            source: String::new(),
            jira: triage::state::Scope::jira(&server.uri(), "OPS"),
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(store.comment_state("OPS-9").unwrap().pending, 4);
    server.verify().await;
}

/// An interrupt that comes after the logs are done stops the recurrence phase before it
/// starts: no comment is posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_comment_is_started_after_an_interrupt() {
    let dir = tempfile::tempdir().unwrap();
    let server = jira_server().await;
    let text = log("l0", "svc", "h", 0, "") + "\n";
    let lbl = label(&fingerprint_of(&text));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |_: &Request| {
            // The interrupt comes while the only log is being handled.
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            ResponseTemplate::new(200)
                .set_body_json(search_page(vec![cloud_issue(20_001, "OPS-9", &lbl, false)]))
                .set_delay(Duration::from_millis(200))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue/OPS-9/comment")))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let input = write(dir.path(), "logs.jsonl", &text);
    let report = run_lib(
        &cloud_args(&server.uri(), &input, &["--shutdown-grace", "5s"]),
        CLOUD_ENV,
        async {
            let _ = rx.await;
        },
    )
    .await;
    let s = &report.summary;
    assert!(s.interrupted, "{s:?}");
    assert_eq!((s.existing, s.failed, s.commented), (1, 0, 0), "{s:?}");
    server.verify().await;
}

/// A second SIGTERM ends the binary at once, even with a long grace period.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_run_at_once() {
    let server = jira_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(search_page(vec![]))
                .set_delay(Duration::from_secs(20)),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "logs.jsonl",
        &(log("l0", "svc", "h", 0, "") + "\n"),
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("triage"))
        .env_clear()
        .env("JIRA_API_TOKEN", TOKEN)
        .current_dir(dir.path())
        .args(
            &cloud_args(
                &server.uri(),
                &input,
                &["--no-state", "--shutdown-grace", "60s"],
            )[1..],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Wait until the run is at Jira, then interrupt twice.
    while server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .all(|r| !r.url.path().ends_with("/search/jql"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the run never searched"
        );
        after(20).await;
    }
    let term = || {
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(term().success());
    after(300).await;
    assert!(term().success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. One deadline, nothing outlives the run, a cancelled call is a failure
// ---------------------------------------------------------------------------------------------

/// Jira answers 429 "retry after 2 s" and the log's deadline is 1 s: the log fails at its
/// deadline, and no retry is sent after the run returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_outlives_the_log_deadline_or_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = jira_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
        .mount(&server)
        .await;
    let input = write(
        dir.path(),
        "logs.jsonl",
        &(log("l0", "svc", "h", 0, "") + "\n"),
    );
    let started = Instant::now();
    let report = run_lib(
        &cloud_args(&server.uri(), &input, &["--timeout", "1"]),
        CLOUD_ENV,
        std::future::pending(),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.summary.failed, 1);
    let searches = |reqs: Vec<Request>| {
        reqs.iter()
            .filter(|r| r.url.path().ends_with("/search/jql"))
            .count()
    };
    let at_return = searches(server.received_requests().await.unwrap());
    after(2500).await;
    assert_eq!(
        searches(server.received_requests().await.unwrap()),
        at_return,
        "a call was sent after the run returned"
    );
    assert_eq!(at_return, 1);
}

/// The circuit is open, its cool-off passes, and the one probe it lets through is cancelled
/// (its log's deadline): that counts as a failure, so after the next cool-off a call goes out
/// again instead of the circuit staying half-open for the rest of the run.
#[tokio::test]
async fn a_cancelled_probe_does_not_leave_the_circuit_half_open() {
    let server = MockServer::start().await;
    Mock::given(path("/down"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    Mock::given(path("/up"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let policy = triage::http::RetryPolicy {
        max_attempts: 1,
        ..triage::http::RetryPolicy::default()
    };
    let service = triage::http::Service::new("Test", None, policy)
        .unwrap()
        .with_breaker(1, Duration::from_millis(100));
    let url = |p: &str| format!("{}{p}", server.uri());
    let get = |u: String| {
        let service = service.clone();
        async move {
            service
                .send(|c| c.get(&u), triage::http::Retry::Idempotent)
                .await
        }
    };
    assert!(get(url("/down")).await.is_err(), "the circuit opens");
    after(150).await;
    let probe = tokio::time::timeout(Duration::from_millis(100), get(url("/slow"))).await;
    assert!(probe.is_err(), "the probe is cancelled");
    after(150).await;
    get(url("/up"))
        .await
        .expect("a call goes out once the cool-off after the cancelled probe is over");
}

// ---------------------------------------------------------------------------------------------
// 4. State off the runtime
// ---------------------------------------------------------------------------------------------

/// Another process holds the state file's write lock for 1.5 s when the run starts. On a
/// single-threaded runtime, a ticker must keep ticking meanwhile: no SQLite call waits for the
/// lock on the runtime's thread. The run then goes on normally.
#[tokio::test]
async fn a_busy_state_file_never_stalls_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    // Create the store, then lock it from another connection on another thread.
    drop(triage::state::StateStore::open(&state, triage::state::Scope::default()).expect("store"));
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = {
        let state = state.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&state).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    locked_rx.recv().unwrap();
    let server = jira_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(ResponseTemplate::new(200).set_body_json(search_page(vec![])))
        .mount(&server)
        .await;
    create_mock().expect(1).mount(&server).await;
    let input = write(
        dir.path(),
        "logs.jsonl",
        &(log("l0", "svc", "h", 0, "") + "\n"),
    );
    let args = cloud_args(&server.uri(), &input, &["--state", state.to_str().unwrap()]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticked = Arc::new(tokio::sync::Notify::new());
    let ticker = {
        let ticked = ticked.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                worst = worst.max(last.elapsed());
                last = Instant::now();
                ticked.notify_one();
            }
            worst
        })
    };
    // The ticker is running before the run starts.
    ticked.notified().await;
    let report = run_lib(&args, CLOUD_ENV, std::future::pending()).await;
    stop.store(true, Ordering::SeqCst);
    let worst = ticker.await.unwrap();
    holder.join().unwrap();
    assert_eq!(report.summary.created, 1, "{:?}", report.summary);
    assert!(
        worst < Duration::from_millis(400),
        "the runtime stalled for {worst:?}"
    );
    server.verify().await;
}

/// Outcomes are committed in batches, not one transaction per log.
#[tokio::test]
async fn outcomes_are_committed_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let scope = triage::state::Scope {
        source: "src".into(),
        jira: String::new(),
    };
    let handle = triage::state::StateHandle::open(&db, scope.clone(), true)
        .await
        .unwrap()
        .unwrap();
    for i in 0..2000 {
        handle
            .record(triage::state::Processed {
                id: format!("l{i}"),
                timestamp: None,
                failed: None,
                recurrence: None,
            })
            .unwrap();
    }
    handle.flush().await.unwrap();
    let commits = handle.commits();
    assert!(commits <= 8, "{commits} commits for 2000 outcomes");
    handle.close().await.unwrap();
    let store = triage::state::StateStore::open_read_only(&db, scope)
        .unwrap()
        .unwrap();
    assert!(store.is_seen("l0").unwrap() && store.is_seen("l1999").unwrap());
}

// ---------------------------------------------------------------------------------------------
// 5. Find before analyse, and the analysis cache
// ---------------------------------------------------------------------------------------------

fn llm_reply() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": "{\"category\":\"dependency\",\"severity\":\"high\",\"title\":\"Model title\",\"summary\":\"Model summary.\"}"}}]
    }))
}

/// Two runs over the same three problems: the first finds no ticket, asks the model once per
/// problem and creates; the second finds the tickets and asks nothing. A third run, where the
/// tickets are gone (search finds nothing, the remembered keys answer 404), creates again from
/// the cached analyses, still without asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_is_asked_only_for_problems_that_need_a_new_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(llm_reply())
        .mount(&llm)
        .await;
    let text: String = (0..9)
        .map(|i| log(&format!("l{i}"), &format!("svc{}", i % 3), "h", i, "") + "\n")
        .collect();
    let input = write(dir.path(), "logs.jsonl", &text);
    let state = dir.path().join("state.db");
    let server = jira_server().await;
    // What the fake Jira holds: label → key; `visible` says whether search shows them.
    let issues: Arc<std::sync::Mutex<Vec<(String, String)>>> = Arc::default();
    let visible = Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let (issues, visible) = (issues.clone(), visible.clone());
        Mock::given(method("POST"))
            .and(path(format!("{V3}/search/jql")))
            .respond_with(move |req: &Request| {
                let wanted = jql_labels(req);
                let found = if visible.load(Ordering::SeqCst) {
                    issues
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|(l, _)| wanted.contains(l))
                        .map(|(l, k)| cloud_issue(20_000, k, l, false))
                        .collect()
                } else {
                    vec![]
                };
                ResponseTemplate::new(200).set_body_json(search_page(found))
            })
            .mount(&server)
            .await;
    }
    {
        let issues = issues.clone();
        Mock::given(method("POST"))
            .and(path(format!("{V3}/issue")))
            .respond_with(move |req: &Request| {
                let mut issues = issues.lock().unwrap();
                let key = format!("OPS-{}", issues.len() + 1);
                issues.push((body_label(&json_of(req)), key.clone()));
                ResponseTemplate::new(201).set_body_json(created(10_000, &key))
            })
            .mount(&server)
            .await;
    }
    Mock::given(method("PUT"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+$")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+/comment$")))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+$")))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let env = [("JIRA_API_TOKEN", TOKEN), ("OPENAI_API_KEY", "sk-test")];
    let base = format!("{}/v1", llm.uri());
    let args = cloud_args(
        &server.uri(),
        &input,
        &[
            "--state",
            state.to_str().unwrap(),
            "--analyzer",
            "llm",
            "--llm-base-url",
            &base,
        ],
    );
    let model_calls = || async { llm.received_requests().await.unwrap().len() };

    let first = run_lib(&args, &env, std::future::pending()).await;
    assert_eq!(first.summary.created, 3, "{:?}", first.summary);
    assert_eq!(model_calls().await, 3, "one analysis per new problem");
    assert!(first.tickets.iter().all(|t| t.summary == "Model title"));

    let second = run_lib(&args, &env, std::future::pending()).await;
    assert_eq!(second.summary.existing, 3, "{:?}", second.summary);
    assert_eq!(
        model_calls().await,
        3,
        "a problem with a ticket costs no analysis"
    );
    // Described by the cached analysis, not by the rules.
    assert!(second.tickets.iter().all(|t| t.summary == "Model title"));

    visible.store(false, Ordering::SeqCst);
    let third = run_lib(&args, &env, std::future::pending()).await;
    assert_eq!(third.summary.created, 3, "{:?}", third.summary);
    assert_eq!(
        model_calls().await,
        3,
        "a re-created ticket uses the cached analysis"
    );
}

// ---------------------------------------------------------------------------------------------
// Tickets say what happened
// ---------------------------------------------------------------------------------------------

/// Five logs of one problem on three hosts: the ticket is created from the first log, then at
/// the end of the run brought up to date with 5 occurrences, the first and last seen, and the
/// three hosts; what it is left with is exactly the draft a dry run of the same logs reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ticket_is_left_with_the_whole_run_and_matches_the_dry_run_draft() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..5u32)
        .map(|i| {
            log(
                &format!("l{i}"),
                "checkout",
                &format!("web-{}", i % 3),
                10 + i * 30,
                "",
            ) + "\n"
        })
        .collect();
    let input = write(dir.path(), "logs.jsonl", &text);
    let server = jira_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(ResponseTemplate::new(200).set_body_json(search_page(vec![])))
        .mount(&server)
        .await;
    create_mock().expect(1).mount(&server).await;
    Mock::given(method("PUT"))
        .and(path(format!("{V3}/issue/OPS-1")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let report = run_lib(
        &cloud_args(&server.uri(), &input, &["--async", "--workers", "4"]),
        CLOUD_ENV,
        std::future::pending(),
    )
    .await;
    assert_eq!((report.summary.created, report.summary.updated), (1, 1));
    let reqs = server.received_requests().await.unwrap();
    let create = reqs
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == format!("{V3}/issue"))
        .unwrap();
    let occurrences = regex::Regex::new(r"Occurrences:?\s*(\d+)").unwrap();
    let created_text = adf_text(&json_of(create)["fields"]["description"]);
    assert_eq!(
        &occurrences.captures(&created_text).unwrap()[1],
        "1",
        "{created_text}"
    );
    let update = reqs.iter().find(|r| r.method.as_str() == "PUT").unwrap();
    let fields = json_of(update)["fields"].clone();
    let text = adf_text(&fields["description"]);
    assert_eq!(&occurrences.captures(&text).unwrap()[1], "5", "{text}");
    for host in ["web-0", "web-1", "web-2"] {
        assert!(text.contains(host), "{host} missing: {text}");
    }
    assert!(
        text.contains("2026-11-23T09:00:10Z") && text.contains("2026-11-23T09:02:10Z"),
        "{text}"
    );

    // The dry run of the same logs reports exactly what the real run left on the ticket.
    let report_path = dir.path().join("dry.json");
    let mut args = strings(&[
        "triage",
        "--dry-run",
        "--no-state",
        "-q",
        "--input",
        input.to_str().unwrap(),
        "--report",
        report_path.to_str().unwrap(),
    ]);
    args.extend(strings(&["--jira-project", "OPS"]));
    run_lib(&args, &[], std::future::pending()).await;
    let draft = read_report(&report_path)["tickets"][0]["draft"].clone();
    assert_eq!(draft["summary"], fields["summary"]);
    assert_eq!(draft["labels"], fields["labels"]);
    assert_eq!(draft["description"], fields["description"]);
    server.verify().await;
}
