//! The client's side of a connection: its socket, the bytes read from it and
//! not yet used, the bytes queued for it, and what the connection has done so
//! far. Every protocol a connection speaks — HTTP, a proxied exchange, a
//! tunnel — reads and writes the client through these methods, so a
//! connection that changes protocol keeps its socket, its buffers and its
//! counters.

use super::tls::TlsLayer;
use super::BufferPool;
use crate::http::request::Method;
use crate::http::response::Status;
use crate::stats::{add, Phase, Stats};
use log::{info, log_enabled, Level};
use mio::net::TcpStream;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Most plaintext one TLS read copies out: a full record's payload.
const TLS_READ_CHUNK: usize = 16 * 1024;

/// How a read or write of the client's socket stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The socket said `WouldBlock`: wait for its next edge.
    Blocked,
    /// The peer is gone, or the socket failed; the reason is for the log.
    Gone(&'static str),
}

/// One request's line in the access log, written once its answer is sent.
struct AccessRecord {
    method: Method,
    /// For [`Method::Other`], the method's name and the target
    /// ([`crate::http::request::Request::logged_target`]).
    target: String,
    status: u16,
    body_bytes: u64,
    started: Instant,
    /// A proxied request: the backend and how long it took to answer.
    upstream: Option<(String, Duration)>,
    /// Why the answer was cut short, when it was.
    aborted: Option<&'static str>,
    /// A `101` that became a tunnel: the bytes sent up it (the bytes down
    /// are the line's body bytes).
    tunnelled_up: Option<u64>,
}

/// The client socket and its buffers.
pub struct Client {
    /// The connection's slab key, for logs.
    pub id: usize,
    pub socket: TcpStream,
    pub peer: SocketAddr,
    /// The TLS session of an HTTPS connection; `None` on plain HTTP.
    pub tls: Option<Box<TlsLayer>>,
    /// Received bytes not yet used; allocated on first read.
    pub input: Vec<u8>,
    /// Bytes queued for the socket, sent from `output_sent` on.
    pub output: Vec<u8>,
    pub output_sent: usize,
    /// The last read returned less than it asked for, so the socket had no
    /// more bytes then. With edge-triggered epoll any byte arriving later
    /// brings a new readable event, so until one comes a read would only
    /// return `EAGAIN`: one system call per request saved.
    pub input_drained: bool,
    /// The peer has shut down its side (a FIN arrived).
    pub peer_finished_writing: bool,
    /// The last request said it was the last (`Connection: close`, or
    /// HTTP/1.0 without keep-alive) and had no body, so the client sends
    /// nothing more.
    pub said_close: bool,
    /// The last write said `WouldBlock`, and no writable edge has come
    /// since: writing again now would only say it again.
    pub write_blocked: bool,
    pub opened: Instant,
    /// The last time bytes moved in either direction.
    pub last_activity: Instant,
    /// The loop's clock for the current drive.
    pub now: Instant,
    /// The loop's counters, shared with every connection.
    pub stats: Rc<Stats>,
    /// The phase the counters last saw this connection in.
    pub phase: Phase,
    /// Request heads received.
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Access-log lines of the answers queued, when info logging is on.
    pending_log: Vec<AccessRecord>,
    /// See [`Client::end_after_output`].
    end_after_output: bool,
    /// See [`Client::cut_short`].
    cut_short: bool,
}

impl Client {
    /// A client that has sent nothing yet.
    pub fn new(
        id: usize,
        socket: TcpStream,
        peer: SocketAddr,
        now: Instant,
        stats: Rc<Stats>,
    ) -> Client {
        Client {
            id,
            socket,
            peer,
            tls: None,
            input: Vec::new(),
            output: Vec::new(),
            output_sent: 0,
            input_drained: false,
            peer_finished_writing: false,
            said_close: false,
            write_blocked: false,
            opened: now,
            last_activity: now,
            now,
            stats,
            phase: Phase::ReadingHead,
            requests: 0,
            bytes_in: 0,
            bytes_out: 0,
            pending_log: Vec::new(),
            end_after_output: false,
            cut_short: false,
        }
    }

