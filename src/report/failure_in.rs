//! Failure reports other receivers send us (RFC 9991; the ARF `auth-failure` format of
//! RFC 6591 on RFC 5965), and the plain-text failure notices some MTAs send without an ARF
//! part, read into what the store keeps: who reports, the reported domain and identities,
//! the results, the source address, and the original header section as given (bounded;
//! whatever the reporter redacted stays redacted: nothing here un-redacts or rewrites it).
//!
//! The ARF part is read by mail-auth's parser; the original message's header fields by
//! mail-parser. A plain-text notice is read only when its fields can be (a source address and
//! a domain at least): `Sender Domain: …`, `Sender IP Address: …`, `Received Date: …`,
//! `SPF Alignment`, `DKIM Alignment`, `DMARC Results`, then the headers copied after the line
//! that ends "…detected." (the shape parsedmarc reads).

use crate::store::{cut, NewFailureReport};
use mail_auth::report::{
    AuthFailureType, DeliveryResult, Feedback, FeedbackType, IdentityAlignment,
};
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// The original header section kept per report.
pub const MAX_HEADERS: usize = 64 * 1024;
/// Any other text field.
const MAX_TEXT: usize = 998;
/// Authentication-Results fields kept per report.
const MAX_RESULTS: usize = 16;

/// Whether `input` is a failure report, and if so what it says (or why it cannot be read).
/// `None`: not a failure report at all (an aggregate report, or other mail).
pub fn parse(input: &[u8], now_ms: i64) -> Option<Result<NewFailureReport, String>> {
    let msg = MessageParser::new().parse(input)?;
    let arf = msg.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("feedback-report"))
        })
    });
    let mut report = if arf {
        match from_arf(input) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        }
    } else {
        let text = msg.parts.iter().find_map(|p| match &p.body {
            PartType::Text(t) if t.contains("has failed") && t.contains(':') => Some(t.as_ref()),
            _ => None,
        })?;
        from_text(text)?
    };
    report.received_at = now_ms;
    report.reporter = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(clean)
        .unwrap_or_default();
    report.report_message_id = msg.message_id().map(clean);
    Some(Ok(report))
}

fn clean(s: &str) -> String {
    cut(s.trim(), MAX_TEXT).to_string()
}

/// An ARF message: the feedback-report fields, then the original headers.
fn from_arf(input: &[u8]) -> Result<NewFailureReport, String> {
    let fb = Feedback::parse_rfc5322(input).map_err(|e| format!("unreadable ARF report: {e:?}"))?;
    if fb.feedback_type() != FeedbackType::AuthFailure {
        return Err(format!(
            "an ARF report of type {:?}, not auth-failure",
            fb.feedback_type()
        ));
    }
    let original = fb.headers().or(fb.message()).unwrap_or_default();
    let mut r = NewFailureReport {
        format: "arf".into(),
        feedback_type: "auth-failure".into(),
        auth_failure: auth_failure_word(fb.auth_failure()).map(str::to_string),
        source_ip: fb.source_ip().map(|ip| ip.to_string()),
        arrival: fb.arrival_date(),
        mail_from: fb.original_mail_from().map(clean),
        rcpt_to: fb.original_rcpt_to().map(clean),
        delivery_result: delivery_word(fb.delivery_result()).map(str::to_string),
        identity_alignment: alignment_word(fb.identity_alignment()).map(str::to_string),
        dkim_domain: fb.dkim_domain().map(clean),
        dkim_selector: fb.dkim_selector().map(clean),
        authentication_results: fb
            .authentication_results()
            .iter()
            .take(MAX_RESULTS)
            .map(|a| clean(a))
            .collect(),
        incidents: fb.incidents().max(1),
        domain: fb
            .reported_domain()
            .first()
            .map(|d| clean(d).to_ascii_lowercase()),
        ..NewFailureReport::default()
    };
    original_headers(&mut r, original);
    if r.domain.is_none() && r.source_ip.is_none() {
        return Err("the ARF report names neither a domain nor a source address".into());
    }
    Ok(r)
}

