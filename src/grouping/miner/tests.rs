use super::*;
use crate::grouping::TemplateSnapshot;
use serde_json::json;

fn ev(service: &str, message: &str) -> LogEvent {
    LogEvent::from_value(
        json!({"id": "x", "service": service, "message": message}),
        || "x".into(),
    )
    .unwrap()
}

fn run(miner: &mut TemplateMiner, lines: &[&str]) -> Vec<Fingerprint> {
    let fps: Vec<Fingerprint> = lines
        .iter()
        .map(|l| miner.fingerprint(&ev("sshd", l)).fingerprint)
        .collect();
    fps.iter().map(|f| miner.resolve(f)).collect()
}

#[test]
fn known_input_has_a_fixed_fingerprint() {
    // The label of every ticket filed from now on: change it on purpose only. A fresh
    // template's fingerprint is SHA-256 over the service and the masked line.
    let mut miner = TemplateMiner::default();
    let out = miner.fingerprint(&ev(
        "checkout",
        "Connection to 10.0.3.17:5432 timed out after 3000ms",
    ));
    assert_eq!(&*out.template, "Connection to <*> timed out after <*>");
    assert_eq!(out.fingerprint.as_str(), "af48ed29c66ca1d6");
}

#[test]
fn user_names_become_a_variable_and_the_first_fingerprint_survives() {
    let mut miner = TemplateMiner::default();
    let users = ["root", "admin", "uucp", "guest", "oracle"];
    let lines: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| format!("Failed password for {u} from 10.0.0.{i} port 22{i} ssh2"))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let first = miner.fingerprint(&ev("sshd", refs[0])).fingerprint;
    let fps = run(&mut miner, &refs);
    assert!(fps.iter().all(|f| *f == first), "{fps:?}");
    assert_eq!(
        miner.template_of(&first),
        Some("Failed password for <*> from <*> port <*> ssh2")
    );
    let merges = miner.take_run_merges();
    assert_eq!(
        merges.len(),
        3,
        "three younger templates merged into the first"
    );
    assert!(merges.iter().all(|m| m.into == first.as_str()));
    // A merged fingerprint stands for the survivor.
    assert_eq!(
        miner.resolve(&Fingerprint::from_raw(merges[0].from.clone())),
        first
    );
}

#[test]
fn a_few_distinct_words_stay_structure() {
    let mut miner = TemplateMiner::default();
    let fps = run(
        &mut miner,
        &[
            "h1.example.com:80 open through proxy p.example.com:5070 HTTPS",
            "h2.example.com:443 open through proxy p.example.com:5070 SOCKS5",
            "10.0.0.1:80 open through proxy p.example.com:5070 HTTPS",
            "Accepted password for root from 10.0.0.1 port 1 ssh2",
            "Failed password for root from 10.0.0.1 port 1 ssh2",
        ],
    );
    assert_eq!(fps[0], fps[2]);
    assert_ne!(fps[0], fps[1]);
    assert_ne!(fps[3], fps[4]);
}

