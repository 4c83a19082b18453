//! Issue 13, submission for real: the daemon in-process with `[[smtp.listeners]]` of role
//! `submission` on port 0 (STARTTLS, implicit TLS, and a loopback one that allows plain-text
//! AUTH), real swaks (`--auth`, `--tls`, `--tlsc`), our plain client for the bad input, a
//! real Dovecot as the auth back end, a real Postfix next hop and dkimpy.
//!
//! 127.0.0.1 is not trusted here (only 10.0.0.0/8), so every client must authenticate.

use crate::common::*;
use crate::http::{call, sample};
use crate::milter_client::Daemon;
use crate::postfix::{find_program, free_port, require, running_as_root, skip, Postfix};
use crate::smtp_client::*;
use authmilter::config::{AuthBackend, Config, Delivery, ListenerConfig, TlsMode};
use authmilter::server::Signal;
use base64ct::{Base64, Encoding};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod binary;
mod fleet;
mod peers;

/// Made by `doveadm pw -s SHA512-CRYPT -p 'correct horse'` (Dovecot 2.3).
const ALICE_HASH: &str = "{SHA512-CRYPT}$6$3xblJbzCTsPkaftQ$RNbYki0blExH/2t54ISCROBmWhwYkhXUuw3LFH2lGEW1E0cEfcJNBTGP9k8A/ljJlTI2zYiCz0n/hWTK7B0Dm1";
const PASSWORD: &str = "correct horse";

