//! Arbitrary input never panics, and every line is either a log or a counted bad line.
use super::*;
use proptest::prelude::*;

fn run(input: &[u8], max: usize) -> Vec<SourceItem> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1_000_000);
    let mut out = Emitter::new(tx, "p".into(), max);
    read_all(BufReader::new(input), &mut out).expect("reading from memory cannot fail");
    drop(out);
    let mut items = Vec::new();
    while let Ok(i) = rx.try_recv() {
        items.push(i);
    }
    items
}

/// A JSON value of modest size, for the cut-and-close property.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..2048),
                                   max in 1usize..512) {
        run(&input, max);
    }

    #[test]
    fn arbitrary_bytes_never_panic_when_closing_cut_json(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = close_cut_json(&input);
    }

    /// JSON Lines of events and garbage: every non-blank line is exactly one log or one
    /// unreadable record, at its own line number.
    #[test]
    fn every_line_is_a_log_or_a_counted_bad_line(
        lines in prop::collection::vec(
            prop_oneof![
                "[a-z ]{1,30}".prop_map(|m| format!("{{\"message\":\"{m}x\"}}").into_bytes()),
                prop::collection::vec(any::<u8>(), 0..40),
                Just(b"{\"id\": broken".to_vec()),
            ],
            1..40)
    ) {
        // The first line is whole, so the input is JSON Lines whatever follows.
        let mut input = b"{\"message\":\"first\"}\n".to_vec();
        let mut expected = 1usize;
        for line in &lines {
            let clean: Vec<u8> = line.iter().copied().filter(|&b| b != b'\n' && b != b'\r').collect();
            let empty_batch = matches!(serde_json::from_slice::<Value>(trim(&clean)),
                Ok(Value::Array(a)) if a.is_empty());
            if !trim(&clean).is_empty() && !empty_batch {
                expected += 1;
            }
            input.extend_from_slice(&clean);
            input.push(b'\n');
        }
        let items = run(&input, DEFAULT_MAX_LINE_BYTES);
        // Events carry ids from their content, so they are counted; an unreadable line is
        // counted once by its line number (a line holding an array may give several).
        let mut events = 0usize;
        let mut bad_lines = std::collections::BTreeSet::new();
        for item in &items {
            match item {
                SourceItem::Event(_) => events += 1,
                SourceItem::Skipped(s) => {
                    bad_lines.insert(s.location.trim_start_matches("p:").parse::<usize>().expect("a line number"));
                }
                _ => {}
            }
        }
        prop_assert_eq!(events + bad_lines.len(), expected);
    }

    /// Any prefix of a valid JSON object or array closes into valid JSON.
    #[test]
    fn a_cut_json_text_always_closes_into_valid_json(value in json_value(), at in any::<prop::sample::Index>()) {
        let value = match value {
            v @ (Value::Object(_) | Value::Array(_)) => v,
            other => Value::Array(vec![other]),
        };
        let text = serde_json::to_vec(&value).unwrap();
        let prefix = &text[..at.index(text.len() + 1).max(1)];
        let closed = close_cut_json(prefix).expect("a prefix of a JSON object or array");
        prop_assert!(serde_json::from_slice::<Value>(&closed).is_ok(),
            "{} -> {}", String::from_utf8_lossy(prefix), String::from_utf8_lossy(&closed));
    }
}
