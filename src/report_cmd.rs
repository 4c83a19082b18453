//! `authmilter report send`: send (or with `--dry-run`, describe) the DMARC aggregate reports
//! that are due, by hand; `authmilter report import` (in `authmilter::report::import_cmd`):
//! store the reports other receivers sent. `serve` does the same on a schedule; both go through
//! `authmilter::report::send`, and both record what was sent, so neither sends a report the
//! other already sent. `authmilter report readiness`: which senders of a domain would lose
//! mail under `p=quarantine` or `p=reject` (`authmilter::report::readiness`).
//!
//! Exit status: 0 done (sent, skipped or nothing due); 1 some report failed or waits for a
//! retry; 2 an error (arguments, configuration, store).

use super::{load_config, Common};
use anyhow::{bail, Context, Result};
use authmilter::auth::Verifier;
use authmilter::dates::{format_rfc3339, now_ms, parse_time, parse_utc_day};
use authmilter::report::readiness::Readiness;
use authmilter::report::send::{Selection, Sender, State, LOOKBACK_MS};
use authmilter::store::{Location, Store};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Send the aggregate reports that are due (RFC 9990): by default every period that
    /// ended in the last two days and was not sent yet.
    Send(SendArgs),
    /// Store the aggregate reports in a message, .xml, .xml.gz or .zip file, in every file
    /// of a directory, or on standard input (-); exit 1 if any was refused.
    Import(authmilter::report::import_cmd::ImportArgs),
    /// Enforcement readiness of a domain: its sending sources (address, reverse name, SPF
    /// and DKIM domains, volume, DMARC pass rate) classed aligned / fixable / failing, from
    /// the aggregate reports received and this filter's verdicts, and the share of its mail
    /// p=quarantine or p=reject would hold or refuse today.
    Readiness(ReadinessArgs),
}

#[derive(Args)]
pub struct ReadinessArgs {
    #[command(flatten)]
    common: Common,
    /// The verdict store (default: the configuration's [store] path or url).
    #[arg(long)]
    store: Option<PathBuf>,
    /// The policy domain (one of ours).
    #[arg(long)]
    domain: String,
    /// The start of the period: a duration ago (30d, 12h), RFC 3339 or Unix seconds.
    #[arg(long, default_value = "30d")]
    since: String,
    /// Print the JSON `GET /v1/reports/readiness` answers instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    common: Common,
    /// The verdict store (default: the configuration's [store] path).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Only the periods of this UTC day (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    period: Option<String>,
    /// Only this policy domain.
    #[arg(long)]
    domain: Option<String>,
    /// Print what would be sent to whom; send and record nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn report(command: ReportCommand) -> Result<ExitCode> {
    match command {
        ReportCommand::Send(args) => send(args),
        ReportCommand::Readiness(args) => readiness(args),
        ReportCommand::Import(args) => {
            let tally = authmilter::report::import_cmd::run(&args, &mut std::io::stdout())?;
            Ok(if tally.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The store `--store` names, else the configuration's.
fn store_location(store: Option<PathBuf>, config: &authmilter::config::Config) -> Result<Location> {
    store
        .map(Location::Sqlite)
        .or_else(|| config.store.location())
        .context("no verdict store: give --store or a configuration with [store] path or url")
}

fn readiness(args: ReadinessArgs) -> Result<ExitCode> {
    let config = load_config(&args.common)?;
    let location = store_location(args.store, &config)?;
    let now = now_ms();
    let Some(since) = parse_time(&args.since, now) else {
        bail!(
            "--since: `{}` is not a duration like 30d, RFC 3339 or Unix seconds",
            args.since
        );
    };
    let domain = args
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let store = Store::connect(&location).with_context(|| format!("opening {location}"))?;
    let mut view = Readiness::gather(&store, &domain, since, now, config.reports.email.as_deref())?;
    let verifier = Verifier::new(Arc::new(config)).context("DNS resolver")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(view.name_sources(verifier.dns()));
    if args.json {
        println!("{:#}", view.to_json());
    } else {
        print!("{}", view.table());
    }
    Ok(ExitCode::SUCCESS)
}

fn send(args: SendArgs) -> Result<ExitCode> {
    let config = load_config(&args.common)?;
    let location = store_location(args.store, &config)?;
    let now = now_ms();
    let ending = match &args.period {
        Some(day) => match parse_utc_day(day) {
            Some(range) => range,
            None => bail!("--period: `{day}` is not a date YYYY-MM-DD"),
        },
        None => (now - LOOKBACK_MS)..now,
    };
    if !args.dry_run && config.reports.delivery.is_none() {
        bail!("nowhere to send: configure [reports] relay or outbox (or use --dry-run)");
    }
    let store = Store::connect(&location)
        .with_context(|| format!("opening {location}"))?
        .with_host(&config.store.host);
    let store = Arc::new(Mutex::new(store));
    let sender = Sender::new(&config);
    let verifier = Verifier::new(Arc::new(config)).context("DNS resolver")?;
    let selection = Selection {
        ending,
        domain: args.domain,
        dry_run: args.dry_run,
        ignore_wait: true,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let progress = authmilter::progress::Progress::on_terminal("domains", None);
    let results =
        runtime.block_on(sender.run_showing(&store, verifier.dns(), &selection, now, &progress))?;
    drop(progress);
    let mut code = ExitCode::SUCCESS;
    for r in &results {
        let (word, why) = match &r.state {
            State::WouldSend => ("would send", None),
            State::Sent => ("sent", None),
            State::AlreadyDone => ("already sent", None),
            State::Skipped(why) => ("skipped", Some(why)),
            State::Retry(why) => {
                code = ExitCode::from(1);
                ("will retry", Some(why))
            }
            State::Failed(why) => {
                code = ExitCode::from(1);
                ("failed", Some(why))
            }
        };
        println!(
            "{word}: {} {} to {} ({} messages, {} bytes gzipped) to: {}{}",
            r.domain,
            format_rfc3339(r.period.start),
            format_rfc3339(r.period.end),
            r.messages,
            r.size,
            if r.to.is_empty() {
                "nobody".to_string()
            } else {
                r.to.join(", ")
            },
            why.map(|w| format!(" [{w}]")).unwrap_or_default()
        );
        for (address, reason) in &r.left_out {
            println!("  left out {address}: {reason}");
        }
    }
    if results.is_empty() {
        println!("no reports due");
    }
    Ok(code)
}
