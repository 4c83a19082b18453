//! The verdicts counted by hour, kept beside them so that the dashboard's overview reads a
//! day in a few hundred rows, not a million: `verdict_hours` counts the messages of each hour
//! by verdict and SPF, DKIM and DMARC result (a missing result counted as `none`), and
//! `failing_hours` the DMARC failures of each hour by From domain and by client address.
//!
//! The writer adds each batch's counts in the batch's own transaction ([`write`]), so the
//! counts and the rows commit together (a batch stored once is counted once); migrations
//! count the rows already stored with `rollup_backfill!`'s statements (`migrations.rs`),
//! and `store copy` adds the copied file's counts to the target's. Retention deletes the
//! hours it has pruned.
//!
//! Why counters and not the covering index alone: even read from the index, a day of a
//! million verdicts is a million entries to walk for every page view (about a second on
//! SQLite); the counters cost the writer one multi-row upsert per table and batch (a
//! hundred groups to a statement).

use crate::check::Record;
use crate::store::columns::Columns;
use crate::store::model::{StoreError, HOUR_MS};
use crate::store::sql::Sql;
use std::collections::BTreeMap;

/// The two kinds of key `failing_hours` counts failures by (each the verdicts column of
/// that name).
pub const KINDS: [&str; 2] = ["from_domain", "client_ip"];

/// Counts to add to the hour tables, in key order (every writer of a fleet locks the rows
/// it adds to in the same order: two batches never wait on each other in a circle).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// (hour, verdict, spf, dkim, dmarc) → messages.
    pub hours: BTreeMap<(i64, String, String, String, String), i64>,
    /// (kind, hour, name) → DMARC failures.
    pub failing: BTreeMap<(&'static str, i64, String), i64>,
}

/// The start of the hour `at` (Unix ms) falls in, as the migrations' SQL computes it.
pub fn hour_of(at: i64) -> i64 {
    at / HOUR_MS * HOUR_MS
}

/// A key as both back ends can store it: PostgreSQL text cannot hold NUL, and the row it
/// counts holds U+FFFD there in its place.
fn key(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

impl Counts {
    /// Counts one record, with the columns the writer took from its document.
    pub fn add(&mut self, r: &Record, c: &Columns) {
        let none = |v: Option<&str>| key(v.unwrap_or("none"));
        let hour = hour_of(r.received_at);
        *self
            .hours
            .entry((
                hour,
                key(&r.verdict),
                none(c.spf),
                none(c.dkim),
                none(r.dmarc.as_deref()),
            ))
            .or_default() += 1;
        if r.dmarc.as_deref() == Some("fail") {
            if let Some(domain) = &r.from_domain {
                *self
                    .failing
                    .entry((KINDS[0], hour, key(domain)))
                    .or_default() += 1;
            }
            *self
                .failing
                .entry((KINDS[1], hour, key(&r.client_ip)))
                .or_default() += 1;
        }
    }

    /// The counts stored in `db`'s hour tables (`store copy` adds a file's to the target).
    pub fn stored(db: &mut dyn Sql) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        db.each(
            "SELECT hour, verdict, spf, dkim, dmarc, messages FROM verdict_hours",
            &[],
            &mut |r| {
                let t = |i| r.text(i).map(|t| key(&t));
                let k = (r.int(0)?, t(1)?, t(2)?, t(3)?, t(4)?);
                *counts.hours.entry(k).or_default() += r.int(5)?;
                Ok(())
            },
        )?;
        for kind in KINDS {
            db.each(
                "SELECT hour, name, failed FROM failing_hours WHERE kind = ?1",
                &[kind.into()],
                &mut |r| {
                    *counts
                        .failing
                        .entry((kind, r.int(0)?, key(&r.text(1)?)))
                        .or_default() += r.int(2)?;
                    Ok(())
                },
            )?;
        }
        Ok(counts)
    }
}

/// Rows of one multi-row upsert (well under either back end's limit on parameters).
const CHUNK: usize = 100;

