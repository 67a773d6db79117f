//! The live Jira sink (issue 4), end to end against wiremock servers.
//!
//! Every response is built from the real fixtures in tests/fixtures/jira: the examples of
//! Atlassian's Cloud OpenAPI spec (search/jql, issue create 201, myself, project, comment), the
//! Jira Server v2 recordings of jira-ruby (search, create, comment, the empty page, a v2 user) and
//! go-jira's transitions (with status categories). Logs come from `--input` files; the Datadog
//! source is not involved. Every server ends with a catch-all mock that answers 418 and expects
//! no call, so any request a test did not plan for fails it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::{any, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PROJECT: &str = "OPS";
const EMAIL: &str = "triage-bot@example.com";
const TOKEN: &str = "jira-api-token-SECRET-5e1f";
const PAT: &str = "server-pat-SECRET-0b7d";
const V3: &str = "/rest/api/3";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Jira's error collection.
fn jira_error(messages: &[&str], errors: Value) -> Value {
    json!({"errorMessages": messages, "errors": errors})
}

// ---------------------------------------------------------------------------------------------
// Logs, runs, requests
// ---------------------------------------------------------------------------------------------

impl Case {
    /// The command line of a Jira Cloud run against `uri` (credentials come from `env`).
    fn cloud_args(&self, uri: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "triage",
            "--input",
            self.input.to_str().unwrap(),
            "--report",
            self.report.to_str().unwrap(),
            "--jira-url",
            uri,
            "--jira-project",
            PROJECT,
            "--jira-email",
            EMAIL,
            "--no-rate-limit",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}
const CLOUD_ENV: &[(&str, &str)] = &[("JIRA_API_TOKEN", TOKEN)];

/// The distinct fingerprints of a JSONL text, in order of first appearance, as the pipeline
/// computes them (one template miner over the logs in order, without a state store; a
/// template merged into an older one counts as that one).
fn fingerprints(jsonl: &str) -> Vec<String> {
    let mut miner = triage::grouping::TemplateMiner::default();
    let mut raw = Vec::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).expect("log line is JSON");
        let event =
            triage::event::LogEvent::from_value(value, || "no-id".into()).expect("a usable log");
        raw.push(miner.fingerprint(&event).fingerprint);
    }
    let mut out: Vec<String> = Vec::new();
    for fp in raw {
        let fp = miner.resolve(&fp).as_str().to_string();
        if !out.contains(&fp) {
            out.push(fp);
        }
    }
    out
}

async fn calls(server: &MockServer, verb: &str, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("recording on")
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == p)
        .collect()
}

fn auth_header(req: &Request) -> String {
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn cloud_priority(severity: &str) -> &'static str {
    match severity {
        "critical" => "Highest",
        "high" => "High",
        "medium" => "Medium",
        "low" => "Low",
        other => panic!("unexpected severity {other}"),
    }
}

