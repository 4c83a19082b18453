//! SASL PLAIN (RFC 4616) and LOGIN on the SMTP session (RFC 4954): the exchange of
//! challenges and base64 responses, as a small state machine without I/O. What the client
//! gets for each outcome is decided here too, so every path has its RFC 4954 reply.

use crate::smtp::SmtpReply;
use base64ct::{Base64, Encoding};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

/// The mechanisms offered, for the EHLO line.
pub const MECHANISMS: &str = "AUTH PLAIN LOGIN";

/// Longest decoded user name or password we look at (a longer one is simply wrong).
const MAX_FIELD: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// From `smtp-proto`'s mechanism bit; `None`: not offered (504).
    pub fn from_bits(bits: u64) -> Option<Mechanism> {
        match bits {
            AUTH_PLAIN => Some(Mechanism::Plain),
            AUTH_LOGIN => Some(Mechanism::Login),
            _ => None,
        }
    }
}

/// What the client claims, once the exchange is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub user: String,
    pub password: Vec<u8>,
}

/// An exchange waiting for the client's next response line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// PLAIN without an initial response: the empty challenge was sent.
    Plain,
    /// LOGIN: "Username:" was sent.
    LoginUser,
    /// LOGIN: "Password:" was sent.
    LoginPassword(String),
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this 334 challenge and wait for `Exchange`.
    Challenge(Exchange, SmtpReply),
    /// Check these credentials.
    Done(Claim),
    /// The exchange ended without credentials: this reply (a client error).
    Failed(Failure),
}

/// How an exchange can end without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `*` (RFC 4954 §4: 501).
    Cancelled,
    /// Not base64 (RFC 4954 §4: 501 5.5.2).
    Malformed,
    /// The response does not have the mechanism's form (RFC 4616 §2), or names another
    /// authorization identity than the login (proxy authorization is not offered).
    BadForm,
}

impl Failure {
    pub fn reply(self) -> SmtpReply {
        match self {
            Failure::Cancelled => SmtpReply::new(501, "5.0.0", "Authentication cancelled"),
            Failure::Malformed => SmtpReply::new(501, "5.5.2", "Cannot decode response"),
            // RFC 4954 §6: 535 for anything about the credentials themselves.
            Failure::BadForm => bad_credentials(),
        }
    }
}

/// RFC 4954 §6: the same for a wrong password and an unknown user (no enumeration).
pub fn bad_credentials() -> SmtpReply {
    SmtpReply::new(535, "5.7.8", "Authentication credentials invalid")
}

/// RFC 4954 §6: over-long exchange line.
pub fn line_too_long() -> SmtpReply {
    SmtpReply::new(500, "5.5.6", "Authentication Exchange line is too long")
}

/// Starts `mechanism` with the initial response, if the client sent one (`=`: empty).
pub fn start(mechanism: Mechanism, initial: &str) -> Step {
    let initial = initial.trim();
    match (mechanism, initial.is_empty()) {
        (Mechanism::Plain, true) => Step::Challenge(Exchange::Plain, challenge("")),
        (Mechanism::Plain, false) => plain(initial),
        (Mechanism::Login, true) => Step::Challenge(Exchange::LoginUser, challenge("Username:")),
        // RFC 4954 allows an initial response with LOGIN: it is the user name.
        (Mechanism::Login, false) => match decode(initial) {
            Ok(user) => login_user(user),
            Err(f) => Step::Failed(f),
        },
    }
}

/// The client's response to a challenge.
pub fn respond(exchange: Exchange, line: &str) -> Step {
    let line = line.trim_end_matches(['\r', '\n']).trim();
    if line == "*" {
        return Step::Failed(Failure::Cancelled);
    }
    match exchange {
        Exchange::Plain => plain(line),
        Exchange::LoginUser => match decode(line) {
            Ok(user) => login_user(user),
            Err(f) => Step::Failed(f),
        },
        Exchange::LoginPassword(user) => match decode(line) {
            Ok(password) => Step::Done(Claim { user, password }),
            Err(f) => Step::Failed(f),
        },
    }
}

