//! The Jira client: find a problem's ticket by its label, create one, comment, reopen.
//!
//! In: a `JiraConfig` (Cloud v3 with basic auth and Atlassian Document Format, or Server/DC v2
//! with a bearer token and wiki markup; the base URL may carry a port and a context path).
//! Out: ticket keys, or errors that say what Jira said (`errorMessages` / `errors`).
//!
//! Lookups are batched (`lookup`): the labels of many problems go out in one JQL search, read
//! page by page, and each problem reads its tickets back by their labels.
//! Search lags behind writes, so this client remembers what it created in this run (fingerprint
//! → key) and answers from that first, and passes the ids it created to v3's `reconcileIssues`.
//! A create is never repeated blindly: when its response is lost (timeout, 502, 504) the label is
//! searched first, and only if the ticket is not there is the create sent again.
//! Every call goes through the shared `http::Service` (limiter, 429/503 `Retry-After` and
//! `X-RateLimit-Reset`, backoff). Credentials are attached per request and never printed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use tokio::sync::oneshot;

use super::config::{JiraApi, JiraAuth, JiraConfig, PriorityMap};
use super::content::{self, Description, ProblemFacts, TicketDraft};
use super::lookup::{self, Batch, Lookups, Plan, Prefetched, Waiter};
use super::model::{
    Created, Issue, Myself, SearchJqlRequest, SearchResponse, SearchV2Request, Transitions,
};
use super::JiraError;
use crate::grouping::fingerprint::Fingerprint;
use crate::http::{HttpError, Retry, Service};
use crate::route::Fields;

/// Fields a search asks for (v3 returns only ids unless told).
const SEARCH_FIELDS: &[&str] = &["key", "summary", "status", "labels", "resolution"];
/// The fields the end of a run reads of the tickets it may change.
const READ_FIELDS: &[&str] = &["key", "summary", "status", "labels", "description"];
/// Keys read in one search.
const READ_CHUNK: usize = 50;
/// A create's body as Jira takes it, serialized straight from the draft (no JSON tree built).
#[derive(Debug, serde::Serialize)]
struct CreateBody<'a> {
    fields: CreateFields<'a>,
}

#[derive(Debug, serde::Serialize)]
struct CreateFields<'a> {
    project: Key<'a>,
    issuetype: Name<'a>,
    summary: &'a str,
    labels: Vec<&'a str>,
    description: &'a Description,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<Name<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    assignee: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<Name<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct Key<'a> {
    key: &'a str,
}

#[derive(Debug, serde::Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum User<'a> {
    AccountId {
        #[serde(rename = "accountId")]
        account_id: &'a str,
    },
    Name {
        name: &'a str,
    },
}

/// v3 accepts at most this many ids in `reconcileIssues`.
const MAX_RECONCILE: usize = 50;
/// Times a create is sent when its responses keep getting lost.
const CREATE_ATTEMPTS: u32 = 3;
/// The first wait between searches for a lost create; it doubles up to [`LOST_CREATE_SEARCH_MAX_WAIT`].
const LOST_CREATE_SEARCH_FIRST_WAIT: Duration = Duration::from_millis(500);
const LOST_CREATE_SEARCH_MAX_WAIT: Duration = Duration::from_secs(4);
/// Issues asked for per search page (Cloud returns at most 100 when fields are asked for).
const SEARCH_PAGE: u32 = 100;
/// Pages read of one search at most: a batch of labels matching more is cut there.
const MAX_SEARCH_PAGES: usize = 20;
/// A prefetched lookup older than this is not trusted: its problem is searched again.
const PREFETCH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Search again (after [`LOST_CREATE_SEARCH_FIRST_WAIT`], doubling up to
/// [`LOST_CREATE_SEARCH_MAX_WAIT`]) until `found` says the last result shows the ticket or
/// `settled` (when search has caught up with a create) has passed; the last result is returned
/// either way. A wait that would reach the log's deadline fails with `give_up()` instead:
/// whoever creates next must not do so before search has caught up.
pub(crate) async fn until_search_settles<T, Fut>(
    settled: tokio::time::Instant,
    mut last: T,
    found: impl Fn(&T) -> bool,
    mut search: impl FnMut() -> Fut,
    give_up: impl FnOnce() -> JiraError,
) -> Result<T, JiraError>
where
    Fut: std::future::Future<Output = Result<T, JiraError>>,
{
    let mut wait = LOST_CREATE_SEARCH_FIRST_WAIT;
    while !found(&last) {
        let now = tokio::time::Instant::now();
        if now >= settled {
            break;
        }
        let next = (now + wait).min(settled);
        if crate::http::current_deadline().is_some_and(|d| next >= d) {
            return Err(give_up());
        }
        tokio::time::sleep_until(next).await;
        wait = (wait * 2).min(LOST_CREATE_SEARCH_MAX_WAIT);
        last = search().await?;
    }
    Ok(last)
}

/// What a label search found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// A ticket this run created (search may not show it yet).
    pub created_in_run: Option<String>,
    /// An open ticket for the problem (the most recent when several).
    pub open: Option<String>,
    /// The most recent Done ticket, when there is no open one.
    pub done: Option<String>,
    /// The open ticket was found by another of the problem's labels only (an old or merged
    /// fingerprint): it should be given this fingerprint's label.
    pub needs_label: bool,
}

