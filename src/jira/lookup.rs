//! Batched ticket lookups: the labels of many problems resolved by one JQL search.
//!
//! In: lookups, each the labels of one problem (its own label first, then its old or merged
//! labels). Out: per lookup, the issues of the batch it went out in ([`Batch`]); the caller maps
//! them back to its problem by their labels. A failed batch answers every lookup in it with
//! Jira's own error (so a refusal of the credentials stays fatal); a lookup whose search task
//! ended without an answer is searched again alone by its caller.
//!
//! Gathering: a lookup a leader waits for goes out at once when nothing is gathered or in flight
//! (the first is never delayed); otherwise it joins the gathered ones, which go out together
//! [`WINDOW`] after the first of them arrived, or at once when they fill a chunk. A prefetch
//! (a problem that has a leader but no worker slot yet) always waits to be gathered; the leader
//! that then needs it sends whatever is gathered at once. A chunk holds at most [`CHUNK_LABELS`]
//! labels and [`CHUNK_JQL_CHARS`] characters of labels: the search is a POST (Cloud
//! `search/jql`, Server `search`), so no URL limit applies, and this keeps the JQL far below
//! what Jira parses.
//!
//! Every search runs in a task of the run's (`tasks`), in a group of its own: [`Lookups::stop`]
//! tells them all to stop (no leader is left to start, or an interrupt's grace period is over),
//! and from then on a lookup is not gathered but searched alone by its caller.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::oneshot;

use super::model::Issue;
use crate::tasks::{TaskGroup, Tasks};

/// How long gathered lookups wait for more to join them.
pub const WINDOW: Duration = Duration::from_millis(3);
/// Most labels in one search.
pub const CHUNK_LABELS: usize = 100;
/// Most characters of quoted labels in one search's JQL.
pub const CHUNK_JQL_CHARS: usize = 6000;

/// The issues one batched search found, for every lookup that went out in it.
#[derive(Debug)]
pub struct Batch {
    pub issues: Vec<Issue>,
    /// The batch held one problem's lookup: an issue without labels (a server that did not
    /// return the field) can only be that problem's.
    pub alone: bool,
}

/// The batch a lookup went out in, or the search's error: each lookup of a failed batch gets a
/// copy, so a refusal of the credentials stays fatal for every one.
pub type Answer = Result<Arc<Batch>, super::JiraError>;

/// One problem's lookup, waiting for its batch.
#[derive(Debug)]
pub struct Waiter {
    pub labels: Vec<String>,
    pub tx: oneshot::Sender<Answer>,
}

#[derive(Debug, Default)]
struct Gather {
    queued: Vec<Waiter>,
    labels: usize,
    chars: usize,
    /// A task will send what is gathered when the window ends.
    timer: bool,
    /// Searches sent and not yet answered.
    in_flight: usize,
    /// Told to stop: nothing is gathered any more.
    stopped: bool,
}

/// A prefetched lookup: the labels it covers, when it was queued, and its answer to come.
#[derive(Debug)]
pub struct Prefetched {
    pub labels: Vec<String>,
    pub at: Instant,
    pub rx: oneshot::Receiver<Answer>,
}

/// The gathering state, the search tasks and the prefetched lookups of one Jira client.
#[derive(Debug)]
pub struct Lookups {
    gather: Mutex<Gather>,
    /// Where the searches run: a group of the run's tasks.
    tasks: TaskGroup,
    /// Own label → a lookup queued before its leader got a worker slot.
    pub prefetched: DashMap<String, Prefetched>,
    /// Batched searches sent (for tests and the benchmark).
    searches: std::sync::atomic::AtomicU64,
}

/// What to do after a lookup was queued: send these chunks now, and start a window timer.
#[derive(Debug, Default)]
pub struct Plan {
    pub send: Vec<Vec<Waiter>>,
    pub start_timer: bool,
}

fn quoted_len(labels: &[String]) -> usize {
    labels.iter().map(|l| l.len() + 4).sum()
}

/// Searches in tasks of an owner of their own: a client outside a run (`triage check`, tests).
impl Default for Lookups {
    fn default() -> Self {
        Lookups::new(Tasks::new().group())
    }
}

