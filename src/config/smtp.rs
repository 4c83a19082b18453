//! The `[smtp]` section: the standalone SMTP front end (off unless configured or `--smtp`).
//!
//! Only what the file says is checked here; certificates and keys are read when the server
//! starts (and on reload), so `validate` stays quick and a missing file names itself there.

use super::error::ConfigError;
use super::raw::RawSmtp;
use super::service::{listen_or_off, normalize_domain, ErrAt};
use super::submission::{
    auth_from_raw, listener_from_raw, senders_from_raw, AuthConfig, ListenerConfig, Role, TlsMode,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where `--smtp` without an address listens.
pub const DEFAULT_SMTP_LISTEN: &str = "127.0.0.1:2525";
pub const DEFAULT_SMTP_MAX_CONNECTIONS: usize = 500;
pub const DEFAULT_SMTP_MAX_PER_IP: usize = 20;
/// Connections from one network (IPv4 /24, IPv6 /64 by default): a tenth of the total, so a
/// few neighbours cannot take every slot.
pub const DEFAULT_SMTP_MAX_PER_NETWORK: usize = 50;
pub const DEFAULT_NETWORK_PREFIX_V4: u8 = 24;
pub const DEFAULT_NETWORK_PREFIX_V6: u8 = 64;
/// Above this share of `max_connections` the front end is under stress (Postfix: 80 %).
pub const DEFAULT_STRESS_THRESHOLD_PERCENT: u8 = 70;
/// Under stress, the command, greeting and DATA-line timeouts (Postfix: 10 s).
pub const DEFAULT_STRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// NOOP, RSET, HELP and VRFY in a row before 421 (Postfix's smtpd_junk_command_limit).
pub const DEFAULT_JUNK_COMMAND_LIMIT: usize = 100;
pub const DEFAULT_SMTP_MAX_RECIPIENTS: usize = 100;
/// Command lines, CRLF included (RFC 5321 §4.5.3.1.4 asks for at least 512).
pub const DEFAULT_SMTP_MAX_LINE: usize = 4096;
/// Lines inside DATA, CRLF included: RFC 5322 says 1000, real mail is sloppier.
pub const DEFAULT_SMTP_MAX_DATA_LINE: usize = 65_536;
pub const DEFAULT_SMTP_MAX_ERRORS: usize = 10;
/// RFC 5321 §4.5.3.2.7 (server timeout: 5 minutes).
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 5321 §4.5.3.2.5 (data block: 3 minutes).
pub const DEFAULT_SMTP_DATA_TIMEOUT: Duration = Duration::from_secs(180);
pub const DEFAULT_RELAY_TIMEOUT: Duration = Duration::from_secs(60);
/// Where mail goes without a relay: a Maildir below the working directory.
pub const DEFAULT_MAILDIR: &str = "maildir";

/// STARTTLS towards the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayTls {
    /// Never (the usual case for a next hop on loopback or a private link).
    #[default]
    None,
    /// When offered. Without `relay_ca_file` the certificate is not verified (RFC 7435);
    /// with it, it must verify. A next hop that answers STARTTLS with an error is spoken to
    /// in plain text (RFC 3207 §4); a failed handshake is a 451, never a fall-back.
    Opportunistic,
    /// Always, verified against `relay_ca_file` (which is then mandatory): a next hop that
    /// does not offer STARTTLS or whose certificate does not verify gets no mail (451).
    Required,
}

