"""A small Chrome DevTools Protocol (CDP) driver for headless Chromium.

Only the standard library and the `websockets` package (its synchronous
client) are used, so that the whole conversation with the browser can be read
in this one file. The shape of it:

    with Browser(verbose=True) as browser:
        page = browser.new_page()
        page.navigate("http://127.0.0.1:8000/")          # waits for "load"
        title = page.evaluate("document.title")
        page.wait_until("document.readyState === 'complete'", timeout=5)

How CDP works, in four sentences. Chromium started with
`--remote-debugging-port` opens a WebSocket for the whole browser and prints
its URL on stderr. Every message is a JSON object: a *command* carries an
`id` and a `method` and gets back exactly one *response* with the same `id`
(a `result` or an `error`), while *events* (`method` + `params`, no `id`)
arrive whenever something happens. With `Target.attachToTarget` and
`flatten: true`, commands for one tab travel on the same socket tagged with
a `sessionId`, and that tab's events come back tagged the same way. Domains
such as `Page` or `Runtime` send events only after `Page.enable` /
`Runtime.enable`.

A background thread reads the socket, hands each response to the command
waiting for it, and appends each event to a log with the `time.monotonic()`
at which it arrived, so the test can measure latencies without polling.

Every wait has a timeout; nothing here blocks forever. `Browser` is a
context manager: leaving the `with` block (normally or by an exception)
kills Chromium and its helper processes and removes its profile folder.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import connect

# How long a single command may take before we give up on it. Commands are
# answered in milliseconds; the only slow one is a navigation to a page whose
# server hangs, and even that answers once the request has been sent.
DEFAULT_COMMAND_TIMEOUT = 10.0

# Flags for a quiet, self-contained browser. The first five are the ones the
# harness needs; the rest stop Chromium from talking to anything but the
# pages we point it at (no updates, no sync, no "first run" tabs, no
# proxies: every test server is on 127.0.0.1).
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # we run as root in a container
    "--disable-gpu",
    "--remote-debugging-port=0",  # 0: pick a free port, printed on stderr
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--mute-audio",
    # Throttling of background tabs and timers would make latencies noisy.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]

# The line Chromium prints once its DevTools socket is listening.
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://\S+)")


class CDPError(Exception):
    """A command answered with an error, or could not be answered at all."""


class JavaScriptError(CDPError):
    """`evaluate` ran the expression and it threw (or its promise rejected)."""


class Event:
    """One CDP event as it arrived: its name, parameters and arrival time."""

    def __init__(self, seq, method, params, session_id, received):
        self.seq = seq  # position in the event log: 0, 1, 2, ...
        self.method = method  # e.g. "Page.loadEventFired"
        self.params = params
        self.session_id = session_id  # None for browser-wide events
        self.received = received  # time.monotonic() when the reader got it

    def __repr__(self):
        return f"Event({self.seq}, {self.method!r}, t={self.received:.3f})"


class Connection:
    """One WebSocket to the browser: numbered commands, an event log.

    The reader thread is the only one that calls `recv`; any thread may call
    `send`. A `threading.Condition` guards the shared state (answers waiting
    to be picked up, the event log) and wakes up whoever waits on it.
    """

    def __init__(self, ws_url, verbose=False):
        # proxy=None: talk to 127.0.0.1 directly even if *_proxy variables
        # are set. No size limit: a big evaluate() result is fine.
        self.ws = connect(
            ws_url,
            proxy=None,
            open_timeout=10,
            close_timeout=2,
            max_size=None,
            ping_interval=None,
            compression=None,
        )
        self.verbose = verbose
        self.lock = threading.Condition()
        self.next_id = 1
        self.answers = {}  # command id -> the response message
        self.events = []  # every event, in order of arrival
        self.closed = None  # why the socket closed, once it has
        self.reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self.reader.start()

    def _read(self):
        """The reader thread: sort each message into answers or events."""
        reason = "the browser closed the DevTools socket"
        try:
            for raw in self.ws:
                received = time.monotonic()
                message = json.loads(raw)
                with self.lock:
                    if "id" in message:
                        self.answers[message["id"]] = message
                    else:
                        event = Event(
                            len(self.events),
                            message.get("method"),
                            message.get("params", {}),
                            message.get("sessionId"),
                            received,
                        )
                        self.events.append(event)
                        if self.verbose:
                            _print_if_console(event)
                    self.lock.notify_all()
        except ConnectionClosed:
            pass
        except Exception as e:  # a bug here must not leave waiters hanging
            reason = f"the CDP reader failed: {e!r}"
        with self.lock:
            self.closed = reason
            self.lock.notify_all()

    def send(self, method, params=None, session_id=None, timeout=DEFAULT_COMMAND_TIMEOUT):
        """Sends one command and waits for its result (a dict)."""
        with self.lock:
            if self.closed:
                raise CDPError(f"{method}: {self.closed}")
            command_id = self.next_id
            self.next_id += 1
        message = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        try:
            self.ws.send(json.dumps(message))
        except ConnectionClosed as e:
            raise CDPError(f"{method}: the DevTools socket is closed ({e})") from None
        deadline = time.monotonic() + timeout
        with self.lock:
            while command_id not in self.answers:
                left = deadline - time.monotonic()
                if self.closed:
                    raise CDPError(f"{method}: {self.closed}")
                if left <= 0:
                    raise CDPError(f"{method}: no answer within {timeout} s")
                self.lock.wait(left)
            answer = self.answers.pop(command_id)
        if "error" in answer:
            error = answer["error"]
            raise CDPError(f"{method}: {error.get('message')} ({error.get('code')})")
        return answer.get("result", {})

    def mark(self):
        """The current end of the event log: pass it as `since` to wait for
        events that arrive after this moment (and not before)."""
        with self.lock:
            return len(self.events)

    def find_events(self, method, since=0, session_id=None):
        """Every logged event named `method` from log position `since` on."""
        with self.lock:
            return [
                e
                for e in self.events[since:]
                if e.method == method and (session_id is None or e.session_id == session_id)
            ]

    def wait_for_event(self, method, timeout, since=None, session_id=None):
        """The first event named `method` at log position `since` or later.

        `since` defaults to "now": only events that arrive during this call.
        To avoid missing a fast event, take `since = mark()` *before* doing
        whatever causes it. Returns the Event, or None after `timeout` s.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            position = len(self.events) if since is None else since
            while True:
                for event in self.events[position:]:
                    if event.method == method and (
                        session_id is None or event.session_id == session_id
                    ):
                        return event
                position = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.lock.wait(left)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.reader.join(timeout=3)


