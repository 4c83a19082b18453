//! The `bench-milter` and `bench-smtp` subcommands: arguments, validation, output.
//!
//! `main.rs` flattens [`BenchCommand`] into its own subcommands and calls
//! [`BenchCommand::run`]; everything else is here so tests can drive the same code in-process
//! through [`super::milter::run`] and [`super::smtp::run`].

use super::milter::{Captured, MilterOptions};
use super::run::{from_address, to_crlf, Client, Limit, Target, HARD_TIME_LIMIT};
use super::smtp::SmtpOptions;
use super::stats::Report;
use clap::{Args, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A bad argument, an unreadable message or a runtime that would not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub(super) String);

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Load-test a milter the way Postfix drives it; report messages/s and latency.
    ///
    /// N connections, many messages each (ABORT between them), Postfix's macros, no-reply
    /// stages and write pattern. Reports messages/s, end-of-message latency percentiles,
    /// errors and replies by kind. Exit status 1 if any message failed.
    BenchMilter(MilterArgs),
    /// Load-test an SMTP server with concurrent sessions; report messages/s and latency.
    ///
    /// N sessions (XCLIENT optional), MAIL/RCPT/DATA pipelined when offered. Reports
    /// messages/s, latency of the reply to the final dot, errors and replies by class.
    /// Exit status 1 if any message failed.
    BenchSmtp(SmtpArgs),
    /// Measure the CPU floor of one verified message: RSA-2048 verify + SHA-256 (ring).
    ///
    /// One RSA-2048 PKCS#1 verification with ring plus SHA-256 over the whole message, in a
    /// loop on one thread; reports the thread's CPU time per verification. bench/ab.sh
    /// prints a filter's CPU per message next to it.
    BenchFloor(FloorArgs),
}

/// What both generators take.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 1)]
    connections: usize,
    /// Stop after this many messages in all (with --duration: whichever comes first).
    #[arg(long, short = 'n')]
    messages: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, short = 'd', value_name = "SECS")]
    duration: Option<f64>,
    /// Messages per second in all, spread over the connections (default: as fast as the
    /// peer answers, one message in flight per connection).
    #[arg(long)]
    rate: Option<f64>,
    /// Messages per connection before QUIT and a new connection (0: no limit).
    #[arg(long, default_value_t = 0, value_name = "N")]
    session_messages: u64,
    /// Seconds to wait for a connection, a write or a reply before counting an error.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    timeout: f64,
    /// Worker threads of the generator (1 keeps it on one core, leaving the rest to the peer).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The message (RFC 5322, header and body; LF-only files are read as CRLF). Required
    /// except with --idle.
    #[arg(long, value_name = "FILE")]
    message: Option<PathBuf>,
    /// The SMTP client's address.
    #[arg(long, default_value = "192.0.2.10")]
    ip: IpAddr,
    /// HELO/EHLO name (also the client's host name).
    #[arg(long, default_value = "mail.example.com")]
    helo: String,
    /// Envelope sender (default: the message's From address).
    #[arg(long = "mail-from", value_name = "ADDR")]
    mail_from: Option<String>,
    /// Envelope recipient.
    #[arg(long, default_value = "bob@example.net", value_name = "ADDR")]
    rcpt: String,
}

