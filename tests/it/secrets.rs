//! Secrets and personal data in logs never leave the process: not in the Jira ticket, the
//! report, the terminal; and redaction never changes which problem a log belongs to.
//! In: logs written by each test, a wiremock Jira on loopback. Out: every byte sent or printed is
//! searched for the secrets.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, ResponseTemplate};

const V3: &str = "/rest/api/3";
const TOKEN: &str = "jira-token-secrets-SECRET";

/// One log full of secrets, with the pieces that must never appear anywhere.
fn leaky_log() -> (String, Vec<&'static str>) {
    let message = "checkout failed for bob@example.com from 10.20.30.40: token=sk-live-9f8e7d6c5b4a \
                   password=hunter2 Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln \
                   card 4111 1111 1111 1111 key AKIAIOSFODNN7EXAMPLE";
    let line = json!({"id": "leak-1", "message": message, "service": "checkout", "status": "error",
                      "attributes": {"db_password": "pa55-attr", "user": "carol@example.com"}})
    .to_string();
    (
        line + "\n",
        vec![
            "sk-live-9f8e7d6c5b4a",
            "hunter2",
            "eyJhbGciOiJIUzI1NiJ9",
            "4111 1111 1111 1111",
            "AKIAIOSFODNN7EXAMPLE",
            "pa55-attr",
        ],
    )
}

struct Sent {
    everything: String,
}

/// Run the binary against a wiremock Jira; collect every request body, the report, stdout and
/// stderr.
fn run_against_jira(extra: &[&str]) -> Sent {
    run_with(extra, |_| {})
}

/// As `run_against_jira`, with `check` called on the run's folder (report.json inside it)
/// before it is removed.
fn run_with(extra: &[&str], check: impl FnOnce(&std::path::Path)) -> Sent {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(async {
        let server = cloud_jira(true).await;
        Mock::given(method("POST"))
            .and(path(format!("{V3}/issue")))
            .respond_with(ResponseTemplate::new(201).set_body_json(created(10_000, "OPS-1")))
            .mount(&server)
            .await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&server)
            .await;
        server
    });
    let (logs, _) = leaky_log();
    let mut t = triage();
    let input = t.dir.path().join("logs.jsonl");
    let report = t.dir.path().join("report.json");
    std::fs::write(&input, logs).unwrap();
    let out = t
        .cmd
        .args([
            "--input",
            input.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--no-rate-limit",
        ])
        .args(extra)
        .env("JIRA_URL", server.uri())
        .env("JIRA_PROJECT", "OPS")
        .env("JIRA_EMAIL", "bot@example.com")
        .env("JIRA_API_TOKEN", TOKEN)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let mut everything = String::new();
    everything.push_str(&String::from_utf8_lossy(&out.stdout));
    everything.push_str(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{everything}");
    everything.push_str(&std::fs::read_to_string(&report).unwrap());
    check(t.dir.path());
    let requests = rt.block_on(server.received_requests()).unwrap();
    let creates = requests
        .iter()
        .filter(|r| r.url.path() == format!("{V3}/issue"))
        .count();
    assert_eq!(creates, 1, "one ticket filed");
    for r in &requests {
        everything.push_str(&String::from_utf8_lossy(&r.body));
    }
    Sent { everything }
}

#[test]
fn secrets_in_a_log_never_reach_the_ticket_the_report_or_the_terminal() {
    let sent = run_against_jira(&["--no-state"]);
    let (_, secrets) = leaky_log();
    for s in secrets {
        assert!(
            !sent.everything.contains(s),
            "{s} leaked:\n{}",
            sent.everything
        );
    }
    assert!(sent.everything.contains("[REDACTED"), "{}", sent.everything);
    // Personal data stays unless asked for.
    assert!(sent.everything.contains("bob@example.com"));
}

#[test]
fn redact_emails_and_ips_removes_personal_data_too() {
    let sent = run_against_jira(&["--no-state", "--redact", "emails,ips"]);
    for s in [
        "bob@example.com",
        "carol@example.com",
        "10.20.30.40",
        "hunter2",
    ] {
        assert!(
            !sent.everything.contains(s),
            "{s} leaked:\n{}",
            sent.everything
        );
    }
}

#[test]
fn an_unknown_redact_kind_is_a_usage_error() {
    let mut t = triage();
    let out = t
        .cmd
        .args(["--redact", "phones", "--input", "-", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secrets are always redacted"));
}

/// A log kept for a retry is kept redacted; read back, it must still fall in the same problem.
#[test]
fn redaction_never_changes_a_fingerprint() {
    let all = triage::redact::Redactor::parse("all").unwrap();
    for message in [
        "login failed password=hunter2 for user 42",
        "call rejected token=sk-live-abcdef123456",
        "upstream said Bearer abcdefghijklmnopqrstu is expired",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl expired",
        "charge 4111 1111 1111 1111 declined",
        "aws AKIAIOSFODNN7EXAMPLE denied",
        "user bob@example.com from 10.1.2.3 failed",
        r#"body {"secret": "s3cr3t"} refused"#,
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    ] {
        let raw = triage::event::LogEvent::from_value(
            json!({"message": message, "service": "api"}),
            || "x".into(),
        )
        .unwrap();
        let redacted = all.event(raw.clone());
        assert_eq!(
            triage::grouping::fingerprint::fingerprint(&raw).fingerprint,
            triage::grouping::fingerprint::fingerprint(&redacted).fingerprint,
            "{message:?} -> {:?}",
            redacted.message
        );
    }
}

#[cfg(unix)]
#[test]
fn the_state_store_its_folder_and_the_report_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    run_with(&["--state", "private/state/triage.db"], |dir| {
        assert_eq!(mode(&dir.join("report.json")), 0o600, "report");
        assert_eq!(mode(&dir.join("private")), 0o700, "state folder");
        assert_eq!(mode(&dir.join("private/state")), 0o700, "state folder");
        let db = dir.join("private/state/triage.db");
        assert_eq!(mode(&db), 0o600, "state database");
        for entry in std::fs::read_dir(dir.join("private/state")).unwrap() {
            let p = entry.unwrap().path();
            assert_eq!(mode(&p) & 0o077, 0, "{} is readable by others", p.display());
        }
    });
}

#[test]
fn a_state_written_by_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    let input = dir.path().join("logs.jsonl");
    std::fs::write(&input, "{\"message\":\"boom\"}\n").unwrap();
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut t = triage();
        let out = t
            .cmd
            .args([
                "--input",
                input.to_str().unwrap(),
                "--state",
                db.to_str().unwrap(),
                "-q",
            ])
            .args(extra)
            .env("JIRA_URL", "http://127.0.0.1:9")
            .env("JIRA_PROJECT", "OPS")
            .env("JIRA_EMAIL", "bot@example.com")
            .env("JIRA_API_TOKEN", TOKEN)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("newer version of triage"),
            "{extra:?}: {stderr}"
        );
    }
}
