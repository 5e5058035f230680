//! Reading a backend's response head and writing the head rill sends the
//! client in its place: the response half of rill's reverse-proxy routes.
//!
//! [`parse_response_head`] decides, from the backend's bytes alone, how long
//! the body is (RFC 9112 §6.3) and whether the backend connection can carry
//! another request. It is strict where a lenient reading lets two parties
//! frame one message differently: no obs-fold, no space before a colon, no
//! `Transfer-Encoding` beside `Content-Length`, no disagreeing lengths. What
//! it refuses, rill answers with 502.
//!
//! [`write_client_head`] then rebuilds the head for the client, never copies
//! it: hop-by-hop fields stay on the backend's hop, the framing is rill's own
//! (a close-delimited body is re-chunked so that an HTTP/1.1 client keeps its
//! connection), a `Location` pointing at the backend is turned into one
//! pointing at rill, and a final answer the backend sent without `Date`
//! gets rill's (RFC 9110 §6.6.1).

use super::response::{push_decimal, Status};
use std::mem::MaybeUninit;

/// Largest backend response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Most header fields accepted in one backend response head. The head's
/// size is the real limit ([`MAX_RESPONSE_HEAD`]); apps that set many
/// cookies or security fields easily pass 64 (nginx counts only bytes).
pub const MAX_RESPONSE_HEADERS: usize = 256;

/// How the backend delimits the response body (RFC 9112 §6.3, in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: a response to HEAD, a 1xx, 204 or 304.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body ends when the backend closes the connection.
    UntilClose,
}

/// A parsed backend response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 100 to 599.
    pub status: u16,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// How many bytes of the buffer the head took; the body (or, after a 1xx,
    /// the next head) starts there.
    pub head_len: usize,
    /// How the body is delimited.
    pub body: ResponseBody,
    /// The backend connection may carry another request after this response:
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection:
    /// keep-alive`; never for [`ResponseBody::UntilClose`], never for 101.
    /// For an interim 1xx it is the final response's value that counts.
    pub reusable: bool,
    /// A `text/event-stream` (Server-Sent Events) body without a length: it
    /// has no end of its own, and its client reconnects when it is cut.
    pub event_stream: bool,
}

/// Why a response cannot be relayed: rill answers 502 (if nothing was sent
/// yet) and drops the backend connection, whose framing is now unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

/// Parses one response head from the start of `buf`; `Ok(None)` means more
/// bytes are needed.
///
/// `request_was_head` says the request was HEAD, whose response has no body
/// whatever its fields say. After a 1xx other than 101 the next head starts
/// at `head_len`.
pub fn parse_response_head(
    buf: &[u8],
    request_was_head: bool,
) -> Result<Option<ResponseHead>, BadResponse> {
    let mut headers = header_slots();
    Ok(parse_response_fields(buf, request_was_head, &mut headers)?.map(|parsed| parsed.head))
}

/// Room for the fields of one backend head, for [`parse_response_fields`].
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_RESPONSE_HEADERS];

/// Empty [`HeaderSlots`].
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS]
}

/// A backend's head as [`parse_response_fields`] read it: what rill decides
/// from it, and the fields it relays, borrowed from the buffer.
pub struct ParsedHead<'h, 'b> {
    pub head: ResponseHead,
    reason: &'b str,
    fields: &'h [httparse::Header<'b>],
}

/// [`parse_response_head`], keeping the fields (in `headers`) so that
/// [`write_parsed_head`] need not parse the head a second time.
pub fn parse_response_fields<'h, 'b>(
    buf: &'b [u8],
    request_was_head: bool,
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<ParsedHead<'h, 'b>>, BadResponse> {
    let Some(parsed) = parse(buf, headers)? else {
        return Ok(None);
    };
    let fields: &[httparse::Header] = parsed.response.headers;
    let status = parsed.status;
    if !(100..=599).contains(&status) {
        return Err(BadResponse("invalid status code"));
    }

    let bodiless = request_was_head || status < 200 || status == 204 || status == 304;
    let body = if bodiless {
        ResponseBody::None
    } else {
        match (transfer_coding(fields)?, content_length(fields)?) {
            (Some(_), Some(_)) => {
                return Err(BadResponse("both Content-Length and Transfer-Encoding"))
            }
            // RFC 9112 §6.1: an HTTP/1.0 message cannot use it, so its
            // framing is faulty.
            (Some(_), None) if parsed.minor_version == 0 => {
                return Err(BadResponse("Transfer-Encoding in HTTP/1.0"))
            }
            (Some(body), None) => body,
            (None, Some(length)) => ResponseBody::Length(length),
            (None, None) => ResponseBody::UntilClose,
        }
    };

    let (mut close, mut keep_alive) = (false, false);
    for token in field_tokens(fields, "connection") {
        close |= token.eq_ignore_ascii_case(b"close");
        keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    let persistent = match parsed.minor_version {
        1 => !close,
        _ => keep_alive && !close,
    };
    let head = ResponseHead {
        status,
        minor_version: parsed.minor_version,
        head_len: parsed.head_len,
        body,
        reusable: persistent && status != 101 && body != ResponseBody::UntilClose,
        // One with a length ends, whatever it is; the check is left out of
        // the common answer's way.
        event_stream: matches!(body, ResponseBody::Chunked | ResponseBody::UntilClose)
            && is_event_stream(fields),
    };
    Ok(Some(ParsedHead {
        head,
        reason: parsed.response.reason.unwrap_or(""),
        fields,
    }))
}

/// The value of the `Upgrade` field of the head at the start of `buf`
/// (which [`parse_response_head`] read as `head`): for a 101, the protocol
/// the backend switched to. `None` when there is none or it is not text.
pub fn upgrade_protocol<'b>(buf: &'b [u8], head: &ResponseHead) -> Option<&'b str> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let parsed = parse(buf.get(..head.head_len)?, &mut headers).ok()??;
    let fields: &[httparse::Header<'b>] = parsed.response.headers;
    let value = fields
        .iter()
        .find(|field| field.name.eq_ignore_ascii_case("upgrade"))?
        .value;
    std::str::from_utf8(value.trim_ascii())
        .ok()
        .filter(|value| !value.is_empty())
}

/// Whether the protocol a server chose (the first in its `Upgrade` value) is
/// among the client's comma-separated `Upgrade` offers (RFC 9110 §7.8).
///
/// Names compare case-insensitively. An offer without a version accepts any
/// version of that protocol; an offer with one needs the same version.
pub fn offered(client_upgrade: &str, chosen: &str) -> bool {
    let Some(chosen) = chosen.split(',').map(str::trim).find(|p| !p.is_empty()) else {
        return false;
    };
    let (chosen_name, chosen_version) = split_protocol(chosen);
    client_upgrade
        .split(',')
        .map(str::trim)
        .filter(|offer| !offer.is_empty())
        .any(|offer| {
            let (name, version) = split_protocol(offer);
            name.eq_ignore_ascii_case(chosen_name)
                && version.is_none_or(|version| {
                    chosen_version.is_some_and(|chosen| chosen.eq_ignore_ascii_case(version))
                })
        })
}

/// rill's `Via` field line for a message received in HTTP/1.`minor`:
/// RFC 9110 §7.6.3 has it name the version received.
pub fn via_line(minor: u8) -> &'static [u8] {
    if minor == 0 {
        b"Via: 1.0 rill\r\n"
    } else {
        b"Via: 1.1 rill\r\n"
    }
}

