//! The source's side of the run: one spawned task that reads the file or pages through Datadog
//! (earlier runs' failures first), redacts every log, and hands the items to the loop in
//! batches.
//!
//! Redacted here, before the loop: nothing after this sees a log's raw text (the fingerprint,
//! the templates the miner learns and stores, tickets, reports, the retry list). And the
//! work, most of a log's cost after parsing, runs beside the loop rather than in it.
//!
//! The task is one of the run's (`tasks`), spawned and stopped by [`Feed`]: the run either
//! hears how it ended or tells it to stop and waits for it, so it never outlives the run.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::tasks::TaskGroup;

use crate::config::{Config, SourceConfig};
use crate::event::LogEvent;
use crate::http::{RetryPolicy, Service};
use crate::redact::Redactor;
use crate::source::datadog::DatadogSource;
use crate::source::{self, SourceItem};

/// Items handed from the source to the loop at once.
const HANDOFF_BATCH: usize = 256;

/// The running source and the batches it hands on.
pub(super) struct Feed {
    /// The source's task; `None` when it was told to stop.
    task: JoinHandle<Option<anyhow::Result<()>>>,
    /// The group it was spawned in, to tell it to stop.
    tasks: TaskGroup,
    batches: mpsc::Receiver<Vec<SourceItem>>,
    /// What is left of the batch at hand.
    buffered: std::vec::IntoIter<SourceItem>,
    /// A handle on the Datadog service (its limiter) for the summary.
    pub(super) datadog: Option<Service>,
}

impl Feed {
    /// Start the source in a task of `tasks`: `retries` first, then the file or the Datadog
    /// window.
    pub(super) fn start(
        config: &Config,
        retries: Vec<LogEvent>,
        tasks: TaskGroup,
    ) -> anyhow::Result<Feed> {
        let workers = config.workers.max(1);
        // The source writes one item at a time into a channel read in the same task, which
        // hands them on in batches: one cross-thread wake per batch instead of one per log.
        // Room for a couple of Datadog pages, or a few thousand file records, ahead of the
        // workers.
        let (tx, source_rx) = mpsc::channel::<SourceItem>(HANDOFF_BATCH);
        let ahead = (config.batch_size as usize * 2).max(workers * 4).max(256);
        let (batch_tx, batches) = mpsc::channel::<Vec<SourceItem>>(ahead.div_ceil(HANDOFF_BATCH));
        let mut datadog = None;
        let source_future: std::pin::Pin<
            Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>,
        > = match config.source.clone() {
            SourceConfig::File(input) => {
                Box::pin(source::file::run(input, config.max_line_bytes, tx.clone()))
            }
            // A checkpoint at or past the window's end (a clock set back): nothing to fetch.
            SourceConfig::Datadog(dd) if dd.to <= dd.from => {
                tracing::info!(
                    "the window {} to {} is empty: nothing to fetch",
                    dd.from,
                    dd.to
                );
                Box::pin(async { Ok(()) })
            }
            SourceConfig::Datadog(dd) => {
                let service = Service::new("Datadog", config.rate_limit, RetryPolicy::default())?;
                datadog = Some(service.clone());
                Box::pin(
                    DatadogSource {
                        service,
                        api_base: config.site.api_base.clone(),
                        config: dd,
                        page_size: config.batch_size,
                        limit: config.limit,
                        max_body_bytes: crate::source::datadog::MAX_BODY_BYTES,
                    }
                    .run(tx.clone()),
                )
            }
        };
        let produce = async move {
            // Earlier runs' failures first, then the new logs.
            for event in retries {
                if tx.send(SourceItem::Event(event)).await.is_err() {
                    return Ok(());
                }
            }
            drop(tx);
            source_future.await
        };
        let redact = config.redact;
        let task = tasks.spawn(async move {
            let (result, ()) = tokio::join!(produce, hand_on(source_rx, batch_tx, redact));
            result
        });
        Ok(Feed {
            task,
            tasks,
            batches,
            buffered: Vec::new().into_iter(),
            datadog,
        })
    }

    /// The next item from the source: from the batch at hand, else the next batch (cancel-safe:
    /// a batch is taken only in the poll that returns its first item). `None`: the source ended.
    pub(super) async fn next(&mut self) -> Option<SourceItem> {
        if let Some(item) = self.buffered.next() {
            return Some(item);
        }
        loop {
            self.buffered = self.batches.recv().await?.into_iter();
            if let Some(item) = self.buffered.next() {
                return Some(item);
            }
        }
    }

    /// The next item of the batch at hand, without waiting.
    pub(super) fn next_at_hand(&mut self) -> Option<SourceItem> {
        self.buffered.next()
    }

    /// The ids of the logs left in the batch at hand.
    pub(super) fn event_ids_at_hand(&self) -> impl Iterator<Item = &str> {
        self.buffered
            .as_slice()
            .iter()
            .filter_map(|item| match item {
                SourceItem::Event(e) => Some(e.id.as_str()),
                _ => None,
            })
    }

    /// Hang up. A source that `ended` by itself is asked how it ended (its error, if any); one
    /// the loop stopped taking from (limit, interrupt, failure) may be blocked on input that
    /// never comes (an open stdin), so it is told to stop and waited for: nothing it could
    /// still say matters.
    pub(super) async fn stop(self, ended: bool) -> Option<String> {
        let Feed {
            task,
            tasks,
            batches,
            buffered,
            ..
        } = self;
        drop(batches);
        drop(buffered);
        if ended {
            match task.await {
                Ok(Some(Ok(()))) | Ok(None) => None,
                Ok(Some(Err(e))) => Some(format!("{e:#}")),
                Err(e) => Some(format!("the source task failed: {e}")),
            }
        } else {
            tasks.stop_and_join(task, "the source task").await;
            None
        }
    }
}

/// Move the source's items on to the loop in batches of what is there, up to `HANDOFF_BATCH`,
/// every log redacted.
async fn hand_on(
    mut items: mpsc::Receiver<SourceItem>,
    batches: mpsc::Sender<Vec<SourceItem>>,
    redact: Redactor,
) {
    loop {
        // Room at the loop first: meanwhile the source fills its channel without waking
        // anyone, and the batch taken next is a full one.
        let Ok(room) = batches.reserve().await else {
            return;
        };
        let mut batch = Vec::with_capacity(HANDOFF_BATCH);
        if items.recv_many(&mut batch, HANDOFF_BATCH).await == 0 {
            return;
        }
        for item in &mut batch {
            if let SourceItem::Event(event) = item {
                redact.event_in_place(event);
            }
        }
        room.send(batch);
    }
}
