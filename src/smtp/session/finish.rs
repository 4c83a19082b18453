//! End of DATA: verify (inbound) or sign (outbound), then the one function that turns a
//! verdict into what the next hop and the client are told, [`Session::apply`].
//!
//! The client hears 250 only after the next hop (or the quarantine Maildir) took the message;
//! any other outcome is refused or deferred, so no mail is lost (RFC 5321 §6.1).

use super::compose::{field, prepend, received, remove_fields, Trace};
use super::machine::{Message, Session, State};
use super::replies::{no_memory, relayed, too_big};
use crate::check::{sign_and_seal, Outbound};
use crate::policy::{Action, Verdict};
use crate::smtp::data::DataEnd;
use crate::smtp::{NextHop, SmtpReply};
use crate::store::{Envelope, Transport};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

impl<H: NextHop> Session<H> {
    /// The reply to the final dot (or to the data that went over a limit).
    pub async fn end_of_data(&mut self, end: DataEnd) -> SmtpReply {
        let State::Mail(message) = std::mem::replace(&mut self.state, State::Ready) else {
            return SmtpReply::new(503, "5.5.1", "Need MAIL first");
        };
        let refused = match end {
            DataEnd::Message(raw) if message.tx.skipped().is_some() => {
                return self.outbound(*message, raw).await;
            }
            DataEnd::Message(raw) => return self.inbound(*message, raw).await,
            DataEnd::TooLarge => too_big(),
            // RFC 5321 §4.5.3.1.6 sets the limit; exceeding it is "exceeded storage
            // allocation" (§4.2.2, 552), like a message over SIZE.
            DataEnd::LineTooLong => SmtpReply::new(552, "5.3.4", "Message line too long"),
            DataEnd::NoMemory => no_memory(),
        };
        self.hop.reset().await;
        tracing::info!(queue_id = %message.id, client = %self.conn.ip, reply = refused.code,
            reason = refused.lines.join(" "), "smtp message refused");
        refused
    }

    /// From an untrusted client: DKIM, ARC, DMARC and policy, then our header fields.
    async fn inbound(&mut self, message: Message, mut raw: Vec<u8>) -> SmtpReply {
        let Message {
            id,
            from,
            params,
            rcpts,
            mut tx,
            ..
        } = message;
        tx.message(&raw);
        let report_rcpts = rcpts
            .iter()
            .filter(|r| self.snapshot.is_report_address(r))
            .count();
        // Report mail goes to the importer as it was received, before our fields.
        let report = (report_rcpts > 0).then(|| raw.clone());
        let envelope = Envelope {
            queue_id: Some(&id),
            mail_from: Some(&from),
            rcpts: &rcpts,
            more_rcpts: 0,
        };
        let snapshot = Arc::clone(&self.snapshot);
        let decision = snapshot
            .conclude_recorded(Transport::Smtp, &self.conn, envelope, tx)
            .await;
        // Forged fields go first: their indexes count the fields as the client sent them.
        remove_fields(&mut raw, &decision.edits.remove);
        let mut top = String::new();
        for (name, value) in &decision.edits.add {
            top.push_str(&field(name, value));
        }
        // RFC 7208 §9.1 / RFC 8601 §5: our fields go above our own Received.
        top.push_str(&self.received(&id, &rcpts, params.smtputf8));
        prepend(&mut raw, top.as_bytes());
        let imported_only = report.is_some_and(|report| {
            snapshot.hand_over_report(&report, report_rcpts, rcpts.len(), decision.verdict.action)
        });
        self.apply(&id, &decision.verdict, raw, imported_only).await
    }

    /// From a trusted or authenticated client: signed if there are keys for its From domain
    /// (and, for a user, `[signing.users]` lets them), not verified. A user's From must be
    /// theirs; the A-R records who they are (RFC 8601 §2.7.4 `auth`, `smtp.auth`).
    async fn outbound(&mut self, message: Message, mut raw: Vec<u8>) -> SmtpReply {
        if let Some(refused) = self.check_from(&raw) {
            self.hop.reset().await;
            tracing::info!(queue_id = %message.id, client = %self.conn.ip, reply = refused.code,
                "smtp message refused");
            return refused;
        }
        let mut trace = self.received(&message.id, &message.rcpts, message.params.smtputf8);
        let snapshot = Arc::clone(&self.snapshot);
        if let Some(user) = &self.conn.authenticated {
            // A user could write results in our name; only ours go on (RFC 8601 §5).
            let claimed = crate::auth::claimed_results(&raw, &snapshot.config.authserv_id);
            let removals: Vec<(String, usize)> = claimed
                .into_iter()
                .map(|i| ("Authentication-Results".to_string(), i))
                .collect();
            remove_fields(&mut raw, &removals);
            let ar = format!(
                "{};\r\n\tauth=pass smtp.auth={}",
                snapshot.config.authserv_id,
                ar_value(user)
            );
            trace = field("Authentication-Results", &ar) + &trace;
        }
        prepend(&mut raw, trace.as_bytes());
        let user = self.conn.authenticated.clone();
        let verdict = if raw.len() > snapshot.config.limits.max_message_size {
            // Same as the milter: too large to sign, passed on unsigned.
            passed("outbound, over limits.max_message_size: not signed".into())
        } else {
            let outbound = sign_and_seal(
                &snapshot.signer,
                snapshot.sealer.as_deref(),
                &snapshot.verifier,
                &self.conn,
                user.as_deref(),
                &raw,
            )
            .await;
            match outbound {
                Outbound::Signed(fields) => {
                    // What was signed is `DKIM-Signature: <value>`, one space after the colon.
                    let text: String = fields.iter().map(|(n, v)| field(n, v)).collect();
                    prepend(&mut raw, text.as_bytes());
                    let signatures = fields.iter().filter(|(n, _)| n == "DKIM-Signature");
                    let sealed = fields.iter().any(|(n, _)| n == "ARC-Seal");
                    passed(format!(
                        "outbound, signed ({} signatures){}",
                        signatures.count(),
                        if sealed { ", ARC-sealed" } else { "" }
                    ))
                }
                Outbound::Unsigned(why) => passed(format!("outbound, not signed: {why}")),
                Outbound::Refused(verdict) => verdict,
            }
        };
        self.apply(&message.id, &verdict, raw, false).await
    }

