//! Routes (issue 13): path prefixes proxied to real backends on 127.0.0.1 —
//! Node's `http` server, python3's `http.server`, a WebSocket echo server and
//! a deliberately broken one (all in tests/backends/) — checked from both
//! sides: what the client gets, and what reached the backend.
//!
//! A test whose backend cannot run (no node, python3, websockets or curl)
//! says SKIPPED and passes, as the curl tests elsewhere do.

mod common;

use common::{pseudo_random, read_response, site, tool_runs, Rill};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Backends

const BACKENDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/backends");

/// A backend process on 127.0.0.1, killed when dropped.
struct Backend {
    child: Child,
    port: u16,
    // Kept open so a late write to stdout never fails the backend.
    _stdout: BufReader<ChildStdout>,
}

impl Backend {
    /// Starts `command` and reads its port from its first stdout line:
    /// `listening on PORT`, or http.server's `Serving HTTP on H port PORT ...`.
    fn spawn(mut command: Command, what: &str) -> Backend {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the backend's port");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .or_else(|| line.split(" port ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("{what}: unexpected first line {line:?}"));
        Backend {
            child,
            port,
            _stdout: stdout,
        }
    }

    /// `HOST:PORT`, the UPSTREAM of a route.
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One GET straight to the backend (not through rill); the body.
    fn get(&self, target: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("backend");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let ask = format!("GET {target} HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n");
        stream.write_all(ask.as_bytes()).unwrap();
        let answer = read_message(&mut BufReader::new(stream), false).expect("backend answer");
        assert_eq!(answer.status, 200, "backend {target}");
        answer.text()
    }

    /// The Node backend's `METHOD URL` of every request since the last reset.
    fn log(&self) -> Vec<String> {
        self.get("/log").lines().map(str::to_owned).collect()
    }

    /// Forgets the Node backend's counts and log.
    fn reset(&self) {
        self.get("/reset");
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/backends/node_backend.mjs, or None (SKIPPED) without node.
fn node_backend() -> Option<Backend> {
    if !tool_runs("node", &["--version"], "node is not installed") {
        return None;
    }
    let mut command = Command::new("node");
    command.arg(format!("{BACKENDS}/node_backend.mjs"));
    Some(Backend::spawn(command, "node_backend.mjs"))
}

/// tests/backends/broken_backend.py, or None (SKIPPED) without python3.
fn broken_backend() -> Option<Backend> {
    if !tool_runs("python3", &["--version"], "python3 is not installed") {
        return None;
    }
    let mut command = Command::new("python3");
    command.arg(format!("{BACKENDS}/broken_backend.py"));
    Some(Backend::spawn(command, "broken_backend.py"))
}

/// tests/backends/ws_echo.py, or None (SKIPPED) without python3's websockets.
fn ws_backend() -> Option<Backend> {
    let why = "python3 or its websockets package is not installed";
    if !tool_runs("python3", &["-c", "import websockets"], why) {
        return None;
    }
    let mut command = Command::new("python3");
    command.arg(format!("{BACKENDS}/ws_echo.py"));
    Some(Backend::spawn(command, "ws_echo.py"))
}

/// `python3 -m http.server` on `dir` (HTTP/1.0, one answer per connection).
fn http_server(dir: &std::path::Path) -> Option<Backend> {
    if !tool_runs("python3", &["--version"], "python3 is not installed") {
        return None;
    }
    let mut command = Command::new("python3");
    command
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .arg("--directory")
        .arg(dir)
        .stderr(Stdio::null());
    Some(Backend::spawn(command, "python3 -m http.server"))
}

/// Starts rill on `root` with these routes (`PREFIX=UPSTREAM`) and arguments.
fn start(root: &std::path::Path, routes: &[String], extra: &[&str]) -> Rill {
    let mut args: Vec<&str> = Vec::new();
    for route in routes {
        args.push("--route");
        args.push(route);
    }
    args.extend_from_slice(extra);
    Rill::start(root, &args)
}

// ---------------------------------------------------------------------------
// Messages: a reader that knows chunked bodies, trailers, 1xx and truncation

type Fields = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Message {
    version: String,
    status: u16,
    /// Names lower-cased, in order, repeats kept.
    headers: Fields,
    /// The 1xx answers before this one.
    informational: Vec<(u16, Fields)>,
    body: Vec<u8>,
    chunked: bool,
    trailers: Fields,
    /// False when the connection ended before the body did.
    complete: bool,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        fields(&self.headers, name)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn field<'a>(list: &'a Fields, name: &str) -> Option<&'a str> {
    fields(list, name).into_iter().next()
}

fn fields<'a>(list: &'a Fields, name: &str) -> Vec<&'a str> {
    list.iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads header lines up to the blank line.
fn read_fields(reader: &mut impl BufRead) -> io::Result<Fields> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(out);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("header line without a colon: {line:?}")))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(invalid(format!("bad header name: {line:?}")));
        }
        out.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// Appends up to `n` bytes; Ok(false) when the peer closed first.
fn read_up_to(reader: &mut impl BufRead, n: usize, body: &mut Vec<u8>) -> io::Result<bool> {
    let got = reader.take(n as u64).read_to_end(body)?;
    Ok(got == n)
}

/// Reads one answer, 1xx included: the final one, with the 1xx before it.
/// EOF before the status line is an error; EOF inside the body is not (the
/// message says `complete: false`), nor is a close-delimited body.
fn read_message(reader: &mut impl BufRead, head_only: bool) -> io::Result<Message> {
    let mut message = Message::default();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status: u16 = parts
            .next()
            .and_then(|code| code.parse().ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| invalid(format!("not a status line: {line:?}")))?;
        let headers = read_fields(reader)?;
        if (100..200).contains(&status) && status != 101 {
            message.informational.push((status, headers));
            continue;
        }
        message.version = version;
        message.status = status;
        message.headers = headers;
        break;
    }
    message.complete = true;
    let status = message.status;
    if head_only || status == 101 || status == 204 || status == 304 {
        return Ok(message);
    }
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        message.chunked = true;
        loop {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line)? == 0 {
                message.complete = false;
                return Ok(message);
            }
            let digits = size_line.trim_end().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(digits, 16)
                .map_err(|_| invalid(format!("bad chunk size line {size_line:?}")))?;
            if size == 0 {
                match read_fields(reader) {
                    Ok(trailers) => message.trailers = trailers,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => message.complete = false,
                    Err(e) => return Err(e),
                }
                return Ok(message);
            }
            let mut crlf = Vec::new();
            if !read_up_to(reader, size, &mut message.body)? || !read_up_to(reader, 2, &mut crlf)? {
                message.complete = false;
                return Ok(message);
            }
            if crlf != b"\r\n" {
                return Err(invalid(format!("chunk not followed by CRLF: {crlf:?}")));
            }
        }
    }
    match message.header("content-length") {
        Some(length) => {
            let length = length
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
            message.complete = read_up_to(reader, length, &mut message.body)?;
        }
        None => {
            reader.read_to_end(&mut message.body)?;
        }
    }
    Ok(message)
}

/// A connection to rill with its reader and writer.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn new(rill: &Rill) -> Client {
        let stream = rill.connect();
        stream.set_nodelay(true).unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, raw: impl AsRef<[u8]>) {
        self.writer.write_all(raw.as_ref()).unwrap();
    }

    fn read(&mut self, head_only: bool) -> Message {
        read_message(&mut self.reader, head_only).expect("an answer")
    }

    fn ask(&mut self, raw: &str) -> Message {
        self.send(raw);
        self.read(raw.starts_with("HEAD "))
    }

    /// Whether the server closes within `limit` (reading, and dropping,
    /// anything it still sends).
    fn closes_within(&mut self, limit: Duration) -> bool {
        self.reader.get_ref().set_read_timeout(Some(limit)).unwrap();
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

/// One request on a fresh connection, one answer.
fn ask(rill: &Rill, raw: &str) -> Message {
    Client::new(rill).ask(raw)
}

/// A GET for `target` with Host `example.test`, connection closed after.
fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
}

fn assert_via(message: &Message, what: &str) {
    let via = message.all("via").join(", ");
    assert!(
        via.contains("1.1 rill"),
        "{what}: Via {via:?} does not name rill"
    );
}

// ---------------------------------------------------------------------------
// What the Node backend's /echo saw

/// The Node backend's /echo answer: what reached it.
#[derive(Debug, Default)]
struct Echo {
    method: String,
    url: String,
    continued: bool,
    body_length: u64,
    sha256: String,
    headers: Fields,
    trailers: Fields,
}

impl Echo {
    fn parse(message: &Message) -> Echo {
        assert_eq!(message.status, 200, "not an echo: {}", message.text());
        let text = message.text();
        let mut echo = Echo::default();
        let mut list: Option<&mut Fields> = None;
        let mut headers = Vec::new();
        let mut trailers = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches(',');
            if line.starts_with("],") || line == "]" {
                list = None;
            } else if let Some(pair) = line.strip_prefix('[') {
                let (name, rest) = json_string(pair);
                let (value, _) = json_string(rest.trim_start_matches(','));
                if let Some(list) = list.as_deref_mut() {
                    list.push((name.to_ascii_lowercase(), value));
                }
            } else if let Some((key, value)) = line.split_once("\": ") {
                match key.trim_start_matches('"') {
                    "method" => echo.method = json_string(value).0,
                    "url" => echo.url = json_string(value).0,
                    "sha256" => echo.sha256 = json_string(value).0,
                    "continued" => echo.continued = value == "true",
                    "bodyLength" => echo.body_length = value.parse().unwrap(),
                    "headers" => list = Some(&mut headers),
                    "trailers" => list = Some(&mut trailers),
                    _ => {}
                }
            }
        }
        echo.headers = headers;
        echo.trailers = trailers;
        assert!(!echo.method.is_empty(), "not an echo: {text}");
        echo
    }

    fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        fields(&self.headers, name)
    }
}

/// Decodes the JSON string at the start of `text` (after spaces); returns it
/// and what follows.
fn json_string(text: &str) -> (String, &str) {
    let text = text.trim_start();
    let mut chars = text.char_indices();
    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "no string: {text}");
    let mut out = String::new();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (out, &text[at + 1..]),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('b') => out.push('\u{8}'),
                Some('f') => out.push('\u{c}'),
                Some('u') => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    let code = u32::from_str_radix(&hex, 16).unwrap();
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    panic!("unterminated string: {text}")
}

/// The SHA-256 of `data`, in hex, by coreutils' sha256sum.
fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_owned()
}

