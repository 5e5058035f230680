//! One request handed to a backend and its answer relayed: the state machine
//! of a connection with two sockets.
//!
//! ```text
//!   client ──request──▶ [client.input] ─frame─▶ [to_backend] ──send──▶ backend
//!   client ◀──send──── [client.output] ◀─frame─ [from_backend] ◀─recv── backend
//! ```
//!
//! The two directions run side by side (`Proxy::pump_request`,
//! `Proxy::pump_response`), each through one bounded buffer, so memory does
//! not grow with the body: while the client does not read, the backend is not
//! read; while the backend does not read an upload, the client is not read.
//! Bodies are never copied as they came: the request is rebuilt from its
//! parsed head ([`crate::http::forward`]), the answer's head is rebuilt for
//! the client ([`crate::http::relay`]), and both bodies are re-framed —
//! `Content-Length` as declared, chunked bodies decoded and encoded again.
//!
//! The answer's side moves through these states:
//!
//! ```text
//!   Connecting ──connected──▶ AwaitingHead ──final head──▶ Body ──complete──▶ Done
//!       │                      │   ▲  │                      │
//!       │ refused: 502         └───┘  │ 101, offered:        │ backend gone mid-body:
//!       │ too slow: 504       100/103 │ the connection       │ the client sees a
//!       ▼                    relayed  ▼ becomes a tunnel     ▼ truncated answer
//!     error answer           bad head: 502, silent: 504      close
//! ```
//!
//! When the answer is complete the connection goes back to HTTP
//! ([`Turn::Http`]) and the backend connection back to the pool, if both
//! ends left it clean.

use super::client::{Client, Stall};
use super::splice::Pipe;
use super::tunnel::Tunnel;
use super::{BufferPool, Shared, Turn};
use crate::http::forward::{write_forward_head, Forward};
use crate::http::reframe::{Incoming, ReframeError, Reframer};
use crate::http::relay::{
    header_slots, offered, parse_response_fields, tunnelable, upgrade_protocol, write_client_head,
    write_parsed_head, ClientBody, ClientView, LocationRewrite, ResponseBody, ResponseHead,
};
use crate::http::request::{BodyFraming, HeadError, Method, Request};
use crate::http::response::{write_generated, CommonHeaders, Extra, Status, CONTINUE_HEAD};
use crate::stats::{add, Phase};
use crate::timer::Timeouts;
use crate::upstream::UpstreamConn;
use log::{debug, log_enabled, trace, warn, Level};
use mio::Interest;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Most bytes buffered in either direction: what one `recv` brings at most.
/// The buffers come from (and go back to) the loop's [`BufferPool`], which
/// keeps buffers of this size.
const PROXY_BUFFER: usize = BufferPool::MAX_CAPACITY;
/// A `Content-Length` body with at least this much still to come is
/// spliced (socket → pipe → socket) instead of copied through rill: below
/// it the pipe's two descriptors and extra calls cost more than the copies.
const SPLICE_AT_LEAST: u64 = 64 * 1024;
/// Most bytes relayed per turn of the loop, both directions together, so
/// one fast transfer cannot hold the loop (as [`super::http`] does for
/// files).
const RELAY_BUDGET_PER_TURN: usize = 512 << 10;

/// A request on its way to a backend, as the HTTP machine hands it over.
pub struct ProxyRequest {
    /// Which of `config.routes`.
    route: usize,
    /// The head rebuilt for the backend, in a buffer from the loop's pool.
    head: Vec<u8>,
    body: BodyFraming,
    method: Method,
    /// As the client sent it, for the log.
    target: String,
    client_http10: bool,
    /// The client allows its connection to stay open after this exchange.
    client_keep_alive: bool,
    /// The protocols the client offered in `Upgrade`, when it asked to
    /// upgrade (and so the request was forwarded with its `Upgrade`).
    upgrade: Option<String>,
    /// The origin the client sees (`http://` + its `Host`), for rewriting a
    /// `Location` that names the backend.
    client_origin: Option<String>,
    /// The client expects `100 Continue` before it sends its body, and the
    /// backend answered in HTTP/1.0 last time: it would never send one, so
    /// rill does once connected (and keeps the `Expect` from it).
    continue_from_rill: bool,
    started: Instant,
}

impl ProxyRequest {
    /// Rebuilds `request` (whose head is `raw_head`) for the backend of
    /// route `route`, asking for `target`, in a buffer from the pool.
    pub fn new(
        request: &Request,
        raw_head: &[u8],
        route: usize,
        target: &str,
        client: &Client,
        started: Instant,
        shared: &Shared,
    ) -> Result<ProxyRequest, HeadError> {
        let config = shared.config;
        let mut head = shared.pool.take();
        let backend = &config.routes[route];
        let upgrade = request
            .upgrade
            .filter(|offers| tunnelable(offers))
            .map(str::to_owned);
        let backend_http10 = shared.upstreams.borrow().speaks_http10(backend.addr);
        if request.body == BodyFraming::Chunked && backend_http10 {
            // HTTP/1.0 has no chunked bodies (RFC 9112 §6.1: not to be sent
            // to a server not known to speak HTTP/1.1): such a backend reads
            // none of it and answers as if the body were empty. rill does
            // not buffer a body to count it, so the client is told.
            return Err(HeadError {
                status: Status::LENGTH_REQUIRED,
                reason: "this backend speaks HTTP/1.0, which cannot take a chunked body: send Content-Length",
            });
        }
        let continue_from_rill = request.minor_version == 1
            && request.expects_continue()
            && !matches!(request.body, BodyFraming::None | BodyFraming::Length(0))
            && backend_http10;
        let scheme = if client.tls.is_some() {
            "https"
        } else {
            "http"
        };
        write_forward_head(
            request,
            raw_head,
            &Forward {
                target,
                peer: client.peer.ip(),
                proto: scheme,
                default_host: &backend.authority,
                body: request.body,
                upgrade: upgrade.is_some(),
                strip_authorization: !config.users.is_empty(),
                strip_expect: continue_from_rill,
                prefix: backend.announced_prefix(),
            },
            &mut head,
        )?;
        Ok(ProxyRequest {
            route,
            head,
            body: request.body,
            method: request.method,
            // Kept only for the access log.
            target: if log_enabled!(Level::Info) {
                request.logged_target()
            } else {
                String::new()
            },
            client_http10: request.minor_version == 0,
            client_keep_alive: request.keep_alive,
            upgrade,
            client_origin: request.host.filter(|host| !host.is_empty()).map(|host| {
                // One allocation of the right size, where format! makes two.
                let mut origin = String::with_capacity(scheme.len() + 3 + host.len());
                origin.push_str(scheme);
                origin.push_str("://");
                origin.push_str(host);
                origin
            }),
            continue_from_rill,
            started,
        })
    }

