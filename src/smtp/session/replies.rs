//! The session's fixed replies, and the one rule for passing the next hop's replies on.

use crate::smtp::SmtpReply;

/// A reply from the next hop as the client gets it: with an enhanced status code, as
/// ENHANCEDSTATUSCODES promises (RFC 2034 §4), and never positive for a refusal.
pub(super) fn relayed(mut reply: SmtpReply) -> SmtpReply {
    if reply.is_positive() {
        // A next hop that refuses with a 2xx is broken: the mail was not handed on.
        return SmtpReply::new(451, "4.3.0", "Next hop failed, try again later");
    }
    if reply.status.is_none() {
        reply.status = Some(format!("{}.0.0", reply.code / 100));
    }
    reply
}

/// What `smtp-proto` found wrong with a line (RFC 5321 §4.2.2: 500 for what is not a
/// command, 501 for bad arguments, 555 for parameters not offered, §4.1.1.11).
pub(super) fn parse_error(e: smtp_proto::Error) -> SmtpReply {
    use smtp_proto::Error;
    match e {
        Error::UnknownCommand => SmtpReply::new(500, "5.5.2", "Command unrecognized"),
        Error::InvalidSenderAddress => SmtpReply::new(501, "5.1.7", "Bad sender address syntax"),
        Error::InvalidRecipientAddress => {
            SmtpReply::new(501, "5.1.3", "Bad recipient address syntax")
        }
        Error::SyntaxError { syntax } => SmtpReply::new(501, "5.5.2", format!("Syntax: {syntax}")),
        Error::InvalidParameter { param } => {
            SmtpReply::new(501, "5.5.4", format!("Invalid {param} parameter"))
        }
        Error::UnsupportedParameter { param } => {
            let param: String = param.chars().take(32).collect();
            SmtpReply::new(555, "5.5.4", format!("Unsupported parameter {param}"))
        }
        _ => SmtpReply::new(500, "5.5.2", "Syntax error"),
    }
}

pub(super) fn ok(status: &str) -> SmtpReply {
    SmtpReply::new(250, status, "Ok")
}

pub(super) fn not_implemented() -> SmtpReply {
    SmtpReply::new(502, "5.5.1", "Command not implemented")
}

/// RFC 5321 §4.2.2 452: the memory budget for messages in flight is spent, try later.
pub(super) fn no_memory() -> SmtpReply {
    let (code, status, text) = crate::auth::ResourceLimit::Memory.reply();
    SmtpReply::new(code, status, text)
}

/// RFC 1870 §6.1 / §6.3.
pub(super) fn too_big() -> SmtpReply {
    SmtpReply::new(
        552,
        "5.3.4",
        "Message size exceeds fixed maximum message size",
    )
}

/// RFC 6531 §3.5: a UTF-8 address needs the SMTPUTF8 parameter.
pub(super) fn needs_smtputf8() -> SmtpReply {
    SmtpReply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
}

pub(super) fn help() -> SmtpReply {
    SmtpReply {
        code: 214,
        status: Some("2.0.0".into()),
        lines: vec![
            "authmilter: an authenticating SMTP proxy".into(),
            "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY STARTTLS".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hop_replies_get_a_status_and_are_never_positive() {
        let bare = SmtpReply {
            code: 450,
            status: None,
            lines: vec!["busy".into()],
        };
        assert_eq!(relayed(bare).status.as_deref(), Some("4.0.0"));
        let kept = SmtpReply::new(550, "5.1.1", "No such user");
        assert_eq!(relayed(kept.clone()), kept);
        assert_eq!(relayed(SmtpReply::new(250, "2.0.0", "Ok")).code, 451);
    }
}
