//! The loop's watch on the served folder: one inotify descriptor, registered
//! with the same `mio::Poll` as the sockets and drained until `EAGAIN` like
//! any of them, so that a change on disk reaches rill before the request
//! that follows it.
//!
//! inotify watches directories, not files: an editor's atomic save writes a
//! temp file and renames it over the old one, which would leave a watch on
//! the old file's inode blind. So rill watches the directory that holds a
//! name, and an event says "the name `page.html` in directory 7 changed".
//!
//! Two kinds of watch share the descriptor:
//!
//! - **lazy** ones, for the file cache ([`crate::site`]): the directories on
//!   the path of each cached file, counted by the entries that need them and
//!   dropped a while after the last one went (as lighttpd's inotify stat
//!   cache does);
//! - **tree** ones, under `--live-reload`: every directory of ROOT, hidden
//!   ones excepted, each watched *before* it is scanned, so a file created
//!   between the scan and the watch cannot be missed.
//!
//! The masks leave out `ACCESS`, `OPEN` and `CLOSE_NOWRITE`: rill's own
//! reads would trigger them. When inotify is missing, a watch cannot be
//! added (`ENOSPC`: `fs.inotify.max_user_watches` is used up) or the kernel's
//! queue overflows, rill says so once and the file cache falls back to
//! looking at the disk again every second. [`parse_events`] is the sans-IO
//! part: the kernel's bytes to events.

use log::{debug, trace, warn};
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What rill asks to hear about a watched directory. `MODIFY` only ever
/// invalidates the cache (a file is still being written); the live reload
/// waits for `CLOSE_WRITE`.
const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_ATTRIB
    | libc::IN_MODIFY
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_EXCL_UNLINK;

/// The fixed part of `struct inotify_event`: wd, mask, cookie, len.
const EVENT_HEADER: usize = 16;
/// Room for many events per `read`, and at least one with the longest name
/// (`NAME_MAX` + its NUL), which the kernel otherwise refuses with `EINVAL`.
const READ_BUFFER: usize = 64 * 1024;
/// A lazy watch nobody needs is kept this long, so a cache that refills
/// does not pay an `inotify_add_watch` per directory each time.
const UNUSED_LIFETIME: Duration = Duration::from_secs(60);

/// One event as the kernel wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    /// The watch it is about; -1 for a queue overflow.
    pub wd: i32,
    pub mask: u32,
    /// Pairs a `MOVED_FROM` with its `MOVED_TO`.
    pub cookie: u32,
    /// The name inside the watched directory; empty for an event about the
    /// directory itself.
    pub name: &'a [u8],
}

/// The events in a buffer filled by `read(2)` on an inotify descriptor. A
/// truncated event at the end (the kernel never writes one) ends the list.
pub fn parse_events(mut buf: &[u8]) -> impl Iterator<Item = RawEvent<'_>> {
    std::iter::from_fn(move || {
        let header = buf.get(..EVENT_HEADER)?;
        let field = |at: usize| [header[at], header[at + 1], header[at + 2], header[at + 3]];
        let wd = i32::from_ne_bytes(field(0));
        let mask = u32::from_ne_bytes(field(4));
        let cookie = u32::from_ne_bytes(field(8));
        let len = u32::from_ne_bytes(field(12)) as usize;
        let padded = buf.get(EVENT_HEADER..EVENT_HEADER + len)?;
        // The name is NUL-terminated and padded with more NULs.
        let name = padded.split(|&b| b == 0).next().unwrap_or_default();
        buf = &buf[EVENT_HEADER + len..];
        Some(RawEvent {
            wd,
            mask,
            cookie,
            name,
        })
    })
}

/// What an event means to rill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The entry `name` of watched directory `wd` changed; `mask` says how.
    Changed { wd: i32, name: Box<[u8]>, mask: u32 },
    /// A watched directory itself went away (deleted or moved): what was
    /// known under its paths can no longer be trusted.
    DirGone { wd: i32 },
    /// The kernel dropped events: nothing cached can be trusted.
    Overflow,
}

