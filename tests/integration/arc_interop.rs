//! ARC interop, both directions, over the DKIM corpus of hostile bodies and headers (empty
//! body, trailing whitespace lines, folded and 8-bit headers, 998-byte lines, ...):
//! - our seals, one and two hops (our own sealed output sealed again), validate in dkimpy
//!   (`dkim.arc_verify`, Debian `python3-dkim`) and in Mail::DKIM's ARC verifier (Debian
//!   `libmail-dkim-perl`);
//! - we seal on top of dkimpy's and Mail::DKIM's seals (our validation says pass, our set is
//!   i=2 cv=pass), and the three-party chain validates in both peers and in ours;
//! - the `authmilter arc-seal` binary's output validates in both peers as a user runs them.
//!
//! Neither peer needs a DNS server: dkimpy takes a DNS function and Mail::DKIM's query
//! function is replaced, both answering from the records main.zone publishes. dkimpy's ARC
//! signer needs `python3-authres`. Without a peer each test prints "skipped: ..." and
//! passes, unless `AUTHMILTER_REQUIRE_PEERS=1` (CI), where it fails.

use crate::arc_seal::{hop, our_arc, sealer};
use crate::common::*;
use crate::signing::{corpus, delivered};
use crate::signing_interop::{probe, run_script, skip, PYTHON};
use authmilter::auth::AuthResult;
use authmilter::config::SealMode;
use std::path::{Path, PathBuf};
use std::process::Command;

fn have_dkimpy() -> bool {
    probe(PYTHON, &["-c", "import dkim, authres"])
        || skip("dkimpy with authres (python3-dkim, python3-authres) not installed")
}

fn have_mail_dkim() -> bool {
    probe(
        "perl",
        &[
            "-MMail::DKIM::ARC::Verifier",
            "-MMail::DKIM::ARC::Signer",
            "-e1",
        ],
    ) || skip("Mail::DKIM (libmail-dkim-perl) not installed")
}

