//! DMARC failure reports (RFC 6591 ARF as RFC 9991 §5 augments it, `ruf=` with `fo=`): off
//! unless `reports.failure` is on.
//!
//! At the end of a message the door only checks whether a report is due and, if so, hands
//! the message's header section (capped) to a bounded queue: a task off the hot path
//! applies the per-domain hourly limit, verifies the destinations like aggregate reports,
//! redacts the local parts of addresses (RFC 6590) when configured, composes the ARF message
//! with mail-auth's generator and sends it the way aggregate reports go.
//!
//! RFC 9991 against RFC 7489 §7.3, as the task applies it:
//! - `Identity-Alignment` lists the mechanisms that *failed* to authenticate an aligned
//!   identifier (RFC 7489: those that produced one), `none` if none did;
//! - `DKIM-Domain`, `DKIM-Identity` and `DKIM-Selector` are required for a DKIM failure of an
//!   aligned identifier, `SPF-DNS` for an SPF failure of one;
//! - `ruf=` in a record with `psd=y` is not considered (§2).

use super::send::Sender;
use crate::auth::{AuthResult, Connection, DkimOutcome, Outcome, SpfCheck};
use crate::config::Config;
use crate::dns::Dns;
use crate::identity::limits::{Counts, Key, Rule, HOUR};
use crate::policy::{Action, Verdict};
use mail_auth::report::{
    AuthFailureType, DeliveryResult, Feedback, FeedbackType, IdentityAlignment,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Reports waiting for the task; beyond, new ones are dropped and counted.
const QUEUE: usize = 256;
/// The header section kept for a report.
const MAX_HEADERS: usize = 64 * 1024;

/// One message a failure report is due for.
#[derive(Debug, Clone)]
pub struct FailureCase {
    pub domain: String,
    pub ruf: Vec<(String, usize)>,
    pub source_ip: IpAddr,
    pub mail_from: String,
    pub rcpt: Option<String>,
    /// The header section as received (capped).
    pub headers: String,
    pub authentication_results: Option<String>,
    pub arrival: i64,
    pub delivery: DeliveryResult,
    /// Where the DMARC record (and its `ruf=`) was found.
    pub record_domain: String,
    /// `adkim=s` / `aspf=s`.
    pub strict_dkim: bool,
    pub strict_spf: bool,
    /// Every DKIM signature's evaluation.
    pub dkim: Vec<DkimOutcome>,
    /// SPF on the MAIL FROM identity (none for the null sender: DMARC has no SPF identifier
    /// to align then).
    pub spf: Option<SpfCheck>,
}

impl FailureCase {
    /// The case for a decided message, when its domain's `fo=` asks for one (RFC 7489
    /// §6.3): `0` when neither DKIM nor SPF gave an aligned pass, `1` when either did not,
    /// `d` when a DKIM signature failed, `s` when SPF failed.
    pub fn of(
        conn: &Connection,
        mail_from: Option<&str>,
        rcpts: &[String],
        outcome: &Outcome,
        verdict: &Verdict,
        authentication_results: Option<&str>,
        raw: &[u8],
    ) -> Option<FailureCase> {
        let dmarc = outcome.dmarc.as_ref()?;
        let policy = dmarc.published.as_ref()?;
        if policy.ruf.is_empty() {
            return None;
        }
        let dkim_failed = outcome
            .dkim
            .iter()
            .any(|d| matches!(d.result, AuthResult::Fail | AuthResult::Permerror));
        let spf_failed = outcome
            .spf
            .as_ref()
            .is_some_and(|s| s.mail_from.result == AuthResult::Fail);
        let due = policy.fo.split(':').any(|option| match option {
            "0" => !dmarc.dkim_aligned && !dmarc.spf_aligned,
            "1" => !dmarc.dkim_aligned || !dmarc.spf_aligned,
            "d" => dkim_failed,
            "s" => spf_failed,
            _ => false,
        });
        if !due {
            return None;
        }
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |i| i + 2);
        let headers = String::from_utf8_lossy(&raw[..end.min(MAX_HEADERS)]).into_owned();
        Some(FailureCase {
            domain: dmarc.domain.clone(),
            ruf: policy.ruf.clone(),
            source_ip: conn.ip,
            mail_from: mail_from
                .map(str::to_string)
                .or_else(|| outcome.spf.as_ref().map(|s| s.mail_from.identity.clone()))
                .unwrap_or_default(),
            rcpt: rcpts.first().cloned(),
            headers,
            authentication_results: authentication_results.map(str::to_string),
            arrival: crate::dates::now_ms() / 1000,
            delivery: match verdict.action {
                Action::Accept => DeliveryResult::Delivered,
                Action::Quarantine => DeliveryResult::Spam,
                Action::Reject => DeliveryResult::Reject,
                Action::Tempfail => DeliveryResult::Other,
            },
            record_domain: policy.domain.clone(),
            strict_dkim: policy.adkim == "s",
            strict_spf: policy.aspf == "s",
            dkim: outcome.dkim.clone(),
            spf: outcome
                .spf
                .as_ref()
                .filter(|s| !s.null_sender)
                .map(|s| s.mail_from.clone()),
        })
    }
}

