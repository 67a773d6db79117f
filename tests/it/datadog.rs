//! Issue 3: the live Datadog source, against wiremock servers whose responses are the recorded
//! cassettes in tests/fixtures/datadog (see tests/fixtures/SOURCE.md).
//!
//! What a user would notice: which requests Datadog receives (path, keys, filter, cursor, page
//! size), how many logs are fetched and processed, how long rate limits make the run wait, exit
//! codes, and what stderr says (never a key). Library-level tests call `triage::run` with a
//! `Config` built as the binary builds it; CLI tests run the binary with a cleared environment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use clap::Parser;
use serde_json::{json, Value};
use wiremock::matchers::{any, body_partial_json, method, path};
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

const SEARCH: &str = "/api/v2/logs/events/search";
/// 3 pages: 2 logs + cursor, 1 log + cursor (a short page that still has a cursor), `{"data":[]}`.
const PAGINATION: &str = "Search-logs-returns-OK-response-with-pagination.json";
/// Distinctive fake keys, so a leak is easy to spot.
const API_KEY: &str = "ddapi-0f3c9a7e-TEST-KEY-NEVER-PRINTED";
const APP_KEY: &str = "ddapp-51b2e8d4-TEST-KEY-NEVER-PRINTED";
/// A realistic partial-result warning (`LogsWarning` example in openapi.yaml).
const WARNING_TITLE: &str =
    "One or several indexes are missing or invalid, results hold data from the other indexes";

// ---------------------------------------------------------------------------------------------
// Mock helpers

/// The recorded pages of the pagination cassette.
fn cassette_pages() -> Vec<Value> {
    let pages = cassette_bodies(PAGINATION);
    assert_eq!(pages.len(), 3, "the cassette holds three pages");
    pages
}

/// The cursor a page hands out (`meta.page.after`).
fn cursor_of(page: &Value) -> Option<&str> {
    page["meta"]["page"]["after"].as_str()
}

/// The log ids of these pages, in order.
fn ids(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["data"].as_array().cloned().unwrap_or_default())
        .map(|log| log["id"].as_str().expect("a logged id").to_string())
        .collect()
}

/// `page` as a short last page: its logs and the `meta` of a real finished search
/// (`Search-logs-returns-OK-response.json`), with no cursor and no `links.next`.
fn last_page(page: &Value) -> Value {
    let done = &cassette_bodies("Search-logs-returns-OK-response.json")[0];
    assert!(done["meta"]["status"] == "done" && done["meta"].get("page").is_none());
    json!({"data": page["data"].clone(), "meta": done["meta"].clone()})
}

/// Matches a search request without `page.cursor` (the first page of a listing).
struct FirstPage;

impl Match for FirstPage {
    fn matches(&self, request: &Request) -> bool {
        request
            .body_json::<Value>()
            .is_ok_and(|b| b["page"].get("cursor").is_none())
    }
}

/// When each named response was asked for.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(String, Instant)>>>);

impl Arrivals {
    fn of(&self, name: &str) -> Vec<Instant> {
        self.0
            .lock()
            .expect("arrivals lock")
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .collect()
    }

    fn first(&self, name: &str) -> Instant {
        *self
            .of(name)
            .first()
            .unwrap_or_else(|| panic!("{name} was never requested"))
    }
}

/// A response that notes the moment its request arrived (before any `set_delay`).
struct Stamped {
    name: String,
    arrivals: Arrivals,
    template: ResponseTemplate,
}

impl Respond for Stamped {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrivals
            .0
            .lock()
            .expect("arrivals lock")
            .push((self.name.clone(), Instant::now()));
        self.template.clone()
    }
}

fn stamped(name: &str, arrivals: &Arrivals, template: ResponseTemplate) -> Stamped {
    Stamped {
        name: name.to_string(),
        arrivals: arrivals.clone(),
        template,
    }
}

