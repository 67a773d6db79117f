//! The one way out to the network: rate limit → attempt with timeout → decide → back off.
//!
//! Every outbound call of a service (Datadog, Jira, the LLM) goes through its `Service`:
//! - a `governor` limiter (calls per second, per service) before every attempt;
//! - pacing from the service's own rate-limit headers: when `X-RateLimit-Remaining` runs low the
//!   next calls are spread over what is left of the window, and at zero they wait for the reset;
//! - a per-attempt timeout;
//! - retries: 429 waits for `Retry-After` (seconds or an HTTP date) or `X-RateLimit-Reset`
//!   (seconds for Datadog, an ISO 8601 time for Jira); 408, 5xx, timeouts and connection errors
//!   back off exponentially with full jitter, honouring `Retry-After` when a 503 sends one.
//!
//! Whether to retry (`classify`) is kept apart from how long to wait (`RetryPolicy`). A request
//! that must not be repeated blindly (a Jira create: the first may have gone through) is sent
//! with `Retry::SafeOnly`, which retries only what certainly did not reach the server (429 and
//! failed connections) and returns anything ambiguous to the caller.
//! 401/403 are `HttpError::Auth` (fatal for the run); any other 4xx is `HttpError::Status`
//! carrying the API's own message, whichever of the known error body shapes it used.
//! No header value is ever logged or put in an error, so keys and tokens cannot leak from here.
//! Bodies are read with a cap (`read_body_capped`): an error body at most 64 KiB, so a huge or
//! endless response cannot exhaust memory.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::breaker::Breaker;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt.
    pub base_backoff: Duration,
    /// Longest single backoff.
    pub max_backoff: Duration,
    /// Longest wait a server may ask for (Retry-After, X-RateLimit-Reset) before we give up.
    pub max_wait: Duration,
    /// Per-attempt timeout.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_wait: Duration::from_secs(120),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Which failures may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: retry 429, 408, 5xx, timeouts, connection errors.
    Idempotent,
    /// Non-idempotent writes: retry only what certainly did not take effect (429, no connection).
    SafeOnly,
}

/// A failed call, with what the caller needs to decide (fatal? this item only? ambiguous?).
#[derive(Debug, thiserror::Error)]
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

/// What to do with one attempt's result.
#[derive(Debug, PartialEq)]
enum Verdict {
    Done,
    /// Retry after at least this long (a server-given wait), else after the policy's backoff.
    Retry {
        wait: Option<Duration>,
        maybe_applied: bool,
    },
    Auth,
    Fail,
}

/// One outbound service: its client, its limiter, its retry policy, its pacing state.
#[derive(Debug, Clone)]
pub struct Service {
    name: &'static str,
    client: reqwest::Client,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    policy: RetryPolicy,
    /// Earliest moment the next call may start (from the server's rate-limit headers).
    not_before: Arc<Mutex<Option<Instant>>>,
    /// Stops calls for a while after repeated failures.
    breaker: Option<Arc<Breaker>>,
}

impl Service {
    pub fn new(
        name: &'static str,
        rate: Option<NonZeroU32>,
        policy: RetryPolicy,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("triage/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(same_origin_redirects(name))
            .build()?;
        Ok(Service {
            name,
            client,
            limiter: rate.map(|r| Arc::new(RateLimiter::direct(Quota::per_second(r)))),
            policy,
            not_before: Arc::new(Mutex::new(None)),
            breaker: None,
        })
    }

    /// Add a circuit breaker: `threshold` consecutive failures stop calls for `cooldown`.
    pub fn with_breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker = Some(Arc::new(Breaker::new(threshold, cooldown)));
        self
    }

    /// How many times this service's circuit breaker opened.
    pub fn breaker_trips(&self) -> u64 {
        self.breaker.as_ref().map_or(0, |b| b.trips())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send the request `build` makes (called again for every attempt) and return the first
    /// successful (2xx) response.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        retry: Retry,
    ) -> Result<Response, HttpError> {
        let Some(breaker) = &self.breaker else {
            return self.send_with_retries(build, retry).await;
        };
        if let Err(remaining) = breaker.allow() {
            return Err(HttpError::CircuitOpen {
                service: self.name,
                failures: breaker.threshold(),
                retry_in: remaining,
            });
        }
        let result = self.send_with_retries(build, retry).await;
        match &result {
            Err(HttpError::Unavailable { .. }) => breaker.failure(),
            // A 4xx is this request's fault; the service answered, so it is up.
            _ => breaker.success(),
        }
        result
    }

