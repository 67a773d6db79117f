//! How many Jira calls a run makes (issue 12, point 1): batched label lookups.
//!
//! A stateful fake Jira Cloud on wiremock: a create stores the issue with its labels; a search
//! (`POST search/jql`) answers the stored issues carrying any label its JQL names, page by page
//! (`maxResults`, `nextPageToken`), shaped like the spec's 200 example. Every request is
//! recorded, and the tests count them: 200 new problems cost at most 1.1 calls each (the create
//! plus a share of a batched search, the start-up `myself` included), and a rerun over the same
//! 200, now known, at most 0.1 each, plus at most one comment per ticket. A search with more
//! issues than a page is read to its end. The rate a service's calls start at goes down on a
//! 429 or a low `X-RateLimit-Remaining` and comes back up step by step (wiremock servers that
//! answer as scripted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::{any, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const V3: &str = "/rest/api/3";

/// One issue the fake Jira holds: (id, key, labels, done).
type Stored = (u64, String, Vec<String>, bool);

/// The issues the fake Jira holds.
#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<Stored>>>);

struct Create(Store);

impl Respond for Create {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = req.body_json().expect("create body is JSON");
        let labels: Vec<String> = body["fields"]["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        let mut issues = self.0 .0.lock().unwrap();
        let n = issues.len() as u64 + 1;
        let (id, key) = (10_000 + n, format!("OPS-{n}"));
        issues.push((id, key.clone(), labels, false));
        ResponseTemplate::new(201).set_body_json(created(id, &key))
    }
}

struct Search(Store);