    /// A retry on a fresh connection is safe: the method is idempotent (RFC
    /// 9110 §9.2.2) and there is no body that was already consumed.
    fn retryable(&self) -> bool {
        matches!(
            self.method,
            Method::Get
                | Method::Head
                | Method::Options
                | Method::Delete
                | Method::Put
                | Method::Trace
        ) && self.bodiless()
    }

    /// No body, or an empty one: the head alone is the request, kept until
    /// the exchange ends so a retry can send it again.
    fn bodiless(&self) -> bool {
        matches!(self.body, BodyFraming::None | BodyFraming::Length(0))
    }
}

/// Where the answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The backend has not yet accepted the connection.
    Connecting,
    /// Waiting for (the rest of) the backend's response head.
    AwaitingHead,
    /// Relaying the body, re-framed for the client.
    Body,
    /// The answer is complete; what is left is flushing it.
    Done,
}

/// Readiness of the backend socket, as its events told it: set by an edge,
/// cleared by `WouldBlock` (or a short read).
#[derive(Debug, Clone, Copy, Default)]
struct Ready {
    readable: bool,
    writable: bool,
    /// The backend's FIN has arrived. Its edge may have come with the last
    /// bytes, so from then on reads go on until one returns 0.
    closed: bool,
    /// The backend reset the connection: what came is not all it meant to
    /// send.
    reset: bool,
    /// A read returned 0: the backend has sent all it will. What it sent
    /// before may still wait in `from_backend` for room at the client.
    eof: bool,
}

