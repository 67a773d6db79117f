use super::*;

fn read_with(input: &[u8], max_line_bytes: usize) -> Vec<SourceItem> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let mut out = Emitter::new(tx, "t".into(), max_line_bytes);
    read_all(BufReader::new(input), &mut out).unwrap();
    drop(out);
    let mut items = Vec::new();
    while let Ok(i) = rx.try_recv() {
        items.push(i);
    }
    items
}

fn read(input: &str) -> Vec<SourceItem> {
    read_with(input.as_bytes(), DEFAULT_MAX_LINE_BYTES)
}

fn summary(items: &[SourceItem]) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut skipped = Vec::new();
    for i in items {
        match i {
            SourceItem::Event(e) => ids.push(e.id.clone()),
            SourceItem::Skipped(s) => {
                assert!(s.unreadable, "a bad record of a file is an input error");
                skipped.push(s.location.clone())
            }
            _ => {}
        }
    }
    (ids, skipped)
}

fn notices(items: &[SourceItem]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Notice(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

const EV: &str = r#"{"id":"A","type":"log","attributes":{"message":"boom","service":"s"}}"#;

fn ev(id: &str) -> String {
    EV.replace("\"A\"", &format!("\"{id}\""))
}

#[test]
fn json_lines_with_bad_lines_skip_only_those() {
    let input = format!("{EV}\n{{not json\n\n{{\"id\":\"B\",\"attributes\":{{\"message\":\"\"}},\"type\":\"log\"}}\n{}\n",
        EV.replace("\"A\"", "\"C\""));
    let (ids, skipped) = summary(&read(&input));
    assert_eq!(ids, vec!["A", "C"]);
    assert_eq!(skipped, vec!["t:2", "t:4"]);
}

#[test]
fn invalid_utf8_costs_exactly_that_line_with_its_true_line_number() {
    let mut input = Vec::new();
    input.extend_from_slice(format!("{}\n", ev("1")).as_bytes());
    input.extend_from_slice(b"{\"message\":\"caf\xC3\x28 \xFF\"}\n");
    input.extend_from_slice(format!("{}\n{}\n", ev("3"), ev("4")).as_bytes());
    input.extend_from_slice(b"\xFE\xFF\n");
    input.extend_from_slice(format!("{}\n", ev("6")).as_bytes());
    let (ids, skipped) = summary(&read_with(&input, DEFAULT_MAX_LINE_BYTES));
    assert_eq!(ids, vec!["1", "3", "4", "6"]);
    assert_eq!(skipped, vec!["t:2", "t:5"]);
}

#[test]
fn an_invalid_utf8_first_line_costs_only_itself() {
    let mut input = b"\xFF\xFE{\"message\":\"x\"}\n".to_vec();
    for i in 2..=4 {
        input.extend_from_slice(format!("{}\n", ev(&i.to_string())).as_bytes());
    }
    let (ids, skipped) = summary(&read_with(&input, DEFAULT_MAX_LINE_BYTES));
    assert_eq!(ids, vec!["2", "3", "4"]);
    assert_eq!(skipped, vec!["t:1"]);
}

#[test]
fn a_malformed_first_line_does_not_decide_the_format_of_the_rest() {
    let mut input = String::from("{\"id\": \"x\", \"attributes\": {\"message\": trunc\n");
    for i in 0..1000 {
        input.push_str(&ev(&format!("L{i}")));
        input.push('\n');
    }
    let items = read(&input);
    let (ids, skipped) = summary(&items);
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids[0], "L0");
    assert_eq!(skipped, vec!["t:1"]);
    assert!(notices(&items).is_empty());
}

#[test]
fn an_ambiguous_input_is_read_line_by_line_and_says_so() {
    // Three whole lines among seven fragments: neither clearly JSON Lines nor a document.
    let mut input = String::new();
    for i in 0..10 {
        if i % 3 == 1 {
            input.push_str(&ev(&i.to_string()));
        } else {
            input.push_str("{\"broken\": ");
        }
        input.push('\n');
    }
    let items = read(&input);
    let (ids, skipped) = summary(&items);
    assert_eq!(ids, vec!["1", "4", "7"]);
    assert_eq!(skipped.len(), 7);
    let n = notices(&items);
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].contains("ambiguous"), "{n:?}");
}

#[test]
fn concatenated_pretty_pages_stream_all_events() {
    let page = |a: &str, b: &str| {
        format!("{{\n  \"data\": [\n    {},\n    {}\n  ],\n  \"meta\": {{\"page\": {{\"after\": \"x\"}}}}\n}}\n",
            ev(a), ev(b))
    };
    let input = format!("{}{}{{\"data\":[]}}\n", page("1", "2"), page("3", "4"));
    let items = read(&input);
    let (ids, skipped) = summary(&items);
    assert_eq!(ids, vec!["1", "2", "3", "4"]);
    assert!(skipped.is_empty());
    assert!(notices(&items).is_empty());
}

