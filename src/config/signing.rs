//! The `[signing]` section: which keys sign for which From domains, and how.
//!
//! Only names and paths are checked here; the key files themselves are read when the signer is
//! built (`sign::Signer::new`, at start and on reload), so a bad key refuses to start the
//! daemon with an error naming the file and the configuration line that points at it.

use super::error::ConfigError;
use super::raw::RawSigning;
use mail_auth::dkim::Canonicalization;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Header fields signed by default: RFC 6376 §5.4.1's list plus the fields that identify the
/// message and its MIME structure. Fields absent from a message are not listed in `h=` unless
/// oversigned.
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
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
    "Content-ID",
    "Content-Description",
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Message-ID",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Fields listed in `h=` once more than they occur, so a copy added in transit (a second
/// From or Subject shown to the reader) breaks the signature (RFC 6376 §8.15).
pub const DEFAULT_OVERSIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// One signing key: mail whose From domain is `domain` is signed with it as `d=domain; s=selector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Lower case, no trailing dot.
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
    /// A fixed `i=` for this key (in `domain` or a subdomain of it).
    pub identity: Option<String>,
    /// Where it was configured (`file:line`, or `--sign`), for error messages.
    pub origin: Option<String>,
}

/// What `i=` (the agent or user identifier, RFC 6376 §3.5) signatures carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityMode {
    /// No `i=`, unless the key sets one (verifiers then take `@d=`).
    #[default]
    None,
    /// The From address.
    From,
}

/// What to do when an authenticated user sends for a domain they may not sign for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnauthorised {
    /// Pass the message on unsigned (and log it).
    #[default]
    Skip,
    /// Refuse the message (5xx).
    Reject,
}

/// The validated `[signing]` section. The defaults are the embedded ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningConfig {
    pub keys: Vec<KeySpec>,
    pub headers: Vec<String>,
    pub oversign: Vec<String>,
    pub header_canonicalization: Canonicalization,
    pub body_canonicalization: Canonicalization,
    /// Signatures expire this long after signing (`x=`); none by default.
    pub expire: Option<Duration>,
    pub identity: IdentityMode,
    /// Authenticated user -> the From domains they may have signed (`*` = any). `None`: no
    /// restriction. Clients that did not authenticate (trusted networks) are not affected.
    pub users: Option<BTreeMap<String, Vec<String>>>,
    pub on_unauthorised: OnUnauthorised,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            keys: Vec::new(),
            headers: DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            oversign: DEFAULT_OVERSIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            header_canonicalization: Canonicalization::Relaxed,
            body_canonicalization: Canonicalization::Relaxed,
            expire: None,
            identity: IdentityMode::None,
            users: None,
            on_unauthorised: OnUnauthorised::Skip,
        }
    }
}

impl SigningConfig {
    /// Adds keys (from `--sign`), replacing a configured key with the same domain and selector.
    pub fn add_keys(&mut self, keys: impl IntoIterator<Item = KeySpec>) {
        for key in keys {
            self.keys
                .retain(|k| !(k.domain == key.domain && k.selector == key.selector));
            self.keys.push(key);
        }
    }
}

/// Parses the quick-start flag `--sign DOMAIN:SELECTOR:KEYFILE` (the key file may contain `:`).
pub fn parse_sign_flag(text: &str) -> Result<KeySpec, String> {
    let mut parts = text.splitn(3, ':');
    let (Some(domain), Some(selector), Some(file)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("`{text}` is not DOMAIN:SELECTOR:KEYFILE"));
    };
    if file.is_empty() {
        return Err(format!("`{text}` names no key file"));
    }
    Ok(KeySpec {
        domain: check_domain(domain)?,
        selector: check_selector(selector)?,
        key_file: PathBuf::from(file),
        identity: None,
        origin: Some(format!("--sign {text}")),
    })
}

/// A domain name as `d=` carries it: LDH labels (underscores tolerated), lower-cased.
pub fn check_domain(text: &str) -> Result<String, String> {
    let d = text.trim().strip_suffix('.').unwrap_or(text.trim());
    if d.is_empty() || d.len() > 253 || !d.split('.').all(is_label) || !d.contains('.') {
        return Err(format!("`{text}` is not a domain name"));
    }
    Ok(d.to_ascii_lowercase())
}

/// A selector (RFC 6376 §3.1): one or more dot-separated labels.
pub fn check_selector(text: &str) -> Result<String, String> {
    let s = text.trim();
    if s.is_empty() || !s.split('.').all(is_label) {
        return Err(format!(
            "`{text}` is not a selector (letters, digits, '-', '_', dots between labels)"
        ));
    }
    Ok(s.to_string())
}

