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

use crate::body::archive::{ArchiveJob, Kind as ArchiveKind};
use crate::body::parts::Parts;
use crate::body::rows::{ListingJob, PageSpec};
pub use crate::body::FileBody;
use crate::body::{Pending, Source};
use crate::config::Config;
use crate::http::conditional::{decide, FileAnswer, Preconditions};
use crate::http::encoding::{self, Coding};
use crate::http::ranges;
use crate::http::request::{Method, Request};
use crate::http::response::{write_generated, CommonHeaders, Extra, HeadWriter, Status};
use crate::listing;
use crate::live::Live;
use crate::mime;
use crate::path::RequestPath;
use crate::site::{Found, Missing, OpenFile, Site};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

/// The methods rill answers to, for `Allow` and CORS preflights.
pub fn allowed_methods(config: &Config) -> &'static str {
    if config.uploads {
        "GET, HEAD, POST, PUT, OPTIONS"
    } else {
        "GET, HEAD, OPTIONS"
    }
}

/// What was queued for one request.
#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    /// Body bytes the answer carries (already in the buffer, or in `file`).
    pub body_len: u64,
    /// A file body to stream after the buffered bytes.
    pub file: Option<FileBody>,
    /// A body made while it is sent (a multi-range answer's parts).
    pub source: Option<Source>,
}

/// What [`respond`] did with a request.
// Boxing the common case would cost an allocation per request; an Answer
// is only ever moved once, out of `respond`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Answer {
    /// The head, and any body bytes, are queued.
    Reply(Reply),
    /// The head waits for work done in steps: the connection runs them.
    Pending(Box<Pending>),
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer::Reply(reply)
    }
}

/// Everything a request's answer depends on besides the request.
pub struct Context<'a> {
    pub site: &'a Site,
    pub config: &'a Config,
    /// The loop's clock.
    pub now: Instant,
    /// The current `Date` header value.
    pub date: &'a str,
    /// The wall clock at the second `date` names: a date validator is
    /// strong only once that second is past (see
    /// [`crate::http::conditional::decide`]).
    pub clock: SystemTime,
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
pub fn respond(request: &Request, ctx: &Context, out: &mut Vec<u8>) -> Answer {
    let head_only = request.method == Method::Head;
    let generated = |out: &mut Vec<u8>, status: Status, detail: &str, extra: Extra| Reply {
        status,
        body_len: write_generated(out, status, detail, extra, ctx.date, ctx.common, head_only),
        file: None,
        source: None,
    };
    let allowed = allowed_methods(ctx.config);
    match request.method {
        Method::Get | Method::Head => {}
        Method::Options => return options_reply(ctx, allowed, out).into(),
        Method::Post | Method::Put => {
            return generated(
                out,
                Status::METHOD_NOT_ALLOWED,
                "uploads are off (start rill with --uploads)",
                Extra::Allow(allowed),
            )
            .into()
        }
        Method::Other => {
            return generated(out, Status::NOT_IMPLEMENTED, "unknown method", Extra::None).into()
        }
        _ => {
            return generated(
                out,
                Status::METHOD_NOT_ALLOWED,
                "not a method for files",
                Extra::Allow(allowed),
            )
            .into()
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
        )
        .into();
    }
    let Ok(path) = RequestPath::parse_into(&request.target, ctx.path_buffer.take()) else {
        return generated(out, Status::NOT_FOUND, "no such file", Extra::None).into();
    };
    let answer = path_reply(request, ctx, &path, out);
    ctx.path_buffer.set(path.into_buffer());
    answer
}

