use super::*;
use crate::config::{Config, ConfigError};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Some(Path::new("/etc/am/authmilter.toml")))
}

#[test]
fn defaults_sign_nothing_relaxed_and_oversign_from() {
    let c = parse("").unwrap().signing;
    assert!(c.keys.is_empty());
    assert_eq!(c.header_canonicalization, Canonicalization::Relaxed);
    assert_eq!(c.body_canonicalization, Canonicalization::Relaxed);
    assert!(c.headers.iter().any(|h| h == "From"));
    assert!(c.oversign.iter().any(|h| h == "From"));
    assert_eq!(c.expire, None);
    assert_eq!(c.identity, IdentityMode::None);
    assert_eq!(c.users, None);
    assert_eq!(c.on_unauthorised, OnUnauthorised::Skip);
}

#[test]
fn full_section_is_read() {
    let text = r#"
[signing]
headers = ["From", "To", "Subject", "from"]
oversign = ["From"]
canonicalization = "simple/relaxed"
expire_secs = 604800
identity = "from"
on_unauthorised = "reject"

[[signing.keys]]
domain = "Example.COM."
selector = "rsa2026"
key_file = "keys/example.com.rsa2026.pem"

[[signing.keys]]
domain = "example.com"
selector = "ed2026"
key_file = "/var/lib/keys/ed.pem"
identity = "@mail.example.com"

[signing.users]
"alice@example.com" = ["example.com"]
admin = ["*"]
"#;
    let c = parse(text).unwrap().signing;
    assert_eq!(c.headers, ["From", "To", "Subject"]);
    assert_eq!(c.oversign, ["From"]);
    assert_eq!(c.header_canonicalization, Canonicalization::Simple);
    assert_eq!(c.body_canonicalization, Canonicalization::Relaxed);
    assert_eq!(c.expire, Some(Duration::from_secs(604800)));
    assert_eq!(c.identity, IdentityMode::From);
    assert_eq!(c.on_unauthorised, OnUnauthorised::Reject);
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.keys[0].domain, "example.com");
    assert_eq!(
        c.keys[0].key_file,
        PathBuf::from("/etc/am/keys/example.com.rsa2026.pem")
    );
    assert_eq!(
        c.keys[0].origin.as_deref(),
        Some("/etc/am/authmilter.toml:13")
    );
    assert_eq!(c.keys[1].key_file, PathBuf::from("/var/lib/keys/ed.pem"));
    assert_eq!(c.keys[1].identity.as_deref(), Some("@mail.example.com"));
    let users = c.users.unwrap();
    assert_eq!(users["alice@example.com"], ["example.com"]);
    assert_eq!(users["admin"], ["*"]);
}

#[test]
fn bad_values_name_file_line_and_key() {
    let key =
        "[[signing.keys]]\ndomain = \"example.com\"\nselector = \"s\"\nkey_file = \"k.pem\"\n";
    let cases = [
        ("[signing]\ncanonicalization = \"loose\"\n", 2, "signing.canonicalization"),
        ("[signing]\nexpire_secs = 0\n", 2, "signing.expire_secs"),
        ("[signing]\nidentity = \"user\"\n", 2, "signing.identity"),
        ("[signing]\non_unauthorised = \"drop\"\n", 2, "signing.on_unauthorised"),
        ("[signing]\nheaders = [\"To\", \"Subject\"]\n", 2, "signing.headers"),
        ("[signing]\noversign = [\"From:\"]\n", 2, "signing.oversign"),
        ("[signing]\nkeyfile = \"x\"\n", 2, "signing.keyfile"),
        (
            "[[signing.keys]]\ndomain = \"example\"\nselector = \"s\"\nkey_file = \"k\"\n",
            2,
            "signing.keys.domain",
        ),
        (
            "[[signing.keys]]\ndomain = \"example.com\"\nselector = \"a b\"\nkey_file = \"k\"\n",
            3,
            "signing.keys.selector",
        ),
        (
            "[[signing.keys]]\ndomain = \"example.com\"\nselector = \"s\"\nkey = \"k\"\n",
            4,
            "signing.keys.key",
        ),
        (
            "[[signing.keys]]\ndomain = \"example.com\"\nselector = \"s\"\nkey_file = \"k\"\nidentity = \"a@example.net\"\n",
            5,
            "signing.keys.identity",
        ),
        (&format!("{key}{key}"), 7, "signing.keys.selector"),
        (
            "[signing.users]\nalice = [\"example.com\", \"not a domain\"]\n",
            2,
            "signing.users.alice",
        ),
    ];
    for (text, line, key) in cases {
        let e = Config::parse(text, Some(Path::new("c.toml"))).unwrap_err();
        assert_eq!(e.line, Some(line), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("c.toml:{line}: key `{key}`")),
            "{e}"
        );
    }
}

#[test]
fn sign_flag_parses_and_replaces_configured_keys() {
    let k = parse_sign_flag("Example.com:sel:/etc/keys/a:b.pem").unwrap();
    assert_eq!(k.domain, "example.com");
    assert_eq!(k.selector, "sel");
    assert_eq!(k.key_file, PathBuf::from("/etc/keys/a:b.pem"));
    assert!(parse_sign_flag("example.com:sel").is_err());
    assert!(parse_sign_flag("example.com:sel:").is_err());
    assert!(parse_sign_flag("nodot:sel:k.pem").is_err());
    let mut c = SigningConfig::default();
    c.add_keys([k.clone()]);
    let mut replaced = k.clone();
    replaced.key_file = "/other.pem".into();
    c.add_keys([replaced, parse_sign_flag("example.com:s2:k.pem").unwrap()]);
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.keys[0].key_file, PathBuf::from("/other.pem"));
}

#[test]
fn identities_must_be_in_the_signing_domain() {
    assert!(identity_in_domain("@example.com", "example.com"));
    assert!(identity_in_domain("bob@Mail.Example.com", "example.com"));
    assert!(!identity_in_domain("bob@badexample.com", "example.com"));
    assert!(!identity_in_domain("example.com", "example.com"));
}
