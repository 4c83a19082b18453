//! The HTTP API and the verdict store: every route in-process over real HTTP/1.1 (status
//! codes, bad input, tokens), a milter message found again by queue id, store batching,
//! drops, retention and migrations.

use crate::common::*;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use authmilter::auth::Outcome;
use authmilter::check::metrics::Metrics;
use authmilter::config::{ApiToken, Config, Scope, StoreConfig};
use authmilter::http::auth::token_hash_hex;
use authmilter::store::{
    spawn_writer, Filter, Record, Store, Transport, PRUNE_STEP, SCHEMA_VERSION,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status, content type, body.
pub struct Resp {
    pub status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Errors are `{"error": {"code", "message"}}`; returns the code.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_string()
    }
}

/// A tiny HTTP/1.1 client: one request per connection, `Connection: close`.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: &[u8],
) -> Resp {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let headers = format!("Host: {addr}\r\n{auth}Content-Type: message/rfc822\r\n");
    send(addr, method, target, &headers, body).await
}

/// As [`call`], with the header lines (each ending in CRLF) given whole.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    // The server may answer (413) before reading the whole body; what it sent still arrives.
    let _ = s.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let headers = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
}

fn token(text: &str, scopes: &[Scope]) -> ApiToken {
    ApiToken {
        name: text.into(),
        sha256: authmilter::config::parse_sha256(&token_hash_hex(text)).unwrap(),
        scopes: scopes.to_vec(),
    }
}

fn with_tokens(c: &mut Config) {
    c.http.tokens = vec![
        token("reader", &[Scope::Read]),
        token("checker", &[Scope::Check]),
        token("signer", &[Scope::Sign]),
        token("admin", &[Scope::Admin]),
    ];
}