/// Serve `pages` as one listing: "page 1" for a search without a cursor, "page N" only for the
/// cursor page N-1 handed out. `tweak` may change a page's response (delay, headers).
/// A request no page matches gets a 400 and fails the test when the server is dropped.
async fn mount_listing_with(
    server: &MockServer,
    pages: &[Value],
    tweak: impl Fn(usize, ResponseTemplate) -> ResponseTemplate,
) -> Arrivals {
    let arrivals = Arrivals::default();
    for (i, page) in pages.iter().enumerate() {
        let name = format!("page {}", i + 1);
        let template = tweak(i, ResponseTemplate::new(200).set_body_json(page));
        let mock = Mock::given(method("POST")).and(path(SEARCH));
        let mock = if i == 0 {
            mock.and(FirstPage)
        } else {
            let cursor = cursor_of(&pages[i - 1]).expect("a page followed by another has a cursor");
            mock.and(body_partial_json(json!({"page": {"cursor": cursor}})))
        };
        mock.respond_with(stamped(&name, &arrivals, template))
            .named(name)
            .mount(server)
            .await;
    }
    unexpected_requests_fail(server).await;
    arrivals
}

async fn mount_listing(server: &MockServer, pages: &[Value]) -> Arrivals {
    mount_listing_with(server, pages, |_, t| t).await
}

/// The catch-all mounted last: says which request no mock expected.
async fn unexpected_requests_fail(server: &MockServer) {
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"errors": ["no mock matches this request"]})),
        )
        .with_priority(u8::MAX)
        .expect(0)
        .named("a request no mocked page matches")
        .mount(server)
        .await;
}

