//! `--max-tickets`: how many tickets one run may create, granted in the order a sequential run
//! would grant them.

use std::sync::Mutex;

/// An exact cap on tickets created in one run, granted in arrival order.
///
/// Every leader gets a *turn* from the pipeline when it becomes leader, in ingest order
/// ([`TicketCap::register`]). A leader that needs a new ticket asks for a place
/// ([`TicketCap::acquire`]) and gets one exactly when fewer than `max` tickets were created by
/// earlier turns: the answer a sequential run would give. It is granted at once when the earlier
/// turns cannot reach the cap even if every one of them creates, refused at once when they
/// already did, and otherwise waits for the earlier turns to settle. A leader that finds its
/// problem's ticket never takes a place ([`TicketCap::not_needed`]).
///
/// No deadlock: turns are handed out in the order leaders get worker slots, so the earliest
/// unsettled turn is always running, and it waits on nothing.
#[derive(Debug)]
pub struct TicketCap {
    max: u64,
    turns: Mutex<CapTurns>,
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct CapTurns {
    /// Turns not yet decided: they may still take a place.
    undecided: std::collections::BTreeSet<u64>,
    /// Turns holding a place while their create is at Jira.
    reserved: std::collections::BTreeSet<u64>,
    /// Turns whose ticket was created (at most `max` of them).
    created: std::collections::BTreeSet<u64>,
}

/// What the cap says to a turn right now.
enum CapAnswer {
    Grant,
    Refuse,
    Wait,
}

impl TicketCap {
    pub fn new(max: u64) -> Self {
        TicketCap {
            max,
            turns: Mutex::new(CapTurns::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, CapTurns> {
        // A panic while holding this lock leaves the sets as they were: still consistent.
        self.turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new leader, with its turn (turns are registered in increasing order).
    pub fn register(&self, turn: u64) {
        self.turns().undecided.insert(turn);
    }

    fn answer(&self, t: &mut CapTurns, turn: u64) -> CapAnswer {
        if !t.undecided.contains(&turn) {
            // Abandoned (its leader is over): it takes no place.
            return CapAnswer::Refuse;
        }
        let created = t.created.range(..turn).count() as u64;
        if created >= self.max {
            return CapAnswer::Refuse;
        }
        let may_create = created
            + t.reserved.range(..turn).count() as u64
            + t.undecided.range(..turn).count() as u64;
        if may_create < self.max {
            CapAnswer::Grant
        } else {
            CapAnswer::Wait
        }
    }

    /// A place under the cap for `turn`, decided as a sequential run would: true when granted
    /// (give it back with [`TicketCap::release`] if the create fails, confirm it with
    /// [`TicketCap::commit`]), false when earlier turns created `max` tickets.
    pub async fn acquire(&self, turn: u64) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change after it wakes this wait.
            changed.as_mut().enable();
            {
                let mut t = self.turns();
                match self.answer(&mut t, turn) {
                    CapAnswer::Grant => {
                        t.undecided.remove(&turn);
                        t.reserved.insert(turn);
                        return true;
                    }
                    CapAnswer::Refuse => {
                        t.undecided.remove(&turn);
                        drop(t);
                        self.changed.notify_waiters();
                        return false;
                    }
                    CapAnswer::Wait => {}
                }
            }
            changed.await;
        }
    }

    /// `turn` needs no place (its ticket exists, or its problem is muted).
    pub fn not_needed(&self, turn: u64) {
        let removed = {
            let mut t = self.turns();
            t.undecided.remove(&turn) | t.reserved.remove(&turn)
        };
        if removed {
            self.changed.notify_waiters();
        }
    }

    /// Give `turn`'s place back: its create failed, nothing was made. Its problem's next leader
    /// takes a new turn.
    pub fn release(&self, turn: u64) {
        self.not_needed(turn);
    }

    /// `turn`'s ticket was created.
    pub fn commit(&self, turn: u64) {
        let moved = {
            let mut t = self.turns();
            let was = t.reserved.remove(&turn) | t.undecided.remove(&turn);
            if was {
                t.created.insert(turn);
            }
            was
        };
        if moved {
            self.changed.notify_waiters();
        }
    }

    /// `turn`'s Jira work is over: a place it still holds stays taken (its create may have gone
    /// through), a turn that never decided takes none.
    pub fn settle(&self, turn: u64) {
        let changed = {
            let mut t = self.turns();
            if t.reserved.remove(&turn) {
                t.created.insert(turn);
                true
            } else {
                t.undecided.remove(&turn)
            }
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// `turn`'s leader is over (finished, failed or cancelled): if it never decided, it takes no
    /// place. A place it holds is settled by its Jira work, which is still finishing.
    pub fn abandon(&self, turn: u64) {
        let removed = self.turns().undecided.remove(&turn);
        if removed {
            self.changed.notify_waiters();
        }
    }
}
