//! Failure reports received (RFC 9991 / ARF `auth-failure`, and plain-text notices), both
//! back ends in one file: the table's columns, the filter and the row shape are defined once;
//! only placeholders (`?N` / `$N`), row access and `RETURNING` differ, each in one place.
//!
//! A report is stored once per report message (its Message-ID); one without a Message-ID is
//! always stored.

use super::{Page, Store, StoreError};
use serde_json::{json, Value};

/// A failure report as the store keeps it (text already bounded by the reader).
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

/// The columns, in the order every SELECT reads them.
const COLUMNS: &str = "id, received_at, reporter, report_message_id, format, feedback_type, \
    auth_failure, domain, source_ip, arrival, mail_from, rcpt_to, header_from, subject, \
    original_message_id, delivery_result, identity_alignment, dkim_domain, dkim_selector, \
    authentication_results, incidents, headers";

/// The index of the last of [`COLUMNS`].
const LAST_COLUMN: usize = 21;

const INSERT: &str = "INSERT INTO failure_reports (received_at, reporter, report_message_id, \
    format, feedback_type, auth_failure, domain, source_ip, arrival, mail_from, rcpt_to, \
    header_from, subject, original_message_id, delivery_result, identity_alignment, \
    dkim_domain, dkim_selector, authentication_results, incidents, headers) VALUES \
    (#1, #2, #3, #4, #5, #6, #7, #8, #9, #10, #11, #12, #13, #14, #15, #16, #17, #18, #19, \
    #20, #21) ON CONFLICT (report_message_id) DO NOTHING";

/// A value to bind, for either back end.
#[derive(Debug, Clone)]
enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

/// What was done with a failure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureInserted {
    Stored(i64),
    /// Already stored (same report Message-ID) under this id.
    Duplicate(i64),
}

impl NewFailureReport {
    fn args(&self) -> Vec<Arg> {
        let t = |s: &Option<String>| Arg::Text(s.clone());
        vec![
            Arg::Int(Some(self.received_at)),
            Arg::Text(Some(self.reporter.clone())),
            t(&self.report_message_id),
            Arg::Text(Some(self.format.clone())),
            Arg::Text(Some(self.feedback_type.clone())),
            t(&self.auth_failure),
            t(&self.domain),
            t(&self.source_ip),
            Arg::Int(self.arrival),
            t(&self.mail_from),
            t(&self.rcpt_to),
            t(&self.header_from),
            t(&self.subject),
            t(&self.original_message_id),
            t(&self.delivery_result),
            t(&self.identity_alignment),
            t(&self.dkim_domain),
            t(&self.dkim_selector),
            Arg::Text(Some(
                serde_json::to_string(&self.authentication_results).unwrap_or_default(),
            )),
            Arg::Int(Some(i64::from(self.incidents))),
            Arg::Text(Some(self.headers.clone())),
        ]
    }
}

impl FailureFilter {
    /// The WHERE clause with `#N` placeholders, and the values.
    fn clause(&self) -> (String, Vec<Arg>) {
        let mut conds = Vec::new();
        let mut args = Vec::new();
        let mut push = |cond: &str, arg: Arg| {
            args.push(arg);
            conds.push(cond.replace('#', &format!("#{}", args.len())));
        };
        if let Some(d) = &self.domain {
            push("domain = #", Arg::Text(Some(d.to_ascii_lowercase())));
        }
        if let Some(ip) = &self.source_ip {
            push("source_ip = #", Arg::Text(Some(ip.clone())));
        }
        if let Some(q) = &self.q {
            let escaped = q
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            push(
                "(lower(headers) LIKE # ESCAPE '\\' OR lower(coalesce(mail_from, '')) LIKE # \
                 ESCAPE '\\' OR lower(coalesce(header_from, '')) LIKE # ESCAPE '\\' OR \
                 lower(coalesce(subject, '')) LIKE # ESCAPE '\\' OR lower(reporter) LIKE # \
                 ESCAPE '\\')",
                Arg::Text(Some(format!("%{escaped}%"))),
            );
        }
        if let Some(v) = self.since {
            push("received_at >= #", Arg::Int(Some(v)));
        }
        if let Some(v) = self.until {
            push("received_at < #", Arg::Int(Some(v)));
        }
        if let Some(v) = self.before_id {
            push("id < #", Arg::Int(Some(v)));
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        (clause, args)
    }
}

/// One row as read by either back end, in [`COLUMNS`] order.
struct Row {
    ints: [Option<i64>; 4],
    texts: Vec<Option<String>>,
}

impl Row {
    /// The API's shape. `headers` only when asked for (one report).
    fn to_json(&self, with_headers: bool) -> Value {
        let [id, received_at, arrival, incidents] = self.ints;
        let t = |i: usize| self.texts[i].clone();
        let mut v = json!({
            "id": id,
            "received_at": received_at.map(crate::dates::format_rfc3339),
            "reporter": t(0),
            "report_message_id": t(1),
            "format": t(2),
            "feedback_type": t(3),
            "auth_failure": t(4),
            "domain": t(5),
            "source_ip": t(6),
            "arrival": arrival.map(|s| crate::dates::format_rfc3339(s.saturating_mul(1000))),
            "mail_from": t(7),
            "rcpt_to": t(8),
            "header_from": t(9),
            "subject": t(10),
            "original_message_id": t(11),
            "delivery_result": t(12),
            "identity_alignment": t(13),
            "dkim_domain": t(14),
            "dkim_selector": t(15),
            "authentication_results": t(16)
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .unwrap_or(Value::Array(vec![])),
            "incidents": incidents,
        });
        if with_headers {
            v["headers"] = t(17).into();
        }
        v
    }
}

/// `#N` to SQLite's `?N` or PostgreSQL's `$N`.
fn dialect(sql: &str, mark: char) -> String {
    sql.replace('#', &mark.to_string())
}

impl Store {
    /// Stores a failure report once per report message.
    pub fn insert_failure_report(
        &mut self,
        r: &NewFailureReport,
    ) -> Result<FailureInserted, StoreError> {
        let args = r.args();
        let inserted = match self {
            Store::Sqlite(s) => {
                let n = s.conn.execute(
                    &dialect(INSERT, '?'),
                    rusqlite::params_from_iter(sqlite_args(&args)),
                )?;
                (n == 1).then(|| s.conn.last_insert_rowid())
            }
            Store::Postgres(s) => {
                let sql = format!("{} RETURNING id", dialect(INSERT, '$'));
                let pg = pg_args(&args);
                s.client()
                    .query_opt(&sql, &pg_refs(&pg))?
                    .map(|row| row.get::<_, i64>(0))
            }
        };
        if let Some(id) = inserted {
            return Ok(FailureInserted::Stored(id));
        }
        let id = match self {
            Store::Sqlite(s) => s.conn.query_row(
                "SELECT id FROM failure_reports WHERE report_message_id = ?1",
                [&r.report_message_id],
                |row| row.get::<_, i64>(0),
            )?,
            Store::Postgres(s) => s
                .client()
                .query_one(
                    "SELECT id FROM failure_reports WHERE report_message_id = $1",
                    &[&r.report_message_id],
                )?
                .get(0),
        };
        Ok(FailureInserted::Duplicate(id))
    }

