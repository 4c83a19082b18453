//! One SMTP client connection: the driver that reads, writes and waits, around the dialogue
//! in `machine` and the end-of-data work in `finish`.
//!
//! Pipelining (RFC 2920): input is read into a buffer and every complete command line in it
//! is handled before anything is written; replies are queued and flushed only when no
//! complete line is left, or before waiting for DATA or the TLS handshake. Memory per
//! connection is bounded: one read chunk plus one command line (longer lines are dropped as
//! they arrive), and one message of at most `max_message_size` bytes.
//!
//! STARTTLS (RFC 3207 §4.2): anything the client sent after the command, before the
//! handshake, is thrown away (CVE-2011-0411), and the session starts over: EHLO again.
//!
//! Stress (see `smtp::stress`): while the listener is under stress, an untrusted client has
//! the short stress timeout to complete each command (the greeting's included) and each DATA
//! line, and may send only a few junk commands in a row; otherwise `421 4.4.2`.
//!
//! Shutdown: once `stop` is true, the transaction in progress runs to its end; the next
//! command, or an idle wait, gets `421 4.3.2` and the connection closes.

mod chunking;
mod codec;
mod compose;
mod finish;
mod machine;
mod params;
mod replies;
mod submit;
#[cfg(test)]
mod tests;

use crate::auth::budget::Charge;
use crate::check::metrics::SmtpCut;
use crate::config::TlsMode;
use crate::identity::limits::Guard;
use crate::relay::Stream;
use crate::runtime::smtp_service::SmtpSettings;
use crate::runtime::Snapshot;
use crate::smtp::data::{DataDecoder, DataEnd};
use crate::smtp::stress::Load;
use crate::smtp::{NextHop, SmtpReply};
use codec::{Frame, LineDecoder};
use machine::{Next, Session};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// Serves one SMTP client until it quits, misbehaves, times out or the server stops,
/// delivering accepted mail through `hop`. Never panics on what the client sends.
#[allow(clippy::too_many_arguments)]
pub async fn serve_connection<H: NextHop>(
    stream: TcpStream,
    peer: SocketAddr,
    snapshot: Arc<Snapshot>,
    settings: Arc<SmtpSettings>,
    hop: H,
    load: Arc<Load>,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
) {
    let ip = peer.ip().to_canonical();
    tracing::debug!(client = %ip, "smtp connection");
    let mut session = Session::new(snapshot, Arc::clone(&settings), hop, ip, load, guard);
    let mut io = Io {
        stream: Some(Stream::Plain(stream)),
        input: Vec::new(),
        output: Vec::new(),
        lines: LineDecoder::new(settings.max_line_length),
        write_timeout: settings.command_timeout,
    };
    // RFC 8314 §3.3: on an implicit-TLS port the handshake comes before the greeting.
    let ended = match settings.listener.tls {
        TlsMode::Implicit => match start_tls(&mut io, &settings, session.command_timeout()).await {
            Ok(()) => {
                session.tls_started();
                drive(&mut session, &mut io, &settings, &mut stop).await
            }
            Err(e) => Err(e),
        },
        TlsMode::StartTls => drive(&mut session, &mut io, &settings, &mut stop).await,
    };
    match ended {
        Ok(()) => tracing::debug!(client = %ip, "smtp session over"),
        Err(end @ End::Tls(_)) => tracing::info!(client = %ip, reason = %end, "smtp session ended"),
        Err(end) => tracing::debug!(client = %ip, reason = %end, "smtp session ended"),
    }
    if session.in_transaction() {
        tracing::info!(client = %ip, "smtp transaction abandoned; nothing delivered");
    }
    session.close().await;
    io.close().await;
}

/// Why a session ended other than by QUIT or our own 421.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("client closed the connection")]
    ClientGone,
    #[error("timed out waiting for the client")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// The connection's buffers and stream.
struct Io {
    /// `None` only while the TLS handshake has it (and after a failed one).
    stream: Option<Stream>,
    input: Vec<u8>,
    output: Vec<u8>,
    lines: LineDecoder,
    write_timeout: std::time::Duration,
}

