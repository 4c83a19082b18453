//! DMARC aggregate reports out (issue "DMARC reporting"): a store filled by real milter and
//! SMTP traffic through the loopback DNS server, turned into reports that validate against
//! the schema (xmllint), parse back in parsedmarc with the same figures, go only to
//! authorised destinations within their size limits, travel through a real Postfix next hop,
//! and are sent exactly once.
//!
//! Peers (xmllint from libxml2-utils, parsedmarc in the virtualenv `.ci/run` makes, Postfix)
//! are skipped when missing unless `AUTHMILTER_REQUIRE_PEERS=1`.

use crate::common::*;
use crate::milter_client::{Daemon, POSTFIX_ACTIONS, POSTFIX_PROTOCOL};
use crate::postfix::{find_program, free_port, skip};
use crate::smtp_client::send_plain;
use crate::smtp_front::downstream;
use authmilter::auth::Verifier;
use authmilter::config::{Config, Delivery, ReportDelivery};
use authmilter::dates::{now_ms, utc_day_start, DAY_MS};
use authmilter::report::send::{Selection, Sender, State};
use authmilter::store::{Filter, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where `.ci/run` installs parsedmarc (override with AUTHMILTER_PARSEDMARC).
const PARSEDMARC: &str = "/opt/authmilter-venv/bin/parsedmarc";

/// Today's UTC period and a `now` just after it, so today's traffic is reportable.
fn today() -> (std::ops::Range<i64>, i64) {
    let start = utc_day_start(now_ms());
    (start..start + DAY_MS, start + DAY_MS + 1)
}

fn signed_from(local: &str, subject: &str) -> Vec<u8> {
    sign_rsa(
        "reports.example",
        &message(
            &format!("{local} <{local}@reports.example>"),
            subject,
            "Quarterly figures attached.\r\n",
        ),
    )
}

/// Sends the traffic every test here reports on; returns the store's path.
/// 192.0.2.10 (milter): 3 signed messages, DMARC pass. 203.0.113.5 (milter): 2 unsigned,
/// DMARC fail, quarantined. 127.0.0.1 (SMTP front end): 1 signed, DKIM passes, SPF fails.
async fn traffic(d: &Daemon) -> PathBuf {
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.reports.example")
        .await;
    for i in 0..3 {
        let raw = signed_from("alice", &format!("pass-{i}"));
        mta.message(&format!("P{i}"), "alice@reports.example", None, &raw)
            .await;
    }
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.5", "spoofer.example").await;
    for i in 0..2 {
        let raw = message(
            "Mallory <ceo@reports.example>",
            &format!("fail-{i}"),
            "Pay.\r\n",
        );
        mta.message(&format!("F{i}"), "ceo@reports.example", None, &raw)
            .await;
    }
    let port = d.smtp.unwrap().port();
    let sent = tokio::task::spawn_blocking(move || {
        send_plain(
            port,
            "alice@reports.example",
            &["bob@example.net"],
            &signed_from("alice", "via-smtp"),
        )
    })
    .await
    .unwrap();
    assert_eq!(sent.reply.code, 250, "{sent}");
    let path = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    // The writer stores records as they come; wait for all six.
    let started = Instant::now();
    loop {
        let n = Store::open(&path)
            .unwrap()
            .list(&Filter::default(), 100)
            .unwrap()
            .items
            .len();
        if n >= 6 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{n} records");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    path
}

async fn daemon(maildir: &Path) -> Daemon {
    let m = maildir.to_path_buf();
    Daemon::start_with_api(move |c| {
        c.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
        c.smtp.listen = Some("127.0.0.1:0".parse().unwrap());
        c.smtp.local_domains = vec!["example.net".into()];
        c.smtp.delivery = Delivery::Maildir(m);
    })
    .await
}

/// The reporting configuration of the tests: the daemon's DNS, our identity, `delivery`.
fn report_config(d: &Daemon, delivery: ReportDelivery) -> Config {
    let mut c = config_for(d.dns.addr);
    c.reports.email = Some("dmarc-reports@mx.test.example".into());
    c.reports.org_name = Some("authmilter tests".into());
    c.reports.delivery = Some(delivery);
    c.reports.retry = Duration::from_secs(60);
    c.reports.max_attempts = 2;
    c
}

async fn run(
    config: &Config,
    store: &Path,
    selection: &Selection,
    now: i64,
) -> Vec<authmilter::report::send::Sent> {
    let store = Arc::new(Mutex::new(Store::open(store).unwrap()));
    let verifier = Verifier::new(Arc::new(config.clone())).unwrap();
    Sender::new(config)
        .run(&store, verifier.dns(), selection, now)
        .await
        .unwrap()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut xml).unwrap();
    xml
}

/// The report attachment of a report message.
fn attachment(eml: &[u8]) -> (String, Vec<u8>) {
    use mail_parser::MimeHeaders;
    let parsed = mail_parser::MessageParser::default().parse(eml).unwrap();
    let part = parsed.attachment(0).expect("an attachment");
    (
        part.attachment_name().unwrap().to_string(),
        part.contents().to_vec(),
    )
}

/// Validates a report against RFC 9990's schema as published (Appendix A), read from
/// `$AUTHMILTER_REFERENCE/rfc9990-aggregate-report.xsd`.
pub fn validate(xml_path: &Path) {
    let Some(xmllint) = find_program("xmllint") else {
        skip::<()>("xmllint (libxml2-utils) not installed");
        return;
    };
    let schema = reference_dir().join("rfc9990-aggregate-report.xsd");
    assert!(
        schema.is_file(),
        "{} missing: set AUTHMILTER_REFERENCE to the shared reference directory",
        schema.display()
    );
    let out = Command::new(xmllint)
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(xml_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xmllint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// parsedmarc's reading of a report message: source IP -> (count, disposition, dkim, spf).
fn parsedmarc(eml: &Path) -> Option<BTreeMap<String, (u64, String, String, String)>> {
    parsedmarc_for(eml, "reports.example")
}

/// As [`parsedmarc`], for a report about `domain`.
fn parsedmarc_for(
    eml: &Path,
    domain: &str,
) -> Option<BTreeMap<String, (u64, String, String, String)>> {
    let program = std::env::var("AUTHMILTER_PARSEDMARC").unwrap_or(PARSEDMARC.into());
    if !Path::new(&program).is_file() {
        return skip("parsedmarc not installed (.ci/run makes its virtualenv)");
    }
    let out = Command::new(&program)
        .arg("--offline")
        .arg(eml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parsedmarc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let report = &json["aggregate_reports"][0];
    assert_eq!(report["policy_published"]["domain"], domain);
    let mut rows = BTreeMap::new();
    for r in report["records"].as_array().unwrap() {
        let ip = r["source"]["ip_address"].as_str().unwrap().to_string();
        let e = &r["policy_evaluated"];
        let entry = rows
            .entry(ip)
            .or_insert((0, String::new(), String::new(), String::new()));
        entry.0 += r["count"].as_u64().unwrap();
        entry.1 = e["disposition"].as_str().unwrap().to_string();
        entry.2 = e["dkim"].as_str().unwrap().to_string();
        entry.3 = e["spf"].as_str().unwrap().to_string();
    }
    Some(rows)
}

// RFC 9990: a day of real milter and SMTP traffic becomes one report per policy domain,
// which validates against the schema, carries the figures sent, and goes only where it may
// (RFC 7489 §7.1 authorisation, `!size` limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_report_from_real_traffic_validates_and_parses_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir.path().join("Maildir")).await;
    let store = traffic(&d).await;
    let outbox = dir.path().join("outbox");
    let config = report_config(&d, ReportDelivery::Outbox(outbox.clone()));
    let (day, now) = today();
    let selection = Selection {
        ending: day.clone(),
        ..Selection::default()
    };

    // Dry run: what would go to whom, nothing sent or recorded.
    let dry = run(
        &config,
        &store,
        &Selection {
            dry_run: true,
            ..selection.clone()
        },
        now,
    )
    .await;
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert_eq!(dry[0].state, State::WouldSend);
    assert_eq!(dry[0].messages, 6);
    assert_eq!(dry[0].to, ["dmarc@reports.example", "agg@example.net"]);
    let left: Vec<&str> = dry[0].left_out.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(left, ["agg@example.org", "small@reports.example"]);
    assert!(!outbox.exists(), "a dry run writes nothing");

    let sent = run(&config, &store, &selection, now).await;
    assert_eq!(sent[0].state, State::Sent, "{sent:?}");
    let files: Vec<PathBuf> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let eml = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&eml);
    let parsed = mail_parser::MessageParser::default().parse(&eml).unwrap();
    let subject = parsed.subject().unwrap();
    assert!(
        subject.starts_with(
            "Report Domain: reports.example Submitter: mx.test.example Report-ID: <reports.example!"
        ),
        "{subject}"
    );
    assert!(
        text.contains("To: <dmarc@reports.example>, <agg@example.net>"),
        "{text}"
    );
    let (name, gz) = attachment(&eml);
    assert!(
        name.starts_with(&format!(
            "mx.test.example!reports.example!{}!{}!",
            day.start / 1000,
            day.end / 1000
        )) && name.ends_with(".xml.gz"),
        "{name}"
    );
    let xml = gunzip(&gz);
    let xml_path = dir.path().join("report.xml");
    std::fs::write(&xml_path, &xml).unwrap();
    validate(&xml_path);
    assert!(
        xml.contains("<policy_published>") && xml.contains("<p>quarantine</p>"),
        "{xml}"
    );

    assert!(xml.contains("<disposition>pass</disposition>"), "{xml}");
    let want: BTreeMap<String, (u64, String, String, String)> = [
        ("127.0.0.1", (1, "pass", "pass", "fail")),
        ("192.0.2.10", (3, "pass", "pass", "pass")),
        ("203.0.113.5", (2, "quarantine", "fail", "fail")),
    ]
    .into_iter()
    .map(|(ip, (n, d, k, s))| (ip.to_string(), (n, d.into(), k.into(), s.into())))
    .collect();
    // Our own importer reads the message back with the same figures.
    let found = authmilter::report::import::parse_input(&eml, 10 << 20);
    assert_eq!(found.len(), 1);
    let report = found[0].report.as_ref().expect("our report imports");
    let ours = authmilter::report::received::to_new_report(report, now);
    assert_eq!(
        (ours.domain.as_str(), ours.messages, ours.dmarc_pass),
        ("reports.example", 6, 4)
    );
    let mut read_back = BTreeMap::new();
    for row in &ours.rows {
        let e = read_back.entry(row.source_ip.clone()).or_insert((
            0,
            String::new(),
            String::new(),
            String::new(),
        ));
        e.0 += row.count;
        (e.1, e.2, e.3) = (row.disposition.clone(), row.dkim.clone(), row.spf.clone());
    }
    assert_eq!(read_back, want);
    if let Some(rows) = parsedmarc(&files[0]) {
        assert_eq!(rows, want);
    }

    // Exactly once: the next run finds it sent and sends nothing.
    let again = run(&config, &store, &selection, now).await;
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
}

// RFC 9990 Appendix A as published: a null-sender message (SPF checked on the HELO name) for a
// domain whose record has sp= and np= gives a report that validates against the published
// schema (scope `mfrom` only: the null sender's MAIL FROM identity is postmaster@<HELO>,
// RFC 7208 §2.4), carries generator, np, discovery_method and testing, and parsedmarc reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_sender_report_validates_against_rfc9990_as_published() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir.path().join("Maildir")).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.20", "mx.bounces.example").await;
    let raw = message(
        "Mail Delivery System <MAILER-DAEMON@bounces.example>",
        "Undelivered Mail Returned to Sender",
        "Your message could not be delivered.\r\n",
    );
    mta.message("B1", "", None, &raw).await;
    let store = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let started = Instant::now();
    while Store::open(&store)
        .unwrap()
        .list(&Filter::default(), 10)
        .unwrap()
        .items
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outbox = dir.path().join("outbox");
    let config = report_config(&d, ReportDelivery::Outbox(outbox.clone()));
    let (day, now) = today();
    let sent = run(
        &config,
        &store,
        &Selection {
            ending: day,
            ..Selection::default()
        },
        now,
    )
    .await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].state, State::Sent, "{sent:?}");
    let file = std::fs::read_dir(&outbox)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (_, gz) = attachment(&std::fs::read(&file).unwrap());
    let xml = gunzip(&gz);
    let xml_path = dir.path().join("null-sender.xml");
    std::fs::write(&xml_path, &xml).unwrap();
    validate(&xml_path);
    let flat: String = xml.split_whitespace().collect();
    for want in [
        "<spf><domain>mx.bounces.example</domain><scope>mfrom</scope><result>pass</result></spf>",
        "<envelope_from>mx.bounces.example</envelope_from>",
        "<sp>quarantine</sp>",
        "<np>reject</np>",
        "<discovery_method>treewalk</discovery_method>",
        "<testing>n</testing>",
        concat!(
            "<generator>authmilter",
            env!("CARGO_PKG_VERSION"),
            "</generator>"
        ),
    ] {
        assert!(flat.contains(want), "{want}: {xml}");
    }
    if let Some(rows) = parsedmarc_for(&file, "bounces.example") {
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows["192.0.2.20"].0, 1, "{rows:?}");
    }
}