impl Respond for Search {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = req.body_json().expect("search body is JSON");
        let wanted = jql_labels(req);
        let max = body["maxResults"].as_u64().unwrap_or(50) as usize;
        let start: usize = body["nextPageToken"]
            .as_str()
            .map_or(0, |t| t.parse().expect("our own token"));
        let matching: Vec<Value> = self
            .0
             .0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter(|(_, _, labels, _)| labels.iter().any(|l| wanted.contains(l)))
            .map(|(id, key, labels, done)| {
                let own = labels
                    .iter()
                    .find(|l| l.starts_with("triage-"))
                    .expect("a fingerprint label");
                let mut issue = cloud_issue(*id, key, own, *done);
                issue["fields"]["labels"] = json!(labels);
                issue
            })
            .collect();
        let page: Vec<Value> = matching.iter().skip(start).take(max).cloned().collect();
        let mut answer = search_page(page);
        if start + max < matching.len() {
            answer["isLast"] = json!(false);
            answer["nextPageToken"] = json!((start + max).to_string());
        }
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

async fn fake_jira(store: &Store) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{V3}/myself")))
        .respond_with(ResponseTemplate::new(200).set_body_json(myself_v3()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/search/jql")))
        .respond_with(Search(store.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{V3}/issue")))
        .respond_with(Create(store.clone()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+/comment$")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+$")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(418))
        .with_priority(u8::MAX)
        .expect(0)
        .mount(&server)
        .await;
    server
}

async fn run(uri: &str, input: &std::path::Path, extra: &[&str]) -> triage::Report {
    run_lib(
        &cloud_args(uri, input, extra),
        &[("JIRA_API_TOKEN", "token-SECRET")],
    )
    .await
}

/// Calls received since `from`: (comments, all others), and the most comments on one ticket.
async fn count(server: &MockServer, from: usize) -> (usize, usize, usize) {
    let all = server.received_requests().await.expect("recording on");
    let mut per_ticket: HashMap<String, usize> = HashMap::new();
    let mut others = 0;
    for r in &all[from..] {
        if r.url.path().ends_with("/comment") {
            *per_ticket.entry(r.url.path().to_string()).or_default() += 1;
        } else {
            others += 1;
        }
    }
    let comments = per_ticket.values().sum();
    let most = per_ticket.values().copied().max().unwrap_or(0);
    (comments, others, most)
}

/// 200 new problems, then a rerun over the same 200, now known: sequentially and with 10 and
/// 50 workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_problems_cost_at_most_1_1_calls_and_known_ones_0_1() {
    const PROBLEMS: usize = 200;
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("logs.jsonl");
    std::fs::write(&input, generated_logs(PROBLEMS, PROBLEMS)).expect("write logs");
    for mode in [
        &[][..],
        &["--async", "--workers", "10"],
        &["--async", "--workers", "50"],
    ] {
        let store = Store::default();
        let server = fake_jira(&store).await;

        let first = run(&server.uri(), &input, mode).await;
        let s = &first.summary;
        assert_eq!(
            (s.created, s.failed),
            (PROBLEMS as u64, 0),
            "{mode:?}: {s:?}"
        );
        let (comments, calls, _) = count(&server, 0).await;
        assert_eq!(comments, 0, "{mode:?}");
        assert!(
            calls * 10 <= PROBLEMS * 11,
            "{mode:?}: {calls} calls for {PROBLEMS} new problems"
        );
        let seen = server.received_requests().await.unwrap().len();

        let again = run(&server.uri(), &input, mode).await;
        let s = &again.summary;
        assert_eq!(
            (s.created, s.existing, s.failed),
            (0, PROBLEMS as u64, 0),
            "{mode:?}: {s:?}"
        );
        let (_, calls, most) = count(&server, seen).await;
        assert!(
            calls * 10 <= PROBLEMS,
            "{mode:?}: {calls} calls for {PROBLEMS} known problems"
        );
        assert!(most <= 1, "{mode:?}: {most} comments on one ticket");
        eprintln!(
            "{mode:?}: {} calls for {PROBLEMS} new problems, {calls} for them known",
            seen
        );
        server.verify().await;
        // MockServer's drop blocks on a lock with a plain executor: with this task's cooperative
        // budget spent (a loop of awaits on the server), that wait's wake-up is deferred to a
        // scheduler that the block never yields to. A yield first gives the drop a fresh budget.
        tokio::task::yield_now().await;
        drop(server);
    }
}

/// A problem whose open ticket is older than 250 Done ones: the search is read page by page
/// (`nextPageToken`) until the open ticket shows, and no second ticket is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_is_read_page_by_page() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("logs.jsonl");
    std::fs::write(&input, generated_logs(1, 1)).expect("write logs");
    let store = Store::default();
    let server = fake_jira(&store).await;
    let first = run(&server.uri(), &input, &[]).await;
    assert_eq!(first.summary.created, 1, "{:?}", first.summary);
    {
        let mut issues = store.0.lock().unwrap();
        let labels = issues[0].2.clone();
        for i in 0..250 {
            issues.push((20_000 + i, format!("OPS-{}", 100 + i), labels.clone(), true));
        }
    }
    let seen = server.received_requests().await.unwrap().len();

    let again = run(&server.uri(), &input, &[]).await;
    let s = &again.summary;
    assert_eq!((s.created, s.existing), (0, 1), "{s:?}");
    assert_eq!(again.tickets[0].key.as_deref(), Some("OPS-1"));
    let all = server.received_requests().await.unwrap();
    let tokens: Vec<Option<String>> = all[seen..]
        .iter()
        .filter(|r| r.url.path().ends_with("/search/jql"))
        .map(|r| {
            let body: Value = r.body_json().unwrap();
            body["nextPageToken"].as_str().map(str::to_string)
        })
        .collect();
    assert_eq!(
        tokens,
        [None, Some("100".to_string()), Some("200".to_string())],
        "three pages of 100"
    );
}

// ---------------------------------------------------------------------------------------------
// The rate adapts to the server (issue 12, point 3)
// ---------------------------------------------------------------------------------------------

/// Answers in order: the first `plan` entries as given, then plain 200s.
struct Scripted {
    plan: Vec<ResponseTemplate>,
    n: std::sync::atomic::AtomicUsize,
}

impl Respond for Scripted {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.plan
            .get(i)
            .cloned()
            .unwrap_or_else(|| ResponseTemplate::new(200))
    }
}

async fn scripted(plan: Vec<ResponseTemplate>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(Scripted {
            plan,
            n: Default::default(),
        })
        .mount(&server)
        .await;
    server
}

fn policy() -> triage::http::RetryPolicy {
    triage::http::RetryPolicy {
        base_backoff: std::time::Duration::from_millis(1),
        ..Default::default()
    }
}

/// Jira with `--rate-limit 200`: a 429 (`Retry-After`, `RateLimit-Reason`) halves the rate; a
/// success that says few calls remain lowers it to what the window allows; plain successes then
/// bring it back up step by step (never jumping) to the configured rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_and_a_low_remaining_lower_the_rate_and_successes_bring_it_back() {
    let server = scripted(vec![
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "0")
            .insert_header("RateLimit-Reason", "jira-burst-based"),
        ResponseTemplate::new(200),
        ResponseTemplate::new(200)
            .insert_header("X-RateLimit-Limit", "1000")
            .insert_header("X-RateLimit-Remaining", "40")
            .insert_header("X-RateLimit-Reset", "1"),
    ])
    .await;
    let jira = triage::http::Service::new("Jira", std::num::NonZeroU32::new(200), policy())
        .expect("a client");
    let url = format!("{}/api", server.uri());
    let get = || jira.send(|c| c.get(&url), triage::http::Retry::Idempotent);
    assert_eq!(jira.current_rate(), Some(200.0));

    get().await.expect("the 429 is waited out");
    let after_429 = jira.current_rate().unwrap();
    // Halved, then one step up for the retry's success.
    assert_eq!(after_429, 110.0);
    get().await.expect("a success after the 429");
    let low = jira.current_rate().unwrap();
    assert!(low <= 40.0, "few calls left: {low}");

    let mut rates = vec![low];
    for _ in 0..30 {
        get().await.expect("a success");
        rates.push(jira.current_rate().unwrap());
    }
    assert!(
        rates
            .windows(2)
            .all(|w| w[1] >= w[0] && w[1] - w[0] <= 10.0 + 1e-9),
        "additive steps: {rates:?}"
    );
    assert_eq!(*rates.last().unwrap(), 200.0, "{rates:?}");
    assert!(rates[1] < 200.0, "not back at once: {rates:?}");
}

