//! Grouping: which logs are one problem. Masking (`mask`) turns a line into tokens with its
//! variable-looking values replaced by `<*>`; the template miner (`miner`) learns, across logs
//! and runs, which remaining positions vary and which are structure, and gives each problem a
//! fingerprint that stays put; `rules` are the user's corrections (`[[group]]`). `store` holds the rows the state store keeps for it, and `list` shows them
//! (`triage templates`).
//!
//! In: log events in arrival order. Out: `Fingerprinted` (fingerprint, template, other labels
//! to search). Nothing here fails or blocks; see docs/grouping.md for the user's view.

pub mod list;
pub mod mask;
pub mod miner;
pub mod rules;
pub mod store;

pub use miner::{MinerConfig, TemplateMiner};
pub use rules::{GroupRule, GroupRules};
pub use store::{
    SeenValues, StoredFamily, StoredTemplate, TemplateChanges, TemplateMerge, TemplateSnapshot,
};
