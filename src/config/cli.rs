//! The command line, exactly as DESIGN.md fixes it: every flag, its environment name, its default.
//!
//! Parsing only: ranges that clap can check are checked here (so a bad value exits 2 with clap's
//! one-line message); everything that needs more than one value or the filesystem is checked in
//! `config`. Secrets are never flags: they are read from the environment by `config`, so they
//! cannot show up in `ps`, in shell history, or in `--help`.
//!
//! build.rs includes this file too, to write the man page and shell completions: it may use
//! only clap, clap_complete, `super::VERSION` and `crate::redact::Redactor::parse`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Environment (also read from ./.env, or the file --env-file names; a flag beats the
environment, which beats .env, which beats the config file; an empty value counts as not set):
  DD_API_KEY, DD_APP_KEY        Datadog keys (DATADOG_API_KEY, DATADOG_APP_KEY, DD_APPLICATION_KEY too)
  DD_SITE, DD_API_URL           Datadog site, or a full API base URL that overrides it
  JIRA_URL, JIRA_PROJECT        Jira base URL and project key (JIRA_PROJECT_KEY too)
  JIRA_EMAIL + JIRA_API_TOKEN   Jira Cloud basic auth
  JIRA_PAT                      Jira Server / Data Center bearer token
  JIRA_ISSUE_TYPE               issue type (default Bug)
  JIRA_API_VERSION              3 (Cloud, default) or 2 (Server / Data Center)
  OPENAI_API_KEY, OPENAI_BASE_URL, TRIAGE_LLM_MODEL   the llm analyzer
  TRIAGE_CONFIG                 the config file (default ./triage.toml, else $XDG_CONFIG_HOME/triage/triage.toml)
  NO_COLOR                      any value: no colour on stderr (unless --color always)
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
#[command(name = "triage", version = super::VERSION, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Analyze and deduplicate, but write nothing to Jira (reads still happen when Jira is configured).
    #[arg(long, global = true, help_heading = "Jira")]
    pub dry_run: bool,

    /// Run the concurrent pipeline (without it, one log at a time).
    #[arg(long = "async", env = "ASYNC_ENABLED", value_parser = parse_bool,
          action = clap::ArgAction::SetTrue, global = true, help_heading = "Pipeline")]
    pub async_mode: bool,

    /// Logs in flight in async mode.
    #[arg(long, env = "ASYNC_MAX_WORKERS", default_value_t = 5,
          value_parser = whole_number::<u16>(1, 256), global = true, help_heading = "Pipeline")]
    pub workers: u16,

    /// Datadog page size.
    #[arg(long, env = "ASYNC_BATCH_SIZE", default_value_t = 1000,
          value_parser = whole_number::<u16>(1, 1000), global = true, help_heading = "Input")]
    pub batch_size: u16,

    /// Per-log deadline in seconds.
    #[arg(long = "timeout", value_name = "SECS", env = "ASYNC_TIMEOUT_SECONDS", default_value_t = 60,
          value_parser = whole_number::<u64>(1, 86_400), global = true, help_heading = "Pipeline")]
    pub timeout_secs: u64,

    /// Outbound calls per second, per service.
    #[arg(long, env = "TRIAGE_RATE_LIMIT", default_value_t = 20,
          value_parser = whole_number::<u32>(1, 10_000), global = true, help_heading = "Pipeline")]
    pub rate_limit: u32,

    /// Turn the rate limiter off.
    #[arg(long, global = true, help_heading = "Pipeline")]
    pub no_rate_limit: bool,

    /// `ASYNC_RATE_LIMITING=false` is the environment form of --no-rate-limit.
    #[arg(long, env = "ASYNC_RATE_LIMITING", hide = true,
          value_parser = parse_bool, global = true, help_heading = "Pipeline")]
    pub rate_limiting: Option<bool>,

    /// Datadog query.
    #[arg(
        long,
        env = "DD_QUERY",
        default_value = "status:error",
        global = true,
        help_heading = "Input"
    )]
    pub query: String,

    /// Start of the window: Datadog date math (now-15m) or RFC 3339. Default: where the last run
    /// stopped (with a small overlap), or now-15m on the first run.
    #[arg(long, value_name = "T", global = true, help_heading = "Input")]
    pub from: Option<String>,

    /// End of the window: Datadog date math or RFC 3339. Default: now minus --ingest-delay.
    #[arg(long, value_name = "T", global = true, help_heading = "Input")]
    pub to: Option<String>,

    /// How far behind now the window ends by default, since Datadog indexes logs late.
    #[arg(long, value_name = "DURATION", env = "TRIAGE_INGEST_DELAY", default_value = "60s",
          value_parser = parse_duration, global = true, help_heading = "Input")]
    pub ingest_delay: std::time::Duration,

    /// Stop after N logs.
    #[arg(long, value_name = "N", value_parser = whole_number::<u64>(1, u64::MAX), global = true, help_heading = "Input")]
    pub limit: Option<u64>,

    /// Read logs from a file (a Datadog search response, a JSON array, or JSON Lines) or - for stdin.
    #[arg(long, value_name = "PATH|-", global = true, help_heading = "Input")]
    pub input: Option<PathBuf>,

    /// Longest input line read, in bytes (a JSON Lines line longer than this is cut to it, and
    /// the summary counts it; a longer event inside a JSON document is skipped as unreadable).
    #[arg(long, value_name = "N", env = "TRIAGE_MAX_LINE_BYTES", default_value_t = 256 * 1024,
          value_parser = whole_number::<u64>(1024, 1 << 30), global = true, help_heading = "Input")]
    pub max_line_bytes: u64,

    /// Personal data to redact besides the secrets, which are always redacted (tokens, JWTs,
    /// passwords, keys, card numbers): a comma-separated list of `emails`, `ips`, `all`, or `none`.
    #[arg(long, value_name = "LIST", env = "TRIAGE_REDACT", default_value = "none",
          value_parser = crate::redact::Redactor::parse, global = true, help_heading = "Input")]
    pub redact: crate::redact::Redactor,

    /// How each problem is analyzed.
    #[arg(long, env = "TRIAGE_ANALYZER", value_enum, default_value_t = AnalyzerKind::Rules, global = true, help_heading = "Pipeline")]
    pub analyzer: AnalyzerKind,

    /// Cap on tickets created in one run (0 = no cap).
    #[arg(
        long,
        value_name = "N",
        env = "MAX_TICKETS_PER_RUN",
        default_value_t = 0, value_parser = whole_number::<u64>(0, u64::MAX), global = true, help_heading = "Jira")]
    pub max_tickets: u64,

    /// The summary on stdout (for `status` and `templates`: what they list); markdown (a
    /// table for a CI job's summary page) is for the run only.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true, help_heading = "Output")]
    pub output: OutputFormat,

    /// Write the full JSON report (every log, every ticket) to PATH.
    #[arg(long, value_name = "PATH", global = true, help_heading = "Output")]
    pub report: Option<PathBuf>,

    /// The state file: checkpoints, tickets, logs to retry, run history
    /// (default $XDG_STATE_HOME/triage/state.db, or ~/.local/state/triage/state.db);
    /// a postgres://user:password@host/db URL shares one state between runners on several
    /// hosts (docs/scale.md).
    #[arg(
        long,
        value_name = "PATH",
        env = "TRIAGE_STATE",
        global = true,
        help_heading = "State"
    )]
    pub state: Option<PathBuf>,

    /// Use no state: no checkpoint, no retry list, no run lock (throwaway runs); wins over
    /// --state and TRIAGE_STATE.
    #[arg(long, global = true, help_heading = "State")]
    pub no_state: bool,

    /// Runs a failed log is retried in before it is reported as given up.
    #[arg(
        long,
        value_name = "N",
        env = "TRIAGE_MAX_RETRIES",
        default_value_t = 3, value_parser = whole_number::<u32>(0, u64::from(u32::MAX)), global = true, help_heading = "State")]
    pub max_retries: u32,

    /// Least time between two recurrence comments on one ticket; occurrences in between are
    /// summed into the next comment.
    #[arg(long, value_name = "DURATION", env = "TRIAGE_COMMENT_COOLDOWN", default_value = "2h",
          value_parser = parse_duration, global = true, help_heading = "Jira")]
    pub comment_cooldown: std::time::Duration,

    /// How long after a create Jira's search may still not show the new ticket. A create whose
    /// answer was lost (a timeout, a 5xx, an unreadable 201) is taken as probably made: its
    /// label is searched for this long before the create is sent again.
    #[arg(long, value_name = "DURATION", env = "TRIAGE_JIRA_SEARCH_LAG", default_value = "15s",
          value_parser = parse_duration, global = true, help_heading = "Jira")]
    pub jira_search_lag: std::time::Duration,

    /// After Ctrl-C or SIGTERM: how long calls in flight may take to finish before the run
    /// stops them and exits 130 (a second signal ends the run at once).
    #[arg(long, value_name = "DURATION", env = "TRIAGE_SHUTDOWN_GRACE", default_value = "10s",
          value_parser = parse_duration, global = true, help_heading = "Pipeline")]
    pub shutdown_grace: std::time::Duration,

    /// Consecutive failures of a service (Jira, the LLM) that open its circuit breaker.
    #[arg(long, value_name = "K", env = "TRIAGE_BREAKER_THRESHOLD", default_value_t = 5,
          value_parser = whole_number::<u32>(1, u64::from(u32::MAX)), global = true, help_heading = "Pipeline")]
    pub breaker_threshold: u32,

    /// How long an open circuit breaker stops calls before it probes the service again.
    #[arg(long, value_name = "DURATION", env = "TRIAGE_BREAKER_COOLDOWN", default_value = "30s",
          value_parser = parse_duration, global = true, help_heading = "Pipeline")]
    pub breaker_cooldown: std::time::Duration,

    /// Write run metrics in Prometheus text format (node_exporter textfile collector) to PATH.
    #[arg(
        long,
        value_name = "PATH",
        env = "TRIAGE_METRICS_FILE",
        global = true,
        help_heading = "Output"
    )]
    pub metrics_file: Option<PathBuf>,

    /// Pretend the current time is T (RFC 3339): replays and tests.
    #[arg(
        long,
        value_name = "T",
        env = "TRIAGE_NOW",
        hide = true,
        global = true,
        help_heading = "Input"
    )]
    pub now: Option<String>,

    /// Less on stderr (no progress bar, warnings and errors only).
    #[arg(
        short,
        long,
        conflicts_with = "verbose",
        global = true,
        help_heading = "Output"
    )]
    pub quiet: bool,

    /// More on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Output")]
    pub verbose: u8,

    /// Datadog site (datadoghq.com, datadoghq.eu, us3.datadoghq.com, ...).
    #[arg(
        long,
        env = "DD_SITE",
        default_value = "datadoghq.com",
        global = true,
        help_heading = "Input"
    )]
    pub dd_site: String,

    /// Full Datadog API base URL; overrides --dd-site (proxies, tests).
    #[arg(long, env = "DD_API_URL", global = true, help_heading = "Input")]
    pub dd_api_url: Option<String>,

    /// Jira base URL, e.g. `https://acme.atlassian.net` (a port and a context path are fine).
    #[arg(long, env = "JIRA_URL", global = true, help_heading = "Jira")]
    pub jira_url: Option<String>,

    /// Jira project key (JIRA_PROJECT_KEY is accepted too).
    #[arg(long, env = "JIRA_PROJECT", global = true, help_heading = "Jira")]
    pub jira_project: Option<String>,

    /// Jira issue type for new tickets.
    #[arg(
        long,
        env = "JIRA_ISSUE_TYPE",
        default_value = "Bug",
        global = true,
        help_heading = "Jira"
    )]
    pub jira_issue_type: String,

    /// Jira REST API version: 3 (Cloud) or 2 (Server / Data Center).
    #[arg(long, env = "JIRA_API_VERSION", default_value = "3", value_parser = ["2", "3"], global = true, help_heading = "Jira")]
    pub jira_api_version: String,

    /// Jira Cloud account email (with JIRA_API_TOKEN from the environment).
    #[arg(long, env = "JIRA_EMAIL", global = true, help_heading = "Jira")]
    pub jira_email: Option<String>,

    /// When a problem's only ticket is Done, reopen it (transition back to an open status and
    /// comment) instead of filing a new ticket that names it as a recurrence.
    #[arg(long, global = true, help_heading = "Jira")]
    pub reopen: bool,

    /// Jira priority per severity, e.g. "critical=Highest,high=High,medium=Medium,low=Low"
    /// (defaults shown; Server/DC: Blocker, Critical, Major, Minor). An empty name sends none.
    #[arg(
        long,
        env = "JIRA_PRIORITY_MAP",
        value_name = "MAP",
        global = true,
        help_heading = "Jira"
    )]
    pub priority_map: Option<String>,

    /// Colour on stderr: auto (only on a terminal, and not when NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN",
          global = true, help_heading = "Output")]
    pub color: ColorChoice,

    /// Read settings from this file instead of ./.env (the environment still wins over it).
    #[arg(long, value_name = "PATH", global = true, help_heading = "Settings")]
    pub env_file: Option<PathBuf>,

    /// The config file: settings under their flags' long names, and the `[[route]]` rules
    /// (default ./triage.toml, else $XDG_CONFIG_HOME/triage/triage.toml). Flags, the
    /// environment and .env win over it.
    #[arg(
        long,
        value_name = "PATH",
        env = "TRIAGE_CONFIG",
        global = true,
        help_heading = "Settings"
    )]
    pub config: Option<PathBuf>,

    /// Model for the llm analyzer.
    #[arg(
        long,
        env = "TRIAGE_LLM_MODEL",
        default_value = "gpt-4o-mini",
        global = true,
        help_heading = "Pipeline"
    )]
    pub llm_model: String,

    /// Base URL of an OpenAI-compatible API for the llm analyzer.
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1",
        global = true,
        help_heading = "Pipeline"
    )]
    pub llm_base_url: String,
}

