//! The next hop as a Maildir: accepted mail is written to a directory instead of relayed
//! (for a mailbox this host reads itself, or for testing).
//!
//! Delivery follows the Maildir protocol (<https://cr.yp.to/proto/maildir.html>): write to
//! `tmp/` under a name no other delivery can use, fsync, rename into `new/`, fsync `new/`,
//! so a message is either wholly in `new/` after we said 250, or the client was told 451
//! and still holds it. A failure after the rename may leave a copy that the client will
//! send again: a duplicate, never a loss.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ClientInfo, MailParams, NextHop, SmtpReply};

/// Writes `message` into the Maildir `dir` (creating `tmp/`, `new/`, `cur/` with mode 0700
/// if missing) and returns its path in `new/`.
pub fn deliver(dir: &Path, message: &[u8]) -> io::Result<PathBuf> {
    ensure_layout(dir)?;
    let name = unique_name();
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let result = write_synced(&tmp, message)
        .and_then(|()| fs::rename(&tmp, &new))
        // The rename is only durable once the directory holding the new entry is synced.
        .and_then(|()| File::open(dir.join("new"))?.sync_all());
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| new)
}

fn ensure_layout(dir: &Path) -> io::Result<()> {
    let subdirs = ["tmp", "new", "cur"].map(|s| dir.join(s));
    if subdirs.iter().all(|d| d.is_dir()) {
        return Ok(());
    }
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for subdir in &subdirs {
        builder.create(subdir)?;
    }
    // New directory entries, like new files, survive a crash only once their parent is synced.
    File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn write_synced(path: &Path, message: &[u8]) -> io::Result<()> {
    // create_new: never overwrite, even if the unique name somehow was not.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(message)?;
    file.sync_all()
}

/// `<secs>.M<micros>P<pid>Q<counter>.<host>`: unique across processes by the pid, within
/// this one by the counter, across hosts sharing the directory by the host name.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed) + 1,
        hostname()
    )
}

/// The host name with `/` and `:` escaped as the Maildir convention asks (`:` separates
/// the flags that readers append).
fn hostname() -> &'static str {
    static HOSTNAME: OnceLock<String> = OnceLock::new();
    HOSTNAME.get_or_init(|| {
        crate::config::machine_hostname()
            .chars()
            .filter(|c| !c.is_control() && !c.is_whitespace())
            .map(|c| match c {
                '/' => "\\057".to_string(),
                ':' => "\\072".to_string(),
                c => c.to_string(),
            })
            .collect()
    })
}

/// One SMTP session's deliveries into a Maildir.
pub struct MaildirSession {
    dir: PathBuf,
    sender: Option<String>,
    recipients: Vec<String>,
}

impl MaildirSession {
    /// Delivers into `dir`, created at the first delivery if missing.
    pub fn new(dir: PathBuf) -> MaildirSession {
        MaildirSession {
            dir,
            sender: None,
            recipients: Vec::new(),
        }
    }

    /// The trace fields of final delivery, then the message.
    ///
    /// `Return-Path:` per RFC 5321 §4.4. One `Delivered-To:` per recipient (RFC 9228): the
    /// single copy stands for all of them, and the envelope recipients are otherwise lost
    /// (Bcc). Values never carry CR or LF, so they cannot add fields of their own.
    fn with_trace_fields(&self, sender: &str, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + 256);
        out.extend_from_slice(format!("Return-Path: <{}>\r\n", clean(sender)).as_bytes());
        for rcpt in &self.recipients {
            out.extend_from_slice(format!("Delivered-To: {}\r\n", clean(rcpt)).as_bytes());
        }
        out.extend_from_slice(message);
        out
    }
}

