//! SPF record syntax (RFC 7208 §4.6, §5, §6 and the §12 ABNF): a `v=spf1` record parsed into
//! directives and the `redirect`/`exp` modifiers, with macro-strings in [`macros`].
//!
//! Our own parser because the one in mail-auth accepts records the ABNF rejects (non-ASCII
//! and control characters, out-of-range CIDR lengths, domain-specs without a valid top label,
//! malformed or repeated modifiers) and rejects some it allows (`a:foo:bar/baz.example.com`).
//! §4.6 makes any syntax error anywhere in the record a permerror, so a record is parsed
//! whole before any of it is evaluated.

mod error;
mod macros;

pub(crate) use error::SyntaxError;
pub(crate) use macros::{Letter, MacroContext, MacroString, MacroVars};

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed SPF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub directives: Vec<Directive>,
    pub redirect: Option<MacroString>,
    pub exp: Option<MacroString>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

/// A mechanism (§5); a missing domain-spec means the current domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mechanism {
    All,
    Include(MacroString),
    A {
        domain: Option<MacroString>,
        cidr: DualCidr,
    },
    Mx {
        domain: Option<MacroString>,
        cidr: DualCidr,
    },
    Ptr(Option<MacroString>),
    Ip4(Ipv4Net),
    Ip6(Ipv6Net),
    Exists(MacroString),
}

impl Mechanism {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Mechanism::All => "all",
            Mechanism::Include(_) => "include",
            Mechanism::A { .. } => "a",
            Mechanism::Mx { .. } => "mx",
            Mechanism::Ptr(_) => "ptr",
            Mechanism::Ip4(_) => "ip4",
            Mechanism::Ip6(_) => "ip6",
            Mechanism::Exists(_) => "exists",
        }
    }
}

/// The prefix lengths of `a` and `mx` (§5.6 `dual-cidr-length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DualCidr {
    pub v4: u8,
    pub v6: u8,
}

impl DualCidr {
    /// Is `client` within the prefix of `addr` its address family calls for?
    pub(crate) fn contains(&self, addr: IpAddr, client: IpAddr) -> bool {
        match (addr, client) {
            (IpAddr::V4(a), IpAddr::V4(c)) => {
                Ipv4Net::new(a, self.v4).is_ok_and(|net| net.contains(&c))
            }
            (IpAddr::V6(a), IpAddr::V6(c)) => {
                Ipv6Net::new(a, self.v6).is_ok_and(|net| net.contains(&c))
            }
            _ => false,
        }
    }
}

impl Record {
    /// Parses the text of a TXT record that starts with `v=spf1` (its strings joined).
    pub(crate) fn parse(text: &[u8]) -> Result<Record, SyntaxError> {
        // Terms are visible ASCII separated by spaces; anything else (8-bit, tab, CR, NUL) is
        // an error wherever it is (§3.1, §4.6.1).
        if let Some(bad) = text.iter().find(|&&b| !(b == b' ' || b.is_ascii_graphic())) {
            return Err(SyntaxError::new(format!("character {bad:#04x} in record")));
        }
        let text = std::str::from_utf8(text).map_err(|_| SyntaxError::new("not ASCII"))?;
        let terms = match text.get(..6) {
            Some(v) if v.eq_ignore_ascii_case("v=spf1") => &text[6..],
            _ => return Err(SyntaxError::new("no v=spf1 version")),
        };
        if !terms.is_empty() && !terms.starts_with(' ') {
            return Err(SyntaxError::new("no space after v=spf1"));
        }
        let mut record = Record {
            directives: Vec::new(),
            redirect: None,
            exp: None,
        };
        for term in terms.split(' ').filter(|t| !t.is_empty()) {
            parse_term(term, &mut record)?;
        }
        Ok(record)
    }
}

fn parse_term(term: &str, record: &mut Record) -> Result<(), SyntaxError> {
    // §4.6.1: a term is a modifier if a name is followed by "=" (before any ":" or "/").
    let name_len = term
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        .count();
    if term.as_bytes().get(name_len) == Some(&b'=') {
        return parse_modifier(&term[..name_len], &term[name_len + 1..], record);
    }
    let directive = parse_directive(term)?;
    record.directives.push(directive);
    Ok(())
}

fn parse_modifier(name: &str, value: &str, record: &mut Record) -> Result<(), SyntaxError> {
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(SyntaxError::new(format!("bad modifier name '{name}'")));
    }
    // The known modifiers are not also unknown-modifiers: "redirect=-all" is an error, not
    // something to ignore; and each may appear once (§6).
    let slot = if name.eq_ignore_ascii_case("redirect") {
        &mut record.redirect
    } else if name.eq_ignore_ascii_case("exp") {
        &mut record.exp
    } else {
        MacroString::parse(value, MacroContext::Modifier)?;
        return Ok(());
    };
    if slot.is_some() {
        return Err(SyntaxError::new(format!("{name}= given twice")));
    }
    *slot = Some(domain_spec(value)?);
    Ok(())
}

