//! Submission (RFC 6409) on the session: the AUTH verb and its exchange (RFC 4954), who may
//! submit on a listener, and the checks on an authenticated user's mail (sender login map,
//! hourly limits), with the abuse limits that hold across connections.

use super::machine::{Next, Session, State};
use crate::check::metrics::{AuthBlockScope, SmtpAuthResult, SubmissionRefusal};
use crate::config::Role;
use crate::identity::limits::Blocked;
use crate::identity::{may_send_as, Checked, Credentials};
use crate::smtp::auth::{self as sasl, Failure, Mechanism, Step};
use crate::smtp::{NextHop, SmtpReply};

/// RFC 4954 §6 / RFC 5321 §3.8: the session ends; the client may come back later.
fn blocked_reply() -> SmtpReply {
    SmtpReply::new(
        421,
        "4.7.0",
        "Too many failed authentication attempts, try again later",
    )
}

impl<H: NextHop> Session<H> {
    /// AUTH exists on this listener: a submission one with a credentials back end.
    pub(super) fn offers_auth_here(&self) -> bool {
        self.settings.listener.role == Role::Submission && self.settings.credentials.is_some()
    }

    /// Whether MAIL is allowed now: always on an mx listener; on a submission listener once
    /// authenticated, or from a trusted network if the listener lets those in without AUTH.
    pub(super) fn may_submit(&self) -> bool {
        let listener = &self.settings.listener;
        listener.role == Role::Mx
            || self.conn.authenticated.is_some()
            || (listener.trusted_without_auth && self.snapshot.config.is_trusted(self.conn.ip))
    }

    /// MAIL from an authenticated user: the sender must be theirs (553 5.7.1, like Postfix's
    /// reject_sender_login_mismatch; the null sender is allowed, for notifications), and the
    /// hourly message allowance not spent (451 4.7.1).
    pub(super) fn submission_mail(&self, from: &str) -> Option<SmtpReply> {
        let user = self.conn.authenticated.as_deref()?;
        let smtp = &self.snapshot.config.smtp;
        let metrics = self.snapshot.journal.metrics();
        if !from.is_empty() && !may_send_as(smtp.senders.as_ref(), user, from) {
            tracing::info!(client = %self.conn.ip, %user, sender = %from, "smtp: sender not owned by user");
            metrics.smtp_submission_refused(SubmissionRefusal::Sender);
            return Some(SmtpReply::new(
                553,
                "5.7.1",
                format!("Sender address <{from}> not owned by user {user}"),
            ));
        }
        if !self.guard.take_message(&smtp.auth, user) {
            tracing::info!(client = %self.conn.ip, %user, "smtp: hourly message limit reached");
            metrics.smtp_submission_refused(SubmissionRefusal::Messages);
            return Some(SmtpReply::new(
                451,
                "4.7.1",
                "Too many messages this hour, try again later",
            ));
        }
        None
    }

    /// End of DATA from an authenticated user: the From field must hold exactly one address,
    /// and it must be theirs (550 5.7.1).
    pub(super) fn check_from(&self, message: &[u8]) -> Option<SmtpReply> {
        let user = self.conn.authenticated.as_deref()?;
        let senders = self.snapshot.config.smtp.senders.as_ref();
        let from = crate::sign::from_address(message);
        if from
            .as_deref()
            .is_some_and(|from| may_send_as(senders, user, from))
        {
            return None;
        }
        tracing::info!(client = %self.conn.ip, %user, from = ?from, "smtp: From not owned by user");
        self.snapshot
            .journal
            .metrics()
            .smtp_submission_refused(SubmissionRefusal::From);
        Some(SmtpReply::new(
            550,
            "5.7.1",
            match from {
                Some(from) => format!("From address <{from}> not owned by user {user}"),
                None => "Message needs exactly one From address".to_string(),
            },
        ))
    }

