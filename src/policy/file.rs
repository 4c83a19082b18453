//! Policy files: TOML, every key optional, unknown keys refused, errors naming file and line.

use super::verdict::Action;
use crate::config::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The shipped default policy, compiled in.
pub const DEFAULT_POLICY: &str = include_str!("../../policies/default.toml");

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Rules,
    /// Domains whose passing ARC seal overrides a DMARC failure, lower case.
    pub trusted_sealers: Vec<String>,
    /// Overrides by RFC5322.From domain (lower case).
    pub domains: BTreeMap<String, Overrides>,
}

/// The actions a policy chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub dmarc_reject: Action,
    pub dmarc_quarantine: Action,
    pub spf_fail_without_dmarc: Action,
    pub dns_temperror: Action,
    pub multiple_from: Action,
    pub missing_from: Action,
    pub malformed: Action,
    pub oversized: Action,
    pub spf_fail_at_mail: Action,
}

/// Per-domain replacements for some rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub dmarc_reject: Option<Action>,
    pub dmarc_quarantine: Option<Action>,
    pub spf_fail_without_dmarc: Option<Action>,
    pub dns_temperror: Option<Action>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    dmarc_reject: Option<Action>,
    dmarc_quarantine: Option<Action>,
    spf_fail_without_dmarc: Option<Action>,
    dns_temperror: Option<Action>,
    multiple_from: Option<Action>,
    missing_from: Option<Action>,
    malformed: Option<Action>,
    oversized: Option<Action>,
    spf_fail_at_mail: Option<Action>,
    arc: Option<RawArc>,
    #[serde(default)]
    domains: BTreeMap<String, Overrides>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArc {
    #[serde(default)]
    trusted_sealers: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            dmarc_reject: Action::Reject,
            dmarc_quarantine: Action::Quarantine,
            spf_fail_without_dmarc: Action::Accept,
            dns_temperror: Action::Tempfail,
            multiple_from: Action::Reject,
            missing_from: Action::Accept,
            malformed: Action::Reject,
            oversized: Action::Tempfail,
            spf_fail_at_mail: Action::Accept,
        }
    }
}

impl Default for Policy {
    /// The compiled-in `policies/default.toml`.
    fn default() -> Self {
        Policy::parse(DEFAULT_POLICY, Path::new("policies/default.toml"))
            .expect("the built-in policy is valid (checked by a test)")
    }
}

impl Policy {
    /// Parses policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Policy, ConfigError> {
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
        let d = Rules::default();
        let rules = Rules {
            dmarc_reject: raw.dmarc_reject.unwrap_or(d.dmarc_reject),
            dmarc_quarantine: raw.dmarc_quarantine.unwrap_or(d.dmarc_quarantine),
            spf_fail_without_dmarc: raw
                .spf_fail_without_dmarc
                .unwrap_or(d.spf_fail_without_dmarc),
            dns_temperror: raw.dns_temperror.unwrap_or(d.dns_temperror),
            multiple_from: raw.multiple_from.unwrap_or(d.multiple_from),
            missing_from: raw.missing_from.unwrap_or(d.missing_from),
            malformed: raw.malformed.unwrap_or(d.malformed),
            oversized: raw.oversized.unwrap_or(d.oversized),
            spf_fail_at_mail: raw.spf_fail_at_mail.unwrap_or(d.spf_fail_at_mail),
        };
        if rules.spf_fail_at_mail == Action::Quarantine {
            return Err(ConfigError::file(
                file,
                "key `spf_fail_at_mail`: a sender cannot be quarantined before its message arrives; use accept, reject or tempfail".into(),
            ));
        }
        if rules.oversized == Action::Quarantine {
            return Err(ConfigError::file(
                file,
                "key `oversized`: a message too large to verify cannot be quarantined; use accept, reject or tempfail".into(),
            ));
        }
        Ok(Policy {
            rules,
            trusted_sealers: raw
                .arc
                .unwrap_or_default()
                .trusted_sealers
                .into_iter()
                .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            domains: raw
                .domains
                .into_iter()
                .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v))
                .collect(),
        })
    }

    /// Loads `default.toml` from a policy directory.
    pub fn load_dir(dir: &Path) -> Result<Policy, ConfigError> {
        let file = dir.join("default.toml");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ConfigError::file(&file, format!("cannot read policy file: {e}")))?;
        Policy::parse(&text, &file)
    }

    /// The rules for a From domain: the most specific `[domains]` entry (the domain or a
    /// parent) over the general rules.
    pub fn rules_for(&self, domain: &str) -> Rules {
        let mut rules = self.rules;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = domain.as_str();
        let overrides = loop {
            if let Some(o) = self.domains.get(candidate) {
                break Some(o);
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent,
                _ => break None,
            }
        };
        if let Some(o) = overrides {
            rules.dmarc_reject = o.dmarc_reject.unwrap_or(rules.dmarc_reject);
            rules.dmarc_quarantine = o.dmarc_quarantine.unwrap_or(rules.dmarc_quarantine);
            rules.spf_fail_without_dmarc = o
                .spf_fail_without_dmarc
                .unwrap_or(rules.spf_fail_without_dmarc);
            rules.dns_temperror = o.dns_temperror.unwrap_or(rules.dns_temperror);
        }
        rules
    }
}
