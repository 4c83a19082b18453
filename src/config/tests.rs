use super::*;

#[test]
fn empty_file_gives_defaults() {
    let c = Config::parse("", None).unwrap();
    assert_eq!(c.dns.timeout, DEFAULT_DNS_TIMEOUT);
    assert_eq!(c.limits.max_dkim_signatures, DEFAULT_MAX_DKIM_SIGNATURES);
    assert!(c.is_trusted("127.0.0.1".parse().unwrap()));
    assert!(c.is_trusted("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!c.is_trusted("192.0.2.1".parse().unwrap()));
    assert!(!c.authserv_id.is_empty());
}

#[test]
fn full_file_is_read() {
    let text = r#"
authserv_id = "mx.example.org"
trusted_networks = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
policy_dir = "pol"
[dns]
nameservers = ["127.0.0.1:5353", "[::1]:53"]
timeout_ms = 1500
attempts = 3
cache_size = 0
[limits]
max_message_size = 1048576
max_dkim_signatures = 4
[headers]
received_spf = true
[checks]
iprev = true
"#;
    let c = Config::parse(text, Some(Path::new("/etc/am/authmilter.toml"))).unwrap();
    assert_eq!(c.authserv_id, "mx.example.org");
    assert_eq!(c.dns.nameservers.len(), 2);
    assert_eq!(c.dns.timeout, Duration::from_millis(1500));
    assert_eq!(c.dns.cache_size, 0);
    assert_eq!(c.policy_dir, Some(PathBuf::from("/etc/am/pol")));
    assert!(c.is_trusted("192.0.2.7".parse().unwrap()));
    assert!(!c.is_trusted("127.0.0.1".parse().unwrap()));
    assert!(c.received_spf && c.iprev);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = "authserv_id = \"a\"\n[dns]\ntimeout_ms = 10\nnameserver = \"1.1.1.1:53\"\n";
    let e = Config::parse(text, Some(Path::new("x.toml"))).unwrap_err();
    assert_eq!(e.line, Some(4));
    assert_eq!(e.key.as_deref(), Some("dns.nameserver"));
    assert!(
        e.to_string().starts_with("x.toml:4: key `dns.nameserver`"),
        "{e}"
    );
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[dns]\nnameservers = [\"1.2.3.4\"]\n", 2, "dns.nameservers"),
        ("[dns]\n\ntimeout_ms = 0\n", 3, "dns.timeout_ms"),
        ("[dns]\nattempts = \"three\"\n", 2, "dns.attempts"),
        (
            "trusted_networks = [\"10.0.0.0/33\"]\n",
            1,
            "trusted_networks",
        ),
        (
            "[limits]\nmax_dkim_signatures = 0\n",
            2,
            "limits.max_dkim_signatures",
        ),
        ("authserv_id = \"a b\"\n", 1, "authserv_id"),
    ];
    for (text, line, key) in cases {
        let e = Config::parse(text, Some(Path::new("c.toml"))).unwrap_err();
        assert_eq!(e.line, Some(line), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
    }
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let e = Config::load(Path::new("/nonexistent/authmilter.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/authmilter.toml"));
    assert!(e.line.is_none());
}

#[test]
fn milter_and_server_sections() {
    let text = "[milter]\nlisten = \"unix:/run/am.sock\"\nsocket_mode = \"0600\"\nmax_connections = 5\ntimeout_secs = 9\n[server]\nshutdown_grace_secs = 3\n";
    let c = Config::parse(text, None).unwrap();
    assert_eq!(c.milter.listen, ListenAddr::Unix("/run/am.sock".into()));
    assert_eq!(c.milter.socket_mode, 0o600);
    assert_eq!(c.milter.max_connections, 5);
    assert_eq!(c.milter.timeout, Duration::from_secs(9));
    assert_eq!(c.shutdown_grace, Duration::from_secs(3));
    let d = Config::default();
    assert_eq!(
        d.milter.listen,
        ListenAddr::Tcp("127.0.0.1:8895".parse().unwrap())
    );
    for (text, key) in [
        ("[milter]\nlisten = \"8895\"\n", "milter.listen"),
        ("[milter]\nsocket_mode = \"999\"\n", "milter.socket_mode"),
        ("[milter]\nmax_connections = 0\n", "milter.max_connections"),
    ] {
        let e = Config::parse(text, None).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
    }
}

#[test]
fn http_and_store_sections() {
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let text = format!(
        "[http]\nlisten = \"0.0.0.0:9000\"\nrequest_timeout_secs = 5\n[[http.tokens]]\nname = \"ops\"\nsha256 = \"{hash}\"\nscopes = [\"read\", \"check\"]\n[store]\npath = \"v.sqlite\"\nretention_days = 7\nqueue_size = 50\n"
    );
    let c = Config::parse(&text, Some(Path::new("/etc/am/a.toml"))).unwrap();
    assert_eq!(c.http.listen, Some("0.0.0.0:9000".parse().unwrap()));
    assert_eq!(c.http.request_timeout, Duration::from_secs(5));
    assert!(c.http.tokens[0].allows(Scope::Check) && !c.http.tokens[0].allows(Scope::Sign));
    assert_eq!(c.store.path, Some(PathBuf::from("/etc/am/v.sqlite")));
    assert_eq!((c.store.retention_days, c.store.queue_size), (7, 50));
    let d = Config::parse("[http]\n", None).unwrap();
    assert_eq!(d.http.listen, Some(DEFAULT_HTTP_LISTEN.parse().unwrap()));
    assert!(Config::default().http.listen.is_none() && Config::default().store.path.is_none());
    let h = Config::parse(
        "[http]\nallowed_hosts = [\"Dash.Example.NET.\", \"[::1]\"]\nquery_timeout_ms = 250\n",
        None,
    )
    .unwrap();
    assert_eq!(h.http.allowed_hosts, ["dash.example.net", "::1"]);
    assert_eq!(h.http.query_timeout, Duration::from_millis(250));
    for (text, line, key) in [
        ("[http]\nlisten = \"0.0.0.0:80\"\n", 2, "http.listen"),
        (
            "[http]\nallowed_hosts = [\"http://x\"]\n",
            2,
            "http.allowed_hosts",
        ),
        (
            "[http]\nallowed_hosts = [\"x:80\"]\n",
            2,
            "http.allowed_hosts",
        ),
        ("[http]\nquery_timeout_ms = 0\n", 2, "http.query_timeout_ms"),
        ("[http]\nlisten = \"nowhere\"\n", 2, "http.listen"),
        (
            "[[http.tokens]]\nname = \"x\"\nsha256 = \"abc\"\nscopes = [\"read\"]\n",
            3,
            "http.tokens.sha256",
        ),
        (
            &format!("[[http.tokens]]\nname = \"x\"\nsha256 = \"{hash}\"\nscopes = [\"write\"]\n"),
            4,
            "http.tokens.scopes",
        ),
        ("[store]\nqueue_size = 0\n", 2, "store.queue_size"),
    ] {
        let e = Config::parse(text, None).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(line), Some(key)), "{e}");
    }
}

