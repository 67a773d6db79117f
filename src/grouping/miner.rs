//! The template miner: which logs are one problem, learned across logs and across runs.
//!
//! In: each log in arrival order (`TemplateMiner::fingerprint`), and at the start the snapshot
//! the state store kept. Out: the log's fingerprint and template, the changes to save, and the
//! merges found (two known templates that turned out to be one problem). It cannot fail;
//! memory is bounded by `cap` templates (least recently matched first out, never one with a
//! ticket).
//!
//! Two levels, after masking (`mask`):
//! 1. A *family* gathers the lines of one service with the same token count that look alike,
//!    as Drain does: candidates come from an index on the first two tokens (either may match,
//!    so a variable first token does not split a family), similarity is the share of the
//!    family's constant words (not `<*>`) the line repeats (>= 0.5 joins), and two lines whose
//!    first words differ never join (`Failed password` vs `Accepted password`).
//! 2. Within a family, a *template* is one problem. A position is a variable once the family
//!    has seen `distinct` different values there, or a masked value next to another value,
//!    and only if it has varied alone (two templates differ there and nowhere else: a reason
//!    phrase whose words change together is never data); until then its values are structure
//!    (`HTTPS` vs `SOCKS5`, `user=root` vs `user=guest`).
//!    When a position becomes a variable, templates that now read the same merge into the
//!    oldest, which keeps its fingerprint; the others' fingerprints become aliases of it.
//!
//! A template's fingerprint is fixed at birth: the first 16 hex digits of SHA-256 over the
//! service and the masked line that created it. It never changes when the template generalises,
//! so a ticket's label stays valid. Everything that decides a fingerprint depends only on the
//! order logs arrive in and on the snapshot, never on time, threads or hash seeds, so the same
//! logs give the same fingerprints on every run, sequential or concurrent.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{DateTime, Utc};

use super::mask::{self, is_wordy, key_shape, VAR};
use super::rules::GroupRules;
use super::store::{
    SeenValues, StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge, TemplateSnapshot,
};
use crate::event::LogEvent;
use crate::grouping::fingerprint::{self, Fingerprint, Fingerprinted};

/// Tuning, with defaults that need no per-system setting.
#[derive(Debug, Clone, Copy)]
pub struct MinerConfig {
    /// Most templates kept; beyond it the least recently matched without a ticket are evicted.
    pub cap: usize,
    /// Share of a family's constant tokens a line must repeat to join it.
    pub similarity: f64,
    /// Distinct values after which a position is a variable.
    pub distinct: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            cap: 100_000,
            similarity: 0.5,
            distinct: 4,
        }
    }
}

/// Aliases and old labels passed on per template, at most.
const MAX_ALSO: usize = 20;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Mix the high bits into the low ones the table indexes by.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_str_bytes(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        // Index keys are hashes already.
        self.0 ^= n;
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
/// Keys that are not hashes yet (fingerprints): their bytes go through `mix`, then the
/// finaliser. No protection against chosen collisions is needed for these keys.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[inline]
fn mix(h: u64, x: u64) -> u64 {
    (h.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95)
}

fn hash_str(h: u64, s: &str) -> u64 {
    hash_str_bytes(h, s.as_bytes())
}

fn hash_str_bytes(mut h: u64, s: &[u8]) -> u64 {
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        h = mix(
            h,
            u64::from_le_bytes(c.try_into().expect("chunks_exact gives 8 bytes")),
        );
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    mix(mix(h, u64::from_le_bytes(last)), s.len() as u64)
}

fn index_key(service: u32, len: usize, pos: usize, token: &str) -> u64 {
    hash_str(
        mix(mix(mix(7, u64::from(service)), len as u64), pos as u64),
        token,
    )
}

/// Tokens kept in one allocation: the text joined by single spaces, and where each ends. The
/// text is the template people read; one allocation keeps matching cache-friendly.
#[derive(Clone, Default, PartialEq, Eq)]
struct Tokens {
    text: String,
    ends: Vec<u32>,
}

impl Tokens {
    fn new<'a>(tokens: impl Iterator<Item = &'a str>) -> Self {
        let mut t = Tokens::default();
        for tok in tokens {
            if !t.ends.is_empty() {
                t.text.push(' ');
            }
            t.text.push_str(tok);
            t.ends.push(t.text.len() as u32);
        }
        t
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, p: usize) -> &str {
        let start = if p == 0 {
            0
        } else {
            self.ends[p - 1] as usize + 1
        };
        &self.text[start..self.ends[p] as usize]
    }

    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|p| self.get(p))
    }

    /// The same tokens with position `p` replaced.
    fn with(&self, p: usize, token: &str) -> Self {
        Tokens::new(
            self.iter()
                .enumerate()
                .map(|(i, t)| if i == p { token } else { t }),
        )
    }
}

struct Family {
    id: u64,
    service: u32,
    /// The family's shape; an empty token where its lines have differed.
    tokens: Tokens,
    variable: Vec<bool>,
    /// Positions where two of its templates differ and nowhere else: only these can become
    /// variables. Worked out again from the templates on restore (`alone_positions`).
    alone: Vec<bool>,
    members: Vec<u32>,
    alive: bool,
    dirty: bool,
}

struct Member {
    id: u64,
    family: u32,
    fingerprint: Fingerprint,
    /// Its tokens, `<*>` for variables; the text is its template.
    tokens: Tokens,
    key: u64,
    count: u64,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    last_used: u64,
    ticket: Option<String>,
    /// Fingerprints merged into this one.
    absorbed: Vec<Fingerprint>,
    merged_into: Option<u32>,
    alive: bool,
    dirty: bool,
    /// Its aliases were already handed out in this run.
    announced: bool,
    /// What its variables were seen to hold, per variable position.
    values: Vec<SeenValues>,
}

