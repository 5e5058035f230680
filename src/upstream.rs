//! Connections to backends, and the pool of idle ones that every client
//! shares.
//!
//! A backend socket is opened without blocking (`connect` returns at once;
//! the first writable edge says it is done), with `TCP_NODELAY`, and
//! registered with the loop's poll **once**, for both directions, under a
//! token of its own ([`crate::server::upstream_token`]). The token stays the
//! socket's for its whole life, through every client that borrows it and
//! every stay in the pool, so handing a backend connection from one client to
//! the next costs no `epoll_ctl`. The loop learns whom an event is for from
//! [`Upstreams::owner`].
//!
//! An idle connection is dropped before it could go stale: after
//! [`IDLE_LIFETIME`] in the pool (Node's `http` closes idle connections after
//! 5 s), or as soon as the backend closes it (its token's event arrives while
//! it is idle). A request that cannot be sent twice (a POST) first peeks at
//! the pooled socket, since the close may be waiting unread in this very
//! turn. The race that remains — a backend closing just as a request leaves
//! — is what the proxy's one retry is for, where a retry is safe.
//!
//! The pool also remembers which backends last answered in HTTP/1.0: such a
//! backend never sends `100 Continue`, so rill says it for them (see
//! [`Upstreams::speaks_http10`]).

use crate::server::upstream_token;
use crate::stats::{add, Stats};
use log::{debug, trace};
use mio::net::TcpStream;
use mio::{Interest, Registry};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a connection may wait in the pool before it is closed: under the
/// 5 s after which Node's `http` (and many others) close idle ones.
pub const IDLE_LIFETIME: Duration = Duration::from_secs(4);
/// Most idle connections kept for one backend.
pub const IDLE_PER_BACKEND: usize = 256;

/// An open (or opening) connection to a backend.
#[derive(Debug)]
pub struct UpstreamConn {
    pub socket: TcpStream,
    /// The number in its token.
    pub id: usize,
    pub addr: SocketAddr,
    /// It came from the pool: it has carried a request before, and the
    /// backend may have closed it meanwhile.
    pub reused: bool,
}

/// Who a backend socket's events are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The client connection with this slab key.
    Connection(usize),
    /// Nobody: it waits in the pool, among the idle connections to this
    /// backend.
    Pool(SocketAddr),
}

/// A pooled connection and since when it has been idle.
#[derive(Debug)]
struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// What the pool keeps for one backend.
#[derive(Debug)]
struct Backend {
    addr: SocketAddr,
    /// Its idle connections, the most recently used last.
    idle: Vec<Idle>,
    /// Its last final answer was HTTP/1.0.
    http10: bool,
}

/// What the pool keeps per backend. A plain list searched in order: a rill
/// has a backend or two per route, and comparing a few addresses costs less
/// than hashing one (SipHash, twice per proxied request).
#[derive(Debug, Default)]
struct Backends(Vec<Backend>);

impl Backends {
    fn get(&self, addr: SocketAddr) -> Option<&Backend> {
        self.0.iter().find(|backend| backend.addr == addr)
    }

    fn get_mut(&mut self, addr: SocketAddr) -> Option<&mut Backend> {
        self.0.iter_mut().find(|backend| backend.addr == addr)
    }

    /// `addr`'s record, made the first time.
    fn entry(&mut self, addr: SocketAddr) -> &mut Backend {
        let at = match self.0.iter().position(|backend| backend.addr == addr) {
            Some(at) => at,
            None => {
                self.0.push(Backend {
                    addr,
                    idle: Vec::new(),
                    http10: false,
                });
                self.0.len() - 1
            }
        };
        &mut self.0[at]
    }

    /// `addr`'s idle connections, if it has a record.
    fn idle_mut(&mut self, addr: SocketAddr) -> Option<&mut Vec<Idle>> {
        self.get_mut(addr).map(|backend| &mut backend.idle)
    }
}

/// Every backend connection rill holds.
pub struct Upstreams {
    registry: Registry,
    owners: Slab<Owner>,
    /// Idle connections and what was learnt, per backend.
    backends: Backends,
    stats: Rc<Stats>,
}

impl Upstreams {
    /// No connections yet; new ones are registered with `registry`.
    pub fn new(registry: Registry, stats: Rc<Stats>) -> Upstreams {
        Upstreams {
            registry,
            owners: Slab::new(),
            backends: Backends::default(),
            stats,
        }
    }

    /// Notes the HTTP version (`minor`: 0 or 1) of a final answer from
    /// `addr`.
    pub fn note_version(&mut self, addr: SocketAddr, minor: u8) {
        let http10 = minor == 0;
        match self.backends.get_mut(addr) {
            Some(backend) => backend.http10 = http10,
            None if http10 => self.backends.entry(addr).http10 = true,
            None => {}
        }
    }

    /// Whether `addr`'s last final answer was HTTP/1.0. Such a server
    /// ignores `Expect: 100-continue` (RFC 9110 §10.1.1), so a client that
    /// waits for a `100` would stall; RFC 9110 lets a proxy that believes,
    /// from past interaction, that the next server is HTTP/1.0 send the
    /// `100` itself.
    pub fn speaks_http10(&self, addr: SocketAddr) -> bool {
        self.backends
            .get(addr)
            .is_some_and(|backend| backend.http10)
    }

    /// Who the socket with this token number belongs to.
    pub fn owner(&self, id: usize) -> Option<Owner> {
        self.owners.get(id).copied()
    }

