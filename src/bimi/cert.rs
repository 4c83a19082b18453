//! Mark certificate (VMC, CMC) validation, after draft-fetch-validation-vmc-wchuang §5:
//! the PEM chain must chain to a configured mark root with the BIMI extended key usage
//! (1.3.6.1.5.5.7.3.31) at the message's time (webpki, the EKU required), the subject
//! alternative names must hold the domain or `<selector>._bimi.<domain>`, and the logotype
//! extension (RFC 3709, 1.3.6.1.5.5.7.1.12) must embed the indicator as a `data:` URI whose
//! hash it states; the indicator itself must pass the SVG Tiny PS checks.
//!
//! webpki does the path building; the logotype extension and the mark type (a subject
//! attribute) are read with RustCrypto's `der`, which only walks the structure.

use super::svg;
use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use std::time::SystemTime;

/// id-kp-BIMI, 1.3.6.1.5.5.7.3.31, as the DER contents webpki compares.
const BIMI_EKU: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x1f];
const LOGOTYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.12");
/// The mark type subject attribute of the Mark Certificate Guidelines.
const MARK_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.53087.1.13");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// Which kind of mark certificate it is (the `markType` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MarkType {
    /// Verified Mark Certificate: a registered or government mark.
    #[serde(rename = "VMC")]
    Vmc,
    /// Common Mark Certificate: a prior-use or modified registered mark.
    #[serde(rename = "CMC")]
    Cmc,
    /// No (or an unknown) markType attribute.
    #[serde(rename = "unknown")]
    Unknown,
}

impl MarkType {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkType::Vmc => "VMC",
            MarkType::Cmc => "CMC",
            MarkType::Unknown => "unknown",
        }
    }
}

/// A mark certificate that passed every check.
#[derive(Debug, Clone)]
pub struct Mark {
    pub mark_type: MarkType,
    /// The embedded indicator, uncompressed, checked against the profile.
    pub svg: Vec<u8>,
}

/// Checks a PEM evidence document for a record found at `domain` with `selector`.
pub fn validate(
    pem: &[u8],
    roots: &[CertificateDer<'static>],
    domain: &str,
    selector: &str,
    at: SystemTime,
    max_indicator: usize,
) -> Result<Mark, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("evidence is not a PEM certificate chain: {e:?}"))?;
    let Some((leaf, rest)) = chain.split_first() else {
        return Err("evidence holds no certificate".into());
    };
    // A root served with the chain is no intermediate: trust comes from the mark roots only
    // (and webpki would judge it as one, reporting its missing EKU instead of the root).
    let intermediates: Vec<CertificateDer<'static>> = rest
        .iter()
        .filter(|c| !is_self_issued(c.as_ref()))
        .cloned()
        .collect();
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("mark certificate does not parse: {e}"))?;
    let time = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        webpki::KeyUsage::required(BIMI_EKU),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } => "mark certificate expired".to_string(),
        webpki::Error::CertNotValidYet { .. } => "mark certificate not yet valid".to_string(),
        webpki::Error::UnknownIssuer => "mark certificate does not chain to a mark root".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "mark certificate lacks the BIMI extended key usage".into()
        }
        other => format!("mark certificate invalid: {other}"),
    })?;
    let names = [domain.to_string(), format!("{selector}._bimi.{domain}")];
    let matched = names.iter().any(|n| {
        ServerName::try_from(n.as_str())
            .is_ok_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok())
    });
    if !matched {
        return Err(format!(
            "mark certificate names neither {} nor {}",
            names[0], names[1]
        ));
    }
    let fields = Fields::read(leaf.as_ref())?;
    let embedded = fields
        .logotype
        .ok_or("mark certificate has no logotype extension")?;
    let svg = svg::decompress(&embedded, max_indicator)?;
    svg::check(&svg, max_indicator)?;
    Ok(Mark {
        mark_type: fields.mark_type,
        svg,
    })
}

/// What is read from the leaf with `der`.
struct Fields {
    mark_type: MarkType,
    /// The embedded image as stored (SVGZ or SVG), its hash checked.
    logotype: Option<Vec<u8>>,
}

fn bad(what: &str) -> impl Fn(der::Error) -> String + '_ {
    move |e| format!("mark certificate: malformed {what}: {e}")
}

/// The elements inside a constructed value.
fn children<'a>(any: &AnyRef<'a>) -> Result<Vec<AnyRef<'a>>, String> {
    let mut reader = SliceReader::new(any.value()).map_err(bad("structure"))?;
    let mut out = Vec::new();
    while !reader.is_finished() {
        out.push(AnyRef::decode(&mut reader).map_err(bad("structure"))?);
    }
    Ok(out)
}

fn context(any: &AnyRef<'_>, n: u8) -> bool {
    let tag = any.tag();
    tag.is_context_specific() && tag.number() == TagNumber::new(n)
}

fn oid(any: &AnyRef<'_>) -> Result<ObjectIdentifier, String> {
    any.decode_as::<ObjectIdentifier>().map_err(bad("OID"))
}

