//! Where logs and leaders wait inside the run loop: logs of young templates held until the
//! input ends (`Held`), a log waiting to lead or parked behind its leader (`Pending`), and new
//! problems waiting for the input's end before their tickets are looked up (`Deferral`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::leader::{follower, Pending};
use crate::dedup::{Claim, Deduplicator};
use crate::event::LogEvent;
use crate::grouping::fingerprint::{self, Fingerprint};
use crate::grouping::TemplateMiner;
use crate::outcome::Resolution;
use crate::pipeline::collector::Collector;
use crate::ticket::known::{Tally, Whole};
use crate::ticket::TicketStage;

/// Logs of *young* templates (born beside a sibling in their family, see `grouping`), held
/// back until the input ends: by then the template may have merged into its sibling, and its
/// logs join the sibling's ticket instead of filing one that the merge would leave behind.
#[derive(Default)]
pub(super) struct Held {
    pub(super) logs: Vec<(Fingerprint, Pending)>,
    pub(super) fingerprints: HashSet<Fingerprint>,
}

impl Held {
    pub(super) fn holds(&self, fp: &Fingerprint) -> bool {
        self.fingerprints.contains(fp)
    }

    pub(super) fn hold(&mut self, fp: Fingerprint, pending: Pending) {
        self.fingerprints.insert(fp.clone());
        self.logs.push((fp, pending));
    }

    /// Everything held goes on, in arrival order, under the fingerprint its template stands for
    /// now (the sibling's, when it merged), as a leader or behind one.
    pub(super) fn release(
        &mut self,
        miner: &TemplateMiner,
        dedup: &mut Deduplicator<Fingerprint, Arc<Resolution>, Pending>,
        waiting: &mut VecDeque<(Fingerprint, Pending)>,
        collector: &mut Collector,
        tickets: Option<&TicketStage>,
        deferring: bool,
    ) -> anyhow::Result<()> {
        self.fingerprints.clear();
        for (fp, mut p) in std::mem::take(&mut self.logs) {
            let now = miner.resolve(&fp);
            if now != fp {
                if let Some(tickets) = tickets {
                    // A ticket found under the young label (or the log's masking-only one)
                    // still counts.
                    let old = fingerprint::fingerprint(&p.event).fingerprint;
                    tickets.search_also(&now, &[fp.clone(), old]);
                }
                if let Some(t) = miner.shared_template(&now) {
                    p.template = t.clone();
                }
            }
            match dedup.claim(&now, p) {
                Claim::Lead(p) => {
                    if let (Some(tickets), false) = (tickets, deferring) {
                        tickets.prefetch(&now);
                    }
                    waiting.push_back((now, p));
                }
                Claim::Parked => {}
                Claim::Resolved(res, p) => collector.add(follower(p, now, res))?,
            }
        }
        Ok(())
    }
}

/// New problems wait before their tickets are looked up and filed (see [`Deferral`]).
pub(super) struct Deferral {
    /// Still deferring: leaders wait in the queue, unsent and not looked up.
    pub(super) on: bool,
    /// When the first leader began to wait: the deferral ends `max` after it.
    pub(super) since: Option<tokio::time::Instant>,
    pub(super) max: Duration,
    /// Per fingerprint (as each log was given it), the logs taken so far.
    pub(super) tallies: HashMap<Fingerprint, Tally>,
}

impl Deferral {
    pub(super) fn new(on: bool, max: Duration) -> Self {
        Deferral {
            on,
            since: None,
            max,
            tallies: HashMap::new(),
        }
    }

    /// When the deferral ends at the latest, once a leader waits.
    pub(super) fn deadline(&self) -> Option<tokio::time::Instant> {
        self.since.filter(|_| self.on).map(|s| s + self.max)
    }

    /// One more log of `fp`, taken from the source.
    pub(super) fn tally(&mut self, fp: &Fingerprint, event: &LogEvent) {
        self.tallies
            .entry(fp.clone())
            .or_default()
            .add(event.timestamp, event.host.as_deref());
    }

    /// What the run knows now of `fp`'s problem alone (the deferral is over).
    pub(super) fn own(&self, fp: &Fingerprint) -> Whole {
        Whole {
            tally: self.tallies.get(fp).cloned().unwrap_or_default(),
            ..Whole::default()
        }
    }

    /// End the deferral: every leader waiting now takes the fingerprint its template stands for
    /// now (a template merged into another's joins that problem, its logs parked behind the
    /// other's leader), is given the whole of its problem as the run knows it (its logs and
    /// those of templates merged into it, their fingerprints, its template now), and its
    /// ticket is looked up, all in one go: the lookups go out in as few searches as they fit.
    pub(super) fn end(
        &mut self,
        miner: &TemplateMiner,
        dedup: &mut Deduplicator<Fingerprint, Arc<Resolution>, Pending>,
        waiting: &mut VecDeque<(Fingerprint, Pending)>,
        collector: &mut Collector,
        tickets: Option<&TicketStage>,
    ) -> anyhow::Result<()> {
        if !self.on {
            return Ok(());
        }
        self.on = false;
        // The whole of each problem, under the fingerprint it stands for now.
        let mut wholes: HashMap<Fingerprint, Whole> = HashMap::new();
        let mut fps: Vec<&Fingerprint> = self.tallies.keys().collect();
        fps.sort();
        for fp in fps {
            let now = miner.resolve(fp);
            let whole = wholes.entry(now.clone()).or_default();
            whole.tally.absorb(&self.tallies[fp]);
            if *fp != now {
                whole.aliases.push(fp.clone());
            }
        }
        // Templates merged in the run: their fingerprints too (one born and merged in the same
        // log never gave a log its fingerprint).
        for merge in miner.run_merges() {
            for fp in [&merge.from, &merge.into] {
                let fp = Fingerprint::from_raw(fp.as_str());
                let now = miner.resolve(&fp);
                if let Some(whole) = wholes.get_mut(&now) {
                    if fp != now && !whole.aliases.contains(&fp) {
                        whole.aliases.push(fp);
                    }
                }
            }
        }
        // Leaders whose template merged into another's: their logs go to that problem.
        let (stay, moved): (Vec<_>, Vec<_>) = std::mem::take(waiting)
            .into_iter()
            .partition(|(fp, _)| miner.resolve(fp) == *fp);
        waiting.extend(stay);
        for (fp, p) in moved {
            let now = miner.resolve(&fp);
            let parked = dedup.abandon(&fp);
            for mut p in std::iter::once(p).chain(parked) {
                if let Some(t) = miner.shared_template(&now) {
                    p.template = t.clone();
                }
                match dedup.claim(&now, p) {
                    Claim::Lead(p) => waiting.push_back((now.clone(), p)),
                    Claim::Parked => {}
                    Claim::Resolved(res, p) => collector.add(follower(p, now.clone(), res))?,
                }
            }
        }
        for (fp, p) in waiting.iter_mut() {
            let mut whole = wholes.remove(fp).unwrap_or_default();
            whole.template = miner.template_of(fp).map(str::to_string);
            if let Some(t) = miner.shared_template(fp) {
                p.template = t.clone();
            }
            if let Some(tickets) = tickets {
                // Tickets may carry the merged templates' labels: looked up in the same search.
                tickets.search_also(fp, &whole.aliases);
            }
            p.whole = Some(whole);
        }
        if let Some(tickets) = tickets {
            for (fp, _) in waiting.iter() {
                tickets.prefetch(fp);
            }
        }
        Ok(())
    }
}
