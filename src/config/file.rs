//! The config file, `triage.toml`: settings under their flags' long names, and the routes.
//!
//! In: the file's path (`--config PATH` / `TRIAGE_CONFIG`, else `./triage.toml`, else
//! `$XDG_CONFIG_HOME/triage/triage.toml` or `~/.config/triage/triage.toml`) and the clap command
//! the settings belong to. Out: [`FileSettings`], the settings as command-line arguments (so that
//! clap checks them exactly as it checks a flag) and the checked [`Routes`], or every problem in
//! the file, each named `FILE:LINE:COLUMN: what is wrong`.
//!
//! The file is flat: a top-level key is a flag's long name in snake_case (`workers = 10`,
//! `rate_limit = 20`, `jira_project = "OPS"`, `dry_run = true`), plus the `[[route]]` tables.
//! Secrets (`jira_api_token`, `dd_api_key`, ...) are refused with the key's name: they stay in
//! the environment or `.env`. Applying the file is the caller's: a setting already given as a
//! flag, in the environment or in `.env` is left alone (flag > environment > `.env` > file >
//! default).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::grouping::{GroupRule, GroupRules};
use crate::route::{Glob, Route, Routes};

/// The file name looked for in the working directory and in `$XDG_CONFIG_HOME/triage/`.
pub const FILE_NAME: &str = "triage.toml";

/// Keys that are secrets: never read from the file (each with the variable to use instead).
const SECRETS: &[(&str, &str)] = &[
    ("dd_api_key", "DD_API_KEY"),
    ("datadog_api_key", "DD_API_KEY"),
    ("dd_app_key", "DD_APP_KEY"),
    ("datadog_app_key", "DD_APP_KEY"),
    ("dd_application_key", "DD_APP_KEY"),
    ("jira_api_token", "JIRA_API_TOKEN"),
    ("jira_token", "JIRA_API_TOKEN"),
    ("jira_pat", "JIRA_PAT"),
    ("openai_api_key", "OPENAI_API_KEY"),
    ("llm_api_key", "OPENAI_API_KEY"),
];

/// Flags that make no sense in the file.
const NOT_IN_FILE: &[(&str, &str)] = &[
    ("config", "the file cannot name another config file"),
    (
        "env_file",
        "the .env file is read before the config file; give --env-file on the command line",
    ),
    ("help", "not a setting"),
    ("version", "not a setting"),
];

/// The keys a `[[route]]` table may hold.
pub const ROUTE_KEYS: &[&str] = &[
    "name",
    "service",
    "tags",
    "status",
    "category",
    "severity",
    "template",
    "project",
    "issue_type",
    "components",
    "assignee",
    "priority",
    "labels",
    "comment_cooldown",
    "mute",
    "until",
];

/// The keys a `[[group]]` table may hold.
pub const GROUP_KEYS: &[&str] = &["name", "service", "template", "split", "fingerprint"];

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct FileError {
    pub path: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

/// A setting of the file, ready to be given to clap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileArg {
    /// The argument's id in the clap command.
    pub id: String,
    /// The arguments that set it (`--workers=10`, `--dry-run`, `--verbose --verbose`).
    pub args: Vec<OsString>,
}

/// What the file holds, checked.
#[derive(Debug, Clone, Default)]
pub struct FileSettings {
    /// The file, as found.
    pub path: PathBuf,
    /// Its settings, in file order.
    pub args: Vec<FileArg>,
    /// Its routes, in file order.
    pub routes: Routes,
    /// Its `[[group]]` rules, in file order.
    pub groups: GroupRules,
}

/// What the config file says beyond settings: where tickets go, and how logs group.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub routes: Routes,
    pub groups: GroupRules,
}

