//! The decision function. Pure: same outcome and policy, same verdict.

use super::file::Policy;
use super::verdict::{Action, Verdict};
use crate::auth::{AuthResult, Outcome, SpfOutcome};

/// A rule that fired: the action it asks for and how to say it over SMTP.
struct Finding {
    action: Action,
    reason: String,
    reply: Option<(u16, &'static str, String)>,
}

/// Decides what happens to a message. When several rules fire, the most severe action wins
/// (reject > tempfail > quarantine > accept); all of them are listed in `reasons`.
pub fn decide(outcome: &Outcome, policy: &Policy) -> Verdict {
    if let Some(limit) = outcome.resource_limit {
        let (code, status, text) = limit.reply();
        return verdict(
            Action::Tempfail,
            vec![format!("not checked: {}", limit.reason())],
            Some((code, status, text.to_string())),
            None,
            None,
        );
    }
    if let Some(reason) = &outcome.skipped {
        return verdict(
            Action::Accept,
            vec![format!("not verified: {reason}")],
            None,
            None,
            None,
        );
    }
    let rules = policy.rules_for(outcome.from.domain().unwrap_or_default());
    let mut findings: Vec<Finding> = Vec::new();
    let mut note = |action: Action, reason: String, reply: Option<(u16, &'static str, String)>| {
        findings.push(Finding {
            action,
            reason,
            reply,
        })
    };

    if outcome.oversized {
        note(
            policy.rules.oversized,
            "message exceeds the size limit".into(),
            Some(match policy.rules.oversized {
                Action::Tempfail => (452, "4.3.1", "Message too large to check now".into()),
                _ => (552, "5.3.4", "Message too big".into()),
            }),
        );
    }
    if let Some(why) = &outcome.malformed {
        note(
            rules.malformed,
            format!("malformed message: {why}"),
            Some((550, "5.6.0", "Message is not RFC 5322".into())),
        );
    }
    if outcome.from.is_multiple() {
        note(
            rules.multiple_from,
            format!(
                "{} From field(s) with {} address(es) (RFC 7489 6.6.1)",
                outcome.from.fields,
                outcome.from.addresses.len()
            ),
            Some((
                550,
                "5.7.1",
                "Message must have exactly one From address".into(),
            )),
        );
    } else if outcome.malformed.is_none() && !outcome.oversized && outcome.from.addresses.is_empty()
    {
        note(
            rules.missing_from,
            "no From address".into(),
            Some((550, "5.6.0", "Message has no From address".into())),
        );
    }

    let mut disposition = None;
    let mut local_override = None;
    let spf = outcome.spf.as_ref().map(|s| &s.mail_from);
    match &outcome.dmarc {
        Some(dmarc) if dmarc.result == AuthResult::Fail => {
            let sealer = trusted_arc_sealer(outcome, policy);
            let (asked, rule) = match dmarc.policy.as_str() {
                "reject" => (Action::Reject, rules.dmarc_reject),
                "quarantine" => (Action::Quarantine, rules.dmarc_quarantine),
                _ => (Action::Accept, Action::Accept),
            };
            if let (Some(sealer), true) = (sealer, asked != Action::Accept) {
                let why = format!("trusted ARC sealer {sealer}");
                note(
                    Action::Accept,
                    format!(
                        "DMARC fail for {} overridden by local policy: {why}",
                        dmarc.domain
                    ),
                    None,
                );
                local_override = Some(why);
                disposition = Some("none");
            } else {
                let what = format!(
                    "DMARC fail for {} (p={})",
                    dmarc.domain,
                    policy_word(&dmarc.policy)
                );
                let reason = if rule != asked {
                    format!("{what}; local policy: {rule}")
                } else {
                    what
                };
                if rule != asked {
                    local_override = Some(format!(
                        "{} policy {} applied as {rule}",
                        dmarc.domain,
                        policy_word(&dmarc.policy)
                    ));
                }
                disposition = Some(match rule {
                    Action::Reject => "reject",
                    Action::Quarantine => "quarantine",
                    _ => "none",
                });
                note(
                    rule,
                    reason,
                    Some((
                        550,
                        "5.7.1",
                        format!("Rejected by DMARC policy of {}", dmarc.domain),
                    )),
                );
            }
        }
        Some(dmarc) if dmarc.result == AuthResult::Temperror => {
            note(
                rules.dns_temperror,
                format!("DMARC temperror for {} (DNS)", dmarc.domain),
                Some((
                    451,
                    "4.4.3",
                    "Temporary DNS failure, try again later".into(),
                )),
            );
        }
        Some(dmarc) if dmarc.result == AuthResult::Pass => {
            disposition = Some("none");
            note(
                Action::Accept,
                format!("DMARC pass for {}", dmarc.domain),
                None,
            );
        }
        _ => {
            // No DMARC verdict: SPF alone may matter.
            match spf.map(|s| s.result) {
                Some(AuthResult::Fail) => {
                    let s = spf.expect("matched");
                    note(
                        rules.spf_fail_without_dmarc,
                        format!("SPF fail for {} without DMARC policy", s.domain),
                        Some((550, "5.7.23", format!("SPF check failed for {}", s.domain))),
                    );
                }
                Some(AuthResult::Temperror) if rules.spf_fail_without_dmarc != Action::Accept => {
                    note(
                        rules.dns_temperror,
                        "SPF temperror (DNS)".into(),
                        Some((
                            451,
                            "4.4.3",
                            "Temporary DNS failure, try again later".into(),
                        )),
                    );
                }
                _ => {}
            }
        }
    }

    let action = findings
        .iter()
        .map(|f| f.action)
        .max()
        .unwrap_or(Action::Accept);
    let reply = findings
        .iter()
        .find(|f| f.action == action && f.reply.is_some())
        .and_then(|f| f.reply.clone());
    let reasons = findings.into_iter().map(|f| f.reason).collect();
    let mut v = verdict(
        action,
        reasons,
        reply,
        disposition.map(str::to_string),
        local_override,
    );
    if v.reasons.is_empty() {
        v.reasons.push("no rule applied".into());
    }
    v
}

/// The decision possible at MAIL FROM, before any header is known: only SPF `fail` can refuse
/// the sender there, and only if `spf_fail_at_mail` says so. `None` means carry on.
pub fn decide_at_mail(spf: &SpfOutcome, policy: &Policy) -> Option<Verdict> {
    let check = &spf.mail_from;
    if check.result != AuthResult::Fail || policy.rules.spf_fail_at_mail == Action::Accept {
        return None;
    }
    let reason = format!("SPF fail for {} at MAIL FROM", check.domain);
    let reply = match policy.rules.spf_fail_at_mail {
        Action::Tempfail => (
            451,
            "4.7.23",
            format!("SPF check failed for {}", check.domain),
        ),
        _ => (
            550,
            "5.7.23",
            format!("SPF check failed for {}", check.domain),
        ),
    };
    Some(verdict(
        policy.rules.spf_fail_at_mail,
        vec![reason],
        Some(reply),
        None,
        None,
    ))
}

fn policy_word(p: &str) -> &str {
    if p.is_empty() {
        "none"
    } else {
        p
    }
}

/// The first trusted sealer of a passing ARC chain, if any.
fn trusted_arc_sealer<'a>(outcome: &'a Outcome, policy: &Policy) -> Option<&'a str> {
    let arc = outcome
        .arc
        .as_ref()
        .filter(|a| a.result == AuthResult::Pass)?;
    arc.sealers
        .iter()
        .find(|s| policy.trusted_sealers.iter().any(|t| t == *s))
        .map(String::as_str)
}

fn verdict(
    action: Action,
    reasons: Vec<String>,
    reply: Option<(u16, &'static str, String)>,
    dmarc_disposition: Option<String>,
    local_override: Option<String>,
) -> Verdict {
    let (code, status, text) = match (action, reply) {
        (Action::Accept, _) => (250, "2.0.0", "OK".to_string()),
        (Action::Quarantine, _) => (250, "2.0.0", "OK, held for review".to_string()),
        (Action::Tempfail, Some(r)) if r.0 / 100 == 4 => r,
        (Action::Tempfail, _) => (
            451,
            "4.7.0",
            "Temporary authentication failure, try again later".to_string(),
        ),
        (Action::Reject, Some(r)) if r.0 / 100 == 5 => r,
        (Action::Reject, _) => (550, "5.7.1", "Message rejected by local policy".to_string()),
    };
    Verdict {
        action,
        code,
        status: status.to_string(),
        text,
        reasons,
        dmarc_disposition,
        local_override,
    }
}

#[cfg(test)]
mod tests;
