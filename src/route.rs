//! Where a request goes, decided in one place and without I/O: to a backend
//! (a `--route` whose prefix covers its path), to the loop's own `/.rill/`
//! pages, into ROOT as an upload, or to the file server.
//!
//! The connection asks [`decide`] once per request head and acts on the
//! answer, so every rule about routing is here and unit-tested on strings:
//!
//! - a prefix covers **whole path segments** only: `/api` covers `/api`,
//!   `/api/x` and `/api?q`, never `/apiary` or `/api../x`;
//! - segments are compared percent-decoded (`/%61pi` is `/api`), but a `%2F`
//!   stays inside its segment, so `/api%2Fx` is not under `/api`;
//! - a path with dot segments (`.`, `..`, or their encoded forms) is resolved
//!   first (RFC 3986 §5.2.4), matched as resolved, and sent to the backend as
//!   resolved: `/api/../x` is `/x`, so it is not routed to `/api`, and no
//!   backend ever sees a `..` that rill read differently;
//! - a dot segment rill cannot resolve because the backend may split the path
//!   where rill does not — `..%2F`, `..%5C`, `..\`, `..;param` — makes a routed
//!   request a `400`: `/pub/..%2Fsecret` must not reach a backend that
//!   decodes the `%2F` and then climbs out of `/pub`;
//! - the longest prefix wins; `/.rill/` stays the loop's own under `--stats`
//!   and `--live-reload`;
//! - a backend mounted at its prefix (`/py=HOST:PORT/`) is never asked for
//!   the bare prefix (`/py`, also written `/p%79`): its index served there
//!   would have its relative links resolved against `/`, outside the
//!   route, so the client is sent to `/py/` instead, as nginx does;
//! - `TRACE` is answered by rill (`405`), never forwarded: its echo would hand
//!   the forwarded head, cookies and all, back to a script (as nginx does).

use crate::config::Config;
use crate::http::request::{HeadError, Method, Request};
use crate::http::response::Status;
use crate::live;
use crate::path;
use crate::stats;
use std::borrow::Cow;
use std::net::{SocketAddr, ToSocketAddrs};

/// One `--route PREFIX=UPSTREAM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path prefix, without a trailing slash; empty for `/` (every path).
    pub prefix: String,
    /// The backend as written on the command line (`localhost:3000`).
    pub authority: String,
    /// Where the backend listens, resolved once at start.
    pub addr: SocketAddr,
    /// `HOST:PORT/PATH` replaces the prefix with `/PATH` (stored without a
    /// trailing slash, empty for `/`); `None` passes paths unchanged.
    pub path: Option<String>,
    /// The backend's own origins, as it may name itself in a `Location`:
    /// `http://` + the authority as written, and + the address it resolved to.
    pub origins: Vec<String>,
}

impl Route {
    /// The prefix a backend mounted at it (`PREFIX=HOST:PORT/`) is told in
    /// `X-Forwarded-Prefix`, so that it can build its URLs with it; `""`
    /// for other routes, whose backends see paths of their own.
    pub fn announced_prefix(&self) -> &str {
        match self.path.as_deref() {
            Some("") => &self.prefix,
            _ => "",
        }
    }

    /// Parses `PREFIX=HOST:PORT` or `PREFIX=HOST:PORT/PATH`, resolving HOST.
    pub fn parse(text: &str) -> Result<Route, String> {
        let (prefix, upstream) = text
            .split_once('=')
            .ok_or_else(|| format!("--route '{text}' needs PREFIX=HOST:PORT"))?;
        if !prefix.starts_with('/') {
            return Err(format!("--route prefix '{prefix}' must start with /"));
        }
        let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        if segments
            .iter()
            .any(|s| *s == "." || *s == ".." || s.contains(['?', '#', '%']))
        {
            return Err(format!(
                "--route prefix '{prefix}' must be a plain path (no . or .. segments, ? # or %)"
            ));
        }
        let prefix = segments.iter().fold(String::new(), |mut p, s| {
            p.push('/');
            p.push_str(s);
            p
        });
        let (authority, path) = match upstream.find('/') {
            Some(at) => {
                let path = upstream[at..].trim_end_matches('/');
                (&upstream[..at], Some(path.to_owned()))
            }
            None => (upstream, None),
        };
        if path.as_deref().is_some_and(|p| p.contains(['?', '#'])) {
            return Err(format!("--route path in '{upstream}' must not have ? or #"));
        }
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("--route backend '{authority}' (want HOST:PORT): {e}"))?
            .next()
            .ok_or_else(|| format!("--route backend '{authority}' resolves to nothing"))?;
        let mut origins = vec![format!("http://{authority}")];
        let resolved = format!("http://{addr}");
        if resolved != origins[0] {
            origins.push(resolved);
        }
        Ok(Route {
            prefix,
            authority: authority.to_owned(),
            addr,
            path,
            origins,
        })
    }
}