    async fn send_with_retries(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
        retry: Retry,
    ) -> Result<Response, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_turn().await;
            let result = build(&self.client)
                .timeout(self.policy.attempt_timeout)
                .send()
                .await;
            let (verdict, last, response) = match result {
                Ok(resp) => {
                    self.pace(resp.headers());
                    let status = resp.status();
                    let verdict = classify(status, resp.headers(), retry);
                    if verdict == Verdict::Done {
                        return Ok(resp);
                    }
                    (verdict, format!("HTTP {}", status.as_u16()), Some(resp))
                }
                Err(e) if e.is_redirect() => {
                    // A refused redirect (another host, or too many): trying again would be
                    // refused the same way. The server answered, so nothing was applied.
                    return Err(HttpError::Unavailable {
                        service: self.name,
                        attempts: attempt,
                        last: transport_error(e),
                        maybe_applied: false,
                    });
                }
                Err(e) => {
                    // A connection that never opened did not deliver the request.
                    let sent = !e.is_connect();
                    let verdict = if retry == Retry::Idempotent || !sent {
                        Verdict::Retry {
                            wait: None,
                            maybe_applied: sent,
                        }
                    } else {
                        Verdict::Fail
                    };
                    let what = if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        transport_error(e)
                    };
                    if verdict == Verdict::Fail {
                        return Err(HttpError::Unavailable {
                            service: self.name,
                            attempts: attempt,
                            last: what,
                            maybe_applied: true,
                        });
                    }
                    (verdict, what, None)
                }
            };
            match verdict {
                Verdict::Done => unreachable!("returned above"),
                Verdict::Auth | Verdict::Fail => {
                    let resp = response.expect("a status verdict comes from a response");
                    let status = resp.status().as_u16();
                    let ambiguous = resp.status().is_server_error() || status == 408;
                    let body = error_body(resp).await;
                    let message = error_message(&body).unwrap_or_else(|| reason(status));
                    return Err(if verdict == Verdict::Auth {
                        HttpError::Auth {
                            service: self.name,
                            status,
                            message,
                        }
                    } else if ambiguous {
                        HttpError::Unavailable {
                            service: self.name,
                            attempts: attempt,
                            last: format!("HTTP {status}: {message}"),
                            maybe_applied: true,
                        }
                    } else {
                        HttpError::Status {
                            service: self.name,
                            status,
                            message,
                        }
                    });
                }
                Verdict::Retry {
                    wait,
                    maybe_applied,
                } => {
                    let last = match response {
                        Some(resp) => {
                            let status = resp.status().as_u16();
                            let body = error_body(resp).await;
                            format!(
                                "HTTP {status}: {}",
                                error_message(&body).unwrap_or_else(|| reason(status))
                            )
                        }
                        None => last,
                    };
                    if attempt >= self.policy.max_attempts {
                        return Err(HttpError::Unavailable {
                            service: self.name,
                            attempts: attempt,
                            last,
                            maybe_applied,
                        });
                    }
                    let delay = match wait {
                        Some(w) if w > self.policy.max_wait => {
                            return Err(HttpError::Unavailable {
                                service: self.name,
                                attempts: attempt,
                                last: format!(
                                    "{last}; the server asked to wait {}, more than the {} s allowed",
                                    describe_wait(w),
                                    self.policy.max_wait.as_secs()
                                ),
                                maybe_applied,
                            });
                        }
                        Some(w) => w + jitter(Duration::from_millis(100)),
                        None => self.backoff(attempt),
                    };
                    tracing::debug!(
                        service = self.name,
                        attempt,
                        ?delay,
                        "retrying after {last}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Full-jitter exponential backoff for the attempt that just failed.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        jitter(exp.min(self.policy.max_backoff)).max(Duration::from_millis(1))
    }

    /// Wait for the server-side pacing window, then for the local limiter.
    async fn wait_turn(&self) {
        let not_before = self.not_before.lock().map(|g| *g).unwrap_or(None);
        if let Some(t) = not_before {
            tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// Read `X-RateLimit-Remaining` / `-Reset` and spread the calls left over the window.
    fn pace(&self, headers: &HeaderMap) {
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset = reset_delay(headers);
        let (Some(remaining), Some(reset)) = (remaining, reset) else {
            return;
        };
        let limit = header_u64(headers, "x-ratelimit-limit").unwrap_or(0);
        // Pace only in the last tenth of the budget (or when it is gone).
        let low = remaining == 0
            || (limit > 0 && remaining.saturating_mul(10) <= limit)
            || (limit == 0 && remaining <= 2);
        if !low {
            return;
        }
        let gap = if remaining == 0 {
            reset
        } else {
            reset / u32::try_from(remaining.saturating_add(1)).unwrap_or(u32::MAX)
        };
        if let Ok(mut slot) = self.not_before.lock() {
            let gap = gap.min(self.policy.max_wait);
            let t = Instant::now().checked_add(gap).unwrap_or_else(Instant::now);
            *slot = Some(slot.map_or(t, |old| old.max(t)));
        }
        tracing::debug!(
            service = self.name,
            remaining,
            ?gap,
            "rate limit low: pacing calls"
        );
    }
}

/// Follow a redirect only to the origin (scheme, host and port) the request went to, at most 5
/// times: reqwest strips `Authorization` on a cross-host redirect but not `DD-API-KEY` or
/// `DD-APPLICATION-KEY`, so a redirect elsewhere is refused and nothing is sent there.
fn same_origin_redirects(service: &'static str) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        let next = attempt.url().origin();
        if first.is_some_and(|f| f != next) {
            let to = next.ascii_serialization();
            attempt.error(format!(
                "{service} redirected to another host ({to}); refused, so the credentials are not sent there"
            ))
        } else if attempt.previous().len() > 5 {
            attempt.error(format!("{service} redirected more than 5 times"))
        } else {
            attempt.follow()
        }
    })
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
pub async fn read_body_capped(mut response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
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
async fn error_body(response: Response) -> String {
    read_body_capped(response, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The retry decision for one HTTP status.
fn classify(status: StatusCode, headers: &HeaderMap, retry: Retry) -> Verdict {
    let code = status.as_u16();
    match code {
        200..=299 => Verdict::Done,
        401 | 403 => Verdict::Auth,
        // A 429 was refused before any work: always safe to repeat.
        429 => Verdict::Retry {
            wait: retry_after(headers).or_else(|| reset_delay(headers)),
            maybe_applied: false,
        },
        408 | 500..=599 if retry == Retry::Idempotent => Verdict::Retry {
            wait: retry_after(headers),
            maybe_applied: true,
        },
        _ => Verdict::Fail,
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return server_wait(secs);
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

/// `X-RateLimit-Reset`: seconds until the window resets (Datadog), or an ISO 8601 time (Jira).
fn reset_delay(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        // Seconds from now; a value this large is an epoch timestamp instead.
        if secs.is_finite() && secs > 1_000_000_000.0 {
            let now = chrono::Utc::now().timestamp() as f64;
            return server_wait((secs - now).max(0.0));
        }
        return server_wait(secs);
    }
    // Jira documents `yyyy-MM-ddTHH:mmZ` (no seconds); accept full RFC 3339 as well.
    let at = chrono::DateTime::parse_from_rfc3339(raw)
        .or_else(|_| chrono::DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M%#z"))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%MZ")
                .map(|t| t.and_utc().fixed_offset())
        })
        .ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

/// A server-given wait in seconds, checked: not a number or negative is no wait at all (the
/// policy's own backoff applies); infinite or too large for a `Duration` is `Duration::MAX`,
/// which is past any deadline, so the call fails with a clear message instead of panicking.
fn server_wait(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// A wait for a message: seconds, or "an unbounded time" for a value no clock could reach.
fn describe_wait(w: Duration) -> String {
    if w.as_secs() > 100 * 365 * 24 * 3600 {
        "an unbounded time".to_string()
    } else {
        format!("{} s", w.as_secs())
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn jitter(max: Duration) -> Duration {
    max.mul_f64(fastrand::f64())
}

fn reason(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status")
        .to_string()
}

/// A transport error without the URL's query (which may carry a cursor) and without headers.
fn transport_error(e: reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

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

    #[test]
    fn waits_come_from_the_headers_each_api_sends() {
        let dd = headers(&[("x-ratelimit-reset", "7")]);
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &dd, Retry::SafeOnly),
            Verdict::Retry {
                wait: Some(Duration::from_secs(7)),
                maybe_applied: false
            }
        );
        let jira = headers(&[("retry-after", "3")]);
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &jira, Retry::Idempotent),
            Verdict::Retry {
                wait: Some(Duration::from_secs(3)),
                maybe_applied: true
            }
        );
        let at = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
        let iso = headers(&[("x-ratelimit-reset", &at)]);
        let w = reset_delay(&iso).unwrap();
        assert!(
            w > Duration::from_secs(28) && w <= Duration::from_secs(30),
            "{w:?}"
        );
        // Jira's documented form has minutes only.
        let later = (chrono::Utc::now() + chrono::Duration::minutes(10)).format("%Y-%m-%dT%H:%MZ");
        let minutes = headers(&[("x-ratelimit-reset", &later.to_string())]);
        let w = reset_delay(&minutes).unwrap();
        assert!(
            w > Duration::from_secs(530) && w <= Duration::from_secs(600),
            "{w:?}"
        );
    }

    #[test]
    fn unsafe_writes_are_not_retried_on_ambiguous_statuses() {
        let none = HeaderMap::new();
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, &none, Retry::SafeOnly),
            Verdict::Fail
        );
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &none, Retry::Idempotent),
            Verdict::Retry { .. }
        ));
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &none, Retry::Idempotent),
            Verdict::Auth
        );
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &none, Retry::Idempotent),
            Verdict::Fail
        );
    }
}

