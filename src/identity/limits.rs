//! Abuse limits that hold across connections (and reloads): failed AUTH attempts per client
//! network and per user name, which end in a temporary block, and messages and recipients
//! per authenticated user per hour.
//!
//! What an attacker could otherwise do with them, and what stops it:
//! - **Dodge by address**: failures are counted per network ([`network_of`]: an IPv4
//!   address and an IPv6 /64 by default, `smtp.auth.failure_prefix_v4`/`_v6`), so the
//!   addresses of one subscriber share one budget.
//! - **Aim at a user**: failures for a name block that name, but not from a network where
//!   the user logged in within `smtp.auth.known_network_days`: guessing from elsewhere cannot
//!   lock the owner out at home, and guessing from the owner's own network is held by that
//!   network's limit.
//! - **Flood the tables**: each table holds at most `smtp.auth.tracked_entries`. When one is
//!   full, expired entries go first; a live entry (counting, or blocked) is never evicted,
//!   so a block cannot be ended early by a flood of other names. Keys that find no room are
//!   counted together in the table's one overflow window, which blocks them all once it
//!   reaches the limit; a user at a known network is not held by an overflow block.
//!
//! Where the counts live is behind [`Counts`]: this host's memory ([`Memory`]), or with a
//! PostgreSQL store the database every host of the fleet shares (`store::PgCounts`, handed
//! in by the server). The clock is injected
//! ([`Guard::blocked_at`] and friends) so tests need not wait for an hour.

use crate::config::AuthConfig;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One hour: the window of the per-user sending limits.
pub const HOUR: Duration = Duration::from_secs(3600);

/// The network `ip` is counted in: its first `v4` or `v6` bits. The connection caps
/// (`smtp.network_prefix_*`) and the AUTH failure counts (`smtp.auth.failure_prefix_*`)
/// both group addresses this way.
pub fn network_of(ip: IpAddr, v4: u8, v6: u8) -> IpAddr {
    let ip = ip.to_canonical();
    let prefix = if ip.is_ipv4() { v4 } else { v6 };
    IpNet::new(ip, prefix).map_or(ip, |net| net.network())
}

/// What is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// AUTH failures from a network (see [`network_of`]).
    Network(IpAddr),
    /// AUTH failures for a login name (lower case), existing or not.
    User(String),
    /// Messages of an authenticated user this hour.
    Messages(String),
    /// Recipients of an authenticated user this hour.
    Recipients(String),
    /// Failure reports sent about a domain this hour (report/failure.rs).
    Reports(String),
}

/// How a count is held: its window, the count that starts a block and for how long, and
/// how many keys of its kind are tracked.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub window: Duration,
    pub max: u32,
    pub block: Duration,
    pub capacity: usize,
}

/// Why a key is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// By its own count.
    Own,
    /// By the overflow window its kind's full table counts newcomers in.
    Overflow,
}

/// Where the counts live: this host's memory ([`Memory`]), or a store the hosts of a fleet
/// share (`store::PgCounts`). `now` is the caller's clock; a shared store may keep its own.
pub trait Counts: Send + Sync {
    /// Adds one to `key`'s count; returns whether that started a block.
    fn fail(&self, key: &Key, rule: Rule, now: Instant) -> bool;
    /// Whether `key` is blocked now, and why.
    fn held(&self, key: &Key, now: Instant) -> Option<Held>;
    /// Takes one from `key`'s allowance of `rule.max` per `rule.window`; `false` when spent.
    fn take(&self, key: &Key, rule: Rule, now: Instant) -> bool;
    /// Notes that `user` logged in from `network`.
    fn remember(&self, user: &str, network: IpAddr, capacity: usize, now: Instant);
    /// Whether `user` logged in from `network` less than `max_age` before `now`.
    fn known(&self, user: &str, network: IpAddr, max_age: Duration, now: Instant) -> bool;
}

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

    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|until| now < until)
    }

    /// Over and not blocked: it may be forgotten.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        now.duration_since(self.start) >= window && !self.blocked(now)
    }
}

/// One kind of key: at most `capacity` tracked, the rest sharing `overflow`.
#[derive(Debug)]
struct Table {
    map: HashMap<Key, Window>,
    overflow: Window,
}

