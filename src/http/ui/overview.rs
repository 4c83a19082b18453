//! The overview: the last 24 hours' figures, the hourly chart by verdict, the pass rates per
//! method and the From domains and addresses failing DMARC most (each a link to the search).

use super::html::{head, percent, url_param};
use super::{chart, ok, UiResult};
use crate::dates::{format_rfc3339, now_ms};
use crate::http::AppState;
use crate::store::{Failing, Overview};
use axum::extract::State;
use maud::{html, Markup};

const HOUR_MS: i64 = 3_600_000;
/// Hours the overview covers (the current one included).
const HOURS: usize = 24;
/// Failing domains and addresses listed.
const TOP: usize = 10;

/// `GET /ui/`.
pub async fn overview(State(state): State<AppState>) -> UiResult {
    let now = now_ms();
    let first_hour = now.div_euclid(HOUR_MS) * HOUR_MS - (HOURS as i64 - 1) * HOUR_MS;
    let o = state
        .query(move |s| Ok(s.overview(first_hour, now + 1, TOP)?))
        .await?;
    let (queries, errors) = crate::dns::stats::STATS.totals();
    let per_verdict = |verdict: &str| -> u64 {
        o.hours
            .iter()
            .filter(|h| h.verdict == verdict)
            .map(|h| h.count)
            .sum()
    };
    let body = html! {
        div class="figures" {
            (figure("total-messages", &o.total.to_string(), "messages, last 24 h"))
            @for verdict in ["accept", "quarantine", "reject", "tempfail"] {
                (figure(&format!("count-{verdict}"), &per_verdict(verdict).to_string(), verdict))
            }
            (figure(
                "dns-error-rate",
                &percent(errors, queries),
                &format!("DNS lookups failed ({errors} of {queries} since start)"),
            ))
        }
        section class="card" {
            h2 { "Messages per hour by verdict (UTC)" }
            (chart::hourly(&o.hours, first_hour, HOURS))
            (chart::legend())
        }
        (rates(&o))
        div class="grid" {
            (failing_table(
                "failing-domains",
                "Top From domains failing DMARC",
                "From domain",
                "from_domain",
                &o.failing_domains,
            ))
            (failing_table(
                "failing-ips",
                "Top source addresses failing DMARC",
                "Client IP",
                "client_ip",
                &o.failing_ips,
            ))
        }
        p class="muted" {
            "From " (format_rfc3339(o.since)) " to " (format_rfc3339(now)) ". Pass rates are of \
             all messages in the window (a message without the method's result counts as \
             none). DNS figures are this host's since it started ("
            code { "/metrics" } ")."
        }
    };
    ok("Overview", "/ui/", body)
}

fn figure(id: &str, value: &str, label: &str) -> Markup {
    html! {
        div class="figure" {
            div class="value" id=(id) { (value) }
            div class="label" { (label) }
        }
    }
}

fn rates(o: &Overview) -> Markup {
    html! {
        section class="card" {
            h2 { "Pass rates, last 24 h" }
            table {
                (head(&["Method", "Pass", "Messages", "Rate", "Results"], 1..4))
                @for m in &o.methods {
                    @let (pass, total) = (m.count("pass"), m.total());
                    tr {
                        td { (m.method.to_ascii_uppercase()) }
                        td class="num" { (pass) }
                        td class="num" { (total) }
                        td class="num" id={ "rate-" (m.method) } { (percent(pass, total)) }
                        td {
                            (chart::results_bar(m))
                            span class="muted" {
                                @for (i, (result, n)) in m.results.iter().enumerate() {
                                    @if i > 0 { " · " }
                                    (result) " " (n)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn failing_table(id: &str, title: &str, column: &str, param: &str, rows: &[Failing]) -> Markup {
    html! {
        section class="card" {
            h2 { (title) }
            table id=(id) {
                (head(&[column, "Failed", "Messages"], 1..3))
                @if rows.is_empty() {
                    tr { td colspan="3" class="muted" { "None in the last 24 h." } }
                }
                @for f in rows {
                    tr {
                        td {
                            a href={
                                "/ui/verdicts?" (param) "=" (url_param(&f.key))
                                "&dmarc=fail&since=24h"
                            } { (f.key) }
                        }
                        td class="num" { (f.failed) }
                        td class="num" { (f.messages) }
                    }
                }
            }
        }
    }
}
