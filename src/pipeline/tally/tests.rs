use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::analyze::{Analysis, Category};
use crate::event::LogEvent;
use crate::outcome::{Log, Resolution, Seen, Stage, Work};

fn tally() -> RunTally {
    RunTally::new(RunShape {
        async_mode: true,
        workers: 4,
        dry_run: false,
        site: DatadogSite::resolve("datadoghq.com", None).unwrap(),
        jira_url: Some("https://jira.example.com".into()),
    })
}

fn log(id: &str, fp: &Fingerprint, minute: u32, host: &str) -> Log {
    Log {
        id: id.into(),
        fingerprint: fp.clone(),
        seen: Seen {
            timestamp: Some(Utc.with_ymd_and_hms(2026, 3, 1, 9, minute, 0).unwrap()),
            host: Some(host.into()),
            service: Some("sshd".into()),
            template: Arc::from("Failed password for <*>"),
        },
    }
}

fn leader(action: TicketAction, key: &str) -> Box<LeaderReport> {
    Box::new(LeaderReport {
        analysis: Analysis {
            category: Category::Authentication,
            severity: Severity::High,
            title: "sshd: Failed password".into(),
            summary: "Logins fail.".into(),
        },
        sample_id: "l1".into(),
        sample_message: "Failed password for root".into(),
        sample_timestamp: None,
        resolution: Arc::new(Resolution::new(action, Some(key.into()))),
        told: None,
    })
}

fn end() -> RunEnd {
    RunEnd {
        elapsed: Duration::from_secs(2),
        interrupted: false,
        error: None,
        breaker_trips: 0,
    }
}

#[test]
fn outcomes_of_every_kind_land_in_their_summary_fields() {
    let mut t = tally();
    let fp = Fingerprint::from_raw("aaaa");
    let other = Fingerprint::from_raw("bbbb");
    let report = leader(TicketAction::Existing, "OPS-1");
    let resolution = report.resolution.clone();
    for _ in 0..6 {
        t.fetched();
    }
    t.add(Outcome::Led {
        log: log("l1", &fp, 1, "web-1"),
        report,
        work: Work {
            analyze_time: Some(Duration::from_millis(5)),
            jira_time: Some(Duration::from_millis(40)),
            warning: Some("slow Jira".into()),
        },
    });
    t.add(Outcome::Followed {
        log: log("l2", &fp, 3, "web-2"),
        resolution,
    });
    t.add(Outcome::LeadFailed {
        log: log("l3", &other, 2, "web-1"),
        stage: Stage::Analyze,
        error: "boom".into(),
        retry_event: json!({}),
        work: Work::default(),
    });
    t.add(Outcome::SkippedRecord {
        location: "line 4".into(),
        reason: "not JSON".into(),
    });
    t.add(Outcome::AlreadyProcessed {
        log_id: "l0".into(),
    });
    t.warning();
    t.given_up(2);
    assert_eq!(t.cut(), 1);
    t.ticket_phase(PhaseResult {
        commented: 1,
        warnings: vec!["a comment was late".into()],
        ..PhaseResult::default()
    });

    let report = t.report(end(), false);
    let s = &report.summary;
    assert_eq!((s.fetched, s.processed), (6, 5));
    assert_eq!(
        (s.existing, s.duplicates, s.failed, s.skipped),
        (1, 1, 1, 2)
    );
    assert_eq!((s.created, s.would_create, s.commented), (0, 0, 1));
    assert_eq!((s.already_processed, s.given_up, s.lines_cut), (1, 2, 1));
    assert_eq!(
        s.warnings, 3,
        "the leader's, the run's and the ticket phase's"
    );
    assert_eq!(s.problems, 2);
    assert_eq!((s.mode, s.workers), ("async", 4));
    assert_eq!(s.stages.jira.count, Some(1));
    // Only the problem with a leader has a ticket entry, with both its logs.
    assert_eq!(report.tickets.len(), 1);
    let ticket = &report.tickets[0];
    assert_eq!(ticket.key.as_deref(), Some("OPS-1"));
    assert_eq!(ticket.occurrences, 2);
    assert_eq!(ticket.hosts, ["web-1", "web-2"]);
    assert_eq!(
        ticket.url.as_deref(),
        Some("https://jira.example.com/browse/OPS-1")
    );
    assert_eq!(s.tickets, 1);
}

#[test]
fn input_with_no_readable_record_is_the_runs_error() {
    let mut t = tally();
    t.fetched();
    t.unreadable(&crate::source::Skipped {
        location: "line 1".into(),
        reason: "not JSON".into(),
        unreadable: true,
    });
    let report = t.report(end(), true);
    assert_eq!(
        report.summary.error.as_deref(),
        Some("no log could be read from the input: 1 record(s), none readable (first: line 1: not JSON)")
    );
}

#[test]
fn a_regroup_folds_a_merged_problem_into_its_survivor() {
    let mut miner = TemplateMiner::default();
    let mut line = |u: &str| {
        let message = format!("Failed password for {u} from 10.0.0.1 port 22 ssh2");
        let event = json!({"id": "x", "service": "sshd", "message": message});
        miner_fp(&mut miner, event)
    };
    let first = line("root");
    let second = line("admin");
    assert_ne!(first, second, "two templates until the name varies enough");
    line("uucp");
    line("guest");
    assert_eq!(miner.resolve(&second), first);

    let mut t = tally();
    // The merged-away problem has the leader; the survivor only failed logs.
    t.add(Outcome::LeadFailed {
        log: log("l1", &first, 5, "web-1"),
        stage: Stage::Jira,
        error: "boom".into(),
        retry_event: json!({}),
        work: Work::default(),
    });
    t.add(Outcome::Led {
        log: log("l2", &second, 1, "web-2"),
        report: leader(TicketAction::Created, "OPS-7"),
        work: Work::default(),
    });
    t.add(Outcome::Led {
        log: log("l3", &second, 9, "web-3"),
        report: leader(TicketAction::Created, "OPS-7"),
        work: Work::default(),
    });
    assert_eq!(t.problem_count(), 2);

    let remap = t.regroup(&miner);
    assert_eq!(
        remap,
        HashMap::from([(second.to_string(), first.to_string())])
    );
    assert_eq!(t.problem_count(), 1);
    let (created, recurring) = t.ticket_work();
    assert!(recurring.is_empty());
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].key, "OPS-7");
    let p = t.problems().next().expect("the survivor took the leader");
    assert_eq!(p.fingerprint, first);
    assert_eq!(p.seen.occurrences, 3);
    assert_eq!(p.seen.hosts, ["web-1", "web-2", "web-3"]);
    assert_eq!(
        (p.seen.first_seen, p.seen.last_seen),
        (
            Some(Utc.with_ymd_and_hms(2026, 3, 1, 9, 1, 0).unwrap()),
            Some(Utc.with_ymd_and_hms(2026, 3, 1, 9, 9, 0).unwrap())
        )
    );
    assert_eq!(
        &*p.template,
        "Failed password for <*> from <*> port <*> ssh2"
    );
}

fn miner_fp(miner: &mut TemplateMiner, event: serde_json::Value) -> Fingerprint {
    let event = LogEvent::from_value(event, || "x".into()).unwrap();
    miner.fingerprint(&event).fingerprint
}