fn parse_directive(term: &str) -> Result<Directive, SyntaxError> {
    let (qualifier, rest) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let (name, args) = rest.split_at(name_len);
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(required_domain(args)?),
        "a" => {
            let (domain, cidr) = domain_and_cidr(args)?;
            Mechanism::A { domain, cidr }
        }
        "mx" => {
            let (domain, cidr) = domain_and_cidr(args)?;
            Mechanism::Mx { domain, cidr }
        }
        "ptr" if args.is_empty() => Mechanism::Ptr(None),
        "ptr" => Mechanism::Ptr(Some(required_domain(args)?)),
        "ip4" => {
            let (addr, len) = network(args)?;
            let addr = ip4_network(addr)?;
            let len = len.map_or(Ok(32), |l| cidr_length(l, 32))?;
            Mechanism::Ip4(Ipv4Net::new(addr, len).map_err(|e| SyntaxError::new(e.to_string()))?)
        }
        "ip6" => {
            let (addr, len) = network(args)?;
            let addr: Ipv6Addr = addr
                .parse()
                .map_err(|_| SyntaxError::new(format!("bad IPv6 network '{addr}'")))?;
            let len = len.map_or(Ok(128), |l| cidr_length(l, 128))?;
            Mechanism::Ip6(Ipv6Net::new(addr, len).map_err(|e| SyntaxError::new(e.to_string()))?)
        }
        "exists" => Mechanism::Exists(required_domain(args)?),
        _ => {
            return Err(SyntaxError::new(format!(
                "unknown or malformed mechanism '{term}'"
            )))
        }
    };
    Ok(Directive {
        qualifier,
        mechanism,
    })
}

/// `":" domain-spec`.
fn required_domain(args: &str) -> Result<MacroString, SyntaxError> {
    let spec = args
        .strip_prefix(':')
        .ok_or_else(|| SyntaxError::new(format!("expected ':' and a domain, got '{args}'")))?;
    domain_spec(spec)
}

/// `[ ":" domain-spec ] [ dual-cidr-length ]`, for `a` and `mx`.
///
/// A domain-spec ends in a top label or a macro, never in "/digits", so the lengths can be
/// taken off the end first; the rest, slashes and colons included, is the domain-spec.
fn domain_and_cidr(args: &str) -> Result<(Option<MacroString>, DualCidr), SyntaxError> {
    let (rest, v6) = match trailing_length(args, "//") {
        Some((rest, digits)) => (rest, cidr_length(digits, 128)?),
        None => (args, 128),
    };
    let (rest, v4) = match trailing_length(rest, "/") {
        Some((rest, digits)) => (rest, cidr_length(digits, 32)?),
        None => (rest, 32),
    };
    let domain = if rest.is_empty() {
        None
    } else {
        Some(required_domain(rest)?)
    };
    Ok((domain, DualCidr { v4, v6 }))
}

/// Splits `<rest><separator><digits>` at the end of `s`.
fn trailing_length<'s>(s: &'s str, separator: &str) -> Option<(&'s str, &'s str)> {
    let digits = s.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (head, digits) = s.split_at(s.len() - digits);
    head.strip_suffix(separator).map(|rest| (rest, digits))
}

/// `":" network [ "/" length ]` for `ip4` and `ip6`.
fn network(args: &str) -> Result<(&str, Option<&str>), SyntaxError> {
    let args = args
        .strip_prefix(':')
        .ok_or_else(|| SyntaxError::new("ip4/ip6 without a network"))?;
    Ok(match args.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (args, None),
    })
}

/// A CIDR length: `"0" / %x31-39 *DIGIT` up to `max` (§5.6). A leading zero is an error, as
/// it is in ip4-network.
fn cidr_length(digits: &str, max: u8) -> Result<u8, SyntaxError> {
    let bad = || SyntaxError::new(format!("bad CIDR length '{digits}' (0-{max})"));
    let well_formed = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !well_formed {
        return Err(bad());
    }
    let len: u8 = digits.parse().map_err(|_| bad())?;
    if len > max {
        return Err(bad());
    }
    Ok(len)
}

