//! Precompressed siblings (GitHub issue 16 item 6): `app.js.br` and
//! `app.js.gz` beside `app.js` are sent, by the request's Accept-Encoding,
//! with `Content-Encoding`, the original's type, their own ETag, and ranges
//! over the coded bytes; `Vary: Accept-Encoding` on every answer for a
//! compressible type; never for media. Real siblings, made with gzip and
//! Node's brotli, and checked by curl --compressed and headless Chromium
//! (tests/browser/encodings.py).

mod common;

use common::{curl_available, site, tool_runs, Response, Rill};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const JS_TYPE: &str = "text/javascript; charset=utf-8";

/// Sets a file's modification time (std only: File::set_modified).
fn set_mtime(path: &Path, time: SystemTime) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .set_modified(time)
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// Whether gzip and node (for brotli) can run; says SKIPPED if not.
fn compressors_available() -> bool {
    tool_runs("gzip", &["--version"], "gzip is not installed")
        && tool_runs("node", &["--version"], "node is not installed")
}

fn gzip(bytes_of: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .args(["-c", "-9", "-n"])
        .arg(bytes_of)
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

fn brotli(bytes_of: &Path) -> Vec<u8> {
    let out = Command::new("node")
        .args([
            "-e",
            "process.stdout.write(require('zlib').brotliCompressSync(require('fs').readFileSync(process.argv[1])))",
        ])
        .arg(bytes_of)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "node's brotli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A file and its real precompressed siblings.
struct Coded {
    plain: Vec<u8>,
    gz: Vec<u8>,
    br: Vec<u8>,
}

/// Writes `name` with `content`, and `name.gz` and `name.br` made from it
/// (each written only if asked), the original an hour old and the siblings
/// a minute younger than it.
fn write_coded(dir: &Path, name: &str, content: &[u8], gz: bool, br: bool) -> Coded {
    let original = dir.join(name);
    fs::write(&original, content).unwrap();
    let coded = Coded {
        plain: content.to_vec(),
        gz: gzip(&original),
        br: brotli(&original),
    };
    let base = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&original, base);
    for (wanted, suffix, bytes) in [(gz, ".gz", &coded.gz), (br, ".br", &coded.br)] {
        if wanted {
            let sibling = dir.join(format!("{name}{suffix}"));
            fs::write(&sibling, bytes).unwrap();
            set_mtime(&sibling, base + Duration::from_secs(60));
        }
    }
    assert_ne!(coded.gz, coded.plain);
    assert_ne!(coded.br, coded.gz);
    coded
}

/// Some JavaScript, `lines` lines of it.
fn script(lines: usize) -> Vec<u8> {
    let mut text = String::from("\"use strict\";\n");
    for i in 0..lines {
        text.push_str(&format!(
            "function handler{i}(event) {{ return event.target.value + {i}; }}\n"
        ));
    }
    text.into_bytes()
}

/// `app.js` (5 KB, in rill's file cache) and `big.js` (about 300 KB, sent
/// from the file), both with .gz and .br beside them.
fn js_site() -> Option<(tempfile::TempDir, Coded, Coded)> {
    if !compressors_available() {
        return None;
    }
    let dir = site();
    let app = write_coded(dir.path(), "app.js", &script(80), true, true);
    let big = write_coded(dir.path(), "big.js", &script(5000), true, true);
    assert!(big.plain.len() > 64 * 1024 && app.plain.len() < 16 * 1024);
    Some((dir, app, big))
}

/// GET (or HEAD) `path` with extra header lines (each ending in CRLF).
fn fetch(rill: &Rill, method: &str, path: &str, headers: &str) -> Response {
    rill.request(&format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
    ))
}

fn accept(coding: &str) -> String {
    format!("Accept-Encoding: {coding}\r\n")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Identity,
    Gzip,
    Brotli,
}

fn assert_sent(response: &Response, coded: &Coded, sent: Sent, what: &str) {
    assert_eq!(response.status, 200, "{what}: {:?}", response.headers);
    let (encoding, bytes) = match sent {
        Sent::Identity => (None, &coded.plain),
        Sent::Gzip => (Some("gzip"), &coded.gz),
        Sent::Brotli => (Some("br"), &coded.br),
    };
    assert_eq!(response.header("content-encoding"), encoding, "{what}");
    assert_eq!(response.header("content-type"), Some(JS_TYPE), "{what}");
    assert_eq!(
        response.header("vary"),
        Some("Accept-Encoding"),
        "{what}: {:?}",
        response.headers
    );
    assert_eq!(
        response.header("content-length"),
        Some(bytes.len().to_string().as_str()),
        "{what}"
    );
    assert!(response.body == *bytes, "{what}: not the {sent:?} bytes");
}

