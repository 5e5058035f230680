//! A folder as one download (`?tar`, `?zip`), as JSON for scripts, and as a
//! listing of any size — checked with the real tools people use on them:
//! `tar`, Python's `tarfile` and `zipfile`, `jq`, curl.

mod common;

use common::{read_response, tool_runs, Rill};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A folder with what archives get wrong: a long path, non-ASCII and
/// awkward names, an empty file and folder, a big file (sent with
/// sendfile), hidden files and a symlink out of ROOT (both left out).
fn awkward_folder(root: &Path) {
    let top = root.join("share");
    let long_dir = top.join("a".repeat(90)).join("b".repeat(90));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(
        long_dir.join(format!("{}.txt", "c".repeat(120))),
        b"deep and long",
    )
    .unwrap();
    fs::write(
        top.join("café – ünïcode ✓.txt"),
        "non-ASCII name".as_bytes(),
    )
    .unwrap();
    fs::write(top.join("quote\" and \\ back.txt"), b"awkward").unwrap();
    fs::write(top.join("empty.txt"), b"").unwrap();
    fs::create_dir_all(top.join("empty folder")).unwrap();
    fs::write(top.join("big.bin"), common::pseudo_random(3 << 20, 7)).unwrap();
    fs::write(top.join(".secret"), b"hidden").unwrap();
    fs::create_dir_all(top.join(".git")).unwrap();
    fs::write(top.join(".git/config"), b"hidden too").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", top.join("passwd")).unwrap();
    std::os::unix::fs::symlink("big.bin", top.join("link to big.bin")).unwrap();
}

