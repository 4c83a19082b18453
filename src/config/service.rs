//! The `[http]` and `[store]` sections: the HTTP API listener with its bearer tokens, and the
//! verdict store. Both are off unless configured (or turned on by `--http` / `--store`).

use super::raw::{RawHttp, RawStore};
use super::ConfigError;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `--http` without an address (or an `[http]` section without `listen`) listens.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8896";
/// How long one HTTP request may take, reading the body included.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Verdicts older than this many days are pruned (0 keeps them forever).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Verdict records waiting for the writer; past this they are dropped (and counted).
pub const DEFAULT_STORE_QUEUE: usize = 10_000;
/// `store.spool_max_bytes`: 256 MiB of records (about 100,000 verdicts).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 << 20;

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

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// SQLite database file; `None` (and no `url`): verdicts are not recorded.
    pub path: Option<PathBuf>,
    /// A PostgreSQL database shared by a fleet (instead of `path`).
    pub url: Option<crate::store::PgTarget>,
    /// The name each verdict is recorded under (default: the machine's host name).
    pub host: String,
    /// What to do when the database cannot be reached at start.
    pub on_unavailable: OnUnavailable,
    pub retention_days: u32,
    pub queue_size: usize,
    /// The local spool for records the PostgreSQL store cannot take (`None`: no spool; the
    /// queue alone rides out an outage).
    pub spool_path: Option<PathBuf>,
    /// The spool's bound (records' encoded size); beyond it records are dropped and counted.
    pub spool_max_bytes: u64,
}

/// `store.on_unavailable`: a database that cannot be reached at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Refuse to start (a configuration problem should be seen at once).
    Refuse,
    /// Start, queue records (bounded) and connect in the background.
    Buffer,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: None,
            url: None,
            host: machine_hostname(),
            on_unavailable: OnUnavailable::Refuse,
            retention_days: DEFAULT_RETENTION_DAYS,
            queue_size: DEFAULT_STORE_QUEUE,
            spool_path: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }
}

impl StoreConfig {
    /// Where the store is, when one is configured.
    pub fn location(&self) -> Option<crate::store::Location> {
        use crate::store::Location;
        match (&self.url, &self.path) {
            (Some(url), _) => Some(Location::Postgres(url.clone())),
            (None, Some(path)) => Some(Location::Sqlite(path.clone())),
            (None, None) => None,
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

pub(super) fn store_from_raw(
    raw: RawStore,
    base: &Path,
    err: &ErrAt<'_>,
) -> Result<StoreConfig, ConfigError> {
    let mut store = StoreConfig::default();
    if let Some(path) = &raw.path {
        if path.get_ref().trim().is_empty() {
            return Err(err(path.span(), "must not be empty".into()));
        }
        store.path = Some(base.join(path.get_ref()));
    }
    let ca_file = raw.ca_file.map(|f| base.join(f.get_ref()));
    if let Some(url) = raw.url {
        if raw.path.is_some() {
            return Err(err(
                url.span(),
                "give either path (SQLite) or url (PostgreSQL), not both".into(),
            ));
        }
        let target = crate::store::PgTarget::parse(url.get_ref().trim(), ca_file)
            .map_err(|message| err(url.span(), message))?;
        store.url = Some(target);
    }
    if let Some(host) = raw.host {
        let name = host.get_ref().trim();
        if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control()) {
            return Err(err(
                host.span(),
                "must be a name of 1 to 255 printable characters".into(),
            ));
        }
        store.host = name.to_string();
    }
    if let Some(mode) = raw.on_unavailable {
        store.on_unavailable = match mode.get_ref().as_str() {
            "refuse" => OnUnavailable::Refuse,
            "buffer" => OnUnavailable::Buffer,
            other => {
                return Err(err(
                    mode.span(),
                    format!("{other:?}: use \"refuse\" or \"buffer\""),
                ))
            }
        };
    }
    if let Some(days) = raw.retention_days {
        store.retention_days = days;
    }
    if let Some(n) = raw.queue_size {
        if *n.get_ref() == 0 {
            return Err(err(n.span(), "must be at least 1".into()));
        }
        store.queue_size = *n.get_ref();
    }
    if let Some(path) = raw.spool_path {
        if path.get_ref().trim().is_empty() {
            return Err(err(path.span(), "must not be empty".into()));
        }
        if store.url.is_none() {
            return Err(err(
                path.span(),
                "the spool is for a PostgreSQL store (url); a SQLite store is local already".into(),
            ));
        }
        store.spool_path = Some(base.join(path.get_ref()));
    }
    if let Some(n) = raw.spool_max_bytes {
        if *n.get_ref() < 1 << 20 {
            return Err(err(n.span(), "must be at least 1048576 (1 MiB)".into()));
        }
        store.spool_max_bytes = *n.get_ref();
    }
    Ok(store)
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
