//! `Cli` → a checked `Config`: URLs parsed, durations built, secrets wrapped, aliases resolved.
//!
//! In: the parsed command line, and a lookup function for the environment (main passes
//! `std::env::var`, tests pass a map), used only for the secrets and the accepted aliases that
//! clap cannot express. Out: a `Config` the rest of the program trusts, or a `ConfigError` whose
//! message names the setting and what to do; `Usage` exits 2, `Fatal` exits 1.
//! Secrets are `SecretString` from here on: their `Debug` is redacted and nothing formats them.

pub mod cli;
pub mod envfile;
pub mod file;

/// The version, the git commit it was built from and the build date (`unknown` when built
/// from a copy without git history): `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-01)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TRIAGE_GIT_COMMIT"),
    ", built ",
    env!("TRIAGE_BUILD_DATE"),
    ")"
);

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;
use secrecy::SecretString;

use crate::config::cli::{AnalyzerKind, Cli};
use crate::jira::config::{JiraApi, JiraAuth, JiraConfig, PriorityMap};

/// The Datadog sites DESIGN.md lists, with the web host that serves their UI.
pub const DATADOG_SITES: &[(&str, &str)] = &[
    ("datadoghq.com", "app.datadoghq.com"),
    ("datadoghq.eu", "app.datadoghq.eu"),
    ("us3.datadoghq.com", "us3.datadoghq.com"),
    ("us5.datadoghq.com", "us5.datadoghq.com"),
    ("ap1.datadoghq.com", "ap1.datadoghq.com"),
    ("ap2.datadoghq.com", "ap2.datadoghq.com"),
    ("ddog-gov.com", "app.ddog-gov.com"),
];

/// A configuration problem, with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A bad flag or value: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A missing or unusable setting needed for this run: exit 1.
    #[error("{0}")]
    Fatal(String),
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Logs in flight at once; 1 without `--async`.
    pub workers: usize,
    /// Whether `--async` was given (reported in the summary's `mode`).
    pub async_mode: bool,
    /// Datadog page size.
    pub batch_size: u32,
    /// Deadline for one log, from its start to its outcome.
    pub per_log_timeout: Duration,
    /// Outbound calls per second per service; `None` when the limiter is off.
    pub rate_limit: Option<NonZeroU32>,
    /// Where logs come from.
    pub source: SourceConfig,
    /// Stop after this many logs.
    pub limit: Option<u64>,
    /// Which analyzer runs on each new problem.
    pub analyzer: AnalyzerConfig,
    /// Cap on tickets created in one run.
    pub max_tickets: Option<u64>,
    /// Write nothing to Jira.
    pub dry_run: bool,
    /// Jira, when configured.
    pub jira: Option<JiraConfig>,
    /// The Datadog site, for API calls and for links to logs in tickets.
    pub site: DatadogSite,
    /// Where to write the full JSON report.
    pub report: Option<PathBuf>,
    /// Draw the progress bar (stderr is a terminal and `--quiet` is off); set by the binary.
    pub progress: bool,
    /// The state file; `None` with `--no-state`.
    pub state: Option<PathBuf>,
    /// `--from` was given: the window does not start at the checkpoint.
    pub from_explicit: bool,
    /// This run's "now" (for date math and the default window end): `--now`, else the clock's
    /// time when the configuration was checked.
    pub now: DateTime<Utc>,
    /// Where every other reading of the time comes from (the system clock, but in tests).
    pub clock: crate::clock::Clock,
    /// Runs a failed log is retried in before it is given up.
    pub max_retries: u32,
    /// Least time between two recurrence comments on one ticket.
    pub comment_cooldown: Duration,
    /// After an interrupt, how long calls in flight may take to finish.
    pub shutdown_grace: Duration,
    /// Consecutive failures that open a service's circuit breaker, and for how long.
    pub breaker: (u32, Duration),
    /// Where to write Prometheus metrics.
    pub metrics_file: Option<PathBuf>,
    /// Longest input line read from `--input`; longer ones are cut.
    pub max_line_bytes: usize,
    /// What is removed from every log before it goes anywhere (secrets always).
    pub redact: crate::redact::Redactor,
    /// The config file's `[[route]]` rules, in order (empty: every ticket goes to the project).
    pub routes: crate::route::Routes,
    /// The config file's `[[group]]` rules: how logs group, where the user corrected it.
    pub groups: crate::grouping::GroupRules,
}

