//! The BIMI Assertion Record (draft-brand-indicators-for-message-identification §4.2) and
//! the `BIMI-Selector` header field (§4.3): parsing only, no I/O.

/// A parsed `v=BIMI1` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// `l=`: the indicator's HTTPS URI; `None` when empty.
    pub location: Option<String>,
    /// `a=`: the evidence document's (mark certificate's) HTTPS URI; `None` when empty.
    pub authority: Option<String>,
}

impl Assertion {
    /// `l=` and `a=` both empty: the domain declines to publish an indicator (§4.2).
    pub fn is_declination(&self) -> bool {
        self.location.is_none() && self.authority.is_none()
    }
}

/// Whether a TXT string is meant as a BIMI record (starts with `v=BIMI1`), the test that
/// decides which of the strings at a name count (§4.4 step 4).
pub fn is_bimi(txt: &str) -> bool {
    let mut tags = txt.split(';');
    tags.next()
        .and_then(|t| t.split_once('='))
        .is_some_and(|(k, v)| k.trim() == "v" && v.trim() == "BIMI1")
}

/// Parses a record: `v=BIMI1` first, then tags; unknown tags are ignored (§4.2), `l=` and
/// `a=` must be HTTPS URIs when not empty.
pub fn parse(txt: &str) -> Result<Assertion, String> {
    if !is_bimi(txt) {
        return Err("record does not start with v=BIMI1".into());
    }
    let mut location = None;
    let mut authority = None;
    let mut seen = Vec::new();
    for tag in txt.split(';').skip(1) {
        let tag = tag.trim();
        if tag.is_empty() {
            continue;
        }
        let Some((name, value)) = tag.split_once('=') else {
            return Err(format!("malformed tag `{tag}`"));
        };
        let name = name.trim();
        let value = value.trim();
        if seen.contains(&name) {
            return Err(format!("tag {name}= given twice"));
        }
        seen.push(name);
        match name {
            "l" => location = https_uri(value, "l")?,
            "a" => authority = https_uri(value, "a")?,
            _ => {}
        }
    }
    Ok(Assertion {
        location,
        authority,
    })
}

fn https_uri(value: &str, tag: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    // Earlier drafts allowed a comma-separated list in l=; one URI is what the current
    // draft defines, and what we can show.
    if value.contains(',') {
        return Err(format!("{tag}= holds several URIs"));
    }
    let ok = value.len() <= 2048
        && value
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        && value.len() > 8
        && value.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(format!("{tag}= is not an https URI"));
    }
    Ok(Some(value.to_string()))
}

/// The selector a `BIMI-Selector` value names (`v=BIMI1; s=brand;`), if it is well formed.
pub fn selector_of(value: &str) -> Option<String> {
    if !is_bimi(value.trim()) {
        return None;
    }
    let s = value.split(';').skip(1).find_map(|t| {
        let (k, v) = t.split_once('=')?;
        (k.trim() == "s").then(|| v.trim().to_ascii_lowercase())
    })?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (s.split('.').all(label_ok)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_declinations_are_seen() {
        let a = parse("v=BIMI1; l=https://x.example/l.svg; a=https://x.example/a.pem").unwrap();
        assert_eq!(a.location.as_deref(), Some("https://x.example/l.svg"));
        assert_eq!(a.authority.as_deref(), Some("https://x.example/a.pem"));
        assert!(parse("v=BIMI1; l=; a=;").unwrap().is_declination());
        assert!(parse("v=BIMI1;").unwrap().is_declination());
        assert!(parse("v=BIMI1; l=http://x.example/l.svg").is_err());
        assert!(parse("v=BIMI1; l=https://a/1,https://a/2").is_err());
        assert!(parse("v=BIMI1; l=https://a/1; l=https://a/2").is_err());
        assert!(parse("l=https://a/1; v=BIMI1").is_err());
        assert!(!is_bimi("v=spf1 -all"));
    }

    #[test]
    fn selectors_are_read_from_the_header() {
        assert_eq!(selector_of(" v=BIMI1; s=Brand;").as_deref(), Some("brand"));
        assert_eq!(selector_of("v=BIMI1; s=a b;"), None);
        assert_eq!(selector_of("s=brand"), None);
    }
}
