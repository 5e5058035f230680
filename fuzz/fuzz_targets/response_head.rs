//! The backend-response parser and the client head writer on arbitrary
//! bytes: parsing must never panic or claim more than it was given, and
//! whatever it accepts must come out as one well-formed response head with
//! exactly the framing `write_client_head` reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::relay::{
    offered, parse_response_head, upgrade_protocol, write_client_head, ClientBody, ClientView,
    LocationRewrite, MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the request and the client; the rest is the backend.
    let Some((&flags, raw)) = data.split_first() else { return };
    let request_was_head = flags & 1 != 0;
    let Ok(Some(head)) = parse_response_head(raw, request_was_head) else { return };
    assert!(head.head_len <= raw.len() && head.head_len <= MAX_RESPONSE_HEAD);
    assert_eq!(parse_response_head(&raw[..head.head_len], request_was_head), Ok(Some(head)));
    if let Some(chosen) = upgrade_protocol(raw, &head) {
        let _ = offered("websocket, h2c", chosen);
    }

    let origins = ["http://127.0.0.1:3001".to_string(), "http://localhost:3001".to_string()];
    // Either /api -> /v1, or a backend mounted at /api and told so.
    let mounted = flags & 64 != 0;
    let rewrite = LocationRewrite {
        backend_origins: &origins,
        backend_path: if mounted { "" } else { "/v1" },
        client_origin: (flags & 16 == 0).then_some("http://example.com:4000"),
        client_prefix: "/api",
        prefix_announced: mounted,
    };
    let view = ClientView {
        client_http10: flags & 2 != 0,
        keep_alive: flags & 4 != 0,
        rewrite: (flags & 8 != 0).then_some(rewrite),
        date: (flags & 32 == 0).then_some("Sun, 06 Nov 1994 08:49:37 GMT"),
    };
    let mut out = Vec::new();
    let body = write_client_head(raw, &head, &view, &mut out);

    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS + 8];
    let mut response = httparse::Response::new(&mut headers);
    assert_eq!(response.parse(&out), Ok(httparse::Status::Complete(out.len())));
    assert_eq!(response.code, Some(head.status));
    let count = |name: &str| response.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    let framing = (count("content-length"), count("transfer-encoding"));
    match body {
        ClientBody::Length(_) => assert_eq!(framing, (1, 0)),
        ClientBody::Chunked => assert_eq!(framing, (0, 1)),
        ClientBody::UntilClose => assert_eq!(framing, (0, 0)),
        ClientBody::None => assert!(framing.0 <= 1 && framing.1 == 0),
    }
    assert!(!(view.client_http10 && body == ClientBody::Chunked));
    assert!(count("connection") <= 1 && count("keep-alive") == 0 && count("te") == 0);
});
