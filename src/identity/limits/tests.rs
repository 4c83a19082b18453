use super::*;

fn limits() -> AuthConfig {
    AuthConfig {
        max_failures_per_ip: 3,
        max_failures_per_user: 5,
        failure_window: Duration::from_secs(60),
        block: Duration::from_secs(120),
        max_messages_per_hour: 2,
        tracked_entries: 100,
        ..AuthConfig::default()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn failures_from_one_address_block_it_until_the_block_ends() {
    let (guard, l) = (Guard::default(), limits());
    let (a, t0) = (ip("192.0.2.1"), Instant::now());
    assert_eq!(guard.failed_at(&l, a, Some("a"), t0), None);
    assert_eq!(guard.failed_at(&l, a, Some("b"), t0), None);
    assert_eq!(guard.blocked_at(&l, a, None, t0), None);
    assert_eq!(
        guard.failed_at(&l, a, Some("c"), t0),
        Some(Blocked::Address)
    );
    let later = |s| t0 + Duration::from_secs(s);
    assert_eq!(
        guard.blocked_at(&l, a, None, later(119)),
        Some(Blocked::Address)
    );
    assert_eq!(guard.blocked_at(&l, a, None, later(120)), None);
    // Another IPv4 address is another network (the default prefix is /32).
    assert_eq!(guard.blocked_at(&l, ip("192.0.2.2"), Some("a"), t0), None);
}

// Issue 22: one IPv6 /64 is one subscriber; its addresses share one budget.
#[test]
fn addresses_of_one_ipv6_64_are_counted_as_one() {
    let (guard, l) = (Guard::default(), limits());
    let t0 = Instant::now();
    let started: Vec<_> = (1..=3)
        .map(|i| guard.failed_at(&l, ip(&format!("2001:db8:1:2::{i:x}")), None, t0))
        .collect();
    assert_eq!(started, [None, None, Some(Blocked::Address)]);
    let elsewhere = ip("2001:db8:1:2:ffff:ffff:ffff:ffff");
    assert_eq!(
        guard.blocked_at(&l, elsewhere, None, t0),
        Some(Blocked::Address)
    );
    assert_eq!(guard.blocked_at(&l, ip("2001:db8:1:3::1"), None, t0), None);
    // A configured prefix groups IPv4 the same way.
    let wide = AuthConfig {
        failure_prefix_v4: 24,
        ..limits()
    };
    for i in 1..=3u8 {
        guard.failed_at(&wide, IpAddr::from([198, 51, 100, i]), None, t0);
    }
    let neighbour = IpAddr::from([198, 51, 100, 200]);
    assert_eq!(
        guard.blocked_at(&wide, neighbour, None, t0),
        Some(Blocked::Address)
    );
}

#[test]
fn failures_for_one_user_from_many_addresses_block_the_user() {
    let (guard, l) = (Guard::default(), limits());
    let t0 = Instant::now();
    for i in 1..=5u8 {
        let from = IpAddr::from([198, 51, 100, i]);
        let started = guard.failed_at(&l, from, Some("Alice"), t0);
        assert_eq!(started, (i == 5).then_some(Blocked::User));
    }
    let other = ip("203.0.113.9");
    assert_eq!(
        guard.blocked_at(&l, other, Some("alice"), t0),
        Some(Blocked::User)
    );
    assert_eq!(guard.blocked_at(&l, other, Some("bob"), t0), None);
}

// Issue 22: guessing a name from elsewhere does not lock its owner out where the owner
// logged in before; guessing from there is held by that network's own limit.
#[test]
fn a_user_at_a_known_network_is_not_held_by_failures_elsewhere() {
    let (guard, l) = (Guard::default(), limits());
    let t0 = Instant::now();
    let home = ip("192.0.2.7");
    guard.succeeded_at(&l, home, "Alice", t0);
    for i in 1..=10u8 {
        guard.failed_at(&l, IpAddr::from([198, 51, 100, i]), Some("alice"), t0);
    }
    let fresh = ip("203.0.113.1");
    assert_eq!(
        guard.blocked_at(&l, fresh, Some("alice"), t0),
        Some(Blocked::User)
    );
    assert_eq!(guard.blocked_at(&l, home, Some("ALICE"), t0), None);
    // Another user at alice's network has no such exemption.
    assert_eq!(guard.blocked_at(&l, home, Some("bob"), t0), None);
    guard.failed_at(&l, fresh, Some("bob"), t0);
    // Failures at home count against home like anywhere.
    for _ in 0..2 {
        assert_eq!(guard.failed_at(&l, home, Some("alice"), t0), None);
    }
    assert_eq!(
        guard.failed_at(&l, home, Some("alice"), t0),
        Some(Blocked::Address)
    );
    assert_eq!(
        guard.blocked_at(&l, home, Some("alice"), t0),
        Some(Blocked::Address)
    );
    // The exemption lapses.
    let old = AuthConfig {
        known_network: Duration::from_secs(10),
        ..limits()
    };
    let much_later = t0 + Duration::from_secs(11);
    guard.succeeded_at(&old, ip("192.0.2.99"), "carol", t0);
    for i in 1..=5u8 {
        guard.failed_at(
            &old,
            IpAddr::from([198, 51, 101, i]),
            Some("carol"),
            much_later,
        );
    }
    assert_eq!(
        guard.blocked_at(&old, ip("192.0.2.99"), Some("carol"), much_later),
        Some(Blocked::User)
    );
}

// Issue 22: a flood of other names cannot end a block early: the full table keeps its live
// entries and counts newcomers together.
#[test]
fn a_blocked_entry_survives_a_flood_of_other_names() {
    // The flood comes from one network that no address limit stops, to watch the names.
    let l = AuthConfig {
        max_failures_per_ip: u32::MAX,
        ..limits()
    };
    let guard = Guard::default();
    let t0 = Instant::now();
    for i in 0..5u8 {
        guard.failed_at(&l, IpAddr::from([198, 51, 100, i]), Some("victim"), t0);
    }
    let somewhere = ip("203.0.113.1");
    assert_eq!(
        guard.blocked_at(&l, somewhere, Some("victim"), t0),
        Some(Blocked::User)
    );
    let flooder = ip("10.0.0.1");
    let mut overflow_blocked = None;
    for n in 0..1000u32 {
        let started = guard.failed_at(&l, flooder, Some(&format!("name{n}")), t0);
        if started.is_some() && overflow_blocked.is_none() {
            overflow_blocked = Some(n);
        }
    }
    assert_eq!(
        guard.blocked_at(&l, somewhere, Some("victim"), t0),
        Some(Blocked::User)
    );
    // The table (100) is full with name98 (the victim is one entry); the next five
    // newcomers share the overflow window, whose fifth failure blocks every newcomer.
    assert_eq!(overflow_blocked, Some(103));
    assert_eq!(
        guard.blocked_at(&l, somewhere, Some("newcomer"), t0),
        Some(Blocked::User)
    );
    // ... except at a network of theirs.
    guard.succeeded_at(&l, ip("192.0.2.50"), "newcomer", t0);
    assert_eq!(
        guard.blocked_at(&l, ip("192.0.2.50"), Some("newcomer"), t0),
        None
    );
    // Names tracked before the flood keep their own counts.
    assert_eq!(guard.blocked_at(&l, somewhere, Some("name3"), t0), None);
    // After the window and the block, the table makes room again.
    let later = t0 + Duration::from_secs(121);
    assert_eq!(guard.blocked_at(&l, somewhere, Some("victim"), later), None);
    assert_eq!(guard.failed_at(&l, somewhere, Some("late"), later), None);
    assert_eq!(
        guard.blocked_at(&l, somewhere, Some("newcomer2"), later),
        None
    );
}

#[test]
fn failures_outside_the_window_start_over() {
    let (guard, l) = (Guard::default(), limits());
    let (a, t0) = (ip("192.0.2.1"), Instant::now());
    guard.failed_at(&l, a, None, t0);
    guard.failed_at(&l, a, None, t0);
    let later = t0 + Duration::from_secs(61);
    assert_eq!(guard.failed_at(&l, a, None, later), None);
}

#[test]
fn hourly_message_allowance() {
    let (guard, l) = (Guard::default(), limits());
    let t0 = Instant::now();
    let take = |user: &str, at| guard.take_at(Key::Messages(user.to_ascii_lowercase()), &l, 2, at);
    assert!(take("u", t0));
    assert!(take("U", t0));
    assert!(!take("u", t0));
    assert!(take("u", t0 + HOUR));
}
