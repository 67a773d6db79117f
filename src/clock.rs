//! The wall clock: where every `DateTime<Utc>` "now" of the program comes from.
//!
//! In: nothing (the system clock), or a time a test sets and moves by hand. Out: [`Clock`], a
//! cheap handle to clone into each component that reads the time for a decision or a record
//! (the checked `Config` carries the run's; the state stores, the ticket stage, the run's
//! record and `check` read it). Cannot fail.
//!
//! The clock at run time is always the system's: the state a run writes is read by other runs
//! and, on a shared PostgreSQL store, by other hosts, which compare its times with theirs. A
//! [`ManualClock`] is for tests: a time to live or a cooldown passes by moving it, without
//! sleeping. `--now` is not a clock: it fixes the run's window (`Config::now`) and nothing
//! else. Monotonic time (`Instant`: timings, deadlines, the rate limiter) does not go through
//! here.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// Where "now" comes from: the system clock, or a [`ManualClock`]'s hand.
#[derive(Clone, Default)]
pub struct Clock(Source);

#[derive(Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that stands at `at` until it is moved, with the hand that moves it.
    pub fn manual(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    /// The time now.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Source::System => Utc::now(),
            Source::Manual(at) => *at.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::System => f.write_str("Clock::System"),
            Source::Manual(_) => write!(f, "Clock::Manual({})", self.now().to_rfc3339()),
        }
    }
}

/// The hand of a manual clock (tests): every [`Clock`] taken from it reads the time it is set
/// to, and sees it move.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock that reads this hand's time.
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    /// The time the hand shows.
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set the time (back as well as forward).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Move the time by `by` (back, when negative).
    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_its_clones_see_it_move() {
        let hand = Clock::manual(at("2026-11-23T09:00:00Z"));
        let clock = hand.clock();
        let copy = clock.clone();
        assert_eq!(clock.now(), at("2026-11-23T09:00:00Z"));
        hand.advance(Duration::days(7) + Duration::seconds(1));
        assert_eq!(copy.now(), at("2026-11-30T09:00:01Z"));
        hand.set(at("2026-01-01T00:00:00Z"));
        assert_eq!((clock.now(), hand.now()), (hand.now(), copy.now()));
        assert_eq!(
            format!("{clock:?}"),
            "Clock::Manual(2026-01-01T00:00:00+00:00)"
        );
    }

    #[test]
    fn the_default_clock_is_the_system_one() {
        let before = Utc::now();
        let read = Clock::default().now();
        assert!(before <= read && read <= Utc::now());
        assert_eq!(format!("{:?}", Clock::system()), "Clock::System");
    }
}
