//! Who a submission client is: credentials checked behind one trait ([`Credentials`]) with a
//! passwd-file and a Dovecot back end, the abuse limits on AUTH and sending ([`limits`]),
//! and who may send as whom ([`may_send_as`], like Postfix's `smtpd_sender_login_maps`).

pub mod dovecot;
pub mod limits;
pub mod passwd;

use crate::config::{AuthBackend, AuthConfig};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

/// The answer to a credentials check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Good: the user as the back end names it.
    Valid(String),
    /// Wrong user name or password (the two are never told apart).
    Invalid,
}

/// The back end could not answer (down, timed out, confused): a temporary failure (454).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(pub String);

/// Somewhere passwords are checked.
pub trait Credentials: Send + Sync {
    fn check(
        &self,
        user: &str,
        password: &[u8],
        client: IpAddr,
    ) -> impl Future<Output = Result<Checked, CheckError>> + Send;
}

/// Password hashes computed at once, over every session.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The configured back end, built with each snapshot (a reload re-reads the passwd file).
#[derive(Debug)]
pub enum Backend {
    Passwd(Arc<passwd::PasswdFile>),
    Dovecot(dovecot::DovecotAuth),
}

impl Backend {
    /// Loads what the configuration names; a broken passwd file refuses the start or reload.
    pub fn from_config(auth: &AuthConfig) -> Result<Option<Backend>, String> {
        Ok(match &auth.backend {
            None => None,
            Some(AuthBackend::PasswdFile(path)) => {
                let file = passwd::PasswdFile::load(path, auth.plaintext_schemes)?;
                tracing::info!(path = %path.display(), users = file.len(), "passwd file loaded");
                Some(Backend::Passwd(Arc::new(file)))
            }
            Some(AuthBackend::Dovecot(socket)) => {
                Some(Backend::Dovecot(dovecot::DovecotAuth::new(socket.clone())))
            }
        })
    }
}

impl Credentials for Backend {
    async fn check(
        &self,
        user: &str,
        password: &[u8],
        client: IpAddr,
    ) -> Result<Checked, CheckError> {
        match self {
            Backend::Passwd(file) => {
                // Each check costs a hash (Argon2: 19 MiB or more): a bounded number at once,
                // so a flood of AUTH attempts queues instead of taking every core and GiBs.
                let _permit = HASHING
                    .acquire()
                    .await
                    .map_err(|_| CheckError("password checks closed".into()))?;
                // Password hashing is deliberately slow: not on the async threads.
                let (file, user, password) =
                    (Arc::clone(file), user.to_string(), password.to_vec());
                tokio::task::spawn_blocking(move || match file.verify(&user, &password) {
                    true => Checked::Valid(user),
                    false => Checked::Invalid,
                })
                .await
                .map_err(|e| CheckError(format!("password check failed: {e}")))
            }
            Backend::Dovecot(dovecot) => dovecot.check(user, password, client).await,
        }
    }
}

/// Whether login `user` may use `address` (an envelope sender or a From address).
///
/// With a `[smtp.senders]` map: an entry for the user listing the address, `@its-domain` or
/// `*`; users missing from the map own nothing. Without a map, a user owns the address that
/// is its login name. Case is ignored throughout (local parts too: users do not expect
/// `Alice@` and `alice@` to differ).
pub fn may_send_as(
    senders: Option<&BTreeMap<String, Vec<String>>>,
    user: &str,
    address: &str,
) -> bool {
    let address = address.trim().trim_end_matches('.').to_ascii_lowercase();
    let Some(map) = senders else {
        return address == user.to_ascii_lowercase();
    };
    let Some(owned) = map.get(user) else {
        return false;
    };
    let domain = address.rsplit_once('@').map(|(_, d)| d);
    owned.iter().any(|entry| {
        entry == "*"
            || *entry == address
            || entry.strip_prefix('@').is_some_and(|d| Some(d) == domain)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_login_map_like_postfix() {
        let mut map = BTreeMap::new();
        map.insert("alice".to_string(), vec!["alice@example.com".to_string()]);
        map.insert("ops".to_string(), vec!["@example.org".to_string()]);
        map.insert("admin".to_string(), vec!["*".to_string()]);
        let m = Some(&map);
        assert!(may_send_as(m, "alice", "Alice@Example.com"));
        assert!(!may_send_as(m, "alice", "bob@example.com"));
        assert!(may_send_as(m, "ops", "anyone@example.org"));
        assert!(!may_send_as(m, "ops", "anyone@sub.example.org"));
        assert!(may_send_as(m, "admin", "x@y.example"));
        assert!(!may_send_as(m, "mallory", "mallory@example.com"));
        // No map: the login is the address.
        assert!(may_send_as(None, "carol@example.net", "carol@example.net"));
        assert!(!may_send_as(None, "carol@example.net", "dave@example.net"));
    }
}
