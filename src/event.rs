//! `LogEvent`: one error log, as every source hands it to the pipeline.
//!
//! In: a JSON value in the Datadog Logs v2 shape
//! (`{"id", "type": "log", "attributes": {"timestamp", "status", "service", "host", "message",
//! "tags", "attributes": {...}}}`), or the same fields flat at the top level (what people write
//! by hand in JSON Lines). Out: a `LogEvent`, or an `EventError` that says why the value is not a
//! usable log. `service`, `host`, `tags` and the custom `attributes` may be missing; `status` may
//! be in any case (it is lower-cased here); the only hard requirement is a non-empty message.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

mod attributes;
mod text;

pub use attributes::{Attributes, Text};

/// One log event, normalised from whatever shape the source delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    /// Datadog's event id; a file record without one gets `content:<hash>` from its content.
    pub id: String,
    /// When the log was emitted, if the event said so.
    pub timestamp: Option<DateTime<Utc>>,
    /// Log status, lower-cased (`error`, `critical`, `emergency`, `warn`, ...); empty if absent.
    pub status: String,
    /// The emitting service (`service` attribute), if any.
    pub service: Option<String>,
    /// The emitting host, if any.
    pub host: Option<String>,
    /// The log message; never empty.
    pub message: String,
    /// Datadog tags (`key:value`), duplicates removed, order kept.
    pub tags: Vec<String>,
    /// The custom attributes object (`attributes.attributes` in Datadog's shape), if any.
    pub attributes: Attributes,
}

/// Why a JSON value could not become a `LogEvent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("event has no message")]
    NoMessage,
}

impl LogEvent {
    /// Build an event from a JSON value in Datadog's shape or the flat shape.
    ///
    /// `fallback_id` is used when the value carries no `id` (hand-written input).
    pub fn from_value(
        value: Value,
        fallback_id: impl FnOnce() -> String,
    ) -> Result<Self, EventError> {
        let Value::Object(mut top) = value else {
            return Err(EventError::NotAnObject);
        };
        let id = match top.remove("id") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => fallback_id(),
        };
        // Datadog shape: the standard fields live under `attributes`, custom ones one level deeper.
        let mut fields = match top.remove("attributes") {
            Some(Value::Object(inner))
                if inner.contains_key("message") || top.get("type").is_some() =>
            {
                inner
            }
            Some(other) => {
                // Flat shape whose `attributes` is the custom attribute object.
                top.insert("attributes".to_string(), other);
                top
            }
            None => top,
        };
        let message = match fields.remove("message") {
            Some(Value::String(s)) if !s.trim().is_empty() => s,
            _ => return Err(EventError::NoMessage),
        };
        let tags = match fields.remove("tags") {
            Some(Value::Array(items)) => tags_of(strings(items)),
            _ => Vec::new(),
        };
        let attributes = fields
            .remove("attributes")
            .map_or(Attributes::None, Attributes::from);
        Ok(LogEvent {
            id,
            timestamp: fields.get("timestamp").and_then(parse_timestamp),
            status: string_field(&fields, "status")
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_default(),
            service: string_field(&fields, "service"),
            host: string_field(&fields, "host"),
            message,
            tags,
            attributes,
        })
    }

    /// The event in Datadog's shape, as `from_value` reads it back (kept for retries).
    pub fn to_value(&self) -> Value {
        let mut attrs = Map::new();
        attrs.insert("message".into(), Value::String(self.message.clone()));
        attrs.insert("status".into(), Value::String(self.status.clone()));
        if let Some(t) = self.timestamp {
            attrs.insert(
                "timestamp".into(),
                Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            );
        }
        if let Some(s) = &self.service {
            attrs.insert("service".into(), Value::String(s.clone()));
        }
        if let Some(h) = &self.host {
            attrs.insert("host".into(), Value::String(h.clone()));
        }
        attrs.insert(
            "tags".into(),
            Value::Array(self.tags.iter().cloned().map(Value::String).collect()),
        );
        if !self.attributes.is_none() {
            attrs.insert("attributes".into(), self.attributes.to_value());
        }
        serde_json::json!({"id": self.id, "type": "log", "attributes": attrs})
    }

    /// Look up a custom attribute by dotted path (`error.fingerprint`), accepting both the nested
    /// form (`{"error":{"fingerprint":..}}`) and a flat key containing dots.
    pub fn attribute(&self, path: &str) -> Option<Cow<'_, Value>> {
        self.attributes.get(path)
    }

    /// Read one JSON Lines record the quick way (see `event/text.rs`): `None` when it must be
    /// read the general way, `Value` first and then [`LogEvent::from_value`], which gives the
    /// same log.
    pub fn from_json_text(text: &str) -> Option<Self> {
        text::from_json_text(text)
    }

    /// A tag's value (`env` for `env:prod`), if the event carries that tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
    }
}

