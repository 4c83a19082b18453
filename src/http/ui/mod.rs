//! The web dashboard at `/ui/`: server-rendered HTML pages over the same store queries as
//! the API (overview, verdict search and detail, DMARC reports received and sent,
//! signing keys with the check of their published records).
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

mod chart;
mod failures;
mod html;
mod keys;
mod pages;
mod reports;

use super::auth::{self, Access};
use super::error::ApiError;
use super::AppState;
use crate::config::Scope;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use html::{esc, page};

/// The cookie that carries the token.
pub const COOKIE: &str = "authmilter_ui";

/// `script-src` is absent (nothing runs); the charts are inline SVG.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes, to merge into the API's router.
pub fn routes(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/ui/", get(pages::overview))
        .route("/ui/verdicts", get(pages::search))
        .route("/ui/verdicts/{id}", get(pages::verdict))
        .route("/ui/reports", get(reports::received))
        .route("/ui/reports/sent", get(reports::sent))
        .route("/ui/reports/failures", get(failures::list))
        .route("/ui/reports/failures/{id}", get(failures::one))
        .route("/ui/reports/{id}", get(reports::one))
        .route("/ui/keys", get(keys::keys))
        .route_layer(middleware::from_fn_with_state(state, require_read));
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
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
        let body = format!(
            "<p class=\"error\">{}</p><p><a href=\"/ui/\">Back to the overview</a></p>",
            esc(&self.0.to_string())
        );
        html_response(
            status,
            page(
                status.canonical_reason().unwrap_or("Error"),
                "",
                true,
                &body,
            ),
        )
    }
}

pub type UiResult = Result<Response, UiError>;

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A 200 page.
fn ok(title: &str, current: &str, body: &str) -> UiResult {
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

/// The token a request presents: a bearer header, else the dashboard cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| percent_decode(value))
        })
}

/// The middleware of every page: the API's rule for the `read` scope. Without a (valid)
/// token the browser is sent to the login form.
async fn require_read(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let token = presented(request.headers());
    let tokens = state.snapshot().config.http.tokens.clone();
    match auth::check(
        &tokens,
        token.as_deref(),
        Access::Scoped(Scope::Read),
        state.loopback(),
    ) {
        Ok(()) => next.run(request).await,
        Err(ApiError::Unauthorized(_)) => {
            let mut response = redirect("/ui/login");
            if token.is_some() {
                // A token no longer configured (rotated, reloaded away): forget it.
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, clear_cookie());
            }
            response
        }
        Err(e) => UiError(e).into_response(),
    }
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let problem = problem
        .map(|p| format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(p)))
        .unwrap_or_default();
    let body = format!(
        "{problem}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
         <label for=\"token\">API token with the <code>read</code> scope</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" \
         required autofocus>\
         <button type=\"submit\" class=\"primary\">Log in</button></form>\
         <p class=\"muted\">The token is one of the <code>[[http.tokens]]</code> of the \
         configuration. It is kept in a cookie for this site only until the browser closes \
         or you log out.</p>"
    );
    html_response(status, page("Log in", "", false, &body))
}

async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// `POST /ui/login` (`token=…`, form-encoded): a token with the read scope becomes the
/// cookie; anything else shows the form again with why.
async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("the login form must be sent from this site (Origin or Referer)"),
        );
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token = pairs
        .iter()
        .find(|(n, _)| n == "token")
        .map(|(_, v)| v.trim())
        .unwrap_or("");
    if token.is_empty() {
        return login_page(StatusCode::BAD_REQUEST, Some("enter a token"));
    }
    let tokens = state.snapshot().config.http.tokens.clone();
    // Presented, the token must be valid even on loopback (as in the API).
    match auth::check(&tokens, Some(token), Access::Scoped(Scope::Read), false) {
        Ok(()) => {
            let secure = if forwarded_https(&headers) {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict{secure}",
                percent_encode(token)
            );
            let mut response = redirect("/ui/");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(ApiError::Forbidden(_)) => login_page(
            StatusCode::FORBIDDEN,
            Some("this token lacks the read scope"),
        ),
        Err(_) => login_page(StatusCode::UNAUTHORIZED, Some("unknown token")),
    }
}

/// `POST /ui/logout`: forgets the cookie.
async fn logout(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return UiError(ApiError::Forbidden("same-origin")).into_response();
    }
    let mut response = redirect("/ui/login");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_cookie());
    response
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("authmilter_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The request's listener has no TLS of its own; behind a TLS-terminating proxy that says so
/// (`X-Forwarded-Proto: https`) the cookie is marked Secure. A client forging the header
/// only makes its own browser more careful.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Whether a POST came from a page of this site: its Origin (or, without one, its Referer)
/// names the host the request was sent to. Neither present: refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(source) = source else {
        return false;
    };
    let Some(rest) = source
        .strip_prefix("http://")
        .or_else(|| source.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.eq_ignore_ascii_case(host.trim())
}

fn percent_encode(text: &str) -> String {
    html::url(text)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn posts_must_come_from_this_site() {
        let host = ("host", "127.0.0.1:8896");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8896")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("referer", "https://127.0.0.1:8896/ui/login")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8896.evil.example")
        ])));
        // Origin wins over a matching Referer.
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example"),
            ("referer", "http://127.0.0.1:8896/ui/login")
        ])));
        assert!(!same_origin(&headers(&[host])));
    }

    #[test]
    fn cookie_token_round_trips_and_bearer_wins() {
        let token = "a b;c=d%é";
        let cookie = format!("other=1; {COOKIE}={}", percent_encode(token));
        assert_eq!(
            presented(&headers(&[("cookie", &cookie)])).as_deref(),
            Some(token)
        );
        assert_eq!(
            presented(&headers(&[
                ("cookie", &cookie),
                ("authorization", "Bearer x")
            ]))
            .as_deref(),
            Some("x")
        );
        assert_eq!(presented(&headers(&[("cookie", "other=1")])), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
