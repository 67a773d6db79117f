//! The file source: logs from a path or standard input, streamed.
//!
//! In: one of
//! - a saved Datadog search response `{"data":[...], "meta":...}`, or several concatenated (one
//!   per line, or pretty-printed one after another);
//! - a JSON array of events;
//! - JSON Lines: one event (or one whole response page) per line.
//!
//! Out: `SourceItem::Event` for every usable event, in file order; `SourceItem::Skipped` for a
//! malformed line or an event without a message, with its line number, and the run goes on.
//! Memory: one line, or one event of a JSON document, at a time (a `{"data":[...]}` page is
//! streamed element by element), so a 1 GB file is never read whole. A syntax error inside a
//! JSON document (not JSON Lines) cannot be resynchronised: the rest of that input is reported
//! as one skipped record with the line and column of the error.
//!
//! The reading is blocking I/O and runs on a blocking thread; the channel provides backpressure.

use std::fmt;
use std::io::{BufRead, BufReader, Cursor, Read};

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{ItemSender, Skipped, SourceItem};
use crate::config::InputPath;
use crate::event::LogEvent;

/// Read `input` to the end (or until the pipeline hangs up), sending items into `tx`.
pub async fn run(input: InputPath, tx: ItemSender) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let (origin, reader): (String, Box<dyn Read + Send>) = match &input {
            InputPath::Stdin => ("stdin".into(), Box::new(std::io::stdin())),
            InputPath::Path(p) => {
                let file = std::fs::File::open(p)
                    .map_err(|e| anyhow::anyhow!("cannot open --input {}: {e}", p.display()))?;
                (p.display().to_string(), Box::new(file))
            }
        };
        let mut emitter = Emitter {
            tx,
            origin,
            hung_up: false,
        };
        read_all(BufReader::with_capacity(256 * 1024, reader), &mut emitter)
            .map_err(|e| anyhow::anyhow!("reading {input}: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("the file reader stopped unexpectedly: {e}"))?
}

/// Sends items; remembers when the receiver is gone so reading can stop early.
/// Where an event was found.
#[derive(Debug, Clone, Copy)]
enum At {
    Line(usize),
    Record(usize),
}

struct Emitter {
    tx: ItemSender,
    origin: String,
    hung_up: bool,
}

impl Emitter {
    fn send(&mut self, item: SourceItem) {
        if !self.hung_up && self.tx.blocking_send(item).is_err() {
            self.hung_up = true;
        }
    }

    /// Send one event; `at` is where it was (`Line(n)` in JSON Lines, else `Record(n)`), and
    /// `index` its position inside that line when a line held several.
    fn event(&mut self, value: Value, at: At, index: usize) {
        let location = match at {
            At::Line(n) => format!("{}:{n}", self.origin),
            At::Record(n) => format!("{} record {n}", self.origin),
        };
        match LogEvent::from_value(value, || format!("{location}#{index}")) {
            Ok(event) => self.send(SourceItem::Event(event)),
            Err(e) => self.send(SourceItem::Skipped(Skipped {
                location,
                reason: e.to_string(),
            })),
        }
    }

    fn skipped(&mut self, location: String, reason: String) {
        self.send(SourceItem::Skipped(Skipped { location, reason }));
    }
}

fn read_all<R: BufRead>(mut reader: R, out: &mut Emitter) -> std::io::Result<()> {
    // Skip leading whitespace (and a UTF-8 byte-order mark) to see what kind of input this is.
    let first = loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(()); // empty input: nothing to do
        }
        let skip = buf
            .iter()
            .take_while(|b| b.is_ascii_whitespace() || matches!(b, 0xEF | 0xBB | 0xBF))
            .count();
        if skip < buf.len() {
            let first = buf[skip];
            reader.consume(skip);
            break first;
        }
        let n = buf.len();
        reader.consume(n);
    };
    if first == b'[' {
        return read_documents(reader, out);
    }
    // JSON Lines, unless the first line alone is not a complete JSON value (pretty-printed JSON).
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if first == b'{' && serde_json::from_str::<Value>(&line).is_err() {
        let rest = Cursor::new(line.into_bytes()).chain(reader);
        return read_documents(BufReader::new(rest), out);
    }
    let mut number = 1;
    loop {
        if out.hung_up {
            return Ok(());
        }
        read_line(&line, number, out);
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => number += 1,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                // Not UTF-8: skip to the end of this line and go on.
                number += 1;
                let mut junk = Vec::new();
                reader.read_until(b'\n', &mut junk)?;
                out.skipped(
                    format!("{}:{number}", out.origin),
                    "line is not valid UTF-8".into(),
                );
                line.clear();
            }
            Err(e) => return Err(e),
        }
    }
}

