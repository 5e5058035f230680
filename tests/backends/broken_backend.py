#!/usr/bin/env python3
"""A deliberately broken HTTP backend for tests/routes.rs (stdlib only).

`python3 broken_backend.py [PORT]` listens on 127.0.0.1 (port 0 by default),
prints `listening on PORT` as its first line, and answers each request, by the
last segment of its path, with one bad answer. Every connection has its own
thread. The answers that are well framed (/ok, /dated, /trailing-junk,
/204-body, /head-body) keep the connection open for the next request, so a
proxy that reuses it after junk would read the junk as its next answer.

  /ok               200, Content-Length 2, `ok` (and no Date field)
  /dated            200, Content-Length 5, `dated`, Date of 6 Nov 1994
  /cl-te            Content-Length together with Transfer-Encoding: chunked
  /double-cl        two differing Content-Length fields
  /bad-cl           Content-Length: +5
  /crlf             a bare CR inside a header value (response splitting)
  /nul              a NUL inside a header value
  /obs-fold         a header continued on the next line (obs-fold)
  /huge-head        64 KiB of header fields
  /garbage          not HTTP at all
  /101-no-upgrade   101 Switching Protocols to h2c, whatever was asked
  /mid-body-close   Content-Length: 1000, 100 bytes, then close
  /mid-chunk-close  chunked, one chunk, then close without the last chunk
  /trailing-junk    a complete answer followed by a second, smuggled one
  /204-body         204 followed by body bytes
  /head-body        Content-Length 5 and `hello`, even to HEAD
  /silent           reads the request, never answers
  /http10-close     HTTP/1.0, no length: the body ends at the close
"""

import socket
import sys
import threading
import time

SMUGGLED = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: yes\r\n\r\nSMUGGLED"
)
HTTP10_BODY = [b"close-delimited ", b"body ", b"from HTTP/1.0\n"]


def read_head(conn, buf):
    """Reads up to the blank line; returns (head, rest) or (None, buf)."""
    while b"\r\n\r\n" not in buf:
        try:
            data = conn.recv(65536)
        except OSError:
            return None, buf
        if not data:
            return None, buf
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def skip_body(conn, head, rest):
    """Discards the request body (Content-Length or chunked); returns rest."""
    lines = head.split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if "content-length" in fields:
        need = int(fields["content-length"])
        while len(rest) < need:
            data = conn.recv(65536)
            if not data:
                return b""
            rest += data
        return rest[need:]
    if "chunked" in fields.get("transfer-encoding", "").lower():
        while b"0\r\n\r\n" not in rest:
            data = conn.recv(65536)
            if not data:
                return b""
            rest += data
        return rest.split(b"0\r\n\r\n", 1)[1]
    return rest


def answer(conn, method, path):
    """Sends the answer for path; returns whether to keep the connection."""
    name = path.split("?", 1)[0].rsplit("/", 1)[-1]
    send = conn.sendall
    if name == "ok":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True
    if name == "dated":
        # A Date no clock reads now: a proxy that relays it is told from
        # one that writes its own.
        send(
            b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
            b"Content-Length: 5\r\n\r\ndated"
        )
        return True
    if name == "cl-te":
        send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
    elif name == "double-cl":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    elif name == "bad-cl":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello")
    elif name == "crlf":
        send(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            b"X-Split: a\rSet-Cookie: evil=1\r\n\r\nok"
        )
    elif name == "nul":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Nul: a\0b\r\n\r\nok")
    elif name == "obs-fold":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Folded: a\r\n b\r\n\r\nok")
    elif name == "huge-head":
        fields = b"".join(b"X-Filler-%04d: %s\r\n" % (i, b"f" * 100) for i in range(600))
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + fields + b"\r\nok")
    elif name == "garbage":
        send(b"SSH-2.0-OpenSSH_9.2\r\nthis is not HTTP\r\n\r\n")
    elif name == "101-no-upgrade":
        send(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
            b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        )
        time.sleep(0.5)
    elif name == "mid-body-close":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        time.sleep(0.2)
    elif name == "mid-chunk-close":
        send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"y" * 100 + b"\r\n")
        time.sleep(0.2)
    elif name == "trailing-junk":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + SMUGGLED)
        return True
    elif name == "204-body":
        send(b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED)
        return True
    elif name == "head-body":
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        if method == "HEAD":
            send(SMUGGLED)
        return True
    elif name == "silent":
        conn.settimeout(120)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
    elif name == "http10-close":
        send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for piece in HTTP10_BODY:
            time.sleep(0.02)
            send(piece)
    else:
        send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nno such 1\n")
        return True
    return False


def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            head, buf = read_head(conn, buf)
            if head is None:
                return
            parts = head.split("\r\n", 1)[0].split(" ")
            if len(parts) < 2:
                return
            method, path = parts[0], parts[1]
            buf = skip_body(conn, head, buf)
            if not answer(conn, method, path):
                return
    except OSError:
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
