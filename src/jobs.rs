//! Periodic jobs inside `serve`: sending the DMARC aggregate reports that are due.
//!
//! Each run reads the running configuration (so a reload applies to the next run), opens its
//! own store connection, and sends what `report::send` finds due. A run takes the store's
//! once-per-fleet lease first ([`Lease::Reports`]: a PostgreSQL advisory lock, so that of a
//! fleet of hosts sharing one database only one sends at a time, and the next one finds the
//! reports marked sent; trivially held on SQLite, where one daemon owns the file). The
//! `reports_sent` table guarantees a report is never sent twice.

use crate::dates::now_ms;
use crate::report::send::{Selection, Sender, LOOKBACK_MS};
use crate::runtime::Current;
use crate::store::{Lease, Location, Store, StoreError};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Runs the report job every `reports.check_interval` until `stop` turns true. The first run
/// comes one interval after start, so a restart loop cannot send in a burst.
pub async fn reports(current: Current, location: Location, mut stop: watch::Receiver<bool>) {
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
        let broken = store
            .as_ref()
            .is_some_and(|s| s.lock().unwrap_or_else(|p| p.into_inner()).is_broken());
        if store.is_none() || broken {
            let location = location.clone();
            let host = snapshot.config.store.host.clone();
            match tokio::task::spawn_blocking(move || Store::connect(&location)).await {
                Ok(Ok(s)) => store = Some(Arc::new(Mutex::new(s.with_host(&host)))),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "report job: store unavailable");
                    store = None;
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some(store) = &store else { continue };
        match lease(store, true).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("report job: another host holds the lease; not running");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "report job: taking the lease failed");
                continue;
            }
        }
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
        if let Err(e) = lease(store, false).await {
            tracing::warn!(error = %e, "report job: giving the lease back failed");
        }
    }
}

/// Takes (`take`) or gives back the report job's lease, on the blocking pool.
async fn lease(store: &Arc<Mutex<Store>>, take: bool) -> Result<bool, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        if take {
            store.try_lease(Lease::Reports)
        } else {
            store.release(Lease::Reports).map(|()| true)
        }
    })
    .await
    .unwrap_or_else(|e| Err(StoreError::Config(format!("lease task failed: {e}"))))
}
