//! Sending aggregate reports: which reports are due, to whom they may go, and handing them
//! to the next hop (the SMTP front end's relay client) or the outbox, exactly once.
//!
//! Once per policy domain and period (RFC 9990 §2: periods at UTC midnight, the record's
//! `ri=` honoured between one hour and one day). Before a report leaves, its row in
//! `reports_sent` says `pending` with one more attempt counted; only the next hop's 2xx (or
//! the file written to the outbox) makes it `sent`, and a sent report is never sent again. A
//! temporary failure (next hop down, 4xx, DNS) is retried with a doubling wait up to
//! `reports.max_attempts`, then `failed`. Destinations outside the policy domain get the
//! report only when they publish the authorisation record (RFC 7489 §7.1); one whose size
//! limit (`!10m`) the report passes is left out, and logged.

use super::aggregate::{Aggregate, Reporter};
use super::message::compose;
use crate::config::{Config, RelayTls, ReportDelivery};
use crate::dates::{report_period, DAY_MS};
use crate::dns::Dns;
use crate::progress::Progress;
use crate::relay::{ClientInfo, MailParams, NextHop};
use crate::relay::{RelayConfig, RelaySession};
use crate::store::{SentReport, Store, StoreError};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How far back a scheduled run looks for periods not yet reported.
pub const LOOKBACK_MS: i64 = 2 * DAY_MS;

/// Which reports to consider.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Periods that end inside this range (Unix ms).
    pub ending: Range<i64>,
    /// Only this policy domain.
    pub domain: Option<String>,
    /// Describe, send nothing, record nothing.
    pub dry_run: bool,
    /// Retry a pending report now, whatever its wait (by hand).
    pub ignore_wait: bool,
}

/// What became of one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub domain: String,
    pub period: Range<i64>,
    pub report_id: String,
    pub messages: u64,
    /// Destinations it went (or would go) to.
    pub to: Vec<String>,
    /// Destinations left out, with why.
    pub left_out: Vec<(String, String)>,
    pub size: usize,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Dry run: would be sent.
    WouldSend,
    Sent,
    /// Nothing to send it to.
    Skipped(String),
    /// Will be tried again.
    Retry(String),
    /// Given up after `max_attempts`.
    Failed(String),
    /// Sent (or given up) before, not due yet, or no message in the period: not touched.
    AlreadyDone,
}

/// What a run needs besides the store.
pub struct Sender {
    pub reporter: Reporter,
    pub delivery: Option<ReportDelivery>,
    relay_tls: RelayTls,
    relay_ca_file: Option<PathBuf>,
    helo_name: String,
    max_attempts: u32,
    retry_ms: i64,
}

impl Sender {
    pub fn new(config: &Config) -> Sender {
        let r = &config.reports;
        Sender {
            reporter: Reporter {
                org_name: r
                    .org_name
                    .clone()
                    .unwrap_or_else(|| config.authserv_id.clone()),
                email: r
                    .email
                    .clone()
                    .unwrap_or_else(|| format!("dmarc-noreply@{}", config.authserv_id)),
                extra_contact_info: r.extra_contact_info.clone(),
            },
            delivery: r.delivery.clone(),
            relay_tls: r.relay_tls,
            relay_ca_file: r.relay_ca_file.clone(),
            helo_name: config
                .smtp
                .hostname
                .clone()
                .unwrap_or_else(|| config.authserv_id.clone()),
            max_attempts: r.max_attempts,
            retry_ms: r.retry.as_millis() as i64,
        }
    }

    /// The report id: the same for every attempt, so a receiver can drop a duplicate.
    fn report_id(&self, domain: &str, period: &Range<i64>) -> String {
        let submitter = self.reporter.email.rsplit_once('@').map_or("", |(_, d)| d);
        format!(
            "{domain}!{}!{}@{submitter}",
            period.start / 1000,
            period.end / 1000
        )
    }

