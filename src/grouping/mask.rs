//! Masking: one log line in, its tokens out, with every value whose *shape* says it varies
//! replaced by the placeholder `<*>`.
//!
//! In: the line of a message that names the problem (`fingerprint::significant_line`). Out: the
//! masked tokens, written into a reusable buffer separated by single spaces, and their byte
//! spans. It cannot fail; work is bounded by `MAX_TOKENS` and the caller's line cap.
//!
//! A hand-written classifier looks at each whitespace-separated token once (no regex, no
//! allocation beyond the output buffer), which keeps masking well above a million lines a
//! second. What it masks, in general terms that hold for any system's logs:
//! - tokens with a digit (numbers, ids, IPs, `host:port`, hex, timestamps, `blk_-42`), except
//!   words that end in a short version number (`ssh2`, `http2`, `eth0`, `u0`);
//! - `label:value` with a numeric or boolean value keeps the label (`onExtend:<*>`);
//! - the values of `key=value` pairs, when the value itself looks variable (`uid=<*>`), so a
//!   low-cardinality value such as `user=root` stays for the miner to judge;
//! - booleans and null, month and weekday names, paths, URLs, e-mail addresses, long hex words,
//!   host names ending in a top-level domain, quoted values (`'user_id'`), and double-quoted
//!   strings that contain spaces;
//! - a unit word after a masked number (`10 ms`, `512 bytes`), and then every run of adjacent
//!   masked tokens collapses into one `<*>`, so a value written as one token or as several
//!   (`lifetime 00:01` / `lifetime <1 sec`, a list of ids) does not change the token count.

use std::borrow::Cow;

/// The placeholder for a variable part.
pub const VAR: &str = "<*>";
/// Tokens kept per line; the rest of a longer line does not take part in grouping.
pub const MAX_TOKENS: usize = 200;

const OPEN: &[u8] = b"([{<\"'";
const CLOSE: &[u8] = b")]}>\"',;:.";
const BRACKETS: &[u8] = b"()[]{}\"'";

/// Byte classes, looked up once per byte.
const IS_OPEN: u8 = 1;
const IS_CLOSE: u8 = 2;
const IS_BRACKET: u8 = 4;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < OPEN.len() {
        t[OPEN[i] as usize] |= IS_OPEN;
        i += 1;
    }
    let mut i = 0;
    while i < CLOSE.len() {
        t[CLOSE[i] as usize] |= IS_CLOSE;
        i += 1;
    }
    let mut i = 0;
    while i < BRACKETS.len() {
        t[BRACKETS[i] as usize] |= IS_BRACKET;
        i += 1;
    }
    t
};

fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

const VALUE_WORDS: &[&str] = &[
    "true", "false", "null", "True", "False", "NULL", "TRUE", "FALSE",
];
const DATE_WORDS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Mon",
    "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
];
const UNITS: &[&str] = &[
    "B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "kB", "kb", "mb", "gb", "bytes",
    "byte", "ms", "s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "h",
    "hr", "hrs", "hour", "hours", "day", "days", "us", "ns", "µs",
];
const TLDS: &[&str] = &[
    "com", "net", "org", "edu", "gov", "mil", "int", "io", "info", "biz", "local", "lan",
    "internal", "arpa",
];

