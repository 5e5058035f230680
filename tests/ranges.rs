//! Several ranges in one request (RFC 9110 §14.6, GitHub issue 16 item 5):
//! `206 multipart/byteranges` parsed part by part here, by Python and by
//! curl; coalescing, sorting, suffixes, unsatisfiable parts, the 128-range
//! limit, HEAD, If-Range and pipelining. Single ranges: tests/files.rs.

mod common;

use common::{
    curl_available, pseudo_random, read_response, site, tool_runs, Response, Rill, Transport,
};
use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// 5 MiB: far above the file cache's 16 KiB, so parts go out with sendfile.
const BIG: usize = 5 * 1024 * 1024;

/// One part of a multipart/byteranges body.
#[derive(Debug)]
struct Part {
    headers: HashMap<String, String>,
    start: u64,
    end: u64,
    size: u64,
    bytes: Vec<u8>,
}

/// `bytes a-b/n` → (a, b, n).
fn content_range(value: &str) -> (u64, u64, u64) {
    let rest = value
        .strip_prefix("bytes ")
        .unwrap_or_else(|| panic!("Content-Range {value:?}"));
    let (span, size) = rest.split_once('/').expect("a /size");
    let (start, end) = span.split_once('-').expect("a-b");
    (
        start.parse().expect("start"),
        end.parse().expect("end"),
        size.parse().expect("size"),
    )
}

/// The boundary named by a `multipart/byteranges; boundary=...` type.
fn boundary_of(response: &Response) -> String {
    let content_type = response.header("content-type").expect("Content-Type");
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart/byteranges: {content_type:?}"));
    assert!(
        !boundary.is_empty() && boundary.len() <= 70,
        "boundary {boundary:?}"
    );
    boundary.to_owned()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a multipart/byteranges body strictly: it starts at the first
/// delimiter, each part's bytes are exactly as many as its Content-Range
/// says, each is followed by CRLF and a delimiter, and the close delimiter
/// `--B--\r\n` ends the body with nothing after it.
fn parse_parts(response: &Response) -> Vec<Part> {
    let boundary = boundary_of(response);
    let body = &response.body;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut at = 0;
    let mut parts = Vec::new();
    loop {
        let rest = &body[at..];
        assert!(
            rest.starts_with(delimiter) && rest[delimiter.len()..].starts_with(b"\r\n"),
            "part {} does not start with the delimiter: {:?}",
            parts.len(),
            String::from_utf8_lossy(&rest[..rest.len().min(120)])
        );
        at += delimiter.len() + 2;
        let head_len = find(&body[at..], b"\r\n\r\n").expect("the end of a part's head");
        let head = std::str::from_utf8(&body[at..at + head_len]).expect("an ASCII part head");
        at += head_len + 4;
        let mut headers = HashMap::new();
        for line in head.split("\r\n") {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("part header line {line:?}"));
            let previous = headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
            assert!(previous.is_none(), "repeated part header {name}");
        }
        let (start, end, size) = content_range(
            headers
                .get("content-range")
                .expect("a part's Content-Range"),
        );
        assert!(
            start <= end && end < size,
            "part range {start}-{end}/{size}"
        );
        let len = (end - start + 1) as usize;
        assert!(at + len <= body.len(), "part {start}-{end} cut short");
        let bytes = body[at..at + len].to_vec();
        at += len;
        parts.push(Part {
            headers,
            start,
            end,
            size,
            bytes,
        });
        let rest = &body[at..];
        assert!(
            rest.starts_with(b"\r\n") && rest[2..].starts_with(delimiter),
            "no CRLF + delimiter after part {start}-{end}: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(120)])
        );
        at += 2;
        let after = &body[at + delimiter.len()..];
        if after.starts_with(b"--") {
            assert_eq!(after, b"--\r\n", "the close delimiter ends the body");
            return parts;
        }
    }
}

