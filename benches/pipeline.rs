//! Throughput and memory of the pipeline core, without any network: a dry run from generated
//! JSON Lines, rules analyzer, state store on.
//!
//! `cargo bench --bench pipeline` prints one table:
//! - throughput: 200,000 logs over 1,000 problems, sequential, `--async --workers 1` and
//!   `--async --workers 8`; best and median of three runs, in logs per second;
//! - end to end: 200,000 logs as `examples/gen_logs` writes them (fourteen templates over six
//!   services, ids, durations, users, stack traces, custom attributes), each run the `triage`
//!   binary itself from process start to exit, sequential and `--async --workers 4`;
//! - memory: 1,000,000 logs over 100,000 problems streamed through stdin into a child process
//!   (this bench executable again, with the binary's allocator), which prints its own peak RSS
//!   (`VmHWM` in /proc/self/status) after the run.
//!
//! The throughput modes take turns (three rounds, after one untimed run), so a moment of
//! other work on the machine does not land on one mode only. Each row gives the best and the
//! median of its three runs; `CPU µs/log` (user + system time of the whole process per log, the
//! best) is steadier than wall time on a machine shared with other work.
//!
//! `BENCH_LOGS=N` changes the throughput input; `BENCH_E2E_LOGS=N` the end-to-end one;
//! `BENCH_MEM_LOGS=N` and `BENCH_MEM_PROBLEMS=N`
//! the memory one; `BENCH_SKIP_MEM=1` skips the memory run. Fails (panics) if a run fails.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

/// The binary's allocator, so the memory run measures what a user's process holds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The sample-data generator, whose logs the end-to-end runs read.
#[allow(dead_code)]
#[path = "../examples/gen_logs.rs"]
mod gen_logs;

