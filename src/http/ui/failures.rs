//! The failure-report pages: failure reports other receivers sent us (RFC 9991 / ARF, and
//! plain-text notices), searchable by domain, source address and words (the query of
//! `/v1/reports/failures`), and one report with the original header section as given.
//! Every value from the store is spliced through maud, which escapes it; links through
//! [`url_param`].

use super::super::handlers::Params;
use super::super::reports::mark_owned;
use super::html::{head, text, url_param};
use super::verdicts::{filled, next_query};
use super::{ok, UiResult};
use crate::http::{ApiError, AppState};
use crate::store::FailureFilter;
use axum::extract::{Path, RawQuery, State};
use maud::{html, Markup};

/// Reports per page.
const PAGE: usize = 50;

/// One search field of the form, filled with what was asked.
fn field(id: &str, label: &str, value: Option<&str>, hint: &str) -> Markup {
    html! {
        div {
            label for=(id) { (label) }
            input id=(id) name=(id) value=(value.unwrap_or("")) placeholder=(hint);
        }
    }
}

/// `GET /ui/reports/failures`: the newest first, filtered as asked.
pub async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> UiResult {
    let pairs = filled(query)?;
    let params = Params::parse(
        serde_urlencoded::to_string(&pairs).ok(),
        &["domain", "source_ip", "q", "next"],
    )?;
    let get = |n: &str| params.get(n).map(str::to_string);
    let filter = FailureFilter {
        domain: get("domain").map(|d| d.trim_end_matches('.').to_ascii_lowercase()),
        source_ip: get("source_ip"),
        q: get("q"),
        before_id: params.cursor()?,
        ..FailureFilter::default()
    };
    let shown = filter.clone();
    let mut page = state
        .query(move |s| Ok(s.failure_reports(&filter, PAGE)?))
        .await?;
    mark_owned(&state, &mut page.items);
    let body = html! {
        section class="card" {
            form method="get" action="/ui/reports/failures" class="search" {
                (field("domain", "Domain", shown.domain.as_deref(), "example.com"))
                (field("source_ip", "Source IP", shown.source_ip.as_deref(), "192.0.2.1"))
                (field("q", "Words", shown.q.as_deref(), "in headers, sender, subject"))
                div { button type="submit" class="primary" { "Search" } }
            }
        }
        section class="card" {
            h2 { "Failure reports" }
            table id="failure-reports" {
                (head(&["Received", "Domain", "Source IP", "Failure", "Alignment", "Result",
                    "From", "Subject", "Reporter", ""], 0..0))
                @if page.items.is_empty() {
                    tr { td colspan="10" class="muted" { "No failure reports." } }
                }
                @for r in &page.items {
                    tr {
                        td { (text(&r["received_at"])) }
                        td {
                            a href={ "/ui/reports/failures?domain="
                                (url_param(r["domain"].as_str().unwrap_or(""))) } {
                                (text(&r["domain"]))
                            }
                        }
                        td {
                            a href={ "/ui/reports/failures?source_ip="
                                (url_param(r["source_ip"].as_str().unwrap_or(""))) } {
                                (text(&r["source_ip"]))
                            }
                        }
                        td { (text(&r["auth_failure"])) }
                        td { (text(&r["identity_alignment"])) }
                        td { (text(&r["delivery_result"])) }
                        td { (text(&r["header_from"])) }
                        td { (text(&r["subject"])) }
                        td { (text(&r["reporter"])) }
                        td {
                            a href={ "/ui/reports/failures/" (r["id"].as_i64().unwrap_or_default()) } {
                                "headers"
                            }
                        }
                    }
                }
            }
            @if let Some(next) = page.next {
                p class="pager" {
                    a id="next-page" href={ "/ui/reports/failures?" (next_query(pairs, next)) } {
                        "Older reports →"
                    }
                }
            }
        }
    };
    ok("Failure reports", "/ui/reports/failures", body)
}

/// The fields of one failure report, in the order the page shows them.
const FIELDS: [(&str, &str); 17] = [
    ("Reporter", "reporter"),
    ("Received", "received_at"),
    ("Format", "format"),
    ("Failure", "auth_failure"),
    ("Domain", "domain"),
    ("Source IP", "source_ip"),
    ("Arrival", "arrival"),
    ("Envelope sender", "mail_from"),
    ("Envelope recipient", "rcpt_to"),
    ("From domain", "header_from"),
    ("Subject", "subject"),
    ("Message-ID", "original_message_id"),
    ("Delivery result", "delivery_result"),
    ("Identity alignment", "identity_alignment"),
    ("DKIM domain", "dkim_domain"),
    ("DKIM selector", "dkim_selector"),
    ("Incidents", "incidents"),
];

/// `GET /ui/reports/failures/{id}`: one report, its fields and the original headers.
pub async fn one(State(state): State<AppState>, Path(id): Path<String>) -> UiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a failure report id")))?;
    let Some(r) = state.query(move |s| Ok(s.failure_report(id)?)).await? else {
        return Err(ApiError::NotFound(format!("no failure report {id}")).into());
    };
    let body = html! {
        section class="card" {
            h2 { "Failure report" }
            table id="failure-report" {
                @for (label, key) in FIELDS {
                    tr { th { (label) } td { (text(&r[key])) } }
                }
                @for ar in r["authentication_results"].as_array().into_iter().flatten() {
                    tr { th { "Authentication-Results" } td { (text(ar)) } }
                }
            }
        }
        section class="card" {
            h2 { "Original headers (as the reporter gave them)" }
            pre id="failure-headers" { (text(&r["headers"])) }
        }
    };
    ok("Failure report", "/ui/reports/failures", body)
}
