//! Re-framing a body on its way through rill: the framing it arrives with is
//! decoded, and the framing the other side gets is rill's own. A proxy that
//! copied chunk bytes or trusted a length it did not count would let two
//! parties read one stream two ways (request smuggling, response splitting);
//! a [`Reframer`] never forwards a byte of framing it did not write itself.
//!
//! It is a state machine over byte slices, fed whatever arrived — any split
//! gives the same output — and it never holds more than the caller's input:
//! what it writes out is bounded by `room`, and what it cannot write yet it
//! leaves unconsumed.
//!
//! | arrives as | leaves as |
//! |---|---|
//! | `Content-Length` | the same bytes, counted (or passed through unseen, see [`Reframer::pass_through`]) |
//! | chunked | chunked again, from the decoded data (trailers kept for answers), or raw for an HTTP/1.0 client |
//! | until the close | chunked, so an HTTP/1.1 client keeps its connection, or raw for an HTTP/1.0 client |

use super::chunked::{write_chunk_header, ChunkedDecoder, ChunkedError};

/// The most a chunk's size line and CRLF take besides its data.
const CHUNK_FRAMING: usize = 16 + 4;

/// How a body arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (a response only).
    UntilClose,
}

/// Why a body cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReframeError {
    /// The chunked framing is broken.
    Chunked(&'static str),
    /// The sender closed before the body's end.
    Truncated,
}

impl From<ChunkedError> for ReframeError {
    fn from(error: ChunkedError) -> ReframeError {
        ReframeError::Chunked(error.0)
    }
}

#[derive(Debug)]
enum Decoding {
    Length { remaining: u64 },
    Chunked(Box<ChunkedDecoder>),
    UntilClose,
    Done,
}

/// One body being re-framed.
#[derive(Debug)]
pub struct Reframer {
    decoding: Decoding,
    /// Write chunked framing (for chunked and close-delimited bodies).
    chunked_out: bool,
    /// Payload bytes relayed so far.
    relayed: u64,
    /// The body goes out with no framing of its own: its end is the close.
    ends_at_close: bool,
}

impl Reframer {
    /// A body arriving as `incoming`. `chunked_out` re-chunks chunked and
    /// close-delimited bodies (otherwise their payload goes out raw, for a
    /// peer that reads until the close); `keep_trailers` passes a chunked
    /// body's trailer fields on (an answer's, never a request's).
    pub fn new(incoming: Incoming, chunked_out: bool, keep_trailers: bool) -> Reframer {
        let decoding = match incoming {
            Incoming::Length(0) => Decoding::Done,
            Incoming::Length(remaining) => Decoding::Length { remaining },
            Incoming::Chunked if keep_trailers && chunked_out => {
                Decoding::Chunked(Box::new(ChunkedDecoder::keeping_trailers()))
            }
            Incoming::Chunked => Decoding::Chunked(Box::default()),
            Incoming::UntilClose => Decoding::UntilClose,
        };
        Reframer {
            decoding,
            chunked_out,
            relayed: 0,
            ends_at_close: !chunked_out && !matches!(incoming, Incoming::Length(_)),
        }
    }

    /// Whether the body goes out framed by the close alone (a chunked or
    /// close-delimited one, not re-chunked): a peer reading it cannot tell
    /// a cut from the end.
    pub fn ends_at_close(&self) -> bool {
        self.ends_at_close
    }

    /// Whether the whole body has been relayed.
    pub fn is_done(&self) -> bool {
        matches!(self.decoding, Decoding::Done)
    }

