//! Runs on a clock the test moves by hand (`triage::clock`): what the state keeps for a time
//! expires when the clock passes it, and what a run records is stamped by it, without a test
//! sleeping for either. `--now` could not do this: it fixes the window only.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use triage::clock::Clock;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;

const V3: &str = "/rest/api/3";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A Jira whose tickets are gone by the next run: search finds nothing, a remembered key
/// answers 404, and every create succeeds.
async fn forgetful_jira() -> MockServer {
    let server = cloud_jira(true).await;
    Mock::given(method("GET"))
        .and(path_regex(format!("^{V3}/issue/OPS-[0-9]+$")))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    create_mock("OPS").mount(&server).await;
    server
}

/// A model that classifies every problem the same way.
async fn model() -> MockServer {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                "content": "{\"category\":\"dependency\",\"severity\":\"high\",\"title\":\"Model title\",\"summary\":\"Model summary.\"}"}}]
        })))
        .mount(&llm)
        .await;
    llm
}

/// One problem whose ticket is gone at each run, so each run files it again. Six days after
/// the model described it, the cached analysis still does (no call); eight days after, past
/// `ANALYSIS_TTL`, the model is asked again. The run's record and its metrics carry the
/// clock's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_analysis_is_used_until_the_clock_passes_its_time_to_live() {
    let dir = tempfile::tempdir().unwrap();
    let (jira, llm) = (forgetful_jira().await, model().await);
    let log = json!({"id": "l1", "attributes": {"status": "error", "service": "api",
        "timestamp": "2026-11-23T09:00:00Z", "message": "upstream call failed after 30ms"}});
    let input = dir.path().join("logs.jsonl");
    std::fs::write(&input, format!("{log}\n")).unwrap();
    let (state, metrics) = (dir.path().join("state.db"), dir.path().join("m.prom"));
    let base = format!("{}/v1", llm.uri());
    let args = cloud_args(
        &jira.uri(),
        &input,
        &[
            "--state",
            state.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--analyzer",
            "llm",
            "--llm-base-url",
            &base,
        ],
    );
    let env = [("JIRA_API_TOKEN", "t0k"), ("OPENAI_API_KEY", "sk-test")];
    let hand = Clock::manual(at("2026-11-23T10:00:00Z"));
    let run = || async {
        let config = checked_config_with_clock(&args, &env, hand.clock());
        let report = triage::run(config, std::future::pending())
            .await
            .expect("the run starts");
        assert_eq!(report.summary.created, 1, "{:?}", report.summary);
        assert!(report.tickets.iter().all(|t| t.summary == "Model title"));
        llm.received_requests().await.unwrap().len()
    };

    assert_eq!(run().await, 1, "a new problem is analysed once");
    hand.advance(Duration::days(6));
    assert_eq!(run().await, 1, "filed again from the cached analysis");
    hand.advance(Duration::days(2));
    assert_eq!(
        run().await,
        2,
        "the cached analysis has expired: asked again"
    );

    let ended = at("2026-12-01T10:00:00Z");
    assert_eq!(last_success(&state), Some(ended));
    let text = std::fs::read_to_string(&metrics).unwrap();
    let line = format!("triage_last_run_timestamp_seconds {}", ended.timestamp());
    assert!(text.contains(&line), "{line} not in\n{text}");
}

/// When the last run that exited 0 ended, as the store recorded it.
fn last_success(state: &Path) -> Option<DateTime<Utc>> {
    triage::state::StateStore::open_read_only(state, Default::default())
        .expect("store opens")
        .expect("store exists")
        .last_success()
        .unwrap()
}

/// The same on a shared PostgreSQL store: an analysis expires by the store's clock, for the
/// runner that wrote it and for a dry run reading it.
#[test]
fn a_shared_store_expires_a_cached_analysis_by_its_clock() {
    let Some(url) = crate::cron::pg_database("clock_ttl") else {
        return;
    };
    let url = Path::new(&url);
    let hand = Clock::manual(at("2026-11-23T10:00:00Z"));
    let scope = triage::state::Scope {
        source: "src".into(),
        jira: "J OPS".into(),
    };
    let ttl = Duration::days(7);
    let store = triage::state::StateStore::open_with_clock(url, scope.clone(), hand.clock())
        .expect("store opens");
    let dry = triage::state::StateStore::open_read_only_with_clock(url, scope, hand.clock())
        .expect("store opens")
        .expect("store exists");
    store.cache_analysis("fp", "llm m", "{}").unwrap();
    store.begin_create("fp").unwrap();
    assert_eq!(store.create_begun("fp").unwrap(), Some(hand.now()));
    hand.advance(ttl);
    let cached = |s: &triage::state::StateStore| s.cached_analysis("fp", "llm m", ttl).unwrap();
    assert_eq!(
        (cached(&store), cached(&dry)),
        (Some("{}".into()), Some("{}".into()))
    );
    hand.advance(Duration::milliseconds(1));
    assert_eq!((cached(&store), cached(&dry)), (None, None));
}
