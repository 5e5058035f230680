//! The first protocol of an HTTPS connection: the TLS handshake, driven
//! until rustls says it is over, then the connection is handed to HTTP.
//!
//! ```text
//!              first byte 0x16            handshake over
//!   ┌─────────┐ ───────────▶ ┌─────────┐ ─────────────────▶ HTTP
//!   │ Sniffing│              │ Talking │
//!   └─────────┘              └─────────┘ ── an alert, a timeout, a close ──▶ closed
//!        │ a letter: plain HTTP on the TLS port
//!        └──────────────────▶ HTTP answers 400 in clear text, then closes
//! ```
//!
//! *Talking* is one loop: write what rustls has for the client (its flight,
//! or an alert), then read and process what the client sent, until the
//! socket blocks in the direction rustls waits on. Time is bounded by
//! `--header-timeout`, like a request head: a client that stops mid-way
//! cannot hold a connection.

use super::client::Client;
use super::tls::Pulled;
use super::{Shared, Turn};
use crate::http::response::{write_generated, CommonHeaders, Extra, Status};
use crate::stats::add;
use log::{debug, trace};
use mio::Interest;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// The first byte of a TLS record that carries a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing read yet: is this TLS at all?
    Sniffing,
    /// rustls and the client exchange handshake messages.
    Talking,
}

/// A TLS handshake in progress.
pub struct Handshake {
    state: State,
    started: Instant,
    /// An answer to send once the handshake is over, instead of reading a
    /// request (a `503` over `--max-connections`).
    refusal: Option<Vec<u8>>,
}

impl Handshake {
    /// A handshake that starts now.
    pub fn new(now: Instant) -> Handshake {
        Handshake {
            state: State::Sniffing,
            started: now,
            refusal: None,
        }
    }

    /// Sends `answer` once secured, then closes.
    pub fn refuse_after(&mut self, answer: Vec<u8>) {
        self.refusal = Some(answer);
    }

    /// The handshake must be over by then.
    pub fn deadline(&self, timeouts: &crate::timer::Timeouts) -> Instant {
        self.started + timeouts.header
    }

    fn move_to(&mut self, id: usize, state: State) {
        trace!("conn {id}: tls {:?} -> {state:?}", self.state);
        self.state = state;
    }

    /// Runs the handshake until it waits on the socket or is over.
    pub fn drive(&mut self, client: &mut Client, shared: &Shared) -> Turn {
        loop {
            if self.state == State::Sniffing {
                match sniff(client) {
                    Sniffed::Tls => self.move_to(client.id, State::Talking),
                    Sniffed::PlainHttp => return self.plain_http(client, shared),
                    Sniffed::Nothing => return Turn::Wait(Interest::READABLE),
                    Sniffed::Gone => return self.failed(client, "closed before a ClientHello"),
                }
            }
            let Some(tls) = client.tls.as_mut() else {
                return Turn::Close("TLS session missing");
            };
            if !tls.is_handshaking() && !tls.failed() {
                // What is left to write (the session tickets) goes out with
                // the first answer, in one write.
                return self.secured(client);
            }
            let had_flight = tls.wants_write();
            match tls.flush(&mut client.socket) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    client.write_blocked = true;
                    return Turn::Wait(Interest::WRITABLE);
                }
                Err(_) => return self.failed(client, "peer gone during the TLS handshake"),
            }
            if tls.failed() {
                // Its alert, if any, is out.
                return self.failed(client, "TLS handshake failed");
            }
            if had_flight && tls.is_handshaking() {
                // The client cannot answer a flight it has only now been
                // sent: wait for its edge rather than make a read that
                // would say `EAGAIN`. (Its bytes raise an edge whenever
                // they come, even before the socket is registered.)
                return Turn::Wait(Interest::READABLE);
            }
            if !tls.is_handshaking() {
                return self.secured(client);
            }
            match tls.pull(client.socket.as_raw_fd()) {
                Ok(Pulled::Bytes) => client.last_activity = client.now,
                Ok(Pulled::Blocked) => return Turn::Wait(Interest::READABLE),
                Ok(Pulled::End) => return self.failed(client, "client left mid-handshake"),
                // An alert rustls queued goes out on the next pass, which
                // then closes: `pull` marks every error failed.
                Err(error) => debug!("conn {}: TLS handshake: {error}", client.id),
            }
        }
    }

    /// The handshake is over: count it, and hand the connection to HTTP.
    /// Plaintext that came behind the client's Finished waits in rustls.
    fn secured(&mut self, client: &mut Client) -> Turn {
        let Some(tls) = client.tls.as_ref() else {
            return Turn::Close("TLS session missing");
        };
        let resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        add(
            if resumed {
                &client.stats.tls_resumed
            } else {
                &client.stats.tls_full
            },
            1,
        );
        debug!(
            "conn {}: TLS {} handshake done in {:?}: {}",
            client.id,
            if resumed { "resumed" } else { "full" },
            client.now.saturating_duration_since(self.started),
            tls.describe()
        );
        // Decrypted bytes may be waiting: HTTP must read before it waits.
        client.input_drained = false;
        Turn::Secured {
            refusal: self.refusal.take(),
        }
    }

    fn failed(&mut self, client: &mut Client, why: &'static str) -> Turn {
        add(&client.stats.tls_failed, 1);
        debug!("conn {}: {why}", client.id);
        Turn::Close(why)
    }

    /// Someone spoke plain HTTP to the TLS port: answer in plain HTTP,
    /// saying where to go, then close.
    fn plain_http(&mut self, client: &mut Client, shared: &Shared) -> Turn {
        add(&client.stats.tls_failed, 1);
        client.stats.response(Status::BAD_REQUEST.code());
        debug!("conn {}: plain HTTP on the TLS port", client.id);
        client.tls = None;
        let mut answer = Vec::new();
        write_generated(
            &mut answer,
            Status::BAD_REQUEST,
            "this port speaks HTTPS: use https:// in the URL",
            Extra::None,
            shared.date,
            CommonHeaders {
                keep_alive: false,
                http10: false,
                cors: false,
            },
            false,
        );
        Turn::Secured {
            refusal: Some(answer),
        }
    }

    /// A timeout before the handshake finished.
    pub fn on_timeout(&mut self, client: &mut Client) -> Turn {
        self.failed(client, "TLS handshake timed out")
    }
}

enum Sniffed {
    Tls,
    PlainHttp,
    Nothing,
    Gone,
}

/// Peeks at the first byte the client sent: a TLS handshake record, or the
/// first letter of an HTTP method. Anything else goes to rustls, which
/// refuses it with an alert.
fn sniff(client: &mut Client) -> Sniffed {
    let mut first = [0u8; 1];
    match client.socket.peek(&mut first) {
        Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => Sniffed::Tls,
        Ok(1) if first[0].is_ascii_uppercase() => Sniffed::PlainHttp,
        Ok(0) => Sniffed::Gone,
        Ok(_) => Sniffed::Tls,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            Sniffed::Nothing
        }
        Err(_) => Sniffed::Gone,
    }
}