/// A scratch folder with a self-signed certificate, a passwd file and a Maildir.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(passwd: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["mail.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("users"), passwd).unwrap();
        Site { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Listeners: [0] submission + STARTTLS (587), [1] implicit TLS (465), [2] loopback
    /// plain-text AUTH. Mail goes into `Maildir`.
    fn configure(&self, c: &mut Config) {
        c.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
        c.smtp.listen = None;
        c.smtp.tls = Some((self.path("cert.pem"), self.path("key.pem")));
        c.smtp.delivery = Delivery::Maildir(self.path("Maildir"));
        c.smtp.auth.backend = Some(AuthBackend::PasswdFile(self.path("users")));
        c.smtp.auth.failure_delay = Duration::ZERO;
        let any = "127.0.0.1:0".parse().unwrap();
        c.smtp.listeners = vec![
            ListenerConfig::submission(any, TlsMode::StartTls),
            ListenerConfig::submission(any, TlsMode::Implicit),
            ListenerConfig {
                plaintext_auth: true,
                require_tls: false,
                ..ListenerConfig::submission(any, TlsMode::StartTls)
            },
        ];
    }

    fn delivered(&self) -> Vec<String> {
        std::fs::read_dir(self.path("Maildir").join("new"))
            .map(|dir| {
                dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn plain(user: &str, password: &str) -> String {
    Base64::encode_string(format!("\0{user}\0{password}").as_bytes())
}

/// EHLO, then AUTH PLAIN with an initial response; the AUTH reply.
fn login(c: &mut Client, user: &str, password: &str) -> SmtpReply {
    c.command("EHLO client.test");
    c.command(&format!("AUTH PLAIN {}", plain(user, password)))
}

/// swaks with AUTH; returns (success, transcript).
fn swaks(
    swaks: &Path,
    port: u16,
    tls: &str,
    mech: &str,
    pw: &str,
    from: &str,
    msg: &Path,
) -> (bool, String) {
    let out = Command::new(swaks)
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--ehlo", "client.test", tls])
        .args([
            "--auth",
            mech,
            "--auth-user",
            "alice@example.com",
            "--auth-password",
            pw,
        ])
        .args(["--from", from, "--to", "bob@example.net"])
        .arg("--data")
        .arg(format!("@{}", msg.display()))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

// RFC 4954 §4/§6 and RFC 3207: before TLS no AUTH is offered and AUTH is 538 5.7.11; MAIL
// without AUTH is 530 5.7.0 on a submission listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_before_starttls_is_refused_and_mail_needs_auth() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start(|c| site.configure(c)).await;
    let (starttls, loopback) = (d.listeners[0].port(), d.listeners[2].port());
    blocking(move || {
        let (mut c, _) = Client::connect(starttls);
        let ehlo = c.command("EHLO client.test");
        assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
        assert!(
            !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
            "{ehlo:?}"
        );
        let auth = c.command(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", PASSWORD)
        ));
        assert_eq!(
            (auth.code, auth.text()),
            (
                538,
                "5.7.11 Encryption required for requested authentication mechanism"
            )
        );
        let mail = c.command("MAIL FROM:<alice@example.com>");
        assert_eq!(
            (mail.code, mail.text()),
            (530, "5.7.0 Must issue a STARTTLS command first")
        );

        let (mut c, _) = Client::connect(loopback);
        let ehlo = c.command("EHLO client.test");
        assert!(
            ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
            "{ehlo:?}"
        );
        let mail = c.command("MAIL FROM:<alice@example.com>");
        assert_eq!(
            (mail.code, mail.text()),
            (530, "5.7.0 Authentication required")
        );
    })
    .await;
}

// RFC 4954 §4: malformed base64 501, `*` 501, AUTH twice 503, AUTH inside a transaction 503,
// an over-long response 500 5.5.6, an unknown mechanism 504; the session goes on after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_auth_input_gets_the_rfc_4954_replies() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        c.smtp.max_errors = 50;
    })
    .await;
    let p = d.listeners[2].port();
    blocking(move || {
        let (mut c, _) = Client::connect(p);
        c.command("EHLO client.test");
        let r = c.command("AUTH PLAIN !!!notbase64");
        assert_eq!((r.code, r.text()), (501, "5.5.2 Cannot decode response"));
        assert_eq!(c.command("AUTH LOGIN").code, 334);
        let r = c.command("*");
        assert_eq!((r.code, r.text()), (501, "5.0.0 Authentication cancelled"));
        assert_eq!(c.command("AUTH PLAIN").code, 334);
        assert_eq!(c.command("%%%").code, 501);
        let r = c.command("AUTH CRAM-MD5");
        assert_eq!(r.code, 504, "{r:?}");
        let long = "A".repeat(10_000);
        let r = c.command(&format!("AUTH PLAIN {long}"));
        assert_eq!(
            (r.code, r.text()),
            (500, "5.5.6 Authentication Exchange line is too long")
        );
        assert_eq!(c.command("AUTH LOGIN").code, 334);
        let r = c.command(&long);
        assert_eq!(r.code, 500, "{r:?}");
        // Not a credential: PLAIN with a foreign authorization identity.
        let r = c.command(&format!(
            "AUTH PLAIN {}",
            Base64::encode_string(format!("root\0alice@example.com\0{PASSWORD}").as_bytes())
        ));
        assert_eq!(r.code, 535, "{r:?}");
        // Still serving: now authenticate, then AUTH again and AUTH in a transaction.
        let ok = c.command(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", PASSWORD)
        ));
        assert_eq!(ok.code, 235, "{ok:?}");
        let again = c.command(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", PASSWORD)
        ));
        assert_eq!(
            (again.code, again.text()),
            (503, "5.5.1 Already authenticated")
        );
        assert_eq!(c.command("QUIT").code, 221);
    })
    .await;
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    assert!(
        sample(&metrics, "authmilter_smtp_auth_total{result=\"malformed\"}") >= 4.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "authmilter_smtp_auth_total{result=\"cancelled\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "authmilter_smtp_auth_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "authmilter_smtp_auth_total{result=\"failure\"}"),
        1.0
    );
}

// RFC 4954 §4: "AUTH ... during a mail transaction" is 503. A trusted client (here: the
// loopback listener with 127.0.0.1 trusted) may start a transaction without AUTH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_during_a_transaction_is_503() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start(|c| {
        site.configure(c);
        c.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let p = d.listeners[2].port();
    blocking(move || {
        let (mut c, _) = Client::connect(p);
        c.command("EHLO client.test");
        assert_eq!(c.command("MAIL FROM:<anyone@example.org>").code, 250);
        let r = c.command(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", PASSWORD)
        ));
        assert_eq!(
            (r.code, r.text()),
            (503, "5.5.1 Mail transaction in progress")
        );
    })
    .await;
}