/// A GET or HEAD for a valid path: a file, a directory's index or listing,
/// a redirect to the directory's URL, or why there is nothing.
fn path_reply(request: &Request, ctx: &Context, path: &RequestPath, out: &mut Vec<u8>) -> Answer {
    let head_only = request.method == Method::Head;
    let generated = |out: &mut Vec<u8>, status: Status, detail: &str, extra: Extra| Reply {
        status,
        body_len: write_generated(out, status, detail, extra, ctx.date, ctx.common, head_only),
        file: None,
        source: None,
    };
    if path.trailing_slash {
        if let Some(kind) = ArchiveKind::from_query(query_of(&request.target)) {
            let job = match ctx.site.find(path, ctx.now) {
                Ok(Found::Dir(dir)) => ArchiveJob::new(ctx.site, kind, &dir.relative),
                Ok(Found::File(_)) => Err(Missing::NotFound),
                Err(missing) => Err(missing),
            };
            return match job {
                Ok(job) => Answer::Pending(Box::new(Pending::Archive(job))),
                Err(missing) => missing_reply(missing, generated, out).into(),
            };
        }
    }
    let found = ctx.site.find(path, ctx.now).and_then(|found| match found {
        Found::Dir(dir) if path.trailing_slash => match ctx.site.index_of(&dir, ctx.now) {
            Err(Missing::NotFound) => Ok(Found::Dir(dir)),
            index => index,
        },
        // `/a.txt/` names a folder, and a file is none (nginx and lighttpd
        // answer 404 too); its relative links would resolve below it.
        Found::File(_) if path.trailing_slash => Err(Missing::NotFound),
        other => Ok(other),
    });
    match found {
        Ok(Found::File(file)) => {
            let name = match path.file_name() {
                Some(name) if !path.trailing_slash => name,
                _ => b"index.html",
            };
            file_reply(request, ctx, path, name, file, out).into()
        }
        Ok(Found::Dir(_)) if !path.trailing_slash => {
            let mut location = path.url(true);
            crate::path::push_query(&mut location, query_of(&request.target));
            generated(
                out,
                Status::MOVED_PERMANENTLY,
                &location,
                Extra::Location(&location),
            )
            .into()
        }
        Ok(Found::Dir(dir)) => match ctx.site.listing(&dir, ctx.now) {
            Ok(listing) => {
                let url_path = percent_encoding::percent_decode_str(&path.url(true))
                    .decode_utf8_lossy()
                    .into_owned();
                let query = query_of(&request.target);
                let format = listing::format_for(request.accept, query);
                let live_snippet = ctx
                    .live
                    .filter(|_| format == listing::Format::Html && is_document(request))
                    .map(|live| live.snippet(true));
                let spec = PageSpec {
                    relative: dir.relative.clone(),
                    url_path,
                    order: listing::Order::from_query(query),
                    format,
                    uploads: ctx.config.uploads,
                    live_snippet,
                };
                Answer::Pending(Box::new(Pending::Listing(ListingJob::new(listing, spec))))
            }
            Err(missing) => missing_reply(missing, generated, out).into(),
        },
        Err(Missing::NotFound) if ctx.live.is_some() && is_document(request) => {
            live_not_found(request, ctx, out).into()
        }
        Err(missing) => missing_reply(missing, generated, out).into(),
    }
}

/// The query of a request target (after `?`, before any `#`), or `""`.
fn query_of(target: &str) -> &str {
    let Some((_, query)) = target.split_once('?') else {
        return "";
    };
    query.split_once('#').map_or(query, |(query, _)| query)
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
                "Authorization, Content-Type, Range, If-Match, If-None-Match, If-Modified-Since, \
                 If-Unmodified-Since, If-Range, Accept",
            )
            .header("Access-Control-Max-Age", "86400");
    }
    head.finish(ctx.common);
    Reply {
        status: Status::NO_CONTENT,
        body_len: 0,
        file: None,
        source: None,
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
/// `304`, or `412` when its own tag does not match `If-Match`) only, since
/// ranges of a body that is not the file's would mean nothing; an ETag of
/// its own (see [`Live::etag`]) and no `Last-Modified`, so the browser
/// revalidates by ETag; `no-cache`, so it always asks. The file still goes
/// out with `sendfile`, the snippet after it.
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
        if_match: request.if_match,
        if_unmodified_since: request.if_unmodified_since,
        if_none_match: request.if_none_match,
        ..Preconditions::default()
    };
    let answer = decide(&preconditions, &validators, file.size, ctx.clock);
    if let FileAnswer::PreconditionFailed(failed) = answer {
        let status = Status::PRECONDITION_FAILED;
        return refused_file(request, ctx, file.content_type, status, failed.0, None, out);
    }
    if answer == FileAnswer::NotModified {
        HeadWriter::start(out, Status::NOT_MODIFIED, ctx.date)
            .header("ETag", &validators.etag)
            .header("Cache-Control", "no-cache")
            .header("Vary", "Sec-Fetch-Dest")
            .finish(ctx.common);
        return Reply {
            status: Status::NOT_MODIFIED,
            body_len: 0,
            file: None,
            source: None,
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
            checksum: None,
        })
    };
    Reply {
        status: Status::OK,
        body_len: len,
        file,
        source: None,
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
        source: None,
    }
}

