//! SPF (RFC 7208) `check_host()`, evaluated by us over our own record parser.
//!
//! mail-auth 0.13.3's evaluator takes the first of several `v=spf1` records (§4.5 says
//! permerror) and has no void-lookup limit (§4.6.4); DESIGN.md items 4 and 5. Its record
//! parser and macro expander are too lenient in places and wrong in others, so our
//! `spf_record` module replaces them. This module runs the algorithm: record
//! selection, the ten DNS-term limit, the void-lookup limit, the per-mechanism address-record
//! limits, include and redirect, macro expansion and `exp=`; [`lookup`] fetches records and
//! classifies each DNS answer as SPF counts it (answer, void, error).

use super::outcome::AuthResult;
use super::spf_record::{
    Letter, MacroContext, MacroString, MacroVars, Mechanism, Qualifier, Record,
};
use crate::dns::Dns;
use lookup::{dns_name, Lookup, SpfDns, SpfRecord, MAX_ADDRESS_LOOKUPS};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

mod lookup;

pub(crate) use lookup::SpfCache;

/// RFC 7208 §4.6.4: at most 10 terms that cause DNS queries.
const MAX_DNS_TERMS: u32 = 10;
/// RFC 7208 §4.6.4: more than two void lookups is a permerror.
const MAX_VOID_LOOKUPS: u32 = 2;

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

struct Evaluator<'a> {
    /// The lookups, classified as SPF counts them.
    dns: SpfDns<'a>,
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
    // §5: an IPv4-mapped IPv6 client is an IPv4 client (ip4, A records, in-addr macros).
    let ip = query.ip.to_canonical();
    let mut eval = Evaluator {
        dns: SpfDns { dns, cache, ip },
        ip,
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
            let record = match self.dns.record(domain).await {
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
                match self.dns.addresses(dns_name(&target)).await {
                    Lookup::Answer(addrs) => Ok(addrs.iter().any(|a| cidr.contains(*a, self.ip))),
                    Lookup::Void => self.count_void().map(|_| false),
                    Lookup::Error => Err(temperror(&target)),
                }
            }
            Mechanism::Mx { domain: spec, cidr } => {
                self.count_dns_term()?;
                let target = self.target_or(spec.as_ref(), domain).await;
                let exchanges = match self.dns.mx(dns_name(&target)).await {
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
                    match self.dns.addresses(Some(exchange.clone())).await {
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
                let names = match self.dns.ptr_names().await {
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
                    if self.dns.resolves_to_client(name).await {
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
                match self.dns.query(dns_name(&target), RecordType::A).await {
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

    /// Looks up, once, the client's PTR names that resolve back to it (§5.5), for `%{p}`.
    async fn validate_ptr(&mut self) {
        if self.validated.is_some() {
            return;
        }
        let mut validated = Vec::new();
        if let Lookup::Answer(names) = self.dns.ptr_names().await {
            for name in names {
                if self.dns.resolves_to_client(&name).await {
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
        let Lookup::Answer(records) = self.dns.query(dns_name(&target), RecordType::TXT).await
        else {
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

fn temperror(name: &str) -> SpfEvaluation {
    SpfEvaluation::new(
        AuthResult::Temperror,
        format!("DNS error looking up {name}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
