//! The enforcement-readiness page (`/ui/reports/readiness`): one domain's sending sources
//! classed aligned / fixable / failing, and what `p=quarantine` or `p=reject` would hold or
//! refuse today; the same view as `GET /v1/reports/readiness` (`report::readiness`).

use super::super::handlers::Params;
use super::super::reports::readiness_of;
use super::html::{head, listed, percent, url_param};
use super::verdicts::filled;
use super::{ok, UiResult};
use crate::dates::now_ms;
use crate::http::AppState;
use crate::report::readiness::{Class, Readiness};
use axum::extract::{RawQuery, State};
use maud::{html, Markup};
use std::collections::BTreeSet;

const PATH: &str = "/ui/reports/readiness";

fn badge(class: Class) -> Markup {
    let colour = match class {
        Class::Aligned => "r-pass",
        Class::Fixable => "r-softfail",
        Class::Failing => "r-fail",
    };
    html! { span class={ "badge " (colour) } { (class.as_str()) } }
}

/// `GET /ui/reports/readiness[?domain=D&since=30d]`: the form (with the owned domains as
/// links), and the view of the domain asked for.
pub async fn readiness(State(state): State<AppState>, RawQuery(query): RawQuery) -> UiResult {
    let pairs = filled(query)?;
    let params = Params::parse(
        serde_urlencoded::to_string(&pairs).ok(),
        &["domain", "since"],
    )?;
    let domain = params
        .get("domain")
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase());
    let since_text = params.get("since").unwrap_or("30d").to_string();
    let since = params.time("since", now_ms())?;
    let owned = state.snapshot().config.reports.owned_domains.clone();
    let view = match domain.clone() {
        Some(d) => Some(readiness_of(&state, d, since).await?),
        None => None,
    };
    let body = html! {
        section class="card" {
            form method="get" action=(PATH) class="search" {
                div {
                    label for="domain" { "Domain" }
                    input id="domain" name="domain" value=(domain.as_deref().unwrap_or(""))
                        placeholder="example.com";
                }
                div {
                    label for="since" { "Since" }
                    input id="since" name="since" value=(since_text)
                        placeholder="30d, or 2026-11-01T00:00:00Z";
                }
                div { button type="submit" class="primary" { "Show" } }
            }
            @if !owned.is_empty() {
                p class="muted" id="owned-domains" {
                    "Owned domains: "
                    (listed(owned.iter().map(|d| html! {
                        a href={ (PATH) "?domain=" (url_param(d)) } { (d) }
                    })))
                }
            }
        }
        @if let Some(view) = &view {
            (view_markup(view))
        }
    };
    let title = match &domain {
        Some(d) => format!("Enforcement readiness of {d}"),
        None => "Enforcement readiness".into(),
    };
    ok(&title, PATH, body)
}

/// The domains separated by commas, or `—` when there are none.
fn domains(set: &BTreeSet<String>) -> Markup {
    match set.is_empty() {
        true => html! { "—" },
        false => listed(set),
    }
}

fn view_markup(v: &Readiness) -> Markup {
    let total = v.messages();
    let loss = v.loss();
    let reported: u64 = v.sources.iter().map(|s| s.reported).sum();
    let seen: u64 = v.sources.iter().map(|s| s.seen_here).sum();
    html! {
        p class="muted" id="period" {
            (crate::dates::format_rfc3339(v.since)) " to " (crate::dates::format_rfc3339(v.until))
            ": " (reported) " messages in " (v.reports) " aggregate reports received, "
            (seen) " checked by this filter."
        }
        div class="figures" {
            div class="figure" {
                div class="value" id="readiness-messages" { (total) }
                div class="label" { "messages" }
            }
            div class="figure" {
                div class="value" id="readiness-pass-rate" { (percent(v.aligned(), total)) }
                div class="label" { "pass DMARC" }
            }
            div class="figure" {
                div class="value" id="loss-quarantine" { (percent(loss, total)) }
                div class="label" { (loss) " messages quarantined under p=quarantine" }
            }
            div class="figure" {
                div class="value" id="loss-reject" { (percent(loss, total)) }
                div class="label" { (loss) " messages rejected under p=reject" }
            }
        }
        section class="card" {
            h2 { "Sending sources" }
            table id="sources" {
                (head(&[
                    "Source", "Reverse name", "SPF domains", "DKIM domains", "Messages",
                    "DMARC pass", "Fixable", "Failing", "Class", "Loss if fixed",
                ], 4..8))
                @if v.sources.is_empty() {
                    tr { td colspan="10" class="muted" { "No mail seen for this domain in the period." } }
                }
                @for s in &v.sources {
                    tr id={ "source-" (s.ip) } {
                        td { code { (s.ip) } }
                        td { (s.reverse_name.as_deref().unwrap_or("—")) }
                        td { (domains(&s.spf_domains)) }
                        td { (domains(&s.dkim_domains)) }
                        td class="num" { (s.messages()) }
                        td class="num" { (percent(s.aligned, s.messages())) }
                        td class="num" { (s.fixable) }
                        td class="num" { (s.failing) }
                        td { (badge(s.class())) }
                        td {
                            @if s.fixable > 0 {
                                @let left = v.loss_after_fixing(s);
                                (left) " (" (percent(left, total)) ")"
                            } @else { "—" }
                        }
                    }
                }
            }
            p class="muted" {
                "aligned: DMARC passes. fixable: SPF or DKIM passes, but for another domain \
                 (align the return path or sign with the domain). failing: nothing \
                 authenticates (forwarding, spoofing). Loss if fixed: what p=quarantine or \
                 p=reject would still take once that source's fixable mail aligns."
            }
        }
    }
}
