//! The `llm` analyzer: asks an OpenAI-compatible chat-completions API to classify a problem.
//!
//! In: the leader log and its template. Out: an `Analysis`, or an error, in which case the caller
//! uses the `rules` analyzer instead (so analysis never fails a log) and counts the fallback.
//! The request goes through the shared HTTP layer (the LLM's own limiter, retries, timeout) to
//! `{OPENAI_BASE_URL}/chat/completions` with a bearer key, and asks for JSON output with
//! `response_format: {"type":"json_object"}`. A server that rejects that field with a 400 is
//! asked again without it, and not sent it again for the rest of the run.
//!
//! The answer must be a JSON object with `category`, `severity`, `title` and `summary`. It
//! bends rather than breaks: a category outside the known list becomes `other`, and an unknown
//! severity takes the rules' one, keeping the rest of the answer; only an answer that is not
//! that JSON object, or lacks a title or summary, is refused. The severity is never set lower
//! than the rules give, so a model cannot talk a fatal error down. The response body is read
//! with a 1 MiB cap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{rules, Analysis, Category, Severity};
use crate::event::LogEvent;
use crate::http::{read_body_capped, HttpError, Retry, Service};

/// Longest message excerpt sent to the model.
const MAX_MESSAGE_CHARS: usize = 4000;
/// The largest reply read.
const MAX_BODY_BYTES: usize = 1024 * 1024;

const SYSTEM_PROMPT: &str = "You triage production error logs for an on-call engineer. \
Answer with one JSON object and nothing else, with exactly these keys: \
\"category\": one of database, network, authentication, resource, exception, configuration, dependency, disk, other; \
\"severity\": one of low, medium, high, critical; \
\"title\": one line of at most 120 characters naming the service and the problem, without ids or secrets; \
\"summary\": at most three sentences: what failed, the likely cause, and what to check first.";

#[derive(Debug, Clone)]
pub struct LlmAnalyzer {
    service: Service,
    url: String,
    model: String,
    api_key: SecretString,
    /// Whether to send `response_format` (cleared when the server refuses it).
    json_mode: Arc<AtomicBool>,
    /// Problems this analyzer failed on.
    fallbacks: Arc<AtomicU64>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    category: Option<Value>,
    #[serde(default)]
    severity: Option<Value>,
    title: String,
    summary: String,
}

impl LlmAnalyzer {
    /// How many times the model's circuit breaker opened.
    pub fn breaker_trips(&self) -> u64 {
        self.service.breaker_trips()
    }

    /// How many problems fell back to the rules.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub(crate) fn count_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn new(service: Service, base_url: &str, model: &str, api_key: SecretString) -> Self {
        LlmAnalyzer {
            service,
            url: format!("{base_url}/chat/completions"),
            model: model.to_string(),
            api_key,
            json_mode: Arc::new(AtomicBool::new(true)),
            fallbacks: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn analyze(&self, event: &LogEvent, template: &str) -> anyhow::Result<Analysis> {
        let message: String = event.message.chars().take(MAX_MESSAGE_CHARS).collect();
        let user = format!(
            "service: {}\nstatus: {}\nhost: {}\ntemplate: {template}\nmessage:\n{message}",
            event.service.as_deref().unwrap_or("(none)"),
            event.status,
            event.host.as_deref().unwrap_or("(none)"),
        );
        let mut body = json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user},
            ],
        });
        let json_mode = self.json_mode.load(Ordering::Relaxed);
        if json_mode {
            body["response_format"] = json!({"type": "json_object"});
        }
        let resp = match self.send(&body).await {
            Err(HttpError::Status {
                status: 400,
                message,
                ..
            }) if json_mode => {
                // Not every OpenAI-compatible server knows `response_format`: ask again without
                // it, and if that works, stop sending it.
                if let Some(map) = body.as_object_mut() {
                    map.remove("response_format");
                }
                let resp = self.send(&body).await?;
                if self.json_mode.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "the LLM server refused response_format (HTTP 400: {message}); asking for JSON in the prompt only"
                    );
                }
                resp
            }
            other => other?,
        };
        let bytes = read_body_capped(resp, MAX_BODY_BYTES)
            .await
            .map_err(|e| anyhow::anyhow!("LLM POST chat/completions: reading the reply: {e}"))?;
        let v: Value = crate::decode::parse(&bytes).map_err(|e| {
            anyhow::anyhow!("LLM POST chat/completions: the reply is not a chat completion: {e}")
        })?;
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the model's reply has no message content"))?;
        let baseline = rules::analyze(event, template);
        parse_answer(content, &baseline)
    }

    async fn send(&self, body: &Value) -> Result<reqwest::Response, HttpError> {
        self.service
            .send(
                |c| {
                    c.post(&self.url)
                        .bearer_auth(self.api_key.expose_secret())
                        .json(body)
                },
                Retry::Idempotent,
            )
            .await
    }
}

