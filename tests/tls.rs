//! HTTPS against the real binary with real clients: curl, `openssl
//! s_client`, wrk, python3's `ssl`, `requests` and `websockets`. Each checks
//! what the client got and, where it says something, what rill's stats
//! counted (`"tls":{"handshaking","full","resumed","failed"}`).
//!
//! A test whose client cannot run here says SKIPPED and passes, as the curl
//! tests elsewhere do; under CI (which installs them all) it fails instead.

mod common;

use common::{pseudo_random, read_response, site, tool_runs};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// rill over TLS

/// A running `rill` serving HTTPS; stopped when dropped.
struct TlsRill {
    child: Child,
    port: u16,
    /// The second announce line's `AB:CD:…`.
    fingerprint: String,
    /// `sha256//…` (a made certificate only).
    pin: Option<String>,
    /// The PEM written for `--cacert` (a made certificate only).
    pem: Option<PathBuf>,
    /// What rill wrote to stderr, in a file (a pipe could fill and block it).
    stderr: tempfile::NamedTempFile,
    /// The rest of stdout, after the announce lines; kept open so a late
    /// write never fails rill.
    stdout: BufReader<ChildStdout>,
}

/// Starts rill with `--tls-self-signed` on `root` and reads its four lines.
fn start_tls(root: &Path, extra: &[&str]) -> TlsRill {
    let mut args = vec!["--tls-self-signed"];
    args.extend_from_slice(extra);
    spawn(root, &args, true)
}

/// Starts rill with `--tls-cert CERT --tls-key KEY`: two lines only.
fn start_tls_files(root: &Path, cert: &Path, key: &Path) -> TlsRill {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    spawn(root, &["--tls-cert", cert, "--tls-key", key], false)
}

fn spawn(root: &Path, extra: &[&str], self_signed: bool) -> TlsRill {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(extra)
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr.reopen().unwrap())
        .spawn()
        .expect("start rill");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("an announce line");
        line.trim_end().to_owned()
    };
    let first = line();
    let port = first
        .strip_prefix("listening on https://127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"));
    let second = line();
    let fingerprint = second
        .strip_prefix("certificate sha256 fingerprint ")
        .unwrap_or_else(|| panic!("unexpected second line: {second:?}"))
        .to_owned();
    let (mut pin, mut pem) = (None, None);
    if self_signed {
        let third = line();
        pin = Some(
            third
                .strip_prefix("certificate public key pin (curl --pinnedpubkey) ")
                .unwrap_or_else(|| panic!("unexpected third line: {third:?}"))
                .to_owned(),
        );
        let fourth = line();
        pem = Some(PathBuf::from(
            fourth
                .strip_prefix("certificate saved for --cacert at ")
                .unwrap_or_else(|| panic!("unexpected fourth line: {fourth:?}")),
        ));
    }
    TlsRill {
        child,
        port,
        fingerprint,
        pin,
        pem,
        stderr,
        stdout,
    }
}

impl TlsRill {
    /// Runs a Python `script` against this rill (its port, the PEM file to
    /// trust, then `extra`), requires it to succeed, and returns what it
    /// printed (stdout, then stderr).
    fn run_python(&self, script: &str, extra: &[&str]) -> String {
        let port = self.port.to_string();
        let mut args = vec![port.as_str(), self.pem()];
        args.extend_from_slice(extra);
        let output = python(script, &args);
        let shown = text(&output);
        assert!(output.status.success(), "{shown}\n{}", self.log());
        shown
    }

    fn pem(&self) -> &str {
        self.pem.as_deref().unwrap().to_str().unwrap()
    }

    /// `https://127.0.0.1:PORT` + `path`.
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr()).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// The stats JSON, fetched with curl over TLS: twice on one connection,
    /// and the second taken. The counters show each connection as of the
    /// end of its last turn, so the first answer may still count its own
    /// connection as handshaking (its request came with its Finished); by
    /// the second, it is idle, and the gauges show only the others.
    fn stats(&self) -> String {
        let url = self.url("/.rill/stats");
        let output = curl(&["--fail", "--cacert", self.pem(), &url, &url]);
        assert!(output.status.success(), "stats: {output:?}");
        let both = String::from_utf8(output.stdout).unwrap();
        let second = both.rfind("{\"uptime_secs\"").expect("stats JSON");
        assert!(second > 0, "one stats answer: {both}");
        both[second..].to_owned()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for TlsRill {
    /// A graceful stop, so rill removes the certificate file it wrote; a
    /// kill (and the file removed here) if that takes too long.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if !self.wait_exit(Duration::from_secs(3)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if let Some(pem) = &self.pem {
            let _ = fs::remove_file(pem);
        }
    }
}

