//! What the relay writes, and what it returns when the next hop accepts or refuses.

use super::*;

#[tokio::test]
async fn relays_with_xforward_params_and_dot_stuffing() {
    let script = [
        hello(EHLO_FULL),
        vec![
            Hear,
            OK,
            Hear,
            Say("250 2.1.0 Ok\r\n"),
            Hear,
            Say("250 2.1.5 Ok\r\n"),
        ],
        vec![
            Hear,
            Say("550 5.1.1 <b@example.com>: Recipient address rejected\r\n"),
        ],
        vec![Hear, Say("452 4.5.3 Error: too many recipients\r\n")],
        vec![Hear, GO_AHEAD, HearData, QUEUED],
        QUIT.to_vec(),
    ]
    .concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    hop.mail(&client(), "s@example.org", &params())
        .await
        .unwrap();
    hop.rcpt("a@example.com").await.unwrap();
    // Refusals come back exactly as the next hop said them, per recipient.
    let unknown = SmtpReply::new(550, "5.1.1", "<b@example.com>: Recipient address rejected");
    assert_eq!(hop.rcpt("b@example.com").await, Err(unknown));
    let full = SmtpReply::new(452, "4.5.3", "Error: too many recipients");
    assert_eq!(hop.rcpt("c@example.com").await, Err(full));
    let message = b"Subject: dots\r\n\r\n.leading\r\n..\r\nno final newline";
    let queued = SmtpReply::new(250, "2.0.0", "Ok: queued as 4ABC");
    assert_eq!(hop.data(message).await, Ok(queued));
    hop.quit().await;
    assert_eq!(
        fake.transcript().await,
        "EHLO filter.example\r\n\
         XFORWARD NAME=[UNAVAILABLE] ADDR=192.0.2.1 PROTO=ESMTP HELO=client.example\r\n\
         MAIL FROM:<s@example.org> SIZE=42 BODY=8BITMIME\r\n\
         RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n\
         DATA\r\nSubject: dots\r\n\r\n..leading\r\n...\r\nno final newline\r\n.\r\n\
         QUIT\r\n"
    );
}

#[tokio::test]
async fn refused_message_ends_the_transaction_and_the_connection_is_kept() {
    let script = [
        hello(EHLO_PLAIN),
        vec![Hear, OK, Hear, OK, Hear, GO_AHEAD, HearData],
        vec![Say("554 5.7.1 Message rejected\r\n")],
        // The next transaction needs no RSET (RFC 5321 §4.1.1.4) and no new connection.
        vec![Hear, Say("451 4.7.1 Greylisted, try later\r\n")],
        QUIT.to_vec(),
    ]
    .concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    let rejected = SmtpReply::new(554, "5.7.1", "Message rejected");
    assert_eq!(send_one(&mut hop, b"x\r\n").await, Err(rejected));
    let greylisted = SmtpReply::new(451, "4.7.1", "Greylisted, try later");
    let sender = hop
        .mail(&client(), "t@example.org", &MailParams::default())
        .await;
    assert_eq!(sender, Err(greylisted));
    hop.quit().await;
    let transcript = fake.transcript().await;
    let end = ".\r\nMAIL FROM:<t@example.org>\r\nQUIT\r\n";
    assert!(transcript.ends_with(end), "{transcript}");
}

#[tokio::test]
async fn helo_fallback_sends_no_extensions() {
    let script = [
        vec![
            GREETING,
            Hear,
            Say("502 5.5.2 Error: command not recognized\r\n"),
        ],
        vec![Hear, Say("250 fake.example\r\n"), Hear, OK],
        QUIT.to_vec(),
    ]
    .concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    hop.mail(&client(), "s@example.org", &params())
        .await
        .unwrap();
    hop.quit().await;
    assert_eq!(
        fake.transcript().await,
        "EHLO filter.example\r\nHELO filter.example\r\nMAIL FROM:<s@example.org>\r\nQUIT\r\n"
    );
}

#[tokio::test]
async fn smtputf8_not_offered_is_550_5_6_7() {
    let fake = Fake::start(vec![[hello(EHLO_FULL), QUIT.to_vec()].concat()], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    let utf8 = MailParams {
        smtputf8: true,
        ..MailParams::default()
    };
    let refused = hop
        .mail(&client(), "pelé@example.org", &utf8)
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code, refused.status.as_deref()),
        (550, Some("5.6.7"))
    );
    hop.quit().await;
    assert_eq!(fake.transcript().await, "EHLO filter.example\r\nQUIT\r\n");
}

#[tokio::test]
async fn xforward_can_be_turned_off() {
    let script = [hello(EHLO_FULL), vec![Hear, OK], QUIT.to_vec()].concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(RelayConfig {
        xforward: false,
        ..config(&fake.addr)
    });
    hop.mail(&client(), "s@example.org", &MailParams::default())
        .await
        .unwrap();
    hop.quit().await;
    assert_eq!(
        fake.transcript().await,
        "EHLO filter.example\r\nMAIL FROM:<s@example.org>\r\nQUIT\r\n"
    );
}

