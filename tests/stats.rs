//! `--stats`: the counters, the event stream and the live page.

mod common;

use common::{read_response, site, Rill};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The number after `"key":` in a JSON text (keys are unique in rill's stats).
fn number(json: &str, key: &str) -> f64 {
    let needle = format!("\"{key}\":");
    let at = json
        .find(&needle)
        .unwrap_or_else(|| panic!("{key} not in {json}"))
        + needle.len();
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().unwrap()
}

#[test]
fn counters_follow_known_traffic() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "0123456789").unwrap();
    // At info level, so counting beside the access log is covered too.
    let args = ["-l", "127.0.0.1:0", "--log-level", "info", "--stats"];
    let rill = Rill::start_with(dir.path(), &args);
    // The counters are read twice on one kept-alive connection, so the
    // second read is answered on a later turn of the loop.
    let mut watcher = BufReader::new(rill.connect());
    let mut read_stats = || {
        let ask = b"GET /.rill/stats HTTP/1.1\r\nHost: t\r\n\r\n";
        watcher.get_mut().write_all(ask).unwrap();
        read_response(&mut watcher, false).expect("stats")
    };
    let before = read_stats();
    assert_eq!(before.status, 200);
    assert_eq!(before.header("content-type"), Some("application/json"));
    let before = before.text();
    for _ in 0..3 {
        assert_eq!(rill.get("/a.txt").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(rill.get("/missing").status, 404);
    }
    let after = read_stats().text();
    assert_eq!(
        number(&after, "2xx") - number(&before, "2xx"),
        4.0,
        "{after}"
    ); // 3 files + 1 stats
    assert_eq!(
        number(&after, "4xx") - number(&before, "4xx"),
        2.0,
        "{after}"
    );
    assert_eq!(
        number(&after, "accepted") - number(&before, "accepted"),
        5.0,
        "{after}"
    );
    assert!(number(&after, "bytes_out") > number(&before, "bytes_out") + 30.0);
    assert!(
        number(&after, "loop_iterations") > number(&before, "loop_iterations"),
        "{before}\n{after}"
    );
    assert!(number(&after, "events") > number(&before, "events"));
    // The watching connection is the only one open; the counters last saw
    // it idle between its two requests.
    assert_eq!(number(&after, "open"), 1.0, "{after}");
    assert_eq!(number(&after, "idle_keep_alive"), 1.0, "{after}");
    assert_eq!(number(&after, "reading_head"), 0.0, "{after}");
}

#[test]
fn stats_are_hidden_without_the_flag() {
    let dir = site();
    let rill = Rill::start(dir.path(), &[]);
    for path in ["/.rill/", "/.rill/stats", "/.rill/events"] {
        assert_eq!(rill.get(path).status, 404, "{path}");
    }
}

#[test]
fn the_event_stream_delivers_an_event_a_second_even_under_load() {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "load").unwrap();
    let rill = Rill::start(dir.path(), &["--stats"]);
    // Load on four keep-alive connections for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let stream = rill.connect();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    writer
                        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    assert_eq!(read_response(&mut reader, false).unwrap().status, 200);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /.rill/events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 200 OK\r\n");
    let mut head = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(
        head.contains("Content-Type: text/event-stream\r\n"),
        "{head}"
    );
    let mut arrivals = Vec::new();
    let mut last_requests = 0.0;
    while arrivals.len() < 4 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "event: stats\n");
        line.clear();
        reader.read_line(&mut line).unwrap();
        let json = line.strip_prefix("data: ").expect("a data line").trim_end();
        assert!(
            json.starts_with("{\"uptime_secs\":") && json.ends_with('}'),
            "{json}"
        );
        let requests = number(json, "2xx");
        assert!(requests >= last_requests);
        last_requests = requests;
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "\n", "events end with a blank line");
        arrivals.push(Instant::now());
    }
    stop.store(true, Ordering::Relaxed);
    let served: u64 = loaders.into_iter().map(|l| l.join().unwrap()).sum();
    assert!(served > 100, "the load did not run: {served}");
    // The first event comes at once; then one per second.
    for pair in arrivals[1..].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(700) && gap < Duration::from_millis(1500),
            "{gap:?}"
        );
    }
    assert!(last_requests > 100.0, "counters did not move under load");
}

#[test]
fn the_live_page_is_self_contained() {
    let dir = site();
    let rill = Rill::start(dir.path(), &["--stats"]);
    let page = rill.get("/.rill/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(html.contains("new EventSource(\"/.rill/events\")"));
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            assert!(
                value.starts_with('/') && !value.starts_with("//") || value.starts_with('#'),
                "external reference: {}",
                &value[..value.len().min(40)]
            );
        }
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
}