/// Under `--live-reload`, every file is `no-cache`: a page reloaded after a
/// save would otherwise take its scripts, images and imported stylesheets
/// from the browser's cache (a reload revalidates only the page itself),
/// and show the old ones.
fn live_reload_headers(head: HeadWriter<'_>) -> HeadWriter<'_> {
    head.header("Cache-Control", "no-cache")
}

/// The `Vary` an answer for a file of `content_type` needs, if any:
/// `Accept-Encoding` for a type that may have a precompressed sibling,
/// `Sec-Fetch-Dest` for HTML under `--live-reload` (whose answer depends on
/// whether it is fetched as a page, see [`is_document`]); one header.
fn vary(content_type: &str, live: bool) -> Option<&'static str> {
    let encodings = encoding::is_compressible(content_type);
    let page = live && content_type.starts_with("text/html");
    match (encodings, page) {
        (true, true) => Some("Accept-Encoding, Sec-Fetch-Dest"),
        (true, false) => Some("Accept-Encoding"),
        (false, true) => Some("Sec-Fetch-Dest"),
        (false, false) => None,
    }
}

/// 200, 206, 304, 412 or 416 for a regular file.
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
    // A precompressed sibling keeps the original's type, and every answer
    // for a type that may have one says it varies by Accept-Encoding.
    let content_type = file.content_type;
    let (file, coding) = match precompressed(request, ctx, path, &file) {
        Some((sibling, coding)) => (sibling, Some(coding)),
        None => (file, None),
    };
    let size = file.size;
    let validators = &file.validators;
    let preconditions = Preconditions {
        range: request.range,
        if_match: request.if_match,
        if_unmodified_since: request.if_unmodified_since,
        if_none_match: request.if_none_match,
        if_modified_since: request.if_modified_since,
        if_range: request.if_range,
    };
    let (status, start, len, parts) = match decide(&preconditions, validators, size, ctx.clock) {
        FileAnswer::Full => (Status::OK, 0, size, None),
        FileAnswer::Partial { start, end } => {
            (Status::PARTIAL_CONTENT, start, end - start + 1, None)
        }
        FileAnswer::Multipart(ranges) => {
            let boundary = ranges::boundary(ranges::boundary_seed(&validators.etag));
            let parts = Parts::new(Rc::clone(&file), content_type, ranges, boundary);
            (Status::PARTIAL_CONTENT, 0, parts.body_len(), Some(parts))
        }
        FileAnswer::NotModified => {
            let mut head = HeadWriter::start(out, Status::NOT_MODIFIED, ctx.date)
                .header("ETag", &validators.etag)
                .header("Last-Modified", &file.last_modified);
            if let Some(vary) = vary(content_type, ctx.live.is_some()) {
                head = head.header("Vary", vary);
            }
            if ctx.live.is_some() {
                head = live_reload_headers(head);
            }
            head.finish(ctx.common);
            return Reply {
                status: Status::NOT_MODIFIED,
                body_len: 0,
                file: None,
                source: None,
            };
        }
        FileAnswer::PreconditionFailed(failed) => {
            return refused_file(
                request,
                ctx,
                content_type,
                Status::PRECONDITION_FAILED,
                failed.0,
                None,
                out,
            )
        }
        FileAnswer::Unsatisfiable => {
            return refused_file(
                request,
                ctx,
                content_type,
                Status::RANGE_NOT_SATISFIABLE,
                "range outside the file",
                Some(size),
                out,
            )
        }
    };
    let mut head = HeadWriter::start(out, status, ctx.date);
    head = match &parts {
        Some(parts) => head.header("Content-Type", &parts.content_type()),
        None => head.header("Content-Type", content_type),
    };
    head = head
        .content_length(len)
        .header("Last-Modified", &file.last_modified)
        .header("ETag", &validators.etag)
        .header("Accept-Ranges", "bytes");
    if let Some(coding) = coding {
        head = head.header("Content-Encoding", coding.token());
    }
    if let Some(vary) = vary(content_type, ctx.live.is_some()) {
        head = head.header("Vary", vary);
    }
    if status == Status::PARTIAL_CONTENT && parts.is_none() {
        head = head.header_fmt(
            "Content-Range",
            format_args!("bytes {}-{}/{}", start, start + len - 1, size),
        );
    }
    if path.download {
        head = head.header("Content-Disposition", &mime::attachment(name));
    }
    if ctx.live.is_some() {
        head = live_reload_headers(head);
    }
    head.finish(ctx.common);
    let head_only = request.method == Method::Head;
    if let Some(parts) = parts {
        return Reply {
            status,
            body_len: len,
            file: None,
            source: (!head_only).then(|| Source::Parts(Box::new(parts))),
        };
    }
    let file = (!head_only && len > 0).then_some(FileBody {
        file,
        offset: start,
        remaining: len,
        tail: None,
        checksum: None,
    });
    Reply {
        status,
        body_len: len,
        file,
        source: None,
    }
}

