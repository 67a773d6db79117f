//! The rate limit of one service: a `governor` limiter (calls per second) before every attempt,
//! and pacing from the service's own rate-limit headers: when `X-RateLimit-Remaining` runs low
//! the next calls are spread over what is left of the window, and at zero they wait for the
//! reset (never longer than the policy's longest wait).
//!
//! The quota is one call every `1.02/R` seconds (rounded up to the nanosecond) with a burst of
//! one, so no one-second window ever holds more than `R` calls, from the first second on: `R + 1`
//! calls need `R` gaps of at least `1.02/R` s, 1.02 s (see [`quota`]). The 2 % margin keeps the
//! ceiling where the server counts too, when calls reach it up to 20 ms unevenly (connection
//! set-up, scheduling), and still uses 98 % of the limit.
//!
//! On top of that, the rate adapts to the server (AIMD, per service): a 429 halves the rate
//! calls start at (multiplicative decrease, down to [`MIN_RATE`]); a success whose headers say
//! few calls remain lowers it to what is left of the window (`X-RateLimit-Remaining` over the
//! seconds to `X-RateLimit-Reset`, or `-Period` when no reset is sent), and Jira's
//! `X-RateLimit-NearLimit: true` lowers it by a quarter, both before any 429; every
//! other success raises it by a twentieth of its ceiling (additive increase) until it is back at
//! the ceiling: the configured `--rate-limit`, or, with the limiter off, the rate calls were
//! starting at when the server first pushed back (then the adaptation switches itself off
//! again). While lowered, calls start at least `1 / rate` apart. Waits the server asks for
//! (`Retry-After`, a reset) are the retry layer's; they are never counted as the local limit's.
//!
//! In: the configured rate and each response's status and headers. Out: [`Limiter::wait_turn`],
//! which resolves when the next attempt may start, [`Limiter::current_rate`], and
//! [`Limiter::held`], the wall time during which at least one call was held back by the local
//! limit. Cannot fail.

use std::collections::VecDeque;
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
    /// The configured calls per second, if the limiter is on.
    rate: Option<NonZeroU32>,
    /// Calls waiting on the local limiter now, and since when one has been waiting.
    held: Mutex<Held>,
    /// The rate adapted to the server's answers.
    aimd: Mutex<Aimd>,
}

/// Lowest rate the adaptation goes down to (calls per second).
pub const MIN_RATE: f64 = 0.2;
/// Successes that bring the rate from nothing back to its ceiling (additive increase).
const INCREASE_STEPS: f64 = 20.0;

/// The adaptive rate (additive increase, multiplicative decrease) of one service.
#[derive(Debug, Default)]
struct Aimd {
    /// The rate calls start at while the server pushes back; `None`: not lowered.
    current: Option<f64>,
    /// What the rate climbs back to: the configured rate, else the rate observed when the
    /// server first pushed back.
    ceiling: Option<f64>,
    /// Earliest start of the next call while lowered.
    next: Option<Instant>,
    /// Starts of the calls of the last second (to know the rate when no limit is configured).
    recent: VecDeque<Instant>,
}

impl Aimd {
    fn note_start(&mut self, now: Instant) {
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
    }

    /// The rate now: lowered, else the ceiling, else the configured rate, else what the last
    /// second saw.
    fn base(&self, configured: Option<f64>) -> f64 {
        self.current
            .or(self.ceiling)
            .or(configured)
            .unwrap_or(self.recent.len() as f64)
            .max(MIN_RATE)
    }

    fn lower_to(&mut self, rate: f64, configured: Option<f64>) {
        if self.ceiling.is_none() {
            self.ceiling = Some(self.base(configured));
        }
        let rate = rate.max(MIN_RATE);
        self.current = Some(self.current.map_or(rate, |c| c.min(rate)));
    }

    fn increase(&mut self, configured: Option<f64>) {
        let (Some(c), Some(ceiling)) = (self.current, self.ceiling) else {
            return;
        };
        let next = c + ceiling / INCREASE_STEPS;
        if next >= ceiling {
            self.current = None;
            self.next = None;
            if configured.is_none() {
                // Back where it was before the server pushed back: adaptation off again.
                self.ceiling = None;
            }
        } else {
            self.current = Some(next);
        }
    }
}

