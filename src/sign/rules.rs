//! Who may have mail signed, and which header fields a signature covers: pure functions, no
//! I/O, so the milter, the HTTP API and the tests get the same answers.

use super::key::DomainKey;
use std::collections::BTreeMap;

/// The decision for one message: sign it with these keys, or why not.
#[derive(Debug)]
pub enum Authorisation<'k> {
    /// Sign with every one of these keys (several: dual RSA + Ed25519, or a key rotation in
    /// progress), in configuration order.
    Sign(Vec<&'k DomainKey>),
    /// No key for the From domain: the message is not signed (this is not an error).
    NotOurDomain,
    /// The authenticated user may not send as this domain: not signed, and logged (or the
    /// message is rejected, as `on_unauthorised` says).
    Unauthorised { user: String, domain: String },
}

/// Decides whether mail from `from_domain`, submitted by `auth_user` (the SASL login, `None`
/// when the client did not authenticate), is signed, and with which keys.
///
/// Only domains with a key are signed. When a user map is configured, an authenticated user
/// gets signatures only for the domains listed for them (`*` = any); users missing from the
/// map get none. This closes the hole where any local user has mail signed for any domain by
/// writing its name in From. Unauthenticated clients are outbound because they sit in a
/// trusted network, which the map does not restrict.
pub fn authorise<'k>(
    keys: &'k [DomainKey],
    users: Option<&BTreeMap<String, Vec<String>>>,
    from_domain: &str,
    auth_user: Option<&str>,
) -> Authorisation<'k> {
    let domain = normalize_domain(from_domain);
    let matching: Vec<&DomainKey> = keys.iter().filter(|k| k.domain == domain).collect();
    if matching.is_empty() {
        return Authorisation::NotOurDomain;
    }
    if let (Some(users), Some(user)) = (users, auth_user.filter(|u| !u.is_empty())) {
        let allowed = users
            .get(user)
            .is_some_and(|domains| domains.iter().any(|d| d == "*" || *d == domain));
        if !allowed {
            return Authorisation::Unauthorised {
                user: user.to_string(),
                domain,
            };
        }
    }
    Authorisation::Sign(matching)
}

/// Domains compare case-insensitively and without the root dot.
pub fn normalize_domain(domain: &str) -> String {
    let d = domain.trim();
    d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()
}

/// The names to hand to mail-auth's signer so that `h=` lists every configured field the
/// message has, plus one more instance of each oversigned field.
///
/// mail-auth signs *every* instance of a listed name and appends, for each listed position
/// that matched nothing, that name once more (a "null" entry a verifier cannot match: RFC 6376
/// §5.4.2). So a name listed twice and present once comes out as `From:From`, and a field
/// that is absent but oversigned comes out once, which still stops it being added. Fields that
/// are absent and not oversigned are left out rather than cluttering `h=`.
pub fn header_list(present: &[&[u8]], headers: &[String], oversign: &[String]) -> Vec<String> {
    let is_present = |name: &str| {
        present
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name.as_bytes()))
    };
    let is_oversigned = |name: &str| oversign.iter().any(|o| o.eq_ignore_ascii_case(name));
    let mut list = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for name in headers.iter().chain(oversign) {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            continue;
        }
        seen.push(name);
        if is_present(name) {
            list.push(name.clone());
        }
        if is_oversigned(name) {
            list.push(name.clone());
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::key::PrivateKey;

    fn key(domain: &str, selector: &str) -> DomainKey {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/keys/ed25519.pem"
        ));
        DomainKey {
            domain: domain.into(),
            selector: selector.into(),
            identity: None,
            key: PrivateKey::from_pem(&pem.unwrap()).unwrap(),
        }
    }

    fn selectors(a: &Authorisation<'_>) -> Vec<String> {
        match a {
            Authorisation::Sign(keys) => keys.iter().map(|k| k.selector.clone()).collect(),
            other => panic!("not signed: {other:?}"),
        }
    }

    #[test]
    fn only_domains_with_a_key_are_signed() {
        let keys = [
            key("example.com", "rsa"),
            key("example.com", "ed"),
            key("example.net", "n1"),
        ];
        assert_eq!(
            selectors(&authorise(&keys, None, "Example.COM.", None)),
            ["rsa", "ed"]
        );
        assert_eq!(
            selectors(&authorise(&keys, None, "example.net", Some("anyone"))),
            ["n1"]
        );
        assert!(matches!(
            authorise(&keys, None, "example.org", None),
            Authorisation::NotOurDomain
        ));
        // A subdomain is another domain: it needs its own key.
        assert!(matches!(
            authorise(&keys, None, "sub.example.com", None),
            Authorisation::NotOurDomain
        ));
    }

    #[test]
    fn user_map_limits_authenticated_users() {
        let keys = [key("example.com", "s1"), key("example.net", "s2")];
        let users = BTreeMap::from([
            ("alice".to_string(), vec!["example.com".to_string()]),
            ("admin".to_string(), vec!["*".to_string()]),
        ]);
        let users = Some(&users);
        assert_eq!(
            selectors(&authorise(&keys, users, "example.com", Some("alice"))),
            ["s1"]
        );
        match authorise(&keys, users, "example.net", Some("alice")) {
            Authorisation::Unauthorised { user, domain } => {
                assert_eq!((user.as_str(), domain.as_str()), ("alice", "example.net"))
            }
            other => panic!("{other:?}"),
        }
        // Users missing from the map may not sign at all.
        assert!(matches!(
            authorise(&keys, users, "example.com", Some("mallory")),
            Authorisation::Unauthorised { .. }
        ));
        assert_eq!(
            selectors(&authorise(&keys, users, "example.net", Some("admin"))),
            ["s2"]
        );
        // Trusted-network clients without a login are not subject to the map.
        assert_eq!(
            selectors(&authorise(&keys, users, "example.net", None)),
            ["s2"]
        );
        // No key beats no permission: nothing to sign is not an authorisation failure.
        assert!(matches!(
            authorise(&keys, users, "example.org", Some("alice")),
            Authorisation::NotOurDomain
        ));
    }

    #[test]
    fn header_list_signs_present_fields_and_oversigns() {
        let headers: Vec<String> = ["From", "To", "Subject", "Cc", "References"]
            .map(String::from)
            .into();
        let oversign: Vec<String> = ["From", "Subject", "Reply-To"].map(String::from).into();
        let present: Vec<&[u8]> = vec![b"from", b"To", b"Subject", b"Received"];
        assert_eq!(
            header_list(&present, &headers, &oversign),
            ["From", "From", "To", "Subject", "Subject", "Reply-To"]
        );
    }
}
