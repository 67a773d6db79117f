//! What the template miner keeps between runs, as plain rows for the state store.
//!
//! In: nothing (plain data). Out: the snapshot a run starts from and the changes it writes back.
//! The state store (`state.rs`) saves these in its `template_families`, `templates` and
//! `template_merges` tables; the miner never talks to SQLite itself.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A family: lines of one service and one token count that look alike (see `miner`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFamily {
    pub id: u64,
    pub service: String,
    /// The family's shape: a token, or `None` where its lines have differed.
    pub tokens: Vec<Option<String>>,
    /// Positions known to be variables (enough distinct values seen).
    pub variable: Vec<bool>,
}

/// A learned template: one problem, with the fingerprint it was born with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredTemplate {
    pub fingerprint: String,
    /// Birth order; earlier templates win ties and survive merges.
    pub id: u64,
    pub family: u64,
    pub service: String,
    /// The template as people read it: tokens joined by spaces, `<*>` for variables.
    pub template: String,
    #[serde(skip)]
    pub tokens: Vec<String>,
    /// Logs that matched it, over all runs that saved their counts.
    pub count: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// The miner's clock when it was last matched (eviction order).
    #[serde(skip)]
    pub last_used: u64,
    /// The Jira ticket recorded for it (or for a template merged into it), when there is one.
    pub ticket: Option<String>,
}

/// Two templates found to be one problem: `from` now means `into`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateMerge {
    pub from: String,
    pub into: String,
}

/// Everything a run starts from.
#[derive(Debug, Clone, Default)]
pub struct TemplateSnapshot {
    pub families: Vec<StoredFamily>,
    pub templates: Vec<StoredTemplate>,
    pub merges: Vec<TemplateMerge>,
}

/// What changed since the last save.
#[derive(Debug, Clone, Default)]
pub struct TemplateChanges {
    pub families: Vec<StoredFamily>,
    pub templates: Vec<StoredTemplate>,
    /// Fingerprints of templates that were evicted or merged away.
    pub removed: Vec<String>,
    pub merges: Vec<TemplateMerge>,
}

impl TemplateChanges {
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
            && self.templates.is_empty()
            && self.removed.is_empty()
            && self.merges.is_empty()
    }
}
