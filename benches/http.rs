//! Criterion benches for the sans-IO parts on the per-request path: parsing a
//! request head and rendering a response head. Run with `cargo bench`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rill::http::request::{parse_head, Parsed};
use rill::http::response::{CommonHeaders, HeadWriter, Status};

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
            b.iter(|| match parse_head(black_box(head)) {
                Ok(Parsed::Complete(request, len)) => (request.keep_alive, len),
                other => panic!("unexpected {other:?}"),
            })
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

criterion_group!(benches, parse, render);
criterion_main!(benches);
