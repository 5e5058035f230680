//! The folder being served: finding a request's file or directory under ROOT
//! without ever stepping outside it.
//!
//! [`crate::path`] has already refused `..` escapes, NUL bytes and hidden names
//! on the string; what is left to check is where symlinks lead. rill opens
//! paths with Linux's `openat2(RESOLVE_BENEATH)` relative to ROOT: the kernel
//! resolves the whole path in one call and refuses any step that would leave
//! ROOT, with no window between checking and opening. Where that refuses a
//! path (an absolute symlink, even one that points back inside) or the kernel
//! lacks `openat2`, the slow path canonicalizes the path and checks that it
//! still lies under the canonical ROOT. Either way a link to `/etc/passwd`
//! answers 404 exactly like a missing file.
//!
//! Files are opened with `O_NONBLOCK` and checked to be regular after opening,
//! so a FIFO or device node under ROOT can never block the loop.
//!
//! Open files are cached: a small, bounded map from relative path to the open
//! file, its validators and — for files up to 16 KiB — its bytes. So a hot
//! small file costs no system call at all. What keeps the cache true is the
//! loop's inotify watch ([`crate::watch`]): each entry holds a watch on every
//! directory along its path (and along its real path, when symlinks lead
//! elsewhere), and an event about any name on the way drops exactly the
//! entries that went through it. The loop reads those events before anything
//! else in a turn, so a request that starts after a write finished sees the
//! new bytes. An entry is still looked at again after [`REVALIDATE_WATCHED`],
//! as a safety net; one whose watch could not be made (no inotify, out of
//! watches) is trusted only for [`REVALIDATE_AFTER`], after which the next
//! request opens the path again and keeps the entry only if inode, size and
//! modification time are unchanged.

use crate::http::conditional::Validators;
use crate::http::encoding::Coding;
use crate::listing::EntryRef;
use crate::path::RequestPath;
use crate::snapshot::{Listing, Scan, Slot, SlotState, Snapshot, KEPT_SNAPSHOTS};
use crate::watch::{Notice, Watcher};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a cached file without a watch is served without looking at the
/// disk again.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);
/// How long a watched entry is trusted: a safety net for file systems whose
/// changes inotify cannot see (network mounts), as lighttpd keeps one.
pub const REVALIDATE_WATCHED: Duration = Duration::from_secs(16);
/// Most files kept open in the cache.
const CACHE_ENTRIES: usize = 256;
/// How a path is opened to be served: for reading, never blocking (a FIFO).
const OPEN_TO_READ: libc::c_int = libc::O_RDONLY | libc::O_NONBLOCK;
/// How a symlinked entry is opened to be described in a listing: `O_PATH`
/// resolves it and allows `fstat`, but opens nothing (no device is touched,
/// no read permission is needed).
const OPEN_TO_LOOK: libc::c_int = libc::O_PATH;
/// Files up to this size are kept in memory too.
pub const CACHE_BODY_MAX: u64 = 16 * 1024;

/// An open regular file and what answers about it need.
#[derive(Debug)]
pub struct OpenFile {
    pub file: File,
    pub size: u64,
    pub inode: u64,
    pub modified: std::time::SystemTime,
    pub validators: Validators,
    /// `Last-Modified`, rendered once.
    pub last_modified: String,
    /// `Content-Type`, from the file's name, looked up once.
    pub content_type: &'static str,
    /// The whole content, for a file of at most [`CACHE_BODY_MAX`] bytes.
    pub bytes: Option<Box<[u8]>>,
    /// Precompressed siblings known not to exist, by suffix (`.br`, `.gz`):
    /// set only while this file's cache entry is watched, which also
    /// watches those names, so a sibling that appears drops the entry and
    /// this knowledge with it.
    absent_siblings: RefCell<Vec<&'static str>>,
}

impl OpenFile {
    fn new(file: File, meta: &Metadata, name: &[u8]) -> OpenFile {
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let validators = Validators::new(meta.ino(), modified, meta.len());
        let bytes = (meta.len() <= CACHE_BODY_MAX)
            .then(|| {
                let mut bytes = vec![0u8; meta.len() as usize];
                file.read_exact_at(&mut bytes, 0).ok()?;
                Some(bytes.into_boxed_slice())
            })
            .flatten();
        OpenFile {
            file,
            size: meta.len(),
            inode: meta.ino(),
            modified,
            last_modified: validators.last_modified(),
            content_type: crate::mime::content_type(name),
            validators,
            bytes,
            absent_siblings: RefCell::default(),
        }
    }

    fn same_version(&self, other: &OpenFile) -> bool {
        (self.inode, self.size, self.modified) == (other.inode, other.size, other.modified)
    }
}

struct CacheEntry {
    file: Rc<OpenFile>,
    checked: Instant,
    /// The (watch, name) pairs whose events drop this entry: one per step
    /// of its path.
    deps: Vec<Dep>,
    /// Every step is watched, so the entry is trusted until an event.
    watched: bool,
}

/// A name inside a watched directory.
type Dep = (i32, Box<[u8]>);

/// What the loop learned from one read of the watch.
#[derive(Debug, Default)]
pub struct WatchReport {
    pub events: u64,
    /// Cache entries dropped.
    pub invalidated: u64,
    /// Paths (relative to ROOT) that changed, each with the event mask.
    pub changes: Vec<(PathBuf, u32)>,
    /// The kernel dropped events: anything may have changed.
    pub overflowed: bool,
}

