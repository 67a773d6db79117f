//! The Datadog source: the Logs v2 search API, page by page, streamed into the pipeline.
//!
//! In: the query, an absolute window (date math is resolved once at start, so every page asks
//! for the same window), the page size, an optional `--limit`. Out: `SourceItem::Event` per log,
//! oldest first (`sort: timestamp`, so later runs can checkpoint), a `Fetched` timing per page,
//! and a `Warning` for partial results (`meta.status: "timeout"`, `meta.warnings`).
//!
//! `POST {base}/api/v2/logs/events/search` with `DD-API-KEY` and `DD-APPLICATION-KEY`; the next
//! page is asked for with `meta.page.after` as `page.cursor` and the same filter. The listing ends
//! when a page carries no cursor or no data (both happen; a short page can still carry a cursor).
//! Each page is sent into the bounded channel before the next is requested, so the workers start
//! on page one while page two is in flight, and memory holds at most a couple of pages.
//! A server that repeats a cursor, or serves pages of logs already sent, ends the listing with
//! an error instead of looping; a log sent twice is passed on once. A log stamped outside the
//! window is passed on with a `Notice`. The response body is read with a cap (`MAX_BODY_BYTES`).
//! Search is rate limited per organisation (hundreds of requests per hour): every request goes
//! through the shared `http::Service` (limiter, `X-RateLimit-*` pacing, 429/5xx retries).

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ItemSender, Skipped, SourceItem};
use crate::config::DatadogConfig;
use crate::event::LogEvent;
use crate::http::{read_body_capped, BodyError, HttpError, Retry, Service};

/// The largest search response read (a page of 1000 typical logs is a few MiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Everything the source needs.
#[derive(Debug, Clone)]
pub struct DatadogSource {
    pub service: Service,
    pub api_base: String,
    pub config: DatadogConfig,
    pub page_size: u32,
    pub limit: Option<u64>,
    /// The largest response body read; a larger page fails the source.
    pub max_body_bytes: usize,
}

#[derive(Debug, Serialize)]
struct SearchRequest<'a> {
    filter: Filter<'a>,
    page: Page<'a>,
    sort: &'static str,
}

#[derive(Debug, Serialize)]
struct Filter<'a> {
    query: &'a str,
    from: String,
    to: String,
    indexes: [&'static str; 1],
}

#[derive(Debug, Serialize)]
struct Page<'a> {
    limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct SearchResponse {
    #[serde(default)]
    data: Vec<Value>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    page: Option<MetaPage>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    warnings: Vec<Warning>,
}

#[derive(Debug, Default, Deserialize)]
struct MetaPage {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Warning {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl DatadogSource {
    /// Fetch every page of the window (or up to `--limit` logs) into `tx`.
    pub async fn run(self, tx: ItemSender) -> anyhow::Result<()> {
        let url = format!("{}/api/v2/logs/events/search", self.api_base);
        let mut cursor: Option<String> = None;
        let mut sent: u64 = 0;
        let mut page_number = 0u64;
        // A server that hands back a cursor it gave before, or pages of logs already sent, would
        // keep this loop going forever: both end the listing with an error.
        let mut cursors_seen: HashSet<String> = HashSet::new();
        let mut ids_seen = SeenIds::default();
        loop {
            let want = match self.limit {
                Some(limit) if limit <= sent => return Ok(()),
                Some(limit) => u32::try_from(limit - sent)
                    .unwrap_or(u32::MAX)
                    .min(self.page_size),
                None => self.page_size,
            };
            page_number += 1;
            let started = Instant::now();
            let page = self
                .fetch_page(&url, cursor.as_deref(), want, page_number, sent)
                .await?;
            let count = page.data.len();
            let meta = page.meta.unwrap_or_default();
            let mut said = vec![SourceItem::Fetched {
                latency: started.elapsed(),
                events: count,
            }];
            said.extend(warnings(&meta));
            let read = self.read_page(page.data, page_number, &mut ids_seen);
            // Said before the page's logs, so a run that stops early (--limit) still says it.
            said.extend(read.notice);
            for item in said {
                if tx.send(item).await.is_err() {
                    return Ok(());
                }
            }
            for item in read.items {
                // Only logs count toward --limit (as in the pipeline): a skipped record is not one.
                let is_log = matches!(item, SourceItem::Event(_));
                if tx.send(item).await.is_err() {
                    return Ok(());
                }
                sent += u64::from(is_log);
            }
            let next = match meta.page.and_then(|p| p.after).filter(|c| !c.is_empty()) {
                Some(next) if count > 0 => next,
                _ => return Ok(()),
            };
            if read.new_ids == 0 {
                anyhow::bail!(
                    "Datadog page {page_number} held only logs already fetched in this run and \
                     still pointed to a next page: stopped, as the listing would never end; \
                     {sent} logs were fetched before it"
                );
            }
            if !cursors_seen.insert(next.clone()) || cursor.as_deref() == Some(next.as_str()) {
                anyhow::bail!(
                    "Datadog returned the cursor of an earlier page again after page {page_number}: \
                     stopped, as the listing would never end; {sent} logs were fetched before it"
                );
            }
            cursor = Some(next);
        }
    }

