//! The `[http]` section: the HTTP API listener with its bearer tokens (off unless configured
//! or turned on by `--http`); and the small readers several sections share (the machine's
//! host name, domains, SHA-256 digests).

use super::error::ConfigError;
use super::raw::RawHttp;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

/// Where `--http` without an address (or an `[http]` section without `listen`) listens.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8896";
/// How long one HTTP request may take, reading the body included.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Query verdicts, statistics and metrics.
    Read,
    /// `POST /v1/check`.
    Check,
    /// `POST /v1/sign`.
    Sign,
    /// `POST /v1/reload`; also grants every other scope.
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "check" => Some(Scope::Check),
            "sign" => Some(Scope::Sign),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Check => "check",
            Scope::Sign => "sign",
            Scope::Admin => "admin",
        }
    }
}

/// A bearer token, kept only as the SHA-256 of its text so the configuration file holds no
/// secret (`printf %s "$TOKEN" | sha256sum`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// For logs: which client it was.
    pub name: String,
    pub sha256: [u8; 32],
    pub scopes: Vec<Scope>,
}

impl ApiToken {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|&s| s == scope || s == Scope::Admin)
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `None`: no HTTP listener.
    pub listen: Option<SocketAddr>,
    pub request_timeout: Duration,
    pub tokens: Vec<ApiToken>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            request_timeout: DEFAULT_HTTP_TIMEOUT,
            tokens: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// A listener reachable from other hosts must not be open to anyone: refuse one without
    /// tokens (every request there needs one).
    pub fn check(&self) -> Result<(), String> {
        match self.listen {
            Some(addr) if !addr.ip().is_loopback() && self.tokens.is_empty() => Err(format!(
                "the HTTP API on non-loopback address {addr} needs at least one [[http.tokens]] entry"
            )),
            _ => Ok(()),
        }
    }
}

/// The machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
/// `localhost`).
pub fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub(super) type ErrAt<'a> = dyn Fn(Range<usize>, String) -> ConfigError + 'a;

/// A listener's `listen` key: `"ip:port"`, or `"off"` for none.
pub(super) fn listen_or_off(
    listen: &toml::Spanned<String>,
    err: &ErrAt<'_>,
) -> Result<Option<SocketAddr>, ConfigError> {
    let text = listen.get_ref().trim();
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        err(
            listen.span(),
            format!("`{text}` is not an ip:port address (or \"off\")"),
        )
    })
}

pub(super) fn http_from_raw(raw: RawHttp, err: &ErrAt<'_>) -> Result<HttpConfig, ConfigError> {
    let mut http = HttpConfig {
        listen: Some(DEFAULT_HTTP_LISTEN.parse().expect("literal")),
        ..HttpConfig::default()
    };
    let mut listen_span = None;
    if let Some(listen) = raw.listen {
        http.listen = listen_or_off(&listen, err)?;
        listen_span = Some(listen.span());
    }
    if let Some(secs) = raw.request_timeout_secs {
        if *secs.get_ref() == 0 {
            return Err(err(secs.span(), "must be greater than 0".into()));
        }
        http.request_timeout = Duration::from_secs(*secs.get_ref());
    }
    for token in raw.tokens.unwrap_or_default() {
        let sha256 = parse_sha256(token.sha256.get_ref()).ok_or_else(|| {
            err(
                token.sha256.span(),
                "must be 64 hex digits: the SHA-256 of the token".into(),
            )
        })?;
        if token.scopes.get_ref().is_empty() {
            return Err(err(token.scopes.span(), "needs at least one scope".into()));
        }
        let scopes = token
            .scopes
            .get_ref()
            .iter()
            .map(|s| {
                Scope::parse(s.get_ref()).ok_or_else(|| {
                    err(
                        s.span(),
                        format!("unknown scope `{}` (read, check, sign, admin)", s.get_ref()),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        http.tokens.push(ApiToken {
            name: token.name.get_ref().clone(),
            sha256,
            scopes,
        });
    }
    if let Err(message) = http.check() {
        return Err(err(listen_span.unwrap_or(0..0), message));
    }
    Ok(http)
}

/// A domain as compared with recipients: lower case, no trailing dot.
pub fn normalize_domain(text: &str) -> Option<String> {
    let d = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
        });
    ok.then_some(d)
}

/// 64 hex digits to 32 bytes.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
