//! Header fields the filter adds: RFC 8601 `Authentication-Results` and RFC 7208 §9.1
//! `Received-SPF`. Values are returned without the field name, folded with CRLF + TAB.

use super::outcome::{AuthResult, Outcome, SpfCheck};
use std::net::IpAddr;

const FOLD_WIDTH: usize = 76;

/// Renders the Authentication-Results value for a verified message. `disposition` is what
/// the policy did for DMARC (`none`, `quarantine`, `reject`), shown beside the DMARC result.
pub fn authentication_results(
    authserv_id: &str,
    outcome: &Outcome,
    disposition: Option<&str>,
) -> String {
    let mut results: Vec<Vec<String>> = Vec::new();
    if let Some(spf) = &outcome.spf {
        if !spf.null_sender {
            results.push(spf_resinfo(&spf.mail_from, "smtp.mailfrom"));
        }
        if let Some(helo) = &spf.helo {
            results.push(spf_resinfo(helo, "smtp.helo"));
        } else if spf.null_sender {
            results.push(spf_resinfo(&spf.mail_from, "smtp.mailfrom"));
        }
    }
    if outcome.dkim.is_empty()
        && outcome.spf.is_some()
        && outcome.malformed.is_none()
        && !outcome.oversized
    {
        results.push(vec!["dkim=none".into()]);
    }
    for d in &outcome.dkim {
        let mut r = vec![format!("dkim={}", d.result)];
        if let Some(reason) = &d.reason {
            r.push(comment(reason));
        }
        if !d.domain.is_empty() {
            r.push(format!("header.d={}", pvalue(&d.domain)));
            r.push(format!("header.s={}", pvalue(&d.selector)));
            if !d.b.is_empty() {
                r.push(format!("header.b={}", pvalue(&d.b)));
            }
            // The algorithm as written when it is not one we know: quoted when need be.
            if !d.algorithm.is_empty() {
                r.push(format!("header.a={}", pvalue(&d.algorithm)));
            }
        }
        results.push(r);
    }
    if let Some(arc) = &outcome.arc {
        let mut r = vec![format!("arc={}", arc.result)];
        match &arc.reason {
            Some(reason) => r.push(comment(reason)),
            None if arc.chain_length > 0 => r.push(comment(&format!(
                "i={} sealed by {}",
                arc.chain_length,
                arc.sealers.join(",")
            ))),
            None => {}
        }
        // RFC 8617 §10.2: the oldest instance whose AMS still validates, and the client.
        if let Some(oldest) = arc.oldest_pass.filter(|_| arc.result == AuthResult::Pass) {
            r.push(format!("header.oldest-pass={oldest}"));
        }
        if let Some(ip) = arc.remote_ip {
            r.push(format!("smtp.remote-ip={}", pvalue(&ip.to_string())));
        }
        results.push(r);
    }
    if let Some(dmarc) = &outcome.dmarc {
        let mut r = vec![format!("dmarc={}", dmarc.result)];
        let mut notes = Vec::new();
        if !dmarc.policy.is_empty() {
            notes.push(format!("p={}", dmarc.policy));
        }
        if let Some(dis) = disposition {
            notes.push(format!("dis={dis}"));
        }
        if let Some(reason) = &dmarc.reason {
            notes.push(reason.clone());
        }
        if !notes.is_empty() {
            r.push(comment(&notes.join(" ")));
        }
        if !dmarc.domain.is_empty() {
            r.push(format!("header.from={}", pvalue(&dmarc.domain)));
        }
        if !dmarc.policy.is_empty() {
            r.push(format!("policy.dmarc={}", dmarc.policy));
        }
        results.push(r);
    }
    if let Some(iprev) = &outcome.iprev {
        let mut r = vec![format!("iprev={}", iprev.result)];
        if let Some(ptr) = &iprev.ptr {
            r.push(format!("policy.iprev={}", pvalue(ptr)));
        }
        results.push(r);
    }

    let mut out = authserv_id.to_string();
    if results.is_empty() {
        out.push_str("; none");
        return out;
    }
    out.push(';');
    let n = results.len();
    for (i, tokens) in results.into_iter().enumerate() {
        out.push_str("\r\n\t");
        fold_words(&mut out, &tokens.join(" "), 8);
        if i + 1 < n {
            out.push(';');
        }
    }
    out
}

/// Appends one more method's result to a rendered Authentication-Results value: `tokens`
/// are `method=result`, then comments and properties (made with [`pvalue`] and [`comment`]),
/// folded like the rest. For results found after the value was made (BIMI).
pub fn append_resinfo(ar: &mut String, tokens: &[String]) {
    if let Some(head) = ar.strip_suffix("; none") {
        ar.truncate(head.len());
    }
    ar.push_str(";\r\n\t");
    fold_words(ar, &tokens.join(" "), 8);
}

/// Appends `text`, folding at spaces (RFC 5322 §2.2.3) so lines stay within the width;
/// `column` is where the text starts.
fn fold_words(out: &mut String, text: &str, column: usize) {
    let mut line_len = column;
    for (j, word) in text.split(' ').enumerate() {
        if j > 0 {
            if line_len + 1 + word.len() > FOLD_WIDTH {
                out.push_str("\r\n\t  ");
                line_len = 10;
            } else {
                out.push(' ');
                line_len += 1;
            }
        }
        out.push_str(word);
        line_len += word.len();
    }
}

