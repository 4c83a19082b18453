//! The store interface every caller uses: one [`Store`] is one connection to either back end,
//! the embedded SQLite file (one host) or a PostgreSQL database shared by a fleet of filter
//! hosts. Both answer the same calls with the same shapes (most through the one definition
//! in `queries/`); [`Location`] says which one the configuration names. [`Handle`] is the
//! connection the long-lived users hold, made again after the database went away.

use super::model::{
    FailureFilter, Filter, GroupBy, Inserted, Lease, NewFailureReport, NewReport, Overview, Page,
    Pruned, ReportFilter, SentReport, StoreError,
};
use super::postgres::Postgres;
use super::queries::readiness::{self, ReportedRow};
use super::queries::{failures, overview, received, rollup, sent, verdicts};
use super::sqlite::Sqlite;
use crate::check::{DmarcEvent, Record};
use crate::config::Location;
use serde_json::Value;
use std::path::Path;

/// Most verdicts one step of retention deletes (one transaction): a few tens of
/// milliseconds of the writer's time on SQLite.
pub const PRUNE_STEP: usize = 5_000;

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

/// Runs one of the shared queries on whichever back end this is.
macro_rules! shared {
    ($self:expr, $query:path $(, $arg:expr)*) => {
        each!($self, s => s.with_sql(|db| $query(db $(, $arg)*)))
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
    /// ended before it, step after step; returns how many verdicts.
    pub fn prune(&mut self, before_ms: i64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        loop {
            let step = self.prune_step(before_ms, PRUNE_STEP)?;
            deleted += step.deleted;
            if step.done {
                return Ok(deleted);
            }
        }
    }

    /// One step of [`Store::prune`]: at most `limit` verdicts, in one transaction (the
    /// writer runs its batches between steps).
    pub fn prune_step(&mut self, before_ms: i64, limit: usize) -> Result<Pruned, StoreError> {
        shared!(self, verdicts::prune_step, before_ms, limit)
    }

    /// A page of verdicts matching `filter`, newest first.
    pub fn list(&self, filter: &Filter, limit: usize) -> Result<Page, StoreError> {
        shared!(self, verdicts::list, filter, limit)
    }

    /// One verdict by id.
    pub fn get(&self, id: i64) -> Result<Option<Value>, StoreError> {
        shared!(self, verdicts::get, id)
    }

    /// Counts since `since` grouped by `group_by`, each group split by DMARC result.
    pub fn stats(
        &self,
        since: Option<i64>,
        group_by: GroupBy,
        from_domain: Option<&str>,
    ) -> Result<Value, StoreError> {
        shared!(self, verdicts::stats, since, group_by, from_domain)
    }

    /// The dashboard's summary of `[since, until)`.
    pub fn overview(&self, since: i64, until: i64, top: usize) -> Result<Overview, StoreError> {
        shared!(self, overview::overview, since, until, top)
    }

    /// Counts the stored verdicts by hour afresh (after rows were written around the
    /// writer: a benchmark's fill).
    pub fn recount_hours(&self) -> Result<(), StoreError> {
        shared!(self, rollup::rebuild)
    }

    /// The policy domains with DMARC events received in `[begin, end)`.
    pub fn dmarc_domains(&self, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
        shared!(self, verdicts::dmarc_domains, begin, end)
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
        shared!(
            self,
            verdicts::for_each_dmarc_event,
            domain,
            begin,
            end,
            each
        )
    }

    /// The report for `domain` and the period starting at `period_begin`, if one was begun.
    pub fn sent_report(
        &self,
        domain: &str,
        period_begin: i64,
    ) -> Result<Option<SentReport>, StoreError> {
        shared!(self, sent::sent_report, domain, period_begin)
    }

    /// Records where a report stands.
    pub fn save_sent_report(&mut self, report: &SentReport, now: i64) -> Result<(), StoreError> {
        shared!(self, sent::save_sent_report, report, now)
    }

    /// Reports sent or begun in `[begin, end)`, newest first.
    pub fn sent_reports(&self, begin: i64, end: i64) -> Result<Vec<SentReport>, StoreError> {
        shared!(self, sent::sent_reports, begin, end)
    }

    /// Stores a received report once per reporter and report id.
    pub fn insert_received_report(&mut self, r: &NewReport) -> Result<Inserted, StoreError> {
        shared!(self, received::insert_received_report, r)
    }

    /// A page of received reports matching `filter`, the newest import first.
    pub fn received_reports(
        &self,
        filter: &ReportFilter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        shared!(self, received::received_reports, filter, limit)
    }

    /// One received report by id, with its rows.
    pub fn received_report(&self, id: i64) -> Result<Option<Value>, StoreError> {
        shared!(self, received::received_report, id)
    }

    /// What received reports say about `domain` (all when `None`) since `since` (seconds).
    pub fn received_summary(&self, domain: Option<&str>, since: i64) -> Result<Value, StoreError> {
        shared!(self, received::received_summary, domain, since)
    }

    /// Calls `each` with every row of the received reports about `domain` whose period
    /// overlaps `[since, until)` (Unix seconds), but those `skip_reporter` sent.
    pub fn for_each_reported_row(
        &self,
        domain: &str,
        since: i64,
        until: i64,
        skip_reporter: Option<&str>,
        each: impl FnMut(ReportedRow),
    ) -> Result<(), StoreError> {
        shared!(
            self,
            readiness::for_each_reported_row,
            domain,
            since,
            until,
            skip_reporter,
            each
        )
    }

    /// Stores a failure report once per report message.
    pub fn insert_failure_report(&mut self, r: &NewFailureReport) -> Result<Inserted, StoreError> {
        shared!(self, failures::insert_failure_report, r)
    }

    /// A page of failure reports matching `filter`, the newest first (without headers).
    pub fn failure_reports(
        &self,
        filter: &FailureFilter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        shared!(self, failures::failure_reports, filter, limit)
    }

    /// One failure report with its header section.
    pub fn failure_report(&self, id: i64) -> Result<Option<Value>, StoreError> {
        shared!(self, failures::failure_report, id)
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
