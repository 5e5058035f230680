//! The loop's properties over TLS: pipelined requests answered in order,
//! a slow reader of a big file held back by backpressure (rill's memory
//! stays flat), and a keep-alive connection that outlives many answers.

mod common;

use common::{pseudo_random, read_response, site, Rill};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

#[test]
fn pipelined_requests_over_tls_are_answered_in_order() {
    let dir = site();
    for i in 0..16 {
        fs::write(dir.path().join(format!("{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let rill = Rill::start_tls(dir.path(), &[]);
    let mut stream = rill.stream();
    // Sixteen heads in one write: they arrive in one or two records.
    let heads: String = (0..16)
        .map(|i| format!("GET /{i}.txt HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    stream.write_all(heads.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut reader = BufReader::new(stream);
    for i in 0..16 {
        let response = read_response(&mut reader, false).expect("an answer");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), format!("file {i}\n"));
    }
}

#[test]
fn a_slow_reader_of_a_big_file_over_tls_is_held_back_not_buffered() {
    let dir = site();
    let size = 64 << 20;
    let body = pseudo_random(size, 7);
    fs::write(dir.path().join("big.bin"), &body).unwrap();
    let rill = Rill::start_tls(dir.path(), &[]);
    let before = rss_kib(rill.pid());
    let mut stream = rill.stream();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stream.flush().unwrap();
    // Read a little, then stall: rill must stop at what the socket and its
    // 64 KiB of records hold, not read the file into memory.
    let mut first = vec![0u8; 64 * 1024];
    stream.read_exact(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let stalled = rss_kib(rill.pid());
    assert!(
        stalled < before + 4 * 1024,
        "rill grew from {before} KiB to {stalled} KiB while its reader stalled"
    );
    // Then everything arrives, byte-exact.
    let mut rest = Vec::with_capacity(size + 1024);
    rest.extend_from_slice(&first);
    let started = Instant::now();
    while rest.len() < size + 200 && started.elapsed() < Duration::from_secs(20) {
        let mut chunk = vec![0u8; 1 << 20];
        let got = stream.read(&mut chunk).unwrap();
        if got == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..got]);
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = head_end {
            if rest.len() >= end + 4 + size {
                break;
            }
        }
    }
    let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&rest[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("Content-Length: {size}")), "{head}");
    assert_eq!(rest.len() - end, size, "body length");
    assert!(rest[end..] == body[..], "body differs");
    let after = rss_kib(rill.pid());
    assert!(
        after < before + 4 * 1024,
        "rill grew from {before} KiB to {after} KiB sending a 64 MiB file"
    );
}

#[test]
fn one_tls_connection_carries_a_thousand_answers() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
    let rill = Rill::start_tls(dir.path(), &["--stats"]);
    let stream = rill.stream();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..1000 {
        reader
            .get_mut()
            .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        reader.get_mut().flush().unwrap();
        let response = read_response(&mut reader, false).expect("an answer");
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "hello\n")
        );
    }
    reader
        .get_mut()
        .write_all(b"GET /.rill/stats HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    reader.get_mut().flush().unwrap();
    let stats = read_response(&mut reader, false).expect("stats").text();
    let tls = &stats[stats.find("\"tls\"").expect("tls counters")..];
    assert!(tls.contains("\"full\":1,"), "one handshake for all: {tls}");
    assert!(stats.contains("\"requests\":1001"), "{stats}");
}

