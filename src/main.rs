//! The `triage` binary: glue only. Loads `.env` (or `--env-file`), parses the command line with
//! the config file's settings under it, sets up logging to stderr, runs the pipeline (or
//! `check`, `status`, `templates`, `route --explain`, `completions`, `man`) on a tokio runtime,
//! prints the result on stdout, and exits with the code DESIGN.md fixes.
//!
//! Fails with exit 2 on a bad flag, a bad environment value (the message names the variable),
//! a malformed `.env` line (the message names the file and line, never its content, and
//! nothing from that file is applied) or a bad config file entry (every one is named by
//! FILE:LINE:COLUMN, and nothing from that file is applied).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::FromArgMatches;
use triage::config::cli::{Cli, Command, OutputFormat};
use triage::config::{Config, ConfigError};
use triage::exit;
use triage::pipeline::progress::stderr_line;

/// mimalloc rather than the system allocator: a log is parsed on the source's thread and
/// dropped on the pipeline's, and glibc's allocator serialises such cross-thread frees on an
/// arena lock (a third of the run's time went to that lock and to `malloc_consolidate`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Variables triage reads that are not clap settings: secrets, aliases and the environment of
/// the process. An empty value of any of them, or of a setting, counts as not set.
const OTHER_VARIABLES: &[&str] = &[
    "DD_API_KEY",
    "DATADOG_API_KEY",
    "DD_APP_KEY",
    "DATADOG_APP_KEY",
    "DD_APPLICATION_KEY",
    "JIRA_API_TOKEN",
    "JIRA_PAT",
    "JIRA_PROJECT_KEY",
    "OPENAI_API_KEY",
    "TRIAGE_LOG",
    "XDG_STATE_HOME",
];

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Settings from the file come first, because clap reads the environment while it parses.
    // `.env` never overrides the real environment, so flag > env > .env > default holds.
    if let Err(code) = load_env_file(&args) {
        return code;
    }
    forget_empty_variables();
    let mut command = triage::config::cli::command();
    if let Some(choice) = color_flag(&args) {
        command = command.color(choice);
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (matches, rules) = match parse_with_config_file(&command, &args, &env) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(&cli);
    let workers_given = matches!(
        matches.value_source("workers"),
        Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
    );
    if let Some(code) = markdown_elsewhere(&cli) {
        return code;
    }
    match &cli.command {
        Some(Command::Check) => return check(&cli, &env, rules),
        Some(Command::Route { fingerprint, .. }) => {
            return explain(&cli, &env, rules, fingerprint.as_deref())
        }
        Some(Command::Status { runs }) => return status(&cli, &env, *runs),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                *shell,
                &mut triage::config::cli::command(),
                "triage",
                &mut std::io::stdout(),
            );
            return ExitCode::from(exit::OK);
        }
        Some(Command::Man) => {
            return match clap_mangen::Man::new(triage::config::cli::command())
                .render(&mut std::io::stdout())
            {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e) => {
                    stderr_line(&format!("error: cannot print the manual page: {e}"));
                    ExitCode::from(exit::FATAL)
                }
            };
        }
        Some(Command::Templates { show }) => return templates(&cli, &env, show.as_deref()),
        Some(Command::State { action }) => return state_copy(&cli, &env, action),
        None => {}
    }
    let (config, notices) = match Config::for_run(&cli, workers_given, &env, rules) {
        Ok(ok) => ok,
        Err(e) => return config_error(&e),
    };
    for notice in notices {
        stderr_line(&format!("note: {notice}"));
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            stderr_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FATAL);
        }
    };
    let result = runtime.block_on(triage::run(config, shutdown_signal()));
    // Do not wait for a reader still blocked on an open stdin after an interrupt or --limit.
    runtime.shutdown_background();
    match result {
        Ok(report) => {
            match cli.output {
                OutputFormat::Text => print!("{}", triage::pipeline::report::render_text(&report)),
                OutputFormat::Markdown => {
                    print!("{}", triage::pipeline::report::render_markdown(&report))
                }
                // One line per run, so a log of many runs is JSON Lines.
                OutputFormat::Json => {
                    match serde_json::to_string(&triage::pipeline::report::Versioned(
                        &report.summary,
                    )) {
                        Ok(json) => println!("{json}"),
                        Err(e) => stderr_line(&format!("error: cannot print the summary: {e}")),
                    }
                }
            }
            if let Some(e) = &report.summary.error {
                stderr_line(&format!("error: {e}"));
            }
            ExitCode::from(triage::exit_code(&report))
        }
        Err(e) => failed(&e),
    }
}

