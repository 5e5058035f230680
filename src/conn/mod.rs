//! One client connection: its socket and buffers ([`client::Client`]), and
//! the protocol it speaks now, each protocol its own state machine in its own
//! file:
//!
//! - [`http`] — HTTP/1.1 as a server: read a head, answer it from ROOT (or
//!   receive an upload, or stream the loop's events), and again;
//! - [`proxy`] — one request handed to a backend and its answer relayed,
//!   with a second socket and backpressure both ways;
//! - [`tunnel`] — after a backend accepted an upgrade (`101`), bytes moved
//!   both ways until either side is done;
//! - [`websocket`] — after rill accepted a WebSocket handshake itself
//!   (`/.rill/live`, `/.rill/echo`), messages framed both ways;
//! - [`handshake`] — on an HTTPS port, the TLS handshake before HTTP.
//!
//! Over HTTPS, a TLS layer ([`tls`]) sits between the socket and whichever
//! protocol runs: [`client::Client`] encrypts and decrypts on its way, so the
//! protocols are the same on both kinds of port.
//!
//! ```text
//!   ┌───────────┐ secured
//!   │ Handshake │ ────────▶ Http            (HTTPS only)
//!   └───────────┘
//!            request for a route                 101 Switching Protocols
//!   ┌──────┐ ─────────────────────▶ ┌───────┐ ──────────────────────────▶ ┌────────┐
//!   │ Http │                        │ Proxy │                             │ Tunnel │
//!   └──────┘ ◀───────────────────── └───────┘                             └────────┘
//!      │       answer relayed, keep-alive
//!      │  handshake for /.rill/live or /.rill/echo: 101   ┌───────────┐
//!      └─────────────────────────────────────────────────▶│ WebSocket │
//!                                                         └───────────┘
//! ```
//!
//! The connection swaps one protocol for the next ([`Turn`]); the client's
//! socket, its buffers, its counters and the loop's registration stay. The
//! loop only sees a [`Connection`] and the [`Next`] thing it waits for.

pub mod client;
pub mod handshake;
pub mod http;
pub mod proxy;
pub mod splice;
pub mod tls;
pub mod tunnel;
pub mod websocket;

use crate::config::Config;
use crate::live::Live;
use crate::site::Site;
use crate::stats::Stats;
use crate::timer::Timeouts;
use crate::upstream::{UpstreamConn, Upstreams};
use client::Client;
use handshake::Handshake;
use http::Http;
use log::{debug, trace};
use mio::net::TcpStream;
use mio::Interest;
use proxy::Proxy;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tunnel::Tunnel;
use websocket::WebSocket;

/// What the loop should do with the connection after [`Connection::drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sleep until the client socket has this readiness (or an upstream
    /// socket of this connection has any).
    Wait(Interest),
    /// Not blocked, but gave up its turn: drive it again soon.
    Yield,
    /// Drop it (closing its sockets).
    Close,
}

