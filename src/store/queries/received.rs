//! Aggregate reports other receivers sent us (RFC 9990), as the importer stores them and the
//! HTTP API reads them back: one `reports_received` row per report, one `report_rows` row
//! per record. A report is stored once per reporter address and report id (the table's
//! UNIQUE constraint): a second copy is a duplicate, not an error.
//!
//! Periods are Unix seconds, as the reports give them (RFC 9990 §3.1.1); `received_at` is
//! Unix milliseconds like the verdicts'.

use crate::dates::format_rfc3339;
use crate::store::model::{
    clamp, rate, Inserted, NewReport, Page, ReportFilter, StoreError, TOP_FAILING,
};
use crate::store::sql::{bind, Row, Sql};
use serde_json::{json, Map, Value};

const REPORT_COLUMNS: &str = "id, received_at, org_name, email, report_id, domain, date_begin, \
                              date_end, policy, messages, dmarc_pass, errors";

/// Stores a report and its rows in one transaction, unless the same reporter's report with
/// the same id is already there.
pub fn insert_received_report(db: &mut dyn Sql, r: &NewReport) -> Result<Inserted, StoreError> {
    let mut tx = db.transaction()?;
    let id = {
        let tx: &mut dyn Sql = &mut *tx;
        let inserted = tx.first(
            "INSERT INTO reports_received (received_at, org_name, email, report_id, domain, \
             date_begin, date_end, policy, messages, dmarc_pass, errors) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (email, report_id) DO NOTHING RETURNING id",
            &[
                r.received_at.into(),
                (&r.org_name).into(),
                (&r.email).into(),
                (&r.report_id).into(),
                (&r.domain).into(),
                r.date_begin.into(),
                r.date_end.into(),
                r.policy.clone().into(),
                clamp(r.messages).into(),
                clamp(r.dmarc_pass).into(),
                Value::from(r.errors.clone()).into(),
            ],
            |row| row.int(0),
        )?;
        let Some(id) = inserted else {
            let id = tx.first(
                "SELECT id FROM reports_received WHERE email = ?1 AND report_id = ?2",
                &[(&r.email).into(), (&r.report_id).into()],
                |row| row.int(0),
            )?;
            return Ok(Inserted::Duplicate(
                id.ok_or(StoreError::Vanished("the report stored before"))?,
            ));
        };
        for row in &r.rows {
            tx.execute(
                "INSERT INTO report_rows (report, source_ip, count, disposition, dkim, spf, \
                 header_from, envelope_from, envelope_to, reasons, auth_results) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                &[
                    id.into(),
                    (&row.source_ip).into(),
                    clamp(row.count).into(),
                    (&row.disposition).into(),
                    (&row.dkim).into(),
                    (&row.spf).into(),
                    (&row.header_from).into(),
                    row.envelope_from.as_deref().into(),
                    row.envelope_to.as_deref().into(),
                    row.reasons.clone().into(),
                    row.auth_results.clone().into(),
                ],
            )?;
        }
        id
    };
    tx.commit()?;
    Ok(Inserted::Stored(id))
}

/// A page of received reports matching `filter`, the newest import first (without their
/// rows).
pub fn received_reports(
    db: &mut dyn Sql,
    filter: &ReportFilter,
    limit: usize,
) -> Result<Page, StoreError> {
    let (clause, args) = bind(filter.conditions());
    let sql = format!(
        "SELECT {REPORT_COLUMNS}, (SELECT COUNT(*) FROM report_rows \
         WHERE report_rows.report = reports_received.id) \
         FROM reports_received {clause} ORDER BY id DESC LIMIT {}",
        limit + 1
    );
    let items = db.rows(&sql, &args, |r| {
        let mut v = report_item(r)?;
        v["row_count"] = r.int(12)?.into();
        Ok(v)
    })?;
    Ok(Page::of(items, limit))
}