impl Table {
    fn new() -> Table {
        Table {
            map: HashMap::new(),
            overflow: Window::new(Instant::now()),
        }
    }

    /// `key`'s window (started afresh when expired), or the overflow window when the table
    /// is full of live entries. Nothing live is evicted: a blocked entry would end its block
    /// early, a counting one would forget its count.
    fn window(&mut self, key: &Key, rule: Rule, now: Instant) -> &mut Window {
        if !self.map.contains_key(key) && self.map.len() >= rule.capacity {
            self.map.retain(|_, w| !w.expired(now, rule.window));
            if self.map.len() >= rule.capacity {
                if self.overflow.expired(now, rule.window) {
                    self.overflow = Window::new(now);
                }
                return &mut self.overflow;
            }
        }
        let w = self
            .map
            .entry(key.clone())
            .or_insert_with(|| Window::new(now));
        if w.expired(now, rule.window) {
            *w = Window::new(now);
        }
        w
    }

    fn held(&self, key: &Key, now: Instant) -> Option<Held> {
        match self.map.get(key) {
            Some(w) => w.blocked(now).then_some(Held::Own),
            None => self.overflow.blocked(now).then_some(Held::Overflow),
        }
    }
}

/// The counts in this process's memory: one table per kind of key, each locked apart.
#[derive(Debug)]
pub struct Memory {
    networks: Mutex<Table>,
    users: Mutex<Table>,
    messages: Mutex<Table>,
    recipients: Mutex<Table>,
    reports: Mutex<Table>,
    /// `(user, network)` -> the last login from there.
    known: Mutex<HashMap<(String, IpAddr), Instant>>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            networks: Mutex::new(Table::new()),
            users: Mutex::new(Table::new()),
            messages: Mutex::new(Table::new()),
            recipients: Mutex::new(Table::new()),
            reports: Mutex::new(Table::new()),
            known: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Memory {
    fn table(&self, key: &Key) -> &Mutex<Table> {
        match key {
            Key::Network(_) => &self.networks,
            Key::User(_) => &self.users,
            Key::Messages(_) => &self.messages,
            Key::Recipients(_) => &self.recipients,
            Key::Reports(_) => &self.reports,
        }
    }
}

impl Counts for Memory {
    fn fail(&self, key: &Key, rule: Rule, now: Instant) -> bool {
        let mut table = lock(self.table(key));
        let w = table.window(key, rule, now);
        w.count = w.count.saturating_add(1);
        if w.count >= rule.max && !w.blocked(now) {
            w.blocked_until = Some(now + rule.block);
            return true;
        }
        false
    }

    fn held(&self, key: &Key, now: Instant) -> Option<Held> {
        lock(self.table(key)).held(key, now)
    }

    fn take(&self, key: &Key, rule: Rule, now: Instant) -> bool {
        let mut table = lock(self.table(key));
        let w = table.window(key, rule, now);
        if w.count >= rule.max {
            return false;
        }
        w.count += 1;
        true
    }

    fn remember(&self, user: &str, network: IpAddr, capacity: usize, now: Instant) {
        let mut known = lock(&self.known);
        let key = (user.to_string(), network);
        if !known.contains_key(&key) && known.len() >= capacity {
            // Forgetting a known network only takes an exemption away: the oldest goes.
            if let Some(oldest) = known
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                known.remove(&oldest);
            }
        }
        known.insert(key, now);
    }

    fn known(&self, user: &str, network: IpAddr, max_age: Duration, now: Instant) -> bool {
        lock(&self.known)
            .get(&(user.to_string(), network))
            .is_some_and(|at| now.saturating_duration_since(*at) < max_age)
    }
}

/// Which limit said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Address,
    User,
}

/// The limits as the SMTP door asks them: one per server, handed to every session.
pub struct Guard {
    counts: Arc<dyn Counts>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(Arc::new(Memory::default()))
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

impl Guard {
    pub fn new(counts: Arc<dyn Counts>) -> Guard {
        Guard { counts }
    }

