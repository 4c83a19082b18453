//! The store interface every caller uses: one [`Store`] is one connection to either back end,
//! the embedded SQLite file (one host) or a PostgreSQL database shared by a fleet of filter
//! hosts. Both answer the same calls with the same shapes; [`Location`] says which one the
//! configuration names.

use super::overview::Overview;
use super::postgres::{PgTarget, Postgres};
use super::report_in::{Inserted, NewReport, ReportFilter};
use super::reports::SentReport;
use super::sqlite::Sqlite;
use super::Record;
use crate::report::event::DmarcEvent;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the verdict store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgTarget),
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::Sqlite(path)
    }
}

impl std::fmt::Display for Location {
    /// For logs and errors: the file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(target) => write!(f, "{}", target.redacted()),
        }
    }
}

/// A job that must run on one host of the fleet at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Sending the DMARC aggregate reports.
    Reports,
    /// Pruning past the retention period.
    Retention,
}

impl Lease {
    /// The PostgreSQL advisory lock key (arbitrary, fixed: "am" and a number).
    pub(super) fn key(self) -> i64 {
        match self {
            Lease::Reports => 0x616d_0001,
            Lease::Retention => 0x616d_0002,
        }
    }
}

/// One connection to the verdict store.
pub enum Store {
    Sqlite(Sqlite),
    Postgres(Box<Postgres>),
}

/// Calls the same method on whichever back end this is.
macro_rules! each {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(Sqlite::open(path)?))
    }

    /// Connects to the store at `location` and brings its schema up to date.
    pub fn connect(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(target) => Ok(Store::Postgres(Box::new(Postgres::connect(target)?))),
        }
    }

    /// The host name this connection records verdicts under (default: the machine's).
    pub fn with_host(mut self, host: &str) -> Store {
        each!(&mut self, s => s.host = host.to_string());
        self
    }

    pub fn host(&self) -> &str {
        each!(self, s => &s.host)
    }

    /// Whether the connection is gone for good (the database went away): open a new one.
    pub fn is_broken(&self) -> bool {
        match self {
            Store::Sqlite(_) => false,
            Store::Postgres(s) => s.is_closed(),
        }
    }

    /// Which back end, for logs and metrics: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// The schema version in the database.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        each!(self, s => s.schema_version())
    }

    /// Writes records in one transaction.
    pub fn insert_batch(&mut self, records: &[Record]) -> Result<(), StoreError> {
        each!(self, s => s.insert_batch(records))
    }

    /// As [`Store::insert_batch`], at most once per `token`: a batch tried again after its
    /// commit may have succeeded (the connection broke before the answer) is not stored
    /// twice. (SQLite commits locally; there is no such doubt.)
    pub fn insert_batch_once(&mut self, records: &[Record], token: i64) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_batch(records),
            Store::Postgres(s) => s.insert_batch_once(records, token),
        }
    }

    /// Deletes verdicts received before `before_ms` and the reports about periods that
    /// ended before it; returns how many verdicts.
    pub fn prune(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.prune(before_ms))
    }

    /// A page of verdicts matching `filter`, newest first.
    pub fn list(&self, filter: &Filter, limit: usize) -> Result<Page, StoreError> {
        each!(self, s => s.list(filter, limit))
    }

    /// One verdict by id.
    pub fn get(&self, id: i64) -> Result<Option<Value>, StoreError> {
        each!(self, s => s.get(id))
    }

    /// Counts since `since` grouped by `group_by`, each group split by DMARC result.
    pub fn stats(
        &self,
        since: Option<i64>,
        group_by: GroupBy,
        from_domain: Option<&str>,
    ) -> Result<Value, StoreError> {
        each!(self, s => s.stats(since, group_by, from_domain))
    }

    /// The dashboard's summary of `[since, until)`.
    pub fn overview(&self, since: i64, until: i64, top: usize) -> Result<Overview, StoreError> {
        each!(self, s => s.overview(since, until, top))
    }

    /// The policy domains with DMARC events received in `[begin, end)`.
    pub fn dmarc_domains(&self, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.dmarc_domains(begin, end))
    }

    /// Calls `each` with the source IP and event of every message for `domain` received in
    /// `[begin, end)`, oldest first; returns how many rows could not be read.
    pub fn for_each_dmarc_event(
        &self,
        domain: &str,
        begin: i64,
        end: i64,
        each: impl FnMut(&str, DmarcEvent),
    ) -> Result<usize, StoreError> {
        each!(self, s => s.for_each_dmarc_event(domain, begin, end, each))
    }

    /// The report for `domain` and the period starting at `period_begin`, if one was begun.
    pub fn sent_report(
        &self,
        domain: &str,
        period_begin: i64,
    ) -> Result<Option<SentReport>, StoreError> {
        each!(self, s => s.sent_report(domain, period_begin))
    }

    /// Records where a report stands.
    pub fn save_sent_report(&mut self, report: &SentReport, now: i64) -> Result<(), StoreError> {
        each!(self, s => s.save_sent_report(report, now))
    }

    /// Reports sent or begun in `[begin, end)`, newest first.
    pub fn sent_reports(&self, begin: i64, end: i64) -> Result<Vec<SentReport>, StoreError> {
        each!(self, s => s.sent_reports(begin, end))
    }

    /// Stores a received report once per reporter and report id.
    pub fn insert_received_report(&mut self, r: &NewReport) -> Result<Inserted, StoreError> {
        each!(self, s => s.insert_received_report(r))
    }

    /// A page of received reports matching `filter`, the newest import first.
    pub fn received_reports(
        &self,
        filter: &ReportFilter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        each!(self, s => s.received_reports(filter, limit))
    }

    /// One received report by id, with its rows.
    pub fn received_report(&self, id: i64) -> Result<Option<Value>, StoreError> {
        each!(self, s => s.received_report(id))
    }

    /// What received reports say about `domain` (all when `None`) since `since` (seconds).
    pub fn received_summary(&self, domain: Option<&str>, since: i64) -> Result<Value, StoreError> {
        each!(self, s => s.received_summary(domain, since))
    }

    /// Takes the fleet-wide lease for `job` if no other host holds it: a PostgreSQL
    /// advisory lock held by this connection until [`Store::release`] (or until the
    /// connection ends, so a crashed host cannot keep it). One SQLite file has one host:
    /// always granted.
    pub fn try_lease(&self, job: Lease) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(true),
            Store::Postgres(s) => s.try_lease(job),
        }
    }

    /// What stops this connection's running statement from another thread (SQLite); on
    /// PostgreSQL the server stops it ([`Store::limit_statements`]).
    pub fn interrupt_handle(&self) -> Option<rusqlite::InterruptHandle> {
        match self {
            Store::Sqlite(s) => Some(s.conn.get_interrupt_handle()),
            Store::Postgres(_) => None,
        }
    }

    /// Makes the database stop any statement of this connection that runs longer than
    /// `limit` (PostgreSQL `statement_timeout`); SQLite has no such setting (see
    /// [`Store::interrupt_handle`]).
    pub fn limit_statements(&mut self, limit: std::time::Duration) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(s) => s.limit_statements(limit),
        }
    }

    /// Gives the lease back.
    pub fn release(&self, job: Lease) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(s) => s.release(job),
        }
    }
}

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
}