/// Whether a client's `Upgrade` may become a tunnel: WebSocket, or any
/// other protocol of its own (Docker's `tcp`, kubectl's `SPDY/3.1`), but
/// never HTTP again. An offer of `h2c` or `HTTP/…` is dropped with the
/// hop-by-hop fields and the request forwarded plain, since a tunnel of
/// HTTP/2 would let the client send the backend requests for any path,
/// past rill's routes (h2c smuggling).
pub fn tunnelable(client_upgrade: &str) -> bool {
    let mut offers = client_upgrade
        .split(',')
        .map(str::trim)
        .filter(|offer| !offer.is_empty())
        .peekable();
    offers.peek().is_some()
        && offers.all(|offer| {
            let name = split_protocol(offer).0;
            !name.eq_ignore_ascii_case("h2c") && !name.eq_ignore_ascii_case("http")
        })
}

fn split_protocol(protocol: &str) -> (&str, Option<&str>) {
    match protocol.split_once('/') {
        Some((name, version)) => (name.trim(), Some(version.trim())),
        None => (protocol, None),
    }
}

/// What rill knows about the client a response goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientView<'a> {
    /// The client speaks HTTP/1.0: no 1xx, no chunked.
    pub client_http10: bool,
    /// rill keeps the client connection open after this response.
    pub keep_alive: bool,
    /// How to rewrite a `Location` or `Content-Location` that points at the
    /// backend; `None` leaves them as they are.
    pub rewrite: Option<LocationRewrite<'a>>,
    /// rill's own `Date` value (the loop's, rendered once a second), sent
    /// with a final answer whose backend gave none (RFC 9110 §6.6.1: a
    /// recipient with a clock adds it); `None` adds nothing.
    pub date: Option<&'a str>,
}

/// Turns a URL on the backend into the same URL on rill.
///
/// A `Location` (or `Content-Location`) value that starts with one of
/// `backend_origins` (ASCII case-insensitive) followed by `backend_path` at a
/// path-segment boundary — the next byte is the end, `/`, `?` or `#` —
/// becomes `client_origin` + `client_prefix` + the rest; without a
/// `client_origin` (the client named no host) it becomes the path alone,
/// `client_prefix` + the rest, which the client resolves against the URL it
/// asked for. When the route replaces its prefix, a path-absolute reference
/// (`/dir/`) under `backend_path` is mapped the same way, so a backend
/// mounted under a prefix cannot send its client out of it with a relative
/// redirect. A backend told the prefix (`X-Forwarded-Prefix`) is taken to
/// build its URLs with it: a path under `client_prefix` from such a backend
/// is the client's path, and keeps its prefix once. That is a guess: a
/// backend that ignores the header and has paths of its own under the same
/// name (`/api/x` from a backend mounted at `/api`) sends its client to
/// rill's `/api/x`, not to its own. Anything else is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocationRewrite<'a> {
    /// The backend's origins as it may name itself, e.g.
    /// `http://127.0.0.1:3001` and `http://localhost:3001`.
    pub backend_origins: &'a [String],
    /// The path the route maps its prefix to on the backend, e.g. `/v1`, or
    /// `""` when paths pass unchanged. No trailing `/`.
    pub backend_path: &'a str,
    /// The origin the client used, e.g. `http://example.com:4000`; `None`
    /// when it sent no `Host` (or an empty one).
    pub client_origin: Option<&'a str>,
    /// The route's prefix on rill, e.g. `/api`, or `""` when paths pass
    /// unchanged.
    pub client_prefix: &'a str,
    /// The backend was sent `client_prefix` as `X-Forwarded-Prefix`.
    pub prefix_announced: bool,
}

/// How rill frames the body it sends to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBody {
    /// No body follows the head.
    None,
    /// Exactly this many bytes, relayed as they come.
    Length(u64),
    /// rill chunks what the backend sends (after decoding the backend's own
    /// chunking, if any).
    Chunked,
    /// Relayed as it comes, then the client connection is closed.
    UntilClose,
}

/// Fields that describe one hop, or the framing rill replaces with its own.
pub(crate) const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "content-length",
];

/// Writes the head rill sends the client for the backend's head `head`,
/// read from the start of `raw`, into `out`, and returns how the body that
/// follows must be framed.
///
/// Should `raw` not hold the head `head` came from, the head is written from
/// `head` alone, without the backend's fields.
pub fn write_client_head(
    raw: &[u8],
    head: &ResponseHead,
    view: &ClientView,
    out: &mut Vec<u8>,
) -> ClientBody {
    let mut headers = header_slots();
    let parsed = parse(raw, &mut headers).ok().flatten();
    let (reason, fields): (&str, &[httparse::Header]) = match &parsed {
        Some(parsed) => (
            parsed.response.reason.unwrap_or(""),
            parsed.response.headers,
        ),
        None => ("", &[]),
    };
    write_parsed_head(
        &ParsedHead {
            head: *head,
            reason,
            fields,
        },
        view,
        out,
    )
}

