//! Who may call what: loopback clients may use the read and check routes without a token;
//! a listener on any other address needs a token for every request; signing and reloading
//! always need one. Tokens are configured as SHA-256 hashes and compared in constant time.

use super::error::ApiError;
use super::AppState;
use crate::config::{ApiToken, Scope};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use ring::digest;
use subtle::ConstantTimeEq;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who may reach the API at all (health, the OpenAPI document).
    Open,
    /// This scope; a loopback listener lets tokenless requests through.
    Scoped(Scope),
    /// This scope, always by token (signing, reloading).
    Token(Scope),
}

/// The access rule of each route (one table). A route not named here needs the `read`
/// scope: a new route is never open by omission.
pub fn access(path: &str) -> Access {
    match path {
        "/healthz" | "/readyz" | "/openapi.json" => Access::Open,
        "/v1/check" => Access::Scoped(Scope::Check),
        "/v1/sign" => Access::Token(Scope::Sign),
        "/v1/reload" => Access::Token(Scope::Admin),
        _ => Access::Scoped(Scope::Read),
    }
}

/// The middleware: checks the bearer token against the route's rule.
pub async fn require(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ))
        })
        .transpose()?;
    let tokens = state.snapshot().config.http.tokens.clone();
    check(&tokens, presented, access(&path), state.loopback())?;
    Ok(next.run(request).await)
}

/// The decision, apart from HTTP for the unit tests.
pub fn check(
    tokens: &[ApiToken],
    presented: Option<&str>,
    access: Access,
    loopback: bool,
) -> Result<(), ApiError> {
    let Some(text) = presented else {
        return match access {
            Access::Token(_) => Err(ApiError::Unauthorized("this route needs a bearer token")),
            _ if !loopback => Err(ApiError::Unauthorized(
                "a bearer token is required on this listener",
            )),
            _ => Ok(()),
        };
    };
    let token = find(tokens, text).ok_or(ApiError::Unauthorized("unknown bearer token"))?;
    match access {
        Access::Open => Ok(()),
        Access::Scoped(scope) | Access::Token(scope) if token.allows(scope) => Ok(()),
        Access::Scoped(scope) | Access::Token(scope) => Err(ApiError::Forbidden(scope.as_str())),
    }
}

/// The token whose hash matches. Every configured hash is compared, each in constant time, so
/// timing tells neither which token nor how much of one matched.
fn find<'t>(tokens: &'t [ApiToken], presented: &str) -> Option<&'t ApiToken> {
    let hash = digest::digest(&digest::SHA256, presented.as_bytes());
    let mut found = None;
    for token in tokens {
        if bool::from(hash.as_ref().ct_eq(&token.sha256[..])) && found.is_none() {
            found = Some(token);
        }
    }
    found
}

/// The SHA-256 of a token, as the configuration wants it (64 hex digits).
pub fn token_hash_hex(token: &str) -> String {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str, scopes: &[Scope]) -> ApiToken {
        let hex = token_hash_hex(text);
        ApiToken {
            name: text.into(),
            sha256: crate::config::parse_sha256(&hex).unwrap(),
            scopes: scopes.to_vec(),
        }
    }

    // Only health and the API's description are open; every route that reads the store
    // (failure reports with their original headers included) needs the read scope.
    #[test]
    fn only_health_and_the_description_are_open() {
        for (_, path) in super::super::route_list() {
            let want = match path {
                "/healthz" | "/readyz" | "/openapi.json" => Access::Open,
                "/v1/check" => Access::Scoped(Scope::Check),
                "/v1/sign" => Access::Token(Scope::Sign),
                "/v1/reload" => Access::Token(Scope::Admin),
                _ => Access::Scoped(Scope::Read),
            };
            assert_eq!(access(path), want, "{path}");
        }
        assert_eq!(
            access("/v1/reports/failures/{id}"),
            Access::Scoped(Scope::Read)
        );
        assert_eq!(access(""), Access::Scoped(Scope::Read), "no matched route");
        let check_only = [token("c", &[Scope::Check])];
        assert!(matches!(
            check(
                &check_only,
                Some("c"),
                access("/v1/reports/failures"),
                false
            ),
            Err(ApiError::Forbidden("read"))
        ));
    }

    #[test]
    fn rules() {
        let tokens = [token("r", &[Scope::Read]), token("a", &[Scope::Admin])];
        let read = Access::Scoped(Scope::Read);
        let sign = Access::Token(Scope::Sign);
        assert!(check(&tokens, None, read, true).is_ok());
        assert!(matches!(
            check(&tokens, None, read, false),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            check(&tokens, None, sign, true),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(check(&tokens, Some("r"), read, false).is_ok());
        assert!(matches!(
            check(&tokens, Some("r"), sign, true),
            Err(ApiError::Forbidden("sign"))
        ));
        assert!(check(&tokens, Some("a"), sign, false).is_ok());
        assert!(matches!(
            check(&tokens, Some("x"), Access::Open, true),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(check(&tokens, Some("r"), Access::Open, false).is_ok());
    }
}