#[derive(Args, Debug)]
pub struct MilterArgs {
    /// The milter: ip:port (or inet:ip:port) or unix:/path.
    #[arg(long, value_name = "ADDR")]
    target: String,
    #[command(flatten)]
    load: LoadArgs,
    /// Open the connections (negotiation, CONNECT, HELO), hold them idle this many seconds,
    /// then quit; sends no message (for measuring the filter's memory per connection).
    #[arg(long, value_name = "SECS", conflicts_with_all = ["messages", "duration", "rate"])]
    idle: Option<f64>,
    /// Write the first message to end to FILE as the MTA would pass it on: with the filter's
    /// header edits (add, insert, change) applied. Shows what a filter did (its
    /// Authentication-Results, its DKIM-Signature) in a file other tools can check.
    #[arg(long, value_name = "FILE", conflicts_with = "idle")]
    edited: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SmtpArgs {
    /// The SMTP server, ip:port.
    #[arg(long, value_name = "ADDR")]
    target: SocketAddr,
    #[command(flatten)]
    load: LoadArgs,
    /// Send `XCLIENT ADDR=<ip> NAME=<helo>` so the session looks like it comes from --ip
    /// (Postfix: `smtpd_authorized_xclient_hosts`).
    #[arg(long)]
    xclient: bool,
}

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// An RSA-2048 private key (PEM, PKCS#8 or PKCS#1): the signature verified is made with it.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The message hashed (RFC 5322; LF-only files are read as CRLF).
    #[arg(long, value_name = "FILE")]
    message: PathBuf,
    /// Seconds to measure for.
    #[arg(long, short = 'd', default_value_t = 2.0, value_name = "SECS")]
    duration: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl BenchCommand {
    /// Runs the load, prints the report; exit status 1 if any message failed.
    pub fn run(self) -> Result<ExitCode, BenchError> {
        let (load, report) = match self {
            BenchCommand::BenchFloor(args) => return floor(args),
            BenchCommand::BenchMilter(args) => {
                let target = Target::parse(&args.target).map_err(BenchError)?;
                let (limit, message, client) = common(&args.load, args.idle.is_some())?;
                let opts = MilterOptions {
                    target,
                    connections: args.load.connections,
                    limit,
                    message,
                    client,
                    session_messages: args.load.session_messages,
                    rate: args.load.rate,
                    timeout: seconds(args.load.timeout, "--timeout")?,
                    idle: args.idle.map(|s| seconds(s, "--idle")).transpose()?,
                    capture: args.edited.as_ref().map(|_| Arc::default()),
                };
                let capture = opts.capture.clone();
                let message = Arc::clone(&opts.message);
                let report = runtime(args.load.threads)?.block_on(super::milter::run(opts));
                if let (Some(path), Some(capture)) = (&args.edited, capture) {
                    write_edited(path, capture.get(), &message)?;
                }
                (args.load, report)
            }
            BenchCommand::BenchSmtp(args) => {
                let (limit, message, client) = common(&args.load, false)?;
                let opts = SmtpOptions {
                    target: args.target,
                    connections: args.load.connections,
                    limit,
                    message,
                    client,
                    xclient: args.xclient,
                    session_messages: args.load.session_messages,
                    rate: args.load.rate,
                    timeout: seconds(args.load.timeout, "--timeout")?,
                };
                let report = runtime(args.load.threads)?.block_on(super::smtp::run(opts));
                (args.load, report)
            }
        };
        print(&report, load.json)?;
        Ok(match report.errors {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::from(1),
        })
    }
}

/// Checks the shared arguments and reads the message.
fn common(load: &LoadArgs, idle: bool) -> Result<(Limit, Arc<Vec<u8>>, Client), BenchError> {
    if load.connections == 0 || load.connections > 100_000 {
        return Err(BenchError("--connections must be 1 to 100000".into()));
    }
    if !idle && load.messages.is_none() && load.duration.is_none() {
        return Err(BenchError(
            "give --messages N, --duration SECS or both (every run is bounded)".into(),
        ));
    }
    if let Some(rate) = load.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(BenchError("--rate must be a positive number".into()));
        }
    }
    let limit = Limit {
        messages: load.messages,
        duration: load
            .duration
            .map(|d| seconds(d, "--duration"))
            .transpose()?,
    };
    let raw = match &load.message {
        Some(path) => {
            let raw = std::fs::read(path)
                .map_err(|e| BenchError(format!("cannot read {}: {e}", path.display())))?;
            if raw.is_empty() {
                return Err(BenchError(format!(
                    "{}: the message is empty",
                    path.display()
                )));
            }
            to_crlf(raw)
        }
        None if idle => Vec::new(),
        None => return Err(BenchError("--message FILE is required".into())),
    };
    let mail_from = match &load.mail_from {
        Some(m) => m
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .into(),
        None => from_address(&raw).unwrap_or_default(),
    };
    let client = Client {
        ip: load.ip,
        helo: load.helo.clone(),
        mail_from,
        rcpt: load
            .rcpt
            .trim_start_matches('<')
            .trim_end_matches('>')
            .into(),
    };
    Ok((limit, Arc::new(raw), client))
}

/// `--edited`: the first message as the filter left it, and a line on stderr saying what
/// the filter answered (stdout stays the report alone, for `--json`).
fn write_edited(
    path: &std::path::Path,
    first: Option<&Captured>,
    message: &[u8],
) -> Result<(), BenchError> {
    let Some(first) = first else {
        // The report (printed next) says why; its exit status is 1 then.
        eprintln!(
            "--edited: no message got an answer, nothing written to {}",
            path.display()
        );
        return Ok(());
    };
    std::fs::write(path, first.apply(message))
        .map_err(|e| BenchError(format!("cannot write {}: {e}", path.display())))?;
    eprintln!(
        "first message: {}, {} header edit(s); written to {}",
        first.answer,
        first.edits.len(),
        path.display()
    );
    Ok(())
}

/// `bench-floor`: measure and print.
fn floor(args: FloorArgs) -> Result<ExitCode, BenchError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| BenchError(format!("cannot read {}: {e}", path.display())))
    };
    let report = super::floor::measure(
        &read(&args.key)?,
        read(&args.message)?,
        seconds(args.duration, "--duration")?,
    )?;
    if args.json {
        let text = serde_json::to_string(&report).map_err(|e| BenchError(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}

fn seconds(s: f64, flag: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| *d <= HARD_TIME_LIMIT)
        .ok_or_else(|| BenchError(format!("{flag}: 0 to 3600 seconds")))
}

/// One thread by default: the generator then takes at most one core from the peer it
/// measures, and needs no more (its work per message is a few syscalls).
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, BenchError> {
    let mut builder = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| BenchError(format!("starting the async runtime: {e}")))
}

fn print(report: &Report, json: bool) -> Result<(), BenchError> {
    if json {
        let text = serde_json::to_string(report).map_err(|e| BenchError(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", report.text());
    }
    Ok(())
}
