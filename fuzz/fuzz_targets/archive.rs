//! The tar and zip writers on an arbitrary name, size, time, offset and CRC:
//! nothing panics, every `*_len` is exactly what its writer appends, tar
//! heads are whole blocks with valid checksums, and a whole zip of entries
//! of these names is as long as `archive_len` says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill::archive::{tar, zip};

/// Eight bytes from the front of `data` as a number, fewer if short.
fn take_u64(data: &mut &[u8]) -> u64 {
    let n = data.len().min(8);
    let mut bytes = [0u8; 8];
    bytes[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    u64::from_le_bytes(bytes)
}

/// Sizes mostly near the limits the formats care about.
fn interesting(raw: u64) -> u64 {
    match raw % 4 {
        0 => raw >> 2,
        1 => (0xFFFF_FFFF - 8) + (raw >> 2) % 16,
        2 => (0o777_7777_7777 - 8) + (raw >> 2) % 16,
        _ => u64::MAX - (raw >> 2) % 16,
    }
}

/// Checks a tar header block's checksum.
fn checksum_ok(block: &[u8]) -> bool {
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let field: String = block[148..154].iter().map(|&b| b as char).collect();
    u64::from_str_radix(&field, 8) == Ok(sum) && block[154] == 0 && block[155] == b' '
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let flags = take_u64(&mut data);
    let size = interesting(take_u64(&mut data));
    let offset = interesting(take_u64(&mut data));
    let mtime = take_u64(&mut data);
    let name = data;
    let is_dir = flags & 1 != 0;

    let mut out = Vec::new();
    tar::member_head(name, is_dir, size, mtime, &mut out);
    assert_eq!(out.len() as u64, tar::member_head_len(name, is_dir, size));
    assert_eq!(out.len() % tar::BLOCK, 0);
    // The first block is the pax header or the ustar one, the last the
    // ustar one.
    assert!(checksum_ok(&out[..tar::BLOCK]));
    assert!(checksum_ok(&out[out.len() - tar::BLOCK..]));
    let data_size = if is_dir { 0 } else { size };
    let padding = tar::padding_len(data_size);
    assert!(padding < tar::BLOCK);
    assert_eq!(
        data_size.wrapping_add(padding as u64) % tar::BLOCK as u64,
        0
    );

    out.clear();
    zip::local_header(name, size, mtime, &mut out);
    assert_eq!(out.len() as u64, zip::local_header_len(name, size));
    out.clear();
    zip::data_descriptor(flags as u32, size, &mut out);
    assert_eq!(out.len() as u64, zip::data_descriptor_len(size));
    out.clear();
    let entry = zip::ZipEntry {
        name: name.to_vec(),
        is_dir,
        size,
        mtime_secs: mtime,
        crc: (flags >> 32) as u32,
        offset,
    };
    zip::central_header(&entry, &mut out);
    assert_eq!(
        out.len() as u64,
        zip::central_header_len(name, size, offset)
    );
    out.clear();
    let entries = interesting(flags >> 1) >> (flags % 48);
    zip::end_records(entries, size, offset, &mut out);
    assert_eq!(
        out.len() as u64,
        zip::end_records_len(entries, size, offset)
    );

    // A whole archive of small entries named by pieces of `name`.
    let names: Vec<&[u8]> = name.split(|&b| b == b'\n').take(16).collect();
    let mut archive = Vec::new();
    let mut central = Vec::new();
    for (i, piece) in names.iter().enumerate() {
        let offset = archive.len() as u64;
        let content = &name[..i.min(name.len())];
        zip::local_header(piece, content.len() as u64, mtime, &mut archive);
        archive.extend_from_slice(content);
        let mut crc = zip::Crc32::new();
        crc.update(content);
        let crc = crc.finalize();
        zip::data_descriptor(crc, content.len() as u64, &mut archive);
        central.push(zip::ZipEntry {
            name: piece.to_vec(),
            is_dir: false,
            size: content.len() as u64,
            mtime_secs: mtime,
            crc,
            offset,
        });
    }
    let central_offset = archive.len() as u64;
    for entry in &central {
        zip::central_header(entry, &mut archive);
    }
    let central_size = archive.len() as u64 - central_offset;
    zip::end_records(
        central.len() as u64,
        central_size,
        central_offset,
        &mut archive,
    );
    let lens = names
        .iter()
        .enumerate()
        .map(|(i, piece)| (*piece, i.min(name.len()) as u64));
    assert_eq!(archive.len() as u64, zip::archive_len(lens));
});
