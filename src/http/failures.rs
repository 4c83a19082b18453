//! The routes over DMARC failure reports other receivers sent us (read scope; RFC 9991 / ARF
//! `auth-failure`, and plain-text notices): the list, searchable, and one report with the
//! original header section as the reporter gave it.

use super::error::ApiError;
use super::handlers::Params;
use super::reports::{one_by_id, page_answer};
use super::AppState;
use crate::dates::now_ms;
use crate::store::FailureFilter;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::Value;

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
    let page = state
        .query(move |s| Ok(s.failure_reports(&filter, limit)?))
        .await?;
    Ok(page_answer(&state, page))
}

/// `GET /v1/reports/failures/{id}`: one failure report with its header section.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    one_by_id(&state, &id, "failure report", |s, id| s.failure_report(id)).await
}
