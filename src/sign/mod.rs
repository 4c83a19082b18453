//! DKIM signing of outbound mail (RFC 6376, RFC 8463): keys, the rules saying who is signed
//! with which key, key generation and the DNS records that publish the keys.
//!
//! [`Signer`] is built once from the `[signing]` configuration (reading every key file, so a
//! bad key stops the start) and shared by every session. For each message the transport asks
//! [`Signer::authorise`] (a pure decision) and then [`Signer::sign_with`], or both at once with
//! [`Signer::sign`]; either way it gets `DKIM-Signature` field values to insert at the top.
//!
//! mail-auth builds the signatures, with our ring keys plugged in ([`key::PrivateKey`]). Its
//! 0.13.3 relaxed body canonicalization mishandles trailing whitespace-only lines (DESIGN.md,
//! item 1), so relaxed-body signatures are computed over a copy without them: the relaxed
//! canonical form of both is the same, so `bh=` comes out as RFC 6376 §3.4.4 defines it.

pub mod der;
pub mod dns_check;
pub mod key;
pub mod keygen;
pub mod record;
pub mod rules;
pub mod seal;

pub use key::{DomainKey, KeyAlgorithm, KeyError, KeyErrorKind, KeyFormat, PrivateKey};
pub use rules::{authorise, Authorisation};

use crate::auth::trim_trailing_blank_lines;
use crate::config::{identity_in_domain, IdentityMode, OnUnauthorised, SigningConfig};
use key::KeyRef;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Why a message was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Not a failure: the From domain has no key.
    #[error("no signing key for {domain}")]
    NotOurDomain { domain: String },
    /// The client's fault: the user may not send as this domain.
    #[error("user {user} may not sign for {domain}")]
    Unauthorised { user: String, domain: String },
    /// The client's fault: RFC 6376 §5.4 requires signing From, and there is none.
    #[error("the message has no From field")]
    NoFrom,
    /// A bug or a broken key: ring refused to sign.
    #[error("signing failed: {0}")]
    Crypto(String),
}

/// Signs outbound mail as the `[signing]` configuration says. `Send + Sync`; build it once per
/// configuration (it holds the parsed keys) and share it.
#[derive(Debug)]
pub struct Signer {
    keys: Vec<DomainKey>,
    headers: Vec<String>,
    oversign: Vec<String>,
    header_canonicalization: Canonicalization,
    body_canonicalization: Canonicalization,
    expire_secs: Option<u64>,
    identity: IdentityMode,
    users: Option<BTreeMap<String, Vec<String>>>,
    on_unauthorised: OnUnauthorised,
}

impl Signer {
    /// Reads every configured key file. The first bad one is the error: its message names the
    /// file and the configuration line (or `--sign` flag) that named it.
    pub fn new(config: &SigningConfig) -> Result<Signer, KeyError> {
        let mut keys = Vec::with_capacity(config.keys.len());
        for spec in &config.keys {
            let key = PrivateKey::load(&spec.key_file).map_err(|mut e| {
                e.origin = spec.origin.clone();
                e
            })?;
            tracing::info!(
                domain = %spec.domain,
                selector = %spec.selector,
                algorithm = %key.algorithm().signature_a(),
                bits = key.bits(),
                "DKIM signing key loaded"
            );
            keys.push(DomainKey {
                domain: spec.domain.clone(),
                selector: spec.selector.clone(),
                identity: spec.identity.clone(),
                key,
            });
        }
        Ok(Signer::with_keys(config, keys))
    }

    /// A signer with keys already in memory (tests, the HTTP API); `config.keys` is ignored.
    pub fn with_keys(config: &SigningConfig, keys: Vec<DomainKey>) -> Signer {
        Signer {
            keys,
            headers: config.headers.clone(),
            oversign: config.oversign.clone(),
            header_canonicalization: config.header_canonicalization,
            body_canonicalization: config.body_canonicalization,
            expire_secs: config.expire.map(|d| d.as_secs().max(1)),
            identity: config.identity,
            users: config.users.clone(),
            on_unauthorised: config.on_unauthorised,
        }
    }

    /// The loaded keys, in configuration order.
    pub fn keys(&self) -> &[DomainKey] {
        &self.keys
    }

    /// Whether any key is configured (no keys: nothing is ever signed).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// What the configuration says to do with [`Authorisation::Unauthorised`].
    pub fn on_unauthorised(&self) -> OnUnauthorised {
        self.on_unauthorised
    }

