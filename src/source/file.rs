//! The file source: logs from a path or standard input, streamed.
//!
//! In: one of
//! - JSON Lines: one event (or one whole response page, or an array of events) per line;
//! - a saved Datadog search response `{"data":[...], "meta":...}`, or several concatenated
//!   (pretty-printed one after another);
//! - a JSON array of events.
//!
//! The format is told from the input, not from its first line alone: a first line that is a
//! whole JSON value means JSON Lines; otherwise up to 64 lines (1 MiB) are read both ways, and
//! the way that gets more logs out of them wins. When that is a close call, or the winner still
//! leaves more records unread than it reads, a `Notice` says the format is ambiguous.
//!
//! Out: `SourceItem::Event` for every usable event, in input order; `SourceItem::Skipped`
//! (unreadable) for a line that is not JSON or not UTF-8, or a record that is not a log, with
//! its true line number, and the run goes on. In JSON Lines a bad line costs exactly that line.
//! Inside a JSON document a syntax error cannot be resynchronised within that document: the
//! rest of it is reported as one unreadable record, and reading goes on at the next line that
//! starts a document (`{` or `[` in column one), so one broken page of several costs only itself.
//!
//! Memory: at most `--max-line-bytes` of one line, or of one event of a document, is held. A
//! longer JSON Lines line is cut to that length: the string it was cut in is closed there (the
//! message gets a `[cut]` mark), an element cut before its end is dropped, and a `Cut` item says
//! so. A longer event inside a document is skipped as unreadable (a document cannot be cut).
//!
//! The reading is blocking I/O and runs on a blocking thread; the channel provides backpressure.

use std::cell::Cell;
use std::fmt;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::rc::Rc;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{Cut, ItemSender, Skipped, SourceItem};
use crate::config::InputPath;
use crate::event::LogEvent;

/// The default `--max-line-bytes`: 256 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024;
/// What a message cut with its line ends with.
pub const CUT_MARK: &str = " [cut]";
/// How much of the input is sampled to tell JSON Lines from a JSON document.
const SNIFF_BYTES: usize = 1024 * 1024;
const SNIFF_LINES: usize = 64;

