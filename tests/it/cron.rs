//! Runs as cron makes them, against one simulated Datadog and Jira that keep their data between
//! runs: a clock the test controls (`--now`), logs that Datadog indexes late, Jira search that
//! lags behind its writes, and runs killed with SIGKILL at awkward moments. Whatever happens,
//! every log is processed exactly once and every problem has exactly one ticket.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PROJECT: &str = "OPS";
const DD_API_KEY: &str = "dd-api-key-SECRET-41c9";
const DD_APP_KEY: &str = "dd-app-key-SECRET-7a02";
const JIRA_TOKEN: &str = "jira-token-SECRET-c3d1";
const SEARCH_PATH: &str = "/api/v2/logs/events/search";

// ---------------------------------------------------------------------------------------------
// The simulated services
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct SimLog {
    id: String,
    problem: usize,
    ts: DateTime<Utc>,
    /// When Datadog has indexed it: searches before this do not return it.
    arrives: DateTime<Utc>,
    host: String,
    message: String,
}

impl SimLog {
    fn service(&self) -> String {
        format!("svc-{}", self.problem)
    }

    /// The event in the shape of the recorded Logs v2 search responses.
    fn event(&self) -> Value {
        json!({
            "id": self.id,
            "type": "log",
            "attributes": {
                "status": "error",
                "timestamp": self.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "service": self.service(),
                "host": self.host,
                "message": self.message,
                "tags": ["env:prod", format!("service:{}", self.service())],
                "attributes": {"duration": 2_700_000.0}
            }
        })
    }
}

/// `n` logs of `problems` problems, one every `step`, starting at `start`; `late(i)` says how long
/// after its timestamp Datadog indexes log `i`.
fn sim_logs(
    n: usize,
    problems: usize,
    start: DateTime<Utc>,
    step: chrono::Duration,
    late: impl Fn(usize) -> chrono::Duration,
) -> Vec<SimLog> {
    let verbs = ["connect to", "read from", "write to", "authenticate with"];
    (0..n)
        .map(|i| {
            let p = i % problems;
            let ts = start + step * i as i32;
            SimLog {
                id: format!("AQAAAYsim{i:06}"),
                problem: p,
                ts,
                arrives: ts + late(i),
                host: format!("i-0{:x}", 0xa11 + i % 4),
                message: format!(
                    "failed to {} upstream-{p} at 10.1.{}.{} after {}ms (request {i})",
                    verbs[p % verbs.len()],
                    i % 200,
                    i % 250,
                    20 + i * 37 % 900
                ),
            }
        })
        .collect()
}

struct Issue {
    id: u64,
    key: String,
    label: String,
    created: Instant,
    created_sim: DateTime<Utc>,
    /// The occurrence count its description shows (from the create, then the last update).
    described: u64,
}

struct SimComment {
    key: String,
    at: DateTime<Utc>,
    text: String,
    /// When the post reached the simulated Jira (it is answered `comment_delay` later).
    arrived: Instant,
}

#[derive(Default)]
struct World {
    now: Option<DateTime<Utc>>,
    logs: Vec<SimLog>,
    issues: Vec<Issue>,
    comments: Vec<SimComment>,
    /// Each Datadog request's filter window (from, to) and whether it was a first page.
    windows: Vec<(DateTime<Utc>, DateTime<Utc>, bool)>,
    pages: u64,
    creates: u64,
    comment_posts: u64,
    /// Jira's search and create answer 503 (no Retry-After) while this is set.
    jira_down: bool,
    /// Datadog answers with `meta.status: timeout` (a partial result) while this is set.
    partial: bool,
    /// Requests to Jira so far.
    jira_requests: u64,
    /// Tickets whose comment posts Jira refuses (400).
    refused_comments: HashSet<String>,
    unexpected: Vec<String>,
}

/// Called as a create, update or comment of a ticket reaches the simulated Jira, before it is
/// answered: ("create" | "update" | "comment", the ticket's key).
type JiraHook = Box<dyn Fn(&str, &str) + Send + Sync>;

/// Datadog and Jira Cloud on one loopback server, sharing one world.
struct Sim {
    world: Mutex<World>,
    page_delay: Duration,
    create_delay: Duration,
    search_lag: Duration,
    /// How long a comment post takes to answer.
    comment_delay: Duration,
    hook: Mutex<Option<JiraHook>>,
}

impl Sim {
    fn new(logs: Vec<SimLog>, page_delay: Duration, create_delay: Duration) -> Arc<Sim> {
        Arc::new(Sim {
            world: Mutex::new(World {
                logs,
                ..World::default()
            }),
            page_delay,
            create_delay,
            search_lag: Duration::from_millis(1500),
            comment_delay: Duration::ZERO,
            hook: Mutex::new(None),
        })
    }

    /// The same, with comment posts answered `comment_delay` after they arrive.
    fn with_comment_delay(logs: Vec<SimLog>, comment_delay: Duration) -> Arc<Sim> {
        Arc::new(Sim {
            world: Mutex::new(World {
                logs,
                ..World::default()
            }),
            page_delay: Duration::ZERO,
            create_delay: Duration::ZERO,
            search_lag: Duration::from_millis(1500),
            comment_delay,
            hook: Mutex::new(None),
        })
    }

    fn set_hook(&self, hook: JiraHook) {
        *self.hook.lock().unwrap() = Some(hook);
    }

    fn call_hook(&self, what: &str, key: &str) {
        if let Some(hook) = &*self.hook.lock().unwrap() {
            hook(what, key);
        }
    }

    async fn serve(self: &Arc<Self>) -> MockServer {
        let server = MockServer::start().await;
        let sim = self.clone();
        Mock::given(any())
            .respond_with(move |req: &Request| sim.respond(req))
            .mount(&server)
            .await;
        server
    }

    fn set_jira_down(&self, down: bool) {
        self.world.lock().unwrap().jira_down = down;
    }

    fn set_now(&self, now: DateTime<Utc>) {
        self.world.lock().unwrap().now = Some(now);
    }

    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut w = self.world.lock().unwrap();
        let p = req.url.path().to_string();
        let issue_key = p
            .strip_prefix("/rest/api/3/issue/")
            .map(|rest| rest.split('/').next().unwrap_or_default().to_string());
        if p.starts_with("/rest/api/") {
            w.jira_requests += 1;
        }
        if w.jira_down && matches!(p.as_str(), "/rest/api/3/issue" | "/rest/api/3/search/jql") {
            return ResponseTemplate::new(503).set_body_string("Service Unavailable");
        }
        match (req.method.as_str(), p.as_str()) {
            ("POST", SEARCH_PATH) => self.search_logs(&mut w, &json_of(req)),
            ("GET", "/rest/api/3/myself") => ResponseTemplate::new(200).set_body_json(myself_v3()),
            ("GET", "/rest/api/3/project/OPS") => ResponseTemplate::new(200).set_body_json(
                spec_example("/rest/api/3/project/{projectIdOrKey}", "get", "200"),
            ),
            ("POST", "/rest/api/3/search/jql") => {
                let wanted = jql_labels(req);
                let reconcile: Vec<u64> = json_of(req)["reconcileIssues"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                let found = w
                    .issues
                    .iter()
                    .filter(|i| {
                        wanted.contains(&i.label)
                            && (i.created.elapsed() >= self.search_lag || reconcile.contains(&i.id))
                    })
                    .map(|i| cloud_issue(i.id, &i.key, &i.label, false))
                    .collect();
                ResponseTemplate::new(200).set_body_json(search_page(found))
            }
            ("POST", "/rest/api/3/issue") => {
                // Stored when it arrives, answered later: a run killed meanwhile never learns
                // the key.
                w.creates += 1;
                let id = 10_000 + w.issues.len() as u64;
                let key = format!("{PROJECT}-{}", w.issues.len() + 1);
                let body = json_of(req);
                let label = body_label(&body);
                let created_sim = w.now.unwrap_or_else(Utc::now);
                w.issues.push(Issue {
                    id,
                    key: key.clone(),
                    label,
                    created: Instant::now(),
                    created_sim,
                    described: described_count(&body["fields"]["description"]),
                });
                self.call_hook("create", &key);
                ResponseTemplate::new(201)
                    .set_body_json(created(id, &key))
                    .set_delay(self.create_delay)
            }
            ("POST", _) if p.ends_with("/comment") => {
                w.comment_posts += 1;
                let key = issue_key.unwrap_or_default();
                if w.refused_comments.contains(&key) {
                    return ResponseTemplate::new(400).set_body_json(json!({
                        "errorMessages": [format!("{key}: comments are closed on this issue")],
                        "errors": {}
                    }));
                }
                let at = w.now.unwrap_or_else(Utc::now);
                let text = adf_text(&json_of(req)["body"]);
                self.call_hook("comment", &key);
                w.comments.push(SimComment {
                    key,
                    at,
                    text,
                    arrived: Instant::now(),
                });
                ResponseTemplate::new(201)
                    .set_body_json(spec_example(
                        "/rest/api/3/issue/{issueIdOrKey}/comment",
                        "post",
                        "201",
                    ))
                    .set_delay(self.comment_delay)
            }
            // The end-of-run update of a ticket created in the run: its description now shows
            // the whole run.
            ("PUT", _) if issue_key.is_some() => {
                let key = issue_key.unwrap_or_default();
                let described = described_count(&json_of(req)["fields"]["description"]);
                match w.issues.iter_mut().find(|i| i.key == key) {
                    Some(issue) => {
                        issue.described = described;
                        self.call_hook("update", &key);
                        ResponseTemplate::new(204)
                    }
                    None => ResponseTemplate::new(404),
                }
            }
            ("GET", _) if issue_key.is_some() => {
                let key = issue_key.unwrap_or_default();
                match w.issues.iter().find(|i| i.key == key) {
                    Some(i) => ResponseTemplate::new(200)
                        .set_body_json(cloud_issue(i.id, &i.key, &i.label, false)),
                    None => ResponseTemplate::new(404).set_body_json(json!({
                        "errorMessages": ["Issue does not exist or you do not have permission to see it."],
                        "errors": {}
                    })),
                }
            }
            _ => {
                w.unexpected.push(format!("{} {p}", req.method));
                ResponseTemplate::new(418).set_body_string("unexpected call")
            }
        }
    }

