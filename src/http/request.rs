//! Parsing a request head from bytes: the first sans-IO step of every request.
//!
//! [`parse_head`] takes whatever the connection has buffered so far and answers
//! one of three things: "not complete yet", "here is a request and the number of
//! bytes its head used", or "this is bad input, answer with this status". It
//! never touches a socket, so every rule below is tested on byte slices.
//!
//! The rules are those of RFC 9112 that a file server has to enforce itself:
//! head and request-target size limits, exactly one `Host` on HTTP/1.1, framing
//! that cannot be read two ways (request smuggling), and `Connection` handling.

use super::response::Status;
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// Largest request head accepted; a longer one is answered with 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Longest request-target accepted; a longer one is answered with 414.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Most header fields accepted in one head; more is answered with 431.
/// Apache's default (`LimitRequestFields`): browsers send about 20, and
/// 64 refused heads that proxies and SDKs had grown to 700 bytes.
pub const MAX_HEADERS: usize = 100;

/// The request methods rill knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
    /// Any other method (WebDAV's `PROPFIND`, `QUERY`, ...): the file server
    /// does not implement it (501), a route's backend may.
    /// [`Request::method_name`] has its name.
    Other,
}

impl Method {
    fn from_bytes(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// The method's name as it appears on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Other => "OTHER",
        }
    }
}

/// How the request says its body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body framing at all: no `Content-Length` and no `Transfer-Encoding`.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head: the few header values rill acts on, borrowed from
/// the buffer the head was parsed from, so that parsing allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The method as sent (httparse has checked it is a token).
    pub method_name: &'a str,
    /// The request-target in origin form (`/path?query`), still percent-encoded.
    /// An absolute-form target (`http://host/path`) is reduced to its path here;
    /// only `http://host?query` needs a new string (`/?query`).
    pub target: Cow<'a, str>,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the client allows the connection to stay open after this response.
    pub keep_alive: bool,
    pub body: BodyFraming,
    pub range: Option<&'a str>,
    pub if_match: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_range: Option<&'a str>,
    pub expect: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub accept: Option<&'a str>,
    /// `Accept-Encoding`, for choosing a precompressed sibling
    /// (see [`super::encoding::choose`]).
    pub accept_encoding: Option<&'a str>,
    /// The `Host` value, as sent.
    pub host: Option<&'a str>,
    /// The protocols of `Upgrade`, when the request asks to upgrade: an
    /// HTTP/1.1 request with `Upgrade` and `upgrade` among its `Connection`
    /// options (RFC 9110 §7.8). Only a proxied request can be upgraded.
    pub upgrade: Option<&'a str>,
    /// `Sec-Fetch-Dest`: what the browser will do with the answer
    /// (`document` for a page it shows; `empty` for `fetch`).
    pub fetch_dest: Option<&'a str>,
    /// `Authorization`, for `--auth`.
    pub authorization: Option<&'a str>,
    /// The request-target as sent, before `target` reduced it to origin form.
    pub raw_target: &'a str,
    /// Every field line as sent, in order: what [`super::forward`] rebuilds
    /// a head for a backend from, without parsing it again.
    pub fields: &'a [httparse::Header<'a>],
}

impl Request<'_> {
    /// The target as the access log shows it: for an extension method
    /// ([`Method::Other`]), its name goes first (`PROPFIND /dav/x`), since
    /// the log's method column can only name the methods rill knows.
    pub fn logged_target(&self) -> String {
        match self.method {
            Method::Other => format!("{} {}", self.method_name, self.target),
            _ => self.target.to_string(),
        }
    }

    /// The client waits for `100 Continue` before it sends its body.
    pub fn expects_continue(&self) -> bool {
        self.expect
            .is_some_and(|expect| expect.eq_ignore_ascii_case("100-continue"))
    }
}

/// Why a head could not be accepted: the status to answer with and a short reason
/// for the body and the log. After any of these the connection is closed, since
/// its framing can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadError {
    pub status: Status,
    pub reason: &'static str,
}