/// rill's resident memory in KiB (VmRSS in /proc/PID/status).
fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Samples a process's VmRSS every 10 ms until dropped; `max()` is the peak.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn new(pid: u32) -> RssWatch {
        let peak = Arc::new(AtomicU64::new(vm_rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(vm_rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssWatch {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Which requests go where

#[test]
fn a_prefix_matches_whole_segments_of_the_normalised_path() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    fs::write(dir.path().join("apiary"), "root apiary").unwrap();
    fs::write(dir.path().join("x"), "root x").unwrap();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let routed = ["/api", "/api/", "/api/x", "/api?q", "/api/x/y?a=1&b"];
    for target in routed {
        let answer = ask(&rill, &get(target));
        assert_via(&answer, target);
        assert_eq!(
            Echo::parse(&answer).url,
            target,
            "the path passes unchanged"
        );
    }
    // Not the route's: served from ROOT (the normalised path) or 404.
    let not_routed = [
        ("/apiary", Some("root apiary")),
        ("/api../x", None),
        ("/api%2e%2e/x", None),
        ("/api/../x", Some("root x")),
        ("/api/%2e%2e/x", Some("root x")),
        ("/api/./../x", Some("root x")),
    ];
    for (target, root_body) in not_routed {
        let answer = ask(&rill, &get(target));
        let from_root = root_body.is_some_and(|body| answer.status == 200 && answer.text() == body);
        assert!(
            from_root || answer.status == 404,
            "{target}: {} {:?}",
            answer.status,
            answer.text()
        );
    }
    let expected: Vec<String> = routed.iter().map(|t| format!("GET {t}")).collect();
    assert_eq!(
        node.log(),
        expected,
        "exactly the routed requests reach the backend"
    );
}

#[test]
fn the_longest_prefix_wins_whatever_the_order() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let short = format!("/api={}/short", node.addr());
    let long = format!("/api/v2={}/long", node.addr());
    for routes in [[short.clone(), long.clone()], [long.clone(), short.clone()]] {
        let rill = start(dir.path(), &routes, &[]);
        for (target, upstream) in [
            ("/api/x", "/short/x"),
            ("/api/v2/x", "/long/x"),
            ("/api/v2", "/long"),
            ("/api/v2?q=1", "/long?q=1"),
            ("/api/v2x", "/short/v2x"),
            ("/api/v", "/short/v"),
        ] {
            let echo = Echo::parse(&ask(&rill, &get(target)));
            assert_eq!(echo.url, upstream, "{target} with {routes:?}");
        }
    }
}

#[test]
fn an_upstream_path_replaces_the_prefix() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}/v1", node.addr())], &[]);
    backend_sees(
        &rill,
        &[
            ("/api/x", "/v1/x"),
            ("/api", "/v1"),
            ("/api/", "/v1/"),
            ("/api?q=1", "/v1?q=1"),
            ("/api/a/b?c=d", "/v1/a/b?c=d"),
        ],
    );
}

/// GETs each target through rill and checks the target the echo backend
/// was sent.
fn backend_sees(rill: &Rill, cases: &[(&str, &str)]) {
    for &(target, upstream) in cases {
        let echo = Echo::parse(&ask(rill, &get(target)));
        assert_eq!(echo.url, upstream, "{target}");
    }
}

#[test]
fn a_route_onto_the_backends_root_never_sends_a_network_path() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/r={}/", node.addr())], &[]);
    // `//evil.example/x` is another host to a URL parser (Node's `new
    // URL(req.url, base)`): the slashes are merged, as nginx does.
    backend_sees(
        &rill,
        &[
            ("/r//evil.example/x", "/evil.example/x"),
            ("/r///x?q", "/x?q"),
            ("/r//", "/"),
            ("/r/a//b", "/a//b"),
        ],
    );
}

#[test]
fn a_slash_route_makes_a_plain_reverse_proxy_and_stats_still_win() {
    let (Some(all), Some(api)) = (node_backend(), node_backend()) else {
        return;
    };
    let dir = site();
    fs::write(dir.path().join("local.txt"), "local").unwrap();
    let routes = [format!("/={}", all.addr()), format!("/api={}", api.addr())];
    let rill = start(dir.path(), &routes, &["--stats"]);
    assert_eq!(
        Echo::parse(&ask(&rill, &get("/local.txt"))).url,
        "/local.txt"
    );
    assert_eq!(Echo::parse(&ask(&rill, &get("/"))).url, "/");
    assert_eq!(Echo::parse(&ask(&rill, &get("/api/x"))).url, "/api/x");
    let stats = ask(&rill, &get("/.rill/stats"));
    assert_eq!(stats.status, 200);
    assert!(stats.text().contains('{'), "stats: {}", stats.text());
    assert_eq!(all.log(), ["GET /local.txt", "GET /"]);
    assert_eq!(api.log(), ["GET /api/x"]);
}

// ---------------------------------------------------------------------------
// The request rebuilt for the backend, the answer rebuilt for the client

#[test]
fn hop_by_hop_request_fields_are_removed_before_rill_adds_its_own() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let answer = ask(
        &rill,
        "GET /api/echo HTTP/1.1\r\nHost: example.test:8443\r\n\
         Connection: keep-alive, X-Secret, x-other\r\nX-Secret: s\r\nX-Other: o\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: deflate;q=0.5\r\n\
         Upgrade: h2c\r\nX-Custom: kept\r\nUser-Agent: rill-test\r\n\r\n",
    );
    assert_via(&answer, "the answer");
    let echo = Echo::parse(&answer);
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "transfer-encoding",
    ] {
        assert_eq!(
            echo.all(gone),
            Vec::<&str>::new(),
            "{gone} reached the backend"
        );
    }
    // rill may send a TE of its own (`trailers`), never the client's.
    assert!(
        !echo.all("te").join(",").contains("deflate"),
        "{:?}",
        echo.headers
    );
    for connection in echo.all("connection") {
        let lower = connection.to_ascii_lowercase();
        assert!(
            !lower.contains("x-secret") && !lower.contains("x-other"),
            "Connection: {connection}"
        );
    }
    assert_eq!(echo.header("x-custom"), Some("kept"));
    assert_eq!(echo.header("user-agent"), Some("rill-test"));
    assert_eq!(echo.all("host"), ["example.test:8443"]);
    assert!(
        echo.all("via").join(", ").contains("1.1 rill"),
        "{:?}",
        echo.headers
    );
}

#[test]
fn hop_by_hop_answer_fields_are_removed() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let answer = ask(&rill, &get("/api/hop"));
    assert_eq!((answer.status, answer.text().as_str()), (200, "hop\n"));
    for gone in ["x-hop", "keep-alive", "proxy-connection", "upgrade"] {
        assert_eq!(
            answer.all(gone),
            Vec::<&str>::new(),
            "{gone} reached the client"
        );
    }
    for connection in answer.all("connection") {
        assert!(
            !connection.to_ascii_lowercase().contains("x-hop"),
            "{connection}"
        );
    }
    assert_eq!(answer.header("x-end-to-end"), Some("kept"));
    assert_via(&answer, "/api/hop");
}

#[test]
fn spoofed_forwarding_fields_are_overwritten_with_the_peer() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let echo = Echo::parse(&ask(
        &rill,
        "GET /api/echo HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 6.6.6.6\r\n\
         x-forwarded-for: 7.7.7.7, 8.8.8.8\r\nX-Forwarded-Host: evil.test\r\n\
         X-Forwarded-Proto: https\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 666\r\n\
         Connection: close\r\n\r\n",
    ));
    assert!(echo.header("x-real-ip").is_none(), "{:?}", echo.headers);
    assert!(
        echo.header("x-forwarded-port").is_none(),
        "{:?}",
        echo.headers
    );
    assert_eq!(
        echo.all("x-forwarded-for"),
        ["127.0.0.1"],
        "{:?}",
        echo.headers
    );
    assert_eq!(echo.all("x-forwarded-host"), ["example.test"]);
    assert_eq!(echo.all("x-forwarded-proto"), ["http"]);
    let forwarded = echo.all("forwarded");
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    let forwarded = forwarded[0].to_ascii_lowercase();
    assert!(
        forwarded.contains("for=127.0.0.1") || forwarded.contains("for=\"127.0.0.1"),
        "{forwarded}"
    );
    assert!(forwarded.contains("host=\"example.test\""), "{forwarded}");
    assert!(forwarded.contains("proto=http"), "{forwarded}");
    assert!(!format!("{:?}", echo.headers).contains("6.6.6.6"));
}

/// A route that mounts a backend at its prefix (`/py=HOST:PORT/`) tells it
/// the prefix in `X-Forwarded-Prefix`, for the links it builds; a client's
/// own is never passed on, under any route.
#[test]
fn a_mounted_backend_is_told_its_prefix_and_no_client_can_fake_one() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[
            format!("/py={}/", node.addr()),
            format!("/api={}", node.addr()),
            format!("/v2={}/api", node.addr()),
        ],
        &[],
    );
    let ask_echo = |path: &str| {
        Echo::parse(&ask(
            &rill,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nX-Forwarded-Prefix: /evil\r\n\
                 Connection: close\r\n\r\n"
            ),
        ))
    };
    let mounted = ask_echo("/py/echo");
    assert_eq!(
        mounted.all("x-forwarded-prefix"),
        ["/py"],
        "{:?}",
        mounted.headers
    );
    for path in ["/api/echo", "/v2/echo"] {
        let echo = ask_echo(path);
        assert!(
            echo.all("x-forwarded-prefix").is_empty(),
            "{path}: {:?}",
            echo.headers
        );
    }
}