/// The source of logs.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// A file, or `-` for standard input.
    File(InputPath),
    /// The Datadog Logs search API.
    Datadog(DatadogConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPath {
    Stdin,
    Path(PathBuf),
}

impl std::fmt::Display for InputPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputPath::Stdin => f.write_str("<stdin>"),
            InputPath::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Datadog's API base and web host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatadogSite {
    /// The site name (`datadoghq.eu`).
    pub name: String,
    /// Base URL of the API, without a trailing slash.
    pub api_base: String,
    /// Host of the web UI, for links.
    pub app_host: String,
}

impl DatadogSite {
    /// Resolve `DD_SITE` (and `DD_API_URL`, which overrides the API base only).
    pub fn resolve(site: &str, api_url: Option<&str>) -> Result<Self, ConfigError> {
        let site = site.trim().trim_end_matches('/').to_ascii_lowercase();
        let site = site.strip_prefix("https://").unwrap_or(&site);
        let site = site.strip_prefix("api.").unwrap_or(site);
        let Some((name, app_host)) = DATADOG_SITES.iter().find(|(s, _)| *s == site) else {
            let valid: Vec<&str> = DATADOG_SITES.iter().map(|(s, _)| *s).collect();
            return Err(ConfigError::Usage(format!(
                "DD_SITE '{site}' is not a Datadog site; use one of: {}",
                valid.join(", ")
            )));
        };
        let api_base = match api_url {
            Some(url) => parse_base_url("DD_API_URL", url)?,
            None => format!("https://api.{name}"),
        };
        Ok(DatadogSite {
            name: name.to_string(),
            api_base,
            app_host: app_host.to_string(),
        })
    }

    /// A link to one log in the Datadog web UI, with a window around it for context.
    pub fn log_link(&self, log_id: &str, at: Option<DateTime<Utc>>) -> String {
        let mut url = Url::parse(&format!("https://{}/logs", self.app_host))
            .expect("a known Datadog app host is a valid URL");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("event", log_id);
            if let Some(at) = at {
                let ms = at.timestamp_millis();
                q.append_pair("from_ts", &(ms - 15 * 60 * 1000).to_string());
                q.append_pair("to_ts", &(ms + 15 * 60 * 1000).to_string());
                q.append_pair("live", "false");
            }
        }
        url.into()
    }
}

/// The Datadog source's settings.
#[derive(Debug, Clone)]
pub struct DatadogConfig {
    pub api_key: SecretString,
    pub app_key: SecretString,
    pub query: String,
    /// Start of the window, resolved once at start (date math is relative to that moment).
    pub from: DateTime<Utc>,
    /// End of the window.
    pub to: DateTime<Utc>,
}

/// Parse a window bound: Datadog date math (`now`, `now-15m`, `now-2h`, `now-1d`, `now-1w`,
/// units s/m/h/d/w), an RFC 3339 timestamp, or epoch milliseconds.
pub fn parse_time(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = raw.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now);
        }
        let (sign, amount) = match rest.split_at(1) {
            ("-", a) => (-1, a),
            ("+", a) => (1, a),
            _ => {
                return Err(format!(
                    "'{raw}': expected now, now-<N><unit> or an RFC 3339 time"
                ))
            }
        };
        let unit_at = amount
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(amount.len());
        let (n, unit) = amount.split_at(unit_at);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("'{raw}': missing a number after now{}", &rest[..1]))?;
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(format!("'{raw}': unit must be one of s, m, h, d, w")),
        };
        return Ok(now + chrono::Duration::seconds(sign * n.saturating_mul(secs)));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(ms) = s.parse::<i64>() {
        if let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) {
            return Ok(t);
        }
    }
    Err(format!("'{raw}' is not a time: use Datadog date math (now-15m, now-2h, now-1d) or RFC 3339 (2026-11-23T09:00:00Z)"))
}

#[derive(Debug, Clone)]
pub enum AnalyzerConfig {
    Rules,
    Llm {
        base_url: String,
        model: String,
        api_key: SecretString,
    },
}