/// Mask `line` into `out` (tokens separated by one space) and record each token's span, and
/// where each token came from: `raw[i]` is the span in `text` (the line, with free text in
/// quotes already one `<*>`) of the words token `i` was made of, so a variable's value can be
/// read back.
pub fn mask_line(
    line: &str,
    out: &mut String,
    spans: &mut Vec<(usize, usize)>,
    raw: &mut Vec<(usize, usize)>,
    text: &mut String,
) {
    out.clear();
    spans.clear();
    raw.clear();
    let line = unquote(line);
    text.clear();
    text.push_str(&line);
    let base = line.as_ptr() as usize;
    let mut prev_var = false;
    let mut after_method = false;
    for word in words(&line) {
        if spans.len() >= MAX_TOKENS {
            break;
        }
        let sep = !out.is_empty();
        let before = out.len();
        if sep {
            out.push(' ');
        }
        let start = out.len();
        let core = split_core(word).1;
        if after_method && core.starts_with('/') {
            mask_request_path(word, out);
        } else {
            mask_token(word, out);
        }
        after_method = is_method(core);
        let var = is_var(&out[start..]) || (prev_var && UNITS.contains(&split_core(word).1));
        let from = word.as_ptr() as usize - base;
        if var && prev_var {
            // Part of the previous variable: the run is one `<*>`.
            out.truncate(before);
            if let Some(last) = raw.last_mut() {
                last.1 = from + word.len();
            }
            continue;
        }
        if var {
            out.truncate(start);
            out.push_str(VAR);
        }
        spans.push((start, out.len()));
        raw.push((from, from + word.len()));
        prev_var = var;
    }
}

/// An HTTP method (RFC 9110): the word before a request's path.
fn is_method(word: &str) -> bool {
    matches!(
        word,
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" | "CONNECT" | "TRACE"
    )
}

/// `GET /path ...`: a request line, whose method and path words name what was asked for.
fn is_request_line(text: &str) -> bool {
    let mut parts = text.split_whitespace();
    parts.next().is_some_and(is_method) && parts.next().is_some_and(|p| p.starts_with('/'))
}

/// A request's path after its method: the words of the path stay (they name the resource),
/// segments that look like ids (a digit, long hex) and the query string become `<*>`
/// (`/v2/54fadb41.../servers/detail?limit=5` → `/v2/<*>/servers/detail?<*>`).
fn mask_request_path(tok: &str, out: &mut String) {
    let (pre, core, post) = split_core(tok);
    out.push_str(pre);
    let (path, query) = match core.split_once('?') {
        Some((p, _)) => (p, true),
        None => (core, false),
    };
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let id = (has_digit(seg) && !word_with_version(seg))
            || (seg.len() >= 8 && seg.bytes().all(|b| b.is_ascii_hexdigit()));
        out.push_str(if id { VAR } else { seg });
    }
    if query {
        out.push('?');
        out.push_str(VAR);
    }
    out.push_str(post);
}

/// The whitespace-separated words of a line: byte by byte for ASCII (the common case, and
/// much faster), Unicode whitespace otherwise.
fn words(line: &str) -> Words<'_> {
    Words {
        rest: line,
        ascii: line.is_ascii(),
    }
}

struct Words<'a> {
    rest: &'a str,
    ascii: bool,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
        let (start, end) = if self.ascii {
            let b = self.rest.as_bytes();
            let start = b.iter().position(|c| !space(c))?;
            let end = b[start..]
                .iter()
                .position(space)
                .map_or(b.len(), |e| start + e);
            (start, end)
        } else {
            let start = self.rest.find(|c: char| !c.is_whitespace())?;
            let end = self.rest[start..]
                .find(char::is_whitespace)
                .map_or(self.rest.len(), |e| start + e);
            (start, end)
        };
        let word = &self.rest[start..end];
        self.rest = &self.rest[end..];
        Some(word)
    }
}

