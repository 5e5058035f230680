//! The byte formats for sending a folder as one archive: [`tar`] (POSIX pax,
//! for `?tar`) and [`zip`] (stored, uncompressed, for `?zip`). Both are pure:
//! every writer appends to a `Vec<u8>`, and every writer has a `*_len` twin
//! that says exactly how many bytes it would append without writing them, so
//! the server can add up the whole archive's `Content-Length` from a list of
//! (path, size, mtime) before it sends the first byte, then stream each
//! member's head, its file bytes (by `sendfile` for tar; by read and write,
//! computing the CRC-32 on the way, for zip) and its tail. Nothing here reads
//! files or panics on any name or size.

pub mod tar;
pub mod zip;

/// What the format tests share: running a real reader over an archive.
#[cfg(test)]
mod check {
    use std::process::Command;

    /// Runs `python3 -c script args...` and returns its standard output,
    /// failing the test with Python's error if the script fails. Python's
    /// `tarfile` and `zipfile` are the independent readers these tests trust,
    /// so a machine without python3 fails them rather than passing untested.
    pub fn python(script: &str, args: &[&std::path::Path]) -> String {
        let output = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("python3 could not be run ({e}): the archive tests check archives with Python's tarfile and zipfile; install python3")
            });
        assert!(
            output.status.success(),
            "python3 failed on the archive:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `program args...` (a system tool such as `tar` or `unzip`) and
    /// returns its standard output; fails the test when it runs and fails or
    /// writes anything to standard error.
    /// When it is not installed: fails the test if it is `required`, else
    /// says SKIPPED and returns `None`.
    pub fn tool(program: &str, args: &[&std::ffi::OsStr], required: bool) -> Option<String> {
        let output = match Command::new(program).args(args).output() {
            Ok(output) => output,
            Err(e) if required => panic!("{program} could not be run ({e}); install it"),
            Err(e) => {
                eprintln!("SKIPPED: {program} could not be run ({e})");
                return None;
            }
        };
        // A warning is a failure too: GNU tar, say, warns and goes on.
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{program} failed or warned on the archive:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Bytes as lower-case hex, as the Python checks print them.
    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A temporary folder for archives and what is unpacked from them.
    pub fn temp_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("rill-archive-")
            .tempdir()
            .expect("temp dir")
    }
}