    /// Whether queued bytes are still unsent (or, over TLS, records that
    /// hold them are still unwritten).
    pub fn has_unsent(&self) -> bool {
        self.output_sent < self.output.len() || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// How many queued bytes are still unsent. Over TLS, up to
    /// [`super::tls::SEND_LIMIT`] more may wait encrypted in the session.
    pub fn unsent(&self) -> usize {
        self.output.len() - self.output_sent
    }

    /// Reads once into the input buffer: at most `step` bytes, and never
    /// past `limit` bytes buffered in all.
    pub fn read_input(&mut self, limit: usize, step: usize) -> io::Result<usize> {
        let have = self.input.len();
        let room = limit.saturating_sub(have).min(step);
        if room == 0 {
            // Only reached when a caller asks for more than it allows itself.
            return Err(io::Error::other("input buffer full"));
        }
        if self.tls.is_some() {
            return self.read_tls_input(room);
        }
        self.input.reserve(room);
        let spare = self.input.spare_capacity_mut();
        loop {
            // recv(2) rather than read(2): the same for a socket, minus the
            // generic file layer (`vfs_read`) on every request.
            // SAFETY: `spare` has at least `room` writable bytes; recv(2)
            // writes at most `room` bytes there and reports how many.
            let got = unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    spare.as_mut_ptr().cast::<libc::c_void>(),
                    room,
                    0,
                )
            };
            if got < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            let got = got as usize;
            // SAFETY: the kernel initialised the first `got` spare bytes.
            unsafe { self.input.set_len(have + got) };
            self.bytes_in += got as u64;
            add(&self.stats.bytes_in, got as u64);
            self.input_drained = got < room;
            if got > 0 {
                self.last_activity = self.now;
            }
            return Ok(got);
        }
    }

    /// [`Client::read_input`] over TLS: decrypted bytes, up to `room`.
    fn read_tls_input(&mut self, room: usize) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return Err(io::Error::other("not a TLS connection"));
        };
        // rustls copies into initialised memory only: zero at most one
        // record's worth per read, not the whole room (256 KiB while an
        // upload streams), which cost more than the decryption.
        let room = room.min(TLS_READ_CHUNK);
        let have = self.input.len();
        self.input.resize(have + room, 0);
        let read = tls.read(self.socket.as_raw_fd(), &mut self.input[have..]);
        let got = *read.as_ref().unwrap_or(&0);
        self.input.truncate(have + got);
        if read.is_err() && tls.failed() {
            // The alert rustls queued is its last word: send it now.
            let _ = tls.flush(&mut self.socket);
        }
        // Anything else a read left for the client to hear (the session
        // tickets after the handshake, a key update) goes with the next
        // answer, in its write: `has_unsent` says it waits.
        let got = read?;
        self.bytes_in += got as u64;
        add(&self.stats.bytes_in, got as u64);
        self.input_drained = got < room && tls.drained();
        if got > 0 {
            self.last_activity = self.now;
        }
        Ok(got)
    }

    /// Writes queued bytes until they are all sent or the socket is full.
    /// `more` sends them with `MSG_MORE`: the kernel holds back a segment
    /// that is not full yet, because more follows at once (a file body
    /// after its head, or the FIN of a close after the last answer).
    pub fn write_output(&mut self, more: bool) -> Result<(), Stall> {
        if self.tls.is_some() {
            return self.write_tls_output();
        }
        let flags = if more { libc::MSG_MORE } else { 0 } | libc::MSG_NOSIGNAL;
        while self.output_sent < self.output.len() {
            let pending = &self.output[self.output_sent..];
            // SAFETY: `pending` is a valid slice for the length given.
            let written = unsafe {
                libc::send(
                    self.socket.as_raw_fd(),
                    pending.as_ptr().cast::<libc::c_void>(),
                    pending.len(),
                    flags,
                )
            };
            if written > 0 {
                let written = written as usize;
                self.output_sent += written;
                self.sent(written as u64);
                if self.output_sent < self.output.len() {
                    log::trace!("conn {}: partial write of {written} bytes", self.id);
                }
                continue;
            }
            if written == 0 {
                return Err(Stall::Gone("write returned 0"));
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => {
                    add(&self.stats.partial_writes, 1);
                    self.write_blocked = true;
                    return Err(Stall::Blocked);
                }
                io::ErrorKind::Interrupted => {}
                _ => return Err(Stall::Gone("peer gone while sending")),
            }
        }
        Ok(())
    }

    /// [`Client::write_output`] over TLS: plaintext into records, records
    /// to the socket, until both are done or the socket is full.
    ///
    /// Plaintext is queued before records are written, so what rustls
    /// still held (the session tickets after a handshake) and the answer
    /// leave in one `writev` — and with them the `close_notify`, when
    /// [`Client::end_after_output`] said this answer is the last.
    fn write_tls_output(&mut self) -> Result<(), Stall> {
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Err(Stall::Gone("not a TLS connection"));
            };
            if self.output_sent < self.output.len() {
                match tls.queue(&self.output[self.output_sent..]) {
                    Ok(taken) => {
                        self.output_sent += taken;
                        // `sent`, spelled out: `tls` borrows `self.tls`.
                        self.bytes_out += taken as u64;
                        add(&self.stats.bytes_out, taken as u64);
                        self.last_activity = self.now;
                    }
                    Err(_) => return Err(Stall::Gone("TLS session refused bytes")),
                }
            }
            if self.output_sent == self.output.len() && self.end_after_output && !self.cut_short {
                tls.close_notify();
            }
            match tls.flush(&mut self.socket) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    add(&self.stats.partial_writes, 1);
                    self.write_blocked = true;
                    return Err(Stall::Blocked);
                }
                Err(_) => return Err(Stall::Gone("peer gone while sending")),
            }
            if self.output_sent == self.output.len() {
                return Ok(());
            }
        }
    }

    /// The output queued now is the last the connection sends: over TLS,
    /// its `close_notify` goes in the same write.
    pub fn end_after_output(&mut self) {
        self.end_after_output = true;
    }

    /// The answer going out ends at the close and was cut short: nothing in
    /// its framing can show that, so the connection must end with a reset,
    /// never a FIN or a TLS `close_notify` that would make it look whole.
    /// An HTTP/1.0 client reading a relayed answer until the close is the
    /// case (an HTTP/1.1 one gets chunks, and misses the last).
    pub fn cut_short(&mut self) {
        self.cut_short = true;
    }

    /// Whether [`Client::cut_short`] was said: the connection closes as soon
    /// as its output is out, without lingering.
    pub fn is_cut_short(&self) -> bool {
        self.cut_short
    }

    /// Over TLS, the last words before the socket closes: a `close_notify`,
    /// as far as the socket takes it without waiting, so the client can
    /// tell the end from a cut. Not after a failure (rustls sent its alert)
    /// or mid-handshake; once only (`close_notify` queues it once, and a
    /// flush with nothing queued makes no syscall). An answer cut short
    /// gets a reset instead: a zero linger makes the close send one.
    pub fn say_goodbye(&mut self) {
        if self.cut_short {
            let _ = socket2::SockRef::from(&self.socket).set_linger(Some(Duration::ZERO));
            return;
        }
        if let Some(tls) = self.tls.as_mut() {
            if !tls.failed() && !tls.is_handshaking() {
                tls.close_notify();
                let _ = tls.flush(&mut self.socket);
            }
        }
    }

    /// Ends our side of the stream: over TLS a `close_notify` first, then
    /// the FIN. The protocols call this once everything else is sent.
    pub fn shutdown_write(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.close_notify();
            let _ = tls.flush(&mut self.socket);
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
    }

    /// Counts bytes that left for the client (by `send` or `sendfile`).
    pub fn sent(&mut self, bytes: u64) {
        self.bytes_out += bytes;
        add(&self.stats.bytes_out, bytes);
        self.last_activity = self.now;
    }

    /// Drops the bytes already sent from the front of the output, so what
    /// it holds is only what is still to go.
    pub fn compact_output(&mut self) {
        if self.output_sent > 0 {
            self.output.drain(..self.output_sent);
            self.output_sent = 0;
        }
    }

    /// Forgets the output once it is all sent, so the buffer is reused from
    /// its start.
    pub fn clear_sent_output(&mut self) {
        if self.output_sent == self.output.len() {
            self.output.clear();
            self.output_sent = 0;
        }
    }

    /// A connection waiting for its next request holds no buffers: with
    /// thousands of idle keep-alive clients, that is most of rill's memory.
    /// They go back to the loop's pool for the next busy connection.
    pub fn release_idle_buffers(&mut self, pool: &BufferPool) {
        if self.output.is_empty() {
            pool.give(std::mem::take(&mut self.output));
        }
        if self.input.is_empty() {
            pool.give(std::mem::take(&mut self.input));
        }
    }

    /// Keeps the access-log line of an answer until it has been sent.
    pub fn log_later(
        &mut self,
        method: Method,
        target: String,
        status: Status,
        body_bytes: u64,
        started: Instant,
    ) {
        if log_enabled!(Level::Info) {
            self.pending_log.push(AccessRecord {
                method,
                target,
                status: status.code(),
                body_bytes,
                started,
                upstream: None,
                aborted: None,
                tunnelled_up: None,
            });
        }
    }

    /// Names the backend, and how long it took to answer, in the access-log
    /// line last kept.
    pub fn log_upstream(&mut self, upstream: &str, answer_time: Duration) {
        if let Some(record) = self.pending_log.last_mut() {
            record.upstream = Some((upstream.to_owned(), answer_time));
        }
    }

    /// Sets the body size of the access-log line last kept (a proxied body
    /// is counted as it streams).
    pub fn log_body_bytes(&mut self, body_bytes: u64) {
        if let Some(record) = self.pending_log.last_mut() {
            record.body_bytes = body_bytes;
        }
    }

    /// Takes `unsent` bytes off the body size of the access-log line last
    /// kept: an answer cut before they left.
    pub fn log_body_bytes_short_by(&mut self, unsent: u64) {
        if let Some(record) = self.pending_log.last_mut() {
            record.body_bytes = record.body_bytes.saturating_sub(unsent);
        }
    }

    /// Marks the access-log line last kept as a tunnel's, with the bytes
    /// the client sent up it.
    pub fn log_tunnelled(&mut self, bytes_up: u64) {
        if let Some(record) = self.pending_log.last_mut() {
            record.tunnelled_up = Some(bytes_up);
        }
    }

    /// Marks the access-log line last kept as cut short, for `why`.
    pub fn log_aborted(&mut self, why: &'static str) {
        if let Some(record) = self.pending_log.last_mut() {
            record.aborted = Some(why);
        }
    }

    /// Writes the access-log lines of the answers just sent (or abandoned).
    pub fn log_pending(&mut self, aborted: Option<&str>) {
        for record in self.pending_log.drain(..) {
            let suffix = record
                .aborted
                .or(aborted)
                .map_or(String::new(), |why| format!(" (aborted: {why})"));
            let upstream = record.upstream.map_or(String::new(), |(name, took)| {
                format!(" upstream={name} {:.3}ms", took.as_secs_f64() * 1000.0)
            });
            let tunnel = record
                .tunnelled_up
                .map_or(String::new(), |up| format!(" tunnel_up={up}"));
            // An extension method's name is already in front of its target.
            let (method, space) = match record.method {
                Method::Other => ("", ""),
                known => (known.as_str(), " "),
            };
            info!(
                "{} \"{method}{space}{}\" {} {} {:.3}ms{upstream}{tunnel}{suffix}",
                self.peer,
                log_escaped(&record.target),
                record.status,
                record.body_bytes,
                record.started.elapsed().as_secs_f64() * 1000.0,
            );
        }
    }
}

/// `text` as the access log shows it between quotes: `"`, `\`, control
/// bytes and bytes above 0x7e as `\xHH`, as nginx writes them, so a target
/// cannot end its quoted field early or forge the rest of a line.
fn log_escaped(text: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\';
    if text.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if plain(b) {
            escaped.push(char::from(b));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(escaped, "\\x{b:02X}");
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::log_escaped;

    #[test]
    fn a_logged_target_cannot_close_its_quotes() {
        assert_eq!(log_escaped("/a/b?c=d"), "/a/b?c=d");
        assert_eq!(log_escaped("/a\"b"), "/a\\x22b");
        assert_eq!(log_escaped("/a\\b"), "/a\\x5Cb");
        assert_eq!(log_escaped("/\u{e9}"), "/\\xC3\\xA9");
        assert_eq!(log_escaped("/\u{1b}[2J"), "/\\x1B[2J");
    }
}
