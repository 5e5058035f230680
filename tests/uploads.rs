//! Uploads against the real binary: PUT and multipart POST, framing, limits,
//! names, and that nothing half-written is ever left behind. Each test runs
//! over plain HTTP (`plain::`) and over HTTPS (`tls::`).

mod common;

use common::{pseudo_random, read_response, site, Response, Rill, Transport};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every path under `dir`, hidden ones included, relative and sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        // A name starting with `*` is sent as an RFC 2231 `filename*`.
        let disposition = match filename {
            Some(file) if file.starts_with('*') => {
                format!("form-data; name=\"{name}\"; filename*={}", &file[1..])
            }
            Some(file) => format!("form-data; name=\"{name}\"; filename=\"{file}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn post_head(path: &str, boundary: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {length}\r\n{extra}\r\n"
    )
}

/// Sends head and body (in the given pieces) and reads one response. Every
/// write must succeed: an answer that comes before the body is all sent
/// (a refusal) must not reset the connection under the client.
fn send(rill: &Rill, head: &str, pieces: &[&[u8]]) -> Response {
    let transport = rill.transport();
    let request = head.lines().next().unwrap_or_default();
    let mut stream = rill.stream();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(head.as_bytes())
        .unwrap_or_else(|e| panic!("{transport}: {request}: sending the head: {e}"));
    let mut sent = 0;
    for piece in pieces {
        stream
            .write_all(piece)
            .and_then(|()| stream.flush())
            .unwrap_or_else(|e| {
                panic!("{transport}: {request}: sending the body after {sent} bytes: {e}")
            });
        sent += piece.len();
    }
    read_response(&mut BufReader::new(stream), false)
        .unwrap_or_else(|| panic!("{transport}: {request}: no response"))
}

fn put(rill: &Rill, path: &str, body: &[u8]) -> Response {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    send(rill, &head, &[body])
}

common::tests_over_both_transports!(
    uploads_are_off_by_default,
    put_creates_conflicts_and_overwrites,
    chunked_put_and_length_required,
    expect_100_continue_only_when_accepted,
    size_limit_applies_to_declared_and_streamed_bodies,
    curl_form_upload_with_two_files_and_a_field,
    boundary_split_at_every_offset,
    all_byte_values_survive,
    a_multi_megabyte_form_arrives_whole,
    name_clashes_and_malicious_names,
    broken_forms_store_nothing,
    a_client_killed_mid_upload_leaves_nothing,
    a_large_upload_does_not_stall_a_download,
    cors_headers_and_preflight,
    put_preconditions_fail_with_412_and_leave_the_file,
    put_preconditions_are_checked_again_before_the_commit,
);

fn uploads_are_off_by_default(transport: Transport) {
    let dir = site();
    let rill = Rill::start_on(transport, dir.path(), &[]);
    let body = multipart("b", &[("file", Some("x.txt"), b"data")]);
    let response = send(&rill, &post_head("/", "b", body.len(), ""), &[&body]);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(put(&rill, "/y.txt", b"data").status, 405);
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    assert!(!rill.get("/").text().contains("<form"));
}

