//! Counting what the loop does, and the `--stats` endpoints that show it.
//!
//! The counters are plain integers in [`Cell`]s, shared by the loop and every
//! connection through one `Rc`: counting a readiness event or a byte costs an
//! add, with no lock and no atomic, because there is only one thread. They are
//! always counted; `--stats` only decides whether `/.rill/` shows them:
//!
//! - `/.rill/stats` — the counters as JSON;
//! - `/.rill/events` — the same JSON as a Server-Sent Events stream, one event
//!   per second, pushed by the loop itself (see `Server::push_stats`);
//! - `/.rill/` — a self-contained page that draws them live.

use std::cell::Cell;
use std::fmt::Write;
use std::time::Instant;

/// How often the loop pushes an event to `/.rill/events` streams.
pub const PUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a connection is, as the stats count it: its state, with an idle
/// keep-alive connection told apart from one reading a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// An HTTPS connection before its TLS session is up.
    Handshaking,
    ReadingHead,
    IdleKeepAlive,
    DiscardingBody,
    ReceivingUpload,
    /// Working out an answer in steps (a big folder's scan or sort).
    Preparing,
    Sending,
    StreamingEvents,
    Closing,
    /// Waiting for a backend to accept the connection.
    ProxyConnecting,
    /// Relaying one request to a backend and its answer back.
    Proxying,
    /// Moving bytes both ways after an upgrade.
    Tunnel,
    /// A WebSocket, open.
    WebSocket,
    /// A WebSocket whose close handshake has begun.
    WebSocketClosing,
}

impl Phase {
    const ALL: [Phase; 14] = [
        Phase::Handshaking,
        Phase::ReadingHead,
        Phase::IdleKeepAlive,
        Phase::DiscardingBody,
        Phase::ReceivingUpload,
        Phase::Preparing,
        Phase::Sending,
        Phase::StreamingEvents,
        Phase::Closing,
        Phase::ProxyConnecting,
        Phase::Proxying,
        Phase::Tunnel,
        Phase::WebSocket,
        Phase::WebSocketClosing,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Handshaking => "handshaking",
            Phase::ReadingHead => "reading_head",
            Phase::IdleKeepAlive => "idle_keep_alive",
            Phase::DiscardingBody => "discarding_body",
            Phase::ReceivingUpload => "receiving_upload",
            Phase::Preparing => "preparing",
            Phase::Sending => "sending",
            Phase::StreamingEvents => "streaming_events",
            Phase::Closing => "closing",
            Phase::ProxyConnecting => "proxy_connecting",
            Phase::Proxying => "proxying",
            Phase::Tunnel => "tunnel",
            Phase::WebSocket => "websocket",
            Phase::WebSocketClosing => "websocket_closing",
        }
    }
}

/// Upper bounds of the events-per-wakeup histogram buckets (the last is open).
const WAKEUP_BUCKETS: [u64; 8] = [0, 1, 3, 7, 15, 31, 63, u64::MAX];
const WAKEUP_LABELS: [&str; 8] = ["0", "1", "2-3", "4-7", "8-15", "16-31", "32-63", "64+"];

