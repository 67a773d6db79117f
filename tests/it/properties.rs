//! Property tests for what turns untrusted text into something sent elsewhere: the redaction of
//! secrets, the Jira ticket builders (ADF and wiki markup) and JQL quoting.
//! In: arbitrary strings from proptest. Out: no panic, and every output valid (ADF that passes
//! the validator, wiki markup whose code blocks a sample cannot close, a JQL literal that reads
//! back as the value, redaction that is idempotent and never changes a fingerprint).

use proptest::prelude::*;
use triage::jira::content::{self, ProblemFacts};
use triage::redact::Redactor;

fn facts(text: [String; 6], hosts: Vec<String>, link: Option<String>) -> ProblemFacts {
    let [title, summary, template, sample, service, key] = text;
    ProblemFacts {
        fingerprint: "3f9a0c1b2d4e5f60".to_string(),
        service: Some(service),
        title,
        summary,
        category: "database".to_string(),
        severity: "high".to_string(),
        template,
        sample_message: sample,
        sample_log_id: "id-1".to_string(),
        log_link: link,
        hosts,
        first_seen: None,
        last_seen: None,
        occurrences: 3,
        counted_since: None,
        recurrence_of: Some(key),
        aliases: Vec::new(),
    }
}

/// Read a JQL string literal back: `Some(value)` if `literal` is exactly one quoted string.
fn read_jql_literal(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            // An unescaped quote would end the literal early.
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Messages built from pieces logs really contain, secrets among them.
fn message() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z ]{0,12}",
        "[A-Za-z0-9 .:=/_-]{0,16}",
        Just("password=hunter2".to_string()),
        Just("token: abc123456789".to_string()),
        Just("Bearer abcdefghijklmnop".to_string()),
        Just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln".to_string()),
        Just("4111 1111 1111 1111".to_string()),
        Just("4111111111111111".to_string()),
        Just("AKIAIOSFODNN7EXAMPLE".to_string()),
        Just("bob@example.com".to_string()),
        Just("10.1.2.3".to_string()),
        Just("\"secret\": \"x y\"".to_string()),
        Just("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----".to_string()),
        Just("postgres://u:p4ss@db/x".to_string()),
        any::<String>(),
    ];
    prop::collection::vec(piece, 1..8).prop_map(|parts| parts.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_ticket_text_gives_valid_adf_and_closed_wiki_blocks(
        text in prop::array::uniform6(any::<String>()),
        hosts in prop::collection::vec(any::<String>(), 0..4),
        link in prop::option::of(any::<String>()),
    ) {
        let f = facts(text, hosts, link);
        let draft = content::ticket(&f);
        prop_assert!(triage::jira::adf::validate(&draft.description_adf()).is_ok(),
            "{:?}", triage::jira::adf::validate(&draft.description_adf()));
        prop_assert!(!draft.summary.is_empty());
        prop_assert!(draft.summary.chars().count() <= content::SUMMARY_MAX);
        prop_assert!(!draft.summary.contains('\n'));
        for label in &draft.labels {
            prop_assert!(!label.is_empty() && label.chars().count() <= content::LABEL_MAX);
            prop_assert!(!label.chars().any(char::is_whitespace), "{label:?}");
        }
        // Every {code} in the wiki markup is one of the delimiters the builder wrote.
        let blocks = usize::from(!draft.description_wiki().is_empty() && !f.template.is_empty())
            + usize::from(!f.sample_message.is_empty());
        let delimiters = draft.description_wiki().to_ascii_lowercase().matches("{code").count();
        prop_assert!(delimiters <= 2 * blocks, "{delimiters} > 2 * {blocks}: {}", draft.description_wiki());
        prop_assert_eq!(delimiters % 2, 0);
        let comment = content::recurrence_comment_adf(&f);
        prop_assert!(triage::jira::adf::validate(&comment).is_ok());
        let wiki_comment = content::recurrence_comment_wiki(&f);
        prop_assert_eq!(wiki_comment.to_ascii_lowercase().matches("{code").count() % 2, 0);
    }

    #[test]
    fn any_value_quoted_for_jql_reads_back_as_itself(value in any::<String>()) {
        let literal = triage::jira::client::jql_string(&value);
        prop_assert_eq!(read_jql_literal(&literal), Some(value));
    }

    #[test]
    fn redaction_never_panics_and_is_idempotent(text in any::<String>(), emails: bool, ips: bool) {
        let r = Redactor { emails, ips };
        let once = r.text(&text).into_owned();
        let twice = r.text(&once).into_owned();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn redaction_removes_an_embedded_secret(
        before in "[a-z ]{0,20}",
        after in "[a-z ]{0,20}",
        secret in "[A-Z0-9]{12,24}",
        key in prop::sample::select(vec!["password=", "token=", "api_key: ", "secret=", "client_secret=", "Bearer "]),
    ) {
        let text = format!("{before} {key}{secret} {after}");
        let out = Redactor::default().text(&text).into_owned();
        prop_assert!(!out.contains(&secret), "{text:?} -> {out:?}");
    }

    #[test]
    fn redaction_never_changes_a_fingerprint(message in message(), emails: bool, ips: bool) {
        let Ok(raw) = triage::event::LogEvent::from_value(
            serde_json::json!({"message": message, "service": "api"}), || "x".into()) else {
            return Ok(());
        };
        let redacted = Redactor { emails, ips }.event(raw.clone());
        prop_assert_eq!(
            triage::grouping::fingerprint::fingerprint(&raw).fingerprint,
            triage::grouping::fingerprint::fingerprint(&redacted).fingerprint,
            "{:?} -> {:?}", raw.message, redacted.message
        );
    }
}
