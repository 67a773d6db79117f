//! What a ticket says: the summary, description, labels and recurrence comment that the Jira sink
//! sends for one problem, in both dialects: ADF for Jira Cloud (REST v3) and wiki markup for
//! Jira Server / Data Center (REST v2).
//!
//! Everything here is pure: it takes [`ProblemFacts`] and returns text and JSON that Jira will
//! accept as is. The limits that Jira enforces with a 400 are enforced here up front:
//!
//! - the summary is one line, never empty, at most 255 characters (counted in UTF-16 units, as
//!   Jira's Java side counts them, which is never more than the number of `char`s);
//! - every label has no whitespace and at most 255 characters; the fingerprint label is
//!   [`fingerprint_label`], the one the sink searches for;
//! - a description or comment stays well under Jira's 32,767-character limit, whatever the size
//!   of the sample message: the sample is capped at about 8,000 characters (2,000 in a
//!   comment) with a [`TRUNCATED`] marker, every other field is capped too, and if the result is
//!   still too large the caps shrink until it fits;
//! - the ADF passes [`crate::jira::adf::validate`]; the wiki markup never lets a sample close its
//!   own `{code}` block.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::adf::{Doc, Inline};

/// Everything known about one problem when its ticket is written.
#[derive(Debug, Clone)]
pub struct ProblemFacts {
    /// The problem's fingerprint, e.g. `"3f9a0c1b2d4e5f60"`.
    pub fingerprint: String,
    pub service: Option<String>,
    /// From the analyzer, one line (re-truncated here when needed).
    pub title: String,
    /// The analyzer's short summary.
    pub summary: String,
    /// `"database"`, ...
    pub category: String,
    /// `"low"` | `"medium"` | `"high"` | `"critical"`.
    pub severity: String,
    /// The normalized message template.
    pub template: String,
    /// One full raw message (may be multi-line, may be huge).
    pub sample_message: String,
    pub sample_log_id: String,
    /// A link to the sample log in Datadog's web UI.
    pub log_link: Option<String>,
    /// Distinct hosts, already capped by the caller.
    pub hosts: Vec<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub occurrences: u64,
    /// Key of a Done ticket this problem recurred from.
    pub recurrence_of: Option<String>,
    /// A recurrence comment: when the ticket was last told about this problem (its last
    /// comment, or the end-of-run update of the run that created it); `occurrences` counts only
    /// what came after.
    pub counted_since: Option<DateTime<Utc>>,
    /// Fingerprints of templates merged into this problem's: the ticket carries their labels
    /// too, so a search by any of them finds it.
    pub aliases: Vec<String>,
}

/// The ticket the Jira sink will send. Its description is rendered when asked for, in the one
/// format the Jira in use takes ([`TicketDraft::description`]).
#[derive(Debug, Clone)]
pub struct TicketDraft<'a> {
    /// One line, at most 255 characters, never empty.
    pub summary: String,
    /// Always `"triage"` and [`fingerprint_label`]; no whitespace, at most 255 characters each,
    /// no duplicates.
    pub labels: Vec<String>,
    /// The analyzer's severity, trimmed and lower-cased.
    pub severity: String,
    facts: &'a ProblemFacts,
    /// The analyzer's title differs from the summary line: the description shows it.
    title_cut: bool,
}

/// A description, in the format of the Jira it goes to; serializes as Jira takes it (an ADF
/// document object, or a wiki-markup string).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Description {
    /// Jira Cloud, REST v3.
    Adf(Doc),
    /// Jira Server / Data Center, REST v2.
    Wiki(String),
}

impl TicketDraft<'_> {
    /// The description as an ADF document (Jira Cloud, REST v3).
    pub fn description_doc(&self) -> Doc {
        fit(Caps::new(SAMPLE_MAX), |caps| {
            let doc = description_doc(&Prepared::new(self.facts, caps), self.title_cut);
            let len = json_len(&doc);
            (doc, len)
        })
    }

    /// [`TicketDraft::description_doc`] as JSON.
    pub fn description_adf(&self) -> Value {
        self.description_doc().to_value()
    }

    /// The description in wiki markup (Jira Server / Data Center, REST v2).
    pub fn description_wiki(&self) -> String {
        fit(Caps::new(SAMPLE_MAX), |caps| {
            let w = description_wiki(&Prepared::new(self.facts, caps), self.title_cut);
            let len = w.len();
            (w, len)
        })
    }

    /// The description in wiki markup when `wiki`, else ADF.
    pub fn description(&self, wiki: bool) -> Description {
        match wiki {
            true => Description::Wiki(self.description_wiki()),
            false => Description::Adf(self.description_doc()),
        }
    }
}

