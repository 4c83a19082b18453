//! `authmilter store copy`: a single host's SQLite history moved into the fleet's PostgreSQL
//! database — verdicts (with their DMARC events), reports sent, reports received (aggregate
//! and failure reports).
//!
//! One transaction: all of it or nothing. Verdicts keep the host they were recorded by;
//! rows from before hosts were recorded take the host given. The copy refuses (copying
//! nothing) when the database already holds verdicts of any of those hosts — copied before,
//! or written since by that host — so running it twice cannot double the history. Reports
//! the fleet already has (the same period's report sent, the same reporter's report id
//! received) are kept as they are and counted as skipped.

use super::model::clamp;
use super::model::StoreError;
use super::postgres::{json_clean, text, Pg, Postgres, VERDICT_COPY, VERDICT_COPY_TYPES};
use super::queries::rollup::{self, Counts};
use super::sqlite::Sqlite;
use crate::progress::Progress;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::ToSql;
use rusqlite::types::ValueRef;
use serde_json::Value;
use std::fmt;

/// What a copy moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub verdicts: u64,
    pub sent: u64,
    pub sent_skipped: u64,
    pub received: u64,
    pub received_skipped: u64,
    pub rows: u64,
    pub failures: u64,
    pub failures_skipped: u64,
}

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} verdicts, {} reports sent ({} already there), {} reports received with {} rows \
             ({} already there), {} failure reports ({} already there)",
            self.verdicts,
            self.sent,
            self.sent_skipped,
            self.received,
            self.rows,
            self.received_skipped,
            self.failures,
            self.failures_skipped
        )
    }
}

fn parse(text: Option<String>, fallback: Value) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .map(json_clean)
        .unwrap_or(fallback)
}

/// Copies the SQLite store at `from` (brought up to date first) into the PostgreSQL store at
/// `to`; rows from before hosts were recorded are recorded as `default_host`.
pub fn copy(
    from: &std::path::Path,
    to: &super::PgTarget,
    default_host: &str,
) -> Result<Copied, StoreError> {
    copy_showing(from, to, default_host, &Progress::hidden())
}

/// As [`copy`], counting the verdicts copied on `progress`.
pub fn copy_showing(
    from: &std::path::Path,
    to: &super::PgTarget,
    default_host: &str,
    progress: &Progress,
) -> Result<Copied, StoreError> {
    let source = Sqlite::open(from)?;
    let mut target = Postgres::connect(to)?;
    sqlite_to_postgres(&source, &mut target, default_host, progress)
}