/// Parse the command line with the config file's settings under it: the file is found (with
/// `--config` / `TRIAGE_CONFIG` from a first parse), checked whole (every problem is printed,
/// then exit 2), and each of its settings that no flag, environment variable or `.env` line
/// gave is put before the user's arguments, so clap checks it as it checks a flag.
fn parse_with_config_file(
    command: &clap::Command,
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(clap::ArgMatches, triage::config::file::Rules), ExitCode> {
    let matches = match command.clone().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return Err(usage_error(e, command, args)),
    };
    let given = matches.get_one::<std::path::PathBuf>("config");
    let path = match triage::config::file::locate(given.map(|p| p.as_path()), env) {
        Ok(Some(path)) => path,
        Ok(None) => return Ok((matches, triage::config::file::Rules::default())),
        Err(e) => {
            stderr_line(&format!("error: {e}"));
            return Err(ExitCode::from(exit::USAGE));
        }
    };
    let settings = match triage::config::file::load(&path, command) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                stderr_line(&format!("error: {e}"));
            }
            stderr_line(&format!(
                "error: {} problem(s) in the config file {}; nothing from it was applied",
                errors.len(),
                path.display()
            ));
            return Err(ExitCode::from(exit::USAGE));
        }
    };
    let combined = triage::config::file::combine(&settings, &matches, args, env);
    if combined.len() == args.len() {
        return Ok((matches, settings.rules()));
    }
    match command.clone().try_get_matches_from(&combined) {
        Ok(m) => Ok((m, settings.rules())),
        Err(e) => {
            stderr_line(&format!(
                "error: the config file {} does not combine with the command line: {}",
                path.display(),
                e.kind()
            ));
            Err(usage_error(e, command, args))
        }
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    stderr_line(&format!("error: {e}"));
    ExitCode::from(match e {
        ConfigError::Usage(_) => exit::USAGE,
        ConfigError::Fatal(_) => exit::FATAL,
    })
}

/// The value of `--NAME VALUE` or `--NAME=VALUE` in `args`, looked for before clap parses
/// (the last one wins, as with clap; nothing after `--`).
fn flag_value(args: &[OsString], name: &str) -> Option<OsString> {
    let long = format!("--{name}");
    let with_eq = format!("--{name}=");
    let mut found = None;
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == long {
            found = iter.next().cloned();
        } else if let Some(v) = text.strip_prefix(&with_eq) {
            found = Some(OsString::from(v));
        }
    }
    found
}

/// Apply `./.env`, or the file `--env-file` names, to the environment: only variables that are
/// not already set (or set empty), only non-empty values, and nothing at all from a file with a
/// bad line.
fn load_env_file(args: &[OsString]) -> Result<(), ExitCode> {
    let given = flag_value(args, "env-file");
    let path = given
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(".env"));
    let pairs = match triage::config::envfile::read(&path) {
        Ok(Some(pairs)) => pairs,
        Ok(None) if given.is_some() => {
            stderr_line(&format!(
                "error: --env-file {}: no such file",
                path.display()
            ));
            return Err(ExitCode::from(exit::USAGE));
        }
        Ok(None) => return Ok(()),
        Err(e) => {
            stderr_line(&format!(
                "error: {e}; nothing from this file was applied (the line is not shown: it may hold a secret)"
            ));
            return Err(ExitCode::from(exit::USAGE));
        }
    };
    for (name, value) in pairs {
        let unset = std::env::var_os(&name).is_none_or(|v| v.to_string_lossy().trim().is_empty());
        if unset && !value.trim().is_empty() {
            // Safe here: nothing else runs yet (no runtime, no other thread).
            std::env::set_var(&name, value);
        }
    }
    Ok(())
}

