//! The signing keys page: each configured key, the TXT record it needs, and what DNS
//! publishes now (the check `authmilter dns-check` makes, through the daemon's resolver).
//! Looking records up changes nothing, so it is a GET like the other pages.

use super::html::esc;
use super::{ok, UiResult};
use crate::http::AppState;
use crate::sign::dns_check::{check_published, DnsCheck};
use crate::sign::record::{record_name, zone_line};
use axum::extract::State;
use std::fmt::Write;

/// `GET /ui/keys`.
pub async fn keys(State(state): State<AppState>) -> UiResult {
    let snapshot = state.snapshot();
    let keys = snapshot.signer.keys();
    let mut body = String::from(
        "<section class=\"card\"><table id=\"keys\"><tr><th>Domain</th><th>Selector</th>\
         <th>Algorithm</th><th>Published record</th><th>Record to publish</th></tr>",
    );
    if keys.is_empty() {
        body.push_str(
            "<tr><td colspan=\"5\" class=\"muted\">No signing keys are configured \
             (<code>[[signing.keys]]</code>).</td></tr>",
        );
    }
    let dns = snapshot.verifier.dns();
    for k in keys {
        let record = k.key.dns_record();
        let (class, status, detail) =
            match check_published(dns, &k.domain, &k.selector, &k.key).await {
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
        let _ = write!(
            body,
            "<tr data-key=\"{sel}._domainkey.{dom}\"><td>{dom}</td><td>{sel}</td><td>{alg}</td>\
             <td><span class=\"badge {class}\">{status}</span><br><span class=\"muted\">{}</span></td>\
             <td><code>{}</code><pre>{}</pre></td></tr>",
            esc(&detail),
            esc(&record_name(&k.domain, &k.selector)),
            esc(&zone_line(&k.domain, &k.selector, &record)),
            dom = esc(&k.domain),
            sel = esc(&k.selector),
            alg = k.key.algorithm().record_k(),
        );
    }
    body.push_str(
        "</table></section><p class=\"muted\">Checked now through the daemon's resolver, as \
         <code>authmilter dns-check</code> does.</p>",
    );
    ok("Signing keys", "/ui/keys", &body)
}
