//! Shared helpers for the integration tests: start the real `rill` binary on
//! port 0, and speak HTTP/1.1 to it over plain sockets or over TLS.

#![allow(dead_code)] // each test file uses its own subset

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// How a test talks to rill: clear text, or HTTPS with `--tls-self-signed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain => "plain",
            Transport::Tls => "TLS",
        })
    }
}

/// Declares, for each `fn name(transport: Transport)` listed, two tests:
/// `plain::name` and `tls::name` (so `cargo test tls::` runs the TLS half,
/// and a failure's test name says which transport failed).
#[allow(unused_macros)]
macro_rules! tests_over_both_transports {
    ($($name:ident),+ $(,)?) => {
        mod plain {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Transport::Plain)
            })+
        }
        mod tls {
            $(#[test]
            fn $name() {
                super::$name($crate::common::Transport::Tls)
            })+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use tests_over_both_transports;

/// What a TLS rill gave us to reach it: the certificate it made, and a client
/// configuration that trusts exactly that certificate.
struct TlsClient {
    config: Arc<ClientConfig>,
    cert_file: PathBuf,
}

impl TlsClient {
    fn trusting(cert_file: PathBuf) -> TlsClient {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&cert_file)
            .unwrap_or_else(|e| panic!("read {}: {e:?}", cert_file.display()))
        {
            roots
                .add(cert.expect("a PEM certificate"))
                .expect("add root");
        }
        // The provider named explicitly: the crate graph has more than one.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsClient {
            config: Arc::new(config),
            cert_file,
        }
    }
}

/// A connection to rill, plain or TLS, with the few `TcpStream` methods the
/// tests use. TLS ones are `rustls::StreamOwned`, which does the handshake on
/// the first read or write.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    /// Like `TcpStream::shutdown`; over TLS, closing the write side first
    /// sends close_notify (and flushes it), as a TLS client ending its
    /// request stream does.
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if let Stream::Tls(tls) = self {
            if how != Shutdown::Read {
                tls.conn.send_close_notify();
                tls.flush()?;
            }
        }
        self.tcp().shutdown(how)
    }

    /// Over TLS: `data` and a close_notify, encrypted together and sent in
    /// one write, the TCP connection left open (a client that says it is
    /// done with its request). Plain: `data`, then a write shutdown.
    pub fn write_then_close_notify(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => {
                tcp.write_all(data)?;
                tcp.shutdown(Shutdown::Write)
            }
            Stream::Tls(tls) => {
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                tls.conn.writer().write_all(data)?;
                tls.conn.send_close_notify();
                while tls.conn.wants_write() {
                    tls.conn.write_tls(&mut tls.sock)?;
                }
                Ok(())
            }
        }
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.tcp().set_nodelay(nodelay)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            // rustls reports a FIN that came without close_notify as
            // UnexpectedEof (a truncation attack, for a real client). These
            // tests judge rill by the answer bytes it sent before closing, as
            // the plain tests do, so such an end reads as an ordinary EOF.
            // (rill itself sends close_notify before its FIN.)
            Stream::Tls(tls) => match tls.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// A running `rill` process, killed when dropped.
pub struct Rill {
    child: Child,
    pub addr: SocketAddr,
    pub stderr: Option<ChildStderr>,
    tls: Option<TlsClient>,
}

impl Rill {
    /// Starts rill on `root` with `--log-level warn` and any extra arguments.
    pub fn start(root: &Path, extra: &[&str]) -> Rill {
        Rill::start_on(Transport::Plain, root, extra)
    }

    /// Starts an HTTPS rill (`--tls-self-signed`) on `root`, with
    /// `--log-level warn` and any extra arguments.
    pub fn start_tls(root: &Path, extra: &[&str]) -> Rill {
        Rill::start_on(Transport::Tls, root, extra)
    }

    /// [`Rill::start`] or [`Rill::start_tls`].
    pub fn start_on(transport: Transport, root: &Path, extra: &[&str]) -> Rill {
        let mut args = vec!["--listen", "127.0.0.1:0", "--log-level", "warn"];
        if transport == Transport::Tls {
            args.push("--tls-self-signed");
        }
        args.extend_from_slice(extra);
        Rill::start_with(root, &args)
    }

    /// Starts rill on `root` with exactly these arguments (plus ROOT).
    pub fn start_with(root: &Path, args: &[&str]) -> Rill {
        Rill::launch(root, args)
    }

    /// Starts rill with exactly these arguments plus `--tls-self-signed` and
    /// ROOT, and checks that it serves HTTPS.
    pub fn start_with_tls(root: &Path, args: &[&str]) -> Rill {
        let mut args = args.to_vec();
        args.push("--tls-self-signed");
        let rill = Rill::launch(root, &args);
        assert!(rill.tls.is_some(), "rill did not announce https");
        rill
    }

    /// Spawns rill and reads its announce: one line for plain HTTP; for
    /// HTTPS, the lines after it up to the one naming the saved certificate
    /// (fingerprint, public key pin, then the file).
    /// Starts rill with exactly these arguments (plus ROOT), allowed
    /// `open_files` descriptors at most (soft and hard limit).
    pub fn start_with_open_file_limit(root: &Path, args: &[&str], open_files: u64) -> Rill {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rill"));
        let limit = libc::rlimit {
            rlim_cur: open_files,
            rlim_max: open_files,
        };
        // SAFETY: setrlimit is async-signal-safe, and `limit` is a plain
        // value copied into the closure.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        Rill::launch_command(command, root, args)
    }

    fn launch(root: &Path, args: &[&str]) -> Rill {
        Rill::launch_command(Command::new(env!("CARGO_BIN_EXE_rill")), root, args)
    }