/// A backend mounted at its prefix (`/py=HOST:PORT/`) asked for the bare
/// prefix would serve its index at `/py`, where the page's relative links
/// miss the route: rill sends the client to `/py/` instead (as nginx does),
/// never the backend, keeping the query, and with a 308 where a 301 would
/// turn a POST into a GET. Routes that pass paths on, or map the prefix to
/// a path of their own, still forward it.
#[test]
fn the_bare_prefix_of_a_mounted_backend_is_a_redirect_to_its_slash() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let routes = [
        format!("/py={}/", node.addr()),
        format!("/api={}", node.addr()),
        format!("/r={}/v1", node.addr()),
    ];
    let rill = start(dir.path(), &routes, &["--log-level", "info"]);
    for (request, status, location) in [
        ("GET /py", 301, "/py/"),
        ("GET /py?x=1", 301, "/py/?x=1"),
        ("GET /p%79?a=b&c", 301, "/py/?a=b&c"),
        ("GET /x/../py?q", 301, "/py/?q"),
        ("HEAD /py", 301, "/py/"),
        ("DELETE /py", 308, "/py/"),
    ] {
        let raw = format!("{request} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n");
        let answer = ask(&rill, &raw);
        assert_eq!(answer.status, status, "{request}: {answer:?}");
        assert_eq!(answer.header("location"), Some(location), "{request}");
        assert!(answer.header("date").is_some(), "{request}");
        if request.starts_with("HEAD") {
            assert!(answer.body.is_empty(), "{request}: {answer:?}");
        } else {
            assert!(answer.text().contains(location), "{request}: {answer:?}");
        }
    }
    // A POST keeps its method and body at the new URL: 308, not 301.
    let post = "POST /py HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na=1";
    let answer = ask(&rill, post);
    assert_eq!(answer.status, 308, "{answer:?}");
    assert_eq!(answer.header("location"), Some("/py/"));
    // The redirect keeps the connection: the URL it names is asked on it,
    // and reaches the backend as its root.
    let mut client = Client::new(&rill);
    let answer = client.ask("GET /py?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(answer.status, 301, "{answer:?}");
    let answer = client.ask("GET /py/?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(Echo::parse(&answer).url, "/?x=1");
    backend_sees(
        &rill,
        &[
            ("/py/", "/"),
            ("/api", "/api"),
            ("/r", "/v1"),
            ("/r?q", "/v1?q"),
        ],
    );
    assert_eq!(
        node.log(),
        ["GET /?x=1", "GET /", "GET /api", "GET /v1", "GET /v1?q"],
        "no redirect reached the backend"
    );
    let log = rill.stop();
    let line = log
        .lines()
        .find(|line| line.contains("\"GET /py?x=1\" 301 "))
        .unwrap_or_else(|| panic!("no access line for the redirect in:\n{log}"));
    assert!(!line.contains("upstream="), "{line}");
    assert!(log.contains("\"POST /py\" 308 "), "{log}");
}

/// RFC 9110 §6.6.1: a proxy with a clock adds the `Date` a backend left
/// out of its answer, and relays the one it gave.
#[test]
fn a_backend_answer_without_a_date_gets_rills() {
    let Some(broken) = broken_backend() else {
        return;
    };
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={}", broken.addr())], &[]);
    let mut client = Client::new(&rill);
    for round in 0..2 {
        let before = std::time::SystemTime::now() - Duration::from_secs(2);
        let answer = client.ask("GET /b/ok HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(answer.text(), "ok", "{answer:?}");
        let dates = answer.all("date");
        assert_eq!(dates.len(), 1, "round {round}: {answer:?}");
        let date = httpdate::parse_http_date(dates[0]).expect("an HTTP date");
        let after = std::time::SystemTime::now() + Duration::from_secs(2);
        assert!(before <= date && date <= after, "{}", dates[0]);
        let answer = client.ask("GET /b/dated HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(answer.text(), "dated", "{answer:?}");
        assert_eq!(answer.all("date"), ["Sun, 06 Nov 1994 08:49:37 GMT"]);
    }
}

#[test]
fn host_is_kept_and_via_is_added_both_ways() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let answer = ask(
        &rill,
        "GET /api/echo HTTP/1.1\r\nHost: Example.Test:81\r\nVia: 1.0 corp-proxy\r\n\
         Connection: close\r\n\r\n",
    );
    assert_via(&answer, "the answer");
    let echo = Echo::parse(&answer);
    assert_eq!(
        echo.all("host"),
        ["Example.Test:81"],
        "Host as the client sent it"
    );
    let via = echo.all("via").join(", ");
    let (client, rill_via) = (via.find("corp-proxy"), via.find("1.1 rill"));
    assert!(
        client.is_some() && rill_via.is_some() && client < rill_via,
        "rill appends itself to Via: {via:?}"
    );
}

// ---------------------------------------------------------------------------
// Smuggling: every framing ambiguity is a 400 and a close, and never reaches
// the backend

/// Sends `raw` on a fresh connection; returns all of rill's reply and whether
/// rill closed the connection (within 5 s) after it.
fn exchange(rill: &Rill, raw: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = rill.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // rill may answer and close before reading all of it.
    let _ = stream.write_all(raw);
    let mut reply = Vec::new();
    let closed = stream.read_to_end(&mut reply).is_ok();
    (reply, closed)
}

/// The status of every status line in `reply`.
fn statuses(reply: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(reply);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

#[test]
fn every_smuggling_vector_sent_to_a_route_is_a_400_and_a_close() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    assert_eq!(Echo::parse(&ask(&rill, &get("/api/warm"))).url, "/api/warm");
    assert_eq!(node.log(), ["GET /api/warm"]);
    node.reset();
    let h = "Host: t\r\n";
    // Appended to every case: it would reach the backend if rill read on.
    let hidden = "GET /api/hidden HTTP/1.1\r\nHost: t\r\n\r\n";
    let long_header = format!("X-Big: {}\r\n", "a".repeat(17 * 1024));
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let cases: Vec<(&str, String, u16)> = vec![
        ("CL and TE", format!("PUT /api/x HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400),
        ("TE and CL", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), 400),
        ("CL.TE hiding a request", format!("POST /api/x HTTP/1.1\r\n{h}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}", 5 + hidden.len()), 400),
        ("TE.CL hiding a request", format!("POST /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len()), 400),
        ("differing CLs", format!("PUT /api/x HTTP/1.1\r\n{h}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"), 400),
        ("CL 0 and CL n", format!("GET /api/x HTTP/1.1\r\n{h}Content-Length: 0\r\nContent-Length: {}\r\n\r\n", hidden.len()), 400),
        ("negative CL", format!("PUT /api/x HTTP/1.1\r\n{h}Content-Length: -5\r\n\r\n"), 400),
        ("hex CL", format!("PUT /api/x HTTP/1.1\r\n{h}Content-Length: 0x10\r\n\r\n"), 400),
        ("overflowing CL", format!("PUT /api/x HTTP/1.1\r\n{h}Content-Length: 99999999999999999999999\r\n\r\n"), 400),
        ("CL list", format!("PUT /api/x HTTP/1.1\r\n{h}Content-Length: 5, 5\r\n\r\nhello"), 400),
        ("CL with plus", format!("PUT /api/x HTTP/1.1\r\n{h}Content-Length: +5\r\n\r\nhello"), 400),
        ("bad chunk size", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size overflow", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n"), 400),
        ("0x chunk size", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), 400),
        ("negative chunk size", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk longer than size", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"), 400),
        ("bare LF in chunk", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), 400),
        ("TE not ending in chunked", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: gzip\r\n\r\n"), 400),
        ("unknown transfer-coding", format!("PUT /api/x HTTP/1.1\r\n{h}Transfer-Encoding: xyz, chunked\r\n\r\n"), 501),
        ("TE in HTTP/1.0", "PUT /api/x HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("xchunked with CL 0", format!("GET /api/x HTTP/1.1\r\n{h}Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n"), 400),
        ("space before colon in TE", format!("GET /api/x HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), 400),
        ("chunked then identity", format!("GET /api/x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"), 400),
        ("obs-fold", format!("GET /api/x HTTP/1.1\r\n{h}X-Folded: a\r\n b\r\n\r\n"), 400),
        ("NUL in header", format!("GET /api/x HTTP/1.1\r\n{h}X-Nul: a\0b\r\n\r\n"), 400),
        ("control byte in header", format!("GET /api/x HTTP/1.1\r\n{h}X-Bell: a\u{7}b\r\n\r\n"), 400),
        ("space before colon", "GET /api/x HTTP/1.1\r\nHost : t\r\n\r\n".into(), 400),
        ("bad header name", format!("GET /api/x HTTP/1.1\r\n{h}Bad(Name): v\r\n\r\n"), 400),
        ("no Host", "GET /api/x HTTP/1.1\r\n\r\n".into(), 400),
        ("two Hosts", "GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("header over 16 KiB", format!("GET /api/x HTTP/1.1\r\n{h}{long_header}\r\n"), 431),
        ("100 header fields", format!("GET /api/x HTTP/1.1\r\n{h}{many}\r\n"), 431),
        ("absolute-form, other scheme", format!("GET ftp://t/api/x HTTP/1.1\r\n{h}\r\n"), 400),
        ("lower-case version", format!("GET /api/x http/1.1\r\n{h}\r\n"), 400),
    ];
    let mut wrong = Vec::new();
    for (name, raw, expected) in &cases {
        let mut raw = raw.clone().into_bytes();
        raw.extend_from_slice(hidden.as_bytes());
        let (reply, closed) = exchange(&rill, &raw);
        let got = statuses(&reply);
        if got != [*expected] || !closed {
            wrong.push(format!(
                "{name}: expected [{expected}] and a close, got {got:?}, closed {closed}"
            ));
        }
    }
    // Valid requests whose bodies are requests: they reach the backend, as
    // bodies, and only they do.
    let secret = "GET /api/secret HTTP/1.1\r\nHost: t\r\n\r\n";
    let valid = [
        format!("GET /api/a HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{secret}\r\n0\r\n\r\n", secret.len()),
        format!("GET /api/a HTTP/1.1\r\n{h}Content-Length: {}\r\nConnection: close\r\n\r\n{secret}", secret.len()),
    ];
    for raw in &valid {
        let (reply, _) = exchange(&rill, raw.as_bytes());
        assert_eq!(statuses(&reply), [200], "{raw:?}");
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.contains(&format!("\"bodyLength\": {}", secret.len())),
            "{text}"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        node.log(),
        ["GET /api/a", "GET /api/a"],
        "what reached the backend"
    );
}

#[test]
fn lenient_chunk_syntax_never_reaches_a_backend() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let head = "PUT /api/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    // RFC 9112 §7.1.1: whitespace only around `;` and `=`, a name after every `;`.
    let bad = [
        ("space after the size", format!("{head}5 \r\nhello\r\n0\r\n\r\n")),
        ("junk after the size", format!("{head}5 junk\r\nhello\r\n0\r\n\r\n")),
        ("empty extension", format!("{head}5;\r\nhello\r\n0\r\n\r\n")),
        ("control byte in an extension", format!("{head}5;a=\u{1}\r\nhello\r\n0\r\n\r\n")),
        ("trailer line without a colon", format!("{head}5\r\nhello\r\n0\r\nnocolon\r\n\r\n")),
        ("GET with a bad chunked body", "GET /api/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".into()),
    ];
    let mut wrong = Vec::new();
    for (name, raw) in &bad {
        let (reply, closed) = exchange(&rill, raw.as_bytes());
        let got = statuses(&reply);
        if got != [400] || !closed {
            wrong.push(format!(
                "{name}: expected [400] and a close, got {got:?}, closed {closed}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let good = [
        "5;name=value\r\nhello\r\n0\r\n\r\n",
        "5 ; name = \"quoted value\"\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
    ];
    for body in good {
        let answer = ask(&rill, &format!("{head}{body}"));
        let echo = Echo::parse(&answer);
        assert_eq!(
            (echo.body_length, echo.sha256.as_str()),
            (5, sha256_hex(b"hello").as_str())
        );
    }
    assert_eq!(node.log(), ["PUT /api/c", "PUT /api/c"]);
}

// ---------------------------------------------------------------------------
// Bodies both ways

#[test]
fn hundred_requests_through_a_route_on_one_connection() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    fs::write(dir.path().join("k.txt"), "keep").unwrap();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let mut client = Client::new(&rill);
    for i in 0..100 {
        let answer = client.ask(&format!("GET /api/echo?i={i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(
            Echo::parse(&answer).url,
            format!("/api/echo?i={i}"),
            "request {i}"
        );
        assert_ne!(answer.header("connection"), Some("close"), "request {i}");
        // Now and then a file from ROOT on the same connection.
        if i % 10 == 9 {
            let answer = client.ask("GET /k.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(
                (answer.status, answer.text().as_str()),
                (200, "keep"),
                "after {i}"
            );
        }
    }
    assert_eq!(node.get("/count?path=/api/echo").trim(), "100");
    assert_eq!(node.log().len(), 100);
}

#[test]
fn request_bodies_are_streamed_to_the_backend_reframed() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    // --max-body is for uploads into ROOT: a proxied body is not capped by it.
    let rill = start(
        dir.path(),
        &[format!("/api={}", node.addr())],
        &["--max-body", "1K"],
    );
    let body = pseudo_random(3 * MIB + 17, 5);
    let mut client = Client::new(&rill);
    client.send(format!(
        "POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    client.send(&body);
    let echo = Echo::parse(&client.read(false));
    assert_eq!(
        (echo.method.as_str(), echo.body_length),
        ("POST", body.len() as u64)
    );
    assert_eq!(echo.sha256, sha256_hex(&body));
    // A chunked body, pieces of all sizes, on the same connection.
    let mut chunked = Vec::new();
    let mut offset = 0;
    for size in [1, 10, 4096, 70_000, 3] {
        chunked.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        chunked.extend_from_slice(&body[offset..offset + size]);
        chunked.extend_from_slice(b"\r\n");
        offset += size;
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    client.send("PUT /api/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    client.send(&chunked);
    let echo = Echo::parse(&client.read(false));
    assert_eq!(echo.body_length, offset as u64);
    assert_eq!(echo.sha256, sha256_hex(&body[..offset]));
    let framing = (
        echo.all("content-length").len(),
        echo.all("transfer-encoding").len(),
    );
    assert!(framing == (1, 0) || framing == (0, 1), "{:?}", echo.headers);
    assert_eq!(node.log(), ["POST /api/echo", "PUT /api/echo"]);
}

/// A chunked upload bigger than one turn's relay budget: the turn that
/// spends the budget may end with the buffer for the backend all sent but
/// not yet emptied, and the next turn must go on from there. It once
/// reported "nothing moved" and waited for an event that never came (the
/// client had sent everything): the upload stalled into a 408.
#[test]
fn chunked_uploads_longer_than_a_turns_budget_never_stall() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/api={}", node.addr())],
        &["--header-timeout", "2"],
    );
    let body = pseudo_random(3 * MIB, 9);
    let mut chunked = Vec::new();
    for piece in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let expected = sha256_hex(&body);
    let mut client = Client::new(&rill);
    for round in 0..30 {
        client.send("PUT /api/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        client.send(&chunked);
        let answer = client.read(false);
        assert_eq!(answer.status, 200, "round {round}: {}", answer.text());
        let echo = Echo::parse(&answer);
        assert_eq!(echo.body_length, body.len() as u64, "round {round}");
        assert_eq!(echo.sha256, expected, "round {round}");
    }
}

#[test]
fn a_50_mib_put_with_expect_through_a_route_does_not_stall() {
    if !common::curl_available() {
        return;
    }
    let Some(node) = node_backend() else { return };
    let dir = site();
    let files = site();
    let upload = files.path().join("upload.bin");
    let data = pseudo_random(50 * MIB, 50);
    fs::write(&upload, &data).unwrap();
    let expected = sha256_hex(&data);
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let url = format!("http://{}/api/echo", rill.addr);
    let out = files.path().join("answer.json");
    let started = Instant::now();
    // Without a 100, curl would wait --expect100-timeout (10 s) before sending.
    let output = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--expect100-timeout",
            "10",
            "-H",
            "Expect: 100-continue",
        ])
        .arg("-T")
        .arg(&upload)
        .arg("-o")
        .arg(&out)
        .args(["-w", "%{http_code}", &url])
        .output()
        .expect("run curl");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200", "{stderr}");
    assert!(
        stderr.contains("< HTTP/1.1 100"),
        "no 100 relayed:\n{stderr}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let text = fs::read_to_string(&out).unwrap();
    assert!(
        text.contains(&format!("\"bodyLength\": {},", 50 * MIB)),
        "{text}"
    );
    assert!(
        text.contains(&format!("\"sha256\": \"{expected}\"")),
        "{text}"
    );
    assert!(
        text.contains("\"continued\": true"),
        "Expect was not forwarded: {text}"
    );
}

/// An HTTP/1.0 backend that reads each request's body (its
/// `Content-Length`) and answers how much came and whether `Expect` was
/// there, then closes: it never sends `100 Continue`.
fn http10_body_reader() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut length, mut expect) = (0usize, false);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    expect |= lower.starts_with("expect:");
                    line.clear();
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let text = format!("got {length} expect={expect}");
                let _ = (&stream).write_all(
                    format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    addr
}

#[test]
fn rill_says_100_continue_for_a_backend_known_to_speak_http10() {
    let backend = http10_body_reader();
    let dir = site();
    let rill = start(dir.path(), &[format!("/old={backend}")], &[]);
    let put = |expect: &str| {
        format!("PUT /old/x HTTP/1.1\r\nHost: example.test\r\n{expect}Content-Length: 5\r\n\r\n")
    };
    // The first exchange is how rill learns the backend's version: the
    // Expect goes to the backend, which ignores it (curl would wait its
    // timeout here, as through any proxy).
    let mut first = Client::new(&rill);
    first.send(put("Expect: 100-continue\r\n"));
    first.send("hello");
    let answer = first.read(false);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, b"got 5 expect=true");
    // Now rill knows: its own 100 comes at once, before any body byte, and
    // the backend is not asked for one.
    let mut client = Client::new(&rill);
    client
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client.send(put("Expect: 100-continue\r\n"));
    let mut interim = String::new();
    client
        .reader
        .read_line(&mut interim)
        .expect("a 100 before the body");
    client.reader.read_line(&mut interim).expect("its end");
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    client.send("hello");
    let answer = client.read(false);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, b"got 5 expect=false");
    // An HTTP/1.0 client is never sent a 1xx.
    let mut old = Client::new(&rill);
    old.send(put("Expect: 100-continue\r\n").replace("HTTP/1.1", "HTTP/1.0"));
    old.send("hello");
    let answer = old.read(false);
    assert_eq!(answer.status, 200, "{answer:?}");
}

const CHUNKED_PUT: &str =
    "PUT /old/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

/// The first chunked body for a backend rill has not heard from yet goes
/// out chunked (most backends speak HTTP/1.1). One that answers in
/// HTTP/1.0 read none of it: its `200` would tell the client an upload
/// landed that was lost, so the client gets a `502` saying why, and the
/// next such request a `411` before it is sent.
#[test]
fn an_http10_backend_that_was_sent_a_chunked_body_is_not_believed() {
    let backend = http10_body_reader();
    let dir = site();
    let rill = start(dir.path(), &[format!("/old={backend}")], &[]);
    let mut client = Client::new(&rill);
    client.send(CHUNKED_PUT);
    let answer = client.read(false);
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(
        answer.text().contains("Content-Length"),
        "{}",
        answer.text()
    );
    assert!(!answer.text().contains("got 0"), "{}", answer.text());
    let mut client = Client::new(&rill);
    client.send(CHUNKED_PUT);
    assert_eq!(client.read(false).status, 411);
}

#[test]
fn a_chunked_body_for_a_backend_known_to_speak_http10_is_a_411() {
    let backend = http10_body_reader();
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/old={backend}")],
        &["--log-level", "info"],
    );
    let answer = ask(
        &rill,
        "PUT /old/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(answer.body, b"got 5 expect=false");
    // HTTP/1.0 has no chunked bodies: that backend would read none of it
    // and answer as if it were empty. The client hears why, and the
    // connection ends (the body is still coming).
    let mut client = Client::new(&rill);
    client.send(CHUNKED_PUT);
    let answer = client.read(false);
    assert_eq!(answer.status, 411, "{answer:?}");
    assert!(
        answer.text().contains("Content-Length"),
        "{}",
        answer.text()
    );
    assert!(client.closes_within(Duration::from_secs(5)));
    // The access line names the request refused, not a head never read.
    let log = rill.stop();
    assert!(log.contains("\"PUT /old/x\" 411 "), "{log}");
}

#[test]
fn server_sent_events_arrive_as_they_are_sent() {
    if !common::curl_available() {
        return;
    }
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let started = Instant::now();
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "-N",
            &format!("http://{}/api/sse?n=10&ms=100", rill.addr),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    let mut times = Vec::new();
    for line in BufReader::new(curl.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("data:") {
            times.push(started.elapsed());
        }
    }
    assert!(curl.wait().unwrap().success(), "curl failed");
    assert_eq!(times.len(), 10, "events: {times:?}");
    assert!(
        times[0] < Duration::from_millis(500),
        "first event after {:?}",
        times[0]
    );
    // Ten events 100 ms apart span 900 ms; a burst at the end spans nothing.
    let spread = times[9] - times[0];
    assert!(
        spread > Duration::from_millis(600),
        "events in a burst: {times:?}"
    );
    let spaced = times
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(40))
        .count();
    assert!(spaced >= 7, "events not spaced: {times:?}");
}

#[test]
fn chunked_answers_and_their_trailers_are_relayed() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let mut client = Client::new(&rill);
    let answer = client.ask("GET /api/chunked HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(answer.complete);
    assert_eq!(
        answer.text(),
        "piece 0\npiece 1\npiece 2\npiece 3\npiece 4\n"
    );
    let answer = client.ask("GET /api/trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n");
    assert!(answer.chunked && answer.complete, "{answer:?}");
    assert_eq!(answer.text(), "first piece\nsecond piece\nthird piece\n");
    let checksum = "sha256=88762c9012033252301864b7fb3bdb061d6d207ed764bb5efe626b175e9caf0f";
    assert_eq!(
        field(&answer.trailers, "x-checksum"),
        Some(checksum),
        "{answer:?}"
    );
    assert_eq!(answer.header("x-checksum"), None, "trailers stay trailers");
    // An HTTP/1.0 client gets the same body, delimited by the close.
    let answer = ask(&rill, "GET /api/chunked HTTP/1.0\r\nHost: t\r\n\r\n");
    assert!(!answer.chunked, "chunked to HTTP/1.0: {answer:?}");
    assert_eq!(
        answer.text(),
        "piece 0\npiece 1\npiece 2\npiece 3\npiece 4\n"
    );
}

#[test]
fn early_hints_reach_http11_clients_only() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let answer = ask(&rill, &get("/api/early-hints"));
    assert_eq!(answer.informational.len(), 1, "{answer:?}");
    let (status, fields) = &answer.informational[0];
    assert_eq!(*status, 103);
    assert_eq!(
        field(fields, "link"),
        Some("</style.css>; rel=preload; as=style")
    );
    assert_eq!((answer.status, answer.text().as_str()), (200, "hinted\n"));
    let (reply, closed) = exchange(&rill, b"GET /api/early-hints HTTP/1.0\r\nHost: t\r\n\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(closed, "{text}");
    assert!(
        text.starts_with("HTTP/1.1 200 ") || text.starts_with("HTTP/1.0 200 "),
        "{text}"
    );
    assert!(
        !text.contains(" 103 "),
        "a 1xx to an HTTP/1.0 client: {text}"
    );
    assert!(text.ends_with("hinted\n"), "{text}");
}

#[test]
fn head_through_a_route_ends_at_the_head() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let mut client = Client::new(&rill);
    let answer = client.ask("HEAD /api/big?mb=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-length"), Some("1048576"));
    let answer = client.ask("HEAD /api/echo HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(answer.status, 200);
    // No body bytes came with either: the next answer starts clean.
    let echo = Echo::parse(&client.ask("GET /api/echo HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(echo.method, "GET");
    assert_eq!(
        node.log(),
        ["HEAD /api/big?mb=1", "HEAD /api/echo", "GET /api/echo"]
    );
}

#[test]
fn a_location_at_the_backend_is_rewritten_to_the_clients_view() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let routes = [
        format!("/api={}", node.addr()),
        format!("/r={}/v1", node.addr()),
        format!("/m={}/", node.addr()),
    ];
    let rill = start(dir.path(), &routes, &[]);
    for (target, location) in [
        (
            "/r/redirect?to=/v1/landing",
            "http://example.test/r/landing",
        ),
        (
            "/api/redirect?to=/api/landing",
            "http://example.test/api/landing",
        ),
        (
            "/api/redirect?abs=http://elsewhere.test/x",
            "http://elsewhere.test/x",
        ),
    ] {
        let answer = ask(&rill, &get(target));
        assert_eq!(answer.status, 302, "{target}");
        assert_eq!(answer.header("location"), Some(location), "{target}");
    }
    // The rewritten Location leads back to the backend through rill.
    let answer = ask(&rill, &get("/r/landing"));
    assert_eq!((answer.status, answer.text().as_str()), (200, "landed\n"));
    // A path-absolute Location under the mount stays under it.
    let answer = ask(&rill, &get("/r/redirect?abs=/v1/landing"));
    assert_eq!(answer.header("location"), Some("/r/landing"));
    let answer = ask(&rill, &get("/r/redirect?abs=/elsewhere"));
    assert_eq!(answer.header("location"), Some("/elsewhere"));
    // A backend mounted at /m is told so (X-Forwarded-Prefix): a Location
    // it built with the prefix keeps it once; one without gets it.
    for (target, location) in [
        ("/m/redirect?abs=/m/landing", "/m/landing"),
        ("/m/redirect?abs=/landing", "/m/landing"),
        ("/m/redirect?to=/m/landing", "http://example.test/m/landing"),
        ("/m/redirect?to=/landing", "http://example.test/m/landing"),
    ] {
        let answer = ask(&rill, &get(target));
        assert_eq!(answer.header("location"), Some(location), "{target}");
    }
    // No Host to build an origin from (HTTP/1.0, or an empty Host): the
    // path alone, never the backend's own address.
    for raw in [
        "GET /r/redirect?to=/v1/landing HTTP/1.0\r\n\r\n",
        "GET /r/redirect?to=/v1/landing HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    ] {
        let answer = ask(&rill, raw);
        assert_eq!(answer.status, 302, "{raw:?}");
        assert_eq!(answer.header("location"), Some("/r/landing"), "{raw:?}");
    }
}

#[test]
fn an_http10_backend_and_close_delimited_bodies_keep_the_client_connection() {
    let Some(broken) = broken_backend() else {
        return;
    };
    let backend_dir = site();
    fs::create_dir(backend_dir.path().join("py")).unwrap();
    fs::write(
        backend_dir.path().join("py/hello.txt"),
        "hello from http.server\n",
    )
    .unwrap();
    let Some(python) = http_server(backend_dir.path()) else {
        return;
    };
    let dir = site();
    fs::write(dir.path().join("local.txt"), "local").unwrap();
    let routes = [
        format!("/py={}", python.addr()),
        format!("/b={}", broken.addr()),
    ];
    let rill = start(dir.path(), &routes, &[]);
    let mut client = Client::new(&rill);
    for round in 0..2 {
        let answer = client.ask("GET /py/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(answer.text(), "hello from http.server\n", "round {round}");
        assert_ne!(answer.header("connection"), Some("close"), "round {round}");
        assert_eq!(
            client
                .ask("GET /py/missing HTTP/1.1\r\nHost: t\r\n\r\n")
                .status,
            404
        );
        // No length at all: re-chunked for this HTTP/1.1 client.
        let answer = client.ask("GET /b/http10-close HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(
            answer.chunked && answer.complete,
            "round {round}: {answer:?}"
        );
        assert_eq!(answer.text(), "close-delimited body from HTTP/1.0\n");
        assert_eq!(
            client
                .ask("GET /local.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                .text(),
            "local"
        );
    }
    // An HTTP/1.0 client gets it delimited by the close.
    let answer = ask(&rill, "GET /b/http10-close HTTP/1.0\r\nHost: t\r\n\r\n");
    assert!(!answer.chunked, "{answer:?}");
    assert_eq!(answer.text(), "close-delimited body from HTTP/1.0\n");
}

// ---------------------------------------------------------------------------
// Broken, absent and silent backends

#[test]
fn every_bad_backend_answer_is_a_502() {
    let Some(broken) = broken_backend() else {
        return;
    };
    let dir = site();
    let mut rill = start(dir.path(), &[format!("/b={}", broken.addr())], &[]);
    let offer = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    let cases = [
        ("cl-te", ""),
        ("double-cl", ""),
        ("bad-cl", ""),
        ("crlf", ""),
        ("nul", ""),
        ("huge-head", ""),
        ("garbage", ""),
        ("101-no-upgrade", ""),
        ("101-no-upgrade", offer),
    ];
    let mut wrong = Vec::new();
    for (case, extra) in cases {
        let mut client = Client::new(&rill);
        client.send(format!("GET /b/{case} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"));
        match read_message(&mut client.reader, false) {
            Ok(answer) if answer.status == 502 && !format!("{answer:?}").contains("evil") => {}
            other => wrong.push(format!(
                "{case} (offered: {}): {other:?}",
                !extra.is_empty()
            )),
        }
    }
    // obs-fold: a 502, or the fold replaced by a space (RFC 9112 §5.2).
    let answer = ask(&rill, &get("/b/obs-fold"));
    let unfolded = answer.status == 200 && answer.header("x-folded") == Some("a b");
    if answer.status != 502 && !unfolded {
        wrong.push(format!("obs-fold: {answer:?}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(rill.is_running());
    assert_eq!(ask(&rill, &get("/b/ok")).text(), "ok");
}

#[test]
fn a_backend_dying_mid_body_is_a_truncation_the_client_can_see() {
    let Some(broken) = broken_backend() else {
        return;
    };
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={}", broken.addr())], &[]);
    for case in ["mid-body-close", "mid-chunk-close"] {
        let mut client = Client::new(&rill);
        let answer = client.ask(&format!("GET /b/{case} HTTP/1.1\r\nHost: t\r\n\r\n"));
        if answer.status != 502 {
            assert_eq!(answer.status, 200, "{case}");
            assert!(
                !answer.complete,
                "{case}: a complete-looking answer: {answer:?}"
            );
            assert!(answer.body.len() < 1000, "{case}");
        }
        assert!(
            client.closes_within(Duration::from_secs(5)),
            "{case}: not closed"
        );
    }
}

#[test]
fn bytes_after_a_complete_backend_answer_are_discarded() {
    let Some(broken) = broken_backend() else {
        return;
    };
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={}", broken.addr())], &[]);
    let mut client = Client::new(&rill);
    for round in 0..3 {
        let answer = client.ask("GET /b/trailing-junk HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "hello"),
            "round {round}"
        );
        assert_eq!(
            client.ask("GET /b/ok HTTP/1.1\r\nHost: t\r\n\r\n").text(),
            "ok"
        );
        let answer = client.ask("GET /b/204-body HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(answer.status == 204 || answer.status == 502, "{answer:?}");
        assert_eq!(
            client.ask("GET /b/ok HTTP/1.1\r\nHost: t\r\n\r\n").text(),
            "ok"
        );
        let answer = client.ask("HEAD /b/head-body HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(answer.header("content-length"), Some("5"));
        let answer = client.ask("GET /b/ok HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(answer.text(), "ok", "round {round}");
        assert_eq!(answer.header("x-smuggled"), None);
    }
}

#[test]
fn a_backend_that_is_down_is_a_quick_502() {
    let dir = site();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let rill = start(dir.path(), &[format!("/api=127.0.0.1:{port}")], &[]);
    for i in 0..5 {
        let started = Instant::now();
        let answer = ask(&rill, &get("/api/x"));
        assert_eq!(answer.status, 502, "request {i}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}

/// A listener with a backlog of 0, its queue filled: SYNs to it go
/// unanswered. None when this kernel answers them anyway.
fn unanswering_listener() -> Option<(TcpListener, Vec<TcpStream>)> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; it is
    // handed to TcpListener, which closes it.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        TcpListener::from_raw_fd(fd)
    };
    let addr: SocketAddr = listener.local_addr().unwrap();
    let short = Duration::from_millis(300);
    let fill: Vec<TcpStream> = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&addr, short).ok())
        .collect();
    if TcpStream::connect_timeout(&addr, short).is_ok() {
        eprintln!("SKIPPED: this kernel answers SYNs past a full backlog");
        return None;
    }
    Some((listener, fill))
}

#[test]
fn an_unanswered_connect_is_a_504_after_the_connect_timeout() {
    let Some((listener, _fill)) = unanswering_listener() else {
        return;
    };
    let dir = site();
    let upstream = listener.local_addr().unwrap();
    let rill = start(
        dir.path(),
        &[format!("/api={upstream}")],
        &["--proxy-connect-timeout", "1"],
    );
    let started = Instant::now();
    let answer = ask(&rill, &get("/api/x"));
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 504);
    assert!(
        elapsed > Duration::from_millis(800) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[test]
fn a_silent_backend_is_a_504_after_the_proxy_timeout() {
    let Some(broken) = broken_backend() else {
        return;
    };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/b={}", broken.addr())],
        &["--proxy-timeout", "1"],
    );
    let started = Instant::now();
    let answer = ask(&rill, &get("/b/silent"));
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 504);
    assert!(
        elapsed > Duration::from_millis(800) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(ask(&rill, &get("/b/ok")).text(), "ok");
}

#[test]
fn the_proxy_timeout_allows_slow_answers_and_cuts_stalled_ones() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/api={}", node.addr())],
        &["--proxy-timeout", "1"],
    );
    let started = Instant::now();
    let answer = ask(&rill, &get("/api/slow?ms=500"));
    assert_eq!((answer.status, answer.text().as_str()), (200, "slow\n"));
    assert!(started.elapsed() >= Duration::from_millis(500));
    // Silent for 3 s after the head: rill closes after 1 s, mid-body.
    let started = Instant::now();
    let mut client = Client::new(&rill);
    let answer = client.ask("GET /api/stall?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(answer.status, 200);
    assert!(!answer.complete, "{answer:?}");
    assert!(answer.text().starts_with("before the stall"), "{answer:?}");
    assert!(client.closes_within(Duration::from_secs(5)));
    assert!(
        started.elapsed() < Duration::from_millis(2800),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// WebSocket tunnels

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; // RFC 6455 §1.3

/// Opens a WebSocket through rill at `target`.
fn ws_connect(rill: &Rill, target: &str) -> Client {
    let mut client = Client::new(rill);
    let answer = client.ask(&format!(
        "GET {target} HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ));
    assert_eq!(answer.status, 101, "{answer:?}");
    assert_eq!(answer.header("sec-websocket-accept"), Some(WS_ACCEPT));
    assert!(answer
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket")));
    client
}

/// Sends one masked frame (RFC 6455 §5.2).
fn ws_send(client: &mut Client, opcode: u8, payload: &[u8]) {
    client.send(common::ws_client_frame(true, opcode, payload));
}

/// Reads one unmasked frame from the server: (opcode, payload).
fn ws_read(client: &mut Client) -> (u8, Vec<u8>) {
    common::ws_read_frame(&mut client.reader).expect("a frame")
}

#[test]
fn a_websocket_through_a_route_echoes_and_outlives_the_proxy_timeout() {
    let Some(ws) = ws_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/ws={}", ws.addr())],
        &["--proxy-timeout", "1"],
    );
    let mut client = ws_connect(&rill, "/ws/chat");
    ws_send(&mut client, 1, b"hello");
    assert_eq!(ws_read(&mut client), (1, b"hello".to_vec()));
    // Idle for twice the proxy timeout: the tunnel has its own.
    std::thread::sleep(Duration::from_millis(2500));
    let big = pseudo_random(300_000, 9);
    ws_send(&mut client, 2, &big);
    assert_eq!(ws_read(&mut client), (2, big));
    ws_send(&mut client, 1, b"again");
    assert_eq!(ws_read(&mut client), (1, b"again".to_vec()));
    // Close (code 1000): the server answers with a close and both sides end.
    ws_send(&mut client, 8, &1000u16.to_be_bytes());
    assert_eq!(ws_read(&mut client).0, 8);
    assert!(
        client.closes_within(Duration::from_secs(5)),
        "tunnel not closed"
    );
}

#[test]
fn a_tunnels_access_line_is_written_at_its_end_with_its_bytes_and_duration() {
    let Some(ws) = ws_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/ws={}", ws.addr())],
        &["--log-level", "info"],
    );
    let mut client = ws_connect(&rill, "/ws/log");
    ws_send(&mut client, 1, b"hello"); // 2 + 4 (mask) + 5 bytes up
    assert_eq!(ws_read(&mut client), (1, b"hello".to_vec())); // 2 + 5 down
    std::thread::sleep(Duration::from_millis(400));
    ws_send(&mut client, 8, &1000u16.to_be_bytes()); // 2 + 4 + 2 up
    assert_eq!(ws_read(&mut client).0, 8); // 2 + 2 down
    assert!(client.closes_within(Duration::from_secs(5)));
    drop(client);
    // The client's FIN ends the tunnel; give the loop a moment to log it.
    std::thread::sleep(Duration::from_millis(300));
    let log = rill.stop();
    let line = log
        .lines()
        .find(|line| line.contains("\"GET /ws/log\" 101"))
        .unwrap_or_else(|| panic!("no access line for the tunnel in:\n{log}"));
    let fields: Vec<&str> = line
        .split("\"GET /ws/log\" ")
        .nth(1)
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(fields[0], "101", "{line}");
    assert_eq!(fields[1], "11", "bytes down the tunnel: {line}");
    let millis: f64 = fields[2].trim_end_matches("ms").parse().unwrap();
    assert!(
        millis >= 400.0,
        "the line was written before the tunnel ended: {line}"
    );
    assert!(
        line.contains(" tunnel_up=19"),
        "bytes up the tunnel: {line}"
    );
    assert!(line.contains(" upstream=127.0.0.1:"), "{line}");
    assert!(
        !line.contains("aborted"),
        "a clean end is not an abort: {line}"
    );
}

#[test]
fn sigterm_closes_a_tunnel_at_once_and_says_so() {
    let Some(ws) = ws_backend() else { return };
    let dir = site();
    let mut rill = start(
        dir.path(),
        &[format!("/ws={}", ws.addr())],
        &["--log-level", "info"],
    );
    let mut client = ws_connect(&rill, "/ws/down");
    ws_send(&mut client, 1, b"hello");
    assert_eq!(ws_read(&mut client), (1, b"hello".to_vec()));
    let started = Instant::now();
    rill.signal(libc::SIGTERM);
    assert!(
        client.closes_within(Duration::from_secs(2)),
        "tunnel kept open"
    );
    // Nothing waits for the tunnel: no grace period is spent on it.
    let status = rill.wait_exit(Duration::from_secs(3)).expect("rill exited");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let log = rill.stop();
    assert!(log.contains("1 tunnel(s) closed at once"), "{log}");
    // The summary counts it closed, its backend connection with it.
    for gauge in ["\"open\":0", "\"tunnel\":0", "\"busy\":0"] {
        assert!(log.contains(gauge), "{gauge} in {log}");
    }
    let line = log
        .lines()
        .find(|line| line.contains("\"GET /ws/down\" 101"))
        .unwrap_or_else(|| panic!("no access line for the tunnel in:\n{log}"));
    assert!(line.contains(" 101 7 "), "bytes down the tunnel: {line}");
    assert!(line.contains(" tunnel_up=11"), "{line}");
    assert!(line.contains("aborted"), "{line}");
}

/// A proxied event stream never ends by itself: a shutdown closes it at
/// once (its client reconnects), as it does rill's own `/.rill/events`,
/// instead of spending the whole grace period on it.
#[test]
fn sigterm_closes_a_proxied_event_stream_at_once() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let mut rill = start(
        dir.path(),
        &[format!("/api={}", node.addr())],
        &["--log-level", "info"],
    );
    let mut client = Client::new(&rill);
    client.send("GET /api/sse?n=1000&ms=100 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut line = String::new();
    while !line.starts_with("data:") {
        line.clear();
        client.reader.read_line(&mut line).unwrap();
    }
    let started = Instant::now();
    rill.signal(libc::SIGTERM);
    assert!(
        client.closes_within(Duration::from_secs(2)),
        "stream kept open"
    );
    let status = rill.wait_exit(Duration::from_secs(3)).expect("rill exited");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the grace period was spent on the stream: {:?}",
        started.elapsed()
    );
    let log = rill.stop();
    let access = log
        .lines()
        .find(|line| line.contains("\"GET /api/sse?n=1000&ms=100\" 200 "))
        .unwrap_or_else(|| panic!("no access line in:\n{log}"));
    assert!(access.contains("(aborted: shutdown)"), "{access}");
}

/// A request whose backend has not answered when the shutdown gives up
/// (the grace period ends, or a second signal) is told `503` and logged,
/// not closed without a word.
#[test]
fn a_request_its_backend_never_answered_gets_a_503_when_shutdown_gives_up() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let mut rill = start(
        dir.path(),
        &[format!("/api={}", node.addr())],
        &["--log-level", "info"],
    );
    let mut client = Client::new(&rill);
    client.send("GET /api/slow?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    rill.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    rill.signal(libc::SIGTERM);
    let answer = client.read(false);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.text().contains("shutting down"), "{}", answer.text());
    assert!(client.closes_within(Duration::from_secs(2)));
    let status = rill.wait_exit(Duration::from_secs(3)).expect("rill exited");
    assert!(status.success(), "{status:?}");
    let log = rill.stop();
    assert!(log.contains("\"GET /api/slow?ms=20000\" 503 "), "{log}");
}

/// A client that leaves in the middle of a long proxied answer: its access
/// line counts the body bytes that went out, not 0.
#[test]
fn a_cut_answer_is_logged_with_the_bytes_that_left() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/api={}", node.addr())],
        &["--log-level", "info"],
    );
    let mut client = Client::new(&rill);
    client.send("GET /api/big?mb=50 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut taken = vec![0u8; 3 * MIB];
    client.reader.read_exact(&mut taken).unwrap();
    drop(client);
    std::thread::sleep(Duration::from_millis(500));
    let log = rill.stop();
    let (line, bytes) = common::access_line_of_200(&log, "GET /api/big?mb=50");
    assert!(
        (2 * MIB as u64..50 * MIB as u64).contains(&bytes),
        "{bytes} body bytes logged for a client that read 3 MiB: {line}"
    );
    assert!(line.contains("aborted"), "{line}");
}

#[test]
fn an_idle_tunnel_is_closed_after_the_tunnel_timeout() {
    let Some(ws) = ws_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/ws={}", ws.addr())],
        &["--tunnel-timeout", "1"],
    );
    let mut client = ws_connect(&rill, "/ws");
    ws_send(&mut client, 1, b"hello");
    assert_eq!(ws_read(&mut client), (1, b"hello".to_vec()));
    let started = Instant::now();
    assert!(
        client.closes_within(Duration::from_secs(5)),
        "idle tunnel kept"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed > Duration::from_millis(800),
        "closed after {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------
// The upstream pool against Node's keep-alive timeout

/// Node closes an idle keep-alive connection after 5 s (its default); GETs
/// that arrive every 5 s ± 300 ms meet that close. A pooled connection must
/// be dropped before it goes stale, or the request retried: never a 502.
/// About 75 s, in parallel with the rest of this file.
#[test]
fn requests_every_five_seconds_never_meet_a_stale_pooled_connection() {
    // Node closes idle keep-alive connections after 5 s; 14 clients each
    // send 15 GETs 5 s ± 300 ms apart, 210 in all, over one shared pool.
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let failures = paced_gets(&rill, 14, 15, 5000, 300);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(node.log().len(), 14 * 15);
}

#[test]
fn a_backend_that_closes_idle_connections_sooner_than_the_pool_costs_no_502() {
    // This backend closes a connection idle for 300 ms, well inside rill's
    // 4 s pool lifetime, and requests arrive 300 ± 60 ms apart: pooled
    // connections die just as requests leave on them. The close is seen in
    // the pool, or the request is retried on a fresh connection; no client
    // may see it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut line = String::new();
                    // Idle too long (or closed): close, as Node does at 5 s.
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    while line.len() > 2 {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={backend}")], &["--stats"]);
    let failures = paced_gets(&rill, 1, 40, 300, 60);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(served.load(Ordering::SeqCst), 40);
    let stats = ask(&rill, &get("/.rill/stats")).text();
    // Both ways of meeting a dead connection are expected over 40 tries.
    eprintln!(
        "retries {} connects {} reused {}",
        json_number(&stats, "retries"),
        json_number(&stats, "connects"),
        json_number(&stats, "reused")
    );
    assert!(
        json_number(&stats, "connects") > 1,
        "the backend never closed: {stats}"
    );
}

/// `clients` threads each send `count` GETs, `pause_ms` ± `jitter_ms` apart,
/// each on a fresh client connection; returns what was not a 200.
fn paced_gets(rill: &Rill, clients: u64, count: u64, pause_ms: u64, jitter_ms: u64) -> Vec<String> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ (c + 1).wrapping_mul(0x2545_f491);
                    let mut failures = Vec::new();
                    // Spread the clients over the first pause.
                    std::thread::sleep(Duration::from_millis(pause_ms * c / clients));
                    for i in 0..count {
                        if i > 0 {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            let jitter = (state % (2 * jitter_ms + 1)) as i64 - jitter_ms as i64;
                            let pause = (pause_ms as i64 + jitter) as u64;
                            std::thread::sleep(Duration::from_millis(pause));
                        }
                        let answer = ask(rill, &get(&format!("/api/echo?c={c}&i={i}")));
                        if answer.status != 200 {
                            failures.push(format!("client {c} request {i}: {}", answer.status));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    })
}

// ---------------------------------------------------------------------------
// Memory stays flat: backpressure both ways

/// Each direction holds one 32 KiB buffer; 4 MiB leaves room for the
/// allocator and the kernel, and is still 25 times less than the bodies.
const RSS_BOUND_KIB: u64 = 4 * 1024;

#[test]
fn a_slow_reader_of_a_100_mib_answer_keeps_memory_flat() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    assert_eq!(ask(&rill, &get("/api/big?mb=1")).body.len(), MIB);
    let start_kib = vm_rss_kib(rill.pid());
    let watch = RssWatch::new(rill.pid());
    let mut client = Client::new(&rill);
    client.send(get("/api/big?mb=100"));
    let mut line = String::new();
    loop {
        line.clear();
        client.reader.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
    }
    // About 40 MB/s: far below what Node and rill can move on loopback.
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let n = client.reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (i, byte) in buf[..n].iter().enumerate() {
            assert_eq!(*byte, ((total + i) % 251) as u8, "byte {}", total + i);
        }
        total += n;
        let due = Duration::from_secs_f64(total as f64 / 40e6);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    assert_eq!(total, 100 * MIB);
    let peak = watch.peak();
    eprintln!("VmRSS: {start_kib} KiB at the start, {peak} KiB at most");
    assert!(
        peak < start_kib + RSS_BOUND_KIB,
        "VmRSS went from {start_kib} KiB to {peak} KiB"
    );
}

#[test]
fn a_200_mib_upload_into_a_slow_backend_keeps_memory_flat() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    assert_eq!(Echo::parse(&ask(&rill, &get("/api/echo"))).method, "GET");
    let start_kib = vm_rss_kib(rill.pid());
    let watch = RssWatch::new(rill.pid());
    let piece = pseudo_random(MIB, 200);
    let mut client = Client::new(&rill);
    let total = 200 * MIB;
    client.send(format!(
        "PUT /api/slow-sink?ms=1 HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    ));
    client
        .writer
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    for _ in 0..200 {
        client.send(&piece);
    }
    let answer = client.read(false);
    assert_eq!(answer.status, 200);
    assert!(
        answer.text().starts_with(&format!("length {total}\n")),
        "{}",
        answer.text()
    );
    let peak = watch.peak();
    eprintln!("VmRSS: {start_kib} KiB at the start, {peak} KiB at most");
    assert!(
        peak < start_kib + RSS_BOUND_KIB,
        "VmRSS went from {start_kib} KiB to {peak} KiB"
    );
}

// ---------------------------------------------------------------------------
// Tunnels close half by half; the loop's counters and trace see the backends

/// A backend, in a thread of this test, that accepts one upgrade to `echo`,
/// echoes until the client's side of the tunnel ends, then sends `bye` and
/// closes. It reports what it saw before the end.
fn half_close_backend() -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut writer = stream;
        writer
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
            )
            .unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let got = reader.read(&mut buffer).unwrap();
            if got == 0 {
                break; // the client's half-close, passed on by rill
            }
            seen.extend_from_slice(&buffer[..got]);
            writer.write_all(&buffer[..got]).unwrap();
        }
        writer.write_all(b"bye").unwrap();
        seen
    });
    (addr, thread)
}

#[test]
fn a_tunnel_passes_a_half_close_through_and_the_rest_still_flows() {
    let dir = site();
    let (backend, thread) = half_close_backend();
    let rill = start(dir.path(), &[format!("/t={backend}")], &[]);
    let mut stream = rill.connect();
    stream
        .write_all(
            b"GET /t HTTP/1.1\r\nHost: example.test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let head = read_fields_after_status(&mut reader);
    assert!(head.0.starts_with("HTTP/1.1 101"), "{head:?}");
    stream.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    reader.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    // Our side ends; the backend must see that, and may still answer.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"bye", "what came after the half-close");
    assert_eq!(thread.join().unwrap(), b"ping");
}

/// Reads a status line and the fields after it; returns the status line and
/// the field lines.
fn read_fields_after_status(reader: &mut impl BufRead) -> (String, Vec<String>) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            return (status, lines);
        }
        lines.push(line);
    }
}

/// The number after `"name":` in a JSON text (the first one).
fn json_number(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {json}"))
}

#[test]
fn stats_count_proxied_requests_pooled_connections_and_failures() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let down = TcpListener::bind("127.0.0.1:0").unwrap();
    let down_addr = down.local_addr().unwrap();
    drop(down);
    let rill = start(
        dir.path(),
        &[format!("/n={}", node.addr()), format!("/down={down_addr}")],
        &["--stats"],
    );
    let mut client = Client::new(&rill);
    for _ in 0..3 {
        let answer = client.ask("GET /n/echo HTTP/1.1\r\nHost: example.test\r\n\r\n");
        assert_eq!(answer.status, 200);
    }
    assert_eq!(ask(&rill, &get("/down/x")).status, 502);
    let stats = ask(&rill, &get("/.rill/stats")).text();
    let upstream = &stats[stats.find("\"upstream\"").expect("upstream counters")..];
    assert_eq!(json_number(upstream, "proxied"), 4, "{upstream}");
    assert_eq!(
        json_number(upstream, "connects"),
        2,
        "one per backend: {upstream}"
    );
    assert_eq!(json_number(upstream, "reused"), 2, "{upstream}");
    assert_eq!(json_number(upstream, "idle"), 1, "{upstream}");
    assert_eq!(json_number(upstream, "refused"), 1, "{upstream}");
    assert_eq!(json_number(&stats, "requests"), 5, "{stats}");
}

#[test]
fn trace_logging_shows_both_sockets_of_a_proxied_connection() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/n={}", node.addr())],
        &["--log-level", "trace"],
    );
    // The first request is read as the connection is accepted; the second
    // arrives on a socket the loop waits on.
    let mut client = Client::new(&rill);
    for _ in 0..2 {
        let answer = client.ask("GET /n/echo HTTP/1.1\r\nHost: example.test\r\n\r\n");
        assert_eq!(answer.status, 200);
    }
    drop(client);
    let log = rill.stop();
    assert!(
        log.contains("event Client("),
        "no client event in the trace"
    );
    assert!(
        log.contains("event Upstream("),
        "no backend event in the trace"
    );
    assert!(
        log.contains("http -> proxy"),
        "no protocol switch in the trace"
    );
    assert!(
        log.contains("proxy waits: client"),
        "no waiting proxy in the trace"
    );
    assert!(
        log.contains("upstream=127.0.0.1:"),
        "the access line names no backend"
    );
}

// ---------------------------------------------------------------------------
// Backends that misbehave on cue, in a thread of the test

/// One step of a scripted backend connection.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Read one request head (and nothing of a body).
    ReadHead,
    Send(&'static [u8]),
    Sleep(u64),
    /// Shut the write side: a FIN.
    Fin,
    /// Close with a reset (`SO_LINGER` 0).
    Reset,
    /// Tell the test that every act before this one is done.
    Mark(&'static std::sync::atomic::AtomicBool),
}

/// A backend that plays one script per connection it accepts, in order, and
/// keeps each connection open for a while after its script.
fn scripted_backend(scripts: Vec<Vec<Act>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for script in scripts {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            std::thread::spawn(move || play(stream, &script));
        }
    });
    addr
}

fn play(stream: TcpStream, script: &[Act]) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for act in script {
        match *act {
            Act::ReadHead => {
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) <= 2 {
                        break;
                    }
                }
            }
            Act::Send(bytes) => {
                let _ = writer.write_all(bytes);
            }
            Act::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
            Act::Fin => {
                let _ = writer.shutdown(std::net::Shutdown::Write);
            }
            Act::Reset => {
                let _ = socket2::SockRef::from(&writer).set_linger(Some(Duration::ZERO));
                return;
            }
            Act::Mark(flag) => flag.store(true, std::sync::atomic::Ordering::SeqCst),
        }
    }
    std::thread::sleep(Duration::from_secs(3));
}

