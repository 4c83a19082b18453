//! Aggregate reports (RFC 9990 §3): the messages of one policy domain and period, read from
//! the store's DMARC events, grouped into rows (source IP, disposition, aligned results,
//! override reasons, identifiers and authentication results), written as XML through
//! quick-xml.
//!
//! Written to RFC 9990 as published (Appendix A's schema): `generator`, `np`,
//! `discovery_method` and `testing` are reported, and the SPF result is always the one for the
//! MAIL FROM identity (scope `mfrom`, the only scope the schema allows). For the null sender
//! that identity is `postmaster@<HELO name>` (RFC 7208 §2.4), the one DMARC uses (RFC 9989),
//! so its row reports the HELO domain with scope `mfrom`.
//!
//! Not mail-auth's report writer: for the null sender it leaves out the SPF result, and it has
//! no `generator`. See the tests named after those defects.

use crate::auth::Published;
use crate::check::DmarcEvent;
use crate::store::{Store, StoreError};
use quick_xml::events::BytesText;
use quick_xml::Writer;
use std::collections::BTreeMap;
use std::io;
use std::ops::Range;

/// RFC 9990 §3.1.1: the report's namespace and format version.
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:dmarc-2.0";

/// `report_metadata/generator` (RFC 9990 §3.1.1): name and version.
pub const GENERATOR: &str = concat!("authmilter ", env!("CARGO_PKG_VERSION"));

/// Who reports (`report_metadata`).
#[derive(Debug, Clone)]
pub struct Reporter {
    pub org_name: String,
    pub email: String,
    pub extra_contact_info: Option<String>,
}

/// What makes two messages the same row (RFC 9990 §3.1.3): everything but the count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowKey {
    pub source_ip: String,
    pub disposition: String,
    pub dkim_aligned: bool,
    pub spf_aligned: bool,
    pub reasons: Vec<(String, Option<String>)>,
    pub header_from: String,
    pub envelope_from: String,
    pub envelope_to: Option<String>,
    pub dkim: Vec<(String, String, String)>,
    pub spf: (String, String, String),
}

impl RowKey {
    fn of(source_ip: &str, e: DmarcEvent) -> RowKey {
        RowKey {
            source_ip: source_ip.to_string(),
            disposition: e.disposition,
            dkim_aligned: e.dkim_aligned,
            spf_aligned: e.spf_aligned,
            reasons: e.reasons,
            header_from: e.header_from,
            envelope_from: e.envelope_from,
            envelope_to: e.envelope_to,
            dkim: e.dkim,
            spf: e.spf,
        }
    }
}

/// One report: a policy domain, a period and its rows.
#[derive(Debug, Clone)]
pub struct Aggregate {
    pub domain: String,
    pub report_id: String,
    /// Unix milliseconds, end excluded.
    pub period: Range<i64>,
    /// The record as last seen in the period (one `policy_published` per report).
    pub policy: Published,
    /// Rows in a stable order, with their counts.
    pub rows: Vec<(RowKey, u64)>,
    pub messages: u64,
}

impl Aggregate {
    /// The report for `domain` over `period`, or `None` when no message counts in it.
    pub fn collect(
        store: &Store,
        domain: &str,
        period: Range<i64>,
        report_id: String,
    ) -> Result<Option<Aggregate>, StoreError> {
        let mut rows: BTreeMap<RowKey, u64> = BTreeMap::new();
        let mut policy = None;
        let mut messages = 0;
        let unreadable =
            store.for_each_dmarc_event(domain, period.start, period.end, |ip, e| {
                messages += 1;
                policy = Some(e.policy.clone());
                *rows.entry(RowKey::of(ip, e)).or_insert(0) += 1;
            })?;
        if unreadable > 0 {
            tracing::warn!(
                domain,
                unreadable,
                "DMARC events that do not read were left out"
            );
        }
        Ok(policy.map(|policy| Aggregate {
            domain: domain.to_string(),
            report_id,
            period,
            policy,
            rows: rows.into_iter().collect(),
            messages,
        }))
    }

