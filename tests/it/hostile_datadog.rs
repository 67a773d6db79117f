//! A Datadog that misbehaves: a cursor that repeats, pages of logs already sent, a body too
//! large to hold, a log stamped far outside the window. Each must end in a clear message, never
//! in an endless loop, an exhausted memory or a checkpoint in the year 9999.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use clap::Parser;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SEARCH: &str = "/api/v2/logs/events/search";
const API_KEY: &str = "ddapi-hostile-TEST-KEY";
const APP_KEY: &str = "ddapp-hostile-TEST-KEY";

fn log(id: &str, timestamp: &str) -> Value {
    json!({"id": id, "type": "log", "attributes": {
        "status": "error", "service": "checkout", "host": "web-1", "timestamp": timestamp,
        "message": format!("payment {id} failed: upstream timed out"), "tags": ["env:prod"]}})
}

/// Serves page after page; `page(n)` builds the n-th response (0-based).
struct Pages<F: Fn(usize) -> Value + Send + Sync + 'static> {
    served: Arc<AtomicUsize>,
    page: F,
}

impl<F: Fn(usize) -> Value + Send + Sync + 'static> Respond for Pages<F> {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json((self.page)(n))
    }
}

async fn serve_pages(
    server: &MockServer,
    page: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> Arc<AtomicUsize> {
    let served = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(Pages {
            served: served.clone(),
            page,
        })
        .mount(server)
        .await;
    served
}

/// The Datadog source alone, as the binary configures it, against `server`.
fn source(server: &MockServer, max_body_bytes: usize) -> triage::source::datadog::DatadogSource {
    let uri = server.uri();
    let cli =
        triage::config::cli::Cli::try_parse_from(["triage", "--dry-run", "--dd-api-url", &uri])
            .expect("valid arguments");
    let env: HashMap<&str, &str> = [("DD_API_KEY", API_KEY), ("DD_APP_KEY", APP_KEY)].into();
    let (config, _) =
        triage::config::Config::from_cli(&cli, false, &|k| env.get(k).map(|v| v.to_string()))
            .expect("a valid configuration");
    let triage::config::SourceConfig::Datadog(dd) = config.source else {
        panic!("a Datadog source")
    };
    triage::source::datadog::DatadogSource {
        service: triage::http::Service::new("Datadog", None, Default::default())
            .expect("an HTTP client"),
        api_base: config.site.api_base,
        config: dd,
        page_size: 2,
        limit: None,
        max_body_bytes,
    }
}

/// Run the source to its end (bounded: a source that loops fails the test, not the suite).
async fn fetch(
    source: triage::source::datadog::DatadogSource,
) -> (Vec<String>, anyhow::Result<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(source.run(tx));
    let mut ids = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(item) = rx.recv().await {
            if let triage::source::SourceItem::Event(e) = item {
                ids.push(e.id);
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the source never ended: it loops");
    (ids, task.await.expect("the source task finished"))
}

#[tokio::test]
async fn a_repeating_cursor_fails_the_source_instead_of_looping() {
    let server = MockServer::start().await;
    // New logs on every page, but always the same cursor.
    let served = serve_pages(&server, |n| {
        json!({"data": [log(&format!("AQAA{n}"), "2026-11-23T09:00:00Z")],
               "meta": {"page": {"after": "c2FtZS1jdXJzb3I"}}})
    })
    .await;
    let (ids, result) = fetch(source(&server, 1 << 20)).await;
    let err = format!("{:#}", result.expect_err("the source fails"));
    assert!(err.contains("cursor of an earlier page"), "{err}");
    assert_eq!(ids, vec!["AQAA0", "AQAA1"], "each log once");
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pages_of_logs_already_fetched_fail_the_source_instead_of_looping() {
    let server = MockServer::start().await;
    // A fresh cursor each time, but always the same log.
    let served = serve_pages(&server, |n| {
        json!({"data": [log("AQAAsame", "2026-11-23T09:00:00Z")],
               "meta": {"page": {"after": format!("cursor-{n}")}}})
    })
    .await;
    let (ids, result) = fetch(source(&server, 1 << 20)).await;
    let err = format!("{:#}", result.expect_err("the source fails"));
    assert!(err.contains("only logs already fetched"), "{err}");
    assert_eq!(
        ids,
        vec!["AQAAsame"],
        "the log is counted once, not once per page"
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pages_of_records_already_fetched_that_are_not_logs_fail_the_source_too() {
    let server = MockServer::start().await;
    let served = serve_pages(&server, |n| {
        json!({"data": [{"id": 42, "type": "log", "attributes": {"status": "error", "message": ""}}],
               "meta": {"page": {"after": format!("cursor-{n}")}}})
    })
    .await;
    let (ids, result) = fetch(source(&server, 1 << 20)).await;
    let err = format!("{:#}", result.expect_err("the source fails"));
    assert!(err.contains("only logs already fetched"), "{err}");
    assert!(ids.is_empty());
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_body_past_the_cap_fails_the_source_with_a_clear_error() {
    let server = MockServer::start().await;
    serve_pages(
        &server,
        |_| json!({"data": [log("AQAAbig", "2026-11-23T09:00:00Z")], "padding": "x".repeat(4096)}),
    )
    .await;
    let (ids, result) = fetch(source(&server, 2048)).await;
    let err = format!("{:#}", result.expect_err("the source fails"));
    assert!(
        err.contains("larger than the 2048 bytes allowed") && err.contains("--batch-size"),
        "{err}"
    );
    assert!(ids.is_empty());
}

#[tokio::test]
async fn a_log_stamped_past_the_window_does_not_move_the_checkpoint_past_to() {
    let server = MockServer::start().await;
    serve_pages(&server, |_| {
        json!({"data": [log("AQAAfuture", "9999-12-31T00:00:00Z"),
                        log("AQAAnormal", "2026-11-23T09:55:00Z")]})
    })
    .await;
    mount_jira(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let out = run_live(&server, &state, &["--limit", "1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("outside the asked window"), "{stderr}");
    let uri = server.uri();
    let checkpoint = triage::state::StateStore::open_read_only(&state, scope(&uri))
        .unwrap()
        .expect("the run wrote its state")
        .checkpoint(&triage::state::Scope::datadog(&uri, "status:error"))
        .unwrap()
        .expect("an early stop moves the checkpoint up to the last log taken");
    assert_eq!(
        checkpoint.to_rfc3339(),
        "2026-11-23T09:59:00+00:00",
        "the checkpoint stops at the window's end (--to: now minus the ingest delay)"
    );
}

/// Jira Cloud, as far as a run that files new tickets needs it.
async fn mount_jira(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/rest/api/3/myself"))
        .respond_with(ResponseTemplate::new(200).set_body_json(myself_v3()))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(search_page(vec![])))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created(10001, "OPS-1")))
        .mount(server)
        .await;
}

/// A live run (not a dry run) at 10:00 against `server` for Datadog and Jira, with `state`.
async fn run_live(
    server: &MockServer,
    state: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let Triage { mut cmd, dir } = triage();
    cmd.env("DD_API_KEY", API_KEY)
        .env("DD_APP_KEY", APP_KEY)
        .env("DD_API_URL", server.uri())
        .env("JIRA_URL", server.uri())
        .env("JIRA_PROJECT", "OPS")
        .env("JIRA_EMAIL", "bot@example.com")
        .env("JIRA_API_TOKEN", "jira-token-TEST")
        .args(["--no-rate-limit", "--output", "json"])
        .args(["--now", "2026-11-23T10:00:00Z", "--state"])
        .arg(state)
        .args(extra);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap();
    drop(dir);
    out
}

fn scope(uri: &str) -> triage::state::Scope {
    triage::state::Scope {
        source: triage::state::Scope::datadog(uri, "status:error"),
        jira: triage::state::Scope::jira(uri, "OPS"),
    }
}

#[tokio::test]
async fn a_checkpoint_left_in_the_future_is_ignored_so_runs_fetch_again() {
    let server = MockServer::start().await;
    serve_pages(
        &server,
        |_| json!({"data": [log("AQAAnow", "2026-11-23T09:55:00Z")]}),
    )
    .await;
    mount_jira(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let uri = server.uri();
    triage::state::StateStore::open(&state, scope(&uri))
        .unwrap()
        .advance_checkpoint(
            &triage::state::Scope::datadog(&uri, "status:error"),
            "9999-12-31T00:00:00Z".parse().unwrap(),
            chrono::Duration::hours(6),
        )
        .unwrap();
    let out = run_live(&server, &state, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("ignoring the checkpoint"), "{stderr}");
    let searches: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == SEARCH)
        .map(|r| r.body_json().unwrap())
        .collect();
    assert_eq!(searches.len(), 1);
    // The default window: the 15 minutes before --to (now minus the ingest delay).
    assert_eq!(searches[0]["filter"]["from"], "2026-11-23T09:44:00.000Z");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["created"], 1);
}

#[tokio::test]
async fn a_chunked_body_without_a_length_is_cut_off_at_the_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that streams an endless page with no Content-Length.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streamed = Arc::new(AtomicUsize::new(0));
    let counter = streamed.clone();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 1024, "x".repeat(1024));
        // At most 64 MiB, far past the cap; the client hangs up long before.
        for _ in 0..64 * 1024 {
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            counter.fetch_add(1024, Ordering::SeqCst);
        }
    });
    let mock = MockServer::start().await; // only for the configuration helper
    let mut src = source(&mock, 16 * 1024);
    src.api_base = format!("http://{addr}");
    let (ids, result) = fetch(src).await;
    let err = format!("{:#}", result.expect_err("the source fails"));
    assert!(err.contains("larger than the 16384 bytes allowed"), "{err}");
    assert!(ids.is_empty());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops once the client hangs up")
        .unwrap();
    assert!(
        streamed.load(Ordering::SeqCst) < 8 * 1024 * 1024,
        "reading stopped near the cap, not at the end of the stream"
    );
}
