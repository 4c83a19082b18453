//! RFC 6376 rules mail-auth 0.13.3 leaves to the core (DESIGN.md items 8 and 9): the key
//! record's `h=`, `s=`, `t=s` and `k=`, keys under 1024 bits, DKIM-Signature fields that do
//! not parse, `q=` and `i=`. Each test signs a message with the test keys and varies the key
//! record in the loopback zone (or the signature's tags), then runs it through
//! `check_message`, the end-of-message step every door calls; one goes through the HTTP API,
//! the verdict store and the aggregate report.

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use crate::http::{call, wait_for};
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use authmilter::auth::{AuthResult, DkimOutcome, Verifier};
use authmilter::check::Decision;
use authmilter::milter::reply::Reply;
use authmilter::policy::Policy;
use authmilter::report::aggregate::{Aggregate, Reporter, RowKey};
use authmilter::store::Store;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use std::sync::Arc;

/// The public half of testdata/keys/rsa512.pem (`openssl pkey -pubout -outform DER | base64`).
const RSA512_PUB: &str = "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAN1AKtZFJxrrvQgKoJU5PiYgBtwFs2JA2/f9GnZOUmxtJMomgI3TGB3ixOnxFRgQTTR+ll7KC4PGERF2npV2t88CAwEAAQ==";

/// The public half of the 2048-bit test key (testdata/keys/rsa2048.pem).
fn rsa_pub() -> String {
    std::fs::read_to_string(testdata("keys/rsa2048.pub.b64"))
        .unwrap()
        .trim()
        .to_string()
}

/// The main test zone plus key records `selector._domainkey.example.com`.
async fn env_with(records: &[(&str, String)]) -> Env {
    let mut zone = Zone::from_file(testdata("dns/main.zone")).unwrap();
    for (selector, value) in records {
        zone.txt(&format!("{selector}._domainkey.example.com"), value);
    }
    let dns = DnsServer::start(zone).await;
    let verifier = Verifier::new(Arc::new(config_for(dns.addr))).unwrap();
    Env {
        dns,
        verifier,
        policy: Policy::default(),
    }
}

/// A DKIM-Signature field by the 2048-bit test key for example.com under `selector`
/// (relaxed/relaxed), with `i=` when given.
fn signature(selector: &str, auid: Option<&str>, msg: &[u8]) -> String {
    let mut signer = DkimSigner::from_key(rsa_key())
        .domain("example.com")
        .selector(selector)
        .headers(["From", "To", "Subject", "Date", "Message-ID"]);
    if let Some(i) = auid {
        signer = signer.agent_user_identifier(i);
    }
    signer.sign(msg).unwrap().to_header()
}

/// `field` with its tag `name` set to `value` (added at the front when absent) or, for
/// `None`, removed; the rest byte for byte.
fn with_tag(field: &str, name: &str, value: Option<&str>) -> String {
    let field = field.trim_end_matches("\r\n");
    let (head, tags) = field.split_once(':').unwrap();
    let mut found = false;
    let mut specs: Vec<String> = Vec::new();
    for spec in tags.split(';') {
        match spec.split_once('=') {
            Some((n, _)) if n.trim() == name => {
                found = true;
                if let Some(v) = value {
                    specs.push(format!(" {name}={v}"));
                }
            }
            _ => specs.push(spec.to_string()),
        }
    }
    if !found {
        if let Some(v) = value {
            specs.insert(0, format!(" {name}={v}"));
        }
    }
    format!("{head}:{}\r\n", specs.join(";"))
}

fn msg(subject: &str) -> Vec<u8> {
    message("alice@example.com", subject, "Hello\r\n")
}

async fn check(env: &Env, raw: &[u8]) -> Decision {
    env.check("203.0.113.1", "h.example", "x@elsewhere.example", raw)
        .await
}

fn only(d: &Decision) -> &DkimOutcome {
    assert_eq!(d.outcome.dkim.len(), 1, "{:?}", d.outcome.dkim);
    &d.outcome.dkim[0]
}

