//! The one DNS resolver of the program, built from configuration.
//!
//! Everything that resolves a name goes through [`Dns`]: mail-auth's lookups (DKIM keys, DMARC
//! records, ARC keys) and our own SPF evaluator. Two layers of caching, both bounded and both
//! honouring the records' TTLs: hickory's answer cache, and caches of *parsed* records that
//! mail-auth fills (so a hot DKIM key is not parsed again for every message).

pub mod empty_rdata;
pub mod stats;

use crate::config::DnsConfig;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::resolver::UnwrapTxtRecord;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;
use mail_auth::{MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt, MX};
use stats::{Ending, QueryType, STATS};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why the resolver could not be built: always a configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    #[error("cannot read the system resolver configuration (/etc/resolv.conf): {0}")]
    SystemConf(String),
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// The resolver plus the parsed-record caches mail-auth consults.
pub struct Dns {
    auth: MessageAuthenticator,
    pub(crate) txt: TtlCache<Box<str>, Txt>,
    pub(crate) mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub(crate) ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub(crate) ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub(crate) ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
    /// The nameservers (`ip:port`), for the queries hickory cannot decode ([`empty_rdata`]).
    pub(crate) servers: Vec<SocketAddr>,
    pub(crate) timeout: Duration,
}

/// mail-auth's parameter bundle with our caches plugged in.
pub(crate) type CachedParams<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl Dns {
    /// Builds the resolver: the configured nameservers (UDP with TCP fallback), or the system's
    /// resolv.conf when none are configured.
    pub fn new(config: &DnsConfig) -> Result<Dns, DnsSetupError> {
        let (resolver_config, mut opts) = if config.nameservers.is_empty() {
            read_system_conf().map_err(|e| DnsSetupError::SystemConf(e.to_string()))?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        opts.timeout = config.timeout;
        // hickory counts retries after the first try; the configuration counts tries.
        opts.attempts = config.attempts.saturating_sub(1);
        opts.cache_size = config.cache_size as u64;
        // Names in mail are absolute; never append a search domain.
        opts.ndots = 0;
        opts.edns0 = true;
        let mut servers: Vec<SocketAddr> = Vec::new();
        for ns in resolver_config.name_servers() {
            for conn in &ns.connections {
                let addr = SocketAddr::new(ns.ip, conn.port);
                if !servers.contains(&addr) {
                    servers.push(addr);
                }
            }
        }
        let auth = MessageAuthenticator::new(resolver_config, opts)
            .map_err(|e| DnsSetupError::Build(e.to_string()))?;
        let cap = config.cache_size;
        Ok(Dns {
            auth,
            txt: TtlCache::new(cap),
            mx: TtlCache::new(cap),
            ipv4: TtlCache::new(cap),
            ipv6: TtlCache::new(cap),
            ptr: TtlCache::new(cap),
            servers,
            timeout: config.timeout,
        })
    }

    /// The mail-auth entry point (all of its lookups use this resolver).
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// Looks up a TXT record the way mail-auth does (same name, same parser, same cache), so
    /// the lookup is counted in the metrics and mail-auth then finds the answer in the cache.
    /// A failure is cached briefly too, so mail-auth does not repeat a lookup that just timed
    /// out (it would double the wait) and reports the same error.
    pub(crate) async fn prefetch_txt<T>(&self, name: &str) -> mail_auth::Result<std::sync::Arc<T>>
    where
        T: TxtRecordParser + Into<Txt> + UnwrapTxtRecord,
    {
        use mail_auth::common::resolver::ToFqdn;
        let key = name.to_fqdn();
        if let Some(hit) = self.txt.get::<str>(key.as_ref()) {
            STATS.cache_hit();
            return T::unwrap_txt(hit);
        }
        let started = Instant::now();
        let result = self
            .auth
            .txt_lookup::<T>(key.as_ref(), Some(&self.txt))
            .await;
        let ending = match &result {
            Ok(_) => Ending::Answer,
            Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code))) => {
                use mail_auth::hickory_resolver::proto::op::ResponseCode;
                match code {
                    ResponseCode::NXDomain | ResponseCode::NoError => Ending::NoRecords,
                    _ => Ending::ServerFailure,
                }
            }
            Err(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(text))) => {
                Ending::of_error_text(text)
            }
            // Records that are there but do not parse were still an answer.
            Err(_) => Ending::Answer,
        };
        STATS.observe(QueryType::Txt, started, ending);
        if let Err(e) = &result {
            if self.txt.get::<str>(key.as_ref()).is_none() {
                self.txt.insert(
                    key.into_owned().into_boxed_str(),
                    Txt::Error(e.clone()),
                    Instant::now() + FAILURE_TTL,
                );
            }
        }
        result
    }

    /// Looks up the TXT records at `name` as mail-auth does (the first one `T` parses wins;
    /// the parsed-record cache is filled the same way, so mail-auth then finds it there) and
    /// also hands back that record's text and when the answer expires: for what the parsed
    /// form cannot tell (a DKIM key record's `h=` and `s=` as published). Counted like
    /// [`Dns::prefetch_txt`]; always asks the resolver (whose answer cache may serve it).
    pub(crate) async fn txt_with_text<T>(
        &self,
        name: &str,
    ) -> mail_auth::Result<(std::sync::Arc<T>, Vec<u8>, Instant)>
    where
        T: TxtRecordParser + Into<Txt> + UnwrapTxtRecord,
    {
        use mail_auth::common::resolver::ToFqdn;
        use mail_auth::hickory_resolver::proto::rr::{Name, RData};
        let key = name.to_fqdn();
        let started = Instant::now();
        let lookup = match Name::from_str_relaxed(key.as_ref()) {
            Ok(fqdn) => self.auth.resolver().txt_lookup(fqdn).await,
            Err(e) => return Err(e.into()),
        };
        let lookup = match lookup {
            Ok(lookup) => lookup,
            Err(e) => {
                let err = mail_auth::Error::from(e);
                let ending = match &err {
                    mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(code)) => {
                        use mail_auth::hickory_resolver::proto::op::ResponseCode;
                        match code {
                            ResponseCode::NXDomain | ResponseCode::NoError => Ending::NoRecords,
                            _ => Ending::ServerFailure,
                        }
                    }
                    mail_auth::Error::Dns(mail_auth::DnsError::Resolver(text)) => {
                        Ending::of_error_text(text)
                    }
                    _ => Ending::ServerFailure,
                };
                STATS.observe(QueryType::Txt, started, ending);
                self.txt.insert(
                    key.into_owned().into_boxed_str(),
                    Txt::Error(err.clone()),
                    Instant::now() + FAILURE_TTL,
                );
                return Err(err);
            }
        };
        STATS.observe(QueryType::Txt, started, Ending::Answer);
        let expires = lookup.valid_until();
        let mut result = Err(mail_auth::Error::Dns(
            mail_auth::DnsError::InvalidRecordType,
        ));
        for record in lookup.answers() {
            // mail-auth skips a TXT record without character-strings.
            let RData::TXT(txt) = &record.data else {
                continue;
            };
            if txt.txt_data.is_empty() {
                continue;
            }
            let text: Vec<u8> = txt
                .txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            result = T::parse(&text).map(|parsed| (parsed, text));
            if result.is_ok() {
                break;
            }
        }
        let (parsed, text) = match result {
            Ok(found) => found,
            Err(e) => {
                self.txt.insert(
                    key.into_owned().into_boxed_str(),
                    Txt::Error(e.clone()),
                    expires,
                );
                return Err(e);
            }
        };
        let txt: Txt = parsed.into();
        self.txt
            .insert(key.into_owned().into_boxed_str(), txt.clone(), expires);
        Ok((T::unwrap_txt(txt)?, text, expires))
    }

    /// Fetches the DMARC records mail-auth's tree walk (RFC 9989 §4.10) will ask for, in the
    /// same order and with the same stopping rules, so every lookup is counted.
    pub(crate) async fn prefetch_dmarc(&self, from_domain: &str) {
        use mail_auth::dmarc::{Dmarc, Psd};
        let domain = from_domain.trim_end_matches('.');
        let total = domain.split('.').filter(|l| !l.is_empty()).count();
        if total < 2 {
            return;
        }
        let mut count = total;
        loop {
            let name = domain
                .splitn(total - count + 1, '.')
                .last()
                .unwrap_or_default();
            match self.prefetch_txt::<Dmarc>(&format!("_dmarc.{name}.")).await {
                Ok(record) if matches!(record.psd, Psd::Yes | Psd::No) => break,
                Ok(_)
                | Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)))
                | Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => {}
                Err(_) => break,
            }
            if count == 1 {
                break;
            }
            count = if count >= 8 { 7 } else { count - 1 };
        }
    }

    /// The TXT records at `name`, each as one string (its character-strings joined), counted
    /// in the metrics; `Ok(empty)` when the name has none. Not cached: for the few lookups a
    /// report needs (its `ri=`), not for the mail path.
    pub async fn txt_strings(&self, name: &str) -> Result<Vec<String>, String> {
        use mail_auth::hickory_resolver::net::{DnsError, NetError};
        use mail_auth::hickory_resolver::proto::rr::RData;
        let started = Instant::now();
        let lookup = self.auth.resolver().txt_lookup(name).await;
        let void = |e: &NetError| {
            matches!(e, NetError::Dns(DnsError::NoRecordsFound(nr))
                if matches!(nr.response_code.into(), 0u16 | 3u16))
        };
        let ending = match &lookup {
            Ok(_) => Ending::Answer,
            Err(e) if void(e) => Ending::NoRecords,
            Err(e) => Ending::of_error_text(&e.to_string()),
        };
        STATS.observe(QueryType::Txt, started, ending);
        match lookup {
            Ok(found) => Ok(found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if void(&e) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The addresses (A and AAAA) of a host name, counted in the metrics; `Ok(empty)` when
    /// it has none. For the HTTPS fetches BIMI makes (hickory's answer cache applies).
    pub async fn ip_addresses(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        use mail_auth::hickory_resolver::net::{DnsError, NetError};
        let started = Instant::now();
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let lookup = self.auth.resolver().lookup_ip(fqdn.as_str()).await;
        let void = |e: &NetError| matches!(e, NetError::Dns(DnsError::NoRecordsFound(_)));
        let ending = match &lookup {
            Ok(_) => Ending::Answer,
            Err(e) if void(e) => Ending::NoRecords,
            Err(e) => Ending::of_error_text(&e.to_string()),
        };
        STATS.observe(QueryType::A, started, ending);
        match lookup {
            Ok(found) => Ok(found.iter().collect()),
            Err(e) if void(&e) => Ok(Vec::new()),
            Err(e) => Err(format!("cannot resolve {name}: {e}")),
        }
    }

    /// The DMARC record at `_dmarc.<domain>`, through the parsed-record cache; `Ok(None)`
    /// when the name has none.
    pub async fn dmarc_record(
        &self,
        domain: &str,
    ) -> Result<Option<std::sync::Arc<mail_auth::dmarc::Dmarc>>, String> {
        let name = format!("_dmarc.{}.", domain.trim_end_matches('.'));
        match self.prefetch_txt::<mail_auth::dmarc::Dmarc>(&name).await {
            Ok(record) => Ok(Some(record)),
            Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_)))
            | Err(mail_auth::Error::Dns(mail_auth::DnsError::InvalidRecordType)) => Ok(None),
            Err(mail_auth::Error::Dns(e)) => Err(format!("DMARC lookup for {domain}: {e}")),
            // A record that does not parse is no record (RFC 9989 §4.10).
            Err(_) => Ok(None),
        }
    }

    /// The Organizational Domain of `domain` by RFC 9989 §4.10.2's tree walk, as DMARC
    /// alignment uses it: from the domain up (at most 8 names, as the discovery walk), the
    /// first with a `psd=n` record; the name just below the first with `psd=y`; else the
    /// shortest name with a record; else `domain` itself. `Err` on a DNS failure.
    pub async fn organizational_domain(&self, domain: &str) -> Result<String, String> {
        use mail_auth::dmarc::Psd;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
        let mut shortest = None;
        let mut start = 0;
        // Names of at least two labels; past eight labels the walk jumps to seven.
        while start + 1 < labels.len() {
            let name = labels[start..].join(".");
            if let Some(record) = self.dmarc_record(&name).await? {
                match record.psd {
                    Psd::No => return Ok(name),
                    Psd::Yes if start > 0 => return Ok(labels[start - 1..].join(".")),
                    Psd::Yes => return Ok(name),
                    Psd::Default => shortest = Some(name),
                }
            }
            let left = labels.len() - start;
            start = if left > 8 {
                labels.len() - 7
            } else {
                start + 1
            };
        }
        Ok(shortest.unwrap_or(domain))
    }

    /// The first name the PTR records of `ip` give (trailing dot removed), counted in the
    /// metrics and cached like mail-auth's own PTR lookups; `None` when there is none or
    /// the lookup failed. Not forward-confirmed: for showing an operator who a sender is,
    /// never for a decision about mail.
    pub async fn reverse_name(&self, ip: IpAddr) -> Option<String> {
        let started = Instant::now();
        let lookup = self.auth.ptr_lookup(ip, Some(&self.ptr)).await;
        let ending = match &lookup {
            Ok(_) => Ending::Answer,
            Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_))) => Ending::NoRecords,
            Err(e) => Ending::of_error_text(&e.to_string()),
        };
        STATS.observe(QueryType::Ptr, started, ending);
        let names = lookup.ok()?;
        let name = names.rrset.first()?;
        Some(name.trim_end_matches('.').to_ascii_lowercase())
    }

    /// Which of `addresses` may receive reports about `domain` (RFC 7489 §7.1, RFC 9990
    /// §5.1): those inside the domain, and those whose domain publishes
    /// `<domain>._report._dmarc.<their domain>` with `v=DMARC1`. `None` on a DNS failure
    /// (try again later, rather than drop a destination that may be authorised).
    pub async fn authorised_report_addresses(
        &self,
        domain: &str,
        addresses: &[String],
    ) -> Option<Vec<String>> {
        self.auth
            .verify_dmarc_report_address(domain, addresses, Some(&self.txt))
            .await
            .map(|ok| ok.into_iter().cloned().collect())
    }

    /// Where the tree walk for `from_domain` found `record` (RFC 9989 §4.10): the name whose
    /// cached `_dmarc` record is this very one. Reads the cache only (no lookup, not counted).
    pub(crate) fn cached_dmarc_domain(
        &self,
        from_domain: &str,
        record: &std::sync::Arc<mail_auth::dmarc::Dmarc>,
    ) -> Option<String> {
        use mail_auth::common::resolver::ToFqdn;
        let mut name = from_domain.trim_end_matches('.');
        loop {
            let fqdn = format!("_dmarc.{name}.");
            let key = fqdn.to_fqdn();
            if let Some(hit) = self.txt.get::<str>(key.as_ref()) {
                let cached = mail_auth::dmarc::Dmarc::unwrap_txt(hit).ok();
                if cached.is_some_and(|c| std::sync::Arc::ptr_eq(&c, record)) {
                    return Some(name.to_ascii_lowercase());
                }
            }
            name = name.split_once('.')?.1;
        }
    }

    /// Wraps mail-auth parameters with this resolver's parsed-record caches.
    pub(crate) fn params<P>(&self, params: P) -> CachedParams<'_, P> {
        Parameters::new(params)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