/// Check the model's JSON answer and merge it with the rules' baseline.
fn parse_answer(content: &str, baseline: &Analysis) -> anyhow::Result<Analysis> {
    let trimmed = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let answer: Answer = serde_json::from_str(trimmed)
        .map_err(|e| anyhow::anyhow!("the model's reply is not the JSON asked for: {e}"))?;
    let named = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
    // Outside the known lists: `other`, and the rules' severity; the rest of the answer stands.
    let category = named(&answer.category)
        .and_then(|c| Category::parse(&c))
        .unwrap_or(Category::Other);
    let severity = named(&answer.severity)
        .and_then(|s| Severity::parse(&s))
        .unwrap_or(baseline.severity);
    let title = one_line(&answer.title, 255);
    let summary = one_line(&answer.summary, 1000);
    anyhow::ensure!(
        !title.is_empty() && !summary.is_empty(),
        "the model gave an empty title or summary"
    );
    Ok(Analysis {
        category,
        severity: severity.max(baseline.severity),
        title,
        summary,
    })
}

fn one_line(s: &str, max_chars: usize) -> String {
    let clean: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.chars().count() <= max_chars {
        clean
    } else {
        clean
            .chars()
            .take(max_chars - 1)
            .chain(std::iter::once('…'))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(severity: Severity) -> Analysis {
        Analysis {
            category: Category::Other,
            severity,
            title: "t".into(),
            summary: "s".into(),
        }
    }

    #[test]
    fn a_good_answer_is_taken_and_severity_never_drops_below_the_rules() {
        let a = parse_answer(
            r#"```json
{"category":"database","severity":"low","title":"checkout: pool\nexhausted","summary":"The pool ran dry."}
```"#,
            &baseline(Severity::High),
        )
        .unwrap();
        assert_eq!(a.category, Category::Database);
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.title, "checkout: pool exhausted");
    }

    #[test]
    fn an_unknown_category_becomes_other_and_the_rest_of_the_answer_stands() {
        let a = parse_answer(
            r#"{"category":"cosmic rays","severity":"critical","title":"x","summary":"y"}"#,
            &baseline(Severity::Low),
        )
        .unwrap();
        assert_eq!(
            (a.category, a.severity, a.title.as_str(), a.summary.as_str()),
            (Category::Other, Severity::Critical, "x", "y")
        );
        let a = parse_answer(
            r#"{"category":" Database ","severity":"urgent","title":"x","summary":"y"}"#,
            &baseline(Severity::Medium),
        )
        .unwrap();
        assert_eq!(
            (a.category, a.severity),
            (Category::Database, Severity::Medium)
        );
        let a = parse_answer(
            r#"{"category":7,"title":"x","summary":"y"}"#,
            &baseline(Severity::High),
        )
        .unwrap();
        assert_eq!((a.category, a.severity), (Category::Other, Severity::High));
    }

    #[test]
    fn bad_answers_are_refused() {
        let b = baseline(Severity::Low);
        assert!(parse_answer("I think it is the database.", &b).is_err());
        assert!(parse_answer(r#"{"category":"disk","severity":"low","summary":"y"}"#, &b).is_err());
        assert!(parse_answer(
            r#"{"category":"disk","severity":"low","title":" ","summary":"y"}"#,
            &b
        )
        .is_err());
    }
}
