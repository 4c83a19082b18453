//! DKIM key records (RFC 6376 §3.6.1) and the checks §6.1.2 makes on them before any
//! cryptography, where mail-auth 0.13.3 is silent (DESIGN.md item 8):
//!
//! - `h=` (hash algorithms): a key whose list lacks the signature's hash is ignored;
//! - `s=` (service types): a key for neither `email` nor `*` is ignored;
//! - `t=s`: the domain of `i=` must be `d=` itself, not a subdomain;
//! - a tag list that is not one (duplicate tag, a tag without `=`) is not a key record;
//! - `k=` must be the signature's key type, an RSA key has at least 1024 bits (RFC 8301) and
//!   an Ed25519 key is 32 bytes (RFC 8463).
//!
//! mail-auth parses `h=` and `s=` into flags that cannot tell "not published" from "only
//! values we do not know" (`s=chat`), so the record's text is kept beside mail-auth's parsed
//! key, in a cache of our own with the answer's expiry. Unknown tags are ignored (§3.6.1).

use super::arc::parse_tag_list;
use super::dkim_fields::auid_within;
use crate::dns::stats::STATS;
use crate::dns::{Dns, TtlCache};
use mail_auth::common::crypto::Algorithm;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::Signature;
use mail_auth::{ResolverCache, Txt};
use std::sync::Arc;
use std::time::Instant;

/// Key records by name (`selector._domainkey.domain.`), as published and as mail-auth parsed
/// them. Failures are not kept here: the resolver's record cache keeps them briefly.
pub struct KeyCache {
    records: TtlCache<Box<str>, Arc<KeyRecord>>,
}

impl KeyCache {
    pub fn new(capacity: usize) -> Self {
        KeyCache {
            records: TtlCache::new(capacity),
        }
    }
}

/// One key record: mail-auth's parsed key and the tags it does not check.
pub(super) struct KeyRecord {
    key: Arc<DomainKey>,
    expires: Instant,
    /// Why the record is not a valid tag list (RFC 6376 §3.2), if it is not.
    syntax: Option<String>,
    /// `h=`, `s=`, `k=` and `t=` as published.
    h: Option<String>,
    s: Option<String>,
    k: Option<String>,
    t: Option<String>,
    /// How many bytes `p=` decodes to.
    p_len: Option<usize>,
}

