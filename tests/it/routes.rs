//! The config file and its routes (issue 15): precedence, errors with FILE:LINE:COLUMN, the
//! fields a route puts on a created ticket (Cloud v3 and Server v2), a problem moved to another
//! project, Jira refusing a route's field, mutes, `triage check` and `triage route --explain`.
//!
//! Jira is a wiremock server answering with the fixtures of tests/fixtures/jira (the Cloud
//! spec's examples, jira-ruby's v2 recordings); every server ends with a catch-all that answers
//! 418 and expects no call.

use crate::common::*;
use serde_json::{json, Value};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "jira-api-token-SECRET-77aa";
const PAT: &str = "server-pat-SECRET-41cd";
const ACCOUNT: &str = "5b10ac8d82e05b22cc7d4ef5";

/// Two problems (services svc0 and svc1), three logs each.
fn two_problems() -> String {
    generated_logs(6, 2)
}

const ROUTES: &str = r#"
[[route]]
name = "payments"
service = "svc0"
project = "PAY"
issue_type = "Task"
components = ["Payments"]
assignee = "5b10ac8d82e05b22cc7d4ef5"
priority = "Highest"
labels = ["team-payments"]
"#;

/// Run the library as `main` does, with the routes of `toml`.
async fn run_routed(args: &[String], env: &[(&str, &str)], toml: &str) -> triage::Report {
    let mut config = checked_config(args, env);
    config.routes =
        triage::config::file::parse("triage.toml", toml, &triage::config::cli::command())
            .expect("valid routes")
            .routes;
    triage::run(config, std::future::pending())
        .await
        .expect("the run starts")
}

fn args(case: &Case, uri: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "triage",
        "--input",
        case.input.to_str().unwrap(),
        "--report",
        case.report.to_str().unwrap(),
        "--jira-url",
        uri,
        "--jira-project",
        "OPS",
        "--no-state",
        "--no-rate-limit",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Answer every label search with `issues(label)`.
fn search_answer(issues: fn(&str) -> Vec<Value>) -> impl Fn(&Request) -> ResponseTemplate {
    move |req: &Request| {
        let found = jql_labels(req).iter().flat_map(|l| issues(l)).collect();
        ResponseTemplate::new(200).set_body_json(search_page(found))
    }
}

async fn catch_all(server: &MockServer) {
    Mock::given(any())
        .respond_with(ResponseTemplate::new(418))
        .named("an unplanned call")
        .expect(0)
        .mount(server)
        .await;
}

/// The create bodies Jira received, by service (the summary names it).
async fn creates(server: &MockServer, create_path: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == create_path)
        .map(json_of)
        .collect()
}

fn by_project(bodies: &[Value], project: &str) -> Value {
    bodies
        .iter()
        .find(|b| b["fields"]["project"]["key"] == project)
        .unwrap_or_else(|| panic!("a create in {project}: {bodies:#?}"))
        .clone()
}

