//! The watch on ROOT, the WebSocket endpoints and `--live-reload`, against
//! the real binary over real sockets: a GET right after a save gets the new
//! bytes; handshakes are checked; pages get the script and the changes.

mod common;

use common::{read_response, tool_runs, Response, Rill};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A kept-alive connection that sends GETs one after another.
struct KeptAlive {
    reader: BufReader<TcpStream>,
}

impl KeptAlive {
    fn new(rill: &Rill) -> KeptAlive {
        KeptAlive {
            reader: BufReader::new(rill.connect()),
        }
    }

    fn send(&mut self, head: &str) -> Response {
        self.reader.get_mut().write_all(head.as_bytes()).unwrap();
        read_response(&mut self.reader, head.starts_with("HEAD")).expect("a response")
    }

    fn get(&mut self, target: &str) -> Response {
        self.send(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"))
    }
}

/// The body a save number `i` writes: its size changes too, so a stale
/// length would show as well as stale bytes.
fn version(i: usize, pad: usize) -> Vec<u8> {
    let mut body = format!("version {i} ").into_bytes();
    body.resize(body.len() + pad + i % 7, b'x');
    body
}

/// Saves `bytes` as `path` the way editors do: a temp file renamed over it.
fn save_atomically(path: &Path, bytes: &[u8]) {
    let temp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&temp, bytes).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// A page's bytes without the live-reload script appended to them.
fn without_snippet(mut body: Vec<u8>) -> Vec<u8> {
    let marker = b"\n<script src=\"/.rill/live.js\"";
    if let Some(at) = body.windows(marker.len()).position(|w| w == marker) {
        body.truncate(at);
    }
    body
}

/// Three clients that open a connection per request (`GET /`) until
/// dropped, so rill's turns are full of accepts and answers while a test
/// saves files.
struct BusyClients {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyClients {
    fn start(rill: &Rill) -> BusyClients {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = rill.addr;
        let threads = (0..3)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut socket) = TcpStream::connect(addr) else {
                            continue;
                        };
                        let _ = socket
                            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                        let _ = socket.read_to_end(&mut Vec::new());
                    }
                })
            })
            .collect();
        BusyClients { stop, threads }
    }
}

impl Drop for BusyClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// 1 000 saves of each kind, each followed at once by a GET on the same
/// kept-alive connection, while other clients keep rill busy: every answer
/// has the bytes just written.
fn every_get_after_a_save_sees_it(extra: &[&str]) {
    let dir = common::site();
    let small = dir.path().join("page.html");
    let big = dir.path().join("big.bin");
    fs::write(&small, "first").unwrap();
    fs::write(&big, version(0, 20_000)).unwrap();
    let rill = Rill::start(dir.path(), extra);
    let _busy = BusyClients::start(&rill);
    let mut conn = KeptAlive::new(&rill);
    // Cached (and, for the small one, held in memory) before the saves.
    assert_eq!(without_snippet(conn.get("/page.html").body), b"first");
    assert_fresh(&stale_after_saves(&small, 0..1000, 40, || {
        without_snippet(conn.get("/page.html").body)
    }));
    // A file too big to be held in memory, served from its cached descriptor.
    assert_fresh(&stale_after_saves(&big, 1..100, 20_000, || {
        conn.get("/big.bin").body
    }));
}

/// Saves `path` once for each number in `saves` (in place for an even one,
/// atomically for an odd one), each time fetching it at once with `fetch`:
/// the saves whose answer was not what they had just written.
fn stale_after_saves(
    path: &Path,
    saves: std::ops::Range<usize>,
    pad: usize,
    mut fetch: impl FnMut() -> Vec<u8>,
) -> Vec<(usize, String)> {
    let mut stale = Vec::new();
    for i in saves {
        let body = version(i, pad);
        if i % 2 == 0 {
            fs::write(path, &body).unwrap(); // in place: same inode
        } else {
            save_atomically(path, &body);
        }
        let answer = fetch();
        if answer != body {
            stale.push((i, String::from_utf8_lossy(&answer).into_owned()));
        }
    }
    stale
}

