//! Markup stored by a peer or typed into a query comes out of every dashboard page as text:
//! in element content, in attribute values (form fields, `data-*` of the charts), in links
//! (percent-encoded, then followed back), and on error pages. Two payloads: a script element,
//! and an attribute break-out (`"><img src=x>`); plus an event-handler injection.

use crate::dashboard::{request, tokened_listener, Resp};
use authmilter::store::{NewReport, NewRow, Record, SentReport, Store, Transport};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

const SCRIPT: &str = "<script>alert(1)</script>";
const BREAKOUT: &str = "\"><img src=x>";
const HANDLER: &str = "x\" autofocus onfocus=\"alert(2)";

/// How each payload reads in escaped markup.
const SCRIPT_TEXT: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
const BREAKOUT_TEXT: &str = "&quot;&gt;&lt;img src=x&gt;";
const HANDLER_TEXT: &str = "x&quot; autofocus onfocus=&quot;alert(2)";

/// A verdict whose every text field is `evil`, from the domain `from`.
fn record(at: i64, evil: &str, from: &str, verdict: &str) -> Record {
    Record {
        received_at: at,
        transport: Transport::Milter,
        queue_id: Some(evil.into()),
        message_id: Some(format!("<{evil}@x>")),
        client_ip: evil.into(),
        helo: Some(evil.into()),
        mail_from: Some(format!("a@{evil}")),
        rcpts: vec![evil.into(), HANDLER.into()],
        rcpt_count: 2,
        from_domain: Some(from.into()),
        verdict: verdict.into(),
        dmarc: Some("fail".into()),
        duration: Duration::from_millis(1),
        document: json!({
            "verdict": verdict,
            "transport": evil,
            "reasons": [evil, HANDLER],
            "smtp": {"code": 550, "status": evil, "text": evil},
            "spf": {"result": evil, "domain": evil, "reason": evil, "helo_result": evil},
            "dkim": [{"result": evil, "domain": evil, "selector": evil,
                      "algorithm": evil, "reason": evil}],
            "arc": {"result": evil, "sealers": [evil, HANDLER], "reason": evil},
            "dmarc": {"result": evil, "domain": evil, "policy": evil,
                      "disposition": evil, "reason": evil},
            "iprev": evil,
            "authentication_results": format!("mx; dmarc=fail header.from={evil}"),
            "received_spf": format!("fail ({evil})"),
        }),
        dmarc_event: None,
    }
}

fn report(org: &str, evil: &str, domain: &str) -> NewReport {
    let now = authmilter::dates::now_ms();
    NewReport {
        received_at: now,
        org_name: org.into(),
        email: format!("{evil}@reporter.example"),
        report_id: evil.into(),
        domain: domain.into(),
        date_begin: now / 1000 - 86_400,
        date_end: now / 1000,
        policy: json!({"domain": evil, "p": evil}),
        messages: 3,
        dmarc_pass: 1,
        errors: vec![evil.into(), HANDLER.into()],
        rows: vec![NewRow {
            source_ip: evil.into(),
            count: 3,
            disposition: evil.into(),
            dkim: evil.into(),
            spf: evil.into(),
            header_from: evil.into(),
            envelope_from: Some(evil.into()),
            envelope_to: None,
            reasons: json!([{"type": evil, "comment": HANDLER}]),
            auth_results: json!({"dkim": [], "spf": []}),
        }],
    }
}

/// `GET target` with the reader's token; the page must hold no markup of the payloads and
/// show each of `shown` as text.
async fn page(a: SocketAddr, target: &str, status: u16, shown: &[&str]) -> Resp {
    let r = request(
        a,
        "GET",
        target,
        &[("Authorization", "Bearer reader token")],
        b"",
    )
    .await;
    assert_eq!(r.status, status, "{target}: {}", r.body);
    for raw in ["<script", "<img", "onfocus=\""] {
        assert!(!r.body.contains(raw), "{target}: {raw} in {}", r.body);
    }
    for text in shown {
        assert!(r.body.contains(text), "{target}: no {text} in {}", r.body);
    }
    r
}