/// How a protocol's turn ended: it waits, or the connection is over, or it
/// hands the connection to another protocol.
pub enum Turn {
    /// Blocked on the client socket (with this interest) or on a backend.
    Wait(Interest),
    /// Used up its budget for this turn, with work left.
    Yield,
    /// The connection is over; the reason is for the log.
    Close(&'static str),
    /// HTTP → proxy: this request goes to a backend, on its way already.
    Proxy(Box<Proxy>),
    /// Proxy → HTTP: the exchange is over. HTTP sends what is still queued,
    /// then reads the next request, or closes when `close_after_send`.
    Http { close_after_send: bool },
    /// Proxy → tunnel: the backend switched protocols.
    Tunnel(Box<Tunnel>),
    /// HTTP → WebSocket: rill accepted a handshake itself.
    WebSocket(Box<WebSocket>),
    /// Handshake → HTTP: the TLS session is up (or, for plain HTTP on the
    /// TLS port, dropped). `refusal` is an answer to send and close on,
    /// instead of reading a request.
    Secured { refusal: Option<Vec<u8>> },
}

/// The protocol a connection speaks now.
enum Protocol {
    Handshake(Box<Handshake>),
    Http(Http),
    Proxy(Box<Proxy>),
    Tunnel(Box<Tunnel>),
    WebSocket(Box<WebSocket>),
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
    /// The wall clock at the second `date` names.
    pub clock: SystemTime,
    /// The one buffer request paths are decoded into (see
    /// [`crate::respond::Context`]).
    pub path_buffer: &'a Cell<Vec<u8>>,
    /// Backend connections: connecting new ones, and the idle pool.
    pub upstreams: &'a RefCell<Upstreams>,
    /// The live-reload state (used under `--live-reload`).
    pub live: &'a Live,
    /// Who may do what (`--auth`).
    pub gate: &'a crate::auth::Gate,
    /// The thread that checks bcrypt passwords, when a user has one.
    pub hasher: Option<&'a crate::hasher::Hasher>,
}

/// Buffers that idle connections gave back, so a busy connection takes one
/// instead of asking the allocator, while an idle one holds none. Bounded in
/// count and in the size of what it keeps: at most 256 × 32 KiB (8 MiB).
/// A proxied request holds four at once (the client's input and output,
/// both directions to the backend); 64 such clients need about 256 in
/// circulation, and with fewer kept the pool ran dry and refilled at every
/// burst (an allocation and a free of 32 KiB per two proxied requests).
///
/// What a burst left behind goes back to the system once it has gone
/// unused: [`BufferPool::trim`], called about once a second, frees the
/// buffers that stayed in the pool through the whole interval since the
/// last trim (the fewest it held meanwhile, its low-water mark). Under a
/// steady load the pool keeps what the load takes; after a burst it empties
/// within two trims.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    /// The fewest buffers the pool held since the last trim: that many
    /// were never needed in the interval.
    low_water: Cell<usize>,
}

impl BufferPool {
    const MAX_BUFFERS: usize = 256;
    /// Buffers bigger than this (a big answer, an upload) are freed instead.
    pub const MAX_CAPACITY: usize = 32 * 1024;
    /// A new buffer holds a head, or a small answer with its body.
    const NEW_CAPACITY: usize = 4 * 1024;

    /// An empty buffer.
    pub fn take(&self) -> Vec<u8> {
        let mut free = self.free.borrow_mut();
        let buffer = free.pop();
        if free.len() < self.low_water.get() {
            self.low_water.set(free.len());
        }
        buffer.unwrap_or_else(|| Vec::with_capacity(Self::NEW_CAPACITY))
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

    /// Frees the buffers no one took since the last trim, and returns how
    /// many bytes of capacity that gave back.
    pub fn trim(&self) -> usize {
        let mut free = self.free.borrow_mut();
        let unused = self.low_water.get().min(free.len());
        let freed = free[..unused].iter().map(Vec::capacity).sum();
        // The oldest gifts sit at the bottom; `take` pops from the top.
        free.drain(..unused);
        self.low_water.set(free.len());
        freed
    }

    /// No buffer waits in the pool.
    pub fn is_empty(&self) -> bool {
        self.free.borrow().is_empty()
    }

    /// How many buffers wait in the pool, and their capacity in bytes.
    pub fn held(&self) -> (usize, usize) {
        let free = self.free.borrow();
        (free.len(), free.iter().map(Vec::capacity).sum())
    }
}

/// A client connection: its socket and buffers, and the protocol it speaks.
pub struct Connection {
    client: Client,
    protocol: Protocol,
}

impl Connection {
    /// A fresh connection, waiting for its first request head, or on an
    /// HTTPS port (`tls`) for its ClientHello.
    pub fn new(
        id: usize,
        socket: TcpStream,
        peer: SocketAddr,
        now: Instant,
        stats: Rc<Stats>,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> Result<Connection, rustls::Error> {
        let mut client = Client::new(id, socket, peer, now, Rc::clone(&stats));
        let protocol = match tls {
            Some(config) => {
                client.tls = Some(Box::new(tls::TlsLayer::new(Arc::clone(config))?));
                stats.moved(None, crate::stats::Phase::Handshaking);
                client.phase = crate::stats::Phase::Handshaking;
                Protocol::Handshake(Box::new(Handshake::new(now)))
            }
            None => {
                stats.moved(None, crate::stats::Phase::ReadingHead);
                Protocol::Http(Http::new(now))
            }
        };
        Ok(Connection { client, protocol })
    }

    /// The client socket, for (de)registering with the poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.client.socket
    }

