//! A tiny typed builder for the Atlassian Document Format (ADF).
//!
//! Jira Cloud (REST v3) takes rich text — an issue's `description`, a comment's `body` — as an
//! ADF document, a JSON tree of typed nodes, never as a plain string (a string is rejected with
//! 400). Jira validates that tree and rejects the whole request when any node breaks a rule, so
//! the builder here makes the bad shapes impossible to produce, and [`validate`] checks any
//! [`serde_json::Value`] against the same rules before it goes out (and in tests).
//!
//! The rules we rely on and enforce:
//!
//! - The root is `{"type":"doc","version":1,"content":[blocks]}`.
//! - Block nodes (children of `doc`, `listItem`, `blockquote`): `paragraph`, `heading`,
//!   `codeBlock`, `bulletList`, `orderedList`, `blockquote`, `rule`.
//! - `paragraph` and `heading` hold inline nodes only: `text` and `hardBreak`.
//! - A `text` node has a non-empty `"text"`. Jira rejects an empty text node.
//! - No `'\n'` inside the text of a paragraph or heading: a line break is a `hardBreak` node
//!   (`{"type":"hardBreak"}`) or a new paragraph. The builder splits on newlines for you.
//! - `codeBlock` holds the raw text (newlines allowed there) as unmarked `text` nodes, with an
//!   optional `attrs.language`.
//! - `heading` has `attrs.level` in `1..=6`.
//! - Lists are `bulletList > listItem > paragraph` (a list and a list item are never empty).
//! - Marks on text: `{"type":"strong"}`, `{"type":"code"}`,
//!   `{"type":"link","attrs":{"href":"..."}}` (also `em`, `strike`, `underline` in
//!   [`validate`]); a mark type appears at most once per node, and `code` combines only with
//!   `link`.
//!
//! Every string handed to the builder is cleaned first: `"\r\n"` and `'\r'` become `'\n'`, other
//! control characters except `'\n'` and `'\t'` are dropped, and empty strings never become text
//! nodes (a paragraph, heading, code block, list item or list left empty is omitted).
//!
//! ```ignore
//! use crate::jira::adf::{validate, Doc, Inline};
//! let doc = Doc::new()
//!     .heading(3, "Details")
//!     .bullet_list(vec![vec![Inline::strong("Service: "), Inline::text("checkout")]])
//!     .code_block(None, "line 1\nline 2");
//! assert!(validate(&doc.to_value()).is_ok());
//! ```

use serde::Serialize;
use serde_json::Value;

/// An ADF document: `{"type":"doc","version":1,"content":[...]}`.
///
/// Built by chaining block methods; serializes (with `serde`) to the exact JSON Jira expects.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Doc {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
    content: Vec<Node>,
}

/// One inline piece of a paragraph or list item.
///
/// Text may contain newlines: they become `hardBreak` nodes. Empty text is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inline {
    /// Plain text.
    Text(String),
    /// Bold text (`strong` mark).
    Strong(String),
    /// Monospace text (`code` mark).
    Code(String),
    /// A hyperlink (`link` mark). An empty `text` shows the `href`; an empty `href` gives plain
    /// text.
    Link { text: String, href: String },
    /// A line break inside a paragraph.
    HardBreak,
}

impl Inline {
    /// Plain text.
    pub fn text(s: impl Into<String>) -> Self {
        Inline::Text(s.into())
    }

    /// Bold text.
    pub fn strong(s: impl Into<String>) -> Self {
        Inline::Strong(s.into())
    }

    /// Monospace text.
    pub fn code(s: impl Into<String>) -> Self {
        Inline::Code(s.into())
    }

    /// A hyperlink showing `text` and pointing at `href`.
    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Self {
        Inline::Link {
            text: text.into(),
            href: href.into(),
        }
    }

    /// A line break.
    pub fn hard_break() -> Self {
        Inline::HardBreak
    }
}

