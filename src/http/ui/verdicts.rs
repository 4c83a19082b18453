//! The verdict pages: the search (the same filters and cursor as `GET /v1/verdicts`) and
//! one verdict's stored document, method by method.

use super::super::handlers::{verdict_filter, Params, VERDICT_FILTERS};
use super::html::{fields, head, lines, listed, text};
use super::{ok, UiError, UiResult};
use crate::dates::now_ms;
use crate::http::{ApiError, AppState};
use axum::extract::{Path, RawQuery, State};
use maud::{html, Markup};
use serde_json::Value;

/// Verdicts per search page.
const PAGE: usize = 50;

/// The search form's text fields: (parameter, label, placeholder).
const FIELDS: [(&str, &str, &str); 6] = [
    ("queue_id", "Queue id", "4XbQ1…"),
    ("message_id", "Message-ID", "<id@host>"),
    ("from_domain", "From domain", "example.com"),
    ("client_ip", "Client IP", "192.0.2.1"),
    ("since", "Since", "24h, 7d or RFC 3339"),
    ("until", "Until", "RFC 3339 or 1h"),
];
const VERDICTS: [&str; 4] = ["accept", "quarantine", "reject", "tempfail"];
const DMARC_RESULTS: [&str; 5] = ["pass", "fail", "none", "temperror", "permerror"];

/// The query's non-empty pairs (a submitted form sends every field, empty or not).
pub(super) fn filled(raw: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(n, v)| (n, v.trim().to_string()))
        .filter(|(_, v)| !v.is_empty())
        .collect())
}

/// The query of the next page: the same pairs with the cursor replaced.
pub(super) fn next_query(pairs: Vec<(String, String)>, next: impl ToString) -> String {
    let mut rest: Vec<(String, String)> = pairs.into_iter().filter(|(n, _)| n != "next").collect();
    rest.push(("next".into(), next.to_string()));
    serde_urlencoded::to_string(&rest).unwrap_or_default()
}

/// A `<select>` of `choices` after "any", the one `chosen` selected.
fn select(name: &str, label: &str, choices: &[&str], chosen: &str) -> Markup {
    html! {
        div {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="" { "any" }
                @for choice in choices {
                    option selected[chosen == *choice] { (choice) }
                }
            }
        }
    }
}

/// `GET /ui/verdicts`: the form, and the matching verdicts newest first, a page at a time.
pub async fn search(State(state): State<AppState>, RawQuery(query): RawQuery) -> UiResult {
    let pairs = filled(query)?;
    let mut known: Vec<&str> = VERDICT_FILTERS.to_vec();
    known.push("next");
    let params = Params::parse(serde_urlencoded::to_string(&pairs).ok(), &known)?;
    let get = |name: &str| params.get(name).unwrap_or("");
    let form = html! {
        section class="card" {
            form method="get" action="/ui/verdicts" class="search" {
                @for (name, label, hint) in FIELDS {
                    div {
                        label for=(name) { (label) }
                        input id=(name) name=(name) value=(get(name)) placeholder=(hint);
                    }
                }
                (select("verdict", "Verdict", &VERDICTS, get("verdict")))
                (select("dmarc", "DMARC", &DMARC_RESULTS, get("dmarc")))
                div { button type="submit" class="primary" { "Search" } }
            }
        }
    };
    let filter = verdict_filter(&params, now_ms())?;
    let page = state.query(move |s| Ok(s.list(&filter, PAGE)?)).await?;
    let body = html! {
        (form)
        section class="card" {
            table id="results" {
                (head(&[
                    "Received (UTC)", "Queue id", "Message-ID", "From domain", "Client IP",
                    "Verdict", "DMARC", "",
                ], 0..0))
                @if page.items.is_empty() {
                    tr { td colspan="8" class="muted" { "No verdicts match." } }
                }
                @for item in &page.items {
                    @let received = item["received_at"].as_str().unwrap_or("");
                    tr {
                        td { (received.get(..19).unwrap_or(received).replace('T', " ")) }
                        td { code { (text(&item["queue_id"])) } }
                        td { code { (text(&item["message_id"])) } }
                        td { (text(&item["from_domain"])) }
                        td { (text(&item["client_ip"])) }
                        td { (badge("v", &item["verdict"])) }
                        td { (badge("r", &item["dmarc"]["result"])) }
                        td {
                            a href={ "/ui/verdicts/" (item["id"].as_i64().unwrap_or(0)) } {
                                "detail"
                            }
                        }
                    }
                }
            }
            @if let Some(next) = page.next {
                p class="pager" {
                    a id="next-page" href={ "/ui/verdicts?" (next_query(pairs, next)) } {
                        "Older verdicts →"
                    }
                }
            }
        }
    };
    ok("Verdicts", "/ui/verdicts", body)
}

