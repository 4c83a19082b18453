//! STARTTLS to the next hop (RFC 3207) with certificates made for the test by `rcgen`.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::crypto;

use super::*;

const EHLO_TLS: Step = Say("250-fake.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
const READY: Step = Say("220 2.0.0 Ready to start TLS\r\n");

/// A CA and a certificate it signed for `names`: the CA as PEM, and a server config.
fn pki(names: &[&str]) -> (String, Arc<ServerConfig>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    (ca.pem(), Arc::new(server))
}

fn ca_file(pem: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pem).unwrap();
    file
}

fn tls_config(
    addr: &str,
    starttls: RelayTls,
    ca_file: Option<&tempfile::NamedTempFile>,
) -> RelayConfig {
    RelayConfig {
        starttls,
        ca_file: ca_file.map(|f| f.path().to_path_buf()),
        ..config(addr)
    }
}

#[tokio::test]
async fn starttls_required_verifies_against_ca_file() {
    let (ca, server) = pki(&["127.0.0.1"]);
    let roots = ca_file(&ca);
    let script = [
        hello(EHLO_TLS),
        vec![Hear, READY, Tls],
        // RFC 3207 §4.2: EHLO again; what it offers now is what counts (no 8BITMIME, so
        // no BODY= below, though the first EHLO offered it).
        vec![
            Hear,
            Say("250-fake.example\r\n250 XFORWARD ADDR\r\n"),
            Hear,
            OK,
        ],
        ACCEPT_ONE.to_vec(),
        QUIT.to_vec(),
    ]
    .concat();
    let fake = Fake::start(vec![script], Some(server)).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Required, Some(&roots)));
    assert_eq!(send_one(&mut hop, b"secret\r\n").await.unwrap().code, 250);
    hop.quit().await;
    assert_eq!(
        fake.transcript().await,
        "EHLO filter.example\r\nSTARTTLS\r\nEHLO filter.example\r\nXFORWARD ADDR=192.0.2.1\r\n\
         MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n\
         secret\r\n.\r\nQUIT\r\n"
    );
}

#[tokio::test]
async fn starttls_with_an_unknown_ca_is_451() {
    let (_, server) = pki(&["127.0.0.1"]);
    let (other_ca, _) = pki(&["127.0.0.1"]);
    let roots = ca_file(&other_ca);
    let script = [hello(EHLO_TLS), vec![Hear, READY, Tls]].concat();
    let fake = Fake::start(vec![script], Some(server)).await;
    // With a ca_file, even opportunistic TLS must verify.
    let tls = tls_config(&fake.addr, RelayTls::Opportunistic, Some(&roots));
    let mut hop = RelaySession::new(tls);
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
    assert!(fake.transcript().await.ends_with("<handshake failed>"));
}

#[tokio::test]
async fn starttls_with_the_wrong_name_is_451() {
    let (ca, server) = pki(&["mx.elsewhere.example"]);
    let roots = ca_file(&ca);
    let script = [hello(EHLO_TLS), vec![Hear, READY, Tls]].concat();
    let fake = Fake::start(vec![script], Some(server)).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Required, Some(&roots)));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
}

#[tokio::test]
async fn opportunistic_without_ca_file_encrypts_unverified() {
    let (_, server) = pki(&["mx.elsewhere.example"]);
    let script = [
        hello(EHLO_TLS),
        vec![Hear, READY, Tls, Hear, EHLO_PLAIN, Hear, OK],
        QUIT.to_vec(),
    ]
    .concat();
    let fake = Fake::start(vec![script], Some(server)).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Opportunistic, None));
    hop.mail(&client(), "s@example.org", &MailParams::default())
        .await
        .unwrap();
    hop.quit().await;
    let transcript = fake.transcript().await;
    assert!(
        transcript.starts_with("EHLO filter.example\r\nSTARTTLS\r\nEHLO"),
        "{transcript}"
    );
}

#[tokio::test]
async fn opportunistic_without_offer_stays_plain() {
    let script = [hello(EHLO_PLAIN), vec![Hear, OK], QUIT.to_vec()].concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Opportunistic, None));
    hop.mail(&client(), "s@example.org", &MailParams::default())
        .await
        .unwrap();
    hop.quit().await;
    let transcript = fake.transcript().await;
    assert_eq!(
        transcript,
        "EHLO filter.example\r\nMAIL FROM:<s@example.org>\r\nQUIT\r\n"
    );
}

#[tokio::test]
async fn starttls_refused_goes_plain_only_when_opportunistic() {
    // RFC 3207 §4: 454 means TLS is not available now.
    let not_now = Say("454 4.7.0 TLS not available due to local problem\r\n");
    let script = [
        hello(EHLO_TLS),
        vec![Hear, not_now, Hear, OK],
        QUIT.to_vec(),
    ]
    .concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Opportunistic, None));
    hop.mail(&client(), "s@example.org", &MailParams::default())
        .await
        .unwrap();
    hop.quit().await;
    let transcript = fake.transcript().await;
    assert!(transcript.ends_with("STARTTLS\r\nMAIL FROM:<s@example.org>\r\nQUIT\r\n"));

    let (ca, _) = pki(&["127.0.0.1"]);
    let roots = ca_file(&ca);
    let fake = Fake::start(vec![[hello(EHLO_TLS), vec![Hear, not_now]].concat()], None).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Required, Some(&roots)));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.7.4",
    );
}

#[tokio::test]
async fn required_without_offer_is_451_4_7_4() {
    let (ca, _) = pki(&["127.0.0.1"]);
    let roots = ca_file(&ca);
    let fake = Fake::start(vec![hello(EHLO_PLAIN)], None).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Required, Some(&roots)));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.7.4",
    );
}

#[tokio::test]
async fn bytes_after_the_starttls_reply_are_refused() {
    // Reply injection: a "250" sent in clear must not pass for one sent inside TLS.
    let (ca, server) = pki(&["127.0.0.1"]);
    let roots = ca_file(&ca);
    let injected = Say("220 Ready\r\n250 injected\r\n");
    let script = [hello(EHLO_TLS), vec![Hear, injected, Tls]].concat();
    let fake = Fake::start(vec![script], Some(server)).await;
    let mut hop = RelaySession::new(tls_config(&fake.addr, RelayTls::Required, Some(&roots)));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
}

#[tokio::test]
async fn required_without_ca_file_is_a_configuration_error() {
    let config = tls_config("127.0.0.1:25", RelayTls::Required, None);
    assert!(matches!(config.validate(), Err(RelayError::Config(_))));
    // Found before connecting: the next hop never sees us.
    let mut hop = RelaySession::new(config);
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.3.5",
    );
}

#[test]
fn validate_checks_addr_helo_and_ca_file() {
    assert!(RelayConfig::default().validate().is_ok());
    assert!(RelayConfig::new("mx.example", "me.example")
        .validate()
        .is_err());
    assert!(RelayConfig::new("[::1]:25", "me.example")
        .validate()
        .is_ok());
    assert!(RelayConfig::new("[::1]:25", "two words")
        .validate()
        .is_err());
    let missing = RelayConfig {
        starttls: RelayTls::Opportunistic,
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..RelayConfig::default()
    };
    assert!(matches!(missing.validate(), Err(RelayError::Config(_))));
    let (ca, _) = pki(&["mx.example"]);
    let roots = ca_file(&ca);
    let good = tls_config("mx.example:25", RelayTls::Required, Some(&roots));
    assert!(good.validate().is_ok());
}
