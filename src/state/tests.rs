use super::sqlite::MIGRATIONS;
use super::*;
use rusqlite::Connection;

fn job(source: &str, jira: &str) -> Scope {
    Scope {
        source: source.into(),
        jira: jira.into(),
    }
}

#[test]
fn a_second_open_is_refused_naming_the_holder_and_a_dropped_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let first = StateStore::open(&db, job("src", "jira")).unwrap();
    match StateStore::open(&db, job("src", "jira")) {
        Err(StateError::Locked { holder, .. }) => assert!(
            holder.contains(&format!("pid {}", std::process::id())),
            "{holder}"
        ),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Another job on the same file runs meanwhile.
    StateStore::open(&db, job("src", "other jira")).expect("another job's lock");
    drop(first);
    StateStore::open(&db, job("src", "jira")).expect("the lock of a finished holder is taken over");
}

#[test]
fn openers_racing_on_a_new_file_all_succeed_and_create_the_schema_once() {
    // Seen before: four runs started together on a new file, three exited 1 with
    // "table checkpoints already exists". Each thread is its own connection and job.
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let n = 8;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (db, barrier) = (db.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    StateStore::open(&db, job(&format!("src {i}"), "J OPS"))
                        .map(|s| s.schema_version().unwrap())
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for t in threads {
            assert_eq!(
                t.join().unwrap(),
                Ok(MIGRATIONS.len()),
                "round {round}: every opener succeeds"
            );
        }
    }
}

#[test]
fn jobs_sharing_a_file_see_only_their_own_logs_retries_tickets_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut a = StateStore::open(&db, job("datadog A q", "J1 OPS")).unwrap();
    let b = StateStore::open(&db, job("datadog B q", "J2 OPS")).unwrap();
    a.record(&[Processed {
        id: "l1".into(),
        timestamp: None,
        failed: Some((serde_json::json!({"message": "m"}), "down".into())),
        recurrence: None,
    }])
    .unwrap();
    a.remember_ticket("fp", "OPS-1").unwrap();
    a.change_comment_state(
        "OPS-1",
        &CommentChange {
            pending: 4,
            ..CommentChange::default()
        },
    )
    .unwrap();
    assert!(a.is_seen("l1").unwrap() && !b.is_seen("l1").unwrap());
    // Asked for a batch at once: the same answers, one query per 500 ids.
    let many: Vec<String> = (0..1200)
        .map(|i| format!("x{i}"))
        .chain(["l1".to_string()])
        .collect();
    assert_eq!(
        a.seen_among(&many).unwrap(),
        std::collections::HashSet::from(["l1".to_string()])
    );
    assert!(b.seen_among(&many).unwrap().is_empty());
    assert_eq!(
        (
            a.failed_logs().unwrap().len(),
            b.failed_logs().unwrap().len()
        ),
        (1, 0)
    );
    assert_eq!(a.ticket_for("fp").unwrap().as_deref(), Some("OPS-1"));
    assert_eq!(b.ticket_for("fp").unwrap(), None);
    assert_eq!(b.comment_state("OPS-1").unwrap().pending, 0);
    assert_eq!(a.comment_state("OPS-1").unwrap().pending, 4);
}

#[test]
fn a_store_written_by_the_first_schema_is_migrated_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO tickets (fingerprint, key, created_ms) VALUES ('fp1', 'OPS-7', 0)",
            [],
        )
        .unwrap();
        conn.execute("INSERT INTO failed (log_id, event, error, runs) VALUES ('l1', '{\"message\":\"x\"}', 'e', 2)", []).unwrap();
        conn.execute(
            "INSERT INTO checkpoints (source, until_ms, updated_ms) VALUES ('s', 1000, 0)",
            [],
        )
        .unwrap();
    }
    // The first job to open the store adopts what was written before stores were scoped.
    let store = StateStore::open(&db, job("s", "J OPS")).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
    assert_eq!(store.ticket_for("fp1").unwrap().as_deref(), Some("OPS-7"));
    assert_eq!(store.failed_logs().unwrap()[0].runs, 2);
    assert_eq!(
        store.checkpoint("s").unwrap().unwrap().timestamp_millis(),
        1000
    );
    assert_eq!(
        store.comment_state("OPS-7").unwrap(),
        CommentState::default()
    );
}

