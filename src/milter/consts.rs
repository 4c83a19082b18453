//! Numbers of the milter wire protocol (Sendmail 8.14 `mfdef.h`, protocol version 6).
//!
//! Names keep their C spelling so they can be grepped against libmilter's documentation and
//! Postfix's MILTER_README. Only the codec and the session should need these; everything else
//! talks in [`Command`](super::command::Command) and [`Reply`](super::reply::Reply).

/// Highest protocol version we speak; Postfix 2.6+ and Sendmail 8.14 offer 6.
pub const SMFI_PROT_VERSION: u32 = 6;
/// Lowest protocol version we accept; version 2 is what Sendmail 8.13 and Postfix 2.3 speak.
pub const SMFI_PROT_VERSION_MIN: u32 = 2;

// Commands, MTA -> milter. The code is the byte after the length.

/// Abort the current message; the connection stays open.
pub const SMFIC_ABORT: u8 = b'A';
/// A chunk of the message body.
pub const SMFIC_BODY: u8 = b'B';
/// New SMTP connection: hostname, family, port, address.
pub const SMFIC_CONNECT: u8 = b'C';
/// Macro definitions for the command named in the first data byte.
pub const SMFIC_MACRO: u8 = b'D';
/// End of message, possibly with a final body chunk.
pub const SMFIC_BODYEOB: u8 = b'E';
/// SMTP HELO/EHLO argument.
pub const SMFIC_HELO: u8 = b'H';
/// Quit this message but keep the socket for a new connection (protocol version 6).
pub const SMFIC_QUIT_NC: u8 = b'K';
/// One header field: name and value.
pub const SMFIC_HEADER: u8 = b'L';
/// SMTP MAIL FROM: sender and ESMTP parameters.
pub const SMFIC_MAIL: u8 = b'M';
/// End of the header.
pub const SMFIC_EOH: u8 = b'N';
/// Option negotiation: version, actions, protocol flags.
pub const SMFIC_OPTNEG: u8 = b'O';
/// Close the milter connection.
pub const SMFIC_QUIT: u8 = b'Q';
/// SMTP RCPT TO: recipient and ESMTP parameters.
pub const SMFIC_RCPT: u8 = b'R';
/// SMTP DATA was received.
pub const SMFIC_DATA: u8 = b'T';
/// An SMTP command the MTA did not recognise.
pub const SMFIC_UNKNOWN: u8 = b'U';

// Replies, milter -> MTA.

/// Add a recipient (needs `SMFIF_ADDRCPT`).
pub const SMFIR_ADDRCPT: u8 = b'+';
/// Remove a recipient (needs `SMFIF_DELRCPT`).
pub const SMFIR_DELRCPT: u8 = b'-';
/// Add a recipient with ESMTP parameters (needs `SMFIF_ADDRCPT_PAR`).
pub const SMFIR_ADDRCPT_PAR: u8 = b'2';
/// 421: shut the SMTP connection down.
pub const SMFIR_SHUTDOWN: u8 = b'4';
/// Accept the message or connection without further milter calls.
pub const SMFIR_ACCEPT: u8 = b'a';
/// Replace a chunk of the body (needs `SMFIF_CHGBODY`).
pub const SMFIR_REPLBODY: u8 = b'b';
/// Carry on to the next event.
pub const SMFIR_CONTINUE: u8 = b'c';
/// Accept and silently discard the message.
pub const SMFIR_DISCARD: u8 = b'd';
/// Change the envelope sender (needs `SMFIF_CHGFROM`).
pub const SMFIR_CHGFROM: u8 = b'e';
/// Make the connection fail.
pub const SMFIR_CONN_FAIL: u8 = b'f';
/// Append a header field (needs `SMFIF_ADDHDRS`).
pub const SMFIR_ADDHEADER: u8 = b'h';
/// Insert a header field at an index (needs `SMFIF_ADDHDRS`).
pub const SMFIR_INSHEADER: u8 = b'i';
/// Set the macros wanted per stage; sent inside the option-negotiation reply, not alone.
pub const SMFIR_SETSYMLIST: u8 = b'l';
/// Change or delete a header field (needs `SMFIF_CHGHDRS`).
pub const SMFIR_CHGHEADER: u8 = b'm';
/// Still working: resets the MTA's timeout.
pub const SMFIR_PROGRESS: u8 = b'p';
/// Put the message on hold (needs `SMFIF_QUARANTINE`).
pub const SMFIR_QUARANTINE: u8 = b'q';
/// Reject with the MTA's default 5xx.
pub const SMFIR_REJECT: u8 = b'r';
/// Skip the remaining body chunks (needs `SMFIP_SKIP`).
pub const SMFIR_SKIP: u8 = b's';
/// Temporary failure with the MTA's default 4xx.
pub const SMFIR_TEMPFAIL: u8 = b't';
/// Reject or tempfail with our own SMTP reply text.
pub const SMFIR_REPLYCODE: u8 = b'y';
/// Option-negotiation reply (same byte as the command).
pub const SMFIR_OPTNEG: u8 = b'O';

