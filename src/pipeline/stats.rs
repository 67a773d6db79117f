//! Counters and stage latencies for one run, added up by the run's tally alone (no locks).
//!
//! Latencies go into HDR histograms (fixed memory whatever the number of logs) and come out as
//! p50/p95 in milliseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::outcome::OutcomeKind;

/// One stage's latency distribution.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // 1 µs .. 1 hour at 2 significant digits: a few KiB.
        Latency(
            Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("static histogram bounds are valid"),
        )
    }
}

/// p50/p95 of one stage; serialises as `{}` when the stage never ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<f64>,
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(micros);
    }

    pub fn percentiles(&self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles {
                count: None,
                p50_ms: None,
                p95_ms: None,
            };
        }
        let ms = |q: f64| (self.0.value_at_quantile(q) as f64 / 1000.0 * 1000.0).round() / 1000.0;
        Percentiles {
            count: Some(self.0.len()),
            p50_ms: Some(ms(0.50)),
            p95_ms: Some(ms(0.95)),
        }
    }
}

/// Counts by outcome, and latencies by stage.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Records taken from the source (logs and unusable records).
    pub fetched: u64,
    pub created: u64,
    pub existing: u64,
    pub duplicates: u64,
    pub would_create: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Recurrence comments posted.
    pub commented: u64,
    /// Tickets created in this run and brought up to date at its end.
    pub updated: u64,
    /// Warnings from the source (partial Datadog results).
    pub warnings: u64,
    pub fetch: Latency,
    pub analyze: Latency,
    pub jira: Latency,
}

impl Stats {
    pub fn count(&mut self, kind: OutcomeKind) {
        match kind {
            OutcomeKind::Created => self.created += 1,
            OutcomeKind::Existing => self.existing += 1,
            OutcomeKind::Duplicate => self.duplicates += 1,
            OutcomeKind::WouldCreate => self.would_create += 1,
            OutcomeKind::Skipped => self.skipped += 1,
            OutcomeKind::Failed => self.failed += 1,
        }
    }

    /// Logs that reached an outcome.
    pub fn processed(&self) -> u64 {
        self.created
            + self.existing
            + self.duplicates
            + self.would_create
            + self.skipped
            + self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_in_milliseconds_and_empty_stages_say_nothing() {
        let mut l = Latency::default();
        assert_eq!(serde_json::to_string(&l.percentiles()).unwrap(), "{}");
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        let p = l.percentiles();
        assert_eq!(p.count, Some(100));
        assert!((p.p50_ms.unwrap() - 50.0).abs() < 1.0, "{p:?}");
        assert!((p.p95_ms.unwrap() - 95.0).abs() < 1.5, "{p:?}");
    }

    #[test]
    fn processed_adds_every_outcome() {
        let mut s = Stats::default();
        for k in [
            OutcomeKind::Created,
            OutcomeKind::Duplicate,
            OutcomeKind::Failed,
            OutcomeKind::Skipped,
        ] {
            s.count(k);
        }
        assert_eq!(s.processed(), 4);
    }
}
