//! The concurrent deduplicator: one live leader per fingerprint, every other log a follower.
//!
//! In: `claim(fingerprint)` from any number of tasks. Out: a `Claim::Leader` for the first log of
//! a fingerprint in this run (it analyzes and files the ticket, then `resolve`s with the result),
//! or a `Claim::Follower` that `wait`s for that result. If a leader is dropped without resolving
//! (its log failed, timed out, or panicked), the slot becomes vacant and exactly one waiting or
//! later follower is promoted to leader; the others keep waiting. Nobody waits forever: a leader
//! either resolves or is dropped, and a drop always wakes the followers.
//!
//! Each fingerprint has one `tokio::sync::watch` channel holding its state; state changes go
//! through the channel's own lock (`send_if_modified`), so "vacant → leading" is a single atomic
//! step and two followers can never both be promoted. Memory grows with the number of distinct
//! fingerprints, not with the number of logs.

use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

#[derive(Debug, Clone)]
enum Slot<T> {
    /// A leader is working on it.
    Leading,
    /// The leader finished; every follower gets this.
    Resolved(T),
    /// The last leader gave up; the next claimant leads.
    Vacant,
}

/// Tracks every fingerprint seen in this run.
pub struct Deduplicator<K, T> {
    slots: DashMap<K, Arc<watch::Sender<Slot<T>>>>,
}

/// What `claim` hands out.
#[derive(Debug)]
pub enum Claim<T> {
    Leader(LeaderGuard<T>),
    Follower(Follower<T>),
}

/// Held by the one live leader of a fingerprint. Dropping it unresolved vacates the slot.
#[derive(Debug)]
pub struct LeaderGuard<T> {
    slot: Arc<watch::Sender<Slot<T>>>,
    resolved: bool,
}

/// A log whose fingerprint already has a leader.
#[derive(Debug)]
pub struct Follower<T> {
    slot: Arc<watch::Sender<Slot<T>>>,
}

/// How a follower's wait ended.
#[derive(Debug)]
pub enum Followed<T> {
    /// The leader resolved the fingerprint.
    Resolved(T),
    /// The leader gave up and this follower now leads.
    Promoted(LeaderGuard<T>),
}

impl<K: Eq + Hash + Clone, T: Clone> Default for Deduplicator<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Deduplicator<K, T> {
    pub fn new() -> Self {
        Deduplicator {
            slots: DashMap::new(),
        }
    }

    /// Claim a fingerprint: the first claimant (or the first after a leader gave up) leads.
    pub fn claim(&self, key: &K) -> Claim<T> {
        let slot = match self.slots.entry(key.clone()) {
            dashmap::Entry::Vacant(entry) => {
                let (tx, _) = watch::channel(Slot::Leading);
                let slot = Arc::new(tx);
                entry.insert(slot.clone());
                return Claim::Leader(LeaderGuard::new(slot));
            }
            dashmap::Entry::Occupied(entry) => entry.get().clone(),
        };
        if take_vacant(&slot) {
            Claim::Leader(LeaderGuard::new(slot))
        } else {
            Claim::Follower(Follower { slot })
        }
    }

    /// The resolution of a fingerprint, if its leader has finished.
    pub fn resolution(&self, key: &K) -> Option<T> {
        let slot = self.slots.get(key)?;
        let state = slot.borrow();
        match &*state {
            Slot::Resolved(t) => Some(t.clone()),
            _ => None,
        }
    }

    /// Number of distinct fingerprints claimed so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Atomically turn a vacant slot into a led one; true if this caller now leads.
fn take_vacant<T>(slot: &watch::Sender<Slot<T>>) -> bool {
    slot.send_if_modified(|state| {
        if matches!(state, Slot::Vacant) {
            *state = Slot::Leading;
            true
        } else {
            false
        }
    })
}

impl<T> LeaderGuard<T> {
    fn new(slot: Arc<watch::Sender<Slot<T>>>) -> Self {
        LeaderGuard {
            slot,
            resolved: false,
        }
    }