/// The length of `value` as JSON, in bytes, without building the text.
fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The label that marks every ticket of triage.
pub const TRIAGE_LABEL: &str = "triage";

/// Appended (on its own line) to a sample message that was cut.
pub const TRUNCATED: &str = "… (truncated)";

/// Jira's limit on a summary, in characters.
pub const SUMMARY_MAX: usize = 255;
/// Jira's limit on a label, in characters.
pub const LABEL_MAX: usize = 255;
/// Our ceiling for a serialized description or comment, in bytes (Jira's limit is 32,767
/// characters; a byte count is never below the character count).
pub const BODY_BUDGET: usize = 30_000;

const SAMPLE_MAX: usize = 8_000;
const COMMENT_SAMPLE_MAX: usize = 2_000;
const TEMPLATE_MAX: usize = 2_000;
const TEXT_MAX: usize = 2_000;
const MIN_CAP: usize = 200;
const FIELD_MAX: usize = 200;
const HOST_MAX: usize = 100;
const HOSTS_SHOWN: usize = 10;
const LINK_MAX: usize = 4_000;

/// The ticket for a new problem: summary, labels, severity, and its description to render.
pub fn ticket(facts: &ProblemFacts) -> TicketDraft<'_> {
    let summary = summary_line(facts);
    let title = one_line(&facts.title);
    let title_cut = !title.is_empty() && title != summary;
    TicketDraft {
        summary,
        labels: labels(facts),
        severity: facts.severity.trim().to_lowercase(),
        facts,
        title_cut,
    }
}

/// A ticket's summary line and labels alone (what the report lists for every problem), without
/// the cost of rendering its description.
pub fn summary_and_labels(facts: &ProblemFacts) -> (String, Vec<String>) {
    (summary_line(facts), labels(facts))
}

/// The comment added to an existing ticket when its problem shows up again: the occurrences in
/// this run, first and last seen, hosts, and a (shorter) sample. ADF, for Jira Cloud.
pub fn recurrence_comment_adf(facts: &ProblemFacts) -> Value {
    fit(Caps::new(COMMENT_SAMPLE_MAX), |caps| {
        let doc = comment_doc(&Prepared::new(facts, caps));
        let len = json_len(&doc);
        (doc.to_value(), len)
    })
}

/// [`recurrence_comment_adf`] in wiki markup, for Jira Server / Data Center.
pub fn recurrence_comment_wiki(facts: &ProblemFacts) -> String {
    fit(Caps::new(COMMENT_SAMPLE_MAX), |caps| {
        let w = comment_wiki(&Prepared::new(facts, caps));
        let len = w.len();
        (w, len)
    })
}

/// The comment on a ticket whose problem turned out to be the same as an older ticket's (two
/// learned templates merged): further occurrences are counted on the survivor.
pub fn merged_comment_text(survivor: &str, label: &str) -> String {
    format!(
        "triage now groups this problem with {survivor}, which carries this ticket's label {label} \
         too: further occurrences are counted there, and no ticket is filed here again."
    )
}

/// Turns arbitrary text into a valid Jira label: control characters dropped, the ends trimmed,
/// every inner whitespace character replaced by `'_'`, and at most 255 characters. A label cut
/// to fit ends in `-` and a 16-hex-digit hash of the whole text, so two long labels that share
/// a prefix stay distinct. Empty (or all-whitespace) text gives an empty string, which is not a
/// valid label: callers drop it.
pub fn sanitize_label(s: &str) -> String {
    let cleaned: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    if utf16_len(&cleaned) <= LABEL_MAX {
        return cleaned;
    }
    let hash = format!("-{:016x}", fnv1a(cleaned.as_bytes()));
    let mut out = truncate_utf16(&cleaned, LABEL_MAX - hash.len()).to_string();
    out.push_str(&hash);
    out
}

/// The label that keys a problem's ticket: `triage-<fingerprint>`, sanitized. The Jira sink
/// must search for exactly this label.
pub fn fingerprint_label(fingerprint: &str) -> String {
    sanitize_label(&format!("{TRIAGE_LABEL}-{}", fingerprint.trim()))
}

fn labels(facts: &ProblemFacts) -> Vec<String> {
    let mut out = vec![
        TRIAGE_LABEL.to_string(),
        fingerprint_label(&facts.fingerprint),
    ];
    out.extend(facts.aliases.iter().map(|a| fingerprint_label(a)));
    if let Some(service) = facts.service.as_deref() {
        let label = sanitize_label(&format!("service-{}", service.trim()));
        if label != "service-" {
            out.push(label);
        }
    }
    let mut unique: Vec<String> = Vec::with_capacity(out.len());
    for label in out {
        if !label.is_empty() && !unique.contains(&label) {
            unique.push(label);
        }
    }
    unique
}

