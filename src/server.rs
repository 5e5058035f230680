//! The event loop: one thread, one `mio::Poll`, one listener, and a `Slab` of
//! connections, each registered under its slab key as its `Token`.
//!
//! Every turn of [`Server::run`] waits in `poll` for readiness, then handles each
//! event: the listener's by accepting until `WouldBlock`, a connection's by
//! letting its state machine ([`crate::conn`]) run as far as its socket allows.
//! The machine answers with the readiness it now waits for; the loop
//! re-registers the socket only when that differs from what is registered, so a
//! connection answering requests back to back costs no `epoll_ctl` at all.
//!
//! Readiness is edge-triggered, which is why a connection only ever waits after
//! a `WouldBlock`: an edge that already passed would never be reported again.

use crate::config::Config;
use crate::conn::{Connection, Next, Shared};
use crate::http::response::DateCache;
use crate::site::Site;
use log::{debug, error, trace, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// The listener's token; connections use their slab keys, which never reach it.
const LISTENER: Token = Token(usize::MAX);
/// How many readiness events one `poll` call can return.
const EVENTS_PER_POLL: usize = 1024;

/// A connection and the interest it is registered with.
struct Slot {
    conn: Connection,
    registered: Interest,
}

/// The server: the poll, the listening socket and every open connection.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    connections: Slab<Slot>,
    site: Site,
    config: Config,
    date: DateCache,
    /// Connections that gave up their turn with work left (an upload that
    /// used its budget). With edge-triggered readiness no new event would
    /// wake them, so the loop drives them again itself.
    yielded: Vec<usize>,
}

impl Server {
    /// Binds the listening socket and opens the served folder.
    pub fn bind(config: &Config) -> io::Result<Server> {
        let site = Site::new(&config.root)?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            connections: Slab::new(),
            site,
            config: config.clone(),
            date: DateCache::new(SystemTime::now()),
            yielded: Vec::new(),
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs the loop until `poll` itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut turn = Vec::new();
        loop {
            // Yielded connections must not wait: poll only collects new events.
            let timeout = if self.yielded.is_empty() {
                None
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.date.update(SystemTime::now());
            for event in events.iter() {
                trace!(
                    "event {:?}: readable={} writable={}",
                    event.token(),
                    event.is_readable(),
                    event.is_writable()
                );
                match event.token() {
                    LISTENER => self.accept_all(),
                    Token(key) => self.drive(key),
                }
            }
            std::mem::swap(&mut turn, &mut self.yielded);
            for key in turn.drain(..) {
                self.drive(key);
            }
        }
    }

    /// Accepts every pending connection; each is registered for reading and
    /// will get its first event as soon as its request arrives (or already has).
    fn accept_all(&mut self) {
        loop {
            let (mut socket, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE and friends: the pending connection stays queued;
                    // the next listener event or close gives it another chance.
                    warn!("accept failed: {e}");
                    return;
                }
            };
            if let Err(e) = socket.set_nodelay(true) {
                debug!("set_nodelay failed for {peer}: {e}");
            }
            let entry = self.connections.vacant_entry();
            let key = entry.key();
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut socket, Token(key), Interest::READABLE)
            {
                error!("register failed for {peer}: {e}");
                continue;
            }
            debug!("conn {key} opened from {peer}");
            entry.insert(Slot {
                conn: Connection::new(key, socket, peer),
                registered: Interest::READABLE,
            });
        }
    }

    /// Lets connection `key` run, then records what it waits for, or closes it.
    fn drive(&mut self, key: usize) {
        let Some(slot) = self.connections.get_mut(key) else {
            return; // closed earlier in this same batch of events
        };
        let shared = Shared {
            site: &self.site,
            config: &self.config,
            date: self.date.as_str(),
        };
        match slot.conn.drive(&shared) {
            Next::Wait(interest) if interest == slot.registered => {}
            Next::Wait(interest) => {
                trace!(
                    "conn {key}: interest {:?} -> {:?}",
                    slot.registered,
                    interest
                );
                match self
                    .poll
                    .registry()
                    .reregister(slot.conn.socket(), Token(key), interest)
                {
                    Ok(()) => slot.registered = interest,
                    Err(e) => {
                        warn!("conn {key}: reregister failed: {e}");
                        self.close(key);
                    }
                }
            }
            Next::Yield => {
                if !self.yielded.contains(&key) {
                    self.yielded.push(key);
                }
            }
            Next::Close => self.close(key),
        }
    }

    fn close(&mut self, key: usize) {
        let mut slot = self.connections.remove(key);
        // Dropping the socket closes it, which also removes it from epoll; the
        // explicit deregister keeps mio's bookkeeping honest on every platform.
        let _ = self.poll.registry().deregister(slot.conn.socket());
    }
}