// A next hop that is down: the report waits (pending, its attempt counted) and is not tried
// again before its retry time; once the next hop is back it goes, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_report_is_retried_later_and_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir.path().join("Maildir")).await;
    let store = traffic(&d).await;
    let closed = format!("127.0.0.1:{}", free_port());
    let config = report_config(&d, ReportDelivery::Relay(closed));
    let (day, now) = today();
    let selection = Selection {
        ending: day,
        ..Selection::default()
    };
    let first = run(&config, &store, &selection, now).await;
    assert!(matches!(first[0].state, State::Retry(_)), "{first:?}");
    // Before the retry time: untouched.
    assert!(run(&config, &store, &selection, now + 1000)
        .await
        .is_empty());
    // The next hop is back (an outbox stands in for it here); after the wait it goes.
    let outbox = dir.path().join("outbox");
    let config = report_config(&d, ReportDelivery::Outbox(outbox.clone()));
    let later = now + 61_000;
    let second = run(&config, &store, &selection, later).await;
    assert_eq!(second[0].state, State::Sent, "{second:?}");
    assert!(run(&config, &store, &selection, later + 10_000_000)
        .await
        .is_empty());
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
    let row = Store::open(&store)
        .unwrap()
        .sent_report("reports.example", selection.ending.start)
        .unwrap()
        .unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 2));
}