/// The `href` of the first link whose text is `text`, unescaped.
fn href_of(body: &str, text: &str) -> String {
    let end = body
        .find(&format!("\">{text}</a>"))
        .unwrap_or_else(|| panic!("no link {text} in {body}"));
    let start = body[..end].rfind("href=\"").unwrap() + 6;
    body[start..end].replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_and_query_markup_is_text_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("markup.sqlite");
    let now = authmilter::dates::now_ms();
    {
        let mut s = Store::open(&path).unwrap();
        // 55 verdicts from the break-out domain (a second search page), one from the script
        // domain; one verdict itself is markup (the chart's data-verdict, the badge).
        let mut records: Vec<Record> = (0..55)
            .map(|i| {
                let evil = [SCRIPT, BREAKOUT][i % 2];
                record(now - 60_000 + i as i64, evil, BREAKOUT, "reject")
            })
            .collect();
        records.push(record(now - 1000, SCRIPT, SCRIPT, BREAKOUT));
        s.insert_batch(&records).unwrap();
        s.insert_received_report(&report(SCRIPT, BREAKOUT, "example.com"))
            .unwrap();
        s.insert_received_report(&report(BREAKOUT, SCRIPT, "script.example"))
            .unwrap();
        s.save_sent_report(
            &SentReport {
                domain: BREAKOUT.into(),
                period_begin: now - 86_400_000,
                period_end: now,
                report_id: SCRIPT.into(),
                state: BREAKOUT.into(),
                attempts: 3,
                next_attempt: None,
                destinations: vec![SCRIPT.into(), BREAKOUT.into()],
                messages: 1,
                bytes: None,
                detail: Some(HANDLER.into()),
            },
            now,
        )
        .unwrap();
    }
    let a = tokened_listener(Some(path)).await;
    let all = [SCRIPT_TEXT, BREAKOUT_TEXT];

    // The overview: failing domains and addresses, the chart, the result bars.
    let overview = page(a, "/ui/", 200, &all).await;
    assert!(
        overview
            .body
            .contains(&format!("data-verdict=\"{BREAKOUT_TEXT}\"")),
        "{}",
        overview.body
    );
    assert!(overview
        .body
        .contains(&format!("data-result=\"{SCRIPT_TEXT}\"")));
    // Its link to the search for the break-out domain is percent-encoded and leads there.
    let link = href_of(&overview.body, BREAKOUT_TEXT);
    assert_eq!(
        link,
        "/ui/verdicts?from_domain=%22%3E%3Cimg%20src%3Dx%3E&dmarc=fail&since=24h"
    );
    let search = page(a, &link, 200, &all).await;
    // The form shows the query's domain as its value; 50 of 55 rows, then a next page.
    assert!(search
        .body
        .contains(&format!("name=\"from_domain\" value=\"{BREAKOUT_TEXT}\"")));
    assert_eq!(search.body.matches(">detail</a>").count(), 50);
    let next = href_of(&search.body, "Older verdicts →");
    assert!(
        next.starts_with("/ui/verdicts?from_domain=%22%3E%3Cimg+src%3Dx%3E&dmarc=fail"),
        "{next}"
    );
    let second = page(a, &next, 200, &all).await;
    assert_eq!(second.body.matches(">detail</a>").count(), 5);

    // Every verdict field on the detail pages, of each payload.
    let list = page(a, "/ui/verdicts", 200, &all).await;
    let mut details = Vec::new();
    for at in list.body.match_indices("href=\"/ui/verdicts/").take(2) {
        let rest = &list.body[at.0 + 6..];
        details.push(rest[..rest.find('"').unwrap()].to_string());
    }
    for link in &details {
        let d = page(a, link, 200, &[HANDLER_TEXT]).await;
        assert!(
            d.body.contains(SCRIPT_TEXT) || d.body.contains(BREAKOUT_TEXT),
            "{}",
            d.body
        );
    }

    // Reports received: org names, the reporter links (followed back), the rows.
    let reports = page(a, "/ui/reports", 200, &all).await;
    let by_reporter = href_of(&reports.body, SCRIPT_TEXT);
    assert_eq!(
        by_reporter,
        "/ui/reports?reporter=%3Cscript%3Ealert%281%29%3C%2Fscript%3E"
    );
    let one = page(a, &by_reporter, 200, &all).await;
    assert_eq!(one.body.matches(">rows</a>").count(), 1, "{}", one.body);
    for id in [1, 2] {
        page(a, &format!("/ui/reports/{id}"), 200, &all).await;
    }
    page(a, "/ui/reports/sent", 200, &all).await;

    // Query text in the forms and in error pages.
    page(
        a,
        "/ui/reports?domain=%3Cscript%3Ealert(1)%3C/script%3E&reporter=%22%3E%3Cimg%20src=x%3E",
        200,
        &[
            &format!("name=\"domain\" value=\"{SCRIPT_TEXT}\""),
            &format!("name=\"reporter\" value=\"{BREAKOUT_TEXT}\""),
        ],
    )
    .await;
    page(
        a,
        "/ui/verdicts?queue_id=x%22%20autofocus%20onfocus=%22alert(2)",
        200,
        &[&format!("value=\"{HANDLER_TEXT}\"")],
    )
    .await;
    page(
        a,
        "/ui/verdicts?since=%3Cscript%3Ealert(1)%3C/script%3E",
        400,
        &[SCRIPT_TEXT],
    )
    .await;
    page(
        a,
        "/ui/verdicts/%22%3E%3Cimg%20src=x%3E",
        400,
        &[BREAKOUT_TEXT],
    )
    .await;
    page(
        a,
        "/ui/reports/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        400,
        &[SCRIPT_TEXT],
    )
    .await;
}