/// A Jira site, one project.
#[derive(Debug)]
pub struct JiraClient {
    service: Service,
    config: JiraConfig,
    priorities: PriorityMap,
    /// Fingerprint label → (id, key) of tickets this run created: search may not show them yet.
    created: DashMap<String, (String, String)>,
    /// Ids created this run, newest last, for `reconcileIssues`.
    created_ids: Mutex<Vec<i64>>,
    /// Jira refused the priority field (not on the create screen): stop sending it.
    skip_priority: AtomicBool,
    /// One find-then-create at a time per label, across leaders that replace each other.
    label_locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Fingerprint label → Jira's refusal (a 4xx) of its create: not sent again this run.
    refused: DashMap<String, String>,
    /// Batched label lookups: gathered, in flight, prefetched.
    lookups: Lookups,
    /// The projects a problem's ticket is searched in: the configured one, then every project
    /// a route names (a problem whose route changed is still found where it was filed).
    search_projects: Vec<String>,
    /// The outcome of the start-up credentials check (`GET /myself`); `None` while it runs.
    /// Every other call's result waits for it (see [`Self::unverified`]).
    verified: tokio::sync::watch::Sender<Option<Result<(), HttpError>>>,
}

impl JiraClient {
    pub fn new(service: Service, config: JiraConfig) -> Self {
        JiraClient {
            service,
            priorities: config.priorities.clone(),
            created: DashMap::new(),
            created_ids: Mutex::new(Vec::new()),
            skip_priority: AtomicBool::new(false),
            label_locks: DashMap::new(),
            refused: DashMap::new(),
            lookups: Lookups::default(),
            search_projects: vec![config.project.clone()],
            verified: tokio::sync::watch::Sender::new(Some(Ok(()))),
            config,
        }
    }

    /// A client whose calls may go out before its credentials are checked, but whose results
    /// are held until [`Self::verify`] has its answer: a refusal of the credentials is then
    /// every call's answer, so nothing is acted on with credentials Jira refused. Lets the
    /// start-up check run at the same time as the run's first lookups.
    pub fn unverified(self) -> Self {
        self.verified.send_replace(None);
        self
    }