#[tokio::test]
async fn rset_on_reset_and_before_a_mail_left_open() {
    // MAIL, RCPT, RSET; MAIL; RSET and MAIL (the transaction was left open); QUIT.
    let replies = [Hear, OK].repeat(6);
    let script = [hello(EHLO_PLAIN), replies, QUIT.to_vec()].concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    let none = MailParams::default();
    hop.mail(&client(), "a@example.org", &none).await.unwrap();
    hop.rcpt("r@example.com").await.unwrap();
    hop.reset().await;
    hop.reset().await; // nothing open: nothing sent
    hop.mail(&client(), "b@example.org", &none).await.unwrap();
    hop.mail(&client(), "c@example.org", &none).await.unwrap();
    hop.quit().await;
    assert_eq!(
        fake.transcript().await,
        "EHLO filter.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.com>\r\nRSET\r\n\
         MAIL FROM:<b@example.org>\r\nRSET\r\nMAIL FROM:<c@example.org>\r\nQUIT\r\n"
    );
}

#[tokio::test]
async fn reconnects_once_when_the_kept_connection_died() {
    let first = [hello(EHLO_PLAIN), ACCEPT_ONE.to_vec(), vec![Close]].concat();
    let second = [hello(EHLO_PLAIN), ACCEPT_ONE.to_vec(), QUIT.to_vec()].concat();
    let fake = Fake::start(vec![first, second], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    send_one(&mut hop, b"one\r\n").await.unwrap();
    // The next hop closes the idle connection (as Postfix does after its timeout).
    tokio::time::sleep(Duration::from_millis(50)).await;
    send_one(&mut hop, b"two\r\n").await.unwrap();
    hop.quit().await;
    let transcript = fake.transcript().await;
    assert_eq!(
        transcript.matches("EHLO filter.example\r\n").count(),
        2,
        "{transcript}"
    );
    assert!(transcript.ends_with("two\r\n.\r\nQUIT\r\n"), "{transcript}");
}

#[tokio::test]
async fn unsafe_addresses_never_reach_the_wire() {
    let script = [hello(EHLO_PLAIN), vec![Hear, OK], QUIT.to_vec()].concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(config(&fake.addr));
    let none = MailParams::default();
    let sender = hop.mail(&client(), "a@b.example\r\nRSET", &none).await;
    assert_eq!(sender.unwrap_err().code, 501);
    hop.mail(&client(), "a@b.example", &none).await.unwrap();
    let recipient = hop.rcpt("c@d.example\r\nDATA").await;
    assert_eq!(recipient.unwrap_err().code, 501);
    hop.quit().await;
    assert_eq!(
        fake.transcript().await,
        "EHLO filter.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"
    );
}

// RFC 3461: a next hop that offers DSN gets the client's RET/ENVID and NOTIFY/ORCPT, as
// xtext; one that does not is never sent a transaction that asked for them (451, so the
// client keeps the message and its notification request).
#[tokio::test]
async fn dsn_parameters_go_on_only_to_a_next_hop_that_offers_dsn() {
    let script = [
        hello(Say("250-fake.example\r\n250 DSN\r\n")),
        vec![Hear, OK, Hear, OK],
        QUIT.to_vec(),
    ]
    .concat();
    let fake = Fake::start(vec![script], None).await;
    let config = config(&fake.addr);
    let mut hop = RelaySession::new(config.clone());
    assert!(!hop.offers_dsn(), "not known before the first connection");
    let dsn_params = MailParams {
        dsn_ret: Some("HDRS"),
        dsn_envid: Some("QQ 314=pi".into()),
        ..MailParams::default()
    };
    hop.mail(&client(), "s@example.org", &dsn_params)
        .await
        .unwrap();
    assert!(hop.offers_dsn(), "learnt from its EHLO");
    let rcpt = RcptDsn {
        notify: Some("SUCCESS,FAILURE".into()),
        orcpt: Some("Bob+1@Example.COM".into()),
    };
    hop.rcpt_dsn("bob@example.com", &rcpt).await.unwrap();
    hop.quit().await;
    assert_eq!(
        fake.transcript().await,
        "EHLO filter.example\r\n\
         MAIL FROM:<s@example.org> RET=HDRS ENVID=QQ+20314+3Dpi\r\n\
         RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2B1@Example.COM\r\n\
         QUIT\r\n"
    );

    // Without DSN at the next hop: no MAIL is sent, the client hears 451 4.3.3.
    let script = [hello(EHLO_PLAIN), QUIT.to_vec()].concat();
    let fake = Fake::start(vec![script], None).await;
    let mut hop = RelaySession::new(super::config(&fake.addr));
    let refused = hop
        .mail(&client(), "s@example.org", &dsn_params)
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code, refused.status.as_deref()),
        (451, Some("4.3.3"))
    );
    assert!(!hop.offers_dsn());
    hop.quit().await;
    assert_eq!(fake.transcript().await, "EHLO filter.example\r\nQUIT\r\n");
}