#[test]
fn curl_compressed_decodes_to_the_original() {
    if !curl_available() {
        return;
    }
    let Some((dir, app, big)) = js_site() else {
        return;
    };
    let rill = Rill::start(dir.path(), &[]);
    let heads = site();
    for (path, coded) in [("/app.js", &app), ("/big.js", &big)] {
        // curl 7.88 with brotli asks `deflate, gzip, br, zstd`: br; told
        // gzip only, gzip. Either way it writes out the original bytes.
        for (extra, encoding) in [
            (None, "br"),
            (Some("Accept-Encoding: gzip"), "gzip"),
            (Some("Accept-Encoding: br;q=0, gzip;q=0.2"), "gzip"),
        ] {
            let head_file = heads.path().join("head.txt");
            let mut command = Command::new("curl");
            command.args(["-s", "-S", "--max-time", "30", "--compressed", "-D"]);
            command.arg(&head_file);
            if let Some(extra) = extra {
                command.args(["-H", extra]);
            }
            let out = command.arg(rill.url(path)).output().expect("run curl");
            assert!(
                out.status.success(),
                "curl --compressed {path} {extra:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let head = fs::read_to_string(&head_file).unwrap().to_ascii_lowercase();
            if encoding == "br" && !head.contains("content-encoding: br") {
                // A curl built without brotli asks for gzip only.
                assert!(head.contains("content-encoding: gzip"), "{head}");
            } else {
                assert!(
                    head.contains(&format!("content-encoding: {encoding}\r\n")),
                    "{path} {extra:?}: {head}"
                );
            }
            assert!(head.contains("vary: accept-encoding\r\n"), "{head}");
            assert!(
                out.stdout == coded.plain,
                "{path} {extra:?}: curl decoded {} bytes, not the original's {}",
                out.stdout.len(),
                coded.plain.len()
            );
        }
    }
}

#[test]
fn accept_encoding_picks_the_sibling() {
    let Some((dir, app, big)) = js_site() else {
        return;
    };
    let rill = Rill::start(dir.path(), &[]);
    for (path, coded) in [("/app.js", &app), ("/big.js", &big)] {
        for (header, sent) in [
            (Some("br"), Sent::Brotli),
            (Some("gzip"), Sent::Gzip),
            (Some("gzip, deflate, br"), Sent::Brotli),
            (Some("gzip, deflate, br, zstd"), Sent::Brotli),
            (Some("br;q=0, gzip"), Sent::Gzip),
            (Some("gzip;q=0.5, br;q=0.4"), Sent::Gzip),
            (Some("GZIP;Q=0.9, Br;q=0.1"), Sent::Gzip),
            (Some("x-gzip"), Sent::Gzip),
            (Some("*"), Sent::Brotli),
            (Some("*;q=0.5, br;q=0"), Sent::Gzip),
            (Some("identity"), Sent::Identity),
            (Some("gzip;q=0.5, identity"), Sent::Identity),
            (Some("br;q=0, gzip;q=0"), Sent::Identity),
            (Some("deflate, zstd"), Sent::Identity),
            (Some(""), Sent::Identity),
            (None, Sent::Identity),
        ] {
            let headers = header.map(accept).unwrap_or_default();
            let response = fetch(&rill, "GET", path, &headers);
            assert_sent(&response, coded, sent, &format!("{path} with {header:?}"));
        }
        // HEAD says what GET would send.
        let get = fetch(&rill, "GET", path, &accept("br"));
        let head = fetch(&rill, "HEAD", path, &accept("br"));
        assert!(head.body.is_empty());
        for name in [
            "content-type",
            "content-length",
            "content-encoding",
            "etag",
            "vary",
            "last-modified",
        ] {
            assert_eq!(head.header(name), get.header(name), "HEAD {path}: {name}");
        }
    }
}

#[test]
fn each_coding_has_its_own_etag() {
    let Some((dir, app, _big)) = js_site() else {
        return;
    };
    let rill = Rill::start(dir.path(), &[]);
    let identity = fetch(&rill, "GET", "/app.js", "");
    let gzip = fetch(&rill, "GET", "/app.js", &accept("gzip"));
    let br = fetch(&rill, "GET", "/app.js", &accept("br"));
    let tag = |response: &Response| response.header("etag").expect("ETag").to_owned();
    let (identity_tag, gzip_tag, br_tag) = (tag(&identity), tag(&gzip), tag(&br));
    assert_ne!(br_tag, gzip_tag);
    assert_ne!(br_tag, identity_tag);
    assert_ne!(gzip_tag, identity_tag);

    let conditional = |tag: &str, coding: Option<&str>| {
        let headers = format!(
            "If-None-Match: {tag}\r\n{}",
            coding.map(accept).unwrap_or_default()
        );
        fetch(&rill, "GET", "/app.js", &headers)
    };
    // The br answer's tag with br accepted: 304, carrying that tag and Vary.
    let not_modified = conditional(&br_tag, Some("br"));
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(br_tag.as_str()));
    assert_eq!(not_modified.header("vary"), Some("Accept-Encoding"));
    assert!(not_modified.body.is_empty());
    let gzip_not_modified = conditional(&gzip_tag, Some("gzip"));
    assert_eq!(gzip_not_modified.status, 304);
    assert_eq!(gzip_not_modified.header("etag"), Some(gzip_tag.as_str()));
    assert_eq!(gzip_not_modified.header("vary"), Some("Accept-Encoding"));
    // Identity's 304 varies too.
    let identity_not_modified = conditional(&identity_tag, None);
    assert_eq!(identity_not_modified.status, 304);
    assert_eq!(
        identity_not_modified.header("etag"),
        Some(identity_tag.as_str())
    );
    assert_eq!(
        identity_not_modified.header("vary"),
        Some("Accept-Encoding")
    );
    // Another coding's tag does not match: the full answer in the coding
    // asked for.
    assert_sent(
        &conditional(&br_tag, Some("gzip")),
        &app,
        Sent::Gzip,
        "br tag, gzip accepted",
    );
    assert_sent(
        &conditional(&gzip_tag, None),
        &app,
        Sent::Identity,
        "gzip tag, nothing accepted",
    );
    assert_sent(
        &conditional(&identity_tag, Some("br")),
        &app,
        Sent::Brotli,
        "identity tag, br accepted",
    );
}

