//! Milter framing: bytes in, frames out, with a hard size cap and no I/O.
//!
//! Every packet, in both directions, is a 4-byte big-endian length, one command (or reply)
//! byte, and `length - 1` bytes of data. The length counts the code byte, so 0 is never valid.
//! The decoder looks only at the length and code; what the data means is for
//! [`command`](super::command) and [`reply`](super::reply), so session code never indexes raw
//! bytes. The cap is checked on the length prefix, before any data is buffered, so a peer
//! announcing 4 GiB costs us four bytes.
//!
//! This module also holds the small field reader and writers that the command and reply
//! parsers share, so that all byte indexing lives in one audited place.

/// Default cap on a frame's length (code byte plus data): 1 MiB + 64 KiB.
///
/// The largest legitimate frame is a body chunk after `SMFIP_MDS_1M` (1 MiB - 1 bytes of data
/// plus the code byte). Header frames are not chunked; Postfix's default `header_size_limit`
/// (100 KiB) fits easily. The 64 KiB slack covers MTAs that round chunk sizes up.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 1024 * 1024 + 64 * 1024;

/// Bytes in the length prefix.
const LEN_BYTES: usize = 4;

/// Frame data up to this size is copied out of the read buffer; longer data takes the buffer
/// (see [`Decoder::decode`]). The largest body chunk MTAs send by default (Postfix's and
/// Sendmail's `MILTER_CHUNK_SIZE`) is copied: the buffer usually holds the next chunks too.
const MAX_COPIED_DATA: usize = 65535;

/// One packet: its code byte and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Command (MTA -> milter) or reply (milter -> MTA) code, e.g. `b'O'`.
    pub code: u8,
    /// Everything after the code byte.
    pub data: Vec<u8>,
}

/// What [`Decoder::decode`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not a whole frame yet: read more and call again. Nothing was consumed.
    Incomplete,
    /// A whole frame, now removed from the buffer.
    Frame(Frame),
    /// The length prefix announces this many bytes, more than the cap. The stream cannot be
    /// resynchronised, so the connection should be closed.
    TooLarge(u32),
    /// The length prefix is zero, so there is not even a code byte. Also fatal.
    Invalid,
}

/// Why a decoder stopped; once set, it is returned for every later call.
#[derive(Debug, Clone, Copy)]
enum Fault {
    TooLarge(u32),
    Invalid,
}

/// Splits a byte stream into [`Frame`]s.
///
/// The caller owns the buffer: append what the socket gave, call [`decode`](Self::decode)
/// until it says [`Decoded::Incomplete`], repeat. After `TooLarge` or `Invalid` the decoder
/// keeps returning that fault, so a caller that ignores it cannot misread the rest of the
/// stream as frames.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_len: u32,
    fault: Option<Fault>,
    /// Bytes at the front of the caller's buffer already handed out as frames. Removing them
    /// frame by frame would move the rest of the buffer each time (quadratic when an MTA
    /// pipelines all the headers in one write); they are removed once, when the buffer runs
    /// out of whole frames.
    consumed: usize,
}

impl Decoder {
    /// A decoder that refuses frames whose length prefix exceeds `max_len`.
    pub fn new(max_len: u32) -> Self {
        Decoder {
            max_len,
            fault: None,
            consumed: 0,
        }
    }

