//! The `Range` header in all its forms (RFC 9110 §14.1–14.2), resolved
//! against a file's size, and the `multipart/byteranges` framing (RFC 9110
//! §14.6) for an answer with several parts — no file is read here.
//!
//! A request may list any number of ranges, in any order, overlapping or not.
//! Answering that literally is the classic range amplification attack
//! (CVE-2011-3192: `bytes=0-,0-,0-,...` made Apache send a file hundreds of
//! times over). RFC 9110 §14.2 lets a server ignore a `Range` with "more than
//! two overlapping ranges, or a set of many small ranges that are not listed
//! in ascending order", and §15.3.7.2 lets it coalesce ranges that overlap or
//! are separated by less than a part's overhead. rill does both:
//!
//! - more than [`MAX_RANGES`] ranges: the whole file (200);
//! - ranges that together ask for more bytes than the file has (which only
//!   overlapping ranges can): the whole file (200), nginx's rule — the whole
//!   file is then no more than the client asked for;
//! - otherwise the satisfiable ranges are sorted and those closer than
//!   [`COALESCE_GAP`] merged, so every part is at least that far from the
//!   next and the answer is never bigger than the file plus its part heads.
//!
//! The parts go out in ascending order, not in the order asked for (which
//! §15.3.7.2 recommends): once ranges are coalesced the request's order is
//! gone anyway, and ascending parts read the file forward, one `sendfile` per
//! part. A client frames the parts by their `Content-Range`, never by order.

use std::fmt::Write as _;

/// Most ranges one `Range` header may list; a request with more gets the
/// whole file. lighttpd's limit too (its `RMAX`): no real client comes near
/// it (browsers and download managers ask for one range, PDF viewers a few),
/// and it bounds the sorting and the part heads of one answer.
pub const MAX_RANGES: usize = 128;

/// Ranges separated by fewer bytes than this are sent as one part. 80 bytes
/// is about what a part head costs (`\r\n--rill-<16 hex>\r\nContent-Type:
/// ...\r\nContent-Range: bytes a-b/n\r\n\r\n` is 80–110 bytes with a short
/// type), so sending the gap is no dearer than a new part; it is also
/// lighttpd's threshold.
pub const COALESCE_GAP: u64 = 80;

/// Bytes `start..=end` of a file, both inclusive as in `Content-Range`.
/// Always non-empty: `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// How many bytes the range holds.
    pub fn length(self) -> u64 {
        self.end - self.start + 1
    }
}

/// A `Range` header resolved against a file's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Bad syntax, another unit, or a request refused by the rules above:
    /// answer as if there were no `Range` (200 with the whole file).
    Ignored,
    /// No range overlaps the file: 416.
    Unsatisfiable,
    /// One range (possibly several coalesced into one): a plain 206.
    Single(ByteRange),
    /// Two or more ranges, sorted and at least [`COALESCE_GAP`] bytes apart:
    /// 206 `multipart/byteranges`.
    Multiple(Box<[ByteRange]>),
}

/// One element of a range-set, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b`
    FromTo(u64, u64),
    /// `a-`
    From(u64),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// What a range-set says, before the file's size is known.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Invalid,
    TooMany,
    Specs(Vec<Spec>),
}

/// Resolves a `Range` header against a file of `size` bytes.
pub fn resolve(header: &str, size: u64) -> Resolved {
    let specs = match parse(header) {
        Parsed::Invalid | Parsed::TooMany => return Resolved::Ignored,
        Parsed::Specs(specs) => specs,
    };
    let mut ranges: Vec<ByteRange> = specs
        .into_iter()
        .filter_map(|spec| satisfiable(spec, size))
        .collect();
    match ranges.len() {
        0 => return Resolved::Unsatisfiable,
        1 => return Resolved::Single(ranges[0]),
        _ => {}
    }
    // u128: 128 ranges of up to u64::MAX bytes each cannot overflow it.
    let asked: u128 = ranges.iter().map(|r| u128::from(r.length())).sum();
    if asked > u128::from(size) {
        return Resolved::Ignored;
    }
    coalesce(&mut ranges);
    match ranges.as_slice() {
        [one] => Resolved::Single(*one),
        _ => Resolved::Multiple(ranges.into_boxed_slice()),
    }
}

