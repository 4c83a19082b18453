//! The binary's signing commands — `keygen`, `dns-record`, `dns-check`, `sign` — and the
//! `--sign DOMAIN:SELECTOR:KEYFILE` quick-start flag that `sign` and `serve` share. Argument
//! parsing and printing only; the work is in `authmilter::sign`.
//!
//! Exit status: 0 done; 1 a negative answer (message not signed, DNS record missing or
//! different); 2 an error (bad arguments, unreadable or unsafe key, DNS failure).

use super::{load_config, read_raw, to_crlf, Common};
use anyhow::{bail, Context, Result};
use authmilter::config::{check_domain, check_selector, parse_sign_flag, Config, KeySpec};
use authmilter::dns::Dns;
use authmilter::sign::dns_check::{check_published, DnsCheck};
use authmilter::sign::keygen::{keygen as generate, DEFAULT_RSA_BITS};
use authmilter::sign::record::key_zone_line;
use authmilter::sign::{
    from_domain, Authorisation, DomainKey, KeyAlgorithm, KeyErrorKind, PrivateKey, Signer,
};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--sign DOMAIN:SELECTOR:KEYFILE`, for `sign` and `serve`: flatten it into their arguments
/// and call [`SignFlags::apply`] on the loaded configuration.
#[derive(Args, Clone, Debug, Default)]
pub struct SignFlags {
    /// Sign mail from DOMAIN with the key in KEYFILE as selector SELECTOR (repeatable: give
    /// an RSA and an Ed25519 key to dual-sign). Added to the configuration's [signing] keys.
    #[arg(long = "sign", value_name = "DOMAIN:SELECTOR:KEYFILE", value_parser = parse_sign_flag)]
    pub sign: Vec<KeySpec>,
}

impl SignFlags {
    /// Adds the flags' keys to the configuration (same domain and selector: the flag wins).
    pub fn apply(&self, config: &mut Config) {
        config.signing.add_keys(self.sign.iter().cloned());
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Algorithm {
    Ed25519,
    Rsa,
}

/// The name a key is published under.
#[derive(Args)]
pub struct KeyName {
    /// Signing domain (d=).
    #[arg(long, value_parser = check_domain)]
    domain: String,
    /// Selector (s=).
    #[arg(long, value_parser = check_selector)]
    selector: String,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Key algorithm: ed25519 (RFC 8463) or rsa; signatures take theirs from the key.
    #[arg(long, value_enum)]
    algorithm: Algorithm,
    /// RSA key size (2048 to 4096) [default: 2048].
    #[arg(long)]
    bits: Option<usize>,
    #[command(flatten)]
    name: KeyName,
    /// Folder for DOMAIN.SELECTOR.pem (mode 0600) and DOMAIN.SELECTOR.txt (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
pub struct DnsRecordArgs {
    /// Private key file (PEM).
    key: PathBuf,
    #[command(flatten)]
    name: KeyName,
}

#[derive(Args)]
pub struct DnsCheckArgs {
    /// Private key file (PEM).
    key: PathBuf,
    #[command(flatten)]
    name: KeyName,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct SignArgs {
    /// Signing domain for --key.
    #[arg(long, value_parser = check_domain, requires_all = ["selector", "key"])]
    domain: Option<String>,
    /// Selector for --key.
    #[arg(long, value_parser = check_selector, requires_all = ["domain", "key"])]
    selector: Option<String>,
    /// Sign with this key whatever the From domain (with --domain and --selector).
    #[arg(long, value_name = "KEYFILE", requires_all = ["domain", "selector"])]
    key: Option<PathBuf>,
    #[command(flatten)]
    flags: SignFlags,
    /// Configuration file whose [signing] section applies.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Sign as for this authenticated (SASL) user, so the [signing.users] map applies.
    #[arg(long, value_name = "USER")]
    auth_user: Option<String>,
    /// The message (RFC 5322), or - for standard input.
    file: String,
}

pub fn keygen(args: KeygenArgs) -> Result<ExitCode> {
    let (algorithm, bits) = match (args.algorithm, args.bits) {
        (Algorithm::Ed25519, Some(_)) => bail!("--bits applies to RSA keys only"),
        (Algorithm::Ed25519, None) => (KeyAlgorithm::Ed25519, 256),
        (Algorithm::Rsa, bits) => (KeyAlgorithm::Rsa, bits.unwrap_or(DEFAULT_RSA_BITS)),
    };
    let files = generate(
        algorithm,
        bits,
        &args.name.domain,
        &args.name.selector,
        &args.out,
    )?;
    eprintln!(
        "wrote {} (mode 0600) and {}; publish this record, then add the key to [signing]:",
        files.key_file.display(),
        files.record_file.display()
    );
    println!("{}", files.zone_line);
    Ok(ExitCode::SUCCESS)
}

pub fn dns_record(args: DnsRecordArgs) -> Result<ExitCode> {
    let key = match PrivateKey::load(&args.key) {
        Ok(key) => key,
        // Printing the public half is safe; still say the file needs fixing before `serve`.
        Err(e) if matches!(e.kind, KeyErrorKind::Permissions { .. }) => {
            eprintln!("authmilter: warning: {e}");
            let pem = std::fs::read(&args.key)
                .with_context(|| format!("cannot read {}", args.key.display()))?;
            PrivateKey::from_pem(&pem).map_err(|e| with_path(e, &args.key))?
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "{}",
        key_zone_line(&args.name.domain, &args.name.selector, &key)
    );
    Ok(ExitCode::SUCCESS)
}

fn with_path(mut e: authmilter::sign::KeyError, path: &Path) -> authmilter::sign::KeyError {
    e.path = Some(path.to_path_buf());
    e
}

pub fn dns_check(args: DnsCheckArgs) -> Result<ExitCode> {
    let key = PrivateKey::load(&args.key)?;
    let config = load_config(&args.common)?;
    let dns = Dns::new(&config.dns).context("DNS resolver")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (domain, selector) = (&args.name.domain, &args.name.selector);
    let name = format!("{selector}._domainkey.{domain}");
    let result = runtime.block_on(check_published(&dns, domain, selector, &key))?;
    let ok = result.is_ok();
    match result {
        DnsCheck::Matches { record } => {
            println!("{name}: OK, the record matches the key\n{record}")
        }
        DnsCheck::Missing => println!(
            "{name}: no TXT record; publish:\n{}",
            key_zone_line(domain, selector, &key)
        ),
        DnsCheck::Revoked { record } => {
            println!("{name}: the record revokes the key (empty p=)\n{record}")
        }
        DnsCheck::Differs { record, reason } => println!(
            "{name}: MISMATCH, {reason}\npublished: {record}\nexpected:  {}",
            key.dns_record()
        ),
        DnsCheck::Several { count, one_matches } => println!(
            "{name}: {count} TXT records (verifiers may use any of them); {}",
            if one_matches {
                "one of them matches the key"
            } else {
                "none matches the key"
            }
        ),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn sign(args: SignArgs) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    args.flags.apply(&mut config);
    let signer = Signer::new(&config.signing)?;
    let explicit = match (&args.domain, &args.selector, &args.key) {
        (Some(domain), Some(selector), Some(path)) => Some(DomainKey {
            domain: domain.clone(),
            selector: selector.clone(),
            identity: None,
            key: PrivateKey::load(path)?,
        }),
        _ => None,
    };
    if signer.is_empty() && explicit.is_none() {
        bail!("no signing key: give --domain, --selector and --key, or --sign, or a --config with [[signing.keys]]");
    }
    let raw = read_raw(&args.file)?;
    let lf_only = !raw.windows(2).any(|w| w == b"\r\n");
    let message = to_crlf(raw);
    let from = from_domain(&message);
    let mut keys: Vec<&DomainKey> = explicit.iter().collect();
    if !signer.is_empty() {
        let Some(from) = &from else {
            bail!(
                "{}: no single From address to choose the keys by",
                args.file
            );
        };
        match signer.authorise(from, args.auth_user.as_deref()) {
            Authorisation::Sign(found) => keys.extend(found),
            refusal if keys.is_empty() => {
                eprintln!("authmilter: not signed: {}", describe(&refusal, from));
                return Ok(ExitCode::from(1));
            }
            _ => {}
        }
    }
    let values = signer.sign_with(&keys, &message)?;
    let mut out = Vec::with_capacity(message.len() + 1024);
    for value in values {
        out.extend_from_slice(format!("DKIM-Signature: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(&message);
    if lf_only {
        // Give the file back in the line endings it came in (bytes, not text: 8-bit bodies).
        let mut lf = Vec::with_capacity(out.len());
        for (i, &b) in out.iter().enumerate() {
            if !(b == b'\r' && out.get(i + 1) == Some(&b'\n')) {
                lf.push(b);
            }
        }
        out = lf;
    }
    std::io::stdout()
        .write_all(&out)
        .context("writing the signed message")?;
    Ok(ExitCode::SUCCESS)
}

fn describe(refusal: &Authorisation<'_>, from: &str) -> String {
    match refusal {
        Authorisation::NotOurDomain => format!("no key for the From domain {from}"),
        Authorisation::Unauthorised { user, domain } => {
            format!("user {user} may not sign for {domain} ([signing.users])")
        }
        Authorisation::Sign(_) => "signed".into(),
    }
}
