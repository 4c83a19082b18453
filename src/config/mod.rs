//! Configuration: a TOML file turned into a validated [`Config`].
//!
//! Two steps, as ripgrep does with its flags: `raw` holds serde structs that mirror the file
//! (`deny_unknown_fields`, so a typo fails loudly), and [`Config::from_raw`] checks values and
//! fills defaults. Every error names the file, the line and the key. The defaults live here and
//! nowhere else; the README's configuration reference documents them.

mod arc;
mod error;
mod raw;
mod reports;
mod service;
mod signing;
mod smtp;
mod store;
mod submission;

pub use arc::{ArcSealConfig, SealMode, DEFAULT_ARC_SIGNED_HEADERS};
pub use error::ConfigError;
pub use reports::{ForeignReports, ReportDelivery, ReportsConfig};
pub use service::{machine_hostname, normalize_domain, parse_sha256};
pub use service::{ApiToken, HttpConfig, Scope, DEFAULT_HTTP_LISTEN, DEFAULT_HTTP_TIMEOUT};
pub use signing::{
    check_domain, check_selector, identity_in_domain, parse_sign_flag, IdentityMode, KeySpec,
    OnUnauthorised, SigningConfig, DEFAULT_OVERSIGNED_HEADERS, DEFAULT_SIGNED_HEADERS,
};
pub use smtp::{check_relay, parse_relay_tls, Delivery, RelayTls, SmtpConfig, DEFAULT_SMTP_LISTEN};
pub use store::{
    redact_url, Location, OnUnavailable, PgTarget, SslMode, StoreConfig, DEFAULT_RETENTION_DAYS,
    DEFAULT_STORE_QUEUE,
};
pub use submission::{AuthBackend, AuthConfig, ListenerConfig, Role, TlsMode};

use ipnet::IpNet;
use raw::RawConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default limits and DNS settings (documented in the README).
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_DNS_ATTEMPTS: usize = 2;
pub const DEFAULT_DNS_CACHE_SIZE: usize = 10_000;
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;
pub const DEFAULT_MAX_DKIM_SIGNATURES: usize = 10;
/// Like Postfix's smtpd_recipient_limit.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
pub const DEFAULT_MAX_HEADER_FIELDS: usize = 1000;
pub const DEFAULT_MILTER_LISTEN: &str = "127.0.0.1:8895";
pub const DEFAULT_MILTER_MAX_CONNECTIONS: usize = 1000;
pub const DEFAULT_MILTER_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The validated configuration. Cheap to clone; sessions keep the one they started with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any (relative paths inside it are resolved against its folder).
    pub source: Option<PathBuf>,
    /// RFC 8601 authserv-id written into Authentication-Results (default: the host's name).
    pub authserv_id: String,
    pub dns: DnsConfig,
    /// Clients in these networks are outbound: they are not verified.
    pub trusted_networks: Vec<IpNet>,
    /// A folder of policy files replacing the built-in default policy.
    pub policy_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Also produce a `Received-SPF` header field (RFC 7208 §9.1).
    pub received_spf: bool,
    /// Run the iprev check (RFC 8601 §3) on the client address.
    pub iprev: bool,
    pub milter: MilterConfig,
    /// How long a graceful shutdown waits for messages in flight.
    pub shutdown_grace: Duration,
    /// DKIM signing of outbound mail (no keys: nothing is signed).
    pub signing: SigningConfig,
    /// The HTTP API (off unless configured or `--http` is given).
    pub http: HttpConfig,
    /// The verdict store (off unless a path is configured or `--store` is given).
    pub store: StoreConfig,
    /// The SMTP front end (off unless configured or `--smtp` is given).
    pub smtp: SmtpConfig,
    /// DMARC reports out and in.
    pub reports: ReportsConfig,
    /// ARC sealing (`[arc.seal]`; off unless configured).
    pub arc_seal: ArcSealConfig,
}

/// Where a listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// A Unix socket, created with the configured mode.
    Unix(PathBuf),
}