impl StoreError {
    /// Whether the connection to the database was lost or never made (as opposed to a
    /// statement the database refused): the work can be tried again on a new connection.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::PgOpen { .. } => true,
            StoreError::Pg(e) => super::postgres::is_connection_error(e),
            _ => false,
        }
    }

    /// Whether a read was stopped by its time limit: SQLite interrupted (see
    /// [`Store::interrupt_handle`]) or PostgreSQL's `statement_timeout` (SQLSTATE 57014).
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

    pub(super) fn column(self) -> &'static str {
        match self {
            GroupBy::FromDomain => "from_domain",
            GroupBy::Verdict => "verdict",
            GroupBy::Dmarc => "dmarc",
            GroupBy::Host => "host",
        }
    }
}

/// One page of verdicts, newest first; `next` is the cursor for the following page.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<i64>,
}

/// A connection opened on first use and opened again after the database went away: what
/// the long-lived users of the store (the writer, the API, the jobs) hold.
pub struct Handle {
    location: Location,
    host: String,
    store: std::sync::Mutex<Option<Store>>,
}

impl Handle {
    /// A handle that connects when first used.
    pub fn new(location: Location, host: &str) -> Handle {
        Handle {
            location,
            host: host.to_string(),
            store: std::sync::Mutex::new(None),
        }
    }

    /// A handle over a connection already made.
    pub fn with_store(location: Location, store: Store) -> Handle {
        Handle {
            location,
            host: store.host().to_string(),
            store: std::sync::Mutex::new(Some(store)),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Runs `f` on the connection (blocking: call it on the blocking pool), connecting
    /// first when there is none; a connection that fails is let go, so that the next call
    /// connects again.
    pub fn with<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, E>,
        broken: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let mut guard = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(Store::is_broken) {
            *guard = None;
        }
        let store = match &mut *guard {
            Some(store) => store,
            empty => empty.insert(Store::connect(&self.location)?.with_host(&self.host)),
        };
        let result = f(store);
        if result.as_ref().err().is_some_and(broken) || store.is_broken() {
            *guard = None;
        }
        result
    }
}

/// A value a filter binds: each back end turns it into its own parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Bound {
    Int(i64),
    Text(String),
}

impl Filter {
    /// The filter's conditions, each a SQL fragment ending where the placeholder goes, with
    /// the value to bind (never spliced into the SQL).
    pub(super) fn conditions(&self) -> Vec<(&'static str, Bound)> {
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

impl ReportFilter {
    /// As [`Filter::conditions`]; `?` marks where the value goes (once or more).
    pub(super) fn conditions(&self) -> Vec<(&'static str, Bound)> {
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

/// `WHERE a AND b …` of the conditions, or nothing.
pub(super) fn where_of(conds: Vec<String>) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

impl Page {
    /// A page of at most `limit` from `items` (fetched with one more than `limit`, so that
    /// an extra item says another page follows; the cursor is the last item's id).
    pub(super) fn of(mut items: Vec<Value>, limit: usize) -> Page {
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
pub(super) fn stats_answer(
    rows: impl IntoIterator<Item = (Option<String>, Option<String>, i64)>,
) -> Value {
    use serde_json::{json, Map};
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
