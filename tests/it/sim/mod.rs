//! A production-shaped world for measuring what `triage` writes to Jira: a simulated Jira Cloud
//! that behaves like the real one where it matters for writes, a simulated Datadog, and a
//! workload of many logs per problem with sibling templates.
//!
//! Shared by `tests/it/writes.rs` and `benches/writes.rs` (included there with `#[path]`):
//! each uses a part of it, hence the `allow(dead_code)`.
//!
//! The Jira (REST v3, shapes from the Cloud spec's examples in tests/fixtures/jira):
//! - `POST issue` stores the issue (summary, description, labels, priority, components, ...);
//! - `POST search/jql` answers the issues carrying any label its JQL names (`labels = ".."`,
//!   `labels in (..)`) or any key it names (`key in (..)`), paged (`maxResults`,
//!   `nextPageToken`), with the fields asked for;
//! - `PUT issue/{key}` applies `fields` as Jira does: `fields.labels` **replaces** every label,
//!   `fields.summary` / `fields.description` overwrite; `update.labels[]` applies `add`,
//!   `remove` and `set` one by one;
//! - `POST issue/{key}/comment` keeps the comment; `GET issue/{key}` answers the issue.
//!
//! Every call is recorded (when it arrived and what it was), and every answer can be delayed, so
//! a test counts calls per kind and a bench sees where the time goes. A *person* can be let loose
//! on the tickets: a closure run on each issue right after its create is answered (editing it
//! between the create and the end of the run, as a person watching the project would).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const V3: &str = "/rest/api/3";

/// One issue the simulated Jira holds.
#[derive(Debug, Clone, Default)]
pub struct SimIssue {
    pub id: u64,
    pub key: String,
    pub summary: String,
    pub description: Value,
    pub labels: Vec<String>,
    pub priority: Option<String>,
    pub components: Vec<String>,
    pub comments: Vec<Value>,
}

/// One call Jira received.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    /// `myself`, `create`, `search`, `update`, `comment`, `get`, `transitions`.
    pub kind: &'static str,
    /// The request body (JSON), `Null` without one.
    pub body: Value,
    /// The issue key in the path, if any.
    pub key: Option<String>,
}

/// A person editing an issue.
pub type Person = Arc<dyn Fn(&mut SimIssue) + Send + Sync>;

/// The simulated Jira's state.
#[derive(Clone, Default)]
pub struct SimJira {
    pub issues: Arc<Mutex<Vec<SimIssue>>>,
    pub calls: Arc<Mutex<Vec<Call>>>,
    delay: Duration,
    person: Option<Person>,
}

