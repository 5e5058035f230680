"""Browser checks for rill's `--live-reload`, in headless Chromium.

    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario reload [--saves 20]
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario css
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario restart
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario listing
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario index
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario script
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario late
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario import
    python3 tests/browser/live_reload.py --rill target/debug/rill --scenario folder

Each run makes its own temporary folder, starts rill on it (on a free port
of 127.0.0.1, with `--live-reload`), opens a page in a headless Chromium
driven over the DevTools protocol (cdp.py, beside this file), edits files,
and prints ONE JSON object on stdout with what it measured. The Rust
integration test decides from that JSON whether live reload works; this
script only observes. So it exits 0 whenever it could observe, even if
nothing reloaded, and non-zero (with a message on stderr) only when the
harness itself could not run: no browser, rill did not start, ...

`--verbose` echoes the browser's console, rill's output and the steps taken
to stderr.

What the page and rill agree on (the live-reload protocol): rill appends
`<script src="/.rill/live.js" ...>` to every HTML page it serves; live.js
opens a WebSocket to `/.rill/live` and sets `window.__rillLive.connected`
to true once it is open. When a file changes, rill tells the page, which
reloads (or, for a stylesheet, swaps the <link> in place).
"""

import argparse
import json
import math
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

# cdp.py sits beside this file. No __pycache__ left in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser, CDPError  # noqa: E402

LOAD = "Page.loadEventFired"

# The page is connected once live.js has its WebSocket open.
CONNECTED = "!!(window.__rillLive && window.__rillLive.connected === true)"

# How long to wait for each thing to happen.
CONNECT_TIMEOUT = 10.0  # live.js opening its WebSocket
RELOAD_TIMEOUT = 5.0  # a save turning into a load event
RESTART_TIMEOUT = 10.0  # a restarted rill turning into a load event
SETTLE = 0.25  # quiet time after a reload, so a duplicate one can show up

# A whole run must end within this many seconds (plus PER_SAVE_DEADLINE
# for each save of the reload scenario); a stuck step then fails the
# harness instead of hanging the Rust test that runs it.
RUN_DEADLINE = 120
PER_SAVE_DEADLINE = 16

VERBOSE = False


def log(message):
    """A progress line on stderr, in --verbose mode only."""
    if VERBOSE:
        # One write per line: rill's output and the browser's come from
        # other threads, and print() would let them split a line.
        sys.stderr.write(f"[harness {time.monotonic():.3f}] {message}\n")


def warn(message):
    """Something the server side did not do; always shown on stderr."""
    print(f"live_reload.py: {message}", file=sys.stderr)


class HarnessError(Exception):
    """The harness could not do its job (as opposed to a feature failing)."""


# ---------------------------------------------------------------------------
# rill as a child process


class Rill:
    """A running rill, serving `root` with `--live-reload` on 127.0.0.1.

    rill prints `listening on http://ADDR` once it has bound (on stdout; both
    streams are watched in case that moves). Threads keep reading both pipes
    for the whole run, so rill never blocks on a full pipe, and in verbose
    mode echo what it logs.
    """

    ANNOUNCE = re.compile(r"listening on http://(127\.0\.0\.1:(\d+))")

    def __init__(self, binary, root, port=0, timeout=10.0):
        self.command = [binary, "--listen", f"127.0.0.1:{port}", "--live-reload", root]
        log(f"starting {' '.join(self.command)}")
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise HarnessError(f"cannot start rill ({binary}): {e}") from None
        self.output = deque(maxlen=40)  # the last lines, for error messages
        self.announced = threading.Event()
        self.port = None
        self.stopped = False
        self.readers = [
            threading.Thread(target=self._read, args=(pipe,), daemon=True)
            for pipe in (self.process.stdout, self.process.stderr)
        ]
        for reader in self.readers:
            reader.start()
        deadline = time.monotonic() + timeout
        while not self.announced.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.output)
                raise HarnessError(f"rill did not announce its address:\n{tail}")
        log(f"rill (pid {self.process.pid}) listens on port {self.port}")

    def _read(self, pipe):
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            if VERBOSE:
                sys.stderr.write(f"[rill] {line}\n")
            match = self.ANNOUNCE.search(line)
            if match and not self.announced.is_set():
                self.port = int(match.group(2))
                self.announced.set()

    def stop(self):
        """SIGTERM, wait for rill to exit (SIGKILL if it takes too long).
        Safe to call more than once."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                warn("rill did not exit within 10 s of SIGTERM; killing it")
                self.process.kill()
                self.process.wait(timeout=5)
        for reader in self.readers:  # so self.output has rill's last words
            reader.join(timeout=2)
        if not self.stopped:
            self.stopped = True
            log(f"rill (pid {self.process.pid}) exited with {self.process.returncode}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


# ---------------------------------------------------------------------------
# small helpers


def write_in_place(path, text):
    """Rewrites the file itself: open (truncating), write, close."""
    with open(path, "w") as f:
        f.write(text)


def write_atomically(path, text):
    """Writes a hidden sibling, then renames it over the file, the way many
    editors save: readers only ever see the old or the new content."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.tmp")
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def page_html(version):
    return (
        "<!doctype html>\n"
        "<html><head><meta charset=\"utf-8\"><title>live reload</title></head>\n"
        f"<body><p id=\"text\">version {version}</p>\n"
        "<script>window.marker = Math.random()</script>\n"
        "</body></html>\n"
    )


