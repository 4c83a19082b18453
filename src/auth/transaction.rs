//! One message's verification, from MAIL FROM to end of data.
//!
//! Connection data (client address, HELO, authentication) outlives messages; a
//! [`Transaction`] holds the message data and is dropped at RSET, abort or end of message.

use super::budget::{Budget, Charge};
use super::dkim_key::KeyCache;
use super::message::{forged_ar, from_info};
use super::outcome::{
    ArcOutcome, AuthResult, IprevOutcome, Outcome, ResourceLimit, SpfCheck, SpfOutcome,
};
use super::spf::{check_host, is_valid_domain, SpfCache, SpfQuery};
use super::{arc, dkim, dmarc};
use crate::config::Config;
use crate::dns::{Dns, DnsSetupError};
use mail_auth::{AuthenticatedMessage, IprevResult};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;

/// What verification needs from the outside world: settings, the resolver, the SPF
/// evaluator's record cache and the DKIM key records as published. Cheap to clone; a transport keeps one per session so a reload
/// never changes a message half-way through.
#[derive(Clone)]
pub struct Verifier {
    config: Arc<Config>,
    dns: Arc<Dns>,
    spf: Arc<SpfCache>,
    dkim_keys: Arc<KeyCache>,
}

impl Verifier {
    /// Builds the resolver from the configuration.
    pub fn new(config: Arc<Config>) -> Result<Self, DnsSetupError> {
        let dns = Arc::new(Dns::new(&config.dns)?);
        Ok(Verifier::with_dns(config, dns))
    }

    /// Uses an existing resolver (keeps its caches across a configuration reload; the SPF
    /// record and DKIM key caches start empty).
    pub fn with_dns(config: Arc<Config>, dns: Arc<Dns>) -> Self {
        let spf = Arc::new(SpfCache::new(config.dns.cache_size));
        let dkim_keys = Arc::new(KeyCache::new(config.dns.cache_size));
        Verifier {
            config,
            dns,
            spf,
            dkim_keys,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn dns(&self) -> &Arc<Dns> {
        &self.dns
    }
}

/// What is known about the SMTP client for the life of its connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub ip: IpAddr,
    /// The HELO/EHLO name, if the client gave one.
    pub helo: Option<String>,
    /// The SMTP AUTH identity, if the client authenticated.
    pub authenticated: Option<String>,
}

impl Connection {
    pub fn new(ip: IpAddr) -> Self {
        Connection {
            ip,
            helo: None,
            authenticated: None,
        }
    }

    /// Why this client's mail is outbound (and so not verified), if it is.
    pub fn outbound_reason(&self, config: &Config) -> Option<String> {
        if let Some(user) = &self.authenticated {
            return Some(format!("authenticated client ({user})"));
        }
        config
            .is_trusted(self.ip)
            .then(|| format!("trusted network ({})", self.ip))
    }
}

/// Which door a message came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Milter,
    Smtp,
    Http,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Milter, Transport::Smtp, Transport::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Milter => "milter",
            Transport::Smtp => "smtp",
            Transport::Http => "http",
        }
    }
}

/// Bytes up to which a message's buffer grows by doubling, as any vector does; a larger
/// message gets room for `limits.max_message_size` at once (see `Transaction::append`).
const GROW_BY_DOUBLING: usize = 1024 * 1024;

/// A message being verified.
pub struct Transaction {
    ip: IpAddr,
    spf: Option<SpfOutcome>,
    iprev: Option<IprevOutcome>,
    skipped: Option<String>,
    message: Vec<u8>,
    max_size: usize,
    oversized: bool,
    /// What the kept bytes hold of the memory budget, when a door set one.
    charge: Option<Charge>,
    /// A limit that stopped the message being kept.
    limit: Option<ResourceLimit>,
    header_fields: usize,
    max_header_fields: usize,
}

