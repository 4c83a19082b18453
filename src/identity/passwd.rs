//! A Dovecot-compatible passwd-file: `user:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]`,
//! `#` comments and blank lines ignored. Read whole when a snapshot is built (start, SIGHUP),
//! so a changed file takes effect on reload.
//!
//! Schemes: `{ARGON2ID}`/`{ARGON2I}` (PHC strings, RustCrypto `argon2`), `{BLF-CRYPT}`
//! (`$2y$`, `bcrypt`), `{SHA512-CRYPT}`/`{SHA256-CRYPT}` (`$6$`/`$5$`, RustCrypto
//! `sha-crypt`), and a `{CRYPT}` or bare hash recognised by its `$id$`. Every comparison is
//! constant time (through `subtle`, ours for plain values as the crates' for hashes).
//! `{PLAIN}`/`{CLEARTEXT}` only when the configuration says so.

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use std::collections::HashMap;
use std::path::Path;
use subtle::ConstantTimeEq;

/// One stored password.
#[derive(Clone)]
enum Stored {
    Argon2(String),
    Bcrypt(String),
    ShaCrypt(String),
    Plain(Vec<u8>),
}

/// The users of one passwd file.
pub struct PasswdFile {
    users: HashMap<String, Stored>,
    /// Checked for a user who is not in the file, so that an unknown name costs what a wrong
    /// password costs: a stored hash of the file's most common scheme and parameters (the
    /// answer is thrown away). An empty file uses [`DUMMY_ARGON2`].
    #[cfg_attr(fuzzing, allow(dead_code))]
    dummy: Stored,
}

impl std::fmt::Debug for PasswdFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswdFile({} users)", self.users.len())
    }
}

/// Checked for unknown users when the file has no user at all (`authmilter passwd`'s own
/// parameters). The hash of a random, discarded password.
const DUMMY_ARGON2: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$W3qHOKnTHc9u3ckoM2qvS3Wen4tbmpkzwtUgqnVWrhc";

impl PasswdFile {
    /// Reads and parses `path`; an error names the file and line.
    pub fn load(path: &Path, plaintext: bool) -> Result<PasswdFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("passwd file {}: {e}", path.display()))?;
        PasswdFile::parse(&text, plaintext).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses passwd-file text; errors are `line: what`.
    pub fn parse(text: &str, plaintext: bool) -> Result<PasswdFile, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(3, ':');
            let user = fields.next().unwrap_or_default();
            let password = fields.next().unwrap_or_default();
            if user.is_empty() {
                return Err(format!("{}: no user name", n + 1));
            }
            let stored = parse_password(password, plaintext)
                .map_err(|e| format!("{}: user {user}: {e}", n + 1))?;
            users.insert(user.to_string(), stored);
        }
        let dummy = most_common(&users).unwrap_or_else(|| Stored::Argon2(DUMMY_ARGON2.into()));
        Ok(PasswdFile { users, dummy })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. CPU-heavy by design: call off the async threads.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(stored) => verify(stored, password),
            None => {
                // Not in fuzz builds: the dummy hash only evens out the timing, and at tens of
                // milliseconds an input it would be most of the SMTP session target's time.
                #[cfg(not(fuzzing))]
                let _ = verify(&self.dummy, password);
                false
            }
        }
    }
}

/// What makes two stored passwords cost the same to check: the scheme and its parameters
/// (Argon2's variant, version, m, t, p; bcrypt's cost; SHA-crypt's variant and rounds), i.e.
/// the hash up to its salt.
fn cost_class(stored: &Stored) -> String {
    match stored {
        Stored::Argon2(h) => h.rsplitn(3, '$').nth(2).unwrap_or(h).to_string(),
        Stored::Bcrypt(h) => h.get(..6).unwrap_or(h).to_string(),
        Stored::ShaCrypt(h) => match h.get(3..).and_then(|r| r.strip_prefix("rounds=")) {
            Some(r) => format!("{}rounds={}", &h[..3], r.split('$').next().unwrap_or("")),
            None => h[..3].to_string(),
        },
        Stored::Plain(_) => "plain".into(),
    }
}

