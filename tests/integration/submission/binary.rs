//! Submission through the real binary: `authmilter passwd`, and `serve --config` with an
//! implicit-TLS submission listener driven by our own Rust TLS client, reloaded by SIGHUP.

use super::*;

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
