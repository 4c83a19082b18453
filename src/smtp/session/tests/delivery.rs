//! DATA and what reaches the next hop: exact bytes, limits, relaying, verdicts.

use super::*;

/// EHLO, MAIL and one RCPT; the reply to RCPT must start with `rcpt_reply`.
async fn open(c: &mut Client<TcpStream>, rcpt: &str, rcpt_reply: &str) {
    c.command("EHLO client.example", "250-").await;
    c.command("MAIL FROM:<a@example.com>", "250 2.1.0").await;
    c.command(&format!("RCPT TO:<{rcpt}>"), rcpt_reply).await;
}

#[tokio::test]
async fn dot_unstuffing_hands_on_the_exact_bytes() {
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.net", "250").await;
    c.command("DATA", "354").await;
    // RFC 5321 §4.5.2: the client doubles leading dots; we remove exactly one.
    let msg = b"From: a@example.com\r\nSubject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nmid.dot \r\n\
                8bit \xc3\xa9\xff bare\rcr\r\n\t\r\n"
        .to_vec();
    c.send(&stuffed(&msg)).await;
    c.expect("250 2.0.0 Ok: queued as").await;
    let data = delivered(&server.events());
    assert!(data.ends_with(&msg));
    let received = &data[..data.len() - msg.len()];
    let received = String::from_utf8_lossy(received);
    assert!(received.starts_with("Received: from client.example ([127.0.0.1])\r\n"));
    assert!(
        received.contains("\r\n\tfor <b@example.net>;\r\n\t"),
        "{received}"
    );
    assert!(received.ends_with(" +0000\r\n"), "{received}");
}

#[tokio::test]
async fn oversized_data_is_read_to_the_end_then_refused() {
    let mut s = settings();
    s.max_message_size = 100;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.net", "250").await;
    c.command("DATA", "354").await;
    let body = "0123456789\r\n".repeat(100);
    let mut data = stuffed(&message(&["From: a@example.com"], &body));
    data.extend_from_slice(b"NOOP\r\n");
    c.send(&data).await;
    // RFC 1870 §6.3.
    c.expect("552 5.3.4").await;
    c.expect("250 2.0.0").await;
    let events = server.events();
    assert!(!events.iter().any(|e| matches!(e, Event::Data(_))));
    assert_eq!(events.last(), Some(&Event::Reset));
}

#[tokio::test]
async fn long_data_line_is_refused() {
    let mut s = settings();
    s.max_data_line_length = 100;
    let server = Server::start(snapshot(true, None).await, s, RecordingHop::default()).await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.net", "250").await;
    c.command("DATA", "354").await;
    let long = "x".repeat(200) + "\r\n";
    c.send(&stuffed(&message(&["From: a@example.com"], &long)))
        .await;
    c.expect("552 5.3.4").await;
    c.command("NOOP", "250").await;
    assert_eq!(server.events().last(), Some(&Event::Reset));
}

#[tokio::test]
async fn client_gone_during_data_delivers_nothing() {
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.net", "250").await;
    c.command("DATA", "354").await;
    c.send(b"From: a@example.com\r\n\r\nhalf a message\r\n")
        .await;
    drop(c);
    let events = server.finished().await;
    assert!(
        !events.iter().any(|e| matches!(e, Event::Data(_))),
        "{events:?}"
    );
    assert_eq!(events[2..], [Event::Reset, Event::Quit]);
}

#[tokio::test]
async fn untrusted_clients_may_only_send_to_local_domains() {
    let server = Server::start(
        snapshot(false, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "x@example.net", "550 5.7.1 Relaying denied").await;
    for relay in [
        "x@example.org.example.net",
        "x%example.net@example.org",
        "\"x@example.net\"@example.org",
        "example.net!x@example.org",
        "@example.org:x@example.net",
    ] {
        c.command(&format!("RCPT TO:<{relay}>"), "5").await;
    }
    c.command("RCPT TO:<User@EXAMPLE.org>", "250 2.1.5").await;
    c.command("RCPT TO:<postmaster>", "250 2.1.5").await;
    let rcpts: Vec<Event> = server
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Rcpt(_)))
        .collect();
    assert_eq!(
        rcpts,
        [
            Event::Rcpt("User@EXAMPLE.org".into()),
            Event::Rcpt("postmaster".into())
        ],
        "the next hop never hears of the others"
    );
}

