//! `multipart/byteranges`: the answer to a request for several ranges of a
//! file. Each part's head is rendered here by [`crate::http::ranges`]; its
//! bytes go out as a file range, with `sendfile` like any file body (or
//! straight from the file cache for a small file).

use super::{FileBody, Piece};
use crate::http::ranges::{self, ByteRange};
use crate::site::OpenFile;
use std::rc::Rc;

/// The parts still to send.
#[derive(Debug)]
pub struct Parts {
    file: Rc<OpenFile>,
    /// Sorted, disjoint, coalesced ([`ranges::resolve`]).
    ranges: Box<[ByteRange]>,
    boundary: String,
    /// The file's own type, on every part.
    content_type: &'static str,
    /// The next part to send.
    next: usize,
    closed: bool,
}

impl Parts {
    /// The parts of `file` for `ranges`, framed by `boundary`, each
    /// labelled `content_type` (the original's, for a precompressed
    /// sibling).
    pub fn new(
        file: Rc<OpenFile>,
        content_type: &'static str,
        ranges: Box<[ByteRange]>,
        boundary: String,
    ) -> Parts {
        Parts {
            content_type,
            file,
            ranges,
            boundary,
            next: 0,
            closed: false,
        }
    }

    /// The answer's `Content-Type`, naming the boundary.
    pub fn content_type(&self) -> String {
        ranges::content_type(&self.boundary)
    }

    /// The body's exact length, for `Content-Length`.
    pub fn body_len(&self) -> u64 {
        ranges::multipart_len(
            &self.boundary,
            self.content_type,
            &self.ranges,
            self.file.size,
        )
    }

    /// The next part's head and range, or the closing delimiter.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Piece {
        let Some(&range) = self.ranges.get(self.next) else {
            if self.closed {
                return Piece::Done;
            }
            ranges::closing(&self.boundary, out);
            self.closed = true;
            return Piece::Queued;
        };
        let first = self.next == 0;
        self.next += 1;
        ranges::part_head(
            &self.boundary,
            self.content_type,
            range,
            self.file.size,
            first,
            out,
        );
        // A cached small file's bytes are copied behind the part's head; a
        // range of a bigger one is sent from the file.
        let cached = self.file.bytes.as_deref().and_then(|bytes| {
            let start = usize::try_from(range.start).ok()?;
            let end = usize::try_from(range.end).ok()?;
            bytes.get(start..=end)
        });
        match cached {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Piece::Queued
            }
            None => Piece::File(FileBody::range(
                Rc::clone(&self.file),
                range.start,
                range.length(),
            )),
        }
    }
}
