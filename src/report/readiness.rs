//! ★ Enforcement readiness: before a domain moves from `p=none` to `p=quarantine` or
//! `p=reject`, which of its senders would lose mail if it enforced today?
//!
//! Two sources of evidence about the domain's mail over a period:
//! - the aggregate reports other receivers sent us (what the world sees), row by row;
//! - this filter's own verdicts, through their DMARC events (what we see).
//!
//! They count different deliveries (a message another receiver reported did not pass
//! through this filter, and the other way round), so per source address their volumes add
//! up. The one overlap is our own aggregate reports read back (when a domain's `rua=` points
//! at us): those rows are left out, since the verdicts count the same messages in more detail.
//!
//! Each message is **aligned** (DMARC passes: an aligned SPF or DKIM pass), **fixable**
//! (DMARC fails, but SPF or DKIM passes for some other domain: an ESP's bounce domain or
//! signing domain, curable by a custom return path or by signing with the domain), or
//! **failing** (nothing authenticates: forwarding that broke SPF and DKIM, or spoofing). A
//! source's class is the class of most of its messages (a tie goes to the worse class). With
//! `pct=100`, every message not aligned would be quarantined under `p=quarantine` or rejected
//! under `p=reject`: that is the projected loss, and fixing a fixable source takes its
//! fixable messages off it.

use crate::check::DmarcEvent;
use crate::dates::format_rfc3339;
use crate::dns::Dns;
use crate::store::{ReportedRow, Store, StoreError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The period looked at when none is given: 30 days.
pub const DEFAULT_PERIOD_MS: i64 = 30 * 86_400_000;
/// How many sources (the largest) get their reverse name looked up.
pub const NAMED_SOURCES: usize = 50;
/// The longest the reverse lookups of one view take together; names not found by then
/// are shown as unknown.
pub const NAMING_BOUND: Duration = Duration::from_secs(5);

/// What enforcing would do to a message, or to a source's mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// DMARC passes: unaffected by enforcement.
    Aligned,
    /// DMARC fails but SPF or DKIM passes for another domain: lost unless aligned.
    Fixable,
    /// Nothing authenticates: lost (forwarding, spoofing).
    Failing,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Aligned => "aligned",
            Class::Fixable => "fixable",
            Class::Failing => "failing",
        }
    }

    /// A message's class from its DMARC result and whether anything authenticated.
    fn of(aligned: bool, authenticated: bool) -> Class {
        match (aligned, authenticated) {
            (true, _) => Class::Aligned,
            (false, true) => Class::Fixable,
            (false, false) => Class::Failing,
        }
    }
}

/// One sending address and what its mail did over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// As reported (empty when a reporter left it out).
    pub ip: String,
    /// Its PTR name, when the lookup answered in time.
    pub reverse_name: Option<String>,
    /// The SPF (MAIL FROM, or HELO for the null sender) and DKIM `d=` domains it used.
    pub spf_domains: BTreeSet<String>,
    pub dkim_domains: BTreeSet<String>,
    /// Messages the received reports counted, and messages this filter checked.
    pub reported: u64,
    pub seen_here: u64,
    /// Messages per class.
    pub aligned: u64,
    pub fixable: u64,
    pub failing: u64,
}

impl Source {
    pub fn messages(&self) -> u64 {
        self.aligned + self.fixable + self.failing
    }

    /// The class of most of its messages; a tie goes to the worse class.
    pub fn class(&self) -> Class {
        [
            (self.failing, Class::Failing),
            (self.fixable, Class::Fixable),
            (self.aligned, Class::Aligned),
        ]
        .into_iter()
        .fold((0, Class::Aligned), |best, (n, class)| {
            if n > best.0 {
                (n, class)
            } else {
                best
            }
        })
        .1
    }

    fn add(&mut self, count: u64, class: Class) {
        match class {
            Class::Aligned => self.aligned += count,
            Class::Fixable => self.fixable += count,
            Class::Failing => self.failing += count,
        }
    }
}

/// The readiness of one domain over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub domain: String,
    /// Unix milliseconds, `[since, until)`.
    pub since: i64,
    pub until: i64,
    /// Received reports that contributed rows.
    pub reports: usize,
    /// Stored verdict events that could not be read (left out).
    pub unreadable: usize,
    /// The largest first (then by address).
    pub sources: Vec<Source>,
}

