//! `bench-floor`: the CPU cost a verified message cannot go below on this machine, measured
//! so that a benchmark can print the filter's CPU per message next to it (bench/ab.sh).
//!
//! The floor is what verifying one RSA-2048 DKIM signature needs at the least: one
//! RSA-2048 PKCS#1 v1.5 verification with ring (the key parsed from its bytes each time, as
//! ring's API does for every verification) plus SHA-256 over the whole message (the body
//! hash and the header hash together read about the message once). The same definition as
//! the `floor` row of `cargo bench --bench pipeline`. Time is the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), so other tenants of a shared machine slow the wall clock,
//! not the figure.

use super::cli::BenchError;
use super::run::to_crlf;
use ring::signature::{self, KeyPair, RsaKeyPair};
use std::time::{Duration, Instant};

/// Bytes of the message the signature covers (a header hash input is about this long).
const SIGNED_PREFIX: usize = 200;

/// What one floor measurement found.
#[derive(Debug, serde::Serialize)]
pub struct FloorReport {
    pub operations: u64,
    pub cpu_us_per_op: f64,
    pub wall_us_per_op: f64,
    pub message_bytes: usize,
}

/// Verifies and hashes in a loop for about `duration` (wall clock) and reports the CPU time
/// per verification. `key_pem` is an RSA-2048 private key (PKCS#8 or PKCS#1 PEM); the
/// signature to verify is made with it once, before the clock starts.
pub fn measure(
    key_pem: &[u8],
    message: Vec<u8>,
    duration: Duration,
) -> Result<FloorReport, BenchError> {
    let der = crate::sign::der::pem_decode(key_pem)
        .map_err(|e| BenchError(format!("the key: {e:?}")))?
        .der;
    let pair = RsaKeyPair::from_pkcs8(&der)
        .or_else(|_| RsaKeyPair::from_der(&der))
        .map_err(|e| BenchError(format!("the key is not an RSA private key: {e}")))?;
    if pair.public().modulus_len() != 256 {
        return Err(BenchError("the key must be RSA-2048".into()));
    }
    let message = to_crlf(message);
    let signed = &message[..message.len().min(SIGNED_PREFIX)];
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed,
        &mut sig,
    )
    .map_err(|_| BenchError("signing failed".into()))?;
    let public_key = pair.public_key().as_ref().to_vec();
    let once = || {
        let digest = ring::digest::digest(&ring::digest::SHA256, &message);
        let key = signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            public_key.as_slice(),
        );
        key.verify(signed, &sig).is_ok() && !digest.as_ref().is_empty()
    };
    // Warm-up: code and data in cache, CPU out of its idle state.
    for _ in 0..50 {
        if !once() {
            return Err(BenchError("the signature does not verify".into()));
        }
    }
    let wall = Instant::now();
    let cpu = thread_cpu();
    let mut operations = 0u64;
    while wall.elapsed() < duration || operations == 0 {
        for _ in 0..32 {
            std::hint::black_box(once());
        }
        operations += 32;
    }
    let cpu = thread_cpu().saturating_sub(cpu);
    let wall = wall.elapsed();
    Ok(FloorReport {
        operations,
        cpu_us_per_op: cpu.as_secs_f64() * 1e6 / operations as f64,
        wall_us_per_op: wall.as_secs_f64() * 1e6 / operations as f64,
        message_bytes: message.len(),
    })
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl FloorReport {
    pub fn text(&self) -> String {
        format!(
            "floor (ring RSA-2048 verify + SHA-256 of {} bytes): {:.1} us CPU per verification \
             ({:.1} us wall, {} verifications)\n",
            self.message_bytes, self.cpu_us_per_op, self.wall_us_per_op, self.operations
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_verifies_a_real_signature() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/keys/rsa2048.pem"
        ))
        .unwrap();
        let report = measure(
            &pem,
            b"From: a@example.com\n\nbody\n".to_vec(),
            Duration::from_millis(20),
        )
        .unwrap();
        assert!(report.operations >= 32);
        assert!(report.cpu_us_per_op > 0.0);
        assert_eq!(report.message_bytes, 29);
    }

    #[test]
    fn floor_refuses_a_key_that_is_not_rsa_2048() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/keys/ed25519.pem"
        ))
        .unwrap();
        assert!(measure(&pem, b"x\r\n".to_vec(), Duration::ZERO).is_err());
    }
}
