//! Reports received, from parsed to stored: what each report in an input became (stored,
//! a duplicate, dropped as foreign, refused), for `report import` to print and the importer
//! task to count.
//!
//! A report is about one policy domain. With `reports.owned_domains` set, a report about a
//! domain outside them (or their subdomains) is foreign: kept or dropped as
//! `reports.foreign` says. Without the list every domain counts as ours.

use super::import::{parse_input, ImportError};
use crate::config::{ForeignReports, ReportsConfig};
use crate::dates::format_rfc3339;
use crate::store::{cut, Inserted, NewReport, NewRow, Store};
use mail_auth::report::{
    ActionDisposition, Alignment, Discovery, Disposition, DkimResult, DmarcResult, PolicyOverride,
    Report, SPFDomainScope, SpfResult,
};
use serde_json::{json, Value};
use std::fmt;

/// Text taken from a report is cut to this (RFC 5322 §2.1.1's line limit), so one hostile
/// field cannot make a row of megabytes.
const MAX_TEXT: usize = 998;

/// The `[reports]` settings the importer follows.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    pub max_size: usize,
    pub owned_domains: Vec<String>,
    pub foreign: ForeignReports,
}

impl From<&ReportsConfig> for ImportSettings {
    fn from(c: &ReportsConfig) -> Self {
        ImportSettings {
            max_size: c.max_import_size,
            owned_domains: c.owned_domains.clone(),
            foreign: c.foreign,
        }
    }
}

impl ImportSettings {
    /// Whether `domain` is one of ours (or a subdomain of one); all are without a list.
    pub fn owns(&self, domain: &str) -> bool {
        self.owned_domains.is_empty()
            || self.owned_domains.iter().any(|d| {
                domain == d
                    || domain
                        .strip_suffix(d.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            })
    }
}

/// Which report it was, for the lines `report import` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    pub org_name: String,
    pub email: String,
    pub report_id: String,
    pub domain: String,
    /// Unix seconds.
    pub begin: i64,
    pub end: i64,
    pub rows: usize,
    pub messages: u64,
}

/// What became of one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Stored {
        id: i64,
        about: About,
    },
    /// Already stored (same reporter address and report id) under this id.
    Duplicate {
        id: i64,
        about: About,
    },
    /// About a domain we do not own, and `reports.foreign = "drop"`.
    Dropped {
        about: About,
    },
    Refused(ImportError),
    /// A failure report (RFC 9991 / ARF, or a plain-text notice), stored under this id.
    FailureStored {
        id: i64,
        about: String,
    },
    /// A failure report already stored (same report Message-ID).
    FailureDuplicate {
        id: i64,
        about: String,
    },
    /// A failure report whose fields could not be read.
    FailureRefused(String),
    /// The store failed (the report may come again: nothing was written).
    StoreFailed(String),
}

/// One report of an input and its fate; `part` names where in the input it was, `repairs`
/// what was repaired to read it (kept with the stored report's errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub part: Option<String>,
    pub fate: Fate,
    pub repairs: Vec<String>,
}

/// How a repair reads among the stored report's errors.
pub const REPAIRED: &str = "repaired on import: ";

impl fmt::Display for About {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "report {} from {} <{}> about {}, {} to {}, {} rows, {} messages",
            self.report_id,
            self.org_name,
            self.email,
            self.domain,
            format_rfc3339(self.begin.saturating_mul(1000)),
            format_rfc3339(self.end.saturating_mul(1000)),
            self.rows,
            self.messages
        )
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Stored { id, about } => write!(f, "stored as #{id}: {about}"),
            Fate::Duplicate { id, about } => write!(f, "duplicate of #{id}: {about}"),
            Fate::Dropped { about } => write!(
                f,
                "dropped (not an owned domain, reports.foreign = \"drop\"): {about}"
            ),
            Fate::Refused(e) => write!(f, "refused: {e}"),
            Fate::FailureStored { id, about } => {
                write!(f, "failure report stored as #{id}: {about}")
            }
            Fate::FailureDuplicate { id, about } => {
                write!(f, "failure report, duplicate of #{id}: {about}")
            }
            Fate::FailureRefused(why) => write!(f, "refused failure report: {why}"),
            Fate::StoreFailed(e) => write!(f, "not stored: {e}"),
        }
    }
}

impl fmt::Display for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.part {
            Some(part) => write!(f, "[{part}] {}", self.fate)?,
            None => write!(f, "{}", self.fate)?,
        }
        if !self.repairs.is_empty()
            && !matches!(self.fate, Fate::Refused(_) | Fate::FailureRefused(_))
        {
            write!(f, " (repaired: {})", self.repairs.join("; "))?;
        }
        Ok(())
    }
}

