//! The chunked decoder on arbitrary bytes, whole and split in two: the same
//! verdict and payload either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::chunked::{decode_all, ChunkedDecoder};

fuzz_target!(|data: &[u8]| {
    let whole = decode_all(data);
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let mut decoder = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    let mut failed = false;
    for piece in [&data[..split], &data[split..]] {
        held.extend_from_slice(piece);
        loop {
            match decoder.decode(&held) {
                Ok(decoded) => {
                    payload.extend_from_slice(decoded.data);
                    let used = decoded.consumed;
                    held.drain(..used);
                    if used == 0 || held.is_empty() || decoder.is_done() {
                        break;
                    }
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed || decoder.is_done() {
            break;
        }
    }
    match whole {
        Ok((expected, _)) => {
            assert!(!failed && decoder.is_done());
            assert_eq!(payload, expected);
        }
        Err(_) => assert!(failed || !decoder.is_done()),
    }
});