impl Transaction {
    /// Starts a message at MAIL FROM and evaluates SPF for it (RFC 7208 §2.4) and for the
    /// HELO identity (§2.3). `mail_from` may be bracketed; `<>` or empty is the null sender.
    pub async fn begin(verifier: &Verifier, conn: &Connection, mail_from: &str) -> Transaction {
        let config = verifier.config();
        let mut tx = Transaction {
            ip: conn.ip,
            spf: None,
            iprev: None,
            skipped: conn.outbound_reason(config),
            message: Vec::new(),
            max_size: config.limits.max_message_size,
            oversized: false,
            charge: None,
            limit: None,
            header_fields: 0,
            max_header_fields: config.limits.max_header_fields,
        };
        if tx.skipped.is_none() {
            let spf = spf_at_mail_from(verifier, conn, mail_from);
            if config.iprev {
                let (spf, iprev) = tokio::join!(spf, iprev(verifier.dns(), conn.ip));
                tx.spf = Some(spf);
                tx.iprev = Some(iprev);
            } else {
                tx.spf = Some(spf.await);
            }
        }
        tx
    }

    /// SPF as evaluated at MAIL FROM (`None` for outbound mail): a transport may refuse the
    /// message right there if policy says so.
    pub fn spf(&self) -> Option<&SpfOutcome> {
        self.spf.as_ref()
    }

    /// Why verification is skipped for this message, if it is.
    pub fn skipped(&self) -> Option<&str> {
        self.skipped.as_deref()
    }

    /// Charges the bytes kept from now on to `budget`; past it, the message stops being kept
    /// and is deferred ([`ResourceLimit::Memory`]).
    pub fn charge_to(&mut self, budget: &Arc<Budget>) {
        let mut charge = budget.charge();
        if !charge.grow(self.message.len()) {
            self.stop(ResourceLimit::Memory);
            return;
        }
        self.charge = Some(charge);
    }

    /// Stops keeping the message because of `limit`: what was kept is freed at once.
    pub fn stop(&mut self, limit: ResourceLimit) {
        if self.limit.is_none() {
            self.limit = Some(limit);
        }
        self.message = Vec::new();
        if let Some(charge) = &mut self.charge {
            charge.release();
        }
    }