/// Parses `bytes=<range-set>`. The unit is case-insensitive; the set is a
/// comma-separated list whose empty elements are skipped (RFC 9110 §5.6.1)
/// but which needs at least one range; whitespace around the elements and
/// around their `-` is tolerated. One bad element spoils the whole header.
fn parse(header: &str) -> Parsed {
    let Some((unit, set)) = header.split_once('=') else {
        return Parsed::Invalid;
    };
    if !ows_trim(unit).eq_ignore_ascii_case("bytes") {
        return Parsed::Invalid;
    }
    let mut specs = Vec::new();
    for element in set.split(',').map(ows_trim) {
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            // Stop here: whatever follows, the answer is the whole file.
            return Parsed::TooMany;
        }
        let Some((first, last)) = element.split_once('-') else {
            return Parsed::Invalid;
        };
        let (first, last) = (ows_trim(first), ows_trim(last));
        let spec = match (digits(first), digits(last)) {
            (None, Some(n)) if first.is_empty() => Spec::Suffix(n),
            (Some(a), None) if last.is_empty() => Spec::From(a),
            (Some(a), Some(b)) if a <= b => Spec::FromTo(a, b),
            _ => return Parsed::Invalid,
        };
        specs.push(spec);
    }
    if specs.is_empty() {
        return Parsed::Invalid;
    }
    Parsed::Specs(specs)
}

/// The part of the file a spec covers, if any (RFC 9110 §14.1.2: a range
/// starting at or past the end, or a zero-length suffix, is unsatisfiable).
fn satisfiable(spec: Spec, size: u64) -> Option<ByteRange> {
    let last = size.checked_sub(1)?;
    let (start, end) = match spec {
        Spec::Suffix(0) => return None,
        Spec::Suffix(n) => (size.saturating_sub(n), last),
        Spec::From(a) => (a, last),
        Spec::FromTo(a, b) => (a, b.min(last)),
    };
    (start <= last).then_some(ByteRange { start, end })
}

/// Sorts the ranges and merges those that overlap, touch, or lie fewer than
/// [`COALESCE_GAP`] bytes apart. Sorting first makes it O(n log n) whatever
/// order the client chose (lighttpd's pairwise merge is quadratic, so it
/// allows only 10 unsorted ranges).
fn coalesce(ranges: &mut Vec<ByteRange>) {
    ranges.sort_unstable();
    let mut merged = 0;
    for i in 1..ranges.len() {
        let next = ranges[i];
        let current = &mut ranges[merged];
        // gap = next.start - current.end - 1 < COALESCE_GAP, without overflow.
        if next.start <= current.end.saturating_add(COALESCE_GAP) {
            current.end = current.end.max(next.end);
        } else {
            merged += 1;
            ranges[merged] = next;
        }
    }
    ranges.truncate(merged + 1);
}

