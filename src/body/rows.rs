//! A folder's listing as an answer: HTML for people, JSON for scripts, its
//! rows streamed from the folder's shared [`Snapshot`].
//!
//! A [`ListingJob`] waits for the snapshot (stepping the scan it shares with
//! other requests), then either renders a small folder whole, with a
//! `Content-Length`, or starts [`Rows`], which renders about
//! [`PIECE_BYTES`] of rows at a time into the connection's buffer as it
//! drains — chunked for HTTP/1.1, delimited by the close for HTTP/1.0. So
//! a listing's memory is one snapshot per folder plus one buffer per reader,
//! however many read it.

use super::{Piece, Prepared, Ready, Source, StepContext, PIECE_BYTES, SCAN_STEP};
use crate::http::chunked::LAST_CHUNK;
use crate::http::response::{HeadWriter, Status};
use crate::listing::{self, Format, Order, PageInfo};
use crate::site::Missing;
use crate::snapshot::{Listing, ScanFailed, Snapshot};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

/// A folder with at most this many entries is rendered whole and sent with
/// a `Content-Length` (about 40 KiB of HTML); a bigger one is streamed.
pub const INLINE_ENTRIES: usize = 256;

/// Comparisons per step of a listing's sort: natural order costs about
/// 100 ns each, so a step stays near a millisecond.
const SORT_STEP: usize = 8192;

/// What the page around the rows says, fixed when the request came.
#[derive(Debug, Default)]
pub struct PageSpec {
    /// The folder, relative to ROOT.
    pub relative: PathBuf,
    /// Its decoded URL path, starting and ending with `/` (the title).
    pub url_path: String,
    pub order: Order,
    pub format: Format,
    /// Show the upload form.
    pub uploads: bool,
    /// Appended after the page (`--live-reload`).
    pub live_snippet: Option<String>,
}

/// A listing waiting for its folder's snapshot.
#[derive(Debug)]
pub struct ListingJob {
    listing: Listing,
    spec: PageSpec,
}

impl ListingJob {
    /// A listing of the folder `listing` comes from.
    pub fn new(listing: Listing, spec: PageSpec) -> ListingJob {
        ListingJob { listing, spec }
    }

    /// One step of the scan, if it still runs; then the head, and the whole
    /// page when it is small.
    pub fn step(&mut self, ctx: &StepContext, out: &mut Vec<u8>) -> Prepared {
        let snapshot = match &self.listing {
            Listing::Ready(snapshot) => Rc::clone(snapshot),
            Listing::Scanning(scan) => match scan.borrow_mut().step(ctx.site, SCAN_STEP) {
                None => return Prepared::NotYet,
                Some(Err(failed)) => return Prepared::Failed(missing(failed)),
                Some(Ok(snapshot)) => {
                    ctx.site.scanned(&self.spec.relative, scan, &snapshot);
                    snapshot
                }
            },
        };
        // Sorting a huge folder takes many steps too; the snapshot keeps
        // the sort (and its result) for every request that needs it.
        let Some(sorted) = snapshot.sorted(self.spec.order, SORT_STEP) else {
            self.listing = Listing::Ready(snapshot);
            return Prepared::NotYet;
        };
        // The job is done after this step: its page goes to the rows.
        let spec = std::mem::take(&mut self.spec);
        let mut rows = Rows {
            snapshot,
            sorted,
            next: 0,
            stage: Stage::Top,
            spec,
            chunked: false,
        };
        let content_type = match rows.spec.format {
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        };
        if rows.snapshot.len() <= INLINE_ENTRIES {
            let mut body = Vec::with_capacity(1024 + rows.snapshot.len() * 200);
            while rows.render(&mut body, usize::MAX) {}
            HeadWriter::start(out, Status::OK, ctx.date)
                .header("Content-Type", content_type)
                .header("Cache-Control", "no-cache")
                .header("Vary", "Accept")
                .content_length(body.len() as u64)
                .finish(ctx.common);
            if !ctx.head_only {
                out.extend_from_slice(&body);
            }
            return Prepared::Ready(Ready {
                status: Status::OK,
                body_len: body.len() as u64,
                source: None,
                close_after: false,
            });
        }
        // HTTP/1.0 has no chunked coding: the close ends the body.
        rows.chunked = !ctx.common.http10;
        let mut common = ctx.common;
        let mut head = HeadWriter::start(out, Status::OK, ctx.date)
            .header("Content-Type", content_type)
            .header("Cache-Control", "no-cache")
            .header("Vary", "Accept");
        if rows.chunked {
            head = head.header("Transfer-Encoding", "chunked");
        } else {
            common.keep_alive = false;
        }
        head.finish(common);
        Prepared::Ready(Ready {
            status: Status::OK,
            body_len: 0,
            close_after: !rows.chunked,
            source: (!ctx.head_only).then(|| Source::Rows(Box::new(rows))),
        })
    }
}