/// Why a watch could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwatched {
    /// No inotify descriptor (none could be made, or `--no-watch`).
    Off,
    /// `inotify_add_watch` failed (out of watches, gone, not a directory).
    Failed,
}

/// A watched directory.
#[derive(Debug)]
struct WatchedDir {
    /// Its paths relative to ROOT: more than one when symlinks lead to the
    /// same directory (inotify gives one inode one watch).
    paths: Vec<PathBuf>,
    /// Cache entries whose path goes through it.
    users: usize,
    /// Watched for `--live-reload`: kept while rill runs.
    tree: bool,
    /// When the last user went (lazy watches only).
    unused_since: Option<Instant>,
}

/// The inotify descriptor and what each of its watches is.
pub struct Watcher {
    inotify: Option<OwnedFd>,
    root: PathBuf,
    dirs: HashMap<i32, WatchedDir>,
    /// Ordered by path, so everything below a folder is one range: a
    /// folder tree deleted or moved is forgotten in O(log n) per folder.
    by_path: BTreeMap<PathBuf, i32>,
    buffer: Vec<u8>,
    /// A warning about watches was printed: one is enough.
    warned: bool,
    /// Most watches held: the kernel's limit stands in for it, except in
    /// the tests of what happens when that limit is reached.
    max_watches: usize,
    /// Directories still to be watched and scanned (`--live-reload`), each
    /// with whether it was asked for (rather than found below one).
    pending_scan: Vec<(PathBuf, bool)>,
    /// Events read since the start.
    pub events_read: u64,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("active", &self.inotify.is_some())
            .field("watches", &self.dirs.len())
            .finish()
    }
}

