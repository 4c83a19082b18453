//! STARTTLS (RFC 3207) with a certificate made on the spot.

use super::*;
use crate::runtime::tls::server_config;
use crate::runtime::tls::tests::write_test_cert;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A server offering STARTTLS, and a connector that trusts its certificate.
async fn tls_server(dir: &Path) -> (Server, TlsConnector) {
    let (cert, key, der) = write_test_cert(dir);
    let mut s = settings();
    s.tls = Some(server_config(&cert, &key).expect("server config"));
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der)).unwrap();
    let client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, TlsConnector::from(Arc::new(client)))
}

#[tokio::test]
async fn starttls_discards_pipelined_commands_and_requires_ehlo_again() {
    let dir = tempfile::tempdir().unwrap();
    let (server, connector) = tls_server(dir.path()).await;
    let mut c = server.connect().await;
    let ehlo = c.command("EHLO client.example", "250-").await;
    assert!(ehlo.ends_with("\n250 STARTTLS"), "{ehlo}");
    // RFC 3207 §4.2, CVE-2011-0411: a command injected behind STARTTLS must not be run.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
        .await;
    c.expect("220 2.0.0").await;
    let localhost = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(localhost, c.into_inner()).await.unwrap();
    let mut c = Client::new(tls);
    // Everything before the handshake is forgotten: EHLO again.
    c.command("MAIL FROM:<a@example.com>", "503 5.5.1").await;
    let ehlo = c.command("EHLO client.example", "250-").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.command("STARTTLS", "503 5.5.1").await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command("RCPT TO:<b@example.net>", "250 2.1.5").await;
    c.command("DATA", "354").await;
    c.send(&stuffed(&message(&["From: a@example.com"], "secret\r\n")))
        .await;
    c.expect("250 2.0.0").await;
    c.command("QUIT", "221 2.0.0").await;
    let events = server.finished().await;
    assert_eq!(
        events[0],
        Event::Mail {
            from: "a@example.com".into(),
            params: MailParams::default(),
            protocol: "ESMTPS".into()
        },
        "the injected MAIL never reached the next hop"
    );
    let text = String::from_utf8(delivered(&events)).unwrap();
    assert!(text.contains(" with ESMTPS id "), "{text}");
}

#[tokio::test]
async fn failed_handshake_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = tls_server(dir.path()).await;
    let mut c = server.connect().await;
    c.command("EHLO client.example", "250-").await;
    c.command("STARTTLS", "220 2.0.0").await;
    c.send(b"this is not a TLS ClientHello\r\n").await;
    let _ = c.closed().await;
    assert_eq!(server.finished().await, [Event::Quit]);
}