fn server_priority(severity: &str) -> &'static str {
    match severity {
        "critical" => "Blocker",
        "high" => "Critical",
        "medium" => "Major",
        "low" => "Minor",
        other => panic!("unexpected severity {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Mocks
// ---------------------------------------------------------------------------------------------

/// Any request no other mock planned for: 418 naming it, and the test fails on verify.
async fn mount_catch_all(server: &MockServer) {
    Mock::given(any())
        .respond_with(|req: &Request| {
            ResponseTemplate::new(418).set_body_string(format!(
                "unexpected call: {} {}",
                req.method,
                req.url.path()
            ))
        })
        .with_priority(u8::MAX)
        .named("catch-all: a call no test planned for")
        .expect(0)
        .mount(server)
        .await;
}

async fn mount_myself(server: &MockServer, prefix: &str, body: Value) {
    Mock::given(method("GET"))
        .and(path(format!("{prefix}/myself")))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .named("GET myself")
        .expect(1)
        .mount(server)
        .await;
}

/// `POST /rest/api/3/search/jql` answered by `answer(label, call index)` for every label the
/// (batched) search asks for, the answers put together.
fn search_mock(answer: impl Fn(&str, u64) -> Vec<Value> + Send + Sync + 'static) -> Mock {
    let n = AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |req: &Request| {
            let call = n.fetch_add(1, Ordering::SeqCst);
            let issues = jql_labels(req)
                .iter()
                .flat_map(|l| answer(l, call))
                .collect();
            ResponseTemplate::new(200).set_body_json(search_page(issues))
        })
        .named("POST search/jql")
}

/// A comment on `key` → the spec's 201 example.
fn comment_mock(key: &str) -> Mock {
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue/{key}/comment")))
        .respond_with(ResponseTemplate::new(201).set_body_json(spec_example(
            "/rest/api/3/issue/{issueIdOrKey}/comment",
            "post",
            "201",
        )))
        .named(format!("POST issue/{key}/comment"))
}

/// `PUT {prefix}/issue/{key}`: the end-of-run update of a ticket this run created → 204.
fn update_mock(prefix: &str) -> Mock {
    Mock::given(method("PUT"))
        .and(path_regex(format!("^{prefix}/issue/[A-Z]+-[0-9]+$")))
        .respond_with(ResponseTemplate::new(204))
        .named("PUT issue (end-of-run update)")
}

/// A Jira Cloud server for one run: myself once, ticket updates, the catch-all last.
async fn cloud_server() -> MockServer {
    let server = MockServer::start().await;
    mount_myself(&server, V3, myself_v3()).await;
    update_mock(V3).mount(&server).await;
    mount_catch_all(&server).await;
    server
}

/// `n` logs over `problems` problems, with the first `lead` logs of problem 0 moved to the
/// front, so the other problems' leaders start only after problem 0 has its ticket.
fn problem_zero_first(n: usize, problems: usize, lead: usize) -> String {
    let text = generated_logs(n, problems);
    let lines: Vec<&str> = text.lines().collect();
    let first: Vec<usize> = (0..lines.len())
        .filter(|i| i % problems == 0)
        .take(lead)
        .collect();
    let mut out = String::new();
    for i in first
        .iter()
        .copied()
        .chain((0..lines.len()).filter(|i| !first.contains(i)))
    {
        out.push_str(lines[i]);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Jira Cloud: the create path and its bodies
// ---------------------------------------------------------------------------------------------

/// 100 logs of 5 problems, one leader at a time: one search and one create per problem, each body what
/// Jira Cloud accepts (ADF description validated), basic auth on every call, quoted JQL asking
/// for key and status, and the ids this run created passed in `reconcileIssues`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_creates_one_ticket_per_problem_with_bodies_jira_accepts() {
    let logs = problem_zero_first(100, 5, 10);
    let fps = fingerprints(&logs);
    assert_eq!(fps.len(), 5);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|_, _| vec![]).mount(&server).await;
    create_mock(PROJECT).expect(5).mount(&server).await;

    // One leader at a time.
    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--async", "--workers", "1"]),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!(
        (s.created, s.duplicates, s.failed, s.processed),
        (5, 95, 0, 100),
        "{s:?}"
    );
    let expected_auth = format!("Basic {}", base64(format!("{EMAIL}:{TOKEN}").as_bytes()));
    for req in server.received_requests().await.unwrap() {
        assert_eq!(
            auth_header(&req),
            expected_auth,
            "{} {}",
            req.method,
            req.url
        );
    }

    let severity: HashMap<String, &str> = report
        .tickets
        .iter()
        .map(|t| (label(&t.fingerprint), t.severity))
        .collect();
    let creates = calls(&server, "POST", &format!("{V3}/issue")).await;
    let mut keys_by_label = HashMap::new();
    for (i, req) in creates.iter().enumerate() {
        let body = json_of(req);
        let f = &body["fields"];
        assert_eq!(f["project"]["key"], PROJECT);
        assert_eq!(
            f["issuetype"]["name"], "Bug",
            "JIRA_ISSUE_TYPE defaults to Bug"
        );
        let summary = f["summary"].as_str().expect("summary");
        assert!(
            !summary.is_empty() && summary.chars().count() <= 255,
            "{summary}"
        );
        assert!(
            !summary.contains('\n') && !summary.contains('\r'),
            "{summary}"
        );
        let labels: Vec<&str> = f["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(labels.contains(&"triage"), "{labels:?}");
        assert!(labels
            .iter()
            .all(|l| !l.contains(char::is_whitespace) && l.len() <= 255));
        let fp_label = body_label(&body);
        assert!(fps.iter().any(|fp| label(fp) == fp_label), "{fp_label}");
        assert_eq!(
            f["priority"]["name"],
            cloud_priority(severity[&fp_label]),
            "priority mapped from severity"
        );
        triage::jira::adf::validate(&f["description"]).expect("the description is valid ADF");
        assert!(f["description"].is_object(), "v3 takes ADF, never a string");
        keys_by_label.insert(fp_label, format!("{PROJECT}-{}", i + 1));
    }
    assert_eq!(keys_by_label.len(), 5, "one create per problem");
    for t in &report.tickets {
        assert_eq!(t.action, "created");
        assert_eq!(
            t.key.as_deref(),
            Some(keys_by_label[&label(&t.fingerprint)].as_str())
        );
    }

    // Problem 0 led first, so its create came first; a search sent after its answer carries
    // its id (10000) in reconcileIssues (one that arrives after the create but was sent while
    // the create was out carries none yet: arrival order cannot tell them apart; the search-lag
    // simulations show the ids are passed). The lookups are batched: each problem's labels are
    // in exactly one search, fewer searches than problems.
    assert_eq!(body_label(&json_of(&creates[0])), label(&fps[0]));
    let all = server.received_requests().await.expect("recording on");
    let first_create = all
        .iter()
        .position(|r| r.method.as_str() == "POST" && r.url.path() == format!("{V3}/issue"))
        .expect("a create");
    let mut searched: Vec<String> = Vec::new();
    let mut searches = 0;
    for (i, req) in all.iter().enumerate() {
        if !(req.method.as_str() == "POST" && req.url.path() == format!("{V3}/search/jql")) {
            continue;
        }
        searches += 1;
        let body = json_of(req);
        // The problems' labels, and the masking-only label each first log had before
        // templates were learned (tickets filed by older versions carry it).
        let labels = jql_labels(req);
        let restriction = match labels.as_slice() {
            [one] => format!("labels = \"{one}\""),
            many => format!(
                "labels in ({})",
                many.iter()
                    .map(|l| format!("\"{l}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        assert!(labels.len() <= 10, "{labels:?}");
        assert_eq!(
            body["jql"].as_str().unwrap(),
            format!("project = \"{PROJECT}\" AND {restriction} ORDER BY created DESC")
        );
        let fields: Vec<&str> = body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            fields.contains(&"key") && fields.contains(&"status"),
            "{fields:?}"
        );
        let reconcile: Vec<i64> = body
            .get("reconcileIssues")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if i < first_create {
            assert!(reconcile.is_empty(), "nothing created yet: {body}");
        } else {
            assert!(
                reconcile.is_empty() || reconcile.contains(&10_000),
                "reconcileIssues lacks 10000: {body}"
            );
        }
        searched.extend(
            labels
                .into_iter()
                .filter(|l| fps.iter().any(|f| label(f) == *l)),
        );
    }
    let distinct: HashSet<&String> = searched.iter().collect();
    assert_eq!(distinct.len(), 5, "every problem searched: {searched:?}");
    assert_eq!(
        searched.len(),
        5,
        "each problem searched once: {searched:?}"
    );
    assert!(searches < 5, "the lookups are batched: {searches} searches");
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 2. Jira Server / Data Center (REST v2)
// ---------------------------------------------------------------------------------------------

/// `JIRA_API_VERSION=2` + `JIRA_PAT` against a Jira under a context path (`/jira`, as jira-ruby
/// recorded it): bearer auth, `/rest/api/2/...`, search with startAt/maxResults, wiki-markup
/// description and comment; answered with jira-ruby's recordings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_server_uses_bearer_auth_v2_paths_and_wiki_markup() {
    let logs = generated_logs(20, 2);
    let fps = fingerprints(&logs);
    let (new_label, old_label) = (label(&fps[0]), label(&fps[1]));
    let case = Case::new(&logs);
    let server = MockServer::start().await;
    let v2 = "/jira/rest/api/2";
    // jira-ruby has no /myself recording; its comment's author is a real v2 user object.
    let user = jira_fixture("jira-ruby/issue/10002/comment.post.json")["author"].clone();
    mount_myself(&server, v2, user).await;
    let ol = old_label.clone();
    Mock::given(method("POST"))
        .and(path(format!("{v2}/search")))
        .respond_with(move |req: &Request| {
            // The new problem: jira-ruby's empty page; the old one: its 11 open issues, which
            // carry its label (the search asked for it). Both may be in one batched search.
            let mut body = jira_fixture("jira-ruby/empty_issues.json");
            for l in jql_labels(req).iter().filter(|l| **l == ol) {
                let mut old = jira_fixture("jira-ruby/issue.json");
                for issue in old["issues"].as_array_mut().unwrap() {
                    issue["fields"]["labels"] = json!([l]);
                }
                let found = old["issues"].as_array().unwrap().clone();
                body["issues"].as_array_mut().unwrap().extend(found);
            }
            body["total"] = json!(body["issues"].as_array().unwrap().len());
            ResponseTemplate::new(200).set_body_json(body)
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{v2}/issue")))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(jira_fixture("jira-ruby/issue.post.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{v2}/issue/SAMPLEPROJECT-13/comment")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(jira_fixture("jira-ruby/issue/10002/comment.post.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    update_mock(v2).mount(&server).await;
    mount_catch_all(&server).await;

    let args: Vec<String> = [
        "triage",
        "--input",
        case.input.to_str().unwrap(),
        "--jira-url",
        &format!("{}/jira/", server.uri()),
        "--jira-project",
        PROJECT,
        "--jira-api-version",
        "2",
        "--no-rate-limit",
        "--async",
        "--workers",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let report = run_lib(&args, &[("JIRA_PAT", PAT)]).await;

    let s = &report.summary;
    assert_eq!(
        (s.created, s.existing, s.duplicates, s.failed, s.commented),
        (1, 1, 18, 0, 1),
        "{s:?}"
    );
    for req in server.received_requests().await.unwrap() {
        assert_eq!(auth_header(&req), format!("Bearer {PAT}"), "{}", req.url);
        assert!(req.url.path().starts_with(v2), "{}", req.url);
    }
    for req in calls(&server, "POST", &format!("{v2}/search")).await {
        let body = json_of(&req);
        assert_eq!(body["startAt"], 0, "{body}");
        assert!(body["maxResults"].as_u64().is_some_and(|n| n > 0), "{body}");
        assert!(body.get("reconcileIssues").is_none(), "v3 only: {body}");
        let jql = body["jql"].as_str().unwrap();
        assert!(
            jql.starts_with(&format!("project = \"{PROJECT}\" AND labels = \"triage-"))
                || jql.starts_with(&format!("project = \"{PROJECT}\" AND labels in (\"triage-")),
            "{jql}"
        );
    }
    let create = json_of(&calls(&server, "POST", &format!("{v2}/issue")).await[0]);
    let f = &create["fields"];
    assert_eq!(body_label(&create), new_label);
    let description = f["description"].as_str().expect("v2 takes a wiki string");
    assert!(description.contains("{code}"), "{description}");
    let ticket = report
        .tickets
        .iter()
        .find(|t| label(&t.fingerprint) == new_label)
        .unwrap();
    assert_eq!(f["priority"]["name"], server_priority(ticket.severity));
    assert_eq!(ticket.key.as_deref(), Some("SAMPLEPROJECT-4"));
    let old = report
        .tickets
        .iter()
        .find(|t| label(&t.fingerprint) == old_label)
        .unwrap();
    assert_eq!(
        (old.action, old.key.as_deref()),
        ("existing", Some("SAMPLEPROJECT-13"))
    );
    let comment = json_of(
        &calls(
            &server,
            "POST",
            &format!("{v2}/issue/SAMPLEPROJECT-13/comment"),
        )
        .await[0],
    );
    let text = comment["body"]
        .as_str()
        .expect("v2 comment body is a string");
    assert!(text.contains("10 occurrences"), "{text}");
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 3. An open ticket exists
// ---------------------------------------------------------------------------------------------

/// Each problem already has an open ticket: no create, and exactly one comment per ticket at
/// the end of the run, in valid ADF, with this run's occurrence count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_open_tickets_get_one_comment_each_and_no_create() {
    let logs = generated_logs(45, 3);
    let fps = fingerprints(&logs);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    let keys: HashMap<String, (u64, String)> = fps
        .iter()
        .enumerate()
        .map(|(i, fp)| {
            (
                label(fp),
                (20_100 + i as u64, format!("{PROJECT}-{}", 101 + i)),
            )
        })
        .collect();
    let k = keys.clone();
    search_mock(move |l, _| match k.get(l) {
        Some((id, key)) => vec![cloud_issue(*id, key, l, false)],
        None => vec![],
    })
    .expect(1..=3)
    .mount(&server)
    .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(ResponseTemplate::new(500))
        .named("POST issue: must not happen")
        .expect(0)
        .mount(&server)
        .await;
    for (_, key) in keys.values() {
        comment_mock(key).expect(1).mount(&server).await;
    }

    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--async", "--workers", "8"]),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!(
        (s.existing, s.duplicates, s.created, s.commented, s.failed),
        (3, 42, 0, 3, 0),
        "{s:?}"
    );
    for t in &report.tickets {
        assert_eq!(t.action, "existing");
        assert_eq!(t.key.as_ref(), Some(&keys[&label(&t.fingerprint)].1));
    }
    for (_, key) in keys.values() {
        let comments = calls(&server, "POST", &format!("{V3}/issue/{key}/comment")).await;
        assert_eq!(comments.len(), 1, "one comment on {key}");
        let body = json_of(&comments[0])["body"].clone();
        triage::jira::adf::validate(&body).expect("the comment is valid ADF");
        let text = adf_text(&body);
        assert!(text.contains("15 occurrences"), "{text}");
    }
    let logs = case.logs();
    assert!(logs
        .iter()
        .all(|l| ["existing", "duplicate"].contains(&l["outcome"].as_str().unwrap())));
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Only a Done ticket exists
// ---------------------------------------------------------------------------------------------

/// The problem's only ticket is Done: a new ticket is created whose description names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_ticket_gets_a_new_ticket_that_names_it_as_a_recurrence() {
    let logs = generated_logs(10, 1);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|l, _| vec![cloud_issue(10_007, "OPS-7", l, true)])
        .expect(1)
        .mount(&server)
        .await;
    create_mock(PROJECT).expect(1).mount(&server).await;

    let report = run_lib(&case.cloud_args(&server.uri(), &["--async"]), CLOUD_ENV).await;

    let s = &report.summary;
    assert_eq!(
        (s.created, s.duplicates, s.failed, s.commented),
        (1, 9, 0, 0),
        "{s:?}"
    );
    assert_eq!(report.tickets[0].key.as_deref(), Some("OPS-1"));
    let body = json_of(&calls(&server, "POST", &format!("{V3}/issue")).await[0]);
    let description = &body["fields"]["description"];
    triage::jira::adf::validate(description).expect("valid ADF");
    assert!(
        adf_text(description).contains("Recurrence of OPS-7"),
        "{}",
        adf_text(description)
    );
    server.verify().await;
}

/// With `--reopen`, the Done ticket is moved back to an open status (go-jira's transitions,
/// which carry status categories) and commented on; nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_transitions_the_done_ticket_and_comments_instead_of_creating() {
    let logs = generated_logs(10, 1);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|l, _| vec![cloud_issue(10_007, "OPS-7", l, true)])
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{V3}/issue/OPS-7/transitions")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(jira_fixture("go-jira/transitions.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue/OPS-7/transitions")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    comment_mock("OPS-7").expect(1).mount(&server).await;

    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--async", "--reopen"]),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!(
        (s.created, s.existing, s.duplicates, s.failed, s.commented),
        (0, 1, 9, 0, 1),
        "{s:?}"
    );
    assert_eq!(
        (report.tickets[0].action, report.tickets[0].key.as_deref()),
        ("reopened", Some("OPS-7"))
    );
    let transition =
        json_of(&calls(&server, "POST", &format!("{V3}/issue/OPS-7/transitions")).await[0]);
    // go-jira: "Close Issue" (id 2) leads to In Progress; "QA Review" (711) to Closed.
    assert_eq!(transition, json!({"transition": {"id": "2"}}));
    let comment = json_of(&calls(&server, "POST", &format!("{V3}/issue/OPS-7/comment")).await[0]);
    triage::jira::adf::validate(&comment["body"]).expect("valid ADF");
    assert!(adf_text(&comment["body"]).contains("10 occurrences"));
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Lagging search, slow create, per-log deadline
// ---------------------------------------------------------------------------------------------

/// Search never shows the new issue (lag), the create takes 2.5 s and `--timeout 1` cuts the
/// first leader off mid-create. The create still finishes; the logs that lead next find this
/// run's record of it and never send a second create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_by_its_deadline_mid_create_never_causes_a_second_create() {
    let logs = generated_logs(12, 1);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|_, _| vec![]).expect(1).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(created(10_000, "OPS-1"))
                .set_delay(Duration::from_millis(2500)),
        )
        .expect(1)
        .mount(&server)
        .await;

    let report = run_lib(
        &case.cloud_args(
            &server.uri(),
            &["--async", "--workers", "3", "--timeout", "1"],
        ),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!(s.created, 1, "{s:?}");
    assert!(s.failed >= 1, "the first leader timed out: {s:?}");
    assert_eq!(s.created + s.duplicates + s.failed, 12, "{s:?}");
    assert_eq!(report.tickets[0].key.as_deref(), Some("OPS-1"));
    let logs = case.logs();
    assert_eq!(logs[0]["outcome"], "failed", "{}", logs[0]);
    for l in &logs {
        match l["outcome"].as_str().unwrap() {
            "failed" => assert!(l["error"].as_str().unwrap().contains("timed out"), "{l}"),
            _ => assert_eq!(l["ticket"], "OPS-1", "{l}"),
        }
    }
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 6. A create whose response is lost
// ---------------------------------------------------------------------------------------------

/// The create answers 504 but went through: the label search that follows finds the issue,
/// so no second create is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_that_went_through_is_found_by_label_not_repeated() {
    // Sequential: problem 0 leads first, problem 1 second.
    let logs = generated_logs(6, 2);
    let fps = fingerprints(&logs);
    let lost_label = label(&fps[0]);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    let ll = lost_label.clone();
    // The lost problem: nothing before the create, the created issue after it.
    search_mock(move |l, call| match (l == ll, call) {
        (true, 0) => vec![],
        (true, _) => vec![cloud_issue(10_024, "OPS-24", l, false)],
        (false, _) => vec![],
    })
    .expect(2..=3)
    .mount(&server)
    .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(ResponseTemplate::new(504).set_body_string("Gateway Timeout"))
        .up_to_n_times(1)
        .with_priority(1)
        .named("POST issue: 504 once")
        .expect(1)
        .mount(&server)
        .await;
    // Only the second problem's create reaches this one.
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(ResponseTemplate::new(201).set_body_json(created(10_025, "OPS-25")))
        .named("POST issue: 201")
        .expect(1)
        .mount(&server)
        .await;

    let report = run_lib(&case.cloud_args(&server.uri(), &[]), CLOUD_ENV).await;

    let s = &report.summary;
    assert_eq!((s.created, s.duplicates, s.failed), (2, 4, 0), "{s:?}");
    let creates = calls(&server, "POST", &format!("{V3}/issue")).await;
    let lost_creates = creates
        .iter()
        .filter(|r| body_label(&json_of(r)) == lost_label)
        .count();
    assert_eq!(lost_creates, 1, "the lost create was not repeated");
    let lost = report
        .tickets
        .iter()
        .find(|t| label(&t.fingerprint) == lost_label)
        .unwrap();
    assert_eq!(
        (lost.action, lost.key.as_deref()),
        ("created", Some("OPS-24"))
    );
    // Problem 1 was looked up once (batched with problem 0, or alone), never again.
    let searches = calls(&server, "POST", &format!("{V3}/search/jql")).await;
    let other = label(&fps[1]);
    assert_eq!(
        searches
            .iter()
            .filter(|r| jql_labels(r).contains(&other))
            .count(),
        1
    );
    server.verify().await;
}

/// The create answers 504 and did not go through: with `--jira-search-lag 4s` the label is
/// searched 0, 0.5, 1.5, 3.5 and 4 s after the create was sent, still nothing, and only then
/// is the create sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_that_did_not_go_through_is_retried_after_searching() {
    let logs = generated_logs(3, 1);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|_, _| vec![]).expect(6).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(ResponseTemplate::new(504).set_body_string("Gateway Timeout"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    create_mock(PROJECT).expect(1).mount(&server).await;

    let started = Instant::now();
    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--jira-search-lag", "4s"]),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!((s.created, s.duplicates, s.failed), (1, 2, 0), "{s:?}");
    assert_eq!(report.tickets[0].key.as_deref(), Some("OPS-1"));
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "searched over 4 s"
    );
    // The order: search, create (504), five searches, create (201).
    let order: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.url.path().trim_start_matches(V3).to_string())
        .collect();
    assert_eq!(
        order,
        [
            "/search/jql",
            "/issue",
            "/search/jql",
            "/search/jql",
            "/search/jql",
            "/search/jql",
            "/search/jql",
            "/issue"
        ]
    );
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Rate limits and server errors
// ---------------------------------------------------------------------------------------------

