"""An upload through rill's listing-page form, over HTTPS, in headless Chromium.

    python3 tests/browser/https_upload.py --rill target/debug/rill [--verbose]

Starts rill with `--tls-self-signed --uploads` on a temporary folder (ROOT)
and a headless Chromium (driven by cdp.py, beside this file) that trusts
exactly rill's certificate: rill prints its public key pin, and Chromium
gets it as `--ignore-certificate-errors-spki-list`, no blanket
`--ignore-certificate-errors`. Then, as a user would:

1. control: a second rill, with a certificate of its own, must NOT load
   (the browser trusts the first key only);
2. the listing of / over https: status, TLS details, the certificate the
   browser saw (its SHA-256 against the fingerprint rill printed),
   `isSecureContext`, `location.protocol`, the navigation's
   `nextHopProtocol`, and the upload form's action (relative, so the form
   posts back to the page's own https origin);
3. "click": two files (3 MiB of pseudo-random bytes and a small text file)
   are set on the form's file input with DOM.setFileInputFiles and the
   Upload button is clicked with real mouse events. The page's script sends
   each file with XMLHttpRequest (201 + JSON), one after the other, then
   refreshes the listing's table in place;
4. "form": the same in the folder /form/, but the page is loaded with
   JavaScript disabled (Emulation.setScriptExecutionDisabled), so the
   click makes the browser's own multipart POST navigation and the answer
   is rill's HTML "Uploaded" page;
5. what ROOT holds afterwards: each file's size and SHA-256 against the
   original, and no leftover temp files.

It prints ONE JSON object on stdout with what it saw; the Rust test
(tests/browser_tls.rs) decides pass or fail from it. The script exits 0
whenever it could observe, and 2 (with a message on stderr) only when the
harness itself could not run (no browser, rill did not start, a page that
should have loaded did not, ...).

`--verbose` echoes the browser's console, rill's log (at --log-level debug)
and each step to stderr.
"""

import argparse
import base64
import hashlib
import json
import os
import random
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
import cdp  # noqa: E402
from cdp import Browser, CDPError  # noqa: E402

LOAD = "Page.loadEventFired"
BIG_SIZE = 3 * 1024 * 1024  # the pseudo-random file
PAGE_TIMEOUT = 10.0  # a page load, an upload's answer
RUN_DEADLINE = 50  # the whole run, in seconds (the Rust test wants < 60)

VERBOSE = False


def log(message):
    """A progress line on stderr, in --verbose mode only."""
    if VERBOSE:
        sys.stderr.write(f"[harness {time.monotonic():.3f}] {message}\n")


class HarnessError(Exception):
    """The harness could not do its job (as opposed to rill failing)."""


# ---------------------------------------------------------------------------
# rill with --tls-self-signed


