//! The `.env` file: `KEY=value` lines read before the command line is parsed.
//!
//! In: the text of the file (`./.env`, or the file `--env-file PATH` names). Out: the list of
//! `(name, value)` pairs in file order, or the number of the first line that is not a setting.
//! The whole file is parsed before anything is applied, so a file with a bad line applies
//! nothing. Errors carry the line number only, never the line: a `.env` holds secrets.
//!
//! The format is dotenvy's (what `dotenv` tools agree on): blank lines and `#` comments are
//! ignored, `export ` before a name is allowed, `'single'` quotes keep a value literally,
//! `"double"` quotes understand escapes, and `$VAR` / `${VAR}` in unquoted and double-quoted
//! values expand from the environment and from earlier lines (write `\$` or single quotes for
//! a literal `$`). An empty value (`JIRA_API_TOKEN=`) means "not set", as everywhere in triage.

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
///
/// The parsing is dotenvy's, so the file means what it means to every dotenv tool; what is
/// added here is that the whole file is parsed before anything is applied, and that a bad line
/// is named by its number. dotenvy's own error carries the bad statement's text, which may hold
/// a secret: it is only used to find the line number, and never shown.
pub fn parse(path: &str, text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let err = |line, reason| EnvFileError {
        path: path.to_string(),
        line,
        reason,
    };
    let mut out = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => out.push(pair),
            Err(dotenvy::Error::LineParse(statement, _)) => {
                return Err(err(
                    line_of(text, &statement),
                    "expected NAME=value (a name of letters, digits, _ or ., and balanced quotes)",
                ))
            }
            Err(_) => return Err(err(1, "the file is not valid UTF-8 text")),
        }
    }
    Ok(out)
}

/// The 1-based number of the line where `statement` (a statement dotenvy could not parse)
/// starts in `text`.
fn line_of(text: &str, statement: &str) -> usize {
    let needle = statement.trim();
    let first_line = needle.lines().next().unwrap_or(needle);
    text.lines()
        .position(|line| !first_line.is_empty() && line.trim() == first_line)
        .or_else(|| text.find(needle).map(|at| text[..at].matches('\n').count()))
        .map_or(1, |index| index + 1)
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
    fn variables_expand_from_earlier_lines_except_in_single_quotes() {
        assert_eq!(
            ok("HOST=jira.example\nURL=https://${HOST}/x\nTOKEN='a$HOST'\n"),
            vec![
                pair("HOST", "jira.example"),
                pair("URL", "https://jira.example/x"),
                pair("TOKEN", "a$HOST"),
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
