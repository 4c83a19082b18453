//! Submission in the `[smtp]` section: `[[smtp.listeners]]` with their roles, `[smtp.auth]`
//! (where credentials are checked, and the abuse limits) and `[smtp.senders]` (who may send
//! as whom). The legacy `smtp.listen` stays an `mx` listener.

use super::error::ConfigError;
use super::raw::{RawAuth, RawListener};
use super::service::{normalize_domain, ErrAt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_MAX_AUTH_FAILURES_PER_IP: u32 = 10;
pub const DEFAULT_MAX_AUTH_FAILURES_PER_USER: u32 = 20;
pub const DEFAULT_AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(900);
pub const DEFAULT_AUTH_BLOCK: Duration = Duration::from_secs(900);
pub const DEFAULT_AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_MESSAGES_PER_HOUR: u32 = 500;
pub const DEFAULT_MAX_RECIPIENTS_PER_HOUR: u32 = 2000;

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Mail from the world to our domains: verified (as before roles existed).
    #[default]
    Mx,
    /// Mail from our users (RFC 6409): AUTH required, not verified, signed, relayed anywhere.
    Submission,
}

/// How TLS starts on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text first, STARTTLS offered when a certificate is configured (RFC 3207).
    #[default]
    StartTls,
    /// TLS from the first byte (RFC 8314 §3.3, port 465).
    Implicit,
}

/// One SMTP listener as configured (the address is read at start only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub role: Role,
    pub tls: TlsMode,
    /// AUTH and MAIL only after TLS (default: on for submission, off for mx).
    pub require_tls: bool,
    /// AUTH offered without TLS: only for a listener on a loopback address.
    pub plaintext_auth: bool,
    /// Clients in `trusted_networks` may submit without AUTH (default true).
    pub trusted_without_auth: bool,
}

impl ListenerConfig {
    /// The legacy `smtp.listen`: what the front end did before roles.
    pub fn mx(address: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            address,
            role: Role::Mx,
            tls: TlsMode::StartTls,
            require_tls: false,
            plaintext_auth: false,
            trusted_without_auth: true,
        }
    }

    /// A submission listener with the defaults.
    pub fn submission(address: SocketAddr, tls: TlsMode) -> ListenerConfig {
        ListenerConfig {
            address,
            role: Role::Submission,
            tls,
            require_tls: true,
            plaintext_auth: false,
            trusted_without_auth: true,
        }
    }
}

/// Where passwords are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthBackend {
    /// A Dovecot-compatible passwd-file (`user:{SCHEME}hash`), re-read on reload.
    PasswdFile(PathBuf),
    /// Dovecot's auth-client socket.
    Dovecot(PathBuf),
}

/// `[smtp.auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub backend: Option<AuthBackend>,
    /// `{PLAIN}`/`{CLEARTEXT}` entries in the passwd file are honoured (off: refused).
    pub plaintext_schemes: bool,
    pub max_failures_per_ip: u32,
    pub max_failures_per_user: u32,
    pub failure_window: Duration,
    pub block: Duration,
    pub failure_delay: Duration,
    pub max_messages_per_hour: u32,
    pub max_recipients_per_hour: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            backend: None,
            plaintext_schemes: false,
            max_failures_per_ip: DEFAULT_MAX_AUTH_FAILURES_PER_IP,
            max_failures_per_user: DEFAULT_MAX_AUTH_FAILURES_PER_USER,
            failure_window: DEFAULT_AUTH_FAILURE_WINDOW,
            block: DEFAULT_AUTH_BLOCK,
            failure_delay: DEFAULT_AUTH_FAILURE_DELAY,
            max_messages_per_hour: DEFAULT_MAX_MESSAGES_PER_HOUR,
            max_recipients_per_hour: DEFAULT_MAX_RECIPIENTS_PER_HOUR,
        }
    }
}