/// The nodes the builder produces. Private: the only way to make one is through [`Doc`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Node {
    Paragraph {
        content: Vec<Node>,
    },
    Heading {
        attrs: HeadingAttrs,
        content: Vec<Node>,
    },
    CodeBlock {
        #[serde(skip_serializing_if = "Option::is_none")]
        attrs: Option<CodeBlockAttrs>,
        content: Vec<Node>,
    },
    BulletList {
        content: Vec<Node>,
    },
    ListItem {
        content: Vec<Node>,
    },
    Rule,
    Text {
        text: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        marks: Vec<Mark>,
    },
    HardBreak,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct HeadingAttrs {
    level: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct CodeBlockAttrs {
    language: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Mark {
    Strong,
    Code,
    Link { attrs: LinkAttrs },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct LinkAttrs {
    href: String,
}

impl Default for Doc {
    fn default() -> Self {
        Self::new()
    }
}

impl Doc {
    /// An empty document (`"content": []`, which Jira accepts).
    pub fn new() -> Self {
        Doc {
            kind: "doc",
            version: 1,
            content: Vec::new(),
        }
    }

    /// A heading; `level` is clamped to `1..=6`, newlines become spaces. Omitted when empty.
    pub fn heading(mut self, level: u8, text: &str) -> Self {
        let text = one_line(text);
        if !text.is_empty() {
            self.content.push(Node::Heading {
                attrs: HeadingAttrs {
                    level: level.clamp(1, 6),
                },
                content: vec![Node::Text {
                    text,
                    marks: Vec::new(),
                }],
            });
        }
        self
    }

    /// A paragraph of inline pieces. Omitted when nothing non-empty remains.
    pub fn paragraph(mut self, inlines: Vec<Inline>) -> Self {
        let content = inline_nodes(&inlines);
        if !content.is_empty() {
            self.content.push(Node::Paragraph { content });
        }
        self
    }

    /// A paragraph of plain text; inner newlines become `hardBreak`s, leading and trailing
    /// newlines are dropped. Omitted when empty.
    pub fn text_paragraph(self, text: &str) -> Self {
        let text = clean(text);
        self.paragraph(vec![Inline::Text(text.trim_matches('\n').to_string())])
    }

    /// A code block holding `text` verbatim (after dropping control characters other than
    /// `'\n'` and `'\t'`). An empty `language` means none. Omitted when `text` is empty.
    pub fn code_block(mut self, language: Option<&str>, text: &str) -> Self {
        let text = clean(text);
        if text.is_empty() {
            return self;
        }
        let attrs = language
            .map(one_line)
            .filter(|l| !l.is_empty())
            .map(|language| CodeBlockAttrs { language });
        self.content.push(Node::CodeBlock {
            attrs,
            content: vec![Node::Text {
                text,
                marks: Vec::new(),
            }],
        });
        self
    }

    /// A bullet list, one item per inner vector. Empty items are dropped; an empty list is
    /// omitted.
    pub fn bullet_list(mut self, items: Vec<Vec<Inline>>) -> Self {
        let content: Vec<Node> = items
            .iter()
            .map(|item| inline_nodes(item))
            .filter(|nodes| !nodes.is_empty())
            .map(|nodes| Node::ListItem {
                content: vec![Node::Paragraph { content: nodes }],
            })
            .collect();
        if !content.is_empty() {
            self.content.push(Node::BulletList { content });
        }
        self
    }

    /// A horizontal rule.
    pub fn rule(mut self) -> Self {
        self.content.push(Node::Rule);
        self
    }

    /// Appends the blocks of `other` after this document's blocks.
    pub fn append(mut self, other: Doc) -> Self {
        self.content.extend(other.content);
        self
    }

    /// True when the document has no blocks.
    pub fn is_empty(&self) -> bool {
        self.content.is_empty()
    }

    /// The document as a JSON value, ready to be a `description` or a comment `body`.
    pub fn to_value(&self) -> Value {
        // Only strings, integers and objects: serialization cannot fail.
        serde_json::to_value(self).expect("an ADF document always serializes")
    }

    /// The length of the document's visible text, in chars: the text of every text node, plus
    /// one per `hardBreak`. Markup is not counted.
    pub fn plain_text_len(&self) -> usize {
        fn len(node: &Node) -> usize {
            match node {
                Node::Text { text, .. } => text.chars().count(),
                Node::HardBreak => 1,
                Node::Rule => 0,
                Node::Paragraph { content }
                | Node::Heading { content, .. }
                | Node::CodeBlock { content, .. }
                | Node::BulletList { content }
                | Node::ListItem { content } => content.iter().map(len).sum(),
            }
        }
        self.content.iter().map(len).sum()
    }
}

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

/// [`clean`], then every newline and tab becomes a space, and the ends are trimmed.
fn one_line(s: &str) -> String {
    clean(s)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Text nodes carrying `marks` for `text`, split at newlines with `hardBreak`s in between.
fn push_text(out: &mut Vec<Node>, text: &str, marks: &[Mark]) {
    let text = clean(text);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push(Node::HardBreak);
        }
        if !line.is_empty() {
            out.push(Node::Text {
                text: line.to_string(),
                marks: marks.to_vec(),
            });
        }
    }
}

fn inline_nodes(inlines: &[Inline]) -> Vec<Node> {
    let mut out = Vec::new();
    for inline in inlines {
        match inline {
            Inline::Text(s) => push_text(&mut out, s, &[]),
            Inline::Strong(s) => push_text(&mut out, s, &[Mark::Strong]),
            Inline::Code(s) => push_text(&mut out, s, &[Mark::Code]),
            Inline::Link { text, href } => {
                let href: String = href.chars().filter(|c| !c.is_control()).collect();
                let href = href.trim();
                if href.is_empty() {
                    push_text(&mut out, text, &[]);
                } else {
                    let shown = if one_line(text).is_empty() {
                        href
                    } else {
                        text.as_str()
                    };
                    let mark = Mark::Link {
                        attrs: LinkAttrs {
                            href: href.to_string(),
                        },
                    };
                    push_text(&mut out, shown, &[mark]);
                }
            }
            Inline::HardBreak => out.push(Node::HardBreak),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Validation

const BLOCK_TYPES: &[&str] = &[
    "paragraph",
    "heading",
    "codeBlock",
    "bulletList",
    "orderedList",
    "blockquote",
    "rule",
];
const INLINE_TYPES: &[&str] = &["text", "hardBreak"];
const MARK_TYPES: &[&str] = &["strong", "em", "code", "strike", "underline", "link"];

/// Checks a JSON value against the ADF rules Jira enforces (see the module docs): the root
/// shape, the allowed node types and their allowed children (`doc` > block; `paragraph` and
/// `heading` > inline; `bulletList`/`orderedList` > `listItem` > block; `codeBlock` > unmarked
/// `text` only), non-empty text, no `'\n'` in text outside a `codeBlock`, well-formed marks, and
/// the heading level range.
///
/// Returns `Err` naming the JSON path of the first problem, e.g.
/// `$.content[2].content[0].text: text node with empty text`.
pub fn validate(value: &Value) -> Result<(), String> {
    let root = value
        .as_object()
        .ok_or_else(|| format!("$: an ADF document must be an object, got {}", kind(value)))?;
    match root.get("type").and_then(Value::as_str) {
        Some("doc") => {}
        Some(other) => return Err(format!("$.type: root must be \"doc\", got {other:?}")),
        None => return Err("$.type: missing or not a string".to_string()),
    }
    match root.get("version") {
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => return Err(format!("$.version: must be 1, got {v}")),
        None => return Err("$.version: missing".to_string()),
    }
    if let Some(key) = root
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "version" | "content"))
    {
        return Err(format!("$.{key}: unexpected property on doc"));
    }
    let content = children(root, "$", true)?;
    for (i, child) in content.iter().enumerate() {
        validate_block(child, &format!("$.content[{i}]"))?;
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

type Object = serde_json::Map<String, Value>;

/// The node's object and its `type`, with unexpected properties rejected.
fn node<'a>(value: &'a Value, path: &str) -> Result<(&'a Object, &'a str), String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("{path}: a node must be an object, got {}", kind(value)))?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path}.type: missing or not a string"))?;
    for key in obj.keys() {
        let ok = match key.as_str() {
            "type" | "attrs" => true,
            "content" => ty != "text",
            "text" | "marks" => ty == "text",
            _ => false,
        };
        if !ok {
            return Err(format!("{path}.{key}: unexpected property on {ty}"));
        }
    }
    if let Some(attrs) = obj.get("attrs") {
        if !attrs.is_object() {
            return Err(format!("{path}.attrs: must be an object"));
        }
    }
    Ok((obj, ty))
}

/// The `content` array of a node; `required` makes a missing `content` an error.
fn children<'a>(obj: &'a Object, path: &str, required: bool) -> Result<&'a [Value], String> {
    match obj.get("content") {
        None if required => Err(format!("{path}.content: missing")),
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!(
            "{path}.content: must be an array, got {}",
            kind(other)
        )),
    }
}