    /// One page of the search, read (within `max_body_bytes`) and parsed.
    async fn fetch_page(
        &self,
        url: &str,
        cursor: Option<&str>,
        want: u32,
        page_number: u64,
        sent: u64,
    ) -> anyhow::Result<SearchResponse> {
        let body = SearchRequest {
            filter: Filter {
                query: &self.config.query,
                from: iso(self.config.from),
                to: iso(self.config.to),
                indexes: ["*"],
            },
            page: Page {
                limit: want,
                cursor,
            },
            sort: "timestamp",
        };
        let response = self
            .service
            .send(
                |client| {
                    client
                        .post(url)
                        .header("DD-API-KEY", self.config.api_key.expose_secret())
                        .header("DD-APPLICATION-KEY", self.config.app_key.expose_secret())
                        .header("Accept", "application/json")
                        .json(&body)
                },
                Retry::Idempotent,
            )
            .await
            .map_err(|e| explain(e, sent))?;
        let body = read_body_capped(response, self.max_body_bytes)
            .await
            .map_err(|e| {
                let hint = match e {
                    BodyError::TooLarge { .. } => "; lower --batch-size if pages are this large",
                    BodyError::Read(_) => "",
                };
                anyhow::anyhow!("reading Datadog page {page_number} failed: {e}{hint}; {sent} logs were fetched before it")
            })?;
        // The raw page is freed on return, before the logs are built.
        crate::decode::parse(&body).map_err(|e| {
            anyhow::anyhow!("Datadog POST /api/v2/logs/events/search: page {page_number} is not a logs search response: {e}; {sent} logs were fetched before it")
        })
    }

    /// A page's records as items: logs not sent before in this run, records that are not logs
    /// (skipped), and a notice when logs are stamped outside the asked window.
    fn read_page(&self, data: Vec<Value>, page_number: u64, ids_seen: &mut SeenIds) -> ReadPage {
        let mut read = ReadPage {
            items: Vec::with_capacity(data.len()),
            new_ids: 0,
            notice: None,
        };
        let mut outside = 0usize;
        let mut outside_example = None;
        for (i, value) in data.into_iter().enumerate() {
            // A record Datadog sent before in this run (a log or not) is passed on once.
            let id = match value.get("id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            if let Some(id) = id {
                if !ids_seen.insert(&id) {
                    tracing::debug!("Datadog sent log {id} again on page {page_number}");
                    continue;
                }
            }
            read.new_ids += 1;
            let item = match LogEvent::from_value(value, || format!("datadog:{page_number}:{i}")) {
                Ok(event) => {
                    if let Some(t) = event
                        .timestamp
                        .filter(|t| *t < self.config.from || *t > self.config.to)
                    {
                        outside += 1;
                        outside_example.get_or_insert_with(|| (event.id.clone(), t));
                    }
                    SourceItem::Event(event)
                }
                Err(e) => SourceItem::Skipped(Skipped {
                    location: format!("datadog page {page_number} item {}", i + 1),
                    reason: e.to_string(),
                    unreadable: false,
                }),
            };
            read.items.push(item);
        }
        read.notice = outside_example.map(|(id, t)| {
            SourceItem::Notice(format!(
                "Datadog returned {outside} log(s) stamped outside the asked window {} to {} \
                 (e.g. log {id} at {}); they are processed, and the checkpoint does not move past the window",
                iso(self.config.from),
                iso(self.config.to),
                iso(t)
            ))
        });
        read
    }
}

/// What one page held, as items for the pipeline.
struct ReadPage {
    items: Vec<SourceItem>,
    /// Records not sent before in this run.
    new_ids: usize,
    notice: Option<SourceItem>,
}

/// The warnings a page carries: partial results, and Datadog's own warnings.
fn warnings(meta: &Meta) -> Vec<SourceItem> {
    let mut out = Vec::new();
    if meta.status.as_deref() == Some("timeout") {
        out.push(SourceItem::Warning("Datadog returned partial results (meta.status: timeout): some logs in the window may be missing; narrow --from/--to or the query".to_string()));
    }
    for w in &meta.warnings {
        let text = [w.code.as_deref(), w.title.as_deref(), w.detail.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        out.push(SourceItem::Warning(format!("Datadog: {text}")));
    }
    out
}

/// The ids of the logs sent in this run, kept as 64-bit hashes (16 bytes a log, not the id).
#[derive(Default)]
struct SeenIds {
    hasher: std::collections::hash_map::RandomState,
    seen: HashSet<u64>,
}

impl SeenIds {
    /// `false` if the id was seen before.
    fn insert(&mut self, id: &str) -> bool {
        self.seen.insert(self.hasher.hash_one(id))
    }
}

/// A Datadog failure in words a user can act on; the keys never appear.
fn explain(e: HttpError, fetched: u64) -> anyhow::Error {
    match e {
        HttpError::Auth { status, message, .. } => anyhow::anyhow!(
            "Datadog refused the API keys (HTTP {status}: {message}): check DD_API_KEY and DD_APP_KEY, \
             the DD_SITE they belong to, and that the application key's user has the logs_read_data permission"
        ),
        other => anyhow::anyhow!("Datadog log search failed: {other}; {fetched} logs were fetched before the failure and were processed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_matches_the_api() {
        let from = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let body = SearchRequest {
            filter: Filter {
                query: "status:error service:web",
                from: iso(from),
                to: iso(from),
                indexes: ["*"],
            },
            page: Page {
                limit: 100,
                cursor: Some("eyJh"),
            },
            sort: "timestamp",
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"filter": {"query": "status:error service:web", "from": "2026-11-23T09:00:00.000Z",
                "to": "2026-11-23T09:00:00.000Z", "indexes": ["*"]}, "page": {"limit": 100, "cursor": "eyJh"}, "sort": "timestamp"})
        );
    }

    #[test]
    fn the_last_page_of_the_real_cassette_has_no_meta() {
        let page: SearchResponse = serde_json::from_str(r#"{"data":[]}"#).unwrap();
        assert!(page.data.is_empty() && page.meta.is_none());
    }
}
