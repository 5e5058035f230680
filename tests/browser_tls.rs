//! HTTPS in a real browser: headless Chromium, trusting exactly the key of
//! rill's `--tls-self-signed` certificate, uploads files through the
//! listing page's form (tests/browser/https_upload.py drives it and prints
//! what it saw as one JSON object; this test decides from that).

mod common;

use common::tool_runs;
use serde_json::{json, Value};
use std::process::Command;

/// The value at a path of object keys, e.g. `"click.post.status"`
/// (`Null` where there is none).
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&NULL))
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Runs tests/browser/https_upload.py; None when the browser is missing
/// (outside CI).
fn run_scenario() -> Option<(Value, String)> {
    if !tool_runs("chromium", &["--version"], "chromium is not installed")
        || !tool_runs(
            "python3",
            &["-c", "import websockets"],
            "python3 or its websockets module is not installed",
        )
    {
        return None;
    }
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/https_upload.py"
        ))
        .args(["--rill", env!("CARGO_BIN_EXE_rill")])
        .output()
        .expect("run tests/browser/https_upload.py");
    assert!(
        out.status.success(),
        "https_upload.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 report");
    let report = serde_json::from_str(text.trim()).expect("a JSON report");
    Some((report, text))
}

#[test]
fn a_browser_uploads_through_the_listing_form_over_https() {
    let Some((report, text)) = run_scenario() else {
        return;
    };
    let str_at = |path: &str| at(&report, path).as_str().unwrap_or_default().to_owned();
    let is = |path: &str, expected: Value| {
        assert_eq!(at(&report, path), &expected, "{path} in {text}");
    };
    let yes = |path: &str| is(path, json!(true));
    let string = |path: &str, expected: &str| is(path, json!(expected));
    let number = |path: &str, expected: u64| is(path, json!(expected));
    let origin = str_at("rill.origin");
    assert!(origin.starts_with("https://127.0.0.1:"), "{text}");

    // The browser trusts rill's key, and only that: another self-signed
    // rill's page does not load.
    is("other_certificate.loaded", json!(false));
    assert!(
        str_at("other_certificate.error").starts_with("net::ERR_CERT_"),
        "{text}"
    );

    // The listing came over TLS, HTTP/1.1, with the certificate rill
    // printed, and the page is a secure context.
    string("listing.page.href", &format!("{origin}/"));
    string("listing.page.location_protocol", "https:");
    yes("listing.page.is_secure_context");
    string("listing.page.next_hop_protocol", "http/1.1");
    number("listing.document.status", 200);
    string("listing.document.protocol", "http/1.1");
    string("listing.document.security_state", "secure");
    assert!(
        str_at("listing.document.tls_protocol").starts_with("TLS 1."),
        "{text}"
    );
    yes("listing.certificate_matches_rill");
    string("listing.visible_security_state", "secure");
    // The form's action is relative, so it posts to the page's own https
    // origin, never to a plain-HTTP one.
    string("listing.page.form.action_attribute", "./");
    string("listing.page.form.action", &format!("{origin}/"));
    string("listing.page.form.enctype", "multipart/form-data");

    // Both ways of sending the form: the page's script (XMLHttpRequest per
    // file, then the table refreshed), and the browser's own form POST with
    // JavaScript off.
    for (way, folder, kind) in [("click", "/", "XHR"), ("form", "/form/", "Document")] {
        let url = format!("{origin}{folder}");
        string(&format!("{way}.page_before.location_protocol"), "https:");
        yes(&format!("{way}.page_before.is_secure_context"));
        string(&format!("{way}.post.url"), &url);
        string(&format!("{way}.post.type"), kind);
        number(&format!("{way}.post.status"), 201);
        string(&format!("{way}.post.protocol"), "http/1.1");
        string(&format!("{way}.post.security_state"), "secure");
        yes(&format!("{way}.post.finished"));
        is(&format!("{way}.post.error"), Value::Null);
        assert!(
            str_at(&format!("{way}.post.request_content_type"))
                .starts_with("multipart/form-data; boundary="),
            "{text}"
        );
        string(&format!("{way}.page_after.href"), &url);
        string(&format!("{way}.page_after.location_protocol"), "https:");
        yes(&format!("{way}.page_after.is_secure_context"));
        string(&format!("{way}.page_after.next_hop_protocol"), "http/1.1");
        // Stored byte for byte: the 3 MiB of random bytes and the text.
        let files = items(at(&report, &format!("{way}.files")));
        assert_eq!(files.len(), 2, "{text}");
        for file in files {
            assert_eq!(file["identical"], json!(true), "{way}: {text}");
            assert_eq!(file["size"], file["expected_size"], "{text}");
            assert_eq!(file["sha256"], file["expected_sha256"], "{text}");
        }
        assert_eq!(files[0]["size"], json!(3 * 1024 * 1024));
    }
    // The script got rill's JSON answer (one request per file, the first
    // read here) and refreshed the table in place to show the new files.
    let answer = str_at("click.post_answer_body");
    assert!(
        answer.contains("\"name\":\"random.bin\",\"size\":3145728"),
        "{text}"
    );
    yes("click.refreshed");
    yes("click.after_shows_files");
    number("click.page_after.response_status", 200);
    string("click.status_text_after", "");
    // Without JavaScript the answer is rill's HTML page, status 201.
    yes("form.loaded");
    number("form.page_after.response_status", 201);
    string("form.page_after.title", "Uploaded");
    let shown = str_at("form.page_after.text");
    assert!(shown.contains("random.bin (3145728 bytes)"), "{text}");
    assert!(shown.contains("notes.txt ("), "{text}");

    // Nothing went over plain HTTP; ROOT holds the files and no leftovers.
    assert!(items(&report["plain_http_requests"]).is_empty(), "{text}");
    let entries: Vec<&str> = items(&report["root_entries"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        entries,
        [
            "form",
            "form/notes.txt",
            "form/random.bin",
            "notes.txt",
            "random.bin"
        ],
        "{text}"
    );
    for line in items(&report["rill_stderr"]) {
        let line = line.as_str().unwrap_or_default();
        assert!(
            !line.contains("ERROR") && !line.contains("panicked"),
            "rill: {line}"
        );
    }
}
