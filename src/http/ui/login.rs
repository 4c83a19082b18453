//! Who may see the pages: the API's rule for the `read` scope, checked on every page, and
//! the login that gives a browser its token: the form, the HttpOnly cookie that keeps it,
//! logout, and the same-origin check of both POSTs (Origin or Referer, read with `http::Uri`).

use super::super::auth::{self, Access};
use super::super::error::ApiError;
use super::super::AppState;
use super::html::{page, url_param};
use super::{html_response, redirect, UiError};
use crate::config::Scope;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::uri::{Authority, Scheme};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;

/// The cookie that carries the token.
pub const COOKIE: &str = "authmilter_ui";

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
pub(super) async fn require_read(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
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
    let body = html! {
        @if let Some(problem) = problem {
            p class="error" id="login-error" { (problem) }
        }
        form method="post" action="/ui/login" class="login" {
            label for="token" { "API token with the " code { "read" } " scope" }
            input id="token" name="token" type="password" autocomplete="current-password"
                required autofocus;
            button type="submit" class="primary" { "Log in" }
        }
        p class="muted" {
            "The token is one of the " code { "[[http.tokens]]" } " of the configuration. It \
             is kept in a cookie for this site only until the browser closes or you log out."
        }
    };
    html_response(status, page("Log in", "", false, body))
}

pub(super) async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// `POST /ui/login` (`token=…`, form-encoded): a token with the read scope becomes the
/// cookie; anything else shows the form again with why.
pub(super) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
pub(super) async fn logout(headers: HeaderMap) -> Response {
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
/// is an http or https URL whose authority is the host the request was sent to. Neither
/// present, or either unparsable (`Origin: null`): refused.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Authority>().ok())
    else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Uri>().ok());
    let Some(source) = source else {
        return false;
    };
    let web = source.scheme() == Some(&Scheme::HTTP) || source.scheme() == Some(&Scheme::HTTPS);
    // Authority compares case-insensitively; a user-info part never matches a Host.
    web && source.authority() == Some(&host)
}

fn percent_encode(text: &str) -> String {
    url_param(text).to_string()
}

/// Percent-decodes a cookie value; a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
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
    fn origin_and_referer_are_read_as_uris() {
        let host = ("host", "LocalHost:8896");
        let from = |source: &str| same_origin(&headers(&[host, ("origin", source)]));
        assert!(from("http://localhost:8896"));
        assert!(from("https://LOCALHOST:8896"));
        for refused in [
            "ftp://localhost:8896",
            "localhost:8896",
            "http://user@localhost:8896",
            "http://localhost:8897",
            "http://localhost",
            "http://localhost:8896@evil.example",
            "http:// localhost:8896",
            "",
        ] {
            assert!(!from(refused), "{refused}");
        }
        // A Host that is not an authority matches nothing.
        assert!(!same_origin(&headers(&[
            ("host", "a b"),
            ("origin", "http://a b")
        ])));
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