class Page:
    """One tab, attached with a flat session on the browser's connection."""

    def __init__(self, connection, target_id, session_id):
        self.connection = connection
        self.target_id = target_id
        self.session_id = session_id

    def send(self, method, params=None, timeout=DEFAULT_COMMAND_TIMEOUT):
        """A command for this tab (tagged with its sessionId)."""
        return self.connection.send(method, params, self.session_id, timeout)

    def mark(self):
        return self.connection.mark()

    def events(self, method, since=0):
        """This tab's events named `method`, from log position `since` on."""
        return self.connection.find_events(method, since, self.session_id)

    def wait_for_event(self, method, timeout, since=None):
        """See Connection.wait_for_event; only this tab's events count."""
        return self.connection.wait_for_event(method, timeout, since, self.session_id)

    def navigate(self, url, timeout=10.0):
        """Goes to `url` and waits for its load event, which it returns.

        Raises CDPError if the navigation fails outright (for instance the
        server refused the connection) or no load event comes in time.
        """
        since = self.mark()
        result = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise CDPError(f"navigate to {url}: {result['errorText']}")
        event = self.wait_for_event("Page.loadEventFired", timeout, since)
        if event is None:
            raise CDPError(f"navigate to {url}: no load event within {timeout} s")
        return event

    def evaluate(self, expression, timeout=DEFAULT_COMMAND_TIMEOUT):
        """Runs a JavaScript expression in the page and returns its value.

        The value comes back as JSON (returnByValue), so numbers, strings,
        booleans, arrays and plain objects work; `undefined` becomes None.
        A promise is awaited. A thrown exception raises JavaScriptError.
        """
        result = self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "awaitPromise": True,
            },
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {})
            text = thrown.get("description") or details.get("text") or "exception"
            raise JavaScriptError(f"{expression!r} threw: {text}")
        return result.get("result", {}).get("value")

    def wait_until(self, expression, timeout, interval=0.05):
        """Polls `expression` until it is truthy; returns True, or False when
        `timeout` s pass first.

        While a page reloads its JavaScript context is torn down, so an
        evaluation may fail or throw (say, "Execution context was
        destroyed"); such a round simply counts as "not yet".
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if self.evaluate(expression, timeout=max(0.5, min(left, 2.0))):
                    return True
            except CDPError:
                if self.connection.closed:
                    raise
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def console_messages(self, since=0):
        """The console.* calls, log entries and uncaught exceptions seen so
        far, as (time, text) pairs."""
        wanted = ("Runtime.consoleAPICalled", "Log.entryAdded", "Runtime.exceptionThrown")
        with self.connection.lock:
            events = [
                e
                for e in self.connection.events[since:]
                if e.method in wanted and e.session_id == self.session_id
            ]
        return [(e.received, describe_console_event(e)) for e in events]


class Browser:
    """A headless Chromium, started by `with Browser() as browser:`.

    On leaving the block, the browser is asked to close, then killed (with
    its whole process group, so renderer and GPU helpers go too), and its
    temporary profile folder is removed.
    """

    def __init__(self, binary="chromium", startup_timeout=30.0, verbose=False):
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.verbose = verbose
        self.process = None
        self.profile = None
        self.connection = None
        self.stderr_tail = deque(maxlen=40)  # the last lines, for error messages

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        self.profile = tempfile.mkdtemp(prefix="rill-chromium-")
        command = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        try:
            # A new session (process group), so close() can kill the helpers.
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise CDPError(f"cannot start the browser: {self.binary!r} is not on PATH") from None

        # Chromium keeps writing to stderr; a thread reads it all so the pipe
        # never fills up, and hands over the DevTools URL when it shows up.
        found = threading.Event()
        url = []

        def drain():
            for raw in self.process.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(line)
                match = DEVTOOLS_LINE.search(line)
                if match and not url:
                    url.append(match.group(1))
                    found.set()
            found.set()  # stderr closed: the browser is gone

        threading.Thread(target=drain, name="chromium-stderr", daemon=True).start()
        if not found.wait(self.startup_timeout) or not url:
            tail = "\n".join(self.stderr_tail)
            raise CDPError(f"the browser did not announce its DevTools URL:\n{tail}")
        try:
            self.connection = Connection(url[0], verbose=self.verbose)
        except (OSError, WebSocketException) as e:
            raise CDPError(f"cannot open the DevTools socket {url[0]}: {e}") from None
        return self

    def new_page(self, url="about:blank"):
        """Opens a tab, attaches to it, and turns on the events we log."""
        target_id = self.connection.send("Target.createTarget", {"url": url})["targetId"]
        session_id = self.connection.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )["sessionId"]
        page = Page(self.connection, target_id, session_id)
        page.send("Page.enable")  # Page.loadEventFired, ...
        page.send("Runtime.enable")  # Runtime.consoleAPICalled, exceptionThrown
        page.send("Log.enable")  # Log.entryAdded: network errors, CSP, ...
        return page

    def close(self):
        """Stops the browser and removes its profile; safe to call twice."""
        if self.connection is not None:
            try:
                self.connection.send("Browser.close", timeout=2)
            except CDPError:
                pass  # it may close the socket before answering
            self.connection.close()
            self.connection = None
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            # Whatever is left of the group (helpers, or a stuck browser).
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if self.process.stderr:
                self.process.stderr.close()
            self.process = None
        if self.profile is not None:
            # Helpers may still be writing for a moment after the kill.
            for _ in range(10):
                shutil.rmtree(self.profile, ignore_errors=True)
                if not os.path.exists(self.profile):
                    break
                time.sleep(0.1)
            self.profile = None


def describe_console_event(event):
    """One line of text for a console, log or exception event."""
    p = event.params
    if event.method == "Runtime.consoleAPICalled":
        parts = []
        for arg in p.get("args", []):
            if "value" in arg:
                value = arg["value"]
                parts.append(value if isinstance(value, str) else json.dumps(value))
            else:
                parts.append(arg.get("description") or arg.get("type", "?"))
        return f"console.{p.get('type')}: {' '.join(parts)}"
    if event.method == "Log.entryAdded":
        entry = p.get("entry", {})
        where = f" ({entry['url']})" if entry.get("url") else ""
        return f"log {entry.get('source')}/{entry.get('level')}: {entry.get('text')}{where}"
    if event.method == "Runtime.exceptionThrown":
        details = p.get("exceptionDetails", {})
        thrown = details.get("exception", {})
        return f"uncaught: {thrown.get('description') or details.get('text')}"
    return f"{event.method}: {json.dumps(p)}"


def _print_if_console(event):
    """In verbose mode the reader thread echoes console output to stderr."""
    # One write per line, so lines from other threads do not cut into it.
    if event.method in ("Runtime.consoleAPICalled", "Log.entryAdded", "Runtime.exceptionThrown"):
        sys.stderr.write(f"[browser {event.received:.3f}] {describe_console_event(event)}\n")
    elif event.method == "Page.loadEventFired":
        sys.stderr.write(f"[browser {event.received:.3f}] load event\n")


def self_test():
    """`python3 tests/browser/cdp.py`: drives a page served by Python's own
    http.server on 127.0.0.1, checking each piece of the driver once."""
    import functools
    import http.server

    folder = tempfile.mkdtemp(prefix="rill-cdp-selftest-")
    with open(os.path.join(folder, "index.html"), "w") as f:
        f.write(
            "<!doctype html><title>self test</title><p>hello</p>"
            "<script>console.log('booted', 1 + 1);"
            " setTimeout(() => { window.late = 'yes' }, 300)</script>"
        )
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    started = time.monotonic()
    try:
        with Browser(verbose="-v" in sys.argv) as browser:
            page = browser.new_page()
            load = page.navigate(url)
            assert load.method == "Page.loadEventFired"
            assert page.evaluate("document.title") == "self test"
            assert page.evaluate("1 + 2") == 3
            assert page.evaluate("({a: [1, 'x']})") == {"a": [1, "x"]}
            assert page.evaluate("undefined") is None
            assert page.evaluate("new Promise(r => setTimeout(() => r('later'), 50))") == "later"
            try:
                page.evaluate("nope.nope")
                raise AssertionError("a throwing expression must raise")
            except JavaScriptError:
                pass
            assert page.wait_until("window.late === 'yes'", timeout=5)
            assert not page.wait_until("false", timeout=0.3)
            texts = [text for _, text in page.console_messages()]
            assert "console.log: booted 2" in texts, texts
            # A reload gives exactly one more load event, after the mark.
            since = page.mark()
            page.evaluate("location.reload(), true")
            assert page.wait_for_event("Page.loadEventFired", 5, since) is not None
            assert len(page.events("Page.loadEventFired", since)) == 1
            assert page.wait_for_event("Page.loadEventFired", 0.3) is None
            profile, process = browser.profile, browser.process
        assert not os.path.exists(profile), "the profile folder must be removed"
        assert process.poll() is not None, "the browser must have exited"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"cdp.py self test passed in {time.monotonic() - started:.2f} s")


if __name__ == "__main__":
    self_test()
