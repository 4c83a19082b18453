//! The `[store]` section: where verdicts are recorded (a SQLite file for one host, a
//! PostgreSQL database shared by a fleet) and how the writer behaves, and the PostgreSQL URL
//! read with the `url` crate: its `sslmode` and CA, and the form of it that logs and errors
//! may show (no password, wherever the URL held one).

use super::error::ConfigError;
use super::raw::RawStore;
use super::service::{machine_hostname, ErrAt};
use percent_encoding::percent_decode_str;
use std::borrow::Cow;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use url::Url;

/// Verdicts older than this many days are pruned (0 keeps them forever).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Verdict records waiting for the writer; past this they are dropped (and counted).
pub const DEFAULT_STORE_QUEUE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// SQLite database file; `None` (and no `url`): verdicts are not recorded.
    pub path: Option<PathBuf>,
    /// A PostgreSQL database shared by a fleet (instead of `path`).
    pub url: Option<PgTarget>,
    /// The name each verdict is recorded under (default: the machine's host name).
    pub host: String,
    /// What to do when the database cannot be reached at start.
    pub on_unavailable: OnUnavailable,
    pub retention_days: u32,
    pub queue_size: usize,
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
        }
    }
}

impl StoreConfig {
    /// Where the store is, when one is configured.
    pub fn location(&self) -> Option<Location> {
        match (&self.url, &self.path) {
            (Some(url), _) => Some(Location::Postgres(url.clone())),
            (None, Some(path)) => Some(Location::Sqlite(path.clone())),
            (None, None) => None,
        }
    }
}

/// Where the verdict store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgTarget),
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::Sqlite(path)
    }
}

impl std::fmt::Display for Location {
    /// For logs and errors: the file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(target) => write!(f, "{}", target.redacted()),
        }
    }
}

/// How the connection is protected, from the URL's `sslmode` (libpq's meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, unauthenticated (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is checked against `ca_file` when one is set.
    Require,
    /// TLS, the certificate chaining to `ca_file` (or the system's roots).
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A PostgreSQL database to connect to.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    /// The URL as configured, less `sslmode` and `sslrootcert` (held below). It may hold the
    /// password: only [`PgTarget::redacted`] is ever shown.
    url: String,
    pub ssl: SslMode,
    /// PEM roots the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.redacted())
            .field("ssl", &self.ssl)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The query keys a password hides behind (decoded as tokio-postgres decodes them).
const PASSWORD_KEY: &str = "password";

/// A query key or value, percent-decoded as libpq and tokio-postgres read it (`+` is a plus).
fn decoded(text: &str) -> Cow<'_, str> {
    percent_decode_str(text).decode_utf8_lossy()
}

impl PgTarget {
    /// Reads a `postgres://` URL; `sslmode` (default `prefer`) and `sslrootcert` (when no
    /// `ca_file` is configured) are taken from its query. Errors never repeat the URL.
    pub fn parse(text: &str, ca_file: Option<PathBuf>) -> Result<PgTarget, String> {
        let mut url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err("must be a postgres:// URL".into());
        }
        let mut ssl = SslMode::Prefer;
        let mut ca_file = ca_file;
        let mut rest = Vec::new();
        let query = url.query().unwrap_or_default().to_string();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match decoded(key).as_ref() {
                "sslmode" => {
                    let mode = decoded(value);
                    ssl = SslMode::parse(&mode).ok_or_else(|| {
                        format!(
                            "sslmode={mode}: use disable, prefer, require, verify-ca or \
                             verify-full"
                        )
                    })?;
                }
                "sslrootcert" => {
                    ca_file.get_or_insert_with(|| PathBuf::from(decoded(value).as_ref()));
                }
                _ => rest.push(pair),
            }
        }
        url.set_query((!rest.is_empty()).then(|| rest.join("&")).as_deref());
        let target = PgTarget {
            url: url.into(),
            ssl,
            ca_file,
        };
        target
            .url
            .parse::<postgres::Config>()
            .map_err(|e| format!("{}: {e}", target.redacted()))?;
        Ok(target)
    }

    /// The URL as the client reads it. It may hold the password: never log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL without its password (user info, `password=`), for logs and errors.
    pub fn redacted(&self) -> String {
        redact_url(&self.url)
    }

    /// Why TLS to this database would not stop someone on the network path from reading or
    /// changing the traffic (`None`: verified, or the database is on this machine). libpq's
    /// `prefer` falls back to plain TCP when TLS is refused, so it is never verified;
    /// `require` is verified only with a CA file.
    pub fn unverified_tls(&self) -> Option<&'static str> {
        if self.is_local() {
            return None;
        }
        match (self.ssl, &self.ca_file) {
            (SslMode::Disable, _) => Some("sslmode=disable: the connection is not encrypted"),
            (SslMode::Prefer, _) => Some(
                "sslmode=prefer: plain TCP when TLS is refused (a downgrade no one notices) and \
                 the certificate is not required",
            ),
            (SslMode::Require, None) => {
                Some("sslmode=require without a CA file: the server's certificate is not checked")
            }
            _ => None,
        }
    }

    /// Whether every address the client may connect to is on this machine: a Unix socket,
    /// `localhost` or a loopback address (a `hostaddr` is what is connected to).
    fn is_local(&self) -> bool {
        let Ok(config) = self.url.parse::<postgres::Config>() else {
            return false;
        };
        if !config.get_hostaddrs().is_empty() {
            return config.get_hostaddrs().iter().all(IpAddr::is_loopback);
        }
        config.get_hosts().iter().all(|host| match host {
            postgres::config::Host::Tcp(name) => {
                let name = name.trim_start_matches('[').trim_end_matches(']');
                name.eq_ignore_ascii_case("localhost")
                    || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            postgres::config::Host::Unix(_) => true,
        })
    }
}

