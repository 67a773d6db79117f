//! Sample-data generator for `triage`: synthetic Datadog error logs, one per line (JSON Lines).
//!
//! ```text
//! cargo run --release --example gen_logs -- [--count N] [--seed S] [--malformed] > logs.jsonl
//! cargo run --release --example gen_logs -- --problems
//! triage --dry-run --input logs.jsonl
//! ```
//!
//! Every line is one Datadog Logs v2 event in exactly the shape the search API returns in `data[]`:
//!
//! ```text
//! {"id":"AQAAAZ...","type":"log","attributes":{"timestamp":"2026-11-23T09:00:01.123Z",
//!  "status":"error","service":"checkout","host":"checkout-7f9c-2","message":"...",
//!  "tags":["env:prod","service:checkout","version:1.4.2"],"attributes":{"error":{...},...}}}
//! ```
//!
//! The events come from a fixed set of problem templates (`--problems` lists them) spread over six
//! services and one service-less cron host. Within a template only maskable parts vary (numbers,
//! hex, UUIDs, IPs, emails, URLs, paths, quoted strings, timestamps, dates, durations, sizes and
//! `key=value` values), so a correct fingerprint puts every event of a template in one problem:
//!
//! * `db-connect-timeout-checkout` and `db-connect-timeout-inventory` have the same message text
//!   but different services: two problems.
//! * `idempotency-conflict` words its message differently each time but carries
//!   `error.fingerprint = "payments-idempotency-conflict"`: one problem.
//! * `backup-failed` has no `service` at all (and no `service:` tag).
//!
//! Frequencies are skewed (`upstream-503` is about 30%, then a long tail); when `--count` is at
//! least the number of problems, every problem appears at least once. Statuses are mostly `error`
//! (now and then `ERROR`), `critical` for the JVM heap and the full disk, `emergency` for the Go
//! panic. About 2% of events have no host and about 4% repeat a tag. Timestamps rise over the
//! 15 minutes from 2026-11-23T09:00:00Z, oldest first; ids are unique and base64url.
//!
//! Options:
//!
//! * `--count N`   number of events (default 300)
//! * `--seed S`    PRNG seed (default 42); the output is a pure function of seed and count
//! * `--malformed` also emit one extra broken line per block of 100 events (at a seeded place in
//!   the block), cycling through: an event without a message, a truncated JSON line, an event
//!   whose message is blank, a plain-text line, a JSON array. `--count 300` gets the first three,
//!   `--count 500` all five. The valid events are exactly those of the same run without the flag.
//! * `--problems`  print `{"problems": K, "names": [...], "templates": [...]}` instead of logs
//!
//! `examples/logs.jsonl` is `--count 300 --seed 42`. Only `std` and `serde_json` are used.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

/// 2026-11-23T09:00:00.000Z in epoch milliseconds: the start of the generated window.
const WINDOW_START_MS: i64 = 1_795_424_400_000;
/// Length of the window: 15 minutes.
const WINDOW_MS: u64 = 15 * 60 * 1000;
/// The attribute value the `idempotency-conflict` template carries as `error.fingerprint`.
const IDEMPOTENCY_FINGERPRINT: &str = "payments-idempotency-conflict";

/// Where a log comes from: the service (if any), its version tag and its hosts.
struct Origin {
    service: Option<&'static str>,
    version: &'static str,
    team: &'static str,
    hosts: &'static [&'static str],
}

const CHECKOUT: Origin = Origin {
    service: Some("checkout"),
    version: "1.4.2",
    team: "storefront",
    hosts: &[
        "checkout-7f9c-0",
        "checkout-7f9c-1",
        "checkout-7f9c-2",
        "checkout-7f9c-3",
    ],
};
const PAYMENTS: Origin = Origin {
    service: Some("payments"),
    version: "2.11.0",
    team: "payments",
    hosts: &["payments-5d8b-0", "payments-5d8b-1"],
};
const AUTH: Origin = Origin {
    service: Some("auth"),
    version: "3.2.7",
    team: "identity",
    hosts: &["auth-9c41-0", "auth-9c41-1", "auth-9c41-2"],
};
const INVENTORY: Origin = Origin {
    service: Some("inventory"),
    version: "0.9.14",
    team: "fulfilment",
    hosts: &["inventory-2e7a-0", "inventory-2e7a-1"],
};
const SEARCH: Origin = Origin {
    service: Some("search"),
    version: "5.3.1",
    team: "discovery",
    hosts: &["search-data-0", "search-data-1", "search-data-2"],
};
const NOTIFICATIONS: Origin = Origin {
    service: Some("notifications"),
    version: "1.0.8",
    team: "messaging",
    hosts: &["notifications-6b3f-0", "notifications-6b3f-1"],
};
const CRON: Origin = Origin {
    service: None,
    version: "",
    team: "platform",
    hosts: &["backup-runner-01"],
};