/// The search requests Datadog received, checked for method, path and both keys; their bodies.
async fn search_bodies(server: &MockServer) -> Vec<Value> {
    let requests = server.received_requests().await.expect("recording is on");
    requests
        .iter()
        .map(|r| {
            assert_eq!(r.method.as_str(), "POST");
            assert_eq!(r.url.path(), SEARCH);
            assert_eq!(r.headers["DD-API-KEY"], API_KEY);
            assert_eq!(r.headers["DD-APPLICATION-KEY"], APP_KEY);
            assert!(r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"));
            r.body_json::<Value>().expect("a JSON search body")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Runs

/// A dry-run `Config` against `server`, built as the binary builds it.
fn config_with_env(server: &MockServer, args: &[&str], env: &[(&str, &str)]) -> triage::Config {
    let uri = server.uri();
    let mut argv = vec!["triage", "--dry-run", "--dd-api-url", &uri];
    argv.extend_from_slice(args);
    let cli = triage::config::cli::Cli::try_parse_from(argv).expect("valid arguments");
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("DD_API_KEY".into(), API_KEY.into());
    env.insert("DD_APP_KEY".into(), APP_KEY.into());
    let (config, _notices) =
        triage::config::Config::from_cli(&cli, false, &|k| env.get(k).cloned())
            .expect("a valid configuration");
    config
}

fn config(server: &MockServer, args: &[&str]) -> triage::Config {
    config_with_env(server, args, &[])
}

/// The Datadog source on its own (no pipeline), page size 2, against `server`.
fn source(
    server: &MockServer,
    policy: triage::http::RetryPolicy,
) -> triage::source::datadog::DatadogSource {
    let config = config(server, &[]);
    let triage::config::SourceConfig::Datadog(dd) = config.source else {
        panic!("a Datadog source")
    };
    triage::source::datadog::DatadogSource {
        service: triage::http::Service::new("Datadog", None, policy).expect("an HTTP client"),
        api_base: config.site.api_base,
        config: dd,
        page_size: 2,
        limit: None,
        max_body_bytes: triage::source::datadog::MAX_BODY_BYTES,
    }
}

/// Run the source alone to the end: the ids of the logs it sent, and how it ended.
async fn fetch_directly(
    server: &MockServer,
    policy: triage::http::RetryPolicy,
) -> (Vec<String>, anyhow::Result<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let fetching = tokio::spawn(source(server, policy).run(tx));
    let mut events = Vec::new();
    while let Some(item) = rx.recv().await {
        if let triage::source::SourceItem::Event(event) = item {
            events.push(event.id);
        }
    }
    (events, fetching.await.expect("the source task finished"))
}

async fn run(config: triage::Config) -> triage::Report {
    triage::run(config, std::future::pending())
        .await
        .expect("the run completes with a report")
}

/// What a run of the binary printed.
struct CliRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The temporary working directory (holds `--report` files); removed on drop.
    dir: tempfile::TempDir,
}

impl CliRun {
    fn summary(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("--output json prints the summary ({e}):\n{}", self.stdout))
    }

    fn report(&self) -> Value {
        read_report(&self.dir.path().join("report.json"))
    }

    fn assert_no_key_leaked(&self) {
        for key in [API_KEY, APP_KEY] {
            assert!(
                !self.stdout.contains(key),
                "a key on stdout:\n{}",
                self.stdout
            );
            assert!(
                !self.stderr.contains(key),
                "a key on stderr:\n{}",
                self.stderr
            );
        }
    }
}

/// `triage` with the Datadog keys and `DD_API_URL` pointing at `server`.
fn triage_against(server: &MockServer) -> Triage {
    let mut t = triage();
    t.cmd
        .env("DD_API_KEY", API_KEY)
        .env("DD_APP_KEY", APP_KEY)
        .env("DD_API_URL", server.uri());
    t
}

/// Run the binary off the async runtime (the mock servers keep serving meanwhile).
async fn run_binary(t: Triage) -> CliRun {
    tokio::task::spawn_blocking(move || {
        let Triage { mut cmd, dir } = t;
        let out = cmd.output().expect("the binary runs");
        CliRun {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir,
        }
    })
    .await
    .expect("the binary's thread finished")
}

// ---------------------------------------------------------------------------------------------
// 1. Pagination, both kinds of last page

#[tokio::test]
async fn pages_follow_the_cursor_with_the_same_filter_until_an_empty_page() {
    let server = MockServer::start().await;
    let pages = cassette_pages();
    assert_eq!(pages[2], json!({"data": []}), "the recorded last page");
    mount_listing(&server, &pages).await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");

    let report = run(config(
        &server,
        &[
            "--batch-size",
            "2",
            "--query",
            "service:web status:error",
            "--from",
            "2026-11-23T09:00:00Z",
            "--to",
            "2026-11-23T10:15:00+01:00",
            "--report",
            report_path.to_str().unwrap(),
        ],
    ))
    .await;

    let s = &report.summary;
    assert_eq!(s.error, None);
    assert_eq!((s.fetched, s.processed, s.failed), (3, 3, 0));
    let bodies = search_bodies(&server).await;
    assert_eq!(bodies.len(), 3, "one request per page: {bodies:#?}");
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            body["filter"],
            json!({"query": "service:web status:error", "from": "2026-11-23T09:00:00.000Z",
                   "to": "2026-11-23T09:15:00.000Z", "indexes": ["*"]}),
            "page {} filter",
            i + 1
        );
        assert_eq!(body["sort"], "timestamp", "oldest first");
        assert_eq!(body["page"]["limit"], 2, "page.limit is --batch-size");
        match i {
            0 => assert!(body["page"].get("cursor").is_none(), "{body}"),
            _ => assert_eq!(body["page"]["cursor"].as_str(), cursor_of(&pages[i - 1])),
        }
    }
    // Every fetched log is in the report once, in the order Datadog listed them.
    let logged: Vec<String> = read_report(&report_path)["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, ids(&pages));
}

#[tokio::test]
async fn a_short_last_page_without_a_cursor_ends_the_listing() {
    let server = MockServer::start().await;
    let recorded = cassette_pages();
    let pages = [recorded[0].clone(), last_page(&recorded[1])];
    mount_listing(&server, &pages).await;

    // Date math is resolved once, at start, so every page asks for the same absolute window.
    let report = run(config(
        &server,
        &["--batch-size", "2", "--from", "now-2h", "--to", "now-5m"],
    ))
    .await;

    assert_eq!(report.summary.error, None);
    assert_eq!((report.summary.fetched, report.summary.processed), (3, 3));
    let bodies = search_bodies(&server).await;
    assert_eq!(bodies.len(), 2, "no request after a page without a cursor");
    assert_eq!(bodies[0]["filter"], bodies[1]["filter"]);
    assert_eq!(bodies[0]["filter"]["query"], "status:error");
    assert_eq!(bodies[1]["page"]["cursor"].as_str(), cursor_of(&pages[0]));
    let time = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(bodies[0]["filter"][k].as_str().unwrap()).unwrap()
    };
    assert_eq!(time("to") - time("from"), chrono::Duration::minutes(115));
}

// ---------------------------------------------------------------------------------------------
// 2. --limit