/// Whether a client socket whose side closed was reset (or failed): then
/// nothing sent to it can arrive. A FIN (a read of 0), or pipelined bytes
/// before it, says the client may still be listening.
fn client_has_left(socket: &mio::net::TcpStream) -> bool {
    match socket.peek(&mut [0u8; 1]) {
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

/// Why an exchange failed, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Refused,
    Timeout,
    BadAnswer,
    Reset,
}

/// A proxied exchange.
pub struct Proxy {
    request: ProxyRequest,
    state: State,
    upstream: Option<UpstreamConn>,
    ready: Ready,
    /// Bytes for the backend (the head, then the body), sent from
    /// `to_backend_sent` on.
    to_backend: Vec<u8>,
    to_backend_sent: usize,
    /// The client's body on its way to the backend.
    request_body: Reframer,
    /// Bytes from the backend not yet relayed: the head being read, or a
    /// chunked or close-delimited body being re-framed.
    from_backend: Vec<u8>,
    /// The answer's body on its way to the client, once its head is read.
    response_body: Option<Reframer>,
    /// The answer's final head has gone to the client (1xx ones do not
    /// count: a final answer must still follow them).
    answered: bool,
    /// The request's access-log line is kept (its final status known).
    logged: bool,
    /// The backend connection may carry another request afterwards.
    reusable: bool,
    /// The client connection stays open afterwards.
    keep_client: bool,
    /// The answer being relayed is a `text/event-stream`: a shutdown does
    /// not wait for it to end, since it never does.
    event_stream: bool,
    /// Retried once on a fresh connection already.
    retried: bool,
    /// When the connect started, for its timeout.
    connect_started: Instant,
    /// The last time a byte moved to or from the backend.
    backend_activity: Instant,
    /// The pipe a long `Content-Length` body is spliced through, once one
    /// is (see [`super::splice`]).
    pipe: Option<Pipe>,
    /// Splicing failed once (no pipe to be had): copy instead.
    no_splice: bool,
    /// Opening the backend socket failed for want of a descriptor (or
    /// memory): rill's own limit, not the backend's refusal.
    out_of_descriptors: bool,
}

impl Proxy {
    /// Starts the exchange: a pooled connection to the route's backend, or
    /// a new one.
    pub fn new(request: ProxyRequest, client: &Client, shared: &Shared) -> Proxy {
        let mut request = request;
        let to_backend = std::mem::take(&mut request.head);
        // The head declared the body as the client framed it; a chunked
        // body is chunked again, and its trailers are not forwarded.
        let request_body = match request.body {
            BodyFraming::None => Reframer::new(Incoming::Length(0), false, false),
            BodyFraming::Length(n) => Reframer::new(Incoming::Length(n), false, false),
            BodyFraming::Chunked => Reframer::new(Incoming::Chunked, true, false),
        };
        add(&client.stats.proxied, 1);
        let keep_client = request.client_keep_alive;
        let mut proxy = Proxy {
            request,
            state: State::Connecting,
            upstream: None,
            ready: Ready::default(),
            to_backend,
            to_backend_sent: 0,
            request_body,
            from_backend: shared.pool.take(),
            response_body: None,
            answered: false,
            logged: false,
            reusable: false,
            keep_client,
            event_stream: false,
            retried: false,
            connect_started: shared.now,
            backend_activity: shared.now,
            pipe: None,
            no_splice: false,
            out_of_descriptors: false,
        };
        proxy.open(client, shared, false);
        proxy
    }

    /// Takes a backend connection: from the pool unless `fresh`.
    fn open(&mut self, client: &Client, shared: &Shared, fresh: bool) {
        let addr = shared.config.routes[self.request.route].addr;
        let mut upstreams = shared.upstreams.borrow_mut();
        let opened = if fresh {
            upstreams.connect(addr, client.id)
        } else {
            upstreams.checkout(addr, client.id, shared.now, !self.request.retryable())
        };
        self.connect_started = shared.now;
        self.backend_activity = shared.now;
        match opened {
            Ok(conn) => {
                // A pooled connection is connected and writable, and has
                // nothing to read until the answer raises a new edge; a new
                // one says it is connected with its first edge.
                self.state = if conn.reused {
                    State::AwaitingHead
                } else {
                    State::Connecting
                };
                self.ready = Ready {
                    readable: false,
                    writable: conn.reused,
                    closed: false,
                    reset: false,
                    eof: false,
                };
                self.upstream = Some(conn);
            }
            Err(error) => {
                self.out_of_descriptors = matches!(
                    error.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                debug!("conn {}: connecting to {addr} failed: {error}", client.id);
                self.upstream = None;
            }
        }
    }

    /// The loop saw an event for the backend socket.
    pub fn upstream_event(&mut self, readable: bool, writable: bool, closed: bool) {
        self.ready.readable |= readable;
        self.ready.writable |= writable;
        self.ready.closed |= closed;
    }

    /// The phase the counters see this connection in.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Connecting => Phase::ProxyConnecting,
            _ => Phase::Proxying,
        }
    }

    /// Takes the backend connection out, with whether it can be pooled.
    ///
    /// Clean means: the answer is complete, the whole request went out (see
    /// `Proxy::finish`), the backend did not say close or send its FIN,
    /// and nothing more is waiting in the socket. A socket last read short
    /// was empty then, and anything later raises an edge that the pool
    /// sees; one whose last read filled the buffer is asked (`MSG_PEEK`).
    pub fn take_upstream(&mut self) -> Option<(UpstreamConn, bool)> {
        let upstream = self.upstream.take()?;
        let clean = self.reusable
            && self.state == State::Done
            && !self.ready.closed
            && (!self.ready.readable || crate::upstream::still_quiet(&upstream.socket));
        Some((upstream, clean))
    }

    /// The exchange waits for the client's body: all that came is sent.
    fn awaiting_client(&self) -> bool {
        !self.request_body.is_done() && self.to_backend_sent == self.to_backend.len()
    }

    /// The whole request — head, body and its framing — has gone to the
    /// backend.
    fn request_flushed(&self) -> bool {
        self.request_body.is_done() && self.to_backend_sent == self.to_backend.len()
    }

    /// When this exchange times out: the backend's silence while rill waits
    /// for it, the connect, or a client that stopped reading.
    pub fn deadline(&self, client: &Client, timeouts: &Timeouts) -> Instant {
        if self.state == State::Connecting {
            return self.connect_started + timeouts.proxy_connect;
        }
        if self.client_has_pending(client) {
            // The backend waits for the client: its silence is not its fault.
            return client.last_activity + timeouts.idle;
        }
        if self.awaiting_client() {
            // Likewise while the client's body is slow to come: it is held
            // to the upload rule.
            return client.last_activity + timeouts.header;
        }
        self.backend_activity + timeouts.proxy
    }

    /// The deadline passed: before any answer, `504`; after, a close.
    pub fn on_timeout(&mut self, client: &mut Client, shared: &Shared) -> Turn {
        if self.client_has_pending(client) && self.state != State::Connecting {
            return Turn::Close("client stopped reading");
        }
        if self.state != State::Connecting && self.awaiting_client() {
            // The client stopped sending its body: not the backend's fault.
            self.reusable = false;
            if self.answered {
                return Turn::Close("request body stalled");
            }
            let why = "request body not received in time";
            return self.fail(client, shared, Status::REQUEST_TIMEOUT, why);
        }
        self.count(client, Failure::Timeout);
        let what = if self.state == State::Connecting {
            "backend did not accept the connection in time"
        } else {
            "backend did not answer in time"
        };
        warn!(
            "conn {}: {what} ({})",
            client.id, shared.config.routes[self.request.route].authority
        );
        self.fail(client, shared, Status::GATEWAY_TIMEOUT, what)
    }

    /// The server is shutting down: the answer may finish, then the client
    /// connection closes. An event stream never finishes: it closes now (its
    /// client reconnects), as rill's own `/.rill/events` does. Says whether
    /// to close at once.
    pub fn begin_shutdown(&mut self) -> bool {
        self.keep_client = false;
        self.answered && self.event_stream
    }

    /// The shutdown's grace period ended before the backend answered: the
    /// client is told `503` and why (the connection closes right after).
    pub fn refuse_unanswered(&mut self, client: &mut Client, shared: &Shared) {
        if self.answered {
            return;
        }
        self.keep_client = false;
        let why = "the server is shutting down";
        let _ = self.fail(client, shared, Status::SERVICE_UNAVAILABLE, why);
        let _ = client.write_output(false);
    }

    /// The connection closes with the backend's answer unfinished (the
    /// client left or stopped reading, or a shutdown): its access line gets
    /// the body bytes that left, as nginx's `$body_bytes_sent` does — those
    /// relayed, less what still waits in the output or the pipe (a chunked
    /// answer's framing there makes it a slight undercount).
    pub fn log_cut(&self, client: &mut Client) {
        if self.response_body.is_none() {
            return;
        }
        let waiting = client.unsent() + self.pipe.as_ref().map_or(0, Pipe::held);
        client.log_body_bytes(self.relayed().saturating_sub(waiting as u64));
    }

    /// Runs both directions until neither can move.
    pub fn drive(&mut self, client: &mut Client, shared: &Shared) -> Turn {
        let mut budget = RELAY_BUDGET_PER_TURN;
        loop {
            if self.upstream.is_none() && self.out_of_descriptors {
                warn!(
                    "conn {}: 503: no descriptor left for a backend socket",
                    client.id
                );
                return self.fail_with(
                    client,
                    shared,
                    Status::SERVICE_UNAVAILABLE,
                    "too many connections",
                    Extra::RetryAfter(5),
                );
            }
            if self.upstream.is_none() {
                self.count(client, Failure::Refused);
                return self.fail(
                    client,
                    shared,
                    Status::BAD_GATEWAY,
                    "backend refused the connection",
                );
            }
            if self.state == State::Connecting {
                match self.poll_connecting(client) {
                    Ok(true) => {}
                    Ok(false) => return Turn::Wait(Interest::READABLE),
                    Err(failure) => return failure.turn(self, client, shared),
                }
            }
            if self.request.continue_from_rill {
                // Connected: the client may send its body now.
                self.request.continue_from_rill = false;
                client.output.extend_from_slice(CONTINUE_HEAD);
            }
            let mut moved = match self.pump_request(client, &mut budget) {
                Ok(moved) => moved,
                Err(failure) => return failure.turn(self, client, shared),
            };
            match self.pump_response(client, shared, &mut budget) {
                Ok(Pumped::Moved) => moved = true,
                Ok(Pumped::Still) => {}
                Ok(Pumped::Switch(turn)) => return turn,
                Err(failure) => return failure.turn(self, client, shared),
            }
            if self.state == State::Done {
                return self.finish(client, shared);
            }
            if !moved {
                let interest = self.client_interest(client);
                trace!(
                    "conn {}: proxy waits: client {interest:?}, backend {:?}",
                    client.id,
                    self.ready
                );
                return Turn::Wait(interest);
            }
            if budget == 0 {
                return Turn::Yield;
            }
        }
    }

    /// Connecting: the first edge says the connect finished, one way or the
    /// other. `Ok(true)` once connected.
    fn poll_connecting(&mut self, client: &Client) -> Result<bool, Fault> {
        let Some(upstream) = &self.upstream else {
            return Err(Fault::Refused);
        };
        if !self.ready.writable && !self.ready.readable {
            return Ok(false);
        }
        if let Ok(Some(error)) | Err(error) = upstream.socket.take_error() {
            debug!("conn {}: connect failed: {error}", client.id);
            return Err(Fault::Refused);
        }
        match upstream.socket.peer_addr() {
            Ok(_) => {
                trace!("conn {}: upstream {} connected", client.id, upstream.id);
                self.state = State::AwaitingHead;
                self.ready.writable = true;
                Ok(true)
            }
            // A spurious edge: still connecting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                self.ready = Ready::default();
                Ok(false)
            }
            Err(_) => Err(Fault::Refused),
        }
    }

    /// Moves the request towards the backend: client bytes into
    /// `to_backend` (re-framed), and `to_backend` out to the socket, until
    /// one side blocks or this turn's `budget` (shared with the answer's
    /// direction) is spent: a fast upload into a fast backend must not
    /// hold the loop either.
    fn pump_request(&mut self, client: &mut Client, budget: &mut usize) -> Result<bool, Fault> {
        let mut moved = false;
        loop {
            // All that was queued has gone: the buffer takes more body. This
            // comes before the framing, never after it: a turn that sent the
            // last queued byte and then spent its budget must find the room
            // when it resumes, or it would see nothing to do and wait for an
            // event that never comes (the client may have sent everything).
            // A request without a body (or with an empty one) keeps its head
            // until the exchange ends: a retry sends it again.
            if self.to_backend_sent == self.to_backend.len() && !self.request.bodiless() {
                self.to_backend.clear();
                self.to_backend_sent = 0;
            }
            moved |= self.frame_request_body(client)?;
            if *budget == 0 {
                return Ok(moved);
            }
            if self.to_backend_sent < self.to_backend.len() && self.ready.writable {
                let sent = self.send_to_backend()?;
                moved |= sent > 0;
                *budget = budget.saturating_sub(sent);
                if sent > 0 {
                    continue;
                }
            }
            // More body is wanted and there is room for it: read the client.
            let wants_body = !self.request_body.is_done();
            if wants_body
                && client.input.is_empty()
                && self.to_backend.len() < PROXY_BUFFER
                && (!client.input_drained || client.peer_finished_writing)
            {
                match client.read_input(PROXY_BUFFER, PROXY_BUFFER) {
                    Ok(0) => return Err(Fault::ClientGone("client closed mid-body")),
                    Ok(_) => {
                        moved = true;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Err(Fault::ClientGone("read error")),
                }
            }
            // The whole request is out and an event said the client's side
            // closed while the backend thinks: a client that reset frees
            // its backend connection now, not at the proxy timeout. A FIN
            // alone may be a half-close (`nc`): that client still gets its
            // answer, as with HAProxy's default.
            if !wants_body
                && !self.answered
                && client.peer_finished_writing
                && client.input.is_empty()
                && client_has_left(&client.socket)
            {
                return Err(Fault::ClientGone("client left before the answer"));
            }
            return Ok(moved);
        }
    }

    /// Takes request-body bytes from the client's input into `to_backend`,
    /// framed as declared, while there is room.
    fn frame_request_body(&mut self, client: &mut Client) -> Result<bool, Fault> {
        let room = PROXY_BUFFER.saturating_sub(self.to_backend.len());
        if client.input.is_empty() || room == 0 || self.request_body.is_done() {
            return Ok(false);
        }
        let used = self
            .request_body
            .feed(&client.input, &mut self.to_backend, room)
            .map_err(|error| match error {
                ReframeError::Chunked(why) => Fault::BadRequestBody(why),
                ReframeError::Truncated => Fault::ClientGone("client closed mid-body"),
            })?;
        client.input.drain(..used);
        Ok(used > 0)
    }

    /// Sends queued bytes to the backend; how many went.
    fn send_to_backend(&mut self) -> Result<usize, Fault> {
        let Some(upstream) = &self.upstream else {
            return Err(Fault::Reset);
        };
        let pending = &self.to_backend[self.to_backend_sent..];
        // SAFETY: `pending` is a valid slice for the length given.
        let sent = unsafe {
            libc::send(
                upstream.socket.as_raw_fd(),
                pending.as_ptr().cast(),
                pending.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if sent >= 0 {
            self.to_backend_sent += sent as usize;
            self.backend_activity = Instant::now();
            return Ok(sent as usize);
        }
        match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock => {
                self.ready.writable = false;
                Ok(0)
            }
            io::ErrorKind::Interrupted => Ok(0),
            _ => Err(Fault::Reset),
        }
    }

    /// Moves the answer towards the client: backend bytes in (only while
    /// the client's output has room), re-framed into the client's output,
    /// and the output out to the client.
    fn pump_response(
        &mut self,
        client: &mut Client,
        shared: &Shared,
        budget: &mut usize,
    ) -> Result<Pumped, Fault> {
        let mut moved = false;
        loop {
            if self.splices(client) {
                return match self.pump_spliced(client, budget)? {
                    Pumped::Still if moved => Ok(Pumped::Moved),
                    pumped => Ok(pumped),
                };
            }
            // Read and re-frame all the backend has for us first, and write
            // after: a head and the body behind it leave in one `send`.
            let has_room = client.unsent() < PROXY_BUFFER && *budget > 0;
            let has_input = self.ready.readable
                || !self.from_backend.is_empty()
                || (self.ready.eof && matches!(self.state, State::AwaitingHead | State::Body));
            let answering = !matches!(self.state, State::Done | State::Connecting);
            if answering && has_room && has_input {
                // What was sent from the front of the output is dropped, so
                // the buffer stays within its bound across partial writes.
                client.compact_output();
                let read = if self.ready.readable {
                    self.recv_from_backend(client)?
                } else {
                    Received::Nothing
                };
                let came = read != Received::Nothing;
                match self.relay(client, shared, read)? {
                    Relayed::Switch(turn) => return Ok(Pumped::Switch(turn)),
                    Relayed::Progress => {
                        moved = true;
                        continue;
                    }
                    Relayed::Nothing if came => {
                        moved = true;
                        continue;
                    }
                    Relayed::Nothing => {}
                }
            }
            // Then write; while the client does not keep up, its output
            // stays full and the backend is not read (the checks above).
            if client.has_unsent() && !client.write_blocked {
                let before = client.output_sent;
                match client.write_output(false) {
                    Ok(()) => {}
                    Err(Stall::Blocked) => client.write_blocked = true,
                    Err(Stall::Gone(why)) => return Err(Fault::ClientGone(why)),
                }
                let sent = client.output_sent - before;
                client.clear_sent_output();
                *budget = budget.saturating_sub(sent);
                if sent > 0 {
                    moved = true;
                    continue;
                }
            }
            return Ok(if moved { Pumped::Moved } else { Pumped::Still });
        }
    }

    /// Whether the answer's body goes through the pipe now: a long enough
    /// `Content-Length` body (or one already in the pipe), everything
    /// before it sent, to a plain-HTTP client. Makes the pipe on first use.
    fn splices(&mut self, client: &Client) -> bool {
        if self.pipe.as_ref().is_some_and(|pipe| pipe.held() > 0) {
            return true;
        }
        let long_enough = self.state == State::Body
            && self
                .response_body
                .as_ref()
                .and_then(Reframer::passable)
                .is_some_and(|left| left >= SPLICE_AT_LEAST);
        if !long_enough
            || self.no_splice
            || client.tls.is_some()
            || client.has_unsent()
            || !self.from_backend.is_empty()
        {
            return false;
        }
        if self.pipe.is_none() {
            match Pipe::new() {
                Ok(pipe) => self.pipe = Some(pipe),
                Err(e) => {
                    debug!("conn {}: no pipe ({e}): copying instead", client.id);
                    self.no_splice = true;
                    return false;
                }
            }
        }
        true
    }

    /// Body, spliced: backend → pipe while the pipe has room, pipe →
    /// client while the client takes it, until both block, the body is
    /// done, or the turn's budget is spent.
    fn pump_spliced(&mut self, client: &mut Client, budget: &mut usize) -> Result<Pumped, Fault> {
        let (Some(pipe), Some(upstream), Some(body)) = (
            self.pipe.as_mut(),
            self.upstream.as_ref(),
            self.response_body.as_mut(),
        ) else {
            return Err(Fault::Reset);
        };
        let mut moved = false;
        loop {
            if pipe.held() > 0 && !client.write_blocked {
                match pipe.drain_into(client.socket.as_raw_fd()) {
                    Ok(0) => client.write_blocked = true, // took nothing: wait
                    Ok(sent) => {
                        client.sent(sent as u64);
                        *budget = budget.saturating_sub(sent);
                        moved = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        add(&client.stats.partial_writes, 1);
                        client.write_blocked = true;
                    }
                    Err(_) => return Err(Fault::ClientGone("peer gone while sending")),
                }
            }
            let left = body.passable().unwrap_or(0);
            if left > 0 && self.ready.readable && pipe.room() > 0 && *budget > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX);
                match pipe.fill_from(upstream.socket.as_raw_fd(), want) {
                    Ok(0) => {
                        // The backend closed short of its length: what the
                        // pipe holds is lost with the rest, and the client
                        // sees an answer short of its Content-Length.
                        self.ready.closed = true;
                        self.ready.eof = true;
                        self.ready.readable = false;
                        return Err(Fault::Truncated);
                    }
                    Ok(got) => {
                        body.pass_through(got as u64);
                        self.backend_activity = client.now;
                        moved = true;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.ready.readable = false;
                    }
                    Err(_) => {
                        self.ready.closed = true;
                        self.ready.reset = true;
                        return Err(Fault::Truncated);
                    }
                }
            }
            if body.is_done() && pipe.held() == 0 {
                self.state = State::Done;
                return Ok(Pumped::Moved);
            }
            if pipe.held() > 0 && !client.write_blocked && *budget > 0 {
                continue;
            }
            return Ok(if moved { Pumped::Moved } else { Pumped::Still });
        }
    }

    /// Bytes of the answer that wait for the client: in its output, or in
    /// the pipe.
    fn client_has_pending(&self, client: &Client) -> bool {
        client.has_unsent() || self.pipe.as_ref().is_some_and(|pipe| pipe.held() > 0)
    }

    /// Reads from the backend: into `from_backend` while a head is read or a
    /// body must be re-framed, straight into the client's output when the
    /// body goes out as it came (a `Content-Length` body).
    fn recv_from_backend(&mut self, client: &mut Client) -> Result<Received, Fault> {
        let Some(upstream) = &self.upstream else {
            return Err(Fault::Reset);
        };
        // A `Content-Length` body goes out as it came: no copy through
        // `from_backend` once the bytes behind the head are relayed.
        let passable = self
            .response_body
            .as_ref()
            .and_then(Reframer::passable)
            .filter(|_| self.state == State::Body && self.from_backend.is_empty());
        let direct = passable.is_some();
        let buffer = if direct {
            &mut client.output
        } else {
            &mut self.from_backend
        };
        let mut want = PROXY_BUFFER.saturating_sub(buffer.len());
        if let Some(passable) = passable {
            want = want.min(usize::try_from(passable).unwrap_or(usize::MAX));
        }
        if want == 0 {
            return Ok(Received::Nothing);
        }
        buffer.reserve(want);
        let spare = buffer.spare_capacity_mut();
        // SAFETY: `spare` has at least `want` writable bytes; recv(2)
        // writes at most `want` there and reports how many.
        let got = unsafe {
            libc::recv(
                upstream.socket.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                want,
                0,
            )
        };
        if got < 0 {
            return match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => {
                    self.ready.readable = false;
                    Ok(Received::Nothing)
                }
                io::ErrorKind::Interrupted => Ok(Received::Nothing),
                _ => {
                    self.ready.closed = true;
                    self.ready.reset = true;
                    Ok(Received::Closed { reset: true })
                }
            };
        }
        let got = got as usize;
        if got == 0 {
            self.ready.closed = true;
            self.ready.eof = true;
            self.ready.readable = false;
            return Ok(Received::Closed {
                reset: self.ready.reset,
            });
        }
        // SAFETY: the kernel initialised the first `got` spare bytes.
        unsafe { buffer.set_len(buffer.len() + got) };
        if got < want && !self.ready.closed {
            // Edge-triggered: a short read means the socket is empty now.
            self.ready.readable = false;
        }
        self.backend_activity = client.now;
        if let Some(body) = self.response_body.as_mut().filter(|_| direct) {
            body.pass_through(got as u64);
            if body.is_done() {
                self.state = State::Done;
            }
            Ok(Received::Direct)
        } else {
            Ok(Received::Buffered)
        }
    }

    /// Acts on what came from the backend: parse the head, re-frame body
    /// bytes, or see the end.
    fn relay(
        &mut self,
        client: &mut Client,
        shared: &Shared,
        read: Received,
    ) -> Result<Relayed, Fault> {
        match (self.state, read) {
            (_, Received::Direct) => Ok(Relayed::Progress),
            (State::AwaitingHead, Received::Closed { reset }) => {
                if self.from_backend.is_empty() {
                    return Err(Fault::NoAnswer { reset });
                }
                // A whole head (a 1xx and the final one, say) may be
                // buffered before the close: relay it, and meet the close
                // again in the state it leads to.
                match self.read_head(client, shared)? {
                    Relayed::Nothing => {
                        Err(Fault::BadAnswer("backend closed inside its answer's head"))
                    }
                    relayed => Ok(relayed),
                }
            }
            (State::AwaitingHead, _) if self.ready.eof => {
                if self.from_backend.is_empty() {
                    return Err(Fault::NoAnswer { reset: false });
                }
                match self.read_head(client, shared)? {
                    Relayed::Nothing => {
                        Err(Fault::BadAnswer("backend closed inside its answer's head"))
                    }
                    relayed => Ok(relayed),
                }
            }
            (State::AwaitingHead, _) if !self.from_backend.is_empty() => {
                self.read_head(client, shared)
            }
            (State::Body, read) => self.relay_body(client, read),
            _ => Ok(Relayed::Nothing),
        }
    }

    /// AwaitingHead: parse the backend's head from `from_backend`.
    fn read_head(&mut self, client: &mut Client, shared: &Shared) -> Result<Relayed, Fault> {
        let was_head = self.request.method == Method::Head;
        let mut headers = header_slots();
        let parsed = match parse_response_fields(&self.from_backend, was_head, &mut headers) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(Relayed::Nothing),
            Err(bad) => return Err(Fault::BadAnswer(bad.0)),
        };
        let head = parsed.head;
        let head_len = head.head_len;
        if head.status == 101 {
            return self.upgrade(client, shared, head).map(Relayed::Switch);
        }
        if client.output.capacity() == 0 {
            // An idle client gave its buffer back; growing a new one while
            // the head and body go in would cost a chain of reallocations
            // per answer.
            client.output = shared.pool.take();
        }
        if !(100..200).contains(&head.status) && !self.request_body.is_done() {
            // A final answer before the whole request body (a 413, a 401 to
            // an `Expect`, a backend that does not read uploads): what of the
            // body is still unread when the answer ends could not be told
            // from a next request, so the connection ends after this answer
            // (without waiting to see whether the body finishes first), and
            // the answer says so (RFC 9112 §9.6).
            self.keep_client = false;
        }
        let view = self.client_view(shared);
        if !(100..200).contains(&head.status) {
            let addr = shared.config.routes[self.request.route].addr;
            shared
                .upstreams
                .borrow_mut()
                .note_version(addr, head.minor_version);
        }
        if head.minor_version == 0
            && self.request.body == BodyFraming::Chunked
            && (200..300).contains(&head.status)
        {
            // An HTTP/1.0 server knows no chunked bodies (RFC 9112 §6.1):
            // this one was sent one before rill knew its version, and its
            // success speaks of a request it read without the body. Relayed,
            // it would tell the client an upload landed that was lost; from
            // now on such a request gets a 411 before it is sent.
            return Err(Fault::BadAnswer(
                "this backend speaks HTTP/1.0 and did not read the chunked body: send Content-Length",
            ));
        }
        if (100..200).contains(&head.status) {
            // Interim answers (100 Continue, 103 Early Hints) go to HTTP/1.1
            // clients only (RFC 9110 §15.2); then the real head follows.
            // They leave `answered` alone: a final answer is still owed, so
            // a backend that fails now still gets the client rill's own
            // 502 or 504 (and a retry, where one is allowed).
            if !self.request.client_http10 {
                write_parsed_head(&parsed, &view, &mut client.output);
            }
            self.from_backend.drain(..head_len);
            return Ok(Relayed::Progress);
        }
        let framing = write_parsed_head(&parsed, &view, &mut client.output);
        self.answered = true;
        self.reusable = head.reusable;
        self.event_stream = head.event_stream;
        if matches!(framing, ClientBody::UntilClose) {
            self.keep_client = false;
        }
        self.record_answer(client, shared, Status::from_code(head.status), 0);
        self.from_backend.drain(..head_len);
        trace!(
            "conn {}: backend answered {} ({:?} -> {:?})",
            client.id,
            head.status,
            head.body,
            framing
        );
        let incoming = match head.body {
            ResponseBody::None | ResponseBody::Length(0) => None,
            ResponseBody::Length(n) => Some(Incoming::Length(n)),
            ResponseBody::Chunked => Some(Incoming::Chunked),
            ResponseBody::UntilClose => Some(Incoming::UntilClose),
        };
        self.state = match incoming {
            None => State::Done,
            Some(incoming) => {
                let chunked_out = framing == ClientBody::Chunked;
                self.response_body = Some(Reframer::new(incoming, chunked_out, true));
                State::Body
            }
        };
        if self.state == State::Done {
            self.discard_extra_bytes(client);
        }
        Ok(Relayed::Progress)
    }

    /// A `101`: it must name a protocol the client offered (RFC 9110 §7.8);
    /// then the connection becomes a tunnel.
    fn upgrade(
        &mut self,
        client: &mut Client,
        shared: &Shared,
        head: ResponseHead,
    ) -> Result<Turn, Fault> {
        let chosen = upgrade_protocol(&self.from_backend, &head);
        let accepted = match (&self.request.upgrade, chosen) {
            (Some(offers), Some(chosen)) => offered(offers, chosen),
            _ => false,
        };
        if !accepted {
            return Err(Fault::BadAnswer(
                "101 for a protocol the client did not offer",
            ));
        }
        let view = self.client_view(shared);
        write_client_head(&self.from_backend, &head, &view, &mut client.output);
        self.answered = true;
        self.record_answer(client, shared, Status::from_code(101), 0);
        self.from_backend.drain(..head.head_len);
        // Bytes the backend sent behind its 101 belong to the new protocol.
        let behind = self.from_backend.len();
        client.output.extend_from_slice(&self.from_backend);
        self.from_backend.clear();
        let Some(upstream) = self.upstream.take() else {
            return Err(Fault::Reset);
        };
        add(&client.stats.tunnels, 1);
        let tunnel = Tunnel::new(
            upstream,
            self.ready.readable || self.ready.closed,
            self.ready.writable,
            self.ready.closed,
            std::mem::take(&mut self.to_backend),
            self.to_backend_sent,
            client.now,
        )
        .with_bytes_behind_the_101(behind);
        self.give_back_buffers(shared);
        Ok(Turn::Tunnel(Box::new(tunnel)))
    }

    /// Body: re-frame what `from_backend` holds into the client's output;
    /// a close ends a close-delimited body and cuts any other short.
    fn relay_body(&mut self, client: &mut Client, read: Received) -> Result<Relayed, Fault> {
        let Some(body) = self.response_body.as_mut() else {
            return Err(Fault::BadAnswer("body state missing"));
        };
        let room = PROXY_BUFFER.saturating_sub(client.unsent());
        let used = body
            .feed(&self.from_backend, &mut client.output, room)
            .map_err(|error| match error {
                ReframeError::Chunked(why) => Fault::BadBody(why),
                ReframeError::Truncated => Fault::Truncated,
            })?;
        self.from_backend.drain(..used);
        if matches!(read, Received::Closed { reset: true }) && !body.is_done() {
            return Err(Fault::Truncated);
        }
        // The close ends the body only once every byte that came before it
        // has been relayed: a slow client leaves some waiting here, and
        // ending at the close dropped them behind a complete-looking answer.
        if self.ready.eof && !body.is_done() && self.from_backend.is_empty() {
            body.end(&mut client.output).map_err(|_| Fault::Truncated)?;
            // Only a close-delimited body ends this way, and it leaves
            // nothing to reuse.
            self.reusable = false;
        }
        if body.is_done() {
            self.state = State::Done;
            self.discard_extra_bytes(client);
        }
        Ok(if used > 0 || self.state == State::Done {
            Relayed::Progress
        } else {
            Relayed::Nothing
        })
    }

    /// Bytes after a complete answer were never asked for: dropped, and the
    /// connection that carried them is not trusted again.
    fn discard_extra_bytes(&mut self, client: &Client) {
        if !self.from_backend.is_empty() {
            debug!(
                "conn {}: {} bytes after the backend's answer dropped",
                client.id,
                self.from_backend.len()
            );
            self.from_backend.clear();
            self.reusable = false;
        }
    }

    /// Body bytes relayed to the client so far, for the log.
    fn relayed(&self) -> u64 {
        self.response_body.as_ref().map_or(0, Reframer::relayed)
    }

    fn client_view<'a>(&'a self, shared: &'a Shared) -> ClientView<'a> {
        let route = &shared.config.routes[self.request.route];
        ClientView {
            client_http10: self.request.client_http10,
            keep_alive: self.keep_client,
            rewrite: Some(LocationRewrite {
                backend_origins: &route.origins,
                backend_path: route.path.as_deref().unwrap_or(""),
                client_origin: self.request.client_origin.as_deref(),
                client_prefix: if route.path.is_some() {
                    &route.prefix
                } else {
                    ""
                },
                prefix_announced: !route.announced_prefix().is_empty(),
            }),
            date: Some(shared.date),
        }
    }

    /// What the client socket must wake us for.
    fn client_interest(&self, client: &Client) -> Interest {
        if client.write_blocked {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// The answer is complete (or ended): back to HTTP, which sends what is
    /// still queued and reads the next request, or closes.
    fn finish(&mut self, client: &mut Client, shared: &Shared) -> Turn {
        client.log_body_bytes(self.relayed());
        if !client.has_unsent() {
            // All of it is out; otherwise HTTP logs it once it has sent it.
            client.log_pending(None);
        }
        // A body whose tail is still queued would have the backend read the
        // next client's request as the rest of it.
        self.reusable &= self.request_flushed();
        self.give_back_buffers(shared);
        if !self.request_body.is_done() {
            // The client's request was not read to its end: what follows in
            // its stream cannot be told apart from the rest of the body.
            // A client that only half-closed keeps its connection: requests
            // it pipelined before its FIN are answered, then HTTP reads the
            // end of its stream and closes, as it does for files.
            self.keep_client = false;
        }
        Turn::Http {
            close_after_send: !self.keep_client,
        }
    }

    /// Answers the client with an error of rill's own, when nothing of the
    /// backend's answer has gone out yet; otherwise ends the client's
    /// connection, which then sees the answer cut short.
    fn fail(
        &mut self,
        client: &mut Client,
        shared: &Shared,
        status: Status,
        detail: &'static str,
    ) -> Turn {
        self.fail_with(client, shared, status, detail, Extra::None)
    }

    /// [`Proxy::fail`], with one more header on rill's own answer.
    fn fail_with(
        &mut self,
        client: &mut Client,
        shared: &Shared,
        status: Status,
        detail: &'static str,
        extra: Extra,
    ) -> Turn {
        self.reusable = false;
        if self.answered {
            return self.end_truncated(client, shared, detail);
        }
        let keep = self.keep_client && self.request_body.is_done();
        let common = CommonHeaders {
            keep_alive: keep,
            http10: self.request.client_http10,
            cors: shared.config.cors,
        };
        let head_only = self.request.method == Method::Head;
        let len = write_generated(
            &mut client.output,
            status,
            detail,
            extra,
            shared.date,
            common,
            head_only,
        );
        self.record_answer(client, shared, status, len);
        self.state = State::Done;
        self.answered = true;
        self.give_back_buffers(shared);
        Turn::Http {
            close_after_send: !keep,
        }
    }

    /// The backend's answer ended before its end: the client gets what came
    /// and then a close, never a final chunk or a full length.
    fn end_truncated(&mut self, client: &mut Client, shared: &Shared, why: &'static str) -> Turn {
        // Logged already with the backend's status; this only makes sure.
        self.record_answer(client, shared, Status::BAD_GATEWAY, 0);
        client.log_body_bytes(self.relayed());
        client.log_aborted(why);
        if self
            .response_body
            .as_ref()
            .is_some_and(Reframer::ends_at_close)
        {
            client.cut_short();
        }
        self.give_back_buffers(shared);
        self.reusable = false;
        self.state = State::Done;
        Turn::Http {
            close_after_send: true,
        }
    }

    /// Counts the answer and keeps its access-log line (once per request:
    /// interim 1xx answers have none of their own).
    fn record_answer(&mut self, client: &mut Client, shared: &Shared, status: Status, body: u64) {
        if !self.logged {
            client.stats.response(status.code());
            self.keep_log_line(client, shared, status, body);
        }
    }

    /// Keeps the request's access-log line (once), naming the backend and
    /// the time it has had.
    fn keep_log_line(&mut self, client: &mut Client, shared: &Shared, status: Status, body: u64) {
        if self.logged {
            return;
        }
        self.logged = true;
        client.log_later(
            self.request.method,
            std::mem::take(&mut self.request.target),
            status,
            body,
            self.request.started,
        );
        client.log_upstream(
            &shared.config.routes[self.request.route].authority,
            client.now.saturating_duration_since(self.request.started),
        );
    }

    /// Counts a failure by kind.
    fn count(&self, client: &Client, failure: Failure) {
        let counter = match failure {
            Failure::Refused => &client.stats.upstream_refused,
            Failure::Timeout => &client.stats.upstream_timeouts,
            Failure::BadAnswer => &client.stats.upstream_bad_answers,
            Failure::Reset => &client.stats.upstream_resets,
        };
        add(counter, 1);
    }

    /// Gives the direction buffers back to the loop's pool.
    fn give_back_buffers(&mut self, shared: &Shared) {
        shared.pool.give(std::mem::take(&mut self.from_backend));
        shared.pool.give(std::mem::take(&mut self.to_backend));
        self.to_backend_sent = 0;
    }

    /// Retries on a fresh connection, once, when a pooled one turned out
    /// dead before any of its answer arrived.
    fn retry(&mut self, client: &Client, shared: &Shared) -> bool {
        let reused = self.upstream.as_ref().is_some_and(|up| up.reused);
        if !reused || self.retried || self.answered || !self.request.retryable() {
            return false;
        }
        self.retried = true;
        add(&client.stats.upstream_retries, 1);
        debug!(
            "conn {}: pooled backend connection was dead; retrying",
            client.id
        );
        if let Some(dead) = self.upstream.take() {
            shared.upstreams.borrow_mut().release(dead);
        }
        // The head is still in `to_backend`: retries are for requests
        // without a body, whose head is kept until the exchange ends.
        self.to_backend_sent = 0;
        self.from_backend.clear();
        self.open(client, shared, true);
        true
    }
}

/// What one look at the answer's side did.
enum Pumped {
    Moved,
    Still,
    Switch(Turn),
}

/// What one read of the backend brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    Nothing,
    /// Bytes in `from_backend`.
    Buffered,
    /// Body bytes read straight into the client's output.
    Direct,
    /// The backend closed (or reset) its side.
    Closed {
        reset: bool,
    },
}

