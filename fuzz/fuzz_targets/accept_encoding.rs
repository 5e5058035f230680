//! `Accept-Encoding` on arbitrary text: choosing never panics and never picks
//! a coding that was not offered, or one the header gives `q=0`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::encoding::{choose, is_compressible, parse_qvalue, Coding};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(header) = std::str::from_utf8(rest) else {
        return;
    };
    let offer: &[Coding] = match which % 4 {
        0 => &[],
        1 => &[Coding::Gzip],
        2 => &[Coding::Brotli],
        _ => &[Coding::Gzip, Coding::Brotli],
    };
    let _ = is_compressible(header);
    if let Some(q) = parse_qvalue(header) {
        assert!(q <= 1000);
    }
    let Some(chosen) = choose(Some(header), offer) else {
        return;
    };
    assert!(offer.contains(&chosen));
    // A coding is chosen only when offered and acceptable: adding `q=0` for
    // it by name (x-gzip shares gzip's weight) and for `*` must undo that.
    let refused = format!("{header}, {};q=0, *;q=0", chosen.token());
    assert_ne!(choose(Some(&refused), offer), Some(chosen), "{refused:?}");
});