/// Every file below `dir` (not hidden, links followed), by relative path.
fn expected_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if fs::canonicalize(&path)
                .map(|real| !real.starts_with(fs::canonicalize(dir).unwrap()))
                .unwrap_or(true)
            {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((relative, fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// GETs `target` and returns the whole response, framed by Content-Length.
fn get(rill: &Rill, target: &str) -> common::Response {
    rill.get(target)
}

/// Runs a Python script with `arg` and returns its stdout; fails the test
/// when the script fails.
fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const READ_TAR: &str = r#"
import sys, tarfile, json
with tarfile.open(sys.argv[1]) as archive:
    out = {}
    for member in archive.getmembers():
        if member.isfile():
            out[member.name] = archive.extractfile(member).read().hex()
        else:
            out[member.name] = "dir" if member.isdir() else "other"
print(json.dumps(out, sort_keys=True))
"#;

const READ_ZIP: &str = r#"
import sys, zipfile, json
with zipfile.ZipFile(sys.argv[1]) as archive:
    assert archive.testzip() is None, "a CRC is wrong"
    out = {}
    for info in archive.infolist():
        out[info.filename] = "dir" if info.is_dir() else archive.read(info).hex()
print(json.dumps(out, sort_keys=True))
"#;

fn check_archive(kind: &str, reader: &str) {
    if !tool_runs("python3", &["--version"], "python3 is not installed") {
        return;
    }
    let site = common::site();
    awkward_folder(site.path());
    let rill = Rill::start(site.path(), &[]);
    let response = get(&rill, &format!("/share/?{kind}"));
    assert_eq!(response.status, 200);
    let expected_type = if kind == "tar" {
        "application/x-tar"
    } else {
        "application/zip"
    };
    assert_eq!(response.header("content-type"), Some(expected_type));
    assert!(response
        .header("content-disposition")
        .is_some_and(|d| d.contains(&format!("share.{kind}"))));
    // Content-Length was announced up front and is exactly the body.
    let length: usize = response.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, response.body.len());

    let file = site.path().join(format!("out.{kind}"));
    fs::write(&file, &response.body).unwrap();
    let listed = python(reader, &[file.to_str().unwrap()]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let listed = listed.as_object().unwrap();
    let expected = expected_files(&site.path().join("share"));
    for (path, bytes) in &expected {
        let name = format!("share/{path}");
        let got = listed
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing from the {kind}"));
        assert_eq!(got.as_str().unwrap(), hex(bytes), "{name}'s bytes");
    }
    let files_listed = listed
        .values()
        .filter(|v| v.as_str() != Some("dir"))
        .count();
    assert_eq!(files_listed, expected.len(), "no extra files: {listed:?}");
    assert_eq!(
        listed
            .get("share/empty folder/")
            .or(listed.get("share/empty folder"))
            .map(|v| v.as_str()),
        Some(Some("dir"))
    );
    for name in listed.keys() {
        assert!(
            !name.contains(".secret") && !name.contains(".git"),
            "hidden {name} archived"
        );
        assert!(
            !name.ends_with("passwd"),
            "a link out of ROOT was followed: {name}"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A folder reached twice — itself and through symlinks that sort before
/// and after it — is archived once, as itself; a symlink to a folder
/// outside the archived one (inside ROOT) is followed; one to an ancestor
/// is not walked into again.
#[test]
fn a_real_folder_is_archived_where_it_is_and_links_to_it_are_left_out() {
    if !tool_runs("python3", &["--version"], "python3 is not installed") {
        return;
    }
    let site = common::site();
    let top = site.path().join("album");
    fs::create_dir_all(top.join("photos")).unwrap();
    fs::write(top.join("photos/1.jpg"), b"one").unwrap();
    fs::create_dir_all(site.path().join("elsewhere")).unwrap();
    fs::write(site.path().join("elsewhere/e.txt"), b"from elsewhere").unwrap();
    for (link, target) in [
        ("a_link", "photos"),
        ("z_link", "photos"),
        ("outside", "../elsewhere"),
        ("up", ".."),
    ] {
        std::os::unix::fs::symlink(target, top.join(link)).unwrap();
    }
    let rill = Rill::start(site.path(), &[]);
    for (kind, reader) in [("tar", READ_TAR), ("zip", READ_ZIP)] {
        let response = get(&rill, &format!("/album/?{kind}"));
        assert_eq!(response.status, 200, "{kind}");
        let file = site.path().join(format!("album.{kind}"));
        fs::write(&file, &response.body).unwrap();
        let listed: serde_json::Value =
            serde_json::from_str(&python(reader, &[file.to_str().unwrap()])).unwrap();
        let files: Vec<&str> = listed
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| v.as_str() != Some("dir"))
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            files,
            ["album/outside/e.txt", "album/photos/1.jpg"],
            "{kind}: {listed}"
        );
        fs::remove_file(&file).unwrap();
    }
}

#[test]
fn a_folder_as_tar_is_read_back_byte_exact_by_python() {
    check_archive("tar", READ_TAR);
}

#[test]
fn a_folder_as_zip_is_read_back_byte_exact_by_python_with_every_crc_right() {
    check_archive("zip", READ_ZIP);
}

#[test]
fn gnu_tar_lists_and_extracts_the_archive() {
    if !tool_runs("tar", &["--version"], "tar is not installed") {
        return;
    }
    let site = common::site();
    awkward_folder(site.path());
    let rill = Rill::start(site.path(), &[]);
    let body = get(&rill, "/share/?tar").body;
    let out = tempfile::tempdir().unwrap();
    let mut tar = Command::new("tar")
        .args(["-x", "-f", "-", "-C"])
        .arg(out.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    tar.stdin.take().unwrap().write_all(&body).unwrap();
    assert!(tar.wait().unwrap().success());
    assert_eq!(
        expected_files(&out.path().join("share")),
        expected_files(&site.path().join("share"))
    );
    let listing = Command::new("tar")
        .args(["-t", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut listing = listing;
    listing.stdin.take().unwrap().write_all(&body).unwrap();
    let names = String::from_utf8(listing.wait_with_output().unwrap().stdout).unwrap();
    assert!(
        names.lines().any(|l| l == "share/café – ünïcode ✓.txt"),
        "{names}"
    );
    assert!(
        names.lines().any(|l| l.len() > 300),
        "the long path is whole: {names}"
    );
}

#[test]
fn the_root_folder_and_head_and_missing_folders() {
    let site = common::site();
    fs::write(site.path().join("a.txt"), b"a").unwrap();
    let rill = Rill::start(site.path(), &[]);
    let tar = get(&rill, "/?tar");
    assert_eq!(tar.status, 200);
    let head = rill.request("HEAD /?tar HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.header("content-length"), tar.header("content-length"));
    assert!(head.body.is_empty());
    assert_eq!(get(&rill, "/nothing/?tar").status, 404);
    assert_eq!(get(&rill, "/a.txt?tar").status, 200, "a file ignores ?tar");
}

/// A file that grows after the walk sized the archive: the answer stops
/// short of its Content-Length (the client can tell), never a complete
/// archive with the wrong bytes.
#[test]
fn a_file_that_changes_while_archived_ends_the_answer_short() {
    let site = common::site();
    let dir = site.path().join("d");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a.bin"), common::pseudo_random(8 << 20, 1)).unwrap();
    fs::write(dir.join("b.bin"), common::pseudo_random(1 << 20, 2)).unwrap();
    let rill = Rill::start(site.path(), &[]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /d/?tar HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    // Read the head and a little of a.bin, then make b.bin bigger.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        reader.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut first = vec![0u8; 4096];
    reader.read_exact(&mut first).unwrap();
    fs::write(dir.join("b.bin"), common::pseudo_random(2 << 20, 3)).unwrap();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(
        first.len() + rest.len() < length,
        "{} of {length} bytes: the answer must end short",
        first.len() + rest.len()
    );
}

#[test]
fn json_listing_for_scripts_with_jq() {
    if !tool_runs("jq", &["--version"], "jq is not installed") || !common::curl_available() {
        return;
    }
    let site = common::site();
    fs::create_dir(site.path().join("sub dir")).unwrap();
    fs::write(site.path().join("a \"q\".txt"), b"12345").unwrap();
    fs::write(site.path().join(".hidden"), b"x").unwrap();
    let rill = Rill::start(site.path(), &[]);
    for (args, url) in [
        (vec!["-H", "Accept: application/json"], rill.url("/")),
        (vec![], rill.url("/?json")),
    ] {
        let curl = Command::new("curl")
            .args(["-s", "--fail"])
            .args(&args)
            .arg(&url)
            .output()
            .unwrap();
        assert!(curl.status.success());
        let mut jq = Command::new("jq")
            .args([
                "-r",
                ".[] | [.name, .type, (.size|tostring), .url, .modified] | @tsv",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        jq.stdin.take().unwrap().write_all(&curl.stdout).unwrap();
        let out = jq.wait_with_output().unwrap();
        assert!(out.status.success(), "jq parsed it");
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let dir: Vec<&str> = lines[0].split('\t').collect();
        assert_eq!(&dir[..4], ["sub dir", "dir", "0", "/sub%20dir/"]);
        let file: Vec<&str> = lines[1].split('\t').collect();
        assert_eq!(&file[..4], ["a \"q\".txt", "file", "5", "/a%20%22q%22.txt"]);
        // RFC 3339, UTC.
        assert!(
            file[4].len() == 20 && file[4].ends_with('Z') && file[4].as_bytes()[10] == b'T',
            "{}",
            file[4]
        );
    }
}

/// Reads a chunked body from `reader` (after its head).
fn read_chunked(reader: &mut impl std::io::BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

#[test]
fn a_big_listing_streams_sorted_in_chunks_and_over_http10() {
    let site = common::site();
    let dir = site.path().join("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..3000 {
        fs::write(dir.join(format!("file{i}.txt")), vec![b'x'; i % 97]).unwrap();
    }
    let rill = Rill::start(site.path(), &["--log-level", "info"]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /many/?json&sort=size&order=desc HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    let body = read_chunked(&mut reader);
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(entries.len(), 3000);
    let sizes: Vec<u64> = entries
        .iter()
        .map(|e| e["size"].as_u64().unwrap())
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0] >= w[1]),
        "sorted by size, descending"
    );

    // HTTP/1.0 has no chunked coding: the close ends the body.
    let mut stream = rill.connect();
    stream.write_all(b"GET /many/ HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.header("transfer-encoding"), None);
    let page = response.text();
    assert!(page.trim_end().ends_with("</html>"), "the page is whole");
    assert_eq!(page.matches("href=\"./file2999.txt\"").count(), 1);
    // Its access line counts the body it streamed, unknown at its head.
    let log = rill.stop();
    let (line, logged) = common::access_line_of_200(&log, "GET /many/");
    assert_eq!(logged, response.body.len() as u64, "{line}");
}

/// An archive download the client gives up on logs the bytes that left,
/// not the length its head promised.
#[test]
fn an_archive_cut_short_logs_what_left() {
    let site = common::site();
    fs::create_dir(site.path().join("big")).unwrap();
    fs::write(
        site.path().join("big/data.bin"),
        common::pseudo_random(32 << 20, 3),
    )
    .unwrap();
    let rill = Rill::start(site.path(), &["--log-level", "info"]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /big/?tar HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 64 << 10];
    stream.read_exact(&mut first).unwrap();
    let head =
        String::from_utf8_lossy(&first[..first.windows(4).position(|w| w == b"\r\n\r\n").unwrap()])
            .into_owned();
    let promised: u64 = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no length in {head}"));
    drop(stream);
    std::thread::sleep(Duration::from_millis(500));
    let log = rill.stop();
    let (line, logged) = common::access_line_of_200(&log, "GET /big/?tar");
    assert!(
        logged > 0 && logged < promised / 2,
        "{line} (promised {promised})"
    );
}

/// The issue's load: 20 (here 50) concurrent requests for a folder of
/// 100 000 entries. Each reads slowly, so all of them are in flight at
/// once; rill's peak memory must not grow with their number.
#[test]
fn fifty_readers_of_a_huge_listing_share_one_snapshot() {
    let site = common::site();
    let dir = site.path().join("huge");
    fs::create_dir(&dir).unwrap();
    for i in 0..100_000 {
        fs::File::create(dir.join(format!("entry-{i:06}"))).unwrap();
    }
    let rill = Rill::start(site.path(), &[]);
    let before = peak_rss_kib(rill.pid());
    let readers: Vec<_> = (0..50)
        .map(|i| {
            let mut stream = rill.connect();
            let order = ["name", "size", "mtime"][i % 3];
            write!(
                stream,
                "GET /huge/?sort={order} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let threads: Vec<_> = readers
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                let mut all = Vec::new();
                stream.read_to_end(&mut all).unwrap();
                all
            })
        })
        .collect();
    for thread in threads {
        let all = thread.join().unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200"));
        assert_eq!(text.matches("href=\"./entry-099999\"").count(), 1);
    }
    let peak = peak_rss_kib(rill.pid());
    eprintln!("peak RSS {peak} KiB (at start {before} KiB)");
    assert!(
        peak < 40 * 1024,
        "peak RSS {peak} KiB for 50 readers of 100 000 entries"
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// Requests pipelined around a listing that needs many steps: every
/// answer arrives whole and in order, the listing chunked between them.
#[test]
fn pipelined_requests_around_a_prepared_listing_stay_in_order() {
    let site = common::site();
    let dir = site.path().join("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..5000 {
        fs::File::create(dir.join(format!("n{i}"))).unwrap();
    }
    fs::write(site.path().join("a.txt"), b"first").unwrap();
    fs::write(site.path().join("b.txt"), b"last").unwrap();
    let rill = Rill::start(site.path(), &[]);
    let mut stream = rill.connect();
    stream
        .write_all(
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /many/?json HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /b.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader, false).unwrap();
    assert_eq!(first.body, b"first");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut head = String::new();
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    let listing: Vec<serde_json::Value> =
        serde_json::from_slice(&read_chunked(&mut reader)).unwrap();
    assert_eq!(listing.len(), 5000);
    let last = read_response(&mut reader, false).unwrap();
    assert_eq!(last.body, b"last");
}

/// A client that asks for a big folder's archive and leaves at once: the
/// walk stops at its next step instead of running to its timeout.
#[test]
fn an_abandoned_archive_is_not_walked_to_the_end() {
    let site = common::site();
    let dir = site.path().join("tree");
    for d in 0..400 {
        let sub = dir.join(format!("d{d}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..50 {
            fs::File::create(sub.join(format!("f{f}"))).unwrap();
        }
    }
    let rill = Rill::start(site.path(), &["--log-level", "debug"]);
    for _ in 0..3 {
        let mut stream = rill.connect();
        stream
            .write_all(b"GET /tree/?tar HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        drop(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rill.get("/tree/d1/f1").status, 200, "still serving");
    let log = rill.stop();
    assert!(
        log.matches("client left while its answer was prepared")
            .count()
            >= 2,
        "{log}"
    );
}

/// A GET with a body, answered with a multipart body, then a pipelined
/// request: the body is dropped first, then the whole answer goes out,
/// and only then is the next request answered.
#[test]
fn a_get_with_a_body_keeps_its_streamed_answer_whole() {
    let site = common::site();
    let data = common::pseudo_random(100_000, 9);
    fs::write(site.path().join("f.bin"), &data).unwrap();
    fs::write(site.path().join("x.txt"), b"next").unwrap();
    let rill = Rill::start(site.path(), &[]);
    for range in ["bytes=0-9,50000-50009", "bytes=0-"] {
        let mut stream = rill.connect();
        write!(
            stream,
            "GET /f.bin HTTP/1.1\r\nHost: x\r\nRange: {range}\r\nContent-Length: 2\r\n\r\nhi\
             GET /x.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let first = read_response(&mut reader, false).unwrap();
        assert_eq!(first.status, 206, "{range}");
        let length: usize = first.header("content-length").unwrap().parse().unwrap();
        assert_eq!(first.body.len(), length);
        if range.contains(',') {
            let body = String::from_utf8_lossy(&first.body);
            assert!(
                body.contains("Content-Range: bytes 50000-50009/100000"),
                "{body}"
            );
            assert!(
                body.trim_end().ends_with("--"),
                "the closing boundary is there"
            );
        } else {
            assert_eq!(first.body, data);
        }
        let second = read_response(&mut reader, false).unwrap();
        assert_eq!(second.body, b"next", "{range}");
    }
}

/// A shutdown that comes while a big listing is still being prepared lets
/// it finish, like an answer being sent, within the grace period.
#[test]
fn a_shutdown_lets_a_listing_being_prepared_finish() {
    let site = common::site();
    let dir = site.path().join("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..30_000 {
        fs::File::create(dir.join(format!("entry {i}"))).unwrap();
    }
    let mut rill = Rill::start(site.path(), &[]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /many/?sort=size HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    rill.signal(libc::SIGTERM);
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.ends_with("0\r\n\r\n"), "the chunked body is whole");
    assert_eq!(text.matches("href=\"./entry%2029999\"").count(), 1);
    assert!(rill.wait_exit(Duration::from_secs(10)).is_some());
}

/// The live page's counters show a connection preparing a big listing as
/// `preparing`, and other requests are answered meanwhile.
#[test]
fn a_listing_being_prepared_shows_in_the_counters() {
    let site = common::site();
    let dir = site.path().join("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..30_000 {
        fs::File::create(dir.join(format!("entry {i}"))).unwrap();
    }
    let rill = Rill::start(site.path(), &["--stats"]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /many/?sort=mtime HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut seen = false;
    for _ in 0..200 {
        let stats = rill.get("/.rill/stats").text();
        if stats.contains("\"preparing\":1") {
            seen = true;
            break;
        }
    }
    assert!(seen, "never seen preparing");
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    assert!(String::from_utf8_lossy(&all).ends_with("0\r\n\r\n"));
    let stats = rill.get("/.rill/stats").text();
    assert!(stats.contains("\"preparing\":0"), "{stats}");
}
