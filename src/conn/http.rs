//! HTTP/1.1 as a server: the state machine a connection starts in, and the
//! one it returns to after a proxied exchange.
//!
//! An HTTP connection is always in one [`State`]:
//!
//! ```text
//!                 ┌───────────── keep-alive: the next request ─────────────┐
//!                 ▼                                                        │
//!  accept ──▶ ReadingHead ──head──▶ answer queued ──────────▶ Sending ──all sent
//!              │   ▲                  │   │                      ▲         │
//!              │   └─ small answer, ──┘   └─ GET body ──▶ DiscardingBody   │ close
//!              │      more requests          to drop     (or …Chunked)     │
//!              │      already buffered                       │             ▼
//!              │                                             └──▶ …     Closing ──▶ closed
//!              ├── POST/PUT accepted ──▶ ReceivingUpload ──body done──▶ Sending
//!              └── bad head: error queued, close after it ──▶ Sending
//! ```
//!
//! `Closing` drains what a client may still send after an answer that cut
//! its request short; a client that said `Connection: close` and left
//! nothing unread goes from `Sending` straight to closed.
//!
//! Every arrow is made in one place: [`Http::drive`] calls the
//! `poll_<state>` method of the current state, which returns the next state.
//! `answer` (in `ReadingHead`) asks [`crate::route::decide`] where a parsed
//! request goes, and acts on it; a request for a backend leaves this machine
//! for [`super::proxy`]. The bare prefix of a mounted route (`/py` under
//! `/py=HOST:PORT/`) never does: it is answered here with a redirect to
//! `/py/`, written as the file server writes a folder's.
//!
//! [`Http::drive`] runs the machine as far as the socket allows: each
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

use super::client::{Client, Stall};
use super::proxy::{Proxy, ProxyRequest};
use super::websocket::{WebSocket, MAX_ECHO_SOCKETS, MAX_WEBSOCKETS};
use super::{Shared, Turn};
use crate::auth::{Need, Verdict};
use crate::body::{FileBody, Pending, Piece, Prepared, Source, StepContext};
use crate::hasher::{Submitted, Ticket};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{
    header_slots, parse_head, refused_request_line, BodyFraming, HeadError, Method, Parsed,
    Request, MAX_HEAD_BYTES,
};
use crate::http::response::{
    write_generated, CommonHeaders, Extra, HeadWriter, Status, CONTINUE_HEAD,
};
use crate::respond::{allowed_methods, respond, Answer, Context, Reply};
use crate::route::{decide, Destination};
use crate::stats::{self, add, Phase};
use crate::timer::Timeouts;
use crate::upload::{self, Progress, Upload, BUDGET_PER_TURN, UPLOAD_INPUT};
use log::{debug, log_enabled, trace, warn, Level};
use mio::Interest;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
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
/// Most bytes read and dropped after the last answer before closing anyway.
const MAX_LINGER_BYTES: u64 = 256 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading bytes until a whole request head is buffered.
    ReadingHead,
    /// The head is buffered, but its credentials need a slow hash: the
    /// hashing thread checks them ([`crate::hasher`]) while nothing is read,
    /// and the head is parsed again, and answered, once the verdict with
    /// this ticket is in.
    Verifying { ticket: Ticket },
    /// Reading and dropping a request body nobody needs (a GET with a body),
    /// so its bytes are never taken for the next request.
    DiscardingBody { remaining: u64 },
    /// The same for a chunked body: decoded (its decoder is
    /// `Http::dropping`) and dropped up to its last chunk and trailers.
    DiscardingChunked,
    /// Moving an upload's body from the socket to disk.
    ReceivingUpload,
    /// The answer's head waits for work done one step per turn (a big
    /// folder scanned for its listing or archive); nothing is read or
    /// written meanwhile.
    Preparing,
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
            State::Verifying { .. } => "verifying",
            State::DiscardingBody { .. } => "discarding-body",
            State::DiscardingChunked => "discarding-chunked",
            State::ReceivingUpload => "receiving-upload",
            State::Preparing => "preparing",
            State::Sending => "sending",
            State::StreamingEvents => "streaming-events",
            State::Closing { .. } => "closing",
        }
    }
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
    /// The request goes to a backend: the connection leaves this machine.
    Proxy(Box<Proxy>),
    /// The `101` for a WebSocket handshake is queued: the connection leaves
    /// this machine.
    Upgrade(Box<WebSocket>),
}

