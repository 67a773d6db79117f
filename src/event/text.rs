//! The quick way from one JSON Lines record to a [`LogEvent`]: its standard fields read where
//! they are, its custom attributes kept as text ([`Attributes::from_text`]), with no tree of
//! the whole record built.
//!
//! In: the record's text. Out: the log, or `None` whenever the record is anything but a plain
//! log with an id (a page, an array, a duplicated key, a field of an odd type, no message...):
//! the caller then reads it the general way ([`LogEvent::from_value`]), which decides every such
//! case. So for any text this gives either nothing or what `from_value` gives.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{parse_timestamp, strings, tags_of, timestamp_of_text, trimmed, Attributes, LogEvent};

/// A field's JSON text, `null` included; `None` when the field is absent.
#[derive(Default)]
struct Field<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&RawValue>::deserialize(d).map(|raw| Field(Some(raw)))
    }
}

/// `T` read from a JSON object only: serde's derived structs also take an array (their fields
/// in order), which is never a log's shape.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
            .map(Object)
    }
}

/// A record at its top: an id, a type, and the standard fields either here (the flat shape)
/// or under `attributes` (Datadog's shape). Unknown keys are skipped; a repeated key, or a
/// standard field of another type than a log has, fails the quick way.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(default, borrow)]
    id: Field<'a>,
    #[serde(default, borrow, rename = "type")]
    kind: Field<'a>,
    #[serde(default, borrow)]
    data: Field<'a>,
    #[serde(default, borrow)]
    attributes: Option<Object<Standard<'a>>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    service: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Field<'a>,
    #[serde(default, borrow)]
    tags: Field<'a>,
}

/// The standard fields under `attributes`, and the custom attributes beneath them.
#[derive(Deserialize)]
struct Standard<'a> {
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    service: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    host: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Field<'a>,
    #[serde(default, borrow)]
    tags: Field<'a>,
    #[serde(default, borrow)]
    attributes: Field<'a>,
}

/// The log one record holds, read the quick way; `None`: read it the general way.
pub(super) fn from_json_text(text: &str) -> Option<LogEvent> {
    let Object(top): Object<Top> = serde_json::from_str(text).ok()?;
    // A page of logs, or a record without an id of its own (its id comes from its content).
    if top.data.0.is_some() {
        return None;
    }
    let id = match top.id.0.map(RawValue::get) {
        Some(raw) if raw.starts_with('"') => {
            Some(serde_json::from_str::<String>(raw).ok()?).filter(|s| !s.is_empty())?
        }
        Some(raw) => match serde_json::from_str::<Value>(raw).ok()? {
            Value::Number(n) => n.to_string(),
            _ => return None,
        },
        None => return None,
    };
    // Datadog's shape: the standard fields under `attributes`, which then has a message (or the
    // record says its type). An `attributes` object without either holds the custom attributes
    // of the flat shape: that rarer record is read the general way.
    let fields = match top.attributes {
        Some(Object(inner)) if inner.message.is_some() || top.kind.0.is_some() => inner,
        Some(_) => return None,
        None => Standard {
            message: top.message,
            status: top.status,
            service: top.service,
            host: top.host,
            timestamp: top.timestamp,
            tags: top.tags,
            attributes: Field(None),
        },
    };
    let message = fields.message?.into_owned();
    if message.trim().is_empty() {
        return None;
    }
    let tags = match fields.tags.0 {
        // Most tag lists are plain strings: read where they are, else as values.
        Some(raw) if raw.get().starts_with('[') => {
            match serde_json::from_str::<Vec<Cow<str>>>(raw.get()) {
                Ok(tags) => tags_of(tags.into_iter().map(Cow::into_owned)),
                Err(_) => tags_of(strings(serde_json::from_str(raw.get()).ok()?)),
            }
        }
        _ => Vec::new(),
    };
    let attributes = match fields.attributes.0 {
        Some(raw) if raw.get().starts_with('{') => Attributes::from_text(raw),
        _ => Attributes::None,
    };
    let timestamp = match fields.timestamp.0.map(RawValue::get) {
        // A string is read where it is (a `Value` of it would be one more allocation).
        Some(raw) if raw.starts_with('"') => {
            timestamp_of_text(&serde_json::from_str::<Cow<str>>(raw).ok()?)
        }
        Some(raw) => parse_timestamp(&serde_json::from_str::<Value>(raw).ok()?),
        None => None,
    };
    Some(LogEvent {
        id,
        timestamp,
        status: text_field(fields.status)
            .map(|mut s| {
                s.make_ascii_lowercase();
                s
            })
            .unwrap_or_default(),
        service: text_field(fields.service),
        host: text_field(fields.host),
        message,
        tags,
        attributes,
    })
}

/// A standard text field as `from_value` reads it.
fn text_field(field: Option<Cow<'_, str>>) -> Option<String> {
    trimmed(&field?)
}
