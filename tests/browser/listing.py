"""rill's folder page in headless Chromium: sorting, filtering, themes,
uploads (with cancel) and breadcrumbs.

    python3 tests/browser/listing.py --url http://127.0.0.1:PORT/ --sources DIR \
        [--screenshots docs/] [--verbose]

rill must already be serving (with `--uploads`) a folder laid out as
tests/browser_listing.rs makes it; DIR holds the files to upload
(small.txt, medium.bin, big.bin). The script drives the page the way a
person would (real mouse clicks, typed text, the file picker through
DOM.setFileInputFiles) and prints ONE JSON object on stdout with what it
saw. The Rust test decides from that (and from what is on disk afterwards)
whether the page works; this script only observes, so it exits 0 whenever
it could observe, and non-zero (with a message on stderr) only when the
harness itself could not run.

With `--screenshots DIR` it also saves listing-light.png, listing-dark.png
and listing-phone.png (375 x 740) there.
"""

import argparse
import base64
import json
import os
import signal
import sys
import time

# cdp.py sits beside this file. No __pycache__ left in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser, CDPError  # noqa: E402

LOAD = "Page.loadEventFired"
RUN_DEADLINE = 150  # seconds for the whole run
UPLOAD_TIMEOUT = 30.0
VERBOSE = False


def log(message):
    if VERBOSE:
        sys.stderr.write(f"[harness {time.monotonic():.3f}] {message}\n")


class HarnessError(Exception):
    """The harness could not do its job (as opposed to the page failing)."""


# The names of the table's rows, in order; only the visible ones.
ROW_NAMES = (
    "Array.from(document.querySelectorAll('#listing tbody tr:not(.up)'))"
    ".filter(r => !r.hidden).map(r => r.querySelector('td.name a').textContent)"
)


def click(page, selector, wait_load=False, timeout=10.0):
    """A left click with real mouse events in the middle of the element;
    with `wait_load`, waits for the navigation it starts (returns whether
    a load came)."""
    center = page.evaluate(
        "(() => { const e = document.querySelector(%s); if (!e) return null;"
        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
        " return [r.x + r.width / 2, r.y + r.height / 2]; })()" % json.dumps(selector)
    )
    if center is None:
        raise HarnessError(f"nothing matches {selector}")
    x, y = center
    since = page.mark()
    page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    for kind in ("mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent", {
            "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1,
        })
    log(f"clicked {selector} at ({x:.0f}, {y:.0f})")
    if wait_load:
        return page.wait_for_event(LOAD, timeout, since) is not None
    return True


def page_state(page):
    return page.evaluate(
        "({path: location.pathname, search: location.search, title: document.title,"
        " rows: %s})" % ROW_NAMES
    )


def background(page):
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def set_scheme(page, scheme):
    page.send("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}],
    })


def screenshot(page, folder, name):
    if not folder:
        return
    data = page.send("Page.captureScreenshot", {"format": "png"}, timeout=20)["data"]
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(base64.b64decode(data))
    log(f"saved {path}")


def set_viewport(page, width, height, mobile=False):
    page.send("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
    })


# ---------------------------------------------------------------------------
# the scenarios


def sorting(page, url):
    """Natural order as served, then the Size header clicked twice."""
    page.navigate(url)
    initial = page_state(page)
    by_size = click(page, "#listing th.size a", wait_load=True)
    after_one = page_state(page)
    arrow_one = page.evaluate(
        "(document.querySelector('#listing th[aria-sort]') || {}).className || null")
    by_size_again = click(page, "#listing th.size a", wait_load=True)
    after_two = page_state(page)
    return {
        "initial": initial,
        "size_click_loaded": by_size,
        "after_size_click": after_one,
        "active_column_after_click": arrow_one,
        "second_click_loaded": by_size_again,
        "after_second_click": after_two,
    }