/// A stored password of the most common cost class (ties: the smallest class name, so the
/// choice does not depend on hash order).
fn most_common(users: &HashMap<String, Stored>) -> Option<Stored> {
    let mut classes: HashMap<String, (usize, &Stored)> = HashMap::new();
    for stored in users.values() {
        classes.entry(cost_class(stored)).or_insert((0, stored)).0 += 1;
    }
    classes
        .into_iter()
        .max_by(|(a, (n, _)), (b, (m, _))| n.cmp(m).then_with(|| b.cmp(a)))
        .map(|(_, (_, stored))| stored.clone())
}

fn parse_password(field: &str, plaintext: bool) -> Result<Stored, String> {
    let (scheme, hash) = match field.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((scheme, hash)) => (scheme.to_ascii_uppercase(), hash),
        None => ("CRYPT".to_string(), field),
    };
    let by_prefix = |hash: &str| -> Result<Stored, String> {
        if hash.starts_with("$argon2") {
            PasswordHash::new(hash).map_err(|e| format!("bad Argon2 hash: {e}"))?;
            Ok(Stored::Argon2(hash.to_string()))
        } else if hash.starts_with("$2") {
            Ok(Stored::Bcrypt(hash.to_string()))
        } else if hash.starts_with("$6$") || hash.starts_with("$5$") {
            Ok(Stored::ShaCrypt(hash.to_string()))
        } else {
            Err("unsupported crypt hash (use ARGON2ID, BLF-CRYPT or SHA512-CRYPT)".into())
        }
    };
    match scheme.as_str() {
        "ARGON2ID" | "ARGON2I" if hash.starts_with("$argon2") => by_prefix(hash),
        "BLF-CRYPT" if hash.starts_with("$2") => by_prefix(hash),
        "SHA512-CRYPT" if hash.starts_with("$6$") => by_prefix(hash),
        "SHA256-CRYPT" if hash.starts_with("$5$") => by_prefix(hash),
        "CRYPT" => by_prefix(hash),
        "PLAIN" | "CLEARTEXT" if plaintext => Ok(Stored::Plain(hash.as_bytes().to_vec())),
        "PLAIN" | "CLEARTEXT" => {
            Err("plain-text password refused (set smtp.auth.plaintext_schemes = true)".into())
        }
        other => Err(format!("unsupported or malformed {{{other}}} password")),
    }
}

fn verify(stored: &Stored, password: &[u8]) -> bool {
    match stored {
        Stored::Argon2(hash) => PasswordHash::new(hash)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password, &h)
                    .is_ok()
            })
            .unwrap_or(false),
        Stored::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        Stored::ShaCrypt(hash) => {
            use sha_crypt::PasswordVerifier as _;
            let algorithm = match hash.starts_with("$5$") {
                true => sha_crypt::Algorithm::Sha256Crypt,
                false => sha_crypt::Algorithm::Sha512Crypt,
            };
            sha_crypt::ShaCrypt::from(algorithm)
                .verify_password(password, hash.as_str())
                .is_ok()
        }
        // In a time that depends on the lengths only.
        Stored::Plain(expected) => bool::from(expected.as_slice().ct_eq(password)),
    }
}

