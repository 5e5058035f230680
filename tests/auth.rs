//! `--auth`, `--auth-file` and `--public-read` against the real binary:
//! every right on every method, 401 against 403, the lockout, `/.rill/`,
//! and what a route's backend gets to see.

mod common;

use base64::Engine;
use common::{read_response, Response, Rill};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn basic(credentials: &str) -> String {
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

fn send(rill: &Rill, method: &str, target: &str, extra: &str) -> Response {
    let body = if method == "PUT" { "hi" } else { "" };
    rill.request(&format!(
        "{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

fn site() -> tempfile::TempDir {
    let dir = common::site();
    std::fs::write(dir.path().join("a.txt"), "secret").unwrap();
    dir
}

#[test]
fn every_right_on_every_method() {
    let dir = site();
    let rill = Rill::start(
        dir.path(),
        &[
            "--uploads",
            "--overwrite",
            "--auth",
            "reader:r:read",
            "--auth",
            "writer:w:upload",
            "--auth",
            "both:b:read,upload",
        ],
    );
    let cases = [
        ("reader:r", 200, 403),
        ("writer:w", 403, 204),
        ("both:b", 200, 204),
    ];
    for (credentials, get, put) in cases {
        let auth = basic(credentials);
        assert_eq!(
            send(&rill, "GET", "/a.txt", &auth).status,
            get,
            "GET {credentials}"
        );
        assert_eq!(
            send(&rill, "HEAD", "/a.txt", &auth).status,
            get,
            "HEAD {credentials}"
        );
        assert_eq!(
            send(&rill, "PUT", "/a.txt", &auth).status,
            put,
            "PUT {credentials}"
        );
    }
    let refused = send(&rill, "GET", "/a.txt", "");
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("www-authenticate"),
        Some(r#"Basic realm="rill", charset="UTF-8""#)
    );
    assert!(!refused.text().contains("secret"));
    assert_eq!(send(&rill, "PUT", "/b.txt", "").status, 401);
    // A CORS preflight never carries credentials.
    assert_eq!(send(&rill, "OPTIONS", "/a.txt", "").status, 204);
}

#[test]
fn wrong_malformed_and_non_ascii_credentials() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--auth", "zoé:mot:de:passe é"]);
    for bad in [
        basic("zoé:wrong"),
        basic("zoe:mot:de:passe é"),
        basic("no colon"),
        "Authorization: Basic !!!\r\n".to_owned(),
        "Authorization: Bearer abc\r\n".to_owned(),
    ] {
        assert_eq!(send(&rill, "GET", "/a.txt", &bad).status, 401, "{bad}");
    }
    let good = send(&rill, "GET", "/a.txt", &basic("zoé:mot:de:passe é"));
    assert_eq!((good.status, good.text().as_str()), (200, "secret"));
}

#[test]
fn a_401_keeps_the_connection_for_the_retry_with_credentials() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--auth", "ann:pw"]);
    let mut reader = BufReader::new(rill.connect());
    reader
        .get_mut()
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().status, 401);
    let retry = format!("GET /a.txt HTTP/1.1\r\nHost: t\r\n{}\r\n", basic("ann:pw"));
    reader.get_mut().write_all(retry.as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().text(), "secret");
}

#[test]
fn public_read_asks_only_uploads_for_credentials() {
    let dir = site();
    let rill = Rill::start(
        dir.path(),
        &["--uploads", "--auth", "ann:pw", "--public-read"],
    );
    assert_eq!(send(&rill, "GET", "/a.txt", "").status, 200);
    assert_eq!(send(&rill, "PUT", "/new.txt", "").status, 401);
    assert_eq!(send(&rill, "PUT", "/new.txt", &basic("ann:pw")).status, 201);
}

#[test]
fn the_loops_pages_need_credentials_too_and_count_refusals() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--stats", "--auth", "ann:pw:read"]);
    assert_eq!(send(&rill, "GET", "/.rill/stats", "").status, 401);
    assert_eq!(send(&rill, "PUT", "/x", &basic("ann:pw")).status, 403);
    let stats = send(&rill, "GET", "/.rill/stats", &basic("ann:pw")).text();
    assert!(
        stats.contains(r#""auth":{"unauthorized":1,"forbidden":1,"locked":0}"#),
        "{stats}"
    );
}

#[test]
fn too_many_failures_lock_one_address_out() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--auth", "ann:pw"]);
    for _ in 0..10 {
        assert_eq!(
            send(&rill, "GET", "/a.txt", &basic("ann:guess")).status,
            401
        );
    }
    let locked = send(&rill, "GET", "/a.txt", &basic("ann:pw"));
    assert_eq!(locked.status, 429);
    let wait: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Another address is not locked: connect from 127.0.0.2.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.2:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.connect(&rill.addr.into()).unwrap();
    let mut other = BufReader::new(TcpStream::from(socket));
    let request = format!(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\n{}Connection: close\r\n\r\n",
        basic("ann:pw")
    );
    other.get_mut().write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut other, false).unwrap().status, 200);
    let log = rill.stop();
    assert!(log.contains("failed logins"), "{log}");
}