#[test]
fn a_broken_page_among_concatenated_pages_costs_only_itself() {
    let page = |a: &str, b: &str| {
        format!(
            "{{\n  \"data\": [\n    {},\n    {}\n  ]\n}}\n",
            ev(a),
            ev(b)
        )
    };
    let broken = "{\n  \"data\": [\n    {\"id\": oops},\n    {\"id\":\"lost\"}\n  ]\n}\n";
    let input = format!("{}{broken}{}", page("1", "2"), page("3", "4"));
    let (ids, skipped) = summary(&read(&input));
    assert_eq!(ids, vec!["1", "2", "3", "4"]);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].starts_with("t:9:"), "{skipped:?}");
}

#[test]
fn pages_one_per_line_and_a_json_array() {
    let input = format!("{{\"data\":[{EV}]}}\n{{\"data\":[]}}\n");
    assert_eq!(summary(&read(&input)).0, vec!["A"]);
    let input = format!("[\n{EV},\n{{\"message\":\"flat\"}},\n{{\"id\":\"no-msg\"}}\n]");
    let (ids, skipped) = summary(&read(&input));
    assert_eq!(ids[0], "A");
    assert!(ids[1].starts_with("content:"), "{ids:?}");
    assert_eq!(ids.len(), 2);
    assert_eq!(skipped, vec!["t record 3"]);
}

#[test]
fn a_syntax_error_inside_a_document_keeps_what_came_before() {
    let input = format!("[\n{EV},\n{{\"id\": oops}}\n]");
    let (ids, skipped) = summary(&read(&input));
    assert_eq!(ids, vec!["A"]);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].starts_with("t:3:"), "{skipped:?}");
}

#[test]
fn a_truncated_one_line_array_is_one_unreadable_record() {
    let (ids, skipped) = summary(&read("[{\"message\":\"a\""));
    assert!(ids.is_empty());
    assert_eq!(skipped, vec!["t:1"]);
}

#[test]
fn a_line_longer_than_max_line_bytes_is_cut_and_its_message_marked() {
    let long = format!(
        "{{\"id\":\"big\",\"type\":\"log\",\"attributes\":{{\"service\":\"s\",\"message\":\"{}\"}}}}",
        "x".repeat(5000)
    );
    let input = format!("{}\n{long}\n{}\n", ev("1"), ev("3"));
    let items = read_with(input.as_bytes(), 1024);
    let (ids, skipped) = summary(&items);
    assert_eq!(ids, vec!["1", "big", "3"]);
    assert!(skipped.is_empty());
    let big = items
        .iter()
        .find_map(|i| match i {
            SourceItem::Event(e) if e.id == "big" => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert!(big.message.ends_with(CUT_MARK), "{}", big.message);
    assert!(big.message.len() < 1024);
    let cut: Vec<&Cut> = items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Cut(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].location, "t:2");
    assert_eq!(cut[0].length, long.len() as u64 + 1);
    assert_eq!(cut[0].kept, 1024);
}

#[test]
fn a_cut_line_without_a_message_in_reach_is_unreadable_and_the_next_line_is_read() {
    let long = format!(
        "{{\"id\":\"big\",\"attributes\":{{\"stack\":\"{}\",\"message\":\"m\"}}}}",
        "y".repeat(5000)
    );
    let input = format!("{long}\n{}\n", ev("2"));
    let (ids, skipped) = summary(&read_with(input.as_bytes(), 512));
    assert_eq!(ids, vec!["2"]);
    assert_eq!(skipped, vec!["t:1"]);
}

#[test]
fn a_record_longer_than_max_line_bytes_in_a_document_is_skipped_and_reading_goes_on() {
    let big = format!("{{\"id\":\"big\",\"message\":\"{}\"}}", "z".repeat(5000));
    let input = format!(
        "{{\n\"data\": [\n  {},\n  {big},\n  {}\n]\n}}\n{{\n\"data\": [\n  {}\n]\n}}\n",
        ev("1"),
        ev("2"),
        ev("3")
    );
    let (ids, skipped) = summary(&read_with(input.as_bytes(), 1024));
    assert_eq!(ids, vec!["1", "3"]);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
}

#[test]
fn after_a_bad_element_the_elements_that_start_a_line_are_still_read() {
    let input = format!(
        "[\n{},\n{{\"id\": oops}},\n{},\n{}\n]\n",
        ev("1"),
        ev("3"),
        ev("4")
    );
    let items = read(&input);
    let (ids, skipped) = summary(&items);
    assert_eq!(ids, vec!["1", "3", "4"]);
    assert_eq!(skipped.len(), 1, "only the bad element: {skipped:?}");
    assert!(skipped[0].starts_with("t:3:"), "{skipped:?}");
    assert!(notices(&items).is_empty());
}

#[test]
fn the_real_datadog_cassette_page_reads() {
    let cassette = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/datadog/Search-logs-returns-OK-response-with-pagination.json"
    ))
    .expect("fixture shipped in tests/fixtures");
    let v: Value = serde_json::from_str(&cassette).unwrap();
    let mut body = String::new();
    for i in v["http_interactions"].as_array().unwrap() {
        body.push_str(i["response"]["body"]["string"].as_str().unwrap());
        body.push('\n');
    }
    let (ids, skipped) = summary(&read(&body));
    assert_eq!(
        ids.len(),
        3,
        "two logs on page one, one on page two, none on page three"
    );
    assert!(ids.iter().all(|id| id.starts_with("AQAAAYAZ")));
    assert!(skipped.is_empty());
}