fn non_empty_children<'a>(obj: &'a Object, path: &str, ty: &str) -> Result<&'a [Value], String> {
    let items = children(obj, path, true)?;
    if items.is_empty() {
        return Err(format!("{path}.content: {ty} must not be empty"));
    }
    Ok(items)
}

fn no_children(obj: &Object, path: &str, ty: &str) -> Result<(), String> {
    if obj.contains_key("content") {
        return Err(format!("{path}.content: {ty} takes no content"));
    }
    Ok(())
}

fn validate_block(value: &Value, path: &str) -> Result<(), String> {
    let (obj, ty) = node(value, path)?;
    if !BLOCK_TYPES.contains(&ty) {
        return Err(if INLINE_TYPES.contains(&ty) || ty == "listItem" {
            format!("{path}: {ty} is not allowed here (a block node is expected)")
        } else {
            format!("{path}.type: unknown or unsupported node type {ty:?}")
        });
    }
    match ty {
        "paragraph" => validate_inlines(obj, path),
        "heading" => {
            let level = obj
                .get("attrs")
                .and_then(|a| a.get("level"))
                .ok_or_else(|| format!("{path}.attrs.level: heading needs a level"))?;
            match level.as_u64() {
                Some(1..=6) => {}
                _ => {
                    return Err(format!(
                        "{path}.attrs.level: heading level must be 1..=6, got {level}"
                    ))
                }
            }
            validate_inlines(obj, path)
        }
        "codeBlock" => {
            if let Some(language) = obj.get("attrs").and_then(|a| a.get("language")) {
                if !language.is_string() && !language.is_null() {
                    return Err(format!("{path}.attrs.language: must be a string"));
                }
            }
            for (i, child) in children(obj, path, false)?.iter().enumerate() {
                let p = format!("{path}.content[{i}]");
                let (cobj, cty) = node(child, &p)?;
                if cty != "text" {
                    return Err(format!("{p}: codeBlock may only contain text, got {cty}"));
                }
                if cobj.contains_key("marks") {
                    return Err(format!("{p}.marks: text in a codeBlock cannot have marks"));
                }
                text_of(cobj, &p, true)?;
            }
            Ok(())
        }
        "bulletList" | "orderedList" => {
            if ty == "orderedList" {
                if let Some(order) = obj.get("attrs").and_then(|a| a.get("order")) {
                    if order.as_u64().is_none() {
                        return Err(format!(
                            "{path}.attrs.order: must be a non-negative integer"
                        ));
                    }
                }
            }
            for (i, item) in non_empty_children(obj, path, ty)?.iter().enumerate() {
                let p = format!("{path}.content[{i}]");
                let (iobj, ity) = node(item, &p)?;
                if ity != "listItem" {
                    return Err(format!("{p}: {ty} may only contain listItem, got {ity}"));
                }
                let blocks = non_empty_children(iobj, &p, "listItem")?;
                for (j, block) in blocks.iter().enumerate() {
                    let bp = format!("{p}.content[{j}]");
                    validate_block(block, &bp)?;
                    let bty = block.get("type").and_then(Value::as_str).unwrap_or("");
                    if j == 0 && !matches!(bty, "paragraph" | "codeBlock") {
                        return Err(format!(
                            "{bp}: a listItem must start with a paragraph, got {bty}"
                        ));
                    }
                    if matches!(bty, "heading" | "rule" | "blockquote") {
                        return Err(format!("{bp}: {bty} is not allowed in a listItem"));
                    }
                }
            }
            Ok(())
        }
        "blockquote" => {
            for (i, child) in non_empty_children(obj, path, ty)?.iter().enumerate() {
                let p = format!("{path}.content[{i}]");
                validate_block(child, &p)?;
                let cty = child.get("type").and_then(Value::as_str).unwrap_or("");
                if matches!(cty, "heading" | "rule" | "blockquote") {
                    return Err(format!("{p}: {cty} is not allowed in a blockquote"));
                }
            }
            Ok(())
        }
        "rule" => no_children(obj, path, ty),
        _ => unreachable!("checked against BLOCK_TYPES"),
    }
}

