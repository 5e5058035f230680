//! One client connection as an explicit state machine.
//!
//! A connection is always in one [`State`]:
//!
//! ```text
//!                 ┌───────────── keep-alive: the next request ─────────────┐
//!                 ▼                                                        │
//!  accept ──▶ ReadingHead ──head──▶ answer queued ──────────▶ Sending ──all sent
//!              │   ▲                  │   │                      ▲         │
//!              │   └─ small answer, ──┘   └─ GET body ──▶ DiscardingBody   │ close
//!              │      more requests          to drop         │             ▼
//!              │      already buffered                       └──▶ …     Closing ──▶ closed
//!              ├── POST/PUT accepted ──▶ ReceivingUpload ──body done──▶ Sending
//!              └── bad head: error queued, close after it ──▶ Sending
//! ```
//!
//! `Closing` drains what a client may still send after an answer that cut
//! its request short; a client that said `Connection: close` and left
//! nothing unread goes from `Sending` straight to closed.
//!
//! Every arrow is made in one place: [`Connection::drive`] calls the
//! `poll_<state>` method of the current state, which returns the next state.
//! `answer` (in `ReadingHead`) picks where a parsed request leads.
//!
//! [`Connection::drive`] runs the machine as far as the socket allows: each
//! `poll_*` method handles one state and either moves to the next state or says
//! which readiness it is waiting for. It returns to the loop only after an
//! operation reported `WouldBlock` — with edge-triggered readiness, that is the
//! only moment it is safe to sleep on the socket.
//!
//! Backpressure: while a connection is sending, it does not read; while reading
//! heads, it buffers at most one head's worth of bytes. A client that sends
//! pipelined requests faster than it reads answers therefore stalls itself,
//! not the server. An upload is read only as fast as it is written to disk:
//! at most [`UPLOAD_INPUT`] bytes are buffered, and the socket is not read
//! again until they are written out.

use crate::config::Config;
use crate::http::request::{
    parse_head, BodyFraming, HeadError, Method, Parsed, Request, MAX_HEAD_BYTES,
};
use crate::http::response::{write_generated, CommonHeaders, Extra, HeadWriter, Status};
use crate::respond::{allowed_methods, respond, Context, FileBody};
use crate::site::Site;
use crate::stats::{self, add, Phase, Stats};
use crate::timer::Timeouts;
use crate::upload::{self, Progress, Upload, BUDGET_PER_TURN};
use log::{debug, info, log_enabled, trace, warn, Level};
use mio::net::TcpStream;
use mio::Interest;
use std::cell::Cell;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::time::Instant;

/// How many bytes one `recv` asks for.
const READ_CHUNK: usize = 4096;
/// The input buffer never grows past this: one maximal head plus a read.
const MAX_INPUT: usize = MAX_HEAD_BYTES + READ_CHUNK;
/// A file body this small is copied right behind its head, so the two leave in
/// one `write` and pipelined answers can share it too.
const INLINE_BODY_MAX: u64 = 16 * 1024;
/// How many file bytes are staged per `write` where `sendfile` is refused.
const FILE_CHUNK: usize = 64 * 1024;
/// Most body bytes sent to one connection per turn of the loop (one
/// `sendfile` call). Small turns keep several big downloads interleaved, so
/// the clients read while rill sends: 4 MiB turns gave 2-3 GB/s with four
/// 1 GiB streams on loopback, 512 KiB turns 5-6 GB/s. On another VM, 1 MiB
/// files to 16 wrk clients ran at 7.6-8.5 GB/s with 512 KiB turns, 5-6 with
/// 256 KiB and 2.3-2.9 with 1 MiB (the whole body in one call), while four
/// 1 GiB streams did slightly better with 256-384 KiB; 512 KiB is the best
/// single value measured.
const SEND_BUDGET_PER_TURN: usize = 512 << 10;
/// Pipelined answers are batched until this many bytes are queued.
const FLUSH_AT: usize = 32 * 1024;
/// How many bytes of an upload body are buffered at most: one `recv` from the
/// socket, then one `write` to the file. Large writes let the page cache take
/// the data in large folios; a 1 GiB PUT cost about half the CPU with 256 KiB
/// as with 64 KiB (1.0 → 1.7-1.9 GB/s), and 1 MiB gained little more.
pub const UPLOAD_INPUT: usize = 256 * 1024;
/// Most bytes read and dropped after the last answer before closing anyway.
const MAX_LINGER_BYTES: u64 = 256 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading bytes until a whole request head is buffered.
    ReadingHead,
    /// Reading and dropping a request body nobody needs (a GET with a body),
    /// so its bytes are never taken for the next request.
    DiscardingBody { remaining: u64 },
    /// Moving an upload's body from the socket to disk.
    ReceivingUpload,
    /// Writing the queued answer bytes, then the file body, to the socket.
    Sending,
    /// Holding a `/.rill/events` stream open; the loop appends an event to
    /// the output every second and this state writes it out.
    StreamingEvents,
    /// The last answer is out but the client may still be sending (an error
    /// cut its request short): the write side is shut, and unread input is
    /// drained so closing does not reset the connection under the client.
    /// A client that said `Connection: close` and left nothing unread skips
    /// this state and is closed at once.
    Closing { drained: u64 },
}

impl State {
    /// A short name for logs and stats.
    pub fn name(&self) -> &'static str {
        match self {
            State::ReadingHead => "reading-head",
            State::DiscardingBody { .. } => "discarding-body",
            State::ReceivingUpload => "receiving-upload",
            State::Sending => "sending",
            State::StreamingEvents => "streaming-events",
            State::Closing { .. } => "closing",
        }
    }
}