/// Read `input` to the end (or until the pipeline hangs up), sending items into `tx`.
/// No line or event longer than `max_line_bytes` is held in memory.
pub async fn run(input: InputPath, max_line_bytes: usize, tx: ItemSender) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let (origin, reader): (String, Box<dyn Read + Send>) = match &input {
            InputPath::Stdin => ("stdin".into(), Box::new(std::io::stdin())),
            InputPath::Path(p) => {
                let file = std::fs::File::open(p)
                    .map_err(|e| anyhow::anyhow!("cannot open --input {}: {e}", p.display()))?;
                (p.display().to_string(), Box::new(file))
            }
        };
        let mut emitter = Emitter::new(tx, origin, max_line_bytes);
        // A file's size is known, so the progress bar counts the bytes read toward it.
        emitter.tell_position = matches!(input, InputPath::Path(_));
        read_all(BufReader::with_capacity(256 * 1024, reader), &mut emitter)
            .map_err(|e| anyhow::anyhow!("reading {input}: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("the file reader stopped unexpectedly: {e}"))?
}

/// Where an event was found.
#[derive(Debug, Clone, Copy)]
enum At {
    Line(usize),
    Record(usize),
}

/// Sends items; remembers when the receiver is gone so reading can stop early. A trial emitter
/// (used to tell the format from a sample) only counts what it would send.
struct Emitter {
    tx: Option<ItemSender>,
    origin: String,
    hung_up: bool,
    max_line_bytes: usize,
    /// Bytes of the document read since the last record (document mode), reset per record.
    budget: Rc<Cell<u64>>,
    /// Logs and unreadable records counted instead of sent (a trial).
    trial: Trial,
    /// How often each record content without an id was seen so far (by a 64-bit hash).
    contents: std::collections::HashMap<u64, u32>,
    /// Send `SourceItem::Read` (how far into the input the records sent came from).
    tell_position: bool,
    /// Bytes of the input read past the format sniffing's replay ([`Counted`]).
    taken: Rc<Cell<u64>>,
    /// Records sent since the last `SourceItem::Read`.
    since_position: u32,
}

/// Records between two `SourceItem::Read`: often enough for a smooth bar, rare enough to cost
/// nothing beside the records themselves.
const POSITION_EVERY: u32 = 64;

/// A reader that counts the bytes taken from it, read or consumed from its buffer.
struct Counted<R> {
    inner: R,
    taken: Rc<Cell<u64>>,
}

impl<R> Counted<R> {
    fn add(&self, n: usize) {
        self.taken.set(self.taken.get().saturating_add(n as u64));
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.add(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.add(n);
    }
}

/// What reading a sample one way gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Trial {
    events: usize,
    bad: usize,
}

impl Emitter {
    fn new(tx: ItemSender, origin: String, max_line_bytes: usize) -> Self {
        Emitter::sending_to(Some(tx), origin, max_line_bytes)
    }

    /// An emitter that sends to `tx`, or (without) only counts what it would send.
    fn sending_to(tx: Option<ItemSender>, origin: String, max_line_bytes: usize) -> Self {
        Emitter {
            tx,
            origin,
            hung_up: false,
            max_line_bytes: max_line_bytes.max(1),
            budget: Rc::new(Cell::new(0)),
            trial: Trial::default(),
            contents: std::collections::HashMap::new(),
            tell_position: false,
            taken: Rc::new(Cell::new(0)),
            since_position: 0,
        }
    }

    /// Read a sample one way and count what came of it.
    fn trial(
        max_line_bytes: usize,
        read: impl FnOnce(&mut Emitter) -> std::io::Result<()>,
    ) -> Trial {
        let mut out = Emitter::sending_to(None, String::new(), max_line_bytes);
        // Reading from memory cannot fail; a failure would only count as nothing read.
        let _ = read(&mut out);
        out.trial
    }

    fn send(&mut self, item: SourceItem) {
        let Some(tx) = &self.tx else {
            match item {
                SourceItem::Event(_) => self.trial.events += 1,
                SourceItem::Skipped(_) => self.trial.bad += 1,
                _ => {}
            }
            return;
        };
        let record = matches!(item, SourceItem::Event(_) | SourceItem::Skipped(_));
        if !self.hung_up && tx.blocking_send(item).is_err() {
            self.hung_up = true;
        }
        if record && self.tell_position {
            self.since_position += 1;
            if self.since_position >= POSITION_EVERY {
                self.position();
            }
        }
    }

    /// Say how many bytes of the input the records sent so far came from.
    fn position(&mut self) {
        self.since_position = 0;
        if let (Some(tx), false) = (&self.tx, self.hung_up) {
            let bytes = self.taken.get();
            if tx.blocking_send(SourceItem::Read { bytes }).is_err() {
                self.hung_up = true;
            }
        }
    }

    /// Send one event; `at` is where it was (`Line(n)` in JSON Lines, else `Record(n)`), for
    /// messages. A record without an id gets one from its content. `cut`: its line was cut.
    fn event(&mut self, value: Value, at: At, cut: bool) {
        let fallback = if has_id(&value) {
            String::new()
        } else {
            self.content_id(&value)
        };
        match LogEvent::from_value(value, move || fallback) {
            Ok(event) => self.emit(event, cut),
            Err(e) => {
                // Named only when needed: formatting it for every log cost an allocation each.
                let location = match at {
                    At::Line(n) => format!("{}:{n}", self.origin),
                    At::Record(n) => format!("{} record {n}", self.origin),
                };
                self.skipped(location, e.to_string())
            }
        }
    }

    /// One log read, to the pipeline (`cut`: its line was longer than `--max-line-bytes`).
    fn emit(&mut self, mut event: LogEvent, cut: bool) {
        self.budget.set(0);
        if cut {
            event.message.push_str(CUT_MARK);
        }
        self.send(SourceItem::Event(event))
    }

    /// The id of a record that has none, from its content: the same log keeps its id when other
    /// lines are added before it, so a checkpointed source does not mistake a new log for one
    /// already processed. The n-th copy of identical content gets `#n` (n >= 2).
    fn content_id(&mut self, value: &Value) -> String {
        use sha2::{Digest, Sha256};
        // serde_json's map keeps keys sorted, so equal records print equally.
        let digest = Sha256::digest(value.to_string().as_bytes());
        let mut short = [0u8; 8];
        short.copy_from_slice(&digest[..8]);
        let hash = u64::from_be_bytes(short);
        let seen = self.contents.entry(hash).or_insert(0);
        *seen = seen.saturating_add(1);
        if *seen == 1 {
            format!("content:{hash:016x}")
        } else {
            format!("content:{hash:016x}#{seen}")
        }
    }

    /// An unreadable record: the run goes on, and exits 3.
    fn skipped(&mut self, location: String, reason: String) {
        self.send(SourceItem::Skipped(Skipped {
            location,
            reason,
            unreadable: true,
        }));
    }
}

/// How the input is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Documents,
}