/// Checks a multipart answer against the file: 206, the parts' ranges in
/// order, each with the file's type and size and the file's bytes.
fn assert_parts(response: &Response, data: &[u8], file_type: &str, expected: &[(u64, u64)]) {
    assert_eq!(response.status, 206, "{:?}", response.headers);
    assert_eq!(response.header("content-range"), None);
    assert_eq!(response.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str())
    );
    let parts = parse_parts(response);
    let got: Vec<(u64, u64)> = parts.iter().map(|p| (p.start, p.end)).collect();
    assert_eq!(got, expected);
    for part in &parts {
        assert_eq!(
            part.headers.get("content-type").map(String::as_str),
            Some(file_type),
            "part {}-{}",
            part.start,
            part.end
        );
        assert_eq!(part.size, data.len() as u64);
        assert!(
            part.bytes == data[part.start as usize..=part.end as usize],
            "part {}-{}: wrong bytes",
            part.start,
            part.end
        );
    }
}

/// Sends `raw` and reads until rill closes: the head, then a body that
/// must be exactly `Content-Length` bytes (nothing more, nothing less).
fn exchange(rill: &Rill, raw: &str) -> Response {
    let all = rill.raw(raw.as_bytes());
    let head_end = find(&all, b"\r\n\r\n").expect("a complete head") + 4;
    let head = std::str::from_utf8(&all[..head_end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let mut headers = HashMap::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').expect("a header line");
        let previous = headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
        assert!(previous.is_none(), "repeated header {name}");
    }
    let response = Response {
        status,
        headers,
        body: all[head_end..].to_vec(),
    };
    if !raw.starts_with("HEAD ") {
        if let Some(length) = response.header("content-length") {
            assert_eq!(
                length.parse::<usize>().unwrap(),
                response.body.len(),
                "Content-Length against the bytes sent before the close"
            );
        }
    }
    response
}

fn ranged(rill: &Rill, path: &str, range: &str) -> Response {
    exchange(
        rill,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nRange: {range}\r\nConnection: close\r\n\r\n"),
    )
}

/// A small text file (kept in rill's file cache): 1000 bytes.
fn small_text() -> Vec<u8> {
    let mut text = String::new();
    let mut line = 0;
    while text.len() < 1000 {
        text.push_str(&format!("line {line:04} of the small file.\n"));
        line += 1;
    }
    text.truncate(1000);
    text.into_bytes()
}

fn range_list(ranges: &[(u64, u64)]) -> String {
    let list: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    format!("bytes={}", list.join(","))
}

// ---------------------------------------------------------------------------
// Parsed part by part, over each way rill sends a file.

fn small_file_parts(transport: Transport) {
    let dir = site();
    let data = small_text();
    fs::write(dir.path().join("small.txt"), &data).unwrap();
    let rill = Rill::start_on(transport, dir.path(), &[]);
    let response = ranged(&rill, "/small.txt", "bytes=0-9,100-199,-10");
    assert_parts(
        &response,
        &data,
        "text/plain; charset=utf-8",
        &[(0, 9), (100, 199), (990, 999)],
    );
    // The boundary is rill-<16 hex digits>.
    let boundary = boundary_of(&response);
    let hex = boundary.strip_prefix("rill-").expect("rill-");
    assert!(
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{boundary}"
    );
}

fn big_file(transport: Transport, flags: &[&str]) {
    let dir = site();
    let data = pseudo_random(BIG, 16);
    fs::write(dir.path().join("big.bin"), &data).unwrap();
    let rill = Rill::start_on(transport, dir.path(), flags);
    let response = ranged(
        &rill,
        "/big.bin",
        "bytes=0-99, 1000000-1999999, 4194304-4194403, -1000",
    );
    assert_parts(
        &response,
        &data,
        "application/octet-stream",
        &[
            (0, 99),
            (1_000_000, 1_999_999),
            (4_194_304, 4_194_403),
            (BIG as u64 - 1000, BIG as u64 - 1),
        ],
    );
    // Two parts that together are nearly the whole file.
    let response = ranged(&rill, "/big.bin", "bytes=0-2621439,2621540-");
    assert_parts(
        &response,
        &data,
        "application/octet-stream",
        &[(0, 2_621_439), (2_621_540, BIG as u64 - 1)],
    );
}

fn big_file_parts(transport: Transport) {
    big_file(transport, &[]);
}

fn big_file_parts_no_sendfile(transport: Transport) {
    big_file(transport, &["--no-sendfile"]);
}

common::tests_over_both_transports!(
    small_file_parts,
    big_file_parts,
    big_file_parts_no_sendfile,
    pipelined_multipart_answers,
);

// ---------------------------------------------------------------------------
// Other clients: Python and curl.

/// Fetches with Python's http.client and parses the body twice: with the
/// `email` package's MIME parser, and by hand by the parts' Content-Range
/// lengths. Prints one JSON object.
const PYTHON_CLIENT: &str = r#"
import email.parser, http.client, json, re, sys
host, port, path, rng, original = sys.argv[1:6]
data = open(original, "rb").read()
c = http.client.HTTPConnection(host, int(port), timeout=30)
c.request("GET", path, headers={"Range": rng})
r = c.getresponse()
body = r.read()
ctype = r.getheader("Content-Type")
out = {"status": r.status, "content_type": ctype,
       "content_length": int(r.getheader("Content-Length")), "read": len(body)}

def rng_of(value):
    a, b, n = map(int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", value).groups())
    return [a, b, n]

msg = email.parser.BytesParser().parsebytes(
    b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
out["email_multipart"] = msg.is_multipart()
out["email_defects"] = [repr(d) for d in msg.defects]
parts = []
for p in msg.get_payload():
    a, b, n = rng_of(p["Content-Range"])
    payload = p.get_payload(decode=True)
    parts.append({"type": p["Content-Type"], "range": [a, b, n],
                  "same": payload == data[a:b + 1]})
out["email_parts"] = parts

boundary = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", ctype).group(1).encode()
delim = b"--" + boundary
at, hand = 0, []
while True:
    assert body.startswith(delim + b"\r\n", at), at
    at += len(delim) + 2
    end = body.index(b"\r\n\r\n", at)
    head = dict(line.split(": ", 1) for line in body[at:end].decode().split("\r\n"))
    at = end + 4
    a, b, n = rng_of(head["Content-Range"])
    hand.append({"type": head["Content-Type"], "range": [a, b, n],
                 "same": body[at:at + b - a + 1] == data[a:b + 1]})
    at += b - a + 1
    assert body.startswith(b"\r\n" + delim, at), at
    at += 2
    if body[at + len(delim):] == b"--\r\n":
        break
out["hand_parts"] = hand
print(json.dumps(out))
"#;

#[test]
fn python_parses_the_parts() {
    if !tool_runs("python3", &["--version"], "python3 is not installed") {
        return;
    }
    let dir = site();
    let small = small_text();
    let big = pseudo_random(BIG, 61);
    fs::write(dir.path().join("small.txt"), &small).unwrap();
    fs::write(dir.path().join("big.bin"), &big).unwrap();
    let rill = Rill::start(dir.path(), &[]);
    for (path, range, file_type, size, expected) in [
        (
            "/small.txt",
            "bytes=900-999,0-9,400-449",
            "text/plain; charset=utf-8",
            small.len(),
            vec![[0, 9], [400, 449], [900, 999]],
        ),
        (
            "/big.bin",
            "bytes=-100,0-65535,3000000-3999999",
            "application/octet-stream",
            big.len(),
            vec![[0, 65535], [3_000_000, 3_999_999], [BIG - 100, BIG - 1]],
        ),
    ] {
        let original = dir.path().join(&path[1..]);
        let out = Command::new("python3")
            .args(["-c", PYTHON_CLIENT, "127.0.0.1"])
            .arg(rill.addr.port().to_string())
            .args([path, range])
            .arg(&original)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        assert_eq!(report["status"], 206, "{report}");
        assert_eq!(report["content_length"], report["read"], "{report}");
        assert_eq!(report["email_multipart"], true, "{report}");
        assert_eq!(report["email_defects"], serde_json::json!([]), "{report}");
        for parser in ["email_parts", "hand_parts"] {
            let parts = report[parser].as_array().expect(parser);
            assert_eq!(parts.len(), expected.len(), "{parser}: {report}");
            for (part, [a, b]) in parts.iter().zip(&expected) {
                assert_eq!(part["type"], file_type, "{parser}: {report}");
                assert_eq!(
                    part["range"],
                    serde_json::json!([a, b, size]),
                    "{parser}: {report}"
                );
                assert_eq!(part["same"], true, "{parser} {a}-{b}: {report}");
            }
        }
    }
}

/// `curl -s -r RANGES`: the multipart body as curl writes it out.
fn curl_ranges(rill: &Rill, path: &str, ranges: &str, dir: &Path) -> (String, Vec<u8>) {
    let headers = dir.join("curl-headers.txt");
    let mut command = Command::new("curl");
    command.args(["-s", "-S", "--max-time", "30", "-r", ranges, "-D"]);
    command.arg(&headers);
    if let Some(cacert) = rill.cacert() {
        command.arg("--cacert").arg(cacert);
    }
    command.arg(rill.url(path));
    let out = command.output().expect("run curl");
    assert!(
        out.status.success(),
        "curl -r {ranges} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = fs::read_to_string(&headers).expect("curl's -D file");
    let _ = fs::remove_file(&headers);
    (head, out.stdout)
}

fn curl_gets_every_part(transport: Transport) {
    if !curl_available() {
        return;
    }
    let dir = site();
    let files = site();
    let small = small_text();
    let big = pseudo_random(BIG, 77);
    fs::write(dir.path().join("small.txt"), &small).unwrap();
    fs::write(dir.path().join("big.bin"), &big).unwrap();
    let rill = Rill::start_on(transport, dir.path(), &[]);
    for (path, data, ranges, expected) in [
        (
            "/small.txt",
            &small,
            "0-9,500-509",
            vec![(0u64, 9u64), (500, 509)],
        ),
        (
            "/big.bin",
            &big,
            "0-9,50-59,4000000-4999999",
            // 0-9 and 50-59 are 40 bytes apart: one part.
            vec![(0, 59), (4_000_000, 4_999_999)],
        ),
    ] {
        let (head, body) = curl_ranges(&rill, path, ranges, files.path());
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        let content_type = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Type: "))
            .unwrap_or_else(|| panic!("no Content-Type: {head}"))
            .trim();
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{content_type}"));
        let text = String::from_utf8_lossy(&body);
        assert!(
            body.starts_with(format!("--{boundary}\r\n").as_bytes()),
            "{path}"
        );
        assert!(
            body.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()),
            "{path}"
        );
        let delimiters = text.matches(&format!("--{boundary}")).count();
        assert_eq!(delimiters, expected.len() + 1, "{path}");
        for (start, end) in expected {
            let bytes = &data[start as usize..=end as usize];
            let part_head = format!("Content-Range: bytes {start}-{end}/{}\r\n\r\n", data.len());
            let at = find(&body, part_head.as_bytes())
                .unwrap_or_else(|| panic!("{path}: no part head {part_head:?}"));
            let from = at + part_head.len();
            assert!(
                body[from..].starts_with(bytes),
                "{path}: part {start}-{end}'s bytes"
            );
            assert!(
                body[from + bytes.len()..].starts_with(format!("\r\n--{boundary}").as_bytes()),
                "{path}: a delimiter after part {start}-{end}"
            );
        }
        // And parsed strictly, as this file's own parser does.
        let response = Response {
            status: 206,
            headers: HashMap::from([("content-type".to_owned(), content_type.to_owned())]),
            body,
        };
        let parts = parse_parts(&response);
        assert_eq!(parts.len(), 2, "{path}");
    }
}

mod curl {
    #[test]
    fn plain() {
        super::curl_gets_every_part(super::Transport::Plain)
    }
    #[test]
    fn tls() {
        super::curl_gets_every_part(super::Transport::Tls)
    }
}

// ---------------------------------------------------------------------------
// Which ranges make which answer.

/// A 1000-byte file (cached) and a 64 KiB one (sent from the file).
fn two_files() -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let dir = site();
    let small = small_text();
    let mid = pseudo_random(64 * 1024, 5);
    fs::write(dir.path().join("small.txt"), &small).unwrap();
    fs::write(dir.path().join("mid.bin"), &mid).unwrap();
    (dir, small, mid)
}

fn assert_single(response: &Response, data: &[u8], start: usize, end: usize) {
    assert_eq!(response.status, 206, "{:?}", response.headers);
    assert_eq!(
        response.header("content-range"),
        Some(format!("bytes {start}-{end}/{}", data.len()).as_str())
    );
    assert!(
        !response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("multipart/"),
        "{:?}",
        response.headers
    );
    assert!(response.body == data[start..=end], "bytes {start}-{end}");
}

#[test]
fn coalescing() {
    let (dir, small, mid) = two_files();
    let rill = Rill::start(dir.path(), &[]);
    for (path, data, ty) in [
        ("/small.txt", &small, "text/plain; charset=utf-8"),
        ("/mid.bin", &mid, "application/octet-stream"),
    ] {
        // Overlapping, adjacent, contained, and less than 80 bytes apart:
        // one range, so a plain 206.
        for (range, start, end) in [
            ("bytes=0-10,5-20", 0, 20),
            ("bytes=0-9,10-19", 0, 19),
            ("bytes=10-19,0-9", 0, 19),
            ("bytes=100-199,120-130", 100, 199),
            ("bytes=0-9,89-99", 0, 99), // a gap of 79 bytes
            ("bytes=0-0,50-50,100-100,150-150", 0, 150),
            ("bytes=140-149, 0-9, 70-79", 0, 149),
        ] {
            let response = ranged(&rill, path, range);
            assert_single(&response, data, start, end);
        }
        // A gap of exactly 80 bytes: two parts.
        assert_parts(
            &ranged(&rill, path, "bytes=0-9,90-99"),
            data,
            ty,
            &[(0, 9), (90, 99)],
        );
        // Some merged, some not.
        assert_parts(
            &ranged(&rill, path, "bytes=0-9,20-29,500-509,560-600"),
            data,
            ty,
            &[(0, 29), (500, 600)],
        );
    }
}

#[test]
fn sorting_suffixes_and_unsatisfiable_parts() {
    let (dir, small, mid) = two_files();
    let rill = Rill::start(dir.path(), &[]);
    for (path, data, ty) in [
        ("/small.txt", &small, "text/plain; charset=utf-8"),
        ("/mid.bin", &mid, "application/octet-stream"),
    ] {
        let n = data.len() as u64;
        // Unsorted input comes out sorted.
        assert_parts(
            &ranged(&rill, path, "bytes=900-909,0-9,500-509"),
            data,
            ty,
            &[(0, 9), (500, 509), (900, 909)],
        );
        // A suffix, an open end, listed first.
        assert_parts(
            &ranged(&rill, path, "bytes=-10,0-9"),
            data,
            ty,
            &[(0, 9), (n - 10, n - 1)],
        );
        assert_parts(
            &ranged(&rill, path, &format!("bytes={}-,200-209", n - 5)),
            data,
            ty,
            &[(200, 209), (n - 5, n - 1)],
        );
        // An end past the file is clipped.
        assert_parts(
            &ranged(&rill, path, &format!("bytes=0-0,{}-{}", n - 3, n + 1000)),
            data,
            ty,
            &[(0, 0), (n - 3, n - 1)],
        );
        // Unsatisfiable elements are dropped...
        assert_parts(
            &ranged(
                &rill,
                path,
                &format!("bytes=0-9,{n}-,500-509,{}-{}", n + 10, n + 20),
            ),
            data,
            ty,
            &[(0, 9), (500, 509)],
        );
        // ...and one left is a plain 206 (a zero-length suffix is nothing).
        assert_single(
            &ranged(&rill, path, &format!("bytes=0-9,{n}-,-0")),
            data,
            0,
            9,
        );
        // None left: 416, saying how big the file is.
        let none = ranged(&rill, path, &format!("bytes={n}-,{}-{},-0", n + 1, n + 9));
        assert_eq!(none.status, 416, "{path}");
        assert_eq!(
            none.header("content-range"),
            Some(format!("bytes */{n}").as_str())
        );
    }
}

#[test]
fn limits_on_the_number_and_size_of_ranges() {
    let dir = site();
    let cached = pseudo_random(16_000, 9);
    let mid = pseudo_random(64 * 1024, 10);
    fs::write(dir.path().join("cached.bin"), &cached).unwrap();
    fs::write(dir.path().join("mid.bin"), &mid).unwrap();
    let rill = Rill::start(dir.path(), &[]);
    for (path, data, step) in [("/cached.bin", &cached, 120u64), ("/mid.bin", &mid, 500)] {
        let spans = |count: u64| -> Vec<(u64, u64)> {
            (0..count).map(|i| (i * step, i * step + 9)).collect()
        };
        // 128 distinct ranges, far apart: 128 parts, in order.
        let expected = spans(128);
        let response = ranged(&rill, path, &range_list(&expected));
        assert_parts(&response, data, "application/octet-stream", &expected);
        // Listed backwards, the same answer.
        let mut backwards = expected.clone();
        backwards.reverse();
        let reversed = ranged(&rill, path, &range_list(&backwards));
        assert_eq!(reversed.status, 206);
        assert!(reversed.body == response.body, "{path}: backwards");
        // 129: the whole file.
        let whole = ranged(&rill, path, &range_list(&spans(129)));
        assert_eq!(whole.status, 200, "{path}: 129 ranges");
        assert_eq!(whole.header("content-range"), None);
        assert!(whole.body == **data, "{path}: 129 ranges");
        // Overlaps asking for more than the file: the whole file.
        for range in ["bytes=0-,0-", "bytes=-1000000,0-9", "bytes=0-,-1,5-6"] {
            let whole = ranged(&rill, path, range);
            assert_eq!(whole.status, 200, "{path}: {range}");
            assert!(whole.body == **data, "{path}: {range}");
        }
    }
}

#[test]
fn head_announces_what_get_sends() {
    let (dir, _small, _mid) = two_files();
    let rill = Rill::start(dir.path(), &[]);
    for path in ["/small.txt", "/mid.bin"] {
        let range = "bytes=0-9,500-599,-5";
        let request = |method: &str| {
            format!(
                "{method} {path} HTTP/1.1\r\nHost: t\r\nRange: {range}\r\nConnection: close\r\n\r\n"
            )
        };
        let get = exchange(&rill, &request("GET"));
        let head = exchange(&rill, &request("HEAD"));
        assert_eq!(get.status, 206);
        assert_eq!(head.status, 206);
        assert!(head.body.is_empty(), "{path}: HEAD sent a body");
        let without_date = |response: &Response| {
            let mut headers = response.headers.clone();
            headers.remove("date");
            headers
        };
        assert_eq!(without_date(&head), without_date(&get), "{path}");
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str())
        );
        // On a kept-alive connection, the HEAD leaves nothing behind: the
        // next answer starts right after its head.
        let mut stream = rill.stream();
        let both = format!(
            "HEAD {path} HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n\r\n\
             GET {path} HTTP/1.1\r\nHost: t\r\nRange: {range}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(both.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let first = read_response(&mut reader, true).expect("the HEAD answer");
        let second = read_response(&mut reader, false).expect("the GET answer");
        assert_eq!(first.status, 206);
        assert_eq!(second.status, 206);
        assert!(second.body == get.body, "{path}");
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "{path}: {} bytes after the answers",
            rest.len()
        );
    }
}