/// The loop's counters.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    pub loop_turns: Cell<u64>,
    pub events: Cell<u64>,
    wakeups: [Cell<u64>; 8],
    pub accepted: Cell<u64>,
    pub refused: Cell<u64>,
    open: Cell<u64>,
    in_phase: [Cell<u64>; 14],
    /// Request heads parsed, whatever their answer. Kept apart from the
    /// responses, which also count the answers to heads that never parsed.
    pub requests: Cell<u64>,
    responses: [Cell<u64>; 5],
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub partial_writes: Cell<u64>,
    pub sendfile_calls: Cell<u64>,
    pub timers_fired: Cell<u64>,
    pub uploads_completed: Cell<u64>,
    pub uploads_aborted: Cell<u64>,
    pub events_pushed: Cell<u64>,
    pub events_dropped: Cell<u64>,
    /// Requests handed to a backend.
    pub proxied: Cell<u64>,
    /// Connections that became tunnels.
    pub tunnels: Cell<u64>,
    /// New backend connections opened.
    pub upstream_connects: Cell<u64>,
    /// Requests sent on a pooled backend connection.
    pub upstream_reused: Cell<u64>,
    /// Requests sent again on a fresh connection after a pooled one died.
    pub upstream_retries: Cell<u64>,
    /// Backend connections waiting in the pool now.
    pub upstream_idle: Cell<u64>,
    /// Backend failures, by kind: connection refused, too slow (connect or
    /// answer), an answer rill does not relay, a close or reset before the
    /// answer's end.
    pub upstream_refused: Cell<u64>,
    pub upstream_timeouts: Cell<u64>,
    pub upstream_bad_answers: Cell<u64>,
    pub upstream_resets: Cell<u64>,
    /// Connections that became WebSockets.
    pub websockets: Cell<u64>,
    /// `/.rill/echo` sockets open now.
    pub echo_sockets: Cell<u64>,
    /// WebSocket data messages received and sent (control frames aside).
    pub ws_messages_in: Cell<u64>,
    pub ws_messages_out: Cell<u64>,
    /// inotify events read.
    pub watch_events: Cell<u64>,
    /// Directories watched now.
    pub watches: Cell<u64>,
    /// File cache entries dropped because an event touched them.
    pub cache_invalidations: Cell<u64>,
    /// Times inotify's queue overflowed.
    pub watch_overflows: Cell<u64>,
    /// Change messages sent to live-reloading pages (one per batch).
    pub live_batches: Cell<u64>,
    /// Requests refused by `--auth`: no or wrong credentials, a right the
    /// user lacks, an address locked out.
    pub auth_unauthorized: Cell<u64>,
    pub auth_forbidden: Cell<u64>,
    pub auth_locked: Cell<u64>,
    /// TLS handshakes: full, resumed (a ticket or a session ID), failed (an
    /// alert, a timeout, a client that left, plain HTTP on the TLS port).
    pub tls_full: Cell<u64>,
    pub tls_resumed: Cell<u64>,
    pub tls_failed: Cell<u64>,
    /// Buffers waiting in the loop's pool, and their capacity in bytes, as
    /// of the last prune (at most a second old).
    pub buffers_pooled: Cell<u64>,
    pub buffers_pooled_bytes: Cell<u64>,
}

/// Adds `n` to a counter.
pub fn add(counter: &Cell<u64>, n: u64) {
    counter.set(counter.get().wrapping_add(n));
}

impl Stats {
    /// Zeroed counters, with uptime counted from `now`.
    pub fn new(now: Instant) -> Stats {
        Stats {
            started: now,
            loop_turns: Cell::new(0),
            events: Cell::new(0),
            wakeups: Default::default(),
            accepted: Cell::new(0),
            refused: Cell::new(0),
            open: Cell::new(0),
            in_phase: Default::default(),
            requests: Cell::new(0),
            responses: Default::default(),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            partial_writes: Cell::new(0),
            sendfile_calls: Cell::new(0),
            timers_fired: Cell::new(0),
            uploads_completed: Cell::new(0),
            uploads_aborted: Cell::new(0),
            events_pushed: Cell::new(0),
            events_dropped: Cell::new(0),
            proxied: Cell::new(0),
            tunnels: Cell::new(0),
            upstream_connects: Cell::new(0),
            upstream_reused: Cell::new(0),
            upstream_retries: Cell::new(0),
            upstream_idle: Cell::new(0),
            upstream_refused: Cell::new(0),
            upstream_timeouts: Cell::new(0),
            upstream_bad_answers: Cell::new(0),
            upstream_resets: Cell::new(0),
            websockets: Cell::new(0),
            echo_sockets: Cell::new(0),
            ws_messages_in: Cell::new(0),
            ws_messages_out: Cell::new(0),
            watch_events: Cell::new(0),
            watches: Cell::new(0),
            cache_invalidations: Cell::new(0),
            watch_overflows: Cell::new(0),
            live_batches: Cell::new(0),
            auth_unauthorized: Cell::new(0),
            auth_forbidden: Cell::new(0),
            auth_locked: Cell::new(0),
            tls_full: Cell::new(0),
            tls_resumed: Cell::new(0),
            tls_failed: Cell::new(0),
            buffers_pooled: Cell::new(0),
            buffers_pooled_bytes: Cell::new(0),
        }
    }

