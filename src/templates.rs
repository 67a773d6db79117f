//! `triage templates`: the templates a state store has learned, for people and scripts.
//!
//! In: the state file (`--state PATH` or the default one). Out: every learned template with its
//! fingerprint, count, first and last seen and ticket, as a text table or JSON (an array of
//! objects); or, with `--show FP`, one template in detail: each variable position with how
//! many distinct values it held and a few of them, and the fingerprints merged into it, so a
//! user can see why two logs share a ticket. Fails only when the store cannot be read; a
//! missing store, or one an older version wrote, has no templates yet.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::grouping::mask::VAR;
use crate::grouping::store::{SeenValues, StoredTemplate, TRACKED_VALUES};
use crate::state::{Scope, StateStore};

/// The learned templates of the store at `path`, most frequent first.
pub fn list(path: &Path) -> anyhow::Result<Vec<StoredTemplate>> {
    let Some(store) = StateStore::open_read_only(path, Scope::default())? else {
        return Ok(Vec::new());
    };
    let mut templates = store.load_templates()?.templates;
    templates.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
    Ok(templates)
}

/// One line per template: fingerprint, count, first and last seen, ticket, service, template.
pub fn render_text(templates: &[StoredTemplate]) -> String {
    let mut out = String::new();
    if templates.is_empty() {
        out.push_str("No templates learned yet.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16}  {:>8}  {:<20}  {:<20}  {:<10}  {:<12}  TEMPLATE",
        "FINGERPRINT", "COUNT", "FIRST SEEN", "LAST SEEN", "TICKET", "SERVICE"
    );
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    };
    for t in templates {
        let _ = writeln!(
            out,
            "{:<16}  {:>8}  {:<20}  {:<20}  {:<10}  {:<12}  {}",
            t.fingerprint,
            t.count,
            when(t.first_seen),
            when(t.last_seen),
            t.ticket.as_deref().unwrap_or("-"),
            if t.service.is_empty() {
                "-"
            } else {
                &t.service
            },
            t.template
        );
    }
    out
}

/// One template in detail (`triage templates --show FP`).
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub fingerprint: String,
    pub service: String,
    pub template: String,
    pub count: u64,
    pub first_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    pub ticket: Option<String>,
    /// Fingerprints of templates merged into this one (their labels find its ticket too).
    pub merged: Vec<String>,
    pub variables: Vec<ShownVariable>,
}

/// A variable position of a shown template.
#[derive(Debug, Clone, Serialize)]
pub struct ShownVariable {
    /// The token's position in the template (0-based).
    pub position: usize,
    /// Distinct values seen (counted up to a limit).
    pub distinct: usize,
    /// More distinct values than `distinct` were seen.
    pub more: bool,
    pub samples: Vec<String>,
}

/// The template with fingerprint `fp` (or the one a merged `fp` now means), in detail.
pub fn show(path: &Path, fp: &str) -> anyhow::Result<Option<Shown>> {
    let Some(store) = StateStore::open_read_only(path, Scope::default())? else {
        return Ok(None);
    };
    let snapshot = store.load_templates()?;
    let mut target = fp.to_string();
    for _ in 0..64 {
        match snapshot.merges.iter().find(|m| m.from == target) {
            Some(m) if m.into != target => target = m.into.clone(),
            _ => break,
        }
    }
    let Some(t) = snapshot.templates.iter().find(|t| t.fingerprint == target) else {
        return Ok(None);
    };
    let mut merged: Vec<String> = snapshot
        .merges
        .iter()
        .filter(|m| m.into == t.fingerprint)
        .map(|m| m.from.clone())
        .collect();
    merged.sort();
    let mut variables: Vec<ShownVariable> = t
        .tokens
        .iter()
        .enumerate()
        .filter(|(_, tok)| tok.as_str() == VAR)
        .map(|(p, _)| {
            let seen = t.values.iter().find(|v| v.position() == p);
            ShownVariable {
                position: p,
                distinct: seen.map_or(0, SeenValues::distinct),
                more: seen.is_some_and(SeenValues::more),
                samples: seen
                    .map(|v| v.samples().map(str::to_string).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    variables.sort_by_key(|v| v.position);
    Ok(Some(Shown {
        fingerprint: t.fingerprint.clone(),
        service: t.service.clone(),
        template: t.template.clone(),
        count: t.count,
        first_seen: t.first_seen,
        last_seen: t.last_seen,
        ticket: t.ticket.clone(),
        merged,
        variables,
    }))
}

/// The text form of [`show`].
pub fn render_shown(t: &Shown) -> String {
    let mut out = String::new();
    let when = |w: Option<chrono::DateTime<chrono::Utc>>| {
        w.map_or("-".to_string(), |w| {
            w.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    };
    let _ = writeln!(out, "fingerprint  {}", t.fingerprint);
    let _ = writeln!(
        out,
        "service      {}",
        if t.service.is_empty() {
            "-"
        } else {
            &t.service
        }
    );
    let _ = writeln!(out, "template     {}", t.template);
    let _ = writeln!(
        out,
        "logs         {} (first {}, last {})",
        t.count,
        when(t.first_seen),
        when(t.last_seen)
    );
    let _ = writeln!(out, "ticket       {}", t.ticket.as_deref().unwrap_or("-"));
    if !t.merged.is_empty() {
        let _ = writeln!(out, "merged into it: {}", t.merged.join(", "));
    }
    if t.variables.is_empty() {
        out.push_str("no variables: every log of it reads the same\n");
    }
    let words: Vec<&str> = t.template.split(' ').collect();
    for v in &t.variables {
        let before = if v.position == 0 {
            "(start)".to_string()
        } else {
            format!(
                "after \"{}\"",
                words.get(v.position - 1).copied().unwrap_or("")
            )
        };
        let distinct = if v.more {
            format!("more than {TRACKED_VALUES} distinct values")
        } else if v.distinct == 1 {
            "1 value".to_string()
        } else {
            format!("{} distinct values", v.distinct)
        };
        let samples = v
            .samples
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "variable {} ({before}): {distinct}{}",
            v.position,
            if samples.is_empty() {
                String::new()
            } else {
                format!(", e.g. {samples}")
            }
        );
    }
    out
}
