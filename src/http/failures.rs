//! The routes over DMARC failure reports other receivers sent us (read scope; RFC 9991 / ARF
//! `auth-failure`, and plain-text notices): the list, searchable, and one report with the
//! original header section as the reporter gave it.

use super::error::ApiError;
use super::handlers::Params;
use super::reports::mark_owned;
use super::AppState;
use crate::dates::now_ms;
use crate::store::FailureFilter;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

/// `GET /v1/reports/failures`: the newest first; `domain`, `source_ip`, `q` (words in the
/// headers, envelope sender, From domain, subject or reporter), `since`/`until` (when
/// received); `next` is the cursor for the following page.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(
        query,
        &[
            "domain",
            "source_ip",
            "q",
            "since",
            "until",
            "limit",
            "next",
        ],
    )?;
    let now = now_ms();
    let filter = FailureFilter {
        domain: params
            .get("domain")
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase()),
        source_ip: params.get("source_ip").map(|ip| ip.trim().to_string()),
        q: params
            .get("q")
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_string),
        since: params.time("since", now)?,
        until: params.time("until", now)?,
        before_id: params.cursor()?,
    };
    let limit = params.limit()?;
    let mut page = state
        .query(move |s| Ok(s.failure_reports(&filter, limit)?))
        .await?;
    mark_owned(&state, &mut page.items);
    Ok(Json(json!({
        "items": page.items,
        "next": page.next.map(|n| n.to_string()),
    })))
}

/// `GET /v1/reports/failures/{id}`: one failure report with its header section.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a failure report id")))?;
    match state.query(move |s| Ok(s.failure_report(id)?)).await? {
        Some(mut report) => {
            mark_owned(&state, std::slice::from_mut(&mut report));
            Ok(Json(report))
        }
        None => Err(ApiError::NotFound(format!("no failure report {id}"))),
    }
}