/// The doors' handle: cheap to clone; submitting never waits.
#[derive(Clone, Default)]
pub struct FailureReports {
    tx: Option<mpsc::Sender<FailureCase>>,
    dropped: Arc<AtomicU64>,
}

impl FailureReports {
    /// Whether a task takes reports (so a door should look for due ones).
    pub fn is_running(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a report, or drops it (counted) when the task is behind.
    pub fn submit(&self, case: FailureCase) {
        if let Some(tx) = &self.tx {
            if tx.try_send(case).is_err() {
                self.dropped.fetch_add(1, Relaxed);
                tracing::warn!("failure-report queue full; report dropped");
            }
        }
    }

    /// Reports dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

/// The queue: the doors' handle, and the end the task reads.
pub fn queue() -> (FailureReports, mpsc::Receiver<FailureCase>) {
    let (tx, rx) = mpsc::channel::<FailureCase>(QUEUE);
    let handle = FailureReports {
        tx: Some(tx),
        dropped: Arc::new(AtomicU64::new(0)),
    };
    (handle, rx)
}

/// The task: runs until `stop` turns true, asking `running` for the configuration and
/// resolver in force for each report (a reload that turns failure reports off stops them at
/// once).
pub async fn run(
    mut rx: mpsc::Receiver<FailureCase>,
    running: impl Fn() -> (Arc<Config>, Arc<Dns>),
    mut stop: watch::Receiver<bool>,
    counts: Arc<dyn Counts>,
) {
    {
        loop {
            let case = tokio::select! {
                case = rx.recv() => match case {
                    Some(c) => c,
                    None => return,
                },
                _ = stop.changed() => return,
            };
            let (config, dns) = running();
            let reports = &config.reports;
            if !reports.failure {
                continue;
            }
            // Per domain per hour, in the counts the abuse limits use: this host's memory, or
            // the fleet's PostgreSQL store (off the async threads: it may wait on it).
            let (counts, key) = (
                Arc::clone(&counts),
                Key::Reports(case.domain.to_ascii_lowercase()),
            );
            let rule = Rule {
                window: HOUR,
                max: reports.failure_per_hour,
                block: Duration::ZERO,
                capacity: REPORT_DOMAINS,
            };
            let allowed =
                tokio::task::spawn_blocking(move || counts.take(&key, rule, Instant::now()))
                    .await
                    .unwrap_or(false);
            if !allowed {
                tracing::info!(domain = %case.domain, "failure report over the hourly limit; not sent");
                continue;
            }
            let sender = Sender::new(&config);
            send(&sender, &dns, case, reports.redact_local_parts).await;
        }
    }
}

/// Domains whose failure reports are counted apart in memory (the rest share one count).
const REPORT_DOMAINS: usize = 10_000;

async fn send(sender: &Sender, dns: &crate::dns::Dns, case: FailureCase, redact_parts: bool) {
    // RFC 9991 §2: `ruf=` in a Public Suffix Domain's record (`psd=y`) is not considered.
    match dns.dmarc_record(&case.record_domain).await {
        Ok(Some(record)) if record.psd == mail_auth::dmarc::Psd::Yes => {
            tracing::info!(domain = %case.domain, record = %case.record_domain, "failure report not sent: ruf= of a psd=y record");
            return;
        }
        Ok(_) => {}
        Err(why) => {
            tracing::warn!(domain = %case.domain, reason = %why, "failure report not sent: DNS failure reading the DMARC record");
            return;
        }
    }
    let findings = match Findings::of(dns, &case).await {
        Ok(f) => f,
        Err(why) => {
            tracing::warn!(domain = %case.domain, reason = %why, "failure report not sent: DNS failure checking alignment");
            return;
        }
    };
    let addresses: Vec<String> = case.ruf.iter().map(|(a, _)| a.clone()).collect();
    let Some(authorised) = dns
        .authorised_report_addresses(&case.domain, &addresses)
        .await
    else {
        tracing::warn!(domain = %case.domain, "failure report not sent: DNS failure verifying destinations");
        return;
    };
    let message = compose(sender, &case, &findings, redact_parts);
    let to: Vec<String> = case
        .ruf
        .iter()
        .filter(|(a, limit)| authorised.contains(a) && (*limit == 0 || message.len() <= *limit))
        .map(|(a, _)| a.clone())
        .collect();
    if to.is_empty() {
        tracing::info!(domain = %case.domain, "failure report: no destination may receive it");
        return;
    }
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "failure_{}_{}_{}.eml",
        case.domain,
        case.arrival,
        SEQUENCE.fetch_add(1, Relaxed)
    );
    match sender.deliver_raw(&message, &name, &to).await {
        Ok(_) => tracing::info!(domain = %case.domain, to = ?to, "DMARC failure report sent"),
        Err(why) => {
            tracing::warn!(domain = %case.domain, reason = %why, "DMARC failure report not sent")
        }
    }
}

/// What RFC 9991 §5 asks a report to say about the aligned identifiers that failed.
struct Findings {
    alignment: IdentityAlignment,
    /// The first failed DKIM signature of an aligned domain.
    dkim: Option<DkimOutcome>,
    /// `SPF-DNS` (RFC 6591 §3.2) for a failed SPF identifier that is aligned.
    spf_dns: Option<String>,
}

impl Findings {
    async fn of(dns: &crate::dns::Dns, case: &FailureCase) -> Result<Findings, String> {
        let from = case.domain.to_ascii_lowercase();
        let mut from_org: Option<String> = None;
        // Identifier alignment (RFC 9989 §4.4): the same name when strict, the same
        // Organizational Domain when relaxed.
        let mut aligned = async |domain: &str, strict: bool| -> Result<bool, String> {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain == from {
                return Ok(true);
            }
            if strict {
                return Ok(false);
            }
            if from_org.is_none() {
                from_org = Some(dns.organizational_domain(&from).await?);
            }
            Ok(from_org.as_deref() == Some(dns.organizational_domain(&domain).await?.as_str()))
        };
        let mut dkim = None;
        for signature in &case.dkim {
            if signature.result != AuthResult::Pass
                && aligned(&signature.domain, case.strict_dkim).await?
            {
                dkim = Some(signature.clone());
                break;
            }
        }
        let mut spf_failed = None;
        if let Some(spf) = case.spf.as_ref().filter(|s| s.result != AuthResult::Pass) {
            if aligned(&spf.domain, case.strict_spf).await? {
                spf_failed = Some(spf.domain.clone());
            }
        }
        let spf_dns = match spf_failed {
            Some(domain) => Some(spf_dns(dns, &domain).await),
            None => None,
        };
        let alignment = match (dkim.is_some(), spf_dns.is_some()) {
            (true, true) => IdentityAlignment::DkimSpf,
            (true, false) => IdentityAlignment::Dkim,
            (false, true) => IdentityAlignment::Spf,
            (false, false) => IdentityAlignment::None,
        };
        Ok(Findings {
            alignment,
            dkim,
            spf_dns,
        })
    }
}

/// RFC 6591 §3.2's `SPF-DNS` value: `txt : <domain> : <record>`, the SPF record as
/// retrieved now (the one evaluated is not kept); what DNS said when there is none.
async fn spf_dns(dns: &crate::dns::Dns, domain: &str) -> String {
    let record = match dns.txt_strings(domain).await {
        Ok(found) => found
            .into_iter()
            .find(|t| {
                let t = t.trim_start();
                t.len() >= 6 && t[..6].eq_ignore_ascii_case("v=spf1")
            })
            .unwrap_or_else(|| "(no SPF record)".to_string()),
        Err(why) => format!("(lookup failed: {why})"),
    };
    format!("txt : {domain} : {}", record.replace(['\r', '\n'], " "))
}

/// The ARF message (RFC 5965 / RFC 6591, RFC 9991 §5) through mail-auth's generator.
fn compose(
    sender: &Sender,
    case: &FailureCase,
    findings: &Findings,
    redact_parts: bool,
) -> Vec<u8> {
    let hide = |text: &str| {
        if redact_parts {
            redact(text)
        } else {
            text.to_string()
        }
    };
    let (headers, mail_from) = (hide(&case.headers), hide(&case.mail_from));
    let rcpt = case.rcpt.as_deref().map(hide);
    let ar = case.authentication_results.as_deref().map(hide);
    let mut feedback = Feedback::new(FeedbackType::AuthFailure)
        .with_auth_failure(AuthFailureType::Dmarc)
        .with_arrival_date(case.arrival)
        .with_source_ip(case.source_ip)
        .with_reported_domain(case.domain.clone())
        .with_original_mail_from(mail_from)
        .with_delivery_result(case.delivery)
        .with_identity_alignment(findings.alignment)
        .with_user_agent(concat!("authmilter/", env!("CARGO_PKG_VERSION")))
        .with_reporting_mta(sender.reporter.org_name.clone())
        .with_headers(headers);
    if let Some(rcpt) = rcpt {
        feedback = feedback.with_original_rcpt_to(rcpt);
    }
    if let Some(dkim) = &findings.dkim {
        let identity = dkim
            .identity
            .as_deref()
            .map(hide)
            .unwrap_or_else(|| format!("@{}", dkim.domain));
        feedback = feedback
            .with_dkim_domain(dkim.domain.clone())
            .with_dkim_identity(identity)
            .with_dkim_selector(dkim.selector.clone());
    }
    if let Some(spf_dns) = &findings.spf_dns {
        feedback = feedback.with_spf_dns(spf_dns.clone());
    }
    // RFC 6591 §3.1 (kept by RFC 9991): Authentication-Results appears in every auth-failure
    // report; without the door's own, the DMARC result it is about.
    let ar = ar.unwrap_or_else(|| {
        format!(
            "{}; dmarc=fail header.from={}",
            sender.reporter.org_name, case.domain
        )
    });
    feedback = feedback.with_authentication_results(ar);
    let to = case
        .ruf
        .iter()
        .map(|(a, _)| a.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let subject = format!(
        "DMARC failure report: {} from {}",
        case.domain, case.source_ip
    );
    let mut out = Vec::new();
    feedback
        .write_rfc5322(
            (
                sender.reporter.org_name.as_str(),
                sender.reporter.email.as_str(),
            ),
            &to,
            &subject,
            &mut out,
        )
        .expect("composing into memory cannot fail");
    out
}

/// Replaces the local part of every address in `text` with `redacted` (RFC 6590 §4).
pub fn redact(text: &str) -> String {
    let atom = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.\"".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut pending = String::new();
    for c in text.chars() {
        if c == '@' && !pending.is_empty() {
            out.push_str("redacted@");
            pending.clear();
        } else if atom(c) {
            pending.push(c);
        } else {
            out.push_str(&pending);
            pending.clear();
            out.push(c);
        }
    }
    out.push_str(&pending);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_local_parts_only() {
        assert_eq!(
            redact("From: Alice <alice.smith@example.com>, bob@example.net\r\nSubject: hi"),
            "From: Alice <redacted@example.com>, redacted@example.net\r\nSubject: hi"
        );
        assert_eq!(redact("no address here"), "no address here");
    }

    #[test]
    fn the_hourly_limit_counts_per_domain_and_resets() {
        use crate::identity::limits::Memory;
        let counts = Memory::default();
        let rule = Rule {
            window: HOUR,
            max: 2,
            block: Duration::ZERO,
            capacity: REPORT_DOMAINS,
        };
        let key = |d: &str| Key::Reports(d.to_string());
        let t0 = Instant::now();
        assert!(counts.take(&key("a.example"), rule, t0));
        assert!(counts.take(&key("a.example"), rule, t0));
        assert!(!counts.take(&key("a.example"), rule, t0));
        assert!(counts.take(&key("b.example"), rule, t0));
        assert!(
            counts.take(&key("a.example"), rule, t0 + HOUR),
            "a new hour"
        );
    }
}