#[test]
fn ranges_apply_to_the_coded_bytes() {
    let Some((dir, app, big)) = js_site() else {
        return;
    };
    let rill = Rill::start(dir.path(), &[]);
    for (path, coded) in [("/app.js", &app), ("/big.js", &big)] {
        let headers = format!("Range: bytes=0-9\r\n{}", accept("br"));
        let response = fetch(&rill, "GET", path, &headers);
        assert_eq!(response.status, 206, "{path}");
        assert_eq!(response.header("content-encoding"), Some("br"), "{path}");
        assert_eq!(response.header("content-type"), Some(JS_TYPE), "{path}");
        assert_eq!(response.header("vary"), Some("Accept-Encoding"), "{path}");
        assert_eq!(
            response.header("content-range"),
            Some(format!("bytes 0-9/{}", coded.br.len()).as_str()),
            "{path}"
        );
        assert_eq!(response.body, &coded.br[..10], "{path}");

        let headers = format!("Range: bytes=-5\r\n{}", accept("gzip"));
        let response = fetch(&rill, "GET", path, &headers);
        assert_eq!(response.status, 206, "{path}");
        assert_eq!(response.header("content-encoding"), Some("gzip"));
        let n = coded.gz.len();
        assert_eq!(
            response.header("content-range"),
            Some(format!("bytes {}-{}/{n}", n - 5, n - 1).as_str())
        );
        assert_eq!(response.body, &coded.gz[n - 5..], "{path}");
    }
}

/// Several ranges get the file as it is even when a coding is accepted: a
/// multipart body under `Content-Encoding: br` would be decoded whole by a
/// client (curl --compressed) and fail. Each part has the file's type.
#[test]
fn several_ranges_are_parts_of_the_file_itself_not_of_its_coded_sibling() {
    let Some((dir, _app, big)) = js_site() else {
        return;
    };
    let rill = Rill::start(dir.path(), &[]);
    let original = fs::read(dir.path().join("big.js")).unwrap();
    let n = original.len();
    let headers = format!("Range: bytes=0-9,300-309\r\n{}", accept("br"));
    let response = fetch(&rill, "GET", "/big.js", &headers);
    assert_eq!(response.status, 206);
    assert_eq!(response.header("content-encoding"), None);
    assert_eq!(response.header("vary"), Some("Accept-Encoding"));
    assert_ne!(big.br.len(), n);
    let content_type = response.header("content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let mut expected = Vec::new();
    for (i, (start, end)) in [(0usize, 9usize), (300, 309)].into_iter().enumerate() {
        if i > 0 {
            expected.extend_from_slice(b"\r\n");
        }
        expected.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {JS_TYPE}\r\nContent-Range: bytes {start}-{end}/{n}\r\n\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(&original[start..=end]);
    }
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&response.body),
        String::from_utf8_lossy(&expected)
    );
}

