//! The one place [`ProblemFacts`] are built: what a ticket, its end-of-run update, a recurrence
//! comment and the dry-run draft say about a problem.
//!
//! In: the problem as the collector added it up (or as its leader log shows it) and the
//! analysis. Out: `ProblemFacts`, pure, no I/O, cannot fail.

use chrono::{DateTime, Utc};

use crate::analyze::Analysis;
use crate::config::DatadogSite;
use crate::event::LogEvent;
use crate::grouping::fingerprint::Fingerprint;
use crate::jira::content::ProblemFacts;
use crate::outcome::LeaderReport;
use crate::ticket::known::Whole;

/// What a problem looked like over a span of logs (one log, or a whole run).
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    pub occurrences: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub hosts: &'a [String],
}

/// The facts of a problem seen over `span`, described by its leader's analysis and sample.
pub fn build(
    fingerprint: &Fingerprint,
    service: Option<&str>,
    template: &str,
    leader: &LeaderReport,
    span: Span<'_>,
    site: &DatadogSite,
) -> ProblemFacts {
    from_parts(
        Which {
            fingerprint,
            service,
            template,
        },
        Described {
            analysis: &leader.analysis,
            sample: Sample {
                id: &leader.sample_id,
                message: &leader.sample_message,
                timestamp: leader.sample_timestamp,
            },
            recurrence_of: leader.resolution.recurrence_of.clone(),
        },
        span,
        site,
    )
}

/// The facts a new ticket is created with: its leader log, and, when the run knows more of the
/// problem (`whole`: the logs taken before the create, merged templates, its template now), all
/// of that.
pub fn of_new_ticket(
    fingerprint: &Fingerprint,
    event: &LogEvent,
    template: &str,
    analysis: &Analysis,
    recurrence_of: Option<String>,
    site: &DatadogSite,
    whole: Option<&Whole>,
) -> ProblemFacts {
    let template = whole
        .and_then(|w| w.template.as_deref())
        .unwrap_or(template);
    let mut facts = of_leader_log(fingerprint, event, template, analysis, recurrence_of, site);
    let Some(w) = whole else { return facts };
    if w.tally.occurrences > 0 {
        facts.occurrences = w.tally.occurrences;
        facts.first_seen = w.tally.first_seen;
        facts.last_seen = w.tally.last_seen;
        facts.hosts = w.tally.hosts.clone();
    }
    facts.aliases = w
        .aliases
        .iter()
        .filter(|a| *a != fingerprint)
        .map(|a| a.to_string())
        .collect();
    facts
}

/// The facts a ticket is created with from its leader log alone.
pub fn of_leader_log(
    fingerprint: &Fingerprint,
    event: &LogEvent,
    template: &str,
    analysis: &Analysis,
    recurrence_of: Option<String>,
    site: &DatadogSite,
) -> ProblemFacts {
    let hosts: Vec<String> = event.host.iter().cloned().collect();
    from_parts(
        Which {
            fingerprint,
            service: event.service.as_deref(),
            template,
        },
        Described {
            analysis,
            sample: Sample {
                id: &event.id,
                message: &event.message,
                timestamp: event.timestamp,
            },
            recurrence_of,
        },
        Span {
            occurrences: 1,
            first_seen: event.timestamp,
            last_seen: event.timestamp,
            hosts: &hosts,
        },
        site,
    )
}

struct Sample<'a> {
    id: &'a str,
    message: &'a str,
    timestamp: Option<DateTime<Utc>>,
}

/// Which problem: its fingerprint, service and template.
struct Which<'a> {
    fingerprint: &'a Fingerprint,
    service: Option<&'a str>,
    template: &'a str,
}

/// What its leader says of it: the analysis, a sample log, and the ticket it recurs.
struct Described<'a> {
    analysis: &'a Analysis,
    sample: Sample<'a>,
    recurrence_of: Option<String>,
}

fn from_parts(
    which: Which<'_>,
    described: Described<'_>,
    span: Span<'_>,
    site: &DatadogSite,
) -> ProblemFacts {
    let Which {
        fingerprint,
        service,
        template,
    } = which;
    let Described {
        analysis,
        sample,
        recurrence_of,
    } = described;
    ProblemFacts {
        fingerprint: fingerprint.to_string(),
        service: service.map(str::to_string),
        title: analysis.title.clone(),
        summary: analysis.summary.clone(),
        category: analysis.category.as_str().to_string(),
        severity: analysis.severity.as_str().to_string(),
        template: template.to_string(),
        sample_message: sample.message.to_string(),
        sample_log_id: sample.id.to_string(),
        log_link: Some(site.log_link(sample.id, sample.timestamp)),
        hosts: span.hosts.to_vec(),
        first_seen: span.first_seen,
        last_seen: span.last_seen,
        occurrences: span.occurrences,
        recurrence_of,
        counted_since: None,
        aliases: Vec::new(),
    }
}