impl Io {
    fn queue(&mut self, reply: &SmtpReply) {
        codec::encode(reply, &mut self.output);
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.output.is_empty() {
            return Ok(());
        }
        let stream = self.stream.as_mut().ok_or(End::ClientGone)?;
        // A client that does not read its replies must not hold the session forever.
        match timeout(self.write_timeout, stream.write_all(&self.output)).await {
            Ok(written) => written?,
            Err(_) => return Err(End::Timeout),
        }
        self.output.clear();
        Ok(())
    }

    /// Reads one chunk into `input`; `ClientGone` at end of stream.
    async fn read(&mut self) -> Result<(), End> {
        let stream = self.stream.as_mut().ok_or(End::ClientGone)?;
        // Straight into the buffer: no copy, and no 16 KiB array held in every idle
        // session's future across the await.
        self.input.reserve(READ_CHUNK);
        match stream.read_buf(&mut self.input).await? {
            0 => Err(End::ClientGone),
            _ => Ok(()),
        }
    }

    /// Sends what is queued and closes (TLS: with close_notify); errors no longer matter.
    async fn close(&mut self) {
        let _ = self.flush().await;
        if let Some(stream) = self.stream.as_mut() {
            let _ = timeout(self.write_timeout, stream.shutdown()).await;
        }
    }
}

/// The read-handle-reply loop; `Ok` when the session ended by QUIT or one of our 421s.
async fn drive<H: NextHop>(
    session: &mut Session<H>,
    io: &mut Io,
    settings: &SmtpSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    io.queue(&session.greeting());
    // RFC 5321 §4.5.3.2.7: the wait for a whole command, however it trickles in, counts from
    // the last one (or the greeting).
    let mut progress = Instant::now();
    loop {
        let mut replies = Vec::new();
        let next = match io.lines.decode(&mut io.input) {
            Frame::Line(line) => {
                let stopping = *stop.borrow();
                session.command(&line, stopping, &mut replies).await
            }
            Frame::TooLong => session.line_too_long(io.lines.dropped_head(), &mut replies),
            Frame::Incomplete => {
                io.flush().await?;
                // Stress may begin while we wait: the timeout is taken again at least every
                // stress timeout, so a slow client is let go soon after it does.
                let deadline = progress + session.command_timeout();
                if Instant::now() >= deadline {
                    session.no_progress(SmtpCut::Timeout);
                    return Err(timed_out(io).await);
                }
                let wake = deadline.min(Instant::now() + settings.stress_timeout);
                let woke = if session.in_transaction() {
                    Wake::Read(timeout_at(wake, io.read()).await)
                } else {
                    tokio::select! {
                        r = timeout_at(wake, io.read()) => Wake::Read(r),
                        () = stopped(stop) => Wake::Stop,
                    }
                };
                match woke {
                    Wake::Read(Ok(read)) => read?,
                    Wake::Read(Err(_)) => {}
                    Wake::Stop => {
                        io.queue(&SmtpReply::new(421, "4.3.2", "Service shutting down"));
                        io.flush().await?;
                        return Ok(());
                    }
                }
                continue;
            }
        };
        progress = Instant::now();
        for reply in &replies {
            io.queue(reply);
        }
        match next {
            Next::Continue => {}
            Next::Close => {
                io.flush().await?;
                return Ok(());
            }
            Next::Data => {
                io.flush().await?;
                let mut charge = session.snapshot.budget().charge();
                let end = read_data(io, settings, &mut charge, session).await?;
                // The message stays charged until its end-of-data work is done.
                let reply = session.end_of_data(end).await;
                drop(charge);
                io.queue(&reply);
                progress = Instant::now();
            }
            Next::Chunk { size, last } => {
                let keep = session.keeps_chunk(size);
                let data = read_chunk(io, settings, session, size, keep).await?;
                let reply = session.chunk(data, size, last).await;
                io.queue(&reply);
                progress = Instant::now();
            }
            Next::StartTls => {
                io.flush().await?;
                // RFC 3207 §4.2: nothing sent before the handshake counts (CVE-2011-0411).
                io.input.clear();
                io.lines = LineDecoder::new(settings.max_line_length);
                start_tls(io, settings, settings.command_timeout).await?;
                session.tls_started();
                progress = Instant::now();
            }
        }
    }
}

