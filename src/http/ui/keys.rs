//! The signing keys page: each configured key, the TXT record it needs, and what DNS
//! publishes now (the check `authmilter dns-check` makes, through the daemon's resolver).
//! Looking records up changes nothing, so it is a GET like the other pages.

use super::html::head;
use super::{ok, UiResult};
use crate::http::AppState;
use crate::sign::dns_check::{check_published, DnsCheck};
use crate::sign::record::{record_name, zone_line};
use axum::extract::State;
use maud::html;

/// `GET /ui/keys`.
pub async fn keys(State(state): State<AppState>) -> UiResult {
    let snapshot = state.snapshot();
    let keys = snapshot.signer.keys();
    let dns = snapshot.verifier.dns();
    let mut checks = Vec::with_capacity(keys.len());
    for k in keys {
        let check = match check_published(dns, &k.domain, &k.selector, &k.key).await {
            Ok(DnsCheck::Matches { .. }) => ("r-pass", "matches", String::new()),
            Ok(DnsCheck::Missing) => ("r-fail", "missing", "no TXT record".into()),
            Ok(DnsCheck::Revoked { record }) => ("r-fail", "revoked", record),
            Ok(DnsCheck::Differs { record, reason }) => {
                ("r-fail", "differs", format!("{reason}: {record}"))
            }
            Ok(DnsCheck::Several { count, one_matches }) => (
                "r-softfail",
                "several",
                format!(
                    "{count} TXT records, {}",
                    if one_matches {
                        "one matches"
                    } else {
                        "none matches"
                    }
                ),
            ),
            Err(e) => ("r-temperror", "lookup failed", e.to_string()),
        };
        checks.push((k, check));
    }
    let body = html! {
        section class="card" {
            table id="keys" {
                (head(&[
                    "Domain", "Selector", "Algorithm", "Published record", "Record to publish",
                ], 0..0))
                @if keys.is_empty() {
                    tr {
                        td colspan="5" class="muted" {
                            "No signing keys are configured (" code { "[[signing.keys]]" } ")."
                        }
                    }
                }
                @for (k, (class, status, detail)) in &checks {
                    tr data-key={ (k.selector) "._domainkey." (k.domain) } {
                        td { (k.domain) }
                        td { (k.selector) }
                        td { (k.key.algorithm().record_k()) }
                        td {
                            span class={ "badge " (class) } { (status) }
                            br;
                            span class="muted" { (detail) }
                        }
                        td {
                            code { (record_name(&k.domain, &k.selector)) }
                            pre { (zone_line(&k.domain, &k.selector, &k.key.dns_record())) }
                        }
                    }
                }
            }
        }
        p class="muted" {
            "Checked now through the daemon's resolver, as " code { "authmilter dns-check" }
            " does."
        }
    };
    ok("Signing keys", "/ui/keys", body)
}
