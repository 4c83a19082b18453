//! From `[smtp]` configuration to what SMTP sessions use: the settings (with the STARTTLS
//! certificate loaded) and where mail goes. Built with every snapshot, so a reload picks up
//! a renewed certificate or a new relay; a broken one refuses the start (or the reload).

use super::{HopConfig, SmtpSettings};
use crate::config::{Config, Delivery, ListenerConfig};
use crate::identity::Backend;
use crate::relay::RelayConfig;
use std::net::SocketAddr;
use std::sync::Arc;

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
