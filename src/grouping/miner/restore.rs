//! A miner rebuilt from what the state store kept: the snapshot's families, templates and
//! merges, in birth order, so it continues exactly where the last run stopped.

use std::collections::HashMap;

use super::tokens::{hash_str, key_of, mix, Tokens};
use super::{Family, Member, MinerConfig, TemplateMiner, MAX_ALSO};
use crate::grouping::fingerprint::Fingerprint;
use crate::grouping::store::TemplateSnapshot;

impl TemplateMiner {
    /// A miner that continues from what earlier runs learned.
    pub fn from_snapshot(config: MinerConfig, snapshot: TemplateSnapshot) -> Self {
        let mut miner = Self::new(config);
        let mut families = snapshot.families;
        families.sort_by_key(|f| f.id);
        let mut family_idx = HashMap::new();
        for f in families {
            if f.tokens.len() != f.variable.len() {
                continue;
            }
            let service = miner.service_id(&f.service);
            let idx = miner.families.len() as u32;
            family_idx.insert(f.id, idx);
            miner.next_family = miner.next_family.max(f.id + 1);
            miner.families.push(Family {
                id: f.id,
                service,
                tokens: Tokens::new(f.tokens.iter().map(|t| t.as_deref().unwrap_or(""))),
                alone: vec![false; f.variable.len()],
                variable: f.variable,
                members: Vec::new(),
                alive: true,
                dirty: false,
            });
            miner.register(idx);
        }
        let mut templates = snapshot.templates;
        templates.sort_by_key(|t| t.id);
        for t in templates {
            let Some(&f) = family_idx.get(&t.family) else {
                continue;
            };
            if t.tokens.len() != miner.families[f as usize].tokens.len() {
                continue;
            }
            let idx = miner.members.len() as u32;
            miner.next_member = miner.next_member.max(t.id + 1);
            miner.clock = miner.clock.max(t.last_used);
            let fingerprint = Fingerprint::from_raw(t.fingerprint);
            miner.by_fp.insert(fingerprint.clone(), idx);
            let tokens = Tokens::new(t.tokens.iter().map(String::as_str));
            miner.members.push(Member {
                id: t.id,
                family: f,
                fingerprint,
                key: key_of(tokens.iter()),
                tokens,
                count: t.count,
                first_seen: t.first_seen,
                last_seen: t.last_seen,
                last_used: t.last_used,
                ticket: t.ticket,
                absorbed: Vec::new(),
                merged_into: None,
                alive: true,
                dirty: false,
                announced: false,
                values: t.values,
            });
            miner.families[f as usize].members.push(idx);
            miner.alive += 1;
        }
        for m in snapshot.merges {
            let (from, into) = (Fingerprint::from_raw(m.from), Fingerprint::from_raw(m.into));
            miner.aliases.insert(from.clone(), into);
        }
        // Each template's aliases, to search the old labels too.
        let froms: Vec<Fingerprint> = miner.aliases.keys().cloned().collect();
        for from in froms {
            let into = miner.resolve(&from);
            if let Some(&m) = miner.by_fp.get(&into) {
                let absorbed = &mut miner.members[m as usize].absorbed;
                if absorbed.len() < MAX_ALSO {
                    absorbed.push(from);
                }
            }
        }
        for m in &mut miner.members {
            m.absorbed.sort();
        }
        for f in 0..miner.families.len() {
            if miner.families[f].members.is_empty() {
                miner.kill_family(f as u32);
            } else {
                miner.families[f].alone = miner.alone_positions(f as u32);
            }
        }
        miner
    }

    /// The positions where two templates of family `f` differ and nowhere else, found by
    /// hashing each template without each position in turn (linear, for restores).
    pub(super) fn alone_positions(&self, f: u32) -> Vec<bool> {
        let fam = &self.families[f as usize];
        let n = fam.tokens.len();
        let mut alone = vec![false; n];
        let mut frames = std::collections::HashSet::new();
        for &m in &fam.members {
            let tokens = &self.members[m as usize].tokens;
            // prefix[p] hashes tokens 0..p, suffix[p] tokens p..n.
            let mut prefix = vec![0u64; n + 1];
            let mut suffix = vec![0u64; n + 1];
            for p in 0..n {
                prefix[p + 1] = hash_str(mix(prefix[p], 1), tokens.get(p));
            }
            for p in (0..n).rev() {
                suffix[p] = hash_str(mix(suffix[p + 1], 2), tokens.get(p));
            }
            for (p, seen) in alone.iter_mut().enumerate() {
                let frame = mix(prefix[p], suffix[p + 1]);
                if !frames.insert((p, frame)) {
                    *seen = true;
                }
            }
        }
        alone
    }
}
