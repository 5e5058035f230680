//! The event loop: one thread, one `mio::Poll`, one listener, a `Slab` of
//! connections, the backend connections ([`crate::upstream`]), a timer heap,
//! and the signal source.
//!
//! Every event source has a token of its own ([`Source`]): the listener, the
//! signals, the inotify watch on ROOT ([`crate::watch`]), each client socket
//! (by its connection's slab key) and each backend socket (by its number in
//! [`Upstreams`], which says which connection it serves, if any). Both
//! sockets of a proxied connection lead to the same connection.
//!
//! Every turn of [`Server::run`]:
//!
//! 1. waits in `poll` — at most until the nearest deadline;
//! 2. reads the clock once; if the watch has events, reads them *first*, so
//!    the file cache forgets what changed before any request of this turn
//!    is answered (a GET sent after a save always sees the new bytes);
//!    then handles each readiness event: the listener's
//!    by accepting (until `WouldBlock`, or 64 per turn), reading the watch
//!    once more, and running each new connection at once, a signal's by starting shutdown, a
//!    connection's by letting its state machine ([`crate::conn`]) run as far
//!    as its socket allows;
//! 3. drives again the connections that gave up their turn with work left
//!    (uploads over their per-turn budget), and accepts again if the listener
//!    was left with connections queued, since no new edge would say so;
//! 4. fires the timers that are due, and under `--live-reload` sends the
//!    batch of changes to the pages once it is due ([`crate::live`]).
//!
//! A connection answers with the readiness it now waits for; the loop
//! registers the socket the first time it has to wait, and re-registers it
//! only when that differs from what is registered. A connection answering
//! requests back to back costs no `epoll_ctl`, and one answered and closed
//! in one go (a `Connection: close` request) costs none at all.
//! Readiness is edge-triggered, which is why a connection only ever waits
//! after a `WouldBlock`: an edge that already passed is never reported again.

use crate::config::Config;
use crate::conn::{BufferPool, Connection, Next, Shared};
use crate::hasher::Hasher;
use crate::http::response::{write_generated, CommonHeaders, DateCache, Extra, Status};
use crate::http::websocket::{write_frame, Opcode};
use crate::live::Live;
use crate::site::Site;
use crate::stats::{self, add, Stats};
use crate::timer::{poll_timeout, Timeouts, Timers};
use crate::upstream::{Owner, Upstreams};
use log::{debug, info, trace, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// What a readiness event is about, decoded from its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Listener,
    Signals,
    /// The inotify descriptor watching ROOT.
    Watch,
    /// The hashing thread has verdicts.
    Hasher,
    /// The client socket of the connection with this slab key.
    Client(usize),
    /// The backend socket with this number in [`Upstreams`].
    Upstream(usize),
}

/// The listener's token; the keys in the other tokens never reach it.
const LISTENER: Token = Token(usize::MAX);
/// The signal source's token.
const SIGNALS: Token = Token(usize::MAX - 1);
/// The watch's token.
const WATCH: Token = Token(usize::MAX - 2);
/// The token the hashing thread wakes the loop with.
const HASHER: Token = Token(usize::MAX - 3);

/// A client socket's token: its connection's key, shifted to make room for
/// the kind of socket in the lowest bit.
pub fn client_token(key: usize) -> Token {
    Token(key << 1)
}

/// A backend socket's token.
pub fn upstream_token(id: usize) -> Token {
    Token(id << 1 | 1)
}

impl Source {
    /// Which source a token names.
    pub fn of(token: Token) -> Source {
        match token {
            LISTENER => Source::Listener,
            SIGNALS => Source::Signals,
            WATCH => Source::Watch,
            HASHER => Source::Hasher,
            Token(n) if n & 1 == 0 => Source::Client(n >> 1),
            Token(n) => Source::Upstream(n >> 1),
        }
    }
}
/// How many readiness events one `poll` call can return.
const EVENTS_PER_POLL: usize = 1024;
/// Most connections accepted in one turn of the loop. Each is served at
/// once, so without a bound a stream of new connections could keep the loop
/// in `accept` while kept-alive connections and timers wait.
const ACCEPTS_PER_TURN: usize = 64;
/// Past the connection limit, this many extra connections are still accepted
/// to be told `503`; beyond them a new connection is closed unanswered.
const REFUSAL_SLOTS: usize = 64;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most new folders watched and scanned per turn (`--live-reload`).
const SCAN_BUDGET_PER_TURN: usize = 64;
/// How often idle backend connections are checked for their age.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// How long answers in flight may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// File descriptors kept back from the connection limit for the listener,
/// the poll, signals, logging and the files being sent.
const RESERVED_FDS: u64 = 64;

