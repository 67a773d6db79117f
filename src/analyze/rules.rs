//! The built-in `rules` analyzer: offline, deterministic keyword rules.
//!
//! In: the leader log of a problem and its normalized template. Out: an [`Analysis`].
//!
//! * **Category**: the first rule in `RULES` whose pattern matches the scanned text wins. The
//!   scanned text is the message, the template and the `error.kind` / `error.type` /
//!   `error.message` attributes, matched case-insensitively, with stack-frame lines (`at ...`,
//!   `File "..."`, Go frames) dropped so that a package name deep in a trace cannot outvote the
//!   headline.
//! * **Severity**: a base from the log status, raised (never lowered) by crash / data keywords
//!   and by the category (Resource and Disk are at least High).
//! * **Title**: `"{service}: {template}"` on one line, at most 255 chars.
//! * **Summary**: category, where (service, env, host), the template, and a category hint.
//!
//! All regexes are compiled once, on first use.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::{Analysis, Category, Severity};
use crate::event::LogEvent;

/// The longest title: Jira's summary limit, in chars.
const MAX_TITLE_CHARS: usize = 255;
/// The longest summary, in chars.
const MAX_SUMMARY_CHARS: usize = 500;
/// How much of the template the summary quotes, in chars.
const MAX_SUMMARY_HEADLINE_CHARS: usize = 200;
/// How much of each input text is scanned, in bytes (a huge stack trace adds nothing).
const MAX_SCAN_BYTES: usize = 16 * 1024;

/// Context that makes a bare number an HTTP status: `HTTP 503`, `HTTP/1.1 401`, `status: 502`,
/// `status code 403`, `returned 500`, `got 429` ... (`{status}` in [`RULES`]).
const STATUS_CONTEXT: &str = r"(?:\bhttp(?:/\d(?:\.\d)?)?|\bstatus(?:[ _-]?code)?|\bcode|\bresponse|\breturned|\breceived|\bgot)\b[^0-9\n]{0,20}?";

