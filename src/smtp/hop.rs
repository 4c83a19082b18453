//! The next hop of one SMTP session, whichever kind the configuration names.
//!
//! An enum rather than a trait object: [`NextHop`]'s methods return `impl Future`, which
//! cannot be called through `dyn`, and two variants do not need more.

use super::maildir::MaildirSession;
use super::{ClientInfo, MailParams, NextHop, RcptDsn, SmtpReply};
use crate::relay::RelaySession;
use crate::runtime::smtp_service::HopConfig;

/// Where one session's mail goes: a relay connection or a Maildir.
pub enum Hop {
    Relay(RelaySession),
    Maildir(MaildirSession),
}

impl Hop {
    /// A fresh hop for one session; nothing is opened until the first MAIL.
    pub fn new(config: &HopConfig) -> Hop {
        match config {
            HopConfig::Relay(relay) => Hop::Relay(RelaySession::new(relay.clone())),
            HopConfig::Maildir(dir) => Hop::Maildir(MaildirSession::new(dir.clone())),
        }
    }
}

impl NextHop for Hop {
    async fn mail(
        &mut self,
        client: &ClientInfo,
        from: &str,
        params: &MailParams,
    ) -> Result<(), SmtpReply> {
        match self {
            Hop::Relay(hop) => hop.mail(client, from, params).await,
            Hop::Maildir(hop) => hop.mail(client, from, params).await,
        }
    }

    async fn rcpt(&mut self, to: &str) -> Result<(), SmtpReply> {
        match self {
            Hop::Relay(hop) => hop.rcpt(to).await,
            Hop::Maildir(hop) => hop.rcpt(to).await,
        }
    }

    async fn rcpt_dsn(&mut self, to: &str, dsn: &RcptDsn) -> Result<(), SmtpReply> {
        match self {
            Hop::Relay(hop) => hop.rcpt_dsn(to, dsn).await,
            Hop::Maildir(hop) => hop.rcpt_dsn(to, dsn).await,
        }
    }

    fn offers_dsn(&self) -> bool {
        match self {
            Hop::Relay(hop) => hop.offers_dsn(),
            Hop::Maildir(hop) => hop.offers_dsn(),
        }
    }

    async fn data(&mut self, message: &[u8]) -> Result<SmtpReply, SmtpReply> {
        match self {
            Hop::Relay(hop) => hop.data(message).await,
            Hop::Maildir(hop) => hop.data(message).await,
        }
    }

    async fn reset(&mut self) {
        match self {
            Hop::Relay(hop) => hop.reset().await,
            Hop::Maildir(hop) => hop.reset().await,
        }
    }

    async fn quit(&mut self) {
        match self {
            Hop::Relay(hop) => hop.quit().await,
            Hop::Maildir(hop) => hop.quit().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::RelayConfig;
    use std::time::Duration;

    fn client() -> ClientInfo {
        ClientInfo {
            ip: "192.0.2.1".parse().unwrap(),
            helo: None,
            protocol: "SMTP".into(),
        }
    }

    /// The future of every call must be `Send` so sessions can run on the multi-threaded
    /// runtime; this fails to compile otherwise.
    #[allow(dead_code)]
    fn futures_are_send(hop: &mut Hop, client: &ClientInfo) {
        fn send<T: Send>(_: T) {}
        send(hop.mail(client, "", &MailParams::default()));
        send(hop.rcpt(""));
        send(hop.data(b""));
        send(hop.reset());
        send(hop.quit());
    }

    #[tokio::test]
    async fn maildir_hop_delivers() {
        let root = tempfile::tempdir().unwrap();
        let mut hop = Hop::new(&HopConfig::Maildir(root.path().to_path_buf()));
        hop.mail(&client(), "s@example.org", &MailParams::default())
            .await
            .unwrap();
        hop.rcpt("r@example.com").await.unwrap();
        let reply = hop.data(b"Subject: t\r\n\r\nx\r\n").await.unwrap();
        assert_eq!(reply.code, 250);
        hop.quit().await;
        assert_eq!(
            std::fs::read_dir(root.path().join("new")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn relay_hop_connects_lazily_and_fails_as_451() {
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = RelayConfig::new(format!("127.0.0.1:{port}"), "filter.example");
        config.connect_timeout = Duration::from_secs(2);
        let mut hop = Hop::new(&HopConfig::Relay(config));
        hop.reset().await;
        hop.quit().await;
        let reply = hop
            .mail(&client(), "s@example.org", &MailParams::default())
            .await
            .unwrap_err();
        assert_eq!((reply.code, reply.status.as_deref()), (451, Some("4.4.1")));
        // Never a 5xx for a recipient just because the connection is gone.
        assert_eq!(hop.rcpt("r@example.com").await.unwrap_err().code, 451);
        assert_eq!(hop.data(b"x\r\n").await.unwrap_err().code, 451);
    }
}