fn put_creates_conflicts_and_overwrites(transport: Transport) {
    let dir = site();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let data = pseudo_random(300_000, 5);
    let created = put(&rill, "/sub/new%20file.bin", &data);
    assert_eq!(created.status, 201);
    assert_eq!(created.header("location"), Some("/sub/new%20file.bin"));
    assert!(fs::read(dir.path().join("sub/new file.bin")).unwrap() == data);

    let conflict = put(&rill, "/sub/new%20file.bin", b"other");
    assert_eq!(conflict.status, 409);
    assert!(fs::read(dir.path().join("sub/new file.bin")).unwrap() == data);

    assert_eq!(put(&rill, "/missing/x.bin", b"x").status, 404);
    assert_eq!(put(&rill, "/sub", b"x").status, 409);
    assert_eq!(put(&rill, "/sub/", b"x").status, 405);
    // Names a PUT takes as they are: none hidden, none with a control
    // character, none longer than the disk allows; a 4xx that says so.
    let hidden = put(&rill, "/sub/.hidden", b"x");
    assert_eq!(hidden.status, 403);
    assert!(hidden.text().contains("hidden"), "{}", hidden.text());
    for name in ["nl%0Ax.txt", "tab%09x.txt", "esc%1Bx.txt", "del%7Fx.txt"] {
        assert_eq!(
            put(&rill, &format!("/sub/{name}"), b"x").status,
            400,
            "{name}"
        );
    }
    let long = put(&rill, &format!("/sub/{}", "a".repeat(256)), b"x");
    assert_eq!(long.status, 400);
    assert!(long.text().contains("255"), "{}", long.text());
    assert_eq!(
        put(&rill, &format!("/sub/{}", "b".repeat(255)), b"x").status,
        201
    );
    fs::remove_file(dir.path().join("sub").join("b".repeat(255))).unwrap();
    assert_eq!(put(&rill, "/../escape.txt", b"x").status, 404);
    let empty = put(&rill, "/sub/empty.txt", b"");
    assert_eq!(empty.status, 201);
    assert_eq!(fs::read(dir.path().join("sub/empty.txt")).unwrap(), b"");
    drop(rill);

    let rill = Rill::start_on(transport, dir.path(), &["--uploads", "--overwrite"]);
    let replaced = put(&rill, "/sub/new%20file.bin", b"replaced");
    assert_eq!(replaced.status, 204);
    assert_eq!(
        fs::read(dir.path().join("sub/new file.bin")).unwrap(),
        b"replaced"
    );
    assert_eq!(
        tree(dir.path()),
        ["sub", "sub/empty.txt", "sub/new file.bin"],
        "temp files left"
    );
}

fn chunked_put_and_length_required(transport: Transport) {
    let dir = site();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let head = "PUT /chunked.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let response = send(
        &rill,
        head,
        &[
            b"5;ext=1\r\nhel",
            b"lo\r\n",
            b"7\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n",
        ],
    );
    assert_eq!(response.status, 201);
    assert_eq!(
        fs::read(dir.path().join("chunked.txt")).unwrap(),
        b"hello, world"
    );

    let bad = send(
        &rill,
        "PUT /bad.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        &[b"zz\r\nhello\r\n0\r\n\r\n"],
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("connection"), Some("close"));

    let no_length = rill.request("PUT /nolength.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(no_length.status, 411);
    assert_eq!(tree(dir.path()), ["chunked.txt"]);
}