/// Where accepted mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// `host:port` of the next SMTP hop.
    Relay(String),
    Maildir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The legacy single listener (an `mx` one); `None`: only `listeners`, if any.
    pub listen: Option<SocketAddr>,
    /// `[[smtp.listeners]]`, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// `[smtp.auth]`: credentials and abuse limits.
    pub auth: AuthConfig,
    /// `[smtp.senders]`: login -> the addresses it may send as (`None`: its own login only).
    pub senders: Option<BTreeMap<String, Vec<String>>>,
    /// Greeting and `Received:` name (default: the authserv-id).
    pub hostname: Option<String>,
    /// Domains untrusted clients may send to; anything else is relaying and refused.
    pub local_domains: Vec<String>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_network: usize,
    /// The prefix lengths that make a "network" for `max_connections_per_network`.
    pub network_prefix_v4: u8,
    pub network_prefix_v6: u8,
    /// Percent of `max_connections` open above which the front end is under stress.
    pub stress_threshold_percent: u8,
    pub stress_timeout: Duration,
    pub junk_command_limit: usize,
    pub max_recipients: usize,
    /// Largest message (default: `limits.max_message_size`).
    pub max_message_size: Option<usize>,
    pub max_line_length: usize,
    pub max_data_line_length: usize,
    pub max_errors: usize,
    pub timeout: Duration,
    pub data_timeout: Duration,
    /// STARTTLS certificate chain and key (PEM); both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub delivery: Delivery,
    pub relay_tls: RelayTls,
    /// PEM roots the next hop's certificate must chain to (without: the system's are not
    /// used; `required` needs this).
    pub relay_ca_file: Option<PathBuf>,
    pub relay_timeout: Duration,
    /// Quarantined mail goes here; without it, to the next hop with a marker field.
    pub quarantine_maildir: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: None,
            listeners: Vec::new(),
            auth: AuthConfig::default(),
            senders: None,
            hostname: None,
            local_domains: Vec::new(),
            max_connections: DEFAULT_SMTP_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_SMTP_MAX_PER_IP,
            max_connections_per_network: DEFAULT_SMTP_MAX_PER_NETWORK,
            network_prefix_v4: DEFAULT_NETWORK_PREFIX_V4,
            network_prefix_v6: DEFAULT_NETWORK_PREFIX_V6,
            stress_threshold_percent: DEFAULT_STRESS_THRESHOLD_PERCENT,
            stress_timeout: DEFAULT_STRESS_TIMEOUT,
            junk_command_limit: DEFAULT_JUNK_COMMAND_LIMIT,
            max_recipients: DEFAULT_SMTP_MAX_RECIPIENTS,
            max_message_size: None,
            max_line_length: DEFAULT_SMTP_MAX_LINE,
            max_data_line_length: DEFAULT_SMTP_MAX_DATA_LINE,
            max_errors: DEFAULT_SMTP_MAX_ERRORS,
            timeout: DEFAULT_SMTP_TIMEOUT,
            data_timeout: DEFAULT_SMTP_DATA_TIMEOUT,
            tls: None,
            delivery: Delivery::Maildir(PathBuf::from(DEFAULT_MAILDIR)),
            relay_tls: RelayTls::None,
            relay_ca_file: None,
            relay_timeout: DEFAULT_RELAY_TIMEOUT,
            quarantine_maildir: None,
        }
    }
}

impl SmtpConfig {
    /// Every listener: the legacy `listen` first (as `mx`), then `[[smtp.listeners]]`.
    pub fn all_listeners(&self) -> Vec<ListenerConfig> {
        let legacy = self.listen.map(ListenerConfig::mx);
        legacy
            .into_iter()
            .chain(self.listeners.iter().cloned())
            .collect()
    }

    /// Whether the SMTP front end runs at all.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || !self.listeners.is_empty()
    }
}

/// `host:port` with a non-empty host and a numeric port.
pub fn check_relay(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(text.to_string())
        }
        _ => Err(format!("`{text}` is not host:port")),
    }
}

