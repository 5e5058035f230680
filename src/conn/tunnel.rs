//! After a backend accepted an upgrade (`101 Switching Protocols`, a
//! WebSocket handshake): the connection is a byte tunnel, and rill moves
//! bytes both ways without looking at them.
//!
//! ```text
//!   client ──recv──▶ [to_backend] ──send──▶ backend
//!   client ◀──send── [client.output] ◀──recv── backend
//! ```
//!
//! Each direction has one bounded buffer and runs on its own: a side is read
//! only while the buffer towards the other side has room, so a slow reader
//! slows its writer, through TCP, and nothing grows. When one side finishes
//! sending (its FIN arrives), the other side's write half is shut once the
//! bytes before it are delivered (`shutdown(Write)`), so a half-close
//! passes through; the tunnel ends when both directions have ended, on an
//! error, or after `--tunnel-timeout` without a byte either way.
//!
//! The `101`'s access-log line waits for the end of the tunnel, so that it
//! can say how long the tunnel lasted and how many bytes went each way.

use super::client::{Client, Stall};
use super::{Shared, Turn};
use crate::timer::Timeouts;
use crate::upstream::UpstreamConn;
use log::trace;
use mio::Interest;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Most bytes buffered in either direction.
const TUNNEL_BUFFER: usize = 64 * 1024;
/// Most bytes moved per turn of the loop, both directions together.
const BUDGET_PER_TURN: usize = 512 << 10;

/// One direction's end: still open, or its FIN has been passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    Open,
    /// The sender finished; the shutdown is passed on once the buffer is
    /// delivered.
    Finishing,
    /// The receiver's write half is shut.
    Closed,
}

/// A tunnel between the client and a backend.
pub struct Tunnel {
    upstream: Option<UpstreamConn>,
    upstream_readable: bool,
    upstream_writable: bool,
    /// The backend's FIN has arrived: read on until a read returns 0.
    upstream_closed: bool,
    /// Client bytes on their way to the backend.
    to_backend: Vec<u8>,
    to_backend_sent: usize,
    /// Client → backend.
    upward: Half,
    /// Backend → client.
    downward: Half,
    last_activity: Instant,
    /// Bytes sent to the backend and received from it, for the access log.
    bytes_up: u64,
    bytes_down: u64,
}

impl Tunnel {
    /// A tunnel over `upstream`, with what the proxy still had queued for it.
    pub fn new(
        upstream: UpstreamConn,
        readable: bool,
        writable: bool,
        closed: bool,
        to_backend: Vec<u8>,
        to_backend_sent: usize,
        now: Instant,
    ) -> Tunnel {
        Tunnel {
            upstream: Some(upstream),
            upstream_readable: readable,
            upstream_writable: writable,
            upstream_closed: closed,
            to_backend,
            to_backend_sent,
            upward: Half::Open,
            downward: Half::Open,
            last_activity: now,
            bytes_up: 0,
            bytes_down: 0,
        }
    }

    /// Counts the bytes the backend sent behind its `101` (already queued
    /// for the client) as the tunnel's.
    pub fn with_bytes_behind_the_101(mut self, bytes: usize) -> Tunnel {
        self.bytes_down += bytes as u64;
        self
    }

    /// The loop saw an event for the backend socket.
    pub fn upstream_event(&mut self, readable: bool, writable: bool, closed: bool) {
        self.upstream_readable |= readable;
        self.upstream_writable |= writable;
        self.upstream_closed |= closed;
    }

    /// Takes the backend connection out (it is never pooled).
    pub fn take_upstream(&mut self) -> Option<UpstreamConn> {
        self.upstream.take()
    }

    /// A tunnel is closed after this long without a byte either way.
    pub fn deadline(&self, timeouts: &Timeouts) -> Instant {
        self.last_activity + timeouts.tunnel
    }