impl Watcher {
    /// A watcher for the folder at `root` (canonical). Without inotify it
    /// warns once and watches nothing.
    pub fn new(root: &Path) -> Watcher {
        // SAFETY: inotify_init1 takes flags only and returns a new
        // descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        let inotify = if fd >= 0 {
            // SAFETY: `fd` was just returned to us and nothing else owns it.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        } else {
            warn!(
                "no inotify ({}): changes on disk show within {:?}",
                io::Error::last_os_error(),
                crate::site::REVALIDATE_AFTER
            );
            None
        };
        Watcher {
            inotify,
            ..Watcher::off(root)
        }
    }

    /// A watcher that watches nothing (`--no-watch`, and tests of the
    /// fallback).
    pub fn off(root: &Path) -> Watcher {
        Watcher {
            inotify: None,
            root: root.to_path_buf(),
            dirs: HashMap::new(),
            by_path: BTreeMap::new(),
            buffer: Vec::new(),
            warned: false,
            max_watches: usize::MAX,
            pending_scan: Vec::new(),
            events_read: 0,
        }
    }

    /// The descriptor to register with the poll, if there is one.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.inotify.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// How many directories are watched.
    pub fn watches(&self) -> usize {
        self.dirs.len()
    }

    /// The paths (relative to ROOT) of the directory watch `wd` is about.
    pub fn paths(&self, wd: i32) -> &[PathBuf] {
        self.dirs.get(&wd).map_or(&[], |dir| &dir.paths)
    }

    /// Watches the directory at `relative` for a cache entry that needs it
    /// (see [`Watcher::release`]); returns its watch.
    pub fn hold(&mut self, relative: &Path) -> Result<i32, Unwatched> {
        let wd = self.add(relative)?;
        if let Some(dir) = self.dirs.get_mut(&wd) {
            dir.users += 1;
            dir.unused_since = None;
        }
        Ok(wd)
    }

    /// A cache entry no longer needs watch `wd`.
    pub fn release(&mut self, wd: i32, now: Instant) {
        if let Some(dir) = self.dirs.get_mut(&wd) {
            dir.users = dir.users.saturating_sub(1);
            if dir.users == 0 && !dir.tree {
                dir.unused_since = Some(now);
            }
        }
    }

    /// Drops the lazy watches nobody has needed for a while.
    pub fn prune(&mut self, now: Instant) {
        let stale: Vec<i32> = self
            .dirs
            .iter()
            .filter(|(_, dir)| {
                dir.unused_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= UNUSED_LIFETIME)
            })
            .map(|(&wd, _)| wd)
            .collect();
        for wd in stale {
            if let Some(fd) = &self.inotify {
                // SAFETY: plain call on our descriptor; a stale wd gives EINVAL.
                unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
            }
            self.forget(wd);
        }
    }

    /// Watches `relative` and every directory below it (hidden ones
    /// excepted, symlinks not followed), each before it is scanned, and
    /// returns the files found (relative to ROOT): for a directory that
    /// just appeared, they are changes nobody was told of yet. All at once:
    /// for the start, before the loop runs; [`Watcher::watch_tree_later`]
    /// spreads the work over turns.
    pub fn watch_tree(&mut self, relative: &Path) -> Vec<PathBuf> {
        self.watch_tree_later(relative);
        self.scan_pending(usize::MAX)
    }

    /// Queues `relative` (and so its whole subtree) to be watched and
    /// scanned by [`Watcher::scan_pending`]: a big folder moved into ROOT
    /// must not hold the loop for the whole scan.
    pub fn watch_tree_later(&mut self, relative: &Path) {
        if self.inotify.is_some() {
            self.pending_scan.push((relative.to_path_buf(), true));
        }
    }

    /// Whether directories wait to be watched and scanned.
    pub fn has_pending_scan(&self) -> bool {
        !self.pending_scan.is_empty()
    }

    /// Watches and scans at most `budget` queued directories (each watched
    /// before it is read, so nothing created meanwhile is missed), queueing
    /// their subdirectories; returns the files found.
    pub fn scan_pending(&mut self, mut budget: usize) -> Vec<PathBuf> {
        let mut found = Vec::new();
        while budget > 0 {
            let Some((dir, asked)) = self.pending_scan.pop() else {
                break;
            };
            budget -= 1;
            match self.add(&dir) {
                Ok(wd) => {
                    if let Some(watched) = self.dirs.get_mut(&wd) {
                        if watched.tree && !asked {
                            continue; // reached twice (a bind mount): scanned already
                        }
                        watched.tree = true;
                        watched.unused_since = None;
                    }
                }
                Err(Unwatched::Off) => {
                    self.pending_scan.clear();
                    break;
                }
                Err(Unwatched::Failed) => continue,
            }
            let Ok(entries) = std::fs::read_dir(self.root.join(&dir)) else {
                continue; // gone already, or unreadable: nothing to watch
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.as_bytes().starts_with(b".") {
                    continue;
                }
                let path = dir.join(&name);
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => self.pending_scan.push((path, false)),
                    Ok(_) => found.push(path),
                    Err(_) => {}
                }
            }
        }
        found
    }

    /// Reads every queued event (until `EAGAIN`) and says what each means.
    /// Watches the kernel dropped are forgotten here.
    pub fn read(&mut self, notices: &mut Vec<Notice>) {
        let Some(fd) = self.inotify.as_ref().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        if self.buffer.len() < READ_BUFFER {
            self.buffer.resize(READ_BUFFER, 0);
        }
        loop {
            // SAFETY: the buffer is valid for its whole length.
            let got = unsafe {
                libc::read(
                    fd,
                    self.buffer.as_mut_ptr().cast::<libc::c_void>(),
                    self.buffer.len(),
                )
            };
            if got < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return,
                    _ => {
                        warn!("reading inotify events failed: {error}");
                        return;
                    }
                }
            }
            if got == 0 {
                return;
            }
            let buffer = std::mem::take(&mut self.buffer);
            for event in parse_events(&buffer[..got as usize]) {
                self.events_read += 1;
                self.interpret(event, notices);
            }
            self.buffer = buffer;
        }
    }

    fn interpret(&mut self, event: RawEvent, notices: &mut Vec<Notice>) {
        trace!(
            "inotify: wd {} {:?} mask {:#x}",
            event.wd,
            String::from_utf8_lossy(event.name),
            event.mask
        );
        if event.mask & libc::IN_Q_OVERFLOW != 0 {
            notices.push(Notice::Overflow);
            return;
        }
        if event.mask & libc::IN_IGNORED != 0 {
            // The kernel dropped the watch (its directory is gone, or we
            // removed it): forget it, and what hung on it.
            if self.forget(event.wd) {
                notices.push(Notice::DirGone { wd: event.wd });
            }
            return;
        }
        if event.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            notices.push(Notice::DirGone { wd: event.wd });
            if event.mask & libc::IN_MOVE_SELF != 0 {
                // A moved directory keeps its watch, under paths that are now
                // wrong; the new place gets a watch of its own if needed.
                if let Some(fd) = &self.inotify {
                    // SAFETY: plain call on our descriptor.
                    unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), event.wd) };
                }
                self.forget(event.wd);
            }
            return;
        }
        notices.push(Notice::Changed {
            wd: event.wd,
            name: Box::from(event.name),
            mask: event.mask,
        });
    }

    /// Adds (or finds) the watch on the directory at `relative`.
    fn add(&mut self, relative: &Path) -> Result<i32, Unwatched> {
        if let Some(&wd) = self.by_path.get(relative) {
            return Ok(wd);
        }
        let Some(fd) = self.inotify.as_ref().map(|fd| fd.as_raw_fd()) else {
            return Err(Unwatched::Off);
        };
        if self.dirs.len() >= self.max_watches {
            self.warn_unwatched(relative, &io::Error::from_raw_os_error(libc::ENOSPC));
            return Err(Unwatched::Failed);
        }
        let Ok(path) = CString::new(self.root.join(relative).into_os_string().into_vec()) else {
            return Err(Unwatched::Failed);
        };
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), MASK) };
        if wd < 0 {
            let error = io::Error::last_os_error();
            self.warn_unwatched(relative, &error);
            return Err(Unwatched::Failed);
        }
        trace!("inotify: watch {wd} on {:?}", relative);
        let dir = self.dirs.entry(wd).or_insert_with(|| WatchedDir {
            paths: Vec::new(),
            users: 0,
            tree: false,
            unused_since: None,
        });
        dir.paths.push(relative.to_path_buf());
        self.by_path.insert(relative.to_path_buf(), wd);
        Ok(wd)
    }

    /// The directory at `path` (or a symlink to one) was moved or deleted:
    /// every watch known by a path under it is now known by a wrong path.
    /// Those paths are forgotten, and a watch left with none is removed, so
    /// that what appears there next is watched afresh.
    pub fn forget_below(&mut self, path: &Path) {
        let stale: Vec<(PathBuf, i32)> = self
            .by_path
            .range(path.to_path_buf()..)
            .take_while(|(known, _)| known.starts_with(path))
            .map(|(known, &wd)| (known.clone(), wd))
            .collect();
        for (known, wd) in stale {
            self.by_path.remove(&known);
            let Some(dir) = self.dirs.get_mut(&wd) else {
                continue;
            };
            dir.paths.retain(|p| *p != known);
            if dir.paths.is_empty() {
                if let Some(fd) = &self.inotify {
                    // SAFETY: plain call on our descriptor.
                    unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
                }
                self.dirs.remove(&wd);
            }
        }
    }

    /// After an overflow, the events that said which folders went away may
    /// be among those lost: forgets (and removes) every watch whose folder
    /// is no longer at its path.
    pub fn forget_missing(&mut self) {
        let missing: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|path| !self.root.join(path).is_dir())
            .cloned()
            .collect();
        for path in missing {
            if self.by_path.contains_key(&path) {
                self.forget_below(&path);
            }
        }
    }

    /// Whether a watch is known by exactly this path.
    pub fn is_watched(&self, path: &Path) -> bool {
        self.by_path.contains_key(path)
    }

    /// Makes the watcher behave as if the kernel allowed only `max` watches.
    #[cfg(test)]
    pub fn limit_watches(&mut self, max: usize) {
        self.max_watches = max;
    }

    /// Forgets watch `wd` and its paths; `false` if it was not known.
    fn forget(&mut self, wd: i32) -> bool {
        let Some(dir) = self.dirs.remove(&wd) else {
            return false;
        };
        for path in dir.paths {
            self.by_path.remove(&path);
        }
        true
    }

    fn warn_unwatched(&mut self, relative: &Path, error: &io::Error) {
        let gone = matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR));
        if gone || self.warned {
            // A directory removed between opening a file and watching it is
            // a race, not a limit; the cache just revalidates that entry.
            debug!("inotify: cannot watch {relative:?}: {error}");
            return;
        }
        self.warned = true;
        if error.raw_os_error() == Some(libc::ENOSPC) {
            let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned());
            warn!(
                "cannot watch {} more directories: fs.inotify.max_user_watches ({limit}) is used up; \
                 changes there show within {:?} (raise it: sysctl fs.inotify.max_user_watches=524288)",
                self.root.join(relative).display(),
                crate::site::REVALIDATE_AFTER
            );
        } else {
            warn!(
                "cannot watch {}: {error}; changes there show within {:?}",
                self.root.join(relative).display(),
                crate::site::REVALIDATE_AFTER
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, cookie: u32, name: &[u8], pad_to: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&wd.to_ne_bytes());
        bytes.extend_from_slice(&mask.to_ne_bytes());
        bytes.extend_from_slice(&cookie.to_ne_bytes());
        bytes.extend_from_slice(&(pad_to as u32).to_ne_bytes());
        let mut padded = name.to_vec();
        padded.resize(pad_to, 0);
        bytes.extend_from_slice(&padded);
        bytes
    }

    #[test]
    fn events_are_split_and_names_lose_their_padding() {
        let mut buf = event(1, libc::IN_CLOSE_WRITE, 0, b"page.html", 16);
        buf.extend(event(2, libc::IN_DELETE_SELF, 0, b"", 0));
        buf.extend(event(1, libc::IN_MOVED_TO, 7, b"a", 16));
        let events: Vec<_> = parse_events(&buf).collect();
        assert_eq!(
            events,
            vec![
                RawEvent {
                    wd: 1,
                    mask: libc::IN_CLOSE_WRITE,
                    cookie: 0,
                    name: b"page.html"
                },
                RawEvent {
                    wd: 2,
                    mask: libc::IN_DELETE_SELF,
                    cookie: 0,
                    name: b""
                },
                RawEvent {
                    wd: 1,
                    mask: libc::IN_MOVED_TO,
                    cookie: 7,
                    name: b"a"
                },
            ]
        );
    }

    #[test]
    fn a_truncated_event_ends_the_list() {
        let mut buf = event(1, libc::IN_CREATE, 0, b"x", 16);
        buf.extend(&event(1, libc::IN_CREATE, 0, b"y", 16)[..20]);
        assert_eq!(parse_events(&buf).count(), 1);
        assert_eq!(parse_events(&buf[..10]).count(), 0);
    }

    #[test]
    fn overflow_and_dropped_watches_become_notices() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Watcher::new(dir.path());
        let wd = watcher.hold(Path::new("")).unwrap();
        let mut notices = Vec::new();
        watcher.interpret(
            RawEvent {
                wd: -1,
                mask: libc::IN_Q_OVERFLOW,
                cookie: 0,
                name: b"",
            },
            &mut notices,
        );
        watcher.interpret(
            RawEvent {
                wd,
                mask: libc::IN_IGNORED,
                cookie: 0,
                name: b"",
            },
            &mut notices,
        );
        assert_eq!(notices, vec![Notice::Overflow, Notice::DirGone { wd }]);
        assert_eq!(watcher.watches(), 0);
    }

    #[test]
    fn a_real_write_is_read_as_a_change_of_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        let mut watcher = Watcher::new(&root);
        let wd = watcher.hold(Path::new("sub")).unwrap();
        assert_eq!(watcher.paths(wd), [PathBuf::from("sub")]);
        std::fs::write(root.join("sub/page.html"), "new").unwrap();
        let mut notices = Vec::new();
        watcher.read(&mut notices);
        assert!(notices.iter().any(|n| matches!(n,
            Notice::Changed { wd: w, name, mask } if *w == wd && &**name == b"page.html" && mask & libc::IN_CLOSE_WRITE != 0)));
        // Rill's own reads are not events.
        notices.clear();
        let _ = std::fs::read(root.join("sub/page.html")).unwrap();
        watcher.read(&mut notices);
        assert_eq!(notices, vec![]);
    }

    #[test]
    fn lazy_watches_are_dropped_only_a_while_after_their_last_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Watcher::new(dir.path());
        let now = Instant::now();
        let wd = watcher.hold(Path::new("")).unwrap();
        assert_eq!(watcher.hold(Path::new("")), Ok(wd));
        watcher.release(wd, now);
        watcher.prune(now + UNUSED_LIFETIME * 2);
        assert_eq!(watcher.watches(), 1, "one user left");
        watcher.release(wd, now);
        watcher.prune(now + UNUSED_LIFETIME / 2);
        assert_eq!(watcher.watches(), 1, "kept a while");
        watcher.prune(now + UNUSED_LIFETIME);
        assert_eq!(watcher.watches(), 0);
    }

    #[test]
    fn a_tree_is_watched_whole_except_hidden_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for sub in ["a", "a/b", ".git", ".git/objects"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("a/b/f.txt"), "x").unwrap();
        let mut watcher = Watcher::new(&root);
        let found = watcher.watch_tree(Path::new(""));
        assert_eq!(found, vec![PathBuf::from("a/b/f.txt")]);
        assert_eq!(watcher.watches(), 3, "root, a, a/b");
        watcher.prune(Instant::now() + UNUSED_LIFETIME * 2);
        assert_eq!(watcher.watches(), 3, "tree watches stay");
    }

    #[test]
    fn a_deleted_folder_forgets_exactly_the_watches_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for sub in ["a/b/c", "a/bc", "ab"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let mut watcher = Watcher::new(&root);
        watcher.watch_tree(Path::new(""));
        assert_eq!(watcher.watches(), 6, "root, a, a/b, a/b/c, a/bc, ab");
        watcher.forget_below(Path::new("a/b"));
        assert_eq!(watcher.watches(), 4);
        assert!(watcher.is_watched(Path::new("a/bc")) && watcher.is_watched(Path::new("ab")));
        std::fs::remove_dir(root.join("ab")).unwrap();
        watcher.forget_missing();
        assert_eq!(watcher.watches(), 3, "root, a, a/bc");
    }

    #[test]
    fn a_tree_queued_for_later_is_scanned_a_budget_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for i in 0..10 {
            std::fs::create_dir_all(root.join(format!("big/d{i}"))).unwrap();
            std::fs::write(root.join(format!("big/d{i}/f")), "x").unwrap();
        }
        let mut watcher = Watcher::new(&root);
        watcher.watch_tree_later(Path::new("big"));
        let mut found = watcher.scan_pending(4);
        assert_eq!(watcher.watches(), 4);
        assert!(watcher.has_pending_scan());
        while watcher.has_pending_scan() {
            found.extend(watcher.scan_pending(4));
        }
        assert_eq!(watcher.watches(), 11);
        assert_eq!(found.len(), 10);
    }

    #[test]
    fn without_inotify_nothing_is_watched() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Watcher::off(dir.path());
        assert_eq!(watcher.hold(Path::new("")), Err(Unwatched::Off));
        assert_eq!(watcher.watch_tree(Path::new("")), Vec::<PathBuf>::new());
        let mut notices = Vec::new();
        watcher.read(&mut notices);
        assert!(notices.is_empty());
    }
}