    /// Logs v2 search: the indexed logs in [from, to], oldest first, a page at a time; the
    /// cursor is opaque to the client.
    fn search_logs(&self, w: &mut World, body: &Value) -> ResponseTemplate {
        let time = |v: &Value| {
            DateTime::parse_from_rfc3339(v.as_str().expect("a time"))
                .expect("RFC 3339")
                .with_timezone(&Utc)
        };
        let from = time(&body["filter"]["from"]);
        let to = time(&body["filter"]["to"]);
        let limit = body["page"]["limit"].as_u64().unwrap_or(10) as usize;
        let cursor = body["page"]["cursor"].as_str();
        let offset: usize = cursor
            .and_then(|c| c.strip_prefix("c-"))
            .map(|c| c.parse().expect("our cursor"))
            .unwrap_or(0);
        w.windows.push((from, to, cursor.is_none()));
        w.pages += 1;
        let now = w.now.expect("the test set the clock");
        let mut visible: Vec<&SimLog> = w
            .logs
            .iter()
            .filter(|l| l.arrives <= now && l.ts >= from && l.ts <= to)
            .collect();
        visible.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
        let page: Vec<Value> = visible
            .iter()
            .skip(offset)
            .take(limit)
            .map(|l| l.event())
            .collect();
        let status = if w.partial { "timeout" } else { "done" };
        let mut meta = json!({"elapsed": 12, "request_id": "pddv1sim", "status": status});
        if offset + limit < visible.len() {
            meta["page"] = json!({"after": format!("c-{}", offset + limit)});
        }
        ResponseTemplate::new(200)
            .set_body_json(json!({"data": page, "meta": meta}))
            .set_delay(self.page_delay)
    }

