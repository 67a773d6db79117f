//! The `triage` binary: glue only. Loads `.env`, parses the command line, sets up logging to
//! stderr, runs the pipeline on a tokio runtime, prints the summary on stdout, and exits with
//! the code DESIGN.md fixes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use triage::cli::{Cli, Command, OutputFormat};
use triage::config::{Config, ConfigError};
use triage::exit;

fn main() -> ExitCode {
    // `.env` never overrides the real environment, so flag > env > .env > default holds.
    let dotenv = dotenvy::dotenv();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(&cli);
    if let Err(e) = dotenv {
        if !e.not_found() {
            tracing::warn!("ignoring .env: {e}");
        }
    }
    let workers_given = matches!(
        matches.value_source("workers"),
        Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
    );
    let env = |name: &str| std::env::var(name).ok();
    if cli.command == Some(Command::Check) {
        return check(&cli, &env);
    }
    if cli.command == Some(Command::Templates) {
        return templates(&cli, &env);
    }
    let (mut config, notices) = match Config::from_cli(&cli, workers_given, &env) {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(match e {
                ConfigError::Usage(_) => exit::USAGE,
                ConfigError::Fatal(_) => exit::FATAL,
            });
        }
    };
    for notice in notices {
        eprintln!("note: {notice}");
    }
    config.progress = !cli.quiet && std::io::stderr().is_terminal();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FATAL);
        }
    };
    let result = runtime.block_on(triage::run(config, shutdown_signal()));
    // Do not wait for a reader still blocked on an open stdin after an interrupt or --limit.
    runtime.shutdown_background();
    match result {
        Ok(report) => {
            match cli.output {
                OutputFormat::Text => print!("{}", triage::report::render_text(&report)),
                OutputFormat::Json => match serde_json::to_string_pretty(&report.summary) {
                    Ok(json) => println!("{json}"),
                    Err(e) => eprintln!("error: cannot print the summary: {e}"),
                },
            }
            if let Some(e) = &report.summary.error {
                eprintln!("error: {e}");
            }
            ExitCode::from(triage::exit_code(&report))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            let locked = matches!(
                e.downcast_ref::<triage::state::StateError>(),
                Some(triage::state::StateError::Locked { .. })
            );
            ExitCode::from(if locked { exit::LOCKED } else { exit::FATAL })
        }
    }
}

/// `triage check`: one line per service on stdout; 0 only if every configured one passes.
fn check(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    let config = match Config::for_check(cli, env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(match e {
                ConfigError::Usage(_) => exit::USAGE,
                ConfigError::Fatal(_) => exit::FATAL,
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FATAL);
        }
    };
    let lines = runtime.block_on(triage::check::run(&config));
    for line in &lines {
        println!("{line}");
    }
    if triage::check::all_passed(&lines) {
        ExitCode::from(exit::OK)
    } else {
        if lines.iter().all(|l| l.ok.is_none()) {
            eprintln!("error: no service is configured: set DD_API_KEY/DD_APP_KEY and the JIRA_* variables (see .env.example)");
        }
        ExitCode::from(exit::FATAL)
    }
}

/// `triage templates`: the learned templates of the state store, as text or JSON, on stdout.
fn templates(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    let Some(path) = triage::config::state_path(cli, env) else {
        eprintln!("error: no state store: give --state PATH (or set XDG_STATE_HOME or HOME)");
        return ExitCode::from(exit::USAGE);
    };
    let templates = match triage::grouping::list::list(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(exit::FATAL);
        }
    };
    match cli.output {
        OutputFormat::Text => print!("{}", triage::grouping::list::render_text(&templates)),
        OutputFormat::Json => match serde_json::to_string_pretty(&templates) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("error: cannot print the templates: {e}");
                return ExitCode::from(exit::FATAL);
            }
        },
    }
    ExitCode::from(exit::OK)
}

fn init_tracing(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,triage={level}")));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .without_time()
        .init();
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
    eprintln!("interrupted: finishing the logs in flight (press Ctrl-C again to abort)");
    // A second Ctrl-C aborts at once.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
    });
}