// The report travels through a real Postfix next hop and lands in the destination's mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_through_a_real_postfix_next_hop() {
    let Some((postfix, port, _scratch)) = downstream("") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir.path().join("Maildir")).await;
    let store = traffic(&d).await;
    let config = report_config(&d, ReportDelivery::Relay(format!("127.0.0.1:{port}")));
    let (day, now) = today();
    let sent = run(
        &config,
        &store,
        &Selection {
            ending: day,
            ..Selection::default()
        },
        now,
    )
    .await;
    assert_eq!(sent[0].state, State::Sent, "{sent:?}");
    let delivered = postfix
        .delivered("Report Domain: reports.example", Duration::from_secs(15))
        .expect("the report reaches agg@example.net's mailbox");
    let (name, gz) = attachment(delivered.as_bytes());
    assert!(name.ends_with(".xml.gz"));
    assert!(gunzip(&gz).contains("<count>3</count>"));
}

// ri=21600: a domain that asks for six-hour reports gets one per six hours, each aligned
// to UTC midnight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_ri_sets_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir.path().join("Maildir")).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.hourly.example")
        .await;
    let raw = message("Bo <bo@hourly.example>", "ri", "Hi.\r\n");
    mta.message("R1", "bo@hourly.example", None, &raw).await;
    let store = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let outbox = dir.path().join("outbox");
    let config = report_config(&d, ReportDelivery::Outbox(outbox));
    let (day, _) = today();
    let received = now_ms();
    let started = Instant::now();
    let results = loop {
        let results = run(
            &config,
            &store,
            &Selection {
                ending: day.clone(),
                dry_run: true,
                ..Selection::default()
            },
            day.end + 1,
        )
        .await;
        if !results.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break results;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(results.len(), 1, "{results:?}");
    let period = &results[0].period;
    assert_eq!(period.end - period.start, 6 * 3_600_000);
    assert!(period.contains(&received), "{period:?} {received}");
    assert_eq!((period.start - day.start) % (6 * 3_600_000), 0);
}

