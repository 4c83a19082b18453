//! The verdict queries: the API's list and single verdict, `/v1/stats`, the DMARC events
//! aggregate reports are built from, and retention.

use crate::check::DmarcEvent;
use crate::dates::{format_rfc3339, now_ms, DAY_MS};
use crate::store::model::{stats_answer, Filter, GroupBy, Lease, Page, Pruned, StoreError};
use crate::store::sql::{bind, Dialect, Row, Sql};
use serde_json::{Map, Value};

/// The columns [`item`] reads.
fn columns(d: Dialect) -> String {
    format!(
        "id, received_at, transport, queue_id, message_id, client_ip, helo, mail_from, rcpts, \
         from_domain, duration_us, document, {}, host",
        d.rcpt_count()
    )
}

/// A page of verdicts matching `filter`, newest first.
pub fn list(db: &mut dyn Sql, filter: &Filter, limit: usize) -> Result<Page, StoreError> {
    let (clause, args) = bind(filter.conditions());
    let sql = format!(
        "SELECT {} FROM verdicts {clause} ORDER BY id DESC LIMIT {}",
        columns(db.dialect()),
        limit + 1
    );
    Ok(Page::of(db.rows(&sql, &args, item)?, limit))
}

/// One verdict by id.
pub fn get(db: &mut dyn Sql, id: i64) -> Result<Option<Value>, StoreError> {
    let sql = format!(
        "SELECT {} FROM verdicts WHERE id = ?1",
        columns(db.dialect())
    );
    db.first(&sql, &[id.into()], item)
}

/// Counts since `since` grouped by `group_by`, each group split by DMARC result ("how much
/// of example.com's mail fails DMARC?"). Sorted by count, largest first.
pub fn stats(
    db: &mut dyn Sql,
    since: Option<i64>,
    group_by: GroupBy,
    from_domain: Option<&str>,
) -> Result<Value, StoreError> {
    let filter = Filter {
        since,
        from_domain: from_domain.map(str::to_string),
        ..Filter::default()
    };
    let (clause, args) = bind(filter.conditions());
    let col = group_by.column();
    // A window of all domains reads the window's covering index; one domain its own index.
    let index = match (since, from_domain) {
        (Some(_), None) => db.dialect().window_index(),
        _ => "",
    };
    let sql = format!(
        "SELECT {col}, dmarc, COUNT(*) FROM verdicts {index} {clause} GROUP BY {col}, dmarc"
    );
    let rows = db.rows(&sql, &args, |r| {
        Ok((r.opt_text(0)?, r.opt_text(1)?, r.int(2)?))
    })?;
    Ok(stats_answer(rows))
}

/// The policy domains with DMARC events received in `[begin, end)`.
pub fn dmarc_domains(db: &mut dyn Sql, begin: i64, end: i64) -> Result<Vec<String>, StoreError> {
    db.rows(
        "SELECT DISTINCT dmarc_domain FROM verdicts \
         WHERE dmarc_domain IS NOT NULL AND received_at >= ?1 AND received_at < ?2",
        &[begin.into(), end.into()],
        |r| r.text(0),
    )
}

/// Calls `each` with the source IP and event of every message for `domain` received in
/// `[begin, end)`, oldest first, streamed (a day of a busy domain does not fit in memory at
/// once); returns how many rows could not be read.
pub fn for_each_dmarc_event(
    db: &mut dyn Sql,
    domain: &str,
    begin: i64,
    end: i64,
    mut each: impl FnMut(&str, DmarcEvent),
) -> Result<usize, StoreError> {
    let mut skipped = 0;
    db.each(
        "SELECT client_ip, dmarc_event FROM verdicts \
         WHERE dmarc_domain = ?1 AND received_at >= ?2 AND received_at < ?3 \
         ORDER BY received_at, id",
        &[domain.into(), begin.into(), end.into()],
        &mut |row| {
            let ip = row.text(0)?;
            match row.json(1)?.map(serde_json::from_value::<DmarcEvent>) {
                Some(Ok(event)) => each(&ip, event),
                // Written by this program; unreadable means a newer or damaged row.
                _ => skipped += 1,
            }
            Ok(())
        },
    )?;
    Ok(skipped)
}

