//! Everything that can go wrong with the connection is a 451 the client will retry, and
//! never an `Ok`.

use std::time::Instant;

use super::*;

#[tokio::test]
async fn closed_mid_data_is_451_never_ok() {
    let script = [
        hello(EHLO_PLAIN),
        vec![Hear, OK, Hear, OK, Hear, GO_AHEAD, Close],
    ]
    .concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    let message = b"Subject: big\r\n\r\n".repeat(20_000);
    assert_tempfail(send_one(&mut hop, &message).await, "4.4.2");
    fake.transcript().await;
}

#[tokio::test]
async fn silent_next_hop_times_out_as_451() {
    let fake = Fake::start(vec![vec![Hang]], None).await;
    let mut hop = RelaySession::new(RelayConfig {
        command_timeout: Duration::from_millis(300),
        ..config(&fake.addr)
    });
    let started = Instant::now();
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn missing_final_reply_times_out_as_451() {
    let waits = vec![Hear, OK, Hear, OK, Hear, GO_AHEAD, HearData, Hang];
    let fake = Fake::start(vec![[hello(EHLO_PLAIN), waits].concat()], None).await;
    let mut hop = RelaySession::new(RelayConfig {
        data_timeout: Duration::from_millis(300),
        ..config(&fake.addr)
    });
    assert_tempfail(send_one(&mut hop, b"x\r\n").await, "4.4.2");
}

#[tokio::test]
async fn endless_reply_line_is_451() {
    let fake = Fake::start(vec![vec![GREETING, Hear, Flood]], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
    fake.transcript().await;
}

#[tokio::test]
async fn garbage_greeting_is_451() {
    let fake = Fake::start(vec![vec![Say("hello, I am not SMTP\r\n")]], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
}

#[tokio::test]
async fn refusing_greeting_is_451_not_its_554() {
    // RFC 5321 §3.1: 554 means no service on this connection, not "reject this mail".
    let fake = Fake::start(vec![vec![Say("554 5.3.2 No service\r\n")]], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
}

#[tokio::test]
async fn mixed_code_final_reply_is_451_not_ok() {
    // RFC 5321 §4.2.1: a reply starting 250 and ending 451 is not an acceptance.
    let waits = vec![Hear, OK, Hear, OK, Hear, GO_AHEAD, HearData];
    let mixed = Say("250-2.0.0 Ok\r\n451 4.3.0 not really\r\n");
    let fake = Fake::start(vec![[hello(EHLO_PLAIN), waits, vec![mixed]].concat()], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    assert_tempfail(send_one(&mut hop, b"x\r\n").await, "4.4.2");
}

#[tokio::test]
async fn refused_connection_is_451_4_4_1() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut hop = RelaySession::new(config(&format!("127.0.0.1:{port}")));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.1",
    );
}

#[tokio::test]
async fn next_hop_421_is_451_and_ends_the_transaction() {
    let closing = vec![Hear, OK, Hear, Say("421 4.3.2 Shutting down\r\n"), Close];
    let fake = Fake::start(vec![[hello(EHLO_PLAIN), closing].concat()], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    hop.mail(&client(), "s@example.org", &params())
        .await
        .unwrap();
    // Passed on, a 421 would tell our client that *we* are closing.
    assert_tempfail(hop.rcpt("a@example.com").await, "4.4.2");
    // The connection is gone: later recipients are deferred too, never refused for good.
    assert_tempfail(hop.rcpt("b@example.com").await, "4.4.2");
    assert_tempfail(hop.data(b"x\r\n").await, "4.4.2");
}

#[tokio::test]
async fn refused_xforward_is_451_not_its_5xx() {
    // A misconfigured next hop must not bounce the client's mail.
    let refuses = vec![Hear, Say("550 5.7.1 Not authorized\r\n")];
    let fake = Fake::start(vec![[hello(EHLO_FULL), refuses].concat()], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    assert_tempfail(
        hop.mail(&client(), "s@example.org", &params()).await,
        "4.4.2",
    );
}