/// [`write_client_head`] for a head [`parse_response_fields`] has read.
pub fn write_parsed_head(parsed: &ParsedHead, view: &ClientView, out: &mut Vec<u8>) -> ClientBody {
    let (head, reason, fields) = (&parsed.head, parsed.reason, parsed.fields);
    let status = head.status;
    let client_body = match head.body {
        ResponseBody::None => ClientBody::None,
        ResponseBody::Length(length) => ClientBody::Length(length),
        ResponseBody::Chunked | ResponseBody::UntilClose if view.client_http10 => {
            ClientBody::UntilClose
        }
        ResponseBody::Chunked | ResponseBody::UntilClose => ClientBody::Chunked,
    };

    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse reads exactly three digits, so `status` is below 1000.
    for digit in [status / 100 % 10, status / 10 % 10, status % 10] {
        out.push(b'0' + digit as u8);
    }
    out.push(b' ');
    let printable = !reason.is_empty() && reason.bytes().all(|b| (0x20..=0x7e).contains(&b));
    out.extend_from_slice(if printable {
        reason.as_bytes()
    } else {
        Status::from_code(status).reason().as_bytes()
    });
    out.extend_from_slice(b"\r\n");

    let has_connection = fields
        .iter()
        .any(|field| field.name.eq_ignore_ascii_case("connection"));
    // Noted in this pass, which every proxied answer makes anyway, rather
    // than in a search of its own; the length test spares the others a
    // comparison.
    let mut has_date = false;
    for field in fields {
        let name = field.name;
        let is = |other: &str| name.eq_ignore_ascii_case(other);
        if HOP_BY_HOP.iter().any(|&hop| is(hop))
            || (is("upgrade") && status != 101)
            || (is("trailer") && client_body != ClientBody::Chunked)
        {
            continue;
        }
        // A 101 names Upgrade in Connection, and the client needs it.
        if has_connection
            && !(is("upgrade") && status == 101)
            && field_tokens(fields, "connection")
                .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
        {
            continue;
        }
        has_date |= name.len() == 4 && is("date");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        // The URL a field carries, after what is kept as it is: all of a
        // Location, the part after `url=` of a Refresh.
        let (kept, url): (&[u8], &[u8]) = match view.rewrite {
            Some(_) if is("location") || is("content-location") => (b"", field.value),
            Some(_) if is("refresh") => refresh_url(field.value),
            _ => (field.value, b""),
        };
        out.extend_from_slice(kept);
        let rest = match view.rewrite {
            Some(rewrite) if !url.is_empty() => {
                rewritten(url, &rewrite).map(|rest| (rewrite, rest))
            }
            _ => None,
        };
        match rest {
            Some((rewrite, Rewritten::Absolute(rest))) => {
                match rewrite.client_origin {
                    Some(origin) => out.extend_from_slice(origin.as_bytes()),
                    None if rewrite.client_prefix.is_empty() && !rest.starts_with(b"/") => {
                        out.push(b'/');
                    }
                    None => {}
                }
                out.extend_from_slice(rewrite.client_prefix.as_bytes());
                out.extend_from_slice(rest);
            }
            // Only a route with a prefix maps these: the result starts `/`.
            Some((rewrite, Rewritten::Relative(rest))) => {
                out.extend_from_slice(rewrite.client_prefix.as_bytes());
                out.extend_from_slice(rest);
            }
            None => out.extend_from_slice(url),
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(via_line(head.minor_version));
    // A 1xx may go without (RFC 9110 §6.6.1): only the final answer gets it.
    if let Some(date) = view.date.filter(|_| !has_date && status >= 200) {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    match client_body {
        ClientBody::Length(length) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, length);
            out.extend_from_slice(b"\r\n");
        }
        ClientBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        ClientBody::UntilClose => {}
        // A response to HEAD, or a 304, states the length of the body it
        // stands for (RFC 9110 §8.6); a 204 or 1xx has none to state.
        ClientBody::None if status >= 200 && status != 204 => {
            if let Ok(Some(length)) = content_length(fields) {
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, length);
                out.extend_from_slice(b"\r\n");
            }
        }
        ClientBody::None => {}
    }

    if status == 101 {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    } else if status >= 200 {
        if !view.keep_alive || client_body == ClientBody::UntilClose {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if view.client_http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    client_body
}

/// A `Refresh` value (`5; url=http://…`, `url` in any case, the URL maybe
/// quoted) cut before its URL: nginx's `proxy_redirect` rewrites it as it
/// does a `Location`. Without a URL, all of it is kept.
fn refresh_url(value: &[u8]) -> (&[u8], &[u8]) {
    let at = value
        .windows(4)
        .position(|window| window.eq_ignore_ascii_case(b"url="));
    match at {
        Some(at) => {
            let mut start = at + 4;
            if matches!(value.get(start), Some(b'\'' | b'"')) {
                start += 1;
            }
            value.split_at(start)
        }
        None => (value, b""),
    }
}

/// What of a `Location` value follows the backend's origin and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewritten<'v> {
    /// The value was an absolute URL on the backend.
    Absolute(&'v [u8]),
    /// The value was a path-absolute reference under the backend path.
    Relative(&'v [u8]),
}

/// The rest of `value` after a backend origin and path, when `value` is a
/// URL on the backend under the route's path (or, for a route that replaces
/// its prefix, a path-absolute reference under it).
fn rewritten<'v>(value: &'v [u8], rewrite: &LocationRewrite) -> Option<Rewritten<'v>> {
    // What goes into the field instead must not be able to break the line.
    let clean = |text: &str| text.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if rewrite
        .client_origin
        .is_some_and(|origin| origin.is_empty() || !clean(origin))
        || !clean(rewrite.client_prefix)
    {
        return None;
    }
    let under = |path: &str, rest: &'v [u8]| {
        let rest = rest.strip_prefix(path.as_bytes())?;
        matches!(rest.first(), None | Some(b'/' | b'?' | b'#')).then_some(rest)
    };
    // What follows the backend's path, and whether the backend wrote the
    // client's prefix there itself.
    let split = |rest: &'v [u8]| {
        let rest = under(rewrite.backend_path, rest)?;
        let announced = rewrite.prefix_announced && !rewrite.client_prefix.is_empty();
        match under(rewrite.client_prefix, rest) {
            Some(after_prefix) if announced => Some((after_prefix, true)),
            _ => Some((rest, false)),
        }
    };
    // `//host/...` is network-path: another origin, not a path.
    let path_absolute = value.starts_with(b"/") && !value.starts_with(b"//");
    if path_absolute && !rewrite.client_prefix.is_empty() {
        return match split(value)? {
            (_, true) => None,
            (rest, false) => Some(Rewritten::Relative(rest)),
        };
    }
    rewrite.backend_origins.iter().find_map(|origin| {
        let origin = origin.as_bytes();
        let start = value.get(..origin.len())?;
        if origin.is_empty() || !start.eq_ignore_ascii_case(origin) {
            return None;
        }
        split(&value[origin.len()..]).map(|(rest, _)| Rewritten::Absolute(rest))
    })
}

/// A response head as httparse read it, with the fields rill needs checked.
struct Parsed<'h, 'b> {
    response: httparse::Response<'h, 'b>,
    status: u16,
    minor_version: u8,
    head_len: usize,
}

