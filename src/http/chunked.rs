//! Decoding `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1), one
//! byte slice at a time.
//!
//! The decoder is a state machine that can be fed any split of the body — a
//! chunk-size line cut in half, a CRLF split across two reads — and produces
//! the same payload. Chunk extensions and trailer fields are read and ignored.
//! It is strict where leniency has led to request smuggling elsewhere: sizes
//! are hex digits only (at most 15 of them, so no overflow), and every line
//! ends in CRLF.

/// Longest chunk extension (after `;`) accepted on one size line.
const MAX_EXTENSION: usize = 4096;
/// Most bytes of trailer fields accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Most hex digits in a chunk size: 15 digits cannot overflow a u64.
const MAX_SIZE_DIGITS: u8 = 15;

/// Where the decoder is within the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size { size: u64, digits: u8 },
    /// Skipping a chunk extension up to the CR.
    Extension { size: u64, length: usize },
    /// Expecting the LF after a size line's CR.
    SizeLf { size: u64 },
    /// Passing through chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerLineStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Expecting the LF of a trailer line.
    TrailerLf { empty_line: bool },
    /// The body is complete.
    Done,
}

/// Why a chunked body cannot be decoded. The answer is 400 and a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedError(pub &'static str);

/// The result of one [`ChunkedDecoder::decode`] call.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Bytes of the input used (framing and data).
    pub consumed: usize,
    /// Payload found in the input (possibly empty).
    pub data: &'a [u8],
}

