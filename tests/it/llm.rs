//! The optional `llm` analyzer against a local OpenAI-compatible mock.

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

fn reply(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
    }))
}

#[tokio::test]
async fn the_model_classifies_each_problem_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-llm-key"))
        .respond_with(reply(r#"{"category":"dependency","severity":"critical","title":"Model title","summary":"Model summary."}"#))
        .expect(SAMPLE_PROBLEMS) // one call per problem, not per log
        .mount(&server)
        .await;
    let mut t = triage();
    let path = t.dir.path().join("r.json");
    let out = t
        .cmd
        .env("OPENAI_API_KEY", "sk-test-llm-key")
        .env("OPENAI_BASE_URL", format!("{}/v1", server.uri()))
        .args([
            "--dry-run",
            "--async",
            "--workers",
            "8",
            "--analyzer",
            "llm",
            "--output",
            "json",
            "--report",
        ])
        .arg(&path)
        .arg("--input")
        .arg(sample_logs())
        .assert()
        .code(0)
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sk-test-llm-key"));
    let report = read_report(&path);
    let tickets = report["tickets"].as_array().unwrap();
    assert_eq!(tickets.len() as u64, SAMPLE_PROBLEMS);
    assert!(tickets
        .iter()
        .all(|t| t["category"] == "dependency" && t["summary"] == "Model title"));
}

#[tokio::test]
async fn a_failing_model_falls_back_to_the_rules_and_says_so_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(reply("Sorry, I cannot help with that."))
        .mount(&server)
        .await;
    let mut t = triage();
    let out = t
        .cmd
        .env("OPENAI_API_KEY", "sk-test-llm-key")
        .env("OPENAI_BASE_URL", format!("{}/v1", server.uri()))
        .args([
            "--dry-run",
            "--analyzer",
            "llm",
            "--output",
            "json",
            "--input",
        ])
        .arg(sample_logs())
        .assert()
        .code(0)
        .get_output()
        .clone();
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["tickets"], SAMPLE_PROBLEMS);
    assert_eq!(summary["warnings"], SAMPLE_PROBLEMS);
    assert_eq!(summary["llm_fallbacks"], SAMPLE_PROBLEMS);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("llm analyzer failed").count(), 1, "{stderr}");
}

#[test]
fn the_llm_analyzer_needs_its_key() {
    let mut t = triage();
    t.cmd
        .args(["--dry-run", "--analyzer", "llm", "--input"])
        .arg(sample_logs())
        .assert()
        .code(1)
        .stderr(predicates::str::contains("OPENAI_API_KEY"));
}

/// Matches a chat-completions request that asks for JSON output with `response_format`.
struct AsksForJsonObject(bool);

impl Match for AsksForJsonObject {
    fn matches(&self, request: &Request) -> bool {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        (body["response_format"] == json!({"type": "json_object"})) == self.0
    }
}

/// Run the sample logs through the llm analyzer against the server at `uri` (sequentially, so
/// requests come one at a time): the exit code, stdout, stderr and the report.
fn run_sample_at(uri: &str, output: &str) -> (Option<i32>, String, String, Value) {
    let mut t = triage();
    let report = t.dir.path().join("r.json");
    let out = t
        .cmd
        .env("OPENAI_API_KEY", "sk-test-llm-key")
        .env("OPENAI_BASE_URL", format!("{uri}/v1"))
        .args([
            "--dry-run",
            "--analyzer",
            "llm",
            "--output",
            output,
            "--report",
        ])
        .arg(&report)
        .arg("--input")
        .arg(sample_logs())
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        read_report(&report),
    )
}

#[tokio::test]
async fn an_unknown_category_becomes_other_and_the_rest_of_the_answer_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(AsksForJsonObject(true))
        .respond_with(reply(r#"{"category":"cosmic rays","severity":"critical","title":"Model title","summary":"Model summary."}"#))
        .expect(SAMPLE_PROBLEMS)
        .mount(&server)
        .await;
    let uri = server.uri();
    let (code, stdout, stderr, report) =
        tokio::task::spawn_blocking(move || run_sample_at(&uri, "json"))
            .await
            .unwrap();
    let tickets = report["tickets"].as_array().unwrap();
    assert_eq!(tickets.len() as u64, SAMPLE_PROBLEMS);
    assert!(
        tickets.iter().all(|t| t["category"] == "other"
            && t["severity"] == "critical"
            && t["summary"] == "Model title"),
        "{tickets:?}"
    );
    assert_eq!(code, Some(0), "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["llm_fallbacks"], 0);
    assert!(!stderr.contains("llm analyzer failed"), "{stderr}");
}

#[tokio::test]
async fn a_server_that_rejects_response_format_is_asked_again_without_it_once_per_run() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(AsksForJsonObject(true))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Unrecognized request argument supplied: response_format",
            "type": "invalid_request_error"}})))
        .expect(1) // remembered: the field is not sent again
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(AsksForJsonObject(false))
        .respond_with(reply(r#"{"category":"dependency","severity":"high","title":"Model title","summary":"Model summary."}"#))
        .expect(SAMPLE_PROBLEMS)
        .mount(&server)
        .await;
    let uri = server.uri();
    let (code, stdout, stderr, _) =
        tokio::task::spawn_blocking(move || run_sample_at(&uri, "json"))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["llm_fallbacks"], 0);
    assert_eq!(
        stderr.matches("refused response_format").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test]
async fn a_400_that_is_not_about_response_format_falls_back_and_the_text_summary_counts_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "model 'gpt-4o-mini' does not exist"}})))
        .mount(&server)
        .await;
    let uri = server.uri();
    let (code, stdout, stderr, _) =
        tokio::task::spawn_blocking(move || run_sample_at(&uri, "text"))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "{SAMPLE_PROBLEMS} analyses fell back to the rules analyzer"
        )),
        "{stdout}"
    );
    assert!(!stderr.contains("refused response_format"), "{stderr}");
    // Each problem: once with response_format, once without; then the rules.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len() as u64, 2 * SAMPLE_PROBLEMS);
}