    /// Sends (or, dry, describes) every report `selection` asks for; `now` in Unix ms.
    pub async fn run(
        &self,
        store: &Arc<Mutex<Store>>,
        dns: &Dns,
        selection: &Selection,
        now: i64,
    ) -> Result<Vec<Sent>, StoreError> {
        self.run_showing(store, dns, selection, now, &Progress::hidden())
            .await
    }

    /// As [`Sender::run`], counting the domains done on `progress`.
    pub async fn run_showing(
        &self,
        store: &Arc<Mutex<Store>>,
        dns: &Dns,
        selection: &Selection,
        now: i64,
        progress: &Progress,
    ) -> Result<Vec<Sent>, StoreError> {
        let ending = selection.ending.clone();
        // Events up to a day before the first period that can end in the range.
        let scan = (ending.start - DAY_MS)..ending.end;
        let domains = match &selection.domain {
            Some(d) => vec![d.to_ascii_lowercase()],
            None => blocking(store, move |s| s.dmarc_domains(scan.start, scan.end)).await?,
        };
        let mut results = Vec::new();
        progress.set_total(domains.len() as u64);
        for domain in domains {
            progress.status(&domain);
            progress.advance(1);
            let interval = self.interval(dns, &domain).await;
            for period in periods(&ending, interval) {
                if period.end > now {
                    continue;
                }
                results.push(
                    self.one(store, dns, &domain, period, selection, now)
                        .await?,
                );
            }
        }
        // A dry run also lists the reports done before; a real run only what it did.
        results.retain(|r| r.state != State::AlreadyDone || (selection.dry_run && r.messages > 0));
        Ok(results)
    }

    /// The domain's `ri=` in seconds (RFC 7489 §6.3; RFC 9990 §2 keeps a day by default):
    /// read from its record now, since the parsed record does not keep it.
    async fn interval(&self, dns: &Dns, domain: &str) -> u64 {
        let records = dns.txt_strings(&format!("_dmarc.{domain}.")).await;
        records
            .ok()
            .and_then(|texts| {
                let record = texts.into_iter().find(|t| t.starts_with("v=DMARC1"))?;
                record.split(';').find_map(|tag| {
                    let (name, value) = tag.split_once('=')?;
                    (name.trim() == "ri").then(|| value.trim().parse::<u64>().ok())?
                })
            })
            .unwrap_or(86_400)
    }