/// `name<TAB>record` for the keys the seals use (all the same 2048-bit test key).
fn records_file(dir: &Path) -> String {
    let key = std::fs::read_to_string(testdata("keys/rsa2048.pub.b64")).unwrap();
    let record = format!("v=DKIM1; k=rsa; p={}", key.trim());
    let text: String = [
        "arc._domainkey.lists.example.org",
        "rsa._domainkey.example.org",
        "rsa._domainkey.example.com",
    ]
    .iter()
    .map(|name| format!("{name}\t{record}\n"))
    .collect();
    let path = dir.join("records.tsv");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const DKIMPY_ARC_VERIFY: &str = r#"
import sys, dkim
records = {}
for line in open(sys.argv[1], "rb"):
    name, text = line.rstrip(b"\n").split(b"\t", 1)
    records[name.lower()] = text
def dnsfunc(name, timeout=5):
    return records.get(name.rstrip(b".").lower())
for path in sys.argv[2:]:
    msg = open(path, "rb").read()
    try:
        cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
        print("%s\t%s\t%d\t%s" % (path, (cv or b"none").decode(), len(results), reason))
    except Exception as e:
        print("%s\terror\t0\t%s" % (path, e))
"#;

const MAIL_DKIM_ARC_VERIFY: &str = r#"
use strict; use warnings;
use Mail::DKIM::ARC::Verifier; use Net::DNS;
my ($records, @files) = @ARGV;
my %rec;
open my $r, '<', $records or die;
while (<$r>) { chomp; my ($n, $t) = split /\t/, $_, 2; $rec{lc $n} = $t; }
{
    no warnings 'redefine';
    *Mail::DKIM::DNS::query = sub {
        my ($name, $type) = @_;
        $name = lc $name; $name =~ s/\.$//;
        my $t = $rec{$name};
        if (!defined $t) { $@ = 'NXDOMAIN'; return; }
        return Net::DNS::RR->new(name => $name, type => 'TXT', txtdata => [unpack('(a255)*', $t)]);
    };
}
for my $f (@files) {
    open my $fh, '<:raw', $f or die; my $m = do { local $/; <$fh> };
    my $v = Mail::DKIM::ARC::Verifier->new; $v->PRINT($m); $v->CLOSE;
    printf "%s\t%s\t%s\n", $f, $v->result, $v->result_detail // '';
}
"#;

/// Each file's chain result in both peers: `(file, dkimpy cv, Mail::DKIM result)`.
fn peers_verdicts(dir: &Path, files: &[PathBuf]) -> Vec<(String, String, String)> {
    let mut args = vec![records_file(dir)];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let py = run_script(PYTHON, dir, "arcverify.py", DKIMPY_ARC_VERIFY, &args);
    let pl = run_script("perl", dir, "arcverify.pl", MAIL_DKIM_ARC_VERIFY, &args);
    let col = |text: &str, path: &str, k: usize| {
        text.lines()
            .find(|l| l.split('\t').next() == Some(path))
            .map(|l| l.split('\t').nth(k).unwrap_or("").to_string())
            .unwrap_or_else(|| "missing".into())
    };
    args[1..]
        .iter()
        .map(|p| (p.clone(), col(&py, p, 1), col(&pl, p, 1)))
        .collect()
}

fn assert_all_pass(verdicts: &[(String, String, String)]) {
    let failures: Vec<_> = verdicts
        .iter()
        .filter(|(_, py, pl)| py != "pass" || pl != "pass")
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_seals_validate_in_dkimpy_and_mail_dkim() {
    if !have_dkimpy() || !have_mail_dkim() {
        return;
    }
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, message) in corpus() {
        let (one, sealed) = hop(&env, &s, &delivered(message)).await;
        assert_eq!(sealed, Ok(Some(1)), "{name}");
        // Several hops: our own sealed output sealed again.
        let (two, sealed) = hop(&env, &s, &one).await;
        assert_eq!(sealed, Ok(Some(2)), "{name}");
        assert_eq!(our_arc(&env, &two).await, (AuthResult::Pass, 2), "{name}");
        for (hops, m) in [(1, one), (2, two)] {
            let path = dir.path().join(format!("{name}.{hops}.eml"));
            std::fs::write(&path, m).unwrap();
            files.push(path);
        }
    }
    assert_all_pass(&peers_verdicts(dir.path(), &files));
}

const DKIMPY_ARC_SIGN: &str = r#"
import sys, dkim
key = open(sys.argv[1], "rb").read()
for path in sys.argv[2:]:
    msg = open(path, "rb").read()
    msg = b"Authentication-Results: peer.example.org; spf=pass smtp.mailfrom=alice@example.com\r\n" + msg
    headers = dkim.arc_sign(msg, b"rsa", b"example.org", key, b"peer.example.org",
                            include_headers=[b"from", b"to", b"subject", b"date"])
    assert headers, "dkimpy added no ARC set"
    open(path + ".sealed", "wb").write(b"".join(headers) + msg)
"#;

const MAIL_DKIM_ARC_SIGN: &str = r#"
use strict; use warnings;
use Mail::DKIM::ARC::Signer;
my ($key, @files) = @ARGV;
for my $path (@files) {
    open my $fh, '<:raw', $path or die; my $m = do { local $/; <$fh> }; close $fh;
    $m = "Authentication-Results: peer.example.org; spf=pass smtp.mailfrom=alice\@example.com\015\012" . $m;
    my $s = Mail::DKIM::ARC::Signer->new(Algorithm => 'rsa-sha256', Chain => 'ar',
        Domain => 'example.org', SrvId => 'peer.example.org', Selector => 'rsa',
        KeyFile => $key, Headers => 'from:to:subject:date');
    $s->PRINT($m); $s->CLOSE;
    die "Mail::DKIM did not seal: " . $s->result_detail unless $s->result eq 'sealed';
    open my $out, '>:raw', "$path.sealed" or die;
    print $out join("\015\012", $s->as_strings), "\015\012", $m;
}
"#;

/// A peer seals the corpus (i=1), we seal on top (i=2, cv=pass), and the chain validates
/// in both peers and ours.
async fn seal_on_top_of(interpreter: &str, script: &str, name: &str) {
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for (case, message) in corpus() {
        let path = dir.path().join(format!("{case}.eml"));
        std::fs::write(&path, delivered(message)).unwrap();
        inputs.push(path);
    }
    let mut args = vec![testdata("keys/rsa2048-pkcs1.pem").display().to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    run_script(interpreter, dir.path(), name, script, &args);
    let mut files = Vec::new();
    for input in &inputs {
        let theirs = std::fs::read(format!("{}.sealed", input.display())).unwrap();
        assert_eq!(
            our_arc(&env, &theirs).await,
            (AuthResult::Pass, 1),
            "their seal in ours: {}",
            input.display()
        );
        let (ours, sealed) = hop(&env, &s, &theirs).await;
        assert_eq!(sealed, Ok(Some(2)), "{}", input.display());
        assert!(
            String::from_utf8_lossy(&ours).starts_with("ARC-Seal: i=2; a=rsa-sha256; cv=pass;"),
            "{}",
            input.display()
        );
        assert_eq!(our_arc(&env, &ours).await, (AuthResult::Pass, 2));
        let path = PathBuf::from(format!("{}.ours", input.display()));
        std::fs::write(&path, ours).unwrap();
        files.push(path);
    }
    assert_all_pass(&peers_verdicts(dir.path(), &files));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_seal_on_top_of_dkimpy_seals() {
    if !have_dkimpy() || !have_mail_dkim() {
        return;
    }
    seal_on_top_of(PYTHON, DKIMPY_ARC_SIGN, "arcsign.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_seal_on_top_of_mail_dkim_seals() {
    if !have_dkimpy() || !have_mail_dkim() {
        return;
    }
    seal_on_top_of("perl", MAIL_DKIM_ARC_SIGN, "arcsign.pl").await;
}

// RFC 8617 §5.1 with DESIGN.md item 1: the AMS body hash of a body ending in whitespace-only
// lines is the relaxed one RFC 6376 §3.4.4 defines (mail-auth 0.13.3's ArcSealer keeps them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arc_seal_relaxed_trailing_blank_lines() {
    if !have_dkimpy() || !have_mail_dkim() {
        return;
    }
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    let dir = tempfile::tempdir().unwrap();
    let raw = message(
        "Alice <alice@example.com>",
        "blank",
        "Hello\r\n \r\n\t\r\n  \t \r\n",
    );
    let (sealed, _) = hop(&env, &s, &raw).await;
    let path = dir.path().join("trailing.eml");
    std::fs::write(&path, sealed).unwrap();
    assert_all_pass(&peers_verdicts(dir.path(), &[path]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arc_seal_command_output_validates_in_both_peers() {
    if !have_dkimpy() || !have_mail_dkim() {
        return;
    }
    let dns = crate::dns_server::DnsServer::start(
        crate::dns_zone::Zone::from_file(testdata("dns/main.zone")).unwrap(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("arc.pem");
    std::fs::copy(testdata("keys/rsa2048.pem"), &key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // As a user would write it: LF line ends.
    let input = dir.path().join("0.eml");
    std::fs::write(
        &input,
        "From: Alice <alice@example.com>\nTo: list@example.net\nSubject: trial\n\nHello\n\n",
    )
    .unwrap();
    let mut files = Vec::new();
    // Two hops through the binary: the second validates the first (cv=pass, i=2).
    for hop in 1..=2 {
        let from = dir.path().join(format!("{}.eml", hop - 1));
        let args = vec![
            "arc-seal".to_string(),
            "--nameserver".into(),
            dns.addr.to_string(),
            "--ip".into(),
            "192.0.2.10".into(),
            "--helo".into(),
            "mail.example.com".into(),
            "--mail-from".into(),
            "alice@example.com".into(),
            "--seal".into(),
            format!("lists.example.org:arc:{}", key.display()),
            from.display().to_string(),
        ];
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_authmilter"))
                .args(&args)
                .env("AUTHMILTER_LOG", "off")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stderr.trim(), format!("sealed: i={hop}"));
        let sealed = dir.path().join(format!("{hop}.eml"));
        std::fs::write(&sealed, &out.stdout).unwrap();
        files.push(sealed);
    }
    let second = std::fs::read_to_string(&files[1]).unwrap();
    assert!(
        second.starts_with("ARC-Seal: i=2; a=rsa-sha256; cv=pass;"),
        "{second}"
    );
    assert_all_pass(&peers_verdicts(dir.path(), &files));
    // As a user runs them: dkimpy's `arcverify` program (message on stdin) and Mail::DKIM's
    // ARC verifier, both resolving the keys through real DNS queries to the loopback server.
    let port = dns.addr.port().to_string();
    for file in &files {
        let message = std::fs::read(file).unwrap();
        let out = run_with_stdin(PYTHON, &["-c", ARCVERIFY_OVER_DNS, &port], &message);
        assert!(out.contains("cv=b'pass' success"), "arcverify: {out}");
        let out = run_with_stdin("perl", &["-e", MAIL_DKIM_OVER_DNS, &port], &message);
        assert!(out.starts_with("pass "), "Mail::DKIM: {out}");
    }
}

/// dkimpy's `arcverify` program, its resolver pointed at the loopback server (port: argv[1]).
const ARCVERIFY_OVER_DNS: &str = r#"
import sys, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[1])
dns.resolver.default_resolver = r
sys.argv = ["arcverify"]
from dkim.arcverify import main
main()
"#;

/// Mail::DKIM's ARC verifier with Net::DNS pointed at the loopback server (port: $ARGV[0]).
const MAIL_DKIM_OVER_DNS: &str = r#"
use Mail::DKIM::ARC::Verifier; use Net::DNS;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $ARGV[0]));
binmode STDIN; my $m = do { local $/; <STDIN> };
my $v = Mail::DKIM::ARC::Verifier->new; $v->PRINT($m); $v->CLOSE;
print $v->result, ' ', $v->result_detail, "
";
"#;

/// Runs a program with `input` on standard input; its standard output (and error, on failure).
fn run_with_stdin(program: &str, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    text
}

// RFC 6376 §3.4.2: relaxed header canonicalization folds only WSP (SP, HTAB); mail-auth
// 0.13.3 also treats form feed as white space. Our seal signs the RFC form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arc_seal_relaxed_header_form_feed() {
    if !have_dkimpy() || !have_mail_dkim() {
        return;
    }
    let env = Env::new().await;
    let s = sealer(SealMode::Verified);
    let dir = tempfile::tempdir().unwrap();
    let raw = message("Alice <alice@example.com>", "form\x0cfeed", "Hello\r\n");
    let (sealed, result) = hop(&env, &s, &raw).await;
    assert_eq!(result, Ok(Some(1)));
    let path = dir.path().join("ff.eml");
    std::fs::write(&path, &sealed).unwrap();
    assert_all_pass(&peers_verdicts(dir.path(), &[path]));
    assert_eq!(our_arc(&env, &sealed).await, (AuthResult::Pass, 1));
}
