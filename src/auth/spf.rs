//! SPF (RFC 7208) `check_host()`, evaluated by us over our own record parser.
//!
//! mail-auth 0.13.3's evaluator takes the first of several `v=spf1` records (§4.5 says
//! permerror) and has no void-lookup limit (§4.6.4); DESIGN.md items 4 and 5. Its record
//! parser and macro expander are too lenient in places and wrong in others, so our
//! `spf_record` module replaces them. This module runs the algorithm: record
//! selection, the ten DNS-term limit, the void-lookup limit, the per-mechanism address-record
//! limits, include and redirect, macro expansion and `exp=`.

use super::spf_record::{
    Letter, MacroContext, MacroString, MacroVars, Mechanism, Qualifier, Record,
};
use super::AuthResult;
use crate::dns::empty_rdata::{self, is_empty_rdata_error};
use crate::dns::stats::{Ending, QueryType, STATS};
use crate::dns::{Dns, TtlCache};
use mail_auth::hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};
use mail_auth::ResolverCache;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// RFC 7208 §4.6.4: at most 10 terms that cause DNS queries.
const MAX_DNS_TERMS: u32 = 10;
/// RFC 7208 §4.6.4: more than two void lookups is a permerror.
const MAX_VOID_LOOKUPS: u32 = 2;
/// RFC 7208 §4.6.4: address records looked up per `mx` or `ptr` term.
const MAX_ADDRESS_LOOKUPS: usize = 10;

/// The result of one `check_host()` evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfEvaluation {
    pub result: AuthResult,
    /// Expanded `exp=` text, for `fail` results whose record has one.
    pub explanation: Option<String>,
    /// Why the result is what it is, for people reading headers and logs.
    pub reason: String,
}

impl SpfEvaluation {
    fn new(result: AuthResult, reason: impl Into<String>) -> Self {
        SpfEvaluation {
            result,
            explanation: None,
            reason: reason.into(),
        }
    }
}

/// Inputs of `check_host()` (RFC 7208 §4.1).
#[derive(Debug, Clone, Copy)]
pub struct SpfQuery<'a> {
    pub ip: IpAddr,
    /// The domain whose record is evaluated (MAIL FROM domain, or the HELO name).
    pub domain: &'a str,
    /// The full sender (`local@domain`); `postmaster@domain` when there is no local part.
    pub sender: &'a str,
    pub helo: &'a str,
    /// Our own host name, for the `%{r}` macro.
    pub receiver: &'a str,
}

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
enum Lookup<T> {
    Answer(T),
    Void,
    Error,
}

impl<T> Lookup<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
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

struct Evaluator<'a> {
    dns: &'a Dns,
    cache: &'a SpfCache,
    ip: IpAddr,
    sender: &'a str,
    local: &'a str,
    sender_domain: &'a str,
    helo: &'a str,
    receiver: &'a str,
    timestamp: u64,
    dns_terms: u32,
    voids: u32,
    /// PTR names of the client that resolve back to it (§5.5), for `%{p}`; looked up the
    /// first time a macro needs them.
    validated: Option<Vec<Name>>,
}

/// Runs `check_host()` for a MAIL FROM (or HELO) identity.
pub(crate) async fn check_host(dns: &Dns, cache: &SpfCache, query: SpfQuery<'_>) -> SpfEvaluation {
    let (local, sender_domain) = match query.sender.rsplit_once('@') {
        Some(("", domain)) => ("postmaster", domain),
        Some(parts) => parts,
        None => ("postmaster", query.sender),
    };
    let mut eval = Evaluator {
        dns,
        cache,
        // §5: an IPv4-mapped IPv6 client is an IPv4 client (ip4, A records, in-addr macros).
        ip: query.ip.to_canonical(),
        sender: query.sender,
        local,
        sender_domain,
        helo: query.helo,
        receiver: query.receiver,
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        dns_terms: 0,
        voids: 0,
        validated: None,
    };
    eval.check(query.domain, 0).await
}