#[tokio::test]
async fn a_routed_problem_is_created_with_the_routes_fields_on_cloud_v3() {
    // A Jira Cloud that knows the run (its other answers follow).
    let server = cloud_jira(false).await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(search_answer(|_| Vec::new()))
        .mount(&server)
        .await;
    let n = std::sync::atomic::AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(move |req: &Request| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let project = json_of(req)["fields"]["project"]["key"]
                .as_str()
                .unwrap()
                .to_string();
            ResponseTemplate::new(201).set_body_json(created(10_000 + i, &format!("{project}-{i}")))
        })
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    catch_all(&server).await;
    let case = Case::new(&two_problems());
    let report = run_routed(
        &args(&case, &server.uri(), &["--jira-email", "bot@example.com"]),
        &[("JIRA_API_TOKEN", TOKEN)],
        ROUTES,
    )
    .await;
    assert_eq!(report.summary.created, 2, "{:?}", report.summary);
    let bodies = creates(&server, "/rest/api/3/issue").await;
    let pay = by_project(&bodies, "PAY")["fields"].clone();
    assert_eq!(pay["issuetype"], json!({"name": "Task"}));
    assert_eq!(pay["components"], json!([{"name": "Payments"}]));
    assert_eq!(pay["assignee"], json!({"accountId": ACCOUNT}));
    assert_eq!(pay["priority"], json!({"name": "Highest"}));
    let labels: Vec<&str> = pay["labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(labels.contains(&"team-payments"), "{labels:?}");
    assert!(
        labels.iter().any(|l| l.starts_with("triage-")),
        "{labels:?}"
    );
    assert_eq!(pay["description"]["type"], "doc", "ADF on v3");
    // The problem no route matches: the configured project and issue type, nothing added.
    let ops = by_project(&bodies, "OPS")["fields"].clone();
    assert_eq!(ops["issuetype"], json!({"name": "Bug"}));
    assert!(ops.get("components").is_none() && ops.get("assignee").is_none());
    // Every label search covers both projects.
    for req in server.received_requests().await.unwrap() {
        if req.url.path() == "/rest/api/3/search/jql" {
            let jql = json_of(&req)["jql"].as_str().unwrap().to_string();
            assert!(
                jql.starts_with(r#"project in ("OPS", "PAY") AND labels"#),
                "{jql}"
            );
        }
    }
    // The report gives each ticket its route.
    let tickets = read_report(&case.report)["tickets"].clone();
    let routes: Vec<Option<&str>> = tickets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.get("route").and_then(Value::as_str))
        .collect();
    assert!(
        routes.contains(&Some("payments")) && routes.contains(&None),
        "{tickets:#}"
    );
}

#[tokio::test]
async fn a_routed_problem_is_created_with_the_routes_fields_on_server_v2() {
    let server = MockServer::start().await;
    let user = jira_fixture("jira-ruby/issue/10002/comment.post.json")["author"].clone();
    Mock::given(method("GET"))
        .and(path("/rest/api/2/myself"))
        .respond_with(ResponseTemplate::new(200).set_body_json(user))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/search"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(jira_fixture("jira-ruby/empty_issues.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/2/issue"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(jira_fixture("jira-ruby/issue.post.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    catch_all(&server).await;
    // One problem, the routed one.
    let case = Case::new(&generated_logs(1, 1));
    let toml = ROUTES
        .replace(ACCOUNT, "jsmith")
        .replace("Highest", "Blocker");
    let report = run_routed(
        &args(&case, &server.uri(), &["--jira-api-version", "2"]),
        &[("JIRA_PAT", PAT)],
        &toml,
    )
    .await;
    assert_eq!(report.summary.created, 1, "{:?}", report.summary);
    let bodies = creates(&server, "/rest/api/2/issue").await;
    let f = by_project(&bodies, "PAY")["fields"].clone();
    assert_eq!(f["components"], json!([{"name": "Payments"}]));
    assert_eq!(
        f["assignee"],
        json!({"name": "jsmith"}),
        "a user name on v2"
    );
    assert_eq!(f["priority"], json!({"name": "Blocker"}));
    assert!(f["description"].is_string(), "wiki markup on v2");
}