#[test]
fn empty_input_and_stops_when_the_pipeline_hangs_up() {
    assert!(read("  \n").is_empty());
    assert!(read("").is_empty());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    drop(rx);
    let mut out = Emitter::new(tx, "t".into(), DEFAULT_MAX_LINE_BYTES);
    let input = format!("{EV}\n").repeat(1000);
    read_all(BufReader::new(input.as_bytes()), &mut out).unwrap();
    assert!(out.hung_up);
}

#[test]
fn cut_json_is_closed_where_it_can_be() {
    let close = |s: &str| close_cut_json(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
    assert_eq!(close(r#"{"a":"hel"#).as_deref(), Some(r#"{"a":"hel"}"#));
    assert_eq!(
        close(r#"{"a":1,"b":{"c":"x"#).as_deref(),
        Some(r#"{"a":1,"b":{"c":"x"}}"#)
    );
    assert_eq!(close(r#"{"a":12"#).as_deref(), Some(r#"{}"#));
    assert_eq!(close(r#"{"a":"x","ke"#).as_deref(), Some(r#"{"a":"x"}"#));
    assert_eq!(close(r#"[{"m":"a\"#).as_deref(), Some(r#"[{"m":"a"}]"#));
    assert_eq!(close(r#"[{"m":"a\u00"#).as_deref(), Some(r#"[{"m":"a"}]"#));
    assert_eq!(
        close(r#"[{"m":"a\ud83d\ude0"#).as_deref(),
        Some(r#"[{"m":"a"}]"#)
    );
    assert_eq!(
        close(r#"{"a":true,"b":nu"#).as_deref(),
        Some(r#"{"a":true}"#)
    );
    assert_eq!(close(r#"{"a":[1,2],"#).as_deref(), Some(r#"{"a":[1,2]}"#));
    assert_eq!(
        close("{\"m\":\"caf\u{e9}").as_deref(),
        Some("{\"m\":\"caf\u{e9}\"}")
    );
    let cut_in_char = &"{\"m\":\"\u{e9}\u{e9}".as_bytes()[..8];
    assert!(close_cut_json(cut_in_char).is_some());
    assert_eq!(close(r#""just a string"#), None);
    assert_eq!(close("   "), None);
}

/// What reading `input` sends when told to say how far it has read: the positions, and how many
/// records came before each.
fn positions(input: &[u8]) -> Vec<(u64, usize)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let mut out = Emitter::new(tx, "t".into(), DEFAULT_MAX_LINE_BYTES);
    out.tell_position = true;
    read_all(BufReader::with_capacity(1024, input), &mut out).unwrap();
    drop(out);
    let mut records = 0;
    let mut said = Vec::new();
    while let Ok(item) = rx.try_recv() {
        match item {
            SourceItem::Event(_) | SourceItem::Skipped(_) => records += 1,
            SourceItem::Read { bytes } => said.push((bytes, records)),
            _ => {}
        }
    }
    said
}

#[test]
fn the_bytes_read_are_told_as_records_go_and_reach_the_size_at_the_end() {
    let line =
        |i: usize| format!(r#"{{"id":"l{i}","type":"log","attributes":{{"message":"boom {i}"}}}}"#);
    let lines: String = (0..200).map(|i| line(i) + "\n").collect();
    let array = format!(
        "[\n{}\n]\n",
        (0..200).map(line).collect::<Vec<_>>().join(",\n")
    );
    // Unreadable lines are records too.
    let mixed: String = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                line(i) + "\n"
            } else {
                "not json\n".into()
            }
        })
        .collect();
    for input in [lines, array, mixed] {
        let said = positions(input.as_bytes());
        assert!(said.len() >= 3, "{said:?}");
        assert!(said.windows(2).all(|w| w[0] <= w[1]), "{said:?}");
        // Each position counts the bytes of the records sent before it, and no more than the
        // input holds; the last one is the whole input.
        for &(bytes, records) in &said[..said.len() - 1] {
            assert_eq!(records % 64, 0, "{said:?}");
            assert!(bytes > 0 && bytes < input.len() as u64, "{said:?}");
        }
        assert_eq!(said.last().map(|p| p.0), Some(input.len() as u64));
    }
}

#[test]
fn nothing_is_told_of_the_position_unless_asked() {
    let input = format!("{EV}\n").repeat(200);
    assert!(!read(&input)
        .iter()
        .any(|i| matches!(i, SourceItem::Read { .. })));
}
