//! How busy the SMTP front end is, and what that changes (Postfix's "stress" mode).
//!
//! Above a share of `max_connections` the front end is under stress: sessions of untrusted
//! clients get the short stress timeout for their next command, for the greeting, and for
//! each DATA line, and may send only a few commands in a row that move no transaction
//! forward. Slow clients are then let go within seconds, so a crowd of them cannot hold
//! every slot; when the load falls back, the normal timeouts return.

use crate::check::metrics::Metrics;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Junk commands in a row allowed under stress (Postfix: 1 under stress, 100 otherwise).
pub const STRESS_JUNK_LIMIT: usize = 5;

/// The listener's open connections against its stress threshold.
pub struct Load {
    open: AtomicUsize,
    /// Open connections from which on the front end is under stress.
    threshold: usize,
    metrics: Arc<Metrics>,
}

impl Load {
    /// For a listener of `max` connections that is under stress from `percent` % of them.
    pub fn new(max: usize, percent: u8, metrics: Arc<Metrics>) -> Arc<Load> {
        let threshold = (max * usize::from(percent)).div_ceil(100).max(1);
        Arc::new(Load {
            open: AtomicUsize::new(0),
            threshold,
            metrics,
        })
    }

    /// A load that is never under stress (sessions started outside a listener).
    pub fn calm(metrics: Arc<Metrics>) -> Arc<Load> {
        Load::new(usize::MAX / 100, 100, metrics)
    }

    pub fn is_stressed(&self) -> bool {
        self.open.load(Relaxed) >= self.threshold
    }

    /// Counts a connection until the guard is dropped; logs when stress begins and ends.
    pub fn opened(self: &Arc<Self>) -> LoadGuard {
        let now = self.open.fetch_add(1, Relaxed) + 1;
        if now == self.threshold {
            tracing::warn!(
                open = now,
                "smtp front end under stress: short timeouts for untrusted clients"
            );
            self.metrics.smtp_stress(true);
        }
        LoadGuard(Arc::clone(self))
    }
}

/// One open connection, counted until dropped.
pub struct LoadGuard(Arc<Load>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        let load = &self.0;
        let before = load.open.fetch_sub(1, Relaxed);
        if before == load.threshold {
            tracing::info!(open = before - 1, "smtp front end no longer under stress");
            load.metrics.smtp_stress(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stress_begins_at_the_threshold_and_ends_below_it() {
        let metrics = Arc::new(Metrics::default());
        let load = Load::new(10, 70, Arc::clone(&metrics));
        let mut guards: Vec<LoadGuard> = (0..6).map(|_| load.opened()).collect();
        assert!(!load.is_stressed());
        guards.push(load.opened());
        assert!(load.is_stressed());
        assert!(metrics.render(0).contains("authmilter_smtp_stress 1\n"));
        assert!(metrics
            .render(0)
            .contains("authmilter_smtp_stress_episodes_total 1\n"));
        guards.pop();
        assert!(!load.is_stressed());
        assert!(metrics.render(0).contains("authmilter_smtp_stress 0\n"));
        assert!(!Load::calm(metrics).is_stressed());
    }
}
