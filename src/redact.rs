//! Redaction: secrets (and, when asked, personal data) removed from log text before it leaves
//! the process.
//!
//! In: a [`Redactor`] (which optional kinds to remove, from `--redact` / `TRIAGE_REDACT`) and a
//! text or a whole [`LogEvent`]. Out: the same text with every match replaced by a placeholder
//! such as `[REDACTED]`; text without a match is returned unchanged. It cannot fail: the
//! patterns are compiled once from constants, and every input string is accepted.
//!
//! Always removed (no flag turns these off): bearer/basic credentials, JWTs, the values of
//! `password=`, `token=`, `secret=`, `api_key=` and similar keys (also in `key: value` and JSON
//! `"key": "value"` forms, and attribute values under such keys), private key blocks, card
//! numbers that pass the Luhn check, and cloud keys of well-known shapes (AWS `AKIA…`/`ASIA…`,
//! GitHub `ghp_…`, Slack `xox…`, Stripe `sk_live_…`, Google `AIza…`).
//! Optional: `emails` and `ips` (IPv4). `none` selects no optional kind.
//!
//! [`url_userinfo`] hides the `user:password@` part of a URL for messages.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

use crate::event::{Attributes, LogEvent, Text};

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";
/// What replaces the value after a key (`password=REDACTED`): a plain word, so the template
/// masks it as it masks any value and the fingerprint does not change.
pub const VALUE_REDACTED: &str = "REDACTED";

/// Which optional kinds of personal data are removed besides the secrets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redactor {
    pub emails: bool,
    pub ips: bool,
}

