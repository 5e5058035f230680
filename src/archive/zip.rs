//! A folder as a zip archive (PKWARE APPNOTE.TXT 6.3), stored without
//! compression and written front to back: for each entry a local header
//! ([`local_header`]), the file's bytes, and a data descriptor
//! ([`data_descriptor`]) with the CRC-32 computed while the bytes went out;
//! then a central directory header per entry ([`central_header`]) and the end
//! records ([`end_records`]). [`archive_len`] adds it all up from the names
//! and sizes alone, since stored data is exactly as long as the file.
//!
//! The rules chosen, and why:
//!
//! - Every entry, folders included, sets flag bit 3 and is followed by a
//!   data descriptor (with its optional signature, which macOS needs), so the
//!   CRC can come after the data without buffering or reading files twice,
//!   and so every entry has the same shape. The local header has CRC 0 but
//!   the real sizes: the sizes are known up front, and a reader that walks
//!   local headers instead of the central directory (a streaming unzip) can
//!   then find where stored data ends. nginx's mod_zip does the same for the
//!   same reason; readers that go by the central directory (Windows
//!   Explorer, macOS Archive Utility, Python, Info-ZIP) never look.
//! - Zip64 is decided per entry from the known size, never guessed: an entry
//!   of 0xFFFF_FFFF bytes or more has 0xFFFF_FFFF in the local header's size
//!   fields, a zip64 extra field (id 0x0001) there with both real sizes,
//!   "version needed" 4.5, and a descriptor with 8-byte sizes; any other
//!   entry has 4-byte sizes everywhere. In the central directory the zip64
//!   extra field holds whichever of the sizes and local-header offset do not
//!   fit 32 bits (in APPNOTE's order: size, compressed size, offset). The
//!   end records gain a zip64 end of central directory record and locator
//!   when there are 0xFFFF entries or more or the directory's size or offset
//!   does not fit 32 bits; then, as Go's archive/zip does, every field of the
//!   classic end record is set to its all-ones "see zip64" value.
//! - Names are written as given (a folder's must end with `/`). Flag bit 11
//!   (the name is UTF-8) is set when the name is valid UTF-8 and not plain
//!   ASCII, as Go does: ASCII needs no flag, and bytes that are not UTF-8
//!   must not claim to be (Python, for one, would fail to decode them;
//!   without the flag readers take them as code page 437). A name longer
//!   than zip's 16-bit length field is cut to [`MAX_NAME`] bytes; the server
//!   may rather leave such a file out.
//! - Each header carries an extended-timestamp extra field (0x5455, "UT")
//!   with the Unix mtime, because DOS time has no time zone and two-second
//!   steps; Info-ZIP, libarchive and 7-Zip use it. It is in every header, so
//!   the lengths do not depend on the time. Its 32-bit signed field holds
//!   times up to 2038, later ones are clamped to that; the DOS time (UTC)
//!   is clamped to 1980-01-01 00:00:00 .. 2107-12-31 23:59:58.
//! - "Version made by" is Unix with spec 4.5, so the external attributes
//!   carry Unix modes: 0644 for files, 0755 for folders (with the MS-DOS
//!   directory bit too). Method 0, stored; "version needed" 2.0 unless zip64.

/// CRC-32 (IEEE, as zip uses) for [`data_descriptor`] and
/// [`ZipEntry::crc`]: feed it each file's bytes as they are sent. This is
/// the `crc32fast` crate's hasher.
pub use crc32fast::Hasher as Crc32;

/// The longest name a zip header holds (its length is 16 bits); longer names
/// are cut to this many bytes.
pub const MAX_NAME: usize = 0xFFFF;

const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const END_SIGNATURE: u32 = 0x0605_4b50;
const ZIP64_END_SIGNATURE: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;

/// Fixed part of a local header, before the name and extra fields.
const LOCAL_FIXED: u64 = 30;
/// Fixed part of a central directory header.
const CENTRAL_FIXED: u64 = 46;
/// The classic end of central directory record, without a comment.
const END_LEN: u64 = 22;
/// The zip64 end of central directory record, without extensible data.
const ZIP64_END_LEN: u64 = 56;
/// The zip64 end of central directory locator.
const ZIP64_LOCATOR_LEN: u64 = 20;
/// The extended-timestamp extra field: id, length, flags, mtime.
const TIME_EXTRA_LEN: u64 = 9;

/// Sizes and offsets at or above this do not fit a 32-bit field (the value
/// itself means "look in the zip64 extra field").
const MAX_32: u64 = 0xFFFF_FFFF;
/// Entry counts at or above this do not fit the end record.
const MAX_16: u64 = 0xFFFF;

/// Flag bit 3: CRC and sizes follow the data in a data descriptor.
const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// Flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;
/// "Version needed to extract" 2.0: folders and stored files.
const VERSION_PLAIN: u16 = 20;
/// "Version needed to extract" 4.5: zip64.
const VERSION_ZIP64: u16 = 45;
/// "Version made by": Unix (3) in the high byte, spec 4.5 in the low.
const MADE_BY: u16 = 3 << 8 | 45;
/// MS-DOS attribute: a directory.
const DOS_DIRECTORY: u32 = 0x10;