/// A result or verdict as a coloured label.
fn badge(kind: &str, v: &Value) -> Markup {
    html! {
        @match v.as_str() {
            Some(s) => {
                @let known = s.bytes().all(|b| b.is_ascii_lowercase());
                span class={ "badge" @if known { " " (kind) "-" (s) } } { (s) }
            }
            None => "—",
        }
    }
}

/// `GET /ui/verdicts/{id}`: the stored document, method by method.
pub async fn verdict(State(state): State<AppState>, Path(id): Path<String>) -> UiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| UiError(ApiError::BadRequest(format!("`{id}` is not a verdict id"))))?;
    let Some(v) = state.query(move |s| Ok(s.get(id)?)).await? else {
        return Err(ApiError::NotFound(format!("no verdict {id}")).into());
    };
    let list = |key: &str| -> Vec<Markup> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| html! { (text(x)) })
            .collect()
    };
    let smtp = &v["smtp"];
    let rows: [(&str, Markup); 13] = [
        ("Verdict", badge("v", &v["verdict"])),
        ("Received (UTC)", html! { (text(&v["received_at"])) }),
        ("Transport", html! { (text(&v["transport"])) }),
        ("Queue id", html! { code { (text(&v["queue_id"])) } }),
        ("Message-ID", html! { code { (text(&v["message_id"])) } }),
        ("From domain", html! { (text(&v["from_domain"])) }),
        ("Client IP", html! { (text(&v["client_ip"])) }),
        ("HELO", html! { (text(&v["helo"])) }),
        ("Envelope sender", html! { (text(&v["mail_from"])) }),
        (
            "Recipients",
            html! { (listed(list("rcpts"))) " (" (text(&v["rcpt_count"])) " in all)" },
        ),
        (
            "SMTP reply",
            html! {
                (text(&smtp["code"])) " " (text(&smtp["status"])) " " (text(&smtp["text"]))
            },
        ),
        ("Reasons", lines(list("reasons"))),
        ("Check took", html! { (text(&v["duration_ms"])) " ms" }),
    ];
    let body = html! {
        (fields(rows))
        section class="card" {
            h2 { "Results" }
            table id="methods" {
                (head(&["Method", "Result", "Domain", "Detail"], 0..0))
                (methods(&v))
            }
        }
        @for (title, key) in [
            ("Authentication-Results", "authentication_results"),
            ("Received-SPF", "received_spf"),
        ] {
            @if let Some(field) = v[key].as_str() {
                section class="card" {
                    h2 { (title) }
                    pre id=(key) { (field) }
                }
            }
        }
        section class="card" {
            h2 { "Stored document" }
            p class="muted" { "As " code { "GET /v1/verdicts/" (id) } " returns it." }
            pre { (serde_json::to_string_pretty(&v).unwrap_or_default()) }
        }
    };
    ok(&format!("Verdict {id}"), "/ui/verdicts", body)
}

/// The rows of the results table: each method's result, domain and detail.
fn methods(v: &Value) -> Markup {
    let (spf, arc, dmarc) = (&v["spf"], &v["arc"], &v["dmarc"]);
    let dkim = v["dkim"].as_array().map(Vec::as_slice).unwrap_or_default();
    let sealers = arc["sealers"].as_array().into_iter().flatten().map(text);
    html! {
        @if spf.is_object() {
            (row("SPF", &spf["result"], html! { (text(&spf["domain"])) }, html! {
                (text(&spf["reason"]))
                @if let Some(helo) = spf["helo_result"].as_str() { " (HELO: " (helo) ")" }
            }))
        }
        @if dkim.is_empty() {
            tr {
                td { "DKIM" }
                td { span class="badge" { "none" } }
                td {}
                td { "no signature" }
            }
        }
        @for d in dkim {
            (row("DKIM", &d["result"], html! { (text(&d["domain"])) }, html! {
                "selector " (text(&d["selector"])) ", " (text(&d["algorithm"])) (reason(d))
            }))
        }
        @if arc.is_object() {
            (row("ARC", &arc["result"], listed(sealers), html! { (text(&arc["reason"])) }))
        }
        @if dmarc.is_object() {
            (row("DMARC", &dmarc["result"], html! { (text(&dmarc["domain"])) }, html! {
                "policy " (text(&dmarc["policy"]))
                ", disposition " (text(&dmarc["disposition"])) (reason(dmarc))
            }))
        }
        @if !v["iprev"].is_null() {
            (row("iprev", &v["iprev"], html! {}, html! {}))
        }
    }
}

/// One row of the results table.
fn row(method: &str, result: &Value, domain: Markup, detail: Markup) -> Markup {
    html! {
        tr {
            td { (method) }
            td { (badge("r", result)) }
            td { (domain) }
            td { (detail) }
        }
    }
}

/// `: reason` when the result has one.
fn reason(result: &Value) -> Markup {
    html! {
        @if let Some(reason) = result["reason"].as_str() { ": " (reason) }
    }
}
