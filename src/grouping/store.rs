//! What the template miner keeps between runs, as plain rows for the state store.
//!
//! In: nothing (plain data). Out: the snapshot a run starts from and the changes it writes back.
//! The state store (`state`) saves these in its `template_families`, `templates` and
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
    /// What its variables were seen to hold, per variable position (`triage templates --show`).
    #[serde(skip)]
    pub values: Vec<SeenValues>,
}

/// Hashes of distinct values kept per variable position: more are counted as "more".
pub const TRACKED_VALUES: usize = 16;
/// Sample values kept per variable position.
pub const SAMPLE_VALUES: usize = 3;
/// A sample value is cut to this many characters.
pub const SAMPLE_CHARS: usize = 80;

/// What one variable position of a template was seen to hold: why two logs share a ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SeenValues {
    /// The token's position in the template (0-based).
    pub position: usize,
    /// Distinct values seen, up to [`TRACKED_VALUES`].
    pub distinct: usize,
    /// More distinct values than that were seen.
    pub more: bool,
    /// The first few values, as they were in the logs (cut to [`SAMPLE_CHARS`]).
    pub samples: Vec<String>,
    /// Hashes of the distinct values counted, to go on counting in later runs.
    #[serde(default)]
    pub hashes: Vec<u32>,
}

impl SeenValues {
    /// One more value seen, with its hash. Samples are the values of the first hashes, in
    /// order (`samples[i]` is `hashes[i]`'s), so they can be pooled.
    pub fn add(&mut self, value: &str, hash: u32) {
        if self.count(hash)
            && self.samples.len() + 1 == self.hashes.len()
            && self.samples.len() < SAMPLE_VALUES
        {
            self.samples
                .push(value.chars().take(SAMPLE_CHARS).collect());
        }
    }

    /// Count a value by its hash: whether it is new and counted one by one.
    fn count(&mut self, hash: u32) -> bool {
        if self.hashes.contains(&hash) {
            return false;
        }
        if self.hashes.len() >= TRACKED_VALUES {
            self.more = true;
            return false;
        }
        self.hashes.push(hash);
        self.distinct = self.hashes.len();
        true
    }

    /// Fold in what another template saw at the same position (its samples are its first
    /// hashes' values).
    pub fn absorb(&mut self, other: &SeenValues) {
        for (i, &h) in other.hashes.iter().enumerate() {
            match other.samples.get(i) {
                Some(sample) => self.add(sample, h),
                None => {
                    self.count(h);
                }
            }
        }
        self.more |= other.more;
    }
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
