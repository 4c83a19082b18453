//! The DMARC report pages: reports other receivers sent us (the summary per reporter, the
//! list, one report's rows; the queries of `/v1/reports*`), and the reports we sent.

use super::super::handlers::Params;
use super::super::reports::mark_owned;
use super::html::{esc, url, val};
use super::{ok, UiResult};
use crate::dates::{format_rfc3339, now_ms};
use crate::http::{ApiError, AppState};
use crate::store::ReportFilter;
use axum::extract::{Path, RawQuery, State};
use serde_json::Value;
use std::fmt::Write;

const DAY_MS: i64 = 86_400_000;
/// Reports per page.
const PAGE: usize = 50;
/// The summary's window and the sent reports shown.
const WINDOW_DAYS: i64 = 30;

fn rate(v: &Value) -> String {
    v.as_f64()
        .map(|r| format!("{:.1} %", r * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// `GET /ui/reports`: who reported on which domain, and each report received.
pub async fn received(State(state): State<AppState>, RawQuery(query): RawQuery) -> UiResult {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(n, v)| (n, v.trim().to_string()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let params = Params::parse(
        serde_urlencoded::to_string(&pairs).ok(),
        &["domain", "reporter", "next"],
    )?;
    let now = now_ms();
    let domain = params
        .get("domain")
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase());
    let reporter = params.get("reporter").map(str::to_string);
    let since = (now - WINDOW_DAYS * DAY_MS).div_euclid(1000);
    let filter = ReportFilter {
        domain: domain.clone(),
        reporter: reporter.clone(),
        before_id: params.cursor()?,
        ..ReportFilter::default()
    };
    let for_summary = domain.clone();
    let (summary, mut page) = state
        .query(move |s| {
            Ok((
                s.received_summary(for_summary.as_deref(), since)?,
                s.received_reports(&filter, PAGE)?,
            ))
        })
        .await?;
    mark_owned(&state, &mut page.items);
    let mut body = format!(
        "<section class=\"card\"><form method=\"get\" action=\"/ui/reports\" class=\"search\">\
         <div><label for=\"domain\">Domain</label><input id=\"domain\" name=\"domain\" value=\"{}\" \
         placeholder=\"example.com\"></div><div><label for=\"reporter\">Reporter</label>\
         <input id=\"reporter\" name=\"reporter\" value=\"{}\" placeholder=\"org name or address\">\
         </div><div><button type=\"submit\" class=\"primary\">Show</button></div></form></section>",
        esc(domain.as_deref().unwrap_or("")),
        esc(reporter.as_deref().unwrap_or(""))
    );
    let _ = write!(
        body,
        "<div class=\"figures\"><div class=\"figure\"><div class=\"value\" id=\"report-count\">{}</div>\
         <div class=\"label\">reports, last {WINDOW_DAYS} days</div></div>\
         <div class=\"figure\"><div class=\"value\" id=\"report-messages\">{}</div>\
         <div class=\"label\">messages reported</div></div>\
         <div class=\"figure\"><div class=\"value\" id=\"report-pass-rate\">{}</div>\
         <div class=\"label\">DMARC pass</div></div></div>",
        val(&summary["reports"]),
        val(&summary["messages"]),
        rate(&summary["pass_rate"])
    );
    body.push_str(
        "<div class=\"grid\"><section class=\"card\"><h2>Per reporter</h2><table id=\"reporters\">\
         <tr><th>Reporter</th><th class=\"num\">Reports</th><th class=\"num\">Messages</th>\
         <th class=\"num\">DMARC pass</th></tr>",
    );
    for r in summary["reporters"].as_array().into_iter().flatten() {
        let org = r["org_name"].as_str().unwrap_or("");
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/reports?reporter={}\">{}</a><br><span class=\"muted\">{}</span></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            url(org),
            esc(org),
            val(&r["email"]),
            val(&r["reports"]),
            val(&r["messages"]),
            rate(&r["pass_rate"])
        );
    }
    body.push_str(
        "</table></section><section class=\"card\"><h2>Sources failing DMARC most</h2>\
         <table id=\"failing-sources\"><tr><th>Source IP</th><th class=\"num\">Messages</th></tr>",
    );
    for f in summary["top_failing_sources"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            val(&f["source_ip"]),
            val(&f["messages"])
        );
    }
    body.push_str(
        "</table></section></div><section class=\"card\"><h2>Reports</h2><table id=\"reports\">\
         <tr><th>Period (UTC)</th><th>Domain</th><th>Reporter</th><th class=\"num\">Messages</th>\
         <th class=\"num\">DMARC pass</th><th class=\"num\">Rows</th><th></th></tr>",
    );
    if page.items.is_empty() {
        body.push_str("<tr><td colspan=\"7\" class=\"muted\">No reports received.</td></tr>");
    }
    for r in &page.items {
        let id = r["id"].as_i64().unwrap_or(0);
        let begin = r["period"]["begin"].as_str().unwrap_or("");
        let owned = if r["owned"].as_bool() == Some(false) {
            " <span class=\"badge\">not ours</span>"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}{owned}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td><a href=\"/ui/reports/{id}\">rows</a></td></tr>",
            esc(begin.get(..10).unwrap_or(begin)),
            val(&r["domain"]),
            val(&r["org_name"]),
            val(&r["messages"]),
            rate(&r["pass_rate"]),
            val(&r["row_count"])
        );
    }
    body.push_str("</table>");
    if let Some(next) = page.next {
        let mut rest: Vec<(String, String)> =
            pairs.into_iter().filter(|(n, _)| n != "next").collect();
        rest.push(("next".into(), next.to_string()));
        let _ = write!(
            body,
            "<p class=\"pager\"><a id=\"next-page\" href=\"/ui/reports?{}\">Older reports →</a></p>",
            esc(&serde_urlencoded::to_string(&rest).unwrap_or_default())
        );
    }
    body.push_str("</section>");
    ok("DMARC reports received", "/ui/reports", &body)
}