/// The served folder.
pub struct Site {
    root: PathBuf,
    /// ROOT opened as a directory, the anchor for `openat2`.
    root_dir: File,
    /// Cleared the first time the kernel says it has no `openat2`.
    has_openat2: Cell<bool>,
    /// Keyed by the path's bytes: hashing and comparing a `Path` walks its
    /// components, which cost 7 % of answering a cached file (the `answer`
    /// bench), and the normalized path is already canonical.
    cache: RefCell<HashMap<Box<[u8]>, CacheEntry>>,
    /// Which entries each (watch, name) pair keeps true.
    dependents: RefCell<HashMap<Dep, Vec<Box<[u8]>>>>,
    watcher: RefCell<Watcher>,
    /// Every directory is watched (`--live-reload`), not just the cache's.
    tree: Cell<bool>,
    /// There is an inotify descriptor to read.
    watcher_active: bool,
    /// The coarse clock's reading when the watch was last read.
    watch_tick: Cell<(i64, i64)>,
    /// What the watch said that the loop has not taken yet.
    report: RefCell<WatchReport>,
    /// Listings being scanned or shared, by directory (relative to ROOT).
    snapshots: RefCell<HashMap<PathBuf, Slot>>,
    /// Members held by every archive being walked or sent.
    archive_members: Rc<Cell<usize>>,
}

/// `CLOCK_MONOTONIC_COARSE`: the kernel's last tick, read without a system
/// call (vDSO) and cheaper than the precise clock.
fn coarse_tick() -> (i64, i64) {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    (now.tv_sec, now.tv_nsec)
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site").field("root", &self.root).finish()
    }
}

/// What a request path names under ROOT.
#[derive(Debug)]
pub enum Found {
    /// A regular file, open for reading.
    File(Rc<OpenFile>),
    /// A directory, open, with its path relative to ROOT.
    Dir(OpenDir),
}

/// A directory found under ROOT, held open so that listing it reads this very
/// directory even if its path is renamed or replaced by a symlink meanwhile.
#[derive(Debug)]
pub struct OpenDir {
    /// Its path relative to ROOT (for `index.html` and symlinked entries,
    /// which are resolved from ROOT again, as when they are served).
    pub relative: PathBuf,
    handle: File,
}

impl OpenDir {
    /// The open directory itself, for work that must stay inside it.
    pub fn into_handle(self) -> File {
        self.handle
    }
}

/// Why nothing is served for a path.
#[derive(Debug)]
pub enum Missing {
    /// Nothing there, or something rill will not reveal (outside ROOT, hidden,
    /// not a regular file): 404.
    NotFound,
    /// The file exists but may not be read: 403.
    Forbidden,
    /// Anything else the file system said: 500.
    Io(io::Error),
}

impl From<io::Error> for Missing {
    fn from(error: io::Error) -> Missing {
        match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Missing::NotFound,
            io::ErrorKind::PermissionDenied => Missing::Forbidden,
            _ if error.raw_os_error() == Some(libc::ENAMETOOLONG) => Missing::NotFound,
            _ if error.raw_os_error() == Some(libc::ELOOP) => Missing::NotFound,
            _ => Missing::Io(error),
        }
    }
}

impl Site {
    /// Serves `root`, which must be a directory, watched with inotify.
    pub fn new(root: &Path) -> io::Result<Site> {
        Site::open(root, true)
    }

