//! The multipart parser on arbitrary bodies: fed in one piece and fed a byte
//! at a time, it must give the same parts and the same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::multipart::parse_all;

fuzz_target!(|data: &[u8]| {
    let boundary = "fuzz";
    let whole = parse_all(boundary, data, &[data.len().max(1)]);
    let bytewise = parse_all(boundary, data, &[1]);
    match (whole, bytewise) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("feed size changed the verdict: {a:?} vs {b:?}"),
    }
});
