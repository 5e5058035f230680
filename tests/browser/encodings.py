"""Precompressed siblings in a real browser: headless Chromium runs the
`app.js` rill chose for it.

    python3 tests/browser/encodings.py --rill target/debug/rill [--verbose]

Makes a folder (ROOT) with a page, `index.html`, whose `<script
src="app.js">` runs one of three different files, so the page can tell
which one rill sent:

    app.js      window.loadedFrom = "identity"
    app.js.gz   gzip of  window.loadedFrom = "gzip"
    app.js.br   brotli (Node's zlib) of  window.loadedFrom = "br"

(the siblings a minute younger than `app.js`, so rill may use them). The
page then sets its title to "loaded " + window.loadedFrom.

Serves ROOT twice, from one rill over plain HTTP and one with
`--tls-self-signed` (the browser trusts exactly that certificate's key with
`--ignore-certificate-errors-spki-list`), and loads the page from each in a
fresh tab with the cache off. Chromium advertises `br` only to secure
origins (HTTPS, and 127.0.0.1, which counts as one: Chromium 156 asks
`gzip, deflate, br, zstd` over both), so what it asks for is recorded beside
what it got: the request's
real `Accept-Encoding` (Network.requestWillBeSentExtraInfo), the answer's
status and headers (Network.responseReceived), `window.loadedFrom` and the
title.

Prints ONE JSON object on stdout; the Rust test (tests/encodings.rs)
decides. Exits 2, with a message on stderr, when the harness itself could
not run.
"""

import argparse
import gzip
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

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402
from cdp import Browser, CDPError  # noqa: E402

RUN_DEADLINE = 50  # seconds for the whole run
VERBOSE = False


def log(message):
    if VERBOSE:
        sys.stderr.write(f"[harness {time.monotonic():.3f}] {message}\n")


class HarnessError(Exception):
    """The harness could not do its job (as opposed to rill failing)."""