#[cfg(test)]
mod hostile_wait_tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn absurd_server_waits_never_panic_and_are_past_any_deadline() {
        for raw in ["1e30", "inf", "99999999999999999999", "1e400"] {
            for name in ["retry-after", "x-ratelimit-reset"] {
                let mut h = HeaderMap::new();
                h.insert(name, HeaderValue::from_str(raw).unwrap());
                let w = retry_after(&h).or_else(|| reset_delay(&h)).unwrap();
                assert!(
                    w > Duration::from_secs(365 * 24 * 3600),
                    "{name}: {raw} gave {w:?}"
                );
            }
        }
        for raw in ["NaN", "-1", "-inf"] {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_str(raw).unwrap());
            h.insert("x-ratelimit-reset", HeaderValue::from_str(raw).unwrap());
            assert_eq!(retry_after(&h), None, "{raw}");
            assert_eq!(reset_delay(&h), None, "{raw}");
        }
    }
}

#[cfg(test)]
mod hostile_pacing_tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn absurd_rate_limit_headers_on_a_success_never_panic_and_pace_at_most_max_wait() {
        let service = Service::new("Datadog", None, RetryPolicy::default()).unwrap();
        for (remaining, limit, reset) in [
            ("18446744073709551615", "18446744073709551615", "1e30"),
            ("4294967295", "18446744073709551615", "inf"),
            ("0", "0", "99999999999999999999"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                "x-ratelimit-remaining",
                HeaderValue::from_str(remaining).unwrap(),
            );
            h.insert("x-ratelimit-limit", HeaderValue::from_str(limit).unwrap());
            h.insert("x-ratelimit-reset", HeaderValue::from_str(reset).unwrap());
            service.pace(&h);
            let until = service.not_before.lock().unwrap().expect("paced");
            assert!(
                until <= Instant::now() + service.policy.max_wait,
                "{remaining} {reset}"
            );
        }
    }
}
