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
    is_link: bool,
}

/// A directory's visible entries, as they were when it was read.
#[derive(Debug)]
pub struct Snapshot {
    names: Vec<u8>,
    items: Vec<Item>,
    /// Sorted indexes into `items`, one per order asked for so far, or
    /// the sort still under way.
    sorted: RefCell<Vec<(Order, Sorting)>>,
}

/// One order of a snapshot: sorted, or being sorted in steps.
#[derive(Debug)]
enum Sorting {
    Done(Rc<[u32]>),
    Running(Box<MergeSort>),
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
            is_link: item.is_link,
        }
    }

    /// The entries' indexes in `order`, once they are sorted: each call
    /// does at most `budget` steps of the sort (a comparison or a move), so
    /// sorting 100 000 names by natural order (some 200 ms) is spread over
    /// many turns of the loop. Every request for the same order shares the
    /// sort and its result.
    pub fn sorted(&self, order: Order, budget: usize) -> Option<Rc<[u32]>> {
        let mut sorted = self.sorted.borrow_mut();
        let at = match sorted.iter().position(|(o, _)| *o == order) {
            Some(at) => at,
            None => {
                sorted.push((
                    order,
                    Sorting::Running(Box::new(MergeSort::new(self.len()))),
                ));
                sorted.len() - 1
            }
        };
        let state = &mut sorted[at].1;
        if let Sorting::Running(sort) = state {
            let done = sort.step(budget, |a, b| {
                compare(&self.entry(a), &self.entry(b), order)
            })?;
            *state = Sorting::Done(done);
        }
        match state {
            Sorting::Done(done) => Some(Rc::clone(done)),
            Sorting::Running(_) => None,
        }
    }
}

/// A bottom-up merge sort of the indexes `0..n` that can stop after any
/// comparison and go on later: runs of [`MergeSort::RUN`] are sorted first,
/// then merged in passes of doubling width, each pass from one buffer into
/// the other.
#[derive(Debug)]
struct MergeSort {
    from: Vec<u32>,
    into: Vec<u32>,
    /// How many indexes are in sorted runs so far (the first phase).
    runs_sorted: usize,
    /// The width of the runs being merged (0 while runs are being sorted).
    width: usize,
    /// Where the pair of runs being merged starts.
    lo: usize,
    /// The next index of the left run and of the right run, and where the
    /// next merged index goes.
    left: usize,
    right: usize,
    out: usize,
}

impl MergeSort {
    const RUN: usize = 256;

    fn new(n: usize) -> MergeSort {
        MergeSort {
            from: (0..n as u32).collect(),
            into: vec![0; n],
            runs_sorted: 0,
            width: 0,
            lo: 0,
            left: 0,
            right: 0,
            out: 0,
        }
    }

    /// Runs about `budget` comparisons; the sorted indexes once done.
    fn step(
        &mut self,
        mut budget: usize,
        mut cmp: impl FnMut(u32, u32) -> std::cmp::Ordering,
    ) -> Option<Rc<[u32]>> {
        let n = self.from.len();
        while self.width == 0 {
            if self.runs_sorted == n {
                self.width = Self::RUN;
                self.start_merge(0);
                break;
            }
            if budget == 0 {
                return None;
            }
            let end = (self.runs_sorted + Self::RUN).min(n);
            self.from[self.runs_sorted..end].sort_unstable_by(|&a, &b| cmp(a, b));
            // A run of 256 costs about 2 000 comparisons.
            budget = budget.saturating_sub(8 * (end - self.runs_sorted));
            self.runs_sorted = end;
        }
        while self.width < n {
            let mid = (self.lo + self.width).min(n);
            let hi = (self.lo + 2 * self.width).min(n);
            while self.out < hi {
                if budget == 0 {
                    return None;
                }
                budget -= 1;
                let take_left = self.right >= hi
                    || (self.left < mid
                        && cmp(self.from[self.left], self.from[self.right])
                            != std::cmp::Ordering::Greater);
                if take_left {
                    self.into[self.out] = self.from[self.left];
                    self.left += 1;
                } else {
                    self.into[self.out] = self.from[self.right];
                    self.right += 1;
                }
                self.out += 1;
            }
            if hi >= n {
                std::mem::swap(&mut self.from, &mut self.into);
                self.width *= 2;
                self.start_merge(0);
            } else {
                self.start_merge(hi);
            }
        }
        Some(std::mem::take(&mut self.from).into())
    }

    /// Starts merging the pair of runs at `lo`.
    fn start_merge(&mut self, lo: usize) {
        let n = self.from.len();
        self.lo = lo;
        self.left = lo;
        self.right = (lo + self.width).min(n);
        self.out = lo;
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
                is_link: entry.is_link,
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
    /// A finished snapshot kept for the next request even while nobody
    /// reads it, for as long as it is trusted (see [`Slot::share`]): one
    /// reader after another then costs one scan and one sort, not one
    /// each. At most [`KEPT_SNAPSHOTS`] are kept.
    pub kept: Option<Rc<Snapshot>>,
}

/// How many finished snapshots are kept while nobody reads them.
pub const KEPT_SNAPSHOTS: usize = 8;

/// Held weakly: a snapshot nobody reads lives only as long as it is kept.
#[derive(Debug)]
pub enum SlotState {
    Scanning(std::rc::Weak<RefCell<Scan>>),
    Ready(std::rc::Weak<Snapshot>),
}

impl Slot {
    /// What a new request for this directory can share, if anything: a
    /// scan still running, or a snapshot still held and still true.
    pub fn share(&self, now: Instant) -> Option<Listing> {
        if self.expired(now) {
            return None;
        }
        match &self.state {
            SlotState::Scanning(scan) => scan.upgrade().map(Listing::Scanning),
            SlotState::Ready(snapshot) => snapshot.upgrade().map(Listing::Ready),
        }
    }

    /// Whether it may no longer be shared: a watched folder's snapshot is
    /// still looked at again after [`crate::site::REVALIDATE_WATCHED`], as a
    /// safety net; one without a watch after
    /// [`crate::site::REVALIDATE_AFTER`].
    pub fn expired(&self, now: Instant) -> bool {
        let trusted = if self.watch.is_some() {
            crate::site::REVALIDATE_WATCHED
        } else {
            crate::site::REVALIDATE_AFTER
        };
        now.saturating_duration_since(self.taken) >= trusted
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Stopped after any number of comparisons and resumed, the sort
        /// gives exactly what a one-go sort gives.
        #[test]
        fn a_sort_in_steps_is_a_sort(keys in proptest::collection::vec(0u16..500, 0..2000), budget in 1usize..5000) {
            let mut sort = MergeSort::new(keys.len());
            let cmp = |a: u32, b: u32| keys[a as usize].cmp(&keys[b as usize]).then(a.cmp(&b));
            let sorted = loop {
                if let Some(done) = sort.step(budget, cmp) {
                    break done;
                }
            };
            let mut expected: Vec<u32> = (0..keys.len() as u32).collect();
            expected.sort_by(|&a, &b| cmp(a, b));
            prop_assert_eq!(&sorted[..], &expected[..]);
        }
    }
}