    /// Where the counts live, for the other limits kept there (failure reports per domain).
    pub fn counts(&self) -> Arc<dyn Counts> {
        Arc::clone(&self.counts)
    }

    /// Whether AUTH from `ip` (for `user`, once known) is blocked now.
    pub fn blocked(&self, limits: &AuthConfig, ip: IpAddr, user: Option<&str>) -> Option<Blocked> {
        self.blocked_at(limits, ip, user, Instant::now())
    }

    pub fn blocked_at(
        &self,
        limits: &AuthConfig,
        ip: IpAddr,
        user: Option<&str>,
        now: Instant,
    ) -> Option<Blocked> {
        let network = network_of(ip, limits.failure_prefix_v4, limits.failure_prefix_v6);
        let user = user.map(str::to_ascii_lowercase);
        let known = user
            .as_deref()
            .is_some_and(|u| self.known_at(limits, u, network, now));
        match self.counts.held(&Key::Network(network), now) {
            // This network's own failures hold everyone there.
            Some(Held::Own) => return Some(Blocked::Address),
            // Held only as one of many untracked networks: decided once the user is known.
            Some(Held::Overflow) if user.is_some() && !known => return Some(Blocked::Address),
            _ => {}
        }
        let user = user?;
        if known {
            return None;
        }
        self.counts
            .held(&Key::User(user), now)
            .map(|_| Blocked::User)
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
        let network = network_of(ip, limits.failure_prefix_v4, limits.failure_prefix_v6);
        let rule = |max| Rule {
            window: limits.failure_window,
            max,
            block: limits.block,
            capacity: limits.tracked_entries,
        };
        let mut started = None;
        if self.counts.fail(
            &Key::Network(network),
            rule(limits.max_failures_per_ip),
            now,
        ) {
            started = Some(Blocked::Address);
        }
        if let Some(user) = user.filter(|u| !u.is_empty()).map(str::to_ascii_lowercase) {
            let known = self.known_at(limits, &user, network, now);
            let key = Key::User(user);
            // Counted wherever it comes from; the block it starts does not hold the user
            // at a network of theirs.
            if self
                .counts
                .fail(&key, rule(limits.max_failures_per_user), now)
                && !known
            {
                started = started.or(Some(Blocked::User));
            }
        }
        started
    }

    /// Notes a successful login: `ip`'s network becomes one of `user`'s.
    pub fn succeeded(&self, limits: &AuthConfig, ip: IpAddr, user: &str) {
        self.succeeded_at(limits, ip, user, Instant::now());
    }

    pub fn succeeded_at(&self, limits: &AuthConfig, ip: IpAddr, user: &str, now: Instant) {
        if limits.known_network.is_zero() {
            return;
        }
        let network = network_of(ip, limits.failure_prefix_v4, limits.failure_prefix_v6);
        self.counts.remember(
            &user.to_ascii_lowercase(),
            network,
            limits.tracked_entries,
            now,
        );
    }

    fn known_at(&self, limits: &AuthConfig, user: &str, network: IpAddr, now: Instant) -> bool {
        if limits.known_network.is_zero() {
            return false;
        }
        self.counts.known(user, network, limits.known_network, now)
    }

    /// Takes one message from `user`'s hourly allowance; `false` when it is spent.
    pub fn take_message(&self, limits: &AuthConfig, user: &str) -> bool {
        self.take_at(
            Key::Messages(user.to_ascii_lowercase()),
            limits,
            limits.max_messages_per_hour,
            Instant::now(),
        )
    }

    /// Takes one recipient from `user`'s hourly allowance; `false` when it is spent.
    pub fn take_recipient(&self, limits: &AuthConfig, user: &str) -> bool {
        self.take_at(
            Key::Recipients(user.to_ascii_lowercase()),
            limits,
            limits.max_recipients_per_hour,
            Instant::now(),
        )
    }

    fn take_at(&self, key: Key, limits: &AuthConfig, max: u32, now: Instant) -> bool {
        let rule = Rule {
            window: HOUR,
            max,
            block: Duration::ZERO,
            capacity: limits.tracked_entries,
        };
        self.counts.take(&key, rule, now)
    }
}

#[cfg(test)]
mod tests;
