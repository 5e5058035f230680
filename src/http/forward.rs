//! Rebuilding a client's request head for a backend: the request half of
//! rill's reverse-proxy routes.
//!
//! A proxy that copies the client's head passes on whatever the client put
//! in it: hop-by-hop fields meant for rill alone, a `Transfer-Encoding` rill
//! has already decoded, a forged `X-Forwarded-For`. [`write_forward_head`]
//! therefore writes a new head from the parsed one: the client's end-to-end
//! fields in their order, then the fields rill vouches for itself — who the
//! client is, the `Via` hop, and the body framing rill will actually send.
//! The client's fields are filtered before rill adds its own, so nothing a
//! client names in `Connection` can delete a field rill wrote (the
//! CVE-2021-33197 class of bug).

use super::relay::via_line;
use super::request::{absolute_authority, BodyFraming, HeadError, Request};
use super::response::{push_decimal, Status};
use std::io::Write;
use std::net::IpAddr;
use std::ops::Range;

/// What rill sends to the backend in place of what the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<'a> {
    /// The request-target to send (origin form), already rewritten by the route.
    pub target: &'a str,
    /// The client's address: `X-Forwarded-For` and `Forwarded` `for=`.
    pub peer: IpAddr,
    /// `"http"` (later `"https"`): `X-Forwarded-Proto` and `Forwarded` `proto=`.
    pub proto: &'static str,
    /// `Host` to send when the client sent none (an HTTP/1.0 client): the
    /// backend's `HOST:PORT`.
    pub default_host: &'a str,
    /// The body framing to declare.
    pub body: BodyFraming,
    /// Forward the client's `Upgrade` (a WebSocket handshake): keep the
    /// `Upgrade` field and send `Connection: upgrade`.
    pub upgrade: bool,
    /// Drop the client's `Authorization`: with `--auth` it carries rill's
    /// own credentials, which are no business of the backend's.
    pub strip_authorization: bool,
    /// Drop the client's `Expect`: rill answers `100 Continue` itself,
    /// for a backend that speaks HTTP/1.0.
    pub strip_expect: bool,
    /// The prefix the route cut off the path, when it mounts the backend
    /// at it (`--route /py=HOST:PORT/`): sent as `X-Forwarded-Prefix`, so
    /// an app can build links that work from the client's side (Werkzeug's
    /// `ProxyFix(x_prefix=1)`, Spring, ASP.NET and Traefik read it). Empty
    /// for a route that passes paths unchanged or maps them elsewhere.
    pub prefix: &'a str,
}

/// What was learnt about the client's head while rebuilding it.
///
/// The ranges index the `raw_head` given to [`write_forward_head`], so the
/// caller can keep them while it reuses or moves its buffers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forwarded {
    /// The client sent an `Upgrade` field.
    pub upgrade_offered: bool,
    /// The value of the client's (first) `Upgrade` field, for
    /// [`crate::http::relay::offered`].
    pub upgrade: Option<Range<usize>>,
    /// The value of the client's `Host` field; `None` when it was absent or
    /// empty. Rill builds the client-facing origin for `Location` rewriting
    /// from it.
    pub host: Option<Range<usize>>,
}

/// Fields never forwarded: the hop-by-hop ones (RFC 9110 §7.6.1), with
/// `Proxy-Authorization` (credentials for a proxy that asked for them,
/// §11.7.2, which no backend did), the framing rill rewrites itself, and
/// the forwarding fields rill owns as the edge, which a client must not be
/// able to pre-fill (with `X-Real-IP`, `X-Forwarded-Port` and
/// `X-Forwarded-Prefix`, which rill sets only for a mounted backend, but
/// apps behind nginx are often told to trust).
const ALWAYS_STRIPPED: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
];

