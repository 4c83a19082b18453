//! A fleet of filter hosts on one PostgreSQL database (a private cluster, `pg_cluster.rs`):
//! the API answers as it does over SQLite after the same milter traffic; two daemons write
//! to one database and every query counts both; the database killed and restarted under
//! load loses only what the metrics say was dropped; a SQLite file's history copied in.

use crate::dashboard::{by_id, get, hostile_report, traffic};
use crate::http::record;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::pg_cluster::PgCluster;
use authmilter::config::{Config, ReportDelivery};
use authmilter::milter::reply::Reply;
use authmilter::server::Signal;
use authmilter::store::{
    Filter, GroupBy, Lease, Location, PgTarget, ReportFilter, SentReport, Store, StoreError,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// Points a daemon's store at database `db` of `pg`, recording as `host`.
pub(crate) fn use_pg(c: &mut Config, pg: &PgCluster, db: &str, host: &str) {
    c.store.path = None;
    c.store.url = Some(PgTarget::parse(&pg.url(db), None).unwrap());
    c.store.host = host.into();
}

pub(crate) async fn json(addr: SocketAddr, target: &str) -> Value {
    let r = get(addr, target).await;
    assert_eq!(r.status, 200, "{target}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// The fields of a verdict that do not depend on when or where it was stored.
fn essence(v: &Value) -> Value {
    serde_json::json!({
        "queue_id": v["queue_id"], "message_id": v["message_id"], "client_ip": v["client_ip"],
        "helo": v["helo"], "mail_from": v["mail_from"], "rcpts": v["rcpts"],
        "rcpt_count": v["rcpt_count"], "from_domain": v["from_domain"],
        "transport": v["transport"], "verdict": v["verdict"], "spf": v["spf"],
        "dkim": v["dkim"], "dmarc": v["dmarc"],
        "authentication_results": without_header_b(&v["authentication_results"]),
    })
}

/// The A-R without its `header.b=` tokens: each daemon's messages are signed when they are sent
/// (the signature's `t=` is the clock's), so the two runs' signatures differ when they straddle
/// a second.
fn without_header_b(ar: &Value) -> Value {
    let Some(text) = ar.as_str() else {
        return ar.clone();
    };
    let kept: Vec<&str> = text
        .split_whitespace()
        .filter(|token| !token.starts_with("header.b="))
        .collect();
    Value::from(kept.join(" "))
}

/// A metric's value in the `/metrics` text.
pub(crate) async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = get(addr, "/metrics").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_the_api_as_sqlite_does_after_milter_traffic() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("parity");
    let lite = Daemon::start_with_api(|_| {}).await;
    let fleet = Daemon::start_with_api(|c| use_pg(c, &pg, "parity", "mx1")).await;
    traffic(&lite).await;
    traffic(&fleet).await;
    let (a, b) = (lite.http.unwrap(), fleet.http.unwrap());
    for target in [
        "/v1/stats?group_by=dmarc",
        "/v1/stats?group_by=verdict",
        "/v1/stats?group_by=from_domain&from_domain=example.com",
    ] {
        let (mut x, mut y) = (json(a, target).await, json(b, target).await);
        // The window's start is the clock's.
        x["since"] = Value::Null;
        y["since"] = Value::Null;
        assert_eq!(x, y, "{target}");
    }
    let (sqlite, postgres) = (json(a, "/v1/verdicts").await, json(b, "/v1/verdicts").await);
    let items =
        |v: &Value| -> Vec<Value> { v["items"].as_array().unwrap().iter().map(essence).collect() };
    assert_eq!(items(&sqlite), items(&postgres));
    assert_eq!(items(&postgres).len(), 4);
    for item in postgres["items"].as_array().unwrap() {
        assert_eq!(item["host"], "mx1", "{item}");
    }
    // By queue id, then the one verdict by its id.
    let one = json(b, "/v1/verdicts?queue_id=UIFAIL1").await;
    let id = one["items"][0]["id"].as_i64().unwrap();
    let detail = json(b, &format!("/v1/verdicts/{id}")).await;
    assert_eq!(detail["queue_id"], "UIFAIL1");
    assert_eq!(
        essence(&detail),
        essence(&json(a, "/v1/verdicts?queue_id=UIFAIL1").await["items"][0])
    );
    // Paging with the cursor.
    let first = json(b, "/v1/verdicts?limit=3").await;
    let next = first["next"].as_str().unwrap();
    let rest = json(b, &format!("/v1/verdicts?limit=3&next={next}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    // The dashboard's overview (jsonb queries) shows the same figures.
    let (ui_a, ui_b) = (get(a, "/ui/").await.body, get(b, "/ui/").await.body);
    for id in [
        "total-messages",
        "count-accept",
        "count-reject",
        "rate-spf",
        "rate-dkim",
        "rate-dmarc",
    ] {
        assert_eq!(by_id(&ui_a, id), by_id(&ui_b, id), "#{id}");
    }
    assert_eq!(by_id(&ui_b, "rate-dkim"), "75.0 %");
    for list in ["failing-domains", "failing-ips"] {
        assert_eq!(section(&ui_a, list), section(&ui_b, list), "#{list}");
    }
}

/// The element with `id` up to the end of its table or list.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[start..];
    &rest[..rest
        .find("</table>")
        .or(rest.find("</ul>"))
        .unwrap_or(rest.len())]
}

/// Runs `f` with a store connection on the blocking pool (the client blocks).
async fn with_store<T: Send + 'static>(
    location: Location,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(move || f(&mut Store::connect(&location)?))
        .await
        .unwrap()
        .unwrap()
}

// The reporting tables give the same answers on both back ends (ids included: both number
// from 1), for the calls the API, the dashboard and the report job make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_tables_answer_alike_on_both_back_ends() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("reports");
    let dir = tempfile::tempdir().unwrap();
    let lite = Location::Sqlite(dir.path().join("r.sqlite"));
    let fleet = Location::Postgres(PgTarget::parse(&pg.url("reports"), None).unwrap());
    let mut answers = Vec::new();
    for location in [lite, fleet] {
        answers.push(
            with_store(location, |s| {
                let report = hostile_report();
                let first = s.insert_received_report(&report)?;
                let again = s.insert_received_report(&report)?;
                let now = 1_700_000_000_000;
                let sent = SentReport {
                    domain: "example.com".into(),
                    period_begin: now - 86_400_000,
                    period_end: now,
                    report_id: "r1".into(),
                    state: "sent".into(),
                    attempts: 1,
                    next_attempt: None,
                    destinations: vec!["mailto:d@example.net".into()],
                    messages: 7,
                    bytes: Some(1234),
                    detail: None,
                };
                s.save_sent_report(&sent, now)?;
                Ok(serde_json::json!({
                    "first": format!("{first:?}"),
                    "again": format!("{again:?}"),
                    "list": s.received_reports(&ReportFilter::default(), 10)?.items,
                    "one": s.received_report(1)?,
                    "summary": s.received_summary(Some("example.com"), 0)?,
                    "sent": format!("{:?}", s.sent_reports(0, now)?),
                    "stats": s.stats(None, GroupBy::Dmarc, None)?,
                    "empty": s.list(&Filter::default(), 10)?.items,
                }))
            })
            .await,
        );
    }
    let mut lite = answers[0].clone();
    let mut fleet = answers[1].clone();
    // Import times are the clock's.
    for v in [&mut lite, &mut fleet] {
        v["list"][0]["received_at"] = Value::Null;
        v["one"]["received_at"] = Value::Null;
        v["list"][0]["period"] = Value::Null;
        v["one"]["period"] = Value::Null;
    }
    assert_eq!(lite, fleet);
    assert_eq!(fleet["again"], "Duplicate(1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_one_database_every_query_counts_both() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("fleet");
    let (one, two) = tokio::join!(
        Daemon::start_with_api(|c| use_pg(c, &pg, "fleet", "mx1.example.net")),
        Daemon::start_with_api(|c| use_pg(c, &pg, "fleet", "mx2.example.net")),
    );
    traffic(&one).await;
    // The second host's traffic: wait for the fleet's eight.
    let mut mta = two.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("198.51.100.20", "mail.example.org")
        .await;
    for i in 0..4 {
        let raw = crate::common::message("Bob <bob@example.org>", &format!("two{i}"), "x\r\n");
        mta.message(&format!("MX2Q{i}"), "bob@example.org", None, &raw)
            .await;
    }
    let a = one.http.unwrap();
    let b = two.http.unwrap();
    let mut stats = Value::Null;
    for _ in 0..100 {
        stats = json(b, "/v1/stats?group_by=host").await;
        if stats["total"] == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats["total"], 8, "{stats}");
    let groups: Vec<(String, u64)> = stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_string(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("mx1.example.net".to_string(), 4),
            ("mx2.example.net".to_string(), 4)
        ]
    );
    // Either host answers for the whole fleet, each record naming its host.
    assert_eq!(json(a, "/v1/stats").await["total"], 8);
    let all = json(a, "/v1/verdicts").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    for item in items {
        let q = item["queue_id"].as_str().unwrap();
        let expected = if q.starts_with("MX2") {
            "mx2.example.net"
        } else {
            "mx1.example.net"
        };
        assert_eq!(item["host"], expected, "{item}");
    }
    let mine = json(a, "/v1/verdicts?host=mx2.example.net").await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 4);
    let q = json(a, "/v1/verdicts?queue_id=MX2Q3").await;
    assert_eq!(q["items"][0]["host"], "mx2.example.net");
    assert_eq!(
        pg.sql("fleet", "SELECT count(DISTINCT host) FROM verdicts"),
        "2"
    );
}

