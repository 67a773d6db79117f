//! What happened to one log: the single value every worker hands to the collector.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::analyze::Analysis;
use crate::grouping::fingerprint::Fingerprint;

/// The final state of one log, as written in the report's `logs[].outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// This log's leader filed a new ticket.
    Created,
    /// An open ticket from before this run already tracks this problem.
    Existing,
    /// A follower: another log of this run leads its problem.
    Duplicate,
    /// Dry run: a ticket would be created.
    WouldCreate,
    /// Not processed: malformed input, or the `--max-tickets` cap was reached for its problem.
    Skipped,
    /// Processing failed (an API error, a timeout); the run went on.
    Failed,
}

impl OutcomeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OutcomeKind::Created => "created",
            OutcomeKind::Existing => "existing",
            OutcomeKind::Duplicate => "duplicate",
            OutcomeKind::WouldCreate => "would_create",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Failed => "failed",
        }
    }
}

/// Where a log failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Source,
    Dedup,
    Analyze,
    Jira,
}

/// What the leader of a problem did about its ticket; every follower receives a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketAction {
    Created,
    Existing,
    WouldCreate,
    /// A Done ticket was moved back to an open status (`--reopen`).
    Reopened,
    /// Dry run with `--reopen`: a Done ticket would be reopened.
    WouldReopen,
    /// The `--max-tickets` cap was reached before this problem's ticket.
    Capped,
    /// A `[[route]]` with `mute = true` matched: the logs are recorded as skipped.
    Muted,
}

impl TicketAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            TicketAction::Created => "created",
            TicketAction::Existing => "existing",
            TicketAction::WouldCreate => "would_create",
            TicketAction::Reopened => "reopened",
            TicketAction::WouldReopen => "would_reopen",
            TicketAction::Capped => "capped",
            TicketAction::Muted => "muted",
        }
    }
}

/// A problem's ticket, as decided by its leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub action: TicketAction,
    /// The Jira key, when there is a ticket.
    pub key: Option<String>,
    /// The Done ticket this problem recurred from, when a new ticket names it.
    pub recurrence_of: Option<String>,
    /// The `[[route]]` the problem took (`None`: no route matched, or there are none).
    pub route: Option<String>,
    /// The route's own least time between two recurrence comments.
    pub comment_cooldown: Option<Duration>,
}

impl Resolution {
    pub fn new(action: TicketAction, key: Option<String>) -> Self {
        Resolution {
            action,
            key,
            recurrence_of: None,
            route: None,
            comment_cooldown: None,
        }
    }

    /// This resolution, with the route that decided it.
    pub fn routed(mut self, fields: &crate::route::Fields) -> Self {
        self.route = fields.route.clone();
        self.comment_cooldown = fields.comment_cooldown;
        self
    }

    /// Why a muted problem's logs are skipped.
    pub fn muted_reason(&self) -> String {
        format!(
            "muted by route '{}'",
            self.route.as_deref().unwrap_or("(unnamed)")
        )
    }
}

/// The facts of one log that the collector adds up per problem.
#[derive(Debug, Clone)]
pub struct Seen {
    pub timestamp: Option<DateTime<Utc>>,
    pub host: Option<String>,
    pub service: Option<String>,
    pub template: String,
}

/// What only a leader knows: the analysis and the sample its ticket was written from.
#[derive(Debug, Clone)]
pub struct LeaderReport {
    pub analysis: Analysis,
    pub sample_id: String,
    pub sample_message: String,
    pub sample_timestamp: Option<DateTime<Utc>>,
    pub resolution: Resolution,
    /// What the create of this problem's ticket told Jira, when this run created it.
    pub told: Option<crate::ticket::known::Told>,
}

/// One log's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub log_id: String,
    pub fingerprint: Option<Fingerprint>,
    pub kind: OutcomeKind,
    pub ticket: Option<String>,
    pub stage: Option<Stage>,
    pub error: Option<String>,
    pub seen: Option<Seen>,
    pub leader: Option<Box<LeaderReport>>,
    pub analyze_time: Option<Duration>,
    pub jira_time: Option<Duration>,
    /// Something the user should know that did not fail the log (shown once, counted).
    pub warning: Option<String>,
    /// A failed log's event (Datadog shape), kept for the next run's retry.
    pub retry_event: Option<serde_json::Value>,
}

impl Outcome {
    /// A record from the source that was not a usable log.
    pub fn skipped_record(location: String, reason: String) -> Self {
        Outcome {
            log_id: location,
            fingerprint: None,
            kind: OutcomeKind::Skipped,
            ticket: None,
            stage: Some(Stage::Source),
            error: Some(reason),
            seen: None,
            leader: None,
            analyze_time: None,
            jira_time: None,
            warning: None,
            retry_event: None,
        }
    }

    /// A log an earlier run already gave a final outcome (an overlapping window fetched it again).
    pub fn already_processed(log_id: String) -> Self {
        Outcome {
            kind: OutcomeKind::Skipped,
            error: Some("already processed by an earlier run".into()),
            stage: None,
            ..Outcome::skipped_record(log_id, String::new())
        }
    }
}
