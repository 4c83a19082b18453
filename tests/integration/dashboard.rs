//! The web dashboard (`/ui/`) over HTTP: pages over real milter traffic, the login cookie and
//! its CSRF checks on a listener that needs tokens, hostile store text coming out escaped,
//! the keys page. The same pages in a real browser: `dashboard_browser.rs`.

use crate::common::*;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use authmilter::check::metrics::Metrics;
use authmilter::config::{ApiToken, Config, Scope};
use authmilter::http::auth::token_hash_hex;
use authmilter::runtime::{ReloadRequest, Snapshot};
use authmilter::store::{NewReport, NewRow, Record, SentReport, Store, Transport};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status, head (lower case), body.
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    }
}

/// One HTTP/1.1 request with extra header lines; `Connection: close`.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(!head.contains("transfer-encoding: chunked"), "{head}");
    Resp {
        status: head[9..12].parse().unwrap(),
        head,
        body: String::from_utf8_lossy(&raw[split..]).into_owned(),
    }
}

pub(crate) async fn get(addr: SocketAddr, target: &str) -> Resp {
    request(addr, "GET", target, &[], b"").await
}

fn signed(subject: &str) -> Vec<u8> {
    sign_rsa(
        "example.com",
        &message("Alice <alice@example.com>", subject, "Hi.\r\n"),
    )
}

/// The Message-ID the hostile message gets (`message()` builds it from the subject).
const HOSTILE_SUBJECT: &str = "<script>alert(1)</script>";

