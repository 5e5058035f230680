//! The re-framer on arbitrary bytes taken as a chunked or close-delimited
//! body, fed whole and in two pieces with a small output room: the same
//! verdict either way, and when both succeed, re-chunked output that decodes
//! to the same payload and trailers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::chunked::ChunkedDecoder;
use rill::http::reframe::{Incoming, Reframer};

/// Feeds `pieces` in turn, holding back what a call does not consume as the
/// proxy does, then ends the body. `None` when the re-framer refused it.
fn run(incoming: Incoming, pieces: &[&[u8]], room: usize) -> Option<Vec<u8>> {
    let mut reframer = Reframer::new(incoming, true, true);
    let mut out = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    for piece in pieces {
        held.extend_from_slice(piece);
        loop {
            let used = reframer.feed(&held, &mut out, room).ok()?;
            held.drain(..used);
            if used == 0 || reframer.is_done() {
                break;
            }
        }
        if reframer.is_done() {
            break;
        }
    }
    if !reframer.is_done() {
        reframer.end(&mut out).ok()?;
    }
    Some(out)
}

/// The payload and trailers of a chunked body rill wrote.
fn decoded(out: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut decoder = ChunkedDecoder::keeping_trailers();
    let mut payload = Vec::new();
    let mut rest = out;
    while !rest.is_empty() && !decoder.is_done() {
        let step = decoder.decode(rest).expect("rill's own chunked framing decodes");
        payload.extend_from_slice(step.data);
        rest = &rest[step.consumed..];
    }
    assert!(decoder.is_done(), "rill's chunked output is complete");
    (payload, decoder.trailers().to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let incoming = if selector & 1 == 0 {
        Incoming::Chunked
    } else {
        Incoming::UntilClose
    };
    let room = 24 + usize::from(selector >> 1) * 16;
    let cut = usize::from(selector).min(body.len());
    let whole = run(incoming, &[body], 1 << 20);
    let split = run(incoming, &[&body[..cut], &body[cut..]], room);
    assert_eq!(whole.is_some(), split.is_some(), "verdicts differ");
    if let (Some(whole), Some(split)) = (whole, split) {
        assert_eq!(decoded(&whole), decoded(&split));
    }
});