/// What the loop should do with the connection after [`Connection::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sleep until the socket has this readiness.
    Wait(Interest),
    /// Not blocked, but gave up its turn: drive it again soon.
    Yield,
    /// Deregister and drop it.
    Close,
}

/// The outcome of one `poll_*` step.
enum Step {
    /// Move to this state and keep going.
    To(State),
    /// Blocked: the socket said `WouldBlock` for this direction.
    Wait(Interest),
    /// Used up its budget for this turn, with work left.
    Yield,
    /// The connection is over (peer closed, error, or all done).
    Close(&'static str),
}

/// What the connection needs from the server to answer requests.
pub struct Shared<'a> {
    pub site: &'a Site,
    /// Buffers of idle connections, for busy ones to reuse.
    pub pool: &'a BufferPool,
    pub config: &'a Config,
    /// The loop's clock, read once per turn.
    pub now: Instant,
    /// The current `Date` header value.
    pub date: &'a str,
    /// The one buffer request paths are decoded into (see [`Context`]).
    pub path_buffer: &'a Cell<Vec<u8>>,
}

/// Buffers that idle connections gave back, so a busy connection takes one
/// instead of asking the allocator, while an idle one holds none. Bounded in
/// count and in the size of what it keeps: at most 128 × 32 KiB.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl BufferPool {
    const MAX_BUFFERS: usize = 128;
    /// Buffers bigger than this (a big answer, an upload) are freed instead.
    const MAX_CAPACITY: usize = 32 * 1024;
    /// A new buffer holds a head, or a small answer with its body.
    const NEW_CAPACITY: usize = 4 * 1024;

    /// An empty buffer.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(Self::NEW_CAPACITY))
    }

    /// Takes a buffer back, emptied, unless it is unallocated, too big, or
    /// the pool is full.
    pub fn give(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 || buffer.capacity() > Self::MAX_CAPACITY {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < Self::MAX_BUFFERS {
            buffer.clear();
            free.push(buffer);
        }
    }
}

/// An upload being received, with what its answer needs.
struct Receiving {
    upload: Upload,
    common: CommonHeaders,
    method: Method,
    target: String,
    started: Instant,
}

/// One request's line in the access log, written once its answer is sent.
struct AccessRecord {
    method: Method,
    target: String,
    status: u16,
    body_bytes: u64,
    started: Instant,
}

