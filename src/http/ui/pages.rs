//! The verdict pages: the overview of the last 24 hours, the search (the same filters and
//! cursor as `GET /v1/verdicts`) and one verdict's stored document.

use super::super::handlers::{verdict_filter, Params, VERDICT_FILTERS};
use super::html::{esc, percent, url, val, Text};
use super::{chart, ok, UiError, UiResult};
use crate::dates::{format_rfc3339, now_ms};
use crate::http::{ApiError, AppState};
use crate::store::{Failing, Overview};
use axum::extract::{Path, RawQuery, State};
use serde_json::Value;
use std::fmt::Write;

const HOUR_MS: i64 = 3_600_000;
/// Hours the overview covers (the current one included).
const HOURS: usize = 24;
/// Failing domains and addresses listed.
const TOP: usize = 10;
/// Verdicts per search page.
const PAGE: usize = 50;

/// `GET /ui/`.
pub async fn overview(State(state): State<AppState>) -> UiResult {
    let now = now_ms();
    let first_hour = now.div_euclid(HOUR_MS) * HOUR_MS - (HOURS as i64 - 1) * HOUR_MS;
    let o = state
        .query(move |s| Ok(s.overview(first_hour, now + 1, TOP)?))
        .await?;
    let (queries, errors) = crate::dns::stats::STATS.totals();
    let mut body = String::new();
    body.push_str("<div class=\"figures\">");
    figure(
        &mut body,
        "total-messages",
        &o.total.to_string(),
        "messages, last 24 h",
    );
    for verdict in ["accept", "quarantine", "reject", "tempfail"] {
        let n: u64 = o
            .hours
            .iter()
            .filter(|h| h.verdict == verdict)
            .map(|h| h.count)
            .sum();
        figure(
            &mut body,
            &format!("count-{verdict}"),
            &n.to_string(),
            verdict,
        );
    }
    figure(
        &mut body,
        "dns-error-rate",
        &percent(errors, queries),
        &format!("DNS lookups failed ({errors} of {queries} since start)"),
    );
    body.push_str("</div>");
    let _ = write!(
        body,
        "<section class=\"card\"><h2>Messages per hour by verdict (UTC)</h2>{}{}</section>",
        chart::hourly(&o.hours, first_hour, HOURS),
        chart::legend()
    );
    body.push_str(&rates(&o));
    body.push_str("<div class=\"grid\">");
    failing_table(
        &mut body,
        "failing-domains",
        "Top From domains failing DMARC",
        "From domain",
        "from_domain",
        &o.failing_domains,
    );
    failing_table(
        &mut body,
        "failing-ips",
        "Top source addresses failing DMARC",
        "Client IP",
        "client_ip",
        &o.failing_ips,
    );
    body.push_str("</div>");
    let _ = write!(
        body,
        "<p class=\"muted\">From {} to {}. Pass rates are of all messages in the window \
         (a message without the method's result counts as none). DNS figures are this \
         host's since it started (<code>/metrics</code>).</p>",
        format_rfc3339(o.since),
        format_rfc3339(now)
    );
    ok("Overview", "/ui/", &body)
}

fn figure(out: &mut String, id: &str, value: &str, label: &str) {
    let _ = write!(
        out,
        "<div class=\"figure\"><div class=\"value\" id=\"{id}\">{}</div>\
         <div class=\"label\">{}</div></div>",
        esc(value),
        esc(label)
    );
}

fn rates(o: &Overview) -> String {
    let mut out = String::from(
        "<section class=\"card\"><h2>Pass rates, last 24 h</h2><table><tr><th>Method</th>\
         <th class=\"num\">Pass</th><th class=\"num\">Messages</th><th class=\"num\">Rate</th>\
         <th>Results</th></tr>",
    );
    for m in &o.methods {
        let pass = m.count("pass");
        let total = m.total();
        let detail: Vec<String> = m
            .results
            .iter()
            .map(|(r, n)| format!("{} {n}", esc(r)))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{pass}</td><td class=\"num\">{total}</td>\
             <td class=\"num\" id=\"rate-{}\">{}</td><td>{}<span class=\"muted\">{}</span></td></tr>",
            m.method.to_ascii_uppercase(),
            m.method,
            percent(pass, total),
            chart::results_bar(m),
            detail.join(" · ")
        );
    }
    out.push_str("</table></section>");
    out
}