def body_text(page):
    """document.body.innerText, or "" if the page is between documents."""
    try:
        return page.evaluate("document.body ? document.body.innerText : ''") or ""
    except CDPError:
        return ""


def percentile(values, fraction):
    """The nearest-rank percentile of `values` (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))  # 1-based
    return ordered[rank - 1]


def open_live_page(page, url):
    """Navigates to `url` and waits for live.js to connect. Returns whether
    it connected; a page that fails to load at all is a harness failure."""
    try:
        page.navigate(url, timeout=10)
    except CDPError as e:
        raise HarnessError(str(e)) from None
    log(f"loaded {url}")
    connected = page.wait_until(CONNECTED, CONNECT_TIMEOUT)
    if connected:
        log("live.js is connected")
    else:
        warn(f"live.js never reported connected within {CONNECT_TIMEOUT} s on {url}")
    return connected


def wait_for_load_showing(page, text, since, timeout):
    """The first load event from log position `since` on after which the
    page's text contains `text`, or None after `timeout` s. A load showing
    something else (a stale copy, an early reload) does not count, but the
    wait goes on for a good one."""
    deadline = time.monotonic() + timeout
    seen = since
    while True:
        event = page.wait_for_event(LOAD, max(0.0, deadline - time.monotonic()), seen)
        if event is None:
            return None
        seen = event.seq + 1
        shown = body_text(page)
        log(f"load shows {shown.strip()!r}")
        if text in shown:
            return event


def evaluate_settled(page, expression, tries=20):
    """`expression`'s value, retried for a moment while a reload replaces
    the document (its context is then gone and evaluate fails)."""
    for _ in range(tries):
        try:
            return page.evaluate(expression)
        except CDPError:
            time.sleep(0.1)
    raise HarnessError(f"cannot evaluate {expression!r}: the page never settled")

# ---------------------------------------------------------------------------
# the scenarios: each takes (rill binary, folder, browser page, args) and
# returns the dict printed as JSON


def scenario_reload(binary, folder, page, args):
    """N saves of page.html, alternately in place and by atomic rename; each
    must bring exactly one load showing the new text."""
    path = os.path.join(folder, "page.html")
    write_in_place(path, page_html(0))
    with Rill(binary, folder) as rill:
        open_live_page(page, f"http://127.0.0.1:{rill.port}/page.html")
        time.sleep(SETTLE)
        start = page.mark()  # loads from here on are caused by the saves
        reloaded = 0
        latencies = []
        saves = 0
        misses_in_a_row = 0  # saves that brought no load event at all
        for i in range(1, args.saves + 1):
            since = page.mark()
            how = "in place" if i % 2 else "atomic rename"
            (write_in_place if i % 2 else write_atomically)(path, page_html(i))
            t0 = time.monotonic()
            saves += 1
            # Wait for a load that shows the new text; a load that shows old
            # text (a stale cache, an early reload) does not count, but keep
            # waiting for a good one until the timeout.
            shown = None
            deadline = t0 + RELOAD_TIMEOUT
            seen = since
            while shown is None:
                event = page.wait_for_event(LOAD, max(0.0, deadline - time.monotonic()), seen)
                if event is None:
                    break
                seen = event.seq + 1
                text = body_text(page)
                log(f"save {i} ({how}): load after {1000 * (event.received - t0):.1f} ms "
                    f"shows {text.strip()!r}")
                if f"version {i}" in text:
                    shown = event
            if shown is not None:
                reloaded += 1
                latencies.append(round(1000 * (shown.received - t0), 1))
            else:
                warn(f"save {i} ({how}): no load showing 'version {i}' within {RELOAD_TIMEOUT} s")
            any_load = bool(page.events(LOAD, since))
            misses_in_a_row = 0 if any_load else misses_in_a_row + 1
            # Before the next save the (new) page must be connected again,
            # and a duplicate reload gets a moment to show itself. Without a
            # load the document is the same one: no point waiting long.
            if not page.wait_until(CONNECTED, CONNECT_TIMEOUT if any_load else 1.0):
                warn(f"save {i}: live.js not connected (again) before the next save")
            time.sleep(SETTLE)
            if misses_in_a_row >= 3:
                warn(f"giving up after {saves} saves: three in a row brought no load at all")
                break
        time.sleep(1.0)  # a late extra reload still counts
        loads = len(page.events(LOAD, start))
    return {
        "saves": saves,
        "reloaded": reloaded,
        "latencies_ms": latencies,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "extra_loads": loads - reloaded,
    }


def scenario_css(binary, folder, page, args):
    """Editing a stylesheet restyles the page in place: no reload, and the
    old <link> is replaced rather than piled up."""
    css = os.path.join(folder, "style.css")
    write_in_place(css, "body { color: rgb(255, 0, 0) }\n")
    write_in_place(
        os.path.join(folder, "page.html"),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>css</title>\n"
        "<link rel=\"stylesheet\" href=\"style.css\"></head>\n"
        "<body><p>styled text</p></body></html>\n",
    )
    color = "getComputedStyle(document.body).color"
    links = "document.querySelectorAll('link[rel~=\"stylesheet\"]').length"
    with Rill(binary, folder) as rill:
        open_live_page(page, f"http://127.0.0.1:{rill.port}/page.html")
        before = page.evaluate(color)
        if before != "rgb(255, 0, 0)":
            warn(f"the page starts with color {before!r}, not red")
        page.evaluate("window.survivor = 42")
        since = page.mark()
        write_in_place(css, "body { color: rgb(0, 0, 255) }\n")
        t0 = time.monotonic()
        restyled = page.wait_until(f"{color} === 'rgb(0, 0, 255)'", RELOAD_TIMEOUT)
        log(f"restyled={restyled} after {1000 * (time.monotonic() - t0):.1f} ms")
        # The old <link> may go a moment after the new one applies.
        page.wait_until(f"{links} === 1", 2.0)
        time.sleep(1.0)  # room for an unwanted reload to happen
        survivor = None
        count = None
        for _ in range(20):  # retried while a reload replaces the document
            try:
                survivor = page.evaluate("window.survivor")
                count = page.evaluate(links)
                break
            except CDPError:
                time.sleep(0.1)
        loads = len(page.events(LOAD, since))
    return {
        "restyled": restyled,
        "survivor": survivor,
        "loads_after_edit": loads,
        "links": count,
    }


def scenario_restart(binary, folder, page, args):
    """A rill restarted on the same port reloads the page once (the new
    server's boot id differs), and only once: no reload loop."""
    write_in_place(os.path.join(folder, "page.html"), page_html(0))
    first = Rill(binary, folder)
    port = first.port
    second = None
    try:
        url = f"http://127.0.0.1:{port}/page.html"
        open_live_page(page, url)
        time.sleep(SETTLE)
        since = page.mark()
        first.stop()
        time.sleep(0.5)
        # The same port: the page's script keeps trying that address. A
        # port just freed can be briefly in use; retry a few times.
        for attempt in range(5):
            try:
                second = Rill(binary, folder, port=port)
                break
            except HarnessError as e:
                if attempt == 4:
                    raise HarnessError(f"cannot restart rill on port {port}: {e}") from None
                time.sleep(0.5)
        t_restart = time.monotonic()
        event = page.wait_for_event(LOAD, RESTART_TIMEOUT, since)
        reloaded = False
        if event is not None:
            log(f"load {1000 * (event.received - t_restart):.1f} ms after the restart")
            reloaded = page.wait_until(
                "location.href === " + json.dumps(url)
                + " && document.body.innerText.includes('version 0')",
                2.0,
            )
        else:
            warn(f"no load event within {RESTART_TIMEOUT} s of the restart")
        time.sleep(5.0)  # any further load is a reload loop
        loads = len(page.events(LOAD, since))
    finally:
        first.stop()
        if second is not None:
            second.stop()
    return {"reloaded_after_restart": reloaded, "loads_after_restart": loads}


def scenario_listing(binary, folder, page, args):
    """A directory listing (no index.html) shows a file that appears: rill's
    listing page refreshes its table in place (uploads queued on it go on),
    without a reload."""
    write_in_place(os.path.join(folder, "existing.txt"), "here before\n")
    with Rill(binary, folder) as rill:
        open_live_page(page, f"http://127.0.0.1:{rill.port}/")
        time.sleep(SETTLE)
        since = page.mark()
        write_in_place(os.path.join(folder, "new-file.txt"), "new\n")
        shows = page.wait_until(
            "document.querySelector('#listing tbody').innerText.includes('new-file.txt')",
            RELOAD_TIMEOUT,
        )
        if not shows:
            warn(f"new-file.txt not shown within {RELOAD_TIMEOUT} s of creating it")
        refreshes = page.evaluate("window.__rillListing.refreshes")
        reloaded = page.wait_for_event(LOAD, 0.3, since) is not None
    return {"shows_new_file": shows, "refreshed_in_place": refreshes >= 1, "reloaded": reloaded}


def scenario_index(binary, folder, page, args):
    """A folder's index.html, opened as the folder's URL (/), is a page like
    any other: it is only itself. Files appearing beside it (which a listing
    of that folder would show) must not reload it; saving it must."""
    index = os.path.join(folder, "index.html")

    def index_html(version):
        return (
            "<!doctype html>\n"
            "<html><head><meta charset=\"utf-8\"><title>index</title></head>\n"
            f"<body><p>index v{version}</p></body></html>\n"
        )

    write_in_place(index, index_html(0))
    with Rill(binary, folder) as rill:
        open_live_page(page, f"http://127.0.0.1:{rill.port}/")
        time.sleep(SETTLE)
        since = page.mark()
        # Unrelated: a file in the same folder, and a page in a new subfolder.
        write_in_place(os.path.join(folder, "notes.txt"), "unrelated\n")
        os.mkdir(os.path.join(folder, "sub"))
        write_in_place(os.path.join(folder, "sub", "other.html"), page_html(0))
        time.sleep(1.5)  # well past a batch's 60-400 ms of gathering
        unrelated = len(page.events(LOAD, since))
        if unrelated:
            warn(f"{unrelated} load(s) after writing notes.txt and sub/other.html")
            # A reloaded page must be connected again to see the next save.
            page.wait_until(CONNECTED, CONNECT_TIMEOUT)
            time.sleep(SETTLE)
        since = page.mark()
        write_in_place(index, index_html(1))
        reloaded = wait_for_load_showing(page, "index v1", since, RELOAD_TIMEOUT) is not None
        if not reloaded:
            warn(f"no load showing 'index v1' within {RELOAD_TIMEOUT} s of saving index.html")
    return {"loads_after_unrelated": unrelated, "reloaded_after_own_save": reloaded}


def scenario_script(binary, folder, page, args):
    """A page reloads when a script it loaded is saved, and runs the new
    script, although the old one looks fresh to the browser's cache: both
    files date from 10 days ago, so without `no-cache` Chromium would keep
    app.js for a day (a tenth of its age) and a reload would not ask again."""
    script = os.path.join(folder, "app.js")
    html = os.path.join(folder, "page.html")
    write_in_place(script, "window.appVersion = 1;\n")
    write_in_place(
        html,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>script</title>\n"
        "<script src=\"app.js\"></script></head>\n"
        "<body><p>a page with a script</p></body></html>\n",
    )
    old = time.time() - 10 * 24 * 3600
    for path in (script, html):
        os.utime(path, (old, old))
    with Rill(binary, folder) as rill:
        open_live_page(page, f"http://127.0.0.1:{rill.port}/page.html")
        before = page.evaluate("window.appVersion")
        if before != 1:
            warn(f"the page starts with appVersion {before!r}, not 1")
        time.sleep(SETTLE)
        since = page.mark()
        write_in_place(script, "window.appVersion = 2;\n")
        t0 = time.monotonic()
        event = page.wait_for_event(LOAD, RELOAD_TIMEOUT, since)
        after = None
        if event is not None:
            log(f"load {1000 * (event.received - t0):.1f} ms after saving app.js")
            # Scripts in <head> have run by the load event.
            after = evaluate_settled(page, "window.appVersion")
        else:
            warn(f"no load event within {RELOAD_TIMEOUT} s of saving app.js")
    return {"reloaded": event is not None, "app_version_after": after}


def scenario_late(binary, folder, page, args):
    """A page that is slow to finish, opened while an unrelated file keeps
    changing: by the time live.js connects it is behind by a few batches,
    which it is then sent, and none concerns it. One load, no reload loop."""
    write_in_place(
        os.path.join(folder, "slow.html"),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>slow</title></head>\n"
        # 700 ms of busy work before the content: live.js (appended after
        # the last byte, deferred) runs only after that.
        "<body><script>const t = Date.now(); while (Date.now() - t < 700) {}</script>\n"
        "<p>slow page</p></body></html>\n",
    )
    os.mkdir(os.path.join(folder, "data"))
    status = os.path.join(folder, "data", "status.json")
    duration, interval = 6.0, 0.3
    stop = threading.Event()

    def keep_writing():
        # Never loaded by the page: each batch of these is unrelated to it.
        n = 0
        while not stop.wait(0 if n == 0 else interval):
            n += 1
            write_in_place(status, json.dumps({"n": n, "t": time.time()}) + "\n")
        log(f"wrote data/status.json {n} times")

    writer = threading.Thread(target=keep_writing, name="status-writer", daemon=True)
    with Rill(binary, folder) as rill:
        since = page.mark()
        t0 = time.monotonic()
        writer.start()
        try:
            try:
                page.navigate(f"http://127.0.0.1:{rill.port}/slow.html", timeout=10)
            except CDPError as e:
                raise HarnessError(str(e)) from None
            log(f"first load {1000 * (time.monotonic() - t0):.1f} ms after the writes began")
            # Connected at some point within the 6 s (a page caught in a
            # reload loop may never be).
            connected = page.wait_until(CONNECTED, max(0.5, t0 + duration - time.monotonic()))
            if not connected:
                warn(f"live.js never reported connected within {duration} s")
            time.sleep(max(0.0, t0 + duration - time.monotonic()))
        finally:
            stop.set()
            writer.join(timeout=2)
        time.sleep(0.5)  # the last write's batch, and any reload it brings
        loads = len(page.events(LOAD, since))
        if loads != 1:
            warn(f"{loads} load events in {duration} s, not 1")
    return {"loads": loads, "connected": connected}


def scenario_import(binary, folder, page, args):
    """Two stylesheets saved at once, one a <link> of the page and one it
    reaches only through an @import: the batch names both, and since the
    imported one cannot be swapped in place, the page reloads and shows
    both new styles."""
    write_in_place(os.path.join(folder, "main.css"), "@import url(\"base.css\");\n")
    base = os.path.join(folder, "base.css")
    other = os.path.join(folder, "other.css")
    write_in_place(base, "body { background-color: rgb(1, 1, 1) }\n")
    write_in_place(other, "h1 { color: rgb(2, 2, 2) }\n")
    write_in_place(
        os.path.join(folder, "page.html"),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>import</title>\n"
        "<link rel=\"stylesheet\" href=\"main.css\">\n"
        "<link rel=\"stylesheet\" href=\"other.css\"></head>\n"
        "<body><h1>imported styles</h1></body></html>\n",
    )
    background = "getComputedStyle(document.body).backgroundColor"
    h1 = "getComputedStyle(document.querySelector('h1')).color"
    with Rill(binary, folder) as rill:
        open_live_page(page, f"http://127.0.0.1:{rill.port}/page.html")
        before = page.evaluate(f"[{background}, {h1}]")
        if before != ["rgb(1, 1, 1)", "rgb(2, 2, 2)"]:
            warn(f"the page starts with background and h1 color {before!r}")
        page.evaluate("window.survivor = 42")
        since = page.mark()
        # Both saves back to back, well inside one batch's 60 ms of quiet.
        write_in_place(other, "h1 { color: rgb(3, 3, 3) }\n")
        write_in_place(base, "body { background-color: rgb(4, 4, 4) }\n")
        t0 = time.monotonic()
        event = page.wait_for_event(LOAD, RELOAD_TIMEOUT, since)
        if event is not None:
            log(f"load {1000 * (event.received - t0):.1f} ms after saving both sheets")
            # <link>ed sheets (and what they import) apply before the load
            # event; survivor tells that the document really is a new one.
            log(f"survivor after the load: {evaluate_settled(page, 'window.survivor')!r}")
        else:
            warn(f"no load event within {RELOAD_TIMEOUT} s of saving other.css and base.css")
        shown_background = evaluate_settled(page, background)
        shown_h1 = evaluate_settled(page, h1)
    return {"reloaded": event is not None, "background": shown_background, "h1": shown_h1}


def scenario_folder(binary, folder, page, args):
    """A page whose folder is renamed away reloads into rill's live 404,
    which still listens, and comes back once the folder is renamed back."""
    posts = os.path.join(folder, "blog", "posts")
    os.makedirs(posts)
    write_in_place(
        os.path.join(posts, "p1.html"),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>p1</title></head>\n"
        "<body><p>post one</p></body></html>\n",
    )
    write_in_place(
        os.path.join(folder, "index.html"),
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>index</title></head>\n"
        "<body><p>the index</p></body></html>\n",
    )
    blog, blog2 = os.path.join(folder, "blog"), os.path.join(folder, "blog2")
    with Rill(binary, folder) as rill:
        open_live_page(page, f"http://127.0.0.1:{rill.port}/blog/posts/p1.html")
        time.sleep(SETTLE)
        # Away: the page's URL now names nothing.
        since = page.mark()
        os.rename(blog, blog2)
        t0 = time.monotonic()
        gone = wait_for_load_showing(page, "404 Not Found", since, RELOAD_TIMEOUT)
        connected = False
        if gone is not None:
            log(f"404 shown {1000 * (gone.received - t0):.1f} ms after renaming blog to blog2")
            connected = page.wait_until(CONNECTED, CONNECT_TIMEOUT)
            if connected:
                log("live.js is connected on the 404 page")
            else:
                warn(f"the 404 page never reported connected within {CONNECT_TIMEOUT} s")
            time.sleep(SETTLE)
        else:
            warn(f"no load showing '404 Not Found' within {RELOAD_TIMEOUT} s of renaming blog")
        # And back: the same URL is the post again.
        since = page.mark()
        os.rename(blog2, blog)
        t0 = time.monotonic()
        back = wait_for_load_showing(page, "post one", since, RELOAD_TIMEOUT)
        if back is not None:
            log(f"post shown {1000 * (back.received - t0):.1f} ms after renaming blog2 back")
        else:
            warn(f"no load showing 'post one' within {RELOAD_TIMEOUT} s of renaming blog2 back")
    return {
        "reloaded_to_404": gone is not None,
        "404_connected": connected,
        "reloaded_back": back is not None,
    }

SCENARIOS = {
    "reload": scenario_reload,
    "css": scenario_css,
    "restart": scenario_restart,
    "listing": scenario_listing,
    "index": scenario_index,
    "script": scenario_script,
    "late": scenario_late,
    "import": scenario_import,
    "folder": scenario_folder,
}


def main():
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rill", required=True, help="path to the rill binary")
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--saves", type=int, default=20, help="saves in the reload scenario")
    parser.add_argument("--chromium", default="chromium", help="the browser binary")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="browser console, rill's log and each step on stderr")
    args = parser.parse_args()
    if args.saves < 1:
        parser.error("--saves must be at least 1")
    VERBOSE = args.verbose
    binary = os.path.abspath(args.rill)

    # A watchdog for the whole run: SIGALRM raises in the main thread, and
    # the `with` blocks below still stop rill and the browser.
    deadline = RUN_DEADLINE + (PER_SAVE_DEADLINE * args.saves if args.scenario == "reload" else 0)

    def out_of_time(signum, frame):
        raise HarnessError(f"the run took longer than {deadline} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(deadline)

    folder = tempfile.mkdtemp(prefix="rill-live-")
    started = time.monotonic()
    try:
        with Browser(binary=args.chromium, verbose=VERBOSE) as browser:
            page = browser.new_page()
            result = SCENARIOS[args.scenario](binary, folder, page, args)
    except (HarnessError, CDPError) as e:
        print(f"live_reload.py: harness failure in '{args.scenario}': {e}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        shutil.rmtree(folder, ignore_errors=True)
    log(f"scenario '{args.scenario}' took {time.monotonic() - started:.2f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