// Issue 13: brute force from one address ends in 421 and a block that holds across
// connections (the right password is refused too), then is released after `block_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_from_one_address_is_blocked_then_released() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        c.smtp.auth.max_failures_per_ip = 3;
        c.smtp.auth.block = Duration::from_secs(2);
    })
    .await;
    let p = d.listeners[2].port();
    blocking(move || {
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", "guess1").code, 535);
        // Unknown user: the same reply as a wrong password (no enumeration).
        let r = c.command(&format!(
            "AUTH PLAIN {}",
            plain("nobody@example.com", "guess2")
        ));
        assert_eq!(
            (r.code, r.text()),
            (535, "5.7.8 Authentication credentials invalid")
        );
        let r = c.command(&format!(
            "AUTH PLAIN {}",
            plain("alice@example.com", "guess3")
        ));
        assert_eq!(r.code, 421, "{r:?}");
        assert_eq!(c.reply().code, 0, "the connection is closed after 421");

        let (mut c, _) = Client::connect(p);
        let r = login(&mut c, "alice@example.com", PASSWORD);
        assert_eq!(
            (r.code, r.text()),
            (
                421,
                "4.7.0 Too many failed authentication attempts, try again later"
            )
        );

        std::thread::sleep(Duration::from_millis(2200));
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 235);
    })
    .await;
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    assert_eq!(
        sample(
            &metrics,
            "authmilter_smtp_auth_blocks_total{scope=\"address\"}"
        ),
        1.0
    );
    assert_eq!(sample(&metrics, "authmilter_smtp_auth_blocked_total"), 1.0);
    assert_eq!(
        sample(&metrics, "authmilter_smtp_auth_total{result=\"failure\"}"),
        3.0
    );
}

// Issue 13 §3: the envelope sender and the From address must be the user's
// (`[smtp.senders]`): 553 5.7.1 at MAIL, 550 5.7.1 at end of DATA; `@domain` entries work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sending_as_someone_else_is_refused() {
    let site = Site::new(&format!("alice:{ALICE_HASH}\n"));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        let mut map = std::collections::BTreeMap::new();
        map.insert(
            "alice".to_string(),
            vec!["alice@example.com".to_string(), "@example.org".to_string()],
        );
        c.smtp.senders = Some(map);
    })
    .await;
    let p = d.listeners[2].port();
    // With results forged in our name: they must not go on (RFC 8601 §5).
    let mut site_mail =
        format!("Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=forged\r\n")
            .into_bytes();
    site_mail.extend(message("Alice <alice@example.com>", "own", "x\r\n"));
    let forged = message("Bob <bob@example.com>", "forged-from", "x\r\n");
    blocking(move || {
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice", PASSWORD).code, 235);
        let r = c.command("MAIL FROM:<bob@example.com>");
        assert_eq!(
            (r.code, r.text()),
            (
                553,
                "5.7.1 Sender address <bob@example.com> not owned by user alice"
            )
        );
        // @example.org: any address there.
        assert_eq!(c.command("MAIL FROM:<team@example.org>").code, 250);
        assert_eq!(c.command("RCPT TO:<bob@example.net>").code, 250);
        assert_eq!(c.command("DATA").code, 354);
        let r = c.data(&forged);
        assert_eq!(
            (r.code, r.text()),
            (
                550,
                "5.7.1 From address <bob@example.com> not owned by user alice"
            )
        );
        assert_eq!(c.command("MAIL FROM:<alice@example.com>").code, 250);
        assert_eq!(c.command("RCPT TO:<bob@example.net>").code, 250);
        assert_eq!(c.command("DATA").code, 354);
        assert_eq!(c.data(&site_mail).code, 250);
    })
    .await;
    let files = site.delivered();
    assert_eq!(files.len(), 1);
    assert!(!files[0].contains("forged"), "{}", files[0]);
    assert!(
        files[0].contains("auth=pass smtp.auth=alice\r\n"),
        "{}",
        files[0]
    );
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    assert_eq!(
        sample(
            &metrics,
            "authmilter_smtp_submission_refused_total{reason=\"sender\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "authmilter_smtp_submission_refused_total{reason=\"from\"}"
        ),
        1.0
    );
}