/// The content of a paragraph or heading: inline nodes only.
fn validate_inlines(obj: &Object, path: &str) -> Result<(), String> {
    for (i, child) in children(obj, path, false)?.iter().enumerate() {
        let p = format!("{path}.content[{i}]");
        let (cobj, cty) = node(child, &p)?;
        match cty {
            "text" => {
                text_of(cobj, &p, false)?;
                if let Some(marks) = cobj.get("marks") {
                    validate_marks(marks, &format!("{p}.marks"))?;
                }
            }
            "hardBreak" => no_children(cobj, &p, cty)?,
            other if BLOCK_TYPES.contains(&other) || other == "listItem" => {
                return Err(format!(
                    "{p}: {other} is not allowed here (an inline node is expected)"
                ))
            }
            other => {
                return Err(format!(
                    "{p}.type: unknown or unsupported node type {other:?}"
                ))
            }
        }
    }
    Ok(())
}

/// A text node's text: a non-empty string, without newlines unless `newlines_ok`.
fn text_of<'a>(obj: &'a Object, path: &str, newlines_ok: bool) -> Result<&'a str, String> {
    let text = match obj.get("text") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(format!(
                "{path}.text: must be a string, got {}",
                kind(other)
            ))
        }
        None => return Err(format!("{path}.text: text node without text")),
    };
    if text.is_empty() {
        return Err(format!("{path}.text: text node with empty text"));
    }
    if !newlines_ok && text.contains('\n') {
        return Err(format!(
            "{path}.text: newline in text outside a codeBlock (use hardBreak)"
        ));
    }
    Ok(text)
}

