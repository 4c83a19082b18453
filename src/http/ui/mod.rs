//! The web dashboard at `/ui/`: server-rendered HTML pages over the same store queries as
//! the API (overview, verdict search and detail, DMARC reports received and sent, the
//! enforcement readiness of a domain, signing keys with the check of their published
//! records).
//!
//! Access follows the API's rule for read routes ([`auth::check`] with the `read` scope): a
//! loopback listener lets tokenless requests through, any other needs a token. A browser
//! presents it through the login form, which keeps it in an HttpOnly, SameSite=Strict cookie
//! scoped to `/ui`; a bearer header works too. Nothing here changes state on GET, and the two
//! POSTs (login, logout) must come from a page of the same origin (Origin or Referer), so
//! another site cannot log a browser in or out. Every page is sent with a Content-Security-
//! Policy that allows no script at all and style only from `/ui/static/app.css`.
//!
//! These routes are not in the OpenAPI document: they are pages for people, not part of the
//! machine interface (whose every route the document lists).
//!
//! Pages are maud templates (`html.rs`: the frame and shared pieces), which escape every value
//! spliced into them; one file per group of pages (`overview.rs`, `verdicts.rs`, `reports.rs`,
//! `readiness.rs`, `keys.rs`), the SVG charts in `chart.rs`, the access check and the login in `login.rs`.

mod chart;
mod failures;
mod html;
mod keys;
mod login;
mod overview;
mod readiness;
mod reports;
mod verdicts;

pub use login::COOKIE;

use super::error::ApiError;
use super::AppState;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use html::page;
use maud::{html, Markup};

/// `script-src` is absent (nothing runs); the charts are inline SVG.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes, to merge into the API's router.
pub fn routes(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/ui/", get(overview::overview))
        .route("/ui/verdicts", get(verdicts::search))
        .route("/ui/verdicts/{id}", get(verdicts::verdict))
        .route("/ui/reports", get(reports::received))
        .route("/ui/reports/sent", get(reports::sent))
        .route("/ui/reports/readiness", get(readiness::readiness))
        .route("/ui/reports/failures", get(failures::list))
        .route("/ui/reports/failures/{id}", get(failures::one))
        .route("/ui/reports/{id}", get(reports::one))
        .route("/ui/keys", get(keys::keys))
        .route_layer(middleware::from_fn_with_state(state, login::require_read));
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/login", get(login::login_form).post(login::login))
        .route("/ui/logout", axum::routing::post(login::logout))
        .route("/ui/static/app.css", get(css))
        .merge(protected)
        .layer(middleware::map_response(security_headers))
}

/// A page, or an error shown as a page; statuses come from [`ApiError`]'s one mapping.
pub struct UiError(pub ApiError);

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, _) = self.0.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "dashboard error");
        }
        let body = html! {
            p class="error" { (self.0) }
            p { a href="/ui/" { "Back to the overview" } }
        };
        html_response(
            status,
            page(status.canonical_reason().unwrap_or("Error"), "", true, body),
        )
    }
}

pub type UiResult = Result<Response, UiError>;

fn html_response(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// A 200 page.
fn ok(title: &str, current: &str, body: Markup) -> UiResult {
    Ok(html_response(
        StatusCode::OK,
        page(title, current, true, body),
    ))
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        html::CSS,
    )
        .into_response()
}