/// A 416 for a compressible file depends on Accept-Encoding too (the coded
/// file is shorter), so it says Vary like every other answer for the file.
#[test]
fn an_unsatisfiable_range_of_a_compressible_file_varies_too() {
    let Some((dir, app, _big)) = js_site() else {
        return;
    };
    let rill = Rill::start(dir.path(), &[]);
    // Past the .br's end but inside the original.
    let start = app.br.len() + 10;
    assert!(start < app.plain.len());
    let range = format!("Range: bytes={start}-\r\n");
    let identity = fetch(&rill, "GET", "/app.js", &range);
    assert_eq!(identity.status, 206);
    assert_eq!(identity.header("vary"), Some("Accept-Encoding"));
    let coded = fetch(&rill, "GET", "/app.js", &format!("{range}{}", accept("br")));
    assert_eq!(coded.status, 416);
    assert_eq!(
        coded.header("content-range"),
        Some(format!("bytes */{}", app.br.len()).as_str())
    );
    assert_eq!(
        coded.header("vary"),
        Some("Accept-Encoding"),
        "416: {:?}",
        coded.headers
    );
}

#[test]
fn a_sibling_older_than_its_original_is_ignored() {
    if !compressors_available() {
        return;
    }
    let dir = site();
    let coded = write_coded(dir.path(), "app.js", &script(80), true, true);
    let now = SystemTime::now();
    // The original rebuilt after its .gz: the .gz is stale, the .br fresh.
    set_mtime(&dir.path().join("app.js"), now - Duration::from_secs(60));
    set_mtime(
        &dir.path().join("app.js.gz"),
        now - Duration::from_secs(120),
    );
    set_mtime(&dir.path().join("app.js.br"), now - Duration::from_secs(30));
    let rill = Rill::start(dir.path(), &[]);
    assert_sent(
        &fetch(&rill, "GET", "/app.js", &accept("gzip")),
        &coded,
        Sent::Identity,
        "stale .gz",
    );
    // gzip preferred but stale: the next acceptable coding, br.
    assert_sent(
        &fetch(&rill, "GET", "/app.js", &accept("gzip, br;q=0.5")),
        &coded,
        Sent::Brotli,
        "stale .gz, fresh .br",
    );
    // Both stale: the original.
    set_mtime(&dir.path().join("app.js.br"), now - Duration::from_secs(90));
    drop(rill);
    let rill = Rill::start(dir.path(), &[]);
    assert_sent(
        &fetch(&rill, "GET", "/app.js", &accept("gzip, deflate, br")),
        &coded,
        Sent::Identity,
        "both stale",
    );
    // Just as old as the original counts as fresh.
    set_mtime(&dir.path().join("app.js.br"), now - Duration::from_secs(60));
    drop(rill);
    let rill = Rill::start(dir.path(), &[]);
    assert_sent(
        &fetch(&rill, "GET", "/app.js", &accept("gzip, deflate, br")),
        &coded,
        Sent::Brotli,
        "same mtime",
    );
}

#[test]
fn media_is_never_encoded() {
    if !compressors_available() {
        return;
    }
    let dir = site();
    let movie = common::pseudo_random(100_000, 4);
    let coded = write_coded(dir.path(), "movie.mp4", &movie, true, true);
    let png = common::pseudo_random(3000, 8);
    write_coded(dir.path(), "image.png", &png, true, true);
    let rill = Rill::start(dir.path(), &[]);
    for (path, data, ty) in [
        ("/movie.mp4", &coded.plain, "video/mp4"),
        ("/image.png", &png, "image/png"),
    ] {
        for header in ["gzip", "br", "gzip, deflate, br, zstd", "*"] {
            let response = fetch(&rill, "GET", path, &accept(header));
            assert_eq!(response.status, 200, "{path} {header}");
            assert_eq!(response.header("content-type"), Some(ty), "{path}");
            assert_eq!(response.header("content-encoding"), None, "{path} {header}");
            assert_eq!(response.header("vary"), None, "{path} {header}");
            assert!(response.body == **data, "{path} {header}");
            // Seeking in a video reads the real file's bytes.
            let ranged = fetch(
                &rill,
                "GET",
                path,
                &format!("Range: bytes=1000-1999\r\n{}", accept(header)),
            );
            assert_eq!(ranged.status, 206);
            assert_eq!(ranged.header("content-encoding"), None);
            assert_eq!(
                ranged.header("content-range"),
                Some(format!("bytes 1000-1999/{}", data.len()).as_str())
            );
            assert_eq!(ranged.body, &data[1000..2000]);
        }
    }
}

