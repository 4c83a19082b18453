//! The reports we send: where each report for one policy domain and period stands.

use crate::store::model::{clamp, SentReport, StoreError};
use crate::store::sql::{Row, Sql};
use serde_json::Value;

const SENT_COLUMNS: &str = "domain, period_begin, period_end, report_id, state, attempts, \
                            next_attempt, destinations, messages, bytes, detail";

/// The report for `domain` and the period starting at `period_begin`, if one was begun.
pub fn sent_report(
    db: &mut dyn Sql,
    domain: &str,
    period_begin: i64,
) -> Result<Option<SentReport>, StoreError> {
    db.first(
        &format!("SELECT {SENT_COLUMNS} FROM reports_sent WHERE domain = ?1 AND period_begin = ?2"),
        &[domain.into(), period_begin.into()],
        sent,
    )
}

/// Records where a report stands (inserted the first time, updated after).
pub fn save_sent_report(db: &mut dyn Sql, report: &SentReport, now: i64) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO reports_sent (domain, period_begin, period_end, report_id, state, \
         attempts, next_attempt, destinations, messages, bytes, detail, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (domain, period_begin) DO UPDATE SET period_end = ?3, state = ?5, \
         attempts = ?6, next_attempt = ?7, destinations = ?8, messages = ?9, bytes = ?10, \
         detail = ?11, updated_at = ?12",
        &[
            (&report.domain).into(),
            report.period_begin.into(),
            report.period_end.into(),
            (&report.report_id).into(),
            (&report.state).into(),
            i64::from(report.attempts.min(i32::MAX as u32)).into(),
            report.next_attempt.into(),
            Value::from(report.destinations.clone()).into(),
            clamp(report.messages).into(),
            report.bytes.map(clamp).into(),
            report.detail.as_deref().into(),
            now.into(),
        ],
    )?;
    Ok(())
}

/// Reports sent or begun in `[begin, end)` (by period start), newest first.
pub fn sent_reports(db: &mut dyn Sql, begin: i64, end: i64) -> Result<Vec<SentReport>, StoreError> {
    db.rows(
        &format!(
            "SELECT {SENT_COLUMNS} FROM reports_sent \
             WHERE period_begin >= ?1 AND period_begin < ?2 ORDER BY period_begin DESC, id DESC"
        ),
        &[begin.into(), end.into()],
        sent,
    )
}

fn sent(r: &dyn Row) -> Result<SentReport, StoreError> {
    Ok(SentReport {
        domain: r.text(0)?,
        period_begin: r.int(1)?,
        period_end: r.int(2)?,
        report_id: r.text(3)?,
        state: r.text(4)?,
        attempts: r.int(5)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt: r.opt_int(6)?,
        destinations: r
            .json(7)?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        messages: r.int(8)?.max(0) as u64,
        bytes: r.opt_int(9)?.map(|b| b.max(0) as u64),
        detail: r.opt_text(10)?,
    })
}
