//! Routes: where each problem's ticket goes, and how it is shaped or muted.
//!
//! In: the ordered `[[route]]` tables of the config file (parsed and checked by `config::file`),
//! and one problem as its leader shows it (service, tags, status, template) with its analysis
//! (category, severity). Out: the first route whose conditions all hold, or none (the problem
//! goes to the configured project with the configured issue type). Pure: no I/O, cannot fail.
//!
//! A route is decided once per problem, from its leader log and template, so every log of a
//! problem goes the same way. The service pattern is a small glob of our own (`*` any run of
//! characters, `?` one character, everything else literal, whole name, case-sensitive): service
//! names are not paths, so globset's separator rules and character classes would only add
//! surprises, and `regex` (already a dependency) does the matching.

use std::time::Duration;

use chrono::NaiveDate;
use regex::Regex;

/// One `[[route]]` table.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// Required and unique: shown in reports and errors.
    pub name: String,
    /// Glob on the service.
    pub service: Option<Glob>,
    /// Every tag listed must be on the log.
    pub tags: Vec<String>,
    /// Datadog status, one of these (lower case).
    pub status: Vec<String>,
    /// Category from the analysis, one of these.
    pub category: Vec<String>,
    /// Severity from the analysis, one of these.
    pub severity: Vec<String>,
    /// Regex on the problem's template.
    pub template: Option<Regex>,
    /// Jira project key for the ticket.
    pub project: Option<String>,
    /// Jira issue type.
    pub issue_type: Option<String>,
    /// Jira component names.
    pub components: Vec<String>,
    /// Assignee: an accountId on Cloud, a user name on Server/DC.
    pub assignee: Option<String>,
    /// Jira priority name (instead of the severity's).
    pub priority: Option<String>,
    /// Labels added to the ticket besides triage's own.
    pub labels: Vec<String>,
    /// Least time between two recurrence comments on this route's tickets.
    pub comment_cooldown: Option<Duration>,
    /// Record the logs as skipped instead of filing or commenting.
    pub mute: bool,
    /// The mute ends after this date (UTC).
    pub until: Option<NaiveDate>,
}

/// A service pattern: `*` and `?` wildcards, the rest literal.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    regex: Regex,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let mut re = String::from("^");
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        Glob {
            pattern: pattern.to_string(),
            regex: Regex::new(&re).expect("an escaped glob is a valid regex"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// What a route is matched against: one problem, as its leader shows it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub service: Option<&'a str>,
    pub tags: &'a [String],
    pub status: &'a str,
    pub category: &'a str,
    pub severity: &'a str,
    pub template: &'a str,
}

impl Route {
    /// Whether every condition given holds (a route without conditions matches everything).
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let any = |list: &[String], value: &str| {
            list.is_empty() || list.iter().any(|v| v.eq_ignore_ascii_case(value))
        };
        self.service
            .as_ref()
            .is_none_or(|g| s.service.is_some_and(|svc| g.is_match(svc)))
            && self.tags.iter().all(|t| s.tags.contains(t))
            && any(&self.status, s.status)
            && any(&self.category, s.category)
            && any(&self.severity, s.severity)
            && self
                .template
                .as_ref()
                .is_none_or(|re| re.is_match(s.template))
    }

    /// Whether this route mutes its problems on `today` (the mute lasts through `until`).
    pub fn muted_on(&self, today: NaiveDate) -> bool {
        self.mute && self.until.is_none_or(|until| today <= until)
    }
}

