//! The enforcement-readiness view (`report readiness`, `GET /v1/reports/readiness`,
//! `/ui/reports/readiness`) over a store filled the real way: the aggregate reports of
//! `testdata/reports/readiness/` imported as `report import` does, and verdicts made by the
//! in-process daemon from milter traffic (aligned, an ESP's unaligned mail, a spoofer).
//! The same figures, exactly, in the command's table, the API's JSON and the page Chromium
//! renders; and alike on SQLite and PostgreSQL.

use crate::common::*;
use crate::http::call;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::report_import::import;
use authmilter::report::received::ImportSettings;
use authmilter::store::Store;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// `reports.email`: the third fixture report is ours, read back.
const OUR_REPORTS: &str = "dmarc-reports@authmilter.test";
/// Before the fixtures' day (2024-05-01), so the period holds them and today's verdicts.
const SINCE: &str = "2024-04-30T00:00:00Z";

fn store_path(d: &Daemon) -> PathBuf {
    d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite")
}

/// The daemon with a store holding the fixture reports and four verdicts about example.com
/// (milter traffic):
/// two aligned from 192.0.2.10, one from the ESP at 198.51.100.7 (SPF and DKIM pass for
/// example.net), one unsigned from 203.0.113.66 (SPF fails).
async fn filled() -> Daemon {
    let d = Daemon::start_with_api(|c| {
        c.reports.email = Some(OUR_REPORTS.into());
        c.reports.owned_domains = vec!["example.com".into()];
        // The fixtures are from 2024: retention would prune them as the writer starts.
        c.store.retention_days = 0;
    })
    .await;
    let api = d.http.unwrap();
    let from = "Alice <alice@example.com>";
    // Real milter traffic (a check over the API on request is not mail received, and
    // makes no DMARC event).
    let traffic = [
        (
            "192.0.2.10",
            "alice@example.com",
            sign_rsa("example.com", &message(from, "ready1", "Hi.\r\n")),
        ),
        (
            "192.0.2.10",
            "alice@example.com",
            sign_rsa("example.com", &message(from, "ready2", "Hi.\r\n")),
        ),
        (
            "198.51.100.7",
            "bounce@example.net",
            sign_rsa("example.net", &message(from, "ready3", "News.\r\n")),
        ),
        (
            "203.0.113.66",
            "alice@example.com",
            message(from, "ready4", "Pay.\r\n"),
        ),
    ];
    for (i, (ip, mail_from, raw)) in traffic.iter().enumerate() {
        let mut mta = d.mta().await;
        mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
        mta.connect_client(ip, "mail.example.com").await;
        mta.message(&format!("READY{i}"), mail_from, None, raw)
            .await;
    }
    let mut stored = 0;
    for _ in 0..100 {
        stored = call(api, "GET", "/v1/verdicts", None, b"").await.json()["items"]
            .as_array()
            .map_or(0, Vec::len);
        if stored == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored, 4, "the verdicts never reached the store");
    let mut s = Store::open(&store_path(&d)).unwrap();
    let settings = ImportSettings::from(&d.next.lock().unwrap().reports);
    let (tally, out) = import(&mut s, &testdata("reports/readiness"), &settings);
    assert_eq!(tally.stored, 3, "{out}");
    d
}