fn missing(failed: ScanFailed) -> Missing {
    match failed {
        ScanFailed::Forbidden => Missing::Forbidden,
        ScanFailed::Io => Missing::Io(io::Error::other("the folder could not be read")),
    }
}

/// Where [`Rows`] is in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Top,
    Rows,
    Bottom,
    Done,
}

/// A listing's body, rendered piece by piece from the snapshot.
#[derive(Debug)]
pub struct Rows {
    snapshot: Rc<Snapshot>,
    /// The snapshot's entries in the order asked for.
    sorted: Rc<[u32]>,
    /// The next row to render (an index into `sorted`).
    next: usize,
    stage: Stage,
    spec: PageSpec,
    /// Frame each piece as a chunk.
    chunked: bool,
}

impl Rows {
    /// The next piece of the body, framed as one chunk when chunked.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Piece {
        if self.stage == Stage::Done {
            return Piece::Done;
        }
        if !self.chunked {
            self.render(out, PIECE_BYTES);
            return Piece::Queued;
        }
        // The size line is written before the rows, as six hex digits
        // (leading zeros are allowed), and filled in after them: the rows
        // go straight into the buffer, with no copy.
        let size_at = out.len();
        out.extend_from_slice(b"000000\r\n");
        let data_at = out.len();
        let more = self.render(out, PIECE_BYTES);
        let len = out.len() - data_at;
        if len == 0 {
            out.truncate(size_at);
        } else {
            let size = format!("{:06x}", len.min(0xff_ffff));
            out[size_at..size_at + 6].copy_from_slice(size.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !more {
            out.extend_from_slice(LAST_CHUNK);
        }
        Piece::Queued
    }

    /// Renders at least one part of the page and then rows until about
    /// `limit` bytes were added; `false` once the page is complete.
    fn render(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        let start = out.len();
        let info = PageInfo {
            url_path: &self.spec.url_path,
            order: self.spec.order,
            uploads: self.spec.uploads,
            entries: self.snapshot.len(),
        };
        loop {
            match self.stage {
                Stage::Top => {
                    match self.spec.format {
                        Format::Html => listing::html_top(&info, out),
                        Format::Json => listing::json_top(out),
                    }
                    self.stage = Stage::Rows;
                }
                Stage::Rows => {
                    while out.len() - start < limit {
                        let Some(&index) = self.sorted.get(self.next) else {
                            self.stage = Stage::Bottom;
                            break;
                        };
                        let entry = self.snapshot.entry(index);
                        match self.spec.format {
                            Format::Html => listing::html_row(&entry, out),
                            Format::Json => {
                                listing::json_row(&entry, self.next == 0, &self.spec.url_path, out)
                            }
                        }
                        self.next += 1;
                    }
                    if self.stage == Stage::Rows {
                        return true;
                    }
                }
                Stage::Bottom => {
                    match self.spec.format {
                        Format::Html => {
                            listing::html_bottom(&info, out);
                            if let Some(snippet) = &self.spec.live_snippet {
                                out.extend_from_slice(snippet.as_bytes());
                            }
                        }
                        Format::Json => listing::json_bottom(out),
                    }
                    self.stage = Stage::Done;
                    return false;
                }
                Stage::Done => return false,
            }
        }
    }
}