/// Datadog with the limiter off: a 429 (Datadog sends `X-RateLimit-Reset` in seconds, no
/// `Retry-After`) starts the adaptation at half the rate calls were starting at; successes bring
/// it back, and then it switches itself off again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_a_429_starts_the_adaptation_and_it_ends_when_the_rate_is_back() {
    let mut plan: Vec<ResponseTemplate> = (0..10).map(|_| ResponseTemplate::new(200)).collect();
    plan.push(
        ResponseTemplate::new(429)
            .insert_header("X-RateLimit-Limit", "300")
            .insert_header("X-RateLimit-Period", "3600")
            .insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", "0"),
    );
    let server = scripted(plan).await;
    let datadog = triage::http::Service::new("Datadog", None, policy()).expect("a client");
    let url = format!("{}/api", server.uri());
    let get = || datadog.send(|c| c.get(&url), triage::http::Retry::Idempotent);
    for _ in 0..10 {
        get().await.expect("a success");
    }
    assert_eq!(datadog.current_rate(), None, "no limit, no push-back");
    get().await.expect("the 429 is waited out");
    let lowered = datadog.current_rate().expect("lowered after a 429");
    let mut steps = 0;
    while datadog.current_rate().is_some() {
        get().await.expect("a success");
        steps += 1;
        assert!(steps <= 25, "back within 20 steps");
    }
    assert!(steps >= 5, "{lowered}/s came back in {steps} steps");
}