    /// One return from `poll` with `events` readiness events.
    pub fn wakeup(&self, events: usize) {
        add(&self.loop_turns, 1);
        add(&self.events, events as u64);
        let bucket = WAKEUP_BUCKETS
            .iter()
            .position(|&bound| events as u64 <= bound)
            .unwrap_or(WAKEUP_BUCKETS.len() - 1);
        add(&self.wakeups[bucket], 1);
    }

    /// A connection entered `to` (from `from`, or new when `None`).
    pub fn moved(&self, from: Option<Phase>, to: Phase) {
        match from {
            Some(from) if from == to => return,
            Some(from) => {
                let count = &self.in_phase[from as usize];
                count.set(count.get().saturating_sub(1));
            }
            None => add(&self.open, 1),
        }
        add(&self.in_phase[to as usize], 1);
    }

    /// A connection in `phase` closed.
    pub fn closed(&self, phase: Phase) {
        self.in_phase[phase as usize].set(self.in_phase[phase as usize].get().saturating_sub(1));
        self.open.set(self.open.get().saturating_sub(1));
    }

    /// A response with this status code was queued.
    pub fn response(&self, code: u16) {
        let class = usize::from(code / 100).clamp(1, 5) - 1;
        add(&self.responses[class], 1);
    }

    /// How many connections are open now.
    pub fn open(&self) -> u64 {
        self.open.get()
    }

    /// How many WebSockets are open now, closing ones included.
    pub fn websockets_open(&self) -> u64 {
        self.in_phase[Phase::WebSocket as usize].get()
            + self.in_phase[Phase::WebSocketClosing as usize].get()
    }

    /// Every counter as one JSON object.
    pub fn to_json(&self, now: Instant) -> String {
        let mut json = String::with_capacity(1200);
        let _ = write!(
            json,
            "{{\"uptime_secs\":{:.3},\"loop_iterations\":{},\"events\":{},\"events_per_wakeup\":{{",
            now.saturating_duration_since(self.started).as_secs_f64(),
            self.loop_turns.get(),
            self.events.get()
        );
        for (i, (label, count)) in WAKEUP_LABELS.iter().zip(&self.wakeups).enumerate() {
            let comma = if i > 0 { "," } else { "" };
            let _ = write!(json, "{comma}\"{label}\":{}", count.get());
        }
        let _ = write!(
            json,
            "}},\"connections\":{{\"accepted\":{},\"refused\":{},\"open\":{},\"by_state\":{{",
            self.accepted.get(),
            self.refused.get(),
            self.open.get()
        );
        for (i, phase) in Phase::ALL.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            let _ = write!(
                json,
                "{comma}\"{}\":{}",
                phase.name(),
                self.in_phase[i].get()
            );
        }
        let _ = write!(
            json,
            "}}}},\"requests\":{},\"responses\":{{",
            self.requests.get()
        );
        for (i, count) in self.responses.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            let _ = write!(json, "{comma}\"{}xx\":{}", i + 1, count.get());
        }
        let _ = write!(
            json,
            "}},\"bytes_in\":{},\"bytes_out\":{},\"partial_writes\":{},\"sendfile_calls\":{},\
             \"timers_fired\":{},\"uploads\":{{\"completed\":{},\"aborted\":{}}},\
             \"events_pushed\":{},\"events_dropped\":{},",
            self.bytes_in.get(),
            self.bytes_out.get(),
            self.partial_writes.get(),
            self.sendfile_calls.get(),
            self.timers_fired.get(),
            self.uploads_completed.get(),
            self.uploads_aborted.get(),
            self.events_pushed.get(),
            self.events_dropped.get()
        );
        let busy = self.in_phase[Phase::Proxying as usize].get()
            + self.in_phase[Phase::Tunnel as usize].get();
        let _ = write!(
            json,
            "\"upstream\":{{\"connecting\":{},\"busy\":{busy},\"idle\":{},\"connects\":{},\
             \"reused\":{},\"retries\":{},\"proxied\":{},\"tunnels\":{},\"failures\":{{\
             \"refused\":{},\"timeout\":{},\"bad_answer\":{},\"reset\":{}}}}},",
            self.in_phase[Phase::ProxyConnecting as usize].get(),
            self.upstream_idle.get(),
            self.upstream_connects.get(),
            self.upstream_reused.get(),
            self.upstream_retries.get(),
            self.proxied.get(),
            self.tunnels.get(),
            self.upstream_refused.get(),
            self.upstream_timeouts.get(),
            self.upstream_bad_answers.get(),
            self.upstream_resets.get()
        );
        let _ = write!(
            json,
            "\"websocket\":{{\"open\":{},\"closing\":{},\"opened\":{},\"messages_in\":{},\
             \"messages_out\":{}}},\"watch\":{{\"watches\":{},\"events\":{},\
             \"cache_invalidations\":{},\"overflows\":{},\"live_batches\":{}}},\
             \"auth\":{{\"unauthorized\":{},\"forbidden\":{},\"locked\":{}}},\
             \"tls\":{{\"handshaking\":{},\"full\":{},\"resumed\":{},\"failed\":{}}},\
             \"buffers\":{{\"pooled\":{},\"pooled_bytes\":{}}}}}",
            self.in_phase[Phase::WebSocket as usize].get(),
            self.in_phase[Phase::WebSocketClosing as usize].get(),
            self.websockets.get(),
            self.ws_messages_in.get(),
            self.ws_messages_out.get(),
            self.watches.get(),
            self.watch_events.get(),
            self.cache_invalidations.get(),
            self.watch_overflows.get(),
            self.live_batches.get(),
            self.auth_unauthorized.get(),
            self.auth_forbidden.get(),
            self.auth_locked.get(),
            self.in_phase[Phase::Handshaking as usize].get(),
            self.tls_full.get(),
            self.tls_resumed.get(),
            self.tls_failed.get(),
            self.buffers_pooled.get(),
            self.buffers_pooled_bytes.get()
        );
        json
    }
}

