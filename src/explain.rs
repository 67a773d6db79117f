//! `triage route --explain`: per problem, the `[[group]]` rule that shaped it (if any), the
//! route that matched and the ticket fields that result, for checking a config file against real logs before a run files anything.
//!
//! In: the report of a dry run without Jira and without state over `--input` (the same pipeline,
//! fingerprints and routing as a real run, so what is explained is what a run does), the
//! routes, and the defaults a problem without a route gets. Out: one [`Explained`] per problem,
//! as text or JSON. Pure: no I/O.

use serde::Serialize;

use crate::config::file::Rules;
use crate::jira::config::PriorityMap;
use crate::pipeline::report::{Report, TicketEntry};
use crate::route::{Fields, Routes};

/// What a problem's ticket would be like.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explained {
    pub fingerprint: String,
    pub service: Option<String>,
    pub template: String,
    pub category: &'static str,
    pub severity: &'static str,
    pub occurrences: u64,
    /// The `[[group]]` rule that applies to the problem's lines, and what it does; `None` when
    /// none does.
    pub group: Option<String>,
    /// The route that matched; `None` when none did (the defaults apply).
    pub route: Option<String>,
    /// The route mutes the problem today: its logs are skipped, no ticket is filed.
    pub muted: bool,
    pub project: Option<String>,
    pub issue_type: String,
    pub components: Vec<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    /// Labels the route adds (besides triage's own `triage-<fingerprint>`).
    pub labels: Vec<String>,
    /// The route's comment cooldown, in seconds; `None`: `--comment-cooldown`.
    pub comment_cooldown_secs: Option<u64>,
}

/// The settings a problem without a route (or a route that leaves a field out) gets.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub project: Option<String>,
    pub issue_type: String,
    pub priorities: PriorityMap,
}

/// Every problem of `report` (muted ones included), in the report's order, or only the one with
/// `fingerprint`.
pub fn explain(
    report: &Report,
    rules: &Rules,
    defaults: &Defaults,
    today: chrono::NaiveDate,
    fingerprint: Option<&str>,
) -> Vec<Explained> {
    report
        .tickets
        .iter()
        .chain(&report.muted)
        .filter(|t| fingerprint.is_none_or(|fp| t.fingerprint == fp))
        .map(|t| {
            let mut e = one(t, &rules.routes, defaults, today);
            e.group = rules
                .groups
                .first(t.service.as_deref().unwrap_or(""), &t.template)
                .map(|g| g.describe());
            e
        })
        .collect()
}

fn one(
    t: &TicketEntry,
    routes: &Routes,
    defaults: &Defaults,
    today: chrono::NaiveDate,
) -> Explained {
    let route = t
        .route
        .as_deref()
        .and_then(|name| routes.iter().find(|r| r.name == name));
    let f = Fields::of(route, today);
    Explained {
        fingerprint: t.fingerprint.clone(),
        service: t.service.clone(),
        template: t.template.clone(),
        category: t.category,
        severity: t.severity,
        occurrences: t.occurrences,
        group: None,
        route: f.route.clone(),
        muted: f.muted,
        project: f.project.clone().or_else(|| defaults.project.clone()),
        issue_type: f
            .issue_type
            .clone()
            .unwrap_or_else(|| defaults.issue_type.clone()),
        components: f.components.clone(),
        assignee: f.assignee.clone(),
        priority: f
            .priority
            .clone()
            .or_else(|| defaults.priorities.get(t.severity).map(str::to_string)),
        labels: f.labels.clone(),
        comment_cooldown_secs: f.comment_cooldown.map(|d| d.as_secs()),
    }
}

/// The text form: a block per problem.
pub fn render_text(entries: &[Explained]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str("no problem in the input\n");
    }
    for e in entries {
        let _ = writeln!(
            out,
            "{}  {}  {} ({} log{})",
            e.fingerprint,
            e.service.as_deref().unwrap_or("(no service)"),
            e.template,
            e.occurrences,
            if e.occurrences == 1 { "" } else { "s" }
        );
        if let Some(g) = &e.group {
            let _ = writeln!(out, "  group: {g}");
        }
        let _ = writeln!(
            out,
            "  route: {} ({} / {})",
            e.route.as_deref().unwrap_or("(none: the defaults)"),
            e.category,
            e.severity
        );
        if e.muted {
            out.push_str("  muted: its logs are recorded as skipped, no ticket\n");
            continue;
        }
        let mut fields = vec![
            format!(
                "project {}",
                e.project.as_deref().unwrap_or("(JIRA_PROJECT, not set)")
            ),
            format!("issue type {}", e.issue_type),
        ];
        if !e.components.is_empty() {
            fields.push(format!("components {}", e.components.join(", ")));
        }
        if let Some(a) = &e.assignee {
            fields.push(format!("assignee {a}"));
        }
        fields.push(format!(
            "priority {}",
            e.priority.as_deref().unwrap_or("(Jira's default)")
        ));
        if !e.labels.is_empty() {
            fields.push(format!("labels {}", e.labels.join(", ")));
        }
        if let Some(s) = e.comment_cooldown_secs {
            fields.push(format!("comment cooldown {s}s"));
        }
        let _ = writeln!(out, "  ticket: {}", fields.join("; "));
    }
    out
}
