//! The failure-report pages: failure reports other receivers sent us (RFC 9991 / ARF, and
//! plain-text notices), searchable by domain, source address and words (the query of
//! `/v1/reports/failures`), and one report with the original header section as given.
//! Every value from the store goes through `esc`/`val`; links through `url`.

use super::super::handlers::Params;
use super::super::reports::mark_owned;
use super::html::{esc, url, val};
use super::{ok, UiResult};
use crate::http::{ApiError, AppState};
use crate::store::FailureFilter;
use axum::extract::{Path, RawQuery, State};
use std::fmt::Write;

/// Reports per page.
const PAGE: usize = 50;

/// `GET /ui/reports/failures`: the newest first, filtered as asked.
pub async fn list(State(state): State<AppState>, RawQuery(query): RawQuery) -> UiResult {
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
    let field = |id: &str, label: &str, value: &Option<String>, hint: &str| {
        format!(
            "<div><label for=\"{id}\">{label}</label><input id=\"{id}\" name=\"{id}\" \
             value=\"{}\" placeholder=\"{hint}\"></div>",
            esc(value.as_deref().unwrap_or(""))
        )
    };
    let mut body = format!(
        "<section class=\"card\"><form method=\"get\" action=\"/ui/reports/failures\" \
         class=\"search\">{}{}{}<div><button type=\"submit\" class=\"primary\">Search</button>\
         </div></form></section><section class=\"card\"><h2>Failure reports</h2>\
         <table id=\"failure-reports\"><tr><th>Received</th><th>Domain</th><th>Source IP</th>\
         <th>Failure</th><th>Alignment</th><th>Result</th><th>From</th><th>Subject</th>\
         <th>Reporter</th><th></th></tr>",
        field("domain", "Domain", &shown.domain, "example.com"),
        field("source_ip", "Source IP", &shown.source_ip, "192.0.2.1"),
        field("q", "Words", &shown.q, "in headers, sender, subject"),
    );
    if page.items.is_empty() {
        body.push_str("<tr><td colspan=\"10\" class=\"muted\">No failure reports.</td></tr>");
    }
    for r in &page.items {
        let id = r["id"].as_i64().unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td><a href=\"/ui/reports/failures?domain={}\">{}</a></td>\
             <td><a href=\"/ui/reports/failures?source_ip={}\">{}</a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"/ui/reports/failures/{id}\">headers</a></td></tr>",
            val(&r["received_at"]),
            url(r["domain"].as_str().unwrap_or("")),
            val(&r["domain"]),
            url(r["source_ip"].as_str().unwrap_or("")),
            val(&r["source_ip"]),
            val(&r["auth_failure"]),
            val(&r["identity_alignment"]),
            val(&r["delivery_result"]),
            val(&r["header_from"]),
            val(&r["subject"]),
            val(&r["reporter"]),
        );
    }
    body.push_str("</table>");
    if let Some(next) = page.next {
        let mut rest: Vec<(String, String)> =
            pairs.into_iter().filter(|(n, _)| n != "next").collect();
        rest.push(("next".into(), next.to_string()));
        let _ = write!(
            body,
            "<p class=\"pager\"><a id=\"next-page\" href=\"/ui/reports/failures?{}\">Older \
             reports →</a></p>",
            esc(&serde_urlencoded::to_string(&rest).unwrap_or_default())
        );
    }
    body.push_str("</section>");
    ok("Failure reports", "/ui/reports/failures", &body)
}

/// `GET /ui/reports/failures/{id}`: one report, its fields and the original headers.
pub async fn one(State(state): State<AppState>, Path(id): Path<String>) -> UiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a failure report id")))?;
    let Some(r) = state.query(move |s| Ok(s.failure_report(id)?)).await? else {
        return Err(ApiError::NotFound(format!("no failure report {id}")).into());
    };
    let mut body = String::from(
        "<section class=\"card\"><h2>Failure report</h2><table id=\"failure-report\">",
    );
    for (label, key) in [
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
    ] {
        let _ = write!(body, "<tr><th>{label}</th><td>{}</td></tr>", val(&r[key]));
    }
    for ar in r["authentication_results"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<tr><th>Authentication-Results</th><td>{}</td></tr>",
            val(ar)
        );
    }
    let _ = write!(
        body,
        "</table></section><section class=\"card\"><h2>Original headers (as the reporter gave \
         them)</h2><pre id=\"failure-headers\">{}</pre></section>",
        val(&r["headers"])
    );
    ok("Failure report", "/ui/reports/failures", &body)
}
