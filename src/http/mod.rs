//! The sans-IO HTTP/1.1 core: bytes in, decisions and bytes out. Nothing in
//! here knows about sockets, files or the loop, so all of it is unit-tested and
//! fuzzed on byte slices.

pub mod chunked;
pub mod conditional;
pub mod encoding;
pub mod forward;
pub mod multipart;
pub mod ranges;
pub mod reframe;
pub mod relay;
pub mod request;
pub mod response;
pub mod websocket;
