//! The reporting tables: the DMARC events aggregate reports are built from, and the state of
//! each report sent (exactly once per policy domain and period: a report is marked `sent`
//! only after the next hop accepted it, and retried a bounded number of times before that).

use super::sqlite::Sqlite;
use super::StoreError;
use crate::check::DmarcEvent;
use rusqlite::{params, OptionalExtension};

/// Where a report for one domain and period stands.
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

impl Sqlite {
    /// The policy domains with DMARC events received in `[begin, end)`.
    pub fn dmarc_domains(&self, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT dmarc_domain FROM verdicts \
             WHERE dmarc_domain IS NOT NULL AND received_at >= ?1 AND received_at < ?2",
        )?;
        let domains = stmt
            .query_map([begin, end], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(domains)
    }

    /// Calls `each` with the source IP and event of every message for `domain` received in
    /// `[begin, end)`, oldest first, without holding them all in memory.
    pub fn for_each_dmarc_event(
        &self,
        domain: &str,
        begin: i64,
        end: i64,
        mut each: impl FnMut(&str, DmarcEvent),
    ) -> Result<usize, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT client_ip, dmarc_event FROM verdicts \
             WHERE dmarc_domain = ?1 AND received_at >= ?2 AND received_at < ?3 \
             ORDER BY received_at",
        )?;
        let mut rows = stmt.query(params![domain, begin, end])?;
        let mut skipped = 0;
        while let Some(row) = rows.next()? {
            let ip: String = row.get(0)?;
            let text: String = row.get(1)?;
            match serde_json::from_str::<DmarcEvent>(&text) {
                Ok(event) => each(&ip, event),
                // Written by this program; unreadable means a newer or damaged row.
                Err(_) => skipped += 1,
            }
        }
        Ok(skipped)
    }

    /// The report for `domain` and the period starting at `period_begin`, if one was begun.
    pub fn sent_report(
        &self,
        domain: &str,
        period_begin: i64,
    ) -> Result<Option<SentReport>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT domain, period_begin, period_end, report_id, state, attempts, next_attempt, \
             destinations, messages, bytes, detail FROM reports_sent \
             WHERE domain = ?1 AND period_begin = ?2",
        )?;
        Ok(stmt
            .query_row(params![domain, period_begin], |r| {
                Ok(SentReport {
                    domain: r.get(0)?,
                    period_begin: r.get(1)?,
                    period_end: r.get(2)?,
                    report_id: r.get(3)?,
                    state: r.get(4)?,
                    attempts: r.get(5)?,
                    next_attempt: r.get(6)?,
                    destinations: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
                    messages: r.get::<_, i64>(8)? as u64,
                    bytes: r.get::<_, Option<i64>>(9)?.map(|b| b as u64),
                    detail: r.get(10)?,
                })
            })
            .optional()?)
    }

    /// Records where a report stands (inserted the first time, updated after).
    pub fn save_sent_report(&mut self, report: &SentReport, now: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO reports_sent (domain, period_begin, period_end, report_id, state, \
             attempts, next_attempt, destinations, messages, bytes, detail, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (domain, period_begin) DO UPDATE SET period_end = ?3, state = ?5, \
             attempts = ?6, next_attempt = ?7, destinations = ?8, messages = ?9, bytes = ?10, \
             detail = ?11, updated_at = ?12",
            params![
                report.domain,
                report.period_begin,
                report.period_end,
                report.report_id,
                report.state,
                report.attempts,
                report.next_attempt,
                serde_json::to_string(&report.destinations).unwrap_or_else(|_| "[]".into()),
                report.messages as i64,
                report.bytes.map(|b| b as i64),
                report.detail,
                now,
            ],
        )?;
        Ok(())
    }

    /// Reports sent or begun in `[begin, end)` (by period start), newest first.
    pub fn sent_reports(&self, begin: i64, end: i64) -> Result<Vec<SentReport>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT domain, period_begin FROM reports_sent \
             WHERE period_begin >= ?1 AND period_begin < ?2 ORDER BY period_begin DESC",
        )?;
        let keys = stmt
            .query_map([begin, end], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(keys.len());
        for (domain, period_begin) in keys {
            if let Some(r) = self.sent_report(&domain, period_begin)? {
                out.push(r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The writer, the report importer and the report job open a new store at the same time;
    // each migration must run once (it failed with "duplicate column name: dmarc_domain"),
    // and no open may fail because another one is switching the new file to WAL ("database
    // is locked").
    #[test]
    fn concurrent_opens_of_a_new_store_migrate_once() {
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("new{round}.sqlite"));
            let openers: Vec<_> = (0..12)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || Sqlite::open(&path).map(|s| s.schema_version()))
                })
                .collect();
            for opener in openers {
                let version = opener.join().unwrap().unwrap().unwrap();
                assert_eq!(version, crate::store::SCHEMA_VERSION);
            }
        }
    }
}