    /// Adds one header field. `value` is everything after the colon, as sent (folds included,
    /// CRLF line breaks); DKIM needs the bytes exactly.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        self.header_in_pieces(name, [value]);
    }

    /// [`header`](Self::header) with the value given as consecutive pieces, for a door that
    /// must rewrite it (the milter puts back the CRs of folds): the pieces go straight into
    /// the message, never joined into a copy of a field that may be a megabyte long.
    pub fn header_in_pieces<'a>(&mut self, name: &str, value: impl IntoIterator<Item = &'a [u8]>) {
        self.header_fields += 1;
        if self.header_fields > self.max_header_fields {
            self.stop(ResourceLimit::HeaderFields);
            return;
        }
        self.append(name.as_bytes());
        self.append(b":");
        for piece in value {
            self.append(piece);
        }
        self.append(b"\r\n");
    }

    /// Marks the end of the header section.
    pub fn end_of_headers(&mut self) {
        self.append(b"\r\n");
    }

    /// Adds a chunk of the body (CRLF line breaks, no dot-stuffing).
    pub fn body(&mut self, chunk: &[u8]) {
        self.append(chunk);
    }

    /// Adds a whole message (header and body) at once.
    pub fn message(&mut self, raw: &[u8]) {
        self.append(raw);
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.is_discarding() {
            return;
        }
        if self.message.len() + bytes.len() > self.max_size {
            // Keep nothing more: the verdict will say the message was too large.
            self.oversized = true;
            self.message = Vec::new();
            if let Some(charge) = &mut self.charge {
                charge.release();
            }
            return;
        }
        if let Some(charge) = &mut self.charge {
            if !charge.grow(bytes.len()) {
                self.stop(ResourceLimit::Memory);
                return;
            }
        }
        let needed = self.message.len() + bytes.len();
        if needed > self.message.capacity() && needed > GROW_BY_DOUBLING {
            // Past this, room for the largest message kept is reserved at once rather than
            // doubled: a doubling buffer holds the old and the new copy while it moves (about
            // 2.7x the message at its peak), and pages never written cost no memory. Where
            // the reservation is refused, the buffer grows as usual.
            let _ = self
                .message
                .try_reserve_exact(self.max_size - self.message.len());
        }
        self.message.extend_from_slice(bytes);
    }

    /// Whether the rest of the message is thrown away as it arrives (too large, or a
    /// resource limit): a door may ask the sender to skip it.
    pub fn is_discarding(&self) -> bool {
        self.oversized || self.limit.is_some()
    }

    /// The resource limit that stopped the message being kept, if one did.
    pub fn resource_limit(&self) -> Option<ResourceLimit> {
        self.limit
    }

    /// The message as received so far (empty once it went over the size limit).
    pub fn raw(&self) -> &[u8] {
        &self.message
    }

    /// Whether the message went over the size limit (nothing more is kept).
    pub fn is_oversized(&self) -> bool {
        self.oversized
    }

    /// Bytes received so far (0 once the message went over the size limit).
    pub fn size(&self) -> usize {
        self.message.len()
    }

    /// A message from a client whose mail is not verified (outbound), verified after all
    /// for the ARC set we add to it: DKIM and ARC only (SPF and DMARC judge the client,
    /// which is ours).
    pub fn for_outbound_seal(verifier: &Verifier, conn: &Connection, raw: &[u8]) -> Transaction {
        let mut tx = Transaction {
            ip: conn.ip,
            spf: None,
            iprev: None,
            skipped: None,
            message: Vec::new(),
            max_size: verifier.config().limits.max_message_size,
            oversized: false,
            charge: None,
            limit: None,
            header_fields: 0,
            max_header_fields: verifier.config().limits.max_header_fields,
        };
        tx.message(raw);
        tx
    }

    /// End of data: DKIM, ARC and DMARC.
    pub async fn finish(self, verifier: &Verifier) -> Outcome {
        self.finish_keeping(verifier).await.0
    }

    /// [`Transaction::finish`], handing back the message as received (empty when it went
    /// over the size limit), for the ARC set built over it.
    pub async fn finish_keeping(self, verifier: &Verifier) -> (Outcome, Vec<u8>) {
        let outcome = self.verify(verifier).await;
        (outcome, self.message)
    }

    async fn verify(&self, verifier: &Verifier) -> Outcome {
        let mut outcome = Outcome::empty();
        outcome.spf = self.spf.clone();
        outcome.iprev = self.iprev.clone();
        if let Some(limit) = self.limit {
            outcome.resource_limit = Some(limit);
            return outcome;
        }
        if let Some(reason) = &self.skipped {
            outcome.skipped = Some(reason.clone());
            return outcome;
        }
        if self.oversized {
            outcome.oversized = true;
            return outcome;
        }
        let config = verifier.config();
        let dns = verifier.dns();
        let Some(mut msg) = AuthenticatedMessage::parse(&self.message) else {
            outcome.malformed = Some("no header fields (not an RFC 5322 message)".into());
            return outcome;
        };
        outcome.from = from_info(&msg);
        outcome.forged_ar = forged_ar(&msg, &config.authserv_id);

        let mut dkim = dkim::prepare(&mut msg, config.limits.max_dkim_signatures);
        outcome.dkim_ignored = dkim.ignored;
        // DKIM keys are fetched beside ARC's lookups; mail-auth then verifies from the cache.
        let (refused_keys, arc) = tokio::join!(
            dkim::check_keys(dns, &verifier.dkim_keys, &msg),
            arc::verify(dns, &msg)
        );
        dkim.refuse_keys(&mut msg, refused_keys);
        let msg = msg;
        let (dkim_outcomes, dkim_outputs) = dkim.verify(dns, &msg).await;
        outcome.dkim = dkim_outcomes;
        outcome.arc = Some(ArcOutcome {
            remote_ip: Some(self.ip).filter(|ip| !ip.is_unspecified()),
            ..arc
        });
        if let Some(spf) = &outcome.spf {
            outcome.dmarc = Some(dmarc::verify(dns, &msg, &dkim_outputs, spf, &outcome.from).await);
        }
        outcome
    }
}

