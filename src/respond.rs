//! From a parsed request to its answer: the head (and any generated body)
//! written into the connection's output buffer, plus the file part, if any, for
//! the connection to stream.
//!
//! This is where the file server's rules meet: method checks, path decoding,
//! directories (redirect, `index.html`, listing), and files with their
//! conditional and range answers. The decisions themselves are made by the
//! sans-IO pieces ([`crate::http::conditional`], [`crate::path`],
//! [`crate::listing`]); this module only looks things up in the [`Site`] and
//! writes the result.

use crate::config::Config;
use crate::http::conditional::{decide, FileAnswer, Preconditions};
use crate::http::request::{Method, Request};
use crate::http::response::{write_generated, CommonHeaders, Extra, HeadWriter, Status};
use crate::listing;
use crate::live::Live;
use crate::mime;
use crate::path::RequestPath;
use crate::site::{Found, Missing, OpenFile, Site};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// The methods rill answers to, for `Allow` and CORS preflights.
pub fn allowed_methods(config: &Config) -> &'static str {
    if config.uploads {
        "GET, HEAD, POST, PUT, OPTIONS"
    } else {
        "GET, HEAD, OPTIONS"
    }
}

/// The part of a file still to be sent after the head.
#[derive(Debug)]
pub struct FileBody {
    pub file: Rc<OpenFile>,
    /// Where the next byte comes from in the file.
    pub offset: u64,
    /// How many bytes are still to go.
    pub remaining: u64,
    /// Bytes sent after the file's (the live-reload snippet).
    pub tail: Option<Box<[u8]>>,
}

/// What was queued for one request.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    /// Body bytes the answer carries (already in the buffer, or in `file`).
    pub body_len: u64,
    /// A file body to stream after the buffered bytes.
    pub file: Option<FileBody>,
}

/// Everything a request's answer depends on besides the request.
pub struct Context<'a> {
    pub site: &'a Site,
    pub config: &'a Config,
    /// The loop's clock.
    pub now: Instant,
    /// The current `Date` header value.
    pub date: &'a str,
    pub common: CommonHeaders,
    /// The buffer request paths are decoded into, reused from one request
    /// to the next.
    pub path_buffer: &'a Cell<Vec<u8>>,
    /// Under `--live-reload`: what HTML pages get appended.
    pub live: Option<&'a Live>,
}

/// Whether the answer will be shown as a page (and so may carry the
/// live-reload script): a browser says so with `Sec-Fetch-Dest`, and a
/// request without it (an older browser, or typed into a tool) counts as
/// one. `fetch()`, XHR, scripts and images say otherwise and get the file
/// exactly as it is.
fn is_document(request: &Request) -> bool {
    request.fetch_dest.is_none_or(|dest| {
        ["document", "iframe", "frame"]
            .iter()
            .any(|d| dest.eq_ignore_ascii_case(d))
    })
}

/// Writes the answer to `request` into `out` and returns what was queued.
pub fn respond(request: &Request, ctx: &Context, out: &mut Vec<u8>) -> Reply {
    let head_only = request.method == Method::Head;
    let generated = |out: &mut Vec<u8>, status: Status, detail: &str, extra: Extra| Reply {
        status,
        body_len: write_generated(out, status, detail, extra, ctx.date, ctx.common, head_only),
        file: None,
    };
    let allowed = allowed_methods(ctx.config);
    match request.method {
        Method::Get | Method::Head => {}
        Method::Options => return options_reply(ctx, allowed, out),
        Method::Post | Method::Put => {
            return generated(
                out,
                Status::METHOD_NOT_ALLOWED,
                "uploads are off (start rill with --uploads)",
                Extra::Allow(allowed),
            )
        }
        _ => {
            return generated(
                out,
                Status::METHOD_NOT_ALLOWED,
                "not a method for files",
                Extra::Allow(allowed),
            )
        }
    }
    if request
        .expect
        .is_some_and(|expect| !expect.eq_ignore_ascii_case("100-continue"))
    {
        return generated(
            out,
            Status::EXPECTATION_FAILED,
            "unknown expectation",
            Extra::None,
        );
    }
    let Ok(path) = RequestPath::parse_into(&request.target, ctx.path_buffer.take()) else {
        return generated(out, Status::NOT_FOUND, "no such file", Extra::None);
    };
    let reply = path_reply(request, ctx, &path, out);
    ctx.path_buffer.set(path.into_buffer());
    reply
}

