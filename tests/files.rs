//! Serving files and folders: bodies, heads, types, ranges, 304s, listings and
//! path safety, against the real binary.

mod common;

use common::{pseudo_random, site, Rill};
use std::fs;

#[test]
fn small_and_large_files_arrive_byte_exact() {
    let dir = site();
    let small = pseudo_random(1024, 1);
    let large = pseudo_random(20 * 1024 * 1024, 2);
    fs::write(dir.path().join("1k.bin"), &small).unwrap();
    fs::write(dir.path().join("20m.bin"), &large).unwrap();
    let rill = Rill::start(dir.path(), &[]);

    let response = rill.get("/1k.bin");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("1024"));
    assert_eq!(response.body, small);

    let response = rill.get("/20m.bin");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("20971520"));
    assert!(response.body == large, "20 MiB body differs");
}

#[test]
fn without_sendfile_bodies_and_ranges_are_the_same() {
    let dir = site();
    let large = pseudo_random(20 * 1024 * 1024 + 5, 4);
    fs::write(dir.path().join("20m.bin"), &large).unwrap();
    let rill = Rill::start(dir.path(), &["--no-sendfile", "--stats"]);
    let response = rill.get("/20m.bin");
    assert_eq!(response.status, 200);
    assert!(
        response.body == large,
        "20 MiB body differs without sendfile"
    );
    let ranged = rill.request(
        "GET /20m.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000000-3000000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ranged.status, 206);
    assert!(ranged.body == large[1_000_000..=3_000_000]);
    // And the copying path really was the one taken.
    let stats = rill.get("/.rill/stats").text();
    assert!(stats.contains("\"sendfile_calls\":0,"), "{stats}");
}

#[test]
fn head_has_the_get_headers_and_no_body() {
    let dir = site();
    fs::write(dir.path().join("page.html"), "<p>hi</p>").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let get = rill.get("/page.html");
    let head = rill.request("HEAD /page.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    for name in ["content-length", "content-type", "etag", "last-modified"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    assert!(head.header("date").is_some());
    // Nothing follows the head: the connection closes right after it.
    let raw = rill.raw(b"HEAD /page.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(raw.ends_with(b"\r\n\r\n"), "HEAD sent a body");
}

#[test]
fn content_types() {
    let dir = site();
    let cases = [
        ("a.html", "text/html; charset=utf-8"),
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.mjs", "text/javascript; charset=utf-8"),
        ("a.wasm", "application/wasm"),
        ("a.webp", "image/webp"),
        ("a.mp4", "video/mp4"),
        ("a.svg", "image/svg+xml"),
        ("a.unknown", "application/octet-stream"),
    ];
    for (name, _) in cases {
        fs::write(dir.path().join(name), "x").unwrap();
    }
    let rill = Rill::start(dir.path(), &[]);
    for (name, expected) in cases {
        let response = rill.get(&format!("/{name}"));
        assert_eq!(response.header("content-type"), Some(expected), "{name}");
    }
}

#[test]
fn ranges() {
    let dir = site();
    let data: Vec<u8> = (0..100u8).collect();
    fs::write(dir.path().join("r.bin"), &data).unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let ranged = |range: &str| {
        rill.request(&format!(
            "GET /r.bin HTTP/1.1\r\nHost: t\r\nRange: {range}\r\nConnection: close\r\n\r\n"
        ))
    };

    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=90-", 90, 99),
        ("bytes=-5", 95, 99),
        ("bytes=50-500", 50, 99),
    ] {
        let response = ranged(range);
        assert_eq!(response.status, 206, "{range}");
        assert_eq!(
            response.header("content-range"),
            Some(format!("bytes {start}-{end}/100").as_str())
        );
        assert_eq!(response.body, &data[start..=end], "{range}");
    }

    let unsatisfiable = ranged("bytes=100-");
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(unsatisfiable.header("content-range"), Some("bytes */100"));

    // Ranges closer than a part head's size are sent as one.
    let coalesced = ranged("bytes=5-6, 0-1");
    assert_eq!(coalesced.status, 206);
    assert_eq!(coalesced.header("content-range"), Some("bytes 0-6/100"));
    assert_eq!(coalesced.body, &data[..=6]);

    // Invalid syntax gets the whole file (several ranges: tests/ranges.rs).
    for range in ["bytes=9-1", "lines=1-2"] {
        let response = ranged(range);
        assert_eq!(response.status, 200, "{range}");
        assert_eq!(response.body, data, "{range}");
    }

    // If-Range: a matching validator keeps the range, a stale one gets 200.
    let etag = rill.get("/r.bin").header("etag").unwrap().to_owned();
    let with_if_range = |validator: &str| {
        rill.request(&format!(
            "GET /r.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\nIf-Range: {validator}\r\n\
             Connection: close\r\n\r\n"
        ))
    };
    let current = with_if_range(&etag);
    assert_eq!((current.status, current.body.as_slice()), (206, &data[..1]));
    let stale = with_if_range("\"stale\"");
    assert_eq!((stale.status, stale.body.len()), (200, 100));
}

#[test]
fn not_modified() {
    let dir = site();
    fs::write(dir.path().join("c.txt"), "cache me").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let first = rill.get("/c.txt");
    let etag = first.header("etag").unwrap();
    let modified = first.header("last-modified").unwrap();

    let by_tag = rill.request(&format!(
        "GET /c.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(by_tag.status, 304);
    assert_eq!(by_tag.header("etag"), Some(etag));
    assert!(by_tag.body.is_empty());

    let by_date = rill.request(&format!(
        "GET /c.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {modified}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(by_date.status, 304);

    let old_date = rill.request(
        "GET /c.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
         Connection: close\r\n\r\n",
    );
    assert_eq!(
        (old_date.status, old_date.text().as_str()),
        (200, "cache me")
    );

    let other_tag = rill.request(
        "GET /c.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(other_tag.status, 200);
}

/// `If-Match` and `If-Unmodified-Since` that are false answer 412 before
/// anything else is looked at (RFC 9110 §13.2.2), a `Range` or what would
/// be a 304 included; true ones leave the answer as it was.
#[test]
fn failed_preconditions_answer_412() {
    let dir = site();
    let data = pseudo_random(40_000, 7); // past the file cache's 16 KiB
    fs::write(dir.path().join("p.bin"), &data).unwrap();
    fs::write(dir.path().join("small.txt"), "small").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    for (path, body) in [("/p.bin", &data[..]), ("/small.txt", b"small".as_slice())] {
        let first = rill.get(path);
        let etag = first.header("etag").unwrap().to_owned();
        let modified = first.header("last-modified").unwrap().to_owned();
        let with = |method: &str, fields: &str| {
            rill.request(&format!(
                "{method} {path} HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n"
            ))
        };
        let weak = format!("W/{etag}");
        for fields in [
            "If-Match: \"stale\"\r\n".to_owned(),
            format!("If-Match: {weak}\r\n"),
            "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n".to_owned(),
            // If-Match decides alone: a true If-Unmodified-Since does not save it.
            format!("If-Match: \"stale\"\r\nIf-Unmodified-Since: {modified}\r\n"),
            format!("If-Match: \"stale\"\r\nIf-None-Match: {etag}\r\n"),
            "If-Match: \"stale\"\r\nRange: bytes=0-9\r\n".to_owned(),
            "If-Match: \"stale\"\r\nRange: bytes=0-9,100-109\r\n".to_owned(),
            format!("If-Match: \"stale\"\r\nRange: bytes=0-9\r\nIf-Range: {etag}\r\n"),
            "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nRange: bytes=0-9\r\n".to_owned(),
        ] {
            let failed = with("GET", &fields);
            assert_eq!(failed.status, 412, "{path}: {fields}");
            assert_eq!(failed.header("content-range"), None, "{path}: {fields}");
            assert!(failed.text().starts_with("412 Precondition Failed"));
            assert_eq!(with("HEAD", &fields).status, 412, "HEAD {path}: {fields}");
        }
        for fields in [
            format!("If-Match: {etag}\r\n"),
            format!("If-Match: \"other\", {etag}\r\n"),
            "If-Match: *\r\n".to_owned(),
            format!("If-Unmodified-Since: {modified}\r\n"),
            "If-Unmodified-Since: not a date\r\n".to_owned(),
            format!("If-Match: {etag}\r\nIf-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
        ] {
            let passed = with("GET", &fields);
            assert_eq!(passed.status, 200, "{path}: {fields}");
            assert!(passed.body == body, "{path}: {fields}");
        }
        let ranged = with("GET", &format!("If-Match: {etag}\r\nRange: bytes=0-1\r\n"));
        assert_eq!((ranged.status, ranged.body.as_slice()), (206, &body[..2]));
        let current = with(
            "GET",
            &format!("If-Match: {etag}\r\nIf-None-Match: {etag}\r\n"),
        );
        assert_eq!(current.status, 304);
    }
    // A missing file is a 404 whatever the preconditions say.
    let missing = rill
        .request("GET /none.txt HTTP/1.1\r\nHost: t\r\nIf-Match: *\r\nConnection: close\r\n\r\n");
    assert_eq!(missing.status, 404);
}

#[test]
fn download_query_sets_content_disposition() {
    let dir = site();
    fs::write(dir.path().join("report.pdf"), "pdf").unwrap();
    fs::write(dir.path().join("résumé.txt"), "cv").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    assert_eq!(
        rill.get("/report.pdf?download")
            .header("content-disposition"),
        Some("attachment; filename=\"report.pdf\"")
    );
    assert_eq!(
        rill.get("/r%C3%A9sum%C3%A9.txt?download")
            .header("content-disposition"),
        Some("attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt")
    );
    assert_eq!(rill.get("/report.pdf").header("content-disposition"), None);
}

#[test]
fn directories_redirect_index_and_list() {
    let dir = site();
    fs::create_dir(dir.path().join("with-index")).unwrap();
    fs::write(dir.path().join("with-index/index.html"), "<h1>home</h1>").unwrap();
    fs::create_dir(dir.path().join("plain")).unwrap();
    fs::create_dir(dir.path().join("plain/inner")).unwrap();
    fs::write(dir.path().join("plain/<b>x.txt"), "bold").unwrap();
    fs::write(dir.path().join("plain/.secret"), "hidden").unwrap();
    let rill = Rill::start(dir.path(), &[]);

    let redirect = rill.get("/plain?x=1");
    assert_eq!(redirect.status, 301);
    // The query goes along (`/photos?tar` still means the archive).
    assert_eq!(redirect.header("location"), Some("/plain/?x=1"));

    let index = rill.get("/with-index/");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.text(), "<h1>home</h1>");

    let listing = rill.get("/plain/");
    assert_eq!(listing.status, 200);
    let page = listing.text();
    assert!(page.contains("&lt;b&gt;x.txt"), "{page}");
    assert!(!page.contains("<b>x.txt"), "name not escaped: {page}");
    assert!(page.contains("href=\"./%3Cb%3Ex.txt\""));
    assert!(page.contains("href=\"../\""), "no parent link");
    assert!(
        page.find("inner/").unwrap() < page.find("x.txt").unwrap(),
        "folders first"
    );
    assert!(!page.contains("secret"), "dotfile listed");
    assert_eq!(rill.get("/plain/.secret").status, 404);
    assert_eq!(rill.get("/plain/%2esecret").status, 404);
    // A file asked for as a folder is not there (as in nginx and lighttpd).
    assert_eq!(rill.get("/plain/%3Cb%3Ex.txt").status, 200);
    assert_eq!(rill.get("/plain/%3Cb%3Ex.txt/").status, 404);
    assert_eq!(rill.get("/plain/%3Cb%3Ex.txt/?tar").status, 404);
    assert_eq!(rill.get("/with-index/index.html/").status, 404);
}

#[test]
fn listings_sort_by_query_and_answer_json_to_scripts() {
    let dir = site();
    fs::create_dir(dir.path().join("sub dir")).unwrap();
    fs::write(dir.path().join("file10.txt"), "ten bytes!").unwrap();
    fs::write(dir.path().join("file2.txt"), "2").unwrap();
    fs::write(dir.path().join("q\"b\\.txt"), "quoted").unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let names = |page: &str| -> Vec<String> {
        page.split("<td class=\"name\"><a href=\"./")
            .skip(1)
            .map(|rest| rest[rest.find("\">").unwrap() + 2..rest.find("</a>").unwrap()].to_owned())
            .collect()
    };
    let page = rill.get("/").text();
    assert_eq!(
        names(&page),
        ["sub dir/", "file2.txt", "file10.txt", "q&quot;b\\.txt"]
    );
    let by_size = rill.get("/?sort=size&order=desc").text();
    assert_eq!(
        names(&by_size),
        ["sub dir/", "file10.txt", "q&quot;b\\.txt", "file2.txt"]
    );
    assert!(by_size.contains("aria-sort=\"descending\""));
    assert!(by_size.contains("href=\"?sort=size&amp;order=asc\""));

    for request in [
        "GET /?json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    ] {
        let answer = rill.request(request);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("cache-control"), Some("no-cache"));
        assert_eq!(answer.header("vary"), Some("Accept"));
        let rows: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["name"], "sub dir");
        assert_eq!(rows[0]["type"], "dir");
        assert_eq!(rows[0]["url"], "/sub%20dir/");
        assert_eq!(rows[2]["name"], "file10.txt");
        assert_eq!(rows[2]["size"], 10);
        assert_eq!(rows[3]["name"], "q\"b\\.txt");
        assert_eq!(rows[3]["url"], "/q%22b%5C.txt");
        let modified = rows[3]["modified"].as_str().unwrap();
        assert!(
            modified.len() == 20 && modified.ends_with('Z'),
            "{modified}"
        );
    }
    let sorted = rill.get("/sub%20dir/?json&sort=size&order=desc");
    assert_eq!(sorted.text(), "[\n]\n");
    let browser = rill.request(
        "GET / HTTP/1.1\r\nHost: t\r\nAccept: text/html,*/*;q=0.8\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        browser.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn listing_links_reach_files_with_awkward_names() {
    let dir = site();
    let names = [
        "with space.txt",
        "hash#tag.txt",
        "what?.txt",
        "100%.txt",
        "a,b.txt",
        "[x].txt",
        "naïve-日本.txt",
        "a:b.txt",
        "amp&.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        fs::write(dir.path().join(name), format!("file {i}")).unwrap();
    }
    let rill = Rill::start(dir.path(), &[]);
    let page = rill.get("/").text();
    for (i, name) in names.iter().enumerate() {
        // Find the href that precedes this name's escaped text in the listing.
        let shown = name.replace('&', "&amp;");
        let text_at = page.find(&format!(">{shown}</a>")).expect(name);
        let href_start = page[..text_at].rfind("href=\"./").unwrap() + "href=\".".len();
        let href = &page[href_start..text_at - 1];
        let response = rill.get(href);
        assert_eq!(response.status, 200, "{name} via {href}");
        assert_eq!(response.text(), format!("file {i}"), "{name} via {href}");
    }
}

#[test]
fn nothing_outside_root_is_reachable() {
    let outer = site();
    let root = outer.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(outer.path().join("sentinel.txt"), "SENTINEL-SECRET").unwrap();
    fs::write(root.join("ok.txt"), "ok").unwrap();
    std::os::unix::fs::symlink(outer.path().join("sentinel.txt"), root.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(outer.path(), root.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink(root.join("ok.txt"), root.join("inside.txt")).unwrap();
    let rill = Rill::start(&root, &[]);

    for target in [
        "/../sentinel.txt",
        "/%2e%2e/sentinel.txt",
        "/%2E%2E%2Fsentinel.txt",
        "/ok.txt/../../sentinel.txt",
        "/x/..%2f..%2fsentinel.txt",
        "/..%5csentinel.txt",
        "/escape.txt",
        "/escape-dir/sentinel.txt",
        "/escape-dir/",
        "/ok.txt%00.html",
        "/%00",
    ] {
        let raw = rill.raw(
            format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 404 "), "{target}: {text}");
        assert!(!text.contains("SENTINEL"), "{target} leaked: {text}");
    }
    // A symlink that stays inside ROOT is served; the escaping ones are not listed.
    assert_eq!(rill.get("/inside.txt").text(), "ok");
    let listing = rill.get("/").text();
    assert!(!listing.contains("escape"), "{listing}");
}

/// The same checks with a real client, where curl is installed (.ci/run
/// installs it).
#[test]
fn curl_downloads_resumes_and_follows_redirects() {
    if !common::curl_available() {
        return;
    }
    let dir = site();
    let data = pseudo_random(3 * 1024 * 1024 + 17, 9);
    fs::create_dir(dir.path().join("d")).unwrap();
    fs::write(dir.path().join("d/data.bin"), &data).unwrap();
    let rill = Rill::start(dir.path(), &[]);
    let out = site();
    let curl = |args: &[&str]| {
        let status = std::process::Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "30"])
            .args(args)
            .status()
            .expect("run curl");
        assert!(status.success(), "curl {args:?}");
    };
    let whole = out.path().join("whole.bin");
    let url = format!("http://{}/d/data.bin", rill.addr);
    curl(&["-o", whole.to_str().unwrap(), &url]);
    assert!(fs::read(&whole).unwrap() == data);

    // Resume a download cut at 1 MiB: curl sends Range and appends.
    let partial = out.path().join("partial.bin");
    fs::write(&partial, &data[..1 << 20]).unwrap();
    curl(&["-C", "-", "-o", partial.to_str().unwrap(), &url]);
    assert!(fs::read(&partial).unwrap() == data);

    // -L follows the directory redirect to the listing.
    let listing = out.path().join("listing.html");
    let dir_url = format!("http://{}/d", rill.addr);
    curl(&["-L", "-o", listing.to_str().unwrap(), &dir_url]);
    assert!(fs::read_to_string(&listing).unwrap().contains("data.bin"));
}