def filtering(page, url):
    """Typing into the filter box narrows the rows at every key."""
    page.navigate(url)
    visible = page.evaluate("!document.getElementById('filter').hidden")
    click(page, "#filter")
    typed = []
    for char in "fiLE1":
        page.send("Input.insertText", {"text": char})
        typed.append({"value": page.evaluate("document.getElementById('filter').value"),
                      "rows": page.evaluate(ROW_NAMES),
                      "count": page.evaluate("document.getElementById('count').textContent")})
    page.evaluate("(() => { const f = document.getElementById('filter');"
                  " f.value = 'nothing-like-this'; f.dispatchEvent(new Event('input')); })()")
    none = page.evaluate(ROW_NAMES)
    page.evaluate("(() => { const f = document.getElementById('filter');"
                  " f.value = ''; f.dispatchEvent(new Event('input')); })()")
    cleared = page.evaluate(ROW_NAMES)
    return {"filter_visible": visible, "typed": typed, "no_match": none, "cleared": cleared}


def set_files(page, paths):
    root = page.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
    node = page.send("DOM.querySelector", {
        "nodeId": root, "selector": "#upload input[type=file]",
    })["nodeId"]
    if not node:
        raise HarnessError("the page has no #upload input[type=file]")
    page.send("DOM.setFileInputFiles", {"nodeId": node, "files": paths})


STATE = "JSON.parse(JSON.stringify(window.__rillListing || null))"


def posts_since(page, since):
    """The POSTs the page sent from log position `since` on, with when each
    started and ended (monotonic seconds) and its status."""
    posts = {}
    for event in page.events("Network.requestWillBeSent", since):
        request = event.params["request"]
        if request["method"] == "POST":
            posts[event.params["requestId"]] = {
                "url": request["url"], "start": event.received, "end": None,
                "status": None, "failed": None,
            }
    for event in page.events("Network.responseReceived", since):
        post = posts.get(event.params["requestId"])
        if post:
            post["status"] = event.params["response"]["status"]
    for method in ("Network.loadingFinished", "Network.loadingFailed"):
        for event in page.events(method, since):
            post = posts.get(event.params["requestId"])
            if post and post["end"] is None:
                post["end"] = event.received
                if method == "Network.loadingFailed":
                    post["failed"] = event.params.get("errorText")
    return sorted(posts.values(), key=lambda p: p["start"])


def uploading(page, url, sources):
    """Two files through the file input and the Upload button: stored, one
    request after the other, and shown without a reload."""
    page.navigate(url)
    files = [os.path.join(sources, name) for name in ("small.txt", "medium.bin")]
    set_files(page, files)
    since = page.mark()
    click(page, "#upload button[type=submit]")
    done = page.wait_until(
        "window.__rillListing.uploaded >= 2 && window.__rillListing.refreshes >= 1",
        UPLOAD_TIMEOUT)
    posts = posts_since(page, since)
    # The page's own record of each request: the second began only once
    # the first had ended.
    sent = page.evaluate("window.__rillListing.sent")
    sequential = len(sent) == 2 and sent[0]["ended"] is not None \
        and sent[1]["started"] >= sent[0]["ended"]
    return {
        "finished": done,
        "loads_since_click": len(page.events(LOAD, since)),
        "state": page.evaluate(STATE),
        "rows": page.evaluate(ROW_NAMES),
        "queue": page.evaluate(
            "Array.from(document.querySelectorAll('#queue li'),"
            " li => [li.className, li.querySelector('.qname').textContent,"
            " li.querySelector('.qpercent').textContent])"),
        "posts": [{k: p[k] for k in ("url", "status", "failed")} for p in posts],
        "sent": sent,
        "sequential": sequential,
    }


