//! Jira: the client (`client`, over the `model` bodies) and the ticket content (`content`,
//! built on the `adf` document builder for Cloud and wiki markup for Server/DC).

pub mod adf;
pub mod client;
pub mod config;
pub mod content;
pub mod key;
pub mod lookup;
pub mod model;

pub use client::JiraClient;

use crate::decode::DecodeError;
use crate::http::HttpError;

/// Why a call to Jira failed: the client's one error type, so a caller can tell a refusal of
/// the credentials (fatal for the run) and a create that may have been made from the rest
/// without looking inside an `anyhow::Error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JiraError {
    /// The request failed or was refused (see [`HttpError`] for which).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// Jira answered, but not with a body this client can read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Jira's answers left the call without a result (no transition back to an open status,
    /// an issue key that is not one, search not caught up with a create within the log's
    /// deadline).
    #[error("{0}")]
    Failed(String),
    /// A request body could not be written (a bug: every body is built from plain data).
    #[error("cannot write the request: {0}")]
    Request(String),
}

impl From<serde_json::Error> for JiraError {
    fn from(e: serde_json::Error) -> Self {
        JiraError::Request(e.to_string())
    }
}

impl JiraError {
    /// Jira refused the credentials: every later call would be refused too, so the run stops.
    pub fn is_fatal(&self) -> bool {
        matches!(self, JiraError::Http(h) if h.is_auth())
    }

    /// What to tell the user when this error stops the run.
    pub fn fatal_message(&self) -> Option<String> {
        self.is_fatal().then(|| {
            format!(
                "{self}: check JIRA_URL and the Jira credentials (JIRA_EMAIL + JIRA_API_TOKEN, \
                 or JIRA_PAT)"
            )
        })
    }

    /// Whether a failed create may still have made a ticket: anything but an answer from Jira
    /// that says nothing was made (a refusal, or a failure before the request was sent). A 2xx
    /// whose body cannot be read, a timeout or a 5xx after sending all count as "probably
    /// created".
    pub fn maybe_applied(&self) -> bool {
        match self {
            JiraError::Http(
                HttpError::Auth { .. } | HttpError::Status { .. } | HttpError::CircuitOpen { .. },
            ) => false,
            JiraError::Http(HttpError::Unavailable { maybe_applied, .. }) => *maybe_applied,
            JiraError::Decode(_) | JiraError::Failed(_) => true,
            JiraError::Request(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(e: HttpError) -> JiraError {
        JiraError::Http(e)
    }

    #[test]
    fn only_a_refusal_of_the_credentials_is_fatal() {
        let auth = http(HttpError::Auth {
            service: "Jira",
            status: 401,
            message: "no".into(),
        });
        assert!(auth.is_fatal());
        assert!(auth.fatal_message().is_some_and(|m| m.contains("JIRA_URL")));
        let status = http(HttpError::Status {
            service: "Jira",
            status: 400,
            message: "bad field".into(),
        });
        assert!(!status.is_fatal() && status.fatal_message().is_none());
        assert!(!JiraError::Failed("x".into()).is_fatal());
    }

    #[test]
    fn a_create_may_have_been_made_unless_jira_said_no_or_nothing_was_sent() {
        let unavailable = |maybe_applied| {
            http(HttpError::Unavailable {
                service: "Jira",
                attempts: 3,
                last: "timeout".into(),
                maybe_applied,
            })
        };
        assert!(unavailable(true).maybe_applied());
        assert!(!unavailable(false).maybe_applied());
        assert!(!http(HttpError::Status {
            service: "Jira",
            status: 400,
            message: "bad".into()
        })
        .maybe_applied());
        assert!(!http(HttpError::CircuitOpen {
            service: "Jira",
            failures: 5,
            retry_in: std::time::Duration::from_secs(30),
        })
        .maybe_applied());
        let unreadable = JiraError::Decode(DecodeError {
            service: "Jira",
            endpoint: "POST issue".into(),
            what: "expected a JSON object, got HTML".into(),
        });
        assert!(unreadable.maybe_applied());
    }
}
