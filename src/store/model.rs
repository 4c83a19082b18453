//! The vocabulary both back ends share: what callers ask the store ([`Filter`], [`GroupBy`],
//! [`ReportFilter`]), what it answers ([`Page`], [`Overview`], [`SentReport`], received
//! reports), the values queries bind ([`Bound`]) and the errors ([`StoreError`]). Plain data
//! and the small pure functions over it; no SQL runs here.

use serde_json::{json, Map, Value};

/// A store failure: the database file is unusable (configuration) or a query failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("verdict store {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("verdict store {path} has schema version {found}, newer than this build's {known}")]
    TooNew {
        path: String,
        found: usize,
        known: usize,
    },
    #[error("verdict store query failed: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("verdict store {url}: {source}")]
    PgOpen {
        url: String,
        source: postgres::Error,
    },
    #[error("verdict store query failed: {0}")]
    Pg(#[from] postgres::Error),
    /// A copy into a database that already holds the history being copied.
    #[error("{0}")]
    NotEmpty(String),
    /// The store's settings are unusable (a bad URL, an unreadable CA file).
    #[error("verdict store: {0}")]
    Config(String),
    /// A row the statement before found was gone (deleted by another connection meanwhile).
    #[error("verdict store: {0} vanished")]
    Vanished(&'static str),
}

impl StoreError {
    /// Whether the connection to the database was lost or never made (as opposed to a
    /// statement the database refused): the work can be tried again on a new connection.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::PgOpen { .. } => true,
            StoreError::Pg(e) => is_pg_connection_error(e),
            _ => false,
        }
    }

    /// Whether a read was stopped by its time limit: SQLite interrupted (see
    /// `Store::interrupt_handle`) or PostgreSQL's `statement_timeout` (SQLSTATE 57014).
    pub fn is_cancelled(&self) -> bool {
        match self {
            StoreError::Query(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted)
            }
            StoreError::Pg(e) => e
                .as_db_error()
                .is_some_and(|db| *db.code() == postgres::error::SqlState::QUERY_CANCELED),
            _ => false,
        }
    }
}

/// Whether `e` means the connection is gone (or never came) rather than a refused statement.
fn is_pg_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        // Class 08: connection exception; 57P0x: shutdown, crash, cannot connect now.
        let code = db.code().code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// A job that must run on one host of the fleet at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Sending the DMARC aggregate reports.
    Reports,
    /// Pruning past the retention period.
    Retention,
}

/// What one step of retention did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Verdicts deleted by the step.
    pub deleted: usize,
    /// Nothing older than the cutoff is left (or another host of the fleet prunes).
    pub done: bool,
}

/// A value a query binds: each back end turns it into its own parameter type (never
/// spliced into the SQL).
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Null,
    Int(i64),
    Text(String),
    /// Text in SQLite, `jsonb` in PostgreSQL.
    Json(Value),
}

impl From<i64> for Bound {
    fn from(n: i64) -> Bound {
        Bound::Int(n)
    }
}

impl From<&str> for Bound {
    fn from(t: &str) -> Bound {
        Bound::Text(t.to_string())
    }
}

impl From<&String> for Bound {
    fn from(t: &String) -> Bound {
        Bound::Text(t.clone())
    }
}

impl From<Value> for Bound {
    fn from(v: Value) -> Bound {
        Bound::Json(v)
    }
}

impl<T: Into<Bound>> From<Option<T>> for Bound {
    fn from(v: Option<T>) -> Bound {
        v.map_or(Bound::Null, Into::into)
    }
}

/// Filters of `GET /v1/verdicts` (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub queue_id: Option<String>,
    pub message_id: Option<String>,
    pub from_domain: Option<String>,
    pub client_ip: Option<String>,
    pub verdict: Option<String>,
    pub dmarc: Option<String>,
    /// The filter host that recorded the verdict.
    pub host: Option<String>,
    /// Only ids below this (the cursor: pages go from newest to oldest).
    pub before_id: Option<i64>,
}