fn read_all<R: BufRead>(mut reader: R, out: &mut Emitter) -> std::io::Result<()> {
    let (sample, format, notice) = sniff(&mut reader, out.max_line_bytes)?;
    if let Some(notice) = notice {
        out.send(SourceItem::Notice(format!("{}: {notice}", out.origin)));
    }
    // Counted from here: the sample is read again first, so each byte is counted once.
    let replay = Counted {
        inner: Cursor::new(sample).chain(reader),
        taken: out.taken.clone(),
    };
    match format {
        Format::JsonLines => read_lines(replay, out)?,
        Format::Documents => read_documents(replay, out)?,
    }
    if out.tell_position {
        out.position();
    }
    Ok(())
}

/// How a raw line read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    Newline,
    Eof,
    /// The line goes on past the bytes allowed.
    Cut,
}

/// Append one line (newline included) to `buf`, keeping at most `room` bytes of it. The rest of
/// a longer line is consumed and only counted with `skip_rest`, else left to be read later.
/// Returns how the line ended and its length (its full length with `skip_rest`).
fn read_line_capped<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    room: usize,
    skip_rest: bool,
) -> std::io::Result<(LineEnd, u64)> {
    let mut kept = 0usize;
    let mut length = 0u64;
    let mut cut = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            let end = if cut { LineEnd::Cut } else { LineEnd::Eof };
            return Ok((end, length));
        }
        let (take, newline) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let keep = take.min(room - kept);
        buf.extend_from_slice(&available[..keep]);
        kept += keep;
        if keep < take {
            cut = true;
        }
        length += take as u64;
        if cut && !skip_rest {
            // Leave the rest where it is: the caller reads it later.
            reader.consume(keep);
            return Ok((LineEnd::Cut, length - (take - keep) as u64));
        }
        reader.consume(take);
        if newline {
            let end = if cut { LineEnd::Cut } else { LineEnd::Newline };
            return Ok((end, length));
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &line[start..end.max(start)]
}

fn is_whole_value(line: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(line).is_ok()
}

/// Look at the start of the input to tell its format. Returns the bytes read (to be read again,
/// without a byte-order mark), the format, and a notice when the format was a guess.
///
/// A whole JSON value on the first line means JSON Lines at once (so a live stream is not held
/// back). Otherwise up to 64 lines (1 MiB) are read both ways, and the way that gets more logs
/// out of them wins (fewer unreadable records breaks a tie; JSON Lines breaks a full tie).
fn sniff<R: BufRead>(
    reader: &mut R,
    max_line_bytes: usize,
) -> std::io::Result<(Vec<u8>, Format, Option<String>)> {
    let mut sample = Vec::new();
    let mut lines = 0usize;
    let mut first_seen = false;
    let mut at_eof = false;
    loop {
        let start = sample.len();
        let room = SNIFF_BYTES.saturating_sub(start);
        let (end, _) = read_line_capped(reader, &mut sample, room, false)?;
        if start == 0 && sample.starts_with(b"\xEF\xBB\xBF") {
            // A UTF-8 byte-order mark is not part of the first record.
            sample.drain(..3);
        }
        let line = trim(&sample[start.min(sample.len())..]);
        if end == LineEnd::Cut {
            if !first_seen {
                // One very long first line: a compact page or array is streamed as a document;
                // anything else is a JSON Lines line (cut if it is too long).
                let compact = line.starts_with(b"[") || line.starts_with(b"{\"data\"");
                let format = if compact {
                    Format::Documents
                } else {
                    Format::JsonLines
                };
                return Ok((sample, format, None));
            }
            break;
        }
        at_eof = end == LineEnd::Eof;
        if !line.is_empty() {
            if !first_seen && is_whole_value(line) {
                return Ok((sample, Format::JsonLines, None));
            }
            first_seen = true;
        }
        lines += 1;
        if at_eof || lines >= SNIFF_LINES {
            break;
        }
    }
    if !first_seen {
        return Ok((sample, Format::JsonLines, None));
    }
    let whole_lines = if at_eof {
        sample.len()
    } else {
        sample
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
    };
    let as_lines = Emitter::trial(max_line_bytes, |out| {
        read_lines(Cursor::new(&sample[..whole_lines]), out)
    });
    let as_documents = Emitter::trial(max_line_bytes, |out| {
        read_documents_of(Cursor::new(&sample[..]), out, !at_eof)
    });
    let rank = |t: Trial| (t.events, std::cmp::Reverse(t.bad));
    let (format, chosen, other) = if rank(as_documents) > rank(as_lines) {
        (Format::Documents, as_documents, as_lines)
    } else {
        (Format::JsonLines, as_lines, as_documents)
    };
    // Ambiguous: the chosen reading leaves more unread than it reads, or the other one reads
    // a different set of logs almost as large.
    let close_call = other.events != chosen.events && other.events * 2 >= chosen.events;
    let notice = (chosen.bad > 0 && (chosen.bad > chosen.events || close_call)).then(|| {
        format!(
            "the format is ambiguous: read line by line, the first {lines} lines give {} logs and \
             {} unreadable lines; read as JSON documents, {} logs and {} unreadable records; \
             reading it as {}",
            as_lines.events,
            as_lines.bad,
            as_documents.events,
            as_documents.bad,
            match format {
                Format::JsonLines => "JSON Lines",
                Format::Documents => "JSON documents",
            }
        )
    });
    Ok((sample, format, notice))
}

