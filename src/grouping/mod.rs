//! Grouping: which logs are one problem, from a log to its fingerprint.
//!
//! - `fingerprint`: the significant line of a message, the fixed masking fingerprint older
//!   tickets carry, the `error.fingerprint` a log may set, and the `Fingerprint` type;
//! - `mask`: a line into tokens with its variable-looking values replaced by `<*>`;
//! - `miner`: learns, across logs and runs, which remaining positions vary and which are
//!   structure, and gives each problem a fingerprint that stays put;
//! - `rules`: the user's corrections (`[[group]]`);
//! - `store`: the rows the state store keeps for it; `list` shows them (`triage templates`).
//!
//! In: log events in arrival order. Out: `Fingerprinted` (fingerprint, template, other labels
//! to search). Nothing here fails or blocks; see docs/grouping.md for the user's view.

pub mod fingerprint;
pub mod mask;
pub mod miner;
pub mod rules;
pub mod store;

pub use miner::{MinerConfig, TemplateMiner};
pub use rules::{GroupRule, GroupRules};
pub use store::{
    SeenValues, StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge, TemplateSnapshot,
};