impl Filter {
    /// The filter's conditions, each a SQL fragment ending where the placeholder goes, with
    /// the value to bind.
    pub fn conditions(&self) -> Vec<(&'static str, Bound)> {
        let mut out = Vec::new();
        let ints = [
            ("received_at >=", self.since),
            ("received_at <", self.until),
            ("id <", self.before_id),
        ];
        for (cond, value) in ints {
            if let Some(v) = value {
                out.push((cond, Bound::Int(v)));
            }
        }
        let texts = [
            ("queue_id =", &self.queue_id),
            ("message_id =", &self.message_id),
            ("from_domain =", &self.from_domain),
            ("client_ip =", &self.client_ip),
            ("verdict =", &self.verdict),
            ("dmarc =", &self.dmarc),
            ("host =", &self.host),
        ];
        for (cond, value) in texts {
            if let Some(v) = value {
                out.push((cond, Bound::Text(v.clone())));
            }
        }
        out
    }
}

/// What `GET /v1/stats` counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    FromDomain,
    Verdict,
    Dmarc,
    Host,
}

impl GroupBy {
    pub fn parse(text: &str) -> Option<GroupBy> {
        match text {
            "from_domain" => Some(GroupBy::FromDomain),
            "verdict" => Some(GroupBy::Verdict),
            "dmarc" => Some(GroupBy::Dmarc),
            "host" => Some(GroupBy::Host),
            _ => None,
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            GroupBy::FromDomain => "from_domain",
            GroupBy::Verdict => "verdict",
            GroupBy::Dmarc => "dmarc",
            GroupBy::Host => "host",
        }
    }
}

/// One page of verdicts (or reports), newest first; `next` is the cursor for the following
/// page.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<i64>,
}

impl Page {
    /// A page of at most `limit` from `items` (fetched with one more than `limit`, so that
    /// an extra item says another page follows; the cursor is the last item's id).
    pub fn of(mut items: Vec<Value>, limit: usize) -> Page {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().and_then(|i| i["id"].as_i64())
        } else {
            None
        };
        Page { items, next }
    }
}

/// `/v1/stats`' answer from `(group key, DMARC result, count)` rows: the groups, largest
/// first, each split by DMARC result.
pub fn stats_answer(
    rows: impl IntoIterator<Item = (Option<String>, Option<String>, i64)>,
) -> Value {
    let mut groups: Vec<(Option<String>, i64, Map<String, Value>)> = Vec::new();
    // Each key's place in `groups`: one lookup per row, so the answer is O(rows), not
    // O(groups x rows) (many from_domain groups made that quadratic).
    let mut index: std::collections::HashMap<Option<String>, usize> = Default::default();
    let mut total = 0;
    for (key, dmarc, count) in rows {
        total += count;
        let i = match index.get(&key) {
            Some(&i) => i,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, 0, Map::new()));
                groups.len() - 1
            }
        };
        groups[i].1 += count;
        groups[i].2.insert(
            dmarc.unwrap_or_else(|| "none_evaluated".into()),
            count.into(),
        );
    }
    groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(key, count, dmarc)| json!({"key": key, "count": count, "dmarc": dmarc}))
        .collect();
    json!({"total": total, "groups": groups})
}

/// An hour in Unix milliseconds (the overview's buckets).
pub const HOUR_MS: i64 = 3_600_000;

/// Messages received in one hour with one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// Start of the hour, Unix milliseconds.
    pub hour: i64,
    pub verdict: String,
    pub count: u64,
}

/// How many messages got each result of one method (`spf`, `dkim`, `dmarc`). A message
/// without the method's result (signing, or a check that skipped it) counts as `none`; for
/// DKIM a message counts once, as `pass` when any signature passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCounts {
    pub method: &'static str,
    /// `(result, messages)`, most first.
    pub results: Vec<(String, u64)>,
}

impl MethodCounts {
    pub fn total(&self) -> u64 {
        self.results.iter().map(|r| r.1).sum()
    }

    pub fn count(&self, result: &str) -> u64 {
        self.results
            .iter()
            .find(|r| r.0 == result)
            .map(|r| r.1)
            .unwrap_or(0)
    }
}