    /// The one place a [`Verdict`] becomes the next hop's instructions and the client's
    /// reply; also the one log line per message. `imported_only`: a DMARC report taken by the
    /// importer that is not to be delivered (`reports.deliver_imported = false`).
    async fn apply(
        &mut self,
        id: &str,
        verdict: &Verdict,
        mut message: Vec<u8>,
        imported_only: bool,
    ) -> SmtpReply {
        let reply = match verdict.action {
            Action::Accept | Action::Quarantine if imported_only => {
                self.hop.reset().await;
                tracing::info!(queue_id = id, "DMARC report mail queued for import; not delivered (reports.deliver_imported = false)");
                queued(id)
            }
            Action::Accept => self.hand_on(id, &message).await,
            Action::Quarantine => match self.settings.quarantine.clone() {
                Some(dir) => {
                    self.hop.reset().await;
                    quarantine(dir, message, id).await
                }
                None => {
                    let reasons = verdict.reasons.join("; ");
                    let reasons: String = reasons.chars().take(900).collect();
                    let mark = field("X-Authmilter-Quarantine", &one_line(&reasons));
                    prepend(&mut message, mark.as_bytes());
                    self.hand_on(id, &message).await
                }
            },
            Action::Reject | Action::Tempfail => {
                self.hop.reset().await;
                SmtpReply::new(verdict.code, &verdict.status, one_line(&verdict.text))
            }
        };
        tracing::info!(
            queue_id = id,
            client = %self.conn.ip,
            verdict = %verdict.action,
            reasons = ?verdict.reasons,
            reply = reply.code,
            "smtp message"
        );
        reply
    }

    /// Gives the message to the next hop; 250 only if it took it.
    async fn hand_on(&mut self, id: &str, message: &[u8]) -> SmtpReply {
        match self.hop.data(message).await {
            Ok(_) => queued(id),
            Err(refused) => relayed(refused),
        }
    }

    /// Our `Received:` field (RFC 5321 §4.4).
    fn received(&self, id: &str, rcpts: &[String], utf8: bool) -> String {
        let trace = Trace {
            helo: self.conn.helo.as_deref(),
            ip: self.conn.ip,
            hostname: &self.settings.hostname,
            protocol: self.protocol(utf8),
            id,
            rcpts,
        };
        received(&trace, SystemTime::now())
    }
}

/// Into the quarantine Maildir (file I/O, so off the async threads); a failure is temporary
/// for the client, never a 250.
async fn quarantine(dir: PathBuf, message: Vec<u8>, id: &str) -> SmtpReply {
    let written =
        tokio::task::spawn_blocking(move || crate::smtp::maildir::deliver(&dir, &message)).await;
    match written {
        Ok(Ok(path)) => {
            tracing::info!(queue_id = id, path = %path.display(), "smtp message quarantined");
            queued(id)
        }
        Ok(Err(e)) => {
            tracing::error!(queue_id = id, error = %e, "quarantine Maildir not writable");
            SmtpReply::new(451, "4.3.0", "Temporary local problem, try again later")
        }
        Err(e) => {
            tracing::error!(queue_id = id, error = %e, "quarantine delivery failed");
            SmtpReply::new(451, "4.3.0", "Temporary local problem, try again later")
        }
    }
}

fn queued(id: &str) -> SmtpReply {
    SmtpReply::new(250, "2.0.0", format!("Ok: queued as {id}"))
}

/// An outbound message that goes on, with why (for the log line).
fn passed(reason: String) -> Verdict {
    Verdict {
        action: Action::Accept,
        code: 250,
        status: "2.0.0".into(),
        text: "Ok".into(),
        reasons: vec![reason],
        dmarc_disposition: None,
        local_override: None,
    }
}

/// A user name as an RFC 8601 `pvalue`: as it is when it is a plain token or an address,
/// else a quoted-string (RFC 5322 §3.2.4) with `"` and `\` escaped and controls dropped.
fn ar_value(user: &str) -> String {
    let plain = !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.@".contains(&b));
    if plain {
        return user.to_string();
    }
    let mut out = String::from("\"");
    for c in user.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Text for one header or reply line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