#[tokio::test]
async fn limit_stops_fetching_once_enough_logs_are_in_hand() {
    let pages = cassette_pages();
    for (limit, page_limits) in [("3", vec![2, 1]), ("2", vec![2])] {
        let server = MockServer::start().await;
        mount_listing(&server, &pages).await;

        let report = run(config(&server, &["--batch-size", "2", "--limit", limit])).await;

        let n: u64 = limit.parse().unwrap();
        assert_eq!(report.summary.error, None);
        assert_eq!((report.summary.fetched, report.summary.processed), (n, n));
        let sent: Vec<u64> = search_bodies(&server)
            .await
            .iter()
            .map(|b| b["page"]["limit"].as_u64().unwrap())
            .collect();
        assert_eq!(
            sent, page_limits,
            "--limit {limit}: fewer pages, the last asks only for what is left"
        );
    }
}

#[tokio::test]
async fn limit_counts_logs_not_records_that_were_skipped() {
    // Datadog can return a log without a message (a JSON log with attributes only): it is
    // skipped, and must not use up --limit, or fewer logs are processed than were asked for.
    let server = MockServer::start().await;
    let recorded = cassette_pages();
    let mut first = recorded[0].clone();
    first["data"][1]["attributes"]
        .as_object_mut()
        .unwrap()
        .remove("message");
    let pages = [first, last_page(&recorded[1])];
    mount_listing(&server, &pages).await;

    let report = run(config(&server, &["--batch-size", "2", "--limit", "2"])).await;

    let s = &report.summary;
    assert_eq!(s.error, None);
    assert_eq!(s.skipped, 1, "the log without a message");
    assert_eq!(s.processed - s.skipped, 2, "--limit 2 processes 2 logs");
    let sent: Vec<u64> = search_bodies(&server)
        .await
        .iter()
        .map(|b| b["page"]["limit"].as_u64().unwrap())
        .collect();
    assert_eq!(sent, [2, 1], "page 2 asks for the one log still wanted");
}

// ---------------------------------------------------------------------------------------------
// 3, 4. Rate limit and gateway error, then success

#[tokio::test]
async fn a_429_waits_for_x_ratelimit_reset_then_succeeds() {
    // Datadog's 429: no Retry-After, only the X-RateLimit-* family. The second set has no
    // Remaining, so the wait cannot come from pacing: the 429 itself must honour the reset.
    let full: &[(&str, &str)] = &[
        ("X-RateLimit-Limit", "300"),
        ("X-RateLimit-Period", "3600"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "1"),
        ("X-RateLimit-Name", "logs_search_requests"),
    ];
    let reset_only: &[(&str, &str)] = &[("X-RateLimit-Reset", "1")];
    for headers in [full, reset_only] {
        let server = MockServer::start().await;
        let arrivals = Arrivals::default();
        let mut too_many =
            ResponseTemplate::new(429).set_body_json(json!({"errors": ["Too many requests"]}));
        for (k, v) in headers {
            too_many = too_many.insert_header(*k, *v);
        }
        Mock::given(method("POST"))
            .and(path(SEARCH))
            .respond_with(stamped("429", &arrivals, too_many))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        let page = last_page(&cassette_pages()[0]);
        Mock::given(method("POST"))
            .and(path(SEARCH))
            .respond_with(stamped(
                "ok",
                &arrivals,
                ResponseTemplate::new(200).set_body_json(&page),
            ))
            .mount(&server)
            .await;

        let report = run(config(&server, &[])).await;

        assert_eq!(report.summary.error, None);
        assert_eq!(report.summary.processed, 2);
        let bodies = search_bodies(&server).await;
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0], bodies[1], "the retry is the same request");
        let waited = arrivals.first("ok") - arrivals.first("429");
        assert!(
            waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
            "retried {waited:?} after a 429 with {headers:?}"
        );
    }
}

#[tokio::test]
async fn a_page_that_times_out_is_retried() {
    use triage::http::RetryPolicy;
    let server = MockServer::start().await;
    let page = last_page(&cassette_pages()[0]);
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(&page)
                .set_delay(Duration::from_secs(2)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(200).set_body_json(&page))
        .mount(&server)
        .await;
    // The per-attempt timeout is not a flag (30 s by default): test it on the source directly.
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(300),
        base_backoff: Duration::from_millis(10),
        ..RetryPolicy::default()
    };

    let (events, result) = fetch_directly(&server, policy).await;

    result.expect("the timed-out page is fetched again");
    assert_eq!(events, ids(std::slice::from_ref(&page)));
    assert_eq!(search_bodies(&server).await.len(), 2);
}