/// The one-line summary: the title, else the analyzer summary, the template, the first line of
/// the sample, or a generic line; cut to 255 characters with an ellipsis.
fn summary_line(facts: &ProblemFacts) -> String {
    let first_line = |s: &str| {
        s.lines()
            .map(one_line)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
    };
    let mut line = one_line(&facts.title);
    if line.is_empty() {
        line = first_line(&facts.summary);
    }
    if line.is_empty() {
        line = one_line(&facts.template);
    }
    if line.is_empty() {
        line = first_line(&facts.sample_message);
    }
    if line.is_empty() {
        line = match facts.service.as_deref().map(one_line) {
            Some(service) if !service.is_empty() => format!("Error in {service}"),
            _ => "Error".to_string(),
        };
        let fp = one_line(&facts.fingerprint);
        if !fp.is_empty() {
            line = format!("{line} ({fp})");
        }
    }
    if utf16_len(&line) <= SUMMARY_MAX {
        return line;
    }
    let mut cut = truncate_utf16(&line, SUMMARY_MAX - 1)
        .trim_end()
        .to_string();
    cut.push('…');
    cut
}

// ---------------------------------------------------------------------------------------------
// Fitting into the size limit

/// Caps on the variable-size parts, in chars.
#[derive(Debug, Clone, Copy)]
struct Caps {
    sample: usize,
    template: usize,
    text: usize,
}

impl Caps {
    fn new(sample: usize) -> Self {
        Caps {
            sample,
            template: TEMPLATE_MAX,
            text: TEXT_MAX,
        }
    }

    fn at_minimum(&self) -> bool {
        self.sample <= MIN_CAP && self.template <= MIN_CAP && self.text <= MIN_CAP
    }

    fn shrink(self) -> Self {
        let half = |n: usize| (n / 2).max(MIN_CAP);
        Caps {
            sample: half(self.sample),
            template: half(self.template),
            text: half(self.text),
        }
    }
}

/// Renders with shrinking caps until the size is under [`BODY_BUDGET`]. At the minimum caps
/// every part is small enough that the result always fits.
fn fit<T>(mut caps: Caps, render: impl Fn(Caps) -> (T, usize)) -> T {
    loop {
        let (out, len) = render(caps);
        if len < BODY_BUDGET || caps.at_minimum() {
            return out;
        }
        caps = caps.shrink();
    }
}

/// The facts, cleaned and capped, ready to render.
struct Prepared {
    fingerprint: String,
    fp_label: String,
    service: Option<String>,
    title: String,
    summary: String,
    category: String,
    severity: String,
    template: String,
    sample: String,
    sample_log_id: String,
    log_link: Option<String>,
    hosts: Option<String>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    occurrences: u64,
    recurrence_of: Option<String>,
    counted_since: Option<String>,
}

