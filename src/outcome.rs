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
    /// Shared with the miner's template and every other log of the problem.
    pub template: std::sync::Arc<str>,
}

/// What a create (or a later write) told Jira, kept to compare with the whole run at its end
/// and, through the state, with what Jira holds (a person's edit). Built by the ticket stage
/// (`ticket::known`), which reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Told {
    pub occurrences: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub hosts: Vec<String>,
    pub template: String,
    /// Every label the create carried (triage's and the route's).
    pub labels: Vec<String>,
    /// The hashes (`text_hash` in the ticket stage) of the summary and of the description's
    /// text, as written.
    pub written: Written,
}

/// Hashes of a ticket's summary and description as triage last wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub summary: String,
    pub description: String,
}

/// What only a leader knows: the analysis and the sample its ticket was written from.
#[derive(Debug, Clone)]
pub struct LeaderReport {
    pub analysis: Analysis,
    pub sample_id: String,
    pub sample_message: String,
    pub sample_timestamp: Option<DateTime<Utc>>,
    /// Shared with every later log of the problem.
    pub resolution: std::sync::Arc<Resolution>,
    /// What the create of this problem's ticket told Jira, when this run created it (boxed:
    /// most problems of a run were not created by it).
    pub told: Option<Box<Told>>,
}

/// The log an outcome is about, once it has a fingerprint.
#[derive(Debug, Clone)]
pub struct Log {
    pub id: String,
    pub fingerprint: Fingerprint,
    pub seen: Seen,
}

/// What a leader's work cost, and what it has to say besides.
#[derive(Debug, Clone, Default)]
pub struct Work {
    pub analyze_time: Option<Duration>,
    pub jira_time: Option<Duration>,
    /// Something the user should know that did not fail the log (shown once, counted).
    pub warning: Option<String>,
}

/// Why a problem's logs are skipped when its leader gave it no ticket: the `--max-tickets` cap.
pub const CAPPED: &str = "the --max-tickets cap was reached before this problem's ticket";

/// One log's outcome: what happened to it, with what the collector needs to add it up.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A record from the source that was not a usable log.
    SkippedRecord { location: String, reason: String },
    /// A log an earlier run already gave a final outcome (an overlapping window fetched it
    /// again).
    AlreadyProcessed { log_id: String },
    /// The first log of a problem: its leader decided the problem's ticket.
    Led {
        log: Log,
        report: Box<LeaderReport>,
        work: Work,
    },
    /// A leader that failed; its log is kept for the next run's retry.
    LeadFailed {
        log: Log,
        stage: Stage,
        error: String,
        /// The event (Datadog shape), for the retry.
        retry_event: serde_json::Value,
        work: Work,
    },
    /// One more log of a problem whose leader decided its ticket.
    Followed {
        log: Log,
        resolution: std::sync::Arc<Resolution>,
    },
    /// A log the run took but did not finish (it stopped): failed, kept for the next run's
    /// retry. Without a fingerprint when the run stopped before it had one.
    Unfinished {
        id: String,
        fingerprint: Option<Fingerprint>,
        seen: Seen,
        why: &'static str,
        retry_event: serde_json::Value,
    },
}

/// The outcome kind of a log whose problem's ticket is `res`: its leader's (`leader`) or one
/// more occurrence of it. The one place ticket actions become outcome kinds.
fn kind_of(res: &Resolution, leader: bool) -> OutcomeKind {
    match res.action {
        TicketAction::Capped | TicketAction::Muted => OutcomeKind::Skipped,
        _ if !leader => OutcomeKind::Duplicate,
        TicketAction::Created => OutcomeKind::Created,
        TicketAction::WouldCreate => OutcomeKind::WouldCreate,
        TicketAction::Existing | TicketAction::Reopened | TicketAction::WouldReopen => {
            OutcomeKind::Existing
        }
    }
}

