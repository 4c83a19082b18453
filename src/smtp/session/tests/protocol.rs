//! The dialogue: order, pipelining, parameters, limits, errors, timeouts, shutdown.

use super::*;

#[tokio::test]
async fn ehlo_lists_the_extensions_and_helo_is_plain() {
    let mut s = settings();
    s.max_message_size = 1000;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    let ehlo = c.command("EHLO client.example", "250-mx.test").await;
    let lines: Vec<&str> = ehlo.lines().map(|l| &l[4..]).collect();
    assert_eq!(
        lines,
        [
            "mx.test",
            "PIPELINING",
            "CHUNKING",
            "SIZE 1000",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES"
        ],
        "no STARTTLS without a certificate"
    );
    c.command("HELO client.example", "250 mx.test").await;
    c.command("QUIT", "221 2.0.0").await;
    assert_eq!(server.finished().await, [Event::Quit]);
}

#[tokio::test]
async fn pipelined_commands_get_their_replies_in_order() {
    // RFC 2920 §3.1: one write with MAIL, RCPTs and DATA; replies in the same order.
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    c.command("EHLO client.example", "250-").await;
    c.send(b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nNOOP\r\nDATA\r\n").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("250 2.1.5").await;
    c.expect("250 2.0.0 Ok").await;
    c.expect("354 ").await;
    let msg = message(&["From: a@example.com", "Subject: hi"], "hello\r\n");
    let mut tail = stuffed(&msg);
    tail.extend_from_slice(b"QUIT\r\n");
    c.send(&tail).await;
    let queued = c.expect("250 2.0.0 Ok: queued as ").await;
    c.expect("221 2.0.0").await;
    let events = server.finished().await;
    assert_eq!(
        events[0],
        Event::Mail {
            from: "a@example.com".into(),
            params: MailParams {
                size: None,
                eight_bit: true,
                smtputf8: false,
                ..MailParams::default()
            },
            protocol: "ESMTP".into()
        }
    );
    assert_eq!(events[1], Event::Rcpt("b@example.net".into()));
    assert_eq!(events[2], Event::Rcpt("c@example.net".into()));
    let data = delivered(&events);
    let id = queued.rsplit(' ').next().unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.starts_with("Received: from client.example ([127.0.0.1])\r\n\tby mx.test (authmilter) with ESMTP id "), "{text}");
    assert!(
        text.contains(&format!("id {id};")),
        "two recipients: no `for`: {text}"
    );
    assert!(
        data.ends_with(&msg),
        "the client's message follows unchanged"
    );
    assert_eq!(events.last(), Some(&Event::Quit));
}

#[tokio::test]
async fn commands_out_of_order_and_unsupported() {
    let mut s = settings();
    s.max_errors = 0;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    c.command("MAIL FROM:<a@example.com>", "503 5.5.1").await;
    c.command("RCPT TO:<b@example.org>", "503 5.5.1").await;
    c.command("DATA", "503 5.5.1").await;
    c.command("NOOP", "250 2.0.0").await;
    c.command("RSET", "250 2.0.0").await;
    c.command("MAIL FROM:<a@example.com>", "503 5.5.1").await;
    c.command("EHLO client.example", "250-").await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command("MAIL FROM:<a@example.com>", "503 5.5.1 Nested")
        .await;
    c.command("DATA", "554 5.5.1").await;
    c.command("FROB", "500 5.5.2").await;
    c.command("EXPN staff", "502 5.5.1").await;
    c.command("AUTH PLAIN AGFAAGI=", "502 5.5.1").await;
    // CHUNKING is offered: the chunk is read, then refused like DATA.
    c.send(b"BDAT 10 LAST\r\n0123456789").await;
    c.expect("554 5.5.1").await;
    c.command("STARTTLS", "502 5.5.1").await;
    c.command("VRFY someone", "252 2.5.0").await;
    c.command("HELP", "214-2.0.0").await;
    c.command("MAIL FROM:a@example.com", "501 5.5.2").await;
    c.command("QUIT", "221").await;
    let events = server.finished().await;
    assert_eq!(
        events[1..],
        [Event::Reset, Event::Quit],
        "open transaction reset at the end"
    );
}

