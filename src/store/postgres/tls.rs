//! TLS to PostgreSQL over the rustls (ring) already compiled in for SMTP: a small
//! `MakeTlsConnect` for tokio-postgres, so no second TLS stack (nor aws-lc-rs) comes in.
//!
//! Trust follows libpq's `sslmode`: `verify-full` checks the chain and the host name;
//! `verify-ca` the chain only; `require` and `prefer` check the chain when a CA file is given
//! and otherwise encrypt without authenticating (RFC 7435 opportunistic TLS). Without a CA
//! file the verifying modes use the system's bundle.

use crate::config::SslMode;
use crate::store::model::StoreError;
use crate::tls::{ChainOnly, Unauthenticated};
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Debian's bundle of the system's trusted roots.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Makes one TLS connector per connection attempt (tokio-postgres asks per host).
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    pub fn new(mode: SslMode, ca_file: Option<&Path>) -> Result<MakeRustls, StoreError> {
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Config(format!("TLS versions: {e}")))?;
        let verifying = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
        let roots_from = match ca_file {
            Some(path) => Some(path),
            None if verifying => Some(Path::new(SYSTEM_ROOTS)),
            None => None,
        };
        let config = match roots_from {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unauthenticated(provider)))
                .with_no_client_auth(),
            Some(path) => {
                let roots = Arc::new(roots(path)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| StoreError::Config(format!("TLS roots: {e}")))?;
                if mode == SslMode::VerifyFull {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

fn roots(path: &Path) -> Result<RootCertStore, StoreError> {
    let err =
        |e: &dyn std::fmt::Display| StoreError::Config(format!("ca_file {}: {e}", path.display()));
    let pem = std::fs::read(path).map_err(|e| err(&e))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    }
    if roots.is_empty() {
        return Err(err(&"no certificate in it"));
    }
    Ok(roots)
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect {
            connector: TlsConnector::from(Arc::clone(&self.config)),
            name,
        })
    }
}

pub struct RustlsConnect {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// The TLS stream tokio-postgres reads and writes.
pub struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for RustlsStream {
    /// No `tls-server-end-point` binding: SCRAM runs without channel binding (libpq's
    /// `channel_binding=prefer` accepts that).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
