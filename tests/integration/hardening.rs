//! Issue 22, the holes in the new doors: what a hostile web page can make a tokenless API
//! listener do (DNS rebinding, cross-site form posts), and a read that cannot hold the API.

use crate::http::{call, send};
use crate::milter_client::Daemon;
use std::time::Duration;

// DNS rebinding: a page whose own name points at 127.0.0.1 sends that name in Host; a
// tokenless listener answers only its own names, before any handler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_is_refused_on_a_tokenless_listener() {
    let d =
        Daemon::start_with_api(|c| c.http.allowed_hosts = vec!["dash.example.net".into()]).await;
    let a = d.http.unwrap();
    let port = a.port();
    for target in [
        "/v1/verdicts",
        "/v1/stats",
        "/ui/",
        "/healthz",
        "/nope",
        "/openapi.json",
    ] {
        for host in [
            format!("rebind.evil.example:{port}"),
            format!("127.0.0.1.evil.example:{port}"),
            "evil.example".to_string(),
        ] {
            let r = send(a, "GET", target, &format!("Host: {host}\r\n"), b"").await;
            assert_eq!(r.status, 421, "{target} with Host {host}: {}", r.text());
            assert_eq!(r.error_code(), "misdirected");
        }
    }
    for host in [
        a.to_string(),
        format!("localhost:{port}"),
        "localhost".to_string(),
        // A forwarded port (ssh -L 9000:127.0.0.1:PORT) differs from the bound one.
        "127.0.0.1:9000".to_string(),
        "Dash.Example.Net".to_string(),
    ] {
        let r = send(a, "GET", "/v1/verdicts", &format!("Host: {host}\r\n"), b"").await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.text());
    }
    // A POST that would store a row and look up DNS is refused the same way.
    let raw = crate::common::message("a <a@example.com>", "x", "Hi.\r\n");
    let r = send(
        a,
        "POST",
        "/v1/check",
        "Host: evil.example\r\nContent-Type: message/rfc822\r\n",
        &raw,
    )
    .await;
    assert_eq!(r.status, 421);
}

// A plain HTML form (or a no-cors fetch) posts text/plain, form-urlencoded or multipart
// without a preflight: the routes that take a message refuse those types (and none) with 415,
// before the message is checked or stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_form_post_is_refused() {
    let d = Daemon::start_with_api(|_| {}).await;
    let a = d.http.unwrap();
    let raw = crate::common::message("a <a@example.com>", "form", "Hi.\r\n");
    let host = format!("Host: {a}\r\n");
    for content_type in [
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "Content-Type: text/plain;charset=UTF-8\r\n",
        "Content-Type: multipart/form-data; boundary=----x\r\n",
        "",
    ] {
        for target in ["/v1/check?ip=192.0.2.1", "/v1/sign"] {
            let r = send(a, "POST", target, &format!("{host}{content_type}"), &raw).await;
            let expected = match target {
                // Signing needs a token before its body is looked at.
                "/v1/sign" => 401,
                _ => 415,
            };
            assert_eq!(
                r.status,
                expected,
                "{target} {content_type:?}: {}",
                r.text()
            );
        }
    }
    // The same message as message/rfc822 is checked; only that one was recorded.
    for content_type in ["message/rfc822", "application/octet-stream"] {
        let r = send(
            a,
            "POST",
            "/v1/check?ip=192.0.2.1",
            &format!("{host}Content-Type: {content_type}\r\n"),
            &raw,
        )
        .await;
        assert_eq!(r.status, 200, "{content_type}: {}", r.text());
    }
    let mut total = 0;
    for _ in 0..100 {
        let r = call(a, "GET", "/v1/stats?since=0", None, b"").await;
        total = r.json()["total"].as_i64().unwrap();
        if total >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(total, 2, "only the two accepted posts were recorded");
    let doc = call(a, "GET", "/openapi.json", None, b"").await.json();
    let body = &doc["paths"]["/v1/check"]["post"]["requestBody"]["content"];
    assert!(
        body["message/rfc822"].is_object() && body["text/plain"].is_null(),
        "{body}"
    );
}

