//! The backend request head on arbitrary client heads: every head rill's
//! parser accepts must be rebuilt into one that rill's parser accepts again,
//! framed exactly as asked, and with only rill's own forwarding fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::forward::{write_forward_head, Forward};
use rill::http::request::{header_slots, parse_head, BodyFraming, Parsed, MAX_HEADERS};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    // The first byte picks what rill asks for; the rest is the client's head.
    let Some((&flags, raw)) = data.split_first() else { return };
    let mut slots = header_slots();
    let Ok(Parsed::Complete(request, used)) = parse_head(raw, &mut slots) else { return };
    let body = match flags & 3 {
        0 => BodyFraming::None,
        1 => BodyFraming::Chunked,
        _ => BodyFraming::Length(u64::from(flags)),
    };
    let peer = match flags & 4 {
        0 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    };
    let forward = Forward {
        target: &request.target,
        peer,
        proto: "http",
        default_host: "127.0.0.1:3000",
        body,
        upgrade: flags & 8 != 0,
        strip_authorization: flags & 16 != 0,
        strip_expect: flags & 32 != 0,
        prefix: if flags & 64 != 0 { "/mount" } else { "" },
    };
    let mut out = Vec::new();
    let seen = write_forward_head(&request, &raw[..used], &forward, &mut out).expect("accepted head");
    if let Some(host) = seen.host {
        assert!(raw.get(host).is_some());
    }

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 16];
    let mut again = httparse::Request::new(&mut headers);
    assert_eq!(again.parse(&out), Ok(httparse::Status::Complete(out.len())));
    assert_eq!(again.path, Some(&*request.target));
    let count = |name: &str| again.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    assert_eq!(count("host"), 1);
    for name in ["x-forwarded-for", "x-forwarded-proto", "forwarded"] {
        assert_eq!(count(name), 1, "{name}");
    }
    assert!(count("x-forwarded-host") <= 1);
    assert_eq!(count("x-forwarded-prefix"), usize::from(!forward.prefix.is_empty()));
    assert_eq!(count("keep-alive") + count("te") + count("proxy-connection"), 0);
    let framing = (count("content-length"), count("transfer-encoding"));
    match body {
        BodyFraming::None => assert_eq!(framing, (0, 0)),
        BodyFraming::Length(_) => assert_eq!(framing, (1, 0)),
        BodyFraming::Chunked => assert_eq!(framing, (0, 1)),
    }
    // What rill sends, rill itself would accept (when it is small enough).
    if again.headers.len() <= MAX_HEADERS && out.len() <= rill::http::request::MAX_HEAD_BYTES {
        let mut rebuilt_slots = header_slots();
        match parse_head(&out, &mut rebuilt_slots) {
            Ok(Parsed::Complete(rebuilt, len)) => {
                assert_eq!(len, out.len());
                assert_eq!(rebuilt.body, body);
                assert_eq!(rebuilt.method, request.method);
            }
            other => panic!("rebuilt head rejected: {other:?}"),
        }
    }
});