/// A From domain or client address with its DMARC failures and all its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub key: String,
    pub failed: u64,
    pub messages: u64,
}

/// The dashboard's summary of the whole hours `[since, until)`: messages per hour by verdict,
/// each method's results, and the From domains and client addresses failing DMARC most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub since: i64,
    pub until: i64,
    pub total: u64,
    /// Only the hours with messages, oldest first.
    pub hours: Vec<HourCount>,
    /// `spf`, `dkim`, `dmarc`, in that order.
    pub methods: Vec<MethodCounts>,
    pub failing_domains: Vec<Failing>,
    pub failing_ips: Vec<Failing>,
}

/// Where a report we send for one domain and period stands (exactly once per policy domain
/// and period: `sent` only after the next hop accepted it, retried a bounded number of
/// times before that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentReport {
    pub domain: String,
    pub period_begin: i64,
    pub period_end: i64,
    pub report_id: String,
    /// `pending` (not yet sent, or failed and to be retried), `sent`, `failed` (gave up),
    /// `skipped` (nothing to send to, or over every destination's size limit).
    pub state: String,
    pub attempts: u32,
    /// Unix ms before which a pending report is not retried.
    pub next_attempt: Option<i64>,
    /// The destinations it went (or will go) to.
    pub destinations: Vec<String>,
    pub messages: u64,
    pub bytes: Option<u64>,
    /// Why it failed or was skipped.
    pub detail: Option<String>,
}

/// An aggregate report another receiver sent us (RFC 9990), already checked by the
/// importer. Periods are Unix seconds, as reports give them (RFC 9990 §3.1.1);
/// `received_at` is Unix milliseconds like the verdicts'.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReport {
    /// Unix milliseconds.
    pub received_at: i64,
    pub org_name: String,
    /// The reporter's address (with `report_id`, what makes a report unique).
    pub email: String,
    pub report_id: String,
    /// The policy domain reported on (lower case).
    pub domain: String,
    /// The period, Unix seconds.
    pub date_begin: i64,
    pub date_end: i64,
    /// `policy_published` as a JSON object.
    pub policy: Value,
    /// Messages in all rows.
    pub messages: u64,
    /// Messages whose DKIM or SPF result was aligned and passing (DMARC pass).
    pub dmarc_pass: u64,
    /// The reporter's `error` elements.
    pub errors: Vec<String>,
    pub rows: Vec<NewRow>,
}

/// One `record` of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRow {
    pub source_ip: String,
    pub count: u64,
    /// `none`, `pass`, `quarantine`, `reject` (what the reporter applied).
    pub disposition: String,
    /// DMARC-aligned results: `pass` or `fail`.
    pub dkim: String,
    pub spf: String,
    pub header_from: String,
    pub envelope_from: Option<String>,
    pub envelope_to: Option<String>,
    /// `[{"type", "comment"}]`.
    pub reasons: Value,
    /// `{"dkim": [...], "spf": [...]}`.
    pub auth_results: Value,
}

/// What became of a report handed to the store: an aggregate report is stored once per
/// reporter address and report id, a failure report once per report Message-ID; a second
/// copy is a duplicate, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored under this id.
    Stored(i64),
    /// The same report came before; it is stored under this id.
    Duplicate(i64),
}

/// What was done with a failure report.
pub type FailureInserted = Inserted;

/// Filters of `GET /v1/reports` (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    pub domain: Option<String>,
    /// The reporter's `org_name` or `email` (exact, case-insensitive).
    pub reporter: Option<String>,
    /// Reports whose period ends after this (Unix seconds)...
    pub since: Option<i64>,
    /// ...and begins before this.
    pub until: Option<i64>,
    /// Only ids below this (the cursor: pages go from the newest import to the oldest).
    pub before_id: Option<i64>,
}

