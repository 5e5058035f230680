#!/usr/bin/env python3
"""A WebSocket echo backend for tests/routes.rs, on the `websockets` package.

`python3 ws_echo.py [PORT]` listens on 127.0.0.1 (port 0 by default), prints
`listening on PORT` as its first line, and sends every message back as it
came (text as text, binary as binary). Keepalive pings are off
(ping_interval=None), so an idle tunnel stays silent both ways.

Works with websockets 13 and later (websockets.asyncio.server, PyPI) and
with the older asyncio API of Debian 12's python3-websockets (10.4).
"""

import asyncio
import sys

try:
    from websockets.asyncio.server import serve
except ImportError:  # websockets < 13
    from websockets import serve

from websockets.exceptions import ConnectionClosed


async def echo(websocket, *_path):
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosed:
        pass


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    async with serve(
        echo, "127.0.0.1", port, ping_interval=None, max_size=None
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
