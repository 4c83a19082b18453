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

// RFC 4954 + RFC 8314 with a real client: AUTH PLAIN over STARTTLS (587) and AUTH LOGIN over
// implicit TLS (465) get mail through, recorded as ESMTPSA with `smtp.auth`; a wrong password
// is 535 5.7.8 and nothing is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_submits_with_auth_plain_over_starttls_and_login_over_implicit_tls() {
    let Some(swaks_bin) = require("swaks") else {
        return;
    };
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let d = Daemon::start(|c| site.configure(c)).await;
    let (starttls, implicit) = (d.listeners[0].port(), d.listeners[1].port());
    let msg = site.path("msg.eml");
    std::fs::write(
        &msg,
        message("Alice <alice@example.com>", "submitted", "Hi\r\n"),
    )
    .unwrap();

    let (s, m) = (swaks_bin.clone(), msg.clone());
    let (ok, text) = blocking(move || {
        swaks(
            &s,
            starttls,
            "--tls",
            "PLAIN",
            PASSWORD,
            "alice@example.com",
            &m,
        )
    })
    .await;
    assert!(ok, "{text}");
    assert!(
        text.contains("250-AUTH PLAIN LOGIN") || text.contains("250 AUTH PLAIN LOGIN"),
        "{text}"
    );
    assert!(text.contains("235 2.7.0"), "{text}");

    let (s, m) = (swaks_bin.clone(), msg.clone());
    let (ok, text) = blocking(move || {
        swaks(
            &s,
            implicit,
            "--tlsc",
            "LOGIN",
            PASSWORD,
            "alice@example.com",
            &m,
        )
    })
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("334 VXNlcm5hbWU6"), "{text}");

    let (s, m) = (swaks_bin.clone(), msg.clone());
    let (ok, text) = blocking(move || {
        swaks(
            &s,
            starttls,
            "--tls",
            "PLAIN",
            "wrong",
            "alice@example.com",
            &m,
        )
    })
    .await;
    assert!(!ok, "{text}");
    assert!(text.contains("535 5.7.8"), "{text}");

    let files = site.delivered();
    assert_eq!(files.len(), 2, "{files:#?}");
    for f in &files {
        assert!(f.contains("with ESMTPSA"), "{f}");
        assert!(f.contains("auth=pass smtp.auth=alice@example.com"), "{f}");
        // Submission never verifies: no SPF/DKIM/DMARC results for our own user's mail.
        assert!(!f.contains("dmarc="), "{f}");
    }
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

// Reload (SIGHUP) re-reads the passwd file: a changed password works at once, the old one not.
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
}

// `authmilter passwd USER` (the real binary) prints a line the passwd back end accepts.
#[test]
fn passwd_command_prints_a_line_that_verifies() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["passwd", "carol@example.com"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tr0ub4dor\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.starts_with("carol@example.com:{ARGON2ID}$argon2id$"),
        "{line}"
    );
    let file = authmilter::identity::passwd::PasswdFile::parse(&line, false).unwrap();
    assert!(file.verify("carol@example.com", b"tr0ub4dor"));
    assert!(!file.verify("carol@example.com", b"tr0ub4dor\n"));
}

/// A private Dovecot serving only authentication from `passwd`, on a socket in `dir`.
struct Dovecot {
    child: std::process::Child,
    socket: PathBuf,
    stopped: bool,
}