/// Waits until the writer has accounted for `sent` records (written, dropped or failed);
/// returns those three counts.
async fn settle(api: SocketAddr, sent: u64) -> (u64, u64, u64) {
    let mut last = (0, 0, 0);
    for _ in 0..300 {
        let written = metric(api, "authmilter_store_written_total").await;
        let dropped = metric(api, "authmilter_store_dropped_total").await;
        let failed = metric(api, "authmilter_store_failed_total").await;
        last = (written, dropped, failed);
        if written + dropped + failed == sent {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the writer accounted for {last:?} of {sent}");
}

/// Sends `n` messages over one milter connection; every one must be answered without
/// waiting on the store (accept: continue, or an Authentication-Results edit).
async fn send_burst(d: &Daemon, prefix: &str, n: usize) {
    send_burst_from(d, prefix, 0, n).await;
}

/// `n` messages numbered from `first` (queue ids `{prefix}{first}`...).
async fn send_burst_from(d: &Daemon, prefix: &str, first: usize, n: usize) {
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.1", "mx.example.com").await;
    for i in first..first + n {
        let raw = crate::common::message(
            "Alice <alice@example.com>",
            &format!("{prefix}{i}"),
            "x\r\n",
        );
        let replies = mta
            .message(&format!("{prefix}{i}"), "alice@example.com", None, &raw)
            .await;
        assert!(
            matches!(replies.last(), Some(Reply::Accept | Reply::Continue)),
            "{prefix}{i}: {replies:?}"
        );
    }
}

// The database is killed (SIGKILL, as in a crash) while mail flows, and restarted: every
// message is answered at once all along; afterwards, what the database holds plus what the
// metrics count as dropped (queue full) or failed is exactly what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_killed_and_restarted_under_load_loses_only_what_is_counted() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("crash");
    let d = Daemon::start_with_api(|c| {
        use_pg(c, &pg, "crash", "mx1");
        c.store.queue_size = 20;
    })
    .await;
    let api = d.http.unwrap();
    send_burst(&d, "BEFORE", 60).await;
    pg.kill();
    let started = std::time::Instant::now();
    send_burst(&d, "DURING", 150).await;
    // The end of message did not wait on the dead database.
    assert!(started.elapsed() < Duration::from_secs(60));
    let dropped_while_down = metric(api, "authmilter_store_dropped_total").await;
    // 150 messages against 20 queued and at most one batch (20) in hand.
    assert!(dropped_while_down >= 110, "{dropped_while_down} dropped");
    tokio::task::block_in_place(|| pg.start_server());
    // The writer reconnects (with backoff) and empties the queue.
    settle(api, 60 + 150).await;
    // Fewer than the queue holds: none of these may be dropped.
    send_burst(&d, "AFTER", 15).await;
    let sent = 60 + 150 + 15;
    let (written, dropped, failed) = settle(api, sent).await;
    let last = (written, dropped, failed);
    let stored: u64 = pg
        .sql("crash", "SELECT count(*) FROM verdicts")
        .parse()
        .unwrap();
    // Stored is what the writer counted as written: no batch twice, none lost unseen.
    assert_eq!(stored, written, "{last:?}");
    assert_eq!(stored + dropped + failed, sent);
    assert!(metric(api, "authmilter_store_disconnects_total").await >= 1);
    // Everything sent after the restart is there.
    assert_eq!(
        pg.sql(
            "crash",
            "SELECT count(*) FROM verdicts WHERE queue_id LIKE 'AFTER%'"
        ),
        "15"
    );
    // And the API reads again on a new connection.
    assert_eq!(json(api, "/v1/stats").await["total"], stored);
}

// The fleet-wide lease is a PostgreSQL advisory lock: one connection holds it at a time, and
// a connection that ends gives it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lease_is_held_by_one_connection_at_a_time() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("lease");
    let location = Location::Postgres(PgTarget::parse(&pg.url("lease"), None).unwrap());
    tokio::task::spawn_blocking(move || {
        let a = Store::connect(&location).unwrap();
        let b = Store::connect(&location).unwrap();
        assert!(a.try_lease(Lease::Reports).unwrap());
        assert!(!b.try_lease(Lease::Reports).unwrap());
        // Another job's lease is another lock.
        assert!(b.try_lease(Lease::Retention).unwrap());
        a.release(Lease::Reports).unwrap();
        assert!(b.try_lease(Lease::Reports).unwrap());
        let c = Store::connect(&location).unwrap();
        assert!(!c.try_lease(Lease::Reports).unwrap());
        drop(b);
        let mut granted = false;
        for _ in 0..100 {
            granted = c.try_lease(Lease::Reports).unwrap();
            if granted {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(granted, "the lease outlived its connection");
    })
    .await
    .unwrap();
}

// Issue 26: retention deletes the oldest verdicts in bounded steps on both back ends, and
// on PostgreSQL a host that finds the retention lease taken leaves the prune to its holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_steps_are_bounded_and_leased_on_both_back_ends() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("prune");
    let dir = tempfile::tempdir().unwrap();
    let lite = Location::Sqlite(dir.path().join("p.sqlite"));
    let fleet = Location::Postgres(PgTarget::parse(&pg.url("prune"), None).unwrap());
    for location in [lite, fleet.clone()] {
        let steps = with_store(location, |s| {
            let mut records: Vec<_> = (0..10)
                .map(|i| record(1_000 + i, &format!("old{i}")))
                .collect();
            records.push(record(50_000, "new"));
            s.insert_batch(&records)?;
            let mut steps = Vec::new();
            loop {
                let step = s.prune_step(10_000, 4)?;
                steps.push((step.deleted, step.done));
                if step.done || steps.len() > 5 {
                    break;
                }
            }
            let left: Vec<Value> = s.list(&Filter::default(), 20)?.items;
            let left: Vec<&str> = left.iter().filter_map(|v| v["queue_id"].as_str()).collect();
            assert_eq!(left, ["new"]);
            Ok(steps)
        })
        .await;
        assert_eq!(steps, [(4, false), (4, false), (2, true)]);
    }
    // Another host holds the lease: this one deletes nothing and is done.
    tokio::task::spawn_blocking(move || {
        let holder = Store::connect(&fleet).unwrap();
        let mut other = Store::connect(&fleet).unwrap();
        other.insert_batch(&[record(2_000, "old")]).unwrap();
        assert!(holder.try_lease(Lease::Retention).unwrap());
        let step = other.prune_step(10_000, 4).unwrap();
        assert_eq!((step.deleted, step.done), (0, true));
        holder.release(Lease::Retention).unwrap();
        let step = other.prune_step(10_000, 4).unwrap();
        assert_eq!((step.deleted, step.done), (1, true));
    })
    .await
    .unwrap();
}

// Two daemons on one database both run the report job (every 200 ms, started together):
// yesterday's report for reports.example leaves once, from one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_send_each_report_once() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("reports");
    let dir = tempfile::tempdir().unwrap();
    let outboxes = [dir.path().join("out1"), dir.path().join("out2")];
    let location = Location::Postgres(PgTarget::parse(&pg.url("reports"), None).unwrap());
    let day = {
        let location = location.clone();
        tokio::task::spawn_blocking(move || crate::report_send::yesterdays_records_at(&location, 5))
            .await
            .unwrap()
    };
    let daemon = |host: &'static str, outbox: std::path::PathBuf| {
        let pg = &pg;
        Daemon::start_with_api(move |c| {
            use_pg(c, pg, "reports", host);
            c.reports.aggregate = true;
            c.reports.email = Some("dmarc-reports@mx.test.example".into());
            c.reports.delivery = Some(ReportDelivery::Outbox(outbox));
            c.reports.check_interval = Duration::from_millis(200);
        })
    };
    let (_one, _two) = tokio::join!(
        daemon("mx1", outboxes[0].clone()),
        daemon("mx2", outboxes[1].clone())
    );
    let count = |dir: &std::path::Path| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let started = std::time::Instant::now();
    while count(&outboxes[0]) + count(&outboxes[1]) == 0 {
        // A bound, not a speed: the jobs run every 200 ms; the machine may be loaded.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no report sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Many more runs of both jobs: still one report in all.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        count(&outboxes[0]) + count(&outboxes[1]),
        1,
        "{:?} {:?}",
        std::fs::read_dir(&outboxes[0]).map(|d| d.count()),
        std::fs::read_dir(&outboxes[1]).map(|d| d.count())
    );
    let row = tokio::task::spawn_blocking(move || {
        Store::connect(&location)
            .unwrap()
            .sent_report("reports.example", day.start)
            .unwrap()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!((row.state.as_str(), row.messages), ("sent", 5));
    assert_eq!(pg.sql("reports", "SELECT count(*) FROM reports_sent"), "1");
}

/// Runs the real binary; returns (success, stdout, stderr).
fn authmilter(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// A single host moves to the fleet database: `store copy` takes its SQLite history
// (verdicts, reports sent and received; rows from before hosts were recorded get --host),
// the fleet's API then answers as the old host's did, and a second copy is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_sqlite_history_into_the_fleet_database_once() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("moved");
    let lite = Daemon::start_with_api(|c| c.store.host = "old-mx".into()).await;
    traffic(&lite).await;
    let path = crate::dashboard::store_path(&lite);
    {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = Store::open(&path).unwrap();
            s.insert_received_report(&hostile_report()).unwrap();
            // Two failure reports: one with a Message-ID, one without.
            for (id, ip) in [
                (Some("<f1@reporter.example>"), "203.0.113.9"),
                (None, "203.0.113.10"),
            ] {
                s.insert_failure_report(&authmilter::store::NewFailureReport {
                    received_at: authmilter::dates::now_ms() - 3_600_000,
                    reporter: "noreply@reporter.example".into(),
                    report_message_id: id.map(str::to_string),
                    format: "arf".into(),
                    feedback_type: "auth-failure".into(),
                    auth_failure: Some("dmarc".into()),
                    domain: Some("example.com".into()),
                    source_ip: Some(ip.into()),
                    arrival: Some(1_699_999_000),
                    identity_alignment: Some("none".into()),
                    authentication_results: vec!["mx.reporter.example; dmarc=fail".into()],
                    headers: format!("From: x@example.com\r\nSubject: {ip}\r\n"),
                    incidents: 1,
                    ..Default::default()
                })
                .unwrap();
            }
            s.save_sent_report(
                &SentReport {
                    domain: "example.com".into(),
                    period_begin: 1_700_000_000_000,
                    period_end: 1_700_086_400_000,
                    report_id: "old-1".into(),
                    state: "sent".into(),
                    attempts: 1,
                    next_attempt: None,
                    destinations: vec!["mailto:d@example.net".into()],
                    messages: 3,
                    bytes: Some(900),
                    detail: None,
                },
                1_700_090_000_000,
            )
            .unwrap();
            // As rows written before migration 4 (hosts) are.
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute(
                    "UPDATE verdicts SET host = NULL WHERE queue_id IN ('UIPASS0', 'UIPASS1')",
                    [],
                )
                .unwrap();
        })
        .await
        .unwrap();
    }
    let from = format!("sqlite:{}", path.display());
    let url = pg.url("moved");
    let (ok, out, err) = authmilter(&["store", "migrate", "--store", &url]);
    assert!(ok, "{err}");
    let pg_version = format!(
        "postgres schema version {}",
        authmilter::store::PG_SCHEMA_VERSION
    );
    assert!(out.contains(&pg_version), "{out}");
    let (ok, out, err) = authmilter(&["store", "migrate", "--store", &from]);
    assert!(ok, "{err}");
    let lite_version = format!(
        "sqlite schema version {}",
        authmilter::store::SCHEMA_VERSION
    );
    assert!(out.contains(&lite_version), "{out}");

    let copy = [
        "store",
        "copy",
        "--from",
        &from,
        "--to",
        &url,
        "--host",
        "legacy-mx",
    ];
    let (ok, out, err) = authmilter(&copy);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "copied 4 verdicts, 1 reports sent (0 already there), 1 reports received with 1 rows \
             (0 already there), 2 failure reports (0 already there)"
        ),
        "{out}"
    );
    assert_eq!(
        pg.sql(
            "moved",
            "SELECT host || '=' || count(*) FROM verdicts GROUP BY host ORDER BY host"
        ),
        "legacy-mx=2\nold-mx=2"
    );

    let fleet = Daemon::start_with_api(|c| use_pg(c, &pg, "moved", "new-mx")).await;
    let (a, b) = (lite.http.unwrap(), fleet.http.unwrap());
    for target in [
        "/v1/stats?group_by=dmarc",
        "/v1/reports/summary?domain=example.com",
    ] {
        let (mut x, mut y) = (json(a, target).await, json(b, target).await);
        x["since"] = Value::Null;
        y["since"] = Value::Null;
        assert_eq!(x, y, "{target}");
    }
    let items =
        |v: Value| -> Vec<Value> { v["items"].as_array().unwrap().iter().map(essence).collect() };
    assert_eq!(
        items(json(a, "/v1/verdicts").await),
        items(json(b, "/v1/verdicts").await)
    );
    let received = json(b, "/v1/reports").await;
    assert_eq!(received["items"][0]["row_count"], 1);
    let failures = |v: Value| -> Vec<Value> {
        let mut items = v["items"].as_array().unwrap().clone();
        for item in &mut items {
            item["id"] = Value::Null;
        }
        items
    };
    let moved = failures(json(b, "/v1/reports/failures").await);
    assert_eq!(moved.len(), 2);
    assert_eq!(moved, failures(json(a, "/v1/reports/failures").await));
    // The overview reads hour counts: the copied file's were added to the fleet's.
    let (ui_a, ui_b) = (get(a, "/ui/").await.body, get(b, "/ui/").await.body);
    for id in [
        "total-messages",
        "count-accept",
        "count-reject",
        "rate-dmarc",
    ] {
        assert_eq!(by_id(&ui_a, id), by_id(&ui_b, id), "#{id}");
    }
    assert_eq!(by_id(&ui_b, "total-messages"), "4");
    assert_eq!(
        pg.sql("moved", "SELECT sum(messages) FROM verdict_hours"),
        "4"
    );
    // Each copied day went into a partition of its own, none into the DEFAULT one.
    assert_eq!(
        pg.sql("moved", "SELECT count(*) FROM verdicts_default"),
        "0"
    );

    // Copying again would double the history: refused, nothing copied.
    let (ok, _, err) = authmilter(&copy);
    assert!(!ok);
    assert!(
        err.contains("already holds verdicts recorded by legacy-mx, old-mx")
            || err.contains("already holds verdicts recorded by old-mx, legacy-mx"),
        "{err}"
    );
    assert_eq!(pg.sql("moved", "SELECT count(*) FROM verdicts"), "4");
    assert_eq!(
        pg.sql("moved", "SELECT count(*) FROM reports_received"),
        "1"
    );
    // A source that is not SQLite is refused with a clear message.
    let (ok, _, err) = authmilter(&["store", "copy", "--from", &url, "--to", &url]);
    assert!(!ok && err.contains("give sqlite:PATH"), "{err}");
}