#[test]
fn if_range_decides_between_parts_and_the_whole_file() {
    let (dir, small, mid) = two_files();
    // Dated a minute back, so that the date is a strong validator.
    for name in ["small.txt", "mid.bin"] {
        set_mtime(
            &dir.path().join(name),
            SystemTime::now() - Duration::from_secs(60),
        );
    }
    let rill = Rill::start(dir.path(), &[]);
    for (path, data, ty) in [
        ("/small.txt", &small, "text/plain; charset=utf-8"),
        ("/mid.bin", &mid, "application/octet-stream"),
    ] {
        let plain = rill.get(path);
        let etag = plain.header("etag").expect("ETag").to_owned();
        let modified = plain
            .header("last-modified")
            .expect("Last-Modified")
            .to_owned();
        let with = |validator: &str| {
            exchange(
                &rill,
                &format!(
                    "GET {path} HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9,500-509\r\n\
                     If-Range: {validator}\r\nConnection: close\r\n\r\n"
                ),
            )
        };
        let current = with(&etag);
        assert_parts(&current, data, ty, &[(0, 9), (500, 509)]);
        assert_eq!(current.header("etag"), Some(etag.as_str()));
        let by_date = with(&modified);
        assert_parts(&by_date, data, ty, &[(0, 9), (500, 509)]);
        for stale in ["\"stale\"", "W/\"stale\"", "Sun, 06 Nov 1994 08:49:37 GMT"] {
            let whole = with(stale);
            assert_eq!(whole.status, 200, "{path}: If-Range {stale}");
            assert_eq!(whole.header("content-range"), None);
            assert!(whole.body == **data, "{path}: If-Range {stale}");
        }
    }
}

