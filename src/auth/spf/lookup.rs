//! DNS for SPF: fetching and selecting a domain's record (cached for its TTL), and each
//! lookup `check_host()` makes, classified as RFC 7208 §4.6.4 counts it: an answer, a void
//! (NXDOMAIN or no records of the type) or an error; with the resolver's metrics.

use crate::auth::spf_record::Record;
use crate::dns::empty_rdata::{self, is_empty_rdata_error};
use crate::dns::stats::{Ending, QueryType, STATS};
use crate::dns::{Dns, TtlCache};
use mail_auth::hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};
use mail_auth::ResolverCache;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// RFC 7208 §4.6.4: address records looked up per `mx` or `ptr` term.
pub(super) const MAX_ADDRESS_LOOKUPS: usize = 10;

/// What fetching a domain's SPF record gave (cached, since every message asks again).
#[derive(Clone)]
pub(crate) enum SpfRecord {
    Found(Arc<Record>),
    /// No `v=spf1` record (or NXDOMAIN).
    NotFound,
    /// Several `v=spf1` records (§4.5).
    Multiple,
    /// A `v=spf1` record that does not parse (§4.6).
    Invalid,
}

/// Outcome of an address or name lookup as SPF needs it: an answer, a void (§4.6.4), or an error.
pub(super) enum Lookup<T> {
    Answer(T),
    Void,
    Error,
}

impl<T> Lookup<T> {
    pub(super) fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Answer(t) => Lookup::Answer(f(t)),
            Lookup::Void => Lookup::Void,
            Lookup::Error => Lookup::Error,
        }
    }
}

/// Selected SPF records by domain name, kept for their answers' TTLs. The SPF side owns it
/// (the [`super::Verifier`] holds one beside its resolver), so the DNS layer knows no SPF.
pub(crate) type SpfCache = TtlCache<Box<str>, SpfRecord>;

/// The lookups of one evaluation: the resolver, the record cache and the client's address.
pub(super) struct SpfDns<'a> {
    pub(super) dns: &'a Dns,
    pub(super) cache: &'a SpfCache,
    pub(super) ip: IpAddr,
}

impl SpfDns<'_> {
    /// Fetches and selects the domain's SPF record (§4.4, §4.5).
    pub(super) async fn record(&self, domain: &str) -> Result<SpfRecord, String> {
        let key: Box<str> = fqdn(domain).into();
        if let Some(hit) = self.cache.get(&key) {
            STATS.cache_hit();
            return Ok(hit);
        }
        let Some(name) = dns_name(&key) else {
            return Ok(SpfRecord::NotFound);
        };
        let started = Instant::now();
        let lookup = self
            .dns
            .authenticator()
            .resolver()
            .txt_lookup(name.clone())
            .await;
        STATS.observe(QueryType::Txt, started, ending(&lookup));
        let lookup = match lookup {
            Ok(l) => l,
            // RFC 7208 §4.5 (suite "null-text", §3.3): a TXT record with empty RDATA beside
            // the SPF record makes hickory refuse the answer; ask again tolerating it.
            Err(e) if is_empty_rdata_error(&e) => {
                let answer =
                    empty_rdata::query(&self.dns.servers, &name, RecordType::TXT, self.dns.timeout)
                        .await
                        .map_err(|why| format!("{e} (and again: {why})"))?;
                return match answer.code {
                    ResponseCode::NoError | ResponseCode::NXDomain => {
                        Ok(select(answer.records.iter().map(|r| &r.data)))
                    }
                    code => Err(format!("{e} (and again: {code})")),
                };
            }
            Err(e) if is_void(&e) => {
                // Cache the absence too: most HELO names publish no SPF, and every message
                // from such a client would otherwise ask again (RFC 2308 negative TTL).
                if let Some(ttl) = negative_ttl(&e) {
                    let until =
                        std::time::Instant::now() + std::time::Duration::from_secs(ttl.into());
                    self.cache.insert(key, SpfRecord::NotFound, until);
                }
                return Ok(SpfRecord::NotFound);
            }
            Err(e) => return Err(e.to_string()),
        };
        let record = select(lookup.answers().iter().map(|r| &r.data));
        self.cache.insert(key, record.clone(), lookup.valid_until());
        Ok(record)
    }

    /// Records of type `rtype` at `name`. Goes to the resolver with a name built from raw
    /// labels: domain-specs may hold any visible character (`foo:bar/baz.example.com`, or
    /// spaces from `%_`), which DNS carries but a host-name parser refuses.
    pub(super) async fn query(&self, name: Option<Name>, rtype: RecordType) -> Lookup<Vec<RData>> {
        // A name that cannot be put on the wire (empty or over-long label) cannot exist.
        let Some(name) = name else {
            return Lookup::Void;
        };
        let started = Instant::now();
        let lookup = self
            .dns
            .authenticator()
            .resolver()
            .lookup(name, rtype)
            .await;
        let qtype = match rtype {
            RecordType::A => QueryType::A,
            RecordType::AAAA => QueryType::Aaaa,
            RecordType::MX => QueryType::Mx,
            RecordType::PTR => QueryType::Ptr,
            _ => QueryType::Txt,
        };
        STATS.observe(qtype, started, ending(&lookup));
        match lookup {
            Ok(lookup) => {
                let data: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                if data.is_empty() {
                    Lookup::Void
                } else {
                    Lookup::Answer(data)
                }
            }
            Err(e) if is_void(&e) => Lookup::Void,
            Err(_) => Lookup::Error,
        }
    }

    /// A or AAAA records of `name`, as the client's address family needs (§5.3).
    pub(super) async fn addresses(&self, name: Option<Name>) -> Lookup<Vec<IpAddr>> {
        let rtype = match self.ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        self.query(name, rtype).await.map(|data| {
            data.into_iter()
                .filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect()
        })
    }

    /// MX exchanges of `name`, most preferred first.
    pub(super) async fn mx(&self, name: Option<Name>) -> Lookup<Vec<Name>> {
        self.query(name, RecordType::MX).await.map(|data| {
            let mut mx: Vec<_> = data
                .into_iter()
                .filter_map(|d| match d {
                    RData::MX(mx) => Some((mx.preference, mx.exchange)),
                    _ => None,
                })
                .collect();
            mx.sort_by_key(|(preference, _)| *preference);
            mx.into_iter().map(|(_, exchange)| exchange).collect()
        })
    }

    /// The client's PTR names (§5.5), at most the first ten.
    pub(super) async fn ptr_names(&self) -> Lookup<Vec<Name>> {
        self.query(Some(Name::from(self.ip)), RecordType::PTR)
            .await
            .map(|data| {
                data.into_iter()
                    .filter_map(|d| match d {
                        RData::PTR(ptr) => Some(ptr.0),
                        _ => None,
                    })
                    .take(MAX_ADDRESS_LOOKUPS)
                    .collect()
            })
    }

    /// Does `name` have an address record that is the client's?
    pub(super) async fn resolves_to_client(&self, name: &Name) -> bool {
        matches!(self.addresses(Some(name.clone())).await,
            Lookup::Answer(addrs) if addrs.contains(&self.ip))
    }
}

