//! The one way out to the network: rate limit → attempt with timeout → decide → back off.
//!
//! One folder, one concern per file: `limiter` (calls per second and header pacing), `retry`
//! (whether and how long to wait), `request` (what a failure is); the order limiter → attempt
//! → decide → back off is fixed here, in [`Service::send`].
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
//! All of it inside the deadline of the log being worked on (a task-local, set where the log's
//! task is spawned: `tasks::TaskGroup::spawn_with_deadline`): the attempt timeout shrinks to
//! what is left, and a retry or a server-requested wait that would end past the deadline is
//! not started; the call fails at once instead. A call cancelled midway (its log's deadline,
//! an interrupt) counts as a failure for the circuit breaker.
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

mod limiter;
mod request;
mod retry;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{RequestBuilder, Response};

use crate::breaker::Breaker;
pub use limiter::LimiterWait;

pub use limiter::Limiter;
use request::{error_body, reason, transport_error};
pub use request::{error_message, read_body_capped, BodyError, HttpError};
use retry::{backoff, classify, describe_wait, jitter, Verdict};
pub use retry::{Retry, RetryPolicy};

tokio::task_local! {
    /// The deadline of the log whose work is running: no attempt, retry or server-requested
    /// wait of any service goes past it.
    static DEADLINE: tokio::time::Instant;
}

/// Run `work` under `deadline`: every call it makes through a [`Service`] ends by then. Work
/// is given its deadline where its task is spawned (`tasks::TaskGroup::spawn_with_deadline`),
/// so nothing has to set it again inside.
pub(crate) async fn with_deadline<F: std::future::Future>(
    deadline: tokio::time::Instant,
    work: F,
) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The deadline of the work running on this task, if it has one.
pub fn current_deadline() -> Option<tokio::time::Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Records a failure with the breaker if the call is dropped before it settles.
struct BreakerVerdict<'a> {
    breaker: &'a Breaker,
    settled: bool,
}

impl Drop for BreakerVerdict<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.failure();
        }
    }
}

/// One outbound service: its client, its limiter, its retry policy, its pacing state.
#[derive(Debug, Clone)]
pub struct Service {
    name: &'static str,
    client: reqwest::Client,
    limiter: Arc<Limiter>,
    policy: RetryPolicy,
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
            limiter: Arc::new(Limiter::new(name, rate, policy.max_wait)),
            policy,
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

    /// The rate this service's calls start at now: the configured one, or lower while the
    /// server pushes back (see `limiter`).
    pub fn current_rate(&self) -> Option<f64> {
        self.limiter.current_rate()
    }

