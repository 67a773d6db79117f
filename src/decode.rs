//! Reading a JSON answer with an error that says which service, which endpoint and what was
//! wrong.
//!
//! In: a successful `reqwest::Response`, the service's name, the endpoint (method and path, never
//! the query or the host, which may carry credentials), and a size cap. Out: the decoded value,
//! or a [`DecodeError`] such as "Jira POST search/jql: expected a JSON object, got HTML" or
//! "Jira GET myself: the body timed out". Bodies larger than the cap are refused as they arrive.

use serde::de::DeserializeOwned;

use crate::http::{read_body_capped, BodyError};

/// Bodies read through this module are at most this large unless the caller says otherwise.
pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

/// An answer that could not be read or decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} {endpoint}: {what}")]
pub struct DecodeError {
    pub service: &'static str,
    pub endpoint: String,
    pub what: String,
}

/// Read the body (at most `limit` bytes) and decode it as `T`.
pub async fn json<T: DeserializeOwned>(
    service: &'static str,
    endpoint: &str,
    response: reqwest::Response,
    limit: usize,
) -> Result<T, DecodeError> {
    let fail = |what: String| DecodeError {
        service,
        endpoint: endpoint.to_string(),
        what,
    };
    let body = read_body_capped(response, limit).await.map_err(|e| {
        fail(match e {
            BodyError::Read(why) if why == "timed out" => {
                "the body arrived too slowly and timed out".to_string()
            }
            other => other.to_string(),
        })
    })?;
    parse(&body).map_err(fail)
}

/// Decode `body` as `T`, or say in words what it was instead.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        let what = describe(body);
        if what == "JSON" {
            format!("unexpected JSON ({e})")
        } else {
            format!("expected JSON, got {what}")
        }
    })
}

/// What a body looks like: "an empty body", "HTML", "text", "invalid UTF-8" or "JSON".
fn describe(body: &[u8]) -> &'static str {
    let Ok(text) = std::str::from_utf8(body) else {
        return "bytes that are not UTF-8";
    };
    let t = text.trim_start();
    if t.is_empty() {
        "an empty body"
    } else if t.starts_with('<') {
        "HTML"
    } else if serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok() {
        "JSON"
    } else if t.starts_with('{') || t.starts_with('[') {
        "incomplete or malformed JSON"
    } else {
        "plain text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn every_kind_of_wrong_body_is_named() {
        let p = |b: &[u8]| parse::<serde_json::Map<String, Value>>(b).unwrap_err();
        assert_eq!(p(b"<html>login</html>"), "expected JSON, got HTML");
        assert_eq!(p(b""), "expected JSON, got an empty body");
        assert_eq!(
            p(b"{\"a\":"),
            "expected JSON, got incomplete or malformed JSON"
        );
        assert_eq!(p(b"Service Unavailable"), "expected JSON, got plain text");
        assert_eq!(
            p(b"\xff\xfe"),
            "expected JSON, got bytes that are not UTF-8"
        );
        assert!(p(b"[1,2]").starts_with("unexpected JSON (invalid type: sequence"));
    }
}
