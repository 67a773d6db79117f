//! `triage templates`: the templates a state store has learned, for people and scripts.
//!
//! In: the state file (`--state PATH` or the default one). Out: every learned template with its
//! fingerprint, count, first and last seen and ticket, as a text table or JSON (an array of
//! objects). Fails only when the store cannot be read; a missing store, or one an older
//! version wrote, has no templates yet.

use std::fmt::Write as _;
use std::path::Path;

use super::store::StoredTemplate;
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
