//! Evidence and indicators over HTTPS: hyper's HTTP/1.1 client connection on tokio-rustls
//! (ring), names resolved by the one resolver, hard limits on time, redirects and size, an
//! SSRF guard, and a bounded cache with a TTL that keeps failures too.
//!
//! A fetch runs in its own task: a message that stops waiting for it (`bimi.max_wait`)
//! leaves it to finish and fill the cache for the next message from that domain.

use crate::dns::Dns;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Why a document could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Worth trying again later: network, timeout, a 5xx.
    Transient(String),
    /// The document is not there or not acceptable: a 4xx, too large, a private address.
    Permanent(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Transient(m) | FetchError::Permanent(m) => f.write_str(m),
        }
    }
}

pub type Fetched = Result<Arc<[u8]>, FetchError>;

/// The limits a fetch keeps.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub max_redirects: usize,
    pub allow_private: bool,
}

/// The HTTPS client.
pub struct Client {
    dns: Arc<Dns>,
    tls: TlsConnector,
    limits: Limits,
}

impl Client {
    /// `roots`: the HTTPS roots (the system's unless configured).
    pub fn new(dns: Arc<Dns>, roots: RootCertStore, limits: Limits) -> Client {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            dns,
            tls: TlsConnector::from(Arc::new(config)),
            limits,
        }
    }

    /// GETs `url` (following up to `max_redirects` redirects to other https URLs), reading
    /// at most `max_size` bytes of body, all within the fetch timeout.
    pub async fn get(&self, url: &str, max_size: usize) -> Fetched {
        let work = async {
            let mut uri: Uri = url
                .parse()
                .map_err(|_| FetchError::Permanent(format!("`{url}` is not a URI")))?;
            for _ in 0..=self.limits.max_redirects {
                match self.get_once(&uri, max_size).await? {
                    Step::Body(body) => return Ok(Arc::from(body)),
                    Step::Redirect(next) => uri = next,
                }
            }
            Err(FetchError::Permanent(format!(
                "more than {} redirects",
                self.limits.max_redirects
            )))
        };
        match tokio::time::timeout(self.limits.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Transient(format!(
                "fetch of {url} took longer than {} ms",
                self.limits.timeout.as_millis()
            ))),
        }
    }

    async fn get_once(&self, uri: &Uri, max_size: usize) -> Result<Step, FetchError> {
        let perm = |m: String| FetchError::Permanent(m);
        let trans = |m: String| FetchError::Transient(m);
        if uri.scheme_str() != Some("https") {
            return Err(perm(format!("{uri} is not https")));
        }
        let host = uri
            .host()
            .ok_or_else(|| perm(format!("{uri} has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let addresses = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.dns.ip_addresses(&host).await.map_err(trans)?,
        };
        let ip = addresses
            .iter()
            .copied()
            .find(|ip| self.limits.allow_private || is_public(*ip))
            .ok_or_else(|| {
                if addresses.is_empty() {
                    perm(format!("{host} has no address"))
                } else {
                    perm(format!("{host} resolves only to private addresses"))
                }
            })?;
        let tcp = TcpStream::connect(SocketAddr::new(ip, port))
            .await
            .map_err(|e| trans(format!("cannot connect to {host}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|_| perm(format!("{host} is not a server name")))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| trans(format!("TLS with {host}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| trans(format!("HTTP with {host}: {e}")))?;
        let driver = tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority(&host, port))
            .header(hyper::header::USER_AGENT, "authmilter-bimi")
            .header(hyper::header::ACCEPT_ENCODING, "identity")
            .body(Empty::<Bytes>::new())
            .map_err(|e| perm(format!("bad request for {uri}: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| trans(format!("HTTP with {host}: {e}")))?;
        let status = response.status();
        let step = if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| perm(format!("{status} from {host} without Location")))?;
            Step::Redirect(resolve(uri, location).map_err(perm)?)
        } else if status.is_server_error() {
            return Err(trans(format!("{status} from {host}")));
        } else if !status.is_success() {
            return Err(perm(format!("{status} from {host}")));
        } else {
            let too_long = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                .is_some_and(|n| n > max_size);
            if too_long {
                return Err(perm(format!("{uri} is larger than {max_size} bytes")));
            }
            let mut body = response.into_body();
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| trans(format!("reading {uri}: {e}")))?;
                if let Some(data) = frame.data_ref() {
                    if out.len() + data.len() > max_size {
                        return Err(perm(format!("{uri} is larger than {max_size} bytes")));
                    }
                    out.extend_from_slice(data);
                }
            }
            Step::Body(out)
        };
        driver.abort();
        Ok(step)
    }
}

enum Step {
    Body(Vec<u8>),
    Redirect(Uri),
}

fn authority(host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// A redirect target: an absolute https URI, or an absolute path on the same server.
fn resolve(base: &Uri, location: &str) -> Result<Uri, String> {
    if location.starts_with('/') && !location.starts_with("//") {
        let authority = base.authority().map_or("", |a| a.as_str());
        return format!("https://{authority}{location}")
            .parse()
            .map_err(|_| format!("bad redirect `{location}`"));
    }
    location
        .parse::<Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("https"))
        .ok_or_else(|| format!("redirect to `{location}`, not an https URI"))
}

/// The SSRF guard: only globally routable unicast addresses are fetched from.
pub fn is_public(ip: IpAddr) -> bool {
    match crate::config::canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Documents by URL: fetched once, shared by the messages that wait for them, kept for the
/// TTL (failures too, so a dead server is not asked again for every message), at most
/// `capacity` of them.
pub struct Cache {
    client: Client,
    ttl: Duration,
    capacity: usize,
    slots: Mutex<HashMap<String, Slot>>,
}

enum Slot {
    Pending(watch::Receiver<Option<Fetched>>),
    Done(Fetched, Instant),
}

impl Cache {
    pub fn new(client: Client, ttl: Duration, capacity: usize) -> Cache {
        Cache {
            client,
            ttl,
            capacity,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The document at `url`, from the cache or fetched now (in a task of its own).
    pub async fn get(self: &Arc<Self>, url: &str, max_size: usize) -> Fetched {
        let mut rx = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get(url) {
                Some(Slot::Done(v, expires)) if *expires > Instant::now() => return v.clone(),
                Some(Slot::Pending(rx)) => rx.clone(),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    slots.insert(url.to_string(), Slot::Pending(rx.clone()));
                    let me = Arc::clone(self);
                    let url = url.to_string();
                    tokio::spawn(async move {
                        let got = me.client.get(&url, max_size).await;
                        me.store(url, got.clone());
                        let _ = tx.send(Some(got));
                    });
                    rx
                }
            }
        };
        let got = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(unreachable_fetch),
            Err(_) => Err(FetchError::Transient("fetch abandoned".into())),
        };
        got
    }

    fn store(&self, url: String, got: Fetched) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if self.capacity == 0 {
            slots.remove(&url);
            return;
        }
        let now = Instant::now();
        slots.retain(|_, s| !matches!(s, Slot::Done(_, e) if *e <= now));
        while slots.len() >= self.capacity {
            let oldest = slots
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Done(_, e) => Some((k.clone(), *e)),
                    Slot::Pending(_) => None,
                })
                .min_by_key(|(_, e)| *e)
                .map(|(k, _)| k);
            match oldest {
                Some(k) => slots.remove(&k),
                None => break,
            };
        }
        slots.insert(url, Slot::Done(got, now + self.ttl));
    }

    /// Documents held (fetched or pending).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn unreachable_fetch() -> Fetched {
    Err(FetchError::Transient("fetch ended without a result".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssrf_guard_refuses_inner_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2a00:1450::1", "93.184.216.34"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn redirects_stay_on_https() {
        let base: Uri = "https://a.example:8443/x/y".parse().unwrap();
        assert_eq!(
            resolve(&base, "/z").unwrap().to_string(),
            "https://a.example:8443/z"
        );
        assert!(resolve(&base, "http://b.example/").is_err());
        assert!(resolve(&base, "//b.example/").is_err());
        assert!(resolve(&base, "https://b.example/q").is_ok());
    }
}