    /// The verdict this connection waited for (see [`crate::hasher`]) is in:
    /// whether it was waiting for it, and is ready to be driven again.
    pub fn verdict_in(&mut self, ticket: crate::hasher::Ticket) -> bool {
        match &mut self.protocol {
            Protocol::Http(http) => http.verdict_in(ticket),
            _ => false,
        }
    }

    /// Whether this connection holds a `/.rill/events` stream open.
    pub fn is_streaming_events(&self) -> bool {
        matches!(&self.protocol, Protocol::Http(http) if http.is_streaming_events())
    }

    /// Whether this connection is a page's live-reload WebSocket.
    pub fn wants_changes(&self) -> bool {
        matches!(&self.protocol, Protocol::WebSocket(ws) if ws.wants_changes())
    }

    /// Queues a change message (a whole frame) on a live-reload WebSocket.
    pub fn push_change(&mut self, frame: &[u8]) {
        if let Protocol::WebSocket(ws) = &mut self.protocol {
            ws.push(&mut self.client, frame);
        }
    }

    /// Runs the connection until it must wait for a socket or is done,
    /// swapping protocols as they hand it on.
    pub fn drive(&mut self, shared: &Shared) -> Next {
        self.client.now = shared.now;
        let turn = self.run_protocol(shared);
        self.carry_out(turn, shared)
    }

    fn run_protocol(&mut self, shared: &Shared) -> Turn {
        match &mut self.protocol {
            Protocol::Handshake(handshake) => handshake.drive(&mut self.client, shared),
            Protocol::Http(http) => http.drive(&mut self.client, shared),
            Protocol::Proxy(proxy) => proxy.drive(&mut self.client, shared),
            Protocol::Tunnel(tunnel) => tunnel.drive(&mut self.client, shared),
            Protocol::WebSocket(ws) => ws.drive(&mut self.client),
        }
    }

    /// Acts on a protocol's turn: settles, closes, or swaps the protocol and
    /// runs the new one.
    fn carry_out(&mut self, mut turn: Turn, shared: &Shared) -> Next {
        loop {
            match turn {
                Turn::Wait(interest) => return self.settled(Next::Wait(interest)),
                Turn::Yield => return self.settled(Next::Yield),
                Turn::Close(why) => return self.closed(why, shared),
                Turn::Proxy(proxy) => {
                    trace!("conn {}: http -> proxy", self.client.id);
                    self.protocol = Protocol::Proxy(proxy);
                }
                Turn::Http { close_after_send } => {
                    trace!("conn {}: proxy -> http", self.client.id);
                    self.release_upstream(shared);
                    self.protocol = Protocol::Http(Http::resume(self.client.now, close_after_send));
                }
                Turn::Tunnel(tunnel) => {
                    trace!("conn {}: proxy -> tunnel", self.client.id);
                    self.protocol = Protocol::Tunnel(tunnel);
                }
                Turn::WebSocket(ws) => {
                    trace!("conn {}: http -> websocket", self.client.id);
                    crate::stats::add(&self.client.stats.websockets, 1);
                    self.protocol = Protocol::WebSocket(ws);
                }
                Turn::Secured { refusal } => {
                    trace!("conn {}: handshake -> http", self.client.id);
                    let mut http = Http::new(self.client.now);
                    if let Some(answer) = refusal {
                        self.client.output = answer;
                        http.refuse();
                    }
                    self.protocol = Protocol::Http(http);
                }
            }
            turn = self.run_protocol(shared);
        }
    }