/// Is `domain` something SPF can be evaluated for (§4.3): a multi-label name, labels of 1–63
/// octets, at most 253 in all? An IP literal or a single label is not.
pub fn is_valid_domain(domain: &str) -> bool {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.is_empty() || d.len() > 253 || !d.contains('.') || d.starts_with('[') {
        return false;
    }
    d.split('.')
        .all(|l| !l.is_empty() && l.len() <= 63 && !l.contains(char::is_whitespace))
}

impl Evaluator<'_> {
    fn check<'s>(
        &'s mut self,
        domain: &'s str,
        depth: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = SpfEvaluation> + Send + 's>> {
        Box::pin(async move {
            if !is_valid_domain(domain) {
                return SpfEvaluation::new(
                    AuthResult::None,
                    format!("{domain} is not a valid domain"),
                );
            }
            if depth > MAX_DNS_TERMS {
                return SpfEvaluation::new(
                    AuthResult::Permerror,
                    "include/redirect nesting too deep",
                );
            }
            let record = match self.record(domain).await {
                Ok(SpfRecord::Found(r)) => r,
                Ok(SpfRecord::NotFound) => {
                    return SpfEvaluation::new(
                        AuthResult::None,
                        format!("no SPF record for {domain}"),
                    )
                }
                Ok(SpfRecord::Multiple) => {
                    // RFC 7208 §4.5
                    return SpfEvaluation::new(
                        AuthResult::Permerror,
                        format!("several SPF records for {domain}"),
                    );
                }
                Ok(SpfRecord::Invalid) => {
                    return SpfEvaluation::new(
                        AuthResult::Permerror,
                        format!("invalid SPF record for {domain}"),
                    )
                }
                Err(e) => {
                    return SpfEvaluation::new(
                        AuthResult::Temperror,
                        format!("DNS error looking up SPF for {domain}: {e}"),
                    )
                }
            };

            for directive in record.directives.iter() {
                let matched = match self.matches(&directive.mechanism, domain, depth).await {
                    Ok(m) => m,
                    Err(e) => return e,
                };
                if matched {
                    let result = match directive.qualifier {
                        Qualifier::Pass => AuthResult::Pass,
                        Qualifier::Fail => AuthResult::Fail,
                        Qualifier::SoftFail => AuthResult::Softfail,
                        Qualifier::Neutral => AuthResult::Neutral,
                    };
                    let mut out = SpfEvaluation::new(
                        result,
                        format!("{} matched {}", self.ip, directive.mechanism.name()),
                    );
                    if result == AuthResult::Fail {
                        out.explanation = self.explanation(&record, domain).await;
                    }
                    return out;
                }
            }

            if let Some(redirect) = &record.redirect {
                // RFC 7208 §6.1: redirect applies only when no mechanism matched.
                if let Err(e) = self.count_dns_term() {
                    return e;
                }
                let target = self.expand(redirect, domain, true).await;
                let mut inner = self.check(&target, depth + 1).await;
                if inner.result == AuthResult::None {
                    inner.result = AuthResult::Permerror;
                    inner.reason = format!("redirect target {target} has no SPF record");
                }
                return inner;
            }
            SpfEvaluation::new(AuthResult::Neutral, "no mechanism matched")
        })
    }

    fn count_dns_term(&mut self) -> Result<(), SpfEvaluation> {
        self.dns_terms += 1;
        if self.dns_terms > MAX_DNS_TERMS {
            Err(SpfEvaluation::new(
                AuthResult::Permerror,
                "more than 10 DNS-querying terms (RFC 7208 4.6.4)",
            ))
        } else {
            Ok(())
        }
    }

    fn count_void(&mut self) -> Result<(), SpfEvaluation> {
        self.voids += 1;
        if self.voids > MAX_VOID_LOOKUPS {
            Err(SpfEvaluation::new(
                AuthResult::Permerror,
                "more than 2 void DNS lookups (RFC 7208 4.6.4)",
            ))
        } else {
            Ok(())
        }
    }

    async fn matches(
        &mut self,
        mechanism: &Mechanism,
        domain: &str,
        depth: u32,
    ) -> Result<bool, SpfEvaluation> {
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net) => Ok(matches!(self.ip, IpAddr::V4(ip) if net.contains(&ip))),
            Mechanism::Ip6(net) => Ok(matches!(self.ip, IpAddr::V6(ip) if net.contains(&ip))),
            Mechanism::A { domain: spec, cidr } => {
                self.count_dns_term()?;
                let target = self.target_or(spec.as_ref(), domain).await;
                match self.addresses(dns_name(&target)).await {
                    Lookup::Answer(addrs) => Ok(addrs.iter().any(|a| cidr.contains(*a, self.ip))),
                    Lookup::Void => self.count_void().map(|_| false),
                    Lookup::Error => Err(temperror(&target)),
                }
            }
            Mechanism::Mx { domain: spec, cidr } => {
                self.count_dns_term()?;
                let target = self.target_or(spec.as_ref(), domain).await;
                let exchanges = match self.mx(dns_name(&target)).await {
                    Lookup::Answer(x) => x,
                    Lookup::Void => return self.count_void().map(|_| false),
                    Lookup::Error => return Err(temperror(&target)),
                };
                if exchanges.len() > MAX_ADDRESS_LOOKUPS {
                    return Err(SpfEvaluation::new(
                        AuthResult::Permerror,
                        format!("{target} has more than 10 MX records (RFC 7208 4.6.4)"),
                    ));
                }
                // A null MX (RFC 7505, exchange ".") names no host to look up.
                for exchange in exchanges.into_iter().filter(|x| !x.is_root()) {
                    match self.addresses(Some(exchange.clone())).await {
                        Lookup::Answer(addrs) => {
                            if addrs.iter().any(|a| cidr.contains(*a, self.ip)) {
                                return Ok(true);
                            }
                        }
                        Lookup::Void => {}
                        Lookup::Error => return Err(temperror(&exchange.to_string())),
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_dns_term()?;
                let target = self.target_or(spec.as_ref(), domain).await;
                let names = match self.ptr_names().await {
                    Lookup::Answer(names) => names,
                    Lookup::Void => return self.count_void().map(|_| false),
                    // §5.5: a DNS error on the PTR lookup means no match.
                    Lookup::Error => return Ok(false),
                };
                let Some(target) = dns_name(&target) else {
                    return Ok(false);
                };
                // Only names within the target can match, so only they need validating.
                for name in names.iter().filter(|n| target.zone_of(n)) {
                    if self.resolves_to_client(name).await {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Include(spec) => {
                self.count_dns_term()?;
                let target = self.expand(spec, domain, true).await;
                let inner = self.check(&target, depth + 1).await;
                // RFC 7208 §5.2 table.
                match inner.result {
                    AuthResult::Pass => Ok(true),
                    AuthResult::Fail | AuthResult::Softfail | AuthResult::Neutral => Ok(false),
                    AuthResult::Temperror => Err(inner),
                    AuthResult::None => Err(SpfEvaluation::new(
                        AuthResult::Permerror,
                        format!("included domain {target} has no SPF record"),
                    )),
                    _ => Err(inner),
                }
            }
            Mechanism::Exists(spec) => {
                self.count_dns_term()?;
                let target = self.expand(spec, domain, true).await;
                // §5.7: always an A query, whatever the client's address family.
                match self.query(dns_name(&target), RecordType::A).await {
                    Lookup::Answer(_) => Ok(true),
                    Lookup::Void => self.count_void().map(|_| false),
                    Lookup::Error => Err(temperror(&target)),
                }
            }
        }
    }

    /// Expands `spec` while `domain` is evaluated: as a name to look up (§7.3 trimming and
    /// truncation) or, for `exp` text, as it is.
    async fn expand(&mut self, spec: &MacroString, domain: &str, as_name: bool) -> String {
        if spec.uses(Letter::P) {
            self.validate_ptr().await;
        }
        let validated = self.validated_name(domain);
        let vars = MacroVars {
            sender: self.sender,
            local: self.local,
            sender_domain: self.sender_domain,
            domain,
            ip: self.ip,
            validated: &validated,
            helo: self.helo,
            receiver: self.receiver,
            timestamp: self.timestamp,
        };
        if as_name {
            spec.expand_domain(&vars)
        } else {
            spec.expand(&vars)
        }
    }

    /// The target of `a`, `mx` and `ptr`, whose domain-spec defaults to the current domain.
    async fn target_or(&mut self, spec: Option<&MacroString>, domain: &str) -> String {
        match spec {
            Some(spec) => self.expand(spec, domain, true).await,
            None => domain.trim_end_matches('.').to_string(),
        }
    }

    /// Fetches and selects the domain's SPF record (§4.4, §4.5).
    async fn record(&self, domain: &str) -> Result<SpfRecord, String> {
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
    async fn query(&self, name: Option<Name>, rtype: RecordType) -> Lookup<Vec<RData>> {
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
    async fn addresses(&self, name: Option<Name>) -> Lookup<Vec<IpAddr>> {
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
    async fn mx(&self, name: Option<Name>) -> Lookup<Vec<Name>> {
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
    async fn ptr_names(&self) -> Lookup<Vec<Name>> {
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
    async fn resolves_to_client(&self, name: &Name) -> bool {
        matches!(self.addresses(Some(name.clone())).await,
            Lookup::Answer(addrs) if addrs.contains(&self.ip))
    }

    /// Looks up, once, the client's PTR names that resolve back to it (§5.5), for `%{p}`.
    async fn validate_ptr(&mut self) {
        if self.validated.is_some() {
            return;
        }
        let mut validated = Vec::new();
        if let Lookup::Answer(names) = self.ptr_names().await {
            for name in names {
                if self.resolves_to_client(&name).await {
                    validated.push(name);
                }
            }
        }
        self.validated = Some(validated);
    }

    /// `%{p}` while `domain` is evaluated (§7.3): `domain` itself if validated, else a
    /// validated subdomain of it, else any validated name, else "unknown".
    fn validated_name(&self, domain: &str) -> String {
        let names = self.validated.as_deref().unwrap_or_default();
        let domain = dns_name(domain);
        let preferred = domain.as_ref().and_then(|d| {
            names
                .iter()
                .find(|n| *n == d)
                .or_else(|| names.iter().find(|n| d.zone_of(n)))
        });
        match preferred.or(names.first()) {
            Some(name) => name
                .to_lowercase()
                .to_ascii()
                .trim_end_matches('.')
                .to_string(),
            None => "unknown".into(),
        }
    }

    /// The `exp=` explanation (§6.2); any problem fetching it just means no explanation.
    async fn explanation(&mut self, record: &Record, domain: &str) -> Option<String> {
        let exp = record.exp.as_ref()?;
        let target = self.expand(exp, domain, true).await;
        // §6.2: exactly one TXT record, or no explanation.
        let Lookup::Answer(records) = self.query(dns_name(&target), RecordType::TXT).await else {
            return None;
        };
        let [RData::TXT(txt)] = records.as_slice() else {
            return None;
        };
        let text: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
        // exp text may use %{c}, %{r}, %{t} (§7.1); a syntax error means no explanation.
        let text = String::from_utf8(text).ok()?;
        let explanation = MacroString::parse(&text, MacroContext::Explanation).ok()?;
        let text = self.expand(&explanation, domain, false).await;
        Some(text).filter(|s| s.is_ascii())
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
fn dns_name(text: &str) -> Option<Name> {
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

fn temperror(name: &str) -> SpfEvaluation {
    SpfEvaluation::new(
        AuthResult::Temperror,
        format!("DNS error looking up {name}"),
    )
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

    #[test]
    fn domain_validity() {
        assert!(is_valid_domain("example.com"));
        assert!(is_valid_domain("example.com."));
        assert!(!is_valid_domain("localhost"));
        assert!(!is_valid_domain("a..b"));
        assert!(!is_valid_domain("[192.0.2.1]"));
        assert!(!is_valid_domain(&format!("{}.com", "a".repeat(64))));
    }
}