/// Why a problem's logs were skipped, when its ticket is `res` and they were.
fn skipped_because(res: &Resolution) -> Option<String> {
    match res.action {
        TicketAction::Capped => Some(CAPPED.to_string()),
        TicketAction::Muted => Some(res.muted_reason()),
        _ => None,
    }
}

impl Outcome {
    /// The final state of the log, as the report names it.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::SkippedRecord { .. } | Outcome::AlreadyProcessed { .. } => {
                OutcomeKind::Skipped
            }
            Outcome::Led { report, .. } => kind_of(&report.resolution, true),
            Outcome::Followed { resolution, .. } => kind_of(resolution, false),
            Outcome::LeadFailed { .. } | Outcome::Unfinished { .. } => OutcomeKind::Failed,
        }
    }

    /// The log's id (a skipped record's place in the input).
    pub fn log_id(&self) -> &str {
        match self {
            Outcome::SkippedRecord { location, .. } => location,
            Outcome::AlreadyProcessed { log_id } => log_id,
            Outcome::Led { log, .. }
            | Outcome::LeadFailed { log, .. }
            | Outcome::Followed { log, .. } => &log.id,
            Outcome::Unfinished { id, .. } => id,
        }
    }

    pub fn fingerprint(&self) -> Option<&Fingerprint> {
        match self {
            Outcome::SkippedRecord { .. } | Outcome::AlreadyProcessed { .. } => None,
            Outcome::Led { log, .. }
            | Outcome::LeadFailed { log, .. }
            | Outcome::Followed { log, .. } => Some(&log.fingerprint),
            Outcome::Unfinished { fingerprint, .. } => fingerprint.as_ref(),
        }
    }

    /// The Jira key of the log's ticket, when it has one.
    pub fn ticket(&self) -> Option<&str> {
        match self {
            Outcome::Led { report, .. } => report.resolution.key.as_deref(),
            Outcome::Followed { resolution, .. } => resolution.key.as_deref(),
            _ => None,
        }
    }

    /// Where the log failed or was stopped.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Outcome::SkippedRecord { .. } => Some(Stage::Source),
            Outcome::LeadFailed { stage, .. } => Some(*stage),
            Outcome::Unfinished { .. } => Some(Stage::Dedup),
            _ => None,
        }
    }

    /// Why the log failed or was skipped.
    pub fn error(&self) -> Option<String> {
        match self {
            Outcome::SkippedRecord { reason, .. } => Some(reason.clone()),
            Outcome::AlreadyProcessed { .. } => Some("already processed by an earlier run".into()),
            Outcome::Led { report, .. } => skipped_because(&report.resolution),
            Outcome::Followed { resolution, .. } => skipped_because(resolution),
            Outcome::LeadFailed { error, .. } => Some(error.clone()),
            Outcome::Unfinished { why, .. } => Some(why.to_string()),
        }
    }

    /// The facts of the log the collector adds up per problem; none for a record that is no log.
    pub fn seen(&self) -> Option<&Seen> {
        match self {
            Outcome::SkippedRecord { .. } | Outcome::AlreadyProcessed { .. } => None,
            Outcome::Led { log, .. }
            | Outcome::LeadFailed { log, .. }
            | Outcome::Followed { log, .. } => Some(&log.seen),
            Outcome::Unfinished { seen, .. } => Some(seen),
        }
    }

    /// What the leader's work cost and said, for a leader.
    pub fn work(&self) -> Option<&Work> {
        match self {
            Outcome::Led { work, .. } | Outcome::LeadFailed { work, .. } => Some(work),
            _ => None,
        }
    }

    /// A failed log's event, kept for the next run's retry.
    pub fn retry_event(&self) -> Option<&serde_json::Value> {
        match self {
            Outcome::LeadFailed { retry_event, .. } | Outcome::Unfinished { retry_event, .. } => {
                Some(retry_event)
            }
            _ => None,
        }
    }
}