/// A connection from `ip` (any 127.x address is this machine's).
fn connect_from(ip: &str, rill: &Rill) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{ip}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&rill.addr.into()).unwrap();
    TcpStream::from(socket)
}

/// bcrypt runs on the hashing thread, not the loop: while wrong passwords
/// from many addresses (each address may try ten) wait for their slow
/// checks, a user with a plain password is answered at once, and parallel
/// requests with the same new credentials share one check.
#[test]
fn slow_password_checks_never_hold_up_the_loop() {
    let dir = site();
    let hash = bcrypt::hash_with_salt("s3cret", 9, [9; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let users = dir.path().join(".users");
    std::fs::write(&users, format!("bob:{hash}\n")).unwrap();
    let rill = Rill::start(
        dir.path(),
        &["--auth-file", users.to_str().unwrap(), "--auth", "dave:d"],
    );
    let ask = |stream: &mut TcpStream, credentials: &str| {
        let request = format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\n{}Connection: close\r\n\r\n",
            basic(credentials)
        );
        stream.write_all(request.as_bytes()).unwrap();
    };
    let started = std::time::Instant::now();
    let mut slow: Vec<TcpStream> = (2..10)
        .map(|n| {
            let mut stream = connect_from(&format!("127.0.0.{n}"), &rill);
            ask(&mut stream, &format!("bob:wrong{n}"));
            stream
        })
        .collect();
    let mut fast = BufReader::new(rill.connect());
    ask(fast.get_mut(), "dave:d");
    assert_eq!(read_response(&mut fast, false).unwrap().status, 200);
    let fast_took = started.elapsed();
    let mut statuses = Vec::new();
    for stream in &mut slow {
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        statuses.push(answer.split(' ').nth(1).unwrap_or("").to_owned());
    }
    let slow_took = started.elapsed();
    assert!(statuses.iter().all(|s| s == "401"), "{statuses:?}");
    // Eight checks in a row take eight times one; the plain user waited
    // for none of them.
    assert!(
        fast_took * 4 < slow_took,
        "plain user answered after {fast_took:?}, the slow checks took {slow_took:?}"
    );

    // Three requests at once with bob's right password: one check between
    // them, all three answered 200.
    let mut same: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = rill.connect();
            ask(&mut stream, "bob:s3cret");
            stream
        })
        .collect();
    for stream in &mut same {
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

/// A wrong password checked on the hashing thread costs its address one
/// try, as a plain one does: ten `401`s, then `429`.
#[test]
fn ten_wrong_bcrypt_passwords_lock_an_address_out() {
    let dir = site();
    let hash = bcrypt::hash_with_salt("s3cret", 4, [9; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let users = dir.path().join(".users");
    std::fs::write(&users, format!("bob:{hash}\n")).unwrap();
    let rill = Rill::start(dir.path(), &["--auth-file", users.to_str().unwrap()]);
    let statuses: Vec<u16> = (0..11)
        .map(|n| send(&rill, "GET", "/a.txt", &basic(&format!("bob:guess{n}"))).status)
        .collect();
    assert_eq!(statuses, [[401; 10].as_slice(), &[429]].concat());
}

#[test]
fn an_auth_file_of_bcrypt_hashes() {
    let dir = site();
    let hash = bcrypt::hash_with_salt("s3cret", 4, [9; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let users = dir.path().join(".users");
    std::fs::write(&users, format!("# rill users\nann:{hash}\n")).unwrap();
    let rill = Rill::start(dir.path(), &["--auth-file", users.to_str().unwrap()]);
    assert_eq!(
        send(&rill, "GET", "/a.txt", &basic("ann:s3cret")).status,
        200
    );
    assert_eq!(
        send(&rill, "GET", "/a.txt", &basic("ann:s3cre")).status,
        401
    );
    // Warm: the same header again is not hashed again (and still right).
    assert_eq!(
        send(&rill, "GET", "/a.txt", &basic("ann:s3cret")).status,
        200
    );
}

#[test]
fn rills_credentials_are_not_forwarded_to_a_route() {
    // A backend that records the head it gets and answers 200.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let seen = std::thread::spawn(move || {
        let mut heads = Vec::new();
        for _ in 0..2 {
            let (stream, _) = backend.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .unwrap();
            heads.push(head);
        }
        heads
    });
    let dir = site();
    let route = format!("/api=127.0.0.1:{port}");
    let with_auth = Rill::start(dir.path(), &["--route", &route, "--auth", "ann:pw"]);
    assert_eq!(
        send(&with_auth, "GET", "/api/x", "").status,
        401,
        "routes need credentials"
    );
    let answer = send(&with_auth, "GET", "/api/x", &basic("ann:pw"));
    assert_eq!(answer.status, 200);
    let without = Rill::start(dir.path(), &["--route", &route]);
    assert_eq!(
        send(&without, "GET", "/api/y", &basic("app:token")).status,
        200
    );
    let heads = seen.join().unwrap();
    assert!(
        !heads[0].to_ascii_lowercase().contains("authorization"),
        "{}",
        heads[0]
    );
    assert!(
        heads[1].contains("Authorization: Basic"),
        "the app's own: {}",
        heads[1]
    );
}

#[test]
fn curl_sends_credentials_when_asked() {
    if !common::curl_available() {
        return;
    }
    let dir = site();
    let rill = Rill::start(dir.path(), &["--auth", "ann:pw"]);
    let url = format!("http://{}/a.txt", rill.addr);
    let run = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&[]), "401");
    assert_eq!(run(&["--user", "ann:pw"]), "200");
    assert_eq!(run(&["--user", "ann:no"]), "401");
    let mut body = String::new();
    let mut child = std::process::Command::new("curl")
        .args(["-s", "--user", "ann:pw", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut body)
        .unwrap();
    child.wait().unwrap();
    assert_eq!(body, "secret");
}

#[test]
fn methods_other_than_get_and_head_need_the_upload_right_even_through_a_route() {
    // A backend that must never be reached: the test fails if it is.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    backend.set_nonblocking(true).unwrap();
    let route = format!("/api=127.0.0.1:{}", backend.local_addr().unwrap().port());
    let dir = site();
    let rill = Rill::start(
        dir.path(),
        &[
            "--cors",
            "--route",
            &route,
            "--auth",
            "ann:pw:read",
            "--auth",
            "up:u:upload",
        ],
    );
    let reader = basic("ann:pw");
    for method in ["DELETE", "PATCH", "TRACE", "POST"] {
        assert_eq!(
            send(&rill, method, "/api/x", &reader).status,
            403,
            "{method}"
        );
    }
    // OPTIONS is free only when rill answers it itself.
    assert_eq!(send(&rill, "OPTIONS", "/api/x", "").status, 401);
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    assert_eq!(send(&rill, "OPTIONS", "/api/ws", upgrade).status, 401);
    assert_eq!(send(&rill, "OPTIONS", "/a.txt", "").status, 204);
    let preflight = send(&rill, "OPTIONS", "/a.txt", "");
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    assert!(
        matches!(backend.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the backend was reached"
    );
}

/// A backend that answers every request `200` with its method as the body,
/// one connection at a time, and closes.
fn method_echo_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let method = line.split(' ').next().unwrap_or_default().to_owned();
            while line.len() > 2 {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{method}",
                method.len()
            );
        }
    });
    format!("/api=127.0.0.1:{port}")
}