impl Step {
    /// The step for a write to the client that stopped short.
    fn write_stalled(stall: Stall) -> Step {
        match stall {
            Stall::Blocked => Step::Wait(Interest::WRITABLE),
            Stall::Gone(why) => Step::Close(why),
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

/// An answer in `Preparing`, with what its log line and head need.
struct Preparing {
    pending: Box<Pending>,
    method: Method,
    target: String,
    common: CommonHeaders,
    started: Instant,
}

/// The HTTP/1.1 server side of a connection.
pub struct Http {
    state: State,
    /// The file part of the answer being sent, after the client's output.
    file: Option<FileBody>,
    /// What makes the rest of the answer's body, piece by piece.
    source: Option<Source>,
    /// The body bytes a source has queued so far (a listing's rows, an
    /// archive's members), while its answer is out: what its access line
    /// counts, less what never left.
    source_body: Option<u64>,
    /// The answer waiting in `Preparing`.
    preparing: Option<Box<Preparing>>,
    /// The upload being received, in `ReceivingUpload`. Dropping it deletes
    /// its temp files.
    receiving: Option<Box<Receiving>>,
    /// The unwanted chunked body being dropped, in `DiscardingChunked`.
    dropping: Option<Box<ChunkedDecoder>>,
    /// Close once the queued output is sent.
    close_after_send: bool,
    /// `sendfile` was refused for this connection's files: copy instead.
    copy_file_body: bool,
    /// What the next logged transition is about (`GET /a.mp4 206 ...`); only
    /// filled in at trace level.
    transition_note: Option<String>,
    /// When the first byte of the request head being read arrived.
    head_started: Instant,
    /// The head being answered waited in `Verifying`: its address paid for
    /// the slow check already ([`crate::auth::Gate::check_after_slow_check`]).
    slow_check_paid: bool,
}

impl Http {
    /// Waiting for a request head.
    pub fn new(now: Instant) -> Http {
        Http {
            state: State::ReadingHead,
            file: None,
            source: None,
            source_body: None,
            preparing: None,
            receiving: None,
            dropping: None,
            close_after_send: false,
            copy_file_body: false,
            transition_note: None,
            head_started: now,
            slow_check_paid: false,
        }
    }

    /// Back from a proxied exchange: send what it queued, then read the next
    /// request, or close when `close_after_send`.
    pub fn resume(now: Instant, close_after_send: bool) -> Http {
        Http {
            state: if close_after_send {
                State::Sending
            } else {
                State::ReadingHead
            },
            close_after_send,
            ..Http::new(now)
        }
    }

    /// The verdict with `ticket` is in: if this connection waited for it,
    /// it reads its head again and returns `true`.
    pub fn verdict_in(&mut self, ticket: Ticket) -> bool {
        if self.state != (State::Verifying { ticket }) {
            return false;
        }
        self.state = State::ReadingHead;
        self.slow_check_paid = true;
        true
    }

    /// Whether this is a `/.rill/events` stream.
    pub fn is_streaming_events(&self) -> bool {
        self.state == State::StreamingEvents
    }

    /// Runs the machine until it must wait for the socket, is done, or hands
    /// the connection to another protocol.
    pub fn drive(&mut self, client: &mut Client, shared: &Shared) -> Turn {
        loop {
            let step = match self.state {
                State::ReadingHead => self.poll_reading_head(client, shared),
                // Woken by the loop through `verdict_in`, not by the socket.
                State::Verifying { .. } => Step::Wait(Interest::READABLE),
                State::DiscardingBody { remaining } => self.poll_discarding_body(client, remaining),
                State::DiscardingChunked => self.poll_discarding_chunked(client),
                State::ReceivingUpload => self.poll_receiving_upload(client, shared),
                State::Preparing => self.poll_preparing(client, shared),
                State::Sending => self.poll_sending(client, shared),
                State::StreamingEvents => self.poll_streaming(client),
                State::Closing { drained } => self.poll_closing(client, drained),
            };
            match step {
                Step::To(next) => {
                    let note = self.transition_note.take().unwrap_or_default();
                    trace!(
                        "conn {}: {} -> {}{note}",
                        client.id,
                        self.state.name(),
                        next.name()
                    );
                    self.state = next;
                }
                Step::Wait(interest) => return Turn::Wait(interest),
                Step::Yield => return Turn::Yield,
                Step::Close(why) => return Turn::Close(why),
                Step::Proxy(request) => return Turn::Proxy(request),
                Step::Upgrade(ws) => return Turn::WebSocket(ws),
            }
        }
    }

    /// The phase the counters see this connection in.
    pub fn phase(&self, client: &Client) -> Phase {
        match self.state {
            State::ReadingHead if client.input.is_empty() && client.requests > 0 => {
                Phase::IdleKeepAlive
            }
            State::ReadingHead | State::Verifying { .. } => Phase::ReadingHead,
            State::DiscardingBody { .. } | State::DiscardingChunked => Phase::DiscardingBody,
            State::ReceivingUpload => Phase::ReceivingUpload,
            State::Preparing => Phase::Preparing,
            State::Sending => Phase::Sending,
            State::StreamingEvents => Phase::StreamingEvents,
            State::Closing { .. } => Phase::Closing,
        }
    }

    /// The connection is being dropped: an upload in flight is abandoned
    /// (dropping it deletes its temp files), and a file cut mid-way has its
    /// access line count the bytes that left, not the length it promised
    /// (nginx's `$body_bytes_sent`; what still waits in the output counts as
    /// not sent); a body a source made (an archive, a listing) counts what
    /// the source queued, less what never left.
    pub fn abandon(&mut self, client: &mut Client) {
        if let Some(receiving) = self.receiving.take() {
            add(&client.stats.uploads_aborted, 1);
            // An upload cut before its answer (the client left, its body
            // stalled, or shutdown) gets its line too, with nginx's 499
            // ("client closed request"), not counted as a response; the
            // connection's reason follows as `(aborted: …)`.
            client.log_later(
                receiving.method,
                receiving.target,
                Status::from_code(499),
                0,
                receiving.started,
            );
        }
        let unsent = self.file.as_ref().map_or(0, FileBody::unsent) + client.unsent() as u64;
        match self.source_body {
            Some(queued) => client.log_body_bytes(queued.saturating_sub(unsent)),
            None if self.file.is_some() => client.log_body_bytes_short_by(unsent),
            None => {}
        }
    }

    /// When this connection's current timeout expires, given its state.
    pub fn deadline(&self, client: &Client, timeouts: &Timeouts) -> Instant {
        let since = match self.state {
            // Between requests on a kept-alive connection.
            State::ReadingHead if client.input.is_empty() && client.requests > 0 => {
                return client.last_activity + timeouts.idle
            }
            // A fresh connection that has sent nothing yet.
            State::ReadingHead if client.input.is_empty() => client.opened,
            State::ReadingHead | State::Verifying { .. } => self.head_started,
            State::DiscardingBody { .. } | State::DiscardingChunked | State::ReceivingUpload => {
                client.last_activity
            }
            State::Preparing | State::Sending | State::StreamingEvents => {
                return client.last_activity + timeouts.idle
            }
            State::Closing { .. } => return client.last_activity + timeouts.linger(),
        };
        since + timeouts.header
    }

    /// The deadline passed: answer a half-sent head with 408, drop anything
    /// else. An abandoned upload's temp files go with it.
    pub fn on_timeout(&mut self, client: &mut Client, shared: &Shared) -> Turn {
        let why = match self.state {
            State::ReadingHead if !client.input.is_empty() => {
                debug!("conn {}: request head timed out", client.id);
                client.input.clear();
                let common = CommonHeaders {
                    keep_alive: false,
                    http10: false,
                    cors: shared.config.cors,
                };
                let status = Status::REQUEST_TIMEOUT;
                let len = self.queue_generated(
                    client,
                    status,
                    "request head not received in time",
                    Extra::None,
                    common,
                    shared,
                );
                client.stats.response(status.code());
                client.log_later(
                    Method::Get,
                    String::from("-"),
                    status,
                    len,
                    self.head_started,
                );
                trace!("conn {}: reading-head -> sending (timeout)", client.id);
                self.state = State::Sending;
                return self.drive(client, shared);
            }
            State::ReadingHead if client.requests > 0 => "idle timeout",
            State::ReadingHead => "no request in time",
            State::Verifying { .. } => "credentials not checked in time",
            State::DiscardingBody { .. } | State::DiscardingChunked | State::ReceivingUpload => {
                "body stalled"
            }
            State::Preparing => "answer took too long to prepare",
            State::Sending | State::StreamingEvents => "client stopped reading",
            State::Closing { .. } => "linger timeout",
        };
        Turn::Close(why)
    }

    /// The server is shutting down: returns `true` if the connection should
    /// close now (idle, or with a request not yet read or checked); one with
    /// a request under way finishes it within the grace period and then
    /// closes.
    pub fn begin_shutdown(&mut self) -> bool {
        match self.state {
            // An answer being prepared is an answer begun, and an upload
            // being received a request accepted (nginx lets both finish):
            // each is finished within the grace period like one being sent.
            State::Preparing
            | State::Sending
            | State::Closing { .. }
            | State::ReceivingUpload
            | State::DiscardingBody { .. }
            | State::DiscardingChunked => {
                self.close_after_send = true;
                false
            }
            State::ReadingHead | State::Verifying { .. } | State::StreamingEvents => true,
        }
    }

    /// The grace period of a shutdown is over: an upload still coming in is
    /// dropped (nothing of it is stored) and answered `503`, written once if
    /// the socket takes it, so its client learns why, not just that the
    /// connection closed.
    pub fn cut_at_shutdown(&mut self, client: &mut Client, shared: &Shared) {
        if self.state != State::ReceivingUpload {
            return;
        }
        let refusal = upload::Refusal {
            status: Status::SERVICE_UNAVAILABLE,
            detail: "the server is shutting down; the upload was not stored",
        };
        let _ = self.fail_upload(client, refusal, shared);
        let _ = client.write_output(false);
    }

    /// Makes this fresh connection send what is queued (a `503`) and close,
    /// without reading a request.
    pub fn refuse(&mut self) {
        self.close_after_send = true;
        self.state = State::Sending;
    }

    /// Appends one event to a `/.rill/events` stream. A client that does not
    /// read is not allowed to grow rill's memory: while more than one event's
    /// worth is still unsent, new events are dropped (and counted).
    pub fn push_event(&mut self, client: &mut Client, event: &[u8]) {
        if self.state != State::StreamingEvents {
            return;
        }
        if client.unsent() > event.len() {
            add(&client.stats.events_dropped, 1);
            return;
        }
        client.output.drain(..client.output_sent);
        client.output_sent = 0;
        client.output.extend_from_slice(event);
        add(&client.stats.events_pushed, 1);
    }

    /// ReadingHead: parse a head from the buffer, or read more bytes.
    fn poll_reading_head(&mut self, client: &mut Client, shared: &Shared) -> Step {
        loop {
            if !client.input.is_empty() {
                // The request borrows the bytes it was parsed from, so the
                // input buffer is lent out of the client while the answer is
                // written, and given back with the head cut off.
                let input = std::mem::take(&mut client.input);
                let mut slots = header_slots();
                let answered = match parse_head(&input, &mut slots) {
                    Ok(Parsed::Complete(request, head_len)) => Some((
                        self.answer(client, request, &input, head_len, shared),
                        head_len,
                    )),
                    Ok(Parsed::Partial) => None,
                    Err(error) => {
                        client.input = input;
                        return self.reject(client, error, shared);
                    }
                };
                client.input = input;
                if let Some((step, head_len)) = answered {
                    if let Step::To(State::Verifying { .. }) = step {
                        // Kept whole, to be parsed again with the verdict.
                        return step;
                    }
                    client.input.drain(..head_len);
                    // Bytes already here belong to the next head.
                    self.head_started = client.now;
                    return step;
                }
            }
            // Answers queued for earlier pipelined requests go out before we
            // wait for more input: the client may be waiting for them. Over
            // TLS, records alone wait for one more read, and TLS 1.3's
            // session tickets wait for the first answer: they leave in its
            // write. Sent alone, they reach a client while it writes its
            // request, and one that reads on another thread meanwhile
            // (Python's `websockets` over `ssl`, 1 connection in ~300) lost
            // that request and waited for an answer that never came. (In
            // TLS 1.2 what waits is rill's Finished: it goes at once.)
            let only_records_wait =
                self.file.is_none() && client.output_sent == client.output.len();
            let tickets_wait = only_records_wait
                && client.requests == 0
                && client.tls.as_ref().is_some_and(|tls| tls.is_tls13());
            if !tickets_wait
                && (client.input_drained || !only_records_wait)
                && self.has_output(client)
            {
                return Step::To(State::Sending);
            }
            if client.input_drained && !client.peer_finished_writing {
                client.release_idle_buffers(shared.pool);
                return Step::Wait(Interest::READABLE);
            }
            if client.input.capacity() == 0 {
                client.input = shared.pool.take();
            }
            let fresh = client.input.is_empty();
            match client.read_input(MAX_INPUT, READ_CHUNK) {
                Ok(0) if client.input.is_empty() => return Step::Close("peer closed"),
                Ok(0) => return Step::Close("peer closed mid-head"),
                Ok(_) => {
                    if fresh {
                        self.head_started = client.now;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    client.input_drained = true;
                    if !tickets_wait && self.has_output(client) {
                        // The records that waited for this read (above).
                        return Step::To(State::Sending);
                    }
                    client.release_idle_buffers(shared.pool);
                    return Step::Wait(Interest::READABLE);
                }
                Err(_) => return Step::Close("read error"),
            }
        }
    }

    /// A whole head arrived: ask where it goes, queue its answer (or start
    /// receiving its upload, or hand it to a backend), and pick the next
    /// state.
    fn answer(
        &mut self,
        client: &mut Client,
        request: Request,
        input: &[u8],
        head_len: usize,
        shared: &Shared,
    ) -> Step {
        let slow_check_paid = std::mem::take(&mut self.slow_check_paid);
        let destination = decide(&request, shared.config);
        // Credentials only a slow hash can check go to the hashing thread
        // first; the request is answered, and counted, with the verdict.
        if let Some(step) = self.check_off_the_loop(client, &request, &destination, shared) {
            return step;
        }
        client.requests += 1;
        add(&client.stats.requests, 1);
        // A client that said this request is its last may still be sending
        // its body: only one without a body is done talking. (An upload's
        // body is read whole anyway; a refused one must be drained, or its
        // bytes would meet a reset — see `closes_without_lingering`.)
        client.said_close = !request.keep_alive && request.body == BodyFraming::None;
        // Only the access log needs the exact moment; reading the clock per
        // request cost about 2% of S1's CPU, so without the log the loop's
        // clock stands in.
        let started = if log_enabled!(Level::Info) {
            Instant::now()
        } else {
            client.now
        };
        if let Destination::Refused(error) = destination {
            return self.answer_error(client, error, Some((&request, started)), shared);
        }
        let verdict = gate_verdict(client, &request, &destination, slow_check_paid, shared);
        if let Some(step) = self.refused_by_gate(client, &request, verdict, started, shared) {
            return step;
        }
        if let Destination::Proxy { route, target } = destination {
            let raw_head = &input[..head_len];
            return match ProxyRequest::new(
                &request, raw_head, route, &target, client, started, shared,
            ) {
                // Built here, not by the connection from a boxed request:
                // one allocation per proxied request instead of two.
                Ok(proxied) => Step::Proxy(Box::new(Proxy::new(proxied, client, shared))),
                Err(error) => self.answer_error(client, error, Some((&request, started)), shared),
            };
        }
        // The body of a GET-like request is read and dropped to keep the
        // connection, as nginx does; any other unwanted body (one sent with a
        // refused method) is answered and the connection closed, never parsed
        // as the next request.
        let body_is_skippable = request.body == BodyFraming::None
            || matches!(request.method, Method::Get | Method::Head | Method::Options);
        let is_upload = destination == Destination::Upload;
        let common = CommonHeaders {
            keep_alive: request.keep_alive && (body_is_skippable || is_upload),
            http10: request.minor_version == 0,
            cors: shared.config.cors,
        };
        match destination {
            Destination::Upload => {
                return self.begin_upload(client, request, common, started, shared)
            }
            Destination::Stats(page) => {
                return self.answer_stats(client, page, &request, common, started, shared)
            }
            Destination::LiveScript => {
                let script = crate::live::SCRIPT.as_bytes();
                let kind = "text/javascript; charset=utf-8";
                return self
                    .queue_own_page(client, &request, kind, script, common, started, shared);
            }
            Destination::WebSocket(endpoint) => {
                let head = &input[..head_len];
                return self.upgrade(client, endpoint, &request, head, started, shared);
            }
            Destination::Redirect { .. }
            | Destination::File
            | Destination::Proxy { .. }
            | Destination::Refused(_) => {}
        }
        if request.body == BodyFraming::Chunked && chunked_is_broken(&input[head_len..]) {
            // The unwanted body is never read as the next request either way,
            // but one already seen to be broken is the client's error: it
            // gets a 400, not the answer to a request it did not make whole.
            let error = HeadError {
                status: Status::BAD_REQUEST,
                reason: "malformed chunked body",
            };
            return self.answer_error(client, error, Some((&request, started)), shared);
        }
        let ctx = Context {
            site: shared.site,
            config: shared.config,
            now: shared.now,
            date: shared.date,
            clock: shared.clock,
            common,
            path_buffer: shared.path_buffer,
            live: shared.config.live_reload.then_some(shared.live),
        };
        if client.output.capacity() == 0 {
            // A pooled buffer, or one allocation for a typical head and small
            // body rather than a chain of small ones as the head is written.
            client.output = shared.pool.take();
        }
        self.close_after_send = !common.keep_alive;
        // Over TLS the bytes must pass through rustls to be encrypted: the
        // kernel here has no kTLS for sendfile to hand them to.
        self.copy_file_body |= shared.config.no_sendfile || client.tls.is_some();
        let answer = match &destination {
            // Written as the file server writes a folder's redirect, and
            // from here on handled as its answer: the body a GET may carry
            // is dropped, and any other closes the connection after it
            // (`body_is_skippable` above decided which).
            Destination::Redirect { status, location } => Answer::Reply(Reply {
                status: *status,
                body_len: write_generated(
                    &mut client.output,
                    *status,
                    location,
                    Extra::Location(location),
                    shared.date,
                    common,
                    request.method == Method::Head,
                ),
                file: None,
                source: None,
            }),
            _ => respond(&request, &ctx, &mut client.output),
        };
        let reply = match answer {
            Answer::Reply(reply) => reply,
            Answer::Pending(pending) => {
                self.preparing = Some(Box::new(Preparing {
                    pending,
                    method: request.method,
                    target: request.target.to_string(),
                    common,
                    started,
                }));
                // Whatever body came with a GET is dropped first.
                return match self.drop_body(&request, common) {
                    Some(discarding) => Step::To(discarding),
                    None => Step::To(State::Preparing),
                };
            }
        };
        self.record(client, &request, reply.status, reply.body_len, started);
        self.start_source(reply.source);
        if let Some(body) = reply.file {
            if let Err(step) = self.queue_file(client, body) {
                return step;
            }
        }
        if let Some(discarding) = self.drop_body(&request, common) {
            return Step::To(discarding);
        }
        let body_follows = self.file.is_some() || self.source.is_some();
        if body_follows || self.close_after_send || client.unsent() >= FLUSH_AT {
            Step::To(State::Sending)
        } else {
            // Small answer queued: look for another pipelined request first.
            Step::To(State::ReadingHead)
        }
    }

    /// With `--auth`, answers the gate's `verdict` (see [`gate_verdict`]):
    /// `401` (asking for credentials), `403` (a user without the right) or
    /// `429` (an address that failed too often), or `None` to go on;
    /// `/.rill/` pages need credentials even with `--public-read`. A refused
    /// request with a body is closed after the answer; one without keeps
    /// its connection, so the browser can ask again on it.
    fn refused_by_gate(
        &mut self,
        client: &mut Client,
        request: &Request,
        verdict: Option<Verdict>,
        started: Instant,
        shared: &Shared,
    ) -> Option<Step> {
        let (status, reason, extra) = match verdict? {
            Verdict::Allowed => return None,
            Verdict::Unauthorized => {
                add(&client.stats.auth_unauthorized, 1);
                (
                    Status::UNAUTHORIZED,
                    "credentials needed",
                    Extra::Authenticate,
                )
            }
            Verdict::Forbidden => {
                add(&client.stats.auth_forbidden, 1);
                (Status::FORBIDDEN, "this user may not do that", Extra::None)
            }
            Verdict::Locked(wait) => {
                add(&client.stats.auth_locked, 1);
                let secs = wait.as_secs().max(1);
                (
                    Status::TOO_MANY_REQUESTS,
                    "too many failed logins",
                    Extra::RetryAfter(secs),
                )
            }
        };
        let common = CommonHeaders {
            keep_alive: request.keep_alive && request.body == BodyFraming::None,
            http10: request.minor_version == 0,
            cors: shared.config.cors,
        };
        if client.output.capacity() == 0 {
            client.output = shared.pool.take();
        }
        let head_only = request.method == Method::Head;
        let len = write_generated(
            &mut client.output,
            status,
            reason,
            extra,
            shared.date,
            common,
            head_only,
        );
        self.record(client, request, status, len, started);
        self.close_after_send = !common.keep_alive;
        Some(if common.keep_alive {
            Step::To(State::ReadingHead)
        } else {
            Step::To(State::Sending)
        })
    }

    /// `/.rill/...` with `--stats`: the page, the JSON, or the start of an
    /// event stream.
    fn answer_stats(
        &mut self,
        client: &mut Client,
        route: stats::Route,
        request: &Request,
        common: CommonHeaders,
        started: Instant,
        shared: &Shared,
    ) -> Step {
        let head_only = request.method == Method::Head;
        let (content_type, body) = match route {
            stats::Route::Page => ("text/html; charset=utf-8", stats::PAGE.to_owned()),
            stats::Route::Json => ("application/json", client.stats.to_json(shared.now)),
            stats::Route::Events => {
                // No length: the stream ends when the connection does.
                let common = CommonHeaders {
                    keep_alive: false,
                    ..common
                };
                HeadWriter::start(&mut client.output, Status::OK, shared.date)
                    .header("Content-Type", "text/event-stream")
                    .header("Cache-Control", "no-cache")
                    .finish(common);
                self.record(client, request, Status::OK, 0, started);
                if head_only {
                    self.close_after_send = true;
                    return Step::To(State::Sending);
                }
                let first = stats::event(&client.stats.to_json(shared.now));
                client.output.extend_from_slice(first.as_bytes());
                return Step::To(State::StreamingEvents);
            }
        };
        self.queue_own_page(
            client,
            request,
            content_type,
            body.as_bytes(),
            common,
            started,
            shared,
        )
    }

    /// One of the loop's own small answers (`/.rill/` pages, `live.js`):
    /// `200`, `no-cache`, the body right behind the head.
    #[allow(clippy::too_many_arguments)]
    fn queue_own_page(
        &mut self,
        client: &mut Client,
        request: &Request,
        content_type: &str,
        body: &[u8],
        common: CommonHeaders,
        started: Instant,
        shared: &Shared,
    ) -> Step {
        HeadWriter::start(&mut client.output, Status::OK, shared.date)
            .header("Content-Type", content_type)
            .header("Cache-Control", "no-cache")
            .content_length(body.len() as u64)
            .finish(common);
        if request.method != Method::Head {
            client.output.extend_from_slice(body);
        }
        self.record(client, request, Status::OK, body.len() as u64, started);
        self.close_after_send = !common.keep_alive;
        Step::To(State::Sending)
    }

    /// A WebSocket handshake for one of the loop's endpoints: `101` and the
    /// connection becomes a [`WebSocket`], or a refusal (`400`, `403`, `426`,
    /// or `503` past [`MAX_WEBSOCKETS`]) and a close. Bytes already behind
    /// the head stay in the input: they are the first frames.
    fn upgrade(
        &mut self,
        client: &mut Client,
        endpoint: crate::route::Endpoint,
        request: &Request,
        head: &[u8],
        started: Instant,
        shared: &Shared,
    ) -> Step {
        let common = CommonHeaders {
            keep_alive: false,
            http10: request.minor_version == 0,
            cors: shared.config.cors,
        };
        let (status, reason, extra) = match crate::http::websocket::check_handshake(head) {
            Ok(_) if client.stats.websockets_open() >= MAX_WEBSOCKETS => (
                Status::SERVICE_UNAVAILABLE,
                "too many WebSockets",
                Extra::None,
            ),
            Ok(_)
                if endpoint == crate::route::Endpoint::Echo
                    && client.stats.echo_sockets.get() >= MAX_ECHO_SOCKETS =>
            {
                (
                    Status::SERVICE_UNAVAILABLE,
                    "too many echo sockets",
                    Extra::None,
                )
            }
            Ok(handshake) => {
                crate::http::websocket::write_switching_protocols(&mut client.output, &handshake);
                if endpoint == crate::route::Endpoint::Live {
                    let behind = crate::live::page_generation(&request.target);
                    client
                        .output
                        .extend_from_slice(&shared.live.hello_frames(behind));
                    add(&client.stats.ws_messages_out, 1);
                }
                self.record(client, request, Status::SWITCHING_PROTOCOLS, 0, started);
                client.log_pending(None);
                let ws = WebSocket::new(endpoint, client.now, &client.stats);
                return Step::Upgrade(Box::new(ws));
            }
            Err(refusal) => {
                let extra = match refusal.header() {
                    Some((_, version)) => Extra::WebSocketVersion(version),
                    None => Extra::None,
                };
                (
                    Status::from_code(refusal.status_code()),
                    refusal.reason(),
                    extra,
                )
            }
        };
        client.input.clear();
        let len = self.queue_generated(client, status, reason, extra, common, shared);
        self.record(client, request, status, len, started);
        self.close_after_send = true;
        Step::To(State::Sending)
    }

    /// StreamingEvents: write what the loop pushed; otherwise watch for the
    /// client leaving (anything it sends is read and dropped).
    fn poll_streaming(&mut self, client: &mut Client) -> Step {
        if let Err(stall) = client.write_output(false) {
            return Step::write_stalled(stall);
        }
        client.output.clear();
        client.output_sent = 0;
        loop {
            client.input.clear();
            if let Err(step) = read_more(
                client,
                READ_CHUNK,
                READ_CHUNK,
                "stream closed by the client",
            ) {
                return step;
            }
        }
    }

    /// An upload's head arrived: check it, then receive its body, or refuse
    /// it before a byte of the body is stored.
    fn begin_upload(
        &mut self,
        client: &mut Client,
        request: Request,
        common: CommonHeaders,
        started: Instant,
        shared: &Shared,
    ) -> Step {
        match upload::begin(&request, shared.site, shared.config) {
            Ok(upload) => {
                if request.expects_continue() {
                    client.output.extend_from_slice(CONTINUE_HEAD);
                }
                debug!("conn {}: receiving upload {}", client.id, request.target);
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
                let len = self.queue_generated(
                    client,
                    refusal.status,
                    refusal.detail,
                    extra,
                    common,
                    shared,
                );
                self.record(client, &request, refusal.status, len, started);
                Step::To(State::Sending)
            }
        }
    }

    /// ReceivingUpload: send any `100 Continue`, then move body bytes from
    /// the socket to the upload, at most [`BUDGET_PER_TURN`] per turn.
    fn poll_receiving_upload(&mut self, client: &mut Client, shared: &Shared) -> Step {
        let mut budget = BUDGET_PER_TURN;
        loop {
            if client.has_unsent() {
                match client.write_output(false) {
                    Ok(()) => continue,
                    Err(stall) => return Step::write_stalled(stall),
                }
            }
            client.output.clear();
            client.output_sent = 0;
            let Some(receiving) = self.receiving.as_mut() else {
                return Step::Close("upload state missing");
            };
            let before = client.input.len();
            match receiving.upload.feed(&mut client.input) {
                Ok(Progress::Complete) => return self.finish_upload(client, shared),
                // The input left is fed next turn, before any more is read.
                Ok(Progress::Paused) => return Step::Yield,
                Ok(Progress::NeedInput) => {}
                Err(refusal) => return self.fail_upload(client, refusal, shared),
            }
            budget = budget.saturating_sub(before - client.input.len());
            if budget == 0 {
                // More may be waiting on the socket: the loop comes back to us
                // after the other connections had their turn.
                return Step::Yield;
            }
            if let Err(step) =
                read_more(client, UPLOAD_INPUT, UPLOAD_INPUT, "peer closed mid-upload")
            {
                return step;
            }
        }
    }

    /// The whole body is in: store the files and queue the answer.
    fn finish_upload(&mut self, client: &mut Client, shared: &Shared) -> Step {
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
        match upload.finish(shared.date, common, false, &mut client.output) {
            Ok((status, body_len)) => {
                debug!("conn {}: upload of {received} bytes stored", client.id);
                add(&client.stats.uploads_completed, 1);
                // A stored file may replace one the cache holds open.
                shared.site.forget_cached();
                self.record_parts(client, method, target, status, body_len, started);
                self.close_after_send = !common.keep_alive;
                Step::To(State::Sending)
            }
            Err(refusal) => {
                let common = CommonHeaders {
                    keep_alive: false,
                    ..common
                };
                let len = self.queue_generated(
                    client,
                    refusal.status,
                    refusal.detail,
                    Extra::None,
                    common,
                    shared,
                );
                self.record_parts(client, method, target, refusal.status, len, started);
                Step::To(State::Sending)
            }
        }
    }

    /// The body broke (bad framing, too large, disk error): drop the upload,
    /// which deletes its temp files, answer, and close.
    fn fail_upload(
        &mut self,
        client: &mut Client,
        refusal: upload::Refusal,
        shared: &Shared,
    ) -> Step {
        let Some(receiving) = self.receiving.take() else {
            return Step::Close("upload state missing");
        };
        add(&client.stats.uploads_aborted, 1);
        debug!(
            "conn {}: upload failed after {} bytes: {}",
            client.id,
            receiving.upload.received(),
            refusal.detail
        );
        let common = CommonHeaders {
            keep_alive: false,
            ..receiving.common
        };
        let len = self.queue_generated(
            client,
            refusal.status,
            refusal.detail,
            Extra::None,
            common,
            shared,
        );
        let Receiving {
            method,
            target,
            started,
            ..
        } = *receiving;
        self.record_parts(client, method, target, refusal.status, len, started);
        Step::To(State::Sending)
    }

    /// Queues a generated answer; returns its body length. Without keep-alive
    /// the connection closes after it.
    fn queue_generated(
        &mut self,
        client: &mut Client,
        status: Status,
        detail: &str,
        extra: Extra,
        common: CommonHeaders,
        shared: &Shared,
    ) -> u64 {
        self.close_after_send |= !common.keep_alive;
        write_generated(
            &mut client.output,
            status,
            detail,
            extra,
            shared.date,
            common,
            false,
        )
    }

    /// Keeps the access-log line of an answer until it has been sent.
    fn record(
        &mut self,
        client: &mut Client,
        request: &Request,
        status: Status,
        body_bytes: u64,
        started: Instant,
    ) {
        client.stats.response(status.code());
        if log_enabled!(Level::Trace) {
            self.transition_note = Some(format!(
                " {} {} {} ({body_bytes} body bytes)",
                request.method.as_str(),
                request.target,
                status.code()
            ));
        }
        if log_enabled!(Level::Info) {
            client.log_later(
                request.method,
                request.logged_target(),
                status,
                body_bytes,
                started,
            );
        }
    }

    /// Counts an answer and keeps its access-log line until it is sent.
    fn record_parts(
        &mut self,
        client: &mut Client,
        method: Method,
        target: String,
        status: Status,
        body_bytes: u64,
        started: Instant,
    ) {
        client.stats.response(status.code());
        client.log_later(method, target, status, body_bytes, started);
    }

    /// A small body is copied behind its head now (from the file cache when
    /// it holds the bytes); a larger one is streamed.
    fn queue_file(&mut self, client: &mut Client, body: FileBody) -> Result<(), Step> {
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
            client.output.extend_from_slice(bytes);
            client
                .output
                .extend_from_slice(body.tail.as_deref().unwrap_or_default());
            return Ok(());
        }
        let at = client.output.len();
        client.output.resize(at + (end - start), 0);
        match body
            .file
            .file
            .read_exact_at(&mut client.output[at..], body.offset)
        {
            Ok(()) => {
                client
                    .output
                    .extend_from_slice(body.tail.as_deref().unwrap_or_default());
                Ok(())
            }
            Err(error) => {
                // The head is already queued, so no error status can follow it.
                warn!("conn {}: reading a file failed: {error}", client.id);
                Err(Step::Close("file read error"))
            }
        }
    }

    /// The head was bad: queue the error answer and close after it.
    fn reject(&mut self, client: &mut Client, error: HeadError, shared: &Shared) -> Step {
        client.requests += 1;
        add(&client.stats.requests, 1);
        self.answer_error(client, error, None, shared)
    }

    /// Answers a request that cannot be served as sent (a bad head, or a
    /// body already seen to be broken), and closes after it: its framing
    /// cannot be trusted. The access log names the request and its start
    /// when the head was parsed (`parsed`); when it was not, what its
    /// request line says (see [`refused_request_line`]).
    fn answer_error(
        &mut self,
        client: &mut Client,
        error: HeadError,
        parsed: Option<(&Request, Instant)>,
        shared: &Shared,
    ) -> Step {
        debug!(
            "conn {}: rejected head: {} {}",
            client.id,
            error.status.code(),
            error.reason
        );
        let refused_line = match parsed {
            None if log_enabled!(Level::Info) => Some(refused_request_line(&client.input)),
            _ => None,
        };
        client.input.clear();
        let common = CommonHeaders {
            keep_alive: false,
            http10: false,
            cors: shared.config.cors,
        };
        let len = self.queue_generated(
            client,
            error.status,
            error.reason,
            Extra::None,
            common,
            shared,
        );
        match parsed {
            Some((request, started)) => self.record(client, request, error.status, len, started),
            None => {
                let (method, target) =
                    refused_line.unwrap_or_else(|| (Method::Get, String::from("-")));
                self.record_parts(client, method, target, error.status, len, Instant::now())
            }
        }
        Step::To(State::Sending)
    }

    /// The answer's body is made by `source` (if any), whose bytes its
    /// access line counts from none.
    fn start_source(&mut self, source: Option<Source>) {
        self.source_body = source.as_ref().map(|_| 0);
        self.source = source;
    }

    /// The state that drops the body of a request that keeps its
    /// connection, if it has one.
    fn drop_body(&mut self, request: &Request, common: CommonHeaders) -> Option<State> {
        match request.body {
            _ if !common.keep_alive => None,
            BodyFraming::Length(remaining) if remaining > 0 => {
                Some(State::DiscardingBody { remaining })
            }
            BodyFraming::Chunked => {
                self.dropping = Some(Box::default());
                Some(State::DiscardingChunked)
            }
            _ => None,
        }
    }

    /// Sends the request's credentials to the hashing thread if only a slow
    /// hash can check them, and waits for the verdict: `Verifying`, or a
    /// `503` when too many checks wait already. `None`: the gate can answer
    /// at once.
    fn check_off_the_loop(
        &mut self,
        client: &mut Client,
        request: &Request,
        destination: &Destination,
        shared: &Shared,
    ) -> Option<Step> {
        let hasher = shared.hasher?;
        let need = gate_need(request, destination, shared)?;
        let peer = client.peer.ip();
        let check = shared
            .gate
            .slow_check(request.authorization, need, peer, client.now)?;
        match hasher.submit(check, client.id) {
            Some(Submitted::Queued(ticket)) => {
                shared.gate.charge_slow_check(peer, client.now);
                Some(Step::To(State::Verifying { ticket }))
            }
            Some(Submitted::Joined(ticket)) => Some(Step::To(State::Verifying { ticket })),
            None => {
                client.requests += 1;
                add(&client.stats.requests, 1);
                let error = HeadError {
                    status: Status::SERVICE_UNAVAILABLE,
                    reason: "too many logins being checked",
                };
                Some(self.answer_error(client, error, Some((request, client.now)), shared))
            }
        }
    }

    /// Where a connection goes once an unwanted body is dropped. The answer
    /// waits behind it: a file or a source still to send, or a head still to
    /// prepare. The next request is read only after it, or its bytes would
    /// land in the middle of this answer.
    fn after_dropped_body(&self) -> State {
        if self.preparing.is_some() {
            State::Preparing
        } else if self.file.is_some() || self.source.is_some() || self.close_after_send {
            State::Sending
        } else {
            State::ReadingHead
        }
    }

    /// DiscardingBody: drop buffered body bytes, then read and drop more.
    fn poll_discarding_body(&mut self, client: &mut Client, mut remaining: u64) -> Step {
        loop {
            let buffered = client
                .input
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            client.input.drain(..buffered);
            remaining -= buffered as u64;
            if remaining == 0 {
                return Step::To(self.after_dropped_body());
            }
            self.state = State::DiscardingBody { remaining };
            if let Err(step) = read_more(client, MAX_INPUT, READ_CHUNK, "peer closed mid-body") {
                return step;
            }
        }
    }

    /// DiscardingChunked: decode the buffered chunked body and drop it, then
    /// read more. A body whose framing breaks after its answer was queued
    /// still gets that answer (its head was whole), then the connection
    /// closes: where the next request would start is unknown.
    fn poll_discarding_chunked(&mut self, client: &mut Client) -> Step {
        let Some(decoder) = self.dropping.as_mut() else {
            return Step::Close("no chunked body to drop");
        };
        loop {
            let mut used = 0;
            let mut broken = false;
            while used < client.input.len() && !decoder.is_done() {
                match decoder.decode(&client.input[used..]) {
                    Ok(decoded) if decoded.consumed > 0 => used += decoded.consumed,
                    Ok(_) => break,
                    Err(error) => {
                        debug!("conn {}: dropped body broke: {}", client.id, error.0);
                        broken = true;
                        break;
                    }
                }
            }
            client.input.drain(..used);
            if broken || decoder.is_done() {
                self.dropping = None;
                self.close_after_send |= broken;
                return Step::To(self.after_dropped_body());
            }
            if let Err(step) = read_more(client, MAX_INPUT, READ_CHUNK, "peer closed mid-body") {
                return step;
            }
        }
    }

    /// Preparing: one bounded step of the work the answer's head waits for
    /// (reading a big folder), then yield, so other connections run between
    /// steps. When the work is done its head is queued and the answer is
    /// sent like any other.
    fn poll_preparing(&mut self, client: &mut Client, shared: &Shared) -> Step {
        // Answers to earlier pipelined requests go out meanwhile; a full
        // socket is no reason to stop preparing.
        if client.has_unsent() {
            if let Err(Stall::Gone(why)) = client.write_output(true) {
                return Step::Close(why);
            }
        }
        // Nothing is read while preparing, so a client that left would
        // only be noticed at its timeout, its folder walked for nothing:
        // one peek per step (a step is about a millisecond of work) says
        // whether it sent its FIN. (A client that half-closes after its
        // request is taken as gone, as nginx takes it.)
        if let Ok(0) = client.socket.peek(&mut [0u8; 1]) {
            return Step::Close("client left while its answer was prepared");
        }
        // The work is progress: the idle timeout counts from the last step.
        client.last_activity = client.now;
        let Some(preparing) = self.preparing.as_mut() else {
            return Step::To(State::Sending);
        };
        let ctx = StepContext {
            site: shared.site,
            now: shared.now,
            date: shared.date,
            common: preparing.common,
            head_only: preparing.method == Method::Head,
        };
        if client.output.capacity() == 0 {
            client.output = shared.pool.take();
        }
        match preparing.pending.step(&ctx, &mut client.output) {
            Prepared::NotYet => Step::Yield,
            Prepared::Ready(ready) => {
                let Some(preparing) = self.preparing.take() else {
                    return Step::Close("lost its answer");
                };
                let target = if log_enabled!(Level::Info) {
                    preparing.target
                } else {
                    String::new()
                };
                self.record_parts(
                    client,
                    preparing.method,
                    target,
                    ready.status,
                    ready.body_len,
                    preparing.started,
                );
                self.start_source(ready.source);
                self.close_after_send |= ready.close_after;
                Step::To(State::Sending)
            }
            Prepared::Busy(why) => {
                warn!("conn {}: 503: {why}", client.id);
                let status = Status::SERVICE_UNAVAILABLE;
                self.answer_unprepared(client, status, why, Extra::RetryAfter(5), shared)
            }
            Prepared::Failed(missing) => {
                let (status, detail) = match missing {
                    crate::site::Missing::NotFound => (Status::NOT_FOUND, "no such file"),
                    crate::site::Missing::Forbidden => (Status::FORBIDDEN, "not readable"),
                    crate::site::Missing::Io(error) => {
                        warn!("conn {}: file system error: {error}", client.id);
                        (Status::INTERNAL_SERVER_ERROR, "file system error")
                    }
                };
                self.answer_unprepared(client, status, detail, Extra::None, shared)
            }
        }
    }

    /// The work an answer waited for failed: a generated error answer is
    /// queued (and logged) in its place.
    fn answer_unprepared(
        &mut self,
        client: &mut Client,
        status: Status,
        detail: &str,
        extra: Extra,
        shared: &Shared,
    ) -> Step {
        let Some(preparing) = self.preparing.take() else {
            return Step::Close("lost its answer");
        };
        let len = self.queue_generated(client, status, detail, extra, preparing.common, shared);
        self.record_parts(
            client,
            preparing.method,
            preparing.target,
            status,
            len,
            preparing.started,
        );
        Step::To(State::Sending)
    }

    /// Sending: write the queued bytes, then the file body with
    /// `sendfile(2)` — the kernel copies from the page cache to the socket, no
    /// buffer of ours in between — or with read+write where the kernel refuses
    /// `sendfile` for the file. At most [`SEND_BUDGET_PER_TURN`] body bytes go
    /// out per turn, so one fast reader cannot hold the loop.
    fn poll_sending(&mut self, client: &mut Client, shared: &Shared) -> Step {
        let mut budget = SEND_BUDGET_PER_TURN;
        loop {
            if client.has_unsent() {
                if let Err(step) = self.write_output(client) {
                    return step;
                }
                continue;
            }
            if self.file.is_none() {
                if let Some(source) = self.source.as_mut() {
                    if budget == 0 {
                        return Step::Yield;
                    }
                    client.compact_output();
                    let before = client.output.len();
                    let queued = self.source_body.get_or_insert(0);
                    match source.next(shared.site, &mut client.output) {
                        Piece::Queued => {
                            let added = client.output.len() - before;
                            *queued += added as u64;
                            budget = budget.saturating_sub(added);
                        }
                        Piece::File(body) => {
                            *queued += body.unsent();
                            self.file = Some(body);
                        }
                        Piece::Done => {
                            // A streamed listing's length was not known at
                            // its head: its line gets it now.
                            client.log_body_bytes(*queued);
                            self.source = None;
                        }
                        Piece::Failed(why) => {
                            warn!("conn {}: answer cut short: {why}", client.id);
                            // The tail may be framed by the close alone (an
                            // HTTP/1.0 listing): only a reset says "cut".
                            client.cut_short();
                            return Step::Close(why);
                        }
                    }
                    continue;
                }
            }
            let Some(body) = self.file.as_mut() else {
                client.output.clear();
                client.output_sent = 0;
                self.source_body = None;
                client.log_pending(None);
                return if !self.close_after_send {
                    Step::To(State::ReadingHead)
                } else if client.is_cut_short() {
                    Step::Close("answer cut short")
                } else if self.closes_without_lingering(client) {
                    Step::Close("done")
                } else {
                    Step::To(State::Closing { drained: 0 })
                };
            };
            if budget == 0 {
                return Step::Yield;
            }
            if self.copy_file_body || body.checksum.is_some() {
                let before = body.remaining;
                if let Err(step) = self.stage_file_chunk(client) {
                    return step;
                }
                // The copy path spends the turn's budget too, or one fast
                // HTTPS download would hold the loop until its socket fills.
                let staged = before - self.file.as_ref().map_or(0, |body| body.remaining);
                budget = budget.saturating_sub(staged as usize);
                continue;
            }
            let mut offset = body.offset as libc::off_t;
            let count = usize::try_from(body.remaining).map_or(budget, |r| r.min(budget));
            // SAFETY: both descriptors are open for the duration of the call,
            // and `offset` is a valid off_t the kernel updates.
            add(&client.stats.sendfile_calls, 1);
            let sent = unsafe {
                libc::sendfile(
                    client.socket.as_raw_fd(),
                    body.file.file.as_raw_fd(),
                    &mut offset,
                    count,
                )
            };
            if sent > 0 {
                let sent = sent as u64;
                body.offset += sent;
                body.remaining -= sent;
                client.sent(sent);
                budget = budget.saturating_sub(sent as usize);
                if body.remaining == 0 {
                    if let Err(step) = self.file_sent(client) {
                        return step;
                    }
                } else {
                    trace!(
                        "conn {}: sendfile sent {sent} bytes, {} to go",
                        client.id,
                        body.remaining
                    );
                }
                continue;
            }
            if sent == 0 {
                warn!("conn {}: file shrank while being sent", client.id);
                return Step::Close("file shrank");
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EAGAIN) => {
                    add(&client.stats.partial_writes, 1);
                    return Step::Wait(Interest::WRITABLE);
                }
                Some(libc::EINTR) => {}
                Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                    debug!(
                        "conn {}: sendfile refused ({error}); copying instead",
                        client.id
                    );
                    self.copy_file_body = true;
                }
                _ => return Step::Close("peer gone while sending"),
            }
        }
    }

    /// Writes queued bytes until they are all sent or the socket is full.
    /// `MSG_MORE` holds back a segment that is not full yet when more
    /// follows at once: the file body after the head, or the FIN that the
    /// close after the last answer puts on the same segment (the client then
    /// wakes once, not twice, per connection).
    fn write_output(&mut self, client: &mut Client) -> Result<(), Step> {
        let last_before_close =
            self.state == State::Sending && self.closes_without_lingering(client);
        if last_before_close && self.file.is_none() && self.source.is_none() {
            // Over TLS the close_notify joins the answer's last write.
            client.end_after_output();
        }
        client
            .write_output(self.file.is_some() || self.source.is_some() || last_before_close)
            .map_err(Step::write_stalled)
    }

    /// Where `sendfile` is refused: when the queued bytes run low, reads the
    /// file body's next chunk behind them.
    fn stage_file_chunk(&mut self, client: &mut Client) -> Result<(), Step> {
        let Some(body) = self.file.as_mut() else {
            return Ok(());
        };
        if client.output.len() - client.output_sent >= FILE_CHUNK / 2 {
            return Ok(());
        }
        client.output.drain(..client.output_sent);
        client.output_sent = 0;
        let start = client.output.len();
        let want = usize::try_from(body.remaining).map_or(FILE_CHUNK, |r| r.min(FILE_CHUNK));
        client.output.resize(start + want, 0);
        let read = body
            .file
            .file
            .read_at(&mut client.output[start..], body.offset);
        let got = *read.as_ref().unwrap_or(&0);
        client.output.truncate(start + got);
        if let Some(checksum) = body.checksum.as_mut() {
            checksum.update(&client.output[start..]);
        }
        match read {
            Ok(0) => {
                warn!("conn {}: file shrank while being sent", client.id);
                Err(Step::Close("file shrank"))
            }
            Ok(_) => {
                body.offset += got as u64;
                body.remaining -= got as u64;
                if body.remaining == 0 {
                    self.file_sent(client)?;
                }
                Ok(())
            }
            Err(error) => {
                warn!("conn {}: reading a file failed: {error}", client.id);
                Err(Step::Close("file read error"))
            }
        }
    }

    /// The file part of the answer is out: what follows it (the live-reload
    /// snippet) is queued behind whatever is still unsent.
    fn file_sent(&mut self, client: &mut Client) -> Result<(), Step> {
        let Some(mut body) = self.file.take() else {
            return Ok(());
        };
        if let Some(tail) = body.tail.take() {
            client.compact_output();
            client.output.extend_from_slice(&tail);
        }
        match self.source.as_mut().map(|source| source.file_done(body)) {
            Some(Err(why)) => {
                warn!("conn {}: answer cut short: {why}", client.id);
                Err(Step::Close(why))
            }
            _ => Ok(()),
        }
    }

    /// Closing: shut our side, then drain what the client still sends, so the
    /// kernel does not answer unread data with a reset that could destroy the
    /// last answer before the client has read it.
    fn poll_closing(&mut self, client: &mut Client, mut drained: u64) -> Step {
        if drained == 0 {
            client.shutdown_write();
        }
        client.input.clear();
        loop {
            match client.read_input(READ_CHUNK, READ_CHUNK) {
                Ok(0) => return Step::Close("done"),
                Ok(n) => {
                    client.input.clear();
                    drained += n as u64;
                    if drained > MAX_LINGER_BYTES {
                        return Step::Close("client kept sending after the last answer");
                    }
                    self.state = State::Closing { drained };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Empty for now is not done: a client refused mid-body
                    // (a 413) may still be sending, and a close before its
                    // FIN would answer those bytes with a reset that can
                    // destroy the answer unread. Wait for the FIN, within
                    // the linger timeout and MAX_LINGER_BYTES.
                    return Step::Wait(Interest::READABLE);
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
    fn closes_without_lingering(&self, client: &Client) -> bool {
        self.close_after_send
            && client.input.is_empty()
            && client.input_drained
            && (client.said_close || client.peer_finished_writing)
    }

    fn has_output(&self, client: &Client) -> bool {
        client.has_unsent() || self.file.is_some() || self.source.is_some()
    }
}

/// Reads once (at most `step` bytes, never past `limit` buffered); `Err` is
/// the step to take when nothing came: wait for the socket, or close (`eof`
/// says why when the peer has left).
fn read_more(
    client: &mut Client,
    limit: usize,
    step: usize,
    eof: &'static str,
) -> Result<usize, Step> {
    match client.read_input(limit, step) {
        Ok(0) => Err(Step::Close(eof)),
        Ok(got) => Ok(got),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Step::Wait(Interest::READABLE)),
        Err(e) => {
            debug!("conn {}: read failed: {e}", client.id);
            Err(Step::Close("read error"))
        }
    }
}

/// The gate's verdict on a request, or `None` if it is not gated (see
/// [`gate_need`]).
fn gate_verdict(
    client: &Client,
    request: &Request,
    destination: &Destination,
    slow_check_paid: bool,
    shared: &Shared,
) -> Option<Verdict> {
    let need = gate_need(request, destination, shared)?;
    let (value, peer, now) = (request.authorization, client.peer.ip(), client.now);
    Some(if slow_check_paid {
        shared.gate.check_after_slow_check(value, need, peer, now)
    } else {
        shared.gate.check(value, need, peer, now)
    })
}

/// What a request needs of the gate (`--auth`), or `None` if it is not
/// gated: no users, or an `OPTIONS` rill answers itself (a CORS preflight
/// never carries credentials; one for a route, or asking to upgrade, is
/// gated like any request). Only `GET` and `HEAD` are reads; every other
/// method may change something (here, or at a route's backend).
fn gate_need(request: &Request, destination: &Destination, shared: &Shared) -> Option<Need> {
    if !shared.gate.is_on() {
        return None;
    }
    let rills_own_options = request.method == Method::Options
        && request.upgrade.is_none()
        && matches!(destination, Destination::File);
    if rills_own_options {
        return None;
    }
    Some(match (destination, request.method) {
        (Destination::Stats(_) | Destination::WebSocket(crate::route::Endpoint::Echo), _) => {
            Need::Inspect
        }
        // OPTIONS is safe (RFC 9110 §9.3.7): asking what a backend
        // allows changes nothing there.
        (_, Method::Get | Method::Head | Method::Options) => Need::Read,
        _ => Need::Upload,
    })
}

/// Whether the bytes of a chunked body seen so far already break its framing.
fn chunked_is_broken(mut body: &[u8]) -> bool {
    let mut decoder = ChunkedDecoder::new();
    while !body.is_empty() && !decoder.is_done() {
        match decoder.decode(body) {
            Ok(decoded) if decoded.consumed > 0 => body = &body[decoded.consumed..],
            Ok(_) => return false,
            Err(_) => return true,
        }
    }
    false
}