/// A connection, the interest it is registered with, and the deadline its
/// timer entry was scheduled for.
struct Slot {
    conn: Connection,
    /// `None` until the connection first has to wait for its socket.
    registered: Option<Interest>,
    scheduled: Option<Instant>,
}

/// What the loop is doing about new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    Yes,
    /// Out of file descriptors: try again at this time, or when one closes.
    PausedUntil(Instant),
    /// Shutting down: answers in flight get until this time to finish.
    ShuttingDown(Instant),
}

/// What every connection reads while it runs. Kept apart from the slab, so
/// the loop can lend it to one connection while holding that connection.
struct Env {
    site: Site,
    config: Config,
    /// Buffers idle connections gave back (see [`BufferPool`]).
    pool: BufferPool,
    date: DateCache,
    /// Request paths are decoded here, one request at a time.
    path_buffer: Cell<Vec<u8>>,
    /// Backend connections and the pool of idle ones.
    upstreams: RefCell<Upstreams>,
    /// Changes waiting for the live-reloading pages.
    live: Live,
    /// Who may do what (`--auth`), and the failures it counts.
    gate: crate::auth::Gate,
    /// The thread that checks bcrypt passwords (with `--auth-file`).
    hasher: Option<Hasher>,
    /// The certificate and rustls configuration of an HTTPS port.
    tls: Option<crate::tls::Tls>,
}

impl Env {
    fn shared(&self, now: Instant) -> Shared<'_> {
        Shared {
            site: &self.site,
            pool: &self.pool,
            config: &self.config,
            now,
            date: self.date.as_str(),
            clock: self.date.time(),
            path_buffer: &self.path_buffer,
            upstreams: &self.upstreams,
            live: &self.live,
            gate: &self.gate,
            hasher: self.hasher.as_ref(),
        }
    }
}

/// The server: the poll, the listening socket and every open connection.
pub struct Server {
    poll: Poll,
    /// The listening socket; closed (`None`) once a shutdown begins.
    listener: Option<TcpListener>,
    signals: Signals,
    connections: Slab<Slot>,
    env: Env,
    timeouts: Timeouts,
    timers: Timers,
    accepting: Accepting,
    /// Connections that gave up their turn with work left (an upload that
    /// used its budget). With edge-triggered readiness no new event would
    /// wake them, so the loop drives them again itself.
    yielded: Vec<usize>,
    /// The last turn stopped accepting at [`ACCEPTS_PER_TURN`]: more
    /// connections may be queued, and no new edge would say so.
    accept_pending: bool,
    /// Connections just accepted, waiting for the watch to be read before
    /// they are served (kept to reuse its allocation).
    accepted: Vec<(TcpStream, SocketAddr)>,
    /// The loop's counters (see [`crate::stats`]).
    stats: Rc<Stats>,
    /// Connections holding a `/.rill/events` stream open.
    subscribers: Vec<usize>,
    /// When the next event goes to the subscribers.
    next_push: Instant,
    /// When the pool of idle backend connections is next pruned.
    next_prune: Instant,
    /// Pages listening for changes on `/.rill/live`.
    live_pages: Vec<usize>,
}

