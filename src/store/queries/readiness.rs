//! What the aggregate reports received say about one domain's senders, row by row, for the
//! enforcement-readiness view (`report::readiness`): each reported row's source address,
//! message count, the DMARC-aligned results the reporter evaluated, and the raw SPF and DKIM
//! results with their domains. Our own verdicts come through
//! [`for_each_dmarc_event`](super::verdicts::for_each_dmarc_event), not from here.

use crate::store::model::{Bound, ReportFilter, StoreError};
use crate::store::sql::{bind, Sql};
use serde_json::Value;

/// One record of a received report, as readiness reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedRow {
    /// The stored report it belongs to.
    pub report: i64,
    pub source_ip: String,
    pub count: u64,
    /// The reporter's `policy_evaluated` results: DMARC-aligned DKIM and SPF passed.
    pub dkim_aligned: bool,
    pub spf_aligned: bool,
    /// `auth_results`: (domain, result) of each DKIM signature and each SPF check.
    pub dkim: Vec<(String, String)>,
    pub spf: Vec<(String, String)>,
}

/// Calls `each` with every row of the reports about `domain` whose period overlaps
/// `[since, until)` (Unix seconds), leaving out the reports `skip_reporter` sent (our own
/// reports read back: our verdicts count those messages already). Streamed, in the order
/// the reports were stored.
pub fn for_each_reported_row(
    db: &mut dyn Sql,
    domain: &str,
    since: i64,
    until: i64,
    skip_reporter: Option<&str>,
    mut each: impl FnMut(ReportedRow),
) -> Result<(), StoreError> {
    let filter = ReportFilter {
        domain: Some(domain.to_string()),
        since: Some(since),
        until: Some(until),
        ..ReportFilter::default()
    };
    let mut conditions = filter.conditions();
    if let Some(me) = skip_reporter {
        conditions.push(("lower(email) <> lower(?)", Bound::Text(me.to_string())));
    }
    let (clause, args) = bind(conditions);
    let sql = format!(
        "SELECT report, source_ip, count, dkim, spf, auth_results FROM report_rows \
         WHERE report IN (SELECT id FROM reports_received {clause}) ORDER BY report, {}",
        db.dialect().report_row_order()
    );
    db.each(&sql, &args, &mut |r| {
        let results = r.json(5)?.unwrap_or(Value::Null);
        each(ReportedRow {
            report: r.int(0)?,
            source_ip: r.text(1)?,
            count: u64::try_from(r.int(2)?).unwrap_or(0),
            dkim_aligned: r.text(3)? == "pass",
            spf_aligned: r.text(4)? == "pass",
            dkim: pairs(&results["dkim"]),
            spf: pairs(&results["spf"]),
        });
        Ok(())
    })
}

/// `[{"domain": …, "result": …}, …]` as (domain, result) pairs.
fn pairs(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let word = |k: &str| v[k].as_str().unwrap_or("").to_ascii_lowercase();
            (word("domain"), word("result"))
        })
        .collect()
}