pub(super) fn listener_from_raw(
    raw: RawListener,
    err: &ErrAt<'_>,
) -> Result<(ListenerConfig, std::ops::Range<usize>), ConfigError> {
    let span = raw.address.span();
    let address: SocketAddr = raw
        .address
        .get_ref()
        .trim()
        .parse()
        .map_err(|_| err(span.clone(), "must be ip:port".into()))?;
    let role = match raw.role {
        None => Role::Mx,
        Some(r) => match r.get_ref().trim() {
            "mx" => Role::Mx,
            "submission" => Role::Submission,
            _ => return Err(err(r.span(), "must be \"mx\" or \"submission\"".into())),
        },
    };
    let tls = match raw.tls {
        None => TlsMode::StartTls,
        Some(t) => match t.get_ref().trim() {
            "starttls" => TlsMode::StartTls,
            "implicit" => TlsMode::Implicit,
            _ => return Err(err(t.span(), "must be \"starttls\" or \"implicit\"".into())),
        },
    };
    let mut listener = match role {
        Role::Mx => ListenerConfig::mx(address),
        Role::Submission => ListenerConfig::submission(address, tls),
    };
    listener.tls = tls;
    if let Some(r) = raw.require_tls {
        listener.require_tls = r;
    }
    if let Some(t) = raw.trusted_without_auth {
        listener.trusted_without_auth = t;
    }
    if let Some(p) = raw.plaintext_auth {
        // Passwords in clear text only where they cannot leave the machine.
        if *p.get_ref() && !address.ip().is_loopback() {
            return Err(err(
                p.span(),
                "plain-text AUTH is allowed only on a loopback address".into(),
            ));
        }
        listener.plaintext_auth = *p.get_ref();
    }
    Ok((listener, span))
}

pub(super) fn auth_from_raw(
    raw: RawAuth,
    base: &Path,
    err: &ErrAt<'_>,
) -> Result<AuthConfig, ConfigError> {
    let mut auth = AuthConfig {
        plaintext_schemes: raw.plaintext_schemes.unwrap_or(false),
        ..AuthConfig::default()
    };
    auth.backend = match (raw.passwd_file, raw.dovecot_socket) {
        (Some(p), Some(_)) => {
            return Err(err(
                p.span(),
                "give either `passwd_file` or `dovecot_socket`, not both".into(),
            ))
        }
        (Some(p), None) => Some(AuthBackend::PasswdFile(base.join(p.get_ref()))),
        (None, Some(d)) => Some(AuthBackend::Dovecot(base.join(d.get_ref()))),
        (None, None) => None,
    };
    let positive = |v: Option<toml::Spanned<u32>>, slot: &mut u32| {
        if let Some(n) = v {
            if *n.get_ref() == 0 {
                return Err(err(n.span(), "must be at least 1".into()));
            }
            *slot = *n.get_ref();
        }
        Ok(())
    };
    positive(raw.max_failures_per_ip, &mut auth.max_failures_per_ip)?;
    positive(raw.max_failures_per_user, &mut auth.max_failures_per_user)?;
    positive(raw.max_messages_per_hour, &mut auth.max_messages_per_hour)?;
    positive(
        raw.max_recipients_per_hour,
        &mut auth.max_recipients_per_hour,
    )?;
    let seconds = |v: Option<toml::Spanned<u64>>, slot: &mut Duration| {
        if let Some(s) = v {
            if *s.get_ref() == 0 {
                return Err(err(s.span(), "must be greater than 0".into()));
            }
            *slot = Duration::from_secs(*s.get_ref());
        }
        Ok(())
    };
    seconds(raw.failure_window_secs, &mut auth.failure_window)?;
    seconds(raw.block_secs, &mut auth.block)?;
    if let Some(ms) = raw.failure_delay_ms {
        auth.failure_delay = Duration::from_millis(ms.min(30_000));
    }
    Ok(auth)
}

/// `[smtp.senders]`: login -> addresses it may use (`user@domain`, `@domain`, `*`).
pub(super) fn senders_from_raw(
    raw: BTreeMap<String, toml::Spanned<Vec<toml::Spanned<String>>>>,
    err: &ErrAt<'_>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    let mut map = BTreeMap::new();
    for (user, list) in raw {
        let mut owned = Vec::new();
        for entry in list.into_inner() {
            let text = entry.get_ref().trim().to_ascii_lowercase();
            let ok = text == "*"
                || text
                    .strip_prefix('@')
                    .is_some_and(|d| normalize_domain(d).is_some())
                || text
                    .rsplit_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && normalize_domain(d).is_some());
            if !ok {
                return Err(err(
                    entry.span(),
                    format!(
                        "`{}` is not an address, @domain or *",
                        entry.get_ref().trim()
                    ),
                ));
            }
            owned.push(text.trim_end_matches('.').to_string());
        }
        map.insert(user, owned);
    }
    Ok(map)
}