/// The number after `"key":` inside the stats' `"tls":{…}` object.
fn tls_stat(json: &str, key: &str) -> u64 {
    let tls = &json[json
        .find("\"tls\":{")
        .unwrap_or_else(|| panic!("no tls in {json}"))..];
    let tls = &tls[..tls.find('}').unwrap()];
    let needle = format!("\"{key}\":");
    let at = tls
        .find(&needle)
        .unwrap_or_else(|| panic!("{key} not in {tls}"))
        + needle.len();
    let digits: String = tls[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// The number after `"key":` anywhere in the stats (a key used only once).
fn stat(json: &str, key: &str) -> u64 {
    let needle = format!("\"{key}\":");
    let at = json
        .find(&needle)
        .unwrap_or_else(|| panic!("{key} not in {json}"))
        + needle.len();
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// A site with `a.txt` and a 1 KiB `1k.bin`.
fn tls_site() -> tempfile::TempDir {
    let dir = site();
    fs::write(dir.path().join("a.txt"), "hello over tls\n").unwrap();
    fs::write(dir.path().join("1k.bin"), pseudo_random(1024, 3)).unwrap();
    dir
}

// ---------------------------------------------------------------------------
// Clients

fn have_curl() -> bool {
    tool_runs("curl", &["--version"], "curl is not installed")
}

/// wrk has no option that exits 0 (`--version` prints its usage and exits
/// 1): found when it runs and names itself.
fn have_wrk() -> bool {
    let found = Command::new("wrk")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).starts_with("wrk "));
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "wrk is not installed, under CI"
        );
        eprintln!("SKIPPED: wrk is not installed (.ci/run installs it)");
    }
    found
}

fn have_openssl() -> bool {
    tool_runs(
        "openssl",
        &["version"],
        "the openssl command is not installed",
    )
}

fn have_python(module: &str) -> bool {
    let import = format!("import {module}");
    tool_runs(
        "python3",
        &["-c", &import],
        &format!("python3 or its {module} module is not installed"),
    )
}

/// Runs `command` with `input` on its stdin; kills it after `limit`.
fn run(command: &mut Command, input: &[u8], limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // A writer of its own: a child that answers before reading all of its
    // input must not deadlock against us.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match wait.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on the pid of a child we spawned and have not
            // reaped (its waiter is still blocked).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{command:?} took over {limit:?}");
        }
    };
    writer.join().unwrap();
    output
}

/// `curl -sS --max-time 20 ARGS`.
fn curl(args: &[&str]) -> Output {
    run(
        Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args),
        b"",
        Duration::from_secs(30),
    )
}

/// `python3 -c SCRIPT ARGS`.
fn python(script: &str, args: &[&str]) -> Output {
    run(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            // Trust only the certificate each test names.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE"),
        b"",
        Duration::from_secs(30),
    )
}

/// `openssl s_client` to rill with `flags`, `input` on its stdin.
fn s_client(rill: &TlsRill, flags: &[&str], input: &[u8]) -> Output {
    run(
        Command::new("openssl")
            .args(["s_client", "-connect", &rill.addr()])
            .args(["-servername", "localhost", "-CAfile", rill.pem()])
            .args(flags),
        input,
        Duration::from_secs(20),
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const GET_A: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

// ---------------------------------------------------------------------------
// 1. curl, the certificate file, the pin and the fingerprint

#[test]
fn curl_trusts_the_saved_certificate_and_the_pin() {
    if !have_curl() || !have_openssl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &[]);
    assert!(rill
        .pem()
        .starts_with(std::env::temp_dir().to_str().unwrap()));
    let pem = fs::read_to_string(rill.pem()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{}/1k.bin", rill.port);
        let output = curl(&["--fail", "--cacert", rill.pem(), &url]);
        assert!(output.status.success(), "{host}: {output:?}");
        assert!(
            output.stdout == pseudo_random(1024, 3),
            "{host}: other bytes"
        );
    }

    // Without the file, curl refuses the self-signed certificate (60).
    let untrusted = curl(&[&rill.url("/a.txt")]);
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted:?}");

    // -k with the printed pin: accepted; with another pin: refused (90).
    let pin = rill.pin.clone().unwrap();
    assert!(pin.starts_with("sha256//") && pin.ends_with('='), "{pin}");
    let pinned = curl(&["-k", "--pinnedpubkey", &pin, &rill.url("/a.txt")]);
    assert!(pinned.status.success(), "{pinned:?}");
    assert_eq!(pinned.stdout, b"hello over tls\n");
    let wrong = format!("sha256//{}=", "A".repeat(43));
    let refused = curl(&["-k", "--pinnedpubkey", &wrong, &rill.url("/a.txt")]);
    assert_eq!(refused.status.code(), Some(90), "{refused:?}");
    assert!(refused.stdout.is_empty());

    // The printed fingerprint is openssl's of the saved certificate.
    let openssl = run(
        Command::new("openssl").args([
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            rill.pem(),
        ]),
        b"",
        Duration::from_secs(10),
    );
    assert!(openssl.status.success(), "{openssl:?}");
    let openssl = String::from_utf8(openssl.stdout).unwrap();
    let expected = openssl.trim().split_once('=').unwrap().1;
    assert_eq!(rill.fingerprint, expected);
    assert_eq!(rill.fingerprint.len(), 32 * 3 - 1);

    // A P-256 key, and the names a client on this host may use.
    let shown = run(
        Command::new("openssl").args(["x509", "-noout", "-text", "-in", rill.pem()]),
        b"",
        Duration::from_secs(10),
    );
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("prime256v1"), "{shown}");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for name in [
        "DNS:localhost".to_owned(),
        format!("DNS:{}", host.trim()),
        "IP Address:127.0.0.1".to_owned(),
        "IP Address:0:0:0:0:0:0:0:1".to_owned(),
    ] {
        assert!(shown.contains(&name), "{name} missing: {shown}");
    }
}