#[derive(Clone, Copy)]
enum Kind {
    Upstream503,
    DbConnectTimeout,
    PoolExhausted,
    IdempotencyConflict,
    JwtExpired,
    RedisTimeout,
    DiskFull,
    JavaOom,
    ConfigMissingKey,
    PythonKeyError,
    GoPanic,
    KafkaNotLeader,
    BackupFailed,
}

/// One distinct problem: a message template emitted by one origin.
struct Template {
    name: &'static str,
    kind: Kind,
    origin: &'static Origin,
    /// Base status; `error` is written as `ERROR` now and then.
    status: &'static str,
    /// Relative frequency, per mille of all events.
    weight: u64,
    /// The message with its variable parts shown as `<kind>` placeholders.
    pattern: &'static str,
}

static TEMPLATES: [Template; 14] = [
    Template {
        name: "upstream-503",
        kind: Kind::Upstream503,
        origin: &CHECKOUT,
        status: "error",
        weight: 300,
        pattern: "upstream request to <url> failed with status <num> after <duration>",
    },
    Template {
        name: "db-connect-timeout-checkout",
        kind: Kind::DbConnectTimeout,
        origin: &CHECKOUT,
        status: "error",
        weight: 110,
        pattern: "Connection to <ip>:<num> timed out after <duration>",
    },
    Template {
        name: "db-connect-timeout-inventory",
        kind: Kind::DbConnectTimeout,
        origin: &INVENTORY,
        status: "error",
        weight: 70,
        pattern: "Connection to <ip>:<num> timed out after <duration>",
    },
    Template {
        name: "pg-pool-exhausted",
        kind: Kind::PoolExhausted,
        origin: &PAYMENTS,
        status: "error",
        weight: 90,
        pattern: "could not obtain connection from pool after <duration> (pool=<v> active=<v> idle=<v>)",
    },
    Template {
        name: "idempotency-conflict",
        kind: Kind::IdempotencyConflict,
        origin: &PAYMENTS,
        status: "error",
        weight: 60,
        pattern: "<four differently worded messages>  [error.fingerprint=payments-idempotency-conflict]",
    },
    Template {
        name: "jwt-expired",
        kind: Kind::JwtExpired,
        origin: &AUTH,
        status: "error",
        weight: 80,
        pattern: "JWT validation failed for user <email>: token expired at <timestamp>",
    },
    Template {
        name: "redis-timeout",
        kind: Kind::RedisTimeout,
        origin: &AUTH,
        status: "error",
        weight: 60,
        pattern: "Redis command GET session:<uuid> timed out after <duration>",
    },
    Template {
        name: "disk-full",
        kind: Kind::DiskFull,
        origin: &SEARCH,
        status: "critical",
        weight: 50,
        pattern: "write <path>: no space left on device",
    },
    Template {
        name: "java-heap-oom",
        kind: Kind::JavaOom,
        origin: &SEARCH,
        status: "critical",
        weight: 40,
        pattern: "java.lang.OutOfMemoryError: Java heap space (heap used <size> of <size>)",
    },
    Template {
        name: "config-missing-key",
        kind: Kind::ConfigMissingKey,
        origin: &NOTIFICATIONS,
        status: "error",
        weight: 30,
        pattern: "failed to parse config file <path>: missing key <quoted>",
    },
    Template {
        name: "python-keyerror",
        kind: Kind::PythonKeyError,
        origin: &NOTIFICATIONS,
        status: "error",
        weight: 40,
        pattern: "KeyError: <quoted>",
    },
    Template {
        name: "go-nil-pointer-panic",
        kind: Kind::GoPanic,
        origin: &INVENTORY,
        status: "emergency",
        weight: 20,
        pattern: "panic: runtime error: invalid memory address or nil pointer dereference [signal SIGSEGV: segmentation violation code=<v> addr=<v> pc=<v>]",
    },
    Template {
        name: "kafka-not-leader",
        kind: Kind::KafkaNotLeader,
        origin: &CHECKOUT,
        status: "error",
        weight: 47,
        pattern: "Failed to send message to topic orders-events partition <num>: NOT_LEADER_FOR_PARTITION",
    },
    Template {
        name: "backup-failed",
        kind: Kind::BackupFailed,
        origin: &CRON,
        status: "error",
        weight: 3,
        pattern: "backup of database orders for <date> failed: pg_dump exited with status <num> after <duration>",
    },
];

