//! The Postfix-like sequencing of the milter load generator, checked against a scripted
//! filter on an in-memory stream.

use super::*;
use crate::loadgen::script::split_message;
use crate::milter::codec::encode_frame;
use tokio::io::DuplexStream;

fn client() -> Client {
    Client {
        ip: "192.0.2.10".parse().unwrap(),
        helo: "mail.example.com".into(),
        mail_from: "alice@example.com".into(),
        rcpt: "bob@example.net".into(),
    }
}

const MESSAGE: &[u8] = b"From: Alice <alice@example.com>\r\nSubject: a\r\n b\r\n\r\nHi\r\n";

fn negotiated(protocol: u32) -> Negotiated {
    Negotiated {
        protocol,
        macros: POSTFIX_MACROS.map(String::from),
    }
}

fn options() -> MilterOptions {
    MilterOptions {
        target: Target::Unix("/nonexistent".into()),
        connections: 1,
        limit: Limit::default(),
        message: Arc::new(MESSAGE.to_vec()),
        client: client(),
        session_messages: 0,
        rate: None,
        timeout: Duration::from_secs(5),
        idle: None,
        capture: None,
    }
}

/// Every command the filter side receives, as parsed commands.
async fn read_commands(
    stream: &mut DuplexStream,
    decoder: &mut Decoder,
    buf: &mut Vec<u8>,
) -> Option<Command> {
    loop {
        if let Decoded::Frame(f) = decoder.decode(buf) {
            return Some(Command::parse(f).expect("the generator sends valid commands"));
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// A filter that negotiates `protocol`, answers what it must, and at end of message inserts
/// a header and gives `verdict`. Returns the commands' codes, and macros as `D<stage>`.
async fn filter(mut stream: DuplexStream, protocol: u32, verdict: Reply) -> Vec<String> {
    let mut decoder = Decoder::default();
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    while let Some(cmd) = read_commands(&mut stream, &mut decoder, &mut buf).await {
        let mut out = Vec::new();
        let no_reply = |flag: u32| protocol & flag != 0;
        match &cmd {
            Command::Macro { stage, .. } => seen.push(format!("D{}", *stage as char)),
            c => seen.push((c.code() as char).to_string()),
        }
        match cmd {
            Command::OptNeg { .. } => Reply::OptNeg {
                version: 6,
                actions: SMFIF_ADDHDRS,
                protocol,
                macros: vec![(SMFIM_ENVFROM, "{mail_addr}".into())],
            }
            .encode(&mut out),
            Command::Connect { .. } if !no_reply(SMFIP_NR_CONN) => Reply::Continue.encode(&mut out),
            Command::Helo { .. } if !no_reply(SMFIP_NR_HELO) => Reply::Continue.encode(&mut out),
            Command::Mail { .. } if !no_reply(SMFIP_NR_MAIL) => Reply::Continue.encode(&mut out),
            Command::Rcpt { .. } if !no_reply(SMFIP_NR_RCPT) => Reply::Continue.encode(&mut out),
            Command::Data if !no_reply(SMFIP_NR_DATA) => Reply::Continue.encode(&mut out),
            Command::Header { .. } if !no_reply(SMFIP_NR_HDR) => Reply::Continue.encode(&mut out),
            Command::EndOfHeaders if !no_reply(SMFIP_NR_EOH) => Reply::Continue.encode(&mut out),
            Command::Body { .. } if !no_reply(SMFIP_NR_BODY) => Reply::Continue.encode(&mut out),
            Command::EndOfMessage { .. } => {
                Reply::Progress.encode(&mut out);
                Reply::InsertHeader {
                    index: 0,
                    name: "X-Test".into(),
                    value: "yes".into(),
                }
                .encode(&mut out);
                verdict.encode(&mut out);
            }
            Command::Quit => break,
            _ => {}
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            break;
        }
    }
    seen
}

async fn two_messages(protocol: u32, verdict: Reply) -> (Vec<String>, Recorder) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let filter = tokio::spawn(filter(theirs, protocol, verdict));
    let opts = options();
    let mut rec = Recorder::default();
    let mut conn = Conn::open(ours, &opts).await.expect("negotiated");
    for n in 1..=2 {
        assert!(conn.message(queue_id(3, n), &mut rec).await.unwrap());
    }
    conn.quit().await;
    (filter.await.unwrap(), rec)
}

#[tokio::test]
async fn postfix_sequence_with_every_reply() {
    let (seen, rec) = two_messages(0, Reply::Continue).await;
    let one_message = "DM M DR R DT T DL L DL L DN N DB B DE E A";
    let expected = format!("O DC C DH H {one_message} {one_message} Q");
    assert_eq!(seen.join(" "), expected);
    let report = Report::build("milter", "t".into(), 1, vec![rec], Duration::from_secs(1));
    assert_eq!(report.messages, 2);
    assert_eq!(report.replies["continue"], 2);
    assert_eq!(report.edits["insert_header"], 2);
    assert_eq!(report.errors, 0);
}

#[tokio::test]
async fn negotiated_away_events_are_not_sent_but_their_macros_are() {
    let protocol = SMFIP_NOHELO | SMFIP_NODATA | SMFIP_NOHDRS | SMFIP_NR_ALL;
    let (seen, rec) = two_messages(protocol, Reply::Accept).await;
    let one_message = "DM M DR R DT DN N DB B DE E A";
    assert_eq!(
        seen.join(" "),
        format!("O DC C DH {one_message} {one_message} Q")
    );
    let report = Report::build("milter", "t".into(), 1, vec![rec], Duration::from_secs(1));
    assert_eq!(report.replies["accept"], 2);
}

#[test]
fn script_waits_only_where_replies_come() {
    let authmilter_like = SMFIP_NR_ALL & !SMFIP_NR_MAIL | SMFIP_NODATA | SMFIP_HDR_LEADSPC;
    let s = Script::message(&negotiated(authmilter_like), &client(), MESSAGE);
    let waits: Vec<Stage> = s.steps.iter().filter(|s| s.wait).map(|s| s.stage).collect();
    assert_eq!(waits, [Stage::Mail, Stage::Eom]);
    // `i` is sent from DATA on: DATA, 2 headers, EOH, body, EOM.
    assert_eq!(s.qid_at.len(), 6);
    // smtpd's part and cleanup's part are written separately, as Postfix does.
    let stages: Vec<Stage> = s.steps.iter().map(|s| s.stage).collect();
    assert_eq!(
        stages,
        [
            Stage::Mail,
            Stage::Rcpt,
            Stage::Handoff,
            Stage::Header,
            Stage::Header,
            Stage::Eoh,
            Stage::Body,
            Stage::Eom
        ]
    );
    assert!(s
        .steps
        .iter()
        .all(|s| s.flush == (s.stage == Stage::Handoff)));
}

#[test]
fn queue_ids_are_patched_in_place() {
    let mut s = Script::message(&negotiated(0), &client(), MESSAGE);
    let len = s.bytes.len();
    s.set_queue_id(&queue_id(1, 0xabc));
    assert_eq!(s.bytes.len(), len);
    let text = String::from_utf8_lossy(&s.bytes);
    assert_eq!(text.matches("0001000ABC").count(), 6);
    assert!(!text.contains("@QUEUE-ID@"));
}

#[test]
fn headers_as_postfix_sends_them() {
    let (h, body) = split_message(MESSAGE, false);
    assert_eq!(h[0], ("From".into(), b"Alice <alice@example.com>".to_vec()));
    assert_eq!(h[1], ("Subject".into(), b"a\n b".to_vec()));
    assert_eq!(body, b"Hi\r\n");
    let (h, _) = split_message(MESSAGE, true);
    assert_eq!(h[0].1, b" Alice <alice@example.com>");
    let big = [b"A: b\r\n\r\n".as_slice(), &vec![b'x'; 70_000]].concat();
    let s = Script::message(&negotiated(SMFIP_NR_ALL), &client(), &big);
    let bodies = s.steps.iter().filter(|s| s.stage == Stage::Body).count();
    assert_eq!(
        bodies, 2,
        "bodies are cut into chunks of at most 65535 bytes"
    );
}

#[test]
fn replies_are_classified_like_postfix_does() {
    let frame = |code: u8, data: &[u8]| Frame {
        code,
        data: data.to_vec(),
    };
    assert_eq!(classify(&frame(b'c', b"")), Ok(Answer::Continue));
    assert_eq!(classify(&frame(b'c', b"x")), Err(Failure::Protocol));
    assert_eq!(
        classify(&frame(b'y', b"550 5.7.1 no\0")),
        Ok(Answer::Final("replycode_5xx", false))
    );
    assert_eq!(
        classify(&frame(b'y', b"451-4.3.0 a\r\n451 4.3.0 b\0")),
        Ok(Answer::Final("replycode_4xx", false))
    );
    assert_eq!(classify(&frame(b'y', b"250 ok\0")), Err(Failure::Protocol));
    assert_eq!(classify(&frame(b'Z', b"")), Err(Failure::Protocol));
    assert_eq!(classify(&frame(b'i', b"\0")), Err(Failure::Protocol));
    let mut ins = Vec::new();
    encode_frame(b'i', b"\0\0\0\0X-A\0b\0", &mut ins);
    assert_eq!(
        classify(&frame(b'i', &ins[5..])),
        Ok(Answer::Edit("insert_header"))
    );
}

#[tokio::test]
async fn a_filter_that_hangs_up_is_an_error_not_a_panic() {
    let (ours, theirs) = tokio::io::duplex(1024);
    drop(theirs);
    assert_eq!(Conn::open(ours, &options()).await.err(), Some(Failure::Io));
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let garbage = tokio::spawn(async move {
        let mut b = [0u8; 64];
        let _ = theirs.read(&mut b).await;
        let _ = theirs.write_all(&[0, 0, 0, 0, 0]).await;
        theirs
    });
    assert_eq!(
        Conn::open(ours, &options()).await.err(),
        Some(Failure::Protocol)
    );
    drop(garbage.await);
}

#[tokio::test]
async fn the_first_message_is_captured_with_its_edits() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let filter = tokio::spawn(filter(theirs, 0, Reply::Continue));
    let capture = Arc::<OnceLock<Captured>>::default();
    let opts = MilterOptions {
        capture: Some(Arc::clone(&capture)),
        ..options()
    };
    let mut rec = Recorder::default();
    let mut conn = Conn::open(ours, &opts).await.expect("negotiated");
    for n in 1..=2 {
        assert!(conn.message(queue_id(0, n), &mut rec).await.unwrap());
    }
    conn.quit().await;
    filter.await.unwrap();
    let first = capture.get().expect("captured");
    assert_eq!(first.answer, "continue");
    assert_eq!(
        first.edits,
        [Reply::InsertHeader {
            index: 0,
            name: "X-Test".into(),
            value: "yes".into(),
        }]
    );
    assert!(!first.leading_space);
    let edited = first.apply(MESSAGE);
    assert_eq!(edited, [b"X-Test: yes\r\n".as_slice(), MESSAGE].concat());
}

#[test]
fn captured_edits_apply_as_postfix_applies_them() {
    let raw = b"Received: x\r\nFrom: a@example.com\r\nX-A: 1\r\nX-A: 2\r\n\tfolded\r\n\r\nBody\r\n";
    let edit = |edits: Vec<Reply>, leading_space| {
        let c = Captured {
            answer: "continue",
            edits,
            leading_space,
        };
        String::from_utf8(c.apply(raw)).unwrap()
    };
    // Unchanged without edits, folds included.
    assert_eq!(edit(vec![], false).as_bytes(), raw);
    let out = edit(
        vec![
            Reply::AddHeader {
                name: "X-End".into(),
                value: "last\n\tline".into(),
            },
            // Below "Received: x", which is field 1: field 0 is the MTA's own Received.
            Reply::InsertHeader {
                index: 2,
                name: "X-Ins".into(),
                value: "second".into(),
            },
            // The second X-A (1-based) changes; the first is deleted.
            Reply::ChangeHeader {
                index: 2,
                name: "x-a".into(),
                value: "two".into(),
            },
            Reply::ChangeHeader {
                index: 1,
                name: "X-A".into(),
                value: String::new(),
            },
            // No such field: added.
            Reply::ChangeHeader {
                index: 1,
                name: "X-New".into(),
                value: "new".into(),
            },
        ],
        false,
    );
    assert_eq!(
        out,
        "Received: x\r\nX-Ins: second\r\nFrom: a@example.com\r\nX-A: two\r\n\
         X-End: last\r\n\tline\r\nX-New: new\r\n\r\nBody\r\n"
    );
    // With SMFIP_HDR_LEADSPC the filter's value carries its own space.
    let out = edit(
        vec![Reply::AddHeader {
            name: "X-B".into(),
            value: "\tb".into(),
        }],
        true,
    );
    assert!(
        out.contains("X-A: 2\r\n\tfolded\r\nX-B:\tb\r\n\r\n"),
        "{out}"
    );
}