#[test]
fn given_pem_files_are_served_and_announced_in_two_lines() {
    if !have_curl() || !have_openssl() {
        return;
    }
    let keys = site();
    let (cert, key) = (keys.path().join("c.pem"), keys.path().join("k.pem"));
    let made = run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=localhost",
            ])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .args(["-days", "2", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        b"",
        Duration::from_secs(20),
    );
    assert!(made.status.success(), "{made:?}");
    let dir = tls_site();
    let mut rill = start_tls_files(dir.path(), &cert, &key);
    assert!(rill.pin.is_none() && rill.pem.is_none());
    let cert_arg = cert.to_str().unwrap();
    let output = curl(&["--fail", "--cacert", cert_arg, &rill.url("/a.txt")]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"hello over tls\n");
    let fingerprint = run(
        Command::new("openssl").args([
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            cert_arg,
        ]),
        b"",
        Duration::from_secs(10),
    );
    let fingerprint = String::from_utf8(fingerprint.stdout).unwrap();
    assert_eq!(
        Some(rill.fingerprint.as_str()),
        fingerprint.trim().split_once('=').map(|(_, value)| value)
    );
    // No pin, no saved file: nothing more on stdout, to the exit.
    rill.signal(libc::SIGTERM);
    assert!(rill.wait_exit(Duration::from_secs(10)), "rill did not exit");
    let mut rest = String::new();
    rill.stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}

#[test]
fn the_certificate_file_is_removed_at_a_graceful_exit() {
    let dir = tls_site();
    let mut rill = start_tls(dir.path(), &[]);
    let pem = rill.pem.clone().unwrap();
    assert!(pem.exists());
    rill.signal(libc::SIGTERM);
    assert!(rill.wait_exit(Duration::from_secs(10)), "rill did not exit");
    assert!(!pem.exists(), "{} is still there", pem.display());
}

// ---------------------------------------------------------------------------
// 2. openssl s_client: versions and ALPN

#[test]
fn s_client_negotiates_tls13_and_tls12_with_alpn_http11() {
    if !have_openssl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    for (flag, protocol) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let output = s_client(
            &rill,
            &[
                flag,
                "-alpn",
                "http/1.1",
                "-ign_eof",
                "-verify_return_error",
            ],
            GET_A,
        );
        // (Its exit code, which says whether the close was clean, is
        // checked in the close_notify test.)
        let shown = text(&output);
        assert!(
            shown.contains(&format!("Protocol  : {protocol}")),
            "{flag}: {shown}"
        );
        assert!(
            shown.contains(&format!("New, {protocol}")),
            "{flag}: {shown}"
        );
        assert!(shown.contains("ALPN protocol: http/1.1"), "{flag}: {shown}");
        assert!(
            shown.contains("Verify return code: 0 (ok)"),
            "{flag}: {shown}"
        );
        assert!(shown.contains("HTTP/1.1 200 OK"), "{flag}: {shown}");
        assert!(shown.contains("hello over tls"), "{flag}: {shown}");
    }
    // Without ALPN the handshake works too (and HTTP/1.1 is spoken).
    let output = s_client(&rill, &["-ign_eof"], GET_A);
    let shown = text(&output);
    assert!(shown.contains("No ALPN negotiated"), "{shown}");
    assert!(shown.contains("hello over tls"), "{shown}");
    let stats = rill.stats();
    assert_eq!(tls_stat(&stats, "full"), 4, "{stats}"); // 3 + the stats' own
    assert_eq!(tls_stat(&stats, "failed"), 0, "{stats}");
}