/// Double-quoted strings with whitespace inside (free text) become one `<*>`.
fn unquote(line: &str) -> Cow<'_, str> {
    if !line.contains('"') {
        return Cow::Borrowed(line);
    }
    let b = line.as_bytes();
    let mut out = String::new();
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        let opens = b[i] == b'"'
            && (i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'=' | b'(' | b'[' | b':'));
        if opens {
            if let Some(rel) = line[i + 1..].find('"') {
                let close = i + 1 + rel;
                let inner = &line[i + 1..close];
                let after_ok = close + 1 == b.len()
                    || matches!(
                        b[close + 1],
                        b' ' | b'\t' | b',' | b';' | b')' | b']' | b'.' | b':'
                    );
                if after_ok && inner.contains(char::is_whitespace) && !is_request_line(inner) {
                    out.push_str(&line[last..i]);
                    out.push_str(VAR);
                    last = close + 1;
                    i = close + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    if last == 0 {
        Cow::Borrowed(line)
    } else {
        out.push_str(&line[last..]);
        Cow::Owned(out)
    }
}

/// Whether a masked token is a variable: `<*>` inside brackets or quotes only, or an empty
/// bracketed value such as `()` or `""`.
pub fn is_var(t: &str) -> bool {
    let b = t.as_bytes();
    let var = VAR.as_bytes();
    // Leading openers, then `<*>` (or not), then closers only.
    let mut i = 0;
    while i < b.len() && !b[i..].starts_with(var) && class(b[i]) & IS_OPEN != 0 {
        i += 1;
    }
    let masked = b[i..].starts_with(var);
    let rest = if masked { &b[i + var.len()..] } else { &b[i..] };
    rest.iter().all(|&c| class(c) & IS_CLOSE != 0)
        && (masked || (b.len() >= 2 && b.iter().any(|&c| class(c) & IS_BRACKET != 0)))
}

/// Leading opening brackets/quotes, the core, trailing closing punctuation.
pub fn split_core(tok: &str) -> (&str, &str, &str) {
    let b = tok.as_bytes();
    let mut i = 0;
    while i < b.len() && class(b[i]) & IS_OPEN != 0 {
        i += 1;
    }
    let mut j = b.len();
    while j > i && class(b[j - 1]) & IS_CLOSE != 0 {
        j -= 1;
    }
    (&tok[..i], &tok[i..j], &tok[j..])
}

fn mask_token(tok: &str, out: &mut String) {
    if !tok.contains('=') {
        return mask_compound(tok, out);
    }
    let mut rest = tok;
    while let Some(i) = rest.find([',', ';', '&']) {
        mask_piece(&rest[..i], out);
        out.push_str(&rest[i..i + 1]);
        rest = &rest[i + 1..];
    }
    mask_piece(rest, out);
}

/// One `key=value` piece: the key stays (it names what the value is: structure), the value is
/// judged alone. A key may follow a word and an opening bracket (`LOGIN(uid=0)`).
fn mask_piece(piece: &str, out: &mut String) {
    if let Some(eq) = piece.find('=') {
        let (head, value) = (&piece[..eq], &piece[eq + 1..]);
        let at = head.rfind(['(', '{', '[']).map_or(0, |i| i + 1);
        let (prefix, key) = head.split_at(at);
        if is_key(key) && !value.is_empty() && prefix_is_word(prefix) {
            out.push_str(prefix);
            out.push_str(key);
            out.push('=');
            // A value with structure of its own (`WorkSource{10057}`, `Foo{a/b}`, `Popup:1f`) is
            // data.
            let (_, core, post) = split_core(value);
            if core
                .bytes()
                .any(|b| matches!(b, b'{' | b'(' | b'[' | b'/' | b'@' | b':'))
            {
                out.push_str(VAR);
                // The brackets the value opened close with it; those of the prefix stay.
                let open = core
                    .bytes()
                    .filter(|b| matches!(b, b'{' | b'(' | b'['))
                    .count();
                let closed = core
                    .bytes()
                    .filter(|b| matches!(b, b'}' | b')' | b']'))
                    .count();
                let mut unclosed = open.saturating_sub(closed);
                let post = post.trim_start_matches(|c: char| {
                    let close = matches!(c, '}' | ')' | ']') && unclosed > 0;
                    if close {
                        unclosed -= 1;
                    }
                    close
                });
                return out.push_str(post);
            }
            return mask_simple(value, out);
        }
    }
    mask_compound(piece, out)
}

/// Whether what comes before a key is empty, or a word and its opening brackets (`LOGIN(`).
fn prefix_is_word(prefix: &str) -> bool {
    prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'(' | b'{' | b'['))
}