    /// The loop saw a readable event for the client socket: there may be
    /// bytes to read again. `read_closed` says the peer's FIN has arrived:
    /// its edge may have come with the last data, so from then on every read
    /// is made, to see the end of the stream.
    pub fn readable(&mut self, read_closed: bool) {
        self.client.input_drained = false;
        self.client.peer_finished_writing |= read_closed;
    }

    /// The loop saw a writable event for the client socket: a write may
    /// go through again.
    pub fn writable(&mut self) {
        self.client.write_blocked = false;
    }

    /// The loop saw an event for this connection's backend socket;
    /// `closed` says the backend's FIN (or an error) has arrived.
    pub fn upstream_event(&mut self, readable: bool, writable: bool, closed: bool) {
        match &mut self.protocol {
            Protocol::Proxy(proxy) => proxy.upstream_event(readable, writable, closed),
            Protocol::Tunnel(tunnel) => tunnel.upstream_event(readable, writable, closed),
            Protocol::Handshake(_) | Protocol::Http(_) | Protocol::WebSocket(_) => {}
        }
    }

    /// Tells the counters which phase the connection rests in.
    fn settled(&mut self, next: Next) -> Next {
        let phase = match &self.protocol {
            Protocol::Handshake(_) => crate::stats::Phase::Handshaking,
            Protocol::Http(http) => http.phase(&self.client),
            Protocol::Proxy(proxy) => proxy.phase(),
            Protocol::Tunnel(_) => crate::stats::Phase::Tunnel,
            Protocol::WebSocket(ws) => ws.phase(),
        };
        if phase != self.client.phase {
            self.client.stats.moved(Some(self.client.phase), phase);
            self.client.phase = phase;
        }
        next
    }

    /// Logs the end of the connection; the loop then drops it (and with it
    /// any upload's temp files).
    fn closed(&mut self, why: &str, shared: &Shared) -> Next {
        self.release_upstream(shared);
        self.finish(why)
    }

    fn finish(&mut self, why: &str) -> Next {
        match &mut self.protocol {
            Protocol::Http(http) => http.abandon(&mut self.client),
            Protocol::Proxy(proxy) => proxy.log_cut(&mut self.client),
            Protocol::Tunnel(tunnel) => tunnel.log_totals(&mut self.client),
            _ => {}
        }
        let client = &mut self.client;
        client.say_goodbye();
        client.stats.closed(client.phase);
        client.log_pending(Some(why));
        debug!(
            "conn {} closed ({why}) after {:?}: {} requests, {} bytes in, {} bytes out",
            client.id,
            client.now.saturating_duration_since(client.opened),
            client.requests,
            client.bytes_in,
            client.bytes_out
        );
        Next::Close
    }

    /// Gives a backend connection back: to the pool when the exchange left
    /// it clean, closed otherwise.
    fn release_upstream(&mut self, shared: &Shared) {
        if let Some((upstream, reusable)) = self.take_upstream() {
            let mut upstreams = shared.upstreams.borrow_mut();
            if reusable {
                upstreams.checkin(upstream, shared.now);
            } else {
                upstreams.release(upstream);
            }
        }
    }

    /// Takes the backend connection out of the protocol, with whether it can
    /// carry another request. The loop calls this before it drops a
    /// connection, so no backend socket outlives its record.
    pub fn take_upstream(&mut self) -> Option<(UpstreamConn, bool)> {
        match &mut self.protocol {
            Protocol::Proxy(proxy) => proxy.take_upstream(),
            Protocol::Tunnel(tunnel) => tunnel.take_upstream().map(|up| (up, false)),
            Protocol::Handshake(_) | Protocol::Http(_) | Protocol::WebSocket(_) => None,
        }
    }