#[test]
fn each_new_log_of_a_ticket_adds_one_to_its_pending_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "J OPS")).unwrap();
    let log = |id: &str| Processed {
        id: id.into(),
        timestamp: None,
        failed: None,
        recurrence: Some("OPS-3".into()),
    };
    store.record(&[log("a"), log("b")]).unwrap();
    // The same log again (an overlapping window) is not a new occurrence.
    store.record(&[log("b"), log("c")]).unwrap();
    assert_eq!(store.comment_state("OPS-3").unwrap().pending, 3);
    assert_eq!(store.counted_here("OPS-3"), 3);
}

#[test]
fn a_log_that_failed_counts_once_when_its_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "J OPS")).unwrap();
    let failed = Processed {
        id: "r".into(),
        timestamp: None,
        failed: Some((serde_json::json!({"message": "x"}), "Jira: HTTP 503".into())),
        recurrence: None,
    };
    store.record(std::slice::from_ref(&failed)).unwrap();
    // It failed again in the next run: still not an occurrence told anywhere.
    store.record(&[failed]).unwrap();
    assert_eq!(store.comment_state("OPS-3").unwrap().pending, 0);
    let succeeded = Processed {
        id: "r".into(),
        timestamp: None,
        failed: None,
        recurrence: Some("OPS-3".into()),
    };
    store.record(std::slice::from_ref(&succeeded)).unwrap();
    assert!(store.failed_logs().unwrap().is_empty());
    assert_eq!(store.comment_state("OPS-3").unwrap().pending, 1);
    // Seen again (an overlapping window): counted once.
    store.record(&[succeeded]).unwrap();
    assert_eq!(store.comment_state("OPS-3").unwrap().pending, 1);
    assert_eq!(store.counted_here("OPS-3"), 1);
}

#[test]
fn a_pending_count_is_moved_never_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    // Two jobs on one file, one Jira: both count the same ticket's occurrences.
    let mut a = StateStore::open(&db, job("src A", "J OPS")).unwrap();
    let mut b = StateStore::open(&db, job("src B", "J OPS")).unwrap();
    let log = |id: &str| Processed {
        id: id.into(),
        timestamp: None,
        failed: None,
        recurrence: Some("OPS-3".into()),
    };
    let t = |s| Utc.timestamp_opt(s, 0).single();
    a.record(&[log("a1"), log("a2")]).unwrap();
    let read = a.comment_state("OPS-3").unwrap();
    b.record(&[log("b1")]).unwrap();
    let saved = CommentChange {
        last_comment: t(100),
        pending: 0,
        first_seen: t(50),
        last_seen: t(90),
        hosts: vec!["web-1".into()],
    };
    a.change_comment_state("OPS-3", &saved).unwrap();
    assert_eq!(
        a.comment_state("OPS-3").unwrap(),
        CommentState {
            last_comment: t(100),
            pending: 3,
            first_seen: t(50),
            last_seen: t(90),
            hosts: vec!["web-1".into()],
        }
    );
    b.record(&[log("b2")]).unwrap();
    let commented = CommentChange {
        last_comment: t(200),
        pending: -(read.pending as i64),
        ..CommentChange::default()
    };
    a.change_comment_state("OPS-3", &commented).unwrap();
    assert_eq!(
        b.comment_state("OPS-3").unwrap(),
        CommentState {
            last_comment: t(200),
            pending: 2,
            ..CommentState::default()
        }
    );
    assert_eq!((a.counted_here("OPS-3"), b.counted_here("OPS-3")), (2, 2));
    // Never below 0, also for a ticket without a row yet.
    for ticket in ["OPS-3", "OPS-4"] {
        let over = CommentChange {
            pending: -5,
            ..CommentChange::default()
        };
        a.change_comment_state(ticket, &over).unwrap();
        assert_eq!(a.comment_state(ticket).unwrap().pending, 0);
    }
}

#[test]
fn a_runs_own_share_of_a_count_holds_only_what_its_batches_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "J OPS")).unwrap();
    let log = |id: &str| Processed {
        id: id.into(),
        timestamp: None,
        failed: None,
        recurrence: Some("OPS-5".into()),
    };
    store.begin().unwrap();
    store.record(&[log("a"), log("b")]).unwrap();
    // The open batch counts for the calls inside it.
    assert_eq!(store.counted_here("OPS-5"), 2);
    store.rollback();
    assert_eq!(store.counted_here("OPS-5"), 0);
    assert_eq!(store.comment_state("OPS-5").unwrap().pending, 0);
    store.begin().unwrap();
    store.record(&[log("a"), log("b"), log("c")]).unwrap();
    store.commit().unwrap();
    store.record(&[log("d")]).unwrap();
    assert_eq!(store.counted_here("OPS-5"), 4);
    assert_eq!(store.comment_state("OPS-5").unwrap().pending, 4);
    assert_eq!(store.counted_here("OPS-6"), 0);
}