/// A token with structure inside (`setDataSource(166,`, `cancelNotification,index:-1`): its
/// parts between brackets and separators are masked one by one, so the words and keys stay and
/// only the values go; adjacent masked parts are one `<*>`. Anything else is one simple token.
fn mask_compound(tok: &str, out: &mut String) {
    let inner = |b: u8| matches!(b, b'(' | b')' | b'{' | b'}' | b'[' | b']' | b',' | b';');
    // Most tokens have no bracket or separator at all.
    if !tok.bytes().any(inner) {
        return mask_simple(tok, out);
    }
    let (pre, core, post) = split_core(tok);
    let quoted = matches!(tok.bytes().next(), Some(b'"' | b'\''));
    if quoted || core.contains("://") || !core.bytes().any(inner) {
        return mask_simple(tok, out);
    }
    let start = out.len();
    out.push_str(pre);
    let mut rest = core;
    loop {
        let cut = rest.bytes().position(inner).unwrap_or(rest.len());
        let part = &rest[..cut];
        if !part.is_empty() {
            let before = out.len();
            mask_core(part, out);
            // `<*>,<*>` and the like: one value.
            let masked_now = &out[before..];
            if masked_now == VAR {
                let prev = &out[start..before];
                let trimmed = prev.trim_end_matches([',', ';']);
                if trimmed.ends_with(VAR) && prev.len() - trimmed.len() <= 1 {
                    out.truncate(start + trimmed.len());
                }
            }
        }
        if cut == rest.len() {
            break;
        }
        out.push_str(&rest[cut..cut + 1]);
        rest = &rest[cut + 1..];
    }
    if out[start..].is_empty() {
        out.push_str(tok);
        return;
    }
    out.push_str(post);
}

fn mask_simple(tok: &str, out: &mut String) {
    // A quoted value: `'user_id'`, `"smtp_host",`.
    if let Some(q @ (b'"' | b'\'')) = tok.bytes().next() {
        if let Some(close) = tok.rfind(char::from(q)).filter(|&j| j > 1) {
            out.push_str(VAR);
            return out.push_str(&tok[close + 1..]);
        }
    }
    let (pre, core, post) = split_core(tok);
    out.push_str(pre);
    mask_core(core, out);
    out.push_str(post);
}

fn is_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The name in `name:value`: a word, or an identifier with a capital or an underscore in it
/// and at most one dot (`state.clipTopAmount`, `max_conn`). Lower-case dotted names are host
/// names (`db.prod:5432`) and longer dotted ones code locations (`a.b.Foo.bar:2014`): values
/// themselves.
fn label_name(head: &str) -> bool {
    alpha_word(head)
        || (is_key(head)
            && !has_digit(head)
            && head.bytes().filter(|&b| b == b'.').count() <= 1
            && head.bytes().any(|b| b.is_ascii_uppercase() || b == b'_')
            && !is_host(head))
}

fn alpha_word(s: &str) -> bool {
    s.len() >= 2 && s.bytes().all(|b| b.is_ascii_alphabetic())
}

fn has_digit(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
}

