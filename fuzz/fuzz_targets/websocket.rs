//! The WebSocket frame decoder on arbitrary bytes, whole and in arbitrary
//! pieces (and one byte at a time): the same messages and the same violation
//! either way, `Ok(None)` only with the input used up, and nothing out of
//! bounds in what it lends out. The same bytes go to the handshake check,
//! which must only ever answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::websocket::{check_handshake, valid_close_code, Decoder, Message, Violation};

/// A message with its own bytes, to compare across runs.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// Feeds `pieces` in turn as a connection would. The messages and, if one
/// came, the violation.
fn feed(max: usize, pieces: &[&[u8]]) -> (Vec<Owned>, Option<Violation>) {
    let mut decoder = Decoder::new(max);
    let mut messages = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        loop {
            let (used, result) = decoder.decode(rest);
            assert!(used <= rest.len());
            let owned = match result {
                Ok(None) => {
                    assert_eq!(used, rest.len(), "Ok(None) left input unconsumed");
                    break;
                }
                Err(violation) => {
                    assert!(matches!(violation.code, 1002 | 1007 | 1009));
                    // It stays failed.
                    assert_eq!(decoder.decode(b"\x81\x80\0\0\0\0"), (0, Err(violation)));
                    return (messages, Some(violation));
                }
                Ok(Some(Message::Text(text))) => {
                    assert!(text.len() <= max);
                    Owned::Text(text.to_owned())
                }
                Ok(Some(Message::Binary(data))) => {
                    assert!(data.len() <= max);
                    Owned::Binary(data.to_vec())
                }
                Ok(Some(Message::Ping(data))) => {
                    assert!(data.len() <= 125);
                    Owned::Ping(data.to_vec())
                }
                Ok(Some(Message::Pong(data))) => {
                    assert!(data.len() <= 125);
                    Owned::Pong(data.to_vec())
                }
                Ok(Some(Message::Close { code, reason })) => {
                    assert!(code.is_none_or(valid_close_code));
                    assert!(reason.len() <= 123 && (code.is_some() || reason.is_empty()));
                    Owned::Close(code, reason.to_owned())
                }
            };
            messages.push(owned);
            rest = &rest[used..];
        }
    }
    (messages, None)
}

fuzz_target!(|data: &[u8]| {
    let _ = check_handshake(data);
    let [limit, seed, input @ ..] = data else {
        return;
    };
    let max = [0, 1, 16, 125, 126, 300, 4096, 1 << 20][usize::from(limit % 8)];
    let whole = feed(max, &[input]);

    // Pieces of 1 to 64 bytes, from a xorshift seeded by the second byte.
    let mut state = u32::from(*seed) | 0x100;
    let mut pieces = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = (state % 64 + 1) as usize;
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    assert_eq!(feed(max, &pieces), whole);
    if input.len() <= 4096 {
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed(max, &bytes), whole);
    }
});
