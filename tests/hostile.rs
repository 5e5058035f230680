//! Hostile input: a table of malformed and tricky requests, each with the
//! answer it must get, and request smuggling attempts; each test runs over
//! plain HTTP (`plain::`) and over HTTPS (`tls::`), with the same outcomes.

mod common;

use common::{site, Rill, Transport};
use std::fs;
use std::io::{Read, Write};
use std::net::Shutdown;

/// What a raw request must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A response with this status comes first.
    Status(u16),
    /// The connection closes without any response (over TLS: no
    /// application data before the close).
    Closed,
}
use Outcome::{Closed, Status};

/// Sends `raw`, half-closes, and returns all the server sent back.
fn exchange(rill: &Rill, raw: &[u8]) -> Vec<u8> {
    let mut stream = rill.stream();
    // The server may answer and close before reading everything we send.
    // Over TLS the half-close is close_notify, then FIN.
    let _ = stream.write_all(raw);
    let _ = stream.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

fn outcome(reply: &[u8]) -> Outcome {
    if reply.is_empty() {
        return Closed;
    }
    let text = String::from_utf8_lossy(reply);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text:?}"));
    Status(code)
}

fn corpus() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    let h = "Host: t\r\n";
    let long_header = format!(
        "GET / HTTP/1.1\r\n{h}X-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let long_target = format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(9 * 1024));
    let endless_target = format!("GET /{}", "a".repeat(20 * 1024));
    let many_headers = format!(
        "GET / HTTP/1.1\r\n{h}{}\r\n",
        (0..100)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let long_method = format!("{} / HTTP/1.1\r\n{h}\r\n", "A".repeat(1000));
    let cases: Vec<(&str, String, Outcome)> = vec![
        ("garbage", "hello world\r\n\r\n".into(), Status(400)),
        ("binary garbage", "\u{1}\u{2}\u{3}\u{4}\r\n\r\n".into(), Status(400)),
        ("missing version", "GET /\r\n\r\n".into(), Status(400)),
        ("unknown protocol", format!("GET / FOO/1.1\r\n{h}\r\n"), Status(400)),
        ("lower-case version", format!("GET / http/1.1\r\n{h}\r\n"), Status(400)),
        ("HTTP/0.9-like", "GET /a.txt\r\n".into(), Status(400)),
        ("HTTP/2.0", format!("GET / HTTP/2.0\r\n{h}\r\n"), Status(505)),
        ("HTTP/1.2", format!("GET / HTTP/1.2\r\n{h}\r\n"), Status(505)),
        ("HTTP/9.9", format!("GET / HTTP/9.9\r\n{h}\r\n"), Status(505)),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), Status(505)),
        ("space inside the target", format!("GET /a b HTTP/1.1\r\n{h}\r\n"), Status(400)),
        ("HTTP/2.0 after a blank line", format!("\r\nGET / HTTP/2.0\r\n{h}\r\n"), Status(505)),
        ("header over 16 KiB", long_header, Status(431)),
        ("100 header fields", many_headers, Status(431)),
        ("target over 8 KiB", long_target, Status(414)),
        ("endless target", endless_target, Status(414)),
        ("unknown method", format!("BREW / HTTP/1.1\r\n{h}\r\n"), Status(501)),
        ("lower-case method", format!("get / HTTP/1.1\r\n{h}\r\n"), Status(501)),
        ("1000-byte method", long_method, Status(501)),
        ("CL and TE", format!("PUT /x HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), Status(400)),
        ("TE and CL", format!("PUT /x HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"), Status(400)),
        ("differing CLs", format!("PUT /x HTTP/1.1\r\n{h}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello"), Status(400)),
        ("negative CL", format!("PUT /x HTTP/1.1\r\n{h}Content-Length: -5\r\n\r\n"), Status(400)),
        ("hex CL", format!("PUT /x HTTP/1.1\r\n{h}Content-Length: 0x10\r\n\r\n"), Status(400)),
        ("overflowing CL", format!("PUT /x HTTP/1.1\r\n{h}Content-Length: 99999999999999999999999\r\n\r\n"), Status(400)),
        ("CL list", format!("PUT /x HTTP/1.1\r\n{h}Content-Length: 5, 5\r\n\r\nhello"), Status(400)),
        ("CL with plus", format!("PUT /x HTTP/1.1\r\n{h}Content-Length: +5\r\n\r\nhello"), Status(400)),
        ("bad chunk size", format!("PUT /c1 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("chunk size overflow", format!("PUT /c2 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n"), Status(400)),
        ("0x chunk size", format!("PUT /c3 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("negative chunk size", format!("PUT /c4 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("chunk longer than size", format!("PUT /c5 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("bare LF in chunk", format!("PUT /c6 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"), Status(400)),
        ("whitespace-only chunk extension", format!("PUT /c7 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("junk after chunk size", format!("PUT /c8 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5 junk\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("empty chunk extension", format!("PUT /c9 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("control byte in chunk extension", format!("PUT /c10 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5;a\u{1}\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("trailer without a colon", format!("PUT /c11 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nbad\r\n\r\n"), Status(400)),
        ("space before a trailer's colon", format!("PUT /c12 HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx : y\r\n\r\n"), Status(400)),
        ("TE not ending in chunked", format!("PUT /x HTTP/1.1\r\n{h}Transfer-Encoding: gzip\r\n\r\n"), Status(400)),
        ("unknown transfer-coding", format!("PUT /x HTTP/1.1\r\n{h}Transfer-Encoding: xyz, chunked\r\n\r\n"), Status(501)),
        ("TE in HTTP/1.0", "PUT /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), Status(400)),
        ("obs-fold", format!("GET / HTTP/1.1\r\n{h}X-Folded: a\r\n b\r\n\r\n"), Status(400)),
        ("NUL in header", format!("GET / HTTP/1.1\r\n{h}X-Nul: a\0b\r\n\r\n"), Status(400)),
        ("control byte in header", format!("GET / HTTP/1.1\r\n{h}X-Bell: a\u{7}b\r\n\r\n"), Status(400)),
        ("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n".into(), Status(400)),
        ("bad header name", format!("GET / HTTP/1.1\r\n{h}Bad(Name): v\r\n\r\n"), Status(400)),
        ("no Host", "GET /a.txt HTTP/1.1\r\n\r\n".into(), Status(400)),
        ("two Hosts", "GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), Status(400)),
        ("bare LF line ends (tolerated)", "GET /a.txt HTTP/1.1\nHost: t\nConnection: close\n\n".into(), Status(200)),
        ("absolute-form", format!("GET http://t/a.txt HTTP/1.1\r\n{h}Connection: close\r\n\r\n"), Status(200)),
        ("absolute-form, other scheme", format!("GET ftp://t/a.txt HTTP/1.1\r\n{h}\r\n"), Status(400)),
        ("asterisk-form GET", format!("GET * HTTP/1.1\r\n{h}\r\n"), Status(400)),
        ("asterisk-form OPTIONS", format!("OPTIONS * HTTP/1.1\r\n{h}Connection: close\r\n\r\n"), Status(204)),
        ("CONNECT", "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\nConnection: close\r\n\r\n".into(), Status(405)),
        ("TRACE", format!("TRACE / HTTP/1.1\r\n{h}Connection: close\r\n\r\n"), Status(405)),
        ("encoded NUL", format!("GET /a%00.txt HTTP/1.1\r\n{h}Connection: close\r\n\r\n"), Status(404)),
        ("traversal", format!("GET /../../../etc/passwd HTTP/1.1\r\n{h}Connection: close\r\n\r\n"), Status(404)),
        ("unknown expectation", format!("GET /a.txt HTTP/1.1\r\n{h}Expect: magic\r\nConnection: close\r\n\r\n"), Status(417)),
        ("only blank lines", "\r\n\r\n".into(), Closed),
        ("half a head", "GET /a.txt HTTP/1.1\r\nHo".into(), Closed),
        ("GET with chunked body", format!("GET /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), Status(200)),
        ("GET with a broken chunked body", format!("GET /a.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), Status(400)),
        ("GET with a body", format!("GET /a.txt HTTP/1.1\r\n{h}Content-Length: 3\r\nConnection: close\r\n\r\nabc"), Status(200)),
    ];
    cases
        .into_iter()
        .map(|(name, raw, outcome)| (name, raw.into_bytes(), outcome))
        .collect()
}

common::tests_over_both_transports!(
    every_hostile_request_gets_its_answer_and_the_server_goes_on,
    smuggled_requests_are_never_answered,
);

fn every_hostile_request_gets_its_answer_and_the_server_goes_on(transport: Transport) {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start_on(transport, dir.path(), &["--uploads"]);
    let cases = corpus();
    assert!(
        cases.len() >= 40,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut wrong = Vec::new();
    for (name, raw, expected) in &cases {
        let got = outcome(&exchange(&rill, raw));
        if got != *expected {
            wrong.push(format!(
                "{transport}: {name}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Nothing was stored by the broken uploads, and a normal GET still works.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt"]);
    assert_eq!(rill.get("/a.txt").text(), "a");
}

fn smuggled_requests_are_never_answered(transport: Transport) {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "public").unwrap();
    fs::write(dir.path().join("secret.txt"), "SMUGGLED").unwrap();
    for uploads in [false, true] {
        let args: &[&str] = if uploads { &["--uploads"] } else { &[] };
        let rill = Rill::start_on(transport, dir.path(), args);
        let hidden = "GET /secret.txt HTTP/1.1\r\nHost: t\r\n\r\n";
        let attempts = [
            // CL.TE: a front end using CL would forward the hidden request as body.
            format!(
                "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}",
                5 + hidden.len()
            ),
            // TE.CL
            format!(
                "POST /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n",
                hidden.len()
            ),
            // Obfuscated TE
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n{hidden}"),
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{hidden}"),
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{hidden}"),
            // Two lengths
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}", hidden.len()),
            // A GET with a chunked body whose chunk is the hidden request
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len()),
            // A GET whose Content-Length body is the hidden request
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{hidden}", hidden.len()),
        ];
        for attempt in &attempts {
            let reply = exchange(&rill, attempt.as_bytes());
            let text = String::from_utf8_lossy(&reply);
            assert!(
                !text.contains("SMUGGLED"),
                "{transport}, uploads={uploads}: answered {attempt:?}:\n{text}"
            );
            assert!(
                text.matches("HTTP/1.1 ").count() <= 1,
                "{transport}, uploads={uploads}: {attempt:?}:\n{text}"
            );
        }
    }
}

/// A head refused for its fields is logged with the method and target of
/// its request line (what someone looking into a smuggling attempt wants);
/// only a line that is not one is logged as `GET -`.
#[test]
fn refused_heads_are_logged_as_the_request_line_they_had() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--log-level", "info"]);
    for raw in [
        "POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        "DELETE /users/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "PUT /file HTTP/1.1\r\nHost: a b\r\n\r\n",
        "PROPFIND /dav/ HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
        "\r\nnot a request line\r\n\r\n",
    ] {
        let reply = exchange(&rill, raw.as_bytes());
        assert_eq!(outcome(&reply), Status(400), "{raw:?}");
    }
    let log = rill.stop();
    for line in [
        "\"POST /api/echo\" 400 ",
        "\"DELETE /users/7\" 400 ",
        "\"PUT /file\" 400 ",
        "\"PROPFIND /dav/\" 400 ",
        "\"GET -\" 400 ",
    ] {
        assert!(log.contains(line), "no {line} in:\n{log}");
    }
}
