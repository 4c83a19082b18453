//! The SMTP front end for real: the daemon in-process with an SMTP listener on port 0, a
//! plain SMTP client on loopback, delivery into a Maildir in a temporary folder or to a real
//! Postfix downstream (the next hop), and the same loopback DNS server as every other test.
//!
//! 127.0.0.1 is trusted by default; tests of inbound mail trust another network instead so
//! the client (always 127.0.0.1 here) is verified like an outside one.

use crate::common::*;
use crate::milter_client::Daemon;
use crate::postfix::{find_program, free_port, running_as_root, skip, Postfix};
use crate::smtp_client::*;
use authmilter::config::{Config, Delivery};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Inbound from 127.0.0.1 (trusted: 10.0.0.0/8 only), delivered into `maildir`.
pub fn inbound(c: &mut Config, maildir: &Path) {
    c.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
    c.smtp.listen = Some("127.0.0.1:0".parse().unwrap());
    c.smtp.local_domains = vec!["example.net".into()];
    c.smtp.delivery = Delivery::Maildir(maildir.to_path_buf());
}

/// The files delivered into a Maildir's `new/`, as text.
pub fn delivered(maildir: &Path) -> Vec<String> {
    std::fs::read_dir(maildir.join("new"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the blocking SMTP client off the runtime the daemon lives on.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

pub fn port(d: &Daemon) -> u16 {
    d.smtp.expect("the daemon has an SMTP listener").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mail_lands_in_the_maildir_with_our_results() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let m = maildir.clone();
    let d = Daemon::start_with_api(move |c| inbound(c, &m)).await;
    let p = port(&d);
    let raw = sign_rsa(
        "example.com",
        &message(
            "Alice <alice@example.com>",
            "smtp-accepted",
            "Hello\r\n..dot\r\n",
        ),
    );
    let sent =
        blocking(move || send_plain(p, "alice@example.com", &["bob@example.net"], &raw)).await;
    assert_eq!(
        (sent.stage, sent.reply.code),
        (Stage::EndOfData, 250),
        "{sent}"
    );
    let files = delivered(&maildir);
    assert_eq!(files.len(), 1);
    let text = &files[0];
    assert!(
        text.starts_with("Return-Path: <alice@example.com>\r\n"),
        "{text}"
    );
    assert!(text.contains("Authentication-Results: mx.test"), "{text}");
    assert!(text.contains("Received: from client.test"), "{text}");
    assert!(text.contains("dkim=pass"), "{text}");
    assert!(text.contains("dmarc=pass"), "{text}");
    // The body arrives exactly (dot-unstuffed once).
    assert!(text.ends_with("\r\n\r\nHello\r\n..dot\r\n"), "{text:?}");

    // Recorded as an SMTP verdict, found by the queue id the client was given.
    let queue_id = sent
        .reply
        .queue_id()
        .unwrap_or_else(|| panic!("no queue id in {sent}"))
        .to_string();
    let api = d.http.unwrap();
    let mut found = None;
    for _ in 0..100 {
        let body = http_get(api, "/v1/verdicts?limit=10").await;
        if body.contains("\"transport\":\"smtp\"") {
            found = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = found.expect("the verdict is stored");
    assert!(body.contains(&queue_id), "queue id {queue_id} in {body}");
    assert!(body.contains("\"rcpts\":[\"bob@example.net\"]"), "{body}");
}

/// A minimal HTTP GET on loopback (the API answers one request per connection here).
async fn http_get(addr: std::net::SocketAddr, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

// RFC 7489 §6.3 / issue 5: a DMARC p=reject failure is refused at end of DATA, never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_reject_is_refused_and_nothing_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let m = maildir.clone();
    let d = Daemon::start(move |c| inbound(c, &m)).await;
    let p = port(&d);
    let raw = message("Alice <alice@example.com>", "smtp-forged", "x\r\n");
    let sent =
        blocking(move || send_plain(p, "alice@example.com", &["bob@example.net"], &raw)).await;
    assert_eq!(
        (sent.stage, sent.reply.code),
        (Stage::EndOfData, 550),
        "{sent}"
    );
    assert!(sent.reply.text().starts_with("5.7.1"), "{sent}");
    assert!(delivered(&maildir).is_empty());
}

// Issue 5: quarantined mail goes to the quarantine Maildir, not to the next hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_goes_to_its_own_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let (maildir, held) = (dir.path().join("Maildir"), dir.path().join("Quarantine"));
    let (m, q) = (maildir.clone(), held.clone());
    let d = Daemon::start(move |c| {
        inbound(c, &m);
        c.smtp.quarantine_maildir = Some(q);
    })
    .await;
    let p = port(&d);
    // example.net publishes p=quarantine; unsigned and outside its SPF range: DMARC fails.
    let raw = message("Net <news@example.net>", "smtp-quarantine", "x\r\n");
    let sent =
        blocking(move || send_plain(p, "news@example.net", &["bob@example.net"], &raw)).await;
    assert_eq!(sent.reply.code, 250, "{sent}");
    assert!(delivered(&maildir).is_empty());
    let held = delivered(&held);
    assert_eq!(held.len(), 1);
    assert!(held[0].contains("dmarc=fail"), "{}", held[0]);
}

// RFC 5321 §3.6.2 / issue 5: never an open relay. Untrusted clients may only send to the
// local domains; a trusted one may send anywhere (and its mail is signed, not verified).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_relay_attempts_are_refused_but_trusted_clients_relay() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let m = maildir.clone();
    let d = Daemon::start(move |c| inbound(c, &m)).await;
    let p = port(&d);
    let (reply_outside, reply_local) = blocking(move || {
        let (mut c, _) = Client::connect(p);
        c.command("EHLO client.test");
        c.command("MAIL FROM:<spammer@example.org>");
        let outside = c.command("RCPT TO:<victim@elsewhere.example>");
        let local = c.command("RCPT TO:<bob@EXAMPLE.NET>");
        c.command("QUIT");
        (outside, local)
    })
    .await;
    assert_eq!(reply_outside.code, 550, "{:?}", reply_outside.lines);
    assert!(
        reply_outside.text().starts_with("5.7.1"),
        "{:?}",
        reply_outside.lines
    );
    assert_eq!(reply_local.code, 250, "{:?}", reply_local.lines);

    let keys_dir = tempfile::tempdir().unwrap();
    let keys = signing_keys(keys_dir.path());
    let out = dir.path().join("Outbound");
    let o = out.clone();
    let d = Daemon::start(move |c| {
        inbound(c, &o);
        c.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
        c.signing.add_keys(keys);
    })
    .await;
    let p = port(&d);
    let raw = message("Alice <alice@example.com>", "smtp-outbound", "x\r\n");
    let sent =
        blocking(move || send_plain(p, "alice@example.com", &["carol@elsewhere.example"], &raw))
            .await;
    assert_eq!(sent.reply.code, 250, "{sent}");
    let files = delivered(&out);
    assert_eq!(files.len(), 1);
    assert!(files[0].contains("DKIM-Signature:"), "{}", files[0]);
    assert!(
        !files[0].contains("Authentication-Results:"),
        "{}",
        files[0]
    );
}

// Issue 5: a client that disconnects in the middle of DATA gets nothing delivered and
// nothing acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_in_the_middle_of_data_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let m = maildir.clone();
    let d = Daemon::start(move |c| inbound(c, &m)).await;
    let p = port(&d);
    let data = blocking(move || {
        let (mut c, _) = Client::connect(p);
        c.command("EHLO client.test");
        c.command("MAIL FROM:<alice@example.com>");
        c.command("RCPT TO:<bob@example.net>");
        let data = c.command("DATA");
        c.send(b"From: alice@example.com\r\nSubject: half\r\n\r\nonly the first li");
        drop(c);
        data
    })
    .await;
    assert_eq!(data.code, 354);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(delivered(&maildir).is_empty());
    assert!(
        !maildir.join("tmp").exists()
            || std::fs::read_dir(maildir.join("tmp")).unwrap().count() == 0
    );
}

/// Postfix as the next hop, for one test (it is stopped at the end); `None` when skipped.
pub fn downstream(extra: &str) -> Option<(Postfix, u16, PathBuf)> {
    let Some(postfix) = find_program("postfix") else {
        return skip("postfix not installed");
    };
    if !running_as_root() {
        return skip("postfix tests need root (postfix start)");
    }
    let scratch = tempfile::Builder::new()
        .prefix("authmilter-postfix-next-")
        .tempdir()
        .unwrap()
        .keep();
    let port = free_port();
    let instance = Postfix::start_downstream(&postfix, scratch.clone(), port, extra);
    Some((instance, port, scratch))
}

// Issue 5 against a real Postfix downstream: accepted mail arrives with our A-R and the
// client's identity (XFORWARD); a refusal of one recipient by Postfix reaches the client for
// that recipient; DMARC-reject mail is refused and never reaches Postfix; with Postfix stopped
// the client gets 4xx, never 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_to_real_postfix_delivers_refuses_and_tempfails() {
    let Some((postfix, next_port, _scratch)) = downstream(
        "smtpd_recipient_restrictions = check_recipient_access inline:{ { nobody@example.net = 550 5.1.1 no such user } }, permit_mynetworks, reject\n",
    ) else {
        return;
    };
    let d = Daemon::start(move |c| {
        c.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
        c.smtp.listen = Some("127.0.0.1:0".parse().unwrap());
        c.smtp.local_domains = vec!["example.net".into()];
        c.smtp.delivery = Delivery::Relay(format!("127.0.0.1:{next_port}"));
    })
    .await;
    let p = port(&d);

    // Accepted: two recipients, Postfix refuses one of them, the message goes to the other.
    let raw = sign_rsa(
        "example.com",
        &message(
            "Alice <alice@example.com>",
            "relay-accepted",
            "Hello Postfix\r\n",
        ),
    );
    let (rcpt_bad, end) = blocking(move || {
        let (mut c, _) = Client::connect(p);
        c.command("EHLO client.test");
        let mail = c.command("MAIL FROM:<alice@example.com>");
        assert_eq!(mail.code, 250, "{:?}", mail.lines);
        assert_eq!(c.command("RCPT TO:<bob@example.net>").code, 250);
        let bad = c.command("RCPT TO:<nobody@example.net>");
        assert_eq!(c.command("DATA").code, 354);
        let end = c.data(&raw);
        c.command("QUIT");
        (bad, end)
    })
    .await;
    assert_eq!(rcpt_bad.code, 550, "{:?}", rcpt_bad.lines);
    assert!(
        rcpt_bad.text().contains("no such user"),
        "{:?}",
        rcpt_bad.lines
    );
    assert_eq!(end.code, 250, "{:?}", end.lines);
    let arrived = postfix
        .delivered("relay-accepted@test", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("not delivered\n{}", postfix.maillog()));
    assert!(
        arrived.contains("Authentication-Results: mx.test"),
        "{arrived}"
    );
    assert!(arrived.contains("dkim=pass"), "{arrived}");
    // XFORWARD was offered and taken: Postfix logs the original client beside the
    // connecting one (both 127.0.0.1 here, the only address a loopback test has).
    assert!(
        postfix
            .log_line(|l| l.contains("postfix/smtpd") && l.contains("orig_client="))
            .is_some(),
        "{}",
        postfix.maillog()
    );

    // DMARC reject: refused at end of DATA; Postfix never sees the content.
    let forged = message("Alice <alice@example.com>", "relay-forged", "x\r\n");
    let sent =
        blocking(move || send_plain(p, "alice@example.com", &["bob@example.net"], &forged)).await;
    assert_eq!(
        (sent.stage, sent.reply.code),
        (Stage::EndOfData, 550),
        "{sent}"
    );
    assert!(postfix
        .delivered("relay-forged@test", Duration::from_millis(500))
        .is_none());
    assert!(!postfix.maillog().contains("relay-forged@test"));

    // Next hop gone: 4xx, never 250.
    postfix.stop(&[next_port]);
    let raw = sign_rsa(
        "example.com",
        &message("Alice <alice@example.com>", "relay-down", "x\r\n"),
    );
    let sent =
        blocking(move || send_plain(p, "alice@example.com", &["bob@example.net"], &raw)).await;
    assert!(
        (400..500).contains(&sent.reply.code),
        "expected 4xx with Postfix stopped: {sent}"
    );
}

// The real binary with the flags the README gives, and swaks (a real SMTP client) using
// STARTTLS: `serve --smtp --maildir --local-domain --tls-cert --tls-key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_smtp_with_starttls_takes_mail_from_swaks() {
    use crate::dns_server::{DnsServer, Zone};
    let Some(swaks) = crate::postfix::require("swaks") else {
        return;
    };
    let dns = DnsServer::start(Zone::from_file(testdata("dns/main.zone")).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["mx.serve.test".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let maildir = dir.path().join("Maildir");
    let message_file = dir.path().join("msg.eml");
    std::fs::write(
        &message_file,
        sign_rsa(
            "example.com",
            &message(
                "Alice <alice@example.com>",
                "swaks-tls",
                "Hello over TLS\r\n",
            ),
        ),
    )
    .unwrap();
    let smtp_port = free_port();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--authserv-id", "mx.serve.test", "--milter"])
        .arg(format!("unix:{}", dir.path().join("milter.sock").display()))
        .args(["--nameserver", &dns.addr.to_string()])
        .args(["--trusted-network", "10.0.0.0/8"])
        .args(["--smtp", &format!("127.0.0.1:{smtp_port}")])
        .arg("--maildir")
        .arg(&maildir)
        .args(["--local-domain", "example.net"])
        .arg("--tls-cert")
        .arg(&cert_file)
        .arg("--tls-key")
        .arg(&key_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let up = blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", smtp_port)).is_err() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    })
    .await;
    assert!(
        up,
        "no SMTP listener: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let out = blocking(move || {
        std::process::Command::new(swaks)
            .args(["--server", "127.0.0.1", "--port", &smtp_port.to_string()])
            .args(["--ehlo", "client.test", "--tls"])
            .args(["--from", "alice@example.com", "--to", "bob@example.net"])
            .arg("--data")
            .arg(format!("@{}", message_file.display()))
            .output()
            .unwrap()
    })
    .await;
    let transcript = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(out.status.success(), "swaks failed:\n{transcript}");
    assert!(transcript.contains("STARTTLS"), "{transcript}");
    assert!(transcript.contains("<~  250 2.0.0"), "{transcript}");
    let files = delivered(&maildir);
    assert_eq!(files.len(), 1, "{transcript}");
    assert!(files[0].contains("with ESMTPS"), "{}", files[0]);
    assert!(files[0].contains("dkim=pass"), "{}", files[0]);
}

// RFC 7208 §8.4 with policy `spf_fail_at_mail = "reject"`: refused at MAIL, 550 5.7.23.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_fail_can_be_refused_at_mail() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let policy = policy_dir(dir.path(), "spf_fail_at_mail = \"reject\"\n");
    let m = maildir.clone();
    let d = Daemon::start(move |c| {
        inbound(c, &m);
        c.policy_dir = Some(policy);
    })
    .await;
    let p = port(&d);
    // example.com's SPF allows 192.0.2.0/24 only; the client is 127.0.0.1.
    let raw = message("Alice <alice@example.com>", "smtp-spf", "x\r\n");
    let sent =
        blocking(move || send_plain(p, "alice@example.com", &["bob@example.net"], &raw)).await;
    assert_eq!((sent.stage, sent.reply.code), (Stage::Mail, 550), "{sent}");
    assert!(sent.reply.text().starts_with("5.7.23"), "{sent}");
}

// RFC 5321 §3.8: over the per-address limit a new connection is told 421 at once rather
// than left waiting; when one closes, the address may connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_limit_get_421() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("Maildir");
    let d = Daemon::start(move |c| {
        inbound(c, &m);
        c.smtp.max_connections_per_ip = 2;
    })
    .await;
    let p = port(&d);
    let (first, second, third, again) = blocking(move || {
        let (a, first) = Client::connect(p);
        let (b, second) = Client::connect(p);
        let (_c, third) = Client::connect(p);
        drop(a);
        drop(b);
        // The slots come back when the sessions notice the closed connections.
        let mut again = SmtpReply {
            code: 0,
            lines: vec![],
        };
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(20));
            let (_d, greeting) = Client::connect(p);
            again = greeting;
            if again.code == 220 {
                break;
            }
        }
        (first, second, third, again)
    })
    .await;
    assert_eq!((first.code, second.code), (220, 220));
    assert_eq!(third.code, 421, "{:?}", third.lines);
    assert!(third.text().contains("4.7.0"), "{:?}", third.lines);
    assert_eq!(again.code, 220, "{:?}", again.lines);
}