/// A CA (PEM) and a server certificate it signed for `names`, with its key (PEM).
fn pki(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

// TLS to the database through rustls (ring): verify-full with the site's CA file connects
// and the server sees an encrypted session; another CA, or a name the certificate does not
// carry, is refused (verify-ca accepts the latter: chain only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_in_verify_full_mode() {
    let (ca, cert, key) = pki(&["127.0.0.1"]);
    let (other_ca, _, _) = pki(&["127.0.0.1"]);
    let Some(pg) = PgCluster::start_with(|dir| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join("server.crt"), &cert).unwrap();
        std::fs::write(dir.join("server.key"), &key).unwrap();
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", dir.join("server.crt").display()),
            format!("ssl_key_file={}", dir.join("server.key").display()),
        ]
    }) else {
        return;
    };
    pg.create_db("tls");
    let certs = tempfile::tempdir().unwrap();
    let (ca_file, other_file) = (certs.path().join("ca.pem"), certs.path().join("other.pem"));
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(&other_file, &other_ca).unwrap();
    let url = |host: &str, mode: &str| {
        format!("postgres://postgres@{host}:{}/tls?sslmode={mode}", pg.port)
    };

    let verified =
        PgTarget::parse(&url("127.0.0.1", "verify-full"), Some(ca_file.clone())).unwrap();
    let d = Daemon::start_with_api(move |c| {
        c.store.path = None;
        c.store.url = Some(verified);
        c.store.host = "mx-tls".into();
    })
    .await;
    traffic(&d).await;
    assert_eq!(json(d.http.unwrap(), "/v1/stats").await["total"], 4);
    let encrypted = pg.sql(
        "tls",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE ssl AND application_name = 'authmilter'",
    );
    assert_ne!(encrypted, "0", "no encrypted authmilter session");
    let plain = pg.sql(
        "tls",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE NOT ssl AND application_name = 'authmilter'",
    );
    assert_eq!(plain, "0");

    let attempts = [
        (url("127.0.0.1", "verify-full"), other_file.clone(), false),
        (url("localhost", "verify-full"), ca_file.clone(), false),
        (url("localhost", "verify-ca"), ca_file.clone(), true),
        (url("127.0.0.1", "require"), other_file.clone(), false),
    ];
    for (url, ca, ok) in attempts {
        let target = PgTarget::parse(&url, Some(ca)).unwrap();
        let result = tokio::task::spawn_blocking(move || {
            Store::connect(&Location::Postgres(target)).map(|_| ())
        })
        .await
        .unwrap();
        assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
        if let Err(e) = result {
            let text = format!("{e:?}");
            assert!(
                text.contains("Certificate") || text.contains("certificate"),
                "{text}"
            );
        }
    }
}

