//! The whole sans-IO request path on arbitrary bytes: parse a head, decide
//! the answer against a small fixed folder, and check the answer is a
//! well-formed HTTP/1.1 response whose Content-Length matches what follows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::config::Config;
use rill::http::request::{header_slots, parse_head, Parsed};
use rill::http::response::{write_generated, CommonHeaders, Extra};
use rill::respond::{respond, Context};
use rill::site::Site;

thread_local! {
    // Site is single-threaded by design (like the loop), so one per thread.
    static SITE: (Site, Config) = {
        let dir = std::env::temp_dir().join("rill-fuzz-site");
        let _ = std::fs::create_dir_all(dir.join("sub"));
        let _ = std::fs::write(dir.join("a.txt"), "hello");
        let _ = std::fs::write(dir.join("sub/index.html"), "<p>index</p>");
        let _ = std::fs::write(dir.join(".hidden"), "secret");
        let config = Config::new(dir.clone());
        (Site::new(&dir).expect("fuzz site"), config)
    };
}

fuzz_target!(|data: &[u8]| SITE.with(|(site, config)| check(site, config, data)));

fn check(site: &Site, config: &Config, data: &[u8]) {
    let date = "Sun, 06 Nov 1994 08:49:37 GMT";
    let mut out = Vec::new();
    let common = CommonHeaders { keep_alive: true, http10: false, cors: false };
    let mut slots = header_slots();
    let body_len = match parse_head(data, &mut slots) {
        Ok(Parsed::Partial) => return,
        Ok(Parsed::Complete(request, _)) => {
            let path_buffer = std::cell::Cell::default();
            let now = std::time::Instant::now();
            let clock = std::time::SystemTime::now();
            let ctx = Context { site, config, now, clock, date, common, path_buffer: &path_buffer, live: None };
            let rill::respond::Answer::Reply(reply) = respond(&request, &ctx, &mut out) else {
                return; // a listing: its steps and rows are the connection's
            };
            if reply.file.is_some() || reply.source.is_some() || request.method == rill::http::request::Method::Head {
                return; // the body is streamed by the connection, not here
            }
            reply.body_len
        }
        Err(error) => write_generated(&mut out, error.status, error.reason, Extra::None, date, common, false),
    };
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 "));
    let (head, body) = text.split_once("\r\n\r\n").expect("head ends");
    assert!(!text.contains("secret"));
    if let Some(line) = head.lines().find(|l| l.starts_with("Content-Length: ")) {
        let announced: u64 = line[16..].parse().expect("number");
        assert_eq!(announced, body_len);
        assert_eq!(body.len() as u64, body_len);
    }
}
