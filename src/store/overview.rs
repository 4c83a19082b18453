//! The dashboard's summary of a time window: messages per hour by verdict, each method's
//! results, and the From domains and client addresses failing DMARC most. Typed, so another
//! store backend answers with the same shapes; the dashboard (`http::ui`) only draws them.

use super::sqlite::Sqlite;
use super::StoreError;
use rusqlite::params;

pub(super) const HOUR_MS: i64 = 3_600_000;

/// Messages received in one hour with one verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// Start of the hour, Unix milliseconds.
    pub hour: i64,
    pub verdict: String,
    pub count: u64,
}

/// How many messages got each result of one method (`spf`, `dkim`, `dmarc`). A message
/// without the method's result (signing, or a check that skipped it) counts as `none`; for
/// DKIM a message counts once, as `pass` when any signature passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCounts {
    pub method: &'static str,
    /// `(result, messages)`, most first.
    pub results: Vec<(String, u64)>,
}

impl MethodCounts {
    pub fn total(&self) -> u64 {
        self.results.iter().map(|r| r.1).sum()
    }

    pub fn count(&self, result: &str) -> u64 {
        self.results
            .iter()
            .find(|r| r.0 == result)
            .map(|r| r.1)
            .unwrap_or(0)
    }
}

/// A From domain or client address with its DMARC failures and all its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    pub key: String,
    pub failed: u64,
    pub messages: u64,
}

/// What the window `[since, until)` held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub since: i64,
    pub until: i64,
    pub total: u64,
    /// Only the hours with messages, oldest first.
    pub hours: Vec<HourCount>,
    /// `spf`, `dkim`, `dmarc`, in that order.
    pub methods: Vec<MethodCounts>,
    pub failing_domains: Vec<Failing>,
    pub failing_ips: Vec<Failing>,
}

/// The result expression of each method over a verdict row (the stored `check` document).
const METHOD_SQL: [(&str, &str); 3] = [
    ("spf", "json_extract(document, '$.spf.result')"),
    (
        "dkim",
        "CASE WHEN EXISTS (SELECT 1 FROM json_each(document, '$.dkim') \
         WHERE json_extract(value, '$.result') = 'pass') THEN 'pass' \
         ELSE json_extract(document, '$.dkim[0].result') END",
    ),
    ("dmarc", "dmarc"),
];

impl Sqlite {
    /// The summary of `[since, until)` (Unix ms); `top`: how many failing domains and
    /// addresses to list.
    pub fn overview(&self, since: i64, until: i64, top: usize) -> Result<Overview, StoreError> {
        let window = "received_at >= ?1 AND received_at < ?2";
        let mut stmt = self.conn.prepare(&format!(
            "SELECT received_at / {HOUR_MS} * {HOUR_MS} AS hour, verdict, COUNT(*) \
             FROM verdicts WHERE {window} GROUP BY hour, verdict ORDER BY hour, verdict"
        ))?;
        let hours = stmt
            .query_map(params![since, until], |r| {
                Ok(HourCount {
                    hour: r.get(0)?,
                    verdict: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let total = hours.iter().map(|h| h.count).sum();
        let mut methods = Vec::with_capacity(METHOD_SQL.len());
        for (method, expr) in METHOD_SQL {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT COALESCE({expr}, 'none') AS result, COUNT(*) AS n FROM verdicts \
                 WHERE {window} GROUP BY result ORDER BY n DESC, result"
            ))?;
            let results = stmt
                .query_map(params![since, until], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            methods.push(MethodCounts { method, results });
        }
        let failing = |column: &str| -> Result<Vec<Failing>, StoreError> {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {column}, SUM(dmarc = 'fail') AS failed, COUNT(*) FROM verdicts \
                 WHERE {window} AND {column} IS NOT NULL GROUP BY {column} \
                 HAVING failed > 0 ORDER BY failed DESC, {column} LIMIT {top}"
            ))?;
            let rows = stmt
                .query_map(params![since, until], |r| {
                    Ok(Failing {
                        key: r.get(0)?,
                        failed: r.get::<_, i64>(1)? as u64,
                        messages: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        };
        Ok(Overview {
            since,
            until,
            total,
            hours,
            methods,
            failing_domains: failing("from_domain")?,
            failing_ips: failing("client_ip")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, Transport};
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
        let mut s = Sqlite::open(&dir.path().join("o.sqlite")).unwrap();
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