/// Notes for the user that are not errors (printed once on stderr by the caller).
pub type Notices = Vec<String>;

impl Config {
    /// The whole checked configuration of a run: the command line and the environment
    /// ([`Config::from_cli`]), the config file's routes and group rules, and whether the
    /// progress bar shows (stderr is a terminal and `--quiet` is off).
    pub fn for_run(
        cli: &Cli,
        workers_given: bool,
        env: &dyn Fn(&str) -> Option<String>,
        rules: file::Rules,
    ) -> Result<(Config, Notices), ConfigError> {
        let (config, notices) = Config::from_cli(cli, workers_given, env)?;
        let progress = !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
        Ok((config.with_rules(rules, progress), notices))
    }

    /// This configuration with the config file's routes and group rules, and the progress bar
    /// shown or not.
    pub fn with_rules(self, rules: file::Rules, progress: bool) -> Config {
        Config {
            routes: rules.routes,
            groups: rules.groups,
            progress,
            ..self
        }
    }

    /// Check the command line and the environment.
    ///
    /// `workers_given` says whether `--workers` / `ASYNC_MAX_WORKERS` was set explicitly (so
    /// that a sequential run can say it ignores it). `env` looks up one environment variable.
    pub fn from_cli(
        cli: &Cli,
        workers_given: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Notices), ConfigError> {
        Config::from_cli_with_clock(cli, workers_given, env, crate::clock::Clock::system())
    }

    /// [`Config::from_cli`], reading the time from `clock` (tests move a manual one).
    pub fn from_cli_with_clock(
        cli: &Cli,
        workers_given: bool,
        env: &dyn Fn(&str) -> Option<String>,
        clock: crate::clock::Clock,
    ) -> Result<(Config, Notices), ConfigError> {
        let mut notices = Vec::new();
        let lookup = |names: &[&str]| -> Option<String> {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
                .map(|v| v.trim().to_string())
        };

        let workers = if cli.async_mode {
            usize::from(cli.workers)
        } else {
            if workers_given && cli.workers != 1 {
                notices.push(format!(
                    "--workers {} has no effect without --async: running sequentially (1 log at a time)",
                    cli.workers
                ));
            }
            1
        };

        let rate_limit = if cli.no_rate_limit || cli.rate_limiting == Some(false) {
            None
        } else {
            NonZeroU32::new(cli.rate_limit)
        };

        let site = DatadogSite::resolve(&cli.dd_site, cli.dd_api_url.as_deref())?;
        let Window { now, from, to } = window(cli, &clock)?;
        let state = if cli.no_state {
            None
        } else if let Some(path) = state_path(cli, env) {
            Some(path)
        } else {
            if cli.input.is_none() {
                notices.push(
                    "no state (neither XDG_STATE_HOME nor HOME is set, and no --state PATH): \
                          this run keeps no checkpoint and no retry list"
                        .into(),
                );
            }
            None
        };

        let source = source_config(cli, &lookup, from, to)?;

        let jira = jira_config(cli, &lookup, cli.dry_run, &mut notices)?;

        let analyzer = analyzer_config(cli, &lookup)?;

        if let Some(metrics) = &cli.metrics_file {
            check_writable_parent("--metrics-file", metrics)?;
        }
        if let Some(report) = &cli.report {
            check_writable_parent("--report", report)?;
        }

        Ok((
            Config {
                workers,
                async_mode: cli.async_mode,
                batch_size: u32::from(cli.batch_size),
                per_log_timeout: Duration::from_secs(cli.timeout_secs),
                rate_limit,
                source,
                limit: cli.limit,
                analyzer,
                max_tickets: (cli.max_tickets > 0).then_some(cli.max_tickets),
                dry_run: cli.dry_run,
                jira,
                site,
                report: cli.report.clone(),
                progress: false,
                state,
                from_explicit: cli.from.is_some(),
                now,
                clock,
                max_retries: cli.max_retries,
                comment_cooldown: cli.comment_cooldown,
                shutdown_grace: cli.shutdown_grace,
                breaker: (cli.breaker_threshold, cli.breaker_cooldown),
                metrics_file: cli.metrics_file.clone(),
                max_line_bytes: usize::try_from(cli.max_line_bytes).unwrap_or(usize::MAX),
                redact: cli.redact,
                routes: crate::route::Routes::default(),
                groups: crate::grouping::GroupRules::default(),
            },
            notices,
        ))
    }
}

