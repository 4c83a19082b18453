//! SPF macro-strings (RFC 7208 §7): parsing to the §7.1 ABNF and expansion by the §7.3 rules.
//!
//! Macros put the client's address, the sender and the names being evaluated into domain
//! names and explanation text. The syntax is checked when the record is parsed (a bad macro
//! anywhere makes the record a permerror); expansion itself cannot fail.

use super::error::SyntaxError;
use std::net::IpAddr;

/// Where a macro-string appears; that decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MacroContext {
    /// A domain-spec: `c`, `r` and `t` are for explanations only (§7.1).
    Domain,
    /// The value of an unknown modifier: any macro-string, never expanded.
    Modifier,
    /// An explanation TXT record (explain-string): spaces allowed, every letter allowed.
    Explanation,
}

/// A macro letter (§7.3); the names are the RFC's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Letter {
    /// `<sender>`
    S,
    /// Local-part of `<sender>`
    L,
    /// Domain of `<sender>`
    O,
    /// `<domain>`, the name being evaluated
    D,
    /// `<ip>`, dotted quad or dotted nibbles
    I,
    /// The validated domain name of `<ip>`
    P,
    /// `in-addr` or `ip6`
    V,
    /// HELO/EHLO domain
    H,
    /// `<ip>` for people to read
    C,
    /// The receiving host's domain
    R,
    /// Current timestamp
    T,
}

impl Letter {
    fn from_byte(b: u8) -> Option<Letter> {
        Some(match b.to_ascii_lowercase() {
            b's' => Letter::S,
            b'l' => Letter::L,
            b'o' => Letter::O,
            b'd' => Letter::D,
            b'i' => Letter::I,
            b'p' => Letter::P,
            b'v' => Letter::V,
            b'h' => Letter::H,
            b'c' => Letter::C,
            b'r' => Letter::R,
            b't' => Letter::T,
            _ => return None,
        })
    }
}

/// One `%{...}` macro.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expand {
    letter: Letter,
    /// The letter was upper case: URL-escape the value.
    escape: bool,
    /// Keep this many right-hand parts (the DIGIT transformer).
    keep: Option<usize>,
    reverse: bool,
    /// Characters the value is split on; empty means the default ".".
    delimiters: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Expand(Expand),
    /// `%%`, `%_` or `%-`: macro-expands in the grammar (so they can end a domain-spec), but
    /// with a fixed value.
    Fixed(&'static str),
}

/// A parsed macro-string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MacroString {
    parts: Vec<Part>,
}

/// The values macro letters expand to (§7.3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MacroVars<'a> {
    pub sender: &'a str,
    pub local: &'a str,
    pub sender_domain: &'a str,
    pub domain: &'a str,
    pub ip: IpAddr,
    /// `%{p}`: already chosen by the caller, "unknown" when there is none.
    pub validated: &'a str,
    pub helo: &'a str,
    pub receiver: &'a str,
    pub timestamp: u64,
}

/// RFC 7208 §7.3: an expanded name used in a query is cut to this many octets.
const MAX_DOMAIN_LEN: usize = 253;