// on_unavailable = "buffer": the daemon starts while the database is down, mail flows, the
// records wait in the queue and are stored once the database comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_mode_starts_without_the_database_and_stores_once_it_is_up() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("late");
    tokio::task::block_in_place(|| pg.stop());
    let d = Daemon::start_with_api(|c| {
        use_pg(c, &pg, "late", "mx1");
        c.store.on_unavailable = authmilter::config::OnUnavailable::Buffer;
    })
    .await;
    send_burst(&d, "EARLY", 12).await;
    let api = d.http.unwrap();
    assert_eq!(metric(api, "authmilter_store_written_total").await, 0);
    // The API says the store cannot be reached rather than hanging or crashing.
    let r = get(api, "/v1/stats").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("\"unavailable\""), "{}", r.body);
    assert_eq!(get(api, "/readyz").await.status, 503);
    tokio::task::block_in_place(|| pg.start_server());
    let (written, dropped, failed) = settle(api, 12).await;
    assert_eq!((written, dropped, failed), (12, 0, 0));
    assert_eq!(pg.sql("late", "SELECT count(*) FROM verdicts"), "12");
    assert_eq!(json(api, "/v1/stats").await["total"], 12);
    assert_eq!(json(api, "/readyz").await["store"], "ok");
}

// A slow database (a transaction holding the verdicts table locked) never slows the end of
// message: the burst is answered in full while the lock is still held and nothing could be
// written; once the lock goes, the queued records are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_does_not_hold_mail() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("slow");
    let d = Daemon::start_with_api(|c| use_pg(c, &pg, "slow", "mx1")).await;
    let api = d.http.unwrap();
    // The daemon starts in the background: wait for its writer to have made the schema.
    for _ in 0..200 {
        if pg.sql("slow", "SELECT to_regclass('verdicts') IS NOT NULL") == "t" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let port = pg.port.to_string();
    let mut locker = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &port,
            "-d",
            "slow",
            "-c",
        ])
        .arg(
            "BEGIN; LOCK TABLE verdicts IN ACCESS EXCLUSIVE MODE; \
             SELECT pg_sleep(120); COMMIT;",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the lock is held.
    for _ in 0..100 {
        let held = pg.sql(
            "slow",
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'verdicts' AND l.mode = 'AccessExclusiveLock' AND l.granted",
        );
        if held == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_burst(&d, "SLOW", 30).await;
    // Every message was answered; the writer is still stuck behind the lock.
    if let Some(status) = locker.try_wait().unwrap() {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut locker.stderr.take().unwrap(), &mut err).unwrap();
        panic!("the lock ended early: {status} {err}");
    }
    assert_eq!(metric(api, "authmilter_store_written_total").await, 0);
    pg.sql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()",
    );
    let _ = locker.wait();
    let (written, dropped, failed) = settle(api, 30).await;
    assert_eq!((written, dropped, failed), (30, 0, 0));
    assert_eq!(pg.sql("slow", "SELECT count(*) FROM verdicts"), "30");
}

