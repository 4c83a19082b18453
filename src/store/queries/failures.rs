//! Failure reports received (RFC 9991 / ARF `auth-failure`, and plain-text notices), as the
//! importer stores them and the HTTP API reads them back: one `failure_reports` row each.
//! A report is stored once per report message (its Message-ID); one without a Message-ID is
//! always stored.

use crate::dates::format_rfc3339;
use crate::store::model::{FailureFilter, Inserted, NewFailureReport, Page, StoreError};
use crate::store::sql::{bind, Row, Sql};
use serde_json::{json, Value};

/// The columns an item is read from, in this order; the header section (up to 64 KiB) is
/// read only for one report, after these.
const COLUMNS: &str = "id, received_at, reporter, report_message_id, format, feedback_type, \
    auth_failure, domain, source_ip, arrival, mail_from, rcpt_to, header_from, subject, \
    original_message_id, delivery_result, identity_alignment, dkim_domain, dkim_selector, \
    authentication_results, incidents";

/// Where `headers` follows [`COLUMNS`].
const HEADERS: usize = 21;

/// Stores a failure report once per report message.
pub fn insert_failure_report(
    db: &mut dyn Sql,
    r: &NewFailureReport,
) -> Result<Inserted, StoreError> {
    let inserted = db.first(
        "INSERT INTO failure_reports (received_at, reporter, report_message_id, format, \
         feedback_type, auth_failure, domain, source_ip, arrival, mail_from, rcpt_to, \
         header_from, subject, original_message_id, delivery_result, identity_alignment, \
         dkim_domain, dkim_selector, authentication_results, incidents, headers) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21) ON CONFLICT (report_message_id) DO NOTHING RETURNING id",
        &[
            r.received_at.into(),
            (&r.reporter).into(),
            r.report_message_id.as_ref().into(),
            (&r.format).into(),
            (&r.feedback_type).into(),
            r.auth_failure.as_ref().into(),
            r.domain.as_ref().into(),
            r.source_ip.as_ref().into(),
            r.arrival.into(),
            r.mail_from.as_ref().into(),
            r.rcpt_to.as_ref().into(),
            r.header_from.as_ref().into(),
            r.subject.as_ref().into(),
            r.original_message_id.as_ref().into(),
            r.delivery_result.as_ref().into(),
            r.identity_alignment.as_ref().into(),
            r.dkim_domain.as_ref().into(),
            r.dkim_selector.as_ref().into(),
            // A text column in both schemas.
            (&serde_json::to_string(&r.authentication_results).unwrap_or_default()).into(),
            i64::from(r.incidents).into(),
            (&r.headers).into(),
        ],
        |row| row.int(0),
    )?;
    if let Some(id) = inserted {
        return Ok(Inserted::Stored(id));
    }
    let id = db.first(
        "SELECT id FROM failure_reports WHERE report_message_id = ?1",
        &[r.report_message_id.as_ref().into()],
        |row| row.int(0),
    )?;
    Ok(Inserted::Duplicate(id.ok_or(StoreError::Vanished(
        "the failure report stored before",
    ))?))
}

/// A page of failure reports matching `filter`, the newest first (without headers).
pub fn failure_reports(
    db: &mut dyn Sql,
    filter: &FailureFilter,
    limit: usize,
) -> Result<Page, StoreError> {
    let (clause, args) = bind(filter.conditions());
    let sql = format!(
        "SELECT {COLUMNS} FROM failure_reports {clause} ORDER BY id DESC LIMIT {}",
        limit + 1
    );
    Ok(Page::of(db.rows(&sql, &args, item)?, limit))
}

/// One failure report with its header section.
pub fn failure_report(db: &mut dyn Sql, id: i64) -> Result<Option<Value>, StoreError> {
    let sql = format!("SELECT {COLUMNS}, headers FROM failure_reports WHERE id = ?1");
    db.first(&sql, &[id.into()], |r| {
        let mut v = item(r)?;
        v["headers"] = r.opt_text(HEADERS)?.into();
        Ok(v)
    })
}

