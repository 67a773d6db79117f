//! Jira's own settings: which API, how to authenticate, the project and issue type, and the
//! severity → priority map.
//!
//! In: values `config` has already read and checked (URLs parsed, secrets wrapped). Out: the
//! `JiraConfig` the client is built from. Owned here, beside the client, so that `config` (which
//! assembles every service's settings) depends on `jira` and never the other way round.

use secrecy::SecretString;

/// Which Jira REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JiraApi {
    /// Jira Cloud, REST v3, Atlassian Document Format.
    V3,
    /// Jira Server / Data Center, REST v2, wiki markup.
    V2,
}

#[derive(Debug, Clone)]
pub enum JiraAuth {
    Basic { email: String, token: SecretString },
    Bearer(SecretString),
}

#[derive(Debug, Clone)]
pub struct JiraConfig {
    /// Base URL without a trailing slash; may carry a port and a context path.
    pub base_url: String,
    pub project: String,
    pub issue_type: String,
    pub api: JiraApi,
    pub auth: JiraAuth,
    /// Severity → priority name.
    pub priorities: PriorityMap,
    /// Reopen a Done ticket instead of filing a recurrence.
    pub reopen: bool,
    /// How long after a create search may still not show it (`--jira-search-lag`): a create
    /// without a usable answer is searched for this long, counted from when it was sent,
    /// before it is sent again.
    pub search_lag: std::time::Duration,
}

/// Map from severity to Jira priority name; `None` leaves the priority to Jira's default.
#[derive(Debug, Clone)]
pub struct PriorityMap(Vec<(String, String)>);

impl PriorityMap {
    /// Jira's default priority names for each API: Cloud (Highest..Lowest), Server (Blocker..Trivial).
    pub fn default_for(api: JiraApi) -> Self {
        let names: [&str; 4] = match api {
            JiraApi::V3 => ["Highest", "High", "Medium", "Low"],
            JiraApi::V2 => ["Blocker", "Critical", "Major", "Minor"],
        };
        PriorityMap(
            ["critical", "high", "medium", "low"]
                .iter()
                .zip(names)
                .map(|(s, p)| (s.to_string(), p.to_string()))
                .collect(),
        )
    }

    /// Parse `critical=P1,high=P2,...` over the defaults. An empty value for a severity sends no priority.
    pub fn parse(api: JiraApi, spec: &str) -> Result<Self, String> {
        let mut map = Self::default_for(api);
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (sev, name) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}' is not severity=Priority"))?;
            let sev = sev.trim().to_ascii_lowercase();
            let slot = map.0.iter_mut().find(|(s, _)| *s == sev).ok_or_else(|| {
                format!("'{sev}' is not a severity (critical, high, medium, low)")
            })?;
            slot.1 = name.trim().to_string();
        }
        Ok(map)
    }

    pub fn get(&self, severity: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(s, _)| s == severity)
            .map(|(_, p)| p.as_str())
            .filter(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_map_defaults_and_overrides() {
        let m = PriorityMap::default_for(JiraApi::V3);
        assert_eq!(m.get("critical"), Some("Highest"));
        assert_eq!(
            PriorityMap::default_for(JiraApi::V2).get("critical"),
            Some("Blocker")
        );
        let m = PriorityMap::parse(JiraApi::V3, "critical=P1, low=").unwrap();
        assert_eq!(m.get("critical"), Some("P1"));
        assert_eq!(m.get("low"), None);
        assert!(PriorityMap::parse(JiraApi::V3, "urgent=P0").is_err());
    }
}