/// One line of JSON Lines: an event, a whole response page, or an array of events.
fn read_line(line: &str, number: usize, out: &mut Emitter) {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return;
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(mut map)) if matches!(map.get("data"), Some(Value::Array(_))) => {
            if let Some(Value::Array(items)) = map.remove("data") {
                for (i, v) in items.into_iter().enumerate() {
                    out.event(v, At::Line(number), i);
                }
            }
        }
        Ok(Value::Array(items)) => {
            for (i, v) in items.into_iter().enumerate() {
                out.event(v, At::Line(number), i);
            }
        }
        Ok(v) => out.event(v, At::Line(number), 0),
        Err(e) => out.skipped(
            format!("{}:{number}", out.origin),
            format!("malformed JSON ({})", strip_position(&e)),
        ),
    }
}

/// A stream of JSON documents (arrays, pages, or events), parsed element by element.
fn read_documents<R: Read>(reader: R, out: &mut Emitter) -> std::io::Result<()> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut index = 0usize;
    loop {
        if out.hung_up || de.end().is_ok() {
            return Ok(());
        }
        let seed = Document {
            out: &mut *out,
            index: &mut index,
        };
        if let Err(e) = seed.deserialize(&mut de) {
            if e.is_io() {
                return Err(std::io::Error::other(e));
            }
            let location = format!("{}:{}:{}", out.origin, e.line(), e.column());
            out.skipped(
                location,
                format!(
                    "malformed JSON ({}); the rest of this input could not be read",
                    strip_position(&e)
                ),
            );
            return Ok(());
        }
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A top-level JSON value: an array of events, a response page, or one event.
struct Document<'a> {
    out: &'a mut Emitter,
    index: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of events, a Datadog response page, or an event")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Events {
            out: self.out,
            index: self.index,
        }
        .visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut fields = Map::new();
        let mut page = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "data" {
                page = true;
                map.next_value_seed(Events {
                    out: &mut *self.out,
                    index: &mut *self.index,
                })?;
            } else {
                let value: Value = map.next_value()?;
                fields.insert(key, value);
            }
        }
        if !page {
            *self.index += 1;
            self.out
                .event(Value::Object(fields), At::Record(*self.index), 0);
        }
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// The elements of an array, each sent as soon as it is parsed.
struct Events<'a> {
    out: &'a mut Emitter,
    index: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for Events<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Events<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            *self.index += 1;
            self.out.event(value, At::Record(*self.index), 0);
            if self.out.hung_up {
                // Drain without keeping anything, so the deserializer stays consistent.
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str) -> Vec<SourceItem> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(10_000);
        let mut out = Emitter {
            tx,
            origin: "t".into(),
            hung_up: false,
        };
        read_all(BufReader::new(input.as_bytes()), &mut out).unwrap();
        drop(out);
        let mut items = Vec::new();
        while let Ok(i) = rx.try_recv() {
            items.push(i);
        }
        items
    }

    fn summary(items: &[SourceItem]) -> (Vec<String>, Vec<String>) {
        let mut ids = Vec::new();
        let mut skipped = Vec::new();
        for i in items {
            match i {
                SourceItem::Event(e) => ids.push(e.id.clone()),
                SourceItem::Skipped(s) => skipped.push(s.location.clone()),
                _ => {}
            }
        }
        (ids, skipped)
    }

    const EV: &str = r#"{"id":"A","type":"log","attributes":{"message":"boom","service":"s"}}"#;

    #[test]
    fn json_lines_with_bad_lines_skip_only_those() {
        let input = format!("{EV}\n{{not json\n\n{{\"id\":\"B\",\"attributes\":{{\"message\":\"\"}},\"type\":\"log\"}}\n{}\n",
            EV.replace("\"A\"", "\"C\""));
        let (ids, skipped) = summary(&read(&input));
        assert_eq!(ids, vec!["A", "C"]);
        assert_eq!(skipped, vec!["t:2", "t:4"]);
    }

    #[test]
    fn concatenated_pretty_pages_stream_all_events() {
        let page = |a: &str, b: &str| {
            format!("{{\n  \"data\": [\n    {},\n    {}\n  ],\n  \"meta\": {{\"page\": {{\"after\": \"x\"}}}}\n}}\n",
                EV.replace("\"A\"", &format!("\"{a}\"")), EV.replace("\"A\"", &format!("\"{b}\"")))
        };
        let input = format!("{}{}{{\"data\":[]}}\n", page("1", "2"), page("3", "4"));
        let (ids, skipped) = summary(&read(&input));
        assert_eq!(ids, vec!["1", "2", "3", "4"]);
        assert!(skipped.is_empty());
    }

    #[test]
    fn pages_one_per_line_and_a_json_array() {
        let input = format!("{{\"data\":[{EV}]}}\n{{\"data\":[]}}\n");
        assert_eq!(summary(&read(&input)).0, vec!["A"]);
        let input = format!("[\n{EV},\n{{\"message\":\"flat\"}},\n{{\"id\":\"no-msg\"}}\n]");
        let (ids, skipped) = summary(&read(&input));
        assert_eq!(ids, vec!["A", "t record 2#0"]);
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
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let mut out = Emitter {
            tx,
            origin: "t".into(),
            hung_up: false,
        };
        let input = format!("{EV}\n").repeat(1000);
        read_all(BufReader::new(input.as_bytes()), &mut out).unwrap();
        assert!(out.hung_up);
    }
}