/// `text` with every password in it hidden (the user info's, and a `password=` query
/// parameter's), for logs and errors; text that is not a URL is not shown at all, since it
/// cannot be told what in it is secret.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return "(a URL that could not be read)".into();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if let Some(query) = url.query() {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let key = pair.split_once('=').map_or(pair, |(k, _)| k);
                if decoded(key) == PASSWORD_KEY {
                    format!("{key}=***")
                } else {
                    pair.to_string()
                }
            })
            .collect();
        url.set_query(Some(&pairs.join("&")));
    }
    url.into()
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
        let target = PgTarget::parse(url.get_ref().trim(), ca_file)
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
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_sslmode_and_password_redaction() {
        let t = PgTarget::parse(
            "postgres://am:s3cret@db.example:5433/authmilter?sslmode=verify-full&connect_timeout=3",
            None,
        )
        .unwrap();
        assert_eq!(t.ssl, SslMode::VerifyFull);
        assert_eq!(
            t.redacted(),
            "postgres://am:***@db.example:5433/authmilter?connect_timeout=3"
        );
        let t = PgTarget::parse("postgresql://db.example/x?sslrootcert=/etc/ca.pem", None).unwrap();
        assert_eq!(
            (t.ssl, t.ca_file.as_deref()),
            (SslMode::Prefer, Some("/etc/ca.pem".as_ref()))
        );
        assert!(PgTarget::parse("postgres://db/x?sslmode=allow", None)
            .unwrap_err()
            .contains("verify-full"));
        assert!(PgTarget::parse("mysql://db/x", None).is_err());
    }

    // Issue 22: a password given in the query (or percent-encoded, or in both places) is
    // hidden as well as the user info's, in the URL and in the Debug form of the target.
    #[test]
    fn every_password_position_is_redacted() {
        let urls = [
            "postgres://am:pw1secret@db.example/x?password=pw2secret&sslmode=disable",
            "postgres://am@db.example/x?application_name=a&pass%77ord=pw3secret",
            "postgresql://:pw4%40secret@[::1]:5433/x?password=pw5secret&password=pw6secret",
        ];
        for text in urls {
            let t = PgTarget::parse(text, None).unwrap();
            let shown = format!("{} {t:?} {}", t.redacted(), Location::Postgres(t.clone()));
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        // What cannot be read is not shown; errors never repeat the URL.
        assert!(!redact_url("postgres://am:pwsecret@db:port/x").contains("secret"));
        for bad in [
            "postgres://am:pwsecret@db:99999/x",
            "postgres://am:pwsecret@db/x?sslmode=nope",
            "postgres://am:pwsecret@db/x?keepalives=maybe",
            "mysql://am:pwsecret@db/x",
        ] {
            let e = PgTarget::parse(bad, None).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    // Issue 22: TLS that does not verify the server is worth a warning only when the
    // traffic crosses a network.
    #[test]
    fn unverified_tls_is_flagged_only_off_this_machine() {
        let flagged = |url: &str, ca: Option<&str>| {
            PgTarget::parse(url, ca.map(PathBuf::from))
                .unwrap()
                .unverified_tls()
                .is_some()
        };
        for mode in ["disable", "prefer", "require"] {
            assert!(flagged(
                &format!("postgres://db.example/x?sslmode={mode}"),
                None
            ));
            assert!(flagged(
                &format!("postgres://192.0.2.7/x?sslmode={mode}"),
                None
            ));
            for local in ["127.0.0.1", "localhost", "[::1]", "%2Frun%2Fpostgresql"] {
                let url = format!("postgres://{local}/x?sslmode={mode}");
                assert!(!flagged(&url, None), "{url}");
            }
        }
        assert!(
            flagged("postgres://db.example/x", None),
            "prefer is the default"
        );
        assert!(flagged(
            "postgres://db.example/x?sslmode=prefer",
            Some("/ca.pem")
        ));
        assert!(!flagged(
            "postgres://db.example/x?sslmode=require",
            Some("/ca.pem")
        ));
        assert!(!flagged("postgres://db.example/x?sslmode=verify-ca", None));
        assert!(!flagged(
            "postgres://db.example/x?sslmode=verify-full",
            None
        ));
        assert!(!flagged(
            "postgres://db.example/x?sslmode=disable&hostaddr=127.0.0.1",
            None
        ));
        assert!(flagged(
            "postgres://localhost,db.example/x?sslmode=disable",
            None
        ));
    }
}
