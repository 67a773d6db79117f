//! What a run writes to Jira on a production-shaped workload, and how long it takes (issue 22,
//! point 5).
//!
//! `cargo bench --bench writes` runs the workload of `tests/it/writes.rs`: 1000 logs of 20
//! problems (many logs each, five problems worded in sibling templates that merge during the
//! run, a few hosts each) from a simulated Datadog, filed into a simulated Jira Cloud (both on
//! loopback, `tests/it/sim`), every call answered after 50 ms, state store on, `--async
//! --workers 10`, against an empty Jira each run. Rows: the limiter off (`--no-rate-limit`), and
//! the default limit (20 calls per second per service). For each it prints the wall time of the
//! run (median of `BENCH_RUNS`, default 3, with the fastest and slowest), the Jira calls per new
//! problem (the credentials check aside) and what they were.
//!
//! `BENCH_DELAY_MS=N` changes the latency, `BENCH_LOGS=N` the number of logs. Fails (panics)
//! if a run fails, files a wrong number of tickets, or writes a ticket twice.

#[path = "../tests/it/sim/mod.rs"]
mod sim;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;

struct Run {
    wall: Duration,
    calls: usize,
    tally: String,
}

fn run_once(runtime: &tokio::runtime::Runtime, logs: usize, delay: Duration, limited: bool) -> Run {
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let datadog = sim::datadog(sim::workload(logs, "AQAAAZ"), delay).await;
        let (jira, fake) = sim::jira(delay, None).await;
        let state = dir.path().join("state.db");
        let mut args: Vec<String> = [
            "triage",
            "--dd-api-url",
            &datadog.uri(),
            "--from",
            "2025-11-30T08:55:00Z",
            "--to",
            "2025-11-30T09:15:00Z",
            "--jira-url",
            &jira.uri(),
            "--jira-project",
            "OPS",
            "--jira-email",
            "bench@example.com",
            "--state",
            state.to_str().unwrap(),
            "--async",
            "--workers",
            "10",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !limited {
            args.push("--no-rate-limit".into());
        }
        let cli = triage::config::cli::Cli::try_parse_from(&args).expect("valid command line");
        let env: HashMap<String, String> = HashMap::from([
            ("JIRA_API_TOKEN".to_string(), "bench-token".to_string()),
            ("DD_API_KEY".to_string(), "bench-api-key".to_string()),
            ("DD_APP_KEY".to_string(), "bench-app-key".to_string()),
        ]);
        let (config, _) = triage::config::Config::from_cli(&cli, true, &|k| env.get(k).cloned())
            .expect("valid configuration");
        let started = Instant::now();
        let report = triage::run(config, std::future::pending())
            .await
            .expect("the run succeeds");
        let wall = started.elapsed();
        let s = &report.summary;
        assert_eq!(
            (s.created, s.failed, s.fetched),
            (sim::WORKLOAD_PROBLEMS as u64, 0, logs as u64),
            "{s:?}"
        );
        let mut written: HashMap<String, usize> = HashMap::new();
        for c in fake.calls() {
            if let Some(key) = c.key {
                *written.entry(key).or_default() += 1;
            }
        }
        assert!(
            written.values().all(|&n| n <= 1),
            "a ticket written twice: {}",
            fake.tally()
        );
        Run {
            wall,
            calls: fake.work_calls(),
            tally: fake.tally(),
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
    let logs = env_usize("BENCH_LOGS", 1000);
    let delay = Duration::from_millis(env_usize("BENCH_DELAY_MS", 50) as u64);
    let runs = env_usize("BENCH_RUNS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A short run first: one-time start-up (patterns, first connections) is no row's.
    run_once(&runtime, 100, delay, false);
    println!(
        "writes: {logs} logs of {} problems, {} ms per Datadog and Jira call, --async --workers 10, state on",
        sim::WORKLOAD_PROBLEMS,
        delay.as_millis()
    );
    println!(
        "{:<18} {:>9} {:>17} {:>11}  calls",
        "limiter", "wall s", "runs: min-max", "calls/prob"
    );
    for limited in [false, true] {
        let mut all: Vec<Run> = (0..runs)
            .map(|_| run_once(&runtime, logs, delay, limited))
            .collect();
        all.sort_by_key(|r| r.wall);
        let (min, max) = (all[0].wall, all[all.len() - 1].wall);
        let median = &all[all.len() / 2];
        println!(
            "{:<18} {:>9.3} {:>17} {:>11.3}  {}",
            if limited {
                "default (20/s)"
            } else {
                "--no-rate-limit"
            },
            median.wall.as_secs_f64(),
            format!("{runs}: {:.3}-{:.3}", min.as_secs_f64(), max.as_secs_f64()),
            median.calls as f64 / sim::WORKLOAD_PROBLEMS as f64,
            median.tally
        );
    }
}