/// The API's shape of a row read in [`COLUMNS`] order.
fn item(r: &dyn Row) -> Result<Value, StoreError> {
    let authentication_results = r
        .opt_text(19)?
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .unwrap_or(Value::Array(Vec::new()));
    Ok(json!({
        "id": r.opt_int(0)?,
        "received_at": r.opt_int(1)?.map(format_rfc3339),
        "reporter": r.opt_text(2)?,
        "report_message_id": r.opt_text(3)?,
        "format": r.opt_text(4)?,
        "feedback_type": r.opt_text(5)?,
        "auth_failure": r.opt_text(6)?,
        "domain": r.opt_text(7)?,
        "source_ip": r.opt_text(8)?,
        "arrival": r.opt_int(9)?.map(|s| format_rfc3339(s.saturating_mul(1000))),
        "mail_from": r.opt_text(10)?,
        "rcpt_to": r.opt_text(11)?,
        "header_from": r.opt_text(12)?,
        "subject": r.opt_text(13)?,
        "original_message_id": r.opt_text(14)?,
        "delivery_result": r.opt_text(15)?,
        "identity_alignment": r.opt_text(16)?,
        "dkim_domain": r.opt_text(17)?,
        "dkim_selector": r.opt_text(18)?,
        "authentication_results": authentication_results,
        "incidents": r.opt_int(20)?,
    }))
}

#[cfg(test)]
mod tests {
    use crate::store::model::{FailureFilter, FailureInserted, NewFailureReport};
    use crate::store::Store;

    fn report(mid: Option<&str>, domain: &str, ip: &str, headers: &str) -> NewFailureReport {
        NewFailureReport {
            received_at: 1_714_600_000_000,
            reporter: "fail-reports@receiver.example".into(),
            report_message_id: mid.map(str::to_string),
            format: "arf".into(),
            feedback_type: "auth-failure".into(),
            auth_failure: Some("dmarc".into()),
            domain: Some(domain.into()),
            source_ip: Some(ip.into()),
            arrival: Some(1_714_599_000),
            headers: headers.into(),
            authentication_results: vec!["mx.receiver.example; dmarc=fail".into()],
            incidents: 1,
            ..NewFailureReport::default()
        }
    }

    #[test]
    fn failure_reports_are_pruned_with_the_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let mut old = report(Some("<old@x>"), "example.com", "203.0.113.5", "");
        old.received_at = 1_000;
        store.insert_failure_report(&old).unwrap();
        store
            .insert_failure_report(&report(Some("<new@x>"), "example.com", "203.0.113.5", ""))
            .unwrap();
        store.prune(2_000).unwrap();
        let left = store
            .failure_reports(&FailureFilter::default(), 10)
            .unwrap();
        assert_eq!(left.items.len(), 1);
        assert_eq!(left.items[0]["report_message_id"], "<new@x>");
    }

    #[test]
    fn failure_reports_are_stored_once_listed_and_searched() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let a = report(
            Some("<r1@x>"),
            "example.com",
            "203.0.113.5",
            "Subject: Invoice 100%\r\nFrom: <redacted@example.com>",
        );
        let id = match store.insert_failure_report(&a).unwrap() {
            FailureInserted::Stored(id) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            store.insert_failure_report(&a).unwrap(),
            FailureInserted::Duplicate(id)
        );
        // Without a Message-ID: always stored.
        let b = report(None, "example.org", "198.51.100.1", "Subject: hello");
        store.insert_failure_report(&b).unwrap();
        store.insert_failure_report(&b).unwrap();
        let all = store
            .failure_reports(&FailureFilter::default(), 10)
            .unwrap();
        assert_eq!(all.items.len(), 3);
        let q = |f: FailureFilter| store.failure_reports(&f, 10).unwrap().items.len();
        assert_eq!(
            q(FailureFilter {
                domain: Some("EXAMPLE.com".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            q(FailureFilter {
                source_ip: Some("198.51.100.1".into()),
                ..Default::default()
            }),
            2
        );
        // The search is a substring, case-insensitive, with % and _ taken literally.
        assert_eq!(
            q(FailureFilter {
                q: Some("INVOICE 100%".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            q(FailureFilter {
                q: Some("100_".into()),
                ..Default::default()
            }),
            0
        );
        let one = store.failure_report(id).unwrap().unwrap();
        assert_eq!(
            one["headers"],
            "Subject: Invoice 100%\r\nFrom: <redacted@example.com>"
        );
        assert_eq!(
            one["authentication_results"][0],
            "mx.receiver.example; dmarc=fail"
        );
        assert_eq!(one["arrival"], "2024-05-01T21:30:00.000Z");
        assert!(all.items[0].get("headers").is_none());
        let page = store.failure_reports(&FailureFilter::default(), 2).unwrap();
        assert_eq!((page.items.len(), page.next.is_some()), (2, true));
    }
}
