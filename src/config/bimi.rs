//! The `[bimi]` section: Brand Indicators for Message Identification on inbound mail
//! (draft-brand-indicators-for-message-identification, draft-fetch-validation-vmc-wchuang).
//!
//! Off by default. Only paths and ranges are checked here; the root files are read when the
//! BIMI checker is built (`bimi::Bimi::new`, at start and on reload).

use super::raw::RawBimi;
use super::signing::check_domain;
use super::{parse_network, ConfigError};
use ipnet::IpNet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated `[bimi]` section. Defaults live in [`BimiConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BimiConfig {
    pub enabled: bool,
    /// PEM file of the certificate authorities mark certificates (VMC, CMC) must chain to.
    /// Without it, records with evidence (`a=`) give `bimi=skipped`.
    pub mark_roots_file: Option<PathBuf>,
    /// PEM file of the roots HTTPS servers are checked against, replacing the system's.
    pub fetch_roots_file: Option<PathBuf>,
    /// Accept records without evidence (`a=` empty): the indicator is checked, then shown.
    pub self_asserted: bool,
    /// How long the end of a message waits for BIMI (DNS, fetches, checks) before it gives
    /// `bimi=temperror`; a fetch under way goes on in the background and fills the cache.
    pub max_wait: Duration,
    /// One fetch (connect, TLS, request, whole response), redirects included.
    pub fetch_timeout: Duration,
    pub max_redirects: usize,
    /// Largest evidence document (PEM chain) accepted, in bytes.
    pub max_evidence_size: usize,
    /// Largest indicator accepted, in bytes, after decompression (SVGZ) too.
    pub max_indicator_size: usize,
    /// How long a fetched (or failed) document is kept.
    pub cache_ttl: Duration,
    /// Documents kept at most.
    pub cache_entries: usize,
    /// Only mail from these author domains (and their subdomains) is evaluated; empty: all.
    pub domains: Vec<String>,
    /// Only mail from clients in these networks is evaluated; empty: all.
    pub networks: Vec<IpNet>,
    /// Let fetches reach private, loopback and link-local addresses (tests, labs).
    pub allow_private_destinations: bool,
}

/// The draft's limit for an indicator (SVG Tiny PS): 32 KiB.
pub const DEFAULT_MAX_INDICATOR_SIZE: usize = 32 * 1024;

impl Default for BimiConfig {
    fn default() -> Self {
        BimiConfig {
            enabled: false,
            mark_roots_file: None,
            fetch_roots_file: None,
            self_asserted: false,
            max_wait: Duration::from_millis(2000),
            fetch_timeout: Duration::from_millis(5000),
            max_redirects: 3,
            max_evidence_size: 64 * 1024,
            max_indicator_size: DEFAULT_MAX_INDICATOR_SIZE,
            cache_ttl: Duration::from_secs(3600),
            cache_entries: 1000,
            domains: Vec::new(),
            networks: Vec::new(),
            allow_private_destinations: false,
        }
    }
}

impl BimiConfig {
    /// Whether mail from `domain`, sent by `ip`, is evaluated.
    pub fn applies_to(&self, domain: &str, ip: std::net::IpAddr) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let domain_ok = self.domains.is_empty()
            || self.domains.iter().any(|d| {
                domain == *d
                    || domain
                        .strip_suffix(d.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            });
        let ip = super::canonical_ip(ip);
        domain_ok && (self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&ip)))
    }
}

/// Validates the raw section. `err` builds an error pointing at a span of the file.
pub(super) fn from_raw(
    raw: RawBimi,
    base: &Path,
    err: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<BimiConfig, ConfigError> {
    let mut c = BimiConfig {
        enabled: raw.enabled.unwrap_or(false),
        self_asserted: raw.self_asserted.unwrap_or(false),
        allow_private_destinations: raw.allow_private_destinations.unwrap_or(false),
        ..BimiConfig::default()
    };
    let path = |v: toml::Spanned<String>| {
        if v.get_ref().trim().is_empty() {
            Err(err(v.span(), "names no file".into()))
        } else {
            Ok(base.join(v.get_ref()))
        }
    };
    c.mark_roots_file = raw.mark_roots_file.map(path).transpose()?;
    c.fetch_roots_file = raw.fetch_roots_file.map(path).transpose()?;
    let millis = |v: Option<toml::Spanned<u64>>, max: u64, slot: &mut Duration| {
        if let Some(v) = v {
            if !(1..=max).contains(v.get_ref()) {
                return Err(err(v.span(), format!("must be between 1 and {max}")));
            }
            *slot = Duration::from_millis(*v.get_ref());
        }
        Ok(())
    };
    millis(raw.max_wait_ms, 60_000, &mut c.max_wait)?;
    millis(raw.fetch_timeout_ms, 120_000, &mut c.fetch_timeout)?;
    let within = |v: Option<toml::Spanned<usize>>, min: usize, max: usize, slot: &mut usize| {
        if let Some(v) = v {
            if !(min..=max).contains(v.get_ref()) {
                return Err(err(v.span(), format!("must be between {min} and {max}")));
            }
            *slot = *v.get_ref();
        }
        Ok(())
    };
    within(raw.max_redirects, 0, 10, &mut c.max_redirects)?;
    within(
        raw.max_evidence_size,
        1024,
        1 << 20,
        &mut c.max_evidence_size,
    )?;
    // The indicator travels in a header field (BIMI-Indicator): keep it well under the
    // milter protocol's 64 KiB once base64-encoded.
    within(
        raw.max_indicator_size,
        1024,
        40 * 1024,
        &mut c.max_indicator_size,
    )?;
    within(raw.cache_entries, 0, 1_000_000, &mut c.cache_entries)?;
    if let Some(v) = raw.cache_ttl_secs {
        if *v.get_ref() > 7 * 86_400 {
            return Err(err(v.span(), "must be at most 604800 (a week)".into()));
        }
        c.cache_ttl = Duration::from_secs(*v.get_ref());
    }
    for d in raw.domains.unwrap_or_default() {
        c.domains
            .push(check_domain(d.get_ref()).map_err(|m| err(d.span(), m))?);
    }
    for n in raw.networks.unwrap_or_default() {
        c.networks
            .push(parse_network(n.get_ref()).map_err(|m| err(n.span(), m))?);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::time::Duration;

    #[test]
    fn bimi_is_off_by_default() {
        let c = Config::parse("", None).unwrap();
        assert!(!c.bimi.enabled);
        assert_eq!(c.bimi.max_indicator_size, 32 * 1024);
    }

    #[test]
    fn bimi_section_is_read_and_checked() {
        let c = Config::parse(
            "[bimi]\nenabled = true\nmark_roots_file = \"roots.pem\"\nmax_wait_ms = 500\n\
             domains = [\"Example.COM\"]\nnetworks = [\"192.0.2.0/24\"]\n",
            Some(std::path::Path::new("/etc/authmilter/a.toml")),
        )
        .unwrap();
        assert!(c.bimi.enabled);
        assert_eq!(
            c.bimi.mark_roots_file.as_deref(),
            Some(std::path::Path::new("/etc/authmilter/roots.pem"))
        );
        assert_eq!(c.bimi.max_wait, Duration::from_millis(500));
        assert!(c
            .bimi
            .applies_to("mail.example.com", "192.0.2.9".parse().unwrap()));
        assert!(!c
            .bimi
            .applies_to("example.org", "192.0.2.9".parse().unwrap()));
        assert!(!c
            .bimi
            .applies_to("badexample.com", "192.0.2.9".parse().unwrap()));
        assert!(!c
            .bimi
            .applies_to("example.com", "198.51.100.1".parse().unwrap()));

        let e = Config::parse("[bimi]\nmax_indicator_size = 100000\n", None).unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = Config::parse("[bimi]\nmax_wait_ms = 0\n", None).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(Config::parse("[bimi]\nenable = true\n", None).is_err());
    }
}