/// The run's "now" (`--now`, else `clock`'s time) and the Datadog window it gives: `--from` /
/// `--to`, else the last 15 minutes before `--ingest-delay`.
fn window(cli: &Cli, clock: &crate::clock::Clock) -> Result<Window, ConfigError> {
    let now = match &cli.now {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| ConfigError::Usage(format!("--now '{t}' is not an RFC 3339 time: {e}")))?,
        None => clock.now(),
    };
    let ingest_delay = chrono::Duration::from_std(cli.ingest_delay)
        .map_err(|_| ConfigError::Usage("--ingest-delay is out of range".into()))?;
    let to = match &cli.to {
        Some(t) => parse_time(t, now).map_err(|e| ConfigError::Usage(format!("--to {e}")))?,
        None => now - ingest_delay,
    };
    let from = match &cli.from {
        Some(f) => parse_time(f, now).map_err(|e| ConfigError::Usage(format!("--from {e}")))?,
        // The last 15 minutes, or the 15 minutes before an earlier --to / a long
        // --ingest-delay.
        None => (now - chrono::Duration::minutes(15)).min(to - chrono::Duration::minutes(15)),
    };
    // A file is read whole: the default window matters only for Datadog, but bounds given
    // that contradict each other are always a mistake.
    let explicit = cli.from.is_some() || cli.to.is_some();
    if to <= from && (cli.input.is_none() || explicit) {
        return Err(ConfigError::Usage(format!(
            "--from {} to --to {} is an empty window: the end must come after the start",
            cli.from.as_deref().unwrap_or("(default now-15m)"),
            cli.to
                .as_deref()
                .unwrap_or("(default now minus --ingest-delay)")
        )));
    }
    Ok(Window { now, from, to })
}

