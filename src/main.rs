//! The `authmilter` command: parses arguments, loads configuration, calls the library, and
//! maps errors to exit codes. Everything else lives in the library.

use anyhow::{bail, Context, Result};
use authmilter::auth::{normalize_mail_from, Connection, Verifier};
use authmilter::check::{check_message, Decision};
use authmilter::config::{parse_network, Config, ListenAddr};
use authmilter::log_sink::LogSink;
use authmilter::policy::Policy;
use authmilter::runtime::Snapshot;
use authmilter::server::Loader;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod bimi_cmd;
mod docs_cmd;
mod report_cmd;
mod seal_cmd;
mod sign_cmd;
mod store_cmd;

#[derive(Parser)]
#[command(
    name = "authmilter",
    version,
    about = "Email authentication filter: SPF, DKIM, ARC and DMARC"
)]
struct Cli {
    /// Log line format on standard error: `text` for people, `json` (one object a line) for
    /// log shippers. The filter comes from AUTHMILTER_LOG (default `authmilter=info,warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the milter daemon (Postfix: `smtpd_milters = inet:127.0.0.1:8895`), and with
    /// `--smtp` the SMTP front end.
    Serve(ServeArgs),
    /// Verify one message and print the verdict and the Authentication-Results header.
    Check(CheckArgs),
    /// Validate a configuration file (and the policy it names) without running anything.
    Validate {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Verify one message, add our ARC set (RFC 8617) and print the sealed message (exit 1
    /// if it was not sealed, with the reason on stderr).
    ArcSeal(seal_cmd::ArcSealArgs),
    /// DKIM-sign one message and print it (exit 1 if no key applies).
    Sign(sign_cmd::SignArgs),
    /// Generate a DKIM key pair: the private key (mode 0600) and its DNS record.
    Keygen(sign_cmd::KeygenArgs),
    /// Print a passwd-file line `USER:{ARGON2ID}...` for SMTP AUTH; the password is read
    /// from the terminal (not echoed) or from the first line of standard input.
    Passwd {
        /// The login name.
        user: String,
    },
    /// Print the DNS record (zone-file line) publishing a private key's public half.
    DnsRecord(sign_cmd::DnsRecordArgs),
    /// Check that the DKIM record published in DNS matches a private key (exit 1 if not).
    DnsCheck(sign_cmd::DnsCheckArgs),
    /// DMARC reports (RFC 9990): send the aggregate reports that are due; store the ones
    /// other receivers sent.
    #[command(subcommand)]
    Report(report_cmd::ReportCommand),
    /// The verdict store: migrate its schema; copy a SQLite store's history into the
    /// fleet's PostgreSQL database.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// BIMI: check the record, mark certificate and indicator a domain publishes.
    #[command(subcommand)]
    Bimi(bimi_cmd::BimiCommand),
    #[command(flatten)]
    Bench(authmilter::loadgen::BenchCommand),
    /// Write the man pages (authmilter.8, one authmilter-COMMAND.8 per command, and
    /// authmilter.toml.5) into DIR; the package build runs this.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Settings every subcommand that resolves or verifies accepts.
#[derive(Args)]
struct Common {
    /// Configuration file (TOML); embedded defaults without it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// DNS server to use, as IP:PORT (repeatable); replaces the configured ones.
    #[arg(long = "nameserver", value_name = "IP:PORT")]
    nameservers: Vec<SocketAddr>,
    /// authserv-id written into Authentication-Results.
    #[arg(long)]
    authserv_id: Option<String>,
    /// Trusted client network, CIDR (repeatable); replaces the configured list.
    #[arg(long = "trusted-network", value_name = "CIDR")]
    trusted_networks: Vec<String>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Milter listener: `ip:port` or `unix:/path/to/socket` (default 127.0.0.1:8895).
    #[arg(long, value_name = "ADDR")]
    milter: Option<String>,
    /// HTTP API listener, `ip:port` (bare `--http`: 127.0.0.1:8896). A non-loopback address
    /// needs [[http.tokens]] in the configuration.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = authmilter::config::DEFAULT_HTTP_LISTEN)]
    http: Option<SocketAddr>,
    /// Record verdicts in this SQLite file (the verdict store).
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    #[command(flatten)]
    sign: sign_cmd::SignFlags,
    #[command(flatten)]
    smtp: SmtpFlags,
}

/// The SMTP front end (`[smtp]` in the configuration; these flags override it).
#[derive(Args, Clone)]
struct SmtpFlags {
    /// SMTP listener, `ip:port` (bare `--smtp`: 127.0.0.1:2525).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = authmilter::config::DEFAULT_SMTP_LISTEN)]
    smtp: Option<SocketAddr>,
    /// Hand accepted mail to this SMTP server (`host:port`), e.g. Postfix on 127.0.0.1:10025.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "maildir")]
    relay: Option<String>,
    /// Deliver accepted mail into this Maildir (the default, `./maildir`, without --relay).
    #[arg(long, value_name = "DIR")]
    maildir: Option<PathBuf>,
    /// Domain that untrusted clients may send to (repeatable); replaces the configured list.
    #[arg(long = "local-domain", value_name = "DOMAIN")]
    local_domains: Vec<String>,
    /// STARTTLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// STARTTLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl SmtpFlags {
    fn apply(&self, config: &mut Config) -> Result<()> {
        use authmilter::config::{check_relay, normalize_domain, Delivery};
        let smtp = &mut config.smtp;
        if let Some(addr) = self.smtp {
            smtp.listen = Some(addr);
        }
        if let Some(relay) = &self.relay {
            smtp.delivery =
                Delivery::Relay(check_relay(relay).map_err(|e| anyhow::anyhow!("--relay: {e}"))?);
        }
        if let Some(dir) = &self.maildir {
            smtp.delivery = Delivery::Maildir(dir.clone());
        }
        if !self.local_domains.is_empty() {
            smtp.local_domains = self
                .local_domains
                .iter()
                .map(|d| {
                    normalize_domain(d)
                        .ok_or_else(|| anyhow::anyhow!("--local-domain: `{d}` is not a domain"))
                })
                .collect::<Result<_>>()?;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            smtp.tls = Some((cert.clone(), key.clone()));
        }
        Ok(())
    }
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,
    /// SMTP client address (SPF is not evaluated without one).
    #[arg(long)]
    ip: Option<IpAddr>,
    /// HELO/EHLO name the client gave.
    #[arg(long)]
    helo: Option<String>,
    /// Envelope sender; '<>' or '' is the null sender. Default: the message's Return-Path.
    #[arg(long = "mail-from", value_name = "ADDR")]
    mail_from: Option<String>,
    /// Envelope recipient (repeatable; recorded only).
    #[arg(long = "rcpt", value_name = "ADDR")]
    rcpts: Vec<String>,
    /// Print the verdict as a JSON document.
    #[arg(long)]
    json: bool,
    /// The message (RFC 5322), or - for standard input.
    file: String,
}

/// mimalloc instead of glibc malloc: under load glibc's malloc/free took about 9 % of the
/// daemon's CPU, part of it waiting on arena locks between worker threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc (v3) asks for them on its arenas, and
/// then every 2 MiB region it touches is resident whole: a 25 MB milter message cost 1.65
/// times its size at its peak instead of 1.16 (bench/memory.sh), an idle daemon 31 MiB
/// instead of 20. Its `no_thp` build feature (Cargo.toml) stops the request; this also
/// covers a system whose THP setting is `always` (what `MIMALLOC_ALLOW_THP=0` would do).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE reads only its integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let _flush_on_exit = match start_logging(cli.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("authmilter: cannot start the log writer thread: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authmilter: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Log lines go through a buffer to a writer thread, so a message's verdict line never waits
/// on stderr (a slow journald or terminal) and never wakes a thread: lossy when stderr does
/// not keep up (src/log_sink.rs). Colour only on a terminal (never with NO_COLOR, never in
/// JSON); under systemd's journal no timestamp of ours. The guard writes out the rest when
/// main returns.
fn start_logging(format: LogFormat) -> std::io::Result<authmilter::log_sink::FlushGuard> {
    let (writer, guard) = LogSink::start(std::io::stderr())?;
    let style = authmilter::log_sink::LogStyle::for_stderr();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHMILTER_LOG")
        .unwrap_or_else(|_| "authmilter=info,warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match (format, style.timestamp) {
        (LogFormat::Text, true) => logs.with_ansi(style.colour).init(),
        (LogFormat::Text, false) => logs.with_ansi(style.colour).without_time().init(),
        // Event fields at the top level beside timestamp, level, target and message, so a
        // shipper indexes `queue_id` or `error` without unpacking a nested object.
        (LogFormat::Json, _) => logs.with_ansi(false).json().flatten_event(true).init(),
    }
    Ok(guard)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => check(args).map(|()| ExitCode::SUCCESS),
        Command::Sign(args) => sign_cmd::sign(args),
        Command::ArcSeal(args) => seal_cmd::arc_seal(args),
        Command::Keygen(args) => sign_cmd::keygen(args),
        Command::Passwd { user } => passwd(&user),
        Command::DnsRecord(args) => sign_cmd::dns_record(args),
        Command::DnsCheck(args) => sign_cmd::dns_check(args),
        Command::Report(command) => report_cmd::report(command),
        Command::Store(command) => store_cmd::store(command),
        Command::Bimi(command) => bimi_cmd::bimi(command),
        Command::Bench(bench) => Ok(bench.run()?),
        Command::Man { dir } => docs_cmd::man(Cli::command(), &dir),
        Command::Completions { shell } => docs_cmd::completions(Cli::command(), shell),
        Command::Validate { config } => {
            let c = Config::load(&config)?;
            let policy = load_policy(&c)?;
            println!(
                "{}: OK (authserv-id {}, {} nameserver(s), policy {})",
                config.display(),
                c.authserv_id,
                c.dns.nameservers.len(),
                c.policy_dir
                    .as_ref()
                    .map(|d| d.join("default.toml").display().to_string())
                    .unwrap_or_else(|| "built-in".into())
            );
            drop(policy);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `authmilter passwd USER`: one passwd-file line on standard output.
fn passwd(user: &str) -> Result<ExitCode> {
    use std::io::{BufRead, IsTerminal, Write};
    if user.is_empty() || user.contains([':', '\n', '\r', '\t']) {
        anyhow::bail!("a user name must not be empty or contain ':' or line breaks");
    }
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    // No terminal crate: stty turns echo off and on again.
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if terminal {
        eprint!("Password for {user}: ");
        let _ = std::io::stderr().flush();
        stty("-echo");
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        stty("echo");
        eprintln!();
    }
    read.context("reading the password")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    let hash = authmilter::identity::passwd::hash_argon2id(password.as_bytes())
        .map_err(anyhow::Error::msg)?;
    println!("{user}:{hash}");
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> Result<()> {
    let milter = args
        .milter
        .as_deref()
        .map(ListenAddr::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    // The same file and flags are applied again on every reload.
    let sign = args.sign;
    let smtp = args.smtp;
    let (http, store) = (args.http, args.store);
    let build = move |common: &Common| -> Result<Config> {
        let mut config = load_config(common)?;
        if let Some(addr) = &milter {
            config.milter.listen = addr.clone();
        }
        if let Some(addr) = http {
            config.http.listen = Some(addr);
        }
        if let Some(path) = &store {
            config.store.path = Some(path.clone());
            config.store.url = None;
        }
        config.http.check().map_err(anyhow::Error::msg)?;
        sign.apply(&mut config);
        smtp.apply(&mut config)?;
        Ok(config)
    };
    let config = build(&args.common)?;
    let common = Arc::new(args.common);
    let loader: Loader = Arc::new(move || {
        let config = build(&common).map_err(|e| format!("{e:#}"))?;
        Snapshot::new(config)
    });
    Ok(authmilter::server::serve(config, loader)?)
}

fn load_config(common: &Common) -> Result<Config> {
    let mut config = match &common.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !common.nameservers.is_empty() {
        config.dns.nameservers = common.nameservers.clone();
    }
    if let Some(id) = &common.authserv_id {
        config.authserv_id = id.clone();
    }
    if !common.trusted_networks.is_empty() {
        config.trusted_networks = common
            .trusted_networks
            .iter()
            .map(|n| parse_network(n).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?;
    }
    Ok(config)
}

fn load_policy(config: &Config) -> Result<Policy> {
    Ok(match &config.policy_dir {
        Some(dir) => Policy::load_dir(dir)?,
        None => Policy::default(),
    })
}

/// What a command that verifies one message was told about its SMTP client.
struct ClientArgs<'a> {
    ip: Option<IpAddr>,
    helo: Option<&'a str>,
    /// Without it, the message's Return-Path.
    mail_from: Option<&'a str>,
}

/// Reads `file` and verifies it as the daemon would (`check`, `arc-seal`): the message and
/// the decision.
fn verify_file(config: Config, file: &str, client: ClientArgs<'_>) -> Result<(Vec<u8>, Decision)> {
    let policy = load_policy(&config)?;
    let raw = read_input(file)?;
    if raw.is_empty() {
        bail!("{file}: the message is empty");
    }
    let mail_from = match client.mail_from {
        Some(m) => normalize_mail_from(m),
        None => return_path(&raw).unwrap_or_default(),
    };
    let conn = Connection {
        ip: client.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        helo: client.helo.map(str::to_string),
        authenticated: None,
    };
    let verifier = Verifier::new(Arc::new(config)).context("DNS resolver")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let bimi = authmilter::bimi::Bimi::new(&verifier.config().bimi, Arc::clone(verifier.dns()))?;
    let decision = runtime.block_on(async {
        let mut decision = check_message(&verifier, &policy, &conn, &mail_from, &raw).await;
        if let Some(bimi) = &bimi {
            authmilter::check::add_bimi(bimi, &mut decision, &conn, &raw).await;
        }
        decision
    });
    Ok((raw, decision))
}

fn check(args: CheckArgs) -> Result<()> {
    let config = load_config(&args.common)?;
    let client = ClientArgs {
        ip: args.ip,
        helo: args.helo.as_deref(),
        mail_from: args.mail_from.as_deref(),
    };
    let (_, decision) = verify_file(config, &args.file, client)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decision.report())?);
    } else {
        let v = &decision.verdict;
        println!("verdict: {} ({} {} {})", v.action, v.code, v.status, v.text);
        for reason in &v.reasons {
            println!("reason: {reason}");
        }
        for (name, value) in &decision.edits.add {
            println!("{name}: {}", value.replace("\r\n", "\n"));
        }
    }
    let _ = &args.rcpts;
    Ok(())
}

fn read_input(file: &str) -> Result<Vec<u8>> {
    Ok(to_crlf(read_raw(file)?))
}

/// The bytes of a file, or of standard input for `-`.
fn read_raw(file: &str) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("reading standard input")?;
    } else {
        raw = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    }
    Ok(raw)
}

/// Accepts LF-only files (as editors save them): mail on the wire is CRLF.
fn to_crlf(mut raw: Vec<u8>) -> Vec<u8> {
    if !raw.windows(2).any(|w| w == b"\r\n") {
        let mut crlf = Vec::with_capacity(raw.len() + raw.len() / 32);
        for &b in &raw {
            if b == b'\n' {
                crlf.push(b'\r');
            }
            crlf.push(b);
        }
        raw = crlf;
    }
    raw
}

/// The envelope sender recorded by the last MTA (`Return-Path:`), for `check` without
/// `--mail-from`.
fn return_path(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(64 * 1024)]);
    for line in text.split("\r\n") {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("Return-Path") {
            return Some(normalize_mail_from(value));
        }
    }
    None
}