    /// The cap this decoder enforces.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Takes one frame off the front of `buf`, if a whole one is there. Whenever it answers
    /// anything but a frame, `buf` holds exactly the bytes not yet decoded (append more and
    /// call again); between frames it may still hold the ones already handed out.
    ///
    /// A frame longer than a body chunk (only a long header field gets there) takes the
    /// allocation it was read into, and `buf` keeps only what follows it: copying it out would
    /// hold the field twice, and a field may be as large as the cap.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Decoded {
        match self.fault {
            Some(Fault::TooLarge(len)) => return Decoded::TooLarge(len),
            Some(Fault::Invalid) => return Decoded::Invalid,
            None => {}
        }
        let outcome = self.next_frame(buf);
        if !matches!(outcome, Decoded::Frame(_)) || self.consumed == buf.len() {
            buf.drain(..self.consumed.min(buf.len()));
            self.consumed = 0;
        }
        outcome
    }

    /// How many more bytes the frame at the front of `buf` needs to be whole: the rest of the
    /// length prefix while that is incomplete, 0 when there is nothing to wait for (a whole
    /// frame, or a fault). Lets the reader make room for a large frame once instead of
    /// growing its buffer (and copying it) step by step; never more than the cap.
    pub fn missing(&self, buf: &[u8]) -> usize {
        let rest = buf.get(self.consumed..).unwrap_or_default();
        let Some(prefix) = rest.first_chunk::<LEN_BYTES>() else {
            return LEN_BYTES - rest.len();
        };
        let len = u32::from_be_bytes(*prefix);
        if self.fault.is_some() || len > self.max_len {
            return 0;
        }
        (LEN_BYTES + len as usize).saturating_sub(rest.len())
    }

    fn next_frame(&mut self, buf: &mut Vec<u8>) -> Decoded {
        let start = self.consumed;
        let rest = buf.get(start..).unwrap_or_default();
        let Some(prefix) = rest.first_chunk::<LEN_BYTES>() else {
            return Decoded::Incomplete;
        };
        let len = u32::from_be_bytes(*prefix);
        if len == 0 {
            self.fault = Some(Fault::Invalid);
            return Decoded::Invalid;
        }
        if len > self.max_len {
            self.fault = Some(Fault::TooLarge(len));
            return Decoded::TooLarge(len);
        }
        // Saturating only matters on 16/32-bit targets with an absurd cap; the frame then
        // simply never completes.
        let end = LEN_BYTES.saturating_add(len as usize);
        let Some(packet) = rest.get(LEN_BYTES..end) else {
            return Decoded::Incomplete;
        };
        let Some((&code, data)) = packet.split_first() else {
            return Decoded::Invalid; // unreachable: len >= 1 was checked above
        };
        let data = if data.len() > MAX_COPIED_DATA {
            // The frame keeps the allocation; what follows it moves to a new one.
            let after = buf.split_off(start + end);
            let mut frame = std::mem::replace(buf, after);
            frame.drain(..start + LEN_BYTES + 1);
            self.consumed = 0;
            frame
        } else {
            let data = data.to_vec();
            self.consumed += end;
            data
        };
        Decoded::Frame(Frame { code, data })
    }
}

impl Default for Decoder {
    /// A decoder with [`DEFAULT_MAX_FRAME_LEN`].
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME_LEN)
    }
}

/// Appends one frame (length, `code`, `data`) to `out`.
///
/// # Panics
/// If `data` is 4 GiB or more, which the length prefix cannot express.
pub fn encode_frame(code: u8, data: &[u8], out: &mut Vec<u8>) {
    encode_frame_with(code, out, |out| out.extend_from_slice(data));
}

/// Appends one frame whose data `body` writes straight into `out`, then patches the length
/// in. Saves building the data in a separate buffer first.
///
/// # Panics
/// If `body` writes 4 GiB or more.
pub fn encode_frame_with(code: u8, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES]);
    out.push(code);
    body(out);
    let len = u32::try_from(out.len() - start - LEN_BYTES).expect("milter frame of 4 GiB or more");
    out[start..start + LEN_BYTES].copy_from_slice(&len.to_be_bytes());
}

/// Appends `s` and its terminating NUL. A NUL inside `s` would end the field early at the
/// peer; callers that accept outside strings check for that (see `Reply::validate`).
pub(crate) fn put_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Appends a big-endian u32.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A field that was missing or cut short. `what` names the command or reply, `problem` the
/// field; `CommandError` and `ReplyError` convert from it so parsers can use `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub(crate) what: &'static str,
    pub(crate) problem: &'static str,
}

