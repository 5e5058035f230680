//! Timers, connection limits and shutdown against the real binary:
//! slowloris, idle and stalled clients, --max-connections, SIGTERM, and
//! thousands of connections at once.

mod common;

use common::{pseudo_random, raise_fd_limit, read_response, site, Rill};
use std::fs;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Reads until the server closes (or 10 s pass) and returns what came.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn slowloris_does_not_slow_others_and_gets_408() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "fast").unwrap();
    let rill = Rill::start(dir.path(), &["--header-timeout", "1.5"]);
    let mut loris: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = rill.connect();
            stream
                .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();
    for _ in 0..10 {
        let started = Instant::now();
        let response = rill.get("/a.txt");
        let took = started.elapsed();
        assert_eq!(response.text(), "fast");
        assert!(took < Duration::from_millis(500), "a GET took {took:?}");
    }
    // After the header timeout, every half-sent head is answered 408 and closed.
    let started = Instant::now();
    for stream in loris.iter_mut() {
        let reply = read_until_closed(stream);
        assert!(
            reply.starts_with(b"HTTP/1.1 408 "),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn idle_keep_alive_and_silent_connections_are_closed() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(
        dir.path(),
        &["--idle-timeout", "1", "--header-timeout", "1"],
    );
    // A keep-alive connection that goes quiet after one request.
    let mut idle = rill.connect();
    idle.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(idle.try_clone().unwrap());
    assert_eq!(read_response(&mut reader, false).unwrap().status, 200);
    // A connection that never sends a byte.
    let mut silent = rill.connect();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut idle).is_empty(),
        "idle close is silent"
    );
    let idle_took = started.elapsed();
    assert!(
        idle_took > Duration::from_millis(700) && idle_took < Duration::from_secs(4),
        "{idle_took:?}"
    );
    // The kernel holds a connection that has sent nothing for about a
    // second (TCP_DEFER_ACCEPT) before rill accepts it; then the header
    // timeout runs as for any other.
    assert!(read_until_closed(&mut silent).is_empty());
    let silent_took = started.elapsed();
    assert!(silent_took < Duration::from_secs(5), "{silent_took:?}");
    // Still serving.
    assert_eq!(rill.get("/a.txt").text(), "a");
}

#[test]
fn a_stalled_upload_is_dropped_with_its_temp_file() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads", "--header-timeout", "1"]);
    let mut stream = rill.connect();
    stream
        .write_all(b"PUT /stalled.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    stream.write_all(&[7u8; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        entries(dir.path()).len(),
        1,
        "the temp file should exist meanwhile"
    );
    let reply = read_until_closed(&mut stream);
    assert!(reply.is_empty(), "{:?}", String::from_utf8_lossy(&reply));
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_client_that_reads_nothing_is_dropped_after_the_idle_timeout() {
    let dir = site();
    fs::write(dir.path().join("big.bin"), pseudo_random(32 << 20, 3)).unwrap();
    let rill = Rill::start(dir.path(), &["--idle-timeout", "1"]);
    let mut stuck = rill.connect();
    stuck
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // Reading now drains what was buffered, then finds the connection closed.
    let got = read_until_closed(&mut stuck);
    assert!(
        got.len() < 32 << 20,
        "the whole file arrived: {}",
        got.len()
    );
}

#[test]
fn max_connections_refuses_the_excess_cleanly() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &["--max-connections", "50"]);
    let get = |stream: &mut TcpStream| {
        stream
            .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        read_response(&mut reader, false).map(|r| r.status)
    };
    let mut kept: Vec<TcpStream> = (0..50).map(|_| rill.connect()).collect();
    for stream in kept.iter_mut() {
        assert_eq!(get(stream), Some(200));
    }
    for _ in 0..10 {
        let mut extra = rill.connect();
        let reply = read_until_closed(&mut extra);
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("Connection: close"), "{text}");
    }
    // The first fifty are undisturbed.
    for stream in kept.iter_mut() {
        assert_eq!(get(stream), Some(200));
    }
    // Once some leave, newcomers are served again.
    kept.truncate(40);
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        assert_eq!(rill.get("/a.txt").status, 200);
    }
}

