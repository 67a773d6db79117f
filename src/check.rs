//! `triage check`: one line per configured service, OK or the reason, for the first step of a
//! CI job. Datadog: a one-log search over the last minute (proves both keys, the site, and the
//! `logs_read_data` permission). Jira: `GET /myself` and `GET /project/{key}`. Routes (when the
//! config file has any): every project they name, with its issue types, and its components
//! where they name some, one read call each. The LLM: a one-token chat completion. Unconfigured services are listed as skipped; a service that is
//! only partly configured (say `JIRA_URL` set and `JIRA_API_TOKEN` empty, as a missing CI secret
//! gives) fails and names the missing variables, so a broken setup never looks healthy.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::config::{AnalyzerConfig, Config, DatadogSite, PartialService, SourceConfig};
use crate::http::{Retry, RetryPolicy, Service};
use crate::jira::config::JiraConfig;
use crate::jira::JiraClient;
use crate::route::Routes;

/// Every project the routes name exists, with the issue types and components they name (one
/// `GET project/{key}` per project, with its issue types, and one `GET project/{key}/components`
/// per project whose routes name components). Every problem is listed, not just the first.
async fn check_routes(
    client: &JiraClient,
    jira: &JiraConfig,
    routes: &Routes,
) -> Result<String, String> {
    let mut problems = Vec::new();
    let projects = routes.projects(&jira.project);
    for project in &projects {
        // The routes whose tickets go to this project (no project: the configured one).
        let here: Vec<_> = routes
            .iter()
            .filter(|r| r.project.as_deref().unwrap_or(&jira.project) == project)
            .collect();
        let types = match client.project_info(project).await {
            Ok((_, types)) => types,
            Err(e) => {
                let named: Vec<&str> = here.iter().map(|r| r.name.as_str()).collect();
                problems.push(format!(
                    "project {project} (route {}): {e}",
                    named.join(", ")
                ));
                continue;
            }
        };
        for r in &here {
            let wanted = r.issue_type.as_deref().unwrap_or(&jira.issue_type);
            if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case(wanted)) {
                problems.push(format!(
                    "route '{}': project {project} has no issue type '{wanted}' (it has {})",
                    r.name,
                    types.join(", ")
                ));
            }
        }
        if here.iter().any(|r| !r.components.is_empty()) {
            match client.components(project).await {
                Ok(have) => {
                    for r in &here {
                        for c in &r.components {
                            if !have.iter().any(|h| h == c) {
                                problems.push(format!(
                                    "route '{}': project {project} has no component '{c}'",
                                    r.name
                                ));
                            }
                        }
                    }
                }
                Err(e) => problems.push(format!("project {project} components: {e}")),
            }
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{} route(s): projects {} exist with the issue types and components named",
            routes.iter().count(),
            projects.join(", ")
        ))
    } else {
        Err(problems.join("; "))
    }
}

/// One service's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub service: &'static str,
    /// `None` when the service is not configured.
    pub ok: Option<bool>,
    pub detail: String,
}

impl std::fmt::Display for CheckLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.ok {
            Some(true) => "OK",
            Some(false) => "FAIL",
            None => "skipped",
        };
        write!(f, "{:<8} {:<7} {}", self.service, status, self.detail)
    }
}

/// The line of a service that is only partly configured.
fn partly(service: &'static str, partial: &[PartialService]) -> Option<CheckLine> {
    let p = partial.iter().find(|p| p.service == service)?;
    Some(CheckLine {
        service,
        ok: Some(false),
        detail: format!(
            "partly configured: missing {} (an empty value counts as missing)",
            p.missing.join(", ")
        ),
    })
}

/// Check every configured service. `config` is built as for a dry run (`Config::for_check`),
/// with the services in `partial` left out: those fail without a call.
pub async fn run(config: &Config, partial: &[PartialService]) -> Vec<CheckLine> {
    let policy = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let mut lines = Vec::new();
    lines.push(match partly("datadog", partial) {
        Some(line) => line,
        None => datadog_line(config, &policy).await,
    });
    lines.push(match partly("jira", partial) {
        Some(line) => line,
        None => jira_line(config, &policy).await,
    });
    if !config.routes.is_empty() {
        lines.push(routes_line(config, partial, &policy).await);
    }
    lines.push(match partly("llm", partial) {
        Some(line) => line,
        None => llm_line(config, &policy).await,
    });
    lines
}

/// A check's line: the service, whether it passed, and what it found or what to do.
fn line(service: &'static str, result: Result<String, String>) -> CheckLine {
    CheckLine {
        service,
        ok: Some(result.is_ok()),
        detail: result.unwrap_or_else(|e| e),
    }
}

