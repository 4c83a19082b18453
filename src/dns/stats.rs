//! DNS counters for `/metrics`: lookups that reached the resolver, their failures and how
//! long they took, plus answers served from our parsed-record caches.
//!
//! Process-wide (a static), because resolvers are rebuilt on every reload and the counters
//! must not restart with them. Every lookup the program makes is counted: our SPF evaluator
//! counts its own, and the DKIM, ARC and DMARC lookups mail-auth would make are fetched
//! first through [`super::Dns::prefetch_txt`] (see `prefetch`) or, for DKIM keys,
//! [`super::Dns::txt_with_text`], so mail-auth finds them in the cache. The one exception is the A lookup mail-auth makes for a DMARC `np=` check.

use crate::metrics::{family, Histogram};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Record types we look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    Txt,
    A,
    Aaaa,
    Mx,
    Ptr,
}

const TYPES: [QueryType; 5] = [
    QueryType::Txt,
    QueryType::A,
    QueryType::Aaaa,
    QueryType::Mx,
    QueryType::Ptr,
];

impl QueryType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueryType::Txt => "txt",
            QueryType::A => "a",
            QueryType::Aaaa => "aaaa",
            QueryType::Mx => "mx",
            QueryType::Ptr => "ptr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a lookup ended. A name without records is an answer, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Answer,
    NoRecords,
    Timeout,
    /// SERVFAIL, REFUSED and other failures the server reported.
    ServerFailure,
    /// Anything else (connection, malformed answer).
    Other,
}

const ERRORS: [Ending; 3] = [Ending::Timeout, Ending::ServerFailure, Ending::Other];

impl Ending {
    fn error_index(self) -> Option<usize> {
        ERRORS.iter().position(|&e| e == self)
    }

    fn as_str(self) -> &'static str {
        match self {
            Ending::Answer => "answer",
            Ending::NoRecords => "no_records",
            Ending::Timeout => "timeout",
            Ending::ServerFailure => "server_failure",
            Ending::Other => "other",
        }
    }

    /// Classifies a failure by its message (hickory's and mail-auth's error types both end
    /// up as text at some layer; the words are stable).
    pub fn of_error_text(text: &str) -> Ending {
        let t = text.to_ascii_lowercase();
        if t.contains("timed out") || t.contains("timeout") {
            Ending::Timeout
        } else if t.contains("servfail")
            || t.contains("refused")
            || t.contains("server failure")
            || t.contains("response code")
        {
            Ending::ServerFailure
        } else {
            Ending::Other
        }
    }
}

/// Upper bounds of the lookup-latency buckets, in seconds: loopback and cached answers are
/// sub-millisecond, remote ones tens of milliseconds, failures run to the timeout.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

pub struct DnsStats {
    queries: [AtomicU64; TYPES.len()],
    errors: [[AtomicU64; ERRORS.len()]; TYPES.len()],
    cache_hits: AtomicU64,
    latency: Histogram,
}

/// The counters of this process.
pub static STATS: DnsStats = DnsStats {
    queries: [const { AtomicU64::new(0) }; TYPES.len()],
    errors: [const { [const { AtomicU64::new(0) }; ERRORS.len()] }; TYPES.len()],
    cache_hits: AtomicU64::new(0),
    latency: Histogram::new(&LATENCY_BUCKETS),
};

impl DnsStats {
    /// One lookup that went to the resolver.
    pub fn observe(&self, qtype: QueryType, started: Instant, ending: Ending) {
        let took = started.elapsed();
        self.queries[qtype.index()].fetch_add(1, Relaxed);
        if let Some(e) = ending.error_index() {
            self.errors[qtype.index()][e].fetch_add(1, Relaxed);
        }
        self.latency.observe(took);
        tracing::trace!(
            qtype = qtype.as_str(),
            ending = ending.as_str(),
            ?took,
            "dns lookup"
        );
    }

    /// Lookups sent to the resolver and how many of them failed, all types together (the
    /// dashboard's DNS error rate).
    pub fn totals(&self) -> (u64, u64) {
        let queries = self.queries.iter().map(|q| q.load(Relaxed)).sum();
        let errors = self.errors.iter().flatten().map(|e| e.load(Relaxed)).sum();
        (queries, errors)
    }

    /// An answer our parsed-record cache had (no lookup).
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }

    /// Appends the DNS families in the text exposition format.
    pub fn render(&self, out: &mut String) {
        family(
            out,
            "authmilter_dns_queries_total",
            "counter",
            "DNS lookups sent to the resolver, by record type.",
        );
        for t in TYPES {
            let n = self.queries[t.index()].load(Relaxed);
            let _ = writeln!(
                out,
                "authmilter_dns_queries_total{{type=\"{}\"}} {n}",
                t.as_str()
            );
        }
        family(
            out,
            "authmilter_dns_errors_total",
            "counter",
            "DNS lookups that failed (a name without records is not a failure).",
        );
        for t in TYPES {
            for (e, ending) in ERRORS.iter().enumerate() {
                let n = self.errors[t.index()][e].load(Relaxed);
                let _ = writeln!(
                    out,
                    "authmilter_dns_errors_total{{type=\"{}\",kind=\"{}\"}} {n}",
                    t.as_str(),
                    ending.as_str()
                );
            }
        }
        family(
            out,
            "authmilter_dns_query_duration_seconds",
            "histogram",
            "Time DNS lookups took (answers from the resolver's own cache included).",
        );
        self.latency
            .render(out, "authmilter_dns_query_duration_seconds", "");
        family(
            out,
            "authmilter_dns_cache_hits_total",
            "counter",
            "Records served from authmilter's parsed-record caches without a lookup.",
        );
        let _ = writeln!(
            out,
            "authmilter_dns_cache_hits_total {}",
            self.cache_hits.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_their_words() {
        assert_eq!(Ending::of_error_text("request timed out"), Ending::Timeout);
        assert_eq!(
            Ending::of_error_text("DNS error: ServFail"),
            Ending::ServerFailure
        );
        assert_eq!(
            Ending::of_error_text("io error: broken pipe"),
            Ending::Other
        );
    }
}
