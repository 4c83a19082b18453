//! Repairs for the markup mistakes real reporters make, each one whose meaning is not in
//! doubt (parsedmarc reads the same reports through libxml2's recovery mode). What cannot be
//! repaired this way stays refused: a DTD or entity declaration anywhere (checked before any
//! repair), an undeclared entity, mismatched or missing end tags, a truncated document.
//!
//! - a `<` in text that cannot open a tag (`<` followed by a space, a digit, `=`...), or that
//!   opens something no element name can be (an address such as `<postmaster@example.com>`),
//!   is escaped with its `>`; a bare `&` that starts no reference is escaped;
//! - a wrapper element around `<feedback>` (a generator that wraps the report in
//!   `<xs:schema>`) is removed, keeping the `<feedback>` element as it is.

/// Whether the text declares a DTD or an entity anywhere (never repaired: entities could
/// expand without bound, and a DTD could name external files).
pub(super) fn has_dtd(text: &str) -> bool {
    let upper = |needle: &str| {
        text.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    upper("<!DOCTYPE") || upper("<!ENTITY")
}

/// The text with stray `<`, `>` and `&` in character data escaped, or `None` when there is
/// none.
pub(super) fn escape_stray_markup(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut changed = false;
    let mut i = 0;
    // Where an escaped `<` expects its `>`.
    let mut close_at: Option<usize> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'<' if !opens_markup(&text[i..]) => {
                out.push_str("&lt;");
                changed = true;
                close_at = text[i + 1..]
                    .find(['<', '>'])
                    .map(|j| i + 1 + j)
                    .filter(|&j| bytes[j] == b'>');
            }
            b'>' if close_at == Some(i) => {
                out.push_str("&gt;");
                close_at = None;
            }
            b'&' if !starts_reference(&text[i..]) => {
                out.push_str("&amp;");
                changed = true;
            }
            _ => {
                // Whole characters: `i` only ever stops on ASCII bytes handled above.
                let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(c);
                i += c.len_utf8();
                continue;
            }
        }
        i += 1;
    }
    changed.then_some(out)
}

/// Whether `s` (starting at a `<`) opens a tag, an end tag, a comment, CDATA or a
/// processing instruction: a name follows, and the tag closes before any other `<`, with no
/// `@` in its name (no element of a report is named like an address).
fn opens_markup(s: &str) -> bool {
    let rest = &s[1..];
    match rest.chars().next() {
        Some('!') | Some('?') => return true,
        Some('/') => return rest[1..].starts_with(is_name_start),
        Some(c) if is_name_start(c) => {}
        _ => return false,
    }
    let Some(end) = rest.find(['<', '>']) else {
        // Never closed: not repairable text; leave it for the parser to refuse.
        return true;
    };
    let tag = &rest[..end];
    let name_end = tag
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(tag.len());
    rest.as_bytes()[end] == b'>' && !tag[..name_end].contains('@')
}

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == ':'
}

/// Whether `s` (starting at a `&`) is a character or entity reference, `&name;` or `&#...;`.
fn starts_reference(s: &str) -> bool {
    let rest = &s[1..];
    let Some(end) = rest.find(';') else {
        return false;
    };
    let name = &rest[..end];
    if let Some(num) = name.strip_prefix('#') {
        return match num.strip_prefix('x') {
            Some(hex) => !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
            None => !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()),
        };
    }
    name.starts_with(is_name_start)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_:.-".contains(c))
}

/// The `<feedback>` element inside a wrapper, as a document of its own, or `None` when there
/// is no complete one.
pub(super) fn unwrap_feedback(text: &str) -> Option<String> {
    let start = text.match_indices("<feedback").find_map(|(i, _)| {
        let next = text[i + "<feedback".len()..].chars().next()?;
        (next == '>' || next.is_whitespace()).then_some(i)
    })?;
    let end = text.rfind("</feedback>")? + "</feedback>".len();
    (end > start).then(|| text[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_bare_ampersands_in_text_are_escaped() {
        let fixed = escape_stray_markup(
            "<a>Postmaster <postmaster@example.com></a><b>Smith & Sons &amp; Co</b><c>x < 3</c>",
        )
        .unwrap();
        assert_eq!(
            fixed,
            "<a>Postmaster &lt;postmaster@example.com&gt;</a><b>Smith &amp; Sons &amp; Co</b><c>x &lt; 3</c>"
        );
        assert_eq!(escape_stray_markup("<a x=\"1\">t</a><b/><!-- c -->"), None);
        // Undeclared entities stay as they are (refused later), mismatched tags too.
        assert_eq!(escape_stray_markup("<a>&foo;</a><b>t</c>"), None);
    }

    #[test]
    fn a_wrapper_is_removed_and_dtds_are_seen_anywhere() {
        assert_eq!(
            unwrap_feedback("<xs:schema x=\"1\">\n<feedback a=\"b\"><c/></feedback>\n</xs:schema>")
                .as_deref(),
            Some("<feedback a=\"b\"><c/></feedback>")
        );
        assert_eq!(unwrap_feedback("<feedbacks></feedbacks>"), None);
        assert!(has_dtd("<x>\n<!doctype x [<!ENTITY a \"b\">]>"));
        assert!(!has_dtd("<feedback/>"));
    }
}
