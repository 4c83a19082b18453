//! BIMI counters for `/metrics`: messages by result, and time spent, process-wide like the
//! resolver's (`dns::stats`).

use super::BimiResult;
use crate::metrics::family;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub struct BimiStats {
    results: [AtomicU64; 6],
    micros: AtomicU64,
}

pub static STATS: BimiStats = BimiStats {
    results: [const { AtomicU64::new(0) }; 6],
    micros: AtomicU64::new(0),
};

fn index(r: BimiResult) -> usize {
    BimiResult::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

impl BimiStats {
    pub fn observe(&self, result: BimiResult, took: Duration) {
        self.results[index(result)].fetch_add(1, Relaxed);
        self.micros
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// Messages evaluated with this result so far.
    pub fn count(&self, result: BimiResult) -> u64 {
        self.results[index(result)].load(Relaxed)
    }

    pub fn render(&self, out: &mut String) {
        family(
            out,
            "authmilter_bimi_results_total",
            "counter",
            "Messages evaluated for BIMI, by result.",
        );
        for r in BimiResult::ALL {
            let _ = writeln!(
                out,
                "authmilter_bimi_results_total{{result=\"{}\"}} {}",
                r.as_str(),
                self.count(r)
            );
        }
        family(
            out,
            "authmilter_bimi_seconds_total",
            "counter",
            "Time the end of message spent waiting for BIMI.",
        );
        let _ = writeln!(
            out,
            "authmilter_bimi_seconds_total {}",
            self.micros.load(Relaxed) as f64 / 1e6
        );
    }
}