/// Parses `input` and stores every report in it that is valid, ours (or kept) and new.
/// Received at `now_ms`.
pub fn import(
    store: &mut Store,
    input: &[u8],
    settings: &ImportSettings,
    now_ms: i64,
) -> Vec<Imported> {
    // A failure report is a message; an XML, gzip or zip input never is one.
    if input.len() <= settings.max_size && super::import::is_message(input) {
        if let Some(failure) = super::failure_in::parse(input, now_ms) {
            return vec![Imported {
                part: None,
                fate: store_failure(store, failure, settings),
                repairs: Vec::new(),
            }];
        }
    }
    parse_input(input, settings.max_size)
        .into_iter()
        .map(|found| {
            let fate = match found.report {
                Err(e) => Fate::Refused(e),
                Ok(report) => store_one(store, &report, &found.repairs, settings, now_ms),
            };
            Imported {
                part: found.part,
                fate,
                repairs: found.repairs,
            }
        })
        .collect()
}

/// A failure report: stored once per report message, unless about a domain we do not own
/// and `reports.foreign = "drop"`.
fn store_failure(
    store: &mut Store,
    failure: Result<crate::store::NewFailureReport, String>,
    settings: &ImportSettings,
) -> Fate {
    use crate::store::FailureInserted;
    let r = match failure {
        Ok(r) => r,
        Err(why) => return Fate::FailureRefused(why),
    };
    let domain = r.domain.clone().unwrap_or_default();
    let about = format!(
        "{} about {} from {} (reported by {})",
        r.auth_failure.as_deref().unwrap_or("auth-failure"),
        if domain.is_empty() { "-" } else { &domain },
        r.source_ip.as_deref().unwrap_or("-"),
        r.reporter
    );
    if settings.foreign == ForeignReports::Drop && !settings.owns(&domain) {
        return Fate::Dropped {
            about: About {
                org_name: r.reporter.clone(),
                email: r.reporter.clone(),
                report_id: r.report_message_id.clone().unwrap_or_default(),
                domain,
                begin: r.arrival.unwrap_or(0),
                end: r.arrival.unwrap_or(0),
                rows: 0,
                messages: u64::from(r.incidents),
            },
        };
    }
    match store.insert_failure_report(&r) {
        Ok(FailureInserted::Stored(id)) => Fate::FailureStored { id, about },
        Ok(FailureInserted::Duplicate(id)) => Fate::FailureDuplicate { id, about },
        Err(e) => Fate::StoreFailed(e.to_string()),
    }
}

fn store_one(
    store: &mut Store,
    report: &Report,
    repairs: &[String],
    settings: &ImportSettings,
    now_ms: i64,
) -> Fate {
    let mut new = to_new_report(report, now_ms);
    // The operator sees what was repaired where the report's own errors are.
    new.errors
        .extend(repairs.iter().map(|r| text(&format!("{REPAIRED}{r}"))));
    let about = About {
        org_name: new.org_name.clone(),
        email: new.email.clone(),
        report_id: new.report_id.clone(),
        domain: new.domain.clone(),
        begin: new.date_begin,
        end: new.date_end,
        rows: new.rows.len(),
        messages: new.messages,
    };
    if settings.foreign == ForeignReports::Drop && !settings.owns(&new.domain) {
        return Fate::Dropped { about };
    }
    match store.insert_received_report(&new) {
        Ok(Inserted::Stored(id)) => Fate::Stored { id, about },
        Ok(Inserted::Duplicate(id)) => Fate::Duplicate { id, about },
        Err(e) => Fate::StoreFailed(e.to_string()),
    }
}

fn text(s: &str) -> String {
    cut(s.trim(), MAX_TEXT).to_string()
}

fn optional(s: Option<&str>) -> Option<String> {
    s.map(text).filter(|s| !s.is_empty())
}