/// One received report by id, with its rows (largest count first).
pub fn received_report(db: &mut dyn Sql, id: i64) -> Result<Option<Value>, StoreError> {
    let sql = format!("SELECT {REPORT_COLUMNS} FROM reports_received WHERE id = ?1");
    let Some(mut report) = db.first(&sql, &[id.into()], report_item)? else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT source_ip, count, disposition, dkim, spf, header_from, envelope_from, \
         envelope_to, reasons, auth_results FROM report_rows WHERE report = ?1 \
         ORDER BY count DESC, {}",
        db.dialect().report_row_order()
    );
    let rows = db.rows(&sql, &[id.into()], |r| {
        Ok(json!({
            "source_ip": r.text(0)?,
            "count": r.int(1)?,
            "disposition": r.text(2)?,
            "dkim": r.text(3)?,
            "spf": r.text(4)?,
            "header_from": r.text(5)?,
            "envelope_from": r.opt_text(6)?,
            "envelope_to": r.opt_text(7)?,
            "reasons": r.json(8)?.unwrap_or(Value::Array(Vec::new())),
            "auth_results": r.json(9)?.unwrap_or(Value::Object(Map::new())),
        }))
    })?;
    report["rows"] = Value::Array(rows);
    Ok(Some(report))
}

/// What received reports say about `domain` (all domains when `None`) for periods ending
/// after `since` (Unix seconds): messages, the DMARC pass rate, the source addresses
/// failing most, and the same per reporter.
pub fn received_summary(
    db: &mut dyn Sql,
    domain: Option<&str>,
    since: i64,
) -> Result<Value, StoreError> {
    let d = db.dialect();
    let filter = ReportFilter {
        domain: domain.map(str::to_string),
        since: Some(since),
        ..ReportFilter::default()
    };
    let (clause, args) = bind(filter.conditions());
    let (reports, messages, pass) = db
        .first(
            &format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM(messages), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(dmarc_pass), 0) AS BIGINT) FROM reports_received {clause}"
            ),
            &args,
            |r| Ok((r.int(0)?, r.int(1)?, r.int(2)?)),
        )?
        .unwrap_or_default();
    // A row fails DMARC when neither aligned result passed (RFC 7489 §6.6.2).
    let failing = db.rows(
        &format!(
            "SELECT source_ip, CAST(SUM(count) AS BIGINT) FROM report_rows \
             WHERE dkim <> 'pass' AND spf <> 'pass' \
             AND report IN (SELECT id FROM reports_received {clause}) \
             GROUP BY source_ip ORDER BY 2 DESC, {} LIMIT {TOP_FAILING}",
            d.bytewise("source_ip")
        ),
        &args,
        |r| Ok(json!({"source_ip": r.text(0)?, "messages": r.int(1)?})),
    )?;
    let reporters = db.rows(
        &format!(
            "SELECT org_name, email, COUNT(*), CAST(SUM(messages) AS BIGINT), \
             CAST(SUM(dmarc_pass) AS BIGINT) FROM reports_received {clause} \
             GROUP BY org_name, email ORDER BY 4 DESC, {}, {}",
            d.bytewise("org_name"),
            d.bytewise("email")
        ),
        &args,
        |r| {
            let (messages, pass) = (r.int(3)?, r.int(4)?);
            Ok(json!({
                "org_name": r.text(0)?,
                "email": r.text(1)?,
                "reports": r.int(2)?,
                "messages": messages,
                "dmarc_pass": pass,
                "pass_rate": rate(pass, messages),
            }))
        },
    )?;
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

/// A report as the API returns it (periods and import time in RFC 3339).
fn report_item(r: &dyn Row) -> Result<Value, StoreError> {
    let secs = |i| r.int(i).map(|s| format_rfc3339(s.saturating_mul(1000)));
    Ok(json!({
        "id": r.int(0)?,
        "received_at": format_rfc3339(r.int(1)?),
        "org_name": r.text(2)?,
        "email": r.text(3)?,
        "report_id": r.text(4)?,
        "domain": r.text(5)?,
        "period": {"begin": secs(6)?, "end": secs(7)?},
        "policy": r.json(8)?.unwrap_or(Value::Object(Map::new())),
        "messages": r.int(9)?,
        "dmarc_pass": r.int(10)?,
        "pass_rate": rate(r.int(10)?, r.int(9)?),
        "errors": r.json(11)?.unwrap_or(Value::Array(Vec::new())),
    }))
}

#[cfg(test)]
mod tests {
    use crate::store::model::{Inserted, NewReport, NewRow, ReportFilter};
    use crate::store::Store;
    use serde_json::{json, Value};

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

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
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
        let Store::Sqlite(s) = s else {
            unreachable!("a SQLite store")
        };
        let rows: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM report_rows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
    }
}
