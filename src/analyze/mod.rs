//! Analyze: turn one problem into a ticket-ready [`Analysis`] (category, severity, title,
//! summary).
//!
//! The analyzer runs once per *problem*, not once per log: only the leader log of a fingerprint
//! (the first log of it in this run) is analyzed, together with its normalized message template.
//! Followers reuse the leader's ticket, so an expensive analyzer costs one call per distinct
//! problem.
//!
//! Analyzers:
//!
//! * [`rules`] (the default): offline and deterministic. Keyword rules over the message, the
//!   template and the `error.kind` / `error.message` attributes pick a [`Category`]; the log
//!   status plus a few keywords give the [`Severity`]; title and summary are built from the
//!   service, host and template. Same input, same output, on every machine and run, with no
//!   network.
//! * [`llm`]: asks an OpenAI-compatible chat-completions API for the same [`Analysis`], and
//!   falls back to [`rules::analyze`] whenever the call or its answer fails, so analysis itself
//!   never fails a log.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod llm;
pub mod rules;

use crate::event::LogEvent;

/// The analyzer a run uses.
#[derive(Debug, Clone)]
pub enum Analyzer {
    Rules,
    Llm(llm::LlmAnalyzer),
}

impl Analyzer {
    /// How many times the analyzer's circuit breaker opened (the `llm` analyzer's service).
    pub fn breaker_trips(&self) -> u64 {
        match self {
            Analyzer::Rules => 0,
            Analyzer::Llm(llm) => llm.breaker_trips(),
        }
    }

    /// How many problems the `llm` analyzer failed on (and the rules analyzed instead).
    pub fn fallbacks(&self) -> u64 {
        match self {
            Analyzer::Rules => 0,
            Analyzer::Llm(llm) => llm.fallbacks(),
        }
    }

    /// Analyze one problem. The `llm` analyzer falls back to `rules` on any failure and says why
    /// in the second value, so analysis itself never fails a log.
    pub async fn analyze(&self, event: &LogEvent, template: &str) -> (Analysis, Option<String>) {
        match self {
            Analyzer::Rules => (rules::analyze(event, template), None),
            Analyzer::Llm(llm) => match llm.analyze(event, template).await {
                Ok(a) => (a, None),
                Err(e) => {
                    llm.count_fallback();
                    (
                        rules::analyze(event, template),
                        Some(format!(
                            "llm analyzer failed, used the rules analyzer instead: {e:#}"
                        )),
                    )
                }
            },
        }
    }
}

/// What kind of problem a log describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Queries, locks, constraints, connection pools, the database server itself.
    Database,
    /// Network and timeouts: refused/reset connections, DNS, unreachable hosts, deadlines.
    Network,
    /// Authentication and authorization: 401/403, bad or expired tokens and credentials.
    Authentication,
    /// Resource exhaustion: out of memory, OOM kills, file descriptors, threads.
    Resource,
    /// Code defects: null reference, unhandled exception, panic, segfault.
    Exception,
    /// Missing or invalid settings, environment variables, certificates, file permissions.
    Configuration,
    /// An upstream dependency failing: HTTP 5xx, bad gateway, service unavailable.
    Dependency,
    /// Storage: disk full, read-only file system, I/O errors.
    Disk,
    /// None of the above.
    Other,
}

/// Every category's name, as routes name them.
pub const CATEGORIES: &[&str] = &[
    "database",
    "network",
    "authentication",
    "resource",
    "exception",
    "configuration",
    "dependency",
    "disk",
    "other",
];

impl Category {
    /// The snake_case name, the same as the serde name (`"database"`, `"other"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Database => "database",
            Category::Network => "network",
            Category::Authentication => "authentication",
            Category::Resource => "resource",
            Category::Exception => "exception",
            Category::Configuration => "configuration",
            Category::Dependency => "dependency",
            Category::Disk => "disk",
            Category::Other => "other",
        }
    }
}

