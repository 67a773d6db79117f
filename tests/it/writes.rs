//! What a run writes to Jira on a production-shaped workload (issue 22): many logs per problem,
//! sibling templates that merge during the run, a route that adds a label, and a person who edits
//! each ticket between its create and the end of the run, against a simulated Jira Cloud that
//! replaces labels on `fields.labels` like the real one (`tests/sim`).

use crate::sim;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;

/// A route that adds a label to the payments service's tickets.
const ROUTES: &str = r#"
[[route]]
name = "payments"
service = "payments"
labels = ["team-payments"]
"#;

struct World {
    /// Holds the state store.
    dir: tempfile::TempDir,
    datadog: wiremock::MockServer,
    jira: wiremock::MockServer,
    sim: sim::SimJira,
}

/// The person: adds a label of their own and rewrites the summary of every ticket as soon as
/// it exists.
fn person() -> sim::Person {
    Arc::new(|issue: &mut sim::SimIssue| {
        issue.labels.push("on-call-seen".to_string());
        issue.summary = format!("[checked] {}", issue.summary);
    })
}

/// The workload served by a simulated Datadog (each page answered after `dd_delay`), and a
/// simulated Jira where `person` edits each ticket after its create.
async fn world(logs: usize, dd_delay: Duration, person: sim::Person) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadog = sim::datadog(sim::workload(logs, "AQAAAZ"), dd_delay).await;
    let (jira, sim) = sim::jira(Duration::ZERO, Some(person)).await;
    World {
        dir,
        datadog,
        jira,
        sim,
    }
}

async fn run(w: &World, extra: &[&str]) -> triage::Report {
    let state = w.dir.path().join("state.db");
    let mut args: Vec<String> = [
        "triage",
        "--jira-url",
        &w.jira.uri(),
        "--jira-project",
        "OPS",
        "--jira-email",
        "bot@example.com",
        "--dd-api-url",
        &w.datadog.uri(),
        "--from",
        "2025-11-30T08:55:00Z",
        "--to",
        "2025-11-30T09:15:00Z",
        "--state",
        state.to_str().unwrap(),
        "--no-rate-limit",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let cli = triage::config::cli::Cli::try_parse_from(&args).expect("valid command line");
    let env: HashMap<String, String> = HashMap::from([
        ("JIRA_API_TOKEN".to_string(), "test-token".to_string()),
        ("DD_API_KEY".to_string(), "test-api-key".to_string()),
        ("DD_APP_KEY".to_string(), "test-app-key".to_string()),
    ]);
    let workers_given = extra.contains(&"--workers");
    let (mut config, _) =
        triage::config::Config::from_cli(&cli, workers_given, &|k| env.get(k).cloned())
            .expect("valid configuration");
    config.routes =
        triage::config::file::parse("triage.toml", ROUTES, &triage::config::cli::command())
            .expect("valid routes")
            .routes;
    triage::run(config, std::future::pending())
        .await
        .expect("the run completes")
}

/// Before the simulated servers are dropped: their drop blocks on a lock with a plain
/// executor, whose wake-up a task with its cooperative budget spent (after a run's many
/// awaits) would defer to a scheduler the block never yields to. A yield renews the budget.
async fn settle(w: World) {
    tokio::task::yield_now().await;
    drop(w);
}

/// A long input: ten pages of 100 logs, each answered after [`PAGE_DELAY`], and a 2 s
/// `--timeout`, so new problems wait for it at most 1 s and are filed before it ends.
const LONG_INPUT: &[&str] = &[
    "--async",
    "--workers",
    "10",
    "--batch-size",
    "100",
    "--timeout",
    "2",
];
const PAGE_DELAY: Duration = Duration::from_millis(300);

fn summary(report: &triage::Report) -> Value {
    serde_json::to_value(&report.summary).expect("summary is JSON")
}

/// What a test checks of every ticket the simulated Jira holds after a run: the person's label
/// and summary and the route's label are still there, triage's labels are there, and the
/// description tells the problem's whole run (its count in the report).
fn assert_nothing_taken_away(sim: &sim::SimJira, report: &triage::Report, edited_summary: bool) {
    let issues = sim.issues();
    assert_eq!(issues.len(), report.tickets.len(), "{}", sim.tally());
    let occurrences = regex::Regex::new(r"Occurrences:?\s*(\d+)|(\d+) occurrences").unwrap();
    for t in &report.tickets {
        let key = t.key.as_deref().expect("every problem has a ticket");
        let issue = issues
            .iter()
            .find(|i| i.key == key)
            .unwrap_or_else(|| panic!("{key} is in Jira"));
        let l = |x: &str| issue.labels.iter().any(|y| y == x);
        assert!(
            l("triage") && l(&format!("triage-{}", t.fingerprint)),
            "{key}: {:?}",
            issue.labels
        );
        assert!(
            l("on-call-seen"),
            "{key} lost the person's label: {:?}",
            issue.labels
        );
        if t.service.as_deref() == Some("payments") {
            assert!(
                l("team-payments"),
                "{key} lost the route's label: {:?}",
                issue.labels
            );
        }
        if edited_summary {
            assert!(
                issue.summary.starts_with("[checked] "),
                "{key}'s summary as the person wrote it was replaced: {:?}",
                issue.summary
            );
        }
        let said = triage::ticket::known::description_text(&issue.description)
            + &issue
                .comments
                .iter()
                .map(triage::ticket::known::description_text)
                .collect::<String>();
        let told = occurrences
            .captures_iter(&said)
            .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_string()))
            .any(|n| n == t.occurrences.to_string());
        assert!(
            told,
            "{key} does not tell the run's {} occurrences: {said}",
            t.occurrences
        );
    }
}

