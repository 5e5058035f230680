//! `Range` headers on arbitrary text and sizes: resolving never panics, every
//! range answered lies inside the file, several parts come sorted and at
//! least the coalescing gap apart, and `multipart_len` is exactly what the
//! framing helpers write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::http::conditional::{decide, FileAnswer, Preconditions, Validators};
use rill::http::ranges::{self, ByteRange, COALESCE_GAP, MAX_RANGES};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let (head, rest) = data.split_at(9);
    let mut size = u64::from_le_bytes(head[1..9].try_into().unwrap());
    // Half the inputs get a small file, where ranges overlap and coalesce.
    if head[0] & 1 == 0 {
        size %= 4096;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // Most inputs get the unit for free, so the fuzzer spends its time on
    // range-sets rather than on finding `bytes=`.
    let header = if head[0] & 4 == 0 {
        format!("bytes={text}")
    } else {
        text.to_owned()
    };
    let validators = Validators {
        etag: "\"e\"".to_owned(),
        modified_secs: 1,
    };
    let pre = Preconditions {
        range: Some(&header),
        if_range: (head[0] & 2 != 0).then_some("\"e\""),
        ..Default::default()
    };
    // Long after the file's time: an If-Range date would hold.
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let parts: Vec<ByteRange> = match decide(&pre, &validators, size, now) {
        FileAnswer::Partial { start, end } => vec![ByteRange { start, end }],
        FileAnswer::Multipart(parts) => {
            assert!(parts.len() >= 2 && parts.len() <= MAX_RANGES);
            for pair in parts.windows(2) {
                assert!(pair[1].start > pair[0].end.saturating_add(COALESCE_GAP));
            }
            parts.into_vec()
        }
        FileAnswer::Full | FileAnswer::Unsatisfiable => return,
        FileAnswer::NotModified | FileAnswer::PreconditionFailed(_) => {
            unreachable!("no validators were sent")
        }
    };
    let mut total: u128 = 0;
    for range in &parts {
        assert!(
            range.start <= range.end && range.end < size,
            "{range:?} of {size}"
        );
        total += u128::from(range.length());
    }
    assert!(total <= u128::from(size));
    if parts.len() < 2 {
        return;
    }
    // Render the framing; the bytes of each range are counted, not written,
    // since the file may be huge.
    let boundary = ranges::boundary(size);
    let content_type = "text/plain; charset=utf-8";
    let mut framing = Vec::new();
    for (i, &range) in parts.iter().enumerate() {
        let before = framing.len();
        ranges::part_head(&boundary, content_type, range, size, i == 0, &mut framing);
        let written = (framing.len() - before) as u64;
        assert_eq!(
            written,
            ranges::part_head_len(&boundary, content_type, range, size, i == 0)
        );
    }
    let before = framing.len();
    ranges::closing(&boundary, &mut framing);
    assert_eq!(
        (framing.len() - before) as u64,
        ranges::closing_len(&boundary)
    );
    let expected = framing.len() as u128 + total;
    let len = ranges::multipart_len(&boundary, content_type, &parts, size);
    assert_eq!(u128::from(len), expected.min(u128::from(u64::MAX)));
});