/// splitmix64: tiny, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What to write (the pipeline bench builds one too, to write this generator's logs).
pub(crate) struct Options {
    pub(crate) count: u64,
    pub(crate) seed: u64,
    pub(crate) malformed: bool,
    pub(crate) problems: bool,
}

const USAGE: &str =
    "usage: gen_logs [--count N] [--seed S] [--malformed] [--problems]  (JSON Lines on stdout)";

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        count: 300,
        seed: 42,
        malformed: false,
        problems: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--count" | "--seed" => {
                let value = inline
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))?;
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("{flag}: not a non-negative integer: {value:?}"))?;
                if flag == "--count" {
                    opts.count = n;
                } else {
                    opts.seed = n;
                }
            }
            "--malformed" => opts.malformed = true,
            "--problems" => opts.problems = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gen_logs: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = if opts.problems {
        write_problems(&mut out)
    } else {
        generate(&opts, &mut out)
    }
    .and_then(|()| out.flush());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_logs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_problems(out: &mut impl Write) -> io::Result<()> {
    let templates: Vec<serde_json::Value> = TEMPLATES
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "service": t.origin.service,
                "status": t.status,
                "weight_per_mille": t.weight,
                "pattern": t.pattern,
            })
        })
        .collect();
    let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
    let doc = serde_json::json!({
        "problems": TEMPLATES.len(),
        "names": names,
        "templates": templates,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    out.write_all(b"\n")
}

pub(crate) fn generate(opts: &Options, out: &mut impl Write) -> io::Result<()> {
    let k = TEMPLATES.len() as u64;
    let total_weight: u64 = TEMPLATES.iter().map(|t| t.weight).sum();
    // Coverage: when there is room, event `stride * j + stride / 2` is forced to template `j`.
    let stride = if opts.count >= k { opts.count / k } else { 0 };
    let mut rng = Rng::new(opts.seed);
    // `--malformed`: one broken line per block of 100 events, at a seeded position, cycling
    // through the variants. A separate stream, so the valid events stay exactly the same.
    let mut bad = Rng::new(opts.seed ^ 0x6D61_6C66_6F72_6D65);
    let mut bad_at = 0;
    let mut buf = Buffers::default();
    for i in 0..opts.count {
        if i % 100 == 0 {
            bad_at = i + bad.below(100);
        }
        let ts = timestamp_ms(i, opts.count, &mut rng);
        let pick = rng.below(total_weight);
        let index = if stride > 0 && i % stride == stride / 2 && i / stride < k {
            (i / stride) as usize
        } else {
            weighted(pick)
        };
        let template = &TEMPLATES[index];
        if opts.malformed && i == bad_at {
            buf.line.clear();
            write_malformed(&mut buf.line, i / 100 % 5, opts.seed, i, ts);
            out.write_all(buf.line.as_bytes())?;
        }
        buf.line.clear();
        write_event(&mut buf, &mut rng, template, opts.seed, i, ts);
        out.write_all(buf.line.as_bytes())?;
    }
    Ok(())
}

fn weighted(mut pick: u64) -> usize {
    for (i, t) in TEMPLATES.iter().enumerate() {
        if pick < t.weight {
            return i;
        }
        pick -= t.weight;
    }
    TEMPLATES.len() - 1
}

/// Event `i` of `count` lands in its own slice of the window: timestamps never go backwards.
fn timestamp_ms(i: u64, count: u64, rng: &mut Rng) -> i64 {
    let lo = i * WINDOW_MS / count;
    let hi = (i + 1) * WINDOW_MS / count;
    let offset = lo + rng.below((hi - lo).max(1));
    WINDOW_START_MS + offset as i64
}

/// Reused for every event: no allocation per line once they have grown.
#[derive(Default)]
struct Buffers {
    line: String,
    message: String,
    attrs: String,
    scratch: String,
}

fn write_event(b: &mut Buffers, rng: &mut Rng, t: &Template, seed: u64, i: u64, ts: i64) {
    let origin = t.origin;
    let status = if t.status == "error" && rng.chance(60) {
        "ERROR"
    } else {
        t.status
    };
    let host = if rng.chance(20) {
        None
    } else {
        Some(rng.pick(origin.hosts))
    };
    let duplicate_tag = rng.chance(40);
    b.message.clear();
    b.attrs.clear();
    b.scratch.clear();
    render(t.kind, rng, ts, b);

    let line = &mut b.line;
    line.push_str("{\"id\":\"");
    write_id(line, seed, i, ts, 0);
    line.push_str("\",\"type\":\"log\",\"attributes\":{\"timestamp\":\"");
    write_rfc3339_millis(line, ts);
    let _ = write!(line, "\",\"status\":\"{status}\"");
    if let Some(service) = origin.service {
        let _ = write!(line, ",\"service\":\"{service}\"");
    }
    if let Some(host) = host {
        let _ = write!(line, ",\"host\":\"{host}\"");
    }
    line.push_str(",\"message\":");
    push_json_str(line, &b.message);
    line.push_str(",\"tags\":[\"env:prod\"");
    match origin.service {
        Some(service) => {
            let _ = write!(
                line,
                ",\"service:{service}\",\"version:{}\",\"team:{}\"",
                origin.version, origin.team
            );
        }
        None => {
            let _ = write!(line, ",\"source:cron\",\"team:{}\"", origin.team);
        }
    }
    if duplicate_tag {
        line.push_str(",\"env:prod\"");
    }
    line.push_str("],\"attributes\":{");
    line.push_str(&b.attrs);
    if origin.service.is_some() {
        let trace = rng.next_u64() >> 1;
        let span = rng.next_u64() >> 1;
        let _ = write!(
            line,
            ",\"dd\":{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"}}"
        );
    }
    line.push_str("}}}\n");
}

