//! Grouping across logs and runs: the template miner's fingerprints are deterministic, a state
//! store shared by consecutive runs gives the same grouping as one run over everything, merged
//! templates label the surviving ticket, and tickets filed under the old masking-only label are
//! found and given the new one. Jira is a small in-memory fake behind wiremock that keeps its
//! issues and labels between runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::*;
use clap::Parser;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PROJECT: &str = "OPS";
const TOKEN: &str = "grouping-test-token-9f1e";

// ---------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------

/// One JSON line in Datadog's shape.
fn log_line(id: &str, service: &str, minute: usize, message: &str) -> String {
    json!({
        "id": id,
        "type": "log",
        "attributes": {
            "status": "error",
            "service": service,
            "host": "host-1",
            "timestamp": format!("2026-11-23T09:{:02}:{:02}Z", (minute / 60) % 60, minute % 60),
            "message": message,
        }
    })
    .to_string()
}

/// `n` logs of a few problems whose variable parts are both maskable (numbers, addresses,
/// paths) and words the miner has to learn (user names, host names without digits).
fn mixed_logs(n: usize) -> Vec<String> {
    let users = [
        "root", "admin", "oracle", "guest", "deploy", "backup", "nagios", "git",
    ];
    let hosts = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let pools = ["orders", "ledger"];
    (0..n)
        .map(|i| {
            let (service, message) = match i % 6 {
                0 => (
                    "sshd",
                    format!(
                        "Failed password for {} from 10.0.{}.{} port {} ssh2",
                        users[(i / 6) % users.len()],
                        i % 7,
                        i % 250,
                        40_000 + i
                    ),
                ),
                1 => (
                    "sshd",
                    format!("Accepted publickey for {} from 10.0.0.{} port {} ssh2", users[i % 3], i % 9, 50_000 + i),
                ),
                2 => (
                    "payments",
                    format!(
                        "could not obtain connection from pool after {}ms (pool={} active={} idle=0)",
                        100 + i,
                        pools[(i / 6) % 2],
                        i % 17
                    ),
                ),
                3 => (
                    "api",
                    format!("upstream {} timed out after {}s", hosts[(i / 6) % hosts.len()], i % 30),
                ),
                4 => ("api", format!("cannot open /var/lib/api/cache-{i}.db: disk full")),
                _ => (
                    "worker",
                    format!("job {} failed: KeyError: '{}'", i, ["user_id", "locale"][i % 2]),
                ),
            };
            log_line(&format!("log-{i:05}"), service, i, &message)
        })
        .collect()
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").expect("input written");
    path
}

// ---------------------------------------------------------------------------------------------
// A Jira that remembers: issues with labels, search by any label, create, add label
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct World {
    /// key → labels.
    issues: BTreeMap<String, Vec<String>>,
    next: u64,
    creates: Vec<Vec<String>>,
    /// (key, label) for every label added with PUT.
    added: Vec<(String, String)>,
    /// (key, body) for every comment posted.
    comments: Vec<(String, Value)>,
}

#[derive(Clone, Default)]
struct FakeJira(Arc<Mutex<World>>);

impl FakeJira {
    fn with_issue(self, key: &str, labels: &[&str]) -> Self {
        {
            let mut w = self.0.lock().unwrap();
            w.issues
                .insert(key.into(), labels.iter().map(|l| l.to_string()).collect());
            w.next += 1;
        }
        self
    }

    fn issue_json(id: u64, key: &str, labels: &[String]) -> Value {
        let mut issue = cloud_issue(id, key, "x", false);
        issue["fields"]["labels"] = json!(labels);
        issue
    }

    async fn start(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }
}