/// One problem, three logs; the given fault mock is mounted ahead of the normal ones.
/// Returns the run's report, its duration and the server.
async fn run_with_fault(fault: Mock) -> (triage::Report, Duration, MockServer) {
    let case = Case::new(&generated_logs(3, 1));
    let server = cloud_server().await;
    fault.with_priority(1).mount(&server).await;
    search_mock(|_, _| vec![]).mount(&server).await;
    create_mock(PROJECT).mount(&server).await;
    let started = Instant::now();
    let report = run_lib(&case.cloud_args(&server.uri(), &[]), CLOUD_ENV).await;
    (report, started.elapsed(), server)
}

/// 429 with `Retry-After: 1` (search), 429 with `X-RateLimit-Reset` as an ISO time 1.2 s
/// ahead (create: a 429 is safe to repeat, so no lost-create search), 503 with
/// `Retry-After: 1` (search), and a plain 500 (search): each waits as told and ends with one
/// ticket. The four runs go concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_waited_out_and_the_ticket_created_once() {
    let search = || Mock::given(method("POST")).and(path(format!("{V3}/search/jql")));
    let retry_after_429 = search()
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .insert_header("RateLimit-Reason", "jira-burst-based"),
        )
        .up_to_n_times(1)
        .expect(1);
    let reset_calls = AtomicU64::new(0);
    let reset_429 = Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(move |_: &Request| {
            if reset_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let at = (chrono::Utc::now() + chrono::Duration::milliseconds(1200))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                ResponseTemplate::new(429)
                    .insert_header("X-RateLimit-Reset", at.as_str())
                    .insert_header("RateLimit-Reason", "jira-burst-based")
            } else {
                ResponseTemplate::new(201).set_body_json(created(10_000, "OPS-1"))
            }
        })
        .expect(2);
    let unavailable_503 = search()
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1);
    let plain_500 = search()
        .respond_with(ResponseTemplate::new(500).set_body_string("Internal Server Error"))
        .up_to_n_times(1)
        .expect(1);

    let (a, b, c, d) = tokio::join!(
        run_with_fault(retry_after_429),
        run_with_fault(reset_429),
        run_with_fault(unavailable_503),
        run_with_fault(plain_500),
    );
    for (name, (report, elapsed, server), min_wait, searches, creates) in [
        ("429 Retry-After on search", a, 1000, 2, 1),
        ("429 X-RateLimit-Reset on create", b, 1000, 1, 2),
        ("503 Retry-After on search", c, 1000, 2, 1),
        ("500 on search", d, 0, 2, 1),
    ] {
        let s = &report.summary;
        assert_eq!(
            (s.created, s.duplicates, s.failed),
            (1, 2, 0),
            "{name}: {s:?}"
        );
        assert_eq!(report.tickets[0].key.as_deref(), Some("OPS-1"), "{name}");
        assert!(
            elapsed >= Duration::from_millis(min_wait),
            "{name}: waited only {elapsed:?}"
        );
        assert_eq!(
            calls(&server, "POST", &format!("{V3}/search/jql"))
                .await
                .len(),
            searches,
            "{name}"
        );
        assert_eq!(
            calls(&server, "POST", &format!("{V3}/issue")).await.len(),
            creates,
            "{name}"
        );
        server.verify().await;
    }
}