    /// Publish the result to every follower, now and later.
    pub fn resolve(mut self, value: T) {
        self.resolved = true;
        self.slot.send_replace(Slot::Resolved(value));
    }
}

impl<T> Drop for LeaderGuard<T> {
    fn drop(&mut self) {
        if !self.resolved {
            self.slot.send_replace(Slot::Vacant);
        }
    }
}

impl<T: Clone> Follower<T> {
    /// Wait until the fingerprint is resolved, or until this follower is promoted to leader.
    pub async fn wait(self) -> Followed<T> {
        let mut rx = self.slot.subscribe();
        loop {
            if let Slot::Resolved(t) = &*rx.borrow_and_update() {
                return Followed::Resolved(t.clone());
            }
            if take_vacant(&self.slot) {
                return Followed::Promoted(LeaderGuard::new(self.slot));
            }
            // The sender lives as long as `self.slot`, so `changed` cannot fail.
            if rx.changed().await.is_err() {
                unreachable!("the follower holds the sender");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sixty_four_tasks_over_a_thousand_logs_elect_exactly_ten_leaders() {
        let dedup: Arc<Deduplicator<u32, String>> = Arc::new(Deduplicator::new());
        let leaders = Arc::new(AtomicUsize::new(0));
        let live = Arc::new(DashMap::<u32, usize>::new());
        let logs: Arc<Vec<u32>> = Arc::new((0..1000u32).map(|i| (i * 7919) % 10).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (dedup, leaders, live, logs, next) = (
                dedup.clone(),
                leaders.clone(),
                live.clone(),
                logs.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&fp) = logs.get(i) else { break };
                    let ticket = match dedup.claim(&fp) {
                        Claim::Leader(guard) => {
                            leaders.fetch_add(1, Ordering::SeqCst);
                            *live.entry(fp).or_default() += 1;
                            assert_eq!(*live.get(&fp).unwrap(), 1, "two live leaders for {fp}");
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            *live.get_mut(&fp).unwrap() -= 1;
                            let key = format!("OPS-{fp}");
                            guard.resolve(key.clone());
                            key
                        }
                        Claim::Follower(f) => match f.wait().await {
                            Followed::Resolved(key) => key,
                            Followed::Promoted(_) => panic!("no leader failed, nobody is promoted"),
                        },
                    };
                    results.push((fp, ticket));
                }
                results
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        assert_eq!(all.len(), 1000);
        assert_eq!(leaders.load(Ordering::SeqCst), 10);
        assert!(all.iter().all(|(fp, key)| *key == format!("OPS-{fp}")));
        assert_eq!(dedup.len(), 10);
    }

    #[tokio::test]
    async fn a_failed_leader_hands_over_to_exactly_one_follower() {
        let dedup: Arc<Deduplicator<&str, u32>> = Arc::new(Deduplicator::new());
        let Claim::Leader(first) = dedup.claim(&"fp") else {
            panic!("first claim leads")
        };
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let Claim::Follower(f) = dedup.claim(&"fp") else {
                panic!("later claims follow")
            };
            waiting.push(tokio::spawn(f.wait()));
        }
        tokio::task::yield_now().await;
        drop(first); // the leader's log failed
        let mut promoted = Vec::new();
        let mut others = Vec::new();
        for w in waiting {
            // Each wait must end: either promoted now, or resolved by the promoted one below.
            match tokio::time::timeout(Duration::from_millis(50), w).await {
                Ok(Ok(Followed::Promoted(g))) => promoted.push(g),
                Ok(Ok(Followed::Resolved(_))) => panic!("nothing resolved yet"),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => others.push(()),
            }
        }
        assert_eq!(promoted.len(), 1, "exactly one follower takes over");
        promoted.pop().unwrap().resolve(7);
        assert_eq!(dedup.resolution(&"fp"), Some(7));
        match dedup.claim(&"fp") {
            Claim::Follower(f) => assert!(matches!(f.wait().await, Followed::Resolved(7))),
            Claim::Leader(_) => panic!("a resolved fingerprint has no new leader"),
        }
    }

    #[tokio::test]
    async fn a_later_log_leads_when_the_leader_failed_before_any_follower_came() {
        let dedup: Deduplicator<&str, u32> = Deduplicator::new();
        let Claim::Leader(first) = dedup.claim(&"fp") else {
            panic!()
        };
        drop(first);
        assert!(matches!(dedup.claim(&"fp"), Claim::Leader(_)));
    }

    #[tokio::test]
    async fn followers_wake_when_every_leader_fails_in_turn() {
        let dedup: Arc<Deduplicator<&str, u32>> = Arc::new(Deduplicator::new());
        let Claim::Leader(first) = dedup.claim(&"fp") else {
            panic!()
        };
        let followers: Vec<_> = (0..3)
            .map(|_| match dedup.claim(&"fp") {
                // Each promoted follower fails at once (drops its guard), like its leader did.
                Claim::Follower(f) => {
                    tokio::spawn(async move { matches!(f.wait().await, Followed::Promoted(_)) })
                }
                Claim::Leader(_) => panic!(),
            })
            .collect();
        drop(first);
        // Every follower is promoted in turn and fails too; none hangs.
        for f in followers {
            let promoted = tokio::time::timeout(Duration::from_secs(1), f)
                .await
                .unwrap()
                .unwrap();
            assert!(promoted);
        }
    }
}