/// Nanoseconds that `R` gaps between `R + 1` calls span at least: a second and 2 %.
const SPAN: u64 = 1_020_000_000;

/// Wall time during which at least one call waited on the local limiter.
#[derive(Debug, Default)]
struct Held {
    waiting: u32,
    since: Option<Instant>,
    total: Duration,
}

/// The quota for `rate` calls per second: one cell every `ceil(1.02e9 / rate)` ns, burst one.
///
/// With a burst of one, consecutive calls are at least one period apart, so `R + 1` calls span
/// at least `R` periods; rounding the period up makes that at least [`SPAN`] (over a second),
/// hence at most `R` calls in any half-open one-second window, even with up to 20 ms of jitter
/// on the way to the server.
pub fn quota(rate: NonZeroU32) -> Quota {
    let nanos = SPAN.div_ceil(u64::from(rate.get()));
    Quota::with_period(Duration::from_nanos(nanos))
        .expect("the period of a positive rate is at least one nanosecond")
}

impl Limiter {
    pub fn new(name: &'static str, rate: Option<NonZeroU32>, max_wait: Duration) -> Self {
        Limiter {
            name,
            limiter: rate.map(|r| RateLimiter::direct(quota(r))),
            not_before: Mutex::new(None),
            max_wait,
            rate,
            held: Mutex::new(Held::default()),
            aimd: Mutex::new(Aimd::default()),
        }
    }

    /// The rate calls start at now: lowered by the server's answers, else the configured one.
    pub fn current_rate(&self) -> Option<f64> {
        let lowered = self.aimd.lock().ok().and_then(|a| a.current);
        lowered.or(self.rate.map(|r| f64::from(r.get())))
    }

    fn configured(&self) -> Option<f64> {
        self.rate.map(|r| f64::from(r.get()))
    }

    /// Adapt the rate to one response: a 429 halves it; a success with few calls left lowers it
    /// to what the window allows (and paces, see [`Limiter::pace`]); any other success raises it
    /// by a step toward its ceiling.
    pub fn observe(&self, status: u16, headers: &HeaderMap) {
        let configured = self.configured();
        let low = self.pace(headers);
        let Ok(mut aimd) = self.aimd.lock() else {
            return;
        };
        if status == 429 {
            let halved = aimd.base(configured) / 2.0;
            aimd.lower_to(halved, configured);
            tracing::debug!(
                service = self.name,
                rate = aimd.current,
                reason = headers
                    .get("ratelimit-reason")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                "429: rate halved"
            );
        } else if let Some(allowed) = low {
            aimd.lower_to(allowed, configured);
        } else if near_limit(headers) {
            // Jira Cloud: less than a fifth of the budget is left.
            let eased = aimd.base(configured) * 0.75;
            aimd.lower_to(eased, configured);
        } else if (200..300).contains(&status) {
            aimd.increase(configured);
        }
    }

    /// The configured calls per second, if the limiter is on.
    pub fn rate(&self) -> Option<NonZeroU32> {
        self.rate
    }

    /// Wall time during which at least one call waited on the local limiter (so far).
    pub fn held(&self) -> Duration {
        self.held.lock().map_or(Duration::ZERO, |h| {
            h.total + h.since.map_or(Duration::ZERO, |s| s.elapsed())
        })
    }

    /// Wait for the server-side pacing window, then for the local limiter.
    pub async fn wait_turn(&self) {
        let not_before = self.not_before.lock().map(|g| *g).unwrap_or(None);
        if let Some(t) = not_before {
            tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
        }
        // While lowered, calls start at least 1 / rate apart (a slot is reserved here).
        let slot = self.aimd.lock().ok().and_then(|mut a| {
            let now = Instant::now();
            a.note_start(now);
            let rate = a.current?;
            let start = a.next.map_or(now, |n| n.max(now));
            a.next = start.checked_add(Duration::from_secs_f64(1.0 / rate));
            (start > now).then_some(start)
        });
        if let Some(t) = slot {
            tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
        }
        if let Some(limiter) = &self.limiter {
            if limiter.check().is_ok() {
                return;
            }
            let _guard = HeldGuard::enter(&self.held);
            limiter.until_ready().await;
        }
    }