fn unfolded_ar(d: &Decision) -> String {
    d.authentication_results()
        .unwrap()
        .replace("\r\n\t  ", " ")
        .replace("\r\n\t", " ")
}

/// The one signature is `permerror` for a reason containing `why`, in the outcome and in
/// Authentication-Results, and DMARC does not pass on it.
fn assert_permerror(d: &Decision, why: &str) {
    let o = only(d);
    assert_eq!(o.result, AuthResult::Permerror, "{o:?}");
    let reason = o.reason.as_deref().unwrap_or_default();
    assert!(reason.contains(why), "{reason:?} lacks {why:?}");
    let ar = unfolded_ar(d);
    assert!(ar.contains("dkim=permerror ("), "{ar}");
    assert!(ar.contains(why), "{ar}");
    assert_ne!(d.outcome.dmarc.as_ref().unwrap().result, AuthResult::Pass);
}

fn assert_pass(d: &Decision) {
    let o = only(d);
    assert_eq!(o.result, AuthResult::Pass, "{o:?}");
    assert_eq!(d.outcome.dmarc.as_ref().unwrap().result, AuthResult::Pass);
}

// RFC 6376 §6.1.2 step 6 (§3.6.1 h=): a key whose h= lacks the signature's hash is ignored.
#[tokio::test]
async fn dkim_key_h_without_the_signatures_hash_is_permerror() {
    let p = rsa_pub();
    let env = env_with(&[
        ("hsha1", format!("v=DKIM1; k=rsa; h=sha1; p={p}")),
        ("hnew", format!("v=DKIM1; h=sha512; p={p}")),
        ("hboth", format!("v=DKIM1; h=sha1:SHA256; p={p}")),
    ])
    .await;
    for (selector, why) in [("hsha1", "h=sha1"), ("hnew", "h=sha512")] {
        let m = msg(selector);
        let d = check(
            &env,
            &[signature(selector, None, &m).as_bytes(), &m].concat(),
        )
        .await;
        assert_permerror(&d, why);
        assert_permerror(&d, "does not list sha256");
    }
    let m = msg("hboth");
    assert_pass(
        &check(
            &env,
            &[signature("hboth", None, &m).as_bytes(), &m].concat(),
        )
        .await,
    );
}

// RFC 6376 §3.6.1 s=: a key for neither `email` nor `*` must be ignored.
#[tokio::test]
async fn dkim_key_s_without_email_is_permerror() {
    let p = rsa_pub();
    let env = env_with(&[
        ("chat", format!("v=DKIM1; s=chat; p={p}")),
        ("chatmail", format!("v=DKIM1; s=chat:Email; p={p}")),
        ("any", format!("v=DKIM1; s=*; p={p}")),
    ])
    .await;
    let m = msg("chat");
    let d = check(&env, &[signature("chat", None, &m).as_bytes(), &m].concat()).await;
    assert_permerror(&d, "s=chat does not list email");
    for selector in ["chatmail", "any"] {
        let m = msg(selector);
        assert_pass(
            &check(
                &env,
                &[signature(selector, None, &m).as_bytes(), &m].concat(),
            )
            .await,
        );
    }
}

// RFC 6376 §3.6.1 t=s: the domain of i= must be d= itself, not a subdomain.
#[tokio::test]
async fn dkim_key_t_s_requires_i_in_d_itself() {
    let p = rsa_pub();
    let env = env_with(&[
        ("strict", format!("v=DKIM1; t=y:s; p={p}")),
        ("loose", format!("v=DKIM1; t=y; p={p}")),
    ])
    .await;
    let m = msg("strict-sub");
    let sig = signature("strict", Some("joe@mail.example.com"), &m);
    assert_permerror(&check(&env, &[sig.as_bytes(), &m].concat()).await, "t=s");
    let m = msg("strict-same");
    let sig = signature("strict", Some("joe@example.com"), &m);
    assert_pass(&check(&env, &[sig.as_bytes(), &m].concat()).await);
    let m = msg("loose-sub");
    let sig = signature("loose", Some("joe@mail.example.com"), &m);
    assert_pass(&check(&env, &[sig.as_bytes(), &m].concat()).await);
}