/// A daemon with failure reports on, written to `<dir>/outbox`, at most `per_hour` per domain.
async fn failure_reporting(per_hour: u32) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("outbox");
    let d = Daemon::start(move |c| {
        c.reports.failure = true;
        c.reports.email = Some("dmarc-reports@mx.test.example".into());
        c.reports.delivery = Some(ReportDelivery::Outbox(o));
        c.reports.failure_per_hour = per_hour;
    })
    .await;
    (dir, d)
}

/// The files in `outbox` once there are `n` of them, or what is there after 10 s.
async fn outbox_files(outbox: &Path, n: usize) -> Vec<PathBuf> {
    let started = Instant::now();
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(outbox)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if files.len() >= n || started.elapsed() > Duration::from_secs(10) {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// RFC 6591 / RFC 7489 §7.3: with failure reports on, a message failing DMARC for a domain
// with ruf= and fo=1 gets an ARF auth-failure report, local parts redacted, at most
// reports.failure_per_hour per domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reports_are_arf_redacted_and_rate_limited() {
    let (dir, d) = failure_reporting(2).await;
    let outbox = dir.path().join("outbox");
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.5", "spoofer.example").await;
    for i in 0..3 {
        let raw = message(
            "Mallory <ceo@reports.example>",
            &format!("fail-{i}"),
            "Pay.\r\n",
        );
        mta.message(&format!("F{i}"), "ceo@reports.example", None, &raw)
            .await;
    }
    // A passing message: no report.
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.reports.example")
        .await;
    let raw = signed_from("alice", "pass");
    mta.message("P0", "alice@reports.example", None, &raw).await;

    let files = outbox_files(&outbox, 2).await;
    // The third one is over the hourly limit: it never comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 2);
    let eml = std::fs::read(&files[0]).unwrap();
    use mail_parser::MimeHeaders;
    let parsed = mail_parser::MessageParser::default().parse(&eml).unwrap();
    assert_eq!(
        parsed.content_type().map(|c| (c.ctype(), c.subtype())),
        Some(("multipart", Some("report")))
    );
    let text = String::from_utf8_lossy(&eml);
    for want in [
        "Feedback-Type: auth-failure",
        "Auth-Failure: dmarc",
        "Reported-Domain: reports.example",
        "Source-IP: 203.0.113.5",
        "To: fail@reports.example",
        "From: Mallory <redacted@reports.example>",
        // RFC 9991 §5: SPF failed for the aligned MAIL FROM domain; no DKIM signature.
        "Identity-Alignment: spf",
        "SPF-DNS: txt : reports.example : v=spf1 ip4:192.0.2.0/24 -all",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(!text.contains("DKIM-Domain:"), "{text}");
    assert!(!text.contains("ceo@"), "{text}");
}

// RFC 9991 §5 and §2: Identity-Alignment names the mechanisms that failed for an aligned
// identifier, with DKIM-Domain/-Identity/-Selector for the aligned signature that failed (a
// third party's failed signature is not it); a psd=y record's ruf= gets no report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reports_name_the_aligned_identifiers_that_failed() {
    let (dir, d) = failure_reporting(10).await;
    let outbox = dir.path().join("outbox");
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.5", "relay.example.net").await;
    // First: a Public Suffix Domain's own record asks for failure reports.
    let raw = message("Eve <eve@psd-ruf.example>", "psd", "Hello.\r\n");
    mta.message("S0", "eve@psd-ruf.example", None, &raw).await;
    // Then: signed by the author's domain and by a third party, altered on the way; MAIL
    // FROM in another organisation (SPF has no aligned identifier).
    let body = "Quarterly figures attached.\r\n";
    let signed = sign_rsa(
        "example.com",
        &sign_rsa(
            "reports.example",
            &message("Alice <alice@reports.example>", "altered", body),
        ),
    );
    let altered = String::from_utf8(signed)
        .unwrap()
        .replace("figures attached", "figures changed!");
    mta.message("S1", "list@example.net", None, altered.as_bytes())
        .await;

    let files = outbox_files(&outbox, 1).await;
    // The task takes reports in order: the psd=y one was decided before this one was sent.
    assert_eq!(files.len(), 1, "{files:?}");
    let text = String::from_utf8_lossy(&std::fs::read(&files[0]).unwrap()).into_owned();
    for want in [
        "Reported-Domain: reports.example",
        "Identity-Alignment: dkim\r\n",
        "DKIM-Domain: reports.example",
        "DKIM-Identity: @reports.example",
        "DKIM-Selector: rsa",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(!text.contains("DKIM-Domain: example.com"), "{text}");
    assert!(!text.contains("SPF-DNS:"), "{text}");
    assert!(!text.contains("psd-ruf.example"), "{text}");
}

/// Yesterday's verdicts for reports.example, written straight into the store as the
/// writer would have: `n` messages from 192.0.2.10 that passed.
fn yesterdays_records(store: &Path, n: usize) -> std::ops::Range<i64> {
    yesterdays_records_at(&store.to_path_buf().into(), n)
}

/// As [`yesterdays_records`], in the store at `location` (call it off the async threads).
pub(crate) fn yesterdays_records_at(
    location: &authmilter::store::Location,
    n: usize,
) -> std::ops::Range<i64> {
    use authmilter::auth::Published;
    use authmilter::check::{DkimRow, DmarcEvent};
    use authmilter::store::{Record, Transport};
    let day = utc_day_start(now_ms()) - DAY_MS;
    let policy = Published {
        domain: "reports.example".into(),
        adkim: "r".into(),
        aspf: "r".into(),
        p: "quarantine".into(),
        sp: "quarantine".into(),
        np: "quarantine".into(),
        testing: false,
        fo: "1".into(),
        rua: vec![("dmarc@reports.example".into(), 0)],
        ruf: vec![],
    };
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            received_at: day + 1000 * i as i64,
            transport: Transport::Milter,
            queue_id: Some(format!("Y{i}")),
            message_id: None,
            client_ip: "192.0.2.10".into(),
            helo: None,
            mail_from: Some("alice@reports.example".into()),
            rcpts: vec!["bob@example.net".into()],
            rcpt_count: 1,
            from_domain: Some("reports.example".into()),
            verdict: "accept".into(),
            dmarc: Some("pass".into()),
            duration: Duration::from_millis(1),
            document: serde_json::json!({}),
            dmarc_event: Some(DmarcEvent {
                policy: policy.clone(),
                header_from: "reports.example".into(),
                envelope_from: "reports.example".into(),
                envelope_to: Some("example.net".into()),
                disposition: "pass".into(),
                dkim_aligned: true,
                spf_aligned: true,
                reasons: vec![],
                dkim: vec![DkimRow {
                    domain: "reports.example".into(),
                    selector: "rsa".into(),
                    result: "pass".into(),
                    human_result: None,
                }],
                spf: ("reports.example".into(), "mfrom".into(), "pass".into()),
            }),
        })
        .collect();
    Store::connect(location)
        .unwrap()
        .insert_batch(&records)
        .unwrap();
    day..day + DAY_MS
}