/// The headings of `--help`, in the order a reader goes through a run.
pub const HEADINGS: &[&str] = &["Settings", "Input", "Pipeline", "Jira", "State", "Output"];

/// The command line as clap shows and parses it: `Cli`'s definition with the options grouped
/// under [`HEADINGS`] in that order (clap orders headings by their first option, and the
/// struct keeps related fields together instead). Parse with `Cli::from_arg_matches`.
pub fn command() -> clap::Command {
    let derived = <Cli as clap::CommandFactory>::command();
    let rank = |a: &clap::Arg| {
        a.get_help_heading()
            .and_then(|h| HEADINGS.iter().position(|x| *x == h))
            .map_or(0, |i| i + 1)
    };
    let mut args: Vec<clap::Arg> = derived.get_arguments().cloned().collect();
    args.sort_by_key(rank);
    let mut command = clap::Command::new("triage")
        .version(super::VERSION)
        .after_help(AFTER_HELP)
        .args(args)
        .subcommands(derived.get_subcommands().cloned());
    if let Some(about) = derived.get_about() {
        command = command.about(about.clone());
    }
    command
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

/// A whole number in `lo..=hi`, with a message that says so (the same for a flag and for its
/// environment variable).
pub fn whole_number<T>(
    lo: u64,
    hi: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |raw: &str| {
        let expected = if hi == u64::MAX {
            format!("expected a whole number, {lo} or more")
        } else {
            format!("expected a whole number in {lo}..={hi}")
        };
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or(expected)
    }
}

/// The words a boolean setting accepts.
pub const BOOL_WORDS: &str = "true, false, yes, no, on, off, 1, 0";

/// A boolean: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` (any case).
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" | "t" => Ok(true),
        "false" | "no" | "off" | "0" | "n" | "f" => Ok(false),
        _ => Err(format!("expected one of {BOOL_WORDS}")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check each configured service (Datadog keys, Jira account and project, the LLM), print
    /// one line per service, and exit 0 only if every configured one passes; a service that is
    /// only partly configured fails and names what is missing.
    Check,
    /// Show what the state file holds for the configured job: the last runs, the checkpoint,
    /// the retry list and the known tickets. Read-only: safe while a run is going on.
    Status {
        /// How many of the last runs to show.
        #[arg(long, value_name = "N", default_value_t = 10,
              value_parser = whole_number::<usize>(1, 10_000))]
        runs: usize,
    },
    /// Print a shell completion script on stdout, e.g. `triage completions bash > ~/.local/share/bash-completion/completions/triage`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout, e.g. `triage man > ~/.local/share/man/man1/triage.1`.
    Man,
    /// List the templates the state store has learned: fingerprint, count, first and last
    /// seen, ticket and template (`--output json` for an array of objects); `--show FP` for one
    /// template in detail: each variable with how many distinct values it held and a few of them.
    Templates {
        /// Show this fingerprint's template in detail (why its logs share a ticket).
        #[arg(long, value_name = "FP")]
        show: Option<String>,
    },
    /// Copy the whole state store (the SQLite file or PostgreSQL database the state option
    /// names) to or from JSON Lines: a backup, or the way to move a store to PostgreSQL.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Show which `[[route]]` of the config file each problem takes and the ticket fields that
    /// result, without calling Jira: `triage route --explain --input FILE` (one entry per
    /// problem; `--fingerprint FP` for one; `--output json` for an array of objects).
    Route {
        /// Explain the routing (the only thing `route` does for now; required, so that the
        /// command says what it does).
        #[arg(long, required = true)]
        explain: bool,
        /// Only the problem with this fingerprint.
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
    },
}