    /// A page of failure reports matching `filter`, the newest first (without headers).
    pub fn failure_reports(
        &self,
        filter: &FailureFilter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (clause, args) = filter.clause();
        // A page leaves the header sections (up to 64 KiB each) in the table.
        let columns = COLUMNS.replace(", headers", ", '' AS headers");
        let sql = format!(
            "SELECT {columns} FROM failure_reports {clause} ORDER BY id DESC LIMIT {}",
            limit + 1
        );
        let rows = self.failure_rows(&sql, &args)?;
        let mut items: Vec<Value> = rows.iter().map(|r| r.to_json(false)).collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().and_then(|i| i["id"].as_i64())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// One failure report with its header section.
    pub fn failure_report(&self, id: i64) -> Result<Option<Value>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM failure_reports WHERE id = #1");
        let rows = self.failure_rows(&sql, &[Arg::Int(Some(id))])?;
        Ok(rows.first().map(|r| r.to_json(true)))
    }

    fn failure_rows(&self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        // Columns 0, 1, 9 and 20 are integers; the rest text.
        let int_at = [0, 1, 9, 20];
        match self {
            Store::Sqlite(s) => {
                let mut stmt = s.conn.prepare(&dialect(sql, '?'))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(sqlite_args(args)), |r| {
                    let mut ints = [None; 4];
                    let mut texts = Vec::new();
                    for i in 0..=LAST_COLUMN {
                        match int_at.iter().position(|&j| j == i) {
                            Some(k) => ints[k] = r.get::<_, Option<i64>>(i)?,
                            None => texts.push(r.get::<_, Option<String>>(i)?),
                        }
                    }
                    Ok(Row { ints, texts })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            }
            Store::Postgres(s) => {
                let pg = pg_args(args);
                let rows = s.client().query(&dialect(sql, '$'), &pg_refs(&pg))?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        let mut ints = [None; 4];
                        let mut texts = Vec::new();
                        for i in 0..=LAST_COLUMN {
                            match int_at.iter().position(|&j| j == i) {
                                Some(k) => ints[k] = r.get::<_, Option<i64>>(i),
                                None => texts.push(r.get::<_, Option<String>>(i)),
                            }
                        }
                        Row { ints, texts }
                    })
                    .collect())
            }
        }
    }
}

fn sqlite_args(args: &[Arg]) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value as Sql;
    args.iter()
        .map(|a| match a {
            Arg::Int(Some(n)) => Sql::Integer(*n),
            Arg::Text(Some(t)) => Sql::Text(t.clone()),
            Arg::Int(None) | Arg::Text(None) => Sql::Null,
        })
        .collect()
}

type PgArgs = Vec<Box<dyn postgres::types::ToSql + Sync>>;

fn pg_args(args: &[Arg]) -> PgArgs {
    args.iter()
        .map(|a| -> Box<dyn postgres::types::ToSql + Sync> {
            match a {
                Arg::Int(n) => Box::new(*n),
                // PostgreSQL text cannot hold NUL.
                Arg::Text(t) => Box::new(t.as_ref().map(|t| t.replace('\0', "\u{fffd}"))),
            }
        })
        .collect()
}

fn pg_refs(args: &PgArgs) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    args.iter().map(|a| a.as_ref()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