/// httparse with its strict defaults, plus the size limit.
fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<Parsed<'h, 'b>>, BadResponse> {
    let too_large = BadResponse("response head too large");
    let mut response = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        // It will never fit; waiting for the rest would only buffer without end.
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE_HEAD => return Err(too_large),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadResponse("too many header fields")),
        // httparse says Version for anything that does not start `HTTP/1.x`.
        Err(httparse::Error::Version) if buf.trim_ascii_start().starts_with(b"HTTP/") => {
            return Err(BadResponse("unsupported HTTP version"))
        }
        Err(_) => return Err(BadResponse("malformed response head")),
    };
    if head_len > MAX_RESPONSE_HEAD {
        return Err(too_large);
    }
    // httparse fills these in whenever it returns Complete.
    let (Some(status), Some(minor_version)) = (response.code, response.version) else {
        return Err(BadResponse("malformed status line"));
    };
    Ok(Some(Parsed {
        response,
        status,
        minor_version,
        head_len,
    }))
}

/// The body framing `Transfer-Encoding` gives, if there is one. Repeated
/// fields count as one list (RFC 9110 §5.3).
fn transfer_coding(fields: &[httparse::Header]) -> Result<Option<ResponseBody>, BadResponse> {
    let mut present = false;
    let mut codings = 0usize;
    let mut last_chunked = false;
    for field in fields {
        if !field.name.eq_ignore_ascii_case("transfer-encoding") {
            continue;
        }
        present = true;
        for coding in comma_list(field.value) {
            // Parameters (`;q=...`) do not change which coding it is.
            let name = coding
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            codings += 1;
            last_chunked = name.eq_ignore_ascii_case(b"chunked");
        }
    }
    match (present, codings, last_chunked) {
        (false, _, _) => Ok(None),
        (true, 0, _) => Err(BadResponse("empty Transfer-Encoding")),
        (true, 1, true) => Ok(Some(ResponseBody::Chunked)),
        // Any other coding (`gzip`, or `gzip, chunked`): RFC 9112 §6.3 would
        // have a body without chunked last read until the close, but rill
        // re-frames every body and relays no transfer-coding, so the client
        // would get coded bytes marked as nothing. Refused instead.
        (true, _, _) => Err(BadResponse("unsupported transfer-coding")),
    }
}

/// Whether the answer's media type (parameters aside) is
/// `text/event-stream`.
fn is_event_stream(fields: &[httparse::Header]) -> bool {
    fields
        .iter()
        .find(|field| field.name.eq_ignore_ascii_case("content-type"))
        .is_some_and(|field| {
            let kind = field.value.split(|&b| b == b';').next().unwrap_or_default();
            kind.trim_ascii().eq_ignore_ascii_case(b"text/event-stream")
        })
}

/// The length every `Content-Length` field and list element agrees on
/// (RFC 9110 §8.6 lets `5, 5` stand for `5`).
fn content_length(fields: &[httparse::Header]) -> Result<Option<u64>, BadResponse> {
    let mut length = None;
    for field in fields {
        if !field.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        for item in field.value.split(|&b| b == b',') {
            let value = decimal(item.trim_ascii()).ok_or(BadResponse("invalid Content-Length"))?;
            if length.is_some_and(|seen| seen != value) {
                return Err(BadResponse("conflicting Content-Length"));
            }
            length = Some(value);
        }
    }
    Ok(length)
}

/// 1*DIGIT: no sign, no hex, no spaces inside, no overflow.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &digit| {
        acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// The comma-separated tokens of every field called `name`.
fn field_tokens<'f, 'b: 'f>(
    fields: &'f [httparse::Header<'b>],
    name: &'f str,
) -> impl Iterator<Item = &'b [u8]> + 'f {
    fields
        .iter()
        .filter(move |field| field.name.eq_ignore_ascii_case(name))
        .flat_map(|field| comma_list(field.value))
}

fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<ResponseHead, BadResponse> {
        let head = parse_response_head(raw.as_bytes(), false)?.expect("complete");
        assert_eq!(head.head_len, raw.len(), "head length of {raw:?}");
        Ok(head)
    }

    fn body_of(fields: &str) -> Result<ResponseBody, BadResponse> {
        head(&format!("HTTP/1.1 200 OK\r\n{fields}\r\n")).map(|head| head.body)
    }

    fn bad(raw: &str) -> &'static str {
        match parse_response_head(raw.as_bytes(), false) {
            Err(BadResponse(reason)) => reason,
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    #[test]
    fn an_event_stream_is_told_apart() {
        let mut headers = header_slots();
        let sse = b"HTTP/1.1 200 OK\r\ncontent-type:  Text/Event-Stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";
        let parsed = parse_response_fields(sse, false, &mut headers)
            .unwrap()
            .unwrap();
        assert!(parsed.head.event_stream);
        for other in [
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/event-streams\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
            // With a length it ends by itself.
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nContent-Type: text/event-stream\r\n\r\n",
        ] {
            let mut headers = header_slots();
            let parsed = parse_response_fields(other, false, &mut headers)
                .unwrap()
                .unwrap();
            assert!(
                !parsed.head.event_stream,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn http_itself_is_never_tunnelled() {
        assert!(tunnelable("websocket"));
        assert!(tunnelable("WebSocket , tcp"));
        assert!(tunnelable("SPDY/3.1"));
        assert!(!tunnelable("h2c"));
        assert!(!tunnelable("websocket, H2C"));
        assert!(!tunnelable("HTTP/2.0"));
        assert!(!tunnelable(""));
        assert!(!tunnelable(" , "));
    }

    #[test]
    fn framing_table() {
        use ResponseBody::*;
        let cases: &[(&str, Result<ResponseBody, &str>)] = &[
            ("Content-Length: 5\r\n", Ok(Length(5))),
            ("Content-Length: 0\r\n", Ok(Length(0))),
            ("Content-Length: 5\r\nContent-Length: 5\r\n", Ok(Length(5))),
            ("Content-Length: 5, 5\r\n", Ok(Length(5))),
            (
                "Content-Length: 18446744073709551615\r\n",
                Ok(Length(u64::MAX)),
            ),
            ("Transfer-Encoding: chunked\r\n", Ok(Chunked)),
            ("transfer-encoding: CHUNKED\r\n", Ok(Chunked)),
            (
                "Transfer-Encoding: gzip\r\n",
                Err("unsupported transfer-coding"),
            ),
            (
                "Transfer-Encoding: chunked, gzip\r\n",
                Err("unsupported transfer-coding"),
            ),
            ("", Ok(UntilClose)),
            ("Content-Type: text/plain\r\n", Ok(UntilClose)),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                Err("both Content-Length and Transfer-Encoding"),
            ),
            (
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                Err("conflicting Content-Length"),
            ),
            (
                "Content-Length: 5, 6\r\n",
                Err("conflicting Content-Length"),
            ),
            ("Content-Length: +5\r\n", Err("invalid Content-Length")),
            ("Content-Length: -1\r\n", Err("invalid Content-Length")),
            ("Content-Length: 0x5\r\n", Err("invalid Content-Length")),
            ("Content-Length: 1 2\r\n", Err("invalid Content-Length")),
            ("Content-Length: \r\n", Err("invalid Content-Length")),
            ("Content-Length: 5,\r\n", Err("invalid Content-Length")),
            (
                "Content-Length: 18446744073709551616\r\n",
                Err("invalid Content-Length"),
            ),
            (
                "Content-Length: 99999999999999999999999\r\n",
                Err("invalid Content-Length"),
            ),
            (
                "Transfer-Encoding: gzip, chunked\r\n",
                Err("unsupported transfer-coding"),
            ),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                Err("unsupported transfer-coding"),
            ),
            (
                "Transfer-Encoding: chunked, chunked\r\n",
                Err("unsupported transfer-coding"),
            ),
            ("Transfer-Encoding: \r\n", Err("empty Transfer-Encoding")),
        ];
        for (fields, expected) in cases {
            assert_eq!(
                body_of(fields).map_err(|BadResponse(reason)| reason),
                *expected,
                "{fields:?}"
            );
        }
    }

    #[test]
    fn bodiless_responses_ignore_their_framing() {
        let framing = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n";
        for status in [
            "100 Continue",
            "103 Early Hints",
            "204 No Content",
            "304 Not Modified",
        ] {
            let raw = format!("HTTP/1.1 {status}\r\n{framing}\r\n");
            assert_eq!(head(&raw).unwrap().body, ResponseBody::None, "{status}");
        }
        let raw = format!("HTTP/1.1 200 OK\r\n{framing}\r\n");
        let to_head = parse_response_head(raw.as_bytes(), true).unwrap().unwrap();
        assert_eq!(to_head.body, ResponseBody::None);
        assert!(to_head.reusable);
    }

    #[test]
    fn switching_protocols_is_never_reusable() {
        let raw =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let parsed = head(raw).unwrap();
        assert_eq!(
            (parsed.status, parsed.body, parsed.reusable),
            (101, ResponseBody::None, false)
        );
        assert_eq!(upgrade_protocol(raw.as_bytes(), &parsed), Some("websocket"));
        let plain = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
        assert_eq!(
            upgrade_protocol(plain.as_bytes(), &head(plain).unwrap()),
            None
        );
    }

    #[test]
    fn reuse_rules() {
        let cases = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", true),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: foo, Close\r\n",
                false,
            ),
            ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n", false),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n",
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n",
                false,
            ),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", true),
            ("HTTP/1.1 200 OK\r\n", false),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", false),
            ("HTTP/1.1 204 No Content\r\n", true),
            ("HTTP/1.1 304 Not Modified\r\nConnection: close\r\n", false),
        ];
        for (raw, reusable) in cases {
            assert_eq!(
                head(&format!("{raw}\r\n")).unwrap().reusable,
                reusable,
                "{raw:?}"
            );
        }
        assert_eq!(
            bad("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in HTTP/1.0"
        );
    }

    #[test]
    fn malformed_heads_are_bad() {
        for raw in [
            "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 OK\r\n\r\n",
            "hello\r\n\r\n",
        ] {
            assert_eq!(bad(raw), "malformed response head", "{raw:?}");
        }
        assert_eq!(bad("hello"), "malformed response head");
        assert_eq!(bad("HTTP/2 200 OK\r\n\r\n"), "unsupported HTTP version");
        assert_eq!(bad("HTTP/1.1 099 Odd\r\n\r\n"), "invalid status code");
        assert_eq!(bad("HTTP/1.1 600 Odd\r\n\r\n"), "invalid status code");
        // 100 cookies are an answer; more fields than slots are not.
        let cookies: String = (0..100)
            .map(|i| format!("Set-Cookie: c{i}=y\r\n"))
            .collect();
        let answer = format!("HTTP/1.1 200 OK\r\n{cookies}Content-Length: 0\r\n\r\n");
        assert!(parse_response_head(answer.as_bytes(), false).is_ok());
        let many: String = (0..=MAX_RESPONSE_HEADERS)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        assert_eq!(
            bad(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            "too many header fields"
        );
    }

    #[test]
    fn size_limit() {
        let big = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n",
            "a".repeat(MAX_RESPONSE_HEAD)
        );
        assert_eq!(bad(&big), "response head too large");
        assert_eq!(bad(&format!("{big}\r\n")), "response head too large");
        // Just under the limit is fine, with a body after it.
        let fits = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_RESPONSE_HEAD - "HTTP/1.1 200 OK\r\nX: \r\n\r\n".len())
        );
        assert_eq!(fits.len(), MAX_RESPONSE_HEAD);
        let with_body = format!("{fits}{}", "b".repeat(100));
        let parsed = parse_response_head(with_body.as_bytes(), false)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.head_len, MAX_RESPONSE_HEAD);
    }

    #[test]
    fn interim_then_final_in_one_buffer() {
        let interim = "HTTP/1.1 100 Continue\r\n\r\n";
        let last = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let buf = format!("{interim}{last}");
        let first = parse_response_head(buf.as_bytes(), false).unwrap().unwrap();
        assert_eq!((first.status, first.head_len), (100, interim.len()));
        let next = parse_response_head(&buf.as_bytes()[first.head_len..], false)
            .unwrap()
            .unwrap();
        assert_eq!((next.status, next.body), (200, ResponseBody::Length(2)));
        assert_eq!(&last[next.head_len..], "hi");
    }

    #[test]
    fn offers() {
        assert!(offered("websocket", "websocket"));
        assert!(offered("h2c, WebSocket", "websocket"));
        assert!(offered("foo/2, websocket", "Foo/2"));
        assert!(offered("foo", "foo/3"));
        assert!(offered("websocket", "websocket, tls"));
        assert!(!offered("foo/2", "foo/3"));
        assert!(!offered("foo/2", "foo"));
        assert!(!offered("websocket", "h2c"));
        assert!(!offered("websocket", ""));
        assert!(!offered("", "websocket"));
        assert!(!offered("websocketx", "websocket"));
    }

    // --- write_client_head ---

    const ORIGINS: &[&str] = &["http://127.0.0.1:3001", "http://localhost:3001"];

    fn client(raw: &str, request_was_head: bool, view: &ClientView) -> (String, ClientBody) {
        let parsed = parse_response_head(raw.as_bytes(), request_was_head)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        let body = write_client_head(raw.as_bytes(), &parsed, view, &mut out);
        let text = String::from_utf8(out).unwrap();
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS + 8];
        let mut check = httparse::Response::new(&mut headers);
        assert_eq!(
            check.parse(text.as_bytes()),
            Ok(httparse::Status::Complete(text.len())),
            "{text}"
        );
        (text, body)
    }

    fn http11(keep_alive: bool) -> ClientView<'static> {
        ClientView {
            client_http10: false,
            keep_alive,
            rewrite: None,
            date: None,
        }
    }

    fn http10(keep_alive: bool) -> ClientView<'static> {
        ClientView {
            client_http10: true,
            ..http11(keep_alive)
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.trim_end_matches("\r\n").split("\r\n").collect()
    }

    #[test]
    fn fields_are_copied_and_via_added() {
        let (text, body) = client(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 cache\r\nSet-Cookie: a=1\r\n\
             Content-Length: 5\r\n\r\nhello",
            false,
            &http11(true),
        );
        assert_eq!(body, ClientBody::Length(5));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVia: 1.1 cache\r\nSet-Cookie: a=1\r\n\
             Via: 1.1 rill\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn a_final_answer_without_a_date_gets_rills() {
        const RILLS: &str = "Thu, 03 Dec 2026 15:40:00 GMT";
        let view = ClientView {
            date: Some(RILLS),
            ..http11(true)
        };
        let dates = |raw: &str, request_was_head| {
            let (text, _) = client(raw, request_was_head, &view);
            lines(&text)
                .into_iter()
                .filter(|line| line.len() > 5 && line[..5].eq_ignore_ascii_case("date:"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let ours = [format!("Date: {RILLS}")];
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.0 500 Oops\r\n\r\n",
            // Named in Connection, a Date is dropped with its hop: rill's
            // takes its place.
            "HTTP/1.1 200 OK\r\nConnection: Date\r\nDate: x\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert_eq!(dates(raw, false), ours, "{raw:?}");
        }
        assert_eq!(
            dates("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            ours
        );
        // The backend's own is kept, in any case, and never doubled.
        for (raw, kept) in [
            (
                "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
                "Date: Sun, 06 Nov 1994 08:49:37 GMT",
            ),
            (
                "HTTP/1.1 404 Not Found\r\nDATE: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
                "DATE: Sun, 06 Nov 1994 08:49:37 GMT",
            ),
        ] {
            assert_eq!(dates(raw, false), [kept], "{raw:?}");
        }
        // Interim answers may go without, and a name merely like it is not it.
        assert!(dates("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", false).is_empty());
        assert!(dates(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            false
        )
        .is_empty());
        let (text, _) = client(
            "HTTP/1.1 200 OK\r\nDates: x\r\nX-Date: y\r\nContent-Length: 0\r\n\r\n",
            false,
            &view,
        );
        assert!(text.contains(&format!("\r\nDate: {RILLS}\r\n")), "{text}");
        // Without a clock (`None`), nothing is added.
        let (text, _) = client(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            &http11(true),
        );
        assert!(!text.to_ascii_lowercase().contains("date"), "{text}");
    }

    #[test]
    fn reason_phrase() {
        let (text, _) = client(
            "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n",
            false,
            &http11(true),
        );
        assert!(text.starts_with("HTTP/1.1 404 Nope\r\n"));
        let (text, _) = client(
            "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
            false,
            &http11(true),
        );
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        let (text, _) = client(
            "HTTP/1.1 404 Nicht\u{e4} \r\nContent-Length: 0\r\n\r\n",
            false,
            &http11(true),
        );
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        let (text, _) = client(
            "HTTP/1.1 599\r\nContent-Length: 0\r\n\r\n",
            false,
            &http11(true),
        );
        assert!(text.starts_with("HTTP/1.1 599 \r\n"));
        // An HTTP/1.0 backend is relayed as rill's own version.
        let (text, _) = client(
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            &http11(true),
        );
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn hop_by_hop_fields_are_dropped() {
        let (text, _) = client(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nTE: trailers\r\nX-Hop: 1\r\nUpgrade: h2c\r\n\
             X-End: 2\r\nConnection: x-other\r\nX-Other: 3\r\nContent-Length: 0\r\n\r\n",
            false,
            &http11(true),
        );
        assert_eq!(
            lines(&text),
            [
                "HTTP/1.1 200 OK",
                "X-End: 2",
                "Via: 1.1 rill",
                "Content-Length: 0"
            ]
        );
    }

    #[test]
    fn framing_to_the_client() {
        use ClientBody::*;
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n";
        let close = "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\n\r\n";
        let cases = [
            (
                chunked,
                http11(true),
                Chunked,
                &["Trailer: X-Sum", "Transfer-Encoding: chunked"][..],
            ),
            (
                close,
                http11(true),
                Chunked,
                &["Trailer: X-Sum", "Transfer-Encoding: chunked"],
            ),
            (chunked, http10(true), UntilClose, &["Connection: close"]),
            (close, http10(false), UntilClose, &["Connection: close"]),
            (
                close,
                http11(false),
                Chunked,
                &[
                    "Trailer: X-Sum",
                    "Transfer-Encoding: chunked",
                    "Connection: close",
                ],
            ),
        ];
        for (raw, view, expected_body, expected) in cases {
            let (text, body) = client(raw, false, &view);
            assert_eq!(body, expected_body, "{raw:?} {view:?}");
            let fields: Vec<_> = lines(&text)
                .into_iter()
                .skip(1)
                .filter(|line| *line != "Via: 1.1 rill")
                .collect();
            assert_eq!(fields, expected, "{raw:?} {view:?}");
        }
    }

    #[test]
    fn bodiless_framing_to_the_client() {
        let framed = "Content-Length: 42\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n";
        let cases = [
            ("200 OK", true, Some("Content-Length: 42")),
            ("304 Not Modified", false, Some("Content-Length: 42")),
            ("204 No Content", false, None),
            ("103 Early Hints", false, None),
        ];
        for (status, request_was_head, length) in cases {
            // CL beside TE is only tolerable because neither frames anything here.
            let raw = format!("HTTP/1.1 {status}\r\nLink: </a>\r\n{framed}\r\n");
            let (text, body) = client(&raw, request_was_head, &http11(true));
            assert_eq!(body, ClientBody::None);
            let expected: Vec<_> = ["Link: </a>", "Via: 1.1 rill"]
                .into_iter()
                .chain(length)
                .collect();
            assert_eq!(lines(&text)[1..], expected, "{status}");
        }
        // A would-be length that is not one is not passed on.
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n";
        let (text, _) = client(raw, true, &http11(true));
        assert!(!text.contains("Content-Length"));
    }

    #[test]
    fn connection_field() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let cases = [
            (http11(true), None),
            (http11(false), Some("Connection: close")),
            (http10(true), Some("Connection: keep-alive")),
            (http10(false), Some("Connection: close")),
        ];
        for (view, line) in cases {
            let (text, _) = client(ok, false, &view);
            let connection: Vec<_> = lines(&text)
                .into_iter()
                .filter(|l| l.starts_with("Connection"))
                .collect();
            assert_eq!(connection, line.into_iter().collect::<Vec<_>>(), "{view:?}");
        }
        let (text, _) = client("HTTP/1.1 100 Continue\r\n\r\n", false, &http11(false));
        assert_eq!(text, "HTTP/1.1 100 Continue\r\nVia: 1.1 rill\r\n\r\n");
        let (text, _) = client(
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: close\r\n\r\n",
            false,
            &http11(true),
        );
        assert_eq!(
            text,
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nVia: 1.1 rill\r\n\r\n"
        );
        let (text, body) = client(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Accept: x\r\n\r\n",
            false,
            &http11(true),
        );
        assert_eq!(body, ClientBody::None);
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\
             Via: 1.1 rill\r\nConnection: upgrade\r\n\r\n"
        );
    }

    fn rewriting<'a>(
        origins: &'a [String],
        backend_path: &'a str,
        client_prefix: &'a str,
    ) -> ClientView<'a> {
        ClientView {
            client_http10: false,
            keep_alive: true,
            rewrite: Some(LocationRewrite {
                backend_origins: origins,
                backend_path,
                client_origin: Some("http://example.com:4000"),
                client_prefix,
                // As for a route: only a mounted backend is told its prefix.
                prefix_announced: backend_path.is_empty(),
            }),
            date: None,
        }
    }

    fn location(view: &ClientView, value: &str) -> String {
        let raw = format!("HTTP/1.1 302 Found\r\nLocation: {value}\r\nContent-Location: {value}\r\nContent-Length: 0\r\n\r\n");
        let (text, _) = client(&raw, false, view);
        let found: Vec<_> = lines(&text)
            .into_iter()
            .filter_map(|line| {
                line.strip_prefix("Location: ")
                    .or(line.strip_prefix("Content-Location: "))
            })
            .collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], found[1]);
        found[0].to_string()
    }

    #[test]
    fn a_refresh_url_is_rewritten_like_a_location() {
        let origins: Vec<String> = ORIGINS.iter().map(|o| o.to_string()).collect();
        let api = rewriting(&origins, "/v1", "/api");
        let refresh = |value: &str| {
            let raw = format!("HTTP/1.1 200 OK\r\nRefresh: {value}\r\nContent-Length: 0\r\n\r\n");
            let (text, _) = client(&raw, false, &api);
            lines(&text)
                .into_iter()
                .find_map(|line| line.strip_prefix("Refresh: "))
                .expect("a Refresh field")
                .to_string()
        };
        for (value, expected) in [
            (
                "0; url=http://127.0.0.1:3001/v1/x",
                "0; url=http://example.com:4000/api/x",
            ),
            (
                "5;URL='http://localhost:3001/v1/a?b'",
                "5;URL='http://example.com:4000/api/a?b'",
            ),
            ("1; url=/v1/y", "1; url=/api/y"),
            (
                "1; url=http://elsewhere.org/v1/y",
                "1; url=http://elsewhere.org/v1/y",
            ),
            ("5", "5"),
        ] {
            assert_eq!(refresh(value), expected, "{value}");
        }
    }

    #[test]
    fn location_rewriting() {
        let origins: Vec<String> = ORIGINS.iter().map(|o| o.to_string()).collect();
        let api = rewriting(&origins, "/v1", "/api");
        let cases = [
            (
                "http://127.0.0.1:3001/v1/users?a=1",
                "http://example.com:4000/api/users?a=1",
            ),
            ("HTTP://LOCALHOST:3001/v1", "http://example.com:4000/api"),
            (
                "http://localhost:3001/v1?x",
                "http://example.com:4000/api?x",
            ),
            (
                "http://localhost:3001/v1#top",
                "http://example.com:4000/api#top",
            ),
            ("http://localhost:3001/v1x", "http://localhost:3001/v1x"),
            ("http://localhost:3001/V1/a", "http://localhost:3001/V1/a"),
            ("http://localhost:3001/other", "http://localhost:3001/other"),
            ("http://localhost:30011/v1/a", "http://localhost:30011/v1/a"),
            ("http://elsewhere.org/v1/a", "http://elsewhere.org/v1/a"),
            ("/v1/relative", "/api/relative"),
            ("/v1?q", "/api?q"),
            ("/v1x/relative", "/v1x/relative"),
            ("/other", "/other"),
            ("v1/relative", "v1/relative"),
            ("//localhost:3001/v1/a", "//localhost:3001/v1/a"),
        ];
        for (value, expected) in cases {
            assert_eq!(location(&api, value), expected, "{value}");
        }
        let unchanged = rewriting(&origins, "", "");
        assert_eq!(
            location(&unchanged, "http://127.0.0.1:3001/a/b"),
            "http://example.com:4000/a/b"
        );
        assert_eq!(
            location(&unchanged, "http://127.0.0.1:3001"),
            "http://example.com:4000"
        );
        assert_eq!(
            location(&unchanged, "http://127.0.0.1:30010/"),
            "http://127.0.0.1:30010/"
        );
        assert_eq!(location(&unchanged, "/a/b"), "/a/b");
        let prefixed = rewriting(&origins, "", "/api");
        assert_eq!(
            location(&prefixed, "http://127.0.0.1:3001/a"),
            "http://example.com:4000/api/a"
        );
        // A backend mounted at /api redirecting to one of its own paths.
        assert_eq!(location(&prefixed, "/dir/"), "/api/dir/");
        assert_eq!(location(&prefixed, "/"), "/api/");
        assert_eq!(location(&prefixed, "/apiary"), "/api/apiary");
        // One that put the X-Forwarded-Prefix it was sent in its URL
        // (Flask behind ProxyFix): the prefix once, not twice.
        assert_eq!(location(&prefixed, "/api/home"), "/api/home");
        assert_eq!(location(&prefixed, "/api?next=x"), "/api?next=x");
        assert_eq!(
            location(&prefixed, "http://127.0.0.1:3001/api/home"),
            "http://example.com:4000/api/home"
        );
        // A backend never told the prefix: its `/api` is its own path.
        let told_nothing = ClientView {
            rewrite: Some(LocationRewrite {
                prefix_announced: false,
                ..prefixed.rewrite.unwrap()
            }),
            ..http11(true)
        };
        assert_eq!(location(&told_nothing, "/api/home"), "/api/api/home");
        // No Host from the client: the path alone, never the backend's.
        let hostless = |path, prefix| ClientView {
            rewrite: Some(LocationRewrite {
                client_origin: None,
                ..rewriting(&origins, path, prefix).rewrite.unwrap()
            }),
            ..http11(true)
        };
        assert_eq!(
            location(&hostless("/v1", "/api"), "http://127.0.0.1:3001/v1/a?b"),
            "/api/a?b"
        );
        assert_eq!(location(&hostless("", ""), "http://127.0.0.1:3001"), "/");
        assert_eq!(
            location(&hostless("", ""), "http://127.0.0.1:3001?x"),
            "/?x"
        );
        assert_eq!(location(&hostless("", ""), "http://127.0.0.1:3001/a"), "/a");
        assert_eq!(
            location(&http11(true), "http://127.0.0.1:3001/a"),
            "http://127.0.0.1:3001/a"
        );
    }

    #[test]
    fn unparsable_raw_still_gives_a_head() {
        let parsed = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n").unwrap();
        let mut out = Vec::new();
        let body = write_client_head(b"garbage", &parsed, &http11(true), &mut out);
        assert_eq!(body, ClientBody::Length(3));
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nVia: 1.1 rill\r\nContent-Length: 3\r\n\r\n"
        );
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        const FIELDS: &[&str] = &[
            "Content-Length: 12",
            "Content-Length: 12, 12",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip",
            "Connection: close",
            "Connection: keep-alive, x-a",
            "X-A: 1",
            "Location: http://localhost:3001/v1/a",
            "Upgrade: websocket",
            "Trailer: X-Sum",
        ];

        fn response_head() -> impl Strategy<Value = String> {
            let status = prop_oneof![
                Just("100 Continue"),
                Just("101 Switching Protocols"),
                Just("200 OK"),
                Just("204 No Content"),
                Just("304 Not Modified"),
                Just("404 Not Found"),
                Just("500"),
            ];
            let field = prop_oneof![
                4 => proptest::sample::select(FIELDS).prop_map(str::to_string),
                1 => "[A-Za-z-]{1,12}: [ -~]{0,30}",
            ];
            (
                status,
                any::<bool>(),
                proptest::collection::vec(field, 0..12),
            )
                .prop_map(|(status, http10, fields)| {
                    let mut raw = format!("HTTP/1.{} {status}\r\n", u8::from(!http10));
                    for field in fields {
                        raw.push_str(field.trim_end());
                        raw.push_str("\r\n");
                    }
                    raw.push_str("\r\n");
                    raw
                })
        }

        proptest! {
            #[test]
            fn any_split_is_incomplete_until_the_end(
                raw in response_head(),
                request_was_head in any::<bool>(),
                cut in any::<proptest::sample::Index>(),
            ) {
                let whole = parse_response_head(raw.as_bytes(), request_was_head);
                let cut = cut.index(raw.len());
                prop_assert_eq!(parse_response_head(&raw.as_bytes()[..cut], request_was_head), Ok(None));
                let mut longer = raw.clone().into_bytes();
                longer.extend_from_slice(b"body bytes");
                prop_assert_eq!(parse_response_head(&longer, request_was_head), whole);
                if let Ok(Some(parsed)) = whole {
                    prop_assert_eq!(parsed.head_len, raw.len());
                }
            }

            #[test]
            fn client_heads_parse_and_frame_once(
                raw in response_head(),
                request_was_head in any::<bool>(),
                client_http10 in any::<bool>(),
                keep_alive in any::<bool>(),
            ) {
                let Ok(Some(parsed)) = parse_response_head(raw.as_bytes(), request_was_head) else {
                    return Ok(());
                };
                let origins = vec!["http://localhost:3001".to_string()];
                let mut view = rewriting(&origins, "/v1", "/api");
                view.client_http10 = client_http10;
                view.keep_alive = keep_alive;
                view.date = Some("Sun, 06 Nov 1994 08:49:37 GMT");
                let mut out = Vec::new();
                let body = write_client_head(raw.as_bytes(), &parsed, &view, &mut out);
                // The proxy's way, with the fields of the one parse, writes the same.
                let mut slots = header_slots();
                let fields = parse_response_fields(raw.as_bytes(), request_was_head, &mut slots);
                let Ok(Some(fields)) = fields else {
                    return Err(TestCaseError::fail("parsed once, not twice"));
                };
                prop_assert_eq!(fields.head, parsed);
                let mut same = Vec::new();
                prop_assert_eq!(write_parsed_head(&fields, &view, &mut same), body);
                prop_assert_eq!(&same, &out);
                let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS + 8];
                let mut check = httparse::Response::new(&mut headers);
                prop_assert_eq!(check.parse(&out), Ok(httparse::Status::Complete(out.len())));
                let count = |name: &str| check.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
                let (lengths, chunked) = (count("content-length"), count("transfer-encoding"));
                match body {
                    ClientBody::Length(_) => prop_assert_eq!((lengths, chunked), (1, 0)),
                    ClientBody::Chunked => prop_assert_eq!((lengths, chunked), (0, 1)),
                    ClientBody::UntilClose => prop_assert_eq!((lengths, chunked), (0, 0)),
                    ClientBody::None => prop_assert!(lengths <= 1 && chunked == 0),
                }
                if client_http10 {
                    prop_assert!(body != ClientBody::Chunked);
                }
                prop_assert!(count("connection") <= 1);
                prop_assert_eq!(count("keep-alive"), 0);
                // A final answer has a Date: the backend's, or else rill's.
                if parsed.status >= 200 && !raw.to_ascii_lowercase().contains("\r\ndate:") {
                    prop_assert_eq!(count("date"), 1);
                }
                if raw.contains("Connection: keep-alive, x-a") {
                    prop_assert_eq!(count("x-a"), 0);
                }
                if parsed.status != 101 {
                    prop_assert_eq!(count("upgrade"), 0);
                }
            }
        }
    }
}
