//! In-memory DNS zones for the test DNS server, and the loaders that build them from the
//! repo's `testdata/dns/*.zone` text files, the RFC 7208 SPF suite's `zonedata` and the
//! DKIM/ARC suites' `{name: txt}` maps.
//!
//! The lookup rules (`Zone::lookup`) mirror the SPF suite's reference driver so that a zone
//! loaded from the suite answers over the wire exactly as the driver would have answered.

// Shared by every integration-test module; no single module uses the whole API.
#![allow(dead_code)]

use hickory_resolver::proto::rr::RecordType;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

// The conformance-suite loaders (`from_spf_suite_zonedata`, `from_txt_json`, ...).
#[path = "dns_zone/suites.rs"]
mod suites;

/// RR type 99 (SPF). hickory has no variant for it, so it travels as `RecordType::Unknown(99)`.
pub const SPF_TYPE: u16 = 99;

/// TTL used when a zone does not set one.
pub const DEFAULT_TTL: u32 = 300;

/// One entry in a name's ordered list. Order matters only around `Timeout`/`ServFail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// One TXT RR made of these character-strings (each at most 255 bytes).
    Txt(Vec<Vec<u8>>),
    /// One type-99 SPF RR, same layout as TXT.
    Spf(Vec<Vec<u8>>),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx {
        preference: u16,
        exchange: String,
    },
    Ptr(String),
    Cname(String),
    /// Queries whose type has no record listed before this marker get no reply at all;
    /// entries after it are never seen.
    Timeout,
    /// Like `Timeout`, but the reply is SERVFAIL.
    ServFail,
}

impl Entry {
    /// The RR type this entry answers, `None` for the markers.
    pub fn record_type(&self) -> Option<RecordType> {
        Some(match self {
            Entry::Txt(_) => RecordType::TXT,
            Entry::Spf(_) => RecordType::from(SPF_TYPE),
            Entry::A(_) => RecordType::A,
            Entry::Aaaa(_) => RecordType::AAAA,
            Entry::Mx { .. } => RecordType::MX,
            Entry::Ptr(_) => RecordType::PTR,
            Entry::Cname(_) => RecordType::CNAME,
            Entry::Timeout | Entry::ServFail => return None,
        })
    }
}

/// What the zone says about one (name, type) question.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'z> {
    /// Records of the asked type, in zone order.
    Records(Vec<&'z Entry>),
    /// The name is an alias. `records` are the target's records of the asked type when the
    /// target is in this zone and has some; otherwise empty, and the resolver chases `target`.
    Alias {
        target: &'z str,
        records: Vec<&'z Entry>,
    },
    /// The name exists but has nothing of that type.
    NoData,
    NxDomain,
    Timeout,
    ServFail,
}

/// Accepts both typed addresses and literals, so tests can write `zone.a(n, "192.0.2.1")`.
pub trait IntoAddr<T> {
    fn into_addr(self) -> T;
}

impl IntoAddr<Ipv4Addr> for Ipv4Addr {
    fn into_addr(self) -> Ipv4Addr {
        self
    }
}

impl IntoAddr<Ipv6Addr> for Ipv6Addr {
    fn into_addr(self) -> Ipv6Addr {
        self
    }
}

impl IntoAddr<Ipv4Addr> for &str {
    fn into_addr(self) -> Ipv4Addr {
        self.parse()
            .unwrap_or_else(|_| panic!("not an IPv4 address: {self:?}"))
    }
}

impl IntoAddr<Ipv6Addr> for &str {
    fn into_addr(self) -> Ipv6Addr {
        self.parse()
            .unwrap_or_else(|_| panic!("not an IPv6 address: {self:?}"))
    }
}

/// An in-memory zone: lower-cased owner name (no trailing dot) -> ordered entries.
#[derive(Clone, Debug)]
pub struct Zone {
    names: HashMap<String, Vec<Entry>>,
    ttl: u32,
}

impl Default for Zone {
    fn default() -> Self {
        Zone::new()
    }
}

/// Owner names compare case-insensitively and with or without the root dot.
pub fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A DNS character-string holds at most 255 bytes, so long values are cut the way DKIM keys
/// are published in practice.
pub fn split_character_strings(value: &[u8]) -> Vec<Vec<u8>> {
    if value.is_empty() {
        return vec![Vec::new()];
    }
    value.chunks(255).map(<[u8]>::to_vec).collect()
}