/// Jira documents `X-RateLimit-Reset` as `yyyy-MM-ddTHH:mmZ` (minutes, no seconds). A reset ten
/// minutes ahead is beyond the 120 s the HTTP layer agrees to wait, so the search should give up
/// after one attempt and say why, instead of retrying on its own backoff while still limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_time_in_jiras_documented_minute_format_is_honoured() {
    let case = Case::new(&generated_logs(1, 1));
    let server = cloud_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(|_: &Request| {
            let at = (chrono::Utc::now() + chrono::Duration::minutes(10))
                .format("%Y-%m-%dT%H:%MZ")
                .to_string();
            ResponseTemplate::new(429)
                .insert_header("X-RateLimit-Reset", at.as_str())
                .insert_header("RateLimit-Reason", "jira-quota-tenant-based")
        })
        .expect(1)
        .mount(&server)
        .await;
    let report = run_lib(&case.cloud_args(&server.uri(), &[]), CLOUD_ENV).await;
    assert_eq!(report.summary.failed, 1);
    let error = case.logs()[0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("asked to wait"), "{error}");
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 8, 9. A 400 on create
// ---------------------------------------------------------------------------------------------

/// Jira refuses one problem's create with field errors: all that problem's logs fail with
/// Jira's own message (one create sent, not one per log), the other problems get their tickets,
/// and the run exits 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_with_field_errors_fails_that_problem_only() {
    let logs = generated_logs(30, 3);
    let fps = fingerprints(&logs);
    let refused = label(&fps[0]);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|_, _| vec![]).mount(&server).await;
    let r = refused.clone();
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .and(move |req: &Request| String::from_utf8_lossy(&req.body).contains(&r))
        .respond_with(ResponseTemplate::new(400).set_body_json(jira_error(
            &[],
            json!({"customfield_1": "Field is required"}),
        )))
        .with_priority(1)
        .named("POST issue: 400 for the refused problem")
        .mount(&server)
        .await;
    create_mock(PROJECT).expect(2).mount(&server).await;

    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--async", "--workers", "4"]),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!((s.created, s.failed), (2, 10), "{s:?}");
    assert_eq!(triage::exit_code(&report), triage::exit::SOME_FAILED);
    for l in case.logs() {
        if l["fingerprint"] == fps[0].as_str() {
            assert_eq!(l["outcome"], "failed", "{l}");
            let error = l["error"].as_str().unwrap();
            assert!(
                error.contains("HTTP 400") && error.contains("customfield_1: Field is required"),
                "{error}"
            );
        } else {
            assert!(l["ticket"].as_str().is_some(), "{l}");
        }
    }
    // The refusal is remembered: the problem's next leaders fail at once with Jira's message
    // instead of sending the same doomed search and create once per log.
    let refused_creates = calls(&server, "POST", &format!("{V3}/issue"))
        .await
        .iter()
        .filter(|r| body_label(&json_of(r)) == refused)
        .count();
    let refused_searches = calls(&server, "POST", &format!("{V3}/search/jql"))
        .await
        .iter()
        .filter(|r| jql_labels(r).contains(&refused))
        .count();
    assert_eq!((refused_creates, refused_searches), (1, 1));
    server.verify().await;
}