/// JSON Lines: each line on its own; a bad line costs exactly that line.
fn read_lines<R: BufRead>(mut reader: R, out: &mut Emitter) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        if out.hung_up {
            return Ok(());
        }
        line.clear();
        let (end, length) = read_line_capped(&mut reader, &mut line, out.max_line_bytes, true)?;
        if end == LineEnd::Eof && line.is_empty() {
            return Ok(());
        }
        number += 1;
        let cut = (end == LineEnd::Cut).then_some(length);
        read_line(&line, number, cut, out);
        if end == LineEnd::Eof {
            return Ok(());
        }
    }
}

/// One line of JSON Lines: an event, a whole response page, or an array of events.
/// `cut`: the line's full length, when it was longer than `--max-line-bytes`.
fn read_line(line: &[u8], number: usize, cut: Option<u64>, out: &mut Emitter) {
    let trimmed = trim(line);
    if trimmed.is_empty() && cut.is_none() {
        return;
    }
    // Named only when needed (a cut or unreadable line), not for every line.
    let location = |origin: &str| format!("{origin}:{number}");
    let value = match cut {
        // A trial reading only tells the format: a cut line is not evidence of either.
        Some(_) if out.tx.is_none() => {
            out.trial.bad += 1;
            return;
        }
        Some(length) => {
            out.send(SourceItem::Cut(Cut {
                location: location(&out.origin),
                length,
                kept: line.len() as u64,
            }));
            match close_cut_json(line).and_then(|v| serde_json::from_slice::<Value>(&v).ok()) {
                Some(v) => v,
                None => {
                    return out.skipped(
                        location(&out.origin),
                        format!(
                            "line of {length} bytes is longer than --max-line-bytes ({}) and its \
                             first {} bytes hold no complete record",
                            out.max_line_bytes, out.max_line_bytes
                        ),
                    )
                }
            }
        }
        None => {
            // Checked once here, so the parser need not check each string again.
            let Ok(text) = std::str::from_utf8(trimmed) else {
                return out.skipped(location(&out.origin), "line is not valid UTF-8".into());
            };
            // Most lines are one plain log: read without a tree of the whole record. The rest
            // (pages, arrays, logs without an id, odd fields) are read the general way.
            if let Some(event) = LogEvent::from_json_text(text) {
                return out.emit(event, false);
            }
            match serde_json::from_str::<Value>(text) {
                Ok(v) => v,
                Err(e) => {
                    return out.skipped(
                        location(&out.origin),
                        format!("malformed JSON ({})", strip_position(&e)),
                    )
                }
            }
        }
    };
    let cut = cut.is_some();
    match value {
        Value::Object(mut map) if matches!(map.get("data"), Some(Value::Array(_))) => {
            if let Some(Value::Array(items)) = map.remove("data") {
                for v in items {
                    out.event(v, At::Line(number), cut);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                out.event(v, At::Line(number), cut);
            }
        }
        v => out.event(v, At::Line(number), cut),
    }
}

/// Close a JSON text cut short so the records it holds can still be read: a value string cut
/// in the middle is closed there, a key, number or literal cut in the middle is dropped with
/// the element it began, and every open object and array is closed. `None` when the text does
/// not start with an object or an array, or is not UTF-8 before the cut. The result is
/// valid JSON whenever the text before the cut was a prefix of valid JSON.
pub fn close_cut_json(prefix: &[u8]) -> Option<Vec<u8>> {
    // A character cut in half by the cut is dropped.
    let prefix = match std::str::from_utf8(prefix) {
        Ok(_) => prefix,
        Err(e) if e.error_len().is_none() => &prefix[..e.valid_up_to()],
        Err(_) => return None,
    };
    let start = prefix.iter().position(|b| !b.is_ascii_whitespace())?;
    if !matches!(prefix[start], b'{' | b'[') {
        return None;
    }
    let hex4 = |at: usize| -> Option<u32> {
        let digits = prefix.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    // The closing bytes of the open containers, innermost last.
    let mut stack: Vec<u8> = Vec::new();
    let mut expect_key = false;
    // Inside a string: whether it is a key, and where an escape cut short begins.
    let mut in_string: Option<bool> = None;
    let mut cut_escape: Option<usize> = None;
    // The latest place the text can end: its length, and how many containers are open there.
    let mut safe: Option<(usize, usize)> = None;
    let mut i = start;
    while i < prefix.len() {
        let b = prefix[i];
        if let Some(is_key) = in_string {
            match b {
                b'\\' => {
                    let len = match prefix.get(i + 1) {
                        Some(b'u') => match hex4(i + 2) {
                            // A surrogate pair is one character: both halves or neither.
                            Some(0xD800..=0xDBFF) => 12,
                            _ => 6,
                        },
                        _ => 2,
                    };
                    if i + len > prefix.len() {
                        cut_escape = Some(i);
                        break;
                    }
                    i += len;
                    continue;
                }
                b'"' => {
                    in_string = None;
                    if !is_key {
                        safe = Some((i + 1, stack.len()));
                    }
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = Some(expect_key && stack.last() == Some(&b'}')),
            b'{' | b'[' => {
                stack.push(if b == b'{' { b'}' } else { b']' });
                expect_key = b == b'{';
                safe = Some((i + 1, stack.len()));
            }
            b'}' | b']' => {
                if stack.pop() != Some(b) {
                    return None;
                }
                expect_key = false;
                if stack.is_empty() {
                    // The whole value fits before the cut.
                    return Some(prefix[..=i].to_vec());
                }
                safe = Some((i + 1, stack.len()));
            }
            b':' => expect_key = false,
            b',' => {
                safe = Some((i, stack.len()));
                expect_key = stack.last() == Some(&b'}');
            }
            _ => {}
        }
        i += 1;
    }
    let (len, depth, close_string) = match in_string {
        Some(false) => (cut_escape.unwrap_or(prefix.len()), stack.len(), true),
        _ => {
            let (len, depth) = safe?;
            (len, depth, false)
        }
    };
    let mut out = prefix[..len].to_vec();
    if close_string {
        out.push(b'"');
    }
    out.extend(stack[..depth].iter().rev());
    Some(out)
}

/// The reader a document is parsed from: counts lines, knows whether it stands at the start of
/// a line, and refuses to deliver more than `max` bytes of one record.
struct Tracked<R> {
    inner: R,
    /// The line of the next byte, 1-based.
    line: usize,
    at_line_start: bool,
    budget: Rc<Cell<u64>>,
    max: u64,
    too_long: bool,
    /// Bytes delivered so far, and the last of them (read while a parser holds the reader).
    delivered: Rc<Cell<u64>>,
    last: Rc<Cell<u8>>,
}

impl<R: BufRead> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.budget.get() > self.max {
            self.too_long = true;
            return Err(std::io::Error::other(
                "a record longer than --max-line-bytes",
            ));
        }
        let available = self.inner.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.inner.consume(n);
        if n > 0 {
            self.line += buf[..n].iter().filter(|&&b| b == b'\n').count();
            self.at_line_start = buf[n - 1] == b'\n';
            self.last.set(buf[n - 1]);
            self.delivered.set(self.delivered.get() + n as u64);
            self.budget.set(self.budget.get() + n as u64);
        }
        Ok(n)
    }
}

impl<R: BufRead> Tracked<R> {
    /// Consume the rest of the current line without keeping it.
    fn skip_line(&mut self) -> std::io::Result<()> {
        loop {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                return Ok(());
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.inner.consume(i + 1);
                    self.line += 1;
                    self.at_line_start = true;
                    return Ok(());
                }
                None => {
                    let n = available.len();
                    self.inner.consume(n);
                }
            }
        }
    }

    /// Skip to the next line that starts a document (`{` or `[` in column one); `false` at the
    /// end of the input.
    fn next_document(&mut self) -> std::io::Result<bool> {
        if !self.at_line_start {
            self.skip_line()?;
        }
        loop {
            let available = self.inner.fill_buf()?;
            match available.first() {
                None => return Ok(false),
                Some(b'{' | b'[') => return Ok(true),
                Some(_) => self.skip_line()?,
            }
        }
    }
}