impl SimJira {
    /// Calls of one kind.
    pub fn count(&self, kind: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.kind == kind)
            .count()
    }

    /// Every call but the credentials check.
    pub fn work_calls(&self) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.kind != "myself")
            .count()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn issues(&self) -> Vec<SimIssue> {
        self.issues.lock().unwrap().clone()
    }

    /// Calls per kind, as `kind=n` in a stable order (for messages).
    pub fn tally(&self) -> String {
        let mut kinds: std::collections::BTreeMap<&'static str, usize> = Default::default();
        for c in self.calls.lock().unwrap().iter() {
            *kinds.entry(c.kind).or_default() += 1;
        }
        kinds
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn record(&self, kind: &'static str, req: &Request, key: Option<String>) {
        let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        self.calls.lock().unwrap().push(Call {
            at: Instant::now(),
            kind,
            body,
            key,
        });
    }

    fn answer(&self, status: u16, body: Option<Value>) -> ResponseTemplate {
        let t = ResponseTemplate::new(status).set_delay(self.delay);
        match body {
            Some(b) => t.set_body_json(b),
            None => t,
        }
    }

    fn issue_json(issue: &SimIssue, fields: &[String]) -> Value {
        let mut f = serde_json::Map::new();
        let all = fields.is_empty() || fields.iter().any(|x| x == "*all");
        let want = |name: &str| all || fields.iter().any(|x| x == name);
        if want("summary") {
            f.insert("summary".into(), json!(issue.summary));
        }
        if want("labels") {
            f.insert("labels".into(), json!(issue.labels));
        }
        if want("status") {
            f.insert(
                "status".into(),
                json!({"name": "To Do", "id": "10000",
                       "statusCategory": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"}}),
            );
        }
        if want("description") {
            f.insert("description".into(), issue.description.clone());
        }
        json!({
            "id": issue.id.to_string(),
            "key": issue.key,
            "self": format!("https://your-domain.atlassian.net/rest/api/3/issue/{}", issue.id),
            "fields": Value::Object(f),
        })
    }
}

/// Quoted values in a JQL clause that starts at `word` (`labels in ("a", "b")`, `labels = "a"`,
/// `key in (OPS-1, OPS-2)`).
fn jql_values(jql: &str, word: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = jql;
    while let Some(at) = rest.find(word) {
        let after = &rest[at + word.len()..];
        let trimmed = after.trim_start();
        let clause = if let Some(list) = trimmed.strip_prefix("in") {
            let list = list.trim_start();
            let end = list.find(')').unwrap_or(list.len());
            list[..end].trim_start_matches('(').to_string()
        } else if let Some(one) = trimmed.strip_prefix('=') {
            let one = one.trim_start();
            let end = if let Some(q) = one.strip_prefix('"') {
                q.find('"').map_or(one.len(), |e| e + 2)
            } else {
                one.find(' ').unwrap_or(one.len())
            };
            one[..end].to_string()
        } else {
            String::new()
        };
        for v in clause.split(',') {
            let v = v.trim().trim_matches('"').replace("\\\"", "\"");
            if !v.is_empty() {
                out.push(v);
            }
        }
        rest = after;
    }
    out
}

struct Handler(SimJira, &'static str);

fn key_of(req: &Request) -> Option<String> {
    let p = req.url.path();
    let rest = p.strip_prefix(&format!("{V3}/issue/"))?;
    Some(rest.split('/').next()?.to_string())
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let sim = &self.0;
        let key = key_of(req);
        sim.record(self.1, req, key.clone());
        match self.1 {
            "myself" => sim.answer(
                200,
                Some(
                    json!({"accountId": "5b10a2844c20165700ede21g", "displayName": "triage bot",
                            "active": true}),
                ),
            ),
            "create" => {
                let body: Value = req.body_json().expect("create body is JSON");
                let f = &body["fields"];
                let names = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| {
                                    x.as_str()
                                        .or_else(|| x["name"].as_str())
                                        .map(str::to_string)
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let mut issues = sim.issues.lock().unwrap();
                let n = issues.len() as u64 + 1;
                let mut issue = SimIssue {
                    id: 10_000 + n,
                    key: format!("OPS-{n}"),
                    summary: f["summary"].as_str().unwrap_or_default().to_string(),
                    description: f["description"].clone(),
                    labels: names(&f["labels"]),
                    priority: f["priority"]["name"].as_str().map(str::to_string),
                    components: names(&f["components"]),
                    comments: Vec::new(),
                };
                let answer = json!({"id": issue.id.to_string(), "key": issue.key,
                    "self": format!("https://your-domain.atlassian.net/rest/api/3/issue/{}", issue.id)});
                if let Some(person) = &sim.person {
                    person(&mut issue);
                }
                issues.push(issue);
                sim.answer(201, Some(answer))
            }
            "search" => {
                let body: Value = req.body_json().expect("search body is JSON");
                let jql = body["jql"].as_str().unwrap_or_default();
                let labels = jql_values(jql, "labels");
                let keys = jql_values(jql, "key");
                let fields: Vec<String> = body["fields"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let max = body["maxResults"].as_u64().unwrap_or(50) as usize;
                let start: usize = body["nextPageToken"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let all: Vec<Value> = sim
                    .issues
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .filter(|i| {
                        i.labels.iter().any(|l| labels.contains(l)) || keys.contains(&i.key)
                    })
                    .map(|i| SimJira::issue_json(i, &fields))
                    .collect();
                let page: Vec<Value> = all.iter().skip(start).take(max).cloned().collect();
                let more = start + max < all.len();
                let mut out = json!({"issues": page, "isLast": !more});
                if more {
                    out["nextPageToken"] = json!((start + max).to_string());
                }
                sim.answer(200, Some(out))
            }
            "get" => {
                let issues = sim.issues.lock().unwrap();
                match issues.iter().find(|i| Some(&i.key) == key.as_ref()) {
                    Some(i) => sim.answer(200, Some(SimJira::issue_json(i, &[]))),
                    None => sim.answer(
                        404,
                        Some(json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})),
                    ),
                }
            }
            "update" => {
                let body: Value = req.body_json().expect("update body is JSON");
                let mut issues = sim.issues.lock().unwrap();
                let Some(issue) = issues.iter_mut().find(|i| Some(&i.key) == key.as_ref()) else {
                    return sim.answer(
                        404,
                        Some(json!({"errorMessages": ["Issue does not exist"]})),
                    );
                };
                let f = &body["fields"];
                if let Some(s) = f["summary"].as_str() {
                    issue.summary = s.to_string();
                }
                if !f["description"].is_null() {
                    issue.description = f["description"].clone();
                }
                if let Some(labels) = f["labels"].as_array() {
                    // As in Jira: the list replaces every label.
                    issue.labels = labels
                        .iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect();
                }
                for op in body["update"]["labels"].as_array().into_iter().flatten() {
                    if let Some(l) = op["add"].as_str() {
                        if !issue.labels.iter().any(|x| x == l) {
                            issue.labels.push(l.to_string());
                        }
                    }
                    if let Some(l) = op["remove"].as_str() {
                        issue.labels.retain(|x| x != l);
                    }
                    if let Some(set) = op["set"].as_array() {
                        issue.labels = set
                            .iter()
                            .filter_map(|l| l.as_str().map(str::to_string))
                            .collect();
                    }
                }
                sim.answer(204, None)
            }
            "comment" => {
                let body: Value = req.body_json().expect("comment body is JSON");
                let mut issues = sim.issues.lock().unwrap();
                if let Some(issue) = issues.iter_mut().find(|i| Some(&i.key) == key.as_ref()) {
                    issue.comments.push(body["body"].clone());
                }
                sim.answer(201, Some(json!({"id": "10000"})))
            }
            _ => sim.answer(200, Some(json!({"transitions": []}))),
        }
    }
}

/// Start a simulated Jira Cloud on loopback answering every call after `delay`; `person` (if
/// any) edits each issue right after its create.
pub async fn jira(delay: Duration, person: Option<Person>) -> (MockServer, SimJira) {
    let sim = SimJira {
        delay,
        person,
        ..SimJira::default()
    };
    let server = MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    let key = "[A-Z][A-Z0-9]*-[0-9]+";
    let routes: [(&str, String, &'static str); 8] = [
        ("GET", format!("^{V3}/myself$"), "myself"),
        ("POST", format!("^{V3}/issue$"), "create"),
        ("POST", format!("^{V3}/search/jql$"), "search"),
        ("GET", format!("^{V3}/issue/{key}$"), "get"),
        ("PUT", format!("^{V3}/issue/{key}$"), "update"),
        ("POST", format!("^{V3}/issue/{key}/comment$"), "comment"),
        (
            "GET",
            format!("^{V3}/issue/{key}/transitions$"),
            "transitions",
        ),
        (
            "POST",
            format!("^{V3}/issue/{key}/transitions$"),
            "transitions",
        ),
    ];
    for (verb, p, what) in routes {
        Mock::given(method(verb))
            .and(path_regex(p))
            .respond_with(Handler(sim.clone(), what))
            .mount(&server)
            .await;
    }
    (server, sim)
}

/// A simulated Datadog Logs v2 search on loopback serving `events` oldest first, in pages of
/// the size asked for, each answered after `delay`.
pub async fn datadog(events: Vec<Value>, delay: Duration) -> MockServer {
    struct Pages(Arc<Vec<Value>>, Duration);
    impl Respond for Pages {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let body: Value = req.body_json().unwrap_or(Value::Null);
            let limit = body["page"]["limit"].as_u64().unwrap_or(10).clamp(1, 1000) as usize;
            let start: usize = body["page"]["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let page: Vec<Value> = self.0.iter().skip(start).take(limit).cloned().collect();
            let mut out = json!({"data": page, "meta": {"status": "done", "elapsed": 12,
                                 "request_id": "pddv1ChZ", "page": {}}});
            if start + limit < self.0.len() {
                out["meta"]["page"]["after"] = json!((start + limit).to_string());
            }
            ResponseTemplate::new(200)
                .set_body_json(out)
                .set_delay(self.1)
        }
    }
    let server = MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/logs/events/search"))
        .respond_with(Pages(Arc::new(events), delay))
        .mount(&server)
        .await;
    server
}

/// How one problem of the workload words its logs: `{n}` a number, `{h}` hex, `{ip}` an
/// address, `{w}` a word of its sibling set (each value is at first its own template, until
/// enough of them show that the position varies: the siblings merge during the run).
struct Shape {
    service: &'static str,
    text: &'static str,
    siblings: &'static [&'static str],
}

const SHAPES: [Shape; 20] = [
    Shape {
        service: "payments",
        text: "charge {h} declined by processor after {n} ms",
        siblings: &[],
    },
    Shape {
        service: "payments",
        text: "refund {n} stuck in state PENDING since {n} s",
        siblings: &[],
    },
    Shape {
        service: "payments",
        text: "ledger worker {w} lost its lease on shard {n}",
        siblings: &["amber", "birch", "cedar", "dune", "elm"],
    },
    Shape {
        service: "payments",
        text: "webhook delivery to {ip} failed with status 502",
        siblings: &[],
    },
    Shape {
        service: "payments",
        text: "card vault token {h} expired before capture",
        siblings: &[],
    },
    Shape {
        service: "checkout",
        text: "database connection timeout after {n} ms to {ip}:5432",
        siblings: &[],
    },
    Shape {
        service: "checkout",
        text: "cart {h} total mismatch: expected {n} got {n}",
        siblings: &[],
    },
    Shape {
        service: "checkout",
        text: "inventory reservation for customer {w} was rejected by policy",
        siblings: &["ana", "bo", "cy", "dee", "eve", "fay"],
    },
    Shape {
        service: "checkout",
        text: "upstream 503 from pricing at {ip} after {n} retries",
        siblings: &[],
    },
    Shape {
        service: "checkout",
        text: "session store eviction storm: {n} keys dropped",
        siblings: &[],
    },
    Shape {
        service: "search",
        text: "index shard {n} is read-only after disk watermark",
        siblings: &[],
    },
    Shape {
        service: "search",
        text: "query for tenant {w} exceeded the scroll limit",
        siblings: &["north", "south", "east", "west", "core"],
    },
    Shape {
        service: "search",
        text: "reindex job {h} aborted at document {n}",
        siblings: &[],
    },
    Shape {
        service: "search",
        text: "circuit open towards {ip} for {n} s",
        siblings: &[],
    },
    Shape {
        service: "auth",
        text: "token refresh failed for client {h}: invalid_grant",
        siblings: &[],
    },
    Shape {
        service: "auth",
        text: "LDAP bind to {ip} timed out after {n} ms",
        siblings: &[],
    },
    Shape {
        service: "auth",
        text: "user {w} locked out after too many attempts",
        siblings: &["kim", "lee", "max", "ned", "ola", "pat"],
    },
    Shape {
        service: "auth",
        text: "signing key {h} not found in JWKS",
        siblings: &[],
    },
    Shape {
        service: "mailer",
        text: "SMTP relay {ip} refused message {h}",
        siblings: &[],
    },
    Shape {
        service: "mailer",
        text: "template {w} failed to render for locale fr",
        siblings: &["welcome", "invoice", "reset", "digest", "alert"],
    },
];

/// The production-shaped workload: `logs` Datadog events of `SHAPES.len()` problems (20), many
/// logs each (interleaved, a few hosts per problem, over ten minutes), five of them worded in
/// sibling templates that merge during the run. `id_prefix` keeps ids of different runs apart.
pub fn workload(logs: usize, id_prefix: &str) -> Vec<Value> {
    let start = 1_764_493_200_000i64; // 2025-11-30T09:00:00Z
    let span_ms = 600_000i64;
    (0..logs)
        .map(|i| {
            let p = i % SHAPES.len();
            let round = i / SHAPES.len();
            let shape = &SHAPES[p];
            let mut message = String::new();
            let mut rest = shape.text;
            let mut k = 0usize;
            while let Some(at) = rest.find('{') {
                message.push_str(&rest[..at]);
                let end = rest[at..].find('}').map_or(rest.len(), |e| at + e);
                let seed = i * 7919 + k * 104_729;
                match &rest[at + 1..end] {
                    "n" => message.push_str(&(seed % 9000 + 100).to_string()),
                    "h" => message.push_str(&format!("{:012x}", seed * 2_654_435_761 % (1 << 48))),
                    "ip" => message.push_str(&format!("10.{}.{}.{}", p, seed % 250, round % 250)),
                    _ => message.push_str(shape.siblings[round % shape.siblings.len()]),
                }
                k += 1;
                rest = &rest[end + 1..];
            }
            message.push_str(rest);
            let ts = start + (i as i64) * span_ms / logs as i64;
            let ts = chrono::DateTime::from_timestamp_millis(ts)
                .expect("a valid time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            json!({
                "id": format!("{id_prefix}{i:06}"),
                "type": "log",
                "attributes": {
                    "timestamp": ts,
                    "status": "error",
                    "service": shape.service,
                    "host": format!("{}-{}", shape.service, round % 3),
                    "message": message,
                    "tags": [format!("service:{}", shape.service), "env:prod"],
                    "attributes": {}
                }
            })
        })
        .collect()
}

/// Problems in [`workload`].
pub const WORKLOAD_PROBLEMS: usize = SHAPES.len();

/// The workload as JSON Lines.
pub fn jsonl(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}