/// Rows enough that grouping them all takes far longer than the read limit the test sets:
/// distinct From domains, DMARC results, queue ids, all on one day in 2023.
fn fill(path: &std::path::Path, rows: u32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let started = std::time::Instant::now();
    conn.execute(
        "INSERT INTO verdicts (received_at, transport, queue_id, client_ip, rcpts, from_domain, \
         verdict, dmarc, duration_us, document, host) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         SELECT 1700000000000 + i, 'milter', 'Q' || i, '192.0.2.1', '[]', \
         'd' || (i % 100000) || '.example', 'accept', \
         CASE i % 3 WHEN 0 THEN 'pass' WHEN 1 THEN 'fail' ELSE 'none' END, 1, '{}', 'h' FROM n",
        [rows],
    )
    .unwrap();
    eprintln!("filled {rows} rows in {:?}", started.elapsed());
}

// Issue 22 §5: an expensive read (grouping every row) is stopped at http.query_timeout_ms,
// and while it runs a lookup by queue id answers on another reader connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_grouping_is_stopped_while_a_queue_id_lookup_answers() {
    // The rows are from 2023: kept for good, or the daemon's first prune (which may start
    // only after the fill on a busy machine) deletes them under the test's lookups.
    let d = Daemon::start_with_api(|c| {
        c.http.query_timeout = Duration::from_millis(300);
        c.store.retention_days = 0;
    })
    .await;
    let a = d.http.unwrap();
    let path = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    // The store exists once the API answered a read.
    assert_eq!(call(a, "GET", "/readyz", None, b"").await.status, 200);
    tokio::task::spawn_blocking(move || fill(&path, 600_000))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let slow = tokio::spawn(async move {
        call(
            a,
            "GET",
            "/v1/stats?group_by=from_domain&since=0",
            None,
            b"",
        )
        .await
    });
    let mut answered_meanwhile = 0;
    while !slow.is_finished() {
        let r = call(a, "GET", "/v1/verdicts?queue_id=Q4242", None, b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["items"][0]["queue_id"], "Q4242");
        if !slow.is_finished() {
            answered_meanwhile += 1;
        }
    }
    let r = slow.await.unwrap();
    eprintln!(
        "grouping answered {} after {:?}; {answered_meanwhile} lookups answered meanwhile",
        r.status,
        started.elapsed()
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "timeout");
    assert!(r.text().contains("was stopped"), "{}", r.text());
    assert!(
        answered_meanwhile > 0,
        "no lookup answered while the grouping ran"
    );
    // The readers are usable again: a grouping of one domain's rows answers.
    let target = "/v1/stats?group_by=dmarc&from_domain=d42.example&since=0";
    let r = call(a, "GET", target, None, b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["total"], 6);
}

// Issue 22 §5, the PostgreSQL half: the API's read connections carry a statement_timeout,
// and a grouping past it is stopped by the server (SQLSTATE 57014), seen as `is_cancelled`
// (the API's 503 timeout), not as a lost connection; the connection goes on working.
#[test]
fn postgres_statement_timeout_stops_a_grouping() {
    use authmilter::store::{Filter, GroupBy, Location, PgTarget, Store};
    let Some(pg) = crate::pg_cluster::PgCluster::start() else {
        return;
    };
    pg.create_db("slowread");
    let target = PgTarget::parse(&pg.url("slowread"), None).unwrap();
    let mut store = Store::connect(&Location::Postgres(target)).unwrap();
    pg.sql(
        "slowread",
        "INSERT INTO verdicts (received_at, host, transport, queue_id, client_ip, rcpts, \
         rcpt_count, from_domain, verdict, dmarc, duration_us, document) \
         SELECT 1700000000000 + i, 'h', 'milter', 'Q' || i, '192.0.2.1', '[]', 0, \
         'd' || (i % 100000) || '.example', 'accept', \
         (ARRAY['pass', 'fail', 'none'])[i % 3 + 1], 1, '{}' \
         FROM generate_series(1, 300000) AS i",
    );
    // Grouping 300,000 rows takes tens of milliseconds at the very least.
    store.limit_statements(Duration::from_millis(1)).unwrap();
    let e = store.stats(Some(0), GroupBy::FromDomain, None).unwrap_err();
    assert!(e.is_cancelled() && !e.is_connection(), "{e}");
    store.limit_statements(Duration::from_secs(30)).unwrap();
    let filter = Filter {
        queue_id: Some("Q4242".into()),
        ..Filter::default()
    };
    let page = store.list(&filter, 10).unwrap();
    assert_eq!(page.items.len(), 1);
    let all = store.stats(Some(0), GroupBy::Dmarc, None).unwrap();
    assert_eq!(all["total"], 300_000);
}