    /// The AUTH command (legal here: `accepts` checked the state, the listener and TLS).
    pub(super) async fn auth(
        &mut self,
        mechanism: u64,
        initial: &str,
        out: &mut Vec<SmtpReply>,
    ) -> Next {
        let limits = &self.snapshot.config.smtp.auth;
        if self.guard.blocked(limits, self.conn.ip, None).is_some() {
            return self.refuse_blocked(out);
        }
        let Some(mechanism) = Mechanism::from_bits(mechanism) else {
            // RFC 4954 §6.
            let reply = SmtpReply::new(504, "5.5.4", "Unrecognized authentication type");
            return self.error(reply, out);
        };
        let step = sasl::start(mechanism, initial);
        self.auth_step(step, out).await
    }

    /// One step of the exchange: a challenge, a failure, or credentials to check.
    pub(super) async fn auth_step(&mut self, step: Step, out: &mut Vec<SmtpReply>) -> Next {
        let metrics = std::sync::Arc::clone(self.snapshot.journal.metrics());
        self.state = State::Ready;
        let claim = match step {
            Step::Challenge(exchange, reply) => {
                self.state = State::Auth(exchange);
                out.push(reply);
                return Next::Continue;
            }
            Step::Failed(Failure::BadForm) => None,
            Step::Failed(failure) => {
                metrics.smtp_auth(match failure {
                    Failure::Cancelled => SmtpAuthResult::Cancelled,
                    _ => SmtpAuthResult::Malformed,
                });
                return self.error(failure.reply(), out);
            }
            Step::Done(claim) => Some(claim),
        };
        let user = claim.as_ref().map(|c| c.user.clone());
        let limits = &self.snapshot.config.smtp.auth;
        if self
            .guard
            .blocked(limits, self.conn.ip, user.as_deref())
            .is_some()
        {
            return self.refuse_blocked(out);
        }
        let checked = match (&claim, &self.settings.credentials) {
            (Some(claim), Some(backend)) => {
                backend
                    .check(&claim.user, &claim.password, self.conn.ip)
                    .await
            }
            _ => Ok(Checked::Invalid),
        };
        match checked {
            Ok(Checked::Valid(name)) => {
                tracing::info!(client = %self.conn.ip, user = %name, "smtp: authenticated");
                metrics.smtp_auth(SmtpAuthResult::Success);
                // The network is now one of the user's, under the name the limits count
                // (the one the client gave; see `identity::limits`).
                let login = user.as_deref().unwrap_or(&name);
                self.guard.succeeded(limits, self.conn.ip, login);
                self.conn.authenticated = Some(name);
                // Our own user: not held to the stress limits.
                self.exempt = true;
                out.push(SmtpReply::new(235, "2.7.0", "Authentication successful"));
                Next::Continue
            }
            Ok(Checked::Invalid) => {
                tracing::info!(client = %self.conn.ip, user = ?user, "smtp: authentication failed");
                metrics.smtp_auth(SmtpAuthResult::Failure);
                let limits = &self.snapshot.config.smtp.auth;
                let started = self.guard.failed(limits, self.conn.ip, user.as_deref());
                // Slows guessing down; the same delay whether or not the user exists.
                tokio::time::sleep(limits.failure_delay).await;
                if let Some(scope) = started {
                    tracing::warn!(client = %self.conn.ip, user = ?user, scope = ?scope,
                        "smtp: too many failed authentications, blocked for a while");
                    metrics.smtp_auth_block(match scope {
                        Blocked::Address => AuthBlockScope::Address,
                        Blocked::User => AuthBlockScope::User,
                    });
                    out.push(blocked_reply());
                    return Next::Close;
                }
                self.error(sasl::bad_credentials(), out)
            }
            Err(e) => {
                tracing::warn!(client = %self.conn.ip, error = %e, "smtp: credentials back end failed");
                metrics.smtp_auth(SmtpAuthResult::Tempfail);
                // RFC 4954 §6.
                out.push(SmtpReply::new(
                    454,
                    "4.7.0",
                    "Temporary authentication failure",
                ));
                Next::Continue
            }
        }
    }

    fn refuse_blocked(&mut self, out: &mut Vec<SmtpReply>) -> Next {
        tracing::info!(client = %self.conn.ip, "smtp: AUTH refused, blocked after failures");
        self.snapshot.journal.metrics().smtp_auth_blocked();
        self.state = State::Ready;
        out.push(blocked_reply());
        Next::Close
    }
}
