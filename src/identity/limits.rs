//! Abuse limits that hold across connections (and reloads): failed AUTH attempts per client
//! address and per user name, which end in a temporary block, and messages and recipients
//! per authenticated user per hour.
//!
//! Every table is bounded: past [`MAX_ENTRIES`] expired entries are dropped, and if that is
//! not enough the oldest window goes, so a flood of names or addresses cannot grow memory.
//! The clock is injected ([`Guard::at`]) so tests need not wait for an hour.

use crate::config::AuthConfig;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries per table before it is pruned.
pub const MAX_ENTRIES: usize = 100_000;

/// One hour: the window of the per-user sending limits.
const HOUR: Duration = Duration::from_secs(3600);

/// A counter over a fixed window, and a block set when it went over.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            count: 0,
            blocked_until: None,
        }
    }

    fn expired(&self, now: Instant, window: Duration) -> bool {
        now.duration_since(self.start) >= window && self.blocked_until.is_none_or(|b| now >= b)
    }
}

#[derive(Debug)]
struct Table<K>(HashMap<K, Window>);

impl<K: Eq + Hash + Clone> Table<K> {
    fn entry(&mut self, key: &K, now: Instant, window: Duration) -> &mut Window {
        if self.0.len() >= MAX_ENTRIES && !self.0.contains_key(key) {
            self.0.retain(|_, w| !w.expired(now, window));
            if self.0.len() >= MAX_ENTRIES {
                if let Some(oldest) = self
                    .0
                    .iter()
                    .min_by_key(|(_, w)| w.start)
                    .map(|(k, _)| k.clone())
                {
                    self.0.remove(&oldest);
                }
            }
        }
        let w = self
            .0
            .entry(key.clone())
            .or_insert_with(|| Window::new(now));
        if w.expired(now, window) {
            *w = Window::new(now);
        }
        w
    }

    fn blocked(&self, key: &K, now: Instant) -> bool {
        self.0
            .get(key)
            .and_then(|w| w.blocked_until)
            .is_some_and(|until| now < until)
    }
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Table(HashMap::new())
    }
}

/// Which limit said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Address,
    User,
}

