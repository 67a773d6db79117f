//! The command line, exactly as DESIGN.md fixes it: every flag, its environment name, its default.
//!
//! Parsing only: ranges that clap can check are checked here (so a bad value exits 2 with clap's
//! one-line message); everything that needs more than one value or the filesystem is checked in
//! `config`. Secrets are never flags: they are read from the environment by `config`, so they
//! cannot show up in `ps`, in shell history, or in `--help`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Environment (also read from ./.env; a flag beats the environment, which beats .env):
  DD_API_KEY, DD_APP_KEY        Datadog keys (DATADOG_API_KEY, DATADOG_APP_KEY, DD_APPLICATION_KEY too)
  DD_SITE, DD_API_URL           Datadog site, or a full API base URL that overrides it
  JIRA_URL, JIRA_PROJECT        Jira base URL and project key (JIRA_PROJECT_KEY too)
  JIRA_EMAIL + JIRA_API_TOKEN   Jira Cloud basic auth
  JIRA_PAT                      Jira Server / Data Center bearer token
  JIRA_ISSUE_TYPE               issue type (default Bug)
  JIRA_API_VERSION              3 (Cloud, default) or 2 (Server / Data Center)
  OPENAI_API_KEY, OPENAI_BASE_URL, TRIAGE_LLM_MODEL   the llm analyzer
Secret values are never printed.

Exit codes:
  0    done, every log processed
  1    fatal: configuration, authentication or source failure, or no input record could be read
  2    usage: a bad flag or value
  3    done, but some logs failed or some input records could not be read
  75   another run holds the state lock (try again later)
  130  interrupted (Ctrl-C / SIGTERM): in-flight logs finished, partial summary printed";

