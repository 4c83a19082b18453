//! Submission against the real peers: swaks with AUTH over STARTTLS and implicit TLS, a real
//! Dovecot as the credentials back end, a real Postfix next hop with dkimpy checking what it
//! delivered.

use super::*;

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
