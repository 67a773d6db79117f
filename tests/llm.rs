//! The optional `llm` analyzer against a local OpenAI-compatible mock.

mod common;

use common::*;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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