/// `qnum "." qnum "." qnum "." qnum`: four decimal octets, no leading zeros, nothing omitted.
fn ip4_network(text: &str) -> Result<Ipv4Addr, SyntaxError> {
    let bad = || SyntaxError::new(format!("bad IPv4 network '{text}'"));
    let mut octets = [0u8; 4];
    let mut fields = text.split('.');
    for octet in &mut octets {
        let field = fields.next().ok_or_else(bad)?;
        let well_formed = !field.is_empty()
            && field.len() <= 3
            && field.bytes().all(|b| b.is_ascii_digit())
            && (field == "0" || !field.starts_with('0'));
        if !well_formed {
            return Err(bad());
        }
        *octet = field.parse().map_err(|_| bad())?;
    }
    if fields.next().is_some() {
        return Err(bad());
    }
    Ok(Ipv4Addr::from(octets))
}

/// `domain-spec = macro-string domain-end` where
/// `domain-end = ( "." toplabel [ "." ] ) / macro-expand` (§7.1).
fn domain_spec(text: &str) -> Result<MacroString, SyntaxError> {
    let spec = MacroString::parse(text, MacroContext::Domain)?;
    if let Some(tail) = spec.trailing_literal() {
        let tail = tail.strip_suffix('.').unwrap_or(tail);
        let valid = tail
            .rsplit_once('.')
            .is_some_and(|(_, top)| is_toplabel(top));
        if !valid {
            return Err(SyntaxError::new(format!(
                "domain-spec '{text}' must end in a macro or a dot and a valid top label"
            )));
        }
    }
    Ok(spec)
}

