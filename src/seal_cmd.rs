//! `authmilter arc-seal`: verify one message, then add our ARC set and print the sealed
//! message, for trials and for tests. The work is in `authmilter::check` (the same
//! functions the milter and the SMTP front end call at end of message).
//!
//! Exit status: 0 sealed; 1 not sealed (the reason is printed on stderr, the message is
//! printed with the other edits made); 2 an error (arguments, configuration, key).

use super::{load_config, verify_file, ClientArgs, Common};
use anyhow::{bail, Context, Result};
use authmilter::check::{apply_edits, seal_inbound};
use authmilter::config::{parse_sign_flag, KeySpec, SealMode};
use authmilter::sign::seal::Sealer;
use clap::Args;
use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

#[derive(Args)]
pub struct ArcSealArgs {
    #[command(flatten)]
    common: Common,
    /// Seal as DOMAIN with the RSA key in KEYFILE as selector SELECTOR, instead of the
    /// configuration's [arc.seal] domain, selector and key_file.
    #[arg(long = "seal", value_name = "DOMAIN:SELECTOR:KEYFILE", value_parser = parse_sign_flag)]
    seal: Option<KeySpec>,
    /// SMTP client address (SPF is not evaluated without one).
    #[arg(long)]
    ip: Option<IpAddr>,
    /// HELO/EHLO name the client gave.
    #[arg(long)]
    helo: Option<String>,
    /// Envelope sender; '<>' or '' is the null sender. Default: the message's Return-Path.
    #[arg(long = "mail-from", value_name = "ADDR")]
    mail_from: Option<String>,
    /// The message (RFC 5322), or - for standard input.
    file: String,
}

pub fn arc_seal(args: ArcSealArgs) -> Result<ExitCode> {
    let mut config = load_config(&args.common)?;
    if let Some(spec) = &args.seal {
        config.arc_seal.domain = spec.domain.clone();
        config.arc_seal.selector = spec.selector.clone();
        config.arc_seal.key_file = spec.key_file.clone();
        config.arc_seal.origin = spec.origin.clone();
        config.arc_seal.mode = SealMode::Verified;
    }
    if config.arc_seal.mode == SealMode::Off {
        bail!("no sealing key: give --seal DOMAIN:SELECTOR:KEYFILE or a configuration with [arc.seal]");
    }
    // Whatever the daemon seals, the command seals the message it verifies.
    config.arc_seal.mode = SealMode::Verified;
    let sealer = Sealer::new(&config.arc_seal)?.context("sealing is off")?;
    let client = ClientArgs {
        ip: args.ip,
        helo: args.helo.as_deref(),
        mail_from: args.mail_from.as_deref(),
    };
    let (raw, mut decision) = verify_file(config, &args.file, client)?;
    let sealed = seal_inbound(&sealer, &mut decision, &raw);
    let out = apply_edits(&raw, &decision.edits);
    std::io::stdout()
        .write_all(&out)
        .context("writing the message")?;
    match sealed {
        Ok(Some(instance)) => {
            eprintln!("sealed: i={instance}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            eprintln!(
                "not sealed: the verdict is {} ({})",
                decision.verdict.action,
                decision.verdict.reasons.join("; ")
            );
            Ok(ExitCode::from(1))
        }
        Err(why) => {
            eprintln!("not sealed: {why}");
            Ok(ExitCode::from(1))
        }
    }
}
