//! The one thread beside the loop: it checks bcrypt passwords, so that a
//! slow hash never holds up the connections the loop serves.
//!
//! A bcrypt check takes from a few milliseconds (cost 5, `htpasswd -B`'s
//! default) to a quarter of a second (cost 12) and more. Run on the loop,
//! twenty wrong passwords from twenty addresses froze every other client for
//! six seconds. Instead, a connection whose credentials only a slow hash can
//! check hands a [`SlowCheck`] to [`Hasher::submit`] and waits in
//! `Verifying` with the ticket it gets, its request head still buffered and
//! unanswered. The thread runs the checks one at a time, in order, and for
//! each one sends the verdict back and wakes the loop through a
//! [`mio::Waker`] under its own token. The loop takes the verdicts with
//! [`Hasher::finished`], hands each to the [`crate::auth::Gate`] (which
//! remembers it) and drives again every connection that waited for it: they
//! parse their head again and find the verdict remembered.
//!
//! Connections asking with the same credentials while they are being
//! checked (a browser's parallel requests for one page) join the check
//! under way rather than queue their own. At most [`QUEUE`] checks wait;
//! past that a request gets `503`, and the gate's per-address budget keeps
//! any one address from filling the queue.

use crate::auth::SlowCheck;
use mio::{Registry, Token, Waker};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Most checks waiting for the thread at once.
pub const QUEUE: usize = 64;

/// A ticket: which check a waiting connection waits for.
pub type Ticket = u64;

/// How a connection's check was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new check was queued: it costs the client's address a try.
    Queued(Ticket),
    /// The same credentials are being checked already: wait for that.
    Joined(Ticket),
}

/// A check the thread has done, with the connections that wait for it.
pub struct Finished {
    pub check: SlowCheck,
    pub right: bool,
    pub ticket: Ticket,
    /// The slab keys of the connections waiting for it; one may have closed
    /// meanwhile, or its key gone to another connection.
    pub waiting: Vec<usize>,
}

/// A check on its way.
struct InFlight {
    ticket: Ticket,
    waiting: Vec<usize>,
}

/// The loop's end of the hashing thread.
pub struct Hasher {
    jobs: SyncSender<(Ticket, SlowCheck)>,
    done: Receiver<(Ticket, SlowCheck, bool)>,
    /// Checks on their way, by the credentials they check.
    in_flight: RefCell<HashMap<[u8; 20], InFlight>>,
    next_ticket: Cell<Ticket>,
}

impl Hasher {
    /// Starts the thread; its verdicts wake `registry`'s poll with `token`.
    pub fn start(registry: &Registry, token: Token) -> io::Result<Hasher> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (jobs, queued) = mpsc::sync_channel::<(Ticket, SlowCheck)>(QUEUE);
        let (verdicts, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("rill-hasher".to_owned())
            .spawn(move || {
                // Ends when the loop drops its end of the queue.
                for (ticket, check) in queued {
                    let right = check.run();
                    if verdicts.send((ticket, check, right)).is_err() {
                        break;
                    }
                    if let Err(e) = waker.wake() {
                        log::error!("the hasher cannot wake the loop: {e}");
                    }
                }
            })?;
        Ok(Hasher {
            jobs,
            done,
            in_flight: RefCell::default(),
            next_ticket: Cell::new(1),
        })
    }

    /// Queues `check` for the connection `waiting` (its slab key), or joins
    /// the same check under way. `None`: the queue is full.
    pub fn submit(&self, check: SlowCheck, waiting: usize) -> Option<Submitted> {
        let mut in_flight = self.in_flight.borrow_mut();
        if let Some(flight) = in_flight.get_mut(check.key()) {
            flight.waiting.push(waiting);
            return Some(Submitted::Joined(flight.ticket));
        }
        let ticket = self.next_ticket.get();
        let key = *check.key();
        match self.jobs.try_send((ticket, check)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return None,
            Err(TrySendError::Disconnected(_)) => {
                log::error!("the hasher thread is gone");
                return None;
            }
        }
        self.next_ticket.set(ticket + 1);
        let waiting = vec![waiting];
        in_flight.insert(key, InFlight { ticket, waiting });
        Some(Submitted::Queued(ticket))
    }

    /// The checks done since the last call.
    pub fn finished(&self) -> Vec<Finished> {
        let mut finished = Vec::new();
        let mut in_flight = self.in_flight.borrow_mut();
        while let Ok((ticket, check, right)) = self.done.try_recv() {
            let waiting = in_flight
                .remove(check.key())
                .map(|flight| flight.waiting)
                .unwrap_or_default();
            finished.push(Finished {
                check,
                right,
                ticket,
                waiting,
            });
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Gate, Need, User};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    fn bcrypt_user(name: &str, password: &str) -> User {
        let hash = bcrypt::hash_with_salt(password, 4, [3; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        User::parse_line(&format!("{name}:{hash}")).unwrap()
    }

    fn basic(user: &str, password: &str) -> String {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {token}")
    }

    /// Waits for the thread's verdicts as the loop would, on the poll.
    fn wait_for(poll: &mut mio::Poll, hasher: &Hasher, count: usize) -> Vec<Finished> {
        let mut events = mio::Events::with_capacity(4);
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while all.len() < count && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            all.extend(hasher.finished());
        }
        all
    }

    #[test]
    fn checks_run_on_the_thread_and_the_same_credentials_join_one_check() {
        let mut poll = mio::Poll::new().unwrap();
        let hasher = Hasher::start(poll.registry(), Token(7)).unwrap();
        let gate = Gate::new(vec![bcrypt_user("ann", "pw")], false);
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let now = Instant::now();
        let right = basic("ann", "pw");
        let wrong = basic("ann", "nope");

        let check = |value: &str| gate.slow_check(Some(value), Need::Read, peer, now).unwrap();
        assert_eq!(hasher.submit(check(&right), 1), Some(Submitted::Queued(1)));
        assert_eq!(hasher.submit(check(&right), 2), Some(Submitted::Joined(1)));
        assert_eq!(hasher.submit(check(&wrong), 3), Some(Submitted::Queued(2)));

        let mut done = wait_for(&mut poll, &hasher, 2);
        done.sort_by_key(|f| f.ticket);
        assert_eq!(done.len(), 2);
        assert!(done[0].right && done[0].waiting == [1, 2]);
        assert!(!done[1].right && done[1].waiting == [3]);
        for finished in &done {
            gate.settle(&finished.check, finished.right);
        }
        // Remembered both ways: nothing is left to check slowly.
        assert!(gate
            .slow_check(Some(&right), Need::Read, peer, now)
            .is_none());
        assert!(gate
            .slow_check(Some(&wrong), Need::Read, peer, now)
            .is_none());
    }
}
