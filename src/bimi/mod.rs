//! BIMI on inbound mail (draft-brand-indicators-for-message-identification, with
//! draft-fetch-validation-vmc-wchuang for the evidence): after DMARC, find the domain's
//! BIMI record, fetch and check its evidence (a mark certificate) and indicator (an SVG
//! Tiny PS logo), and say what the mailbox may show.
//!
//! Floor 4, beside `check/` (which calls it): it imports `config`, `dns`, `auth` and `sign`
//! (the header splitter), nothing above. Work is bounded by `bimi.max_wait`: the end of a
//! message never waits longer; fetches still under way finish in their own tasks and fill
//! the cache (see [`fetch`]).

pub mod cert;
pub mod fetch;
pub mod gate;
pub mod header;
pub mod record;
pub mod stats;
pub mod svg;

use crate::auth::Outcome;
use crate::config::BimiConfig;
use crate::dns::Dns;
use cert::MarkType;
use fetch::{Cache, Client, FetchError, Limits};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_rustls::rustls::RootCertStore;

/// The BIMI result of a message (the draft's §7.7 `bimi=` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BimiResult {
    /// The indicator may be shown.
    Pass,
    /// The domain has no BIMI record.
    None,
    /// The record, the evidence or the indicator is wrong.
    Fail,
    /// A lookup or fetch failed in a way that may pass later, or took too long.
    Temperror,
    /// The domain's record declines BIMI (`l=` and `a=` empty).
    Declined,
    /// BIMI was not evaluated: DMARC or its policy does not allow it, or configuration.
    Skipped,
}

impl BimiResult {
    pub const ALL: [BimiResult; 6] = [
        BimiResult::Pass,
        BimiResult::None,
        BimiResult::Fail,
        BimiResult::Temperror,
        BimiResult::Declined,
        BimiResult::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BimiResult::Pass => "pass",
            BimiResult::None => "none",
            BimiResult::Fail => "fail",
            BimiResult::Temperror => "temperror",
            BimiResult::Declined => "declined",
            BimiResult::Skipped => "skipped",
        }
    }
}

/// What BIMI found about one message: the `bimi` member of the verdict document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BimiOutcome {
    pub result: BimiResult,
    pub reason: Option<String>,
    /// The domain whose record was used (`header.d`).
    pub domain: Option<String>,
    /// `header.selector`.
    pub selector: Option<String>,
    /// `l=`.
    pub location: Option<String>,
    /// `a=` (`policy.authority-uri`).
    pub authority: Option<String>,
    /// The evidence's verdict (`policy.authority`): `pass` for a valid mark certificate,
    /// `none` for a self-asserted indicator.
    pub authority_result: Option<&'static str>,
    pub mark_type: Option<MarkType>,
    /// The validated indicator (SVG), for `BIMI-Indicator`; not in the JSON document.
    #[serde(skip)]
    pub indicator: Option<Arc<[u8]>>,
}

impl BimiOutcome {
    pub fn new(result: BimiResult, reason: Option<String>) -> BimiOutcome {
        BimiOutcome {
            result,
            reason,
            domain: None,
            selector: None,
            location: None,
            authority: None,
            authority_result: None,
            mark_type: None,
            indicator: None,
        }
    }

    fn with(mut self, domain: &str, selector: &str) -> BimiOutcome {
        self.domain = Some(domain.to_string());
        self.selector = Some(selector.to_string());
        self
    }
}

/// Why the BIMI checker could not be built: configuration.
#[derive(Debug, thiserror::Error)]
pub enum BimiSetupError {
    #[error("bimi: cannot read {path}: {message}")]
    Roots { path: String, message: String },
}

/// The BIMI checker: configuration, mark roots, HTTPS client and document cache.
pub struct Bimi {
    config: BimiConfig,
    dns: Arc<Dns>,
    mark_roots: Vec<CertificateDer<'static>>,
    documents: Arc<Cache>,
}

