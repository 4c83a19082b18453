//! The dashboard's summary of a time window: messages per hour by verdict, each method's
//! results, and the From domains and client addresses failing DMARC most. Typed
//! ([`Overview`]), so the dashboard (`http::ui`) only draws it.

use crate::store::model::{Failing, HourCount, MethodCounts, Overview, StoreError, HOUR_MS};
use crate::store::sql::Sql;

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
    let hours = db.rows(
        &format!(
            "SELECT received_at / {HOUR_MS} * {HOUR_MS}, verdict, COUNT(*) FROM verdicts \
             WHERE {window} GROUP BY 1, 2 ORDER BY 1, {}",
            d.bytewise("verdict")
        ),
        &params,
        |r| {
            Ok(HourCount {
                hour: r.int(0)?,
                verdict: r.text(1)?,
                count: r.int(2)? as u64,
            })
        },
    )?;
    let total = hours.iter().map(|h| h.count).sum();
    let mut methods = Vec::with_capacity(3);
    for method in ["spf", "dkim", "dmarc"] {
        let result = format!("COALESCE({method}, 'none')");
        let results = db.rows(
            &format!(
                "SELECT {result}, COUNT(*) FROM verdicts WHERE {window} \
                 GROUP BY 1 ORDER BY 2 DESC, {}",
                d.bytewise(&result)
            ),
            &params,
            |r| Ok((r.text(0)?, r.int(1)? as u64)),
        )?;
        methods.push(MethodCounts { method, results });
    }
    let mut failing = |column: &str| -> Result<Vec<Failing>, StoreError> {
        let failed = "SUM(CASE WHEN dmarc = 'fail' THEN 1 ELSE 0 END)";
        db.rows(
            &format!(
                "SELECT {column}, {failed}, COUNT(*) FROM verdicts \
                 WHERE {window} AND {column} IS NOT NULL GROUP BY {column} \
                 HAVING {failed} > 0 ORDER BY 2 DESC, {} LIMIT {top}",
                d.bytewise(column)
            ),
            &params,
            |r| {
                Ok(Failing {
                    key: r.text(0)?,
                    failed: r.int(1)? as u64,
                    messages: r.int(2)? as u64,
                })
            },
        )
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
