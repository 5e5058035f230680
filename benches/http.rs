//! Criterion benches for the sans-IO parts: parsing a request head, rendering
//! a response head, answering a request for a cached file (parse, look up,
//! write head and body: all of a keep-alive request's work except the system
//! calls and the loop), decoding a chunked body and scanning a multipart body
//! (the last two in MB/s); and for a proxied request, rebuilding its head for
//! the backend, reading the backend's head and rebuilding it for the client,
//! and re-chunking a body (in MB/s); and decoding WebSocket frames a client
//! sent (16 KiB binary and text in GiB/s, a small text frame in ns). Run with
//! `cargo bench --bench http`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rill::http::chunked::{write_chunk_header, ChunkedDecoder, LAST_CHUNK};
use rill::http::forward::{write_forward_head, Forward};
use rill::http::multipart::{Event, MultipartParser};
use rill::http::reframe::{Incoming, Reframer};
use rill::http::relay::{
    header_slots, parse_response_fields, parse_response_head, write_client_head, write_parsed_head,
    ClientView,
};
use rill::http::request::BodyFraming;
use rill::http::request::{self, parse_head, Parsed};
use rill::http::response::{CommonHeaders, HeadWriter, Status};
use rill::http::websocket::{Decoder, Message};
use rill::respond::{respond, Answer, Context};
use rill::site::Site;
use std::cell::Cell;
use std::time::Instant;

/// What wrk sends: the smallest realistic head.
const WRK_HEAD: &[u8] = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n\r\n";
/// What a browser sends: a dozen headers.
const BROWSER_HEAD: &[u8] = b"GET /docs/guide.html HTTP/1.1\r\n\
Host: 192.0.2.1:4000\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
If-None-Match: \"1a2b-5f3e9c00000000-400\"\r\n\
Priority: u=0, i\r\n\r\n";

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_head");
    for (name, head) in [("wrk", WRK_HEAD), ("browser", BROWSER_HEAD)] {
        group.throughput(Throughput::Bytes(head.len() as u64));
        group.bench_function(name, |b| {
            b.iter(
                || match parse_head(black_box(head), &mut request::header_slots()) {
                    Ok(Parsed::Complete(request, len)) => (request.keep_alive, len),
                    other => panic!("unexpected {other:?}"),
                },
            )
        });
    }
    group.finish();
}

fn render(c: &mut Criterion) {
    let mut out = Vec::with_capacity(512);
    let common = CommonHeaders {
        keep_alive: true,
        http10: false,
        cors: false,
    };
    c.bench_function("render_file_head", |b| {
        b.iter(|| {
            out.clear();
            HeadWriter::start(&mut out, Status::OK, "Sun, 06 Nov 1994 08:49:37 GMT")
                .header("Content-Type", "application/octet-stream")
                .content_length(black_box(1024))
                .header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
                .header("ETag", "\"1a2b-5f3e9c00000000-400\"")
                .header("Accept-Ranges", "bytes")
                .finish(common);
            out.len()
        })
    });
}

/// wrk's request for a 1 KiB file that the site's cache already holds: the
/// answer the connection sends for S1, built the way `Connection::answer`
/// builds it (head, then the cached body copied behind it).
fn answer(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("rill-bench-site-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("1k.bin"), noise(1024)).unwrap();
    let site = Site::new(&dir).unwrap();
    let config = rill::config::Config::new(dir.clone());
    let path_buffer = Cell::new(Vec::new());
    // One instant for every iteration: the cache entry stays fresh, as it
    // does under load (it is revalidated once a second).
    let ctx = Context {
        site: &site,
        config: &config,
        now: Instant::now(),
        date: "Sun, 06 Nov 1994 08:49:37 GMT",
        clock: std::time::SystemTime::now(),
        common: CommonHeaders {
            keep_alive: true,
            http10: false,
            cors: false,
        },
        path_buffer: &path_buffer,
        live: None,
    };
    let mut out = Vec::with_capacity(4096);
    c.bench_function("answer_cached_1KiB_file", |b| {
        b.iter(|| {
            out.clear();
            let mut slots = request::header_slots();
            let Ok(Parsed::Complete(request, _)) = parse_head(black_box(WRK_HEAD), &mut slots)
            else {
                panic!("wrk's head did not parse");
            };
            let Answer::Reply(reply) = respond(&request, &ctx, &mut out) else {
                panic!("a file is answered at once");
            };
            let body = reply.file.expect("a file body");
            out.extend_from_slice(body.file.bytes.as_deref().expect("cached bytes"));
            out.len()
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pseudo-random bytes, so the scanners see realistic (incompressible) data
/// with CRs and dashes in it.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn chunked(c: &mut Criterion) {
    let payload = noise(8 << 20);
    let mut body = Vec::new();
    for chunk in payload.chunks(64 * 1024) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut group = c.benchmark_group("chunked");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("decode_8MiB_in_64KiB_reads", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new();
            let mut total = 0usize;
            for read in body.chunks(64 * 1024) {
                let mut rest = read;
                while !rest.is_empty() {
                    let decoded = decoder.decode(rest).unwrap();
                    total += decoded.data.len();
                    rest = &rest[decoded.consumed..];
                }
            }
            assert!(decoder.is_done());
            total
        })
    });
    group.finish();
}

fn multipart(c: &mut Criterion) {
    let boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
    let content = noise(8 << 20);
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut group = c.benchmark_group("multipart");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scan_8MiB_in_64KiB_reads", |b| {
        b.iter(|| {
            let mut parser = MultipartParser::new(boundary).unwrap();
            let mut held: Vec<u8> = Vec::with_capacity(128 * 1024);
            let mut total = 0usize;
            for read in body.chunks(64 * 1024) {
                held.extend_from_slice(read);
                let mut at = 0;
                loop {
                    let (used, event) = parser.next(&held[at..]).unwrap();
                    at += used;
                    match event {
                        Event::Data(data) => total += data.len(),
                        Event::NeedMore if used == 0 => break,
                        _ => {}
                    }
                    if at == held.len() {
                        break;
                    }
                }
                held.drain(..at);
            }
            assert!(parser.is_done());
            assert_eq!(total, content.len());
            total
        })
    });
    group.finish();
}