#[test]
fn words_that_change_together_stay_structure_names_that_change_alone_do_not() {
    let reasons = [
        "invalid password",
        "account locked",
        "expired token",
        "unknown realm",
        "mfa required",
    ];
    let users = ["bob", "grace", "alice", "dave", "erin", "frank", "heidi"];
    let lines: Vec<String> = (0..70)
        .map(|i| {
            format!(
                "User {} failed to authenticate from 10.0.0.{}: {}",
                users[(i * 3) % users.len()],
                i % 250,
                reasons[i % reasons.len()]
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut whole = TemplateMiner::default();
    let fps = run(&mut whole, &refs);
    let problems: std::collections::HashSet<_> = fps.iter().collect();
    assert_eq!(
        problems.len(),
        reasons.len(),
        "one problem per reason, any user"
    );
    for (i, fp) in fps.iter().enumerate() {
        assert_eq!(*fp, fps[i % reasons.len()], "{}", lines[i]);
    }

    // The same through restores: what varied alone is worked out again from the templates.
    let mut snapshot = TemplateSnapshot::default();
    let mut raw = Vec::new();
    for window in refs.chunks(9) {
        let mut miner = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot.clone());
        for l in window {
            raw.push(miner.fingerprint(&ev("auth", l)).fingerprint);
        }
        apply(&mut snapshot, miner.take_changes());
    }
    let last = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot);
    let windowed: Vec<Fingerprint> = raw.iter().map(|f| last.resolve(f)).collect();
    let problems: std::collections::HashSet<_> = windowed.iter().collect();
    assert_eq!(problems.len(), reasons.len(), "{windowed:?}");
}

#[test]
fn a_template_born_beside_a_sibling_is_young_until_it_settles() {
    let mut miner = TemplateMiner::default();
    let line = |u: &str| format!("Failed password for {u} from 10.0.0.1 port 22 ssh2");
    let first = miner.fingerprint(&ev("sshd", &line("root")));
    assert!(!first.young, "alone in its family");
    let second = miner.fingerprint(&ev("sshd", &line("admin")));
    assert!(second.young, "born beside root's template");
    assert!(
        !miner.fingerprint(&ev("sshd", &line("admin"))).young,
        "not born again"
    );
    assert!(miner.fingerprint(&ev("sshd", &line("uucp"))).young);
    // The fourth value makes the position a variable: this log lands on root's template.
    let fourth = miner.fingerprint(&ev("sshd", &line("guest")));
    assert!(!fourth.young);
    assert_eq!(fourth.fingerprint, first.fingerprint);
    assert_eq!(miner.resolve(&second.fingerprint), first.fingerprint);
    let other = miner.fingerprint(&ev("cron", "job nightly failed"));
    assert!(!other.young, "another service, another family");
}

/// Values under different keys are different events, however many keys there are; the
/// values of one key are data.
#[test]
fn keys_are_structure_and_their_values_data() {
    let mut miner = TemplateMiner::default();
    let fps = run(
        &mut miner,
        &[
            "getRecentTasks: num=20,flags=62",
            "getRecentTasks: topActivity=ComponentInfo{a/b.C}",
            "getRecentTasks: count=3",
            "getRecentTasks: mode=fast",
            "getRecentTasks: user=root",
        ],
    );
    let distinct: std::collections::HashSet<_> = fps.iter().collect();
    assert_eq!(distinct.len(), 5, "{fps:?}");
    let mut miner = TemplateMiner::default();
    let users = ["cyrus", "root", "news", "test", "guest", "admin"];
    let mut lines: Vec<String> = users
        .iter()
        .map(|u| format!("session opened for user {u} by (uid=0)"))
        .collect();
    lines.push("session opened for user root by LOGIN(uid=0)".into());
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let fps = run(&mut miner, &lines);
    assert!(fps[..6].iter().all(|f| *f == fps[0]), "{fps:?}");
    assert_ne!(fps[6], fps[0], "by LOGIN(...) is another event");
}

/// `[[group]]` rules: `split` words never become variables for the lines a rule matches;
/// `fingerprint` makes every matching line one problem.
#[test]
fn group_rules_split_words_and_name_problems() {
    use crate::grouping::{GroupRule, GroupRules};
    let lines = [
        "breaker open for upstream",
        "breaker closed for upstream",
        "breaker half for upstream",
        "breaker stuck for upstream",
    ];
    let fps = run(&mut TemplateMiner::default(), &lines);
    assert!(
        fps.iter().all(|f| *f == fps[0]),
        "without a rule: one problem"
    );
    let rules = GroupRules::new(vec![
        GroupRule {
            name: "states".into(),
            template: Some(regex::Regex::new("^breaker").unwrap()),
            split: vec!["open".into()],
            ..GroupRule::default()
        },
        GroupRule {
            name: "disks".into(),
            template: Some(regex::Regex::new("disk").unwrap()),
            fingerprint: Some("disk-trouble".into()),
            ..GroupRule::default()
        },
    ]);
    let mut miner = TemplateMiner::default().with_rules(rules);
    let fps = run(&mut miner, &lines);
    let distinct: std::collections::HashSet<_> = fps.iter().collect();
    assert_eq!(distinct.len(), 4, "{fps:?}");
    let fps = run(
        &mut miner,
        &["disk full on /var", "cannot write: disk quota exceeded"],
    );
    assert!(fps.iter().all(|f| f.as_str() == "disk-trouble"), "{fps:?}");
}

/// Upper-case keywords (states, protocols, methods) are a vocabulary: however many show
/// up at one position, they stay structure; lower-case names there become a variable.
#[test]
fn keywords_stay_structure_names_become_variables() {
    let states = ["OPEN", "CLOSED", "HALF_OPEN", "FORCED_OPEN", "DISABLED"];
    let lines: Vec<String> = states
        .iter()
        .map(|s| format!("circuit breaker for upstream went {s}"))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let fps = run(&mut TemplateMiner::default(), &lines);
    let distinct: std::collections::HashSet<_> = fps.iter().collect();
    assert_eq!(distinct.len(), states.len(), "{fps:?}");
    let fps = run(
        &mut TemplateMiner::default(),
        &[
            "User bob failed to authenticate",
            "User grace failed to authenticate",
            "User alice failed to authenticate",
            "User dave failed to authenticate",
        ],
    );
    assert!(fps.iter().all(|f| *f == fps[0]), "{fps:?}");
}

/// Table-like lines whose leading words differ are different events.
#[test]
fn different_leading_words_stay_apart() {
    let mut miner = TemplateMiner::default();
    let fps = run(
        &mut miner,
        &[
            "PID hash table entries: 512 (order: 9, 4096 bytes)",
            "Dquot-cache hash table entries: 1024 (order: 0, 4096 bytes)",
            "Inode-cache hash table entries: 8192 (order: 3, 32768 bytes)",
            "Mount-cache hash table entries: 512 (order: 0, 4096 bytes)",
        ],
    );
    let distinct: std::collections::HashSet<_> = fps.iter().collect();
    assert_eq!(distinct.len(), 4, "{fps:?}");
}

#[test]
fn a_variable_first_token_does_not_split() {
    let mut miner = TemplateMiner::default();
    let fps = run(
        &mut miner,
        &[
            "web-a: disk full on volume data",
            "db-b: disk full on volume data",
            "cache-c: disk full on volume data",
            "queue-d: disk full on volume data",
            "edge-e: disk full on volume data",
        ],
    );
    assert!(fps.iter().all(|f| *f == fps[0]), "{fps:?}");
}

#[test]
fn services_are_part_of_the_key_and_error_fingerprint_wins() {
    let mut miner = TemplateMiner::default();
    let a = miner.fingerprint(&ev("a", "disk full")).fingerprint;
    let b = miner.fingerprint(&ev("b", "disk full")).fingerprint;
    assert_ne!(a, b);
    let forced = LogEvent::from_value(
        json!({"id": "y", "service": "a", "message": "disk full",
               "attributes": {"error": {"fingerprint": "disk-v2"}}}),
        || "y".into(),
    )
    .unwrap();
    assert_eq!(miner.fingerprint(&forced).fingerprint.as_str(), "disk-v2");
}

#[test]
fn the_same_logs_give_the_same_fingerprints_every_time() {
    let lines: Vec<String> = (0..300)
        .map(|i| match i % 3 {
            0 => format!("session opened for user u{} by (uid={i})", i % 7),
            1 => format!("worker {i} failed: GET https://x/{i} after {i}ms"),
            _ => format!("Invalid user name{} from 10.1.{}.{}", i % 11, i % 5, i % 9),
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let once = run(&mut TemplateMiner::default(), &refs);
    let twice = run(&mut TemplateMiner::default(), &refs);
    assert_eq!(once, twice);
}

#[test]
fn the_cap_evicts_the_least_recently_matched_but_never_a_ticketed_template() {
    let mut miner = TemplateMiner::new(MinerConfig {
        cap: 10,
        ..MinerConfig::default()
    });
    let ticketed = miner.fingerprint(&ev("s", "alpha beta gamma")).fingerprint;
    miner.note_ticket(&ticketed, "OPS-1");
    let words = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve", "thirteen", "fourteen", "fifteen",
    ];
    for w in words {
        miner.fingerprint(&ev("s", &format!("{w} happened here")));
    }
    assert!(miner.len() <= 10);
    assert_eq!(miner.template_of(&ticketed), Some("alpha beta gamma"));
    let changes = miner.take_changes();
    assert!(!changes.removed.is_empty());
    // The most recent ones are kept.
    let kept: Vec<String> = miner.templates().into_iter().map(|t| t.template).collect();
    assert!(
        kept.contains(&"fifteen happened here".to_string()),
        "{kept:?}"
    );
    assert!(!kept.contains(&"one happened here".to_string()), "{kept:?}");
}

#[test]
fn a_miner_restored_from_its_changes_continues_exactly() {
    let lines: Vec<String> = (0..400)
        .map(|i| match i % 4 {
            0 => format!(
                "Failed password for user{} from 10.0.0.{} port {i} ssh2",
                ["root", "adm", "bin", "sys", "ftp"][i % 5],
                i % 200
            ),
            1 => format!("Connection closed by 10.0.{}.1 [preauth]", i % 13),
            2 => format!(
                "Received disconnect from 10.0.0.{}: 11: {} [preauth]",
                i % 17,
                ["Bye Bye", "normal"][i % 2]
            ),
            _ => format!(
                "pam_unix(sshd:auth): check pass; user {}",
                ["unknown", "known", "root", "x", "y"][i % 5]
            ),
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut whole = TemplateMiner::default();
    let expected = run(&mut whole, &refs);

    // The same logs in 10 windows, each with a miner rebuilt from what the last one saved.
    let mut snapshot = TemplateSnapshot::default();
    let mut raw = Vec::new();
    for window in refs.chunks(40) {
        let mut miner = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot.clone());
        for l in window {
            raw.push(miner.fingerprint(&ev("sshd", l)).fingerprint);
        }
        apply(&mut snapshot, miner.take_changes());
    }
    let last = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot);
    let windowed: Vec<Fingerprint> = raw.iter().map(|f| last.resolve(f)).collect();
    assert_eq!(windowed, expected);
}

/// What the state store does with a save, in memory.
fn apply(s: &mut TemplateSnapshot, c: TemplateChanges) {
    for f in c.families {
        s.families.retain(|x| x.id != f.id);
        s.families.push(f);
    }
    for t in c.templates {
        s.templates.retain(|x| x.fingerprint != t.fingerprint);
        s.templates.push(t);
    }
    s.templates.retain(|t| !c.removed.contains(&t.fingerprint));
    s.merges.extend(c.merges);
}
