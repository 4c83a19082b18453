//! One handler per route. Parameters come in as raw pairs and are checked here, so an unknown
//! or malformed parameter is a 400 with a message that names it.

use super::error::ApiError;
use super::{AppState, Cost};
use crate::auth::{normalize_mail_from, Connection};
use crate::check::check_message;
use crate::dates::{format_rfc3339, now_ms, parse_time};
use crate::sign::{from_domain, Authorisation, DomainKey, SignError};
use crate::store::{Envelope, Filter, GroupBy, Record, Transport};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// Most verdicts (or reports) on one page.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// Query parameters as `(name, value)` pairs, checked against the names a route knows.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(raw: Option<String>, known: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
        if let Some((name, _)) = pairs.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter `{name}` (known: {})",
                known.join(", ")
            )));
        }
        Ok(Params(pairs))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// `limit`: items per page.
    pub(super) fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("`limit` must be between 1 and {MAX_LIMIT}"))
                }),
        }
    }

    /// `next`: the cursor a previous page gave.
    pub(super) fn cursor(&self) -> Result<Option<i64>, ApiError> {
        self.get("next")
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest("`next` is not a cursor from a previous page".into())
                })
            })
            .transpose()
    }

    pub(super) fn time(&self, name: &str, now: i64) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                parse_time(v, now).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "`{name}`: `{v}` is not RFC 3339, Unix seconds or a duration like 24h"
                    ))
                })
            })
            .transpose()
    }
}

/// The message body: not empty, within the size limit, CRLF line endings.
fn message_body(body: Result<Bytes, BytesRejection>, max: usize) -> Result<Vec<u8>, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(max),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body must be the message (RFC 5322)".into(),
        ));
    }
    Ok(to_crlf(&body))
}

/// Accepts LF-only messages (as files are often saved): mail on the wire is CRLF.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    if raw.windows(2).any(|w| w == b"\r\n") {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for &b in raw {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the verdict store (if configured) answers.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = match state.read(Cost::Lookup, |s| Ok(s.schema_version()?)).await {
        Ok(_) => "ok",
        Err(ApiError::StoreDisabled) => "disabled",
        // A database that does not answer (PostgreSQL): 503, mail still flows.
        Err(e @ ApiError::StoreUnreachable(_)) => return Err(e),
        Err(e) => return Err(ApiError::Internal(format!("not ready: {e}"))),
    };
    Ok(Json(json!({"status": "ready", "store": store})))
}

/// `POST /v1/check`: the `check --json` document, recorded with transport `http`.
pub async fn check(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query, &["ip", "helo", "mail_from", "rcpt"])?;
    let snapshot = state.snapshot();
    let raw = message_body(body, snapshot.config.limits.max_message_size)?;
    // The body and the transaction's copy of it, against the budget every door shares.
    let mut charge = snapshot.budget().charge();
    if !charge.grow(raw.len().saturating_mul(2)) {
        return Err(ApiError::Unavailable);
    }
    let ip = match params.get("ip") {
        Some(ip) => ip
            .parse::<IpAddr>()
            .map_err(|_| ApiError::BadRequest(format!("`ip`: `{ip}` is not an IP address")))?,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let conn = Connection {
        ip,
        helo: params.get("helo").map(str::to_string),
        authenticated: None,
    };
    let mail_from = params
        .get("mail_from")
        .map(normalize_mail_from)
        .unwrap_or_default();
    let rcpts = params.all("rcpt");
    let started = Instant::now();
    let mut decision = check_message(
        &snapshot.verifier,
        &snapshot.policy,
        &conn,
        &mail_from,
        &raw,
    )
    .await;
    if let Some(bimi) = &snapshot.bimi {
        crate::check::add_bimi(bimi, &mut decision, &conn, &raw).await;
    }
    let envelope = Envelope {
        queue_id: None,
        mail_from: Some(&mail_from),
        rcpts: &rcpts,
        more_rcpts: 0,
    };
    let record = Record::new(
        Transport::Http,
        &conn,
        envelope,
        &raw,
        &decision,
        started.elapsed(),
    );
    let document = record.document.clone();
    state.journal().record(record, &decision.outcome);
    Ok(Json(document))
}

