//! Failure reports received (RFC 9991 / ARF `auth-failure`, and a plain-text notice; files in
//! `testdata/reports/failures/`): imported by `report import` and by the milter door, stored
//! once, read as parsedmarc reads them (source address, reported domain, subject), listed and
//! searched over `/v1/reports/failures` and on the dashboard, redactions kept.

use super::{import, settings};
use crate::common::*;
use crate::http::call;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::postfix::skip;
use authmilter::store::Store;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// parsedmarc's reading of a failure report: (source IP, reported domain, subject).
fn parsedmarc(file: &Path) -> Option<(String, String, String)> {
    let program = std::env::var("AUTHMILTER_PARSEDMARC")
        .unwrap_or("/opt/authmilter-venv/bin/parsedmarc".into());
    if !Path::new(&program).is_file() {
        return skip("parsedmarc not installed (.ci/run makes its virtualenv)");
    }
    let out = Command::new(&program)
        .arg("--offline")
        .arg(file)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let r = &json["failure_reports"][0];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Some((
        s(&r["source"]["ip_address"]),
        s(&r["reported_domain"]),
        s(&r["parsed_sample"]["subject"]),
    ))
}

// RFC 9991 / RFC 6591: ARF and plain-text failure reports are stored with their identities,
// results, source address and headers, once; the API and the dashboard list and search them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reports_are_imported_listed_and_searched() {
    let d = Daemon::start_with_api(|c| {
        c.store.retention_days = 0;
    })
    .await;
    let api = d.http.unwrap();
    let path = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let dir = testdata("reports/failures");
    let mut s = Store::open(&path).unwrap();
    for file in ["arf-auth-failure.eml", "plain-text-notice.eml"] {
        let (tally, out) = import(&mut s, &dir.join(file), &settings());
        assert_eq!((tally.stored, tally.refused), (1, 0), "{out}");
        assert!(out.contains("failure report stored as #"), "{out}");
        let (again, out) = import(&mut s, &dir.join(file), &settings());
        assert_eq!((again.stored, again.duplicate), (0, 1), "{out}");
    }

    let get = |target: String| async move { call(api, "GET", &target, None, b"").await };
    let all = get("/v1/reports/failures".into()).await.json();
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{all}");
    for (file, item) in [
        ("plain-text-notice.eml", &items[0]),
        ("arf-auth-failure.eml", &items[1]),
    ] {
        let ours = (
            item["source_ip"].as_str().unwrap().to_string(),
            item["domain"].as_str().unwrap().to_string(),
            item["subject"].as_str().unwrap().to_string(),
        );
        if let Some(theirs) = parsedmarc(&dir.join(file)) {
            assert_eq!(ours, theirs, "{file}");
        }
    }
    let arf = &items[1];
    assert_eq!(arf["format"], "arf");
    assert_eq!(arf["auth_failure"], "dmarc");
    assert_eq!(arf["identity_alignment"], "none");
    assert_eq!(arf["delivery_result"], "reject");
    assert_eq!(arf["mail_from"], "<redacted@example.com>");
    assert_eq!(arf["dkim_selector"], "s2024");
    assert_eq!(arf["arrival"], "2024-05-02T09:59:00.000Z");
    assert_eq!(arf["authentication_results"].as_array().unwrap().len(), 2);
    assert_eq!(arf["owned"], true);
    assert_eq!(items[0]["format"], "text");
    assert_eq!(items[0]["identity_alignment"], "dkim");

    let count = |q: &str| {
        let q = q.to_string();
        async move {
            get(format!("/v1/reports/failures?{q}")).await.json()["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(count("q=INVOICE").await, 1);
    assert_eq!(count("q=spoofer.example").await, 1);
    assert_eq!(count("q=nothing-like-this").await, 0);
    assert_eq!(count("domain=example.com").await, 2);
    assert_eq!(count("source_ip=198.51.100.23").await, 1);
    assert_eq!(count("limit=1").await, 1);

    let id = arf["id"].as_i64().unwrap();
    let one = get(format!("/v1/reports/failures/{id}")).await.json();
    let headers = one["headers"].as_str().unwrap();
    assert!(
        headers.contains("From: \"Accounts\" <redacted@example.com>"),
        "{headers}"
    );
    assert!(
        headers.starts_with("Received: from spoofer.example"),
        "{headers}"
    );
    assert_eq!(get("/v1/reports/failures/999".into()).await.status, 404);

    // The dashboard: the list, searched, and one report's headers (escaped).
    let page = get("/ui/reports/failures?q=invoice".into()).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains("Invoice 4711") && !html.contains("Your statement"),
        "{html}"
    );
    let detail = get(format!("/ui/reports/failures/{id}")).await;
    let html = detail.text();
    assert!(
        html.contains("From: &quot;Accounts&quot; &lt;redacted@example.com&gt;"),
        "{html}"
    );
}

// Failure reports mailed to a report address come through the milter and are stored like
// aggregate reports, off the hot path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_report_mail_is_imported_through_the_milter() {
    let d = Daemon::start_with_api(|c| {
        c.reports.rua_addresses = vec!["fail@example.com".into()];
        c.store.retention_days = 0;
    })
    .await;
    let raw = std::fs::read(testdata("reports/failures/arf-auth-failure.eml")).unwrap();
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.99", "mx.receiver.example")
        .await;
    mta.message_to(
        "A1",
        "dmarc-noreply@receiver.example",
        None,
        &["fail@example.com"],
        &raw,
    )
    .await;
    let api = d.http.unwrap();
    let started = Instant::now();
    loop {
        let r = call(api, "GET", "/v1/reports/failures", None, b"")
            .await
            .json();
        if r["items"].as_array().is_some_and(|i| i.len() == 1) {
            assert_eq!(r["items"][0]["source_ip"], "203.0.113.5");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// The failure-report table answers alike on both back ends: insert, duplicate, list, search,
// one report (ids included: both number from 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reports_answer_alike_on_both_back_ends() {
    use authmilter::store::{FailureFilter, Location, PgTarget};
    let Some(pg) = crate::pg_cluster::PgCluster::start() else {
        return;
    };
    pg.create_db("failures");
    let dir = tempfile::tempdir().unwrap();
    let lite = Location::Sqlite(dir.path().join("f.sqlite"));
    let fleet = Location::Postgres(PgTarget::parse(&pg.url("failures"), None).unwrap());
    let mut answers = Vec::new();
    for location in [lite, fleet] {
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = Store::connect(&location).unwrap();
            let mut inserted = Vec::new();
            for file in ["arf-auth-failure.eml", "plain-text-notice.eml"] {
                let raw = std::fs::read(testdata("reports/failures").join(file)).unwrap();
                let mut r = authmilter::report::failure_in::parse(&raw, 1_714_700_000_000)
                    .unwrap()
                    .unwrap();
                // A NUL (PostgreSQL text cannot hold one) and a LIKE wildcard in the headers.
                r.headers.push_str("\r\nX-Odd: 100%\0");
                inserted.push(format!("{:?}", s.insert_failure_report(&r).unwrap()));
                inserted.push(format!("{:?}", s.insert_failure_report(&r).unwrap()));
            }
            let search = |f: FailureFilter| s.failure_reports(&f, 10).unwrap().items;
            serde_json::json!({
                "inserted": inserted,
                "all": search(FailureFilter::default()),
                "q": search(FailureFilter { q: Some("100%".into()), ..Default::default() }).len(),
                "invoice": search(FailureFilter { q: Some("invoice".into()), ..Default::default() }).len(),
                "ip": search(FailureFilter { source_ip: Some("203.0.113.5".into()), ..Default::default() }).len(),
                "one": s.failure_report(1).unwrap(),
            })
        })
        .await
        .unwrap();
        answers.push(answer);
    }
    let lite = &answers[0];
    let fleet = &answers[1];
    assert_eq!(lite["inserted"][1], "Duplicate(1)");
    assert_eq!(
        (
            lite["q"].as_u64(),
            lite["invoice"].as_u64(),
            lite["ip"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    // NUL is U+FFFD on PostgreSQL, itself on SQLite: compare the rest.
    let mut lite_one = lite["one"].clone();
    let mut fleet_one = fleet["one"].clone();
    for v in [&mut lite_one, &mut fleet_one] {
        v["headers"] = v["headers"]
            .as_str()
            .unwrap()
            .replace(['\0', '\u{fffd}'], "")
            .into();
    }
    assert_eq!(lite_one, fleet_one);
    for key in ["inserted", "all", "q", "invoice", "ip"] {
        assert_eq!(lite[key], fleet[key], "{key}");
    }
}