/// `GET /ui/reports/{id}`: one report received, with its rows.
pub async fn one(State(state): State<AppState>, Path(id): Path<String>) -> UiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a report id")))?;
    let Some(mut r) = state.query(move |s| Ok(s.received_report(id)?)).await? else {
        return Err(ApiError::NotFound(format!("no report {id}")).into());
    };
    mark_owned(&state, std::slice::from_mut(&mut r));
    let errors: Vec<String> = r["errors"]
        .as_array()
        .map(|a| a.iter().map(val).collect())
        .unwrap_or_default();
    let fields: [(&str, String); 9] = [
        (
            "Reporter",
            format!("{} &lt;{}&gt;", val(&r["org_name"]), val(&r["email"])),
        ),
        (
            "Report id",
            format!("<code>{}</code>", val(&r["report_id"])),
        ),
        ("Domain", val(&r["domain"])),
        (
            "Period (UTC)",
            format!(
                "{} – {}",
                val(&r["period"]["begin"]),
                val(&r["period"]["end"])
            ),
        ),
        ("Received", val(&r["received_at"])),
        (
            "Policy published",
            format!("<code>{}</code>", esc(&r["policy"].to_string())),
        ),
        ("Messages", val(&r["messages"])),
        (
            "DMARC pass",
            format!("{} ({})", val(&r["dmarc_pass"]), rate(&r["pass_rate"])),
        ),
        ("Reporter's errors", errors.join("<br>")),
    ];
    let mut body = String::from("<section class=\"card\"><table class=\"fields\" id=\"fields\">");
    for (name, value) in fields {
        let _ = write!(body, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    body.push_str(
        "</table></section><section class=\"card\"><h2>Rows</h2><table id=\"rows\"><tr>\
         <th>Source IP</th><th class=\"num\">Count</th><th>Disposition</th><th>DKIM</th>\
         <th>SPF</th><th>Header From</th><th>Envelope From</th><th>Reasons</th></tr>",
    );
    for row in r["rows"].as_array().into_iter().flatten() {
        let reasons: Vec<String> = row["reasons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| format!("{} {}", val(&x["type"]), val(&x["comment"])))
                    .collect()
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            val(&row["source_ip"]),
            val(&row["count"]),
            val(&row["disposition"]),
            val(&row["dkim"]),
            val(&row["spf"]),
            val(&row["header_from"]),
            val(&row["envelope_from"]),
            reasons.join("<br>")
        );
    }
    body.push_str("</table></section>");
    ok(&format!("Report {id}"), "/ui/reports", &body)
}

/// `GET /ui/reports/sent`: the reports we sent (or are sending) for the last 30 days.
pub async fn sent(State(state): State<AppState>) -> UiResult {
    let now = now_ms();
    let reports = state
        .query(move |s| Ok(s.sent_reports(now - WINDOW_DAYS * DAY_MS, now + DAY_MS)?))
        .await?;
    let mut body = format!(
        "<section class=\"card\"><table id=\"sent\"><tr><th>Period (UTC)</th><th>Domain</th>\
         <th>State</th><th class=\"num\">Messages</th><th class=\"num\">Bytes</th>\
         <th class=\"num\">Attempts</th><th>Destinations</th><th>Detail</th></tr>{}",
        if reports.is_empty() {
            "<tr><td colspan=\"8\" class=\"muted\">No reports in the last 30 days.</td></tr>"
        } else {
            ""
        }
    );
    for r in &reports {
        let state_class = match r.state.as_str() {
            "sent" => " r-pass",
            "failed" => " r-fail",
            "pending" => " r-softfail",
            _ => "",
        };
        let _ =
            write!(
            body,
            "<tr><td>{} – {}</td><td>{}</td><td><span class=\"badge{state_class}\">{}</span></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{}</td></tr>",
            &format_rfc3339(r.period_begin)[..16].replace('T', " "),
            &format_rfc3339(r.period_end)[..16].replace('T', " "),
            esc(&r.domain),
            esc(&r.state),
            r.messages,
            r.bytes.map(|b| b.to_string()).unwrap_or_else(|| "—".into()),
            r.attempts,
            r.destinations.iter().map(|d| esc(d)).collect::<Vec<_>>().join("<br>"),
            esc(r.detail.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</table></section>");
    ok("DMARC reports sent", "/ui/reports/sent", &body)
}
