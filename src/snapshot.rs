//! Folder snapshots: one compact copy of a directory's visible entries,
//! shared by every request that lists it at the same time.
//!
//! Twenty browsers opening a folder of 100 000 entries used to cost twenty
//! scans and twenty rendered pages held in memory at once (174 MB). Now the
//! first request starts a [`Scan`], every request that comes while it runs
//! joins it, and the finished [`Snapshot`] is shared by all of them: names in
//! one byte arena, a fixed-size record per entry, and one sorted index per
//! order anyone asked for. Each request then streams its rows from the
//! snapshot, so memory grows with the folder, not with the readers.
//!
//! A scan is read [`crate::body::SCAN_STEP`] entries at a time, one step
//! per turn of the loop, so a huge folder never holds the loop for the whole
//! scan.
//!
//! Snapshots are kept only while someone holds them (the site's map keeps
//! weak references). One is trusted as long as the directory's inotify watch
//! has not reported a change in it; without a watch, for
//! [`crate::site::REVALIDATE_AFTER`] after it was taken — the same rule as the
//! file cache.

use crate::listing::{compare, EntryRef, Order};
use crate::site::{DirReader, Missing, Site};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// One entry of a snapshot: a fixed-size record, its name in the arena.
#[derive(Debug, Clone, Copy)]
struct Item {
    name_start: u32,
    name_len: u32,
    size: u64,
    modified_secs: i64,
    modified_nanos: u32,
    is_dir: bool,
}

/// A directory's visible entries, as they were when it was read.
#[derive(Debug)]
pub struct Snapshot {
    names: Vec<u8>,
    items: Vec<Item>,
    /// Sorted indexes into `items`, one per order asked for so far.
    sorted: RefCell<Vec<(Order, Rc<[u32]>)>>,
}

impl Snapshot {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the folder was empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Entry `index` (an index from [`Snapshot::sorted`]).
    pub fn entry(&self, index: u32) -> EntryRef<'_> {
        let item = self.items[index as usize];
        let start = item.name_start as usize;
        let modified = if item.modified_secs >= 0 {
            UNIX_EPOCH + Duration::new(item.modified_secs as u64, item.modified_nanos)
        } else {
            UNIX_EPOCH
        };
        EntryRef {
            name: &self.names[start..start + item.name_len as usize],
            is_dir: item.is_dir,
            size: item.size,
            modified,
        }
    }

    /// The entries' indexes in `order`, sorted once per snapshot and order
    /// and then shared.
    pub fn sorted(&self, order: Order) -> Rc<[u32]> {
        if let Some((_, sorted)) = self.sorted.borrow().iter().find(|(o, _)| *o == order) {
            return Rc::clone(sorted);
        }
        let mut indexes: Vec<u32> = (0..self.items.len() as u32).collect();
        indexes.sort_unstable_by(|&a, &b| compare(&self.entry(a), &self.entry(b), order));
        let sorted: Rc<[u32]> = indexes.into();
        self.sorted.borrow_mut().push((order, Rc::clone(&sorted)));
        sorted
    }

    /// The bytes it holds, for the live page's counters.
    pub fn memory(&self) -> usize {
        let sorted: usize = self.sorted.borrow().iter().map(|(_, s)| s.len() * 4).sum();
        self.names.capacity() + self.items.capacity() * std::mem::size_of::<Item>() + sorted
    }
}

/// A directory being read into a snapshot, in steps.
#[derive(Debug)]
pub struct Scan {
    reader: Option<DirReader>,
    names: Vec<u8>,
    items: Vec<Item>,
    /// Set by whichever waiting request read the last entries.
    outcome: Option<Result<Rc<Snapshot>, ScanFailed>>,
}

/// A scan that failed: what the file system said, for a 500 or 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanFailed {
    Forbidden,
    Io,
}

impl Scan {
    /// A scan of the directory `reader` reads.
    pub fn new(reader: DirReader) -> Scan {
        Scan {
            reader: Some(reader),
            names: Vec::new(),
            items: Vec::new(),
            outcome: None,
        }
    }

    /// Reads up to `budget` more entries; once the directory is exhausted,
    /// the snapshot (shared with every request waiting on this scan).
    pub fn step(&mut self, site: &Site, budget: usize) -> Option<Result<Rc<Snapshot>, ScanFailed>> {
        if let Some(outcome) = &self.outcome {
            return Some(outcome.clone());
        }
        let reader = self.reader.as_mut()?;
        let (names, items) = (&mut self.names, &mut self.items);
        let read = site.read_entries(reader, budget, |entry| {
            let (Ok(name_start), Ok(name_len)) =
                (u32::try_from(names.len()), u32::try_from(entry.name.len()))
            else {
                return; // a 4 GiB arena of names: the rest is not listed
            };
            let since = entry
                .modified
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            names.extend_from_slice(entry.name);
            items.push(Item {
                name_start,
                name_len,
                size: entry.size,
                modified_secs: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                modified_nanos: since.subsec_nanos(),
                is_dir: entry.is_dir,
            });
        });
        let outcome = match read {
            Ok(false) => return None,
            Ok(true) => Ok(Rc::new(Snapshot {
                names: std::mem::take(&mut self.names)
                    .into_boxed_slice()
                    .into_vec(),
                items: std::mem::take(&mut self.items)
                    .into_boxed_slice()
                    .into_vec(),
                sorted: RefCell::new(Vec::new()),
            })),
            Err(Missing::Forbidden) => Err(ScanFailed::Forbidden),
            Err(_) => Err(ScanFailed::Io),
        };
        self.reader = None;
        self.outcome = Some(outcome.clone());
        Some(outcome)
    }
}

/// Where a listing's entries come from: a snapshot to share, or a scan to
/// join.
#[derive(Debug)]
pub enum Listing {
    Ready(Rc<Snapshot>),
    Scanning(Rc<RefCell<Scan>>),
}

/// A directory's snapshot or scan in the site's map.
#[derive(Debug)]
pub struct Slot {
    pub state: SlotState,
    /// The inotify watch that tells when the directory changes.
    pub watch: Option<i32>,
    /// When the scan started.
    pub taken: Instant,
}

/// Held weakly: nobody reading means nothing kept.
#[derive(Debug)]
pub enum SlotState {
    Scanning(std::rc::Weak<RefCell<Scan>>),
    Ready(std::rc::Weak<Snapshot>),
}

impl Slot {
    /// What a new request for this directory can share, if anything: a
    /// scan still running, or a snapshot still held and still true.
    pub fn share(&self, now: Instant) -> Option<Listing> {
        let trusted = if self.watch.is_some() {
            crate::site::REVALIDATE_WATCHED
        } else {
            crate::site::REVALIDATE_AFTER
        };
        if now.saturating_duration_since(self.taken) >= trusted {
            return None;
        }
        match &self.state {
            SlotState::Scanning(scan) => scan.upgrade().map(Listing::Scanning),
            SlotState::Ready(snapshot) => snapshot.upgrade().map(Listing::Ready),
        }
    }

    /// Whether nobody holds it any more.
    pub fn is_dead(&self) -> bool {
        match &self.state {
            SlotState::Scanning(scan) => scan.strong_count() == 0,
            SlotState::Ready(snapshot) => snapshot.strong_count() == 0,
        }
    }
}

// A snapshot's per-entry cost: 100 000 entries in about 3 MB plus names.
const _: () = assert!(std::mem::size_of::<Item>() <= 32);