/// How long a failed TXT lookup is remembered: long enough for the message being checked,
/// short enough that the next message asks again.
const FAILURE_TTL: Duration = Duration::from_secs(5);

/// A bounded cache whose entries expire at the record's TTL.
///
/// Small critical sections under a plain mutex: lookups are a hash probe, and a miss goes to
/// the network anyway. When full, expired entries are swept; if none expired, the cache is
/// cleared (crude, but bounded and rare at sane sizes).
pub struct TtlCache<K, V> {
    capacity: usize,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        // A poisoned cache only means another thread panicked mid-insert; the map is still valid.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.capacity == 0 {
            return None;
        }
        let mut map = self.lock();
        match map.get(name) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ttl_cache_expires_and_stays_bounded() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(2);
        let later = Instant::now() + Duration::from_secs(60);
        cache.insert("a".into(), 1, later);
        cache.insert("b".into(), 2, later);
        cache.insert("c".into(), 3, later);
        assert!(cache.lock().len() <= 2);
        assert_eq!(cache.get("c"), Some(3));
        cache.insert("old".into(), 4, Instant::now() - Duration::from_secs(1));
        assert_eq!(cache.get("old"), None);
    }

    #[test]
    fn zero_capacity_disables_cache() {
        let cache: TtlCache<Box<str>, u32> = TtlCache::new(0);
        cache.insert("a".into(), 1, Instant::now() + Duration::from_secs(60));
        assert_eq!(cache.get("a"), None);
    }
}