impl Prepared {
    fn new(f: &ProblemFacts, caps: Caps) -> Self {
        let field = |s: &str| cap(&one_line(s), FIELD_MAX);
        let opt_field = |s: Option<&str>| s.map(field).filter(|s| !s.is_empty());
        let hosts: Vec<String> = f
            .hosts
            .iter()
            .map(|h| cap(&one_line(h), HOST_MAX))
            .filter(|h| !h.is_empty())
            .collect();
        let hosts = if hosts.is_empty() {
            None
        } else {
            let mut line = hosts
                .iter()
                .take(HOSTS_SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if hosts.len() > HOSTS_SHOWN {
                line.push_str(&format!(" (+{} more)", hosts.len() - HOSTS_SHOWN));
            }
            Some(line)
        };
        let log_link = f
            .log_link
            .as_deref()
            .map(|l| {
                l.trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect::<String>()
            })
            .filter(|l| !l.is_empty() && l.len() <= LINK_MAX);
        Prepared {
            fingerprint: field(&f.fingerprint),
            fp_label: fingerprint_label(&f.fingerprint),
            service: opt_field(f.service.as_deref()),
            title: cap(&one_line(&f.title), caps.text.min(1_000)),
            summary: cap(clean(&f.summary).trim(), caps.text),
            category: field(&f.category),
            severity: field(&f.severity),
            template: cut_block(clean(&f.template).trim_matches('\n'), caps.template),
            sample: cut_block(clean(&f.sample_message).trim_end(), caps.sample),
            sample_log_id: field(&f.sample_log_id),
            log_link,
            hosts,
            first_seen: f.first_seen.map(rfc3339),
            last_seen: f.last_seen.map(rfc3339),
            occurrences: f.occurrences,
            recurrence_of: opt_field(f.recurrence_of.as_deref()),
            counted_since: f.counted_since.map(rfc3339),
        }
    }

    /// The first line of a recurrence comment: how many, counted since when.
    fn seen_again(&self) -> String {
        let n = plural(self.occurrences, "occurrence");
        match &self.counted_since {
            Some(t) => format!("Seen again: {n} since the last update ({t})."),
            None => format!("Seen again: {n} since the last update."),
        }
    }

    /// The facts list as (name, value, monospace) rows, shared by both dialects. The ticket
    /// (`for_ticket`) lists severity, category, occurrences and the fingerprint; a comment
    /// states its count in its first line and lists the recurrence (the ticket says it in a
    /// paragraph of its own).
    fn fact_rows(&self, for_ticket: bool) -> Vec<(&'static str, String, bool)> {
        let mut rows = Vec::new();
        if let Some(service) = &self.service {
            rows.push(("Service", service.clone(), false));
        }
        if for_ticket {
            if !self.severity.is_empty() {
                rows.push(("Severity", self.severity.clone(), false));
            }
            if !self.category.is_empty() {
                rows.push(("Category", self.category.clone(), false));
            }
            rows.push(("Occurrences", self.occurrences.to_string(), false));
        }
        if let Some(t) = &self.first_seen {
            rows.push(("First seen", t.clone(), false));
        }
        if let Some(t) = &self.last_seen {
            rows.push(("Last seen", t.clone(), false));
        }
        if let Some(hosts) = &self.hosts {
            rows.push(("Hosts", hosts.clone(), false));
        }
        if !self.sample_log_id.is_empty() {
            rows.push(("Sample log", self.sample_log_id.clone(), true));
        }
        if for_ticket && !self.fingerprint.is_empty() {
            rows.push(("Fingerprint", self.fingerprint.clone(), true));
        }
        if !for_ticket {
            if let Some(key) = &self.recurrence_of {
                rows.push(("Recurrence of", key.clone(), false));
            }
        }
        rows
    }

    fn footer(&self) -> String {
        format!(
            "This ticket is maintained by triage and keyed by the label {}: keep that label, \
             and later occurrences of this problem are added here.",
            self.fp_label
        )
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

// ---------------------------------------------------------------------------------------------
// ADF

fn fact_items(rows: Vec<(&'static str, String, bool)>) -> Vec<Vec<Inline>> {
    rows.into_iter()
        .map(|(name, value, mono)| {
            let value = if mono {
                Inline::code(value)
            } else {
                Inline::text(value)
            };
            vec![Inline::strong(format!("{name}: ")), value]
        })
        .collect()
}

fn description_doc(p: &Prepared, show_title: bool) -> Doc {
    let mut doc = Doc::new();
    if show_title {
        doc = doc.paragraph(vec![Inline::strong(p.title.clone())]);
    }
    doc = doc.text_paragraph(&p.summary);
    if let Some(key) = &p.recurrence_of {
        doc = doc.paragraph(vec![
            Inline::strong(format!("Recurrence of {key}")),
            Inline::text(": that ticket was closed, and the problem came back."),
        ]);
    }
    doc = doc
        .heading(3, "Details")
        .bullet_list(fact_items(p.fact_rows(true)));
    if !p.template.is_empty() {
        doc = doc.heading(3, "Template").code_block(None, &p.template);
    }
    if !p.sample.is_empty() || p.log_link.is_some() {
        doc = doc.heading(3, "Sample message").code_block(None, &p.sample);
    }
    if let Some(link) = &p.log_link {
        doc = doc.paragraph(vec![Inline::link("View in Datadog", link.clone())]);
    }
    doc.rule().paragraph(vec![Inline::text(p.footer())])
}

fn comment_doc(p: &Prepared) -> Doc {
    let mut doc = Doc::new().paragraph(vec![Inline::strong(p.seen_again())]);
    doc = doc.bullet_list(fact_items(p.fact_rows(false)));
    if !p.sample.is_empty() {
        doc = doc
            .paragraph(vec![Inline::text("Sample message:")])
            .code_block(None, &p.sample);
    }
    if let Some(link) = &p.log_link {
        doc = doc.paragraph(vec![Inline::link("View in Datadog", link.clone())]);
    }
    doc.paragraph(vec![Inline::text(format!(
        "Posted by triage ({}).",
        p.fp_label
    ))])
}

// ---------------------------------------------------------------------------------------------
// Wiki markup

fn wiki_facts(out: &mut String, rows: Vec<(&'static str, String, bool)>) {
    for (name, value, mono) in rows {
        let value = wiki_escape(&value);
        if mono {
            out.push_str(&format!("* *{name}:* {{{{{value}}}}}\n"));
        } else {
            out.push_str(&format!("* *{name}:* {value}\n"));
        }
    }
}

fn wiki_code(out: &mut String, text: &str) {
    out.push_str("{code}\n");
    out.push_str(&wiki_code_body(text));
    out.push_str("\n{code}\n");
}

fn wiki_link(text: &str, href: &str) -> String {
    let text = text.replace(['|', '[', ']'], " ");
    format!("[{}|{}]", wiki_escape(&text), wiki_href(href))
}

fn description_wiki(p: &Prepared, show_title: bool) -> String {
    let mut out = String::new();
    if show_title {
        out.push_str(&format!("*{}*\n\n", wiki_escape(&p.title)));
    }
    if !p.summary.is_empty() {
        out.push_str(&wiki_escape(&p.summary));
        out.push_str("\n\n");
    }
    if let Some(key) = &p.recurrence_of {
        out.push_str(&format!(
            "*Recurrence of {}*: that ticket was closed, and the problem came back.\n\n",
            wiki_escape(key)
        ));
    }
    out.push_str("h3. Details\n");
    wiki_facts(&mut out, p.fact_rows(true));
    if !p.template.is_empty() {
        out.push_str("\nh3. Template\n");
        wiki_code(&mut out, &p.template);
    }
    if !p.sample.is_empty() || p.log_link.is_some() {
        out.push_str("\nh3. Sample message\n");
    }
    if !p.sample.is_empty() {
        wiki_code(&mut out, &p.sample);
    }
    if let Some(link) = &p.log_link {
        out.push_str(&wiki_link("View in Datadog", link));
        out.push('\n');
    }
    out.push_str("\n----\n");
    out.push_str(&wiki_escape(&p.footer()));
    out.push('\n');
    out
}

fn comment_wiki(p: &Prepared) -> String {
    let mut out = format!("*{}*\n", p.seen_again());
    wiki_facts(&mut out, p.fact_rows(false));
    if !p.sample.is_empty() {
        out.push_str("\nSample message:\n");
        wiki_code(&mut out, &p.sample);
    }
    if let Some(link) = &p.log_link {
        out.push_str(&wiki_link("View in Datadog", link));
        out.push('\n');
    }
    out.push_str(&format!(
        "\nPosted by triage ({}).\n",
        wiki_escape(&p.fp_label)
    ));
    out
}

/// Escapes wiki markup in plain text: `{ } [ ] * _ | ^ ~ + !` always, `-` at the start or end
/// of a word (strike-through, rules; `web-1` stays as is), `#` at the start of a line (numbered list), `??` (citation).
/// A backslash becomes the character reference `&#92;` (a doubled backslash is a line break).
fn wiki_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let mut prev: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let word_start = prev.is_none_or(|p| !p.is_alphanumeric());
        let line_start = prev.is_none_or(|p| p == '\n');
        match c {
            '\\' => out.push_str("&#92;"),
            '{' | '}' | '[' | ']' | '*' | '_' | '|' | '^' | '~' | '+' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '-' if word_start || chars.peek().is_none_or(|n| !n.is_alphanumeric()) => {
                out.push_str("\\-")
            }
            '#' if line_start => out.push_str("\\#"),
            '?' if chars.peek() == Some(&'?') => out.push_str("\\?"),
            c => out.push(c),
        }
        prev = Some(c);
    }
    out
}

/// Text for a `{code}` block: any `{code` inside (in any case) becomes `{ code`, so the block
/// cannot be closed early.
fn wiki_code_body(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        out.push('{');
        rest = &rest[i + 1..];
        if rest.len() >= 4 && rest.is_char_boundary(4) && rest[..4].eq_ignore_ascii_case("code") {
            out.push(' ');
        }
    }
    out.push_str(rest);
    out
}

/// A URL for `[text|url]`: the characters that would end the link or break it are
/// percent-encoded.
fn wiki_href(href: &str) -> String {
    let mut out = String::with_capacity(href.len());
    for c in href.chars() {
        match c {
            '|' => out.push_str("%7C"),
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ' ' => out.push_str("%20"),
            c if c.is_whitespace() || c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/// Normalises line endings to `'\n'` and drops control characters other than `'\n'`, `'\t'`.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Control characters dropped, every run of whitespace (newlines too) made one space, trimmed.
fn one_line(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.is_whitespace() || !c.is_control())
        .collect();
    let mut out = String::with_capacity(kept.len());
    for word in kept.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `s` cut to at most `max` chars, with an ellipsis when cut.
fn cap(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let (i, _) = s
                .char_indices()
                .nth(max.saturating_sub(1))
                .unwrap_or((0, ' '));
            format!("{}…", s[..i].trim_end())
        }
    }
}

/// Block text cut to at most `max` chars, with the [`TRUNCATED`] marker on its own line.
fn cut_block(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}\n{TRUNCATED}", s[..i].trim_end()),
    }
}

fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The longest prefix of `s` of at most `max` UTF-16 units, cut at a char boundary.
fn truncate_utf16(s: &str, max: usize) -> &str {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > max {
            return &s[..i];
        }
    }
    s
}