#[test]
fn bytes_a_backend_sends_after_its_answer_never_reach_the_next_client() {
    let evil: &'static [u8] =
        b"helloHTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Evil: yes\r\n\r\nevil!!";
    let backend = scripted_backend(vec![
        vec![
            Act::ReadHead,
            Act::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Act::Sleep(50),
            Act::Send(evil),
            Act::ReadHead,
        ],
        vec![
            Act::ReadHead,
            Act::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"),
        ],
    ]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &[]);
    let first = ask(&rill, &get("/b/one"));
    assert_eq!((first.status, first.text().as_str()), (200, "hello"));
    let second = ask(&rill, &get("/b/two"));
    assert_eq!(
        second.header("x-evil"),
        None,
        "a smuggled answer got through"
    );
    assert_eq!((second.status, second.text().as_str()), (200, "good"));
}

#[test]
fn a_backend_connection_that_sent_its_fin_is_not_pooled() {
    static FIN_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let backend = scripted_backend(vec![
        vec![
            Act::ReadHead,
            Act::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Act::Fin,
            Act::Mark(&FIN_SENT),
        ],
        vec![
            Act::ReadHead,
            Act::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"),
        ],
    ]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &[]);
    assert_eq!(ask(&rill, &get("/b/one")).text(), "ok");
    // Sent before the POST arrives, the FIN is in rill's socket buffer (on
    // loopback it is delivered as `shutdown` returns), though maybe not yet
    // read by the loop: the check at checkout must see it either way. A FIN
    // still in flight when a request leaves is a race no proxy can close.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !FIN_SENT.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the backend never sent its FIN");
        std::thread::sleep(Duration::from_millis(2));
    }
    // A POST is never retried: it must go to a connection that is alive.
    let post = "POST /b/two HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let second = ask(&rill, post);
    assert_eq!((second.status, second.text().as_str()), (200, "good"));
}