    /// When this connection's current timeout expires, given its state.
    pub fn deadline(&self, timeouts: &Timeouts) -> Instant {
        match &self.protocol {
            Protocol::Handshake(handshake) => handshake.deadline(timeouts),
            Protocol::Http(http) => http.deadline(&self.client, timeouts),
            Protocol::Proxy(proxy) => proxy.deadline(&self.client, timeouts),
            Protocol::Tunnel(tunnel) => tunnel.deadline(timeouts),
            Protocol::WebSocket(ws) => ws.deadline(),
        }
    }

    /// The deadline passed: the protocol decides what that means (a `408`,
    /// a `504`, or a close).
    pub fn on_timeout(&mut self, shared: &Shared) -> Next {
        self.client.now = shared.now;
        let turn = match &mut self.protocol {
            Protocol::Handshake(handshake) => handshake.on_timeout(&mut self.client),
            Protocol::Http(http) => http.on_timeout(&mut self.client, shared),
            Protocol::Proxy(proxy) => proxy.on_timeout(&mut self.client, shared),
            Protocol::Tunnel(_) => Turn::Close("tunnel idle"),
            Protocol::WebSocket(ws) => ws.on_timeout(&mut self.client),
        };
        self.carry_out(turn, shared)
    }

    /// The server is shutting down: returns `true` if the connection should
    /// close now; one sending an answer finishes it and then closes.
    pub fn begin_shutdown(&mut self) -> bool {
        match &mut self.protocol {
            Protocol::Handshake(_) => true,
            Protocol::Http(http) => http.begin_shutdown(),
            Protocol::Proxy(proxy) => proxy.begin_shutdown(),
            Protocol::Tunnel(_) => true,
            Protocol::WebSocket(ws) => {
                ws.begin_shutdown(&mut self.client);
                false
            }
        }
    }

    /// Whether the connection is a byte tunnel (after a backend's `101`).
    pub fn is_tunnel(&self) -> bool {
        matches!(self.protocol, Protocol::Tunnel(_))
    }

    /// Makes this fresh connection answer `answer` (a `503`) and close,
    /// without reading a request.
    pub fn refuse(&mut self, answer: Vec<u8>) {
        match &mut self.protocol {
            // Over TLS the answer can only go once the session is up.
            Protocol::Handshake(handshake) => handshake.refuse_after(answer),
            Protocol::Http(http) => {
                self.client.output = answer;
                http.refuse();
            }
            _ => {}
        }
    }

    /// Closes at once (shutdown, or the loop giving up on it). The loop
    /// takes the backend connection first ([`Connection::take_upstream`]).
    pub fn abandon(&mut self, why: &str) -> Next {
        self.finish(why)
    }

    /// A shutdown's grace period ended with this connection still open. A
    /// proxied request whose backend has not answered gets a `503` (as far
    /// as the socket takes it without waiting), not a close without a
    /// word; then the connection closes as [`Connection::abandon`] does.
    pub fn cut_at_shutdown(&mut self, shared: &Shared) -> Next {
        match &mut self.protocol {
            Protocol::Proxy(proxy) => proxy.refuse_unanswered(&mut self.client, shared),
            Protocol::Http(http) => http.cut_at_shutdown(&mut self.client, shared),
            _ => {}
        }
        self.abandon("shutdown")
    }

