//! What the run does once the loop is over, and the state it loads and saves on the way: the
//! template miner, the merges' ticket steps, the outcomes and the checkpoint.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::grouping::{MinerConfig, TemplateMiner, TemplateSnapshot};
use crate::jira::JiraClient;
use crate::pipeline::collector::Collector;
use crate::state::StateHandle;
use crate::ticket;

/// How far the source got, for the checkpoint.
pub(super) struct Completion {
    pub(super) complete: bool,
    pub(super) warnings_seen: bool,
    pub(super) last_fetched: Option<DateTime<Utc>>,
}

/// The template miner, continuing from what the state store learned in earlier runs.
pub(super) async fn load_miner(state: Option<&StateHandle>) -> anyhow::Result<TemplateMiner> {
    let snapshot = match state {
        Some(state) => state.call(|s| s.load_templates()).await?,
        None => TemplateSnapshot::default(),
    };
    Ok(TemplateMiner::from_snapshot(
        MinerConfig::default(),
        snapshot,
    ))
}

/// Save the miner's changes: at once when a template was born, generalised, merged or
/// evicted (`needs_save`), and everything (counts too) when `all`.
pub(super) async fn save_templates(
    miner: &mut TemplateMiner,
    state: Option<&StateHandle>,
    all: bool,
) -> anyhow::Result<()> {
    let Some(state) = state else { return Ok(()) };
    if all || miner.needs_save() {
        let changes = miner.take_changes();
        state.call(move |s| s.save_templates(&changes)).await?;
    }
    Ok(())
}

/// Two known templates turned out to be one problem: the ticket that survives carries both
/// labels, so either finds it. The survivor's own ticket wins; otherwise the merged one's
/// ticket gets the survivor's label; a younger ticket of the merged template is told where its
/// problem went (it is not closed: people may have worked on it). Nothing is created here.
///
/// A merge whose two labels a ticket created in this run already carries (`created`: labels by
/// ticket key) needs nothing. The others' tickets are looked up in batched searches; what to
/// do is returned, for the ticket phase to carry out with the rest of the run's ticket work.
pub(super) async fn merge_steps(
    jira: &JiraClient,
    merges: &[crate::grouping::TemplateMerge],
    created: &HashMap<String, Vec<String>>,
) -> Result<Vec<ticket::recurrence::MergeStep>, String> {
    use crate::jira::content::fingerprint_label;
    use ticket::recurrence::MergeStep;
    let pending: Vec<(String, String)> = merges
        .iter()
        .map(|m| (fingerprint_label(&m.into), fingerprint_label(&m.from)))
        .filter(|(into, from)| {
            !created
                .values()
                .any(|labels| labels.contains(into) && labels.contains(from))
        })
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let mut labels: Vec<String> = Vec::new();
    for (into, from) in &pending {
        for l in [into, from] {
            if !labels.contains(l) {
                labels.push(l.clone());
            }
        }
    }
    let mut tickets: Vec<(String, Vec<String>)> = Vec::new();
    for chunk in labels.chunks(crate::jira::lookup::CHUNK_LABELS) {
        let found = jira
            .open_with_labels(chunk)
            .await
            .map_err(|e| format!("could not look up the tickets of merged problems: {e:#}"))?;
        for (key, labels) in found {
            if !tickets.iter().any(|(k, _)| *k == key) {
                tickets.push((key, labels));
            }
        }
    }
    // Labels to add, by ticket, in the order first needed; comments in merge order.
    let mut adds: Vec<(String, Vec<String>)> = Vec::new();
    let mut comments: Vec<MergeStep> = Vec::new();
    for (into, from) in &pending {
        let of_merge: Vec<usize> = (0..tickets.len())
            .filter(|&i| tickets[i].1.contains(into) || tickets[i].1.contains(from))
            .collect();
        let chosen = of_merge
            .iter()
            .copied()
            .find(|&i| tickets[i].1.contains(into))
            .or_else(|| {
                of_merge
                    .iter()
                    .copied()
                    .find(|&i| tickets[i].1.contains(from))
            });
        let Some(chosen) = chosen else { continue };
        let key = tickets[chosen].0.clone();
        for label in [into, from] {
            if !tickets[chosen].1.contains(label) {
                tickets[chosen].1.push(label.clone());
                match adds.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, add)) => add.push(label.clone()),
                    None => adds.push((key.clone(), vec![label.clone()])),
                }
            }
        }
        for &i in &of_merge {
            let (other, other_labels) = &tickets[i];
            if *other != key && other_labels.contains(from) && !other_labels.contains(into) {
                let step = MergeStep::Comment {
                    key: other.clone(),
                    survivor: key.clone(),
                    label: from.clone(),
                };
                if !comments.contains(&step) {
                    comments.push(step);
                }
            }
        }
    }
    Ok(adds
        .into_iter()
        .map(|(key, add)| MergeStep::Label { key, add })
        .chain(comments)
        .collect())
}

/// Commit every outcome, then move the checkpoint as far as it is safe.
pub(super) async fn save_state(
    collector: &mut Collector,
    state: Option<&StateHandle>,
    checkpoint_key: Option<&str>,
    window_end: Option<DateTime<Utc>>,
    done: Completion,
) -> anyhow::Result<()> {
    collector.flush_state().await?;
    // Every log up to the checkpoint now has a final outcome recorded (or is on the retry list).
    if let (Some(state), Some(key), Some(end)) = (state, checkpoint_key, window_end) {
        // A partial result (Datadog's timeout status or warnings) may lack logs older than the
        // newest one it returned: the checkpoint stays, and the next run reads the span again.
        let until = if done.complete {
            Some(end)
        } else if done.warnings_seen {
            None
        } else {
            done.last_fetched
        };
        // A log stamped past the window (a clock far ahead) must not carry the checkpoint with it.
        let until = until.map(|t| t.min(end));
        if let Some(until) = until {
            let key = key.to_string();
            state
                .call_durable(move |s| s.advance_checkpoint(&key, until, CHECKPOINT_KEEP_IDS))
                .await?;
        }
    }
    Ok(())
}

/// How far behind the checkpoint processed ids are kept, to recognise logs an overlapping window
/// fetches again.
const CHECKPOINT_KEEP_IDS: chrono::Duration = chrono::Duration::hours(6);