/// A client connection: its socket, its state, and its buffers.
pub struct Connection {
    id: usize,
    socket: TcpStream,
    peer: SocketAddr,
    state: State,
    /// Received bytes not yet parsed; allocated on first read.
    input: Vec<u8>,
    /// Answer bytes queued for the socket, sent from `output_sent` on.
    output: Vec<u8>,
    output_sent: usize,
    /// The file part of the answer being sent, after `output`.
    file: Option<FileBody>,
    /// The upload being received, in `ReceivingUpload`. Dropping it deletes
    /// its temp files.
    receiving: Option<Box<Receiving>>,
    /// Close once the queued output is sent.
    close_after_send: bool,
    /// The last request said it was the last (`Connection: close`, or
    /// HTTP/1.0 without keep-alive), so the client sends nothing more.
    client_said_close: bool,
    /// `sendfile` was refused for this connection's files: copy instead.
    copy_file_body: bool,
    /// Access-log lines of the answers in `output`, when info logging is on.
    pending_log: Vec<AccessRecord>,
    opened: Instant,
    /// The loop's counters, shared with every connection.
    stats: Rc<Stats>,
    /// The phase the counters last saw this connection in.
    phase: Phase,
    /// What the next logged transition is about (`GET /a.mp4 206 ...`); only
    /// filled in at trace level.
    transition_note: Option<String>,
    /// The last time bytes moved in either direction.
    last_activity: Instant,
    /// When the first byte of the request head being read arrived.
    head_started: Instant,
    /// The loop's clock for the current drive.
    now: Instant,
    /// The last read returned less than it asked for, so the socket had no
    /// more bytes then. With edge-triggered epoll any byte arriving later
    /// brings a new readable event, so until one comes a read would only
    /// return `EAGAIN`: one system call per request saved.
    input_drained: bool,
    /// The peer has shut down its side (a FIN arrived).
    peer_finished_writing: bool,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Connection {
    /// A fresh connection, waiting for its first request head.
    pub fn new(
        id: usize,
        socket: TcpStream,
        peer: SocketAddr,
        now: Instant,
        stats: Rc<Stats>,
    ) -> Connection {
        stats.moved(None, Phase::ReadingHead);
        Connection {
            id,
            socket,
            peer,
            state: State::ReadingHead,
            input: Vec::new(),
            output: Vec::new(),
            output_sent: 0,
            file: None,
            receiving: None,
            close_after_send: false,
            client_said_close: false,
            copy_file_body: false,
            pending_log: Vec::new(),
            opened: now,
            stats,
            phase: Phase::ReadingHead,
            transition_note: None,
            input_drained: false,
            peer_finished_writing: false,
            last_activity: now,
            head_started: now,
            now,
            requests: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// The socket, for (de)registering with the poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Runs the state machine until it must wait for the socket or is done.
    pub fn drive(&mut self, shared: &Shared) -> Next {
        self.now = shared.now;
        loop {
            let step = match self.state {
                State::ReadingHead => self.poll_reading_head(shared),
                State::DiscardingBody { remaining } => self.poll_discarding_body(remaining),
                State::ReceivingUpload => self.poll_receiving_upload(shared),
                State::Sending => self.poll_sending(),
                State::StreamingEvents => self.poll_streaming(),
                State::Closing { drained } => self.poll_closing(drained),
            };
            match step {
                Step::To(next) => {
                    let note = self.transition_note.take().unwrap_or_default();
                    trace!(
                        "conn {}: {} -> {}{note}",
                        self.id,
                        self.state.name(),
                        next.name()
                    );
                    self.state = next;
                }
                Step::Wait(interest) => return self.settled(Next::Wait(interest)),
                Step::Yield => return self.settled(Next::Yield),
                Step::Close(why) => return self.closed(why),
            }
        }
    }

    /// The loop saw a readable event for this socket: there may be bytes to
    /// read again. `read_closed` says the peer's FIN has arrived: its edge
    /// may have come with the last data, so from then on every read is made,
    /// to see the end of the stream.
    pub fn readable(&mut self, read_closed: bool) {
        self.input_drained = false;
        self.peer_finished_writing |= read_closed;
    }

    /// Tells the counters which phase the connection rests in.
    fn settled(&mut self, next: Next) -> Next {
        let phase = match self.state {
            State::ReadingHead if self.input.is_empty() && self.requests > 0 => {
                Phase::IdleKeepAlive
            }
            State::ReadingHead => Phase::ReadingHead,
            State::DiscardingBody { .. } => Phase::DiscardingBody,
            State::ReceivingUpload => Phase::ReceivingUpload,
            State::Sending => Phase::Sending,
            State::StreamingEvents => Phase::StreamingEvents,
            State::Closing { .. } => Phase::Closing,
        };
        if phase != self.phase {
            self.stats.moved(Some(self.phase), phase);
            self.phase = phase;
        }
        next
    }

    /// Logs the end of the connection; the loop then drops it (and with it
    /// any upload's temp files).
    fn closed(&mut self, why: &str) -> Next {
        if self.receiving.take().is_some() {
            add(&self.stats.uploads_aborted, 1);
        }
        self.stats.closed(self.phase);
        self.log_pending(Some(why));
        debug!(
            "conn {} closed ({why}) after {:?}: {} requests, {} bytes in, {} bytes out",
            self.id,
            self.now.saturating_duration_since(self.opened),
            self.requests,
            self.bytes_in,
            self.bytes_out
        );
        Next::Close
    }

    /// When this connection's current timeout expires, given its state.
    pub fn deadline(&self, timeouts: &Timeouts) -> Instant {
        let since = match self.state {
            // Between requests on a kept-alive connection.
            State::ReadingHead if self.input.is_empty() && self.requests > 0 => {
                return self.last_activity + timeouts.idle
            }
            // A fresh connection that has sent nothing yet.
            State::ReadingHead if self.input.is_empty() => self.opened,
            State::ReadingHead => self.head_started,
            State::DiscardingBody { .. } | State::ReceivingUpload => self.last_activity,
            State::Sending | State::StreamingEvents => return self.last_activity + timeouts.idle,
            State::Closing { .. } => return self.last_activity + timeouts.linger(),
        };
        since + timeouts.header
    }

    /// The deadline passed: answer a half-sent head with 408, drop anything
    /// else. An abandoned upload's temp files go with it.
    pub fn on_timeout(&mut self, shared: &Shared) -> Next {
        self.now = shared.now;
        let why = match self.state {
            State::ReadingHead if !self.input.is_empty() => {
                debug!("conn {}: request head timed out", self.id);
                self.input.clear();
                let common = CommonHeaders {
                    keep_alive: false,
                    http10: false,
                    cors: shared.config.cors,
                };
                let status = Status::REQUEST_TIMEOUT;
                let len = self.queue_generated(
                    status,
                    "request head not received in time",
                    Extra::None,
                    common,
                    shared,
                );
                self.record_parts(
                    Method::Get,
                    String::from("-"),
                    status,
                    len,
                    self.head_started,
                );
                trace!("conn {}: reading-head -> sending (timeout)", self.id);
                self.state = State::Sending;
                return self.drive(shared);
            }
            State::ReadingHead if self.requests > 0 => "idle timeout",
            State::ReadingHead => "no request in time",
            State::DiscardingBody { .. } | State::ReceivingUpload => "body stalled",
            State::Sending | State::StreamingEvents => "client stopped reading",
            State::Closing { .. } => "linger timeout",
        };
        self.closed(why)
    }

    /// The server is shutting down: returns `true` if the connection should
    /// close now (idle, reading, or receiving an upload, which is abandoned);
    /// a connection sending an answer finishes it and then closes.
    pub fn begin_shutdown(&mut self) -> bool {
        match self.state {
            State::Sending | State::Closing { .. } => {
                self.close_after_send = true;
                false
            }
            State::ReadingHead
            | State::DiscardingBody { .. }
            | State::ReceivingUpload
            | State::StreamingEvents => true,
        }
    }

    /// Makes this fresh connection answer `answer` (a `503`) and close,
    /// without reading a request.
    pub fn refuse(&mut self, answer: Vec<u8>) {
        self.output = answer;
        self.close_after_send = true;
        self.state = State::Sending;
    }

    /// Closes at once (shutdown, or the loop giving up on it).
    pub fn abandon(&mut self, why: &str) -> Next {
        self.closed(why)
    }

    /// Appends one event to a `/.rill/events` stream. A client that does not
    /// read is not allowed to grow rill's memory: while more than one event's
    /// worth is still unsent, new events are dropped (and counted).
    pub fn push_event(&mut self, event: &[u8]) {
        if self.state != State::StreamingEvents {
            return;
        }
        if self.output.len() - self.output_sent > event.len() {
            add(&self.stats.events_dropped, 1);
            return;
        }
        self.output.drain(..self.output_sent);
        self.output_sent = 0;
        self.output.extend_from_slice(event);
        add(&self.stats.events_pushed, 1);
    }

    /// ReadingHead: parse a head from the buffer, or read more bytes.
    fn poll_reading_head(&mut self, shared: &Shared) -> Step {
        loop {
            if !self.input.is_empty() {
                // The request borrows the bytes it was parsed from, so the
                // input buffer is lent out of `self` while the answer is
                // written, and given back with the head cut off.
                let input = std::mem::take(&mut self.input);
                let answered = match parse_head(&input) {
                    Ok(Parsed::Complete(request, head_len)) => {
                        Some((self.answer(request, shared), head_len))
                    }
                    Ok(Parsed::Partial) => None,
                    Err(error) => {
                        self.input = input;
                        return self.reject(error, shared);
                    }
                };
                self.input = input;
                if let Some((step, head_len)) = answered {
                    self.input.drain(..head_len);
                    // Bytes already here belong to the next head.
                    self.head_started = self.now;
                    return step;
                }
            }
            // Answers queued for earlier pipelined requests go out before we
            // wait for more input: the client may be waiting for them.
            if self.has_output() {
                return Step::To(State::Sending);
            }
            if self.input_drained && !self.peer_finished_writing {
                self.release_idle_buffers(shared.pool);
                return Step::Wait(Interest::READABLE);
            }
            if self.input.capacity() == 0 {
                self.input = shared.pool.take();
            }
            match self.read_input(MAX_INPUT) {
                Ok(0) if self.input.is_empty() => return Step::Close("peer closed"),
                Ok(0) => return Step::Close("peer closed mid-head"),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.release_idle_buffers(shared.pool);
                    return Step::Wait(Interest::READABLE);
                }
                Err(_) => return Step::Close("read error"),
            }
        }
    }

    /// A whole head arrived: queue its answer (or start receiving its upload)
    /// and pick the next state.
    fn answer(&mut self, request: Request, shared: &Shared) -> Step {
        self.requests += 1;
        self.client_said_close = !request.keep_alive;
        // Only the access log needs the exact moment; reading the clock per
        // request cost about 2% of S1's CPU, so without the log the loop's
        // clock stands in.
        let started = if log_enabled!(Level::Info) {
            Instant::now()
        } else {
            self.now
        };
        // Only a small GET-like body is read and dropped to keep the connection;
        // any other unwanted body (a chunked one, or one sent with a refused
        // method) is answered and the connection closed, never parsed as the
        // next request.
        let body_is_skippable = match request.body {
            BodyFraming::None => true,
            BodyFraming::Length(_) => {
                matches!(request.method, Method::Get | Method::Head | Method::Options)
            }
            BodyFraming::Chunked => false,
        };
        let is_upload =
            matches!(request.method, Method::Post | Method::Put) && shared.config.uploads;
        let common = CommonHeaders {
            keep_alive: request.keep_alive && (body_is_skippable || is_upload),
            http10: request.minor_version == 0,
            cors: shared.config.cors,
        };
        if is_upload {
            return self.begin_upload(request, common, started, shared);
        }
        if shared.config.stats && matches!(request.method, Method::Get | Method::Head) {
            if let Some(route) = stats::route(&request.target) {
                return self.answer_stats(route, &request, common, started, shared);
            }
        }
        let ctx = Context {
            site: shared.site,
            config: shared.config,
            now: shared.now,
            date: shared.date,
            common,
            path_buffer: shared.path_buffer,
        };
        if self.output.capacity() == 0 {
            // A pooled buffer, or one allocation for a typical head and small
            // body rather than a chain of small ones as the head is written.
            self.output = shared.pool.take();
        }
        let reply = respond(&request, &ctx, &mut self.output);
        self.record(&request, reply.status, reply.body_len, started);
        self.close_after_send = !common.keep_alive;
        self.copy_file_body |= shared.config.no_sendfile;
        if let Some(body) = reply.file {
            if let Err(step) = self.queue_file(body) {
                return step;
            }
        }
        match request.body {
            BodyFraming::Length(remaining) if common.keep_alive && remaining > 0 => {
                Step::To(State::DiscardingBody { remaining })
            }
            _ if self.file.is_some() || self.close_after_send => Step::To(State::Sending),
            _ if self.output.len() - self.output_sent >= FLUSH_AT => Step::To(State::Sending),
            // Small answer queued: look for another pipelined request first.
            _ => Step::To(State::ReadingHead),
        }
    }

    /// `/.rill/...` with `--stats`: the page, the JSON, or the start of an
    /// event stream.
    fn answer_stats(
        &mut self,
        route: stats::Route,
        request: &Request,
        common: CommonHeaders,
        started: Instant,
        shared: &Shared,
    ) -> Step {
        let head_only = request.method == Method::Head;
        let (content_type, body) = match route {
            stats::Route::Page => ("text/html; charset=utf-8", stats::PAGE.to_owned()),
            stats::Route::Json => ("application/json", self.stats.to_json(shared.now)),
            stats::Route::Events => {
                // No length: the stream ends when the connection does.
                let common = CommonHeaders {
                    keep_alive: false,
                    ..common
                };
                HeadWriter::start(&mut self.output, Status::OK, shared.date)
                    .header("Content-Type", "text/event-stream")
                    .header("Cache-Control", "no-cache")
                    .finish(common);
                self.record(request, Status::OK, 0, started);
                if head_only {
                    self.close_after_send = true;
                    return Step::To(State::Sending);
                }
                let first = stats::event(&self.stats.to_json(shared.now));
                self.output.extend_from_slice(first.as_bytes());
                return Step::To(State::StreamingEvents);
            }
        };
        HeadWriter::start(&mut self.output, Status::OK, shared.date)
            .header("Content-Type", content_type)
            .header("Cache-Control", "no-cache")
            .content_length(body.len() as u64)
            .finish(common);
        if !head_only {
            self.output.extend_from_slice(body.as_bytes());
        }
        self.record(request, Status::OK, body.len() as u64, started);
        self.close_after_send = !common.keep_alive;
        Step::To(State::Sending)
    }

    /// StreamingEvents: write what the loop pushed; otherwise watch for the
    /// client leaving (anything it sends is read and dropped).
    fn poll_streaming(&mut self) -> Step {
        if let Err(step) = self.write_output() {
            return step;
        }
        self.output.clear();
        self.output_sent = 0;
        loop {
            self.input.clear();
            if let Err(step) = self.read_more(READ_CHUNK, "stream closed by the client") {
                return step;
            }
        }
    }

    /// An upload's head arrived: check it, then receive its body, or refuse
    /// it before a byte of the body is stored.
    fn begin_upload(
        &mut self,
        request: Request,
        common: CommonHeaders,
        started: Instant,
        shared: &Shared,
    ) -> Step {
        match upload::begin(&request, shared.site, shared.config) {
            Ok(upload) => {
                if request
                    .expect
                    .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
                {
                    self.output
                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                debug!("conn {}: receiving upload {}", self.id, request.target);
                self.receiving = Some(Box::new(Receiving {
                    upload,
                    common,
                    method: request.method,
                    target: request.target.into_owned(),
                    started,
                }));
                Step::To(State::ReceivingUpload)
            }
            Err(refusal) => {
                let common = CommonHeaders {
                    // The body was not read, so the connection cannot go on.
                    keep_alive: common.keep_alive && request.body == BodyFraming::None,
                    ..common
                };
                let allow = allowed_methods(shared.config);
                let extra = if refusal.status == Status::METHOD_NOT_ALLOWED {
                    Extra::Allow(allow)
                } else {
                    Extra::None
                };
                let len =
                    self.queue_generated(refusal.status, refusal.detail, extra, common, shared);
                self.record(&request, refusal.status, len, started);
                Step::To(State::Sending)
            }
        }
    }

    /// ReceivingUpload: send any `100 Continue`, then move body bytes from
    /// the socket to the upload, at most [`BUDGET_PER_TURN`] per turn.
    fn poll_receiving_upload(&mut self, shared: &Shared) -> Step {
        let mut budget = BUDGET_PER_TURN;
        loop {
            if self.output_sent < self.output.len() {
                match self.write_output() {
                    Ok(()) => continue,
                    Err(step) => return step,
                }
            }
            self.output.clear();
            self.output_sent = 0;
            let Some(receiving) = self.receiving.as_mut() else {
                return Step::Close("upload state missing");
            };
            let before = self.input.len();
            match receiving.upload.feed(&mut self.input) {
                Ok(Progress::Complete) => return self.finish_upload(shared),
                Ok(Progress::NeedInput) => {}
                Err(refusal) => return self.fail_upload(refusal, shared),
            }
            budget = budget.saturating_sub(before - self.input.len());
            if budget == 0 {
                // More may be waiting on the socket: the loop comes back to us
                // after the other connections had their turn.
                return Step::Yield;
            }
            if let Err(step) = self.read_more(UPLOAD_INPUT, "peer closed mid-upload") {
                return step;
            }
        }
    }

    /// The whole body is in: store the files and queue the answer.
    fn finish_upload(&mut self, shared: &Shared) -> Step {
        let Some(receiving) = self.receiving.take() else {
            return Step::Close("upload state missing");
        };
        let Receiving {
            upload,
            common,
            method,
            target,
            started,
        } = *receiving;
        let received = upload.received();
        match upload.finish(shared.date, common, false, &mut self.output) {
            Ok((status, body_len)) => {
                debug!("conn {}: upload of {received} bytes stored", self.id);
                add(&self.stats.uploads_completed, 1);
                // A stored file may replace one the cache holds open.
                shared.site.forget_cached();
                self.record_parts(method, target, status, body_len, started);
                self.close_after_send = !common.keep_alive;
                Step::To(State::Sending)
            }
            Err(refusal) => {
                let common = CommonHeaders {
                    keep_alive: false,
                    ..common
                };
                let len = self.queue_generated(
                    refusal.status,
                    refusal.detail,
                    Extra::None,
                    common,
                    shared,
                );
                self.record_parts(method, target, refusal.status, len, started);
                Step::To(State::Sending)
            }
        }
    }

    /// The body broke (bad framing, too large, disk error): drop the upload,
    /// which deletes its temp files, answer, and close.
    fn fail_upload(&mut self, refusal: upload::Refusal, shared: &Shared) -> Step {
        let Some(receiving) = self.receiving.take() else {
            return Step::Close("upload state missing");
        };
        add(&self.stats.uploads_aborted, 1);
        debug!(
            "conn {}: upload failed after {} bytes: {}",
            self.id,
            receiving.upload.received(),
            refusal.detail
        );
        let common = CommonHeaders {
            keep_alive: false,
            ..receiving.common
        };
        let len = self.queue_generated(refusal.status, refusal.detail, Extra::None, common, shared);
        let Receiving {
            method,
            target,
            started,
            ..
        } = *receiving;
        self.record_parts(method, target, refusal.status, len, started);
        Step::To(State::Sending)
    }

    /// Queues a generated answer; returns its body length. Without keep-alive
    /// the connection closes after it.
    fn queue_generated(
        &mut self,
        status: Status,
        detail: &str,
        extra: Extra,
        common: CommonHeaders,
        shared: &Shared,
    ) -> u64 {
        self.close_after_send |= !common.keep_alive;
        write_generated(
            &mut self.output,
            status,
            detail,
            extra,
            shared.date,
            common,
            false,
        )
    }

    /// Keeps the access-log line of an answer until it has been sent.
    fn record(&mut self, request: &Request, status: Status, body_bytes: u64, started: Instant) {
        self.stats.response(status.code());
        if log_enabled!(Level::Trace) {
            self.transition_note = Some(format!(
                " {} {} {} ({body_bytes} body bytes)",
                request.method.as_str(),
                request.target,
                status.code()
            ));
        }
        if log_enabled!(Level::Info) {
            self.log_later(
                request.method,
                request.target.to_string(),
                status,
                body_bytes,
                started,
            );
        }
    }

    /// Counts an answer and keeps its access-log line until it is sent.
    fn record_parts(
        &mut self,
        method: Method,
        target: String,
        status: Status,
        body_bytes: u64,
        started: Instant,
    ) {
        self.stats.response(status.code());
        self.log_later(method, target, status, body_bytes, started);
    }

    fn log_later(
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
            });
        }
    }