    /// Appends one event to a `/.rill/events` stream (see
    /// [`Http::push_event`]).
    pub fn push_event(&mut self, event: &[u8]) {
        if let Protocol::Http(http) = &mut self.protocol {
            http.push_event(&mut self.client, event);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A connection on a real loopback socket, its server side set up by
    /// `tune` before the connection takes it; the client's end, the
    /// connection, and its counters.
    pub fn loopback_connection(
        tune: impl FnOnce(&std::net::TcpStream),
    ) -> (std::net::TcpStream, Connection, Rc<Stats>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, peer) = listener.accept().unwrap();
        server_side.set_nonblocking(true).unwrap();
        tune(&server_side);
        let stats = Rc::new(Stats::new(Instant::now()));
        let socket = TcpStream::from_std(server_side);
        let conn =
            Connection::new(0, socket, peer, Instant::now(), Rc::clone(&stats), None).unwrap();
        (client, conn, stats)
    }

    /// What a connection driven outside the loop needs: a site, a pool and
    /// a registry to connect backends with.
    pub struct Harness {
        pub site: Site,
        pub config: Config,
        pub pool: BufferPool,
        pub path_buffer: Cell<Vec<u8>>,
        pub upstreams: RefCell<Upstreams>,
        pub live: Live,
        pub gate: crate::auth::Gate,
        _poll: mio::Poll,
    }

    impl Harness {
        pub fn new(config: Config) -> Harness {
            let gate = crate::auth::Gate::new(config.users.clone(), config.public_read);
            let poll = mio::Poll::new().unwrap();
            let registry = poll.registry().try_clone().unwrap();
            Harness {
                site: Site::new(&config.root).unwrap(),
                config,
                pool: BufferPool::default(),
                path_buffer: Cell::default(),
                upstreams: RefCell::new(Upstreams::new(
                    registry,
                    Rc::new(Stats::new(Instant::now())),
                )),
                live: Live::new(),
                gate,
                _poll: poll,
            }
        }

        pub fn shared(&self, now: Instant) -> Shared<'_> {
            Shared {
                site: &self.site,
                pool: &self.pool,
                config: &self.config,
                now,
                date: "Sun, 06 Nov 1994 08:49:37 GMT",
                clock: std::time::UNIX_EPOCH + std::time::Duration::from_secs(784111777),
                path_buffer: &self.path_buffer,
                upstreams: &self.upstreams,
                live: &self.live,
                gate: &self.gate,
                hasher: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{loopback_connection, Harness};
    use super::*;
    use std::io::{Read, Write};

    /// A burst fills the pool; a trim frees only what stayed unused through
    /// the whole interval since the one before, so a steady load keeps the
    /// buffers it keeps taking and an idle pool empties by the second trim.
    #[test]
    fn the_pool_lets_go_of_what_a_burst_left_behind() {
        let pool = BufferPool::default();
        let burst: Vec<Vec<u8>> = (0..64).map(|_| pool.take()).collect();
        for buffer in burst {
            pool.give(buffer);
        }
        assert_eq!(pool.held(), (64, 64 * BufferPool::NEW_CAPACITY));
        // Drained to nothing during the interval: nothing was spare.
        assert_eq!(pool.trim(), 0);
        assert_eq!(pool.held().0, 64);

        // A steady load of eight at a time: 56 were never needed.
        for _ in 0..10 {
            let busy: Vec<Vec<u8>> = (0..8).map(|_| pool.take()).collect();
            for buffer in busy {
                pool.give(buffer);
            }
        }
        assert_eq!(pool.trim(), 56 * BufferPool::NEW_CAPACITY);
        assert_eq!(pool.held().0, 8);

        // Then idle: the next trim takes the rest.
        assert_eq!(pool.trim(), 8 * BufferPool::NEW_CAPACITY);
        assert_eq!(pool.held(), (0, 0));
        assert_eq!(pool.trim(), 0);
    }

    /// A connection on a real loopback socket, whose kernel send buffer is
    /// small so that a client that never reads fills it quickly; the
    /// client's end, the connection, and its counters.
    fn connection_with_a_small_send_buffer() -> (std::net::TcpStream, Connection, Rc<Stats>) {
        loopback_connection(|server_side| {
            socket2::SockRef::from(server_side)
                .set_send_buffer_size(4096)
                .unwrap();
        })
    }

    /// A page's live-reload socket whose page never reads: rill stops
    /// buffering for it and drops it, instead of growing its output.
    #[test]
    fn a_live_page_that_never_reads_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.live_reload = true;
        let harness = Harness::new(config);
        let (mut client, mut conn, _stats) = connection_with_a_small_send_buffer();
        client
            .write_all(
                b"GET /.rill/live HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\n\r\n",
            )
            .unwrap();
        let shared = harness.shared(Instant::now());
        for _ in 0..100 {
            if conn.wants_changes() {
                break;
            }
            conn.drive(&shared);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(conn.wants_changes(), "upgraded");
        let mut frame = Vec::new();
        crate::http::websocket::write_frame(
            &mut frame,
            crate::http::websocket::Opcode::Text,
            &[b'x'; 1000],
        );
        let mut pushed = 0;
        let next = loop {
            conn.push_change(&frame);
            pushed += 1;
            let next = conn.drive(&shared);
            assert!(conn.client.output.len() <= websocket::LIVE_BACKLOG + frame.len());
            if next == Next::Close || pushed > 100_000 {
                break next;
            }
        };
        assert_eq!(next, Next::Close, "dropped after {pushed} messages");
        assert!(pushed > 10, "the first messages were sent");
    }

    /// A connection on a real loopback socket whose client never reads.
    #[test]
    fn an_event_stream_client_that_never_reads_does_not_grow_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.stats = true;
        let harness = Harness::new(config);
        let (mut client, mut conn, stats) = connection_with_a_small_send_buffer();
        client
            .write_all(b"GET /.rill/events HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let shared = harness.shared(Instant::now());
        let mut waited = 0;
        while !conn.is_streaming_events() && waited < 100 {
            conn.drive(&shared);
            std::thread::sleep(std::time::Duration::from_millis(5));
            waited += 1;
        }
        assert!(conn.is_streaming_events());
        let event = [b'x'; 1024];
        for _ in 0..20_000 {
            conn.push_event(&event);
            assert_ne!(conn.drive(&shared), Next::Close);
            assert!(
                conn.client.output.len() <= 2 * event.len(),
                "{}",
                conn.client.output.len()
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
    use super::test_support::{loopback_connection, Harness};
    use super::*;
    use std::io::{Read, Write};

    /// A keep-alive GET of a cached 1 KiB file, as wrk sends it, driven
    /// through a real socket: how many heap allocations does it cost once
    /// the connection and the cache are warm?
    #[test]
    fn allocations_per_keep_alive_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1k.bin"), vec![7u8; 1024]).unwrap();
        let harness = Harness::new(Config::new(dir.path().to_path_buf()));
        let (mut client, mut conn, _) = loopback_connection(|_| {});
        let shared = harness.shared(Instant::now());
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

    /// A keep-alive GET through a route to a backend that answers 1 KiB,
    /// as S8 sends it: what does it cost the allocator once the client,
    /// the backend connection (pooled) and the buffer pool are warm?
    #[test]
    fn allocations_per_proxied_keep_alive_request() {
        let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = backend.local_addr().unwrap();
        std::thread::spawn(move || {
            let Ok((mut socket, _)) = backend.accept() else {
                return;
            };
            let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n".to_vec();
            answer.extend_from_slice(&[7u8; 1024]);
            let mut received = Vec::new();
            let mut buffer = [0u8; 8192];
            while let Ok(n @ 1..) = socket.read(&mut buffer) {
                received.extend_from_slice(&buffer[..n]);
                while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                    received.drain(..end + 4);
                    if socket.write_all(&answer).is_err() {
                        return;
                    }
                }
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.routes = vec![crate::route::Route::parse(&format!("/api={backend_addr}")).unwrap()];
        let harness = Harness::new(config);
        let (mut client, mut conn, _) = loopback_connection(|_| {});
        client.set_nonblocking(true).unwrap();
        let shared = harness.shared(Instant::now());
        let request = b"GET /api/1k.bin HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n\r\n";
        let mut one_request = |conn: &mut Connection| {
            client.write_all(request).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
            conn.readable(false);
            let mut counted = alloc_count::count(|| {
                conn.drive(&shared);
            });
            // Then the backend's events, as the loop would pass them on,
            // until the whole answer has reached the client.
            let mut response = Vec::new();
            let mut buffer = [0u8; 4096];
            for _ in 0..50 {
                while let Ok(n @ 1..) = client.read(&mut buffer) {
                    response.extend_from_slice(&buffer[..n]);
                }
                if response.len() >= 1024 && response.starts_with(b"HTTP/1.1 200 OK\r\n") {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                conn.upstream_event(true, true, false);
                counted += alloc_count::count(|| {
                    conn.drive(&shared);
                });
            }
            assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"), "{response:?}");
            counted
        };
        for _ in 0..3 {
            one_request(&mut conn); // warm the pool of buffers and of backends
        }
        let counts: Vec<u64> = (0..5).map(|_| one_request(&mut conn)).collect();
        eprintln!("allocations per proxied request: {counts:?}");
        // Left: the boxed request handed from HTTP to the proxy, the boxed
        // proxy state, and the client's origin kept for a `Location`
        // rewrite. Every buffer comes from the pool.
        assert!(counts.iter().all(|&n| n <= 3), "{counts:?}");
    }
}

/// A proxied answer that ends at the backend's close, to a slow client.
#[cfg(test)]
mod close_delimited_tests {
    use super::test_support::{loopback_connection, Harness};
    use super::*;
    use std::io::{Read, Write};

    /// The payload of a chunked body, and whether its last chunk came.
    fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
        let mut body = Vec::new();
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return (body, false);
            };
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            if n == 0 {
                return (body, true);
            }
            if rest.len() < eol + 2 + n + 2 {
                return (body, false);
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
    }

    /// A close-delimited answer, fully sent and closed by the backend, to a
    /// client that reads slowly: every byte must reach the client before
    /// the final chunk.
    #[test]
    fn close_delimited_answer_to_a_slow_client_is_not_cut() {
        const SIZE: usize = 1 << 18;
        let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = backend.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut socket, _) = backend.accept().unwrap();
            let mut head = [0u8; 4096];
            let _ = socket.read(&mut head);
            let mut answer = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
            answer.extend((0..SIZE).map(|i| (i % 251) as u8));
            let _ = socket.write_all(&answer);
        });
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().to_path_buf());
        config.routes = vec![crate::route::Route::parse(&format!("/api={backend_addr}")).unwrap()];
        let harness = Harness::new(config);
        let (mut client, mut conn, _) = loopback_connection(|server_side| {
            socket2::SockRef::from(server_side)
                .set_send_buffer_size(4096)
                .unwrap();
        });
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(4096)
            .unwrap();
        client.set_nonblocking(true).unwrap();
        client
            .write_all(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let shared = harness.shared(Instant::now());
        let mut got = Vec::new();
        let mut buffer = [0u8; 8192];
        let until = Instant::now() + std::time::Duration::from_secs(30);
        while Instant::now() < until {
            conn.readable(false);
            conn.writable();
            conn.upstream_event(true, true, false);
            if conn.drive(&shared) == Next::Close {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
            while let Ok(n @ 1..) = client.read(&mut buffer) {
                got.extend_from_slice(&buffer[..n]);
            }
            if got.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let (body, complete) = dechunk(&got[end..]);
        assert!(complete, "no final chunk after {} bytes", body.len());
        assert_eq!(
            body.len(),
            SIZE,
            "final chunk sent after {} of {SIZE} bytes",
            body.len()
        );
    }
}
