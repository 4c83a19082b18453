//! DMARC (RFC 9989 as mail-auth 0.13.3 implements it): alignment of the MAIL FROM SPF result
//! and the DKIM results against the RFC5322.From domain.
//!
//! mail-auth gives `none` when From has several addresses (DESIGN.md item 3); we report such
//! messages as `none` with a reason and let the policy decide (reject by default), so they can
//! never pass.

use super::outcome::{AuthResult, DmarcOutcome, FromInfo, Published, SpfOutcome};
use crate::dns::Dns;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Alignment, Dmarc, Policy, Report};
use mail_auth::{AuthenticatedMessage, DkimOutput, DmarcResult, SpfOutput, SpfResult};

pub(super) async fn verify(
    dns: &Dns,
    msg: &AuthenticatedMessage<'_>,
    dkim: &[DkimOutput<'_>],
    spf: &SpfOutcome,
    from: &FromInfo,
) -> DmarcOutcome {
    let domain = from.domain().unwrap_or_default().to_string();
    if from.is_multiple() {
        return not_applicable(domain, "several From addresses or fields (RFC 7489 6.6.1)");
    }
    if from.addresses.is_empty() {
        return not_applicable(domain, "no RFC5322.From address");
    }
    // The MAIL FROM identity only; for the null sender, RFC 9989 does not use HELO.
    let (spf_domain, spf_output) = if spf.null_sender {
        (String::new(), SpfOutput::new(String::new()))
    } else {
        (
            spf.mail_from.domain.clone(),
            SpfOutput::new(spf.mail_from.domain.clone())
                .with_result(to_mail_auth(spf.mail_from.result)),
        )
    };
    let params = DmarcParameters {
        message: msg,
        dkim_output: dkim,
        dkim2_output: None,
        rfc5321_mail_from_domain: &spf_domain,
        spf_output: &spf_output,
    };
    dns.prefetch_dmarc(&domain).await;
    let out = dns.authenticator().verify_dmarc(dns.params(params)).await;
    let result = match out.result() {
        DmarcResult::Pass => AuthResult::Pass,
        DmarcResult::Fail(_) => AuthResult::Fail,
        DmarcResult::TempError(_) => AuthResult::Temperror,
        DmarcResult::PermError(_) => AuthResult::Permerror,
        DmarcResult::None => AuthResult::None,
    };
    let policy = match (out.dmarc_record().is_some(), out.policy()) {
        (false, _) => "",
        (true, Policy::Reject) => "reject",
        (true, Policy::Quarantine) => "quarantine",
        (true, _) => "none",
    };
    let reason = match result {
        AuthResult::None if out.dmarc_record().is_none() => Some("no DMARC record".to_string()),
        AuthResult::Fail => Some("neither SPF nor DKIM passed aligned with From".to_string()),
        AuthResult::Temperror => Some("DNS error".to_string()),
        _ => None,
    };
    let published = out.dmarc_record_cloned().map(|record| {
        let at = dns
            .cached_dmarc_domain(&domain, &record)
            .unwrap_or_else(|| domain.clone());
        published(at, &record)
    });
    DmarcOutcome {
        published,
        result,
        domain: if out.domain().is_empty() {
            domain
        } else {
            out.domain().to_string()
        },
        policy: policy.to_string(),
        spf_aligned: matches!(out.spf_result(), DmarcResult::Pass),
        dkim_aligned: matches!(out.dkim_result(), DmarcResult::Pass),
        reason,
    }
}

fn not_applicable(domain: String, reason: &str) -> DmarcOutcome {
    DmarcOutcome {
        result: AuthResult::None,
        domain,
        policy: String::new(),
        spf_aligned: false,
        dkim_aligned: false,
        reason: Some(reason.to_string()),
        published: None,
    }
}

/// The record's tags as a report states them, defaults filled in (RFC 9989 §4.7).
fn published(domain: String, record: &Dmarc) -> Published {
    let policy = |p: Policy| match p {
        Policy::Reject => "reject",
        Policy::Quarantine => "quarantine",
        Policy::None | Policy::Unspecified => "none",
    };
    let alignment = |a: Alignment| match a {
        Alignment::Strict => "s",
        Alignment::Relaxed => "r",
    };
    let p = policy(record.p).to_string();
    // sp defaults to p, np to sp (RFC 9989 §4.7).
    let sp = match record.sp {
        Policy::Unspecified => p.clone(),
        other => policy(other).to_string(),
    };
    let np = match record.np {
        Policy::Unspecified => sp.clone(),
        other => policy(other).to_string(),
    };
    let fo = match record.fo {
        Report::All => "0",
        Report::Any => "1",
        Report::Dkim => "d",
        Report::Spf => "s",
        Report::DkimSpf => "d:s",
    };
    let uris = |list: &[mail_auth::dmarc::URI]| {
        list.iter()
            .map(|u| (u.uri.clone(), u.max_size))
            .collect::<Vec<_>>()
    };
    Published {
        domain,
        adkim: alignment(record.adkim).into(),
        aspf: alignment(record.aspf).into(),
        p,
        sp,
        np,
        testing: record.t,
        fo: fo.into(),
        rua: uris(&record.rua),
        ruf: uris(&record.ruf),
    }
}

fn to_mail_auth(r: AuthResult) -> SpfResult {
    match r {
        AuthResult::Pass => SpfResult::Pass,
        AuthResult::Fail => SpfResult::Fail,
        AuthResult::Softfail => SpfResult::SoftFail,
        AuthResult::Neutral => SpfResult::Neutral,
        AuthResult::Temperror => SpfResult::TempError,
        AuthResult::Permerror => SpfResult::PermError,
        AuthResult::None => SpfResult::None,
    }
}
