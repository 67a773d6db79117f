//! The pipeline core's promises, each against local mocks: the same report whatever the worker
//! count; an interrupt honoured in every phase; one deadline for a log, down to the HTTP layer,
//! and nothing outliving `run`; no SQLite call stalling the runtime; find before analyse; and
//! tickets that describe the whole run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use clap::Parser;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const V3: &str = "/rest/api/3";
const TOKEN: &str = "jira-api-token-SECRET-core";

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write input");
    p
}

const CLOUD_ENV: &[(&str, &str)] = &[("JIRA_API_TOKEN", TOKEN)];

async fn jira_server() -> MockServer {
    cloud_jira(false).await
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
        let summary = run_lib(&args, &[]).await.summary;
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

/// A small deterministic hash (FNV-1a), to decide which problems the fake Jira already knows
/// the same way in every run.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `--max-tickets 12` over 80 problems, a third of which Jira already has a ticket for, with a
/// Jira whose searches answer after random delays of 0–14 ms: which problems get the twelve
/// tickets must not depend on the worker count or on which search answers first. Whole
/// reports are compared, sequential against `--async` with 1, 4 and 32 workers, several times
/// each; and the twelve are the first twelve problems without a ticket, in arrival order (a
/// known problem takes no place under the cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tickets_picks_the_same_problems_in_async_as_in_sequential() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..1200u32 {
        let p = (i / 3) % 80;
        text.push_str(&log(
            &format!("log-{i:05}"),
            &format!("svc{p}"),
            &format!("host-{}", i % 7),
            i % 3600,
            &format!("request {i}"),
        ));
        text.push('\n');
    }
    let input = write(dir.path(), "logs.jsonl", &text);
    let server = jira_server().await;
    // Labels of the masking-only fingerprints (which a search also asks for, for tickets filed
    // before templates were learned) are never known: a third of the problems' own labels are.
    let masking_only: std::collections::HashSet<String> = text
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            let event = triage::event::LogEvent::from_value(value, || "no-id".into()).unwrap();
            label(
                triage::grouping::fingerprint::fingerprint(&event)
                    .fingerprint
                    .as_str(),
            )
        })
        .collect();
    let known = move |label: &str| !masking_only.contains(label) && fnv(label).is_multiple_of(3);
    let known_by_jira = known.clone();
    let seed =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
    let calls = AtomicU64::new(seed);
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |req: &Request| {
            // A different small delay for every search (xorshift on a random seed).
            let mut x = calls.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst) | 1;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every known label asked for (a search may look up many problems at once).
            let found: Vec<Value> = jql_labels(req)
                .iter()
                .filter(|l| known_by_jira(l))
                .map(|l| cloud_issue(30_000, &format!("OPS-{}", fnv(l) % 9000 + 1000), l, false))
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(search_page(found))
                .set_delay(Duration::from_millis(x % 15))
        })
        .mount(&server)
        .await;
    let mut reference: Option<Value> = None;
    for (n, extra) in [
        vec![],
        vec!["--async", "--workers", "32"],
        vec!["--async", "--workers", "4"],
        vec!["--async", "--workers", "32"],
        vec!["--async", "--workers", "1"],
        vec!["--async", "--workers", "32"],
        vec!["--async", "--workers", "4"],
        vec!["--async", "--workers", "32"],
    ]
    .into_iter()
    .enumerate()
    {
        let report_path = dir.path().join(format!("report-{n}.json"));
        let mut extra_args = vec![
            "--dry-run",
            "--no-state",
            "--max-tickets",
            "12",
            "--report",
            report_path.to_str().unwrap(),
        ];
        extra_args.extend(extra.iter().copied());
        let args = cloud_args(&server.uri(), &input, &extra_args);
        let summary = run_lib(&args, CLOUD_ENV).await.summary;
        assert_eq!(summary.processed, 1200);
        assert_eq!(summary.failed, 0, "{summary:?}");
        let report = comparable(&read_report(&report_path));
        match &reference {
            None => {
                // The sequential run: twelve would-be tickets, for the first twelve problems
                // (in arrival order) that Jira does not know.
                let tickets = report["tickets"].as_array().unwrap();
                let action = |t: &Value| t["action"].as_str().unwrap().to_string();
                let would: Vec<&Value> = tickets
                    .iter()
                    .filter(|t| action(t) == "would_create")
                    .collect();
                assert_eq!(would.len(), 12, "{summary:?}");
                let mut arrival: Vec<String> = Vec::new();
                for l in report["logs"].as_array().unwrap() {
                    let fp = l["fingerprint"].as_str().unwrap().to_string();
                    if !arrival.contains(&fp) {
                        arrival.push(fp);
                    }
                }
                assert_eq!(arrival.len(), 80);
                let unknown: Vec<&String> =
                    arrival.iter().filter(|fp| !known(&label(fp))).collect();
                let mut expected: Vec<&String> = unknown[..12].to_vec();
                expected.sort();
                let mut got: Vec<&str> = would
                    .iter()
                    .map(|t| t["fingerprint"].as_str().unwrap())
                    .collect();
                got.sort_unstable();
                assert_eq!(got, expected);
                let existing = tickets.iter().filter(|t| action(t) == "existing").count();
                assert_eq!(existing, 80 - unknown.len(), "every known problem found");
                assert!(existing > 0 && unknown.len() > 12, "the input tests both");
                reference = Some(report);
            }
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
    let report = run_lib_until(
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

/// Recurrence comments: three tickets exist, each comment takes 8 s to be answered. An
/// interrupt during those calls ends the phase after the grace period: exit 130, and the
/// occurrences stay pending for the next run. Sequentially one comment was in flight; with
/// `--async --workers 4` all three were, and all three are dropped alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_comments_are_posted_ends_the_run_after_the_grace_period() {
    for (mode, in_flight) in [(&[][..], 1), (&["--async", "--workers", "4"][..], 3)] {
        let dir = tempfile::tempdir().unwrap();
        let server = jira_server().await;
        let text: String = (0..12)
            .map(|i| log(&format!("l{i}"), &format!("svc{}", i % 3), "h", i, "") + "\n")
            .collect();
        let keys: HashMap<String, String> = text
            .lines()
            .take(3)
            .enumerate()
            .map(|(i, line)| (label(&fingerprint_of(line)), format!("OPS-{}", 9 + i)))
            .collect();
        let found = keys.clone();
        Mock::given(method("POST"))
            .and(path(format!("{V3}/search/jql")))
            .respond_with(move |req: &Request| {
                let issues = jql_labels(req)
                    .iter()
                    .filter_map(|l| {
                        let key = found.get(l)?;
                        Some(cloud_issue(20_001, key, l, false))
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(search_page(issues))
            })
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+/comment$")))
            .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(8)))
            .expect(in_flight)
            .mount(&server)
            .await;
        let input = write(dir.path(), "logs.jsonl", &text);
        let state = dir.path().join("state.db");
        let mut extra = vec![
            "--state",
            state.to_str().unwrap(),
            "--shutdown-grace",
            "300ms",
        ];
        extra.extend(mode);
        let started = Instant::now();
        let report = run_lib_until(
            &cloud_args(&server.uri(), &input, &extra),
            CLOUD_ENV,
            after(1000),
        )
        .await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "{mode:?}: took {took:?}");
        let s = &report.summary;
        assert!(s.interrupted, "{mode:?}: {s:?}");
        assert_eq!(
            (s.existing, s.duplicates, s.commented),
            (3, 9, 0),
            "{mode:?}: {s:?}"
        );
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
        // The tickets whose comment was cut off keep their counts for the next comment.
        let cut_off: Vec<String> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter_map(|r| r.url.path().strip_suffix("/comment").map(str::to_string))
            .filter_map(|p| p.rsplit('/').next().map(str::to_string))
            .collect();
        assert_eq!(cut_off.len() as u64, in_flight, "{mode:?}: {cut_off:?}");
        for key in &cut_off {
            assert!(keys.values().any(|k| k == key), "{key}");
            assert_eq!(
                store.comment_state(key).unwrap().pending,
                4,
                "{mode:?}: {key}"
            );
        }
        server.verify().await;
    }
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
    let report = run_lib_until(
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

const DD_SEARCH: &str = "/api/v2/logs/events/search";
const DD_ENV: &[(&str, &str)] = &[
    ("JIRA_API_TOKEN", TOKEN),
    ("DD_API_KEY", "ddapi-core-TEST-KEY"),
    ("DD_APP_KEY", "ddapp-core-TEST-KEY"),
];

/// The recorded Datadog listing (tests/fixtures/datadog, three pages: two logs, one, none)
/// served by cursor; page 2 answers after `slow_page_2` ms while that is not zero. Returns the
/// number of requests per page.
async fn datadog_listing(server: &MockServer, slow_page_2: Arc<AtomicU64>) -> Arc<[AtomicU64; 3]> {
    let pages = cassette_bodies("Search-logs-returns-OK-response-with-pagination.json");
    let cursor = |i: usize| {
        pages[i]["meta"]["page"]["after"]
            .as_str()
            .map(str::to_string)
    };
    let cursors = [None, cursor(0), cursor(1)];
    let asked: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let counted = asked.clone();
    Mock::given(method("POST"))
        .and(path(DD_SEARCH))
        .respond_with(move |req: &Request| {
            let body: Value = req.body_json().expect("a JSON search body");
            let wanted = body["page"]["cursor"].as_str().map(str::to_string);
            let Some(i) = cursors.iter().position(|c| *c == wanted) else {
                return ResponseTemplate::new(400);
            };
            counted[i].fetch_add(1, Ordering::SeqCst);
            let delay = if i == 1 {
                slow_page_2.load(Ordering::SeqCst)
            } else {
                0
            };
            ResponseTemplate::new(200)
                .set_body_json(&pages[i])
                .set_delay(Duration::from_millis(delay))
        })
        .mount(server)
        .await;
    asked
}

/// A Jira that remembers what it created (label → key): search finds those tickets (and, when
/// `known` says so, an older one), `POST issue` creates, updates and comments succeed. Returns
/// the created labels and the comments posted.
async fn remembering_jira(
    server: &MockServer,
    known: fn(&str) -> bool,
) -> (Arc<std::sync::Mutex<Vec<String>>>, Arc<AtomicU64>) {
    let created_labels: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let comments = Arc::new(AtomicU64::new(0));
    {
        let created_labels = created_labels.clone();
        Mock::given(method("POST"))
            .and(path(format!("{V3}/search/jql")))
            .respond_with(move |req: &Request| {
                // Every label asked for (a search may look up many problems at once).
                let labels = created_labels.lock().unwrap();
                let found: Vec<Value> = jql_labels(req)
                    .iter()
                    .filter_map(|wanted| match labels.iter().position(|l| l == wanted) {
                        Some(i) => Some(cloud_issue(
                            20_000 + i as u64,
                            &format!("OPS-{}", i + 1),
                            wanted,
                            false,
                        )),
                        None if known(wanted) => {
                            let n = fnv(wanted) % 9000 + 1000;
                            Some(cloud_issue(30_000 + n, &format!("OPS-{n}"), wanted, false))
                        }
                        None => None,
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(search_page(found))
            })
            .mount(server)
            .await;
    }
    {
        let created_labels = created_labels.clone();
        Mock::given(method("POST"))
            .and(path(format!("{V3}/issue")))
            .respond_with(move |req: &Request| {
                let mut labels = created_labels.lock().unwrap();
                labels.push(body_label(&json_of(req)));
                let key = format!("OPS-{}", labels.len());
                ResponseTemplate::new(201).set_body_json(created(10_000, &key))
            })
            .mount(server)
            .await;
    }
    Mock::given(method("PUT"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+$")))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
    (created_labels, comments)
}

/// A Jira Cloud run against `jira`, reading Datadog at `datadog`, with a state file.
fn datadog_args(jira: &str, datadog: &str, state: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = strings(&[
        "triage",
        "--dd-api-url",
        datadog,
        "--batch-size",
        "2",
        "--jira-url",
        jira,
        "--jira-project",
        "OPS",
        "--jira-email",
        "bot@example.com",
        "--no-rate-limit",
        "--state",
        state.to_str().unwrap(),
        "-q",
    ]);
    a.extend(strings(extra));
    a
}

/// Run the library, waiting (up to 20 s) for the run lock an earlier run's state writer may
/// still hold while it finishes what was queued.
async fn run_when_unlocked(args: &[String], env: &[(&str, &str)]) -> triage::Report {
    let cli = triage::config::cli::Cli::try_parse_from(args).expect("valid command line");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let started = Instant::now();
    loop {
        let (config, _) = triage::config::Config::from_cli(&cli, true, &|k| env.get(k).cloned())
            .expect("valid configuration");
        match triage::run(config, std::future::pending()).await {
            Ok(report) => return report,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                assert!(format!("{e:#}").contains("lock"), "{e:#}");
                after(100).await;
            }
            Err(e) => panic!("the run did not start: {e:#}"),
        }
    }
}

/// The ids of the logs a report took from its source, by outcome.
fn ids_by_outcome(report: &Value) -> HashMap<String, Vec<String>> {
    let mut by: HashMap<String, Vec<String>> = HashMap::new();
    for l in report["logs"].as_array().unwrap() {
        by.entry(l["outcome"].as_str().unwrap().to_string())
            .or_default()
            .push(l["id"].as_str().unwrap().to_string());
    }
    by
}

/// Fetching: Datadog's second page takes 8 s. An interrupt at 0.6 s stops the listing at once:
/// exit 130, the first page's logs processed (their tickets created), no page asked for after
/// the interrupt, and the checkpoint no further than what was fetched. The next run reads the
/// window again, skips what was done and processes the rest: every log handled once, no second
/// ticket for a problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_fetching_stops_paging_and_the_next_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let datadog = MockServer::start().await;
    let slow = Arc::new(AtomicU64::new(8000));
    let asked = datadog_listing(&datadog, slow.clone()).await;
    let jira = jira_server().await;
    let (created_labels, _) = remembering_jira(&jira, |_| false).await;
    Mock::given(method("POST"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+/comment$")))
        .respond_with(ResponseTemplate::new(201))
        .mount(&jira)
        .await;
    let report_1 = dir.path().join("report-1.json");
    let args = |report: &Path| {
        datadog_args(
            &jira.uri(),
            &datadog.uri(),
            &state,
            &[
                "--shutdown-grace",
                "500ms",
                "--report",
                report.to_str().unwrap(),
            ],
        )
    };
    let started = Instant::now();
    let first = run_lib_until(&args(&report_1), DD_ENV, after(600)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let s = &first.summary;
    assert!(s.interrupted, "{s:?}");
    assert_eq!(triage::exit_code(&first), 130);
    assert_eq!((s.fetched, s.processed, s.failed), (2, 2, 0), "{s:?}");
    let tickets_1 = created_labels.lock().unwrap().len();
    assert!(tickets_1 >= 1, "{s:?}");
    assert_eq!(
        asked[2].load(Ordering::SeqCst),
        0,
        "no page after the interrupt"
    );
    let by_1 = ids_by_outcome(&read_report(&report_1));

    slow.store(0, Ordering::SeqCst);
    let report_2 = dir.path().join("report-2.json");
    let second = run_when_unlocked(&args(&report_2), DD_ENV).await;
    let s = &second.summary;
    assert!(!s.interrupted && s.failed == 0, "{s:?}");
    assert_eq!(
        s.fetched, 3,
        "the window is read again from the checkpoint: {s:?}"
    );
    let by_2 = ids_by_outcome(&read_report(&report_2));
    let done_1: Vec<&String> = by_1.values().flatten().collect();
    // What the first run did is recognised; the rest is processed now.
    assert_eq!(
        by_2.get("skipped").map_or(0, Vec::len),
        done_1.len(),
        "{by_2:?}"
    );
    let all: Vec<String> = cassette_bodies("Search-logs-returns-OK-response-with-pagination.json")
        .iter()
        .flat_map(|p| p["data"].as_array().cloned().unwrap_or_default())
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    for id in &all {
        let first_time = done_1.contains(&id);
        let now = by_2
            .iter()
            .filter(|(o, _)| o.as_str() != "skipped")
            .any(|(_, ids)| ids.contains(id));
        assert!(
            first_time ^ now,
            "{id} handled once: first {by_1:?}, second {by_2:?}"
        );
    }
    let labels = created_labels.lock().unwrap().clone();
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        labels.len(),
        "one ticket per problem: {labels:?}"
    );
}

/// Saving state: a comment is being posted when another process takes the state file's write
/// lock for 4 s, and the interrupt comes. The state writer waits for the file; the run does
/// not: it ends within the grace period while the lock is still held (exit 130, a partial
/// summary), without starting another comment. The writer then finishes what was queued,
/// and the next run loses nothing: every log is recognised or processed, and no ticket gets a
/// second comment for the same occurrences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_the_state_writer_waits_ends_the_run_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let datadog = MockServer::start().await;
    let asked = datadog_listing(&datadog, Arc::new(AtomicU64::new(0))).await;
    let jira = jira_server().await;
    // Every problem already has a ticket: the end of the run comments on each.
    let _ = remembering_jira(&jira, |_| true).await;
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel::<()>();
    let locked_tx = std::sync::Mutex::new(Some(locked_tx));
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
    let comments = Arc::new(AtomicU64::new(0));
    {
        let (state, released, holder, comments) = (
            state.clone(),
            released.clone(),
            holder.clone(),
            comments.clone(),
        );
        Mock::given(method("POST"))
            .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+/comment$")))
            .respond_with(move |_: &Request| {
                comments.fetch_add(1, Ordering::SeqCst);
                // The first comment: another process takes the state file's write lock (once
                // the run's writer has committed what it holds) and keeps it for 4 s.
                if let Some(tx) = locked_tx.lock().unwrap().take() {
                    let (state, released) = (state.clone(), released.clone());
                    *holder.lock().unwrap() = Some(std::thread::spawn(move || {
                        let conn = rusqlite::Connection::open(&state).unwrap();
                        conn.busy_timeout(Duration::from_secs(10)).unwrap();
                        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
                        let _ = tx.send(());
                        std::thread::sleep(Duration::from_millis(4000));
                        released.store(true, Ordering::SeqCst);
                        conn.execute_batch("COMMIT").unwrap();
                    }));
                }
                ResponseTemplate::new(201).set_delay(Duration::from_millis(1500))
            })
            .mount(&jira)
            .await;
    }
    let report_1 = dir.path().join("report-1.json");
    let args = |report: &Path| {
        datadog_args(
            &jira.uri(),
            &datadog.uri(),
            &state,
            &[
                "--shutdown-grace",
                "2s",
                "--report",
                report.to_str().unwrap(),
            ],
        )
    };
    let interrupt = async move {
        let _ = locked_rx.await;
        after(100).await;
    };
    let first = run_lib_until(&args(&report_1), DD_ENV, interrupt).await;
    let s = &first.summary;
    assert!(
        !released.load(Ordering::SeqCst),
        "the run waited for the state file past its grace period"
    );
    assert!(s.interrupted, "{s:?}");
    assert_eq!(triage::exit_code(&first), 130);
    assert_eq!((s.fetched, s.processed, s.failed), (3, 3, 0), "{s:?}");
    assert_eq!(
        comments.load(Ordering::SeqCst),
        1,
        "no comment started after the interrupt"
    );
    assert_eq!(asked[2].load(Ordering::SeqCst), 1);
    let holder = holder.lock().unwrap().take().expect("the lock was taken");
    tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();

    let report_2 = dir.path().join("report-2.json");
    let second = run_when_unlocked(&args(&report_2), DD_ENV).await;
    let s = &second.summary;
    assert!(!s.interrupted && s.failed == 0, "{s:?}");
    let by_2 = ids_by_outcome(&read_report(&report_2));
    let handled: usize = by_2.values().map(Vec::len).sum();
    assert_eq!(handled, 3, "every log recognised or processed: {by_2:?}");
    assert_eq!(comments.load(Ordering::SeqCst), 1, "no comment sent twice");
    // The commented ticket starts again from zero; the others keep their occurrences pending
    // for their next comment: none is lost.
    let store = triage::state::StateStore::open_read_only(
        &state,
        triage::state::Scope {
            source: String::new(),
            jira: triage::state::Scope::jira(&jira.uri(), "OPS"),
        },
    )
    .unwrap()
    .unwrap();
    assert_eq!(first.tickets.len(), 3, "three problems");
    let mut commented = 0;
    for t in &first.tickets {
        let key = t.key.clone().expect("each problem has its ticket");
        let c = store.comment_state(&key).unwrap();
        if c.last_comment.is_some() && c.pending == 0 {
            commented += 1;
        } else {
            assert_eq!(c.pending, t.occurrences, "{key}: {c:?}");
        }
    }
    assert_eq!(commented, 1, "the one comment sent is recorded");
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
    let report = run_lib_until(
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

/// Nothing the run started outlives it, even interrupted while every server it waits on hangs:
/// Datadog's second page and Jira's search take a minute. The interrupt comes once the search
/// is at Jira; when the grace period ends, the source, the leaders and the batched lookup they
/// wait for are told to stop, and end by themselves. The run returns long before the servers
/// would answer, its logs failed and kept for a retry, and the owner of its tasks has none left
/// and aborted none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_leaves_no_task_behind() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let datadog = MockServer::start().await;
    let asked = datadog_listing(&datadog, Arc::new(AtomicU64::new(60_000))).await;
    let jira = jira_server().await;
    let (at_jira, searching) = tokio::sync::oneshot::channel::<()>();
    let at_jira = std::sync::Mutex::new(Some(at_jira));
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |_: &Request| {
            if let Some(tx) = at_jira.lock().unwrap().take() {
                let _ = tx.send(());
            }
            ResponseTemplate::new(200)
                .set_body_json(search_page(vec![]))
                .set_delay(Duration::from_secs(60))
        })
        .mount(&jira)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&jira)
        .await;
    // New problems wait for the input's end at most half of `--timeout` before they are
    // looked up: the search goes out after 1 s, well before the logs' deadline.
    let args = datadog_args(
        &jira.uri(),
        &datadog.uri(),
        &state,
        &[
            "--async",
            "--workers",
            "4",
            "--timeout",
            "2",
            "--shutdown-grace",
            "300ms",
        ],
    );
    let tasks = triage::tasks::Tasks::new();
    let page_2 = asked.clone();
    let interrupt = async move {
        let _ = searching.await;
        // The source is waiting for its second page by then, at the latest soon after.
        while page_2[1].load(Ordering::SeqCst) == 0 {
            after(10).await;
        }
    };
    let started = Instant::now();
    let report = triage::run_with(checked_config(&args, DD_ENV), interrupt, &tasks)
        .await
        .expect("the run starts");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let s = &report.summary;
    assert!(s.interrupted, "{s:?}");
    assert_eq!((s.fetched, s.failed, s.created), (2, 2, 0), "{s:?}");
    assert_eq!(asked[1].load(Ordering::SeqCst), 1, "page 2 was in flight");
    assert_eq!(tasks.live(), 0, "a task of the run outlived it");
    assert_eq!(
        tasks.aborted(),
        0,
        "every task ended by itself once told to stop"
    );
    jira.verify().await;
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
    let server = cloud_jira(true).await;
    create_mock("OPS").expect(1).mount(&server).await;
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
    let report = run_lib(&args, CLOUD_ENV).await;
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
    let handle =
        triage::state::StateHandle::open(&db, scope.clone(), true, triage::clock::Clock::system())
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

/// Group commit: durable writes queued together (the `begin` writes of a wave of creates) share
/// one commit, and each is on disk (seen by another connection) when its call returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_queued_together_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let scope = triage::state::Scope {
        source: "src".into(),
        jira: "J OPS".into(),
    };
    let handle =
        triage::state::StateHandle::open(&db, scope.clone(), true, triage::clock::Clock::system())
            .await
            .unwrap()
            .unwrap();
    handle.flush().await.unwrap();
    let before = handle.commits();
    // The writer is busy with a slow call while 64 durable writes queue up behind it.
    let busy = handle.call(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Ok(())
    });
    let writes = (0..64).map(|i| {
        let (handle, db, scope) = (handle.clone(), db.clone(), scope.clone());
        async move {
            handle
                .call_durable(move |s| s.remember_ticket(&format!("fp{i}"), &format!("OPS-{i}")))
                .await
                .unwrap();
            // Committed before the call returned: another connection sees it.
            let store = triage::state::StateStore::open_read_only(&db, scope)
                .unwrap()
                .unwrap();
            store.ticket_for(&format!("fp{i}")).unwrap()
        }
    });
    let (busy, seen) = tokio::join!(busy, futures::future::join_all(writes));
    busy.unwrap();
    let keys: Vec<String> = (0..64).map(|i| format!("OPS-{i}")).collect();
    assert_eq!(seen, keys.into_iter().map(Some).collect::<Vec<_>>());
    let commits = handle.commits() - before;
    assert!(
        commits <= 2,
        "{commits} commits for 64 durable writes queued together"
    );
    handle.close().await.unwrap();
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

    let first = run_lib(&args, &env).await;
    assert_eq!(first.summary.created, 3, "{:?}", first.summary);
    assert_eq!(model_calls().await, 3, "one analysis per new problem");
    assert!(first.tickets.iter().all(|t| t.summary == "Model title"));

    let second = run_lib(&args, &env).await;
    assert_eq!(second.summary.existing, 3, "{:?}", second.summary);
    assert_eq!(
        model_calls().await,
        3,
        "a problem with a ticket costs no analysis"
    );
    // Described by the cached analysis, not by the rules.
    assert!(second.tickets.iter().all(|t| t.summary == "Model title"));

    visible.store(false, Ordering::SeqCst);
    let third = run_lib(&args, &env).await;
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

/// Five logs of one problem on three hosts, from a file: the input ends before the ticket is
/// filed, so its one create carries the whole run (5 occurrences, the first and last seen, the
/// three hosts) and nothing is written after it; what it says is exactly the draft a dry run
/// of the same logs reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ticket_is_filed_with_the_whole_run_and_matches_the_dry_run_draft() {
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
    let server = cloud_jira(true).await;
    create_mock("OPS").expect(1).mount(&server).await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&server)
        .await;

    let report = run_lib_until(
        &cloud_args(&server.uri(), &input, &["--async", "--workers", "4"]),
        CLOUD_ENV,
        std::future::pending(),
    )
    .await;
    assert_eq!((report.summary.created, report.summary.updated), (1, 0));
    let reqs = server.received_requests().await.unwrap();
    let create = reqs
        .iter()
        .find(|r| r.method.as_str() == "POST" && r.url.path() == format!("{V3}/issue"))
        .unwrap();
    let occurrences = regex::Regex::new(r"Occurrences:?\s*(\d+)").unwrap();
    let fields = json_of(create)["fields"].clone();
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
    run_lib(&args, &[]).await;
    let draft = read_report(&report_path)["tickets"][0]["draft"].clone();
    assert_eq!(draft["summary"], fields["summary"]);
    assert_eq!(draft["labels"], fields["labels"]);
    assert_eq!(draft["description"], fields["description"]);
    server.verify().await;
}