impl Respond for FakeJira {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut w = self.0.lock().unwrap();
        let p = req.url.path().to_string();
        let id_of = |key: &str| key.trim_start_matches("OPS-").parse::<u64>().unwrap_or(0);
        match (req.method.as_str(), p.as_str()) {
            ("GET", "/rest/api/3/myself") => ResponseTemplate::new(200).set_body_json(myself_v3()),
            ("POST", "/rest/api/3/search/jql") => {
                let wanted = jql_labels(req);
                let found = w
                    .issues
                    .iter()
                    .rev()
                    .filter(|(_, labels)| labels.iter().any(|l| wanted.contains(l)))
                    .map(|(k, labels)| Self::issue_json(id_of(k), k, labels))
                    .collect();
                ResponseTemplate::new(200).set_body_json(search_page(found))
            }
            ("POST", "/rest/api/3/issue") => {
                let labels: Vec<String> = json_of(req)["fields"]["labels"]
                    .as_array()
                    .expect("labels")
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_string))
                    .collect();
                w.next += 1;
                let key = format!("OPS-{}", w.next);
                w.issues.insert(key.clone(), labels.clone());
                w.creates.push(labels);
                ResponseTemplate::new(201).set_body_json(created(w.next, &key))
            }
            ("PUT", issue) if issue.starts_with("/rest/api/3/issue/") => {
                let key = issue.trim_start_matches("/rest/api/3/issue/").to_string();
                let body = json_of(req);
                // A ticket brought up to date at the end of a run sends `fields`; a label
                // added sends `update.labels`.
                let ops = body["update"]["labels"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for op in &ops {
                    let label = op["add"].as_str().expect("an add").to_string();
                    w.added.push((key.clone(), label.clone()));
                    let labels = w.issues.entry(key.clone()).or_default();
                    if !labels.contains(&label) {
                        labels.push(label);
                    }
                }
                ResponseTemplate::new(204)
            }
            ("GET", issue) if issue.starts_with("/rest/api/3/issue/") => {
                let key = issue.trim_start_matches("/rest/api/3/issue/");
                match w.issues.get(key) {
                    Some(labels) => ResponseTemplate::new(200).set_body_json(Self::issue_json(
                        id_of(key),
                        key,
                        labels,
                    )),
                    None => ResponseTemplate::new(404),
                }
            }
            ("POST", c) if c.ends_with("/comment") => {
                let key = c
                    .trim_start_matches("/rest/api/3/issue/")
                    .trim_end_matches("/comment")
                    .to_string();
                w.comments.push((key, json_of(req)));
                ResponseTemplate::new(201).set_body_json(json!({"id": "1"}))
            }
            _ => {
                ResponseTemplate::new(500).set_body_string(format!("unexpected {} {p}", req.method))
            }
        }
    }
}

/// Run the library as `main` does, with the Jira token in its environment.
async fn run(args: &[&str]) -> triage::Report {
    let mut all = vec!["triage", "--no-rate-limit", "-q"];
    all.extend_from_slice(args);
    let cli = triage::config::cli::Cli::try_parse_from(&all).expect("valid command line");
    let env: HashMap<&str, &str> = [("JIRA_API_TOKEN", TOKEN), ("HOME", "/nonexistent")].into();
    let (config, _) =
        triage::config::Config::from_cli(&cli, true, &|k| env.get(k).map(|v| v.to_string()))
            .expect("valid configuration");
    triage::run(config, std::future::pending())
        .await
        .expect("the run starts")
}

fn jira_args<'a>(uri: &'a str, state: &'a str, input: &'a str, report: &'a str) -> Vec<&'a str> {
    vec![
        "--jira-url",
        uri,
        "--jira-project",
        PROJECT,
        "--jira-email",
        "ops@example.com",
        "--state",
        state,
        "--input",
        input,
        "--report",
        report,
    ]
}