/// Turn Datadog error logs into exactly one Jira ticket per distinct problem.
#[derive(Debug, Clone, Parser)]
#[command(name = "triage", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Analyze and deduplicate, but write nothing to Jira (reads still happen when Jira is configured).
    #[arg(long)]
    pub dry_run: bool,

    /// Run the concurrent pipeline (without it, one log at a time).
    #[arg(long = "async", env = "ASYNC_ENABLED", value_parser = clap::builder::BoolishValueParser::new(),
          action = clap::ArgAction::SetTrue)]
    pub async_mode: bool,

    /// Logs in flight in async mode.
    #[arg(long, env = "ASYNC_MAX_WORKERS", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,

    /// Datadog page size.
    #[arg(long, env = "ASYNC_BATCH_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch_size: u16,

    /// Per-log deadline in seconds.
    #[arg(long = "timeout", value_name = "SECS", env = "ASYNC_TIMEOUT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,

    /// Outbound calls per second, per service.
    #[arg(long, env = "TRIAGE_RATE_LIMIT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate_limit: u32,

    /// Turn the rate limiter off.
    #[arg(long)]
    pub no_rate_limit: bool,

    /// `ASYNC_RATE_LIMITING=false` is the environment form of --no-rate-limit.
    #[arg(long, env = "ASYNC_RATE_LIMITING", hide = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub rate_limiting: Option<bool>,

    /// Datadog query.
    #[arg(long, env = "DD_QUERY", default_value = "status:error")]
    pub query: String,

    /// Start of the window: Datadog date math (now-15m) or RFC 3339. Default: where the last run
    /// stopped (with a small overlap), or now-15m on the first run.
    #[arg(long, value_name = "T")]
    pub from: Option<String>,

    /// End of the window: Datadog date math or RFC 3339. Default: now minus --ingest-delay.
    #[arg(long, value_name = "T")]
    pub to: Option<String>,

    /// How far behind now the window ends by default, since Datadog indexes logs late.
    #[arg(long, value_name = "DURATION", env = "TRIAGE_INGEST_DELAY", default_value = "60s",
          value_parser = parse_duration)]
    pub ingest_delay: std::time::Duration,

    /// Stop after N logs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Read logs from a file (a Datadog search response, a JSON array, or JSON Lines) or - for stdin.
    #[arg(long, value_name = "PATH|-")]
    pub input: Option<PathBuf>,

    /// Longest input line read, in bytes (a JSON Lines line longer than this is cut to it, and
    /// the summary counts it; a longer event inside a JSON document is skipped as unreadable).
    #[arg(long, value_name = "N", env = "TRIAGE_MAX_LINE_BYTES", default_value_t = 256 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub max_line_bytes: u64,

    /// Personal data to redact besides the secrets, which are always redacted (tokens, JWTs,
    /// passwords, keys, card numbers): a comma-separated list of `emails`, `ips`, `all`, or `none`.
    #[arg(long, value_name = "LIST", env = "TRIAGE_REDACT", default_value = "none",
          value_parser = crate::redact::Redactor::parse)]
    pub redact: crate::redact::Redactor,

    /// How each problem is analyzed.
    #[arg(long, env = "TRIAGE_ANALYZER", value_enum, default_value_t = AnalyzerKind::Rules)]
    pub analyzer: AnalyzerKind,

    /// Cap on tickets created in one run (0 = no cap).
    #[arg(
        long,
        value_name = "N",
        env = "MAX_TICKETS_PER_RUN",
        default_value_t = 0
    )]
    pub max_tickets: u64,

    /// The summary on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Write the full JSON report (every log, every ticket) to PATH.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// The state file: checkpoints, tickets, logs to retry, run history
    /// (default $XDG_STATE_HOME/triage/state.db, or ~/.local/state/triage/state.db).
    #[arg(long, value_name = "PATH", env = "TRIAGE_STATE")]
    pub state: Option<PathBuf>,

    /// Use no state: no checkpoint, no retry list, no run lock (throwaway runs); wins over
    /// --state and TRIAGE_STATE.
    #[arg(long)]
    pub no_state: bool,

    /// Runs a failed log is retried in before it is reported as given up.
    #[arg(
        long,
        value_name = "N",
        env = "TRIAGE_MAX_RETRIES",
        default_value_t = 3
    )]
    pub max_retries: u32,

    /// Least time between two recurrence comments on one ticket; occurrences in between are
    /// summed into the next comment.
    #[arg(long, value_name = "DURATION", env = "TRIAGE_COMMENT_COOLDOWN", default_value = "2h",
          value_parser = parse_duration)]
    pub comment_cooldown: std::time::Duration,

    /// Consecutive failures of a service (Jira, the LLM) that open its circuit breaker.
    #[arg(long, value_name = "K", env = "TRIAGE_BREAKER_THRESHOLD", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_threshold: u32,

    /// How long an open circuit breaker stops calls before it probes the service again.
    #[arg(long, value_name = "DURATION", env = "TRIAGE_BREAKER_COOLDOWN", default_value = "30s",
          value_parser = parse_duration)]
    pub breaker_cooldown: std::time::Duration,

    /// Write run metrics in Prometheus text format (node_exporter textfile collector) to PATH.
    #[arg(long, value_name = "PATH", env = "TRIAGE_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,

    /// Pretend the current time is T (RFC 3339): replays and tests.
    #[arg(long, value_name = "T", env = "TRIAGE_NOW", hide = true)]
    pub now: Option<String>,

    /// Less on stderr (no progress bar, warnings and errors only).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Datadog site (datadoghq.com, datadoghq.eu, us3.datadoghq.com, ...).
    #[arg(long, env = "DD_SITE", default_value = "datadoghq.com")]
    pub dd_site: String,

    /// Full Datadog API base URL; overrides --dd-site (proxies, tests).
    #[arg(long, env = "DD_API_URL")]
    pub dd_api_url: Option<String>,

    /// Jira base URL, e.g. https://acme.atlassian.net (a port and a context path are fine).
    #[arg(long, env = "JIRA_URL")]
    pub jira_url: Option<String>,

    /// Jira project key (JIRA_PROJECT_KEY is accepted too).
    #[arg(long, env = "JIRA_PROJECT")]
    pub jira_project: Option<String>,

    /// Jira issue type for new tickets.
    #[arg(long, env = "JIRA_ISSUE_TYPE", default_value = "Bug")]
    pub jira_issue_type: String,

    /// Jira REST API version: 3 (Cloud) or 2 (Server / Data Center).
    #[arg(long, env = "JIRA_API_VERSION", default_value = "3", value_parser = ["2", "3"])]
    pub jira_api_version: String,

    /// Jira Cloud account email (with JIRA_API_TOKEN from the environment).
    #[arg(long, env = "JIRA_EMAIL")]
    pub jira_email: Option<String>,

    /// When a problem's only ticket is Done, reopen it (transition back to an open status and
    /// comment) instead of filing a new ticket that names it as a recurrence.
    #[arg(long)]
    pub reopen: bool,

    /// Jira priority per severity, e.g. "critical=Highest,high=High,medium=Medium,low=Low"
    /// (defaults shown; Server/DC: Blocker, Critical, Major, Minor). An empty name sends none.
    #[arg(long, env = "JIRA_PRIORITY_MAP", value_name = "MAP")]
    pub priority_map: Option<String>,

    /// Model for the llm analyzer.
    #[arg(long, env = "TRIAGE_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,

    /// Base URL of an OpenAI-compatible API for the llm analyzer.
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    pub llm_base_url: String,
}

/// A duration: `90s`, `15m`, `2h`, `1d`, `250ms`, or plain seconds.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let s = raw.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration (e.g. 90s, 15m, 2h)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => {
            return Err(format!(
                "'{other}' is not a duration unit: use ms, s, m, h or d"
            ))
        }
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| format!("'{raw}' is out of range"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check each configured service (Datadog keys, Jira account and project, the LLM), print
    /// one line per service, and exit 0 only if every configured one passes.
    Check,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnalyzerKind {
    /// Built-in offline rules (deterministic).
    Rules,
    /// An OpenAI-compatible chat model, falling back to rules when it fails.
    Llm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("60").unwrap().as_secs(), 60);
        assert!(parse_duration("2 weeks").is_err());
    }
}