    /// Moves bytes both ways until neither side can move.
    pub fn drive(&mut self, client: &mut Client, _shared: &Shared) -> Turn {
        let Some(upstream) = self.upstream.as_ref() else {
            return Turn::Close("tunnel lost its backend");
        };
        let fd = upstream.socket.as_raw_fd();
        let mut budget = BUDGET_PER_TURN;
        loop {
            let mut moved = 0;
            match self.upward_step(client, fd) {
                Ok(n) => moved += n,
                Err(why) => return Turn::Close(why),
            }
            match self.downward_step(client, fd) {
                Ok(n) => moved += n,
                Err(why) => return Turn::Close(why),
            }
            if moved > 0 {
                self.last_activity = client.now;
            }
            if self.upward == Half::Closed && self.downward == Half::Closed {
                // A clean end: the line is written now, without the
                // "aborted" that closing would give it.
                self.log_totals(client);
                client.log_pending(None);
                return Turn::Close("tunnel closed by both sides");
            }
            if moved == 0 {
                let interest = if client.write_blocked {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                return Turn::Wait(interest);
            }
            budget = budget.saturating_sub(moved);
            if budget == 0 {
                return Turn::Yield;
            }
        }
    }

    /// Puts the tunnel's byte counts (backend → client as the body size,
    /// client → backend as `tunnel_up=`) into the `101`'s access-log line,
    /// which the connection's close then writes.
    pub fn log_totals(&self, client: &mut Client) {
        client.log_body_bytes(self.bytes_down);
        client.log_tunnelled(self.bytes_up);
    }

    /// Client → backend: read the client while there is room, send what is
    /// buffered, pass a FIN on. Returns the bytes moved.
    fn upward_step(&mut self, client: &mut Client, fd: i32) -> Result<usize, &'static str> {
        let mut moved = 0;
        // Bytes that came with (or behind) the upgrade request come first.
        if !client.input.is_empty() && self.to_backend.len() < TUNNEL_BUFFER {
            let take = client
                .input
                .len()
                .min(TUNNEL_BUFFER - self.to_backend.len());
            self.to_backend.extend_from_slice(&client.input[..take]);
            client.input.drain(..take);
        }
        if self.upward == Half::Open
            && self.to_backend.len() < TUNNEL_BUFFER
            && (!client.input_drained || client.peer_finished_writing)
        {
            match client.read_input(TUNNEL_BUFFER - self.to_backend.len(), TUNNEL_BUFFER) {
                Ok(0) => {
                    trace!("conn {}: tunnel: the client finished sending", client.id);
                    self.upward = Half::Finishing;
                }
                Ok(n) => {
                    moved += n;
                    self.to_backend.extend_from_slice(&client.input);
                    client.input.clear();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err("client read failed"),
            }
        }
        if self.to_backend_sent < self.to_backend.len() && self.upstream_writable {
            let pending = &self.to_backend[self.to_backend_sent..];
            // SAFETY: `pending` is a valid slice for the length given.
            let sent = unsafe {
                libc::send(
                    fd,
                    pending.as_ptr().cast(),
                    pending.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if sent >= 0 {
                self.to_backend_sent += sent as usize;
                self.bytes_up += sent as u64;
                moved += sent as usize;
            } else {
                match io::Error::last_os_error().kind() {
                    io::ErrorKind::WouldBlock => self.upstream_writable = false,
                    io::ErrorKind::Interrupted => {}
                    _ => return Err("backend gone"),
                }
            }
        }
        if self.to_backend_sent == self.to_backend.len() {
            self.to_backend.clear();
            self.to_backend_sent = 0;
            if self.upward == Half::Finishing {
                if let Some(upstream) = &self.upstream {
                    let _ = upstream.socket.shutdown(Shutdown::Write);
                }
                self.upward = Half::Closed;
            }
        }
        Ok(moved)
    }

    /// Backend → client: read the backend while the client's output has
    /// room, send it, pass a FIN on. Returns the bytes moved.
    fn downward_step(&mut self, client: &mut Client, fd: i32) -> Result<usize, &'static str> {
        let mut moved = 0;
        if self.downward == Half::Open && self.upstream_readable && client.unsent() < TUNNEL_BUFFER
        {
            client.compact_output();
            let want = TUNNEL_BUFFER - client.unsent();
            client.output.reserve(want);
            let spare = client.output.spare_capacity_mut();
            // SAFETY: `spare` has at least `want` writable bytes; recv(2)
            // writes at most `want` there and reports how many.
            let got = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), want, 0) };
            if got > 0 {
                let got = got as usize;
                // SAFETY: the kernel initialised the first `got` spare bytes.
                unsafe { client.output.set_len(client.output.len() + got) };
                if got < want && !self.upstream_closed {
                    self.upstream_readable = false;
                }
                self.bytes_down += got as u64;
                moved += got;
            } else if got == 0 {
                trace!("conn {}: tunnel: the backend finished sending", client.id);
                self.downward = Half::Finishing;
            } else {
                match io::Error::last_os_error().kind() {
                    io::ErrorKind::WouldBlock => self.upstream_readable = false,
                    io::ErrorKind::Interrupted => {}
                    _ => return Err("backend gone"),
                }
            }
        }
        if client.has_unsent() && !client.write_blocked {
            let before = client.output_sent;
            match client.write_output(false) {
                Ok(()) => {}
                Err(Stall::Blocked) => client.write_blocked = true,
                Err(Stall::Gone(why)) => return Err(why),
            }
            moved += client.output_sent - before;
        }
        client.clear_sent_output();
        if !client.has_unsent() && self.downward == Half::Finishing {
            client.shutdown_write();
            self.downward = Half::Closed;
        }
        Ok(moved)
    }
}