/// The template miner. Owned by the ingest loop; one call per log, in arrival order.
pub struct TemplateMiner {
    config: MinerConfig,
    services: HashMap<Box<str>, u32>,
    service_names: Vec<Box<str>>,
    last_service: Option<u32>,
    families: Vec<Family>,
    index: IdMap<Vec<u32>>,
    members: Vec<Member>,
    /// Slots of evicted templates, reused for new ones.
    free: Vec<u32>,
    by_fp: FastMap<Fingerprint, u32>,
    aliases: FastMap<Fingerprint, Fingerprint>,
    alive: usize,
    clock: u64,
    next_family: u64,
    next_member: u64,
    structural: bool,
    removed: Vec<String>,
    merges: Vec<TemplateMerge>,
    run_merges: Vec<TemplateMerge>,
    dirty_families: Vec<u32>,
    dirty_members: Vec<u32>,
    buf: String,
    spans: Vec<(usize, usize)>,
    /// Where each token of the line came from, and the line they index.
    raw: Vec<(usize, usize)>,
    text: String,
    cands: Vec<u32>,
    /// Per index key, how often the families under it changed.
    epochs: IdMap<u64>,
    /// How often any family changed: a cached line stamped with the current value is valid
    /// without looking its keys' epochs up.
    global_epoch: u64,
    line_cache: IdMap<CachedLine>,
    /// The template the last `learn` created, if it did.
    born: Option<u32>,
    /// The user's `[[group]]` rules.
    rules: GroupRules,
}

/// A family's index keys (one or two), without allocating.
#[derive(Clone, Copy)]
struct FamilyKeys([u64; 2], usize);

impl IntoIterator for FamilyKeys {
    type Item = u64;
    type IntoIter = std::iter::Take<std::array::IntoIter<u64, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().take(self.1)
    }
}

/// Lines seen before, at most this many (then the cache starts over).
const LINE_CACHE: usize = 1 << 18;

/// A masked line and the template it was matched to. Valid while the families under its
/// index keys are unchanged: matching it again would then take the same family (whose shape
/// already fits it) and the same template, so the cache never changes an answer, only its cost.
struct CachedLine {
    line: Box<str>,
    service: u32,
    /// `global_epoch` when last found valid: equal means nothing changed anywhere since.
    global: u64,
    epochs: [u64; 2],
    member: u32,
}

impl Default for TemplateMiner {
    fn default() -> Self {
        Self::new(MinerConfig::default())
    }
}

impl TemplateMiner {
    pub fn new(config: MinerConfig) -> Self {
        TemplateMiner {
            config: MinerConfig {
                cap: config.cap.max(1),
                distinct: config.distinct.max(2),
                ..config
            },
            services: HashMap::new(),
            service_names: Vec::new(),
            last_service: None,
            families: Vec::new(),
            index: IdMap::default(),
            members: Vec::new(),
            free: Vec::new(),
            by_fp: FastMap::default(),
            aliases: FastMap::default(),
            alive: 0,
            clock: 0,
            next_family: 1,
            next_member: 1,
            structural: false,
            removed: Vec::new(),
            merges: Vec::new(),
            run_merges: Vec::new(),
            dirty_families: Vec::new(),
            dirty_members: Vec::new(),
            buf: String::new(),
            spans: Vec::new(),
            raw: Vec::new(),
            text: String::new(),
            cands: Vec::new(),
            epochs: IdMap::default(),
            global_epoch: 0,
            line_cache: IdMap::default(),
            born: None,
            rules: GroupRules::default(),
        }
    }