/// Adds `counts` to the hour tables (in the caller's transaction).
pub fn write(db: &mut dyn Sql, counts: &Counts) -> Result<(), StoreError> {
    let hours: Vec<_> = counts.hours.iter().collect();
    for chunk in hours.chunks(CHUNK) {
        let mut args = Vec::with_capacity(chunk.len() * 6);
        for ((hour, verdict, spf, dkim, dmarc), n) in chunk {
            args.extend([
                (*hour).into(),
                verdict.as_str().into(),
                spf.as_str().into(),
                dkim.as_str().into(),
                dmarc.as_str().into(),
                (**n).into(),
            ]);
        }
        db.execute_once(
            &format!(
                "INSERT INTO verdict_hours (hour, verdict, spf, dkim, dmarc, messages) \
                 VALUES {} ON CONFLICT (hour, verdict, spf, dkim, dmarc) \
                 DO UPDATE SET messages = verdict_hours.messages + excluded.messages",
                values(chunk.len(), 6)
            ),
            &args,
        )?;
    }
    let failing: Vec<_> = counts.failing.iter().collect();
    for chunk in failing.chunks(CHUNK) {
        let mut args = Vec::with_capacity(chunk.len() * 4);
        for ((kind, hour, name), n) in chunk {
            args.extend([
                (*kind).into(),
                (*hour).into(),
                name.as_str().into(),
                (**n).into(),
            ]);
        }
        db.execute_once(
            &format!(
                "INSERT INTO failing_hours (kind, hour, name, failed) VALUES {} \
                 ON CONFLICT (kind, hour, name) \
                 DO UPDATE SET failed = failing_hours.failed + excluded.failed",
                values(chunk.len(), 4)
            ),
            &args,
        )?;
    }
    Ok(())
}

/// `(?1, ?2, …), (…)…`: `rows` rows of `width` numbered placeholders.
fn values(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| {
            let marks: Vec<String> = (1..=width)
                .map(|i| format!("?{}", row * width + i))
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts the stored verdicts afresh (after rows were written around the writer, as a
/// benchmark's fill does): in one transaction.
pub fn rebuild(db: &mut dyn Sql) -> Result<(), StoreError> {
    let mut tx = db.transaction()?;
    tx.execute("DELETE FROM verdict_hours", &[])?;
    tx.execute("DELETE FROM failing_hours", &[])?;
    for statement in crate::rollup_backfill!().split(';').map(str::trim) {
        if !statement.is_empty() {
            tx.execute(statement, &[])?;
        }
    }
    tx.commit()
}

/// Deletes the counts of the hours that ended before `before_ms` (retention's, after the
/// verdicts of those hours).
pub fn prune(db: &mut dyn Sql, before_ms: i64) -> Result<(), StoreError> {
    let before = [(before_ms - HOUR_MS).into()];
    db.execute("DELETE FROM verdict_hours WHERE hour <= ?1", &before)?;
    db.execute("DELETE FROM failing_hours WHERE hour <= ?1", &before)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The overview test's record, with an SPF pass, no DKIM signature and `dmarc`.
    fn record(at: i64, from: &str, ip: &str, dmarc: Option<&str>) -> Record {
        let mut r = super::super::overview::tests::record(at, from, ip, "accept", "none");
        r.dmarc = dmarc.map(str::to_string);
        r.document = json!({"spf": {"result": "pass"}, "dkim": []});
        r
    }

    // One group per hour and results; failures by key; a NUL (which PostgreSQL stores as
    // U+FFFD) counted under the key the row is stored under, so that one upsert never
    // names a key twice.
    #[test]
    fn a_batch_is_counted_by_hour_result_and_failing_key() {
        let h = 7 * HOUR_MS;
        let mut counts = Counts::default();
        for r in [
            record(h + 1, "a.example", "192.0.2.1", Some("pass")),
            record(h + 2, "a.example", "192.0.2.1", Some("pass")),
            record(h + HOUR_MS, "b\0.example", "192.0.2.2", Some("fail")),
            record(
                h + HOUR_MS + 1,
                "b\u{fffd}.example",
                "192.0.2.2",
                Some("fail"),
            ),
            record(h + HOUR_MS + 2, "c.example", "192.0.2.3", None),
        ] {
            counts.add(&r, &Columns::of(&r.document));
        }
        let group = |hour: i64, dmarc: &str| {
            let k = |s: &str| s.to_string();
            (hour, k("accept"), k("pass"), k("none"), k(dmarc))
        };
        assert_eq!(counts.hours.len(), 3);
        assert_eq!(counts.hours[&group(h, "pass")], 2);
        assert_eq!(counts.hours[&group(h + HOUR_MS, "fail")], 2);
        assert_eq!(counts.hours[&group(h + HOUR_MS, "none")], 1);
        let failing: Vec<_> = counts
            .failing
            .iter()
            .map(|((kind, hour, name), n)| (*kind, *hour - h, name.as_str(), *n))
            .collect();
        assert_eq!(
            failing,
            [
                ("client_ip", HOUR_MS, "192.0.2.2", 2),
                ("from_domain", HOUR_MS, "b\u{fffd}.example", 2),
            ]
        );
        assert_eq!(hour_of(h + HOUR_MS - 1), h);
        assert_eq!(values(2, 3), "(?1, ?2, ?3), (?4, ?5, ?6)");
    }
}
