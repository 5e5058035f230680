//! A folder as a POSIX tar archive (the pax interchange format of POSIX.1-2001,
//! which is ustar plus extended headers), written a member at a time: a head
//! ([`member_head`]), the file's bytes as they are on disk, zeros to the next
//! 512-byte boundary ([`padding_len`]), and after the last member two zero
//! blocks ([`end`]).
//!
//! Each member is a plain ustar header when the path and size fit in one,
//! which is what most archives of ordinary folders are and what every tar
//! reader knows. The path fits when it is ASCII (no NUL) and is at most 100
//! bytes, or splits at a `/` into a prefix of at most 155 bytes and a name of
//! at most 100; the size fits in 11 octal digits (under 8 GiB). When either
//! does not, a pax extended header (typeflag `x`) goes first with `path=` and
//! `size=` records. A path that is not UTF-8 (a Unix file name is any bytes)
//! goes in `path=` as it is, as GNU tar and Go write it, without the
//! `hdrcharset=BINARY` record POSIX offers for it: GNU tar, the tar of the
//! systems that can hold such names at all, warns that it does not know the
//! keyword, while Python and libarchive keep the bytes without it
//! (libarchive with a warning that they are not UTF-8). Pax rather than the GNU `././@LongLink` members because pax is the
//! standard: GNU tar, bsdtar/libarchive (macOS, Windows 10+ `tar.exe`), Go,
//! Python and 7-Zip all read it, while the GNU form is an extension some
//! readers lack. The ustar header after a pax one still holds a best effort:
//! the path's last 100 bytes with anything not printable ASCII replaced by
//! `_`, and a size of 8 GiB or more in the base-256 form GNU tar, libarchive,
//! Go and Python read, so even a reader that skips pax headers finds where
//! the member's data ends.
//!
//! Every member is owned by uid 0 and gid 0 with empty user and group names:
//! the server's own accounts mean nothing on the machine that unpacks it, and
//! with no names an unpacking root keeps the numeric 0 rather than looking up
//! a user that is not there, while anyone else unpacks as themselves as
//! always. Files are mode 0644 and folders 0755 (the server offers what it
//! serves, not its permission bits). Times are whole seconds, clamped to the
//! 11 octal digits ustar holds (the year 2242), so that the head's length
//! does not depend on the time and [`member_head_len`] need not be told it.

use std::borrow::Cow;

/// A tar block: every header, and every member's data rounded up, is a whole
/// number of these.
pub const BLOCK: usize = 512;

/// Bytes in the ustar `name` field.
const NAME_LEN: usize = 100;
/// Bytes in the ustar `prefix` field.
const PREFIX_LEN: usize = 155;
/// The largest number 11 octal digits hold: a size or time field's capacity
/// (a byte under 8 GiB as a size).
const MAX_OCTAL_11: u64 = 0o777_7777_7777;
/// The `name` of a pax extended header, as Python's tarfile writes it; a
/// reader that knows pax never shows it, one that does not extracts a file by
/// this name.
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";

/// Where the path goes in a ustar header, when it fits in one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// All of it in `name`.
    Name,
    /// `prefix` is the bytes before this `/`, `name` the bytes after.
    Split(usize),
}

/// The path as the archive holds it: a folder's ends with `/`.
fn full_path(path: &[u8], is_dir: bool) -> Cow<'_, [u8]> {
    if is_dir && !path.ends_with(b"/") {
        let mut owned = Vec::with_capacity(path.len() + 1);
        owned.extend_from_slice(path);
        owned.push(b'/');
        Cow::Owned(owned)
    } else {
        Cow::Borrowed(path)
    }
}