fn expect_100_continue_only_when_accepted(transport: Transport) {
    let dir = site();
    fs::write(dir.path().join("exists.txt"), "old").unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads", "--max-body", "1K"]);

    let mut stream = rill.stream();
    stream
        .write_all(
            b"PUT /ok.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"body").unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 201);

    // Refusals come at once, without 100 and before any body is sent.
    for (head, status) in [
        ("PUT /exists.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", 409),
        ("PUT /big.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n", 413),
        ("PUT /odd.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: teapot\r\n\r\n", 417),
    ] {
        let response = rill.request(head);
        assert_eq!(response.status, status, "{head}");
    }
    assert_eq!(fs::read(dir.path().join("exists.txt")).unwrap(), b"old");
    assert_eq!(tree(dir.path()), ["exists.txt", "ok.txt"]);
}

fn size_limit_applies_to_declared_and_streamed_bodies(transport: Transport) {
    let dir = site();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads", "--max-body", "64K"]);
    let big = vec![b'x'; 100 * 1024];
    // rill refuses at the head, then lingers: the body the client goes on
    // sending is drained (up to 256 KiB), not answered with a reset.
    assert_eq!(put(&rill, "/declared.bin", &big).status, 413);

    let mut chunked = Vec::new();
    for piece in big.chunks(8192) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut stream = rill.stream();
    stream
        .write_all(b"PUT /streamed.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let _ = stream.write_all(&chunked); // rill may close before all is sent
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 413);
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

/// The client sends a head declaring a body too big, waits until rill's
/// `413` is in its socket (without reading it), then sends the body, as
/// curl does. rill must still be draining then: had it closed as soon as
/// its socket was momentarily empty, those bytes would meet a reset, the
/// client's writes would fail (curl: "Send failure: Broken pipe") and it
/// would never show the `413`.
#[test]
fn a_refused_body_sent_late_does_not_reset_the_answer() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads", "--max-body", "64K"]);
    // With and without `Connection: close`: a client that says its request
    // is its last still sends that request's body.
    for extra in ["", "Connection: close\r\n"] {
        let mut stream = rill.connect();
        let head =
            format!("PUT /late.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 102400\r\n{extra}\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut peek = [0u8; 1];
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(stream.peek(&mut peek).unwrap(), 1, "no answer to the head");
        // Give rill the turn in which the old code closed at once.
        std::thread::sleep(Duration::from_millis(100));
        for (i, piece) in vec![b'x'; 100 * 1024].chunks(4096).enumerate() {
            if let Err(e) = stream.write_all(piece) {
                panic!("{extra:?}: rill reset the connection mid-body, after {i} pieces: {e}");
            }
            // Separate segments, each meeting whatever state rill is in.
            std::thread::sleep(Duration::from_millis(2));
        }
        let response =
            read_response(&mut BufReader::new(stream), false).expect("the 413 was lost to a reset");
        assert_eq!(response.status, 413, "{extra:?}");
    }
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

fn curl_form_upload_with_two_files_and_a_field(transport: Transport) {
    if !common::curl_available() {
        return;
    }
    let dir = site();
    fs::create_dir(dir.path().join("inbox")).unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let src = site();
    let one = pseudo_random(2_000_000, 11);
    let two = b"second file\r\n--not a boundary\r\n".to_vec();
    fs::write(src.path().join("one.bin"), &one).unwrap();
    fs::write(src.path().join("two.txt"), &two).unwrap();
    let mut curl = std::process::Command::new("curl");
    if let Some(cacert) = rill.cacert() {
        curl.arg("--cacert").arg(cacert);
    }
    let output = curl
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "30",
            "-H",
            "Accept: application/json",
        ])
        .arg("-F")
        .arg(format!("file=@{}", src.path().join("one.bin").display()))
        .arg("-F")
        .arg(format!("file=@{}", src.path().join("two.txt").display()))
        .args(["-F", "comment=hello there"])
        .arg(rill.url("/inbox/"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", output);
    let json = String::from_utf8_lossy(&output.stdout);
    assert!(
        json.contains("\"name\":\"one.bin\",\"size\":2000000,\"url\":\"/inbox/one.bin\""),
        "{json}"
    );
    assert!(json.contains("\"name\":\"two.txt\""), "{json}");
    assert!(fs::read(dir.path().join("inbox/one.bin")).unwrap() == one);
    assert_eq!(fs::read(dir.path().join("inbox/two.txt")).unwrap(), two);
    assert_eq!(
        tree(dir.path()),
        ["inbox", "inbox/one.bin", "inbox/two.txt"]
    );

    // The listing now offers the upload form.
    let page = rill.get("/inbox/").text();
    assert!(page.contains("enctype=\"multipart/form-data\""));
    assert!(page.contains("type=\"file\" name=\"file\" multiple"));
}

fn boundary_split_at_every_offset(transport: Transport) {
    let dir = site();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let boundary = "----rillBoundary7MA4YWxkTrZu0gW";
    let content = b"line\r\n--rillBoundary\r\n------rillBoundary7MA4\r\nend".to_vec();
    let body = multipart(
        boundary,
        &[
            ("field", None, b"text"),
            ("file", Some("split.txt"), &content),
        ],
    );
    let head = post_head("/", boundary, body.len(), "");
    for offset in 0..=body.len() {
        let (first, second) = body.split_at(offset);
        let response = send(&rill, &head, &[first, second]);
        assert_eq!(response.status, 201, "offset {offset}: {}", response.text());
        let text = response.text();
        let url_start = text.find("\"url\":\"").unwrap() + 7;
        let url = &text[url_start..text[url_start..].find('"').unwrap() + url_start];
        assert_eq!(rill.get(url).body, content, "offset {offset}");
    }
    // Every upload landed under its own name, nothing else.
    let files = tree(dir.path());
    assert_eq!(files.len(), body.len() + 1);
    assert!(files.iter().all(|f| f.starts_with("split")), "{files:?}");
}

fn all_byte_values_survive(transport: Transport) {
    let dir = site();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let content: Vec<u8> = (0..=255u8).cycle().take(256 * 40).collect();
    let body = multipart("bytes", &[("file", Some("bytes.bin"), &content)]);
    let response = send(&rill, &post_head("/", "bytes", body.len(), ""), &[&body]);
    assert_eq!(response.status, 201);
    assert_eq!(fs::read(dir.path().join("bytes.bin")).unwrap(), content);
}

fn a_multi_megabyte_form_arrives_whole(transport: Transport) {
    // Several turns' worth of budget, with CRs everywhere to make the parser
    // hold bytes back at every read.
    let dir = site();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let content = pseudo_random(5 << 20, 23);
    let body = multipart("----big", &[("file", Some("big.bin"), &content)]);
    let pieces: Vec<&[u8]> = body.chunks(100_003).collect();
    let response = send(&rill, &post_head("/", "----big", body.len(), ""), &pieces);
    assert_eq!(response.status, 201, "{}", response.text());
    assert!(fs::read(dir.path().join("big.bin")).unwrap() == content);
}

fn name_clashes_and_malicious_names(transport: Transport) {
    let dir = site();
    fs::create_dir(dir.path().join("in")).unwrap();
    fs::write(dir.path().join("in/photo.jpg"), "original").unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let long = format!("{}.txt", "n".repeat(400));
    let names = [
        "photo.jpg",
        "photo.jpg",
        "../../escape.txt",
        "..\\..\\escape2.txt",
        ".hidden",
        "/etc/passwd",
        "*UTF-8''ctl%01char%0A.txt",
        long.as_str(),
    ];
    let parts: Vec<(&str, Option<&str>, &[u8])> = names
        .iter()
        .map(|name| ("file", Some(*name), &b"x"[..]))
        .collect();
    let body = multipart("m", &parts);
    let response = send(&rill, &post_head("/in/", "m", body.len(), ""), &[&body]);
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(
        fs::read(dir.path().join("in/photo.jpg")).unwrap(),
        b"original"
    );
    let files = tree(dir.path());
    for expected in [
        "in/photo-1.jpg",
        "in/photo-2.jpg",
        "in/escape.txt",
        "in/escape2.txt",
        "in/hidden",
        "in/passwd",
        "in/ctlchar.txt",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} missing: {files:?}"
        );
    }
    assert_eq!(files.len(), 10, "{files:?}");
    assert!(
        files.iter().all(|f| f == "in" || f.starts_with("in/")),
        "{files:?}"
    );
    assert!(files.iter().all(|f| f.len() < 220), "{files:?}");
}

fn broken_forms_store_nothing(transport: Transport) {
    let dir = site();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let whole = multipart(
        "b",
        &[
            ("file", Some("a.txt"), b"aaa"),
            ("file", Some("b.txt"), b"bbb"),
        ],
    );
    // The closing delimiter is missing: the first file ended correctly, but
    // the upload as a whole did not, so neither file is kept.
    let cut = &whole[..whole.len() - 10];
    let response = send(&rill, &post_head("/", "b", cut.len(), ""), &[cut]);
    assert_eq!(response.status, 400);
    let not_form = send(
        &rill,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n",
        &[b"abc"],
    );
    assert_eq!(not_form.status, 415);
    let empty_form = multipart("b", &[("note", None, b"no file")]);
    let response = send(
        &rill,
        &post_head("/", "b", empty_form.len(), ""),
        &[&empty_form],
    );
    assert_eq!(response.status, 400);
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

fn a_client_killed_mid_upload_leaves_nothing(transport: Transport) {
    let dir = site();
    fs::create_dir(dir.path().join("drop")).unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads", "--log-level", "info"]);
    let data = pseudo_random(4 << 20, 13);
    // A PUT and a form, each cut off half way.
    let mut put_stream = rill.stream();
    put_stream
        .write_all(
            format!(
                "PUT /drop/put.bin HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        )
        .unwrap();
    put_stream.write_all(&data[..data.len() / 2]).unwrap();
    let body = multipart("k", &[("file", Some("form.bin"), &data)]);
    let mut form_stream = rill.stream();
    form_stream
        .write_all(post_head("/drop/", "k", body.len(), "").as_bytes())
        .unwrap();
    form_stream.write_all(&body[..body.len() / 2]).unwrap();
    // And a PUT whose client ends its stream cleanly half way: a FIN, over
    // TLS a close_notify first, which is no more a whole body than a cut.
    let mut ended_stream = rill.stream();
    ended_stream
        .write_all(
            format!(
                "PUT /drop/ended.bin HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        )
        .unwrap();
    ended_stream.write_all(&data[..data.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Temp files exist while the uploads run...
    assert!(tree(dir.path()).len() > 1, "uploads did not start");
    drop(put_stream);
    drop(form_stream);
    ended_stream.shutdown(Shutdown::Write).unwrap();
    // ...and are gone once rill sees the clients leave.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tree(dir.path()) != ["drop"] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tree(dir.path()), ["drop"]);
    // Nor was the cleanly ended one answered as a success.
    let mut answer = Vec::new();
    let _ = ended_stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "a truncated PUT was answered {answer:?}"
    );
    // Each cut upload has its access line: nginx's 499, and why.
    let log = rill.stop();
    for request in ["PUT /drop/put.bin", "POST /drop/", "PUT /drop/ended.bin"] {
        let line = log
            .lines()
            .find(|line| line.contains(&format!("\"{request}\" ")))
            .unwrap_or_else(|| panic!("{transport}: no line for {request}:\n{log}"));
        assert!(
            line.contains("\" 499 0 ") && line.contains("(aborted: "),
            "{transport}: {line}"
        );
    }
}

fn a_large_upload_does_not_stall_a_download(transport: Transport) {
    let dir = site();
    fs::write(dir.path().join("small.txt"), "quick").unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let data = pseudo_random(100 << 20, 17);
    let mut stream = rill.stream();
    let uploader = std::thread::spawn(move || {
        stream
            .write_all(
                format!(
                    "PUT /big.bin HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                    data.len()
                )
                .as_bytes(),
            )
            .unwrap();
        for piece in data.chunks(1 << 20) {
            stream.write_all(piece).unwrap();
        }
        let response = read_response(&mut BufReader::new(stream), false).unwrap();
        (response.status, data)
    });
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(rill.get("/small.txt").text(), "quick");
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, data) = uploader.join().unwrap();
    assert_eq!(status, 201);
    assert!(fs::read(dir.path().join("big.bin")).unwrap() == data);
    assert!(
        slowest < Duration::from_secs(1),
        "a GET took {slowest:?} during the upload"
    );
}

fn cors_headers_and_preflight(transport: Transport) {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads", "--cors"]);
    let get = rill.get("/a.txt");
    assert_eq!(get.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        get.header("access-control-expose-headers"),
        Some("Accept-Ranges, Content-Disposition, Content-Range, ETag, Location")
    );
    let preflight = rill.request(
        "OPTIONS /inbox/ HTTP/1.1\r\nHost: t\r\nOrigin: http://other.example\r\n\
         Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, HEAD, POST, PUT, OPTIONS")
    );
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Content-Type"));
    // Without --cors there is no CORS header.
    drop(rill);
    let without_cors = Rill::start_on(transport, dir.path(), &[]);
    assert_eq!(
        without_cors
            .get("/a.txt")
            .header("access-control-allow-origin"),
        None
    );
}

/// A form of many small files holds one descriptor at a time (each file's
/// closes when its part ends): rill allowed 64 descriptors stores 500 files.
/// A form of more than 1000 files is refused with 413, and stores nothing.
#[test]
fn a_form_of_many_small_files_holds_one_descriptor_and_carries_at_most_1000() {
    let dir = site();
    fs::create_dir(dir.path().join("in")).unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--uploads",
        "--log-level",
        "error",
    ];
    let rill = Rill::start_with_open_file_limit(dir.path(), &args, 64);
    let boundary = "manyFilesBoundary";
    let form = |count: usize| {
        let names: Vec<String> = (0..count).map(|i| format!("f{i}.txt")).collect();
        let parts: Vec<(&str, Option<&str>, &[u8])> = names
            .iter()
            .map(|name| ("file", Some(name.as_str()), &b"x"[..]))
            .collect();
        multipart(boundary, &parts)
    };
    let body = form(500);
    let head = post_head("/in/", boundary, body.len(), "Connection: close\r\n");
    let answer = send(&rill, &head, &[&body]);
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(tree(&dir.path().join("in")).len(), 500);
    assert!(tree(&dir.path().join("in"))
        .iter()
        .all(|f| f.ends_with(".txt")));

    fs::create_dir(dir.path().join("many")).unwrap();
    let body = form(1001);
    let head = post_head("/many/", boundary, body.len(), "Connection: close\r\n");
    let answer = send(&rill, &head, &[&body]);
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.text().contains("1000 files"), "{}", answer.text());
    assert_eq!(tree(&dir.path().join("many")), Vec::<String>::new());
}

/// A PUT with these extra header lines and a body, on its own connection.
fn put_with(rill: &Rill, path: &str, fields: &str, body: &[u8]) -> Response {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{fields}Connection: close\r\n\r\n",
        body.len()
    );
    send(rill, &head, &[body])
}

/// If-Match, If-Unmodified-Since and If-None-Match on PUT (RFC 9110
/// §13.2.2): a false one is a 412 that leaves the file byte for byte as it
/// was and stores nothing; the ETag a GET gave is the one If-Match takes.
fn put_preconditions_fail_with_412_and_leave_the_file(transport: Transport) {
    let dir = site();
    let old = pseudo_random(50_000, 9);
    fs::write(dir.path().join("f.bin"), &old).unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads", "--overwrite"]);
    let got = rill.get("/f.bin");
    let etag = got.header("etag").unwrap().to_owned();
    let modified = got.header("last-modified").unwrap().to_owned();
    let untouched = |what: &str| {
        assert!(fs::read(dir.path().join("f.bin")).unwrap() == old, "{what}");
        assert_eq!(tree(dir.path()), ["f.bin"], "{what}");
    };
    for fields in [
        "If-Match: \"stale\"\r\n".to_owned(),
        format!("If-Match: W/{etag}\r\n"),
        "If-None-Match: *\r\n".to_owned(),
        format!("If-None-Match: {etag}\r\n"),
        "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n".to_owned(),
        format!("If-Match: {etag}\r\nIf-None-Match: *\r\n"),
    ] {
        let response = put_with(&rill, "/f.bin", &fields, b"new bytes");
        assert_eq!(response.status, 412, "{fields}");
        assert!(response.text().starts_with("412 Precondition Failed"));
        untouched(&fields);
    }
    // If-Match needs a file; If-Unmodified-Since has no date to compare.
    for fields in ["If-Match: *\r\n", &format!("If-Match: {etag}\r\n")] {
        assert_eq!(
            put_with(&rill, "/new.bin", fields, b"x").status,
            412,
            "{fields}"
        );
        untouched(fields);
    }
    // With Expect: 100-continue the 412 comes at once, instead of the 100.
    let response = rill.request(
        "PUT /f.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\
         If-Match: \"stale\"\r\n\r\n",
    );
    assert_eq!(response.status, 412);
    untouched("Expect: 100-continue");

    // The GET's ETag and date are what the PUT is checked against.
    let replaced = put_with(&rill, "/f.bin", &format!("If-Match: {etag}\r\n"), b"v2");
    assert_eq!(replaced.status, 204);
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), b"v2");
    // That version is gone: the same tag no longer matches.
    let again = put_with(&rill, "/f.bin", &format!("If-Match: {etag}\r\n"), b"v3");
    assert_eq!(again.status, 412);
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), b"v2");
    let etag = rill.get("/f.bin").header("etag").unwrap().to_owned();
    let fields = format!("If-Match: \"other\", {etag}\r\nIf-Unmodified-Since: {modified}\r\n");
    assert_eq!(put_with(&rill, "/f.bin", &fields, b"v3").status, 204);
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), b"v3");
    let fields = "If-Unmodified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\nIf-Match: *\r\n";
    assert_eq!(put_with(&rill, "/f.bin", fields, b"v4").status, 204);
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), b"v4");
    let absent = put_with(&rill, "/new.bin", "If-None-Match: *\r\n", b"fresh");
    assert_eq!(absent.status, 201);
    assert_eq!(fs::read(dir.path().join("new.bin")).unwrap(), b"fresh");
    assert_eq!(tree(dir.path()), ["f.bin", "new.bin"]);
    drop(rill);

    // Without --overwrite, "only if absent" on a file that exists is a
    // failed precondition too, not a conflict.
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let response = put_with(&rill, "/f.bin", "If-None-Match: *\r\n", b"x");
    assert_eq!(response.status, 412);
    assert_eq!(put(&rill, "/f.bin", b"x").status, 409);
    assert_eq!(fs::read(dir.path().join("f.bin")).unwrap(), b"v4");
    assert_eq!(tree(dir.path()), ["f.bin", "new.bin"]);
}

