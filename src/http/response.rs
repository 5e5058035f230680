//! Rendering response heads and the short error answers, into a byte buffer.
//!
//! Everything here writes into a caller's `Vec<u8>` (the connection's output
//! buffer), so a response head costs no allocation of its own and goes out in
//! the same `write` as the start of its body. Every answer rill makes up itself
//! — 301, 400, 404, 405, 500, ... — is written by [`write_generated`], one
//! function, so they all look alike and all decide keep-alive the same way.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The interim answer to `Expect: 100-continue`, whole.
pub const CONTINUE_HEAD: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// An HTTP status code with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(u16);

impl Status {
    pub const CONTINUE: Status = Status(100);
    pub const OK: Status = Status(200);
    pub const CREATED: Status = Status(201);
    pub const NO_CONTENT: Status = Status(204);
    pub const PARTIAL_CONTENT: Status = Status(206);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const PERMANENT_REDIRECT: Status = Status(308);
    pub const BAD_REQUEST: Status = Status(400);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const CONFLICT: Status = Status(409);
    pub const PRECONDITION_FAILED: Status = Status(412);
    pub const UNSUPPORTED_MEDIA_TYPE: Status = Status(415);
    pub const LENGTH_REQUIRED: Status = Status(411);
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    pub const EXPECTATION_FAILED: Status = Status(417);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const BAD_GATEWAY: Status = Status(502);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const SWITCHING_PROTOCOLS: Status = Status(101);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const TOO_MANY_REQUESTS: Status = Status(429);
    pub const GATEWAY_TIMEOUT: Status = Status(504);
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);
    /// RFC 4918 §11.5: no room to store what a PUT or a form sent.
    pub const INSUFFICIENT_STORAGE: Status = Status(507);

    /// Any status, by its code: a backend's answer may carry one rill never
    /// makes itself.
    pub const fn from_code(code: u16) -> Status {
        Status(code)
    }

    /// The numeric code.
    pub fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase sent on the status line; empty for a code without
    /// a registered one (RFC 9112 §4 allows that).
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            102 => "Processing",
            103 => "Early Hints",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            203 => "Non-Authoritative Information",
            204 => "No Content",
            205 => "Reset Content",
            206 => "Partial Content",
            207 => "Multi-Status",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            421 => "Misdirected Request",
            422 => "Unprocessable Content",
            425 => "Too Early",
            426 => "Upgrade Required",
            428 => "Precondition Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            451 => "Unavailable For Legal Reasons",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            507 => "Insufficient Storage",
            511 => "Network Authentication Required",
            _ => "",
        }
    }

    /// Whether a response with this status may carry a body (RFC 9110 §6.4.1).
    pub fn allows_body(self) -> bool {
        !(self.0 < 200 || self.0 == 204 || self.0 == 304)
    }
}

/// The `Date` header value, rendered at most once per second.
#[derive(Debug, Clone)]
pub struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    /// A cache rendered for `now`.
    pub fn new(now: SystemTime) -> DateCache {
        let mut cache = DateCache {
            second: u64::MAX,
            text: String::new(),
        };
        cache.update(now);
        cache
    }

    /// Re-renders only when the wall-clock second has changed.
    pub fn update(&mut self, now: SystemTime) {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
    }

    /// The second the `Date` value names, as a time: what the dates a
    /// request carries are compared with.
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(self.second)
    }

    /// The current `Date` value, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What every response head ends with, decided per request: the
/// `Connection` header and, with `--cors`, the CORS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommonHeaders {
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// The request was HTTP/1.0, whose default is to close.
    pub http10: bool,
    /// Add `Access-Control-Allow-Origin: *`.
    pub cors: bool,
}