/// Real milter traffic: three messages that pass DMARC from 192.0.2.1, one unsigned
/// example.com message from 203.0.113.66 that fails it (and is rejected: `p=reject`),
/// with a hostile Subject and so Message-ID.
pub(crate) async fn traffic(d: &Daemon) {
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.1", "mx.example.com").await;
    for i in 0..3 {
        mta.message(
            &format!("UIPASS{i}"),
            "alice@example.com",
            None,
            &signed(&format!("uipass{i}")),
        )
        .await;
    }
    let mut bad = d.mta().await;
    bad.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    bad.connect_client("203.0.113.66", "spoofer.example").await;
    let raw = message("Alice <alice@example.com>", HOSTILE_SUBJECT, "x\r\n");
    bad.message("UIFAIL1", "alice@example.com", None, &raw)
        .await;
    let api = d.http.unwrap();
    for _ in 0..100 {
        let r = get(api, "/v1/verdicts").await;
        let v: Value = serde_json::from_str(&r.body).unwrap();
        if v["items"].as_array().unwrap().len() >= 4 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store never had the 4 verdicts");
}

/// The text of the element with `id` (up to its first `<`).
pub(crate) fn by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"))
        + marker.len();
    let rest = &html[start..];
    &rest[..rest.find('<').unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_search_and_detail_after_milter_traffic() {
    let d = Daemon::start_with_api(|_| {}).await;
    let a = d.http.unwrap();
    traffic(&d).await;

    let r = get(a, "/ui/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    // The figures are the API's.
    let stats: Value =
        serde_json::from_str(&get(a, "/v1/stats?group_by=dmarc").await.body).unwrap();
    assert_eq!(stats["total"], 4);
    assert_eq!(by_id(&r.body, "total-messages"), "4");
    assert_eq!(by_id(&r.body, "count-accept"), "3");
    assert_eq!(by_id(&r.body, "count-reject"), "1");
    assert_eq!(by_id(&r.body, "rate-dmarc"), "75.0 %");
    assert_eq!(by_id(&r.body, "rate-dkim"), "75.0 %");
    assert!(by_id(&r.body, "dns-error-rate").ends_with('%'));
    assert!(r.body.contains("<svg id=\"hourly-chart\""));
    assert!(r.body.contains("data-verdict=\"reject\" data-count=\"1\""));
    assert!(r.body.contains("data-verdict=\"accept\" data-count=\"3\""));
    let failing = &r.body[r.body.find("id=\"failing-ips\"").unwrap()..];
    assert!(failing.contains(">203.0.113.66</a>"), "{failing}");
    assert!(!r.body.contains("192.0.2.1</a>"));

    // Search by queue id, then the verdict's page.
    let r = get(a, "/ui/verdicts?queue_id=UIFAIL1&message_id=&verdict=").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let href = r.body.find("href=\"/ui/verdicts/").unwrap();
    let link = &r.body[href + 6..];
    let link = &link[..link.find('"').unwrap()];
    assert!(r
        .body
        .contains("&lt;&lt;script&gt;alert(1)&lt;/script&gt;@test&gt;"));
    assert!(!r.body.contains("<script"), "{}", r.body);
    let detail = get(a, link).await;
    assert_eq!(detail.status, 200);
    assert!(detail.body.contains("dmarc=fail"), "{}", detail.body);
    assert!(detail
        .body
        .contains("<td>DMARC</td><td><span class=\"badge r-fail\">fail</span>"));
    assert!(!detail.body.contains("<script"));

    // Pages of the same cursor as /v1/verdicts.
    // The overview's links to the search keep the DMARC filter, shown in the form.
    let r = get(
        a,
        "/ui/verdicts?client_ip=203.0.113.66&dmarc=fail&since=24h",
    )
    .await;
    assert_eq!(r.body.matches(">detail</a>").count(), 1);
    assert!(
        r.body.contains("<option selected>fail</option>"),
        "{}",
        r.body
    );
    let first = get(a, "/ui/verdicts?client_ip=192.0.2.1&since=24h").await;
    assert_eq!(first.body.matches(">detail</a>").count(), 3);
    assert!(!first.body.contains("next-page"));
    // Bad input is the API's 400, as a page.
    let bad = get(a, "/ui/verdicts?since=yesterday").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("is not RFC 3339"), "{}", bad.body);
    assert_eq!(get(a, "/ui/verdicts/999999").await.status, 404);
    assert_eq!(get(a, "/ui").await.header("location"), Some("/ui/"));
    assert_eq!(get(a, "/ui/static/app.css").await.status, 200);
    // The dashboard is not part of the API document.
    let doc = get(a, "/openapi.json").await.body;
    assert!(!doc.contains("/ui/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_pages_with_the_api_cursor() {
    let d = Daemon::start_with_api(|_| {}).await;
    let a = d.http.unwrap();
    for i in 0..55 {
        let raw = message("Bob <bob@example.org>", &format!("page{i}"), "x\r\n");
        let r = request(
            a,
            "POST",
            "/v1/check?ip=198.51.100.9",
            &[("Content-Type", "message/rfc822")],
            &raw,
        )
        .await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..100 {
        let v: Value = serde_json::from_str(&get(a, "/v1/verdicts?limit=1000").await.body).unwrap();
        if v["items"].as_array().unwrap().len() == 55 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = get(a, "/ui/verdicts?from_domain=example.org").await;
    assert_eq!(first.body.matches(">detail</a>").count(), 50);
    let marker = "id=\"next-page\" href=\"";
    let next = &first.body[first.body.find(marker).unwrap() + marker.len()..];
    let next = next[..next.find('"').unwrap()].replace("&amp;", "&");
    assert!(next.contains("from_domain=example.org"), "{next}");
    // The cursor is the one /v1/verdicts gives for the same page.
    let api: Value = serde_json::from_str(
        &get(a, "/v1/verdicts?from_domain=example.org&limit=50")
            .await
            .body,
    )
    .unwrap();
    assert!(
        next.ends_with(&format!("next={}", api["next"].as_str().unwrap())),
        "{next}"
    );
    let second = get(a, &next).await;
    assert_eq!(second.body.matches(">detail</a>").count(), 5);
    assert!(!second.body.contains("next-page"));
}

fn token(text: &str, scopes: &[Scope]) -> ApiToken {
    ApiToken {
        name: text.into(),
        sha256: authmilter::config::parse_sha256(&token_hash_hex(text)).unwrap(),
        scopes: scopes.to_vec(),
    }
}

/// An HTTP listener on 0.0.0.0 (not loopback: tokens required) over the store at `store`,
/// reached at 127.0.0.1.
pub(crate) async fn tokened_listener(store: Option<PathBuf>) -> SocketAddr {
    let mut config = Config::default();
    config.http.tokens = vec![
        token("reader token", &[Scope::Read]),
        token("checker", &[Scope::Check]),
    ];
    let current = Arc::new(std::sync::RwLock::new(Arc::new(
        Snapshot::new(config).unwrap(),
    )));
    let (reload, _rx) = tokio::sync::mpsc::channel::<ReloadRequest>(1);
    std::mem::forget(_rx);
    let journal = authmilter::store::Journal::disabled(Arc::new(Metrics::default()));
    let state = authmilter::http::AppState::new(current, reload, store.map(Into::into), journal);
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    tokio::spawn(authmilter::http::serve(listener, state, stop_rx));
    format!("127.0.0.1:{port}").parse().unwrap()
}

pub(crate) fn store_path(d: &Daemon) -> PathBuf {
    d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_cookie_logout_and_csrf_on_a_tokened_listener() {
    let d = Daemon::start_with_api(|_| {}).await;
    traffic(&d).await;
    let a = tokened_listener(Some(store_path(&d))).await;
    let origin = format!("http://{a}");
    let form = ("Content-Type", "application/x-www-form-urlencoded");

    // Without a token: to the login form; the form itself and the style sheet are open.
    let r = get(a, "/ui/").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/login")));
    let r = get(a, "/ui/login").await;
    assert_eq!(r.status, 200);
    assert!(r
        .body
        .contains("<form method=\"post\" action=\"/ui/login\""));
    assert_eq!(get(a, "/ui/static/app.css").await.status, 200);

    // CSRF: a login POST from another site, or from nowhere, is refused.
    let body = b"token=reader+token";
    for headers in [
        vec![form],
        vec![form, ("Origin", "http://evil.example")],
        vec![form, ("Origin", "null")],
        vec![form, ("Referer", "http://evil.example/ui/login")],
    ] {
        let r = request(a, "POST", "/ui/login", &headers, body).await;
        assert_eq!(r.status, 403, "{headers:?}");
        assert!(r.header("set-cookie").is_none());
    }
    // Wrong token, token without the read scope.
    let r = request(
        a,
        "POST",
        "/ui/login",
        &[form, ("Origin", &origin)],
        b"token=nope",
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("unknown token"));
    let r = request(
        a,
        "POST",
        "/ui/login",
        &[form, ("Origin", &origin)],
        b"token=checker",
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());

    // The read token becomes an HttpOnly, SameSite=Strict cookie for /ui.
    let referer = format!("{origin}/ui/login");
    let r = request(a, "POST", "/ui/login", &[form, ("Referer", &referer)], body).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/")));
    let cookie = r.header("set-cookie").unwrap().to_string();
    for part in [
        "authmilter_ui=reader%20token",
        "path=/ui",
        "httponly",
        "samesite=strict",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    // No TLS on this listener: not Secure, unless a TLS proxy in front says so.
    assert!(!cookie.contains("secure;") && !cookie.ends_with("secure"));
    let r = request(
        a,
        "POST",
        "/ui/login",
        &[form, ("Origin", &origin), ("X-Forwarded-Proto", "https")],
        body,
    )
    .await;
    assert!(r.header("set-cookie").unwrap().ends_with("; secure"));

    let jar = "authmilter_ui=reader%20token";
    let r = request(a, "GET", "/ui/", &[("Cookie", jar)], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(by_id(&r.body, "total-messages"), "4");
    // A bearer header works too; a token without read scope is forbidden.
    let r = request(
        a,
        "GET",
        "/ui/reports",
        &[("Authorization", "Bearer reader token")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = request(
        a,
        "GET",
        "/ui/",
        &[("Authorization", "Bearer checker")],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    // An unknown cookie is cleared on the way to the login form.
    let r = request(a, "GET", "/ui/", &[("Cookie", "authmilter_ui=old")], b"").await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("max-age=0"));
    // The cookie does not open the API (bearer tokens only there).
    let r = request(a, "GET", "/v1/verdicts", &[("Cookie", jar)], b"").await;
    assert_eq!(r.status, 401);

    // No state changes on GET: logout is a POST from this site.
    assert_eq!(
        request(a, "GET", "/ui/logout", &[("Cookie", jar)], b"")
            .await
            .status,
        405
    );
    let r = request(a, "POST", "/ui/logout", &[("Cookie", jar)], b"").await;
    assert_eq!(r.status, 403);
    let r = request(
        a,
        "POST",
        "/ui/logout",
        &[("Cookie", jar), ("Origin", &origin)],
        b"",
    )
    .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/login")));
    assert!(r.header("set-cookie").unwrap().contains("max-age=0"));
}

/// A verdict whose every text field is hostile.
fn hostile_record(at: i64) -> Record {
    let evil = "<script>alert('x')</script>";
    Record {
        received_at: at,
        transport: Transport::Smtp,
        queue_id: Some(format!("Q{evil}")),
        message_id: Some(format!("<{evil}@x>")),
        client_ip: "198.51.100.66".into(),
        helo: Some(evil.into()),
        mail_from: Some(format!("a@{evil}")),
        rcpts: vec![format!("\"{evil}\"@example.net")],
        rcpt_count: 1,
        from_domain: Some(format!("{evil}.example")),
        verdict: "reject".into(),
        dmarc: Some("fail".into()),
        duration: Duration::from_millis(1),
        document: json!({
            "verdict": "reject",
            "reasons": [evil],
            "smtp": {"code": 550, "status": "5.7.1", "text": evil},
            "spf": {"result": "fail", "domain": evil, "reason": evil},
            "dkim": [{"result": "fail", "domain": evil, "selector": evil, "algorithm": "rsa-sha256", "reason": evil}],
            "dmarc": {"result": "fail", "domain": evil, "policy": "reject", "reason": evil},
            "authentication_results": format!("mx; dmarc=fail header.from={evil}"),
        }),
        dmarc_event: None,
    }
}

pub(crate) fn hostile_report() -> NewReport {
    let evil = "<script>alert('org')</script>";
    NewReport {
        received_at: authmilter::dates::now_ms(),
        org_name: evil.into(),
        email: format!("{evil}@reporter.example"),
        report_id: evil.into(),
        domain: "example.com".into(),
        date_begin: authmilter::dates::now_ms() / 1000 - 86_400,
        date_end: authmilter::dates::now_ms() / 1000,
        policy: json!({"domain": evil, "p": "reject"}),
        messages: 5,
        dmarc_pass: 2,
        errors: vec![evil.into()],
        rows: vec![NewRow {
            source_ip: "203.0.113.9".into(),
            count: 5,
            disposition: "reject".into(),
            dkim: "fail".into(),
            spf: "fail".into(),
            header_from: evil.into(),
            envelope_from: Some(evil.into()),
            envelope_to: None,
            reasons: json!([{"type": evil, "comment": evil}]),
            auth_results: json!({"dkim": [], "spf": []}),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_store_text_is_escaped_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.sqlite");
    let now = authmilter::dates::now_ms();
    {
        let mut s = Store::open(&path).unwrap();
        s.insert_batch(&[hostile_record(now - 1000)]).unwrap();
        s.insert_received_report(&hostile_report()).unwrap();
        s.save_sent_report(
            &SentReport {
                domain: "<script>d</script>.example".into(),
                period_begin: now - 86_400_000,
                period_end: now,
                report_id: "r1".into(),
                state: "failed".into(),
                attempts: 3,
                next_attempt: None,
                destinations: vec!["<script>dest</script>@x".into()],
                messages: 1,
                bytes: None,
                detail: Some("<script>why</script>".into()),
            },
            now,
        )
        .unwrap();
    }
    let a = tokened_listener(Some(path)).await;
    let auth = ("Authorization", "Bearer reader token");
    let verdict = request(a, "GET", "/ui/verdicts", &[auth], b"").await;
    let id = {
        let at = verdict.body.find("href=\"/ui/verdicts/").unwrap() + 19;
        let rest = &verdict.body[at..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    for target in [
        "/ui/".to_string(),
        "/ui/verdicts".into(),
        "/ui/verdicts?from_domain=%3Cscript%3Ealert('x')%3C/script%3E.example".into(),
        format!("/ui/verdicts/{id}"),
        "/ui/reports".into(),
        "/ui/reports/1".into(),
        "/ui/reports/sent".into(),
        "/ui/verdicts?since=%3Cscript%3E".into(),
    ] {
        let r = request(a, "GET", &target, &[auth], b"").await;
        assert!(r.status == 200 || r.status == 400, "{target}: {}", r.status);
        assert!(!r.body.contains("<script"), "{target}: {}", r.body);
        assert!(r.body.contains("&lt;script&gt;"), "{target}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_page_checks_the_published_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = signing_keys(dir.path());
    // The same RSA key under a selector with no record in the zone.
    let mut missing = keys[0].clone();
    missing.selector = "nothere".into();
    keys.push(missing);
    let d = Daemon::start_with_api(move |c| c.signing.add_keys(keys)).await;
    let r = get(d.http.unwrap(), "/ui/keys").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let row = |key: &str| {
        let at = r
            .body
            .find(&format!("data-key=\"{key}\""))
            .unwrap_or_else(|| panic!("{key}: {}", r.body));
        let rest = &r.body[at..];
        rest[..rest.find("</tr>").unwrap()].to_string()
    };
    assert!(row("rsa._domainkey.example.com").contains(">matches<"));
    assert!(row("ed._domainkey.example.com").contains(">matches<"));
    let missing = row("nothere._domainkey.example.com");
    assert!(missing.contains(">missing<"), "{missing}");
    // What to publish: the zone line with the key's p=.
    assert!(
        missing.contains("nothere._domainkey.example.com."),
        "{missing}"
    );
    assert!(missing.contains("v=DKIM1; k=rsa; p="), "{missing}");
}