// Issue 13 §4: messages and recipients per user per hour hold across connections: 451 4.7.1
// for a message over the allowance, 452 4.5.3 for a recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_message_and_recipient_limits_hold_across_connections() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start(|c| {
        site.configure(c);
        c.smtp.auth.max_messages_per_hour = 2;
        c.smtp.auth.max_recipients_per_hour = 3;
    })
    .await;
    let p = d.listeners[2].port();
    blocking(move || {
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 235);
        assert_eq!(c.command("MAIL FROM:<alice@example.com>").code, 250);
        assert_eq!(c.command("RCPT TO:<a@example.net>").code, 250);
        assert_eq!(c.command("RCPT TO:<b@example.net>").code, 250);
        c.command("RSET");
        c.command("QUIT");
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 235);
        assert_eq!(c.command("MAIL FROM:<alice@example.com>").code, 250);
        assert_eq!(c.command("RCPT TO:<c@example.net>").code, 250);
        let r = c.command("RCPT TO:<d@example.net>");
        assert_eq!(
            (r.code, r.text()),
            (452, "4.5.3 Too many recipients this hour, try again later")
        );
        c.command("RSET");
        let r = c.command("MAIL FROM:<alice@example.com>");
        assert_eq!(
            (r.code, r.text()),
            (451, "4.7.1 Too many messages this hour, try again later")
        );
    })
    .await;
}

// Reload (SIGHUP) re-reads the passwd file: a changed password works at once, the old one
// not; a broken file is refused and the one in force stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rereads_the_passwd_file() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start(|c| site.configure(c)).await;
    let p = d.listeners[2].port();
    let ok = blocking(move || {
        let (mut c, _) = Client::connect(p);
        login(&mut c, "alice@example.com", PASSWORD).code
    })
    .await;
    assert_eq!(ok, 235);
    let line = authmilter::identity::passwd::hash_argon2id(b"new pass").unwrap();
    std::fs::write(
        site.path("users"),
        format!("# changed\nalice@example.com:{line}\n"),
    )
    .unwrap();
    d.control.send(Signal::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (old, new) = blocking(move || {
        let (mut c, _) = Client::connect(p);
        let old = login(&mut c, "alice@example.com", PASSWORD).code;
        let (mut c, _) = Client::connect(p);
        (old, login(&mut c, "alice@example.com", "new pass").code)
    })
    .await;
    assert_eq!((old, new), (535, 235));

    // A broken file: the reload fails, the file in force stays.
    std::fs::write(site.path("users"), "alice@example.com:{MD5}nope\n").unwrap();
    d.control.send(Signal::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = blocking(move || {
        let (mut c, _) = Client::connect(p);
        login(&mut c, "alice@example.com", "new pass").code
    })
    .await;
    assert_eq!(still, 235);
}

// Issue 18's limits exempt trusted clients; an authenticated user is ours too: the junk
// command limit (and the stress timeouts, same flag) stop applying once AUTH succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_sessions_are_exempt_from_the_junk_command_limit() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start(|c| {
        site.configure(c);
        c.smtp.junk_command_limit = 3;
    })
    .await;
    let p = d.listeners[2].port();
    let (anonymous, user) = blocking(move || {
        let (mut c, _) = Client::connect(p);
        c.command("EHLO client.test");
        let anonymous: Vec<u16> = (0..4).map(|_| c.command("NOOP").code).collect();
        let (mut c, _) = Client::connect(p);
        assert_eq!(login(&mut c, "alice@example.com", PASSWORD).code, 235);
        let user: Vec<u16> = (0..6).map(|_| c.command("NOOP").code).collect();
        (anonymous, user)
    })
    .await;
    assert_eq!(anonymous, [250, 250, 250, 421]);
    assert_eq!(user, [250; 6]);
}

/// AUTH PLAIN from the source address `from` (any of 127/8): the AUTH reply's code.
async fn login_from(from: [u8; 4], port: u16, user: &str, password: &str) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let mut io = tokio::io::BufReader::new(stream);
    let mut code = 0;
    for line in [
        None,
        Some("EHLO client.test".to_string()),
        Some(format!("AUTH PLAIN {}", plain(user, password))),
    ] {
        if let Some(line) = line {
            io.get_mut()
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .unwrap();
        }
        loop {
            let mut text = String::new();
            if io.read_line(&mut text).await.unwrap_or(0) == 0 {
                return 0;
            }
            code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if text.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    }
    code
}