/// RFC 7208 §4.5: a record starts with exactly `v=spf1`, followed by a space or its end.
fn is_spf_record(text: &[u8]) -> bool {
    text.len() >= 6
        && text[..6].eq_ignore_ascii_case(b"v=spf1")
        && (text.len() == 6 || text[6] == b' ')
}

/// The DNS name for `text`, label by label as raw octets; `None` if it has an empty label or
/// one over 63 octets, or is too long.
pub(super) fn dns_name(text: &str) -> Option<Name> {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() {
        return None;
    }
    Name::from_labels(text.split('.').map(str::as_bytes)).ok()
}

fn fqdn(domain: &str) -> String {
    let mut d = domain.to_ascii_lowercase();
    if !d.ends_with('.') {
        d.push('.');
    }
    d
}

/// NXDOMAIN and "no records of this type" are void lookups; everything else is an error.
/// The negative-caching TTL of a void answer, when the server sent an SOA with it.
fn negative_ttl(e: &NetError) -> Option<u32> {
    match e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => nr.negative_ttl,
        _ => None,
    }
}

/// How a resolver lookup ended, for the DNS metrics.
fn ending<T>(result: &Result<T, NetError>) -> Ending {
    match result {
        Ok(_) => Ending::Answer,
        Err(e) if is_void(e) => Ending::NoRecords,
        Err(NetError::Dns(HickoryDnsError::NoRecordsFound(_))) => Ending::ServerFailure,
        Err(e) => Ending::of_error_text(&e.to_string()),
    }
}

/// The SPF record among a name's TXT records (§4.5): exactly one starting `v=spf1`.
fn select<'a>(data: impl Iterator<Item = &'a RData>) -> SpfRecord {
    let mut spf_records = data.filter_map(|d| match d {
        RData::TXT(txt) => {
            let joined: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
            is_spf_record(&joined).then_some(joined)
        }
        _ => None,
    });
    match (spf_records.next(), spf_records.next()) {
        (None, _) => SpfRecord::NotFound,
        (Some(_), Some(_)) => SpfRecord::Multiple,
        (Some(text), None) => match Record::parse(&text) {
            Ok(spf) => SpfRecord::Found(Arc::new(spf)),
            Err(_) => SpfRecord::Invalid,
        },
    }
}

fn is_void(e: &NetError) -> bool {
    matches!(e, NetError::Dns(HickoryDnsError::NoRecordsFound(nr))
        if matches!(nr.response_code.into(), 0u16 | 3u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_selection_is_exact() {
        assert!(is_spf_record(b"v=spf1 -all"));
        assert!(is_spf_record(b"V=SPF1"));
        assert!(!is_spf_record(b"v=spf10 -all"));
        assert!(!is_spf_record(b"v=spf1-all"));
        assert!(!is_spf_record(b"spf2.0/pra"));
    }
}
