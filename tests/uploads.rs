//! Uploads against the real binary: PUT and multipart POST, framing, limits,
//! names, and that nothing half-written is ever left behind.

mod common;

use common::{pseudo_random, read_response, site, Response, Rill};
use std::fs;
use std::io::{BufReader, Read, Write};
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

/// Sends head and body (in the given pieces) and reads one response.
fn send(rill: &Rill, head: &str, pieces: &[&[u8]]) -> Response {
    let mut stream = rill.connect();
    stream.set_nodelay(true).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    for piece in pieces {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
    }
    read_response(&mut BufReader::new(stream), false).expect("a response")
}

fn put(rill: &Rill, path: &str, body: &[u8]) -> Response {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    send(rill, &head, &[body])
}

#[test]
fn uploads_are_off_by_default() {
    let dir = site();
    let rill = Rill::start(dir.path(), &[]);
    let body = multipart("b", &[("file", Some("x.txt"), b"data")]);
    let response = send(&rill, &post_head("/", "b", body.len(), ""), &[&body]);
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(put(&rill, "/y.txt", b"data").status, 405);
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
    assert!(!rill.get("/").text().contains("<form"));
}

#[test]
fn put_creates_conflicts_and_overwrites() {
    let dir = site();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let rill = Rill::start(dir.path(), &["--uploads"]);
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
    assert_eq!(put(&rill, "/.hidden", b"x").status, 404);
    assert_eq!(put(&rill, "/../escape.txt", b"x").status, 404);
    let empty = put(&rill, "/sub/empty.txt", b"");
    assert_eq!(empty.status, 201);
    assert_eq!(fs::read(dir.path().join("sub/empty.txt")).unwrap(), b"");
    drop(rill);

    let rill = Rill::start(dir.path(), &["--uploads", "--overwrite"]);
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

#[test]
fn chunked_put_and_length_required() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads"]);
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

#[test]
fn expect_100_continue_only_when_accepted() {
    let dir = site();
    fs::write(dir.path().join("exists.txt"), "old").unwrap();
    let rill = Rill::start(dir.path(), &["--uploads", "--max-body", "1K"]);

    let mut stream = rill.connect();
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

#[test]
fn size_limit_applies_to_declared_and_streamed_bodies() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads", "--max-body", "64K"]);
    let big = vec![b'x'; 100 * 1024];
    assert_eq!(put(&rill, "/declared.bin", &big).status, 413);

    let mut chunked = Vec::new();
    for piece in big.chunks(8192) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut stream = rill.connect();
    stream
        .write_all(b"PUT /streamed.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let _ = stream.write_all(&chunked); // rill may close before all is sent
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 413);
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

#[test]
fn curl_form_upload_with_two_files_and_a_field() {
    if !common::curl_available() {
        return;
    }
    let dir = site();
    fs::create_dir(dir.path().join("inbox")).unwrap();
    let rill = Rill::start(dir.path(), &["--uploads"]);
    let src = site();
    let one = pseudo_random(2_000_000, 11);
    let two = b"second file\r\n--not a boundary\r\n".to_vec();
    fs::write(src.path().join("one.bin"), &one).unwrap();
    fs::write(src.path().join("two.txt"), &two).unwrap();
    let output = std::process::Command::new("curl")
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
        .arg(format!("http://{}/inbox/", rill.addr))
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

#[test]
fn boundary_split_at_every_offset() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads"]);
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

#[test]
fn all_byte_values_survive() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads"]);
    let content: Vec<u8> = (0..=255u8).cycle().take(256 * 40).collect();
    let body = multipart("bytes", &[("file", Some("bytes.bin"), &content)]);
    let response = send(&rill, &post_head("/", "bytes", body.len(), ""), &[&body]);
    assert_eq!(response.status, 201);
    assert_eq!(fs::read(dir.path().join("bytes.bin")).unwrap(), content);
}

#[test]
fn a_multi_megabyte_form_arrives_whole() {
    // Several turns' worth of budget, with CRs everywhere to make the parser
    // hold bytes back at every read.
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads"]);
    let content = pseudo_random(5 << 20, 23);
    let body = multipart("----big", &[("file", Some("big.bin"), &content)]);
    let pieces: Vec<&[u8]> = body.chunks(100_003).collect();
    let response = send(&rill, &post_head("/", "----big", body.len(), ""), &pieces);
    assert_eq!(response.status, 201, "{}", response.text());
    assert!(fs::read(dir.path().join("big.bin")).unwrap() == content);
}

#[test]
fn name_clashes_and_malicious_names() {
    let dir = site();
    fs::create_dir(dir.path().join("in")).unwrap();
    fs::write(dir.path().join("in/photo.jpg"), "original").unwrap();
    let rill = Rill::start(dir.path(), &["--uploads"]);
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

#[test]
fn broken_forms_store_nothing() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--uploads"]);
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

#[test]
fn a_client_killed_mid_upload_leaves_nothing() {
    let dir = site();
    fs::create_dir(dir.path().join("drop")).unwrap();
    let rill = Rill::start(dir.path(), &["--uploads"]);
    let data = pseudo_random(4 << 20, 13);
    // A PUT and a form, each cut off half way.
    let mut put_stream = rill.connect();
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
    let mut form_stream = rill.connect();
    form_stream
        .write_all(post_head("/drop/", "k", body.len(), "").as_bytes())
        .unwrap();
    form_stream.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Temp files exist while the uploads run...
    assert!(tree(dir.path()).len() > 1, "uploads did not start");
    drop(put_stream);
    drop(form_stream);
    // ...and are gone once rill sees the clients leave.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tree(dir.path()) != ["drop"] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tree(dir.path()), ["drop"]);
}

#[test]
fn a_large_upload_does_not_stall_a_download() {
    let dir = site();
    fs::write(dir.path().join("small.txt"), "quick").unwrap();
    let rill = Rill::start(dir.path(), &["--uploads"]);
    let data = pseudo_random(100 << 20, 17);
    let addr = rill.addr;
    let uploader = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
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

#[test]
fn cors_headers_and_preflight() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &["--uploads", "--cors"]);
    let get = rill.get("/a.txt");
    assert_eq!(get.header("access-control-allow-origin"), Some("*"));
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
    let plain = Rill::start(dir.path(), &[]);
    assert_eq!(
        plain.get("/a.txt").header("access-control-allow-origin"),
        None
    );
}