impl Server {
    /// Binds the listening socket, opens the served folder and registers
    /// for SIGINT and SIGTERM.
    pub fn bind(config: &Config) -> io::Result<Server> {
        let site = Site::open(&config.root, !config.no_watch)?;
        if config.live_reload {
            site.watch_tree();
        }
        let poll = Poll::new()?;
        if let Some(fd) = site.watch_fd() {
            poll.registry()
                .register(&mut mio::unix::SourceFd(&fd), WATCH, Interest::READABLE)?;
        }
        let mut listener = listen(config.listen)?;
        let tls = match &config.tls {
            Some(source) => Some(
                crate::tls::Tls::new(source, listener.local_addr()?)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut signals = Signals::new([libc::SIGINT, libc::SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut config = config.clone();
        if let Some(warning) = clear_text_warning(&config) {
            warn!("{warning}");
        }
        let fd_limit = raise_open_file_limit();
        let fd_cap = usize::try_from(fd_limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
        if config.max_connections > fd_cap {
            warn!(
                "--max-connections {} lowered to {fd_cap}: the open-file limit is {fd_limit}",
                config.max_connections
            );
            config.max_connections = fd_cap.max(1);
        }
        let now = Instant::now();
        let stats = Rc::new(Stats::new(now));
        stats.watches.set(site.watches() as u64);
        let upstreams = Upstreams::new(poll.registry().try_clone()?, Rc::clone(&stats));
        let gate = crate::auth::Gate::new(config.users.clone(), config.public_read);
        let hasher = if gate.has_slow_checks() {
            Some(Hasher::start(poll.registry(), HASHER)?)
        } else {
            None
        };
        Ok(Server {
            poll,
            listener: Some(listener),
            signals,
            connections: Slab::new(),
            timeouts: Timeouts::from_config(&config),
            env: Env {
                site,
                config,
                pool: BufferPool::default(),
                date: DateCache::new(SystemTime::now()),
                path_buffer: Cell::default(),
                upstreams: RefCell::new(upstreams),
                live: Live::new(),
                gate,
                hasher,
                tls,
            },
            timers: Timers::new(),
            accepting: Accepting::Yes,
            yielded: Vec::new(),
            accept_pending: false,
            accepted: Vec::with_capacity(ACCEPTS_PER_TURN),
            stats,
            subscribers: Vec::new(),
            next_push: now,
            next_prune: now,
            live_pages: Vec::new(),
        })
    }

    /// The HTTPS set-up, when rill serves HTTPS.
    pub fn tls(&self) -> Option<&crate::tls::Tls> {
        self.env.tls.as_ref()
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(listener) => listener.local_addr(),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "shut down")),
        }
    }

    /// Runs the loop until a shutdown completes (or `poll` itself fails).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut turn = Vec::new();
        loop {
            let now = Instant::now();
            let busy =
                !self.yielded.is_empty() || self.accept_pending || self.env.site.has_pending_scan();
            let timeout = if !busy {
                let push = (!self.subscribers.is_empty()).then_some(self.next_push);
                // Pooled buffers and idle backend connections are let go
                // by the prune, even when nothing else wakes the loop.
                let holding = !self.env.pool.is_empty() || self.stats.upstream_idle.get() > 0;
                poll_timeout(
                    now,
                    &[
                        self.timers.next_deadline(),
                        self.accept_deadline(),
                        push,
                        self.env.live.deadline(),
                        holding.then_some(self.next_prune),
                    ],
                )
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.env.date.update(SystemTime::now());
            let count = events.iter().count();
            self.stats.wakeup(count);
            // A full batch may have left the watch's event for the next
            // poll while a request behind it is in this one: read it anyway.
            if count == EVENTS_PER_POLL || events.iter().any(|e| e.token() == WATCH) {
                self.on_watch(now);
            }
            for event in events.iter() {
                trace!(
                    "event {:?}: readable={} writable={} closed={}",
                    Source::of(event.token()),
                    event.is_readable(),
                    event.is_writable(),
                    event.is_read_closed() || event.is_error()
                );
                match Source::of(event.token()) {
                    Source::Listener => self.accept_new(now),
                    Source::Signals => {
                        if self.on_signals(now) {
                            return Ok(());
                        }
                    }
                    Source::Watch => {} // read first, above
                    Source::Hasher => self.on_verdicts(now),
                    Source::Client(key) => {
                        if let Some(slot) = self.connections.get_mut(key) {
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                slot.conn
                                    .readable(event.is_read_closed() || event.is_error());
                            }
                            if event.is_writable() || event.is_error() {
                                slot.conn.writable();
                            }
                        }
                        self.drive(key, now);
                    }
                    Source::Upstream(id) => self.on_upstream_event(id, event, now),
                }
            }
            if self.accept_pending {
                self.accept_new(now);
            }
            std::mem::swap(&mut turn, &mut self.yielded);
            for key in turn.drain(..) {
                self.drive(key, now);
            }
            self.fire_timers(now);
            if self.env.site.has_pending_scan() {
                // New folders (a tree moved into ROOT) are watched and
                // scanned a slice per turn, between the connections' work.
                self.env.site.scan_pending(SCAN_BUDGET_PER_TURN);
            }
            self.take_watch_report(now);
            if !self.subscribers.is_empty() && self.next_push <= now {
                self.push_stats(now);
            }
            if self.env.live.deadline().is_some_and(|due| due <= now) {
                self.push_changes(now);
            }
            if self.next_prune <= now {
                self.next_prune = now + PRUNE_INTERVAL;
                self.env.upstreams.borrow_mut().prune(now);
                if self.env.pool.trim() > 0 {
                    give_freed_memory_back();
                }
                let (buffers, bytes) = self.env.pool.held();
                self.stats.buffers_pooled.set(buffers as u64);
                self.stats.buffers_pooled_bytes.set(bytes as u64);
                self.env.site.prune_watches(now);
                self.stats.watches.set(self.env.site.watches() as u64);
            }
            match self.accepting {
                Accepting::PausedUntil(at) if at <= now => {
                    self.accepting = Accepting::Yes;
                    self.accept_new(now);
                }
                Accepting::ShuttingDown(at) if self.connections.is_empty() || at <= now => {
                    self.finish_shutdown(if self.connections.is_empty() {
                        "all answers finished"
                    } else {
                        "the grace period ended"
                    });
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    /// The hashing thread checked passwords: the gate remembers each verdict,
    /// and the connections that waited for it answer their request now.
    fn on_verdicts(&mut self, now: Instant) {
        let Some(done) = self.env.hasher.as_ref().map(Hasher::finished) else {
            return;
        };
        for finished in done {
            self.env.gate.settle(&finished.check, finished.right);
            for key in finished.waiting {
                let waited = self
                    .connections
                    .get_mut(key)
                    .is_some_and(|slot| slot.conn.verdict_in(finished.ticket));
                if waited {
                    self.drive(key, now);
                }
            }
        }
    }

    /// The watch has events: the file cache drops what they touch (see
    /// [`Server::take_watch_report`] for the rest).
    fn on_watch(&mut self, now: Instant) {
        self.env.site.read_watch(now);
        self.take_watch_report(now);
    }

    /// Counts what the watch said since last time (in [`Server::on_watch`],
    /// or when the cache read it again in a long turn, or from scanning new
    /// folders), and under `--live-reload` adds the changed paths to the
    /// batch for the pages.
    fn take_watch_report(&mut self, now: Instant) {
        let Some(report) = self.env.site.take_watch_report() else {
            return;
        };
        add(&self.stats.watch_events, report.events);
        add(&self.stats.cache_invalidations, report.invalidated);
        self.stats.watches.set(self.env.site.watches() as u64);
        if report.overflowed {
            add(&self.stats.watch_overflows, 1);
        }
        if self.env.config.live_reload {
            for (path, mask) in &report.changes {
                self.env.live.note(path, *mask, now);
            }
            if report.overflowed {
                self.env.live.note_everything(now);
            }
        }
    }

    /// Sends the due batch of changes to every page listening, as one
    /// frame rendered once.
    fn push_changes(&mut self, now: Instant) {
        let Some(message) = self.env.live.take_due(now) else {
            return;
        };
        add(&self.stats.live_batches, 1);
        let mut frame = Vec::with_capacity(message.len() + 10);
        write_frame(&mut frame, Opcode::Text, message.as_bytes());
        let pages = std::mem::take(&mut self.live_pages);
        info!("live reload: {message} to {} pages", pages.len());
        for key in pages {
            let Some(slot) = self.connections.get_mut(key) else {
                continue;
            };
            if !slot.conn.wants_changes() {
                continue; // closing, or the key now belongs to another connection
            }
            slot.conn.push_change(&frame);
            self.live_pages.push(key);
            self.drive(key, now);
        }
    }

    /// An event on a backend socket: for the connection it serves, or, for
    /// an idle one in the pool, a sign that the backend closed it.
    fn on_upstream_event(&mut self, id: usize, event: &mio::event::Event, now: Instant) {
        let owner = self.env.upstreams.borrow().owner(id);
        match owner {
            Some(Owner::Connection(key)) => {
                if let Some(slot) = self.connections.get_mut(key) {
                    let closed = event.is_error() || event.is_read_closed();
                    slot.conn.upstream_event(
                        event.is_readable() || closed,
                        event.is_writable() || event.is_error(),
                        closed,
                    );
                }
                self.drive(key, now);
            }
            Some(Owner::Pool(_)) => self.env.upstreams.borrow_mut().on_idle_event(id),
            None => {} // closed earlier in this batch of events
        }
    }

    fn accept_deadline(&self) -> Option<Instant> {
        match self.accepting {
            Accepting::Yes => None,
            Accepting::PausedUntil(at) | Accepting::ShuttingDown(at) => Some(at),
        }
    }

    /// Accepts the queued connections, at most [`ACCEPTS_PER_TURN`] of
    /// them, in batches: each batch is accepted, then the watch is read
    /// once, then each connection of the batch is served at once (see
    /// [`Server::admit`]).
    ///
    /// The watch is read *after* the accepts: a connection taken now may
    /// have been opened after a save that this turn's `poll` had not seen
    /// yet (the turn began before it), and its first request must not be
    /// answered from the entry that save made stale. One `read` of the
    /// watch per batch, usually `EAGAIN`, closes that window; since the
    /// kernel queued the save's event before the client could connect,
    /// the read is sure to find it.
    ///
    /// A batch is held to the room left under `--max-connections` (at
    /// least one): sockets waiting in it hold descriptors, and near the
    /// open-file limit they must not take the ones kept back for the files
    /// being sent and the backend sockets ([`RESERVED_FDS`]). At the limit
    /// the batches are of one, each refused or answered before the next.
    fn accept_new(&mut self, now: Instant) {
        self.accept_pending = false;
        let mut accepted = std::mem::take(&mut self.accepted);
        let mut budget = ACCEPTS_PER_TURN;
        while budget > 0 && self.accepting == Accepting::Yes {
            let room = self
                .env
                .config
                .max_connections
                .saturating_sub(self.connections.len())
                .max(1);
            let batch = budget.min(room);
            let full = self.accept_queued(&mut accepted, batch, now);
            if accepted.is_empty() {
                break;
            }
            budget -= accepted.len();
            self.on_watch(now);
            for (socket, peer) in accepted.drain(..) {
                add(&self.stats.accepted, 1);
                let open = self.connections.len();
                if open >= self.env.config.max_connections + REFUSAL_SLOTS {
                    add(&self.stats.refused, 1);
                    debug!("refused {peer} unanswered: {open} connections open");
                    continue; // dropping the socket closes it
                }
                let over_limit = open >= self.env.config.max_connections;
                self.admit(socket, peer, over_limit, now);
            }
            if !full {
                break; // the queue is empty, or accepting stopped
            }
            if budget == 0 {
                // More may be queued, and no new edge would say so.
                self.accept_pending = true;
            }
        }
        self.accepted = accepted;
    }

    /// Takes up to `limit` connections off the listener's queue into
    /// `accepted`; says whether it stopped at `limit` (more may be queued)
    /// rather than at `WouldBlock` or an error.
    fn accept_queued(
        &mut self,
        accepted: &mut Vec<(TcpStream, SocketAddr)>,
        limit: usize,
        now: Instant,
    ) -> bool {
        while accepted.len() < limit {
            let Some(listener) = &self.listener else {
                return false;
            };
            match listener.accept() {
                Ok(connection) => accepted.push(connection),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // The pending connections stay queued in the kernel.
                    // Retrying now would spin; wait for a close or the backoff.
                    warn!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accepting = Accepting::PausedUntil(now + ACCEPT_BACKOFF);
                    return false;
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    return false;
                }
            }
        }
        true
    }

    /// Takes in a new connection and runs it at once; over the limit it is
    /// answered `503` and closed, through the same state machine as everyone
    /// else.
    ///
    /// The kernel hands over a connection once its first bytes are in (see
    /// [`defer_accept`]), so the first read is made before the socket is
    /// registered: a request answered in one go (and a connection closed
    /// after it) never costs an `epoll_ctl` or a trip through `poll`. A
    /// connection that has to wait is registered by [`Server::apply`].
    fn admit(&mut self, socket: TcpStream, peer: SocketAddr, over_limit: bool, now: Instant) {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let tls = self.env.tls.as_ref().map(|tls| &tls.config);
        let mut conn = match Connection::new(key, socket, peer, now, Rc::clone(&self.stats), tls) {
            Ok(conn) => conn,
            Err(e) => {
                warn!("conn from {peer}: no TLS session: {e}");
                return;
            }
        };
        if over_limit {
            add(&self.stats.refused, 1);
            debug!("conn {key} from {peer}: over --max-connections, answering 503");
            let mut answer = Vec::new();
            let common = CommonHeaders {
                keep_alive: false,
                http10: false,
                cors: self.env.config.cors,
            };
            write_generated(
                &mut answer,
                Status::SERVICE_UNAVAILABLE,
                "too many connections, try again soon",
                Extra::None,
                self.env.date.as_str(),
                common,
                false,
            );
            conn.refuse(answer);
        } else {
            debug!("conn {key} opened from {peer}");
        }
        entry.insert(Slot {
            conn,
            registered: None,
            scheduled: None,
        });
        self.drive(key, now);
    }

    /// Lets connection `key` run, then records what it waits for, or closes it.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(slot) = self.connections.get_mut(key) else {
            return; // closed earlier in this same batch of events
        };
        let next = slot.conn.drive(&self.env.shared(now));
        self.apply(key, next);
    }

    /// Carries out what a connection asked for after running.
    fn apply(&mut self, key: usize, next: Next) {
        let Some(slot) = self.connections.get_mut(key) else {
            return;
        };
        match next {
            // Registered for more than this already: the connection ignores
            // the edges it does not need, which costs less than an
            // `epoll_ctl` each time a proxied exchange starts and ends.
            Next::Wait(interest) if slot.registered.is_some_and(|r| r.add(interest) == r) => {}
            Next::Wait(interest) => {
                trace!(
                    "conn {key}: interest {:?} -> {:?}",
                    slot.registered,
                    interest
                );
                let registry = self.poll.registry();
                let socket = slot.conn.socket();
                let registered = match slot.registered {
                    None => registry.register(socket, client_token(key), interest),
                    Some(_) => registry.reregister(socket, client_token(key), interest),
                };
                match registered {
                    Ok(()) => slot.registered = Some(interest),
                    Err(e) => {
                        warn!("conn {key}: (re)register failed: {e}");
                        let _ = slot.conn.abandon("cannot be registered");
                        self.close(key);
                        return;
                    }
                }
            }
            Next::Yield => {
                if !self.yielded.contains(&key) {
                    self.yielded.push(key);
                }
            }
            Next::Close => {
                self.close(key);
                return;
            }
        }
        if slot.conn.is_streaming_events() && !self.subscribers.contains(&key) {
            if self.subscribers.is_empty() {
                self.next_push = Instant::now() + stats::PUSH_INTERVAL;
            }
            self.subscribers.push(key);
        }
        if slot.conn.wants_changes() && !self.live_pages.contains(&key) {
            self.live_pages.push(key);
        }
        self.reschedule(key);
    }

    /// Sends the counters to every `/.rill/events` stream: rendered once,
    /// appended to each stream's output, then written like any answer.
    fn push_stats(&mut self, now: Instant) {
        self.next_push = now + stats::PUSH_INTERVAL;
        let event = stats::event(&self.stats.to_json(now));
        let subscribers = std::mem::take(&mut self.subscribers);
        for key in subscribers {
            let Some(slot) = self.connections.get_mut(key) else {
                continue;
            };
            if !slot.conn.is_streaming_events() {
                continue; // the key now belongs to another connection
            }
            slot.conn.push_event(event.as_bytes());
            self.subscribers.push(key);
            self.drive(key, now);
        }
    }

    /// Makes sure a timer entry exists no later than the connection's
    /// deadline. A later deadline needs nothing: the early entry pops, sees
    /// the real deadline, and schedules that.
    fn reschedule(&mut self, key: usize) {
        let Some(slot) = self.connections.get_mut(key) else {
            return;
        };
        let deadline = slot.conn.deadline(&self.timeouts);
        if slot.scheduled.is_none_or(|scheduled| deadline < scheduled) {
            self.timers.schedule(deadline, key);
            slot.scheduled = Some(deadline);
        }
    }

    /// Pops due timer entries; fires those whose connection's deadline has
    /// really passed, reschedules the rest.
    fn fire_timers(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(slot) = self.connections.get_mut(key) else {
                continue; // the connection closed since
            };
            if slot.scheduled != Some(at) {
                continue; // superseded by an earlier entry, or a reused key
            }
            slot.scheduled = None;
            if slot.conn.deadline(&self.timeouts) > now {
                self.reschedule(key);
                continue;
            }
            add(&self.stats.timers_fired, 1);
            let next = slot.conn.on_timeout(&self.env.shared(now));
            self.apply(key, next);
        }
    }

    fn close(&mut self, key: usize) {
        // Dropping the socket closes it, and closing a descriptor removes
        // it from epoll (rill never duplicates one), so no `deregister`:
        // that would be one more system call per connection.
        if let Some(mut slot) = self.connections.try_remove(key) {
            self.release_upstream(&mut slot.conn);
        }
        if let Accepting::PausedUntil(_) = self.accepting {
            // A descriptor came free: the queued connections may fit now.
            // The loop accepts them after this event (not from here: a
            // close inside `accept_new`'s own admits would nest one call
            // deeper per connection, until the stack ran out).
            self.accepting = Accepting::Yes;
            self.accept_pending = true;
        }
    }

    /// Takes a dropped connection's backend socket out of the books (the
    /// pool, if it is clean).
    fn release_upstream(&mut self, conn: &mut Connection) {
        if let Some((upstream, reusable)) = conn.take_upstream() {
            let mut upstreams = self.env.upstreams.borrow_mut();
            if reusable {
                upstreams.checkin(upstream, Instant::now());
            } else {
                upstreams.release(upstream);
            }
        }
    }

    /// SIGINT or SIGTERM: the first starts a graceful shutdown, a second one
    /// ends at once. Returns `true` when the loop should stop now.
    fn on_signals(&mut self, now: Instant) -> bool {
        let count = self.signals.pending().count();
        if count == 0 {
            return false;
        }
        if let Accepting::ShuttingDown(_) = self.accepting {
            self.finish_shutdown("second signal");
            return true;
        }
        info!(
            "shutting down: no new connections, {} open, up to {SHUTDOWN_GRACE:?} for answers in flight",
            self.connections.len()
        );
        self.accepting = Accepting::ShuttingDown(now + SHUTDOWN_GRACE);
        // Closing the listener refuses new clients at once, and resets the
        // ones the kernel still held (those that had sent nothing yet),
        // instead of leaving them queued until the process exits.
        self.listener = None;
        let closing: Vec<(usize, bool)> = self
            .connections
            .iter_mut()
            .filter_map(|(key, slot)| {
                let tunnel = slot.conn.is_tunnel();
                slot.conn.begin_shutdown().then_some((key, tunnel))
            })
            .collect();
        // A tunnel has no answer to finish, and rill cannot end what it
        // carries cleanly: both of its sockets close now. Said, so that the
        // summary's "cut off" is not the whole story.
        let tunnels = closing.iter().filter(|(_, tunnel)| *tunnel).count();
        if tunnels > 0 {
            info!("shutting down: {tunnels} tunnel(s) closed at once");
        }
        for (key, _) in closing {
            if let Some(slot) = self.connections.get_mut(key) {
                let _ = slot.conn.abandon("shutdown");
            }
            self.close(key);
        }
        // The others finish what they were doing; a WebSocket has just
        // queued its Close (1001) and must be driven to send it.
        let open: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in open {
            self.drive(key, now);
        }
        if count > 1 {
            self.finish_shutdown("second signal");
            return true;
        }
        false
    }

    /// Drops every connection left (their temp files go with them) and logs
    /// a summary.
    fn finish_shutdown(&mut self, why: &str) {
        let left = self.connections.len();
        let shared = self.env.shared(Instant::now());
        for (_, slot) in self.connections.iter_mut() {
            let _ = slot.conn.cut_at_shutdown(&shared);
        }
        for (_, mut slot) in std::mem::take(&mut self.connections) {
            self.release_upstream(&mut slot.conn);
        }
        if let Some(tls) = &self.env.tls {
            tls.remove_cert_file();
        }
        info!("stopped ({why}): {}", self.stats.to_json(Instant::now()));
        match left {
            1 => info!("1 connection was cut off by the shutdown"),
            _ => info!("{left} connections were cut off by the shutdown"),
        }
        let _ = io::stderr().flush();
    }
}

/// With `--auth` on an address other than loopback, plain HTTP carries the
/// passwords in clear across the network: said once at start.
/// Hands the pages of freed heap memory back to the system. glibc keeps
/// freed blocks of a few KiB in the heap, so without this the buffers a
/// burst needed would stay in the process's RSS after the pool let them go.
/// It walks the heap once: cheap at the rate of [`PRUNE_INTERVAL`], and only
/// after the pool freed something.
fn give_freed_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it takes no
    // pointers and is safe to call at any time from the allocating thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn clear_text_warning(config: &Config) -> Option<String> {
    let clear = config.tls.is_none();
    (clear && !config.users.is_empty() && !config.listen.ip().is_loopback()).then(|| {
        format!(
            "--auth over plain HTTP on {}: passwords travel in clear to anyone on the network",
            config.listen
        )
    })
}

