//! The SMTP front end's STARTTLS (RFC 3207) server configuration from PEM files, loaded with
//! each snapshot so a reload picks up a renewed certificate. The connection's byte stream,
//! which turns from plain TCP into TLS half-way through a session, is the relay's `Stream`.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

/// Loads the certificate chain (leaf first) and private key, both PEM, into a server
/// configuration using the ring provider. Errors name the file and what is wrong with it.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key_pem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "{} and {} do not make a usable certificate and key: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A self-signed certificate for `localhost`, written to PEM files in `dir`.
    pub(crate) fn write_test_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
        let ck =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::File::create(&cert)
            .and_then(|mut f| f.write_all(ck.cert.pem().as_bytes()))
            .expect("write cert");
        std::fs::File::create(&key)
            .and_then(|mut f| f.write_all(ck.signing_key.serialize_pem().as_bytes()))
            .expect("write key");
        (cert, key, ck.cert.der().to_vec())
    }

    #[test]
    fn loads_a_certificate_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = write_test_cert(dir.path());
        assert!(server_config(&cert, &key).is_ok());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = write_test_cert(dir.path());
        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &key).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        // A certificate where the key should be.
        let e = server_config(&cert, &cert).unwrap_err();
        assert!(e.contains("cert.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let e = server_config(&empty, &key).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }
}
