//! SPF (RFC 7208) `check_host()`, evaluated by us over mail-auth's record parser.
//!
//! mail-auth 0.13.3's evaluator takes the first of several `v=spf1` records (§4.5 says
//! permerror) and has no void-lookup limit (§4.6.4); DESIGN.md items 4 and 5. Rather than patch
//! around a closed loop, this module runs the algorithm itself: record selection, the ten
//! DNS-term limit, the void-lookup limit, the per-mechanism address-record limits, include and
//! redirect, macro expansion (mail-auth's, which is correct) and `exp=`.

use super::AuthResult;
use crate::dns::Dns;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use mail_auth::hickory_resolver::proto::rr::{Name, RData};
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf, Variables};
use mail_auth::{DnsError, Error, ResolverCache};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

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
    Found(Arc<Spf>),
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

struct Evaluator<'a> {
    dns: &'a Dns,
    ip: IpAddr,
    receiver: &'a str,
    dns_terms: u32,
    voids: u32,
    ptr_validated: bool,
}

/// Runs `check_host()` for a MAIL FROM (or HELO) identity.
pub async fn check_host(dns: &Dns, query: SpfQuery<'_>) -> SpfEvaluation {
    let mut vars = Variables::new();
    vars.set_ip(&query.ip);
    vars.set_sender(query.sender.as_bytes().to_vec());
    vars.set_helo_domain(query.helo.as_bytes().to_vec());
    vars.set_host_domain(query.receiver.as_bytes().to_vec());
    let mut eval = Evaluator {
        dns,
        ip: query.ip,
        receiver: query.receiver,
        dns_terms: 0,
        voids: 0,
        ptr_validated: false,
    };
    eval.check(query.domain, &mut vars, 0).await
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
        vars: &'s mut Variables<'static>,
        depth: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = SpfEvaluation> + Send + 's>> {
        Box::pin(async move {
            if !is_valid_domain(domain) {
                return SpfEvaluation::new(AuthResult::None, format!("{domain} is not a valid domain"));
            }
            if depth > MAX_DNS_TERMS {
                return SpfEvaluation::new(AuthResult::Permerror, "include/redirect nesting too deep");
            }
            let record = match self.record(domain).await {
                Ok(SpfRecord::Found(r)) => r,
                Ok(SpfRecord::NotFound) => {
                    return SpfEvaluation::new(AuthResult::None, format!("no SPF record for {domain}"))
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
            vars.set_domain(domain.as_bytes().to_vec());

            for directive in record.directives.iter() {
                let matched = match self.matches(&directive.mechanism, domain, vars, depth).await {
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
                        format!("{} matched {}", self.ip, mechanism_name(&directive.mechanism)),
                    );
                    if result == AuthResult::Fail {
                        out.explanation = self.explanation(&record, domain, vars).await;
                    }
                    return out;
                }
            }

            if let Some(redirect) = &record.redirect {
                // RFC 7208 §6.1: redirect applies only when no mechanism matched.
                if let Err(e) = self.count_dns_term() {
                    return e;
                }
                let target = expand(redirect, vars, domain, true);
                let target = target.trim_end_matches('.').to_string();
                let mut inner = self.check(&target, vars, depth + 1).await;
                vars.set_domain(domain.as_bytes().to_vec());
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
        vars: &mut Variables<'static>,
        depth: u32,
    ) -> Result<bool, SpfEvaluation> {
        if mechanism.needs_ptr() && !self.ptr_validated {
            self.ptr_validated = true;
            self.validate_ptr(vars, domain).await;
        }
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4 { addr, mask } => Ok(match self.ip {
                IpAddr::V4(ip) => u32::from(ip) & mask == u32::from(*addr) & mask,
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6 { addr, mask } => Ok(match self.ip {
                IpAddr::V6(ip) => u128::from(ip) & mask == u128::from(*addr) & mask,
                IpAddr::V4(_) => false,
            }),
            Mechanism::A {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                self.count_dns_term()?;
                let target = expand(macro_string, vars, domain, true);
                match self.addresses(&target).await {
                    Lookup::Answer(addrs) => Ok(addrs
                        .iter()
                        .any(|a| self.ip_in(a, *ip4_mask, *ip6_mask))),
                    Lookup::Void => self.count_void().map(|_| false),
                    Lookup::Error => Err(temperror(&target)),
                }
            }
            Mechanism::Mx {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                self.count_dns_term()?;
                let target = expand(macro_string, vars, domain, true);
                let exchanges = match self.mx(&target).await {
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
                for exchange in exchanges {
                    match self.addresses(&exchange).await {
                        Lookup::Answer(addrs) => {
                            if addrs.iter().any(|a| self.ip_in(a, *ip4_mask, *ip6_mask)) {
                                return Ok(true);
                            }
                        }
                        Lookup::Void => {}
                        Lookup::Error => return Err(temperror(&exchange)),
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr { macro_string } => {
                self.count_dns_term()?;
                let target = expand(macro_string, vars, domain, false).to_ascii_lowercase();
                let target = target.trim_end_matches('.');
                let names = match self.ptr_names().await {
                    Lookup::Answer(names) => names,
                    Lookup::Void => return self.count_void().map(|_| false),
                    // §5.5: a DNS error on the PTR lookup means no match.
                    Lookup::Error => return Ok(false),
                };
                for name in names.iter().take(MAX_ADDRESS_LOOKUPS) {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    if !(name == target || name.ends_with(&format!(".{target}"))) {
                        continue;
                    }
                    if let Lookup::Answer(addrs) = self.addresses(&name).await {
                        if addrs.contains(&self.ip) {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            Mechanism::Include { macro_string } => {
                self.count_dns_term()?;
                let target = expand(macro_string, vars, domain, true);
                let target = target.trim_end_matches('.').to_string();
                let inner = self.check(&target, vars, depth + 1).await;
                vars.set_domain(domain.as_bytes().to_vec());
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
            Mechanism::Exists { macro_string } => {
                self.count_dns_term()?;
                let target = expand(macro_string, vars, domain, true);
                // §5.7: always an A query, whatever the client's address family.
                match self.ipv4(&target).await {
                    Lookup::Answer(a) => Ok(!a.is_empty()),
                    Lookup::Void => self.count_void().map(|_| false),
                    Lookup::Error => Err(temperror(&target)),
                }
            }
        }
    }

    fn ip_in(&self, addr: &IpAddr, ip4_mask: u32, ip6_mask: u128) -> bool {
        match (self.ip, addr) {
            (IpAddr::V4(ip), IpAddr::V4(a)) => u32::from(ip) & ip4_mask == u32::from(*a) & ip4_mask,
            (IpAddr::V6(ip), IpAddr::V6(a)) => {
                u128::from(ip) & ip6_mask == u128::from(*a) & ip6_mask
            }
            _ => false,
        }
    }

    /// Fetches and selects the domain's SPF record (§4.4, §4.5).
    async fn record(&self, domain: &str) -> Result<SpfRecord, String> {
        let key: Box<str> = fqdn(domain).into();
        if let Some(hit) = self.dns.spf.get(&key) {
            return Ok(hit);
        }
        let name = Name::from_str_relaxed(key.as_ref()).map_err(|e| e.to_string())?;
        let lookup = match self.dns.authenticator().resolver().txt_lookup(name).await {
            Ok(l) => l,
            Err(e) if is_void(&e) => return Ok(SpfRecord::NotFound),
            Err(e) => return Err(e.to_string()),
        };
        let mut spf_records = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::TXT(txt) => {
                let joined: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                is_spf_record(&joined).then_some(joined)
            }
            _ => None,
        });
        let record = match (spf_records.next(), spf_records.next()) {
            (None, _) => SpfRecord::NotFound,
            (Some(_), Some(_)) => SpfRecord::Multiple,
            (Some(text), None) => match Spf::parse(&text) {
                Ok(spf) => SpfRecord::Found(Arc::new(spf)),
                Err(_) => SpfRecord::Invalid,
            },
        };
        self.dns.spf.insert(key, record.clone(), lookup.valid_until());
        Ok(record)
    }

    /// A or AAAA records of `name`, as the client's address family needs (§5.3).
    async fn addresses(&self, name: &str) -> Lookup<Vec<IpAddr>> {
        match self.ip {
            IpAddr::V4(_) => self.ipv4(name).await,
            IpAddr::V6(_) => {
                let r = self
                    .dns
                    .authenticator()
                    .ipv6_lookup(name, Some(&self.dns.ipv6))
                    .await;
                classify(r.map(|set| set.rrset.iter().copied().map(IpAddr::V6).collect()))
            }
        }
    }

    async fn ipv4(&self, name: &str) -> Lookup<Vec<IpAddr>> {
        let r = self
            .dns
            .authenticator()
            .ipv4_lookup(name, Some(&self.dns.ipv4))
            .await;
        classify(r.map(|set| set.rrset.iter().copied().map(IpAddr::V4).collect()))
    }

    async fn mx(&self, name: &str) -> Lookup<Vec<String>> {
        let r = self
            .dns
            .authenticator()
            .mx_lookup(name, Some(&self.dns.mx))
            .await;
        classify(r.map(|set| {
            set.rrset
                .iter()
                .flat_map(|mx| mx.exchanges.iter().map(|e| e.to_string()))
                .collect()
        }))
    }

    async fn ptr_names(&self) -> Lookup<Vec<String>> {
        let r = self
            .dns
            .authenticator()
            .ptr_lookup(self.ip, Some(&self.dns.ptr))
            .await;
        classify(r.map(|set| set.rrset.iter().map(|n| n.to_string()).collect()))
    }

    /// Sets the `%{p}` macro: a PTR name of the client that resolves back to it (§5.5),
    /// preferring one within `domain`; `unknown` when there is none.
    async fn validate_ptr(&mut self, vars: &mut Variables<'static>, domain: &str) {
        let mut validated: Option<String> = None;
        if let Lookup::Answer(names) = self.ptr_names().await {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            for name in names.iter().take(MAX_ADDRESS_LOOKUPS) {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if let Lookup::Answer(addrs) = self.addresses(&name).await {
                    if addrs.contains(&self.ip) {
                        let preferred = name == domain || name.ends_with(&format!(".{domain}"));
                        if preferred || validated.is_none() {
                            validated = Some(name.clone());
                        }
                        if preferred {
                            break;
                        }
                    }
                }
            }
        }
        vars.set_validated_domain(validated.unwrap_or_else(|| "unknown".into()).into_bytes());
    }

    /// The `exp=` explanation (§6.2); any problem fetching it just means no explanation.
    async fn explanation(
        &mut self,
        record: &Spf,
        domain: &str,
        vars: &mut Variables<'static>,
    ) -> Option<String> {
        let exp = record.exp.as_ref()?;
        let target = expand(exp, vars, domain, true);
        let name = Name::from_str_relaxed(target.as_ref()).ok()?;
        let lookup = self.dns.authenticator().resolver().txt_lookup(name).await.ok()?;
        let mut texts = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect::<Vec<u8>>(),
            ),
            _ => None,
        });
        let text = match (texts.next(), texts.next()) {
            (Some(t), None) => t,
            _ => return None,
        };
        let macro_string = mail_auth::spf::Macro::parse(&text).ok()?;
        // exp text may use %{c}, %{r}, %{t} (§7.3).
        let mut exp_vars = vars.clone();
        exp_vars.set_host_domain(self.receiver.as_bytes().to_vec());
        let out = expand(&macro_string, &exp_vars, domain, false).into_owned();
        Some(out).filter(|s| s.is_ascii())
    }
}

/// RFC 7208 §4.5: a record starts with exactly `v=spf1`, followed by a space or its end.
fn is_spf_record(text: &[u8]) -> bool {
    text.len() >= 6
        && text[..6].eq_ignore_ascii_case(b"v=spf1")
        && (text.len() == 6 || text[6] == b' ')
}

fn expand<'z>(m: &'z Macro, vars: &'z Variables<'z>, domain: &'z str, fqdn: bool) -> Cow<'z, str> {
    m.eval(vars, domain, fqdn)
}

fn fqdn(domain: &str) -> String {
    let mut d = domain.to_ascii_lowercase();
    if !d.ends_with('.') {
        d.push('.');
    }
    d
}

fn temperror(name: &str) -> SpfEvaluation {
    SpfEvaluation::new(AuthResult::Temperror, format!("DNS error looking up {name}"))
}

/// NXDOMAIN and "no records of this type" are void lookups; everything else is an error.
fn is_void(e: &NetError) -> bool {
    matches!(e, NetError::Dns(HickoryDnsError::NoRecordsFound(nr))
        if matches!(nr.response_code.into(), 0u16 | 3u16))
}

fn classify<T: IsEmpty>(r: Result<T, Error>) -> Lookup<T> {
    match r {
        Ok(v) if v.is_empty() => Lookup::Void,
        Ok(v) => Lookup::Answer(v),
        Err(Error::Dns(DnsError::RecordNotFound(code))) if matches!(u16::from(code), 0 | 3) => {
            Lookup::Void
        }
        // A name that macro expansion made unparsable cannot exist.
        Err(Error::ParseError) => Lookup::Void,
        Err(_) => Lookup::Error,
    }
}

trait IsEmpty {
    fn is_empty(&self) -> bool;
}

impl<T> IsEmpty for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

fn mechanism_name(m: &Mechanism) -> &'static str {
    match m {
        Mechanism::All => "all",
        Mechanism::Include { .. } => "include",
        Mechanism::A { .. } => "a",
        Mechanism::Mx { .. } => "mx",
        Mechanism::Ptr { .. } => "ptr",
        Mechanism::Ip4 { .. } => "ip4",
        Mechanism::Ip6 { .. } => "ip6",
        Mechanism::Exists { .. } => "exists",
    }
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
