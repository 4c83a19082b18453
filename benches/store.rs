//! Verdict-writer throughput, SQLite next to PostgreSQL in one run: records per second
//! through the real writer (journal → bounded channel → batches of up to 512 → one
//! transaction each; SQLite WAL with synchronous=NORMAL, PostgreSQL binary COPY with the
//! server's default fsync), and through `insert_batch` at fixed batch sizes (with the
//! longest batch: on SQLite, the one whose commit ran a WAL checkpoint).
//!
//! `bench/store.sh` starts a private PostgreSQL cluster and runs this with
//! AUTHMILTER_BENCH_PG_URL set; without it only SQLite is measured.
//! AUTHMILTER_BENCH_RECORDS changes the writer's record count (default 100,000).

use authmilter::auth::{Outcome, Published};
use authmilter::check::metrics::Metrics;
use authmilter::check::{DkimRow, DmarcEvent};
use authmilter::config::StoreConfig;
use authmilter::store::{spawn_writer, Location, PgTarget, Record, Store, Transport};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A record shaped like the writer's usual ones: a ~1.4 KB check document and a DMARC event.
fn record(i: usize) -> Record {
    let domain = format!("domain{}.example", i % 100);
    let document = serde_json::json!({
        "verdict": "accept",
        "reasons": [],
        "spf": {"result": "pass", "domain": domain, "mail_from": format!("alice@{domain}"),
                "reason": "matched ip4:192.0.2.0/24"},
        "helo_spf": {"result": "none", "domain": "mx.example.net"},
        "dkim": [{"result": "pass", "domain": domain, "selector": "s1",
                  "algorithm": "rsa-sha256", "reason": null, "aligned": true}],
        "arc": {"result": "none", "chain": []},
        "dmarc": {"result": "pass", "domain": domain, "policy": "quarantine",
                  "spf_aligned": true, "dkim_aligned": true, "reason": null},
        "from": [format!("alice@{domain}")],
        "authentication_results": format!(
            "mx.example.net; spf=pass smtp.mailfrom={domain}; dkim=pass header.d={domain} \
             header.s=s1 header.b=AbCdEfGh; dmarc=pass (p=quarantine) header.from={domain}; \
             arc=none"
        ),
        "signatures": [],
    });
    Record {
        received_at: 1_700_000_000_000 + i as i64,
        transport: Transport::Milter,
        queue_id: Some(format!("4Xb{i:08}")),
        message_id: Some(format!("<{i}.bench@{domain}>")),
        client_ip: format!("192.0.{}.{}", (i / 251) % 8, i % 251),
        helo: Some("mx.sender.example".into()),
        mail_from: Some(format!("alice@{domain}")),
        rcpts: vec!["bob@example.net".into()],
        rcpt_count: 1,
        from_domain: Some(domain.clone()),
        verdict: "accept".into(),
        dmarc: Some("pass".into()),
        duration: Duration::from_micros(120),
        document,
        dmarc_event: Some(DmarcEvent {
            policy: Published {
                domain: domain.clone(),
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
            header_from: domain.clone(),
            envelope_from: domain.clone(),
            envelope_to: Some("example.net".into()),
            disposition: "pass".into(),
            dkim_aligned: true,
            spf_aligned: true,
            reasons: vec![],
            dkim: vec![DkimRow {
                domain: domain.clone(),
                selector: "s1".into(),
                result: "pass".into(),
                human_result: None,
            }],
            spf: (domain, "mfrom".into(), "pass".into()),
        }),
    }
}

/// Through the real writer: `n` records handed to the journal at once (the queue holds
/// them all), timed until the writer has committed the last. Returns (seconds, mean batch).
fn writer(location: &Location, n: usize) -> (f64, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let metrics = Arc::new(Metrics::default());
        let config = StoreConfig {
            queue_size: n,
            retention_days: 0,
            ..StoreConfig::default()
        };
        let records: Vec<Record> = (0..n).map(record).collect();
        let writer = spawn_writer(location, &config, Arc::clone(&metrics)).unwrap();
        let outcome = Outcome::empty_for_tests();
        let started = Instant::now();
        for r in records {
            writer.journal.record(r, &outcome);
        }
        writer.shutdown(Duration::from_secs(600)).await;
        let seconds = started.elapsed().as_secs_f64();
        let (written, batches) = metrics.store_counts();
        assert_eq!(written as usize, n, "records lost: {}", metrics.dropped());
        (seconds, written as f64 / batches.max(1) as f64)
    })
}

/// `insert_batch` directly, `n` records in batches of `batch`. Returns seconds, and the
/// longest batch's milliseconds (a SQLite checkpoint lands in the batch whose commit ran it).
fn batches(location: &Location, n: usize, batch: usize) -> (f64, f64) {
    let mut store = Store::connect(location).unwrap();
    let records: Vec<Record> = (0..n).map(record).collect();
    let started = Instant::now();
    let mut longest = 0.0_f64;
    for chunk in records.chunks(batch) {
        let t = Instant::now();
        store.insert_batch(chunk).unwrap();
        longest = longest.max(t.elapsed().as_secs_f64() * 1000.0);
    }
    (started.elapsed().as_secs_f64(), longest)
}

fn main() {
    let n: usize = std::env::var("AUTHMILTER_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut backends = vec![("sqlite", Location::Sqlite(dir.path().join("bench.sqlite")))];
    match std::env::var("AUTHMILTER_BENCH_PG_URL") {
        Ok(url) => backends.push((
            "postgres",
            Location::Postgres(PgTarget::parse(&url, None).expect("AUTHMILTER_BENCH_PG_URL")),
        )),
        Err(_) => eprintln!("AUTHMILTER_BENCH_PG_URL not set: SQLite only (bench/store.sh)"),
    }
    println!(
        "{:<9} {:<28} {:>10} {:>9} {:>9} {:>12} {:>12}",
        "backend", "path", "batch", "records", "seconds", "records/s", "longest ms"
    );
    for (name, location) in &backends {
        let (seconds, mean) = writer(location, n);
        println!(
            "{name:<9} {:<28} {:>10} {n:>9} {seconds:>9.2} {:>12.0}",
            "writer (journal, queue)",
            format!("mean {mean:.0}"),
            n as f64 / seconds
        );
        for (batch, count) in [(1, 2_000), (32, 20_000), (512, n)] {
            let (seconds, longest) = batches(location, count, batch);
            println!(
                "{name:<9} {:<28} {batch:>10} {count:>9} {seconds:>9.2} {:>12.0} {longest:>12.1}",
                "insert_batch",
                count as f64 / seconds
            );
        }
    }
}
