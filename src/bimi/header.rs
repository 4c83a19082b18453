//! What the mailbox gets (draft §7.5, §7.7): the `bimi=` result for Authentication-Results,
//! `BIMI-Location` and `BIMI-Indicator` on a pass, and the incoming copies of those fields to
//! delete (only the receiver may write them).

use super::{BimiOutcome, BimiResult};
use crate::auth::headers::{comment, pvalue};

/// Fields a sender must not bring in: we write them, the MUA trusts them.
pub const OWNED_FIELDS: [&str; 2] = ["BIMI-Location", "BIMI-Indicator"];

/// The `bimi=` resinfo tokens.
pub fn resinfo(o: &BimiOutcome) -> Vec<String> {
    let mut r = vec![format!("bimi={}", o.result.as_str())];
    match (&o.reason, o.mark_type) {
        (Some(reason), _) => r.push(comment(reason)),
        (None, Some(mark)) if o.result == BimiResult::Pass => r.push(comment(mark.as_str())),
        _ => {}
    }
    if let Some(d) = &o.domain {
        r.push(format!("header.d={}", pvalue(d)));
    }
    if let Some(s) = &o.selector {
        r.push(format!("header.selector={}", pvalue(s)));
    }
    if o.result == BimiResult::Pass {
        if let Some(a) = o.authority_result {
            r.push(format!("policy.authority={a}"));
        }
        if let Some(uri) = &o.authority {
            r.push(format!("policy.authority-uri={}", pvalue(uri)));
        }
    }
    r
}

/// `BIMI-Location: v=BIMI1; l=...; a=...` (the record's URIs), on a pass.
pub fn location(o: &BimiOutcome) -> Option<String> {
    if o.result != BimiResult::Pass {
        return None;
    }
    let mut v = "v=BIMI1;".to_string();
    if let Some(l) = &o.location {
        v.push_str(&format!("\r\n\tl={l};"));
    }
    if let Some(a) = &o.authority {
        v.push_str(&format!("\r\n\ta={a};"));
    }
    Some(v)
}

/// `BIMI-Indicator`: the validated SVG, base64, folded in lines of 72 characters.
pub fn indicator(o: &BimiOutcome) -> Option<String> {
    if o.result != BimiResult::Pass {
        return None;
    }
    use base64ct::Encoding;
    let b64 = base64ct::Base64::encode_string(o.indicator.as_deref()?);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(72)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    Some(lines.join("\r\n\t"))
}

/// The incoming `BIMI-Location` and `BIMI-Indicator` fields: `(name, 1-based index among
/// fields of that name)`.
pub fn forged(fields: &[(&[u8], &[u8])]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for name in OWNED_FIELDS {
        let mut n = 0;
        for (field, _) in fields {
            if field.eq_ignore_ascii_case(name.as_bytes()) {
                n += 1;
                out.push((name.to_string(), n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bimi::cert::MarkType;
    use std::sync::Arc;

    #[test]
    fn a_pass_renders_the_draft_properties_quoted() {
        let mut o = BimiOutcome::new(BimiResult::Pass, None);
        o.domain = Some("example.com".into());
        o.selector = Some("default".into());
        o.location = Some("https://b.example/l.svg".into());
        o.authority = Some("https://b.example/a.pem".into());
        o.authority_result = Some("pass");
        o.mark_type = Some(MarkType::Vmc);
        o.indicator = Some(Arc::from(vec![b'x'; 100]));
        assert_eq!(
            resinfo(&o).join(" "),
            "bimi=pass (VMC) header.d=example.com header.selector=default \
             policy.authority=pass policy.authority-uri=\"https://b.example/a.pem\""
        );
        assert_eq!(
            location(&o).unwrap(),
            "v=BIMI1;\r\n\tl=https://b.example/l.svg;\r\n\ta=https://b.example/a.pem;"
        );
        let ind = indicator(&o).unwrap();
        assert!(ind.split("\r\n\t").all(|l| l.len() <= 72));
        use base64ct::Encoding;
        assert_eq!(
            base64ct::Base64::decode_vec(&ind.replace("\r\n\t", "")).unwrap(),
            vec![b'x'; 100]
        );
        let fail = BimiOutcome::new(BimiResult::Fail, Some("mark certificate expired".into()));
        assert_eq!(
            resinfo(&fail).join(" "),
            "bimi=fail (mark certificate expired)"
        );
        assert!(location(&fail).is_none() && indicator(&fail).is_none());
    }

    #[test]
    fn incoming_bimi_fields_are_listed_for_removal() {
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b"From", b" a@b"),
            (b"bimi-indicator", b" x"),
            (b"BIMI-Location", b" y"),
            (b"BIMI-Indicator", b" z"),
        ];
        assert_eq!(
            forged(&fields),
            vec![
                ("BIMI-Location".to_string(), 1),
                ("BIMI-Indicator".to_string(), 1),
                ("BIMI-Indicator".to_string(), 2)
            ]
        );
    }
}