// serve sends what is due on its own, every reports.check_interval, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sends_yesterdays_report_on_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let o = outbox.clone();
    let d = Daemon::start_with_api(move |c| {
        c.reports.aggregate = true;
        c.reports.email = Some("dmarc-reports@mx.test.example".into());
        c.reports.delivery = Some(ReportDelivery::Outbox(o));
        c.reports.check_interval = Duration::from_millis(300);
    })
    .await;
    let store = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let day = yesterdays_records(&store, 4);
    let started = Instant::now();
    while std::fs::read_dir(&outbox).map_or(0, |d| d.count()) == 0 {
        // A bound, not a speed: the job runs every 300 ms; the machine may be loaded.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no report sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several more runs: still one report.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 1);
    let row = Store::open(&store)
        .unwrap()
        .sent_report("reports.example", day.start)
        .unwrap()
        .unwrap();
    assert_eq!((row.state.as_str(), row.messages), ("sent", 4));
}

// `authmilter report send --dry-run` (the real binary): what would go to whom, nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_send_dry_run_prints_what_would_go_to_whom() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(&dir.path().join("Maildir")).await;
    let store = d.store_dir.as_ref().unwrap().path().join("verdicts.sqlite");
    let day = yesterdays_records(&store, 2);
    let date = authmilter::dates::format_rfc3339(day.start)[..10].to_string();
    let config = dir.path().join("authmilter.toml");
    std::fs::write(
        &config,
        "[reports]\nemail = \"dmarc-reports@mx.test.example\"\n",
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let store = store.clone();
        let ns = d.dns.addr.to_string();
        move || {
            Command::new(env!("CARGO_BIN_EXE_authmilter"))
                .args(["report", "send", "--dry-run", "--period", &date])
                .arg("--config")
                .arg(&config)
                .arg("--store")
                .arg(&store)
                .args(["--nameserver", &ns])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("would send: reports.example ")
            && stdout.contains("(2 messages,")
            && stdout.contains("to: dmarc@reports.example"),
        "{stdout}"
    );
    let sent = Store::open(&store)
        .unwrap()
        .sent_report("reports.example", day.start)
        .unwrap();
    assert_eq!(sent, None, "a dry run records nothing");
}