fn mask_core(core: &str, out: &mut String) {
    let b = core.as_bytes();
    if b.is_empty() {
        return;
    }
    // One pass for what the rules below ask about.
    let (mut digit, mut colon, mut other) = (false, None, false);
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            digit = true;
        } else if c == b':' {
            colon = colon.or(Some(i));
        } else if !c.is_ascii_alphabetic() {
            other = true;
        }
    }
    if !digit && colon.is_none() && !other {
        // A plain word: only a few words are values (`true`, `Jun`, `deadbeefcafe`).
        let value = match (b.len(), b[0]) {
            // Only these letters start a value or date word: most words are ruled out at once.
            (3..=5, b't' | b'f' | b'n' | b'T' | b'F' | b'N') => {
                VALUE_WORDS.contains(&core) || DATE_WORDS.contains(&core)
            }
            (3, b'A'..=b'Z') => DATE_WORDS.contains(&core),
            (8.., _) => b.iter().all(u8::is_ascii_hexdigit),
            _ => false,
        };
        return out.push_str(if value { VAR } else { core });
    }
    if VALUE_WORDS.contains(&core) || (colon.is_some() && core.contains("://")) {
        return out.push_str(VAR);
    }
    if let Some(i) = colon.filter(|&i| i > 0) {
        let (head, rest) = (&core[..i], &core[i + 1..]);
        if label_name(head) && !rest.is_empty() && (VALUE_WORDS.contains(&rest) || has_digit(rest))
        {
            out.push_str(head);
            out.push(':');
            return out.push_str(VAR);
        }
        let tail = core.rsplit(':').next().unwrap_or_default();
        if digit && alpha_word(tail) {
            out.push_str(VAR);
            out.push(':');
            return out.push_str(tail);
        }
    }
    let variable = if digit {
        !word_with_version(core)
    } else {
        is_path(core)
            || (core.contains('@') && core.contains('.'))
            || (b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit))
            || is_host(core)
    };
    out.push_str(if variable { VAR } else { core });
}

/// A word with a short version number at its end: `ssh2`, `http2`, `eth0`, `x86_64` is not.
fn word_with_version(core: &str) -> bool {
    let b = core.as_bytes();
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let body = &b[..b.len() - digits];
    match body.len() {
        0 => false,
        1 => body[0].is_ascii_alphabetic() && digits == 1,
        _ => {
            digits <= 2
                && body[0].is_ascii_alphabetic()
                && body[body.len() - 1].is_ascii_alphabetic()
                && body
                    .iter()
                    .all(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'-'))
        }
    }
}