impl Lookups {
    /// Lookups whose searches run in `tasks`.
    pub fn new(tasks: TaskGroup) -> Self {
        Lookups {
            gather: Mutex::default(),
            tasks,
            prefetched: DashMap::new(),
            searches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Queue `waiter`. `urgent`: a leader waits for it (sent at once when nothing else is
    /// gathered or in flight).
    pub fn queue(&self, waiter: Waiter, urgent: bool) -> Plan {
        let Ok(mut g) = self.gather.lock() else {
            // A poisoned lock: the lookup's sender is dropped and its caller searches alone.
            return Plan::default();
        };
        let mut plan = Plan::default();
        if g.stopped {
            // Nobody would send it: the sender is dropped and its caller searches alone.
            return plan;
        }
        if urgent && g.queued.is_empty() && g.in_flight == 0 {
            g.in_flight += 1;
            plan.send.push(vec![waiter]);
            return plan;
        }
        let (n, c) = (waiter.labels.len(), quoted_len(&waiter.labels));
        if !g.queued.is_empty() && (g.labels + n > CHUNK_LABELS || g.chars + c > CHUNK_JQL_CHARS) {
            // This one would overflow the chunk: the gathered ones go now.
            plan.send.push(take(&mut g));
        }
        g.queued.push(waiter);
        g.labels += n;
        g.chars += c;
        if g.labels >= CHUNK_LABELS || g.chars >= CHUNK_JQL_CHARS {
            plan.send.push(take(&mut g));
        } else if !g.timer {
            g.timer = true;
            plan.start_timer = true;
        }
        g.in_flight += plan.send.len();
        plan
    }

    /// Send whatever is gathered now (a leader waits for one of them, or the window ended).
    pub fn flush(&self, window_ended: bool) -> Option<Vec<Waiter>> {
        let mut g = self.gather.lock().ok()?;
        if window_ended {
            g.timer = false;
        }
        if g.queued.is_empty() {
            return None;
        }
        g.in_flight += 1;
        Some(take(&mut g))
    }

    /// Whether a lookup whose own label is `label` is still gathered (not sent).
    pub fn is_queued(&self, label: &str) -> bool {
        self.gather.lock().is_ok_and(|g| {
            g.queued
                .iter()
                .any(|w| w.labels.first().is_some_and(|l| l == label))
        })
    }

    /// A search finished.
    pub fn done(&self) {
        if let Ok(mut g) = self.gather.lock() {
            g.in_flight = g.in_flight.saturating_sub(1);
        }
        self.searches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Batched searches answered so far.
    pub fn searches(&self) -> u64 {
        self.searches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Run `work` in a task of the run's.
    pub fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Tell every search still running to stop, forget what was gathered and gather nothing
    /// more: their callers (if any are left) search alone. The run waits for the tasks.
    pub fn stop(&self) {
        if let Ok(mut g) = self.gather.lock() {
            take(&mut g);
            g.timer = false;
            g.stopped = true;
        }
        self.prefetched.clear();
        self.tasks.stop();
    }
}

fn take(g: &mut Gather) -> Vec<Waiter> {
    g.labels = 0;
    g.chars = 0;
    std::mem::take(&mut g.queued)
}

/// The labels of a chunk of lookups, each once, in order.
pub fn union(chunk: &[Waiter]) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for w in chunk {
        for l in &w.labels {
            if seen.insert(l.as_str()) {
                labels.push(l.clone());
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(labels: &[&str]) -> (Waiter, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        (
            Waiter {
                labels: labels.iter().map(|l| l.to_string()).collect(),
                tx,
            },
            rx,
        )
    }

    #[test]
    fn the_first_urgent_lookup_goes_at_once_and_the_next_ones_gather() {
        let l = Lookups::default();
        let plan = l.queue(waiter(&["triage-a"]).0, true);
        assert_eq!(plan.send.len(), 1);
        assert!(!plan.start_timer);
        // One in flight: the next urgent ones gather behind a single timer.
        let plan = l.queue(waiter(&["triage-b"]).0, true);
        assert!(plan.send.is_empty() && plan.start_timer);
        let plan = l.queue(waiter(&["triage-c", "triage-c0"]).0, true);
        assert!(plan.send.is_empty() && !plan.start_timer);
        assert!(l.is_queued("triage-c") && !l.is_queued("triage-c0"));
        let sent = l.flush(true).expect("two gathered");
        assert_eq!(union(&sent), ["triage-b", "triage-c", "triage-c0"]);
        assert!(l.flush(true).is_none());
    }

    #[test]
    fn a_full_chunk_goes_at_once_and_never_exceeds_the_limits() {
        let l = Lookups::default();
        let mut sent = Vec::new();
        for i in 0..250 {
            let label = format!("triage-{i:016x}");
            let plan = l.queue(waiter(&[&label, &format!("{label}-old")]).0, false);
            sent.extend(plan.send);
        }
        sent.extend(l.flush(true));
        let sizes: Vec<usize> = sent.iter().map(|c| union(c).len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 500);
        assert!(sizes.iter().all(|&n| n <= CHUNK_LABELS), "{sizes:?}");
        assert_eq!(sizes.len(), 5, "{sizes:?}");
        // Long labels: the JQL length bounds the chunk instead.
        let long = "x".repeat(240);
        let l = Lookups::default();
        let mut sent = Vec::new();
        for i in 0..60 {
            sent.extend(l.queue(waiter(&[&format!("{long}{i}")]).0, false).send);
        }
        sent.extend(l.flush(true));
        assert!(sent
            .iter()
            .all(|c| quoted_len(&union(c)) <= CHUNK_JQL_CHARS));
        assert!(sent.len() >= 3);
    }
}
