//! The `llm` analyzer: asks an OpenAI-compatible chat-completions API to classify a problem.
//!
//! In: the leader log and its template. Out: an `Analysis`, or an error, in which case the caller
//! uses the `rules` analyzer instead (so analysis never fails a log). The request goes through
//! the shared HTTP layer (the LLM's own limiter, retries, timeout) to `{OPENAI_BASE_URL}/chat/completions`
//! with a bearer key. The answer must be a JSON object with `category`, `severity`, `title` and
//! `summary`; anything else is refused. The severity is never set lower than the rules give, so
//! a model cannot talk a fatal error down.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{rules, Analysis, Category, Severity};
use crate::event::LogEvent;
use crate::http::{Retry, Service};

/// Longest message excerpt sent to the model.
const MAX_MESSAGE_CHARS: usize = 4000;

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
}

#[derive(Debug, Deserialize)]
struct Answer {
    category: Category,
    severity: String,
    title: String,
    summary: String,
}

impl LlmAnalyzer {
    /// How many times the model's circuit breaker opened.
    pub fn breaker_trips(&self) -> u64 {
        self.service.breaker_trips()
    }

    pub fn new(service: Service, base_url: &str, model: &str, api_key: SecretString) -> Self {
        LlmAnalyzer {
            service,
            url: format!("{base_url}/chat/completions"),
            model: model.to_string(),
            api_key,
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
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user},
            ],
        });
        let resp = self
            .service
            .send(
                |c| {
                    c.post(&self.url)
                        .bearer_auth(self.api_key.expose_secret())
                        .json(&body)
                },
                Retry::Idempotent,
            )
            .await?;
        let v: Value = resp.json().await?;
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the model's reply has no message content"))?;
        let baseline = rules::analyze(event, template);
        parse_answer(content, &baseline)
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
    let severity = Severity::parse(&answer.severity).ok_or_else(|| {
        anyhow::anyhow!("the model gave an unknown severity '{}'", answer.severity)
    })?;
    let title = one_line(&answer.title, 255);
    let summary = one_line(&answer.summary, 1000);
    anyhow::ensure!(
        !title.is_empty() && !summary.is_empty(),
        "the model gave an empty title or summary"
    );
    Ok(Analysis {
        category: answer.category,
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
    fn bad_answers_are_refused() {
        let b = baseline(Severity::Low);
        assert!(parse_answer("I think it is the database.", &b).is_err());
        assert!(parse_answer(
            r#"{"category":"cosmic","severity":"low","title":"x","summary":"y"}"#,
            &b
        )
        .is_err());
        assert!(parse_answer(
            r#"{"category":"disk","severity":"urgent","title":"x","summary":"y"}"#,
            &b
        )
        .is_err());
        assert!(parse_answer(
            r#"{"category":"disk","severity":"low","title":" ","summary":"y"}"#,
            &b
        )
        .is_err());
    }
}
