//! A folder as one download: a tar or zip archive streamed member by member.

use super::{FileBody, Piece, Prepared, StepContext};
use crate::site::Site;

/// An archive being sent.
#[derive(Debug)]
pub struct ArchiveStream {}

impl ArchiveStream {
    /// The next member's header and body.
    pub fn next(&mut self, _site: &Site, _out: &mut Vec<u8>) -> Piece {
        Piece::Done
    }

    /// A member's body has been sent.
    pub fn file_done(&mut self, _body: FileBody) -> Result<(), &'static str> {
        Ok(())
    }
}

/// An archive waiting for the walk that sizes it.
#[derive(Debug)]
pub struct ArchiveJob {}

impl ArchiveJob {
    /// One step of the walk.
    pub fn step(&mut self, _ctx: &StepContext, _out: &mut Vec<u8>) -> Prepared {
        Prepared::NotYet
    }
}