/// The category rules, in precedence order: the first match wins.
///
/// The order follows one principle: **a named subsystem or a concrete root cause beats a
/// symptom**. "database connection timed out" is Database (not Network), "Postgres: could not
/// write block: No space left on device" is Disk, an Envoy/nginx error about an *upstream* is
/// Dependency even though it also says "reset" or "connection refused".
///
///  1. Exception (narrow): Go's `all goroutines are asleep - deadlock!` is a program bug, not a
///     database lock, so it must win over Database's `deadlock`.
///  2. Disk: no space left / ENOSPC / read-only file system / I/O error. The most concrete root
///     cause; every other subsystem fails when the disk is full.
///  3. Resource: out of memory / OOM kill / heap space / too many open files / memory limit.
///     Exhaustion also makes everything else fail, so it comes before any subsystem.
///  4. Database: SQL, Postgres, MySQL, ORA-, deadlock, connection pool, duplicate key,
///     `relation ... does not exist`, ... (named subsystem beats network/auth symptoms).
///  5. Exception (specific runtime error types): NullPointerException, nil pointer, KeyError,
///     TypeError, segfault, ... The headline names the bug even when its payload contains a
///     word like "timeout" (`TypeError: Cannot read properties of undefined (reading 'timeout')`).
///  6. Configuration (explicit): missing environment variable, invalid/missing config, not
///     configured, file permission errors (`open /etc/x: permission denied`, EACCES),
///     certificate problems. Before Authentication, so that a *file* "permission denied" is not
///     taken for an auth failure.
///  7. Authentication: unauthorized, forbidden, HTTP 401/403, invalid/expired token or JWT,
///     authentication failed, access denied, (other) permission denied.
///  8. Dependency: upstream, bad gateway, service unavailable, gateway timeout, HTTP 5xx / 429,
///     circuit breaker. The upstream is the named subsystem; the network words are its symptom.
///     So Envoy's `upstream connect error or disconnect/reset before headers` is Dependency.
///  9. Network: timed out / timeout, connection refused/reset, ECONNRESET, DNS, unreachable,
///     broken pipe, deadline exceeded.
/// 10. Configuration (weak): the word "config" alone.
/// 11. Exception (generic): panic, unhandled/uncaught exception, traceback, `*Exception`,
///     `*Error:`. Last, because "Unhandled exception: connection refused" is a Network problem.
/// 12. Otherwise Other.
///
/// Each entry is a list of alternatives (case-insensitive regexes), joined into one regex.
const RULES: &[(Category, &[&str])] = &[
    // 1. Exception (narrow): Go runtime deadlock.
    (Category::Exception, &[r"all goroutines are asleep"]),
    // 2. Disk.
    (
        Category::Disk,
        &[
            r"no space left",
            r"\benospc\b",
            r"\bdisk (?:is )?full\b",
            r"\b(?:file ?system|volume|partition) (?:is )?full\b",
            r"disk quota exceeded",
            r"\bedquot\b",
            r"read-only file ?system",
            r"\berofs\b",
            r"\bi/o error\b",
            r"input/output error",
            r"\bout of disk\b",
            r"(?:low|insufficient|not enough) (?:free )?disk space",
            r"\bext[234]-fs error",
            r"\bbad (?:sector|block)s?\b",
        ],
    ),
    // 3. Resource exhaustion.
    (
        Category::Resource,
        &[
            r"outofmemory",
            r"out of memory",
            r"\boom\b",
            r"\boom[ -]?kill",
            r"heap space",
            r"heap out of memory",
            r"too many open files",
            r"\be[mn]file\b",
            r"memory limit",
            r"killed process",
            r"cannot allocate memory",
            r"\benomem\b",
            r"memory (?:exhausted|pressure)",
            r"allowed memory size",
            r"gc overhead limit",
            r"\bmemoryerror\b",
            r"resource[ _]exhausted",
            r"(?:insufficient|not enough) memory",
            r"unable to create (?:new )?native thread",
            r"too many (?:threads|processes)",
            r"thread pool (?:is )?exhausted",
        ],
    ),
    // 4. Database.
    (
        Category::Database,
        &[
            r"\w*sql\w*", // SQL, SQLException, SQLSTATE, MySQL, PostgreSQL, SQLite, psql, ...
            r"\bpostgres\w*",
            r"\bmariadb\b",
            r"\bora-\d{5}\b",
            r"\bmongo\w*",
            r"\bredis\b",
            r"\bcassandra\b",
            r"\bdynamodb\b",
            r"\bdatabases?\b",
            r"\bdb\b",
            r"\bjdbc\b",
            r"\bhikari\w*",
            r"\bhibernate\b",
            r"\bpsycopg\w*",
            r"\bactiverecord\b",
            r"\bsequelize\w*",
            r"\bprisma\b",
            r"\bdeadlock",
            r"\bconnection[ _-]pool\b",
            r"duplicate key",
            r"(?:unique|foreign key|not-null|check|integrity) constraint",
            r"\brelation\s+\S{1,128}\s+does not exist",
            r"\btable\s+\S{1,128}\s+(?:does(?:n't| not) exist|not found)",
            r"lock wait timeout",
            r"too many (?:connections|clients)",
            r"could not serialize access",
            r"serialization failure",
        ],
    ),
    // 5. Exception: specific runtime error types.
    (
        Category::Exception,
        &[
            r"null ?pointer",
            r"null ?reference",
            r"\bnil (?:pointer|map)\b",
            r"undefined is not",
            r"cannot read propert(?:y|ies) of (?:undefined|null)",
            r"is not a function",
            r"\bis not defined\b",
            r"nonetype",
            r"\bkeyerror\b",
            r"\bindexerror\b",
            r"\battributeerror\b",
            r"\btypeerror\b",
            r"\bvalueerror\b",
            r"\bzerodivisionerror\b",
            r"division by zero",
            r"index out of (?:range|bounds)",
            r"outofbounds",
            r"classcastexception",
            r"illegal(?:argument|state)exception",
            r"unsupportedoperationexception",
            r"\bsegfault\b",
            r"segmentation (?:fault|violation)",
            r"\bsigsegv\b",
            r"stack ?overflow",
            r"maximum recursion depth",
            r"assertion ?(?:failed|error)",
            r"entered unreachable code",
            r"runtime error",
        ],
    ),
    // 6. Configuration (explicit), including file permissions and certificates.
    (
        Category::Configuration,
        &[
            r"\beacces\b",
            r"\bpermissionerror\b",
            r"\berrno 13\b",
            r"\b(?:open|mkdir|stat|lstat|read|write|create|creat|unlink|remove|rename|chmod|chown|exec|access)\s+\S+:\s*permission denied",
            r"missing (?:required )?(?:environment variable|env(?:ironment)? var\w*|config\w*|setting)",
            r"environment variable\s+\S+\s+(?:is\s+)?(?:not set|missing|required|undefined|empty|unset)",
            r"\benv(?:ironment)? var\w* (?:is )?(?:not set|missing|required|undefined|unset)",
            r"(?:invalid|bad|malformed|unknown|unrecognized|unsupported) (?:config\w*|setting|option|property)",
            r"\bconfig\w* (?:error|invalid|is invalid|not found|missing)",
            r"\bnot configured\b",
            r"\bno configuration\b",
            r"\bmisconfigur\w*",
            r"failed to (?:parse|read|validate) config\w*",
            r"improperlyconfigured",
            r"configurationexception",
            r"could not resolve placeholder",
            r"\bx509\b",
            r"certificate (?:has )?expired",
            r"certificate verify failed",
            r"unknown (?:certificate )?authority",
            r"self[- ]signed certificate",
        ],
    ),
    // 7. Authentication / authorization.
    (
        Category::Authentication,
        &[
            r"unauthori[sz]ed",
            r"\bunauthenticated\b",
            r"\bforbidden\b",
            r"not authori[sz]ed",
            r"{status}\b40[13]\b",
            r"(?:invalid|expired|missing|bad|malformed|revoked|wrong)[ _](?:access[ _]|auth[ _]|bearer[ _]|id[ _]|refresh[ _]|api[ _])?(?:token|jwt|credentials?|api[ _-]?key|signature|password|session)",
            r"\b(?:token|jwt|session|credentials?|signature|password)(?: has)? expired",
            r"tokenexpired",
            r"expiredjwt",
            r"expiredsignature",
            r"\bjwt\b",
            r"authenticat\w* (?:failed|failure|error|required)",
            r"failed to authenticat",
            r"\bauth(?:entication|orization)? (?:failed|failure|error)",
            r"login failed",
            r"access ?(?:is )?denied",
            r"invalid_(?:grant|client|token)",
            r"permission denied",
            r"insufficient (?:permissions|privileges|scope)",
        ],
    ),
    // 8. Upstream dependency.
    (
        Category::Dependency,
        &[
            r"\bupstream\b",
            r"bad gateway",
            r"service ?unavailable",
            r"gateway time-?out",
            r"\b5xx\b",
            r"{status}\b5\d\d\b",
            r"{status}\b429\b",
            r"too many requests",
            r"rate[ _-]?limit(?:ed| exceeded)",
            r"circuit[ _-]?breaker",
            r"\bcode = unavailable\b", // gRPC
        ],
    ),
    // 9. Network / timeout.
    (
        Category::Network,
        &[
            r"timed?[ -]?out\b",
            r"timeout",
            r"timedout",
            r"deadline[ _]exceeded",
            r"connection (?:refused|reset|aborted|closed|failed|lost|error)",
            r"\bconnect(?:ion)?(?:exception|error)\b",
            r"\beconn\w*",
            r"\be(?:host|net)unreach\b",
            r"\bepipe\b",
            r"\beai_again\b",
            r"\benotfound\b",
            r"\bdns\b",
            r"name resolution",
            r"(?:could not|couldn't|unable to|failed to) resolve",
            r"no such host",
            r"name or service not known",
            r"getaddrinfo",
            r"unknown ?host",
            r"unreachable",
            r"no route to host",
            r"broken pipe",
            r"socket hang up",
            r"socket ?(?:exception|closed|error)",
            r"\bdial tcp\b",
            r"(?:tls|ssl) handshake",
            r"handshake (?:failed|failure)",
            r"network (?:error|is down|failure)",
            r"max retries exceeded",
            r"(?:failed to|could not|couldn't|unable to|cannot) connect",
        ],
    ),
    // 10. Configuration (weak).
    (Category::Configuration, &[r"\bconfig\w*"]),
    // 11. Exception (generic).
    (
        Category::Exception,
        &[
            r"\bpanic\w*",
            r"\bunhandled\b",
            r"\buncaught\b",
            r"\btraceback\b",
            r"\w*exceptions?\b",
            r"\b\w+error:",
            r"stack ?trace",
            r"core dumped",
        ],
    ),
];