/// A parsed (and checked) report as the store keeps it.
pub fn to_new_report(report: &Report, now_ms: i64) -> NewReport {
    let meta = &report.report_metadata;
    let p = &report.policy_published;
    let domain = text(p.domain.trim_end_matches('.')).to_ascii_lowercase();
    let mut messages = 0u64;
    let mut dmarc_pass = 0u64;
    let rows: Vec<NewRow> = report
        .record
        .iter()
        .map(|r| {
            let count = u64::from(r.row.count);
            let pe = &r.row.policy_evaluated;
            messages += count;
            if pe.dkim == DmarcResult::Pass || pe.spf == DmarcResult::Pass {
                dmarc_pass += count;
            }
            let dkim: Vec<Value> = r
                .auth_results
                .dkim
                .iter()
                .map(|d| {
                    json!({"domain": text(&d.domain), "selector": text(&d.selector),
                        "result": dkim_word(d.result), "human_result": optional(d.human_result.as_deref())})
                })
                .collect();
            let spf: Vec<Value> = r
                .auth_results
                .spf
                .iter()
                .map(|s| {
                    json!({"domain": text(&s.domain), "scope": scope_word(s.scope),
                        "result": spf_word(s.result), "human_result": optional(s.human_result.as_deref())})
                })
                .collect();
            let reasons: Vec<Value> = pe
                .reason
                .iter()
                .map(|o| json!({"type": override_word(o.type_), "comment": optional(o.comment.as_deref())}))
                .collect();
            NewRow {
                source_ip: r.row.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                count,
                disposition: disposition_word(pe.disposition).into(),
                dkim: result_word(pe.dkim).into(),
                spf: result_word(pe.spf).into(),
                header_from: text(&r.identifiers.header_from).to_ascii_lowercase(),
                envelope_from: optional(Some(&r.identifiers.envelope_from)),
                envelope_to: optional(r.identifiers.envelope_to.as_deref()),
                reasons: Value::Array(reasons),
                auth_results: json!({"dkim": dkim, "spf": spf}),
            }
        })
        .collect();
    NewReport {
        received_at: now_ms,
        org_name: text(&meta.org_name),
        email: text(&meta.email),
        report_id: text(&meta.report_id),
        domain: domain.clone(),
        date_begin: i64::try_from(meta.date_range.begin).unwrap_or(i64::MAX),
        date_end: i64::try_from(meta.date_range.end).unwrap_or(i64::MAX),
        policy: json!({
            "domain": domain,
            "adkim": alignment_word(p.adkim),
            "aspf": alignment_word(p.aspf),
            "p": policy_word(p.p),
            "sp": policy_word(p.sp),
            "np": policy_word(p.np),
            "testing": p.testing,
            "fo": optional(p.fo.as_deref()),
            "discovery_method": match p.discovery_method {
                Discovery::Psl => Some("psl"),
                Discovery::Treewalk => Some("treewalk"),
                Discovery::Unspecified => None,
            },
            "version_published": p.version_published,
        }),
        messages,
        dmarc_pass,
        errors: meta.error.iter().take(100).map(|e| text(e)).collect(),
        rows,
    }
}

fn alignment_word(a: Alignment) -> Option<&'static str> {
    match a {
        Alignment::Relaxed => Some("r"),
        Alignment::Strict => Some("s"),
        Alignment::Unspecified => None,
    }
}

fn policy_word(d: Disposition) -> Option<&'static str> {
    match d {
        Disposition::None => Some("none"),
        Disposition::Quarantine => Some("quarantine"),
        Disposition::Reject => Some("reject"),
        Disposition::Unspecified => None,
    }
}

fn disposition_word(d: ActionDisposition) -> &'static str {
    match d {
        ActionDisposition::None => "none",
        ActionDisposition::Pass => "pass",
        ActionDisposition::Quarantine => "quarantine",
        ActionDisposition::Reject => "reject",
        ActionDisposition::Unspecified => "unspecified",
    }
}

fn result_word(r: DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail => "fail",
        DmarcResult::Unspecified => "unspecified",
    }
}

fn dkim_word(r: DkimResult) -> &'static str {
    match r {
        DkimResult::None => "none",
        DkimResult::Pass => "pass",
        DkimResult::Fail => "fail",
        DkimResult::Policy => "policy",
        DkimResult::Neutral => "neutral",
        DkimResult::TempError => "temperror",
        DkimResult::PermError => "permerror",
    }
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::None => "none",
        SpfResult::Neutral => "neutral",
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
    }
}

fn scope_word(s: SPFDomainScope) -> Option<&'static str> {
    match s {
        SPFDomainScope::Helo => Some("helo"),
        SPFDomainScope::MailFrom => Some("mfrom"),
        SPFDomainScope::Unspecified => None,
    }
}

fn override_word(o: PolicyOverride) -> &'static str {
    match o {
        PolicyOverride::LocalPolicy => "local_policy",
        PolicyOverride::MailingList => "mailing_list",
        PolicyOverride::PolicyTestMode => "policy_test_mode",
        PolicyOverride::TrustedForwarder => "trusted_forwarder",
        PolicyOverride::Other => "other",
    }
}