    /// Group by these rules too (`[[group]]` in the config file).
    pub fn with_rules(mut self, rules: GroupRules) -> Self {
        self.rules = rules;
        self
    }

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
    fn alone_positions(&self, f: u32) -> Vec<bool> {
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

    /// The fingerprint and template of one log; learns from it.
    ///
    /// `also` lists fingerprints merged into this template; it is filled, and `new_in_run` set,
    /// on the first log of each template in a run and again after a merge.
    pub fn fingerprint(&mut self, event: &LogEvent) -> Fingerprinted {
        let line = fingerprint::significant_line(&event.message);
        let line = fingerprint::truncate_bytes(&line, fingerprint::MAX_LINE_BYTES);
        let mut buf = std::mem::take(&mut self.buf);
        let mut spans = std::mem::take(&mut self.spans);
        let mut raw = std::mem::take(&mut self.raw);
        let mut text = std::mem::take(&mut self.text);
        mask::mask_line(line, &mut buf, &mut spans, &mut raw, &mut text);
        let named = || {
            let service = event.service.as_deref().unwrap_or("");
            self.rules
                .fingerprint(service, &buf)
                .map(Fingerprint::from_raw)
        };
        let out = match fingerprint::explicit_fingerprint(event).or_else(named) {
            Some(fp) => Fingerprinted {
                fingerprint: fp,
                template: buf.clone(),
                also: Vec::new(),
                new_in_run: false,
                young: false,
            },
            None => {
                let service = self.service_id(event.service.as_deref().unwrap_or(""));
                self.born = None;
                let m = self.learn(service, &buf, &spans, event.timestamp) as usize;
                self.note_values(m as u32, &raw, &text);
                // Born from this log (not merged away at once) beside another template of its
                // family: it may still generalise into the sibling.
                let young = self.born == Some(m as u32)
                    && self.families[self.members[m].family as usize].members.len() > 1;
                let mut also = Vec::new();
                let new_in_run = !self.members[m].announced;
                if new_in_run {
                    self.members[m].announced = true;
                    also.extend(self.members[m].absorbed.iter().cloned());
                }
                Fingerprinted {
                    fingerprint: self.members[m].fingerprint.clone(),
                    template: self.members[m].tokens.text.clone(),
                    also,
                    new_in_run,
                    young,
                }
            }
        };
        self.buf = buf;
        self.spans = spans;
        self.raw = raw;
        self.text = text;
        out
    }

    /// Note what the variables of template `m` hold in this line (`raw` spans into `text`).
    fn note_values(&mut self, m: u32, raw: &[(usize, usize)], text: &str) {
        let member = &mut self.members[m as usize];
        for (p, &(a, b)) in raw.iter().enumerate() {
            if p >= member.tokens.len() || member.tokens.get(p) != VAR {
                continue;
            }
            let value = &text[a..b];
            let hash = hash_str(3, value) as u32;
            match member.values.iter_mut().find(|v| v.position == p) {
                Some(v) => v.add(value, hash),
                None => {
                    let mut v = SeenValues {
                        position: p,
                        ..SeenValues::default()
                    };
                    v.add(value, hash);
                    member.values.push(v);
                }
            }
        }
    }

    /// The fingerprint a fingerprint stands for now (itself unless it was merged away).
    pub fn resolve(&self, fp: &Fingerprint) -> Fingerprint {
        let mut cur = fp;
        for _ in 0..64 {
            match self.aliases.get(cur) {
                Some(next) if next != cur => cur = next,
                _ => break,
            }
        }
        cur.clone()
    }

    /// The current template of a fingerprint (resolved through merges).
    pub fn template_of(&self, fp: &Fingerprint) -> Option<&str> {
        let m = *self.by_fp.get(&self.resolve(fp))?;
        Some(&self.members[m as usize].tokens.text)
    }

    /// A ticket now carries this fingerprint's label: never evict its template.
    pub fn note_ticket(&mut self, fp: &Fingerprint, key: &str) {
        if let Some(&m) = self.by_fp.get(&self.resolve(fp)) {
            let member = &mut self.members[m as usize];
            if member.ticket.is_none() {
                member.ticket = Some(key.to_string());
            }
        }
    }

    /// Whether a template was born, generalised, merged or evicted since the last
    /// `take_changes`: such changes must be saved before a ticket carries the label.
    pub fn needs_save(&self) -> bool {
        self.structural
    }

    /// Everything to save since the last call (counts included), and reset.
    pub fn take_changes(&mut self) -> TemplateChanges {
        self.structural = false;
        let mut changes = TemplateChanges {
            removed: std::mem::take(&mut self.removed),
            merges: std::mem::take(&mut self.merges),
            ..TemplateChanges::default()
        };
        for f in std::mem::take(&mut self.dirty_families) {
            let fam = &mut self.families[f as usize];
            fam.dirty = false;
            if fam.alive {
                changes.families.push(StoredFamily {
                    id: fam.id,
                    service: self.service_names[fam.service as usize].to_string(),
                    tokens: fam
                        .tokens
                        .iter()
                        .map(|t| (!t.is_empty()).then(|| t.to_string()))
                        .collect(),
                    variable: fam.variable.clone(),
                });
            }
        }
        for m in std::mem::take(&mut self.dirty_members) {
            let member = &mut self.members[m as usize];
            member.dirty = false;
            if member.alive {
                changes.templates.push(self.stored(m));
            }
        }
        changes.families.sort_by_key(|f| f.id);
        changes.templates.sort_by_key(|t| t.id);
        changes
    }

    /// Merges found in this run (to label the surviving tickets), and reset.
    /// The merges of this run so far (without taking them).
    pub fn run_merges(&self) -> &[TemplateMerge] {
        &self.run_merges
    }

    pub fn take_run_merges(&mut self) -> Vec<TemplateMerge> {
        std::mem::take(&mut self.run_merges)
    }

    /// Every live template, oldest first.
    pub fn templates(&self) -> Vec<StoredTemplate> {
        (0..self.members.len() as u32)
            .filter(|&m| self.members[m as usize].alive)
            .map(|m| self.stored(m))
            .collect()
    }

    /// Number of live templates.
    pub fn len(&self) -> usize {
        self.alive
    }

    pub fn is_empty(&self) -> bool {
        self.alive == 0
    }

    fn stored(&self, m: u32) -> StoredTemplate {
        let member = &self.members[m as usize];
        let fam = &self.families[member.family as usize];
        StoredTemplate {
            fingerprint: member.fingerprint.to_string(),
            id: member.id,
            family: fam.id,
            service: self.service_names[fam.service as usize].to_string(),
            template: member.tokens.text.clone(),
            tokens: member.tokens.iter().map(str::to_string).collect(),
            count: member.count,
            first_seen: member.first_seen,
            last_seen: member.last_seen,
            last_used: member.last_used,
            ticket: member.ticket.clone(),
            values: member.values.clone(),
        }
    }

    fn service_id(&mut self, name: &str) -> u32 {
        // Logs of one service tend to come together.
        if let Some(last) = self.last_service {
            if *self.service_names[last as usize] == *name {
                return last;
            }
        }
        if let Some(&id) = self.services.get(name) {
            self.last_service = Some(id);
            return id;
        }
        let id = self.service_names.len() as u32;
        self.service_names.push(name.into());
        self.services.insert(name.into(), id);
        id
    }

    /// The index keys of a family: its first two tokens (`<*>` where it has none).
    fn keys(&self, f: u32) -> FamilyKeys {
        let fam = &self.families[f as usize];
        let n = fam.tokens.len();
        let mut keys = FamilyKeys([0; 2], n.clamp(1, 2));
        for p in 0..keys.1 {
            let tok = match n {
                0 => "",
                _ => Some(fam.tokens.get(p))
                    .filter(|t| !t.is_empty())
                    .unwrap_or(VAR),
            };
            keys.0[p] = index_key(fam.service, n, p, tok);
        }
        keys
    }

    fn register(&mut self, f: u32) {
        let keys = self.keys(f);
        for k in keys {
            let list = self.index.entry(k).or_default();
            if !list.contains(&f) {
                list.push(f);
            }
        }
    }

    fn unregister(&mut self, f: u32) {
        let keys = self.keys(f);
        for k in keys {
            if let Some(list) = self.index.get_mut(&k) {
                list.retain(|&x| x != f);
                if list.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
    }

    fn kill_family(&mut self, f: u32) {
        self.unregister(f);
        let fam = &mut self.families[f as usize];
        fam.alive = false;
        fam.tokens = Tokens::default();
        fam.variable = Vec::new();
        fam.members = Vec::new();
    }

    fn mark_family(&mut self, f: u32) {
        let fam = &mut self.families[f as usize];
        if !fam.dirty {
            fam.dirty = true;
            self.dirty_families.push(f);
        }
    }

    fn mark_member(&mut self, m: u32) {
        let member = &mut self.members[m as usize];
        if !member.dirty {
            member.dirty = true;
            self.dirty_members.push(m);
        }
    }

    /// The template for one masked line: returns the member index.
    fn learn(
        &mut self,
        service: u32,
        buf: &str,
        spans: &[(usize, usize)],
        ts: Option<DateTime<Utc>>,
    ) -> u32 {
        self.clock += 1;
        let n = spans.len();
        let tok = |p: usize| &buf[spans[p].0..spans[p].1];
        let mut keys = [0u64; 2];
        for (p, k) in keys.iter_mut().enumerate().take(n.clamp(1, 2)) {
            *k = index_key(service, n, p, if n == 0 { "" } else { tok(p) });
        }
        let keys = &keys[..n.clamp(1, 2)];
        // The same masked line as before, and nothing changed since among the families it
        // could match: the answer is the one learned then (see `LineCache`).
        let line_key = hash_str(mix(17, u64::from(service)), buf);
        let global = self.global_epoch;
        let (mut hit, mut refresh) = (None, false);
        if let Some(e) = self.line_cache.get(&line_key) {
            if e.service == service && *e.line == *buf {
                if e.global == global {
                    hit = Some(e.member);
                } else {
                    let epochs = [0, 1].map(|i| keys.get(i).map_or(0, |k| self.epoch(*k)));
                    if e.epochs == epochs {
                        (hit, refresh) = (Some(e.member), true);
                    }
                }
            }
        }
        if let Some(m) = hit {
            if refresh {
                if let Some(e) = self.line_cache.get_mut(&line_key) {
                    e.global = global;
                }
            }
            self.count(m, ts);
            return m;
        }
        self.cands.clear();
        for k in keys {
            if let Some(list) = self.index.get(k) {
                self.cands.extend_from_slice(list);
            }
        }
        self.cands.sort_unstable();
        self.cands.dedup();
        let mut best: Option<(u32, f64, usize)> = None;
        for &f in &self.cands {
            let fam = &self.families[f as usize];
            if !fam.alive || fam.service != service || fam.tokens.len() != n {
                continue;
            }
            let Some((sim, consts)) = similarity(fam, &tok) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((_, s, c)) => sim > s || (sim == s && consts > c),
            };
            if better {
                best = Some((f, sim, consts));
            }
        }
        let f = match best {
            Some((f, sim, _)) if sim >= self.config.similarity => {
                self.generalise(f, &tok);
                f
            }
            _ => self.new_family(service, n, &tok),
        };
        let m = self.member(f, buf, &tok, n);
        self.count(m, ts);
        if self.alive > self.config.cap {
            self.evict(m);
        }
        if self.line_cache.len() >= LINE_CACHE {
            self.line_cache.clear();
        }
        let epochs = [0, 1].map(|i| keys.get(i).map_or(0, |k| self.epoch(*k)));
        self.line_cache.insert(
            line_key,
            CachedLine {
                line: buf.into(),
                service,
                global: self.global_epoch,
                epochs,
                member: m,
            },
        );
        m
    }

    /// One more log of template `m`.
    fn count(&mut self, m: u32, ts: Option<DateTime<Utc>>) {
        let member = &mut self.members[m as usize];
        member.count += 1;
        member.last_used = self.clock;
        if let Some(ts) = ts {
            member.first_seen = Some(member.first_seen.map_or(ts, |f| f.min(ts)));
            member.last_seen = Some(member.last_seen.map_or(ts, |l| l.max(ts)));
        }
        self.mark_member(m);
    }

    fn epoch(&self, key: u64) -> u64 {
        self.epochs.get(&key).copied().unwrap_or(0)
    }

    /// Family `f` changed (shape, members, index keys): lines cached under its keys are stale.
    fn touch(&mut self, f: u32) {
        self.global_epoch += 1;
        let keys = self.keys(f);
        for k in keys {
            *self.epochs.entry(k).or_insert(0) += 1;
        }
    }

    fn new_family<'a>(&mut self, service: u32, n: usize, tok: &impl Fn(usize) -> &'a str) -> u32 {
        let f = self.families.len() as u32;
        self.families.push(Family {
            id: self.next_family,
            service,
            tokens: Tokens::new((0..n).map(tok)),
            variable: (0..n).map(|p| tok(p) == VAR).collect(),
            alone: vec![false; n],
            members: Vec::new(),
            alive: true,
            dirty: false,
        });
        self.next_family += 1;
        self.register(f);
        // No `touch` here: `learn` always gives a new family its first member next, and
        // `member` touches the family then, before any cached line can be stamped.
        self.mark_family(f);
        self.structural = true;
        f
    }

    /// Positions where the line differs from the family's shape lose their token.
    fn generalise<'a>(&mut self, f: u32, tok: &impl Fn(usize) -> &'a str) {
        let fam = &self.families[f as usize];
        let differs: Vec<usize> = (0..fam.tokens.len())
            .filter(|&p| {
                let t = fam.tokens.get(p);
                !t.is_empty() && t != tok(p)
            })
            .collect();
        if differs.is_empty() {
            return;
        }
        self.touch(f);
        self.unregister(f);
        let fam = &mut self.families[f as usize];
        fam.tokens = Tokens::new(fam.tokens.iter().enumerate().map(|(p, t)| {
            if differs.contains(&p) {
                ""
            } else {
                t
            }
        }));
        self.register(f);
        self.touch(f);
        self.mark_family(f);
        self.structural = true;
    }