/// `toplabel = ( *alphanum ALPHA *alphanum ) /
///             ( 1*alphanum "-" *( alphanum / "-" ) alphanum )`
fn is_toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-') {
        return false;
    }
    if b.contains(&b'-') {
        first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()
    } else {
        b.iter().any(u8::is_ascii_alphabetic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Record, SyntaxError> {
        Record::parse(text.as_bytes())
    }

    fn mechanisms(text: &str) -> Vec<Mechanism> {
        let record = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        record.directives.into_iter().map(|d| d.mechanism).collect()
    }

    #[test]
    fn accepts_what_the_abnf_allows() {
        for text in [
            "v=spf1",
            "V=SPF1 -all",
            "v=spf1  a   mx -all ",
            "v=spf1 +a -mx ~ptr ?exists:%{i}.example.com all",
            "v=spf1 a:foo:bar/baz.example.com",
            "v=spf1 a:foo.example.xn--zckzah a:abc.123-4 mx:%{d}",
            "v=spf1 include:o.spf.example.com. redirect=%{d}.d.spf.example.com.",
            "v=spf1 exists:macro%%percent%_%_space%-url-space.example.com",
            "v=spf1 ip4:0.0.0.0/0 ip4:255.255.255.255/32 ip6:::/0 ip6:2001:db8::/128",
            "v=spf1 ip6:::1.1.1.1/0 ip6:Cafe:Babe:8000::/33",
            "v=spf1 moo.cow-far_out=man:dog/cat default=+ x= exp=explain._spf.%{d}",
            "v=spf1 ptr:example.com -all",
        ] {
            assert!(parse(text).is_ok(), "{text:?}: {:?}", parse(text));
        }
    }

    #[test]
    fn rejects_what_it_does_not() {
        for text in [
            // Characters: only visible ASCII and spaces (§3.1, §4.6.1).
            "v=spf1 a:\u{feff}garbage.example.net -all",
            "v=spf1 \u{80}a:example.net -all",
            "v=spf1 a:ctrl.example.com\rptr -all",
            "v=spf1 ip4:192.0.2.5\n include:example.com",
            "v=spf1 a:foo.example.com\0",
            "v=spf1\t-all",
            // Mechanism syntax.
            "v=spf1 moo",
            "v=spf1 -all.",
            "v=spf1 -all:foobar",
            "v=spf1 -all/8",
            "v=spf1 ptr/0",
            "v=spf1 ptr:",
            "v=spf1 include",
            "v=spf1 include:",
            "v=spf1 include:ip5.example.com/24",
            "v=spf1 exists",
            "v=spf1 exists:mail.example.com/24",
            "v=spf1 redirect:t2.example.com",
            "v=spf1 +",
            // Addresses and CIDR lengths (§5.6).
            "v=spf1 ip4",
            "v=spf1 ip4:1.2.3",
            "v=spf1 ip4:1.2.3.4:8080",
            "v=spf1 ip4:01.2.3.4",
            "v=spf1 ip4:1.2.3.256",
            "v=spf1 ip4:1.2.3.4/33",
            "v=spf1 ip4:1.2.3.4/032",
            "v=spf1 ip4:1.2.3.4//32",
            "v=spf1 ip4:1.2.3.4/",
            "v=spf1 -all ip6",
            "v=spf1 ip6::CAFE::BABE",
            "v=spf1 ip6:::1.1.1.1/129",
            "v=spf1 ip6:::1.1.1.1//33",
            "v=spf1 a/33",
            "v=spf1 a//129",
            "v=spf1 a/24/64",
            "v=spf1 a///64",
            "v=spf1 mx/33 -all",
            // domain-end (§7.1).
            "v=spf1 a:",
            "v=spf1 a:museum",
            "v=spf1 a:museum.",
            "v=spf1 a:abc.123",
            "v=spf1 a:111.222.33.44",
            "v=spf1 a:example.-com",
            "v=spf1 a:example.com-",
            "v=spf1 a:example.com:8080",
            "v=spf1 a:foo-bar",
            "v=spf1 a:%{d}.",
            "v=spf1 mx:abc.123",
            // Macros.
            "v=spf1 exists:%(ir).sbl.example.com",
            "v=spf1 exists:foo%.sbl.example.com",
            "v=spf1 a:%{a}.example.com",
            "v=spf1 -all exp=%{r}.example.com",
            // Modifiers (§6, §12).
            "v=spf1 1up=foo",
            "v=spf1 =all",
            "v=spf1 -foo=bar",
            "v=spf1 moo.cow/far_out=man:dog/cat",
            "v=spf1 moo.cow:far_out=man:dog/cat",
            "v=spf1 -all foo=%abc",
            "v=spf1 redirect=-all ?all",
            "v=spf1 ?all redirect=",
            "v=spf1 exp=-all",
            "v=spf1 exp= -all",
            "v=spf1 exp=a.example.com -all exp=b.example.com",
            "v=spf1 redirect=a.example.com REDIRECT=a.example.com",
            // Version.
            "v=spf1-all",
            "v=spf2 -all",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn qualifiers_and_defaults() {
        let record = parse("v=spf1 +a -mx ~ptr ?all include:x.example.com").unwrap();
        let qualifiers: Vec<_> = record.directives.iter().map(|d| d.qualifier).collect();
        assert_eq!(
            qualifiers,
            [
                Qualifier::Pass,
                Qualifier::Fail,
                Qualifier::SoftFail,
                Qualifier::Neutral,
                Qualifier::Pass
            ]
        );
        assert!(record.redirect.is_none() && record.exp.is_none());
        let full = DualCidr { v4: 32, v6: 128 };
        assert_eq!(
            mechanisms("v=spf1 a mx")[..],
            [
                Mechanism::A {
                    domain: None,
                    cidr: full
                },
                Mechanism::Mx {
                    domain: None,
                    cidr: full
                }
            ]
        );
    }

    #[test]
    fn dual_cidr_lengths() {
        let cidr = |text: &str| match &mechanisms(text)[0] {
            Mechanism::A { cidr, domain } | Mechanism::Mx { cidr, domain } => {
                (domain.is_some(), cidr.v4, cidr.v6)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(cidr("v=spf1 a/24//64"), (false, 24, 64));
        assert_eq!(cidr("v=spf1 a//0"), (false, 32, 0));
        assert_eq!(cidr("v=spf1 mx/0"), (false, 0, 128));
        assert_eq!(cidr("v=spf1 a:foo.example.com/24"), (true, 24, 128));
        assert_eq!(
            cidr("v=spf1 mx:foo:bar/baz.example.com//48"),
            (true, 32, 48)
        );

        let c = DualCidr { v4: 24, v6: 64 };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c.contains(ip("192.0.2.1"), ip("192.0.2.200")));
        assert!(!c.contains(ip("192.0.2.1"), ip("192.0.3.1")));
        assert!(c.contains(ip("2001:db8::1"), ip("2001:db8::ffff")));
        assert!(!c.contains(ip("2001:db8::1"), ip("192.0.2.1")));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            mechanisms("v=spf1 ip4:192.0.2.7/24 ip6:2001:DB8::/32")[..],
            [
                Mechanism::Ip4("192.0.2.7/24".parse().unwrap()),
                Mechanism::Ip6("2001:db8::/32".parse().unwrap())
            ]
        );
    }

    #[test]
    fn modifiers() {
        let record = parse("v=spf1 Exp=why.%{d} unknown=%{c} Redirect=_spf.example.com").unwrap();
        assert!(record.directives.is_empty());
        assert!(record.exp.is_some());
        assert!(record.redirect.is_some());
    }

    #[test]
    fn toplabels() {
        for good in ["com", "xn--zckzah", "a1", "1a", "123-456", "a-b"] {
            assert!(is_toplabel(good), "{good}");
        }
        for bad in ["", "123", "-com", "com-", "co_m", "co:m"] {
            assert!(!is_toplabel(bad), "{bad}");
        }
    }
}