// RFC 6376 §3.6.1: unknown tags in a key record are ignored; §3.2: a duplicate tag is not.
#[tokio::test]
async fn dkim_key_unknown_tags_ignored_duplicate_tags_refused() {
    let p = rsa_pub();
    let env = env_with(&[
        (
            "extra",
            format!("v=DKIM1; n=notes; zz=whatever; g=*; p={p}"),
        ),
        ("twice", format!("v=DKIM1; h=sha256; p={p}; h=sha1")),
    ])
    .await;
    let m = msg("extra");
    assert_pass(
        &check(
            &env,
            &[signature("extra", None, &m).as_bytes(), &m].concat(),
        )
        .await,
    );
    let m = msg("twice");
    let d = check(
        &env,
        &[signature("twice", None, &m).as_bytes(), &m].concat(),
    )
    .await;
    assert_permerror(&d, "invalid key record: duplicate tag h");
}

// RFC 6376 §6.1.2 step 5 and §3.6.1 k=: the key type must be the signature's, and known.
#[tokio::test]
async fn dkim_key_k_must_match_the_algorithm() {
    let env = env_with(&[
        (
            "edkey",
            "v=DKIM1; k=ed25519; p=yyiiWiJrD0g71rTX05ozJLm1nNGhZCnVlj4VIlmXSGI=".to_string(),
        ),
        ("future", format!("v=DKIM1; k=future; p={}", rsa_pub())),
    ])
    .await;
    let m = msg("edkey");
    let d = check(
        &env,
        &[signature("edkey", None, &m).as_bytes(), &m].concat(),
    )
    .await;
    assert_permerror(&d, "k=ed25519 does not match a=rsa-sha256");
    let m = msg("future");
    let d = check(
        &env,
        &[signature("future", None, &m).as_bytes(), &m].concat(),
    )
    .await;
    assert_permerror(&d, "unsupported key type k=");
}

// RFC 8301 §3.2: RSA keys under 1024 bits are never valid, and the reason says so.
#[tokio::test]
async fn dkim_key_shorter_than_1024_bits_says_so() {
    let env = env_with(&[("short", format!("v=DKIM1; k=rsa; p={RSA512_PUB}"))]).await;
    let m = msg("short");
    let d = check(
        &env,
        &[signature("short", None, &m).as_bytes(), &m].concat(),
    )
    .await;
    assert_permerror(&d, "key shorter than 1024 bits");
}

// RFC 6376 §6.1.1 / §3.5: a signature lacking a required tag is PERMFAIL, never `none`.
#[tokio::test]
async fn dkim_signature_missing_required_tag_is_permerror() {
    let env = Env::new().await;
    for tag in ["bh", "v", "h", "s"] {
        let m = msg(&format!("no-{tag}"));
        let sig = with_tag(&signature("rsa", None, &m), tag, None);
        let d = check(&env, &[sig.as_bytes(), &m].concat()).await;
        assert_permerror(&d, &format!("lacks the required tag {tag}="));
        assert_eq!(only(&d).domain, "example.com");
        assert!(!unfolded_ar(&d).contains("dkim=none"));
    }
    // Without d= the result still names what it can.
    let m = msg("no-d");
    let sig = with_tag(&signature("rsa", None, &m), "d", None);
    let d = check(&env, &[sig.as_bytes(), &m].concat()).await;
    assert_permerror(&d, "lacks the required tag d=");
    assert_eq!(only(&d).domain, "");
}