fn string_field(fields: &Map<String, Value>, key: &str) -> Option<String> {
    match fields.get(key) {
        Some(Value::String(s)) => trimmed(s),
        _ => None,
    }
}

/// A standard text field's value: trimmed, and only a non-blank one counts.
fn trimmed(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The tags of a `tags` array's strings: duplicates removed, order kept.
fn tags_of(items: impl Iterator<Item = String>) -> Vec<String> {
    let (least, most) = items.size_hint();
    let mut tags: Vec<String> = Vec::with_capacity(most.unwrap_or(least));
    for tag in items {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// The strings of an array, in order (a tag list's other items are not tags).
fn strings(items: Vec<Value>) -> impl Iterator<Item = String> {
    items.into_iter().filter_map(|t| match t {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// RFC 3339 strings, or epoch milliseconds (number or numeric string).
fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => timestamp_of_text(s),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    }
}

/// A timestamp given as a string: RFC 3339, or epoch milliseconds.
fn timestamp_of_text(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            s.parse::<i64>()
                .ok()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn datadog_shape_is_read() {
        let v = json!({"id": "AQAA", "type": "log", "attributes": {
            "status": "ERROR", "service": "checkout", "host": "web-1",
            "timestamp": "2022-04-11T16:29:47.401Z", "message": "boom",
            "tags": ["env:prod", "env:prod", "team:pay"],
            "attributes": {"error": {"fingerprint": "abc"}}}});
        let e = LogEvent::from_value(v, || unreachable!()).unwrap();
        assert_eq!(e.id, "AQAA");
        assert_eq!(e.status, "error");
        assert_eq!(e.service.as_deref(), Some("checkout"));
        assert_eq!(e.tags, vec!["env:prod", "team:pay"]);
        assert_eq!(e.tag("team"), Some("pay"));
        assert_eq!(
            e.attribute("error.fingerprint").as_deref(),
            Some(&json!("abc"))
        );
        assert_eq!(e.timestamp.unwrap().timestamp_millis(), 1649694587401);
    }

    #[test]
    fn flat_shape_and_missing_fields_are_tolerated() {
        let v = json!({"message": "disk full", "timestamp": 1649694587000i64,
                       "attributes": {"error.fingerprint": "x"}});
        let e = LogEvent::from_value(v, || "input:7".into()).unwrap();
        assert_eq!(e.id, "input:7");
        assert_eq!(e.service, None);
        assert_eq!(e.host, None);
        assert_eq!(e.status, "");
        assert_eq!(
            e.attribute("error.fingerprint").as_deref(),
            Some(&json!("x"))
        );
        assert!(e.timestamp.is_some());
    }

    #[test]
    fn to_value_round_trips() {
        let v = json!({"id": "AQAA", "type": "log", "attributes": {
            "status": "error", "service": "checkout", "host": "web-1",
            "timestamp": "2022-04-11T16:29:47.401Z", "message": "boom", "tags": ["env:prod"],
            "attributes": {"error": {"fingerprint": "abc"}}}});
        let e = LogEvent::from_value(v, || unreachable!()).unwrap();
        assert_eq!(
            LogEvent::from_value(e.to_value(), || unreachable!()).unwrap(),
            e
        );
    }

    /// Plain logs are read the quick way, with the same result; the rest the general way.
    #[test]
    fn the_quick_reading_takes_plain_logs_and_leaves_the_rest() {
        let plain = r#"{"id":"AQAA","type":"log","attributes":{"status":" ERROR ","service":"checkout","host":"web-1","timestamp":"2022-04-11T16:29:47.401Z","message":"boom\nat x","tags":["env:prod","env:prod",3],"attributes":{"error":{"fingerprint":"abc"},"n":1}}}"#;
        let flat = r#"{"id":7,"message":" disk full","host":"  ","timestamp":1649694587000}"#;
        for text in [plain, flat] {
            let quick = LogEvent::from_json_text(text).expect("read the quick way");
            let general =
                LogEvent::from_value(serde_json::from_str(text).unwrap(), || unreachable!());
            assert_eq!(Ok(quick), general, "{text}");
        }
        let quick = LogEvent::from_json_text(plain).unwrap();
        assert!(matches!(quick.attributes, Attributes::Text(_)));
        assert_eq!(quick.status, "error");
        assert_eq!(quick.tags, ["env:prod"]);
        assert_eq!(
            quick.attribute("error.fingerprint").as_deref(),
            Some(&json!("abc"))
        );
        assert_eq!(quick.attribute("error.kind"), None);
        // Attributes with an escape are parsed at once: no key hides behind one.
        let escaped = r#"{"id":"1","type":"log","attributes":{"message":"m","attributes":{"error":{"finger\u0070rint":"e"}}}}"#;
        let e = LogEvent::from_json_text(escaped).unwrap();
        assert!(matches!(e.attributes, Attributes::Json(_)));
        assert_eq!(
            e.attribute("error.fingerprint").as_deref(),
            Some(&json!("e"))
        );
        for general_only in [
            r#"{"message":"no id"}"#,
            r#"{"id":"","message":"empty id"}"#,
            r#"{"id":"1","message":"a","message":"twice"}"#,
            r#"{"id":"1","message":"  "}"#,
            r#"{"id":"1","message":5}"#,
            r#"{"data":[{"id":"1","message":"page"}]}"#,
            r#"[{"id":"1","message":"array"}]"#,
            r#"{"id":"1","message":"flat","attributes":{"error.fingerprint":"x"}}"#,
            r#"{"id":"1","attributes":{"message":null}}"#,
            r#"{"id":0,"attributes":["an array is not the standard fields"]}"#,
            r#"["1","a record as an array"]"#,
            r#"{"id":"1","type":"log","attributes":{"status":"error","status":"warn","message":"m"}}"#,
        ] {
            assert_eq!(
                LogEvent::from_json_text(general_only),
                None,
                "{general_only}"
            );
        }
    }

    #[test]
    fn no_message_is_an_error() {
        let v =
            json!({"id": "1", "type": "log", "attributes": {"status": "error", "message": "  "}});
        assert_eq!(
            LogEvent::from_value(v, || "x".into()),
            Err(EventError::NoMessage)
        );
        assert_eq!(
            LogEvent::from_value(json!([1]), || "x".into()),
            Err(EventError::NotAnObject)
        );
    }
}

#[cfg(test)]
mod properties {
    //! Whatever JSON a source hands over, reading it as a log never panics, and a log it gives
    //! has a non-empty message and an id.
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            prop::sample::select(vec![
                "message",
                "  ",
                "2022-04-11T16:29:47.401Z",
                "-1",
                "99999999999999999999"
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "id",
                        "type",
                        "attributes",
                        "message",
                        "timestamp",
                        "status",
                        "service",
                        "host",
                        "tags",
                        "error",
                        "x"
                    ])
                    .prop_map(str::to_string),
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Records shaped like logs (an id, the standard fields flat or under `attributes`), their
    /// fields mostly strings and sometimes anything.
    fn log_like() -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            3 => any::<String>().prop_map(Value::String),
            1 => prop::sample::select(vec![" ", "", " Error ", "2022-04-11T16:29:47.401Z"])
                .prop_map(|s| Value::String(s.to_string())),
            1 => json(),
        ];
        let keys = prop::sample::select(vec![
            "message",
            "status",
            "service",
            "host",
            "timestamp",
            "tags",
            "attributes",
            "x",
        ]);
        let id = prop_oneof![
            Just(None),
            any::<String>().prop_map(|s| Some(Value::String(s))),
            any::<i64>().prop_map(|n| Some(Value::from(n))),
            json().prop_map(Some),
        ];
        (
            id,
            any::<bool>(),
            any::<bool>(),
            prop::collection::btree_map(keys.prop_map(str::to_string), field, 0..7),
        )
            .prop_map(|(id, datadog, typed, fields)| {
                let fields: Map<String, Value> = fields.into_iter().collect();
                let mut top = if datadog {
                    let mut top = Map::new();
                    top.insert("attributes".into(), Value::Object(fields));
                    if typed {
                        top.insert("type".into(), Value::from("log"));
                    }
                    top
                } else {
                    fields
                };
                if let Some(id) = id {
                    top.insert("id".into(), id);
                }
                Value::Object(top)
            })
    }

    /// The record `value` written as text reads the quick way as nothing, or as it reads the
    /// general way.
    fn quick_is_general(value: Value) -> Result<(), TestCaseError> {
        let text = value.to_string();
        if let Some(quick) = LogEvent::from_json_text(&text) {
            let general = LogEvent::from_value(value, || "no id: not read the quick way".into());
            prop_assert_eq!(Ok(quick), general);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn log_like_records_read_the_quick_way_as_the_general_way(value in log_like()) {
            quick_is_general(value)?;
        }

        #[test]
        fn the_quick_reading_gives_nothing_or_what_the_general_one_gives(value in json()) {
            quick_is_general(value)?;
        }

        #[test]
        fn any_json_value_is_a_log_with_a_message_or_a_reason(value in json()) {
            if let Ok(event) = LogEvent::from_value(value, || "fallback".into()) {
                prop_assert!(!event.message.trim().is_empty());
                prop_assert!(!event.id.is_empty());
                // What a retry stores reads back as the same log.
                prop_assert_eq!(LogEvent::from_value(event.to_value(), || "other".into()), Ok(event));
            }
        }
    }
}