    /// A small body is copied behind its head now (from the file cache when
    /// it holds the bytes); a larger one is streamed.
    fn queue_file(&mut self, body: FileBody) -> Result<(), Step> {
        if body.remaining > INLINE_BODY_MAX {
            self.file = Some(body);
            return Ok(());
        }
        // remaining <= INLINE_BODY_MAX, so the casts cannot truncate.
        let (start, end) = (
            body.offset as usize,
            (body.offset + body.remaining) as usize,
        );
        if let Some(bytes) = body.file.bytes.as_deref().and_then(|b| b.get(start..end)) {
            self.output.extend_from_slice(bytes);
            return Ok(());
        }
        let at = self.output.len();
        self.output.resize(at + (end - start), 0);
        match body
            .file
            .file
            .read_exact_at(&mut self.output[at..], body.offset)
        {
            Ok(()) => Ok(()),
            Err(error) => {
                // The head is already queued, so no error status can follow it.
                warn!("conn {}: reading a file failed: {error}", self.id);
                Err(Step::Close("file read error"))
            }
        }
    }

    /// The head was bad: queue the error answer and close after it.
    fn reject(&mut self, error: HeadError, shared: &Shared) -> Step {
        self.requests += 1;
        debug!(
            "conn {}: rejected head: {} {}",
            self.id,
            error.status.code(),
            error.reason
        );
        self.input.clear();
        let common = CommonHeaders {
            keep_alive: false,
            http10: false,
            cors: shared.config.cors,
        };
        let len = self.queue_generated(error.status, error.reason, Extra::None, common, shared);
        self.record_parts(
            Method::Get,
            String::from("-"),
            error.status,
            len,
            Instant::now(),
        );
        Step::To(State::Sending)
    }