// RFC 6376 §3.5: b= and bh= are base64; a field whose b= is not cannot be evaluated.
#[tokio::test]
async fn dkim_signature_b_not_base64_is_permerror() {
    let env = Env::new().await;
    let m = msg("b64");
    let sig = with_tag(&signature("rsa", None, &m), "b", Some("not*base64!"));
    assert_permerror(
        &check(&env, &[sig.as_bytes(), &m].concat()).await,
        "b= is not base64",
    );
    let m = msg("bh64");
    let sig = with_tag(&signature("rsa", None, &m), "bh", Some("@@@@"));
    assert_permerror(
        &check(&env, &[sig.as_bytes(), &m].concat()).await,
        "bh= is not base64",
    );
}

// RFC 6376 §3.2: a tag list with a duplicate tag is invalid as a whole.
#[tokio::test]
async fn dkim_signature_duplicate_tag_is_permerror() {
    let env = Env::new().await;
    let m = msg("dup");
    let sig =
        signature("rsa", None, &m).replacen("d=example.com", "d=example.com; d=example.com", 1);
    assert_permerror(
        &check(&env, &[sig.as_bytes(), &m].concat()).await,
        "duplicate tag d",
    );
}

// RFC 6376 §3.5 v=: only version 1 is defined; another one is PERMFAIL.
#[tokio::test]
async fn dkim_signature_unknown_version_is_permerror() {
    let env = Env::new().await;
    let m = msg("v2");
    let sig = with_tag(&signature("rsa", None, &m), "v", Some("2"));
    assert_permerror(
        &check(&env, &[sig.as_bytes(), &m].concat()).await,
        "unsupported version v=2",
    );
}

// RFC 6376 §6.1.1 and RFC 8601 §2.7.1: a field without tags is a signature that failed, and
// `none` stays for unsigned mail.
#[tokio::test]
async fn dkim_signature_without_tags_is_permerror_not_none() {
    let env = Env::new().await;
    let m = msg("empty");
    let d = check(&env, &[b"DKIM-Signature: \r\n".as_slice(), &m].concat()).await;
    assert_permerror(&d, "signature has no tags");
    let d = check(&env, &m).await;
    assert!(d.outcome.dkim.is_empty());
    assert!(unfolded_ar(&d).contains("dkim=none"));
}

// RFC 6376 §3.5 q=: dns/txt is the only query method; without it no key can be fetched.
#[tokio::test]
async fn dkim_signature_q_without_dns_txt_is_permerror() {
    let env = Env::new().await;
    for q in ["http", "dns/special:foo"] {
        let m = msg(&format!("q-{q}"));
        let sig = with_tag(&signature("rsa", None, &m), "q", Some(q));
        let d = check(&env, &[sig.as_bytes(), &m].concat()).await;
        assert_permerror(&d, &format!("no known query method in q={q}"));
    }
    // dns/txt among others is fetched (q= is not signed here, so the signature then fails).
    let m = msg("q-ok");
    let sig = with_tag(&signature("rsa", None, &m), "q", Some("foo/bar:DNS/TXT"));
    let o = only(&check(&env, &[sig.as_bytes(), &m].concat()).await).clone();
    assert_eq!(o.result, AuthResult::Fail, "{o:?}");
}

// RFC 6376 §6.1.1: an i= whose domain is neither d= nor below it is PERMFAIL (not `fail`).
#[tokio::test]
async fn dkim_signature_i_outside_d_is_permerror() {
    let env = Env::new().await;
    let m = msg("i-out");
    let sig = signature("rsa", Some("joe@example.org"), &m);
    let d = check(&env, &[sig.as_bytes(), &m].concat()).await;
    assert_permerror(&d, "i=joe@example.org is not within d=example.com");
    let m = msg("i-look-alike");
    let sig = signature("rsa", Some("joe@badexample.com"), &m);
    assert_permerror(
        &check(&env, &[sig.as_bytes(), &m].concat()).await,
        "is not within d=",
    );
    let m = msg("i-sub");
    let sig = signature("rsa", Some("joe@mail.example.com"), &m);
    assert_pass(&check(&env, &[sig.as_bytes(), &m].concat()).await);
}