// RFC 3461 through a real Postfix next hop, which offers DSN: once authmilter has seen that,
// it offers DSN too and passes RET/ENVID/NOTIFY/ORCPT on; Postfix then sends its own success
// notice with our client's envelope id to the sender (delivered to the same test mailbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsn_requests_reach_a_real_postfix_next_hop() {
    let Some((postfix, next_port, _scratch)) = downstream("") else {
        return;
    };
    let d = Daemon::start(move |c| {
        c.smtp.listen = Some("127.0.0.1:0".parse().unwrap());
        c.smtp.local_domains = vec!["example.net".into()];
        c.smtp.delivery = Delivery::Relay(format!("127.0.0.1:{next_port}"));
    })
    .await;
    let p = port(&d);
    let raw = message("Alice <alice@example.com>", "dsn-requested", "Tell me.\r\n");
    let end = blocking(move || {
        // The first session starts the probe of the next hop; DSN is offered once it is known.
        let started = std::time::Instant::now();
        let mut c = loop {
            let (mut c, _) = Client::connect(p);
            let ehlo = c.command("EHLO client.test");
            if ehlo.lines.iter().any(|l| l == "DSN") {
                break c;
            }
            c.command("QUIT");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "DSN never offered"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let mail = c.command("MAIL FROM:<alice@example.com> RET=HDRS ENVID=QQ314159");
        assert_eq!(mail.code, 250, "{:?}", mail.lines);
        let rcpt =
            c.command("RCPT TO:<bob@example.net> NOTIFY=SUCCESS ORCPT=rfc822;bob@example.net");
        assert_eq!(rcpt.code, 250, "{:?}", rcpt.lines);
        assert_eq!(c.command("DATA").code, 354);
        let end = c.data(&raw);
        c.command("QUIT");
        end
    })
    .await;
    assert_eq!(end.code, 250, "{:?}", end.lines);
    assert!(postfix
        .delivered("dsn-requested", Duration::from_secs(20))
        .is_some());
    let notice = postfix
        .delivered("QQ314159", Duration::from_secs(20))
        .expect("Postfix's success notice with the client's envelope id");
    assert!(notice.contains("delivery-status"), "{notice}");
}