impl Dovecot {
    fn start(dovecot: &Path, dir: &Path, passwd: &str) -> Dovecot {
        std::fs::write(dir.join("dovecot.passwd"), passwd).unwrap();
        let conf = format!(
            "protocols =\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             ssl = no\n\
             auth_mechanisms = plain login\n\
             auth_failure_delay = 0\n\
             default_internal_user = root\n\
             default_login_user = root\n\
             default_internal_group = root\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/dovecot.passwd\n}}\n\
             service auth {{\n  unix_listener auth-client {{\n    mode = 0666\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("dovecot.conf"), conf).unwrap();
        let child = Command::new(dovecot)
            .args(["-F", "-c"])
            .arg(dir.join("dovecot.conf"))
            .stderr(std::fs::File::create(dir.join("dovecot.stderr")).unwrap())
            .spawn()
            .unwrap();
        let socket = dir.join("run/auth-client");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "dovecot did not start: {}{}",
                std::fs::read_to_string(dir.join("dovecot.stderr")).unwrap_or_default(),
                std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Dovecot {
            child,
            socket,
            stopped: false,
        }
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

// The Dovecot back end against a real Dovecot (auth-client protocol): right password 235,
// wrong or unknown 535, an `authmilter passwd` hash accepted by Dovecot itself, and with
// Dovecot gone 454 4.7.0 (temporary), never 235 or 535.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_backend_against_a_real_dovecot() {
    let Some(dovecot) = find_program("dovecot") else {
        let _: Option<()> = skip("dovecot (dovecot-core) not installed");
        return;
    };
    if !running_as_root() {
        let _: Option<()> = skip("the dovecot test runs dovecot as root");
        return;
    }
    let site = Site::new("");
    let ours = authmilter::identity::passwd::hash_argon2id(b"argon pw").unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("authmilter-dovecot-")
        .tempdir()
        .unwrap();
    let dir = scratch.path().to_path_buf();
    let passwd = format!("alice@example.com:{ALICE_HASH}\ndave@example.com:{ours}\n");
    let mut server = blocking(move || Dovecot::start(&dovecot, &dir, &passwd)).await;
    let socket = server.socket.clone();
    let d = Daemon::start(|c| {
        site.configure(c);
        c.smtp.auth.backend = Some(AuthBackend::Dovecot(socket));
    })
    .await;
    let p = d.listeners[2].port();
    let replies = blocking(move || {
        let mut codes = Vec::new();
        for (user, pw) in [
            ("alice@example.com", PASSWORD),
            ("alice@example.com", "wrong"),
            ("nobody@example.com", PASSWORD),
            ("dave@example.com", "argon pw"),
        ] {
            let (mut c, _) = Client::connect(p);
            codes.push(login(&mut c, user, pw).code);
        }
        codes
    })
    .await;
    assert_eq!(replies, vec![235, 535, 535, 235]);
    server.stop();
    let down = blocking(move || {
        let (mut c, _) = Client::connect(p);
        login(&mut c, "alice@example.com", PASSWORD)
    })
    .await;
    assert_eq!(
        (down.code, down.text()),
        (454, "4.7.0 Temporary authentication failure")
    );
}

// Issue 13 end to end: an authorised user's mail, submitted with swaks over STARTTLS, is
// DKIM-signed (`[signing.users]` with the AUTH name), relayed to a real Postfix, and the
// copy Postfix delivered verifies in dkimpy. Another user gets no signature for the domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorised_user_mail_arrives_signed_at_postfix_and_verifies_in_dkimpy() {
    let Some(swaks_bin) = require("swaks") else {
        return;
    };
    if !crate::signing_interop::have_dkimpy() {
        return;
    }
    let Some(postfix) = find_program("postfix") else {
        let _: Option<()> = skip("postfix not installed");
        return;
    };
    if !running_as_root() {
        let _: Option<()> = skip("postfix tests need root (postfix start)");
        return;
    }
    let scratch = tempfile::Builder::new()
        .prefix("authmilter-postfix-submit-")
        .tempdir()
        .unwrap()
        .keep();
    let next_port = free_port();
    let postfix = Postfix::start_downstream(&postfix, scratch.clone(), next_port, "");
    let site = Site::new(&format!(
        "alice@example.com:{ALICE_HASH}\nmallory@example.com:{ALICE_HASH}\n"
    ));
    let keys = signing_keys(site.dir.path());
    let d = Daemon::start(|c| {
        site.configure(c);
        c.smtp.delivery = Delivery::Relay(format!("127.0.0.1:{next_port}"));
        c.signing.keys = keys;
        let mut users = std::collections::BTreeMap::new();
        users.insert(
            "alice@example.com".to_string(),
            vec!["example.com".to_string()],
        );
        c.signing.users = Some(users);
        let mut senders = std::collections::BTreeMap::new();
        senders.insert(
            "alice@example.com".to_string(),
            vec!["@example.com".to_string()],
        );
        senders.insert(
            "mallory@example.com".to_string(),
            vec!["@example.com".to_string()],
        );
        c.smtp.senders = Some(senders);
    })
    .await;
    let p = d.listeners[0].port();
    let msg = site.path("msg.eml");
    std::fs::write(
        &msg,
        message(
            "Alice <alice@example.com>",
            "submit-signed",
            "Signed by us\r\n",
        ),
    )
    .unwrap();
    let (s, m) = (swaks_bin.clone(), msg.clone());
    let (ok, text) =
        blocking(move || swaks(&s, p, "--tls", "PLAIN", PASSWORD, "alice@example.com", &m)).await;
    assert!(ok, "{text}");
    let arrived = postfix
        .delivered("submit-signed@test", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("not delivered\n{}", postfix.maillog()));
    assert!(arrived.contains("DKIM-Signature:"), "{arrived}");
    assert!(arrived.contains("smtp.auth=alice@example.com"), "{arrived}");

    // mallory may use @example.com addresses but may not have them signed.
    let m2 = site.path("msg2.eml");
    std::fs::write(
        &m2,
        message(
            "Team <team@example.com>",
            "submit-unsigned",
            "Not signed\r\n",
        ),
    )
    .unwrap();
    let out = Command::new(&swaks_bin)
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &p.to_string(),
            "--ehlo",
            "client.test",
            "--tls",
        ])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            "mallory@example.com",
            "--auth-password",
            PASSWORD,
        ])
        .args([
            "--from",
            "team@example.com",
            "--to",
            "bob@example.net",
            "--data",
        ])
        .arg(format!("@{}", m2.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let unsigned = postfix
        .delivered("submit-unsigned@test", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("not delivered\n{}", postfix.maillog()));
    assert!(!unsigned.contains("DKIM-Signature:"), "{unsigned}");

    let dir = site.dir.path();
    let delivered = dir.join("delivered.eml");
    std::fs::write(&delivered, &arrived).unwrap();
    let args = vec![
        crate::signing_interop::records_file(dir)
            .display()
            .to_string(),
        delivered.display().to_string(),
    ];
    let out = crate::signing_interop::run_script(
        crate::signing_interop::PYTHON,
        dir,
        "verify.py",
        crate::signing_interop::DKIMPY_VERIFY,
        &args,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| l.ends_with("\tTrue")), "{out}");
    postfix.stop(&[next_port]);
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

/// A Rust SMTP client over implicit TLS (RFC 8314), trusting the site's certificate.
struct TlsClient {
    io: tokio::io::BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
}

impl TlsClient {
    async fn connect(port: u16, cert_pem: &Path) -> (TlsClient, (u16, String)) {
        use tokio_rustls::rustls::crypto::ring;
        use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
        use tokio_rustls::rustls::{ClientConfig, RootCertStore};
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(cert_pem).unwrap())
            .unwrap();
        let config =
            ClientConfig::builder_with_provider(std::sync::Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = ServerName::try_from("mail.test").unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS from the first byte");
        let mut c = TlsClient {
            io: tokio::io::BufReader::new(tls),
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    /// One whole reply: its code and its lines joined with `\n`.
    async fn reply(&mut self) -> (u16, String) {
        use tokio::io::AsyncBufReadExt;
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await.unwrap_or(0) == 0 {
                return (0, text.join("\n"));
            }
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            text.push(line.get(4..).unwrap_or("").trim_end().to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return (code, text.join("\n"));
            }
        }
    }

    async fn command(&mut self, line: &str) -> (u16, String) {
        use tokio::io::AsyncWriteExt;
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

// The real binary (`serve --config`) with a submission listener on implicit TLS: a Rust
// client over TLS logs in and submits; after the passwd file changes, a real SIGHUP makes
// the new password work and the old one fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binary_submission_over_implicit_tls_and_sighup_with_a_new_passwd_file() {
    let site = Site::new(&format!("alice@example.com:{ALICE_HASH}\n"));
    let port = free_port();
    let config = format!(
        "authserv_id = \"mail.test\"\ntrusted_networks = [\"10.0.0.0/8\"]\n\
         [milter]\nlisten = \"unix:{milter}\"\n\
         [smtp]\nhostname = \"mail.test\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         maildir = \"Maildir\"\n\
         [[smtp.listeners]]\naddress = \"127.0.0.1:{port}\"\nrole = \"submission\"\ntls = \"implicit\"\n\
         [smtp.auth]\npasswd_file = \"users\"\nfailure_delay_ms = 0\n",
        milter = site.path("milter.sock").display()
    );
    std::fs::write(site.path("authmilter.toml"), config).unwrap();
    let log = site.path("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_authmilter"))
        .args(["serve", "--config"])
        .arg(site.path("authmilter.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no listener: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cert = site.path("cert.pem");
    let (mut c, greeting) = TlsClient::connect(port, &cert).await;
    assert_eq!(greeting.0, 220, "{greeting:?}");
    let ehlo = c.command("EHLO client.test").await;
    assert!(ehlo.1.lines().any(|l| l == "AUTH PLAIN LOGIN"), "{ehlo:?}");
    assert!(!ehlo.1.contains("STARTTLS"), "{ehlo:?}");
    let auth = c.command("AUTH LOGIN").await;
    assert_eq!(auth, (334, "VXNlcm5hbWU6".to_string()));
    c.command(&Base64::encode_string(b"alice@example.com"))
        .await;
    let ok = c.command(&Base64::encode_string(PASSWORD.as_bytes())).await;
    assert_eq!(ok.0, 235, "{ok:?}");
    assert_eq!(c.command("MAIL FROM:<alice@example.com>").await.0, 250);
    assert_eq!(c.command("RCPT TO:<bob@example.net>").await.0, 250);
    assert_eq!(c.command("DATA").await.0, 354);
    let body =
        String::from_utf8(message("Alice <alice@example.com>", "binary-465", "Hi\r\n")).unwrap();
    let end = c.command(&format!("{body}.")).await;
    assert_eq!(end.0, 250, "{end:?}");
    c.command("QUIT").await;
    let files = site.delivered();
    assert_eq!(files.len(), 1);
    assert!(files[0].contains("with ESMTPSA"), "{}", files[0]);

    let line = authmilter::identity::passwd::hash_argon2id(b"rotated").unwrap();
    std::fs::write(site.path("users"), format!("alice@example.com:{line}\n")).unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let login = |password: &'static str| {
        let cert = cert.clone();
        async move {
            let (mut c, _) = TlsClient::connect(port, &cert).await;
            c.command("EHLO client.test").await;
            c.command(&format!(
                "AUTH PLAIN {}",
                plain("alice@example.com", password)
            ))
            .await
            .0
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while login("rotated").await != 235 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload did not take: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(login(PASSWORD).await, 535);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}
