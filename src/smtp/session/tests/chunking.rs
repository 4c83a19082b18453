//! CHUNKING (RFC 3030): BDAT chunks make one message; each chunk is read whatever its reply.
//! DSN (RFC 3461): offered and passed on only with a next hop that offers it.

use super::*;

async fn ready(s: SmtpSettings) -> (Server, Client<TcpStream>) {
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    let ehlo = c.command("EHLO client.example", "250-mx.test").await;
    assert!(ehlo.contains("250-CHUNKING"), "{ehlo}");
    (server, c)
}

#[tokio::test]
async fn bdat_chunks_make_one_message() {
    let (server, mut c) = ready(settings()).await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command("RCPT TO:<b@example.net>", "250 2.1.5").await;
    let msg = message(
        &["From: a@example.com", "Subject: chunks"],
        "line one\r\n.dot kept\r\n",
    );
    let (first, rest) = msg.split_at(20);
    // Pipelined: both chunks in one write, the second with a bare LF line end.
    let mut wire = format!("BDAT {}\r\n", first.len()).into_bytes();
    wire.extend_from_slice(first);
    let mut rest = rest.to_vec();
    rest.extend_from_slice(b"bare\nend\r\n");
    wire.extend_from_slice(format!("BDAT {} LAST\r\n", rest.len()).as_bytes());
    wire.extend_from_slice(&rest);
    c.send(&wire).await;
    c.expect(&format!("250 2.0.0 {} octets received", first.len()))
        .await;
    c.expect("250 2.0.0 Ok: queued as ").await;
    c.command("QUIT", "221").await;
    let delivered = delivered(&server.finished().await);
    let text = String::from_utf8_lossy(&delivered);
    // Not dot-unstuffed (BDAT has no stuffing), and the bare LF became CRLF.
    assert!(
        text.ends_with("line one\r\n.dot kept\r\nbare\r\nend\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_chunk_is_still_read_to_its_end() {
    let (server, mut c) = ready(settings()).await;
    // No MAIL: 503, and the 5 octets are not taken for a command.
    c.send(b"BDAT 5\r\nNOOP!NOOP\r\n").await;
    c.expect("503 5.5.1").await;
    c.expect("250 2.0.0").await;
    // No recipient yet.
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.send(b"BDAT 4 LAST\r\nQUIT").await;
    c.expect("554 5.5.1").await;
    // DATA after BDAT in one transaction is refused; RSET starts over.
    c.command("RCPT TO:<b@example.net>", "250 2.1.5").await;
    c.send(b"BDAT 3\r\nabc").await;
    c.expect("250 2.0.0 3 octets received").await;
    c.command("DATA", "503 5.5.1").await;
    c.command("RSET", "250").await;
    c.command("QUIT", "221").await;
    let events = server.finished().await;
    assert!(
        !events.iter().any(|e| matches!(e, Event::Data(_))),
        "{events:?}"
    );
}

#[tokio::test]
async fn chunks_over_the_size_limit_are_read_then_refused() {
    let mut s = settings();
    s.max_message_size = 100;
    let (server, mut c) = ready(s).await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command("RCPT TO:<b@example.net>", "250 2.1.5").await;
    let chunk = vec![b'x'; 80];
    for last in [false, true] {
        let mut wire = format!("BDAT 80{}\r\n", if last { " LAST" } else { "" }).into_bytes();
        wire.extend_from_slice(&chunk);
        c.send(&wire).await;
    }
    c.expect("250 2.0.0 80 octets received").await;
    c.expect("552 5.3.4").await;
    // The session is still in step: the next command is a command.
    c.command("NOOP", "250").await;
    c.command("QUIT", "221").await;
    let events = server.finished().await;
    assert!(
        !events.iter().any(|e| matches!(e, Event::Data(_))),
        "{events:?}"
    );
}

// RFC 3461: DSN is offered only when the next hop offers it, and then its parameters reach
// the next hop; otherwise they are refused as unoffered (555).
#[tokio::test]
async fn dsn_is_offered_and_passed_on_only_with_a_next_hop_that_offers_it() {
    let hop = RecordingHop {
        offer_dsn: true,
        ..RecordingHop::default()
    };
    let log = Arc::clone(&hop.rcpt_dsn);
    let server = Server::start(snapshot(true, None).await, settings(), hop).await;
    let mut c = server.connect().await;
    let ehlo = c.command("EHLO client.example", "250-mx.test").await;
    assert!(ehlo.contains("DSN"), "{ehlo}");
    c.command(
        "MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ314159",
        "250 2.1.0",
    )
    .await;
    c.command(
        "RCPT TO:<b@example.net> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@example.net",
        "250 2.1.5",
    )
    .await;
    c.command("RCPT TO:<c@example.net> NOTIFY=NEVER", "250 2.1.5")
        .await;
    c.command("QUIT", "221").await;
    let events = server.finished().await;
    let Some(Event::Mail { params, .. }) = events.first() else {
        panic!("{events:?}");
    };
    assert_eq!(
        (params.dsn_ret, params.dsn_envid.as_deref()),
        (Some("HDRS"), Some("QQ314159"))
    );
    let log = log.lock().unwrap().clone();
    assert_eq!(log[0].1.notify.as_deref(), Some("SUCCESS,DELAY"));
    assert_eq!(log[0].1.orcpt.as_deref(), Some("b@example.net"));
    assert_eq!(log[1].1.notify.as_deref(), Some("NEVER"));

    // Without DSN at the next hop: not offered, and its parameters are 555.
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    let ehlo = c.command("EHLO client.example", "250-mx.test").await;
    assert!(!ehlo.contains("DSN"), "{ehlo}");
    c.command("MAIL FROM:<a@example.com> RET=FULL", "555 5.5.4")
        .await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command("RCPT TO:<b@example.net> NOTIFY=SUCCESS", "555 5.5.4")
        .await;
    c.command("QUIT", "221").await;
    server.finished().await;
}