/// A chunked-body decoder.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            trailer_bytes: 0,
        }
    }

    /// Whether the final chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input` up to the end of the first run of
    /// payload bytes (or the end of the input, or of the body). Call again with
    /// the rest of the input until it is used up or the body is done.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, ChunkedError> {
        let mut at = 0;
        while at < input.len() {
            if let State::Data { remaining } = self.state {
                let available = input.len() - at;
                let take = usize::try_from(remaining).map_or(available, |r| r.min(available));
                let data = &input[at..at + take];
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { remaining: left }
                };
                return Ok(Decoded {
                    consumed: at + take,
                    data,
                });
            }
            if self.state == State::Done {
                break;
            }
            self.step(input[at])?;
            at += 1;
        }
        Ok(Decoded {
            consumed: at,
            data: &[],
        })
    }

    /// Advances the framing by one byte (never called in `Data` or `Done`).
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::Size { size, digits } => match hex_value(byte) {
                Some(value) if digits < MAX_SIZE_DIGITS => State::Size {
                    size: size << 4 | u64::from(value),
                    digits: digits + 1,
                },
                Some(_) => return Err(ChunkedError("chunk size too large")),
                None if digits == 0 => return Err(ChunkedError("chunk size missing")),
                None => match byte {
                    b'\r' => State::SizeLf { size },
                    b';' => State::Extension { size, length: 0 },
                    // RFC 9112 allows whitespace before an extension.
                    b' ' | b'\t' => State::Extension { size, length: 0 },
                    _ => return Err(ChunkedError("invalid chunk size")),
                },
            },
            State::Extension { size, length } => match byte {
                b'\r' => State::SizeLf { size },
                b'\n' => return Err(ChunkedError("bare LF in chunk size line")),
                _ if length >= MAX_EXTENSION => {
                    return Err(ChunkedError("chunk extension too long"))
                }
                _ => State::Extension {
                    size,
                    length: length + 1,
                },
            },
            State::SizeLf { size } => match byte {
                b'\n' if size == 0 => State::TrailerLineStart,
                b'\n' => State::Data { remaining: size },
                _ => return Err(ChunkedError("expected LF after chunk size")),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkedError("chunk data longer than its size")),
            },
            State::DataLf => match byte {
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(ChunkedError("expected LF after chunk data")),
            },
            State::TrailerLineStart => match byte {
                b'\r' => State::TrailerLf { empty_line: true },
                _ => self.trailer_byte(byte)?,
            },
            State::TrailerLine => match byte {
                b'\r' => State::TrailerLf { empty_line: false },
                _ => self.trailer_byte(byte)?,
            },
            State::TrailerLf { empty_line } => match byte {
                b'\n' if empty_line => State::Done,
                b'\n' => State::TrailerLineStart,
                _ => return Err(ChunkedError("expected LF in trailers")),
            },
            State::Data { .. } | State::Done => self.state,
        };
        Ok(())
    }

    fn trailer_byte(&mut self, byte: u8) -> Result<State, ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(ChunkedError("trailers too large"));
        }
        if byte == b'\n' || byte == 0 {
            return Err(ChunkedError("invalid byte in trailers"));
        }
        Ok(State::TrailerLine)
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes a whole body held in memory: for tests and fuzzing.
pub fn decode_all(mut input: &[u8]) -> Result<(Vec<u8>, usize), ChunkedError> {
    let mut decoder = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut used = 0;
    while !input.is_empty() && !decoder.is_done() {
        let decoded = decoder.decode(input)?;
        payload.extend_from_slice(decoded.data);
        input = &input[decoded.consumed..];
        used += decoded.consumed;
    }
    if decoder.is_done() {
        Ok((payload, used))
    } else {
        Err(ChunkedError("body ended early"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_simple_body() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        let (payload, used) = decode_all(body).unwrap();
        assert_eq!(payload, b"hello world");
        assert_eq!(&body[used..], b"NEXT");
    }

    #[test]
    fn extensions_and_trailers_are_ignored() {
        let body = b"5;name=value;x=\"q;\"\r\nhello\r\n0 ; last\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        assert_eq!(decode_all(body).unwrap().0, b"hello");
        let uppercase = b"A\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(decode_all(uppercase).unwrap().0, b"0123456789");
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\r0\r\n\r\n",
            b"1000000000000000\r\n",
            b"ffffffffffffffffff\r\n",
            b"0\r\nbad\ntrailer\r\n\r\n",
        ] {
            let result = decode_all(bad);
            assert!(
                result.is_err(),
                "{:?} gave {:?}",
                String::from_utf8_lossy(bad),
                result
            );
        }
    }

    #[test]
    fn incomplete_is_not_an_error_until_the_end() {
        let mut decoder = ChunkedDecoder::new();
        let decoded = decoder.decode(b"5\r\nhel").unwrap();
        assert_eq!((decoded.consumed, decoded.data), (6, &b"hel"[..]));
        assert!(!decoder.is_done());
        let decoded = decoder.decode(b"lo\r\n0\r\n\r\n").unwrap();
        assert_eq!(decoded.data, b"lo");
    }

    fn encode(payload: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut rest = payload;
        let mut i = 0;
        while !rest.is_empty() {
            let size = sizes.get(i).copied().unwrap_or(7).clamp(1, rest.len());
            body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            body.extend_from_slice(&rest[..size]);
            body.extend_from_slice(b"\r\n");
            rest = &rest[size..];
            i += 1;
        }
        body.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
        body
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_payload(
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..300, 0..20),
            splits in proptest::collection::vec(1usize..64, 1..200),
        ) {
            let body = encode(&payload, &sizes);
            let mut decoder = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            let mut fed = 0;
            let mut split = splits.iter().cycle();
            while fed < body.len() || !pending.is_empty() {
                if fed < body.len() {
                    let step = (*split.next().unwrap()).min(body.len() - fed);
                    pending.extend_from_slice(&body[fed..fed + step]);
                    fed += step;
                }
                loop {
                    let decoded = decoder.decode(&pending).unwrap();
                    out.extend_from_slice(decoded.data);
                    let consumed = decoded.consumed;
                    pending.drain(..consumed);
                    if consumed == 0 || pending.is_empty() { break; }
                }
                if decoder.is_done() { break; }
            }
            prop_assert!(decoder.is_done());
            prop_assert_eq!(out, payload);
        }

        #[test]
        fn one_byte_feeds_give_the_same_payload(
            payload in proptest::collection::vec(any::<u8>(), 0..500),
            sizes in proptest::collection::vec(1usize..100, 0..10),
        ) {
            let body = encode(&payload, &sizes);
            let mut decoder = ChunkedDecoder::new();
            let mut out = Vec::new();
            for byte in body.chunks(1) {
                let decoded = decoder.decode(byte).unwrap();
                prop_assert_eq!(decoded.consumed, 1);
                out.extend_from_slice(decoded.data);
            }
            prop_assert!(decoder.is_done());
            prop_assert_eq!(out, payload);
        }

        #[test]
        fn arbitrary_bytes_decode_consistently(
            input in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            // Whatever the bytes, a body that decodes used no more than it was
            // given and yields less payload than that; byte-wise feeding agrees.
            if let Ok((payload, used)) = decode_all(&input) {
                prop_assert!(used <= input.len());
                prop_assert!(payload.len() < used.max(1));
                let mut decoder = ChunkedDecoder::new();
                let mut bytewise = Vec::new();
                for byte in input[..used].chunks(1) {
                    bytewise.extend_from_slice(decoder.decode(byte).unwrap().data);
                }
                prop_assert!(decoder.is_done());
                prop_assert_eq!(bytewise, payload);
            }
        }
    }
}