    /// Payload bytes relayed so far.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// For a `Content-Length` body, how many more bytes may be moved as they
    /// are, without going through [`Reframer::feed`]: the caller may then
    /// read them straight into the output and report them with
    /// [`Reframer::pass_through`].
    pub fn passable(&self) -> Option<u64> {
        match self.decoding {
            Decoding::Length { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// `n` bytes of a `Content-Length` body went out unseen (at most
    /// [`Reframer::passable`]).
    pub fn pass_through(&mut self, n: u64) {
        if let Decoding::Length { remaining } = &mut self.decoding {
            let n = n.min(*remaining);
            *remaining -= n;
            self.relayed += n;
            if *remaining == 0 {
                self.decoding = Decoding::Done;
            }
        }
    }

    /// Re-frames from the start of `input` into `out`, writing at most about
    /// `room` bytes; returns how many bytes of `input` it used. Bytes after
    /// the body's end are left unused.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
    ) -> Result<usize, ReframeError> {
        let chunked_out = self.chunked_out;
        match &mut self.decoding {
            Decoding::Done => Ok(0),
            Decoding::Length { remaining } => {
                let take = input
                    .len()
                    .min(room)
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                self.relayed += take as u64;
                if *remaining == 0 {
                    self.decoding = Decoding::Done;
                }
                Ok(take)
            }
            Decoding::UntilClose => {
                let budget = if chunked_out {
                    room.saturating_sub(CHUNK_FRAMING)
                } else {
                    room
                };
                let take = input.len().min(budget);
                if take > 0 {
                    write_chunk(out, &input[..take], chunked_out);
                    self.relayed += take as u64;
                }
                Ok(take)
            }
            Decoding::Chunked(decoder) => {
                let mut used = 0;
                let mut written = 0;
                while used < input.len() && !decoder.is_done() {
                    let budget = room.saturating_sub(written + CHUNK_FRAMING);
                    if budget == 0 {
                        break;
                    }
                    let end = input.len().min(used + budget);
                    let decoded = decoder.decode(&input[used..end])?;
                    if !decoded.data.is_empty() {
                        let before = out.len();
                        write_chunk(out, decoded.data, chunked_out);
                        written += out.len() - before;
                        self.relayed += decoded.data.len() as u64;
                    }
                    used += decoded.consumed;
                    if decoded.consumed == 0 {
                        break;
                    }
                }
                if decoder.is_done() {
                    if chunked_out {
                        // Trailers stay in the trailer section (RFC 9112
                        // §7.1.2), never merged into a head.
                        out.extend_from_slice(b"0\r\n");
                        push_relayable_trailers(out, decoder.trailers());
                        out.extend_from_slice(b"\r\n");
                    }
                    self.decoding = Decoding::Done;
                }
                Ok(used)
            }
        }
    }

    /// The sender closed its side. That ends a close-delimited body (the
    /// last chunk is written for a chunked peer); any other unfinished body
    /// was cut short.
    pub fn end(&mut self, out: &mut Vec<u8>) -> Result<(), ReframeError> {
        match self.decoding {
            Decoding::Done => Ok(()),
            Decoding::UntilClose => {
                if self.chunked_out {
                    out.extend_from_slice(super::chunked::LAST_CHUNK);
                }
                self.decoding = Decoding::Done;
                Ok(())
            }
            Decoding::Length { .. } | Decoding::Chunked(_) => Err(ReframeError::Truncated),
        }
    }
}

fn write_chunk(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        write_chunk_header(out, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Fields that say how a message is routed or carried, besides the
/// hop-by-hop and framing ones: a trailer section must hold none of them
/// (RFC 9110 §6.5.1), and a client that merged them into the head would
/// read the connection differently from rill.
const ALSO_NEVER_IN_TRAILERS: [&str; 3] = ["trailer", "upgrade", "host"];

/// Copies the trailer field lines a client may be given: all but the
/// hop-by-hop and framing fields ([`super::relay::HOP_BY_HOP`]) and
/// [`ALSO_NEVER_IN_TRAILERS`].
fn push_relayable_trailers(out: &mut Vec<u8>, trailers: &[u8]) {
    for line in trailers.split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        let never = super::relay::HOP_BY_HOP
            .iter()
            .chain(&ALSO_NEVER_IN_TRAILERS)
            .any(|never| name.eq_ignore_ascii_case(never.as_bytes()));
        if !never {
            out.extend_from_slice(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::chunked::{decode_all, ChunkedDecoder};
    use proptest::prelude::*;

    #[test]
    fn only_raw_chunked_or_close_delimited_bodies_end_at_the_close() {
        let ends =
            |incoming, chunked_out| Reframer::new(incoming, chunked_out, true).ends_at_close();
        assert!(ends(Incoming::Chunked, false));
        assert!(ends(Incoming::UntilClose, false));
        assert!(!ends(Incoming::Chunked, true));
        assert!(!ends(Incoming::UntilClose, true));
        assert!(!ends(Incoming::Length(10), false));
        assert!(!ends(Incoming::Length(0), false));
    }

    /// Feeds `input` in pieces of the given sizes (cycled), with `room`
    /// bytes of output per call, then ends it if `closed`.
    fn run(
        reframer: &mut Reframer,
        input: &[u8],
        pieces: &[usize],
        room: usize,
        closed: bool,
    ) -> Result<(Vec<u8>, usize), ReframeError> {
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut used_total = 0;
        let mut sizes = pieces.iter().cycle();
        loop {
            if fed < input.len() {
                let step = (*sizes.next().unwrap_or(&1)).max(1).min(input.len() - fed);
                pending.extend_from_slice(&input[fed..fed + step]);
                fed += step;
            }
            loop {
                let used = reframer.feed(&pending, &mut out, room)?;
                pending.drain(..used);
                used_total += used;
                if used == 0 || reframer.is_done() {
                    break;
                }
            }
            if reframer.is_done() || fed == input.len() {
                break;
            }
        }
        if closed && !reframer.is_done() {
            reframer.end(&mut out)?;
        }
        Ok((out, used_total))
    }

    fn chunked(payload: &[u8], size: usize, trailers: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for piece in payload.chunks(size.max(1)) {
            write_chunk(&mut body, piece, true);
        }
        body.extend_from_slice(b"0\r\n");
        body.extend_from_slice(trailers.as_bytes());
        body.extend_from_slice(b"\r\n");
        body
    }

    #[test]
    fn a_length_body_is_counted_and_extra_bytes_are_left() {
        let mut reframer = Reframer::new(Incoming::Length(5), false, false);
        let (out, used) = run(&mut reframer, b"helloEXTRA", &[3], 1 << 16, false).unwrap();
        assert_eq!((out.as_slice(), used), (&b"hello"[..], 5));
        assert!(reframer.is_done());
        let mut short = Reframer::new(Incoming::Length(5), false, false);
        assert_eq!(
            run(&mut short, b"hel", &[3], 1 << 16, true),
            Err(ReframeError::Truncated)
        );
    }

    #[test]
    fn passing_through_counts_like_feeding() {
        let mut reframer = Reframer::new(Incoming::Length(10), false, false);
        assert_eq!(reframer.passable(), Some(10));
        reframer.pass_through(4);
        assert_eq!(reframer.passable(), Some(6));
        let mut out = Vec::new();
        assert_eq!(reframer.feed(b"abcdefgh", &mut out, 100), Ok(6));
        assert!(reframer.is_done() && reframer.relayed() == 10);
        assert_eq!(reframer.passable(), None);
    }

    #[test]
    fn chunked_bodies_are_chunked_again_with_their_trailers() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        let mut reframer = Reframer::new(Incoming::Chunked, true, true);
        let (out, used) = run(&mut reframer, body, &[body.len()], 1 << 16, false).unwrap();
        assert_eq!(&body[used..], b"NEXT");
        // The extension is gone: rill writes only framing of its own.
        assert_eq!(
            out,
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n".to_vec()
        );
        // To an HTTP/1.0 client: the payload alone.
        let mut raw = Reframer::new(Incoming::Chunked, false, true);
        assert_eq!(
            run(&mut raw, body, &[1], 1 << 16, false).unwrap().0,
            b"hello world"
        );
        // A request's trailers are not forwarded.
        let mut request = Reframer::new(Incoming::Chunked, true, false);
        let out = run(&mut request, body, &[64], 1 << 16, false).unwrap().0;
        assert!(
            out.ends_with(b"0\r\n\r\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn framing_fields_never_leave_a_trailer_section() {
        let body = b"2\r\nhi\r\n0\r\nX-Sum: 1\r\nContent-Length: 99\r\n\
                     transfer-encoding: chunked\r\nConnection: close\r\nX-Late: 2\r\n\r\n";
        let mut reframer = Reframer::new(Incoming::Chunked, true, true);
        let (out, _) = run(&mut reframer, body, &[body.len()], 1 << 16, false).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "2\r\nhi\r\n0\r\nX-Sum: 1\r\nX-Late: 2\r\n\r\n"
        );
    }

    #[test]
    fn broken_or_cut_chunked_bodies_are_errors() {
        let mut reframer = Reframer::new(Incoming::Chunked, true, false);
        assert_eq!(
            run(&mut reframer, b"zz\r\n", &[4], 1 << 16, false),
            Err(ReframeError::Chunked("chunk size missing"))
        );
        let mut cut = Reframer::new(Incoming::Chunked, true, false);
        assert_eq!(
            run(&mut cut, b"5\r\nhel", &[9], 1 << 16, true),
            Err(ReframeError::Truncated)
        );
    }

    #[test]
    fn a_close_ends_a_close_delimited_body() {
        let mut reframer = Reframer::new(Incoming::UntilClose, true, false);
        let (out, _) = run(&mut reframer, b"abcdef", &[4], 1 << 16, true).unwrap();
        assert_eq!(out, b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n".to_vec());
        let mut raw = Reframer::new(Incoming::UntilClose, false, false);
        assert_eq!(
            run(&mut raw, b"abcdef", &[4], 1 << 16, true).unwrap().0,
            b"abcdef"
        );
    }

    #[test]
    fn output_stays_within_room() {
        let payload = vec![b'x'; 10_000];
        let body = chunked(&payload, 3000, "");
        let mut reframer = Reframer::new(Incoming::Chunked, true, false);
        let mut out = Vec::new();
        let used = reframer.feed(&body, &mut out, 1000).unwrap();
        assert!(out.len() <= 1000, "{}", out.len());
        assert!(used < body.len());
    }

    fn decode(out: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (payload, used) = decode_all(out).unwrap();
        let mut decoder = ChunkedDecoder::keeping_trailers();
        let mut rest = &out[..used];
        while !rest.is_empty() {
            let decoded = decoder.decode(rest).unwrap();
            rest = &rest[decoded.consumed..];
        }
        (payload, decoder.trailers().to_vec())
    }

    proptest! {
        #[test]
        fn any_split_and_room_carries_the_same_body(
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
            size in 1usize..700,
            pieces in proptest::collection::vec(1usize..500, 1..20),
            room in 24usize..5000,
            kind in 0u8..3,
            chunked_out in any::<bool>(),
        ) {
            let (incoming, body) = match kind {
                0 => (Incoming::Length(payload.len() as u64), payload.clone()),
                1 => (Incoming::Chunked, chunked(&payload, size, "X-T: 1\r\n")),
                _ => (Incoming::UntilClose, payload.clone()),
            };
            // Chunks follow the reads, so a re-chunked body's bytes depend on
            // the split; what they carry must not.
            let mut split = Reframer::new(incoming, chunked_out, true);
            let (out, used) = run(&mut split, &body, &pieces, room, true).unwrap();
            prop_assert_eq!(used, body.len());
            prop_assert_eq!(split.relayed(), payload.len() as u64);
            let reframed_as_chunked = chunked_out && incoming != Incoming::Length(payload.len() as u64);
            if reframed_as_chunked {
                let (decoded, trailers) = decode(&out);
                prop_assert_eq!(decoded, payload);
                if kind == 1 {
                    prop_assert_eq!(trailers, b"X-T: 1\r\n".to_vec());
                }
            } else {
                prop_assert_eq!(out, payload);
            }
        }
    }
}