fn assert_fresh(stale: &[(usize, String)]) {
    assert!(
        stale.is_empty(),
        "{} stale answers, first: {:?}",
        stale.len(),
        stale.first()
    );
}

#[test]
fn a_get_right_after_a_save_sees_the_new_bytes() {
    every_get_after_a_save_sees_it(&[]);
}

#[test]
fn a_get_right_after_a_save_sees_the_new_bytes_with_live_reload() {
    every_get_after_a_save_sees_it(&["--live-reload"]);
}

/// Saves, each followed at once by a GET on a *new* connection, while other
/// clients keep rill busy accepting: a connection accepted late in a turn
/// (after a save the turn's `poll` did not report yet) still sees the save.
#[test]
fn a_new_connection_right_after_a_save_sees_the_new_bytes() {
    let dir = common::site();
    let page = dir.path().join("page.html");
    fs::write(&page, "first").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let _busy = BusyClients::start(&rill);
    assert_fresh(&stale_after_saves(&page, 0..1000, 40, || {
        rill.get("/page.html").body
    }));
}

#[test]
fn without_the_watch_a_change_shows_within_a_second() {
    let dir = common::site();
    let page = dir.path().join("page.html");
    fs::write(&page, "one").unwrap();
    let rill = Rill::start(dir.path(), &["--no-watch", "--stats"]);
    let mut conn = KeptAlive::new(&rill);
    assert_eq!(conn.get("/page.html").body, b"one");
    fs::write(&page, "two").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(conn.get("/page.html").body, b"two");
    let stats = conn.get("/.rill/stats").text();
    assert!(
        stats.contains("\"watch\":{\"watches\":0,\"events\":0"),
        "{stats}"
    );
}

#[test]
fn an_overflowed_watch_starts_the_cache_over_and_says_so() {
    let max_queued: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    let dir = common::site();
    let page = dir.path().join("page.html");
    fs::write(&page, "before").unwrap();
    let rill = Rill::start(dir.path(), &["--stats"]);
    let mut conn = KeptAlive::new(&rill);
    assert_eq!(conn.get("/page.html").body, b"before");
    // While rill is stopped, more events than the kernel queues.
    rill.signal(libc::SIGSTOP);
    for i in 0..max_queued / 2 + 100 {
        fs::write(dir.path().join(format!("f{i}")), "x").unwrap(); // CREATE + CLOSE_WRITE
    }
    fs::write(&page, "after").unwrap();
    rill.signal(libc::SIGCONT);
    assert_eq!(conn.get("/page.html").body, b"after");
    let stats = conn.get("/.rill/stats").text();
    assert!(stats.contains("\"overflows\":1"), "{stats}");
    drop(conn);
    let log = rill.stop();
    assert!(log.contains("inotify's queue overflowed"), "{log}");
}

// ---- WebSocket -------------------------------------------------------------

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn handshake(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A client frame: masked, as RFC 6455 requires of clients.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    fragment(true, opcode, payload)
}

/// A client frame with FIN set or not.
fn fragment(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    common::ws_client_frame(fin, opcode, payload)
}

/// A WebSocket after its `101`.
struct Socket {
    reader: BufReader<TcpStream>,
}

impl Socket {
    fn open(rill: &Rill, path: &str) -> Socket {
        Socket::open_with(rill, path, "", b"")
    }

    /// Sends the handshake (with `extra` headers) and `then` in one write.
    fn open_with(rill: &Rill, path: &str, extra: &str, then: &[u8]) -> Socket {
        let mut stream = rill.connect();
        let mut bytes = handshake(path, extra).into_bytes();
        bytes.extend_from_slice(then);
        stream.write_all(&bytes).unwrap();
        let mut reader = BufReader::new(stream);
        let answer = read_response(&mut reader, false).expect("an answer");
        assert_eq!(answer.status, 101, "{answer:?}");
        assert_eq!(answer.header("sec-websocket-accept"), Some(ACCEPT));
        Socket { reader }
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        let frame = client_frame(opcode, payload);
        self.reader.get_mut().write_all(&frame).unwrap();
    }