/// The ordered routes of the config file; first match wins.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn new(routes: Vec<Route>) -> Self {
        Routes(routes)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }

    /// The first route that matches, if any.
    pub fn decide(&self, subject: &Subject<'_>) -> Option<&Route> {
        self.0.iter().find(|r| r.matches(subject))
    }

    /// Every project a problem's ticket may be in: the default project, then each project the
    /// routes name, without repeats (a problem whose route changed is still found).
    pub fn projects(&self, default_project: &str) -> Vec<String> {
        let mut out = vec![default_project.to_string()];
        for p in self.0.iter().filter_map(|r| r.project.as_ref()) {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// What a route decided for one problem's ticket, with the route's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// The route's name (`None`: no route matched, the configured defaults apply).
    pub route: Option<String>,
    pub project: Option<String>,
    pub issue_type: Option<String>,
    pub components: Vec<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    pub labels: Vec<String>,
    pub comment_cooldown: Option<Duration>,
    /// The problem is muted by this route today.
    pub muted: bool,
}

impl Fields {
    /// The fields `route` gives on `today`; the defaults when no route matched.
    pub fn of(route: Option<&Route>, today: NaiveDate) -> Fields {
        let Some(r) = route else {
            return Fields::default();
        };
        Fields {
            route: Some(r.name.clone()),
            project: r.project.clone(),
            issue_type: r.issue_type.clone(),
            components: r.components.clone(),
            assignee: r.assignee.clone(),
            priority: r.priority.clone(),
            labels: r.labels.clone(),
            comment_cooldown: r.comment_cooldown,
            muted: r.muted_on(today),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(service: Option<&'a str>, tags: &'a [String]) -> Subject<'a> {
        Subject {
            service,
            tags,
            status: "error",
            category: "database",
            severity: "high",
            template: "connection timeout after <num> ms",
        }
    }

    #[test]
    fn globs_match_whole_service_names_with_star_and_question_mark() {
        let g = Glob::new("payments-*");
        assert!(g.is_match("payments-api"));
        assert!(g.is_match("payments-"));
        assert!(!g.is_match("old-payments-api"), "anchored at the start");
        let g = Glob::new("db-?");
        assert!(g.is_match("db-1") && !g.is_match("db-12"));
        let g = Glob::new("a.b+c");
        assert!(
            g.is_match("a.b+c") && !g.is_match("aXb+c"),
            "the rest is literal"
        );
    }

    #[test]
    fn every_given_condition_must_hold_and_none_matches_everything() {
        let tags = vec!["env:prod".to_string(), "team:pay".to_string()];
        let s = subject(Some("payments-api"), &tags);
        assert!(Route::default().matches(&s), "no condition: everything");
        let r = Route {
            service: Some(Glob::new("payments-*")),
            tags: vec!["env:prod".into()],
            status: vec!["ERROR".into(), "critical".into()],
            category: vec!["database".into()],
            severity: vec!["critical".into(), "high".into()],
            template: Some(Regex::new("(?i)TIMEOUT").unwrap()),
            ..Route::default()
        };
        assert!(r.matches(&s));
        for broken in [
            Route {
                service: Some(Glob::new("orders-*")),
                ..r.clone()
            },
            Route {
                tags: vec!["env:prod".into(), "env:staging".into()],
                ..r.clone()
            },
            Route {
                status: vec!["warn".into()],
                ..r.clone()
            },
            Route {
                category: vec!["network".into()],
                ..r.clone()
            },
            Route {
                severity: vec!["low".into()],
                ..r.clone()
            },
            Route {
                template: Some(Regex::new("refused").unwrap()),
                ..r.clone()
            },
        ] {
            assert!(!broken.matches(&s), "{broken:?}");
        }
        // A service condition never matches a log without a service.
        assert!(!r.matches(&subject(None, &tags)));
    }

    #[test]
    fn first_match_wins_and_projects_are_listed_once() {
        let routes = Routes::new(vec![
            Route {
                name: "db".into(),
                category: vec!["database".into()],
                project: Some("DBA".into()),
                ..Route::default()
            },
            Route {
                name: "payments".into(),
                service: Some(Glob::new("payments-*")),
                project: Some("PAY".into()),
                ..Route::default()
            },
            Route {
                name: "also-db".into(),
                project: Some("DBA".into()),
                ..Route::default()
            },
        ]);
        let s = subject(Some("payments-api"), &[]);
        assert_eq!(routes.decide(&s).map(|r| r.name.as_str()), Some("db"));
        let s = Subject {
            category: "network",
            ..s
        };
        assert_eq!(routes.decide(&s).map(|r| r.name.as_str()), Some("payments"));
        assert_eq!(routes.projects("OPS"), vec!["OPS", "DBA", "PAY"]);
        assert_eq!(routes.projects("PAY"), vec!["PAY", "DBA"]);
    }

    #[test]
    fn a_mute_lasts_through_its_until_date() {
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let r = Route {
            name: "noisy".into(),
            mute: true,
            until: Some(day("2026-12-31")),
            ..Route::default()
        };
        assert!(r.muted_on(day("2026-12-31")));
        assert!(!r.muted_on(day("2027-01-01")));
        assert!(Fields::of(Some(&r), day("2026-12-01")).muted);
        let forever = Route {
            until: None,
            ..r.clone()
        };
        assert!(forever.muted_on(day("2099-01-01")));
        assert_eq!(Fields::of(None, day("2026-12-01")), Fields::default());
    }
}