// Connection families in SMFIC_CONNECT.

/// Family unknown: no port or address follow.
pub const SMFIA_UNKNOWN: u8 = b'U';
/// Unix-domain socket: the address is a path.
pub const SMFIA_UNIX: u8 = b'L';
/// IPv4.
pub const SMFIA_INET: u8 = b'4';
/// IPv6.
pub const SMFIA_INET6: u8 = b'6';

// Actions (SMFIF_*): what the milter may do at end of message. Offered by the MTA in option
// negotiation; the milter answers with the subset it needs.

/// Add header fields.
pub const SMFIF_ADDHDRS: u32 = 0x0001;
/// Replace the body.
pub const SMFIF_CHGBODY: u32 = 0x0002;
/// Add recipients.
pub const SMFIF_ADDRCPT: u32 = 0x0004;
/// Remove recipients.
pub const SMFIF_DELRCPT: u32 = 0x0008;
/// Change or delete header fields.
pub const SMFIF_CHGHDRS: u32 = 0x0010;
/// Quarantine the message.
pub const SMFIF_QUARANTINE: u32 = 0x0020;
/// Change the envelope sender.
pub const SMFIF_CHGFROM: u32 = 0x0040;
/// Add recipients with ESMTP parameters.
pub const SMFIF_ADDRCPT_PAR: u32 = 0x0080;
/// Ask for a different macro list per stage.
pub const SMFIF_SETSYMLIST: u32 = 0x0100;

// Protocol flags (SMFIP_*). The NO* flags mean "don't send me this event"; the NR_* flags mean
// "I won't reply to this event"; the MTA offers the set it supports and the milter picks.

/// Don't send SMFIC_CONNECT.
pub const SMFIP_NOCONNECT: u32 = 0x0000_0001;
/// Don't send SMFIC_HELO.
pub const SMFIP_NOHELO: u32 = 0x0000_0002;
/// Don't send SMFIC_MAIL.
pub const SMFIP_NOMAIL: u32 = 0x0000_0004;
/// Don't send SMFIC_RCPT.
pub const SMFIP_NORCPT: u32 = 0x0000_0008;
/// Don't send SMFIC_BODY.
pub const SMFIP_NOBODY: u32 = 0x0000_0010;
/// Don't send SMFIC_HEADER.
pub const SMFIP_NOHDRS: u32 = 0x0000_0020;
/// Don't send SMFIC_EOH.
pub const SMFIP_NOEOH: u32 = 0x0000_0040;
/// No reply to SMFIC_HEADER (libmilter also calls it `SMFIP_NOHREPL`).
pub const SMFIP_NR_HDR: u32 = 0x0000_0080;
/// Don't send SMFIC_UNKNOWN.
pub const SMFIP_NOUNKNOWN: u32 = 0x0000_0100;
/// Don't send SMFIC_DATA.
pub const SMFIP_NODATA: u32 = 0x0000_0200;
/// The MTA understands SMFIR_SKIP.
pub const SMFIP_SKIP: u32 = 0x0000_0400;
/// Also send recipients the MTA itself rejected.
pub const SMFIP_RCPT_REJ: u32 = 0x0000_0800;
/// No reply to SMFIC_CONNECT.
pub const SMFIP_NR_CONN: u32 = 0x0000_1000;
/// No reply to SMFIC_HELO.
pub const SMFIP_NR_HELO: u32 = 0x0000_2000;
/// No reply to SMFIC_MAIL.
pub const SMFIP_NR_MAIL: u32 = 0x0000_4000;
/// No reply to SMFIC_RCPT.
pub const SMFIP_NR_RCPT: u32 = 0x0000_8000;
/// No reply to SMFIC_DATA.
pub const SMFIP_NR_DATA: u32 = 0x0001_0000;
/// No reply to SMFIC_UNKNOWN.
pub const SMFIP_NR_UNKN: u32 = 0x0002_0000;
/// No reply to SMFIC_EOH.
pub const SMFIP_NR_EOH: u32 = 0x0004_0000;
/// No reply to SMFIC_BODY.
pub const SMFIP_NR_BODY: u32 = 0x0008_0000;
/// Header values keep their leading space, and added values are sent verbatim. DKIM needs
/// this: without it Postfix drops the space after the colon and the relaxed/simple hashes differ.
pub const SMFIP_HDR_LEADSPC: u32 = 0x0010_0000;
/// Body chunks may be up to 256 KiB - 1 bytes instead of 64 KiB - 1.
pub const SMFIP_MDS_256K: u32 = 0x1000_0000;
/// Body chunks may be up to 1 MiB - 1 bytes.
pub const SMFIP_MDS_1M: u32 = 0x2000_0000;