/// Writes one response head into a buffer, field by field.
///
/// ```
/// use rill::http::response::{HeadWriter, CommonHeaders, Status};
/// let mut out = Vec::new();
/// let common = CommonHeaders { keep_alive: true, http10: false, cors: false };
/// HeadWriter::start(&mut out, Status::OK, "Sun, 06 Nov 1994 08:49:37 GMT")
///     .header("Content-Type", "text/plain")
///     .content_length(5)
///     .finish(common);
/// assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
/// assert!(out.ends_with(b"Content-Length: 5\r\n\r\n"));
/// ```
pub struct HeadWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> HeadWriter<'a> {
    /// Writes the status line, `Server` and `Date`.
    pub fn start(out: &'a mut Vec<u8>, status: Status, date: &str) -> HeadWriter<'a> {
        // Pushed piece by piece rather than through `write!`: this runs for
        // every response, and `fmt` was most of the cost of a head (157 ns
        // with it, 66 without, in `cargo bench --bench http`).
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, u64::from(status.code()));
        out.push(b' ');
        out.extend_from_slice(status.reason().as_bytes());
        out.extend_from_slice(b"\r\nServer: rill\r\nDate: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\n");
        HeadWriter { out }
    }

    /// Adds a header field. Values come from rill itself, never raw from a client.
    pub fn header(self, name: &str, value: &str) -> HeadWriter<'a> {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_bytes());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Adds a header field whose value is formatted.
    pub fn header_fmt(self, name: &str, value: std::fmt::Arguments) -> HeadWriter<'a> {
        let _ = write!(self.out, "{name}: {value}\r\n");
        self
    }

    /// Adds `Content-Length`.
    pub fn content_length(self, length: u64) -> HeadWriter<'a> {
        self.out.extend_from_slice(b"Content-Length: ");
        push_decimal(self.out, length);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Adds the `Connection` header when the default for the version is not
    /// what happens, the CORS header when asked for, and the blank line that
    /// ends the head.
    pub fn finish(self, common: CommonHeaders) {
        if common.cors {
            // Without Expose-Headers a page on another origin reads only the
            // safelisted fields: not the range, the ETag to resume with, the
            // file name, or where an upload was stored.
            self.out.extend_from_slice(
                b"Access-Control-Allow-Origin: *\r\n\
                  Access-Control-Expose-Headers: Accept-Ranges, Content-Disposition, \
                  Content-Range, ETag, Location\r\n",
            );
        }
        match (common.keep_alive, common.http10) {
            (false, false) => self.out.extend_from_slice(b"Connection: close\r\n"),
            (true, true) => self.out.extend_from_slice(b"Connection: keep-alive\r\n"),
            _ => {}
        }
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal: what `write!(out, "{n}")` does, without the
/// formatting machinery.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    loop {
        start -= 1;
        // n % 10 < 10, so the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The one extra header a generated answer may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra<'a> {
    None,
    /// `Location`, with 301 or 308.
    Location(&'a str),
    /// `Allow`, with 405.
    Allow(&'a str),
    /// `Content-Range: bytes */SIZE`, with 416.
    UnsatisfiedRange(u64),
    /// `Sec-WebSocket-Version`, with 426: the version rill speaks, and
    /// `Upgrade: websocket`.
    WebSocketVersion(&'a str),
    /// `WWW-Authenticate: Basic realm="rill", charset="UTF-8"`, with 401.
    Authenticate,
    /// `Retry-After` in seconds, with 429.
    RetryAfter(u64),
}

/// Writes a complete generated answer: head and a one-line text body such as
/// `404 Not Found: no such file`. Returns the body length. With `head_only`
/// (a HEAD request) the body is left out but its length is still announced.
pub fn write_generated(
    out: &mut Vec<u8>,
    status: Status,
    detail: &str,
    extra: Extra,
    date: &str,
    mut common: CommonHeaders,
    head_only: bool,
) -> u64 {
    let body_len = error_body_len(status, detail);
    let mut head = HeadWriter::start(out, status, date)
        .header("Content-Type", "text/plain; charset=utf-8")
        .content_length(body_len as u64);
    head = match extra {
        Extra::None => head,
        Extra::Location(url) => head.header("Location", url),
        Extra::Allow(methods) => head.header("Allow", methods),
        Extra::UnsatisfiedRange(size) => {
            head.header_fmt("Content-Range", format_args!("bytes */{size}"))
        }
        // A 426 must name the protocol to upgrade to (RFC 9110 §15.5.22),
        // and an `Upgrade` field goes with `upgrade` in `Connection` (§7.8),
        // in the one `Connection` field: `finish` is told to write none.
        Extra::WebSocketVersion(version) => {
            let connection = if common.keep_alive {
                "upgrade"
            } else {
                "upgrade, close"
            };
            common.keep_alive = !common.http10;
            head.header("Sec-WebSocket-Version", version)
                .header("Upgrade", "websocket")
                .header("Connection", connection)
        }
        Extra::Authenticate => head.header(
            "WWW-Authenticate",
            "Basic realm=\"rill\", charset=\"UTF-8\"",
        ),
        Extra::RetryAfter(secs) => head.header_fmt("Retry-After", format_args!("{secs}")),
    };
    head.finish(common);
    if !head_only {
        let _ = writeln!(out, "{} {}: {}", status.code(), status.reason(), detail);
    }
    body_len as u64
}

fn error_body_len(status: Status, detail: &str) -> usize {
    // "{code} {reason}: {detail}\n"
    3 + 1 + status.reason().len() + 2 + detail.len() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn connection_header_only_when_not_default() {
        let cases = [
            (true, false, None),
            (false, false, Some("Connection: close")),
            (true, true, Some("Connection: keep-alive")),
            (false, true, None),
        ];
        for (keep_alive, http10, expected) in cases {
            let mut out = Vec::new();
            HeadWriter::start(&mut out, Status::OK, DATE).finish(CommonHeaders {
                keep_alive,
                http10,
                cors: false,
            });
            let has_conn = text(&out).contains("Connection:");
            assert_eq!(has_conn, expected.is_some());
            if let Some(line) = expected {
                assert!(text(&out).contains(line));
            }
            assert!(out.ends_with(b"\r\n\r\n"));
        }
    }

    #[test]
    fn error_answer_is_complete_and_length_is_exact() {
        let mut out = Vec::new();
        let common = CommonHeaders {
            keep_alive: false,
            http10: false,
            cors: false,
        };
        let len = write_generated(
            &mut out,
            Status::METHOD_NOT_ALLOWED,
            "try GET",
            Extra::Allow("GET, HEAD"),
            DATE,
            common,
            false,
        );
        let response = text(&out);
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(head.contains("\r\nAllow: GET, HEAD"));
        assert!(head.contains(&format!("\r\nContent-Length: {len}")));
        assert!(head.contains(&format!("\r\nDate: {DATE}")));
        assert_eq!(body, "405 Method Not Allowed: try GET\n");
        assert_eq!(body.len() as u64, len);
    }

    #[test]
    fn error_answer_to_head_has_no_body() {
        let mut out = Vec::new();
        let common = CommonHeaders {
            keep_alive: true,
            http10: false,
            cors: false,
        };
        let len = write_generated(
            &mut out,
            Status::RANGE_NOT_SATISFIABLE,
            "x",
            Extra::UnsatisfiedRange(10),
            DATE,
            common,
            true,
        );
        assert!(text(&out).contains("Content-Range: bytes */10\r\n"));
        assert!(text(&out).contains(&format!("Content-Length: {len}\r\n")));
        assert!(out.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn date_cache_rerenders_each_second_only() {
        let t0 = UNIX_EPOCH + std::time::Duration::from_secs(784111777);
        let mut cache = DateCache::new(t0);
        assert_eq!(cache.as_str(), DATE);
        cache.update(t0 + std::time::Duration::from_millis(999));
        assert_eq!(cache.as_str(), DATE);
        cache.update(t0 + std::time::Duration::from_secs(1));
        assert_eq!(cache.as_str(), "Sun, 06 Nov 1994 08:49:38 GMT");
    }

    #[test]
    fn decimals_match_display() {
        for n in [0, 7, 10, 99, 1024, 1 << 40, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(text(&out), format!("x{n}"));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_length_is_written_as_display_writes_it(n: u64) {
            let mut out = Vec::new();
            HeadWriter::start(&mut out, Status::PARTIAL_CONTENT, DATE)
                .content_length(n)
                .finish(CommonHeaders { keep_alive: true, ..CommonHeaders::default() });
            let expected = format!(
                "HTTP/1.1 206 Partial Content\r\nServer: rill\r\nDate: {DATE}\r\nContent-Length: {n}\r\n\r\n"
            );
            proptest::prop_assert_eq!(text(&out), expected);
        }
    }

    #[test]
    fn bodiless_statuses() {
        assert!(!Status::NOT_MODIFIED.allows_body());
        assert!(!Status::NO_CONTENT.allows_body());
        assert!(Status::NOT_FOUND.allows_body());
    }
}