/// What lighttpd answers for a 1 KiB file (S8's backend).
const BACKEND_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/octet-stream\r\n\
ETag: \"2417125487\"\r\n\
Last-Modified: Tue, 01 Dec 2026 20:22:46 GMT\r\n\
Content-Length: 1024\r\n\
Accept-Ranges: bytes\r\n\
Date: Tue, 01 Dec 2026 20:31:41 GMT\r\n\
Server: lighttpd/1.4.69\r\n\r\n";

fn proxy_heads(c: &mut Criterion) {
    let mut out = Vec::with_capacity(1024);
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    c.bench_function("forward_head_wrk", |b| {
        b.iter(|| {
            out.clear();
            let forward = Forward {
                target: "/api/1k.bin",
                peer,
                proto: "http",
                default_host: "127.0.0.1:8080",
                body: BodyFraming::None,
                upgrade: false,
                strip_authorization: false,
                strip_expect: false,
                prefix: "",
            };
            // Parse and rebuild, as one proxied request costs (the rebuild
            // used to parse the head itself).
            let mut slots = request::header_slots();
            let Ok(Parsed::Complete(request, _)) = parse_head(WRK_HEAD, &mut slots) else {
                panic!("wrk's head did not parse");
            };
            write_forward_head(&request, black_box(WRK_HEAD), &forward, &mut out).map(|_| out.len())
        })
    });
    let view = ClientView {
        client_http10: false,
        keep_alive: true,
        rewrite: None,
        // As the proxy relays: lighttpd's head has a Date, which is kept.
        date: Some("Tue, 01 Dec 2026 20:31:42 GMT"),
    };
    // The way the proxy relays a head: one parse, its fields written out.
    c.bench_function("relay_head_lighttpd", |b| {
        b.iter(|| {
            out.clear();
            let mut slots = header_slots();
            match parse_response_fields(black_box(BACKEND_HEAD), false, &mut slots) {
                Ok(Some(parsed)) => write_parsed_head(&parsed, &view, &mut out),
                _ => panic!("lighttpd's head did not parse"),
            }
        })
    });
    // Parsed twice: a head decided on, then written from its bytes alone.
    c.bench_function("relay_head_lighttpd_reparsed", |b| {
        b.iter(|| {
            out.clear();
            let head = match parse_response_head(black_box(BACKEND_HEAD), false) {
                Ok(Some(head)) => head,
                other => panic!("unexpected {:?}", other.map(|h| h.map(|h| h.status))),
            };
            write_client_head(BACKEND_HEAD, &head, &view, &mut out)
        })
    });
}