// Issue 22 item 4: a database password never reaches a log line, the output of `store
// migrate` / `store copy` or an error, wherever the URL holds it (user info, percent-encoded,
// a `password=` query parameter, both at once); the real binary against a real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_passwords_never_appear_in_logs_or_command_output() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("secrets");
    let port = pg.port;
    let dir = tempfile::tempdir().unwrap();
    let lite = format!("sqlite:{}", dir.path().join("s.sqlite").display());
    let urls = [
        format!("postgres://postgres:pw1SECRET@127.0.0.1:{port}/DB?sslmode=disable"),
        format!("postgres://postgres:pw2%40SECRET@127.0.0.1:{port}/DB?sslmode=disable"),
        format!("postgres://postgres@127.0.0.1:{port}/DB?password=pw3SECRET&sslmode=disable"),
        format!(
            "postgresql://postgres:pw4SECRET@127.0.0.1:{port}/DB?pass%77ord=pw5SECRET&sslmode=disable"
        ),
    ];
    let quiet = |label: &str, out: &str| {
        assert!(!out.contains("SECRET"), "{label}: {out}");
    };
    let (ok, _, err) = authmilter(&["store", "migrate", "--store", &lite]);
    assert!(ok, "{err}");
    for url in &urls {
        // Migrate (the URL is printed), copy (printed twice), and their errors.
        let good = url.replace("/DB", "/secrets");
        let (ok, out, err) = authmilter(&["store", "migrate", "--store", &good]);
        assert!(ok, "{err}");
        assert!(
            out.contains("***") && out.contains("postgres schema version"),
            "{out}"
        );
        quiet("migrate", &format!("{out}{err}"));
        let (ok, out, err) = authmilter(&["store", "copy", "--from", &lite, "--to", &good]);
        assert!(ok, "{err}");
        assert!(out.contains("***"), "{out}");
        quiet("copy", &format!("{out}{err}"));
        let missing = url.replace("/DB", "/nosuchdb");
        let (ok, out, err) = authmilter(&["store", "migrate", "--store", &missing]);
        assert!(
            !ok && err.contains("nosuchdb") && err.contains("***"),
            "{err}"
        );
        quiet("migrate error", &format!("{out}{err}"));
        let (ok, out, err) = authmilter(&["store", "copy", "--from", &good, "--to", &good]);
        assert!(!ok && err.contains("give sqlite:PATH"), "{err}");
        quiet("copy error", &format!("{out}{err}"));
        let refused = url.replace(&format!(":{port}/"), ":1/");
        let (ok, out, err) = authmilter(&["store", "migrate", "--store", &refused]);
        assert!(!ok, "{out}");
        quiet("unreachable", &format!("{out}{err}"));
        // `serve` refusing to start on a database it cannot open says which, and how.
        let config = dir.path().join("am.toml");
        std::fs::write(
            &config,
            format!(
                "[milter]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = {:?}\n",
                missing
            ),
        )
        .unwrap();
        let (ok, out, err) = authmilter(&["serve", "--config", config.to_str().unwrap()]);
        assert!(!ok && err.contains("***"), "{err}");
        quiet("serve", &format!("{out}{err}"));
    }
}

