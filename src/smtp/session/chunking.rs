//! BDAT (RFC 3030 CHUNKING): chunks gathered into the message, charged to the memory budget
//! as they arrive; a refused or oversized chunk is still read and thrown away, and the last
//! one ends the message like the final dot of DATA.

use super::machine::{Chunks, Session, State};
use super::replies::no_memory;
use crate::smtp::data::DataEnd;
use crate::smtp::{NextHop, SmtpReply};

impl<H: NextHop> Session<H> {
    /// Why a BDAT chunk arriving now is refused, if it is.
    pub(super) fn refuse_chunk(&self) -> Option<SmtpReply> {
        match &self.state {
            State::Mail(m) if m.rcpts.is_empty() => {
                Some(SmtpReply::new(554, "5.5.1", "No valid recipients"))
            }
            State::Mail(m) if m.chunks.is_none() && !self.snapshot.budget().has_room() => {
                self.snapshot.budget().refused();
                Some(no_memory())
            }
            State::Mail(_) => None,
            _ => Some(SmtpReply::new(503, "5.5.1", "Need MAIL first")),
        }
    }

    /// Whether the next `size` octets of chunk are kept (not refused, within the size limit).
    pub fn keeps_chunk(&self, size: usize) -> bool {
        match &self.state {
            State::Mail(m) if self.chunk_refusal.is_none() => {
                let so_far = m.chunks.as_ref().map_or(0, |c| c.data.len());
                so_far.saturating_add(size) <= self.settings.max_message_size
            }
            _ => false,
        }
    }

    /// A BDAT chunk was read (`None`: thrown away as it came). The reply to the chunk; after
    /// the last one, the message's end-of-data reply (RFC 3030 §2).
    pub async fn chunk(&mut self, data: Option<Vec<u8>>, size: usize, last: bool) -> SmtpReply {
        if let Some(refusal) = self.chunk_refusal.take() {
            return refusal;
        }
        let budget = std::sync::Arc::clone(self.snapshot.budget());
        let State::Mail(message) = &mut self.state else {
            return SmtpReply::new(503, "5.5.1", "Need MAIL first");
        };
        let chunks = message.chunks.get_or_insert_with(|| Chunks {
            data: Vec::new(),
            charge: budget.charge(),
            overflow: None,
        });
        match data {
            _ if chunks.overflow.is_some() => {}
            None => chunks.overflow = Some(DataEnd::TooLarge),
            Some(bytes) if !chunks.charge.grow(bytes.len()) => {
                chunks.overflow = Some(DataEnd::NoMemory);
                chunks.data = Vec::new();
                chunks.charge.release();
            }
            Some(bytes) => chunks.data.extend_from_slice(&bytes),
        }
        if !last {
            return SmtpReply::new(250, "2.0.0", format!("{size} octets received"));
        }
        let mut chunks = message.chunks.take().expect("set above");
        let end = match chunks.overflow.take() {
            Some(end) => end,
            None => DataEnd::Message(crlf_line_ends(std::mem::take(&mut chunks.data))),
        };
        // The message stays charged until its end-of-data work is done.
        let reply = self.end_of_data(end).await;
        drop(chunks);
        reply
    }
}

/// A bare LF taken as a line end and stored as CRLF, as the DATA reader does, so what goes on
/// to the next hop (with DATA) has no line a bare LF could make into an end marker there.
fn crlf_line_ends(message: Vec<u8>) -> Vec<u8> {
    let bare = message
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || message[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return message;
    }
    let mut out = Vec::with_capacity(message.len() + bare);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