#[test]
fn a_client_offering_only_h2_is_refused_with_no_application_protocol() {
    if !have_openssl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    for flag in ["-tls1_3", "-tls1_2"] {
        let output = s_client(&rill, &[flag, "-alpn", "h2"], GET_A);
        let shown = text(&output);
        // rustls (RFC 7301 §3.2) ends the handshake with the fatal alert
        // no_application_protocol (120): no session, no answer.
        assert!(!output.status.success(), "{flag}: {shown}");
        assert!(
            shown.contains("alert no application protocol") && shown.contains("alert number 120"),
            "{flag}: {shown}"
        );
        assert!(!shown.contains("hello over tls"), "{flag}: {shown}");
        assert!(!shown.contains("ALPN protocol: h2"), "{flag}: {shown}");
    }
    // h2 and http/1.1 offered: http/1.1 is chosen.
    let output = s_client(&rill, &["-alpn", "h2,http/1.1", "-ign_eof"], GET_A);
    let shown = text(&output);
    assert!(shown.contains("ALPN protocol: http/1.1"), "{shown}");
    assert!(shown.contains("hello over tls"), "{shown}");
    let stats = rill.stats();
    assert_eq!(tls_stat(&stats, "failed"), 2, "{stats}");
    assert_eq!(tls_stat(&stats, "full"), 2, "{stats}");
}

/// rill speaks HTTP/1.0 too, so a client that offers only `http/1.0` in
/// ALPN (`curl --http1.0`) gets it, and its answer; one that offers both
/// gets `http/1.1`.
#[test]
fn a_client_offering_only_http10_gets_it() {
    if !have_openssl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &[]);
    let old = b"GET /a.txt HTTP/1.0\r\nHost: localhost\r\n\r\n";
    let output = s_client(&rill, &["-alpn", "http/1.0", "-ign_eof"], old);
    let shown = text(&output);
    assert!(shown.contains("ALPN protocol: http/1.0"), "{shown}");
    assert!(shown.contains("HTTP/1.1 200 OK"), "{shown}");
    assert!(shown.contains("hello over tls"), "{shown}");
    let output = s_client(&rill, &["-alpn", "http/1.0,http/1.1", "-ign_eof"], GET_A);
    assert!(text(&output).contains("ALPN protocol: http/1.1"));
    if have_curl() {
        let url = rill.url("/a.txt");
        let output = curl(&["--http1.0", "--cacert", rill.pem(), &url]);
        assert!(output.status.success(), "curl --http1.0: {}", text(&output));
        assert!(
            text(&output).contains("hello over tls"),
            "{}",
            text(&output)
        );
    }
}

// ---------------------------------------------------------------------------
// 2b. Every clean end says close_notify

/// Python's ssl (ragged EOFs not suppressed) reads answers to the end, over
/// TLS 1.3 and 1.2, for each way rill ends a connection: `Connection: close`,
/// HTTP/1.0, `Connection: close` with more bytes behind the request, and the
/// idle timeout after a kept-alive answer. One line each: how it ended.
const CLOSE_NOTIFY: &str = r#"
import socket, ssl, sys
port, pem = int(sys.argv[1]), sys.argv[2]
cases = {
    "connection-close": b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    "http/1.0": b"GET /a.txt HTTP/1.0\r\nHost: localhost\r\n\r\n",
    "close-with-bytes-behind": b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\nGET /a",
    "idle-timeout": b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
}
for version in ("TLSv1_3", "TLSv1_2"):
    for name, request in cases.items():
        ctx = ssl.create_default_context(cafile=pem)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion[version]
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        tls.sendall(request)
        got = b""
        try:
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    end = "close_notify"
                    break
                got += chunk
        except ssl.SSLEOFError:
            end = "EOF-without-close_notify"
        except OSError as e:
            end = type(e).__name__
        print(version, name, end, got.count(b"hello over tls"))
        tls.close()
"#;

