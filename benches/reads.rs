//! Dashboard and API reads over one day of verdicts, SQLite next to PostgreSQL: the store is
//! filled (untimed, in SQL) with AUTHMILTER_BENCH_ROWS verdicts (default 1,000,000) spread
//! over 24 hours, 10,000 From domains and 5,000 client addresses, each row with a ~1.4 KB
//! document, and counted by hour as the migrations count stored rows (untimed); then the
//! 24 h overview, `/v1/stats?group_by=from_domain` for the day and for the last hour are
//! timed, median of five. Last, retention prunes the whole day (once, timed: on SQLite in
//! bounded steps of `PRUNE_STEP` rows, the longest step reported as well; on PostgreSQL by
//! dropping the day partitions).
//!
//! `bench/reads.sh` starts a private PostgreSQL cluster and runs this with
//! AUTHMILTER_BENCH_PG_URL set; without it only SQLite is measured.

use authmilter::store::{GroupBy, Location, PgTarget, Store, PRUNE_STEP};
use std::time::Instant;

const DAY_MS: i64 = 86_400_000;
const END: i64 = 1_800_000_000_000;

/// The rows' columns as one SELECT over `n` (a row number from 0), in either dialect.
fn row_select(n: &str, doc: &str) -> String {
    format!(
        "{END} - {DAY_MS} + ({n} * {DAY_MS}) / ROWS, 'mx1', 'milter', 'Q' || {n}, \
         '<' || {n} || '@bench>', '192.0.' || ({n} % 20) || '.' || ({n} % 250), \
         'domain' || ({n} % 10000) || '.example', \
         CASE WHEN {n} % 10 = 0 THEN 'reject' ELSE 'accept' END, \
         CASE WHEN {n} % 10 = 0 THEN 'fail' ELSE 'pass' END, 120, {doc}, \
         CASE WHEN {n} % 7 = 0 THEN 'softfail' ELSE 'pass' END, \
         CASE WHEN {n} % 10 = 0 THEN 'fail' ELSE 'pass' END, 'none', 'quarantine'"
    )
}

const COLUMNS: &str = "received_at, host, transport, queue_id, message_id, client_ip, \
    from_domain, verdict, dmarc, duration_us, document, spf, dkim, arc, policy";

fn document() -> String {
    let mut reasons = String::new();
    while reasons.len() < 1300 {
        reasons.push_str("\"spf=pass smtp.mailfrom=domain.example dkim=pass header.d=x\",");
    }
    format!(
        "{{\"verdict\":\"accept\",\"reasons\":[{}]}}",
        reasons.trim_end_matches(',')
    )
}

fn fill_sqlite(path: &std::path::Path, rows: i64) {
    drop(Store::open(path).unwrap());
    let conn = rusqlite::Connection::open(path).unwrap();
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {rows}) \
         INSERT INTO verdicts ({COLUMNS}, rcpts, rcpt_count) SELECT {}, '[]', 1 FROM n",
        row_select("i", "?1").replace("ROWS", &rows.to_string())
    );
    conn.execute(&sql, [document()]).unwrap();
}

fn fill_postgres(url: &str, rows: i64) {
    let target = PgTarget::parse(url, None).unwrap();
    drop(Store::connect(&Location::Postgres(target)).unwrap());
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    // The day's partitions, as the writer makes them ahead (the day spans two UTC dates).
    for at in [END - DAY_MS, END] {
        client
            .execute("SELECT verdicts_day_partition($1)", &[&at])
            .unwrap();
    }
    let sql = format!(
        "INSERT INTO verdicts ({COLUMNS}, rcpts, rcpt_count) \
         SELECT {}, '[]', 1 FROM generate_series(0::bigint, {rows} - 1) AS i",
        row_select("i", "convert_to($1, 'UTF8')").replace("ROWS", &rows.to_string())
    );
    client.execute(&sql, &[&document()]).unwrap();
    // As autovacuum would leave a day-old table (visibility map, statistics).
    client.batch_execute("VACUUM ANALYZE verdicts").unwrap();
}

fn median(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[2]
}

fn main() {
    let rows: i64 = std::env::var("AUTHMILTER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reads.sqlite");
    let mut backends = vec![("sqlite", Location::Sqlite(path.clone()))];
    let pg = std::env::var("AUTHMILTER_BENCH_PG_URL").ok();
    if let Some(url) = &pg {
        backends.push((
            "postgres",
            Location::Postgres(PgTarget::parse(url, None).unwrap()),
        ));
    } else {
        eprintln!("AUTHMILTER_BENCH_PG_URL not set: SQLite only (bench/reads.sh)");
    }
    println!(
        "{:<9} {:>9} {:<44} {:>10}",
        "backend", "rows", "read", "median ms"
    );
    for (name, location) in &backends {
        let t = Instant::now();
        match location {
            Location::Sqlite(p) => fill_sqlite(p, rows),
            Location::Postgres(_) => fill_postgres(pg.as_deref().unwrap(), rows),
        }
        eprintln!(
            "{name}: filled {rows} rows in {:.0} s (untimed)",
            t.elapsed().as_secs_f64()
        );
        let store = Store::connect(location).unwrap();
        // The rows went in around the writer: their hour counts as the migrations make them.
        let t = Instant::now();
        store.recount_hours().unwrap();
        eprintln!(
            "{name}: counted them by hour in {:.1} s (untimed)",
            t.elapsed().as_secs_f64()
        );
        let since = END - DAY_MS;
        let mut total = 0;
        let overview = median(|| total = store.overview(since, END, 10).unwrap().total);
        assert_eq!(total as i64, rows);
        let day = median(|| {
            store.stats(Some(since), GroupBy::FromDomain, None).unwrap();
        });
        let hour = median(|| {
            store
                .stats(Some(END - 3_600_000), GroupBy::FromDomain, None)
                .unwrap();
        });
        for (read, ms) in [
            ("overview, 24 h", overview),
            ("/v1/stats?group_by=from_domain, 24 h", day),
            ("/v1/stats?group_by=from_domain&since=1h", hour),
        ] {
            println!("{name:<9} {rows:>9} {read:<44} {ms:>10.0}");
        }
        let mut store = store;
        let (mut steps, mut longest, mut deleted) = (0, 0.0_f64, 0);
        let t = Instant::now();
        loop {
            let step_started = Instant::now();
            let step = store.prune_step(END + 2 * DAY_MS, PRUNE_STEP).unwrap();
            longest = longest.max(step_started.elapsed().as_secs_f64() * 1000.0);
            steps += 1;
            deleted += step.deleted;
            if step.done {
                break;
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(deleted as i64, rows);
        println!(
            "{name:<9} {rows:>9} {:<44} {ms:>10.0}",
            "prune the day (once)"
        );
        println!(
            "{name:<9} {rows:>9} {:<44} {longest:>10.0}",
            format!("  longest of {steps} steps")
        );
    }
}
