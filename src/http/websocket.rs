//! The WebSocket protocol (RFC 6455) without the sockets: checking an upgrade
//! request and writing the `101` that accepts it, decoding the frames a client
//! sends and encoding the ones the server sends.
//!
//! [`check_handshake`] reads a complete request head and either accepts it
//! ([`Handshake`], answered with [`write_switching_protocols`]) or says which
//! refusal to send. It also enforces same-origin: a browser sends `Origin`
//! with every WebSocket request, and a page from another site must not be able
//! to open one to rill (cross-site WebSocket hijacking).
//!
//! [`Decoder`] is a state machine fed whatever bytes arrived, cut anywhere: a
//! frame header split in two, a payload spread over many reads. It keeps only
//! a 14-byte spill buffer for a partial header, unmasks payload into the
//! message buffer as it arrives, and checks everything RFC 6455 lets a server
//! check on a connection without extensions: masking, reserved bits and
//! opcodes, the control-frame rules, fragmentation, the size limit (on the
//! declared length, before any of the frame is buffered), UTF-8 of text (as
//! the bytes arrive, so bad text fails at the first bad byte) and close
//! payloads. Each refusal is a [`Violation`] carrying the close code to send.
//!
//! Server frames are written whole and unmasked by [`write_frame`] and
//! [`write_close`]; nothing here fragments or compresses.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use std::mem::MaybeUninit;

use super::request::MAX_HEADERS;

/// The GUID of RFC 6455 §1.3.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version spoken, as sent in `Sec-WebSocket-Version`.
pub const VERSION: &str = "13";

/// Close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the server is going away (shutting down).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the peer broke the framing rules.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code: a text message (or close reason) was not UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: a message was larger than the decoder accepts.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The most payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest frame header: two bytes, a 64-bit length and the mask.
const MAX_HEADER: usize = 14;

/// Message-buffer capacity kept for the next message. After a larger message
/// the buffer is freed, so a connection that once received a big message does
/// not hold its size for the rest of its life.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// base64(SHA-1(key + GUID)): the `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// A handshake that may be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
}

/// Why a handshake is refused; the caller answers with
/// [`status_code`](Self::status_code) (plus [`header`](Self::header), if any)
/// and a short body, then closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is not a well-formed WebSocket handshake.
    BadRequest(&'static str),
    /// 426: `Sec-WebSocket-Version` is present but not 13. The answer must
    /// carry `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
    UnsupportedVersion,
    /// 403: the `Origin` is not this server's.
    CrossOrigin,
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status_code(self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::UnsupportedVersion => 426,
            Refusal::CrossOrigin => 403,
        }
    }

    /// A short description, for the body and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest(reason) => reason,
            Refusal::UnsupportedVersion => "unsupported WebSocket version",
            Refusal::CrossOrigin => "cross-origin WebSocket refused",
        }
    }

    /// A header field the answer must carry, if any: for a 426, the version
    /// spoken.
    pub fn header(self) -> Option<(&'static str, &'static str)> {
        match self {
            Refusal::UnsupportedVersion => Some(("Sec-WebSocket-Version", VERSION)),
            Refusal::BadRequest(_) | Refusal::CrossOrigin => None,
        }
    }
}