#[test]
fn a_tunnel_delivers_what_came_with_the_101_and_the_backends_close() {
    static UPGRADE_AND_DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let bytes = UPGRADE_AND_DATA.get_or_init(|| {
        let mut bytes =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
                .to_vec();
        bytes.extend(std::iter::repeat_n(b'd', 40_000));
        bytes
    });
    let backend = scripted_backend(vec![vec![Act::ReadHead, Act::Send(bytes), Act::Fin]]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/t={backend}")], &[]);
    let mut stream = rill.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /t HTTP/1.1\r\nHost: example.test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let (status, _) = read_fields_after_status(&mut reader);
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    let mut data = Vec::new();
    let started = Instant::now();
    reader
        .read_to_end(&mut data)
        .expect("the backend's close passed on, not a timeout");
    assert_eq!(data.len(), 40_000);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn an_interim_answer_the_final_one_and_a_close_arriving_together_are_relayed() {
    let backend = scripted_backend(vec![vec![
        Act::ReadHead,
        Act::Send(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        ),
        Act::Fin,
    ]]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &[]);
    let raw = rill.raw(get("/b/x").as_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 100 Continue\r\n"), "{text:?}");
    let last = &text[text.find("\r\n\r\n").unwrap() + 4..];
    assert!(last.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert!(last.ends_with("\r\n\r\nok"), "{text:?}");
}

#[test]
fn a_reset_in_a_close_delimited_answer_is_a_truncation() {
    let backend = scripted_backend(vec![vec![
        Act::ReadHead,
        Act::Send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npartial-body"),
        Act::Sleep(100),
        Act::Reset,
    ]]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &[]);
    let raw = rill.raw(get("/b/x").as_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("partial-body"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a reset must not end the answer as if complete: {text:?}"
    );
}

/// An HTTP/1.0 client reads a relayed chunked answer until the close, so
/// only a reset can tell it the answer was cut: never a FIN.
#[test]
fn an_http10_client_sees_a_cut_answer_end_in_a_reset() {
    let cut: &'static [u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    let whole: &'static [u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let backend = scripted_backend(vec![
        vec![Act::ReadHead, Act::Send(cut), Act::Sleep(100), Act::Fin],
        vec![Act::ReadHead, Act::Send(whole), Act::Sleep(100), Act::Fin],
    ]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &[]);
    let read_until_close = |path: &str| {
        let mut stream = rill.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let end = stream.read_to_end(&mut got).map(|_| ());
        (String::from_utf8_lossy(&got).into_owned(), end)
    };
    let (text, end) = read_until_close("/b/cut");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset),
        "a cut answer ended like a whole one: {text:?}"
    );
    let (text, end) = read_until_close("/b/whole");
    assert!(text.ends_with("\r\n\r\nhello"), "{text:?}");
    assert!(end.is_ok(), "a whole answer ended in {end:?}");
}

#[test]
fn a_client_that_stalls_its_upload_gets_408_not_a_backend_timeout() {
    let backend = scripted_backend(vec![vec![Act::ReadHead, Act::Sleep(8000)]]);
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/b={backend}")],
        &["--header-timeout", "1", "--proxy-timeout", "5", "--stats"],
    );
    let mut client = Client::new(&rill);
    client
        .send("PUT /b/up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100\r\n\r\n0123456789");
    let started = Instant::now();
    let answer = client.read(false);
    assert_eq!(answer.status, 408, "{}", answer.text());
    assert!(started.elapsed() < Duration::from_secs(4));
    let stats = ask(&rill, &get("/.rill/stats")).text();
    assert_eq!(
        json_number(&stats, "timeout"),
        0,
        "blamed on the backend: {stats}"
    );
}

#[test]
fn a_pooled_connection_that_dies_under_a_get_is_retried_and_under_a_post_is_not() {
    // The first connection answers once, then closes as the next request
    // arrives on it: the race a pool can lose to a backend's idle timeout.
    let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let good: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood";
    let backend = scripted_backend(vec![
        vec![Act::ReadHead, Act::Send(ok), Act::ReadHead, Act::Fin],
        vec![
            Act::ReadHead,
            Act::Send(good),
            Act::ReadHead,
            Act::Send(ok),
            Act::ReadHead,
            Act::Fin,
        ],
    ]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &["--stats"]);
    assert_eq!(ask(&rill, &get("/b/1")).text(), "ok");
    // The GET meets the dying connection and is sent again on a fresh one.
    let retried = ask(&rill, &get("/b/2"));
    assert_eq!((retried.status, retried.text().as_str()), (200, "good"));
    assert_eq!(ask(&rill, &get("/b/3")).text(), "ok");
    // A POST is not idempotent: it must not be sent twice.
    let post = "POST /b/4 HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(ask(&rill, post).status, 502);
    let stats = ask(&rill, &get("/.rill/stats")).text();
    assert_eq!(json_number(&stats, "retries"), 1, "{stats}");
}

/// A request with an empty body (`Content-Length: 0`, as client libraries
/// send with PUT and DELETE) that meets a dying pooled connection is sent
/// again whole on a fresh one, not left waiting for `--proxy-timeout`.
#[test]
fn an_empty_bodied_put_is_retried_with_its_head() {
    let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let good: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood";
    let backend = scripted_backend(vec![
        vec![Act::ReadHead, Act::Send(ok), Act::ReadHead, Act::Fin],
        vec![Act::ReadHead, Act::Send(good), Act::Sleep(2000)],
    ]);
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/b={backend}")],
        &["--stats", "--proxy-timeout", "5"],
    );
    let mut client = Client::new(&rill);
    assert_eq!(
        client.ask("GET /b/1 HTTP/1.1\r\nHost: t\r\n\r\n").text(),
        "ok"
    );
    let started = Instant::now();
    let put = client.ask("PUT /b/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((put.status, put.text().as_str()), (200, "good"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let stats = ask(&rill, &get("/.rill/stats")).text();
    assert_eq!(json_number(&stats, "retries"), 1, "{stats}");
}

/// A 1xx is interim (RFC 9110 §15.2): a backend that fails after one still
/// owes the client a final answer, and rill gives its own 502 or 504.
#[test]
fn a_backend_failing_after_a_1xx_still_gets_the_client_a_final_answer() {
    let hints: &'static [u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
    let backend = scripted_backend(vec![
        vec![Act::ReadHead, Act::Send(hints), Act::Sleep(100), Act::Fin],
        vec![Act::ReadHead, Act::Send(hints), Act::Sleep(4000)],
    ]);
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/b={backend}")],
        &["--proxy-timeout", "1"],
    );
    for (path, status) in [("/b/closes", "502"), ("/b/silent", "504")] {
        let raw = rill.raw(get(path).as_bytes());
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{text}");
        let last = &text[text.find("\r\n\r\n").unwrap() + 4..];
        assert!(
            last.starts_with(&format!("HTTP/1.1 {status} ")),
            "{path}: {text:?}"
        );
    }
}

/// A burst of slow proxied requests holds four pool buffers each; once it is
/// over the loop gives them back even with nothing else to do, and the
/// `buffers` counters show the pool fill, then empty within two prunes.
#[test]
fn the_buffer_pool_empties_after_a_burst() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &["--stats"]);
    // One kept-alive connection reads the counters: it takes its buffers
    // from the pool and gives them back between reads.
    let mut watcher = Client::new(&rill);
    let mut pooled = || {
        let stats = watcher.ask("GET /.rill/stats HTTP/1.1\r\nHost: t\r\n\r\n");
        json_number(&stats.text(), "pooled")
    };
    // The clients stay connected, idle: an idle connection gives its
    // buffers back to the pool too.
    let burst: Vec<std::thread::JoinHandle<(u16, Client)>> = (0..32)
        .map(|_| {
            let mut client = Client::new(&rill);
            let ask = "GET /api/slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n";
            std::thread::spawn(move || (client.ask(ask).status, client))
        })
        .collect();
    let mut idle = Vec::new();
    for client in burst {
        let (status, client) = client.join().unwrap();
        assert_eq!(status, 200);
        idle.push(client);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut most = 0;
    while most < 64 && Instant::now() < deadline {
        most = most.max(pooled());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        most >= 64,
        "the pool never held the burst's buffers: {most}"
    );
    // Only the watcher's requests come and go now (each brings a buffer of
    // its own too: the counters' text).
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut left = pooled();
    while left > 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        left = pooled();
    }
    assert!(left <= 8, "the pool kept {left} buffers after the burst");
    drop(idle);
}