fn validate_marks(marks: &Value, path: &str) -> Result<(), String> {
    let marks = marks
        .as_array()
        .ok_or_else(|| format!("{path}: must be an array, got {}", kind(marks)))?;
    let mut seen: Vec<&str> = Vec::new();
    for (i, mark) in marks.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let obj = mark
            .as_object()
            .ok_or_else(|| format!("{p}: a mark must be an object, got {}", kind(mark)))?;
        let ty = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{p}.type: missing or not a string"))?;
        if !MARK_TYPES.contains(&ty) {
            return Err(format!("{p}.type: unknown mark type {ty:?}"));
        }
        if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "type" | "attrs")) {
            return Err(format!("{p}.{key}: unexpected property on mark {ty}"));
        }
        if ty == "link" {
            match obj.get("attrs").and_then(|a| a.get("href")) {
                Some(Value::String(href)) if !href.trim().is_empty() => {}
                _ => return Err(format!("{p}.attrs.href: a link needs a non-empty href")),
            }
        } else if obj.contains_key("attrs") {
            return Err(format!("{p}.attrs: mark {ty} takes no attrs"));
        }
        if seen.contains(&ty) {
            return Err(format!("{p}: mark {ty} appears twice"));
        }
        seen.push(ty);
    }
    if seen.contains(&"code") && seen.iter().any(|m| !matches!(*m, "code" | "link")) {
        return Err(format!("{path}: the code mark combines only with link"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_doc_has_the_root_shape() {
        assert_eq!(
            Doc::new().to_value(),
            json!({"type": "doc", "version": 1, "content": []})
        );
        assert!(validate(&Doc::new().to_value()).is_ok());
    }

    #[test]
    fn builder_serializes_to_exact_adf() {
        let doc = Doc::new()
            .heading(3, "Title")
            .paragraph(vec![
                Inline::text("See "),
                Inline::link("Datadog", "https://app.datadoghq.com/logs?event=x"),
                Inline::strong(" now"),
                Inline::code("fp"),
            ])
            .code_block(Some("text"), "a\nb")
            .bullet_list(vec![vec![Inline::text("one")]])
            .rule();
        let expected = json!({"type": "doc", "version": 1, "content": [
            {"type": "heading", "attrs": {"level": 3}, "content": [{"type": "text", "text": "Title"}]},
            {"type": "paragraph", "content": [
                {"type": "text", "text": "See "},
                {"type": "text", "text": "Datadog", "marks": [{"type": "link", "attrs": {"href": "https://app.datadoghq.com/logs?event=x"}}]},
                {"type": "text", "text": " now", "marks": [{"type": "strong"}]},
                {"type": "text", "text": "fp", "marks": [{"type": "code"}]}
            ]},
            {"type": "codeBlock", "attrs": {"language": "text"}, "content": [{"type": "text", "text": "a\nb"}]},
            {"type": "bulletList", "content": [{"type": "listItem", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "one"}]}
            ]}]},
            {"type": "rule"}
        ]});
        assert_eq!(doc.to_value(), expected);
        assert_eq!(serde_json::to_value(&doc).unwrap(), expected);
        validate(&expected).unwrap();
    }

    #[test]
    fn newlines_in_paragraphs_become_hard_breaks() {
        let v = Doc::new().text_paragraph("a\r\nb\n\nc\n").to_value();
        assert_eq!(
            v["content"][0]["content"],
            json!([
                {"type": "text", "text": "a"}, {"type": "hardBreak"},
                {"type": "text", "text": "b"}, {"type": "hardBreak"}, {"type": "hardBreak"},
                {"type": "text", "text": "c"}
            ])
        );
        validate(&v).unwrap();
    }

    #[test]
    fn empty_strings_never_make_text_nodes() {
        let doc = Doc::new()
            .heading(2, "  ")
            .text_paragraph("")
            .paragraph(vec![Inline::text(""), Inline::strong("")])
            .code_block(Some("rust"), "")
            .bullet_list(vec![vec![], vec![Inline::code("")]]);
        assert!(doc.is_empty());
        let doc = Doc::new().paragraph(vec![Inline::link("", "https://x.example")]);
        assert_eq!(
            doc.to_value()["content"][0]["content"][0]["text"],
            "https://x.example"
        );
        let doc = Doc::new().paragraph(vec![Inline::link("plain", " ")]);
        assert_eq!(
            doc.to_value()["content"][0]["content"][0],
            json!({"type": "text", "text": "plain"})
        );
    }

    #[test]
    fn control_characters_are_stripped() {
        let doc = Doc::new()
            .text_paragraph("a\u{0}b\u{1b}[31mc\td")
            .code_block(None, "x\u{7}y\n\tz");
        let v = doc.to_value();
        assert_eq!(v["content"][0]["content"][0]["text"], "ab[31mc\td");
        assert_eq!(v["content"][1]["content"][0]["text"], "xy\n\tz");
        assert!(v["content"][1].get("attrs").is_none());
        assert_eq!(doc.plain_text_len(), "ab[31mc\td".len() + "xy\n\tz".len());
    }

    #[test]
    fn heading_level_is_clamped() {
        let v = Doc::new().heading(0, "a").heading(9, "b\nc").to_value();
        assert_eq!(v["content"][0]["attrs"]["level"], 1);
        assert_eq!(v["content"][1]["attrs"]["level"], 6);
        assert_eq!(v["content"][1]["content"][0]["text"], "b c");
        validate(&v).unwrap();
    }

    fn doc_with(block: Value) -> Value {
        json!({"type": "doc", "version": 1, "content": [block]})
    }

    #[test]
    fn rejects_a_plain_string() {
        let err = validate(&json!("just text")).unwrap_err();
        assert!(err.starts_with("$:"), "{err}");
    }

    #[test]
    fn rejects_a_wrong_root() {
        assert!(validate(&json!({"type": "doc", "content": []})).is_err());
        assert!(validate(&json!({"type": "doc", "version": 2, "content": []})).is_err());
        assert!(validate(&json!({"type": "paragraph", "version": 1, "content": []})).is_err());
        assert!(validate(&json!({"type": "doc", "version": 1})).is_err());
    }

    #[test]
    fn rejects_an_empty_text_node() {
        let v = doc_with(json!({"type": "paragraph", "content": [{"type": "text", "text": ""}]}));
        let err = validate(&v).unwrap_err();
        assert!(err.starts_with("$.content[0].content[0].text"), "{err}");
    }

    #[test]
    fn rejects_a_newline_in_paragraph_text() {
        let v =
            doc_with(json!({"type": "paragraph", "content": [{"type": "text", "text": "a\nb"}]}));
        let err = validate(&v).unwrap_err();
        assert!(err.contains("newline"), "{err}");
        // ...but a newline in a codeBlock is fine.
        let v =
            doc_with(json!({"type": "codeBlock", "content": [{"type": "text", "text": "a\nb"}]}));
        validate(&v).unwrap();
    }

    #[test]
    fn rejects_a_code_block_with_marks() {
        let v = doc_with(json!({"type": "codeBlock", "content": [
            {"type": "text", "text": "x", "marks": [{"type": "strong"}]}
        ]}));
        let err = validate(&v).unwrap_err();
        assert!(err.contains("marks"), "{err}");
    }

    #[test]
    fn rejects_unknown_node_types() {
        let v = doc_with(json!({"type": "marquee", "content": []}));
        let err = validate(&v).unwrap_err();
        assert!(err.contains("marquee"), "{err}");
        let v = doc_with(json!({"type": "paragraph", "content": [{"type": "blink", "text": "x"}]}));
        assert!(validate(&v).is_err());
    }

    #[test]
    fn rejects_a_bad_heading_level() {
        for level in [json!(0), json!(7), json!("3"), Value::Null] {
            let v = doc_with(json!({"type": "heading", "attrs": {"level": level}, "content": []}));
            let err = validate(&v).unwrap_err();
            assert!(err.contains("level"), "{err}");
        }
    }

    #[test]
    fn rejects_misplaced_children() {
        // Inline at block level.
        assert!(validate(&doc_with(json!({"type": "text", "text": "x"}))).is_err());
        // Block inside a paragraph.
        assert!(validate(&doc_with(
            json!({"type": "paragraph", "content": [{"type": "rule"}]})
        ))
        .is_err());
        // A list holding a paragraph directly, an empty list, an empty list item.
        assert!(validate(&doc_with(json!({"type": "bulletList", "content": [
            {"type": "paragraph", "content": []}
        ]})))
        .is_err());
        assert!(validate(&doc_with(json!({"type": "bulletList", "content": []}))).is_err());
        assert!(validate(&doc_with(json!({"type": "bulletList", "content": [
            {"type": "listItem", "content": []}
        ]})))
        .is_err());
    }

    #[test]
    fn rejects_malformed_marks() {
        let with_marks = |marks: Value| {
            doc_with(json!({"type": "paragraph", "content": [
                {"type": "text", "text": "x", "marks": marks}
            ]}))
        };
        assert!(validate(&with_marks(json!([{"type": "link"}]))).is_err());
        assert!(validate(&with_marks(
            json!([{"type": "link", "attrs": {"href": ""}}])
        ))
        .is_err());
        assert!(validate(&with_marks(json!([{"type": "sparkle"}]))).is_err());
        assert!(validate(&with_marks(json!([{"type": "strong"}, {"type": "strong"}]))).is_err());
        assert!(validate(&with_marks(json!([{"type": "code"}, {"type": "strong"}]))).is_err());
        assert!(validate(&with_marks(json!({"type": "strong"}))).is_err());
        validate(&with_marks(json!([
            {"type": "code"}, {"type": "link", "attrs": {"href": "https://x"}}
        ])))
        .unwrap();
    }

    #[test]
    fn newlines_inside_marked_text_keep_their_marks() {
        let v = Doc::new()
            .paragraph(vec![Inline::strong("a\nb")])
            .to_value();
        assert_eq!(
            v["content"][0]["content"],
            json!([
                {"type": "text", "text": "a", "marks": [{"type": "strong"}]},
                {"type": "hardBreak"},
                {"type": "text", "text": "b", "marks": [{"type": "strong"}]}
            ])
        );
        validate(&v).unwrap();
    }
}
