//! The memory budget for messages in flight, shared by every door (milter, SMTP, HTTP).
//!
//! Each message held in memory charges its bytes as they arrive; when a charge would take the
//! total past the budget, that message stops being kept and is deferred (452 4.3.1 / milter
//! tempfail), so a crowd of large messages can fill the budget but never the machine. The
//! charge is given back when the message is dropped, however its transaction ends.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// The budget: bytes held now, the ceiling, and how often it said no.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: AtomicUsize,
    refusals: AtomicU64,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            refusals: AtomicU64::new(0),
        })
    }

    /// A new ceiling (on reload); what is held stays held.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Relaxed);
    }

    pub fn max(&self) -> usize {
        self.max.load(Relaxed)
    }

    /// Bytes held by messages in flight now.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Messages (or DATA commands) deferred because the budget was spent.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Relaxed)
    }

    /// Whether a new message may start (the budget is not already spent).
    pub fn has_room(&self) -> bool {
        self.used() < self.max()
    }

    /// Counts a refusal made by a door before any charge (a DATA command when full).
    pub fn refused(&self) {
        self.refusals.fetch_add(1, Relaxed);
    }

    /// A charge of nothing yet, to grow as the message arrives.
    pub fn charge(self: &Arc<Self>) -> Charge {
        Charge {
            budget: Arc::clone(self),
            held: 0,
        }
    }

    fn take(&self, n: usize) -> bool {
        let max = self.max();
        let taken = self
            .used
            .fetch_update(Relaxed, Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= max)
            })
            .is_ok();
        if !taken {
            self.refusals.fetch_add(1, Relaxed);
        }
        taken
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }
}

/// What one message holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    held: usize,
}

impl Charge {
    /// Takes `n` more bytes; `false` (and nothing taken) when that would pass the budget.
    pub fn grow(&mut self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let ok = self.budget.take(n);
        if ok {
            self.held += n;
        }
        ok
    }

    /// Holds exactly `n` bytes (growing or shrinking); `false` when growing is refused.
    pub fn resize(&mut self, n: usize) -> bool {
        if n >= self.held {
            self.grow(n - self.held)
        } else {
            self.budget.give_back(self.held - n);
            self.held = n;
            true
        }
    }

    /// Gives everything back now (the message was dropped).
    pub fn release(&mut self) {
        self.resize(0);
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_and_given_back_on_drop() {
        let budget = Budget::new(100);
        let mut a = budget.charge();
        assert!(a.grow(60));
        let mut b = budget.charge();
        assert!(!b.grow(41), "past the budget");
        assert_eq!(budget.refusals(), 1);
        assert!(b.grow(40));
        assert_eq!(budget.used(), 100);
        assert!(!budget.has_room());
        assert!(a.resize(10));
        assert_eq!(budget.used(), 50);
        drop(b);
        assert_eq!(budget.used(), 10);
        a.release();
        assert_eq!((budget.used(), a.held()), (0, 0));
        budget.set_max(5);
        assert!(!a.grow(6));
        assert!(crate::config::default_max_inflight_bytes() >= 1 << 20);
    }
}