/// The shared state behind the limits: one per server, handed to every SMTP session.
#[derive(Debug, Default)]
pub struct Guard {
    failures_ip: Mutex<Table<IpAddr>>,
    failures_user: Mutex<Table<String>>,
    messages: Mutex<Table<String>>,
    recipients: Mutex<Table<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Guard {
    /// Whether AUTH from `ip` (for `user`, once known) is blocked now.
    pub fn blocked(&self, ip: IpAddr, user: Option<&str>) -> Option<Blocked> {
        self.blocked_at(ip, user, Instant::now())
    }

    pub fn blocked_at(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Option<Blocked> {
        if lock(&self.failures_ip).blocked(&ip, now) {
            return Some(Blocked::Address);
        }
        let user = user.map(str::to_ascii_lowercase)?;
        lock(&self.failures_user)
            .blocked(&user, now)
            .then_some(Blocked::User)
    }

    /// Counts a failed AUTH; says which block it started, if any.
    pub fn failed(&self, limits: &AuthConfig, ip: IpAddr, user: Option<&str>) -> Option<Blocked> {
        self.failed_at(limits, ip, user, Instant::now())
    }

    pub fn failed_at(
        &self,
        limits: &AuthConfig,
        ip: IpAddr,
        user: Option<&str>,
        now: Instant,
    ) -> Option<Blocked> {
        let mut started = None;
        {
            let mut table = lock(&self.failures_ip);
            let w = table.entry(&ip, now, limits.failure_window);
            w.count += 1;
            if w.count >= limits.max_failures_per_ip {
                w.blocked_until = Some(now + limits.block);
                started = Some(Blocked::Address);
            }
        }
        if let Some(user) = user.filter(|u| !u.is_empty()) {
            let mut table = lock(&self.failures_user);
            let w = table.entry(&user.to_ascii_lowercase(), now, limits.failure_window);
            w.count += 1;
            if w.count >= limits.max_failures_per_user {
                w.blocked_until = Some(now + limits.block);
                started = started.or(Some(Blocked::User));
            }
        }
        started
    }

    /// Takes one message from `user`'s hourly allowance; `false` when it is spent.
    pub fn take_message(&self, limits: &AuthConfig, user: &str) -> bool {
        take(
            &self.messages,
            user,
            limits.max_messages_per_hour,
            Instant::now(),
        )
    }

    /// Takes one recipient from `user`'s hourly allowance; `false` when it is spent.
    pub fn take_recipient(&self, limits: &AuthConfig, user: &str) -> bool {
        take(
            &self.recipients,
            user,
            limits.max_recipients_per_hour,
            Instant::now(),
        )
    }

    #[cfg(test)]
    fn take_message_at(&self, limits: &AuthConfig, user: &str, now: Instant) -> bool {
        take(&self.messages, user, limits.max_messages_per_hour, now)
    }
}

fn take(table: &Mutex<Table<String>>, user: &str, max: u32, now: Instant) -> bool {
    let mut table = lock(table);
    let w = table.entry(&user.to_ascii_lowercase(), now, HOUR);
    if w.count >= max {
        return false;
    }
    w.count += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AuthConfig {
        AuthConfig {
            max_failures_per_ip: 3,
            max_failures_per_user: 5,
            failure_window: Duration::from_secs(60),
            block: Duration::from_secs(120),
            max_messages_per_hour: 2,
            ..AuthConfig::default()
        }
    }

    #[test]
    fn failures_from_one_address_block_it_until_the_block_ends() {
        let guard = Guard::default();
        let (ip, t0) = ("192.0.2.1".parse().unwrap(), Instant::now());
        assert_eq!(guard.failed_at(&limits(), ip, Some("a"), t0), None);
        assert_eq!(guard.failed_at(&limits(), ip, Some("b"), t0), None);
        assert_eq!(guard.blocked_at(ip, None, t0), None);
        assert_eq!(
            guard.failed_at(&limits(), ip, Some("c"), t0),
            Some(Blocked::Address)
        );
        assert_eq!(
            guard.blocked_at(ip, None, t0 + Duration::from_secs(119)),
            Some(Blocked::Address)
        );
        assert_eq!(
            guard.blocked_at(ip, None, t0 + Duration::from_secs(120)),
            None
        );
        // Another address is not affected.
        assert_eq!(
            guard.blocked_at("192.0.2.2".parse().unwrap(), Some("a"), t0),
            None
        );
    }

    #[test]
    fn failures_for_one_user_from_many_addresses_block_the_user() {
        let guard = Guard::default();
        let t0 = Instant::now();
        for i in 1..=5u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            let started = guard.failed_at(&limits(), ip, Some("Alice"), t0);
            assert_eq!(started, (i == 5).then_some(Blocked::User));
        }
        let other = "203.0.113.9".parse().unwrap();
        assert_eq!(
            guard.blocked_at(other, Some("alice"), t0),
            Some(Blocked::User)
        );
        assert_eq!(guard.blocked_at(other, Some("bob"), t0), None);
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let guard = Guard::default();
        let (ip, t0) = ("192.0.2.1".parse().unwrap(), Instant::now());
        guard.failed_at(&limits(), ip, None, t0);
        guard.failed_at(&limits(), ip, None, t0);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(guard.failed_at(&limits(), ip, None, later), None);
    }

    #[test]
    fn hourly_message_allowance() {
        let guard = Guard::default();
        let t0 = Instant::now();
        assert!(guard.take_message_at(&limits(), "u", t0));
        assert!(guard.take_message_at(&limits(), "U", t0));
        assert!(!guard.take_message_at(&limits(), "u", t0));
        assert!(guard.take_message_at(&limits(), "u", t0 + HOUR));
    }
}