// Issue 22 item 4: a running daemon's log (debug level, the PostgreSQL client's own lines
// included) never shows the password, from start to stop.
#[test]
fn serve_logs_never_show_the_store_password() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("served");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("milter.sock");
    let config = dir.path().join("am.toml");
    let url = format!(
        "postgres://postgres:pw1SECRET@127.0.0.1:{}/served?password=pw2SECRET&sslmode=disable",
        pg.port
    );
    std::fs::write(
        &config,
        format!(
            "[milter]\nlisten = \"unix:{}\"\n[dns]\nnameservers = [\"127.0.0.1:9\"]\n\
             [store]\nurl = {url:?}\n",
            socket.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("AUTHMILTER_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("verdict store open")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no store: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("***"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
}

// Issue 22 item 4: TLS that does not authenticate a database off this machine is warned
// about at the first connection (`prefer` can be downgraded to plain TCP unseen). 224.0.0.1
// is not loopback, and the kernel refuses a TCP connection to it without sending anything.
#[test]
fn unverified_tls_to_a_remote_database_is_warned_about() {
    for (mode, warned) in [
        ("prefer", true),
        ("disable", true),
        ("require", true),
        ("verify-full", false),
    ] {
        let url = format!(
            "postgres://am:pwSECRET@224.0.0.1:5432/x?sslmode={mode}&connect_timeout=2&password=pwSECRET"
        );
        let (ok, out, err) = authmilter(&["store", "migrate", "--store", &url]);
        assert!(!ok, "{out}");
        assert!(!err.contains("SECRET"), "{err}");
        assert_eq!(
            err.contains("does not authenticate the server"),
            warned,
            "{mode}: {err}"
        );
        if warned {
            assert!(err.contains(&format!("sslmode={mode}")), "{err}");
        }
    }
}

/// Polls `/metrics` until `name` reaches `at_least` (at most 30 s).
async fn wait_metric(api: SocketAddr, name: &str, at_least: u64) -> u64 {
    for _ in 0..300 {
        let value = metric(api, name).await;
        if value >= at_least {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = [
        "written",
        "dropped",
        "failed",
        "spooled",
        "replayed",
        "disconnects",
    ]
    .map(|c| format!("{c}_total"));
    let mut seen = Vec::new();
    for c in counts {
        seen.push(format!(
            "{c} {}",
            metric(api, &format!("authmilter_store_{c}")).await
        ));
    }
    panic!("{name} stayed below {at_least}: {seen:?}");
}

// Issue 27: an outage longer than the queue holds, with a restart of the daemon in the
// middle, loses nothing: what the database cannot take goes to the local spool, which
// survives the restart and is replayed in order, exactly once, when the database is back.
// The rows are then exactly the messages answered, each with its DMARC report event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_queue_with_a_restart_loses_nothing_to_the_spool() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("spool");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.sqlite");
    let configure = |c: &mut Config| {
        use_pg(c, &pg, "spool", "mx1");
        c.store.queue_size = 1000;
        c.store.spool_path = Some(spool.clone());
        c.store.on_unavailable = authmilter::config::OnUnavailable::Buffer;
    };
    let first = Daemon::start_with_api(configure).await;
    let api = first.http.unwrap();
    send_burst(&first, "BEFORE", 30).await;
    assert_eq!(settle(api, 30).await, (30, 0, 0));
    pg.kill();
    // Three times what the queue holds, while the database is down. The queue still has to
    // hold what arrives while one batch is being spooled (an fsync each): sent in chunks of
    // half the queue, each spooled before the next, so a loaded machine's slow disk cannot
    // overrun it.
    for chunk in 0..6 {
        send_burst_from(&first, "DURING", chunk * 500, 500).await;
        wait_metric(
            api,
            "authmilter_store_spooled_total",
            ((chunk + 1) * 500) as u64,
        )
        .await;
    }
    assert_eq!(metric(api, "authmilter_store_dropped_total").await, 0);
    assert_eq!(metric(api, "authmilter_store_failed_total").await, 0);
    assert!(metric(api, "authmilter_store_spool_bytes").await > 0);
    // The daemon restarts during the outage.
    first.control.send(Signal::Graceful).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), first.task)
        .await
        .expect("the first daemon stopped")
        .unwrap();
    let second = Daemon::start_with_api(configure).await;
    let api = second.http.unwrap();
    assert!(metric(api, "authmilter_store_spool_bytes").await > 0);
    send_burst(&second, "AFTER", 40).await;
    wait_metric(api, "authmilter_store_spooled_total", 40).await;
    tokio::task::block_in_place(|| pg.start_server());
    // The spool of both runs is replayed: what this daemon counts as written.
    assert_eq!(settle(api, 3000 + 40).await, (3040, 0, 0));
    assert_eq!(metric(api, "authmilter_store_replayed_total").await, 3040);
    assert_eq!(metric(api, "authmilter_store_spool_bytes").await, 0);
    // Rows = messages answered, once each, in the order they were answered.
    let expected: Vec<String> = (0..30)
        .map(|i| format!("BEFORE{i}"))
        .chain((0..3000).map(|i| format!("DURING{i}")))
        .chain((0..40).map(|i| format!("AFTER{i}")))
        .collect();
    let stored = pg.sql(
        "spool",
        "SELECT string_agg(queue_id, ',' ORDER BY id) FROM verdicts",
    );
    assert_eq!(stored, expected.join(","));
    // Each with its report event: the aggregate reports count the outage too.
    assert_eq!(
        pg.sql(
            "spool",
            "SELECT count(*) FROM verdicts WHERE dmarc_event IS NOT NULL \
             AND dmarc_domain = 'example.com'"
        ),
        "3070"
    );
}

// A database written before the typed columns (schema 3: the previous release's migrations
// and row format, `jsonb` documents) is upgraded in place: the columns are filled from the
// documents, the document becomes JSON text in `bytea`, and the rows read as before.
#[tokio::test(flavor = "multi_thread")]
async fn schema_3_database_gains_the_verdict_columns_in_place() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("old");
    pg.sql(
        "old",
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    );
    for sql in &authmilter::store::PG_MIGRATIONS[..3] {
        pg.sql("old", sql);
    }
    let event = r#"{"policy":{"domain":"old.example","adkim":"r","aspf":"r","p":"reject","sp":"reject","np":"reject","testing":false,"fo":"0","rua":[["mailto:d@old.example",0]],"ruf":[]},"header_from":"old.example","envelope_from":"old.example","envelope_to":"example.net","disposition":"none","dkim_aligned":true,"spf_aligned":false,"reasons":[],"dkim":[["old.example","s1","pass"]],"spf":["old.example","mfrom","fail"]}"#;
    let doc = r#"{"verdict":"accept","spf":{"result":"fail","domain":"old.example"},"dkim":[{"result":"fail","domain":"x.example"},{"result":"pass","domain":"old.example"}],"arc":{"result":"none"},"dmarc":{"result":"pass","policy":"reject","disposition":"none"}}"#;
    pg.sql(
        "old",
        &format!(
            "INSERT INTO schema_version VALUES (3); \
             INSERT INTO verdicts (received_at, host, transport, client_ip, rcpts, rcpt_count, \
             from_domain, verdict, dmarc, duration_us, document, dmarc_domain, dmarc_event) \
             VALUES (1000, 'mx-old', 'milter', '192.0.2.1', '[\"b@example.net\"]', 1, \
             'old.example', 'accept', 'pass', 5, '{doc}', 'old.example', '{event}'), \
             (1001, 'mx-old', 'smtp', '192.0.2.2', '[]', 0, NULL, 'accept', NULL, 5, \
             '{{\"verdict\":\"accept\",\"dkim\":{{}}}}', NULL, NULL);"
        ),
    );
    let url = pg.url("old");
    let (columns, first, dkim, events) = tokio::task::spawn_blocking(move || {
        let location = Location::Postgres(PgTarget::parse(&url, None).unwrap());
        let store = Store::connect(&location).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            authmilter::store::PG_SCHEMA_VERSION
        );
        let page = store.list(&Filter::default(), 10).unwrap();
        let o = store.overview(0, 10_000, 10).unwrap();
        let mut events = Vec::new();
        store
            .for_each_dmarc_event("old.example", 0, 10_000, |_, e| {
                events.push(serde_json::to_string(&e).unwrap())
            })
            .unwrap();
        (
            page.items.len(),
            page.items[1].clone(),
            (o.methods[1].count("pass"), o.methods[1].count("none")),
            events,
        )
    })
    .await
    .unwrap();
    assert_eq!(columns, 2);
    assert_eq!(first["dmarc"]["policy"], "reject");
    assert_eq!(first["rcpts"], serde_json::json!(["b@example.net"]));
    assert_eq!(dkim, (1, 1));
    assert_eq!(events, vec![event.to_string()]);
    assert_eq!(
        pg.sql(
            "old",
            "SELECT spf || ' ' || dkim || ' ' || dkim_domain || ' ' || arc || ' ' || policy \
             || ' ' || disposition FROM verdicts WHERE received_at = 1000"
        ),
        "fail pass old.example none reject none"
    );
}