impl Readiness {
    /// Reads the reports about `domain` whose period overlaps `[since, until)` (but those
    /// `own_reporter`, our own reports address, sent) and this filter's verdicts for it
    /// received in that time.
    pub fn gather(
        store: &Store,
        domain: &str,
        since: i64,
        until: i64,
        own_reporter: Option<&str>,
    ) -> Result<Readiness, StoreError> {
        let mut by_ip: BTreeMap<String, Source> = BTreeMap::new();
        let mut reports = HashSet::new();
        let secs = |ms: i64| ms.div_euclid(1000);
        store.for_each_reported_row(domain, secs(since), secs(until), own_reporter, |row| {
            reports.insert(row.report);
            reported(by_ip.entry(row.source_ip.clone()).or_default(), row);
        })?;
        let unreadable = store.for_each_dmarc_event(domain, since, until, |ip, event| {
            seen(by_ip.entry(ip.to_string()).or_default(), event);
        })?;
        let mut sources: Vec<Source> = by_ip
            .into_iter()
            .map(|(ip, s)| Source { ip, ..s })
            .collect();
        sources.sort_by(|a, b| b.messages().cmp(&a.messages()).then(a.ip.cmp(&b.ip)));
        Ok(Readiness {
            domain: domain.to_string(),
            since,
            until,
            reports: reports.len(),
            unreadable,
            sources,
        })
    }

    /// Looks up the reverse names of the [`NAMED_SOURCES`] largest sources, together, for
    /// at most [`NAMING_BOUND`].
    pub async fn name_sources(&mut self, dns: &Arc<Dns>) {
        let mut lookups = tokio::task::JoinSet::new();
        for (i, source) in self.sources.iter().enumerate().take(NAMED_SOURCES) {
            let Ok(ip) = source.ip.parse::<IpAddr>() else {
                continue;
            };
            let dns = Arc::clone(dns);
            lookups.spawn(async move { (i, dns.reverse_name(ip).await) });
        }
        let sources = &mut self.sources;
        let all = async {
            while let Some(done) = lookups.join_next().await {
                if let Ok((i, name)) = done {
                    sources[i].reverse_name = name;
                }
            }
        };
        if tokio::time::timeout(NAMING_BOUND, all).await.is_err() {
            tracing::info!(
                domain = %self.domain,
                "readiness: reverse lookups unanswered after {NAMING_BOUND:?}, shown as unknown"
            );
        }
    }

    pub fn messages(&self) -> u64 {
        self.sources.iter().map(Source::messages).sum()
    }

    pub fn aligned(&self) -> u64 {
        self.sources.iter().map(|s| s.aligned).sum()
    }

    /// Messages not passing DMARC: what `p=quarantine` or `p=reject` at `pct=100` would
    /// quarantine or reject.
    pub fn loss(&self) -> u64 {
        self.messages() - self.aligned()
    }

    /// The loss once `source`'s fixable mail is aligned.
    pub fn loss_after_fixing(&self, source: &Source) -> u64 {
        self.loss() - source.fixable
    }