impl MacroString {
    /// Parses `text` as a macro-string (or, in [`MacroContext::Explanation`], an
    /// explain-string).
    pub(crate) fn parse(text: &str, context: MacroContext) -> Result<MacroString, SyntaxError> {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'%' {
                // macro-literal is visible ASCII; explain-string adds SP.
                let allowed =
                    b.is_ascii_graphic() || (b == b' ' && context == MacroContext::Explanation);
                if !allowed {
                    return Err(SyntaxError::new(format!(
                        "character {b:#04x} in macro-string"
                    )));
                }
                literal.push(char::from(b));
                i += 1;
                continue;
            }
            let part = match bytes.get(i + 1) {
                Some(b'%') => Part::Fixed("%"),
                Some(b'_') => Part::Fixed(" "),
                Some(b'-') => Part::Fixed("%20"),
                Some(b'{') => {
                    let close = bytes[i + 2..]
                        .iter()
                        .position(|&c| c == b'}')
                        .ok_or_else(|| SyntaxError::new("unterminated macro"))?;
                    let body = &bytes[i + 2..i + 2 + close];
                    let expand = parse_expand(body, context)?;
                    i += close + 1; // the body and "}"; the "%{" is skipped below
                    Part::Expand(expand)
                }
                _ => return Err(SyntaxError::new("'%' not followed by '{', '%', '_' or '-'")),
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            i += 2;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(MacroString { parts })
    }

    /// Literal text after the last macro-expand (all of it if there is none); `None` when the
    /// string ends with a macro-expand. The domain-spec rule (§7.1 `domain-end`) needs this.
    pub(crate) fn trailing_literal(&self) -> Option<&str> {
        match self.parts.last() {
            None => Some(""),
            Some(Part::Literal(text)) => Some(text),
            Some(_) => None,
        }
    }

    /// Does expansion need the value of `letter`? (`%{p}` costs DNS lookups.)
    pub(crate) fn uses(&self, letter: Letter) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Expand(e) if e.letter == letter))
    }

    /// Expands the string as text (an explanation).
    pub(crate) fn expand(&self, vars: &MacroVars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Fixed(text) => out.push_str(text),
                Part::Expand(e) => out.push_str(&e.expand(vars)),
            }
        }
        out
    }

    /// Expands a domain-spec into the name to query: without a trailing dot, and cut from the
    /// left to at most 253 octets (§7.3).
    pub(crate) fn expand_domain(&self, vars: &MacroVars<'_>) -> String {
        let expanded = self.expand(vars);
        let name = expanded.strip_suffix('.').unwrap_or(&expanded);
        truncate_domain(name).to_string()
    }
}

/// Removes whole labels from the left until `name` fits in 253 octets (§7.3). A name with no
/// dot left to cut at stays too long, and so cannot be queried.
fn truncate_domain(mut name: &str) -> &str {
    while name.len() > MAX_DOMAIN_LEN {
        match name.split_once('.') {
            Some((_, rest)) => name = rest,
            None => break,
        }
    }
    name
}

/// Parses the inside of `%{...}`: `macro-letter transformers *delimiter`.
fn parse_expand(body: &[u8], context: MacroContext) -> Result<Expand, SyntaxError> {
    let (&first, rest) = body
        .split_first()
        .ok_or_else(|| SyntaxError::new("empty macro"))?;
    let letter = Letter::from_byte(first)
        .ok_or_else(|| SyntaxError::new(format!("unknown macro letter '{}'", char::from(first))))?;
    if context == MacroContext::Domain && matches!(letter, Letter::C | Letter::R | Letter::T) {
        return Err(SyntaxError::new(
            "macros c, r and t are allowed only in explanations",
        ));
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let keep = if digits == 0 {
        None
    } else {
        // More parts than there are simply means all of them, so saturate.
        let n = rest[..digits].iter().fold(0usize, |n, d| {
            n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
        });
        if n == 0 {
            return Err(SyntaxError::new("macro part count must be nonzero"));
        }
        Some(n)
    };
    let rest = &rest[digits..];
    let (reverse, rest) = match rest.split_first() {
        Some((b'r' | b'R', rest)) => (true, rest),
        _ => (false, rest),
    };
    if let Some(bad) = rest.iter().find(|b| !b".-+,/_=".contains(b)) {
        return Err(SyntaxError::new(format!(
            "bad macro delimiter '{}'",
            char::from(*bad)
        )));
    }
    Ok(Expand {
        letter,
        escape: first.is_ascii_uppercase(),
        keep,
        reverse,
        delimiters: rest.to_vec(),
    })
}

impl Expand {
    fn expand(&self, vars: &MacroVars<'_>) -> String {
        let value = letter_value(self.letter, vars);
        let value = if self.keep.is_none() && !self.reverse && self.delimiters.is_empty() {
            value
        } else {
            let delimiters: &[u8] = if self.delimiters.is_empty() {
                b"."
            } else {
                &self.delimiters
            };
            let mut parts: Vec<&str> = value
                .split(|c: char| c.is_ascii() && delimiters.contains(&(c as u8)))
                .collect();
            if self.reverse {
                parts.reverse();
            }
            let skip = parts.len().saturating_sub(self.keep.unwrap_or(usize::MAX));
            parts[skip..].join(".")
        };
        if self.escape {
            url_escape(&value)
        } else {
            value
        }
    }
}

fn letter_value(letter: Letter, vars: &MacroVars<'_>) -> String {
    match letter {
        Letter::S => vars.sender.to_string(),
        Letter::L => vars.local.to_string(),
        Letter::O => vars.sender_domain.to_string(),
        Letter::D => vars.domain.to_string(),
        Letter::I => match vars.ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => dotted_nibbles(&ip.octets()),
        },
        Letter::P => vars.validated.to_string(),
        Letter::V => match vars.ip {
            IpAddr::V4(_) => "in-addr".into(),
            IpAddr::V6(_) => "ip6".into(),
        },
        Letter::H => vars.helo.to_string(),
        Letter::C => vars.ip.to_string(),
        Letter::R if vars.receiver.is_empty() => "unknown".into(),
        Letter::R => vars.receiver.to_string(),
        Letter::T => vars.timestamp.to_string(),
    }
}