/// Sets a file's modification time (std only: File::set_modified).
fn set_mtime(path: &Path, time: SystemTime) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(time))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// An `If-Range` date is strong only when it is at least a second before
/// the answer's `Date` (RFC 9110 §8.8.2.2, §13.1.5): a file whose
/// `Last-Modified` is not yet past may change again under the same date, so
/// its range is not trusted and the whole file is sent.
#[test]
fn an_if_range_date_not_yet_past_gets_the_whole_file() {
    let (dir, small, mid) = two_files();
    let hour = Duration::from_secs(3600);
    for name in ["small.txt", "mid.bin"] {
        // A clock that is behind the file's, or a file written this very
        // second: either way its date is not before the answer's.
        set_mtime(&dir.path().join(name), SystemTime::now() + hour);
    }
    let rill = Rill::start(dir.path(), &[]);
    for (path, data) in [("/small.txt", &small), ("/mid.bin", &mid)] {
        let plain = rill.get(path);
        let modified = plain.header("last-modified").expect("Last-Modified");
        let date = plain.header("date").expect("Date");
        let parse = |text| httpdate::parse_http_date(text).expect("an HTTP date");
        assert!(parse(modified) > parse(date), "{modified} {date}");
        let etag = plain.header("etag").expect("ETag");
        let ask = |range: &str, if_range: &str| {
            exchange(
                &rill,
                &format!(
                    "GET {path} HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n\
                     If-Range: {if_range}\r\nConnection: close\r\n\r\n"
                ),
            )
        };
        for range in ["bytes=0-9", "bytes=0-9,500-509"] {
            let whole = ask(range, modified);
            assert_eq!(whole.status, 200, "{path}: {range}");
            assert_eq!(whole.header("content-range"), None);
            assert!(whole.body == **data, "{path}: {range}");
            // The entity tag is strong at once.
            assert_eq!(ask(range, etag).status, 206, "{path}: {range}");
        }
    }
}

