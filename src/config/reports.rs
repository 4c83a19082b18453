//! The `[reports]` section: DMARC aggregate (and failure) reports we send, and the reports
//! other receivers send us. Sending is off unless asked for; `report send --dry-run` works
//! without it.

use super::error::ConfigError;
use super::raw::RawReports;
use super::service::{normalize_domain, ErrAt};
use super::smtp::RelayTls;
use super::smtp::{check_relay, parse_relay_tls};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_REPORT_CHECK_INTERVAL: Duration = Duration::from_secs(600);
pub const DEFAULT_REPORT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_REPORT_RETRY: Duration = Duration::from_secs(1800);
pub const DEFAULT_FAILURE_REPORTS_PER_HOUR: u32 = 10;
/// Reports we receive: the largest decompressed XML we read (a zip or gzip bomb stops here).
pub const DEFAULT_MAX_IMPORT_SIZE: usize = 10 * 1024 * 1024;

/// Where our report messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportDelivery {
    /// `host:port` of the next SMTP hop (the existing relay client).
    Relay(String),
    /// A directory the messages are written to as `.eml` files (dry runs, or another
    /// program sends them).
    Outbox(PathBuf),
}

/// What to do with a received report about a domain we do not own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignReports {
    Keep,
    Drop,
}

#[derive(Debug, Clone)]
pub struct ReportsConfig {
    /// Send aggregate reports from `serve` (RFC 9990).
    pub aggregate: bool,
    /// Send failure reports (RFC 6591 / `ruf=`).
    pub failure: bool,
    /// The reporting organization (`org_name`; default: the authserv-id).
    pub org_name: Option<String>,
    /// The reports' From address and `email` (required to send).
    pub email: Option<String>,
    pub extra_contact_info: Option<String>,
    /// `None`: nowhere configured (sending needs one).
    pub delivery: Option<ReportDelivery>,
    pub relay_tls: RelayTls,
    pub relay_ca_file: Option<PathBuf>,
    /// How often `serve` looks for finished periods.
    pub check_interval: Duration,
    /// Tries per report before it is given up (`failed`).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failure.
    pub retry: Duration,
    /// Failure reports per policy domain per hour.
    pub failure_per_hour: u32,
    /// Replace the local parts of addresses in failure reports.
    pub redact_local_parts: bool,
    /// Addresses whose mail is a report to import (`rua=` destinations we publish).
    pub rua_addresses: Vec<String>,
    /// Domains we own: received reports about others are kept or dropped as `foreign` says.
    pub owned_domains: Vec<String>,
    pub foreign: ForeignReports,
    /// Report mail to `rua_addresses` is still delivered (true) or only imported.
    pub deliver_imported: bool,
    /// Largest decompressed report read.
    pub max_import_size: usize,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            aggregate: false,
            failure: false,
            org_name: None,
            email: None,
            extra_contact_info: None,
            delivery: None,
            relay_tls: RelayTls::None,
            relay_ca_file: None,
            check_interval: DEFAULT_REPORT_CHECK_INTERVAL,
            max_attempts: DEFAULT_REPORT_MAX_ATTEMPTS,
            retry: DEFAULT_REPORT_RETRY,
            failure_per_hour: DEFAULT_FAILURE_REPORTS_PER_HOUR,
            redact_local_parts: true,
            rua_addresses: Vec::new(),
            owned_domains: Vec::new(),
            foreign: ForeignReports::Keep,
            deliver_imported: true,
            max_import_size: DEFAULT_MAX_IMPORT_SIZE,
        }
    }
}

/// `local@domain` with a domain that is one; lower-cased domain.
fn address(text: &str) -> Option<String> {
    let text = text.trim();
    let (local, domain) = text.rsplit_once('@')?;
    let ok = !local.is_empty() && !local.contains(|c: char| c.is_whitespace() || c.is_control());
    Some(format!(
        "{local}@{}",
        normalize_domain(domain).filter(|_| ok)?
    ))
}

