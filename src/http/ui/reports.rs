//! The DMARC report pages: reports other receivers sent us (the summary per reporter, the
//! list, one report's rows; the queries of `/v1/reports*`), and the reports we sent.

use super::super::handlers::Params;
use super::super::reports::mark_owned;
use super::html::{fields, head, lines, text, url_param};
use super::verdicts::{filled, next_query};
use super::{ok, UiResult};
use crate::dates::{format_rfc3339, now_ms};
use crate::http::{ApiError, AppState};
use crate::store::ReportFilter;
use axum::extract::{Path, RawQuery, State};
use maud::{html, Markup};
use serde_json::Value;

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
    let pairs = filled(query)?;
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
    let body = html! {
        section class="card" {
            form method="get" action="/ui/reports" class="search" {
                div {
                    label for="domain" { "Domain" }
                    input id="domain" name="domain" value=(domain.as_deref().unwrap_or(""))
                        placeholder="example.com";
                }
                div {
                    label for="reporter" { "Reporter" }
                    input id="reporter" name="reporter" value=(reporter.as_deref().unwrap_or(""))
                        placeholder="org name or address";
                }
                div { button type="submit" class="primary" { "Show" } }
            }
        }
        @if let Some(d) = &domain {
            p id="readiness-link" {
                a href={ "/ui/reports/readiness?domain=" (url_param(d)) } {
                    "Enforcement readiness of " (d) " →"
                }
            }
        }
        div class="figures" {
            div class="figure" {
                div class="value" id="report-count" { (text(&summary["reports"])) }
                div class="label" { "reports, last " (WINDOW_DAYS) " days" }
            }
            div class="figure" {
                div class="value" id="report-messages" { (text(&summary["messages"])) }
                div class="label" { "messages reported" }
            }
            div class="figure" {
                div class="value" id="report-pass-rate" { (rate(&summary["pass_rate"])) }
                div class="label" { "DMARC pass" }
            }
        }
        div class="grid" {
            section class="card" {
                h2 { "Per reporter" }
                table id="reporters" {
                    (head(&["Reporter", "Reports", "Messages", "DMARC pass"], 1..4))
                    @for r in summary["reporters"].as_array().into_iter().flatten() {
                        @let org = r["org_name"].as_str().unwrap_or("");
                        tr {
                            td {
                                a href={ "/ui/reports?reporter=" (url_param(org)) } { (org) }
                                br;
                                span class="muted" { (text(&r["email"])) }
                            }
                            td class="num" { (text(&r["reports"])) }
                            td class="num" { (text(&r["messages"])) }
                            td class="num" { (rate(&r["pass_rate"])) }
                        }
                    }
                }
            }
            section class="card" {
                h2 { "Sources failing DMARC most" }
                table id="failing-sources" {
                    (head(&["Source IP", "Messages"], 1..2))
                    @for f in summary["top_failing_sources"].as_array().into_iter().flatten() {
                        tr {
                            td { (text(&f["source_ip"])) }
                            td class="num" { (text(&f["messages"])) }
                        }
                    }
                }
            }
        }
        section class="card" {
            h2 { "Reports" }
            table id="reports" {
                (head(&[
                    "Period (UTC)", "Domain", "Reporter", "Messages", "DMARC pass", "Rows", "",
                ], 3..6))
                @if page.items.is_empty() {
                    tr { td colspan="7" class="muted" { "No reports received." } }
                }
                @for r in &page.items {
                    @let begin = r["period"]["begin"].as_str().unwrap_or("");
                    tr {
                        td { (begin.get(..10).unwrap_or(begin)) }
                        td {
                            (text(&r["domain"]))
                            @if r["owned"].as_bool() == Some(false) {
                                " " span class="badge" { "not ours" }
                            }
                        }
                        td { (text(&r["org_name"])) }
                        td class="num" { (text(&r["messages"])) }
                        td class="num" { (rate(&r["pass_rate"])) }
                        td class="num" { (text(&r["row_count"])) }
                        td { a href={ "/ui/reports/" (r["id"].as_i64().unwrap_or(0)) } { "rows" } }
                    }
                }
            }
            @if let Some(next) = page.next {
                p class="pager" {
                    a id="next-page" href={ "/ui/reports?" (next_query(pairs, next)) } {
                        "Older reports →"
                    }
                }
            }
        }
    };
    ok("DMARC reports received", "/ui/reports", body)
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
    let errors = r["errors"].as_array().into_iter().flatten().map(text);
    let rows: [(&str, Markup); 9] = [
        (
            "Reporter",
            html! { (text(&r["org_name"])) " <" (text(&r["email"])) ">" },
        ),
        ("Report id", html! { code { (text(&r["report_id"])) } }),
        ("Domain", html! { (text(&r["domain"])) }),
        (
            "Period (UTC)",
            html! { (text(&r["period"]["begin"])) " – " (text(&r["period"]["end"])) },
        ),
        ("Received", html! { (text(&r["received_at"])) }),
        (
            "Policy published",
            html! { code { (r["policy"].to_string()) } },
        ),
        ("Messages", html! { (text(&r["messages"])) }),
        (
            "DMARC pass",
            html! { (text(&r["dmarc_pass"])) " (" (rate(&r["pass_rate"])) ")" },
        ),
        ("Reporter's errors", lines(errors)),
    ];
    let body = html! {
        (fields(rows))
        section class="card" {
            h2 { "Rows" }
            table id="rows" {
                (head(&[
                    "Source IP", "Count", "Disposition", "DKIM", "SPF", "Header From",
                    "Envelope From", "Reasons",
                ], 1..2))
                @for row in r["rows"].as_array().into_iter().flatten() {
                    @let reasons = row["reasons"].as_array().into_iter().flatten().map(|x| {
                        html! { (text(&x["type"])) " " (text(&x["comment"])) }
                    });
                    tr {
                        td { (text(&row["source_ip"])) }
                        td class="num" { (text(&row["count"])) }
                        td { (text(&row["disposition"])) }
                        td { (text(&row["dkim"])) }
                        td { (text(&row["spf"])) }
                        td { (text(&row["header_from"])) }
                        td { (text(&row["envelope_from"])) }
                        td { (lines(reasons)) }
                    }
                }
            }
        }
    };
    ok(&format!("Report {id}"), "/ui/reports", body)
}

