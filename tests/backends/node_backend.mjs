// A real backend for tests/routes.rs: Node's own `http` server, no npm
// packages. `node node_backend.mjs [PORT]` listens on 127.0.0.1 (port 0 by
// default) and prints `listening on PORT` as its first line.
//
// Every request except /count, /log and /reset is counted, so a test can
// check exactly which requests reached the backend:
//   /count              `total N` then `PATH N` per path, one a line
//   /count?path=/x      just N for that path (query strings not included)
//   /log                `METHOD URL` of every counted request, in order
//   /reset              forgets counts and log
// Routes (any other path is /echo):
//   /echo               JSON: method, url, httpVersion, headers (as received,
//                       one [name, value] pair a line, in order), bodyLength,
//                       sha256 and trailers of the body, streamed, never buffered
//   /chunked            five res.write() calls 20 ms apart, chunked
//   /sse?n=50&ms=100    text/event-stream, `data: I` every ms
//   /early-hints        103 with a Link header, then 200
//   /trailers           chunked body with `Trailer: X-Checksum`
//   /big?mb=N           N MiB of byte i = i % 251, Content-Length, backpressure
//   /slow?ms=N          the head after N ms
//   /stall?ms=N         head and a first chunk, N ms of silence, then the rest
//   /redirect?to=/landing  302 to http://127.0.0.1:PORT{to}
//   /redirect?abs=URL   302 to URL unchanged
//   /landing            200 `landed`
//   /hop                200 with hop-by-hop response fields rill must remove
//   /expect             answers the body's length (and whether 100 was sent)
//   /slow-sink?ms=2     reads the body with a pause of ms after each piece
// A request with `Expect: 100-continue` goes through 'checkContinue': the
// backend writes 100 Continue, then routes it as usual (JSON says continued).
// keepAliveTimeout stays Node's default (5 s): a test depends on it.

import http from 'node:http';
import crypto from 'node:crypto';

const counts = new Map();
let total = 0;
let log = [];
let port = 0;

function pathOf(url) {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function params(url) {
  return new URL(url, 'http://backend').searchParams;
}

function number(url, name, fallback) {
  const value = params(url).get(name);
  return value === null ? fallback : Number(value);
}

function send(res, status, type, body, extra = {}) {
  const buf = Buffer.from(body);
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': buf.length, ...extra });
  res.end(buf);
}

// Hashes and counts the body as it streams in, then calls done.
function consume(req, done, pauseMs = 0) {
  const hash = crypto.createHash('sha256');
  let length = 0;
  req.on('data', (chunk) => {
    hash.update(chunk);
    length += chunk.length;
    if (pauseMs > 0) {
      req.pause();
      setTimeout(() => req.resume(), pauseMs);
    }
  });
  req.on('end', () => done(length, hash.digest('hex')));
  req.on('error', () => {});
}

function echo(req, res) {
  consume(req, (length, sha256) => {
    const pairs = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      pairs.push(JSON.stringify([req.rawHeaders[i], req.rawHeaders[i + 1]]));
    }
    const trailers = [];
    for (let i = 0; i < req.rawTrailers.length; i += 2) {
      trailers.push(JSON.stringify([req.rawTrailers[i], req.rawTrailers[i + 1]]));
    }
    // One field a line, so a test can read it without a JSON parser.
    const body = [
      '{',
      `"method": ${JSON.stringify(req.method)},`,
      `"url": ${JSON.stringify(req.url)},`,
      `"httpVersion": ${JSON.stringify(req.httpVersion)},`,
      `"continued": ${req.continued === true},`,
      `"bodyLength": ${length},`,
      `"sha256": ${JSON.stringify(sha256)},`,
      '"headers": [',
      pairs.join(',\n'),
      '],',
      '"trailers": [',
      trailers.join(',\n'),
      ']',
      '}',
      '',
    ].join('\n');
    send(res, 200, 'application/json', body);
  });
}

const PATTERN_CHUNK = (() => {
  // 251 * 256 bytes: every chunk starts at a multiple of 251, so one buffer
  // serves for the whole body.
  const buf = Buffer.alloc(251 * 256);
  for (let i = 0; i < buf.length; i++) buf[i] = i % 251;
  return buf;
})();