/// Writes the message into `b.message` and the custom attribute members (no braces) into
/// `b.attrs`. Only maskable parts vary, except in `IdempotencyConflict`.
fn render(kind: Kind, rng: &mut Rng, ts: i64, b: &mut Buffers) {
    let (msg, attrs, scratch) = (&mut b.message, &mut b.attrs, &mut b.scratch);
    match kind {
        Kind::Upstream503 => {
            let order = rng.range(10_000, 99_999);
            let status = rng.pick(&[503u16, 503, 503, 503, 502, 504]);
            let ms = rng.range(180, 5_000);
            let _ = write!(
                msg,
                "upstream request to http://payments.internal:8080/v1/charges?order_id={order} \
                 failed with status {status} after {ms}ms"
            );
            let _ = write!(
                attrs,
                "\"http\":{{\"method\":\"POST\",\"url\":\"/api/v2/checkout\",\"status_code\":502}},\
                 \"duration\":{},\"error\":{{\"kind\":\"UpstreamError\",\"message\":",
                ms * 1_000_000
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::DbConnectTimeout => {
            let _ = write!(scratch, "10.0.{}.{}", rng.range(0, 15), rng.range(2, 250));
            let ms = rng.pick(&[3000u16, 3000, 3000, 3001, 3002, 3004, 3010]);
            let _ = write!(msg, "Connection to {scratch}:5432 timed out after {ms}ms");
            let _ = write!(
                attrs,
                "\"db\":{{\"system\":\"postgresql\",\"name\":\"orders\"}},\
                 \"network\":{{\"destination\":{{\"ip\":\"{scratch}\",\"port\":5432}}}},\
                 \"error\":{{\"kind\":\"ConnectTimeoutError\",\"message\":"
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::PoolExhausted => {
            let ms = rng.pick(&[5000u16, 5000, 5000, 5001, 5003, 5012]);
            let pool = rng.pick(&["orders", "orders", "ledger", "refunds"]);
            let active = rng.range(18, 20);
            let idle = rng.pick(&[0u8, 0, 0, 1]);
            let _ = write!(
                msg,
                "could not obtain connection from pool after {ms}ms \
                 (pool={pool} active={active} idle={idle})"
            );
            let _ = write!(
                attrs,
                "\"db\":{{\"system\":\"postgresql\",\"pool\":{{\"name\":\"{pool}\",\
                 \"active\":{active},\"idle\":{idle}}}}},\
                 \"error\":{{\"kind\":\"java.sql.SQLTransientConnectionException\",\"message\":"
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::IdempotencyConflict => {
            write_uuid(scratch, rng);
            match rng.below(4) {
                0 => {
                    let _ = write!(
                        msg,
                        "Idempotency key {scratch} reused with a different request body"
                    );
                }
                1 => {
                    msg.push_str("Rejected charge: idempotency key already used for another amount")
                }
                2 => {
                    let _ = write!(
                        msg,
                        "Conflict on idempotent replay, original request {scratch} still in progress"
                    );
                }
                _ => {
                    let _ = write!(
                        msg,
                        "Duplicate Idempotency-Key header with mismatched payload for merchant {}",
                        rng.range(1_000, 9_999)
                    );
                }
            }
            let _ = write!(
                attrs,
                "\"http\":{{\"method\":\"POST\",\"url\":\"/v1/charges\",\"status_code\":409}},\
                 \"idempotency_key\":\"{scratch}\",\
                 \"error\":{{\"kind\":\"IdempotencyConflictException\",\
                 \"fingerprint\":\"{IDEMPOTENCY_FINGERPRINT}\",\"message\":"
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::JwtExpired => {
            let user = rng.pick(&[
                "alice",
                "bob.smith",
                "carol",
                "dave.jones",
                "erin",
                "frank.m",
                "grace_h",
                "heidi",
            ]);
            let domain = rng.pick(&["example.com", "example.com", "acme.io", "mail.example.org"]);
            if rng.chance(250) {
                let _ = write!(scratch, "user{}@{domain}", rng.range(100, 99_999));
            } else {
                let _ = write!(scratch, "{user}@{domain}");
            }
            let expired = ts - rng.range(1, 5_400) as i64 * 1000;
            let _ = write!(
                msg,
                "JWT validation failed for user {scratch}: token expired at "
            );
            write_rfc3339_secs(msg, expired);
            let _ = write!(
                attrs,
                "\"http\":{{\"method\":\"GET\",\"url\":\"/oauth/userinfo\",\"status_code\":401}},\
                 \"usr\":{{\"email\":\"{scratch}\"}},\
                 \"error\":{{\"kind\":\"TokenExpiredError\",\"message\":"
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::RedisTimeout => {
            write_uuid(scratch, rng);
            let ms = rng.range(250, 262);
            let _ = write!(
                msg,
                "Redis command GET session:{scratch} timed out after {ms}ms"
            );
            let _ = write!(
                attrs,
                "\"db\":{{\"system\":\"redis\",\"operation\":\"GET\"}},\"duration\":{},\
                 \"error\":{{\"kind\":\"TimeoutError\",\"message\":",
                ms * 1_000_000
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::DiskFull => {
            let index = rng.pick(&["products", "products", "orders"]);
            let segment = rng.range(1, 9_999);
            let _ = write!(
                msg,
                "write /var/lib/search/index/{index}/segment_{segment}.dat: no space left on device"
            );
            let _ = write!(
                attrs,
                "\"disk\":{{\"mount\":\"/var/lib/search\",\"used_pct\":100}},\
                 \"error\":{{\"kind\":\"IOError\",\"message\":"
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::JavaOom => {
            let tenths = rng.range(37, 40);
            let _ = write!(
                msg,
                "java.lang.OutOfMemoryError: Java heap space (heap used {}.{}GB of 4GB)",
                tenths / 10,
                tenths % 10
            );
            let _ = write!(
                attrs,
                "\"logger\":{{\"name\":\"org.apache.lucene.index.IndexWriter\",\
                 \"thread_name\":\"search-indexer-{}\"}},\
                 \"jvm\":{{\"heap_max_bytes\":4294967296}},\
                 \"error\":{{\"kind\":\"java.lang.OutOfMemoryError\",\
                 \"message\":\"Java heap space\",\"stack\":\"java.lang.OutOfMemoryError: \
                 Java heap space\\n\\tat java.base/java.util.Arrays.copyOf(Arrays.java:3512)\
                 \\n\\tat org.apache.lucene.util.ArrayUtil.growExact(ArrayUtil.java:323)\
                 \\n\\tat org.apache.lucene.index.IndexWriter.flush(IndexWriter.java:{})\"}}",
                rng.range(1, 8),
                rng.pick(&[3987u16, 4012, 4130])
            );
        }
        Kind::ConfigMissingKey => {
            let path = rng.pick(&[
                "/etc/notify/config.yaml",
                "/etc/notify/config.yaml",
                "/etc/notify/conf.d/smtp.yaml",
                "/etc/notify/conf.d/templates.yaml",
            ]);
            let key = rng.pick(&["smtp_host", "smtp_host", "smtp_port", "from_address"]);
            let _ = write!(
                msg,
                "failed to parse config file {path}: missing key \"{key}\""
            );
            attrs.push_str(
                "\"logger\":{\"name\":\"notify.config\"},\
                 \"error\":{\"kind\":\"ConfigError\",\"message\":",
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::PythonKeyError => {
            let key = rng.pick(&["user_id", "user_id", "template_id", "locale", "recipient"]);
            let _ = write!(msg, "KeyError: '{key}'");
            let line = rng.pick(&[212u16, 212, 219]);
            let _ = write!(
                attrs,
                "\"logger\":{{\"name\":\"notify.worker\",\"thread_name\":\"MainThread\"}},\
                 \"error\":{{\"kind\":\"KeyError\",\"message\":\"'{key}'\",\
                 \"stack\":\"Traceback (most recent call last):\\n  \
                 File \\\"/app/notify/worker.py\\\", line {line}, in handle\\n    \
                 ctx = build_context(payload)\\n  \
                 File \\\"/app/notify/render.py\\\", line 48, in build_context\\n    \
                 return {{\\\"to\\\": payload['{key}']}}\\nKeyError: '{key}'\"}}"
            );
        }
        Kind::GoPanic => {
            let addr = rng.pick(&[0x0u32, 0x8, 0x18, 0x18, 0x20, 0x30]);
            let pc = rng.range(0x4a_0000, 0x4a_ffff);
            let _ = write!(
                msg,
                "panic: runtime error: invalid memory address or nil pointer dereference \
                 [signal SIGSEGV: segmentation violation code=0x1 addr={addr:#x} pc={pc:#x}]"
            );
            let _ = write!(
                attrs,
                "\"error\":{{\"kind\":\"runtime.Error\",\"message\":\"invalid memory address or nil \
                 pointer dereference\",\"stack\":\"goroutine {} [running]:\\n\
                 github.com/acme/inventory/internal/reserve.(*Service).Reserve(0x0, {{0xc000{:04x}, 0x24}})\
                 \\n\\t/src/internal/reserve/service.go:88 +0x{:x}\\nmain.main()\
                 \\n\\t/src/cmd/inventory/main.go:57 +0x1d4\"}}",
                rng.range(1, 4_000),
                rng.below(0x1_0000),
                pc & 0xfff
            );
        }
        Kind::KafkaNotLeader => {
            let partition = rng.range(0, 11);
            let _ = write!(
                msg,
                "Failed to send message to topic orders-events partition {partition}: \
                 NOT_LEADER_FOR_PARTITION"
            );
            let _ = write!(
                attrs,
                "\"messaging\":{{\"system\":\"kafka\",\"destination\":\"orders-events\",\
                 \"partition\":{partition}}},\
                 \"error\":{{\"kind\":\"org.apache.kafka.common.errors.NotLeaderOrFollowerException\",\
                 \"message\":"
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
        Kind::BackupFailed => {
            let day_ms = 86_400_000;
            let day = ts - day_ms * (1 + rng.below(3) as i64);
            let deciseconds = rng.range(3_000, 36_000);
            msg.push_str("backup of database orders for ");
            write_date(msg, day);
            let _ = write!(
                msg,
                " failed: pg_dump exited with status 137 after {}.{}s",
                deciseconds / 10,
                deciseconds % 10
            );
            attrs.push_str(
                "\"job\":{\"name\":\"nightly-db-backup\",\"exit_code\":137},\
                 \"error\":{\"kind\":\"BackupError\",\"message\":",
            );
            push_json_str(attrs, msg);
            attrs.push('}');
        }
    }
}

/// Extra broken lines for `--malformed`, by variant: 0 no message, 1 truncated JSON, 2 blank
/// message, 3 plain text, 4 a JSON value that is not an object. Their ids never clash with real ones.
fn write_malformed(line: &mut String, variant: u64, seed: u64, i: u64, ts: i64) {
    match variant {
        0 | 2 => {
            line.push_str("{\"id\":\"");
            write_id(line, seed, i, ts, 1);
            line.push_str("\",\"type\":\"log\",\"attributes\":{\"timestamp\":\"");
            write_rfc3339_millis(line, ts);
            line.push_str(
                "\",\"status\":\"error\",\"service\":\"inventory\",\"host\":\"inventory-2e7a-0\",",
            );
            if variant == 2 {
                line.push_str("\"message\":\"   \",");
            }
            line.push_str(
                "\"tags\":[\"env:prod\",\"service:inventory\"],\"attributes\":{\"error\":{\"kind\":\"Unknown\"}}}}\n",
            );
        }
        1 => {
            // Cut off mid-string, as by a crashed shipper.
            line.push_str("{\"id\":\"");
            write_id(line, seed, i, ts, 1);
            line.push_str("\",\"type\":\"log\",\"attributes\":{\"timestamp\":\"");
            write_rfc3339_millis(line, ts);
            line.push_str(
                "\",\"status\":\"error\",\"service\":\"checkout\",\"message\":\"upstream request to http://paym\n",
            );
        }
        3 => {
            line.push_str("--- log shipper restarted at ");
            write_rfc3339_millis(line, ts);
            line.push_str(" ---\n");
        }
        _ => line.push_str("[\"not\",\"an\",\"object\"]\n"),
    }
}

/// A Datadog-looking id: 33 bytes (0x01, flavour, 0x00, 6-byte epoch ms, hash, index, hash)
/// in unpadded base64url, 44 characters. Unique per (flavour, index) and stable for a seed.
fn write_id(out: &mut String, seed: u64, i: u64, ts: i64, flavour: u8) {
    let h1 = mix64(seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407) ^ u64::from(flavour) << 56);
    let h2 = mix64(h1 ^ 0x9FB2_1C65_1E98_DF25);
    let mut bytes = [0u8; 33];
    bytes[0] = 0x01;
    bytes[1] = flavour;
    bytes[3..9].copy_from_slice(&(ts as u64).to_be_bytes()[2..]);
    bytes[9..17].copy_from_slice(&h1.to_be_bytes());
    bytes[17..21].copy_from_slice(&((i >> 32) as u32).to_be_bytes());
    bytes[21..25].copy_from_slice(&(i as u32).to_be_bytes());
    bytes[25..33].copy_from_slice(&h2.to_be_bytes());
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in bytes.chunks(3) {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
        }
    }
}

fn write_uuid(out: &mut String, rng: &mut Rng) {
    let a = rng.next_u64();
    let b = rng.next_u64();
    let _ = write!(
        out,
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_date(out: &mut String, ms: i64) {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

fn write_time(out: &mut String, ms: i64) {
    let in_day = ms.rem_euclid(86_400_000) / 1000;
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    );
}

/// `2026-11-23T09:00:01.123Z`
fn write_rfc3339_millis(out: &mut String, ms: i64) {
    write_date(out, ms);
    write_time(out, ms);
    let _ = write!(out, ".{:03}Z", ms.rem_euclid(1000));
}

/// `2026-11-23T08:59:00Z`
fn write_rfc3339_secs(out: &mut String, ms: i64) {
    write_date(out, ms);
    write_time(out, ms);
    out.push('Z');
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
