//! Periodic jobs inside `serve`: sending the DMARC aggregate reports that are due.
//!
//! Each run reads the running configuration (so a reload applies to the next run), opens its
//! own store connection, and sends what `report::send` finds due. On SQLite one daemon owns
//! the store, so the once-per-fleet lease DESIGN.md describes is trivially held; the
//! `reports_sent` table still guarantees a report is never sent twice.

use crate::dates::now_ms;
use crate::report::send::{Selection, Sender, LOOKBACK_MS};
use crate::runtime::Current;
use crate::store::Store;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Runs the report job every `reports.check_interval` until `stop` turns true. The first run
/// comes one interval after start, so a restart loop cannot send in a burst.
pub async fn reports(current: Current, store_path: PathBuf, mut stop: watch::Receiver<bool>) {
    let mut store: Option<Arc<Mutex<Store>>> = None;
    loop {
        let snapshot = Arc::clone(&current.read().unwrap_or_else(|p| p.into_inner()));
        let wait = snapshot.config.reports.check_interval;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let snapshot = Arc::clone(&current.read().unwrap_or_else(|p| p.into_inner()));
        if !snapshot.config.reports.aggregate {
            continue;
        }
        if store.is_none() {
            match Store::open(&store_path) {
                Ok(s) => store = Some(Arc::new(Mutex::new(s))),
                Err(e) => {
                    tracing::error!(error = %e, "report job: store unavailable");
                    continue;
                }
            }
        }
        let Some(store) = &store else { continue };
        let now = now_ms();
        let selection = Selection {
            ending: (now - LOOKBACK_MS)..now,
            domain: None,
            dry_run: false,
            ignore_wait: false,
        };
        let sender = Sender::new(&snapshot.config);
        match sender
            .run(store, snapshot.verifier.dns(), &selection, now)
            .await
        {
            Ok(done) if !done.is_empty() => {
                tracing::info!(reports = done.len(), "report job ran");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "report job failed"),
        }
    }
}
