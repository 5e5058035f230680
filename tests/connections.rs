//! Connection behaviour: keep-alive, pipelining, slow writers and readers,
//! HTTP/1.0, request bodies on GET, and the access log.

mod common;

use common::{pseudo_random, read_response, site, Rill};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

#[test]
fn hundred_requests_on_one_keep_alive_connection() {
    let dir = site();
    fs::write(dir.path().join("k.txt"), "keep").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let stream = rill.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for i in 0..100 {
        writer
            .write_all(b"GET /k.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, false).expect("response");
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "keep"),
            "request {i}"
        );
        assert_eq!(response.header("connection"), None);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = site();
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|i| pseudo_random(if i % 5 == 4 { 100_000 } else { 10 + i * 37 }, i as u64 + 7))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        fs::write(dir.path().join(format!("p{i}.bin")), body).unwrap();
    }
    let rill = Rill::start(dir.path(), &[]);
    let mut batch = String::new();
    for i in 0..20 {
        let method = if i == 7 { "HEAD" } else { "GET" };
        batch.push_str(&format!("{method} /p{i}.bin HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    batch.push_str("GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut stream = rill.connect();
    stream.write_all(batch.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    for (i, body) in bodies.iter().enumerate() {
        let response = read_response(&mut reader, i == 7).expect("response");
        assert_eq!(response.status, 200, "response {i}");
        if i == 7 {
            assert!(response.body.is_empty());
            assert_eq!(
                response.header("content-length"),
                Some(body.len().to_string().as_str())
            );
        } else {
            assert!(response.body == *body, "body {i} differs");
        }
    }
    assert_eq!(read_response(&mut reader, false).unwrap().status, 404);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the last response");
}

#[test]
fn request_sent_one_byte_per_write() {
    let dir = site();
    fs::write(dir.path().join("slow.txt"), "patience").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let mut stream = rill.connect();
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /slow.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" {
        stream.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "patience")
    );
}

#[test]
fn a_client_that_never_reads_does_not_block_others() {
    let dir = site();
    fs::write(dir.path().join("big.bin"), pseudo_random(20 << 20, 3)).unwrap();
    fs::write(dir.path().join("small.txt"), "still here").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let mut stuck = rill.connect();
    stuck
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200)); // let rill fill the socket buffers
    for _ in 0..5 {
        let started = Instant::now();
        let response = rill.get("/small.txt");
        assert_eq!(response.text(), "still here");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    drop(stuck);
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    // Plain HTTP/1.0: the server closes after the response.
    let raw = rill.raw(b"GET /a.txt HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\na"), "{text}");

    // HTTP/1.0 with keep-alive: two requests on one connection.
    let stream = rill.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        writer
            .write_all(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, false).unwrap();
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn connection_close_is_honoured() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let raw = rill.raw(
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1, "{text}");
    assert!(text.contains("Connection: close\r\n"));
}

#[test]
fn a_get_body_is_discarded_not_parsed_as_a_request() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    fs::write(dir.path().join("b.txt"), "b").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    // The body looks like a request for /b.txt; it must never be answered.
    let hidden = "GET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let raw = format!(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{hidden}\
         GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        hidden.len()
    );
    let text = String::from_utf8_lossy(&rill.raw(raw.as_bytes())).into_owned();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(
        !text.contains("\r\n\r\nb"),
        "answered the hidden request: {text}"
    );

    // The same with the body arriving later than the head.
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(&vec![b'x'; 5000]).unwrap();
    stream
        .write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    assert!(all.ends_with("\r\n\r\nb"), "{all}");
    assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all}");
}

