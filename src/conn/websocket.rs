//! A WebSocket (RFC 6455) that rill speaks itself, after answering the
//! handshake with `101`: the connection stays open both ways and carries
//! messages, framed and unframed by the sans-IO codec
//! ([`crate::http::websocket`]). Two endpoints use it: `/.rill/live`, where
//! the loop pushes change messages to a page (`--live-reload`), and
//! `/.rill/echo`, which sends every message back (`--stats`).
//!
//! ```text
//!   101 sent ──▶ Open ──peer's Close, ours queued; or a violation──▶ Closed ──FIN both ways──▶ closed
//!                 │                                                    ▲
//!                 └── shutdown: our Close (1001) queued ──▶ Closing ───┘ peer's Close
//! ```
//!
//! - **Open**: frames are decoded as they arrive (any split of the bytes);
//!   pings are answered, data messages echoed (echo) or ignored (live).
//! - **Closing**: rill sent its Close and waits for the peer's; what else
//!   arrives is dropped.
//! - **Closed**: the Closes are exchanged, or the peer broke the protocol
//!   and was sent a Close saying how (1002, 1007, 1009: "failing" the
//!   connection). Once the output is sent rill shuts its side first (the
//!   server closes first, RFC 6455 §7.1.1) and reads until the peer's FIN,
//!   so that unread bytes never turn the close into a reset that could
//!   destroy the Close frame before the peer reads it.
//!
//! Closing and Closed end after [`CLOSE_TIMEOUT`] whatever the peer does.
//!
//! Bounded both ways: the decoder holds at most one message; the echo stops
//! reading while more than [`ECHO_BACKLOG`] bytes wait to go out (the peer's
//! TCP window then fills: backpressure), and a page that lets more than
//! [`LIVE_BACKLOG`] pile up is dropped rather than buffered. A peer silent
//! for [`PING_AFTER`] gets a ping; one still silent that long after is gone.
//! WebSockets are not subject to the HTTP idle timeout.

use super::client::{Client, Stall};
use super::Turn;
use crate::http::websocket::{
    write_close, write_frame, Decoder, Message, Opcode, CLOSE_GOING_AWAY,
};
use crate::route::Endpoint;
use crate::stats::{add, Phase, Stats};
use log::{debug, trace};
use mio::Interest;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Most WebSockets open at once; more handshakes get `503`.
pub const MAX_WEBSOCKETS: u64 = 256;
/// Most of them on the echo, which may hold a 16 MiB message and its answer
/// each: 16 bound that to about half a GiB.
pub const MAX_ECHO_SOCKETS: u64 = 16;
/// A peer silent this long is pinged; silent as long again, it is dropped.
pub const PING_AFTER: Duration = Duration::from_secs(30);
/// How long rill waits for the peer's Close after sending its own.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest echo message: 16 MiB, what Autobahn's limits section sends.
pub const ECHO_MAX_MESSAGE: usize = 16 << 20;
/// A page sends nothing but control frames; anything bigger is refused.
pub const LIVE_MAX_MESSAGE: usize = 4 << 10;
/// The echo reads no more while this much output is unsent.
pub const ECHO_BACKLOG: usize = 1 << 20;
/// A page with this much unsent output is not reading: it is dropped.
pub const LIVE_BACKLOG: usize = 64 << 10;
/// How many bytes one `recv` asks for.
const READ_CHUNK: usize = 16 << 10;

/// Where a WebSocket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// Our Close is queued or sent; waiting for the peer's since then.
    Closing {
        since: Instant,
    },
    /// Nothing more to say: send what is queued, shut our side, wait for
    /// the peer's FIN. `shut` once our FIN is out.
    Closed {
        since: Instant,
        shut: bool,
    },
}

impl State {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            State::Open => "open",
            State::Closing { .. } => "closing",
            State::Closed { .. } => "closed",
        }
    }
}

/// A WebSocket connection's protocol state.
pub struct WebSocket {
    endpoint: Endpoint,
    state: State,
    decoder: Decoder,
    /// When the peer last sent anything, or when rill pinged it.
    quiet_since: Instant,
    /// A ping is out and nothing came back since.
    pinged: bool,
    /// Set when the connection must end at its next turn.
    drop_reason: Option<&'static str>,
    /// An echo counts itself in the stats' gauge while it lives.
    echo_gauge: Option<Rc<Stats>>,
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        if let Some(stats) = &self.echo_gauge {
            stats
                .echo_sockets
                .set(stats.echo_sockets.get().saturating_sub(1));
        }
    }
}

