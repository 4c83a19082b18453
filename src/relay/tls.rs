//! The TLS client side of STARTTLS to the next hop (RFC 3207), on rustls with the ring
//! provider.
//!
//! Trust: with `ca_file`, the next hop's certificate must chain to one of the roots in it
//! (and only those: a relay hop is usually internal, signed by a private CA) and match the
//! host of `addr`. Without `ca_file`, opportunistic TLS encrypts without authenticating
//! (RFC 7435: protects against passive eavesdropping, like Postfix's `may` level), and
//! `required` refuses to start, since encryption to an unauthenticated peer would not be
//! what "required" promises.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::crypto;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::{RelayConfig, RelayError, RelayTls};
use crate::tls::Unauthenticated;

/// The client configuration for `config`; `ca_pem` is the content of `ca_file`, read by
/// the caller (asynchronously at connection time, or at start-up to validate).
pub fn client_config(
    config: &RelayConfig,
    ca_pem: Option<&[u8]>,
) -> Result<Arc<ClientConfig>, RelayError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RelayError::Config(format!("TLS versions: {e}")))?;
    let client = match (ca_pem, config.starttls) {
        (Some(pem), _) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ca_error(config, e))?;
                roots.add(cert).map_err(|e| ca_error(config, e))?;
            }
            if roots.is_empty() {
                return Err(ca_error(config, "no certificate in it"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        (None, RelayTls::Required) => {
            return Err(RelayError::Config(
                "starttls = required needs a ca_file to verify the next hop".into(),
            ))
        }
        (None, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unauthenticated(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(client))
}

fn ca_error(config: &RelayConfig, e: impl std::fmt::Display) -> RelayError {
    let path = config
        .ca_file
        .as_deref()
        .unwrap_or(std::path::Path::new("?"));
    RelayError::Config(format!("ca_file {}: {e}", path.display()))
}

/// The name the certificate must carry: the host part of `host:port` or `[v6]:port`.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, RelayError> {
    let host = match addr.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(host, _)| host),
        None => addr.rsplit_once(':').map(|(host, _)| host),
    };
    let host = host.ok_or_else(|| RelayError::Config(format!("addr {addr:?} is not host:port")))?;
    ServerName::try_from(host.to_string())
        .map_err(|e| RelayError::Config(format!("addr {addr:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_of_host_port_forms() {
        assert_eq!(server_name("mx.example:25").unwrap().to_str(), "mx.example");
        assert_eq!(
            server_name("127.0.0.1:10025").unwrap().to_str(),
            "127.0.0.1"
        );
        assert_eq!(server_name("[::1]:25").unwrap().to_str(), "::1");
        assert!(server_name("no-port").is_err());
    }

    #[test]
    fn required_without_ca_file_is_a_configuration_error() {
        let config = RelayConfig {
            starttls: RelayTls::Required,
            ..RelayConfig::default()
        };
        assert!(matches!(
            client_config(&config, None),
            Err(RelayError::Config(_))
        ));
        assert!(client_config(&RelayConfig::default(), None).is_ok());
    }

    #[test]
    fn ca_file_without_certificates_is_a_configuration_error() {
        let err = client_config(&RelayConfig::default(), Some(b"not a certificate\n")).unwrap_err();
        assert!(matches!(err, RelayError::Config(_)), "{err}");
    }
}
