//! Issue 22 §6: with a PostgreSQL store the abuse limits are the fleet's: two daemons on one
//! database (a private cluster, `pg_cluster.rs`) share one AUTH failure budget and one hourly
//! message allowance; with the database gone each host counts alone, neither letting
//! everything through nor locking everyone out.

use super::*;
use crate::fleet::use_pg;
use crate::pg_cluster::PgCluster;

async fn pair(site: &Site, pg: &PgCluster, db: &str, limits: fn(&mut Config)) -> (Daemon, Daemon) {
    pg.create_db(db);
    tokio::join!(
        Daemon::start_with_api(|c| {
            site.configure(c);
            use_pg(c, pg, db, "mx1");
            limits(c);
        }),
        Daemon::start_with_api(|c| {
            site.configure(c);
            use_pg(c, pg, db, "mx2");
            limits(c);
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_one_auth_failure_limit() {
    let Some(pg) = PgCluster::start() else { return };
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let (one, two) = pair(&site, &pg, "authfail", |c| {
        c.smtp.auth.max_failures_per_ip = 3;
        c.smtp.auth.block = Duration::from_secs(600);
    })
    .await;
    let (a, b) = (one.listeners[2].port(), two.listeners[2].port());
    blocking(move || {
        let (mut c, _) = Client::connect(a);
        assert_eq!(login(&mut c, "alice@example.com", "guess1").code, 535);
        let (mut c, _) = Client::connect(a);
        assert_eq!(login(&mut c, "alice@example.com", "guess2").code, 535);
        // The third failure, on the other host, starts the block there...
        let (mut c, _) = Client::connect(b);
        assert_eq!(login(&mut c, "alice@example.com", "guess3").code, 421);
        // ... which holds on the first host too, even for the right password.
        let (mut c, _) = Client::connect(a);
        let r = login(&mut c, "alice@example.com", PASSWORD);
        assert_eq!(r.code, 421, "{r:?}");
    })
    .await;
    for d in [&one, &two] {
        let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
            .await
            .text();
        assert_eq!(sample(&metrics, "authmilter_limits_local_total"), 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_one_hourly_message_limit() {
    let Some(pg) = PgCluster::start() else { return };
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let (one, two) = pair(&site, &pg, "hourly", |c| {
        c.smtp.auth.max_messages_per_hour = 2;
    })
    .await;
    let (a, b) = (one.listeners[2].port(), two.listeners[2].port());
    blocking(move || {
        let (mut c, _) = Client::connect(a);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 235);
        assert_eq!(c.command("MAIL FROM:<alice@example.com>").code, 250);
        c.command("RSET");
        assert_eq!(c.command("MAIL FROM:<alice@example.com>").code, 250);
        c.command("RSET");
        // The first host used the hour's allowance: the second refuses.
        let (mut c, _) = Client::connect(b);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 235);
        let r = c.command("MAIL FROM:<alice@example.com>");
        assert_eq!(
            (r.code, r.text()),
            (451, "4.7.1 Too many messages this hour, try again later")
        );
    })
    .await;
}

// The database killed: logins still succeed (no lockout), and failures are still limited,
// by this host's own counts; each such answer is counted in the metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_each_host_counts_alone() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("down");
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        use_pg(c, &pg, "down", "mx1");
        c.smtp.auth.max_failures_per_ip = 3;
        c.smtp.auth.block = Duration::from_secs(600);
    })
    .await;
    let p = d.listeners[2].port();
    // One failure counted while the database is up (in both places).
    blocking(move || {
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", "guess1").code, 535);
    })
    .await;
    tokio::task::block_in_place(|| pg.kill());
    blocking(move || {
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 235);
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", "guess2").code, 535);
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", "guess3").code, 421);
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 421);
    })
    .await;
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    assert!(sample(&metrics, "authmilter_limits_local_total") >= 1.0);
}