/// `..%2F` is a dot segment rill cannot resolve (it keeps `%2F` inside its
/// segment) but a backend may (python's http.server decodes, then climbs):
/// a routed request hiding one is a 400, and the file outside the route's
/// folder stays unread.
#[test]
fn a_dot_segment_behind_an_encoded_slash_never_reaches_a_backend() {
    let backend_dir = site();
    fs::create_dir(backend_dir.path().join("public")).unwrap();
    fs::write(backend_dir.path().join("public/index.txt"), "public\n").unwrap();
    fs::write(backend_dir.path().join("secret.txt"), "TOP SECRET\n").unwrap();
    let Some(python) = http_server(backend_dir.path()) else {
        return;
    };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/pub={}/public", python.addr())],
        &["--log-level", "info"],
    );
    assert_eq!(ask(&rill, &get("/pub/index.txt")).text(), "public\n");
    for hidden in [
        "/pub/..%2Fsecret.txt",
        "/pub/%2e%2e%2fsecret.txt",
        "/pub/..%5Csecret.txt",
        "/pub/x/..%2F..%2Fsecret.txt",
    ] {
        let answer = ask(&rill, &get(hidden));
        assert_eq!(answer.status, 400, "{hidden}: {}", answer.text());
        assert!(!answer.text().contains("SECRET"), "{hidden}");
    }
    // Resolved by rill itself, a plain `..` leaves the route: not routed.
    assert_eq!(ask(&rill, &get("/pub/../secret.txt")).status, 404);
    let log = rill.stop();
    assert!(log.contains("\"GET /pub/..%2Fsecret.txt\" 400 "), "{log}");
}