    /// The next frame from the server: (opcode, payload), or None at EOF.
    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        common::ws_read_frame(&mut self.reader)
    }

    fn next_text(&mut self) -> String {
        let (opcode, payload) = self.next().expect("a frame");
        assert_eq!(opcode, 1, "a text frame");
        String::from_utf8(payload).unwrap()
    }

    fn timeout(&self, limit: Duration) {
        self.reader.get_ref().set_read_timeout(Some(limit)).unwrap();
    }
}

#[test]
fn handshakes_are_checked() {
    let dir = common::site();
    let rill = Rill::start(dir.path(), &["--stats", "--live-reload"]);
    let refused = |raw: String| rill.request(&raw);
    let no_key = handshake("/.rill/echo", "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
    assert_eq!(refused(no_key).status, 400);
    let bad_key = handshake("/.rill/echo", "").replace(KEY, "c2hvcnQ=");
    assert_eq!(refused(bad_key).status, 400);
    let old = refused(handshake("/.rill/echo", "").replace("Version: 13", "Version: 8"));
    assert_eq!(old.status, 426);
    assert_eq!(old.header("sec-websocket-version"), Some("13"));
    assert_eq!(old.header("upgrade"), Some("websocket"));
    assert_eq!(old.header("connection"), Some("upgrade, close"));
    let post = handshake("/.rill/echo", "").replacen("GET", "POST", 1);
    assert_eq!(refused(post).status, 400);
    let http10 = handshake("/.rill/echo", "").replace("HTTP/1.1", "HTTP/1.0");
    assert_eq!(refused(http10).status, 400);
    // Another site's page may not open a socket here (CVE-2025-24010).
    let foreign = refused(handshake("/.rill/live", "Origin: http://evil.example\r\n"));
    assert_eq!(foreign.status, 403);
    assert_eq!(
        refused(handshake("/.rill/live", "Origin: null\r\n")).status,
        403
    );
    // The same origin may.
    let mut socket = Socket::open_with(&rill, "/.rill/live", "Origin: http://t\r\n", b"");
    assert!(socket.next_text().contains("\"type\":\"hello\""));
    // Without the flags, the endpoints do not exist.
    let plain = Rill::start(dir.path(), &[]);
    assert_eq!(plain.request(&handshake("/.rill/echo", "")).status, 404);
    assert_eq!(plain.request(&handshake("/.rill/live", "")).status, 404);
}

#[test]
fn the_echo_answers_messages_pings_and_close_and_reads_bytes_behind_the_handshake() {
    let dir = common::site();
    let rill = Rill::start(dir.path(), &["--stats"]);
    // A ping sent in the same write as the handshake.
    let mut socket = Socket::open_with(&rill, "/.rill/echo", "", &client_frame(0x9, b"early"));
    assert_eq!(socket.next(), Some((0xA, b"early".to_vec())));
    socket.send(0x1, "héllo".as_bytes());
    assert_eq!(socket.next_text(), "héllo");
    let big = common::pseudo_random(300_000, 7);
    socket.send(0x2, &big);
    assert_eq!(socket.next(), Some((0x2, big)));
    // Fragmented, with a ping between the fragments.
    let fragments = [
        fragment(false, 0x1, b"frag"),
        client_frame(0x9, b"p"),
        fragment(true, 0x0, b"mented"),
    ]
    .concat();
    socket.reader.get_mut().write_all(&fragments).unwrap();
    assert_eq!(socket.next(), Some((0xA, b"p".to_vec())));
    assert_eq!(socket.next_text(), "fragmented");
    // A continuation with nothing to continue: 1002, then the close.
    socket.send(0x0, b"stray");
    let (opcode, payload) = socket.next().expect("a close");
    assert_eq!((opcode, &payload[..2]), (0x8, &1002u16.to_be_bytes()[..]));
    assert_eq!(socket.next(), None, "closed after failing");

    let mut socket = Socket::open(&rill, "/.rill/echo");
    socket.send(0x8, &[0x03, 0xe8, b'b', b'y', b'e']);
    assert_eq!(socket.next(), Some((0x8, vec![0x03, 0xe8])));
    assert_eq!(socket.next(), None, "the server closes after the handshake");
    // Invalid UTF-8 fails fast.
    let mut socket = Socket::open(&rill, "/.rill/echo");
    socket.send(0x1, &[b'a', 0xff]);
    let (opcode, payload) = socket.next().expect("a close");
    assert_eq!((opcode, &payload[..2]), (0x8, &1007u16.to_be_bytes()[..]));
    let stats = rill.get("/.rill/stats").text();
    assert!(stats.contains("\"opened\":3"), "{stats}");
}

#[test]
fn websockets_beyond_the_caps_get_503() {
    common::raise_fd_limit();
    let dir = common::site();
    let rill = Rill::start(dir.path(), &["--stats", "--live-reload"]);
    let echoes: Vec<Socket> = (0..16)
        .map(|_| Socket::open(&rill, "/.rill/echo"))
        .collect();
    assert_eq!(rill.request(&handshake("/.rill/echo", "")).status, 503);
    let pages: Vec<Socket> = (16..256)
        .map(|_| Socket::open(&rill, "/.rill/live"))
        .collect();
    assert_eq!(rill.request(&handshake("/.rill/live", "")).status, 503);
    drop(echoes);
    drop(pages);
}

/// A save made while the loop is busy with a long turn (here a listing of
/// a big folder, answered while more connections queue up) is still seen by
/// a request that comes in after it, in that same turn.
#[test]
fn a_save_during_a_long_turn_is_seen_by_a_request_after_it() {
    let dir = common::site();
    let big = dir.path().join("big");
    fs::create_dir(&big).unwrap();
    for i in 0..40_000 {
        fs::File::create(big.join(format!("entry-with-a-long-name-{i:06}"))).unwrap();
    }
    let page = dir.path().join("page.txt");
    let rill = Rill::start(dir.path(), &[]);
    for round in 0..3 {
        fs::write(&page, format!("round {round} before")).unwrap();
        assert_eq!(
            rill.get("/page.txt").text(),
            format!("round {round} before")
        );
        let mut busy = rill.connect();
        busy.write_all(b"GET /big/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        save_atomically(&page, format!("round {round} after").as_bytes());
        assert_eq!(rill.get("/page.txt").text(), format!("round {round} after"));
        let mut listing = Vec::new();
        busy.read_to_end(&mut listing).unwrap();
        assert!(listing.len() > 1_000_000, "the listing was the long turn");
    }
}

// ---- --live-reload ---------------------------------------------------------

/// A GET as a browser sends it for a page.
fn navigate(rill: &Rill, target: &str, extra: &str) -> Response {
    rill.request(&format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nSec-Fetch-Dest: document\r\n{extra}Connection: close\r\n\r\n"
    ))
}

fn snippet_of(body: &str) -> Option<&str> {
    body.find("\n<script src=\"/.rill/live.js\"")
        .map(|at| &body[at..])
}

#[test]
fn pages_get_the_script_appended_and_nothing_else_does() {
    let dir = common::site();
    let html = "<!doctype html><title>t</title><!-- </body> --><p>x";
    fs::write(dir.path().join("page.html"), html).unwrap();
    fs::write(dir.path().join("style.css"), "p {}").unwrap();
    fs::create_dir(dir.path().join("docs")).unwrap();
    let rill = Rill::start(dir.path(), &["--live-reload"]);
    let page = navigate(&rill, "/page.html", "");
    assert_eq!(page.status, 200);
    let body = page.text();
    assert!(body.starts_with(html), "the file's bytes first, untouched");
    let snippet = snippet_of(&body).expect("the script");
    assert_eq!(body.len(), html.len() + snippet.len());
    assert_eq!(
        page.header("content-length"),
        Some(&*body.len().to_string())
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("last-modified"), None);
    let etag = page.header("etag").unwrap().to_owned();
    assert!(etag.contains("-live-"), "{etag}");
    // HEAD says the same length; a Range is answered whole.
    let head = rill.request(
        "HEAD /page.html HTTP/1.1\r\nHost: t\r\nSec-Fetch-Dest: document\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.header("content-length"), page.header("content-length"));
    let ranged = navigate(&rill, "/page.html", "Range: bytes=0-3\r\n");
    assert_eq!((ranged.status, ranged.body.len()), (200, body.len()));
    let cached = navigate(&rill, "/page.html", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(cached.status, 304);
    assert!(!snippet.contains("data-listing"), "a page is not a listing");
    // Everything is revalidated by the browser: a reload must fetch the
    // scripts and styles a save changed, not take them from its cache.
    let css = navigate(&rill, "/style.css", "");
    assert_eq!(css.header("cache-control"), Some("no-cache"));
    assert_eq!(page.header("vary"), Some("Sec-Fetch-Dest"));
    // A listing is a page too; fetch(), CSS and the flag's absence are not.
    let listing = navigate(&rill, "/docs/", "").text();
    assert!(snippet_of(&listing).unwrap().contains("data-listing"));
    let fetched = rill.request(
        "GET /page.html HTTP/1.1\r\nHost: t\r\nSec-Fetch-Dest: empty\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(fetched.body, html.as_bytes());
    assert_eq!(navigate(&rill, "/style.css", "").body, b"p {}");
    let script = rill.get("/.rill/live.js");
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(script.text().contains("/.rill/live"));
    // A page that is not there keeps listening, to reload when it appears.
    let missing = navigate(&rill, "/not-yet.html", "");
    assert_eq!(missing.status, 404);
    assert!(missing
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(snippet_of(&missing.text()).is_some());
    let fetched_missing = rill.request(
        "GET /not-yet.html HTTP/1.1\r\nHost: t\r\nSec-Fetch-Dest: empty\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(fetched_missing.status, 404);
    assert!(fetched_missing
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let plain = Rill::start(dir.path(), &[]);
    assert_eq!(navigate(&plain, "/page.html", "").body, html.as_bytes());
    assert!(plain
        .get("/not-yet.html")
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(plain.get("/.rill/live.js").status, 404);
}

#[test]
fn a_save_reaches_the_page_as_one_message_with_every_changed_path() {
    let dir = common::site();
    fs::write(dir.path().join("page.html"), "one").unwrap();
    let rill = Rill::start(dir.path(), &["--live-reload", "--stats"]);
    let etag_before = navigate(&rill, "/page.html", "")
        .header("etag")
        .unwrap()
        .to_owned();
    let mut socket = Socket::open(&rill, "/.rill/live");
    let hello = socket.next_text();
    assert!(hello.contains("\"generation\":0"), "{hello}");
    // An editor's save, with its swap and backup files, plus a stylesheet.
    fs::write(dir.path().join(".page.html.swp"), "swap").unwrap();
    fs::write(dir.path().join("page.html~"), "backup").unwrap();
    save_atomically(&dir.path().join("page.html"), b"two");
    fs::write(dir.path().join("style.css"), "p {}").unwrap();
    fs::create_dir(dir.path().join("new-folder")).unwrap();
    let started = Instant::now();
    let message = socket.next_text();
    assert_eq!(
        message,
        r#"{"type":"change","generation":1,"paths":["/new-folder/","/page.html","/style.css"],"everything":false}"#
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // A file written into the new folder right away is seen too.
    fs::write(dir.path().join("new-folder/inside.txt"), "x").unwrap();
    assert!(socket
        .next_text()
        .contains("\"paths\":[\"/new-folder/inside.txt\"]"));
    // The page now carries the new generation, so its ETag changed.
    let after = navigate(&rill, "/page.html", "");
    assert!(after.text().starts_with("two"));
    assert!(after.text().contains("data-generation=\"2\""));
    assert_ne!(after.header("etag").unwrap(), etag_before);
    // A page served at generation 0 that connects only now is told, after
    // the hello, what it missed; one served at 2 is told nothing more.
    let mut late = Socket::open(&rill, "/.rill/live?generation=0");
    assert!(late.next_text().contains("\"type\":\"hello\""));
    let missed = late.next_text();
    assert_eq!(
        missed,
        r#"{"type":"change","generation":2,"paths":["/new-folder/","/new-folder/inside.txt","/page.html","/style.css"],"everything":false}"#
    );
    let stats = rill.get("/.rill/stats").text();
    assert!(stats.contains("\"live_batches\":2"), "{stats}");
    assert!(stats.contains("\"websocket\":{\"open\":2"), "{stats}");
}

#[test]
fn an_upload_is_a_change_too() {
    let dir = common::site();
    let rill = Rill::start(dir.path(), &["--live-reload", "--uploads"]);
    let mut socket = Socket::open(&rill, "/.rill/live");
    socket.next_text();
    let put = rill.request(
        "PUT /up.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(put.status, 201);
    assert!(socket.next_text().contains("\"paths\":[\"/up.txt\"]"));
}

#[test]
fn a_shutdown_closes_the_pages_sockets_with_1001() {
    let dir = common::site();
    let mut rill = Rill::start(dir.path(), &["--live-reload"]);
    let mut socket = Socket::open(&rill, "/.rill/live");
    socket.next_text();
    socket.timeout(Duration::from_secs(5));
    rill.signal(libc::SIGTERM);
    let (opcode, payload) = socket.next().expect("a close");
    assert_eq!((opcode, &payload[..2]), (0x8, &1001u16.to_be_bytes()[..]));
    socket.send(0x8, &payload[..2]);
    assert_eq!(socket.next(), None, "rill closes first");
    drop(socket);
    assert!(rill.wait_exit(Duration::from_secs(5)).is_some());
}

// ---- Conformance and a real browser ---------------------------------------

#[test]
fn autobahn_sections_1_to_7_and_10_pass() {
    if !tool_runs("kosoku", &["--help"], "kosoku is not installed") {
        return;
    }
    let dir = common::site();
    let rill = Rill::start(dir.path(), &["--stats"]);
    let reports = tempfile::tempdir().unwrap();
    let run = Command::new("kosoku")
        .args(["-x", "9.*", "-x", "12.*", "-x", "13.*", "-p", "4", "-o"])
        .arg(reports.path())
        .arg(format!("ws://{}/.rill/echo", rill.addr))
        .output()
        .expect("run kosoku");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let index = fs::read_to_string(reports.path().join("index.json")).unwrap();
    let cases = index.matches("\"behavior\":").count();
    let failed = index.matches("\"FAILED\"").count();
    let ok = index.matches("\"behavior\": \"OK\"").count()
        + index.matches("\"behavior\":\"OK\"").count();
    assert!(cases >= 240, "only {cases} cases ran");
    assert_eq!(failed, 0, "FAILED cases in {index}");
    assert!(ok >= cases - 5, "{ok} OK of {cases}");
}

/// Runs one scenario of tests/browser/live_reload.py in headless Chromium
/// and returns its JSON report.
fn browser(scenario: &str, extra: &[&str]) -> Option<String> {
    if !tool_runs("chromium", &["--version"], "chromium is not installed")
        || !tool_runs(
            "python3",
            &["-c", "import websockets"],
            "python3 or its websockets module is not installed",
        )
    {
        return None;
    }
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/live_reload.py"
        ))
        .args(["--rill", env!("CARGO_BIN_EXE_rill"), "--scenario", scenario])
        .args(extra)
        .output()
        .expect("run the browser scenario");
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn field<'a>(json: &'a str, name: &str) -> &'a str {
    let at = json
        .find(&format!("\"{name}\": "))
        .unwrap_or_else(|| panic!("{name} in {json}"));
    let rest = &json[at + name.len() + 4..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim()
}

#[test]
fn a_browser_reloads_a_page_when_its_file_is_saved() {
    let Some(report) = browser("reload", &["--saves", "10"]) else {
        return;
    };
    assert_eq!(field(&report, "reloaded"), "10", "{report}");
    assert_eq!(field(&report, "extra_loads"), "0", "{report}");
}

#[test]
fn a_browser_restyles_a_page_in_place_when_its_stylesheet_is_saved() {
    let Some(report) = browser("css", &[]) else {
        return;
    };
    assert_eq!(field(&report, "restyled"), "true", "{report}");
    assert_eq!(field(&report, "survivor"), "42", "{report}");
    assert_eq!(field(&report, "loads_after_edit"), "0", "{report}");
    assert_eq!(field(&report, "links"), "1", "{report}");
}

#[test]
fn a_browser_open_across_a_restart_reloads_once() {
    let Some(report) = browser("restart", &[]) else {
        return;
    };
    assert_eq!(field(&report, "reloaded_after_restart"), "true", "{report}");
    assert_eq!(field(&report, "loads_after_restart"), "1", "{report}");
}

#[test]
fn a_browser_showing_a_listing_sees_a_new_file() {
    let Some(report) = browser("listing", &[]) else {
        return;
    };
    assert_eq!(field(&report, "shows_new_file"), "true", "{report}");
    assert_eq!(field(&report, "refreshed_in_place"), "true", "{report}");
    assert_eq!(field(&report, "reloaded"), "false", "{report}");
}

#[test]
fn a_browser_showing_a_folders_index_ignores_the_folders_other_files() {
    let Some(report) = browser("index", &[]) else {
        return;
    };
    assert_eq!(field(&report, "loads_after_unrelated"), "0", "{report}");
    assert_eq!(
        field(&report, "reloaded_after_own_save"),
        "true",
        "{report}"
    );
}

#[test]
fn a_browser_reload_after_a_script_is_saved_runs_the_new_script() {
    let Some(report) = browser("script", &[]) else {
        return;
    };
    assert_eq!(field(&report, "reloaded"), "true", "{report}");
    assert_eq!(field(&report, "app_version_after"), "2", "{report}");
}

#[test]
fn a_slow_page_beside_a_busy_file_loads_once() {
    let Some(report) = browser("late", &[]) else {
        return;
    };
    assert_eq!(field(&report, "connected"), "true", "{report}");
    assert_eq!(field(&report, "loads"), "1", "{report}");
}

#[test]
fn a_browser_reloads_when_a_stylesheet_it_imports_changes_beside_a_linked_one() {
    let Some(report) = browser("import", &[]) else {
        return;
    };
    assert_eq!(field(&report, "reloaded"), "true", "{report}");
    assert!(
        report.contains(r#""background": "rgb(4, 4, 4)""#),
        "{report}"
    );
    assert!(report.contains(r#""h1": "rgb(3, 3, 3)""#), "{report}");
}

#[test]
fn a_browser_inside_a_renamed_folder_waits_on_a_404_and_comes_back() {
    let Some(report) = browser("folder", &[]) else {
        return;
    };
    assert_eq!(field(&report, "reloaded_to_404"), "true", "{report}");
    assert_eq!(field(&report, "404_connected"), "true", "{report}");
    assert_eq!(field(&report, "reloaded_back"), "true", "{report}");
}