impl Zone {
    pub fn new() -> Zone {
        Zone {
            names: HashMap::new(),
            ttl: DEFAULT_TTL,
        }
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// TTL of every answer record (lower it to test cache expiry).
    pub fn set_ttl(&mut self, ttl: u32) -> &mut Self {
        self.ttl = ttl;
        self
    }

    pub fn push(&mut self, name: &str, entry: Entry) -> &mut Self {
        self.names
            .entry(normalize_name(name))
            .or_default()
            .push(entry);
        self
    }

    /// One TXT RR; values over 255 bytes become several character-strings.
    pub fn txt(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        self.push(name, Entry::Txt(split_character_strings(value.as_ref())))
    }

    /// One TXT RR with exactly these character-strings (each still capped at 255 bytes).
    pub fn txt_strings<S: AsRef<[u8]>>(
        &mut self,
        name: &str,
        strings: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        self.push(name, Entry::Txt(character_strings(strings)))
    }

    /// One type-99 SPF RR.
    pub fn spf(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        self.push(name, Entry::Spf(split_character_strings(value.as_ref())))
    }

    pub fn a(&mut self, name: &str, ip: impl IntoAddr<Ipv4Addr>) -> &mut Self {
        self.push(name, Entry::A(ip.into_addr()))
    }

    pub fn aaaa(&mut self, name: &str, ip: impl IntoAddr<Ipv6Addr>) -> &mut Self {
        self.push(name, Entry::Aaaa(ip.into_addr()))
    }

    pub fn mx(&mut self, name: &str, preference: u16, exchange: &str) -> &mut Self {
        let exchange = exchange.to_string();
        self.push(
            name,
            Entry::Mx {
                preference,
                exchange,
            },
        )
    }

    pub fn ptr(&mut self, name: &str, target: &str) -> &mut Self {
        self.push(name, Entry::Ptr(target.to_string()))
    }

    pub fn cname(&mut self, name: &str, target: &str) -> &mut Self {
        self.push(name, Entry::Cname(target.to_string()))
    }

    /// Marker: from here on, unanswered types of this name time out.
    pub fn timeout(&mut self, name: &str) -> &mut Self {
        self.push(name, Entry::Timeout)
    }

    /// Marker: from here on, unanswered types of this name get SERVFAIL.
    pub fn servfail(&mut self, name: &str) -> &mut Self {
        self.push(name, Entry::ServFail)
    }

    /// Appends `other`'s entries after ours, name by name (so our markers still win).
    pub fn merge(&mut self, other: Zone) -> &mut Self {
        for (name, entries) in other.names {
            self.names.entry(name).or_default().extend(entries);
        }
        self
    }

    pub fn entries(&self, name: &str) -> Option<&[Entry]> {
        self.names.get(&normalize_name(name)).map(Vec::as_slice)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Answers a question the way the SPF suite's driver does: entries are read in order, a
    /// marker ends the read (and fires if nothing of the type was seen), an absent name is
    /// NXDOMAIN unless it starts with `error.`, and a CNAME is followed one level.
    pub fn lookup(&self, name: &str, rtype: RecordType) -> Outcome<'_> {
        let name = normalize_name(name);
        let Some(entries) = self.names.get(&name) else {
            return if name.starts_with("error.") {
                Outcome::Timeout
            } else {
                Outcome::NxDomain
            };
        };
        let (found, alias, marker) = scan(entries, rtype);
        if !found.is_empty() {
            return Outcome::Records(found);
        }
        match marker {
            Some(Entry::Timeout) => return Outcome::Timeout,
            Some(_) => return Outcome::ServFail,
            None => {}
        }
        let Some(target) = alias else {
            return Outcome::NoData;
        };
        let records = match self.names.get(&normalize_name(target)) {
            Some(target_entries) => {
                let (found, _, _) = scan(target_entries, rtype);
                found
            }
            None => Vec::new(),
        };
        Outcome::Alias { target, records }
    }
}

/// Reads a name's entries for one type: the matching records and the CNAME target seen before
/// the first marker, and the marker itself if it fired (nothing of the type before it).
fn scan(entries: &[Entry], rtype: RecordType) -> (Vec<&Entry>, Option<&str>, Option<&Entry>) {
    let mut found = Vec::new();
    let mut alias = None;
    for entry in entries {
        match entry {
            Entry::Timeout | Entry::ServFail => {
                // The driver only counts records *of the asked type* as "seen"; a CNAME listed
                // before the marker does not stop the timeout.
                let fired = found.is_empty().then_some(entry);
                return (found, alias, fired);
            }
            Entry::Cname(target) if rtype != RecordType::CNAME && rtype != RecordType::ANY => {
                alias.get_or_insert(target.as_str());
            }
            _ if rtype == RecordType::ANY || entry.record_type() == Some(rtype) => {
                found.push(entry)
            }
            _ => {}
        }
    }
    (found, alias, None)
}

/// Keeps the caller's string boundaries, only cutting strings that are too long.
fn character_strings<S: AsRef<[u8]>>(strings: impl IntoIterator<Item = S>) -> Vec<Vec<u8>> {
    strings
        .into_iter()
        .flat_map(|s| split_character_strings(s.as_ref()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Text zone files (format documented in testdata/dns/README.md)

impl Zone {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Zone, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Zone::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses `NAME TYPE VALUE` lines; errors name the offending line.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let mut zone = Zone::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            parse_line(&mut zone, line).map_err(|e| format!("line {}: {e}", index + 1))?;
        }
        Ok(zone)
    }
}

fn parse_line(zone: &mut Zone, line: &str) -> Result<(), String> {
    let (name, rest) = split_token(line);
    let (rtype, value) = split_token(rest);
    if rtype.is_empty() {
        return Err(format!("missing record type after {name:?}"));
    }
    let rtype = rtype.to_ascii_uppercase();
    let one_value = |what: &str| -> Result<&str, String> {
        match value.split_whitespace().collect::<Vec<_>>()[..] {
            [v] => Ok(v),
            _ => Err(format!("{rtype} needs exactly one {what}, got {value:?}")),
        }
    };
    let entry = match rtype.as_str() {
        "TXT" | "SPF" => {
            let strings = if value.starts_with('"') {
                character_strings(parse_quoted(value)?)
            } else if value.is_empty() {
                return Err(format!(
                    "{rtype} needs a value (use \"\" for an empty string)"
                ));
            } else {
                split_character_strings(value.as_bytes())
            };
            if rtype == "TXT" {
                Entry::Txt(strings)
            } else {
                Entry::Spf(strings)
            }
        }
        "A" => Entry::A(
            one_value("address")?
                .parse()
                .map_err(|e| format!("A: {e}"))?,
        ),
        "AAAA" => Entry::Aaaa(
            one_value("address")?
                .parse()
                .map_err(|e| format!("AAAA: {e}"))?,
        ),
        "MX" => match value.split_whitespace().collect::<Vec<_>>()[..] {
            [preference, exchange] => Entry::Mx {
                preference: preference
                    .parse()
                    .map_err(|e| format!("MX preference {preference:?}: {e}"))?,
                exchange: exchange.to_string(),
            },
            _ => return Err(format!("MX needs PREFERENCE EXCHANGE, got {value:?}")),
        },
        "PTR" => Entry::Ptr(one_value("target")?.to_string()),
        "CNAME" => Entry::Cname(one_value("target")?.to_string()),
        "TIMEOUT" | "SERVFAIL" if !value.is_empty() => {
            return Err(format!("{rtype} takes no value, got {value:?}"))
        }
        "TIMEOUT" => Entry::Timeout,
        "SERVFAIL" => Entry::ServFail,
        other => return Err(format!("unknown record type {other:?}")),
    };
    zone.push(name, entry);
    Ok(())
}

/// First whitespace-separated token and the rest with leading whitespace removed.
fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `"a" "b\"c" "\065"`: zone-file style quoting, so binary and quote characters can be written.
fn parse_quoted(value: &str) -> Result<Vec<Vec<u8>>, String> {
    let bytes = value.as_bytes();
    let mut strings = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            return Ok(strings);
        }
        if bytes[i] != b'"' {
            return Err(format!("expected '\"' at column {} of {value:?}", i + 1));
        }
        i += 1;
        let mut current = Vec::new();
        loop {
            match bytes.get(i) {
                None => return Err(format!("unterminated quoted string in {value:?}")),
                Some(b'"') => break,
                Some(b'\\') => {
                    let digits = bytes
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(u8::is_ascii_digit));
                    if let Some(digits) = digits {
                        let code: u32 = std::str::from_utf8(digits)
                            .unwrap_or("")
                            .parse()
                            .unwrap_or(256);
                        current.push(
                            u8::try_from(code).map_err(|_| format!("bad escape in {value:?}"))?,
                        );
                        i += 4;
                    } else {
                        let escaped = bytes
                            .get(i + 1)
                            .ok_or(format!("dangling '\\' in {value:?}"))?;
                        current.push(*escaped);
                        i += 2;
                    }
                }
                Some(&b) => {
                    current.push(b);
                    i += 1;
                }
            }
        }
        i += 1;
        if bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
            return Err(format!("missing space after a quoted string in {value:?}"));
        }
        strings.push(current);
    }
}
