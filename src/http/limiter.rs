//! The rate limit of one service: a `governor` limiter (calls per second) before every attempt,
//! and pacing from the service's own rate-limit headers: when `X-RateLimit-Remaining` runs low
//! the next calls are spread over what is left of the window, and at zero they wait for the
//! reset (never longer than the policy's longest wait).
//!
//! In: the configured rate and each response's headers. Out: [`Limiter::wait_turn`], which
//! resolves when the next attempt may start. Cannot fail.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;

use super::retry::{header_u64, reset_delay};

/// The limiter and pacing state of one service (shared by its clones).
#[derive(Debug)]
pub struct Limiter {
    name: &'static str,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Earliest moment the next call may start (from the server's rate-limit headers).
    not_before: Mutex<Option<Instant>>,
    /// Longest pause the headers may impose.
    max_wait: Duration,
}

impl Limiter {
    pub fn new(name: &'static str, rate: Option<NonZeroU32>, max_wait: Duration) -> Self {
        Limiter {
            name,
            limiter: rate.map(|r| RateLimiter::direct(Quota::per_second(r))),
            not_before: Mutex::new(None),
            max_wait,
        }
    }

    /// Wait for the server-side pacing window, then for the local limiter.
    pub async fn wait_turn(&self) {
        let not_before = self.not_before.lock().map(|g| *g).unwrap_or(None);
        if let Some(t) = not_before {
            tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// Read `X-RateLimit-Remaining` / `-Reset` and spread the calls left over the window.
    pub fn pace(&self, headers: &HeaderMap) {
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
            let gap = gap.min(self.max_wait);
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

#[cfg(test)]
mod hostile_pacing_tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn absurd_rate_limit_headers_on_a_success_never_panic_and_pace_at_most_max_wait() {
        let limiter = Limiter::new("Datadog", None, Duration::from_secs(120));
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
            limiter.pace(&h);
            let until = limiter.not_before.lock().unwrap().expect("paced");
            assert!(
                until <= Instant::now() + Duration::from_secs(120),
                "{remaining} {reset}"
            );
        }
    }
}