    /// Read `X-RateLimit-Remaining` / `-Reset` (or `-Period`) and spread the calls left over
    /// the window. Returns the rate the window allows when few calls remain.
    pub fn pace(&self, headers: &HeaderMap) -> Option<f64> {
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset = reset_delay(headers).or_else(|| {
            header_u64(headers, "x-ratelimit-period").map(|p| Duration::from_secs(p.min(86_400)))
        });
        let (Some(remaining), Some(reset)) = (remaining, reset) else {
            return None;
        };
        let limit = header_u64(headers, "x-ratelimit-limit").unwrap_or(0);
        // Pace only in the last tenth of the budget (or when it is gone).
        let low = remaining == 0
            || (limit > 0 && remaining.saturating_mul(10) <= limit)
            || (limit == 0 && remaining <= 2);
        if !low {
            return None;
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
        let window = reset.min(self.max_wait).as_secs_f64().max(1.0);
        Some(remaining.max(1) as f64 / window)
    }
}

/// `X-RateLimit-NearLimit: true`: Jira Cloud's sign that less than a fifth of the budget is left.
fn near_limit(headers: &HeaderMap) -> bool {
    headers
        .get("x-ratelimit-nearlimit")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Counts one waiting call for as long as it lives (also when the wait is cancelled).
struct HeldGuard<'a>(&'a Mutex<Held>);

impl<'a> HeldGuard<'a> {
    fn enter(held: &'a Mutex<Held>) -> Self {
        if let Ok(mut h) = held.lock() {
            if h.waiting == 0 {
                h.since = Some(Instant::now());
            }
            h.waiting += 1;
        }
        HeldGuard(held)
    }
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut h) = self.0.lock() {
            h.waiting = h.waiting.saturating_sub(1);
            if h.waiting == 0 {
                if let Some(since) = h.since.take() {
                    h.total += since.elapsed();
                }
            }
        }
    }
}

/// How long calls to one service waited on its local rate limit (wall time during which at
/// least one call was held back).
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct LimiterWait {
    pub service: &'static str,
    /// `--rate-limit`: calls per second.
    pub limit: u32,
    pub waited_ms: u64,
}

