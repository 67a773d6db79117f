//! How a live run scales with workers when every Jira call costs 50 ms (issue 12, point 5).
//!
//! `cargo bench --bench scaling` files 400 new problems (one log each, from a generated JSON
//! Lines file, state store on) into a fake Jira Cloud on loopback (wiremock) that answers every
//! call after 50 ms and keeps what was created (search finds it by label, paged). One run per
//! row, each against an empty fake Jira: 1, 10, 50 and 100 workers with the limiter off
//! (`--no-rate-limit`), and 50 workers at `--rate-limit 20`. For each row it prints:
//! - wall time of the run, and the ideal: ⌈problems / workers⌉ × 50 ms (one create per problem,
//!   in waves of `workers`);
//! - efficiency against one worker: T1 / (N · TN);
//! - Jira calls per problem (the start-up `myself` and the batched searches included);
//! - the most calls Jira saw in any one-second window (arrival times at the server), and for the
//!   limited row how much of the limit the run used (calls per second over the run / limit).
//!
//! `BENCH_PROBLEMS=N` changes the number of problems, `BENCH_DELAY_MS=N` the latency,
//! `BENCH_NO_STATE=1` runs without the state store (no durable write around each create), to
//! see what it costs. Fails (panics) if a run fails or files a wrong number of tickets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const V3: &str = "/rest/api/3";

/// One issue the fake Jira holds: (id, key, labels).
type Stored = (u64, String, Vec<String>);

/// What the fake Jira holds, and when each call arrived.
#[derive(Clone, Default)]
struct Fake {
    issues: Arc<Mutex<Vec<Stored>>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    delay: Duration,
}

impl Fake {
    fn answer(&self, status: u16, body: Value) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .set_body_json(body)
            .set_delay(self.delay)
    }
}

struct Handler(Fake, &'static str);

/// Every label a JQL string names (quoted values after `labels`).
fn labels_in(jql: &str) -> Vec<String> {
    let start = jql.find("labels").unwrap_or(jql.len());
    let end = jql.find(" ORDER BY").unwrap_or(jql.len());
    jql[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let fake = &self.0;
        fake.arrivals.lock().unwrap().push(Instant::now());
        match self.1 {
            "myself" => fake.answer(200, json!({"accountId": "1", "displayName": "bench"})),
            "create" => {
                let body: Value = req.body_json().expect("JSON");
                let labels = body["fields"]["labels"]
                    .as_array()
                    .expect("labels")
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_string))
                    .collect();
                let mut issues = fake.issues.lock().unwrap();
                let n = issues.len() as u64 + 1;
                let key = format!("OPS-{n}");
                issues.push((10_000 + n, key.clone(), labels));
                fake.answer(201, json!({"id": (10_000 + n).to_string(), "key": key}))
            }
            _ => {
                let body: Value = req.body_json().expect("JSON");
                let wanted = labels_in(body["jql"].as_str().unwrap_or(""));
                let max = body["maxResults"].as_u64().unwrap_or(50) as usize;
                let start: usize = body["nextPageToken"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let all: Vec<Value> = fake
                    .issues
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, _, l)| l.iter().any(|l| wanted.contains(l)))
                    .map(|(id, key, labels)| {
                        json!({"id": id.to_string(), "key": key, "fields": {
                            "summary": "s", "labels": labels,
                            "status": {"name": "To Do", "statusCategory": {"key": "new"}}}})
                    })
                    .collect();
                let page: Vec<Value> = all.iter().skip(start).take(max).cloned().collect();
                let more = start + max < all.len();
                let mut body = json!({"issues": page, "isLast": !more});
                if more {
                    body["nextPageToken"] = json!((start + max).to_string());
                }
                fake.answer(200, body)
            }
        }
    }
}

async fn start(delay: Duration) -> (MockServer, Fake) {
    let fake = Fake {
        delay,
        ..Fake::default()
    };
    let server = MockServer::start().await;
    for (verb, p, what) in [
        ("GET", format!("{V3}/myself"), "myself"),
        ("POST", format!("{V3}/issue"), "create"),
        ("POST", format!("{V3}/search/jql"), "search"),
    ] {
        Mock::given(method(verb))
            .and(path(p))
            .respond_with(Handler(fake.clone(), what))
            .mount(&server)
            .await;
    }
    (server, fake)
}

fn logs(problems: usize) -> String {
    (0..problems)
        .map(|p| {
            format!(
                "{{\"id\":\"log-{p}\",\"type\":\"log\",\"attributes\":{{\"status\":\"error\",\
                 \"service\":\"svc{p}\",\"host\":\"host-1\",\"timestamp\":\"2026-11-23T09:00:00Z\",\
                 \"message\":\"request {p} to 10.0.0.1 failed after 30ms\"}}}}\n"
            )
        })
        .collect()
}