/// An upload whose precondition held when its head came, but no longer
/// does when its body is in (another PUT replaced or created the file
/// meanwhile, on the same loop): 412, its body discarded, the other
/// writer's file untouched and no temp file left.
fn put_preconditions_are_checked_again_before_the_commit(transport: Transport) {
    let dir = site();
    fs::write(dir.path().join("race.txt"), "original").unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads", "--overwrite"]);
    let etag = rill.get("/race.txt").header("etag").unwrap().to_owned();
    for (path, fields, other_status) in [
        ("/race.txt", format!("If-Match: {etag}\r\n"), 204),
        ("/fresh.txt", "If-None-Match: *\r\n".to_owned(), 201),
    ] {
        let body = b"the slow writer's bytes";
        let mut slow = rill.stream();
        slow.write_all(
            format!(
                "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\
                 Expect: 100-continue\r\n{fields}\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
        // The 100 says the head's check passed and the body is awaited.
        let mut interim = [0u8; 25];
        slow.read_exact(&mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n", "{path}");
        slow.write_all(&body[..5]).unwrap();
        slow.flush().unwrap();
        let other = put(&rill, path, b"the other writer won");
        assert_eq!(other.status, other_status, "{path}");
        slow.write_all(&body[5..]).unwrap();
        slow.flush().unwrap();
        let late = read_response(&mut BufReader::new(slow), false).expect("an answer");
        assert_eq!(late.status, 412, "{path}: {fields}");
        assert_eq!(
            fs::read(dir.path().join(&path[1..])).unwrap(),
            b"the other writer won",
            "{path}"
        );
    }
    assert_eq!(
        tree(dir.path()),
        ["fresh.txt", "race.txt"],
        "temp files left"
    );
}

/// A shutdown lets an upload under way finish within its grace period, as
/// nginx does: it is stored and answered. One still coming in when the
/// grace period ends is answered `503` and nothing of it is stored.
#[test]
fn a_shutdown_lets_uploads_under_way_finish_and_refuses_the_rest() {
    let dir = site();
    let mut rill = Rill::start(dir.path(), &["--uploads"]);
    let start_put = |name: &str| {
        let mut stream = rill.connect();
        let head = format!("PUT /{name} HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&[b'a'; 100_000]).unwrap();
        stream
    };
    let mut finishing = start_put("finished.bin");
    let mut stalled = start_put("stalled.bin");
    // Both bodies are being received before the signal comes.
    std::thread::sleep(Duration::from_millis(200));
    rill.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    finishing.write_all(&[b'b'; 100_000]).unwrap();
    let mut answer = String::new();
    finishing.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let stored = fs::read(dir.path().join("finished.bin")).unwrap();
    assert_eq!(stored.len(), 200_000);

    let mut answer = String::new();
    stalled.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("not stored"), "{answer}");
    assert!(rill.wait_exit(Duration::from_secs(10)).is_some());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("stalled") || n.ends_with(".part")),
        "{names:?}"
    );
}
