//! The folder page in a real browser: headless Chromium sorts by clicking
//! column headers, filters as it types, follows the colour scheme, fits a
//! phone, uploads files one after another through the page (and cancels
//! one), and walks the breadcrumbs. tests/browser/listing.py drives it and
//! prints what it saw as one JSON object; this test decides from that and
//! from what is on disk.
//!
//! `RILL_SCREENSHOTS=1 cargo test --test browser_listing` also rewrites
//! docs/listing-light.png, docs/listing-dark.png and docs/listing-phone.png.

mod common;

use common::{pseudo_random, tool_runs, Rill};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The value at a path of object keys and array indexes, e.g.
/// `"filtering.typed.0.rows"` (`Null` where there is none).
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.').fold(value, |v, key| {
        match key.parse::<usize>() {
            Ok(index) => v.get(index),
            Err(_) => v.get(key),
        }
        .unwrap_or(&NULL)
    })
}

/// Everything under `root`, relative, sorted (hidden files included).
fn tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            found.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_browser_sorts_filters_uploads_and_navigates_the_listing() {
    if !tool_runs("chromium", &["--version"], "chromium is not installed")
        || !tool_runs(
            "python3",
            &["-c", "import websockets"],
            "python3 or its websockets module is not installed",
        )
    {
        return;
    }
    let root = common::site();
    let sources = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("docs/sub")).unwrap();
    fs::create_dir(root.path().join("Archive")).unwrap();
    fs::write(root.path().join("docs/readme.txt"), "read me").unwrap();
    for (name, size) in [
        ("file1.txt", 300),
        ("file2.txt", 10),
        ("file10.txt", 2000),
        ("b.txt", 50),
    ] {
        fs::write(root.path().join(name), vec![b'x'; size]).unwrap();
    }
    let small = "small text, héllo\n".repeat(1000).into_bytes();
    let medium = pseudo_random(2 << 20, 7);
    fs::write(sources.path().join("small.txt"), &small).unwrap();
    fs::write(sources.path().join("medium.bin"), &medium).unwrap();
    fs::write(sources.path().join("big.bin"), pseudo_random(24 << 20, 9)).unwrap();

    let rill = Rill::start(root.path(), &["--uploads"]);
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/listing.py"
        ))
        .args(["--url", &rill.url("/"), "--sources"])
        .arg(sources.path());
    if std::env::var_os("RILL_SCREENSHOTS").is_some() {
        command.args([
            "--screenshots",
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs"),
        ]);
    }
    let out = command.output().expect("run tests/browser/listing.py");
    assert!(
        out.status.success(),
        "listing.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 report");
    let report: Value = serde_json::from_str(text.trim()).expect("a JSON report");
    let is = |path: &str, expected: Value| {
        assert_eq!(at(&report, path), &expected, "{path} in {text}");
    };

    // Natural order, folders first; the Size header sorts biggest first,
    // then, clicked again, smallest first (folders still first).
    is("sorting.initial.title", json!("/"));
    is(
        "sorting.initial.rows",
        json!([
            "Archive/",
            "docs/",
            "b.txt",
            "file1.txt",
            "file2.txt",
            "file10.txt"
        ]),
    );
    is("sorting.size_click_loaded", json!(true));
    is(
        "sorting.after_size_click.search",
        json!("?sort=size&order=desc"),
    );
    is(
        "sorting.after_size_click.rows",
        json!([
            "Archive/",
            "docs/",
            "file10.txt",
            "file1.txt",
            "b.txt",
            "file2.txt"
        ]),
    );
    is("sorting.active_column_after_click", json!("size"));
    is("sorting.second_click_loaded", json!(true));
    is(
        "sorting.after_second_click.search",
        json!("?sort=size&order=asc"),
    );
    is(
        "sorting.after_second_click.rows",
        json!([
            "Archive/",
            "docs/",
            "file2.txt",
            "b.txt",
            "file1.txt",
            "file10.txt"
        ]),
    );

    // The filter narrows as each character is typed, case-insensitively.
    is("filtering.filter_visible", json!(true));
    let files = json!(["file1.txt", "file2.txt", "file10.txt"]);
    for (i, value) in ["f", "fi", "fiL", "fiLE"].iter().enumerate() {
        is(&format!("filtering.typed.{i}.value"), json!(value));
        assert_eq!(report["filtering"]["typed"][i]["rows"], files, "{text}");
    }
    let last = &report["filtering"]["typed"][4];
    assert_eq!(last["rows"], json!(["file1.txt", "file10.txt"]), "{text}");
    assert_eq!(last["count"], json!("2 of 6 entries"), "{text}");
    is("filtering.no_match", json!([]));
    assert_eq!(
        at(&report, "filtering.cleared").as_array().map(Vec::len),
        Some(6)
    );

    // Two files, one request each, one after the other, shown in the
    // table without a reload, stored byte for byte.
    is("upload.finished", json!(true));
    is("upload.loads_since_click", json!(0));
    is("upload.sequential", json!(true));
    let posts = at(&report, "upload.posts").as_array().unwrap();
    assert_eq!(posts.len(), 2, "{text}");
    for post in posts {
        assert_eq!(post["url"], json!(rill.url("/")), "{text}");
        assert_eq!(post["status"], json!(201), "{text}");
    }
    is(
        "upload.rows",
        json!([
            "Archive/",
            "docs/",
            "b.txt",
            "file1.txt",
            "file2.txt",
            "file10.txt",
            "medium.bin",
            "small.txt"
        ]),
    );
    is(
        "upload.queue",
        json!([
            ["done", "small.txt", "done"],
            ["done", "medium.bin", "done"]
        ]),
    );
    assert!(fs::read(root.path().join("small.txt")).unwrap() == small);
    assert!(fs::read(root.path().join("medium.bin")).unwrap() == medium);

    // The cancelled upload showed progress and speed, was aborted, and left
    // nothing: no file, no temp file.
    is("cancel.progress_seen", json!(true));
    let speed = at(&report, "cancel.progress_text.1").as_str().unwrap_or("");
    assert!(speed.ends_with("/s"), "{text}");
    is("cancel.cancelled", json!(true));
    is("cancel.row", json!(["cancelled", "cancelled"]));
    is("cancel.state.cancelled", json!(1));
    is("cancel.state.uploaded", json!(2));
    let cancelled = at(&report, "cancel.posts").as_array().unwrap();
    assert_eq!(cancelled.len(), 1, "{text}");
    assert!(cancelled[0]["failed"].is_string(), "{text}");
    let expected = [
        "Archive",
        "b.txt",
        "docs",
        "docs/readme.txt",
        "docs/sub",
        "file1.txt",
        "file10.txt",
        "file2.txt",
        "medium.bin",
        "small.txt",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    while tree(root.path()) != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tree(root.path()), expected, "{text}");

    // Light and dark follow prefers-color-scheme.
    is("themes.light_background", json!("rgb(255, 255, 255)"));
    let dark = at(&report, "themes.dark_background").as_str().unwrap();
    assert_ne!(dark, "rgb(255, 255, 255)", "{text}");
    assert_ne!(dark, "rgba(0, 0, 0, 0)", "{text}");

    // A phone: no sideways scrolling; the time column steps aside.
    is("phone.inner_width", json!(375));
    assert!(
        at(&report, "phone.scroll_width").as_u64().unwrap() <= 375,
        "{text}"
    );
    is("phone.mtime_display", json!("none"));
    is("phone.name_visible", json!(true));

    // Breadcrumbs: each folder of the path is a link to it.
    is("breadcrumbs.title", json!("/docs/sub/"));
    is(
        "breadcrumbs.crumbs",
        json!([["/", "../../"], ["docs/", "../"], ["sub/", "./"]]),
    );
    is("breadcrumbs.to_docs_loaded", json!(true));
    is("breadcrumbs.at_docs", json!("/docs/"));
    is("breadcrumbs.to_root_loaded", json!(true));
    is("breadcrumbs.at_root", json!("/"));

    for line in at(&report, "console").as_array().unwrap() {
        let line = line.as_str().unwrap_or_default();
        assert!(!line.starts_with("uncaught"), "{line} in {text}");
    }
}
