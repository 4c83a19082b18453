//! The milter daemon in-process on port 0, driven by the test MTA (`milter_client`), with the
//! loopback DNS server: negotiation, verdicts as milter replies, several messages per
//! connection, abort, quit-nc, malformed input, reload and graceful shutdown.

use crate::common::*;
use crate::milter_client::*;
use authmilter::milter::command::Command;
use authmilter::milter::consts::*;
use authmilter::milter::reply::Reply;
use authmilter::server::Signal;
use std::time::Duration;

fn signed() -> Vec<u8> {
    sign_rsa(
        "example.com",
        &message("Alice <alice@example.com>", "hi", "Hello Bob.\r\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_answers_within_the_offer() {
    let d = Daemon::start(|_| {}).await;
    let mut mta = d.mta().await;
    assert_eq!(mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await, 6);
    assert_eq!(
        mta.actions,
        SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST
    );
    assert!(mta.protocol & SMFIP_HDR_LEADSPC != 0);
    assert!(mta.protocol & SMFIP_NR_HDR != 0 && mta.protocol & SMFIP_NR_BODY != 0);
    // The default policy never refuses at MAIL (spf_fail_at_mail = accept), so MAIL needs
    // no answer: one round trip less per message.
    assert!(mta.protocol & SMFIP_NR_MAIL != 0);
    assert!(mta.protocol & (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOHDRS | SMFIP_NOBODY) == 0);
    let wanted: String = mta
        .macros
        .iter()
        .map(|(_, m)| m.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for m in ["{auth_authen}", "i", "j", "{daemon_name}"] {
        assert!(
            wanted.split(' ').any(|w| w == m),
            "{m} not requested: {wanted}"
        );
    }
    // An old MTA offering less gets no more than it offered.
    let mut old = d.mta().await;
    assert_eq!(old.negotiate(2, SMFIF_ADDHDRS, 0).await, 2);
    assert_eq!((old.actions, old.protocol), (SMFIF_ADDHDRS, 0));
    assert!(old.macros.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_message_gets_authentication_results_on_top() {
    let d = Daemon::start(|_| {}).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let r = mta
        .message("4XQID1", "alice@example.com", None, &signed())
        .await;
    assert_eq!(r.last(), Some(&Reply::Continue), "{r:?}");
    let ar = inserted_ar(&r).expect("A-R inserted at index 0");
    assert!(ar.starts_with(" mx.test.example;\n\t"), "{ar:?}");
    assert!(
        ar.contains("dkim=pass") && ar.contains("dmarc=pass") && ar.contains("spf=pass"),
        "{ar}"
    );
    assert!(!ar.contains('\r'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_become_milter_replies() {
    let d = Daemon::start(|_| {}).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.66", "evil.example").await;
    // p=reject: 550 5.7.1, no header edits.
    let r = mta
        .message(
            "Q1",
            "ceo@example.com",
            None,
            &message("ceo@example.com", "pay", "x\r\n"),
        )
        .await;
    match r.as_slice() {
        [Reply::ReplyCode { text }] => assert!(text.as_str().starts_with("550 5.7.1 "), "{text}"),
        other => panic!("{other:?}"),
    }
    // p=quarantine: quarantine + continue, with the A-R.
    let r = mta
        .message(
            "Q2",
            "news@example.net",
            None,
            &message("news@example.net", "q", "x\r\n"),
        )
        .await;
    assert!(matches!(r.last(), Some(Reply::Continue)), "{r:?}");
    assert!(
        r.iter().any(|x| matches!(x, Reply::Quarantine { .. })),
        "{r:?}"
    );
    assert!(inserted_ar(&r).unwrap().contains("dmarc=fail"));
    // DMARC temperror: 451.
    let raw = sign_rsa("slow.example", &message("a@slow.example", "t", "x\r\n"));
    let r = mta.message("Q3", "a@slow.example", None, &raw).await;
    match r.as_slice() {
        [Reply::ReplyCode { text }] => assert!(text.as_str().starts_with("451 4.4.3 "), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authentication_results_are_deleted_by_index() {
    let d = Daemon::start(|_| {}).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let raw = [
        b"Authentication-Results: other.example; spf=pass\r\n".as_slice(),
        b"Authentication-Results: mx.test.example; dkim=pass\r\n",
        &signed(),
    ]
    .concat();
    let r = mta.message("F1", "alice@example.com", None, &raw).await;
    let deletes: Vec<_> = r
        .iter()
        .filter_map(|x| match x {
            Reply::ChangeHeader { index, name, value } => {
                Some((*index, name.as_str(), value.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(deletes, vec![(2, "Authentication-Results", "")]);
    // Deletions come before our insertion, so the index still means the original field.
    let del = r
        .iter()
        .position(|x| matches!(x, Reply::ChangeHeader { .. }))
        .unwrap();
    let ins = r
        .iter()
        .position(|x| matches!(x, Reply::InsertHeader { .. }))
        .unwrap();
    assert!(del < ins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_mail_is_accepted_unverified() {
    let d = Daemon::start(|_| {}).await;
    // MAIL answered (an MTA that offers no SMFIP_NR_MAIL): accepted there, nothing more sent.
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL & !SMFIP_NR_MAIL)
        .await;
    mta.connect_client("127.0.0.1", "localhost").await;
    let r = mta
        .message(
            "O1",
            "ceo@example.com",
            None,
            &message("ceo@example.com", "o", "x\r\n"),
        )
        .await;
    assert_eq!(r, vec![Reply::Accept]);
    // MAIL not answered: the message comes anyway and is let through at its end, untouched.
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    assert!(mta.protocol & SMFIP_NR_MAIL != 0);
    mta.connect_client("127.0.0.1", "localhost").await;
    let r = mta
        .message(
            "O1b",
            "ceo@example.com",
            None,
            &message("ceo@example.com", "o", "x\r\n"),
        )
        .await;
    assert_eq!(r, vec![Reply::Continue]);
    // Authenticated clients too, from anywhere.
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL & !SMFIP_NR_MAIL)
        .await;
    mta.connect_client("203.0.113.7", "laptop").await;
    let r = mta
        .message(
            "O2",
            "ceo@example.com",
            Some("ceo"),
            &message("ceo@example.com", "o", "x\r\n"),
        )
        .await;
    assert_eq!(r, vec![Reply::Accept]);
    assert_eq!(d.dns.queries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_messages_abort_and_quit_nc_on_one_connection() {
    let d = Daemon::start(|_| {}).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    for i in 0..3 {
        let r = mta
            .message(&format!("M{i}"), "alice@example.com", None, &signed())
            .await;
        assert!(
            inserted_ar(&r).unwrap().contains("dkim=pass"),
            "message {i}: {r:?}"
        );
    }
    // Abort in the middle of a message: back to the connection state. (MAIL is not
    // answered: SMFIP_NR_MAIL.)
    mta.macros(SMFIC_MAIL, &[("i", "AB1")]).await;
    assert_eq!(
        mta.step(
            Command::Mail {
                args: vec!["<a@example.org>".into()]
            },
            SMFIP_NR_MAIL
        )
        .await,
        vec![]
    );
    mta.step(
        Command::Header {
            name: "From".into(),
            value: b"a@example.org".to_vec(),
        },
        SMFIP_NR_HDR,
    )
    .await;
    mta.send(&Command::Abort).await;
    let r = mta
        .message("M4", "alice@example.com", None, &signed())
        .await;
    assert!(inserted_ar(&r).unwrap().contains("dkim=pass"));
    // QUIT_NC: a new SMTP client on the same milter connection.
    mta.send(&Command::QuitNewConnection).await;
    mta.connect_client("203.0.113.66", "evil.example").await;
    let r = mta
        .message(
            "M5",
            "ceo@example.com",
            None,
            &message("ceo@example.com", "x", "x\r\n"),
        )
        .await;
    assert!(matches!(r.as_slice(), [Reply::ReplyCode { .. }]), "{r:?}");
    mta.send(&Command::Quit).await;
    assert_eq!(mta.reply().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_answered_when_no_reply_flags_are_not_offered() {
    let d = Daemon::start(|_| {}).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, 0).await;
    assert_eq!(mta.protocol, 0);
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    // Without HDR_LEADSPC the MTA drops the space after the colon; DKIM must still pass.
    let r = mta
        .message("N1", "alice@example.com", None, &signed())
        .await;
    let ar = inserted_ar(&r).unwrap();
    assert!(ar.starts_with("mx.test.example;"), "{ar:?}");
    assert!(ar.contains("dkim=pass"), "{ar}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_that_connection() {
    let d = Daemon::start(|_| {}).await;
    let cases: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 0],                   // length 0
        vec![0x7f, 0, 0, 0, b'O'],          // over the cap
        vec![0, 0, 0, 1, b'Z'],             // unknown command
        vec![0, 0, 0, 5, b'O', 0, 0, 0, 6], // truncated option negotiation
    ];
    for bytes in cases {
        let mut mta = d.mta().await;
        mta.send_raw(&bytes).await;
        assert_eq!(
            mta.reply().await,
            None,
            "{bytes:?} did not close the connection"
        );
    }
    // Out of order: a header before negotiation, and one before MAIL.
    let mut mta = d.mta().await;
    mta.send(&Command::Header {
        name: "From".into(),
        value: b"x".to_vec(),
    })
    .await;
    assert_eq!(mta.reply().await, None);
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    mta.send(&Command::EndOfMessage { chunk: Vec::new() }).await;
    assert_eq!(mta.reply().await, None);
    // The daemon still serves.
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let r = mta
        .message("OK1", "alice@example.com", None, &signed())
        .await;
    assert!(inserted_ar(&r).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_skipped_and_tempfailed() {
    let d = Daemon::start(|c| c.limits.max_message_size = 4096).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let big = message("alice@example.com", "big", &"y".repeat(200_000));
    let r = mta.message("BIG", "alice@example.com", None, &big).await;
    match r.as_slice() {
        [Reply::ReplyCode { text }] => assert!(text.as_str().starts_with("452 4.3.1"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_to_new_sessions_only_and_survives_a_broken_config() {
    let d = Daemon::start(|_| {}).await;
    let mut old = d.mta().await;
    old.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    old.connect_client("192.0.2.10", "mail.example.com").await;

    d.next.lock().unwrap().authserv_id = "reloaded.example".into();
    d.control.send(Signal::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let r = old
        .message("R1", "alice@example.com", None, &signed())
        .await;
    assert!(
        inserted_ar(&r).unwrap().starts_with(" mx.test.example;"),
        "old session changed"
    );
    let mut new = d.mta().await;
    new.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    new.connect_client("192.0.2.10", "mail.example.com").await;
    let r = new
        .message("R2", "alice@example.com", None, &signed())
        .await;
    assert!(inserted_ar(&r).unwrap().starts_with(" reloaded.example;"));

    // A broken configuration (a policy folder that does not exist) is refused; the last good one stays.
    d.next.lock().unwrap().policy_dir = Some("/nonexistent/policies".into());
    d.control.send(Signal::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut after = d.mta().await;
    after.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    after.connect_client("192.0.2.10", "mail.example.com").await;
    let r = after
        .message("R3", "alice@example.com", None, &signed())
        .await;
    assert!(inserted_ar(&r).unwrap().starts_with(" reloaded.example;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_message_in_flight() {
    let d = Daemon::start(|_| {}).await;
    let mut idle = d.mta().await;
    idle.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    // MAIL answered, so the test knows the message is in flight before it stops the server.
    let mut busy = d.mta().await;
    busy.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL & !SMFIP_NR_MAIL)
        .await;
    busy.connect_client("192.0.2.10", "mail.example.com").await;
    busy.macros(SMFIC_MAIL, &[("i", "G1")]).await;
    assert_eq!(
        busy.step(
            Command::Mail {
                args: vec!["<alice@example.com>".into()]
            },
            0
        )
        .await,
        vec![Reply::Continue]
    );

    d.control.send(Signal::Graceful).await.unwrap();
    // The idle connection is closed; no new connections are taken.
    assert_eq!(idle.reply().await, None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(d.addr).await.is_err() || {
            // The port may still accept at the OS level for a moment; it must not be served.
            let mut late = d.mta().await;
            late.send(&Command::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0,
            })
            .await;
            tokio::time::timeout(Duration::from_secs(2), late.reply())
                .await
                .map(|r| r.is_none())
                .unwrap_or(true)
        }
    );
    // The message in flight completes with a verdict.
    let raw = signed();
    let (headers, body) = split_message(&raw, true);
    for (name, value) in headers {
        busy.send(&Command::Header { name, value }).await;
    }
    busy.send(&Command::EndOfHeaders).await;
    busy.send(&Command::Body { chunk: body }).await;
    busy.send(&Command::EndOfMessage { chunk: Vec::new() })
        .await;
    let r = busy.replies().await;
    assert!(inserted_ar(&r).unwrap().contains("dkim=pass"), "{r:?}");
    assert_eq!(busy.reply().await, None, "closed after the message");
    tokio::time::timeout(Duration::from_secs(5), d.task)
        .await
        .expect("server stopped")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_gets_skip_when_body_chunks_are_answered() {
    let d = Daemon::start(|c| c.limits.max_message_size = 4096).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL & !SMFIP_NR_BODY)
        .await;
    assert!(mta.protocol & SMFIP_SKIP != 0 && mta.protocol & SMFIP_NR_BODY == 0);
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let big = message("alice@example.com", "big", &"y".repeat(200_000));
    let r = mta.message("BIG2", "alice@example.com", None, &big).await;
    match r.as_slice() {
        [Reply::ReplyCode { text }] => assert!(text.as_str().starts_with("452 4.3.1"), "{text}"),
        other => panic!("{other:?}"),
    }
}

/// Rebuilds the message as the MTA will write it: inserted fields on top.
fn with_inserted(replies: &[Reply], raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in replies {
        if let Reply::InsertHeader { name, value, .. } = r {
            out.extend_from_slice(format!("{name}:{}\r\n", value.replace('\n', "\r\n")).as_bytes());
        }
    }
    out.extend_from_slice(raw);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_mail_is_dual_signed_in_one_reply_batch() {
    let dir = tempfile::tempdir().unwrap();
    let keys = signing_keys(dir.path());
    let d = Daemon::start(move |c| c.signing.add_keys(keys)).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("127.0.0.1", "localhost").await;
    let raw = message("Alice <alice@example.com>", "out", "Hello \r\n \r\n");
    let r = mta.message("S1", "alice@example.com", None, &raw).await;
    let names: Vec<_> = r
        .iter()
        .map(|x| match x {
            Reply::InsertHeader { index, name, .. } => format!("{index}:{name}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["0:DKIM-Signature", "1:DKIM-Signature", "Continue"]);
    assert_eq!(d.dns.queries(), 0, "outbound mail is not verified");

    // Both signatures verify as an inbound receiver sees them.
    let env = Env::new().await;
    let signed = with_inserted(&r, &raw);
    let v = env
        .check("203.0.113.5", "relay.example", "alice@example.com", &signed)
        .await;
    let results: Vec<_> = v
        .outcome
        .dkim
        .iter()
        .map(|x| (x.selector.as_str(), x.result.as_str()))
        .collect();
    assert_eq!(results, [("rsa", "pass"), ("ed", "pass")]);

    // A From domain without keys is passed on unsigned.
    let r = mta
        .message(
            "S2",
            "a@example.org",
            None,
            &message("a@example.org", "o", "x\r\n"),
        )
        .await;
    assert_eq!(r, vec![Reply::Continue]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_sender_is_refused_when_policy_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let first = signing_keys(dir.path());
    let d = Daemon::start(move |c| {
        c.signing.add_keys(first);
        c.signing.users = Some([("bob".to_string(), vec!["example.net".to_string()])].into());
        c.signing.on_unauthorised = authmilter::config::OnUnauthorised::Reject;
    })
    .await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.9", "laptop").await;
    let raw = message("ceo@example.com", "spoof", "x\r\n");
    let r = mta
        .message("U1", "bob@example.net", Some("bob"), &raw)
        .await;
    match r.as_slice() {
        [Reply::ReplyCode { text }] => assert!(text.as_str().starts_with("550 5.7.1 "), "{text}"),
        other => panic!("{other:?}"),
    }
    let d2 = Daemon::start({
        let second = signing_keys(dir.path());
        move |c| {
            c.signing.add_keys(second);
            c.signing.users = Some([("bob".to_string(), vec!["example.net".to_string()])].into());
        }
    })
    .await;
    // With the default (skip), the message goes through unsigned.
    let mut mta = d2.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("203.0.113.9", "laptop").await;
    let r = mta
        .message("U2", "bob@example.net", Some("bob"), &raw)
        .await;
    assert_eq!(r, vec![Reply::Continue]);
}

// A policy that refuses SPF fail at MAIL (`spf_fail_at_mail = "reject"`) needs MAIL answered:
// SMFIP_NR_MAIL is then not negotiated, and the refusal comes at MAIL, before the content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_answered_when_the_policy_refuses_there() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_dir(dir.path(), "spf_fail_at_mail = \"reject\"\n");
    let d = Daemon::start(move |c| c.policy_dir = Some(policy)).await;
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    assert!(mta.protocol & SMFIP_NR_MAIL == 0);
    assert!(mta.protocol & SMFIP_NR_HDR != 0);
    // example.com's SPF allows 192.0.2.0/24 only.
    mta.connect_client("203.0.113.66", "evil.example").await;
    let r = mta
        .message("S1", "alice@example.com", None, &signed())
        .await;
    match r.as_slice() {
        [Reply::ReplyCode { text, .. }] => {
            assert!(text.as_str().starts_with("550 5.7.23"), "{text:?}")
        }
        other => panic!("not refused at MAIL: {other:?}"),
    }
    // A sender SPF allows goes on to the end of the message.
    let mut mta = d.mta().await;
    mta.negotiate(6, POSTFIX_ACTIONS, POSTFIX_PROTOCOL).await;
    mta.connect_client("192.0.2.10", "mail.example.com").await;
    let r = mta
        .message("S2", "alice@example.com", None, &signed())
        .await;
    assert!(inserted_ar(&r).unwrap().contains("spf=pass"), "{r:?}");
}
