//! Report mail arriving through a door (milter or SMTP front end), imported off the hot path
//! (DESIGN.md: the same bounded-channel pattern as the verdict journal).
//!
//! At end of message a door that saw a recipient in `reports.rua_addresses` calls
//! `Snapshot::hand_over_report` (src/runtime.rs), which only copies the message into a
//! bounded queue ([`Inbox::offer`]: `try_send`, never waiting): when the queue is full, the
//! memory budget is spent or there is no store, the message is not imported, and that is
//! logged and counted
//! (`authmilter_reports_received_total{result="lost"}`). The importer task parses and stores
//! on the blocking pool. The copy waiting in the queue is charged to the memory budget every
//! door shares.
//!
//! Whether the message still goes on is the door's to apply: it is dropped (milter
//! SMFIR_DISCARD; SMTP: 250 and not handed on) only when `reports.deliver_imported` is false,
//! the message was queued for import, and every recipient is a report address; mail for
//! anyone else is never dropped.

use super::received::{import, Fate, ImportSettings, Imported};
use crate::auth::budget::{Budget, Charge};
use crate::check::metrics::{Metrics, ReportIn};
use crate::config::{Config, ReportsConfig};
use crate::dates::now_ms;
use crate::store::{Handle, Location, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Report messages waiting for the importer (each also held against the memory budget).
pub const QUEUE: usize = 64;

/// A message to import, with the settings in force when it arrived.
pub struct ReportMail {
    pub(crate) raw: Vec<u8>,
    config: Arc<Config>,
    _charge: Charge,
}

/// The doors' handle: cheap to clone; handing over never waits.
#[derive(Clone)]
pub struct Inbox {
    tx: Option<mpsc::Sender<ReportMail>>,
    metrics: Arc<Metrics>,
}

impl Inbox {
    /// No importer (no store): report mail is counted as lost and delivered as usual.
    pub fn disabled(metrics: Arc<Metrics>) -> Inbox {
        Inbox { tx: None, metrics }
    }

    /// An inbox feeding `tx` (the importer's queue, or a test's).
    pub(crate) fn feeding(tx: mpsc::Sender<ReportMail>, metrics: Arc<Metrics>) -> Inbox {
        Inbox {
            tx: Some(tx),
            metrics,
        }
    }

    /// Queues a copy of `raw` for import; `false` (logged and counted) when it was not.
    pub(crate) fn offer(&self, raw: &[u8], config: &Arc<Config>, budget: &Arc<Budget>) -> bool {
        let lost = |why: &str| {
            self.metrics.report_received(ReportIn::Lost);
            tracing::warn!(
                message_id = crate::store::message_id(raw).as_deref().unwrap_or("-"),
                why,
                "report mail not imported"
            );
            false
        };
        let Some(tx) = &self.tx else {
            return lost("no verdict store");
        };
        let mut charge = budget.charge();
        if !charge.grow(raw.len()) {
            return lost("memory budget spent");
        }
        let mail = ReportMail {
            raw: raw.to_vec(),
            config: Arc::clone(config),
            _charge: charge,
        };
        match tx.try_send(mail) {
            Ok(()) => true,
            Err(_) => lost("import queue full"),
        }
    }
}

/// Whether `address` (an envelope recipient, angle brackets or not) is a report address.
pub fn is_report_address(config: &ReportsConfig, address: &str) -> bool {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    config
        .rua_addresses
        .iter()
        .any(|a| a.eq_ignore_ascii_case(address))
}

/// The running importer: its inbox, and a way to finish the queue and stop.
pub struct Importer {
    pub inbox: Inbox,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Importer {
    /// Imports what is queued, then stops.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the importer task, with its own connection to the store at `location` (made on
/// first use, and again after the database went away).
pub fn spawn_importer(
    location: &Location,
    host: &str,
    metrics: Arc<Metrics>,
) -> Result<Importer, StoreError> {
    let store = Arc::new(Handle::new(location.clone(), host));
    let (tx, rx) = mpsc::channel(QUEUE);
    let (stop, stop_rx) = watch::channel(false);
    let inbox = Inbox::feeding(tx, Arc::clone(&metrics));
    let task = tokio::spawn(run(store, rx, stop_rx, metrics));
    Ok(Importer { inbox, stop, task })
}

async fn run(
    store: Arc<Handle>,
    mut rx: mpsc::Receiver<ReportMail>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        tokio::select! {
            mail = rx.recv() => match mail {
                Some(mail) => import_one(&store, mail, &metrics).await,
                None => break,
            },
            _ = stop.changed() => {
                rx.close();
                while let Some(mail) = rx.recv().await {
                    import_one(&store, mail, &metrics).await;
                }
                break;
            }
        }
    }
}

/// Parses and stores one message on the blocking pool; logs and counts each report in it.
async fn import_one(store: &Arc<Handle>, mail: ReportMail, metrics: &Metrics) {
    let store = Arc::clone(store);
    let message_id = crate::store::message_id(&mail.raw).unwrap_or_else(|| "-".into());
    let done = tokio::task::spawn_blocking(move || {
        let settings = ImportSettings::from(&mail.config.reports);
        store.with(
            |store| Ok::<_, StoreError>(import(store, &mail.raw, &settings, now_ms())),
            StoreError::is_connection,
        )
    })
    .await;
    let results = match done {
        Ok(Ok(results)) => results,
        Ok(Err(e)) => {
            metrics.report_received(ReportIn::Failed);
            tracing::error!(error = %e, message_id, "report importer: store unavailable");
            return;
        }
        Err(e) => {
            metrics.report_received(ReportIn::Failed);
            tracing::error!(error = %e, message_id, "report importer failed");
            return;
        }
    };
    for Imported {
        part,
        fate,
        repairs,
    } in &results
    {
        let part = part.as_deref().unwrap_or("-");
        match fate {
            Fate::Stored { .. } | Fate::FailureStored { .. } => {
                metrics.report_received(ReportIn::Stored)
            }
            Fate::Duplicate { .. } | Fate::FailureDuplicate { .. } => {
                metrics.report_received(ReportIn::Duplicate)
            }
            Fate::Dropped { .. } => metrics.report_received(ReportIn::Dropped),
            Fate::Refused(_) | Fate::FailureRefused(_) => {
                metrics.report_received(ReportIn::Refused)
            }
            Fate::StoreFailed(_) => metrics.report_received(ReportIn::Failed),
        }
        match fate {
            Fate::Refused(_) | Fate::FailureRefused(_) | Fate::StoreFailed(_) => {
                tracing::warn!(message_id, part, "report mail: {fate}")
            }
            _ if repairs.is_empty() => tracing::info!(message_id, part, "report mail: {fate}"),
            _ => {
                tracing::info!(message_id, part, repairs = %repairs.join("; "), "report mail: {fate}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_addresses_match_without_brackets_or_case() {
        let c = ReportsConfig {
            rua_addresses: vec!["dmarc-rua@example.com".into()],
            ..ReportsConfig::default()
        };
        assert!(is_report_address(&c, "<DMARC-RUA@example.COM>"));
        assert!(!is_report_address(&c, "dmarc@example.com"));
        assert!(!is_report_address(
            &ReportsConfig::default(),
            "dmarc-rua@example.com"
        ));
    }
}