    /// A connection to `addr` for the client connection `owner`: the most
    /// recently pooled one that is still fresh, or a new one.
    ///
    /// `unretryable` says the request cannot be sent again if this
    /// connection turns out dead (a POST): then a pooled connection is
    /// first asked whether its backend has closed it already. The FIN may be
    /// in the socket while its event waits later in this very turn; a peek
    /// that would block says the connection is still open. Retryable
    /// requests skip the syscall: the one retry covers them.
    pub fn checkout(
        &mut self,
        addr: SocketAddr,
        owner: usize,
        now: Instant,
        unretryable: bool,
    ) -> io::Result<UpstreamConn> {
        while let Some(idle) = self.backends.idle_mut(addr).and_then(Vec::pop) {
            add_gauge(&self.stats.upstream_idle, -1);
            if now.saturating_duration_since(idle.since) >= IDLE_LIFETIME {
                // The rest were pooled even earlier: all of them are stale.
                self.forget(idle.conn);
                for older in self
                    .backends
                    .idle_mut(addr)
                    .map(std::mem::take)
                    .unwrap_or_default()
                {
                    add_gauge(&self.stats.upstream_idle, -1);
                    self.forget(older.conn);
                }
                return self.connect(addr, owner);
            }
            if unretryable && !still_quiet(&idle.conn.socket) {
                trace!(
                    "upstream {}: closed by the backend while idle",
                    idle.conn.id
                );
                self.forget(idle.conn);
                continue;
            }
            if let Some(slot) = self.owners.get_mut(idle.conn.id) {
                *slot = Owner::Connection(owner);
            }
            add(&self.stats.upstream_reused, 1);
            trace!("upstream {}: reused for conn {owner}", idle.conn.id);
            return Ok(UpstreamConn {
                reused: true,
                ..idle.conn
            });
        }
        self.connect(addr, owner)
    }

    /// Opens a new connection to `addr` for the client connection `owner`.
    /// The connect completes (or fails) later: the socket's first writable
    /// edge says so.
    pub fn connect(&mut self, addr: SocketAddr, owner: usize) -> io::Result<UpstreamConn> {
        let mut socket = TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        let entry = self.owners.vacant_entry();
        let id = entry.key();
        self.registry.register(
            &mut socket,
            upstream_token(id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Owner::Connection(owner));
        add(&self.stats.upstream_connects, 1);
        debug!("upstream {id}: connecting to {addr} for conn {owner}");
        Ok(UpstreamConn {
            socket,
            id,
            addr,
            reused: false,
        })
    }

    /// Takes back a connection that finished an exchange cleanly.
    pub fn checkin(&mut self, conn: UpstreamConn, now: Instant) {
        let pooled = &mut self.backends.entry(conn.addr).idle;
        if pooled.len() >= IDLE_PER_BACKEND {
            self.forget(conn);
            return;
        }
        if let Some(slot) = self.owners.get_mut(conn.id) {
            *slot = Owner::Pool(conn.addr);
        }
        trace!("upstream {}: idle in the pool", conn.id);
        pooled.push(Idle { conn, since: now });
        add_gauge(&self.stats.upstream_idle, 1);
    }

    /// Closes a connection that cannot be reused.
    pub fn release(&mut self, conn: UpstreamConn) {
        self.forget(conn);
    }

    /// An event arrived for a pooled connection. Nothing is expected of an
    /// idle backend: bytes or a close from it mean it cannot be reused.
    pub fn on_idle_event(&mut self, id: usize) {
        let Some(Owner::Pool(addr)) = self.owner(id) else {
            return;
        };
        let Some(pooled) = self.backends.idle_mut(addr) else {
            return;
        };
        let Some(at) = pooled.iter().position(|idle| idle.conn.id == id) else {
            return;
        };
        if still_quiet(&pooled[at].conn.socket) {
            return; // a late writable edge, nothing more
        }
        let idle = pooled.remove(at);
        add_gauge(&self.stats.upstream_idle, -1);
        debug!("upstream {id}: closed by the backend while idle");
        self.forget(idle.conn);
    }

    /// Closes the pooled connections that have waited too long.
    pub fn prune(&mut self, now: Instant) {
        let mut stale = Vec::new();
        for pooled in self.backends.0.iter_mut().map(|backend| &mut backend.idle) {
            let keep = pooled
                .iter()
                .position(|idle| now.saturating_duration_since(idle.since) < IDLE_LIFETIME)
                .unwrap_or(pooled.len());
            stale.extend(pooled.drain(..keep));
        }
        for idle in stale {
            add_gauge(&self.stats.upstream_idle, -1);
            self.forget(idle.conn);
        }
    }

    /// How many backend connections are open, pooled ones included.
    pub fn open(&self) -> usize {
        self.owners.len()
    }

    fn forget(&mut self, conn: UpstreamConn) {
        if self.owners.try_remove(conn.id).is_some() {
            trace!("upstream {}: closed", conn.id);
        }
        // Dropping the socket closes it, which also removes it from epoll.
    }
}

/// Moves a gauge up or down by one.
fn add_gauge(gauge: &std::cell::Cell<u64>, delta: i64) {
    gauge.set(gauge.get().saturating_add_signed(delta));
}

/// Whether a socket has neither bytes nor a close waiting (one `recv` with
/// `MSG_PEEK`).
pub fn still_quiet(socket: &TcpStream) -> bool {
    matches!(socket.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