/// The tickets of a run by fingerprint: (action, occurrences, labels in Jira but the key).
fn tickets_by_fingerprint(
    sim: &sim::SimJira,
    report: &triage::Report,
) -> std::collections::BTreeMap<String, (String, u64, Vec<String>)> {
    let issues = sim.issues();
    report
        .tickets
        .iter()
        .map(|t| {
            let mut labels = issues
                .iter()
                .find(|i| Some(&i.key) == t.key.as_ref())
                .map(|i| i.labels.clone())
                .unwrap_or_default();
            labels.sort();
            (
                t.fingerprint.clone(),
                (t.action.to_string(), t.occurrences, labels),
            )
        })
        .collect()
}

/// The issue's workload: 1000 logs of 20 problems (five of them in sibling templates that
/// merge during the run) from a simulated Datadog, `--async --workers 10`, state on. One write
/// per new problem and one batched search in all: at most 1.1 calls per problem; what the
/// route and the person set is all still there; the descriptions tell the whole run. A rerun
/// over the same window costs no call but the credentials check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_per_new_problem_and_nothing_others_set_is_taken_away() {
    let w = world(1000, Duration::ZERO, person()).await;
    let report = run(&w, &["--async", "--workers", "10"]).await;
    let s = summary(&report);
    let problems = sim::WORKLOAD_PROBLEMS;
    assert_eq!(s["created"], problems, "{s}\n{}", w.sim.tally());
    assert_eq!(
        (s["failed"].as_u64(), s["duplicates"].as_u64()),
        (Some(0), Some(980)),
        "{s}"
    );
    let calls = w.sim.work_calls() as f64 / problems as f64;
    assert!(
        calls <= 1.1,
        "{calls} Jira calls per new problem: {}",
        w.sim.tally()
    );
    assert_eq!(w.sim.count("create"), problems, "{}", w.sim.tally());
    assert_eq!(
        w.sim.count("update") + w.sim.count("comment"),
        0,
        "{}",
        w.sim.tally()
    );
    assert_nothing_taken_away(&w.sim, &report, true);
    // The merged siblings' labels went on their problem's ticket with its create.
    let labels: usize = w.sim.issues().iter().map(|i| i.labels.len()).sum();
    assert!(labels >= problems * 3 + 15, "{labels} labels in all");

    let before = w.sim.calls().len();
    let again = run(&w, &["--async", "--workers", "10"]).await;
    let calls: Vec<&'static str> = w.sim.calls()[before..].iter().map(|c| c.kind).collect();
    assert_eq!(calls, vec!["myself"], "a rerun over the same window");
    assert_eq!(summary(&again)["created"], 0);
    settle(w).await;
}