/// Jira refuses the priority field (not on the create screen): the create is sent again at once
/// without a priority, for every problem whose create was refused, even concurrently; no log
/// fails and no lost-create search is made (a 400 is an answer, not a lost response).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_priority_is_dropped_and_the_create_retried_once() {
    let logs = generated_logs(15, 3);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|_, _| vec![])
        .expect(1..=3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .and(|req: &Request| {
            req.body_json::<Value>()
                .is_ok_and(|b| b["fields"].get("priority").is_some())
        })
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(jira_error(
                    &[],
                    json!({"priority": "Field 'priority' cannot be set. It is not on the appropriate screen, or unknown."}),
                ))
                // All three creates are sent before the first refusal arrives.
                .set_delay(Duration::from_millis(300)),
        )
        .with_priority(1)
        .named("POST issue with a priority: 400")
        .expect(1..=3)
        .mount(&server)
        .await;
    create_mock(PROJECT).expect(3).mount(&server).await;

    let started = Instant::now();
    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--async", "--workers", "8"]),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!((s.created, s.duplicates, s.failed), (3, 12, 0), "{s:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no lost-create waits: {:?}",
        started.elapsed()
    );
    let creates = calls(&server, "POST", &format!("{V3}/issue")).await;
    let accepted: Vec<Value> = creates
        .iter()
        .map(json_of)
        .filter(|b| b["fields"].get("priority").is_none())
        .collect();
    assert_eq!(accepted.len(), 3);
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 10. --max-tickets under 64 workers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tickets_holds_exactly_under_64_workers() {
    let logs = generated_logs(200, 20);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    search_mock(|_, _| vec![])
        .expect(1..=20)
        .mount(&server)
        .await;
    create_mock(PROJECT).expect(3).mount(&server).await;

    let report = run_lib(
        &case.cloud_args(
            &server.uri(),
            &["--async", "--workers", "64", "--max-tickets", "3"],
        ),
        CLOUD_ENV,
    )
    .await;

    // 3 problems get a ticket (10 logs each); the 17 others are capped and skipped.
    let s = &report.summary;
    assert_eq!(
        (s.created, s.duplicates, s.skipped, s.failed),
        (3, 27, 170, 0),
        "{s:?}"
    );
    assert_eq!(
        report.tickets.len(),
        3,
        "capped problems have no ticket entry"
    );
    assert!(report
        .tickets
        .iter()
        .all(|t| t.action == "created" && t.key.is_some()));
    for l in case.logs() {
        if l["outcome"] == "skipped" {
            assert!(
                l["error"].as_str().unwrap().contains("--max-tickets"),
                "{l}"
            );
        } else {
            assert!(l["ticket"].as_str().is_some(), "{l}");
        }
    }
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 11. Dry run reads, never writes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_searches_but_never_writes() {
    let logs = generated_logs(20, 4);
    let fps = fingerprints(&logs);
    let (open_label, done_label) = (label(&fps[0]), label(&fps[1]));
    let case = Case::new(&logs);
    let server = cloud_server().await;
    let (ol, dl) = (open_label.clone(), done_label.clone());
    search_mock(move |l, _| {
        if l == ol {
            vec![cloud_issue(10_050, "OPS-50", l, false)]
        } else if l == dl {
            vec![cloud_issue(10_007, "OPS-7", l, true)]
        } else {
            vec![]
        }
    })
    .expect(1..=4)
    .mount(&server)
    .await;
    for (verb, p) in [
        ("POST", format!("^{V3}/issue$")),
        ("POST", format!("^{V3}/issue/[^/]+/comment$")),
        ("POST", format!("^{V3}/issue/[^/]+/transitions$")),
        ("PUT", "^/.*".to_string()),
    ] {
        Mock::given(method(verb))
            .and(path_regex(p.clone()))
            .respond_with(ResponseTemplate::new(500))
            .named(format!("dry run must not {verb} {p}"))
            .expect(0)
            .mount(&server)
            .await;
    }

    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--dry-run", "--async", "--workers", "8"]),
        CLOUD_ENV,
    )
    .await;

    let s = &report.summary;
    assert_eq!(
        (s.existing, s.would_create, s.created, s.commented, s.failed),
        (1, 3, 0, 0, 0),
        "{s:?}"
    );
    for t in &report.tickets {
        let l = label(&t.fingerprint);
        if l == open_label {
            assert_eq!((t.action, t.key.as_deref()), ("existing", Some("OPS-50")));
        } else {
            assert_eq!((t.action, t.key.as_deref()), ("would_create", None), "{l}");
        }
    }
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 12. Credentials refused
// ---------------------------------------------------------------------------------------------

/// Run the binary (blocking) off the async runtime.
async fn run_binary(
    t: Triage,
    args: Vec<String>,
) -> (Option<i32>, String, String, tempfile::TempDir) {
    tokio::task::spawn_blocking(move || {
        let Triage { mut cmd, dir } = t;
        let out = cmd.args(&args).output().expect("binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            dir,
        )
    })
    .await
    .expect("binary task")
}

fn cloud_cli(uri: &str) -> Triage {
    let mut t = triage();
    t.cmd
        .env("JIRA_URL", uri)
        .env("JIRA_PROJECT", PROJECT)
        .env("JIRA_EMAIL", EMAIL)
        .env("JIRA_API_TOKEN", TOKEN);
    t
}

fn assert_no_secret(out: &str) {
    let basic = base64(format!("{EMAIL}:{TOKEN}").as_bytes());
    assert_no_secret_in(out, &[TOKEN, &basic]);
}

/// 401 on `GET /myself`: exit 1 before any log, naming the variables to check, never the token.
/// The check runs alongside the first lookups: a slow refusal lets searches go out (and answer
/// at once), but nothing is acted on: no create, no other call, no run recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_at_start_exit_1_naming_the_variables() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{V3}/myself")))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string("Client must be authenticated to access this resource.")
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"issues": [], "isLast": true})),
        )
        .mount(&server)
        .await;
    mount_catch_all(&server).await;
    let case = Case::new(&generated_logs(10, 2));
    let state = case.input.with_extension("db");
    let (code, stdout, stderr, _dir) = run_binary(
        cloud_cli(&server.uri()),
        [
            "--input",
            case.input.to_str().unwrap(),
            "--async",
            "--workers",
            "4",
            "--state",
            state.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    let runs: i64 = rusqlite::Connection::open(&state)
        .unwrap()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 0, "a run refused at start is not recorded");
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("JIRA_EMAIL") && stderr.contains("JIRA_API_TOKEN"),
        "{stderr}"
    );
    assert!(stderr.contains("401"), "{stderr}");
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
    server.verify().await;
}