/// A 412 or 416 for a file: a one-line text body, with `Content-Range:
/// bytes */SIZE` for a 416, and the `Vary` the file's answers carry, since
/// which coding is sent decides both whether a tag matches and whether a
/// range fits.
fn refused_file(
    request: &Request,
    ctx: &Context,
    content_type: &str,
    status: Status,
    detail: &str,
    unsatisfied_size: Option<u64>,
    out: &mut Vec<u8>,
) -> Reply {
    let head_only = request.method == Method::Head;
    let extra = unsatisfied_size.map_or(Extra::None, Extra::UnsatisfiedRange);
    let Some(vary) = vary(content_type, ctx.live.is_some()) else {
        let body_len = write_generated(out, status, detail, extra, ctx.date, ctx.common, head_only);
        return Reply {
            status,
            body_len,
            file: None,
            source: None,
        };
    };
    let body = format!("{} {}: {detail}\n", status.code(), status.reason());
    let mut head = HeadWriter::start(out, status, ctx.date)
        .header("Content-Type", "text/plain; charset=utf-8")
        .content_length(body.len() as u64);
    if let Some(size) = unsatisfied_size {
        head = head.header_fmt("Content-Range", format_args!("bytes */{size}"));
    }
    head.header("Vary", vary).finish(ctx.common);
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    Reply {
        status,
        body_len: body.len() as u64,
        file: None,
        source: None,
    }
}

/// The precompressed sibling (`file.br`, `file.gz`) to send instead of
/// `file`, if the type is compressible text, the client accepts that
/// coding (by its q-values), and the sibling is not older than the file —
/// a stale `.gz` left from an earlier build would serve old bytes. At most
/// one lookup per coding the client accepts; none without Accept-Encoding.
fn precompressed(
    request: &Request,
    ctx: &Context,
    path: &RequestPath,
    file: &OpenFile,
) -> Option<(Rc<OpenFile>, Coding)> {
    let accept = request.accept_encoding?;
    if !encoding::is_compressible(file.content_type) {
        return None;
    }
    // Several ranges of an encoded body would be a multipart body under a
    // Content-Encoding that describes none of it: a client decoding it
    // fails. Those get the file as it is.
    if request.range.is_some_and(|range| range.contains(',')) {
        return None;
    }
    let relative = if path.trailing_slash {
        path.relative().join("index.html")
    } else {
        path.relative().to_path_buf()
    };
    let mut available = vec![Coding::Brotli, Coding::Gzip];
    while let Some(coding) = encoding::choose(Some(accept), &available) {
        if let Some(sibling) = ctx.site.sibling(file, &relative, coding.suffix(), ctx.now) {
            if sibling.modified >= file.modified {
                return Some((sibling, coding));
            }
        }
        available.retain(|&other| other != coding);
    }
    None
}