/// Strips optional whitespace (RFC 9110 §5.6.3: spaces and tabs).
fn ows_trim(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// A non-empty run of ASCII digits that fits a u64.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The boundary of a multipart answer: `rill-` and 16 hex digits mixed from
/// `seed` (the caller derives it from the file's ETag, so the same file gets
/// the same boundary and HEAD agrees with GET).
///
/// RFC 2046 §5.1.1 wants a boundary that occurs nowhere in the parts. A
/// client that reads the parts by their `Content-Range` lengths cannot be
/// misled at all; one that scans for the delimiter could be misled only by a
/// file that contains its own boundary, and since the seed changes whenever
/// the file is written (the ETag holds its mtime to the nanosecond), such a
/// file would have to contain a hash of its own modification time. The
/// mixing makes neighbouring seeds give unrelated-looking boundaries.
pub fn boundary(seed: u64) -> String {
    // splitmix64's finaliser: a bijection, so distinct seeds never share one.
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("rill-{x:016x}")
}

/// A seed for [`boundary`] from an ETag (64-bit FNV-1a).
pub fn boundary_seed(etag: &str) -> u64 {
    etag.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `Content-Type` of a multipart answer.
pub fn content_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// Appends the head of one part:
/// `--B\r\nContent-Type: T\r\nContent-Range: bytes a-b/size\r\n\r\n`, after a
/// `\r\n` unless it is the `first` part. The `\r\n` before a delimiter
/// belongs to the delimiter (RFC 2046 §5.1.1), so the first part needs none:
/// the body starts right at `--B`. An empty `content_type` leaves out the
/// part's `Content-Type` line.
pub fn part_head(
    boundary: &str,
    content_type: &str,
    range: ByteRange,
    size: u64,
    first: bool,
    out: &mut Vec<u8>,
) {
    if !first {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut line = String::with_capacity(80);
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        "Content-Range: bytes {}-{}/{}\r\n\r\n",
        range.start, range.end, size
    );
    out.extend_from_slice(line.as_bytes());
}

/// The number of bytes [`part_head`] appends for the same arguments.
pub fn part_head_len(
    boundary: &str,
    content_type: &str,
    range: ByteRange,
    size: u64,
    first: bool,
) -> u64 {
    let lead = if first { 0 } else { 2 };
    let type_line = if content_type.is_empty() {
        0
    } else {
        "Content-Type: \r\n".len() + content_type.len()
    };
    let range_line = "Content-Range: bytes -/\r\n\r\n".len()
        + decimal_len(range.start)
        + decimal_len(range.end)
        + decimal_len(size);
    (lead + 2 + boundary.len() + 2 + type_line + range_line) as u64
}

/// Appends the close delimiter, `\r\n--B--\r\n`, after the last part's bytes.
pub fn closing(boundary: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

/// The number of bytes [`closing`] appends.
pub fn closing_len(boundary: &str) -> u64 {
    (boundary.len() + 8) as u64
}

/// The whole multipart body's length — every part head, every range's bytes
/// and the close delimiter — for `Content-Length` before anything is sent.
/// Saturates rather than overflow (only a size near 2^64 could).
pub fn multipart_len(boundary: &str, content_type: &str, ranges: &[ByteRange], size: u64) -> u64 {
    ranges
        .iter()
        .enumerate()
        .fold(closing_len(boundary), |total, (i, &range)| {
            total
                .saturating_add(part_head_len(boundary, content_type, range, size, i == 0))
                .saturating_add(range.length())
        })
}

/// Digits in the decimal form of `n`.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn multiple(ranges: &[ByteRange]) -> Resolved {
        Resolved::Multiple(ranges.to_vec().into_boxed_slice())
    }

    #[test]
    fn every_single_form() {
        assert_eq!(resolve("bytes=0-9", 100), Resolved::Single(r(0, 9)));
        assert_eq!(resolve("bytes=90-", 100), Resolved::Single(r(90, 99)));
        assert_eq!(resolve("bytes=-10", 100), Resolved::Single(r(90, 99)));
        // A suffix longer than the file is the whole file.
        assert_eq!(resolve("bytes=-1000", 100), Resolved::Single(r(0, 99)));
        assert_eq!(resolve("bytes=50-1000", 100), Resolved::Single(r(50, 99)));
        assert_eq!(resolve("Bytes=5-5", 100), Resolved::Single(r(5, 5)));
        assert_eq!(resolve(" bytes = 1 - 2 ", 100), Resolved::Single(r(1, 2)));
    }

    #[test]
    fn several_ranges() {
        assert_eq!(
            resolve("bytes=0-0,-1", 1000),
            multiple(&[r(0, 0), r(999, 999)])
        );
        assert_eq!(
            resolve("bytes=0-9, 500-599,\t900-", 1000),
            multiple(&[r(0, 9), r(500, 599), r(900, 999)])
        );
        // Unsorted input comes out sorted.
        assert_eq!(
            resolve("bytes=900-909,0-9,500-509", 1000),
            multiple(&[r(0, 9), r(500, 509), r(900, 909)])
        );
        // On a small file `0-0,-1` asks for the same byte twice: more than
        // the file has, so the whole file.
        assert_eq!(resolve("bytes=0-0,-1", 1), Resolved::Ignored);
        // On a file of 50 bytes the two ends are 48 bytes apart: one part.
        assert_eq!(resolve("bytes=0-0,-1", 50), Resolved::Single(r(0, 49)));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_become_one() {
        assert_eq!(resolve("bytes=0-10,5-20", 1000), Resolved::Single(r(0, 20)));
        assert_eq!(resolve("bytes=0-9,10-19", 1000), Resolved::Single(r(0, 19)));
        assert_eq!(resolve("bytes=10-19,0-9", 1000), Resolved::Single(r(0, 19)));
        // A range inside another.
        assert_eq!(
            resolve("bytes=0-99,10-19,500-599", 1000),
            multiple(&[r(0, 99), r(500, 599)])
        );
    }

    #[test]
    fn gap_threshold() {
        // Gap of COALESCE_GAP - 1 bytes (10..=88): merged.
        assert_eq!(resolve("bytes=0-9,89-99", 1000), Resolved::Single(r(0, 99)));
        // Gap of exactly COALESCE_GAP bytes (10..=89): two parts.
        assert_eq!(
            resolve("bytes=0-9,90-99", 1000),
            multiple(&[r(0, 9), r(90, 99)])
        );
        // Merging is transitive: each gap is small, the span is not.
        assert_eq!(
            resolve("bytes=0-0,50-50,100-100,150-150", 1000),
            Resolved::Single(r(0, 150))
        );
    }

    #[test]
    fn unsatisfiable_elements_are_dropped() {
        assert_eq!(resolve("bytes=0-9,2000-", 1000), Resolved::Single(r(0, 9)));
        assert_eq!(resolve("bytes=-0,0-9", 1000), Resolved::Single(r(0, 9)));
        assert_eq!(
            resolve("bytes=1000-,2000-3000,-0", 1000),
            Resolved::Unsatisfiable
        );
        assert_eq!(resolve("bytes=0-,-5", 0), Resolved::Unsatisfiable);
    }

    #[test]
    fn empty_list_elements_are_tolerated() {
        assert_eq!(resolve("bytes=,0-9", 100), Resolved::Single(r(0, 9)));
        assert_eq!(resolve("bytes=0-9,,", 100), Resolved::Single(r(0, 9)));
        assert_eq!(resolve("bytes= , 0-9 ,\t,", 100), Resolved::Single(r(0, 9)));
        for header in ["bytes=", "bytes=,", "bytes= , ,"] {
            assert_eq!(resolve(header, 100), Resolved::Ignored, "{header}");
        }
    }

    #[test]
    fn any_bad_element_ignores_the_header() {
        for header in [
            "bytes=0-9,9-0",
            "bytes=0-9,a-b",
            "bytes=0-9,-",
            "bytes=0-9,5",
            "bytes=0-9,+1-2",
            "bytes=0-9,1--2",
            "bytes=0-9,99999999999999999999999-",
            "bytes 0-9",
            "items=0-9,10-19",
            "bytes=0x10-0x20",
            "bytes=0-9;10-19",
        ] {
            assert_eq!(resolve(header, 100), Resolved::Ignored, "{header}");
        }
    }

    #[test]
    fn too_many_ranges_get_the_whole_file() {
        let list = |n: u64| {
            let ranges: Vec<String> = (0..n).map(|i| format!("{0}-{0}", i * 100)).collect();
            format!("bytes={}", ranges.join(","))
        };
        let size = 1_000_000;
        match resolve(&list(MAX_RANGES as u64), size) {
            Resolved::Multiple(ranges) => assert_eq!(ranges.len(), MAX_RANGES),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            resolve(&list(MAX_RANGES as u64 + 1), size),
            Resolved::Ignored
        );
        // Empty elements do not count.
        let padded = format!("{},,,,", list(MAX_RANGES as u64));
        assert!(matches!(resolve(&padded, size), Resolved::Multiple(_)));
    }

    #[test]
    fn overlap_amplification_gets_the_whole_file() {
        // The CVE-2011-3192 pattern.
        let header = format!("bytes={}", vec!["0-"; 50].join(","));
        assert_eq!(resolve(&header, 1000), Resolved::Ignored);
        assert_eq!(resolve("bytes=0-599,400-999", 1000), Resolved::Ignored);
        // Overlapping but not more than the file: merged.
        assert_eq!(
            resolve("bytes=0-499,400-899", 1000),
            Resolved::Single(r(0, 899))
        );
    }

    #[test]
    fn framing_lengths() {
        let b = boundary(7);
        assert!(b.starts_with("rill-") && b.len() == 21);
        assert!(b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        assert_ne!(boundary(7), boundary(8));
        assert_eq!(
            content_type(&b),
            format!("multipart/byteranges; boundary={b}")
        );
        for (ty, range, size, first) in [
            ("text/plain", r(0, 0), 1, true),
            ("", r(9, 10), 11, false),
            ("a/b", r(u64::MAX - 1, u64::MAX - 1), u64::MAX, false),
        ] {
            let mut out = Vec::new();
            part_head(&b, ty, range, size, first, &mut out);
            assert_eq!(out.len() as u64, part_head_len(&b, ty, range, size, first));
        }
        let mut out = Vec::new();
        closing(&b, &mut out);
        assert_eq!(out, format!("\r\n--{b}--\r\n").as_bytes());
        assert_eq!(out.len() as u64, closing_len(&b));
        assert_eq!(decimal_len(0), 1);
        assert_eq!(decimal_len(9), 1);
        assert_eq!(decimal_len(10), 2);
        assert_eq!(decimal_len(u64::MAX), 20);
    }

    /// The body a connection would send for `ranges` of `file`.
    fn render(boundary: &str, ty: &str, ranges: &[ByteRange], file: &[u8]) -> Vec<u8> {
        let size = file.len() as u64;
        let mut body = Vec::new();
        for (i, range) in ranges.iter().enumerate() {
            part_head(boundary, ty, *range, size, i == 0, &mut body);
            body.extend_from_slice(&file[range.start as usize..=range.end as usize]);
        }
        closing(boundary, &mut body);
        body
    }

    /// Reads a multipart/byteranges body back the way a client would, by
    /// each part's Content-Range: (start, end, size, bytes) per part.
    fn parse_body(boundary: &str, mut body: &[u8]) -> Vec<(u64, u64, u64, Vec<u8>)> {
        let delimiter = format!("--{boundary}");
        let mut parts = Vec::new();
        let mut first = true;
        loop {
            if !first {
                body = body.strip_prefix(b"\r\n").expect("CRLF before delimiter");
            }
            first = false;
            body = body.strip_prefix(delimiter.as_bytes()).expect("delimiter");
            if body == b"--\r\n" {
                return parts;
            }
            body = body.strip_prefix(b"\r\n").expect("CRLF after delimiter");
            let end = body
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("part head ends");
            let head = std::str::from_utf8(&body[..end]).expect("text head");
            body = &body[end + 4..];
            let range = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Range: bytes "))
                .expect("Content-Range");
            let (span, size) = range.split_once('/').expect("size");
            let (start, last) = span.split_once('-').expect("span");
            let (start, last, size): (u64, u64, u64) = (
                start.parse().expect("start"),
                last.parse().expect("end"),
                size.parse().expect("size"),
            );
            let len = (last - start + 1) as usize;
            parts.push((start, last, size, body[..len].to_vec()));
            body = &body[len..];
        }
    }

    #[test]
    fn a_multipart_body_reads_back() {
        let file: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
        let size = file.len() as u64;
        let Resolved::Multiple(ranges) = resolve("bytes=1500-1599,0-9,-5,700-", size) else {
            panic!("several parts expected");
        };
        // 700- swallows 1500-1599 and the suffix.
        assert_eq!(&*ranges, &[r(0, 9), r(700, 1999)]);
        let b = boundary(boundary_seed("\"abc\""));
        let ty = "text/plain; charset=utf-8";
        let body = render(&b, ty, &ranges, &file);
        assert_eq!(body.len() as u64, multipart_len(&b, ty, &ranges, size));
        assert!(body.starts_with(format!("--{b}\r\nContent-Type: {ty}\r\n").as_bytes()));
        let parts = parse_body(&b, &body);
        assert_eq!(parts.len(), ranges.len());
        for ((start, end, total, bytes), range) in parts.iter().zip(ranges.iter()) {
            assert_eq!((*start, *end, *total), (range.start, range.end, size));
            assert_eq!(bytes[..], file[*start as usize..=*end as usize]);
        }
    }

    fn spec() -> impl Strategy<Value = Spec> {
        prop_oneof![
            (0u64..1200, 0u64..1200).prop_map(|(a, b)| Spec::FromTo(a.min(b), a.max(b))),
            (0u64..1200).prop_map(Spec::From),
            (0u64..1200).prop_map(Spec::Suffix),
        ]
    }

    fn header_of(specs: &[Spec]) -> String {
        let elements: Vec<String> = specs
            .iter()
            .map(|spec| match spec {
                Spec::FromTo(a, b) => format!("{a}-{b}"),
                Spec::From(a) => format!("{a}-"),
                Spec::Suffix(n) => format!("-{n}"),
            })
            .collect();
        format!("bytes={}", elements.join(", "))
    }

    proptest! {
        #[test]
        fn coalesced_ranges_cover_what_was_asked_and_little_else(
            specs in proptest::collection::vec(spec(), 1..20),
            size in 0u64..1000,
        ) {
            let asked: Vec<ByteRange> =
                specs.iter().filter_map(|&s| satisfiable(s, size)).collect();
            let mut merged = asked.clone();
            if !merged.is_empty() {
                coalesce(&mut merged);
            }
            for pair in merged.windows(2) {
                // Sorted, disjoint, and at least COALESCE_GAP bytes apart.
                prop_assert!(pair[1].start > pair[0].end + COALESCE_GAP);
            }
            let mut wanted = vec![false; size as usize];
            for range in &asked {
                prop_assert!(range.start <= range.end && range.end < size);
                wanted[range.start as usize..=range.end as usize].fill(true);
            }
            let mut sent = vec![false; size as usize];
            for range in &merged {
                prop_assert!(range.start <= range.end && range.end < size);
                // Every part starts and ends on a byte that was asked for...
                prop_assert!(wanted[range.start as usize] && wanted[range.end as usize]);
                // ...and the bytes inside it nobody asked for are short gaps.
                let mut run = 0;
                for &w in &wanted[range.start as usize..=range.end as usize] {
                    run = if w { 0 } else { run + 1 };
                    prop_assert!(run < COALESCE_GAP);
                }
                sent[range.start as usize..=range.end as usize].fill(true);
            }
            for (byte, &w) in wanted.iter().enumerate() {
                prop_assert!(!w || sent[byte], "byte {} asked for, not sent", byte);
            }

            // And resolve agrees with the pieces.
            let header = header_of(&specs);
            let total: u64 = asked.iter().map(|r| r.length()).sum();
            match resolve(&header, size) {
                Resolved::Ignored => prop_assert!(asked.len() > 1 && total > size),
                Resolved::Unsatisfiable => prop_assert!(asked.is_empty()),
                Resolved::Single(one) => prop_assert_eq!(merged, vec![one]),
                Resolved::Multiple(ranges) => {
                    prop_assert!(ranges.len() > 1);
                    prop_assert_eq!(&*ranges, &merged[..]);
                }
            }
        }

        #[test]
        fn multipart_len_is_what_is_rendered(
            specs in proptest::collection::vec(spec(), 2..12),
            size in 1u64..1300,
            ty in "[a-z/+; =-]{0,30}",
            seed: u64,
        ) {
            // Straight from coalesce: resolve would refuse many of these
            // sets for asking too much, and the framing must hold for any.
            let mut ranges: Vec<ByteRange> =
                specs.iter().filter_map(|&s| satisfiable(s, size)).collect();
            coalesce(&mut ranges);
            let file = vec![b'x'; size as usize];
            let b = boundary(seed);
            let body = render(&b, &ty, &ranges, &file);
            prop_assert_eq!(body.len() as u64, multipart_len(&b, &ty, &ranges, size));
            if ranges.len() > 1 {
                let parts = parse_body(&b, &body);
                prop_assert_eq!(parts.len(), ranges.len());
            }
        }

        #[test]
        fn resolve_never_panics(header in "\\PC{0,60}", size: u64) {
            match resolve(&header, size) {
                Resolved::Single(range) => prop_assert!(range.start <= range.end && range.end < size),
                Resolved::Multiple(ranges) => {
                    for range in ranges.iter() {
                        prop_assert!(range.start <= range.end && range.end < size);
                    }
                }
                Resolved::Ignored | Resolved::Unsatisfiable => {}
            }
        }
    }
}