fn spf_resinfo(check: &SpfCheck, property: &str) -> Vec<String> {
    let mut r = vec![format!("spf={}", check.result)];
    if !check.reason.is_empty() {
        r.push(comment(&check.reason));
    }
    if !check.identity.is_empty() {
        r.push(format!("{property}={}", pvalue(&check.identity)));
    }
    r
}

/// An RFC 8601 pvalue: as is when it is a token or `local@domain`, quoted otherwise.
pub fn pvalue(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.@".contains(c));
    if plain {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A CFWS comment with parentheses and backslashes escaped.
pub fn comment(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('(');
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            '\r' | '\n' => s.push(' '),
            _ => s.push(c),
        }
    }
    s.push(')');
    s
}

/// Renders the Received-SPF value (RFC 7208 §9.1) for the MAIL FROM (or, for the null
/// sender, HELO) identity.
pub fn received_spf(
    receiver: &str,
    ip: IpAddr,
    helo: Option<&str>,
    outcome: &Outcome,
) -> Option<String> {
    let spf = outcome.spf.as_ref()?;
    let check = &spf.mail_from;
    let identity = if spf.null_sender { "helo" } else { "mailfrom" };
    let sender = if spf.null_sender {
        format!("postmaster@{}", check.domain)
    } else {
        check.identity.clone()
    };
    let explanation = match check.result {
        AuthResult::Pass => format!("{receiver}: domain of {sender} designates {ip} as permitted sender"),
        AuthResult::Fail => format!("{receiver}: domain of {sender} does not designate {ip} as permitted sender"),
        AuthResult::Softfail => format!("{receiver}: transitioning domain of {sender} does not designate {ip} as permitted sender"),
        AuthResult::Neutral => format!("{receiver}: {ip} is neither permitted nor denied by domain of {sender}"),
        AuthResult::None => format!("{receiver}: domain of {sender} does not provide an SPF record"),
        AuthResult::Temperror => format!("{receiver}: temporary error looking up SPF for {sender}"),
        AuthResult::Permerror => format!("{receiver}: permanent error in SPF record of {sender}: {}", check.reason),
    };
    let mut out = format!("{} {}", check.result, comment(&explanation));
    out.push_str(&format!("\r\n\tclient-ip={ip};"));
    if !spf.null_sender {
        out.push_str(&format!(" envelope-from={};", pvalue(&check.identity)));
    }
    if let Some(h) = helo.filter(|h| !h.is_empty()) {
        out.push_str(&format!(" helo={};", pvalue(h)));
    }
    out.push_str(&format!(
        "\r\n\treceiver={}; identity={identity}",
        pvalue(receiver)
    ));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{DkimOutcome, SpfOutcome};

    #[test]
    fn pvalues_are_quoted_when_needed() {
        assert_eq!(pvalue("alice@example.com"), "alice@example.com");
        assert_eq!(pvalue("a b@example.com"), "\"a b@example.com\"");
        assert_eq!(pvalue("x\"y"), "\"x\\\"y\"");
        assert_eq!(pvalue(""), "\"\"");
    }

    #[test]
    fn comments_are_escaped() {
        assert_eq!(comment("a (b) \\ c"), "(a \\(b\\) \\\\ c)");
        assert_eq!(comment("line\r\nbreak"), "(line  break)");
    }

    #[test]
    fn folded_and_complete() {
        let mut o = Outcome::empty_for_tests();
        o.spf = Some(SpfOutcome {
            mail_from: SpfCheck {
                result: AuthResult::Softfail,
                domain: "example.org".into(),
                identity: "someone.with.a.very.long.local.part@example.org".into(),
                reason: "203.0.113.1 matched all, which is a rather long explanation".into(),
                explanation: None,
            },
            null_sender: false,
            helo: None,
        });
        o.dkim.push(DkimOutcome {
            result: AuthResult::Pass,
            domain: "example.org".into(),
            selector: "s1".into(),
            algorithm: "ed25519-sha256".into(),
            b: "abcdefgh".into(),
            identity: None,
            reason: None,
        });
        let ar = authentication_results("mx.example", &o, None);
        assert!(ar.starts_with("mx.example;\r\n\tspf=softfail ("), "{ar}");
        assert!(ar.split("\r\n").all(|l| l.len() <= 78), "{ar}");
        // Unfolding gives back single spaces between tokens.
        let unfolded = ar.replace("\r\n\t  ", " ").replace("\r\n\t", " ");
        assert!(unfolded.contains("smtp.mailfrom=someone.with.a.very.long.local.part@example.org"));
        assert!(
            unfolded.contains(
                "dkim=pass header.d=example.org header.s=s1 header.b=abcdefgh header.a=ed25519-sha256"
            ),
            "{unfolded}"
        );
        assert_eq!(
            authentication_results("mx.example", &Outcome::empty_for_tests(), None),
            "mx.example; none"
        );
    }
}