/// With a route there is somewhere to send changes: a user given no rights
/// may POST to the app behind it, as with `--uploads` into ROOT. `OPTIONS`
/// is safe (RFC 9110 §9.3.7): a reader may send it through a route.
#[test]
fn a_route_gives_default_users_the_upload_right_and_options_is_a_read() {
    let route = method_echo_backend();
    let dir = site();
    let rill = Rill::start(
        dir.path(),
        &[
            "--route",
            &route,
            "--auth",
            "ann:pw",
            "--auth",
            "guest:g:read",
        ],
    );
    let ann = basic("ann:pw");
    let guest = basic("guest:g");
    for method in ["POST", "PUT", "DELETE"] {
        let answer = send(&rill, method, "/api/x", &ann);
        assert_eq!((answer.status, answer.text()), (200, method.to_owned()));
        assert_eq!(
            send(&rill, method, "/api/x", &guest).status,
            403,
            "{method}"
        );
    }
    let answer = send(&rill, "OPTIONS", "/api/x", &guest);
    assert_eq!((answer.status, answer.text()), (200, "OPTIONS".to_owned()));
    assert_eq!(send(&rill, "OPTIONS", "/api/x", "").status, 401);
    // Without a route or --uploads, a user given no rights only reads.
    let rill = Rill::start(dir.path(), &["--auth", "ann:pw"]);
    assert_eq!(send(&rill, "PUT", "/b.txt", &ann).status, 403);
}

#[test]
fn a_refused_head_has_no_body_and_the_next_answer_parses() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--auth", "ann:pw"]);
    let mut reader = BufReader::new(rill.connect());
    let pipelined = format!(
        "HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n{}Connection: close\r\n\r\n",
        basic("ann:pw")
    );
    reader.get_mut().write_all(pipelined.as_bytes()).unwrap();
    let head = read_response(&mut reader, true).unwrap();
    assert_eq!(head.status, 401);
    let get = read_response(&mut reader, false).unwrap();
    assert_eq!((get.status, get.text().as_str()), (200, "secret"));
}

#[test]
fn the_loops_pages_need_credentials_even_with_public_read() {
    let dir = site();
    let rill = Rill::start(
        dir.path(),
        &["--stats", "--auth", "ann:pw", "--public-read"],
    );
    assert_eq!(send(&rill, "GET", "/a.txt", "").status, 200);
    assert_eq!(send(&rill, "GET", "/.rill/stats", "").status, 401);
    assert_eq!(
        send(&rill, "GET", "/.rill/stats", &basic("ann:pw")).status,
        200
    );
}
