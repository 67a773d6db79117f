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

    /// The Jira label: "triage-<fp>" (no spaces, <= 255 chars guaranteed)
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
    pub template: String,
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
        template,
        also: Vec::new(),
        new_in_run: false,
        young: false,
    }
}

/// The normalized message template: variable parts replaced by placeholders like <num>, <hex>, <uuid>, <ip>, <email>, <url>, <path>, <str>, <ts>, <date>, <duration>, <size>, and `key=<val>`.
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
    let (raw, scalar) = match event.attribute("error.fingerprint")? {
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
    let ipv6_groups = format!(r"{H4}(?::{H4}){{0,6}}");
    let ipv6 = format!(
        r"(?:{B}{H4}(?::{H4}){{7}}|(?:{B}{g})?::(?:{g})?)(?:\.[0-9]{{1,3}}){{0,3}}(?:%[A-Za-z0-9_.]+)?",
        g = ipv6_groups
    );
    let num = r"[0-9]+(?:\.[0-9]+)?";
    let short_time_unit = r"(?:ns|us|µs|μs|ms|s|m|h|d)";
    let long_time_unit = r"(?:nanoseconds?|nanos|microseconds?|micros|milliseconds?|millis|msecs?|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|weeks?)";
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
mod tests {
    use super::*;
    use serde_json::json;

    fn event(service: Option<&str>, message: &str) -> LogEvent {
        LogEvent {
            id: "test:1".into(),
            timestamp: None,
            status: "error".into(),
            service: service.map(str::to_string),
            host: None,
            message: message.into(),
            tags: Vec::new(),
            attributes: Value::Null,
        }
    }

    fn event_with(attributes: Value, message: &str) -> LogEvent {
        LogEvent {
            attributes,
            ..event(Some("api"), message)
        }
    }

    fn fp(service: &str, message: &str) -> Fingerprint {
        fingerprint(&event(Some(service), message)).fingerprint
    }

    /// Every message in a group has `expected` as template and one fingerprint.
    fn assert_same(expected: &str, messages: &[&str]) {
        for m in messages {
            assert_eq!(template(m), expected, "template of {m:?}");
        }
        let first = fp("svc", messages[0]);
        for m in &messages[1..] {
            assert_eq!(fp("svc", m), first, "{m:?} vs {:?}", messages[0]);
        }
    }

    fn assert_different(a: &str, b: &str) {
        assert_ne!(template(a), template(b));
        assert_ne!(fp("svc", a), fp("svc", b), "{a:?} and {b:?} must not merge");
    }

    #[test]
    fn ip_port_and_duration() {
        assert_eq!(
            template("Connection to 10.0.3.17:5432 timed out after 3000ms"),
            "Connection to <ip> timed out after <duration>"
        );
    }

    #[test]
    fn iso_timestamps() {
        assert_same(
            "job started at <ts> failed",
            &[
                "job started at 2024-03-01T12:00:00.123Z failed",
                "job started at 2024-03-01 12:00:00 failed",
                "job started at 2025-11-30T23:59:59+02:00 failed",
                "job started at 2024-03-01T12:00:00,123456-0700 failed",
                "job started at 2024-03-01 12:00:00 UTC failed",
            ],
        );
    }

    #[test]
    fn other_timestamp_formats() {
        assert_same(
            "<ts> web-<num> sshd: session closed",
            &[
                "Mar  1 12:00:01 web-1 sshd: session closed",
                "Dec 31 23:59:59 web-1 sshd: session closed",
            ],
        );
        assert_eq!(
            template("[01/Mar/2024:12:00:01 +0000] GET failed"),
            "[<ts>] GET failed"
        );
        assert_eq!(
            template("expires Fri, 01 Mar 2024 12:00:01 GMT"),
            "expires <ts>"
        );
    }

    #[test]
    fn dates_and_times() {
        assert_same(
            "report for <date> missing",
            &[
                "report for 2024-03-01 missing",
                "report for 01/03/2024 missing",
                "report for 2023/12/31 missing",
                "report for 1.3.2024 missing",
            ],
        );
        assert_same(
            "lock held since <ts> by worker",
            &[
                "lock held since 12:00:01,123 by worker",
                "lock held since 7:05:09 by worker",
            ],
        );
    }

    #[test]
    fn uuids() {
        assert_same(
            "order <uuid> not found",
            &[
                "order 550e8400-e29b-41d4-a716-446655440000 not found",
                "order 6F9619FF-8B86-D011-B42D-00C04FC964FF not found",
            ],
        );
    }

    #[test]
    fn emails() {
        assert_same(
            "cannot deliver to <email>: mailbox full",
            &[
                "cannot deliver to alice@example.com: mailbox full",
                "cannot deliver to bob.smith+tag@mail.corp.example.org: mailbox full",
            ],
        );
    }

    #[test]
    fn urls() {
        assert_same(
            "GET <url> returned <num>",
            &[
                "GET https://api.example.com/v1/users/42?expand=true returned 503",
                "GET http://localhost:8080/health returned 500",
            ],
        );
        assert_eq!(
            template("cannot reach postgres://app:secret@db-1:5432/orders."),
            "cannot reach <url>."
        );
    }

    #[test]
    fn ipv4() {
        assert_same(
            "peer <ip> closed the connection",
            &[
                "peer 192.168.1.20 closed the connection",
                "peer 10.0.0.1:443 closed the connection",
                "peer 172.16.0.0/12 closed the connection",
            ],
        );
    }

    #[test]
    fn ipv6() {
        assert_same(
            "bind <ip> failed",
            &[
                "bind 2001:0db8:85a3:0000:0000:8a2e:0370:7334 failed",
                "bind 2001:db8::1 failed",
                "bind ::1 failed",
                "bind fe80::1%eth0 failed",
                "bind [::1]:8080 failed",
                "bind ::ffff:192.168.1.1 failed",
            ],
        );
    }

    #[test]
    fn code_paths_are_not_ipv6() {
        assert_eq!(
            template("std::io::Error in a::b::c"),
            "std::io::Error in a::b::c"
        );
        assert_eq!(
            template("panicked at Foo::bar with Abc::Def"),
            "panicked at Foo::bar with Abc::Def"
        );
        assert_eq!(template("x :: y"), "x :: y");
    }

    #[test]
    fn mac_addresses() {
        assert_same(
            "unknown device <mac>",
            &[
                "unknown device 00:1a:2b:3c:4d:5e",
                "unknown device AA-BB-CC-00-11-22",
            ],
        );
    }

    #[test]
    fn paths() {
        assert_same(
            "cannot open <path>: permission denied",
            &[
                "cannot open /var/lib/app/data.db: permission denied",
                "cannot open /tmp: permission denied",
                "cannot open C:\\Users\\bob\\app.ini: permission denied",
                "cannot open ./config/local.toml: permission denied",
                "cannot open ../x/y: permission denied",
                "cannot open ~/.ssh/id_rsa: permission denied",
            ],
        );
        assert_eq!(template("missing /etc/app.conf."), "missing <path>.");
    }

    #[test]
    fn slashes_inside_words_are_not_paths() {
        assert_eq!(
            template("I/O error on read/write"),
            "I/O error on read/write"
        );
        assert_eq!(
            template("and/or HTTP/2 upgrade"),
            "and/or HTTP/<num> upgrade"
        );
    }

    #[test]
    fn quoted_strings() {
        assert_same(
            "column <str> of relation <str> does not exist",
            &[
                "column \"email\" of relation \"users\" does not exist",
                "column 'name' of relation 'orders' does not exist",
                "column `id` of relation \"a \\\"quoted\\\" name\" does not exist",
            ],
        );
    }

    #[test]
    fn apostrophes_are_not_quotes() {
        assert_eq!(
            template("can't open the users' file 'a.txt'"),
            "can't open the users' file <str>"
        );
    }

    #[test]
    fn durations() {
        assert_same(
            "request took <duration>",
            &[
                "request took 250ms",
                "request took 3.2s",
                "request took 10 sec",
                "request took 5m",
                "request took 2h",
                "request took 1.5µs",
                "request took 30 seconds",
                "request took 1h30m5s",
            ],
        );
    }

    #[test]
    fn sizes() {
        assert_same(
            "payload of <size> exceeds limit",
            &[
                "payload of 512MB exceeds limit",
                "payload of 1.5 GiB exceeds limit",
                "payload of 2048 bytes exceeds limit",
                "payload of 10KB exceeds limit",
                "payload of 64kb exceeds limit",
            ],
        );
    }

    #[test]
    fn hex_values() {
        assert_same(
            "segfault at <hex> in worker",
            &[
                "segfault at 0xdeadbeef in worker",
                "segfault at 0x7FFD1234 in worker",
                "segfault at 3f9a2b1c7d in worker",
                "segfault at da39a3ee5e6b4b0d3255bfef95601890afd80709 in worker",
            ],
        );
        assert_eq!(template("deadbeefcafe is a word"), "deadbeefcafe is a word");
    }

    #[test]
    fn numbers() {
        assert_same(
            "balance <num> below minimum <num>",
            &[
                "balance -42 below minimum 0",
                "balance 3.14 below minimum 100",
                "balance 1e-5 below minimum 12345678",
            ],
        );
        assert_eq!(
            template("items 1-5 failed (code -3)"),
            "items <num>-<num> failed (code <num>)"
        );
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(
            template("user_id=42 retries=3"),
            "user_id=<val> retries=<val>"
        );
        assert_same(
            "payment failed: reason=<val> order=<val>, amount=<val>",
            &[
                "payment failed: reason=\"card declined\" order=A-1, amount=9.99",
                "payment failed: reason='insufficient funds' order=B-27, amount=100",
                "payment failed: reason=timeout order=550e8400-e29b-41d4-a716-446655440000, amount=0",
            ],
        );
        assert_eq!(template("if a == b or x==y"), "if a == b or x==y");
    }

    #[test]
    fn identifiers_with_digits_are_kept() {
        for m in [
            "http2 stream reset",
            "S3 bucket unavailable",
            "utf8 decode error in ipv4 parser",
            "e2e suite OAuth2 token expired",
            "sha256 mismatch on x86_64 python3.11 v1.2.3",
        ] {
            assert_eq!(template(m), m);
        }
    }

    #[test]
    fn whitespace_and_lines() {
        assert_eq!(
            template("\n\n   disk   full\ton  \t node  \n  at foo()\n  at bar()"),
            "disk full on node"
        );
        assert_eq!(template(""), "");
        assert_eq!(template("  \n \n"), "");
        assert_eq!(template("crlf line\r\nsecond"), "crlf line");
    }

    #[test]
    fn java_stack_traces_merge_on_first_line() {
        assert_same(
            "java.lang.IllegalStateException: pool exhausted",
            &[
                "java.lang.IllegalStateException: pool exhausted\n\tat com.acme.Pool.get(Pool.java:42)",
                "java.lang.IllegalStateException: pool exhausted\n\tat com.acme.Pool.get(Pool.java:57)\n\tat x",
            ],
        );
    }

    #[test]
    fn python_tracebacks_use_the_exception_line() {
        let a = "Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>\n    int('a')\nValueError: invalid literal for int() with base 10: 'a'";
        let b = "Traceback (most recent call last):\n  File \"/app/y.py\", line 9, in main\nKeyError: 'user'";
        assert_eq!(
            template(a),
            "ValueError: invalid literal for int() with base <num>: <str>"
        );
        assert_eq!(template(b), "KeyError: <str>");
        assert_ne!(fp("svc", a), fp("svc", b));
    }

    #[test]
    fn template_is_capped() {
        let long = "word ".repeat(1_000);
        assert_eq!(template(&long).chars().count(), MAX_TEMPLATE_CHARS);
        let wide = "é".repeat(5_000);
        assert_eq!(template(&wide).chars().count(), MAX_TEMPLATE_CHARS);
        // Variable parts past the cap do not split a problem.
        assert_eq!(
            fp("svc", &format!("{long} id=1")),
            fp("svc", &format!("{long} id=2"))
        );
    }

    #[test]
    fn different_problems_do_not_merge() {
        assert_different("failed to read config", "failed to write config");
        assert_different(
            "NullPointerException in OrderService.place",
            "IllegalStateException in OrderService.place",
        );
        assert_different("connection refused", "connection reset");
        assert_different("http2 stream reset", "http1 stream reset");
        assert_different("user_id=42 rejected", "order_id=42 rejected");
    }

    #[test]
    fn services_do_not_merge() {
        let msg = "upstream timed out after 30s";
        assert_ne!(fp("checkout", msg), fp("payments", msg));
        let none = fingerprint(&event(None, msg)).fingerprint;
        assert_ne!(none, fp("checkout", msg));
        assert_eq!(none, fp("", msg));
    }

    #[test]
    fn error_fingerprint_attribute_wins_verbatim_when_safe() {
        for attrs in [
            json!({"error": {"fingerprint": "checkout-timeout:v2"}}),
            json!({"error.fingerprint": "checkout-timeout:v2"}),
        ] {
            let out = fingerprint(&event_with(attrs, "Timeout after 30s"));
            assert_eq!(out.fingerprint.as_str(), "checkout-timeout:v2");
            assert_eq!(out.fingerprint.label(), "triage-checkout-timeout:v2");
            assert_eq!(out.template, "Timeout after <duration>");
        }
        let numeric = fingerprint(&event_with(json!({"error": {"fingerprint": 12345}}), "x"));
        assert_eq!(numeric.fingerprint.as_str(), "12345");
    }

    #[test]
    fn error_fingerprint_attribute_is_hashed_when_unsafe() {
        let spaced = fingerprint(&event_with(
            json!({"error": {"fingerprint": "Checkout timed out"}}),
            "Timeout after 30s",
        ));
        assert_eq!(
            spaced.fingerprint.as_str(),
            hash16(&["error.fingerprint", "Checkout timed out"])
        );
        assert_eq!(spaced.fingerprint.as_str().len(), 16);
        assert_eq!(spaced.template, "Timeout after <duration>");
        // Not the message hash either: the attribute still decides.
        assert_ne!(spaced.fingerprint, fp("api", "Timeout after 30s"));

        let long = "a".repeat(201);
        let hashed = fingerprint(&event_with(json!({"error.fingerprint": long}), "x"));
        assert_eq!(hashed.fingerprint.as_str().len(), 16);
        let exactly = "a".repeat(200);
        let verbatim = fingerprint(&event_with(json!({"error.fingerprint": exactly}), "x"));
        assert_eq!(verbatim.fingerprint.as_str(), exactly);
        assert!(verbatim.fingerprint.label().len() <= 255);

        for bad in [
            json!("a/b"),
            json!("ünïcode"),
            json!("tab\there"),
            json!("x\ny"),
            json!(true),
            json!(["a"]),
        ] {
            let out = fingerprint(&event_with(json!({"error.fingerprint": bad}), "x"));
            assert_eq!(out.fingerprint.as_str().len(), 16, "{bad:?}");
            assert!(out
                .fingerprint
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn empty_error_fingerprint_is_ignored() {
        for attrs in [
            json!({"error": {"fingerprint": ""}}),
            json!({"error": {"fingerprint": "   "}}),
            json!({"error": {"fingerprint": null}}),
            json!({"error": {"message": "x"}}),
        ] {
            let out = fingerprint(&event_with(attrs, "disk full"));
            assert_eq!(out.fingerprint, fp("api", "disk full"));
        }
    }

    #[test]
    fn labels_are_safe() {
        let computed = fp("svc", "disk full on /dev/sda1");
        assert_eq!(computed.label(), format!("triage-{computed}"));
        assert_eq!(Fingerprint::from_raw("abc").label(), "triage-abc");
        assert_eq!(Fingerprint::from_raw("abc").to_string(), "abc");
        for raw in ["has space", "", "x\ty", &"z".repeat(1_000)] {
            let label = Fingerprint::from_raw(raw).label();
            assert!(label.starts_with("triage-"), "{label}");
            assert!(!label.contains(char::is_whitespace), "{label}");
            assert!(label.chars().count() <= 255, "{label}");
            assert_ne!(label, "triage-");
        }
    }

    #[test]
    fn computed_fingerprints_are_short_lowercase_hex() {
        let f = fp("svc", "anything at all 42");
        assert_eq!(f.as_str().len(), 16);
        assert!(f
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn deterministic_across_calls_and_threads() {
        let messages: Vec<String> = (0..200)
            .map(|i| format!("worker {i} failed: GET https://x/{i} after {i}ms ({i}.{i}.{i}.{i})"))
            .collect();
        let once: Vec<Fingerprinted> = messages
            .iter()
            .map(|m| fingerprint(&event(Some("svc"), m)))
            .collect();
        assert!(once.windows(2).all(|w| w[0] == w[1]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let messages = messages.clone();
                std::thread::spawn(move || {
                    messages
                        .iter()
                        .map(|m| fingerprint(&event(Some("svc"), m)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), once);
        }
    }

    #[test]
    fn known_input_has_a_fixed_fingerprint() {
        // The masking-only label that tickets filed before templates were learned carry; the
        // ticket stage searches it to find them. If this fails those tickets are lost: never
        // change it (new fingerprints come from `grouping`, pinned there).
        let out = fingerprint(&event(
            Some("checkout"),
            "Connection to 10.0.3.17:5432 timed out after 3000ms",
        ));
        assert_eq!(
            out.template,
            "Connection to <ip> timed out after <duration>"
        );
        assert_eq!(out.fingerprint.as_str(), "869806469b855bb0");
    }

    #[test]
    fn many_logs_fingerprint_in_one_pass() {
        // Not timed (a release build does 100,000 in well under a second): it only shows that the
        // hot path has no per-call setup and that variable parts never split a problem.
        let samples = [
            "Connection to 10.0.3.{octet}:5432 timed out after {i}ms",
            "{ts} ERROR user_id={i} order 550e8400-e29b-41d4-a716-{i:012} failed",
            "GET https://api.example.com/v1/users/{i} returned 503 in 1.{i}s",
            "cannot open /var/lib/app/data{i}.db: quota of {i}MB exceeded (std::io::Error)",
            "java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"s{i}\" is null",
        ];
        let count = if cfg!(debug_assertions) {
            20_000
        } else {
            100_000
        };
        let mut distinct = std::collections::HashSet::new();
        for i in 0..count {
            let message = samples[i % samples.len()]
                .replace(
                    "{ts}",
                    &format!("2024-03-01T12:{:02}:{:02}Z", i % 60, i % 59),
                )
                .replace("{i:012}", &format!("{:012}", i))
                .replace("{octet}", &(i % 256).to_string())
                .replace("{i}", &i.to_string());
            distinct.insert(fingerprint(&event(Some("svc"), &message)).fingerprint);
        }
        assert_eq!(distinct.len(), samples.len());
    }

    /// Lines exercising every alternative and their edges.
    const CORPUS: &[&str] = &[
        "Connection to 10.0.3.17:5432 timed out after 3000ms",
        "2024-03-01T12:00:00.123Z ERROR user_id=42 order 550e8400-e29b-41d4-a716-446655440000",
        "Mar  1 12:00:01 web-1 [01/Mar/2024:12:00:01 +0000] Fri, 01 Mar 2024 12:00:01 GMT",
        "dates 2024-03-01 01/03/2024 1.3.2024 12:00:01,123 7:05:09 1 Mar 2024",
        "mail alice@example.com url https://x.y/z?a=b. postgres://u:p@h:5432/db",
        "ips 192.168.1.20 172.16.0.0/12 2001:db8::1 ::1 fe80::1%eth0 [::1]:8080 ::ffff:10.0.0.1",
        "code std::io::Error a::b Abc::Def1 Foo::1 x :: y dead::beef",
        "mac 00:1a:2b:3c:4d:5e AA-BB-CC-00-11-22",
        "paths /var/lib/x.db C:\\x\\y ./rel/p ../x ~/y \\\\srv\\share I/O read/write HTTP/1.1",
        "quotes \"a \\\" b\" 'c' `d` can't users' 'e'f",
        "durations 250ms 3.2s 10 sec 5m 2h 1.5µs 30 seconds 1h30m5s 5min",
        "sizes 512MB 1.5 GiB 2048 bytes 10KB 64kb 5 B",
        "hex 0xdeadbeef 0X1F 3f9a2b1c7d deadbeefcafe 12345678 1234567e",
        "numbers -42 3.14 1e-5 1-5 utf-8 python3.11 v1.2.3 shard.3 http2 S3 e2e",
        "kv a=1 b=\"x y\" c='z' d==e f= g=h,i=j k.l-m=n",
        "unicode é1 ü-2 naïve=3 «4» 5€",
    ];

    #[test]
    fn span_kinds_agree_with_capture_groups() {
        // `Masker::kind_of` must name the alternative the combined regex actually matched: check
        // it against the (slow) capture-group answer.
        let alts = alternatives();
        let grouped = alts
            .iter()
            .map(|a| format!("({})", a.pattern))
            .collect::<Vec<_>>()
            .join("|");
        let grouped = Regex::new(&grouped).unwrap();
        let mut seen = std::collections::HashSet::new();
        for line in CORPUS {
            for caps in grouped.captures_iter(line) {
                let i = (1..caps.len()).find(|&i| caps.get(i).is_some()).unwrap();
                let span = caps.get(0).unwrap().as_str();
                assert_eq!(
                    MASKER.kind_of(span),
                    Some(alts[i - 1].kind),
                    "{span:?} in {line:?}"
                );
                seen.insert(i - 1);
            }
        }
        assert_eq!(seen.len(), alts.len(), "every alternative is exercised");
    }

    #[test]
    fn corpus_templates_are_stable_under_variation() {
        // Masking is idempotent on placeholders: a template masks to itself.
        for line in CORPUS {
            let t = template(line);
            assert_eq!(template(&t), t, "{line:?}");
        }
    }

    #[test]
    fn json_lines_use_their_message_field() {
        let a = r#"{"level":"error","msg":"payment 42 declined","ts":"2024-03-01T12:00:00Z"}"#;
        let b = r#"{"level":"error","msg":"payment 43 declined","ts":"2024-03-02T12:00:00Z"}"#;
        let c = r#"{"level":"error","msg":"refund 42 failed","ts":"2024-03-01T12:00:00Z"}"#;
        assert_eq!(template(a), "payment <num> declined");
        assert_eq!(fp("svc", a), fp("svc", b));
        assert_ne!(fp("svc", a), fp("svc", c));
        let nested = r#"{"error":{"message":"disk full on /dev/sda1","code":28}}"#;
        assert_eq!(template(nested), "disk full on <path>");
        let pretty = "{\n  \"level\": \"error\",\n  \"message\": \"payment 7 declined\"\n}";
        assert_eq!(template(pretty), "payment <num> declined");
        // Not JSON, or no message field: the line itself.
        assert_eq!(template("{broken 42"), "{broken <num>");
        assert_eq!(template(r#"{"a":1}"#), "{<str>:<num>}");
    }
}