/// An empty value means "not set", for every variable triage reads (a missing CI secret
/// arrives as an empty variable).
fn forget_empty_variables() {
    let command = triage::config::cli::command();
    let settings = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|n| n.to_os_string());
    let others = OTHER_VARIABLES.iter().map(OsString::from);
    for name in settings.chain(others).collect::<Vec<_>>() {
        if std::env::var_os(&name).is_some_and(|v| v.to_string_lossy().trim().is_empty()) {
            // Safe here: nothing else runs yet (no runtime, no other thread).
            std::env::remove_var(&name);
        }
    }
}

/// `--color` as clap's own choice, so its errors and help follow the flag too.
fn color_flag(args: &[OsString]) -> Option<clap::ColorChoice> {
    match flag_value(args, "color")?.to_str()? {
        "always" => Some(clap::ColorChoice::Always),
        "never" => Some(clap::ColorChoice::Never),
        "auto" => Some(clap::ColorChoice::Auto),
        _ => None,
    }
}

/// Print a parse error and exit 2 (help and version exit 0). A bad value that came from the
/// environment is reported as `NAME=value: what is expected`, since the user never typed the
/// flag clap would name.
fn usage_error(e: clap::Error, command: &clap::Command, args: &[OsString]) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        if let Some(message) = env_value_message(&e, command, args) {
            stderr_line(&format!("error: {message}"));
            return ExitCode::from(exit::USAGE);
        }
    }
    e.exit()
}

fn env_value_message(
    e: &clap::Error,
    command: &clap::Command,
    args: &[OsString],
) -> Option<String> {
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else {
        return None;
    };
    let long = arg.split_whitespace().next()?.trim_start_matches("--");
    let setting = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?;
    let name = setting.get_env()?;
    let on_command_line = args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")))
    });
    if on_command_line || std::env::var_os(name)?.to_str()? != value {
        return None;
    }
    let expected = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(valid)) => format!("expected one of {}", valid.join(", ")),
        _ => std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "not a valid value".into()),
    };
    Some(format!("{}={value}: {expected}", name.to_string_lossy()))
}

/// `--output markdown` with a command that lists something (`status`, `templates`,
/// `route --explain`): exit 2, since Markdown is the run's summary only. Commands that ignore
/// `--output` (`check`, `completions`, `man`, `state`) ignore it too.
fn markdown_elsewhere(cli: &Cli) -> Option<ExitCode> {
    if cli.output != OutputFormat::Markdown {
        return None;
    }
    let name = match &cli.command {
        Some(Command::Status { .. }) => "triage status",
        Some(Command::Templates { .. }) => "triage templates",
        Some(Command::Route { .. }) => "triage route --explain",
        _ => return None,
    };
    stderr_line(&format!(
        "error: --output markdown is for the run's summary only; {name} prints text or json (--output text|json)"
    ));
    Some(ExitCode::from(exit::USAGE))
}

/// `triage check`: one line per service on stdout; 0 only if every configured one passes.
fn check(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
    rules: triage::config::file::Rules,
) -> ExitCode {
    let (config, partial) = match Config::for_check(cli, env) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let config = config.with_rules(rules, false);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            stderr_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FATAL);
        }
    };
    let lines = runtime.block_on(triage::check::run(&config, &partial));
    for line in &lines {
        println!("{line}");
    }
    if triage::check::all_passed(&lines) {
        ExitCode::from(exit::OK)
    } else {
        if lines.iter().all(|l| l.ok.is_none()) {
            stderr_line("error: no service is configured: set DD_API_KEY/DD_APP_KEY and the JIRA_* variables (see .env.example)");
        }
        ExitCode::from(exit::FATAL)
    }
}

