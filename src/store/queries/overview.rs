//! The dashboard's summary of a time window: messages per hour by verdict, each method's
//! results, and the From domains and client addresses failing DMARC most. Typed
//! ([`Overview`]), so the dashboard (`http::ui`) only draws it.

use crate::store::model::{Failing, HourCount, MethodCounts, Overview, StoreError, HOUR_MS};
use crate::store::sql::Sql;
use std::collections::{BTreeMap, HashMap};

/// The summary of `[since, until)` (Unix ms); `top`: how many failing domains and addresses
/// to list.
pub fn overview(
    db: &mut dyn Sql,
    since: i64,
    until: i64,
    top: usize,
) -> Result<Overview, StoreError> {
    let d = db.dialect();
    let window = "received_at >= ?1 AND received_at < ?2";
    let params = [since.into(), until.into()];
    // Hours by verdict and each method's results from one pass over the window (read
    // from the window's covering index): a few thousand groups at most, summed here.
    let mut hours: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut results: [HashMap<String, u64>; 3] = Default::default();
    db.each(
        &format!(
            "SELECT received_at / {HOUR_MS} * {HOUR_MS}, verdict, spf, dkim, dmarc, COUNT(*) \
             FROM verdicts {} WHERE {window} GROUP BY 1, 2, 3, 4, 5",
            d.window_index()
        ),
        &params,
        &mut |r| {
            let count = r.int(5)? as u64;
            *hours.entry((r.int(0)?, r.text(1)?)).or_default() += count;
            for (i, counts) in results.iter_mut().enumerate() {
                let result = r.opt_text(2 + i)?.unwrap_or_else(|| "none".into());
                *counts.entry(result).or_default() += count;
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
    // The keys failing most, from the failing rows alone (a tenth of a day, not all of
    // it, goes through the GROUP BY's sort); then each one's messages through its own
    // index ((key, received_at)).
    let mut failing = |column: &str| -> Result<Vec<Failing>, StoreError> {
        let top_keys = db.rows(
            &format!(
                "SELECT {column}, COUNT(*) FROM verdicts {} \
                 WHERE {window} AND dmarc = 'fail' AND {column} IS NOT NULL \
                 GROUP BY {column} ORDER BY 2 DESC, {} LIMIT {top}",
                d.window_index(),
                d.bytewise(column)
            ),
            &params,
            |r| Ok((r.text(0)?, r.int(1)? as u64)),
        )?;
        let mut out = Vec::with_capacity(top_keys.len());
        for (key, failed) in top_keys {
            let messages = db
                .first(
                    &format!("SELECT COUNT(*) FROM verdicts WHERE {column} = ?3 AND {window}"),
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
    let failing_domains = failing("from_domain")?;
    let failing_ips = failing("client_ip")?;
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
mod tests {
    use crate::store::model::{Failing, HOUR_MS};
    use crate::store::{Record, Store, Transport};
    use serde_json::json;
    use std::time::Duration;

    fn record(at: i64, domain: &str, ip: &str, verdict: &str, dmarc: &str) -> Record {
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
    }
}