/// Orders routes so that the first match is the longest prefix, and refuses
/// two routes for one prefix.
pub fn sort_routes(routes: &mut [Route]) -> Result<(), String> {
    routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
    for pair in routes.windows(2) {
        if pair[0].prefix == pair[1].prefix {
            let shown = if pair[0].prefix.is_empty() {
                "/"
            } else {
                &pair[0].prefix
            };
            return Err(format!("two --route options for the prefix {shown}"));
        }
    }
    Ok(())
}

/// The loop's own WebSocket endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/.rill/live` (`--live-reload`): change messages for a page.
    Live,
    /// `/.rill/echo` (`--stats`): every message sent back, for learners and
    /// for the Autobahn conformance suite.
    Echo,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/.rill/…` with `--stats`.
    Stats(stats::Route),
    /// `/.rill/live.js` with `--live-reload`.
    LiveScript,
    /// A WebSocket handshake for one of the loop's endpoints (any method:
    /// the handshake's own checks refuse what is not a `GET`).
    WebSocket(Endpoint),
    /// To the backend of `config.routes[route]`, asking for `target`.
    Proxy { route: usize, target: Cow<'a, str> },
    /// Answered by rill with a redirect to `location`: the bare prefix of a
    /// route that mounts its backend there. `301` for GET and HEAD, `308`
    /// for the rest, which must keep their method and body.
    Redirect { status: Status, location: String },
    /// A POST or PUT into ROOT, with `--uploads`.
    Upload,
    /// A request that must not go anywhere: answered with this error.
    Refused(HeadError),
    /// The file server (which also answers the methods it refuses).
    File,
}

/// Decides where `request` goes.
pub fn decide<'a>(request: &'a Request, config: &Config) -> Destination<'a> {
    let target: &'a str = &request.target;
    if config.live_reload && target.starts_with("/.rill/") {
        match live::route(target) {
            Some(live::Route::Script) if matches!(request.method, Method::Get | Method::Head) => {
                return Destination::LiveScript
            }
            Some(live::Route::Script) => return Destination::File,
            Some(live::Route::Socket) => return Destination::WebSocket(Endpoint::Live),
            None => {}
        }
    }
    if config.stats && target.split(['?', '#']).next() == Some("/.rill/echo") {
        return Destination::WebSocket(Endpoint::Echo);
    }
    if config.stats {
        if let Some(page) = stats::route(target) {
            if matches!(request.method, Method::Get | Method::Head) {
                return Destination::Stats(page);
            }
            // Never proxied, never an upload: the file server refuses it.
            return Destination::File;
        }
    }
    if !config.routes.is_empty() && target.starts_with('/') && request.method != Method::Trace {
        match find_route(&config.routes, target) {
            Some(Routed::Target(_, target)) if hides_a_dot_segment(&target) => {
                return Destination::Refused(HeadError {
                    status: Status::BAD_REQUEST,
                    reason: "a dot segment behind an encoded slash",
                });
            }
            Some(Routed::Target(route, target)) => return Destination::Proxy { route, target },
            // Neither a CORS preflight nor a WebSocket handshake can follow
            // a redirect: those go to the backend's `/`, as before.
            Some(Routed::BareMount(route, query))
                if request.method == Method::Options || request.upgrade.is_some() =>
            {
                let target = match query {
                    "" => Cow::Borrowed("/"),
                    query => Cow::Owned(format!("/?{query}")),
                };
                return Destination::Proxy { route, target };
            }
            Some(Routed::BareMount(route, query)) => {
                let status = match request.method {
                    Method::Get | Method::Head => Status::MOVED_PERMANENTLY,
                    _ => Status::PERMANENT_REDIRECT,
                };
                let location = mount_location(&config.routes[route].prefix, query);
                return Destination::Redirect { status, location };
            }
            None => {}
        }
    }
    if config.uploads && matches!(request.method, Method::Post | Method::Put) {
        return Destination::Upload;
    }
    Destination::File
}

/// What [`find_route`] found for a target.
enum Routed<'a> {
    /// `routes[index]`, and the target to send its backend.
    Target(usize, Cow<'a, str>),
    /// The bare prefix of `routes[index]`, which mounts its backend there,
    /// and the query that came with it (without the `?`).
    BareMount(usize, &'a str),
}

/// The first route (routes are sorted longest prefix first) whose prefix
/// covers the target's path, and the target to send its backend.
fn find_route<'a>(routes: &[Route], target: &'a str) -> Option<Routed<'a>> {
    // Byte searches: `str`'s char patterns cost hundreds of instructions
    // per routed request here (callgrind), and every byte sought is ASCII.
    let split = byte_position(target, |b| matches!(b, b'?' | b'#'));
    let (raw_path, query) = target.split_at(split);
    let path = resolve_dot_segments(raw_path);
    let (index, rest) = routes
        .iter()
        .enumerate()
        .find_map(|(i, route)| strip_prefix(&path, &route.prefix).map(|rest| (i, rest)))?;
    // A fragment is the client's own business (and should not be sent).
    let query = &query[..byte_position(query, |b| b == b'#')];
    let target = match &routes[index].path {
        None if matches!(path, Cow::Borrowed(_)) && query.len() == target.len() - split => {
            Cow::Borrowed(target)
        }
        None => Cow::Owned(format!("{path}{query}")),
        // Matched as decided above (decoded, dots resolved), so `/p%79`
        // and `/x/../py` are the bare prefix too. (An empty prefix never
        // leaves an empty rest: the path is at least `/`.)
        Some(replacement) if replacement.is_empty() && rest.is_empty() => {
            return Some(Routed::BareMount(index, query.get(1..).unwrap_or("")));
        }
        Some(replacement) => {
            // Onto an empty path, `/root//evil.example/x` would reach the
            // backend as `//evil.example/x`, which URL parsers (Node's
            // `new URL(req.url, base)`) read as another host; nginx merges
            // the slashes there too.
            let rest = if replacement.is_empty() {
                merge_leading_slashes(rest)
            } else {
                rest
            };
            let mut rewritten = String::with_capacity(replacement.len() + rest.len() + query.len());
            rewritten.push_str(replacement);
            rewritten.push_str(rest);
            if rewritten.is_empty() {
                rewritten.push('/');
            }
            rewritten.push_str(query);
            Cow::Owned(rewritten)
        }
    };
    Some(Routed::Target(index, target))
}