/// Where `path` goes in a ustar header, or `None` when it needs a pax `path`.
fn placement(path: &[u8]) -> Option<Placement> {
    if !path.iter().all(|&b| (1..0x80).contains(&b)) {
        return None;
    }
    if path.len() <= NAME_LEN {
        return Some(Placement::Name);
    }
    // The last `/` that leaves a prefix short enough, not counting a folder's
    // trailing one: the longest prefix, so the shortest name.
    let searchable = (path.len() - 1).min(PREFIX_LEN + 1);
    let slash = path[..searchable].iter().rposition(|&b| b == b'/')?;
    let name_len = path.len() - slash - 1;
    (slash > 0 && (1..=NAME_LEN).contains(&name_len)).then_some(Placement::Split(slash))
}

/// Decimal digits in `n`.
fn digits(mut n: u64) -> u64 {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

/// Length of the pax record `"<len> <key>=<value>\n"`, whose `<len>` counts
/// the whole record, itself included.
fn pax_record_len(key_len: usize, value_len: usize) -> u64 {
    let rest = key_len as u64 + value_len as u64 + 3; // ' ', '=', '\n'
    let mut len = rest + digits(rest);
    // Adding the digits can carry into one more digit (e.g. 98 + 2 = 100).
    if digits(len) + rest != len {
        len = rest + digits(len);
    }
    len
}

/// Appends the pax record `key=value`.
fn pax_record(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let len = pax_record_len(key.len(), value.len());
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Length of the pax records a member needs (0 for none): `path` when it
/// does not fit ustar, `size` when it needs more than 11 octal digits.
fn pax_data_len(path: &[u8], size: u64) -> u64 {
    let mut len = 0;
    if placement(path).is_none() {
        len += pax_record_len(4, path.len());
    }
    if size > MAX_OCTAL_11 {
        len += pax_record_len(4, digits(size) as usize);
    }
    len
}

/// `n` rounded up to a whole number of blocks.
fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// Writes `value` as zero-padded octal filling `field` but its last byte,
/// which is NUL; `value` must fit (callers clamp or check).
fn octal(field: &mut [u8], value: u64) {
    let Some((last, digits)) = field.split_last_mut() else {
        return;
    };
    *last = 0;
    let mut rest = value;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest & 7) as u8;
        rest >>= 3;
    }
}

/// Writes a size into the 12-byte `size` field: octal when it fits, else
/// base-256 (the high bit of the first byte set, then the number big-endian).
fn size_field(field: &mut [u8; 12], size: u64) {
    if size <= MAX_OCTAL_11 {
        octal(field, size);
    } else {
        field[..4].copy_from_slice(&[0x80, 0, 0, 0]);
        field[4..].copy_from_slice(&size.to_be_bytes());
    }
}

/// Appends one 512-byte ustar header, its checksum computed.
fn ustar_header(
    name: &[u8],
    prefix: &[u8],
    mode: u64,
    size: u64,
    mtime_secs: u64,
    typeflag: u8,
    out: &mut Vec<u8>,
) {
    let mut block = [0u8; BLOCK];
    let name_len = name.len().min(NAME_LEN);
    block[..name_len].copy_from_slice(&name[..name_len]);
    octal(&mut block[100..108], mode);
    octal(&mut block[108..116], 0); // uid
    octal(&mut block[116..124], 0); // gid
    let mut size_bytes = [0u8; 12];
    size_field(&mut size_bytes, size);
    block[124..136].copy_from_slice(&size_bytes);
    octal(&mut block[136..148], mtime_secs.min(MAX_OCTAL_11));
    block[156] = typeflag;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // uname and gname (265..329) stay empty.
    octal(&mut block[329..337], 0); // devmajor
    octal(&mut block[337..345], 0); // devminor
    let prefix_len = prefix.len().min(PREFIX_LEN);
    block[345..345 + prefix_len].copy_from_slice(&prefix[..prefix_len]);
    // The checksum is the sum of the header's bytes with its own field read
    // as spaces, written as six octal digits, NUL, space.
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    octal(&mut block[148..155], sum);
    block[155] = b' ';
    out.extend_from_slice(&block);
}

