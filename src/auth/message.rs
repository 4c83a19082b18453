//! Reading what the core needs from the raw message: header fields, the From field(s),
//! Authentication-Results fields that claim our authserv-id.

use super::outcome::FromInfo;
use mail_auth::AuthenticatedMessage;

/// The From field(s) as mail-auth parsed them, plus how many fields there were (mail-auth
/// merges the addresses of every From field, which hides a second field: DESIGN.md item 3).
pub(super) fn from_info(msg: &AuthenticatedMessage<'_>) -> FromInfo {
    FromInfo {
        fields: msg
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"From"))
            .count(),
        addresses: msg.from.clone(),
    }
}

/// 1-based positions (among `Authentication-Results` fields, top first) of the fields whose
/// authserv-id is ours: RFC 8601 §5 says a receiver must remove those it did not add.
pub(super) fn forged_ar(msg: &AuthenticatedMessage<'_>, authserv_id: &str) -> Vec<usize> {
    msg.headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"Authentication-Results"))
        .enumerate()
        .filter(|(_, (_, value))| {
            ar_authserv_id(value).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// The authserv-id of an Authentication-Results value: the first token, after comments and
/// white space, up to white space or `;` (RFC 8601 §2.2).
pub fn ar_authserv_id(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let mut rest = skip_cfws(&text);
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .unwrap_or(rest.len());
    let id = &rest[..end];
    rest = &rest[end..];
    let _ = rest;
    (!id.is_empty()).then(|| id.to_string())
}

/// Skips white space and (nested) comments.
fn skip_cfws(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if !s.starts_with('(') {
            return s;
        }
        let mut depth = 0usize;
        let mut end = s.len();
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        s = &s[end..];
    }
}

/// The first `n` characters of a signature header's `b=` tag, white space removed (RFC 6008).
pub(super) fn b_tag_prefix(value: &[u8], n: usize) -> String {
    // Bytes, not text: b= is base64, and converting the whole field for it cost more than the
    // rest of the A-R rendering.
    for tag in value.split(|&c| c == b';') {
        let Some(eq) = tag.iter().position(|&c| c == b'=') else {
            continue;
        };
        if tag[..eq].trim_ascii() == b"b" {
            return tag[eq + 1..]
                .iter()
                .filter(|c| c.is_ascii_graphic())
                .take(n)
                .map(|&c| char::from(c))
                .collect();
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authserv_id_is_first_token() {
        assert_eq!(
            ar_authserv_id(b" mx.example.com; spf=pass").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(
            ar_authserv_id(b" (comment (nested)) mx.example.com 1; none").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(
            ar_authserv_id(b"mx.example.com;").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(ar_authserv_id(b"   ").as_deref(), None);
    }

    #[test]
    fn b_prefix() {
        assert_eq!(
            b_tag_prefix(b" v=1; a=rsa-sha256; bh=xyz; b=abc\r\n def ghij", 8),
            "abcdefgh"
        );
        assert_eq!(b_tag_prefix(b"v=1; b =QQ", 8), "QQ");
    }
}