    /// The pure decision: see [`rules::authorise`].
    pub fn authorise(&self, from_domain: &str, auth_user: Option<&str>) -> Authorisation<'_> {
        authorise(&self.keys, self.users.as_ref(), from_domain, auth_user)
    }

    /// Authorises and signs. Returns the `DKIM-Signature` field values, one per key, each
    /// without the field name, folded with CRLF + tab; the field must be written as
    /// `DKIM-Signature: ` (one space) followed by the value, which is what was signed.
    pub fn sign(
        &self,
        from_domain: &str,
        auth_user: Option<&str>,
        message: &[u8],
    ) -> Result<Vec<String>, SignError> {
        match self.authorise(from_domain, auth_user) {
            Authorisation::Sign(keys) => self.sign_with(&keys, message),
            Authorisation::NotOurDomain => Err(SignError::NotOurDomain {
                domain: rules::normalize_domain(from_domain),
            }),
            Authorisation::Unauthorised { user, domain } => {
                Err(SignError::Unauthorised { user, domain })
            }
        }
    }

    /// Signs `message` (CRLF line endings, header and body) with the given keys, without asking
    /// who may sign: the caller decided. Field values as [`Signer::sign`] returns them.
    pub fn sign_with(&self, keys: &[&DomainKey], message: &[u8]) -> Result<Vec<String>, SignError> {
        let parts = MessageParts::new(message);
        if !parts.names.iter().any(|n| n.eq_ignore_ascii_case(b"From")) {
            return Err(SignError::NoFrom);
        }
        let h = rules::header_list(&parts.names, &self.headers, &self.oversign);
        let input = match self.body_canonicalization {
            Canonicalization::Relaxed => parts.without_trailing_blank_lines(),
            Canonicalization::Simple => Cow::Borrowed(message),
        };
        let from = match self.identity {
            IdentityMode::From => from_address(message),
            IdentityMode::None => None,
        };
        let mut values = Vec::with_capacity(keys.len());
        for k in keys {
            let mut signer = DkimSigner::from_key(KeyRef(&k.key))
                .domain(k.domain.as_str())
                .selector(k.selector.as_str())
                .headers(h.iter().map(String::as_str))
                .header_canonicalization(self.header_canonicalization)
                .body_canonicalization(self.body_canonicalization);
            if let Some(secs) = self.expire_secs {
                signer = signer.expiration(secs);
            }
            let identity = k
                .identity
                .as_deref()
                .or_else(|| from.as_deref().filter(|f| identity_in_domain(f, &k.domain)));
            if let Some(i) = identity {
                signer = signer.agent_user_identifier(i);
            }
            let signature = signer
                .sign(&input)
                .map_err(|e| SignError::Crypto(e.to_string()))?;
            values.push(field_value(&signature.to_header()));
        }
        Ok(values)
    }
}

/// `DKIM-Signature: v=1; ...\r\n` -> `v=1; ...`.
///
/// mail-auth 0.13.3 folds the line after the `b=` value when the value ends at the wrap
/// column, leaving `...==\r\n\t;`. RFC 6376 §3.7 deletes the b= value "including all
/// surrounding whitespace", so that is legal, but dkimpy keeps the white space after the value
/// and then fails the signature. The value was signed as `b=;`, so the fold can go: the
/// trailing `;` is put back on the last line.
fn field_value(header: &str) -> String {
    let value = header.split_once(':').map_or(header, |(_, v)| v);
    let value = value.strip_prefix(' ').unwrap_or(value);
    let value = value.strip_suffix("\r\n").unwrap_or(value);
    match value.strip_suffix(';') {
        Some(rest) => format!("{};", rest.trim_end_matches([' ', '\t', '\r', '\n'])),
        None => value.to_string(),
    }
}

/// The header field names and the body of a message, split the way mail-auth splits them.
struct MessageParts<'m> {
    message: &'m [u8],
    names: Vec<&'m [u8]>,
    body_offset: usize,
}

impl<'m> MessageParts<'m> {
    fn new(message: &'m [u8]) -> Self {
        let (fields, body_offset) = header_fields(message);
        MessageParts {
            message,
            names: fields.into_iter().map(|(name, _)| name).collect(),
            body_offset,
        }
    }

    /// DESIGN.md item 1: the same message without trailing whitespace-only body lines, so
    /// mail-auth 0.13.3 computes the relaxed body hash RFC 6376 §3.4.4 defines.
    fn without_trailing_blank_lines(&self) -> Cow<'m, [u8]> {
        let (head, body) = self.message.split_at(self.body_offset);
        let trimmed = trim_trailing_blank_lines(body);
        if trimmed.len() == body.len() {
            Cow::Borrowed(self.message)
        } else {
            Cow::Owned([head, trimmed].concat())
        }
    }
}

/// The address in the message's single From field (`Name <a@b>` or a bare `a@b`); `None` when
/// there is no From field, several of them, or several addresses.
pub fn from_address(message: &[u8]) -> Option<String> {
    let mut values = header_fields(message)
        .0
        .into_iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"From"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let unfolded: String = value.replace(['\r', '\n'], "");
    let addr = match (unfolded.rfind('<'), unfolded.rfind('>')) {
        (Some(open), Some(close)) if open < close => unfolded[open + 1..close].trim().to_string(),
        _ => strip_comments(&unfolded).trim().to_string(),
    };
    let valid = addr.contains('@') && !addr.contains([',', ' ', '\t', ';']);
    valid.then_some(addr)
}

/// The domain of [`from_address`], lower-cased.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let addr = from_address(message)?;
    let (_, domain) = addr.rsplit_once('@')?;
    (!domain.is_empty()).then(|| rules::normalize_domain(domain))
}

/// A header field as `(name, value)`, both slices of the message.
type Field<'m> = (&'m [u8], &'m [u8]);

/// The header fields `(name, value)` and where the body starts. Like mail-auth's signer, the
/// header ends at the first line that is not a field (normally the empty line) and the body
/// starts after it; without such a line the body is empty.
fn header_fields(message: &[u8]) -> (Vec<Field<'_>>, usize) {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        pos = end;
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some((_, value)) = fields.last_mut() {
                // A continuation line: extend the value (a slice of `message`) to cover it.
                let start = value.as_ptr() as usize - message.as_ptr() as usize;
                *value = &message[start..end];
                continue;
            }
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let start = end - line.len();
                fields.push((&line[..colon], &message[start + colon + 1..end]));
            }
            None => break,
        }
    }
    (fields, pos.min(message.len()))
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