/// One entry as the central directory needs it, filled in as the archive is
/// sent: `offset` before its local header, `crc` after its data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZipEntry {
    /// The path inside the archive, `/`-separated; a folder's ends with `/`.
    pub name: Vec<u8>,
    /// Whether it is a folder (size 0, CRC 0, mode 0755).
    pub is_dir: bool,
    /// The file's length in bytes, as stored.
    pub size: u64,
    /// Last modification, seconds since the Unix epoch.
    pub mtime_secs: u64,
    /// CRC-32 of the file's bytes (0 for a folder or an empty file).
    pub crc: u32,
    /// Where its local header starts, from the start of the archive.
    pub offset: u64,
}

/// Whether an entry of `size` bytes is zip64: its local header has the zip64
/// extra field and its data descriptor 8-byte sizes.
pub fn is_zip64(size: u64) -> bool {
    size >= MAX_32
}

/// `name` as the headers hold it: cut to [`MAX_NAME`] bytes.
fn stored_name(name: &[u8]) -> &[u8] {
    &name[..name.len().min(MAX_NAME)]
}

/// The general purpose flags for an entry named `name`.
fn flags(name: &[u8]) -> u16 {
    let utf8 = !name.is_ascii() && std::str::from_utf8(name).is_ok();
    FLAG_DESCRIPTOR | if utf8 { FLAG_UTF8 } else { 0 }
}