/// The `name` field of a member whose real path is in a pax header: the
/// path's last 100 bytes, anything but printable ASCII as `_`.
fn fallback_name(path: &[u8]) -> Vec<u8> {
    let tail = &path[path.len().saturating_sub(NAME_LEN)..];
    tail.iter()
        .map(|&b| if (0x20..0x7f).contains(&b) { b } else { b'_' })
        .collect()
}

/// Appends the header bytes that go before a member's data: a pax extended
/// header and its records when the member needs one (see the module docs),
/// then the ustar header. `path` is the member's path inside the archive,
/// relative, `/`-separated, any bytes; for a folder (`is_dir`) a `/` is added
/// if it does not end with one, and `size` is ignored (a folder's is 0).
/// Files are typeflag `0`, mode 0644; folders typeflag `5`, mode 0755.
/// `mtime_secs` is clamped to the year 2242. Appends exactly
/// [`member_head_len`] bytes, a whole number of blocks.
pub fn member_head(path: &[u8], is_dir: bool, size: u64, mtime_secs: u64, out: &mut Vec<u8>) {
    let path = full_path(path, is_dir);
    let size = if is_dir { 0 } else { size };
    let placement = placement(&path);
    let pax_len = pax_data_len(&path, size);
    if pax_len > 0 {
        ustar_header(PAX_HEADER_NAME, b"", 0o644, pax_len, mtime_secs, b'x', out);
        let start = out.len();
        if placement.is_none() {
            pax_record(b"path", &path, out);
        }
        if size > MAX_OCTAL_11 {
            pax_record(b"size", size.to_string().as_bytes(), out);
        }
        let written = (out.len() - start) as u64;
        let padded = round_up(written);
        out.resize(start + padded as usize, 0);
    }
    let (mode, typeflag) = if is_dir { (0o755, b'5') } else { (0o644, b'0') };
    match placement {
        Some(Placement::Name) => ustar_header(&path, b"", mode, size, mtime_secs, typeflag, out),
        Some(Placement::Split(slash)) => ustar_header(
            &path[slash + 1..],
            &path[..slash],
            mode,
            size,
            mtime_secs,
            typeflag,
            out,
        ),
        None => ustar_header(
            &fallback_name(&path),
            b"",
            mode,
            size,
            mtime_secs,
            typeflag,
            out,
        ),
    }
}

/// How many bytes [`member_head`] appends for this member: one block, plus
/// one for a pax header and its records rounded up to blocks when needed.
pub fn member_head_len(path: &[u8], is_dir: bool, size: u64) -> u64 {
    let path = full_path(path, is_dir);
    let size = if is_dir { 0 } else { size };
    match pax_data_len(&path, size) {
        0 => BLOCK as u64,
        pax_len => 2 * BLOCK as u64 + round_up(pax_len),
    }
}

/// How many zeros follow `size` bytes of member data, up to the next block.
pub fn padding_len(size: u64) -> usize {
    (size.wrapping_neg() % BLOCK as u64) as usize
}

/// Appends the zeros that follow `size` bytes of member data.
pub fn padding(size: u64, out: &mut Vec<u8>) {
    out.resize(out.len() + padding_len(size), 0);
}

/// How many bytes [`end`] appends: two blocks.
pub fn end_len() -> u64 {
    2 * BLOCK as u64
}

/// Appends the end-of-archive marker, two blocks of zeros.
pub fn end(out: &mut Vec<u8>) {
    out.resize(out.len() + 2 * BLOCK, 0);
}