/// A chunked body on a GET is decoded and dropped like a counted one (as
/// nginx does), so the connection is kept and the next request answered;
/// one whose framing breaks after its answer was queued gets that answer,
/// then a close, since where the next request would start is unknown.
#[test]
fn a_chunked_get_body_is_dropped_and_the_connection_kept() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    fs::write(dir.path().join("b.txt"), "b").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let hidden = "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    let raw = format!(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};name=value\r\n{hidden}\r\n0\r\nX-Trailer: 1\r\n\r\n\
         GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        hidden.len()
    );
    let text = String::from_utf8_lossy(&rill.raw(raw.as_bytes())).into_owned();
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.ends_with("\r\n\r\nb"), "{text}");
    assert_eq!(text.matches("Connection: close").count(), 1, "{text}");

    // The body arrives in pieces, after the head.
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for piece in [&b"1000\r\n"[..], &[b'x'; 4096], b"\r\n", b"0\r\n", b"\r\n"] {
        std::thread::sleep(Duration::from_millis(20));
        stream.write_all(piece).unwrap();
    }
    stream
        .write_all(b"GET /b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all}");
    assert!(all.ends_with("\r\n\r\nb"), "{all}");

    // Framing that breaks once the answer is queued: that answer, then EOF.
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream
        .write_all(b"lo\r\nzz\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("HTTP/1.1 ").count(), 1, "{all}");
    assert!(
        all.starts_with("HTTP/1.1 200") && all.ends_with("\r\n\r\na"),
        "{all}"
    );
}

#[test]
fn access_log_has_one_line_per_response() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello").unwrap();
    let rill = Rill::start_with(dir.path(), &["-l", "127.0.0.1:0", "--log-level", "info"]);
    assert_eq!(rill.get("/a.txt").status, 200);
    assert_eq!(rill.get("/nope").status, 404);
    std::thread::sleep(Duration::from_millis(100));
    let log = rill.stop();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("\"GET ")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains("127.0.0.1:") && lines[0].contains("\"GET /a.txt\" 200 5 "));
    assert!(lines[1].contains("\"GET /nope\" 404 "));
    assert!(
        lines[0].trim_end().ends_with("ms"),
        "duration missing: {}",
        lines[0]
    );
}

/// A download the client leaves mid-way: the access line counts the body
/// bytes that left, not the length the head promised.
#[test]
fn a_cut_download_is_logged_with_the_bytes_that_left() {
    let dir = site();
    let size = 64 << 20;
    fs::write(dir.path().join("big.bin"), pseudo_random(size, 3)).unwrap();
    let rill = Rill::start_with(dir.path(), &["-l", "127.0.0.1:0", "--log-level", "info"]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut taken = vec![0u8; 1 << 20];
    stream.read_exact(&mut taken).unwrap();
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    let log = rill.stop();
    let (line, bytes) = common::access_line_of_200(&log, "GET /big.bin");
    assert!(
        bytes < size as u64 / 2,
        "{bytes} body bytes logged for a client that read 1 MiB: {line}"
    );
    assert!(line.contains("aborted"), "{line}");
}

#[test]
fn trace_log_shows_state_transitions() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello").unwrap();
    let rill = Rill::start_with(dir.path(), &["-l", "127.0.0.1:0", "--log-level", "trace"]);
    // The client says `Connection: close` and sends nothing more: nothing
    // can be left unread, so the connection closes without lingering.
    assert_eq!(rill.get("/a.txt").status, 200);
    // Framing in doubt: the 400 is followed by a lingering close, which
    // drains what the client may still be sending.
    let refused = rill
        .raw(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    assert!(refused.starts_with(b"HTTP/1.1 400 "));
    std::thread::sleep(Duration::from_millis(100));
    let log = rill.stop();
    // Both connections get slab key 0 in turn: split the log where the
    // second one opens.
    let second = log.rfind("opened from").expect("two connections");
    let (first_conn, second_conn) = log.split_at(second);
    for needle in [
        "opened from 127.0.0.1",
        ": reading-head -> sending GET /a.txt 200 (5 body bytes)",
        "closed (done)",
    ] {
        assert!(first_conn.contains(needle), "missing {needle:?} in\n{log}");
    }
    assert!(!first_conn.contains("-> closing"), "{log}");
    assert!(second_conn.contains(": sending -> closing"), "{log}");
}

#[test]
fn a_backlog_larger_than_one_turn_of_accepts_is_served_without_new_arrivals() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    // While rill is stopped, 200 clients connect and send their requests:
    // the kernel queues them all. When rill resumes, one readiness edge
    // reports the listener, and rill accepts at most 64 per turn, so it has
    // to come back for the rest by itself.
    rill.signal(libc::SIGSTOP);
    let mut clients: Vec<_> = (0..200)
        .map(|_| {
            let mut stream = rill.connect();
            stream
                .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    rill.signal(libc::SIGCONT);
    let started = Instant::now();
    for stream in clients.iter_mut() {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("an answer in time");
        assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(reply.ends_with(b"\r\n\r\na"));
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}