/// Where the bare prefix of a mounted backend is sent: the prefix with a
/// slash, and the query. The prefix comes from the command line, whose
/// bytes are not all safe in a `Location`: its segments are percent-encoded
/// as the file server encodes a folder's.
fn mount_location(prefix: &str, query: &str) -> String {
    let mut location = String::with_capacity(prefix.len() + 2 + query.len());
    for segment in prefix.split('/').skip(1) {
        location.push('/');
        location.extend(path::encode_segment(segment.as_bytes()));
    }
    location.push('/');
    path::push_query(&mut location, query);
    location
}

/// `path` with a leading run of slashes cut to one.
fn merge_leading_slashes(path: &str) -> &str {
    let after = path.trim_start_matches('/');
    let slashes = path.len() - after.len();
    if slashes > 1 {
        &path[slashes - 1..]
    } else {
        path
    }
}

/// If `prefix` (no trailing slash, empty for `/`) covers `path` on segment
/// boundaries, the rest of the path after it: empty or starting with `/`.
/// Segments are compared percent-decoded; the prefix itself has no `%`.
fn strip_prefix<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    // Written as in the prefix (the usual case), the path matches as is.
    if let Some(rest) = path.strip_prefix(prefix) {
        if rest.is_empty() || rest.starts_with('/') {
            return Some(rest);
        }
    }
    let mut at = 0;
    for want in prefix.split('/').skip(1) {
        // `path` is at a `/` here: take the next raw segment.
        let rest = path.get(at..)?.strip_prefix('/')?;
        let len = rest.find('/').unwrap_or(rest.len());
        if !decoded_eq(&rest[..len], want) {
            return None;
        }
        at += 1 + len;
    }
    Some(&path[at..])
}

/// Where the first byte `wanted` says yes to is in `text`, or its length.
fn byte_position(text: &str, wanted: impl Fn(u8) -> bool) -> usize {
    text.bytes().position(wanted).unwrap_or(text.len())
}

/// Whether a raw path segment, percent-decoded, is exactly `plain`.
fn decoded_eq(raw: &str, plain: &str) -> bool {
    let mut decoded = percent_encoding::percent_decode_str(raw);
    plain.bytes().all(|b| decoded.next() == Some(b)) && decoded.next().is_none()
}