fn read_pem(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, BimiSetupError> {
    let err = |message: String| BimiSetupError::Roots {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("{e:?}")))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

impl Bimi {
    /// Reads the root files the configuration names; `None` when BIMI is off.
    pub fn new(config: &BimiConfig, dns: Arc<Dns>) -> Result<Option<Bimi>, BimiSetupError> {
        if !config.enabled {
            return Ok(None);
        }
        Bimi::build(config, dns).map(Some)
    }

    /// Builds a checker whether or not `enabled` is set (the `bimi check` command).
    pub fn build(config: &BimiConfig, dns: Arc<Dns>) -> Result<Bimi, BimiSetupError> {
        let mark_roots = match &config.mark_roots_file {
            Some(path) => read_pem(path)?,
            None => Vec::new(),
        };
        let mut roots = RootCertStore::empty();
        match &config.fetch_roots_file {
            Some(path) => {
                roots.add_parsable_certificates(read_pem(path)?);
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let client = Client::new(
            Arc::clone(&dns),
            roots,
            Limits {
                timeout: config.fetch_timeout,
                max_redirects: config.max_redirects,
                allow_private: config.allow_private_destinations,
            },
        );
        Ok(Bimi {
            config: config.clone(),
            dns,
            mark_roots,
            documents: Arc::new(Cache::new(client, config.cache_ttl, config.cache_entries)),
        })
    }

    pub fn config(&self) -> &BimiConfig {
        &self.config
    }

    /// Documents in the cache.
    pub fn cached_documents(&self) -> usize {
        self.documents.len()
    }

    /// Evaluates a message whose verification found `outcome`; `None` when BIMI does not
    /// apply to it at all (verification skipped, domain or client not configured). Never
    /// longer than `bimi.max_wait`: past it, `temperror`. `arc_vouched`: see
    /// [`gate::admit`].
    pub async fn evaluate(
        &self,
        outcome: &Outcome,
        arc_vouched: bool,
        client: IpAddr,
        fields: &[(&[u8], &[u8])],
    ) -> Option<BimiOutcome> {
        if outcome.skipped.is_some() {
            return None;
        }
        let domain = outcome.from.domain().unwrap_or_default();
        if !domain.is_empty() && !self.config.applies_to(domain, client) {
            return None;
        }
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(
            self.config.max_wait,
            self.evaluate_now(outcome, arc_vouched, fields, SystemTime::now()),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => BimiOutcome::new(
                BimiResult::Temperror,
                Some(format!(
                    "not done within bimi.max_wait ({} ms)",
                    self.config.max_wait.as_millis()
                )),
            ),
        };
        stats::STATS.observe(result.result, started.elapsed());
        Some(result)
    }

    async fn evaluate_now(
        &self,
        outcome: &Outcome,
        arc_vouched: bool,
        fields: &[(&[u8], &[u8])],
        at: SystemTime,
    ) -> BimiOutcome {
        let admitted = match gate::admit(&self.dns, outcome, arc_vouched, fields).await {
            Ok(a) => a,
            Err(stopped) => return stopped,
        };
        self.check_domain(&admitted.author, &admitted.org, &admitted.selector, at)
            .await
    }

    /// Record, evidence and indicator for `author` (falling back to `org`) with `selector`,
    /// with no DMARC prerequisite: the message path after the gate, and `bimi check`.
    pub async fn check_domain(
        &self,
        author: &str,
        org: &str,
        selector: &str,
        at: SystemTime,
    ) -> BimiOutcome {
        let (domain, assertion) = match self.find_record(author, org, selector).await {
            Ok(found) => found,
            Err(stopped) => return stopped,
        };
        let mut out = BimiOutcome::new(BimiResult::Pass, None).with(&domain, selector);
        out.location = assertion.location.clone();
        out.authority = assertion.authority.clone();
        if assertion.is_declination() {
            out.result = BimiResult::Declined;
            return out;
        }
        let fail = |mut out: BimiOutcome, e: FetchError| {
            out.result = match e {
                FetchError::Transient(_) => BimiResult::Temperror,
                FetchError::Permanent(_) => BimiResult::Fail,
            };
            out.reason = Some(e.to_string());
            out
        };
        let max_svg = self.config.max_indicator_size;
        let indicator = match &assertion.authority {
            Some(a) => {
                if self.mark_roots.is_empty() {
                    out.result = BimiResult::Skipped;
                    out.reason = Some("no mark roots configured (bimi.mark_roots_file)".into());
                    return out;
                }
                let pem = match self.documents.get(a, self.config.max_evidence_size).await {
                    Ok(pem) => pem,
                    Err(e) => return fail(out, e),
                };
                let mark =
                    match cert::validate(&pem, &self.mark_roots, &domain, selector, at, max_svg) {
                        Ok(mark) => mark,
                        Err(e) => {
                            out.result = BimiResult::Fail;
                            out.reason = Some(e);
                            return out;
                        }
                    };
                out.mark_type = Some(mark.mark_type);
                out.authority_result = Some("pass");
                // §7.4: when both are given, the indicator at l= must be the certificate's.
                if let Some(l) = &assertion.location {
                    let fetched = match self.documents.get(l, max_svg).await {
                        Ok(svg) => svg,
                        Err(e) => return fail(out, e),
                    };
                    match svg::decompress(&fetched, max_svg) {
                        Ok(svg) if svg == mark.svg => {}
                        Ok(_) => {
                            out.result = BimiResult::Fail;
                            out.reason =
                                Some("indicator at l= is not the mark certificate's".into());
                            return out;
                        }
                        Err(e) => {
                            out.result = BimiResult::Fail;
                            out.reason = Some(e);
                            return out;
                        }
                    }
                }
                mark.svg
            }
            None => {
                if !self.config.self_asserted {
                    out.result = BimiResult::Skipped;
                    out.reason = Some("self-asserted indicators are not accepted".into());
                    return out;
                }
                let l = assertion.location.as_deref().unwrap_or_default();
                let fetched = match self.documents.get(l, max_svg).await {
                    Ok(svg) => svg,
                    Err(e) => return fail(out, e),
                };
                match svg::decompress(&fetched, max_svg)
                    .and_then(|svg| svg::check(&svg, max_svg).map(|_| svg))
                {
                    Ok(svg) => {
                        out.authority_result = Some("none");
                        svg
                    }
                    Err(e) => {
                        out.result = BimiResult::Fail;
                        out.reason = Some(e);
                        return out;
                    }
                }
            }
        };
        out.indicator = Some(Arc::from(indicator));
        out
    }

    /// §4.4: `<selector>._bimi.<author>`, then the Organizational Domain; exactly one
    /// `v=BIMI1` record counts.
    async fn find_record(
        &self,
        author: &str,
        org: &str,
        selector: &str,
    ) -> Result<(String, record::Assertion), BimiOutcome> {
        let mut domains = vec![author];
        if org != author {
            domains.push(org);
        }
        for domain in domains {
            let name = format!("{selector}._bimi.{domain}.");
            let stopped =
                |r: BimiResult, m: String| BimiOutcome::new(r, Some(m)).with(domain, selector);
            let txt =
                self.dns.txt_strings(&name).await.map_err(|e| {
                    stopped(BimiResult::Temperror, format!("lookup of {name}: {e}"))
                })?;
            let records: Vec<&String> = txt.iter().filter(|t| record::is_bimi(t)).collect();
            match records.as_slice() {
                [] => continue,
                [one] => {
                    return record::parse(one)
                        .map(|a| (domain.to_string(), a))
                        .map_err(|e| stopped(BimiResult::Fail, e));
                }
                _ => {
                    return Err(stopped(
                        BimiResult::Fail,
                        format!("several v=BIMI1 records at {name}"),
                    ))
                }
            }
        }
        Err(
            BimiOutcome::new(BimiResult::None, Some("no BIMI record".into()))
                .with(author, selector),
        )
    }
}
