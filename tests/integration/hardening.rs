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
