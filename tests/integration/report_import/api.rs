//! The HTTP routes over received reports: list (filters, paging), one report with its rows,
//! the summary; `owned` as the configuration says.

use super::{import, reports_dir, settings, XML};
use crate::http::call;
use crate::milter_client::Daemon;
use authmilter::report::received::Fate;
use authmilter::store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_filters_shows_and_summarises_received_reports() {
    let d = Daemon::start_with_api(|c| {
        c.reports.owned_domains = vec!["example.com".into()];
        // The fixtures are from 2024: retention would prune them as the writer starts.
        c.store.retention_days = 0;
    })
    .await;
    let api = d.http.unwrap();
    // Import into the daemon's store as `report import` would, beside the running server.
    let path = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let mut s = Store::open(&path).unwrap();
    let (tally, out) = import(&mut s, &reports_dir(), &settings());
    assert_eq!(tally.stored, 4, "{out}");
    let foreign = std::fs::read_to_string(reports_dir().join(XML))
        .unwrap()
        .replace(
            "<domain>example.com</domain>\n    <p>",
            "<domain>example.org</domain>\n    <p>",
        )
        .replace("mail.example.net-2024-05-01-0001", "foreign-1");
    let fates = authmilter::report::received::import(&mut s, foreign.as_bytes(), &settings(), 0);
    assert!(matches!(fates[0].fate, Fate::Stored { .. }), "{fates:?}");

    let get = |target: &'static str| call(api, "GET", target, None, b"");
    let all = get("/v1/reports").await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["items"][0]["domain"], "example.org");
    assert_eq!(all["items"][0]["owned"], false);
    assert_eq!(all["items"][1]["owned"], true);

    let page = get("/v1/reports?limit=2").await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_string();
    let rest = call(
        api,
        "GET",
        &format!("/v1/reports?limit=10&next={next}"),
        None,
        b"",
    )
    .await
    .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);

    let google = get("/v1/reports?domain=EXAMPLE.com&reporter=google.com")
        .await
        .json();
    let items = google["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["report_id"], "4170294883417309542");
    // Periods: all of May 1st 2024; since/until select by overlap.
    let after = get("/v1/reports?since=2024-05-02T00:00:01Z").await.json();
    assert!(after["items"].as_array().unwrap().is_empty());
    let during = get("/v1/reports?since=2024-05-01T12:00:00Z&until=2024-05-01T13:00:00Z").await;
    let during = during.json();
    assert_eq!(during["items"].as_array().unwrap().len(), 5, "{during}");

    let id = items[0]["id"].as_i64().unwrap();
    let one = call(api, "GET", &format!("/v1/reports/{id}"), None, b"")
        .await
        .json();
    assert_eq!(one["org_name"], "google.com");
    assert_eq!(one["rows"].as_array().unwrap().len(), 2);
    assert_eq!(one["rows"][0]["count"], 3);
    assert_eq!(one["owned"], true);

    let sum = get("/v1/reports/summary?domain=example.com&since=1714000000")
        .await
        .json();
    assert_eq!(
        (sum["reports"].as_i64(), sum["messages"].as_i64()),
        (Some(4), Some(28))
    );
    assert_eq!(sum["pass_rate"].as_f64(), Some(22.0 / 28.0));
    assert_eq!(sum["top_failing_sources"][0]["source_ip"], "198.51.100.20");
    let per = sum["reporters"].as_array().unwrap();
    assert_eq!(per.len(), 4);
    assert_eq!(per[0]["email"], "dmarcreport@microsoft.com");
    // Default window: the last 7 days, so these 2024 reports are not in it.
    let recent = get("/v1/reports/summary").await.json();
    assert_eq!(recent["reports"], 0);

    assert_eq!(get("/v1/reports/999999").await.status, 404);
    assert_eq!(get("/v1/reports/abc").await.status, 400);
    assert_eq!(get("/v1/reports?colour=blue").await.status, 400);
    assert_eq!(get("/v1/reports?limit=0").await.status, 400);
    assert_eq!(get("/v1/reports/summary?since=yesterday").await.status, 400);
}