    async fn one(
        &self,
        store: &Arc<Mutex<Store>>,
        dns: &Dns,
        domain: &str,
        period: Range<i64>,
        selection: &Selection,
        now: i64,
    ) -> Result<Sent, StoreError> {
        let report_id = self.report_id(domain, &period);
        let key = (domain.to_string(), period.start);
        let before = blocking(store, move |s| s.sent_report(&key.0, key.1)).await?;
        let mut sent = Sent {
            domain: domain.to_string(),
            period: period.clone(),
            report_id: report_id.clone(),
            messages: 0,
            to: Vec::new(),
            left_out: Vec::new(),
            size: 0,
            state: State::AlreadyDone,
        };
        let attempts = match &before {
            Some(b) if b.state != "pending" => {
                sent.messages = b.messages;
                sent.to = b.destinations.clone();
                return Ok(sent);
            }
            Some(b) if !selection.ignore_wait && b.next_attempt.is_some_and(|t| t > now) => {
                return Ok(sent)
            }
            Some(b) => b.attempts,
            None => 0,
        };
        let (d, p, id) = (domain.to_string(), period.clone(), report_id.clone());
        let Some(report) = blocking(store, move |s| Aggregate::collect(s, &d, p, id)).await? else {
            // No message counted in this period: there is no report to make.
            return Ok(sent);
        };
        sent.messages = report.messages;
        let addresses: Vec<String> = report.policy.rua.iter().map(|(a, _)| a.clone()).collect();
        let Some(authorised) = dns
            .authorised_report_addresses(&report.policy.domain, &addresses)
            .await
        else {
            let why = "DNS failure verifying the destinations".to_string();
            return self
                .after_failure(store, sent, &report, attempts, why, selection, now)
                .await;
        };
        let message = compose(&report, &self.reporter, &addresses, now / 1000);
        sent.size = message.attachment_size;
        for (address, limit) in &report.policy.rua {
            if !authorised.contains(address) {
                sent.left_out.push((
                    address.clone(),
                    "outside the domain and not authorised (_report._dmarc)".into(),
                ));
            } else if *limit > 0 && message.attachment_size > *limit {
                sent.left_out.push((
                    address.clone(),
                    format!(
                        "report of {} bytes over its limit of {limit}",
                        message.attachment_size
                    ),
                ));
            } else {
                sent.to.push(address.clone());
            }
        }
        for (address, why) in &sent.left_out {
            tracing::warn!(domain, report_id = %report_id, destination = %address, reason = %why,
                "DMARC report destination left out");
        }
        if sent.to.is_empty() {
            sent.state = State::Skipped("no destination may receive it".into());
            if !selection.dry_run {
                self.save(store, &sent, attempts, None, now).await?;
            }
            return Ok(sent);
        }
        if selection.dry_run {
            sent.state = State::WouldSend;
            return Ok(sent);
        }
        // Counted before it leaves: a crash from here on retries with the same Report-ID.
        sent.state = State::Retry("in progress".into());
        self.save(store, &sent, attempts + 1, Some(now), now)
            .await?;
        let message = compose(&report, &self.reporter, &sent.to, now / 1000);
        let name = format!(
            "{}.eml",
            message
                .filename
                .trim_end_matches(".xml.gz")
                .replace('!', "_")
        );
        match self.deliver_raw(&message.bytes, &name, &sent.to).await {
            Ok(refused) => {
                for (address, why) in refused {
                    sent.to.retain(|a| a != &address);
                    sent.left_out.push((address, why));
                }
                sent.state = State::Sent;
                self.save(store, &sent, attempts + 1, None, now).await?;
                tracing::info!(domain, report_id = %report_id, to = ?sent.to, messages = sent.messages,
                    bytes = sent.size, "DMARC aggregate report sent");
                Ok(sent)
            }
            Err(why) => {
                self.after_failure(store, sent, &report, attempts + 1, why, selection, now)
                    .await
            }
        }
    }

    /// A temporary failure: retried later, or given up after `max_attempts`.
    #[allow(clippy::too_many_arguments)]
    async fn after_failure(
        &self,
        store: &Arc<Mutex<Store>>,
        mut sent: Sent,
        report: &Aggregate,
        attempts: u32,
        why: String,
        selection: &Selection,
        now: i64,
    ) -> Result<Sent, StoreError> {
        sent.messages = report.messages;
        if attempts >= self.max_attempts {
            sent.state = State::Failed(why.clone());
            tracing::error!(domain = %sent.domain, report_id = %sent.report_id, attempts, reason = %why,
                "DMARC report given up");
        } else {
            sent.state = State::Retry(why.clone());
            tracing::warn!(domain = %sent.domain, report_id = %sent.report_id, attempts, reason = %why,
                "DMARC report not sent; will retry");
        }
        if !selection.dry_run {
            let wait = self
                .retry_ms
                .saturating_mul(1 << attempts.saturating_sub(1).min(16));
            let next = matches!(sent.state, State::Retry(_)).then_some(now + wait);
            self.save(store, &sent, attempts.max(1), next, now).await?;
        }
        Ok(sent)
    }