fn clean(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

impl NextHop for MaildirSession {
    async fn mail(
        &mut self,
        _client: &ClientInfo,
        from: &str,
        _params: &MailParams,
    ) -> Result<(), SmtpReply> {
        self.sender = Some(from.to_string());
        self.recipients.clear();
        Ok(())
    }

    /// The session checked already that the domain is ours; the Maildir takes anyone's mail.
    async fn rcpt(&mut self, to: &str) -> Result<(), SmtpReply> {
        if self.sender.is_none() {
            return Err(SmtpReply::new(503, "5.5.1", "No transaction in progress"));
        }
        self.recipients.push(to.to_string());
        Ok(())
    }

    async fn data(&mut self, message: &[u8]) -> Result<SmtpReply, SmtpReply> {
        let Some(sender) = self.sender.take() else {
            return Err(SmtpReply::new(503, "5.5.1", "No transaction in progress"));
        };
        let content = self.with_trace_fields(&sender, message);
        self.recipients.clear();
        let dir = self.dir.clone();
        let delivered = tokio::task::spawn_blocking(move || deliver(&dir, &content)).await;
        match delivered {
            Ok(Ok(path)) => {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                tracing::debug!(path = %path.display(), "delivered to Maildir");
                Ok(SmtpReply::new(
                    250,
                    "2.0.0",
                    format!("Ok: delivered as {name}"),
                ))
            }
            Ok(Err(error)) => {
                tracing::error!(dir = %self.dir.display(), %error, "Maildir delivery failed");
                Err(SmtpReply::new(
                    451,
                    "4.3.0",
                    "Local delivery failed, try again later",
                ))
            }
            Err(error) => {
                tracing::error!(%error, "Maildir delivery task failed");
                Err(SmtpReply::new(
                    451,
                    "4.3.0",
                    "Local delivery failed, try again later",
                ))
            }
        }
    }

    async fn reset(&mut self) {
        self.sender = None;
        self.recipients.clear();
    }

    async fn quit(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn client() -> ClientInfo {
        ClientInfo {
            ip: "192.0.2.1".parse().unwrap(),
            helo: Some("client.example".into()),
            protocol: "ESMTP".into(),
        }
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn deliver_creates_the_layout_and_leaves_nothing_in_tmp() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("Maildir");
        let path = deliver(&dir, b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        assert_eq!(path.parent().unwrap(), dir.join("new"));
        assert_eq!(fs::read(&path).unwrap(), b"Subject: hi\r\n\r\nbody\r\n");
        assert!(files(&dir.join("tmp")).is_empty());
        assert!(files(&dir.join("cur")).is_empty());
        for sub in ["tmp", "new", "cur"] {
            let mode = fs::metadata(dir.join(sub)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{sub} is {mode:o}");
        }
    }

    #[test]
    fn names_are_unique_and_follow_the_convention() {
        let root = tempfile::tempdir().unwrap();
        let a = deliver(root.path(), b"a").unwrap();
        let b = deliver(root.path(), b"b").unwrap();
        assert_ne!(a, b);
        assert_eq!(files(&root.path().join("new")).len(), 2);
        let name = a.file_name().unwrap().to_str().unwrap();
        let (secs, rest) = name.split_once(".M").unwrap();
        assert!(secs.parse::<u64>().is_ok(), "{name}");
        assert!(
            rest.contains(&format!("P{}Q", std::process::id())),
            "{name}"
        );
        assert!(!name.contains('/') && !name.contains(':'), "{name}");
    }

    #[test]
    fn unwritable_maildir_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        assert!(deliver(&file, b"x").is_err());
    }

    #[tokio::test]
    async fn session_writes_trace_fields_and_exact_content() {
        let root = tempfile::tempdir().unwrap();
        let mut hop = MaildirSession::new(root.path().to_path_buf());
        hop.mail(&client(), "sender@example.org", &MailParams::default())
            .await
            .unwrap();
        hop.rcpt("a@example.com").await.unwrap();
        hop.rcpt("b@example.com").await.unwrap();
        let reply = hop.data(b"Subject: x\r\n\r\n.body\r\n").await.unwrap();
        assert_eq!((reply.code, reply.status.as_deref()), (250, Some("2.0.0")));
        let stored = files(&root.path().join("new"));
        assert_eq!(stored.len(), 1);
        let name = stored[0].file_name().unwrap().to_str().unwrap();
        assert_eq!(reply.lines, [format!("Ok: delivered as {name}")]);
        assert_eq!(
            fs::read(&stored[0]).unwrap(),
            b"Return-Path: <sender@example.org>\r\nDelivered-To: a@example.com\r\n\
              Delivered-To: b@example.com\r\nSubject: x\r\n\r\n.body\r\n"
        );
        assert!(files(&root.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn null_sender_and_header_injection() {
        let root = tempfile::tempdir().unwrap();
        let mut hop = MaildirSession::new(root.path().to_path_buf());
        hop.mail(&client(), "", &MailParams::default())
            .await
            .unwrap();
        hop.rcpt("a@example.com\r\nX-Evil: 1").await.unwrap();
        hop.data(b"\r\n").await.unwrap();
        let stored = files(&root.path().join("new"));
        let content = fs::read_to_string(&stored[0]).unwrap();
        assert_eq!(
            content,
            "Return-Path: <>\r\nDelivered-To: a@example.comX-Evil: 1\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn failed_delivery_is_451_never_ok() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        fs::write(&file, b"").unwrap();
        let mut hop = MaildirSession::new(file);
        hop.mail(&client(), "s@example.org", &MailParams::default())
            .await
            .unwrap();
        hop.rcpt("a@example.com").await.unwrap();
        let reply = hop.data(b"x\r\n").await.unwrap_err();
        assert_eq!((reply.code, reply.status.as_deref()), (451, Some("4.3.0")));
    }

    #[tokio::test]
    async fn data_without_mail_or_after_reset_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut hop = MaildirSession::new(root.path().to_path_buf());
        assert_eq!(hop.data(b"x").await.unwrap_err().code, 503);
        hop.mail(&client(), "s@example.org", &MailParams::default())
            .await
            .unwrap();
        hop.reset().await;
        assert_eq!(hop.rcpt("a@example.com").await.unwrap_err().code, 503);
        assert!(!root.path().join("new").exists());
    }
}