/// Words that make any problem Critical, whatever its status said.
const CRITICAL_KEYWORDS: &str = r"(?:^|[^\w-])fatal\b|\bpanic(?:ked|king|s)?\b|outofmemory|out of memory|\boom\b|\boom[ -]?kill|\bsegfault\b|segmentation (?:fault|violation)|\bsigsegv\b|data loss|\bcorrupt\w*";

struct Rule {
    category: Category,
    pattern: Regex,
}

fn build(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .unwrap_or_else(|e| panic!("built-in analyzer pattern does not compile: {e}"))
}

static COMPILED_RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|(category, alternatives)| {
            let joined = alternatives
                .iter()
                .map(|alt| format!("(?:{})", alt.replace("{status}", STATUS_CONTEXT)))
                .collect::<Vec<_>>()
                .join("|");
            Rule {
                category: *category,
                pattern: build(&joined),
            }
        })
        .collect()
});

static CRITICAL: LazyLock<Regex> = LazyLock::new(|| build(CRITICAL_KEYWORDS));

/// A stack-frame line (tested on the trimmed line, never on a message's first line).
static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    build(concat!(
        r"^(?:",
        r"at\s+[\w$.<>\[\]/]+\s*\(", // Java/JS frame, even unindented
        r#"|File\s+["<]"#,           // Python frame
        r"|\.\.\.\s*(?:\d+|<num>)\s+more\b", // Java "... 12 more"
        r"|goroutine\s+(?:\d+|<num>)\s+\[", // Go goroutine header
        r"|created by\s+\S+",        // Go
        r"|[\w$/*-]+(?:\.[\w$/*()-]+)+\(.*\)(?:\s+\+0x[0-9a-f]+)?$", // Go function frame
        r"|\S+\.(?:go|rs|py|js|mjs|cjs|ts|java|kt|scala|rb|cs|php):(?:\d+|<num>)", // file:line
        r"|<path>:(?:\d+|<num>)",    // masked file:line
        r"|(?:\d+|<num>):\s+(?:0x[0-9a-f]+|\S+::)", // Rust backtrace
        r")"
    ))
});

