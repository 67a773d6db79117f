//! Masking + template matching throughput, on one core.
//!
//! `cargo bench --bench fingerprint [-- CORPUS_DIR]`
//!
//! 1. A labelled corpus, when one is named: every `<System>/<System>_2k.log_structured_corrected.csv`
//!    under the folder given as argument or in `TRIAGE_BENCH_CORPUS` (skipped with a message
//!    when none is named or the folder is absent; nothing outside the repository is read unless
//!    named). A fresh miner learns
//!    all systems' lines, several times over, and the lines/s is printed.
//! 2. A generated set: 1,000,000 lines drawn from 100,000 distinct templates (random words,
//!    with numbers, addresses and ids in their variable slots), generated in chunks so only the
//!    miner's own memory grows. Peak RSS: run the bench binary under `/usr/bin/time -v`.
//!
//! Only `TemplateMiner::fingerprint` is timed; building the events is not. Both wall-clock time
//! and this thread's CPU time (Linux `/proc/thread-self/stat`, 10 ms ticks) are measured: on a
//! busy machine the CPU-time figure is the one-core throughput.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use triage::event::LogEvent;
use triage::grouping::TemplateMiner;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let named = |name: &str| args.iter().any(|a| a == name);
    if named("corpus") || !named("generated") {
        let dir = args
            .iter()
            .find(|a| a.as_str() != "corpus" && a.as_str() != "generated")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("TRIAGE_BENCH_CORPUS").map(PathBuf::from));
        match dir {
            Some(dir) => corpus(&dir),
            None => println!(
                "corpus: skipped (name a folder: TRIAGE_BENCH_CORPUS=DIR cargo bench --bench fingerprint)"
            ),
        }
    }
    if named("generated") || !named("corpus") {
        generated(1_000_000, 100_000);
    }
}

/// This thread's CPU time (user + system), where Linux reports it.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Wall and CPU time of `f`.
fn timed(f: impl FnOnce()) -> (Duration, Option<Duration>) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    f();
    let cpu = cpu.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    (wall.elapsed(), cpu)
}

fn rate(lines: usize, wall: Duration, cpu: Option<Duration>) -> String {
    let per = |d: Duration| lines as f64 / d.as_secs_f64().max(1e-9);
    match cpu {
        Some(cpu) => format!(
            "{:.0} lines/s on CPU time ({:.0} ns/line), {:.0} lines/s wall",
            per(cpu),
            cpu.as_nanos() as f64 / lines as f64,
            per(wall)
        ),
        None => format!("{:.0} lines/s wall", per(wall)),
    }
}

fn event(id: usize, service: &str, message: String) -> LogEvent {
    let mut e = LogEvent::from_value(
        serde_json::json!({"id": id.to_string(), "message": "x"}),
        || id.to_string(),
    )
    .expect("a minimal event");
    e.service = Some(service.to_string());
    e.message = message;
    e.attributes = Default::default();
    e
}

fn corpus(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("dev corpus: skipped ({} not found)", dir.display());
        return;
    };
    let mut systems: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    systems.sort();
    let mut events = Vec::new();
    for sys in systems {
        let name = sys
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let path = sys.join(format!("{name}_2k.log_structured_corrected.csv"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let rows = parse_csv(&text);
        let Some(col) = rows
            .first()
            .and_then(|h| h.iter().position(|c| c == "Content"))
        else {
            continue;
        };
        for row in rows.iter().skip(1) {
            if let Some(content) = row.get(col).filter(|c| !c.trim().is_empty()) {
                events.push(event(events.len(), &name.to_lowercase(), content.clone()));
            }
        }
    }
    if events.is_empty() {
        println!(
            "dev corpus: skipped (no *_2k.log_structured_corrected.csv under {})",
            dir.display()
        );
        return;
    }
    let rounds = 40;
    let mut templates = 0;
    let (wall, cpu) = timed(|| {
        for _ in 0..rounds {
            let mut miner = TemplateMiner::default();
            for e in &events {
                std::hint::black_box(miner.fingerprint(e));
            }
            templates = miner.len();
        }
    });
    println!(
        "dev corpus: {} lines x {rounds} rounds, a fresh miner each round, {templates} templates: {}",
        events.len(),
        rate(events.len() * rounds, wall, cpu)
    );
}

/// A tiny deterministic generator (xorshift), so the set is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn word(rng: &mut Rng) -> String {
    const SYL: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "pa", "qu", "do", "fe", "gi", "ho",
        "ju", "bar", "con", "dis", "ex", "fil", "gen", "han", "ser", "vol", "tim", "read", "writ",
        "sock", "node", "task", "lock",
    ];
    let n = 2 + rng.below(3);
    (0..n)
        .map(|_| SYL[rng.below(SYL.len() as u64) as usize])
        .collect()
}