/// The run's "now" and the Datadog window.
struct Window {
    now: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// Where logs come from: `--input` (a file, or `-` for stdin), else Datadog, whose keys must
/// be set.
fn source_config(
    cli: &Cli,
    lookup: &dyn Fn(&[&str]) -> Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<SourceConfig, ConfigError> {
    Ok(match &cli.input {
        Some(path) if path.as_os_str() == "-" => SourceConfig::File(InputPath::Stdin),
        Some(path) => {
            check_readable(path)?;
            SourceConfig::File(InputPath::Path(path.clone()))
        }
        None => {
            let api_key = lookup(&["DD_API_KEY", "DATADOG_API_KEY"]);
            let app_key = lookup(&["DD_APP_KEY", "DATADOG_APP_KEY", "DD_APPLICATION_KEY"]);
            let missing: Vec<&str> = [
                (api_key.is_none(), "DD_API_KEY"),
                (app_key.is_none(), "DD_APP_KEY"),
            ]
            .into_iter()
            .filter_map(|(m, n)| m.then_some(n))
            .collect();
            if !missing.is_empty() {
                return Err(ConfigError::Fatal(format!(
                    "reading from Datadog needs {} (set in the environment or .env), \
                     or use --input PATH to read logs from a file",
                    missing.join(" and ")
                )));
            }
            SourceConfig::Datadog(DatadogConfig {
                api_key: SecretString::from(api_key.unwrap_or_default()),
                app_key: SecretString::from(app_key.unwrap_or_default()),
                query: cli.query.clone(),
                from,
                to,
            })
        }
    })
}

/// The analyzer: the offline rules, or an LLM, whose key must be set.
fn analyzer_config(
    cli: &Cli,
    lookup: &dyn Fn(&[&str]) -> Option<String>,
) -> Result<AnalyzerConfig, ConfigError> {
    Ok(match cli.analyzer {
        AnalyzerKind::Rules => AnalyzerConfig::Rules,
        AnalyzerKind::Llm => {
            let Some(key) = lookup(&["OPENAI_API_KEY"]) else {
                return Err(ConfigError::Fatal(
                    "--analyzer llm needs OPENAI_API_KEY (set in the environment or .env)".into(),
                ));
            };
            AnalyzerConfig::Llm {
                base_url: parse_base_url("OPENAI_BASE_URL", &cli.llm_base_url)?,
                model: cli.llm_model.clone(),
                api_key: SecretString::from(key),
            }
        }
    })
}

/// A service that is only partly configured: `triage check` fails it and names what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialService {
    /// `datadog`, `jira` or `llm`.
    pub service: &'static str,
    /// The variables still needed.
    pub missing: Vec<&'static str>,
}

impl Config {
    /// The configuration `triage check` tests: like a dry run, with each service only when it
    /// is completely configured; the services that are partly configured (some of their
    /// variables set, others missing or empty) are returned beside it, to be reported as
    /// failures rather than skipped.
    pub fn for_check(
        cli: &Cli,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Config, Vec<PartialService>), ConfigError> {
        let lookup = |names: &[&str]| -> Option<String> {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
                .map(|v| v.trim().to_string())
        };
        let mut cli = cli.clone();
        cli.dry_run = true;
        let mut partial = Vec::new();
        let api_key = lookup(&["DD_API_KEY", "DATADOG_API_KEY"]);
        let app_key = lookup(&["DD_APP_KEY", "DATADOG_APP_KEY", "DD_APPLICATION_KEY"]);
        match (&api_key, &app_key) {
            (Some(_), Some(_)) => cli.input = None,
            (None, None) => cli.input = Some(PathBuf::from("-")),
            (api, app) => {
                partial.push(PartialService {
                    service: "datadog",
                    missing: [(api.is_none(), "DD_API_KEY"), (app.is_none(), "DD_APP_KEY")]
                        .into_iter()
                        .filter_map(|(m, n)| m.then_some(n))
                        .collect(),
                });
                cli.input = Some(PathBuf::from("-"));
            }
        }
        let parts = jira_parts(&cli, &lookup)?;
        if parts.config.is_none() && !parts.nothing_set {
            partial.push(PartialService {
                service: "jira",
                missing: parts.missing,
            });
        }
        if cli.analyzer == AnalyzerKind::Llm && lookup(&["OPENAI_API_KEY"]).is_none() {
            partial.push(PartialService {
                service: "llm",
                missing: vec!["OPENAI_API_KEY"],
            });
            cli.analyzer = AnalyzerKind::Rules;
        }
        Config::from_cli(&cli, false, env).map(|(config, _)| (config, partial))
    }
}

/// What the Jira settings add up to.
struct JiraParts {
    /// The settings, when complete.
    config: Option<JiraConfig>,
    /// The variables still needed when they are not.
    missing: Vec<&'static str>,
    /// No Jira variable is set at all.
    nothing_set: bool,
}

/// Jira settings, when complete; `None` (with a notice when partly set) in a dry run or a check.
pub(crate) fn jira_config(
    cli: &Cli,
    lookup: &dyn Fn(&[&str]) -> Option<String>,
    dry_run: bool,
    notices: &mut Notices,
) -> Result<Option<JiraConfig>, ConfigError> {
    let parts = jira_parts(cli, lookup)?;
    match parts.config {
        Some(config) => Ok(Some(config)),
        None if dry_run => {
            if !parts.nothing_set {
                notices.push(format!(
                    "Jira is only partly configured (missing {}): this dry run will not look up existing tickets",
                    parts.missing.join(", ")
                ));
            }
            Ok(None)
        }
        None => Err(ConfigError::Fatal(format!(
            "writing tickets needs Jira settings: missing {} (set in the environment or .env; \
             JIRA_EMAIL + JIRA_API_TOKEN for Jira Cloud, JIRA_PAT for Server/Data Center), \
             or run with --dry-run",
            parts.missing.join(", ")
        ))),
    }
}

fn jira_parts(
    cli: &Cli,
    lookup: &dyn Fn(&[&str]) -> Option<String>,
) -> Result<JiraParts, ConfigError> {
    let api = if cli.jira_api_version == "2" {
        JiraApi::V2
    } else {
        JiraApi::V3
    };
    let url = cli.jira_url.clone().filter(|s| !s.trim().is_empty());
    let project = cli
        .jira_project
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| lookup(&["JIRA_PROJECT_KEY"]));
    let email = cli.jira_email.clone().filter(|s| !s.trim().is_empty());
    let token = lookup(&["JIRA_API_TOKEN"]);
    let pat = lookup(&["JIRA_PAT"]);

