//! A log's custom attributes, kept as the JSON text they came in until something asks for them.
//!
//! In: the attributes object of a log, parsed ([`Value`]) or as its JSON text. Out: lookups by
//! dotted path, and the whole object as a [`Value`] when it is needed (a retry, a test). Most
//! logs are only grouped and counted: nothing reads their attributes but the `error.fingerprint`
//! lookup, and building a tree of them was the larger part of reading a log. Redaction
//! (`redact`) leaves the text as it is when no pattern can match anywhere in it, zeroes the
//! digits of its card numbers in place when those are all it holds (see
//! [`Text::value_strings`]), and otherwise parses it and redacts every string, as before.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::value::RawValue;
use serde_json::Value;

/// The custom attributes object (`attributes.attributes` in Datadog's shape).
#[derive(Debug, Clone, Default)]
pub enum Attributes {
    /// None, or not an object.
    #[default]
    None,
    /// Parsed: an object.
    Json(Value),
    /// An object's JSON text, not parsed yet.
    Text(Text),
}

/// An object's JSON text that holds no escape (no `\`): a key or word found in the text is
/// the same parsed, which redaction relies on. Only [`Attributes::from_text`] makes one.
#[derive(Debug, Clone)]
pub struct Text(Box<RawValue>);

impl Text {
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Where the strings that are values (not keys) lie, quotes left out, in order. With no
    /// escape in the text every quote opens or closes a string, and a string followed by `:`
    /// is a key.
    pub fn value_strings(&self) -> Vec<Range<usize>> {
        let b = self.as_str().as_bytes();
        let mut spans = Vec::new();
        let mut open: Option<usize> = None;
        for i in memchr::memchr_iter(b'"', b) {
            match open.take() {
                None => open = Some(i + 1),
                Some(start) => {
                    let next = b[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
                    if next != Some(&b':') {
                        spans.push(start..i);
                    }
                }
            }
        }
        spans
    }

    /// The text with every ASCII digit inside `ranges` made a `0`: the same length, still an
    /// object without escapes. False (and the text unchanged) if it would not read back.
    pub fn zero_digits(&mut self, ranges: &[Range<usize>]) -> bool {
        let mut bytes = self.as_str().as_bytes().to_vec();
        for range in ranges {
            if let Some(part) = bytes.get_mut(range.clone()) {
                part.iter_mut()
                    .filter(|c| c.is_ascii_digit())
                    .for_each(|c| *c = b'0');
            }
        }
        let Ok(text) = String::from_utf8(bytes) else {
            return false;
        };
        match RawValue::from_string(text) {
            Ok(raw) => {
                self.0 = raw;
                true
            }
            Err(_) => false,
        }
    }
}

impl From<Value> for Attributes {
    fn from(value: Value) -> Self {
        if value.is_object() {
            Attributes::Json(value)
        } else {
            Attributes::None
        }
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl Attributes {
    /// An object's JSON text: kept as text when it holds no escape, else parsed.
    pub fn from_text(raw: &RawValue) -> Self {
        if memchr::memchr(b'\\', raw.get().as_bytes()).is_some() {
            Attributes::from(parse(raw))
        } else {
            Attributes::Text(Text(raw.to_owned()))
        }
    }

    /// Whether there are none.
    pub fn is_none(&self) -> bool {
        matches!(self, Attributes::None)
    }

    /// The object (`Null` when there is none). Parses a text each time it is asked.
    pub fn to_value(&self) -> Value {
        self.parsed().into_owned()
    }

    fn parsed(&self) -> Cow<'_, Value> {
        match self {
            Attributes::None => Cow::Owned(Value::Null),
            Attributes::Json(v) => Cow::Borrowed(v),
            Attributes::Text(text) => Cow::Owned(parse(&text.0)),
        }
    }

    /// Look an attribute up by dotted path (`error.fingerprint`), in the nested form
    /// (`{"error":{"fingerprint":..}}`) or as a flat key holding the dots.
    pub fn get(&self, path: &str) -> Option<Cow<'_, Value>> {
        if let Attributes::Text(Text(raw)) = self {
            // Every path's last part is a key in the text (which has no escapes): most lookups
            // end here, unparsed.
            let last = path.rsplit('.').next().unwrap_or(path);
            memchr::memmem::find(raw.get().as_bytes(), last.as_bytes())?;
        }
        match self.parsed() {
            Cow::Borrowed(v) => lookup(v, path).map(Cow::Borrowed),
            Cow::Owned(v) => lookup(&v, path).cloned().map(Cow::Owned),
        }
    }

    /// Parsed, for a change in place (redaction); a text is parsed once, here.
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        if let Attributes::Text(Text(raw)) = self {
            *self = Attributes::from(parse(raw));
        }
        match self {
            Attributes::Json(v) => Some(v),
            _ => None,
        }
    }
}

/// A text the JSON parser already read whole: it parses again (an object; `Null` otherwise).
fn parse(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let map = value.as_object()?;
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let mut current = value;
    for part in path.split('.') {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}