/// A size or offset for a 32-bit field: itself, or all ones when it does
/// not fit.
fn field_32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn u16_le(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn u32_le(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn u64_le(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// The MS-DOS time and date fields, `(time, date)`, for `unix_secs` read as
/// UTC. DOS time counts from 1980 in two-second steps and ends in 2107:
/// earlier times become 1980-01-01 00:00:00, later ones 2107-12-31 23:59:58,
/// odd seconds round down.
pub fn dos_time_date(unix_secs: u64) -> (u16, u16) {
    /// 1980-01-01 00:00:00 UTC.
    const DOS_EPOCH: u64 = 315_532_800;
    const FIRST: (u16, u16) = (0, 1 << 5 | 1);
    const LAST: (u16, u16) = (23 << 11 | 59 << 5 | 29, 127 << 9 | 12 << 5 | 31);
    if unix_secs < DOS_EPOCH {
        return FIRST;
    }
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    if year > 2107 {
        return LAST;
    }
    let time = (secs / 3600) << 11 | (secs % 3600 / 60) << 5 | (secs % 60 / 2);
    let date = (year - 1980) << 9 | month << 5 | day;
    (time as u16, date as u16)
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01, by
/// Howard Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], from March
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends the extended-timestamp extra field with the modification time.
fn time_extra(mtime_secs: u64, out: &mut Vec<u8>) {
    u16_le(out, 0x5455);
    u16_le(out, 5);
    out.push(1); // flags: the modification time is present
    let clamped = mtime_secs.min(i32::MAX as u64) as u32;
    u32_le(out, clamped);
}

/// Length of a local header's extra fields for an entry of `size` bytes.
fn local_extra_len(size: u64) -> u64 {
    TIME_EXTRA_LEN + if is_zip64(size) { 20 } else { 0 }
}

/// Appends an entry's local header: stored, flag bit 3 (a data descriptor
/// follows the data), CRC 0, the known sizes (in a zip64 extra field when
/// [`is_zip64`]), the name (cut to [`MAX_NAME`]) and the extended
/// timestamp. The entry's bytes follow it, then [`data_descriptor`].
/// Appends exactly [`local_header_len`] bytes.
pub fn local_header(name: &[u8], size: u64, mtime_secs: u64, out: &mut Vec<u8>) {
    let name = stored_name(name);
    let zip64 = is_zip64(size);
    let (time, date) = dos_time_date(mtime_secs);
    u32_le(out, LOCAL_SIGNATURE);
    u16_le(out, if zip64 { VERSION_ZIP64 } else { VERSION_PLAIN });
    u16_le(out, flags(name));
    u16_le(out, 0); // stored
    u16_le(out, time);
    u16_le(out, date);
    u32_le(out, 0); // CRC-32: in the data descriptor
    u32_le(out, field_32(size)); // compressed size
    u32_le(out, field_32(size)); // uncompressed size
    u16_le(out, name.len() as u16);
    u16_le(out, local_extra_len(size) as u16);
    out.extend_from_slice(name);
    time_extra(mtime_secs, out);
    if zip64 {
        u16_le(out, 0x0001);
        u16_le(out, 16);
        u64_le(out, size); // uncompressed
        u64_le(out, size); // compressed
    }
}

/// How many bytes [`local_header`] appends.
pub fn local_header_len(name: &[u8], size: u64) -> u64 {
    LOCAL_FIXED + stored_name(name).len() as u64 + local_extra_len(size)
}

/// Appends the data descriptor that follows an entry's `size` bytes: its
/// signature, the CRC-32, and the size twice (compressed, uncompressed), in
/// 8 bytes each when [`is_zip64`], else 4. Appends exactly
/// [`data_descriptor_len`] bytes.
pub fn data_descriptor(crc: u32, size: u64, out: &mut Vec<u8>) {
    u32_le(out, DESCRIPTOR_SIGNATURE);
    u32_le(out, crc);
    if is_zip64(size) {
        u64_le(out, size);
        u64_le(out, size);
    } else {
        u32_le(out, size as u32);
        u32_le(out, size as u32);
    }
}

/// How many bytes [`data_descriptor`] appends: 24 for zip64, else 16.
pub fn data_descriptor_len(size: u64) -> u64 {
    if is_zip64(size) {
        24
    } else {
        16
    }
}

/// Length of the zip64 extra field in a central header (0 when none).
fn central_zip64_len(size: u64, offset: u64) -> u64 {
    let fields = if is_zip64(size) { 2 } else { 0 } + u64::from(offset >= MAX_32);
    if fields == 0 {
        0
    } else {
        4 + 8 * fields
    }
}

/// Appends an entry's central directory header, with its real CRC, sizes
/// and local-header offset (those that do not fit 32 bits in a zip64 extra
/// field), the Unix mode in the external attributes, and the same name,
/// flags and timestamp as its local header. Appends exactly
/// [`central_header_len`] bytes.
pub fn central_header(entry: &ZipEntry, out: &mut Vec<u8>) {
    let name = stored_name(&entry.name);
    let zip64_len = central_zip64_len(entry.size, entry.offset);
    let (time, date) = dos_time_date(entry.mtime_secs);
    let attributes = if entry.is_dir {
        0o040_755 << 16 | DOS_DIRECTORY
    } else {
        0o100_644 << 16
    };
    u32_le(out, CENTRAL_SIGNATURE);
    u16_le(out, MADE_BY);
    u16_le(
        out,
        if zip64_len > 0 {
            VERSION_ZIP64
        } else {
            VERSION_PLAIN
        },
    );
    u16_le(out, flags(name));
    u16_le(out, 0); // stored
    u16_le(out, time);
    u16_le(out, date);
    u32_le(out, entry.crc);
    u32_le(out, field_32(entry.size)); // compressed size
    u32_le(out, field_32(entry.size)); // uncompressed size
    u16_le(out, name.len() as u16);
    u16_le(out, (TIME_EXTRA_LEN + zip64_len) as u16);
    u16_le(out, 0); // comment length
    u16_le(out, 0); // disk number
    u16_le(out, 0); // internal attributes
    u32_le(out, attributes);
    u32_le(out, field_32(entry.offset));
    out.extend_from_slice(name);
    time_extra(entry.mtime_secs, out);
    if zip64_len > 0 {
        u16_le(out, 0x0001);
        u16_le(out, (zip64_len - 4) as u16);
        if is_zip64(entry.size) {
            u64_le(out, entry.size); // uncompressed
            u64_le(out, entry.size); // compressed
        }
        if entry.offset >= MAX_32 {
            u64_le(out, entry.offset);
        }
    }
}

/// How many bytes [`central_header`] appends for an entry with this name,
/// size and local-header offset.
pub fn central_header_len(name: &[u8], size: u64, offset: u64) -> u64 {
    CENTRAL_FIXED
        + stored_name(name).len() as u64
        + TIME_EXTRA_LEN
        + central_zip64_len(size, offset)
}

/// Whether the end records need the zip64 record and locator.
fn zip64_end(entries: u64, central_size: u64, central_offset: u64) -> bool {
    entries >= MAX_16 || central_size >= MAX_32 || central_offset >= MAX_32
}

/// Appends the records that end the archive, after the central directory of
/// `entries` headers, `central_size` bytes long, starting `central_offset`
/// bytes into the archive: the zip64 end of central directory record and
/// its locator when a count, size or offset does not fit the classic record,
/// then the classic end record (no comment). Appends exactly
/// [`end_records_len`] bytes.
pub fn end_records(entries: u64, central_size: u64, central_offset: u64, out: &mut Vec<u8>) {
    let zip64 = zip64_end(entries, central_size, central_offset);
    if zip64 {
        let record_offset = central_offset.saturating_add(central_size);
        u32_le(out, ZIP64_END_SIGNATURE);
        u64_le(out, ZIP64_END_LEN - 12); // the record's size after this field
        u16_le(out, MADE_BY);
        u16_le(out, VERSION_ZIP64);
        u32_le(out, 0); // this disk
        u32_le(out, 0); // the disk where the central directory starts
        u64_le(out, entries); // on this disk
        u64_le(out, entries); // in all
        u64_le(out, central_size);
        u64_le(out, central_offset);
        u32_le(out, ZIP64_LOCATOR_SIGNATURE);
        u32_le(out, 0); // the disk with the zip64 end record
        u64_le(out, record_offset);
        u32_le(out, 1); // disks in all
    }
    let (count, size, offset) = if zip64 {
        (u16::MAX, u32::MAX, u32::MAX)
    } else {
        (entries as u16, central_size as u32, central_offset as u32)
    };
    u32_le(out, END_SIGNATURE);
    u16_le(out, 0); // this disk
    u16_le(out, 0); // the disk where the central directory starts
    u16_le(out, count); // on this disk
    u16_le(out, count); // in all
    u32_le(out, size);
    u32_le(out, offset);
    u16_le(out, 0); // comment length
}

/// How many bytes [`end_records`] appends: 22, plus 76 with zip64.
pub fn end_records_len(entries: u64, central_size: u64, central_offset: u64) -> u64 {
    if zip64_end(entries, central_size, central_offset) {
        ZIP64_END_LEN + ZIP64_LOCATOR_LEN + END_LEN
    } else {
        END_LEN
    }
}

/// The whole archive's length for these entries' `(name, size)` in the
/// order they will be sent (a folder's size is 0): each entry's local
/// header, data and data descriptor, then the central directory and the end
/// records. Saturates at `u64::MAX`, which no real folder comes near.
pub fn archive_len<'a>(entries: impl IntoIterator<Item = (&'a [u8], u64)>) -> u64 {
    let mut offset = 0u64;
    let mut central_size = 0u64;
    let mut count = 0u64;
    for (name, size) in entries {
        central_size = central_size.saturating_add(central_header_len(name, size, offset));
        offset = offset
            .saturating_add(local_header_len(name, size))
            .saturating_add(size)
            .saturating_add(data_descriptor_len(size));
        count += 1;
    }
    offset
        .saturating_add(central_size)
        .saturating_add(end_records_len(count, central_size, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::check::{hex, python, temp_dir, tool};
    use proptest::prelude::*;
    use std::ffi::OsStr;
    use std::io::{Seek, SeekFrom, Write};

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    /// The extra fields of a header as `(id, data)`, checking they tile.
    fn extras(mut extra: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut fields = Vec::new();
        while !extra.is_empty() {
            let len = usize::from(u16_at(extra, 2));
            fields.push((u16_at(extra, 0), extra[4..4 + len].to_vec()));
            extra = &extra[4 + len..];
        }
        fields
    }

    /// An archive built the way the server sends one, with the server's
    /// bookkeeping: `(name, is_dir, data, mtime)` in order.
    fn build(entries: &[(&[u8], bool, &[u8], u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for &(name, is_dir, data, mtime_secs) in entries {
            let offset = out.len() as u64;
            let size = data.len() as u64;
            local_header(name, size, mtime_secs, &mut out);
            out.extend_from_slice(data);
            let mut crc = Crc32::new();
            crc.update(data);
            let crc = crc.finalize();
            data_descriptor(crc, size, &mut out);
            central.push(ZipEntry {
                name: name.to_vec(),
                is_dir,
                size,
                mtime_secs,
                crc,
                offset,
            });
        }
        let central_offset = out.len() as u64;
        for entry in &central {
            let before = out.len();
            central_header(entry, &mut out);
            assert_eq!(
                (out.len() - before) as u64,
                central_header_len(&entry.name, entry.size, entry.offset)
            );
        }
        let central_size = out.len() as u64 - central_offset;
        end_records(central.len() as u64, central_size, central_offset, &mut out);
        let lens = entries
            .iter()
            .map(|&(name, _, data, _)| (name, data.len() as u64));
        assert_eq!(out.len() as u64, archive_len(lens));
        out
    }

    #[test]
    fn dos_time_is_utc_in_two_second_steps_from_1980_to_2107() {
        assert_eq!(dos_time_date(0), (0, 0x21));
        assert_eq!(dos_time_date(315_532_799), (0, 0x21));
        assert_eq!(dos_time_date(315_532_800), (0, 0x21));
        assert_eq!(dos_time_date(315_532_801), (0, 0x21));
        assert_eq!(dos_time_date(315_532_802), (1, 0x21));
        // 2024-02-29 13:45:31, a leap day and an odd second.
        assert_eq!(
            dos_time_date(1_709_214_331),
            (13 << 11 | 45 << 5 | 15, 44 << 9 | 2 << 5 | 29)
        );
        let last = (23 << 11 | 59 << 5 | 29, 127 << 9 | 12 << 5 | 31);
        assert_eq!(dos_time_date(4_354_819_199), last); // 2107-12-31 23:59:59
        assert_eq!(dos_time_date(4_354_819_200), last);
        assert_eq!(dos_time_date(u64::MAX), last);
    }

    #[test]
    fn a_small_file_has_a_plain_local_header_and_descriptor() {
        let mut out = Vec::new();
        local_header(b"docs/a.txt", 5, 1_709_214_331, &mut out);
        assert_eq!(out.len() as u64, local_header_len(b"docs/a.txt", 5));
        assert_eq!(out.len(), 30 + 10 + 9);
        assert_eq!(u32_at(&out, 0), 0x0403_4b50);
        assert_eq!(u16_at(&out, 4), 20, "version needed");
        assert_eq!(u16_at(&out, 6), 1 << 3, "descriptor, ASCII name");
        assert_eq!(u16_at(&out, 8), 0, "stored");
        assert_eq!(u16_at(&out, 10), 13 << 11 | 45 << 5 | 15);
        assert_eq!(u16_at(&out, 12), 44 << 9 | 2 << 5 | 29);
        assert_eq!(u32_at(&out, 14), 0, "CRC comes later");
        assert_eq!((u32_at(&out, 18), u32_at(&out, 22)), (5, 5));
        assert_eq!((u16_at(&out, 26), u16_at(&out, 28)), (10, 9));
        assert_eq!(&out[30..40], b"docs/a.txt");
        let mut time = vec![1];
        time.extend_from_slice(&1_709_214_331u32.to_le_bytes());
        assert_eq!(extras(&out[40..]), [(0x5455, time)]);

        let mut out = Vec::new();
        data_descriptor(0xDEAD_BEEF, 5, &mut out);
        assert_eq!(out.len() as u64, data_descriptor_len(5));
        assert_eq!(
            out,
            [
                &0x0807_4b50u32.to_le_bytes()[..],
                &0xDEAD_BEEFu32.to_le_bytes(),
                &[5, 0, 0, 0, 5, 0, 0, 0]
            ]
            .concat()
        );
    }

    #[test]
    fn the_utf8_flag_is_set_only_for_utf8_beyond_ascii() {
        for (name, utf8) in [
            (&b"plain.txt"[..], false),
            ("caf\u{e9}".as_bytes(), true),
            ("\u{1f600}".as_bytes(), true),
            (b"bad\xff", false),
        ] {
            let mut out = Vec::new();
            local_header(name, 0, 0, &mut out);
            assert_eq!(u16_at(&out, 6) & 1 << 11 != 0, utf8, "{name:?}");
        }
    }

    #[test]
    fn a_5_gib_entry_is_zip64_in_every_header() {
        let size = 5 << 30;
        let mut out = Vec::new();
        local_header(b"big.bin", size, 0, &mut out);
        assert_eq!(out.len() as u64, local_header_len(b"big.bin", size));
        assert_eq!(u16_at(&out, 4), 45, "version needed");
        assert_eq!((u32_at(&out, 18), u32_at(&out, 22)), (u32::MAX, u32::MAX));
        let fields = extras(&out[30 + 7..]);
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].0, 0x0001);
        assert_eq!(
            fields[1].1,
            [size.to_le_bytes(), size.to_le_bytes()].concat()
        );

        let mut out = Vec::new();
        data_descriptor(7, size, &mut out);
        assert_eq!(out.len(), 24);
        assert_eq!(
            (u32_at(&out, 4), u64_at(&out, 8), u64_at(&out, 16)),
            (7, size, size)
        );
        // One byte short of the limit is still plain; the limit itself is not.
        assert!(!is_zip64(0xFFFF_FFFE) && is_zip64(0xFFFF_FFFF));
        assert_eq!(data_descriptor_len(0xFFFF_FFFE), 16);
        assert_eq!(local_header_len(b"x", 0xFFFF_FFFF), 30 + 1 + 9 + 20);
    }

    #[test]
    fn central_headers_put_what_overflows_in_a_zip64_field() {
        let big = 5u64 << 30;
        // (size, offset) -> the zip64 field's values.
        let cases = [
            (5, 100, vec![]),
            (big, 100, vec![big, big]),
            (5, big, vec![big]),
            (big, 0xFFFF_FFFF, vec![big, big, 0xFFFF_FFFF]),
        ];
        for (size, offset, zip64) in cases {
            let entry = ZipEntry {
                name: b"f".to_vec(),
                is_dir: false,
                size,
                mtime_secs: 0,
                crc: 0x1234_5678,
                offset,
            };
            let mut out = Vec::new();
            central_header(&entry, &mut out);
            assert_eq!(out.len() as u64, central_header_len(b"f", size, offset));
            assert_eq!(u32_at(&out, 0), 0x0201_4b50);
            assert_eq!(u16_at(&out, 4), 3 << 8 | 45, "made by Unix");
            assert_eq!(u16_at(&out, 6), if zip64.is_empty() { 20 } else { 45 });
            assert_eq!(u32_at(&out, 16), 0x1234_5678);
            let size_32 = if size >= 0xFFFF_FFFF {
                u32::MAX
            } else {
                size as u32
            };
            assert_eq!((u32_at(&out, 20), u32_at(&out, 24)), (size_32, size_32));
            assert_eq!(u32_at(&out, 38), 0o100_644 << 16, "attributes");
            let offset_32 = if offset >= 0xFFFF_FFFF {
                u32::MAX
            } else {
                offset as u32
            };
            assert_eq!(u32_at(&out, 42), offset_32);
            let fields = extras(&out[47..]);
            assert_eq!(fields[0].0, 0x5455);
            if zip64.is_empty() {
                assert_eq!(fields.len(), 1);
            } else {
                let values: Vec<u8> = zip64.iter().flat_map(|v| v.to_le_bytes()).collect();
                assert_eq!(fields[1], (0x0001, values));
            }
        }
    }

    #[test]
    fn a_folder_is_mode_755_with_the_dos_directory_bit() {
        let entry = ZipEntry {
            name: b"docs/".to_vec(),
            is_dir: true,
            ..ZipEntry::default()
        };
        let mut out = Vec::new();
        central_header(&entry, &mut out);
        assert_eq!(u32_at(&out, 38), 0o040_755 << 16 | 0x10);
    }

    #[test]
    fn end_records_gain_zip64_when_anything_overflows() {
        let mut out = Vec::new();
        end_records(3, 200, 1000, &mut out);
        assert_eq!(out.len() as u64, end_records_len(3, 200, 1000));
        assert_eq!(out.len(), 22);
        assert_eq!(u32_at(&out, 0), 0x0605_4b50);
        assert_eq!((u16_at(&out, 8), u16_at(&out, 10)), (3, 3));
        assert_eq!(
            (u32_at(&out, 12), u32_at(&out, 16), u16_at(&out, 20)),
            (200, 1000, 0)
        );

        for (entries, size, offset) in [
            (0xFFFF, 200, 1000),
            (3, 0xFFFF_FFFF, 1000),
            (3, 200, 5 << 30),
            (u64::MAX, u64::MAX, u64::MAX),
        ] {
            let mut out = Vec::new();
            end_records(entries, size, offset, &mut out);
            assert_eq!(out.len() as u64, end_records_len(entries, size, offset));
            assert_eq!(out.len(), 56 + 20 + 22);
            assert_eq!(u32_at(&out, 0), 0x0606_4b50);
            assert_eq!(u64_at(&out, 4), 44);
            assert_eq!((u16_at(&out, 12), u16_at(&out, 14)), (3 << 8 | 45, 45));
            assert_eq!((u64_at(&out, 24), u64_at(&out, 32)), (entries, entries));
            assert_eq!((u64_at(&out, 40), u64_at(&out, 48)), (size, offset));
            assert_eq!(u32_at(&out, 56), 0x0706_4b50);
            assert_eq!(u64_at(&out, 64), offset.saturating_add(size));
            assert_eq!(u32_at(&out, 72), 1);
            let end = &out[76..];
            assert_eq!(u32_at(end, 0), 0x0605_4b50);
            assert_eq!((u16_at(end, 8), u16_at(end, 10)), (u16::MAX, u16::MAX));
            assert_eq!((u32_at(end, 12), u32_at(end, 16)), (u32::MAX, u32::MAX));
        }
        assert_eq!(end_records_len(0xFFFE, 0xFFFF_FFFE, 0xFFFF_FFFE), 22);
    }

    #[test]
    fn names_longer_than_16_bits_are_cut() {
        let name = vec![b'n'; MAX_NAME + 10];
        let mut out = Vec::new();
        local_header(&name, 1, 0, &mut out);
        assert_eq!(out.len() as u64, local_header_len(&name, 1));
        assert_eq!(usize::from(u16_at(&out, 26)), MAX_NAME);
        assert_eq!(
            archive_len([(&name[..], 1)]),
            build(&[(&name, false, b"x", 0)]).len() as u64
        );
    }

    #[test]
    fn an_empty_archive_is_just_the_end_record() {
        assert_eq!(build(&[]).len(), 22);
        assert_eq!(archive_len([]), 22);
    }

    /// `(name, is_dir, data)` for the real-reader tests.
    fn sample() -> Vec<(Vec<u8>, bool, Vec<u8>)> {
        vec![
            (b"top/".to_vec(), true, vec![]),
            (b"top/hello.txt".to_vec(), false, b"hello, world\n".to_vec()),
            (b"top/empty".to_vec(), false, vec![]),
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
            (
                [&b"top/"[..], &[b'L'; 250]].concat(),
                false,
                (0..=255).collect(),
            ),
            (b"top/sub/".to_vec(), true, vec![]),
            (b"top/sub/leaf".to_vec(), false, vec![0; 70_000]),
        ]
    }

    fn sample_archive() -> Vec<u8> {
        let sample = sample();
        let entries: Vec<(&[u8], bool, &[u8], u64)> = sample
            .iter()
            .map(|(name, is_dir, data)| (&name[..], *is_dir, &data[..], 1_709_214_331))
            .collect();
        build(&entries)
    }

    #[test]
    fn python_zipfile_reads_the_sample() {
        let dir = temp_dir();
        let file = dir.path().join("sample.zip");
        std::fs::write(&file, sample_archive()).unwrap();
        let listing = python(
            r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    assert z.testzip() is None
    for i in z.infolist():
        raw = i.filename.encode("utf-8" if i.flag_bits & 0x800 else "cp437")
        data = "-" if i.is_dir() else z.read(i).hex()
        print(raw.hex(), i.is_dir(), i.file_size, oct(i.external_attr >> 16),
              "%04d-%02d-%02dT%02d:%02d:%02d" % i.date_time, data)
"#,
            &[&file],
        );
        let lines: Vec<&str> = listing.lines().collect();
        let sample = sample();
        assert_eq!(lines.len(), sample.len(), "{listing}");
        for (line, (name, is_dir, data)) in lines.iter().zip(&sample) {
            let (mode, shown) = if *is_dir {
                ("0o40755", "-".to_string())
            } else {
                ("0o100644", hex(data))
            };
            let expected = format!(
                "{} {} {} {mode} 2024-02-29T13:45:30 {shown}",
                hex(name),
                if *is_dir { "True" } else { "False" },
                data.len(),
            );
            assert_eq!(*line, expected);
        }
    }

    #[test]
    fn info_zip_tests_and_extracts_the_sample() {
        let dir = temp_dir();
        let file = dir.path().join("sample.zip");
        std::fs::write(&file, sample_archive()).unwrap();
        let Some(report) = tool("unzip", &[OsStr::new("-t"), file.as_os_str()], false) else {
            return;
        };
        assert!(report.contains("No errors detected"), "{report}");
        let out = dir.path().join("out");
        tool(
            "unzip",
            &[
                OsStr::new("-q"),
                file.as_os_str(),
                OsStr::new("-d"),
                out.as_os_str(),
            ],
            true,
        );
        let leaf = std::fs::read(out.join("top/sub/leaf")).unwrap();
        assert_eq!(leaf, vec![0; 70_000]);
        assert_eq!(
            std::fs::read(out.join("top/hello.txt")).unwrap(),
            b"hello, world\n"
        );
    }

    /// 70,000 empty files: more entries than the classic end record counts.
    #[test]
    fn python_zipfile_reads_a_zip64_end_with_70000_entries() {
        let names: Vec<Vec<u8>> = (0..70_000)
            .map(|i| format!("e/{i:05}").into_bytes())
            .collect();
        let entries: Vec<(&[u8], bool, &[u8], u64)> = names
            .iter()
            .map(|name| (&name[..], false, &b""[..], 0))
            .collect();
        let archive = build(&entries);
        assert_eq!(u32_at(&archive, archive.len() - 98), 0x0606_4b50);
        let dir = temp_dir();
        let file = dir.path().join("many.zip");
        std::fs::write(&file, archive).unwrap();
        let report = python(
            r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    assert z.testzip() is None
    names = z.namelist()
    print(len(names), names[0], names[-1], sum(i.file_size for i in z.infolist()))
"#,
            &[&file],
        );
        assert_eq!(report, "70000 e/00000 e/69999 0\n");
    }

    /// A 5 GiB entry whose data is a hole in a sparse file, between two small
    /// ones: the last entry's local header and the central directory are past
    /// 4 GiB, so sizes, an offset and the end records are all zip64.
    fn sparse_zip(path: &std::path::Path) -> Vec<ZipEntry> {
        let big = 5u64 << 30;
        let mut file = std::fs::File::create(path).unwrap();
        // The CRC-32 of 5 GiB of zeros, by combining rather than hashing.
        let mut zeros = Crc32::new();
        zeros.update(&vec![0; 1 << 20]);
        for _ in 0..10 {
            let half = zeros.clone();
            zeros.combine(&half); // doubles: 1 GiB after ten
        }
        let gib = zeros.clone();
        for _ in 0..4 {
            zeros.combine(&gib);
        }
        let mut offset = 0;
        let mut central = Vec::new();
        for (name, size) in [(&b"a.txt"[..], 1), (b"big.bin", big), (b"z.txt", 1)] {
            let mut out = Vec::new();
            local_header(name, size, 0, &mut out);
            let crc = if size == big {
                file.write_all(&out).unwrap();
                file.seek(SeekFrom::Current(big as i64)).unwrap();
                out.clear();
                zeros.clone().finalize()
            } else {
                out.push(name[0]);
                let mut crc = Crc32::new();
                crc.update(&name[..1]);
                crc.finalize()
            };
            data_descriptor(crc, size, &mut out);
            file.write_all(&out).unwrap();
            central.push(ZipEntry {
                name: name.to_vec(),
                is_dir: false,
                size,
                mtime_secs: 0,
                crc,
                offset,
            });
            offset = file.stream_position().unwrap();
        }
        let mut out = Vec::new();
        for entry in &central {
            central_header(entry, &mut out);
        }
        end_records(3, out.len() as u64, offset, &mut out);
        file.write_all(&out).unwrap();
        drop(file);
        let names = [(&b"a.txt"[..], 1), (b"big.bin", big), (b"z.txt", 1)];
        assert_eq!(std::fs::metadata(path).unwrap().len(), archive_len(names));
        assert!(central[2].offset > 0xFFFF_FFFF);
        central
    }

    #[test]
    fn python_zipfile_reads_past_a_5_gib_entry() {
        let big = 5u64 << 30;
        let dir = temp_dir();
        let path = dir.path().join("big.zip");
        let central = sparse_zip(&path);
        let report = python(
            r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for i in z.infolist():
        print(i.filename, i.file_size, i.header_offset, "%08x" % i.CRC)
    print(z.read("a.txt").decode(), z.read("z.txt").decode())
"#,
            &[&path],
        );
        let expected = format!(
            "a.txt 1 0 {:08x}\nbig.bin {big} {} {:08x}\nz.txt 1 {} {:08x}\na z\n",
            central[0].crc, central[1].offset, central[1].crc, central[2].offset, central[2].crc
        );
        assert_eq!(report, expected);
        if let Some(listing) = tool("unzip", &[OsStr::new("-l"), path.as_os_str()], false) {
            assert!(listing.contains(&format!("{big}")), "{listing}");
            assert!(listing.contains("z.txt"), "{listing}");
        }
    }

    /// Info-ZIP reads all 5 GiB of the sparse entry and checks its CRC and
    /// the zip64 sizes in its local header and descriptor: a few seconds of
    /// reading zeros, so only on request (`cargo test -- --ignored`).
    #[test]
    #[ignore]
    fn info_zip_tests_a_5_gib_entry() {
        let dir = temp_dir();
        let path = dir.path().join("big.zip");
        sparse_zip(&path);
        let report = tool("unzip", &[OsStr::new("-t"), path.as_os_str()], true).unwrap();
        assert!(report.contains("No errors detected"), "{report}");
    }

    /// Reads back the central directory of a whole archive built by
    /// [`build`], checking each local header and descriptor agree with it.
    fn check_structure(archive: &[u8], expected: &[(Vec<u8>, u64)]) {
        let end = &archive[archive.len() - 22..];
        assert_eq!(u32_at(end, 0), 0x0605_4b50);
        let (count, size, offset) = if u16_at(end, 10) == u16::MAX {
            let record = &archive[archive.len() - 98..];
            assert_eq!(u32_at(record, 0), 0x0606_4b50);
            (u64_at(record, 32), u64_at(record, 40), u64_at(record, 48))
        } else {
            (
                u64::from(u16_at(end, 10)),
                u64::from(u32_at(end, 12)),
                u64::from(u32_at(end, 16)),
            )
        };
        assert_eq!(count, expected.len() as u64);
        let mut at = offset as usize;
        for (name, data_len) in expected {
            let header = &archive[at..];
            assert_eq!(u32_at(header, 0), 0x0201_4b50);
            let name_len = usize::from(u16_at(header, 28));
            let extra_len = usize::from(u16_at(header, 30));
            let stored = &header[46..46 + name_len];
            assert_eq!(stored, stored_name(name));
            let local_at = u32_at(header, 42) as usize;
            let local = &archive[local_at..];
            assert_eq!(u32_at(local, 0), 0x0403_4b50);
            assert_eq!(&local[30..30 + name_len], stored);
            assert_eq!(u16_at(local, 6), u16_at(header, 8), "same flags");
            let data_at = 30 + name_len + usize::from(u16_at(local, 28));
            let descriptor = &local[data_at + *data_len as usize..];
            assert_eq!(u32_at(descriptor, 0), 0x0807_4b50);
            assert_eq!(u32_at(descriptor, 4), u32_at(header, 16), "same CRC");
            at += 46 + name_len + extra_len;
        }
        assert_eq!(at as u64, offset + size);
    }

    fn any_name() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 1..400)
    }

    fn any_size() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..(1 << 40), 0xFFFF_FFF0u64..0x1_0000_0010, any::<u64>()]
    }

    proptest! {
        #[test]
        fn every_length_matches_what_is_written(
            name in any_name(),
            size in any_size(),
            offset in any_size(),
            mtime_secs in any::<u64>(),
            crc in any::<u32>(),
            is_dir in any::<bool>(),
            entries in any_size(),
            central_size in any_size(),
        ) {
            let mut out = vec![0xAA; 3]; // appends, never overwrites
            local_header(&name, size, mtime_secs, &mut out);
            prop_assert_eq!(out.len() as u64 - 3, local_header_len(&name, size));
            prop_assert_eq!(&out[..3], &[0xAA; 3]);
            out.truncate(0);
            data_descriptor(crc, size, &mut out);
            prop_assert_eq!(out.len() as u64, data_descriptor_len(size));
            out.truncate(0);
            let entry = ZipEntry { name: name.clone(), is_dir, size, mtime_secs, crc, offset };
            central_header(&entry, &mut out);
            prop_assert_eq!(out.len() as u64, central_header_len(&name, size, offset));
            out.truncate(0);
            end_records(entries, central_size, offset, &mut out);
            prop_assert_eq!(out.len() as u64, end_records_len(entries, central_size, offset));
        }

        #[test]
        fn whole_archives_are_as_long_as_archive_len_says(
            files in prop::collection::vec((any_name(), prop::collection::vec(any::<u8>(), 0..600)), 0..8),
        ) {
            let entries: Vec<(&[u8], bool, &[u8], u64)> =
                files.iter().map(|(name, data)| (&name[..], false, &data[..], 1_000_000_000)).collect();
            let archive = build(&entries); // asserts archive_len
            let expected: Vec<(Vec<u8>, u64)> =
                files.iter().map(|(name, data)| (name.clone(), data.len() as u64)).collect();
            check_structure(&archive, &expected);
        }
    }
}