impl Category {
    /// Parse a category name, ignoring ASCII case and surrounding whitespace. Anything else is
    /// `None`.
    pub fn parse(s: &str) -> Option<Category> {
        let s = s.trim();
        [
            Category::Database,
            Category::Network,
            Category::Authentication,
            Category::Resource,
            Category::Exception,
            Category::Configuration,
            Category::Dependency,
            Category::Disk,
            Category::Other,
        ]
        .into_iter()
        .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How urgent a problem is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The snake_case name, the same as the serde name (`"low"` .. `"critical"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parse a severity name, ignoring ASCII case and surrounding whitespace
    /// (`"High"`, `" critical "`). Anything else is `None`.
    pub fn parse(s: &str) -> Option<Severity> {
        let s = s.trim();
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|sev| sev.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The result of analyzing one problem: what the ticket is filed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    pub category: Category,
    pub severity: Severity,
    /// One line, at most 255 chars (cut on a char boundary), no newlines or control chars:
    /// `"[service: ]template"`, e.g. `"checkout: Connection to <ip> timed out after <duration>"`.
    pub title: String,
    /// A short human summary, 1-3 sentences: what kind of problem, where, and what to check.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_CATEGORIES: [Category; 9] = [
        Category::Database,
        Category::Network,
        Category::Authentication,
        Category::Resource,
        Category::Exception,
        Category::Configuration,
        Category::Dependency,
        Category::Disk,
        Category::Other,
    ];

    const ALL_SEVERITIES: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    #[test]
    fn severity_is_ordered_low_to_critical() {
        assert!(Severity::Low < Severity::Medium);
        assert!(Severity::Medium < Severity::High);
        assert!(Severity::High < Severity::Critical);
        assert_eq!(
            ALL_SEVERITIES.iter().max().copied(),
            Some(Severity::Critical)
        );
        assert_eq!(Severity::Medium.max(Severity::High), Severity::High);
    }

    #[test]
    fn severity_parse_ignores_case_and_whitespace() {
        assert_eq!(Severity::parse("low"), Some(Severity::Low));
        assert_eq!(Severity::parse("Medium"), Some(Severity::Medium));
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
        assert_eq!(Severity::parse(" critical\n"), Some(Severity::Critical));
        assert_eq!(Severity::parse(""), None);
        assert_eq!(Severity::parse("urgent"), None);
        assert_eq!(Severity::parse("crit"), None);
        assert_eq!(
            format!("{:<6}|{:>8}", Severity::High, Category::Disk),
            "high  |    disk"
        );
        for sev in ALL_SEVERITIES {
            assert_eq!(Severity::parse(sev.as_str()), Some(sev));
        }
    }

    #[test]
    fn serde_names_are_snake_case_and_match_as_str() {
        assert_eq!(
            serde_json::to_string(&Category::Resource).unwrap(),
            "\"resource\""
        );
        assert_eq!(
            serde_json::to_string(&Severity::Critical).unwrap(),
            "\"critical\""
        );
        for cat in ALL_CATEGORIES {
            let json = serde_json::to_value(cat).unwrap();
            assert_eq!(json, serde_json::Value::from(cat.as_str()));
            assert_eq!(cat.to_string(), cat.as_str());
            assert_eq!(serde_json::from_value::<Category>(json).unwrap(), cat);
        }
        for sev in ALL_SEVERITIES {
            let json = serde_json::to_value(sev).unwrap();
            assert_eq!(json, serde_json::Value::from(sev.as_str()));
            assert_eq!(sev.to_string(), sev.as_str());
            assert_eq!(serde_json::from_value::<Severity>(json).unwrap(), sev);
        }
    }

    #[test]
    fn analysis_serializes_with_plain_names() {
        let a = Analysis {
            category: Category::Disk,
            severity: Severity::High,
            title: "db: No space left on device".into(),
            summary: "Disk full.".into(),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"category": "disk", "severity": "high",
                               "title": "db: No space left on device", "summary": "Disk full."})
        );
    }
}
