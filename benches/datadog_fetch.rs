//! How many requests and how much time a Datadog fetch of 10,000 logs takes through the whole
//! pipeline (dry run, rules analyzer), against a local mock that answers each page after 20 ms.
//!
//! `cargo bench --bench datadog_fetch` runs batch sizes 100 and 1000 with `--no-rate-limit`
//! (so the local limiter does not dominate), then both again with the default `--rate-limit 10`.
//! Arguments pick runs instead: `100`, `1000`, `100:rl` (rate limited), `100:async` (`--async
//! --workers 10`). `BENCH_LOGS=N` changes the number of logs. The mock generates each page from
//! the cursor (an offset), so it holds no logs itself: the process's peak RSS (printed, from
//! /proc/self/status) is the pipeline's plus one page in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const DEFAULT_LOGS: usize = 10_000;
/// Per-page latency of the mock.
const LATENCY: Duration = Duration::from_millis(20);
/// Distinct problems among the generated logs.
const PROBLEMS: usize = 40;

/// Log number `i` of the listing, in Datadog's v2 shape.
fn log(i: usize) -> Value {
    let p = i % PROBLEMS;
    json!({
        "id": format!("AQAAAZbench{i:010}"),
        "type": "log",
        "attributes": {
            "timestamp": format!("2026-11-23T09:{:02}:{:02}.{:03}Z", (i / 60_000) % 60, (i / 1000) % 60, i % 1000),
            "status": "error",
            "service": format!("svc-{p}"),
            "host": format!("host-{}", i % 7),
            "message": format!("request {i} to 10.0.{}.{} failed after {}ms: upstream error code={}", p, i % 250, i * 7 % 1000, p),
            "tags": ["env:prod", format!("service:svc-{p}"), "source:bench"],
            "attributes": {"http": {"status_code": 502, "url": format!("/api/v{}/items/{i}", p % 3)}, "duration": i * 1000},
        },
    })
}

/// Serves the listing page by page: the cursor is the offset of the next log.
struct Listing {
    logs: usize,
    requests: Arc<AtomicU64>,
}

impl Respond for Listing {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let body: Value = request.body_json().unwrap_or_default();
        let limit = body["page"]["limit"].as_u64().unwrap_or(10) as usize;
        let start: usize = body["page"]["cursor"]
            .as_str()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let end = (start + limit).min(self.logs);
        let data: Vec<Value> = (start..end).map(log).collect();
        let mut page =
            json!({"data": data, "meta": {"elapsed": 20, "status": "done", "request_id": "bench"}});
        if end < self.logs {
            page["meta"]["page"] = json!({"after": end.to_string()});
        }
        ResponseTemplate::new(200)
            .set_body_json(page)
            .set_delay(LATENCY)
    }
}

/// `VmHWM` (peak RSS) and `VmRSS` of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn fetch(server: &MockServer, requests: &AtomicU64, run: &str, logs: usize) {
    let (batch, mode) = run.split_once(':').unwrap_or((run, ""));
    let uri = server.uri();
    let mut argv = vec![
        "triage",
        "--dry-run",
        "--dd-api-url",
        &uri,
        "--batch-size",
        batch,
        "--from",
        "now-1h",
    ];
    match mode {
        "rl" => {}
        "async" => argv.extend(["--no-rate-limit", "--async", "--workers", "10"]),
        _ => argv.push("--no-rate-limit"),
    }
    let cli = triage::config::cli::Cli::try_parse_from(&argv).expect("valid bench arguments");
    let env = |k: &str| matches!(k, "DD_API_KEY" | "DD_APP_KEY").then(|| "bench".to_string());
    let (config, _) =
        triage::config::Config::from_cli(&cli, false, &env).expect("valid bench configuration");
    let limiter = match (mode, config.rate_limit) {
        (_, Some(n)) => format!("--rate-limit {n}"),
        ("async", None) => "--no-rate-limit --async --workers 10".to_string(),
        (_, None) => "--no-rate-limit".to_string(),
    };
    requests.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let report = triage::run(config, std::future::pending())
        .await
        .expect("the bench run completes");
    let wall = started.elapsed();
    let s = &report.summary;
    assert_eq!(s.error, None, "the bench run failed");
    assert_eq!(s.processed as usize, logs, "every log processed");
    let (peak, rss) = memory();
    println!(
        "batch {batch:>4}  {limiter:<36}  {:>4} requests  {:>7.2} s  {:>8.0} logs/s  fetch p50 {:>6.1} ms  problems {:>3}  peak RSS so far {peak:.1} MiB (now {rss:.1})",
        requests.load(Ordering::Relaxed),
        wall.as_secs_f64(),
        logs as f64 / wall.as_secs_f64(),
        s.stages.fetch.p50_ms.unwrap_or(f64::NAN),
        s.problems,
    );
}

#[tokio::main]
async fn main() {
    let logs: usize = std::env::var("BENCH_LOGS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_LOGS);
    let mut runs: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if runs.is_empty() {
        runs = ["100", "1000", "100:rl", "1000:rl"]
            .map(String::from)
            .to_vec();
    }
    let server = MockServer::start().await;
    let requests = Arc::new(AtomicU64::new(0));
    Mock::given(method("POST"))
        .and(path("/api/v2/logs/events/search"))
        .respond_with(Listing {
            logs,
            requests: requests.clone(),
        })
        .mount(&server)
        .await;
    let (peak, rss) = memory();
    println!(
        "{logs} logs, {} ms per page; before the runs: peak RSS {peak:.1} MiB, RSS {rss:.1} MiB",
        LATENCY.as_millis()
    );
    for run in &runs {
        fetch(&server, &requests, run, logs).await;
    }
}