impl Redactor {
    /// Parse a `--redact` list: comma-separated `emails`, `ips`, `all` or `none`.
    pub fn parse(list: &str) -> Result<Redactor, String> {
        let mut r = Redactor::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "emails" | "email" => r.emails = true,
                "ips" | "ip" => r.ips = true,
                "all" => {
                    r.emails = true;
                    r.ips = true;
                }
                "none" => r = Redactor::default(),
                other => {
                    return Err(format!(
                        "unknown redaction '{other}': expected emails, ips, all or none \
                         (secrets are always redacted)"
                    ))
                }
            }
        }
        Ok(r)
    }

    /// Remove secrets (always) and the selected personal data from `text`.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        // Most text holds no secret: one cheap pass says which patterns could match at all.
        let hints = secret_hints(text);
        if hints != 0 {
            for (i, (re, kind)) in SECRETS.iter().enumerate() {
                if hints & (1 << i) != 0 && matches(re, *kind, &out) {
                    out = Cow::Owned(replace(re, *kind, &out));
                }
            }
        }
        if self.emails && EMAIL.is_match(&out) {
            out = Cow::Owned(EMAIL.replace_all(&out, "<email>").into_owned());
        }
        if self.ips && IPV4.is_match(&out) {
            out = Cow::Owned(IPV4.replace_all(&out, "<ip>").into_owned());
        }
        out
    }

    /// The event with its message, tags, host and custom attributes redacted.
    pub fn event(&self, mut event: LogEvent) -> LogEvent {
        self.event_in_place(&mut event);
        event
    }

    /// Redact the event's message, tags, host and custom attributes where they are.
    pub fn event_in_place(&self, event: &mut LogEvent) {
        if let Cow::Owned(m) = self.text(&event.message) {
            event.message = m;
        }
        for tag in &mut event.tags {
            if let Cow::Owned(t) = self.text(tag) {
                *tag = t;
            }
        }
        if let Some(host) = &event.host {
            if let Cow::Owned(h) = self.text(host) {
                event.host = Some(h);
            }
        }
        self.attributes(&mut event.attributes);
    }

    /// Redact custom attributes. A text is left as it is when no pattern can match anywhere in
    /// it: it has no escapes, so each of its strings is in it as it reads, and a pattern that
    /// matches none of the text matches none of them. When card numbers are all it may hold,
    /// they are zeroed in the text (`zero_cards`). Otherwise it is parsed and redacted.
    pub fn attributes(&self, attributes: &mut Attributes) {
        if let Attributes::Text(text) = attributes {
            match self.concern(text.as_str()) {
                Concern::None => return,
                Concern::Cards if zero_cards(text) => return,
                Concern::Cards | Concern::More => {}
            }
        }
        if let Some(value) = attributes.value_mut() {
            self.value(value);
        }
    }

    /// What in `text` could be redacted (a superset of what [`Redactor::text`] and the secret
    /// keys find, run on the whole text at once).
    fn concern(&self, text: &str) -> Concern {
        let hints = secret_hints(text);
        if hints & !CARD != 0 {
            return Concern::More;
        }
        if self.emails && EMAIL.is_match(text) || self.ips && IPV4.is_match(text) {
            return Concern::More;
        }
        let (re, kind) = &SECRETS[CARD_PATTERN];
        if hints & CARD != 0 && matches(re, *kind, text) {
            return Concern::Cards;
        }
        Concern::None
    }

    /// Redact every string in a JSON value; the value of a key that names a secret is replaced.
    pub fn value(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(t) = self.text(s) {
                    *s = t;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if is_secret_key(key) && !v.is_object() && !v.is_array() && !v.is_null() {
                        *v = Value::String(REDACTED.to_string());
                    } else {
                        self.value(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// What an attributes text may hold that redaction would change.
enum Concern {
    None,
    /// Card numbers, and nothing else: no key or word of any other pattern.
    Cards,
    More,
}

/// The card pattern's place in [`SECRETS`], and its bit in [`secret_hints`].
const CARD_PATTERN: usize = 7;
const CARD: u16 = 1 << CARD_PATTERN;

/// Redact the card numbers of an attributes text where they are, as [`Redactor::value`] would
/// string by string: a match cannot cross a quote, so the pattern finds on the whole text the
/// same numbers it finds in each string; those in keys and in JSON numbers are left, as there.
/// A card becomes zeros of its shape, so the text keeps its length and stays valid. False when
/// the text could not be changed (it is then parsed and redacted the usual way).
fn zero_cards(text: &mut Text) -> bool {
    let (re, _) = &SECRETS[CARD_PATTERN];
    let values = text.value_strings();
    let inside = |m: &regex::Match| {
        values
            .iter()
            .any(|v| v.start <= m.start() && m.end() <= v.end)
    };
    let cards: Vec<_> = re
        .find_iter(text.as_str())
        .filter(|m| luhn(m.as_str()) && inside(m))
        .map(|m| m.range())
        .collect();
    cards.is_empty() || text.zero_digits(&cards)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Replace the whole match with this text.
    Whole(&'static str),
    /// Keep group 1 (the key or scheme and separator), replace the rest.
    KeepPrefix,
    /// A digit run that is replaced only when it passes the Luhn check.
    Card,
    /// `scheme://user:password@`: the scheme kept, the credentials replaced, the `@` kept.
    Userinfo,
    /// A multi-line block: one placeholder, and the block's line breaks kept, so the message's
    /// first line (which the template is made of) is the same redacted or not.
    Block(&'static str),
}

fn replace(re: &Regex, kind: Kind, text: &str) -> String {
    re.replace_all(text, |c: &Captures| match kind {
        Kind::Whole(p) => p.to_string(),
        Kind::KeepPrefix => format!("{}{VALUE_REDACTED}", &c[1]),
        Kind::Userinfo => format!("{}{VALUE_REDACTED}@", &c[1]),
        Kind::Block(p) => {
            let mut out = p.to_string();
            out.extend(c[0].chars().filter(|&ch| ch == '\n'));
            out
        }
        Kind::Card => {
            if luhn(&c[0]) {
                // Zeros of the same shape: the template masks them exactly as it masks the
                // digits, so the fingerprint is the same with or without this redaction.
                c[0].chars()
                    .map(|ch| if ch.is_ascii_digit() { '0' } else { ch })
                    .collect()
            } else {
                c[0].to_string()
            }
        }
    })
    .into_owned()
}

/// Key names whose values are secrets.
const KEY: &str = r"[A-Za-z0-9_.-]*(?i:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?)";

static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^{KEY}$")).expect("the secret key pattern is a valid regex")
});

/// Whether an attribute key names a secret (the whole key matches [`KEY`]). Keys are short and
/// read for every attribute of every log, so the regex runs only on keys that hold one of
/// [`KEY`]'s words, as [`secret_hints`] finds them.
fn is_secret_key(key: &str) -> bool {
    secret_hints(key) & KEYS != 0 && SECRET_KEY.is_match(key)
}

static SECRETS: LazyLock<Vec<(Regex, Kind)>> = LazyLock::new(|| {
    // In the order of the bits `secret_hints` gives.
    let table: [(String, Kind); 9] = [
        (
            r"-----BEGIN[A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z ]*PRIVATE KEY-----|\z)".into(),
            Kind::Block("[REDACTED PRIVATE KEY]"),
        ),
        (
            r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*".into(),
            Kind::Whole("[REDACTED JWT]"),
        ),
        (
            r"(?i)(\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}".into(),
            Kind::KeepPrefix,
        ),
        // JSON: "password": "value"
        (
            format!(r#"("{KEY}"\s*:\s*")(?:[^"\\]|\\.)*"#),
            Kind::KeepPrefix,
        ),
        // key=value, key: value, key="value"
        (
            format!(r#"(\b{KEY}\s*(?:=|:)\s*["']?)[^\s"'&,;)}}\]]+"#),
            Kind::KeepPrefix,
        ),
        (
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b".into(),
            Kind::Whole(REDACTED),
        ),
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|[rs]k_(?:live|test)_[A-Za-z0-9]{10,}|AIza[0-9A-Za-z_-]{35})".into(),
            Kind::Whole(REDACTED),
        ),
        (r"\b\d(?:[ -]?\d){12,18}\b".into(), Kind::Card),
        // URL userinfo: scheme://user:pass@
        (r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@:]+:[^/\s@]+@".into(), Kind::Userinfo),
    ];
    table
        .into_iter()
        .map(|(p, k)| {
            (
                Regex::new(&p).expect("every secret pattern is a valid regex"),
                k,
            )
        })
        .collect()
});

/// Which of [`SECRETS`] may match `text`, as bits by index: every match of a pattern holds
/// one of the words in [`word_hints`] (in any case) or, for a card number, 13 digits. A
/// superset, so a pattern whose bit is clear cannot match and is not run. Most text holds none
/// of the words: a table of the words' first two letters lets the pass look closer only where
/// one may start.
fn secret_hints(text: &str) -> u16 {
    let b = text.as_bytes();
    let mut hints = 0u16;
    // The pairs a byte may start meet those the next may end.
    let mut starts = 0u32;
    for (i, &c) in b.iter().enumerate() {
        if starts & PAIR_SECOND[c as usize] != 0 {
            hints |= word_hints(b, i - 1);
        }
        starts = PAIR_FIRST[c as usize];
    }
    if hints & SCHEME != 0 && b.contains(&b'@') {
        hints |= 1 << 8;
    }
    if count_digits(b) >= 13 {
        hints |= 1 << 7;
    }
    hints & !SCHEME
}

/// How many ASCII digits `b` holds, counted eight bytes at a time.
fn count_digits(b: &[u8]) -> usize {
    let mut words = b.chunks_exact(8);
    let mut digits = 0;
    for word in &mut words {
        digits += digit_bits(word).count_ones() as usize;
    }
    digits
        + words
            .remainder()
            .iter()
            .filter(|c| c.is_ascii_digit())
            .count()
}

/// The first two letters of every word [`word_hints`] knows.
const HINT_PAIRS: [&[u8; 2]; 19] = [
    b"--", b"ey", b"be", b"ba", b"to", b"pa", b"pw", b"se", b"ke", b"cr", b"ak", b"as", b"ag",
    b"ai", b"ar", b"gh", b"xo", b"k_", b":/",
];

/// Per byte, the [`HINT_PAIRS`] it may begin (bit `n` for pair `n`, in any case).
static PAIR_FIRST: [u32; 256] = pair_table(0);
/// Per byte, the [`HINT_PAIRS`] it may end.
static PAIR_SECOND: [u32; 256] = pair_table(1);
const _: () = assert!(HINT_PAIRS.len() <= 32);

const fn pair_table(side: usize) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < HINT_PAIRS.len() {
        let c = HINT_PAIRS[n][side];
        table[c as usize] |= 1 << n;
        if c.is_ascii_alphabetic() {
            table[(c ^ 0x20) as usize] |= 1 << n;
        }
        n += 1;
    }
    table
}

/// The two patterns of [`SECRETS`] that find a value after a key named by [`KEY`].
const KEYS: u16 = 1 << 3 | 1 << 4;

/// Not a pattern: a `://` that, with an `@` in the text, hints at URL userinfo.
const SCHEME: u16 = 1 << 15;

/// The patterns a word starting at `i` hints at.
fn word_hints(b: &[u8], i: usize) -> u16 {
    const CLOUD: u16 = 1 << 6;
    let at = |word: &[u8]| {
        b.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    let aws = ["akia", "asia", "agpa", "aida", "aroa"];
    match b[i].to_ascii_lowercase() {
        b'-' if at(b"-----BEGIN") => 1 << 0,
        b'e' if at(b"eyJ") => 1 << 1,
        b'b' if at(b"bearer") || at(b"basic") => 1 << 2,
        b't' if at(b"token") => 1 << 2 | KEYS,
        // the key names of KEY: password/passwd, pwd, secret, *key, credential(s)
        b'p' if at(b"pass") || at(b"pwd") => KEYS,
        b's' if at(b"secret") => KEYS,
        b'k' if at(b"key") => KEYS,
        b'c' if at(b"credential") => KEYS,
        b'a' if aws.iter().any(|w| at(w.as_bytes())) => 1 << 5,
        b'a' if at(b"aiza") => CLOUD,
        b'g' if at(b"gh") && b.get(i + 3) == Some(&b'_') => CLOUD,
        b'x' if at(b"xox") => CLOUD,
        b'k' if at(b"k_live_") || at(b"k_test_") => CLOUD,
        b':' if at(b"://") => SCHEME,
        _ => 0,
    }
}

/// Eight bytes as one word: the top bit of each byte that is an ASCII digit, no other bit.
fn digit_bits(word: &[u8]) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    let t = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ (ONES * u64::from(b'0'));
    // A digit is 0..=9 now: its low seven bits plus 0x76 stay below 0x80, and no byte carries
    // into the next. Any other byte gets its top bit set, by the sum or already in `t`.
    let other = ((t & (ONES * 0x7f)) + ONES * 0x76) | t;
    !other & (ONES << 7)
}

/// From `i`, the start of the first eight bytes that may hold an ASCII digit (the end of `b`
/// when none does): eight bytes are tested at once, so text without digits is passed quickly.
fn next_digit_word(b: &[u8], mut i: usize) -> usize {
    while let Some(word) = b.get(i..i + 8) {
        if digit_bits(word) != 0 {
            return i;
        }
        i += 8;
    }
    i
}

/// Whether `re` finds something to replace in `text`: a card number only if it passes Luhn.
fn matches(re: &Regex, kind: Kind, text: &str) -> bool {
    match kind {
        Kind::Card => card_possible(text) && re.find_iter(text).any(|m| luhn(m.as_str())),
        _ => re.is_match(text),
    }
}

/// Whether the card pattern (`\b\d(?:[ -]?\d){12,18}\b`) could find a Luhn-valid number in
/// `text`: false only when it surely cannot, so the pattern need not run. A run of digits
/// joined by single spaces or dashes holds every match; a run of plain digits between two
/// ASCII non-word bytes can only match whole, so its own Luhn check decides. Trace and span
/// ids (19 digits) are such runs, and most fail the check.
fn card_possible(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i = next_digit_word(b, i + 1);
            continue;
        }
        let start = i;
        let (mut digits, mut joined) = (0, false);
        while i < b.len() {
            if b[i].is_ascii_digit() {
                digits += 1;
            } else if matches!(b[i], b' ' | b'-') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                joined = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits < 13 {
            continue;
        }
        if joined {
            return true;
        }
        // Beside the run: an ASCII word byte leaves no word boundary there, so no match;
        // another byte of a non-ASCII character might be either, so the pattern must say.
        let beside = [start.checked_sub(1).map(|j| b[j]), b.get(i).copied()];
        if beside.iter().flatten().any(|&c| c >= 0x80) {
            return true;
        }
        let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
        if beside.iter().flatten().any(word) {
            continue;
        }
        if digits <= 19 && luhn(&text[start..i]) {
            return true;
        }
    }
    false
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
        .expect("the email pattern is a valid regex")
});

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
    )
    .expect("the IPv4 pattern is a valid regex")
});

