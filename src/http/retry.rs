//! Whether to retry, and how long to wait: kept apart from the sending itself.
//!
//! In: an attempt's status and headers, and the policy. Out: a [`Verdict`] (done, retry after a
//! wait, auth failure, fail) and the backoff for an attempt. 429 waits for `Retry-After`
//! (seconds or an HTTP date) or `X-RateLimit-Reset` (seconds for Datadog, an ISO 8601 time for
//! Jira); 408 and 5xx back off exponentially with full jitter, honouring `Retry-After` when a
//! 503 sends one. A request sent with [`Retry::SafeOnly`] is retried only when it certainly did
//! not reach the server. Pure functions: nothing here fails.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

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

/// What to do with one attempt's result.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    Done,
    /// Retry after at least this long (a server-given wait), else after the policy's backoff.
    Retry {
        wait: Option<Duration>,
        maybe_applied: bool,
    },
    Auth,
    Fail,
}

/// Full-jitter exponential backoff for the attempt that just failed.
pub(super) fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_backoff
        .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
    jitter(exp.min(policy.max_backoff)).max(Duration::from_millis(1))
}

/// The retry decision for one HTTP status.
pub(super) fn classify(status: StatusCode, headers: &HeaderMap, retry: Retry) -> Verdict {
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

/// The wall clock a server's dates are compared with: always the system's, whatever clock the
/// run reads (the server stamped them by its own real clock).
fn wall_now() -> chrono::DateTime<chrono::Utc> {
    crate::clock::Clock::system().now()
}

/// `Retry-After`: seconds, or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        return server_wait(secs);
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - wall_now())
            .to_std()
            .unwrap_or_default(),
    )
}

/// `X-RateLimit-Reset`: seconds until the window resets (Datadog), or an ISO 8601 time (Jira).
pub(super) fn reset_delay(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<f64>() {
        // Seconds from now; a value this large is an epoch timestamp instead.
        if secs.is_finite() && secs > 1_000_000_000.0 {
            let now = wall_now().timestamp() as f64;
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
        (at.with_timezone(&chrono::Utc) - wall_now())
            .to_std()
            .unwrap_or_default(),
    )
}

pub(super) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

pub(super) fn jitter(max: Duration) -> Duration {
    max.mul_f64(fastrand::f64())
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
pub(super) fn describe_wait(w: Duration) -> String {
    if w.as_secs() > 100 * 365 * 24 * 3600 {
        "an unbounded time".to_string()
    } else {
        format!("{} s", w.as_secs())
    }
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
