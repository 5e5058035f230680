//! A pipe between two sockets, filled and drained with `splice(2)`, for the
//! body bytes a proxied answer passes on unchanged.
//!
//! Relayed through rill's memory, a body is copied twice: `recv` copies the
//! backend's bytes out of the kernel and `send` copies them back in. Under
//! S9 (1 MiB answers) those two copies were 45 % of rill's CPU. Spliced,
//! the kernel moves the pages themselves, socket → pipe → socket, and rill
//! only counts. The pipe is the bounded buffer of that direction (64 KiB,
//! Linux's default pipe size), so backpressure works as with the buffer it
//! replaces: while the client does not drain the pipe, the backend is not
//! read.
//!
//! Only a `Content-Length` body can go this way (its bytes leave as they
//! came) and only to a plain-HTTP client (TLS must encrypt them in rill).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What a pipe holds at most: Linux's default pipe size.
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// A non-blocking pipe and how many bytes wait in it.
#[derive(Debug)]
pub struct Pipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    held: usize,
}

impl Pipe {
    /// A new, empty pipe (two descriptors, closed when it is dropped).
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds` on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just opened and are owned by no one.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Pipe {
            read_end,
            write_end,
            held: 0,
        })
    }

    /// Bytes in the pipe, not yet passed on.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Room left in the pipe.
    pub fn room(&self) -> usize {
        PIPE_CAPACITY - self.held
    }

    /// Moves up to `max` bytes from the socket `from` into the pipe.
    /// `Ok(0)` is the socket's end of stream; `WouldBlock` an empty socket.
    pub fn fill_from(&mut self, from: RawFd, max: usize) -> io::Result<usize> {
        let len = max.min(self.room());
        if len == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let moved = splice(from, self.write_end.as_raw_fd(), len)?;
        self.held += moved;
        Ok(moved)
    }

    /// Moves what the pipe holds into the socket `to`, as much as it takes.
    /// `WouldBlock` is a full socket.
    pub fn drain_into(&mut self, to: RawFd) -> io::Result<usize> {
        if self.held == 0 {
            return Ok(0);
        }
        let moved = splice(self.read_end.as_raw_fd(), to, self.held)?;
        self.held -= moved;
        Ok(moved)
    }
}

/// One `splice(2)` call, retried on `EINTR`.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: plain descriptors and no offsets (both ends are streams).
        let moved = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if moved >= 0 {
            return Ok(moved as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        (near, far)
    }

    #[test]
    fn bytes_pass_from_socket_to_socket_in_order_and_the_end_shows() {
        let (mut backend, from) = socket_pair();
        let (to, mut client) = socket_pair();
        from.set_nonblocking(true).unwrap();
        to.set_nonblocking(true).unwrap();
        let mut pipe = Pipe::new().unwrap();
        let e = pipe.fill_from(from.as_raw_fd(), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "nothing sent yet");
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let body = body.clone();
            std::thread::spawn(move || {
                backend.write_all(&body).unwrap();
                drop(backend);
            })
        };
        let mut got = Vec::new();
        let mut ended = false;
        while !ended || pipe.held() > 0 {
            if !ended && pipe.room() > 0 {
                match pipe.fill_from(from.as_raw_fd(), PIPE_CAPACITY) {
                    Ok(0) => ended = true,
                    Ok(_) => {}
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
                }
            }
            if let Err(e) = pipe.drain_into(to.as_raw_fd()) {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            }
            let mut buffer = [0u8; 65536];
            client.set_nonblocking(true).unwrap();
            while let Ok(n @ 1..) = client.read(&mut buffer) {
                got.extend_from_slice(&buffer[..n]);
            }
        }
        writer.join().unwrap();
        drop(to);
        client.set_nonblocking(false).unwrap();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, body);
    }
}