/// `POST /v1/sign`: the signed message, or (`output=fields`) just the signatures as JSON.
pub async fn sign(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(query, &["domain", "selector", "output"])?;
    let fields_only = match params.get("output") {
        None | Some("message") => false,
        Some("fields") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "`output`: `{other}` is neither `message` nor `fields`"
            )))
        }
    };
    let snapshot = state.snapshot();
    let message = message_body(body, snapshot.config.limits.max_message_size)?;
    let signer = &snapshot.signer;
    let keys: Vec<&DomainKey> = match params.get("domain") {
        Some(domain) => {
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let selector = params.get("selector");
            let keys: Vec<&DomainKey> = signer
                .keys()
                .iter()
                .filter(|k| k.domain == domain && selector.is_none_or(|s| k.selector == s))
                .collect();
            if keys.is_empty() {
                return Err(ApiError::Unprocessable(format!(
                    "no signing key for domain {domain}{}",
                    selector
                        .map(|s| format!(" selector {s}"))
                        .unwrap_or_default()
                )));
            }
            keys
        }
        None if params.get("selector").is_some() => {
            return Err(ApiError::BadRequest("`selector` needs `domain`".into()))
        }
        None => {
            let from = from_domain(&message).ok_or_else(|| {
                ApiError::Unprocessable("no single From address to choose the keys by".into())
            })?;
            match signer.authorise(&from, None) {
                Authorisation::Sign(keys) => keys,
                _ => {
                    return Err(ApiError::Unprocessable(format!(
                        "no signing key for {from}"
                    )))
                }
            }
        }
    };
    let values = signer.sign_with(&keys, &message).map_err(|e| match e {
        SignError::Crypto(m) => ApiError::Internal(format!("signing failed: {m}")),
        other => ApiError::Unprocessable(other.to_string()),
    })?;
    if fields_only {
        let signatures: Vec<Value> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| {
                json!({"domain": k.domain, "selector": k.selector, "field": format!("DKIM-Signature: {v}")})
            })
            .collect();
        return Ok(Json(json!({"signatures": signatures})).into_response());
    }
    let mut out = Vec::with_capacity(message.len() + 1024);
    for v in &values {
        out.extend_from_slice(format!("DKIM-Signature: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(&message);
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], out).into_response())
}

/// `GET /v1/verdicts`: newest first, `next` is the cursor for the following page.
pub async fn verdicts(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(
        query,
        &[
            "since",
            "until",
            "queue_id",
            "message_id",
            "from_domain",
            "client_ip",
            "verdict",
            "dmarc",
            "host",
            "limit",
            "next",
        ],
    )?;
    let limit = params.limit()?;
    let filter = verdict_filter(&params, now_ms())?;
    // By queue id, Message-ID or client address: an index finds the few rows.
    let cost = match (&filter.queue_id, &filter.message_id, &filter.client_ip) {
        (None, None, None) => Cost::Scan,
        _ => Cost::Lookup,
    };
    let page = state
        .read(cost, move |s| Ok(s.list(&filter, limit)?))
        .await?;
    Ok(Json(json!({
        "items": page.items,
        "next": page.next.map(|n| n.to_string()),
    })))
}

/// The parameters of `GET /v1/verdicts` (and the dashboard's search) in [`Filter`] form.
pub(super) const VERDICT_FILTERS: [&str; 9] = [
    "since",
    "until",
    "queue_id",
    "message_id",
    "from_domain",
    "client_ip",
    "verdict",
    "dmarc",
    "host",
];

pub(super) fn verdict_filter(params: &Params, now: i64) -> Result<Filter, ApiError> {
    let text = |name: &str| params.get(name).map(str::to_string);
    Ok(Filter {
        since: params.time("since", now)?,
        until: params.time("until", now)?,
        queue_id: text("queue_id"),
        message_id: text("message_id"),
        from_domain: text("from_domain").map(|d| d.to_ascii_lowercase()),
        client_ip: text("client_ip"),
        verdict: text("verdict"),
        dmarc: text("dmarc"),
        host: text("host"),
        before_id: params.cursor()?,
    })
}

/// `GET /v1/verdicts/{id}`.
pub async fn verdict(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a verdict id")))?;
    match state.read(Cost::Lookup, move |s| Ok(s.get(id)?)).await? {
        Some(item) => Ok(Json(item)),
        None => Err(ApiError::NotFound(format!("no verdict {id}"))),
    }
}

/// `GET /v1/stats`: counts since a time (default: the last 24 hours), grouped, each group
/// split by DMARC result.
pub async fn stats(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query, &["since", "group_by", "from_domain"])?;
    let now = now_ms();
    let since = params.time("since", now)?.unwrap_or(now - 86_400_000);
    let name = params.get("group_by").unwrap_or("verdict").to_string();
    let group_by = GroupBy::parse(&name).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`group_by`: `{name}` is not one of from_domain, verdict, dmarc, host"
        ))
    })?;
    let domain = params.get("from_domain").map(str::to_ascii_lowercase);
    let mut counts = state
        .query(move |s| Ok(s.stats(Some(since), group_by, domain.as_deref())?))
        .await?;
    counts["since"] = format_rfc3339(since).into();
    counts["group_by"] = name.into();
    Ok(Json(counts))
}

/// `POST /v1/reload`: the same as SIGHUP, answered once the reload is done: 200 when the new
/// configuration is in force, 422 naming the problem when it is broken (the old one stays).
pub async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (answer, outcome) = tokio::sync::oneshot::channel();
    state
        .inner
        .reload
        .try_send(answer)
        .map_err(|_| ApiError::Unavailable)?;
    match outcome.await {
        Ok(Ok(())) => Ok(Json(json!({"status": "reloaded"}))),
        Ok(Err(problem)) => Err(ApiError::Unprocessable(format!(
            "reload failed, the previous configuration stays in force: {problem}"
        ))),
        Err(_) => Err(ApiError::Unavailable),
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let journal = state.journal();
    let mut text = journal.metrics().render(journal.queue_depth());
    crate::dns::stats::STATS.render(&mut text);
    crate::bimi::stats::STATS.render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route (see /openapi.json)".into())
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