/// `triage state …`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum StateAction {
    /// Write every row of the store as JSON Lines on stdout (`triage state export > state.jsonl`).
    Export,
    /// Read JSON Lines written by `export` into the store (created if needed), in one
    /// transaction; rows whose key the store has already are kept. Stop runs first.
    Import {
        /// The export to read; `-` or nothing for stdin.
        #[arg(value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour only when stderr is a terminal and NO_COLOR is not set.
    Auto,
    /// Always colour (even in a file or a pipe).
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour stderr. `no_color` is whether NO_COLOR is set to a non-empty value
    /// (<https://no-color.org>); an explicit `always` wins over it.
    pub fn enabled(self, stderr_is_terminal: bool, no_color: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stderr_is_terminal && !no_color,
        }
    }
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
    // GitHub-flavoured Markdown, for a CI job's summary page: the run's summary only.
    Markdown,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn every_option_is_global_and_under_a_heading() {
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            assert!(arg.is_global_set(), "--{id} is not global");
            assert!(
                arg.get_help_heading()
                    .is_some_and(|h| HEADINGS.contains(&h)),
                "--{id} has no heading of {HEADINGS:?}"
            );
        }
    }

    #[test]
    fn help_headings_come_in_reading_order_and_every_option_parses_as_derived() {
        let help = command().render_long_help().to_string();
        let at: Vec<usize> = HEADINGS
            .iter()
            .map(|h| help.find(&format!("\n{h}:\n")).expect(h))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{help}");
        let matches = command()
            .try_get_matches_from([
                "triage",
                "status",
                "--runs",
                "3",
                "--workers",
                "9",
                "--dry-run",
            ])
            .unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.command, Some(Command::Status { runs: 3 }));
        assert_eq!((cli.workers, cli.dry_run), (9, true));
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

    #[test]
    fn numbers_and_booleans_say_what_they_expect() {
        let workers = whole_number::<u16>(1, 256);
        assert_eq!(workers("8"), Ok(8));
        assert_eq!(
            workers("abc").unwrap_err(),
            "expected a whole number in 1..=256"
        );
        assert!(workers("0").is_err() && workers("257").is_err());
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("maybe")
            .unwrap_err()
            .contains("true, false, yes, no"));
    }

    #[test]
    fn colour_follows_the_terminal_no_color_and_the_flag() {
        assert!(ColorChoice::Auto.enabled(true, false));
        assert!(!ColorChoice::Auto.enabled(false, false));
        assert!(!ColorChoice::Auto.enabled(true, true));
        assert!(ColorChoice::Always.enabled(false, true));
        assert!(!ColorChoice::Never.enabled(true, false));
    }

    #[test]
    fn check_takes_the_global_flags_after_the_subcommand() {
        let cli = Cli::try_parse_from(["triage", "check", "--analyzer", "llm"]).unwrap();
        assert_eq!(cli.command, Some(Command::Check));
        assert_eq!(cli.analyzer, AnalyzerKind::Llm);
    }
}