/// Sequential and async runs of the workload file the same tickets, with the same labels and
/// counts, at the same cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_and_async_write_the_same() {
    let seq = world(1000, Duration::ZERO, person()).await;
    let one = run(&seq, &[]).await;
    let par = world(1000, Duration::ZERO, person()).await;
    let many = run(&par, &["--async", "--workers", "10"]).await;
    assert_eq!(summary(&one)["mode"], "sequential");
    for field in [
        "created",
        "duplicates",
        "failed",
        "commented",
        "updated",
        "tickets",
    ] {
        assert_eq!(summary(&one)[field], summary(&many)[field], "{field}");
    }
    assert_eq!(
        tickets_by_fingerprint(&seq.sim, &one),
        tickets_by_fingerprint(&par.sim, &many)
    );
    // The same writes. Lookups are batched: how many new problems one search gathers depends
    // on how far the input is read when the first leader needs its answer, so on scheduling
    // (a loaded machine splits the twenty into two searches); never more than that.
    let writes = |sim: &sim::SimJira| {
        let mut calls: Vec<&'static str> = sim.calls().iter().map(|c| c.kind).collect();
        calls.retain(|k| *k != "search");
        calls.sort_unstable();
        calls
    };
    assert_eq!(writes(&seq.sim), writes(&par.sim));
    for sim in [&seq.sim, &par.sim] {
        assert!((1..=2).contains(&sim.count("search")), "{}", sim.tally());
    }
    settle(seq).await;
    settle(par).await;
}

/// A window whose pages come slowly (ten pages of 100 logs, 300 ms each) and a 2 s `--timeout`:
/// new problems wait for the input at most half of it, so their tickets are filed before the
/// input ends, and brought up to date once at its end. The update reads the tickets first (one
/// search), adds labels one by one, and leaves the summary the person rewrote; each ticket gets
/// at most one follow-up write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_input_files_early_and_updates_each_ticket_once_around_a_person_s_edits() {
    let w = world(1000, PAGE_DELAY, person()).await;
    let report = run(&w, LONG_INPUT).await;
    let s = summary(&report);
    let problems = sim::WORKLOAD_PROBLEMS;
    assert_eq!(
        (s["created"].as_u64(), s["failed"].as_u64()),
        (Some(problems as u64), Some(0)),
        "{s}"
    );
    assert_nothing_taken_away(&w.sim, &report, true);
    let calls = w.sim.calls();
    let mut writes_after_create: HashMap<String, usize> = HashMap::new();
    for c in calls.iter().filter(|c| c.kind == "update") {
        *writes_after_create
            .entry(c.key.clone().unwrap())
            .or_default() += 1;
        assert!(
            c.body["fields"].get("labels").is_none()
                && c.body["update"]["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|op| op.get("add").is_some()),
            "labels are only added: {}",
            c.body
        );
        assert!(
            c.body["fields"].get("summary").is_none(),
            "the person's summary is left: {}",
            c.body
        );
    }
    assert!(
        writes_after_create.values().all(|&n| n == 1),
        "at most one follow-up write per ticket: {writes_after_create:?}"
    );
    assert!(
        !writes_after_create.is_empty(),
        "the tickets filed early were brought up to date: {}",
        w.sim.tally()
    );
    assert_eq!(w.sim.count("create"), problems);
    assert_eq!(
        w.sim.count("comment"),
        0,
        "the descriptions were triage's to update"
    );
    settle(w).await;
}

/// The same long input, and the person rewrites each ticket's description: it is left as they
/// wrote it, and the run's figures go in one comment instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_a_person_rewrote_is_left_and_the_figures_go_in_a_comment() {
    let person: sim::Person = Arc::new(|issue: &mut sim::SimIssue| {
        issue.labels.push("on-call-seen".to_string());
        issue.description = serde_json::json!({"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Known: see the runbook."}]}]});
    });
    let w = world(1000, PAGE_DELAY, person).await;
    let report = run(&w, LONG_INPUT).await;
    assert_eq!(summary(&report)["created"], sim::WORKLOAD_PROBLEMS);
    for issue in w.sim.issues() {
        assert_eq!(
            triage::ticket::known::description_text(&issue.description).trim(),
            "Known: see the runbook.",
            "{}'s description as the person wrote it",
            issue.key
        );
    }
    for c in w.sim.calls().iter().filter(|c| c.kind == "update") {
        assert!(c.body["fields"].get("description").is_none(), "{}", c.body);
    }
    // Every ticket whose create did not tell the whole run got its figures in a comment.
    assert!(w.sim.count("comment") > 0, "{}", w.sim.tally());
    assert_nothing_taken_away(&w.sim, &report, false);
    settle(w).await;
}
