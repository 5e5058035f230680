//! Decoding `Transfer-Encoding: chunked` bodies (RFC 9112 §7.1), one byte
//! slice at a time, and the two pieces an encoder needs.
//!
//! The decoder is a state machine that can be fed any split of the body — a
//! chunk-size line cut in half, a CRLF split across two reads — and produces
//! the same payload. It is strict where leniency has led to request smuggling
//! elsewhere: sizes are hex digits only (at most 15 significant ones, so no
//! overflow; leading zeros are digits too, up to 64 in all),
//! every line ends in CRLF, and chunk extensions and trailer fields must match
//! the grammar exactly. A front end that reads `2 junk` or `2;a b` as one
//! thing and a back end that reads it as another disagree on where the body
//! ends, so anything outside the grammar is refused rather than skipped.
//!
//! Extensions are checked and dropped. Trailer fields are checked and, for a
//! decoder made with [`ChunkedDecoder::keeping_trailers`], kept as received.

/// Longest chunk extension (everything after the size digits) accepted on one
/// size line.
const MAX_EXTENSION: usize = 4096;
/// Most bytes of trailer field lines (CRLFs included) accepted after the last
/// chunk; also the most a keeping decoder stores.
const MAX_TRAILERS: usize = 16 * 1024;
/// Most hex digits in a chunk size, leading zeros included (`1*HEXDIG` has
/// no bound; this one keeps a size line finite). The value itself is held
/// below 2^60: 15 significant digits, so it cannot overflow a u64.
const MAX_SIZE_DIGITS: u8 = 64;