impl FileSettings {
    /// Its routes and group rules.
    pub fn rules(&self) -> Rules {
        Rules {
            routes: self.routes.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// Which file to read: the one `--config` / `TRIAGE_CONFIG` names (it must exist), else
/// `./triage.toml`, else `$XDG_CONFIG_HOME/triage/triage.toml` (`~/.config/...` without it).
/// `Ok(None)` when none exists; `Err` when the named one does not.
pub fn locate(
    given: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<PathBuf>, String> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(Some(path.to_path_buf()))
        } else {
            Err(format!(
                "--config {}: no such file (TRIAGE_CONFIG names it too)",
                path.display()
            ))
        };
    }
    let here = PathBuf::from(FILE_NAME);
    if here.is_file() {
        return Ok(Some(here));
    }
    let dir = env("XDG_CONFIG_HOME")
        .filter(|d| !d.trim().is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|d| !d.trim().is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    Ok(dir
        .map(|d| d.join("triage").join(FILE_NAME))
        .filter(|p| p.is_file()))
}

/// Read and check a config file.
pub fn load(path: &Path, command: &clap::Command) -> Result<FileSettings, Vec<FileError>> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![FileError {
            path: shown.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    let mut settings = parse(&shown, &text, command)?;
    settings.path = path.to_path_buf();
    Ok(settings)
}

/// Check the text of a config file named `path` (the name is only used in errors).
pub fn parse(
    path: &str,
    text: &str,
    command: &clap::Command,
) -> Result<FileSettings, Vec<FileError>> {
    let mut p = Checker {
        path,
        text,
        errors: Vec::new(),
    };
    let (table, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let at = e.span().map_or(0, |s| s.start);
        p.error(at, format!("not valid TOML: {}", e.message().trim()));
    }
    let mut settings = FileSettings::default();
    let mut entries: Vec<(&Spanned<toml::de::DeString<'_>>, &Spanned<DeValue<'_>>)> =
        table.get_ref().iter().collect();
    // The map is sorted by key: errors and settings follow the file instead.
    entries.sort_by_key(|(k, _)| k.span().start);
    for (key, value) in entries {
        let name = key.get_ref().as_ref();
        let at = key.span().start;
        if name == "route" {
            settings.routes = Routes::new(p.routes(value));
            continue;
        }
        if name == "group" {
            settings.groups = GroupRules::new(p.groups(value));
            continue;
        }
        if let Some((_, var)) = SECRETS.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            p.error(
                at,
                format!("`{name}` is a secret: secrets are read only from the environment or .env, never from the config file; remove it and set {var}"),
            );
            continue;
        }
        if let Some((_, why)) = NOT_IN_FILE.iter().find(|(k, _)| *k == name) {
            p.error(
                at,
                format!("`{name}` cannot be set in the config file: {why}"),
            );
            continue;
        }
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long().is_some_and(|l| l.replace('-', "_") == name))
        else {
            p.error(
                at,
                format!("unknown key `{name}`: a key is a flag's long name in snake_case (see `triage --help`), [[route]] or [[group]]"),
            );
            continue;
        };
        if let Some(arg) = p.setting(arg, value) {
            settings.args.push(arg);
        }
    }
    if p.errors.is_empty() {
        Ok(settings)
    } else {
        p.errors.sort_by_key(|e| (e.line, e.column));
        Err(p.errors)
    }
}

/// The command line with the file's settings under it: each setting that no flag and no
/// environment variable (`.env` included: it is applied to the environment first) gave in
/// `matches` is put before the user's arguments, so flag > environment > `.env` > file.
pub fn combine(
    settings: &FileSettings,
    matches: &clap::ArgMatches,
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<OsString> {
    use clap::parser::ValueSource;
    let from_user = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut combined = vec![args.first().cloned().unwrap_or_else(|| "triage".into())];
    for arg in &settings.args {
        let overridden = from_user(&arg.id)
            // The environment's other name for a setting wins over the file too.
            || (arg.id == "jira_project" && env("JIRA_PROJECT_KEY").is_some())
            // -q and -v exclude each other: the user's choice wins over the file's.
            || (arg.id == "verbose" && from_user("quiet"))
            || (arg.id == "quiet" && from_user("verbose"));
        if !overridden {
            combined.extend(arg.args.iter().cloned());
        }
    }
    combined.extend(args.iter().skip(1).cloned());
    combined
}

struct Checker<'a> {
    path: &'a str,
    text: &'a str,
    errors: Vec<FileError>,
}

impl Checker<'_> {
    fn error(&mut self, offset: usize, message: String) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.errors.push(FileError {
            path: self.path.to_string(),
            line,
            column,
            message,
        });
    }

    /// A top-level setting as clap arguments, checked by the flag's own value parser.
    fn setting(&mut self, arg: &clap::Arg, value: &Spanned<DeValue<'_>>) -> Option<FileArg> {
        let long = arg.get_long().unwrap_or_default();
        let key = long.replace('-', "_");
        let at = value.span().start;
        let id = arg.get_id().as_str().to_string();
        let flag = OsString::from(format!("--{long}"));
        match arg.get_action() {
            clap::ArgAction::SetTrue => match value.get_ref() {
                DeValue::Boolean(b) => Some(FileArg {
                    id,
                    args: if *b { vec![flag] } else { Vec::new() },
                }),
                other => {
                    self.error(
                        at,
                        format!("`{key}` must be true or false, not {}", other.type_str()),
                    );
                    None
                }
            },
            clap::ArgAction::Count => {
                match integer(value.get_ref()).filter(|n| (0..=3).contains(n)) {
                    Some(n) => Some(FileArg {
                        id,
                        args: (0..n).map(|_| flag.clone()).collect(),
                    }),
                    None => {
                        self.error(at, format!("`{key}` must be a whole number from 0 to 3"));
                        None
                    }
                }
            }
            _ => {
                let text = match value.get_ref() {
                    DeValue::String(s) => s.to_string(),
                    DeValue::Integer(_) => integer(value.get_ref())?.to_string(),
                    DeValue::Boolean(b) => b.to_string(),
                    // A list setting (`redact = ["emails", "ips"]`) as the flag's comma list.
                    DeValue::Array(items) if items.iter().all(|i| i.get_ref().is_str()) => items
                        .iter()
                        .filter_map(|i| i.get_ref().as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    other => {
                        self.error(
                            at,
                            format!(
                                "`{key}` must be a string or a number, not {}",
                                other.type_str()
                            ),
                        );
                        return None;
                    }
                };
                // The flag's own parser, on its own (no environment, no other flag).
                let alone = clap::Command::new("triage")
                    .no_binary_name(true)
                    .arg(arg.clone().env(None::<&str>).global(false));
                if let Err(e) = alone.try_get_matches_from([format!("--{long}={text}")]) {
                    self.error(at, format!("`{key}` = {text:?}: {}", clap_reason(&e)));
                    return None;
                }
                Some(FileArg {
                    id,
                    args: vec![OsString::from(format!("--{long}={text}"))],
                })
            }
        }
    }

    /// The `[[route]]` tables.
    fn routes(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<Route> {
        let DeValue::Array(tables) = value.get_ref() else {
            self.error(
                value.span().start,
                "`route` must be an array of tables: write each route as [[route]]".into(),
            );
            return Vec::new();
        };
        let mut routes: Vec<Route> = Vec::new();
        for item in tables.iter() {
            let DeValue::Table(table) = item.get_ref() else {
                self.error(
                    item.span().start,
                    "each route must be a table ([[route]])".into(),
                );
                continue;
            };
            if let Some(route) = self.route(item.span().start, table) {
                if routes.iter().any(|r| r.name == route.name) {
                    let at = table
                        .iter()
                        .find(|(k, _)| k.get_ref().as_ref() == "name")
                        .map_or(item.span().start, |(_, v)| v.span().start);
                    self.error(
                        at,
                        format!(
                            "route name `{}` is used twice: names must be unique",
                            route.name
                        ),
                    );
                    continue;
                }
                routes.push(route);
            }
        }
        routes
    }

    fn route(&mut self, start: usize, table: &DeTable<'_>) -> Option<Route> {
        let before = self.errors.len();
        let mut route = Route::default();
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut until_at = None;
        for (key, value) in entries {
            let name = key.get_ref().as_ref();
            let at = value.span().start;
            let v = value.get_ref();
            match name {
                "name" => route.name = self.rule_name("route", at, v),
                "service" => route.service = self.string(name, at, v).map(|s| Glob::new(&s)),
                "tags" => route.tags = self.strings(name, at, v),
                "status" => {
                    route.status = self
                        .strings(name, at, v)
                        .into_iter()
                        .map(|s| s.to_ascii_lowercase())
                        .collect()
                }
                "category" => {
                    route.category = self.strings(name, at, v);
                    self.check_one_of(at, "category", &route.category, crate::analyze::CATEGORIES);
                }
                "severity" => {
                    route.severity = self.strings(name, at, v);
                    let severities = ["critical", "high", "medium", "low"];
                    self.check_one_of(at, "severity", &route.severity, &severities);
                }
                "template" => route.template = self.regex(name, at, v),
                "project" => route.project = self.string(name, at, v).map(|s| s.trim().to_string()),
                "issue_type" => route.issue_type = self.string(name, at, v),
                "components" => route.components = self.strings(name, at, v),
                "assignee" => route.assignee = self.string(name, at, v),
                "priority" => route.priority = self.string(name, at, v),
                "labels" => {
                    route.labels = self.strings(name, at, v);
                    for l in &route.labels {
                        if l.is_empty() || l.contains(char::is_whitespace) || l.len() > 255 {
                            self.error(at, format!("label `{l}`: a Jira label has no spaces and at most 255 characters"));
                        }
                    }
                }
                "comment_cooldown" => route.comment_cooldown = self.cooldown(name, at, v),
                "mute" => match v {
                    DeValue::Boolean(b) => route.mute = *b,
                    other => self.error(
                        at,
                        format!("`mute` must be true or false, not {}", other.type_str()),
                    ),
                },
                "until" => {
                    until_at = Some(at);
                    route.until = self.date("until", at, v);
                }
                other => self.error(
                    key.span().start,
                    format!(
                        "unknown route key `{other}`: a route takes {}",
                        ROUTE_KEYS.join(", ")
                    ),
                ),
            }
        }
        if route.name.is_empty() && self.errors.len() == before {
            self.error(
                start,
                "a route needs a `name` (unique; shown in reports and errors)".into(),
            );
        }
        if let (Some(at), false) = (until_at, route.mute) {
            self.error(at, "`until` ends a mute: it needs `mute = true`".into());
        }
        (self.errors.len() == before).then_some(route)
    }

    /// Each of `values` must be one of `allowed`.
    fn check_one_of(&mut self, at: usize, what: &str, values: &[String], allowed: &[&str]) {
        for v in values {
            if !allowed.contains(&v.as_str()) {
                self.error(
                    at,
                    format!("{what} `{v}` is not one of {}", allowed.join(", ")),
                );
            }
        }
    }

    /// A duration: a number of seconds, or text like `30m` (`--comment-cooldown`'s form).
    fn cooldown(&mut self, name: &str, at: usize, v: &DeValue<'_>) -> Option<std::time::Duration> {
        let text = match v {
            DeValue::Integer(_) => integer(v).map(|n| n.to_string()),
            _ => self.string(name, at, v),
        }?;
        match crate::config::cli::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(at, format!("`{name}`: {e}"));
                None
            }
        }
    }

    /// A date (`2026-12-31`), as a TOML date or a string.
    fn date(&mut self, name: &str, at: usize, v: &DeValue<'_>) -> Option<chrono::NaiveDate> {
        let text = match v {
            DeValue::Datetime(d) => d.to_string(),
            DeValue::String(s) => s.to_string(),
            other => {
                self.error(
                    at,
                    format!(
                        "`{name}` must be a date (2026-12-31), not {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        match chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                self.error(
                    at,
                    format!("`{name}` = {text}: expected a date like 2026-12-31"),
                );
                None
            }
        }
    }

    /// The `[[group]]` tables.
    fn groups(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<GroupRule> {
        let DeValue::Array(tables) = value.get_ref() else {
            self.error(
                value.span().start,
                "`group` must be an array of tables: write each rule as [[group]]".into(),
            );
            return Vec::new();
        };
        let mut groups: Vec<GroupRule> = Vec::new();
        for item in tables.iter() {
            let DeValue::Table(table) = item.get_ref() else {
                self.error(
                    item.span().start,
                    "each group rule must be a table ([[group]])".into(),
                );
                continue;
            };
            if let Some(rule) = self.group(item.span().start, table) {
                if groups.iter().any(|g| g.name == rule.name) {
                    self.error(
                        item.span().start,
                        format!(
                            "group name `{}` is used twice: names must be unique",
                            rule.name
                        ),
                    );
                    continue;
                }
                groups.push(rule);
            }
        }
        groups
    }

    fn group(&mut self, start: usize, table: &DeTable<'_>) -> Option<GroupRule> {
        let before = self.errors.len();
        let mut rule = GroupRule::default();
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in entries {
            let name = key.get_ref().as_ref();
            let at = value.span().start;
            let v = value.get_ref();
            match name {
                "name" => rule.name = self.rule_name("group", at, v),
                "service" => rule.service = self.string(name, at, v).map(|s| Glob::new(&s)),
                "template" => rule.template = self.regex(name, at, v),
                "split" => {
                    rule.split = self.strings(name, at, v);
                    for w in &rule.split {
                        if w.is_empty() || w.contains(char::is_whitespace) {
                            self.error(at, format!("`split` word {w:?}: one word, without spaces"));
                        }
                    }
                }
                "fingerprint" => {
                    if let Some(s) = self.string(name, at, v) {
                        let ok = !s.is_empty()
                            && s.len() <= 200
                            && s.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
                            });
                        if !ok {
                            self.error(
                                at,
                                format!("`fingerprint` = {s:?}: 1 to 200 of A-Z a-z 0-9 . _ : - (it becomes the ticket's label triage-NAME)"),
                            );
                        }
                        rule.fingerprint = Some(s);
                    }
                }
                other => self.error(
                    key.span().start,
                    format!(
                        "unknown group key `{other}`: a group rule takes {}",
                        GROUP_KEYS.join(", ")
                    ),
                ),
            }
        }
        if self.errors.len() == before {
            if rule.name.is_empty() {
                self.error(
                    start,
                    "a group rule needs a `name` (unique; shown by triage route --explain)".into(),
                );
            } else if rule.split.is_empty() == rule.fingerprint.is_none() {
                self.error(
                    start,
                    format!(
                        "group `{}` needs exactly one of `split` (words that are never variables) and `fingerprint` (one problem for every matching log)",
                        rule.name
                    ),
                );
            }
        }
        (self.errors.len() == before).then_some(rule)
    }

    /// A route's or group rule's `name`: a string, not empty (trimmed).
    fn rule_name(&mut self, kind: &str, at: usize, v: &DeValue<'_>) -> String {
        let name = self.string("name", at, v).unwrap_or_default();
        if matches!(v, DeValue::String(_)) && name.trim().is_empty() {
            self.error(at, format!("{kind} `name` must not be empty"));
        }
        name.trim().to_string()
    }

    /// A regex, such as a `template`.
    fn regex(&mut self, key: &str, at: usize, v: &DeValue<'_>) -> Option<regex::Regex> {
        let text = self.string(key, at, v)?;
        regex::Regex::new(&text)
            .map_err(|e| self.error(at, format!("`{key}` is not a regex: {e}")))
            .ok()
    }

    fn string(&mut self, key: &str, at: usize, v: &DeValue<'_>) -> Option<String> {
        match v {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    at,
                    format!("`{key}` must be a string, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn strings(&mut self, key: &str, at: usize, v: &DeValue<'_>) -> Vec<String> {
        match v {
            DeValue::String(s) => vec![s.to_string()],
            DeValue::Array(items) if items.iter().all(|i| i.get_ref().is_str()) => items
                .iter()
                .filter_map(|i| i.get_ref().as_str().map(str::to_string))
                .collect(),
            other => {
                self.error(
                    at,
                    format!(
                        "`{key}` must be a list of strings, not {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }
}

fn integer(v: &DeValue<'_>) -> Option<i64> {
    let DeValue::Integer(n) = v else { return None };
    i64::from_str_radix(&n.as_str().replace('_', ""), n.radix()).ok()
}

/// What clap's value parser said, without its `error:` prefix and usage lines.
fn clap_reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("expected one of {}", valid.join(", "));
    }
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "not a valid value".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<FileSettings, Vec<FileError>> {
        parse("triage.toml", text, &crate::config::cli::command())
    }

    fn args(s: &FileSettings) -> Vec<String> {
        s.args
            .iter()
            .flat_map(|a| a.args.iter().map(|x| x.to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn group_rules_are_checked_with_their_line() {
        let ok = check(
            "[[group]]\nname = \"breaker\"\nservice = \"payments*\"\nsplit = [\"OPEN\", \"CLOSED\"]\n\
             [[group]]\nname = \"timeouts\"\ntemplate = \"(?i)timed out\"\nfingerprint = \"any-timeout\"\n",
        )
        .unwrap();
        let names: Vec<&str> = ok.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["breaker", "timeouts"]);
        assert_eq!(
            ok.groups.fingerprint("checkout", "request timed out"),
            Some("any-timeout")
        );
        let errors = check(
            "[[group]]\nname = \"a\"\nsplit = [\"x\"]\nfingerprint = \"f\"\n\
             [[group]]\nname = \"b\"\nfingerprint = \"has space\"\n\
             [[group]]\nname = \"c\"\nsplit = [\"x\"]\nwords = 1\n\
             [[group]]\nsplit = [\"x\"]\n\
             [[group]]\nname = \"e\"\ntemplate = \"(\"\nsplit = [\"x\"]\n",
        )
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text[0].starts_with("triage.toml:1:") && text[0].contains("exactly one of `split`"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with("triage.toml:7:") && text[1].contains("`fingerprint`"),
            "{text:?}"
        );
        assert!(
            text[2].starts_with("triage.toml:11:") && text[2].contains("unknown group key `words`"),
            "{text:?}"
        );
        assert!(text[3].contains("needs a `name`"), "{text:?}");
        assert!(
            text[4].starts_with("triage.toml:16:") && text[4].contains("not a regex"),
            "{text:?}"
        );
    }

    #[test]
    fn settings_become_flags_in_file_order() {
        let s = check(
            "workers = 10\nrate_limit = 20\njira_project = \"OPS\"\ndry_run = true\nasync = false\n\
             comment_cooldown = \"30m\"\nredact = [\"emails\", \"ips\"]\nverbose = 2\n",
        )
        .unwrap();
        assert_eq!(
            args(&s),
            [
                "--workers=10",
                "--rate-limit=20",
                "--jira-project=OPS",
                "--dry-run",
                "--comment-cooldown=30m",
                "--redact=emails,ips",
                "--verbose",
                "--verbose"
            ]
        );
        assert!(s.routes.is_empty());
    }

    #[test]
    fn every_error_is_reported_with_line_and_column() {
        let errors = check(
            "workers = 0\nnope = 1\n  jira_api_token = \"s3cret\"\ndry_run = \"yes\"\n\
             [[route]]\nname = \"a\"\nseverity = [\"urgent\"]\nwhat = 1\n[[route]]\nname = \"a\"\n",
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 6, "{shown:#?}");
        assert!(
            shown[0].starts_with(
                "triage.toml:1:11: `workers` = \"0\": expected a whole number in 1..=256"
            ),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("triage.toml:2:1: unknown key `nope`"),
            "{shown:#?}"
        );
        assert!(
            shown[2].starts_with("triage.toml:3:3: `jira_api_token` is a secret"),
            "{shown:#?}"
        );
        assert!(shown[2].contains("JIRA_API_TOKEN") && !shown[2].contains("s3cret"));
        assert!(
            shown[3].starts_with("triage.toml:4:11: `dry_run` must be true or false"),
            "{shown:#?}"
        );
        assert!(
            shown[4].starts_with("triage.toml:7:12: severity `urgent`"),
            "{shown:#?}"
        );
        assert!(
            shown[5].starts_with("triage.toml:8:1: unknown route key `what`"),
            "{shown:#?}"
        );
        let dup = check("[[route]]\nname = \"a\"\n[[route]]\nname = \"a\"\n").unwrap_err();
        assert!(
            dup[0]
                .to_string()
                .starts_with("triage.toml:4:8: route name `a` is used twice"),
            "{dup:?}"
        );
        let syntax = check("workers = \n").unwrap_err();
        assert!(
            syntax[0].to_string().contains("not valid TOML"),
            "{syntax:?}"
        );
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        use clap::FromArgMatches;
        let command = crate::config::cli::command();
        let settings = check(
            "async = true\nworkers = 7\nrate_limit = 5\njira_project = \"OPS\"\nverbose = 2\n",
        )
        .unwrap();
        let parse = |user: &[&str], env: &[(&str, &str)]| {
            let args: Vec<OsString> = std::iter::once("triage")
                .chain(user.iter().copied())
                .map(OsString::from)
                .collect();
            let first = command.clone().try_get_matches_from(&args).unwrap();
            let env: std::collections::HashMap<String, String> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let combined = combine(&settings, &first, &args, &|k| env.get(k).cloned());
            let m = command.clone().try_get_matches_from(combined).unwrap();
            crate::config::cli::Cli::from_arg_matches(&m).unwrap()
        };
        let cli = parse(&[], &[]);
        assert!(cli.async_mode);
        assert_eq!((cli.workers, cli.rate_limit, cli.verbose), (7, 5, 2));
        assert_eq!(cli.jira_project.as_deref(), Some("OPS"));
        assert_eq!(cli.batch_size, 1000, "not in the file: the default");
        let cli = parse(&["--workers", "3", "status", "--rate-limit=9", "-q"], &[]);
        assert_eq!(
            (cli.workers, cli.rate_limit),
            (3, 9),
            "flags, also after a subcommand"
        );
        assert!(
            cli.quiet && cli.verbose == 0,
            "-q on the command line drops the file's -v"
        );
        // JIRA_PROJECT_KEY, the environment's other name for --jira-project, wins too.
        let cli = parse(&[], &[("JIRA_PROJECT_KEY", "ENV")]);
        assert_eq!(cli.jira_project, None);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/triage.toml");
        let s = load(&path, &crate::config::cli::command()).expect("examples/triage.toml is valid");
        let names: Vec<&str> = s.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["payments", "database", "search-timeouts", "staging"]
        );
        assert!(!s.args.is_empty());
    }

    #[test]
    fn routes_keep_the_contract_keys() {
        let s = check(
            r#"
[[route]]
name = "payments"
service = "payments-*"
tags = ["env:prod"]
status = ["error", "critical"]
category = ["database"]
severity = ["critical", "high"]
template = "(?i)timeout"
project = "PAY"
issue_type = "Bug"
components = ["Payments"]
assignee = "5b10ac8d82e05b22cc7d4ef5"
priority = "Highest"
labels = ["team-payments"]
comment_cooldown = "30m"
mute = true
until = 2026-12-31

[[route]]
name = "rest"
"#,
        )
        .unwrap();
        let r: Vec<&Route> = s.routes.iter().collect();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "payments");
        assert_eq!(r[0].service.as_ref().map(Glob::as_str), Some("payments-*"));
        assert_eq!(r[0].components, ["Payments"]);
        assert_eq!(
            r[0].comment_cooldown,
            Some(std::time::Duration::from_secs(1800))
        );
        assert_eq!(
            r[0].until.map(|d| d.to_string()).as_deref(),
            Some("2026-12-31")
        );
        assert!(r[0].mute);
        assert_eq!(r[1].name, "rest");
        let e = check("[[route]]\nproject = \"X\"\n").unwrap_err();
        assert!(e[0].message.contains("needs a `name`"), "{e:?}");
        let e = check("[[route]]\nname = \"x\"\nuntil = \"2026-12-31\"\n").unwrap_err();
        assert!(e[0].message.contains("needs `mute = true`"), "{e:?}");
    }
}
