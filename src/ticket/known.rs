//! What the run knows of a new problem when its ticket is filed, and what the create told Jira.
//!
//! In: the logs the pipeline took, one at a time, under the fingerprint they were given
//! ([`Tally::add`]), folded by the template miner's merges when the problems' tickets are filed
//! ([`Whole`]). Out: the whole-run figures a create carries, and a [`Told`] record of what it
//! carried, which the end of the run compares with the whole run: a ticket whose create already
//! says everything is not written again. Pure, no I/O, cannot fail.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::grouping::fingerprint::Fingerprint;
use crate::jira::content::{Description, ProblemFacts};
pub use crate::outcome::{Told, Written};

/// Hosts listed per problem; more are counted, not kept (the collector keeps as many).
pub const MAX_HOSTS: usize = 50;

/// How often, when and where a problem was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub occurrences: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Sorted, at most [`MAX_HOSTS`].
    pub hosts: Vec<String>,
    pub more_hosts: bool,
}

impl Tally {
    /// One more log, seen at `timestamp` on `host`.
    pub fn add(&mut self, timestamp: Option<DateTime<Utc>>, host: Option<&str>) {
        self.occurrences += 1;
        if let Some(ts) = timestamp {
            self.first_seen = Some(self.first_seen.map_or(ts, |f| f.min(ts)));
            self.last_seen = Some(self.last_seen.map_or(ts, |l| l.max(ts)));
        }
        if let Some(host) = host {
            self.add_host(host);
        }
    }

    /// Note a host: kept (in order) while fewer than [`MAX_HOSTS`] are, else only said to be
    /// more.
    pub fn add_host(&mut self, host: &str) {
        if let Err(at) = self.hosts.binary_search_by(|h| h.as_str().cmp(host)) {
            if self.hosts.len() < MAX_HOSTS {
                // Grown one at a time: most problems are seen on a host or two.
                self.hosts.reserve_exact(1);
                self.hosts.insert(at, host.to_string());
            } else {
                self.more_hosts = true;
            }
        }
    }

    /// Fold another tally (a template merged into this one's) into this one.
    pub fn absorb(&mut self, other: &Tally) {
        self.occurrences += other.occurrences;
        self.first_seen = match (self.first_seen, other.first_seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_seen = self.last_seen.max(other.last_seen);
        for host in &other.hosts {
            self.add_host(host);
        }
        self.more_hosts |= other.more_hosts;
    }
}

/// What a new problem's ticket is filed with besides its leader log: every log of the problem
/// the run took before the create (its own and those of templates merged into it), the
/// templates merged into it (their labels go on the ticket too), and its template as the miner
/// has it now.
#[derive(Debug, Clone, Default)]
pub struct Whole {
    pub tally: Tally,
    pub aliases: Vec<Fingerprint>,
    pub template: Option<String>,
}

impl Written {
    /// The hashes of a summary and a description as Jira holds it (an ADF document, or a
    /// wiki-markup string).
    pub fn new(summary: &str, description: &serde_json::Value) -> Self {
        Written {
            summary: text_hash(summary),
            description: text_hash(&description_text(description)),
        }
    }

    /// The hashes of a summary and a description about to be sent.
    pub fn of(summary: &str, description: &Description) -> Self {
        Self::new(
            summary,
            &serde_json::to_value(description).unwrap_or_default(),
        )
    }
}

impl Told {
    /// What a create of `facts`, with this summary and description and `labels` in all, told
    /// Jira.
    pub fn of(
        facts: &ProblemFacts,
        summary: &str,
        description: &Description,
        labels: Vec<String>,
    ) -> Self {
        Told {
            occurrences: facts.occurrences,
            first_seen: facts.first_seen,
            last_seen: facts.last_seen,
            hosts: facts.hosts.clone(),
            template: facts.template.clone(),
            labels,
            written: Written::of(summary, description),
        }
    }

    /// Whether the ticket already says everything `facts` (the whole run) would write.
    pub fn covers(&self, facts: &ProblemFacts, labels: &[String]) -> bool {
        self.occurrences == facts.occurrences
            && self.first_seen == facts.first_seen
            && self.last_seen == facts.last_seen
            && self.hosts == facts.hosts
            && self.template == facts.template
            && labels.iter().all(|l| self.labels.contains(l))
    }
}

/// The plain text of a description as Jira returns it: an ADF document's text nodes (a line
/// per block), or a wiki-markup string. Jira may re-shape an ADF document it stores (attributes,
/// ids), never its text, so a hash of the text tells a person's edit from Jira's bookkeeping.
pub fn description_text(value: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => out.push_str(s),
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::String(t)) = o.get("text") {
                    out.push_str(t);
                }
                if let Some(serde_json::Value::Array(children)) = o.get("content") {
                    for c in children {
                        walk(c, out);
                    }
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(value, &mut out);
    out
}

/// A short hash of a text, blind to line endings and to whitespace at either end of a line
/// (what Jira may change on its own).
pub fn text_hash(text: &str) -> String {
    let mut h = Sha256::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.is_empty() {
            h.update(line.as_bytes());
            h.update(b"\n");
        }
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_folds_like_the_collector_and_caps_hosts() {
        let t = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        let mut a = Tally::default();
        a.add(t("2026-01-01T10:00:00Z"), Some("b"));
        a.add(t("2026-01-01T09:00:00Z"), Some("a"));
        let mut b = Tally::default();
        b.add(t("2026-01-01T11:00:00Z"), Some("b"));
        b.add(None, None);
        a.absorb(&b);
        assert_eq!(a.occurrences, 4);
        assert_eq!(a.first_seen, t("2026-01-01T09:00:00Z"));
        assert_eq!(a.last_seen, t("2026-01-01T11:00:00Z"));
        assert_eq!(a.hosts, vec!["a", "b"]);
        for i in 0..60 {
            a.add_host(&format!("h{i:02}"));
        }
        assert_eq!(a.hosts.len(), MAX_HOSTS);
        assert!(a.more_hosts);
    }

    #[test]
    fn the_text_hash_ignores_what_jira_reshapes_and_sees_a_person_s_edit() {
        let ours = serde_json::json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "Seen 3 times"}]}]});
        let stored = serde_json::json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "attrs": {"localId": "x1"},
             "content": [{"type": "text", "text": "Seen 3 times", "marks": []}]}]});
        let edited = serde_json::json!({"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "Seen 3 times. Fixed in 1.4"}]}]});
        let h = |v: &serde_json::Value| text_hash(&description_text(v));
        assert_eq!(h(&ours), h(&stored));
        assert_ne!(h(&ours), h(&edited));
        assert_eq!(text_hash("a\r\nb \n"), text_hash("a\nb"));
    }
}