#[test]
fn outcomes_checkpoints_and_the_retry_list_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(&dir.path().join("s.db"), job("src", "")).unwrap();
    let t = |s| Some(Utc.timestamp_millis_opt(s).unwrap());
    store
        .record(&[
            Processed {
                id: "a".into(),
                timestamp: t(1_000),
                failed: None,
                recurrence: None,
            },
            Processed {
                id: "b".into(),
                timestamp: t(2_000),
                failed: Some((serde_json::json!({"message": "m"}), "boom".into())),
                recurrence: None,
            },
        ])
        .unwrap();
    assert!(
        store.is_seen("a").unwrap() && store.is_seen("b").unwrap() && !store.is_seen("c").unwrap()
    );
    assert_eq!(store.failed_logs().unwrap().len(), 1);
    store
        .record(&[Processed {
            id: "b".into(),
            timestamp: t(2_000),
            failed: None,
            recurrence: None,
        }])
        .unwrap();
    assert!(
        store.failed_logs().unwrap().is_empty(),
        "a retried log that succeeds leaves the list"
    );
    store
        .advance_checkpoint(
            "src",
            t(5_000).unwrap(),
            chrono::Duration::milliseconds(3_500),
        )
        .unwrap();
    store
        .advance_checkpoint(
            "src",
            t(4_000).unwrap(),
            chrono::Duration::milliseconds(3_500),
        )
        .unwrap();
    assert_eq!(
        store.checkpoint("src").unwrap(),
        t(5_000),
        "never moves back"
    );
    assert!(
        !store.is_seen("a").unwrap(),
        "ids far behind the checkpoint are forgotten"
    );
    assert!(store.is_seen("b").unwrap());
}

#[test]
fn a_template_shows_only_its_own_jobs_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut a = StateStore::open(&db, job("datadog A q", "J1 OPS")).unwrap();
    let b = StateStore::open(&db, job("datadog B q", "J2 OPS")).unwrap();
    let mut miner = crate::grouping::TemplateMiner::default();
    let event = crate::event::LogEvent::from_value(
        serde_json::json!({"id": "l1", "attributes": {"service": "api", "message": "disk full"}}),
        || "l1".into(),
    )
    .unwrap();
    let fp = miner.fingerprint(&event).fingerprint;
    a.save_templates(&miner.take_changes()).unwrap();
    a.remember_ticket(fp.as_str(), "OPS-1").unwrap();
    let ticket = |s: &StateStore| s.load_templates().unwrap().templates[0].ticket.clone();
    assert_eq!(ticket(&a).as_deref(), Some("OPS-1"));
    // The other job files in another Jira: the template is shared, the ticket is not.
    assert_eq!(ticket(&b), None);
}

#[test]
fn a_cached_analysis_expires_by_the_stores_clock_and_a_begun_create_is_stamped_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let start = Utc.timestamp_millis_opt(1_790_000_000_000).unwrap();
    let hand = Clock::manual(start);
    let store = StateStore::open_with_clock(&db, job("src", "J OPS"), hand.clock()).unwrap();
    let ttl = chrono::Duration::days(7);
    store.cache_analysis("fp", "llm m", "{\"a\":1}").unwrap();
    store.begin_create("fp").unwrap();
    assert_eq!(store.create_begun("fp").unwrap(), Some(start));
    hand.advance(ttl);
    let cached = |s: &StateStore| s.cached_analysis("fp", "llm m", ttl).unwrap();
    assert_eq!(
        cached(&store).as_deref(),
        Some("{\"a\":1}"),
        "fresh at its TTL"
    );
    // A dry run's read-only store on the same clock sees it expire at the same moment.
    let dry = StateStore::open_read_only_with_clock(&db, job("src", "J OPS"), hand.clock())
        .unwrap()
        .expect("the store exists");
    hand.advance(chrono::Duration::milliseconds(1));
    assert_eq!((cached(&store), cached(&dry)), (None, None), "expired");
    // Asked again and cached anew: fresh for another TTL.
    store.cache_analysis("fp", "llm m", "{\"a\":2}").unwrap();
    hand.advance(ttl - chrono::Duration::seconds(1));
    assert_eq!(cached(&dry).as_deref(), Some("{\"a\":2}"));
}