#[tokio::test]
async fn trusted_clients_may_relay() {
    let server = Server::start(
        snapshot(true, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "x@example.net", "250 2.1.5").await;
}

#[tokio::test]
async fn inbound_message_gets_results_on_top_and_forged_ones_removed() {
    let server = Server::start(
        snapshot(false, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.org", "250 2.1.5").await;
    c.command("DATA", "354").await;
    let msg = message(
        &[
            "Authentication-Results: mx.test; dmarc=pass (forged)",
            "Authentication-Results: other.example; spf=pass",
            "From: a@example.com",
            "Subject: hi",
        ],
        "hello\r\n",
    );
    c.send(&stuffed(&msg)).await;
    c.expect("250 2.0.0 Ok: queued as").await;
    let data = delivered(&server.events());
    let text = String::from_utf8_lossy(&data);
    assert!(
        text.starts_with("Authentication-Results: mx.test;"),
        "{text}"
    );
    let received = text
        .find("\r\nReceived: from client.example")
        .expect("Received");
    let header_end = text.find("\r\n\r\n").unwrap();
    assert!(received < header_end);
    assert!(!text.contains("(forged)"), "{text}");
    assert!(text.ends_with(
        "Authentication-Results: other.example; spf=pass\r\nFrom: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    ), "{text}");
}

#[tokio::test]
async fn rejected_message_is_refused_and_reset() {
    // Default policy: a message without header fields is rejected (550 5.6.0).
    let server = Server::start(
        snapshot(false, None).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.org", "250").await;
    c.command("DATA", "354").await;
    c.send(b"no header at all\r\n.\r\n").await;
    c.expect("550 5.6.0").await;
    let events = server.events();
    assert!(!events.iter().any(|e| matches!(e, Event::Data(_))));
    assert_eq!(events.last(), Some(&Event::Reset));
}

#[tokio::test]
async fn quarantine_without_maildir_marks_the_message() {
    let policy = "missing_from = \"quarantine\"\n";
    let server = Server::start(
        snapshot(false, Some(policy)).await,
        settings(),
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.org", "250").await;
    c.command("DATA", "354").await;
    c.send(&stuffed(&message(&["Subject: no from"], "x\r\n")))
        .await;
    c.expect("250 2.0.0").await;
    let text = String::from_utf8(delivered(&server.events())).unwrap();
    let mark = text.lines().next().unwrap();
    assert!(mark.starts_with("X-Authmilter-Quarantine: "), "{text}");
    assert!(mark.contains("no From address"), "{text}");
}

#[tokio::test]
async fn quarantine_into_maildir_skips_the_next_hop() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.quarantine = Some(dir.path().join("quarantine"));
    let policy = "missing_from = \"quarantine\"\n";
    let server = Server::start(
        snapshot(false, Some(policy)).await,
        s,
        RecordingHop::default(),
    )
    .await;
    let mut c = server.connect().await;
    open(&mut c, "b@example.org", "250").await;
    c.command("DATA", "354").await;
    c.send(&stuffed(&message(&["Subject: no from"], "x\r\n")))
        .await;
    c.expect("250 2.0.0").await;
    let events = server.events();
    assert!(!events.iter().any(|e| matches!(e, Event::Data(_))));
    assert_eq!(events.last(), Some(&Event::Reset));
    let new = std::fs::read_dir(dir.path().join("quarantine/new")).unwrap();
    assert_eq!(new.count(), 1);
}

#[tokio::test]
async fn next_hop_refusals_reach_the_client() {
    let hop = RecordingHop {
        refuse_rcpt: Some((
            "gone@example.net".into(),
            SmtpReply::new(550, "5.1.1", "No such user"),
        )),
        refuse_data: Some(SmtpReply::new(451, "4.3.0", "Try later")),
        ..RecordingHop::default()
    };
    let server = Server::start(snapshot(true, None).await, settings(), hop).await;
    let mut c = server.connect().await;
    open(&mut c, "gone@example.net", "550 5.1.1 No such user").await;
    c.command("DATA", "554 5.5.1").await;
    c.command("RCPT TO:<b@example.net>", "250").await;
    c.command("DATA", "354").await;
    c.send(&stuffed(&message(&["From: a@example.com"], "x\r\n")))
        .await;
    c.expect("451 4.3.0 Try later").await;
}