/// What the fixtures and the traffic make, per source: (address, reverse name, SPF domains,
/// DKIM domains, messages, reported, seen here, DMARC pass, fixable, failing, class).
fn expected_sources() -> Value {
    let source = |ip: &str, name: Value, spf: &[&str], dkim: &[&str], n: [u64; 6], class: &str| {
        json!({
            "source_ip": ip, "reverse_name": name, "spf_domains": spf, "dkim_domains": dkim,
            "messages": n[0], "reported": n[1], "seen_here": n[2], "dmarc_pass": n[3],
            "pass_rate": n[3] as f64 / n[0] as f64, "fixable": n[4], "failing": n[5],
            "class": class,
        })
    };
    json!([
        source(
            "192.0.2.10",
            json!("mail.example.com"),
            &["example.com"],
            &["example.com"],
            [32, 30, 2, 32, 0, 0],
            "aligned"
        ),
        source(
            "198.51.100.7",
            json!("out.esp.example.net"),
            &["example.net"],
            &["example.net"],
            [11, 10, 1, 0, 11, 0],
            "fixable"
        ),
        source(
            "203.0.113.66",
            Value::Null,
            &["example.com"],
            &[],
            [5, 4, 1, 0, 0, 5],
            "failing"
        ),
        source(
            "209.85.220.41",
            Value::Null,
            &["forwarder.example"],
            &["example.com"],
            [3, 3, 0, 0, 0, 3],
            "failing"
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_classes_and_projected_loss_in_the_api_and_the_command() {
    let d = filled().await;
    let api = d.http.unwrap();
    let r = call(
        api,
        "GET",
        &format!("/v1/reports/readiness?domain=Example.COM.&since={SINCE}"),
        None,
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut v = r.json();
    assert_eq!(v["domain"], "example.com");
    assert_eq!(v["since"], "2024-04-30T00:00:00.000Z");
    // Our own report (50 messages from 192.0.2.10) is left out: 20+8+3 + 10+2+4 reported.
    assert_eq!(
        (
            v["reports"].as_u64(),
            v["reported_messages"].as_u64(),
            v["seen_here"].as_u64()
        ),
        (Some(2), Some(47), Some(4))
    );
    assert_eq!(
        (v["messages"].as_u64(), v["dmarc_pass"].as_u64()),
        (Some(51), Some(32))
    );
    assert_eq!(v["pass_rate"].as_f64(), Some(32.0 / 51.0));
    let loss = json!({"messages": 19, "share": 19.0 / 51.0});
    assert_eq!(v["projected"], json!({"quarantine": loss, "reject": loss}));
    assert_eq!(
        v["classes"],
        json!({
            "aligned": {"sources": 1, "messages": 32},
            "fixable": {"sources": 1, "messages": 11},
            "failing": {"sources": 2, "messages": 8},
        })
    );
    // Aligning the ESP (a return path and a signature under example.com) leaves 19 - 11.
    let sources = v["sources"].as_array_mut().unwrap();
    let fixed: Vec<Value> = sources
        .iter_mut()
        .map(|s| s.as_object_mut().unwrap().remove("loss_if_fixed").unwrap())
        .collect();
    assert_eq!(
        fixed,
        [
            Value::Null,
            json!({"messages": 8, "share": 8.0 / 51.0}),
            Value::Null,
            Value::Null
        ]
    );
    assert_eq!(v["sources"], expected_sources());

    // The default period (30 days) holds today's verdicts, not the 2024 reports.
    let recent = call(
        api,
        "GET",
        "/v1/reports/readiness?domain=example.com",
        None,
        b"",
    )
    .await
    .json();
    assert_eq!(
        (recent["reports"].as_u64(), recent["messages"].as_u64()),
        (Some(0), Some(4))
    );
    assert_eq!(recent["projected"]["reject"]["messages"], 2);
    assert_eq!(recent["projected"]["reject"]["share"].as_f64(), Some(0.5));
    for (target, status) in [
        ("/v1/reports/readiness", 400),
        ("/v1/reports/readiness?domain=example.com&since=soon", 400),
        ("/v1/reports/readiness?domain=example.com&colour=blue", 400),
    ] {
        assert_eq!(
            call(api, "GET", target, None, b"").await.status,
            status,
            "{target}"
        );
    }

    // Read scope, as the other report routes: a listener that needs tokens refuses a
    // request without one (and sends a browser to the login form), answers one with it.
    let tokened = crate::dashboard::tokened_listener(Some(store_path(&d))).await;
    let target = "/v1/reports/readiness?domain=example.com";
    assert_eq!(call(tokened, "GET", target, None, b"").await.status, 401);
    let r = call(tokened, "GET", target, Some("reader token"), b"").await;
    assert_eq!((r.status, r.json()["messages"].as_u64()), (200, Some(4)));
    let r = crate::dashboard::get(tokened, "/ui/reports/readiness?domain=example.com").await;
    assert_eq!(r.status, 303);

    // The command: the same figures, as a table.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authmilter.toml");
    std::fs::write(&config, format!("[reports]\nemail = \"{OUR_REPORTS}\"\n")).unwrap();
    let path = store_path(&d);
    let args = [
        "report".to_string(),
        "readiness".into(),
        "--config".into(),
        config.display().to_string(),
        "--nameserver".into(),
        d.dns.addr.to_string(),
        "--store".into(),
        path.display().to_string(),
        "--domain".into(),
        "example.com".into(),
        "--since".into(),
        SINCE.into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_authmilter"))
            .args(&args)
            .env("AUTHMILTER_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        lines[0]
            .starts_with("Enforcement readiness of example.com from 2024-04-30T00:00:00.000Z to "),
        "{stdout}"
    );
    assert_eq!(
        lines[1..],
        [
            "51 messages (47 in 2 aggregate reports received, 4 checked by this filter), 32 pass DMARC (62.7 %)",
            "p=quarantine (pct=100) today: 19 messages quarantined (37.3 %)",
            "p=reject (pct=100) today: 19 messages rejected (37.3 %)",
            "",
            "SOURCE REVERSE NAME SPF DOMAINS DKIM DOMAINS MESSAGES PASS CLASS LOSS IF FIXED",
            "192.0.2.10 mail.example.com example.com example.com 32 100.0 % aligned -",
            "198.51.100.7 out.esp.example.net example.net example.net 11 0.0 % fixable 8 (15.7 %)",
            "203.0.113.66 - example.com - 5 0.0 % failing -",
            "209.85.220.41 - forwarder.example example.com 3 0.0 % failing -",
        ],
        "{stdout}"
    );
}

/// The text of the table row with `id`, tags removed and blanks collapsed.
fn row_text(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("<tr id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row #{id} in {dom}"));
    let row = &dom[start..][..dom[start..].find("</tr>").unwrap()];
    let mut text = String::new();
    let mut in_tag = false;
    for c in row.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_readiness_page_with_the_same_figures() {
    let Some(program) = crate::postfix::require("chromium") else {
        return;
    };
    let d = filled().await;
    let a = d.http.unwrap();
    // The reports page links to the view of the domain it shows.
    let page = crate::dashboard::get(a, "/ui/reports?domain=example.com").await;
    assert!(
        page.body
            .contains("href=\"/ui/reports/readiness?domain=example.com\""),
        "{}",
        page.body
    );
    let profile = tempfile::tempdir().unwrap();
    let url = format!(
        "http://{a}/ui/reports/readiness?domain=example.com&since=2024-04-30T00%3A00%3A00Z"
    );
    let profile_path = profile.path().to_path_buf();
    // The DOM as the browser built it, and a screenshot beside the other pages'.
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/ui-screenshots/readiness.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    let (dom, png) = tokio::task::spawn_blocking(move || {
        use crate::dashboard_browser::chromium;
        let dom = chromium(&program, &profile_path, &["--dump-dom"], &url);
        let size = "--window-size=1280,900";
        let to = format!("--screenshot={}", shot.display());
        chromium(&program, &profile_path, &[to.as_str(), size], &url);
        (dom, std::fs::read(&shot).unwrap())
    })
    .await
    .unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    use crate::dashboard::by_id;
    assert_eq!(by_id(&dom, "readiness-messages"), "51");
    assert_eq!(by_id(&dom, "readiness-pass-rate"), "62.7 %");
    assert_eq!(by_id(&dom, "loss-quarantine"), "37.3 %");
    assert_eq!(by_id(&dom, "loss-reject"), "37.3 %");
    let rows = [
        ("192.0.2.10", "192.0.2.10 mail.example.com example.com example.com 32 100.0 % 0 0 aligned —"),
        ("198.51.100.7", "198.51.100.7 out.esp.example.net example.net example.net 11 0.0 % 11 0 fixable 8 (15.7 %)"),
        ("203.0.113.66", "203.0.113.66 — example.com — 5 0.0 % 0 5 failing —"),
        ("209.85.220.41", "209.85.220.41 — forwarder.example example.com 3 0.0 % 0 3 failing —"),
    ];
    for (ip, text) in rows {
        assert_eq!(row_text(&dom, &format!("source-{ip}")), text, "{dom}");
    }
    // In that order, largest first.
    let at = |ip: &str| dom.find(&format!("id=\"source-{ip}\"")).unwrap();
    assert!(at("192.0.2.10") < at("198.51.100.7") && at("198.51.100.7") < at("203.0.113.66"));
    assert!(!dom.contains("<script"), "{dom}");
}

// The view reads alike from PostgreSQL: the SQLite store above copied by `store copy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_answers_alike_on_both_back_ends() {
    use authmilter::report::readiness::Readiness;
    use authmilter::store::{Location, PgTarget};
    let Some(pg) = crate::pg_cluster::PgCluster::start() else {
        return;
    };
    pg.create_db("readiness");
    let d = filled().await;
    let lite = store_path(&d);
    let target = PgTarget::parse(&pg.url("readiness"), None).unwrap();
    let views = tokio::task::spawn_blocking(move || {
        let copied = authmilter::store::copy::copy(&lite, &target, "host-a").unwrap();
        assert_eq!((copied.verdicts, copied.received), (4, 3), "{copied}");
        let since = authmilter::dates::parse_time(SINCE, 0).unwrap();
        let until = authmilter::dates::now_ms() + 1;
        [Location::Sqlite(lite), Location::Postgres(target)].map(|location| {
            let s = Store::connect(&location).unwrap();
            Readiness::gather(&s, "example.com", since, until, Some(OUR_REPORTS))
                .unwrap()
                .to_json()
        })
    })
    .await
    .unwrap();
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1]["messages"], 51);
    assert_eq!(views[1]["projected"]["reject"]["messages"], 19);
    assert_eq!(views[1]["sources"][1]["class"], "fixable");
}