/// A cursor over a frame's data. Every read is checked and fails with the caller's
/// description of the field instead of indexing past the end.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    /// Reads `data`, the payload of the command or reply called `what`.
    pub(crate) fn new(what: &'static str, data: &'a [u8]) -> Self {
        Fields { rest: data, what }
    }

    pub(crate) fn bad(&self, problem: &'static str) -> Malformed {
        Malformed {
            what: self.what,
            problem,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Strict end: anything left is an error.
    pub(crate) fn end(&self, problem: &'static str) -> Result<(), Malformed> {
        match self.rest.is_empty() {
            true => Ok(()),
            false => Err(self.bad(problem)),
        }
    }

    pub(crate) fn u8(&mut self, problem: &'static str) -> Result<u8, Malformed> {
        let (&b, rest) = self.rest.split_first().ok_or(self.bad(problem))?;
        self.rest = rest;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, problem: &'static str) -> Result<u16, Malformed> {
        let (bytes, rest) = self.rest.split_first_chunk().ok_or(self.bad(problem))?;
        self.rest = rest;
        Ok(u16::from_be_bytes(*bytes))
    }

    pub(crate) fn u32(&mut self, problem: &'static str) -> Result<u32, Malformed> {
        let (bytes, rest) = self.rest.split_first_chunk().ok_or(self.bad(problem))?;
        self.rest = rest;
        Ok(u32::from_be_bytes(*bytes))
    }

    /// The bytes up to the next NUL, consuming the NUL.
    pub(crate) fn cstr(&mut self, problem: &'static str) -> Result<&'a [u8], Malformed> {
        let nul = self.rest.iter().position(|&b| b == 0);
        let (s, rest) = self.rest.split_at(nul.ok_or(self.bad(problem))?);
        self.rest = rest.get(1..).unwrap_or_default();
        Ok(s)
    }
}

/// Bytes to text for names (hostnames, HELO, macros, addresses): invalid UTF-8 becomes
/// U+FFFD rather than failing the whole SMTP session over one bad byte.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tiny deterministic generator for the milter tests' no-panic loops, so the codec needs
/// no dev-dependency.
#[cfg(test)]
pub(crate) struct XorShift(u64);

#[cfg(test)]
impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        // xorshift64 (Marsaglia 2003).
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`; `n` must be non-zero.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Bytes drawn mostly from the ones parsers branch on (NUL, family letters, high bytes),
    /// so that random input gets past the first check more often.
    pub(crate) fn biased_bytes(&mut self, n: usize) -> Vec<u8> {
        const INTERESTING: &[u8] = b"\0\0\0U46La<>:% \n\r\xff";
        (0..n)
            .map(|_| match self.below(3) {
                0 => self.next() as u8,
                _ => INTERESTING[self.below(INTERESTING.len())],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: u8, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(code, data, &mut out);
        out
    }

    #[test]
    fn encodes_length_counting_the_code_byte() {
        assert_eq!(frame(b'c', b""), [0, 0, 0, 1, b'c']);
        assert_eq!(frame(b'H', b"a\0"), [0, 0, 0, 3, b'H', b'a', 0]);
    }

    #[test]
    fn zero_length_is_invalid_and_sticks() {
        let mut d = Decoder::default();
        let mut buf = vec![0, 0, 0, 0, b'c'];
        assert_eq!(d.decode(&mut buf), Decoded::Invalid);
        // Even a good frame afterwards is not read: the stream is out of step.
        buf = frame(b'c', b"");
        assert_eq!(d.decode(&mut buf), Decoded::Invalid);
    }

    #[test]
    fn over_the_cap_is_refused_from_the_prefix_alone() {
        let mut d = Decoder::new(16);
        let mut buf = 17u32.to_be_bytes().to_vec();
        assert_eq!(d.decode(&mut buf), Decoded::TooLarge(17));
        assert_eq!(d.decode(&mut buf), Decoded::TooLarge(17));

        let mut d = Decoder::default();
        let mut buf = u32::MAX.to_be_bytes().to_vec();
        assert_eq!(d.decode(&mut buf), Decoded::TooLarge(u32::MAX));
    }

    #[test]
    fn exactly_the_cap_is_accepted() {
        let mut d = Decoder::new(16);
        let mut buf = frame(b'B', &[7; 15]);
        assert_eq!(
            d.decode(&mut buf),
            Decoded::Frame(Frame {
                code: b'B',
                data: vec![7; 15]
            })
        );
    }

    #[test]
    fn truncated_frame_is_incomplete_until_whole() {
        let whole = frame(b'L', b"From\0 a@b\0");
        let mut d = Decoder::default();
        let mut buf = Vec::new();
        for (i, &b) in whole.iter().enumerate() {
            assert_eq!(d.decode(&mut buf), Decoded::Incomplete, "after {i} bytes");
            assert_eq!(buf.len(), i, "incomplete must not consume");
            buf.push(b);
        }
        assert_eq!(
            d.decode(&mut buf),
            Decoded::Frame(Frame {
                code: b'L',
                data: b"From\0 a@b\0".to_vec()
            })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut buf = frame(b'O', &[0; 12]);
        buf.extend(frame(b'D', b"Cj\0mx\0"));
        buf.extend(frame(b'Q', b""));
        buf.extend(&[0, 0, 0, 9, b'B']); // start of a fourth
        let mut d = Decoder::default();
        let codes: Vec<u8> = std::iter::from_fn(|| match d.decode(&mut buf) {
            Decoded::Frame(f) => Some(f.code),
            _ => None,
        })
        .collect();
        assert_eq!(codes, b"ODQ");
        assert_eq!(buf, [0, 0, 0, 9, b'B']);
    }

    #[test]
    fn a_frame_longer_than_a_body_chunk_takes_the_buffer() {
        let value = vec![b'v'; MAX_COPIED_DATA + 1];
        let mut buf = frame(b'L', &value);
        buf.extend(frame(b'E', b""));
        buf.extend(&[0, 0, 0, 9, b'B']); // start of a third
        let read_into = buf.as_ptr();
        let mut d = Decoder::default();
        let Decoded::Frame(long) = d.decode(&mut buf) else {
            panic!("expected a frame");
        };
        assert_eq!((long.code, &long.data), (b'L', &value));
        assert_eq!(long.data.as_ptr(), read_into, "the data was copied");
        assert_eq!(
            d.decode(&mut buf),
            Decoded::Frame(Frame {
                code: b'E',
                data: vec![]
            })
        );
        assert_eq!(d.decode(&mut buf), Decoded::Incomplete);
        assert_eq!(buf, [0, 0, 0, 9, b'B']);

        // Behind a short frame already handed out, too.
        let mut buf = frame(b'E', b"");
        buf.extend(frame(b'L', &value));
        let mut d = Decoder::default();
        assert!(matches!(d.decode(&mut buf), Decoded::Frame(f) if f.code == b'E'));
        assert_eq!(
            d.decode(&mut buf),
            Decoded::Frame(Frame {
                code: b'L',
                data: value
            })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn missing_counts_what_the_front_frame_still_needs() {
        let whole = frame(b'L', &[1; 100]);
        let mut d = Decoder::new(200);
        assert_eq!(d.missing(&[]), 4);
        assert_eq!(d.missing(&whole[..3]), 1);
        assert_eq!(d.missing(&whole[..4]), 101);
        assert_eq!(d.missing(&whole[..50]), 55);
        assert_eq!(d.missing(&whole), 0);
        // Over the cap: nothing is worth waiting for, so nothing is reserved for it.
        assert_eq!(d.missing(&201u32.to_be_bytes()), 0);
        let mut buf = whole.clone();
        buf.extend(&whole[..10]);
        assert!(matches!(d.decode(&mut buf), Decoded::Frame(_)));
        assert_eq!(d.missing(&buf), 95);
    }

    #[test]
    fn fields_never_read_past_the_end() {
        let mut f = Fields::new("test", b"ab");
        let short = Malformed {
            what: "test",
            problem: "short",
        };
        assert_eq!(f.u32("short"), Err(short));
        assert_eq!(f.cstr("short"), Err(short));
        assert_eq!(f.u16("short"), Ok(0x6162));
        assert_eq!(f.u8("short"), Err(short));
        f.end("left over").unwrap();

        let mut f = Fields::new("test", b"x\0\0y");
        assert_eq!(f.cstr("no nul"), Ok(&b"x"[..]));
        assert_eq!(f.cstr("no nul"), Ok(&b""[..]));
        assert!(!f.is_empty());
        assert!(f.end("left over").is_err());
    }
}