impl LimiterWait {
    /// Whether this wait bounded a run that took `elapsed`: at least 100 ms and a tenth of it.
    pub fn bounded(&self, elapsed: std::time::Duration) -> bool {
        let waited = std::time::Duration::from_millis(self.waited_ms);
        waited >= std::time::Duration::from_millis(100) && waited * 10 >= elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::{Clock, FakeRelativeClock};

    /// Greedy callers against the quota on a fake clock: every call goes through as soon as
    /// the limiter allows. Returns the instants (ns) of the first `calls` permitted calls.
    fn greedy(rate: u32, calls: usize) -> Vec<u64> {
        let clock = FakeRelativeClock::default();
        let rate = NonZeroU32::new(rate).expect("test rates are positive");
        let limiter = RateLimiter::direct_with_clock(quota(rate), clock.clone());
        let mut at = Vec::with_capacity(calls);
        while at.len() < calls {
            match limiter.check() {
                Ok(()) => at.push(Duration::from(clock.now()).as_nanos() as u64),
                Err(not_until) => clock.advance(not_until.wait_time_from(clock.now())),
            }
        }
        at
    }

    /// The most calls in any half-open one-second window `[t, t + 1 s)`.
    fn most_in_any_second(at: &[u64]) -> usize {
        let mut most = 0;
        let mut lo = 0;
        for hi in 0..at.len() {
            while at[hi] - at[lo] >= 1_000_000_000 {
                lo += 1;
            }
            most = most.max(hi - lo + 1);
        }
        most
    }

    #[test]
    fn no_second_holds_more_than_the_rate_from_the_first_on() {
        for rate in [1, 3, 7, 10, 20, 100, 999] {
            let at = greedy(rate, rate as usize * 5 + 1);
            let first_second = at.iter().filter(|&&t| t < 1_000_000_000).count();
            assert!(first_second <= rate as usize, "rate {rate}: first second");
            assert!(
                first_second * 100 >= rate as usize * 97,
                "rate {rate}: first second"
            );
            assert!(most_in_any_second(&at) <= rate as usize, "rate {rate}");
            // Still at most R when a call reaches the server 19 ms late (without the margin
            // the R calls after it would share its second).
            let jittered: Vec<u64> = at
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    t + if i % (rate as usize + 1) == 0 {
                        19_000_000
                    } else {
                        0
                    }
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            assert!(
                most_in_any_second(&jittered) <= rate as usize,
                "rate {rate} + jitter"
            );
        }
    }

    #[test]
    fn the_limit_is_used_not_just_respected() {
        // 5 R + 1 calls take 5.1 seconds (to the nanosecond rounding): 98 % of the limit.
        for rate in [3, 10, 20] {
            let at = greedy(rate, rate as usize * 5 + 1);
            let span = at[at.len() - 1] - at[0];
            assert!(span <= 5 * SPAN + 5 * rate as u64, "rate {rate}: {span} ns");
        }
    }

    #[test]
    fn a_default_burst_would_break_the_ceiling() {
        // The check above can fail: governor's per-second quota starts with a full bucket.
        let clock = FakeRelativeClock::default();
        let rate = NonZeroU32::new(20).expect("positive");
        let limiter = RateLimiter::direct_with_clock(Quota::per_second(rate), clock.clone());
        let mut at = Vec::new();
        while at.len() < 60 {
            match limiter.check() {
                Ok(()) => at.push(Duration::from(clock.now()).as_nanos() as u64),
                Err(n) => clock.advance(n.wait_time_from(clock.now())),
            }
        }
        assert!(most_in_any_second(&at) > 20);
    }

    #[test]
    fn aimd_halves_on_push_back_and_climbs_back_by_twentieths() {
        let mut a = Aimd::default();
        a.lower_to(a.base(Some(10.0)) / 2.0, Some(10.0));
        assert_eq!((a.current, a.ceiling), (Some(5.0), Some(10.0)));
        a.lower_to(a.base(Some(10.0)) / 2.0, Some(10.0));
        assert_eq!(a.current, Some(2.5));
        let mut steps = 0;
        while a.current.is_some() {
            a.increase(Some(10.0));
            steps += 1;
        }
        // 2.5 → 10 in steps of 0.5: 15 steps; the ceiling stays the configured rate.
        assert_eq!((steps, a.ceiling), (15, Some(10.0)));
        // Never below the floor, however often it is halved.
        for _ in 0..100 {
            a.lower_to(a.base(Some(10.0)) / 2.0, Some(10.0));
        }
        assert_eq!(a.current, Some(MIN_RATE));
    }

    #[test]
    fn jiras_near_limit_header_eases_the_rate_and_plain_successes_restore_it() {
        let limiter = Limiter::new("Jira", NonZeroU32::new(20), Duration::from_secs(120));
        let mut near = HeaderMap::new();
        near.insert("x-ratelimit-nearlimit", "true".parse().unwrap());
        limiter.observe(200, &near);
        assert_eq!(limiter.current_rate(), Some(15.0));
        limiter.observe(200, &HeaderMap::new());
        assert_eq!(limiter.current_rate(), Some(16.0));
        for _ in 0..4 {
            limiter.observe(200, &HeaderMap::new());
        }
        assert_eq!(limiter.current_rate(), Some(20.0));
    }

    #[tokio::test]
    async fn time_held_back_is_measured_as_wall_time() {
        let limiter = Limiter::new("test", NonZeroU32::new(50), Duration::from_secs(1));
        assert_eq!(limiter.rate().map(|r| r.get()), Some(50));
        // The first call passes at once; the next ten wait about 20 ms each, one after another.
        let started = Instant::now();
        futures::future::join_all((0..11).map(|_| limiter.wait_turn())).await;
        let elapsed = started.elapsed();
        let held = limiter.held();
        assert!(held >= Duration::from_millis(150), "{held:?}");
        assert!(held <= elapsed, "{held:?} > {elapsed:?}");
        let off = Limiter::new("test", None, Duration::from_secs(1));
        off.wait_turn().await;
        assert_eq!(off.held(), Duration::ZERO);
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
