//! The run's interrupt: the `shutdown` future `run` is given (Ctrl-C / SIGTERM in the binary,
//! anything in tests), made something every phase can listen to.
//!
//! In: the future and the grace period (`--shutdown-grace`). Out: [`Shutdown::fired`] (stop
//! starting work), [`Shutdown::signalled`] (wait for the interrupt), and
//! [`Shutdown::bounded`] (let work in flight finish, but not past the grace period after an
//! interrupt). Cannot fail. A second signal ending the process at once is the binary's job.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

/// The interrupt of one run.
pub struct Shutdown<'a> {
    signal: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    fired_at: Option<Instant>,
    grace: Duration,
}

impl std::fmt::Debug for Shutdown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("fired_at", &self.fired_at)
            .field("grace", &self.grace)
            .finish()
    }
}

impl<'a> Shutdown<'a> {
    pub fn new(signal: impl Future<Output = ()> + Send + 'a, grace: Duration) -> Self {
        Shutdown {
            signal: Box::pin(signal),
            fired_at: None,
            grace,
        }
    }

    /// Whether the interrupt came (as far as anyone has looked).
    pub fn fired(&self) -> bool {
        self.fired_at.is_some()
    }

    /// Resolves when the interrupt comes; at once if it already came.
    pub async fn signalled(&mut self) {
        if self.fired_at.is_none() {
            (&mut self.signal).await;
            self.fired_at = Some(Instant::now());
        }
    }

    /// Resolves when the grace period after the interrupt is over; never before it.
    pub async fn grace_over(&mut self) {
        self.signalled().await;
        if let Some(at) = self.fired_at {
            tokio::time::sleep_until(at + self.grace).await;
        }
    }

    /// The next thing the interrupt does: come (`came` false), or, once it came, end its grace
    /// period. For a loop that stops starting work when the interrupt comes and drops what is
    /// in flight when the grace period ends.
    pub async fn next_step(&mut self, came: bool) {
        if came {
            self.grace_over().await;
        } else {
            self.signalled().await;
        }
    }

    /// Run `work` to its end, unless an interrupt comes and its grace period ends first
    /// (`None`: `work` was dropped).
    pub async fn bounded<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            out = work => Some(out),
            () = self.grace_over() => None,
        }
    }

    /// Check, without waiting, whether the interrupt has come.
    pub fn poll_now(&mut self) -> bool {
        if self.fired_at.is_none() {
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            if self.signal.as_mut().poll(&mut cx).is_ready() {
                self.fired_at = Some(Instant::now());
            }
        }
        self.fired()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_in_flight_gets_the_grace_period_and_no_more() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let grace = Duration::from_millis(200);
        let mut shutdown = Shutdown::new(
            async {
                let _ = rx.await;
            },
            grace,
        );
        // Short work finishes whatever happens.
        assert_eq!(shutdown.bounded(async { 7 }).await, Some(7));
        assert!(!shutdown.poll_now());
        tx.send(()).unwrap();
        let started = Instant::now();
        let slow = tokio::time::sleep(Duration::from_secs(30));
        assert_eq!(shutdown.bounded(slow).await, None);
        assert!(shutdown.fired());
        let took = started.elapsed();
        assert!(took >= grace && took < Duration::from_secs(5), "{took:?}");
        // Work quicker than what is left of the grace period still finishes.
        let mut shutdown = Shutdown::new(async {}, Duration::from_secs(10));
        shutdown.signalled().await;
        let quick = tokio::time::sleep(Duration::from_millis(20));
        assert_eq!(shutdown.bounded(quick).await, Some(()));
    }
}