    /// The member of family `f` this line belongs to, created if new; merges as needed.
    fn member<'a>(&mut self, f: u32, buf: &str, tok: &impl Fn(usize) -> &'a str, n: usize) -> u32 {
        let fam = &self.families[f as usize];
        let value = |p: usize| if fam.variable[p] { VAR } else { tok(p) };
        let key = key_of((0..n).map(value));
        let found = fam.members.iter().copied().find(|&m| {
            let member = &self.members[m as usize];
            member.key == key && (0..n).all(|p| member.tokens.get(p) == value(p))
        });
        if let Some(m) = found {
            return m;
        }
        let tokens = Tokens::new((0..n).map(value));
        let service: &str = &self.service_names[fam.service as usize];
        let mut fingerprint = Fingerprint::from_raw(fingerprint::hash16(&[service, buf]));
        let mut salt = 0u32;
        while self.by_fp.contains_key(&fingerprint) || self.aliases.contains_key(&fingerprint) {
            salt += 1;
            fingerprint =
                Fingerprint::from_raw(fingerprint::hash16(&[service, buf, &salt.to_string()]));
        }
        let fresh = Member {
            id: self.next_member,
            family: f,
            fingerprint: fingerprint.clone(),
            key,
            tokens,
            count: 0,
            first_seen: None,
            last_seen: None,
            last_used: self.clock,
            ticket: None,
            absorbed: Vec::new(),
            merged_into: None,
            alive: true,
            dirty: false,
            announced: false,
            values: Vec::new(),
        };
        let m = match self.free.pop() {
            Some(m) => {
                // Still listed as dirty if the evicted one was: keep the flag so it is listed once.
                let dirty = self.members[m as usize].dirty;
                self.members[m as usize] = Member { dirty, ..fresh };
                m
            }
            None => {
                self.members.push(fresh);
                (self.members.len() - 1) as u32
            }
        };
        self.next_member += 1;
        self.born = Some(m);
        self.by_fp.insert(fingerprint, m);
        self.families[f as usize].members.push(m);
        self.touch(f);
        self.alive += 1;
        self.structural = true;
        self.mark_member(m);
        self.settle(f, m);
        let mut m = m;
        while let Some(s) = self.members[m as usize].merged_into {
            m = s;
        }
        m
    }

    /// Turn positions with enough distinct values into variables, merging what then reads
    /// the same.
    ///
    /// A position counts only once it has *varied alone*: two templates of the family read
    /// the same everywhere else (see `note_alone`). A word that always changes together with
    /// another one (`account locked` / `invalid password`, a reason phrase) is part of what
    /// the line says, however many values it takes; a user name that changes with the rest of
    /// the line fixed is data once enough names are seen.
    fn settle(&mut self, f: u32, m: u32) {
        if self.families[f as usize].members.len() < 2 {
            // One template shows one value per position: nothing can be a variable yet.
            return;
        }
        self.note_alone(f, m);
        let n = self.families[f as usize].tokens.len();
        for p in 0..n {
            let fam = &self.families[f as usize];
            if fam.variable[p] || !fam.alone[p] || self.kept_by_rules(f, p) {
                continue;
            }
            let values = fam
                .members
                .iter()
                .map(|&o| self.members[o as usize].tokens.get(p));
            if self.varies(values) {
                self.make_variable(f, p);
            }
        }
    }

    /// Marks the positions where template `m` differs from another template of family `f`
    /// and nowhere else.
    fn note_alone(&mut self, f: u32, m: u32) {
        let fam = &self.families[f as usize];
        let me = &self.members[m as usize].tokens;
        let mut found: Vec<usize> = Vec::new();
        for &o in &fam.members {
            if o == m {
                continue;
            }
            let other = &self.members[o as usize].tokens;
            let mut differs = None;
            for p in 0..me.len() {
                if other.get(p) != me.get(p) {
                    if differs.is_some() {
                        differs = None;
                        break;
                    }
                    differs = Some(p);
                }
            }
            if let Some(p) = differs {
                if !fam.alone[p] && !found.contains(&p) {
                    found.push(p);
                }
            }
        }
        if found.is_empty() {
            return;
        }
        let fam = &mut self.families[f as usize];
        for p in found {
            fam.alone[p] = true;
        }
    }

    /// Whether the values one position takes make it a variable: words, or the values of one
    /// key, once enough of them are seen, or a masked value next to one. Different keys (or
    /// keys and words) are structure: one key whose value differs is data, different keys
    /// are different events (`uid=` vs `LOGIN(uid=`); so are capitalised keywords (`OPEN`,
    /// `HTTPS`, `ERROR`), a vocabulary, not data.
    fn varies<'t>(&self, values: impl Iterator<Item = &'t str>) -> bool {
        let mut seen: Vec<&str> = Vec::with_capacity(self.config.distinct);
        let mut keys: Vec<&str> = Vec::with_capacity(2);
        for t in values {
            if seen.contains(&t) {
                continue;
            }
            seen.push(t);
            if t != VAR {
                let k = key_shape(t);
                if !keys.contains(&k) {
                    keys.push(k);
                    if keys.len() > 1 {
                        return false;
                    }
                }
            }
        }
        let keywords = seen.iter().all(|t| *t == VAR || is_keyword(t));
        (seen.len() >= self.config.distinct && !keywords)
            || (seen.len() >= 2 && seen.contains(&VAR))
    }

    /// Whether a `[[group]]` rule keeps position `p` of family `f` from being a variable: one
    /// of its members has there a word a rule for these lines lists in `split`.
    fn kept_by_rules(&self, f: u32, p: usize) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let fam = &self.families[f as usize];
        let service: &str = &self.service_names[fam.service as usize];
        let templates = fam
            .members
            .iter()
            .map(|&m| self.members[m as usize].tokens.text.as_str());
        fam.members.iter().any(|&m| {
            let word = mask::split_core(self.members[m as usize].tokens.get(p)).1;
            self.rules.keeps(service, templates.clone(), word)
        })
    }

    fn make_variable(&mut self, f: u32, p: usize) {
        self.touch(f);
        self.families[f as usize].variable[p] = true;
        self.mark_family(f);
        self.structural = true;
        let mut ms = std::mem::take(&mut self.families[f as usize].members);
        ms.sort_by_key(|&m| self.members[m as usize].id);
        let mut kept: Vec<u32> = Vec::with_capacity(ms.len());
        for m in ms {
            {
                let member = &mut self.members[m as usize];
                let old = member.tokens.get(p);
                if old != VAR {
                    // The word it had there is now one of the variable's values.
                    let mut v = SeenValues {
                        position: p,
                        ..SeenValues::default()
                    };
                    v.add(old, hash_str(3, old) as u32);
                    member.values.retain(|v| v.position != p);
                    member.values.push(v);
                    member.tokens = member.tokens.with(p, VAR);
                    member.key = key_of(member.tokens.iter());
                }
            }
            self.mark_member(m);
            let twin = kept.iter().copied().find(|&s| {
                let (a, b) = (&self.members[s as usize], &self.members[m as usize]);
                a.key == b.key && a.tokens == b.tokens
            });
            match twin {
                Some(s) => self.absorb(m, s),
                None => kept.push(m),
            }
        }
        self.families[f as usize].members = kept;
    }

    /// `from` is the same problem as the older `into`: `into` survives.
    fn absorb(&mut self, from: u32, into: u32) {
        let tombstone = Member {
            alive: false,
            merged_into: Some(into),
            ..self.members[from as usize].shallow()
        };
        let gone = std::mem::replace(&mut self.members[from as usize], tombstone);
        let survivor = &mut self.members[into as usize];
        survivor.count += gone.count;
        survivor.first_seen = match (survivor.first_seen, gone.first_seen) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        survivor.last_seen = survivor.last_seen.max(gone.last_seen);
        survivor.last_used = survivor.last_used.max(gone.last_used);
        if survivor.ticket.is_none() {
            survivor.ticket = gone.ticket;
        }
        for fp in std::iter::once(gone.fingerprint.clone()).chain(gone.absorbed) {
            if survivor.absorbed.len() < MAX_ALSO && !survivor.absorbed.contains(&fp) {
                survivor.absorbed.push(fp);
            }
        }
        for v in &gone.values {
            match survivor
                .values
                .iter_mut()
                .find(|s| s.position == v.position)
            {
                Some(s) => s.absorb(v),
                None => survivor.values.push(v.clone()),
            }
        }
        survivor.announced = false;
        let into_fp = survivor.fingerprint.clone();
        self.by_fp.remove(&gone.fingerprint);
        self.aliases
            .insert(gone.fingerprint.clone(), into_fp.clone());
        let merge = TemplateMerge {
            from: gone.fingerprint.to_string(),
            into: into_fp.to_string(),
        };
        self.merges.push(merge.clone());
        self.run_merges.push(merge);
        self.removed.push(gone.fingerprint.to_string());
        self.alive -= 1;
    }

    /// Drop the least recently matched templates without a ticket, down to 90 % of the cap.
    fn evict(&mut self, keep: u32) {
        let target = self.config.cap - self.config.cap / 10;
        let mut cands: Vec<u32> = (0..self.members.len() as u32)
            .filter(|&m| {
                let member = &self.members[m as usize];
                member.alive && member.ticket.is_none() && m != keep
            })
            .collect();
        let excess = self.alive.saturating_sub(target).min(cands.len());
        if excess == 0 {
            return;
        }
        // The `excess` oldest; (last_used, id) is unique, so the set is the same on every run.
        let key = |m: &u32| {
            (
                self.members[*m as usize].last_used,
                self.members[*m as usize].id,
            )
        };
        cands.select_nth_unstable_by_key(excess - 1, key);
        cands.truncate(excess);
        for m in cands {
            let member = &mut self.members[m as usize];
            member.alive = false;
            member.tokens = Tokens::default();
            member.absorbed = Vec::new();
            let (f, fp) = (member.family, member.fingerprint.clone());
            self.by_fp.remove(&fp);
            self.removed.push(fp.to_string());
            self.alive -= 1;
            self.structural = true;
            self.free.push(m);
            self.touch(f);
            let fam = &mut self.families[f as usize];
            fam.members.retain(|&x| x != m);
            if fam.members.is_empty() {
                self.kill_family(f);
            }
        }
    }
}

