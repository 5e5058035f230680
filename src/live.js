// rill --live-reload: appended to every HTML page rill serves as a document.
// It listens on a WebSocket for the server's change messages and
//  - restyles in place when only stylesheets changed (no reload, no flash);
//  - otherwise reloads, if the page itself, a file it loaded, or (for a
//    folder listing) an entry of its folder changed.
// The <script> tag carries the server's boot id and change generation as
// they were when this page was served. The page connects with its
// generation; the server's first message says its boot id, and a page that
// is behind is then sent the changes it missed, judged like any other. Only
// another boot id reloads on connect: a restarted server reloads an old page
// once, and a late or repeated connect never reloads for nothing.
(() => {
  "use strict";
  const tag = document.currentScript;
  if (!tag || window.__rillLive) return;
  const live = (window.__rillLive = {
    connected: false,
    boot: tag.dataset.boot,
    generation: Number(tag.dataset.generation),
    messages: 0,
  });
  // A folder listing shows its folder's entries: a change to any concerns it.
  const listing = tag.hasAttribute("data-listing");
  let retryDelay = 200;
  // The resources a page loaded are how it knows what concerns it; the
  // browser keeps only 250 of them unless told otherwise.
  if (performance.setResourceTimingBufferSize) performance.setResourceTimingBufferSize(10000);

  function connect() {
    // A hidden tab waits until it is shown: no reconnect storm from
    // background tabs while the server restarts.
    if (document.hidden) {
      document.addEventListener("visibilitychange", connect, { once: true });
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(
      scheme + location.host + "/.rill/live?generation=" + live.generation,
    );
    socket.onmessage = (event) => {
      live.messages += 1;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "hello") {
        retryDelay = 200;
        if (message.boot !== live.boot) {
          location.reload();
          return;
        }
        live.connected = true;
      } else if (message.type === "change") {
        live.generation = message.generation;
        apply(message);
      }
    };
    socket.onclose = () => {
      live.connected = false;
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    };
  }

  // Paths are compared decoded, as the server sends them.
  const decoded = (path) => {
    try {
      return decodeURIComponent(path);
    } catch {
      return path;
    }
  };
  const here = () => decoded(location.pathname);
  const parentOf = (path) => path.replace(/[^/]*\/?$/, "");
  const sameOriginPath = (url) => {
    const parsed = new URL(url, location.href);
    return parsed.origin === location.origin ? decoded(parsed.pathname) : null;
  };

  function touchesPage(path) {
    const page = here();
    const loaded = performance
      .getEntriesByType("resource")
      .map((entry) => sameOriginPath(entry.name));
    if (path.endsWith("/")) {
      // A folder renamed, moved or deleted: every page and file inside it.
      if (page.startsWith(path) || loaded.some((p) => p && p.startsWith(path))) return true;
      return listing && parentOf(path) === page;
    }
    if (path === page) return true;
    if (page.endsWith("/") && path === page + "index.html") return true;
    if (listing && parentOf(path) === page) return true;
    return loaded.includes(path);
  }

  function apply(message) {
    if (message.everything) return location.reload();
    const paths = message.paths;
    if (paths.length > 0 && paths.every((path) => path.endsWith(".css"))) {
      const links = [...document.querySelectorAll('link[rel~="stylesheet"]')].filter((link) =>
        paths.includes(sameOriginPath(link.href)),
      );
      const linked = new Set(links.map((link) => sameOriginPath(link.href)));
      // A changed sheet this page reaches otherwise (an @import) can only
      // be re-read by a reload; the <link>ed ones are swapped in place.
      const elsewhere = paths.filter((path) => !linked.has(path));
      if (elsewhere.some(touchesPage)) return location.reload();
      // One swap per sheet: the newest link to it (an earlier swap's
      // new link may still be loading beside the old one).
      const newest = new Map(links.map((link) => [sameOriginPath(link.href), link]));
      newest.forEach(swapStylesheet);
      return;
    }
    if (!paths.some(touchesPage)) return;
    // rill's listing page refreshes its table in place: a reload would cut
    // off the uploads still queued on it (each file lands as a change).
    const listingPage = window.__rillListing;
    if (listingPage && listingPage.refresh) return listingPage.refresh();
    location.reload();
  }

  // The new sheet is loaded beside the old one, which goes only once the new
  // one applies: no moment without styles. Once it has loaded, every other
  // link to the same sheet goes, so swaps that overlap (a second save while
  // the first new sheet loads) still leave exactly one.
  function swapStylesheet(link) {
    const path = sameOriginPath(link.href);
    const fresh = link.cloneNode();
    const url = new URL(link.href, location.href);
    url.searchParams.set("rill-live", String(live.generation));
    fresh.href = url.href;
    const done = () => {
      for (const other of document.querySelectorAll('link[rel~="stylesheet"]')) {
        if (other !== fresh && sameOriginPath(other.href) === path) other.remove();
      }
    };
    fresh.addEventListener("load", done, { once: true });
    fresh.addEventListener("error", done, { once: true });
    link.after(fresh);
  }

  connect();
})();