/// A file's bytes, its type, and the parts expected of it.
type Expected<'a> = (&'a [u8], &'a str, Vec<(u64, u64)>);

/// Multipart answers back to back on one kept-alive connection: every one
/// arrives whole, in order, and nothing follows the last.
fn pipelined_multipart_answers(transport: Transport) {
    let dir = site();
    let small = small_text();
    let big = pseudo_random(BIG, 3);
    fs::write(dir.path().join("small.txt"), &small).unwrap();
    fs::write(dir.path().join("big.bin"), &big).unwrap();
    let rill = Rill::start_on(transport, dir.path(), &[]);
    let requests = [
        ("/big.bin", "bytes=0-99,2000000-2999999,-10"),
        ("/small.txt", "bytes=0-9,500-509"),
        ("/big.bin", "bytes=4000000-4000099,100-199"),
        ("/small.txt", "bytes=900-,0-0"),
    ];
    let mut raw = String::new();
    for (i, (path, range)) in requests.iter().enumerate() {
        let close = if i + 1 == requests.len() {
            "Connection: close\r\n"
        } else {
            ""
        };
        raw.push_str(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nRange: {range}\r\n{close}\r\n"
        ));
    }
    let mut stream = rill.stream();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let expected: [Expected; 4] = [
        (
            &big,
            "application/octet-stream",
            vec![
                (0, 99),
                (2_000_000, 2_999_999),
                (BIG as u64 - 10, BIG as u64 - 1),
            ],
        ),
        (
            &small,
            "text/plain; charset=utf-8",
            vec![(0, 9), (500, 509)],
        ),
        (
            &big,
            "application/octet-stream",
            vec![(100, 199), (4_000_000, 4_000_099)],
        ),
        (
            &small,
            "text/plain; charset=utf-8",
            vec![(0, 0), (900, 999)],
        ),
    ];
    for (i, (data, ty, ranges)) in expected.iter().enumerate() {
        let response = read_response(&mut reader, false)
            .unwrap_or_else(|| panic!("answer {i} did not arrive"));
        assert_parts(&response, data, ty, ranges);
    }
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "{} bytes after the last answer",
        rest.len()
    );
}