/// How many dots a raw segment is made of when it is `.` or `..`, also when
/// written `%2e`; `None` for any other segment. Looked at on every routed
/// request, so it reads bytes instead of decoding into a buffer.
fn dot_segment(raw: &str) -> Option<usize> {
    let mut bytes = raw.as_bytes();
    let mut dots = 0;
    while !bytes.is_empty() && dots < 3 {
        bytes = match bytes {
            [b'.', rest @ ..] | [b'%', b'2', b'e' | b'E', rest @ ..] => rest,
            _ => return None,
        };
        dots += 1;
    }
    (bytes.is_empty() && (1..=2).contains(&dots)).then_some(dots)
}

/// Whether a path (already resolved by rill) still holds a `.` or `..`
/// that a backend could see once it splits segments where rill does not:
/// at an encoded slash or backslash (`..%2Fx`), a bare backslash, or before
/// a `;` parameter (`..;x`, which Java servers strip).
fn hides_a_dot_segment(target: &str) -> bool {
    let path = &target[..byte_position(target, |b| b == b'?')];
    // Plain dot segments are resolved already: only a `%`, `\` or `;` can
    // hide one (the usual path has none, and is looked at no further).
    if !path.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        return false;
    }
    path.split('/').any(hides_a_dot_piece)
}

/// Whether a raw segment, cut at encoded slashes and backslashes (`%2F`,
/// `%5C`, any case) and bare backslashes, has a piece that is a dot
/// segment once a `;param` is taken off.
fn hides_a_dot_piece(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let (mut start, mut at) = (0, 0);
    while at <= bytes.len() {
        let width = match &bytes[at..] {
            [] | [b'\\', ..] => 1,
            [b'%', b'2', b'f' | b'F', ..] | [b'%', b'5', b'c' | b'C', ..] => 3,
            _ => {
                at += 1;
                continue;
            }
        };
        let piece = &segment[start..at];
        if dot_segment(&piece[..piece.find(';').unwrap_or(piece.len())]).is_some() {
            return true;
        }
        at += width;
        start = at;
    }
    false
}

