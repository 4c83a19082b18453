//! Published DKIM vectors, verified through the loopback DNS server: RFC 8463 Appendix A
//! (Ed25519 and RSA signatures of one message) and Mail::DKIM's corpus (79 messages, with
//! the results RFC 6376 and RFC 8301 give them).

use crate::common::*;
use crate::dns_server::DnsServer;
use crate::dns_zone::Zone;
use authmilter::auth::AuthResult::{self, Fail, Pass, Permerror};
use authmilter::auth::{Transaction, Verifier};
use std::sync::Arc;

#[tokio::test]
async fn rfc8463_both_signatures_pass() {
    let dir = conformance_dir().join("dkim/rfc8463");
    let zone = Zone::from_txt_json_file(dir.join("dns.json")).unwrap();
    let server = DnsServer::start(zone).await;
    let verifier = Verifier::new(Arc::new(config_for(server.addr))).unwrap();
    let raw = std::fs::read(dir.join("A3-signed.eml")).unwrap();
    let conn = external("192.0.2.1", "relay.example");
    let mut tx = Transaction::begin(&verifier, &conn, "joe@football.example.com").await;
    tx.message(&raw);
    let outcome = tx.finish(&verifier).await;
    let mut results: Vec<_> = outcome
        .dkim
        .iter()
        .map(|d| (d.algorithm.clone(), d.result, d.selector.clone()))
        .collect();
    results.sort();
    assert_eq!(
        results,
        vec![
            (
                "ed25519-sha256".to_string(),
                AuthResult::Pass,
                "brisbane".to_string()
            ),
            (
                "rsa-sha256".to_string(),
                AuthResult::Pass,
                "test".to_string()
            ),
        ]
    );
}

/// Every Mail::DKIM corpus message through the verifier: (file, results top first, reasons).
async fn mail_dkim_corpus() -> Vec<(String, Vec<(AuthResult, Option<String>)>)> {
    let dir = conformance_dir().join("dkim/mail-dkim");
    let zone = Zone::from_txt_json_file(dir.join("dns.json")).unwrap();
    let server = DnsServer::start(zone).await;
    let verifier = Verifier::new(Arc::new(config_for(server.addr))).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let raw = std::fs::read(&path).unwrap();
        let conn = external("192.0.2.1", "relay.example");
        let mut tx = Transaction::begin(&verifier, &conn, "someone@example.net").await;
        tx.message(&raw);
        let outcome = tx.finish(&verifier).await;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((
            name,
            outcome
                .dkim
                .iter()
                .map(|d| (d.result, d.reason.clone()))
                .collect(),
        ));
    }
    out
}