impl KeyRecord {
    fn new(key: Arc<DomainKey>, text: &[u8], expires: Instant) -> Self {
        let mut record = KeyRecord {
            key,
            expires,
            syntax: None,
            h: None,
            s: None,
            k: None,
            t: None,
            p_len: None,
        };
        // An empty tag (`;;`) is tolerated in key records as the peers do; the rest of the
        // tag-list syntax is not.
        let compact: Vec<u8> = text
            .split(|&c| c == b';')
            .filter(|spec| !spec.trim_ascii().is_empty())
            .collect::<Vec<_>>()
            .join(&b';');
        match parse_tag_list(&compact) {
            Ok(tags) => {
                for (name, value) in tags {
                    match name.as_str() {
                        "h" => record.h = Some(value),
                        "s" => record.s = Some(value),
                        "k" => record.k = Some(value),
                        "t" => record.t = Some(value),
                        "p" => {
                            use base64ct::{Base64, Encoding};
                            record.p_len = Base64::decode_vec(&value).ok().map(|p| p.len());
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => record.syntax = Some(e),
        }
        record
    }
}

/// The key record for `name`: from our cache, else looked up through the resolver (which
/// also fills mail-auth's record cache, so its verification finds the same key).
pub(super) async fn fetch(
    dns: &Dns,
    cache: &KeyCache,
    name: &str,
) -> Result<Arc<KeyRecord>, mail_auth::Error> {
    use mail_auth::common::resolver::ToFqdn;
    let fqdn = name.to_fqdn();
    let name: &str = fqdn.as_ref();
    if let Some(record) = cache.records.get(name) {
        STATS.cache_hit();
        // The two caches expire together, but each may be cleared when full on its own.
        if dns.txt.get(name).is_none() {
            dns.txt.insert(
                name.into(),
                Txt::DomainKey(record.key.clone()),
                record.expires,
            );
        }
        return Ok(record);
    }
    if let Some(Txt::Error(e)) = dns.txt.get(name) {
        // A failure seen moments ago (kept briefly by the resolver's cache).
        STATS.cache_hit();
        return Err(e);
    }
    let (key, text, expires) = dns.txt_with_text::<DomainKey>(name).await?;
    let record = Arc::new(KeyRecord::new(key, &text, expires));
    cache.records.insert(name.into(), record.clone(), expires);
    Ok(record)
}

/// Whether `record` may verify `sig` (RFC 6376 §3.6.1, §6.1.2 steps 5 and 6; RFC 8301 §3.2):
/// `Err(why)` when the key must be ignored, which makes the signature PERMFAIL.
pub(super) fn usable(record: &KeyRecord, sig: &Signature) -> Result<(), String> {
    if let Some(e) = &record.syntax {
        return Err(format!("invalid key record: {e} (RFC 6376 3.2)"));
    }
    let (name, hash, key_type) = match sig.a {
        Algorithm::RsaSha256 => ("rsa-sha256", "sha256", "rsa"),
        Algorithm::RsaSha1 => ("rsa-sha1", "sha1", "rsa"),
        Algorithm::Ed25519Sha256 => ("ed25519-sha256", "sha256", "ed25519"),
    };
    let listed = |list: &str, want: &str| list.split(':').any(|v| v.eq_ignore_ascii_case(want));
    let k = record.k.as_deref().unwrap_or("rsa");
    if !k.eq_ignore_ascii_case(key_type) {
        return Err(format!(
            "key record k={k} does not match a={name} (RFC 6376 6.1.2)"
        ));
    }
    if let Some(h) = record.h.as_deref().filter(|h| !listed(h, hash)) {
        return Err(format!(
            "key record h={h} does not list {hash} (RFC 6376 6.1.2)"
        ));
    }
    if let Some(s) = record
        .s
        .as_deref()
        .filter(|s| !listed(s, "email") && !listed(s, "*"))
    {
        return Err(format!(
            "key record s={s} does not list email (RFC 6376 3.6.1)"
        ));
    }
    let strict = record.t.as_deref().is_some_and(|t| listed(t, "s"));
    if strict && !sig.i.is_empty() && !same_domain(&sig.i, &sig.d) {
        return Err(format!(
            "key record t=s: i={} is not in d={} itself (RFC 6376 3.6.1)",
            sig.i, sig.d
        ));
    }
    if key_type == "ed25519" && record.p_len != Some(32) {
        // RFC 8463 §4.2: p= is the raw 32-byte key (not, for one, its SubjectPublicKeyInfo).
        return Err("invalid key record: ed25519 p= is not 32 bytes (RFC 8463 4.2)".into());
    }
    if record.key.p.public_key_bits() < 1024 {
        return Err("key shorter than 1024 bits".into());
    }
    Ok(())
}

/// Whether the domain of the AUID `i` is exactly `d`.
fn same_domain(i: &str, d: &str) -> bool {
    auid_within(i, d)
        && i.rsplit_once('@').is_some_and(|(_, domain)| {
            domain
                .trim_end_matches('.')
                .eq_ignore_ascii_case(d.trim_end_matches('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::common::parse::TxtRecordParser;

    // The 2048-bit test key of testdata/keys (rsa2048.pub.b64).
    fn record(tags: &str) -> KeyRecord {
        let p = include_str!("../../testdata/keys/rsa2048.pub.b64").trim();
        let text = format!("{tags} p={p}");
        let key = DomainKey::parse(text.as_bytes()).expect("key parses");
        KeyRecord::new(Arc::new(key), text.as_bytes(), Instant::now())
    }

    fn sig(a: Algorithm, i: &str) -> Signature {
        Signature {
            a,
            d: "example.com".into(),
            s: "sel".into(),
            i: i.into(),
            ..Signature::default()
        }
    }

    #[test]
    fn hash_service_and_flags() {
        let rsa = sig(Algorithm::RsaSha256, "");
        assert!(usable(&record("v=DKIM1;"), &rsa).is_ok());
        assert!(usable(&record("v=DKIM1; h=sha1:SHA256; s=email:chat;"), &rsa).is_ok());
        assert!(usable(&record("v=DKIM1; s=*; x=unknown;"), &rsa).is_ok());
        let why = usable(&record("v=DKIM1; h=sha1;"), &rsa).unwrap_err();
        assert!(why.contains("h=sha1"), "{why}");
        let why = usable(&record("v=DKIM1; s=chat;"), &rsa).unwrap_err();
        assert!(why.contains("s=chat"), "{why}");
        let why = usable(&record("v=DKIM1; h=sha256; h=sha1;"), &rsa).unwrap_err();
        assert!(why.contains("duplicate tag h"), "{why}");
        let strict = record("v=DKIM1; t=y:s;");
        assert!(usable(&strict, &sig(Algorithm::RsaSha256, "a@example.com")).is_ok());
        let why = usable(&strict, &sig(Algorithm::RsaSha256, "a@sub.example.com")).unwrap_err();
        assert!(why.contains("t=s"), "{why}");
        assert!(usable(&record("v=DKIM1;;"), &rsa).is_ok());
    }
}