/// The `/.rill/` addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/.rill/` — the live page.
    Page,
    /// `/.rill/stats` — JSON.
    Json,
    /// `/.rill/events` — the event stream.
    Events,
}

/// Which stats address a request-target names, if any.
pub fn route(target: &str) -> Option<Route> {
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/.rill" | "/.rill/" | "/.rill/index.html" => Some(Route::Page),
        "/.rill/stats" => Some(Route::Json),
        "/.rill/events" => Some(Route::Events),
        _ => None,
    }
}

/// One Server-Sent Event carrying the counters.
pub fn event(json: &str) -> String {
    format!("event: stats\ndata: {json}\n\n")
}

/// The live page: HTML, CSS and script in one response, nothing fetched from
/// elsewhere (users may be offline), fed by `/.rill/events`.
pub const PAGE: &str = include_str!("live.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_counters_add_up() {
        let t0 = Instant::now();
        let stats = Stats::new(t0);
        stats.moved(None, Phase::ReadingHead);
        stats.moved(None, Phase::ReadingHead);
        stats.moved(Some(Phase::ReadingHead), Phase::Sending);
        stats.moved(Some(Phase::Sending), Phase::Sending);
        stats.closed(Phase::ReadingHead);
        stats.wakeup(0);
        stats.wakeup(5);
        stats.wakeup(500);
        stats.response(200);
        stats.response(404);
        stats.response(101);
        add(&stats.requests, 2);
        let json = stats.to_json(t0 + std::time::Duration::from_millis(1500));
        for needle in [
            "\"uptime_secs\":1.500",
            "\"loop_iterations\":3,\"events\":505",
            "\"0\":1,\"1\":0,\"2-3\":0,\"4-7\":1",
            "\"64+\":1",
            "\"open\":1,\"by_state\":{\"handshaking\":0,\"reading_head\":0,\"idle_keep_alive\":0",
            "\"sending\":1",
            "\"requests\":2,\"responses\":{\"1xx\":1,\"2xx\":1,\"3xx\":0,\"4xx\":1,\"5xx\":0}",
        ] {
            assert!(json.contains(needle), "{needle} not in {json}");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("/.rill/"), Some(Route::Page));
        assert_eq!(route("/.rill"), Some(Route::Page));
        assert_eq!(route("/.rill/stats?x"), Some(Route::Json));
        assert_eq!(route("/.rill/events"), Some(Route::Events));
        assert_eq!(route("/.rill/other"), None);
        assert_eq!(route("/rill/stats"), None);
    }

    #[test]
    fn page_is_self_contained() {
        for external in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
            "url(",
        ] {
            assert!(!PAGE.contains(external), "the page loads {external}");
        }
        assert!(PAGE.contains("new EventSource(\"/.rill/events\")"));
    }
}
