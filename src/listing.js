// rill's folder page, made nicer with JavaScript (the page works without it):
// a filter box, folder links that keep the chosen order, and, with uploads
// on, drag and drop anywhere plus an upload queue (one request per file, one
// after another, each with progress, speed and Cancel), after which the
// table is refreshed in place. State for tests: window.__rillListing.
(function () {
  "use strict";
  var state = (window.__rillListing = {
    refreshes: 0, uploaded: 0, failed: 0, cancelled: 0, busy: false, sent: []
  });
  var table = document.getElementById("listing");
  var count = document.getElementById("count");
  var filter = document.getElementById("filter");
  if (!table || !count || !filter) return;

  function rows() {
    return Array.prototype.filter.call(table.tBodies[0].rows, function (row) {
      return !row.classList.contains("up");
    });
  }
  function entries(n) {
    return n === 1 ? "1 entry" : n + " entries";
  }
  function applyFilter() {
    var needle = filter.value.trim().toLowerCase();
    var all = rows();
    var shown = 0;
    all.forEach(function (row) {
      var link = row.querySelector("td.name a");
      var name = link ? link.textContent.toLowerCase() : "";
      var keep = !needle || name.indexOf(needle) !== -1;
      row.hidden = !keep;
      if (keep) shown++;
    });
    count.textContent = needle ? shown + " of " + entries(all.length) : entries(all.length);
  }
  filter.hidden = false;
  filter.addEventListener("input", applyFilter);
  if (filter.value) applyFilter(); // restored by the back button

  // Links to folders keep a chosen order.
  var body = document.body;
  var query = body.dataset.sort === "name" && body.dataset.order === "asc"
    ? "" : "?sort=" + body.dataset.sort + "&order=" + body.dataset.order;
  function keepOrder(root) {
    if (!query) return;
    Array.prototype.forEach.call(root.querySelectorAll("a[href$='/']"), function (a) {
      a.setAttribute("href", a.getAttribute("href") + query);
    });
  }
  keepOrder(table.tBodies[0]);
  keepOrder(document.querySelector("h1.crumbs"));

  // The table again, from the server, in the same order.
  function refresh() {
    return fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (text) {
        var page = new DOMParser().parseFromString(text, "text/html");
        var fresh = page.querySelector("#listing tbody");
        var freshCount = page.getElementById("count");
        if (!fresh) return;
        table.replaceChild(document.adoptNode(fresh), table.tBodies[0]);
        if (freshCount) count.dataset.total = freshCount.dataset.total;
        var empty = document.querySelector("p.empty");
        if (empty && rows().length) empty.hidden = true;
        keepOrder(table.tBodies[0]);
        applyFilter();
        state.refreshes++;
      })
      .catch(function () {
        location.reload();
      });
  }
  state.refresh = refresh;

  var form = document.getElementById("upload");
  if (!form) return;
  var input = form.querySelector("input[type=file]");
  var list = document.getElementById("queue");
  var drop = document.getElementById("drop");
  form.querySelector(".hint").hidden = false;
  var pending = [];
  var current = null;
  var stored = 0; // files stored since the last refresh

  function sizeText(bytes) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (bytes >= 1024 && i < units.length - 1) {
      bytes /= 1024;
      i++;
    }
    return (i === 0 ? bytes : bytes.toFixed(1)) + " " + units[i];
  }
  function element(tag, className, text) {
    var node = document.createElement(tag);
    node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function enqueue(files) {
    Array.prototype.forEach.call(files, function (file) {
      var item = {
        file: file,
        li: element("li", "waiting"),
        name: element("span", "qname", file.name),
        percent: element("span", "qpercent", "waiting"),
        speed: element("span", "qspeed", sizeText(file.size)),
        cancel: element("button", "qcancel", "Cancel"),
        bar: element("progress", "qbar"),
        xhr: null,
        done: false
      };
      item.cancel.type = "button";
      item.cancel.setAttribute("aria-label", "Cancel " + file.name);
      item.bar.max = 100;
      item.bar.value = 0;
      item.cancel.addEventListener("click", function () {
        cancel(item);
      });
      [item.name, item.percent, item.speed, item.cancel, item.bar].forEach(function (node) {
        item.li.appendChild(node);
      });
      list.appendChild(item.li);
      pending.push(item);
    });
    next();
  }

  function cancel(item) {
    if (item.done) return;
    if (item.xhr) {
      item.xhr.abort(); // onabort ends it
    } else {
      pending.splice(pending.indexOf(item), 1);
      end(item, "cancelled", "cancelled");
    }
  }

  function end(item, kind, text) {
    item.done = true;
    item.li.className = kind;
    item.percent.textContent = text;
    item.cancel.disabled = true;
    if (kind === "done") state.uploaded++;
    else if (kind === "failed") state.failed++;
    else state.cancelled++;
  }

  function next() {
    if (current) return;
    current = pending.shift() || null;
    state.busy = !!current;
    if (current) return send(current);
    if (stored) {
      stored = 0;
      refresh();
    }
  }

  function send(item) {
    var xhr = new XMLHttpRequest();
    var started = performance.now();
    item.xhr = xhr;
    item.li.className = "sending";
    item.percent.textContent = "0%";
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable || !e.total) return;
      var percent = Math.floor((100 * e.loaded) / e.total);
      var seconds = Math.max((performance.now() - started) / 1000, 0.001);
      item.bar.value = percent;
      item.percent.textContent = percent + "%";
      item.speed.textContent = sizeText(e.loaded / seconds) + "/s";
    };
    var record = { name: item.file.name, started: started, ended: null, outcome: null };
    state.sent.push(record);
    function finished(kind, text) {
      record.ended = performance.now();
      record.outcome = kind;
      end(item, kind, text);
      current = null;
      next();
    }
    xhr.onload = function () {
      if (xhr.status === 201) {
        stored++;
        item.bar.value = 100;
        var saved = "";
        try {
          var name = JSON.parse(xhr.responseText).files[0].name;
          if (name !== item.file.name) saved = " as " + name;
        } catch (ignored) {
          // The answer is only informative.
        }
        finished("done", "done" + saved);
      } else {
        var reason = (xhr.responseText || "").trim().split("\n")[0].slice(0, 120);
        finished("failed", "failed: " + xhr.status + (reason ? " " + reason : ""));
      }
    };
    xhr.onerror = function () {
      finished("failed", "failed: connection lost");
    };
    xhr.onabort = function () {
      finished("cancelled", "cancelled");
    };
    var data = new FormData();
    data.append("file", item.file, item.file.name);
    xhr.send(data);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (input.files.length) enqueue(input.files);
    form.reset();
  });

  // The whole page is a drop zone.
  var depth = 0;
  function carriesFiles(event) {
    var types = event.dataTransfer && event.dataTransfer.types;
    return !!types && Array.prototype.indexOf.call(types, "Files") !== -1;
  }
  document.addEventListener("dragenter", function (event) {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth++;
    drop.hidden = false;
  });
  document.addEventListener("dragover", function (event) {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", function (event) {
    if (!carriesFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) drop.hidden = true;
  });
  document.addEventListener("drop", function (event) {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    drop.hidden = true;
    enqueue(event.dataTransfer.files);
  });
  window.addEventListener("beforeunload", function (event) {
    if (!state.busy) return;
    event.preventDefault();
    event.returnValue = "";
  });
})();