/// Lines that only connect parts of a traceback; dropped from both scan and title.
static CONNECTOR: LazyLock<Regex> = LazyLock::new(|| {
    build(concat!(
        r"^(?:traceback \(most recent call last\)",
        r"|during handling of the above exception",
        r"|the above exception was the direct cause",
        r")"
    ))
});

/// ANSI terminal escape sequences.
static ANSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]").expect("valid regex"));

/// Classify one problem from its leader log and its normalized template (the template has
/// variable parts masked as `<num>`, `<ip>`, `<duration>`, `<str>`, ... produced elsewhere).
pub fn analyze(event: &LogEvent, template: &str) -> Analysis {
    let text = scan_text(event, template);
    let category = classify(&text);
    let severity = severity(&event.status, &text, category);

    let service = event
        .service
        .as_deref()
        .map(|s| truncate_chars(&one_line(s), 100))
        .filter(|s| !s.is_empty());
    let mut headline = headline_of(template);
    if headline.is_empty() {
        headline = headline_of(&event.message);
    }
    if headline.is_empty() {
        headline = format!("{} without a message", label(category));
    }

    let title = match &service {
        Some(service) => format!("{service}: {headline}"),
        None => headline.clone(),
    };
    let title = truncate_chars(&title, MAX_TITLE_CHARS);
    let summary = summary(event, service.as_deref(), &headline, category);
    Analysis {
        category,
        severity,
        title,
        summary,
    }
}

/// The text the keyword rules run on: message, template and error attributes, frames dropped.
fn scan_text(event: &LogEvent, template: &str) -> String {
    let mut text = String::new();
    for part in [event.message.as_str(), template] {
        for line in meaningful_lines(head(part, MAX_SCAN_BYTES)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    for key in ["error.kind", "error.type", "error.message"] {
        if let Some(Value::String(s)) = event.attribute(key).as_deref() {
            text.push_str(head(s, MAX_SCAN_BYTES));
            text.push('\n');
        }
    }
    text
}

fn classify(text: &str) -> Category {
    COMPILED_RULES
        .iter()
        .find(|rule| rule.pattern.is_match(text))
        .map_or(Category::Other, |rule| rule.category)
}

/// Base severity from the log status, raised by keywords and by the category; never lowered.
fn severity(status: &str, text: &str, category: Category) -> Severity {
    let base = match status.trim().to_ascii_lowercase().as_str() {
        "emergency" | "emerg" | "alert" | "critical" | "crit" | "fatal" => Severity::Critical,
        "error" | "err" => Severity::High,
        "warn" | "warning" => Severity::Medium,
        "info" | "informational" | "notice" | "debug" | "trace" | "ok" | "success" => Severity::Low,
        // An error tool mostly sees errors: an absent or unknown status is not "low".
        _ => Severity::Medium,
    };
    let mut severity = base;
    if matches!(category, Category::Resource | Category::Disk) {
        severity = severity.max(Severity::High);
    }
    if CRITICAL.is_match(text) {
        severity = Severity::Critical;
    }
    severity
}

/// The lines of a log text that say something: the first line always, then every line that is
/// not a stack frame, a Python source line under a frame, blank, or a traceback connector.
fn meaningful_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut after_python_frame = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        let indented = line.starts_with(char::is_whitespace);
        if trimmed.is_empty() || CONNECTOR.is_match(trimmed) {
            after_python_frame = false;
            continue;
        }
        if i > 0 {
            if indented && after_python_frame {
                // The source line Python prints under `File "...", line N, in f`.
                after_python_frame = false;
                continue;
            }
            if (indented && trimmed.starts_with("at ")) || FRAME.is_match(trimmed) {
                after_python_frame = trimmed.starts_with("File ");
                continue;
            }
        }
        after_python_frame = false;
        lines.push(trimmed);
    }
    lines
}