/// Normalises a MAIL FROM argument: brackets and surrounding space removed; `<>` becomes "".
pub fn normalize_mail_from(mail_from: &str) -> String {
    let s = mail_from.trim();
    let s = s.strip_prefix('<').unwrap_or(s);
    let s = s.strip_suffix('>').unwrap_or(s);
    s.trim().to_string()
}

async fn spf_at_mail_from(verifier: &Verifier, conn: &Connection, mail_from: &str) -> SpfOutcome {
    let dns = verifier.dns();
    let cache = &*verifier.spf;
    let receiver = verifier.config().authserv_id.as_str();
    let sender = normalize_mail_from(mail_from);
    let helo = conn.helo.as_deref().unwrap_or("").trim();
    if conn.ip.is_unspecified() {
        // `check` without --ip: there is no client to authorise.
        let unknown = SpfCheck {
            result: AuthResult::None,
            domain: sender
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default(),
            identity: if sender.is_empty() {
                "<>".into()
            } else {
                sender.clone()
            },
            reason: "client address unknown".into(),
            explanation: None,
        };
        return SpfOutcome {
            mail_from: unknown,
            null_sender: sender.is_empty(),
            helo: None,
        };
    }

    // §2.3: the HELO identity, checked as postmaster@helo.
    let helo_sender = format!("postmaster@{helo}");
    let helo_check = async {
        if !is_valid_domain(helo) {
            return None;
        }
        let q = SpfQuery {
            ip: conn.ip,
            domain: helo,
            sender: &helo_sender,
            helo,
            receiver,
        };
        let e = check_host(dns, cache, q).await;
        Some(SpfCheck {
            result: e.result,
            domain: helo.to_ascii_lowercase(),
            identity: helo.to_string(),
            reason: e.reason,
            explanation: e.explanation,
        })
    };

    if sender.is_empty() {
        // §2.4: for the null sender the MAIL FROM check is the HELO check.
        let helo_result = helo_check.await;
        let mail_from = helo_result.clone().unwrap_or_else(|| SpfCheck {
            result: AuthResult::None,
            domain: String::new(),
            identity: "<>".into(),
            reason: "null sender and no usable HELO name".into(),
            explanation: None,
        });
        return SpfOutcome {
            mail_from,
            null_sender: true,
            helo: helo_result,
        };
    }

    // §4.3: a sender without local part is postmaster at that domain; one without a domain
    // is taken at the HELO domain.
    let (local, domain) = match sender.rsplit_once('@') {
        Some((l, d)) => (if l.is_empty() { "postmaster" } else { l }, d.to_string()),
        None => (sender.as_str(), helo.to_string()),
    };
    let full_sender = format!("{local}@{domain}");
    let mail_check = async {
        let q = SpfQuery {
            ip: conn.ip,
            domain: &domain,
            sender: &full_sender,
            helo,
            receiver,
        };
        check_host(dns, cache, q).await
    };
    let (helo_result, e) = tokio::join!(helo_check, mail_check);
    SpfOutcome {
        mail_from: SpfCheck {
            result: e.result,
            domain: domain.to_ascii_lowercase(),
            identity: sender.clone(),
            reason: e.reason,
            explanation: e.explanation,
        },
        null_sender: false,
        helo: helo_result,
    }
}

async fn iprev(dns: &Dns, ip: IpAddr) -> IprevOutcome {
    let out = dns.authenticator().verify_iprev(dns.params(ip)).await;
    let result = match &out.result {
        IprevResult::Pass => AuthResult::Pass,
        IprevResult::Fail(_) => AuthResult::Fail,
        IprevResult::TempError(_) => AuthResult::Temperror,
        IprevResult::PermError(_) => AuthResult::Permerror,
        IprevResult::None => AuthResult::None,
    };
    IprevOutcome {
        result,
        ptr: out
            .ptr
            .as_ref()
            .and_then(|p| p.first())
            .map(|p| p.trim_end_matches('.').to_string()),
    }
}