#[tokio::test]
async fn mail_parameters_are_checked() {
    let mut s = settings();
    s.max_message_size = 1000;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    c.command("EHLO client.example", "250-").await;
    // RFC 1870 §6.1.
    c.command("MAIL FROM:<a@example.com> SIZE=1001", "552 5.3.4")
        .await;
    c.command("MAIL FROM:<a@example.com> RET=FULL", "555 5.5.4")
        .await;
    c.command("MAIL FROM:<a@example.com> XFOO=1", "555 5.5.4")
        .await;
    // RFC 6531 §3.5.
    c.command("MAIL FROM:<jörg@example.com>", "553 5.6.7").await;
    c.command(
        "MAIL FROM:<jörg@example.com> SMTPUTF8 SIZE=1000",
        "250 2.1.0",
    )
    .await;
    c.command("RCPT TO:<b@example.org> NOTIFY=NEVER", "555 5.5.4")
        .await;
    c.command("RCPT TO:<Postmaster>", "250 2.1.5").await;
    c.command("RSET", "250").await;
    c.command("HELO client.example", "250 mx.test").await;
    // After HELO no extension was offered.
    c.command("MAIL FROM:<a@example.com> BODY=8BITMIME", "555 5.5.4")
        .await;
    c.command("MAIL FROM:<>", "250 2.1.0").await;
    drop(c);
    let events = server.finished().await;
    assert_eq!(
        events[0],
        Event::Mail {
            from: "jörg@example.com".into(),
            params: MailParams {
                size: Some(1000),
                eight_bit: false,
                smtputf8: true,
                ..MailParams::default()
            },
            protocol: "ESMTP".into()
        }
    );
    assert_eq!(events[1], Event::Rcpt("postmaster".into()));
    assert!(
        matches!(&events[3], Event::Mail { from, protocol, .. } if from.is_empty() && protocol == "SMTP")
    );
}

#[tokio::test]
async fn rset_drops_the_transaction_here_and_at_the_next_hop() {
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    c.command("EHLO client.example", "250-").await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command("RCPT TO:<b@example.org>", "250 2.1.5").await;
    c.command("RSET", "250 2.0.0").await;
    c.command("DATA", "503 5.5.1").await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command("QUIT", "221").await;
    let events = server.finished().await;
    assert_eq!(events[2], Event::Reset);
    assert!(matches!(events[3], Event::Mail { .. }));
    assert_eq!(events[4..], [Event::Reset, Event::Quit]);
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let mut s = settings();
    s.max_errors = 3;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    c.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n").await;
    c.expect("500 5.5.2").await;
    c.expect("500 5.5.2").await;
    c.expect("421 4.7.0 Too many errors").await;
    assert!(c.closed().await, "nothing after the 421");
    assert_eq!(server.finished().await, [Event::Quit]);
}

#[tokio::test]
async fn too_many_recipients_get_452() {
    let mut s = settings();
    s.max_recipients = 2;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    c.command("EHLO client.example", "250-").await;
    c.command("MAIL FROM:<a@example.com>", "250").await;
    c.command("RCPT TO:<b@example.org>", "250 2.1.5").await;
    c.command("RCPT TO:<c@example.org>", "250 2.1.5").await;
    // RFC 5321 §4.5.3.1.10.
    c.command("RCPT TO:<d@example.org>", "452 4.5.3").await;
}

#[tokio::test]
async fn long_command_line_is_refused_without_buffering_it() {
    let mut s = settings();
    s.max_line_length = 64;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    for _ in 0..64 {
        c.send(&[b'x'; 16 * 1024]).await;
    }
    c.send(b"\r\nNOOP\r\n").await;
    c.expect("500 5.5.2 Line too long").await;
    c.expect("250 2.0.0").await;
}

#[tokio::test]
async fn garbage_never_panics() {
    let mut s = settings();
    s.max_errors = 0;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    let junk: [&[u8]; 8] = [
        b"\0\0\0\r\n",
        b"\xff\xfe\xfd\r\n",
        b"\r\n",
        b"EHLO \xff\xfe\r\n",
        b"MAIL FROM:<\xff@x\0>\r\n",
        b"MAIL FROM:<<<>>> SIZE=99999999999999999999999999\r\n",
        b"RCPT TO:\r\n",
        b"\n",
    ];
    for line in junk {
        c.send(line).await;
        let reply = c.reply().await;
        assert!(reply.len() > 3, "a reply to {line:?}");
    }
    c.command("EHLO ok", "250-").await;
    c.command("MAIL FROM:<a@example.com>", "250").await;
    c.command("RCPT TO:<a\0b@example.org>", "50").await;
    c.command("QUIT", "221").await;
}

#[tokio::test]
async fn idle_client_times_out_with_421() {
    let mut s = settings();
    s.command_timeout = Duration::from_millis(200);
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    c.send(b"NO").await;
    c.expect("421 4.4.2").await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn shutdown_lets_the_transaction_finish_first() {
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    c.command("EHLO client.example", "250-").await;
    c.command("MAIL FROM:<a@example.com>", "250").await;
    server.stop.send(true).unwrap();
    c.command("RCPT TO:<b@example.org>", "250 2.1.5").await;
    c.command("DATA", "354").await;
    c.send(&stuffed(&message(&["From: a@example.com"], "x\r\n")))
        .await;
    c.expect("250 2.0.0").await;
    c.command("MAIL FROM:<a@example.com>", "421 4.3.2").await;
    assert!(c.closed().await);
    let events = server.finished().await;
    assert!(!delivered(&events).is_empty());
}

#[tokio::test]
async fn idle_session_is_told_about_shutdown() {
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    c.command("EHLO client.example", "250-").await;
    server.stop.send(true).unwrap();
    c.expect("421 4.3.2").await;
    assert!(c.closed().await);
}
