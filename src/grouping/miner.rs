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
use std::sync::Arc;

use chrono::{DateTime, Utc};

mod restore;
mod tokens;

use super::mask::{self, is_wordy, key_shape, VAR};
use super::rules::GroupRules;
use super::store::{SeenValues, StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge};
use crate::event::LogEvent;
use crate::grouping::fingerprint::{self, Fingerprint, Fingerprinted};
use tokens::{hash_str, index_key, key_of, mix, FastMap, IdMap, Tokens};

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
                template: Arc::from(buf.as_str()),
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
            match member.values.iter_mut().find(|v| v.position() == p) {
                Some(v) => v.add(value, hash),
                None => {
                    let mut v = SeenValues::new(p);
                    v.add(value, hash);
                    member.values.reserve_exact(1);
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
        self.shared_template(fp).map(|t| &**t)
    }

    /// The same, shared: the logs and problems that hold it point at the miner's own text.
    pub fn shared_template(&self, fp: &Fingerprint) -> Option<&Arc<str>> {
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
            template: member.tokens.text.to_string(),
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
        if fam.alone.iter().zip(&fam.variable).all(|(a, v)| *a || *v) {
            // Nothing left to learn: every position is known to vary alone, or is a variable.
            return;
        }
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
            .map(|&m| &*self.members[m as usize].tokens.text);
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
                    let mut v = SeenValues::new(p);
                    v.add(old, hash_str(3, old) as u32);
                    member.values.retain(|v| v.position() != p);
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
                .find(|s| s.position() == v.position())
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

#[cfg(test)]
mod tests;
