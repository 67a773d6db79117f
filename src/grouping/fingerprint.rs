//! Fingerprints: which logs are "the same problem".
//!
//! In: one [`LogEvent`]. Out: a [`Fingerprinted`], i.e. the event's message *template* (its first
//! meaningful line with every variable part masked: numbers, hex ids, UUIDs, IPs, emails, URLs,
//! paths, quoted strings, timestamps, dates, durations, sizes and the values of `key=value`
//! pairs) and a [`Fingerprint`], the first 16 hex characters of SHA-256 over
//! `service + "\n" + template`. When the log carries its own `error.fingerprint` attribute, that
//! wins: a short, label-safe value is used verbatim, anything else is hashed.
//!
//! Since templates are learned (`grouping`), this masking-only fingerprint is no longer what
//! labels new tickets: it is kept, unchanged, because tickets filed before carry its label and
//! the ticket stage searches that label too. The masking helpers here are shared with the
//! miner.
//!
//! Stable across runs: the fingerprint is a pure function of the log. Nothing is learned, nothing
//! depends on the order logs arrive in, on the worker count, on the process or on the clock, so
//! the Jira label `triage-<fp>` written on a ticket today is found again by tomorrow's run. Any
//! change to the masking rules or the hash input re-keys every existing ticket; the test
//! `known_input_has_a_fixed_fingerprint` exists to make such a change deliberate.
//!
//! Masking is one left-to-right pass of a single compiled regex (an ordered alternation, built
//! once), so the more specific kinds (timestamps, UUIDs, URLs, emails, IPs, paths) win over plain
//! numbers, and a placeholder is never masked again.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::LogEvent;

/// Longest template that is hashed, in characters.
const MAX_TEMPLATE_CHARS: usize = 1_000;
/// Longest line that is masked, in bytes; a bound on the work done for one pathological log.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest `error.fingerprint` value used verbatim, in characters.
const MAX_VERBATIM_CHARS: usize = 200;
/// Jira's limit on the length of a label.
const MAX_LABEL_CHARS: usize = 255;
/// Prefix of every label this tool writes.
const LABEL_PREFIX: &str = "triage-";

/// A fingerprint: short lowercase hex (16 hex chars of SHA-256), or a sanitized error.fingerprint value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(Arc<str>);

impl Fingerprint {
    /// The fingerprint as text, exactly as it appears in the label after `triage-`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Jira label: `"triage-<fp>"` (no spaces, <= 255 chars guaranteed)
    ///
    /// Fingerprints made by [`fingerprint`] are always label-safe and used as they are. A value
    /// built with [`Fingerprint::from_raw`] that is not (whitespace, other unsafe characters, or
    /// too long) is replaced by its 16-hex hash, so the guarantee holds for every value.
    pub fn label(&self) -> String {
        if is_label_safe(&self.0) {
            format!("{LABEL_PREFIX}{}", self.0)
        } else {
            format!("{LABEL_PREFIX}{}", hash16(&["label", &self.0]))
        }
    }