    let mut missing = Vec::new();
    if url.is_none() {
        missing.push("JIRA_URL");
    }
    if project.is_none() {
        missing.push("JIRA_PROJECT");
    }
    let auth = match (api, &email, &token, &pat) {
        (_, Some(e), Some(t), _) => Some(JiraAuth::Basic {
            email: e.trim().to_string(),
            token: SecretString::from(t.clone()),
        }),
        (_, _, _, Some(p)) => Some(JiraAuth::Bearer(SecretString::from(p.clone()))),
        (JiraApi::V3, e, t, None) => {
            if e.is_none() {
                missing.push("JIRA_EMAIL");
            }
            if t.is_none() {
                missing.push("JIRA_API_TOKEN");
            }
            None
        }
        (JiraApi::V2, ..) => {
            missing.push("JIRA_PAT");
            None
        }
    };
    let nothing_set =
        url.is_none() && project.is_none() && email.is_none() && token.is_none() && pat.is_none();
    let config = match (auth, url, project) {
        (Some(auth), Some(url), Some(project)) => Some(JiraConfig {
            base_url: parse_base_url("JIRA_URL", &url)?,
            project: project.trim().to_string(),
            issue_type: cli.jira_issue_type.trim().to_string(),
            api,
            auth,
            priorities: match &cli.priority_map {
                Some(spec) => PriorityMap::parse(api, spec)
                    .map_err(|e| ConfigError::Usage(format!("--priority-map: {e}")))?,
                None => PriorityMap::default_for(api),
            },
            reopen: cli.reopen,
            search_lag: cli.jira_search_lag,
        }),
        _ => None,
    };
    Ok(JiraParts {
        config,
        missing,
        nothing_set,
    })
}

