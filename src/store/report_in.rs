//! Aggregate reports other receivers sent us (RFC 9990), as the importer stores them and the
//! HTTP API reads them back: one `reports_received` row per report, one `report_rows` row
//! per record. A report is stored once per reporter address and report id (the table's
//! UNIQUE constraint): a second copy is a duplicate, not an error.
//!
//! Periods are Unix seconds, as the reports give them (RFC 9990 §3.1.1); `received_at` is
//! Unix milliseconds like the verdicts'.

use super::sqlite::Sqlite;
use super::{Page, StoreError};
use crate::dates::format_rfc3339;
use rusqlite::{params, params_from_iter, OptionalExtension};
use serde_json::{json, Map, Value};

/// A report to store, already checked by the importer.
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

/// What became of a report handed to [`Sqlite::insert_received_report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored under this id.
    Stored(i64),
    /// The same reporter sent this report id before; it is stored under this id.
    Duplicate(i64),
}

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

/// Failing source addresses the summary lists.
pub(super) const TOP_FAILING: usize = 10;

const REPORT_COLUMNS: &str = "id, received_at, org_name, email, report_id, domain, date_begin, \
                              date_end, policy, messages, dmarc_pass, errors";

impl Sqlite {
    /// Stores a report and its rows in one transaction, unless the same reporter's report
    /// with the same id is already there.
    pub fn insert_received_report(&mut self, r: &NewReport) -> Result<Inserted, StoreError> {
        let tx = self.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO reports_received (received_at, org_name, email, report_id, domain, \
             date_begin, date_end, policy, messages, dmarc_pass, errors) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (email, report_id) DO NOTHING",
            params![
                r.received_at,
                r.org_name,
                r.email,
                r.report_id,
                r.domain,
                r.date_begin,
                r.date_end,
                r.policy.to_string(),
                clamp(r.messages),
                clamp(r.dmarc_pass),
                serde_json::to_string(&r.errors).unwrap_or_else(|_| "[]".into()),
            ],
        )?;
        if inserted == 0 {
            let id = tx.query_row(
                "SELECT id FROM reports_received WHERE email = ?1 AND report_id = ?2",
                params![r.email, r.report_id],
                |row| row.get(0),
            )?;
            return Ok(Inserted::Duplicate(id));
        }
        let id = tx.last_insert_rowid();
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO report_rows (report, source_ip, count, disposition, dkim, spf, \
                 header_from, envelope_from, envelope_to, reasons, auth_results) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for row in &r.rows {
                stmt.execute(params![
                    id,
                    row.source_ip,
                    clamp(row.count),
                    row.disposition,
                    row.dkim,
                    row.spf,
                    row.header_from,
                    row.envelope_from,
                    row.envelope_to,
                    row.reasons.to_string(),
                    row.auth_results.to_string(),
                ])?;
            }
        }
        tx.commit()?;
        Ok(Inserted::Stored(id))
    }

    /// A page of received reports matching `filter`, the newest import first (without their
    /// rows).
    pub fn received_reports(
        &self,
        filter: &ReportFilter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (clause, args) = report_where(filter);
        let sql = format!(
            "SELECT {REPORT_COLUMNS}, (SELECT COUNT(*) FROM report_rows WHERE report = id) \
             FROM reports_received {clause} ORDER BY id DESC LIMIT {}",
            limit + 1
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let items = stmt
            .query_map(params_from_iter(args.iter()), |r| {
                let mut v = report_item(r)?;
                v["row_count"] = r.get::<_, i64>(12)?.into();
                Ok(v)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::of(items, limit))
    }

    /// One received report by id, with its rows (largest count first).
    pub fn received_report(&self, id: i64) -> Result<Option<Value>, StoreError> {
        let sql = format!("SELECT {REPORT_COLUMNS} FROM reports_received WHERE id = ?1");
        let Some(mut report) = self.conn.query_row(&sql, [id], report_item).optional()? else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT source_ip, count, disposition, dkim, spf, header_from, envelope_from, \
             envelope_to, reasons, auth_results FROM report_rows WHERE report = ?1 \
             ORDER BY count DESC, rowid",
        )?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(json!({
                    "source_ip": r.get::<_, String>(0)?,
                    "count": r.get::<_, i64>(1)?,
                    "disposition": r.get::<_, String>(2)?,
                    "dkim": r.get::<_, String>(3)?,
                    "spf": r.get::<_, String>(4)?,
                    "header_from": r.get::<_, String>(5)?,
                    "envelope_from": r.get::<_, Option<String>>(6)?,
                    "envelope_to": r.get::<_, Option<String>>(7)?,
                    "reasons": parse_json(&r.get::<_, String>(8)?, Value::Array(Vec::new())),
                    "auth_results": parse_json(&r.get::<_, String>(9)?, Value::Object(Map::new())),
                }))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        report["rows"] = Value::Array(rows);
        Ok(Some(report))
    }

    /// What received reports say about `domain` (all domains when `None`) for periods ending
    /// after `since` (Unix seconds): messages, the DMARC pass rate, the source addresses
    /// failing most, and the same per reporter.
    pub fn received_summary(&self, domain: Option<&str>, since: i64) -> Result<Value, StoreError> {
        let filter = ReportFilter {
            domain: domain.map(str::to_string),
            since: Some(since),
            ..ReportFilter::default()
        };
        let (clause, args) = report_where(&filter);
        let (reports, messages, pass): (i64, i64, i64) = self.conn.query_row(
            &format!(
                "SELECT COUNT(*), COALESCE(SUM(messages), 0), COALESCE(SUM(dmarc_pass), 0) \
                 FROM reports_received {clause}"
            ),
            params_from_iter(args.iter()),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        // A row fails DMARC when neither aligned result passed (RFC 7489 §6.6.2).
        let mut stmt = self.conn.prepare(&format!(
            "SELECT source_ip, SUM(count) AS failing FROM report_rows \
             WHERE dkim <> 'pass' AND spf <> 'pass' \
             AND report IN (SELECT id FROM reports_received {clause}) \
             GROUP BY source_ip ORDER BY failing DESC, source_ip LIMIT {TOP_FAILING}"
        ))?;
        let failing = stmt
            .query_map(params_from_iter(args.iter()), |r| {
                Ok(json!({"source_ip": r.get::<_, String>(0)?, "messages": r.get::<_, i64>(1)?}))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT org_name, email, COUNT(*), SUM(messages), SUM(dmarc_pass) \
             FROM reports_received {clause} GROUP BY org_name, email \
             ORDER BY SUM(messages) DESC, org_name, email"
        ))?;
        let reporters = stmt
            .query_map(params_from_iter(args.iter()), |r| {
                let (messages, pass) = (r.get::<_, i64>(3)?, r.get::<_, i64>(4)?);
                Ok(json!({
                    "org_name": r.get::<_, String>(0)?,
                    "email": r.get::<_, String>(1)?,
                    "reports": r.get::<_, i64>(2)?,
                    "messages": messages,
                    "dmarc_pass": pass,
                    "pass_rate": rate(pass, messages),
                }))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({
            "domain": domain,
            "since": format_rfc3339(since.saturating_mul(1000)),
            "reports": reports,
            "messages": messages,
            "dmarc_pass": pass,
            "pass_rate": rate(pass, messages),
            "top_failing_sources": failing,
            "reporters": reporters,
        }))
    }
}

/// SQLite integers are signed; a count past `i64::MAX` is a hostile report, kept at the edge.
pub(super) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The share of messages that passed, or `null` without messages.
pub(super) fn rate(pass: i64, messages: i64) -> Value {
    if messages > 0 {
        (pass as f64 / messages as f64).into()
    } else {
        Value::Null
    }
}

fn parse_json(text: &str, fallback: Value) -> Value {
    serde_json::from_str(text).unwrap_or(fallback)
}

/// A report as the API returns it (periods and import time in RFC 3339).
fn report_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let secs = |i| {
        r.get::<_, i64>(i)
            .map(|s| format_rfc3339(s.saturating_mul(1000)))
    };
    Ok(json!({
        "id": r.get::<_, i64>(0)?,
        "received_at": format_rfc3339(r.get::<_, i64>(1)?),
        "org_name": r.get::<_, String>(2)?,
        "email": r.get::<_, String>(3)?,
        "report_id": r.get::<_, String>(4)?,
        "domain": r.get::<_, String>(5)?,
        "period": {"begin": secs(6)?, "end": secs(7)?},
        "policy": parse_json(&r.get::<_, String>(8)?, Value::Object(Map::new())),
        "messages": r.get::<_, i64>(9)?,
        "dmarc_pass": r.get::<_, i64>(10)?,
        "pass_rate": rate(r.get(10)?, r.get(9)?),
        "errors": parse_json(&r.get::<_, String>(11)?, Value::Array(Vec::new())),
    }))
}

/// The WHERE clause for a report filter, with its values to bind.
fn report_where(f: &ReportFilter) -> (String, Vec<rusqlite::types::Value>) {
    super::sqlite::bind(f.conditions())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(email: &str, id: &str, domain: &str, begin: i64) -> NewReport {
        let row = |ip: &str, count, dkim: &str, spf: &str| NewRow {
            source_ip: ip.into(),
            count,
            disposition: "none".into(),
            dkim: dkim.into(),
            spf: spf.into(),
            header_from: domain.into(),
            envelope_from: Some(domain.into()),
            envelope_to: None,
            reasons: json!([]),
            auth_results: json!({"dkim": [], "spf": []}),
        };
        NewReport {
            received_at: 1_700_000_000_000,
            org_name: "Reporter".into(),
            email: email.into(),
            report_id: id.into(),
            domain: domain.into(),
            date_begin: begin,
            date_end: begin + 86_400,
            policy: json!({"domain": domain, "p": "none"}),
            messages: 12,
            dmarc_pass: 5,
            errors: vec![],
            rows: vec![
                row("192.0.2.1", 5, "pass", "fail"),
                row("198.51.100.7", 4, "fail", "fail"),
                row("203.0.113.9", 3, "fail", "fail"),
            ],
        }
    }

    fn store() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(&dir.path().join("s.sqlite")).unwrap();
        (dir, store)
    }

    #[test]
    fn same_reporter_and_report_id_is_stored_once() {
        let (_dir, mut s) = store();
        let a = s
            .insert_received_report(&report("r@x.example", "1", "example.com", 0))
            .unwrap();
        let Inserted::Stored(id) = a else {
            panic!("{a:?}")
        };
        let again = s
            .insert_received_report(&report("r@x.example", "1", "example.com", 0))
            .unwrap();
        assert_eq!(again, Inserted::Duplicate(id));
        // Another reporter may use the same id.
        let other = s
            .insert_received_report(&report("r@y.example", "1", "example.com", 0))
            .unwrap();
        assert!(matches!(other, Inserted::Stored(n) if n != id));
        let one = s.received_report(id).unwrap().unwrap();
        assert_eq!(one["rows"].as_array().unwrap().len(), 3);
        assert_eq!(one["rows"][0]["source_ip"], "192.0.2.1");
        assert_eq!(one["period"]["end"], "1970-01-02T00:00:00.000Z");
    }

    #[test]
    fn list_filters_page_and_summary() {
        let (_dir, mut s) = store();
        for i in 0..5 {
            let domain = if i % 2 == 0 {
                "example.com"
            } else {
                "example.org"
            };
            s.insert_received_report(&report("r@x.example", &i.to_string(), domain, i * 86_400))
                .unwrap();
        }
        let all = s.received_reports(&ReportFilter::default(), 2).unwrap();
        assert_eq!(all.items.len(), 2);
        assert_eq!(all.items[0]["report_id"], "4");
        assert_eq!(all.items[0]["row_count"], 3);
        let rest = ReportFilter {
            before_id: all.next,
            ..ReportFilter::default()
        };
        assert_eq!(s.received_reports(&rest, 10).unwrap().items.len(), 3);
        let com = ReportFilter {
            domain: Some("example.com".into()),
            reporter: Some("REPORTER".into()),
            since: Some(86_400),
            until: Some(4 * 86_400),
            ..ReportFilter::default()
        };
        let page = s.received_reports(&com, 10).unwrap();
        let ids: Vec<_> = page.items.iter().map(|i| i["report_id"].clone()).collect();
        assert_eq!(ids, vec![json!("2")]);
        let sum = s.received_summary(Some("example.com"), 0).unwrap();
        assert_eq!(
            (sum["reports"].as_i64(), sum["messages"].as_i64()),
            (Some(3), Some(36))
        );
        assert_eq!(sum["pass_rate"].as_f64(), Some(15.0 / 36.0));
        assert_eq!(sum["top_failing_sources"][0]["source_ip"], "198.51.100.7");
        assert_eq!(sum["top_failing_sources"][0]["messages"], 12);
        assert_eq!(sum["top_failing_sources"].as_array().unwrap().len(), 2);
        assert_eq!(sum["reporters"][0]["reports"], 3);
        let none = s.received_summary(Some("nothing.example"), 0).unwrap();
        assert_eq!(none["pass_rate"], Value::Null);
    }

    #[test]
    fn received_reports_are_pruned_with_their_rows() {
        let (_dir, mut s) = store();
        s.insert_received_report(&report("r@x.example", "old", "example.com", 0))
            .unwrap();
        s.insert_received_report(&report("r@x.example", "new", "example.com", 10 * 86_400))
            .unwrap();
        s.prune(5 * 86_400 * 1000).unwrap();
        let left = s.received_reports(&ReportFilter::default(), 10).unwrap();
        assert_eq!(left.items.len(), 1);
        let rows: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM report_rows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
    }
}