fn login_user(user: Vec<u8>) -> Step {
    match String::from_utf8(user) {
        Ok(user) if !user.is_empty() && user.len() <= MAX_FIELD => {
            Step::Challenge(Exchange::LoginPassword(user), challenge("Password:"))
        }
        _ => Step::Failed(Failure::BadForm),
    }
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`.
fn plain(text: &str) -> Step {
    let bytes = match decode(text) {
        Ok(b) => b,
        Err(f) => return Step::Failed(f),
    };
    let mut parts = bytes.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Failed(Failure::BadForm);
    };
    let Ok(user) = String::from_utf8(authcid.to_vec()) else {
        return Step::Failed(Failure::BadForm);
    };
    if user.is_empty() || user.len() > MAX_FIELD || (!authzid.is_empty() && authzid != authcid) {
        return Step::Failed(Failure::BadForm);
    }
    Step::Done(Claim {
        user,
        password: password.to_vec(),
    })
}

/// RFC 4954 §4: `=` is an empty response.
fn decode(text: &str) -> Result<Vec<u8>, Failure> {
    if text == "=" {
        return Ok(Vec::new());
    }
    Base64::decode_vec(text).map_err(|_| Failure::Malformed)
}

fn challenge(text: &str) -> SmtpReply {
    SmtpReply::new(334, "", Base64::encode_string(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        Base64::encode_string(s)
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let claim = Claim {
            user: "alice".into(),
            password: b"pw".to_vec(),
        };
        assert_eq!(
            start(Mechanism::Plain, &b64(b"\0alice\0pw")),
            Step::Done(claim.clone())
        );
        assert_eq!(
            start(Mechanism::Plain, &b64(b"alice\0alice\0pw")),
            Step::Done(claim.clone())
        );
        let Step::Challenge(ex, reply) = start(Mechanism::Plain, "") else {
            panic!()
        };
        assert_eq!((reply.code, reply.lines[0].as_str()), (334, ""));
        assert_eq!(
            respond(ex, &format!("{}\r\n", b64(b"\0alice\0pw"))),
            Step::Done(claim)
        );
    }

    #[test]
    fn login_asks_user_then_password() {
        let Step::Challenge(ex, reply) = start(Mechanism::Login, "") else {
            panic!()
        };
        assert_eq!(reply.lines[0], "VXNlcm5hbWU6");
        let Step::Challenge(ex, reply) = respond(ex, &b64(b"bob")) else {
            panic!()
        };
        assert_eq!(reply.lines[0], "UGFzc3dvcmQ6");
        let done = respond(ex, &b64(b"secret"));
        assert_eq!(
            done,
            Step::Done(Claim {
                user: "bob".into(),
                password: b"secret".to_vec()
            })
        );
    }

    #[test]
    fn cancel_malformed_and_bad_forms_get_their_replies() {
        assert_eq!(
            respond(Exchange::Plain, "*\r\n"),
            Step::Failed(Failure::Cancelled)
        );
        assert_eq!(Failure::Cancelled.reply().code, 501);
        assert_eq!(
            respond(Exchange::LoginUser, "!!not base64"),
            Step::Failed(Failure::Malformed)
        );
        assert_eq!(
            start(Mechanism::Plain, "%%%"),
            Step::Failed(Failure::Malformed)
        );
        // No second NUL; a foreign authzid; an empty user.
        assert_eq!(
            start(Mechanism::Plain, &b64(b"alice")),
            Step::Failed(Failure::BadForm)
        );
        assert_eq!(
            start(Mechanism::Plain, &b64(b"root\0alice\0pw")),
            Step::Failed(Failure::BadForm)
        );
        assert_eq!(
            start(Mechanism::Plain, &b64(b"\0\0pw")),
            Step::Failed(Failure::BadForm)
        );
        assert_eq!(Failure::BadForm.reply().code, 535);
        assert_eq!(start(Mechanism::Plain, "="), Step::Failed(Failure::BadForm));
    }
}