fn failing_table(
    out: &mut String,
    id: &str,
    title: &str,
    column: &str,
    param: &str,
    rows: &[Failing],
) {
    let _ = write!(
        out,
        "<section class=\"card\"><h2>{title}</h2><table id=\"{id}\"><tr><th>{column}</th>\
         <th class=\"num\">Failed</th><th class=\"num\">Messages</th></tr>"
    );
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"3\" class=\"muted\">None in the last 24 h.</td></tr>");
    }
    for f in rows {
        let _ = write!(
            out,
            "<tr><td><a href=\"/ui/verdicts?{param}={}&amp;dmarc=fail&amp;since=24h\">{}</a></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            url(&f.key),
            Text(&f.key),
            f.failed,
            f.messages
        );
    }
    out.push_str("</table></section>");
}

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
fn filled(raw: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    Ok(pairs
        .into_iter()
        .map(|(n, v)| (n, v.trim().to_string()))
        .filter(|(_, v)| !v.is_empty())
        .collect())
}

/// `GET /ui/verdicts`: the form, and the matching verdicts newest first, a page at a time.
pub async fn search(State(state): State<AppState>, RawQuery(query): RawQuery) -> UiResult {
    let pairs = filled(query)?;
    let mut known: Vec<&str> = VERDICT_FILTERS.to_vec();
    known.push("next");
    let params = Params::parse(serde_urlencoded::to_string(&pairs).ok(), &known)?;
    let get = |name: &str| params.get(name).unwrap_or("");
    let mut body = String::from(
        "<section class=\"card\"><form method=\"get\" action=\"/ui/verdicts\" class=\"search\">",
    );
    for (name, label, hint) in FIELDS {
        let _ = write!(
            body,
            "<div><label for=\"{name}\">{label}</label><input id=\"{name}\" name=\"{name}\" \
             value=\"{}\" placeholder=\"{}\"></div>",
            esc(get(name)),
            esc(hint)
        );
    }
    body.push_str("<div><label for=\"verdict\">Verdict</label><select id=\"verdict\" name=\"verdict\"><option value=\"\">any</option>");
    for v in VERDICTS {
        let selected = if get("verdict") == v { " selected" } else { "" };
        let _ = write!(body, "<option{selected}>{v}</option>");
    }
    body.push_str("</select></div><div><label for=\"dmarc\">DMARC</label><select id=\"dmarc\" name=\"dmarc\"><option value=\"\">any</option>");
    for r in DMARC_RESULTS {
        let selected = if get("dmarc") == r { " selected" } else { "" };
        let _ = write!(body, "<option{selected}>{r}</option>");
    }
    body.push_str(
        "</select></div><div><button type=\"submit\" class=\"primary\">Search</button></div>\
         </form></section>",
    );
    let filter = verdict_filter(&params, now_ms())?;
    let page = state.query(move |s| Ok(s.list(&filter, PAGE)?)).await?;
    body.push_str(
        "<section class=\"card\"><table id=\"results\"><tr><th>Received (UTC)</th>\
         <th>Queue id</th><th>Message-ID</th><th>From domain</th><th>Client IP</th>\
         <th>Verdict</th><th>DMARC</th><th></th></tr>",
    );
    if page.items.is_empty() {
        body.push_str("<tr><td colspan=\"8\" class=\"muted\">No verdicts match.</td></tr>");
    }
    for item in &page.items {
        let id = item["id"].as_i64().unwrap_or(0);
        let received = item["received_at"].as_str().unwrap_or("");
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td><a href=\"/ui/verdicts/{id}\">detail</a></td></tr>",
            esc(received.get(..19).unwrap_or(received)).replace('T', " "),
            val(&item["queue_id"]),
            val(&item["message_id"]),
            val(&item["from_domain"]),
            val(&item["client_ip"]),
            badge("v", &item["verdict"]),
            badge("r", &item["dmarc"]["result"]),
        );
    }
    body.push_str("</table>");
    if let Some(next) = page.next {
        let mut rest: Vec<(String, String)> =
            pairs.into_iter().filter(|(n, _)| n != "next").collect();
        rest.push(("next".into(), next.to_string()));
        let query = serde_urlencoded::to_string(&rest).unwrap_or_default();
        let _ = write!(
            body,
            "<p class=\"pager\"><a id=\"next-page\" href=\"/ui/verdicts?{}\">Older verdicts →</a></p>",
            esc(&query)
        );
    }
    body.push_str("</section>");
    ok("Verdicts", "/ui/verdicts", &body)
}

