//! The `[arc.seal]` section: whether and how this hop adds an ARC set (RFC 8617) to the mail
//! it passes on.
//!
//! Only names and paths are checked here; the key is read when the sealer is built
//! (`sign::seal::Sealer::new`, at start and on reload), which also refuses anything but an
//! RSA key of 2048 bits or more.

use super::error::ConfigError;
use super::raw::RawArcSeal;
use super::signing::{check_domain, check_selector, field_names};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Header fields the ARC-Message-Signature signs by default: the DKIM signer's list plus
/// `DKIM-Signature`, so the next hop can tell the signatures it sees from the ones we saw.
/// Trace fields (Received, Return-Path) are left out: the MTA adds its own around ours.
pub const DEFAULT_ARC_SIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Post",
    "DKIM-Signature",
];

/// Fields the AMS must not or cannot sign: RFC 8617 §4.1.2 forbids ARC-Seal; the others are
/// added or changed by the MTA around our fields, so a verifier would not see what we signed.
const UNSIGNABLE: &[&str] = &["ARC-Seal", "Received", "Return-Path"];

/// Which mail gets an ARC set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SealMode {
    /// None (the default).
    #[default]
    Off,
    /// Every inbound message we verify and pass on (accepted or quarantined): the forwarder
    /// and mailing-list case.
    Verified,
    /// Outbound mail that we also DKIM-sign.
    Outbound,
}

/// The validated `[arc.seal]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcSealConfig {
    pub mode: SealMode,
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
    /// Fields the ARC-Message-Signature signs (each occurrence in the message).
    pub headers: Vec<String>,
    /// Where it was configured (`file:line`), for key errors.
    pub origin: Option<String>,
}

impl Default for ArcSealConfig {
    fn default() -> Self {
        ArcSealConfig {
            mode: SealMode::Off,
            domain: String::new(),
            selector: String::new(),
            key_file: PathBuf::new(),
            headers: DEFAULT_ARC_SIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            origin: None,
        }
    }
}

/// Validates the raw section. `err` builds an error pointing at a span of the file.
pub(super) fn from_raw(
    raw: RawArcSeal,
    base: &Path,
    file: &Path,
    text: &str,
    err: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<ArcSealConfig, ConfigError> {
    let mut c = ArcSealConfig::default();
    let Some(seal) = raw.seal else {
        if raw.domain.is_some() || raw.selector.is_some() || raw.key_file.is_some() {
            // A key without `seal =` would silently do nothing: say so.
            let span = [&raw.domain, &raw.selector, &raw.key_file]
                .into_iter()
                .flatten()
                .map(|s| s.span())
                .next()
                .unwrap_or(0..0);
            return Err(err(
                span,
                "[arc.seal] needs seal = \"verified\", \"outbound\" or \"off\"".into(),
            ));
        }
        return Ok(c);
    };
    c.mode = match seal.get_ref().as_str() {
        "off" => SealMode::Off,
        "verified" => SealMode::Verified,
        "outbound" => SealMode::Outbound,
        _ => {
            return Err(err(
                seal.span(),
                "must be \"verified\", \"outbound\" or \"off\"".into(),
            ))
        }
    };
    if let Some(headers) = raw.headers {
        let span = headers.span();
        c.headers = field_names(headers.into_inner(), err)?;
        if !c.headers.iter().any(|h| h.eq_ignore_ascii_case("From")) {
            return Err(err(span, "must include From (RFC 6376 5.4)".into()));
        }
        if let Some(bad) = c
            .headers
            .iter()
            .find(|h| UNSIGNABLE.iter().any(|u| u.eq_ignore_ascii_case(h)))
        {
            return Err(err(
                span,
                format!("{bad} cannot be signed by the ARC-Message-Signature (RFC 8617 4.1.2; trace fields change around ours)"),
            ));
        }
    }
    if c.mode == SealMode::Off {
        return Ok(c);
    }
    let missing = |key: &str| err(seal.span(), format!("sealing needs {key} in [arc.seal]"));
    let domain = raw.domain.ok_or_else(|| missing("domain"))?;
    c.domain = check_domain(domain.get_ref()).map_err(|m| err(domain.span(), m))?;
    let selector = raw.selector.ok_or_else(|| missing("selector"))?;
    c.selector = check_selector(selector.get_ref()).map_err(|m| err(selector.span(), m))?;
    let key_file = raw.key_file.ok_or_else(|| missing("key_file"))?;
    if key_file.get_ref().trim().is_empty() {
        return Err(err(key_file.span(), "names no key file".into()));
    }
    c.key_file = base.join(key_file.get_ref());
    let line = super::error::line_of(text, key_file.span().start);
    c.origin = Some(format!("{}:{line}", file.display()));
    Ok(c)
}