#[test]
fn smtp_section_is_read_and_checked() {
    let text = r#"
[smtp]
local_domains = ["Example.NET.", "example.org"]
relay = "127.0.0.1:10025"
relay_tls = "required"
relay_ca_file = "ca.pem"
tls_cert = "cert.pem"
tls_key = "key.pem"
max_recipients = 5
"#;
    let c = Config::parse(text, Some(Path::new("/etc/am/authmilter.toml"))).unwrap();
    assert_eq!(c.smtp.listen, Some("127.0.0.1:2525".parse().unwrap()));
    assert_eq!(c.smtp.local_domains, ["example.net", "example.org"]);
    assert_eq!(c.smtp.delivery, Delivery::Relay("127.0.0.1:10025".into()));
    assert_eq!(c.smtp.relay_tls, RelayTls::Required);
    assert_eq!(c.smtp.relay_ca_file, Some(PathBuf::from("/etc/am/ca.pem")));
    assert_eq!(
        c.smtp.tls,
        Some((
            PathBuf::from("/etc/am/cert.pem"),
            PathBuf::from("/etc/am/key.pem")
        ))
    );
    assert_eq!(c.smtp.max_recipients, 5);
    // Without the section there is no SMTP listener.
    assert_eq!(Config::parse("", None).unwrap().smtp.listen, None);

    let cases = [
        (
            "[smtp]\nlocal_domains = [\"a..b\"]\n",
            2,
            "smtp.local_domains",
        ),
        ("[smtp]\nrelay = \"nohost\"\n", 2, "smtp.relay"),
        (
            "[smtp]\nrelay = \"h:1\"\nmaildir = \"m\"\n",
            2,
            "smtp.relay",
        ),
        ("[smtp]\nrelay_tls = \"maybe\"\n", 2, "smtp.relay_tls"),
        ("[smtp]\n\ntls_cert = \"c.pem\"\n", 3, "smtp.tls_cert"),
        ("[smtp]\nmax_line_length = 100\n", 2, "smtp.max_line_length"),
        ("[smtp]\nlisten = \"port 25\"\n", 2, "smtp.listen"),
        ("[smtp]\nmaildirs = \"x\"\n", 2, "smtp.maildirs"),
    ];
    for (text, line, key) in cases {
        let e = Config::parse(text, Some(Path::new("c.toml"))).unwrap_err();
        assert_eq!(e.line, Some(line), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
    }
}

#[test]
fn hostile_load_limits_are_read_and_checked() {
    let text = r#"
[limits]
max_recipients = 50
max_header_fields = 200
max_inflight_bytes = 67108864
[smtp]
max_connections_per_network = 8
network_prefix_v4 = 16
network_prefix_v6 = 48
stress_threshold_percent = 80
stress_timeout_secs = 5
junk_command_limit = 20
"#;
    let c = Config::parse(text, None).unwrap();
    assert_eq!(
        (
            c.limits.max_recipients,
            c.limits.max_header_fields,
            c.limits.max_inflight_bytes
        ),
        (50, 200, 64 << 20)
    );
    let s = &c.smtp;
    assert_eq!(
        (
            s.max_connections_per_network,
            s.network_prefix_v4,
            s.network_prefix_v6
        ),
        (8, 16, 48)
    );
    assert_eq!(s.stress_threshold_percent, 80);
    assert_eq!(s.stress_timeout, Duration::from_secs(5));
    assert_eq!(s.junk_command_limit, 20);
    let defaults = Config::parse("[smtp]\n", None).unwrap();
    assert_eq!(defaults.smtp.max_connections_per_network, 50);
    assert_eq!(defaults.smtp.stress_threshold_percent, 70);
    assert!(defaults.limits.max_inflight_bytes >= 1 << 20);

    let cases = [
        ("[limits]\nmax_recipients = 0\n", "limits.max_recipients"),
        (
            "[limits]\nmax_inflight_bytes = 1000\n",
            "limits.max_inflight_bytes",
        ),
        ("[smtp]\nnetwork_prefix_v4 = 33\n", "smtp.network_prefix_v4"),
        (
            "[smtp]\nstress_threshold_percent = 0\n",
            "smtp.stress_threshold_percent",
        ),
        (
            "[smtp]\nstress_timeout_secs = 0\n",
            "smtp.stress_timeout_secs",
        ),
    ];
    for (text, key) in cases {
        let e = Config::parse(text, Some(Path::new("c.toml"))).unwrap_err();
        assert_eq!(e.line, Some(2), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
    }
}

#[test]
fn arc_seal_section() {
    let c = Config::parse("", None).unwrap();
    assert_eq!(c.arc_seal.mode, SealMode::Off);
    let text = "[arc.seal]\nseal = \"outbound\"\ndomain = \"Lists.Example.org.\"\nselector = \"arc\"\nkey_file = \"keys/arc.pem\"\n";
    let c = Config::parse(text, Some(Path::new("/etc/am/a.toml"))).unwrap();
    assert_eq!(c.arc_seal.mode, SealMode::Outbound);
    assert_eq!(c.arc_seal.domain, "lists.example.org");
    assert_eq!(c.arc_seal.key_file, PathBuf::from("/etc/am/keys/arc.pem"));
    assert_eq!(c.arc_seal.origin.as_deref(), Some("/etc/am/a.toml:5"));
    assert!(c.arc_seal.headers.iter().any(|h| h == "DKIM-Signature"));
    // Off needs nothing else.
    assert!(Config::parse("[arc.seal]\nseal = \"off\"\n", None).is_ok());
}

#[test]
fn arc_seal_errors_name_their_key() {
    let cases = [
        ("[arc.seal]\nseal = \"always\"\n", 2, "arc.seal.seal"),
        ("[arc.seal]\nseal = \"verified\"\ndomain = \"x.example\"\n", 2, "arc.seal.seal"),
        ("[arc.seal]\nseal = \"verified\"\ndomain = \"not a domain\"\nselector = \"s\"\nkey_file = \"k\"\n", 3, "arc.seal.domain"),
        ("[arc.seal]\ndomain = \"x.example\"\n", 2, "arc.seal.domain"),
        ("[arc.seal]\nseal = \"verified\"\nheaders = [\"From\", \"Received\"]\n", 3, "arc.seal.headers"),
        ("[arc.seal]\nseal = \"verified\"\nheaders = [\"To\"]\n", 3, "arc.seal.headers"),
        ("[arc.seal]\nseel = \"verified\"\n", 2, "arc.seal.seel"),
    ];
    for (text, line, key) in cases {
        let e = Config::parse(text, Some(Path::new("c.toml"))).unwrap_err();
        assert_eq!(e.line, Some(line), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
    }
}

#[test]
fn reports_received_keys_are_read_and_checked() {
    let text = r#"
[reports]
rua_addresses = ["DMARC-RUA@Example.COM."]
owned_domains = ["Example.com", "example.org."]
foreign = "drop"
deliver_imported = false
max_import_size = 2048
"#;
    let c = Config::parse(text, None).unwrap();
    let r = &c.reports;
    assert_eq!(r.rua_addresses, vec!["DMARC-RUA@example.com".to_string()]);
    assert_eq!(r.owned_domains, vec!["example.com", "example.org"]);
    assert_eq!(r.foreign, ForeignReports::Drop);
    assert!(!r.deliver_imported);
    assert_eq!(r.max_import_size, 2048);
    let d = Config::parse("", None).unwrap().reports;
    assert_eq!(
        (d.foreign, d.deliver_imported),
        (ForeignReports::Keep, true)
    );
    assert_eq!(d.max_import_size, 10 * 1024 * 1024);
    let cases = [
        (
            "[reports]\nrua_addresses = [\"nobody\"]\n",
            2,
            "reports.rua_addresses",
        ),
        (
            "[reports]\n\nowned_domains = [\"a..b\"]\n",
            3,
            "reports.owned_domains",
        ),
        ("[reports]\nforeign = \"maybe\"\n", 2, "reports.foreign"),
        (
            "[reports]\nmax_import_size = 100\n",
            2,
            "reports.max_import_size",
        ),
        (
            "[reports]\ndeliver_imported = \"no\"\n",
            2,
            "reports.deliver_imported",
        ),
    ];
    for (text, line, key) in cases {
        let e = Config::parse(text, Some(Path::new("r.toml"))).unwrap_err();
        assert_eq!(e.line, Some(line), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("r.toml:{line}: key `{key}`")),
            "{e}"
        );
    }
}

#[test]
fn submission_listeners_auth_and_senders_are_read_and_checked() {
    let text = r#"
[smtp]
tls_cert = "cert.pem"
tls_key = "key.pem"

[[smtp.listeners]]
address = "0.0.0.0:25"

[[smtp.listeners]]
address = "0.0.0.0:587"
role = "submission"

[[smtp.listeners]]
address = "0.0.0.0:465"
role = "submission"
tls = "implicit"

[[smtp.listeners]]
address = "127.0.0.1:10587"
role = "submission"
require_tls = false
plaintext_auth = true
trusted_without_auth = false

[smtp.auth]
passwd_file = "users.passwd"
max_failures_per_ip = 4
block_secs = 60
failure_delay_ms = 250
max_messages_per_hour = 100
failure_prefix_v6 = 56
known_network_days = 7
tracked_entries = 5000

[smtp.senders]
"alice" = ["Alice@Example.com", "@example.org"]
"admin" = ["*"]
"#;
    let c = Config::parse(text, Some(Path::new("/etc/am/authmilter.toml"))).unwrap();
    let s = &c.smtp;
    // Listeners given: no implicit legacy one.
    assert_eq!(s.listen, None);
    let roles: Vec<_> = s
        .listeners
        .iter()
        .map(|l| (l.role, l.tls, l.require_tls))
        .collect();
    assert_eq!(
        roles,
        [
            (Role::Mx, TlsMode::StartTls, false),
            (Role::Submission, TlsMode::StartTls, true),
            (Role::Submission, TlsMode::Implicit, true),
            (Role::Submission, TlsMode::StartTls, false),
        ]
    );
    assert!(s.listeners[3].plaintext_auth && !s.listeners[3].trusted_without_auth);
    assert_eq!(
        s.auth.backend,
        Some(AuthBackend::PasswdFile("/etc/am/users.passwd".into()))
    );
    assert_eq!(s.auth.max_failures_per_ip, 4);
    assert_eq!(s.auth.block, Duration::from_secs(60));
    assert_eq!(s.auth.failure_delay, Duration::from_millis(250));
    assert_eq!(s.auth.max_messages_per_hour, 100);
    assert_eq!(s.auth.max_recipients_per_hour, 2000);
    assert_eq!(
        (s.auth.failure_prefix_v4, s.auth.failure_prefix_v6),
        (32, 56)
    );
    assert_eq!(s.auth.known_network, Duration::from_secs(7 * 86_400));
    assert_eq!(s.auth.tracked_entries, 5000);
    let senders = s.senders.as_ref().unwrap();
    assert_eq!(senders["alice"], ["alice@example.com", "@example.org"]);

    let head = "[smtp]\ntls_cert = \"c\"\ntls_key = \"k\"\n[smtp.auth]\npasswd_file = \"p\"\n";
    let cases = [
        // Plain-text AUTH off loopback.
        (
            format!("{head}[[smtp.listeners]]\naddress = \"0.0.0.0:587\"\nplaintext_auth = true\n"),
            8,
        ),
        (format!("{head}[[smtp.listeners]]\naddress = \"587\"\n"), 7),
        (
            format!("{head}[[smtp.listeners]]\naddress = \"0.0.0.0:587\"\nrole = \"msa\"\n"),
            8,
        ),
        (
            format!("{head}[[smtp.listeners]]\naddress = \"0.0.0.0:465\"\ntls = \"ssl\"\n"),
            8,
        ),
        (format!("{head}[smtp.senders]\nbob = [\"bob@\"]\n"), 7),
        (format!("{head}max_failures_per_ip = 0\n"), 6),
        (format!("{head}failure_prefix_v4 = 33\n"), 6),
        (format!("{head}tracked_entries = 10\n"), 6),
        // A submission listener without a back end; implicit TLS without a certificate.
        (
            "[smtp]\n[[smtp.listeners]]\naddress = \"0.0.0.0:587\"\nrole = \"submission\"\nrequire_tls = false\n".into(),
            3,
        ),
        (
            "[smtp]\n[[smtp.listeners]]\naddress = \"0.0.0.0:465\"\ntls = \"implicit\"\n".into(),
            3,
        ),
    ];
    for (text, line) in cases {
        let e = Config::parse(&text, Some(Path::new("c.toml"))).unwrap_err();
        assert_eq!(e.line, Some(line), "{text}: {e}");
    }
}