    /// The configured rate and the wall time calls waited on it, when the limiter is on.
    pub fn limiter_wait(&self) -> Option<LimiterWait> {
        let rate = self.limiter.rate()?;
        Some(LimiterWait {
            service: self.name,
            limit: rate.get(),
            waited_ms: u64::try_from(self.limiter.held().as_millis()).unwrap_or(u64::MAX),
        })
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
        // A call dropped before it settles (its log's deadline, an interrupt) counts as a
        // failure: otherwise a cancelled probe would leave the circuit half-open for good.
        let mut verdict = BreakerVerdict {
            breaker,
            settled: false,
        };
        let result = self.send_with_retries(build, retry).await;
        verdict.settled = true;
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
        let deadline = current_deadline();
        loop {
            attempt += 1;
            let timeout = self.take_turn(deadline, retry, attempt).await?;
            let result = build(&self.client).timeout(timeout).send().await;
            let (verdict, last, response) = match self.judge(result, retry, attempt)? {
                Judged::Done(resp) => return Ok(resp),
                Judged::Again(verdict, last, response) => (verdict, last, response),
            };
            match verdict {
                Verdict::Done => unreachable!("judged done above"),
                Verdict::Auth | Verdict::Fail => {
                    let resp = response.expect("a status verdict comes from a response");
                    return Err(self.refused(verdict, resp, attempt).await);
                }
                Verdict::Retry {
                    wait,
                    maybe_applied,
                } => {
                    let last = match response {
                        Some(resp) => {
                            let (status, message) = status_message(resp).await;
                            format!("HTTP {status}: {message}")
                        }
                        None => last,
                    };
                    let delay =
                        self.retry_delay(wait, deadline, attempt, last.clone(), maybe_applied)?;
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

    /// The error for a call the log's deadline leaves no time to try again.
    fn past_deadline(&self, attempts: u32, last: String, maybe_applied: bool) -> HttpError {
        HttpError::Unavailable {
            service: self.name,
            attempts,
            last: format!("{last}; the log's deadline (--timeout) leaves no time to try again"),
            maybe_applied,
        }
    }

    /// Wait for the rate limit's turn, within the deadline; the time the attempt may take.
    async fn take_turn(
        &self,
        deadline: Option<tokio::time::Instant>,
        retry: Retry,
        attempt: u32,
    ) -> Result<Duration, HttpError> {
        let Some(d) = deadline else {
            self.limiter.wait_turn().await;
            return Ok(self.policy.attempt_timeout);
        };
        if tokio::time::timeout_at(d, self.limiter.wait_turn())
            .await
            .is_err()
        {
            return Err(self.past_deadline(attempt - 1, "waited for the rate limit".into(), false));
        }
        let left = d.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(self.past_deadline(attempt - 1, "no attempt left".into(), false));
        }
        // A write that must not be repeated blindly (a Jira create) is not cut off once sent:
        // cutting it would lose the answer, not the ticket.
        Ok(match retry {
            Retry::Idempotent => left.min(self.policy.attempt_timeout),
            Retry::SafeOnly => self.policy.attempt_timeout,
        })
    }

    /// What one attempt's result means: done, or a verdict with what to say of it (and the
    /// response, for its body). A transport failure that must not be retried is an error.
    fn judge(
        &self,
        result: reqwest::Result<Response>,
        retry: Retry,
        attempt: u32,
    ) -> Result<Judged, HttpError> {
        match result {
            Ok(resp) => {
                let status = resp.status();
                self.limiter.observe(status.as_u16(), resp.headers());
                let verdict = classify(status, resp.headers(), retry);
                if verdict == Verdict::Done {
                    return Ok(Judged::Done(resp));
                }
                Ok(Judged::Again(
                    verdict,
                    format!("HTTP {}", status.as_u16()),
                    Some(resp),
                ))
            }
            // A refused redirect (another host, or too many): trying again would be refused the
            // same way. The server answered, so nothing was applied.
            Err(e) if e.is_redirect() => Err(HttpError::Unavailable {
                service: self.name,
                attempts: attempt,
                last: transport_error(e),
                maybe_applied: false,
            }),
            Err(e) => {
                // A connection that never opened did not deliver the request.
                let sent = !e.is_connect();
                let what = if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    transport_error(e)
                };
                if retry == Retry::Idempotent || !sent {
                    let verdict = Verdict::Retry {
                        wait: None,
                        maybe_applied: sent,
                    };
                    Ok(Judged::Again(verdict, what, None))
                } else {
                    Err(HttpError::Unavailable {
                        service: self.name,
                        attempts: attempt,
                        last: what,
                        maybe_applied: true,
                    })
                }
            }
        }
    }

    /// The error for a response that is not retried: refused credentials, a 5xx or 408 that
    /// may have been applied, or another status, with the server's own message.
    async fn refused(&self, verdict: Verdict, resp: Response, attempt: u32) -> HttpError {
        let ambiguous = resp.status().is_server_error() || resp.status().as_u16() == 408;
        let (status, message) = status_message(resp).await;
        if verdict == Verdict::Auth {
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
        }
    }

    /// How long to wait before the next attempt (the server's wait, or backoff), or the error
    /// when attempts, the longest wait allowed or the deadline leave none.
    fn retry_delay(
        &self,
        wait: Option<Duration>,
        deadline: Option<tokio::time::Instant>,
        attempt: u32,
        last: String,
        maybe_applied: bool,
    ) -> Result<Duration, HttpError> {
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
            None => backoff(&self.policy, attempt),
        };
        if deadline.is_some_and(|d| tokio::time::Instant::now() + delay >= d) {
            return Err(self.past_deadline(attempt, last, maybe_applied));
        }
        Ok(delay)
    }
}

/// A failed response's status and what the server said of it (its error message, else the
/// status's reason).
async fn status_message(resp: Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = error_body(resp).await;
    (
        status,
        error_message(&body).unwrap_or_else(|| reason(status)),
    )
}

/// One attempt, judged: done, or to be retried or refused (`Verdict`), with what to say of it.
enum Judged {
    Done(Response),
    Again(Verdict, String, Option<Response>),
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