/// Parse a base URL: http(s) only, no query or fragment, trailing slash removed.
pub(crate) fn parse_base_url(name: &str, raw: &str) -> Result<String, ConfigError> {
    // The URL is echoed in messages only with any `user:password@` hidden.
    let shown = crate::redact::url_userinfo(raw.trim());
    let url = Url::parse(raw.trim()).map_err(|e| {
        ConfigError::Usage(format!(
            "{name} '{shown}' is not a URL ({e}); expected e.g. https://host[:port][/path]"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::Usage(format!(
            "{name} '{shown}' must be an http:// or https:// URL with a host"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::Usage(format!(
            "{name} '{shown}' must not carry credentials (user:password@); \
             give them in their own settings (see docs/security.md)"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::Usage(format!(
            "{name} must not carry a query string or fragment"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn check_readable(path: &std::path::Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(ConfigError::Usage(format!(
            "--input {} is a directory; give a file of logs, or - for standard input",
            path.display()
        ))),
        Ok(_) => std::fs::File::open(path).map(|_| ()).map_err(|e| {
            ConfigError::Usage(format!("--input {} cannot be read: {e}", path.display()))
        }),
        Err(e) => Err(ConfigError::Usage(format!(
            "--input {} cannot be read: {e}",
            path.display()
        ))),
    }
}

fn check_writable_parent(flag: &str, path: &std::path::Path) -> Result<(), ConfigError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(ConfigError::Usage(format!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            parent.display()
        )))
    }
}

/// The state file `--state` names, or the default one (`$XDG_STATE_HOME/triage/state.db`,
/// else `~/.local/state/triage/state.db`); `None` with `--no-state` or when neither is set.
pub fn state_path(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if cli.no_state {
        None
    } else if let Some(path) = &cli.state {
        Some(path.clone())
    } else if let Some(dir) = env("XDG_STATE_HOME").filter(|d| !d.trim().is_empty()) {
        Some(PathBuf::from(dir).join("triage/state.db"))
    } else {
        env("HOME")
            .filter(|d| !d.trim().is_empty())
            .map(|home| PathBuf::from(home).join(".local/state/triage/state.db"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<(Config, Notices), ConfigError> {
        let mut argv = vec!["triage"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("valid args");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let given = args.contains(&"--workers");
        Config::from_cli(&cli, given, &|k| env.get(k).cloned())
    }

    #[test]
    fn a_long_ingest_delay_moves_the_default_window_back_and_no_state_wins() {
        let (c, _) = parse(
            &[
                "--dry-run",
                "--ingest-delay",
                "20m",
                "--now",
                "2026-11-23T10:00:00Z",
                "--state",
                "/tmp/s.db",
            ],
            &[("DD_API_KEY", "k"), ("DD_APP_KEY", "a")],
        )
        .unwrap();
        let SourceConfig::Datadog(dd) = &c.source else {
            panic!("a Datadog source")
        };
        assert_eq!(dd.to.to_rfc3339(), "2026-11-23T09:40:00+00:00");
        assert_eq!(dd.from.to_rfc3339(), "2026-11-23T09:25:00+00:00");
        assert_eq!(c.state.as_deref(), Some(std::path::Path::new("/tmp/s.db")));
        let (c, _) = parse(
            &[
                "--dry-run",
                "--state",
                "/tmp/s.db",
                "--no-state",
                "--input",
                "-",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.state, None);
        match parse(
            &[
                "--dry-run",
                "--input",
                "-",
                "--metrics-file",
                "/no/such/dir/m.prom",
            ],
            &[],
        ) {
            Err(ConfigError::Usage(m)) => assert!(m.contains("--metrics-file"), "{m}"),
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn the_default_window_ends_by_the_clock_and_now_fixes_the_window_only() {
        let at = |s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hand = crate::clock::Clock::manual(at("2026-11-23T10:00:00Z"));
        let cli = |args: &[&str]| {
            let argv = ["triage", "--dry-run", "--ingest-delay", "20m"];
            Cli::try_parse_from(argv.iter().chain(args)).expect("valid args")
        };
        let env = |k: &str| {
            ["DD_API_KEY", "DD_APP_KEY"]
                .contains(&k)
                .then(|| "k".into())
        };
        let window = |c: &Config| match &c.source {
            SourceConfig::Datadog(dd) => (dd.from.to_rfc3339(), dd.to.to_rfc3339()),
            SourceConfig::File(_) => panic!("a Datadog source"),
        };
        let (c, _) = Config::from_cli_with_clock(&cli(&[]), false, &env, hand.clock()).unwrap();
        assert_eq!(c.now, at("2026-11-23T10:00:00Z"));
        assert_eq!(
            window(&c),
            (
                "2026-11-23T09:25:00+00:00".into(),
                "2026-11-23T09:40:00+00:00".into()
            )
        );
        // `--now` fixes the run's window; the clock it carries still moves.
        let given = cli(&["--now", "2026-01-01T00:00:00Z"]);
        let (c, _) = Config::from_cli_with_clock(&given, false, &env, hand.clock()).unwrap();
        assert_eq!(c.now, at("2026-01-01T00:00:00Z"));
        assert_eq!(window(&c).1, "2025-12-31T23:40:00+00:00");
        hand.advance(chrono::Duration::hours(1));
        assert_eq!(c.clock.now(), at("2026-11-23T11:00:00Z"));
    }

    #[test]
    fn sequential_mode_ignores_workers_and_says_so() {
        let (c, notes) = parse(&["--dry-run", "--input", "-", "--workers", "8"], &[]).unwrap();
        assert_eq!(c.workers, 1);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("without --async"), "{notes:?}");
        let (c, notes) = parse(
            &["--dry-run", "--input", "-", "--async", "--workers", "8"],
            &[],
        )
        .unwrap();
        assert_eq!(c.workers, 8);
        assert!(notes.is_empty());
    }

    #[test]
    fn datadog_source_names_missing_keys_and_accepts_aliases() {
        let err = parse(&["--dry-run"], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Fatal(_)));
        assert!(
            err.to_string().contains("DD_API_KEY and DD_APP_KEY"),
            "{err}"
        );
        let (c, _) = parse(
            &["--dry-run"],
            &[("DATADOG_API_KEY", "a"), ("DD_APPLICATION_KEY", "b")],
        )
        .unwrap();
        let SourceConfig::Datadog(dd) = c.source else {
            panic!("datadog source")
        };
        assert_eq!(dd.api_key.expose_secret(), "a");
        assert_eq!(dd.app_key.expose_secret(), "b");
    }

    #[test]
    fn live_run_without_jira_names_the_missing_variables() {
        let err = parse(&["--input", "-"], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Fatal(_)));
        for v in [
            "JIRA_URL",
            "JIRA_PROJECT",
            "JIRA_EMAIL",
            "JIRA_API_TOKEN",
            "--dry-run",
        ] {
            assert!(msg.contains(v), "{v} not in {msg}");
        }
        let err = parse(&["--input", "-", "--jira-api-version", "2"], &[]).unwrap_err();
        assert!(err.to_string().contains("JIRA_PAT"));
    }

    #[test]
    fn jira_project_key_alias_and_context_path() {
        let (c, _) = parse(
            &[
                "--input",
                "-",
                "--jira-url",
                "https://jira.example.com:8443/jira/",
                "--jira-email",
                "a@b.c",
            ],
            &[("JIRA_PROJECT_KEY", "OPS"), ("JIRA_API_TOKEN", "t0k")],
        )
        .unwrap();
        let j = c.jira.unwrap();
        assert_eq!(j.base_url, "https://jira.example.com:8443/jira");
        assert_eq!(j.project, "OPS");
        assert!(matches!(j.auth, JiraAuth::Basic { .. }));
        assert!(!format!("{j:?}").contains("t0k"), "secret leaked in Debug");
    }

    #[test]
    fn unknown_site_lists_valid_ones() {
        let err = DatadogSite::resolve("datadoghq.org", None).unwrap_err();
        assert!(matches!(err, ConfigError::Usage(_)));
        assert!(err.to_string().contains("datadoghq.eu"));
        let eu = DatadogSite::resolve("datadoghq.eu", None).unwrap();
        assert_eq!(eu.api_base, "https://api.datadoghq.eu");
        assert_eq!(eu.app_host, "app.datadoghq.eu");
        let us3 = DatadogSite::resolve("us3.datadoghq.com", Some("http://127.0.0.1:9/")).unwrap();
        assert_eq!(us3.api_base, "http://127.0.0.1:9");
        assert!(us3
            .log_link("AQ+A=", None)
            .starts_with("https://us3.datadoghq.com/logs?event=AQ%2BA%3D"));
    }

    #[test]
    fn window_bounds_take_date_math_and_rfc3339() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |s| parse_time(s, now).map(|t| t.to_rfc3339());
        assert_eq!(t("now").unwrap(), "2026-11-23T09:00:00+00:00");
        assert_eq!(t("now-15m").unwrap(), "2026-11-23T08:45:00+00:00");
        assert_eq!(t("now-2h").unwrap(), "2026-11-23T07:00:00+00:00");
        assert_eq!(t("now-1d").unwrap(), "2026-11-22T09:00:00+00:00");
        assert_eq!(
            t("2026-11-23T10:00:00+01:00").unwrap(),
            "2026-11-23T09:00:00+00:00"
        );
        assert!(t("now-15x").unwrap_err().contains("unit"));
        assert!(t("yesterday").unwrap_err().contains("RFC 3339"));
        let err = parse(
            &[
                "--dry-run",
                "--input",
                "-",
                "--from",
                "now-5m",
                "--to",
                "now-10m",
            ],
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Usage(_)), "{err}");
        assert!(err.to_string().contains("empty window"));
    }

    #[test]
    fn unreadable_input_is_a_usage_error() {
        let err = parse(&["--dry-run", "--input", "/nonexistent/logs.jsonl"], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Usage(_)));
        assert!(err.to_string().contains("--input /nonexistent/logs.jsonl"));
    }

    #[test]
    fn rate_limit_off_by_flag_or_env_form() {
        let (c, _) = parse(&["--dry-run", "--input", "-", "--no-rate-limit"], &[]).unwrap();
        assert!(c.rate_limit.is_none());
        let (c, _) = parse(
            &["--dry-run", "--input", "-", "--rate-limiting", "false"],
            &[],
        )
        .unwrap();
        assert!(c.rate_limit.is_none());
        let (c, _) = parse(&["--dry-run", "--input", "-"], &[]).unwrap();
        assert_eq!(c.rate_limit.map(|n| n.get()), Some(20));
        assert_eq!(c.batch_size, 1000, "Datadog pages of 1000 logs by default");
    }
}