#[tokio::test]
async fn a_problem_whose_route_moved_it_is_commented_in_its_old_project_not_filed_again() {
    // A Jira Cloud that knows the run (its other answers follow).
    let server = cloud_jira(false).await;
    // The ticket was filed in OPS; the route now sends the problem to PAY.
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(move |req: &Request| {
            let jql = json_of(req)["jql"].as_str().unwrap().to_string();
            assert!(jql.starts_with(r#"project in ("OPS", "PAY")"#), "{jql}");
            let label = jql_label(req);
            ResponseTemplate::new(200).set_body_json(search_page(vec![cloud_issue(
                10_007, "OPS-7", &label, false,
            )]))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created(1, "PAY-1")))
        .expect(0)
        .named("a second ticket")
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue/OPS-7/comment"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "1"})))
        .expect(1)
        .named("the recurrence comment")
        .mount(&server)
        .await;
    catch_all(&server).await;
    let case = Case::new(&generated_logs(3, 1));
    let report = run_routed(
        &args(&case, &server.uri(), &["--jira-email", "bot@example.com"]),
        &[("JIRA_API_TOKEN", TOKEN)],
        ROUTES,
    )
    .await;
    assert_eq!(
        (
            report.summary.created,
            report.summary.existing,
            report.summary.commented
        ),
        (0, 1, 1),
        "{:?}",
        report.summary
    );
    assert!(case.logs().iter().all(|l| l["ticket"] == "OPS-7"));
    assert_eq!(report.tickets[0].route.as_deref(), Some("payments"));
}

#[tokio::test]
async fn jira_refusing_a_routes_component_fails_that_problem_with_the_route_name_and_the_run_goes_on(
) {
    // A Jira Cloud that knows the run (its other answers follow).
    let server = cloud_jira(false).await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/search/jql"))
        .respond_with(search_answer(|_| Vec::new()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/rest/api/3/issue"))
        .respond_with(|req: &Request| {
            if json_of(req)["fields"].get("components").is_some() {
                ResponseTemplate::new(400).set_body_json(json!({
                    "errorMessages": [],
                    "errors": {"components": "Component name 'Payments' is not valid"}
                }))
            } else {
                ResponseTemplate::new(201).set_body_json(created(10_001, "OPS-1"))
            }
        })
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    catch_all(&server).await;
    let case = Case::new(&two_problems());
    let report = run_routed(
        &args(&case, &server.uri(), &["--jira-email", "bot@example.com"]),
        &[("JIRA_API_TOKEN", TOKEN)],
        ROUTES,
    )
    .await;
    assert_eq!(report.summary.created, 1, "{:?}", report.summary);
    assert_eq!(report.summary.failed, 3, "{:?}", report.summary);
    assert_eq!(triage::exit_code(&report), 3);
    let failed: Vec<Value> = case
        .logs()
        .into_iter()
        .filter(|l| l["outcome"] == "failed")
        .collect();
    for l in &failed {
        let e = l["error"].as_str().unwrap();
        assert!(e.contains("route 'payments'"), "{e}");
        assert!(e.contains("Component name 'Payments' is not valid"), "{e}");
    }
}

#[tokio::test]
async fn a_muted_problems_logs_are_skipped_with_the_routes_name_until_the_date_passes() {
    let toml = "[[route]]\nname = \"noisy\"\nservice = \"svc1\"\nmute = true\nuntil = 2026-12-31\n";
    for (now, muted) in [
        ("2026-12-31T23:00:00Z", true),
        ("2027-01-01T00:00:00Z", false),
    ] {
        let case = Case::new(&two_problems());
        let mut a = args(&case, "http://127.0.0.1:9", &["--dry-run", "--now", now]);
        // No Jira at all: a dry run that only analyses.
        let at = a.iter().position(|x| x == "--jira-url").unwrap();
        a.drain(at..at + 2);
        let report = run_routed(&a, &[], toml).await;
        let logs = case.logs();
        let skipped: Vec<&Value> = logs.iter().filter(|l| l["outcome"] == "skipped").collect();
        if muted {
            assert_eq!(skipped.len(), 3, "{logs:#?}");
            assert!(skipped
                .iter()
                .all(|l| l["error"] == "muted by route 'noisy'"));
            assert_eq!(report.summary.tickets, 1);
            assert_eq!(report.muted.len(), 1);
        } else {
            assert!(skipped.is_empty(), "the mute ended: {logs:#?}");
            assert_eq!(report.summary.tickets, 2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary: precedence, errors, check, explain
// ---------------------------------------------------------------------------------------------

fn workers_of(out: &std::process::Output) -> u64 {
    let s: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    s["workers"].as_u64().expect("workers")
}

#[test]
fn the_config_file_is_under_flags_the_environment_and_dotenv() {
    let logs = two_problems();
    let run = |file: Option<&str>, dotenv: Option<&str>, env: Option<&str>, flag: Option<&str>| {
        let mut t = triage();
        std::fs::write(t.dir.path().join("logs.jsonl"), &logs).unwrap();
        if let Some(f) = file {
            std::fs::write(t.dir.path().join("triage.toml"), f).unwrap();
        }
        if let Some(d) = dotenv {
            std::fs::write(t.dir.path().join(".env"), d).unwrap();
        }
        if let Some(e) = env {
            t.cmd.env("ASYNC_MAX_WORKERS", e);
        }
        t.cmd.args([
            "--dry-run",
            "--no-state",
            "--input",
            "logs.jsonl",
            "--output",
            "json",
        ]);
        if let Some(w) = flag {
            t.cmd.args(["--workers", w]);
        }
        let out = t.cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        workers_of(&out)
    };
    let file = Some("async = true\nworkers = 7\n");
    assert_eq!(run(None, None, None, None), 1, "the default: sequential");
    assert_eq!(run(file, None, None, None), 7, "the file");
    assert_eq!(
        run(file, Some("ASYNC_MAX_WORKERS=8\n"), None, None),
        8,
        ".env beats the file"
    );
    assert_eq!(
        run(file, Some("ASYNC_MAX_WORKERS=8\n"), Some("9"), None),
        9,
        "env beats .env"
    );
    assert_eq!(
        run(file, None, Some("9"), Some("3")),
        3,
        "the flag beats all"
    );

    // $XDG_CONFIG_HOME/triage/triage.toml when the working directory has none, and --config.
    let mut t = triage();
    std::fs::write(t.dir.path().join("logs.jsonl"), &logs).unwrap();
    let xdg = t.dir.path().join("xdg-config/triage");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::write(xdg.join("triage.toml"), "async = true\nworkers = 6\n").unwrap();
    std::fs::write(
        t.dir.path().join("other.toml"),
        "async = true\nworkers = 5\n",
    )
    .unwrap();
    let base = [
        "--dry-run",
        "--no-state",
        "--input",
        "logs.jsonl",
        "--output",
        "json",
    ];
    let out = t.cmd.args(base).output().unwrap();
    assert_eq!(workers_of(&out), 6);
    let out = t.cmd.args(["--config", "other.toml"]).output().unwrap();
    assert_eq!(workers_of(&out), 5);
}

#[test]
fn every_problem_in_the_config_file_is_named_by_file_line_and_column() {
    let bad = "workers = 0\nrate_limit = \"fast\"\nbogus = 1\njira_api_token = \"tok-SECRET-9\"\n\
               [[route]]\nname = \"a\"\ncategory = [\"databse\"]\n";
    for sub in [&[][..], &["check"][..]] {
        let mut t = triage();
        std::fs::write(t.dir.path().join("triage.toml"), bad).unwrap();
        let out = t
            .cmd
            .args(sub)
            .args(["--dry-run", "--input", "-"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for at in [
            "triage.toml:1:11: `workers`",
            "triage.toml:2:14: `rate_limit`",
            "triage.toml:3:1: unknown key `bogus`",
            "triage.toml:4:1: `jira_api_token` is a secret",
            "triage.toml:7:12: category `databse`",
            "5 problem(s)",
        ] {
            assert!(err.contains(at), "{sub:?}: {at} not in {err}");
        }
        assert!(!err.contains("tok-SECRET-9"), "{err}");
    }
    let mut t = triage();
    let out = t
        .cmd
        .args(["--config", "nope.toml", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config nope.toml: no such file"));
}

#[tokio::test]
async fn check_verifies_each_routes_project_issue_type_and_components() {
    // A Jira Cloud that knows the run (its other answers follow).
    let server = cloud_jira(false).await;
    // Both projects are the spec's example (issue types Task and Bug; components
    // "Component 1" and "PXA").
    let project = spec_example("/rest/api/3/project/{projectIdOrKey}", "get", "200");
    for key in ["OPS", "PAY"] {
        Mock::given(method("GET"))
            .and(path(format!("/rest/api/3/project/{key}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(project.clone()))
            .expect(1..)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/rest/api/3/project/PAY/components"))
        .respond_with(ResponseTemplate::new(200).set_body_json(spec_example(
            "/rest/api/3/project/{projectIdOrKey}/components",
            "get",
            "200",
        )))
        .expect(2)
        .mount(&server)
        .await;
    catch_all(&server).await;
    let good = "[[route]]\nname = \"payments\"\nproject = \"PAY\"\nissue_type = \"Task\"\ncomponents = [\"PXA\"]\n";
    let bad = "[[route]]\nname = \"payments\"\nproject = \"PAY\"\nissue_type = \"Story\"\ncomponents = [\"PXA\", \"Ledger\"]\n";
    for (toml, ok) in [(good, true), (bad, false)] {
        let mut t = triage();
        std::fs::write(t.dir.path().join("triage.toml"), toml).unwrap();
        let out = t
            .cmd
            .env("JIRA_URL", server.uri())
            .env("JIRA_PROJECT", "OPS")
            .env("JIRA_EMAIL", "bot@example.com")
            .env("JIRA_API_TOKEN", TOKEN)
            .arg("check")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("routes"))
            .unwrap_or_else(|| panic!("a routes line in {stdout}"));
        if ok {
            assert!(out.status.success(), "{stdout}");
            assert!(line.contains("OK") && line.contains("OPS, PAY"), "{line}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{stdout}");
            assert!(line.contains("FAIL"), "{line}");
            assert!(line.contains("no issue type 'Story'"), "{line}");
            assert!(line.contains("no component 'Ledger'"), "{line}");
            assert!(!line.contains("'PXA'"), "{line}");
        }
        assert!(!stdout.contains(TOKEN));
    }
}

#[test]
fn route_explain_shows_each_problems_route_and_ticket_fields_without_jira() {
    let toml = format!("{ROUTES}\n[[route]]\nname = \"noisy\"\nservice = \"svc1\"\nmute = true\n");
    let explain = |extra: &[&str]| {
        let mut t = triage();
        std::fs::write(t.dir.path().join("logs.jsonl"), generated_logs(9, 3)).unwrap();
        std::fs::write(t.dir.path().join("triage.toml"), &toml).unwrap();
        // Jira is configured but unreachable: explain must not call it.
        let out = t
            .cmd
            .env("JIRA_URL", "http://127.0.0.1:9")
            .env("JIRA_PROJECT", "OPS")
            .env("JIRA_EMAIL", "bot@example.com")
            .env("JIRA_API_TOKEN", TOKEN)
            .args(["route", "--explain", "--input", "logs.jsonl"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = explain(&[]);
    assert!(text.contains("route: payments"), "{text}");
    assert!(
        text.contains("project PAY; issue type Task; components Payments; assignee 5b10ac8d82e05b22cc7d4ef5; priority Highest; labels team-payments"),
        "{text}"
    );
    assert!(
        text.contains("route: noisy") && text.contains("muted"),
        "{text}"
    );
    assert!(text.contains("route: (none: the defaults)"), "{text}");
    assert!(text.contains("project OPS; issue type Bug"), "{text}");

    let json: Value = serde_json::from_str(&explain(&["--output", "json"])).unwrap();
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let pay = entries.iter().find(|e| e["route"] == "payments").unwrap();
    assert_eq!(pay["project"], "PAY");
    assert_eq!(pay["components"], json!(["Payments"]));
    assert_eq!(pay["assignee"], ACCOUNT);
    let muted = entries.iter().find(|e| e["route"] == "noisy").unwrap();
    assert_eq!(muted["muted"], true);
    let fp = pay["fingerprint"].as_str().unwrap();
    let one: Value =
        serde_json::from_str(&explain(&["--output", "json", "--fingerprint", fp])).unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["fingerprint"], fp);
}

/// `[[group]]` rules change how the logs group, and `route --explain` says which rule shaped
/// each problem.
#[test]
fn route_explain_shows_the_group_rule_of_each_problem() {
    let toml =
        "[[group]]\nname = \"all-requests\"\ntemplate = \"^request\"\nfingerprint = \"requests\"\n";
    let mut t = triage();
    std::fs::write(t.dir.path().join("logs.jsonl"), generated_logs(9, 3)).unwrap();
    std::fs::write(t.dir.path().join("triage.toml"), toml).unwrap();
    let out = t
        .cmd
        .args([
            "route",
            "--explain",
            "--input",
            "logs.jsonl",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = json.as_array().unwrap();
    // Three services' requests, named by the rule: one problem, on purpose.
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["occurrences"], 9, "{json}");
    for e in entries {
        assert_eq!(e["fingerprint"], "requests", "{e}");
        assert_eq!(
            e["group"], "all-requests: one problem, fingerprint requests",
            "{e}"
        );
    }
}