class TlsRill:
    """A running rill serving `root` over HTTPS with a self-signed
    certificate, on a free port of 127.0.0.1.

    At start it prints (on stdout, in this order) its address, the
    certificate's SHA-256 fingerprint, the public key pin for curl's
    --pinnedpubkey (`sha256//BASE64`, the same value Chromium's
    --ignore-certificate-errors-spki-list takes) and where it saved the PEM.
    Threads keep reading both pipes so rill never blocks on them; stderr's
    lines are kept for the report.
    """

    PATTERNS = {
        "address": re.compile(r"listening on https://(127\.0\.0\.1:\d+)"),
        "fingerprint": re.compile(r"certificate sha256 fingerprint ([0-9A-F:]+)"),
        "pin": re.compile(r"certificate public key pin .*sha256//(\S+)"),
        "pem": re.compile(r"certificate saved for --cacert at (\S+)"),
    }

    def __init__(self, binary, root, extra=(), timeout=10.0):
        level = "debug" if VERBOSE else "warn"
        self.command = [
            binary, "--listen", "127.0.0.1:0", "--log-level", level,
            "--tls-self-signed", *extra, root,
        ]
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
        self.announce = {}
        self.lock = threading.Lock()
        self.complete = threading.Event()
        self.stderr = deque(maxlen=200)
        self.tail = deque(maxlen=40)  # both streams, for error messages
        self.readers = [
            threading.Thread(target=self._read, args=(pipe, name), daemon=True)
            for pipe, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))
        ]
        for reader in self.readers:
            reader.start()
        deadline = time.monotonic() + timeout
        while not self.complete.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.tail)
                raise HarnessError(f"rill did not announce its address and certificate:\n{tail}")
        self.address = self.announce["address"]
        self.origin = f"https://{self.address}"
        log(f"rill (pid {self.process.pid}) listens on {self.origin}")

    def _read(self, pipe, name):
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            if name == "stderr":
                self.stderr.append(line)
            if VERBOSE:
                sys.stderr.write(f"[rill {name}] {line}\n")
            if name == "stdout":
                with self.lock:
                    for key, pattern in self.PATTERNS.items():
                        match = pattern.search(line)
                        if match and key not in self.announce:
                            self.announce[key] = match.group(1)
                    if len(self.announce) == len(self.PATTERNS):
                        self.complete.set()

    def stop(self):
        """SIGTERM, wait (SIGKILL after 10 s). Safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for reader in self.readers:
            reader.join(timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


# ---------------------------------------------------------------------------
# the browser, with extra command-line flags


class FlaggedBrowser(Browser):
    """cdp.Browser started with extra Chromium flags.

    cdp.Browser.start builds its command from the module's CHROMIUM_FLAGS;
    this swaps in a longer list for the duration of the start only.
    """

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


# ---------------------------------------------------------------------------
# helpers


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_sources(folder, seed):
    """The two files a user picks: 3 MiB of pseudo-random bytes and a short
    text. Returns their paths."""
    os.makedirs(folder)
    big = os.path.join(folder, "random.bin")
    with open(big, "wb") as f:
        f.write(random.Random(seed).randbytes(BIG_SIZE))
    notes = os.path.join(folder, "notes.txt")
    with open(notes, "w") as f:
        f.write(f"notes for upload {seed}: héllo over https\n")
    return [big, notes]


def compare_stored(sources, folder):
    """For each source file, what `folder` holds under its name."""
    result = []
    for source in sources:
        name = os.path.basename(source)
        stored = os.path.join(folder, name)
        entry = {
            "name": name,
            "expected_size": os.path.getsize(source),
            "expected_sha256": sha256_file(source),
            "exists": os.path.isfile(stored),
            "size": None,
            "sha256": None,
        }
        if entry["exists"]:
            entry["size"] = os.path.getsize(stored)
            entry["sha256"] = sha256_file(stored)
        entry["identical"] = (
            entry["exists"]
            and entry["size"] == entry["expected_size"]
            and entry["sha256"] == entry["expected_sha256"]
        )
        result.append(entry)
    return result


def all_entries(root):
    """Every file and folder under `root`, relative, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def der_fingerprint(der_base64):
    """`AB:CD:...`, the way rill prints its certificate's fingerprint."""
    digest = hashlib.sha256(base64.b64decode(der_base64)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def wait_event(page, method, predicate, timeout, since):
    """The first of this tab's events named `method` from log position
    `since` on for which predicate(params) holds, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    position = since
    while True:
        event = page.wait_for_event(method, max(0.0, deadline - time.monotonic()), position)
        if event is None:
            return None
        if predicate(event.params):
            return event
        position = event.seq + 1


class NetworkLog:
    """This tab's Network events, sorted by request: what was asked, how it
    was answered, and whether it finished or failed."""

    def __init__(self, page, since=0):
        self.requests = {}  # requestId -> dict, in order of first sight
        for event in page.events("Network.requestWillBeSent", since):
            p = event.params
            self.requests.setdefault(p["requestId"], {
                "method": p["request"]["method"],
                "url": p["request"]["url"],
                "type": p.get("type"),
                "content_type": _header(p["request"].get("headers", {}), "content-type"),
                "has_post_data": bool(p["request"].get("hasPostData")),
                "response": None,
                "finished": False,
                "error": None,
                "seq": event.seq,
            })
        for event in page.events("Network.responseReceived", since):
            request = self.requests.get(event.params["requestId"])
            if request is not None:
                request["response"] = event.params["response"]
        for event in page.events("Network.loadingFinished", since):
            request = self.requests.get(event.params["requestId"])
            if request is not None:
                request["finished"] = True
        for event in page.events("Network.loadingFailed", since):
            request = self.requests.get(event.params["requestId"])
            if request is not None:
                request["error"] = event.params.get("errorText")

    def find(self, method, url, type_=None):
        """The last request with this method and URL (and resource type)."""
        found = None
        for request_id, request in self.requests.items():
            if request["method"] == method and request["url"] == url and (
                type_ is None or request["type"] == type_
            ):
                found = (request_id, request)
        return found


def _header(headers, name):
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def describe_response(request):
    """The parts of a request and its answer the report keeps."""
    if request is None:
        return None
    response = request["response"] or {}
    security = response.get("securityDetails") or {}
    return {
        "method": request["method"],
        "url": request["url"],
        "type": request["type"],
        "request_content_type": request["content_type"],
        "status": response.get("status"),
        "mime_type": response.get("mimeType"),
        "location": _header(response.get("headers", {}), "location"),
        "protocol": response.get("protocol"),
        "security_state": response.get("securityState"),
        "tls_protocol": security.get("protocol"),
        "tls_cipher": security.get("cipher"),
        "tls_key_exchange_group": security.get("keyExchangeGroup"),
        "certificate_subject": security.get("subjectName"),
        "certificate_sans": security.get("sanList"),
        "remote_address": (
            f"{response.get('remoteIPAddress')}:{response.get('remotePort')}" if response else None
        ),
        "finished": request["finished"],
        "error": request["error"],
    }


# What the page itself says about where it came from and how.
PAGE_STATE = """(() => {
  const nav = performance.getEntriesByType("navigation")[0] || performance.getEntries()[0];
  const form = document.getElementById("upload");
  const input = form && form.querySelector("input[type=file]");
  return {
    href: location.href,
    location_protocol: location.protocol,
    is_secure_context: window.isSecureContext,
    next_hop_protocol: nav ? nav.nextHopProtocol : null,
    navigation_type: nav ? nav.type : null,
    response_status: nav && "responseStatus" in nav ? nav.responseStatus : null,
    title: document.title,
    text: document.body ? document.body.innerText : null,
    form: form ? {
      action_attribute: form.getAttribute("action"),
      action: form.action,
      method: form.method,
      enctype: form.enctype,
      input_multiple: !!(input && input.multiple),
      input_name: input ? input.name : null,
    } : null,
  };
})()"""


def page_state(page, tries=20):
    """PAGE_STATE, retried while a navigation replaces the document."""
    for _ in range(tries):
        try:
            state = page.evaluate(PAGE_STATE)
            if state:
                return state
        except CDPError:
            pass
        time.sleep(0.1)
    raise HarnessError("cannot read the page's state: it never settled")


def navigate(page, url):
    try:
        page.navigate(url, timeout=PAGE_TIMEOUT)
    except CDPError as e:
        raise HarnessError(str(e)) from None
    log(f"loaded {url}")


def set_files(page, paths):
    """DOM.setFileInputFiles on the upload form's file input; returns the
    names the input then holds (read back from the page)."""
    root = page.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
    node = page.send("DOM.querySelector", {
        "nodeId": root, "selector": "#upload input[type=file]",
    })["nodeId"]
    if not node:
        raise HarnessError("the page has no #upload input[type=file]")
    page.send("DOM.setFileInputFiles", {"nodeId": node, "files": paths})
    return page.evaluate(
        "Array.from(document.querySelector('#upload input[type=file]').files,"
        " f => [f.name, f.size])"
    )


def click_upload_button(page):
    """A left click, with mouse events, in the middle of the Upload button."""
    center = page.evaluate(
        "(() => { const b = document.querySelector('#upload button[type=submit]');"
        " b.scrollIntoView({block: 'center'}); const r = b.getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    x, y = center
    page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    for kind in ("mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent", {
            "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1,
        })
    log(f"clicked Upload at ({x:.0f}, {y:.0f})")


def wait_for_post(page, url, since, timeout=PAGE_TIMEOUT):
    """Waits for the POST to `url` sent from log position `since` on to
    finish or fail. Returns its requestId, or None."""
    sent = wait_event(
        page, "Network.requestWillBeSent",
        lambda p: p["request"]["method"] == "POST" and p["request"]["url"] == url,
        timeout, since,
    )
    if sent is None:
        return None
    request_id = sent.params["requestId"]
    deadline = time.monotonic() + timeout
    while True:
        for method in ("Network.loadingFinished", "Network.loadingFailed"):
            if any(e.params["requestId"] == request_id for e in page.events(method, sent.seq)):
                return request_id
        left = deadline - time.monotonic()
        if left <= 0:
            return request_id
        time.sleep(min(0.05, left))


def read_paused_answer(page, since, timeout=PAGE_TIMEOUT):
    """The body of the first answer paused by Fetch from log position
    `since` on (as text), after which the answer goes on to the page."""
    paused = wait_event(page, "Fetch.requestPaused", lambda p: True, timeout, since)
    if paused is None:
        return None
    request_id = paused.params["requestId"]
    try:
        answer = page.send("Fetch.getResponseBody", {"requestId": request_id})
        body = answer.get("body", "")
        if answer.get("base64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
    except CDPError as e:
        body = f"(not available: {e})"
    page.send("Fetch.continueResponse", {"requestId": request_id})
    return body


# ---------------------------------------------------------------------------
# the steps


def check_other_certificate(binary, page, scratch):
    """A rill with another key: the browser must refuse it (the SPKI list
    names only the first rill's key)."""
    folder = os.path.join(scratch, "other-root")
    os.makedirs(folder)
    with TlsRill(binary, folder) as other:
        try:
            page.navigate(f"{other.origin}/", timeout=PAGE_TIMEOUT)
            return {"loaded": True, "error": None}
        except CDPError as e:
            match = re.search(r"net::\w+", str(e))
            return {"loaded": False, "error": match.group(0) if match else str(e)}


def check_listing(page, rill):
    """The listing of / over https, and the certificate the browser saw."""
    since = page.mark()
    url = f"{rill.origin}/"
    navigate(page, url)
    state = page_state(page)
    network = NetworkLog(page, since)
    found = network.find("GET", url, "Document")
    document = describe_response(found[1] if found else None)
    seen = None
    try:
        names = page.send("Network.getCertificate", {"origin": rill.origin})["tableNames"]
        if names:
            seen = der_fingerprint(names[0])
    except CDPError as e:
        log(f"Network.getCertificate: {e}")
    visible = page.events("Security.visibleSecurityStateChanged", since)
    visible_state = visible[-1].params["visibleSecurityState"] if visible else {}
    return {
        "page": state,
        "document": document,
        "certificate_fingerprint_seen": seen,
        "certificate_matches_rill": seen is not None and seen == rill.announce["fingerprint"],
        "visible_security_state": visible_state.get("securityState"),
        "security_state_issues": visible_state.get("securityStateIssueIds"),
    }


def upload_by_click(page, folder_url, sources, destination):
    """The listing's form, sent by its own script (XMLHttpRequest, one
    request per file), then the table refreshed in place."""
    navigate(page, folder_url)
    before = page_state(page)
    chosen = set_files(page, sources)
    log(f"the file input holds {chosen}")
    action = before["form"]["action"] if before["form"] else folder_url
    # The first answer's body is read at the response stage (Fetch), held
    # just long enough to read it, then let through unchanged; answers
    # still held when Fetch is disabled go on to the page.
    page.send("Fetch.enable", {"patterns": [
        {"urlPattern": action, "resourceType": "XHR", "requestStage": "Response"},
    ]})
    try:
        since = page.mark()
        t0 = time.monotonic()
        click_upload_button(page)
        body = read_paused_answer(page, since)
        post = wait_for_post(page, action, since)
        seconds = time.monotonic() - t0
    finally:
        page.send("Fetch.disable")
    # Once every file is in, the script refreshes the table in place (the
    # page's `__rillListing.refreshes` counts it), which then shows the files.
    refreshed = page.wait_until(
        "!!window.__rillListing && window.__rillListing.refreshes > 0", PAGE_TIMEOUT)
    shows = False
    if refreshed:
        shows = page.wait_until(
            "document.body && " + " && ".join(
                f"document.body.innerText.includes({json.dumps(os.path.basename(s))})"
                for s in sources
            ),
            3.0,
        )
    after = page_state(page)
    network = NetworkLog(page, since)
    request = network.requests.get(post) if post is not None else None
    status_line = page.evaluate(
        "(document.getElementById('upload-status') || {}).textContent || ''"
    )
    return {
        "page_before": {k: before[k] for k in ("href", "location_protocol", "is_secure_context",
                                               "next_hop_protocol", "form")},
        "chosen_files": chosen,
        "post": describe_response(request),
        "post_answer_body": body,
        "post_seconds": round(seconds, 3),
        "refreshed": refreshed,
        "after_shows_files": shows,
        "page_after": after,
        "status_text_after": status_line,
        "files": compare_stored(sources, destination),
    }


def upload_without_javascript(page, folder_url, sources, destination):
    """The same form with JavaScript off: the click makes the browser's own
    multipart/form-data POST navigation, answered by rill's HTML page."""
    page.send("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        navigate(page, folder_url)
        before = page_state(page)
        chosen = set_files(page, sources)
        log(f"the file input holds {chosen}")
        since = page.mark()
        t0 = time.monotonic()
        click_upload_button(page)
        action = before["form"]["action"] if before["form"] else folder_url
        post = wait_for_post(page, action, since)
        loaded = wait_event(page, LOAD, lambda p: True, PAGE_TIMEOUT, since) is not None
        seconds = time.monotonic() - t0
        after = page_state(page)
    finally:
        page.send("Emulation.setScriptExecutionDisabled", {"value": False})
    network = NetworkLog(page, since)
    request = network.requests.get(post) if post is not None else None
    return {
        "page_before": {k: before[k] for k in ("href", "location_protocol", "is_secure_context",
                                               "next_hop_protocol", "form")},
        "chosen_files": chosen,
        "post": describe_response(request),
        "post_seconds": round(seconds, 3),
        "loaded": loaded,
        "page_after": after,
        "files": compare_stored(sources, destination),
    }


def run(binary, chromium):
    scratch = tempfile.mkdtemp(prefix="rill-https-upload-")
    try:
        root = os.path.join(scratch, "root")
        os.makedirs(os.path.join(root, "form"))
        click_sources = make_sources(os.path.join(scratch, "picked-click"), seed=1)
        form_sources = make_sources(os.path.join(scratch, "picked-form"), seed=2)
        report = {}
        with TlsRill(binary, root, extra=["--uploads"]) as rill:
            report["rill"] = {
                "origin": rill.origin,
                "fingerprint": rill.announce["fingerprint"],
                "pin": rill.announce["pin"],
            }
            flags = [f"--ignore-certificate-errors-spki-list={rill.announce['pin']}"]
            report["chromium_flags"] = flags
            with FlaggedBrowser(flags, binary=chromium, verbose=VERBOSE) as browser:
                page = browser.new_page()
                page.send("Network.enable")
                page.send("Security.enable")
                page.send("DOM.enable")
                started = page.mark()
                report["other_certificate"] = check_other_certificate(binary, page, scratch)
                log(f"another rill's certificate: {report['other_certificate']}")
                report["listing"] = check_listing(page, rill)
                report["click"] = upload_by_click(
                    page, f"{rill.origin}/", click_sources, root)
                report["form"] = upload_without_javascript(
                    page, f"{rill.origin}/form/", form_sources, os.path.join(root, "form"))
                network = NetworkLog(page, started)
                # (data: URLs are the certificate error page's own images.)
                report["requests"] = [
                    f"{r['method']} {r['url']}" for r in network.requests.values()
                    if not r["url"].startswith("data:")
                ]
                report["plain_http_requests"] = [
                    f"{r['method']} {r['url']}" for r in network.requests.values()
                    if r["url"].startswith("http:")
                ]
                report["network_errors"] = [
                    f"{r['method']} {r['url']}: {r['error']}" for r in network.requests.values()
                    if r["error"]
                ]
                report["console"] = [text for _, text in page.console_messages(started)]
        report["root_entries"] = all_entries(root)
        report["rill_stderr"] = list(rill.stderr)
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rill", required=True, help="path to the rill binary")
    parser.add_argument("--chromium", default="chromium", help="the browser binary")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="browser console, rill's debug log and each step on stderr")
    args = parser.parse_args()
    VERBOSE = args.verbose
    binary = os.path.abspath(args.rill)

    def out_of_time(signum, frame):
        raise HarnessError(f"the run took longer than {RUN_DEADLINE} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(RUN_DEADLINE)
    started = time.monotonic()
    try:
        report = run(binary, args.chromium)
    except (HarnessError, CDPError) as e:
        print(f"https_upload.py: harness failure: {e}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    report["seconds"] = round(time.monotonic() - started, 3)
    log(f"the run took {report['seconds']:.2f} s")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