function big(req, res) {
  const size = Math.round(number(req.url, 'mb', 1) * 1024 * 1024);
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': size });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  let sent = 0;
  const pump = () => {
    while (sent < size) {
      const piece = Math.min(PATTERN_CHUNK.length, size - sent);
      sent += piece;
      const more = res.write(piece === PATTERN_CHUNK.length ? PATTERN_CHUNK : PATTERN_CHUNK.subarray(0, piece));
      if (!more) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  res.on('close', () => { sent = size; });
  pump();
}

function sse(req, res) {
  const n = number(req.url, 'n', 50);
  const ms = number(req.url, 'ms', 100);
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  res.flushHeaders();
  let i = 0;
  const tick = () => {
    if (res.destroyed) return;
    res.write(`id: ${i}\ndata: event ${i}\n\n`);
    i += 1;
    if (i >= n) res.end();
    else setTimeout(tick, ms);
  };
  setTimeout(tick, 0);
}

const TRAILER_BODY = ['first piece\n', 'second piece\n', 'third piece\n'];

function route(req, res) {
  const path = pathOf(req.url);
  if (path === '/count') {
    const only = params(req.url).get('path');
    if (only !== null) {
      send(res, 200, 'text/plain', `${counts.get(only) || 0}\n`);
      return;
    }
    let text = `total ${total}\n`;
    for (const [p, n] of counts) text += `${p} ${n}\n`;
    send(res, 200, 'text/plain', text);
    return;
  }
  if (path === '/log') {
    send(res, 200, 'text/plain', log.map((line) => `${line}\n`).join(''));
    return;
  }
  if (path === '/reset') {
    counts.clear();
    total = 0;
    log = [];
    send(res, 200, 'text/plain', 'reset\n');
    return;
  }
  total += 1;
  counts.set(path, (counts.get(path) || 0) + 1);
  log.push(`${req.method} ${req.url}`);
  // Every route below ends at its body's end: drain what is left of the request.
  const tail = path.slice(path.lastIndexOf('/'));
  switch (tail) {
    case '/chunked': {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      let i = 0;
      const next = () => {
        if (res.destroyed) return;
        res.write(`piece ${i}\n`);
        i += 1;
        if (i === 5) res.end();
        else setTimeout(next, 20);
      };
      next();
      return;
    }
    case '/sse':
      req.resume();
      sse(req, res);
      return;
    case '/early-hints':
      req.resume();
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      setTimeout(() => send(res, 200, 'text/plain', 'hinted\n'), 20);
      return;
    case '/trailers': {
      req.resume();
      const hash = crypto.createHash('sha256');
      res.writeHead(200, { 'Content-Type': 'text/plain', Trailer: 'X-Checksum' });
      for (const piece of TRAILER_BODY) {
        hash.update(piece);
        res.write(piece);
      }
      res.addTrailers({ 'X-Checksum': `sha256=${hash.digest('hex')}` });
      res.end();
      return;
    }
    case '/big':
      req.resume();
      big(req, res);
      return;
    case '/slow':
      req.resume();
      setTimeout(() => send(res, 200, 'text/plain', 'slow\n'), number(req.url, 'ms', 1000));
      return;
    case '/stall': {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('before the stall\n');
      setTimeout(() => {
        if (!res.destroyed) res.end('after the stall\n');
      }, number(req.url, 'ms', 3000));
      return;
    }
    case '/redirect': {
      req.resume();
      const abs = params(req.url).get('abs');
      const to = params(req.url).get('to') || '/landing';
      const location = abs !== null ? abs : `http://127.0.0.1:${port}${to}`;
      send(res, 302, 'text/plain', `see ${location}\n`, { Location: location });
      return;
    }
    case '/landing':
      req.resume();
      send(res, 200, 'text/plain', 'landed\n');
      return;
    case '/hop':
      req.resume();
      send(res, 200, 'text/plain', 'hop\n', {
        Connection: 'keep-alive, X-Hop',
        'X-Hop': 'secret',
        'Keep-Alive': 'timeout=5',
        'Proxy-Connection': 'keep-alive',
        Upgrade: 'h2c',
        'X-End-To-End': 'kept',
      });
      return;
    case '/expect':
      consume(req, (length, sha256) => {
        send(res, 200, 'text/plain', `length ${length}\nsha256 ${sha256}\ncontinued ${req.continued === true}\n`);
      });
      return;
    case '/slow-sink':
      consume(req, (length, sha256) => {
        send(res, 200, 'text/plain', `length ${length}\nsha256 ${sha256}\n`);
      }, number(req.url, 'ms', 2));
      return;
    default:
      echo(req, res);
  }
}

const server = http.createServer(route);
// KEEP_ALIVE_MS shortens Node's idle keep-alive timeout (default 5 s), so a
// test can race rill's pool against a backend that closes sooner than it.
if (process.env.KEEP_ALIVE_MS) server.keepAliveTimeout = Number(process.env.KEEP_ALIVE_MS);
server.on('checkContinue', (req, res) => {
  req.continued = true;
  res.writeContinue();
  route(req, res);
});
server.on('clientError', (err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
});

const wanted = process.argv[2] ? Number(process.argv[2]) : 0;
server.listen(wanted, '127.0.0.1', () => {
  port = server.address().port;
  process.stdout.write(`listening on ${port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
