//! Bad input gets the right status, and the server keeps serving afterwards.

mod common;

use common::{site, Rill};
use std::fs;

#[test]
fn each_bad_request_gets_its_status() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(17_000)
    );
    let cases: Vec<(&str, String, &str)> =
        vec![
        ("garbage", "hello there\r\n\r\n".into(), "400"),
        ("no host", "GET /a.txt HTTP/1.1\r\n\r\n".into(), "400"),
        ("two hosts", "GET /a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), "400"),
        ("missing file", "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n".into(), "404"),
        ("post", "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".into(), "405"),
        ("delete", "DELETE /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(), "405"),
        ("unknown method", "BREW /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(), "501"),
        ("http/2.0", "GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), "505"),
        ("http/3", "GET / HTTP/3.0\r\nHost: t\r\n\r\n".into(), "505"),
        ("long target", long_target, "414"),
        ("big head", big_head, "431"),
        (
            "cl+te",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .into(),
            "400",
        ),
        (
            "two lengths",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n".into(),
            "400",
        ),
        ("bad length", "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1e3\r\n\r\n".into(), "400"),
        (
            "unknown coding",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br, chunked\r\n\r\n".into(),
            "501",
        ),
        ("expect", "GET /a.txt HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n".into(), "417"),
    ];
    for (name, raw, status) in &cases {
        let response = rill.request(raw);
        assert_eq!(response.status.to_string(), *status, "{name}");
        assert!(
            response.text().starts_with(&format!("{status} ")),
            "{name}: no short text body: {}",
            response.text()
        );
    }
    let put = rill.request("PUT /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(put.header("allow"), Some("GET, HEAD, OPTIONS"));
    // After all of that, a normal request still works.
    assert_eq!(rill.get("/a.txt").text(), "a");
}

#[test]
fn framing_errors_close_the_connection() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    // The second request must never be answered: after a framing error the
    // server cannot know where it starts.
    let raw = rill.raw(
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    assert!(text.contains("Connection: close"));
}

#[test]
fn a_not_found_keeps_the_connection_open() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let raw = rill.raw(
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
}