/// Checks a complete request head (the raw bytes up to and including the
/// blank line; anything after it is not looked at) against RFC 6455 §4.2.1.
///
/// Required: `GET`, HTTP/1.1, exactly one `Host`, an `Upgrade` list holding
/// `websocket` and a `Connection` list holding `upgrade` (both tokens ASCII
/// case-insensitive; Firefox sends `Connection: keep-alive, Upgrade`), exactly
/// one `Sec-WebSocket-Key` that is canonical base64 of 16 bytes, and
/// `Sec-WebSocket-Version: 13`. A missing version is a malformed handshake,
/// 400 (§4.2.2); a present but different one is 426 (§4.4).
///
/// An `Origin` field, when present, must be `http://` or `https://` followed by
/// the `Host` value (ASCII case-insensitive, an explicit default port for the
/// scheme counting as none); `null` or anything else is 403. No `Origin` means
/// a client that is not a browser, which no page can drive, so it is allowed.
///
/// A handshake with a body (`Transfer-Encoding`, or `Content-Length` other than
/// 0) is refused: after the head the bytes are frames, and a body would make
/// them mean two things.
///
/// Extensions and subprotocols are ignored; none is ever accepted.
pub fn check_handshake(head: &[u8]) -> Result<Handshake, Refusal> {
    use Refusal::BadRequest;
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(BadRequest("incomplete request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(BadRequest("too many header fields")),
        Err(_) => return Err(BadRequest("malformed request head")),
    }
    if req.method != Some("GET") {
        return Err(BadRequest("a WebSocket handshake must be a GET"));
    }
    if req.version != Some(1) {
        return Err(BadRequest("a WebSocket handshake needs HTTP/1.1"));
    }

    let mut host = None;
    let mut upgrade_websocket = false;
    let mut connection_upgrade = false;
    let mut key = None;
    let mut version = None;
    let mut origin = None;
    for field in req.headers.iter() {
        let name = field.name;
        let value = field.value.trim_ascii();
        if name.eq_ignore_ascii_case("host") {
            if host.replace(value).is_some() {
                return Err(BadRequest("repeated Host"));
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket |= comma_list(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= comma_list(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            if key.replace(value).is_some() {
                return Err(BadRequest("repeated Sec-WebSocket-Key"));
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            if version.replace(value).is_some() {
                return Err(BadRequest("repeated Sec-WebSocket-Version"));
            }
        } else if name.eq_ignore_ascii_case("origin") {
            if origin.replace(value).is_some() {
                return Err(BadRequest("repeated Origin"));
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != b"0")
        {
            return Err(BadRequest("a WebSocket handshake has no body"));
        }
    }

    let Some(host) = host else {
        return Err(BadRequest("HTTP/1.1 needs a Host"));
    };
    if !upgrade_websocket {
        return Err(BadRequest("Upgrade does not name websocket"));
    }
    if !connection_upgrade {
        return Err(BadRequest("Connection does not name upgrade"));
    }
    let Some(key) = key else {
        return Err(BadRequest("missing Sec-WebSocket-Key"));
    };
    // Room for 16 bytes only: a longer key fails to fit, a shorter one is
    // caught by the count. The default engine wants canonical padding and no
    // stray low bits, so exactly one spelling of each key passes.
    let mut nonce = [0u8; 16];
    if !matches!(BASE64.decode_slice(key, &mut nonce), Ok(16)) {
        return Err(BadRequest("Sec-WebSocket-Key is not 16 bytes of base64"));
    }
    match version {
        None => return Err(BadRequest("missing Sec-WebSocket-Version")),
        Some(v) if v != VERSION.as_bytes() => return Err(Refusal::UnsupportedVersion),
        Some(_) => {}
    }
    if origin.is_some_and(|origin| !same_origin(origin, host)) {
        return Err(Refusal::CrossOrigin);
    }
    // The base64 alphabet is ASCII, so the key that decoded is text.
    let key = std::str::from_utf8(key).map_err(|_| BadRequest("Sec-WebSocket-Key is not text"))?;
    Ok(Handshake {
        accept: accept_key(key),
    })
}

/// Writes the `101 Switching Protocols` head that accepts `handshake`. No
/// extension and no subprotocol is ever named, so the client gets plain
/// RFC 6455 framing.
pub fn write_switching_protocols(out: &mut Vec<u8>, handshake: &Handshake) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\n\
          Upgrade: websocket\r\n\
          Connection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(handshake.accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Whether the serialized origin `origin` names the authority in `host`.
fn same_origin(origin: &[u8], host: &[u8]) -> bool {
    let (authority, default_port) = if let Some(rest) = strip_prefix_ignore_case(origin, b"http://")
    {
        (rest, &b"80"[..])
    } else if let Some(rest) = strip_prefix_ignore_case(origin, b"https://") {
        (rest, &b"443"[..])
    } else {
        // `null` (sandboxed frames, file: pages) and every other scheme.
        return false;
    };
    match (
        split_authority(authority, default_port),
        split_authority(host, default_port),
    ) {
        (Some((origin_host, origin_port)), Some((host, port))) => {
            origin_host.eq_ignore_ascii_case(host) && origin_port == port
        }
        _ => false,
    }
}

/// Splits `host[:port]` (the host may be a bracketed IPv6 literal) into host
/// and port, the port empty when absent or equal to `default_port`. `None`
/// for anything that is not an authority without userinfo: a serialized
/// origin has no path, and a path or `@` must not be compared around.
fn split_authority<'a>(authority: &'a [u8], default_port: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let (host, port) = if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&b| b == b']')?;
        let (host, after) = authority.split_at(close + 1);
        match after {
            [] => (host, &after[..0]),
            [b':', port @ ..] => (host, port),
            _ => return None,
        }
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => (&authority[..colon], &authority[colon + 1..]),
            None => (authority, &authority[..0]),
        }
    };
    let bad_host = host.is_empty()
        || host
            .iter()
            .any(|&b| matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\') || !b.is_ascii_graphic())
        || (host[0] != b'[' && host.contains(&b':'));
    if bad_host || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // The scheme's default port names the same origin as no port, and an
    // empty port is no port (RFC 3986 §6.2.3): all three compare as empty.
    let port = if port == default_port {
        &port[..0]
    } else {
        port
    };
    Some((host, port))
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// A frame's opcode (RFC 6455 §5.2), the reserved ones excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// The opcode for the low four bits of a frame's first byte; `None` for
    /// the reserved ones (3-7, 0xB-0xF).
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The four bits that stand for this opcode on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One thing the peer said, borrowed from the decoder's buffers until the
/// next `decode` call.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message, all fragments joined; valid UTF-8.
    Text(&'a str),
    /// A whole binary message, all fragments joined.
    Binary(&'a [u8]),
    /// A ping: answer with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (answering a ping, or unsolicited).
    Pong(&'a [u8]),
    /// The peer's close. `code` is `None` for an empty close payload, which
    /// is answered with an empty close too; otherwise it is a
    /// [`valid_close_code`], to echo.
    Close { code: Option<u16>, reason: &'a str },
}

/// A protocol violation: the close code to send (1002, 1007 or 1009) and a
/// reason for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn protocol_error(reason: &'static str) -> Violation {
    Violation {
        code: CLOSE_PROTOCOL_ERROR,
        reason,
    }
}

const UNMASKED: Violation = protocol_error("client frame not masked");
const RESERVED_BITS: Violation = protocol_error("reserved bits set with no extension");
const RESERVED_OPCODE: Violation = protocol_error("reserved opcode");
const FRAGMENTED_CONTROL: Violation = protocol_error("fragmented control frame");
const LONG_CONTROL: Violation = protocol_error("control frame longer than 125 bytes");
const STRAY_CONTINUATION: Violation = protocol_error("continuation without a message");
const INTERRUPTED_MESSAGE: Violation = protocol_error("new message inside a fragmented one");
const HUGE_LENGTH: Violation = protocol_error("frame length with the top bit set");
const SHORT_CLOSE: Violation = protocol_error("close payload of one byte");
const BAD_CLOSE_CODE: Violation = protocol_error("invalid close code");
const TOO_BIG: Violation = Violation {
    code: CLOSE_TOO_BIG,
    reason: "message too large",
};
const BAD_TEXT: Violation = Violation {
    code: CLOSE_INVALID_DATA,
    reason: "text is not UTF-8",
};
const TRUNCATED_TEXT: Violation = Violation {
    code: CLOSE_INVALID_DATA,
    reason: "text ends inside a UTF-8 sequence",
};
const BAD_CLOSE_REASON: Violation = Violation {
    code: CLOSE_INVALID_DATA,
    reason: "close reason is not UTF-8",
};

/// Whether a close code received from a peer is valid (1000-1003, 1007-1011,
/// 3000-4999). 1005, 1006 and 1015 are for reporting, never for the wire;
/// 1012-1014 were registered after RFC 6455 and are refused as well, as no
/// browser sends them.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Which kind of data message is being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opcode: Opcode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes read so far, mod 4: where in the mask the next byte is.
    phase: usize,
}

/// What completed, to be lent out once the state is settled.
#[derive(Debug, Clone, Copy)]
enum Ready {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Closed,
    Failed(Violation),
}

/// A decoder for the frames a client sends, on a connection with no
/// extensions.
///
/// Feed it with [`decode`](Self::decode) whatever has arrived. It holds at
/// most `max_message` bytes of data message plus 125 of control payload and a
/// 14-byte partial header; the message buffer grows as payload arrives, not
/// on the declared length, so a header alone cannot make it allocate.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_message: usize,
    /// The start of a frame header that has not fully arrived.
    spill: [u8; MAX_HEADER],
    spill_len: usize,
    /// The frame whose payload is being read, if past its header.
    frame: Option<Frame>,
    /// The data message in progress, if any (after its first fragment).
    kind: Option<Kind>,
    /// The payload of the data message so far, unmasked.
    message: Vec<u8>,
    /// For text: how much of `message` is known to be whole UTF-8 characters.
    /// What follows is at most three bytes of a character yet to complete.
    valid_up_to: usize,
    /// `message` was lent out by the last call and is cleared by the next.
    delivered: bool,
    /// The payload of the current (or last) control frame, unmasked.
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    end: End,
}

impl Decoder {
    /// A decoder at the start of a connection's frames. `max_message`: the
    /// largest whole message (sum of fragments) accepted; a frame that would
    /// take a message past it fails with 1009.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            spill: [0; MAX_HEADER],
            spill_len: 0,
            frame: None,
            kind: None,
            message: Vec::new(),
            valid_up_to: 0,
            delivered: false,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            end: End::Open,
        }
    }

    /// Consumes a prefix of `input`, returns how many bytes were consumed and
    /// the next whole message, if one completed.
    ///
    /// Call again with the rest of the input until it returns `(n, Ok(None))`,
    /// which it does only having consumed all of it: everything short of a
    /// whole message is kept (a partial header in the spill buffer, payload
    /// unmasked into the message buffer), so nothing needs to be held back and
    /// offered again. A message borrows the decoder until the next call.
    ///
    /// After a [`Violation`], every later call returns the same violation and
    /// consumes nothing: send a close with its code and stop reading. After
    /// [`Message::Close`], every later call consumes all of its input and
    /// returns `Ok(None)`, since a peer may send nothing after its close
    /// (RFC 6455 §5.5.1) and whatever it sends is dropped.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Result<Option<Message<'_>>, Violation>) {
        match self.end {
            End::Open => {}
            End::Closed => return (input.len(), Ok(None)),
            End::Failed(violation) => return (0, Err(violation)),
        }
        if self.delivered {
            self.delivered = false;
            self.release_message();
        }
        let mut at = 0;
        match self.advance(input, &mut at) {
            Ok(Some(ready)) => (at, Ok(Some(self.lend(ready)))),
            Ok(None) => (at, Ok(None)),
            Err(violation) => {
                self.end = End::Failed(violation);
                (at, Err(violation))
            }
        }
    }

    /// Reads headers and payload from `input[*at..]` until a message is whole
    /// or the input is used up.
    fn advance(&mut self, input: &[u8], at: &mut usize) -> Result<Option<Ready>, Violation> {
        loop {
            let Some(mut frame) = self.frame else {
                if !self.read_header(input, at)? {
                    return Ok(None);
                }
                continue;
            };
            if frame.remaining > 0 {
                let available = input.len() - *at;
                if available == 0 {
                    return Ok(None);
                }
                let take = usize::try_from(frame.remaining).map_or(available, |r| r.min(available));
                let payload = &input[*at..*at + take];
                if frame.opcode.is_control() {
                    // remaining started at most 125, so this fits.
                    let start = self.control_len;
                    let room = &mut self.control[start..start + take];
                    room.copy_from_slice(payload);
                    unmask(room, frame.mask, frame.phase);
                    self.control_len += take;
                } else {
                    let start = self.message.len();
                    self.grow_message(take);
                    self.message.extend_from_slice(payload);
                    unmask(&mut self.message[start..], frame.mask, frame.phase);
                    if self.kind == Some(Kind::Text) {
                        self.check_text()?;
                    }
                }
                *at += take;
                frame.phase = (frame.phase + take) % 4;
                frame.remaining -= take as u64;
                self.frame = Some(frame);
                if frame.remaining > 0 {
                    return Ok(None);
                }
            }
            self.frame = None;
            if let Some(ready) = self.finish_frame(frame)? {
                return Ok(Some(ready));
            }
        }
    }

    /// Takes header bytes from `input[*at..]`; once the header is whole, checks
    /// it and starts its frame. `false` when the input ran out first (what
    /// there was is in the spill buffer).
    fn read_header(&mut self, input: &[u8], at: &mut usize) -> Result<bool, Violation> {
        let rest = &input[*at..];
        if self.spill_len == 0 {
            // The usual case: the whole header is in this input.
            if let [_, second, ..] = rest {
                let len = header_len(*second);
                if let Some(header) = rest.get(..len) {
                    self.start_frame(header)?;
                    *at += len;
                    return Ok(true);
                }
            }
        }
        let mut rest = rest;
        let mut fill = |decoder: &mut Decoder, upto: usize, at: &mut usize| {
            let take = (upto - decoder.spill_len).min(rest.len());
            decoder.spill[decoder.spill_len..decoder.spill_len + take]
                .copy_from_slice(&rest[..take]);
            decoder.spill_len += take;
            rest = &rest[take..];
            *at += take;
            decoder.spill_len == upto
        };
        if self.spill_len < 2 {
            if !fill(self, 2, at) {
                return Ok(false);
            }
            // Fail on the first two bytes without waiting for the rest.
            self.check_start(self.spill[0], self.spill[1])?;
        }
        if !fill(self, header_len(self.spill[1]), at) {
            return Ok(false);
        }
        let spill = self.spill;
        self.spill_len = 0;
        self.start_frame(&spill[..header_len(spill[1])])?;
        Ok(true)
    }

    /// The checks that need only a frame's first two bytes; the opcode.
    fn check_start(&self, first: u8, second: u8) -> Result<Opcode, Violation> {
        if first & 0x70 != 0 {
            return Err(RESERVED_BITS);
        }
        let opcode = Opcode::from_bits(first & 0x0f).ok_or(RESERVED_OPCODE)?;
        if second & 0x80 == 0 {
            return Err(UNMASKED);
        }
        let fin = first & 0x80 != 0;
        match opcode {
            _ if opcode.is_control() && !fin => return Err(FRAGMENTED_CONTROL),
            _ if opcode.is_control() && usize::from(second & 0x7f) > MAX_CONTROL_PAYLOAD => {
                return Err(LONG_CONTROL)
            }
            Opcode::Continuation if self.kind.is_none() => return Err(STRAY_CONTINUATION),
            Opcode::Text | Opcode::Binary if self.kind.is_some() => {
                return Err(INTERRUPTED_MESSAGE)
            }
            _ => {}
        }
        Ok(opcode)
    }

    /// Checks a whole frame header and makes its frame the current one.
    fn start_frame(&mut self, header: &[u8]) -> Result<(), Violation> {
        let (first, second) = (header[0], header[1]);
        let opcode = self.check_start(first, second)?;
        let (len, mask_at) = match second & 0x7f {
            126 => (u64::from(u16::from_be_bytes([header[2], header[3]])), 4),
            127 => (
                header[2..10]
                    .iter()
                    .fold(0u64, |len, &byte| len << 8 | u64::from(byte)),
                10,
            ),
            short => (u64::from(short), 2),
        };
        // Lengths that do not use the fewest bytes are accepted: the length is
        // unambiguous either way, and other servers take them too.
        if len >> 63 != 0 {
            return Err(HUGE_LENGTH);
        }
        match opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => self.control_len = 0,
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                // The message buffer holds exactly the earlier fragments now.
                let room = self.max_message - self.message.len();
                if len > room as u64 {
                    return Err(TOO_BIG);
                }
                match opcode {
                    Opcode::Text => self.kind = Some(Kind::Text),
                    Opcode::Binary => self.kind = Some(Kind::Binary),
                    _ => {}
                }
            }
        }
        let mask = [
            header[mask_at],
            header[mask_at + 1],
            header[mask_at + 2],
            header[mask_at + 3],
        ];
        self.frame = Some(Frame {
            opcode,
            fin: first & 0x80 != 0,
            mask,
            remaining: len,
            phase: 0,
        });
        Ok(())
    }

    /// A frame's payload has all arrived: what it completes, if anything.
    fn finish_frame(&mut self, frame: Frame) -> Result<Option<Ready>, Violation> {
        Ok(Some(match frame.opcode {
            Opcode::Ping => Ready::Ping,
            Opcode::Pong => Ready::Pong,
            Opcode::Close => {
                let payload = &self.control[..self.control_len];
                if let [hi, lo, reason @ ..] = payload {
                    if !valid_close_code(u16::from_be_bytes([*hi, *lo])) {
                        return Err(BAD_CLOSE_CODE);
                    }
                    if std::str::from_utf8(reason).is_err() {
                        return Err(BAD_CLOSE_REASON);
                    }
                } else if payload.len() == 1 {
                    return Err(SHORT_CLOSE);
                }
                self.end = End::Closed;
                Ready::Close
            }
            Opcode::Continuation | Opcode::Text | Opcode::Binary if !frame.fin => return Ok(None),
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                let kind = self.kind.take();
                self.delivered = true;
                if kind == Some(Kind::Text) {
                    if self.valid_up_to != self.message.len() {
                        return Err(TRUNCATED_TEXT);
                    }
                    Ready::Text
                } else {
                    Ready::Binary
                }
            }
        }))
    }

    /// The message that `ready` says is complete, borrowed from the buffers.
    fn lend(&self, ready: Ready) -> Message<'_> {
        let control = &self.control[..self.control_len];
        match ready {
            // Checked as it arrived (`check_text`) and whole (`finish_frame`),
            // so the empty fallback is never taken; it spares a panic path.
            Ready::Text => Message::Text(std::str::from_utf8(&self.message).unwrap_or_default()),
            Ready::Binary => Message::Binary(&self.message),
            Ready::Ping => Message::Ping(control),
            Ready::Pong => Message::Pong(control),
            Ready::Close => match control {
                [hi, lo, reason @ ..] => Message::Close {
                    code: Some(u16::from_be_bytes([*hi, *lo])),
                    // Checked in `finish_frame`.
                    reason: std::str::from_utf8(reason).unwrap_or_default(),
                },
                _ => Message::Close {
                    code: None,
                    reason: "",
                },
            },
        }
    }

    /// Validates the text received since the last check. An invalid sequence
    /// fails at once, wherever it is; an incomplete one at the end waits for
    /// the bytes that will complete it (or for the end of the message).
    fn check_text(&mut self) -> Result<(), Violation> {
        match std::str::from_utf8(&self.message[self.valid_up_to..]) {
            Ok(_) => self.valid_up_to = self.message.len(),
            // `error_len` is `None` only when the tail is a prefix of some
            // valid character: overlong forms, surrogates and code points past
            // U+10FFFF are reported as soon as their first impossible byte is.
            Err(error) if error.error_len().is_none() => self.valid_up_to += error.valid_up_to(),
            Err(_) => return Err(BAD_TEXT),
        }
        Ok(())
    }

    /// Makes room for `additional` more message bytes, doubling as a `Vec`
    /// does but never past `max_message` (which the header check guarantees
    /// the message stays within).
    fn grow_message(&mut self, additional: usize) {
        let needed = self.message.len() + additional;
        if needed > self.message.capacity() {
            let target = needed
                .max(self.message.capacity().saturating_mul(2))
                .min(self.max_message);
            self.message.reserve_exact(target - self.message.len());
        }
    }

    /// Forgets the message lent out by the last call.
    fn release_message(&mut self) {
        if self.message.capacity() > RETAINED_CAPACITY {
            self.message = Vec::new();
        } else {
            self.message.clear();
        }
        self.valid_up_to = 0;
    }
}