/// What relaying did.
enum Relayed {
    Progress,
    Nothing,
    Switch(Turn),
}

/// Why an exchange cannot go on as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The connect failed.
    Refused,
    /// The backend reset or closed before its answer began.
    NoAnswer { reset: bool },
    /// Sending to the backend failed.
    Reset,
    /// The answer's head is not one rill relays.
    BadAnswer(&'static str),
    /// The answer's chunked body is broken.
    BadBody(&'static str),
    /// The backend closed before its answer's end.
    Truncated,
    /// The client's chunked body is broken.
    BadRequestBody(&'static str),
    /// The client left.
    ClientGone(&'static str),
}

impl Fault {
    /// What the connection does about it.
    fn turn(self, proxy: &mut Proxy, client: &mut Client, shared: &Shared) -> Turn {
        let backend = &shared.config.routes[proxy.request.route].authority;
        match self {
            Fault::Refused => {
                proxy.count(client, Failure::Refused);
                warn!(
                    "conn {}: backend {backend} refused the connection",
                    client.id
                );
                proxy.fail(
                    client,
                    shared,
                    Status::BAD_GATEWAY,
                    "backend refused the connection",
                )
            }
            Fault::NoAnswer { .. } | Fault::Reset if proxy.retry(client, shared) => {
                proxy.drive(client, shared)
            }
            Fault::NoAnswer { .. } | Fault::Reset => {
                proxy.count(client, Failure::Reset);
                warn!(
                    "conn {}: backend {backend} closed without an answer",
                    client.id
                );
                proxy.fail(
                    client,
                    shared,
                    Status::BAD_GATEWAY,
                    "backend closed without an answer",
                )
            }
            Fault::BadAnswer(why) => {
                proxy.count(client, Failure::BadAnswer);
                warn!("conn {}: bad answer from {backend}: {why}", client.id);
                proxy.fail(client, shared, Status::BAD_GATEWAY, why)
            }
            Fault::BadBody(why) => {
                proxy.count(client, Failure::BadAnswer);
                warn!("conn {}: bad body from {backend}: {why}", client.id);
                proxy.end_truncated(client, shared, why)
            }
            Fault::Truncated => {
                proxy.count(client, Failure::Reset);
                warn!(
                    "conn {}: {backend} closed in the middle of its answer",
                    client.id
                );
                proxy.end_truncated(client, shared, "backend closed mid-answer")
            }
            Fault::BadRequestBody(why) => {
                debug!("conn {}: bad chunked body: {why}", client.id);
                proxy.keep_client = false;
                proxy.reusable = false;
                proxy.fail(client, shared, Status::BAD_REQUEST, why)
            }
            Fault::ClientGone(why) => {
                proxy.reusable = false;
                // If no answer reached it, the request was still made and
                // the backend worked on it: the log says so, with nginx's
                // 499 ("client closed request"), not counted as a response.
                proxy.keep_log_line(client, shared, Status::from_code(499), 0);
                Turn::Close(why)
            }
        }
    }
}