/// A plain-text notice, when its fields can be read.
fn from_text(text: &str) -> Option<NewFailureReport> {
    let (fields, headers) = match text.split_once("detected.") {
        Some((f, h)) => (f, h.trim_start()),
        None => (text, ""),
    };
    let mut r = NewFailureReport {
        format: "text".into(),
        feedback_type: "auth-failure".into(),
        auth_failure: Some("dmarc".into()),
        incidents: 1,
        ..NewFailureReport::default()
    };
    let (mut spf, mut dkim) = (None, None);
    for line in fields.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic() || c == ' ') {
            continue;
        }
        match name.trim().to_ascii_lowercase().as_str() {
            "sender domain" | "reported domain" => {
                r.domain = Some(clean(value).to_ascii_lowercase())
            }
            "sender ip address" | "source ip" => {
                r.source_ip = value
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| ip.to_string())
            }
            "received date" | "arrival date" => {
                r.arrival = mail_parser::DateTime::parse_rfc822(value).map(|d| d.to_timestamp())
            }
            "spf alignment" => spf = Some(value.eq_ignore_ascii_case("yes")),
            "dkim alignment" => dkim = Some(value.eq_ignore_ascii_case("yes")),
            "dmarc results" | "dmarc result" => {
                r.delivery_result = Some(clean(value).to_ascii_lowercase())
            }
            _ => {}
        }
    }
    r.identity_alignment = match (dkim, spf) {
        (None, None) => None,
        (d, s) => Some(
            match (d == Some(true), s == Some(true)) {
                (true, true) => "dkim,spf",
                (true, false) => "dkim",
                (false, true) => "spf",
                (false, false) => "none",
            }
            .into(),
        ),
    };
    // A notice whose fields cannot be read is not taken for one.
    r.source_ip.as_ref()?;
    original_headers(&mut r, headers);
    r.domain.as_ref()?;
    Some(r)
}

/// The original header section as given (bounded), and what the store indexes from it: the
/// From domain, Subject and Message-ID. The reported domain defaults to the From domain.
fn original_headers(r: &mut NewFailureReport, original: &str) {
    let end = original
        .find("\r\n\r\n")
        .or_else(|| original.find("\n\n"))
        .unwrap_or(original.len());
    let headers = cut(&original[..end], MAX_HEADERS);
    r.headers = headers.to_string();
    let with_body = format!("{headers}\r\n\r\n");
    if let Some(m) = MessageParser::new().parse_headers(with_body.as_bytes()) {
        r.header_from = m
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| clean(d).to_ascii_lowercase());
        r.subject = m.subject().map(clean);
        r.original_message_id = m.message_id().map(clean);
    }
    if r.domain.is_none() {
        r.domain = r.header_from.clone();
    }
}

fn auth_failure_word(a: AuthFailureType) -> Option<&'static str> {
    Some(match a {
        AuthFailureType::Adsp => "adsp",
        AuthFailureType::BodyHash => "bodyhash",
        AuthFailureType::Revoked => "revoked",
        AuthFailureType::Signature => "signature",
        AuthFailureType::Spf => "spf",
        AuthFailureType::Dmarc => "dmarc",
        AuthFailureType::Unspecified => return None,
    })
}

fn delivery_word(d: DeliveryResult) -> Option<&'static str> {
    Some(match d {
        DeliveryResult::Delivered => "delivered",
        DeliveryResult::Spam => "spam",
        DeliveryResult::Policy => "policy",
        DeliveryResult::Reject => "reject",
        DeliveryResult::Other => "other",
        DeliveryResult::Unspecified => return None,
    })
}

fn alignment_word(a: IdentityAlignment) -> Option<&'static str> {
    Some(match a {
        IdentityAlignment::None => "none",
        IdentityAlignment::Spf => "spf",
        IdentityAlignment::Dkim => "dkim",
        IdentityAlignment::DkimSpf => "dkim,spf",
        IdentityAlignment::Unspecified => return None,
    })
}

#[cfg(test)]
mod tests;