/// A GET or HEAD for a valid path: a file, a directory's index or listing,
/// a redirect to the directory's URL, or why there is nothing.
fn path_reply(request: &Request, ctx: &Context, path: &RequestPath, out: &mut Vec<u8>) -> Reply {
    let head_only = request.method == Method::Head;
    let generated = |out: &mut Vec<u8>, status: Status, detail: &str, extra: Extra| Reply {
        status,
        body_len: write_generated(out, status, detail, extra, ctx.date, ctx.common, head_only),
        file: None,
    };
    let found = ctx.site.find(path, ctx.now).and_then(|found| match found {
        Found::Dir(dir) if path.trailing_slash => match ctx.site.index_of(&dir, ctx.now) {
            Err(Missing::NotFound) => Ok(Found::Dir(dir)),
            index => index,
        },
        other => Ok(other),
    });
    match found {
        Ok(Found::File(file)) => {
            let name = match path.file_name() {
                Some(name) if !path.trailing_slash => name,
                _ => b"index.html",
            };
            file_reply(request, ctx, path, name, file, out)
        }
        Ok(Found::Dir(_)) if !path.trailing_slash => {
            let location = path.url(true);
            generated(
                out,
                Status::MOVED_PERMANENTLY,
                &location,
                Extra::Location(&location),
            )
        }
        Ok(Found::Dir(dir)) => match ctx.site.list(&dir) {
            Ok(mut entries) => {
                let title = percent_encoding::percent_decode_str(&path.url(true))
                    .decode_utf8_lossy()
                    .into_owned();
                let query = request.target.split_once('?').map_or("", |(_, query)| {
                    query.split_once('#').map_or(query, |(query, _)| query)
                });
                let order = listing::Order::from_query(query);
                let (content_type, page) = match listing::format_for(request.accept, query) {
                    listing::Format::Json => (
                        "application/json",
                        listing::render_json(&title, &mut entries, order),
                    ),
                    listing::Format::Html => {
                        let mut page =
                            listing::render(&title, &mut entries, ctx.config.uploads, order);
                        if let Some(live) = ctx.live.filter(|_| is_document(request)) {
                            page.push_str(&live.snippet(true));
                        }
                        ("text/html; charset=utf-8", page.into_bytes())
                    }
                };
                HeadWriter::start(out, Status::OK, ctx.date)
                    .header("Content-Type", content_type)
                    .header("Cache-Control", "no-cache")
                    .header("Vary", "Accept")
                    .content_length(page.len() as u64)
                    .finish(ctx.common);
                if !head_only {
                    out.extend_from_slice(&page);
                }
                Reply {
                    status: Status::OK,
                    body_len: page.len() as u64,
                    file: None,
                }
            }
            Err(missing) => missing_reply(missing, generated, out),
        },
        Err(Missing::NotFound) if ctx.live.is_some() && is_document(request) => {
            live_not_found(request, ctx, out)
        }
        Err(missing) => missing_reply(missing, generated, out),
    }
}

/// `OPTIONS`: 204 with `Allow`, and with `--cors` what a browser's preflight
/// needs to let a page on another origin upload here.
fn options_reply(ctx: &Context, allowed: &str, out: &mut Vec<u8>) -> Reply {
    let mut head = HeadWriter::start(out, Status::NO_CONTENT, ctx.date).header("Allow", allowed);
    if ctx.config.cors {
        head = head
            .header("Access-Control-Allow-Methods", allowed)
            .header(
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, Range, If-None-Match, If-Modified-Since, If-Range, Accept",
            )
            .header("Access-Control-Max-Age", "86400");
    }
    head.finish(ctx.common);
    Reply {
        status: Status::NO_CONTENT,
        body_len: 0,
        file: None,
    }
}

fn missing_reply(
    missing: Missing,
    generated: impl Fn(&mut Vec<u8>, Status, &str, Extra) -> Reply,
    out: &mut Vec<u8>,
) -> Reply {
    match missing {
        Missing::NotFound => generated(out, Status::NOT_FOUND, "no such file", Extra::None),
        Missing::Forbidden => generated(out, Status::FORBIDDEN, "not readable", Extra::None),
        Missing::Io(error) => {
            log::warn!("file system error: {error}");
            generated(
                out,
                Status::INTERNAL_SERVER_ERROR,
                "file system error",
                Extra::None,
            )
        }
    }
}

/// An HTML page with the live-reload snippet after its bytes: `200` (or
/// `304`) only, since ranges of a body that is not the file's would mean
/// nothing; an ETag of its own (see [`Live::etag`]) and no `Last-Modified`,
/// so the browser revalidates by ETag; `no-cache`, so it always asks. The
/// file still goes out with `sendfile`, the snippet after it.
fn injected_reply(
    request: &Request,
    ctx: &Context,
    live: &Live,
    file: Rc<OpenFile>,
    out: &mut Vec<u8>,
) -> Reply {
    let snippet = live.snippet(false).into_bytes().into_boxed_slice();
    let etag = live.etag(&file.validators.etag);
    let validators = crate::http::conditional::Validators {
        etag,
        modified_secs: file.validators.modified_secs,
    };
    let preconditions = Preconditions {
        range: None,
        if_none_match: request.if_none_match,
        if_modified_since: None,
        if_range: None,
    };
    if decide(&preconditions, &validators, file.size) == FileAnswer::NotModified {
        HeadWriter::start(out, Status::NOT_MODIFIED, ctx.date)
            .header("ETag", &validators.etag)
            .header("Cache-Control", "no-cache")
            .header("Vary", "Sec-Fetch-Dest")
            .finish(ctx.common);
        return Reply {
            status: Status::NOT_MODIFIED,
            body_len: 0,
            file: None,
        };
    }
    let len = file.size + snippet.len() as u64;
    HeadWriter::start(out, Status::OK, ctx.date)
        .header("Content-Type", file.content_type)
        .content_length(len)
        .header("ETag", &validators.etag)
        .header("Cache-Control", "no-cache")
        .header("Vary", "Sec-Fetch-Dest")
        .finish(ctx.common);
    let file = if request.method == Method::Head {
        None
    } else if file.size == 0 {
        out.extend_from_slice(&snippet);
        None
    } else {
        Some(FileBody {
            remaining: file.size,
            file,
            offset: 0,
            tail: Some(snippet),
        })
    };
    Reply {
        status: Status::OK,
        body_len: len,
        file,
    }
}

