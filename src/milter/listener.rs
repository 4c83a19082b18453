//! The I/O side of a milter connection: read bytes, let the codec cut frames, let the
//! session answer, write every reply of a command in one write.

use super::codec::{Decoded, Decoder};
use super::command::Command;
use super::reply::Reply;
use super::session::{Flow, Session};
use crate::runtime::Snapshot;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Largest packet accepted: a 64 KiB body chunk (we never negotiate bigger ones) or a long
/// header field, with room to spare. A bigger length prefix ends the connection, and the MTA
/// applies its `milter_default_action`. Each header field is one packet, but MTAs cut or
/// refuse headers long before this: Postfix's `header_size_limit` (100 KiB per field, the
/// rest discarded) and Sendmail's `MaxHeadersLength` (32 KiB for all fields together).
pub const MAX_PACKET: u32 = 1024 * 1024;

/// A stream the listener can serve, with the socket tuning its transport needs.
pub trait MilterStream: AsyncRead + AsyncWrite + Unpin {
    /// Called before every read.
    fn before_read(&self) {}
}

impl MilterStream for tokio::net::TcpStream {
    /// Asks the kernel to acknowledge what arrives next at once instead of delaying the ACK.
    ///
    /// Postfix leaves Nagle on for milter sockets, and for each message writes the envelope
    /// (smtpd: RCPT, the DATA macros) and then the content (cleanup: headers to end of
    /// message) as two writes. When the envelope needs no reply (we negotiate `NR_RCPT` and
    /// `NODATA`), Nagle holds the content until the envelope is ACKed, and Linux delays that
    /// ACK (about 40 ms) hoping to piggyback it on a reply that never comes: 40 ms per message.
    /// Leaving the kernel's "interactive" mode before each read makes the read itself send
    /// the ACK. The flag does not stick (sending a reply re-enters that mode), hence every read.
    fn before_read(&self) {
        #[cfg(target_os = "linux")]
        let _ = self.set_quickack(true);
    }
}

/// Unix sockets have no Nagle and no delayed ACKs.
impl MilterStream for tokio::net::UnixStream {}

/// Serves one MTA connection until it quits, misbehaves, goes quiet past the timeout, or a
/// graceful stop finds it between messages.
pub async fn serve_connection<S: MilterStream>(
    mut stream: S,
    snapshot: Arc<Snapshot>,
    mut stop: watch::Receiver<bool>,
) {
    let timeout = snapshot.config.milter.timeout;
    let mut session = Session::new(snapshot);
    let mut decoder = Decoder::new(MAX_PACKET);
    // Buffers grow with the first message; an idle connection (and there may be thousands,
    // one per MTA process) keeps only what its negotiation needed.
    let mut buf: Vec<u8> = Vec::new();
    let mut replies: Vec<Reply> = Vec::with_capacity(8);
    let mut out: Vec<u8> = Vec::new();
    loop {
        // Answer every whole command already buffered.
        loop {
            let frame = match decoder.decode(&mut buf) {
                Decoded::Frame(frame) => frame,
                Decoded::Incomplete => break,
                Decoded::TooLarge(len) => {
                    tracing::warn!(
                        len,
                        queue_id = session.queue_id(),
                        "milter packet over the size cap; closing"
                    );
                    return;
                }
                Decoded::Invalid => {
                    tracing::warn!(
                        queue_id = session.queue_id(),
                        "milter packet of length 0; closing"
                    );
                    return;
                }
            };
            let command = match Command::parse(frame) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, queue_id = session.queue_id(), "malformed milter command; closing");
                    return;
                }
            };
            replies.clear();
            let flow = session.handle(command, &mut replies).await;
            if !replies.is_empty() {
                out.clear();
                for r in &replies {
                    r.encode(&mut out);
                }
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            if flow == Flow::Close {
                let _ = stream.shutdown().await;
                return;
            }
        }
        if *stop.borrow() && !session.in_message() {
            return;
        }
        // Room for the rest of the frame at once: a header field of up to MAX_PACKET grows
        // the buffer once instead of doubling it (each doubling holds the old and the new copy).
        buf.reserve(decoder.missing(&buf).max(4 * 1024));
        stream.before_read();
        tokio::select! {
            read = tokio::time::timeout(timeout, stream.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "milter read failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(queue_id = session.queue_id(), "milter connection idle past the timeout; closing");
                    return;
                }
            },
            // Wake up to close an idle session when a graceful stop begins.
            _ = stop.changed(), if !*stop.borrow() => {}
        }
    }
}