    fn launch_command(mut command: Command, root: &Path, args: &[&str]) -> Rill {
        let mut child = command
            .args(args)
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rill");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the announce line");
        let announce = line.trim();
        let (https, addr) = if let Some(addr) = announce.strip_prefix("listening on http://") {
            (false, addr)
        } else if let Some(addr) = announce.strip_prefix("listening on https://") {
            (true, addr)
        } else {
            panic!("unexpected first line: {line:?}")
        };
        let addr = addr.parse().expect("address");
        let mut tls = None;
        if https {
            let mut announced = vec![line.clone()];
            let cert_file = loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).expect("read the announce") == 0 {
                    panic!("no certificate file announced: {announced:?}");
                }
                if let Some(path) = line
                    .trim()
                    .strip_prefix("certificate saved for --cacert at ")
                {
                    break PathBuf::from(path);
                }
                announced.push(line);
            };
            tls = Some(TlsClient::trusting(cert_file));
        }
        let stderr = child.stderr.take();
        Rill {
            child,
            addr,
            stderr,
            tls,
        }
    }

    /// How this rill is reached.
    pub fn transport(&self) -> Transport {
        match self.tls {
            Some(_) => Transport::Tls,
            None => Transport::Plain,
        }
    }

    /// The certificate a TLS rill made (for `curl --cacert`).
    pub fn cacert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.cert_file.as_path())
    }

    /// `http://ADDR/path` or `https://ADDR/path`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        let scheme = match self.tls {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// A new TCP connection with generous timeouts so a hung server fails
    /// the test. Always clear text, even to a TLS rill: see [`Rill::stream`].
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// A new connection in this rill's transport (TLS with server name
    /// `localhost` to a TLS rill), with [`Rill::connect`]'s timeouts.
    pub fn stream(&self) -> Stream {
        let tcp = self.connect();
        match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let name = ServerName::try_from("localhost").unwrap();
                let conn = ClientConnection::new(tls.config.clone(), name).expect("a TLS client");
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        }
    }

    /// One GET on a fresh connection (in this rill's transport, as are
    /// `request` and `raw`).
    pub fn get(&self, target: &str) -> Response {
        self.request(&format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    }

    /// Sends raw request bytes on a fresh connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut stream = self.stream();
        stream.write_all(raw.as_bytes()).unwrap();
        let head_only = raw.starts_with("HEAD ");
        read_response(&mut BufReader::new(stream), head_only).expect("a response")
    }

    /// Sends raw bytes and returns everything until the server closes.
    pub fn raw(&self, raw: &[u8]) -> Vec<u8> {
        let mut stream = self.stream();
        stream.write_all(raw).unwrap();
        let mut all = Vec::new();
        let _ = stream.read_to_end(&mut all);
        all
    }

    /// The process id, to read /proc/PID/status (VmRSS) while it runs.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (SIGTERM, SIGINT) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let result = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(result, 0, "kill failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the process and returns what it wrote to stderr.
    pub fn stop(mut self) -> String {
        self.kill();
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }

    /// Kills the process. A TLS rill removes its certificate file when it
    /// exits, but cannot when killed, so this does.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(tls) = &self.tls {
            let _ = std::fs::remove_file(&tls.cert_file);
        }
    }
}

impl Drop for Rill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response framed by Content-Length (or by close, without one).
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        let previous = headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
        assert!(previous.is_none(), "repeated header {name}");
    }
    let mut body = Vec::new();
    let no_body = head_only || status == 304 || status == 204 || status < 200;
    if !no_body {
        match headers.get("content-length") {
            Some(length) => {
                body.resize(length.parse().ok()?, 0);
                reader.read_exact(&mut body).ok()?;
            }
            None => {
                reader.read_to_end(&mut body).ok()?;
            }
        }
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Deterministic pseudo-random bytes (xorshift), so big files need no crate.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Raises this process's open-file limit to its hard limit (for tests that
/// hold thousands of sockets) and returns it.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Whether curl can be run; tests that use it skip (saying so) without it.
pub fn curl_available() -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is not installed, under CI"
        );
        eprintln!("SKIPPED: curl is not installed (.ci/run installs it)");
    }
    found
}

/// Whether `program args` runs and succeeds; says SKIPPED with `why` if
/// not. CI installs every tool the tests use: there, a missing one is a
/// broken CI script, not a reason to pass without testing, so it fails.
pub fn tool_runs(program: &str, args: &[&str], why: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{why}, under CI");
        eprintln!("SKIPPED: {why} (.ci/run installs it)");
    }
    ok
}

/// The access-log line in `log` for `"METHOD TARGET" 200` (`request` is
/// `METHOD TARGET`), and the body size it gives.
pub fn access_line_of_200<'l>(log: &'l str, request: &str) -> (&'l str, u64) {
    let marker = format!("\"{request}\" 200 ");
    let line = log
        .lines()
        .find(|line| line.contains(&marker))
        .unwrap_or_else(|| panic!("no access line for {request} in:\n{log}"));
    let bytes = line
        .split(&marker)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line}"));
    (line, bytes)
}

/// A temporary folder to serve.
pub fn site() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rill-test-")
        .tempdir()
        .expect("temp dir")
}

/// A WebSocket frame as a client sends it: masked (RFC 6455 §5.3), with FIN
/// set or not.
pub fn ws_client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one WebSocket frame as a server sends it (unmasked, which this
/// checks): `(opcode, payload)`, or `None` at the end of the stream.
pub fn ws_read_frame(reader: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).ok()?;
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            reader.read_exact(&mut n).ok()?;
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            reader.read_exact(&mut n).ok()?;
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).ok()?;
    Some((head[0] & 0x0f, payload))
}