/// The path with `.` and `..` segments resolved (RFC 3986 §5.2.4), as raw
/// (still encoded) segments; borrowed unchanged when it has none.
fn resolve_dot_segments(path: &str) -> Cow<'_, str> {
    // A dot segment starts with `.` or `%` right after a `/`.
    let may_have_dots = path
        .as_bytes()
        .windows(2)
        .any(|pair| pair[0] == b'/' && matches!(pair[1], b'.' | b'%'));
    if !may_have_dots || !path.split('/').any(|s| dot_segment(s).is_some()) {
        return Cow::Borrowed(path);
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = path.split('/').skip(1).peekable();
    let mut ends_in_dir = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dot_segment(segment) {
            Some(1) => ends_in_dir = last,
            Some(_) => {
                kept.pop();
                ends_in_dir = last;
            }
            _ => {
                kept.push(segment);
                ends_in_dir = false;
            }
        }
    }
    let mut resolved = String::with_capacity(path.len());
    for segment in &kept {
        resolved.push('/');
        resolved.push_str(segment);
    }
    if ends_in_dir || resolved.is_empty() {
        resolved.push('/');
    }
    Cow::Owned(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head_leaking, Parsed};
    use std::path::PathBuf;

    fn config(routes: &[&str]) -> Config {
        let mut config = Config::new(PathBuf::from("."));
        config.routes = routes.iter().map(|r| Route::parse(r).unwrap()).collect();
        sort_routes(&mut config.routes).unwrap();
        config
    }

    /// Where `METHOD target` goes: the route's prefix and the target sent,
    /// or a word for the other destinations.
    fn destination(config: &Config, method: &str, target: &str) -> String {
        destination_with(config, method, target, "")
    }

    /// [`destination`] of a request with these field lines besides `Host`.
    fn destination_with(config: &Config, method: &str, target: &str, fields: &str) -> String {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
        let Ok(Parsed::Complete(request, _)) = parse_head_leaking(raw.as_bytes()) else {
            panic!("{raw:?} does not parse");
        };
        match decide(&request, config) {
            Destination::Proxy { route, target } => {
                format!("{} {target}", config.routes[route].prefix)
            }
            Destination::Stats(page) => format!("stats {page:?}"),
            Destination::LiveScript => "live.js".into(),
            Destination::WebSocket(endpoint) => format!("websocket {endpoint:?}"),
            Destination::Redirect { status, location } => {
                format!("redirect {} {location}", status.code())
            }
            Destination::Upload => "upload".into(),
            Destination::Refused(error) => format!("refused {}", error.status.code()),
            Destination::File => "file".into(),
        }
    }

    #[test]
    fn prefixes_cover_whole_segments_only() {
        let config = config(&["/api=127.0.0.1:3000"]);
        let go = |target| destination(&config, "GET", target);
        assert_eq!(go("/api"), "/api /api");
        assert_eq!(go("/api/"), "/api /api/");
        assert_eq!(go("/api/x/y?q=1"), "/api /api/x/y?q=1");
        assert_eq!(go("/api?q"), "/api /api?q");
        assert_eq!(go("/apiary"), "file");
        assert_eq!(go("/api../x"), "file");
        assert_eq!(go("/ap"), "file");
        assert_eq!(go("/"), "file");
        assert_eq!(go("/x/api"), "file");
        // Decoded segments compare, an encoded slash stays in its segment.
        assert_eq!(go("/%61pi/x"), "/api /%61pi/x");
        assert_eq!(go("/api%2Fx"), "file");
    }

    #[test]
    fn dot_segments_are_resolved_before_matching_and_sending() {
        let config = config(&["/api=127.0.0.1:3000", "/=127.0.0.1:3001"]);
        let go = |target| destination(&config, "GET", target);
        assert_eq!(go("/api/../x"), " /x");
        assert_eq!(go("/api/%2e%2e/x"), " /x");
        assert_eq!(go("/api/.%2E/x?q"), " /x?q");
        assert_eq!(go("/x/../api/y"), "/api /api/y");
        assert_eq!(go("/api/./y/."), "/api /api/y/");
        assert_eq!(go("/../../etc"), " /etc");
        assert_eq!(go("/api/.."), " /");
        // Not dot segments: names that merely contain dots.
        assert_eq!(go("/api/..x/.y"), "/api /api/..x/.y");
    }

    #[test]
    fn a_dot_segment_a_backend_could_split_out_is_refused() {
        let config = config(&["/pub=127.0.0.1:3000/public", "/api=127.0.0.1:3001"]);
        let go = |target| destination(&config, "GET", target);
        for hidden in [
            "/pub/..%2Fsecret.txt",
            "/pub/%2e%2e%2fsecret.txt",
            "/pub/x/..%2F..%2Fetc",
            "/pub/..%5Csecret",
            "/pub/..\\secret",
            "/api/..;/b/ok",
            "/api/.%2e;x/y",
            "/api/a%2F.%2Fb",
        ] {
            assert_eq!(go(hidden), "refused 400", "{hidden}");
        }
        // Dots and encoded slashes that hide nothing still go through.
        assert_eq!(go("/pub/a%2Fb"), "/pub /public/a%2Fb");
        assert_eq!(go("/pub/..x%2F.y"), "/pub /public/..x%2F.y");
        assert_eq!(go("/api/v1.2/x?q=..%2F"), "/api /api/v1.2/x?q=..%2F");
        // rill resolves plain dot segments itself (above), and files are
        // never refused here: the file server resolves its own way.
        assert_eq!(go("/x/..%2Fy"), "file");
    }

    #[test]
    fn trace_is_never_forwarded() {
        let config = config(&["/=127.0.0.1:3000"]);
        assert_eq!(destination(&config, "TRACE", "/x"), "file");
        assert_eq!(destination(&config, "PROPFIND", "/x"), " /x");
    }

    #[test]
    fn longest_prefix_wins() {
        let config = config(&[
            "/=127.0.0.1:3000",
            "/api/v2=127.0.0.1:3002",
            "/api=127.0.0.1:3001",
        ]);
        let go = |target| destination(&config, "GET", target);
        assert_eq!(go("/api/v2/x"), "/api/v2 /api/v2/x");
        assert_eq!(go("/api/v3"), "/api /api/v3");
        assert_eq!(go("/index.html"), " /index.html");
        assert!(Route::parse("/x=127.0.0.1:1").is_ok());
        let mut twice = vec![
            Route::parse("/a/=127.0.0.1:1").unwrap(),
            Route::parse("/a=127.0.0.1:2").unwrap(),
        ];
        assert!(sort_routes(&mut twice).is_err());
    }

    #[test]
    fn a_path_replaces_the_prefix() {
        let config = config(&["/api=127.0.0.1:3000/v1", "/root=127.0.0.1:3001/"]);
        let go = |target| destination(&config, "GET", target);
        assert_eq!(go("/api/x?q"), "/api /v1/x?q");
        assert_eq!(go("/api"), "/api /v1");
        assert_eq!(go("/api/"), "/api /v1/");
        assert_eq!(go("/api?q"), "/api /v1?q");
        // The nginx trap: `/root/x` with `/` must not become `//x`.
        assert_eq!(go("/root/x"), "/root /x");
        assert_eq!(go("/root/"), "/root /");
        // Nor may `/root//host/x` become a network-path `//host/x`.
        assert_eq!(go("/root//evil.example/x"), "/root /evil.example/x");
        assert_eq!(go("/root///"), "/root /");
        assert_eq!(go("/root//?q"), "/root /?q");
        assert_eq!(go("/api//x"), "/api /v1//x");
        assert_eq!(go("/rootx"), "file");
    }

    #[test]
    fn the_bare_prefix_of_a_mounted_backend_is_a_redirect_to_its_slash() {
        let config = config(&[
            "/py=127.0.0.1:3000/",
            "/api=127.0.0.1:3001",
            "/v=127.0.0.1:3002/v1",
            "/a/b=127.0.0.1:3003/",
            "/=127.0.0.1:3004/",
        ]);
        let go = |method, target| destination(&config, method, target);
        assert_eq!(go("GET", "/py"), "redirect 301 /py/");
        assert_eq!(go("HEAD", "/py"), "redirect 301 /py/");
        assert_eq!(go("GET", "/py?x=1&y"), "redirect 301 /py/?x=1&y");
        assert_eq!(go("GET", "/py?"), "redirect 301 /py/");
        assert_eq!(go("GET", "/a/b?q"), "redirect 301 /a/b/?q");
        // Any other method keeps its method (and body) at the new URL.
        for method in ["POST", "PUT", "DELETE", "PROPFIND"] {
            assert_eq!(go(method, "/py"), "redirect 308 /py/", "{method}");
        }
        // A CORS preflight and a WebSocket handshake cannot follow one:
        // they reach the backend's root.
        assert_eq!(go("OPTIONS", "/py"), "/py /");
        assert_eq!(go("OPTIONS", "/py?x"), "/py /?x");
        let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
        assert_eq!(destination_with(&config, "GET", "/py", upgrade), "/py /");
        // Matched as routing matches: decoded, dots resolved; the Location
        // is the route's own prefix, never the client's spelling of it.
        assert_eq!(go("GET", "/p%79"), "redirect 301 /py/");
        assert_eq!(go("GET", "/%61/%62?q"), "redirect 301 /a/b/?q");
        assert_eq!(go("GET", "/x/../py?q"), "redirect 301 /py/?q");
        assert_eq!(go("GET", "/py/x/.."), "/py /");
        // A query that could break the header line is left out of it.
        assert_eq!(go("GET", "/py?caf\u{e9}"), "redirect 301 /py/");
        // Under the prefix, it is the backend's.
        assert_eq!(go("GET", "/py/"), "/py /");
        assert_eq!(go("GET", "/py/?x=1"), "/py /?x=1");
        assert_eq!(go("GET", "/py//"), "/py /");
        assert_eq!(go("POST", "/py/x"), "/py /x");
        assert_eq!(go("GET", "/pyx"), " /pyx");
        // Routes that pass paths on, or map the prefix to a path, forward.
        assert_eq!(go("GET", "/api"), "/api /api");
        assert_eq!(go("GET", "/v?q"), "/v /v1?q");
        // `/` onto the backend's root has no bare prefix to redirect.
        assert_eq!(go("GET", "/"), " /");
        assert_eq!(go("GET", "/?q"), " /?q");
        // TRACE is still never routed, so never redirected either.
        assert_eq!(go("TRACE", "/py"), "file");
    }

    #[test]
    fn a_mount_location_cannot_break_its_header_line() {
        assert_eq!(mount_location("/py", ""), "/py/");
        assert_eq!(mount_location("/a/b", "q=1"), "/a/b/?q=1");
        // A prefix is whatever the command line held.
        assert_eq!(
            mount_location("/a b/\r\nX: y/caf\u{e9}", "z"),
            "/a%20b/%0D%0AX%3A%20y/caf%C3%A9/?z"
        );
    }

    #[test]
    fn the_loops_pages_uploads_and_files() {
        let mut config = config(&["/=127.0.0.1:3000"]);
        config.stats = true;
        config.uploads = true;
        assert_eq!(destination(&config, "GET", "/.rill/stats"), "stats Json");
        assert_eq!(destination(&config, "HEAD", "/.rill/"), "stats Page");
        assert_eq!(destination(&config, "POST", "/.rill/stats"), "file");
        assert_eq!(destination(&config, "POST", "/up"), " /up");
        config.routes.clear();
        assert_eq!(destination(&config, "POST", "/up"), "upload");
        assert_eq!(destination(&config, "PUT", "/up/a.txt"), "upload");
        assert_eq!(destination(&config, "GET", "/up"), "file");
        config.uploads = false;
        assert_eq!(destination(&config, "POST", "/up"), "file");
        config.stats = false;
        assert_eq!(destination(&config, "GET", "/.rill/stats"), "file");
    }

    #[test]
    fn the_live_reload_and_echo_endpoints() {
        let mut config = config(&["/=127.0.0.1:3000"]);
        assert_eq!(
            destination(&config, "GET", "/.rill/live.js"),
            " /.rill/live.js"
        );
        assert_eq!(destination(&config, "GET", "/.rill/echo"), " /.rill/echo");
        config.live_reload = true;
        config.stats = true;
        assert_eq!(destination(&config, "GET", "/.rill/live.js?v=1"), "live.js");
        assert_eq!(destination(&config, "HEAD", "/.rill/live.js"), "live.js");
        assert_eq!(destination(&config, "POST", "/.rill/live.js"), "file");
        assert_eq!(destination(&config, "GET", "/.rill/live"), "websocket Live");
        assert_eq!(destination(&config, "GET", "/.rill/echo"), "websocket Echo");
        assert_eq!(
            destination(&config, "GET", "/.rill/lively"),
            " /.rill/lively"
        );
        config.stats = false;
        assert_eq!(destination(&config, "GET", "/.rill/echo"), " /.rill/echo");
    }

    /// How a backend that handles paths as carelessly as any might reads a
    /// target: percent-decoded once, `\` taken for `/`, each segment cut at
    /// `;`, then `.` and `..` resolved. What rill sends under a route must
    /// stay under that route even read this way.
    fn careless_backend_segments(target: &str) -> Vec<String> {
        let path = target.split(['?', '#']).next().unwrap_or_default();
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .replace('\\', "/");
        let mut segments: Vec<String> = Vec::new();
        for segment in decoded.split('/').skip(1) {
            match segment.split(';').next().unwrap_or_default() {
                "." => {}
                ".." => {
                    segments.pop();
                }
                kept => segments.push(kept.to_owned()),
            }
        }
        segments
    }

    /// RFC 3986 §5.2.4 on raw segments, the slow and obvious way: a segment
    /// is a dot segment when it percent-decodes to `.` or `..`.
    fn reference_resolution(path: &str) -> Vec<&str> {
        let mut kept: Vec<&str> = Vec::new();
        for segment in path.split('/').skip(1) {
            let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
            match decoded.as_slice() {
                b"." => {}
                b".." => {
                    kept.pop();
                }
                _ => kept.push(segment),
            }
        }
        kept
    }

    /// Path pieces that routing has to get right: dot segments in every
    /// spelling rill resolves or refuses, encoded slashes and backslashes,
    /// `;` parameters, empty segments, and names that only look like dots.
    const PIECES: [&str; 26] = [
        "api",
        "pub",
        "root",
        "x",
        "%61pi",
        "p%75b",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        ".%2e",
        "..%2F",
        "..%2f",
        "%2e%2e%2f",
        "..%5C",
        "..\\",
        "..;",
        "..;p",
        ";x",
        "a;b",
        "",
        "%2F",
        "a%2Fb",
        "%252e%252e",
        "...",
        "a.b",
    ];

    /// A target that starts with one of the prefixes below (plainly or
    /// percent-encoded) or not, then any pieces, then maybe a query or a
    /// fragment.
    fn target_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let first = proptest::sample::select(vec!["api", "pub", "root", "%61pi", "p%75b", "x"]);
        let rest = proptest::collection::vec(proptest::sample::select(PIECES.to_vec()), 0..7);
        let tail = proptest::sample::select(vec!["", "?q", "?a=/../x", "#frag", "?q#f"]);
        (first, rest, tail).prop_map(|(first, rest, tail)| {
            let mut target = format!("/{first}");
            for piece in rest {
                target.push('/');
                target.push_str(piece);
            }
            target + tail
        })
    }

    /// The routes the properties below are checked against: one that
    /// replaces its prefix, one that passes paths unchanged, one onto `/`.
    fn three_routes() -> Config {
        config(&[
            "/pub=127.0.0.1:3000/public",
            "/api=127.0.0.1:3001",
            "/root=127.0.0.1:3002/",
        ])
    }

    /// Where `GET target` went, owned.
    enum Outcome {
        Proxied { route: usize, sent: String },
        Redirected { location: String },
        Refused,
        Elsewhere,
    }

    /// [`decide`] on `GET target`; `None` when httparse refuses the target
    /// (such bytes never reach routing).
    fn outcome(config: &Config, target: &str) -> Option<Outcome> {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
        let Ok(Parsed::Complete(request, _)) = parse_head_leaking(raw.as_bytes()) else {
            return None;
        };
        Some(match decide(&request, config) {
            Destination::Proxy { route, target } => Outcome::Proxied {
                route,
                sent: target.into_owned(),
            },
            Destination::Redirect { location, .. } => Outcome::Redirected { location },
            Destination::Refused(_) => Outcome::Refused,
            _ => Outcome::Elsewhere,
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn a_routed_target_stays_under_its_route(target in target_strategy()) {
            let config = three_routes();
            let Some(Outcome::Proxied { route, sent }) = outcome(&config, &target) else {
                return Ok(());
            };
            let route = &config.routes[route];
            let base: Vec<String> =
                careless_backend_segments(route.path.as_deref().unwrap_or(&route.prefix))
                    .into_iter()
                    .filter(|segment| !segment.is_empty())
                    .collect();
            proptest::prop_assert!(sent.starts_with('/'), "{target} sent as {sent}");
            proptest::prop_assert!(!sent.starts_with("//"), "{target} sent as {sent}");
            proptest::prop_assert!(!sent.contains('#'), "{target} sent as {sent}");
            let read = careless_backend_segments(&sent);
            proptest::prop_assert!(
                read.starts_with(&base),
                "{target} sent as {sent}, which a backend may read as {read:?}, outside {base:?}"
            );
            // rill resolved every dot segment itself: none is left to send.
            let path = sent.split('?').next().unwrap_or_default();
            let resolved = reference_resolution(path);
            proptest::prop_assert_eq!(
                resolved.len(),
                path.split('/').skip(1).count(),
                "{} sent as {}", target, sent
            );
        }

        #[test]
        fn what_resolves_under_a_prefix_goes_to_its_backend(target in target_strategy()) {
            // The converse: what RFC 3986 resolution puts under a prefix is
            // sent to that prefix's backend (or refused), never served as a
            // file from ROOT, and what it puts elsewhere is not proxied.
            let config = three_routes();
            let Some(outcome) = outcome(&config, &target) else { return Ok(()) };
            let path = target.split(['?', '#']).next().unwrap_or_default();
            let first = reference_resolution(path).first().map(|segment| {
                percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
            });
            let expected = match first.as_deref() {
                Some(prefix @ ("api" | "pub" | "root")) => Some(format!("/{prefix}")),
                _ => None,
            };
            match outcome {
                Outcome::Proxied { route, .. } => {
                    let prefix = Some(config.routes[route].prefix.clone());
                    proptest::prop_assert_eq!(prefix, expected, "{}", target);
                }
                // A dot segment hidden from rill: only ever under a route.
                Outcome::Refused => {
                    proptest::prop_assert!(expected.is_some(), "{} refused", target);
                }
                // Only the bare prefix of the mounted route, to its slash.
                Outcome::Redirected { location } => {
                    proptest::prop_assert_eq!(reference_resolution(path).len(), 1, "{}", target);
                    proptest::prop_assert_eq!(expected.as_deref(), Some("/root"), "{}", target);
                    proptest::prop_assert!(location.starts_with("/root/"), "{} to {}", target, location);
                }
                Outcome::Elsewhere => proptest::prop_assert_eq!(None, expected, "{}", target),
            }
        }
    }

    #[test]
    fn route_syntax() {
        let route = Route::parse("/api/=localhost:3000/v1/").unwrap();
        assert_eq!(route.prefix, "/api");
        assert_eq!(route.authority, "localhost:3000");
        assert_eq!(route.path.as_deref(), Some("/v1"));
        assert_eq!(route.addr.port(), 3000);
        assert!(route.origins.contains(&"http://localhost:3000".to_string()));
        assert_eq!(Route::parse("/=127.0.0.1:1").unwrap().prefix, "");
        for bad in [
            "api=127.0.0.1:1",
            "/api",
            "/api=127.0.0.1",
            "/api=127.0.0.1:x",
            "/a/../b=127.0.0.1:1",
            "/a%20=127.0.0.1:1",
            "/a=127.0.0.1:1/p?q",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
    }
}
