//! ESMTP extensions: what the EHLO reply offers, and the parameters of MAIL and RCPT, of
//! which what we offered (SIZE, 8BITMIME, SMTPUTF8, and DSN when the next hop offers it) is
//! taken and anything else refused with 555.

use super::machine::Session;
use super::replies::needs_smtputf8;
use crate::smtp::auth as sasl;
use crate::smtp::{MailParams, NextHop, RcptDsn, SmtpReply};
use smtp_proto::{MailFrom, RcptTo};
use smtp_proto::{MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8};
use smtp_proto::{RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS};

impl<H: NextHop> Session<H> {
    /// The EHLO reply's lines: our name, then the extensions offered on this connection now
    /// (STARTTLS before TLS, AUTH where allowed, DSN when EHLO found the next
    /// hop offering it).
    pub(super) fn extensions(&self, hostname: String) -> Vec<String> {
        let mut lines = vec![
            hostname,
            "PIPELINING".into(),
            // RFC 3030: we hold the whole message before it goes on, so chunks from the
            // client do not depend on the next hop.
            "CHUNKING".into(),
            format!("SIZE {}", self.settings.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.settings.tls.is_some() && !self.tls {
            lines.push("STARTTLS".into());
        }
        // Like Postfix's smtpd_tls_auth_only: no AUTH offered before TLS.
        if self.offers_auth_here() && (self.tls || self.settings.listener.plaintext_auth) {
            lines.push(sasl::MECHANISMS.into());
        }
        if self.dsn {
            lines.push("DSN".into());
        }
        lines
    }

    /// The parameters we offer (RFC 1870, 6152, 6531); anything else `smtp-proto` knows is
    /// an extension we did not advertise (RFC 5321 §4.1.1.11: 555).
    pub(super) fn mail_params(&self, from: &MailFrom<String>) -> Result<MailParams, SmtpReply> {
        let mut offered = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
        if self.dsn {
            offered |= MAIL_RET_FULL | MAIL_RET_HDRS;
        }
        let any = from.flags != 0 || from.size != 0 || from.env_id.is_some();
        let unoffered = from.flags & !offered != 0
            || from.trans_id.is_some()
            || from.by != 0
            || (from.env_id.is_some() && !self.dsn)
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.auth.is_some()
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0;
        // After HELO no extension was offered at all.
        if unoffered || (any && !self.esmtp) {
            return Err(SmtpReply::new(555, "5.5.4", "Unsupported MAIL parameter"));
        }
        let params = MailParams {
            size: (from.size != 0).then_some(from.size),
            eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
            smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
            dsn_ret: if from.flags & MAIL_RET_FULL != 0 {
                Some("FULL")
            } else if from.flags & MAIL_RET_HDRS != 0 {
                Some("HDRS")
            } else {
                None
            },
            dsn_envid: from.env_id.clone(),
        };
        if !params.smtputf8 && !from.address.is_ascii() {
            return Err(needs_smtputf8());
        }
        Ok(params)
    }

    /// RFC 3461 RCPT parameters: NOTIFY/ORCPT only when DSN was offered (`dsn`); RRVS and
    /// CONNEG never were (RFC 5321 §4.1.1.11: 555).
    pub(super) fn rcpt_params(to: &RcptTo<String>, dsn: bool) -> Result<RcptDsn, SmtpReply> {
        let notify_flags =
            RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER;
        let dsn_params = to.flags != 0 || to.orcpt.is_some();
        if to.flags & !notify_flags != 0 || to.rrvs != 0 || (dsn_params && !dsn) {
            return Err(SmtpReply::new(555, "5.5.4", "Unsupported RCPT parameter"));
        }
        Ok(RcptDsn {
            notify: notify_list(to.flags),
            orcpt: to.orcpt.clone(),
        })
    }
}

/// RFC 3461 §4.1: the NOTIFY list as the client gave it (NEVER alone, or the others).
fn notify_list(flags: u64) -> Option<String> {
    if flags & RCPT_NOTIFY_NEVER != 0 {
        return Some("NEVER".into());
    }
    let words: Vec<&str> = [
        (RCPT_NOTIFY_SUCCESS, "SUCCESS"),
        (RCPT_NOTIFY_FAILURE, "FAILURE"),
        (RCPT_NOTIFY_DELAY, "DELAY"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, word)| word)
    .collect();
    (!words.is_empty()).then(|| words.join(","))
}
