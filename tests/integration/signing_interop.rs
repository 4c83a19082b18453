//! DKIM interop with other implementations, over `signing::corpus()`: our RSA and Ed25519
//! signatures verify in dkimpy (Debian `python3-dkim`), our RSA ones in Mail::DKIM (Debian
//! `libmail-dkim-perl`, which lacks Ed25519), and their simple and relaxed signatures verify
//! in ours. Neither peer needs a DNS server: dkimpy takes a DNS function, and Mail::DKIM's
//! query function is replaced by one answering from the same records.
//!
//! The peers get each message as it is delivered (`signing::delivered`): a body without a
//! final CRLF cannot cross SMTP without gaining one. On the raw unterminated form the peers
//! part from RFC 6376 and each other: dkimpy's relaxed body keeps the white space ending an
//! unterminated last line (§3.4.4 removes it), and Mail::DKIM's simple body does not add the
//! CRLF §3.4.3 requires. Our signer follows the RFC there, which is also the delivered form;
//! `signing.rs` checks the raw form against our own verifier.
//!
//! Without a peer each test prints "skipped: ..." and passes, unless
//! `AUTHMILTER_REQUIRE_PEERS=1` (CI), where it fails.

use crate::common::*;
use crate::signing::{
    canon_name, corpus, delivered, dual_signer, our_results, signed, CANONICALIZATIONS,
};
use authmilter::sign::der::base64_encode;
use authmilter::sign::PrivateKey;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// Prints "skipped: {why}" and returns false; panics under `AUTHMILTER_REQUIRE_PEERS=1`.
pub(crate) fn skip(why: &str) -> bool {
    let required =
        std::env::var("AUTHMILTER_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{why}, and AUTHMILTER_REQUIRE_PEERS is set: install the Debian packages .ci/run installs"
    );
    println!("skipped: {why}");
    false
}