/// Writes the head rill sends to the backend for the client's `request`
/// into `out`, and says what it saw on the way.
///
/// `request` is what [`crate::http::request::parse_head`] made of
/// `raw_head`; the ranges in [`Forwarded`] point into `raw_head`. On error
/// nothing is written.
pub fn write_forward_head(
    request: &Request,
    raw_head: &[u8],
    forward: &Forward,
    out: &mut Vec<u8>,
) -> Result<Forwarded, HeadError> {
    let bad = |reason| HeadError {
        status: Status::BAD_REQUEST,
        reason,
    };
    // Both end up on the request line or in a field line, where a space or a
    // line break would split the head rill sends. Bytes above 0x7f pass: rill
    // accepts them in a client's target (as httparse does), and the route
    // copies them.
    let target_byte = |b: &u8| (0x21..=0x7e).contains(b) || *b >= 0x80;
    if forward.target.is_empty() || !forward.target.as_bytes().iter().all(target_byte) {
        return Err(bad("invalid request-target"));
    }
    if !is_visible(forward.default_host.as_bytes()) {
        return Err(bad("invalid default Host"));
    }
    if !forward.prefix.is_empty() && !is_visible(forward.prefix.as_bytes()) {
        return Err(bad("invalid prefix"));
    }
    let headers = request.fields;
    // RFC 9112 §3.2.2: an absolute-form target's authority is the host,
    // whatever the Host field says (the request parser checked it).
    let authority =
        absolute_authority(request.raw_target).filter(|authority| !authority.is_empty());

    let mut seen = Forwarded::default();
    let mut host_sent = false;
    let mut has_connection = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("host") {
            if !host_sent {
                let value = header.value.trim_ascii();
                seen.host = (!value.is_empty()).then(|| range_in(raw_head, value));
            }
            host_sent = true;
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            if !seen.upgrade_offered {
                seen.upgrade = Some(range_in(raw_head, header.value.trim_ascii()));
            }
            seen.upgrade_offered = true;
        } else if header.name.eq_ignore_ascii_case("connection") {
            has_connection = true;
        }
    }

    out.extend_from_slice(request.method_name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(forward.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(authority) = authority {
        field(out, b"Host", authority.as_bytes());
        // The client's Host fields are left out below.
        seen.host = Some(range_in(raw_head, authority.as_bytes()));
    } else if !host_sent {
        // RFC 9112 §3.2: Host first, where an origin server looks for it.
        field(out, b"Host", forward.default_host.as_bytes());
    }
    let mut upgrade_kept = false;
    for header in headers {
        let name = header.name.as_bytes();
        if !keeps(name, forward) {
            continue;
        }
        // RFC 9110 §10.1.1: an HTTP/1.0 client's Expect is ignored.
        if (request.minor_version == 0 || forward.strip_expect) && same_name(name, b"expect") {
            continue;
        }
        // Host is what the backend routes on and what rill reports as
        // X-Forwarded-Host; a client cannot make it vanish by naming it.
        // Upgrade is named in Connection by every upgrade request.
        if authority.is_some() && name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        let exempt = name.eq_ignore_ascii_case(b"host")
            || (forward.upgrade && name.eq_ignore_ascii_case(b"upgrade"));
        if has_connection && !exempt && named_in_connection(headers, name) {
            continue;
        }
        upgrade_kept |= name.eq_ignore_ascii_case(b"upgrade");
        field(out, name, header.value);
    }

    let peer = forward.peer.to_canonical();
    // Written once, copied twice: formatting costs more than the copy.
    let at = out.len();
    out.extend_from_slice(b"X-Forwarded-For: ");
    push_ip(out, peer);
    let peer_text = (at + b"X-Forwarded-For: ".len())..out.len();
    out.extend_from_slice(b"\r\n");
    field(out, b"X-Forwarded-Proto", forward.proto.as_bytes());
    let host = seen.host.clone().and_then(|range| raw_head.get(range));
    if let Some(host) = host {
        field(out, b"X-Forwarded-Host", host);
    }
    if !forward.prefix.is_empty() {
        field(out, b"X-Forwarded-Prefix", forward.prefix.as_bytes());
    }
    // RFC 7239 §4, §6: an IPv6 node is bracketed, and the `:` then needs a
    // quoted-string.
    match peer {
        IpAddr::V4(_) => {
            out.extend_from_slice(b"Forwarded: for=");
            out.extend_from_within(peer_text);
        }
        IpAddr::V6(_) => {
            out.extend_from_slice(b"Forwarded: for=\"[");
            out.extend_from_within(peer_text);
            out.extend_from_slice(b"]\"");
        }
    }
    if let Some(host) = host {
        out.extend_from_slice(b";host=");
        push_quoted(out, host);
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(forward.proto.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(via_line(request.minor_version));
    match forward.body {
        BodyFraming::None => {}
        BodyFraming::Length(length) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, length);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    if upgrade_kept {
        out.extend_from_slice(b"Connection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(seen)
}

/// Whether a client field of this name survives the fixed rules (the
/// `Connection`-named ones are checked separately).
fn keeps(name: &[u8], forward: &Forward) -> bool {
    if ALWAYS_STRIPPED
        .iter()
        .any(|stripped| same_name(name, stripped.as_bytes()))
    {
        return false;
    }
    if same_name(name, b"upgrade") {
        return forward.upgrade;
    }
    if same_name(name, b"authorization") {
        return !forward.strip_authorization;
    }
    if same_name(name, b"trailer") {
        // Trailer announces fields after a chunked body, and a request's
        // trailers are not forwarded (the decoder drops them): announcing
        // them would promise what never comes.
        return false;
    }
    true
}

/// Field names compare case-insensitively, and `_` counts as `-`: many
/// backends (CGI, PHP, Django, Rack) map both to the same variable, so
/// `X_Forwarded_For` would otherwise smuggle a forged address past the
/// filter.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let fold = |byte: u8| match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
}

/// Whether any `Connection` field lists `name` as a hop-by-hop field.
fn named_in_connection(headers: &[httparse::Header], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("connection"))
        .flat_map(|header| comma_list(header.value))
        .any(|token| same_name(token, name))
}

/// Appends `ip` as `Display` writes it; an IPv4 address (every request
/// from a local or LAN client) without the formatting machinery, which
/// showed in the proxy's profile.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Into a stack buffer, then one copy: four `push_decimal`s
            // checked the vector's capacity once per digit run.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A quoted-string (RFC 9110 §5.6.4). httparse let only HTAB, SP, VCHAR and
/// obs-text into a field value, all of which a quoted-string may carry once
/// `"` and `\` are escaped.
fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &byte in value {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

fn is_visible(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// Where `part`, a sub-slice httparse borrowed from `buf`, lies within it.
fn range_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head_leaking, Parsed, MAX_HEADERS};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            IpAddr::V4(Ipv4Addr::new(10, 200, 9, 30)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ] {
            let mut out = Vec::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes());
        }
    }

    fn forward(body: BodyFraming, upgrade: bool) -> Forward<'static> {
        Forward {
            target: "/v1/x?y",
            peer: PEER,
            proto: "http",
            default_host: "127.0.0.1:3000",
            body,
            upgrade,
            strip_authorization: false,
            strip_expect: false,
            prefix: "",
        }
    }

    /// The request `parse_head` reads in `raw`, which it must accept.
    fn request(raw: &str) -> Request<'_> {
        match parse_head_leaking(raw.as_bytes()) {
            Ok(Parsed::Complete(request, _)) => request,
            other => panic!("parse_head rejects {raw:?}: {other:?}"),
        }
    }

    /// Rebuilds `raw` and returns the head as text.
    fn rebuild(raw: &str, forward: &Forward) -> (String, Forwarded) {
        let mut out = Vec::new();
        let seen = write_forward_head(&request(raw), raw.as_bytes(), forward, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), seen)
    }

    /// The field lines of a head, as (name, value).
    fn fields(head: &str) -> Vec<(&str, &str)> {
        head.trim_end_matches("\r\n")
            .split("\r\n")
            .skip(1)
            .map(|line| line.split_once(": ").unwrap())
            .collect()
    }

    fn values<'h>(head: &'h str, name: &str) -> Vec<&'h str> {
        fields(head)
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    #[test]
    fn plain_get_is_rebuilt_with_rills_fields() {
        let (head, seen) = rebuild(
            "GET /api/x?y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
            &forward(BodyFraming::None, false),
        );
        assert_eq!(
            head,
            "GET /v1/x?y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
             X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: example.com\r\n\
             Forwarded: for=192.0.2.7;host=\"example.com\";proto=http\r\n\
             Via: 1.1 rill\r\n\r\n"
        );
        assert!(!seen.upgrade_offered);
        let raw = "GET /api/x?y HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
        assert_eq!(seen.host.map(|r| &raw[r]), Some("example.com"));
    }

    #[test]
    fn hop_by_hop_fields_are_stripped() {
        let (head, _) = rebuild(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Forwarded-For, Foo\r\n\
             Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
             Foo: secret\r\nBar: kept\r\nConnection: x-other\r\nX-Other: 1\r\n\r\n",
            &forward(BodyFraming::None, false),
        );
        for gone in [
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "TE",
            "Foo",
            "X-Other",
        ] {
            assert!(values(&head, gone).is_empty(), "{gone} in {head}");
        }
        assert_eq!(values(&head, "Bar"), ["kept"]);
        // Named in Connection, yet rill's own field is there.
        assert_eq!(values(&head, "X-Forwarded-For"), ["192.0.2.7"]);
    }

    #[test]
    fn connection_cannot_remove_rills_fields_or_host() {
        let (head, _) = rebuild(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Forwarded, X-Forwarded-Proto, Via, \
             Content-Length, Transfer-Encoding, Host\r\nVia: 1.0 other\r\n\r\n",
            &forward(BodyFraming::Length(3), false),
        );
        assert_eq!(values(&head, "Host"), ["h"]);
        assert_eq!(values(&head, "X-Forwarded-Proto"), ["http"]);
        assert_eq!(values(&head, "Forwarded").len(), 1);
        assert_eq!(values(&head, "Via"), ["1.1 rill"]);
        assert_eq!(values(&head, "Content-Length"), ["3"]);
    }

    #[test]
    fn spoofed_forwarding_fields_are_replaced() {
        let (head, _) = rebuild(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n\
             x-forwarded-for: 10.0.0.2\r\nX-FORWARDED-PROTO: https\r\n\
             X-Forwarded-Host: evil\r\nforwarded: for=10.0.0.3\r\nFORWARDED: by=x\r\n\
             X_Forwarded_For: 10.0.0.4\r\nx_forwarded_host: evil\r\n\r\n",
            &forward(BodyFraming::None, false),
        );
        assert!(!head.contains("10.0.0."), "{head}");
        assert!(!head.contains("evil"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("x_forwarded"), "{head}");
        assert_eq!(values(&head, "X-Forwarded-For"), ["192.0.2.7"]);
        assert_eq!(values(&head, "X-Forwarded-Proto"), ["http"]);
        assert_eq!(values(&head, "X-Forwarded-Host"), ["h"]);
        assert_eq!(
            values(&head, "Forwarded"),
            ["for=192.0.2.7;host=\"h\";proto=http"]
        );
    }

    #[test]
    fn proxy_credentials_are_never_passed_on() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic c2VjcmV0\r\n\
                   Authorization: Bearer app\r\n\r\n";
        let (head, _) = rebuild(raw, &forward(BodyFraming::None, false));
        assert!(!head.contains("c2VjcmV0"), "{head}");
        assert_eq!(values(&head, "Authorization"), ["Bearer app"]);
    }

    #[test]
    fn a_mount_prefix_is_named_and_a_clients_is_never_passed_on() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Prefix: /evil\r\n\
                   x_forwarded_prefix: /evil\r\n\r\n";
        let (head, _) = rebuild(raw, &forward(BodyFraming::None, false));
        assert!(!head.contains("evil"), "{head}");
        assert!(values(&head, "X-Forwarded-Prefix").is_empty(), "{head}");
        let mounted = Forward {
            prefix: "/py",
            ..forward(BodyFraming::None, false)
        };
        let (head, _) = rebuild(raw, &mounted);
        assert_eq!(values(&head, "X-Forwarded-Prefix"), ["/py"], "{head}");
        let mut out = Vec::new();
        let broken = Forward {
            prefix: "/a\r\nX: y",
            ..forward(BodyFraming::None, false)
        };
        assert!(write_forward_head(&request(raw), raw.as_bytes(), &broken, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn host_is_kept_as_sent() {
        let (head, _) = rebuild(
            "GET / HTTP/1.1\r\nAccept: x\r\nhOsT: Example.COM:8080\r\n\r\n",
            &forward(BodyFraming::None, false),
        );
        assert!(head.contains("\r\nAccept: x\r\nhOsT: Example.COM:8080\r\n"));
        assert_eq!(values(&head, "Host").len(), 1);
        assert_eq!(values(&head, "X-Forwarded-Host"), ["Example.COM:8080"]);
    }

    #[test]
    fn http10_without_host_gets_the_default_and_no_host_parameters() {
        let (head, seen) = rebuild(
            "GET / HTTP/1.0\r\nAccept: x\r\n\r\n",
            &forward(BodyFraming::None, false),
        );
        assert!(head.starts_with("GET /v1/x?y HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nAccept: x\r\n"));
        assert!(values(&head, "X-Forwarded-Host").is_empty());
        assert_eq!(values(&head, "Forwarded"), ["for=192.0.2.7;proto=http"]);
        assert_eq!(seen.host, None);
    }

    #[test]
    fn empty_host_is_kept_but_not_reported() {
        let (head, seen) = rebuild(
            "GET / HTTP/1.1\r\nHost:\r\n\r\n",
            &forward(BodyFraming::None, false),
        );
        assert_eq!(values(&head, "Host").len(), 1);
        assert!(!head.contains("127.0.0.1:3000"));
        assert!(values(&head, "X-Forwarded-Host").is_empty());
        assert_eq!(seen.host, None);
    }

    #[test]
    fn forwarded_quotes_ipv6_and_escapes_host() {
        let mut fwd = forward(BodyFraming::None, false);
        fwd.peer = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        // A Host with quotes or backslashes is a 400 before it gets here;
        // the separators of Forwarded itself are valid in a Host.
        let (head, _) = rebuild("GET / HTTP/1.1\r\nHost: a;b=c,d\r\n\r\n", &fwd);
        assert_eq!(values(&head, "X-Forwarded-For"), ["2001:db8::1"]);
        assert_eq!(
            values(&head, "Forwarded"),
            ["for=\"[2001:db8::1]\";host=\"a;b=c,d\";proto=http"]
        );
        // An IPv4 client seen through a dual-stack socket is reported as IPv4.
        fwd.peer = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped());
        let (head, _) = rebuild("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &fwd);
        assert_eq!(values(&head, "X-Forwarded-For"), ["198.51.100.1"]);
    }

    #[test]
    fn framing_lines_are_rills() {
        let chunked_raw = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        let length_raw = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
        let cases = [
            (
                length_raw,
                BodyFraming::Length(10),
                Some("Content-Length: 10"),
            ),
            (
                length_raw,
                BodyFraming::Length(0),
                Some("Content-Length: 0"),
            ),
            (
                chunked_raw,
                BodyFraming::Chunked,
                Some("Transfer-Encoding: chunked"),
            ),
            // rill de-chunked and counted the body itself.
            (
                chunked_raw,
                BodyFraming::Length(7),
                Some("Content-Length: 7"),
            ),
            (length_raw, BodyFraming::None, None),
        ];
        for (raw, body, line) in cases {
            let (head, _) = rebuild(raw, &forward(body, false));
            let framing: Vec<_> = fields(&head)
                .into_iter()
                .filter(|(n, _)| *n == "Content-Length" || *n == "Transfer-Encoding")
                .map(|(n, v)| format!("{n}: {v}"))
                .collect();
            assert_eq!(framing, line.into_iter().collect::<Vec<_>>(), "{body:?}");
        }
    }

    #[test]
    fn upgrade_only_when_asked() {
        let raw = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Key: k\r\n\r\n";
        let (head, seen) = rebuild(raw, &forward(BodyFraming::None, true));
        assert!(seen.upgrade_offered);
        assert_eq!(seen.upgrade.clone().map(|r| &raw[r]), Some("websocket"));
        assert_eq!(values(&head, "Upgrade"), ["websocket"]);
        assert_eq!(values(&head, "Connection"), ["upgrade"]);
        assert!(head.ends_with("Via: 1.1 rill\r\nConnection: upgrade\r\n\r\n"));
        assert_eq!(values(&head, "Sec-WebSocket-Key"), ["k"]);

        let (head, seen) = rebuild(raw, &forward(BodyFraming::None, false));
        assert!(seen.upgrade_offered);
        assert!(values(&head, "Upgrade").is_empty());
        assert!(values(&head, "Connection").is_empty());

        // Asked to upgrade, but there is nothing to upgrade to.
        let (head, seen) = rebuild(
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            &forward(BodyFraming::None, true),
        );
        assert!(!seen.upgrade_offered);
        assert!(values(&head, "Connection").is_empty());
    }

    #[test]
    fn trailer_is_never_announced_since_trailers_are_not_forwarded() {
        let raw =
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n";
        let (head, _) = rebuild(raw, &forward(BodyFraming::Chunked, false));
        assert!(values(&head, "Trailer").is_empty());
        let (head, _) = rebuild(raw, &forward(BodyFraming::Length(4), false));
        assert!(values(&head, "Trailer").is_empty());
    }

    #[test]
    fn an_absolute_target_names_the_host_the_backend_sees() {
        let raw = "GET http://other.example:81/api/x?q HTTP/1.1\r\nHost: t\r\n\r\n";
        let (head, seen) = rebuild(raw, &forward(BodyFraming::None, false));
        assert_eq!(values(&head, "Host"), ["other.example:81"]);
        assert_eq!(values(&head, "X-Forwarded-Host"), ["other.example:81"]);
        assert_eq!(seen.host.map(|range| &raw[range]), Some("other.example:81"));
    }

    #[test]
    fn an_http10_clients_expect_is_not_passed_on() {
        let raw = "PUT / HTTP/1.0\r\nHost: h\r\nExpect: 100-continue\r\n\r\n";
        let (head, _) = rebuild(raw, &forward(BodyFraming::Length(4), false));
        assert!(values(&head, "Expect").is_empty());
        assert_eq!(values(&head, "Via"), ["1.0 rill"]);
        let raw = "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n";
        let (head, _) = rebuild(raw, &forward(BodyFraming::Length(4), false));
        assert_eq!(values(&head, "Expect"), ["100-continue"]);
    }

    #[test]
    fn an_expect_rill_answers_itself_is_not_passed_on() {
        let raw = "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nX-A: 1\r\n\r\n";
        let strip = Forward {
            strip_expect: true,
            ..forward(BodyFraming::Length(4), false)
        };
        let (head, _) = rebuild(raw, &strip);
        assert!(values(&head, "Expect").is_empty(), "{head}");
        assert_eq!(values(&head, "X-A"), ["1"]);
        assert_eq!(values(&head, "Content-Length"), ["4"]);
    }

    #[test]
    fn rills_own_credentials_stay_with_rill() {
        let raw = "GET /a HTTP/1.1\r\nHost: h\r\nAuthorization: Basic YTpi\r\n\r\n";
        let (kept, _) = rebuild(raw, &forward(BodyFraming::None, false));
        assert_eq!(
            values(&kept, "authorization"),
            ["Basic YTpi"],
            "without --auth, passed on"
        );
        let strip = Forward {
            strip_authorization: true,
            ..forward(BodyFraming::None, false)
        };
        let (stripped, _) = rebuild(raw, &strip);
        assert!(values(&stripped, "authorization").is_empty(), "{stripped}");
    }

    #[test]
    fn expect_and_via_are_kept() {
        let (head, _) = rebuild(
            "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nVia: 1.1 cdn\r\n\
             Content-Length: 3\r\n\r\n",
            &forward(BodyFraming::Length(3), false),
        );
        assert_eq!(values(&head, "Expect"), ["100-continue"]);
        assert_eq!(values(&head, "Via"), ["1.1 cdn", "1.1 rill"]);
        assert!(head.starts_with("PUT "));
    }

    #[test]
    fn non_ascii_target_is_passed_on() {
        let (head, _) = rebuild(
            "GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n",
            &Forward {
                target: "/v1/caf\u{e9}",
                ..forward(BodyFraming::None, false)
            },
        );
        assert!(head.starts_with("GET /v1/caf\u{e9} HTTP/1.1\r\n"));
    }

    #[test]
    fn bad_inputs_write_nothing() {
        let mut out = Vec::new();
        let fwd = forward(BodyFraming::None, false);
        let raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        for target in ["", "/a b", "/a\r\nX: y", "/a\tb", "/a\x7f"] {
            let fwd = Forward { target, ..fwd };
            let error = write_forward_head(&request(raw), raw.as_bytes(), &fwd, &mut out);
            assert_eq!(error.unwrap_err().status, Status::BAD_REQUEST);
        }
        assert!(out.is_empty());
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "Accept",
            "X-Foo",
            "x-foo",
            "Foo",
            "Connection",
            "connection",
            "Keep-Alive",
            "Proxy-Connection",
            "TE",
            "te",
            "Upgrade",
            "upgrade",
            "Trailer",
            "X-Forwarded-For",
            "x-forwarded-FOR",
            "X_Forwarded_For",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "Forwarded",
            "FORWARDED",
            "Via",
            "Expect",
            "Cookie",
        ];
        const VALUES: &[&str] = &[
            "a",
            "close",
            "keep-alive, X-Forwarded-For, Foo",
            "Upgrade",
            "chunked",
            "5",
            "x-foo, te",
            "Via, Host, Forwarded",
            "websocket",
            "\"quoted\\\"",
            "1.2.3.4",
        ];

        fn stripped(name: &str, body: BodyFraming, upgrade: bool) -> bool {
            let fwd = Forward {
                target: "/",
                peer: PEER,
                proto: "http",
                default_host: "b:1",
                body,
                upgrade,
                strip_authorization: false,
                strip_expect: false,
                prefix: "",
            };
            !keeps(name.as_bytes(), &fwd)
        }

        fn body_strategy() -> impl Strategy<Value = BodyFraming> {
            prop_oneof![
                Just(BodyFraming::None),
                Just(BodyFraming::Chunked),
                any::<u64>().prop_map(BodyFraming::Length),
            ]
        }

        proptest! {
            #[test]
            fn output_is_one_clean_head(
                lines in proptest::collection::vec((0..NAMES.len(), 0..VALUES.len()), 0..20),
                http10 in any::<bool>(),
                body in body_strategy(),
                upgrade in any::<bool>(),
                v6 in any::<bool>(),
                http10_host in any::<bool>(),
                client_framing in any::<u8>(),
            ) {
                let mut raw = format!("POST /p HTTP/1.{}\r\n", u8::from(!http10));
                if !http10 || http10_host {
                    raw.push_str("Host: h\r\n");
                }
                raw.push_str(["", "Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n"]
                    [usize::from(client_framing) % (3 - usize::from(http10))]);
                for &(name, value) in &lines {
                    raw.push_str(&format!("{}: {}\r\n", NAMES[name], VALUES[value]));
                }
                raw.push_str("\r\n");
                let client_request = request(&raw);
                let connection_named: Vec<String> = lines.iter()
                    .filter(|&&(name, _)| NAMES[name].eq_ignore_ascii_case("connection"))
                    .flat_map(|&(_, value)| VALUES[value].split(','))
                    .map(|token| token.trim().to_ascii_lowercase())
                    .collect();
                let fwd = Forward {
                    target: "/t",
                    peer: if v6 { "2001:db8::5".parse().unwrap() } else { PEER },
                    proto: "http",
                    default_host: "b:1",
                    body,
                    upgrade,
                    strip_authorization: false,
                    strip_expect: false,
                    prefix: "",
                };
                let mut out = Vec::new();
                write_forward_head(&client_request, raw.as_bytes(), &fwd, &mut out).unwrap();

                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 16];
                let mut req = httparse::Request::new(&mut headers);
                prop_assert_eq!(req.parse(&out), Ok(httparse::Status::Complete(out.len())));
                prop_assert_eq!(req.version, Some(1));
                let count = |name: &str| {
                    req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count()
                };
                let lengths: Vec<_> = req.headers.iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| h.value)
                    .collect();
                match body {
                    BodyFraming::None => {
                        prop_assert!(lengths.is_empty());
                        prop_assert_eq!(count("transfer-encoding"), 0);
                    }
                    BodyFraming::Length(n) => {
                        let expected = n.to_string();
                        prop_assert_eq!(lengths, vec![expected.as_bytes()]);
                        prop_assert_eq!(count("transfer-encoding"), 0);
                    }
                    BodyFraming::Chunked => {
                        prop_assert!(lengths.is_empty());
                        prop_assert_eq!(count("transfer-encoding"), 1);
                    }
                }
                prop_assert_eq!(count("host"), 1);
                for name in ["x-forwarded-for", "x-forwarded-proto", "forwarded"] {
                    prop_assert_eq!(count(name), 1);
                }
                let via: &[u8] = if http10 { b"1.0 rill" } else { b"1.1 rill" };
                prop_assert_eq!(
                    req.headers.iter().filter(|h| h.name == "Via" && h.value == via).count(),
                    1
                );
                // Past rill's own lines, nothing the filter drops may survive.
                let client_part = req.headers.iter().take_while(|h| h.name != "X-Forwarded-For");
                for header in client_part {
                    prop_assert!(!stripped(header.name, body, upgrade), "{} survived", header.name);
                    let name = header.name.to_ascii_lowercase();
                    let exempt = name == "host" || (upgrade && name == "upgrade");
                    prop_assert!(
                        exempt || !connection_named.contains(&name),
                        "{} survived Connection", header.name
                    );
                }
                for header in req.headers.iter() {
                    prop_assert!(!header.name.contains('_'), "{} survived", header.name);
                    if header.name.eq_ignore_ascii_case("connection") {
                        prop_assert_eq!(header.value, b"upgrade");
                    }
                }
            }
        }
    }
}
