//! The `.env` file: `KEY=value` lines read before the command line is parsed.
//!
//! In: the text of the file (`./.env`, or the file `--env-file PATH` names). Out: the list of
//! `(name, value)` pairs in file order, or the number of the first line that is not a setting.
//! The whole file is parsed before anything is applied, so a file with a bad line applies
//! nothing. Errors carry the line number only, never the line: a `.env` holds secrets.
//!
//! The format (what `dotenv` tools agree on, without their variable expansion):
//! - blank lines and lines starting with `#` are ignored; `export ` before a name is allowed;
//! - a name is letters, digits, `_` and `.`, not starting with a digit, followed by `=`;
//! - an unquoted value runs to the end of the line (a ` #` starts a comment), trimmed;
//! - `'single'` quotes keep everything literally; `"double"` quotes understand `\n`, `\t`,
//!   `\"`, `\\` and `\$`; both may span several lines; after the closing quote only spaces
//!   or a comment may follow;
//! - `$VAR` is not expanded: values are taken as written (tokens often contain `$`).
//! - an empty value (`JIRA_API_TOKEN=`) means "not set", as everywhere in triage.

use std::path::Path;

/// A line of a `.env` file that is not a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct EnvFileError {
    /// The file, as given.
    pub path: String,
    /// 1-based line number of the first bad line.
    pub line: usize,
    /// What is wrong, without the line's content.
    pub reason: &'static str,
}

/// Read and parse a `.env` file. `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<(String, String)>>, EnvFileReadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&path.display().to_string(), &text)
            .map(Some)
            .map_err(EnvFileReadError::Parse),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EnvFileReadError::Io(format!("{}: {e}", path.display()))),
    }
}

/// Why a `.env` file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileReadError {
    #[error("{0}")]
    Parse(EnvFileError),
    #[error("cannot read {0}")]
    Io(String),
}

/// Parse the text of a `.env` file named `path` (the name is only used in errors).
pub fn parse(path: &str, text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let err = |reason| EnvFileError {
            path: path.to_string(),
            line: start + 1,
            reason,
        };
        let line = lines[i].trim_start_matches('\u{feff}').trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((name, rest)) = line.split_once('=') else {
            return Err(err("expected NAME=value"));
        };
        let name = name.trim_end();
        if !valid_name(name) {
            return Err(err(
                "the name before = must be letters, digits, _ or ., not starting with a digit",
            ));
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                // A quoted value may continue on the following lines.
                let mut body = rest[1..].to_string();
                let (value, after) = loop {
                    if let Some(found) = closing_quote(&body, q) {
                        break found;
                    }
                    if i >= lines.len() {
                        return Err(err("a quoted value is never closed"));
                    }
                    body.push('\n');
                    body.push_str(lines[i]);
                    i += 1;
                };
                let after = after.trim();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(err("unexpected text after the closing quote"));
                }
                if q == '"' {
                    unescape(&value).ok_or_else(|| err("an unknown \\ escape in double quotes"))?
                } else {
                    value
                }
            }
            _ => {
                let value = match rest.find(" #").or_else(|| rest.find("\t#")) {
                    Some(at) => &rest[..at],
                    None => rest,
                };
                if rest.starts_with('#') {
                    String::new()
                } else {
                    value.trim().to_string()
                }
            }
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// The value up to the closing quote (raw, escapes kept) and the text after it.
fn closing_quote(body: &str, quote: char) -> Option<(String, String)> {
    let mut escaped = false;
    for (at, c) in body.char_indices() {
        if quote == '"' && escaped {
            escaped = false;
            continue;
        }
        if quote == '"' && c == '\\' {
            escaped = true;
            continue;
        }
        if c == quote {
            return Some((body[..at].to_string(), body[at + 1..].to_string()));
        }
    }
    None
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            c @ ('"' | '\\' | '$' | '\'') => c,
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(".env", text).expect("valid .env")
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn settings_comments_quotes_and_export() {
        let text = "# a comment\n\nDD_SITE=datadoghq.eu\nexport JIRA_PROJECT = OPS  # the key\n\
                    JIRA_API_TOKEN=\nA='lit $HOME \\n'\nB=\"two\\nlines \\\"q\\\"\"\nC=\"multi\nline\" # c\nD=a#b\n";
        assert_eq!(
            ok(text),
            vec![
                pair("DD_SITE", "datadoghq.eu"),
                pair("JIRA_PROJECT", "OPS"),
                pair("JIRA_API_TOKEN", ""),
                pair("A", "lit $HOME \\n"),
                pair("B", "two\nlines \"q\""),
                pair("C", "multi\nline"),
                pair("D", "a#b"),
            ]
        );
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example");
        let pairs = read(&path).unwrap().expect("the example exists");
        assert!(pairs
            .iter()
            .any(|(k, v)| k == "DD_SITE" && v == "datadoghq.com"));
        assert!(pairs
            .iter()
            .any(|(k, v)| k == "JIRA_API_TOKEN" && v.is_empty()));
    }

    #[test]
    fn a_bad_line_is_named_by_number_without_its_content() {
        let text = "DD_SITE=datadoghq.com\nJIRA_API_TOKEN supersecret\nX=1\n";
        let err = parse("conf/.env", text).unwrap_err();
        assert_eq!(err.line, 2);
        let msg = err.to_string();
        assert!(msg.starts_with("conf/.env:2: "), "{msg}");
        assert!(!msg.contains("supersecret"), "{msg}");
        for (text, line) in [
            ("A=1\nB=\"open\nC=2\n", 2),
            ("1A=x\n", 1),
            ("A='x' y\n", 1),
            ("A=\"\\q\"\n", 1),
        ] {
            assert_eq!(parse(".env", text).unwrap_err().line, line, "{text:?}");
        }
    }
}
