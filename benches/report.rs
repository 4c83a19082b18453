//! How long a day's DMARC aggregate reports take to generate from the store: 1,000,000
//! verdicts of one UTC day spread over 100 policy domains (10,000 each) and 2,000 source
//! addresses, read back, grouped into rows, written as XML, gzipped and composed as report
//! messages. The store is filled once (not timed); then the whole day's reports are made five
//! times and the median, fastest and slowest runs are printed.
//!
//! `cargo bench --bench report` (AUTHMILTER_BENCH_VERDICTS changes the count)

use authmilter::auth::Published;
use authmilter::check::DmarcEvent;
use authmilter::report::aggregate::{Aggregate, Reporter};
use authmilter::report::message::compose;
use authmilter::store::{Record, Store, Transport};
use std::time::{Duration, Instant};

const DAY_MS: i64 = 86_400_000;
const DOMAINS: usize = 100;

fn event(domain: &str, i: usize) -> DmarcEvent {
    let pass = !i.is_multiple_of(5);
    DmarcEvent {
        policy: Published {
            domain: domain.into(),
            adkim: "r".into(),
            aspf: "r".into(),
            p: "quarantine".into(),
            sp: "quarantine".into(),
            np: "quarantine".into(),
            testing: false,
            fo: "0".into(),
            rua: vec![(format!("dmarc@{domain}"), 0)],
            ruf: vec![],
        },
        header_from: domain.into(),
        envelope_from: domain.into(),
        envelope_to: Some("example.net".into()),
        disposition: if pass { "pass" } else { "quarantine" }.into(),
        dkim_aligned: pass,
        spf_aligned: !i.is_multiple_of(3),
        reasons: vec![],
        dkim: vec![(
            domain.into(),
            "s1".into(),
            if pass { "pass" } else { "fail" }.into(),
        )],
        spf: (
            domain.into(),
            "mfrom".into(),
            if !i.is_multiple_of(3) {
                "pass"
            } else {
                "softfail"
            }
            .into(),
        ),
    }
}

fn main() {
    let total: usize = std::env::var("AUTHMILTER_BENCH_VERDICTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.sqlite");
    let mut store = Store::open(&path).unwrap();
    let day = 20_000 * DAY_MS;
    let fill = Instant::now();
    let domains: Vec<String> = (0..DOMAINS).map(|d| format!("domain{d}.example")).collect();
    for chunk in (0..total).collect::<Vec<_>>().chunks(10_000) {
        let records: Vec<Record> = chunk
            .iter()
            .map(|&i| {
                let domain = &domains[i % DOMAINS];
                Record {
                    received_at: day + (i as i64 * (DAY_MS - 1)) / total as i64,
                    transport: Transport::Milter,
                    queue_id: Some(format!("Q{i}")),
                    message_id: None,
                    client_ip: format!("192.0.{}.{}", (i / 251) % 8, i % 251),
                    helo: None,
                    mail_from: None,
                    rcpts: vec!["bob@example.net".into()],
                    rcpt_count: 1,
                    from_domain: Some(domain.clone()),
                    verdict: "accept".into(),
                    dmarc: Some("pass".into()),
                    duration: Duration::from_micros(100),
                    document: serde_json::json!({"verdict": "accept"}),
                    dmarc_event: Some(event(domain, i)),
                }
            })
            .collect();
        store.insert_batch(&records).unwrap();
    }
    eprintln!(
        "filled {total} verdicts in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let reporter = Reporter {
        org_name: "bench".into(),
        email: "dmarc@bench.example".into(),
        extra_contact_info: None,
    };
    let mut runs = Vec::new();
    let mut rows = 0;
    let mut bytes = 0;
    for _ in 0..5 {
        let started = Instant::now();
        (rows, bytes) = (0, 0);
        let found = store.dmarc_domains(day, day + DAY_MS).unwrap();
        assert_eq!(found.len(), DOMAINS);
        for domain in &found {
            let report = Aggregate::collect(&store, domain, day..day + DAY_MS, domain.clone())
                .unwrap()
                .unwrap();
            rows += report.rows.len();
            let message = compose(&report, &reporter, &[format!("dmarc@{domain}")], 0);
            bytes += message.bytes.len();
        }
        runs.push(started.elapsed());
    }
    runs.sort();
    println!(
        "report generation: {total} verdicts, {DOMAINS} domains, {rows} rows, {bytes} bytes of \
         report mail: median {:.2} s (fastest {:.2} s, slowest {:.2} s, 5 runs)",
        runs[2].as_secs_f64(),
        runs[0].as_secs_f64(),
        runs[4].as_secs_f64()
    );
}