impl Member {
    /// A copy of the scalar fields (for the tombstone a merged member leaves).
    fn shallow(&self) -> Member {
        Member {
            id: self.id,
            family: self.family,
            fingerprint: self.fingerprint.clone(),
            tokens: Tokens::default(),
            key: self.key,
            count: 0,
            first_seen: None,
            last_seen: None,
            last_used: self.last_used,
            ticket: None,
            absorbed: Vec::new(),
            merged_into: self.merged_into,
            alive: self.alive,
            dirty: self.dirty,
            announced: self.announced,
            values: Vec::new(),
        }
    }
}

/// An upper-case word (`OPEN`, `HALF_OPEN`, `SOCKS5`): a keyword of a vocabulary.
fn is_keyword(tok: &str) -> bool {
    let core = mask::split_core(tok).1;
    let b = core.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Share of the family's constant words the line repeats, and how many there are; `None`
/// when the first word differs (it names the event).
fn similarity<'a>(fam: &Family, tok: &impl Fn(usize) -> &'a str) -> Option<(f64, usize)> {
    if fam.tokens.len() > 0 {
        let t = fam.tokens.get(0);
        if !t.is_empty() && t != tok(0) && is_wordy(t) && is_wordy(tok(0)) {
            return None;
        }
    }
    let mut consts = 0;
    let mut same = 0;
    // A masked value is no evidence either way: only real words count.
    for (p, t) in fam.tokens.iter().enumerate() {
        if !t.is_empty() && t != VAR {
            consts += 1;
            if t == tok(p) {
                same += 1;
            }
        }
    }
    let sim = if consts == 0 {
        1.0
    } else {
        same as f64 / consts as f64
    };
    Some((sim, consts))
}