    /// Serves `root`; `watch: false` (`--no-watch`) trusts cache entries for
    /// [`REVALIDATE_AFTER`] instead of watching them.
    pub fn open(root: &Path, watch: bool) -> io::Result<Site> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let root_dir = File::open(&root)?;
        let watcher = if watch {
            Watcher::new(&root)
        } else {
            Watcher::off(&root)
        };
        Ok(Site {
            root,
            root_dir,
            has_openat2: Cell::new(true),
            cache: RefCell::new(HashMap::new()),
            dependents: RefCell::new(HashMap::new()),
            watcher_active: watcher.raw_fd().is_some(),
            watcher: RefCell::new(watcher),
            tree: Cell::new(false),
            watch_tick: Cell::new((0, 0)),
            report: RefCell::default(),
            snapshots: RefCell::default(),
            archive_members: Rc::default(),
        })
    }

    /// The inotify descriptor, for the loop to register.
    pub fn watch_fd(&self) -> Option<std::os::fd::RawFd> {
        self.watcher.borrow().raw_fd()
    }

    /// How many directories are watched now.
    pub fn watches(&self) -> usize {
        self.watcher.borrow().watches()
    }

    /// Watches every directory of ROOT (`--live-reload`): from now on every
    /// change is reported, not only those that touch the cache.
    pub fn watch_tree(&self) {
        self.tree.set(true);
        let files = self.watcher.borrow_mut().watch_tree(Path::new(""));
        log::debug!(
            "watching {} directories ({} files)",
            self.watches(),
            files.len()
        );
    }

    /// Reads the watch's events: drops the cache entries they touch, and
    /// notes which paths changed (see [`Site::take_watch_report`]). Under
    /// [`Site::watch_tree`] a directory that appears is queued to be watched
    /// and scanned ([`Site::scan_pending`]).
    pub fn read_watch(&self, now: Instant) {
        self.watch_tick.set(coarse_tick());
        let mut notices = Vec::new();
        let events_before = self.watcher.borrow().events_read;
        self.watcher.borrow_mut().read(&mut notices);
        let events = self.watcher.borrow().events_read - events_before;
        self.report.borrow_mut().events += events;
        for notice in notices {
            match notice {
                Notice::Changed { wd, name, mask } => self.on_change(wd, &name, mask, now),
                Notice::DirGone { .. } => {
                    let dropped = self.forget_cached_at(now);
                    self.report.borrow_mut().invalidated += dropped;
                }
                Notice::Overflow => {
                    log::warn!(
                        "inotify's queue overflowed (fs.inotify.max_queued_events): the file cache starts over"
                    );
                    let dropped = self.forget_cached_at(now);
                    let mut report = self.report.borrow_mut();
                    report.overflowed = true;
                    report.invalidated += dropped;
                    let mut watcher = self.watcher.borrow_mut();
                    // Folders deleted while events were lost are still on
                    // the books, and folders made meanwhile not watched yet.
                    watcher.forget_missing();
                    if self.tree.get() {
                        watcher.watch_tree_later(Path::new(""));
                    }
                }
            }
        }
    }

    /// The entry `name` of watched directory `wd` changed.
    fn on_change(&self, wd: i32, name: &[u8], mask: u32, now: Instant) {
        let keys = self.dependents.borrow_mut().remove(&(wd, Box::from(name)));
        let mut invalidated = 0;
        for key in keys.into_iter().flatten() {
            invalidated += u64::from(self.drop_entry(&key, now));
        }
        self.report.borrow_mut().invalidated += invalidated;
        let dirs = self.watcher.borrow().paths(wd).to_vec();
        for dir in dirs {
            self.forget_snapshot(&dir, now);
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            let went = libc::IN_MOVED_FROM | libc::IN_DELETE | libc::IN_CREATE | libc::IN_MOVED_TO;
            if mask & went != 0
                && (mask & libc::IN_ISDIR != 0 || self.watcher.borrow().is_watched(&path))
            {
                self.watcher.borrow_mut().forget_below(&path);
            }
            let appeared = libc::IN_CREATE | libc::IN_MOVED_TO;
            if self.tree.get()
                && mask & libc::IN_ISDIR != 0
                && mask & appeared != 0
                && !name.starts_with(b".")
            {
                self.watcher.borrow_mut().watch_tree_later(&path);
            }
            self.report.borrow_mut().changes.push((path, mask));
        }
    }

    /// Whether directories wait to be watched and scanned.
    pub fn has_pending_scan(&self) -> bool {
        self.watcher.borrow().has_pending_scan()
    }

    /// Watches and scans up to `budget` queued directories. Each is watched
    /// before it is read, so nothing created in it is missed; the files the
    /// scan finds were created before anyone could be told, and are
    /// reported as having appeared.
    pub fn scan_pending(&self, budget: usize) {
        let found = self.watcher.borrow_mut().scan_pending(budget);
        self.report
            .borrow_mut()
            .changes
            .extend(found.into_iter().map(|path| (path, libc::IN_MOVED_TO)));
    }

    /// What the watch has said since the last call, if anything.
    pub fn take_watch_report(&self) -> Option<WatchReport> {
        let mut report = self.report.borrow_mut();
        let empty = report.events == 0 && report.changes.is_empty() && !report.overflowed;
        (!empty).then(|| std::mem::take(&mut *report))
    }

    /// Before an answer comes from the cache: reads the watch again if a
    /// clock tick (1-4 ms) has passed since it was last read. The loop reads
    /// it at the start of every turn; a long turn (a big listing, an upload
    /// chunk, many connections accepted) must not answer a request that
    /// came in late in it from an entry a save has made stale meanwhile.
    /// The coarse clock costs a few nanoseconds; the read (usually
    /// `EAGAIN`) happens at most once per tick.
    fn catch_up(&self, now: Instant) {
        if self.watcher_active && self.watch_tick.get() != coarse_tick() {
            self.read_watch(now);
        }
    }

    /// Drops the lazy watches nobody has needed for a while.
    pub fn prune_watches(&self, now: Instant) {
        let dead: Vec<PathBuf> = self
            .snapshots
            .borrow()
            .iter()
            .filter(|(_, slot)| slot.expired(now) || slot.is_dead())
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in dead {
            self.forget_snapshot(&dir, now);
        }
        self.watcher.borrow_mut().prune(now);
    }

    /// The canonical ROOT.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds what `path` names, following symlinks only while they stay in ROOT.
    pub fn find(&self, path: &RequestPath, now: Instant) -> Result<Found, Missing> {
        self.find_cached(path.relative(), now)
    }

    /// The file `relative` + `suffix` beside `original`, the file at
    /// `relative` (a precompressed `.br` or `.gz`), if there is one. That
    /// one is absent is remembered while the original's cache entry is
    /// watched (see [`OpenFile`]): a browser's requests for a stylesheet
    /// with no siblings then cost no failed `open` each.
    pub fn sibling(
        &self,
        original: &OpenFile,
        relative: &Path,
        suffix: &'static str,
        now: Instant,
    ) -> Option<Rc<OpenFile>> {
        if original.absent_siblings.borrow().contains(&suffix) {
            return None;
        }
        let mut name = relative.as_os_str().to_owned();
        name.push(suffix);
        match self.find_cached(Path::new(&name), now) {
            Ok(Found::File(file)) => Some(file),
            _ => {
                let key = relative.as_os_str().as_bytes();
                let watched = self.cache.borrow().get(key).is_some_and(|entry| {
                    entry.watched && std::ptr::eq(Rc::as_ptr(&entry.file), original)
                });
                if watched {
                    original.absent_siblings.borrow_mut().push(suffix);
                }
                None
            }
        }
    }

    /// Finds `index.html` in a directory found before.
    pub fn index_of(&self, dir: &OpenDir, now: Instant) -> Result<Found, Missing> {
        match self.find_cached(&dir.relative.join("index.html"), now)? {
            Found::Dir(_) => Err(Missing::NotFound),
            file => Ok(file),
        }
    }

    /// Finds what `path` names on disk now, bypassing the cache (for uploads,
    /// which must see exactly what exists).
    pub fn find_uncached(&self, path: &RequestPath) -> Result<Found, Missing> {
        self.find_relative(path.relative())
    }

    /// Empties the file cache (after an upload changed the folder).
    pub fn forget_cached(&self) {
        self.forget_cached_at(Instant::now());
    }

    /// Empties the file cache; returns how many entries it held.
    fn forget_cached_at(&self, now: Instant) -> u64 {
        let slots = std::mem::take(&mut *self.snapshots.borrow_mut());
        for slot in slots.values() {
            if let Some(wd) = slot.watch {
                self.watcher.borrow_mut().release(wd, now);
            }
        }
        let entries = std::mem::take(&mut *self.cache.borrow_mut());
        self.dependents.borrow_mut().clear();
        let mut watcher = self.watcher.borrow_mut();
        for entry in entries.values() {
            for (wd, _) in &entry.deps {
                watcher.release(*wd, now);
            }
        }
        entries.len() as u64
    }

    /// Drops one entry and the watches it held; `false` if there was none.
    fn drop_entry(&self, key: &[u8], now: Instant) -> bool {
        let Some(entry) = self.cache.borrow_mut().remove(key) else {
            return false;
        };
        let mut dependents = self.dependents.borrow_mut();
        let mut watcher = self.watcher.borrow_mut();
        for dep in &entry.deps {
            if let Some(keys) = dependents.get_mut(dep) {
                keys.retain(|k| &**k != key);
                if keys.is_empty() {
                    dependents.remove(dep);
                }
            }
            watcher.release(dep.0, now);
        }
        true
    }

    /// The cache in front of [`Site::find_relative`].
    fn find_cached(&self, relative: &Path, now: Instant) -> Result<Found, Missing> {
        self.catch_up(now);
        let key = relative.as_os_str().as_bytes();
        let cached = self.cache.borrow().get(key).map(|entry| {
            let trusted = if entry.watched {
                REVALIDATE_WATCHED
            } else {
                REVALIDATE_AFTER
            };
            let fresh = now.saturating_duration_since(entry.checked) < trusted;
            (Rc::clone(&entry.file), fresh)
        });
        if let Some((file, true)) = &cached {
            return Ok(Found::File(Rc::clone(file)));
        }
        match self.find_relative(relative) {
            Ok(Found::File(opened)) => {
                if let Some((old, _)) = cached {
                    if old.same_version(&opened) {
                        // Unchanged on disk: keep the entry (and its bytes).
                        if let Some(entry) = self.cache.borrow_mut().get_mut(key) {
                            entry.checked = now;
                        }
                        return Ok(Found::File(old));
                    }
                    self.drop_entry(key, now);
                }
                self.remember(relative, &opened, now);
                Ok(Found::File(opened))
            }
            other => {
                self.drop_entry(key, now);
                other
            }
        }
    }

    /// Caches a file just opened at `relative`, watching the directories on
    /// its way first. A change between the open and the watch would be
    /// missed, so the path is looked at once more after the watch is in
    /// place: if it no longer names what was opened, nothing is cached.
    fn remember(&self, relative: &Path, opened: &Rc<OpenFile>, now: Instant) {
        if self.cache.borrow().len() >= CACHE_ENTRIES {
            // Bounded, and simple: a full cache starts over.
            self.forget_cached_at(now);
        }
        let mut deps = Vec::new();
        let mut watched = self.hold_path(relative, &mut deps);
        if watched && crate::http::encoding::is_compressible(opened.content_type) {
            // Its precompressed siblings' names drop the entry too, so
            // `sibling` may remember that they are absent.
            watched &= self.hold_siblings(relative, &mut deps);
        }
        let real = fs::read_link(format!("/proc/self/fd/{}", opened.file.as_raw_fd()))
            .ok()
            .and_then(|real| real.strip_prefix(&self.root).ok().map(Path::to_path_buf));
        match real {
            Some(real) if real != relative => {
                // Events on both paths drop the entry at once; but a symlink
                // in the middle of a chain (a -> b -> c) is on neither, so
                // such entries are also looked at again every second.
                self.hold_path(&real, &mut deps);
                watched = false;
            }
            Some(_) => {}
            None => watched = false,
        }
        if watched {
            let unchanged = fs::metadata(self.root.join(relative)).is_ok_and(|meta| {
                (meta.ino(), meta.len(), meta.modified().ok())
                    == (opened.inode, opened.size, Some(opened.modified))
            });
            if !unchanged {
                let mut watcher = self.watcher.borrow_mut();
                for (wd, _) in &deps {
                    watcher.release(*wd, now);
                }
                return;
            }
        }
        let key: Box<[u8]> = Box::from(relative.as_os_str().as_bytes());
        let mut dependents = self.dependents.borrow_mut();
        for dep in &deps {
            dependents.entry(dep.clone()).or_default().push(key.clone());
        }
        self.cache.borrow_mut().insert(
            key,
            CacheEntry {
                file: Rc::clone(opened),
                checked: now,
                deps,
                watched,
            },
        );
    }

    /// Holds the watch on the directory of `path` once more for each name
    /// a precompressed sibling of it would have.
    fn hold_siblings(&self, path: &Path, deps: &mut Vec<Dep>) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let mut watcher = self.watcher.borrow_mut();
        for coding in [Coding::Brotli, Coding::Gzip] {
            let Ok(wd) = watcher.hold(dir) else {
                return false;
            };
            let mut sibling = name.as_bytes().to_vec();
            sibling.extend_from_slice(coding.suffix().as_bytes());
            deps.push((wd, sibling.into_boxed_slice()));
        }
        true
    }

    /// Holds a watch on each directory along `path` and records the name
    /// taken in it; `false` if any step could not be watched.
    fn hold_path(&self, path: &Path, deps: &mut Vec<Dep>) -> bool {
        let mut watcher = self.watcher.borrow_mut();
        let mut dir = PathBuf::new();
        let mut all = true;
        for step in path.iter() {
            match watcher.hold(&dir) {
                Ok(wd) => deps.push((wd, Box::from(step.as_bytes()))),
                Err(_) => all = false,
            }
            dir.push(step);
        }
        all
    }

    fn find_relative(&self, relative: &Path) -> Result<Found, Missing> {
        let (file, meta) = self.open_inside(relative, OPEN_TO_READ)?;
        if meta.is_dir() {
            Ok(Found::Dir(OpenDir {
                relative: relative.to_path_buf(),
                handle: file,
            }))
        } else if meta.is_file() {
            let name = relative.file_name().map_or(&b""[..], |n| n.as_bytes());
            Ok(Found::File(Rc::new(OpenFile::new(file, &meta, name))))
        } else {
            Err(Missing::NotFound)
        }
    }

    /// Opens `relative` with `flags` without leaving ROOT, and says what it is.
    fn open_inside(
        &self,
        relative: &Path,
        flags: libc::c_int,
    ) -> Result<(File, Metadata), Missing> {
        let file = match self.open_beneath(relative, flags) {
            Some(Ok(file)) => file,
            Some(Err(e)) if !matches!(e.raw_os_error(), Some(libc::EXDEV | libc::EAGAIN)) => {
                return Err(e.into())
            }
            // EXDEV: a step led outside ROOT, or was an absolute symlink;
            // EAGAIN: a `..` on the way raced with a rename somewhere on
            // the system (RESOLVE_BENEATH refuses to guess); None: no
            // openat2. The slow path decides.
            _ => self.open_checked(relative, flags)?,
        };
        let meta = file.metadata()?;
        Ok((file, meta))
    }

    /// `openat2(ROOT, relative, RESOLVE_BENEATH)`, or `None` without openat2.
    fn open_beneath(&self, relative: &Path, flags: libc::c_int) -> Option<io::Result<File>> {
        if !self.has_openat2.get() {
            return None;
        }
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let Ok(c_path) = CString::new(relative.as_os_str().as_bytes()) else {
            return Some(Err(io::ErrorKind::NotFound.into()));
        };
        // SAFETY: open_how is plain data; all-zero is its documented default.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: the path is NUL-terminated, `how` lives across the call and
        // its size is passed; the kernel returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.root_dir.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ENOSYS) {
                self.has_openat2.set(false);
                return None;
            }
            return Some(Err(error));
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Some(Ok(unsafe { File::from_raw_fd(fd as i32) }))
    }

    /// The portable check: canonicalize, confirm it is under ROOT, open.
    fn open_checked(&self, relative: &Path, flags: libc::c_int) -> Result<File, Missing> {
        let real = self.root.join(relative).canonicalize()?;
        if !real.starts_with(&self.root) {
            return Err(Missing::NotFound);
        }
        Ok(OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(&real)?)
    }

    /// The entries of a directory for its listing: a snapshot another
    /// request holds and that is still true, the scan another request
    /// started, or a new scan. The directory is watched before it is read,
    /// so a change made while the scan runs is not missed.
    pub fn listing(&self, dir: &OpenDir, now: Instant) -> Result<Listing, Missing> {
        self.catch_up(now);
        let shared = self
            .snapshots
            .borrow()
            .get(&dir.relative)
            .and_then(|slot| slot.share(now));
        if let Some(shared) = shared {
            return Ok(shared);
        }
        self.forget_snapshot(&dir.relative, now);
        let watch = self.watcher.borrow_mut().hold(&dir.relative).ok();
        let scan = match self.read_dir(dir) {
            Ok(reader) => Rc::new(RefCell::new(Scan::new(reader))),
            Err(missing) => {
                if let Some(wd) = watch {
                    self.watcher.borrow_mut().release(wd, now);
                }
                return Err(missing);
            }
        };
        let slot = Slot {
            state: SlotState::Scanning(Rc::downgrade(&scan)),
            watch,
            taken: now,
            kept: None,
        };
        self.snapshots
            .borrow_mut()
            .insert(dir.relative.clone(), slot);
        Ok(Listing::Scanning(scan))
    }

    /// `scan` of the directory at `relative` finished: requests that come
    /// later share its snapshot (unless the directory changed meanwhile and
    /// a newer scan took its place).
    pub fn scanned(&self, relative: &Path, scan: &Rc<RefCell<Scan>>, snapshot: &Rc<Snapshot>) {
        let mut snapshots = self.snapshots.borrow_mut();
        if let Some(slot) = snapshots.get_mut(relative) {
            if matches!(&slot.state, SlotState::Scanning(s) if std::ptr::eq(s.as_ptr(), Rc::as_ptr(scan)))
            {
                slot.state = SlotState::Ready(Rc::downgrade(snapshot));
                slot.kept = Some(Rc::clone(snapshot));
            }
        }
        // Bounded: past the limit, the oldest kept snapshot is let go (its
        // readers, if any, keep it alive until they are done).
        let kept = snapshots
            .values()
            .filter(|slot| slot.kept.is_some())
            .count();
        if kept > KEPT_SNAPSHOTS {
            if let Some(oldest) = snapshots
                .values_mut()
                .filter(|slot| slot.kept.is_some())
                .min_by_key(|slot| slot.taken)
            {
                oldest.kept = None;
            }
        }
    }

    /// Drops the directory's snapshot slot and the watch it held: the
    /// directory changed, or nobody holds the snapshot any more. Readers
    /// still streaming it keep their copy.
    fn forget_snapshot(&self, relative: &Path, now: Instant) {
        let slot = self.snapshots.borrow_mut().remove(relative);
        if let Some(wd) = slot.and_then(|slot| slot.watch) {
            self.watcher.borrow_mut().release(wd, now);
        }
    }

    /// Opens the folder at `relative` (a subfolder of one being archived),
    /// with what `fstat` says of it: its device and inode tell a walk that
    /// meets a folder twice through symlinks.
    pub fn open_dir(&self, relative: &Path) -> Result<(OpenDir, Metadata), Missing> {
        let (handle, meta) = self.open_inside(relative, OPEN_TO_READ | libc::O_DIRECTORY)?;
        let dir = OpenDir {
            relative: relative.to_path_buf(),
            handle,
        };
        Ok((dir, meta))
    }

    /// Opens the regular file at `relative` to be sent as part of a bigger
    /// answer (an archive member), past the cache: a folder of 10 000 files
    /// would only push every served file out of it.
    pub fn open_file(&self, relative: &Path) -> Result<Rc<OpenFile>, Missing> {
        match self.find_relative(relative)? {
            Found::File(file) => Ok(file),
            Found::Dir(_) => Err(Missing::NotFound),
        }
    }

    /// The count of members every archive in flight holds, shared by them
    /// (see [`crate::body::archive`]).
    pub fn archive_members(&self) -> Rc<Cell<usize>> {
        Rc::clone(&self.archive_members)
    }

    /// Starts reading a directory in steps ([`Site::read_entries`]).
    ///
    /// The directory is read through the handle [`Site::find`] opened (by its
    /// `/proc/self/fd` link), not by path: the path was checked then, and a
    /// symlink swapped in since must not make rill list another folder.
    pub fn read_dir(&self, dir: &OpenDir) -> Result<DirReader, Missing> {
        let by_handle = PathBuf::from(format!("/proc/self/fd/{}", dir.handle.as_raw_fd()));
        let items = match fs::read_dir(&by_handle) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !Path::new("/proc/self").exists() => {
                // No /proc mounted: fall back to the path checked a moment ago.
                fs::read_dir(self.root.join(&dir.relative))?
            }
            items => items?,
        };
        Ok(DirReader {
            relative: dir.relative.clone(),
            items,
        })
    }

    /// Reads up to `budget` names of a directory and passes each visible
    /// entry to `push`: hidden names left out, and symlinks described by
    /// what they point to — or left out when following them would not serve
    /// anything (outside ROOT, missing, not a file or folder). `Ok(true)`
    /// once the directory is exhausted.
    pub fn read_entries(
        &self,
        reader: &mut DirReader,
        budget: usize,
        mut push: impl FnMut(EntryRef),
    ) -> Result<bool, Missing> {
        for _ in 0..budget {
            let Some(item) = reader.items.next() else {
                return Ok(true);
            };
            let item = item?;
            let name = item.file_name();
            if name.as_bytes().starts_with(b".") {
                continue;
            }
            // Read from the directory's own descriptor (`fstatat`), no path.
            let mut meta = match item.metadata() {
                Ok(meta) => meta,
                // Deleted between getdents and fstatat: it is not there.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let is_link = meta.file_type().is_symlink();
            if is_link {
                match self.open_inside(&reader.relative.join(&name), OPEN_TO_LOOK) {
                    Ok((_, target)) => meta = target,
                    Err(_) => continue,
                }
            }
            if !meta.is_dir() && !meta.is_file() {
                continue;
            }
            push(EntryRef {
                name: name.as_bytes(),
                is_dir: meta.is_dir(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                is_link,
            });
        }
        Ok(false)
    }
}

/// A directory being read in steps, from [`Site::read_dir`].
#[derive(Debug)]
pub struct DirReader {
    /// Its path relative to ROOT, for resolving symlinked entries.
    relative: PathBuf,
    items: fs::ReadDir,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn kind(site: &Site, path: &str) -> &'static str {
        let path = RequestPath::parse(path).expect("valid path");
        match site.find_uncached(&path) {
            Ok(Found::File(..)) => "file",
            Ok(Found::Dir(_)) => "dir",
            Err(Missing::NotFound) => "not found",
            Err(Missing::Forbidden) => "forbidden",
            Err(Missing::Io(_)) => "io",
        }
    }

    fn cached_bytes(site: &Site, path: &str, now: Instant) -> Option<Vec<u8>> {
        match site.find(&RequestPath::parse(path).unwrap(), now) {
            Ok(Found::File(file)) => file.bytes.as_deref().map(<[u8]>::to_vec),
            _ => None,
        }
    }

    #[test]
    fn without_a_watch_the_cache_sees_changes_after_revalidation() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("a.txt"), "version 1").unwrap();
        let site = Site::open(root.path(), false).unwrap();
        let t0 = Instant::now();
        assert_eq!(cached_bytes(&site, "/a.txt", t0).unwrap(), b"version 1");
        fs::write(root.path().join("a.txt"), "version 2, longer").unwrap();
        // Within the revalidation interval the disk is not looked at.
        let soon = t0 + REVALIDATE_AFTER / 2;
        assert_eq!(cached_bytes(&site, "/a.txt", soon).unwrap(), b"version 1");
        let later = t0 + REVALIDATE_AFTER * 2;
        assert_eq!(
            cached_bytes(&site, "/a.txt", later).unwrap(),
            b"version 2, longer"
        );
        fs::remove_file(root.path().join("a.txt")).unwrap();
        assert_eq!(
            cached_bytes(&site, "/a.txt", later + REVALIDATE_AFTER * 2),
            None
        );
        // Uploads look past the cache.
        fs::write(root.path().join("b.txt"), "b").unwrap();
        let path = RequestPath::parse("/b.txt").unwrap();
        assert!(matches!(site.find(&path, later), Ok(Found::File(_))));
        fs::remove_file(root.path().join("b.txt")).unwrap();
        assert!(matches!(site.find_uncached(&path), Err(Missing::NotFound)));
        site.forget_cached();
        assert!(matches!(site.find(&path, later), Err(Missing::NotFound)));
    }

    /// Reads the watch as the loop does before a request.
    fn watched_bytes(site: &Site, path: &str, now: Instant) -> Option<Vec<u8>> {
        site.read_watch(now);
        cached_bytes(site, path, now)
    }

    #[test]
    fn a_watched_cache_sees_every_kind_of_change_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::write(root.join("sub/deeper/a.txt"), "one").unwrap();
        let site = Site::new(&root).unwrap();
        let now = Instant::now();
        let read = |path| watched_bytes(&site, path, now);
        assert_eq!(read("/sub/deeper/a.txt").unwrap(), b"one");
        assert!(site.watches() >= 3, "root, sub, sub/deeper");
        // Rewritten in place, same size.
        fs::write(root.join("sub/deeper/a.txt"), "two").unwrap();
        assert_eq!(read("/sub/deeper/a.txt").unwrap(), b"two");
        // An editor's atomic save.
        fs::write(root.join("sub/deeper/.a.txt.tmp"), "three").unwrap();
        fs::rename(
            root.join("sub/deeper/.a.txt.tmp"),
            root.join("sub/deeper/a.txt"),
        )
        .unwrap();
        assert_eq!(read("/sub/deeper/a.txt").unwrap(), b"three");
        // A folder on the way replaced by another.
        fs::create_dir_all(root.join("other/deeper")).unwrap();
        fs::write(root.join("other/deeper/a.txt"), "four").unwrap();
        fs::rename(root.join("sub"), root.join("old")).unwrap();
        fs::rename(root.join("other"), root.join("sub")).unwrap();
        assert_eq!(read("/sub/deeper/a.txt").unwrap(), b"four");
        // Deleted.
        fs::remove_file(root.join("sub/deeper/a.txt")).unwrap();
        assert_eq!(read("/sub/deeper/a.txt"), None);
    }

    #[test]
    fn a_file_reached_through_a_symlink_is_watched_where_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir(root.join("real")).unwrap();
        fs::write(root.join("real/page.html"), "one").unwrap();
        symlink("real", root.join("link")).unwrap();
        let site = Site::new(&root).unwrap();
        let now = Instant::now();
        assert_eq!(
            watched_bytes(&site, "/link/page.html", now).unwrap(),
            b"one"
        );
        fs::write(root.join("real/page.html"), "two").unwrap();
        assert_eq!(
            watched_bytes(&site, "/link/page.html", now).unwrap(),
            b"two"
        );
        // The link itself pointed elsewhere.
        fs::create_dir(root.join("elsewhere")).unwrap();
        fs::write(root.join("elsewhere/page.html"), "three").unwrap();
        fs::remove_file(root.join("link")).unwrap();
        symlink("elsewhere", root.join("link")).unwrap();
        assert_eq!(
            watched_bytes(&site, "/link/page.html", now).unwrap(),
            b"three"
        );
    }

    #[test]
    fn a_symlink_in_the_middle_of_a_chain_is_looked_at_again_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("c1.html"), "one").unwrap();
        fs::write(root.join("c2.html"), "two").unwrap();
        symlink("c1.html", root.join("b.html")).unwrap();
        symlink("b.html", root.join("a.html")).unwrap();
        let site = Site::new(&root).unwrap();
        let t0 = Instant::now();
        assert_eq!(watched_bytes(&site, "/a.html", t0).unwrap(), b"one");
        // b.html is on neither the path asked for nor the real one.
        fs::remove_file(root.join("b.html")).unwrap();
        symlink("c2.html", root.join("b.html")).unwrap();
        let later = t0 + REVALIDATE_AFTER * 2;
        assert_eq!(watched_bytes(&site, "/a.html", later).unwrap(), b"two");
    }

    #[test]
    fn dropped_entries_give_their_watches_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/a.txt"), "a").unwrap();
        let site = Site::new(&root).unwrap();
        let now = Instant::now();
        watched_bytes(&site, "/sub/a.txt", now).unwrap();
        assert_eq!(site.watches(), 2);
        fs::remove_file(root.join("sub/a.txt")).unwrap();
        assert_eq!(watched_bytes(&site, "/sub/a.txt", now), None);
        assert!(site.dependents.borrow().is_empty());
        site.prune_watches(now + Duration::from_secs(3600));
        assert_eq!(site.watches(), 0, "no entry needs them any more");
    }

    #[test]
    fn an_entry_that_cannot_be_watched_falls_back_to_revalidation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/a.txt"), "one").unwrap();
        let site = Site::new(&root).unwrap();
        site.watcher.borrow_mut().limit_watches(1); // ROOT, not sub/
        let t0 = Instant::now();
        assert_eq!(watched_bytes(&site, "/sub/a.txt", t0).unwrap(), b"one");
        assert!(!site.cache.borrow()[&b"sub/a.txt"[..]].watched);
        fs::write(root.join("sub/a.txt"), "two").unwrap();
        let later = t0 + REVALIDATE_AFTER * 2;
        assert_eq!(watched_bytes(&site, "/sub/a.txt", later).unwrap(), b"two");
    }

    #[test]
    fn an_overflow_starts_the_cache_over() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        let site = Site::new(&root).unwrap();
        let now = Instant::now();
        watched_bytes(&site, "/a.txt", now).unwrap();
        assert_eq!(site.cache.borrow().len(), 1);
        assert_eq!(site.forget_cached_at(now), 1);
        assert!(site.cache.borrow().is_empty() && site.dependents.borrow().is_empty());
    }

    #[test]
    fn symlinks_are_followed_only_inside_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/a.txt"), "a").unwrap();
        fs::write(outer.path().join("secret"), "s").unwrap();
        symlink("sub/a.txt", root.join("relative-in")).unwrap();
        symlink(root.join("sub/a.txt"), root.join("absolute-in")).unwrap();
        symlink("../secret", root.join("relative-out")).unwrap();
        symlink(outer.path().join("secret"), root.join("absolute-out")).unwrap();
        symlink(outer.path(), root.join("dir-out")).unwrap();
        symlink("sub", root.join("dir-in")).unwrap();
        let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

        let site = Site::new(&root).unwrap();
        for with_openat2 in [true, false] {
            site.has_openat2.set(with_openat2);
            for (path, expected) in [
                ("/", "dir"),
                ("/sub", "dir"),
                ("/sub/a.txt", "file"),
                ("/relative-in", "file"),
                ("/absolute-in", "file"),
                ("/dir-in/a.txt", "file"),
                ("/relative-out", "not found"),
                ("/absolute-out", "not found"),
                ("/dir-out/secret", "not found"),
                ("/dir-out", "not found"),
                ("/missing", "not found"),
                ("/sub/a.txt/x", "not found"),
                ("/fifo", "not found"),
            ] {
                assert_eq!(
                    kind(&site, path),
                    expected,
                    "{path} (openat2: {with_openat2})"
                );
            }
        }
        for with_openat2 in [true, false] {
            site.has_openat2.set(with_openat2);
            assert_eq!(
                listed_names(&site, &open_dir(&site, "/")),
                ["absolute-in", "dir-in", "relative-in", "sub"],
                "openat2: {with_openat2}"
            );
        }
    }

    fn open_dir(site: &Site, path: &str) -> OpenDir {
        match site.find_uncached(&RequestPath::parse(path).unwrap()) {
            Ok(Found::Dir(dir)) => dir,
            other => panic!("{path}: {other:?}"),
        }
    }

    fn listed_names(site: &Site, dir: &OpenDir) -> Vec<String> {
        let mut reader = site.read_dir(dir).unwrap();
        let mut names = Vec::new();
        while !site
            .read_entries(&mut reader, 100, |entry| {
                names.push(String::from_utf8(entry.name.to_vec()).unwrap())
            })
            .unwrap()
        {}
        names.sort();
        names
    }

    #[test]
    fn a_listing_reads_the_folder_that_was_checked_even_if_a_symlink_replaces_it() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir_all(root.join("pub")).unwrap();
        fs::write(root.join("pub/notes.txt"), "n").unwrap();
        fs::create_dir_all(outer.path().join("private")).unwrap();
        fs::write(outer.path().join("private/secret"), "s").unwrap();
        let site = Site::new(&root).unwrap();

        let checked = open_dir(&site, "/pub/");
        // Between the check and the listing, the folder is swapped for a
        // symlink that leads out of ROOT.
        fs::rename(root.join("pub"), root.join("old")).unwrap();
        symlink(outer.path().join("private"), root.join("pub")).unwrap();

        assert_eq!(listed_names(&site, &checked), ["notes.txt"]);
        // Asked afresh, the path now leads outside ROOT and is not found.
        assert_eq!(kind(&site, "/pub/"), "not found");
    }
}