/// The "dot-format" of an IPv6 address (§7.3): 32 nibbles, most significant first. The RFC
/// does not fix their case; upper case is what the RFC 7208 test suite's explanations expect
/// (DNS does not care either way).
fn dotted_nibbles(octets: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(63);
    for (i, &b) in octets.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push('.');
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// URL escaping for upper-case macros (§7.3): everything outside RFC 3986 "unreserved" is
/// percent-encoded, with upper-case hex as RFC 3986 §2.1 recommends.
fn url_escape(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setting of RFC 7208 §7.4's examples.
    fn rfc_vars(ip: &str) -> MacroVars<'static> {
        MacroVars {
            sender: "strong-bad@email.example.com",
            local: "strong-bad",
            sender_domain: "email.example.com",
            domain: "email.example.com",
            ip: ip.parse().unwrap(),
            validated: "mx.example.org",
            helo: "mx.example.org",
            receiver: "receiver.example.net",
            timestamp: 1_700_000_000,
        }
    }

    fn expand(text: &str, vars: &MacroVars<'_>) -> String {
        MacroString::parse(text, MacroContext::Explanation)
            .unwrap()
            .expand(vars)
    }

    #[test]
    fn rfc7208_section_7_4_single_macros() {
        let vars = rfc_vars("192.0.2.3");
        for (macro_, expansion) in [
            ("%{s}", "strong-bad@email.example.com"),
            ("%{o}", "email.example.com"),
            ("%{d}", "email.example.com"),
            ("%{d4}", "email.example.com"),
            ("%{d3}", "email.example.com"),
            ("%{d2}", "example.com"),
            ("%{d1}", "com"),
            ("%{dr}", "com.example.email"),
            ("%{d2r}", "example.email"),
            ("%{l}", "strong-bad"),
            ("%{l-}", "strong.bad"),
            ("%{lr}", "strong-bad"),
            ("%{lr-}", "bad.strong"),
            ("%{l1r-}", "strong"),
        ] {
            assert_eq!(expand(macro_, &vars), expansion, "{macro_}");
        }
    }

    #[test]
    fn rfc7208_section_7_4_macro_strings() {
        let vars = rfc_vars("192.0.2.3");
        for (text, expansion) in [
            (
                "%{ir}.%{v}._spf.%{d2}",
                "3.2.0.192.in-addr._spf.example.com",
            ),
            ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
            (
                "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
                "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
            ),
            (
                "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
                "3.2.0.192.in-addr.strong.lp._spf.example.com",
            ),
            (
                "%{d2}.trusted-domains.example.net",
                "example.com.trusted-domains.example.net",
            ),
        ] {
            let spec = MacroString::parse(text, MacroContext::Domain).unwrap();
            assert_eq!(spec.expand_domain(&vars), expansion, "{text}");
        }
    }

    #[test]
    fn rfc7208_section_7_4_ipv6() {
        let vars = rfc_vars("2001:db8::cb01");
        let spec = MacroString::parse("%{ir}.%{v}._spf.%{d2}", MacroContext::Domain).unwrap();
        let got = spec.expand_domain(&vars);
        // The RFC prints the nibbles in lower case; we use upper case (see dotted_nibbles).
        let rfc =
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com";
        assert!(got.eq_ignore_ascii_case(rfc), "{got}");
        assert_eq!(
            got,
            "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"
        );
        assert_eq!(expand("%{c} %{i1}", &vars), "2001:db8::cb01 1");
    }

    #[test]
    fn fixed_expansions_and_explanation_letters() {
        let vars = rfc_vars("192.0.2.3");
        assert_eq!(expand("a%%b%_c%-d", &vars), "a%b c%20d");
        assert_eq!(
            expand("%{c} to %{r} at %{t}, via %{h} (%{p})", &vars),
            "192.0.2.3 to receiver.example.net at 1700000000, via mx.example.org (mx.example.org)"
        );
        let no_receiver = MacroVars {
            receiver: "",
            ..vars
        };
        assert_eq!(expand("%{r}", &no_receiver), "unknown");
    }

    #[test]
    fn upper_case_macros_are_url_escaped() {
        let vars = MacroVars {
            local: "~jack&jill=up-a_b3.c",
            ..rfc_vars("192.0.2.3")
        };
        assert_eq!(expand("%{L}", &vars), "~jack%26jill%3Dup-a_b3.c");
        assert_eq!(expand("%{l}", &vars), "~jack&jill=up-a_b3.c");
        assert_eq!(expand("%{S}", &vars), "strong-bad%40email.example.com");
        assert_eq!(expand("%{D2R}", &vars), "example.email");
    }

    #[test]
    fn several_delimiters_split_alike() {
        let vars = MacroVars {
            local: "foo-bar+zip+quux",
            ..rfc_vars("192.0.2.3")
        };
        assert_eq!(expand("%{l2r+-}", &vars), "bar.foo");
        assert_eq!(expand("%{l+-}", &vars), "foo.bar.zip.quux");
        assert_eq!(
            expand("%{l99999999999999999999}", &vars),
            "foo-bar+zip+quux"
        );
    }

    #[test]
    fn long_names_lose_labels_from_the_left() {
        // 3 * 61 + 59 + 11 = 253 octets: fits exactly once "x." is gone.
        let (a, b) = ("a".repeat(60), "b".repeat(58));
        let fits = format!("{a}.{a}.{a}.{b}.example.com");
        assert_eq!(fits.len(), MAX_DOMAIN_LEN);
        let name = format!("x.{fits}.");
        let vars = MacroVars {
            domain: &name,
            ..rfc_vars("192.0.2.3")
        };
        let spec = MacroString::parse("%{d}", MacroContext::Domain).unwrap();
        assert_eq!(spec.expand_domain(&vars), fits);
        let longer = format!("x{fits}");
        assert_eq!(truncate_domain(&longer), &longer[62..]);
        assert_eq!(truncate_domain("short.example"), "short.example");
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "%", "foo%", "%x", "%(ir)", "%{", "%{}", "%{a}", "%{d0}", "%{d2x}", "%{d!}", "é",
            "a\tb", "a b",
        ] {
            assert!(
                MacroString::parse(bad, MacroContext::Domain).is_err(),
                "{bad:?} parsed"
            );
        }
        // c, r and t are for explanations only; spaces only in explanations.
        for letter in ["%{c}", "%{r}", "%{t}"] {
            assert!(MacroString::parse(letter, MacroContext::Domain).is_err());
            assert!(MacroString::parse(letter, MacroContext::Explanation).is_ok());
        }
        assert!(MacroString::parse("a b", MacroContext::Explanation).is_ok());
        assert!(MacroString::parse("%{D2R-.+,/_=}", MacroContext::Domain).is_ok());
    }

    #[test]
    fn trailing_literal_sees_fixed_expansions_as_macros() {
        let parse = |t| MacroString::parse(t, MacroContext::Domain).unwrap();
        assert_eq!(
            parse("%{d}.example.com").trailing_literal(),
            Some(".example.com")
        );
        assert_eq!(parse("foo.%{d}").trailing_literal(), None);
        assert_eq!(parse("foo%-").trailing_literal(), None);
        assert_eq!(parse("").trailing_literal(), Some(""));
        assert!(parse("x.%{p}").uses(Letter::P));
        assert!(!parse("x.%{d}").uses(Letter::P));
    }
}