/// A `{ARGON2ID}` passwd-file value for `password` (`authmilter passwd`), with Argon2's
/// default parameters (RFC 9106 second recommendation: m=19 MiB, t=2, p=1) and a random salt.
pub fn hash_argon2id(password: &[u8]) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use ring::rand::{SecureRandom, SystemRandom};
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "no system randomness".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hash = argon2::Argon2::default()
        .hash_password(password, &salt)
        .map_err(|e| e.to_string())?;
    Ok(format!("{{ARGON2ID}}{hash}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_argon2id_hashes_verify_and_wrong_passwords_do_not() {
        let line = hash_argon2id(b"s3cret").unwrap();
        assert!(line.starts_with("{ARGON2ID}$argon2id$v=19$"), "{line}");
        let file = PasswdFile::parse(&format!("alice:{line}\n"), false).unwrap();
        assert!(file.verify("alice", b"s3cret"));
        assert!(!file.verify("alice", b"s3cre"));
        assert!(!file.verify("bob", b"s3cret"));
    }

    /// Made by Dovecot 2.3's `doveadm pw -s SCHEME -p 'correct horse'`.
    const DOVEADM: &str = "\
a2:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$u+Ob3etKfM1K2+c6aBtGCw$JGRIFR8xrlw7TQYueqM52UKkaO7Aub55tMtAY0Gy+n8
bf:{BLF-CRYPT}$2y$05$IGX/NyDjRXlQoxxA0zQLW.ttAqqeM1b7Mr92hDH4AeWCpLuunFmmO
s5:{SHA512-CRYPT}$6$3xblJbzCTsPkaftQ$RNbYki0blExH/2t54ISCROBmWhwYkhXUuw3LFH2lGEW1E0cEfcJNBTGP9k8A/ljJlTI2zYiCz0n/hWTK7B0Dm1
s2:{SHA256-CRYPT}$5$GZAWXa9s5rUrSQT.$CAFYgiFHoiPY8w9HrhlIFKkFWW69vPec7Zg9fuz9ctA::::::
bare:$6$3xblJbzCTsPkaftQ$RNbYki0blExH/2t54ISCROBmWhwYkhXUuw3LFH2lGEW1E0cEfcJNBTGP9k8A/ljJlTI2zYiCz0n/hWTK7B0Dm1
";

    #[test]
    fn dovecot_made_hashes_verify_in_every_scheme() {
        let file = PasswdFile::parse(DOVEADM, false).unwrap();
        assert_eq!(file.len(), 5);
        for user in ["a2", "bf", "s5", "s2", "bare"] {
            assert!(file.verify(user, b"correct horse"), "{user}");
            assert!(!file.verify(user, b"correct horse "), "{user}");
            assert!(!file.verify(user, b""), "{user}");
        }
    }

    // Issue 22: an unknown user is checked against the file's most common scheme and
    // parameters, so that it costs what a wrong password for a known user costs.
    #[test]
    fn unknown_users_cost_the_files_most_common_scheme() {
        let file = PasswdFile::parse(DOVEADM, false).unwrap();
        // Two SHA512-CRYPT (default rounds) against one of each other class.
        assert!(matches!(&file.dummy, Stored::ShaCrypt(h) if h.starts_with("$6$3xbl")));
        let argon = "x1:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$u+Ob3etKfM1K2+c6aBtGCw$JGRIFR8xrlw7TQYueqM52UKkaO7Aub55tMtAY0Gy+n8\n";
        let file = PasswdFile::parse(
            &format!("{DOVEADM}{argon}{}", argon.replace("x1", "x2")),
            false,
        )
        .unwrap();
        assert!(matches!(&file.dummy, Stored::Argon2(h) if h.contains("m=65536,t=3,p=1")));
        assert_eq!(
            cost_class(&Stored::ShaCrypt("$6$rounds=9000$salt$hash".into())),
            "$6$rounds=9000"
        );
        assert_eq!(cost_class(&Stored::Bcrypt("$2y$05$abc".into())), "$2y$05");
        assert!(!file.verify("x3", b"correct horse"));
    }

    #[test]
    fn the_unknown_user_hash_is_a_real_one() {
        // Otherwise an unknown user would be answered faster than a known one.
        assert!(PasswordHash::new(DUMMY_ARGON2).is_ok());
        let t = std::time::Instant::now();
        let file = PasswdFile::parse("", false).unwrap();
        assert!(!file.verify("nobody", b"x"));
        assert!(
            t.elapsed() > std::time::Duration::from_millis(1),
            "no hash was computed"
        );
    }

    #[test]
    fn plain_scheme_needs_to_be_enabled() {
        let text = "# users\n\ncarol:{PLAIN}pw:::\n";
        assert!(PasswdFile::parse(text, false)
            .unwrap_err()
            .contains("plain-text"));
        let file = PasswdFile::parse(text, true).unwrap();
        assert!(file.verify("carol", b"pw"));
        assert!(!file.verify("carol", b"pW"));
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let err = PasswdFile::parse("a:{ARGON2ID}$argon2id$x\n", false).unwrap_err();
        assert!(err.starts_with("1: user a:"), "{err}");
        let err = PasswdFile::parse("ok:{PLAIN}x\n:{MD5}y\n", true).unwrap_err();
        assert!(err.starts_with("2:"), "{err}");
        let err = PasswdFile::parse("u:{MD5-CRYPT}$1$abc$def\n", false).unwrap_err();
        assert!(err.contains("MD5-CRYPT"), "{err}");
    }
}