#[test]
fn a_sibling_without_its_original_is_not_served_for_it() {
    if !compressors_available() {
        return;
    }
    let dir = site();
    let coded = write_coded(dir.path(), "x.js", &script(20), true, true);
    fs::remove_file(dir.path().join("x.js")).unwrap();
    let rill = Rill::start(dir.path(), &[]);
    for header in ["gzip", "br", "gzip, br"] {
        let response = fetch(&rill, "GET", "/x.js", &accept(header));
        assert_eq!(response.status, 404, "{header}");
        assert_eq!(response.header("content-encoding"), None);
    }
    // Asked for by its own name it is a file like any other, not encoded.
    let response = fetch(&rill, "GET", "/x.js.gz", &accept("gzip"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), None);
    assert!(response.body == coded.gz);
}

#[test]
fn a_folders_index_html_has_siblings_too() {
    if !compressors_available() {
        return;
    }
    let dir = site();
    let page = b"<!doctype html><title>index</title><p>hello, precompressed world</p>\n".repeat(20);
    let coded = write_coded(dir.path(), "index.html", &page, true, false);
    fs::create_dir(dir.path().join("sub")).unwrap();
    let sub = write_coded(
        &dir.path().join("sub"),
        "index.html",
        &page[..500],
        false,
        true,
    );
    let rill = Rill::start(dir.path(), &[]);
    for path in ["/", "/index.html"] {
        let response = fetch(&rill, "GET", path, &accept("gzip, deflate, br"));
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(response.header("vary"), Some("Accept-Encoding"), "{path}");
        assert!(response.body == coded.gz, "{path}");
        let identity = fetch(&rill, "GET", path, "");
        assert_eq!(identity.header("content-encoding"), None);
        assert_eq!(identity.header("vary"), Some("Accept-Encoding"), "{path}");
        assert!(identity.body == coded.plain, "{path}");
    }
    for path in ["/sub/", "/sub/index.html"] {
        let response = fetch(&rill, "GET", path, &accept("gzip, deflate, br"));
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header("content-encoding"), Some("br"), "{path}");
        assert!(response.body == sub.br, "{path}");
    }
}

// ---------------------------------------------------------------------------
// A real browser.

/// The value at a path of object keys (`Null` where there is none).
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&NULL))
}

/// Headless Chromium loads a page whose `app.js` says which file it came
/// from (`app.js` sets "identity", `app.js.gz` "gzip", `app.js.br` "br"),
/// over plain HTTP and over HTTPS (tests/browser/encodings.py).
#[test]
fn a_browser_runs_the_precompressed_script() {
    if !tool_runs("chromium", &["--version"], "chromium is not installed")
        || !tool_runs(
            "python3",
            &["-c", "import websockets"],
            "python3 or its websockets module is not installed",
        )
        || !compressors_available()
    {
        return;
    }
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/encodings.py"
        ))
        .args(["--rill", env!("CARGO_BIN_EXE_rill")])
        .output()
        .expect("run tests/browser/encodings.py");
    assert!(
        out.status.success(),
        "encodings.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 report");
    let report: Value = serde_json::from_str(text.trim()).expect("a JSON report");
    for scheme in ["https", "http"] {
        let str_at = |key: &str| {
            at(&report, &format!("{scheme}.{key}"))
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            at(&report, &format!("{scheme}.page_status")),
            &Value::from(200),
            "{text}"
        );
        let asked = str_at("script.accept_encoding");
        assert!(asked.contains("gzip"), "{scheme}: {text}");
        // Chromium asks for br over HTTPS (and, being a secure context,
        // on localhost); what it asked for decides what rill sends.
        let expected = if asked.split(',').any(|coding| coding.trim() == "br") {
            "br"
        } else {
            "gzip"
        };
        if scheme == "https" {
            assert_eq!(expected, "br", "Chromium asks for br over HTTPS: {text}");
        }
        assert_eq!(str_at("loaded_from"), expected, "{scheme}: {text}");
        assert_eq!(str_at("script.status"), "200", "{scheme}: {text}");
        assert_eq!(
            str_at("script.content_encoding"),
            expected,
            "{scheme}: {text}"
        );
        assert_eq!(str_at("script.vary"), "Accept-Encoding", "{scheme}: {text}");
        assert!(
            str_at("script.content_type").starts_with("text/javascript"),
            "{scheme}: {text}"
        );
        assert_eq!(str_at("title"), format!("loaded {expected}"), "{text}");
        assert_eq!(
            at(&report, &format!("{scheme}.errors")),
            &serde_json::json!([]),
            "{text}"
        );
    }
}

