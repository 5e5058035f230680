//! Deadlines for the loop: which connection's timer fires next, and when.
//!
//! A [`Timers`] is a min-heap of `(deadline, key)` entries; the loop asks it for
//! the earliest deadline to bound `poll`'s timeout and pops the entries that
//! are due. Time is always passed in — nothing here reads a clock — so every
//! rule is tested without sleeping (as smoltcp does with `poll(now)`).
//!
//! The heap is kept small by scheduling lazily: a connection's real deadline
//! lives in the connection and moves later on every bit of progress, which
//! costs nothing here. Only when a deadline moves *earlier* than the entry
//! already scheduled (an idle connection starts a request head) is a new entry
//! pushed, in O(log n). When an entry pops, the loop compares it with the
//! connection's current deadline and either fires the timeout or schedules
//! the real deadline. So an idle connection costs one heap operation per idle
//! timeout, and nothing per turn of the loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The loop's timer heap.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Timers {
    /// An empty heap.
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Asks for `key` to be looked at again at `at`.
    pub fn schedule(&mut self, at: Instant, key: usize) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest scheduled deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, usize)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// How many entries are scheduled (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// How long `poll` may sleep: until the earliest of the deadlines, never
/// negative, `None` (forever) when there is none.
pub fn poll_timeout(now: Instant, deadlines: &[Option<Instant>]) -> Option<Duration> {
    deadlines
        .iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
}

/// The timeouts a connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request head, or an upload body, that makes no progress this long.
    pub header: Duration,
    /// A keep-alive connection with nothing to do, or a client that reads
    /// nothing of its answer, this long.
    pub idle: Duration,
    /// A backend that has not accepted a connection this long.
    pub proxy_connect: Duration,
    /// A backend silent this long while rill waits for it.
    pub proxy: Duration,
    /// A tunnel with no bytes either way this long.
    pub tunnel: Duration,
}

impl Timeouts {
    /// The timeouts `config` asks for.
    pub fn from_config(config: &crate::config::Config) -> Timeouts {
        Timeouts {
            header: config.header_timeout,
            idle: config.idle_timeout,
            proxy_connect: config.proxy_connect_timeout,
            proxy: config.proxy_timeout,
            tunnel: config.tunnel_timeout,
        }
    }
}

impl Timeouts {
    /// How long a closing connection may drain its input.
    pub fn linger(&self) -> Duration {
        self.header.min(Duration::from_secs(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut timers = Timers::new();
        timers.schedule(t0 + s(30), 1);
        timers.schedule(t0 + s(10), 2);
        timers.schedule(t0 + s(20), 3);
        assert_eq!(timers.next_deadline(), Some(t0 + s(10)));
        assert_eq!(timers.pop_due(t0 + s(5)), None);
        assert_eq!(timers.pop_due(t0 + s(25)), Some((t0 + s(10), 2)));
        assert_eq!(timers.pop_due(t0 + s(25)), Some((t0 + s(20), 3)));
        assert_eq!(timers.pop_due(t0 + s(25)), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn poll_timeout_is_the_nearest_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(poll_timeout(t0, &[None, None]), None);
        assert_eq!(
            poll_timeout(t0, &[Some(t0 + s(9)), Some(t0 + s(3))]),
            Some(s(3))
        );
        // A deadline already past means: do not sleep at all.
        assert_eq!(poll_timeout(t0 + s(5), &[Some(t0)]), Some(Duration::ZERO));
    }
}
