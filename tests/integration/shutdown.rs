//! Stop always stops: the real binary (`authmilter serve`, real signals) ends within
//! `server.shutdown_grace_secs` whatever its verdict store is doing (PostgreSQL killed with
//! records queued, a SQLite file on a full disk or held locked), counts what it could not
//! write, and a second signal ends it at once even with a message in flight.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use crate::milter_client::{Mta, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::pg_cluster::PgCluster;
use crate::postfix::free_port;
use authmilter::milter::command::Command;
use authmilter::milter::reply::Reply;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The grace period the daemons below run with.
const GRACE_SECS: u64 = 3;
/// How long past the grace period a stop may take on a loaded test machine (process exit,
/// the log writer's last flush). A bound, not a speed: a stop that hangs never meets it.
const SLACK: Duration = Duration::from_secs(7);

/// `authmilter serve` as a child process with its loopback DNS server, milter and HTTP
/// ports; killed if still running when dropped.
struct Served {
    child: Child,
    milter: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
    _dns: DnsServer,
}

impl Served {
    /// Starts `serve` with `store` (TOML lines of the `[store]` section) and `grace_secs`;
    /// returns once the milter port answers.
    async fn start(dir: &Path, store: &str, grace_secs: u64) -> Served {
        let dns = DnsServer::start(Zone::from_file(testdata("dns/main.zone")).unwrap()).await;
        let (milter_port, http_port) = (free_port(), free_port());
        let config = dir.join("authmilter.toml");
        std::fs::write(
            &config,
            format!(
                "authserv_id = \"mx.test.example\"\n\
                 [dns]\nnameservers = [\"{}\"]\ntimeout_ms = 500\nattempts = 1\n\
                 [milter]\nlisten = \"127.0.0.1:{milter_port}\"\n\
                 [server]\nshutdown_grace_secs = {grace_secs}\n\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\n\
                 [store]\n{store}\n",
                dns.addr
            ),
        )
        .unwrap();
        let log = dir.join("serve.log");
        let child = Process::new(env!("CARGO_BIN_EXE_authmilter"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("AUTHMILTER_LOG", "authmilter=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let served = Served {
            child,
            milter: format!("127.0.0.1:{milter_port}").parse().unwrap(),
            http: format!("127.0.0.1:{http_port}").parse().unwrap(),
            log,
            _dns: dns,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(served.milter).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve did not start: {}",
                served.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        let ok = Process::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal}");
    }

    /// Waits at most `bound` for the process to end; its status and how long it took.
    async fn exit_within(&mut self, bound: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > bound {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running {:?} after the signal; log:\n{}",
                    started.elapsed(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        crate::fleet::metric(self.http, name).await
    }

    /// Sends `n` messages over one milter connection, each answered at once.
    async fn send(&self, prefix: &str, n: usize) {
        let mut mta = Mta::connect(self.milter).await;
        mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
        mta.connect_client("192.0.2.1", "mx.example.com").await;
        for i in 0..n {
            let id = format!("{prefix}{i}");
            let raw = message("Alice <alice@example.com>", &id, "x\r\n");
            let replies = mta.message(&id, "alice@example.com", None, &raw).await;
            assert!(
                matches!(replies.last(), Some(Reply::Accept | Reply::Continue)),
                "{id}: {replies:?}"
            );
        }
    }

    /// The writer's closing line: (written, failed, dropped).
    fn final_counts(&self) -> (u64, u64, u64) {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("verdict store writer stopped"))
            .unwrap_or_else(|| panic!("no closing line from the writer:\n{log}"));
        let field = |name: &str| -> u64 {
            let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        };
        (field("written"), field("failed"), field("dropped"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/metrics` until `name` reaches `at_least` (at most 20 s).
async fn wait_metric(served: &Served, name: &str, at_least: u64) {
    for _ in 0..400 {
        if served.metric(name).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{name} stayed below {at_least} ({}); log:\n{}",
        served.metric(name).await,
        served.log()
    );
}

// Issue 27: SIGTERM while the PostgreSQL store is down (killed, as in a crash) and records
// wait in the queue used to hang past the grace period (the writer's backoff consumed the
// one stop notification). Now: exit 0 within the grace period, the queued records counted
// as failed, and what was written before the crash is what the database holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_database_outage_exits_within_the_grace_period() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("outage");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("url = \"{}\"\nhost = \"mx1\"", pg.url("outage"));
    let mut served = Served::start(dir.path(), &store, GRACE_SECS).await;
    served.send("BEFORE", 20).await;
    wait_metric(&served, "authmilter_store_written_total", 20).await;
    pg.kill();
    served.send("DURING", 30).await;
    // The writer has seen the database gone and holds the records.
    wait_metric(&served, "authmilter_store_disconnects_total", 1).await;
    assert_eq!(served.metric("authmilter_store_written_total").await, 20);
    served.signal("-TERM");
    let (status, took) = served
        .exit_within(Duration::from_secs(GRACE_SECS) + SLACK)
        .await;
    assert!(status.success(), "{status}: {}", served.log());
    println!("stopped in {took:?}");
    let (written, failed, dropped) = served.final_counts();
    assert_eq!((written, failed, dropped), (20, 30, 0), "{}", served.log());
    assert!(served.log().contains("batch lost"), "{}", served.log());
    pg.start_server();
    assert_eq!(pg.sql("outage", "SELECT count(*) FROM verdicts"), "20");
}

// README: "A second signal stops at once", also while a message is in flight (the first
// signal waits for it, up to the grace period, here a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once_with_a_message_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("path = \"{}\"", dir.path().join("v.sqlite").display());
    let mut served = Served::start(dir.path(), &store, 60).await;
    let mut mta = Mta::connect(served.milter).await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.1", "mx.example.com").await;
    mta.send(&Command::Mail {
        args: vec!["<alice@example.com>".into()],
    })
    .await;
    mta.send(&Command::Header {
        name: "From".into(),
        value: b"alice@example.com".to_vec(),
    })
    .await;
    // Every stage is no-reply: wait until the daemon holds the message (its header charged
    // to the in-flight budget), or the first signal could find an idle session.
    let mut held = false;
    for _ in 0..200 {
        if crate::fleet::metric(served.http, "authmilter_inflight_bytes").await > 0 {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        held,
        "the message never reached the daemon: {}",
        served.log()
    );
    served.signal("-TERM");
    // The first signal waits for the message in flight.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "{}",
        served.log()
    );
    served.signal("-TERM");
    let (status, took) = served.exit_within(SLACK).await;
    assert!(status.success(), "{status}: {}", served.log());
    assert!(
        served
            .log()
            .contains("second stop signal; stopping at once"),
        "{}",
        served.log()
    );
    println!("stopped {took:?} after the second signal");
}

/// A small tmpfs mounted over a folder (root only), unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            crate::signing_interop::skip("cannot mount a small tmpfs (needs root)");
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Process::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

// A SQLite store whose disk fills up: every record that cannot be written is counted as
// failed, mail still flows, space coming back lets the writer go on; then, with the file
// held locked by another connection (longer than the grace period), SIGTERM still ends
// the daemon in time, counting the batch it could not write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_on_a_full_disk_or_locked_counts_and_stops_in_time() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let db = disk.path().join("verdicts.sqlite");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("path = \"{}\"", db.display());
    let mut served = Served::start(dir.path(), &store, GRACE_SECS).await;
    served.send("FIRST", 5).await;
    wait_metric(&served, "authmilter_store_written_total", 5).await;
    let filler = disk.fill();
    served.send("FULL", 300).await;
    wait_metric(&served, "authmilter_store_failed_total", 1).await;
    let log = served.log();
    assert!(log.contains("writing verdicts failed; batch lost"), "{log}");
    assert!(log.contains("full"), "{log}");
    std::fs::remove_file(filler).unwrap();
    let written = served.metric("authmilter_store_written_total").await;
    served.send("AFTER", 5).await;
    wait_metric(&served, "authmilter_store_written_total", written + 5).await;
    // Another connection takes the write lock and keeps it past the grace period.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    served.send("LOCKED", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    served.signal("-TERM");
    let (status, took) = served
        .exit_within(Duration::from_secs(GRACE_SECS) + SLACK)
        .await;
    assert!(status.success(), "{status}: {}", served.log());
    println!("stopped in {took:?}");
    locker.execute_batch("ROLLBACK").unwrap();
    let (written, failed, dropped) = served.final_counts();
    assert_eq!(
        written + failed + dropped,
        5 + 300 + 5 + 3,
        "{}",
        served.log()
    );
    assert!(failed >= 3, "{}", served.log());
    let stored: i64 = locker
        .query_row("SELECT count(*) FROM verdicts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored as u64, written);
}

// The spool on a full disk while PostgreSQL is down: what cannot be spooled is counted as
// failed with a clear line, mail still flows, and SIGTERM still ends the daemon in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_spool_is_counted_and_does_not_hang() {
    let Some(pg) = PgCluster::start() else { return };
    let Some(disk) = SmallDisk::mount("2m") else {
        return;
    };
    pg.create_db("fullspool");
    let dir = tempfile::tempdir().unwrap();
    let store = format!(
        "url = \"{}\"\nspool_path = \"{}\"",
        pg.url("fullspool"),
        disk.path().join("spool.sqlite").display()
    );
    let mut served = Served::start(dir.path(), &store, GRACE_SECS).await;
    served.send("BEFORE", 5).await;
    wait_metric(&served, "authmilter_store_written_total", 5).await;
    let _filler = disk.fill();
    pg.kill();
    served.send("DURING", 100).await;
    wait_metric(&served, "authmilter_store_failed_total", 1).await;
    let log = served.log();
    assert!(
        log.contains("spooling verdicts failed; batch lost"),
        "{log}"
    );
    assert!(log.contains("full"), "{log}");
    served.signal("-TERM");
    let (status, took) = served
        .exit_within(Duration::from_secs(GRACE_SECS) + SLACK)
        .await;
    assert!(status.success(), "{status}: {}", served.log());
    println!("stopped in {took:?}");
    let (written, failed, dropped) = served.final_counts();
    let spooled: u64 = {
        let log = served.log();
        let line = log.lines().find(|l| l.contains("writer stopped")).unwrap();
        let at = line.find("spooled=").unwrap() + "spooled=".len();
        line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    assert_eq!(written, 5);
    assert!(failed > 0);
    assert_eq!(
        written + failed + dropped + spooled,
        105,
        "{}",
        served.log()
    );
}
