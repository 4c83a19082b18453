//! The routes over DMARC aggregate reports other receivers sent us (read scope): the list,
//! one report with its rows, and a summary per domain. Periods are the reports' own
//! (`since`/`until` select reports whose period overlaps them); each report says whether its
//! domain is one of `reports.owned_domains` (`owned`), as the configuration says now. The
//! enforcement-readiness view of one domain (`report::readiness`) is here too.

use super::error::ApiError;
use super::handlers::Params;
use super::AppState;
use crate::dates::now_ms;
use crate::report::readiness::{Readiness, DEFAULT_PERIOD_MS};
use crate::report::received::ImportSettings;
use crate::store::{Page, ReportFilter, Store, StoreError};
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

/// The summary's default window: a week of daily reports.
const DEFAULT_SUMMARY_MS: i64 = 7 * 86_400_000;

/// Marks each report with whether its domain is ours.
pub(super) fn mark_owned(state: &AppState, items: &mut [Value]) {
    let settings = ImportSettings::from(&state.snapshot().config.reports);
    for item in items {
        let owned = item["domain"].as_str().is_some_and(|d| settings.owns(d));
        item["owned"] = owned.into();
    }
}

/// A page of reports as the API answers it: each marked with whether its domain is ours, and
/// the cursor of the following page.
pub(super) fn page_answer(state: &AppState, mut page: Page) -> Json<Value> {
    mark_owned(state, &mut page.items);
    Json(json!({
        "items": page.items,
        "next": page.next.map(|n| n.to_string()),
    }))
}

/// One report by the id in the path (`what` names its kind in errors), marked as the lists
/// mark them.
pub(super) async fn one_by_id(
    state: &AppState,
    id: &str,
    what: &str,
    fetch: impl FnOnce(&Store, i64) -> Result<Option<Value>, StoreError> + Send + 'static,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("`{id}` is not a {what} id")))?;
    match state.query(move |s| Ok(fetch(s, id)?)).await? {
        Some(mut report) => {
            mark_owned(state, std::slice::from_mut(&mut report));
            Ok(Json(report))
        }
        None => Err(ApiError::NotFound(format!("no {what} {id}"))),
    }
}

fn domain(params: &Params) -> Option<String> {
    params
        .get("domain")
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
}

/// `GET /v1/reports`: the newest import first; `next` is the cursor for the following page.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(
        query,
        &["domain", "reporter", "since", "until", "limit", "next"],
    )?;
    let now = now_ms();
    let filter = ReportFilter {
        domain: domain(&params),
        reporter: params.get("reporter").map(|r| r.trim().to_string()),
        since: params.time("since", now)?.map(|ms| ms.div_euclid(1000)),
        until: params.time("until", now)?.map(|ms| ms.div_euclid(1000)),
        before_id: params.cursor()?,
    };
    let limit = params.limit()?;
    let page = state
        .query(move |s| Ok(s.received_reports(&filter, limit)?))
        .await?;
    Ok(page_answer(&state, page))
}

/// `GET /v1/reports/{id}`: one report with its rows.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    one_by_id(&state, &id, "report", |s, id| s.received_report(id)).await
}

/// `GET /v1/reports/summary`: messages, DMARC pass rate, the source addresses failing most,
/// and the same per reporter, over reports whose period ends after `since` (default 7 days).
pub async fn summary(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query, &["domain", "since"])?;
    let now = now_ms();
    let since = params
        .time("since", now)?
        .unwrap_or(now - DEFAULT_SUMMARY_MS)
        .div_euclid(1000);
    let domain = domain(&params);
    let summary = state
        .query(move |s| Ok(s.received_summary(domain.as_deref(), since)?))
        .await?;
    Ok(Json(summary))
}

/// The readiness view of the domain the query names, over `[since, now)` (default 30 days),
/// its sources' reverse names looked up: what the route and the dashboard page show.
pub(super) async fn readiness_of(
    state: &AppState,
    domain: String,
    since: Option<i64>,
) -> Result<Readiness, ApiError> {
    let now = now_ms();
    let since = since.unwrap_or(now - DEFAULT_PERIOD_MS);
    if domain.is_empty() {
        return Err(ApiError::BadRequest("`domain` is required".into()));
    }
    let own = state.snapshot().config.reports.email.clone();
    let mut view = state
        .query(move |s| Ok(Readiness::gather(s, &domain, since, now, own.as_deref())?))
        .await?;
    view.name_sources(state.snapshot().verifier.dns()).await;
    Ok(view)
}

/// `GET /v1/reports/readiness?domain=D[&since=30d]`: the domain's sending sources, classed
/// aligned / fixable / failing, and the share of its mail `p=quarantine` or `p=reject` would
/// quarantine or reject today (from the reports received and this filter's verdicts).
pub async fn readiness(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query, &["domain", "since"])?;
    let since = params.time("since", now_ms())?;
    let domain = domain(&params).unwrap_or_default();
    Ok(Json(readiness_of(&state, domain, since).await?.to_json()))
}