// The cap on signatures counts every DKIM-Signature field, parsed or not, top first.
#[tokio::test]
async fn dkim_signature_cap_counts_unparsable_fields() {
    let env = Env::with_config(|c| c.limits.max_dkim_signatures = 2).await;
    let m = msg("cap");
    let good = signature("rsa", None, &m);
    let broken = with_tag(&good, "bh", None);
    let raw = [good.as_bytes(), broken.as_bytes(), broken.as_bytes(), &m].concat();
    let d = check(&env, &raw).await;
    let results: Vec<AuthResult> = d.outcome.dkim.iter().map(|o| o.result).collect();
    assert_eq!(results, [AuthResult::Pass, AuthResult::Permerror]);
    assert_eq!(d.outcome.dkim_ignored, 1);
}

// RFC 6376 §6.1.1 and RFC 9990 §3.1.3: the refused field reaches the milter's
// Authentication-Results, the HTTP API's document, the stored verdicts and the aggregate
// report's auth_results, beside the valid signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_unparsable_signature_reaches_milter_api_store_and_report() {
    let d = Daemon::start_with_api(|_| {}).await;
    let api = d.http.unwrap();
    let m = msg("everywhere");
    let good = signature("rsa", None, &m);
    let broken = with_tag(&good, "bh", None);
    let raw = [broken.as_bytes(), good.as_bytes(), &m].concat();

    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.1", "mx.example.com").await;
    let replies = mta.message("Q1", "alice@example.com", None, &raw).await;
    let ar = replies
        .iter()
        .find_map(|r| match r {
            Reply::InsertHeader { name, value, .. } if name == "Authentication-Results" => {
                Some(value.replace("\n\t  ", " ").replace("\n\t", " "))
            }
            _ => None,
        })
        .expect("an Authentication-Results field");
    assert!(
        ar.contains("dkim=permerror (signature lacks the required tag bh="),
        "{ar}"
    );
    assert!(ar.contains("dkim=pass"), "{ar}");

    let target = "/v1/check?ip=192.0.2.1&helo=mx.example.com&mail_from=%3Calice%40example.com%3E&rcpt=bob%40example.net";
    let r = call(api, "POST", target, None, &raw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["dkim"][0]["result"], "permerror", "{doc}");
    assert!(doc["dkim"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("lacks the required tag bh="));
    assert_eq!(doc["dkim"][1]["result"], "pass", "{doc}");
    assert_eq!(doc["dmarc"]["result"], "pass");

    // Both doors' verdicts are stored with both results.
    let page = wait_for(api, "/v1/verdicts?message_id=%3Ceverywhere%40test%3E", 2).await;
    for item in page["items"].as_array().unwrap() {
        assert_eq!(item["dkim"][0]["result"], "permerror", "{item}");
        assert_eq!(item["dkim"][1]["result"], "pass", "{item}");
    }

    // The milter's message counts in the report (a check over the API does not).
    let path = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let store = Store::open(&path).unwrap();
    let report = Aggregate::collect(&store, "example.com", 0..i64::MAX, "r1".into())
        .unwrap()
        .expect("example.com asks for aggregate reports");
    assert_eq!(report.messages, 1);
    let row: &RowKey = &report.rows[0].0;
    let dkim: Vec<(&str, &str, &str)> = row
        .dkim
        .iter()
        .map(|d| (d.domain.as_str(), d.selector.as_str(), d.result.as_str()))
        .collect();
    assert_eq!(
        dkim,
        [
            ("example.com", "rsa", "permerror"),
            ("example.com", "rsa", "pass")
        ]
    );
    let why = row.dkim[0].human_result.as_deref().unwrap_or_default();
    assert!(why.contains("lacks the required tag bh="), "{why}");
    assert_eq!(row.dkim[1].human_result, None);
    let xml = report.to_xml(&Reporter {
        org_name: "t".into(),
        email: "r@mx.test.example".into(),
        extra_contact_info: None,
    });
    assert!(xml.contains("<result>permerror</result>"), "{xml}");
    assert!(
        xml.contains("<human_result>signature lacks the required tag bh="),
        "{xml}"
    );
}