    /// Build from a raw string (used by tests and later by a state store); no validation beyond what you need.
    pub fn from_raw(s: impl Into<String>) -> Self {
        Fingerprint(Arc::from(s.into()))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fingerprint and template of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprinted {
    /// What groups this log with others: the ticket label is `fingerprint.label()`.
    pub fingerprint: Fingerprint,
    /// The normalized message template (see [`template`]); always computed from the message.
    pub template: Arc<str>,
    /// Other labels the problem's ticket may carry and be found by: fingerprints of templates
    /// merged into this one (see `grouping`).
    pub also: Vec<Fingerprint>,
    /// The first log of its template in this run (or the first since a merge): the time to
    /// tell the ticket stage which other labels to search.
    pub new_in_run: bool,
    /// A template born from this very log next to a sibling in its family: it may still turn
    /// out to be the same problem as the sibling (see docs/grouping.md, "Young templates"), so
    /// its ticket waits for the end of the run's input.
    pub young: bool,
}

/// Fingerprint and template of one event.
///
/// The fingerprint is the event's `error.fingerprint` attribute when it has one (verbatim if it is
/// a non-empty string or number of at most 200 characters from `[A-Za-z0-9._:-]`, otherwise the
/// hash of it), else the hash of the service and the message template.
pub fn fingerprint(event: &LogEvent) -> Fingerprinted {
    let template = template(&event.message);
    let fingerprint = match explicit_fingerprint(event) {
        Some(fp) => fp,
        None => {
            let service = event.service.as_deref().unwrap_or("");
            Fingerprint(hash16(&[service, &template]).into())
        }
    };
    Fingerprinted {
        fingerprint,
        template: template.into(),
        also: Vec::new(),
        new_in_run: false,
        young: false,
    }
}

/// The normalized message template: variable parts replaced by placeholders like `<num>`, `<hex>`, `<uuid>`, `<ip>`, `<email>`, `<url>`, `<path>`, `<str>`, `<ts>`, `<date>`, `<duration>`, `<size>`, and `key=<val>`.
///
/// Only the first non-empty line of the message counts (for a Python traceback, whose first line
/// is always the same, the last non-empty line, which names the exception). Whitespace runs are
/// collapsed to one space, the line is trimmed, masked, and cut to 1,000 characters. MAC addresses
/// become `<mac>`; a time of day alone (`12:00:01,123`) becomes `<ts>`.
pub fn template(message: &str) -> String {
    let line = significant_line(message);
    let line = truncate_bytes(&line, MAX_LINE_BYTES);
    let collapsed = collapse_whitespace(line);
    // Secrets the masks below would keep (tokens, keys) are taken out first, so a secret never
    // splits a problem in two and a log read back redacted has the same template.
    let collapsed = crate::redact::Redactor::default().text(&collapsed);
    let mut out = String::with_capacity(collapsed.len());
    mask_into(&collapsed, &mut out);
    truncate_chars(&mut out, MAX_TEMPLATE_CHARS);
    out
}

/// The `error.fingerprint` attribute as a fingerprint, if the event has a usable one.
pub(crate) fn explicit_fingerprint(event: &LogEvent) -> Option<Fingerprint> {
    let (raw, scalar) = match event.attribute("error.fingerprint")?.as_ref() {
        Value::Null => return None,
        Value::String(s) => (s.clone(), true),
        Value::Number(n) => (n.to_string(), true),
        // Booleans, arrays and objects: their compact JSON text stands for the value.
        other => (other.to_string(), false),
    };
    if raw.trim().is_empty() {
        // An empty value says nothing; hashing it would merge every such log into one ticket.
        return None;
    }
    if scalar && is_label_safe(&raw) {
        Some(Fingerprint(raw.into()))
    } else {
        Some(Fingerprint(hash16(&["error.fingerprint", &raw]).into()))
    }
}

/// Non-empty, at most 200 characters, only `[A-Za-z0-9._:-]`.
fn is_label_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_VERBATIM_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

// The label is at most prefix + 200 characters.
const _: () = assert!(LABEL_PREFIX.len() + MAX_VERBATIM_CHARS <= MAX_LABEL_CHARS);

/// First 16 lowercase hex characters of SHA-256 over `parts` joined by `"\n"`.
pub(crate) fn hash16(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for byte in &digest[..8] {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// The line of a message that names the problem.
pub(crate) fn significant_line(message: &str) -> Cow<'_, str> {
    let whole = message.trim();
    if whole.starts_with('{') && whole.contains('\n') {
        // Pretty-printed JSON: its first line is a lone `{`.
        if let Some(text) = json_message(whole) {
            return Cow::Owned(text);
        }
    }
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    if first.starts_with("Traceback (most recent call last)") {
        // Python: the first line is the same for every exception; the last one names it.
        if let Some(last) = lines.next_back() {
            return Cow::Borrowed(last);
        }
    }
    if first.starts_with('{') {
        // A structured log shipped as raw JSON: every value is a quoted string, so masking the
        // line would leave only its keys. Its own message field is what names the problem.
        if let Some(text) = json_message(first) {
            return Cow::Owned(text);
        }
    }
    Cow::Borrowed(first)
}

/// The first line of the message field of a JSON object, if it has a non-empty one.
fn json_message(text: &str) -> Option<String> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    ["message", "msg", "error", "err", "exception"]
        .iter()
        .find_map(|key| match map.get(*key) {
            Some(Value::String(s)) => {
                let first = s.lines().map(str::trim).find(|l| !l.is_empty())?;
                Some(first.to_string())
            }
            Some(Value::Object(inner)) => match inner.get("message") {
                Some(Value::String(s)) => {
                    let first = s.lines().map(str::trim).find(|l| !l.is_empty())?;
                    Some(first.to_string())
                }
                _ => None,
            },
            _ => None,
        })
}

/// Runs of whitespace become one space; `line` comes trimmed. Borrows when nothing changes.
fn collapse_whitespace(line: &str) -> Cow<'_, str> {
    let mut after_space = true;
    let clean = !line.chars().any(|c| {
        let extra = c.is_whitespace() && (c != ' ' || after_space);
        after_space = c == ' ';
        extra
    }) && !line.ends_with(char::is_whitespace);
    if clean {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    for word in line.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((idx, _)) = s.char_indices().nth(max) {
        s.truncate(idx);
    }
}

/// What one alternative of the masking regex recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    KeyValue,
    Url,
    Email,
    Uuid,
    Timestamp,
    Date,
    Mac,
    Ipv6,
    Ipv4,
    Path,
    DoubleQuoted,
    SingleQuoted,
    Backticked,
    Duration,
    Size,
    Hex,
    Number,
    HexRun,
}

impl Kind {
    fn placeholder(self) -> &'static str {
        match self {
            Kind::KeyValue => "<val>",
            Kind::Url => "<url>",
            Kind::Email => "<email>",
            Kind::Uuid => "<uuid>",
            Kind::Timestamp => "<ts>",
            Kind::Date => "<date>",
            Kind::Mac => "<mac>",
            Kind::Ipv6 | Kind::Ipv4 => "<ip>",
            Kind::Path => "<path>",
            Kind::DoubleQuoted | Kind::SingleQuoted | Kind::Backticked => "<str>",
            Kind::Duration => "<duration>",
            Kind::Size => "<size>",
            Kind::Hex | Kind::HexRun => "<hex>",
            Kind::Number => "<num>",
        }
    }
}