/// `/myself` passes but a search gets 401 (a token revoked mid-run): the run stops taking logs
/// and making calls (no more searches than the 4 leaders in flight) and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_mid_run_stop_the_run_with_exit_1() {
    let server = cloud_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(ResponseTemplate::new(401).set_body_json(jira_error(
            &["Client must be authenticated to access this resource."],
            json!({}),
        )))
        .mount(&server)
        .await;
    let case = Case::new(&generated_logs(100, 20));
    let (code, stdout, stderr, _dir) = run_binary(
        cloud_cli(&server.uri()),
        [
            "--input",
            case.input.to_str().unwrap(),
            "--async",
            "--workers",
            "4",
            "--output",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    )
    .await;
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let summary: Value = serde_json::from_str(&stdout).expect("the summary is printed");
    // Logs read ahead of the workers (their tickets looked up in one batched search) are not
    // processed once the credentials are refused: none of them is created.
    assert_eq!(summary["created"].as_u64(), Some(0), "{summary}");
    let error = summary["error"].as_str().expect("summary.error");
    assert!(
        error.contains("401") && error.contains("JIRA_API_TOKEN"),
        "{error}"
    );
    assert!(
        calls(&server, "POST", &format!("{V3}/search/jql"))
            .await
            .len()
            <= 4
    );
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 13. triage check
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_jira_ok_or_the_reason_it_failed() {
    // Project found.
    let server = cloud_server().await;
    Mock::given(method("GET"))
        .and(path(format!("{V3}/project/{PROJECT}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(spec_example(
            "/rest/api/3/project/{projectIdOrKey}",
            "get",
            "200",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let (code, stdout, stderr, _dir) =
        run_binary(cloud_cli(&server.uri()), vec!["check".into()]).await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let jira_line = stdout
        .lines()
        .find(|l| l.starts_with("jira"))
        .expect("a jira line");
    assert_eq!(
        jira_line.split_whitespace().nth(1),
        Some("OK"),
        "{jira_line}"
    );
    assert_no_secret(&stdout);
    server.verify().await;

    // Project missing.
    let server = cloud_server().await;
    Mock::given(method("GET"))
        .and(path(format!("{V3}/project/{PROJECT}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(jira_error(
            &["No project could be found with key 'OPS'."],
            json!({}),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let (code, stdout, stderr, _dir) =
        run_binary(cloud_cli(&server.uri()), vec!["check".into()]).await;
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let jira_line = stdout
        .lines()
        .find(|l| l.starts_with("jira"))
        .expect("a jira line");
    assert_eq!(
        jira_line.split_whitespace().nth(1),
        Some("FAIL"),
        "{jira_line}"
    );
    assert!(
        jira_line.contains("No project could be found"),
        "{jira_line}"
    );
    assert_no_secret(&stdout);
    assert_no_secret(&stderr);
    server.verify().await;
}

// ---------------------------------------------------------------------------------------------
// 14. Load: 1,000 logs, 20 problems, 64 workers, a slow and flaky Jira
// ---------------------------------------------------------------------------------------------

/// A small Jira Cloud: it stores the issues it creates, shows an issue to search only 500 ms
/// after its creation (search lag) unless its id is in `reconcileIssues`, answers after 0–50 ms,
/// and answers about one request in ten with `503 Retry-After: 0`. Of the creates that get a
/// 503, every second one has gone through anyway (a gateway gave up on it), and a problem's
/// create is failed at most once; the first two creates always fail. The "randomness" is a seeded hash of the request's sequence
/// number.
struct FakeJira {
    seq: AtomicU64,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    /// (id, key, label, created at)
    issues: Vec<(u64, String, String, Instant)>,
    create_failed: HashSet<String>,
    creates_seen: u64,
    /// "METHOD path" → status → count
    counts: BTreeMap<String, BTreeMap<u16, u64>>,
}

const FAKE_SEED: u64 = 0x7472_6961_6765;
const FAKE_LAG: Duration = Duration::from_millis(500);

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FakeJira {
    fn new() -> Self {
        FakeJira {
            seq: AtomicU64::new(0),
            state: Mutex::new(FakeState::default()),
        }
    }

    fn respond(&self, req: &Request) -> ResponseTemplate {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let r = splitmix64(FAKE_SEED ^ n);
        let delay = Duration::from_millis(r % 51);
        let unlucky = (r >> 32).is_multiple_of(10);
        let endpoint = format!("{} {}", req.method, req.url.path());
        let mut st = self.state.lock().unwrap();
        let unavailable = ResponseTemplate::new(503)
            .insert_header("Retry-After", "0")
            .set_body_string("Service Unavailable");
        let (status, template) = match endpoint.as_str() {
            e if e.starts_with("PUT /rest/api/3/issue/") => (204, ResponseTemplate::new(204)),
            "GET /rest/api/3/myself" if unlucky => (503, unavailable),
            "GET /rest/api/3/myself" => {
                (200, ResponseTemplate::new(200).set_body_json(myself_v3()))
            }
            "POST /rest/api/3/search/jql" if unlucky => (503, unavailable),
            "POST /rest/api/3/search/jql" => {
                let body = json_of(req);
                let wanted = jql_labels(req);
                let reconcile: Vec<u64> = body["reconcileIssues"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                let found = st
                    .issues
                    .iter()
                    .filter(|(id, _, l, at)| {
                        wanted.contains(l) && (at.elapsed() >= FAKE_LAG || reconcile.contains(id))
                    })
                    .map(|(id, key, l, _)| cloud_issue(*id, key, l, false))
                    .collect();
                (
                    200,
                    ResponseTemplate::new(200).set_body_json(search_page(found)),
                )
            }
            "POST /rest/api/3/issue" => {
                let body = json_of(req);
                let l = body_label(&body);
                // The first two creates always fail, so every run has a lost create of each kind.
                st.creates_seen += 1;
                let fail = (unlucky || st.creates_seen <= 2) && st.create_failed.insert(l.clone());
                // Every second lost create had gone through.
                if !fail || st.create_failed.len().is_multiple_of(2) {
                    let id = 10_000 + st.issues.len() as u64;
                    let key = format!("{PROJECT}-{}", st.issues.len() + 1);
                    st.issues.push((id, key.clone(), l, Instant::now()));
                    if !fail {
                        (
                            201,
                            ResponseTemplate::new(201).set_body_json(created(id, &key)),
                        )
                    } else {
                        (503, unavailable)
                    }
                } else {
                    (503, unavailable)
                }
            }
            _ => (
                418,
                ResponseTemplate::new(418).set_body_string(format!("unexpected call: {endpoint}")),
            ),
        };
        *st.counts
            .entry(endpoint)
            .or_default()
            .entry(status)
            .or_default() += 1;
        template.set_delay(delay)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_1000_logs_20_problems_64_workers_flaky_jira_exactly_20_tickets() {
    let logs = generated_logs(1000, 20);
    let fps = fingerprints(&logs);
    assert_eq!(fps.len(), 20);
    let case = Case::new(&logs);
    let server = MockServer::start().await;
    let fake = Arc::new(FakeJira::new());
    let f = fake.clone();
    Mock::given(any())
        .respond_with(move |req: &Request| f.respond(req))
        .mount(&server)
        .await;

    let started = Instant::now();
    let report = run_lib(
        &case.cloud_args(
            &server.uri(),
            &["--async", "--workers", "64", "--rate-limit", "20"],
        ),
        CLOUD_ENV,
    )
    .await;
    let elapsed = started.elapsed();

    let (counts, issues) = {
        let st = fake.state.lock().unwrap();
        (st.counts.clone(), st.issues.clone())
    };
    eprintln!(
        "load test: 1000 logs, 20 problems, 64 workers, {} ms; requests by endpoint:",
        elapsed.as_millis()
    );
    for (endpoint, statuses) in &counts {
        let total: u64 = statuses.values().sum();
        let by_status: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        eprintln!("  {endpoint:<30} {total:>4}  ({})", by_status.join(", "));
    }
    eprintln!("  issues stored by the fake Jira: {}", issues.len());

    let s = &report.summary;
    assert_eq!(
        (s.created, s.duplicates, s.failed, s.processed),
        (20, 980, 0, 1000),
        "{s:?}"
    );
    assert!(
        counts.values().all(|statuses| !statuses.contains_key(&418)),
        "unexpected calls: {counts:?}"
    );
    assert!(
        counts["POST /rest/api/3/issue"].get(&503) >= Some(&2),
        "lost creates were exercised: {counts:?}"
    );
    let mut per_label: HashMap<&str, usize> = HashMap::new();
    for (_, _, l, _) in &issues {
        *per_label.entry(l.as_str()).or_default() += 1;
    }
    assert_eq!(issues.len(), 20, "exactly 20 issues exist in Jira");
    for fp in &fps {
        assert_eq!(per_label.get(label(fp).as_str()), Some(&1), "{fp}");
    }
    let stored: HashMap<&str, &str> = issues
        .iter()
        .map(|(_, key, l, _)| (l.as_str(), key.as_str()))
        .collect();
    for t in &report.tickets {
        assert_eq!(
            t.key.as_deref(),
            Some(stored[label(&t.fingerprint).as_str()])
        );
    }
    for req in calls(&server, "POST", &format!("{V3}/issue")).await {
        triage::jira::adf::validate(&json_of(&req)["fields"]["description"]).expect("valid ADF");
    }
}

/// A dry run against Server / Data Center shows the draft as it would be sent there: a wiki
/// markup string, not an Atlassian Document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_dry_run_reports_the_draft_in_wiki_markup() {
    let case = Case::new(&generated_logs(4, 1));
    let server = MockServer::start().await;
    let v2 = "/rest/api/2";
    let user = jira_fixture("jira-ruby/issue/10002/comment.post.json")["author"].clone();
    mount_myself(&server, v2, user).await;
    Mock::given(method("POST"))
        .and(path(format!("{v2}/search")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(jira_fixture("jira-ruby/empty_issues.json")),
        )
        .mount(&server)
        .await;
    mount_catch_all(&server).await;
    let mut args = case.cloud_args(&server.uri(), &["--dry-run", "--jira-api-version", "2"]);
    // Server / Data Center signs in with a token alone.
    let i = args.iter().position(|a| a == "--jira-email").unwrap();
    args.drain(i..i + 2);
    let report = run_lib(&args, &[("JIRA_PAT", PAT)]).await;
    assert_eq!(report.summary.would_create, 1, "{:?}", report.summary);
    let tickets = read_report(&case.report)["tickets"].clone();
    let description = &tickets[0]["draft"]["description"];
    let wiki = description.as_str().expect("a wiki markup string");
    assert!(wiki.contains("{code}"), "{wiki}");
    server.verify().await;
}

/// Without a state store, a create answered 201 with a body that cannot be read is taken as
/// "probably created": the label is searched until search has caught up (here it lags 3 s)
/// instead of handing the problem to the next log, which would file a second ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_create_answer_without_state_is_searched_for_not_created_twice() {
    let logs = generated_logs(2, 1);
    let case = Case::new(&logs);
    let server = cloud_server().await;
    let sent: Arc<Mutex<Option<Instant>>> = Arc::default();
    let sent_at = sent.clone();
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |req: &Request| {
            let lagged = sent_at
                .lock()
                .unwrap()
                .is_some_and(|t| t.elapsed() >= Duration::from_secs(3));
            let issues = match lagged {
                true => vec![cloud_issue(10_007, "OPS-7", &jql_label(req), false)],
                false => vec![],
            };
            ResponseTemplate::new(200).set_body_json(search_page(issues))
        })
        .named("POST search/jql (lags 3 s behind the create)")
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(move |_: &Request| {
            sent.lock().unwrap().get_or_insert_with(Instant::now);
            ResponseTemplate::new(201).set_body_string("<html>created</html>")
        })
        .named("POST issue: 201, unreadable body")
        .mount(&server)
        .await;

    let report = run_lib(&case.cloud_args(&server.uri(), &["--no-state"]), CLOUD_ENV).await;

    let creates = calls(&server, "POST", &format!("{V3}/issue")).await;
    assert_eq!(creates.len(), 1, "one create, not a second ticket");
    let s = &report.summary;
    assert_eq!((s.created, s.duplicates, s.failed), (1, 1, 0), "{s:?}");
    assert_eq!(report.tickets[0].key.as_deref(), Some("OPS-7"));
}

/// A Jira whose creates answer with `first_answer` (then 201 with OPS-2, OPS-3, ...) and
/// whose search shows the first created issue, OPS-7, only `lag` after that create arrived.
/// The first create went through whatever it answered. Returns the server.
async fn lagging_jira(first_answer: ResponseTemplate, lag: Duration) -> MockServer {
    let server = cloud_server().await;
    let sent: Arc<Mutex<Option<Instant>>> = Arc::default();
    let sent_at = sent.clone();
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |req: &Request| {
            let shown = sent_at.lock().unwrap().is_some_and(|t| t.elapsed() >= lag);
            let issues = match shown {
                true => vec![cloud_issue(10_007, "OPS-7", &jql_label(req), false)],
                false => vec![],
            };
            ResponseTemplate::new(200).set_body_json(search_page(issues))
        })
        .named("POST search/jql (lags behind the first create)")
        .mount(&server)
        .await;
    let n = AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(move |_: &Request| {
            sent.lock().unwrap().get_or_insert_with(Instant::now);
            match n.fetch_add(1, Ordering::SeqCst) {
                0 => first_answer.clone(),
                i => ResponseTemplate::new(201)
                    .set_body_json(created(10_000 + i, &format!("{PROJECT}-{}", i + 1))),
            }
        })
        .named("POST issue (the first went through, whatever it answered)")
        .mount(&server)
        .await;
    server
}

/// Runs three logs of one problem against `server`, with or without a state file, and checks
/// that exactly one create was sent and every log points at the ticket it made, OPS-7.
async fn assert_one_ticket_after_a_lost_create(server: &MockServer, with_state: bool) {
    let case = Case::new(&generated_logs(3, 1));
    let state = case.input.with_file_name("state.db");
    let state_args: Vec<&str> = match with_state {
        true => vec!["--state", state.to_str().unwrap()],
        false => vec!["--no-state"],
    };
    let report = run_lib(&case.cloud_args(&server.uri(), &state_args), CLOUD_ENV).await;

    let creates = calls(server, "POST", &format!("{V3}/issue")).await;
    assert_eq!(creates.len(), 1, "one create, not a second ticket");
    let s = &report.summary;
    assert_eq!((s.created, s.duplicates, s.failed), (1, 2, 0), "{s:?}");
    assert_eq!(report.tickets[0].key.as_deref(), Some("OPS-7"));
    for l in case.logs() {
        assert_eq!(l["ticket"], "OPS-7", "{l}");
    }
}

/// Finding 7: a create answered 201 with a body that cannot be read, search lagging 5 s, no
/// state: the label is searched until `--jira-search-lag` (15 s by default) has passed since
/// the create was sent, so the ticket is found and no second one is filed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_201_with_search_lagging_5s_gives_one_ticket_without_state() {
    let unreadable = ResponseTemplate::new(201).set_body_string("<html>created</html>");
    let server = lagging_jira(unreadable, Duration::from_secs(5)).await;
    assert_one_ticket_after_a_lost_create(&server, false).await;
}

/// The same with a state file: the unfinished create is recorded and settled the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_201_with_search_lagging_5s_gives_one_ticket_with_state() {
    let unreadable = ResponseTemplate::new(201).set_body_string("<html>created</html>");
    let server = lagging_jira(unreadable, Duration::from_secs(5)).await;
    assert_one_ticket_after_a_lost_create(&server, true).await;
}

/// A create answered 504 that went through, search lagging 5 s: the create is not sent again
/// after a few seconds of searching (it used to be, after 4 s) but only once the search lag
/// allowance has passed; here search shows the ticket first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_504_create_with_search_lagging_5s_gives_one_ticket_without_state() {
    let gateway = ResponseTemplate::new(504).set_body_string("Gateway Timeout");
    let server = lagging_jira(gateway, Duration::from_secs(5)).await;
    assert_one_ticket_after_a_lost_create(&server, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_504_create_with_search_lagging_5s_gives_one_ticket_with_state() {
    let gateway = ResponseTemplate::new(504).set_body_string("Gateway Timeout");
    let server = lagging_jira(gateway, Duration::from_secs(5)).await;
    assert_one_ticket_after_a_lost_create(&server, true).await;
}

/// A create answered 504 whose ticket search never shows, with `--timeout 2` and the default
/// 15 s search lag: the allowance outlasts every log's deadline, so the logs fail (and go to
/// the retry list) instead of a second create being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_whose_allowance_outlasts_the_deadline_fails_the_log_not_created_again() {
    let case = Case::new(&generated_logs(3, 1));
    let server = cloud_server().await;
    search_mock(|_, _| vec![]).mount(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(ResponseTemplate::new(504).set_body_string("Gateway Timeout"))
        .named("POST issue: 504")
        .mount(&server)
        .await;

    let started = Instant::now();
    let report = run_lib(
        &case.cloud_args(&server.uri(), &["--no-state", "--timeout", "2"]),
        CLOUD_ENV,
    )
    .await;

    let creates = calls(&server, "POST", &format!("{V3}/issue")).await;
    assert_eq!(creates.len(), 1, "the lost create is never sent again");
    let s = &report.summary;
    assert_eq!((s.created, s.failed), (0, 3), "{s:?}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "each log gave up at its own deadline: {:?}",
        started.elapsed()
    );
    for l in case.logs() {
        assert_eq!(l["outcome"], "failed", "{l}");
    }
}

/// A run creates a ticket and is killed (SIGKILL) before its end-of-run work: its input (stdin)
/// does not end, so its new problem waits at most half of `--timeout` for it, is filed, and
/// the run is killed while it still reads. The next run, within `--comment-cooldown`, sees the
/// same problem again. The ticket was created moments ago, so its creation counts as its last
/// update: no recurrence comment yet, the new occurrences wait for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_created_by_a_killed_run_is_covered_by_the_comment_cooldown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.db");
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{V3}/myself")))
        .respond_with(ResponseTemplate::new(200).set_body_json(myself_v3()))
        .expect(2)
        .mount(&server)
        .await;
    let created_flag = Arc::new(AtomicU64::new(0));
    let flag = created_flag.clone();
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(move |req: &Request| {
            let issues = match flag.load(Ordering::SeqCst) {
                0 => vec![],
                _ => vec![cloud_issue(10_000, "OPS-1", &jql_label(req), false)],
            };
            ResponseTemplate::new(200).set_body_json(search_page(issues))
        })
        .mount(&server)
        .await;
    let flag = created_flag.clone();
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(move |_: &Request| {
            flag.store(1, Ordering::SeqCst);
            ResponseTemplate::new(201).set_body_json(created(10_000, "OPS-1"))
        })
        .mount(&server)
        .await;
    // The end-of-run update never answers: the run is killed while it waits.
    Mock::given(method("PUT"))
        .and(path(format!("{V3}/issue/OPS-1")))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(120)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue/OPS-1/comment")))
        .respond_with(ResponseTemplate::new(201).set_body_json(spec_example(
            "/rest/api/3/issue/{issueIdOrKey}/comment",
            "post",
            "201",
        )))
        .mount(&server)
        .await;
    mount_catch_all(&server).await;

    // Logs 0..4 of one problem: the first run reads two, the second run the next two.
    let logs = generated_logs(4, 1);
    let lines: Vec<&str> = logs.lines().collect();
    let command = |input: &std::path::Path| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_triage"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JIRA_API_TOKEN", TOKEN)
            .args([
                "--input",
                input.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
                "--jira-url",
                &server.uri(),
                "--jira-project",
                PROJECT,
                "--jira-email",
                EMAIL,
                "--comment-cooldown",
                "1h",
                "--no-rate-limit",
                "-q",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let mut first = command(std::path::Path::new("-"));
    let mut child = first
        .args(["--timeout", "2"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start triage");
    // Two logs, and the input stays open.
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(
        &mut stdin,
        format!("{}\n{}\n", lines[0], lines[1]).as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    loop {
        let requests = server.received_requests().await.unwrap();
        if requests
            .iter()
            .any(|r| r.method.as_str() == "POST" && r.url.path() == format!("{V3}/issue"))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended before its create"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no create sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The create's answer is recorded as it arrives; give it a moment to reach the disk.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    drop(stdin);
    child.wait().unwrap();

    let second = dir.path().join("second.jsonl");
    std::fs::write(&second, format!("{}\n{}\n", lines[2], lines[3])).unwrap();
    let mut cmd = command(&second);
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await
        .unwrap()
        .expect("run triage");
    assert_eq!(status.code(), Some(0));
    let comments = calls(&server, "POST", &format!("{V3}/issue/OPS-1/comment")).await;
    assert!(
        comments.is_empty(),
        "no comment within the cooldown of the ticket's creation"
    );
    let creates = calls(&server, "POST", &format!("{V3}/issue")).await;
    assert_eq!(creates.len(), 1, "the second run found the ticket");
}

/// When the local limit is what held the run back, the summary names it and says how long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_says_when_the_jira_limit_bounded_the_run() {
    let logs = generated_logs(12, 6);
    let case = Case::new(&logs);
    let server = MockServer::start().await;
    let fake = Arc::new(FakeJira::new());
    let f = fake.clone();
    Mock::given(any())
        .respond_with(move |req: &Request| f.respond(req))
        .mount(&server)
        .await;
    let args: Vec<String> = case
        .cloud_args(
            &server.uri(),
            // The fake's search shows a create after 500 ms: its lost creates are settled
            // within a second, so the run's time is the limiter's, not the search lag's.
            &[
                "--async",
                "--workers",
                "8",
                "--rate-limit",
                "10",
                "--jira-search-lag",
                "1s",
            ],
        )
        .into_iter()
        .filter(|a| a != "--no-rate-limit")
        .collect();
    let report = run_lib(&args, CLOUD_ENV).await;
    let s = &report.summary;
    assert_eq!((s.created, s.failed), (6, 0), "{s:?}");
    let jira: Vec<_> = s
        .rate_limited
        .iter()
        .filter(|w| w.service == "Jira")
        .collect();
    assert_eq!(jira.len(), 1, "{s:?}");
    assert_eq!(jira[0].limit, 10);
    // Over a dozen calls at 10/s: about a second spent waiting on the limit.
    assert!(jira[0].waited_ms >= 500, "{:?}", jira[0]);
    let text = triage::pipeline::report::render_text(&report);
    assert!(
        text.contains("for the Jira limit of 10/s; raise --rate-limit if your Jira allows more"),
        "{text}"
    );
}