/// A stream of JSON documents (arrays, pages, or events), parsed element by element. After a
/// syntax error, reading goes on at the next line that starts a document.
fn read_documents<R: BufRead>(reader: R, out: &mut Emitter) -> std::io::Result<()> {
    read_documents_of(reader, out, false)
}

/// `read_documents`; `sample`: the input is the start of a longer one, so running out of it in
/// the middle of a document is not an error.
fn read_documents_of<R: BufRead>(
    reader: R,
    out: &mut Emitter,
    sample: bool,
) -> std::io::Result<()> {
    let mut src = Tracked {
        inner: reader,
        line: 1,
        at_line_start: true,
        budget: out.budget.clone(),
        max: out.max_line_bytes as u64,
        too_long: false,
        delivered: Rc::new(Cell::new(0)),
        last: Rc::new(Cell::new(0)),
    };
    let (delivered, last) = (src.delivered.clone(), src.last.clone());
    let mut index = 0usize;
    // After an error, reading goes on inside what is left of a broken document: the closing
    // brackets and commas that follow the documents read there belong to it.
    let mut resynced = false;
    let mut doc_start = 0u64;
    loop {
        let start_line = src.line;
        out.budget.set(0);
        let mut de = serde_json::Deserializer::from_reader(&mut src);
        let result = loop {
            if out.hung_up || de.end().is_ok() {
                break Ok(());
            }
            // `end` has read the document's first byte.
            doc_start = delivered.get();
            out.budget.set(0);
            let seed = Document {
                out: &mut *out,
                index: &mut index,
            };
            if let Err(e) = seed.deserialize(&mut de) {
                break Err(e);
            }
        };
        drop(de);
        let Err(e) = result else { return Ok(()) };
        if sample && e.is_eof() {
            return Ok(());
        }
        let too_long = std::mem::take(&mut src.too_long);
        if sample && too_long {
            // A record too long to read is no evidence of the format.
            return Ok(());
        }
        if e.is_io() && !too_long {
            return Err(std::io::Error::other(e));
        }
        let stray_closer = e.is_syntax()
            && delivered.get() == doc_start
            && matches!(last.get(), b']' | b'}' | b',');
        if resynced && stray_closer {
            if !src.next_document()? || out.hung_up {
                return Ok(());
            }
            continue;
        }
        resynced = true;
        let (line, column) = if too_long {
            (src.line, 0)
        } else {
            (start_line + e.line().max(1) - 1, e.column())
        };
        let location = if column > 0 {
            format!("{}:{line}:{column}", out.origin)
        } else {
            format!("{}:{line}", out.origin)
        };
        let what = if too_long {
            format!(
                "a record longer than --max-line-bytes ({} bytes)",
                out.max_line_bytes
            )
        } else {
            format!("malformed JSON ({})", strip_position(&e))
        };
        let more = src.next_document()?;
        let reason = if more {
            format!(
                "{what}; the rest of this document could not be read (lines {line} to {}); reading goes on at line {}",
                src.line - 1,
                src.line
            )
        } else {
            format!("{what}; the rest of this input could not be read")
        };
        out.skipped(location, reason);
        if !more || out.hung_up {
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
                .event(Value::Object(fields), At::Record(*self.index), false);
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
            self.out.event(value, At::Record(*self.index), false);
            if self.out.hung_up {
                // Drain without keeping anything, so the deserializer stays consistent.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Whether a record carries an id `LogEvent::from_value` uses.
fn has_id(value: &Value) -> bool {
    match value.get("id") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
