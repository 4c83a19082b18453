//! Attacks staged on loopback against every door (issue "Hold under hostile load"), each with
//! bounded counts and times: slow clients from many addresses against the SMTP front end, a
//! milter message with thousands of huge recipients, messages past the memory budget, junk
//! commands, and milter versions we do not speak. Nothing here asserts a speed: each test
//! asserts that the legitimate client got through, and the memory and store bounds.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use crate::http::{call, sample};
use crate::milter_client::{Daemon, Mta, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::postfix::free_port;
use crate::smtp_client::*;
use authmilter::config::{Config, Delivery};
use authmilter::milter::command::Command;
use authmilter::milter::consts::*;
use authmilter::milter::reply::Reply;
use authmilter::store::{Filter, Store};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// An SMTP front end for untrusted loopback clients (only 10/8 is trusted), into a Maildir.
fn front_end(c: &mut Config, maildir: &Path) {
    c.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
    c.smtp.listen = Some("127.0.0.1:0".parse().unwrap());
    c.smtp.local_domains = vec!["example.net".into()];
    c.smtp.delivery = Delivery::Maildir(maildir.to_path_buf());
}

/// A slow client from `source`: sends one byte of a command every `pace`, never a line end,
/// until the server closes or `give_up` passes. Returns the greeting and the last reply line.
async fn slowloris(
    source: IpAddr,
    server: SocketAddr,
    pace: Duration,
    give_up: Duration,
) -> (String, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let Ok(mut stream) = socket.connect(server).await else {
        return (String::new(), String::new());
    };
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while started.elapsed() < give_up {
        if stream.write_all(b"N").await.is_err() {
            break;
        }
        match tokio::time::timeout(pace, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let mut lines = text.lines();
    let greeting = lines.next().unwrap_or_default().to_string();
    let last = lines.last().unwrap_or(&greeting).to_string();
    (greeting, last)
}

/// A whole transaction from 127.0.0.1, retrying a refused connection, within `within`.
fn legitimate_transaction(port: u16, within: Duration) -> Sent {
    let started = Instant::now();
    let raw = message("Carol <carol@example.org>", "legit", "Hello.\r\n");
    loop {
        let sent = send_plain(port, "carol@example.org", &["bob@example.net"], &raw);
        if sent.reply.code == 250 || started.elapsed() > within {
            return sent;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// Issue 18 §1: 500 slow connections from 50 addresses (127.0.3.1-50, ten each) filled every
// slot; the per-network cap (a /24 gets 50) keeps most of them out at accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_from_many_addresses_leaves_room_for_a_real_client() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let m = maildir.clone();
    let d = Daemon::start_with_api(move |c| front_end(c, &m)).await;
    let server = d.smtp.unwrap();
    let mut attack = tokio::task::JoinSet::new();
    for host in 1..=50u8 {
        for _ in 0..10 {
            let source = IpAddr::from([127, 0, 3, host]);
            attack.spawn(slowloris(
                source,
                server,
                Duration::from_secs(1),
                Duration::from_secs(20),
            ));
        }
    }
    // Let the attack take what it can before the real client comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let port = server.port();
    let sent =
        tokio::task::spawn_blocking(move || legitimate_transaction(port, Duration::from_secs(15)))
            .await
            .unwrap();
    assert_eq!(sent.reply.code, 250, "{sent}");
    assert_eq!(delivered_count(&maildir), 1);
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    let network = sample(
        &metrics,
        "authmilter_smtp_refused_connections_total{reason=\"network\"}",
    );
    assert!(network >= 400.0, "refused per network: {network}");
    attack.abort_all();
}

// Issue 18 §1: under stress (here 14 of 20 slots), slow clients get the short stress timeout
// for the greeting and each command and are let go with 421 4.4.2, so their slots come free
// even when no address or network cap applies. Once the load is below the threshold the
// normal timeouts return, as in Postfix: the remaining slow clients stay until they give up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_stress_slow_clients_are_let_go_and_a_real_client_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let m = maildir.clone();
    let d = Daemon::start_with_api(move |c| {
        front_end(c, &m);
        c.smtp.max_connections = 20;
        c.smtp.max_connections_per_network = 20;
        c.smtp.stress_timeout = Duration::from_secs(1);
    })
    .await;
    let server = d.smtp.unwrap();
    let mut attack = tokio::task::JoinSet::new();
    for i in 0..20u8 {
        let source = IpAddr::from([127, 0, 4, 1 + i % 2]);
        attack.spawn(slowloris(
            source,
            server,
            Duration::from_millis(200),
            Duration::from_secs(12),
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = server.port();
    let sent =
        tokio::task::spawn_blocking(move || legitimate_transaction(port, Duration::from_secs(15)))
            .await
            .unwrap();
    assert_eq!(sent.reply.code, 250, "{sent}");
    let mut cut = 0;
    while let Some(result) = attack.join_next().await {
        let (greeting, last) = result.unwrap();
        assert!(greeting.starts_with("220 "), "{greeting}");
        if last.starts_with("421 4.4.2") {
            cut += 1;
        }
    }
    // 20 open, stressed from 14: at least 7 are let go, and any later arrival pushes the
    // load back over the threshold.
    assert!((7..=20).contains(&cut), "{cut} slow clients let go");
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    assert!(sample(&metrics, "authmilter_smtp_stress_episodes_total") >= 1.0);
    assert!(
        sample(
            &metrics,
            "authmilter_smtp_no_progress_total{reason=\"timeout\"}"
        ) >= 7.0
    );
    assert_eq!(sample(&metrics, "authmilter_smtp_stress"), 0.0, "over");
}

// Issue 18 §1: NOOP, RSET, HELP and VRFY in a row (Postfix's junk command limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_commands_without_progress_end_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("Maildir");
    let d = Daemon::start(move |c| {
        front_end(c, &m);
        c.smtp.junk_command_limit = 3;
    })
    .await;
    let port = d.smtp.unwrap().port();
    let replies = tokio::task::spawn_blocking(move || {
        let (mut c, _) = Client::connect(port);
        let mut codes = vec![c.command("EHLO client.test").code];
        // A MAIL resets the count: three junk commands, MAIL, RSET, then three more.
        for line in [
            "NOOP",
            "HELP",
            "VRFY bob",
            "MAIL FROM:<a@example.org>",
            "RSET",
        ] {
            codes.push(c.command(line).code);
        }
        codes.push(c.command("NOOP").code);
        codes.push(c.command("NOOP").code);
        let last = c.command("NOOP");
        (codes, last)
    })
    .await
    .unwrap();
    assert_eq!(replies.0, [250, 250, 214, 252, 250, 250, 250, 250]);
    assert_eq!(replies.1.code, 421, "{:?}", replies.1.lines);
    assert!(
        replies.1.text().starts_with("4.4.2"),
        "{:?}",
        replies.1.lines
    );
}

// Issue 18 §3: past `limits.max_inflight_bytes` a message is deferred (452 4.3.1) instead of
// growing, through the SMTP front end and the milter alike; the budget comes back after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_past_the_memory_budget_are_deferred_and_the_budget_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let m = maildir.clone();
    let d = Daemon::start_with_api(move |c| {
        front_end(c, &m);
        c.limits.max_inflight_bytes = 1 << 20;
    })
    .await;
    let big = message(
        "Alice <alice@example.com>",
        "big",
        &"x".repeat(76).repeat(30_000).replace("xx", "x\r\n"),
    );
    assert!(big.len() > 2 << 20);
    let small = sign_rsa(
        "example.com",
        &message("Alice <alice@example.com>", "small", "Hello.\r\n"),
    );
    let port = d.smtp.unwrap().port();
    let (b, s) = (big.clone(), small.clone());
    let (refused, accepted) = tokio::task::spawn_blocking(move || {
        (
            send_plain(port, "alice@example.com", &["bob@example.net"], &b),
            send_plain(port, "alice@example.com", &["bob@example.net"], &s),
        )
    })
    .await
    .unwrap();
    assert_eq!(refused.reply.code, 452, "{refused}");
    assert!(refused.reply.text().starts_with("4.3.1"), "{refused}");
    assert_eq!(accepted.reply.code, 250, "{accepted}");
    assert_eq!(delivered_count(&maildir), 1, "only the small one");

    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    match mta
        .message("BIG", "alice@example.com", None, &big)
        .await
        .as_slice()
    {
        [Reply::ReplyCode { text }] => assert!(text.as_str().starts_with("452 4.3.1"), "{text}"),
        other => panic!("{other:?}"),
    }
    let r = mta
        .message("SMALL", "alice@example.com", None, &small)
        .await;
    assert_eq!(r.last(), Some(&Reply::Continue), "{r:?}");

    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    assert_eq!(sample(&metrics, "authmilter_inflight_bytes"), 0.0);
    assert_eq!(
        sample(&metrics, "authmilter_inflight_budget_bytes"),
        f64::from(1u32 << 20)
    );
    assert!(sample(&metrics, "authmilter_inflight_refusals_total") >= 2.0);
}

// Issue 18 §4: the README promises versions 2 to 6; an OPTNEG offering 0 or 1 is closed
// without a reply rather than answered as if it were 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_versions_we_do_not_speak_are_refused() {
    let d = Daemon::start(|_| {}).await;
    for version in [0, 1] {
        let mut mta = d.mta().await;
        mta.send(&Command::OptNeg {
            version,
            actions: POSTFIX_ACTIONS,
            protocol: POSTFIX_PROTOCOL,
        })
        .await;
        assert_eq!(mta.reply().await, None, "version {version}");
    }
    let mut mta = d.mta().await;
    assert_eq!(mta.negotiate(2, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await, 2);
}

fn delivered_count(maildir: &Path) -> usize {
    std::fs::read_dir(maildir.join("new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `VmRSS` or `VmHWM` of a process, in bytes.
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

// Issue 18 §2: one milter message with 2,000 recipients of 64 KiB (address and macro) took
// the daemon from 34 to 756 MiB and made a 124 MiB store row. Against the real binary: RSS
// grows by less than 64 MiB, the message is deferred as over limits.max_recipients, and its
// row (and the API's answer) stays under 64 KiB with the recipient count kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_recipients_and_macros_stay_bounded_in_memory_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start(Zone::from_file(testdata("dns/main.zone")).unwrap()).await;
    let port = free_port();
    let store = dir.path().join("verdicts.sqlite");
    let config = dir.path().join("authmilter.toml");
    std::fs::write(
        &config,
        format!(
            "authserv_id = \"mx.test.example\"\ntrusted_networks = [\"10.0.0.0/8\"]\n\
             [dns]\nnameservers = [\"{}\"]\n[milter]\nlisten = \"127.0.0.1:{port}\"\n\
             [store]\npath = \"{}\"\n",
            dns.addr,
            store.display()
        ),
    )
    .unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("AUTHMILTER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let mut mta = loop {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            drop(s);
            break Mta::connect(addr).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let before = memory(child.id(), "VmRSS:");

    mta.macros(SMFIC_MAIL, &[("i", "HUGE")]).await;
    // MAIL is not answered (SMFIP_NR_MAIL: the default policy never refuses there).
    assert!(mta.protocol & SMFIP_NR_MAIL != 0);
    mta.send(&Command::Mail {
        args: vec!["<alice@example.com>".into()],
    })
    .await;
    let local = "r".repeat(64 * 1024);
    for i in 0..2000 {
        let address = format!("<{i}{local}@example.net>");
        mta.macros(SMFIC_RCPT, &[("{rcpt_addr}", &address)]).await;
        mta.send(&Command::Rcpt {
            args: vec![address],
        })
        .await;
    }
    let raw = message("Alice <alice@example.com>", "huge", "Hello.\r\n");
    let (headers, body) = crate::milter_client::split_message(&raw, true);
    for (name, value) in headers {
        mta.send(&Command::Header { name, value }).await;
    }
    mta.send(&Command::EndOfHeaders).await;
    mta.send(&Command::Body { chunk: body }).await;
    mta.send(&Command::EndOfMessage { chunk: Vec::new() }).await;
    let replies = mta.replies().await;
    let peak = memory(child.id(), "VmHWM:");
    println!("RSS before {before} bytes, peak after {peak} bytes");
    match replies.as_slice() {
        [Reply::ReplyCode { text }] => assert!(text.as_str().starts_with("452 4.5.3"), "{text}"),
        other => panic!("{other:?}"),
    }
    assert!(
        peak < before + (64 << 20),
        "RSS grew from {before} to a peak of {peak} bytes"
    );
    // SIGTERM flushes the store writer.
    let _ = Process::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let conn = rusqlite::Connection::open(&store).unwrap();
    let (row_bytes, count): (i64, i64) = conn
        .query_row(
            "SELECT length(rcpts) + length(document) + coalesce(length(helo), 0) \
             + coalesce(length(mail_from), 0) + coalesce(length(message_id), 0), rcpt_count \
             FROM verdicts WHERE queue_id = 'HUGE'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(row_bytes < 64 * 1024, "row of {row_bytes} bytes");
    println!("store row of {row_bytes} bytes");
    assert_eq!(count, 2000);
    let answer = Store::open(&store)
        .unwrap()
        .list(
            &Filter {
                queue_id: Some("HUGE".into()),
                ..Filter::default()
            },
            10,
        )
        .unwrap();
    let item = &answer.items[0];
    let json = serde_json::to_string(item).unwrap();
    assert!(json.len() < 64 * 1024, "API answer of {} bytes", json.len());
    assert_eq!(item["rcpt_count"], 2000);
    assert_eq!(item["rcpts"].as_array().unwrap().len(), 100);
    assert_eq!(item["verdict"], "tempfail");
}
