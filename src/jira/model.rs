//! Request and response bodies of the Jira REST API (Cloud v3 and Server/DC v2), as serde
//! structs. Only the fields triage reads or writes; unknown fields are ignored.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /rest/api/3/search/jql` (Cloud).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchJqlRequest<'a> {
    pub jql: &'a str,
    pub fields: &'a [&'a str],
    pub max_results: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reconcile_issues: Vec<i64>,
    /// The next page of a search whose first page was not the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `POST /rest/api/2/search` (Server / Data Center).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchV2Request<'a> {
    pub jql: &'a str,
    pub fields: &'a [&'a str],
    pub start_at: u32,
    pub max_results: u32,
}

/// Both search responses: `{issues, isLast, nextPageToken}` (v3) or `{startAt, total, issues}` (v2).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    #[serde(default)]
    pub issues: Vec<Issue>,
    /// v3: this is the last page (absent on v2).
    #[serde(default)]
    pub is_last: Option<bool>,
    /// v3: the token of the next page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// v2: how many issues match in all.
    #[serde(default)]
    pub total: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub id: String,
    pub key: String,
    #[serde(default)]
    pub fields: IssueFields,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct IssueFields {
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub resolution: Option<Value>,
    /// Asked for only where a ticket may be changed: an ADF document (Cloud) or wiki markup
    /// (Server / Data Center).
    #[serde(default)]
    pub description: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status_category: Option<StatusCategory>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusCategory {
    #[serde(default)]
    pub key: Option<String>,
}

impl Issue {
    /// Closed for good: status category `done`, or (older servers without categories) a
    /// resolution or a status named Done / Closed / Resolved.
    pub fn is_done(&self) -> bool {
        let status = self.fields.status.as_ref();
        if let Some(key) = status
            .and_then(|s| s.status_category.as_ref())
            .and_then(|c| c.key.as_deref())
        {
            return key == "done";
        }
        let resolved = matches!(&self.fields.resolution, Some(v) if !v.is_null());
        let name = status
            .and_then(|s| s.name.as_deref())
            .unwrap_or("")
            .to_ascii_lowercase();
        resolved || matches!(name.as_str(), "done" | "closed" | "resolved")
    }

    pub fn numeric_id(&self) -> Option<i64> {
        self.id.parse().ok()
    }
}

/// `POST /rest/api/{2,3}/issue` → 201.
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    pub id: String,
    pub key: String,
}

/// `GET .../transitions`.
#[derive(Debug, Default, Deserialize)]
pub struct Transitions {
    #[serde(default)]
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Transition {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub to: Option<Status>,
}

/// `GET /myself`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Myself {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_server_search_response_reads_and_classifies() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jira/jira-ruby/issue.json"
        );
        let r: SearchResponse =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(r.issues.len(), 11);
        assert_eq!(r.issues[0].key, "SAMPLEPROJECT-13");
        assert_eq!(r.issues[0].numeric_id(), Some(10014));
        // Status "Open" without a category and no resolution: open.
        assert!(!r.issues[0].is_done());
    }

    #[test]
    fn status_category_decides_when_present() {
        let done: Issue =
            serde_json::from_value(serde_json::json!({"id":"1","key":"OPS-1","fields":{
            "status":{"name":"Shipped","statusCategory":{"key":"done"}}}}))
            .unwrap();
        assert!(done.is_done());
        let open: Issue =
            serde_json::from_value(serde_json::json!({"id":"2","key":"OPS-2","fields":{
            "status":{"name":"Closed-ish","statusCategory":{"key":"indeterminate"}}}}))
            .unwrap();
        assert!(!open.is_done());
    }
}