    /// `GET /myself` for a client made [`Self::unverified`]: its outcome releases the results
    /// held meanwhile. Stopped before its answer (dropped), it fails them.
    pub async fn verify(&self) -> Result<String, HttpError> {
        struct Unfinished<'a>(&'a tokio::sync::watch::Sender<Option<Result<(), HttpError>>>);
        impl Drop for Unfinished<'_> {
            fn drop(&mut self) {
                self.0.send_if_modified(|v| {
                    if v.is_some() {
                        return false;
                    }
                    *v = Some(Err(HttpError::Unavailable {
                        service: "Jira",
                        attempts: 0,
                        last: "the credentials check was stopped before its answer".into(),
                        maybe_applied: false,
                    }));
                    true
                });
            }
        }
        let unfinished = Unfinished(&self.verified);
        let outcome = self.myself_unchecked().await;
        self.verified
            .send_replace(Some(outcome.as_ref().map(|_| ()).map_err(Clone::clone)));
        drop(unfinished);
        outcome
    }

    /// Whether the credentials check passed (waiting for its answer).
    pub async fn credentials_checked(&self) -> bool {
        self.checked().await.is_ok()
    }

    /// Wait for the credentials check's outcome (at once for a client checked or not made
    /// [`Self::unverified`]).
    async fn checked(&self) -> Result<(), HttpError> {
        let mut rx = self.verified.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            // The sender is this client's own field: not dropped while `self` lives.
            Err(_) => None,
        };
        outcome.unwrap_or(Ok(()))
    }

    /// Run the batched lookups' searches in `tasks`, a group of the run's (without it they are
    /// tasks of an owner of their own: a client outside a run).
    pub fn with_tasks(mut self, tasks: crate::tasks::TaskGroup) -> Self {
        self.lookups = Lookups::new(tasks);
        self
    }

    /// Search these projects as well as the configured one (the projects the routes name).
    pub fn with_search_projects(mut self, projects: Vec<String>) -> Self {
        for p in projects {
            if !self.search_projects.contains(&p) {
                self.search_projects.push(p);
            }
        }
        self
    }

    /// Hold this while finding and creating a fingerprint's ticket: a leader that replaces one
    /// whose deadline passed mid-create waits here until that create has finished. The lock is
    /// forgotten when its last holder lets go, so the map holds only labels in use.
    pub async fn lock_label(&self, fingerprint: &Fingerprint) -> LabelLock<'_> {
        let label = content::fingerprint_label(fingerprint.as_str());
        let lock = self.label_locks.entry(label.clone()).or_default().clone();
        LabelLock {
            locks: &self.label_locks,
            label,
            guard: Some(lock.lock_owned().await),
        }
    }

    /// How many times Jira's circuit breaker opened in this run.
    pub fn breaker_trips(&self) -> u64 {
        self.service.breaker_trips()
    }

    /// The Jira limit and how long calls waited on it (when the limiter is on).
    pub fn limiter_wait(&self) -> Option<crate::http::LimiterWait> {
        self.service.limiter_wait()
    }

    pub fn api(&self) -> JiraApi {
        self.config.api
    }

    fn url(&self, path: &str) -> String {
        let version = match self.config.api {
            JiraApi::V3 => 3,
            JiraApi::V2 => 2,
        };
        format!("{}/rest/api/{version}/{path}", self.config.base_url)
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.header("Accept", "application/json");
        match &self.config.auth {
            JiraAuth::Basic { email, token } => req.basic_auth(email, Some(token.expose_secret())),
            JiraAuth::Bearer(token) => req.bearer_auth(token.expose_secret()),
        }
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, HttpError> {
        let resp = self.get_unchecked(path).await;
        self.checked().await?;
        resp
    }

    async fn get_unchecked(&self, path: &str) -> Result<reqwest::Response, HttpError> {
        let url = self.url(path);
        self.service
            .send(|c| self.authorize(c.get(&url)), Retry::Idempotent)
            .await
    }

    async fn post(
        &self,
        path: &str,
        body: &(impl serde::Serialize + Sync),
        retry: Retry,
    ) -> Result<reqwest::Response, HttpError> {
        let url = self.url(path);
        let resp = self
            .service
            .send(|c| self.authorize(c.post(&url)).json(body), retry)
            .await;
        self.checked().await?;
        resp
    }

    /// `GET /myself`: are the credentials good? Returns the account's display name.
    pub async fn myself(&self) -> Result<String, HttpError> {
        let name = self.myself_unchecked().await;
        self.checked().await?;
        name
    }

    async fn myself_unchecked(&self) -> Result<String, HttpError> {
        let resp = self.get_unchecked("myself").await?;
        let me: Myself = resp.json().await.unwrap_or_default();
        Ok(me
            .display_name
            .or(me.name)
            .or(me.account_id)
            .unwrap_or_else(|| "unknown user".into()))
    }

    /// `GET /project/{key}`: does the project exist for this account? Returns its name.
    pub async fn project(&self) -> Result<String, HttpError> {
        let project = self.config.project.clone();
        self.project_info(&project).await.map(|(name, _)| name)
    }

    /// `GET /project/{key}`: the project's name and the names of its issue types.
    pub async fn project_info(&self, key: &str) -> Result<(String, Vec<String>), HttpError> {
        let resp = self.get(&format!("project/{}", url_segment(key))).await?;
        let v: Value = resp.json().await.unwrap_or_default();
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(key)
            .to_string();
        let types = names(v.get("issueTypes"));
        Ok((name, types))
    }

    /// `GET /project/{key}/components`: the names of the project's components.
    pub async fn components(&self, key: &str) -> Result<Vec<String>, HttpError> {
        let resp = self
            .get(&format!("project/{}/components", url_segment(key)))
            .await?;
        let v: Value = resp.json().await.unwrap_or_default();
        Ok(names(Some(&v)))
    }

    /// Why Jira refused this problem's ticket earlier in this run (a 4xx on its create), if it
    /// did: the same create would be refused again, so the problem's next leaders fail at once.
    pub fn refused(&self, fingerprint: &Fingerprint) -> Option<String> {
        let label = content::fingerprint_label(fingerprint.as_str());
        self.refused.get(&label).map(|m| {
            format!(
                "{} (not sent again: refused earlier in this run)",
                m.value()
            )
        })
    }

    /// Find this problem's tickets by its own label, in a fresh search (batched with the other
    /// lookups of the moment): this run's own record first.
    pub async fn find(self: &Arc<Self>, fingerprint: &Fingerprint) -> Result<Found, JiraError> {
        self.find_labels(fingerprint, &[], false).await
    }

    /// Find this problem's tickets by its own label or any of `also` (fingerprints merged into
    /// it, or the label it had before templates were learned), in one search, batched with
    /// other problems' lookups (its prefetched one when there is one, see [`Self::prefetch`]).
    /// An open ticket with the problem's own label wins; one found by another label only is
    /// `needs_label`.
    pub async fn find_also(
        self: &Arc<Self>,
        fingerprint: &Fingerprint,
        also: &[Fingerprint],
    ) -> Result<Found, JiraError> {
        self.find_labels(fingerprint, also, true).await
    }

    async fn find_labels(
        self: &Arc<Self>,
        fingerprint: &Fingerprint,
        also: &[Fingerprint],
        prefetched: bool,
    ) -> Result<Found, JiraError> {
        let labels = labels_of(fingerprint, also);
        let label = labels[0].clone();
        if let Some(entry) = self.created.get(&label) {
            return Ok(Found {
                created_in_run: Some(entry.1.clone()),
                ..Found::default()
            });
        }
        let mut batch = self.lookup(&labels, prefetched).await?;
        if !batch.alone && batch.issues.iter().any(|i| i.fields.labels.is_empty()) {
            // A server that did not return the labels: its issues cannot be told apart by
            // problem, so this one is searched alone.
            batch = Arc::new(Batch {
                issues: self.search_labels(&labels).await?,
                alone: true,
            });
        }
        let mut found = Found::default();
        let mut other_open = None;
        for issue in &batch.issues {
            let own = issue.fields.labels.contains(&label)
                || (batch.alone && issue.fields.labels.is_empty());
            let any = own || labels.iter().any(|l| issue.fields.labels.contains(l));
            if !any {
                continue;
            }
            if issue.is_done() {
                if own || found.done.is_none() {
                    found.done.get_or_insert(issue.key.clone());
                }
            } else if own {
                found.open.get_or_insert(issue.key.clone());
            } else {
                other_open.get_or_insert(issue.key.clone());
            }
        }
        if found.open.is_none() {
            // Another label's ticket: one search shows, else one this run created (search
            // may not show it yet).
            let created = || {
                labels[1..]
                    .iter()
                    .find_map(|l| self.created.get(l).map(|e| e.1.clone()))
            };
            if let Some(key) = other_open.or_else(created) {
                found.open = Some(key);
                found.needs_label = true;
            }
        }
        Ok(found)
    }

    /// Queue the lookup of a problem whose leader waits for a worker slot: it goes out in a
    /// batched search with the others gathered, so by the time the leader runs its tickets are
    /// (usually) known.
    pub fn prefetch(self: &Arc<Self>, fingerprint: &Fingerprint, also: &[Fingerprint]) {
        let labels = labels_of(fingerprint, also);
        if self.created.contains_key(&labels[0]) || self.lookups.prefetched.contains_key(&labels[0])
        {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let plan = self.lookups.queue(
            Waiter {
                labels: labels.clone(),
                tx,
            },
            false,
        );
        self.lookups.prefetched.insert(
            labels[0].clone(),
            Prefetched {
                labels,
                at: std::time::Instant::now(),
                rx,
            },
        );
        self.carry_out(plan);
    }

    /// The issues carrying any of `labels` (own label first), from a batched search: the
    /// prefetched one when it covers them and is recent, else a new lookup. A failed batch's
    /// error is every lookup's in it; one whose search task was stopped is searched alone.
    async fn lookup(
        self: &Arc<Self>,
        labels: &[String],
        prefetched: bool,
    ) -> Result<Arc<Batch>, JiraError> {
        let own = &labels[0];
        let pre = if prefetched {
            self.lookups.prefetched.remove(own).map(|(_, p)| p)
        } else {
            None
        };
        let usable = pre.filter(|p| {
            p.at.elapsed() < PREFETCH_MAX_AGE && labels.iter().all(|l| p.labels.contains(l))
        });
        let rx = match usable {
            Some(p) => {
                if self.lookups.is_queued(own) {
                    // Its leader waits now: what is gathered goes at once.
                    if let Some(chunk) = self.lookups.flush(false) {
                        self.carry_out(Plan {
                            send: vec![chunk],
                            start_timer: false,
                        });
                    }
                }
                p.rx
            }
            None => {
                let (tx, rx) = oneshot::channel();
                let plan = self.lookups.queue(
                    Waiter {
                        labels: labels.to_vec(),
                        tx,
                    },
                    true,
                );
                self.carry_out(plan);
                rx
            }
        };
        match rx.await {
            Ok(Ok(batch)) => Ok(batch),
            Ok(Err(e)) => Err(e),
            // The search task ended without an answer (stopped): search alone.
            Err(_) => Ok(Arc::new(Batch {
                issues: self.search_labels(labels).await?,
                alone: true,
            })),
        }
    }

    /// Start the searches a queued lookup calls for, and the window timer.
    fn carry_out(self: &Arc<Self>, plan: Plan) {
        for chunk in plan.send {
            let me = self.clone();
            self.lookups
                .spawn(async move { me.search_batch(chunk).await });
        }
        if plan.start_timer {
            let me = self.clone();
            self.lookups.spawn(async move {
                tokio::time::sleep(lookup::WINDOW).await;
                if let Some(chunk) = me.lookups.flush(true) {
                    me.search_batch(chunk).await;
                }
            });
        }
    }

    /// One batched search; every lookup in it gets the issues (or the failure).
    async fn search_batch(&self, chunk: Vec<Waiter>) {
        let labels = lookup::union(&chunk);
        let alone = chunk.len() == 1;
        let result = self.search_labels(&labels).await;
        self.lookups.done();
        let answer = result.map(|issues| Arc::new(Batch { issues, alone }));
        for w in chunk {
            let _ = w.tx.send(answer.clone());
        }
    }

    /// Batched searches sent so far.
    pub fn batched_searches(&self) -> u64 {
        self.lookups.searches()
    }

    /// Tell every lookup still running to stop, and batch no more (no leader is left to
    /// start, or an interrupt's grace period is over).
    pub fn stop_lookups(&self) {
        self.lookups.stop();
    }

    /// Open tickets carrying any of `labels`, with the labels each carries (newest first).
    pub async fn open_with_labels(
        &self,
        labels: &[String],
    ) -> Result<Vec<(String, Vec<String>)>, JiraError> {
        Ok(self
            .search_labels(labels)
            .await?
            .into_iter()
            .filter(|i| !i.is_done())
            .map(|i| (i.key, i.fields.labels))
            .collect())
    }

    /// Add a label to a ticket (`PUT issue/{key}` with an `update.labels.add`); adding a label
    /// it already has changes nothing, so a retry is safe.
    pub async fn add_label(&self, key: &str, label: &str) -> Result<(), JiraError> {
        let url = self.url(&format!("issue/{key}"));
        let body = json!({"update": {"labels": [{"add": label}]}});
        let resp = self
            .service
            .send(
                |c| self.authorize(c.put(&url)).json(&body),
                Retry::Idempotent,
            )
            .await;
        self.checked().await?;
        resp?;
        Ok(())
    }

    async fn search_label(&self, label: &str) -> Result<Vec<Issue>, JiraError> {
        self.search_labels(&[label.to_string()]).await
    }

    /// Every issue in the searched projects carrying any of `labels`, newest first, page by
    /// page (at most [`MAX_SEARCH_PAGES`] pages of [`SEARCH_PAGE`]).
    async fn search_labels(&self, labels: &[String]) -> Result<Vec<Issue>, JiraError> {
        let restriction = match labels {
            [one] => format!("labels = {}", jql_string(one)),
            many => format!(
                "labels in ({})",
                many.iter()
                    .map(|l| jql_string(l))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let jql = format!(
            "{} AND {restriction} ORDER BY created DESC",
            project_clause(&self.search_projects),
        );
        self.search(&jql, SEARCH_FIELDS).await
    }

    /// The tickets with these keys, with their summary, description and labels as Jira holds
    /// them now: what the end of a run reads before it changes a ticket it created (a person
    /// may have edited it since). One search per `READ_CHUNK` keys; a key Jira does not show
    /// is left out.
    pub async fn read_tickets(&self, keys: &[String]) -> Result<Vec<Issue>, JiraError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(READ_CHUNK) {
            for key in chunk {
                crate::jira::key::check(key)?;
            }
            let jql = format!(
                "key in ({}) ORDER BY key ASC",
                chunk
                    .iter()
                    .map(|k| jql_string(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out.extend(self.search(&jql, READ_FIELDS).await?);
        }
        Ok(out)
    }

    /// Every issue a JQL search finds, with `fields`, page by page (at most
    /// [`MAX_SEARCH_PAGES`] pages of [`SEARCH_PAGE`]).
    async fn search(&self, jql: &str, fields: &[&str]) -> Result<Vec<Issue>, JiraError> {
        let jql = jql.to_string();
        let path = match self.config.api {
            JiraApi::V3 => "search/jql",
            JiraApi::V2 => "search",
        };
        let mut issues: Vec<Issue> = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_SEARCH_PAGES {
            let body = match self.config.api {
                JiraApi::V3 => {
                    let ids = self
                        .created_ids
                        .lock()
                        .map(|ids| ids.clone())
                        .unwrap_or_default();
                    let reconcile = ids.iter().rev().take(MAX_RECONCILE).copied().collect();
                    serde_json::to_value(SearchJqlRequest {
                        jql: &jql,
                        fields,
                        max_results: SEARCH_PAGE,
                        reconcile_issues: reconcile,
                        next_page_token: token.clone(),
                    })?
                }
                JiraApi::V2 => serde_json::to_value(SearchV2Request {
                    jql: &jql,
                    fields,
                    start_at: u32::try_from(issues.len()).unwrap_or(u32::MAX),
                    max_results: SEARCH_PAGE,
                })?,
            };
            let resp = self.post(path, &body, Retry::Idempotent).await?;
            let page: SearchResponse = crate::decode::json(
                "Jira",
                &format!("POST {path}"),
                resp,
                crate::decode::DEFAULT_LIMIT,
            )
            .await?;
            // A key goes into the path of later calls: one that is not a Jira key is refused.
            for issue in &page.issues {
                crate::jira::key::check(&issue.key)?;
            }
            let empty = page.issues.is_empty();
            issues.extend(page.issues);
            let more = match self.config.api {
                JiraApi::V3 => {
                    token = page.next_page_token;
                    page.is_last == Some(false) && token.is_some()
                }
                JiraApi::V2 => page.total.is_some_and(|t| (issues.len() as u64) < t),
            };
            if !more || empty {
                break;
            }
        }
        Ok(issues)
    }

    /// Look a ticket up by key (not by search, which lags): `Ok(None)` if it no longer exists.
    pub async fn issue(&self, key: &str) -> Result<Option<Issue>, JiraError> {
        self.issue_with(key, SEARCH_FIELDS).await
    }

    /// [`JiraClient::read_tickets`] for one ticket, by key (search may not show it yet).
    pub async fn read_ticket(&self, key: &str) -> Result<Option<Issue>, JiraError> {
        self.issue_with(key, READ_FIELDS).await
    }

    async fn issue_with(&self, key: &str, fields: &[&str]) -> Result<Option<Issue>, JiraError> {
        crate::jira::key::check(key)?;
        let path = format!("issue/{key}?fields={}", fields.join(","));
        match self.get(&path).await {
            Ok(resp) => Ok(Some(
                crate::decode::json(
                    "Jira",
                    &format!("GET issue/{key}"),
                    resp,
                    crate::decode::DEFAULT_LIMIT,
                )
                .await?,
            )),
            Err(HttpError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Create the ticket, with what its route sets (project, issue type, components, assignee,
    /// priority, labels); never twice for one fingerprint, even when a response is lost.
    pub async fn create(
        &self,
        fingerprint: &Fingerprint,
        draft: &TicketDraft<'_>,
        description: &Description,
        route: &Fields,
    ) -> Result<String, JiraError> {
        let label = content::fingerprint_label(fingerprint.as_str());
        let mut last: Option<HttpError> = None;
        let mut sent = tokio::time::Instant::now();
        for _ in 1..=CREATE_ATTEMPTS {
            if last.is_some() {
                // The previous create's answer was lost and it may have gone through: look for
                // it until search has had time to catch up before sending it again.
                if let Some(key) = self.search_after_lost_create(&label, sent).await? {
                    tracing::info!(%key, "a create whose response was lost had gone through");
                    return Ok(key);
                }
            }
            sent = tokio::time::Instant::now();
            let body = self.create_body(draft, description, route);
            let sent_priority = body.fields.priority.is_some();
            match self.post("issue", &body, Retry::SafeOnly).await {
                Ok(resp) => {
                    let created: Created = crate::decode::json(
                        "Jira",
                        "POST issue",
                        resp,
                        crate::decode::DEFAULT_LIMIT,
                    )
                    .await?;
                    crate::jira::key::check(&created.key)?;
                    return Ok(self.remember(&label, Some(created.id), created.key));
                }
                // A refusal is an answer (nothing was created): send it again at once without
                // the priority, also when another create saw the same refusal first.
                Err(HttpError::Status {
                    status: 400,
                    ref message,
                    ..
                }) if sent_priority && message.contains("priority") => {
                    if !self.skip_priority.swap(true, Ordering::SeqCst) {
                        tracing::warn!("Jira refused the priority field ({message}); creating tickets without a priority");
                    }
                    last = None;
                }
                Err(
                    e @ HttpError::Unavailable {
                        maybe_applied: true,
                        ..
                    },
                ) => last = Some(e),
                Err(e @ HttpError::Status { .. }) => {
                    let refusal = match &route.route {
                        Some(name) => format!("route '{name}': {e}"),
                        None => e.to_string(),
                    };
                    self.refused.insert(label, refusal);
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .map(JiraError::from)
            .unwrap_or_else(|| JiraError::Failed("Jira create failed".into())))
    }

    /// Search for the ticket of a create sent at `sent` whose answer was lost, until it shows
    /// up or `--jira-search-lag` has passed since it was sent (search shows a new issue only
    /// after a while). A lag allowance that outlasts the log's deadline fails the call: sending
    /// the create again before search has caught up could file a second ticket.
    async fn search_after_lost_create(
        &self,
        label: &str,
        sent: tokio::time::Instant,
    ) -> Result<Option<String>, JiraError> {
        let open = |issues: &Vec<Issue>| issues.iter().any(|i| !i.is_done());
        let first = self.search_label(label).await?;
        let issues = until_search_settles(
            sent + self.config.search_lag,
            first,
            open,
            || self.search_label(label),
            || {
                JiraError::Failed(format!(
                    "a create for {label} got no usable answer and search has not shown it \
                     within the log's deadline; it is not sent again before --jira-search-lag \
                     ({}s) has passed",
                    self.config.search_lag.as_secs_f64()
                ))
            },
        )
        .await?;
        Ok(issues
            .into_iter()
            .find(|i| !i.is_done())
            .map(|issue| self.remember(label, Some(issue.id), issue.key)))
    }

    /// How long after a create search may still not show it (`--jira-search-lag`).
    pub fn search_lag(&self) -> Duration {
        self.config.search_lag
    }

    fn remember(&self, label: &str, id: Option<String>, key: String) -> String {
        if let Some(n) = id.as_deref().and_then(|i| i.parse::<i64>().ok()) {
            if let Ok(mut ids) = self.created_ids.lock() {
                ids.push(n);
            }
        }
        self.created
            .insert(label.to_string(), (id.unwrap_or_default(), key.clone()));
        key
    }

    fn create_body<'a>(
        &'a self,
        draft: &'a TicketDraft<'_>,
        description: &'a Description,
        route: &'a Fields,
    ) -> CreateBody<'a> {
        let labels = create_labels(draft, route);
        let priority = match self.skip_priority.load(Ordering::SeqCst) {
            true => None,
            false => route
                .priority
                .as_deref()
                .or_else(|| self.priorities.get(&draft.severity)),
        };
        CreateBody {
            fields: CreateFields {
                project: Key {
                    key: route.project.as_deref().unwrap_or(&self.config.project),
                },
                issuetype: Name {
                    name: route
                        .issue_type
                        .as_deref()
                        .unwrap_or(&self.config.issue_type),
                },
                summary: &draft.summary,
                labels,
                description,
                components: route.components.iter().map(|c| Name { name: c }).collect(),
                // Cloud names a user by accountId; Server / Data Center by user name.
                assignee: route.assignee.as_deref().map(|a| match self.config.api {
                    JiraApi::V3 => User::AccountId { account_id: a },
                    JiraApi::V2 => User::Name { name: a },
                }),
                priority: priority.map(|name| Name { name }),
            },
        }
    }

    /// Change a ticket without taking away what others set on it: `add` labels one by one
    /// (`update.labels[].add`: a label a person or a route set stays), and the summary and the
    /// description only when given (the caller gives them only while the ticket still holds
    /// what triage last wrote). Nothing to change: no call.
    pub async fn edit(
        &self,
        key: &str,
        add: &[String],
        summary: Option<&str>,
        description: Option<&Description>,
    ) -> Result<(), JiraError> {
        #[derive(serde::Serialize)]
        struct Edit<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            update: Option<EditUpdate<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            fields: Option<EditFields<'a>>,
        }
        #[derive(serde::Serialize)]
        struct EditUpdate<'a> {
            labels: Vec<LabelAdd<'a>>,
        }
        #[derive(serde::Serialize)]
        struct LabelAdd<'a> {
            add: &'a str,
        }
        #[derive(serde::Serialize)]
        struct EditFields<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            summary: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a Description>,
        }
        crate::jira::key::check(key)?;
        if add.is_empty() && summary.is_none() && description.is_none() {
            return Ok(());
        }
        let body = Edit {
            update: (!add.is_empty()).then(|| EditUpdate {
                labels: add.iter().map(|l| LabelAdd { add: l }).collect(),
            }),
            fields: (summary.is_some() || description.is_some()).then_some(EditFields {
                summary,
                description,
            }),
        };
        let url = self.url(&format!("issue/{key}"));
        let resp = self
            .service
            .send(
                |c| self.authorize(c.put(&url)).json(&body),
                Retry::Idempotent,
            )
            .await;
        self.checked().await?;
        resp?;
        Ok(())
    }

    /// Post the run's recurrence comment on a ticket.
    pub async fn comment(&self, key: &str, facts: &ProblemFacts) -> Result<(), JiraError> {
        crate::jira::key::check(key)?;
        let body = match self.config.api {
            JiraApi::V3 => json!({"body": content::recurrence_comment_adf(facts)}),
            JiraApi::V2 => json!({"body": content::recurrence_comment_wiki(facts)}),
        };
        self.post(&format!("issue/{key}/comment"), &body, Retry::SafeOnly)
            .await?;
        Ok(())
    }

    /// Tell a ticket that its problem is now grouped with another ticket's: a plain one-paragraph
    /// comment naming the surviving ticket (no facts, no sample). Posted once, at the run that
    /// finds the merge.
    pub async fn comment_merged(
        &self,
        key: &str,
        survivor: &str,
        label: &str,
    ) -> Result<(), JiraError> {
        crate::jira::key::check(key)?;
        crate::jira::key::check(survivor)?;
        let text = content::merged_comment_text(survivor, label);
        let body = match self.config.api {
            JiraApi::V3 => json!({"body": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": text}]}
            ]}}),
            JiraApi::V2 => json!({ "body": text }),
        };
        self.post(&format!("issue/{key}/comment"), &body, Retry::SafeOnly)
            .await?;
        Ok(())
    }

    /// Move a Done ticket back to an open status (the first transition whose target is not Done).
    pub async fn reopen(&self, key: &str) -> Result<(), JiraError> {
        crate::jira::key::check(key)?;
        let resp = self.get(&format!("issue/{key}/transitions")).await?;
        let list: Transitions = resp.json().await.unwrap_or_default();
        let preferred = [
            "reopen",
            "reopened",
            "to do",
            "open",
            "backlog",
            "in progress",
        ];
        let open = |t: &&super::model::Transition| {
            t.to.as_ref()
                .and_then(|s| s.status_category.as_ref())
                .and_then(|c| c.key.as_deref())
                .is_none_or(|k| k != "done")
        };
        let choice = preferred
            .iter()
            .find_map(|p| {
                list.transitions
                    .iter()
                    .filter(open)
                    .find(|t| t.name.eq_ignore_ascii_case(p))
            })
            .or_else(|| {
                list.transitions.iter().find(|t| {
                    open(t)
                        && t.to
                            .as_ref()
                            .and_then(|s| s.status_category.as_ref())
                            .is_some()
                })
            })
            .ok_or_else(|| {
                JiraError::Failed(format!("{key} has no transition back to an open status"))
            })?;
        self.post(
            &format!("issue/{key}/transitions"),
            &json!({"transition": {"id": choice.id}}),
            Retry::SafeOnly,
        )
        .await?;
        Ok(())
    }
}

/// A problem's labels: its own first, then the others, each once.
fn labels_of(fingerprint: &Fingerprint, also: &[Fingerprint]) -> Vec<String> {
    let mut labels = vec![content::fingerprint_label(fingerprint.as_str())];
    for fp in also {
        let l = content::fingerprint_label(fp.as_str());
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    labels
}

/// The labels a create sends: triage's own, then the route's.
pub fn create_labels<'a>(draft: &'a TicketDraft<'_>, route: &'a Fields) -> Vec<&'a str> {
    let mut labels: Vec<&str> = draft.labels.iter().map(String::as_str).collect();
    for l in &route.labels {
        if !labels.contains(&l.as_str()) {
            labels.push(l);
        }
    }
    labels
}

/// The JQL clause that restricts a search to `projects`: `project = "A"`, or
/// `project in ("A", "B")` when the routes name several.
pub fn project_clause(projects: &[String]) -> String {
    match projects {
        [one] => format!("project = {}", jql_string(one)),
        many => format!(
            "project in ({})",
            many.iter()
                .map(|p| jql_string(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The `name` of each object in a JSON array (issue types, components).
fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A project key as one URL path segment.
fn url_segment(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// A JQL string literal: double-quoted, with `"` and `\` escaped.
pub fn jql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A held label lock (`JiraClient::lock_label`).
pub struct LabelLock<'a> {
    locks: &'a DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    label: String,
    /// Holds its own handle on the lock: once it is dropped, only the map's may be left.
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for LabelLock<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Only the map's own handle left: nobody holds or waits for this label. Checked under
        // the map's shard lock, so nobody can take a new handle meanwhile.
        self.locks
            .remove_if(&self.label, |_, lock| Arc::strong_count(lock) == 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_label_lock_is_forgotten_when_its_last_holder_lets_go() {
        let service = Service::new("Jira", None, crate::http::RetryPolicy::default()).unwrap();
        let client = JiraClient::new(
            service,
            JiraConfig {
                base_url: "http://127.0.0.1:9".into(),
                project: "OPS".into(),
                issue_type: "Bug".into(),
                api: JiraApi::V3,
                auth: JiraAuth::Bearer("t".to_string().into()),
                priorities: super::super::config::PriorityMap::default_for(JiraApi::V3),
                reopen: false,
                search_lag: std::time::Duration::from_secs(1),
            },
        );
        let fp = Fingerprint::from_raw("0123456789abcdef");
        let first = client.lock_label(&fp).await;
        // A second leader of the same problem waits behind the first, and keeps the lock known.
        let second = client.lock_label(&fp);
        tokio::pin!(second);
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(first);
        let second = second.await;
        assert_eq!(client.label_locks.len(), 1);
        drop(second);
        assert!(client.label_locks.is_empty(), "nothing left behind");
    }

    #[test]
    fn jql_values_are_quoted_and_escaped() {
        assert_eq!(jql_string("OPS"), "\"OPS\"");
        assert_eq!(jql_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn the_project_clause_names_one_project_or_lists_several() {
        assert_eq!(project_clause(&["OPS".into()]), r#"project = "OPS""#);
        assert_eq!(
            project_clause(&["OPS".into(), "PAY".into()]),
            r#"project in ("OPS", "PAY")"#
        );
    }
}