/// A backend that accepts one upgrade (`101`) and then echoes every byte
/// until the client closes.
fn echo_upgrade_backend() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut socket, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if socket.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = socket.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
        );
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if socket.write_all(&buffer[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
    addr
}

#[test]
fn a_tunnel_through_a_route_over_tls_moves_bytes_both_ways() {
    let dir = site();
    let backend = echo_upgrade_backend();
    let rill = Rill::start_tls(dir.path(), &["--route", &format!("/t={backend}")]);
    let mut stream = rill.stream();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /t/x HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    stream.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // 4 MiB up and back, written and read in turns so that neither side's
    // buffers hold it all: the tunnel's backpressure works over TLS.
    let data = pseudo_random(4 << 20, 3);
    let mut echoed = Vec::with_capacity(data.len());
    for piece in data.chunks(256 * 1024) {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
        let want = echoed.len() + piece.len();
        let mut chunk = vec![0u8; 64 * 1024];
        while echoed.len() < want {
            let got = stream.read(&mut chunk).unwrap();
            assert!(got > 0, "the tunnel closed after {} bytes", echoed.len());
            echoed.extend_from_slice(&chunk[..got]);
        }
    }
    assert!(echoed == data, "the echo differs");
}

#[test]
fn the_session_tickets_wait_for_the_first_answer() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello over tls\n").unwrap();
    let rill = Rill::start_tls(dir.path(), &[]);
    let common::Stream::Tls(mut tls) = rill.stream() else {
        panic!("a TLS rill gives TLS streams");
    };
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock).expect("our Finished");
    }
    // Our Finished is out; a request is not. Tickets sent now would reach a
    // client while it writes its request (Python's websockets, reading on a
    // second thread, then lost it now and then): nothing may come.
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    match tls.sock.peek(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("rill wrote before any request: {other:?}"),
    }
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tls.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[test]
fn a_tls_client_hello_sent_to_a_plain_port_gets_a_400() {
    // A real ClientHello, as rustls's client writes it.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "not a handshake record");
    let dir = site();
    let rill = Rill::start(dir.path(), &[]);
    let reply = rill.raw(&hello);
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text:?}");
}

/// After `bytes` from a raw client, rill still answers a fresh HTTPS
/// request at once: the loop is alive.
fn still_serving(rill: &Rill) {
    let mut stream = rill.stream();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    stream.flush().unwrap();
    let response = read_response(&mut BufReader::new(stream), false).expect("no answer");
    assert_eq!(response.status, 200);
}

#[test]
fn a_client_hello_too_big_to_buffer_closes_its_connection_not_the_loop() {
    // rustls joins a handshake message of at most 64 KiB: this one announces
    // 0xffff bytes of body and never ends. rustls then refuses every read,
    // and a loop that kept asking it would spin forever.
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
    let rill = Rill::start_tls(dir.path(), &["--stats"]);
    let mut raw = rill.connect();
    let length: usize = 0xffff;
    let mut message = vec![1, 0x00, 0xff, 0xff, 3, 3];
    message.resize(4 + length, 0);
    for piece in message.chunks(16 * 1024) {
        let mut record = vec![0x16, 3, 1];
        record.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        record.extend_from_slice(piece);
        if raw.write_all(&record).is_err() {
            break; // rill closed on us: what it should do
        }
    }
    let mut rest = Vec::new();
    let started = Instant::now();
    let _ = raw.read_to_end(&mut rest); // EOF or a reset, not a timeout
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the connection was kept"
    );
    still_serving(&rill);
}

#[test]
fn a_close_notify_sent_with_the_request_ends_the_connection_at_once() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
    let rill = Rill::start_tls(dir.path(), &["--idle-timeout", "30"]);
    let mut stream = rill.stream();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The request and the close_notify in one write; TCP stays open.
    stream
        .write_then_close_notify(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("hello\n"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rill held the connection {:?} after the client's close_notify",
        started.elapsed()
    );
}

/// A backend that answers every request after half a second.
fn slow_backend() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    while !head.ends_with(b"\r\n\r\n") {
                        if socket.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    head.clear();
                    std::thread::sleep(Duration::from_millis(500));
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow\n";
                    if socket.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_request_pipelined_behind_a_proxied_one_is_answered_over_tls() {
    // r1 (to a slow route) and r2 in one record bigger than one head read,
    // r3 a little later while the proxy waits: rill must not believe the
    // socket empty from a `recv` made before r3 arrived.
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello\n").unwrap();
    let backend = slow_backend();
    let rill = Rill::start_tls(
        dir.path(),
        &[
            "--route",
            &format!("/api={backend}"),
            "--idle-timeout",
            "30",
        ],
    );
    let mut stream = rill.stream();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let pad = format!("X-Pad: {}\r\n", "a".repeat(3000));
    let first = format!(
        "GET /api/slow HTTP/1.1\r\nHost: t\r\n{pad}\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n{pad}\r\n"
    );
    stream.write_all(first.as_bytes()).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stream
        .write_all(b"GET /a.txt?3 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stream.flush().unwrap();
    let started = Instant::now();
    let mut reader = BufReader::new(stream);
    let texts: Vec<String> = (0..3)
        .map(|_| read_response(&mut reader, false).expect("an answer").text())
        .collect();
    assert_eq!(texts, ["slow\n", "hello\n", "hello\n"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the third answer took {:?}",
        started.elapsed()
    );
}
