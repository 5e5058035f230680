//! `multipart/byteranges`: the answer to a request for several ranges of a
//! file, each part's head rendered here and its bytes sent with `sendfile`.

use super::{FileBody, Piece};

/// The parts still to send.
#[derive(Debug)]
pub struct Parts {}

impl Parts {
    /// The next part's head and range, or the closing boundary.
    pub fn next(&mut self, _out: &mut Vec<u8>) -> Piece {
        let _ = FileBody::range;
        Piece::Done
    }
}