    fn issues_per_label(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for i in &self.world.lock().unwrap().issues {
            *out.entry(i.label.clone()).or_default() += 1;
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The binary as cron runs it: configured through the environment only.
fn cron_command(
    uri: &str,
    state: &Path,
    now: DateTime<Utc>,
    report: &Path,
    extra: &[&str],
) -> Command {
    cron_command_in(
        &["--async", "--workers", "8"],
        uri,
        state,
        now,
        report,
        extra,
    )
}

/// [`cron_command`] in another mode (`--async --workers N`, or `[]`: sequential).
fn cron_command_in(
    mode: &[&str],
    uri: &str,
    state: &Path,
    now: DateTime<Utc>,
    report: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("triage"));
    cmd.env_clear()
        .current_dir(state.parent().unwrap())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DD_API_KEY", DD_API_KEY)
        .env("DD_APP_KEY", DD_APP_KEY)
        .env("DD_API_URL", uri)
        .env("JIRA_URL", uri)
        .env("JIRA_PROJECT", PROJECT)
        .env("JIRA_EMAIL", "triage-bot@example.com")
        .env("JIRA_API_TOKEN", JIRA_TOKEN)
        .env("TRIAGE_STATE", state)
        .args(["--no-rate-limit", "--output", "json"])
        .args(mode)
        .arg("--now")
        .arg(now.to_rfc3339())
        .arg("--report")
        .arg(report)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn assert_no_secret(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert_no_secret_in(&text, &[DD_API_KEY, DD_APP_KEY, JIRA_TOKEN]);
    }
}

/// Run to the end off the async runtime (the simulated services keep serving meanwhile).
async fn finish(mut cmd: Command) -> Output {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("triage runs"))
        .await
        .unwrap();
    assert_no_secret(&out);
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Ids a report says were processed in its run (not skipped as already processed).
fn processed_ids(report: &Path) -> Vec<String> {
    read_report(report)["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter(|l| l["outcome"] != "skipped")
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect()
}

/// Start the binary, wait until `point` holds in the simulated world, then SIGKILL it.
async fn kill_when(
    sim: &Arc<Sim>,
    mut cmd: Command,
    what: &str,
    point: impl Fn(&World) -> bool,
) -> bool {
    let mut child: Child = cmd.spawn().expect("triage starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if point(&sim.world.lock().unwrap()) {
            child.kill().expect("SIGKILL");
            let status = child.wait().unwrap();
            assert_eq!(status.code(), None, "killed by a signal");
            return true;
        }
        if let Some(status) = child.try_wait().unwrap() {
            // The run ended before reaching the point: still a valid run, just not a kill.
            assert!(status.success(), "run ended with {status} before '{what}'");
            return false;
        }
        assert!(Instant::now() < deadline, "'{what}' never happened");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The occurrence count a ticket description shows.
fn described_count(description: &Value) -> u64 {
    let count = regex::Regex::new(r"Occurrences:?\s*(\d+)").unwrap();
    let text = adf_text(description);
    count
        .captures(&text)
        .unwrap_or_else(|| panic!("no occurrence count in {text}"))[1]
        .parse()
        .unwrap()
}

/// The occurrence count a recurrence comment reports.
fn comment_count(text: &str) -> u64 {
    let count = regex::Regex::new(r"Seen again: (\d+) occurrences? since the last update").unwrap();
    count
        .captures(text)
        .unwrap_or_else(|| panic!("no count in {text}"))[1]
        .parse()
        .unwrap()
}

/// The state scope of the binary run against the simulated services at `uri`.
fn job(uri: &str) -> triage::state::Scope {
    triage::state::Scope {
        source: triage::state::Scope::datadog(uri, "status:error"),
        jira: triage::state::Scope::jira(uri, PROJECT),
    }
}

/// Every log id the store knows as processed, and the retry list's ids.
fn store_view(state: &Path, uri: &str, logs: &[SimLog]) -> (HashSet<String>, Vec<String>) {
    let store = triage::state::StateStore::open_read_only(state, job(uri))
        .expect("store opens")
        .expect("store exists");
    let seen = logs
        .iter()
        .filter(|l| store.is_seen(&l.id).unwrap())
        .map(|l| l.id.clone())
        .collect();
    let failed = store
        .failed_logs()
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    (seen, failed)
}

/// The checkpoint the store keeps for the binary run against the simulated services at `uri`.
fn checkpoint_of(state: &Path, uri: &str) -> Option<DateTime<Utc>> {
    triage::state::StateStore::open_read_only(state, job(uri))
        .expect("store opens")
        .expect("store exists")
        .checkpoint(&job(uri).source)
        .unwrap()
}

/// Each problem's fingerprint, as the pipeline computes it over these logs in order (one
/// template miner; a template merged into an older one counts as that one).
fn fingerprints_of(logs: &[SimLog]) -> BTreeMap<usize, String> {
    let mut miner = triage::grouping::TemplateMiner::default();
    let mut raw = BTreeMap::new();
    for l in logs {
        let event = triage::event::LogEvent::from_value(l.event(), || l.id.clone()).unwrap();
        let fp = miner.fingerprint(&event).fingerprint;
        raw.entry(l.problem).or_insert(fp);
    }
    raw.into_iter()
        .map(|(p, fp)| (p, miner.resolve(&fp).as_str().to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_killed_at_any_point_lose_no_log_repeat_no_log_and_file_no_duplicate() {
    let now = t("2026-11-23T10:00:00Z");
    let logs = sim_logs(
        480,
        12,
        now - chrono::Duration::minutes(14),
        chrono::Duration::seconds(1),
        |_| chrono::Duration::seconds(5),
    );
    let fps = fingerprints_of(&logs);
    assert_eq!(fps.len(), 12);
    // 12 pages of 40 at 150 ms each; a create is answered 400 ms after Jira stored it, a
    // comment 100 ms after: the kill meant for the comment phase lands there even when this
    // test is slow to see the first comment (without the delay, the rest of that phase and the
    // checkpoint take about 20 ms).
    let sim = Arc::new(Sim {
        world: Mutex::new(World {
            logs: logs.clone(),
            ..World::default()
        }),
        page_delay: Duration::from_millis(150),
        create_delay: Duration::from_millis(400),
        search_lag: Duration::from_millis(1500),
        comment_delay: Duration::from_millis(100),
        hook: Mutex::new(None),
    });
    sim.set_now(now);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let run = |n: usize| {
        cron_command(
            &server.uri(),
            &state,
            now,
            &dir.path().join(format!("report-{n}.json")),
            &["--batch-size", "40", "--comment-cooldown", "0s"],
        )
    };

    // Where each kill lands: a create Jira stored but never answered; the middle of the
    // stream; after several tickets exist; while recurrence comments are being posted.
    let start = |w: &World| (w.pages, w.creates, w.comment_posts);
    let mut kills = 0;
    let mut seen_before = HashSet::new();
    let (p0, c0, _) = start(&sim.world.lock().unwrap());
    kills += kill_when(&sim, run(1), "first create sent", move |w| w.creates > c0).await as usize;
    let mut processed_by_killed_runs = 0;
    let mut per_run = Vec::new();
    for (n, what) in [
        (2, "fourth page requested"),
        (3, "eighth page requested"),
        (4, "first comment posted"),
    ] {
        let (seen, _) = store_view(&state, &server.uri(), &logs);
        assert!(
            seen.is_superset(&seen_before),
            "a recorded log was forgotten"
        );
        processed_by_killed_runs += seen.len() - seen_before.len();
        per_run.push(seen.len() - seen_before.len());
        seen_before = seen;
        let (p, _, m) = start(&sim.world.lock().unwrap());
        let killed = match n {
            2 => kill_when(&sim, run(n), what, move |w| w.pages >= p + 4).await,
            3 => kill_when(&sim, run(n), what, move |w| w.pages >= p + 8).await,
            _ => kill_when(&sim, run(n), what, move |w| w.comment_posts > m).await,
        };
        kills += killed as usize;
    }
    let _ = p0;
    let (seen, _) = store_view(&state, &server.uri(), &logs);
    processed_by_killed_runs += seen.len() - seen_before.len();
    per_run.push(seen.len() - seen_before.len());
    let seen_before_final = seen;
    // A run saves its checkpoint last, once every outcome is committed: a kill that lands after
    // that (the run was nearly done) leaves one, and the final run reads only from there.
    let checkpoint = checkpoint_of(&state, &server.uri());
    let requests_before_final = sim.world.lock().unwrap().windows.len();

    let out = finish(run(5)).await;
    let summary = json_summary(&out, 0);
    let final_ids: HashSet<String> = processed_ids(&dir.path().join("report-5.json"))
        .into_iter()
        .collect();

    // Exactly once: the last run processed precisely what the killed runs had not recorded.
    assert!(
        final_ids.is_disjoint(&seen_before_final),
        "a log processed twice"
    );
    let all: HashSet<String> = logs.iter().map(|l| l.id.clone()).collect();
    let union: HashSet<String> = final_ids.union(&seen_before_final).cloned().collect();
    assert_eq!(union, all, "a log was lost");
    let (seen, failed) = store_view(&state, &server.uri(), &logs);
    assert_eq!(seen.len(), logs.len());
    assert!(failed.is_empty(), "left on the retry list: {failed:?}");

    // The window the final run read: from the checkpoint less the overlap, or the default
    // window when no run got as far as saving a checkpoint.
    let final_windows: HashSet<(DateTime<Utc>, DateTime<Utc>)> = sim.world.lock().unwrap().windows
        [requests_before_final..]
        .iter()
        .map(|&(from, to, _)| (from, to))
        .collect();
    assert_eq!(final_windows.len(), 1, "{final_windows:?}");
    let (from, to) = final_windows.into_iter().next().unwrap();
    if let Some(checkpoint) = checkpoint {
        assert_eq!(from, checkpoint - triage::CHECKPOINT_OVERLAP);
    }
    // The checkpoint never passes a log no run recorded: everything behind the window was.
    for l in logs.iter().filter(|l| l.ts < from) {
        assert!(
            seen_before_final.contains(&l.id),
            "{} is behind the checkpoint {checkpoint:?} but no run recorded it",
            l.id
        );
    }
    // Every recorded log the final run fetched again is skipped as already processed.
    let refetched = logs
        .iter()
        .filter(|l| l.ts >= from && l.ts <= to && l.arrives <= now)
        .filter(|l| seen_before_final.contains(&l.id))
        .count();
    assert_eq!(summary["already_processed"], refetched);

    // Never twice: one ticket per problem, whatever the kills interrupted.
    let per_label = sim.issues_per_label();
    let duplicates: usize = per_label.values().map(|n| n - 1).sum();
    for fp in fps.values() {
        assert_eq!(per_label.get(&label(fp)), Some(&1), "{per_label:?}");
    }
    assert_eq!(per_label.len(), fps.len());
    let w = sim.world.lock().unwrap();
    assert!(
        w.unexpected.is_empty(),
        "unexpected calls: {:?}",
        w.unexpected
    );
    // No occurrence lost: each ticket's description (its first log, or the whole run that
    // created it once the end-of-run update landed), its comments and what is still pending
    // add up to at least its logs. (A count can be told twice: a comment or an update Jira
    // took just before a kill, or a lost create's first log, which its description already
    // shows.)
    let store = triage::state::StateStore::open_read_only(&state, job(&server.uri()))
        .unwrap()
        .unwrap();
    let mut surplus = 0;
    for (problem, fp) in &fps {
        let issue = w.issues.iter().find(|i| i.label == label(fp)).unwrap();
        let commented: u64 = w
            .comments
            .iter()
            .filter(|c| c.key == issue.key)
            .map(|c| comment_count(&c.text))
            .sum();
        let told = issue.described + commented + store.comment_state(&issue.key).unwrap().pending;
        let total = logs.iter().filter(|l| l.problem == *problem).count() as u64;
        assert!(told >= total, "{}: {told} told of {total}", issue.key);
        surplus += told - total;
    }
    eprintln!(
        "kill test: {kills} kills, {} logs ({processed_by_killed_runs} recorded by killed runs: \
         {per_run:?}, {} by the last run, which read from {from} (checkpoint {checkpoint:?}) \
         and skipped {refetched}), {} creates sent, {} tickets, duplicates = {duplicates}, \
         occurrences told twice = {surplus}",
        logs.len(),
        final_ids.len(),
        w.creates,
        w.issues.len()
    );
    assert!(kills >= 3, "the kills landed ({kills})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_state_exits_75_naming_the_first() {
    let now = t("2026-11-23T10:00:00Z");
    let logs = logs_before(40, 2, now, chrono::Duration::seconds(5));
    let sim = Sim::new(logs, Duration::from_millis(300), Duration::ZERO);
    sim.set_now(now);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let args = ["--batch-size", "10"];
    let mut first = cron_command(
        &server.uri(),
        &state,
        now,
        &dir.path().join("a.json"),
        &args,
    )
    .spawn()
    .unwrap();
    // The first run holds the lock once it asks Datadog for logs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.world.lock().unwrap().pages == 0 {
        assert!(Instant::now() < deadline, "the first run never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let second = finish(cron_command(
        &server.uri(),
        &state,
        now,
        &dir.path().join("b.json"),
        &args,
    ))
    .await;
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the second run gave up at once"
    );
    let err = stderr(&second);
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(
        second.stdout.is_empty(),
        "no summary from a run that did not run"
    );

    let first = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(first.success());
    // The lock is free again; the same window once more finds everything already done.
    let third = finish(cron_command(
        &server.uri(),
        &state,
        now,
        &dir.path().join("c.json"),
        &["--batch-size", "10", "--from", "now-15m"],
    ))
    .await;
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    let s: Value = serde_json::from_slice(&third.stdout).unwrap();
    assert_eq!(s["already_processed"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_minutes_of_cron_with_late_logs_leave_no_gap_and_no_overlap() {
    let t0 = t("2026-11-23T10:00:00Z");
    // 300 logs from 10 minutes before the first run to 30 minutes after it, one every 8 s.
    // Most are indexed within 45 s; every 7th after 70 s and every 10th after 150 s, later
    // than the 60 s ingestion delay (the overlap with the previous window catches them).
    let logs = sim_logs(
        300,
        6,
        t0 - chrono::Duration::minutes(10),
        chrono::Duration::seconds(8),
        |i| {
            chrono::Duration::seconds(if i % 10 == 0 {
                150
            } else if i % 7 == 0 {
                70
            } else {
                3 + (i as i64 * 13) % 42
            })
        },
    );
    let fps = fingerprints_of(&logs);
    let sim = Sim::new(logs.clone(), Duration::ZERO, Duration::ZERO);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let metrics = dir.path().join("triage.prom");

    // Every 2 minutes for 30 minutes, then once more after the last log was indexed.
    let mut times: Vec<DateTime<Utc>> = (0..=15)
        .map(|k| t0 + chrono::Duration::minutes(2 * k))
        .collect();
    times.push(t0 + chrono::Duration::minutes(36));
    let mut processed: HashMap<String, Vec<usize>> = HashMap::new();
    let mut windows = Vec::new();
    for (n, now) in times.iter().enumerate() {
        sim.set_now(*now);
        let before = sim.world.lock().unwrap().windows.len();
        let report = dir.path().join(format!("run-{n}.json"));
        let out = finish(cron_command(
            &server.uri(),
            &state,
            *now,
            &report,
            &[
                "--batch-size",
                "25",
                "--comment-cooldown",
                "10m",
                "--metrics-file",
                metrics.to_str().unwrap(),
            ],
        ))
        .await;
        assert_eq!(out.status.code(), Some(0), "run {n}: {}", stderr(&out));
        for id in processed_ids(&report) {
            processed.entry(id).or_default().push(n);
        }
        let w = sim.world.lock().unwrap();
        let (from, to, first) = w.windows[before];
        assert!(first);
        windows.push((from, to));
        // The window ends the ingestion delay before now.
        assert_eq!(to, *now - chrono::Duration::seconds(60), "run {n}");
        // Nothing processed before Datadog had it.
        for l in w
            .logs
            .iter()
            .filter(|l| processed.get(&l.id) == Some(&vec![n]))
        {
            assert!(l.arrives <= *now);
        }
    }

    // No gap: each window starts at or before the previous one's end.
    for pair in windows.windows(2) {
        assert!(pair[1].0 <= pair[0].1, "gap between {pair:?}");
    }
    // No overlap in the work: every log processed, each in exactly one run.
    let twice: Vec<_> = processed
        .iter()
        .filter(|(_, runs)| runs.len() > 1)
        .collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    let missing: Vec<&str> = logs
        .iter()
        .filter(|l| !processed.contains_key(&l.id))
        .map(|l| l.id.as_str())
        .collect();
    assert!(missing.is_empty(), "never processed: {missing:?}");

    // One ticket per problem, and each ticket's recurrences commented at most every 10 minutes,
    // with the occurrences in between added up: the description (the whole run that created
    // the ticket) + comments + still pending equals every log of the problem.
    let per_label = sim.issues_per_label();
    assert_eq!(per_label.len(), fps.len());
    assert!(per_label.values().all(|n| *n == 1), "{per_label:?}");
    let store = triage::state::StateStore::open_read_only(&state, job(&server.uri()))
        .unwrap()
        .unwrap();

    let w = sim.world.lock().unwrap();
    for (problem, fp) in &fps {
        let issue = w.issues.iter().find(|i| i.label == label(fp)).unwrap();
        let comments: Vec<&SimComment> = w.comments.iter().filter(|c| c.key == issue.key).collect();
        let mut last = issue.created_sim;
        let mut reported = issue.described;
        for c in &comments {
            assert!(
                c.at - last >= chrono::Duration::minutes(10),
                "{}: comments at {last} and {}",
                issue.key,
                c.at
            );
            last = c.at;
            reported += comment_count(&c.text);
        }
        let pending = store.comment_state(&issue.key).unwrap().pending;
        let total = logs.iter().filter(|l| l.problem == *problem).count() as u64;
        assert_eq!(reported + pending, total, "{}", issue.key);
        assert!(
            !comments.is_empty(),
            "{} recurred over 30 minutes",
            issue.key
        );
    }

    // The metrics file describes the last run.
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("triage_last_success_timestamp_seconds"),
        "{prom}"
    );
    assert!(prom.contains("# TYPE"), "{prom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_that_failed_are_retried_first_next_run_and_given_up_after_max_retries() {
    let now = t("2026-11-23T10:00:00Z");
    let logs = logs_before(30, 3, now, chrono::Duration::seconds(10));
    let sim = Sim::new(logs.clone(), Duration::ZERO, Duration::ZERO);
    sim.set_now(now);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");

    // Jira's search and create are down. The first problem's search fails after its retries
    // and opens the circuit breaker: the other logs are not sent to Jira, they go on the retry
    // list.
    sim.set_jira_down(true);
    let args = ["--max-retries", "1", "--breaker-threshold", "1"];
    let out = finish(cron_command(
        &server.uri(),
        &state,
        now,
        &dir.path().join("r1.json"),
        &args,
    ))
    .await;
    let s = json_summary(&out, 3);
    assert_eq!(s["failed"], 30, "{s}");
    assert!(s["breaker_trips"].as_u64().unwrap() >= 1, "{s}");
    let (_, failed) = store_view(&state, &server.uri(), &logs);
    assert_eq!(failed.len(), 30);

    // Still down on the second run: the same 30 come back first and fail again.
    let later = now + chrono::Duration::minutes(5);
    sim.set_now(later);
    let out = finish(cron_command(
        &server.uri(),
        &state,
        later,
        &dir.path().join("r2.json"),
        &args,
    ))
    .await;
    let s = json_summary(&out, 3);
    assert_eq!(s["failed"], 30, "{s}");

    // Jira is back. Third run: after 2 failed runs the retries are spent: given up, said so.
    sim.set_jira_down(false);
    let later = now + chrono::Duration::minutes(10);
    sim.set_now(later);
    let out = finish(cron_command(
        &server.uri(),
        &state,
        later,
        &dir.path().join("r3.json"),
        &args,
    ))
    .await;
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["given_up"], 30, "{s}");
    assert!(stderr(&out).contains("given up"), "{}", stderr(&out));
    let (_, failed) = store_view(&state, &server.uri(), &logs);
    assert!(failed.is_empty());
    assert!(
        sim.issues_per_label().is_empty(),
        "nothing was retried after giving up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_succeeds_on_the_next_run_and_leaves_the_retry_list() {
    let now = t("2026-11-23T10:00:00Z");
    let logs = logs_before(20, 2, now, chrono::Duration::seconds(10));
    let fps = fingerprints_of(&logs);
    let sim = Sim::new(logs.clone(), Duration::ZERO, Duration::ZERO);
    sim.set_now(now);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    sim.set_jira_down(true);
    let args = ["--breaker-threshold", "1"];
    let out = finish(cron_command(
        &server.uri(),
        &state,
        now,
        &dir.path().join("r1.json"),
        &args,
    ))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    sim.set_jira_down(false);

    let later = now + chrono::Duration::minutes(5);
    sim.set_now(later);
    let report = dir.path().join("r2.json");
    let out = finish(cron_command(&server.uri(), &state, later, &report, &[])).await;
    let s = json_summary(&out, 0);
    assert_eq!(
        (s["created"].as_u64(), s["failed"].as_u64()),
        (Some(2), Some(0)),
        "{s}"
    );
    // The window of the second run holds only a few of them: the rest came from the retry list.
    let retried: HashSet<String> = processed_ids(&report).into_iter().collect();
    let all: HashSet<String> = logs.iter().map(|l| l.id.clone()).collect();
    assert_eq!(retried, all);
    let (_, failed) = store_view(&state, &server.uri(), &logs);
    assert!(failed.is_empty());
    let per_label = sim.issues_per_label();
    for fp in fps.values() {
        assert_eq!(per_label.get(&label(fp)), Some(&1));
    }
}

#[test]
fn a_store_written_by_the_first_schema_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("old.db");
    {
        // The layout the first release wrote (schema version 1).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE checkpoints (source TEXT PRIMARY KEY, until_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
             CREATE TABLE seen (log_id TEXT PRIMARY KEY, ts_ms INTEGER);
             CREATE TABLE tickets (fingerprint TEXT PRIMARY KEY, key TEXT NOT NULL, created_ms INTEGER NOT NULL);
             CREATE TABLE failed (log_id TEXT PRIMARY KEY, event TEXT NOT NULL, error TEXT, runs INTEGER NOT NULL DEFAULT 1);
             CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started_ms INTEGER NOT NULL, ended_ms INTEGER,
                                exit_code INTEGER, summary TEXT);
             INSERT INTO tickets VALUES ('fp-old', 'OPS-41', 0);
             INSERT INTO seen VALUES ('log-old', 1763888400000);
             INSERT INTO checkpoints VALUES ('datadog datadoghq.com status:error', 1763888400000, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    // A dry run reads only, and leaves an older store alone.
    let scope = triage::state::Scope {
        source: "datadog https://api.datadoghq.com status:error".into(),
        jira: "https://acme.atlassian.net OPS".into(),
    };
    assert!(
        triage::state::StateStore::open_read_only(&path, scope.clone())
            .unwrap()
            .is_none()
    );
    let mut store =
        triage::state::StateStore::open(&path, scope).expect("an old store is migrated");
    assert_eq!(
        store.ticket_for("fp-old").unwrap().as_deref(),
        Some("OPS-41")
    );
    assert!(store.is_seen("log-old").unwrap());
    assert_eq!(
        store
            .checkpoint("datadog datadoghq.com status:error")
            .unwrap()
            .map(|c| c.timestamp_millis()),
        Some(1_763_888_400_000)
    );
    // The newer tables work.
    store.begin_create("fp-new").unwrap();
    assert!(store.create_begun("fp-new").unwrap().is_some());
    store.remember_ticket("fp-new", "OPS-42").unwrap();
    assert!(store.create_begun("fp-new").unwrap().is_none());
    assert_eq!(store.comment_state("OPS-42").unwrap().pending, 0);
}

// ---------------------------------------------------------------------------------------------
// The commands in docs/cron.md and docs/ci.md, run as written
// ---------------------------------------------------------------------------------------------

fn doc(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name),
    )
    .expect("the doc exists")
}

/// A directory holding the binary as `triage`, to put first on PATH.
fn bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(assert_cmd::cargo::cargo_bin("triage"), bin.join("triage")).unwrap();
    bin
}

/// Logs of the last few minutes of real time (the documented commands use the real clock).
async fn live_sim() -> (Arc<Sim>, MockServer, usize) {
    let now = Utc::now();
    let logs = sim_logs(
        60,
        3,
        now - chrono::Duration::minutes(12),
        chrono::Duration::seconds(10),
        |_| chrono::Duration::seconds(2),
    );
    let sim = Sim::new(logs, Duration::ZERO, Duration::ZERO);
    sim.set_now(now + chrono::Duration::hours(1));
    let server = sim.serve().await;
    (sim, server, 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crontab_line_in_docs_cron_md_works_as_written() {
    let (sim, server, problems) = live_sim().await;
    let text = doc("cron.md");
    let line = text
        .lines()
        .find(|l| l.starts_with("*/5 * * * * "))
        .expect("a crontab line");
    let command = line.splitn(6, ' ').nth(5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let etc = root.join("etc/triage");
    let log = root.join("var/log/triage");
    let home = root.join("home");
    for d in [&etc, &log, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    let command = command
        .replace(
            "/usr/local/bin/triage",
            bin_dir(root).join("triage").to_str().unwrap(),
        )
        .replace("/etc/triage", etc.to_str().unwrap())
        .replace("/var/log/triage", log.to_str().unwrap());
    std::fs::write(
        etc.join(".env"),
        format!(
            "DD_API_KEY={DD_API_KEY}\nDD_APP_KEY={DD_APP_KEY}\nDD_API_URL={uri}\nJIRA_URL={uri}\n\
             JIRA_PROJECT={PROJECT}\nJIRA_EMAIL=triage-bot@example.com\nJIRA_API_TOKEN={JIRA_TOKEN}\n",
            uri = server.uri()
        ),
    )
    .unwrap();
    // The environment cron gives a job.
    let run = || {
        let mut cmd = Command::new("/bin/sh");
        cmd.env_clear()
            .env("HOME", &home)
            .env("LOGNAME", "triage")
            .env("SHELL", "/bin/sh")
            .env("PATH", "/usr/bin:/bin")
            .current_dir(&home)
            .args(["-c", &command]);
        cmd
    };
    for round in 0..2 {
        let out = finish(run()).await;
        let written = std::fs::read_to_string(log.join("triage.log")).unwrap_or_default();
        assert_eq!(out.status.code(), Some(0), "{written}");
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "all output goes to the log"
        );
        assert!(written.contains("60 logs:") || round == 1, "{written}");
        let prom = std::fs::read_to_string(log.join("triage.prom")).unwrap();
        assert!(prom.contains("triage_run_exit_code 0"), "{prom}");
    }
    assert!(home.join(".local/state/triage/state.db").exists());
    assert_eq!(sim.issues_per_label().len(), problems);
    assert!(sim.issues_per_label().values().all(|n| *n == 1));
}

/// The GitHub Actions job in docs/ci.md: its `env:` and its `run:` steps.
struct Job {
    env: Vec<(String, String)>,
    steps: Vec<String>,
}

fn ci_job(text: &str) -> Job {
    let yaml = text
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a yaml block");
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut env = Vec::new();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l == "    env:" {
            i += 1;
            while i < lines.len() && indent(lines[i]) == 6 {
                let (k, v) = lines[i].trim().split_once(": ").expect("KEY: value");
                env.push((k.to_string(), v.trim_matches('"').to_string()));
                i += 1;
            }
            continue;
        }
        let t = l.trim_start().trim_start_matches("- ");
        if let Some(script) = t.strip_prefix("run: ") {
            if script == "|" {
                let base = indent(l);
                let mut body = String::new();
                i += 1;
                while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > base) {
                    body.push_str(lines[i].get(base + 2..).unwrap_or(""));
                    body.push('\n');
                    i += 1;
                }
                steps.push(body);
                continue;
            }
            steps.push(script.to_string());
        }
        i += 1;
    }
    Job { env, steps }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_actions_steps_in_docs_ci_md_work_as_written() {
    // The job uses jq, as GitHub's runners have it (.ci/run installs it).
    if Command::new("jq").arg("--version").output().is_err() {
        eprintln!("skipped: jq is not installed");
        return;
    }
    let (sim, server, problems) = live_sim().await;
    let job = ci_job(&doc("ci.md"));
    assert!(job.steps.iter().any(|s| s.contains("triage check")));
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let github_output = dir.path().join("github_output");
    let step_summary = dir.path().join("step_summary.md");
    let path = format!(
        "{}:{}",
        bin_dir(dir.path()).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for step in job.steps.iter().filter(|s| !s.contains("cargo install")) {
        let mut cmd = Command::new("bash");
        cmd.env_clear()
            .env("PATH", &path)
            .env("HOME", dir.path())
            .env("GITHUB_OUTPUT", &github_output)
            .env("GITHUB_STEP_SUMMARY", &step_summary)
            .current_dir(&work)
            // GitHub runs `run:` steps with `bash -e`.
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", step]);
        for (k, v) in &job.env {
            let v = match v
                .strip_prefix("${{ secrets.")
                .and_then(|s| s.strip_suffix(" }}"))
            {
                Some("DD_API_KEY") => DD_API_KEY.to_string(),
                Some("DD_APP_KEY") => DD_APP_KEY.to_string(),
                Some("JIRA_EMAIL") => "triage-bot@example.com".to_string(),
                Some("JIRA_API_TOKEN") => JIRA_TOKEN.to_string(),
                Some(other) => panic!("a secret the test does not know: {other}"),
                None if k == "JIRA_URL" => server.uri(),
                None => v.clone(),
            };
            cmd.env(k, v);
        }
        // The only addition: Datadog is the simulated one.
        cmd.env("DD_API_URL", server.uri());
        let out = finish(cmd).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "step failed:\n{step}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        eprintln!("$ {step}{}", String::from_utf8_lossy(&out.stdout));
    }
    let report = read_report(&work.join("triage-report.json"));
    let summary = &report["summary"];
    assert_eq!(summary["created"], problems);
    assert_eq!(summary["processed"], 60);
    // The job's summary page: the counts, and each new ticket linked to its page in Jira.
    let page = std::fs::read_to_string(&step_summary).unwrap();
    assert!(page.starts_with("## triage: "), "{page}");
    assert!(
        page.contains(&format!("\n60 logs: {problems} created, 0 existing, ")),
        "{page}"
    );
    let tickets = report["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), problems);
    for ticket in tickets {
        let key = ticket["key"].as_str().unwrap();
        let url = format!("{}/browse/{key}", server.uri());
        assert_eq!(ticket["url"], url.as_str());
        assert!(
            page.contains(&format!(
                "| created | {} | {} | ",
                ticket["severity"].as_str().unwrap(),
                ticket["occurrences"]
            )) && page.contains(&format!("| [{key}]({url}) |")),
            "{key} not linked on the page:\n{page}"
        );
    }
    assert!(work.join(".triage/state.db").exists());
    let outputs = std::fs::read_to_string(&github_output).unwrap();
    assert!(outputs.contains("exit_code=0"), "{outputs}");
    assert_eq!(sim.issues_per_label().len(), problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_datadog_result_leaves_the_checkpoint_where_it_was() {
    let now = t("2026-11-23T10:00:00Z");
    let logs = logs_before(20, 2, now, chrono::Duration::seconds(10));
    let sim = Sim::new(logs, Duration::ZERO, Duration::ZERO);
    sim.set_now(now);
    sim.world.lock().unwrap().partial = true;
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let key = triage::state::Scope::datadog(&server.uri(), "status:error");
    let checkpoint = || {
        triage::state::StateStore::open_read_only(&state, job(&server.uri()))
            .unwrap()
            .unwrap()
            .checkpoint(&key)
            .unwrap()
    };
    let out = finish(cron_command(
        &server.uri(),
        &state,
        now,
        &dir.path().join("a.json"),
        &[],
    ))
    .await;
    let s = json_summary(&out, 0);
    assert_eq!(
        (s["warnings"].as_u64(), s["processed"].as_u64()),
        (Some(1), Some(20)),
        "{s}"
    );
    assert_eq!(
        checkpoint(),
        None,
        "a partial result does not move the checkpoint"
    );

    sim.world.lock().unwrap().partial = false;
    let later = now + chrono::Duration::minutes(2);
    sim.set_now(later);
    let out = finish(cron_command(
        &server.uri(),
        &state,
        later,
        &dir.path().join("b.json"),
        &[],
    ))
    .await;
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The same span again: nothing processed twice, and now the checkpoint moves.
    assert_eq!(s["already_processed"], 20, "{s}");
    assert_eq!(checkpoint(), Some(later - chrono::Duration::seconds(60)));
}

// ---------------------------------------------------------------------------------------------
// The end-of-run comments, up to --workers at once
// ---------------------------------------------------------------------------------------------

/// One log of each of `problems` problems, stamped 10 minutes before `at`, ids tagged `tag`.
fn one_each(problems: usize, at: DateTime<Utc>, tag: &str) -> Vec<SimLog> {
    tagged_logs(problems, problems, at, chrono::Duration::seconds(1), tag)
}

/// `logs` logs of `problems` problems, `spacing` apart from 10 minutes before `at`, each
/// arriving in Datadog 1 s after its timestamp.
fn logs_before(
    logs: usize,
    problems: usize,
    at: DateTime<Utc>,
    spacing: chrono::Duration,
) -> Vec<SimLog> {
    sim_logs(
        logs,
        problems,
        at - chrono::Duration::minutes(10),
        spacing,
        |_| chrono::Duration::seconds(1),
    )
}

/// [`logs_before`], ids tagged `tag` (so rounds of the same problems are different logs).
fn tagged_logs(
    logs: usize,
    problems: usize,
    at: DateTime<Utc>,
    spacing: chrono::Duration,
    tag: &str,
) -> Vec<SimLog> {
    logs_before(logs, problems, at, spacing)
        .into_iter()
        .map(|mut l| {
            l.id = l.id.replace("sim", tag);
            l
        })
        .collect()
}

/// A simulated world where `problems` problems already have their tickets (filed by a
/// sequential run at `now`, so OPS-1 is problem 0's, and so on), and have recurred once more by
/// `later`. Returns the world, its server, and the state file.
async fn recurring_world(
    problems: usize,
    comment_delay: Duration,
    now: DateTime<Utc>,
    later: DateTime<Utc>,
    dir: &Path,
) -> (Arc<Sim>, MockServer, PathBuf) {
    let sim = Sim::with_comment_delay(one_each(problems, now, "first"), comment_delay);
    sim.set_now(now);
    let server = sim.serve().await;
    let state = dir.join("state.db");
    let out = finish(cron_command_in(
        &[],
        &server.uri(),
        &state,
        now,
        &dir.join("report-0.json"),
        &["--comment-cooldown", "30m"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    {
        let mut w = sim.world.lock().unwrap();
        assert_eq!(w.issues.len(), problems, "one ticket per problem");
        w.logs.extend(one_each(problems, later, "again"));
        w.now = Some(later);
    }
    (sim, server, state)
}

/// The most comment posts the simulated Jira held at once: each is held `delay` after it
/// arrives, so posts that arrived less than `delay` apart were in flight together.
fn most_comments_in_flight(arrivals: &[Instant], delay: Duration) -> usize {
    let mut arrivals = arrivals.to_vec();
    arrivals.sort();
    (0..arrivals.len())
        .map(|j| {
            arrivals[..=j]
                .iter()
                .filter(|a| arrivals[j].duration_since(**a) < delay)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Each ticket's description, comments and pending count add up to exactly its logs: every
/// occurrence told once.
fn assert_told_exactly(sim: &Sim, state: &Path, uri: &str, logs_per_ticket: u64) {
    let store = triage::state::StateStore::open_read_only(state, job(uri))
        .unwrap()
        .unwrap();
    let w = sim.world.lock().unwrap();
    for issue in &w.issues {
        let commented: u64 = w
            .comments
            .iter()
            .filter(|c| c.key == issue.key)
            .map(|c| comment_count(&c.text))
            .sum();
        let pending = store.comment_state(&issue.key).unwrap().pending;
        assert_eq!(
            issue.described + commented + pending,
            logs_per_ticket,
            "{}: described {}, commented {commented}, pending {pending}",
            issue.key,
            issue.described
        );
    }
}

/// 40 tickets recur, and Jira takes 100 ms to answer each comment. With `--async --workers 10`
/// the end of the run has at least 5 comments in flight at once at Jira; sequentially, one at a
/// time. Either way each ticket gets exactly one comment, with the same text, and the warnings
/// for the three tickets whose comments Jira refuses come in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recurrence_comments_go_out_up_to_workers_at_once_and_say_the_same_in_either_mode() {
    let now = t("2026-11-23T10:00:00Z");
    let later = now + chrono::Duration::hours(1);
    let delay = Duration::from_millis(100);
    let problems = 40;
    let mut seen = Vec::new();
    for mode in [&["--async", "--workers", "10"][..], &[][..]] {
        let dir = tempfile::tempdir().unwrap();
        let (sim, server, state) = recurring_world(problems, delay, now, later, dir.path()).await;
        {
            let mut w = sim.world.lock().unwrap();
            for key in ["OPS-3", "OPS-17", "OPS-31"] {
                w.refused_comments.insert(key.to_string());
            }
        }
        let out = finish(cron_command_in(
            mode,
            &server.uri(),
            &state,
            later,
            &dir.path().join("report-1.json"),
            &["--comment-cooldown", "30m"],
        ))
        .await;
        let summary = json_summary(&out, 0);
        assert_eq!(summary["commented"], 37, "{mode:?}: {summary}");
        let w = sim.world.lock().unwrap();
        assert_eq!(w.comment_posts, 40, "{mode:?}: one comment post per ticket");
        let mut texts: Vec<(String, String)> = w
            .comments
            .iter()
            .map(|c| (c.key.clone(), c.text.clone()))
            .collect();
        texts.sort();
        let mut keys: Vec<&String> = texts.iter().map(|(k, _)| k).collect();
        keys.dedup();
        assert_eq!(keys.len(), 37, "{mode:?}: one comment per ticket");
        let arrivals: Vec<Instant> = w.comments.iter().map(|c| c.arrived).collect();
        let most = most_comments_in_flight(&arrivals, delay);
        let warnings: Vec<String> = stderr(&out)
            .lines()
            .filter_map(|l| l.split_once("warning: ").map(|(_, w)| w.to_string()))
            .collect();
        assert_eq!(warnings.len(), 3, "{mode:?}: {warnings:?}");
        eprintln!("{mode:?}: at most {most} comments in flight at once");
        if mode.is_empty() {
            assert_eq!(most, 1, "sequential: one comment at a time");
        } else {
            assert!(most >= 5, "--workers 10: {most} comments at once at most");
        }
        drop(w);
        assert_told_exactly(&sim, &state, &server.uri(), 2);
        seen.push((texts, warnings));
    }
    assert_eq!(
        seen[0], seen[1],
        "the same comments and warnings in both modes"
    );
}

/// 40 tickets recur and Jira takes 1.5 s to answer each comment; SIGTERM comes once 10
/// comments (`--workers 10`) are in flight. Those 10 finish within the grace period, no call to
/// Jira starts after the signal, and the run says it was interrupted (exit 130). The next run
/// comments on every ticket, and each ticket's description, comments and pending count add up
/// to exactly its logs: what the interrupted run left is told once.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_comments_go_out_10_at_a_time_starts_no_call_and_loses_no_count() {
    let now = t("2026-11-23T10:00:00Z");
    let later = now + chrono::Duration::hours(1);
    let problems = 40;
    let dir = tempfile::tempdir().unwrap();
    let (sim, server, state) = recurring_world(
        problems,
        Duration::from_millis(1500),
        now,
        later,
        dir.path(),
    )
    .await;
    let async_10 = ["--async", "--workers", "10"];
    let extra = ["--comment-cooldown", "30m", "--shutdown-grace", "10s"];
    let child = cron_command_in(
        &async_10,
        &server.uri(),
        &state,
        later,
        &dir.path().join("report-1.json"),
        &extra,
    )
    .spawn()
    .expect("triage starts");
    let started = Instant::now();
    let calls_at_signal = loop {
        {
            let w = sim.world.lock().unwrap();
            if w.comment_posts >= 10 {
                break w.jira_requests;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "10 comments were never in flight at once"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let summary = json_summary(&out, 130);
    assert_eq!(summary["interrupted"], true, "{summary}");
    assert_eq!(
        summary["commented"], 10,
        "the comments in flight finished: {summary}"
    );
    {
        let w = sim.world.lock().unwrap();
        let arrivals: Vec<Instant> = w.comments.iter().map(|c| c.arrived).collect();
        assert_eq!(
            most_comments_in_flight(&arrivals, Duration::from_millis(1500)),
            10,
            "the signal came with 10 comments in flight"
        );
        assert_eq!(w.comment_posts, 10, "no comment started after the signal");
        assert_eq!(
            w.jira_requests, calls_at_signal,
            "no call to Jira started after the signal"
        );
    }

    // The next run: every ticket recurs once more.
    let last = later + chrono::Duration::hours(1);
    {
        let mut w = sim.world.lock().unwrap();
        w.logs.extend(one_each(problems, last, "third"));
        w.now = Some(last);
    }
    let out = finish(cron_command_in(
        &async_10,
        &server.uri(),
        &state,
        last,
        &dir.path().join("report-2.json"),
        &extra,
    ))
    .await;
    let summary = json_summary(&out, 0);
    assert_eq!(summary["commented"], 40, "{summary}");
    let w = sim.world.lock().unwrap();
    let mut counts: Vec<u64> = w.comments[10..]
        .iter()
        .map(|c| comment_count(&c.text))
        .collect();
    counts.sort();
    // The 10 tickets commented on before the signal report their one new log; the 30 others
    // what was left pending too.
    assert_eq!(counts, [vec![1; 10], vec![2; 30]].concat(), "{counts:?}");
    drop(w);
    assert_told_exactly(&sim, &state, &server.uri(), 3);
}

// ---------------------------------------------------------------------------------------------
// Several runners sharing one PostgreSQL state store (issue 14). These need a real server:
// `TRIAGE_TEST_DATABASE_URL` names one (`.ci/run` starts a throwaway cluster on loopback and
// sets it); without it each test says it was skipped and passes. Each test works in its own
// database, so they run in parallel.
// ---------------------------------------------------------------------------------------------

/// A fresh database of its own for test `name` on the test server, as a URL; `None` (with a
/// clear "skipped" line) when no test server is configured.
pub(crate) fn pg_database(name: &str) -> Option<String> {
    let Ok(base) = std::env::var("TRIAGE_TEST_DATABASE_URL") else {
        // Straight to stderr, past the test harness's capture, so `cargo test` shows it.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: TRIAGE_TEST_DATABASE_URL is not set ({name} needs a PostgreSQL server)"
        );
        return None;
    };
    let db = format!("triage_{name}_{}", std::process::id());
    // The sync client must not run on the test's async runtime: its own thread.
    let admin = base.clone();
    let created = db.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("test server");
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {created} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {created}"))
            .unwrap();
    })
    .join()
    .unwrap();
    Some(with_database(&base, &db))
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_end = head
        .find("://")
        .map(|i| i + 3)
        .and_then(|i| head[i..].find('/').map(|j| i + j))
        .unwrap_or(head.len());
    format!("{}/{db}{query}", &head[..authority_end])
}

/// Run SQL on the test database, off the async runtime.
fn pg_exec(url: &str, sql: &str) -> Vec<postgres::Row> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("test server");
        c.query(sql.as_str(), &[]).unwrap()
    })
    .join()
    .unwrap()
}

/// The cron command of runner `query` on the shared store at `url`.
fn pg_runner(
    uri: &str,
    url: &str,
    dir: &Path,
    now: DateTime<Utc>,
    name: &str,
    query: &str,
) -> Command {
    let mut cmd = cron_command(
        uri,
        &dir.join("unused-state.db"),
        now,
        &dir.join(format!("report-{name}.json")),
        &["--batch-size", "20", "--comment-cooldown", "1h"],
    );
    cmd.env("TRIAGE_STATE", url).env("DD_QUERY", query);
    cmd
}

/// What a PostgreSQL store knows of job `query`: processed ids among `logs`, and retries.
fn pg_store_view(url: &str, uri: &str, query: &str, logs: &[SimLog]) -> (HashSet<String>, usize) {
    let (url, uri, query, logs) = (
        url.to_string(),
        uri.to_string(),
        query.to_string(),
        logs.to_vec(),
    );
    std::thread::spawn(move || {
        let scope = triage::state::Scope {
            source: triage::state::Scope::datadog(&uri, &query),
            jira: triage::state::Scope::jira(&uri, PROJECT),
        };
        let store = triage::state::StateStore::open_read_only(Path::new(&url), scope)
            .expect("store opens")
            .expect("store exists");
        let seen: HashSet<String> = logs
            .iter()
            .filter(|l| store.is_seen(&l.id).unwrap())
            .map(|l| l.id.clone())
            .collect();
        // The batched question a run asks gives the same answer.
        let ids: Vec<String> = logs.iter().map(|l| l.id.clone()).collect();
        assert_eq!(store.seen_among(&ids).unwrap(), seen);
        (seen, store.failed_logs().unwrap().len())
    })
    .join()
    .unwrap()
}

/// The simulated services with Jira search lagging `lag` behind creates.
fn lagging_sim(logs: Vec<SimLog>, page_delay: Duration, lag: Duration) -> Arc<Sim> {
    Arc::new(Sim {
        world: Mutex::new(World {
            logs,
            ..World::default()
        }),
        page_delay,
        create_delay: Duration::from_millis(300),
        search_lag: lag,
        // Long enough that runners deciding the same ticket's comment overlap.
        comment_delay: Duration::from_millis(400),
        hook: Mutex::new(None),
    })
}

/// The world a PostgreSQL test runs in: its own database, `logs` logs of `problems` problems
/// `step` apart before 2026-11-23T10:00Z, simulated services whose pages take `page_delay`
/// and whose search shows a create `lag` after it, and a folder for reports.
struct PgWorld {
    url: String,
    now: DateTime<Utc>,
    logs: Vec<SimLog>,
    sim: Arc<Sim>,
    server: MockServer,
    dir: tempfile::TempDir,
}

impl PgWorld {
    /// `None` (the test is skipped) without a test database.
    async fn new(
        name: &str,
        (logs, problems, step): (usize, usize, chrono::Duration),
        page_delay: Duration,
        lag: Duration,
    ) -> Option<PgWorld> {
        let url = pg_database(name)?;
        let now = t("2026-11-23T10:00:00Z");
        let logs = logs_before(logs, problems, now, step);
        let sim = lagging_sim(logs.clone(), page_delay, lag);
        sim.set_now(now);
        let server = sim.serve().await;
        Some(PgWorld {
            url,
            now,
            logs,
            sim,
            server,
            dir: tempfile::tempdir().unwrap(),
        })
    }
}

fn assert_one_ticket_per_problem(sim: &Sim, problems: usize) {
    let per_label = sim.issues_per_label();
    let duplicates: Vec<_> = per_label.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "duplicate tickets: {duplicates:?}");
    assert_eq!(per_label.len(), problems, "one ticket per problem");
    let w = sim.world.lock().unwrap();
    assert!(w.unexpected.is_empty(), "{:?}", w.unexpected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_four_runners_at_once_on_overlapping_queries_file_exactly_one_ticket_per_problem() {
    let problems = 12;
    // Jira's search shows a new ticket only 5 s after its create: a runner that searched and
    // missed would create a second one.
    let Some(PgWorld {
        url,
        now,
        logs,
        sim,
        server,
        dir,
    }) = PgWorld::new(
        "four",
        (240, problems, chrono::Duration::seconds(2)),
        Duration::from_millis(20),
        Duration::from_secs(5),
    )
    .await
    else {
        return;
    };
    // Four jobs whose queries all match these logs (the simulated Datadog ignores the query).
    let queries = [
        "status:error",
        "status:error service:svc-*",
        "status:error env:prod",
        "status:error -host:none",
    ];
    let started = Instant::now();
    let runs: Vec<_> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            finish(pg_runner(
                &server.uri(),
                &url,
                dir.path(),
                now,
                &i.to_string(),
                q,
            ))
        })
        .collect();
    let outs = futures::future::join_all(runs).await;
    let wall = started.elapsed();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        assert!(!stderr(out).contains("s3cret"));
    }
    assert_one_ticket_per_problem(&sim, problems);
    for (i, q) in queries.iter().enumerate() {
        let ids = processed_ids(&dir.path().join(format!("report-{i}.json")));
        let unique: HashSet<_> = ids.iter().cloned().collect();
        assert_eq!(
            ids.len(),
            logs.len(),
            "runner {i} processed each of its logs once"
        );
        assert_eq!(unique.len(), logs.len());
        let (seen, failed) = pg_store_view(&url, &server.uri(), q, &logs);
        assert_eq!(
            (seen.len(), failed),
            (logs.len(), 0),
            "runner {i}'s store view"
        );
    }
    let created: u64 = outs
        .iter()
        .map(|o| {
            serde_json::from_slice::<Value>(&o.stdout).unwrap()["created"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        created, problems as u64,
        "the runners created each ticket once between them"
    );
    eprintln!(
        "4 runners, {} logs each, {problems} problems, Jira search lag 5 s: {} tickets, {} duplicates, wall {:.2} s",
        logs.len(),
        sim.issues_per_label().len(),
        sim.issues_per_label().values().map(|n| n - 1).sum::<usize>(),
        wall.as_secs_f64()
    );

    // An hour later the same problems recur, seen by all four runners at once: each ticket
    // gets one recurrence comment between them (the comment cooldown is shared too).
    let later = now + chrono::Duration::hours(1);
    let again: Vec<SimLog> = logs_before(240, problems, later, chrono::Duration::seconds(2))
        .into_iter()
        .map(|mut l| {
            l.id = l.id.replace("sim", "again");
            l
        })
        .collect();
    {
        let mut w = sim.world.lock().unwrap();
        w.logs.extend(again.iter().cloned());
        w.now = Some(later);
    }
    let runs: Vec<_> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            // The cooldown (1 h) has passed since each ticket was created.
            finish(pg_runner(
                &server.uri(),
                &url,
                dir.path(),
                later,
                &format!("r{i}"),
                q,
            ))
        })
        .collect();
    for out in futures::future::join_all(runs).await {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    assert_one_ticket_per_problem(&sim, problems);
    let w = sim.world.lock().unwrap();
    let mut per_ticket: HashMap<&str, usize> = HashMap::new();
    for c in &w.comments {
        *per_ticket.entry(c.key.as_str()).or_default() += 1;
    }
    assert_eq!(
        per_ticket.len(),
        problems,
        "every recurring ticket is commented on"
    );
    assert!(
        per_ticket.values().all(|n| *n == 1),
        "one comment per ticket between the runners: {per_ticket:?}"
    );
}

/// Another job on the shared store (another query, the same Jira), as a thread that records
/// one more occurrence of a ticket each time it is asked, and answers once that is committed.
fn other_job(
    url: &str,
    uri: &str,
) -> std::sync::mpsc::Sender<(String, std::sync::mpsc::Sender<()>)> {
    let (tx, rx) = std::sync::mpsc::channel::<(String, std::sync::mpsc::Sender<()>)>();
    let (url, uri) = (url.to_string(), uri.to_string());
    std::thread::spawn(move || {
        let scope = triage::state::Scope {
            source: triage::state::Scope::datadog(&uri, "status:error service:other"),
            jira: triage::state::Scope::jira(&uri, PROJECT),
        };
        let mut store =
            triage::state::StateStore::open(Path::new(&url), scope).expect("store opens");
        for (n, (key, done)) in rx.into_iter().enumerate() {
            store
                .record(&[triage::state::Processed {
                    id: format!("other-{n}"),
                    timestamp: None,
                    failed: None,
                    recurrence: Some(key),
                }])
                .expect("recorded");
            let _ = done.send(());
        }
    });
    tx
}

/// Another runner records occurrences of a ticket at the worst moments: while its create and,
/// an hour later, its recurrence comment are at Jira (after the runner that made them read the
/// pending count, before it takes off what it reported). Every
/// occurrence is told exactly once: each ticket's description, comments and pending count add
/// up to the logs of both runners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_occurrences_another_runner_adds_while_a_ticket_is_updated_or_commented_are_told_once() {
    let Some(url) = pg_database("tally") else {
        return;
    };
    let now = t("2026-11-23T10:00:00Z");
    let problems = 4;
    let round = |at: DateTime<Utc>, tag: &str| -> Vec<SimLog> {
        tagged_logs(40, problems, at, chrono::Duration::seconds(2), tag)
    };
    let sim = Sim::new(round(now, "first"), Duration::ZERO, Duration::ZERO);
    sim.set_now(now);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let other = Mutex::new(other_job(&url, &server.uri()));
    let added: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    {
        let added = added.clone();
        sim.set_hook(Box::new(move |_what, key| {
            let (done, wait) = std::sync::mpsc::channel();
            other.lock().unwrap().send((key.to_string(), done)).unwrap();
            wait.recv().expect("the other job recorded it");
            *added.lock().unwrap().entry(key.to_string()).or_default() += 1;
        }));
    }
    let pending = |key: &str| {
        let (url, uri, key) = (url.clone(), server.uri(), key.to_string());
        std::thread::spawn(move || {
            let scope = triage::state::Scope {
                source: triage::state::Scope::datadog(&uri, "status:error"),
                jira: triage::state::Scope::jira(&uri, PROJECT),
            };
            triage::state::StateStore::open_read_only(Path::new(&url), scope)
                .unwrap()
                .unwrap()
                .comment_state(&key)
                .unwrap()
                .pending
        })
        .join()
        .unwrap()
    };

    let out = finish(pg_runner(
        &server.uri(),
        &url,
        dir.path(),
        now,
        "1",
        "status:error",
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let keys: Vec<String> = sim
        .world
        .lock()
        .unwrap()
        .issues
        .iter()
        .map(|i| i.key.clone())
        .collect();
    assert_eq!(keys.len(), problems);
    for key in &keys {
        // Its create saw one occurrence from the other job. The create reported this runner's
        // whole run (nothing is written after it), and left the other job's pending.
        assert_eq!(added.lock().unwrap()[key], 1, "{key}");
        assert_eq!(
            pending(key),
            1,
            "{key}: the other job's occurrence is pending"
        );
    }

    // An hour later (past the cooldown) every problem recurs: one comment per ticket, which
    // reports all that is pending, while the other job records one more.
    let later = now + chrono::Duration::hours(1);
    {
        let mut w = sim.world.lock().unwrap();
        w.logs.extend(round(later, "again"));
        w.now = Some(later);
    }
    let out = finish(pg_runner(
        &server.uri(),
        &url,
        dir.path(),
        later,
        "2",
        "status:error",
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let w = sim.world.lock().unwrap();
    let per_problem = 2 * 40 / problems as u64;
    for issue in &w.issues {
        let comments: Vec<u64> = w
            .comments
            .iter()
            .filter(|c| c.key == issue.key)
            .map(|c| comment_count(&c.text))
            .collect();
        assert_eq!(comments.len(), 1, "{}: {comments:?}", issue.key);
        let others = added.lock().unwrap()[&issue.key];
        assert_eq!(others, 2, "{}", issue.key);
        let left = pending(&issue.key);
        assert_eq!(
            left, 1,
            "{}: the occurrence recorded while the comment was at Jira is pending",
            issue.key
        );
        assert_eq!(
            issue.described + comments[0] + left,
            per_problem + others,
            "{}: described {}, commented {comments:?}, pending {left}",
            issue.key,
            issue.described
        );
    }
}

/// The store's side of it, from two connections at the critical point: a runner reads a
/// ticket's pending count, another runner adds to it, and the first saves its counts and, after
/// its comment, takes off what it reported. What the other added is still there.
#[test]
fn pg_a_pending_count_is_moved_never_written_over() {
    let Some(url) = pg_database("moved") else {
        return;
    };
    std::thread::spawn(move || {
        let uri = "http://127.0.0.1:9";
        let open = |query: &str| {
            let scope = triage::state::Scope {
                source: triage::state::Scope::datadog(uri, query),
                jira: triage::state::Scope::jira(uri, PROJECT),
            };
            triage::state::StateStore::open(Path::new(&url), scope).expect("store opens")
        };
        let (mut a, mut b) = (open("status:error"), open("status:error service:b"));
        let log = |id: &str| triage::state::Processed {
            id: id.into(),
            timestamp: None,
            failed: None,
            recurrence: Some("OPS-1".into()),
        };
        a.record(&[log("a1"), log("a2")]).unwrap();
        let read = a.comment_state("OPS-1").unwrap();
        assert_eq!(read.pending, 2);
        b.record(&[log("b1")]).unwrap();
        // Saved as pending before the comment: the span, not the count.
        let saved = triage::state::CommentChange {
            last_comment: read.last_comment,
            pending: 0,
            first_seen: Some(t("2026-11-23T09:50:00Z")),
            last_seen: Some(t("2026-11-23T09:59:00Z")),
            hosts: vec!["i-0a11".into()],
        };
        a.change_comment_state("OPS-1", &saved).unwrap();
        assert_eq!(a.comment_state("OPS-1").unwrap().pending, 3);
        b.record(&[log("b2")]).unwrap();
        // The comment reported what was read.
        let commented = triage::state::CommentChange {
            last_comment: Some(t("2026-11-23T10:00:00Z")),
            pending: -(read.pending as i64),
            ..Default::default()
        };
        a.change_comment_state("OPS-1", &commented).unwrap();
        let after = b.comment_state("OPS-1").unwrap();
        assert_eq!(
            (after.pending, after.last_comment, after.first_seen),
            (2, Some(t("2026-11-23T10:00:00Z")), None),
            "the other runner's two occurrences are pending"
        );
        // Each store knows its own share; a count never goes below 0.
        assert_eq!((a.counted_here("OPS-1"), b.counted_here("OPS-1")), (2, 2));
        a.change_comment_state(
            "OPS-1",
            &triage::state::CommentChange {
                pending: -10,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(a.comment_state("OPS-1").unwrap().pending, 0);
        // A log that failed was seen, uncounted; its successful retry counts it, once.
        let mut failed = log("r1");
        failed.recurrence = None;
        failed.failed = Some((serde_json::json!({"message": "x"}), "HTTP 503".into()));
        a.record(&[failed]).unwrap();
        a.record(&[log("r1")]).unwrap();
        a.record(&[log("r1")]).unwrap();
        assert_eq!(a.comment_state("OPS-1").unwrap().pending, 1);
    })
    .join()
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_the_same_job_on_two_hosts_at_once_runs_once_and_the_other_exits_75() {
    let Some(PgWorld {
        url,
        now,
        sim,
        server,
        dir,
        ..
    }) = PgWorld::new(
        "hosts",
        (60, 3, chrono::Duration::seconds(5)),
        Duration::from_millis(250),
        Duration::from_millis(500),
    )
    .await
    else {
        return;
    };
    // Two "hosts": two processes, each with its own connection string to the one database.
    let other_host = url.replacen("127.0.0.1", "localhost", 1);
    assert_ne!(other_host, url, "the test server is on 127.0.0.1");
    let a = pg_runner(&server.uri(), &url, dir.path(), now, "a", "status:error");
    let b = pg_runner(
        &server.uri(),
        &other_host,
        dir.path(),
        now,
        "b",
        "status:error",
    );
    let (a, b) = futures::future::join(finish(a), finish(b)).await;
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(
        codes,
        [Some(0), Some(75)],
        "a: {}\nb: {}",
        stderr(&a),
        stderr(&b)
    );
    let refused = if a.status.code() == Some(75) { &a } else { &b };
    let err = stderr(refused);
    assert!(
        err.contains("another triage run holds the state lock"),
        "{err}"
    );
    // The live holder is named by host and pid (shown, never compared).
    assert!(err.contains(" pid "), "{err}");
    assert_one_ticket_per_problem(&sim, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_runners_killed_at_random_points_leave_no_duplicate_no_lost_log_and_no_lease_blocking() {
    let problems = 10;
    // Slow pages and creates, so a kill lands mid-run: between pages, while a create is in
    // flight (its lease held), or while a batch is being written.
    let Some(PgWorld {
        url,
        now,
        logs,
        sim,
        server,
        dir,
    }) = PgWorld::new(
        "kills",
        (200, problems, chrono::Duration::seconds(2)),
        Duration::from_millis(60),
        Duration::from_secs(5),
    )
    .await
    else {
        return;
    };
    let seed = fastrand::u64(..);
    eprintln!("kill points from seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let queries = [
        "status:error",
        "status:error env:prod",
        "status:error service:svc-*",
    ];
    let victim = "status:error -host:none";
    let others: Vec<_> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            finish(pg_runner(
                &server.uri(),
                &url,
                dir.path(),
                now,
                &format!("o{i}"),
                q,
            ))
        })
        .collect();
    let others = tokio::spawn(futures::future::join_all(others));
    // The fourth runner is killed twice at random points while the three go on.
    let mut kills = 0;
    for round in 0..2 {
        let creates = rng.u64(0..4);
        let pages = rng.u64(1..8);
        let mut child = pg_runner(
            &server.uri(),
            &url,
            dir.path(),
            now,
            &format!("k{round}"),
            victim,
        )
        .spawn()
        .unwrap();
        let (c0, p0) = {
            let w = sim.world.lock().unwrap();
            (w.creates, w.pages)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (c, p) = {
                let w = sim.world.lock().unwrap();
                (w.creates, w.pages)
            };
            if c >= c0 + creates && p >= p0 + pages {
                child.kill().unwrap();
                assert_eq!(child.wait().unwrap().code(), None, "killed by a signal");
                kills += 1;
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "run ended with {status}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the killed runner never got there"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for out in others.await.unwrap() {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // One clean run of the killed job: nothing lost, nothing blocked by a dead runner's lease
    // or run lock.
    let started = Instant::now();
    let clean = finish(pg_runner(
        &server.uri(),
        &url,
        dir.path(),
        now,
        "clean",
        victim,
    ))
    .await;
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    let err = stderr(&clean);
    assert!(!err.contains("create lease"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the clean run waited on nothing the dead runner held"
    );
    let (seen, failed) = pg_store_view(&url, &server.uri(), victim, &logs);
    assert_eq!(
        (seen.len(), failed),
        (logs.len(), 0),
        "no lost log ({kills} kills)"
    );
    for (i, q) in queries.iter().enumerate() {
        let (seen, failed) = pg_store_view(&url, &server.uri(), q, &logs);
        assert_eq!((seen.len(), failed), (logs.len(), 0), "runner {i}");
    }
    assert_one_ticket_per_problem(&sim, problems);
    // No lease or run lock is left: every advisory lock belonged to a session that is gone.
    let held = pg_exec(
        &url,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    );
    assert_eq!(held[0].get::<_, i64>(0), 0, "advisory locks left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_connection_dropped_mid_run_fails_the_run_clearly_and_the_next_run_loses_nothing() {
    let problems = 4;
    let Some(PgWorld {
        url,
        now,
        logs,
        sim,
        server,
        dir,
    }) = PgWorld::new(
        "dropped",
        (120, problems, chrono::Duration::seconds(4)),
        Duration::from_millis(150),
        Duration::from_millis(500),
    )
    .await
    else {
        return;
    };
    let child = pg_runner(
        &server.uri(),
        &url,
        dir.path(),
        now,
        "dropped",
        "status:error",
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.world.lock().unwrap().pages < 2 {
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = pg_exec(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'triage' AND datname = current_database()",
    );
    assert_eq!(killed.len(), 1, "the run's one connection");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_no_secret(&out);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the connection to PostgreSQL was lost"),
        "a clear message: {err}"
    );
    // The failure ended the loop, not the run: the report is written whole, with the error,
    // and every log taken from Datadog has an outcome in it (the unfinished ones failed).
    let report = read_report(&dir.path().join("report-dropped.json"));
    assert!(
        report["summary"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("the connection to PostgreSQL was lost")),
        "{}",
        report["summary"]
    );
    let entries = report["logs"].as_array().expect("logs");
    assert!(
        !entries.is_empty(),
        "the logs taken before the failure are reported: {}",
        report["summary"]
    );
    assert_eq!(
        report["summary"]["fetched"].as_u64(),
        Some(entries.len() as u64),
        "one entry per log fetched"
    );
    let next = finish(pg_runner(
        &server.uri(),
        &url,
        dir.path(),
        now,
        "next",
        "status:error",
    ))
    .await;
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    let (seen, failed) = pg_store_view(&url, &server.uri(), "status:error", &logs);
    assert_eq!(
        (seen.len(), failed),
        (logs.len(), 0),
        "the next run loses nothing"
    );
    assert_one_ticket_per_problem(&sim, problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_state_export_from_sqlite_and_import_into_postgres_carries_everything_across() {
    let Some(url) = pg_database("export") else {
        return;
    };
    let now = t("2026-11-23T10:00:00Z");
    let logs = logs_before(60, 3, now, chrono::Duration::seconds(5));
    let sim = lagging_sim(logs.clone(), Duration::ZERO, Duration::from_millis(200));
    sim.set_now(now);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("state.db");
    let first = finish(cron_command(
        &server.uri(),
        &sqlite,
        now,
        &dir.path().join("a.json"),
        &[],
    ))
    .await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let state_cmd = |state: &str, args: &[&str]| {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("triage"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--state")
            .arg(state)
            .arg("state")
            .args(args);
        cmd
    };
    // SQLite -> JSON Lines -> PostgreSQL -> JSON Lines: the same rows.
    let exported = state_cmd(sqlite.to_str().unwrap(), &["export"])
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", stderr(&exported));
    let file = dir.path().join("state.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let imported = state_cmd(&url, &["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(imported.status.success(), "{}", stderr(&imported));
    let again = state_cmd(&url, &["export"]).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    let rows = |out: &[u8]| -> Vec<String> {
        let mut v: Vec<String> = String::from_utf8_lossy(out)
            .lines()
            .skip(1)
            .map(|l| {
                let mut row: Value = serde_json::from_str(l).unwrap();
                // Run history is numbered anew by the store it is imported into.
                if row["table"] == "runs" || row["table"] == "job_runs" {
                    row["row"].as_object_mut().unwrap().remove("id");
                }
                row.to_string()
            })
            .collect();
        v.sort();
        v
    };
    let (before, after) = (rows(&exported.stdout), rows(&again.stdout));
    assert!(
        before.len() > logs.len(),
        "seen ids, tickets, templates, runs: {}",
        before.len()
    );
    assert_eq!(before, after);
    // Importing twice adds nothing but the run history.
    let twice = state_cmd(&url, &["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(twice.status.success(), "{}", stderr(&twice));
    assert!(
        stderr(&twice).contains(&format!(
            "imported {} rows into postgres://triage@",
            before.len()
        )) && stderr(&twice).contains("(2 new,"),
        "{}",
        stderr(&twice)
    );
    // The next run on PostgreSQL finds everything done and files nothing new.
    let next = finish({
        let mut cmd = cron_command(
            &server.uri(),
            &sqlite,
            now,
            &dir.path().join("b.json"),
            &["--from", "now-15m"],
        );
        cmd.env("TRIAGE_STATE", &url);
        cmd
    })
    .await;
    assert_eq!(next.status.code(), Some(0), "{}", stderr(&next));
    let s: Value = serde_json::from_slice(&next.stdout).unwrap();
    assert_eq!(s["already_processed"], logs.len());
    assert_one_ticket_per_problem(&sim, 3);
    // `triage status` reads the job's part of the PostgreSQL store: the run imported twice
    // (run history is appended) and the one just made, the checkpoint, the three tickets.
    let status = finish({
        let mut cmd = cron_command(
            &server.uri(),
            &sqlite,
            now,
            &dir.path().join("c.json"),
            &["status"],
        );
        cmd.env("TRIAGE_STATE", &url);
        cmd
    })
    .await;
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let st: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(st["state"], url.as_str());
    assert_eq!(st["exists"], true);
    assert_eq!(st["runs"].as_array().unwrap().len(), 3, "{st}");
    assert_eq!(st["tickets"].as_array().unwrap().len(), 3, "{st}");
    assert!(st["checkpoint"].is_string(), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_state_url_never_shows_its_password() {
    // Nothing listens on port 1: the connection fails, and the message names the store
    // without the password (no server needed).
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://triage:pw-SECRET-5d1e@127.0.0.1:1/triage?connect_timeout=2";
    let mut cmd = cron_command(
        "http://127.0.0.1:1",
        &dir.path().join("unused.db"),
        t("2026-11-23T10:00:00Z"),
        &dir.path().join("r.json"),
        &[],
    );
    cmd.env("TRIAGE_STATE", url);
    let out = finish(cmd).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("state store postgres://triage:***@127.0.0.1:1/triage"),
        "{err}"
    );
    assert!(!err.contains("pw-SECRET-5d1e"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pw-SECRET-5d1e"));
    // The export command too.
    let out = Command::new(assert_cmd::cargo::cargo_bin("triage"))
        .env_clear()
        .args(["--state", url, "state", "export"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("pw-SECRET-5d1e") && err.contains(":***@"),
        "{err}"
    );
}

/// The test server's throwaway CA (`tools/pg-test-cluster` makes it, `.ci/run` sets
/// `TRIAGE_TEST_DATABASE_CA`); `None`, with a clear "skipped" line, without one.
fn pg_test_ca(name: &str) -> Option<PathBuf> {
    match std::env::var_os("TRIAGE_TEST_DATABASE_CA") {
        Some(ca) => Some(PathBuf::from(ca)),
        None => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: TRIAGE_TEST_DATABASE_CA is not set ({name} needs a PostgreSQL server with TLS)"
            );
            None
        }
    }
}

/// `url` with its password set to `password` and `params` appended to its query.
fn pg_url_with(url: &str, password: &str, params: &str) -> String {
    let url = url.replacen("://triage@", &format!("://triage:{password}@"), 1);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// Open the store at `url` read-only (through triage's own connection code, off the async
/// runtime) and say whether the server sees that connection encrypted, and with what.
fn pg_connection_tls(url: &str) -> Result<Option<String>, String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let scope = triage::state::Scope {
            source: String::new(),
            jira: String::new(),
        };
        triage::state::StateStore::open_read_only(Path::new(&url), scope)
            .map_err(|e| e.to_string())?
            .ok_or("no store there")?
            .connection_tls()
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_verify_full_against_the_servers_ca_runs_encrypted_and_a_wrong_ca_fails_clearly() {
    let Some(ca) = pg_test_ca("tls") else {
        return;
    };
    let Some(url) = pg_database("tls") else {
        return;
    };
    let now = t("2026-11-23T10:00:00Z");
    let logs = sim_logs(
        12,
        3,
        now - chrono::Duration::minutes(5),
        chrono::Duration::seconds(2),
        |_| chrono::Duration::seconds(1),
    );
    let sim = lagging_sim(logs.clone(), Duration::ZERO, Duration::ZERO);
    sim.set_now(now);
    let server = sim.serve().await;
    let dir = tempfile::tempdir().unwrap();
    let password = "pg-tls-s3cret";

    // verify-full against the CA that signed the server's certificate: the run works.
    let good = pg_url_with(
        &url,
        password,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    let out = finish(pg_runner(
        &server.uri(),
        &good,
        dir.path(),
        now,
        "good",
        "status:error",
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_one_ticket_per_problem(&sim, 3);
    let (seen, failed) = pg_store_view(&good, &server.uri(), "status:error", &logs);
    assert_eq!((seen.len(), failed), (logs.len(), 0));

    // The store's connection with these settings is encrypted, as the server sees it.
    let tls = pg_connection_tls(&good).expect("store opens");
    assert!(
        tls.as_deref().is_some_and(|v| v.starts_with("TLSv1.")),
        "{tls:?}"
    );
    // And sslmode=disable really is plain text (so the check above can tell them apart).
    let plain = pg_url_with(&url, password, "sslmode=disable");
    assert_eq!(pg_connection_tls(&plain), Ok(None));

    // verify-full checks the host name; verify-ca does not (libpq's meanings). The name the
    // client checks is the URL's host, while hostaddr reaches the same loopback server.
    let misnamed = |mode: &str| {
        pg_url_with(
            &url.replacen("@127.0.0.1:", "@db.wrong.example:", 1),
            password,
            &format!(
                "hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
                ca.display()
            ),
        )
    };
    let err = pg_connection_tls(&misnamed("verify-full")).unwrap_err();
    assert!(err.contains("does not name the host"), "{err}");
    assert!(!err.contains(password), "password shown: {err}");
    assert!(pg_connection_tls(&misnamed("verify-ca")).unwrap().is_some());
    // require takes the certificate as it comes when no root is given, as libpq does, and
    // checks it (as verify-ca) when sslrootcert is given.
    let other_ca = ca.with_file_name("other-ca.pem");
    assert!(
        pg_connection_tls(&pg_url_with(&url, password, "sslmode=require"))
            .unwrap()
            .is_some()
    );
    let err = pg_connection_tls(&pg_url_with(
        &url,
        password,
        &format!("sslmode=require&sslrootcert={}", other_ca.display()),
    ))
    .unwrap_err();
    assert!(err.contains("not signed by a CA in sslrootcert"), "{err}");

    // verify-full against a CA that did not sign the server's certificate: refused, clearly,
    // with the password nowhere in the output.
    assert!(other_ca.is_file(), "{} is missing", other_ca.display());
    let wrong = pg_url_with(
        &url,
        password,
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    );
    let out = finish(pg_runner(
        &server.uri(),
        &wrong,
        dir.path(),
        now,
        "wrong",
        "status:error",
    ))
    .await;
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("not signed by a CA in sslrootcert"),
        "a clear reason: {err}"
    );
    assert!(
        err.contains("triage:***@"),
        "the target is shown, redacted: {err}"
    );
    let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains(password), "password shown: {all}");
}