fn key_of<'a>(tokens: impl Iterator<Item = &'a str>) -> u64 {
    tokens.fold(0x9e37_79b9_7f4a_7c15, hash_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(service: &str, message: &str) -> LogEvent {
        LogEvent::from_value(
            json!({"id": "x", "service": service, "message": message}),
            || "x".into(),
        )
        .unwrap()
    }

    fn run(miner: &mut TemplateMiner, lines: &[&str]) -> Vec<Fingerprint> {
        let fps: Vec<Fingerprint> = lines
            .iter()
            .map(|l| miner.fingerprint(&ev("sshd", l)).fingerprint)
            .collect();
        fps.iter().map(|f| miner.resolve(f)).collect()
    }

    #[test]
    fn known_input_has_a_fixed_fingerprint() {
        // The label of every ticket filed from now on: change it on purpose only. A fresh
        // template's fingerprint is SHA-256 over the service and the masked line.
        let mut miner = TemplateMiner::default();
        let out = miner.fingerprint(&ev(
            "checkout",
            "Connection to 10.0.3.17:5432 timed out after 3000ms",
        ));
        assert_eq!(out.template, "Connection to <*> timed out after <*>");
        assert_eq!(out.fingerprint.as_str(), "af48ed29c66ca1d6");
    }

    #[test]
    fn user_names_become_a_variable_and_the_first_fingerprint_survives() {
        let mut miner = TemplateMiner::default();
        let users = ["root", "admin", "uucp", "guest", "oracle"];
        let lines: Vec<String> = users
            .iter()
            .enumerate()
            .map(|(i, u)| format!("Failed password for {u} from 10.0.0.{i} port 22{i} ssh2"))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let first = miner.fingerprint(&ev("sshd", refs[0])).fingerprint;
        let fps = run(&mut miner, &refs);
        assert!(fps.iter().all(|f| *f == first), "{fps:?}");
        assert_eq!(
            miner.template_of(&first),
            Some("Failed password for <*> from <*> port <*> ssh2")
        );
        let merges = miner.take_run_merges();
        assert_eq!(
            merges.len(),
            3,
            "three younger templates merged into the first"
        );
        assert!(merges.iter().all(|m| m.into == first.as_str()));
        // A merged fingerprint stands for the survivor.
        assert_eq!(
            miner.resolve(&Fingerprint::from_raw(merges[0].from.clone())),
            first
        );
    }

    #[test]
    fn a_few_distinct_words_stay_structure() {
        let mut miner = TemplateMiner::default();
        let fps = run(
            &mut miner,
            &[
                "h1.example.com:80 open through proxy p.example.com:5070 HTTPS",
                "h2.example.com:443 open through proxy p.example.com:5070 SOCKS5",
                "10.0.0.1:80 open through proxy p.example.com:5070 HTTPS",
                "Accepted password for root from 10.0.0.1 port 1 ssh2",
                "Failed password for root from 10.0.0.1 port 1 ssh2",
            ],
        );
        assert_eq!(fps[0], fps[2]);
        assert_ne!(fps[0], fps[1]);
        assert_ne!(fps[3], fps[4]);
    }

    #[test]
    fn words_that_change_together_stay_structure_names_that_change_alone_do_not() {
        let reasons = [
            "invalid password",
            "account locked",
            "expired token",
            "unknown realm",
            "mfa required",
        ];
        let users = ["bob", "grace", "alice", "dave", "erin", "frank", "heidi"];
        let lines: Vec<String> = (0..70)
            .map(|i| {
                format!(
                    "User {} failed to authenticate from 10.0.0.{}: {}",
                    users[(i * 3) % users.len()],
                    i % 250,
                    reasons[i % reasons.len()]
                )
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut whole = TemplateMiner::default();
        let fps = run(&mut whole, &refs);
        let problems: std::collections::HashSet<_> = fps.iter().collect();
        assert_eq!(
            problems.len(),
            reasons.len(),
            "one problem per reason, any user"
        );
        for (i, fp) in fps.iter().enumerate() {
            assert_eq!(*fp, fps[i % reasons.len()], "{}", lines[i]);
        }

        // The same through restores: what varied alone is worked out again from the templates.
        let mut snapshot = TemplateSnapshot::default();
        let mut raw = Vec::new();
        for window in refs.chunks(9) {
            let mut miner = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot.clone());
            for l in window {
                raw.push(miner.fingerprint(&ev("auth", l)).fingerprint);
            }
            apply(&mut snapshot, miner.take_changes());
        }
        let last = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot);
        let windowed: Vec<Fingerprint> = raw.iter().map(|f| last.resolve(f)).collect();
        let problems: std::collections::HashSet<_> = windowed.iter().collect();
        assert_eq!(problems.len(), reasons.len(), "{windowed:?}");
    }

    #[test]
    fn a_template_born_beside_a_sibling_is_young_until_it_settles() {
        let mut miner = TemplateMiner::default();
        let line = |u: &str| format!("Failed password for {u} from 10.0.0.1 port 22 ssh2");
        let first = miner.fingerprint(&ev("sshd", &line("root")));
        assert!(!first.young, "alone in its family");
        let second = miner.fingerprint(&ev("sshd", &line("admin")));
        assert!(second.young, "born beside root's template");
        assert!(
            !miner.fingerprint(&ev("sshd", &line("admin"))).young,
            "not born again"
        );
        assert!(miner.fingerprint(&ev("sshd", &line("uucp"))).young);
        // The fourth value makes the position a variable: this log lands on root's template.
        let fourth = miner.fingerprint(&ev("sshd", &line("guest")));
        assert!(!fourth.young);
        assert_eq!(fourth.fingerprint, first.fingerprint);
        assert_eq!(miner.resolve(&second.fingerprint), first.fingerprint);
        let other = miner.fingerprint(&ev("cron", "job nightly failed"));
        assert!(!other.young, "another service, another family");
    }

    /// Values under different keys are different events, however many keys there are; the
    /// values of one key are data.
    #[test]
    fn keys_are_structure_and_their_values_data() {
        let mut miner = TemplateMiner::default();
        let fps = run(
            &mut miner,
            &[
                "getRecentTasks: num=20,flags=62",
                "getRecentTasks: topActivity=ComponentInfo{a/b.C}",
                "getRecentTasks: count=3",
                "getRecentTasks: mode=fast",
                "getRecentTasks: user=root",
            ],
        );
        let distinct: std::collections::HashSet<_> = fps.iter().collect();
        assert_eq!(distinct.len(), 5, "{fps:?}");
        let mut miner = TemplateMiner::default();
        let users = ["cyrus", "root", "news", "test", "guest", "admin"];
        let mut lines: Vec<String> = users
            .iter()
            .map(|u| format!("session opened for user {u} by (uid=0)"))
            .collect();
        lines.push("session opened for user root by LOGIN(uid=0)".into());
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let fps = run(&mut miner, &lines);
        assert!(fps[..6].iter().all(|f| *f == fps[0]), "{fps:?}");
        assert_ne!(fps[6], fps[0], "by LOGIN(...) is another event");
    }

    /// `[[group]]` rules: `split` words never become variables for the lines a rule matches;
    /// `fingerprint` makes every matching line one problem.
    #[test]
    fn group_rules_split_words_and_name_problems() {
        use crate::grouping::{GroupRule, GroupRules};
        let lines = [
            "breaker open for upstream",
            "breaker closed for upstream",
            "breaker half for upstream",
            "breaker stuck for upstream",
        ];
        let fps = run(&mut TemplateMiner::default(), &lines);
        assert!(
            fps.iter().all(|f| *f == fps[0]),
            "without a rule: one problem"
        );
        let rules = GroupRules::new(vec![
            GroupRule {
                name: "states".into(),
                template: Some(regex::Regex::new("^breaker").unwrap()),
                split: vec!["open".into()],
                ..GroupRule::default()
            },
            GroupRule {
                name: "disks".into(),
                template: Some(regex::Regex::new("disk").unwrap()),
                fingerprint: Some("disk-trouble".into()),
                ..GroupRule::default()
            },
        ]);
        let mut miner = TemplateMiner::default().with_rules(rules);
        let fps = run(&mut miner, &lines);
        let distinct: std::collections::HashSet<_> = fps.iter().collect();
        assert_eq!(distinct.len(), 4, "{fps:?}");
        let fps = run(
            &mut miner,
            &["disk full on /var", "cannot write: disk quota exceeded"],
        );
        assert!(fps.iter().all(|f| f.as_str() == "disk-trouble"), "{fps:?}");
    }

    /// Upper-case keywords (states, protocols, methods) are a vocabulary: however many show
    /// up at one position, they stay structure; lower-case names there become a variable.
    #[test]
    fn keywords_stay_structure_names_become_variables() {
        let states = ["OPEN", "CLOSED", "HALF_OPEN", "FORCED_OPEN", "DISABLED"];
        let lines: Vec<String> = states
            .iter()
            .map(|s| format!("circuit breaker for upstream went {s}"))
            .collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let fps = run(&mut TemplateMiner::default(), &lines);
        let distinct: std::collections::HashSet<_> = fps.iter().collect();
        assert_eq!(distinct.len(), states.len(), "{fps:?}");
        let fps = run(
            &mut TemplateMiner::default(),
            &[
                "User bob failed to authenticate",
                "User grace failed to authenticate",
                "User alice failed to authenticate",
                "User dave failed to authenticate",
            ],
        );
        assert!(fps.iter().all(|f| *f == fps[0]), "{fps:?}");
    }

    /// Table-like lines whose leading words differ are different events.
    #[test]
    fn different_leading_words_stay_apart() {
        let mut miner = TemplateMiner::default();
        let fps = run(
            &mut miner,
            &[
                "PID hash table entries: 512 (order: 9, 4096 bytes)",
                "Dquot-cache hash table entries: 1024 (order: 0, 4096 bytes)",
                "Inode-cache hash table entries: 8192 (order: 3, 32768 bytes)",
                "Mount-cache hash table entries: 512 (order: 0, 4096 bytes)",
            ],
        );
        let distinct: std::collections::HashSet<_> = fps.iter().collect();
        assert_eq!(distinct.len(), 4, "{fps:?}");
    }

    #[test]
    fn a_variable_first_token_does_not_split() {
        let mut miner = TemplateMiner::default();
        let fps = run(
            &mut miner,
            &[
                "web-a: disk full on volume data",
                "db-b: disk full on volume data",
                "cache-c: disk full on volume data",
                "queue-d: disk full on volume data",
                "edge-e: disk full on volume data",
            ],
        );
        assert!(fps.iter().all(|f| *f == fps[0]), "{fps:?}");
    }

    #[test]
    fn services_are_part_of_the_key_and_error_fingerprint_wins() {
        let mut miner = TemplateMiner::default();
        let a = miner.fingerprint(&ev("a", "disk full")).fingerprint;
        let b = miner.fingerprint(&ev("b", "disk full")).fingerprint;
        assert_ne!(a, b);
        let forced = LogEvent::from_value(
            json!({"id": "y", "service": "a", "message": "disk full",
                   "attributes": {"error": {"fingerprint": "disk-v2"}}}),
            || "y".into(),
        )
        .unwrap();
        assert_eq!(miner.fingerprint(&forced).fingerprint.as_str(), "disk-v2");
    }

    #[test]
    fn the_same_logs_give_the_same_fingerprints_every_time() {
        let lines: Vec<String> = (0..300)
            .map(|i| match i % 3 {
                0 => format!("session opened for user u{} by (uid={i})", i % 7),
                1 => format!("worker {i} failed: GET https://x/{i} after {i}ms"),
                _ => format!("Invalid user name{} from 10.1.{}.{}", i % 11, i % 5, i % 9),
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let once = run(&mut TemplateMiner::default(), &refs);
        let twice = run(&mut TemplateMiner::default(), &refs);
        assert_eq!(once, twice);
    }

    #[test]
    fn the_cap_evicts_the_least_recently_matched_but_never_a_ticketed_template() {
        let mut miner = TemplateMiner::new(MinerConfig {
            cap: 10,
            ..MinerConfig::default()
        });
        let ticketed = miner.fingerprint(&ev("s", "alpha beta gamma")).fingerprint;
        miner.note_ticket(&ticketed, "OPS-1");
        let words = [
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen",
        ];
        for w in words {
            miner.fingerprint(&ev("s", &format!("{w} happened here")));
        }
        assert!(miner.len() <= 10);
        assert_eq!(miner.template_of(&ticketed), Some("alpha beta gamma"));
        let changes = miner.take_changes();
        assert!(!changes.removed.is_empty());
        // The most recent ones are kept.
        let kept: Vec<String> = miner.templates().into_iter().map(|t| t.template).collect();
        assert!(
            kept.contains(&"fifteen happened here".to_string()),
            "{kept:?}"
        );
        assert!(!kept.contains(&"one happened here".to_string()), "{kept:?}");
    }

    #[test]
    fn a_miner_restored_from_its_changes_continues_exactly() {
        let lines: Vec<String> = (0..400)
            .map(|i| match i % 4 {
                0 => format!(
                    "Failed password for user{} from 10.0.0.{} port {i} ssh2",
                    ["root", "adm", "bin", "sys", "ftp"][i % 5],
                    i % 200
                ),
                1 => format!("Connection closed by 10.0.{}.1 [preauth]", i % 13),
                2 => format!(
                    "Received disconnect from 10.0.0.{}: 11: {} [preauth]",
                    i % 17,
                    ["Bye Bye", "normal"][i % 2]
                ),
                _ => format!(
                    "pam_unix(sshd:auth): check pass; user {}",
                    ["unknown", "known", "root", "x", "y"][i % 5]
                ),
            })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let mut whole = TemplateMiner::default();
        let expected = run(&mut whole, &refs);

        // The same logs in 10 windows, each with a miner rebuilt from what the last one saved.
        let mut snapshot = TemplateSnapshot::default();
        let mut raw = Vec::new();
        for window in refs.chunks(40) {
            let mut miner = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot.clone());
            for l in window {
                raw.push(miner.fingerprint(&ev("sshd", l)).fingerprint);
            }
            apply(&mut snapshot, miner.take_changes());
        }
        let last = TemplateMiner::from_snapshot(MinerConfig::default(), snapshot);
        let windowed: Vec<Fingerprint> = raw.iter().map(|f| last.resolve(f)).collect();
        assert_eq!(windowed, expected);
    }

    /// What the state store does with a save, in memory.
    fn apply(s: &mut TemplateSnapshot, c: TemplateChanges) {
        for f in c.families {
            s.families.retain(|x| x.id != f.id);
            s.families.push(f);
        }
        for t in c.templates {
            s.templates.retain(|x| x.fingerprint != t.fingerprint);
            s.templates.push(t);
        }
        s.templates.retain(|t| !c.removed.contains(&t.fingerprint));
        s.merges.extend(c.merges);
    }
}
