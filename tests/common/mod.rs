//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// The sample data shipped with the repository.
pub fn sample_logs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs.jsonl")
}

/// Distinct problems in `examples/logs.jsonl` (see examples/gen_logs.rs --problems).
pub const SAMPLE_PROBLEMS: u64 = 14;
/// Logs in `examples/logs.jsonl`.
pub const SAMPLE_LOGS: u64 = 300;

/// A fixture file from ../shared/fixtures.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(path)
}

/// The response bodies of a recorded Datadog cassette, parsed.
pub fn cassette_bodies(name: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(fixture(&format!("datadog/{name}"))).expect("cassette exists");
    let v: Value = serde_json::from_str(&text).expect("cassette is JSON");
    v["http_interactions"]
        .as_array()
        .expect("interactions")
        .iter()
        .map(|i| {
            serde_json::from_str(
                i["response"]["body"]["string"]
                    .as_str()
                    .expect("body string"),
            )
            .expect("body JSON")
        })
        .collect()
}

/// The `triage` binary, run in an empty temporary directory (so no stray `.env` is read) with
/// an environment that holds nothing but PATH.
pub struct Triage {
    pub cmd: Command,
    pub dir: tempfile::TempDir,
}

pub fn triage() -> Triage {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::cargo_bin("triage").expect("binary built");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir.path());
    Triage { cmd, dir }
}

/// Read a report written with --report.
pub fn read_report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("report is JSON")
}

/// Generate `n` JSONL logs over `problems` problems (distinct services, one message shape each).
pub fn generated_logs(n: usize, problems: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let p = i % problems;
        out.push_str(&format!(
            "{{\"id\":\"log-{i}\",\"type\":\"log\",\"attributes\":{{\"status\":\"error\",\"service\":\"svc{p}\",\
             \"host\":\"host-{}\",\"timestamp\":\"2026-11-23T09:{:02}:{:02}Z\",\
             \"message\":\"request {i} to 10.0.0.{} failed after {}ms\"}}}}\n",
            i % 3,
            (i / 60) % 60,
            i % 60,
            i % 250,
            i * 7 % 1000
        ));
    }
    out
}