pub(super) fn smtp_from_raw(
    raw: RawSmtp,
    base: &Path,
    err: &ErrAt<'_>,
) -> Result<SmtpConfig, ConfigError> {
    let mut smtp = SmtpConfig {
        listen: Some(DEFAULT_SMTP_LISTEN.parse().expect("literal")),
        ..SmtpConfig::default()
    };
    if let Some(listen) = raw.listen {
        smtp.listen = listen_or_off(&listen, err)?;
    } else if raw.listeners.is_some() {
        // Listeners given: no implicit legacy one beside them.
        smtp.listen = None;
    }
    if let Some(name) = raw.hostname {
        let text = name.get_ref().trim();
        if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(err(
                name.span(),
                "must be a host name without spaces".into(),
            ));
        }
        smtp.hostname = Some(text.to_string());
    }
    for d in raw.local_domains.unwrap_or_default() {
        let domain = normalize_domain(d.get_ref())
            .ok_or_else(|| err(d.span(), format!("`{}` is not a domain", d.get_ref())))?;
        smtp.local_domains.push(domain);
    }
    let at_least_one = |v: Option<toml::Spanned<usize>>, min: usize, slot: &mut usize| {
        if let Some(n) = v {
            if *n.get_ref() < min {
                return Err(err(n.span(), format!("must be at least {min}")));
            }
            *slot = *n.get_ref();
        }
        Ok(())
    };
    at_least_one(raw.max_connections, 1, &mut smtp.max_connections)?;
    at_least_one(
        raw.max_connections_per_ip,
        1,
        &mut smtp.max_connections_per_ip,
    )?;
    at_least_one(
        raw.max_connections_per_network,
        1,
        &mut smtp.max_connections_per_network,
    )?;
    at_least_one(raw.junk_command_limit, 1, &mut smtp.junk_command_limit)?;
    let within =
        |v: Option<toml::Spanned<u8>>, range: std::ops::RangeInclusive<u8>, slot: &mut u8| {
            if let Some(n) = v {
                if !range.contains(n.get_ref()) {
                    return Err(err(
                        n.span(),
                        format!("must be {} to {}", range.start(), range.end()),
                    ));
                }
                *slot = *n.get_ref();
            }
            Ok(())
        };
    within(raw.network_prefix_v4, 8..=32, &mut smtp.network_prefix_v4)?;
    within(raw.network_prefix_v6, 16..=128, &mut smtp.network_prefix_v6)?;
    within(
        raw.stress_threshold_percent,
        1..=100,
        &mut smtp.stress_threshold_percent,
    )?;
    at_least_one(raw.max_recipients, 1, &mut smtp.max_recipients)?;
    at_least_one(raw.max_errors, 1, &mut smtp.max_errors)?;
    at_least_one(raw.max_line_length, 512, &mut smtp.max_line_length)?;
    at_least_one(
        raw.max_data_line_length,
        1000,
        &mut smtp.max_data_line_length,
    )?;
    if let Some(n) = raw.max_message_size {
        if *n.get_ref() < 1024 {
            return Err(err(n.span(), "must be at least 1024 bytes".into()));
        }
        smtp.max_message_size = Some(*n.get_ref());
    }
    let seconds = |v: Option<toml::Spanned<u64>>, slot: &mut Duration| {
        if let Some(s) = v {
            if *s.get_ref() == 0 {
                return Err(err(s.span(), "must be greater than 0".into()));
            }
            *slot = Duration::from_secs(*s.get_ref());
        }
        Ok(())
    };
    seconds(raw.timeout_secs, &mut smtp.timeout)?;
    seconds(raw.data_timeout_secs, &mut smtp.data_timeout)?;
    seconds(raw.relay_timeout_secs, &mut smtp.relay_timeout)?;
    seconds(raw.stress_timeout_secs, &mut smtp.stress_timeout)?;
    smtp.tls = match (raw.tls_cert, raw.tls_key) {
        (Some(c), Some(k)) => Some((base.join(c.get_ref()), base.join(k.get_ref()))),
        (None, None) => None,
        (Some(c), None) => return Err(err(c.span(), "needs `smtp.tls_key` too".into())),
        (None, Some(k)) => return Err(err(k.span(), "needs `smtp.tls_cert` too".into())),
    };
    match (raw.relay, raw.maildir) {
        (Some(r), Some(_)) => {
            return Err(err(
                r.span(),
                "give either `smtp.relay` or `smtp.maildir`, not both".into(),
            ))
        }
        (Some(r), None) => {
            smtp.delivery = Delivery::Relay(check_relay(r.get_ref()).map_err(|m| err(r.span(), m))?)
        }
        (None, Some(m)) => smtp.delivery = Delivery::Maildir(base.join(m.get_ref())),
        (None, None) => {}
    }
    if let Some(t) = raw.relay_tls {
        smtp.relay_tls = parse_relay_tls(t.get_ref()).map_err(|m| err(t.span(), m))?;
    }
    smtp.relay_ca_file = raw.relay_ca_file.map(|f| base.join(f.get_ref()));
    smtp.quarantine_maildir = raw.quarantine_maildir.map(|m| base.join(m.get_ref()));
    if let Some(auth) = raw.auth {
        smtp.auth = auth_from_raw(auth, base, err)?;
    }
    if let Some(senders) = raw.senders {
        smtp.senders = Some(senders_from_raw(senders, err)?);
    }
    for raw_listener in raw.listeners.unwrap_or_default() {
        let (listener, span) = listener_from_raw(raw_listener, err)?;
        let needs_tls = listener.tls == TlsMode::Implicit || listener.require_tls;
        if needs_tls && smtp.tls.is_none() {
            return Err(err(
                span,
                "this listener needs TLS: set `smtp.tls_cert` and `smtp.tls_key`".into(),
            ));
        }
        if listener.role == Role::Submission && smtp.auth.backend.is_none() {
            return Err(err(
                span,
                "a submission listener needs `[smtp.auth]` with `passwd_file` or \
                 `dovecot_socket`"
                    .into(),
            ));
        }
        smtp.listeners.push(listener);
    }
    Ok(smtp)
}

pub fn parse_relay_tls(text: &str) -> Result<RelayTls, String> {
    match text.trim() {
        "none" => Ok(RelayTls::None),
        "opportunistic" => Ok(RelayTls::Opportunistic),
        "required" => Ok(RelayTls::Required),
        other => Err(format!(
            "`{other}` is not one of \"none\", \"opportunistic\", \"required\""
        )),
    }
}
