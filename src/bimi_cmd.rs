//! The `bimi check DOMAIN` command: the BIMI record, evidence and indicator a domain
//! publishes, checked with the same code as mail (`authmilter::bimi`), as `dns-check` does
//! for DKIM keys. The DMARC prerequisites belong to a message and are not part of it.
//!
//! Exit status: 0 `pass`; 1 any other result; 2 an error (configuration, resolver).

use super::{load_config, Common};
use anyhow::{Context, Result};
use authmilter::bimi::{Bimi, BimiResult};
use authmilter::config::{check_domain, check_selector};
use authmilter::dns::Dns;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum BimiCommand {
    /// Look up DOMAIN's BIMI record, fetch and check its evidence (mark certificate) and
    /// indicator with the [bimi] settings, and print what was found (exit 1 unless pass).
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// The domain publishing the record (`<selector>._bimi.<domain>`).
    #[arg(value_parser = check_domain)]
    domain: String,
    /// The selector.
    #[arg(long, default_value = "default", value_parser = check_selector)]
    selector: String,
    #[command(flatten)]
    common: Common,
}

pub fn bimi(command: BimiCommand) -> Result<ExitCode> {
    let BimiCommand::Check(args) = command;
    let config = load_config(&args.common)?;
    let dns = Arc::new(Dns::new(&config.dns).context("DNS resolver")?);
    let checker = Bimi::build(&config.bimi, dns).context("[bimi]")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (domain, selector) = (&args.domain, &args.selector);
    let found = runtime.block_on(checker.check_domain(
        domain,
        domain,
        selector,
        std::time::SystemTime::now(),
    ));
    println!("record: {selector}._bimi.{domain}");
    println!("result: {}", found.result.as_str());
    if let Some(reason) = &found.reason {
        println!("reason: {reason}");
    }
    if let Some(l) = &found.location {
        println!("indicator (l=): {l}");
    }
    if let Some(a) = &found.authority {
        println!("evidence (a=): {a}");
    }
    if let Some(mark) = found.mark_type {
        println!(
            "mark certificate: {} (chain, EKU, names, logotype checked)",
            mark.as_str()
        );
    }
    if let Some(svg) = &found.indicator {
        println!("indicator: SVG Tiny PS, {} bytes", svg.len());
    }
    Ok(if found.result == BimiResult::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
