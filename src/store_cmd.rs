//! `authmilter store migrate` and `authmilter store copy`: bringing a store's schema up to
//! date without starting the daemon, and moving a single host's SQLite history into the
//! fleet's PostgreSQL database.

use anyhow::{bail, Context, Result};
use authmilter::config::Config;
use authmilter::store::{copy, Location, PgTarget, Store};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Bring the verdict store's schema up to date (serve does it too at start) and print
    /// its version.
    Migrate(MigrateArgs),
    /// Copy a SQLite store's history (verdicts, reports sent and received) into a
    /// PostgreSQL store, in one transaction. Refuses, copying nothing, when the target
    /// already holds verdicts of the hosts being copied (so it never copies twice).
    Copy(CopyArgs),
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Configuration file whose [store] to migrate.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The store instead: `sqlite:PATH`, a file path, or a `postgres://` URL.
    #[arg(long)]
    store: Option<String>,
}

#[derive(Args)]
pub struct CopyArgs {
    /// The SQLite store: `sqlite:PATH`.
    #[arg(long, value_name = "sqlite:PATH")]
    from: String,
    /// The PostgreSQL store: `postgres://user@host/db?sslmode=...`.
    #[arg(long, value_name = "URL")]
    to: String,
    /// PEM roots the PostgreSQL server's certificate must chain to.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The host recorded for verdicts from before hosts were recorded (default: this
    /// machine's host name).
    #[arg(long)]
    host: Option<String>,
}

pub fn store(command: StoreCommand) -> Result<ExitCode> {
    match command {
        StoreCommand::Migrate(args) => migrate(args),
        StoreCommand::Copy(args) => copy_cmd(args),
    }
}

/// A command-line store argument as messages show it: a URL without its password.
fn shown(arg: &str) -> String {
    if arg.contains("://") {
        authmilter::config::redact_url(arg)
    } else {
        arg.to_string()
    }
}

/// `sqlite:PATH`, `postgres://…`, or a plain path (SQLite).
fn location(text: &str, ca_file: Option<PathBuf>) -> Result<Location> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return PgTarget::parse(text, ca_file)
            .map(Location::Postgres)
            .map_err(anyhow::Error::msg);
    }
    let path = text.strip_prefix("sqlite:").unwrap_or(text);
    if path.is_empty() {
        bail!("`{}`: give sqlite:PATH or a postgres:// URL", shown(text));
    }
    Ok(Location::Sqlite(PathBuf::from(path)))
}

fn migrate(args: MigrateArgs) -> Result<ExitCode> {
    let location = match (&args.store, &args.config) {
        (Some(text), _) => location(text, None)?,
        (None, Some(path)) => Config::load(path)?
            .store
            .location()
            .context("the configuration has no [store] path or url")?,
        (None, None) => bail!("give --store or --config"),
    };
    let store = Store::connect(&location).with_context(|| format!("verdict store {location}"))?;
    println!(
        "{location}: {} schema version {}",
        store.backend(),
        store.schema_version()?
    );
    Ok(ExitCode::SUCCESS)
}

fn copy_cmd(args: CopyArgs) -> Result<ExitCode> {
    let Some(path) = args.from.strip_prefix("sqlite:") else {
        bail!("--from {}: give sqlite:PATH", shown(&args.from));
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!("--from {}: no such file", shown(&args.from));
    }
    let Location::Postgres(target) = location(&args.to, args.ca_file)? else {
        bail!("--to {}: give a postgres:// URL", shown(&args.to));
    };
    let host = args
        .host
        .unwrap_or_else(authmilter::config::machine_hostname);
    let copied = copy::copy(&path, &target, &host)
        .with_context(|| format!("copying {} to {}", path.display(), target.redacted()))?;
    println!(
        "copied {copied} from {} to {}",
        path.display(),
        target.redacted()
    );
    Ok(ExitCode::SUCCESS)
}