impl ListenAddr {
    /// `ip:port` or `unix:/path`.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        text.parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("`{text}` is neither ip:port nor unix:/path"))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The milter listener.
#[derive(Debug, Clone)]
pub struct MilterConfig {
    pub listen: ListenAddr,
    /// Permission bits of a Unix socket.
    pub socket_mode: u32,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long to wait for the MTA's next command.
    pub timeout: Duration,
}

impl Default for MilterConfig {
    fn default() -> Self {
        MilterConfig {
            listen: ListenAddr::parse(DEFAULT_MILTER_LISTEN).expect("literal"),
            socket_mode: DEFAULT_SOCKET_MODE,
            max_connections: DEFAULT_MILTER_MAX_CONNECTIONS,
            timeout: DEFAULT_MILTER_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Nameservers as `ip:port`; empty means the system's resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    /// Tries per query (the first one included).
    pub attempts: usize,
    /// Entries per cache; 0 turns caching off.
    pub cache_size: usize,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// DKIM signatures evaluated per message; further ones are ignored (DESIGN.md item 6).
    pub max_dkim_signatures: usize,
    /// Recipients per message through the milter (the SMTP front end has its own, lower,
    /// `smtp.max_recipients`); past it the message is deferred.
    pub max_recipients: usize,
    /// Header fields per message through the milter; past it the message is deferred.
    pub max_header_fields: usize,
    /// Bytes of messages held in memory at once, across all connections of all doors; past
    /// it new messages are deferred. Default: a quarter of the machine's memory.
    pub max_inflight_bytes: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: DEFAULT_DNS_TIMEOUT,
            attempts: DEFAULT_DNS_ATTEMPTS,
            cache_size: DEFAULT_DNS_CACHE_SIZE,
        }
    }
}

/// The default memory budget for messages in flight: a quarter of the machine's memory
/// (`MemTotal`), or 1 GiB when that cannot be read.
pub fn default_max_inflight_bytes() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib.saturating_mul(1024) / 4)
        })
        .unwrap_or(1 << 30)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_dkim_signatures: DEFAULT_MAX_DKIM_SIGNATURES,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_header_fields: DEFAULT_MAX_HEADER_FIELDS,
            max_inflight_bytes: default_max_inflight_bytes(),
        }
    }
}

