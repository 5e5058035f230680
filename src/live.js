// rill --live-reload: appended to every HTML page rill serves as a document.
// It listens on a WebSocket for the server's change messages and
//  - restyles in place when only stylesheets changed (no reload, no flash);
//  - otherwise reloads, if the page itself, a file it loaded, or (for a
//    folder listing) an entry of its folder changed.
// The <script> tag carries the server's boot id and change generation as
// they were when this page was served; the server's first message says what
// they are now. Only a difference reloads on connect: a restarted server
// reloads an old page once, a reconnect after a blip does not reload at all.
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
  let retryDelay = 200;

  function connect() {
    // A hidden tab waits until it is shown: no reconnect storm from
    // background tabs while the server restarts.
    if (document.hidden) {
      document.addEventListener("visibilitychange", connect, { once: true });
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/.rill/live");
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
        if (message.boot !== live.boot || message.generation !== live.generation) {
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
    if (path === page) return true;
    if (page.endsWith("/")) {
      // A folder's index.html, or (for a listing) an entry of the folder.
      if (path === page + "index.html" || parentOf(path) === page) return true;
    }
    return performance
      .getEntriesByType("resource")
      .some((entry) => sameOriginPath(entry.name) === path);
  }

  function apply(message) {
    if (message.everything) return location.reload();
    const paths = message.paths;
    if (paths.length > 0 && paths.every((path) => path.endsWith(".css"))) {
      const links = [...document.querySelectorAll('link[rel~="stylesheet"]')].filter((link) =>
        paths.includes(sameOriginPath(link.href)),
      );
      if (links.length > 0) {
        links.forEach(swapStylesheet);
        return;
      }
      // A stylesheet this page reaches otherwise (an @import): reload.
    }
    if (paths.some(touchesPage)) location.reload();
  }

  // The new sheet is loaded beside the old one, which goes only once the new
  // one applies: no moment without styles.
  function swapStylesheet(link) {
    const fresh = link.cloneNode();
    const url = new URL(link.href, location.href);
    url.searchParams.set("rill-live", String(live.generation));
    fresh.href = url.href;
    const done = () => link.remove();
    fresh.addEventListener("load", done, { once: true });
    fresh.addEventListener("error", done, { once: true });
    link.after(fresh);
  }

  connect();
})();