/// A frame header's length, given its second byte (a masked frame's: the
/// mask is always there, an unmasked frame fails before it matters).
fn header_len(second: u8) -> usize {
    match second & 0x7f {
        126 => 2 + 2 + 4,
        127 => 2 + 8 + 4,
        _ => 2 + 4,
    }
}

/// XORs `bytes` with `mask`, the first byte with `mask[phase]`. Eight bytes at
/// a time: the mask is rotated to the phase once and widened to a word, so the
/// loop has no per-byte index arithmetic and the compiler vectorises it.
fn unmask(bytes: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(phase + i) % 4];
    }
    let word = u64::from_ne_bytes(key);
    let mut chunks = bytes.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(chunk) = <&mut [u8; 8]>::try_from(chunk) {
            *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
        }
    }
    // Eight is a multiple of four, so the tail starts at the same phase.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// Appends a server frame: FIN set, never masked (RFC 6455 §5.1), the length
/// in the fewest bytes. A control frame's payload must be at most 125 bytes.
pub fn write_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    debug_assert!(!opcode.is_control() || payload.len() <= MAX_CONTROL_PAYLOAD);
    out.reserve(10 + payload.len());
    out.push(0x80 | opcode.bits());
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason`, the reason cut to the 123
/// bytes that fit (at a character boundary, so it stays UTF-8). `code` must be
/// one that may be sent: never 1005, 1006 or 1015. To answer an empty close,
/// write an empty close frame with [`write_frame`] instead.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    debug_assert!(!matches!(code, 1005 | 1006 | 1015));
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, Opcode::Close, &payload[..2 + end]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A message with its own bytes, to compare across decoder calls.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    impl From<Message<'_>> for Owned {
        fn from(message: Message<'_>) -> Owned {
            match message {
                Message::Text(text) => Owned::Text(text.to_owned()),
                Message::Binary(data) => Owned::Binary(data.to_vec()),
                Message::Ping(data) => Owned::Ping(data.to_vec()),
                Message::Pong(data) => Owned::Pong(data.to_vec()),
                Message::Close { code, reason } => Owned::Close(code, reason.to_owned()),
            }
        }
    }

    /// Feeds `pieces` in turn as a connection would, checking that `Ok(None)`
    /// comes only with all of a piece consumed. The messages and, if one came,
    /// the violation.
    fn feed(decoder: &mut Decoder, pieces: &[&[u8]]) -> (Vec<Owned>, Option<Violation>) {
        let mut messages = Vec::new();
        for piece in pieces {
            let mut rest = *piece;
            loop {
                let (used, result) = decoder.decode(rest);
                assert!(used <= rest.len());
                let done = match result {
                    Ok(Some(message)) => {
                        messages.push(Owned::from(message));
                        false
                    }
                    Ok(None) => {
                        assert_eq!(used, rest.len(), "Ok(None) left input unconsumed");
                        true
                    }
                    Err(violation) => return (messages, Some(violation)),
                };
                rest = &rest[used..];
                if done {
                    break;
                }
            }
        }
        (messages, None)
    }

    fn decode_all(max: usize, input: &[u8]) -> (Vec<Owned>, Option<Violation>) {
        feed(&mut Decoder::new(max), &[input])
    }

    /// Cuts `input` into pieces whose lengths cycle through `sizes`.
    fn split<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut rest = input;
        let mut size = sizes.iter().cycle();
        while !rest.is_empty() {
            let len = size.next().copied().unwrap_or(1).clamp(1, rest.len());
            pieces.push(&rest[..len]);
            rest = &rest[len..];
        }
        pieces
    }

    /// Which length encoding a test frame uses: the shortest, or a longer one
    /// (legal to decode, never written by `write_frame`).
    #[derive(Debug, Clone, Copy)]
    enum LenForm {
        Shortest,
        Sixteen,
        SixtyFour,
    }

    /// A client frame as a browser would send it: `first` is the whole first
    /// byte (FIN, RSV, opcode), `mask` `None` for an (illegal) unmasked one.
    fn raw_frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8], form: LenForm) -> Vec<u8> {
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut out = vec![first];
        let len = payload.len();
        match form {
            LenForm::Shortest if len <= 125 => out.push(mask_bit | len as u8),
            LenForm::Shortest | LenForm::Sixteen if len <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame with FIN set to `fin` and opcode `opcode`.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let first = if fin { 0x80 } else { 0 } | opcode;
        raw_frame(first, Some(MASK), payload, LenForm::Shortest)
    }

    fn violation_of(max: usize, input: &[u8]) -> Option<Violation> {
        decode_all(max, input).1
    }

    fn code_of(input: &[u8]) -> Option<u16> {
        violation_of(1 << 20, input).map(|v| v.code)
    }

    // ---- handshake ----

    const CHROME: &str = "GET /chat HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://server.example.com\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

    /// A handshake with the given fields (each `Name: value\r\n`) after the
    /// request line.
    fn handshake(fields: &str) -> Result<Handshake, Refusal> {
        check_handshake(format!("GET / HTTP/1.1\r\n{fields}\r\n").as_bytes())
    }

    const GOOD: &str = "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn bad(reason: &'static str) -> Result<Handshake, Refusal> {
        Err(Refusal::BadRequest(reason))
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_browser_handshake_is_accepted() {
        let accepted = Handshake {
            accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
        };
        assert_eq!(check_handshake(CHROME.as_bytes()), Ok(accepted.clone()));
        assert_eq!(handshake(GOOD), Ok(accepted.clone()));
        // Firefox, and tokens in any case, in lists, with odd spacing.
        let firefox = "Host: h\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\n\
            sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \r\nSec-WebSocket-Version: 13\r\n";
        assert_eq!(handshake(firefox), Ok(accepted.clone()));
        let lists = "Host: h\r\nUpgrade: h2c, websocket\r\nConnection: close,,upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        assert_eq!(handshake(lists), Ok(accepted.clone()));
        // The tokens may come in repeated fields too.
        let repeated =
            "Host: h\r\nUpgrade: h2c\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\
            Connection: upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n";
        assert_eq!(handshake(repeated), Ok(accepted));
    }

    #[test]
    fn the_request_line_must_be_get_over_http11() {
        let post = format!("POST / HTTP/1.1\r\n{GOOD}\r\n");
        assert_eq!(
            check_handshake(post.as_bytes()),
            bad("a WebSocket handshake must be a GET")
        );
        let old = format!("GET / HTTP/1.0\r\n{GOOD}\r\n");
        assert_eq!(
            check_handshake(old.as_bytes()),
            bad("a WebSocket handshake needs HTTP/1.1")
        );
        let partial = format!("GET / HTTP/1.1\r\n{GOOD}");
        assert_eq!(
            check_handshake(partial.as_bytes()),
            bad("incomplete request head")
        );
        assert_eq!(
            check_handshake(b"GET / HTTP/1.1\r\nHost h\r\n\r\n"),
            bad("malformed request head")
        );
        let many = format!(
            "GET / HTTP/1.1\r\n{GOOD}{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS)
        );
        assert_eq!(
            check_handshake(many.as_bytes()),
            bad("too many header fields")
        );
    }

    #[test]
    fn host_upgrade_and_connection_are_required() {
        let without = |name: &str| {
            let fields: String = GOOD
                .split_inclusive("\r\n")
                .filter(|line| !line.starts_with(name))
                .collect();
            handshake(&fields)
        };
        assert_eq!(without("Host"), bad("HTTP/1.1 needs a Host"));
        assert_eq!(
            handshake(&format!("{GOOD}Host: h\r\n")),
            bad("repeated Host")
        );
        assert_eq!(without("Upgrade"), bad("Upgrade does not name websocket"));
        assert_eq!(
            without("Connection"),
            bad("Connection does not name upgrade")
        );
        for (upgrade, connection) in [
            ("websockets", "Upgrade"),
            ("websocket/13", "Upgrade"),
            ("h2c", "Upgrade"),
            ("websocket", "upgraded"),
            ("websocket", "keep-alive"),
            ("websocket", "Upgrade keep-alive"),
        ] {
            let fields = format!(
                "Host: h\r\nUpgrade: {upgrade}\r\nConnection: {connection}\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            );
            assert_eq!(
                handshake(&fields).map_err(Refusal::status_code),
                Err(400),
                "{upgrade} / {connection}"
            );
        }
    }

    #[test]
    fn the_key_must_be_16_bytes_of_canonical_base64() {
        let with_key = |key: &str| {
            handshake(&format!(
                "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            ))
        };
        assert!(with_key("AAAAAAAAAAAAAAAAAAAAAA==").is_ok());
        for key in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",     // no padding
            "dGhlIHNhbXBsZSBub25jZR==",   // stray low bits
            "dGhlIHNhbXBsZSBub25j",       // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ==AA", // too long
            "AAAAAAAAAAAAAAAAAAAAAAA=",   // 17 bytes
            "AAAAAAAAAAAAAAAAAAAAAAAA",   // 18 bytes
            "dGhlIHNhbXBsZSBub25jZQ-_",   // URL-safe alphabet
            "dGhlIHNhbXBs ZSBub25jZQ==",  // inner space
            "dGhlIHNhbXBsZSBub25jZQ==,dGhlIHNhbXBsZSBub25jZQ==",
        ] {
            assert_eq!(
                with_key(key),
                bad("Sec-WebSocket-Key is not 16 bytes of base64"),
                "{key:?}"
            );
        }
        let fields: String = GOOD
            .split_inclusive("\r\n")
            .filter(|line| !line.starts_with("Sec-WebSocket-Key"))
            .collect();
        assert_eq!(handshake(&fields), bad("missing Sec-WebSocket-Key"));
        assert_eq!(
            handshake(&format!(
                "{GOOD}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            )),
            bad("repeated Sec-WebSocket-Key")
        );
    }

    #[test]
    fn only_version_13_is_spoken() {
        let with_version = |version: &str| {
            handshake(&format!(
                "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{version}"
            ))
        };
        assert!(with_version("Sec-WebSocket-Version: 13\r\n").is_ok());
        for version in ["8", "12", "14", "13, 8", "013", ""] {
            assert_eq!(
                with_version(&format!("Sec-WebSocket-Version: {version}\r\n")),
                Err(Refusal::UnsupportedVersion),
                "{version:?}"
            );
        }
        assert_eq!(with_version(""), bad("missing Sec-WebSocket-Version"));
        assert_eq!(
            with_version("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n"),
            bad("repeated Sec-WebSocket-Version")
        );
    }

    #[test]
    fn a_handshake_has_no_body() {
        for field in [
            "Content-Length: 5\r\n",
            "Content-Length: 00\r\n",
            "Transfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(
                handshake(&format!("{GOOD}{field}")),
                bad("a WebSocket handshake has no body"),
                "{field:?}"
            );
        }
    }

    #[test]
    fn the_origin_must_be_the_host() {
        let with = |host: &str, origin: &str| {
            handshake(&format!(
                "Host: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                 Origin: {origin}\r\n"
            ))
            .is_ok()
        };
        for (host, origin) in [
            ("example.com", "http://example.com"),
            ("example.com", "https://example.com"),
            ("Example.COM", "HTTP://example.com"),
            ("example.com:8080", "http://example.com:8080"),
            ("example.com", "http://example.com:80"),
            ("example.com:80", "http://example.com"),
            ("example.com:443", "https://example.com"),
            ("example.com", "https://example.com:443"),
            ("example.com:", "http://example.com"),
            ("127.0.0.1:4000", "http://127.0.0.1:4000"),
            ("[::1]:4000", "http://[::1]:4000"),
            ("[::1]", "http://[::1]:80"),
        ] {
            assert!(with(host, origin), "{host} / {origin} refused");
        }
        for (host, origin) in [
            ("example.com", "null"),
            ("example.com", "http://evil.example"),
            ("example.com", "http://example.com.evil.example"),
            ("example.com", "http://evil.example/example.com"),
            ("example.com", "http://example.com/"),
            ("example.com", "http://example.com:8080"),
            ("example.com:8080", "http://example.com"),
            ("example.com:80", "https://example.com"),
            ("example.com:443", "http://example.com"),
            ("example.com", "http://user@example.com"),
            ("example.com", "ws://example.com"),
            ("example.com", "file://example.com"),
            ("example.com", "example.com"),
            ("example.com", "http://"),
            ("example.com", ""),
            ("example.com", "http://example.com:8o"),
            ("[::1]:4000", "http://[::1]4000"),
            ("[::1]:4000", "http://::1:4000"),
            ("::1:4000", "http://::1:4000"),
            ("[::1]:4000", "http://[::2]:4000"),
        ] {
            assert_eq!(
                handshake(&format!(
                    "Host: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n"
                )),
                Err(Refusal::CrossOrigin),
                "{host} / {origin} accepted"
            );
        }
        assert_eq!(
            handshake(&format!(
                "{GOOD}Origin: http://h\r\nOrigin: http://evil.example\r\n"
            )),
            bad("repeated Origin")
        );
    }

    #[test]
    fn refusals_carry_their_status() {
        assert_eq!(Refusal::BadRequest("x").status_code(), 400);
        assert_eq!(Refusal::BadRequest("x").reason(), "x");
        assert_eq!(Refusal::BadRequest("x").header(), None);
        assert_eq!(Refusal::UnsupportedVersion.status_code(), 426);
        assert_eq!(
            Refusal::UnsupportedVersion.header(),
            Some(("Sec-WebSocket-Version", "13"))
        );
        assert_eq!(Refusal::CrossOrigin.status_code(), 403);
        assert_eq!(Refusal::CrossOrigin.header(), None);
        assert!(!Refusal::CrossOrigin.reason().is_empty());
        assert!(!Refusal::UnsupportedVersion.reason().is_empty());
    }

    #[test]
    fn switching_protocols_head() {
        let Ok(handshake) = check_handshake(CHROME.as_bytes()) else {
            panic!("the RFC's handshake was refused");
        };
        let mut out = b"x".to_vec();
        write_switching_protocols(&mut out, &handshake);
        assert_eq!(
            &out[1..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        assert_eq!(
            response.parse(&out[1..]),
            Ok(httparse::Status::Complete(out.len() - 1))
        );
        assert_eq!(response.code, Some(101));
        assert!(response.headers.iter().all(|h| !h
            .name
            .to_ascii_lowercase()
            .contains("extension")
            && !h.name.to_ascii_lowercase().contains("protocol")));
    }

    // ---- frames: the RFC's examples ----

    #[test]
    fn rfc_example_frames() {
        // §5.7: a single-frame masked text message.
        let masked_hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(100, &masked_hello),
            (vec![Owned::Text("Hello".into())], None)
        );
        assert_eq!(frame(true, 1, b"Hello"), masked_hello);
        // The unmasked one is what a server sends, and a client must not.
        let unmasked_hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(violation_of(100, &unmasked_hello), Some(UNMASKED));
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Text, b"Hello");
        assert_eq!(out, unmasked_hello);
        // A fragmented text message, masked as a client sends it.
        let mut fragmented = frame(false, 1, b"Hel");
        fragmented.extend(frame(true, 0, b"lo"));
        assert_eq!(
            decode_all(100, &fragmented),
            (vec![Owned::Text("Hello".into())], None)
        );
        assert_eq!(
            violation_of(100, &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]),
            Some(UNMASKED)
        );
        // An unmasked ping (server to client) and the masked pong answer.
        out.clear();
        write_frame(&mut out, Opcode::Ping, b"Hello");
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(100, &pong),
            (vec![Owned::Pong(b"Hello".to_vec())], None)
        );
        assert_eq!(
            decode_all(100, &frame(true, 9, b"Hello")),
            (vec![Owned::Ping(b"Hello".to_vec())], None)
        );
        // 256 bytes and 64 KiB in one unmasked binary frame.
        out.clear();
        write_frame(&mut out, Opcode::Binary, &[7; 256]);
        assert_eq!(out[..4], [0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        out.clear();
        write_frame(&mut out, Opcode::Binary, &[7; 65536]);
        assert_eq!(out[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(out.len(), 10 + 65536);
    }

    #[test]
    fn written_lengths_use_the_fewest_bytes() {
        for (len, header) in [
            (0, &[0x82, 0][..]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0, 126]),
            (0xffff, &[0x82, 126, 0xff, 0xff]),
            (0x10000, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = vec![b'x'];
            write_frame(&mut out, Opcode::Binary, &vec![0; len]);
            assert_eq!(&out[1..1 + header.len()], header, "{len}");
            assert_eq!(out.len(), 1 + header.len() + len);
        }
        let mut out = Vec::new();
        write_frame(&mut out, Opcode::Pong, b"");
        write_frame(&mut out, Opcode::Close, b"");
        assert_eq!(out, [0x8a, 0, 0x88, 0]);
    }

    // ---- frames: the rules ----

    #[test]
    fn client_frames_must_be_masked() {
        for opcode in [0x1, 0x2, 0x8, 0x9, 0xa] {
            let frame = raw_frame(0x80 | opcode, None, b"hi", LenForm::Shortest);
            assert_eq!(violation_of(100, &frame), Some(UNMASKED), "{opcode}");
        }
        // Refused on the first two bytes, before any more arrive.
        let mut decoder = Decoder::new(100);
        assert_eq!(decoder.decode(&[0x82]), (1, Ok(None)));
        assert_eq!(decoder.decode(&[0x7f]).1, Err(UNMASKED));
    }

    #[test]
    fn reserved_bits_fail() {
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            for opcode in [0x1, 0x2, 0x9] {
                let frame = raw_frame(0x80 | rsv | opcode, Some(MASK), b"x", LenForm::Shortest);
                assert_eq!(violation_of(100, &frame), Some(RESERVED_BITS));
            }
        }
    }

    #[test]
    fn reserved_opcodes_fail() {
        for opcode in (0x3..=0x7).chain(0xb..=0xf) {
            assert_eq!(
                violation_of(100, &frame(true, opcode, b"")),
                Some(RESERVED_OPCODE),
                "{opcode:x}"
            );
            // Also after a good message and between fragments.
            let mut input = frame(true, 1, b"ok");
            input.extend(frame(false, 2, b"a"));
            input.extend(frame(true, opcode, b""));
            let (messages, violation) = decode_all(100, &input);
            assert_eq!(messages, [Owned::Text("ok".into())]);
            assert_eq!(violation, Some(RESERVED_OPCODE));
        }
    }

    #[test]
    fn control_frames_are_short_and_whole() {
        for opcode in [0x8, 0x9, 0xa] {
            assert_eq!(
                violation_of(1000, &frame(false, opcode, b"")),
                Some(FRAGMENTED_CONTROL)
            );
            assert_eq!(
                violation_of(1000, &frame(true, opcode, &[b'a'; 126])),
                Some(LONG_CONTROL)
            );
            // 125 bytes sent in the 16-bit form is still too long a form.
            let long_form = raw_frame(0x80 | opcode, Some(MASK), &[b'a'; 125], LenForm::Sixteen);
            assert_eq!(violation_of(1000, &long_form), Some(LONG_CONTROL));
        }
        let mut payload = vec![0x03, 0xe8];
        payload.extend([b'r'; 123]);
        assert_eq!(
            decode_all(1000, &frame(true, 0x8, &payload)),
            (vec![Owned::Close(Some(1000), "r".repeat(123))], None)
        );
        assert_eq!(
            decode_all(1000, &frame(true, 0x9, &[9; 125])),
            (vec![Owned::Ping(vec![9; 125])], None)
        );
    }

    #[test]
    fn control_frames_may_come_between_fragments() {
        let mut input = frame(false, 1, b"fr");
        input.extend(frame(true, 0x9, b"p1"));
        input.extend(frame(false, 0, b"ag"));
        input.extend(frame(true, 0xa, b""));
        input.extend(frame(true, 0x9, b"p2"));
        input.extend(frame(true, 0, b"ments"));
        input.extend(frame(true, 0x2, b"\x00\xff"));
        let expected = vec![
            Owned::Ping(b"p1".to_vec()),
            Owned::Pong(vec![]),
            Owned::Ping(b"p2".to_vec()),
            Owned::Text("fragments".into()),
            Owned::Binary(vec![0, 0xff]),
        ];
        assert_eq!(decode_all(100, &input), (expected.clone(), None));
        assert_eq!(
            feed(&mut Decoder::new(100), &split(&input, &[1])),
            (expected, None)
        );
        // A close between fragments ends it all; the message is dropped.
        let mut input = frame(false, 2, b"ab");
        input.extend(frame(true, 0x8, b""));
        input.extend(frame(true, 0, b"cd"));
        assert_eq!(
            decode_all(100, &input),
            (vec![Owned::Close(None, String::new())], None)
        );
    }

    #[test]
    fn fragmentation_must_be_well_nested() {
        assert_eq!(
            violation_of(100, &frame(true, 0, b"x")),
            Some(STRAY_CONTINUATION)
        );
        assert_eq!(
            violation_of(100, &frame(false, 0, b"x")),
            Some(STRAY_CONTINUATION)
        );
        // After a whole message, a continuation is stray again.
        let mut input = frame(true, 1, b"a");
        input.extend(frame(true, 0, b"b"));
        assert_eq!(violation_of(100, &input), Some(STRAY_CONTINUATION));
        for (first, second) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            let mut input = frame(false, first, b"a");
            input.extend(frame(true, second, b"b"));
            assert_eq!(violation_of(100, &input), Some(INTERRUPTED_MESSAGE));
        }
        // An empty message, fragmented or not, is a message.
        let mut input = frame(false, 2, b"");
        input.extend(frame(false, 0, b""));
        input.extend(frame(true, 0, b""));
        input.extend(frame(true, 1, b""));
        assert_eq!(
            decode_all(0, &input),
            (
                vec![Owned::Binary(vec![]), Owned::Text(String::new())],
                None
            )
        );
    }

    #[test]
    fn a_length_with_the_top_bit_fails() {
        let mut input = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        input.extend(MASK);
        assert_eq!(violation_of(usize::MAX, &input), Some(HUGE_LENGTH));
        input[2] = 0x7f;
        assert_eq!(violation_of(1 << 20, &input), Some(TOO_BIG));
        // usize::MAX as a limit cannot overflow the check.
        let mut decoder = Decoder::new(usize::MAX);
        assert_eq!(decoder.decode(&input), (14, Ok(None)));
        assert!(decoder.message.capacity() < 1 << 20);
    }

    #[test]
    fn the_size_limit_is_checked_on_the_declared_length() {
        // Only the header of an oversized frame: refused before its payload.
        let header = &frame(true, 2, &[0; 101])[..6];
        let mut decoder = Decoder::new(100);
        assert_eq!(decoder.decode(header).1, Err(TOO_BIG));
        assert_eq!(decoder.message.capacity(), 0);
        // Exactly the limit is fine, in one frame or in fragments.
        assert_eq!(
            decode_all(100, &frame(true, 2, &[1; 100])),
            (vec![Owned::Binary(vec![1; 100])], None)
        );
        let mut input = frame(false, 1, &[b'a'; 60]);
        input.extend(frame(true, 0, &[b'b'; 40]));
        let (messages, violation) = decode_all(100, &input);
        assert_eq!((messages.len(), violation), (1, None));
        // One more byte over the fragments fails at the second header.
        let mut input = frame(false, 1, &[b'a'; 60]);
        input.extend(frame(true, 0x9, b"ping"));
        input.extend(&frame(true, 0, &[b'b'; 41])[..8]);
        assert_eq!(
            decode_all(100, &input),
            (vec![Owned::Ping(b"ping".to_vec())], Some(TOO_BIG))
        );
        // Control payloads do not count against the limit.
        assert_eq!(
            decode_all(0, &frame(true, 0x9, &[1; 125])),
            (vec![Owned::Ping(vec![1; 125])], None)
        );
        assert_eq!(violation_of(0, &frame(true, 1, b"a")), Some(TOO_BIG));
    }

    #[test]
    fn long_and_non_minimal_lengths_decode() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let input = raw_frame(0x82, Some([1, 2, 3, 4]), &payload, LenForm::Shortest);
        assert_eq!(input[1], 0x80 | 127);
        assert_eq!(
            decode_all(1 << 20, &input),
            (vec![Owned::Binary(payload.clone())], None)
        );
        assert_eq!(
            feed(&mut Decoder::new(1 << 20), &split(&input, &[997, 1, 13])),
            (vec![Owned::Binary(payload)], None)
        );
        for form in [LenForm::Sixteen, LenForm::SixtyFour] {
            let input = raw_frame(0x81, Some(MASK), b"short", form);
            assert_eq!(
                decode_all(100, &input),
                (vec![Owned::Text("short".into())], None)
            );
        }
    }

    #[test]
    fn a_header_may_be_cut_anywhere() {
        for form in [LenForm::Shortest, LenForm::Sixteen, LenForm::SixtyFour] {
            let mut input = raw_frame(0x81, Some([9, 8, 7, 6]), b"abc", form);
            input.extend(raw_frame(0x82, Some([1, 0, 0, 1]), &[5; 300], form));
            let expected = vec![Owned::Text("abc".into()), Owned::Binary(vec![5; 300])];
            for cut in 0..=input.len() {
                let (first, second) = input.split_at(cut);
                assert_eq!(
                    feed(&mut Decoder::new(1000), &[first, second]),
                    (expected.clone(), None),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn a_message_ends_exactly_at_the_input_end() {
        let input = frame(true, 2, b"abc");
        let mut decoder = Decoder::new(100);
        let (used, result) = decoder.decode(&input);
        assert_eq!(
            (used, result),
            (input.len(), Ok(Some(Message::Binary(b"abc"))))
        );
        assert_eq!(decoder.decode(&[]), (0, Ok(None)));
        assert!(decoder.message.is_empty());
        // Two messages in one input come one per call.
        let mut input = frame(true, 1, b"one");
        input.extend(frame(true, 1, b"two"));
        let (used, result) = decoder.decode(&input);
        assert_eq!((used, result), (9, Ok(Some(Message::Text("one")))));
        let (used, result) = decoder.decode(&input[9..]);
        assert_eq!((used, result), (9, Ok(Some(Message::Text("two")))));
        assert_eq!(decoder.decode(&[]), (0, Ok(None)));
    }

    #[test]
    fn after_a_violation_it_stays_failed() {
        let mut decoder = Decoder::new(100);
        let good = frame(true, 1, b"hi");
        assert_eq!(decoder.decode(&[0x83, 0x80]).1, Err(RESERVED_OPCODE));
        assert_eq!(decoder.decode(&good), (0, Err(RESERVED_OPCODE)));
        assert_eq!(decoder.decode(&[]), (0, Err(RESERVED_OPCODE)));
    }

    #[test]
    fn after_a_close_the_rest_is_dropped() {
        let mut input = frame(true, 0x8, &[0x03, 0xe9, b'b', b'y', b'e']);
        input.extend(frame(true, 1, b"late"));
        input.extend([0xff; 10]);
        let mut decoder = Decoder::new(100);
        let (used, result) = decoder.decode(&input);
        assert_eq!(
            (used, result),
            (
                11,
                Ok(Some(Message::Close {
                    code: Some(1001),
                    reason: "bye"
                }))
            )
        );
        assert_eq!(
            decoder.decode(&input[used..]),
            (input.len() - used, Ok(None))
        );
        assert_eq!(decoder.decode(b"more"), (4, Ok(None)));
    }

    // ---- close payloads ----

    #[test]
    fn close_codes() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ];
        let invalid = [
            0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000,
            65535,
        ];
        for code in valid {
            assert!(valid_close_code(code), "{code}");
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice("fin ✓".as_bytes());
            assert_eq!(
                decode_all(100, &frame(true, 0x8, &payload)),
                (vec![Owned::Close(Some(code), "fin ✓".into())], None)
            );
        }
        for code in invalid {
            assert!(!valid_close_code(code), "{code}");
            assert_eq!(
                violation_of(100, &frame(true, 0x8, &code.to_be_bytes())),
                Some(BAD_CLOSE_CODE),
                "{code}"
            );
        }
        let count = (0..=u16::MAX).filter(|&c| valid_close_code(c)).count();
        assert_eq!(count, 4 + 5 + 2000);
    }

    #[test]
    fn close_payload_rules() {
        assert_eq!(
            decode_all(100, &frame(true, 0x8, b"")),
            (vec![Owned::Close(None, String::new())], None)
        );
        assert_eq!(
            violation_of(100, &frame(true, 0x8, &[0x03])),
            Some(SHORT_CLOSE)
        );
        assert_eq!(
            decode_all(100, &frame(true, 0x8, &[0x03, 0xe8])),
            (vec![Owned::Close(Some(1000), String::new())], None)
        );
        for reason in [&b"\xff"[..], b"ok\xce", b"\xed\xa0\x80", b"\xc0\x80"] {
            let mut payload = vec![0x03, 0xe8];
            payload.extend_from_slice(reason);
            assert_eq!(
                violation_of(100, &frame(true, 0x8, &payload)),
                Some(BAD_CLOSE_REASON),
                "{reason:?}"
            );
        }
        // An invalid code is reported before an invalid reason.
        assert_eq!(
            violation_of(100, &frame(true, 0x8, b"\x00\x00\xff")),
            Some(BAD_CLOSE_CODE)
        );
    }

    #[test]
    fn write_close_fits_the_reason_on_a_char_boundary() {
        let decode_close = |out: &[u8]| {
            // A server frame, unmasked: re-mask it to read it back.
            assert_eq!(out[0], 0x88);
            let len = usize::from(out[1]);
            assert_eq!(out.len(), 2 + len);
            assert!(len <= 125);
            decode_all(0, &frame(true, 0x8, &out[2..])).0
        };
        let mut out = Vec::new();
        write_close(&mut out, 1000, "");
        assert_eq!(out, [0x88, 2, 0x03, 0xe8]);
        for (reason, kept) in [
            ("a".repeat(123), 123),
            ("a".repeat(124), 123),
            ("é".repeat(100), 122),
            (format!("{}€", "a".repeat(121)), 121),
            (format!("{}😀", "a".repeat(120)), 120),
            (format!("{}😀", "a".repeat(119)), 123),
        ] {
            out.clear();
            write_close(&mut out, 1001, &reason);
            assert_eq!(
                decode_close(&out),
                [Owned::Close(Some(1001), reason[..kept].to_owned())]
            );
        }
    }

    // ---- UTF-8 ----

    #[test]
    fn invalid_text_fails_with_1007() {
        for text in [
            &b"\xff"[..],
            b"\xfe",
            b"\x80",
            b"a\xbfb",
            b"\xc0\xaf",                 // overlong '/'
            b"\xc1\xbf",                 // overlong
            b"\xe0\x80\xaf",             // overlong '/'
            b"\xe0\x9f\xbf",             // overlong U+07FF
            b"\xf0\x80\x80\xaf",         // overlong '/'
            b"\xf0\x8f\xbf\xbf",         // overlong U+FFFF
            b"\xed\xa0\x80",             // U+D800
            b"\xed\xbf\xbf",             // U+DFFF
            b"\xed\xa0\x80\xed\xb0\x80", // a surrogate pair (CESU-8)
            b"\xf4\x90\x80\x80",         // U+110000
            b"\xf5\x80\x80\x80",
            b"\xf8\x88\x80\x80\x80", // five bytes
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        ] {
            assert_eq!(
                code_of(&frame(true, 1, text)),
                Some(CLOSE_INVALID_DATA),
                "{text:x?}"
            );
            // Binary is not checked.
            assert_eq!(code_of(&frame(true, 2, text)), None);
        }
        // Valid edge cases.
        for text in [
            "\u{7f}",
            "\u{80}",
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{fffd}",
            "\u{ffff}",
            "\u{10000}",
            "\u{10ffff}",
            "κόσμε",
        ] {
            assert_eq!(
                decode_all(100, &frame(true, 1, text.as_bytes())),
                (vec![Owned::Text(text.into())], None)
            );
        }
    }

    #[test]
    fn a_character_may_span_fragments_and_reads() {
        let smile = "😀".as_bytes();
        for cut in 1..smile.len() {
            let mut input = frame(false, 1, &[b"a", &smile[..cut]].concat());
            input.extend(frame(true, 0x9, b""));
            input.extend(frame(true, 0, &[&smile[cut..], b"b"].concat()));
            let expected = vec![Owned::Ping(vec![]), Owned::Text("a😀b".into())];
            assert_eq!(decode_all(100, &input), (expected.clone(), None));
            assert_eq!(
                feed(&mut Decoder::new(100), &split(&input, &[1])),
                (expected, None),
                "cut at {cut}"
            );
            // Three fragments of one character.
            let mut input = frame(false, 1, &smile[..1]);
            input.extend(frame(false, 0, &smile[1..3]));
            input.extend(frame(true, 0, &smile[3..]));
            assert_eq!(
                decode_all(100, &input),
                (vec![Owned::Text("😀".into())], None)
            );
        }
    }

    #[test]
    fn invalid_text_fails_in_the_first_fragment() {
        // The first fragment alone is refused: no need for the rest.
        let first = frame(false, 1, b"ok \xff and more");
        let mut decoder = Decoder::new(100);
        assert_eq!(decoder.decode(&first).1, Err(BAD_TEXT));
        // A sequence that cannot be completed fails too, before its end.
        for bad in [
            &b"\xed\xa0"[..],
            b"\xf4\x90",
            b"\xe0\x80",
            b"\xc0",
            b"\xf0\x8f",
        ] {
            let mut decoder = Decoder::new(100);
            assert_eq!(
                decoder.decode(&frame(false, 1, bad)).1,
                Err(BAD_TEXT),
                "{bad:x?}"
            );
        }
    }

    #[test]
    fn invalid_text_fails_mid_frame() {
        // A frame of 20 declared bytes: the bad byte is reported as it
        // arrives, long before the frame is whole.
        let input = frame(true, 1, b"abc\xffdefghijklmnopq");
        let mut decoder = Decoder::new(100);
        assert_eq!(decoder.decode(&input[..6 + 3]), (9, Ok(None)));
        assert_eq!(decoder.decode(&input[9..10]).1, Err(BAD_TEXT));
        // An incomplete character at the end of a read waits for the next.
        let input = frame(true, 1, "ab€".as_bytes());
        let mut decoder = Decoder::new(100);
        assert_eq!(decoder.decode(&input[..6 + 3]), (9, Ok(None)));
        assert_eq!(
            decoder.decode(&input[9..]).1,
            Ok(Some(Message::Text("ab€")))
        );
    }

    #[test]
    fn text_cannot_end_inside_a_character() {
        for tail in [&b"\xe2\x82"[..], b"\xf0", b"\xf0\x9f\x98", b"\xce"] {
            let text = [b"ok", tail].concat();
            assert_eq!(
                violation_of(100, &frame(true, 1, &text)),
                Some(TRUNCATED_TEXT),
                "{tail:x?}"
            );
            let mut input = frame(false, 1, &text);
            input.extend(frame(true, 0, b""));
            assert_eq!(violation_of(100, &input), Some(TRUNCATED_TEXT));
        }
    }

    // ---- the decoder's internals ----

    #[test]
    fn unmask_matches_the_definition_at_every_phase() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for phase in 0..4 {
            for len in 0..40 {
                let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(31)).collect();
                let mut fast = data.clone();
                unmask(&mut fast, mask, phase);
                let slow: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(phase + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "phase {phase} len {len}");
            }
        }
    }

    #[test]
    fn the_message_buffer_stays_within_the_limit() {
        let limit = 100_000;
        let payload = vec![3u8; limit];
        let input = frame(true, 2, &payload);
        let mut decoder = Decoder::new(limit);
        for piece in split(&input, &[1000, 7, 4096]) {
            let (used, _) = decoder.decode(piece);
            assert_eq!(used, piece.len());
            assert!(decoder.message.capacity() <= limit);
        }
        assert_eq!(decoder.message.len(), limit);
        // A big buffer is freed once the message is taken, a small one kept.
        assert_eq!(decoder.decode(&[]), (0, Ok(None)));
        assert_eq!(decoder.message.capacity(), 0);
        let mut decoder = Decoder::new(limit);
        let _ = decoder.decode(&frame(true, 2, &[1; 1000]));
        let _ = decoder.decode(&[]);
        assert!(decoder.message.capacity() >= 1000);
        assert!(decoder.message.is_empty());
    }

    #[test]
    fn opcode_bits_round_trip() {
        for bits in 0..16 {
            match Opcode::from_bits(bits) {
                Some(opcode) => assert_eq!(opcode.bits(), bits),
                None => assert!(matches!(bits, 3..=7 | 0xb..=0xf)),
            }
        }
        assert!(Opcode::Close.is_control() && !Opcode::Continuation.is_control());
    }

    // ---- properties ----

    /// One thing a client sends in a generated stream.
    #[derive(Debug, Clone)]
    enum Item {
        /// A data message, cut into fragments at `cuts` (byte offsets, so a
        /// text message may be cut inside a character), with a control frame
        /// after some fragments.
        Data {
            text: bool,
            payload: Vec<u8>,
            cuts: Vec<usize>,
            between: Vec<Option<(bool, Vec<u8>)>>,
        },
        /// A ping (`true`) or a pong on its own.
        Control(bool, Vec<u8>),
    }

    fn item() -> impl Strategy<Value = Item> {
        let control = (any::<bool>(), prop::collection::vec(any::<u8>(), 0..=125));
        prop_oneof![
            3 => (
                any::<bool>(),
                prop_oneof![
                    ".{0,40}".prop_map(String::into_bytes),
                    prop::collection::vec(any::<u8>(), 0..400),
                ],
                prop::collection::vec(any::<usize>(), 0..4),
                prop::collection::vec(prop::option::weighted(0.3, control.clone()), 0..4),
            )
                .prop_map(|(text, payload, cuts, between)| Item::Data {
                    // Bytes that are not UTF-8 go as binary.
                    text: text && std::str::from_utf8(&payload).is_ok(),
                    payload,
                    cuts,
                    between,
                }),
            1 => control.prop_map(|(ping, payload)| Item::Control(ping, payload)),
        ]
    }

    fn len_form() -> impl Strategy<Value = LenForm> {
        prop_oneof![
            6 => Just(LenForm::Shortest),
            1 => Just(LenForm::Sixteen),
            1 => Just(LenForm::SixtyFour),
        ]
    }

    /// The bytes of `items`, each frame with the next mask and length form,
    /// and the messages they must decode to.
    fn encode(
        items: &[Item],
        masks: &[[u8; 4]],
        forms: &[LenForm],
        close: Option<(u16, String)>,
    ) -> (Vec<u8>, Vec<Owned>) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut n = 0;
        let mut next = |first: u8, payload: &[u8], input: &mut Vec<u8>, control: bool| {
            let form = if control {
                LenForm::Shortest
            } else {
                forms[n % forms.len()]
            };
            input.extend(raw_frame(
                first,
                Some(masks[n % masks.len()]),
                payload,
                form,
            ));
            n += 1;
        };
        let control = |ping: bool, payload: &[u8]| {
            if ping {
                (0x89, Owned::Ping(payload.to_vec()))
            } else {
                (0x8a, Owned::Pong(payload.to_vec()))
            }
        };
        for item in items {
            match item {
                Item::Control(ping, payload) => {
                    let (first, owned) = control(*ping, payload);
                    next(first, payload, &mut input, true);
                    expected.push(owned);
                }
                Item::Data {
                    text,
                    payload,
                    cuts,
                    between,
                } => {
                    let mut cuts: Vec<usize> = cuts
                        .iter()
                        .map(|c| c % (payload.len() + 1))
                        .chain([payload.len()])
                        .collect();
                    cuts.sort_unstable();
                    let mut start = 0;
                    for (i, &end) in cuts.iter().enumerate() {
                        let last = i + 1 == cuts.len();
                        let opcode = match (i, text) {
                            (0, true) => 0x1,
                            (0, false) => 0x2,
                            _ => 0x0,
                        };
                        let fin = if last { 0x80 } else { 0 };
                        next(fin | opcode, &payload[start..end], &mut input, false);
                        start = end;
                        if let (false, Some(Some((ping, control_payload)))) = (last, between.get(i))
                        {
                            let (first, owned) = control(*ping, control_payload);
                            next(first, control_payload, &mut input, true);
                            expected.push(owned);
                        }
                    }
                    expected.push(if *text {
                        Owned::Text(String::from_utf8(payload.clone()).unwrap_or_default())
                    } else {
                        Owned::Binary(payload.clone())
                    });
                }
            }
        }
        if let Some((code, reason)) = close {
            let payload = [&code.to_be_bytes()[..], reason.as_bytes()].concat();
            next(0x88, &payload, &mut input, true);
            expected.push(Owned::Close(Some(code), reason));
            // Whatever follows a close is dropped.
            input.extend_from_slice(b"\x83\x00garbage");
        }
        (input, expected)
    }

    fn close() -> impl Strategy<Value = Option<(u16, String)>> {
        prop::option::of((
            prop_oneof![1000u16..=1003, 1007u16..=1011, 3000u16..=4999],
            "[a-z é]{0,30}",
        ))
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_messages(
            items in prop::collection::vec(item(), 0..8),
            masks in prop::collection::vec(any::<[u8; 4]>(), 1..8),
            forms in prop::collection::vec(len_form(), 1..8),
            close in close(),
            sizes in prop::collection::vec(1usize..64, 1..32),
        ) {
            let (input, expected) = encode(&items, &masks, &forms, close);
            let whole = decode_all(1 << 20, &input);
            prop_assert_eq!(&whole, &(expected.clone(), None));
            let pieces = split(&input, &sizes);
            prop_assert_eq!(feed(&mut Decoder::new(1 << 20), &pieces), whole.clone());
            let bytes = split(&input, &[1]);
            prop_assert_eq!(feed(&mut Decoder::new(1 << 20), &bytes), whole);
        }

        #[test]
        fn every_two_piece_split_agrees(
            items in prop::collection::vec(item(), 0..3),
            masks in prop::collection::vec(any::<[u8; 4]>(), 1..4),
            forms in prop::collection::vec(len_form(), 1..4),
        ) {
            let (input, expected) = encode(&items, &masks, &forms, None);
            for cut in 0..=input.len() {
                let (first, second) = input.split_at(cut);
                prop_assert_eq!(
                    feed(&mut Decoder::new(1 << 20), &[first, second]),
                    (expected.clone(), None)
                );
            }
        }

        #[test]
        fn arbitrary_bytes_decode_alike_at_any_split(
            input in prop::collection::vec(any::<u8>(), 0..400),
            mask_bits in any::<bool>(),
            max in 0usize..300,
            sizes in prop::collection::vec(1usize..32, 1..16),
        ) {
            // Setting every second byte's top bit makes frames that are
            // masked and get past the first checks more often.
            let mut input = input;
            if mask_bits {
                for byte in input.iter_mut().skip(1).step_by(2) {
                    *byte |= 0x80;
                }
            }
            let whole = decode_all(max, &input);
            prop_assert_eq!(feed(&mut Decoder::new(max), &split(&input, &sizes)), whole.clone());
            prop_assert_eq!(feed(&mut Decoder::new(max), &split(&input, &[1])), whole.clone());
            for message in &whole.0 {
                match message {
                    Owned::Text(text) => prop_assert!(text.len() <= max),
                    Owned::Binary(data) => prop_assert!(data.len() <= max),
                    Owned::Ping(data) | Owned::Pong(data) => prop_assert!(data.len() <= 125),
                    Owned::Close(code, reason) => {
                        prop_assert!(code.is_none_or(valid_close_code));
                        prop_assert!(reason.len() <= 123);
                    }
                }
            }
            if let Some(violation) = whole.1 {
                prop_assert!(matches!(violation.code, 1002 | 1007 | 1009));
            }
        }

        #[test]
        fn text_is_accepted_exactly_when_it_is_utf8(
            text in prop::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    // Lead bytes, continuations and the edges of the ranges.
                    4 => prop::sample::select(
                        &b"a\x7f\x80\xbf\xc0\xc1\xc2\xdf\xe0\xe1\xed\xee\xef\xf0\xf1\xf4\xf5\xff\x90\xa0\x9f"[..]
                    ),
                ],
                0..24,
            ),
            cuts in prop::collection::vec(any::<usize>(), 0..3),
            sizes in prop::collection::vec(1usize..8, 1..8),
        ) {
            let items = [Item::Data { text: true, payload: text.clone(), cuts, between: vec![] }];
            let (input, _) = encode(&items, &[MASK], &[LenForm::Shortest], None);
            let whole = decode_all(100, &input);
            match std::str::from_utf8(&text) {
                Ok(valid) => prop_assert_eq!(&whole, &(vec![Owned::Text(valid.into())], None)),
                Err(_) => prop_assert_eq!(whole.1.map(|v| v.code), Some(CLOSE_INVALID_DATA)),
            }
            prop_assert_eq!(feed(&mut Decoder::new(100), &split(&input, &sizes)), whole);
        }

        #[test]
        fn bad_text_fails_at_the_first_impossible_byte(
            good in "\\PC{0,8}",
            bad in prop::collection::vec(any::<u8>(), 1..6),
            after in prop::collection::vec(any::<u8>(), 0..10),
        ) {
            let text = [good.as_bytes(), &bad, &after].concat();
            let Err(error) = std::str::from_utf8(&text) else { return Ok(()) };
            let Some(error_len) = error.error_len() else { return Ok(()) };
            // Sent one byte at a time in a single frame, the violation comes
            // no later than the byte after the invalid sequence (which is
            // what shows a truncated sequence to be invalid).
            let input = frame(true, 1, &text);
            let header = input.len() - text.len();
            let mut decoder = Decoder::new(100);
            let mut fed = 0;
            let mut failed = None;
            for byte in input.chunks(1) {
                fed += 1;
                if let (_, Err(violation)) = decoder.decode(byte) {
                    failed = Some(violation);
                    break;
                }
            }
            prop_assert_eq!(failed, Some(BAD_TEXT));
            prop_assert!(fed - header <= error.valid_up_to() + error_len + 1);
        }
    }
}