/// How many connections the kernel may queue before rill accepts them. mio
/// (like std) asks for 128, which a burst of a few thousand clients overflows:
/// their handshakes then stall in retransmission for seconds. The kernel caps
/// this at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a non-blocking listening socket with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one
    // `setsockopt` per connection saved. Answers leave in as few writes as
    // rill can make them, and Nagle would only hold back the last small one.
    socket.set_tcp_nodelay(true)?;
    defer_accept(&socket, DEFER_ACCEPT_SECS)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// How long the kernel holds a connection that has sent nothing yet before
/// handing it to `accept` anyway (see [`defer_accept`]).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Asks the kernel to queue a new connection for `accept` only once its
/// first bytes have arrived (`TCP_DEFER_ACCEPT`, which Apache httpd sets by
/// default and nginx offers as `deferred`). A connection is then accepted
/// with its request already readable, so the handshake's last ACK no longer
/// wakes the loop on its own: under `wrk -H 'Connection: close'` that took
/// 40-43k req/s at 12 µs of rill's CPU each to 52k at 8.3 µs. A client
/// that connects and says nothing is accepted anyway after about a second
/// (when the kernel's repeated SYN-ACK is acknowledged), and from then on
/// the header timeout applies as usual.
fn defer_accept(socket: &socket2::Socket, secs: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call, and
    // its size is passed with it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft open-file limit to the hard limit and returns it: each
/// connection is a file descriptor, and the default soft limit (often 1024)
/// would cap rill far below what the machine allows.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            } else {
                warn!(
                    "could not raise the open-file limit above {}",
                    limit.rlim_cur
                );
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_beyond_loopback_are_warned_about() {
        let mut config = Config::new(".".into());
        config.users = vec![crate::auth::User::parse_arg("ann:pw").unwrap()];
        assert_eq!(clear_text_warning(&config), None, "loopback");
        config.listen = "0.0.0.0:4000".parse().unwrap();
        assert!(clear_text_warning(&config).unwrap().contains("in clear"));
        config.listen = "[::]:4000".parse().unwrap();
        assert!(clear_text_warning(&config).is_some());
        config.tls = Some(crate::tls::CertSource::SelfSigned);
        assert_eq!(clear_text_warning(&config), None, "over HTTPS");
        config.tls = None;
        config.users.clear();
        assert_eq!(clear_text_warning(&config), None, "no passwords");
    }

    #[test]
    fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((socket, _)) => break socket,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
