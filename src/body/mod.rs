//! What follows an answer's head when it is more than the bytes already in
//! the output buffer.
//!
//! - A [`FileBody`]: one range of one file, sent with `sendfile` (or copied
//!   where the kernel refuses, or where a checksum must see the bytes).
//! - A [`Source`]: a body made piece by piece while it is sent — the rows of
//!   a big listing ([`rows`]), the members of a folder archive
//!   ([`archive`]), the parts of a multi-range answer ([`parts`]). The
//!   connection asks it for the next [`Piece`] whenever the previous one is
//!   out, so a source holds only its cursor, never the whole body.
//! - A [`Pending`] answer: one whose head cannot be written yet because it
//!   depends on work done in bounded steps (a folder scanned for its listing
//!   or for an archive's `Content-Length`). The connection runs one step per
//!   turn of the loop and yields in between, so a folder of 100 000 entries
//!   never holds the loop for the whole scan.
//!
//! Nothing here touches a socket: a source appends bytes to a buffer or
//! names a file range; `conn::http` moves them.

pub mod archive;
pub mod parts;
pub mod rows;

use crate::http::response::{CommonHeaders, Status};
use crate::site::{Missing, OpenFile, Site};
use std::rc::Rc;
use std::time::Instant;

/// A range of a file still to be sent after the bytes queued before it.
#[derive(Debug)]
pub struct FileBody {
    pub file: Rc<OpenFile>,
    /// Where the next byte comes from in the file.
    pub offset: u64,
    /// How many bytes are still to go.
    pub remaining: u64,
    /// Bytes sent after the file's (the live-reload snippet).
    pub tail: Option<Box<[u8]>>,
    /// A CRC-32 of the bytes as they go out (a zip member's): such a body
    /// is copied, never `sendfile`d, since the checksum must see it.
    pub checksum: Option<crc32fast::Hasher>,
}

impl FileBody {
    /// The range `offset .. offset + len` of `file`.
    pub fn range(file: Rc<OpenFile>, offset: u64, len: u64) -> FileBody {
        FileBody {
            file,
            offset,
            remaining: len,
            tail: None,
            checksum: None,
        }
    }

    /// The body bytes still to go: the file's and its tail's.
    pub fn unsent(&self) -> u64 {
        self.remaining + self.tail.as_ref().map_or(0, |tail| tail.len() as u64)
    }
}

/// A body produced while it is sent.
#[derive(Debug)]
pub enum Source {
    /// A listing's rows, from a shared snapshot of the folder.
    Rows(Box<rows::Rows>),
    /// A folder as a tar or zip archive.
    Archive(Box<archive::ArchiveStream>),
    /// `multipart/byteranges`: each part's head, then its range.
    Parts(Box<parts::Parts>),
}

/// What a source produced when asked for more.
#[derive(Debug)]
pub enum Piece {
    /// It appended bytes to the buffer: send them, then ask again.
    Queued,
    /// Send the bytes queued so far, then this file range; then hand the
    /// range back with [`Source::file_done`] and ask again.
    File(FileBody),
    /// The body is complete.
    Done,
    /// The body cannot be completed (a member changed or vanished while
    /// archived): the connection must close, leaving the answer visibly
    /// short of its length.
    Failed(&'static str),
}

impl Source {
    /// The next piece of the body; bytes go into `out` (about
    /// [`PIECE_BYTES`] at a time).
    pub fn next(&mut self, site: &Site, out: &mut Vec<u8>) -> Piece {
        match self {
            Source::Rows(rows) => rows.next(out),
            Source::Archive(archive) => archive.next(site, out),
            Source::Parts(parts) => parts.next(out),
        }
    }

    /// The file range the last [`Piece::File`] named has been sent.
    pub fn file_done(&mut self, body: FileBody) -> Result<(), &'static str> {
        match self {
            Source::Archive(archive) => archive.file_done(body),
            Source::Rows(_) | Source::Parts(_) => Ok(()),
        }
    }
}

/// About how many bytes a source appends per [`Source::next`]: enough for
/// one well-filled write, small enough that a connection's buffer stays
/// small whatever the body's size.
pub const PIECE_BYTES: usize = 32 * 1024;

/// Folder entries read per step of a scan: about a millisecond of `getdents`
/// and `statx` on a warm cache, so other connections wait at most that long.
pub const SCAN_STEP: usize = 1024;

/// What a pending answer's steps need from the loop.
pub struct StepContext<'a> {
    pub site: &'a Site,
    pub now: Instant,
    /// The `Date` header value.
    pub date: &'a str,
    pub common: CommonHeaders,
    /// A `HEAD` request: the head only.
    pub head_only: bool,
}

/// An answer whose head waits for work done in steps.
#[derive(Debug)]
pub enum Pending {
    /// A folder's listing, waiting for its snapshot.
    Listing(rows::ListingJob),
    /// A folder archive, waiting for the walk that sizes it.
    Archive(archive::ArchiveJob),
}

/// How far a pending answer got in one step.
#[derive(Debug)]
pub enum Prepared {
    /// More steps are needed.
    NotYet,
    /// The head (and perhaps the whole body) is queued.
    Ready(Ready),
    /// The work failed before anything was queued.
    Failed(Missing),
    /// The server is too busy with such work: `503`, try again later.
    Busy(&'static str),
}

/// A pending answer whose head is now queued.
#[derive(Debug)]
pub struct Ready {
    pub status: Status,
    /// The body's length, for the access log (a chunked body's is counted
    /// as it goes).
    pub body_len: u64,
    /// The rest of the body, when not all of it is queued.
    pub source: Option<Source>,
    /// The body is delimited by closing the connection (an HTTP/1.0
    /// client of a streamed listing).
    pub close_after: bool,
}

impl Pending {
    /// Runs one bounded step; when the work is done, queues the head.
    pub fn step(&mut self, ctx: &StepContext, out: &mut Vec<u8>) -> Prepared {
        match self {
            Pending::Listing(job) => job.step(ctx, out),
            Pending::Archive(job) => job.step(ctx, out),
        }
    }
}