/// Any method is forwarded (WebDAV's PROPFIND, QUERY) except TRACE, which
/// rill answers itself; an origin-form CONNECT is malformed; an absolute
/// target's authority is the Host the backend sees; and an `Upgrade` to
/// anything but WebSocket (h2c) is dropped, the request forwarded plain.
#[test]
fn methods_hosts_and_upgrades_a_backend_is_given() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    for method in ["PROPFIND", "QUERY", "MKCOL"] {
        let answer = ask(
            &rill,
            &format!("{method} /api/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(Echo::parse(&answer).method, method);
    }
    let trace = ask(
        &rill,
        "TRACE /api/echo HTTP/1.1\r\nHost: t\r\nCookie: c=1\r\n\r\n",
    );
    assert_eq!(trace.status, 405, "{}", trace.text());
    assert_eq!(
        ask(&rill, "CONNECT /api/echo HTTP/1.1\r\nHost: t\r\n\r\n").status,
        400
    );
    let absolute = ask(
        &rill,
        "GET http://other.example:81/api/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let echo = Echo::parse(&absolute);
    assert_eq!(echo.all("host"), ["other.example:81"]);
    assert_eq!(echo.header("x-forwarded-host"), Some("other.example:81"));
    assert_eq!(
        ask(&rill, "GET /api/echo HTTP/1.1\r\nHost: a\"b\r\n\r\n").status,
        400
    );
    let h2c = ask(
        &rill,
        "GET /api/echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAA\r\n\r\n",
    );
    assert_eq!(h2c.status, 200);
    let echo = Echo::parse(&h2c);
    assert_eq!(echo.all("upgrade"), Vec::<&str>::new());
    assert_eq!(echo.all("http2-settings"), Vec::<&str>::new());
}

/// A client that resets while the backend is still thinking frees its
/// connection and its backend connection at once, not when
/// `--proxy-timeout` fires (and is not counted as the backend's timeout);
/// one that only half-closes still gets its answer.
#[test]
fn a_client_that_resets_before_the_answer_frees_its_backend_connection() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &["--stats"]);
    let ask_slowly = "GET /api/slow?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut leaving = Vec::new();
    for _ in 0..20 {
        let mut client = rill.connect();
        client.write_all(ask_slowly.as_bytes()).unwrap();
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        leaving.push(client);
    }
    let mut half_closed = rill.connect();
    half_closed
        .write_all(b"GET /api/slow?ms=500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    half_closed.shutdown(std::net::Shutdown::Write).unwrap();
    let stats = || ask(&rill, &get("/.rill/stats")).text();
    let deadline = Instant::now() + Duration::from_secs(5);
    while json_number(&stats(), "proxying") < 21 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(json_number(&stats(), "proxying"), 21, "{}", stats());
    drop(leaving); // each with a reset
    let deadline = Instant::now() + Duration::from_secs(3);
    while json_number(&stats(), "proxying") > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = stats();
    assert!(json_number(&after, "proxying") <= 1, "{after}");
    assert_eq!(json_number(&after, "timeout"), 0, "{after}");
    let mut answer = String::new();
    half_closed.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("slow\n"), "{answer}");
}

