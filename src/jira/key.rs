//! Jira issue keys, checked before they go into a URL path.
//!
//! In: a key from a search result, a create response or the state store. Out: `Ok(())` for a key
//! shaped like `OPS-123` (`^[A-Z][A-Z0-9_]+-[0-9]+$`), else an error that quotes at most 40
//! characters of it. A key such as `../../../myself?x=` would otherwise send the next request to
//! another path of the server.

use std::sync::LazyLock;

use regex::Regex;

static KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Z][A-Z0-9_]+-[0-9]+$").expect("the issue key pattern is a valid regex")
});

/// Whether `key` is a well-formed Jira issue key.
pub fn is_valid(key: &str) -> bool {
    key.len() <= 255 && KEY.is_match(key)
}

/// Refuse a key that is not a Jira issue key.
pub fn check(key: &str) -> Result<(), super::JiraError> {
    if is_valid(key) {
        return Ok(());
    }
    let shown: String = key.chars().take(40).collect();
    Err(super::JiraError::Failed(format!(
        "Jira gave an issue key that is not one ({shown:?}); it is not used in any request"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_keys_pass() {
        for good in ["OPS-1", "AB_2-12345", "X1-0"] {
            assert!(is_valid(good), "{good}");
        }
        for bad in [
            "../../../myself?x=",
            "ops-1",
            "OPS-",
            "-1",
            "O-1",
            "OPS-1/comment",
            "OPS-1?x",
            "OPS-1\n",
            "",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