/// The Mail::DKIM corpus's results under RFC 6376 and RFC 8301, by group: (results of the
/// message's signatures top first, each a result and a part of its reason; the files). The
/// corpus predates both RFCs in places (its README says to adapt, not copy): Mail::DKIM passes
/// pre-RFC drafts (no `v=`, `v=0.5`), `rsa-sha1` and 512-bit keys, and verifies DomainKeys
/// (RFC 4870, historic); each of those is refused here with the rule that refuses it first.
/// A signature's expected result and a part of its reason.
type Expected = (AuthResult, &'static str);

const MAIL_DKIM_GROUPS: &[(&[Expected], &[&str])] = &[
    // RFC 6376 §3.5: v= is required (drafts ietf-00 and ietf-01 had none).
    (
        &[(Permerror, "signature lacks the required tag v=")],
        &[
            "bad_1.txt",
            "bad_ietf01_1.txt",
            "bad_ietf01_2.txt",
            "bad_ietf01_3.txt",
            "good_ietf00_1.txt",
            "good_ietf00_2.txt",
            "good_ietf00_3.txt",
            "good_ietf00_4.txt",
            "good_ietf00_5.txt",
            "good_ietf01_1.txt",
            "good_ietf01_2.txt",
            "mine_ietf01_1.txt",
            "mine_ietf01_2.txt",
            "mine_ietf01_3.txt",
            "mine_ietf01_4.txt",
        ],
    ),
    (
        &[(Permerror, "signature lacks the required tag v="); 4],
        &["multiple_1.txt"],
    ),
    // RFC 6376 §3.5: v=1 only (draft signatures say v=0.5, ignore_1 says v=5).
    (
        &[(Permerror, "unsupported version v=0.5")],
        &[
            "badkey_1.txt",
            "badkey_2.txt",
            "badkey_3.txt",
            "badkey_4.txt",
            "badkey_5.txt",
            "badkey_6.txt",
            "badkey_7.txt",
            "ignore_2.txt",
            "ignore_3.txt",
            "ignore_4.txt",
            "mine_ietf05_1.txt",
            "no_body_1.txt",
            "no_body_2.txt",
            "no_body_3.txt",
        ],
    ),
    (&[(Permerror, "unsupported version v=5")], &["ignore_1.txt"]),
    // RFC 8301 §3.1: rsa-sha1 is never valid.
    (
        &[(Permerror, "rsa-sha1 is not accepted")],
        &[
            "bad_1878954.txt",
            "badkey_10.txt",
            "badkey_12.txt",
            "badkey_13.txt",
            "badkey_14.txt",
            "badkey_15.txt",
            "badkey_8.txt",
            "badkey_9.txt",
            "good_1878523.txt",
            "good_83176.txt",
            "good_qp_1.txt",
            "good_qp_2.txt",
            "good_qp_3.txt",
            "good_rfc4871_3.txt",
            "good_rfc4871_4.txt",
            "goodkey_1.txt",
            "goodkey_2.txt",
            "goodkey_3.txt",
            "goodkey_4.txt",
            "ignore_5.txt",
            "ignore_6.txt",
            "ignore_7.txt",
            "ignore_8.txt",
        ],
    ),
    // Three rsa-sha1 signatures and `DKIM-Signature: synerr` (RFC 6376 §3.2), which
    // mail-auth alone would drop.
    (
        &[
            (Permerror, "rsa-sha1 is not accepted"),
            (Permerror, "rsa-sha1 is not accepted"),
            (Permerror, "rsa-sha1 is not accepted"),
            (Permerror, "malformed signature: tag without '='"),
        ],
        &["multiple_2.txt"],
    ),
    // RFC 6376 §6.1.2: the key's h= (md5:sha1) lacks sha256; checked before its 512 bits.
    (
        &[(Permerror, "key record h=md5:sha1 does not list sha256")],
        &["badkey_11.txt"],
    ),
    // DomainKey-Signature only: no DKIM signature, `dkim=none`.
    (
        &[],
        &[
            "bad_dk_1.txt",
            "bad_dk_2.txt",
            "bad_dk_3.txt",
            "bad_dk_4.txt",
            "bad_dk_5.txt",
            "dk_headers_1.txt",
            "dk_headers_2.txt",
            "dk_multiple_1.txt",
            "good_dk_1.txt",
            "good_dk_2.txt",
            "good_dk_3.txt",
            "good_dk_4.txt",
            "good_dk_5.txt",
            "good_dk_6.txt",
            "good_dk_7.txt",
            "good_dk_gmail.txt",
            "good_dk_yahoo.txt",
        ],
    ),
    // RFC 8463: as Mail::DKIM expects them.
    (&[(Pass, "")], &["goodkey_ed25519.txt"]),
    (
        &[(Permerror, "invalid key record: ed25519 p= is not 32 bytes")],
        &["badkey1_ed25519.txt"],
    ),
    (
        &[(Fail, "signature did not verify")],
        &["badkey2_ed25519.txt"],
    ),
    (&[(Fail, "body hash mismatch")], &["badkey3_ed25519.txt"]),
    (&[(Permerror, "no key record")], &["badkey4_ed25519.txt"]),
    (
        &[(Permerror, "invalid key record")],
        &["badkey5_ed25519.txt"],
    ),
];

// RFC 6376 and RFC 8301 over Mail::DKIM's corpus: every message gets the results above, and
// none that Mail::DKIM finds invalid or failing passes here.
#[tokio::test]
async fn mail_dkim_corpus_gives_the_rfc_results() {
    let dir = conformance_dir().join("dkim/mail-dkim");
    let theirs: std::collections::HashMap<String, String> =
        std::fs::read_to_string(dir.join("expected-verifier.tsv"))
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect();
    let found = mail_dkim_corpus().await;
    assert_eq!(found.len(), 79, "the corpus has 79 messages");
    for (file, results) in &found {
        let groups: Vec<_> = MAIL_DKIM_GROUPS
            .iter()
            .filter(|(_, files)| files.contains(&file.as_str()))
            .collect();
        assert_eq!(groups.len(), 1, "{file} is in {} groups", groups.len());
        let want = groups[0].0;
        let got: Vec<AuthResult> = results.iter().map(|(r, _)| *r).collect();
        let want_results: Vec<AuthResult> = want.iter().map(|(r, _)| *r).collect();
        assert_eq!(got, want_results, "{file}: {results:?}");
        for ((_, reason), (_, part)) in results.iter().zip(want.iter()) {
            let reason = reason.as_deref().unwrap_or_default();
            assert!(reason.contains(part), "{file}: {reason:?} lacks {part:?}");
        }
        if matches!(
            theirs.get(file).map(String::as_str),
            Some("invalid" | "fail")
        ) {
            assert!(
                !got.contains(&Pass),
                "{file}: Mail::DKIM refuses it, we pass it"
            );
        }
    }
}
