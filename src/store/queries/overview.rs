//! The dashboard's summary of a time window: messages per hour by verdict, each method's
//! results, and the From domains and client addresses failing DMARC most. Typed
//! ([`Overview`]), so the dashboard (`http::ui`) only draws it. Read from the hour counts
//! (`rollup.rs`), not from the verdicts: a day is a few hundred rows of those.

use super::rollup::{hour_of, KINDS};
use crate::store::model::{Failing, HourCount, MethodCounts, Overview, StoreError, HOUR_MS};
use crate::store::sql::Sql;
use std::collections::{BTreeMap, HashMap};

/// The summary of the hours from the one `since` falls in to the one `until` (exclusive)
/// falls in, or ends at (Unix ms); `top`: how many failing domains and addresses to list.
/// Whole hours, as they are counted: [`Overview::since`] and [`Overview::until`] say which.
pub fn overview(
    db: &mut dyn Sql,
    since: i64,
    until: i64,
    top: usize,
) -> Result<Overview, StoreError> {
    let since = hour_of(since);
    let until = hour_of(until + HOUR_MS - 1);
    let params = [since.into(), until.into()];
    let window = "hour >= ?1 AND hour < ?2";
    // Hours by verdict and each method's results: a few thousand groups a day at most.
    let mut hours: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut results: [HashMap<String, u64>; 3] = Default::default();
    db.each(
        &format!(
            "SELECT hour, verdict, spf, dkim, dmarc, messages FROM verdict_hours WHERE {window}"
        ),
        &params,
        &mut |r| {
            let count = r.int(5)? as u64;
            *hours.entry((r.int(0)?, r.text(1)?)).or_default() += count;
            for (i, counts) in results.iter_mut().enumerate() {
                *counts.entry(r.text(2 + i)?).or_default() += count;
            }
            Ok(())
        },
    )?;
    // Verdicts within an hour compare byte by byte, as the dashboard has always listed them.
    let hours: Vec<HourCount> = hours
        .into_iter()
        .map(|((hour, verdict), count)| HourCount {
            hour,
            verdict,
            count,
        })
        .collect();
    let total = hours.iter().map(|h| h.count).sum();
    let methods = ["spf", "dkim", "dmarc"]
        .into_iter()
        .zip(results)
        .map(|(method, counts)| {
            let mut results: Vec<(String, u64)> = counts.into_iter().collect();
            results.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            MethodCounts { method, results }
        })
        .collect();
    // The keys failing most, from their hours' failure counts; then each one's messages
    // through its own index ((key, received_at)).
    let name = db.dialect().bytewise("name");
    let mut failing = |kind: &'static str| -> Result<Vec<Failing>, StoreError> {
        let top_keys = db.rows(
            &format!(
                "SELECT name, CAST(SUM(failed) AS BIGINT) FROM failing_hours WHERE kind = ?3 AND {window} \
                 GROUP BY name ORDER BY 2 DESC, {name} LIMIT {top}"
            ),
            &[since.into(), until.into(), kind.into()],
            |r| Ok((r.text(0)?, r.int(1)? as u64)),
        )?;
        let mut out = Vec::with_capacity(top_keys.len());
        for (key, failed) in top_keys {
            let messages = db
                .first(
                    &format!(
                        "SELECT COUNT(*) FROM verdicts \
                         WHERE {kind} = ?3 AND received_at >= ?1 AND received_at < ?2"
                    ),
                    &[since.into(), until.into(), key.as_str().into()],
                    |r| r.int(0),
                )?
                .unwrap_or(0) as u64;
            out.push(Failing {
                key,
                failed,
                messages,
            });
        }
        Ok(out)
    };
    let failing_domains = failing(KINDS[0])?;
    let failing_ips = failing(KINDS[1])?;
    Ok(Overview {
        since,
        until,
        total,
        hours,
        methods,
        failing_domains,
        failing_ips,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use crate::store::model::{Failing, HOUR_MS};
    use crate::store::{Record, Store, Transport};
    use serde_json::json;
    use std::time::Duration;

    pub(in crate::store::queries) fn record(
        at: i64,
        domain: &str,
        ip: &str,
        verdict: &str,
        dmarc: &str,
    ) -> Record {
        Record {
            received_at: at,
            transport: Transport::Milter,
            queue_id: None,
            message_id: None,
            client_ip: ip.into(),
            helo: None,
            mail_from: None,
            rcpts: vec![],
            rcpt_count: 0,
            from_domain: Some(domain.into()),
            verdict: verdict.into(),
            dmarc: Some(dmarc.into()),
            duration: Duration::ZERO,
            document: json!({
                "spf": {"result": if dmarc == "pass" { "pass" } else { "fail" }},
                "dkim": [{"result": "fail"}, {"result": dmarc}],
            }),
            dmarc_event: None,
        }
    }

    #[test]
    fn hours_methods_and_failing_sources() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("o.sqlite")).unwrap();
        let h = 1_000 * HOUR_MS;
        s.insert_batch(&[
            record(h + 5, "good.example", "192.0.2.1", "accept", "pass"),
            record(h + 6, "bad.example", "198.51.100.7", "reject", "fail"),
            record(h + HOUR_MS, "bad.example", "198.51.100.7", "reject", "fail"),
            record(
                h + HOUR_MS + 1,
                "bad.example",
                "192.0.2.1",
                "accept",
                "pass",
            ),
            // Outside the window.
            record(
                h + 3 * HOUR_MS,
                "bad.example",
                "198.51.100.7",
                "reject",
                "fail",
            ),
        ])
        .unwrap();
        let o = s.overview(h, h + 2 * HOUR_MS, 10).unwrap();
        assert_eq!(o.total, 4);
        let hours: Vec<_> = o
            .hours
            .iter()
            .map(|c| (c.hour - h, c.verdict.as_str(), c.count))
            .collect();
        assert_eq!(
            hours,
            vec![
                (0, "accept", 1),
                (0, "reject", 1),
                (HOUR_MS, "accept", 1),
                (HOUR_MS, "reject", 1)
            ]
        );
        let names: Vec<_> = o.methods.iter().map(|m| m.method).collect();
        assert_eq!(names, ["spf", "dkim", "dmarc"]);
        // DKIM: one passing signature of two makes the message a pass.
        assert_eq!((o.methods[1].count("pass"), o.methods[1].total()), (2, 4));
        assert_eq!(o.methods[2].count("fail"), 2);
        assert_eq!(
            o.failing_domains,
            vec![Failing {
                key: "bad.example".into(),
                failed: 2,
                messages: 3
            }]
        );
        assert_eq!(o.failing_ips[0].key, "198.51.100.7");
        assert_eq!(o.failing_ips.len(), 1);
        // A window that does not start or end on the hour covers the hours it touches.
        let touched = s.overview(h + 10, h + HOUR_MS + 1, 10).unwrap();
        assert_eq!((touched.since, touched.until), (h, h + 2 * HOUR_MS));
        assert_eq!(touched, o);

        // The writer's counts, batch by batch, are what counting the rows afresh gives
        // (the migrations' way), a second batch added to the same hours included.
        s.insert_batch(&[
            record(h + 7, "bad.example", "198.51.100.7", "reject", "fail"),
            record(h + 8, "other.example", "192.0.2.9", "tempfail", "temperror"),
        ])
        .unwrap();
        let written = s.overview(h, h + 4 * HOUR_MS, 10).unwrap();
        assert_eq!(written.total, 7);
        assert_eq!(written.failing_domains[0].failed, 4);
        s.recount_hours().unwrap();
        assert_eq!(s.overview(h, h + 4 * HOUR_MS, 10).unwrap(), written);

        // Retention deletes the hours it pruned, with their verdicts.
        while !s.prune_step(h + 2 * HOUR_MS, 1).unwrap().done {}
        let left = s.overview(0, h + 4 * HOUR_MS, 10).unwrap();
        assert_eq!(left.total, 1);
        assert_eq!(left.hours[0].hour, h + 3 * HOUR_MS);
        assert_eq!(left.failing_domains[0].failed, 1);
    }
}