impl Fields {
    fn read(leaf: &[u8]) -> Result<Fields, String> {
        let cert = AnyRef::from_der(leaf).map_err(bad("certificate"))?;
        let top = children(&cert)?;
        let tbs = children(top.first().ok_or("mark certificate: empty")?)?;
        let skip = usize::from(tbs.first().is_some_and(|v| context(v, 0)));
        let subject = tbs.get(skip + 4).ok_or("mark certificate: no subject")?;
        let mark_type = mark_type(subject)?;
        let mut logotype = None;
        if let Some(exts) = tbs.iter().find(|v| context(v, 3)) {
            let seq = AnyRef::from_der(exts.value()).map_err(bad("extensions"))?;
            for ext in children(&seq)? {
                let parts = children(&ext)?;
                let (Some(id), Some(value)) = (parts.first(), parts.last()) else {
                    continue;
                };
                if oid(id)? == LOGOTYPE {
                    logotype = Some(embedded_image(value.value())?);
                }
            }
        }
        Ok(Fields {
            mark_type,
            logotype,
        })
    }
}

/// Issuer and subject are the same name: a root.
fn is_self_issued(der: &[u8]) -> bool {
    let read = || -> Result<bool, String> {
        let cert = AnyRef::from_der(der).map_err(bad("certificate"))?;
        let top = children(&cert)?;
        let tbs = children(top.first().ok_or("empty")?)?;
        let skip = usize::from(tbs.first().is_some_and(|v| context(v, 0)));
        let (Some(issuer), Some(subject)) = (tbs.get(skip + 2), tbs.get(skip + 4)) else {
            return Ok(false);
        };
        Ok(issuer.value() == subject.value())
    };
    read().unwrap_or(false)
}

fn mark_type(subject: &AnyRef<'_>) -> Result<MarkType, String> {
    for rdn in children(subject)? {
        for atv in children(&rdn)? {
            let parts = children(&atv)?;
            if let (Some(id), Some(value)) = (parts.first(), parts.get(1)) {
                if oid(id)? == MARK_TYPE {
                    return Ok(match value.value() {
                        b"Registered Mark" | b"Government Mark" => MarkType::Vmc,
                        b"Prior Use Mark" | b"Modified Registered Mark" => MarkType::Cmc,
                        _ => MarkType::Unknown,
                    });
                }
            }
        }
    }
    Ok(MarkType::Unknown)
}

/// RFC 3709 §4.1: `LogotypeExtn { ..., subjectLogo [2] EXPLICIT LogotypeInfo, ... }`,
/// `LogotypeInfo ::= CHOICE { direct [0] LogotypeData, ... }` (implicit tags), the first
/// image's details: media type, hashes, and the `data:` URI holding the image.
fn embedded_image(extn: &[u8]) -> Result<Vec<u8>, String> {
    let extn = AnyRef::from_der(extn).map_err(bad("logotype extension"))?;
    let subject_logo = children(&extn)?
        .into_iter()
        .find(|v| context(v, 2))
        .ok_or("logotype extension has no subject logo")?;
    let info = AnyRef::from_der(subject_logo.value()).map_err(bad("logotype"))?;
    if !context(&info, 0) {
        return Err("subject logo is not given directly".into());
    }
    let data = children(&info)?;
    let images = data.first().ok_or("subject logo has no image")?;
    let image = children(images)?
        .into_iter()
        .next()
        .ok_or("subject logo has no image")?;
    let details = children(&image)?;
    let details = children(details.first().ok_or("logotype image has no details")?)?;
    let [media_type, hashes, uris] = details.as_slice() else {
        return Err("logotype details malformed".into());
    };
    if media_type.tag() != Tag::Ia5String || media_type.value() != b"image/svg+xml" {
        return Err("logotype is not image/svg+xml".into());
    }
    let uri = children(uris)?
        .into_iter()
        .next()
        .ok_or("logotype has no URI")?;
    let image = data_uri(uri.value())?;
    let mut hash_ok = false;
    for pair in children(hashes)? {
        let parts = children(&pair)?;
        let (Some(alg), Some(value)) = (parts.first(), parts.get(1)) else {
            return Err("logotype hash malformed".into());
        };
        let alg_id = oid(children(alg)?.first().ok_or("logotype hash malformed")?)?;
        let algorithm = match alg_id {
            a if a == SHA256 => &ring::digest::SHA256,
            a if a == SHA384 => &ring::digest::SHA384,
            a if a == SHA512 => &ring::digest::SHA512,
            _ => continue,
        };
        if ring::digest::digest(algorithm, &image).as_ref() != value.value() {
            return Err("logotype hash does not match the embedded image".into());
        }
        hash_ok = true;
    }
    if !hash_ok {
        return Err("logotype has no SHA-2 hash".into());
    }
    Ok(image)
}

/// RFC 2397: `data:image/svg+xml;base64,<data>`.
fn data_uri(uri: &[u8]) -> Result<Vec<u8>, String> {
    let uri = std::str::from_utf8(uri).map_err(|_| "logotype URI is not ASCII")?;
    let (head, data) = uri
        .strip_prefix("data:")
        .and_then(|r| r.split_once(','))
        .ok_or("logotype URI is not a data: URI")?;
    let media = head
        .strip_suffix(";base64")
        .ok_or("logotype data: URI is not base64")?;
    if !media.to_ascii_lowercase().starts_with("image/svg+xml") {
        return Err("logotype data: URI is not image/svg+xml".into());
    }
    use base64ct::Encoding;
    base64ct::Base64::decode_vec(data.trim()).map_err(|_| "logotype data: URI is not base64".into())
}