def cancelling(page, sources):
    """A big file sent slowly (upload throttled), cancelled half-way."""
    page.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": 2 * 1024 * 1024,
    })
    before = page.evaluate(STATE)
    set_files(page, [os.path.join(sources, "big.bin")])
    since = page.mark()
    click(page, "#upload button[type=submit]")
    last = "#queue li:last-child"
    started = page.wait_until(
        f"(() => {{ const b = document.querySelector('{last} progress');"
        " return b && b.value >= 5 && b.value < 60; })()", UPLOAD_TIMEOUT, interval=0.02)
    progress_text = page.evaluate(
        f"[document.querySelector('{last} .qpercent').textContent,"
        f" document.querySelector('{last} .qspeed').textContent]")
    click(page, f"{last} button.qcancel")
    ended = page.wait_until(
        f"document.querySelector('{last}').className === 'cancelled'", 10.0)
    time.sleep(0.3)
    page.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1,
    })
    return {
        "progress_seen": started,
        "progress_text": progress_text,
        "cancelled": ended,
        "row": page.evaluate(f"[document.querySelector('{last}').className,"
                             f" document.querySelector('{last} .qpercent').textContent]"),
        "state_before": before,
        "state": page.evaluate(STATE),
        "rows": page.evaluate(ROW_NAMES),
        "posts": [{k: p[k] for k in ("url", "status", "failed")}
                  for p in posts_since(page, since)],
    }


def themes(page, folder):
    """Light and dark backgrounds (and the screenshots of both)."""
    set_viewport(page, 1000, 820)
    page.evaluate("window.scrollTo(0, 0)")
    set_scheme(page, "light")
    light = background(page)
    screenshot(page, folder, "listing-light.png")
    set_scheme(page, "dark")
    dark = background(page)
    dark_text = page.evaluate("getComputedStyle(document.body).color")
    screenshot(page, folder, "listing-dark.png")
    set_scheme(page, "light")
    return {"light_background": light, "dark_background": dark, "dark_text": dark_text}


def phone(page, url, folder):
    """375 px wide: no sideways scrolling, the time column gives way."""
    set_viewport(page, 375, 740, mobile=True)
    page.navigate(url)
    result = page.evaluate(
        "({scroll_width: document.documentElement.scrollWidth,"
        " inner_width: innerWidth,"
        " mtime_display: getComputedStyle(document.querySelector('#listing th.mtime')).display,"
        " name_visible: document.querySelector('#listing td.name a').getBoundingClientRect().width > 0})"
    )
    screenshot(page, folder, "listing-phone.png")
    page.send("Emulation.clearDeviceMetricsOverride")
    return result


def breadcrumbs(page, url):
    """In /docs/sub/, the crumb `docs/` leads to /docs/ and `/` to the root."""
    page.navigate(url + "docs/sub/")
    crumbs = page.evaluate(
        "Array.from(document.querySelectorAll('h1.crumbs a'), a => [a.textContent,"
        " a.getAttribute('href')])")
    title = page.evaluate("document.title")
    to_docs = click(page, "h1.crumbs a:nth-child(2)", wait_load=True)
    at_docs = page.evaluate("location.pathname")
    to_root = click(page, "h1.crumbs a:first-child", wait_load=True)
    at_root = page.evaluate("location.pathname")
    return {"title": title, "crumbs": crumbs, "to_docs_loaded": to_docs, "at_docs": at_docs,
            "to_root_loaded": to_root, "at_root": at_root}


def main():
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the listing's root URL, ending in /")
    parser.add_argument("--sources", required=True, help="folder with the files to upload")
    parser.add_argument("--screenshots", help="save the three screenshots in this folder")
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args()
    VERBOSE = args.verbose

    def out_of_time(signum, frame):
        raise HarnessError(f"the run took longer than {RUN_DEADLINE} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(RUN_DEADLINE)
    report = {}
    try:
        with Browser(binary=args.chromium, verbose=VERBOSE) as browser:
            page = browser.new_page()
            page.send("Network.enable")
            set_viewport(page, 1000, 760)
            report["sorting"] = sorting(page, args.url)
            report["filtering"] = filtering(page, args.url)
            report["upload"] = uploading(page, args.url, args.sources)
            report["cancel"] = cancelling(page, args.sources)
            report["themes"] = themes(page, args.screenshots)
            report["phone"] = phone(page, args.url, args.screenshots)
            report["breadcrumbs"] = breadcrumbs(page, args.url)
            report["console"] = [text for _, text in page.console_messages()]
    except (HarnessError, CDPError) as e:
        print(f"listing.py: harness failure: {e}", file=sys.stderr)
        print(json.dumps(report), file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