/// `triage route --explain`: a dry run over `--input` without Jira and without state, then
/// per problem the route it took and the ticket fields that result.
fn explain(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
    rules: triage::config::file::Rules,
    fingerprint: Option<&str>,
) -> ExitCode {
    if cli.input.is_none() {
        stderr_line("error: triage route --explain needs --input FILE (or - for standard input): it explains the problems of those logs");
        return ExitCode::from(exit::USAGE);
    }
    let mut cli = cli.clone();
    cli.dry_run = true;
    cli.no_state = true;
    cli.report = None;
    cli.metrics_file = None;
    // No Jira: nothing is read from or written to it.
    cli.jira_url = None;
    let defaults = triage::explain::Defaults {
        project: cli
            .jira_project
            .clone()
            .or_else(|| env("JIRA_PROJECT_KEY"))
            .filter(|p| !p.trim().is_empty()),
        issue_type: cli.jira_issue_type.clone(),
        priorities: {
            let api = if cli.jira_api_version == "2" {
                triage::jira::config::JiraApi::V2
            } else {
                triage::jira::config::JiraApi::V3
            };
            match &cli.priority_map {
                Some(spec) => match triage::jira::config::PriorityMap::parse(api, spec) {
                    Ok(m) => m,
                    Err(e) => {
                        stderr_line(&format!("error: --priority-map: {e}"));
                        return ExitCode::from(exit::USAGE);
                    }
                },
                None => triage::jira::config::PriorityMap::default_for(api),
            }
        },
    };
    let config = match Config::from_cli(&cli, false, env) {
        Ok((config, _)) => config.with_rules(rules.clone(), false),
        Err(e) => return config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            stderr_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FATAL);
        }
    };
    let today = config.now.date_naive();
    let result = runtime.block_on(triage::run(config, shutdown_signal()));
    runtime.shutdown_background();
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            stderr_line(&format!("error: {e:#}"));
            return ExitCode::from(exit::FATAL);
        }
    };
    if let Some(e) = &report.summary.error {
        stderr_line(&format!("error: {e}"));
        return ExitCode::from(exit::FATAL);
    }
    let entries = triage::explain::explain(&report, &rules, &defaults, today, fingerprint);
    if let (Some(fp), true) = (fingerprint, entries.is_empty()) {
        stderr_line(&format!(
            "error: no problem with fingerprint {fp} in the input"
        ));
        return ExitCode::from(exit::USAGE);
    }
    match cli.output {
        OutputFormat::Text | OutputFormat::Markdown => {
            print!("{}", triage::explain::render_text(&entries))
        }
        OutputFormat::Json => match serde_json::to_string_pretty(&entries) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                stderr_line(&format!("error: cannot print the explanation: {e}"));
                return ExitCode::from(exit::FATAL);
            }
        },
    }
    ExitCode::from(exit::OK)
}

/// `triage status`: what the state file holds for the configured job, read-only.
fn status(cli: &Cli, env: &dyn Fn(&str) -> Option<String>, runs: usize) -> ExitCode {
    let (path, scope) = match triage::status::target(cli, env) {
        Ok(t) => t,
        Err(e) => return config_error(&e),
    };
    match triage::status::read(&path, &scope, runs) {
        Ok(status) => {
            match cli.output {
                OutputFormat::Text | OutputFormat::Markdown => print!("{}", status.render_text()),
                OutputFormat::Json => match serde_json::to_string(&status) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        stderr_line(&format!("error: cannot print the status: {e}"));
                        return ExitCode::from(exit::FATAL);
                    }
                },
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            stderr_line(&format!("error: {e:#}"));
            ExitCode::from(exit::FATAL)
        }
    }
}

/// `triage state export` / `triage state import [FILE]`: the whole store as JSON Lines.
fn state_copy(
    cli: &Cli,
    env: &dyn Fn(&str) -> Option<String>,
    action: &triage::config::cli::StateAction,
) -> ExitCode {
    use triage::config::cli::StateAction;
    let Some(path) = triage::config::state_path(cli, env) else {
        stderr_line("error: no state store: give --state PATH (or set XDG_STATE_HOME or HOME)");
        return ExitCode::from(exit::USAGE);
    };
    let shown = triage::state::display_target(&path);
    let scope = triage::state::Scope::default();
    let done = match action {
        StateAction::Export => {
            match triage::state::StateStore::open_read_only(&path, scope) {
                Ok(Some(store)) => {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    store
                        .export(&mut out)
                        .map(|rows| format!("exported {rows} rows from {shown}"))
                }
                Ok(None) => Err(anyhow::anyhow!(
                    "{shown}: no state store there yet (or one an older triage wrote: run triage once to migrate it)"
                )),
                Err(e) => Err(e.into()),
            }
        }
        StateAction::Import { file } => {
            let input: Box<dyn std::io::BufRead> = match file {
                Some(f) if f.as_os_str() != "-" => match std::fs::File::open(f) {
                    Ok(file) => Box::new(std::io::BufReader::new(file)),
                    Err(e) => {
                        stderr_line(&format!("error: cannot read {}: {e}", f.display()));
                        return ExitCode::from(exit::USAGE);
                    }
                },
                _ => Box::new(std::io::stdin().lock()),
            };
            match triage::state::StateStore::open(&path, scope) {
                Ok(mut store) => store.import(input).map(|n| {
                    format!(
                        "imported {} rows into {shown} ({} new, {} already there)",
                        n.read,
                        n.added,
                        n.read - n.added
                    )
                }),
                Err(e) => Err(e.into()),
            }
        }
    };
    match done {
        Ok(message) => {
            stderr_line(&message);
            ExitCode::from(exit::OK)
        }
        Err(e) => failed(&e),
    }
}

