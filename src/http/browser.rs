//! What a web page in the operator's browser can make the API do: nothing it could not do
//! with the operator's token.
//!
//! A loopback listener serves without a token, so two browser tricks would reach it:
//! - **DNS rebinding**: a hostile page points its own name at 127.0.0.1 and reads the API as
//!   same-origin. Its requests carry that name in `Host`, so a tokenless listener answers
//!   only `Host` values that name it: its own address, `localhost`, or a name configured in
//!   `http.allowed_hosts`; anything else gets `421 Misdirected Request` before any handler
//!   runs. Ports are not compared: a page cannot choose the host part of `Host` without
//!   owning that name, and a forwarded port (`ssh -L 9000:127.0.0.1:8896`) differs from the
//!   bound one.
//! - **Cross-site "simple" requests**: a plain HTML form (or a `no-cors` fetch) may POST
//!   `text/plain`, `application/x-www-form-urlencoded` or `multipart/form-data` (or no type at
//!   all) to any address without the browser asking first (Fetch standard, CORS-safelisted
//!   request headers). The routes that take a message accept only the types listed in
//!   [`body_types`], which a browser sends cross-site only after a CORS preflight that this
//!   API never grants; anything else is `415`.
//!
//! The dashboard's two form POSTs (login, logout) keep their own Origin check (`ui`).

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::middleware::Next;
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};

/// The media types a message may be posted as (RFC 2046, RFC 6532, or opaque bytes).
pub const MESSAGE_TYPES: &[&str] = &[
    "message/rfc822",
    "message/global",
    "application/octet-stream",
];

/// The request body types a route accepts; `None`: the route takes no body.
pub fn body_types(path: &str) -> Option<&'static [&'static str]> {
    match path {
        "/v1/check" | "/v1/sign" => Some(MESSAGE_TYPES),
        _ => None,
    }
}

/// The middleware in front of everything: a tokenless listener answers only its own names.
pub async fn host_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.loopback() {
        let host = request
            .headers()
            .get(HOST)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let allowed = &state.snapshot().config.http.allowed_hosts;
        if let Some(host) = host.filter(|h| !host_allowed(h, state.local_addr(), allowed)) {
            return Err(ApiError::MisdirectedHost(host.chars().take(100).collect()));
        }
    }
    Ok(next.run(request).await)
}

/// The middleware on the routes that take a body: its `Content-Type` must be one of theirs.
pub async fn content_type(request: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(accepted) = body_types(request.uri().path()) {
        let given = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !given.is_some_and(|t| type_accepted(t, accepted)) {
            return Err(ApiError::UnsupportedMediaType(accepted.join(", ")));
        }
    }
    Ok(next.run(request).await)
}

/// Whether the essence of `content_type` (the part before parameters) is one of `accepted`.
fn type_accepted(content_type: &str, accepted: &[&str]) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    accepted.iter().any(|a| a.eq_ignore_ascii_case(essence))
}

/// Whether a `Host` header names this listener: `localhost`, the listener's own address, or
/// a configured name; the port, if any, is not compared (see the module comment). A request
/// without `Host` comes from no browser (HTTP/1.1 makes it mandatory, browsers always send
/// it) and is let through.
pub fn host_allowed(host: &str, local: Option<SocketAddr>, allowed: &[String]) -> bool {
    let Some(name) = host_part(host) else {
        return false;
    };
    if name == "localhost" || allowed.contains(&name) {
        return true;
    }
    match (name.parse::<IpAddr>(), local) {
        (Ok(ip), Some(local)) => ip.to_canonical() == local.ip().to_canonical(),
        _ => false,
    }
}

/// The host of a `Host` value (RFC 9110 §7.2: `uri-host [ ":" port ]`), lower case, without
/// a trailing dot or the brackets of an IPv6 literal; `None` when it is malformed.
fn host_part(host: &str) -> Option<String> {
    let host = host.trim();
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            (v6, after.strip_prefix(':'))
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_a_tokenless_listener_or_is_refused() {
        let v4: SocketAddr = "127.0.0.1:8896".parse().unwrap();
        let v6: SocketAddr = "[::1]:8896".parse().unwrap();
        let allowed = vec!["dash.example.net".to_string()];
        for ok in [
            "127.0.0.1:8896",
            "127.0.0.1",
            "127.0.0.1:9000",
            "localhost:8896",
            "LOCALHOST",
            "localhost.",
            "dash.example.net",
            "Dash.Example.NET:443",
        ] {
            assert!(host_allowed(ok, Some(v4), &allowed), "{ok}");
        }
        assert!(host_allowed("[::1]:8896", Some(v6), &allowed));
        for refused in [
            "evil.example:8896",
            "127.0.0.2:8896",
            "[::1]:8896",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "localhost:",
            "localhost:80x",
            "",
        ] {
            assert!(!host_allowed(refused, Some(v4), &allowed), "{refused}");
        }
    }

    #[test]
    fn browser_simple_types_are_not_message_types() {
        for t in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            assert!(!type_accepted(t, MESSAGE_TYPES), "{t}");
        }
        assert!(type_accepted("message/rfc822", MESSAGE_TYPES));
        assert!(type_accepted(
            "Message/RFC822; charset=utf-8",
            MESSAGE_TYPES
        ));
        assert!(type_accepted("application/octet-stream", MESSAGE_TYPES));
    }

    #[test]
    fn every_post_route_takes_a_checked_type_or_a_token() {
        use super::super::auth::{access, Access};
        for (method, path) in super::super::route_list() {
            if method == "post" {
                assert!(
                    body_types(path).is_some() || matches!(access(path), Access::Token(_)),
                    "{path}: a browser could post to it cross-site"
                );
            }
        }
    }
}