/// Copies `source` into `target`; rows without a host are recorded as `default_host`.
fn sqlite_to_postgres(
    source: &Sqlite,
    target: &mut Postgres,
    default_host: &str,
    progress: &Progress,
) -> Result<Copied, StoreError> {
    let conn = &source.conn;
    let total: i64 = conn.query_row("SELECT count(*) FROM verdicts", [], |r| r.get(0))?;
    progress.set_total(total as u64);
    let mut hosts_stmt = conn.prepare("SELECT DISTINCT COALESCE(host, ?1) FROM verdicts")?;
    let hosts = hosts_stmt
        .query_map([default_host], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut copied = Copied::default();
    let mut client = target.client();
    let mut tx = client.transaction()?;
    let present: Vec<String> = tx
        .query(
            "SELECT DISTINCT host FROM verdicts WHERE host = ANY($1)",
            &[&hosts],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !present.is_empty() {
        return Err(StoreError::NotEmpty(format!(
            "the database already holds verdicts recorded by {} (copied before, or written \
             by that host since): nothing copied",
            present.join(", ")
        )));
    }

    // Each copied day gets its partition first (as the writer makes them ahead), or its
    // rows would land in the DEFAULT partition, and retention would delete them row by
    // row instead of dropping the day.
    let mut days_stmt = conn.prepare(
        "SELECT DISTINCT received_at - ((received_at % 86400000) + 86400000) % 86400000 \
         FROM verdicts",
    )?;
    let days = days_stmt
        .query_map([], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    for day in days {
        tx.execute("SELECT verdicts_day_partition($1)", &[&day])?;
    }

    // Verdicts, oldest first, streamed through one binary COPY.
    let mut stmt = conn.prepare(
        "SELECT received_at, COALESCE(host, ?1), transport, queue_id, message_id, client_ip, \
         helo, mail_from, rcpts, COALESCE(rcpt_count, json_array_length(rcpts)), from_domain, \
         verdict, dmarc, duration_us, document, dmarc_domain, dmarc_event, spf, spf_domain, \
         dkim, dkim_domain, arc, policy, disposition \
         FROM verdicts ORDER BY id",
    )?;
    let mut rows = stmt.query([default_host])?;
    let sink = tx.copy_in(VERDICT_COPY)?;
    let mut writer = BinaryCopyInWriter::new(sink, &VERDICT_COPY_TYPES);
    while let Some(r) = rows.next()? {
        let s = |i| -> rusqlite::Result<Option<String>> {
            Ok(r.get::<_, Option<String>>(i)?
                .map(|t| text(&t).into_owned()))
        };
        // The document as stored (packed, or JSON text from before): readable either way.
        let document: Vec<u8> = match r.get_ref(14)? {
            ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
            _ => b"{}".to_vec(),
        };
        let values: [&(dyn ToSql + Sync); 24] = [
            &r.get::<_, i64>(0)?,
            &s(1)?,
            &s(2)?,
            &s(3)?,
            &s(4)?,
            &s(5)?,
            &s(6)?,
            &s(7)?,
            &parse(r.get(8)?, Value::Array(Vec::new())),
            &r.get::<_, i64>(9)?,
            &s(10)?,
            &s(11)?,
            &s(12)?,
            &r.get::<_, i64>(13)?,
            &document,
            &s(15)?,
            &r.get::<_, Option<String>>(16)?
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .map(json_clean),
            &s(17)?,
            &s(18)?,
            &s(19)?,
            &s(20)?,
            &s(21)?,
            &s(22)?,
            &s(23)?,
        ];
        writer.write(&values)?;
        copied.verdicts += 1;
        progress.advance(1);
    }
    writer.finish()?;
    // Their hour counts, added to the fleet's.
    let counts = source.with_sql(Counts::stored)?;
    rollup::write(&mut Pg::new(&mut tx), &counts)?;

    // Reports sent: the fleet's row for the same domain and period wins.
    let mut stmt = conn.prepare(
        "SELECT domain, period_begin, period_end, report_id, state, attempts, next_attempt, \
         destinations, messages, bytes, detail, updated_at FROM reports_sent ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let n = tx.execute(
            "INSERT INTO reports_sent (domain, period_begin, period_end, report_id, state, \
             attempts, next_attempt, destinations, messages, bytes, detail, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (domain, period_begin) DO NOTHING",
            &[
                &text(&r.get::<_, String>(0)?).as_ref(),
                &r.get::<_, i64>(1)?,
                &r.get::<_, i64>(2)?,
                &text(&r.get::<_, String>(3)?).as_ref(),
                &r.get::<_, String>(4)?,
                &(r.get::<_, i64>(5)?.clamp(0, i32::MAX as i64) as i32),
                &r.get::<_, Option<i64>>(6)?,
                &parse(r.get(7)?, Value::Array(Vec::new())),
                &r.get::<_, i64>(8)?,
                &r.get::<_, Option<i64>>(9)?,
                &r.get::<_, Option<String>>(10)?
                    .map(|t| text(&t).into_owned()),
                &r.get::<_, i64>(11)?,
            ],
        )?;
        if n == 1 {
            copied.sent += 1;
        } else {
            copied.sent_skipped += 1;
        }
    }

    // Reports received, with their rows: the same reporter's report id is stored once.
    let mut stmt = conn.prepare(
        "SELECT id, received_at, org_name, email, report_id, domain, date_begin, date_end, \
         policy, messages, dmarc_pass, errors FROM reports_received ORDER BY id",
    )?;
    let mut row_stmt = conn.prepare(
        "SELECT source_ip, count, disposition, dkim, spf, header_from, envelope_from, \
         envelope_to, reasons, auth_results FROM report_rows WHERE report = ?1 ORDER BY rowid",
    )?;
    let insert_row = tx.prepare(
        "INSERT INTO report_rows (report, source_ip, count, disposition, dkim, spf, \
         header_from, envelope_from, envelope_to, reasons, auth_results) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )?;
    let mut reports = stmt.query([])?;
    while let Some(r) = reports.next()? {
        let t = |i| -> rusqlite::Result<String> { Ok(text(&r.get::<_, String>(i)?).into_owned()) };
        let inserted = tx.query_opt(
            "INSERT INTO reports_received (received_at, org_name, email, report_id, domain, \
             date_begin, date_end, policy, messages, dmarc_pass, errors) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (email, report_id) DO NOTHING RETURNING id",
            &[
                &r.get::<_, i64>(1)?,
                &t(2)?,
                &t(3)?,
                &t(4)?,
                &t(5)?,
                &r.get::<_, i64>(6)?,
                &r.get::<_, i64>(7)?,
                &parse(r.get(8)?, Value::Object(Default::default())),
                &clamp(r.get::<_, i64>(9)?.max(0) as u64),
                &clamp(r.get::<_, i64>(10)?.max(0) as u64),
                &parse(r.get(11)?, Value::Array(Vec::new())),
            ],
        )?;
        let Some(new) = inserted else {
            copied.received_skipped += 1;
            continue;
        };
        let new_id: i64 = new.get(0);
        copied.received += 1;
        let mut rows = row_stmt.query([r.get::<_, i64>(0)?])?;
        while let Some(row) = rows.next()? {
            let t = |i| -> rusqlite::Result<String> {
                Ok(text(&row.get::<_, String>(i)?).into_owned())
            };
            let o = |i| -> rusqlite::Result<Option<String>> {
                Ok(row
                    .get::<_, Option<String>>(i)?
                    .map(|v| text(&v).into_owned()))
            };
            tx.execute(
                &insert_row,
                &[
                    &new_id,
                    &t(0)?,
                    &row.get::<_, i64>(1)?,
                    &t(2)?,
                    &t(3)?,
                    &t(4)?,
                    &t(5)?,
                    &o(6)?,
                    &o(7)?,
                    &parse(row.get(8)?, Value::Array(Vec::new())),
                    &parse(row.get(9)?, Value::Object(Default::default())),
                ],
            )?;
            copied.rows += 1;
        }
    }

    // Failure reports received: the same columns on both back ends. One already there (the
    // same report message, or for one without a Message-ID the same reporter, arrival and
    // header section) is skipped, so a copy can be run again.
    let mut stmt = conn.prepare(&format!(
        "SELECT {FAILURE_COLUMNS} FROM failure_reports ORDER BY id"
    ))?;
    let insert_failure = tx.prepare(&format!(
        "INSERT INTO failure_reports ({FAILURE_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, \
         $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21 WHERE NOT EXISTS \
         (SELECT 1 FROM failure_reports WHERE report_message_id = $3 OR ($3::TEXT IS NULL \
         AND report_message_id IS NULL AND reporter = $2 AND received_at = $1 AND headers = $21)) \
         ON CONFLICT (report_message_id) DO NOTHING"
    ))?;
    let mut failures = stmt.query([])?;
    while let Some(r) = failures.next()? {
        let t = |i| -> rusqlite::Result<String> { Ok(text(&r.get::<_, String>(i)?).into_owned()) };
        let o = |i| -> rusqlite::Result<Option<String>> {
            Ok(r.get::<_, Option<String>>(i)?
                .map(|v| text(&v).into_owned()))
        };
        let n = tx.execute(
            &insert_failure,
            &[
                &r.get::<_, i64>(0)?,
                &t(1)?,
                &o(2)?,
                &t(3)?,
                &t(4)?,
                &o(5)?,
                &o(6)?,
                &o(7)?,
                &r.get::<_, Option<i64>>(8)?,
                &o(9)?,
                &o(10)?,
                &o(11)?,
                &o(12)?,
                &o(13)?,
                &o(14)?,
                &o(15)?,
                &o(16)?,
                &o(17)?,
                &t(18)?,
                &r.get::<_, i64>(19)?,
                &t(20)?,
            ],
        )?;
        if n == 1 {
            copied.failures += 1;
        } else {
            copied.failures_skipped += 1;
        }
    }
    tx.commit()?;
    Ok(copied)
}

/// The columns of `failure_reports` a copy moves, in this order (all but `id`).
const FAILURE_COLUMNS: &str = "received_at, reporter, report_message_id, format, feedback_type, \
    auth_failure, domain, source_ip, arrival, mail_from, rcpt_to, header_from, subject, \
    original_message_id, delivery_result, identity_alignment, dkim_domain, dkim_selector, \
    authentication_results, incidents, headers";