/// What ended a wait for input.
enum Wake {
    Read(Result<Result<(), End>, tokio::time::error::Elapsed>),
    Stop,
}

/// Reads the message after 354, each read bounded by `data_timeout` (RFC 5321 §4.5.3.2.5)
/// or, under stress, each line by the stress timeout; what it keeps is charged to the memory
/// budget.
async fn read_data<H: NextHop>(
    io: &mut Io,
    settings: &SmtpSettings,
    charge: &mut Charge,
    session: &Session<H>,
) -> Result<DataEnd, End> {
    let mut decoder = DataDecoder::new(settings.max_message_size, settings.max_data_line_length);
    let (mut last_read, mut line_ended) = (Instant::now(), Instant::now());
    loop {
        // Charged before it is kept: the budget is never passed, even by one read.
        if !charge.resize(decoder.kept() + io.input.len()) {
            decoder.abandon();
        }
        let (used, end) = decoder.feed(&io.input);
        // Shrinks to what is kept (the whole message once it ended).
        charge.resize(match &end {
            Some(DataEnd::Message(raw)) => raw.len(),
            _ => decoder.kept(),
        });
        io.input.drain(..used);
        if let Some(end) = end {
            return Ok(end);
        }
        let deadline = if session.stressed() {
            line_ended + settings.stress_timeout
        } else {
            last_read + settings.data_timeout
        };
        let now = Instant::now();
        if now >= deadline {
            session.no_progress(SmtpCut::Timeout);
            return Err(timed_out(io).await);
        }
        // Wakes within the stress timeout to notice stress beginning.
        if let Ok(read) = timeout_at(deadline.min(now + settings.stress_timeout), io.read()).await {
            read?;
            last_read = Instant::now();
            if io.input.contains(&b'\n') {
                line_ended = last_read;
            }
        }
    }
}

/// The TLS handshake, within `limit` (on an implicit-TLS port under stress: the short one).
/// Reads exactly `size` octets of a BDAT chunk (RFC 3030 §2), kept or thrown away as they
/// come, each read bounded by the DATA timeout (the stress timeout under stress).
async fn read_chunk<H: NextHop>(
    io: &mut Io,
    settings: &SmtpSettings,
    session: &Session<H>,
    size: usize,
    keep: bool,
) -> Result<Option<Vec<u8>>, End> {
    let mut kept = keep.then(|| Vec::with_capacity(size.min(READ_CHUNK * 4)));
    let mut left = size;
    loop {
        let take = left.min(io.input.len());
        if let Some(kept) = &mut kept {
            kept.extend_from_slice(&io.input[..take]);
        }
        io.input.drain(..take);
        left -= take;
        if left == 0 {
            return Ok(kept);
        }
        let wait = if session.stressed() {
            settings.stress_timeout
        } else {
            settings.data_timeout
        };
        match timeout(wait, io.read()).await {
            Ok(read) => read?,
            Err(_) => {
                session.no_progress(SmtpCut::Timeout);
                return Err(timed_out(io).await);
            }
        }
    }
}

async fn start_tls(
    io: &mut Io,
    settings: &SmtpSettings,
    limit: std::time::Duration,
) -> Result<(), End> {
    let (Some(config), Some(stream)) = (settings.tls.clone(), io.stream.take()) else {
        return Err(End::Tls(io::Error::other("TLS not configured")));
    };
    match timeout(limit, stream.start_tls(config)).await {
        Ok(Ok(tls)) => {
            io.stream = Some(tls);
            Ok(())
        }
        Ok(Err(e)) => Err(End::Tls(e)),
        Err(_) => Err(End::Tls(io::Error::new(
            io::ErrorKind::TimedOut,
            "handshake timed out",
        ))),
    }
}

/// RFC 5321 §4.5.3.2: tell the client before closing.
async fn timed_out(io: &mut Io) -> End {
    io.queue(&SmtpReply::new(
        421,
        "4.4.2",
        "Timeout exceeded, closing connection",
    ));
    let _ = io.flush().await;
    End::Timeout
}

/// Resolves once `stop` is true; never if the sender is gone without saying so.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