// Issue 26: a database of schema 5 with rows on two days gains its day partitions in
// place (rows readable after); retention then drops the older day's partition whole, and
// the coming days' partitions are made ahead.
#[tokio::test(flavor = "multi_thread")]
async fn schema_5_database_is_partitioned_by_day_and_pruned_by_partition() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("days");
    pg.sql(
        "days",
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    );
    for sql in &authmilter::store::PG_MIGRATIONS[..5] {
        pg.sql("days", sql);
    }
    let day = 86_400_000_i64;
    pg.sql(
        "days",
        &format!(
            "INSERT INTO schema_version VALUES (5); \
             INSERT INTO verdicts (received_at, host, transport, queue_id, client_ip, rcpts, \
             rcpt_count, verdict, duration_us, document) VALUES \
             (1000, 'mx', 'smtp', 'first-day', '192.0.2.1', '[]', 0, 'accept', 5, '\\x7b7d'), \
             ({}, 'mx', 'smtp', 'third-day', '192.0.2.1', '[]', 0, 'accept', 5, '\\x7b7d');",
            2 * day + 5
        ),
    );
    let partitions = "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_inherits i \
                      JOIN pg_class c ON c.oid = i.inhrelid \
                      WHERE i.inhparent = 'verdicts'::regclass AND c.relname LIKE 'verdicts_d1970%'";
    let url = pg.url("days");
    let (before, step, after) = tokio::task::spawn_blocking(move || {
        let location = Location::Postgres(PgTarget::parse(&url, None).unwrap());
        let mut store = Store::connect(&location).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            authmilter::store::PG_SCHEMA_VERSION
        );
        let ids = |s: &Store| -> Vec<String> {
            s.list(&Filter::default(), 10)
                .unwrap()
                .items
                .iter()
                .map(|v| v["queue_id"].as_str().unwrap().to_string())
                .collect()
        };
        let before = ids(&store);
        let step = store.prune_step(2 * day, 10).unwrap();
        (before, step, ids(&store))
    })
    .await
    .unwrap();
    assert_eq!(before, ["third-day", "first-day"]);
    assert_eq!((step.deleted, step.done), (1, true));
    assert_eq!(after, ["third-day"]);
    assert_eq!(pg.sql("days", partitions), "verdicts_d19700103");
    let today = authmilter::dates::now_ms() / day * day;
    let ahead = format!(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'verdicts'::regclass AND c.relname IN \
         (SELECT 'verdicts_d' || to_char(to_timestamp(d / 1000) AT TIME ZONE 'UTC', 'YYYYMMDD') \
          FROM (VALUES ({today}::bigint), ({}::bigint), ({}::bigint)) AS v(d))",
        today + day,
        today + 2 * day
    );
    assert_eq!(pg.sql("days", &ahead), "3");
    // A new verdict lands in its day's partition, not the DEFAULT one.
    let now = authmilter::dates::now_ms();
    let location = Location::Postgres(PgTarget::parse(&pg.url("days"), None).unwrap());
    with_store(location, move |s| s.insert_batch(&[record(now, "today")])).await;
    assert_eq!(pg.sql("days", "SELECT count(*) FROM verdicts_default"), "0");
    assert_eq!(pg.sql("days", "SELECT count(*) FROM verdicts"), "2");
}
