//! A user's corrections of grouping: the `[[group]]` tables of `triage.toml`.
//!
//! In: the rules, checked when the config file is read (`config::file`), and, per log or per
//! template family, its service and masked template. Out: which rule applies, matched like
//! routes (a glob on the service, a regex searched in the template; both optional, first match
//! wins). A rule either names the problem outright (`fingerprint`: every matching log is that
//! one problem, as if it carried `error.fingerprint`), or keeps words from ever becoming
//! variables (`split`: lines that differ in one of them stay different problems). Pure: no I/O.

use regex::Regex;

use crate::route::Glob;

/// One `[[group]]` table.
#[derive(Debug, Clone, Default)]
pub struct GroupRule {
    /// Required and unique: shown by `triage route --explain`.
    pub name: String,
    /// Glob on the service.
    pub service: Option<Glob>,
    /// Regex searched in the template (the masked line).
    pub template: Option<Regex>,
    /// Words that are never variables in matching lines.
    pub split: Vec<String>,
    /// Every matching log is this one problem (a label-safe name).
    pub fingerprint: Option<String>,
}

impl GroupRule {
    /// Whether the rule applies to a line of `service` whose template is `template`.
    pub fn matches(&self, service: &str, template: &str) -> bool {
        self.service.as_ref().is_none_or(|g| g.is_match(service))
            && self.template.as_ref().is_none_or(|r| r.is_match(template))
    }

    /// What the rule does, in a few words (for `route --explain`).
    pub fn describe(&self) -> String {
        match &self.fingerprint {
            Some(fp) => format!("{}: one problem, fingerprint {fp}", self.name),
            None => format!("{}: never variables: {}", self.name, self.split.join(", ")),
        }
    }
}

/// The rules, in file order.
#[derive(Debug, Clone, Default)]
pub struct GroupRules(Vec<GroupRule>);

impl GroupRules {
    pub fn new(rules: Vec<GroupRule>) -> Self {
        GroupRules(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &GroupRule> {
        self.0.iter()
    }

    /// The first rule that applies to a line of `service` with `template`.
    pub fn first(&self, service: &str, template: &str) -> Option<&GroupRule> {
        self.0.iter().find(|r| r.matches(service, template))
    }

    /// The fingerprint the first matching rule gives such a line, if it names one.
    pub fn fingerprint(&self, service: &str, template: &str) -> Option<&str> {
        self.first(service, template)?.fingerprint.as_deref()
    }

    /// Whether `word` may never be a variable in a family of `service` with these templates:
    /// some rule that applies to one of them lists it.
    pub fn keeps<'a>(
        &self,
        service: &str,
        templates: impl Iterator<Item = &'a str> + Clone,
        word: &str,
    ) -> bool {
        self.0.iter().any(|r| {
            r.split.iter().any(|w| w == word) && templates.clone().any(|t| r.matches(service, t))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> GroupRules {
        GroupRules::new(vec![
            GroupRule {
                name: "states".into(),
                service: Some(Glob::new("payments*")),
                split: vec!["OPEN".into(), "CLOSED".into()],
                ..GroupRule::default()
            },
            GroupRule {
                name: "timeouts".into(),
                template: Some(Regex::new("(?i)timed? ?out").unwrap()),
                fingerprint: Some("any-timeout".into()),
                ..GroupRule::default()
            },
        ])
    }

    #[test]
    fn rules_match_like_routes_first_wins() {
        let r = rules();
        assert_eq!(
            r.first("payments-api", "breaker OPEN")
                .map(|r| r.name.as_str()),
            Some("states")
        );
        assert_eq!(r.fingerprint("payments-api", "request timed out"), None);
        assert_eq!(
            r.fingerprint("checkout", "request timed out"),
            Some("any-timeout")
        );
        assert!(r.keeps("payments", ["breaker OPEN"].into_iter(), "OPEN"));
        assert!(!r.keeps("checkout", ["breaker OPEN"].into_iter(), "OPEN"));
        assert!(!r.keeps("payments", ["breaker OPEN"].into_iter(), "HALF"));
    }
}
