//! The configuration file as written: every key optional, unknown keys refused.
//! Values that need range checks are `Spanned` so errors can point at their line.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub authserv_id: Option<Spanned<String>>,
    pub trusted_networks: Option<Vec<Spanned<String>>>,
    pub policy_dir: Option<Spanned<String>>,
    pub dns: Option<RawDns>,
    pub limits: Option<RawLimits>,
    pub headers: Option<RawHeaders>,
    pub checks: Option<RawChecks>,
    pub milter: Option<RawMilter>,
    pub server: Option<RawServer>,
    pub signing: Option<RawSigning>,
    pub http: Option<RawHttp>,
    pub store: Option<RawStore>,
    pub smtp: Option<RawSmtp>,
    pub arc: Option<RawArc>,
    pub reports: Option<RawReports>,
    pub bimi: Option<RawBimi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReports {
    pub aggregate: Option<bool>,
    pub failure: Option<bool>,
    pub org_name: Option<Spanned<String>>,
    pub email: Option<Spanned<String>>,
    pub extra_contact_info: Option<String>,
    pub relay: Option<Spanned<String>>,
    pub outbox: Option<Spanned<String>>,
    pub relay_tls: Option<Spanned<String>>,
    pub relay_ca_file: Option<Spanned<String>>,
    pub check_interval_secs: Option<Spanned<u64>>,
    pub max_attempts: Option<Spanned<u32>>,
    pub retry_secs: Option<Spanned<u64>>,
    pub failure_per_hour: Option<Spanned<u32>>,
    pub redact_local_parts: Option<bool>,
    pub rua_addresses: Option<Vec<Spanned<String>>>,
    pub owned_domains: Option<Vec<Spanned<String>>>,
    pub foreign: Option<Spanned<String>>,
    pub deliver_imported: Option<bool>,
    pub max_import_size: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    pub keys: Option<Vec<RawSigningKey>>,
    pub headers: Option<Spanned<Vec<Spanned<String>>>>,
    pub oversign: Option<Vec<Spanned<String>>>,
    pub canonicalization: Option<Spanned<String>>,
    pub expire_secs: Option<Spanned<u64>>,
    pub identity: Option<Spanned<String>>,
    pub users: Option<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
    pub on_unauthorised: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArc {
    pub seal: Option<RawArcSeal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArcSeal {
    pub seal: Option<Spanned<String>>,
    pub domain: Option<Spanned<String>>,
    pub selector: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub headers: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigningKey {
    pub domain: Spanned<String>,
    pub selector: Spanned<String>,
    pub key_file: Spanned<String>,
    pub identity: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMilter {
    pub listen: Option<Spanned<String>>,
    pub socket_mode: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<usize>>,
    pub timeout_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub nameservers: Option<Vec<Spanned<String>>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub attempts: Option<Spanned<usize>>,
    pub cache_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_message_size: Option<Spanned<usize>>,
    pub max_dkim_signatures: Option<Spanned<usize>>,
    pub max_recipients: Option<Spanned<usize>>,
    pub max_header_fields: Option<Spanned<usize>>,
    pub max_inflight_bytes: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    pub received_spf: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChecks {
    pub iprev: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub request_timeout_secs: Option<Spanned<u64>>,
    pub query_timeout_ms: Option<Spanned<u64>>,
    pub allowed_hosts: Option<Vec<Spanned<String>>>,
    pub tokens: Option<Vec<RawToken>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub name: Spanned<String>,
    pub sha256: Spanned<String>,
    pub scopes: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub path: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub on_unavailable: Option<Spanned<String>>,
    pub retention_days: Option<u32>,
    pub queue_size: Option<Spanned<usize>>,
    pub spool_path: Option<Spanned<String>>,
    pub spool_max_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub listen: Option<Spanned<String>>,
    pub hostname: Option<Spanned<String>>,
    pub local_domains: Option<Vec<Spanned<String>>>,
    pub max_connections: Option<Spanned<usize>>,
    pub max_connections_per_ip: Option<Spanned<usize>>,
    pub max_connections_per_network: Option<Spanned<usize>>,
    pub network_prefix_v4: Option<Spanned<u8>>,
    pub network_prefix_v6: Option<Spanned<u8>>,
    pub stress_threshold_percent: Option<Spanned<u8>>,
    pub stress_timeout_secs: Option<Spanned<u64>>,
    pub junk_command_limit: Option<Spanned<usize>>,
    pub max_recipients: Option<Spanned<usize>>,
    pub max_message_size: Option<Spanned<usize>>,
    pub max_line_length: Option<Spanned<usize>>,
    pub max_data_line_length: Option<Spanned<usize>>,
    pub max_errors: Option<Spanned<usize>>,
    pub timeout_secs: Option<Spanned<u64>>,
    pub data_timeout_secs: Option<Spanned<u64>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub relay: Option<Spanned<String>>,
    pub relay_tls: Option<Spanned<String>>,
    pub relay_ca_file: Option<Spanned<String>>,
    pub relay_timeout_secs: Option<Spanned<u64>>,
    pub maildir: Option<Spanned<String>>,
    pub quarantine_maildir: Option<Spanned<String>>,
    pub listeners: Option<Vec<RawListener>>,
    pub auth: Option<RawAuth>,
    pub senders: Option<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub address: Spanned<String>,
    pub role: Option<Spanned<String>>,
    pub tls: Option<Spanned<String>>,
    pub require_tls: Option<bool>,
    pub plaintext_auth: Option<Spanned<bool>>,
    pub trusted_without_auth: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub passwd_file: Option<Spanned<String>>,
    pub dovecot_socket: Option<Spanned<String>>,
    pub plaintext_schemes: Option<bool>,
    pub max_failures_per_ip: Option<Spanned<u32>>,
    pub max_failures_per_user: Option<Spanned<u32>>,
    pub failure_window_secs: Option<Spanned<u64>>,
    pub block_secs: Option<Spanned<u64>>,
    pub failure_delay_ms: Option<u64>,
    pub max_messages_per_hour: Option<Spanned<u32>>,
    pub max_recipients_per_hour: Option<Spanned<u32>>,
    pub failure_prefix_v4: Option<Spanned<u8>>,
    pub failure_prefix_v6: Option<Spanned<u8>>,
    pub known_network_days: Option<u32>,
    pub tracked_entries: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBimi {
    pub enabled: Option<bool>,
    pub mark_roots_file: Option<Spanned<String>>,
    pub fetch_roots_file: Option<Spanned<String>>,
    pub self_asserted: Option<bool>,
    pub max_wait_ms: Option<Spanned<u64>>,
    pub fetch_timeout_ms: Option<Spanned<u64>>,
    pub max_redirects: Option<Spanned<usize>>,
    pub max_evidence_size: Option<Spanned<usize>>,
    pub max_indicator_size: Option<Spanned<usize>>,
    pub cache_ttl_secs: Option<Spanned<u64>>,
    pub cache_entries: Option<Spanned<usize>>,
    pub domains: Option<Vec<Spanned<String>>>,
    pub networks: Option<Vec<Spanned<String>>>,
    pub allow_private_destinations: Option<bool>,
}
