//! The deduplicator: one live leader per fingerprint, every other log parked or resolved.
//!
//! In: `claim(fingerprint, log)` from the ingest loop, one log at a time in arrival order, so
//! which log leads a problem never depends on the worker count or on scheduling. Out:
//! - `Lead(log)`: the first log of a fingerprint (or the first after its leader failed with
//!   nobody waiting) leads: it is the only one that takes a worker slot;
//! - `Parked`: the fingerprint has a live leader; the log waits here, with no task, no slot and
//!   no deadline of its own;
//! - `Resolved(value, log)`: the leader already finished; the log is done at once.
//!
//! When a leader resolves, its parked logs are handed back (`resolve`); when it fails, the next
//! parked log becomes the leader (`fail`), so nobody waits forever. Owned by the one ingest loop:
//! no locks. Memory: one slot per distinct fingerprint (the resolution), plus the parked logs
//! of problems whose leader is still working.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

enum Slot<T, P> {
    /// A leader is working; these logs wait for it, oldest first.
    Leading(VecDeque<P>),
    /// The leader finished; every later log gets this.
    Resolved(T),
}

/// What `claim` says about a log.
#[derive(Debug)]
pub enum Claim<T, P> {
    Lead(P),
    Parked,
    Resolved(T, P),
}

/// Every fingerprint of this run.
pub struct Deduplicator<K, T, P> {
    slots: HashMap<K, Slot<T, P>>,
    parked: usize,
}

impl<K: Eq + Hash + Clone, T: Clone, P> Default for Deduplicator<K, T, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone, T: Clone, P> Deduplicator<K, T, P> {
    pub fn new() -> Self {
        Deduplicator {
            slots: HashMap::new(),
            parked: 0,
        }
    }

    /// Claim a fingerprint for `log`.
    pub fn claim(&mut self, key: &K, log: P) -> Claim<T, P> {
        match self.slots.get_mut(key) {
            None => {
                self.slots
                    .insert(key.clone(), Slot::Leading(VecDeque::new()));
                Claim::Lead(log)
            }
            Some(Slot::Leading(waiting)) => {
                waiting.push_back(log);
                self.parked += 1;
                Claim::Parked
            }
            Some(Slot::Resolved(value)) => Claim::Resolved(value.clone(), log),
        }
    }

    /// The leader of `key` finished with `value`: every later log gets it; the parked ones are
    /// returned, oldest first.
    pub fn resolve(&mut self, key: &K, value: T) -> VecDeque<P> {
        let parked = match self.slots.insert(key.clone(), Slot::Resolved(value)) {
            Some(Slot::Leading(waiting)) => waiting,
            _ => VecDeque::new(),
        };
        self.parked -= parked.len();
        parked
    }

    /// The leader of `key` failed: the oldest parked log leads next (returned); with none
    /// parked, the next log of `key` to arrive leads.
    pub fn fail(&mut self, key: &K) -> Option<P> {
        match self.slots.get_mut(key) {
            Some(Slot::Leading(waiting)) => match waiting.pop_front() {
                Some(next) => {
                    self.parked -= 1;
                    Some(next)
                }
                None => {
                    self.slots.remove(key);
                    None
                }
            },
            _ => None,
        }
    }

    /// The run stops: the parked logs of `key` are handed back unresolved.
    pub fn abandon(&mut self, key: &K) -> VecDeque<P> {
        match self.slots.remove(key) {
            Some(Slot::Leading(waiting)) => {
                self.parked -= waiting.len();
                waiting
            }
            Some(resolved) => {
                self.slots.insert(key.clone(), resolved);
                VecDeque::new()
            }
            None => VecDeque::new(),
        }
    }

    /// Logs parked now, over all fingerprints.
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Number of distinct fingerprints claimed so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_log_leads_later_ones_park_and_get_the_resolution() {
        let mut d: Deduplicator<&str, u32, u32> = Deduplicator::new();
        assert!(matches!(d.claim(&"a", 1), Claim::Lead(1)));
        assert!(matches!(d.claim(&"a", 2), Claim::Parked));
        assert!(matches!(d.claim(&"b", 3), Claim::Lead(3)));
        assert!(matches!(d.claim(&"a", 4), Claim::Parked));
        assert_eq!(d.parked(), 2);
        assert_eq!(d.resolve(&"a", 70), VecDeque::from([2, 4]));
        assert_eq!(d.parked(), 0);
        assert!(matches!(d.claim(&"a", 5), Claim::Resolved(70, 5)));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_failed_leader_hands_over_to_the_oldest_parked_log_then_to_the_next_arrival() {
        let mut d: Deduplicator<&str, u32, u32> = Deduplicator::new();
        assert!(matches!(d.claim(&"a", 1), Claim::Lead(1)));
        assert!(matches!(d.claim(&"a", 2), Claim::Parked));
        assert!(matches!(d.claim(&"a", 3), Claim::Parked));
        assert_eq!(d.fail(&"a"), Some(2));
        assert_eq!(d.fail(&"a"), Some(3));
        assert_eq!(d.fail(&"a"), None);
        assert!(matches!(d.claim(&"a", 4), Claim::Lead(4)));
        assert_eq!(d.abandon(&"a"), VecDeque::new());
        assert_eq!(d.parked(), 0);
    }
}
