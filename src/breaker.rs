//! A circuit breaker per service: after K consecutive failures, stop calling for a cool-off,
//! then let one probe through; its success closes the circuit, its failure reopens it.
//!
//! A "failure" is a call the HTTP layer gave up on (retries exhausted: 5xx, timeouts, no
//! connection). A 4xx is the request's fault, not the service's, and does not count. While the
//! circuit is open, calls fail at once, so the logs that needed them are marked failed (and kept
//! for the next run's retry) instead of hammering a service that is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else waits for its verdict by failing fast.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
    trips: AtomicU64,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
            trips: AtomicU64::new(0),
        }
    }

    /// May a call go out now? `Err(remaining)` while the circuit is open.
    pub fn allow(&self) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            State::HalfOpen => Err(Duration::ZERO),
        }
    }

    pub fn success(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::Closed { failures: 0 };
        }
    }

    pub fn failure(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let open = match *state {
            State::Closed { failures } if failures + 1 >= self.threshold => true,
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen => true,
            State::Open { .. } => false,
        };
        if open {
            *state = State::Open {
                until: Instant::now() + self.cooldown,
            };
            self.trips.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How many times the circuit opened.
    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::SeqCst)
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_k_failures_probes_after_the_cooloff_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            assert!(b.allow().is_ok());
            b.failure();
        }
        assert!(b.allow().is_ok(), "two failures are not enough");
        b.failure();
        assert!(b.allow().is_err(), "the third opens it");
        assert_eq!(b.trips(), 1);
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow().is_ok(), "one probe after the cool-off");
        assert!(b.allow().is_err(), "only one");
        b.failure();
        assert!(b.allow().is_err(), "a failed probe reopens it");
        assert_eq!(b.trips(), 2);
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow().is_ok());
        b.success();
        assert!(b.allow().is_ok() && b.allow().is_ok(), "closed again");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failure();
        b.success();
        b.failure();
        assert!(b.allow().is_ok());
    }
}