// Issue 13 §4: failures for one login name from many addresses (no per-address limit is
// reached) block that name everywhere, with the same 421, while other users still log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_one_user_from_many_addresses_blocks_that_user() {
    let site = Site::new(&format!(
        "alice@example.com:{ALICE_HASH}\nbob@example.com:{ALICE_HASH}\n"
    ));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        c.smtp.auth.max_failures_per_user = 3;
    })
    .await;
    let p = d.listeners[2].port();
    let mut codes = Vec::new();
    for i in 1..=3u8 {
        codes.push(login_from([127, 0, 5, i], p, "alice@example.com", "guess").await);
    }
    assert_eq!(codes, [535, 535, 421]);
    // The right password, from a fresh address: still blocked for a while.
    assert_eq!(
        login_from([127, 0, 5, 9], p, "alice@example.com", PASSWORD).await,
        421
    );
    assert_eq!(
        login_from([127, 0, 5, 9], p, "bob@example.com", PASSWORD).await,
        235
    );
    let metrics = call(d.http.unwrap(), "GET", "/metrics", None, b"")
        .await
        .text();
    assert_eq!(
        sample(
            &metrics,
            "authmilter_smtp_auth_blocks_total{scope=\"user\"}"
        ),
        1.0
    );
}

// Issue 22 §2: the addresses of one network share one failure budget (an IPv6 /64 by
// default; here IPv4 with `failure_prefix_v4 = 24`, as loopback has many IPv4 addresses and
// one IPv6 one; the /64 grouping itself is `identity::limits`' unit test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_many_addresses_of_one_network_block_it_as_one() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        c.smtp.auth.max_failures_per_ip = 3;
        c.smtp.auth.failure_prefix_v4 = 24;
    })
    .await;
    let p = d.listeners[2].port();
    let mut codes = Vec::new();
    for i in 1..=3u8 {
        let user = format!("guess{i}@example.com");
        codes.push(login_from([127, 0, 6, i], p, &user, "guess").await);
    }
    assert_eq!(codes, [535, 535, 421]);
    // Any other address of that /24 is blocked too, the right password included.
    assert_eq!(
        login_from([127, 0, 6, 200], p, "alice@example.com", PASSWORD).await,
        421
    );
    assert_eq!(
        login_from([127, 0, 7, 1], p, "alice@example.com", PASSWORD).await,
        235
    );
}

// Issue 22 §2: 20 wrong passwords from elsewhere no longer lock a user out where they
// logged in before; from anywhere else the name stays blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_from_its_known_address_while_its_name_is_under_attack() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        c.smtp.auth.max_failures_per_user = 3;
    })
    .await;
    let p = d.listeners[2].port();
    let home = [127, 0, 8, 1];
    assert_eq!(
        login_from(home, p, "alice@example.com", PASSWORD).await,
        235
    );
    let mut codes = Vec::new();
    for i in 1..=4u8 {
        codes.push(login_from([127, 0, 9, i], p, "alice@example.com", "guess").await);
    }
    assert_eq!(codes, [535, 535, 421, 421]);
    assert_eq!(
        login_from(home, p, "alice@example.com", PASSWORD).await,
        235
    );
    assert_eq!(
        login_from([127, 0, 8, 2], p, "alice@example.com", PASSWORD).await,
        421,
        "a network alice never logged in from"
    );
}

// Issue 22 §2: a flood of other names (more than the table holds) does not end a block
// early; the newcomers beyond the table share one overflow count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_name_survives_a_flood_of_other_names() {
    let site = Site::new(&format!(
        "alice@example.com:{ALICE_HASH}\nbob@example.com:{ALICE_HASH}\n"
    ));
    let d = Daemon::start_with_api(|c| {
        site.configure(c);
        c.smtp.auth.max_failures_per_user = 3;
        c.smtp.auth.max_failures_per_ip = 10_000;
        c.smtp.auth.tracked_entries = 100;
    })
    .await;
    let p = d.listeners[2].port();
    assert_eq!(
        login_from([127, 0, 11, 1], p, "bob@example.com", PASSWORD).await,
        235
    );
    for i in 1..=3u8 {
        login_from([127, 0, 10, i], p, "alice@example.com", "guess").await;
    }
    let fresh = [127, 0, 12, 1];
    assert_eq!(
        login_from(fresh, p, "alice@example.com", PASSWORD).await,
        421
    );
    for n in 0..150u32 {
        let user = format!("flood{n}@example.com");
        login_from([127, 0, 13, (n % 250) as u8 + 1], p, &user, "x").await;
    }
    assert_eq!(
        login_from(fresh, p, "alice@example.com", PASSWORD).await,
        421,
        "the block on alice outlived the flood"
    );
    // Past the table, newcomers are held together; bob at his own network is not.
    assert_eq!(login_from(fresh, p, "bob@example.com", PASSWORD).await, 421);
    assert_eq!(
        login_from([127, 0, 11, 1], p, "bob@example.com", PASSWORD).await,
        235
    );
}