/// A service that is not configured: neither passed nor failed.
fn not_configured(service: &'static str, detail: String) -> CheckLine {
    CheckLine {
        service,
        ok: None,
        detail,
    }
}

async fn datadog_line(config: &Config, policy: &RetryPolicy) -> CheckLine {
    match &config.source {
        SourceConfig::Datadog(dd) => line(
            "datadog",
            check_datadog(&config.site, dd, policy.clone(), config.clock.now()).await,
        ),
        SourceConfig::File(_) => not_configured(
            "datadog",
            "not configured (DD_API_KEY and DD_APP_KEY unset)".into(),
        ),
    }
}

/// Sign in (`myself`) and read the project.
async fn jira_line(config: &Config, policy: &RetryPolicy) -> CheckLine {
    let Some(jira) = &config.jira else {
        return not_configured(
            "jira",
            "not configured (JIRA_URL, JIRA_PROJECT and credentials)".into(),
        );
    };
    let result = async {
        let service = Service::new("Jira", None, policy.clone()).map_err(|e| e.to_string())?;
        let client = Arc::new(JiraClient::new(service, jira.clone()));
        let me = client.myself().await.map_err(|e| {
            format!("{e}: check JIRA_URL and JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Server/DC)")
        })?;
        let project = client
            .project()
            .await
            .map_err(|e| format!("signed in as {me}, but project {}: {e}", jira.project))?;
        Ok::<_, String>(format!(
            "{} as {me}, project {} ({project})",
            jira.base_url, jira.project
        ))
    }
    .await;
    line("jira", result)
}

/// The routes' projects, issue types and fields, as Jira knows them.
async fn routes_line(
    config: &Config,
    partial: &[PartialService],
    policy: &RetryPolicy,
) -> CheckLine {
    match (&config.jira, partly("jira", partial)) {
        (Some(jira), None) => {
            let result = async {
                let service =
                    Service::new("Jira", None, policy.clone()).map_err(|e| e.to_string())?;
                let client = JiraClient::new(service, jira.clone());
                check_routes(&client, jira, &config.routes).await
            }
            .await;
            line("routes", result)
        }
        _ => not_configured(
            "routes",
            format!(
                "{} route(s), not verified (Jira is not configured)",
                config.routes.iter().count()
            ),
        ),
    }
}

/// One smallest chat completion with the configured model.
async fn llm_line(config: &Config, policy: &RetryPolicy) -> CheckLine {
    let AnalyzerConfig::Llm {
        base_url,
        model,
        api_key,
    } = &config.analyzer
    else {
        return not_configured("llm", "not used (--analyzer rules)".into());
    };
    let result = async {
        let service = Service::new("LLM", None, policy.clone()).map_err(|e| e.to_string())?;
        let url = format!("{base_url}/chat/completions");
        let body = json!({"model": model, "max_tokens": 1,
            "messages": [{"role": "user", "content": "Reply with OK."}]});
        service
            .send(
                |c| {
                    c.post(&url)
                        .bearer_auth(api_key.expose_secret())
                        .json(&body)
                },
                Retry::Idempotent,
            )
            .await
            .map_err(|e| {
                format!("{e}: check OPENAI_API_KEY, OPENAI_BASE_URL and TRIAGE_LLM_MODEL")
            })?;
        Ok::<_, String>(format!("{base_url}, model {model}"))
    }
    .await;
    line("llm", result)
}

async fn check_datadog(
    site: &DatadogSite,
    dd: &crate::config::DatadogConfig,
    policy: RetryPolicy,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let service = Service::new("Datadog", None, policy).map_err(|e| e.to_string())?;
    let url = format!("{}/api/v2/logs/events/search", site.api_base);
    let body = json!({
        "filter": {"query": dd.query, "from": (now - chrono::Duration::minutes(1)).to_rfc3339(), "to": now.to_rfc3339(), "indexes": ["*"]},
        "page": {"limit": 1},
        "sort": "timestamp",
    });
    service
        .send(
            |c| {
                c.post(&url)
                    .header("DD-API-KEY", dd.api_key.expose_secret())
                    .header("DD-APPLICATION-KEY", dd.app_key.expose_secret())
                    .json(&body)
            },
            Retry::Idempotent,
        )
        .await
        .map_err(|e| {
            if e.is_auth() {
                format!("{e}: check DD_API_KEY, DD_APP_KEY, DD_SITE ({}) and the logs_read_data permission", site.name)
            } else {
                e.to_string()
            }
        })?;
    Ok(format!(
        "{} (site {}), logs search allowed",
        site.api_base, site.name
    ))
}

/// Whether every configured service passed (and at least one was configured).
pub fn all_passed(lines: &[CheckLine]) -> bool {
    lines.iter().any(|l| l.ok.is_some()) && lines.iter().all(|l| l.ok != Some(false))
}