#[test]
fn every_close_is_preceded_by_close_notify() {
    if !have_python("ssl") {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--idle-timeout", "1"]);
    let shown = rill.run_python(CLOSE_NOTIFY, &[]);
    let mut expected = Vec::new();
    for version in ["TLSv1_3", "TLSv1_2"] {
        for case in [
            "connection-close",
            "http/1.0",
            "close-with-bytes-behind",
            "idle-timeout",
        ] {
            expected.push(format!("{version} {case} close_notify 1"));
        }
    }
    // RFC 8446 §6.1: a close_notify before the write side closes, so a
    // client can tell the end from a truncation.
    assert_eq!(shown.lines().collect::<Vec<_>>(), expected, "{shown}");

    // openssl s_client says the same with its exit code: 1 after
    // "unexpected eof while reading", 0 after a close_notify.
    if have_openssl() {
        for flag in ["-tls1_3", "-tls1_2"] {
            let output = s_client(&rill, &[flag, "-ign_eof"], GET_A);
            let shown = text(&output);
            assert!(shown.contains("hello over tls"), "{flag}: {shown}");
            assert!(!shown.contains("unexpected eof"), "{flag}: {shown}");
            assert!(output.status.success(), "{flag}: {shown}");
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Resumption

#[test]
fn s_client_resumes_with_a_ticket_and_with_a_session_id() {
    if !have_openssl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    let sessions = site();
    for (flag, protocol) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let file = sessions.path().join(format!("session{flag}"));
        let file = file.to_str().unwrap();
        // A request and its answer (up to the server's close): by then a
        // TLS 1.3 ticket has come, ahead of the answer, and is saved.
        let first = s_client(
            &rill,
            &[flag, "-alpn", "http/1.1", "-ign_eof", "-sess_out", file],
            GET_A,
        );
        let shown = text(&first);
        assert!(
            shown.contains(&format!("New, {protocol}")),
            "{flag}: {shown}"
        );
        assert!(shown.contains("hello over tls"), "{flag}: {shown}");
        for round in 0..2 {
            let again = s_client(
                &rill,
                &[flag, "-alpn", "http/1.1", "-ign_eof", "-sess_in", file],
                GET_A,
            );
            let shown = text(&again);
            assert!(
                shown.contains(&format!("Reused, {protocol}")),
                "{flag} {round}: {shown}"
            );
            assert!(shown.contains("ALPN protocol: http/1.1"), "{flag}: {shown}");
            assert!(shown.contains("hello over tls"), "{flag} {round}: {shown}");
        }
    }
    let stats = rill.stats();
    assert_eq!(tls_stat(&stats, "resumed"), 4, "{stats}");
    assert_eq!(tls_stat(&stats, "full"), 3, "{stats}"); // 2 + the stats' own
    assert_eq!(tls_stat(&stats, "failed"), 0, "{stats}");
}

// ---------------------------------------------------------------------------
// 4. python3 requests: verify, keep-alive, PUT

const REQUESTS: &str = r#"
import sys, requests
port, pem, upload = sys.argv[1], sys.argv[2], sys.argv[3]
base = "https://localhost:" + port
s = requests.Session()
# verify on each call: a Session's own is overridden by REQUESTS_CA_BUNDLE.
for i in range(6):
    r = s.get(base + "/a.txt", verify=pem, timeout=10)
    print("get", r.status_code, r.content == b"hello over tls\n", r.headers.get("connection"))
data = open(upload, "rb").read()
r = s.put(base + "/put.bin", data=data, verify=pem, timeout=10)
print("put", r.status_code)
r = s.get(base + "/.rill/stats", verify=pem, timeout=10)
print("stats", r.text)
"#;

#[test]
fn python_requests_verifies_keeps_alive_and_uploads() {
    if !have_python("requests") {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats", "--uploads"]);
    let src = site();
    let upload = src.path().join("upload.bin");
    let bytes = pseudo_random(300_000, 41);
    fs::write(&upload, &bytes).unwrap();
    let shown = rill.run_python(REQUESTS, &[upload.to_str().unwrap()]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 8, "{shown}");
    for line in &lines[..6] {
        assert!(line.starts_with("get 200 True"), "{shown}");
    }
    assert_eq!(lines[6], "put 201", "{shown}");
    assert!(
        fs::read(dir.path().join("put.bin")).unwrap() == bytes,
        "the upload differs"
    );
    // Eight requests on one connection: one full handshake, none other.
    let stats = lines[7].strip_prefix("stats ").unwrap();
    assert_eq!(tls_stat(stats, "full"), 1, "{stats}");
    assert_eq!(tls_stat(stats, "resumed"), 0, "{stats}");
    assert_eq!(stat(stats, "accepted"), 1, "{stats}");
    assert_eq!(stat(stats, "requests"), 8, "{stats}");
}

#[test]
fn curl_multipart_post_over_tls_lands_byte_exact() {
    if !have_curl() {
        return;
    }
    let dir = tls_site();
    fs::create_dir(dir.path().join("inbox")).unwrap();
    let rill = start_tls(dir.path(), &["--uploads"]);
    let src = site();
    let one = pseudo_random(2 * MIB + 7, 5);
    fs::write(src.path().join("one.bin"), &one).unwrap();
    let form = format!("file=@{}", src.path().join("one.bin").display());
    let output = curl(&[
        "--fail",
        "--cacert",
        rill.pem(),
        "-H",
        "Accept: application/json",
        "-F",
        &form,
        &rill.url("/inbox/"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let json = String::from_utf8_lossy(&output.stdout);
    assert!(json.contains("\"name\":\"one.bin\""), "{json}");
    assert!(fs::read(dir.path().join("inbox/one.bin")).unwrap() == one);
}

// ---------------------------------------------------------------------------
// 5. A ClientHello one byte per write

/// Python's ssl through MemoryBIOs: every byte the client has for the server
/// (ClientHello, Finished, the request) is sent in a write of its own with
/// TCP_NODELAY, paced so rill reads them apart; then one GET.
const BYTE_BY_BYTE: &str = r#"
import socket, ssl, sys, time
port, pem = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=pem)
ctx.set_alpn_protocols(["http/1.1"])
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
flights = []
def send():
    data = outgoing.read()
    if data:
        flights.append(len(data))
    for i in range(len(data)):
        sock.send(data[i:i + 1])
        time.sleep(0.0005)
def receive():
    data = sock.recv(65536)
    if data:
        incoming.write(data)
    else:
        incoming.write_eof()
    return data
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        send()
        if not receive():
            sys.exit("rill closed the connection during the handshake")
version, alpn = tls.version(), tls.selected_alpn_protocol()
send()
tls.write(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
send()
answer = b""
while True:
    try:
        chunk = tls.read(65536)
        if not chunk:
            break
        answer += chunk
    except ssl.SSLWantReadError:
        receive()
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
print(version, alpn, *flights)
sys.stdout.write(answer.decode())
"#;

#[test]
fn a_client_hello_in_one_byte_writes_completes() {
    if !have_python("ssl") {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    let shown = rill.run_python(BYTE_BY_BYTE, &[]);
    let first = shown.lines().next().unwrap();
    let fields: Vec<&str> = first.split(' ').collect();
    assert_eq!(fields[..2], ["TLSv1.3", "http/1.1"], "{shown}");
    let hello: u64 = fields[2].parse().unwrap();
    assert!(hello > 200, "a ClientHello of {hello} bytes? {shown}");
    assert!(shown.contains("HTTP/1.1 200 OK\r\n"), "{shown}");
    assert!(shown.ends_with("\r\n\r\nhello over tls\n"), "{shown}");
    let stats = rill.stats();
    assert_eq!(tls_stat(&stats, "full"), 2, "{stats}");
    assert_eq!(tls_stat(&stats, "failed"), 0, "{stats}");
    // rill did take the bytes a few at a time: many more readable events
    // than one per flight.
    assert!(stat(&stats, "events") > hello / 4, "{stats}");
}

// ---------------------------------------------------------------------------
// 6. Stalled handshakes

/// The start of a ClientHello: a handshake record announcing 512 bytes, of
/// which 43 come (type, length, version, random) and then nothing.
fn half_a_client_hello() -> Vec<u8> {
    let mut bytes = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    bytes.extend(pseudo_random(32, 9));
    bytes
}

/// Reads until EOF; how long it took. An error (a reset) fails the test:
/// rill is to close, not to reset, and not to let the read time out.
fn time_to_eof(mut stream: TcpStream, since: Instant) -> Duration {
    let mut rest = Vec::new();
    let result = stream.read_to_end(&mut rest);
    assert!(result.is_ok(), "{result:?} after {:?}", since.elapsed());
    since.elapsed()
}

#[test]
fn stalled_handshakes_are_closed_after_the_header_timeout() {
    if !have_curl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats", "--header-timeout", "1"]);
    let started = Instant::now();
    let mut half = rill.connect();
    half.write_all(&half_a_client_hello()).unwrap();
    let silent = rill.connect();
    // The half ClientHello is seen mid-handshake (polled: the loop accepts
    // it as soon as its bytes are in). The silent one is not there yet: the
    // listener defers accepting a connection until its first bytes, or for
    // 1 s (TCP_DEFER_ACCEPT), and its header timeout starts from then.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = rill.stats();
        if tls_stat(&stats, "handshaking") >= 1 {
            assert_eq!(tls_stat(&stats, "failed"), 0, "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "never handshaking: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let half_took = time_to_eof(half, started);
    assert!(half_took >= Duration::from_millis(900), "{half_took:?}");
    assert!(half_took < Duration::from_secs(3), "{half_took:?}");
    let silent_took = time_to_eof(silent, started);
    assert!(silent_took >= Duration::from_millis(900), "{silent_took:?}");
    assert!(silent_took < Duration::from_secs(5), "{silent_took:?}");
    let stats = rill.stats();
    assert_eq!(tls_stat(&stats, "failed"), 2, "{stats}");
    // The stats request's own connection may still count as handshaking
    // (a connection's phase is the one of its last turn).
    assert!(tls_stat(&stats, "handshaking") <= 1, "{stats}");
}

#[test]
fn a_client_that_leaves_mid_handshake_is_counted_failed() {
    if !have_curl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    let mut half = rill.connect();
    half.write_all(&half_a_client_hello()).unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    // rill closes at once on our FIN (not after the 10 s header timeout).
    let took = time_to_eof(half, Instant::now());
    assert!(took < Duration::from_secs(5), "{took:?}");
    let stats = rill.stats();
    assert_eq!(tls_stat(&stats, "failed"), 1, "{stats}");
    assert_eq!(tls_stat(&stats, "full"), 1, "{stats}");
}

// ---------------------------------------------------------------------------
// 7. Plain HTTP on the TLS port

#[test]
fn plain_http_on_the_tls_port_gets_a_clear_400_and_a_close() {
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    let mut stream = rill.connect();
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("EOF after the answer");
    let shown = String::from_utf8_lossy(&all).into_owned();
    assert!(shown.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{shown}");
    let answer = read_response(&mut &all[..], false).expect("a whole response");
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("connection"), Some("close"), "{shown}");
    assert!(answer.text().contains("https"), "{shown}");
    assert!(!answer.text().contains("hello over tls"), "{shown}");

    if have_curl() {
        let url = format!("http://{}/a.txt", rill.addr());
        let output = curl(&["-w", "\n%{http_code}", &url]);
        assert!(output.status.success(), "{output:?}");
        let shown = String::from_utf8(output.stdout).unwrap();
        assert!(shown.ends_with("\n400"), "{shown}");
        assert!(shown.contains("https"), "{shown}");
        let stats = rill.stats();
        assert_eq!(tls_stat(&stats, "failed"), 2, "{stats}");
    }
}

// ---------------------------------------------------------------------------
// 8. wrk

#[test]
fn wrk_over_https_has_no_errors() {
    if !have_curl() || !have_wrk() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    let output = run(
        Command::new("wrk").args([
            "-t1",
            "-c8",
            "-d2s",
            "--timeout",
            "5s",
            &rill.url("/1k.bin"),
        ]),
        b"",
        Duration::from_secs(20),
    );
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    let requests: u64 = shown
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("no request count: {shown}"));
    assert!(requests > 0, "{shown}");
    assert!(!shown.contains("Non-2xx"), "{shown}");
    if let Some(errors) = shown.lines().find(|line| line.contains("Socket errors")) {
        let counts: Vec<u64> = errors
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        assert!(counts.iter().all(|&n| n == 0), "{shown}");
    }
    // Still serving, and every wrk connection did its handshake.
    let after = curl(&["--fail", "--cacert", rill.pem(), &rill.url("/a.txt")]);
    assert_eq!(after.stdout, b"hello over tls\n", "{after:?}");
    let stats = rill.stats();
    assert!(tls_stat(&stats, "full") >= 8 + 2, "{stats}");
    // wrk.resolve() first tries the address with a bare TCP connect and
    // close: one client that left before its ClientHello, counted failed.
    assert!(tls_stat(&stats, "failed") <= 1, "{stats}");
    assert!(stat(&stats, "2xx") > requests, "{stats}");
}

// ---------------------------------------------------------------------------
// 9. A large file and ranges

#[test]
fn a_large_file_and_a_range_arrive_byte_exact() {
    if !have_curl() {
        return;
    }
    let dir = tls_site();
    let big = pseudo_random(20 * MIB + 13, 77);
    fs::write(dir.path().join("big.bin"), &big).unwrap();
    let rill = start_tls(dir.path(), &[]);
    let out = site();
    let file = out.path().join("big.bin");
    let output = curl(&[
        "--fail",
        "--cacert",
        rill.pem(),
        "-o",
        file.to_str().unwrap(),
        &rill.url("/big.bin"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let got = fs::read(&file).unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the 20 MiB file differs");

    // A middle slice, crossing TLS records, and the last bytes.
    let from = 5 * MIB + 3;
    let to = 9 * MIB + 100;
    let range = format!("{from}-{to}");
    let output = curl(&[
        "--cacert",
        rill.pem(),
        "-r",
        &range,
        "-D",
        "-",
        &rill.url("/big.bin"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let answer = read_response(&mut &output.stdout[..], false).unwrap();
    assert_eq!(answer.status, 206);
    assert_eq!(
        answer.header("content-range"),
        Some(format!("bytes {from}-{to}/{}", big.len()).as_str())
    );
    assert!(answer.body == big[from..=to], "the range differs");
    let output = curl(&["--cacert", rill.pem(), "-r", "-100", &rill.url("/big.bin")]);
    assert!(
        output.stdout == big[big.len() - 100..],
        "the suffix differs"
    );
}

// ---------------------------------------------------------------------------
// 10. WebSocket over TLS

const WSS_ECHO: &str = r#"
import ssl, sys
from websockets.sync.client import connect
port, pem = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=pem)
data = bytes((i * 7 + i // 251) % 256 for i in range(100 * 1024))
with connect("wss://127.0.0.1:" + port + "/.rill/echo", ssl=ctx, max_size=None, open_timeout=10) as ws:
    ws.send("héllo over wss")
    text = ws.recv(timeout=10)
    print("text", type(text).__name__, text == "héllo over wss")
    ws.send(data)
    binary = ws.recv(timeout=10)
    print("binary", type(binary).__name__, len(binary), binary == data)
"#;

#[test]
fn a_websocket_echo_over_tls() {
    if !have_python("websockets") {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--stats"]);
    let shown = rill.run_python(WSS_ECHO, &[]);
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        ["text str True", "binary bytes 102400 True"],
        "{shown}"
    );
}

// ---------------------------------------------------------------------------
// 11. A route over TLS

/// A backend on a thread: answers `/api/go` with a redirect to its own
/// origin and anything else with the path it saw; each request head goes to
/// the channel.
fn backend() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (heads, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let heads = heads.clone();
            std::thread::spawn(move || serve_backend(stream, port, heads));
        }
    });
    (port, seen)
}

fn serve_backend(stream: TcpStream, port: u16, heads: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let _ = heads.send(head);
        let answer = if path == "/api/go" {
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/api/there\r\n\
                 Content-Length: 0\r\n\r\n"
            )
        } else {
            let body = format!("backend saw {path}");
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        if reader.get_mut().write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The value of header `name` in a raw head (case-insensitive name).
fn head_field<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
        .collect()
}

#[test]
fn a_route_over_tls_says_https_to_the_backend() {
    if !have_curl() {
        return;
    }
    let (port, seen) = backend();
    let dir = tls_site();
    let route = format!("/api=127.0.0.1:{port}");
    let rill = start_tls(dir.path(), &["--route", &route]);
    let output = curl(&["--fail", "--cacert", rill.pem(), &rill.url("/api/x")]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"backend saw /api/x");
    let head = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(head.starts_with("GET /api/x HTTP/1.1\r\n"), "{head}");
    assert_eq!(head_field(&head, "x-forwarded-proto"), ["https"], "{head}");
    assert_eq!(
        head_field(&head, "x-forwarded-for"),
        ["127.0.0.1"],
        "{head}"
    );
    let forwarded = head_field(&head, "forwarded");
    assert_eq!(forwarded.len(), 1, "{head}");
    assert!(forwarded[0].contains("proto=https"), "{head}");

    // The backend's redirect to itself comes back as an https:// URL on rill.
    let output = curl(&[
        "--cacert",
        rill.pem(),
        "-D",
        "-",
        "-o",
        "/dev/null",
        &rill.url("/api/go"),
    ]);
    let answer = read_response(&mut &output.stdout[..], true).unwrap();
    assert_eq!(answer.status, 302, "{output:?}");
    assert_eq!(
        answer.header("location"),
        Some(rill.url("/api/there").as_str()),
        "{output:?}"
    );
    let head = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(head_field(&head, "x-forwarded-proto"), ["https"], "{head}");
    // Not the route: rill's own file.
    let own = curl(&["--cacert", rill.pem(), &rill.url("/a.txt")]);
    assert_eq!(own.stdout, b"hello over tls\n");
}

// ---------------------------------------------------------------------------
// 12. --auth over TLS

#[test]
fn auth_over_tls() {
    if !have_curl() {
        return;
    }
    let dir = tls_site();
    let rill = start_tls(dir.path(), &["--auth", "alice:secret"]);
    let code = |extra: &[&str]| {
        let mut args = vec![
            "--cacert",
            rill.pem(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        args.extend_from_slice(extra);
        let url = rill.url("/a.txt");
        args.push(&url);
        let output = curl(&args);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(code(&[]), "401");
    assert_eq!(code(&["-u", "alice:wrong"]), "401");
    assert_eq!(code(&["-u", "alice:secret"]), "200");
    let output = curl(&[
        "--fail",
        "--cacert",
        rill.pem(),
        "-u",
        "alice:secret",
        &rill.url("/a.txt"),
    ]);
    assert_eq!(output.stdout, b"hello over tls\n", "{output:?}");
}