/// The template (or message) as one clean line, without stack frames.
fn headline_of(text: &str) -> String {
    one_line(&meaningful_lines(head(text, MAX_SCAN_BYTES)).join(" "))
}

/// One line: ANSI escapes removed, control chars turned into spaces, invisible format chars
/// dropped, whitespace runs collapsed, trimmed.
fn one_line(s: &str) -> String {
    let stripped;
    let s = if s.contains('\x1b') {
        stripped = ANSI.replace_all(s, "");
        stripped.as_ref()
    } else {
        s
    };
    let visible: String = s
        .chars()
        .filter(|c| !is_invisible(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    visible.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Zero-width and bidi-control chars: not control chars, but no business in a title.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// At most `max` chars; when cut, the last kept char is `…` (so the result has `max` chars).
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let end = s
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(s.len(), |(i, _)| i);
            format!("{}…", s[..end].trim_end())
        }
    }
}

/// The first `max` bytes of `s`, cut back to a char boundary.
fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// How a category reads in a sentence.
fn label(category: Category) -> &'static str {
    match category {
        Category::Database => "Database error",
        Category::Network => "Network/timeout error",
        Category::Authentication => "Authentication/authorization failure",
        Category::Resource => "Resource exhaustion",
        Category::Exception => "Unhandled exception",
        Category::Configuration => "Configuration error",
        Category::Dependency => "Upstream dependency failure",
        Category::Disk => "Disk/storage error",
        Category::Other => "Error",
    }
}

/// What an on-call engineer should look at first.
fn hint(category: Category) -> &'static str {
    match category {
        Category::Database => "Check database health, connection pool limits, slow or locking queries, and recent schema migrations.",
        Category::Network => "Check that the remote endpoint is up and reachable from this host (DNS, firewall, load balancer), and whether timeouts or retries need tuning.",
        Category::Authentication => "Check the credentials, token expiry and rotation, and the permissions granted to this service.",
        Category::Resource => "Check memory and file-descriptor limits against actual usage, recent load or traffic changes, and possible leaks.",
        Category::Exception => "Check the stack trace and recent deployments for the failing code path, and the input that triggered it.",
        Category::Configuration => "Check environment variables, config files, secrets, certificates and file permissions of this deployment, and recent configuration changes.",
        Category::Dependency => "Check the health and recent deployments of the upstream service, and the gateway or proxy in front of it.",
        Category::Disk => "Check free space and inodes on the affected volume, log rotation and retention, and the health of the file system.",
        Category::Other => "Check the full log context and recent changes to the service.",
    }
}