/// One generated log line, `i` of a listing over `problems` problems.
fn line(out: &mut impl Write, i: usize, problems: usize) -> std::io::Result<()> {
    let p = i % problems;
    writeln!(
        out,
        "{{\"id\":\"log-{i}\",\"type\":\"log\",\"attributes\":{{\"status\":\"error\",\"service\":\"svc{p}\",\
         \"host\":\"host-{}\",\"timestamp\":\"2026-11-23T09:{:02}:{:02}Z\",\
         \"message\":\"request {i} to 10.0.0.{} failed after {}ms\"}}}}",
        i % 5,
        (i / 60) % 60,
        i % 60,
        i % 250,
        i * 7 % 1000
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time this process has used (user + system), from /proc/self/stat; zero elsewhere.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // Clock ticks of 10 ms (USER_HZ = 100 on Linux).
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// Run the library as the binary does, with no environment but `args`.
fn run(args: &[String]) -> (triage::Report, Duration, Duration) {
    let cli = triage::config::cli::Cli::try_parse_from(args).expect("valid command line");
    let env: HashMap<String, String> = HashMap::new();
    let (config, _) = triage::config::Config::from_cli(&cli, true, &|k| env.get(k).cloned())
        .expect("valid configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let cpu_before = cpu_time();
    let report = runtime
        .block_on(triage::run(config, std::future::pending()))
        .expect("the run succeeds");
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    runtime.shutdown_background();
    (report, elapsed, cpu)
}

fn args(input: &str, state: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "triage",
        "--dry-run",
        "--input",
        input,
        "--state",
        state.to_str().expect("utf-8 path"),
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The `triage` binary over `examples/gen_logs`-shaped logs, process start to exit.
fn end_to_end(dir: &Path, state: &Path) {
    let logs = env_usize("BENCH_E2E_LOGS", 200_000);
    let input = dir.join("gen_logs.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
        let opts = gen_logs::Options {
            count: logs as u64,
            seed: 42,
            malformed: false,
            problems: false,
        };
        gen_logs::generate(&opts, &mut out).expect("write input");
        out.flush().expect("flush input");
    }
    let input = input.to_str().expect("utf-8 path");
    let modes: Vec<(&str, Vec<String>)> = [
        ("binary, sequential", vec![]),
        (
            "binary, --async --workers 4",
            vec!["--async", "--workers", "4"],
        ),
    ]
    .into_iter()
    .map(|(name, extra)| {
        let mut a = args(input, state, &extra);
        a.remove(0);
        a.extend(["--output".into(), "json".into()]);
        (name, a)
    })
    .collect();
    let exe = env!("CARGO_BIN_EXE_triage");
    let once = |a: &[String]| {
        let started = Instant::now();
        let out = Command::new(exe).args(a).output().expect("start triage");
        let elapsed = started.elapsed();
        assert!(out.status.success(), "triage failed: {:?}", out.status);
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("a JSON summary on stdout");
        assert_eq!(summary["processed"], logs, "every log processed");
        (elapsed, summary["problems"].as_u64().unwrap_or(0), None)
    };
    take_turns(&modes, logs, once);
}

/// One untimed run first (page cache, allocator), then the modes take turns, three rounds: a
/// machine busy for a moment slows every mode alike, not the one that ran then. One row per
/// mode: the best and the median of its three runs, and CPU time per log when `run` knows it.
fn take_turns(
    modes: &[(&str, Vec<String>)],
    logs: usize,
    run: impl Fn(&[String]) -> (Duration, u64, Option<Duration>),
) {
    run(&modes[0].1);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    let mut cpus: Vec<Option<Duration>> = vec![None; modes.len()];
    let mut problems = vec![0u64; modes.len()];
    for _ in 0..3 {
        for (m, (_, a)) in modes.iter().enumerate() {
            let (t, p, cpu) = run(a);
            times[m].push(t);
            cpus[m] = cpus[m].min(cpu).or(cpu);
            problems[m] = p;
        }
    }
    for (m, (name, _)) in modes.iter().enumerate() {
        times[m].sort();
        let (best, median) = (times[m][0], times[m][1]);
        let cpu = cpus[m].map_or("-".to_string(), |c| {
            format!("{:.2}", c.as_secs_f64() * 1e6 / logs as f64)
        });
        println!(
            "{:<28} {:>10} {:>9} {:>10.3} {:>14.0} {:>14.0} {:>14}",
            name,
            logs,
            problems[m],
            best.as_secs_f64(),
            logs as f64 / best.as_secs_f64(),
            logs as f64 / median.as_secs_f64(),
            cpu
        );
    }
}

/// The child of the memory run: the pipeline over stdin, then its peak RSS on stdout.
fn memory_child(state: &str) {
    let a = args("-", Path::new(state), &[]);
    let (report, elapsed, _) = run(&a);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!(
        "{} {} {} {}",
        report.summary.processed,
        report.summary.problems,
        elapsed.as_millis(),
        hwm_kb
    );
}

fn main() {
    if let Ok(state) = std::env::var("TRIAGE_BENCH_CHILD_STATE") {
        memory_child(&state);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // A state store that exists (a dry run opens it read-only, and only if it is there).
    let state = dir.path().join("state.db");
    drop(
        triage::state::StateStore::open(&state, triage::state::Scope::default())
            .expect("create the state store"),
    );

    let logs = env_usize("BENCH_LOGS", 200_000);
    let problems = 1_000;
    let input = dir.path().join("logs.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
        for i in 0..logs {
            line(&mut out, i, problems).expect("write input");
        }
        out.flush().expect("flush input");
    }
    let input = input.to_str().expect("utf-8 path").to_string();

    println!("pipeline benchmark: dry run from a file, rules analyzer, state on");
    println!(
        "{:<28} {:>10} {:>9} {:>10} {:>14} {:>14} {:>14}",
        "run", "logs", "problems", "seconds", "logs/s", "median logs/s", "CPU µs/log"
    );
    let modes: Vec<(&str, Vec<String>)> = [
        ("sequential", vec![]),
        ("--async --workers 1", vec!["--async", "--workers", "1"]),
        ("--async --workers 8", vec!["--async", "--workers", "8"]),
    ]
    .into_iter()
    .map(|(name, extra)| (name, args(&input, &state, &extra)))
    .collect();
    take_turns(&modes, logs, |a| {
        let (r, t, cpu) = run(a);
        assert_eq!(r.summary.processed as usize, logs, "every log processed");
        (t, r.summary.problems, Some(cpu))
    });

    end_to_end(dir.path(), &state);

    if std::env::var_os("BENCH_SKIP_MEM").is_some() {
        return;
    }
    let mem_logs = env_usize("BENCH_MEM_LOGS", 1_000_000);
    let mem_problems = env_usize("BENCH_MEM_PROBLEMS", 100_000);
    let exe = std::env::current_exe().expect("this bench's path");
    let mut child = Command::new(exe)
        .env("TRIAGE_BENCH_CHILD_STATE", &state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the memory run");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(&mut stdin);
        for i in 0..mem_logs {
            if line(&mut out, i, mem_problems).is_err() {
                break;
            }
        }
        let _ = out.flush();
    });
    let out = child.wait_with_output().expect("memory run ends");
    writer.join().expect("the writer thread ends");
    assert!(out.status.success(), "memory run failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [processed, problems, ms, hwm_kb] = fields[..] else {
        panic!("the memory run printed {text:?}");
    };
    assert_eq!(processed as usize, mem_logs, "every log processed");
    println!(
        "{:<28} {:>10} {:>9} {:>10.3} {:>14.0}   peak RSS {:.0} MB",
        "memory (stdin, sequential)",
        processed,
        problems,
        ms as f64 / 1000.0,
        processed as f64 / (ms as f64 / 1000.0),
        hwm_kb as f64 / 1024.0
    );
}