// Building blocks. `(?-u:\b)` is an ASCII word boundary: cheap for the lazy DFA, and it treats
// `http2`, `S3` or `e2e` as one word, so their digits are never masked.
const B: &str = r"(?-u:\b)";
const MONTH: &str = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const H4: &str = r"[0-9A-Fa-f]{1,4}";

/// One alternative of the masking regex.
struct Alt {
    kind: Kind,
    /// A cheap necessary condition on a span this alternative matches; `false` means it cannot.
    could_match: fn(&[u8]) -> bool,
    pattern: String,
}

fn alt(kind: Kind, could_match: fn(&[u8]) -> bool, pattern: impl Into<String>) -> Alt {
    Alt {
        kind,
        could_match,
        pattern: pattern.into(),
    }
}

fn has(t: &[u8], b: u8) -> bool {
    t.contains(&b)
}

/// The byte at `i`, or 0 past the end.
fn at(t: &[u8], i: usize) -> u8 {
    t.get(i).copied().unwrap_or(0)
}

fn starts_digit(t: &[u8]) -> bool {
    t.first().is_some_and(u8::is_ascii_digit)
}

fn ends_alpha(t: &[u8]) -> bool {
    t.last().is_some_and(u8::is_ascii_alphabetic)
}

/// The alternatives, most specific first. At one position the first that matches wins; the
/// leftmost match in the line always wins. No pattern has a capture group of its own.
fn alternatives() -> Vec<Alt> {
    [
        identity_alternatives(),
        time_alternatives(),
        address_alternatives(),
        value_alternatives(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `key=value`, URLs, emails, UUIDs.
fn identity_alternatives() -> Vec<Alt> {
    vec![
        alt(
            Kind::KeyValue,
            |t| (at(t, 0).is_ascii_alphabetic() || at(t, 0) == b'_') && has(t, b'='),
            format!(
                r#"{B}[A-Za-z_][A-Za-z0-9_.\-]*=(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|<[a-z]+>|[^\s,;&)\]}}>"'=][^\s,;&)\]}}>]*)"#
            ),
        ),
        alt(
            Kind::Url,
            |t| at(t, 0).is_ascii_alphabetic() && has(t, b'/'),
            r#"[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>`]+"#,
        ),
        alt(
            Kind::Email,
            |t| has(t, b'@'),
            format!(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{{2,}}{B}"),
        ),
        alt(
            Kind::Uuid,
            |t| t.len() == 36,
            format!(
                r"{B}[0-9A-Fa-f]{{8}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{12}}{B}"
            ),
        ),
    ]
}

/// Timestamps, dates, times of day, and MAC addresses, which look like times and must win
/// over them.
fn time_alternatives() -> Vec<Alt> {
    vec![
        // ISO 8601 / RFC 3339, with `T` or a space, fractions, `Z`, offsets or a zone name.
        alt(
            Kind::Timestamp,
            |t| t.len() >= 16 && at(t, 4) == b'-',
            format!(
                r"{B}[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:[.,][0-9]+)?)?(?:Z|\s?[+-][0-9]{{2}}(?::?[0-9]{{2}})?|\s(?:UTC|GMT))?{B}"
            ),
        ),
        // Common Log Format: 01/Mar/2024:12:00:01 +0000
        alt(
            Kind::Timestamp,
            |t| t.len() >= 20 && at(t, 2) == b'/',
            format!(
                r"{B}[0-9]{{2}}/{MONTH}/[0-9]{{4}}:[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?: [+-][0-9]{{4}})?{B}"
            ),
        ),
        // RFC 2822: Fri, 01 Mar 2024 12:00:01 GMT
        alt(
            Kind::Timestamp,
            |t| has(t, b':') && has(t, b' '),
            format!(
                r"{B}(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?[0-9]{{1,2}} {MONTH} [0-9]{{4}} [0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}})?(?: (?:GMT|UTC|[+-][0-9]{{4}}))?{B}"
            ),
        ),
        // syslog: Mar  1 12:00:01
        alt(
            Kind::Timestamp,
            |t| has(t, b':') && at(t, 0).is_ascii_uppercase(),
            format!(r"{B}{MONTH} +[0-9]{{1,2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:[.,][0-9]+)?{B}"),
        ),
        alt(
            Kind::Date,
            |t| t.len() >= 6 && starts_digit(t) && (1..5).any(|i| b"-/. ".contains(&at(t, i))),
            format!(
                r"{B}(?:[0-9]{{4}}[-/.][0-9]{{2}}[-/.][0-9]{{2}}|[0-9]{{1,2}}/[0-9]{{1,2}}/[0-9]{{2,4}}|[0-9]{{1,2}}\.[0-9]{{1,2}}\.[0-9]{{4}}|[0-9]{{1,2}}[- ]{MONTH}[- ][0-9]{{4}}){B}"
            ),
        ),
        alt(
            Kind::Mac,
            |t| t.len() == 17,
            format!(r"{B}[0-9A-Fa-f]{{2}}(?:[:-][0-9A-Fa-f]{{2}}){{5}}{B}"),
        ),
        // A time of day alone: 12:00:01, 12:00:01,123
        alt(
            Kind::Timestamp,
            |t| starts_digit(t) && (at(t, 1) == b':' || at(t, 2) == b':'),
            format!(r"{B}[0-9]{{1,2}}:[0-9]{{2}}:[0-9]{{2}}(?:[.,][0-9]+)?{B}"),
        ),
    ]
}

/// IP addresses and paths.
fn address_alternatives() -> Vec<Alt> {
    let ipv6_groups = format!(r"{H4}(?::{H4}){{0,6}}");
    let ipv6 = format!(
        r"(?:{B}{H4}(?::{H4}){{7}}|(?:{B}{g})?::(?:{g})?)(?:\.[0-9]{{1,3}}){{0,3}}(?:%[A-Za-z0-9_.]+)?",
        g = ipv6_groups
    );
    vec![
        alt(
            Kind::Ipv6,
            |t| at(t, 0) == b'[',
            format!(r"\[{ipv6}\](?::[0-9]{{1,5}})?"),
        ),
        alt(
            Kind::Ipv6,
            |t| t.windows(2).any(|w| w == b"::") || t.iter().filter(|&&b| b == b':').count() == 7,
            ipv6,
        ),
        alt(
            Kind::Ipv4,
            |t| starts_digit(t) && t.iter().filter(|&&b| b == b'.').count() >= 3,
            format!(
                r"{B}[0-9]{{1,3}}(?:\.[0-9]{{1,3}}){{3}}(?:/[0-9]{{1,2}})?(?::[0-9]{{1,5}})?{B}"
            ),
        ),
        // Windows: C:\x\y, C:/x/y, \\server\share\x
        alt(
            Kind::Path,
            |t| t.len() >= 3 && (at(t, 1) == b':' || at(t, 0) == b'\\'),
            format!(r#"(?:{B}[A-Za-z]:[\\/]|\\\\[A-Za-z0-9_.$\-]+\\)[^\s"'<>|?*:]*"#),
        ),
        // Unix: /var/lib/x.db, ./rel/path, ../x, ~/x
        alt(
            Kind::Path,
            |t| has(t, b'/'),
            r"(?:\.\.?|~)?/[A-Za-z0-9_.\-@+%~]+(?:/[A-Za-z0-9_.\-@+%~]*)*",
        ),
    ]
}

/// Quoted text, durations, sizes and numbers.
fn value_alternatives() -> Vec<Alt> {
    let num = r"[0-9]+(?:\.[0-9]+)?";
    let short_time_unit = r"(?:ns|us|µs|μs|ms|s|m|h|d)";
    let long_time_unit = r"(?:nanoseconds?|nanos|microseconds?|micros|milliseconds?|millis|msecs?|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|weeks?)";
    vec![
        alt(
            Kind::DoubleQuoted,
            |t| at(t, 0) == b'"',
            r#""(?:[^"\\]|\\.)*""#,
        ),
        alt(
            Kind::SingleQuoted,
            |t| at(t, 0) == b'\'',
            r"'(?:[^'\\]|\\.)*'",
        ),
        alt(Kind::Backticked, |t| at(t, 0) == b'`', r"`[^`]*`"),
        // 250ms, 3.2s, 1h30m, 1.5µs, 10 sec, 30 seconds
        alt(
            Kind::Duration,
            |t| starts_digit(t) && ends_alpha(t),
            format!(
                r"{B}{num}(?:{short_time_unit}(?:{num}{short_time_unit})*|\s?{long_time_unit}){B}"
            ),
        ),
        // 512MB, 1.5 GiB, 2048 bytes, 10KB, 64kb
        alt(
            Kind::Size,
            |t| starts_digit(t) && ends_alpha(t),
            format!(r"{B}{num}\s?(?:(?i:[kmgtpe]i?b)|(?i:bytes?)|B){B}"),
        ),
        alt(
            Kind::Hex,
            |t| t.len() > 2 && at(t, 0) == b'0' && matches!(at(t, 1), b'x' | b'X'),
            format!(r"{B}0[xX][0-9A-Fa-f]+{B}"),
        ),
        alt(
            Kind::Number,
            |t| starts_digit(t) || at(t, 0) == b'-',
            format!(r"-?{B}[0-9]+(?:\.[0-9]+)*(?:[eE][+-]?[0-9]+)?{B}"),
        ),
        // Commit shas, request ids: runs of 8+ hex characters (checked for a digit below).
        alt(
            Kind::HexRun,
            |t| t.len() >= 8,
            format!(r"{B}[0-9A-Fa-f]{{8,}}{B}"),
        ),
    ]
}

struct Masker {
    /// All alternatives in order: finds where the next variable part is and how long it is.
    regex: Regex,
    /// Each alternative again, anchored at both ends: says which one matched a found span.
    alts: Vec<AnchoredAlt>,
}

struct AnchoredAlt {
    kind: Kind,
    could_match: fn(&[u8]) -> bool,
    /// `^(?:pattern)$`
    regex: Regex,
}

static MASKER: LazyLock<Masker> = LazyLock::new(|| {
    let alts = alternatives();
    let joined = alts
        .iter()
        .map(|a| format!("(?:{})", a.pattern))
        .collect::<Vec<_>>()
        .join("|");
    Masker {
        regex: Regex::new(&joined).expect("fingerprint masking regex is valid"),
        alts: alts
            .into_iter()
            .map(|a| AnchoredAlt {
                kind: a.kind,
                could_match: a.could_match,
                regex: Regex::new(&format!("^(?:{})$", a.pattern))
                    .expect("fingerprint masking regex is valid"),
            })
            .collect(),
    }
});

impl Masker {
    /// Which alternative the combined regex matched for `span`: the first one that matches all
    /// of it. Capture groups would say so too, but resolving them costs ten times the search.
    ///
    /// The span loses only the characters just before and after it, and every alternative that
    /// asserts a word boundary at an edge has a word character there, so the answer is the same.
    fn kind_of(&self, span: &str) -> Option<Kind> {
        let bytes = span.as_bytes();
        if bytes.is_empty() {
            return None;
        }
        self.alts
            .iter()
            .find(|a| (a.could_match)(bytes) && a.regex.is_match(span))
            .map(|a| a.kind)
    }
}

/// What to do with one match.
enum Action {
    /// Replace `line[start..end]` by the placeholder; text before `start` is kept.
    Mask { start: usize, end: usize },
    /// Keep `line[..=eq]` (the key and `=`) and mask the rest of the match.
    MaskValue { eq: usize, end: usize },
    /// Not what it looked like: keep the text and search again from `resume`.
    Keep { resume: usize },
}

/// Mask `line` into `out`, left to right, in one pass of the combined regex.
fn mask_into(line: &str, out: &mut String) {
    let masker = &*MASKER;
    let mut copied = 0;
    let mut at = 0;
    while at < line.len() {
        let Some(m) = masker.regex.find_at(line, at) else {
            break;
        };
        let (start, end) = (m.start(), m.end());
        let Some(kind) = masker.kind_of(m.as_str()) else {
            at = next_char(line, start);
            continue;
        };
        match classify(kind, line, start, end) {
            Action::Mask { start, end } => {
                out.push_str(&line[copied..start]);
                out.push_str(kind.placeholder());
                copied = end;
                at = end;
            }
            Action::MaskValue { eq, end } => {
                out.push_str(&line[copied..=eq]);
                out.push_str(kind.placeholder());
                copied = end;
                at = end;
            }
            Action::Keep { resume } => at = resume,
        }
    }
    out.push_str(&line[copied..]);
}

/// The checks the regex cannot express (it has no look-around), per kind.
fn classify(kind: Kind, line: &str, start: usize, end: usize) -> Action {
    let text = &line[start..end];
    let before = line[..start].chars().next_back();
    let after = line[end..].chars().next();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mask = Action::Mask { start, end };
    let skip_char = Action::Keep {
        resume: next_char(line, start),
    };
    match kind {
        Kind::KeyValue => match text.find('=') {
            Some(eq) => Action::MaskValue {
                eq: start + eq,
                end,
            },
            None => skip_char,
        },
        Kind::Url => {
            let trimmed = text.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
            if trimmed.contains("://") && !trimmed.ends_with("://") {
                Action::Mask {
                    start,
                    end: start + trimmed.len(),
                }
            } else {
                skip_char
            }
        }
        Kind::Ipv6 => {
            let bracketed = text.starts_with('[');
            let has_digit = text.bytes().any(|b| b.is_ascii_digit());
            let has_lower = text.bytes().any(|b| matches!(b, b'a'..=b'f'));
            let has_upper = text.bytes().any(|b| matches!(b, b'A'..=b'F'));
            if !has_digit || (has_lower && has_upper) {
                // `a::b`, `Abc::Def`: a path in some language, not an address.
                Action::Keep { resume: end }
            } else if !bracketed && (is_word(before) || before == Some(':') || is_word(after)) {
                skip_char
            } else {
                mask
            }
        }
        Kind::Path => {
            let glued =
                text.starts_with('/') && (is_word(before) || matches!(before, Some('/' | '.')));
            if glued {
                // `I/O`, `read/write`, `HTTP/1.1`: a slash inside a word is not a path.
                return skip_char;
            }
            let trimmed = text.trim_end_matches(['.', ',']);
            if trimmed.len() < 2 {
                return skip_char;
            }
            Action::Mask {
                start,
                end: start + trimmed.len(),
            }
        }
        Kind::SingleQuoted => {
            if is_word(before) || is_word(after) {
                // An apostrophe (`can't`, `users'`), not a quote.
                skip_char
            } else {
                mask
            }
        }
        Kind::Number => {
            let digits_start = if text.starts_with('-') {
                start + 1
            } else {
                start
            };
            let before_digits = line[..digits_start].chars().next_back();
            if before_digits == Some('.')
                && line[..digits_start - 1]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_digit())
            {
                // The tail of a version glued to a word: `python3.11`, `v1.2.3`.
                return Action::Keep { resume: end };
            }
            if text.starts_with('-') && (is_word(before) || before == Some('-')) {
                // `utf-8`, `1-5`: a separator, not a sign.
                Action::Mask {
                    start: start + 1,
                    end,
                }
            } else {
                mask
            }
        }
        Kind::HexRun => {
            if !text.bytes().any(|b| b.is_ascii_digit()) {
                // A word that happens to be spelled with a-f only.
                Action::Keep { resume: end }
            } else {
                mask
            }
        }
        Kind::Email
        | Kind::Uuid
        | Kind::Timestamp
        | Kind::Date
        | Kind::Mac
        | Kind::Ipv4
        | Kind::DoubleQuoted
        | Kind::Backticked
        | Kind::Duration
        | Kind::Size
        | Kind::Hex => mask,
    }
}

fn next_char(line: &str, at: usize) -> usize {
    at + line[at..].chars().next().map_or(1, char::len_utf8)
}

#[cfg(test)]
mod tests;