    /// The report document (RFC 9990 §3 and its schema, Appendix A).
    pub fn to_xml(&self, reporter: &Reporter) -> String {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        self.write(&mut w, reporter)
            .expect("writing XML into memory cannot fail");
        let body = String::from_utf8(w.into_inner()).expect("the writer writes UTF-8");
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}\n")
    }

    fn write(&self, w: &mut Writer<Vec<u8>>, reporter: &Reporter) -> io::Result<()> {
        w.create_element("feedback")
            .with_attribute(("xmlns", NAMESPACE))
            .write_inner_content(|w| {
                text(w, "version", "1.0")?;
                w.create_element("report_metadata")
                    .write_inner_content(|w| {
                        text(w, "org_name", &reporter.org_name)?;
                        text(w, "email", &reporter.email)?;
                        if let Some(extra) = &reporter.extra_contact_info {
                            text(w, "extra_contact_info", extra)?;
                        }
                        text(w, "report_id", &self.report_id)?;
                        w.create_element("date_range").write_inner_content(|w| {
                            text(w, "begin", &(self.period.start / 1000).to_string())?;
                            text(w, "end", &(self.period.end / 1000).to_string())?;
                            Ok(())
                        })?;
                        // RFC 9990 §3.1.1: the software that made the report.
                        text(w, "generator", GENERATOR)?;
                        Ok(())
                    })?;
                self.write_policy(w)?;
                for (row, count) in &self.rows {
                    write_record(w, row, *count)?;
                }
                Ok(())
            })?;
        Ok(())
    }

    fn write_policy(&self, w: &mut Writer<Vec<u8>>) -> io::Result<()> {
        let p = &self.policy;
        w.create_element("policy_published")
            .write_inner_content(|w| {
                text(w, "domain", &p.domain)?;
                // RFC 9989 §4.10: the record was found by the DNS tree walk.
                text(w, "discovery_method", "treewalk")?;
                text(w, "adkim", &p.adkim)?;
                text(w, "aspf", &p.aspf)?;
                text(w, "p", &p.p)?;
                // Without sp in the record it is p, and np is sp (RFC 9989 §4.7): the policy
                // that applied, written out.
                text(w, "sp", &p.sp)?;
                if !p.np.is_empty() {
                    text(w, "np", &p.np)?;
                }
                text(w, "testing", if p.testing { "y" } else { "n" })?;
                text(w, "fo", &p.fo)?;
                Ok(())
            })?;
        Ok(())
    }
}

fn write_record(w: &mut Writer<Vec<u8>>, row: &RowKey, count: u64) -> io::Result<()> {
    let aligned = |pass: bool| if pass { "pass" } else { "fail" };
    w.create_element("record").write_inner_content(|w| {
        w.create_element("row").write_inner_content(|w| {
            text(w, "source_ip", &row.source_ip)?;
            text(w, "count", &count.to_string())?;
            w.create_element("policy_evaluated")
                .write_inner_content(|w| {
                    text(w, "disposition", &row.disposition)?;
                    text(w, "dkim", aligned(row.dkim_aligned))?;
                    text(w, "spf", aligned(row.spf_aligned))?;
                    for (kind, comment) in &row.reasons {
                        w.create_element("reason").write_inner_content(|w| {
                            text(w, "type", kind)?;
                            if let Some(comment) = comment {
                                text(w, "comment", comment)?;
                            }
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
        w.create_element("identifiers").write_inner_content(|w| {
            if let Some(to) = &row.envelope_to {
                text(w, "envelope_to", to)?;
            }
            text(w, "envelope_from", &row.envelope_from)?;
            text(w, "header_from", &row.header_from)?;
            Ok(())
        })?;
        w.create_element("auth_results").write_inner_content(|w| {
            for (domain, selector, result) in &row.dkim {
                w.create_element("dkim").write_inner_content(|w| {
                    text(w, "domain", domain)?;
                    text(w, "selector", selector)?;
                    text(w, "result", result)?;
                    Ok(())
                })?;
            }
            // Always the one SPF result, for the MAIL FROM identity (RFC 9990 §3.1.3; the
            // schema's SPFDomainScope is `mfrom` only). Events stored before this kept the
            // null sender's as scope `helo`: the same identity (RFC 7208 §2.4), written as
            // `mfrom`.
            let (domain, _scope, result) = &row.spf;
            w.create_element("spf").write_inner_content(|w| {
                text(w, "domain", domain)?;
                text(w, "scope", "mfrom")?;
                text(w, "result", result)?;
                Ok(())
            })?;
            Ok(())
        })?;
        Ok(())
    })?;
    Ok(())
}

/// `<name>escaped text</name>`.
fn text(w: &mut Writer<Vec<u8>>, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