enum Slot {
    Word(String),
    Number,
    Ip,
    HexId,
    HostPort,
}

fn generated(lines: usize, distinct: usize) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let templates: Vec<(String, Vec<Slot>)> = (0..distinct)
        .map(|i| {
            let len = 4 + rng.below(9) as usize;
            let slots = (0..len)
                .map(|p| match (p, rng.below(6)) {
                    (0 | 1, _) | (_, 0..=2) => Slot::Word(word(&mut rng)),
                    (_, 3) => Slot::Number,
                    (_, 4) => Slot::Ip,
                    _ => {
                        if rng.below(2) == 0 {
                            Slot::HexId
                        } else {
                            Slot::HostPort
                        }
                    }
                })
                .collect();
            (format!("svc{}", i % 20), slots)
        })
        .collect();
    let mut miner = TemplateMiner::default();
    let mut wall = Duration::ZERO;
    let mut cpu = Some(Duration::ZERO);
    // The first pass, where every line brings a new template, apart from the rest.
    let mut first = (Duration::ZERO, Some(Duration::ZERO));
    let chunk = 10_000;
    let mut done = 0;
    let mut buf = Vec::with_capacity(chunk);
    while done < lines {
        buf.clear();
        for i in 0..chunk.min(lines - done) {
            // Every template once in the first pass, then a skewed mix (hot templates recur).
            let t = if done + i < distinct {
                done + i
            } else if rng.below(4) == 0 {
                rng.below(distinct as u64) as usize
            } else {
                rng.below((distinct / 100) as u64) as usize
            };
            let (service, slots) = &templates[t];
            let mut msg = String::with_capacity(96);
            for (p, s) in slots.iter().enumerate() {
                if p > 0 {
                    msg.push(' ');
                }
                match s {
                    Slot::Word(w) => msg.push_str(w),
                    Slot::Number => msg.push_str(&rng.below(100_000).to_string()),
                    Slot::Ip => {
                        let v = rng.next();
                        msg.push_str(&format!(
                            "10.{}.{}.{}",
                            v & 255,
                            (v >> 8) & 255,
                            (v >> 16) & 255
                        ));
                    }
                    Slot::HexId => msg.push_str(&format!("0x{:x}", rng.next() >> 16)),
                    Slot::HostPort => msg.push_str(&format!(
                        "{}.example.com:{}",
                        word(&mut rng),
                        rng.below(65_536)
                    )),
                }
            }
            buf.push(event(done + i, service, msg));
        }
        let (w, c) = timed(|| {
            for e in &buf {
                std::hint::black_box(miner.fingerprint(e));
            }
        });
        wall += w;
        cpu = cpu.zip(c).map(|(a, b)| a + b);
        if done < distinct {
            first = (first.0 + w, first.1.zip(c).map(|(a, b)| a + b));
        }
        done += buf.len();
    }
    println!(
        "generated: {lines} lines from {distinct} distinct templates, {} templates kept (cap {}): {}",
        miner.len(),
        triage::grouping::MinerConfig::default().cap,
        rate(lines, wall, cpu)
    );
    let rest = lines - distinct;
    println!(
        "  of which the first {distinct} lines (each a new template): {}; the other {rest}: {}",
        rate(distinct, first.0, first.1),
        rate(
            rest,
            wall.saturating_sub(first.0),
            cpu.zip(first.1).map(|(a, b)| a.saturating_sub(b))
        )
    );
}

/// RFC 4180 rows: quoted fields may hold commas, doubled quotes and newlines.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}