#[tokio::test]
async fn the_rate_limit_flag_spaces_datadog_requests() {
    let server = MockServer::start().await;
    let recorded = cassette_pages();
    let pages = [recorded[0].clone(), last_page(&recorded[1])];
    let arrivals = mount_listing(&server, &pages).await;

    let report = run(config(&server, &["--batch-size", "2", "--rate-limit", "1"])).await;

    assert_eq!(report.summary.processed, 3);
    let gap = arrivals.first("page 2") - arrivals.first("page 1");
    assert!(
        gap >= Duration::from_millis(900),
        "1 call per second, yet {gap:?} apart"
    );
}

#[tokio::test]
async fn a_502_gateway_error_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(
            ResponseTemplate::new(502)
                .set_body_json(json!({"status": "error", "code": 502, "errors": ["Bad Gateway"]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(200).set_body_json(last_page(&cassette_pages()[0])))
        .mount(&server)
        .await;

    let report = run(config(&server, &[])).await;

    assert_eq!(report.summary.error, None);
    assert_eq!((report.summary.processed, report.summary.failed), (2, 0));
    assert_eq!(triage::exit_code(&report), 0);
    assert_eq!(search_bodies(&server).await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 5, 6, 7. Failures that end the run

#[tokio::test]
async fn a_persistent_5xx_on_page_two_fails_the_run_after_processing_page_one() {
    let server = MockServer::start().await;
    let pages = cassette_pages();
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(FirstPage)
        .respond_with(ResponseTemplate::new(200).set_body_json(&pages[0]))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .and(body_partial_json(
            json!({"page": {"cursor": cursor_of(&pages[0])}}),
        ))
        .respond_with(
            ResponseTemplate::new(502)
                .set_body_json(json!({"status": "error", "code": 502, "errors": ["Bad Gateway"]})),
        )
        .mount(&server)
        .await;
    unexpected_requests_fail(&server).await;
    let mut t = triage_against(&server);
    t.cmd
        .args(["--dry-run", "--batch-size", "2", "--output", "json"])
        .args(["--report", "report.json"]);

    let out = run_binary(t).await;

    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    let summary = out.summary();
    assert_eq!(
        (summary["fetched"].as_u64(), summary["processed"].as_u64()),
        (Some(2), Some(2))
    );
    let error = summary["error"].as_str().expect("summary.error is set");
    for words in ["2 logs", "processed", "Bad Gateway", "502"] {
        assert!(error.contains(words), "{words:?} not in {error:?}");
    }
    assert!(out.stderr.contains(error), "stderr:\n{}", out.stderr);
    // What was fetched before the failure is processed and reported.
    let report = out.report();
    assert_eq!(report["summary"]["error"], summary["error"]);
    let logged: Vec<&str> = report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["outcome"], "would_create");
            l["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(logged, ids(&pages[..1]));
    let page_2_attempts = search_bodies(&server).await.len() - 1;
    assert!(
        (2..=10).contains(&page_2_attempts),
        "page 2 tried {page_2_attempts} times: retried, but boundedly"
    );
}

#[tokio::test]
async fn a_403_exits_1_naming_the_keys_and_permission_without_printing_them() {
    let server = MockServer::start().await;
    let forbidden = &cassette_bodies("Validate-API-key-returns-Forbidden-response.json")[0];
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(403).set_body_json(forbidden))
        .expect(1) // never retried
        .mount(&server)
        .await;
    let mut t = triage_against(&server);
    t.cmd.args(["--dry-run", "-vv"]);

    let out = run_binary(t).await;

    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    for words in [
        "logs_read_data",
        "DD_API_KEY",
        "DD_APP_KEY",
        "403",
        "API key required",
    ] {
        assert!(
            out.stderr.contains(words),
            "{words:?} not on stderr:\n{}",
            out.stderr
        );
    }
    out.assert_no_key_leaked();
}

#[tokio::test]
async fn every_error_body_shape_gives_a_readable_run_error_in_the_apis_words() {
    let recorded =
        &cassette_bodies("Create-a-custom-destination-returns-Bad-Request-response.json")[0];
    let shapes = [
        // {"errors": ["..."]} (recorded)
        (
            recorded.clone(),
            vec!["The parameter 'forwarder_destination' is required"],
        ),
        // {"errors": [{"status", "title", "detail"}]} (JSONAPIErrorItem in openapi.yaml)
        (
            json!({"errors": [{"status": "400", "title": "Bad Request",
                               "detail": "Invalid query: unexpected ')' at position 14"}]}),
            vec![
                "Bad Request",
                "Invalid query: unexpected ')' at position 14",
            ],
        ),
        // the gateway's {"status": "error", "code", "errors": ["..."]}
        (
            json!({"status": "error", "code": 400, "errors": ["Request body is not valid JSON"]}),
            vec!["Request body is not valid JSON"],
        ),
    ];
    for (body, words) in shapes {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(SEARCH))
            .respond_with(ResponseTemplate::new(400).set_body_json(&body))
            .expect(1) // a 400 is not retried
            .mount(&server)
            .await;

        let report = run(config(&server, &[])).await;

        let error = report.summary.error.clone().expect("the run fails");
        assert_eq!(triage::exit_code(&report), 1);
        for w in words.iter().chain(&["HTTP 400", "0 logs"]) {
            assert!(error.contains(w), "{w:?} not in {error:?}");
        }
        assert!(!error.contains("{\""), "raw JSON in {error:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Partial results

#[tokio::test]
async fn partial_results_warn_once_count_in_the_summary_and_the_run_goes_on() {
    let server = MockServer::start().await;
    let recorded = cassette_pages();
    let partial = |mut page: Value| {
        page["meta"]["status"] = json!("timeout");
        page["meta"]["warnings"] = json!([{"code": "unknown_index", "title": WARNING_TITLE,
                                           "detail": "indexes: foo, bar"}]);
        page
    };
    // Both pages are partial: each says so, the user is told once.
    let pages = [
        partial(recorded[0].clone()),
        partial(last_page(&recorded[1])),
    ];
    mount_listing(&server, &pages).await;
    let mut t = triage_against(&server);
    t.cmd
        .args(["--dry-run", "--batch-size", "2", "--output", "json"]);

    let out = run_binary(t).await;

    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let summary = out.summary();
    assert_eq!(summary["processed"], 3, "the run goes on");
    assert_eq!(summary["error"], Value::Null);
    assert_eq!(
        summary["warnings"], 4,
        "counted per page: a timeout status and one warning on each of 2 pages"
    );
    for text in [WARNING_TITLE, "indexes: foo, bar", "timeout"] {
        assert_eq!(
            out.stderr.matches(text).count(),
            1,
            "{text:?} shown once on stderr:\n{}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Streaming: page one is worked on while page two is in flight

/// How long page 2's response is held back.
const PAGE_2_DELAY: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn the_source_hands_over_page_one_before_page_two_is_answered() {
    use triage::source::SourceItem;
    let server = MockServer::start().await;
    let pages = cassette_pages();
    let arrivals = mount_listing_with(&server, &pages, |i, t| match i {
        1 => t.set_delay(PAGE_2_DELAY),
        _ => t,
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let fetching = tokio::spawn(source(&server, Default::default()).run(tx));

    let mut first_event = None;
    let mut received = Vec::new();
    while let Some(item) = rx.recv().await {
        if let SourceItem::Event(event) = item {
            first_event.get_or_insert_with(Instant::now);
            received.push(event.id);
        }
    }
    fetching.await.unwrap().expect("the listing ends cleanly");

    assert_eq!(received, ids(&pages));
    let page_2_answered = arrivals.first("page 2") + PAGE_2_DELAY;
    let first_event = first_event.unwrap();
    assert!(
        first_event < page_2_answered,
        "the first log came {:?} after page 2 was answered",
        first_event - page_2_answered
    );
}

#[tokio::test]
async fn the_tickets_of_a_window_are_looked_up_together_once_its_pages_are_in() {
    // Observable from outside: in a dry run with Jira configured, each new problem's ticket is
    // looked up. The pages stream into the pipeline (see above), and new problems wait for the
    // window's end, so that each one's ticket is filed with the whole window's figures: their
    // lookups then go out together, in one search, after page 2 was answered.
    let datadog = MockServer::start().await;
    let pages = cassette_pages();
    let dd = mount_listing_with(&datadog, &pages, |i, t| match i {
        1 => t.set_delay(PAGE_2_DELAY),
        _ => t,
    })
    .await;
    let jira = MockServer::start().await;
    let jira_calls = Arrivals::default();
    Mock::given(method("GET"))
        .and(path("/rest/api/3/myself"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"accountId": "5b10a2844c20165700ede21g", "displayName": "Triage Bot"}),
        ))
        .mount(&jira)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(stamped(
            "search",
            &jira_calls,
            ResponseTemplate::new(200).set_body_json(json!({"issues": [], "isLast": true})),
        ))
        .mount(&jira)
        .await;
    let jira_uri = jira.uri();

    let report = run(config_with_env(
        &datadog,
        &[
            "--batch-size",
            "2",
            "--jira-url",
            &jira_uri,
            "--jira-project",
            "OPS",
            "--jira-email",
            "bot@example.com",
        ],
        &[("JIRA_API_TOKEN", "jira-token-TEST")],
    ))
    .await;

    assert_eq!(report.summary.error, None);
    assert_eq!(report.summary.processed, 3);
    let page_2_answered = dd.first("page 2") + PAGE_2_DELAY;
    let first_lookup = jira_calls.first("search");
    assert!(
        first_lookup >= page_2_answered,
        "a ticket lookup came {:?} before the window's last page was answered",
        page_2_answered - first_lookup
    );
    assert_eq!(jira_calls.of("search").len(), 1, "one batched search");
}

// ---------------------------------------------------------------------------------------------
// 10. Pacing from X-RateLimit-Remaining

/// The gap between the requests for page 1 and page 2 when page 1 carries `headers`.
async fn gap_after_page_one(headers: &[(&'static str, &'static str)]) -> Duration {
    let server = MockServer::start().await;
    let recorded = cassette_pages();
    let pages = [recorded[0].clone(), last_page(&recorded[1])];
    let arrivals = mount_listing_with(&server, &pages, |i, mut t| {
        if i == 0 {
            for (k, v) in headers {
                t = t.insert_header(*k, *v);
            }
        }
        t
    })
    .await;
    let report = run(config(&server, &["--batch-size", "2", "--no-rate-limit"])).await;
    assert_eq!(report.summary.error, None);
    assert_eq!(report.summary.processed, 3);
    arrivals.first("page 2") - arrivals.first("page 1")
}

#[tokio::test]
async fn no_requests_left_in_the_window_waits_for_the_reset() {
    let gap = gap_after_page_one(&[
        ("X-RateLimit-Limit", "10"),
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset", "1"),
        ("X-RateLimit-Period", "10"),
    ])
    .await;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
}

#[tokio::test]
async fn few_requests_left_are_spread_over_the_window() {
    // 1 of 10 left, window resets in 2 s: the calls left are spaced 2 s / 2 apart.
    let gap = gap_after_page_one(&[
        ("X-RateLimit-Limit", "10"),
        ("X-RateLimit-Remaining", "1"),
        ("X-RateLimit-Reset", "2"),
    ])
    .await;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
    // Plenty left: no pacing.
    let gap = gap_after_page_one(&[
        ("X-RateLimit-Limit", "10"),
        ("X-RateLimit-Remaining", "6"),
        ("X-RateLimit-Reset", "2"),
    ])
    .await;
    assert!(gap < Duration::from_millis(500), "{gap:?}");
}

// ---------------------------------------------------------------------------------------------
// 11, 12. The binary against a mock, and sites

#[tokio::test]
async fn the_binary_reads_datadog_through_dd_api_url() {
    let server = MockServer::start().await;
    mount_listing(&server, &cassette_pages()).await;
    let mut t = triage_against(&server);
    t.cmd
        .args(["--dry-run", "--batch-size", "2", "--output", "json"]);

    let out = run_binary(t).await;

    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let s = out.summary();
    assert_eq!(
        (s["fetched"].as_u64(), s["processed"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        (s["failed"].as_u64(), s["skipped"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s["would_create"], s["tickets"]);
    assert_eq!(s["error"], Value::Null);
    assert!(s["stages"]["fetch"]["p50_ms"].is_number(), "{s}");
    assert_eq!(search_bodies(&server).await.len(), 3);
    out.assert_no_key_leaked();
}

#[tokio::test]
async fn missing_datadog_keys_exit_1_naming_the_variables() {
    let mut t = triage();
    t.cmd.env("DD_API_KEY", API_KEY).arg("--dry-run");

    let out = run_binary(t).await;

    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("DD_APP_KEY"), "{}", out.stderr);
    out.assert_no_key_leaked();
}

#[tokio::test]
async fn an_unknown_dd_site_exits_2_naming_the_valid_sites() {
    let mut t = triage();
    t.cmd
        .env("DD_API_KEY", API_KEY)
        .env("DD_APP_KEY", APP_KEY)
        .env("DD_SITE", "datadoghq.org")
        .arg("--dry-run");

    let out = run_binary(t).await;

    assert_eq!(out.code, Some(2), "stderr:\n{}", out.stderr);
    for site in [
        "datadoghq.org",
        "datadoghq.com",
        "datadoghq.eu",
        "us3.datadoghq.com",
        "us5.datadoghq.com",
        "ap1.datadoghq.com",
        "ap2.datadoghq.com",
        "ddog-gov.com",
    ] {
        assert!(
            out.stderr.contains(site),
            "{site} not on stderr:\n{}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn ticket_links_use_the_sites_web_host_even_with_dd_api_url() {
    let server = MockServer::start().await;
    let pages = cassette_pages();
    mount_listing(&server, &pages).await;
    let mut t = triage_against(&server);
    t.cmd.env("DD_SITE", "datadoghq.eu").args([
        "--dry-run",
        "--batch-size",
        "2",
        "--report",
        "report.json",
    ]);

    let out = run_binary(t).await;

    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert_eq!(
        search_bodies(&server).await.len(),
        3,
        "DD_API_URL serves the API"
    );
    let report = out.report();
    let tickets = report["tickets"].as_array().unwrap();
    assert!(!tickets.is_empty());
    let all_ids = ids(&pages);
    for ticket in tickets {
        let description = ticket["draft"]["description"].to_string();
        assert!(
            description.contains("https://app.datadoghq.eu/logs?event="),
            "{description}"
        );
        assert!(
            all_ids
                .iter()
                .any(|id| description.contains(&format!("event={id}"))),
            "the link names a fetched log: {description}"
        );
        assert!(!description.contains("api.datadoghq.eu") && !description.contains("127.0.0.1"));
    }
}

// ---------------------------------------------------------------------------------------------
// 13. triage check

#[tokio::test]
async fn check_reports_datadog_ok_and_exits_0_when_only_datadog_is_configured() {
    let server = MockServer::start().await;
    let done = &cassette_bodies("Search-logs-returns-OK-response.json")[0];
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(200).set_body_json(done))
        .expect(1)
        .mount(&server)
        .await;
    let mut t = triage_against(&server);
    t.cmd.arg("check");

    let out = run_binary(t).await;

    assert_eq!(
        out.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let status = |service: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(service))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    assert_eq!(status("datadog").as_deref(), Some("OK"), "{}", out.stdout);
    assert_eq!(status("jira").as_deref(), Some("skipped"), "{}", out.stdout);
    let body = &search_bodies(&server).await[0];
    assert_eq!(body["page"]["limit"], 1, "a one-log search");
    out.assert_no_key_leaked();
}

#[tokio::test]
async fn check_reports_a_403_as_fail_and_exits_1() {
    let server = MockServer::start().await;
    let forbidden = &cassette_bodies("Validate-API-key-returns-Forbidden-response.json")[0];
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(403).set_body_json(forbidden))
        .mount(&server)
        .await;
    let mut t = triage_against(&server);
    t.cmd.arg("check");

    let out = run_binary(t).await;

    assert_eq!(
        out.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("datadog"))
        .expect("a datadog line");
    assert_eq!(line.split_whitespace().nth(1), Some("FAIL"), "{line}");
    for words in ["API key required", "logs_read_data", "DD_API_KEY"] {
        assert!(line.contains(words), "{words:?} not in {line:?}");
    }
    out.assert_no_key_leaked();
}
