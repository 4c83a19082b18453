//! From `[smtp]` configuration to what SMTP sessions use: the settings (with the STARTTLS
//! certificate loaded) and where mail goes. Built with every snapshot, so a reload picks up
//! a renewed certificate or a new relay; a broken one refuses the start (or the reload).

use crate::config::{Config, Delivery, ListenerConfig};
use crate::identity::Backend;
use crate::relay::RelayConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the SMTP listener, fixed for a session's life (built from `[smtp]`).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The name in the greeting, EHLO reply and `Received:` fields.
    pub hostname: String,
    /// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4 asks for at least 512).
    pub max_line_length: usize,
    /// Longest line inside DATA, CRLF included (RFC 5322 allows 1000; real mail is sloppier).
    pub max_data_line_length: usize,
    /// Recipients per message; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Largest message accepted (advertised in SIZE); over it 552 5.3.4.
    pub max_message_size: usize,
    /// How long to wait for the next command (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout: Duration,
    /// How long to wait for the next chunk of DATA (RFC 5321 §4.5.3.2.5: 3 minutes).
    pub data_timeout: Duration,
    /// Bad commands before the session is ended with 421.
    pub max_errors: usize,
    /// Under stress, the command (and greeting) timeout, and the time each DATA line may take.
    pub stress_timeout: Duration,
    /// NOOP, RSET, HELP and VRFY in a row (no MAIL between) before 421; 5 under stress.
    pub junk_command_limit: usize,
    /// Domains we accept mail for from untrusted clients; anything else is relaying (550 5.7.1).
    pub local_domains: Vec<String>,
    /// Offered as STARTTLS when set.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Quarantined mail is delivered into this Maildir instead of the next hop; without one it
    /// goes to the next hop with an `X-Authmilter-Quarantine:` field naming the reasons.
    pub quarantine: Option<PathBuf>,
    /// The listener this session came through: its role and TLS rules.
    pub listener: ListenerConfig,
    /// Where AUTH checks passwords (`None`: AUTH not offered).
    pub credentials: Option<Arc<Backend>>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            hostname: "localhost".into(),
            max_line_length: 4096,
            max_data_line_length: 65536,
            max_recipients: 100,
            max_message_size: 50 * 1024 * 1024,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_errors: 10,
            stress_timeout: Duration::from_secs(10),
            junk_command_limit: 100,
            local_domains: Vec::new(),
            tls: None,
            quarantine: None,
            listener: ListenerConfig::mx(SocketAddr::from(([127, 0, 0, 1], 0))),
            credentials: None,
        }
    }
}

/// Where the next hop is, from configuration.
#[derive(Debug, Clone)]
pub enum HopConfig {
    Relay(RelayConfig),
    Maildir(PathBuf),
}

/// The SMTP front end as a snapshot carries it.
#[derive(Debug)]
pub struct SmtpService {
    pub settings: Arc<SmtpSettings>,
    pub hop: HopConfig,
}

impl SmtpService {
    /// The settings for a session that came through `listener`.
    pub fn settings_for(&self, listener: &ListenerConfig) -> Arc<SmtpSettings> {
        let mut settings = (*self.settings).clone();
        settings.listener = listener.clone();
        Arc::new(settings)
    }
}

/// `None` when no SMTP listener is configured.
pub fn service(config: &Config) -> Result<Option<SmtpService>, String> {
    let smtp = &config.smtp;
    if !smtp.enabled() {
        return Ok(None);
    }
    let hostname = smtp
        .hostname
        .clone()
        .unwrap_or_else(|| config.authserv_id.clone());
    let tls = match &smtp.tls {
        Some((cert, key)) => Some(super::tls::server_config(cert, key)?),
        None => None,
    };
    let settings = SmtpSettings {
        hostname: hostname.clone(),
        max_line_length: smtp.max_line_length,
        max_data_line_length: smtp.max_data_line_length,
        max_recipients: smtp.max_recipients,
        max_message_size: smtp
            .max_message_size
            .unwrap_or(config.limits.max_message_size),
        command_timeout: smtp.timeout,
        data_timeout: smtp.data_timeout,
        max_errors: smtp.max_errors,
        stress_timeout: smtp.stress_timeout.min(smtp.timeout),
        junk_command_limit: smtp.junk_command_limit,
        local_domains: smtp.local_domains.clone(),
        tls,
        quarantine: smtp.quarantine_maildir.clone(),
        listener: ListenerConfig::mx(SocketAddr::from(([127, 0, 0, 1], 0))),
        credentials: Backend::from_config(&smtp.auth)?.map(Arc::new),
    };
    let hop = match &smtp.delivery {
        Delivery::Maildir(dir) => HopConfig::Maildir(dir.clone()),
        Delivery::Relay(addr) => {
            let relay = RelayConfig {
                starttls: smtp.relay_tls,
                ca_file: smtp.relay_ca_file.clone(),
                command_timeout: smtp.relay_timeout,
                ..RelayConfig::new(addr.clone(), hostname)
            };
            relay
                .validate()
                .map_err(|e| format!("smtp relay {addr}: {e}"))?;
            HopConfig::Relay(relay)
        }
    };
    Ok(Some(SmtpService {
        settings: Arc::new(settings),
        hop,
    }))
}