    /// DiscardingBody: drop buffered body bytes, then read and drop more.
    fn poll_discarding_body(&mut self, mut remaining: u64) -> Step {
        loop {
            let buffered = self
                .input
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            self.input.drain(..buffered);
            remaining -= buffered as u64;
            if remaining == 0 {
                return Step::To(State::ReadingHead);
            }
            self.state = State::DiscardingBody { remaining };
            if let Err(step) = self.read_more(MAX_INPUT, "peer closed mid-body") {
                return step;
            }
        }
    }

    /// Sending: write the queued bytes, then the file body with
    /// `sendfile(2)` — the kernel copies from the page cache to the socket, no
    /// buffer of ours in between — or with read+write where the kernel refuses
    /// `sendfile` for the file. At most [`SEND_BUDGET_PER_TURN`] body bytes go
    /// out per turn, so one fast reader cannot hold the loop.
    fn poll_sending(&mut self) -> Step {
        let mut budget = SEND_BUDGET_PER_TURN;
        loop {
            if self.output_sent < self.output.len() {
                if let Err(step) = self.write_output() {
                    return step;
                }
                continue;
            }
            let Some(body) = self.file.as_mut() else {
                self.output.clear();
                self.output_sent = 0;
                self.log_pending(None);
                return if !self.close_after_send {
                    Step::To(State::ReadingHead)
                } else if self.closes_without_lingering() {
                    Step::Close("done")
                } else {
                    Step::To(State::Closing { drained: 0 })
                };
            };
            if budget == 0 {
                return Step::Yield;
            }
            if self.copy_file_body {
                if let Err(step) = self.stage_file_chunk() {
                    return step;
                }
                continue;
            }
            let mut offset = body.offset as libc::off_t;
            let count = usize::try_from(body.remaining).map_or(budget, |r| r.min(budget));
            // SAFETY: both descriptors are open for the duration of the call,
            // and `offset` is a valid off_t the kernel updates.
            add(&self.stats.sendfile_calls, 1);
            let sent = unsafe {
                libc::sendfile(
                    self.socket.as_raw_fd(),
                    body.file.file.as_raw_fd(),
                    &mut offset,
                    count,
                )
            };
            if sent > 0 {
                let sent = sent as u64;
                body.offset += sent;
                body.remaining -= sent;
                self.bytes_out += sent;
                add(&self.stats.bytes_out, sent);
                self.last_activity = self.now;
                budget = budget.saturating_sub(sent as usize);
                if body.remaining == 0 {
                    self.file = None;
                } else {
                    trace!(
                        "conn {}: sendfile sent {sent} bytes, {} to go",
                        self.id,
                        body.remaining
                    );
                }
                continue;
            }
            if sent == 0 {
                warn!("conn {}: file shrank while being sent", self.id);
                return Step::Close("file shrank");
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EAGAIN) => {
                    add(&self.stats.partial_writes, 1);
                    return Step::Wait(Interest::WRITABLE);
                }
                Some(libc::EINTR) => {}
                Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                    debug!(
                        "conn {}: sendfile refused ({error}); copying instead",
                        self.id
                    );
                    self.copy_file_body = true;
                }
                _ => return Step::Close("peer gone while sending"),
            }
        }
    }

    /// Writes queued bytes until they are all sent or the socket is full.
    /// When a file body follows, `MSG_MORE` asks the kernel to hold the head
    /// back a moment so it leaves in one segment with the first body bytes.
    fn write_output(&mut self) -> Result<(), Step> {
        // MSG_MORE holds back a segment that is not full yet: the file body
        // follows the head, or the close that follows the last answer puts
        // its FIN on the same segment (the client then wakes once, not
        // twice, per connection).
        let last_before_close = self.state == State::Sending && self.closes_without_lingering();
        let more = if self.file.is_some() || last_before_close {
            libc::MSG_MORE
        } else {
            0
        };
        while self.output_sent < self.output.len() {
            let pending = &self.output[self.output_sent..];
            // SAFETY: `pending` is a valid slice for the length given.
            let written = unsafe {
                libc::send(
                    self.socket.as_raw_fd(),
                    pending.as_ptr().cast::<libc::c_void>(),
                    pending.len(),
                    more | libc::MSG_NOSIGNAL,
                )
            };
            if written > 0 {
                let written = written as usize;
                self.output_sent += written;
                self.bytes_out += written as u64;
                add(&self.stats.bytes_out, written as u64);
                self.last_activity = self.now;
                if self.output_sent < self.output.len() {
                    trace!("conn {}: partial write of {written} bytes", self.id);
                }
                continue;
            }
            if written == 0 {
                return Err(Step::Close("write returned 0"));
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => {
                    add(&self.stats.partial_writes, 1);
                    return Err(Step::Wait(Interest::WRITABLE));
                }
                io::ErrorKind::Interrupted => {}
                _ => return Err(Step::Close("peer gone while sending")),
            }
        }
        Ok(())
    }

    /// Where `sendfile` is refused: when the queued bytes run low, reads the
    /// file body's next chunk behind them.
    fn stage_file_chunk(&mut self) -> Result<(), Step> {
        let Some(body) = self.file.as_mut() else {
            return Ok(());
        };
        if self.output.len() - self.output_sent >= FILE_CHUNK / 2 {
            return Ok(());
        }
        self.output.drain(..self.output_sent);
        self.output_sent = 0;
        let start = self.output.len();
        let want = usize::try_from(body.remaining).map_or(FILE_CHUNK, |r| r.min(FILE_CHUNK));
        self.output.resize(start + want, 0);
        let read = body
            .file
            .file
            .read_at(&mut self.output[start..], body.offset);
        let got = *read.as_ref().unwrap_or(&0);
        self.output.truncate(start + got);
        match read {
            Ok(0) => {
                warn!("conn {}: file shrank while being sent", self.id);
                Err(Step::Close("file shrank"))
            }
            Ok(_) => {
                body.offset += got as u64;
                body.remaining -= got as u64;
                if body.remaining == 0 {
                    self.file = None;
                }
                Ok(())
            }
            Err(error) => {
                warn!("conn {}: reading a file failed: {error}", self.id);
                Err(Step::Close("file read error"))
            }
        }
    }

    /// Closing: shut our side, then drain what the client still sends, so the
    /// kernel does not answer unread data with a reset that could destroy the
    /// last answer before the client has read it.
    fn poll_closing(&mut self, mut drained: u64) -> Step {
        if drained == 0 {
            let _ = self.socket.shutdown(Shutdown::Write);
        }
        self.input.clear();
        loop {
            match self.read_input(READ_CHUNK) {
                Ok(0) => return Step::Close("done"),
                Ok(n) => {
                    self.input.clear();
                    drained += n as u64;
                    if drained > MAX_LINGER_BYTES {
                        return Step::Close("client kept sending after the last answer");
                    }
                    self.state = State::Closing { drained };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing unread: closing now cannot reset the answer.
                    return if drained == 0 {
                        Step::Close("done")
                    } else {
                        Step::Wait(Interest::READABLE)
                    };
                }
                Err(_) => return Step::Close("done"),
            }
        }
    }

    /// The connection closes once its output is sent, and no unread byte
    /// can turn that close into a reset: nothing is buffered, the socket
    /// held nothing more at the last read, and the client either said it
    /// will send nothing more or has already shut its side. Then `Sending`
    /// closes at once instead of lingering in `Closing` (a `shutdown`, a
    /// `recv` and a wait saved per `Connection: close`), and the last write
    /// may hold its tail back with `MSG_MORE` for the FIN to join. Both
    /// decisions ask this one question, so they cannot drift apart.
    fn closes_without_lingering(&self) -> bool {
        self.close_after_send
            && self.input.is_empty()
            && self.input_drained
            && (self.client_said_close || self.peer_finished_writing)
    }

    fn has_output(&self) -> bool {
        self.output_sent < self.output.len() || self.file.is_some()
    }

    /// Reads once; `Err` is the step to take when nothing came: wait for
    /// the socket, or close (`eof` says why when the peer has left).
    fn read_more(&mut self, limit: usize, eof: &'static str) -> Result<usize, Step> {
        match self.read_input(limit) {
            Ok(0) => Err(Step::Close(eof)),
            Ok(got) => Ok(got),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Step::Wait(Interest::READABLE)),
            Err(e) => {
                debug!("conn {}: read failed: {e}", self.id);
                Err(Step::Close("read error"))
            }
        }
    }

    /// Reads once into the input buffer, never past `limit` bytes in all.
    fn read_input(&mut self, limit: usize) -> io::Result<usize> {
        let have = self.input.len();
        // Heads are read in small steps so 10 000 busy connections stay
        // small; an upload reads as much as its buffer holds.
        let step = if self.state == State::ReceivingUpload {
            UPLOAD_INPUT
        } else {
            READ_CHUNK
        };
        let room = limit.saturating_sub(have).min(step);
        if room == 0 {
            // Only reached when a caller asks for more than it allows itself.
            return Err(io::Error::other("input buffer full"));
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
                if have == 0 && self.state == State::ReadingHead {
                    self.head_started = self.now;
                }
                self.last_activity = self.now;
            }
            return Ok(got);
        }
    }

    /// A connection waiting for its next request holds no buffers: with
    /// thousands of idle keep-alive clients, that is most of rill's memory.
    /// They go back to the loop's pool for the next busy connection.
    fn release_idle_buffers(&mut self, pool: &BufferPool) {
        if self.output.is_empty() {
            pool.give(std::mem::take(&mut self.output));
        }
        if self.input.is_empty() {
            pool.give(std::mem::take(&mut self.input));
        }
    }

    /// Writes the access-log lines of the answers just sent (or abandoned).
    fn log_pending(&mut self, aborted: Option<&str>) {
        for record in self.pending_log.drain(..) {
            let suffix = aborted.map_or(String::new(), |why| format!(" (aborted: {why})"));
            info!(
                "{} \"{} {}\" {} {} {:.3}ms{suffix}",
                self.peer,
                record.method.as_str(),
                record.target,
                record.status,
                record.body_bytes,
                record.started.elapsed().as_secs_f64() * 1000.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A connection on a real loopback socket whose client never reads.
    #[test]
    fn an_event_stream_client_that_never_reads_does_not_grow_memory() {
        let dir = tempfile::tempdir().unwrap();
        let site = Site::new(dir.path()).unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.stats = true;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        server_side.set_nonblocking(true).unwrap();
        socket2::SockRef::from(&server_side)
            .set_send_buffer_size(4096)
            .unwrap();
        let stats = Rc::new(Stats::new(Instant::now()));
        let socket = TcpStream::from_std(server_side);
        let mut conn = Connection::new(0, socket, peer, Instant::now(), Rc::clone(&stats));
        client
            .write_all(b"GET /.rill/events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let pool = BufferPool::default();
        let shared = Shared {
            site: &site,
            pool: &pool,
            config: &config,
            now: Instant::now(),
            date: "Sun, 06 Nov 1994 08:49:37 GMT",
            path_buffer: &Cell::default(),
        };
        let mut waited = 0;
        while conn.state() != State::StreamingEvents && waited < 100 {
            conn.drive(&shared);
            std::thread::sleep(std::time::Duration::from_millis(5));
            waited += 1;
        }
        assert_eq!(conn.state(), State::StreamingEvents);
        let event = [b'x'; 1024];
        for _ in 0..20_000 {
            conn.push_event(&event);
            assert_ne!(conn.drive(&shared), Next::Close);
            assert!(
                conn.output.len() <= 2 * event.len(),
                "{}",
                conn.output.len()
            );
        }
        assert!(stats.events_dropped.get() > 0, "the socket never filled up");
        assert!(stats.events_pushed.get() > 10, "nothing was sent at all");
        // The client can still read what was sent, starting with the head.
        let mut start = [0u8; 17];
        client.read_exact(&mut start).unwrap();
        assert_eq!(&start, b"HTTP/1.1 200 OK\r\n");
    }
}

/// Counts heap allocations made by the current thread while armed, so a test
/// can see what one request costs the allocator.
#[cfg(test)]
pub(crate) mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: every call is forwarded to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note();
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note();
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    fn note() {
        // try_with: the thread-locals may be gone while a thread exits.
        let _ = ARMED.try_with(|armed| {
            if armed.get() {
                let _ = COUNT.try_with(|count| count.set(count.get() + 1));
            }
        });
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Runs `f` and returns how many allocations (and reallocations) it made.
    pub fn count(f: impl FnOnce()) -> u64 {
        COUNT.with(|count| count.set(0));
        ARMED.with(|armed| armed.set(true));
        f();
        ARMED.with(|armed| armed.set(false));
        COUNT.with(|count| count.get())
    }
}

#[cfg(test)]
mod allocation_tests {
    use super::*;
    use std::io::{Read, Write};

    /// A keep-alive GET of a cached 1 KiB file, as wrk sends it, driven
    /// through a real socket: how many heap allocations does it cost once
    /// the connection and the cache are warm?
    #[test]
    fn allocations_per_keep_alive_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1k.bin"), vec![7u8; 1024]).unwrap();
        let site = Site::new(dir.path()).unwrap();
        let config = Config::new(dir.path().to_path_buf());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        server_side.set_nonblocking(true).unwrap();
        let stats = Rc::new(Stats::new(Instant::now()));
        let mut conn = Connection::new(
            0,
            TcpStream::from_std(server_side),
            peer,
            Instant::now(),
            stats,
        );
        let now = Instant::now();
        let pool = BufferPool::default();
        let shared = Shared {
            site: &site,
            pool: &pool,
            config: &config,
            now,
            date: "Sun, 06 Nov 1994 08:49:37 GMT",
            path_buffer: &Cell::default(),
        };
        let request = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n\r\n";
        let mut response = vec![0u8; 4096];
        let mut one_request = |conn: &mut Connection| {
            client.write_all(request).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
            conn.readable(false);
            let counted = alloc_count::count(|| {
                conn.drive(&shared);
            });
            let got = client.read(&mut response).unwrap();
            assert!(response[..got].starts_with(b"HTTP/1.1 200 OK\r\n"));
            counted
        };
        for _ in 0..3 {
            one_request(&mut conn); // warm the cache and the connection
        }
        let counts: Vec<u64> = (0..5).map(|_| one_request(&mut conn)).collect();
        eprintln!("allocations per request: {counts:?}");
        // The request borrows the input buffer, the path is decoded into the
        // loop's one path buffer, and the buffers an idle connection gives
        // back come from the pool again: nothing is left to allocate.
        assert!(counts.iter().all(|&n| n == 0), "{counts:?}");
    }
}