fn rechunk(c: &mut Criterion) {
    // 8 MiB in 16 KiB chunks, re-framed through a 32 KiB output as the
    // proxy does it.
    let mut body = Vec::new();
    let piece = vec![b'x'; 16 * 1024];
    for _ in 0..512 {
        write_chunk_header(&mut body, piece.len());
        body.extend_from_slice(&piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(LAST_CHUNK);
    let mut group = c.benchmark_group("reframe");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("rechunk_8MiB_in_32KiB_rooms", |b| {
        let mut out = Vec::with_capacity(40 * 1024);
        b.iter(|| {
            let mut reframer = Reframer::new(Incoming::Chunked, true, true);
            let mut rest = &body[..];
            while !reframer.is_done() {
                out.clear();
                let used = reframer.feed(rest, &mut out, 32 * 1024).unwrap_or(0);
                rest = &rest[used..];
            }
            reframer.relayed()
        })
    });
    group.finish();
}

/// A frame as a browser sends it: FIN, `opcode`, masked with a fixed key.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// One frame decoded (unmasked into the message buffer, text validated) by a
/// decoder that has already seen one, as on a live connection.
fn websocket(c: &mut Criterion) {
    let ascii: Vec<u8> = noise(16 * 1024).iter().map(|b| b' ' + b % 95).collect();
    let frames = [
        ("decode_16KiB_binary", client_frame(0x2, &noise(16 * 1024))),
        ("decode_16KiB_text", client_frame(0x1, &ascii)),
        (
            "decode_small_text",
            client_frame(0x1, br#"{"reload":"/docs/guide.html"}"#),
        ),
    ];
    let mut group = c.benchmark_group("websocket");
    for (name, frame) in &frames {
        group.throughput(Throughput::Bytes(frame.len() as u64));
        let mut decoder = Decoder::new(1 << 20);
        group.bench_function(*name, |b| {
            b.iter(|| match decoder.decode(black_box(frame)) {
                (used, Ok(Some(Message::Binary(data)))) => used + data.len(),
                (used, Ok(Some(Message::Text(text)))) => used + text.len(),
                (_, other) => panic!("unexpected {other:?}"),
            })
        });
    }
    group.finish();
}

/// `--auth`: a warm check (the header seen and verified before) against
/// a bcrypt user costs one hash-map lookup, not a bcrypt run; the cold one
/// (cost 10, what `htpasswd -B` uses) is what it saves.
fn auth(c: &mut Criterion) {
    use base64::Engine;
    use rill::auth::{Gate, Need, User};
    let hash = bcrypt::hash_with_salt("s3cret", 10, [3; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    let mut user = User::parse_line(&format!("ann:{hash}")).unwrap();
    user.settle_rights(false);
    let gate = Gate::new(vec![user], false);
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ann:s3cret")
    );
    let peer = std::net::IpAddr::from([127, 0, 0, 1]);
    let now = Instant::now();
    let mut group = c.benchmark_group("auth");
    group.bench_function("check_warm_bcrypt", |b| {
        b.iter(|| gate.check(black_box(Some(&header)), Need::Read, peer, now))
    });
    group.sample_size(10);
    group.bench_function("bcrypt_verify_cost_10", |b| {
        b.iter(|| bcrypt::verify(black_box("s3cret"), &hash).unwrap())
    });
    group.finish();
}

/// Issue 16's sans-IO parts: a listing row, natural order, a tar and a
/// zip member's header, a multi-range header, an Accept-Encoding choice.
fn folders(c: &mut Criterion) {
    use rill::archive::{tar, zip};
    use rill::http::{encoding, ranges};
    use rill::listing::{self, EntryRef, Order, SortKey};
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let entry = EntryRef {
        name: b"holiday photo 0042.jpg",
        is_dir: false,
        size: 3_481_337,
        modified,
        is_link: false,
    };
    let mut group = c.benchmark_group("folders");
    let mut out = Vec::with_capacity(4096);
    group.bench_function("html_row", |b| {
        b.iter(|| {
            out.clear();
            listing::html_row(black_box(&entry), &mut out);
            out.len()
        })
    });
    group.bench_function("json_row", |b| {
        b.iter(|| {
            out.clear();
            listing::json_row(black_box(&entry), false, "/photos/2024/", &mut out);
            out.len()
        })
    });
    let other = EntryRef {
        name: b"holiday photo 0117.jpg",
        ..entry
    };
    let order = Order {
        key: SortKey::Name,
        descending: false,
    };
    group.bench_function("compare_natural", |b| {
        b.iter(|| listing::compare(black_box(&entry), black_box(&other), order))
    });
    let path = b"photos/2024/holiday photo 0042.jpg";
    group.bench_function("tar_member_head", |b| {
        b.iter(|| {
            out.clear();
            tar::member_head(black_box(path), false, 3_481_337, 1_700_000_000, &mut out);
            out.len()
        })
    });
    group.bench_function("zip_local_header", |b| {
        b.iter(|| {
            out.clear();
            zip::local_header(black_box(path), 3_481_337, 1_700_000_000, &mut out);
            out.len()
        })
    });
    group.bench_function("ranges_resolve_3", |b| {
        b.iter(|| ranges::resolve(black_box("bytes=0-99, 5000-5999, -500"), 1_000_000))
    });
    let available = [encoding::Coding::Brotli, encoding::Coding::Gzip];
    group.bench_function("accept_encoding_chrome", |b| {
        b.iter(|| encoding::choose(black_box(Some("gzip, deflate, br, zstd")), &available))
    });
    group.finish();
}

criterion_group!(
    benches,
    folders,
    auth,
    parse,
    render,
    answer,
    chunked,
    multipart,
    proxy_heads,
    rechunk,
    websocket
);
criterion_main!(benches);