/// The end of a chunked body without trailers: the last chunk and the empty
/// line that ends the (empty) trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends the size line of a chunk of `len` bytes, `{len:x}\r\n`, to `out`.
///
/// A `len` of 0 writes the last-chunk line `0\r\n`: follow it with the trailer
/// field lines, if any, and a final `\r\n` (or write [`LAST_CHUNK`] instead
/// when there are no trailers). Never call it with 0 for an empty piece of
/// payload in the middle of a body: that would end the body.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut at = digits.len();
    let mut rest = len;
    loop {
        at -= 1;
        digits[at] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Where the decoder is within the chunked framing. The size being read
/// lives in the decoder, not here, since every state of a size line needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size,
    /// After whitespace that followed the size or an extension: only more
    /// whitespace or a `;` may come (BWS belongs to the next `;`).
    ExtBws,
    /// After a `;` (and maybe whitespace): an extension name must start.
    ExtNameStart,
    /// Inside an extension name.
    ExtName,
    /// After whitespace that followed a name: `=`, `;` or more whitespace.
    ExtNameBws,
    /// After a `=` (and maybe whitespace): a token or a quoted string.
    ExtValueStart,
    /// Inside a token value.
    ExtToken,
    /// Inside a quoted-string value.
    ExtQuoted,
    /// After a backslash inside a quoted string.
    ExtQuotedPair,
    /// After a quoted string's closing quote: `;`, whitespace or CR.
    ExtQuotedEnd,
    /// Expecting the LF after a size line's CR.
    SizeLf,
    /// Passing through chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerLineStart,
    /// Inside a trailer field name.
    TrailerName,
    /// After a trailer field's colon: its value, up to the CR.
    TrailerValue,
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

/// A chunked-body decoder. After an error it must not be fed again.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size read so far on the current size line.
    size: u64,
    /// Hex digits in `size` so far.
    digits: u8,
    /// Bytes after the size digits on the current size line.
    extension_bytes: usize,
    /// Bytes of trailer field lines so far.
    trailer_bytes: usize,
    keep_trailers: bool,
    /// The trailer field lines so far, when keeping them; the last one may be
    /// incomplete, so only `..trailers_complete` is shown.
    trailers: Vec<u8>,
    trailers_complete: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body, which checks trailer fields and
    /// drops them.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            keep_trailers: false,
            // Vec::new does not allocate, and nothing is pushed unless keeping.
            trailers: Vec::new(),
            trailers_complete: 0,
        }
    }

    /// A decoder at the start of a body that keeps its trailer field lines,
    /// for [`trailers`](Self::trailers) (a proxy relaying them, say).
    pub fn keeping_trailers() -> ChunkedDecoder {
        ChunkedDecoder {
            keep_trailers: true,
            ..ChunkedDecoder::new()
        }
    }

    /// Whether the final chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer field lines read so far, each ending in CRLF, byte for byte
    /// as received, without the empty line that ends the section. Empty when
    /// there were none or the decoder does not keep them; at most 16 KiB.
    pub fn trailers(&self) -> &[u8] {
        &self.trailers[..self.trailers_complete]
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
        use State::*;
        self.state = match (self.state, byte) {
            (Size, _) => match hex_value(byte) {
                Some(value) if self.digits < MAX_SIZE_DIGITS && self.size >> 56 == 0 => {
                    self.size = self.size << 4 | u64::from(value);
                    self.digits += 1;
                    Size
                }
                Some(_) => return Err(ChunkedError("chunk size too large")),
                None if self.digits == 0 => return Err(ChunkedError("chunk size missing")),
                None => match byte {
                    b'\r' => SizeLf,
                    b';' => self.extension(ExtNameStart)?,
                    b' ' | b'\t' => self.extension(ExtBws)?,
                    _ => return Err(ChunkedError("invalid chunk size")),
                },
            },
            (ExtBws, b' ' | b'\t') => self.extension(ExtBws)?,
            (ExtBws, b';') => self.extension(ExtNameStart)?,
            (ExtNameStart, b' ' | b'\t') => self.extension(ExtNameStart)?,
            (ExtNameStart | ExtName, _) if is_tchar(byte) => self.extension(ExtName)?,
            (ExtName | ExtNameBws, b' ' | b'\t') => self.extension(ExtNameBws)?,
            (ExtName | ExtNameBws, b'=') => self.extension(ExtValueStart)?,
            (ExtName | ExtNameBws | ExtToken | ExtQuotedEnd, b';') => {
                self.extension(ExtNameStart)?
            }
            (ExtValueStart, b' ' | b'\t') => self.extension(ExtValueStart)?,
            (ExtValueStart, b'"') => self.extension(ExtQuoted)?,
            (ExtValueStart | ExtToken, _) if is_tchar(byte) => self.extension(ExtToken)?,
            (ExtToken | ExtQuotedEnd, b' ' | b'\t') => self.extension(ExtBws)?,
            (ExtQuoted, b'"') => self.extension(ExtQuotedEnd)?,
            (ExtQuoted, b'\\') => self.extension(ExtQuotedPair)?,
            (ExtQuoted, _) if is_qdtext(byte) => self.extension(ExtQuoted)?,
            (ExtQuotedPair, _) if is_field_byte(byte) => self.extension(ExtQuoted)?,
            // A size line ends after a name, a value or the size itself, never
            // after whitespace, a `;` or a `=`.
            (ExtName | ExtToken | ExtQuotedEnd, b'\r') => SizeLf,
            (
                ExtBws | ExtNameStart | ExtName | ExtNameBws | ExtValueStart | ExtToken | ExtQuoted
                | ExtQuotedPair | ExtQuotedEnd,
                _,
            ) => return Err(ChunkedError("invalid chunk extension")),
            (SizeLf, b'\n') if self.size == 0 => TrailerLineStart,
            (SizeLf, b'\n') => Data {
                remaining: self.size,
            },
            (SizeLf, _) => return Err(ChunkedError("expected LF after chunk size")),
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(ChunkedError("chunk data longer than its size")),
            (DataLf, b'\n') => {
                self.size = 0;
                self.digits = 0;
                self.extension_bytes = 0;
                Size
            }
            (DataLf, _) => return Err(ChunkedError("expected LF after chunk data")),
            (TrailerLineStart, b'\r') => TrailerLf { empty_line: true },
            (TrailerLineStart | TrailerName, _) if is_tchar(byte) => {
                self.trailer(TrailerName, byte)?
            }
            (TrailerName, b':') => self.trailer(TrailerValue, byte)?,
            (TrailerLineStart, _) => return Err(ChunkedError("invalid trailer field name")),
            (TrailerName, _) => return Err(ChunkedError("trailer line without a colon")),
            (TrailerValue, b'\r') => self.trailer(TrailerLf { empty_line: false }, byte)?,
            (TrailerValue, _) if is_field_byte(byte) => self.trailer(TrailerValue, byte)?,
            (TrailerValue, _) => return Err(ChunkedError("invalid byte in trailers")),
            (TrailerLf { empty_line: true }, b'\n') => Done,
            (TrailerLf { empty_line: false }, b'\n') => {
                let next = self.trailer(TrailerLineStart, byte)?;
                self.trailers_complete = self.trailers.len();
                next
            }
            (TrailerLf { .. }, _) => return Err(ChunkedError("expected LF in trailers")),
            (Data { .. } | Done, _) => self.state,
        };
        Ok(())
    }

    /// Counts one byte of a chunk extension against its limit.
    fn extension(&mut self, next: State) -> Result<State, ChunkedError> {
        self.extension_bytes += 1;
        if self.extension_bytes > MAX_EXTENSION {
            return Err(ChunkedError("chunk extension too long"));
        }
        Ok(next)
    }

    /// Counts (and, when keeping, stores) one byte of a trailer field line.
    fn trailer(&mut self, next: State, byte: u8) -> Result<State, ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILERS {
            return Err(ChunkedError("trailers too large"));
        }
        if self.keep_trailers {
            self.trailers.push(byte);
        }
        Ok(next)
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