fn summary(event: &LogEvent, service: Option<&str>, headline: &str, category: Category) -> String {
    let mut s = String::from(label(category));
    if let Some(service) = service {
        s.push_str(" in service ");
        s.push_str(service);
        if let Some(env) = event.tag("env").map(one_line).filter(|e| !e.is_empty()) {
            s.push_str(&format!(" (env {})", truncate_chars(&env, 40)));
        }
    }
    if let Some(host) = event
        .host
        .as_deref()
        .map(one_line)
        .filter(|h| !h.is_empty())
    {
        s.push_str(" on host ");
        s.push_str(&truncate_chars(&host, 100));
    }
    s.push_str(": ");
    s.push_str(&truncate_chars(headline, MAX_SUMMARY_HEADLINE_CHARS));
    if !s.ends_with(['.', '!', '?', '…']) {
        s.push('.');
    }
    if let Some(Value::String(kind)) = event.attribute("error.kind").as_deref() {
        let kind = truncate_chars(&one_line(kind), 80);
        if !kind.is_empty() && !headline.to_lowercase().contains(&kind.to_lowercase()) {
            s.push_str(&format!(" Error kind: {kind}."));
        }
    }
    s.push(' ');
    s.push_str(hint(category));
    truncate_chars(&s, MAX_SUMMARY_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(status: &str, service: Option<&str>, message: &str) -> LogEvent {
        LogEvent {
            id: "test:1".into(),
            timestamp: None,
            status: status.into(),
            service: service.map(Into::into),
            host: Some("web-1".into()),
            message: message.into(),
            tags: vec!["env:prod".into()],
            attributes: crate::event::Attributes::None,
        }
    }

    /// Analyze an error log whose template is the message itself.
    fn analyze_msg(message: &str) -> Analysis {
        analyze(&event("error", Some("svc"), message), message)
    }

    fn category_of(message: &str) -> Category {
        analyze_msg(message).category
    }

    #[test]
    fn java_oom_is_resource_and_critical() {
        let msg = "java.lang.OutOfMemoryError: Java heap space\n\tat java.util.Arrays.copyOf(Arrays.java:3332)\n\tat com.acme.Cache.put(Cache.java:88)";
        let a = analyze_msg(msg);
        assert_eq!(a.category, Category::Resource);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.title, "svc: java.lang.OutOfMemoryError: Java heap space");
        assert_eq!(
            category_of("Out of memory: Killed process 4242 (java) total-vm:8388608kB"),
            Category::Resource
        );
        assert_eq!(
            category_of("accept4: too many open files; retrying in 1s"),
            Category::Resource
        );
    }

    #[test]
    fn postgres_and_mysql_errors_are_database() {
        assert_eq!(
            category_of("ERROR:  deadlock detected\nDETAIL:  Process 1234 waits for ShareLock on transaction 5678; blocked by process 9012."),
            Category::Database
        );
        assert_eq!(
            category_of("ERROR: relation \"users\" does not exist at character 15"),
            Category::Database
        );
        assert_eq!(
            category_of("Deadlock found when trying to get lock; try restarting transaction"),
            Category::Database
        );
        assert_eq!(
            category_of("ORA-00054: resource busy and acquire with NOWAIT specified"),
            Category::Database
        );
        assert_eq!(
            category_of("duplicate key value violates unique constraint \"orders_pkey\""),
            Category::Database
        );
    }

    #[test]
    fn named_subsystem_beats_symptom() {
        // Database is named, the timeout is the symptom.
        assert_eq!(
            category_of("database connection timed out after 30s"),
            Category::Database
        );
        assert_eq!(
            category_of(
                "HikariPool-1 - Connection is not available, request timed out after 30000ms."
            ),
            Category::Database
        );
        // The disk is the root cause, even inside a database message.
        assert_eq!(
            category_of(
                "PANIC: could not write to file \"pg_wal/xlogtemp.123\": No space left on device"
            ),
            Category::Disk
        );
    }

    #[test]
    fn go_nil_pointer_panic_is_exception_and_critical() {
        let msg = "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a8f3c]\n\ngoroutine 1 [running]:\ndatabase/sql.(*DB).conn(0x0, {0x5c2f40, 0xc000012345})\n\t/usr/local/go/src/database/sql/sql.go:1290 +0x1c\nmain.main()\n\t/app/main.go:42 +0x1d";
        let a = analyze_msg(msg);
        // The `database/sql` frame must not make this a Database problem.
        assert_eq!(a.category, Category::Exception);
        assert_eq!(a.severity, Severity::Critical);
        assert!(!a.title.contains("goroutine"), "{}", a.title);
        assert!(!a.title.contains("main.go"), "{}", a.title);
    }

    #[test]
    fn go_runtime_deadlock_is_exception_not_database() {
        assert_eq!(
            category_of("fatal error: all goroutines are asleep - deadlock!"),
            Category::Exception
        );
    }

    #[test]
    fn python_keyerror_traceback_is_exception_titled_by_the_error() {
        let msg = "Traceback (most recent call last):\n  File \"/app/worker.py\", line 42, in handle\n    user = cache[user_id]\nKeyError: 'user_42'";
        let template = "Traceback (most recent call last):\n  File <str>, line <num>, in handle\n    user = cache[user_id]\nKeyError: <str>";
        let a = analyze(&event("error", Some("worker"), msg), template);
        assert_eq!(a.category, Category::Exception);
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.title, "worker: KeyError: <str>");
        // The first line of the traceback alone is enough, too.
        assert_eq!(category_of("KeyError: 'user_42'"), Category::Exception);
        assert_eq!(
            category_of("AttributeError: 'NoneType' object has no attribute 'cursor'"),
            Category::Exception
        );
    }

    #[test]
    fn specific_exception_beats_a_network_word_in_its_payload() {
        assert_eq!(
            category_of("TypeError: Cannot read properties of undefined (reading 'timeout')"),
            Category::Exception
        );
        assert_eq!(
            category_of("java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null"),
            Category::Exception
        );
    }

    #[test]
    fn java_frames_do_not_drive_classification() {
        let msg = "java.lang.NullPointerException\n\tat org.postgresql.jdbc.PgStatement.execute(PgStatement.java:100)\n\tat com.acme.Repo.find(Repo.java:12)";
        assert_eq!(category_of(msg), Category::Exception);
    }

    #[test]
    fn envoy_upstream_reset_is_dependency() {
        // Documented choice: the upstream is named, "reset" is its symptom.
        assert_eq!(
            category_of("upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
            Category::Dependency
        );
        assert_eq!(category_of("no healthy upstream"), Category::Dependency);
        assert_eq!(
            category_of("rpc error: code = Unavailable desc = connection error"),
            Category::Dependency
        );
    }

    #[test]
    fn nginx_502_and_http_5xx_are_dependency() {
        let nginx = "2024/03/01 12:00:00 [error] 31#31: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.1, server: _, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8080/\", host: \"example.com\"";
        assert_eq!(category_of(nginx), Category::Dependency);
        assert_eq!(
            category_of("502 Bad Gateway from payments-api"),
            Category::Dependency
        );
        assert_eq!(
            category_of("request to inventory failed with status 503"),
            Category::Dependency
        );
        assert_eq!(
            category_of("GET https://api.stripe.com/v1/charges returned HTTP 500"),
            Category::Dependency
        );
    }

    #[test]
    fn timeouts_and_connection_errors_are_network() {
        assert_eq!(
            category_of("Connection to 10.0.3.7 timed out after 5000ms"),
            Category::Network
        );
        assert_eq!(
            category_of("Error: read ECONNRESET\n    at TCP.onStreamRead (node:internal/stream_base_commons:217:20)"),
            Category::Network
        );
        assert_eq!(
            category_of("dial tcp: lookup orders.internal on 10.0.0.2:53: no such host"),
            Category::Network
        );
        assert_eq!(
            category_of("java.net.SocketTimeoutException: Read timed out"),
            Category::Network
        );
        assert_eq!(category_of("write: broken pipe"), Category::Network);
    }

    #[test]
    fn auth_failures_are_authentication() {
        assert_eq!(
            category_of("JWT expired at 2024-03-01T12:00:00Z. Current time: 2024-03-01T12:05:00Z"),
            Category::Authentication
        );
        assert_eq!(
            category_of("jwt.exceptions.ExpiredSignatureError: Signature has expired"),
            Category::Authentication
        );
        assert_eq!(
            category_of("GitHub API responded with status 401"),
            Category::Authentication
        );
        assert_eq!(
            category_of("403 Forbidden: missing scope repo:write"),
            Category::Authentication
        );
    }

    #[test]
    fn bare_numbers_are_not_http_statuses() {
        assert_eq!(category_of("processed 401 items in batch"), Category::Other);
        assert_eq!(category_of("user 503 not found in tenant"), Category::Other);
    }

    #[test]
    fn file_permission_denied_is_configuration_not_auth() {
        assert_eq!(
            category_of("open /etc/app/config.yaml: permission denied"),
            Category::Configuration
        );
        assert_eq!(
            category_of("PermissionError: [Errno 13] Permission denied: '/var/log/app.log'"),
            Category::Configuration
        );
        assert_eq!(
            category_of("missing required environment variable STRIPE_SECRET_KEY"),
            Category::Configuration
        );
        assert_eq!(
            category_of("x509: certificate signed by unknown authority"),
            Category::Configuration
        );
    }

    #[test]
    fn storage_errors_are_disk_and_at_least_high() {
        let a = analyze(
            &event(
                "warn",
                Some("ingest"),
                "write /data/segment-0042.log: no space left on device (ENOSPC)",
            ),
            "write <path>: no space left on device (ENOSPC)",
        );
        assert_eq!(a.category, Category::Disk);
        assert_eq!(a.severity, Severity::High);
        assert_eq!(
            category_of("OSError: [Errno 30] Read-only file system: '/tmp/x'"),
            Category::Disk
        );
        assert_eq!(
            category_of("blk_update_request: I/O error, dev sda, sector 12345"),
            Category::Disk
        );
    }

    #[test]
    fn unmatched_is_other() {
        let a = analyze_msg("order 42 could not be shipped to the requested country");
        assert_eq!(a.category, Category::Other);
        assert_eq!(a.severity, Severity::High);
    }

    #[test]
    fn error_kind_attribute_is_used() {
        let mut e = event("error", Some("api"), "request failed");
        e.attributes = json!({"error": {"kind": "java.lang.OutOfMemoryError",
                                        "message": "Java heap space"}})
        .into();
        let a = analyze(&e, "request failed");
        assert_eq!(a.category, Category::Resource);
        assert_eq!(a.severity, Severity::Critical);
        assert!(
            a.summary
                .contains("Error kind: java.lang.OutOfMemoryError."),
            "{}",
            a.summary
        );
    }

    #[test]
    fn severity_base_comes_from_status() {
        let cases = [
            ("emergency", Severity::Critical),
            ("alert", Severity::Critical),
            ("critical", Severity::Critical),
            ("fatal", Severity::Critical),
            ("error", Severity::High),
            ("err", Severity::High),
            ("warn", Severity::Medium),
            ("warning", Severity::Medium),
            ("info", Severity::Low),
            ("notice", Severity::Low),
            ("debug", Severity::Low),
            ("ok", Severity::Low),
            ("", Severity::Medium),
            ("something-else", Severity::Medium),
            ("ERROR", Severity::High),
        ];
        for (status, expected) in cases {
            let a = analyze(&event(status, None, "order 42 was rejected"), "");
            assert_eq!(a.severity, expected, "status {status:?}");
        }
    }

    #[test]
    fn keywords_raise_severity_but_never_lower_it() {
        let raise = |status: &str, msg: &str| analyze(&event(status, None, msg), msg).severity;
        assert_eq!(
            raise("info", "possible data loss in shard 3"),
            Severity::Critical
        );
        assert_eq!(
            raise("warn", "checksum mismatch: block is corrupted"),
            Severity::Critical
        );
        assert_eq!(
            raise("error", "FATAL: terminating connection"),
            Severity::Critical
        );
        assert_eq!(
            raise("info", "process exited: segfault at 0"),
            Severity::Critical
        );
        // A benign message does not lower a critical status.
        assert_eq!(
            raise("critical", "order 42 was rejected"),
            Severity::Critical
        );
        // "non-fatal" is not fatal.
        assert_eq!(
            raise("warn", "non-fatal: retrying order 42"),
            Severity::Medium
        );
        // Resource problems are at least High, even from an info log.
        assert_eq!(raise("info", "too many open files"), Severity::High);
    }

    #[test]
    fn title_has_service_prefix_and_template() {
        let e = event(
            "error",
            Some("checkout"),
            "Connection to 10.0.3.7 timed out after 5s",
        );
        let a = analyze(&e, "Connection to <ip> timed out after <duration>");
        assert_eq!(
            a.title,
            "checkout: Connection to <ip> timed out after <duration>"
        );
        let e = event("error", None, "Connection to 10.0.3.7 timed out after 5s");
        let a = analyze(&e, "Connection to <ip> timed out after <duration>");
        assert_eq!(a.title, "Connection to <ip> timed out after <duration>");
    }

    #[test]
    fn title_is_one_clean_line() {
        let msg = "first\tpart\r\n\u{1b}[31mred\u{1b}[0m\u{7} and\u{200B}  more\u{0}";
        let a = analyze(&event("error", Some("svc\nname"), msg), msg);
        assert_eq!(a.title, "svc name: first part red and more");
        assert!(!a.title.chars().any(char::is_control));
        assert!(!a.summary.chars().any(char::is_control));
    }

    #[test]
    fn title_is_truncated_to_255_chars_on_char_boundaries() {
        let template = "é€😀".repeat(200);
        let a = analyze(&event("error", Some("svc"), &template), &template);
        assert_eq!(a.title.chars().count(), MAX_TITLE_CHARS);
        assert!(a.title.ends_with('…'));
        assert!(a.title.starts_with("svc: é€😀"));

        // Exactly 255 chars is left alone.
        let exact = "x".repeat(MAX_TITLE_CHARS - 5);
        let a = analyze(&event("error", Some("svc"), &exact), &exact);
        assert_eq!(a.title.chars().count(), MAX_TITLE_CHARS);
        assert!(!a.title.ends_with('…'));
    }

    #[test]
    fn title_is_never_empty() {
        let a = analyze(&event("error", None, "\u{1}\u{2}"), "   ");
        assert!(!a.title.trim().is_empty());
        let a = analyze(&event("error", None, "disk full"), "");
        assert_eq!(a.title, "disk full");
    }

    #[test]
    fn summary_says_what_where_and_what_to_check() {
        let e = event(
            "error",
            Some("checkout"),
            "Connection to 10.0.3.7 timed out after 5s",
        );
        let a = analyze(&e, "Connection to <ip> timed out after <duration>");
        assert!(a.summary.starts_with(
            "Network/timeout error in service checkout (env prod) on host web-1: Connection to <ip> timed out after <duration>. Check "
        ), "{}", a.summary);

        let huge = format!("{}\n{}", "word ".repeat(2000), "more ".repeat(2000));
        let a = analyze(&event("error", Some("svc"), &huge), &huge);
        assert!(a.summary.chars().count() <= MAX_SUMMARY_CHARS);
        assert!(!a.summary.contains('\n'));
    }

    #[test]
    fn analysis_is_deterministic() {
        let msg = "upstream request timeout";
        let e = event("error", Some("edge"), msg);
        assert_eq!(analyze(&e, msg), analyze(&e, msg));
        assert_eq!(analyze(&e, msg).category, Category::Dependency);
    }
}
