//! The chunked decoder on arbitrary bytes, whole and split in two: the same
//! verdict, payload and kept trailers either way, and a decoder that keeps
//! trailers agrees with one that does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::chunked::{decode_all, ChunkedDecoder};

/// Feeds `pieces` in turn, holding back what a call does not consume as a
/// connection would. `None` when the decoder refused the input.
fn feed(decoder: &mut ChunkedDecoder, pieces: &[&[u8]]) -> Option<Vec<u8>> {
    let mut payload = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    for piece in pieces {
        held.extend_from_slice(piece);
        loop {
            let decoded = decoder.decode(&held).ok()?;
            payload.extend_from_slice(decoded.data);
            let used = decoded.consumed;
            held.drain(..used);
            if used == 0 || held.is_empty() || decoder.is_done() {
                break;
            }
        }
        if decoder.is_done() {
            break;
        }
    }
    Some(payload)
}

fuzz_target!(|data: &[u8]| {
    let whole = decode_all(data);
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let mut decoder = ChunkedDecoder::keeping_trailers();
    let payload = feed(&mut decoder, &[&data[..split], &data[split..]]);
    let mut at_once = ChunkedDecoder::keeping_trailers();
    let at_once_payload = feed(&mut at_once, &[data]);
    match whole {
        Ok((expected, used)) => {
            assert!(decoder.is_done() && at_once.is_done());
            assert_eq!(payload.as_deref(), Some(expected.as_slice()));
            assert_eq!(at_once_payload, payload);
            assert_eq!(decoder.trailers(), at_once.trailers());
            // Kept trailers are whole field lines from the input, before the
            // empty line that ends the body.
            let trailers = decoder.trailers();
            assert!(trailers.is_empty() || trailers.ends_with(b"\r\n"));
            assert!(data[..used].ends_with(&[trailers, b"\r\n"].concat()));
        }
        Err(_) => {
            assert!(payload.is_none() || !decoder.is_done());
            assert!(at_once_payload.is_none() || !at_once.is_done());
        }
    }
});