/// Every `Vary` token of an answer (over all its Vary lines, since the
/// answer may carry more than one) and its Content-Encoding, from the raw
/// bytes.
fn vary_and_encoding(rill: &Rill, raw: &str) -> (Vec<String>, Option<String>) {
    let all = rill.raw(raw.as_bytes());
    let text = String::from_utf8_lossy(&all);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut vary = Vec::new();
    let mut encoding = None;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("vary") {
            vary.extend(value.split(',').map(|token| token.trim().to_owned()));
        } else if name.eq_ignore_ascii_case("content-encoding") {
            encoding = Some(value.trim().to_owned());
        }
    }
    vary.sort();
    (vary, encoding)
}

/// Under --live-reload an HTML file's answer depends on Sec-Fetch-Dest (a
/// page gets the reload script, a fetch() the file as it is), so it says
/// `Vary: Sec-Fetch-Dest` — also when the file is sent from its .gz.
#[test]
fn under_live_reload_a_coded_html_answer_still_varies_by_fetch_dest() {
    if !compressors_available() {
        return;
    }
    let dir = site();
    let page = b"<!doctype html><title>live</title><p>a page, precompressed</p>\n".repeat(10);
    write_coded(dir.path(), "page.html", &page, true, false);
    let rill = Rill::start(dir.path(), &["--live-reload"]);
    for coding in ["identity", "gzip"] {
        let (vary, encoding) = vary_and_encoding(
            &rill,
            &format!(
                "GET /page.html HTTP/1.1\r\nHost: t\r\nSec-Fetch-Dest: empty\r\n\
                 Accept-Encoding: {coding}\r\nConnection: close\r\n\r\n"
            ),
        );
        let expected_encoding = (coding == "gzip").then(|| "gzip".to_owned());
        assert_eq!(encoding, expected_encoding, "{coding}");
        assert_eq!(
            vary,
            ["Accept-Encoding", "Sec-Fetch-Dest"],
            "Accept-Encoding: {coding}, Sec-Fetch-Dest: empty"
        );
    }
}

/// That a file has no sibling is remembered (no failed open per request),
/// but a sibling made later is used by the very next request: its name is
/// watched with the file's cache entry.
#[test]
fn a_sibling_made_after_the_file_was_served_is_used_at_once() {
    let dir = common::site();
    let css = b"body { color: rebeccapurple }\n".repeat(20);
    fs::write(dir.path().join("a.css"), &css).unwrap();
    let rill = Rill::start(dir.path(), &[]);
    for _ in 0..3 {
        let plain = fetch(&rill, "GET", "/a.css", &accept("gzip"));
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.body, css);
    }
    let gz = dir.path().join("a.css.gz");
    let tmp = dir.path().join("a.css.gz.tmp");
    fs::write(&tmp, b"not really gzip, but rill does not look").unwrap();
    fs::rename(&tmp, &gz).unwrap();
    // The watch is read at each turn's start and then once per clock tick
    // (1-4 ms, see Site::catch_up): a connection accepted within the tick
    // of a change, in a turn that began before it, may miss it.
    let tick = std::time::Duration::from_millis(10);
    std::thread::sleep(tick);
    let coded = fetch(&rill, "GET", "/a.css", &accept("gzip"));
    assert_eq!(coded.header("content-encoding"), Some("gzip"));
    assert_eq!(coded.body, fs::read(&gz).unwrap());
    fs::remove_file(&gz).unwrap();
    std::thread::sleep(tick);
    let plain = fetch(&rill, "GET", "/a.css", &accept("gzip"));
    assert_eq!(plain.header("content-encoding"), None);
}