pub(super) fn reports_from_raw(
    raw: RawReports,
    base: &Path,
    err: &ErrAt<'_>,
) -> Result<ReportsConfig, ConfigError> {
    let mut r = ReportsConfig {
        aggregate: raw.aggregate.unwrap_or(false),
        failure: raw.failure.unwrap_or(false),
        redact_local_parts: raw.redact_local_parts.unwrap_or(true),
        deliver_imported: raw.deliver_imported.unwrap_or(true),
        extra_contact_info: raw.extra_contact_info,
        ..ReportsConfig::default()
    };
    if let Some(name) = raw.org_name {
        if name.get_ref().trim().is_empty() {
            return Err(err(name.span(), "must not be empty".into()));
        }
        r.org_name = Some(name.get_ref().trim().to_string());
    }
    if let Some(email) = &raw.email {
        r.email = Some(
            address(email.get_ref())
                .ok_or_else(|| err(email.span(), "must be an address local@domain".into()))?,
        );
    }
    r.delivery = match (raw.relay, raw.outbox) {
        (Some(relay), Some(_)) => {
            return Err(err(
                relay.span(),
                "give either `reports.relay` or `reports.outbox`, not both".into(),
            ))
        }
        (Some(relay), None) => Some(ReportDelivery::Relay(
            check_relay(relay.get_ref()).map_err(|m| err(relay.span(), m))?,
        )),
        (None, Some(dir)) => Some(ReportDelivery::Outbox(base.join(dir.get_ref()))),
        (None, None) => None,
    };
    if let Some(t) = raw.relay_tls {
        r.relay_tls = parse_relay_tls(t.get_ref()).map_err(|m| err(t.span(), m))?;
    }
    r.relay_ca_file = raw.relay_ca_file.map(|f| base.join(f.get_ref()));
    let positive = |v: Option<toml::Spanned<u64>>, slot: &mut Duration| {
        if let Some(s) = v {
            if *s.get_ref() == 0 {
                return Err(err(s.span(), "must be greater than 0".into()));
            }
            *slot = Duration::from_secs(*s.get_ref());
        }
        Ok(())
    };
    positive(raw.check_interval_secs, &mut r.check_interval)?;
    positive(raw.retry_secs, &mut r.retry)?;
    if let Some(n) = raw.max_attempts {
        if *n.get_ref() == 0 {
            return Err(err(n.span(), "must be at least 1".into()));
        }
        r.max_attempts = *n.get_ref();
    }
    if let Some(n) = raw.failure_per_hour {
        r.failure_per_hour = *n.get_ref();
    }
    if let Some(n) = raw.max_import_size {
        if *n.get_ref() < 1024 {
            return Err(err(n.span(), "must be at least 1024 bytes".into()));
        }
        r.max_import_size = *n.get_ref();
    }
    for a in raw.rua_addresses.unwrap_or_default() {
        r.rua_addresses.push(
            address(a.get_ref())
                .ok_or_else(|| err(a.span(), format!("`{}` is not an address", a.get_ref())))?,
        );
    }
    for d in raw.owned_domains.unwrap_or_default() {
        r.owned_domains.push(
            normalize_domain(d.get_ref())
                .ok_or_else(|| err(d.span(), format!("`{}` is not a domain", d.get_ref())))?,
        );
    }
    if let Some(f) = raw.foreign {
        r.foreign = match f.get_ref().trim() {
            "keep" => ForeignReports::Keep,
            "drop" => ForeignReports::Drop,
            other => {
                return Err(err(
                    f.span(),
                    format!("`{other}` is not one of \"keep\", \"drop\""),
                ))
            }
        };
    }
    if (r.aggregate || r.failure) && (r.email.is_none() || r.delivery.is_none()) {
        let span = raw.email.as_ref().map(|e| e.span()).unwrap_or(0..0);
        return Err(err(
            span,
            "sending reports needs `reports.email` and `reports.relay` or `reports.outbox`".into(),
        ));
    }
    Ok(r)
}