/// Log id → fingerprint, from a report file.
fn fingerprints(report: &Path) -> BTreeMap<String, String> {
    read_report(report)["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap().to_string(),
                l["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The grouping a map of log → fingerprint makes: sets of log ids.
fn groups(fps: &BTreeMap<String, String>) -> BTreeSet<BTreeSet<String>> {
    let mut by: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (id, fp) in fps {
        by.entry(fp).or_default().insert(id.clone());
    }
    by.into_values().collect()
}

/// Fingerprint → the one it was merged into, from a state store.
fn merges_in(state: &Path) -> HashMap<String, String> {
    let store = triage::state::StateStore::open_read_only(state, Default::default())
        .expect("store opens")
        .expect("store exists");
    store
        .load_templates()
        .expect("templates load")
        .merges
        .into_iter()
        .map(|m| (m.from, m.into))
        .collect()
}

fn resolve(merges: &HashMap<String, String>, fp: &str) -> String {
    let mut cur = fp.to_string();
    while let Some(next) = merges.get(&cur) {
        cur = next.clone();
    }
    cur
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_async_64_and_repeated_runs_give_every_log_the_same_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "in.jsonl", &mixed_logs(600));
    let input = input.to_str().unwrap();
    let mut seen = Vec::new();
    for (i, extra) in [
        &["--dry-run", "--no-state"][..],
        &["--dry-run", "--no-state", "--async", "--workers", "64"][..],
        &["--dry-run", "--no-state"][..],
        &["--dry-run", "--no-state", "--async", "--workers", "64"][..],
    ]
    .iter()
    .enumerate()
    {
        let report = dir.path().join(format!("r{i}.json"));
        let mut args = extra.to_vec();
        args.extend(["--input", input, "--report", report.to_str().unwrap()]);
        run(&args).await;
        seen.push(fingerprints(&report));
    }
    assert_eq!(seen[0].len(), 600);
    for other in &seen[1..] {
        assert_eq!(&seen[0], other);
    }
    // The learned grouping, not just a stable one: user names and hosts became variables,
    // two pools and two commands stayed apart, the quoted key is a value.
    let problems: BTreeSet<&String> = seen[0].values().collect();
    assert_eq!(problems.len(), 7, "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_windows_sharing_a_state_group_like_one_run_and_file_no_ticket_twice() {
    let dir = tempfile::tempdir().unwrap();
    let logs = mixed_logs(600);

    // One run over everything.
    let whole_jira = FakeJira::default();
    let server = whole_jira.start().await;
    let uri = server.uri();
    let input = write_lines(dir.path(), "all.jsonl", &logs);
    let (state, report) = (dir.path().join("whole.db"), dir.path().join("whole.json"));
    run(&jira_args(
        &uri,
        state.to_str().unwrap(),
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    let whole = fingerprints(&report);
    let whole_creates = whole_jira.world().creates.len();

    // The same logs as 10 consecutive runs sharing one state and one Jira.
    let jira = FakeJira::default();
    let server = jira.start().await;
    let uri = server.uri();
    let state = dir.path().join("windows.db");
    let mut windowed = BTreeMap::new();
    for (w, chunk) in logs.chunks(60).enumerate() {
        let input = write_lines(dir.path(), &format!("w{w}.jsonl"), chunk);
        let report = dir.path().join(format!("w{w}.json"));
        let r = run(&jira_args(
            &uri,
            state.to_str().unwrap(),
            input.to_str().unwrap(),
            report.to_str().unwrap(),
        ))
        .await;
        assert_eq!(r.summary.failed, 0, "window {w}");
        windowed.extend(fingerprints(&report));
    }
    // A merged fingerprint means the one it was merged into (its ticket carries both labels).
    let merges = merges_in(&state);
    assert!(!merges.is_empty(), "user names and hosts merged templates");
    let windowed: BTreeMap<String, String> = windowed
        .into_iter()
        .map(|(id, fp)| (id, resolve(&merges, &fp)))
        .collect();
    assert_eq!(groups(&windowed), groups(&whole));
    assert_eq!(windowed, whole, "the very same fingerprints");

    let w = jira.world();
    let created: Vec<&String> = w
        .creates
        .iter()
        .map(|labels| {
            labels
                .iter()
                .find(|l| l.starts_with("triage-"))
                .expect("a fingerprint label")
        })
        .collect();
    let distinct: BTreeSet<&&String> = created.iter().collect();
    assert_eq!(
        distinct.len(),
        created.len(),
        "no label was created twice: {created:?}"
    );
    assert_eq!(
        created.len(),
        whole_creates,
        "as many tickets as one run files"
    );
    // Every problem of the last window found its ticket by label: nothing new was filed for
    // a problem that already had a ticket.
    for fp in windowed.values().collect::<BTreeSet<_>>() {
        let label = label(fp);
        let carrying = w
            .issues
            .values()
            .filter(|labels| labels.contains(&label))
            .count();
        assert!(carrying >= 1, "{label} is on a ticket");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_labels_the_surviving_ticket_and_either_label_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let jira = FakeJira::default();
    let server = jira.start().await;
    let uri = server.uri();
    let state = dir.path().join("s.db");
    let state = state.to_str().unwrap();
    let msg = |user: &str, i: usize| {
        format!(
            "Failed password for {user} from 10.0.0.{i} port {} ssh2",
            40_000 + i
        )
    };
    let step = |n: usize, users: &[&str]| {
        let lines: Vec<String> = users
            .iter()
            .enumerate()
            .map(|(i, u)| log_line(&format!("r{n}-{i}"), "sshd", i, &msg(u, i)))
            .collect();
        let input = write_lines(dir.path(), &format!("r{n}.jsonl"), &lines);
        let report = dir.path().join(format!("r{n}.json"));
        (input, report)
    };

    // Run 1: two users, two templates, two tickets (two values are structure, so far).
    let (input, report) = step(1, &["root", "admin"]);
    run(&jira_args(
        &uri,
        state,
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    let first = fingerprints(&report);
    let (root, admin) = (first["r1-0"].clone(), first["r1-1"].clone());
    assert_ne!(root, admin);
    assert_eq!(jira.world().creates.len(), 2);

    // Run 2: two more users: the position is a variable, all four are one problem now.
    let (input, report) = step(2, &["guest", "oracle"]);
    run(&jira_args(
        &uri,
        state,
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    let merges = merges_in(Path::new(state));
    assert_eq!(
        resolve(&merges, &admin),
        root,
        "the oldest template survives"
    );
    let second = fingerprints(&report);
    assert!(second.values().all(|fp| *fp == root), "{second:?}");

    let w = jira.world().issues.clone();
    let root_ticket = w
        .iter()
        .find(|(_, labels)| labels.contains(&label(&root)))
        .map(|(k, labels)| (k.clone(), labels.clone()))
        .expect("root's ticket");
    assert!(
        root_ticket.1.contains(&label(&admin)),
        "the surviving ticket carries the merged label too: {root_ticket:?}, added {:?}, merges {merges:?}, issues {w:?}",
        jira.world().added
    );
    let creates_before = jira.world().creates.len();

    // Run 3: a fifth user and an old one: both find the surviving ticket, nothing is created.
    let (input, report) = step(3, &["nobody", "admin"]);
    let r = run(&jira_args(
        &uri,
        state,
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    assert_eq!(
        jira.world().creates.len(),
        creates_before,
        "no second ticket"
    );
    assert_eq!(r.tickets.len(), 1);
    assert_eq!(r.tickets[0].key.as_deref(), Some(root_ticket.0.as_str()));
    assert_eq!(
        r.tickets[0].template,
        "Failed password for <*> from <*> port <*> ssh2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_under_the_old_masking_only_label_is_found_and_given_the_new_label() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..5)
        .map(|i| {
            log_line(
                &format!("l{i}"),
                "checkout",
                i,
                &format!(
                    "Connection to 10.0.3.{i}:5432 timed out after {}ms",
                    3000 + i
                ),
            )
        })
        .collect();
    // What the masking-only version labelled this problem with.
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    let event = triage::event::LogEvent::from_value(first, || "l0".into()).unwrap();
    let old = triage::grouping::fingerprint::fingerprint(&event).fingerprint;
    let old_label = label(old.as_str());
    let jira = FakeJira::default().with_issue("OPS-7", &["triage", &old_label]);
    let server = jira.start().await;
    let uri = server.uri();
    let input = write_lines(dir.path(), "in.jsonl", &lines);
    let state = dir.path().join("s.db");
    let report = dir.path().join("r.json");
    let r = run(&jira_args(
        &uri,
        state.to_str().unwrap(),
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;

    let new = fingerprints(&report)["l0"].clone();
    assert_ne!(new, old.as_str(), "the learned fingerprint is a new one");
    assert!(jira.world().creates.is_empty(), "no second ticket");
    assert_eq!(r.tickets.len(), 1);
    assert_eq!(r.tickets[0].key.as_deref(), Some("OPS-7"));
    assert_eq!(r.tickets[0].action, "existing");
    assert_eq!(jira.world().added, vec![("OPS-7".to_string(), label(&new))]);

    // The next run finds it by the new label alone.
    let report2 = dir.path().join("r2.json");
    let r = run(&jira_args(
        &uri,
        state.to_str().unwrap(),
        input.to_str().unwrap(),
        report2.to_str().unwrap(),
    ))
    .await;
    assert_eq!(r.tickets[0].key.as_deref(), Some("OPS-7"));
    assert!(jira.world().creates.is_empty());
    assert_eq!(jira.world().added.len(), 1, "labelled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_lists_what_the_state_learned_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s.db");
    let input = write_lines(dir.path(), "in.jsonl", &mixed_logs(120));
    let report = dir.path().join("r.json");
    // A dry run only reads the state; a real run writes what it learned.
    let jira = FakeJira::default();
    let server = jira.start().await;
    let uri = server.uri();
    run(&jira_args(
        &uri,
        state.to_str().unwrap(),
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    let keys: BTreeSet<String> = jira.world().issues.keys().cloned().collect();
    let mut t = triage();
    let out = t
        .cmd
        .args([
            "templates",
            "--state",
            state.to_str().unwrap(),
            "--output",
            "json",
        ])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let list: Value = serde_json::from_slice(&out).expect("a JSON array");
    let list = list.as_array().unwrap();
    assert!(!list.is_empty());
    let total: u64 = list.iter().map(|t| t["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 120, "every log counted once");
    for t in list {
        for field in [
            "fingerprint",
            "template",
            "count",
            "first_seen",
            "last_seen",
            "ticket",
            "service",
        ] {
            assert!(t.get(field).is_some(), "{field} in {t}");
        }
        let ticket = t["ticket"].as_str().expect("every problem got a ticket");
        assert!(keys.contains(ticket), "{ticket} is a Jira ticket");
    }
    assert!(list
        .iter()
        .any(|t| t["template"] == "Failed password for <*> from <*> port <*> ssh2"));
    let mut t = triage();
    let text = t
        .cmd
        .args(["templates", "--state", state.to_str().unwrap()])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("FINGERPRINT"), "{text}");
    assert!(
        text.contains("Failed password for <*> from <*> port <*> ssh2"),
        "{text}"
    );

    // One template in detail: why its logs share a ticket.
    let failed = list
        .iter()
        .find(|t| t["template"] == "Failed password for <*> from <*> port <*> ssh2")
        .unwrap();
    let fp = failed["fingerprint"].as_str().unwrap();
    let show = |extra: &[&str]| {
        let mut t = triage();
        let out = t
            .cmd
            .args([
                "templates",
                "--state",
                state.to_str().unwrap(),
                "--show",
                fp,
            ])
            .args(extra)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let shown: Value = serde_json::from_str(&show(&["--output", "json"])).unwrap();
    assert_eq!(shown["fingerprint"], fp);
    assert_eq!(shown["count"], failed["count"]);
    let vars = shown["variables"].as_array().unwrap();
    // The user name (3), the address (5), the port (7).
    let positions: Vec<u64> = vars
        .iter()
        .map(|v| v["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [3, 5, 7], "{shown}");
    // Eight users in the logs: the user's variable saw them all, and shows a few.
    assert_eq!(vars[0]["distinct"], 8, "{shown}");
    let samples: Vec<&str> = vars[0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(samples.len(), 3, "{shown}");
    assert!(
        samples.iter().all(|s| [
            "root", "admin", "oracle", "guest", "deploy", "backup", "nagios", "git"
        ]
        .contains(s)),
        "{samples:?}"
    );
    // Ports: one per log, more than are counted one by one.
    assert_eq!(vars[2]["more"], true, "{shown}");
    let text = show(&[]);
    assert!(
        text.contains("variable 3 (after \"for\"): 8 distinct values, e.g. \""),
        "{text}"
    );
    assert!(
        text.contains("variable 7 (after \"port\"): more than 16 distinct values"),
        "{text}"
    );
    // An unknown fingerprint is a usage error that says where to look.
    let mut t = triage();
    t.cmd
        .args([
            "templates",
            "--state",
            state.to_str().unwrap(),
            "--show",
            "0000000000000000",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("triage templates lists them"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_that_merge_within_one_run_file_one_ticket() {
    // Each new user name is a sibling template until the fourth makes the position a variable
    // and they merge: the young ones wait for the end of the input and join the survivor's
    // ticket. Two values that never merge (HTTPS, SOCKS5) still get a ticket each.
    let dir = tempfile::tempdir().unwrap();
    let jira = FakeJira::default();
    let server = jira.start().await;
    let uri = server.uri();
    let mut lines = Vec::new();
    for (i, user) in ["root", "admin", "uucp", "guest", "oracle", "admin"]
        .iter()
        .enumerate()
    {
        let msg = format!(
            "Failed password for {user} from 10.0.0.{i} port {} ssh2",
            40_000 + i
        );
        lines.push(log_line(&format!("ssh-{i}"), "sshd", i, &msg));
    }
    for (i, proto) in ["HTTPS", "SOCKS5", "HTTPS"].iter().enumerate() {
        let msg = format!("app{i}.example.com:443 open through proxy p.example.com:5070 {proto}");
        lines.push(log_line(&format!("proxy-{i}"), "proxifier", 10 + i, &msg));
    }
    let input = write_lines(dir.path(), "in.jsonl", &lines);
    let state = dir.path().join("s.db");
    let report = dir.path().join("r.json");
    let r = run(&jira_args(
        &uri,
        state.to_str().unwrap(),
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    assert_eq!(r.summary.failed, 0);
    let fps = fingerprints(&report);
    let ssh: BTreeSet<&String> = (0..6).map(|i| &fps[&format!("ssh-{i}")]).collect();
    assert_eq!(ssh.len(), 1, "one problem: {ssh:?}");
    assert_ne!(fps["proxy-0"], fps["proxy-1"]);
    assert_eq!(fps["proxy-0"], fps["proxy-2"]);
    let w = jira.world();
    assert_eq!(
        w.creates.len(),
        3,
        "one ticket per problem, none for a template that merged: {:?}",
        w.creates
    );
    let ssh_label = label(ssh.iter().next().unwrap());
    assert_eq!(
        w.creates
            .iter()
            .filter(|ls| ls.contains(&ssh_label))
            .count(),
        1
    );
    // Every sshd log reports the one ticket.
    let full = read_report(&report);
    let keys: BTreeSet<Option<&str>> = full["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["id"].as_str().unwrap().starts_with("ssh-"))
        .map(|l| l["ticket"].as_str())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys.iter().next().unwrap().is_some(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_of_two_ticketed_templates_comments_on_the_younger_and_files_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let jira = FakeJira::default();
    let server = jira.start().await;
    let uri = server.uri();
    let state = dir.path().join("s.db");
    let state = state.to_str().unwrap();
    let step = |n: usize, users: &[&str]| {
        let lines: Vec<String> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let msg = format!(
                    "Failed password for {u} from 10.0.0.{i} port {} ssh2",
                    40_000 + i
                );
                log_line(&format!("r{n}-{i}"), "sshd", i, &msg)
            })
            .collect();
        let input = write_lines(dir.path(), &format!("r{n}.jsonl"), &lines);
        (input, dir.path().join(format!("r{n}.json")))
    };
    // Run 1: two values are structure so far: two problems, two tickets.
    let (input, report) = step(1, &["root", "admin"]);
    run(&jira_args(
        &uri,
        state,
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    let first = fingerprints(&report);
    let (root, admin) = (first["r1-0"].clone(), first["r1-1"].clone());
    assert_eq!(jira.world().creates.len(), 2);
    let key_of = |fp: &str| {
        jira.world()
            .issues
            .iter()
            .find(|(_, ls)| ls.contains(&label(fp)))
            .map(|(k, _)| k.clone())
            .expect("a ticket filed under the label")
    };
    let (root_key, admin_key) = (key_of(&root), key_of(&admin));

    // Run 2: the position turns out to be a variable: admin's template merges into root's.
    let (input, report) = step(2, &["guest", "oracle"]);
    run(&jira_args(
        &uri,
        state,
        input.to_str().unwrap(),
        report.to_str().unwrap(),
    ))
    .await;
    assert_eq!(resolve(&merges_in(Path::new(state)), &admin), root);
    let w = jira.world();
    assert_eq!(w.creates.len(), 2, "no ticket filed for the merged problem");
    assert!(
        w.issues[&root_key].contains(&label(&admin)),
        "{:?}",
        w.issues
    );
    assert!(
        !w.issues[&admin_key].contains(&label(&root)),
        "the younger ticket does not take the survivor's label: {:?}",
        w.issues
    );
    let on_admin: Vec<&Value> = w
        .comments
        .iter()
        .filter(|(k, _)| *k == admin_key)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(on_admin.len(), 1, "{:?}", w.comments);
    let text = on_admin[0].to_string();
    assert!(text.contains(&root_key), "{text}");
    assert!(text.contains(&label(&admin)), "{text}");
}
