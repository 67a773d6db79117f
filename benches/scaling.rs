//! How a live run scales with workers when every Jira call costs 50 ms (issue 12, point 5).
//!
//! `cargo bench --bench scaling` files 400 new problems (one log each, from a generated JSON
//! Lines file, state store on) into a fake Jira Cloud on loopback (wiremock) that answers every
//! call after 50 ms and keeps what was created (search finds it by label, paged). One run per
//! row, each against an empty fake Jira: 1, 10, 50 and 100 workers with the limiter off
//! (`--no-rate-limit`), and 50 workers at `--rate-limit 20`. For each row it prints:
//! - wall time of the run, and the ideal: ⌈problems / workers⌉ × 50 ms (one create per problem,
//!   in waves of `workers`);
//! - the bound no run that searches before it creates can beat: (1 + ⌈problems / workers⌉) ×
//!   50 ms (the first batched search, then the waves of creates), and wall / bound;
//! - efficiency against one worker: T1 / (N · TN);
//! - Jira calls per problem (the start-up `myself` and the batched searches included);
//! - the most calls Jira saw in any one-second window (arrival times at the server), and for the
//!   limited row how much of the limit the run used (calls per second over the run / limit).
//!
//! A short warm-up run comes first, so the process's one-time start-up (compiling patterns,
//! first connections) is no row's.
//!
//! `BENCH_PROBLEMS=N` changes the number of problems, `BENCH_DELAY_MS=N` the latency,
//! `BENCH_NO_STATE=1` runs without the state store (no durable write around each create), to
//! see what it costs. `BENCH_WORKERS=50,100` runs only those rows (without the limited one),
//! `BENCH_RUNS=N` runs each row N times and reports the median run (and the fastest and
//! slowest), `BENCH_TIMELINE=1` prints each run's calls per 5 ms by kind: where the time went.
//! Fails (panics) if a run fails or files a wrong number of tickets.

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
    /// When each call arrived, and which it was (`myself`, `create`, `search`).
    arrivals: Arc<Mutex<Vec<(Instant, &'static str)>>>,
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
        fake.arrivals.lock().unwrap().push((Instant::now(), self.1));
        match self.1 {
            "myself" => fake.answer(200, json!({"accountId": "1", "displayName": "bench"})),
            "create" => {
                // Only the labels are read (the description is skipped, not built).
                #[derive(serde::Deserialize)]
                struct Create {
                    fields: Labels,
                }
                #[derive(serde::Deserialize)]
                struct Labels {
                    labels: Vec<String>,
                }
                let body: Create = req.body_json().expect("JSON with fields.labels");
                let labels = body.fields.labels;
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
    // The fake costs as little as it can: its CPU is taken from the run it measures.
    let server = MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
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
    /// The median run's figures, and the fastest and slowest wall time of the runs.
    wall: Duration,
    calls: usize,
    most_in_a_second: usize,
    range: (Duration, Duration),
    runs: usize,
}

/// One run's figures.
struct Run {
    wall: Duration,
    calls: usize,
    most_in_a_second: usize,
}

/// The calls a run made, counted per 5 ms from its start, per kind: where the time went.
fn timeline(started: Instant, arrivals: &[(Instant, &'static str)]) -> String {
    let mut bins: std::collections::BTreeMap<u128, (usize, usize, usize)> = Default::default();
    for (at, what) in arrivals {
        let bin = at.saturating_duration_since(started).as_millis() / 5 * 5;
        let b = bins.entry(bin).or_default();
        match *what {
            "myself" => b.0 += 1,
            "search" => b.1 += 1,
            _ => b.2 += 1,
        }
    }
    bins.iter()
        .map(|(ms, (m, s, c))| {
            let mut line = format!("  {ms:>6} ms:");
            for (n, what) in [(m, "myself"), (s, "search"), (c, "create")] {
                if *n > 0 {
                    line.push_str(&format!(" {n} {what}"));
                }
            }
            line + "\n"
        })
        .collect()
}

/// The most arrivals in any half-open one-second window.
fn most_in_any_second(arrivals: &[(Instant, &'static str)]) -> usize {
    let mut at: Vec<Instant> = arrivals.iter().map(|(t, _)| *t).collect();
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

/// Where and what the runs run: the runtime, the folder with the logs, how many problems they
/// hold, and the fake Jira's latency.
struct Bench<'a> {
    runtime: &'a tokio::runtime::Runtime,
    dir: &'a std::path::Path,
    problems: usize,
    delay: Duration,
}

fn run_row(bench: &Bench<'_>, workers: usize, limit: Option<u32>, run: usize) -> Run {
    let Bench {
        runtime,
        dir,
        problems,
        delay,
    } = *bench;
    let input = dir.join("logs.jsonl");
    let state = dir.join(format!("state-{workers}-{limit:?}-{run}.db"));
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
        let cli = triage::config::cli::Cli::try_parse_from(&args).expect("valid command line");
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
        if std::env::var_os("BENCH_TIMELINE").is_some() {
            println!(
                "{workers} workers, limit {limit:?}, run {run}: {:.3} s\n{}",
                wall.as_secs_f64(),
                timeline(started, &arrivals)
            );
        }
        Run {
            wall,
            calls: arrivals.len(),
            most_in_a_second: most_in_any_second(&arrivals),
        }
    })
}

/// `runs` runs of one row; its figures are the median run's.
fn row(bench: &Bench<'_>, workers: usize, limit: Option<u32>, runs: usize) -> Row {
    let mut all: Vec<Run> = (0..runs)
        .map(|run| run_row(bench, workers, limit, run))
        .collect();
    all.sort_by_key(|r| r.wall);
    let range = (all[0].wall, all[all.len() - 1].wall);
    let median = all.swap_remove(all.len() / 2);
    Row {
        label: match limit {
            Some(r) => format!("--rate-limit {r}"),
            None => "--no-rate-limit".to_string(),
        },
        workers,
        wall: median.wall,
        calls: median.calls,
        most_in_a_second: median.most_in_a_second,
        range,
        runs,
    }
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

    let runs = env_usize("BENCH_RUNS", 1).max(1);
    let workers: Vec<usize> = match std::env::var("BENCH_WORKERS") {
        Ok(list) => list
            .split(',')
            .map(|w| {
                w.trim()
                    .parse()
                    .expect("BENCH_WORKERS: numbers, comma-separated")
            })
            .collect(),
        Err(_) => vec![1, 10, 50, 100],
    };
    // A short run first: the process's one-time start-up (compiling the redaction and rule
    // patterns, the first connections) is not any row's.
    let warm = tempfile::tempdir().expect("temp dir");
    std::fs::write(warm.path().join("logs.jsonl"), logs(20)).expect("write logs");
    let warm_up = Bench {
        runtime: &runtime,
        dir: warm.path(),
        problems: 20,
        delay,
    };
    run_row(&warm_up, 10, None, 0);
    let bench = Bench {
        runtime: &runtime,
        dir: dir.path(),
        problems,
        delay,
    };

    let mut rows: Vec<Row> = workers
        .iter()
        .map(|&w| row(&bench, w, None, runs))
        .collect();
    if std::env::var_os("BENCH_WORKERS").is_none() {
        rows.push(row(&bench, 50, Some(20), 1));
    }

    // Efficiency needs the one-worker row.
    let t1 = rows
        .iter()
        .find(|r| r.workers == 1 && r.label == "--no-rate-limit")
        .map(|r| r.wall.as_secs_f64());
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
        "{:<16} {:>7} {:>9} {:>15} {:>9} {:>8} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "limiter",
        "workers",
        "wall s",
        "runs: min-max",
        "ideal s",
        "wall/id",
        "bound s",
        "wall/bd",
        "efficiency",
        "calls/prob",
        "most in 1 s"
    );
    for r in &rows {
        let ideal = problems.div_ceil(r.workers) as f64 * delay.as_secs_f64();
        let bound = (1 + problems.div_ceil(r.workers)) as f64 * delay.as_secs_f64();
        let wall = r.wall.as_secs_f64();
        println!(
            "{:<16} {:>7} {:>9.3} {:>15} {:>9.3} {:>8.2} {:>9.3} {:>9.2} {:>10} {:>10.3} {:>12}",
            r.label,
            r.workers,
            wall,
            format!(
                "{}: {:.3}-{:.3}",
                r.runs,
                r.range.0.as_secs_f64(),
                r.range.1.as_secs_f64()
            ),
            ideal,
            wall / ideal,
            bound,
            wall / bound,
            t1.map_or("-".to_string(), |t1| format!(
                "{:.3}",
                t1 / (r.workers as f64 * wall)
            )),
            r.calls as f64 / problems as f64,
            r.most_in_a_second
        );
    }
    let Some(limited) = rows.iter().find(|r| r.label != "--no-rate-limit") else {
        return;
    };
    let used = limited.calls as f64 / limited.wall.as_secs_f64() / 20.0;
    println!(
        "at --rate-limit 20: {} calls in {:.2} s, {:.1} % of the limit used, at most {} in any one second",
        limited.calls,
        limited.wall.as_secs_f64(),
        used * 100.0,
        limited.most_in_a_second
    );
}
