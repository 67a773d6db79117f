//! Servers that misbehave on purpose: absurd rate-limit waits, redirects to another host, URLs
//! that carry credentials. In: wiremock servers on loopback started by each test. Out: a clear
//! error and no panic (exit 101), no hang, and no credential sent to or printed for anyone else.

mod common;

use std::time::Duration;

use common::*;
use triage::http::{Retry, RetryPolicy, Service};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const API_KEY: &str = "ddapi-redirect-TEST-KEY";
const APP_KEY: &str = "ddapp-redirect-TEST-KEY";
const TOKEN: &str = "jira-token-hostile-SECRET";

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        max_wait: Duration::from_secs(120),
        attempt_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn absurd_server_waits_fail_the_call_instead_of_panicking() {
    for (header, value) in [
        ("retry-after", "1e30"),
        ("retry-after", "inf"),
        ("retry-after", "99999999999999999999"),
        ("x-ratelimit-reset", "1e30"),
        ("x-ratelimit-reset", "99999999999999999999"),
    ] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(429).insert_header(header, value))
            .mount(&server)
            .await;
        let service = Service::new("Jira", None, policy()).unwrap();
        let url = format!("{}/rest/api/3/myself", server.uri());
        let err = service
            .send(|c| c.get(&url), Retry::Idempotent)
            .await
            .expect_err("a wait past the deadline fails the call");
        let msg = err.to_string();
        assert!(
            msg.contains("asked to wait an unbounded time"),
            "{header}: {value} gave {msg}"
        );
    }
}

#[tokio::test]
async fn nonsense_server_waits_fall_back_to_the_backoff() {
    for value in ["NaN", "-1"] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", value))
            .expect(2)
            .mount(&server)
            .await;
        let service = Service::new("Jira", None, policy()).unwrap();
        let url = format!("{}/x", server.uri());
        let err = service.send(|c| c.get(&url), Retry::Idempotent).await;
        assert!(err.is_err(), "{value}");
    }
}

#[test]
fn the_binary_exits_cleanly_when_jira_asks_for_an_endless_wait() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(MockServer::start());
    rt.block_on(
        Mock::given(any())
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1e30"))
            .mount(&server),
    );
    let mut t = triage();
    let input = t.dir.path().join("logs.jsonl");
    std::fs::write(&input, "{\"message\":\"boom\",\"service\":\"api\"}\n").unwrap();
    let out = t
        .cmd
        .args(["--input", input.to_str().unwrap(), "--no-rate-limit", "-q"])
        .env("JIRA_URL", server.uri())
        .env("JIRA_PROJECT", "OPS")
        .env("JIRA_EMAIL", "bot@example.com")
        .env("JIRA_API_TOKEN", TOKEN)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("asked to wait"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Server `from` answers `/start` with a redirect to `to_url`.
async fn redirect(from: &MockServer, status: u16, to_url: &str) {
    Mock::given(path("/start"))
        .respond_with(ResponseTemplate::new(status).insert_header("location", to_url))
        .mount(from)
        .await;
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_host() {
    for status in [302, 307] {
        let home = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        redirect(&home, status, &format!("{}/steal", elsewhere.uri())).await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&elsewhere)
            .await;
        for name in ["Datadog", "Jira", "LLM"] {
            let service = Service::new(name, None, policy()).unwrap();
            let url = format!("{}/start", home.uri());
            let err = service
                .send(
                    |c| {
                        c.post(&url)
                            .header("DD-API-KEY", API_KEY)
                            .header("DD-APPLICATION-KEY", APP_KEY)
                            .bearer_auth(TOKEN)
                            .body("{}")
                    },
                    Retry::Idempotent,
                )
                .await
                .expect_err("a cross-host redirect is refused");
            let msg = err.to_string();
            assert!(msg.contains("redirected to another host"), "{msg}");
            assert!(!msg.contains(API_KEY) && !msg.contains(TOKEN), "{msg}");
        }
        // `elsewhere` verifies on drop that it saw no request at all.
    }
}

#[tokio::test]
async fn a_redirect_to_another_port_of_the_same_host_is_another_host() {
    let home = MockServer::start().await;
    let other_port = MockServer::start().await;
    let to = other_port.uri().replace("127.0.0.1", "localhost");
    redirect(&home, 307, &format!("{to}/steal")).await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&other_port)
        .await;
    let service = Service::new("Datadog", None, policy()).unwrap();
    let url = format!("{}/start", home.uri());
    let err = service
        .send(
            |c| c.get(&url).header("DD-API-KEY", API_KEY),
            Retry::Idempotent,
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("another host"), "{err}");
}

#[tokio::test]
async fn a_redirect_within_the_configured_host_is_followed() {
    let home = MockServer::start().await;
    redirect(&home, 307, &format!("{}/moved", home.uri())).await;
    Mock::given(method("POST"))
        .and(path("/moved"))
        .and(wiremock::matchers::header("DD-API-KEY", API_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&home)
        .await;
    let service = Service::new("Datadog", None, policy()).unwrap();
    let url = format!("{}/start", home.uri());
    let resp = service
        .send(
            |c| c.post(&url).header("DD-API-KEY", API_KEY).body("{}"),
            Retry::Idempotent,
        )
        .await
        .expect("a same-host redirect is followed");
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[test]
fn credentials_in_jira_url_are_never_printed() {
    for url in [
        "http://alice:hunter2-pass@127.0.0.1:9/jira",
        "http://alice:hunter2-pass@127.0.0.1:notaport/jira",
    ] {
        let mut t = triage();
        let input = t.dir.path().join("logs.jsonl");
        std::fs::write(&input, "{\"message\":\"boom\"}\n").unwrap();
        let out = t
            .cmd
            .args(["--input", input.to_str().unwrap(), "-q"])
            .env("JIRA_URL", url)
            .env("JIRA_PROJECT", "OPS")
            .env("JIRA_EMAIL", "bot@example.com")
            .env("JIRA_API_TOKEN", TOKEN)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(out.status.code(), Some(0), "{all}");
        assert!(!all.contains("hunter2-pass"), "{url}: {all}");
        assert!(all.contains("***@127.0.0.1"), "{url}: {all}");
    }
}