/// `triage templates`: the learned templates of the state store, as text or JSON, on stdout.
fn templates(cli: &Cli, env: &dyn Fn(&str) -> Option<String>, show: Option<&str>) -> ExitCode {
    let Some(path) = triage::config::state_path(cli, env) else {
        stderr_line("error: no state store: give --state PATH (or set XDG_STATE_HOME or HOME)");
        return ExitCode::from(exit::USAGE);
    };
    if let Some(fp) = show {
        let shown = match triage::templates::show(&path, fp) {
            Ok(Some(t)) => t,
            Ok(None) => {
                stderr_line(&format!(
                    "error: no template with fingerprint {fp} in {} (triage templates lists them)",
                    path.display()
                ));
                return ExitCode::from(exit::USAGE);
            }
            Err(e) => {
                stderr_line(&format!("error: {e:#}"));
                return ExitCode::from(exit::FATAL);
            }
        };
        match cli.output {
            OutputFormat::Json => match serde_json::to_string_pretty(&shown) {
                Ok(json) => println!("{json}"),
                Err(e) => {
                    stderr_line(&format!("error: cannot print the template: {e}"));
                    return ExitCode::from(exit::FATAL);
                }
            },
            _ => print!("{}", triage::templates::render_shown(&shown)),
        }
        return ExitCode::from(exit::OK);
    }
    let templates = match triage::templates::list(&path) {
        Ok(t) => t,
        Err(e) => {
            stderr_line(&format!("error: {e:#}"));
            return ExitCode::from(exit::FATAL);
        }
    };
    match cli.output {
        OutputFormat::Text | OutputFormat::Markdown => {
            print!("{}", triage::templates::render_text(&templates))
        }
        OutputFormat::Json => match serde_json::to_string_pretty(&templates) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                stderr_line(&format!("error: cannot print the templates: {e}"));
                return ExitCode::from(exit::FATAL);
            }
        },
    }
    ExitCode::from(exit::OK)
}

/// Logs on stderr: coloured only where colour is wanted, and stamped with the UTC time when
/// stderr is not a terminal (cron, CI), so a log file shows when each run happened.
fn init_tracing(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,triage={level}")));
    let terminal = std::io::stderr().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(cli.color.enabled(terminal, no_color));
    if terminal {
        builder.without_time().init();
    } else {
        builder
            .with_timer(triage::pipeline::progress::UtcRfc3339)
            .init();
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    stderr_line("interrupted: finishing the calls in flight (--shutdown-grace; press Ctrl-C again to stop at once)");
    // A second Ctrl-C or SIGTERM ends the run at once. The state store is consistent after
    // every commit, so ending here loses at most its last uncommitted batch, which the next
    // run processes again.
    tokio::spawn(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                stderr_line("interrupted again: stopping now");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            stderr_line("interrupted again: stopping now");
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
    });
}

/// A command that could not run: its error on stderr, and exit 75 when the state store is
/// locked by another run, else 1.
fn failed(e: &anyhow::Error) -> ExitCode {
    stderr_line(&format!("error: {e:#}"));
    let locked = matches!(
        e.downcast_ref::<triage::state::StateError>(),
        Some(triage::state::StateError::Locked { .. })
    );
    ExitCode::from(if locked { exit::LOCKED } else { exit::FATAL })
}
