//! AUTH timing parity: how long a wrong password for a known user and any password for an
//! unknown user take to be refused, through the credentials back end the SMTP door calls
//! (`identity::Backend::check`), as medians of many interleaved tries.
//!
//! Passwd-file back end: files of `doveadm pw` hashes in each scheme (ARGON2ID with
//! doveadm's defaults m=64 MiB t=3 p=1, SHA512-CRYPT, BLF-CRYPT). Dovecot back end: a private
//! Dovecot (as the submission tests start one) over the same Argon2 file, with
//! `auth_failure_delay = 0` (Dovecot's own work) and with its default (2 s).
//!
//! Needs `doveadm` and, for the Dovecot part, `dovecot` and root; what is missing is
//! skipped with a note. `cargo bench --bench auth_timing`.

use authmilter::identity::dovecot::DovecotAuth;
use authmilter::identity::passwd::PasswdFile;
use authmilter::identity::{Backend, Checked, Credentials};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse";

fn doveadm_hash(scheme: &str) -> Option<String> {
    let out = Command::new("doveadm")
        .args(["pw", "-s", scheme, "-p", PASSWORD])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Interleaved tries of both cases; prints and returns the two medians.
async fn measure(label: &str, backend: &Backend, tries: usize) {
    let client: IpAddr = "192.0.2.1".parse().unwrap();
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    // One untimed round first: caches, the first connection.
    let _ = backend.check("alice", b"wrong horse", client).await;
    for _ in 0..tries {
        for (user, times) in [("alice", &mut known), ("nobody", &mut unknown)] {
            let t = Instant::now();
            let answer = backend.check(user, b"wrong horse", client).await;
            times.push(t.elapsed());
            assert_eq!(answer.ok(), Some(Checked::Invalid), "{label}: {user}");
        }
    }
    let (k, u) = (median(known), median(unknown));
    let diff = (u.as_secs_f64() - k.as_secs_f64()) / k.as_secs_f64() * 100.0;
    println!(
        "{label:<44} tries {tries:>4}   known user, wrong password {:>10.3} ms   unknown user {:>10.3} ms   ({diff:+.1} %)",
        k.as_secs_f64() * 1e3,
        u.as_secs_f64() * 1e3
    );
}

fn passwd_of(hash: &str) -> String {
    ["alice", "bob", "carol"]
        .iter()
        .map(|u| format!("{u}:{hash}\n"))
        .collect()
}

/// A private Dovecot serving only authentication, as `tests/integration/submission` starts
/// one; killed when dropped.
struct Dovecot(std::process::Child);

impl Dovecot {
    fn start(
        dir: &Path,
        passwd: &str,
        failure_delay: Option<&str>,
    ) -> Option<(Dovecot, std::path::PathBuf)> {
        std::fs::write(dir.join("dovecot.passwd"), passwd).ok()?;
        let delay = failure_delay
            .map(|d| format!("auth_failure_delay = {d}\n"))
            .unwrap_or_default();
        let conf = format!(
            "protocols =\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
             ssl = no\nauth_mechanisms = plain login\n{delay}\
             default_internal_user = root\ndefault_login_user = root\n\
             default_internal_group = root\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/dovecot.passwd\n}}\n\
             service auth {{\n  unix_listener auth-client {{\n    mode = 0666\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("dovecot.conf"), conf).ok()?;
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(dir.join("dovecot.conf"))
            .stderr(std::fs::File::create(dir.join("dovecot.stderr")).ok()?)
            .spawn()
            .ok()?;
        let socket = dir.join("run/auth-client");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some((Dovecot(child), socket))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let schemes = [("ARGON2ID", 40), ("SHA512-CRYPT", 300), ("BLF-CRYPT", 300)];
        let mut argon2 = None;
        for (scheme, tries) in schemes {
            let Some(hash) = doveadm_hash(scheme) else {
                println!("doveadm not found: passwd-file part skipped");
                return;
            };
            if scheme == "ARGON2ID" {
                argon2 = Some(hash.clone());
            }
            let file = PasswdFile::parse(&passwd_of(&hash), false).unwrap();
            let backend = Backend::Passwd(Arc::new(file));
            measure(&format!("passwd-file {scheme}"), &backend, tries).await;
        }
        // Before issue 22 an unknown user was checked against one fixed Argon2 hash made with
        // `authmilter passwd`'s parameters (m=19 MiB, t=2): what such a hash costs.
        let ours = authmilter::identity::passwd::hash_argon2id(PASSWORD.as_bytes()).unwrap();
        let file = PasswdFile::parse(&passwd_of(&ours), false).unwrap();
        let backend = Backend::Passwd(Arc::new(file));
        measure(
            "passwd-file ARGON2ID m=19 MiB t=2 (authmilter)",
            &backend,
            40,
        )
        .await;
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if !root {
            println!("not root: the Dovecot part is skipped (it runs dovecot as root)");
            return;
        }
        let passwd = passwd_of(&argon2.unwrap());
        for (label, delay, tries) in [
            ("dovecot ARGON2ID, auth_failure_delay = 0", Some("0"), 40),
            ("dovecot ARGON2ID, auth_failure_delay default", None, 6),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let Some((_dovecot, socket)) = Dovecot::start(dir.path(), &passwd, delay) else {
                println!("dovecot did not start: Dovecot part skipped");
                return;
            };
            let backend = Backend::Dovecot(DovecotAuth::new(socket));
            measure(label, &backend, tries).await;
        }
    });
}