fn is_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// A header field name (RFC 5322 §3.6.8: printable ASCII except ':').
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// `i=` must be in the signing domain or below it (RFC 6376 §3.5).
pub fn identity_in_domain(identity: &str, domain: &str) -> bool {
    let Some((_, id_domain)) = identity.rsplit_once('@') else {
        return false;
    };
    let id_domain = id_domain.to_ascii_lowercase();
    id_domain == domain || id_domain.ends_with(&format!(".{domain}"))
}

/// Validates the raw section. `err` builds an error pointing at a span of the file.
pub(super) fn from_raw(
    raw: RawSigning,
    base: &Path,
    file: &Path,
    text: &str,
    err: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<SigningConfig, ConfigError> {
    let mut c = SigningConfig::default();
    for k in raw.keys.unwrap_or_default() {
        let domain = check_domain(k.domain.get_ref()).map_err(|m| err(k.domain.span(), m))?;
        let selector =
            check_selector(k.selector.get_ref()).map_err(|m| err(k.selector.span(), m))?;
        if k.key_file.get_ref().trim().is_empty() {
            return Err(err(k.key_file.span(), "names no key file".into()));
        }
        if c.keys
            .iter()
            .any(|o| o.domain == domain && o.selector == selector)
        {
            return Err(err(
                k.selector.span(),
                format!("{selector}._domainkey.{domain} is configured twice"),
            ));
        }
        let identity = match k.identity {
            Some(i) if identity_in_domain(i.get_ref(), &domain) => Some(i.get_ref().clone()),
            Some(i) => {
                return Err(err(
                    i.span(),
                    format!("must be an address in {domain} or a subdomain (RFC 6376 3.5)"),
                ))
            }
            None => None,
        };
        let line = super::error::line_of(text, k.key_file.span().start);
        c.keys.push(KeySpec {
            domain,
            selector,
            key_file: base.join(k.key_file.get_ref()),
            identity,
            origin: Some(format!("{}:{line}", file.display())),
        });
    }
    if let Some(headers) = raw.headers {
        let span = headers.span();
        c.headers = field_names(headers.into_inner(), err)?;
        // RFC 6376 §5.4: the From field MUST be signed.
        if !c.headers.iter().any(|h| h.eq_ignore_ascii_case("From")) {
            return Err(err(span, "must include From (RFC 6376 5.4)".into()));
        }
    }
    if let Some(oversign) = raw.oversign {
        c.oversign = field_names(oversign, err)?;
    }
    if let Some(canon) = raw.canonicalization {
        (c.header_canonicalization, c.body_canonicalization) =
            parse_canonicalization(canon.get_ref()).ok_or_else(|| {
                err(
                    canon.span(),
                    "must be relaxed/relaxed, relaxed/simple, simple/relaxed or simple/simple"
                        .into(),
                )
            })?;
    }
    if let Some(secs) = raw.expire_secs {
        if *secs.get_ref() == 0 {
            return Err(err(
                secs.span(),
                "must be greater than 0 (omit it for no x=)".into(),
            ));
        }
        c.expire = Some(Duration::from_secs(*secs.get_ref()));
    }
    if let Some(id) = raw.identity {
        c.identity = match id.get_ref().as_str() {
            "none" => IdentityMode::None,
            "from" => IdentityMode::From,
            _ => return Err(err(id.span(), "must be \"none\" or \"from\"".into())),
        };
    }
    if let Some(users) = raw.users {
        let mut map = BTreeMap::new();
        for (user, domains) in users {
            let mut list = Vec::new();
            for d in domains.into_inner() {
                let value = if d.get_ref() == "*" {
                    "*".to_string()
                } else {
                    check_domain(d.get_ref()).map_err(|m| err(d.span(), m))?
                };
                list.push(value);
            }
            map.insert(user, list);
        }
        c.users = Some(map);
    }
    if let Some(on) = raw.on_unauthorised {
        c.on_unauthorised = match on.get_ref().as_str() {
            "skip" => OnUnauthorised::Skip,
            "reject" => OnUnauthorised::Reject,
            _ => return Err(err(on.span(), "must be \"skip\" or \"reject\"".into())),
        };
    }
    Ok(c)
}

pub(super) fn field_names(
    names: Vec<toml::Spanned<String>>,
    err: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let name = n.get_ref().trim();
        if !is_field_name(name) {
            return Err(err(
                n.span(),
                format!("`{name}` is not a header field name"),
            ));
        }
        // Listing a field twice would oversign it by accident; `oversign` says so explicitly.
        if !out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

fn parse_canonicalization(text: &str) -> Option<(Canonicalization, Canonicalization)> {
    let one = |s: &str| match s.trim() {
        "relaxed" => Some(Canonicalization::Relaxed),
        "simple" => Some(Canonicalization::Simple),
        _ => None,
    };
    // RFC 6376 §3.5: a lone algorithm names the header one; the body one is then simple.
    match text.split_once('/') {
        Some((h, b)) => Some((one(h)?, one(b)?)),
        None => Some((one(text)?, Canonicalization::Simple)),
    }
}

#[cfg(test)]
mod tests;