fn reject(status: Status, reason: &'static str) -> HeadError {
    HeadError { status, reason }
}

/// The outcome of looking at the bytes buffered so far.
// Lives on the stack for one call; boxing the request would cost an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// More bytes are needed; nothing is consumed.
    Partial,
    /// A whole head: the request, and how many bytes of the buffer it took.
    Complete(Request<'a>, usize),
}

/// Room for the fields of one request head, for [`parse_head`]. The caller
/// keeps it, so that the request's `fields` live as long as its bytes.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Empty [`HeaderSlots`]. Left uninitialised: httparse fills in only the
/// slots it uses, and zeroing all 64 first was half the cost of parsing a
/// small head (140 ns with it, 67 without, in `cargo bench --bench http`).
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Parses one request head from the start of `buf`, its fields into `slots`.
///
/// Leading empty lines are skipped (RFC 9112 §2.2 lets a server ignore them, and
/// some clients send a stray CRLF after a body).
pub fn parse_head<'a>(
    buf: &'a [u8],
    slots: &'a mut HeaderSlots<'a>,
) -> Result<Parsed<'a>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let status = match req.parse_with_uninit_headers(buf, slots) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(
                Status::HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            ))
        }
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(reject(Status::BAD_REQUEST, "malformed request head")),
    };
    let head_len = match status {
        httparse::Status::Partial => return partial_verdict(buf),
        httparse::Status::Complete(len) => len,
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(reject(
            Status::HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ));
    }
    // httparse fills these in whenever it returns Complete.
    let (Some(method), Some(path), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(reject(Status::BAD_REQUEST, "malformed request line"));
    };
    if path.len() > MAX_TARGET_BYTES {
        return Err(reject(Status::URI_TOO_LONG, "request-target too long"));
    }
    let fields: &'a [httparse::Header<'a>] = &*std::mem::take(&mut req.headers);
    let method_name = method;
    let method = Method::from_bytes(method);
    let target = origin_form(method, path)?;

    let mut host_count = 0;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut request = Request {
        method,
        method_name,
        target,
        minor_version,
        keep_alive: false,
        body: BodyFraming::None,
        range: None,
        if_match: None,
        if_unmodified_since: None,
        if_none_match: None,
        if_modified_since: None,
        if_range: None,
        expect: None,
        content_type: None,
        accept: None,
        accept_encoding: None,
        host: None,
        upgrade: None,
        fetch_dest: None,
        authorization: None,
        raw_target: path,
        fields,
    };
    let mut conn_upgrade = false;
    let mut upgrade = None;
    for header in fields {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("host") {
            host_count += 1;
            let host = text_value(value)?;
            if !is_valid_host(host) {
                return Err(reject(Status::BAD_REQUEST, "invalid Host"));
            }
            request.host = Some(host);
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(value)?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(reject(Status::BAD_REQUEST, "conflicting Content-Length"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                // Joining repeated fields would be legal, but nothing honest sends
                // them and they are a classic smuggling vector.
                return Err(reject(Status::BAD_REQUEST, "repeated Transfer-Encoding"));
            }
            transfer_encoding = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in comma_list(value) {
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                conn_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("range") {
            request.range = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("if-match") {
            request.if_match = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("if-unmodified-since") {
            request.if_unmodified_since = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            request.if_none_match = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            request.if_modified_since = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("if-range") {
            request.if_range = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("expect") {
            request.expect = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("content-type") {
            request.content_type = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("accept") {
            request.accept = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            request.accept_encoding = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("sec-fetch-dest") {
            request.fetch_dest = Some(text_value(value)?);
        } else if name.eq_ignore_ascii_case("authorization") {
            request.authorization = Some(text_value(value)?);
        }
    }
    if minor_version == 1 && host_count != 1 {
        return Err(reject(
            Status::BAD_REQUEST,
            "HTTP/1.1 needs exactly one Host",
        ));
    }
    if host_count > 1 {
        return Err(reject(Status::BAD_REQUEST, "repeated Host"));
    }
    if let Some(authority) = absolute_authority(path) {
        // RFC 9112 §3.2.2: the target's authority wins over Host.
        if authority.is_empty() || !is_valid_host(authority) {
            return Err(reject(
                Status::BAD_REQUEST,
                "invalid authority in the target",
            ));
        }
        request.host = Some(authority);
    }
    request.body = match (content_length, transfer_encoding) {
        (Some(_), Some(_)) => {
            return Err(reject(
                Status::BAD_REQUEST,
                "both Content-Length and Transfer-Encoding",
            ))
        }
        (None, None) => BodyFraming::None,
        (Some(length), None) => BodyFraming::Length(length),
        (None, Some(codings)) => {
            if minor_version == 0 {
                return Err(reject(Status::BAD_REQUEST, "Transfer-Encoding in HTTP/1.0"));
            }
            transfer_coding(codings)?
        }
    };
    if minor_version == 1 && conn_upgrade {
        request.upgrade = upgrade.filter(|protocols| !protocols.is_empty());
    }
    request.keep_alive = match minor_version {
        1 => !conn_close,
        _ => conn_keep_alive && !conn_close,
    };
    Ok(Parsed::Complete(request, head_len))
}

/// An incomplete head is fine unless it is already over a limit: then it will
/// never be accepted, and waiting for the rest would only let a client make us
/// buffer without end.
fn partial_verdict(buf: &[u8]) -> Result<Parsed<'static>, HeadError> {
    let request_line_done = buf.contains(&b'\n');
    if !request_line_done && buf.len() > MAX_TARGET_BYTES + 64 {
        return Err(reject(Status::URI_TOO_LONG, "request-target too long"));
    }
    if buf.len() > MAX_HEAD_BYTES {
        return Err(reject(
            Status::HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ));
    }
    Ok(Parsed::Partial)
}

/// httparse calls any version other than 1.0 and 1.1 an error. A well-formed
/// request line with a `HTTP/d.d` version gets 505; anything else is plain
/// garbage, 400.
///
/// httparse also reports a version error whenever the target is followed by
/// anything but a version, so `GET /a b HTTP/1.1` (a space inside the target)
/// lands here too. Looking only at the last word would call that a version
/// problem; a request line is `method SP target SP version` with exactly two
/// single spaces, and anything else is malformed.
fn version_error(buf: &[u8]) -> HeadError {
    let malformed = reject(Status::BAD_REQUEST, "malformed request line");
    // httparse skips empty lines before the request line, so they are not it.
    let mut rest = buf;
    while let Some(after) = rest
        .strip_prefix(b"\r\n")
        .or_else(|| rest.strip_prefix(b"\n"))
    {
        rest = after;
    }
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = rest[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&rest[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return malformed;
    };
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if !method.is_empty()
                && !target.is_empty()
                && major.is_ascii_digit()
                && minor.is_ascii_digit() =>
        {
            reject(Status::VERSION_NOT_SUPPORTED, "HTTP version not supported")
        }
        _ => malformed,
    }
}

/// Reduces the request-target to origin form (RFC 9112 §3.2).
fn origin_form(method: Method, target: &str) -> Result<Cow<'_, str>, HeadError> {
    if method == Method::Connect && target.starts_with('/') {
        // CONNECT names a host and port, never a path (§3.2.3). Forwarded,
        // a 2xx to it would make a tunnel of a connection rill reads as HTTP.
        return Err(reject(Status::BAD_REQUEST, "CONNECT needs host:port"));
    }
    if target.starts_with('/') {
        return Ok(Cow::Borrowed(target));
    }
    if method == Method::Connect {
        // authority-form; rill is no proxy, the method answer (405) says so.
        return Ok(Cow::Borrowed(target));
    }
    if target == "*" {
        return match method {
            Method::Options => Ok(Cow::Borrowed(target)),
            _ => Err(reject(Status::BAD_REQUEST, "asterisk-form needs OPTIONS")),
        };
    }
    // absolute-form: a server must accept it (§3.2.2) and use its path.
    let Some(rest) = after_scheme(target) else {
        return Err(reject(Status::BAD_REQUEST, "invalid request-target"));
    };
    if rest.contains('#') {
        // An absolute-URI has no fragment (§3.2.2); read as one, `#x/api`
        // would hide its path from a proxy in front that routes on it.
        return Err(reject(
            Status::BAD_REQUEST,
            "a fragment in the request-target",
        ));
    }
    match rest.find(['/', '?']) {
        Some(at) if rest.as_bytes()[at] == b'/' => Ok(Cow::Borrowed(&rest[at..])),
        Some(at) => Ok(Cow::Owned(format!("/{}", &rest[at..]))),
        None => Ok(Cow::Borrowed("/")),
    }
}

/// `Content-Length` is 1*DIGIT: no sign, no hex, no spaces inside, no overflow.
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    let bad = || reject(Status::BAD_REQUEST, "invalid Content-Length");
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    value
        .iter()
        .try_fold(0u64, |acc, &digit| {
            acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .ok_or_else(bad)
}

/// Only `chunked` alone is a framing rill can read; `chunked` must be last
/// (RFC 9112 §6.3), and any other coding is not implemented.
fn transfer_coding(value: &[u8]) -> Result<BodyFraming, HeadError> {
    let codings: Vec<&[u8]> = comma_list(value).collect();
    match codings.as_slice() {
        [only] if only.eq_ignore_ascii_case(b"chunked") => Ok(BodyFraming::Chunked),
        [] => Err(reject(Status::BAD_REQUEST, "empty Transfer-Encoding")),
        [.., last] if !last.eq_ignore_ascii_case(b"chunked") => Err(reject(
            Status::BAD_REQUEST,
            "Transfer-Encoding does not end in chunked",
        )),
        _ => Err(reject(
            Status::NOT_IMPLEMENTED,
            "unsupported transfer-coding",
        )),
    }
}

fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// What follows `http://` or `https://` (any case) in an absolute-form
/// target; `None` for any other form.
fn after_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let start = target.get(..scheme.len())?;
        start
            .eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// The authority of an absolute-form target (`http://host:port/path`), as
/// written; `None` for any other form (at once for the usual `/path`).
pub fn absolute_authority(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return None;
    }
    let rest = after_scheme(target)?;
    Some(&rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())])
}

/// The bytes of a reg-name (RFC 3986 §3.2.2: unreserved, sub-delims, and
/// `%` of a pct-encoding), as a table: `Host` is checked on every request.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        b += 1;
    }
    table
};

/// How the access log names a request whose head was refused, read from
/// the request line at the start of `buf` when it is one (`TOKEN SP TARGET
/// SP HTTP/…`): a smuggling attempt refused for its fields (both lengths,
/// a bad `Host`) is logged as the `POST /api` it was, not as `GET -`. The
/// target is `-` when the line is not shaped so, or longer than rill takes.
/// An extension method's name goes before the target, as in
/// [`Request::logged_target`].
pub fn refused_request_line(buf: &[u8]) -> (Method, String) {
    let unknown = (Method::Get, String::from("-"));
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n');
    let Some(line) = start.map(|start| &buf[start..]) else {
        return unknown;
    };
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return unknown;
    };
    let is_token = |word: &[u8]| {
        !word.is_empty()
            && word
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let visible = |word: &[u8]| !word.is_empty() && word.iter().all(|b| (0x21..=0x7e).contains(b));
    if !is_token(method)
        || !visible(target)
        || target.len() > MAX_TARGET_BYTES
        || !version.starts_with(b"HTTP/")
    {
        return unknown;
    }
    // Both checked to be ASCII above.
    let (method_name, target) = (
        String::from_utf8_lossy(method),
        String::from_utf8_lossy(target),
    );
    match Method::from_bytes(&method_name) {
        Method::Other => (Method::Other, format!("{method_name} {target}")),
        known => (known, target.into_owned()),
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): a
/// reg-name, an IPv4 address or a bracketed IP literal, and a port of at
/// most 65535. Empty is allowed (a target without an authority). No
/// userinfo, quotes, backslashes or spaces: the value goes on to
/// `X-Forwarded-Host`, `Forwarded` and rewritten `Location`s.
fn is_valid_host(host: &str) -> bool {
    // One pass from the end over the port's digits, then one over the name:
    // this runs on every request, and `rfind` plus `parse` cost three
    // times as much.
    let bytes = host.as_bytes();
    let digits = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let colon = bytes.len() - digits;
    let (name, port) = match colon.checked_sub(1) {
        Some(at) if bytes[at] == b':' => (&bytes[..at], &bytes[colon..]),
        _ => (bytes, &[][..]),
    };
    let name_ok = match name.strip_prefix(b"[") {
        Some(literal) => literal.strip_suffix(b"]").is_some_and(|inside| {
            !inside.is_empty()
                && inside
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        }),
        None => name.iter().all(|&b| REG_NAME[usize::from(b)]),
    };
    // Leading zeros are allowed (RFC 3986 §3.2.3: `port = *DIGIT`).
    let port_ok = port
        .iter()
        .try_fold(0u32, |value, b| {
            let value = value * 10 + u32::from(b - b'0');
            (value <= u32::from(u16::MAX)).then_some(value)
        })
        .is_some();
    name_ok && port_ok
}

fn text_value(value: &[u8]) -> Result<&str, HeadError> {
    std::str::from_utf8(value)
        .map(str::trim)
        .map_err(|_| reject(Status::BAD_REQUEST, "header value is not text"))
}

/// [`parse_head`] with slots of its own, leaked: for tests that keep the
/// request.
#[cfg(test)]
pub fn parse_head_leaking(buf: &[u8]) -> Result<Parsed<'_>, HeadError> {
    parse_head(buf, Box::leak(Box::new(header_slots())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Request<'_>, HeadError> {
        match parse_head_leaking(raw.as_bytes())? {
            Parsed::Complete(req, len) => {
                assert_eq!(len, raw.len(), "head length");
                Ok(req)
            }
            Parsed::Partial => panic!("partial: {raw:?}"),
        }
    }

    fn status_of(raw: &str) -> u16 {
        parse(raw).expect_err("should be rejected").status.code()
    }

    #[test]
    fn a_refused_head_is_named_by_its_request_line() {
        let named = |raw: &str| refused_request_line(raw.as_bytes());
        assert_eq!(
            named("POST /a?b HTTP/1.1\r\nHost: t\r\n"),
            (Method::Post, "/a?b".into())
        );
        assert_eq!(named("\r\nGET / HTTP/1.0\n"), (Method::Get, "/".into()));
        assert_eq!(
            named("BREW /pot HTTP/1.1\r\n"),
            (Method::Other, "BREW /pot".into())
        );
        let unknown = (Method::Get, String::from("-"));
        for raw in [
            "",
            "\r\n",
            "GET /a b HTTP/1.1\r\n",
            "GET /a\x01 HTTP/1.1\r\n",
            "G(T / HTTP/1.1\r\n",
            "GET / FTP/1.1\r\n",
            "GET /\r\n",
            "hello",
        ] {
            assert_eq!(named(raw), unknown, "{raw:?}");
        }
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(named(&long), unknown);
    }

    #[test]
    fn simple_get() {
        let req = parse("GET /a/b?c HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.target, "/a/b?c");
        assert!(req.keep_alive);
        assert_eq!(req.body, BodyFraming::None);
    }

    #[test]
    fn partial_until_blank_line() {
        let raw = b"GET / HTTP/1.1\r\nHost: x\r\n";
        for end in 0..raw.len() {
            assert_eq!(
                parse_head_leaking(&raw[..end]),
                Ok(Parsed::Partial),
                "prefix {end}"
            );
        }
    }

    #[test]
    fn head_length_excludes_pipelined_bytes() {
        let raw = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n";
        match parse_head_leaking(raw).unwrap() {
            Parsed::Complete(req, len) => {
                assert_eq!(req.target, "/1");
                assert_eq!(&raw[len..], b"GET /2 HTTP/1.1\r\n");
            }
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn keep_alive_rules() {
        let http10 = parse("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!http10.keep_alive);
        let http10_ka = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(http10_ka.keep_alive);
        let close = parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(!close.keep_alive);
    }

    #[test]
    fn host_rules() {
        assert_eq!(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
        assert!(parse("GET / HTTP/1.0\r\n\r\n").is_ok());
    }

    #[test]
    fn framing_rules() {
        let h = "GET / HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(
            parse(&format!("{h}Content-Length: 5\r\n\r\n"))
                .unwrap()
                .body,
            BodyFraming::Length(5)
        );
        assert_eq!(
            parse(&format!(
                "{h}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
            ))
            .unwrap()
            .body,
            BodyFraming::Length(5)
        );
        assert_eq!(
            parse(&format!("{h}Transfer-Encoding: chunked\r\n\r\n"))
                .unwrap()
                .body,
            BodyFraming::Chunked
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Content-Length: 18446744073709551616\r\n",
            "Content-Length: 1 2\r\n",
            "Content-Length: \r\n",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(status_of(&format!("{h}{bad}\r\n")), 400, "{bad:?}");
        }
        assert_eq!(
            status_of(&format!("{h}Transfer-Encoding: gzip, chunked\r\n\r\n")),
            501
        );
        assert_eq!(
            status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn methods_and_versions() {
        // Any token is a method; the file server answers 501 to those it
        // does not know, a route forwards them.
        let Ok(Parsed::Complete(brew, _)) =
            parse_head_leaking(b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n")
        else {
            panic!("an extension method is a request");
        };
        assert_eq!((brew.method, brew.method_name), (Method::Other, "BREW"));
        assert_eq!(status_of("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status_of("GET / HTTP/1.2\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
        assert_eq!(status_of("GET / HTTX/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status_of("GET /\r\n\r\n"), 400);
        assert_eq!(status_of("\r\nGET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status_of("\n\r\nGET / HTTP/3.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(
            status_of("\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03\r\n\r\n"),
            400
        );
    }

    #[test]
    fn space_inside_the_target_is_malformed_not_a_version() {
        for line in [
            "GET /a b HTTP/1.1",
            "GET /a b HTTP/1.0",
            "GET /a b HTTP/2.0",
            "GET /a%20b c d HTTP/1.1",
            "GET / HTTP/2.0 HTTP/2.0",
            "\r\nGET /a b HTTP/1.1",
        ] {
            let err = parse_head_leaking(format!("{line}\r\nHost: x\r\n\r\n").as_bytes())
                .expect_err(line);
            assert_eq!(err.status.code(), 400, "{line:?}");
            assert_eq!(err.reason, "malformed request line", "{line:?}");
        }
        // Still incomplete: the verdict must not wait for the line's end.
        let err = parse_head_leaking(b"GET /a b HTTP/1.1").unwrap_err();
        assert_eq!(err.status.code(), 400);
    }

    #[test]
    fn target_forms() {
        let abs = parse("GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(abs.unwrap().target, "/a?b");
        let bare = parse("GET HTTP://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(bare.unwrap().target, "/");
        assert_eq!(status_of("GET * HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(
            parse("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .target,
            "*"
        );
        assert_eq!(status_of("GET foo HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        // `#x/api/a` is a fragment, not a path a proxy in front would see.
        assert_eq!(
            status_of("GET http://a#x/api/a HTTP/1.1\r\nHost: x\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of("GET http://a/b#c HTTP/1.1\r\nHost: x\r\n\r\n"),
            400
        );
        let connect = parse("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(connect.unwrap().method, Method::Connect);
        assert_eq!(status_of("CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    }

    #[test]
    fn host_values_are_checked_and_an_absolute_target_names_the_host() {
        for good in [
            "t",
            "example.test:8080",
            "127.0.0.1:1",
            "[::1]:443",
            "[::1]",
            "a.b:",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            assert_eq!(parse(&raw).unwrap().host, Some(good), "{good}");
        }
        for bad in [
            "a\"b", "a\\b", "u@h", "h:99999", "h:8x", "h/x", "[::1", "[zz]",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(status_of(&raw), 400, "{bad}");
        }
        let absolute = parse("GET http://other.example:81/x?q HTTP/1.1\r\nHost: t\r\n\r\n");
        let absolute = absolute.unwrap();
        assert_eq!(
            (absolute.target.as_ref(), absolute.host),
            ("/x?q", Some("other.example:81"))
        );
        for bad in ["http://user@h/x", "http://h:99999/x", "http:///x"] {
            let raw = format!("GET {bad} HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(status_of(&raw), 400, "{bad}");
        }
    }

    #[test]
    fn size_limits() {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(status_of(&long_target), 414);
        // A target too long to ever finish is refused before its line ends.
        let unfinished = format!("GET /{}", "a".repeat(MAX_TARGET_BYTES + 100));
        assert_eq!(
            parse_head_leaking(unfinished.as_bytes())
                .unwrap_err()
                .status
                .code(),
            414
        );
        let big_header = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(17000));
        assert_eq!(
            parse_head_leaking(big_header.as_bytes())
                .unwrap_err()
                .status
                .code(),
            431
        );
        let fields = |count: usize| -> String {
            let many: String = (1..count).map(|i| format!("X-{i}: y\r\n")).collect();
            format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")
        };
        assert_eq!(status_of(&fields(MAX_HEADERS + 1)), 431);
        // Host and 99 more, as a proxy-laden SDK may send.
        assert!(parse(&fields(MAX_HEADERS)).is_ok());
        assert_eq!(MAX_HEADERS, 100);
    }

    #[test]
    fn bad_header_bytes() {
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: x\r\nBad Name: a\r\n\r\n"),
            400
        );
    }

    #[test]
    fn host_and_upgrade_are_kept() {
        let req = parse(
            "GET /ws HTTP/1.1\r\nHost: a:1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        )
        .unwrap();
        assert_eq!(req.host, Some("a:1"));
        assert_eq!(req.upgrade, Some("websocket"));
        // Upgrade without the connection option, or on HTTP/1.0, is no request to upgrade.
        let req = parse("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert_eq!(req.upgrade, None);
        let req =
            parse("GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n").unwrap();
        assert_eq!((req.upgrade, req.host), (None, None));
    }

    #[test]
    fn conditional_headers_kept() {
        let req = parse(
            "GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nIf-None-Match: \"a\"\r\n\
             If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nIf-Range: \"a\"\r\n\
             if-match: \"b\"\r\nIf-Unmodified-Since: Sun, 06 Nov 1994 08:49:38 GMT\r\n\r\n",
        )
        .unwrap();
        assert_eq!(req.if_match, Some("\"b\""));
        assert_eq!(
            req.if_unmodified_since,
            Some("Sun, 06 Nov 1994 08:49:38 GMT")
        );
        assert_eq!(req.range, Some("bytes=0-1"));
        assert_eq!(req.if_none_match, Some("\"a\""));
        assert_eq!(req.if_range, Some("\"a\""));
        assert!(req.if_modified_since.is_some());
    }

    #[test]
    fn accept_encoding_kept() {
        let req = parse(
            "GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\naccept-encoding:  gzip, br \r\n\r\n",
        )
        .unwrap();
        assert_eq!(req.accept_encoding, Some("gzip, br"));
        assert_eq!(req.accept, Some("*/*"));
        // Present but empty is not absent: it asks for no coding at all.
        let req = parse("GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding:\r\n\r\n").unwrap();
        assert_eq!(req.accept_encoding, Some(""));
        let req = parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(req.accept_encoding, None);
    }

    #[test]
    fn leading_empty_lines_skipped() {
        let raw = "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse(raw).unwrap().target, "/");
    }
}