fn is_path(core: &str) -> bool {
    let b = core.as_bytes();
    (b.len() > 1 && (b[0] == b'/' || core.starts_with("~/") || core.starts_with("./")))
        || core.starts_with("../")
        || core.starts_with("\\\\")
        || (b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

/// A DNS name: lower-case labels, the last a known top-level domain, or a two-letter country
/// code after at least two dots (so `com.example.Foo` and `java.vendor` are not hosts).
fn is_host(core: &str) -> bool {
    if !core.contains('.') {
        return false;
    }
    let mut parts = 0;
    let mut last = "";
    for part in core.split('.') {
        if part.is_empty()
            || !part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return false;
        }
        parts += 1;
        last = part;
    }
    TLDS.contains(&last)
        || (parts >= 3 && last.len() == 2 && last.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// The key a masked token names its value by (`uid=` in `uid=<*>`, `LOGIN(uid=` in
/// `LOGIN(uid=<*>)`, `index:` in `index:<*>`), or `""` for a token without one. Tokens with
/// different keys at one position are different events; tokens with the same key differ in
/// their value, which is data.
pub fn key_shape(tok: &str) -> &str {
    let b = tok.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'=' if i > 0 => return &tok[..=i],
            b':' if i > 0 && i + 1 < b.len() && label_name(split_core(&tok[..i]).1) => {
                return &tok[..=i]
            }
            b' ' => break,
            _ => {}
        }
    }
    ""
}

/// Whether a token reads as a word (letters, `_`, `.`, and `-` in a capitalised word): such tokens at the start of a
/// line name the event, and two different ones never join one template.
pub fn is_wordy(tok: &str) -> bool {
    let core = split_core(tok).1;
    !core.is_empty()
        && core
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'.' | b'-'))
        && core.bytes().any(|b| b.is_ascii_alphabetic())
        && !core.starts_with('-')
        && !core.contains("--")
        // Lower-case hyphenated names are host and service names (`web-a`), entities; a
        // capitalised one is a word (`Dquot-cache`).
        && (!core.contains('-') || core.bytes().any(|b| b.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(line: &str) -> String {
        let (mut out, mut spans, mut raw, mut text) = Default::default();
        mask_line(line, &mut out, &mut spans, &mut raw, &mut text);
        assert_eq!(
            spans
                .iter()
                .map(|&(a, b)| &out[a..b])
                .collect::<Vec<_>>()
                .join(" "),
            out
        );
        out
    }

    #[test]
    fn numbers_ids_and_addresses() {
        assert_eq!(
            masked("Received block blk_-1608999687919862906 of size 91178 from /10.250.10.6"),
            "Received block <*> of size <*> from <*>"
        );
        assert_eq!(
            masked("proxy.example.com:5070 open through proxy 10.0.0.1:8080 HTTPS"),
            "<*> open through proxy <*> HTTPS"
        );
        assert_eq!(
            masked("segfault at 0xdeadbeef ip 7f3a"),
            "segfault at <*> ip <*>"
        );
    }

    #[test]
    fn words_with_versions_stay() {
        assert_eq!(
            masked("port 22 ssh2 http2 eth0 u0"),
            "port <*> ssh2 http2 eth0 u0"
        );
        assert_eq!(masked("x86_64 build"), "<*> build");
    }

    #[test]
    fn labels_keep_their_name() {
        assert_eq!(masked("onExtend:1514038530000 14 0 4"), "onExtend:<*> <*>");
        assert_eq!(masked("isOverlap:false done"), "isOverlap:<*> done");
        assert_eq!(masked("10.1.1.1:50010:Got exception"), "<*>:Got exception");
    }

    #[test]
    fn key_values_mask_variable_values_only() {
        assert_eq!(
            masked("uid=0 euid=0 tty=NODEVssh ruser= rhost=a-1.example.net user=root"),
            "uid=<*> euid=<*> tty=NODEVssh ruser= rhost=<*> user=root"
        );
        assert_eq!(
            masked("ready=true,policy=3,wakefulness=1"),
            "ready=<*>,policy=<*>,wakefulness=<*>"
        );
        assert_eq!(
            masked("acquire lock=1, tag=\"View Lock\", ws=null"),
            "acquire lock=<*>, tag=<*>, ws=<*>"
        );
    }

    #[test]
    fn keys_and_names_inside_a_token_stay() {
        // The key names the value: structure. Only the value goes.
        assert_eq!(
            masked("cancelNotification,index:-1"),
            "cancelNotification,index:<*>"
        );
        assert_eq!(
            masked("state.clipTopAmount:180, i:0"),
            "state.clipTopAmount:<*>, <*>"
        );
        assert_eq!(
            masked("session opened for user root by LOGIN(uid=0)"),
            "session opened for user root by LOGIN(uid=<*>)"
        );
        assert_eq!(masked("by (uid=0)"), "by (uid=<*>)");
        // A call keeps its name; its arguments are one value.
        assert_eq!(
            masked("setDataSource(166, 0, 576460752303423487)"),
            "setDataSource(<*>, <*>"
        );
        // A value with structure of its own is data, whatever its words.
        assert_eq!(
            masked("getRecentTasks: topActivity=ComponentInfo{com.a/com.a.Splash}"),
            "getRecentTasks: topActivity=<*>"
        );
        assert_eq!(
            masked("ws=WorkSource{10057}, uid=1000 Surface(name=Popup:1f2e) x"),
            "ws=<*>, uid=<*> Surface(name=<*>) x"
        );
        // Host names and code locations before a colon are values.
        assert_eq!(
            masked("to db.prod:5432 at a.b.c.Foo.bar:2014"),
            "to <*> at <*>"
        );
    }

    #[test]
    fn request_lines_keep_their_method_and_path_words() {
        assert_eq!(
            masked("10.11.10.1 \"GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1\" status: 200 len: 1893 time: 0.2477829"),
            "<*> \"GET /v2/<*>/servers/detail <*> status: <*> len: <*> time: <*>"
        );
        assert_eq!(
            masked("\"POST /v2/54fadb412c4e40cdbaed9335e4c35a9e/os-server-external-events HTTP/1.1\" status: 200"),
            "\"POST /v2/<*>/os-server-external-events <*> status: <*>"
        );
        assert_eq!(
            masked("GET /index.php?id=5&x=y HTTP/1.0"),
            "GET /index.php?<*> <*>"
        );
        // Free text in quotes is still one value.
        assert_eq!(masked("said \"get me out\" twice"), "said <*> twice");
    }

    #[test]
    fn each_token_knows_the_words_it_came_from() {
        let (mut out, mut spans, mut raw, mut text) = Default::default();
        mask_line(
            "user bob failed 3 times in 12 ms from 10.0.0.1",
            &mut out,
            &mut spans,
            &mut raw,
            &mut text,
        );
        assert_eq!(out, "user bob failed <*> times in <*> from <*>");
        let values: Vec<&str> = raw.iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(
            values,
            ["user", "bob", "failed", "3", "times", "in", "12 ms", "from", "10.0.0.1"]
        );
    }

    #[test]
    fn key_shapes() {
        assert_eq!(key_shape("uid=<*>"), "uid=");
        assert_eq!(key_shape("LOGIN(uid=<*>)"), "LOGIN(uid=");
        assert_eq!(key_shape("index:<*>"), "index:");
        assert_eq!(key_shape("alice:"), "");
        assert_eq!(key_shape("root"), "");
        assert_eq!(key_shape("<*>"), "");
    }

    #[test]
    fn dates_units_and_runs_collapse() {
        assert_eq!(
            masked("connection from 1.2.3.4 (host-1.example.net) at Fri Jun 17 07:07:00 2005"),
            "connection from <*> at <*>"
        );
        assert_eq!(
            masked("h:80 close, 451 bytes sent, 18846 bytes (18.4 KB) received, lifetime <1 sec"),
            "<*> close, <*> sent, <*> received, lifetime <*>"
        );
        assert_eq!(
            masked("h:80 close, 0 bytes sent, 0 bytes received, lifetime 00:01"),
            "<*> close, <*> sent, <*> received, lifetime <*>"
        );
        assert_eq!(
            masked("connection from 1.2.3.4 () at x"),
            "connection from <*> at x"
        );
    }

    #[test]
    fn paths_urls_mails_hosts() {
        assert_eq!(
            masked(
                "cannot open /var/lib/x C:\\tmp\\y https://a.b/c bob@example.com db.example.org"
            ),
            "cannot open <*>"
        );
        assert_eq!(
            masked("com.android.server.Foo java.vendor"),
            "com.android.server.Foo java.vendor"
        );
    }

    #[test]
    fn placeholders_mask_to_themselves() {
        for line in ["a <*> b", "x=<*>, y", "(<*>) z", "<*>"] {
            let once = masked(line);
            assert_eq!(masked(&once), once, "{line}");
        }
    }

    #[test]
    fn token_count_is_capped() {
        let long = "word ".repeat(1_000);
        let (mut out, mut spans, mut raw, mut text) = Default::default();
        mask_line(&long, &mut out, &mut spans, &mut raw, &mut text);
        assert_eq!(spans.len(), MAX_TOKENS);
    }

    #[test]
    fn punctuation_only_tokens() {
        // No core left after the brackets and punctuation: an empty value, or just text.
        assert_eq!(masked("a () b ... c -- d"), "a <*> b ... c -- d");
    }

    #[test]
    fn quoted_values() {
        assert_eq!(masked("KeyError: 'locale'"), "KeyError: <*>");
        // A masked value takes its punctuation with it.
        assert_eq!(
            masked("missing key \"smtp_host\", giving up"),
            "missing key <*> giving up"
        );
        assert_eq!(masked("can't connect"), "can't connect");
    }

    #[test]
    fn wordy_tokens() {
        assert!(is_wordy("Failed"));
        assert!(is_wordy("autopurge.purgeInterval"));
        assert!(is_wordy("getTasks:"));
        assert!(!is_wordy("<*>"));
        assert!(is_wordy("Dquot-cache"));
        assert!(!is_wordy("--"));
        assert!(!is_wordy("web-1"));
        assert!(!is_wordy("web-a:"));
    }
}
