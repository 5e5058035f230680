#!/usr/bin/env python3
"""Memory per idle TLS connection: open N HTTPS keep-alive connections to a
server, make one GET on each, leave them idle, and report how much the
server's resident memory grew per connection.

    python3 benches/idle_tls.py --port PORT --pid PID [--pid PID2 ...] [-n 2000] [--path /1k.bin]

PID: the processes whose VmRSS is summed (for nginx, its worker). The
certificate is not verified: this measures memory, not trust.
"""
import argparse
import socket
import ssl
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--path", default="/1k.bin")
    args = ap.parse_args()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    # Warm the server up so the first allocations are not counted.
    warm = []
    for _ in range(50):
        s = context.wrap_socket(socket.create_connection(("127.0.0.1", args.port)))
        s.sendall(request)
        s.recv(65536)
        warm.append(s)
    for s in warm:
        s.close()
    time.sleep(0.5)
    before = rss_kib(args.pid)
    conns = []
    for _ in range(args.n):
        s = context.wrap_socket(socket.create_connection(("127.0.0.1", args.port)))
        s.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        conns.append(s)
    time.sleep(1.0)
    after = rss_kib(args.pid)
    per = (after - before) * 1024 / args.n
    print(f"{args.n} idle TLS connections: RSS {before} KiB -> {after} KiB, {per:.0f} bytes each")
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