// Issue 22 §6: with a PostgreSQL store the hourly failure-report limit per domain is the
// fleet's: two reports sent by one host use up the hour's allowance of two, and the second
// host sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_one_hourly_failure_report_limit() {
    let Some(pg) = crate::pg_cluster::PgCluster::start() else {
        return;
    };
    pg.create_db("ruf");
    let dir = tempfile::tempdir().unwrap();
    let outboxes = [dir.path().join("one"), dir.path().join("two")];
    let host = |i: usize| {
        let o = outboxes[i].clone();
        let pg = &pg;
        move |c: &mut authmilter::config::Config| {
            crate::fleet::use_pg(c, pg, "ruf", ["mx1", "mx2"][i]);
            c.reports.failure = true;
            c.reports.email = Some("dmarc-reports@mx.test.example".into());
            c.reports.delivery = Some(ReportDelivery::Outbox(o));
            c.reports.failure_per_hour = 2;
        }
    };
    let (one, two) = tokio::join!(Daemon::start(host(0)), Daemon::start(host(1)));
    let count = |o: &Path| std::fs::read_dir(o).map(|d| d.count()).unwrap_or(0);
    for (d, n) in [(&one, 2), (&two, 1)] {
        let mut mta = d.mta().await;
        mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
        mta.connect_client("203.0.113.5", "spoofer.example").await;
        for i in 0..n {
            let raw = message(
                "Mallory <ceo@reports.example>",
                &format!("f{i}"),
                "Pay.\r\n",
            );
            mta.message(&format!("F{i}"), "ceo@reports.example", None, &raw)
                .await;
        }
        if n == 2 {
            let started = Instant::now();
            while count(&outboxes[0]) < 2 && started.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(count(&outboxes[0]), 2);
        }
    }
    // The second host's report is over the fleet's hourly limit: it never comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&outboxes[1]), 0);
}
