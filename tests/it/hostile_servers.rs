//! Servers that misbehave on purpose: absurd rate-limit waits, redirects to another host, URLs
//! that carry credentials. In: wiremock servers on loopback started by each test. Out: a clear
//! error and no panic (exit 101), no hang, and no credential sent to or printed for anyone else.

use std::time::Duration;

use crate::common::*;
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
            assert!(
                msg.contains("after 1 attempt"),
                "a refusal is not retried: {msg}"
            );
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

/// A Jira whose search answers `search`; every request is kept. Returns the run's exit code,
/// its stderr and report, and the paths Jira received.
fn run_against(search: ResponseTemplate) -> (Option<i32>, String, String, Vec<String>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(async {
        // A Jira Cloud that knows the run (its other answers follow).
        let server = cloud_jira(false).await;
        Mock::given(method("POST"))
            .and(path("/rest/api/3/search/jql"))
            .respond_with(search)
            .mount(&server)
            .await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(201).set_body_json(created(10_000, "OPS-1")))
            .mount(&server)
            .await;
        server
    });
    let mut t = triage();
    let input = t.dir.path().join("logs.jsonl");
    let report = t.dir.path().join("report.json");
    std::fs::write(
        &input,
        "{\"message\":\"payment failed\",\"service\":\"api\"}\n",
    )
    .unwrap();
    let out = t
        .cmd
        .args([
            "--input",
            input.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .args(["--no-rate-limit", "--no-state", "-q"])
        .env("JIRA_URL", server.uri())
        .env("JIRA_PROJECT", "OPS")
        .env("JIRA_EMAIL", "bot@example.com")
        .env("JIRA_API_TOKEN", TOKEN)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let paths = rt
        .block_on(server.received_requests())
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&report).unwrap_or_default(),
        paths,
    )
}

#[test]
fn a_search_result_key_that_is_not_a_jira_key_is_never_put_in_a_url() {
    let evil = search_page(vec![cloud_issue(
        1,
        "../../../myself?x=",
        "triage-x",
        false,
    )]);
    let (code, stderr, report, mut paths) =
        run_against(ResponseTemplate::new(200).set_body_json(evil));
    assert_eq!(code, Some(3), "{stderr}\n{report}");
    // The credentials check and the first lookup may go out in either order (the lookup's
    // answer waits for the check); nothing else is sent, the bad key least of all.
    paths.sort();
    assert_eq!(
        paths,
        vec!["GET /rest/api/3/myself", "POST /rest/api/3/search/jql"],
        "{report}"
    );
    assert!(report.contains("issue key that is not one"), "{report}");
}

#[test]
fn a_jira_answer_in_html_names_the_service_the_endpoint_and_the_problem() {
    let html = ResponseTemplate::new(200)
        .insert_header("content-type", "text/html")
        .set_body_string("<html><body>Please log in</body></html>");
    let (code, stderr, report, _) = run_against(html);
    assert_eq!(code, Some(3), "{stderr}\n{report}");
    assert!(
        report.contains("Jira POST search/jql: expected JSON, got HTML"),
        "{report}"
    );
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_says_timed_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, hold) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"issues\":")
            .await
            .unwrap();
        // The rest never comes until the test is done.
        let _ = hold.await;
    });
    let service = Service::new(
        "Jira",
        None,
        RetryPolicy {
            attempt_timeout: Duration::from_millis(300),
            ..policy()
        },
    )
    .unwrap();
    let url = format!("http://{addr}/rest/api/3/search/jql");
    let resp = service
        .send(|c| c.post(&url), Retry::Idempotent)
        .await
        .expect("the headers arrive");
    let err = triage::decode::json::<serde_json::Value>("Jira", "POST search/jql", resp, 1 << 20)
        .await
        .expect_err("the body never completes");
    let msg = err.to_string();
    assert!(msg.starts_with("Jira POST search/jql: "), "{msg}");
    assert!(msg.contains("timed out"), "{msg}");
    assert!(!msg.contains("error decoding"), "{msg}");
    let _ = release.send(());
    server.await.unwrap();
}

#[tokio::test]
async fn a_log_without_an_id_keeps_its_id_when_lines_are_added_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logs.jsonl");
    let ids = |text: &'static str| {
        let file = file.clone();
        async move {
            std::fs::write(&file, text).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            triage::source::file::run(triage::config::InputPath::Path(file), 1 << 16, tx)
                .await
                .unwrap();
            let mut ids = Vec::new();
            while let Some(item) = rx.recv().await {
                if let triage::source::SourceItem::Event(e) = item {
                    ids.push(e.id);
                }
            }
            ids
        }
    };
    let first = ids("{\"message\":\"a\"}\n{\"message\":\"b\"}\n{\"message\":\"b\"}\n").await;
    let later = ids(
        "{\"message\":\"new\"}\n{\"message\":\"a\"}\n{\"message\":\"b\"}\n{\"message\":\"b\"}\n",
    )
    .await;
    assert_eq!(first.len(), 3);
    assert_eq!(&later[1..], &first[..], "the same logs keep their ids");
    assert!(!first.contains(&later[0]), "a new log gets a new id");
    assert_ne!(first[1], first[2], "two identical lines are two logs");
}

#[test]
fn datadog_keys_never_follow_a_redirect_to_another_host_in_a_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (home, elsewhere) = rt.block_on(async {
        let home = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(307)
                    .insert_header("location", format!("{}/steal", elsewhere.uri()).as_str()),
            )
            .mount(&home)
            .await;
        (home, elsewhere)
    });
    let mut t = triage();
    let out = t
        .cmd
        .args([
            "--dry-run",
            "--no-state",
            "--no-rate-limit",
            "--dd-api-url",
            &home.uri(),
        ])
        .env("DD_API_KEY", API_KEY)
        .env("DD_APP_KEY", APP_KEY)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("redirected to another host"), "{all}");
    assert!(!all.contains(API_KEY) && !all.contains(APP_KEY), "{all}");
    let stolen = rt.block_on(elsewhere.received_requests()).unwrap();
    assert!(
        stolen.is_empty(),
        "the other host got {} request(s)",
        stolen.len()
    );
}