/// `tchar` (RFC 9110 §5.6.2): the bytes of a token.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `qdtext` (RFC 9110 §5.6.4): what a quoted string holds unescaped.
fn is_qdtext(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// HTAB, SP, VCHAR or obs-text: a field value's bytes, and what may follow a
/// backslash in a quoted string.
fn is_field_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
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

    /// Decodes `body` whole with a decoder keeping trailers: payload, bytes
    /// used and the trailers kept.
    fn decode_keeping(body: &[u8]) -> Result<(Vec<u8>, usize, Vec<u8>), ChunkedError> {
        let mut decoder = ChunkedDecoder::keeping_trailers();
        let mut payload = Vec::new();
        let mut used = 0;
        while used < body.len() && !decoder.is_done() {
            let decoded = decoder.decode(&body[used..])?;
            payload.extend_from_slice(decoded.data);
            used += decoded.consumed;
        }
        if !decoder.is_done() {
            return Err(ChunkedError("body ended early"));
        }
        Ok((payload, used, decoder.trailers().to_vec()))
    }

    /// Feeds `body` to a fresh decoder in pieces whose lengths cycle through
    /// `splits`, as a connection would: what is not consumed is held and
    /// offered again with the next piece.
    fn decode_split(
        mut decoder: ChunkedDecoder,
        body: &[u8],
        splits: &[usize],
    ) -> Result<(Vec<u8>, ChunkedDecoder), ChunkedError> {
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut split = splits.iter().cycle();
        while fed < body.len() || !pending.is_empty() {
            if fed < body.len() {
                let step = split
                    .next()
                    .copied()
                    .unwrap_or(1)
                    .max(1)
                    .min(body.len() - fed);
                pending.extend_from_slice(&body[fed..fed + step]);
                fed += step;
            }
            loop {
                let decoded = decoder.decode(&pending)?;
                out.extend_from_slice(decoded.data);
                let consumed = decoded.consumed;
                pending.drain(..consumed);
                if consumed == 0 || pending.is_empty() {
                    break;
                }
            }
            if decoder.is_done() {
                break;
            }
        }
        Ok((out, decoder))
    }

    fn assert_rejected(bad: &[u8]) {
        let result = decode_all(bad);
        assert!(
            result.is_err(),
            "{:?} gave {:?}",
            String::from_utf8_lossy(bad),
            result
        );
    }

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
    fn accepts_every_form_of_extension() {
        for ext in [
            &b";name=value;x=\"q;\""[..],
            b" ; a = b",
            b";a=\"x\\\"y\"",
            b";a",
            b";a;b;c",
            b"\t;\ta\t=\t\"\"",
            b";a=\"tab\there\\\tok \x80\xff\"",
            b";!#$%&'*+-.^_`|~09azAZ=!#$%&'*+-.^_`|~",
            b";a=\"\" ;b",
            b";a=b ;c=d",
            b";a =b",
            b";a= b",
            b";a=\"\\\\\"",
        ] {
            let mut body = b"5".to_vec();
            body.extend_from_slice(ext);
            body.extend_from_slice(b"\r\nhello\r\n0");
            body.extend_from_slice(ext);
            body.extend_from_slice(b"\r\n\r\n");
            let result = decode_all(&body);
            assert_eq!(
                result.as_ref().map(|r| r.0.as_slice()),
                Ok(&b"hello"[..]),
                "{:?}",
                String::from_utf8_lossy(ext)
            );
        }
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
            assert_rejected(bad);
        }
    }

    #[test]
    fn leading_zeros_are_digits_like_any_other() {
        let zeros = b"0000000000000000000000000005\r\nhello\r\n0000\r\n\r\n";
        assert_eq!(decode_all(zeros), Ok((b"hello".to_vec(), zeros.len())));
        // The largest size held, and one digit more.
        let too_large = Err(ChunkedError("chunk size too large"));
        assert_eq!(
            decode_all(b"0fffffffffffffff\r\n"),
            Err(ChunkedError("body ended early"))
        );
        assert_eq!(decode_all(b"1000000000000000\r\n"), too_large);
        assert_eq!(decode_all(&[b'0'; 65]), too_large);
    }

    #[test]
    fn rejects_bad_extensions() {
        for ext in [
            // Whitespace belongs to a `;` or `=`: none may end the line.
            &b" "[..],
            b"\t",
            b" junk",
            b";",
            b"; ",
            b";a;",
            b";=x",
            b";a=",
            b";a= ",
            b";a b",
            b";a ",
            b";a=b ",
            b";a=b c",
            b";a==b",
            b";a=b=c",
            b";a\x01",
            b";a=b\x01",
            b";a=\"\x01\"",
            b";a=\"\x7f\"",
            b";a=\"\\\x01\"",
            b";a=\x7f",
            b";\x80",
            b";a=\x80",
            b";a=\"open",
            b";a=\"x\"y",
            b";a=\"x\"\"y\"",
            b";a=b,c",
            b";a,b",
            b"a",
            b";a\nx",
            b";a=\"\n\"",
            b";a\0",
            b"\0",
        ] {
            let mut body = b"2".to_vec();
            body.extend_from_slice(ext);
            body.extend_from_slice(b"\r\nhi\r\n0\r\n\r\n");
            assert_rejected(&body);
            // And on the last chunk, where the trailers come next.
            let mut last = b"0".to_vec();
            last.extend_from_slice(ext);
            last.extend_from_slice(b"\r\n\r\n");
            assert_rejected(&last);
        }
        // A CR ends the line: whatever follows must be its LF.
        assert_rejected(b"2;a\rb\nhi\r\n0\r\n\r\n");
        assert_rejected(b"2;a=\"\r\"\r\nhi\r\n0\r\n\r\n");
    }

    #[test]
    fn extension_length_is_limited() {
        let mut fits = b"1;a=".to_vec();
        fits.resize(1 + MAX_EXTENSION, b'b');
        fits.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(decode_all(&fits).unwrap().0, b"x");
        let mut long = b"1;a=".to_vec();
        long.resize(2 + MAX_EXTENSION, b'b');
        long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            decode_all(&long),
            Err(ChunkedError("chunk extension too long"))
        );
        // The limit is per line, not per body.
        let mut many = Vec::new();
        for _ in 0..3 {
            many.extend_from_slice(b"1;a=");
            many.resize(many.len() + MAX_EXTENSION - 3, b'b');
            many.extend_from_slice(b"\r\nx\r\n");
        }
        many.extend_from_slice(LAST_CHUNK);
        assert_eq!(decode_all(&many).unwrap().0, b"xxx");
    }

    #[test]
    fn accepts_well_formed_trailers() {
        for trailer in [
            &b"X-Sum: 1\r\n"[..],
            b"x:y\r\n",
            b"x:\r\n",
            b"x: \r\n",
            b"x:\t  spaced  out\t\r\n",
            b"x: a:b \"c\" \\ \x80\xff\r\n",
            b"!#$%&'*+-.^_`|~09azAZ: v\r\n",
            b"A: 1\r\nB: 2\r\nA: 3\r\n",
        ] {
            let mut body = b"0\r\n".to_vec();
            body.extend_from_slice(trailer);
            body.extend_from_slice(b"\r\nNEXT");
            let (payload, used, kept) = decode_keeping(&body)
                .unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(trailer)));
            assert!(payload.is_empty());
            assert_eq!(&body[used..], b"NEXT");
            assert_eq!(kept, trailer);
        }
    }

    #[test]
    fn rejects_bad_trailers() {
        for trailer in [
            &b"bad\r\n"[..],
            b" x: y\r\n",
            b"\tx: y\r\n",
            b"x : y\r\n",
            b"x\t: y\r\n",
            b": y\r\n",
            b"x y: z\r\n",
            b"x\x01: y\r\n",
            b"x: a\x01b\r\n",
            b"x: a\0b\r\n",
            b"x: a\x7fb\r\n",
            b"x: a\nb\r\n",
            b"x: a\rb\r\n",
            b"x: y\n",
            b"x: y\r\n \r\n",
            b"x: y\r\n folded\r\n",
            b"(x): y\r\n",
            b"\x80: y\r\n",
            b"\n",
        ] {
            let mut body = b"0\r\n".to_vec();
            body.extend_from_slice(trailer);
            body.extend_from_slice(b"\r\n");
            assert_rejected(&body);
            assert!(decode_keeping(&body).is_err());
        }
    }

    #[test]
    fn trailer_size_is_limited() {
        let mut fits = b"0\r\nx: ".to_vec();
        fits.resize(3 + MAX_TRAILERS - 2, b'v');
        fits.extend_from_slice(b"\r\n\r\n");
        let (_, _, kept) = decode_keeping(&fits).unwrap();
        assert_eq!(kept.len(), MAX_TRAILERS);
        let mut long = b"0\r\nx: ".to_vec();
        long.resize(3 + MAX_TRAILERS - 1, b'v');
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decode_all(&long), Err(ChunkedError("trailers too large")));
    }

    #[test]
    fn trailers_are_kept_only_on_request() {
        let body = b"3\r\nabc\r\n0\r\nA: 1\r\nB:2 \r\n\r\n";
        let mut plain = ChunkedDecoder::new();
        let mut at = 0;
        while !plain.is_done() {
            at += plain.decode(&body[at..]).unwrap().consumed;
        }
        assert!(plain.trailers().is_empty());
        assert_eq!(
            plain.trailers.capacity(),
            0,
            "the default decoder allocated"
        );

        let (payload, used, kept) = decode_keeping(body).unwrap();
        assert_eq!((payload.as_slice(), used), (&b"abc"[..], body.len()));
        assert_eq!(kept, b"A: 1\r\nB:2 \r\n");

        let (_, _, none) = decode_keeping(b"0\r\n\r\n").unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn kept_trailers_show_only_whole_lines() {
        let mut decoder = ChunkedDecoder::keeping_trailers();
        decoder.decode(b"0\r\nA: 1\r\nB: 2").unwrap();
        assert_eq!(decoder.trailers(), b"A: 1\r\n");
        decoder.decode(b"\r").unwrap();
        assert_eq!(decoder.trailers(), b"A: 1\r\n");
        decoder.decode(b"\n").unwrap();
        assert_eq!(decoder.trailers(), b"A: 1\r\nB: 2\r\n");
        assert!(!decoder.is_done());
        decoder.decode(b"\r\n").unwrap();
        assert!(decoder.is_done());
        assert_eq!(decoder.trailers(), b"A: 1\r\nB: 2\r\n");
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

    #[test]
    fn chunk_headers_are_lowercase_hex() {
        for (len, line) in [
            (0, &b"0\r\n"[..]),
            (1, b"1\r\n"),
            (9, b"9\r\n"),
            (10, b"a\r\n"),
            (15, b"f\r\n"),
            (16, b"10\r\n"),
            (255, b"ff\r\n"),
            (4096, b"1000\r\n"),
            (0xdead_beef, b"deadbeef\r\n"),
        ] {
            let mut out = b"x".to_vec();
            write_chunk_header(&mut out, len);
            assert_eq!(&out[1..], line, "{len}");
        }
        let mut out = Vec::new();
        write_chunk_header(&mut out, usize::MAX);
        assert_eq!(out, format!("{:x}\r\n", usize::MAX).as_bytes());
        assert_eq!(decode_all(LAST_CHUNK), Ok((Vec::new(), LAST_CHUNK.len())));
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

    /// Reference for a size line's extension (everything between the digits
    /// and the CR), written from the ABNF as a backtracking parser rather than
    /// a state machine, so the two can be checked against each other.
    fn reference_extension_ok(ext: &[u8]) -> bool {
        let tchar = |b: u8| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(&b);
        let skip_bws = |mut i: usize| {
            while ext.get(i).is_some_and(|&b| b == b' ' || b == b'\t') {
                i += 1;
            }
            i
        };
        let token = |mut i: usize| {
            let start = i;
            while ext.get(i).copied().is_some_and(tchar) {
                i += 1;
            }
            (i > start).then_some(i)
        };
        let quoted = |mut i: usize| {
            if ext.get(i) != Some(&b'"') {
                return None;
            }
            i += 1;
            loop {
                match *ext.get(i)? {
                    b'"' => return Some(i + 1),
                    b'\\' => match *ext.get(i + 1)? {
                        b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => i += 2,
                        _ => return None,
                    },
                    b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
                    _ => return None,
                }
            }
        };
        let mut i = 0;
        while i < ext.len() {
            i = skip_bws(i);
            if ext.get(i) != Some(&b';') {
                return false;
            }
            let Some(after_name) = token(skip_bws(i + 1)) else {
                return false;
            };
            i = after_name;
            let eq = skip_bws(i);
            if ext.get(eq) == Some(&b'=') {
                let value = skip_bws(eq + 1);
                match token(value).or_else(|| quoted(value)) {
                    Some(end) => i = end,
                    None => return false,
                }
            }
        }
        true
    }

    /// Reference for one trailer line (without its CRLF).
    fn reference_trailer_ok(line: &[u8]) -> bool {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        !name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(&b))
            && value
                .iter()
                .all(|&b| matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff))
    }

    /// Bytes that matter to the extension and trailer grammars, and some that
    /// must never pass; no hex digits, which would lengthen the chunk size.
    fn interesting_byte() -> impl Strategy<Value = u8> {
        prop::sample::select(&b" \t;=\"\\:,(@xZ-~!\x01\x00\x7f\x80\xff\n"[..])
    }

    /// A well-formed chunk extension, from the grammar.
    fn extension() -> impl Strategy<Value = Vec<u8>> {
        let bws = prop::sample::select(vec!["", " ", "\t", " \t "]);
        let token = "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,6}";
        let quoted = prop::collection::vec(
            prop_oneof![
                prop::sample::select(&b"\t !#[]~\x80\xff;=,aZ"[..]).prop_map(|b| vec![b]),
                prop::sample::select(&b"\t \"\\a\x80"[..]).prop_map(|b| vec![b'\\', b]),
            ],
            0..6,
        )
        .prop_map(|parts| {
            let mut q = vec![b'"'];
            q.extend(parts.concat());
            q.push(b'"');
            q
        });
        let value = prop_oneof![
            Just(Vec::new()),
            (
                bws.clone(),
                bws.clone(),
                prop_oneof![token.prop_map(String::into_bytes), quoted]
            )
                .prop_map(|(a, b, v)| [a.as_bytes(), b"=", b.as_bytes(), &v].concat()),
        ];
        prop::collection::vec((bws.clone(), bws, token, value), 0..4).prop_map(|items| {
            items
                .into_iter()
                .flat_map(|(a, b, name, value)| {
                    [a.as_bytes(), b";", b.as_bytes(), name.as_bytes(), &value].concat()
                })
                .collect()
        })
    }

    /// Well-formed trailer field lines, CRLFs included.
    fn trailer_section() -> impl Strategy<Value = Vec<u8>> {
        let name = "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}";
        let value = prop::collection::vec(
            prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff, Just(b' '), Just(b'\t')],
            0..20,
        );
        prop::collection::vec((name, value), 0..5).prop_map(|fields| {
            fields
                .into_iter()
                .flat_map(|(name, value)| [name.as_bytes(), b":", &value, b"\r\n"].concat())
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_payload(
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..300, 0..20),
            splits in proptest::collection::vec(1usize..64, 1..200),
        ) {
            let body = encode(&payload, &sizes);
            let (out, decoder) = decode_split(ChunkedDecoder::new(), &body, &splits).unwrap();
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

        #[test]
        fn extensions_match_the_reference_parser(
            ext in proptest::collection::vec(interesting_byte(), 0..12),
            last in any::<bool>(),
        ) {
            let mut body = if last { b"0".to_vec() } else { b"5".to_vec() };
            body.extend_from_slice(&ext);
            body.extend_from_slice(if last { b"\r\n\r\n" } else { b"\r\nhello\r\n0\r\n\r\n" });
            let expected = reference_extension_ok(&ext);
            let whole = decode_all(&body);
            prop_assert_eq!(whole.is_ok(), expected, "{:?} gave {:?}", String::from_utf8_lossy(&ext), whole);
            let bytewise = decode_split(ChunkedDecoder::new(), &body, &[1]);
            prop_assert_eq!(bytewise.is_ok(), expected);
        }

        #[test]
        fn trailers_match_the_reference_parser(
            line in proptest::collection::vec(interesting_byte(), 0..12),
        ) {
            let mut body = b"0\r\n".to_vec();
            body.extend_from_slice(&line);
            body.extend_from_slice(b"\r\n\r\n");
            // An empty line is the end of the section, not a field line.
            let expected = line.is_empty() || reference_trailer_ok(&line);
            let kept = decode_keeping(&body);
            prop_assert_eq!(kept.is_ok(), expected, "{:?} gave {:?}", String::from_utf8_lossy(&line), kept);
            if let Ok((_, used, kept)) = kept {
                if line.is_empty() {
                    prop_assert_eq!((used, kept.as_slice()), (5, &b""[..]));
                } else {
                    prop_assert_eq!(used, body.len());
                    prop_assert_eq!(kept, [&line[..], b"\r\n"].concat());
                }
            }
            let bytewise = decode_split(ChunkedDecoder::new(), &body, &[1]);
            prop_assert_eq!(bytewise.is_ok(), expected);
        }

        #[test]
        fn well_formed_extensions_pass_at_any_split(
            exts in proptest::collection::vec(extension(), 1..5),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            splits in proptest::collection::vec(1usize..16, 1..50),
        ) {
            let mut body = Vec::new();
            for (i, piece) in payload.chunks(64).enumerate() {
                body.extend_from_slice(format!("{:x}", piece.len()).as_bytes());
                body.extend_from_slice(&exts[i % exts.len()]);
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(piece);
                body.extend_from_slice(b"\r\n");
            }
            body.push(b'0');
            body.extend_from_slice(&exts[0]);
            body.extend_from_slice(b"\r\n\r\n");
            prop_assert!(exts.iter().all(|ext| reference_extension_ok(ext)));
            let (out, decoder) = decode_split(ChunkedDecoder::new(), &body, &splits)
                .map_err(|e| TestCaseError::fail(format!("{e:?} on {:?}", String::from_utf8_lossy(&body))))?;
            prop_assert!(decoder.is_done());
            prop_assert_eq!(out, payload);
        }

        #[test]
        fn encode_then_decode_round_trips(
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..300, 0..20),
            trailers in trailer_section(),
            splits in proptest::collection::vec(1usize..64, 1..200),
        ) {
            let mut body = Vec::new();
            let mut rest = payload.as_slice();
            let mut size = sizes.iter().cycle();
            while !rest.is_empty() {
                let len = size.next().copied().unwrap_or(7).min(rest.len());
                write_chunk_header(&mut body, len);
                body.extend_from_slice(&rest[..len]);
                body.extend_from_slice(b"\r\n");
                rest = &rest[len..];
            }
            if trailers.is_empty() {
                body.extend_from_slice(LAST_CHUNK);
            } else {
                write_chunk_header(&mut body, 0);
                body.extend_from_slice(&trailers);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"NEXT");
            let (out, decoder) =
                decode_split(ChunkedDecoder::keeping_trailers(), &body[..body.len() - 4], &splits)
                    .unwrap();
            prop_assert!(decoder.is_done());
            prop_assert_eq!(out, payload.clone());
            prop_assert_eq!(decoder.trailers(), trailers.as_slice());
            let (whole, used, kept) = decode_keeping(&body).unwrap();
            prop_assert_eq!(whole, payload);
            prop_assert_eq!(&body[used..], b"NEXT");
            prop_assert_eq!(kept, trailers);
        }
    }
}