struct Row {
    label: String,
    workers: usize,
    wall: Duration,
    calls: usize,
    most_in_a_second: usize,
}

/// The most arrivals in any half-open one-second window.
fn most_in_any_second(mut at: Vec<Instant>) -> usize {
    at.sort();
    let mut most = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi].duration_since(at[lo]) >= Duration::from_secs(1) {
            lo += 1;
        }
        most = most.max(hi - lo + 1);
    }
    most
}

fn run_row(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    problems: usize,
    delay: Duration,
    workers: usize,
    limit: Option<u32>,
) -> Row {
    let input = dir.join("logs.jsonl");
    let state = dir.join(format!("state-{workers}-{limit:?}.db"));
    let state_args: Vec<String> = if std::env::var_os("BENCH_NO_STATE").is_some() {
        vec!["--no-state".into()]
    } else {
        vec!["--state".into(), state.to_str().unwrap().into()]
    };
    runtime.block_on(async {
        let (server, fake) = start(delay).await;
        let mut args: Vec<String> = [
            "triage",
            "--input",
            input.to_str().unwrap(),
            "--jira-url",
            &server.uri(),
            "--jira-project",
            "OPS",
            "--jira-email",
            "bench@example.com",
            "--async",
            "--workers",
            &workers.to_string(),
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(state_args.iter().cloned());
        match limit {
            Some(r) => args.extend(["--rate-limit".to_string(), r.to_string()]),
            None => args.push("--no-rate-limit".to_string()),
        }
        let cli = triage::cli::Cli::try_parse_from(&args).expect("valid command line");
        let env: HashMap<String, String> =
            HashMap::from([("JIRA_API_TOKEN".to_string(), "bench-token".to_string())]);
        let (config, _) = triage::config::Config::from_cli(&cli, true, &|k| env.get(k).cloned())
            .expect("valid configuration");
        let started = Instant::now();
        let report = triage::run(config, std::future::pending())
            .await
            .expect("the run succeeds");
        let wall = started.elapsed();
        assert_eq!(
            (report.summary.created, report.summary.failed),
            (problems as u64, 0),
            "{:?}",
            report.summary
        );
        let arrivals = fake.arrivals.lock().unwrap().clone();
        Row {
            label: match limit {
                Some(r) => format!("--rate-limit {r}"),
                None => "--no-rate-limit".to_string(),
            },
            workers,
            wall,
            calls: arrivals.len(),
            most_in_a_second: most_in_any_second(arrivals),
        }
    })
}

fn main() {
    let env_usize = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let problems = env_usize("BENCH_PROBLEMS", 400);
    let delay = Duration::from_millis(env_usize("BENCH_DELAY_MS", 50) as u64);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("logs.jsonl"), logs(problems)).expect("write logs");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut rows = Vec::new();
    for workers in [1, 10, 50, 100] {
        rows.push(run_row(
            &runtime,
            dir.path(),
            problems,
            delay,
            workers,
            None,
        ));
    }
    rows.push(run_row(&runtime, dir.path(), problems, delay, 50, Some(20)));

    let t1 = rows[0].wall.as_secs_f64();
    println!(
        "scaling: {problems} new problems, {} ms per Jira call, state store {}",
        delay.as_millis(),
        if std::env::var_os("BENCH_NO_STATE").is_some() {
            "off"
        } else {
            "on"
        }
    );
    println!(
        "{:<16} {:>7} {:>9} {:>9} {:>8} {:>10} {:>10} {:>12}",
        "limiter",
        "workers",
        "wall s",
        "ideal s",
        "wall/id",
        "efficiency",
        "calls/prob",
        "most in 1 s"
    );
    for r in &rows {
        let ideal = problems.div_ceil(r.workers) as f64 * delay.as_secs_f64();
        let wall = r.wall.as_secs_f64();
        println!(
            "{:<16} {:>7} {:>9.3} {:>9.3} {:>8.2} {:>10.3} {:>10.3} {:>12}",
            r.label,
            r.workers,
            wall,
            ideal,
            wall / ideal,
            t1 / (r.workers as f64 * wall),
            r.calls as f64 / problems as f64,
            r.most_in_a_second
        );
    }
    let limited = &rows[4];
    let used = limited.calls as f64 / limited.wall.as_secs_f64() / 20.0;
    println!(
        "at --rate-limit 20: {} calls in {:.2} s, {:.1} % of the limit used, at most {} in any one second",
        limited.calls,
        limited.wall.as_secs_f64(),
        used * 100.0,
        limited.most_in_a_second
    );
}