#[test]
fn sigterm_lets_a_download_finish_within_the_grace_period() {
    let dir = site();
    let big = fs::File::create(dir.path().join("1g.bin")).unwrap();
    big.set_len(1 << 30).unwrap(); // sparse: no real disk used
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let mut rill = Rill::start(dir.path(), &[]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /1g.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 1 << 20];
    stream.read_exact(&mut first).unwrap();
    // A kept-alive connection between requests is closed at once.
    let mut idle = rill.connect();
    idle.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(idle.try_clone().unwrap());
    assert_eq!(read_response(&mut reader, false).unwrap().status, 200);
    let started = Instant::now();
    rill.signal(libc::SIGTERM);
    assert!(read_until_closed(&mut idle).is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
    // The listener is closed too: a newcomer is refused, not queued.
    std::thread::sleep(Duration::from_millis(100));
    let refused = TcpStream::connect(rill.addr);
    assert!(refused.is_err(), "{refused:?}");
    // The reader dawdles, so the download cannot finish: rill ends it at
    // the grace period and exits 0.
    let status = rill.wait_exit(Duration::from_secs(8)).expect("rill exited");
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(7),
        "{took:?}"
    );
    drop(stream);
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = site();
    let big = fs::File::create(dir.path().join("1g.bin")).unwrap();
    big.set_len(1 << 30).unwrap();
    let mut rill = Rill::start(dir.path(), &[]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /1g.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 1 << 16];
    stream.read_exact(&mut first).unwrap();
    let started = Instant::now();
    rill.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(200));
    rill.signal(libc::SIGINT);
    let status = rill.wait_exit(Duration::from_secs(3)).expect("rill exited");
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn sigterm_during_an_upload_leaves_no_file() {
    let dir = site();
    let args = ["-l", "127.0.0.1:0", "--log-level", "info", "--uploads"];
    let mut rill = Rill::start_with(dir.path(), &args);
    let mut stream = rill.connect();
    stream
        .write_all(b"PUT /partial.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n")
        .unwrap();
    stream.write_all(&vec![1u8; 1 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(entries(dir.path()).len(), 1, "the temp file should exist");
    rill.signal(libc::SIGTERM);
    // The upload may still finish in the 5 s grace period; it does not.
    let status = rill.wait_exit(Duration::from_secs(8)).expect("rill exited");
    assert!(status.success());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    let log = rill.stop();
    assert!(log.contains("stopped"), "no summary in the log: {log}");
}

#[test]
fn five_thousand_concurrent_connections_all_get_answers() {
    const CLIENTS: usize = 5000;
    let limit = raise_fd_limit();
    if limit < (CLIENTS as u64) + 200 {
        eprintln!("SKIPPED: the open-file limit is {limit}, too low for {CLIENTS} sockets");
        return;
    }
    let dir = site();
    fs::write(dir.path().join("a.txt"), "many").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let mut streams: Vec<TcpStream> = (0..CLIENTS).map(|_| rill.connect()).collect();
    for stream in streams.iter_mut() {
        stream
            .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let mut ok = 0;
    for stream in streams {
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader, false).expect("a response");
        if response.status == 200 && response.body == b"many" {
            ok += 1;
        }
    }
    assert_eq!(ok, CLIENTS);
}

/// Near the open-file limit (300 descriptors: 236 connections), with 229
/// clients kept alive, a burst of new connections arrives while rill is
/// stopped. Every one is answered `200`: the connections waiting to be
/// served must not take the descriptors kept back for the files they ask
/// for (which answered `500`), and a close must not start accepting again
/// from inside the accepts (which nested until the stack overflowed).
#[test]
fn bursts_at_the_open_file_limit_are_all_answered() {
    const KEPT: usize = 229;
    const BURST: usize = 2000;
    raise_fd_limit();
    let dir = site();
    // A folder's index: found through the folder, which takes a descriptor.
    fs::write(dir.path().join("index.html"), "hello").unwrap();
    let mut rill = Rill::start_with_open_file_limit(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--log-level", "error"],
        300,
    );
    let send = |request: &[u8]| {
        let mut socket = rill.connect();
        socket.write_all(request).unwrap();
        socket
    };
    let kept: Vec<TcpStream> = (0..KEPT)
        .map(|_| {
            let socket = send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut reader = BufReader::new(socket.try_clone().unwrap());
            read_response(&mut reader, false).expect("an answer");
            socket
        })
        .collect();
    rill.signal(libc::SIGSTOP);
    let burst: Vec<TcpStream> = (0..BURST)
        .map(|_| send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
        .collect();
    rill.signal(libc::SIGCONT);
    let mut statuses = std::collections::BTreeMap::new();
    for mut socket in burst {
        let answer = read_until_closed(&mut socket);
        let status = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
        *statuses.entry(status).or_insert(0) += 1;
    }
    drop(kept);
    assert_eq!(
        statuses.get("HTTP/1.1 200").copied(),
        Some(BURST),
        "{statuses:?}"
    );
    assert!(rill.is_running(), "rill exited: {statuses:?}");
}

/// Near the open-file limit, a proxied request that finds no descriptor for
/// its backend socket is answered `503` with `Retry-After`: the limit is
/// rill's own, so never a `502` blaming the backend (nor counted as one),
/// and rill goes on. 200 descriptors make 136 connections, and each of the
/// 130 clients here wants a second one for its backend, which never
/// accepts: its connections wait in the backlog until `--proxy-timeout`.
#[test]
fn a_route_out_of_descriptors_answers_503_not_502() {
    const CLIENTS: usize = 130;
    raise_fd_limit();
    let dir = site();
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let route = format!("/b={}", backend.local_addr().unwrap());
    let rill = Rill::start_with_open_file_limit(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "error",
            "--stats",
            "--proxy-connect-timeout",
            "2",
            "--proxy-timeout",
            "2",
            "--route",
            &route,
        ],
        200,
    );
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut socket = rill.connect();
            socket
                .write_all(b"GET /b/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            socket
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for mut socket in clients {
        let answer = String::from_utf8_lossy(&read_until_closed(&mut socket)).into_owned();
        let status = answer.get(..12).unwrap_or(&answer).to_owned();
        if status == "HTTP/1.1 503" {
            assert!(answer.contains("\r\nRetry-After: 5\r\n"), "{answer}");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(statuses.contains_key("HTTP/1.1 503"), "{statuses:?}");
    assert_eq!(statuses.get("HTTP/1.1 502"), None, "{statuses:?}");
    let stats = rill.get("/.rill/stats").text();
    let failures = &stats[stats.find("\"failures\":").expect("failures")..];
    assert!(
        failures.starts_with("\"failures\":{\"refused\":0,"),
        "{stats}"
    );
    drop(backend);
}