    async fn save(
        &self,
        store: &Arc<Mutex<Store>>,
        sent: &Sent,
        attempts: u32,
        next_attempt: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (state, detail) = match &sent.state {
            State::Sent => ("sent", None),
            State::Skipped(why) => ("skipped", Some(why.clone())),
            State::Failed(why) => ("failed", Some(why.clone())),
            State::Retry(why) => ("pending", Some(why.clone())),
            State::WouldSend | State::AlreadyDone => return Ok(()),
        };
        let row = SentReport {
            domain: sent.domain.clone(),
            period_begin: sent.period.start,
            period_end: sent.period.end,
            report_id: sent.report_id.clone(),
            state: state.into(),
            attempts,
            next_attempt,
            destinations: sent.to.clone(),
            messages: sent.messages,
            bytes: Some(sent.size as u64),
            detail,
        };
        blocking(store, move |s| s.save_sent_report(&row, now)).await
    }

    /// Hands a message on (to the outbox as `name`); `Ok` with the destinations the next
    /// hop refused for good.
    pub(crate) async fn deliver_raw(
        &self,
        message: &[u8],
        name: &str,
        to: &[String],
    ) -> Result<Vec<(String, String)>, String> {
        match &self.delivery {
            None => Err("no reports.relay or reports.outbox configured".into()),
            Some(ReportDelivery::Outbox(dir)) => {
                write_outbox(dir, name, message).map_err(|e| format!("outbox: {e}"))?;
                Ok(Vec::new())
            }
            Some(ReportDelivery::Relay(addr)) => self.relay(addr, message, to).await,
        }
    }

    async fn relay(
        &self,
        addr: &str,
        message: &[u8],
        to: &[String],
    ) -> Result<Vec<(String, String)>, String> {
        let config = RelayConfig {
            starttls: self.relay_tls,
            ca_file: self.relay_ca_file.clone(),
            xforward: false,
            ..RelayConfig::new(addr, self.helo_name.clone())
        };
        let mut hop = RelaySession::new(config);
        let client = ClientInfo {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: Some(self.helo_name.clone()),
            protocol: "ESMTP".into(),
        };
        let text = |r: crate::relay::SmtpReply| format!("{} {}", r.code, r.lines.join(" "));
        let result = async {
            hop.mail(&client, &self.reporter.email, &MailParams::default())
                .await
                .map_err(text)?;
            let mut refused = Vec::new();
            for address in to {
                if let Err(reply) = hop.rcpt(address).await {
                    if reply.code / 100 == 4 {
                        return Err(text(reply));
                    }
                    refused.push((address.clone(), text(reply)));
                }
            }
            if refused.len() == to.len() {
                return Err(format!("every destination refused: {refused:?}"));
            }
            hop.data(message).await.map_err(text)?;
            Ok(refused)
        }
        .await;
        if result.is_err() {
            hop.reset().await;
        }
        hop.quit().await;
        result
    }
}

/// The periods of `interval` seconds (UTC-midnight aligned) that end inside `ending`.
pub fn periods(ending: &Range<i64>, interval: u64) -> Vec<Range<i64>> {
    let mut out = Vec::new();
    let mut at = report_period(ending.start.saturating_sub(1), interval).start;
    while at < ending.end {
        let period = report_period(at, interval);
        if period.end > ending.start && period.end <= ending.end {
            out.push(period.clone());
        }
        at = period.end;
    }
    out
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .expect("store task panicked")
}

/// Writes a message as `name` in `dir`: to a temporary name, then renamed, so a reader never
/// sees half a file.
fn write_outbox(dir: &Path, name: &str, message: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, message)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_end_inside_the_range() {
        let day = DAY_MS;
        // The periods that end in (start, end]: a UTC day's own report for --period.
        assert_eq!(periods(&(day..2 * day), 86_400), vec![day..2 * day]);
        assert_eq!(periods(&(day + 1..2 * day + 1), 86_400), vec![day..2 * day]);
        assert_eq!(periods(&(0..3 * day), 86_400).len(), 3);
        // ri=6h: four periods end in a day.
        let six = periods(&(day..2 * day), 6 * 3600);
        assert_eq!(six.len(), 4);
        assert_eq!(six[0], day..day + 6 * 3_600_000);
    }
}
