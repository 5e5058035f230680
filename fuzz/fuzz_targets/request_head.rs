//! The request-head parser on arbitrary bytes: it must never panic, never
//! claim more bytes than it was given, and accept only what it can re-parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::request::{parse_head, Parsed, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(Parsed::Complete(request, used)) => {
            assert!(used <= data.len() && used <= MAX_HEAD_BYTES);
            assert!(request.target.starts_with('/') || request.target == "*" || !request.target.is_empty());
            // The same head alone parses to the same request.
            assert_eq!(parse_head(&data[..used]), Ok(Parsed::Complete(request, used)));
        }
        Ok(Parsed::Partial) | Err(_) => {}
    }
});
