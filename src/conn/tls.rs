//! The TLS layer of an HTTPS connection: rustls between the client's socket
//! and whichever protocol the connection speaks.
//!
//! rustls does no I/O of its own. Ciphertext goes in with `read_tls` (here
//! straight from the socket, one `recv`), `process_new_packets` decrypts it,
//! and the plaintext waits in rustls until [`TlsLayer::read`] copies it into
//! the client's input. The other way, [`TlsLayer::queue`] hands plaintext to
//! rustls, which cuts it into records and encrypts them, and
//! [`TlsLayer::flush`] writes the records with `writev` until the socket says
//! `WouldBlock`. Each direction is bounded: rustls holds at most
//! [`SEND_LIMIT`] bytes of records not yet written (so a slow reader pushes
//! back exactly as the socket does on a plain connection), and decrypts at
//! most one record ahead of what the protocol has taken.
//!
//! [`crate::conn::client::Client`] calls this layer from its `read_input`
//! and `write_output`, so every protocol above — HTTP, proxy, tunnel,
//! WebSocket — runs unchanged over TLS. The handshake before them is its own
//! protocol, [`crate::conn::handshake`].

use log::trace;
use rustls::{HandshakeKind, ServerConfig, ServerConnection};
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::sync::Arc;

/// Most bytes of encrypted records rustls keeps waiting for the socket.
/// 64 KiB is four full records: enough for one `writev` to fill a socket
/// buffer's worth, small enough for thousands of connections.
pub const SEND_LIMIT: usize = 64 * 1024;

/// One TLS session on one socket.
pub struct TlsLayer {
    session: ServerConnection,
    /// The last `recv` returned less than it asked for: the socket was
    /// empty then.
    socket_short_read: bool,
    /// rustls reported an error; its alert is queued, the connection ends.
    failed: bool,
    /// Our side was ended with a `close_notify`.
    closed_notify: bool,
    /// The client's `close_notify` has been processed.
    peer_closed: bool,
}

/// What one pull from the socket did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// Ciphertext arrived and was processed.
    Bytes,
    /// The socket has nothing now.
    Blocked,
    /// The client closed its side.
    End,
}

impl TlsLayer {
    /// A session that has not seen a ClientHello yet.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsLayer, rustls::Error> {
        let mut session = ServerConnection::new(config)?;
        session.set_buffer_limit(Some(SEND_LIMIT));
        Ok(TlsLayer {
            session,
            socket_short_read: false,
            failed: false,
            closed_notify: false,
            peer_closed: false,
        })
    }

    /// Whether the session is TLS 1.3, where what rustls still has to write
    /// once the handshake is over is only post-handshake messages (the
    /// session tickets). In TLS 1.2 it is rill's own Finished, which the
    /// client waits for before it sends a request.
    pub fn is_tls13(&self) -> bool {
        self.session.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Whether encrypted bytes (records, a handshake flight, an alert) wait
    /// for the socket.
    pub fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Whether the session failed (bad records, a refused handshake).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// How the handshake went, once it is over.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.session.handshake_kind()
    }

    /// The protocol version and cipher suite agreed, for the log.
    pub fn describe(&self) -> String {
        format!(
            "{:?} {:?} alpn={:?}",
            self.session.protocol_version(),
            self.session.negotiated_cipher_suite().map(|s| s.suite()),
            self.session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        )
    }

    /// Reads ciphertext from the socket once and processes it. An error
    /// from rustls leaves its alert queued for [`TlsLayer::flush`].
    pub fn pull(&mut self, fd: RawFd) -> io::Result<Pulled> {
        let mut socket = Recv {
            fd,
            short: &mut self.socket_short_read,
        };
        let got = loop {
            match self.session.read_tls(&mut socket) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pulled::Blocked),
                Err(e) => {
                    // A dead socket, or rustls refusing more (a handshake
                    // message bigger than it buffers: it would refuse again
                    // on every call, reading nothing). Either way: over.
                    self.failed = true;
                    return Err(e);
                }
                Ok(got) => break got,
            }
        };
        match self.session.process_new_packets() {
            Ok(state) => self.peer_closed = state.peer_has_closed(),
            Err(error) => {
                self.failed = true;
                trace!("tls: {error}");
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
        Ok(if got == 0 { Pulled::End } else { Pulled::Bytes })
    }

    /// Copies decrypted bytes into `buffer`, pulling from the socket until
    /// some arrive. `Ok(0)` is the end of the client's stream (its
    /// `close_notify`, or a bare FIN: requests carry their own framing, so
    /// a truncation cannot pass for a whole request).
    pub fn read(&mut self, fd: RawFd, buffer: &mut [u8]) -> io::Result<usize> {
        // Only a `recv` made by this read says anything about the socket
        // now: an older one may predate bytes whose edge was consumed since.
        self.socket_short_read = false;
        loop {
            match self.session.reader().read(buffer) {
                Ok(got) => return Ok(got),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.pull(fd)? {
                Pulled::Bytes | Pulled::End => {}
                Pulled::Blocked => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    /// Whether a read now would find nothing, given that the last read
    /// filled less than its buffer (so rustls holds no more plaintext: its
    /// reader copies until the buffer is full or it has none): that read's
    /// `recv` found the socket empty, and the client has not said
    /// `close_notify` (the next read must report that end, or a client that
    /// sent it with its request would wait for rill's forever).
    pub fn drained(&self) -> bool {
        self.socket_short_read && !self.peer_closed
    }

    /// Hands plaintext to rustls, which encrypts it into records; returns
    /// how much it took (less than all once [`SEND_LIMIT`] is reached).
    pub fn queue(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut self.session.writer(), plaintext)
    }

    /// Writes encrypted bytes to the socket until none are left
    /// (`Ok`) or the socket is full (`WouldBlock`).
    pub fn flush(&mut self, socket: &mut mio::net::TcpStream) -> io::Result<()> {
        while self.session.wants_write() {
            match self.session.write_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues the `close_notify` alert that ends our side cleanly.
    pub fn close_notify(&mut self) {
        if !self.closed_notify {
            self.closed_notify = true;
            self.session.send_close_notify();
        }
    }
}

/// The socket as rustls reads it: `recv(2)` on the descriptor, noting
/// whether the read was short.
struct Recv<'a> {
    fd: RawFd,
    short: &'a mut bool,
}

impl Read for Recv<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buffer` is valid for writes of its length.
        let got = unsafe { libc::recv(self.fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if got < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                *self.short = true;
            }
            return Err(error);
        }
        *self.short = (got as usize) < buffer.len();
        Ok(got as usize)
    }
}
