//! Routing on arbitrary request-targets: `decide` must never panic (it
//! slices paths at bytes it found), and what it proxies must be a target a
//! backend can take as it is — one leading `/`, no fragment, no dot segment
//! left — which, for a route that passes paths unchanged, routes to the same
//! place and is sent unchanged when it comes in again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::config::Config;
use rill::http::request::{header_slots, parse_head, Parsed};
use rill::route::{decide, sort_routes, Destination, Route};
use std::path::PathBuf;

fn routed(config: &Config, target: &str) -> Option<(usize, String)> {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut slots = header_slots();
    let Ok(Parsed::Complete(request, _)) = parse_head(raw.as_bytes(), &mut slots) else { return None };
    match decide(&request, config) {
        Destination::Proxy { route, target } => Some((route, target.into_owned())),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else { return };
    let mut config = Config::new(PathBuf::from("."));
    config.routes = ["/pub=127.0.0.1:3000/public", "/api=127.0.0.1:3001", "/root=127.0.0.1:3002/"]
        .iter()
        .filter_map(|route| Route::parse(route).ok())
        .collect();
    if sort_routes(&mut config.routes).is_err() {
        return;
    }
    let Some((route, sent)) = routed(&config, target) else { return };
    assert!(sent.starts_with('/') && !sent.starts_with("//"), "{target:?} sent as {sent:?}");
    assert!(!sent.contains('#'), "{target:?} sent as {sent:?}");
    let path = sent.split('?').next().unwrap_or_default();
    for segment in path.split('/') {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
        assert!(decoded != b"." && decoded != b"..", "{target:?} sent as {sent:?}");
    }
    if config.routes[route].path.is_none() {
        assert_eq!(routed(&config, &sent), Some((route, sent.clone())), "{target:?}");
    }
});