impl WebSocket {
    /// A WebSocket whose `101` is queued on the client's output.
    pub fn new(endpoint: Endpoint, now: Instant, stats: &Rc<Stats>) -> WebSocket {
        let max_message = match endpoint {
            Endpoint::Echo => ECHO_MAX_MESSAGE,
            Endpoint::Live => LIVE_MAX_MESSAGE,
        };
        let echo_gauge = (endpoint == Endpoint::Echo).then(|| {
            add(&stats.echo_sockets, 1);
            Rc::clone(stats)
        });
        WebSocket {
            endpoint,
            state: State::Open,
            decoder: Decoder::new(max_message),
            quiet_since: now,
            pinged: false,
            drop_reason: None,
            echo_gauge,
        }
    }

    /// Whether the loop should push change messages here.
    pub fn wants_changes(&self) -> bool {
        self.endpoint == Endpoint::Live && self.state == State::Open
    }

    /// The phase the counters show.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Open => Phase::WebSocket,
            State::Closing { .. } | State::Closed { .. } => Phase::WebSocketClosing,
        }
    }

    /// When the current wait ends.
    pub fn deadline(&self) -> Instant {
        match self.state {
            State::Open => self.quiet_since + PING_AFTER,
            State::Closing { since } | State::Closed { since, .. } => since + CLOSE_TIMEOUT,
        }
    }

    /// The deadline passed: ping a quiet peer, drop a silent one.
    pub fn on_timeout(&mut self, client: &mut Client) -> Turn {
        match self.state {
            State::Open if !self.pinged => {
                trace!("conn {}: websocket quiet, pinging", client.id);
                write_frame(&mut client.output, Opcode::Ping, b"rill");
                self.pinged = true;
                self.quiet_since = client.now;
                self.drive(client)
            }
            State::Open => Turn::Close("websocket peer silent"),
            State::Closing { .. } | State::Closed { .. } => {
                Turn::Close("websocket close timed out")
            }
        }
    }

    /// Queues a message from the loop (a live-reload change, as a frame).
    /// A page that has not read what it was sent before is dropped.
    pub fn push(&mut self, client: &mut Client, frame: &[u8]) {
        if self.state != State::Open {
            return;
        }
        if client.unsent() + frame.len() > LIVE_BACKLOG {
            self.drop_reason = Some("websocket peer not reading");
            return;
        }
        client.compact_output();
        client.output.extend_from_slice(frame);
        add(&client.stats.ws_messages_out, 1);
    }

    /// The server is shutting down: say so with a Close (1001), then wait
    /// for the peer's like any close.
    pub fn begin_shutdown(&mut self, client: &mut Client) {
        if self.state == State::Open {
            self.close(client, CLOSE_GOING_AWAY, "server shutting down");
        }
    }

    /// Runs until the socket blocks or the connection is over.
    pub fn drive(&mut self, client: &mut Client) -> Turn {
        loop {
            if let Some(why) = self.drop_reason {
                return Turn::Close(why);
            }
            if client.has_unsent() {
                match client.write_output(false) {
                    Ok(()) => client.clear_sent_output(),
                    Err(Stall::Gone(why)) => return Turn::Close(why),
                    Err(Stall::Blocked) => {}
                }
            }
            if let State::Closed { since, shut } = self.state {
                if client.has_unsent() {
                    return Turn::Wait(Interest::WRITABLE);
                }
                if !shut {
                    client.shutdown_write();
                    self.move_to(client.id, State::Closed { since, shut: true });
                }
                return self.drain_until_fin(client);
            }
            let backlog = client.unsent();
            let wait_to_write = if client.has_unsent() {
                Some(Interest::WRITABLE)
            } else {
                None
            };
            match self.endpoint {
                Endpoint::Echo if backlog > ECHO_BACKLOG => return Turn::Wait(Interest::WRITABLE),
                Endpoint::Live if backlog > LIVE_BACKLOG => {
                    return Turn::Close("websocket peer not reading")
                }
                _ => {}
            }
            let readable = Interest::READABLE;
            let interest = wait_to_write.map_or(readable, |w| readable.add(w));
            if client.input.is_empty() && client.input_drained && !client.peer_finished_writing {
                return Turn::Wait(interest);
            }
            if client.input.is_empty() {
                match client.read_input(READ_CHUNK, READ_CHUNK) {
                    Ok(0) => {
                        return Turn::Close(match self.state {
                            State::Open => "websocket peer left without a Close",
                            _ => "websocket closed",
                        })
                    }
                    Ok(_) => {
                        self.quiet_since = client.now;
                        self.pinged = false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Turn::Wait(interest),
                    Err(_) => return Turn::Close("read error"),
                }
            }
            self.decode_input(client);
        }
    }

    /// Decodes every buffered byte and acts on each message.
    fn decode_input(&mut self, client: &mut Client) {
        let input = std::mem::take(&mut client.input);
        let mut at = 0;
        // Messages borrow the decoder, so what they ask for is queued here
        // and carried out once the borrow ends.
        let mut close_with: Option<(u16, &'static str)> = None;
        while at < input.len() {
            let (used, decoded) = self.decoder.decode(&input[at..]);
            at += used;
            let message = match decoded {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(violation) => {
                    debug!(
                        "conn {}: websocket violation {}: {}",
                        client.id, violation.code, violation.reason
                    );
                    close_with = Some((violation.code, violation.reason));
                    at = input.len();
                    break;
                }
            };
            if self.state != State::Open {
                // Closing: only the peer's Close matters now.
                if let Message::Close { .. } = message {
                    self.move_to(
                        client.id,
                        State::Closed {
                            since: client.now,
                            shut: false,
                        },
                    );
                }
                continue;
            }
            match message {
                Message::Text(text) => {
                    add(&client.stats.ws_messages_in, 1);
                    if self.endpoint == Endpoint::Echo {
                        write_frame(&mut client.output, Opcode::Text, text.as_bytes());
                        add(&client.stats.ws_messages_out, 1);
                    }
                }
                Message::Binary(bytes) => {
                    add(&client.stats.ws_messages_in, 1);
                    if self.endpoint == Endpoint::Echo {
                        write_frame(&mut client.output, Opcode::Binary, bytes);
                        add(&client.stats.ws_messages_out, 1);
                    }
                }
                Message::Ping(payload) => write_frame(&mut client.output, Opcode::Pong, payload),
                Message::Pong(_) => {}
                Message::Close { code, reason } => {
                    trace!("conn {}: websocket Close {code:?} {reason:?}", client.id);
                    // Answered with the same code (RFC 6455 §5.5.1), or an
                    // empty Close for an empty one.
                    match code {
                        Some(code) => write_close(&mut client.output, code, ""),
                        None => write_frame(&mut client.output, Opcode::Close, b""),
                    }
                    self.move_to(
                        client.id,
                        State::Closed {
                            since: client.now,
                            shut: false,
                        },
                    );
                }
            }
        }
        let mut input = input;
        input.drain(..at);
        client.input = input;
        if let Some((code, reason)) = close_with {
            // The peer broke the protocol: tell it how, and fail the
            // connection (RFC 6455 §7.1.7) without waiting for its Close.
            if self.state == State::Open {
                client.compact_output();
                write_close(&mut client.output, code, reason);
            }
            self.move_to(
                client.id,
                State::Closed {
                    since: client.now,
                    shut: false,
                },
            );
        }
    }

    /// Every change of state goes through here, so `--log-level trace`
    /// shows each one.
    fn move_to(&mut self, id: usize, next: State) {
        if self.state.name() != next.name() {
            trace!(
                "conn {id}: websocket {} -> {}",
                self.state.name(),
                next.name()
            );
        }
        self.state = next;
    }

    /// Closed, our FIN sent: read and drop until the peer's FIN.
    fn drain_until_fin(&mut self, client: &mut Client) -> Turn {
        loop {
            client.input.clear();
            if client.input_drained && !client.peer_finished_writing {
                return Turn::Wait(Interest::READABLE);
            }
            match client.read_input(READ_CHUNK, READ_CHUNK) {
                Ok(0) => return Turn::Close("websocket closed"),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Turn::Wait(Interest::READABLE)
                }
                Err(_) => return Turn::Close("websocket closed"),
            }
        }
    }

    /// Queues rill's Close and starts waiting for the peer's.
    fn close(&mut self, client: &mut Client, code: u16, reason: &str) {
        client.compact_output();
        write_close(&mut client.output, code, reason);
        self.move_to(client.id, State::Closing { since: client.now });
    }
}