impl Default for Config {
    /// The embedded defaults: what `authmilter` runs with when given no configuration file.
    fn default() -> Self {
        Config {
            source: None,
            authserv_id: host_name(),
            dns: DnsConfig::default(),
            trusted_networks: default_trusted_networks(),
            policy_dir: None,
            limits: Limits::default(),
            received_spf: false,
            iprev: false,
            milter: MilterConfig::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            signing: SigningConfig::default(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            smtp: SmtpConfig::default(),
            reports: ReportsConfig::default(),
            arc_seal: ArcSealConfig::default(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::file(path, format!("cannot read file: {e}")))?;
        Config::parse(&text, Some(path))
    }

    /// Validates configuration text; `path` is used in error messages and to resolve
    /// relative paths.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = path.unwrap_or(Path::new("<config>"));
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
        Config::from_raw(raw, text, path)
    }

    fn from_raw(raw: RawConfig, text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = path.unwrap_or(Path::new("<config>"));
        let err =
            |span: std::ops::Range<usize>, msg: String| ConfigError::at(file, text, span, msg);
        let mut config = Config {
            source: path.map(Path::to_path_buf),
            ..Config::default()
        };
        if let Some(id) = raw.authserv_id {
            let value = id.get_ref().trim();
            if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == ';') {
                return Err(err(
                    id.span(),
                    "must be a host name without spaces or ';'".into(),
                ));
            }
            config.authserv_id = value.to_string();
        }
        if let Some(dns) = raw.dns {
            for ns in dns.nameservers.unwrap_or_default() {
                let addr: SocketAddr = ns.get_ref().parse().map_err(|_| {
                    err(
                        ns.span(),
                        format!("`{}` is not an ip:port address", ns.get_ref()),
                    )
                })?;
                config.dns.nameservers.push(addr);
            }
            if let Some(ms) = dns.timeout_ms {
                if *ms.get_ref() == 0 {
                    return Err(err(ms.span(), "must be greater than 0".into()));
                }
                config.dns.timeout = Duration::from_millis(*ms.get_ref());
            }
            if let Some(n) = dns.attempts {
                if !(1..=10).contains(n.get_ref()) {
                    return Err(err(n.span(), "must be between 1 and 10".into()));
                }
                config.dns.attempts = *n.get_ref();
            }
            if let Some(n) = dns.cache_size {
                config.dns.cache_size = n;
            }
        }
        if let Some(nets) = raw.trusted_networks {
            config.trusted_networks = nets
                .into_iter()
                .map(|net| parse_network(net.get_ref()).map_err(|m| err(net.span(), m)))
                .collect::<Result<_, _>>()?;
        }
        if let Some(dir) = raw.policy_dir {
            let base = path.and_then(Path::parent).unwrap_or(Path::new("."));
            config.policy_dir = Some(base.join(dir.get_ref()));
        }
        if let Some(limits) = raw.limits {
            if let Some(n) = limits.max_message_size {
                if *n.get_ref() < 1024 {
                    return Err(err(n.span(), "must be at least 1024 bytes".into()));
                }
                config.limits.max_message_size = *n.get_ref();
            }
            if let Some(n) = limits.max_dkim_signatures {
                if *n.get_ref() == 0 {
                    return Err(err(n.span(), "must be at least 1".into()));
                }
                config.limits.max_dkim_signatures = *n.get_ref();
            }
            let at_least = |v: Option<toml::Spanned<usize>>, min: usize, slot: &mut usize| {
                if let Some(n) = v {
                    if *n.get_ref() < min {
                        return Err(err(n.span(), format!("must be at least {min}")));
                    }
                    *slot = *n.get_ref();
                }
                Ok(())
            };
            at_least(limits.max_recipients, 1, &mut config.limits.max_recipients)?;
            at_least(
                limits.max_header_fields,
                1,
                &mut config.limits.max_header_fields,
            )?;
            at_least(
                limits.max_inflight_bytes,
                1 << 20,
                &mut config.limits.max_inflight_bytes,
            )?;
        }
        if let Some(headers) = raw.headers {
            config.received_spf = headers.received_spf.unwrap_or(false);
        }
        if let Some(checks) = raw.checks {
            config.iprev = checks.iprev.unwrap_or(false);
        }
        if let Some(milter) = raw.milter {
            if let Some(listen) = milter.listen {
                config.milter.listen =
                    ListenAddr::parse(listen.get_ref()).map_err(|m| err(listen.span(), m))?;
            }
            if let Some(mode) = milter.socket_mode {
                config.milter.socket_mode =
                    u32::from_str_radix(mode.get_ref().trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| {
                            err(mode.span(), "must be an octal mode such as \"0660\"".into())
                        })?;
            }
            if let Some(n) = milter.max_connections {
                if *n.get_ref() == 0 {
                    return Err(err(n.span(), "must be at least 1".into()));
                }
                config.milter.max_connections = *n.get_ref();
            }
            if let Some(s) = milter.timeout_secs {
                if *s.get_ref() == 0 {
                    return Err(err(s.span(), "must be greater than 0".into()));
                }
                config.milter.timeout = Duration::from_secs(*s.get_ref());
            }
        }
        if let Some(server) = raw.server {
            if let Some(s) = server.shutdown_grace_secs {
                config.shutdown_grace = Duration::from_secs(s);
            }
        }
        if let Some(signing) = raw.signing {
            let base = path.and_then(Path::parent).unwrap_or(Path::new("."));
            config.signing = signing::from_raw(signing, base, file, text, &err)?;
        }
        let base = path.and_then(Path::parent).unwrap_or(Path::new("."));
        if let Some(http) = raw.http {
            config.http = service::http_from_raw(http, &err)?;
        }
        if let Some(store) = raw.store {
            config.store = store::store_from_raw(store, base, &err)?;
        }
        if let Some(reports) = raw.reports {
            config.reports = reports::reports_from_raw(reports, base, &err)?;
        }
        if let Some(smtp) = raw.smtp {
            config.smtp = smtp::smtp_from_raw(smtp, base, &err)?;
        }
        if let Some(seal) = raw.arc.and_then(|a| a.seal) {
            config.arc_seal = arc::from_raw(seal, base, file, text, &err)?;
        }
        Ok(config)
    }

    /// Whether a client address belongs to the trusted (outbound) networks.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_networks.iter().any(|net| net.contains(&ip))
    }
}

/// Loopback, in both families: the only clients trusted without configuration.
pub fn default_trusted_networks() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("literal"),
        "::1/128".parse().expect("literal"),
    ]
}

/// Parses `a.b.c.d/n`, `v6/n` or a bare address (a /32 or /128).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{text}` is not a network (CIDR) or an IP address"))
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are compared as IPv4.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The host's name, for the default authserv-id.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests;