/// Every "no reply" flag, for a milter that wants to answer only at end of message.
pub const SMFIP_NR_ALL: u32 = SMFIP_NR_HDR
    | SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY;

// Macro stages (SMFIM_*): the index used in the option-negotiation reply to say which macros
// the milter wants at which event. Note these are small integers, whereas SMFIC_MACRO names its
// stage with the command byte ('C', 'H', ...).

/// Macros sent with SMFIC_CONNECT.
pub const SMFIM_CONNECT: u32 = 0;
/// Macros sent with SMFIC_HELO.
pub const SMFIM_HELO: u32 = 1;
/// Macros sent with SMFIC_MAIL.
pub const SMFIM_ENVFROM: u32 = 2;
/// Macros sent with SMFIC_RCPT.
pub const SMFIM_ENVRCPT: u32 = 3;
/// Macros sent with SMFIC_DATA.
pub const SMFIM_DATA: u32 = 4;
/// Macros sent with SMFIC_BODYEOB.
pub const SMFIM_EOM: u32 = 5;
/// Macros sent with SMFIC_EOH.
pub const SMFIM_EOH: u32 = 6;

/// Largest body chunk without an MDS flag (libmilter's `MILTER_MDS_64K`).
pub const MILTER_MDS_64K: u32 = 64 * 1024 - 1;
/// Largest body chunk with `SMFIP_MDS_256K`.
pub const MILTER_MDS_256K: u32 = 256 * 1024 - 1;
/// Largest body chunk with `SMFIP_MDS_1M`.
pub const MILTER_MDS_1M: u32 = 1024 * 1024 - 1;

/// The command byte whose macros a `SMFIM_*` stage names, or `None` for an unknown stage.
pub fn command_for_stage(stage: u32) -> Option<u8> {
    Some(match stage {
        SMFIM_CONNECT => SMFIC_CONNECT,
        SMFIM_HELO => SMFIC_HELO,
        SMFIM_ENVFROM => SMFIC_MAIL,
        SMFIM_ENVRCPT => SMFIC_RCPT,
        SMFIM_DATA => SMFIC_DATA,
        SMFIM_EOM => SMFIC_BODYEOB,
        SMFIM_EOH => SMFIC_EOH,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nr_all_is_the_postfix_nr_range() {
        // Postfix offers 0x1fffff; all NR flags must lie inside it.
        assert_eq!(SMFIP_NR_ALL & !0x1f_ffff, 0);
        assert_eq!(SMFIP_NR_ALL.count_ones(), 9);
    }

    #[test]
    fn stages_map_to_commands() {
        assert_eq!(command_for_stage(SMFIM_EOH), Some(SMFIC_EOH));
        assert_eq!(command_for_stage(SMFIM_EOM), Some(SMFIC_BODYEOB));
        assert_eq!(command_for_stage(7), None);
    }
}