/// Whether the digits of `s` (spaces and dashes ignored) pass the Luhn check.
fn luhn(s: &str) -> bool {
    let digits = || {
        s.bytes()
            .filter(u8::is_ascii_digit)
            .map(|c| u32::from(c - b'0'))
    };
    if !(13..=19).contains(&digits().count()) {
        return false;
    }
    let sum: u32 = digits()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A URL for messages: any `user:password@` (or `user@`) before the host becomes `***@`.
/// Works on text that does not parse as a URL too.
pub fn url_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_string();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &raw[..scheme_end + 3], &rest[at + 1..]),
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every pattern run on the text, as before the hints: what `text` must equal.
    fn every_pattern(text: &str) -> String {
        let mut out = text.to_string();
        for (re, kind) in SECRETS.iter() {
            if re.is_match(&out) {
                out = replace(re, *kind, &out);
            }
        }
        out
    }

    /// Pieces of text near and at the patterns' edges, in any case, run together.
    fn near_secrets() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "password=",
            "PassWD: ",
            "pwd=x",
            "\"api-key\": \"v a\"",
            "Secret",
            "tokeN ",
            "BEARER ",
            "basic ",
            "abcdefgh123",
            "eyJ",
            "eyJhbGciOi.eyJzdWIi.sig",
            "keyJ",
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
            "AKIA",
            "IOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_",
            "xoxb-",
            "sk_live_",
            "rk_test_",
            "ghs_0123456789abcdefghijklmnopqrstuvwx",
            "xoxp-0123456789ab",
            "rk_test_0123456789ab",
            "AIza0123456789abcdefghijklmnopqrstuvwxy",
            "AIza",
            "4111",
            " ",
            "1111",
            "-",
            "://",
            "user:pw@",
            "@",
            "\n",
            "=",
            ":",
            "é",
            "credentials",
            "ACCESS_KEY",
        ]);
        prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
    }

    /// Digits, the joins a card number may have, word and non-word neighbours, in any order;
    /// with `escaped`, also pieces JSON escapes (a quote, a newline).
    fn card_text(escaped: bool) -> impl Strategy<Value = String> {
        let mut pieces = vec![
            "4111",
            "1111",
            "4242424242424242",
            "5704490196125334487",
            "7",
            "0",
            " ",
            "-",
            "--",
            ":",
            "_",
            "a",
            "é",
        ];
        if escaped {
            pieces.extend(["\"", "\n"]);
        }
        prop::collection::vec(prop::sample::select(pieces), 0..12).prop_map(|v| v.concat())
    }

    fn near_cards() -> impl Strategy<Value = String> {
        card_text(true)
    }

    /// Attributes written from these stay text.
    fn plain_near_cards() -> impl Strategy<Value = String> {
        card_text(false)
    }

    #[test]
    fn digits_are_counted_eight_bytes_at_a_time_as_one_by_one() {
        for text in ["", "7", "a1b2c3d4e5f6g7h8i9", "0123456789:/9é٣12345678"] {
            let one_by_one = text.bytes().filter(u8::is_ascii_digit).count();
            assert_eq!(count_digits(text.as_bytes()), one_by_one, "{text:?}");
        }
        let every_byte: Vec<u8> = (0..=255).collect();
        assert_eq!(count_digits(&every_byte), 10);
    }

    #[test]
    fn a_card_is_found_only_where_its_run_allows() {
        assert!(card_possible("card 4111 1111 1111 1111 here"));
        assert!(card_possible("\"4242424242424242\""));
        // A trace id that fails Luhn, and one inside a word.
        assert!(!card_possible("\"trace_id\":\"1889885825713147103\""));
        assert!(!card_possible("id=x4242424242424242"));
        assert!(!card_possible("12345678901234567890123"));
        assert!(!card_possible("order 29656 took 1818ms"));
    }

    proptest! {
        /// The quick check says no only where the pattern finds no Luhn-valid number.
        #[test]
        fn the_card_check_never_skips_a_card(text in near_cards()) {
            let (re, _) = &SECRETS[CARD_PATTERN];
            if re.find_iter(&text).any(|m| luhn(m.as_str())) {
                prop_assert!(card_possible(&text), "missed a card in {:?}", text);
            }
        }

        #[test]
        fn the_hints_never_skip_a_pattern_that_matches(text in near_secrets()) {
            prop_assert_eq!(Redactor::default().text(&text).into_owned(), every_pattern(&text));
        }

        /// Card numbers in keys, values and JSON numbers of a text are redacted (or left) as
        /// in the same attributes parsed.
        #[test]
        fn cards_in_a_text_are_redacted_as_parsed(
            pairs in prop::collection::vec((plain_near_cards(), plain_near_cards()), 1..5),
            number in prop::sample::select(vec![4242424242424242u64, 4111111111111111, 1889885825713147103, 7]),
        ) {
            let mut object: serde_json::Map<String, Value> = pairs
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!({ "v": v, "list": [v, number] })))
                .collect();
            object.insert("n".into(), Value::from(number));
            let text = serde_json::to_string_pretty(&Value::Object(object)).unwrap();
            let raw = serde_json::value::RawValue::from_string(text).unwrap();
            let mut as_text = Attributes::from_text(&raw);
            let mut parsed = Attributes::from(serde_json::from_str::<Value>(raw.get()).unwrap());
            Redactor::default().attributes(&mut as_text);
            Redactor::default().attributes(&mut parsed);
            prop_assert_eq!(as_text.to_value(), parsed.to_value());
        }

        /// Attributes left as text are redacted exactly as the same attributes parsed.
        #[test]
        fn attributes_as_text_are_redacted_as_parsed(
            keys in prop::collection::vec(
                prop::sample::select(vec!["msg", "api_key", "user.password", "token", "n", "url"]),
                1..4,
            ),
            values in prop::collection::vec(near_secrets(), 1..4),
            emails in any::<bool>(),
            ips in any::<bool>(),
        ) {
            let object: serde_json::Map<String, Value> = keys
                .iter()
                .zip(values.iter().chain(std::iter::repeat(&String::new())))
                .map(|(k, v)| (k.to_string(), serde_json::json!({ "inner": v, "flat": [v, 4111] })))
                .chain(keys.first().map(|k| (format!("{k}_scalar"), Value::from(values[0].clone()))))
                .collect();
            let text = Value::Object(object).to_string();
            let raw = serde_json::value::RawValue::from_string(text).unwrap();
            let redactor = Redactor { emails, ips };
            let mut as_text = Attributes::from_text(&raw);
            let mut parsed = Attributes::from(serde_json::from_str::<Value>(raw.get()).unwrap());
            redactor.attributes(&mut as_text);
            redactor.attributes(&mut parsed);
            prop_assert_eq!(as_text.to_value(), parsed.to_value());
        }
    }

    #[test]
    fn the_card_pattern_is_the_one_attributes_check_by_itself() {
        assert!(matches!(SECRETS[CARD_PATTERN].1, Kind::Card));
    }

    fn secrets(s: &str) -> String {
        Redactor::default().text(s).into_owned()
    }

    #[test]
    fn every_kind_of_secret_is_redacted_by_default() {
        let cases = [
            ("login failed password=hunter2 for bob", "hunter2"),
            (
                "token=sk-live-abcdef123456 rejected",
                "sk-live-abcdef123456",
            ),
            ("call with api_key: AbC123xyz failed", "AbC123xyz"),
            (r#"body {"secret": "s3cr3t value"} refused"#, "s3cr3t value"),
            (
                "Authorization: Bearer abcdefghijklmnop123",
                "abcdefghijklmnop123",
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl expired",
                "eyJhbGciOiJIUzI1NiJ9",
            ),
            (
                "key -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- x",
                "MIIEow",
            ),
            ("charge 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
            ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE"),
            ("db postgres://app:pa55w0rd@db:5432/x down", "pa55w0rd"),
        ];
        for (input, secret) in cases {
            let out = secrets(input);
            assert!(!out.contains(secret), "{input:?} gave {out:?}");
            assert!(
                out.contains("REDACTED") || out.contains("0000"),
                "{input:?} gave {out:?}"
            );
        }
    }

    #[test]
    fn url_credentials_in_a_message_keep_the_url_readable() {
        assert_eq!(
            secrets("db postgres://app:pa55w0rd@db:5432/x down"),
            "db postgres://REDACTED@db:5432/x down"
        );
    }

    #[test]
    fn numbers_that_fail_luhn_and_plain_text_are_kept() {
        assert_eq!(
            secrets("order 1234567890123 failed after 30 s"),
            "order 1234567890123 failed after 30 s"
        );
        let plain = "upstream timed out after 30s on host web-1";
        assert!(matches!(Redactor::default().text(plain), Cow::Borrowed(_)));
    }

    #[test]
    fn personal_data_only_when_asked() {
        let text = "user bob@example.com from 10.1.2.3 failed";
        assert_eq!(secrets(text), text);
        let all = Redactor::parse("emails,ips").unwrap();
        assert_eq!(all.text(text), "user <email> from <ip> failed");
        assert_eq!(Redactor::parse("none").unwrap(), Redactor::default());
        assert!(Redactor::parse("phones").is_err());
    }

    #[test]
    fn secret_attribute_values_are_replaced() {
        let mut v = serde_json::json!({"db_password": "x", "nested": {"api_key": 7, "ok": "fine"}});
        Redactor::default().value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"db_password": REDACTED, "nested": {"api_key": REDACTED, "ok": "fine"}})
        );
    }

    #[test]
    fn url_credentials_are_hidden() {
        assert_eq!(
            url_userinfo("http://user:pass@jira.example.com/x"),
            "http://***@jira.example.com/x"
        );
        assert_eq!(url_userinfo("https://h:1/a@b"), "https://h:1/a@b");
        assert_eq!(url_userinfo("not a url"), "not a url");
    }
}