class Rill:
    """rill on 127.0.0.1:0 serving `root`, plain or `--tls-self-signed`."""

    ADDRESS = re.compile(r"listening on (https?)://(127\.0\.0\.1:\d+)")
    PIN = re.compile(r"certificate public key pin .*sha256//(\S+)")
    SAVED = re.compile(r"certificate saved for --cacert at ")

    def __init__(self, binary, root, tls, timeout=10.0):
        command = [binary, "--listen", "127.0.0.1:0", "--log-level", "warn"]
        if tls:
            command.append("--tls-self-signed")
        command.append(root)
        log(f"starting {' '.join(command)}")
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as e:
            raise HarnessError(f"cannot start rill ({binary}): {e}") from None
        self.tls = tls
        self.origin = None
        self.pin = None
        self.stderr = deque(maxlen=100)
        self.ready = threading.Event()
        self.readers = [
            threading.Thread(target=self._stdout, daemon=True),
            threading.Thread(target=self._stderr, daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        if not self.ready.wait(timeout) or self.origin is None:
            self.stop()
            raise HarnessError(f"rill did not announce itself: {list(self.stderr)}")
        log(f"rill (pid {self.process.pid}) on {self.origin}")

    def _stdout(self):
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if VERBOSE:
                sys.stderr.write(f"[rill stdout] {line}\n")
            match = self.ADDRESS.search(line)
            if match and self.origin is None:
                self.origin = f"{match.group(1)}://{match.group(2)}"
                if not self.tls:
                    self.ready.set()
            match = self.PIN.search(line)
            if match:
                self.pin = match.group(1)
            if self.SAVED.search(line) and self.pin:
                self.ready.set()
        self.ready.set()

    def _stderr(self):
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr.append(line)
            if VERBOSE:
                sys.stderr.write(f"[rill stderr] {line}\n")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for reader in self.readers:
            reader.join(timeout=2)


class FlaggedBrowser(Browser):
    """cdp.Browser with extra Chromium flags (swapped in for the start)."""

    def __init__(self, extra_flags, **kwargs):
        super().__init__(**kwargs)
        self.extra_flags = list(extra_flags)

    def start(self):
        saved = cdp.CHROMIUM_FLAGS
        cdp.CHROMIUM_FLAGS = [*saved, *self.extra_flags]
        try:
            return super().start()
        finally:
            cdp.CHROMIUM_FLAGS = saved


def brotli(data):
    """Brotli by Node's zlib (Python's standard library has none)."""
    script = (
        "let c=[];process.stdin.on('data',d=>c.push(d)).on('end',()=>"
        "process.stdout.write(require('zlib').brotliCompressSync(Buffer.concat(c))))"
    )
    try:
        done = subprocess.run(["node", "-e", script], input=data, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HarnessError(f"node could not make brotli: {e}") from None
    if done.returncode != 0:
        raise HarnessError(f"node failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def make_site(root):
    page = (
        '<!doctype html><meta charset="utf-8"><title>waiting</title>\n'
        '<script src="app.js"></script>\n'
        '<script>document.title = "loaded " + window.loadedFrom;</script>\n'
        "<p>precompressed scripts</p>\n"
    )
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write(page)
    # Padding makes them more like a real script; each differs on purpose.
    padding = "".join(f"// line {i} of padding to compress\n" for i in range(200))
    sources = {
        "app.js": f'window.loadedFrom = "identity";\n{padding}'.encode(),
        "app.js.gz": gzip.compress(f'window.loadedFrom = "gzip";\n{padding}'.encode(), mtime=0),
        "app.js.br": brotli(f'window.loadedFrom = "br";\n{padding}'.encode()),
    }
    base = time.time() - 3600
    for name, data in sources.items():
        path = os.path.join(root, name)
        with open(path, "wb") as f:
            f.write(data)
        stamp = base if name == "app.js" else base + 60
        os.utime(path, (stamp, stamp))


def lower_keys(headers):
    return {k.lower(): v for k, v in (headers or {}).items()}


def visit(browser, origin):
    """Loads origin/index.html in a new tab; what was asked, sent and run."""
    page = browser.new_page()
    page.send("Network.enable")
    page.send("Network.setCacheDisabled", {"cacheDisabled": True})
    since = page.mark()
    url = f"{origin}/index.html"
    page.navigate(url)
    page.wait_until("document.title !== 'waiting'", timeout=5)
    result = {
        "loaded_from": page.evaluate("String(window.loadedFrom)"),
        "title": page.evaluate("document.title"),
        "page_status": None,
        "script": {},
        "errors": [],
    }
    script_url = f"{origin}/app.js"
    # The ExtraInfo events may trail the load event a little.
    deadline = time.monotonic() + 3
    while True:
        ids = {
            e.params["requestId"]
            for e in page.events("Network.requestWillBeSent", since)
            if e.params["request"]["url"] == script_url
        }
        extra = [
            e for e in page.events("Network.requestWillBeSentExtraInfo", since)
            if e.params["requestId"] in ids
        ]
        answers = [
            e for e in page.events("Network.responseReceived", since)
            if e.params["requestId"] in ids
        ]
        if (extra and answers) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for e in page.events("Network.responseReceived", since):
        if e.params["response"]["url"] == url:
            result["page_status"] = e.params["response"]["status"]
    if extra:
        asked = lower_keys(extra[0].params.get("headers"))
        result["script"]["accept_encoding"] = asked.get("accept-encoding")
    if answers:
        response = answers[0].params["response"]
        headers = lower_keys(response.get("headers"))
        result["script"].update(
            status=str(response["status"]),
            content_encoding=headers.get("content-encoding"),
            content_type=headers.get("content-type"),
            vary=headers.get("vary"),
            protocol=response.get("protocol"),
        )
    failed = page.events("Network.loadingFailed", since)
    result["errors"] = [e.params.get("errorText") for e in failed]
    result["errors"] += [
        text
        for _, text in page.console_messages(since)
        if "error" in text.lower() and "/favicon.ico" not in text  # none in ROOT
    ]
    log(f"{origin}: {json.dumps(result)}")
    return result


def run(binary, chromium):
    root = tempfile.mkdtemp(prefix="rill-encodings-")
    plain = tls = None
    try:
        make_site(root)
        plain = Rill(binary, root, tls=False)
        tls = Rill(binary, root, tls=True)
        flags = [f"--ignore-certificate-errors-spki-list={tls.pin}"]
        with FlaggedBrowser(flags, binary=chromium, verbose=VERBOSE) as browser:
            report = {
                "http": visit(browser, plain.origin),
                "https": visit(browser, tls.origin),
            }
        report["rill_stderr"] = list(plain.stderr) + list(tls.stderr)
        return report
    finally:
        for rill in (plain, tls):
            if rill is not None:
                rill.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rill", required=True, help="path to the rill binary")
    parser.add_argument("--chromium", default="chromium", help="the browser binary")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args()
    VERBOSE = args.verbose

    def out_of_time(signum, frame):
        raise HarnessError(f"the run took longer than {RUN_DEADLINE} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(RUN_DEADLINE)
    try:
        report = run(os.path.abspath(args.rill), args.chromium)
    except (HarnessError, CDPError) as e:
        print(f"encodings.py: harness failure: {e}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