/// `2026-12-06 13:00` for a time in Unix ms.
fn minute(ms: i64) -> String {
    format_rfc3339(ms)[..16].replace('T', " ")
}

/// `GET /ui/reports/sent`: the reports we sent (or are sending) for the last 30 days.
pub async fn sent(State(state): State<AppState>) -> UiResult {
    let now = now_ms();
    let reports = state
        .query(move |s| Ok(s.sent_reports(now - WINDOW_DAYS * DAY_MS, now + DAY_MS)?))
        .await?;
    let body = html! {
        section class="card" {
            table id="sent" {
                (head(&[
                    "Period (UTC)", "Domain", "State", "Messages", "Bytes", "Attempts",
                    "Destinations", "Detail",
                ], 3..6))
                @if reports.is_empty() {
                    tr { td colspan="8" class="muted" { "No reports in the last 30 days." } }
                }
                @for r in &reports {
                    @let state_class = match r.state.as_str() {
                        "sent" => " r-pass",
                        "failed" => " r-fail",
                        "pending" => " r-softfail",
                        _ => "",
                    };
                    tr {
                        td { (minute(r.period_begin)) " – " (minute(r.period_end)) }
                        td { (r.domain) }
                        td { span class={ "badge" (state_class) } { (r.state) } }
                        td class="num" { (r.messages) }
                        td class="num" {
                            @match r.bytes { Some(b) => (b), None => "—" }
                        }
                        td class="num" { (r.attempts) }
                        td { (lines(&r.destinations)) }
                        td { (r.detail.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    };
    ok("DMARC reports sent", "/ui/reports/sent", body)
}