/// A member's whole length: head, data and padding (a folder has no data,
/// whatever `size` says). Saturates at `u64::MAX`, which no real file comes
/// near.
pub fn member_len(path: &[u8], is_dir: bool, size: u64) -> u64 {
    let size = if is_dir { 0 } else { size };
    member_head_len(path, is_dir, size)
        .saturating_add(size)
        .saturating_add(padding_len(size) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::check::{hex, python, temp_dir, tool};
    use proptest::prelude::*;
    use std::ffi::OsStr;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::ffi::OsStrExt;

    /// A member as [`read`] finds it.
    #[derive(Debug, PartialEq, Eq)]
    struct Member {
        path: Vec<u8>,
        typeflag: u8,
        size: u64,
        mode: u64,
        mtime: u64,
        data: Vec<u8>,
    }

    /// A ustar number field: octal digits up to a NUL or space, or base-256.
    fn number(field: &[u8]) -> u64 {
        if field[0] & 0x80 != 0 {
            let mut value = u64::from(field[0] & 0x7f);
            for &b in &field[1..] {
                value = value << 8 | u64::from(b);
            }
            return value;
        }
        let digits: Vec<u8> = field
            .iter()
            .copied()
            .take_while(|&b| b != 0 && b != b' ')
            .collect();
        assert!(
            digits.iter().all(|b| (b'0'..=b'7').contains(b)),
            "{field:?}"
        );
        u64::from_str_radix(std::str::from_utf8(&digits).unwrap(), 8).unwrap()
    }

    /// A NUL-terminated (or full) text field.
    fn text(field: &[u8]) -> &[u8] {
        &field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())]
    }

    /// Checks one header block's fixed fields and checksum.
    fn check_header(block: &[u8]) {
        assert_eq!(&block[257..263], b"ustar\0", "magic");
        assert_eq!(&block[263..265], b"00", "version");
        assert!(
            block[148..154].iter().all(|b| (b'0'..=b'7').contains(b)),
            "checksum has six digits"
        );
        assert_eq!(&block[154..156], b"\0 ", "checksum ends NUL, space");
        let mut copy = block.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(number(&block[148..156]), sum, "checksum");
        assert_eq!(number(&block[108..116]), 0, "uid");
        assert_eq!(number(&block[116..124]), 0, "gid");
        assert_eq!(text(&block[265..297]), b"", "uname");
        assert_eq!(text(&block[297..329]), b"", "gname");
        assert_eq!(&block[500..], &[0; 12], "after prefix");
    }

    /// Parses pax records, checking each one's length counts itself.
    fn pax_records(mut data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut records = Vec::new();
        while !data.is_empty() {
            let space = data.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&data[..space])
                .unwrap()
                .parse()
                .unwrap();
            let record = &data[..len];
            assert_eq!(record.last(), Some(&b'\n'), "record ends in a newline");
            let body = &record[space + 1..len - 1];
            let eq = body.iter().position(|&b| b == b'=').unwrap();
            records.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
            data = &data[len..];
        }
        records
    }

    /// A minimal reader of what this module writes: every header checked,
    /// pax records applied, up to the end marker (which must end `archive`).
    fn read(archive: &[u8]) -> Vec<Member> {
        assert_eq!(archive.len() % BLOCK, 0);
        let mut members = Vec::new();
        let mut at = 0;
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let block = &archive[at..at + BLOCK];
            if block == [0; BLOCK] {
                assert!(archive[at..] == [0; 2 * BLOCK], "the end marker ends it");
                return members;
            }
            check_header(block);
            let typeflag = block[156];
            let mut size = number(&block[124..136]);
            let mut path = text(&block[..100]).to_vec();
            let prefix = text(&block[345..500]);
            if !prefix.is_empty() {
                path = [prefix, b"/", &path].concat();
            }
            at += BLOCK;
            if typeflag == b'x' {
                assert!(pax.is_empty(), "two pax headers in a row");
                pax = pax_records(&archive[at..at + size as usize]);
                assert!(!pax.is_empty());
                at += round_up(size) as usize;
                continue;
            }
            for (key, value) in pax.drain(..) {
                match &key[..] {
                    b"path" => path = value,
                    b"size" => size = std::str::from_utf8(&value).unwrap().parse().unwrap(),
                    _ => panic!("unexpected pax key {key:?}"),
                }
            }
            // Tests leave out the data of members too big to build.
            let data = if size > (1 << 20) {
                vec![]
            } else {
                let data = archive[at..at + size as usize].to_vec();
                at += size as usize + padding_len(size);
                data
            };
            members.push(Member {
                path,
                typeflag,
                size,
                mode: number(&block[100..108]),
                mtime: number(&block[136..148]),
                data,
            });
        }
    }

    /// A whole archive of `(path, is_dir, data)`, all at `mtime`.
    fn archive(members: &[(&[u8], bool, &[u8])], mtime: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for &(path, is_dir, data) in members {
            let start = out.len();
            member_head(path, is_dir, data.len() as u64, mtime, &mut out);
            out.extend_from_slice(data);
            padding(data.len() as u64, &mut out);
            assert_eq!(
                (out.len() - start) as u64,
                member_len(path, is_dir, data.len() as u64)
            );
        }
        end(&mut out);
        out
    }

    fn head(path: &[u8], is_dir: bool, size: u64) -> Vec<u8> {
        let mut out = Vec::new();
        member_head(path, is_dir, size, 1_700_000_000, &mut out);
        assert_eq!(out.len() as u64, member_head_len(path, is_dir, size));
        out
    }

    #[test]
    fn a_small_file_is_one_ustar_header() {
        let out = head(b"docs/a.txt", false, 5);
        assert_eq!(out.len(), BLOCK);
        check_header(&out);
        assert_eq!(text(&out[..100]), b"docs/a.txt");
        assert_eq!(&out[100..108], b"0000644\0");
        assert_eq!(&out[124..136], b"00000000005\0");
        assert_eq!(&out[136..148], b"14524770400\0"); // 1_700_000_000
        assert_eq!(out[156], b'0');
        assert_eq!(&out[157..257], &[0; 100], "linkname");
        assert_eq!(&out[329..345], b"0000000\x000000000\0", "devmajor/minor");
        assert_eq!(&out[345..500], &[0; 155], "prefix");
    }

    #[test]
    fn a_folder_gets_a_slash_mode_755_and_size_0() {
        for path in [&b"docs"[..], b"docs/"] {
            let out = head(path, true, 4096);
            assert_eq!(out.len(), BLOCK);
            check_header(&out);
            assert_eq!(text(&out[..100]), b"docs/");
            assert_eq!(&out[100..108], b"0000755\0");
            assert_eq!(number(&out[124..136]), 0);
            assert_eq!(out[156], b'5');
        }
        assert_eq!(member_len(b"docs", true, 4096), BLOCK as u64);
    }

    #[test]
    fn an_empty_file_has_no_data_or_padding() {
        assert_eq!(padding_len(0), 0);
        assert_eq!(member_len(b"empty", false, 0), BLOCK as u64);
        let out = head(b"empty", false, 0);
        assert_eq!(number(&out[124..136]), 0);
    }

    #[test]
    fn padding_reaches_the_next_block() {
        assert_eq!(padding_len(1), 511);
        assert_eq!(padding_len(511), 1);
        assert_eq!(padding_len(512), 0);
        assert_eq!(padding_len(513), 511);
        assert_eq!(padding_len(u64::MAX), 1);
        assert_eq!(end_len(), 1024);
        let mut out = Vec::new();
        end(&mut out);
        assert_eq!(out, [0; 1024]);
    }

    #[test]
    fn a_path_of_exactly_100_bytes_fills_name() {
        let path = [b'n'; 100];
        let out = head(&path, false, 1);
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[..100], &path[..]);
        let members = read(&[&out[..], b"x", &[0; 511], &[0; 1024]].concat());
        assert_eq!(members[0].path, path);
    }

    #[test]
    fn a_200_byte_path_splits_into_prefix_and_name() {
        let path = [&[b'p'; 120][..], b"/", &[b'q'; 79]].concat();
        assert_eq!(path.len(), 200);
        let out = head(&path, false, 3);
        assert_eq!(out.len(), BLOCK, "no pax header");
        assert_eq!(text(&out[345..500]), &[b'p'; 120][..]);
        assert_eq!(text(&out[..100]), &[b'q'; 79][..]);
        // The longest prefix that fits is taken.
        let path = b"a/b/".repeat(50);
        let out = head(&path[..path.len() - 1], true, 0);
        assert_eq!(out.len(), BLOCK);
        let prefix = text(&out[345..500]);
        assert!(
            prefix.len() <= 155 && prefix.len() >= 150,
            "{}",
            prefix.len()
        );
        assert_eq!([prefix, b"/", text(&out[..100])].concat(), path);
    }

    #[test]
    fn paths_ustar_cannot_hold_go_in_pax() {
        let long_component = [&b"dir/"[..], &[b'c'; 300]].concat();
        let name_too_long = [&[b'p'; 20][..], b"/", &[b'n'; 101]].concat();
        let prefix_too_long = [&[b'p'; 156][..], b"/", &[b'n'; 10]].concat();
        let cases: [&[u8]; 7] = [
            &long_component,
            &name_too_long,
            &prefix_too_long,
            "caf\u{e9}.txt".as_bytes(),
            "\u{1f600}/smile".as_bytes(),
            b"bad\xff\xfe.bin",
            b"nul\0byte",
        ];
        for path in cases {
            let out = head(path, false, 7);
            assert_eq!(out.len(), 3 * BLOCK, "{path:?}");
            let archive = [&out[..], &[b'x'; 7], &[0; 505], &[0; 1024]].concat();
            let members = read(&archive);
            assert_eq!(members.len(), 1);
            assert_eq!(members[0].path, path);
            assert_eq!(members[0].size, 7);
            let pax_len = number(&out[124..136]) as usize;
            let records = pax_records(&out[BLOCK..BLOCK + pax_len]);
            assert_eq!(records, [(b"path".to_vec(), path.to_vec())]);
            // The ustar name is a printable stand-in.
            let name = text(&out[2 * BLOCK..2 * BLOCK + 100]);
            assert!(name.iter().all(|b| (0x20..0x7f).contains(b)), "{name:?}");
        }
    }

    #[test]
    fn eight_gib_needs_a_pax_size() {
        let limit = 0o777_7777_7777;
        let out = head(b"big", false, limit);
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[124..136], b"77777777777\0");

        let size = 8 << 30;
        let out = head(b"big", false, size);
        assert_eq!(out.len(), 3 * BLOCK);
        let records = pax_records(text(&out[BLOCK..2 * BLOCK]));
        assert_eq!(records, [(b"size".to_vec(), b"8589934592".to_vec())]);
        assert_eq!(&text(&out[BLOCK..2 * BLOCK]), b"19 size=8589934592\n");
        let ustar = &out[2 * BLOCK..];
        check_header(ustar);
        assert_eq!(ustar[124], 0x80, "base-256 size");
        assert_eq!(number(&ustar[124..136]), size);
        assert_eq!(text(&ustar[..100]), b"big");

        let out = head(b"huge", false, u64::MAX);
        assert_eq!(number(&out[2 * BLOCK + 124..2 * BLOCK + 136]), u64::MAX);
        assert_eq!(member_len(b"huge", false, u64::MAX), u64::MAX);
    }

    #[test]
    fn times_clamp_to_what_11_octal_digits_hold() {
        let mut out = Vec::new();
        member_head(b"t", false, 0, u64::MAX, &mut out);
        assert_eq!(&out[136..148], b"77777777777\0");
        assert_eq!(out.len(), BLOCK);
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        // Around every place where adding the length's digits adds a digit.
        for value_len in 0..1100 {
            let value = vec![b'v'; value_len];
            let mut out = Vec::new();
            pax_record(b"path", &value, &mut out);
            assert_eq!(out.len() as u64, pax_record_len(4, value_len));
            assert_eq!(pax_records(&out), [(b"path".to_vec(), value)]);
        }
        let mut out = Vec::new();
        pax_record(b"path", &[b'v'; 90], &mut out);
        assert!(out.starts_with(b"99 path="));
        out.clear();
        pax_record(b"path", &[b'v'; 91], &mut out);
        assert!(out.starts_with(b"101 path="));
    }

    /// The members the real-reader tests put in an archive.
    fn sample() -> Vec<(Vec<u8>, bool, Vec<u8>)> {
        vec![
            (b"top".to_vec(), true, vec![]),
            (b"top/hello.txt".to_vec(), false, b"hello, world\n".to_vec()),
            (b"top/empty".to_vec(), false, vec![]),
            (b"top/block".to_vec(), false, vec![b'b'; 512]),
            (
                "top/caf\u{e9} \u{1f600}.txt".as_bytes().to_vec(),
                false,
                b"utf-8".to_vec(),
            ),
            (
                b"top/bad\xff\xfename".to_vec(),
                false,
                b"raw bytes".to_vec(),
            ),
            ([&b"top/"[..], &[b'L'; 250]].concat(), false, vec![7; 1000]),
            ([&b"top/"[..], &b"deep/".repeat(40)].concat(), true, vec![]),
            (
                [&b"top/"[..], &b"deep/".repeat(40), b"leaf"].concat(),
                false,
                b"leaf".to_vec(),
            ),
        ]
    }

    fn sample_archive() -> Vec<u8> {
        let sample = sample();
        let members: Vec<(&[u8], bool, &[u8])> = sample
            .iter()
            .map(|(p, d, data)| (&p[..], *d, &data[..]))
            .collect();
        archive(&members, 1_600_000_000)
    }

    #[test]
    fn the_sample_reads_back() {
        let members = read(&sample_archive());
        let sample = sample();
        assert_eq!(members.len(), sample.len());
        for (member, (path, is_dir, data)) in members.iter().zip(&sample) {
            let mut path = path.clone();
            if *is_dir && !path.ends_with(b"/") {
                path.push(b'/');
            }
            assert_eq!(member.path, path);
            assert_eq!(member.typeflag, if *is_dir { b'5' } else { b'0' });
            assert_eq!(member.mode, if *is_dir { 0o755 } else { 0o644 });
            assert_eq!(&member.data, data);
            assert_eq!(member.mtime, 1_600_000_000);
        }
    }

    #[test]
    fn python_tarfile_reads_the_sample() {
        let dir = temp_dir();
        let file = dir.path().join("sample.tar");
        std::fs::write(&file, sample_archive()).unwrap();
        let listing = python(
            r#"
import os, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    for m in tar.getmembers():
        data = tar.extractfile(m).read().hex() if m.isfile() else "-"
        print(os.fsencode(m.name).hex(), m.type.decode(), m.size, oct(m.mode), m.mtime,
              m.uid, m.gid, repr(m.uname), data)
"#,
            &[&file],
        );
        let lines: Vec<&str> = listing.lines().collect();
        let sample = sample();
        assert_eq!(lines.len(), sample.len(), "{listing}");
        for (line, (path, is_dir, data)) in lines.iter().zip(&sample) {
            // tarfile drops a folder's trailing slash.
            let name: &[u8] = path.strip_suffix(b"/").unwrap_or(path);
            let (kind, mode, data) = if *is_dir {
                ("5", "0o755", "-".to_string())
            } else {
                ("0", "0o644", hex(data))
            };
            let expected = format!(
                "{} {kind} {} {mode} 1600000000 0 0 '' {data}",
                hex(name),
                data.len() / 2 * usize::from(!*is_dir),
            );
            assert_eq!(*line, expected);
        }
    }

    #[test]
    fn gnu_tar_lists_and_extracts_the_sample() {
        let dir = temp_dir();
        let file = dir.path().join("sample.tar");
        std::fs::write(&file, sample_archive()).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let listing = tool("tar", &[OsStr::new("-tvf"), file.as_os_str()], true).unwrap();
        assert_eq!(listing.lines().count(), sample().len(), "{listing}");
        assert!(listing.contains("drwxr-xr-x 0/0"), "{listing}");
        assert!(listing.contains("-rw-r--r-- 0/0"), "{listing}");
        tool(
            "tar",
            &[
                OsStr::new("-xf"),
                file.as_os_str(),
                OsStr::new("-C"),
                out.as_os_str(),
            ],
            true,
        );
        for (path, is_dir, data) in sample() {
            let on_disk = out.join(OsStr::from_bytes(&path));
            if is_dir {
                assert!(on_disk.is_dir(), "{on_disk:?}");
            } else {
                assert_eq!(std::fs::read(&on_disk).unwrap(), data, "{on_disk:?}");
            }
        }
    }

    /// An 8 GiB member, its data a hole in a sparse file, then a small one:
    /// readers must take the size from pax and find the next header.
    #[test]
    fn readers_skip_an_8_gib_member_by_its_pax_size() {
        let dir = temp_dir();
        let path = dir.path().join("big.tar");
        let mut file = std::fs::File::create(&path).unwrap();
        let size = (8 << 30) + 3;
        let mut out = Vec::new();
        member_head(b"big.bin", false, size, 0, &mut out);
        file.write_all(&out).unwrap();
        file.seek(SeekFrom::Current(size as i64)).unwrap();
        out.clear();
        padding(size, &mut out);
        member_head(b"after.txt", false, 5, 0, &mut out);
        out.extend_from_slice(b"after");
        padding(5, &mut out);
        end(&mut out);
        file.write_all(&out).unwrap();
        drop(file);
        let expected_len =
            member_len(b"big.bin", false, size) + member_len(b"after.txt", false, 5) + end_len();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), expected_len);
        let listing = python(
            r#"
import sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    for m in tar.getmembers():
        print(m.name, m.size)
    print(tar.extractfile("after.txt").read().decode())
"#,
            &[&path],
        );
        assert_eq!(listing, format!("big.bin {size}\nafter.txt 5\nafter\n"));
        let listing = tool("tar", &[OsStr::new("-tvf"), path.as_os_str()], true).unwrap();
        assert!(listing.contains(&format!(" {size} ")), "{listing}");
        assert!(listing.contains("after.txt"), "{listing}");
    }

    fn any_path() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 1..400),
            // Mostly ASCII with slashes, to reach the prefix/name split.
            prop::collection::vec(prop::sample::select(&b"ab/._-"[..]), 1..400),
        ]
    }

    proptest! {
        #[test]
        fn lengths_match_and_headers_read_back(
            path in any_path(),
            is_dir in any::<bool>(),
            size in prop_oneof![0u64..(1 << 40), any::<u64>()],
            mtime in any::<u64>(),
        ) {
            let mut out = vec![0xAA; 3]; // appends, never overwrites
            member_head(&path, is_dir, size, mtime, &mut out);
            prop_assert_eq!(&out[..3], &[0xAA; 3]);
            let out = out.split_off(3);
            prop_assert_eq!(out.len() as u64, member_head_len(&path, is_dir, size));
            prop_assert_eq!(out.len() % BLOCK, 0);
            let size = if is_dir { 0 } else { size };
            prop_assert_eq!(
                member_len(&path, is_dir, size),
                (out.len() as u64).saturating_add(size).saturating_add(padding_len(size) as u64)
            );
            // Read it back as the head of an archive whose data is a hole.
            let data = vec![0u8; if size > (1 << 20) { 0 } else { size as usize + padding_len(size) }];
            let members = read(&[&out[..], &data, &[0; 2 * BLOCK]].concat());
            prop_assert_eq!(members.len(), 1);
            let mut full = path.clone();
            if is_dir && !full.ends_with(b"/") {
                full.push(b'/');
            }
            prop_assert_eq!(&members[0].path, &full);
            prop_assert_eq!(members[0].size, size);
            prop_assert_eq!(members[0].mtime, mtime.min(0o777_7777_7777));
        }
    }
}