impl ReportFilter {
    /// As [`Filter::conditions`]; `?` marks where the value goes (once or more).
    pub fn conditions(&self) -> Vec<(&'static str, Bound)> {
        let mut out = Vec::new();
        if let Some(d) = &self.domain {
            out.push(("domain = ?", Bound::Text(d.clone())));
        }
        if let Some(who) = &self.reporter {
            out.push((
                "(lower(org_name) = lower(?) OR lower(email) = lower(?))",
                Bound::Text(who.clone()),
            ));
        }
        let ints = [
            ("date_end > ?", self.since),
            ("date_begin < ?", self.until),
            ("id < ?", self.before_id),
        ];
        for (cond, value) in ints {
            if let Some(v) = value {
                out.push((cond, Bound::Int(v)));
            }
        }
        out
    }
}

/// A failure report received (RFC 9991 / ARF `auth-failure`, or a plain-text notice) as the
/// store keeps it (text already bounded by the reader).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewFailureReport {
    /// Unix milliseconds.
    pub received_at: i64,
    /// The report message's From address and Message-ID.
    pub reporter: String,
    pub report_message_id: Option<String>,
    /// `arf` or `text`.
    pub format: String,
    pub feedback_type: String,
    /// ARF `Auth-Failure`: `dmarc`, `spf`, `signature`, `bodyhash`...
    pub auth_failure: Option<String>,
    /// The reported domain (ARF `Reported-Domain`, else the original From domain).
    pub domain: Option<String>,
    pub source_ip: Option<String>,
    /// When the original message arrived, Unix seconds.
    pub arrival: Option<i64>,
    pub mail_from: Option<String>,
    pub rcpt_to: Option<String>,
    pub header_from: Option<String>,
    pub subject: Option<String>,
    pub original_message_id: Option<String>,
    pub delivery_result: Option<String>,
    pub identity_alignment: Option<String>,
    pub dkim_domain: Option<String>,
    pub dkim_selector: Option<String>,
    pub authentication_results: Vec<String>,
    /// The original header section as the reporter gave it (redactions kept).
    pub headers: String,
    pub incidents: u32,
}

/// Which failure reports to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureFilter {
    pub domain: Option<String>,
    pub source_ip: Option<String>,
    /// Words looked for (case-insensitive) in the headers, the envelope sender, the From
    /// domain, the subject and the reporter.
    pub q: Option<String>,
    /// Received at or after / before (Unix milliseconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only ids below this (the cursor).
    pub before_id: Option<i64>,
}

impl FailureFilter {
    /// As [`ReportFilter::conditions`]. `q` is a substring, with `%` and `_` taken literally.
    pub fn conditions(&self) -> Vec<(&'static str, Bound)> {
        let mut out = Vec::new();
        if let Some(d) = &self.domain {
            out.push(("domain = ?", Bound::Text(d.to_ascii_lowercase())));
        }
        if let Some(ip) = &self.source_ip {
            out.push(("source_ip = ?", Bound::Text(ip.clone())));
        }
        if let Some(q) = &self.q {
            let escaped = q
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            out.push((
                "(lower(headers) LIKE ? ESCAPE '\\' OR lower(coalesce(mail_from, '')) LIKE ? \
                 ESCAPE '\\' OR lower(coalesce(header_from, '')) LIKE ? ESCAPE '\\' OR \
                 lower(coalesce(subject, '')) LIKE ? ESCAPE '\\' OR lower(reporter) LIKE ? \
                 ESCAPE '\\')",
                Bound::Text(format!("%{escaped}%")),
            ));
        }
        let ints = [
            ("received_at >= ?", self.since),
            ("received_at < ?", self.until),
            ("id < ?", self.before_id),
        ];
        for (cond, value) in ints {
            if let Some(v) = value {
                out.push((cond, Bound::Int(v)));
            }
        }
        out
    }
}

/// Failing source addresses the received-report summary lists.
pub const TOP_FAILING: usize = 10;

/// Database integers are signed; a count past `i64::MAX` is a hostile report, kept at the
/// edge.
pub fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The share of messages that passed, or `null` without messages.
pub fn rate(pass: i64, messages: i64) -> Value {
    if messages > 0 {
        (pass as f64 / messages as f64).into()
    } else {
        Value::Null
    }
}