    /// The view as `GET /v1/reports/readiness` answers it.
    pub fn to_json(&self) -> Value {
        let total = self.messages();
        let of_total = |n: u64| share(n, total);
        let loss = self.loss();
        let mut classes = serde_json::Map::new();
        for class in [Class::Aligned, Class::Fixable, Class::Failing] {
            let of: Vec<&Source> = self.sources.iter().filter(|s| s.class() == class).collect();
            let messages: u64 = of.iter().map(|s| s.messages()).sum();
            classes.insert(
                class.as_str().into(),
                json!({"sources": of.len(), "messages": messages}),
            );
        }
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|s| {
                let after = (s.fixable > 0).then(|| {
                    let left = self.loss_after_fixing(s);
                    json!({"messages": left, "share": of_total(left)})
                });
                json!({
                    "source_ip": s.ip,
                    "reverse_name": s.reverse_name,
                    "spf_domains": s.spf_domains,
                    "dkim_domains": s.dkim_domains,
                    "messages": s.messages(),
                    "reported": s.reported,
                    "seen_here": s.seen_here,
                    "dmarc_pass": s.aligned,
                    "pass_rate": share(s.aligned, s.messages()),
                    "fixable": s.fixable,
                    "failing": s.failing,
                    "class": s.class().as_str(),
                    "loss_if_fixed": after,
                })
            })
            .collect();
        json!({
            "domain": self.domain,
            "since": format_rfc3339(self.since),
            "until": format_rfc3339(self.until),
            "reports": self.reports,
            "reported_messages": self.sources.iter().map(|s| s.reported).sum::<u64>(),
            "seen_here": self.sources.iter().map(|s| s.seen_here).sum::<u64>(),
            "messages": total,
            "dmarc_pass": self.aligned(),
            "pass_rate": share(self.aligned(), total),
            "projected": {
                "quarantine": {"messages": loss, "share": of_total(loss)},
                "reject": {"messages": loss, "share": of_total(loss)},
            },
            "classes": classes,
            "sources": sources,
            "unreadable_verdicts": self.unreadable,
        })
    }

    /// The view as `authmilter report readiness` prints it.
    pub fn table(&self) -> String {
        let total = self.messages();
        let loss = self.loss();
        let mut out = format!(
            "Enforcement readiness of {} from {} to {}\n",
            self.domain,
            format_rfc3339(self.since),
            format_rfc3339(self.until)
        );
        out += &format!(
            "{} messages ({} in {} aggregate reports received, {} checked by this filter), \
             {} pass DMARC ({})\n",
            total,
            self.sources.iter().map(|s| s.reported).sum::<u64>(),
            self.reports,
            self.sources.iter().map(|s| s.seen_here).sum::<u64>(),
            self.aligned(),
            percent(self.aligned(), total)
        );
        for (policy, fate) in [("quarantine", "quarantined"), ("reject", "rejected")] {
            out += &format!(
                "p={policy} (pct=100) today: {loss} messages {fate} ({})\n",
                percent(loss, total)
            );
        }
        if self.unreadable > 0 {
            out += &format!("{} stored verdicts could not be read\n", self.unreadable);
        }
        out.push('\n');
        let mut rows = vec![[
            "SOURCE",
            "REVERSE NAME",
            "SPF DOMAINS",
            "DKIM DOMAINS",
            "MESSAGES",
            "PASS",
            "CLASS",
            "LOSS IF FIXED",
        ]
        .map(String::from)];
        for s in &self.sources {
            let joined = |set: &BTreeSet<String>| match set.is_empty() {
                true => "-".to_string(),
                false => set.iter().cloned().collect::<Vec<_>>().join(","),
            };
            rows.push([
                if s.ip.is_empty() { "?" } else { &s.ip }.to_string(),
                s.reverse_name.clone().unwrap_or_else(|| "-".into()),
                joined(&s.spf_domains),
                joined(&s.dkim_domains),
                s.messages().to_string(),
                percent(s.aligned, s.messages()),
                s.class().as_str().to_string(),
                match s.fixable {
                    0 => "-".to_string(),
                    _ => {
                        let left = self.loss_after_fixing(s);
                        format!("{left} ({})", percent(left, total))
                    }
                },
            ]);
        }
        if self.sources.is_empty() {
            out += "no mail seen for this domain in the period\n";
            return out;
        }
        let widths: Vec<usize> = (0..8)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                // Counts and rates right-aligned, text left-aligned.
                let cell = match c {
                    4 | 5 => format!("{cell:>w$}", w = widths[c]),
                    _ => format!("{cell:<w$}", w = widths[c]),
                };
                line += &cell;
                line += "  ";
            }
            out += line.trim_end();
            out.push('\n');
        }
        out
    }
}

/// Adds a reported row's messages to its source.
fn reported(source: &mut Source, row: ReportedRow) {
    let passed = |results: &[(String, String)]| results.iter().any(|(_, r)| r == "pass");
    let class = Class::of(
        row.dkim_aligned || row.spf_aligned,
        passed(&row.spf) || passed(&row.dkim),
    );
    source.reported += row.count;
    source.add(row.count, class);
    for (domain, set) in [
        (row.spf, &mut source.spf_domains),
        (row.dkim, &mut source.dkim_domains),
    ] {
        set.extend(domain.into_iter().map(|(d, _)| d).filter(|d| !d.is_empty()));
    }
}

/// Adds a message this filter checked to its source.
fn seen(source: &mut Source, event: DmarcEvent) {
    let authenticated = event.spf.2 == "pass" || event.dkim.iter().any(|d| d.result == "pass");
    let class = Class::of(event.dkim_aligned || event.spf_aligned, authenticated);
    source.seen_here += 1;
    source.add(1, class);
    if !event.spf.0.is_empty() {
        source.spf_domains.insert(event.spf.0.to_ascii_lowercase());
    }
    source.dkim_domains.extend(
        event
            .dkim
            .into_iter()
            .map(|d| d.domain.to_ascii_lowercase())
            .filter(|d| !d.is_empty()),
    );
}

/// `n / total`, or `null` without messages.
fn share(n: u64, total: u64) -> Value {
    if total == 0 {
        Value::Null
    } else {
        (n as f64 / total as f64).into()
    }
}

/// `42.9 %`, or `-` without messages.
fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        format!("{:.1} %", n as f64 * 100.0 / total as f64)
    }
}

#[cfg(test)]
mod tests;