/// Polls until the writer has stored what a query should find.
pub(crate) async fn wait_for(addr: SocketAddr, target: &str, n: usize) -> Value {
    for _ in 0..100 {
        let r = call(addr, "GET", target, None, b"").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v["items"].as_array().unwrap().len() >= n {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{target}: fewer than {n} items after 5 s");
}

fn signed_example_com(subject: &str) -> Vec<u8> {
    sign_rsa(
        "example.com",
        &message("Alice <alice@example.com>", subject, "Hi.\r\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_openapi_and_json_errors() {
    let d = Daemon::start_with_api(|_| {}).await;
    let a = d.http.unwrap();
    let r = call(a, "GET", "/healthz", None, b"").await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let r = call(a, "GET", "/readyz", None, b"").await;
    assert_eq!(r.json()["store"], "ok");
    let r = call(a, "GET", "/openapi.json", None, b"").await;
    assert_eq!(r.json()["openapi"], "3.1.0");
    assert!(r.json()["paths"]["/v1/verdicts/{id}"]["get"].is_object());
    let r = call(a, "GET", "/nope", None, b"").await;
    assert_eq!((r.status, r.error_code()), (404, "not_found".into()));
    let r = call(a, "DELETE", "/healthz", None, b"").await;
    assert_eq!(
        (r.status, r.error_code()),
        (405, "method_not_allowed".into())
    );
    let r = call(a, "GET", "/metrics", None, b"").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("text/plain"), "{}", r.headers);
    for name in [
        "authmilter_messages_total",
        "authmilter_eom_duration_seconds_bucket",
        "authmilter_open_connections",
        "authmilter_store_queue_depth",
        "authmilter_store_dropped_total",
    ] {
        assert!(r.text().contains(name), "{name} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_the_cli_document_and_records_it() {
    let d = Daemon::start_with_api(|c| c.limits.max_message_size = 8192).await;
    let a = d.http.unwrap();
    let raw = signed_example_com("api1");
    let target = "/v1/check?ip=192.0.2.1&helo=mx.example.com&mail_from=%3Calice%40example.com%3E&rcpt=x%40example.net&rcpt=y%40example.net";
    let r = call(a, "POST", target, None, &raw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    // The same document `check --json` prints for the same input.
    let env = Env::new().await;
    let expected = env
        .check("192.0.2.1", "mx.example.com", "alice@example.com", &raw)
        .await;
    assert_eq!(doc, serde_json::to_value(expected.report()).unwrap());
    assert_eq!(doc["verdict"], "accept");
    assert_eq!(doc["dmarc"]["result"], "pass");

    let page = wait_for(a, "/v1/verdicts?message_id=%3Capi1%40test%3E", 1).await;
    let item = &page["items"][0];
    assert_eq!(item["transport"], "http");
    assert_eq!(
        item["rcpts"],
        serde_json::json!(["x@example.net", "y@example.net"])
    );
    assert_eq!(item["mail_from"], "alice@example.com");
    assert_eq!(item["from_domain"], "example.com");
    assert_eq!(item["dkim"][0]["result"], "pass");

    for (target, body, status, code) in [
        ("/v1/check", &b""[..], 400, "bad_request"),
        ("/v1/check?ip=nope", &raw[..], 400, "bad_request"),
        ("/v1/check?colour=red", &raw[..], 400, "bad_request"),
        ("/v1/check", &[b'a'; 10_000][..], 413, "too_large"),
    ] {
        let r = call(a, "POST", target, None, body).await;
        assert_eq!(
            (r.status, r.error_code()),
            (status, code.into()),
            "{target}"
        );
    }
    let r = call(a, "GET", "/v1/check", None, b"").await;
    assert_eq!(r.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_message_is_found_by_queue_id() {
    let d = Daemon::start_with_api(|_| {}).await;
    let a = d.http.unwrap();
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.1", "mx.example.com").await;
    let raw = signed_example_com("viamilter");
    mta.message("4XbQ1HTTP", "alice@example.com", None, &raw)
        .await;

    let page = wait_for(a, "/v1/verdicts?queue_id=4XbQ1HTTP", 1).await;
    let item = &page["items"][0];
    assert_eq!(item["transport"], "milter");
    assert_eq!(item["queue_id"], "4XbQ1HTTP");
    assert_eq!(item["message_id"], "<viamilter@test>");
    assert_eq!(item["client_ip"], "192.0.2.1");
    assert_eq!(item["helo"], "mx.example.com");
    assert_eq!(item["mail_from"], "alice@example.com");
    assert_eq!(item["rcpts"], serde_json::json!(["bob@example.net"]));
    assert_eq!(item["verdict"], "accept");
    assert_eq!(item["spf"]["result"], "pass");
    assert_eq!(item["dkim"][0]["result"], "pass");
    assert_eq!(item["dmarc"]["result"], "pass");
    assert_eq!(item["dmarc"]["policy"], "reject");
    assert!(item["duration_ms"].as_f64().unwrap() >= 0.0);

    let id = item["id"].as_i64().unwrap();
    let one = call(a, "GET", &format!("/v1/verdicts/{id}"), None, b"").await;
    assert_eq!(&one.json(), item);
    let r = call(a, "GET", "/v1/stats?group_by=from_domain", None, b"").await;
    let stats = r.json();
    assert_eq!(stats["groups"][0]["key"], "example.com", "{stats}");
    assert_eq!(stats["groups"][0]["dmarc"]["pass"], 1);
    let m = call(a, "GET", "/metrics", None, b"").await.text();
    assert!(
        m.contains("authmilter_messages_total{transport=\"milter\",verdict=\"accept\"} 1"),
        "{m}"
    );
    assert!(m.contains("authmilter_auth_results_total{method=\"dmarc\",result=\"pass\"} 1"));
    assert!(m.contains("authmilter_open_connections 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdict_pages_filters_and_bad_parameters() {
    let d = Daemon::start_with_api(|_| {}).await;
    let a = d.http.unwrap();
    for i in 0..5 {
        let raw = message("Bob <bob@example.org>", &format!("p{i}"), "x\r\n");
        let r = call(a, "POST", "/v1/check?ip=198.51.100.9", None, &raw).await;
        assert_eq!(r.status, 200);
    }
    wait_for(a, "/v1/verdicts?from_domain=EXAMPLE.org", 5).await;
    let mut seen = Vec::new();
    let mut target = "/v1/verdicts?limit=2&client_ip=198.51.100.9".to_string();
    loop {
        let page = call(a, "GET", &target, None, b"").await.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["id"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => {
                target = format!("/v1/verdicts?limit=2&client_ip=198.51.100.9&next={next}")
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    let none = call(a, "GET", "/v1/verdicts?verdict=reject&since=1h", None, b"")
        .await
        .json();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    assert!(none["next"].is_null());
    for target in [
        "/v1/verdicts?limit=0",
        "/v1/verdicts?limit=1001",
        "/v1/verdicts?since=yesterday",
        "/v1/verdicts?next=abc",
        "/v1/verdicts/abc",
        "/v1/stats?group_by=colour",
    ] {
        let r = call(a, "GET", target, None, b"").await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "bad_request".into()),
            "{target}"
        );
    }
    let r = call(a, "GET", "/v1/verdicts/999999", None, b"").await;
    assert_eq!((r.status, r.error_code()), (404, "not_found".into()));
    let stats = call(
        a,
        "GET",
        "/v1/stats?group_by=verdict&since=2020-01-01T00:00:00Z",
        None,
        b"",
    )
    .await
    .json();
    assert_eq!(stats["total"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_and_reload_need_tokens_with_their_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("rsa.pem");
    std::fs::copy(testdata("keys/rsa2048.pem"), &key_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let spec = authmilter::config::KeySpec {
        domain: "example.com".into(),
        selector: "rsa".into(),
        key_file,
        identity: None,
        origin: None,
    };
    let d = Daemon::start_with_api(move |c| {
        with_tokens(c);
        c.signing.add_keys([spec]);
    })
    .await;
    let a = d.http.unwrap();
    let msg = message("Alice <alice@example.com>", "out", "Hello\r\n");
    let r = call(a, "POST", "/v1/sign", None, &msg).await;
    assert_eq!((r.status, r.error_code()), (401, "unauthorized".into()));
    assert!(r.headers.contains("www-authenticate: bearer"));
    let r = call(a, "POST", "/v1/sign", Some("reader"), &msg).await;
    assert_eq!((r.status, r.error_code()), (403, "forbidden".into()));
    let r = call(a, "POST", "/v1/sign", Some("wrong"), &msg).await;
    assert_eq!(r.status, 401);
    let r = call(a, "POST", "/v1/sign", Some("signer"), &msg).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.contains("message/rfc822"));
    // What came back verifies.
    let env = Env::new().await;
    let v = env
        .check("192.0.2.1", "mx.example.com", "alice@example.com", &r.body)
        .await;
    assert_eq!(
        v.report().dkim[0].result,
        authmilter::auth::AuthResult::Pass
    );
    let r = call(
        a,
        "POST",
        "/v1/sign?output=fields&domain=example.com&selector=rsa",
        Some("admin"),
        &msg,
    )
    .await;
    let sigs = r.json()["signatures"].as_array().unwrap().clone();
    assert_eq!(sigs.len(), 1);
    assert!(sigs[0]["field"]
        .as_str()
        .unwrap()
        .starts_with("DKIM-Signature: v=1;"));
    let r = call(
        a,
        "POST",
        "/v1/sign?domain=example.net",
        Some("signer"),
        &msg,
    )
    .await;
    assert_eq!((r.status, r.error_code()), (422, "unprocessable".into()));
    let other = message("Eve <eve@example.org>", "x", "y\r\n");
    let r = call(a, "POST", "/v1/sign", Some("signer"), &other).await;
    assert_eq!(r.status, 422);

    let r = call(a, "POST", "/v1/reload", None, b"").await;
    assert_eq!(r.status, 401);
    let r = call(a, "POST", "/v1/reload", Some("reader"), b"").await;
    assert_eq!(r.status, 403);
    let r = call(a, "POST", "/v1/reload", Some("admin"), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "reloaded");
    // On loopback, reads work without a token but a presented token must be valid.
    assert_eq!(call(a, "GET", "/v1/verdicts", None, b"").await.status, 200);
    assert_eq!(
        call(a, "GET", "/v1/verdicts", Some("checker"), b"")
            .await
            .status,
        403
    );
    assert_eq!(
        call(a, "GET", "/healthz", Some("nobody"), b"").await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_listener_needs_a_token_for_everything() {
    use authmilter::runtime::{ReloadRequest, Snapshot};
    let mut config = Config::default();
    with_tokens(&mut config);
    let current = Arc::new(std::sync::RwLock::new(Arc::new(
        Snapshot::new(config).unwrap(),
    )));
    let (reload, _rx) = tokio::sync::mpsc::channel::<ReloadRequest>(1);
    let journal = authmilter::store::Journal::disabled(Arc::new(Metrics::default()));
    let state = authmilter::http::AppState::new(current, reload, None, journal);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(authmilter::http::serve(listener, state, stop_rx));
    let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(call(a, "GET", "/healthz", None, b"").await.status, 401);
    assert_eq!(
        call(a, "GET", "/healthz", Some("reader"), b"").await.status,
        200
    );
    assert_eq!(
        call(a, "GET", "/metrics", Some("checker"), b"")
            .await
            .status,
        403
    );
    assert_eq!(
        call(a, "GET", "/metrics", Some("reader"), b"").await.status,
        200
    );
    let r = call(a, "GET", "/v1/verdicts", Some("reader"), b"").await;
    assert_eq!((r.status, r.error_code()), (503, "store_disabled".into()));
    assert_eq!(
        call(a, "GET", "/readyz", Some("admin"), b"").await.json()["store"],
        "disabled"
    );
}

pub(crate) fn record(at_ms: i64, queue_id: &str) -> Record {
    Record {
        received_at: at_ms,
        transport: Transport::Smtp,
        queue_id: Some(queue_id.into()),
        message_id: None,
        client_ip: "192.0.2.1".into(),
        helo: None,
        mail_from: None,
        rcpts: Vec::new(),
        rcpt_count: 0,
        from_domain: Some("example.com".into()),
        verdict: "accept".into(),
        dmarc: Some("pass".into()),
        duration: Duration::from_micros(1500),
        document: serde_json::json!({"verdict": "accept"}),
        dmarc_event: None,
    }
}

fn count(store: &Store) -> usize {
    store.list(&Filter::default(), 1000).unwrap().items.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_batches_records_and_prunes_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let now = authmilter::dates::now_ms();
    // Two old verdicts from before retention, written directly.
    Store::open(&path)
        .unwrap()
        .insert_batch(&[
            record(now - 10 * 86_400_000, "old1"),
            record(now - 3 * 86_400_000, "old2"),
        ])
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = StoreConfig {
        path: None,
        retention_days: 5,
        queue_size: 1000,
        ..StoreConfig::default()
    };
    let writer = spawn_writer(&path.clone().into(), &config, Arc::clone(&metrics)).unwrap();
    let outcome = Outcome::empty_for_tests();
    for i in 0..600 {
        writer
            .journal
            .record(record(now, &format!("q{i}")), &outcome);
    }
    writer.shutdown(Duration::from_secs(10)).await;
    let (written, batches) = metrics.store_counts();
    assert_eq!(written, 600);
    assert!(
        (2..600).contains(&batches),
        "{batches} transactions for 600 records"
    );
    let store = Store::open(&path).unwrap();
    assert_eq!(count(&store), 601, "old1 pruned, old2 kept");
    let old = Filter {
        queue_id: Some("old1".into()),
        ..Filter::default()
    };
    assert!(store.list(&old, 10).unwrap().items.is_empty());
    assert_eq!(metrics.dropped(), 0);
}

// Issue 26: retention deletes in steps of at most PRUNE_STEP verdicts, and the writer runs
// its batches between steps. On this single-threaded runtime the writer cannot start before
// the test yields, so the order is fixed: the first step (the oldest PRUNE_STEP rows), the
// batch queued meanwhile, the next step. A record older than the cutoff written in that
// batch is deleted by the later step: it was written before the prune finished (a writer
// that pruned everything before taking records would keep it).
#[tokio::test]
async fn pruning_runs_in_steps_between_the_writers_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    let now = authmilter::dates::now_ms();
    let old_at = now - 10 * 86_400_000;
    let old_rows = PRUNE_STEP + 1_000;
    let mut store = Store::open(&path).unwrap();
    let old: Vec<Record> = (0..old_rows)
        .map(|i| record(old_at + i as i64, &format!("old{i}")))
        .collect();
    for chunk in old.chunks(1_000) {
        store.insert_batch(chunk).unwrap();
    }
    let kept: Vec<Record> = (0..3)
        .map(|i| record(now - 86_400_000, &format!("kept{i}")))
        .collect();
    store.insert_batch(&kept).unwrap();
    drop(store);
    let metrics = Arc::new(Metrics::default());
    let config = StoreConfig {
        path: None,
        retention_days: 5,
        queue_size: 1000,
        ..StoreConfig::default()
    };
    let writer = spawn_writer(&path.clone().into(), &config, Arc::clone(&metrics)).unwrap();
    let outcome = Outcome::empty_for_tests();
    writer
        .journal
        .record(record(now - 6 * 86_400_000, "late-old"), &outcome);
    writer.journal.record(record(now, "fresh"), &outcome);
    // The batch is written (the step after it runs in the same turn of the writer).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metrics.store_counts().0 < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer stored nothing while pruning"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.shutdown(Duration::from_secs(20)).await;
    let db = rusqlite::Connection::open(&path).unwrap();
    let older: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM verdicts WHERE received_at < ?1",
            [now - 5 * 86_400_000],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(older, 0, "every verdict past retention pruned");
    let left: Vec<String> = db
        .prepare("SELECT queue_id FROM verdicts ORDER BY queue_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, ["fresh", "kept0", "kept1", "kept2"]);
    assert_eq!(metrics.store_counts().0, 2);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = StoreConfig {
        path: None,
        retention_days: 0,
        queue_size: 4,
        ..StoreConfig::default()
    };
    let writer = spawn_writer(
        &dir.path().join("v.sqlite").into(),
        &config,
        Arc::clone(&metrics),
    )
    .unwrap();
    // On this single-threaded runtime the writer cannot run until we yield.
    for i in 0..50 {
        writer
            .journal
            .record(record(1, &format!("q{i}")), &Outcome::empty_for_tests());
    }
    assert_eq!(writer.journal.queue_depth(), 4);
    assert_eq!(metrics.dropped(), 46);
    assert!(metrics
        .render(4)
        .contains("authmilter_store_dropped_total 46"));
    writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(metrics.store_counts().0, 4);
}

#[test]
fn schema_is_migrated_once_and_newer_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sqlite");
    assert_eq!(
        Store::open(&path).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
    assert_eq!(
        Store::open(&path).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute("UPDATE schema_version SET version = 99", [])
        .unwrap();
    drop(db);
    let e = Store::open(&path).err().expect("refused").to_string();
    assert!(e.contains("newer than this build"), "{e}");
}

/// The value of one sample line of `/metrics` (0 when absent).
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

// Issue 6: DKIM and DMARC lookups happen inside mail-auth; they are fetched through our
// counted lookup first, so they show in /metrics (the counters are process-wide: compare).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_lookups_errors_and_latency_show_in_metrics() {
    let d = Daemon::start_with_api(|_| {}).await;
    let a = d.http.unwrap();
    let before = call(a, "GET", "/metrics", None, b"").await.text();
    let signed = sign_rsa(
        "example.com",
        &message("Alice <alice@example.com>", "dns metrics", "hi\r\n"),
    );
    let r = call(a, "POST", "/v1/check?ip=192.0.2.1", None, &signed).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["dkim"][0]["result"], "pass");
    let slow = message("Sam <sam@slow.example>", "timeout", "x\r\n");
    let r = call(a, "POST", "/v1/check?ip=192.0.2.1", None, &slow).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["dmarc"]["result"], "temperror");
    let after = call(a, "GET", "/metrics", None, b"").await.text();
    let grew = |series: &str| sample(&after, series) - sample(&before, series);
    // At least the DKIM key and two DMARC names (example.com) plus slow.example's.
    assert!(
        grew("authmilter_dns_queries_total{type=\"txt\"}") >= 3.0,
        "{after}"
    );
    assert!(grew("authmilter_dns_errors_total{type=\"txt\",kind=\"timeout\"}") >= 1.0);
    assert!(grew("authmilter_dns_query_duration_seconds_count") >= 3.0);
    // The timeout shows in the slowest buckets, not the sub-millisecond one.
    assert!(grew("authmilter_dns_query_duration_seconds_bucket{le=\"+Inf\"}") >= 3.0);
    assert!(after.contains("# TYPE authmilter_dns_query_duration_seconds histogram"));
}

// Issue 6: /v1/reload answers with the reload's outcome, not before it is known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_a_broken_configuration() {
    let d = Daemon::start_with_api(with_tokens).await;
    let a = d.http.unwrap();
    d.next.lock().unwrap().policy_dir = Some("/nonexistent/authmilter-policies".into());
    let r = call(a, "POST", "/v1/reload", Some("admin"), b"").await;
    assert_eq!((r.status, r.error_code()), (422, "unprocessable".into()));
    assert!(
        r.text().contains("previous configuration stays"),
        "{}",
        r.text()
    );
    // The old configuration still serves.
    let raw = message("Bob <bob@example.org>", "still", "x\r\n");
    assert_eq!(
        call(a, "POST", "/v1/check?ip=198.51.100.9", None, &raw)
            .await
            .status,
        200
    );
}

// Issue 6: a client that sends its request header a byte at a time is cut off by the
// header-read timeout (the smaller of 10 s and the request timeout), not held forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_header_is_cut_off() {
    let d = Daemon::start_with_api(|c| c.http.request_timeout = Duration::from_secs(1)).await;
    let a = d.http.unwrap();
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the header; the server must close within a few seconds.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    // A normal request still works.
    assert_eq!(call(a, "GET", "/healthz", None, b"").await.status, 200);
}