/// A result or verdict as a coloured label.
fn badge(kind: &str, v: &Value) -> String {
    match v.as_str() {
        Some(s) => {
            let class = if s.bytes().all(|b| b.is_ascii_lowercase()) {
                format!(" {kind}-{s}")
            } else {
                String::new()
            };
            format!("<span class=\"badge{class}\">{}</span>", esc(s))
        }
        None => "—".into(),
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
    let mut body = String::new();
    let rcpts: Vec<String> = v["rcpts"]
        .as_array()
        .map(|a| a.iter().map(val).collect())
        .unwrap_or_default();
    let rows: [(&str, String); 13] = [
        ("Verdict", badge("v", &v["verdict"])),
        ("Received (UTC)", val(&v["received_at"])),
        ("Transport", val(&v["transport"])),
        ("Queue id", format!("<code>{}</code>", val(&v["queue_id"]))),
        (
            "Message-ID",
            format!("<code>{}</code>", val(&v["message_id"])),
        ),
        ("From domain", val(&v["from_domain"])),
        ("Client IP", val(&v["client_ip"])),
        ("HELO", val(&v["helo"])),
        ("Envelope sender", val(&v["mail_from"])),
        (
            "Recipients",
            format!("{} ({} in all)", rcpts.join(", "), val(&v["rcpt_count"])),
        ),
        (
            "SMTP reply",
            format!(
                "{} {} {}",
                val(&v["smtp"]["code"]),
                val(&v["smtp"]["status"]),
                val(&v["smtp"]["text"])
            ),
        ),
        (
            "Reasons",
            v["reasons"]
                .as_array()
                .map(|a| a.iter().map(val).collect::<Vec<_>>().join("<br>"))
                .unwrap_or_default(),
        ),
        ("Check took", format!("{} ms", val(&v["duration_ms"]))),
    ];
    body.push_str("<section class=\"card\"><table class=\"fields\" id=\"fields\">");
    for (name, value) in rows {
        let _ = write!(body, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    body.push_str("</table></section><section class=\"card\"><h2>Results</h2><table id=\"methods\"><tr><th>Method</th><th>Result</th><th>Domain</th><th>Detail</th></tr>");
    let spf = &v["spf"];
    if spf.is_object() {
        let _ = write!(
            body,
            "<tr><td>SPF</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            badge("r", &spf["result"]),
            val(&spf["domain"]),
            val(&spf["reason"]),
            match spf["helo_result"].as_str() {
                Some(h) => format!(" (HELO: {})", esc(h)),
                None => String::new(),
            }
        );
    }
    if v["dkim"].as_array().is_none_or(|a| a.is_empty()) {
        body.push_str("<tr><td>DKIM</td><td><span class=\"badge\">none</span></td><td></td><td>no signature</td></tr>");
    }
    for d in v["dkim"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<tr><td>DKIM</td><td>{}</td><td>{}</td><td>selector {}, {}{}</td></tr>",
            badge("r", &d["result"]),
            val(&d["domain"]),
            val(&d["selector"]),
            val(&d["algorithm"]),
            match d["reason"].as_str() {
                Some(r) => format!(": {}", esc(r)),
                None => String::new(),
            }
        );
    }
    let arc = &v["arc"];
    if arc.is_object() {
        let sealers: Vec<String> = arc["sealers"]
            .as_array()
            .map(|a| a.iter().map(val).collect())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>ARC</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            badge("r", &arc["result"]),
            sealers.join(", "),
            val(&arc["reason"])
        );
    }
    let dmarc = &v["dmarc"];
    if dmarc.is_object() {
        let _ = write!(
            body,
            "<tr><td>DMARC</td><td>{}</td><td>{}</td><td>policy {}, disposition {}{}</td></tr>",
            badge("r", &dmarc["result"]),
            val(&dmarc["domain"]),
            val(&dmarc["policy"]),
            val(&dmarc["disposition"]),
            match dmarc["reason"].as_str() {
                Some(r) => format!(": {}", esc(r)),
                None => String::new(),
            }
        );
    }
    if !v["iprev"].is_null() {
        let _ = write!(
            body,
            "<tr><td>iprev</td><td>{}</td><td></td><td></td></tr>",
            badge("r", &v["iprev"])
        );
    }
    body.push_str("</table></section>");
    for (title, key) in [
        ("Authentication-Results", "authentication_results"),
        ("Received-SPF", "received_spf"),
    ] {
        if let Some(text) = v[key].as_str() {
            let _ = write!(
                body,
                "<section class=\"card\"><h2>{title}</h2><pre id=\"{key}\">{}</pre></section>",
                esc(text)
            );
        }
    }
    let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
    let _ = write!(
        body,
        "<section class=\"card\"><h2>Stored document</h2><p class=\"muted\">As \
         <code>GET /v1/verdicts/{id}</code> returns it.</p><pre>{}</pre></section>",
        esc(&pretty)
    );
    ok(&format!("Verdict {id}"), "/ui/verdicts", &body)
}