/// A client that leaves before the backend answers still has its line in
/// the access log: nginx's 499, marked aborted, naming the backend.
#[test]
fn a_client_that_leaves_before_the_answer_is_logged_as_499() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    let rill = start(
        dir.path(),
        &[format!("/api={}", node.addr())],
        &["--log-level", "info", "--stats"],
    );
    let mut client = rill.connect();
    client
        .write_all(b"GET /api/slow?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    std::thread::sleep(Duration::from_millis(300));
    let stats = ask(&rill, &get("/.rill/stats")).text();
    let log = rill.stop();
    let line = log
        .lines()
        .find(|line| line.contains("\"GET /api/slow?ms=20000\""))
        .unwrap_or_else(|| panic!("no access line for the request that was left:\n{log}"));
    assert!(line.contains("\" 499 0 "), "{line}");
    assert!(line.contains(" upstream=127.0.0.1:"), "{line}");
    assert!(line.contains("(aborted: "), "{line}");
    // Not an answer: the counters of responses do not count it.
    assert!(stats.contains("\"4xx\":0"), "{stats}");
}

/// Requests pipelined before a half-close are all answered, proxied or
/// not, and then the connection closes: the FIN ends the client's stream,
/// not the exchange in flight.
#[test]
fn requests_pipelined_before_a_half_close_are_all_answered() {
    let Some(node) = node_backend() else { return };
    let dir = site();
    std::fs::write(dir.path().join("local.txt"), "from the folder\n").unwrap();
    let rill = start(dir.path(), &[format!("/api={}", node.addr())], &[]);
    let mut stream = rill.connect();
    stream
        .write_all(
            b"GET /api/landing HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /local.txt HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /api/slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut bodies = Vec::new();
    while let Some(answer) = read_response(&mut reader, false) {
        assert_eq!(answer.status, 200);
        bodies.push(answer.text());
    }
    assert_eq!(bodies, ["landed\n", "from the folder\n", "slow\n"]);
}

/// A backend that answers before it has the whole upload (a 413 here):
/// rill relays the answer with `Connection: close`, since the rest of the
/// body will not be read, and then ends the connection.
#[test]
fn an_answer_before_the_whole_upload_says_the_connection_closes() {
    let early: &'static [u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig";
    let backend = scripted_backend(vec![vec![
        Act::ReadHead,
        Act::Send(early),
        Act::Sleep(2000),
    ]]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &[]);
    let mut client = Client::new(&rill);
    client.send(
        "PUT /b/up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 100000\r\n\r\n0123456789",
    );
    let answer = client.read(false);
    assert_eq!((answer.status, answer.text().as_str()), (413, "big"));
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(client.closes_within(Duration::from_secs(5)));
}

/// A long `Content-Length` answer goes socket → pipe → socket with
/// splice(2): byte for byte the same as the backend sent, whether the
/// client reads at once or in small slow pieces, and a backend that dies
/// in the middle still leaves the client an answer short of its length.
#[test]
fn long_answers_are_spliced_whole_and_a_cut_one_stays_short() {
    const LEN: usize = 3 * MIB + 17;
    let body: &'static [u8] = Box::leak(pseudo_random(LEN, 9).into_boxed_slice());
    // With a Date of its own, so that the client's head is this one plus Via.
    let head: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: {LEN}\r\n\r\n")
            .into_boxed_str(),
    )
    .as_bytes();
    let cut: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
    let backend = scripted_backend(vec![
        vec![
            Act::ReadHead,
            Act::Send(head),
            Act::Send(body),
            Act::ReadHead,
        ],
        vec![
            Act::ReadHead,
            Act::Send(head),
            Act::Send(body),
            Act::ReadHead,
        ],
        vec![
            Act::ReadHead,
            Act::Send(cut),
            Act::Send(&body[..300_000]),
            Act::Fin,
        ],
    ]);
    let dir = site();
    let rill = start(dir.path(), &[format!("/b={backend}")], &[]);
    // At once, then slowly (64 KiB every few milliseconds), on one
    // kept-alive connection.
    let mut client = Client::new(&rill);
    let answer = client.ask("GET /b/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(answer.complete && answer.body == body, "fast reader");
    client.send("GET /b/2 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut raw = Vec::new();
    let mut piece = vec![0u8; 64 * 1024];
    let stream = client.reader.get_mut();
    let whole = LEN + head.len() + "Via: 1.1 rill\r\n".len();
    while raw.len() < whole {
        let n = stream.read(&mut piece).unwrap();
        assert!(n > 0, "closed after {} bytes", raw.len());
        raw.extend_from_slice(&piece[..n]);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(raw.len(), whole);
    assert!(raw.ends_with(body), "slow reader");
    let mut client = Client::new(&rill);
    let answer = client.ask("GET /b/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(answer.status, 200);
    assert!(
        !answer.complete && answer.body.len() <= 300_000,
        "{}",
        answer.body.len()
    );
    assert!(client.closes_within(Duration::from_secs(5)));
}
