//! The request-head parser on arbitrary bytes: it must never panic, never
//! claim more bytes than it was given, and accept only what it can re-parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::request::{header_slots, parse_head, Parsed, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut slots = header_slots();
    match parse_head(data, &mut slots) {
        Ok(Parsed::Complete(request, used)) => {
            assert!(used <= data.len() && used <= MAX_HEAD_BYTES);
            assert!(request.target.starts_with('/') || request.target == "*" || !request.target.is_empty());
            // The same head alone parses to the same request.
            let mut alone = header_slots();
            assert_eq!(parse_head(&data[..used], &mut alone), Ok(Parsed::Complete(request, used)));
        }
        Ok(Parsed::Partial) | Err(_) => {}
    }
});