/// One step of retention: deletes at most `limit` of the verdicts received before
/// `before_ms` (oldest first) in one transaction, so a large prune never holds the writer
/// (or SQLite's one write lock) for long; the step that finds fewer than `limit` left also
/// deletes the reports (sent and received) about periods that ended before the cutoff and
/// says the prune is done. On one host of the fleet at a time (the others find the lease
/// taken and leave it to that one: done, for them).
pub fn prune_step(db: &mut dyn Sql, before_ms: i64, limit: usize) -> Result<Pruned, StoreError> {
    let mut tx = db.transaction()?;
    let pruned = {
        let tx: &mut dyn Sql = &mut *tx;
        if !tx.try_xact_lease(Lease::Retention)? {
            return Ok(Pruned {
                deleted: 0,
                done: true,
            });
        }
        let before = [before_ms.into()];
        let mut dropped = 0;
        if tx.dialect() == Dialect::Postgres {
            // Whole days past retention go at once; the days ahead are made ready.
            dropped = tx
                .first("SELECT verdicts_drop_days_before(?1)", &before, |r| {
                    r.int(0)
                })?
                .unwrap_or(0) as usize;
            let now = now_ms();
            for day in 0..3 {
                tx.first(
                    "SELECT verdicts_day_partition(?1)",
                    &[(now + day * DAY_MS).into()],
                    |_| Ok(()),
                )?;
            }
        }
        // What is left before the cutoff (the cutoff's own day, PostgreSQL's DEFAULT
        // partition, SQLite's one table), oldest first: the window index (received_at
        // first) finds it without a scan.
        let deleted = tx.execute(
            &format!(
                "DELETE FROM verdicts WHERE received_at < ?1 AND id IN (SELECT id FROM verdicts \
                 WHERE received_at < ?1 ORDER BY received_at LIMIT {limit})"
            ),
            &before,
        )? as usize;
        let done = deleted < limit;
        let deleted = deleted + dropped;
        if done {
            prune_reports(tx, before_ms)?;
        }
        Pruned { deleted, done }
    };
    tx.commit()?;
    Ok(pruned)
}

/// Deletes what retention keeps beside the verdicts: the fleet's batch tokens, the reports
/// sent and received, the failure reports and the hour counts from before `before_ms`.
fn prune_reports(tx: &mut dyn Sql, before_ms: i64) -> Result<(), StoreError> {
    let before = [before_ms.into()];
    if tx.dialect() == Dialect::Postgres {
        // Only the fleet's writers remember their batches (SQLite commits locally).
        tx.execute("DELETE FROM store_batches WHERE written_at < ?1", &before)?;
    }
    tx.execute("DELETE FROM reports_sent WHERE period_end < ?1", &before)?;
    // Received reports date their periods in Unix seconds (RFC 9990 §3.1.1).
    let before_secs = [(before_ms / 1000).into()];
    tx.execute(
        "DELETE FROM report_rows WHERE report IN \
         (SELECT id FROM reports_received WHERE date_end < ?1)",
        &before_secs,
    )?;
    tx.execute(
        "DELETE FROM reports_received WHERE date_end < ?1",
        &before_secs,
    )?;
    tx.execute(
        "DELETE FROM failure_reports WHERE received_at < ?1",
        &before,
    )?;
    super::rollup::prune(tx, before_ms)
}

/// A verdict row as the API returns it: the check document plus the record's own fields.
fn item(r: &dyn Row) -> Result<Value, StoreError> {
    let mut v = match r.document(11)? {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    v.insert("id".into(), r.int(0)?.into());
    v.insert("received_at".into(), format_rfc3339(r.int(1)?).into());
    v.insert("transport".into(), r.text(2)?.into());
    v.insert("queue_id".into(), r.opt_text(3)?.into());
    v.insert("message_id".into(), r.opt_text(4)?.into());
    v.insert("client_ip".into(), r.text(5)?.into());
    v.insert("helo".into(), r.opt_text(6)?.into());
    v.insert("mail_from".into(), r.opt_text(7)?.into());
    v.insert(
        "rcpts".into(),
        r.json(8)?.unwrap_or(Value::Array(Vec::new())),
    );
    v.insert("rcpt_count".into(), r.int(12)?.into());
    v.insert("host".into(), r.opt_text(13)?.into());
    v.insert("from_domain".into(), r.opt_text(9)?.into());
    v.insert("duration_ms".into(), (r.int(10)? as f64 / 1000.0).into());
    Ok(Value::Object(v))
}
