//! `authmilter keygen`: a new key pair, the private half written with mode 0600 and the public
//! half as the zone-file line to publish.
//!
//! Ed25519 keys come from ring. ring cannot generate RSA keys, so RSA generation alone uses
//! mail-auth's `generate` feature (the `rsa` crate): key generation runs once, offline, where
//! the timing side channel of RUSTSEC-2023-0071 does not apply; signing stays with ring.

use super::der;
use super::key::{KeyAlgorithm, KeyError, PrivateKey, RSA_MAX_BITS, RSA_RING_MIN_BITS};
use super::record;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// RSA size `keygen` uses unless told otherwise (RFC 8301 §3.2 recommends at least 2048).
pub const DEFAULT_RSA_BITS: usize = 2048;

/// Why no key was written.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("RSA keys must have {RSA_RING_MIN_BITS} to {RSA_MAX_BITS} bits (asked for {0})")]
    Bits(usize),
    #[error("{0} already exists; keygen never overwrites a key (pick another selector)")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("the generated key does not load: {0}")]
    Load(#[from] KeyError),
}

/// A new private key: its PEM text (PKCS#8) and the loaded key.
pub fn generate(algorithm: KeyAlgorithm, bits: usize) -> Result<(String, PrivateKey), KeygenError> {
    let pkcs8 = match algorithm {
        KeyAlgorithm::Ed25519 => {
            // An Ed25519 private key is 32 random bytes (RFC 8032 §5.1.5).
            let mut seed = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
                .map_err(|e| KeygenError::Generate(e.to_string()))?;
            der::ed25519_pkcs8(&seed)
        }
        KeyAlgorithm::Rsa => {
            if !(RSA_RING_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(KeygenError::Bits(bits));
            }
            let pair = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(bits)
                .map_err(|e| KeygenError::Generate(e.to_string()))?;
            der::rsa_pkcs8(pair.private_key())
        }
    };
    // Loading it back proves ring will sign with it, and yields the public key.
    let key = PrivateKey::from_pkcs8_der(&pkcs8)?;
    Ok((der::pem_encode("PRIVATE KEY", &pkcs8), key))
}

/// What `keygen` wrote.
#[derive(Debug)]
pub struct KeyFiles {
    /// `DIR/DOMAIN.SELECTOR.pem`, mode 0600.
    pub key_file: PathBuf,
    /// `DIR/DOMAIN.SELECTOR.txt`: the zone-file line.
    pub record_file: PathBuf,
    pub zone_line: String,
}

/// Generates a key for `selector._domainkey.domain` and writes both files into `dir`
/// (created if missing). Existing files are never overwritten.
pub fn keygen(
    algorithm: KeyAlgorithm,
    bits: usize,
    domain: &str,
    selector: &str,
    dir: &Path,
) -> Result<KeyFiles, KeygenError> {
    let stem = format!("{}.{selector}", domain.trim_end_matches('.'));
    let key_file = dir.join(format!("{stem}.pem"));
    let record_file = dir.join(format!("{stem}.txt"));
    for path in [&key_file, &record_file] {
        if path.exists() {
            return Err(KeygenError::Exists(path.clone()));
        }
    }
    let (pem, key) = generate(algorithm, bits)?;
    let zone_line = record::key_zone_line(domain, selector, &key);
    std::fs::create_dir_all(dir).map_err(|source| KeygenError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_new(&key_file, pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&record_file, format!("{zone_line}\n").as_bytes(), 0o644) {
        // Leave nothing half-done behind: a key without its record is easy to lose track of.
        let _ = std::fs::remove_file(&key_file);
        return Err(e);
    }
    Ok(KeyFiles {
        key_file,
        record_file,
        zone_line,
    })
}

/// Creates `path` (failing if it exists) with exactly `mode`, whatever the umask.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), KeygenError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| KeygenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeygenError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ed25519_keygen_writes_0600_key_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys");
        let files = keygen(KeyAlgorithm::Ed25519, 0, "example.com", "ed1", &out).unwrap();
        assert_eq!(files.key_file, out.join("example.com.ed1.pem"));
        let mode = std::fs::metadata(&files.key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = PrivateKey::load(&files.key_file).unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::Ed25519);
        let txt = std::fs::read_to_string(&files.record_file).unwrap();
        assert_eq!(txt.trim_end(), files.zone_line);
        assert!(files
            .zone_line
            .starts_with("ed1._domainkey.example.com. IN TXT ( \"v=DKIM1; k=ed25519; p="));
        // Never overwrite.
        let again = keygen(KeyAlgorithm::Ed25519, 0, "example.com", "ed1", &out).unwrap_err();
        assert!(matches!(again, KeygenError::Exists(_)), "{again}");
    }

    #[test]
    fn rsa_sizes_outside_what_ring_signs_are_refused() {
        for bits in [1024, 2047, 8192] {
            assert!(matches!(
                generate(KeyAlgorithm::Rsa, bits),
                Err(KeygenError::Bits(_))
            ));
        }
    }
}
