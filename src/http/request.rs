//! What a failed call is, and what a server said when it refused one.
//!
//! In: a response's status and body, or a transport error. Out: an [`HttpError`] the caller can
//! act on (fatal for the run? this item only? maybe applied?), with the API's own message
//! whichever of the known error body shapes it used, and transport errors without the URL's
//! query. No header value is ever put in an error, so keys and tokens cannot leak from here.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// A failed call, with what the caller needs to decide (fatal? this item only? ambiguous?).
/// Cloned to every problem whose lookup went out in one failed batched search.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// 401/403: the credentials or their permissions are wrong. Fatal for the run.
    #[error("{service} refused the credentials (HTTP {status}): {message}")]
    Auth {
        service: &'static str,
        status: u16,
        message: String,
    },
    /// Another 4xx: this request is wrong; it fails this item only.
    #[error("{service} answered HTTP {status}: {message}")]
    Status {
        service: &'static str,
        status: u16,
        message: String,
    },
    /// The service failed repeatedly; calls are paused (nothing was sent).
    #[error("{service} is paused after {failures} consecutive failures (circuit breaker); next try in {} s", .retry_in.as_secs())]
    CircuitOpen {
        service: &'static str,
        failures: u32,
        retry_in: Duration,
    },
    /// Retries exhausted (or an ambiguous failure of a `SafeOnly` request).
    #[error("{service} failed after {attempts} attempt(s): {last}")]
    Unavailable {
        service: &'static str,
        attempts: u32,
        last: String,
        /// The request may have reached the server (a timeout or 5xx after sending).
        maybe_applied: bool,
    },
}

impl HttpError {
    pub fn is_auth(&self) -> bool {
        matches!(self, HttpError::Auth { .. })
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Auth { status, .. } | HttpError::Status { status, .. } => Some(*status),
            HttpError::Unavailable { .. } | HttpError::CircuitOpen { .. } => None,
        }
    }
}

pub(super) fn reason(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status")
        .to_string()
}

/// A transport error without the URL's query (which may carry a cursor) and without headers.
pub(super) fn transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The human message in an API error body, whichever shape it has:
/// Datadog `{"errors":["..."]}`, `{"errors":[{"status","title","detail"}]}`,
/// gateway `{"status":"error","code":502,"errors":["Bad Gateway"]}`,
/// Jira `{"errorMessages":[...],"errors":{"field":"message"}}`. Anything else: a short excerpt.
pub fn error_message(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        let excerpt: String = body.chars().filter(|c| !c.is_control()).take(200).collect();
        return Some(excerpt);
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(msgs) = v.get("errorMessages").and_then(Value::as_array) {
        parts.extend(msgs.iter().filter_map(Value::as_str).map(str::to_string));
    }
    match v.get("errors") {
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => parts.push(s.clone()),
                    Value::Object(o) => {
                        let title = o.get("title").and_then(Value::as_str);
                        let detail = o.get("detail").and_then(Value::as_str);
                        let status = o.get("status").and_then(|s| {
                            s.as_str()
                                .map(str::to_string)
                                .or_else(|| s.as_u64().map(|n| n.to_string()))
                        });
                        let text = match (title, detail) {
                            (Some(t), Some(d)) => format!("{t}: {d}"),
                            (Some(t), None) => t.to_string(),
                            (None, Some(d)) => d.to_string(),
                            (None, None) => item.to_string(),
                        };
                        parts.push(match status {
                            Some(s) => format!("{text} ({s})"),
                            None => text,
                        });
                    }
                    other => parts.push(other.to_string()),
                }
            }
        }
        Some(Value::Object(fields)) => {
            let mut fields: Vec<_> = fields.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            for (field, msg) in fields {
                parts.push(format!(
                    "{field}: {}",
                    msg.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| msg.to_string())
                ));
            }
        }
        _ => {}
    }
    if parts.is_empty() {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            parts.push(m.to_string());
        }
    }
    if parts.is_empty() {
        let excerpt: String = body.chars().take(200).collect();
        return Some(excerpt);
    }
    Some(parts.join("; "))
}

/// A response body that could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response body is larger than the {limit} bytes allowed")]
    TooLarge { limit: usize },
    #[error("the response body could not be read: {0}")]
    Read(String),
}

/// Read a response body, refusing one larger than `limit` bytes (by its `Content-Length`, or
/// as it arrives), so a huge or endless body cannot exhaust memory.
pub async fn read_body_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(BodyError::Read("timed out".into())),
            Err(e) => return Err(BodyError::Read(transport_error(e))),
        }
    }
}

/// The text of an error response, at most 64 KiB of it (enough for any API's message).
pub(super) async fn error_body(response: reqwest::Response) -> String {
    read_body_capped(response, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_body_shape_gives_a_readable_message() {
        assert_eq!(
            error_message(r#"{"errors":["API key required"]}"#).unwrap(),
            "API key required"
        );
        assert_eq!(
            error_message(
                r#"{"errors":[{"status":"400","title":"Bad Request","detail":"invalid query"}]}"#
            )
            .unwrap(),
            "Bad Request: invalid query (400)"
        );
        assert_eq!(
            error_message(r#"{"status":"error","code":502,"errors":["Bad Gateway"]}"#).unwrap(),
            "Bad Gateway"
        );
        assert_eq!(
            error_message(r#"{"errorMessages":["Field 'priority' is required"],"errors":{}}"#)
                .unwrap(),
            "Field 'priority' is required"
        );
        assert_eq!(
            error_message(
                r#"{"errorMessages":[],"errors":{"labels":"bad label","summary":"too long"}}"#
            )
            .unwrap(),
            "labels: bad label; summary: too long"
        );
        assert_eq!(
            error_message("<html>502 Bad Gateway</html>").unwrap(),
            "<html>502 Bad Gateway</html>"
        );
        assert_eq!(error_message(""), None);
    }

    #[test]
    fn the_real_datadog_error_cassettes_read() {
        for (file, expected) in [
            (
                "Validate-API-key-returns-Forbidden-response.json",
                "API key required",
            ),
            (
                "Create-a-custom-destination-returns-Bad-Request-response.json",
                "The parameter 'forwarder_destination' is required",
            ),
        ] {
            let path = format!(
                "{}/tests/fixtures/datadog/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let cassette: Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let body = cassette["http_interactions"][0]["response"]["body"]["string"]
                .as_str()
                .unwrap();
            assert_eq!(error_message(body).unwrap(), expected);
        }
    }
}