/// FNV-1a, 64 bits: a stable hash (the same in every build and process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jira::adf::validate;
    use chrono::TimeZone;

    fn facts() -> ProblemFacts {
        ProblemFacts {
            fingerprint: "3f9a0c1b2d4e5f60".to_string(),
            service: Some("checkout".to_string()),
            title: "Database connection refused in checkout".to_string(),
            summary: "The checkout service cannot reach Postgres.\nConnections are refused at \
                      10.0.0.5:5432."
                .to_string(),
            category: "database".to_string(),
            severity: "high".to_string(),
            template: "connection to <ip>:<num> refused after <duration>".to_string(),
            sample_message: "psycopg2.OperationalError: could not connect to server: Connection \
                             refused\n\tIs the server running on host \"10.0.0.5\" and accepting\n\
                             \tTCP/IP connections on port 5432?\r\n"
                .to_string(),
            sample_log_id: "AQAAAZB3xyz".to_string(),
            log_link: Some("https://app.datadoghq.com/logs?event=AQAAAZB3xyz".to_string()),
            hosts: vec!["web-1".to_string(), "web-2".to_string()],
            first_seen: Some(Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()),
            last_seen: Some(Utc.with_ymd_and_hms(2024, 5, 1, 12, 14, 59).unwrap()),
            occurrences: 41,
            recurrence_of: None,
            counted_since: None,
            aliases: Vec::new(),
        }
    }

    fn adf_text(v: &Value) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn description_adf_validates_and_carries_the_facts() {
        let mut f = facts();
        f.recurrence_of = Some("OPS-7".to_string());
        let draft = ticket(&f);
        validate(&draft.description_adf()).unwrap();
        let s = adf_text(&draft.description_adf());
        for needle in [
            "The checkout service cannot reach Postgres.",
            "checkout",
            "high",
            "database",
            "41",
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:14:59Z",
            "web-1, web-2",
            "connection to <ip>:<num> refused",
            "psycopg2.OperationalError",
            "View in Datadog",
            "https://app.datadoghq.com/logs?event=AQAAAZB3xyz",
            "3f9a0c1b2d4e5f60",
            "Recurrence of OPS-7",
            "maintained by triage",
            "triage-3f9a0c1b2d4e5f60",
        ] {
            assert!(s.contains(needle), "missing {needle:?} in {s}");
        }
        assert_eq!(draft.summary, "Database connection refused in checkout");
        assert_eq!(draft.severity, "high");
    }

    #[test]
    fn description_adf_validates_with_everything_missing() {
        let f = ProblemFacts {
            fingerprint: String::new(),
            service: None,
            title: String::new(),
            summary: String::new(),
            category: String::new(),
            severity: String::new(),
            template: String::new(),
            sample_message: String::new(),
            sample_log_id: String::new(),
            log_link: None,
            hosts: vec![],
            first_seen: None,
            last_seen: None,
            occurrences: 0,
            recurrence_of: None,
            counted_since: None,
            aliases: Vec::new(),
        };
        let draft = ticket(&f);
        validate(&draft.description_adf()).unwrap();
        validate(&recurrence_comment_adf(&f)).unwrap();
        assert!(!draft.summary.is_empty());
        assert!(draft.labels.contains(&"triage".to_string()));
    }

    #[test]
    fn summary_is_capped_for_a_long_multibyte_title() {
        let mut f = facts();
        f.title = "é🦀\n漢".repeat(250); // 1,000 chars, some of them two UTF-16 units
        let draft = ticket(&f);
        assert!(draft.summary.chars().count() <= 255);
        assert!(draft.summary.encode_utf16().count() <= 255);
        assert!(!draft.summary.contains('\n'));
        assert!(draft.summary.ends_with('…'));
        // The full title is kept in the description.
        validate(&draft.description_adf()).unwrap();
        assert!(adf_text(&draft.description_adf()).contains("é🦀 漢é🦀 漢"));
    }

    #[test]
    fn summary_falls_back_when_the_title_is_blank() {
        let mut f = facts();
        f.title = " \n\t ".to_string();
        assert_eq!(
            ticket(&f).summary,
            "The checkout service cannot reach Postgres."
        );
        f.summary = String::new();
        f.template = String::new();
        f.sample_message = String::new();
        assert_eq!(ticket(&f).summary, "Error in checkout (3f9a0c1b2d4e5f60)");
    }

    #[test]
    fn labels_have_no_whitespace() {
        let mut f = facts();
        f.fingerprint = " ab cd\tef\n".to_string();
        f.service = Some("check out  svc".to_string());
        let labels = ticket(&f).labels;
        assert_eq!(
            labels,
            vec!["triage", "triage-ab_cd_ef", "service-check_out__svc"]
        );
        for l in &labels {
            assert!(!l.chars().any(char::is_whitespace), "{l:?}");
            assert!(!l.is_empty() && l.chars().count() <= 255);
        }
        assert_eq!(fingerprint_label(" ab cd\tef\n"), "triage-ab_cd_ef");
    }

    #[test]
    fn labels_are_capped_and_deduplicated() {
        let mut f = facts();
        f.fingerprint = "x".repeat(1_000);
        f.service = Some(" ".to_string());
        let labels = ticket(&f).labels;
        assert_eq!(labels.len(), 2);
        assert!(labels[1].chars().count() <= 255);
        assert!(labels[1].starts_with("triage-xxx"));
        // Long labels that share a 255-char prefix stay distinct.
        let a = sanitize_label(&format!("{}a", "y".repeat(300)));
        let b = sanitize_label(&format!("{}b", "y".repeat(300)));
        assert_ne!(a, b);
        assert!(a.chars().count() <= 255 && b.chars().count() <= 255);
    }

    #[test]
    fn sanitize_label_cases() {
        assert_eq!(sanitize_label("a b"), "a_b");
        assert_eq!(sanitize_label("  a\u{a0}b\u{7}  "), "a_b");
        assert_eq!(sanitize_label("   "), "");
        assert_eq!(sanitize_label(&"é".repeat(255)), "é".repeat(255));
        let long = sanitize_label(&"🦀".repeat(200));
        assert!(long.encode_utf16().count() <= 255);
    }

    #[test]
    fn a_huge_sample_stays_under_the_limit() {
        let mut f = facts();
        f.sample_message = "x".repeat(1 << 20);
        let draft = ticket(&f);
        let adf = adf_text(&draft.description_adf());
        assert!(adf.len() < 32_767, "{}", adf.len());
        assert!(draft.description_wiki().len() < 32_767);
        assert!(adf.contains(TRUNCATED));
        assert!(draft.description_wiki().contains(TRUNCATED));
        validate(&draft.description_adf()).unwrap();
    }

    #[test]
    fn a_huge_multibyte_sample_and_template_stay_under_the_limit() {
        let mut f = facts();
        // 4-byte chars, quotes (escaped in JSON) and wiki specials, about 1 MB each.
        f.sample_message = "🦀\"\\{}".repeat(1 << 17);
        f.template = f.sample_message.clone();
        f.summary = "\\*".repeat(1 << 16);
        f.hosts = (0..50)
            .map(|i| format!("{}{i}", "\\".repeat(500)))
            .collect();
        let draft = ticket(&f);
        assert!(adf_text(&draft.description_adf()).len() < 32_767);
        assert!(draft.description_wiki().len() < 32_767);
        validate(&draft.description_adf()).unwrap();
        assert!(adf_text(&recurrence_comment_adf(&f)).len() < 32_767);
        assert!(recurrence_comment_wiki(&f).len() < 32_767);
    }

    #[test]
    fn the_sample_is_cut_at_about_8000_chars_on_a_char_boundary() {
        let mut f = facts();
        f.sample_message = "é".repeat(20_000);
        let draft = ticket(&f);
        let sample = draft.description_adf()["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "codeBlock")
            .map(|b| b["content"][0]["text"].as_str().unwrap().to_string())
            .find(|t| t.starts_with('é'))
            .unwrap();
        assert_eq!(sample, format!("{}\n{TRUNCATED}", "é".repeat(8_000)));
    }

    #[test]
    fn hosts_beyond_ten_are_counted() {
        let mut f = facts();
        f.hosts = (1..=13).map(|i| format!("host-{i}")).collect();
        let draft = ticket(&f);
        let s = adf_text(&draft.description_adf());
        assert!(s.contains("host-10 (+3 more)"), "{s}");
        assert!(!s.contains("host-11"));
        // '+' is escaped in wiki text; Jira shows "(+3 more)".
        assert!(draft.description_wiki().contains("host-10 (\\+3 more)"));
    }

    #[test]
    fn wiki_escapes_code_inside_the_sample() {
        let mut f = facts();
        f.sample_message = "before {code} middle {CODE:java} after {noformat}".to_string();
        f.template = "t {code}".to_string();
        let wiki = ticket(&f).description_wiki();
        assert!(wiki.contains("before { code} middle { CODE:java} after {noformat}"));
        // Only the block delimiters remain: two per block (template and sample).
        assert_eq!(wiki.matches("{code}").count(), 4, "{wiki}");
        assert!(!recurrence_comment_wiki(&f).contains("{code} middle"));
    }

    #[test]
    fn wiki_has_the_same_information() {
        let mut f = facts();
        f.recurrence_of = Some("OPS-7".to_string());
        let wiki = ticket(&f).description_wiki();
        for needle in [
            "The checkout service cannot reach Postgres.",
            "h3. Details",
            "* *Service:* checkout",
            "* *Severity:* high",
            "* *Category:* database",
            "* *Occurrences:* 41",
            "* *First seen:* 2024-05-01T12:00:00Z",
            "* *Last seen:* 2024-05-01T12:14:59Z",
            "* *Hosts:* web-1, web-2",
            "{{3f9a0c1b2d4e5f60}}",
            "{code}\nconnection to <ip>:<num> refused after <duration>\n{code}",
            "{code}\npsycopg2.OperationalError",
            "[View in Datadog|https://app.datadoghq.com/logs?event=AQAAAZB3xyz]",
            "*Recurrence of OPS-7*",
            "maintained by triage",
            "triage-3f9a0c1b2d4e5f60",
        ] {
            assert!(wiki.contains(needle), "missing {needle:?} in {wiki}");
        }
    }

    #[test]
    fn wiki_escapes_plain_text() {
        assert_eq!(
            wiki_escape("a|b [c] {d} *e* _f_"),
            "a\\|b \\[c\\] \\{d\\} \\*e\\* \\_f\\_"
        );
        assert_eq!(wiki_escape("web-1 -x- #1\n# y"), "web-1 \\-x\\- #1\n\\# y");
        assert_eq!(wiki_escape("C:\\tmp ??"), "C:&#92;tmp \\??");
        assert_eq!(
            wiki_link("a|b", "https://x/?q=a|b c]"),
            "[a b|https://x/?q=a%7Cb%20c%5D]"
        );
    }

    #[test]
    fn no_link_without_a_log_link() {
        let mut f = facts();
        f.log_link = None;
        let draft = ticket(&f);
        assert!(!adf_text(&draft.description_adf()).contains("View in Datadog"));
        assert!(!draft.description_wiki().contains("View in Datadog"));
        validate(&draft.description_adf()).unwrap();
    }

    #[test]
    fn recurrence_comment_validates_and_counts() {
        let f = facts();
        let v = recurrence_comment_adf(&f);
        validate(&v).unwrap();
        let s = adf_text(&v);
        assert!(s.contains("41 occurrences"), "{s}");
        assert!(s.contains("2024-05-01T12:00:00Z") && s.contains("2024-05-01T12:14:59Z"));
        assert!(s.contains("web-1, web-2"));
        assert!(s.contains("psycopg2.OperationalError"));
        let wiki = recurrence_comment_wiki(&f);
        assert!(wiki.contains("41 occurrences"), "{wiki}");
        assert!(wiki.contains("* *Hosts:* web-1, web-2"));
        let mut one = facts();
        one.occurrences = 1;
        assert!(adf_text(&recurrence_comment_adf(&one)).contains("1 occurrence since"));
        // A comment says since when it counts.
        one.counted_since = Some(Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap());
        let text = adf_text(&recurrence_comment_adf(&one));
        assert!(
            text.contains("Seen again: 1 occurrence since the last update (2024-05-01T10:00:00Z)."),
            "{text}"
        );
        assert!(recurrence_comment_wiki(&one).starts_with(
            "*Seen again: 1 occurrence since the last update (2024-05-01T10:00:00Z).*"
        ));
    }

    #[test]
    fn control_characters_never_reach_jira() {
        let mut f = facts();
        f.title = "bad\u{0}title\u{1b}[0m".to_string();
        f.sample_message = "a\u{0}b\u{7}c\r\nd".to_string();
        let draft = ticket(&f);
        assert_eq!(draft.summary, "badtitle[0m");
        let s = adf_text(&draft.description_adf());
        assert!(!s.contains("\\u0000") && !s.contains("\\u0007") && !s.contains("\\r"));
        assert!(s.contains("abc\\nd"));
        assert!(!draft
            .description_wiki()
            .chars()
            .any(|c| c.is_control() && c != '\n'));
    }
}
