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
///
/// Kept for every variable of every template the miner holds, so it is small: the samples
/// share one allocation, the hashes grow one at a time. It is stored as a `SeenRow`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(from = "SeenRow", into = "SeenRow")]
pub struct SeenValues {
    /// The token's position in the template (0-based).
    position: u32,
    /// More distinct values than [`TRACKED_VALUES`] were seen.
    more: bool,
    /// The first few values, as they were in the logs (cut to [`SAMPLE_CHARS`]), each ended
    /// by [`SAMPLE_END`].
    samples: Box<str>,
    /// Hashes of the distinct values counted (up to [`TRACKED_VALUES`]), to go on counting in
    /// later runs.
    hashes: Vec<u32>,
}

/// Ends each sample in [`SeenValues::samples`]; a sample's own such char becomes U+FFFD.
const SAMPLE_END: char = '\u{1f}';

/// How [`SeenValues`] is stored and shown (the state's `values` column keeps this shape).
#[derive(Serialize, serde::Deserialize)]
struct SeenRow {
    position: usize,
    distinct: usize,
    more: bool,
    samples: Vec<String>,
    #[serde(default)]
    hashes: Vec<u32>,
}

impl From<SeenRow> for SeenValues {
    fn from(row: SeenRow) -> Self {
        let mut v = SeenValues::new(row.position);
        v.more = row.more;
        for (i, &h) in row.hashes.iter().enumerate() {
            match row.samples.get(i) {
                Some(sample) => v.add(sample, h),
                None => {
                    v.count(h);
                }
            }
        }
        v
    }
}

impl From<SeenValues> for SeenRow {
    fn from(v: SeenValues) -> Self {
        SeenRow {
            position: v.position(),
            distinct: v.distinct(),
            more: v.more,
            samples: v.samples().map(str::to_string).collect(),
            hashes: v.hashes,
        }
    }
}

impl SeenValues {
    /// Nothing seen yet at token `position`.
    pub fn new(position: usize) -> Self {
        SeenValues {
            position: u32::try_from(position).unwrap_or(u32::MAX),
            ..SeenValues::default()
        }
    }

    /// The token's position in the template (0-based).
    pub fn position(&self) -> usize {
        self.position as usize
    }

    /// Distinct values seen, up to [`TRACKED_VALUES`].
    pub fn distinct(&self) -> usize {
        self.hashes.len()
    }

    /// More distinct values than [`TRACKED_VALUES`] were seen.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The first few values, in the order they were seen.
    pub fn samples(&self) -> impl Iterator<Item = &str> {
        self.samples.split_terminator(SAMPLE_END)
    }

    fn sample_count(&self) -> usize {
        self.samples.matches(SAMPLE_END).count()
    }

    /// One more value seen, with its hash. Samples are the values of the first hashes, in
    /// order (sample `i` is `hashes[i]`'s), so they can be pooled.
    pub fn add(&mut self, value: &str, hash: u32) {
        if self.count(hash) {
            let kept = self.sample_count();
            if kept + 1 == self.hashes.len() && kept < SAMPLE_VALUES {
                let mut all = String::with_capacity(self.samples.len() + value.len() + 1);
                all.push_str(&self.samples);
                all.extend(value.chars().take(SAMPLE_CHARS).map(|c| match c {
                    SAMPLE_END => char::REPLACEMENT_CHARACTER,
                    c => c,
                }));
                all.push(SAMPLE_END);
                self.samples = all.into_boxed_str();
            }
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
        self.hashes.reserve_exact(1);
        self.hashes.push(hash);
        true
    }

    /// Fold in what another template saw at the same position (its samples are its first
    /// hashes' values).
    pub fn absorb(&mut self, other: &SeenValues) {
        let mut samples = other.samples();
        for &h in &other.hashes {
            match samples.next() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `values` column written before the compact form reads back the same, and is
    /// written back in the same shape.
    #[test]
    fn seen_values_keep_their_stored_shape() {
        let stored =
            r#"{"position":2,"distinct":3,"more":false,"samples":["a1","b2"],"hashes":[7,8,9]}"#;
        let v: SeenValues = serde_json::from_str(stored).unwrap();
        assert_eq!(v.position(), 2);
        assert_eq!(v.distinct(), 3);
        assert!(!v.more());
        assert_eq!(v.samples().collect::<Vec<_>>(), ["a1", "b2"]);
        assert_eq!(serde_json::to_string(&v).unwrap(), stored);
        // Rows from before hashes were kept count nothing, and show their samples.
        let old: SeenValues =
            serde_json::from_str(r#"{"position":0,"distinct":5,"more":true,"samples":[]}"#)
                .unwrap();
        assert!(old.more());
        assert_eq!(old.samples().count(), 0);
    }

    #[test]
    fn samples_are_the_first_values_cut_and_a_separator_in_one_is_replaced() {
        let mut v = SeenValues::new(1);
        let long = "x".repeat(SAMPLE_CHARS + 10);
        for (i, value) in ["a\u{1f}b", "", long.as_str(), "d", "e"].iter().enumerate() {
            v.add(value, i as u32);
        }
        v.add("a\u{1f}b", 0);
        assert_eq!(v.distinct(), 5);
        let samples: Vec<&str> = v.samples().collect();
        assert_eq!(samples, ["a\u{fffd}b", "", &long[..SAMPLE_CHARS]]);
        for h in 5..=TRACKED_VALUES as u32 {
            v.add("more", h);
        }
        assert_eq!(v.distinct(), TRACKED_VALUES);
        assert!(v.more());
        let mut other = SeenValues::new(1);
        other.absorb(&v);
        assert_eq!(other, v);
    }
}