pub(crate) fn probe(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn have_dkimpy() -> bool {
    probe(PYTHON, &["-c", "import dkim, nacl"]) || skip("dkimpy (python3-dkim) not installed")
}

fn have_mail_dkim() -> bool {
    probe(
        "perl",
        &["-MMail::DKIM::Verifier", "-MMail::DKIM::Signer", "-e1"],
    ) || skip("Mail::DKIM (libmail-dkim-perl) not installed")
}

/// Runs a script (written to `dir`) and returns its standard output; panics on failure.
pub(crate) fn run_script(
    interpreter: &str,
    dir: &Path,
    name: &str,
    script: &str,
    args: &[String],
) -> String {
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    let out = Command::new(interpreter)
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `name<TAB>record` lines for the keys main.zone publishes.
pub(crate) fn records_file(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (file, selector) in [("rsa2048.pem", "rsa"), ("ed25519.pem", "ed")] {
        let key = PrivateKey::from_pem(&std::fs::read(testdata(&format!("keys/{file}"))).unwrap());
        text.push_str(&format!(
            "{selector}._domainkey.example.com\t{}\n",
            key.unwrap().dns_record()
        ));
    }
    let path = dir.join("records.tsv");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes our dual-signed corpus in every canonicalization; returns the paths.
fn our_signed_corpus(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for canon in CANONICALIZATIONS {
        let signer = dual_signer(canon);
        for (name, message) in corpus() {
            let path = dir.join(format!("{name}.{}.eml", canon_name(canon)));
            std::fs::write(&path, delivered(signed(&signer, &message))).unwrap();
            files.push(path);
        }
    }
    files
}

fn strings(paths: impl IntoIterator<Item = PathBuf>) -> Vec<String> {
    paths.into_iter().map(|p| p.display().to_string()).collect()
}

pub(crate) const DKIMPY_VERIFY: &str = r#"
import re, sys, dkim
records = {}
for line in open(sys.argv[1], "rb"):
    name, text = line.rstrip(b"\n").split(b"\t", 1)
    records[name.lower()] = text
def dnsfunc(name, timeout=5):
    return records.get(name.rstrip(b".").lower())
for path in sys.argv[2:]:
    msg = open(path, "rb").read()
    count = len(re.findall(rb"^DKIM-Signature:", msg, re.M | re.I))
    for i in range(count):
        try:
            ok = dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)
        except Exception as e:
            ok = "error: %s" % e
        print("%s\t%d\t%s" % (path, i, ok))
"#;

#[test]
fn our_rsa_and_ed25519_signatures_verify_in_dkimpy() {
    if !have_dkimpy() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut args = strings([records_file(dir.path())]);
    let files = strings(our_signed_corpus(dir.path()));
    args.extend(files.iter().cloned());
    let out = run_script(PYTHON, dir.path(), "verify.py", DKIMPY_VERIFY, &args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), files.len() * 2, "{out}");
    let failures: Vec<&&str> = lines.iter().filter(|l| !l.ends_with("\tTrue")).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

const MAIL_DKIM_VERIFY: &str = r#"
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS;
my ($records, @files) = @ARGV;
my %rec;
open my $r, '<', $records or die;
while (<$r>) { chomp; my ($n, $t) = split /\t/, $_, 2; $rec{lc $n} = $t; }
{
    no warnings 'redefine';
    # Answer key queries from the file instead of the network.
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
    my $v = Mail::DKIM::Verifier->new; $v->PRINT($m); $v->CLOSE;
    for my $s ($v->signatures) {
        printf "%s\t%s\t%s\t%s\n", $f, $s->selector, $s->result, $s->result_detail // '';
    }
}
"#;

#[test]
fn our_rsa_signatures_verify_in_mail_dkim() {
    if !have_mail_dkim() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut args = strings([records_file(dir.path())]);
    let files = strings(our_signed_corpus(dir.path()));
    args.extend(files.iter().cloned());
    let out = run_script("perl", dir.path(), "verify.pl", MAIL_DKIM_VERIFY, &args);
    // Mail::DKIM has no Ed25519: only the RSA signatures count.
    let rsa: Vec<&str> = out
        .lines()
        .filter(|l| l.split('\t').nth(1) == Some("rsa"))
        .collect();
    assert_eq!(rsa.len(), files.len(), "{out}");
    let failures: Vec<&&str> = rsa
        .iter()
        .filter(|l| l.split('\t').nth(2) != Some("pass"))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

const DKIMPY_SIGN: &str = r#"
import sys, dkim
rsa_key = open(sys.argv[1], "rb").read()
ed_seed = sys.argv[2].encode()
for job in sys.argv[3:]:
    path, canon = job.split("=", 1)
    h, b = canon.split("/")
    msg = open(path, "rb").read()
    sigs = b""
    for sel, key, alg in ((b"rsa", rsa_key, b"rsa-sha256"), (b"ed", ed_seed, b"ed25519-sha256")):
        sigs += dkim.sign(msg, sel, b"example.com", key, canonicalize=(h.encode(), b.encode()),
                          signature_algorithm=alg)
    open(path + ".signed", "wb").write(sigs + msg)
"#;

const MAIL_DKIM_SIGN: &str = r#"
use strict; use warnings;
use Mail::DKIM::Signer;
my ($key, @jobs) = @ARGV;
for my $job (@jobs) {
    my ($path, $canon) = split /=/, $job, 2;
    # Slurp in a block: Mail::DKIM reads the key file by lines with the global $/.
    open my $fh, '<:raw', $path or die; my $m = do { local $/; <$fh> }; close $fh;
    my $s = Mail::DKIM::Signer->new(Algorithm => 'rsa-sha256', Method => $canon,
        Domain => 'example.com', Selector => 'rsa', KeyFile => $key);
    $s->PRINT($m); $s->CLOSE;
    open my $out, '>:raw', "$path.signed" or die;
    print $out $s->signature->as_string, "\015\012", $m;
}
"#;

/// Writes the corpus, has a peer sign each message in simple and relaxed, and checks every
/// signature passes in our verifier. `expected` lists the selectors each message carries.
async fn their_signatures_verify_in_ours(
    interpreter: &str,
    script: &str,
    name: &str,
    key_args: Vec<String>,
    expected: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for canon in ["simple/simple", "relaxed/relaxed"] {
        for (name, message) in corpus() {
            let path = dir
                .path()
                .join(format!("{name}.{}.eml", canon.replace('/', "-")));
            std::fs::write(&path, delivered(message.clone())).unwrap();
            jobs.push((path, canon));
        }
    }
    let mut args = key_args;
    args.extend(jobs.iter().map(|(p, c)| format!("{}={c}", p.display())));
    run_script(interpreter, dir.path(), name, script, &args);
    let env = Env::new().await;
    let mut failures = Vec::new();
    for (path, _) in &jobs {
        let signed = std::fs::read(format!("{}.signed", path.display())).unwrap();
        let results = our_results(&env, &signed).await;
        let want: Vec<String> = expected.iter().map(|s| format!("{s}=pass")).collect();
        if results != want {
            failures.push(format!(
                "{}: {results:?}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkimpy_signatures_verify_in_ours() {
    if !have_dkimpy() {
        return;
    }
    // dkimpy takes an Ed25519 key as the base64 32-byte seed: the end of the PKCS#8 file.
    let der = std::fs::read(testdata("keys/ed25519.der")).unwrap();
    let seed = base64_encode(&der[der.len() - 32..]);
    let rsa = testdata("keys/rsa2048-pkcs1.pem").display().to_string();
    their_signatures_verify_in_ours(
        PYTHON,
        DKIMPY_SIGN,
        "sign.py",
        vec![rsa, seed],
        &["rsa", "ed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_dkim_signatures_verify_in_ours() {
    if !have_mail_dkim() {
        return;
    }
    let rsa = testdata("keys/rsa2048-pkcs1.pem").display().to_string();
    their_signatures_verify_in_ours("perl", MAIL_DKIM_SIGN, "sign.pl", vec![rsa], &["rsa"]).await;
}