/// Under `--live-reload`, a page that is not there (deleted while shown, or
/// not built yet) is a small HTML page with the live-reload script, so the
/// tab keeps listening and reloads when the file appears.
fn live_not_found(request: &Request, ctx: &Context, out: &mut Vec<u8>) -> Reply {
    let snippet = ctx.live.map(|live| live.snippet(false)).unwrap_or_default();
    let body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>404 Not Found</title>\
         <p>404 Not Found: no such file</p>{snippet}"
    );
    HeadWriter::start(out, Status::NOT_FOUND, ctx.date)
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Cache-Control", "no-cache")
        .content_length(body.len() as u64)
        .finish(ctx.common);
    if request.method != Method::Head {
        out.extend_from_slice(body.as_bytes());
    }
    Reply {
        status: Status::NOT_FOUND,
        body_len: body.len() as u64,
        file: None,
    }
}

/// Under `--live-reload`, every file is `no-cache`: a page reloaded after a
/// save would otherwise take its scripts, images and imported stylesheets
/// from the browser's cache (a reload revalidates only the page itself),
/// and show the old ones. An HTML file's answer depends on whether it is
/// fetched as a page (see [`is_document`]).
fn live_reload_headers<'a>(head: HeadWriter<'a>, file: &OpenFile) -> HeadWriter<'a> {
    let head = head.header("Cache-Control", "no-cache");
    if file.content_type.starts_with("text/html") {
        head.header("Vary", "Sec-Fetch-Dest")
    } else {
        head
    }
}

/// 200, 206, 304 or 416 for a regular file.
fn file_reply(
    request: &Request,
    ctx: &Context,
    path: &RequestPath,
    name: &[u8],
    file: Rc<OpenFile>,
    out: &mut Vec<u8>,
) -> Reply {
    if let Some(live) = ctx.live {
        if file.content_type.starts_with("text/html") && is_document(request) && !path.download {
            return injected_reply(request, ctx, live, file, out);
        }
    }
    let size = file.size;
    let validators = &file.validators;
    let preconditions = Preconditions {
        range: request.range,
        if_none_match: request.if_none_match,
        if_modified_since: request.if_modified_since,
        if_range: request.if_range,
    };
    let (status, start, len) = match decide(&preconditions, validators, size) {
        FileAnswer::Full => (Status::OK, 0, size),
        FileAnswer::Partial { start, end } => (Status::PARTIAL_CONTENT, start, end - start + 1),
        FileAnswer::NotModified => {
            let mut head = HeadWriter::start(out, Status::NOT_MODIFIED, ctx.date)
                .header("ETag", &validators.etag)
                .header("Last-Modified", &file.last_modified);
            if ctx.live.is_some() {
                head = live_reload_headers(head, &file);
            }
            head.finish(ctx.common);
            return Reply {
                status: Status::NOT_MODIFIED,
                body_len: 0,
                file: None,
            };
        }
        FileAnswer::Unsatisfiable => {
            let status = Status::RANGE_NOT_SATISFIABLE;
            let body_len = write_generated(
                out,
                status,
                "range outside the file",
                Extra::UnsatisfiedRange(size),
                ctx.date,
                ctx.common,
                request.method == Method::Head,
            );
            return Reply {
                status,
                body_len,
                file: None,
            };
        }
    };
    let mut head = HeadWriter::start(out, status, ctx.date)
        .header("Content-Type", file.content_type)
        .content_length(len)
        .header("Last-Modified", &file.last_modified)
        .header("ETag", &validators.etag)
        .header("Accept-Ranges", "bytes");
    if status == Status::PARTIAL_CONTENT {
        head = head.header_fmt(
            "Content-Range",
            format_args!("bytes {}-{}/{}", start, start + len - 1, size),
        );
    }
    if path.download {
        head = head.header("Content-Disposition", &mime::attachment(name));
    }
    if ctx.live.is_some() {
        head = live_reload_headers(head, &file);
    }
    head.finish(ctx.common);
    let file = (request.method != Method::Head && len > 0).then_some(FileBody {
        file,
        offset: start,
        remaining: len,
        tail: None,
    });
    Reply {
        status,
        body_len: len,
        file,
    }
}
