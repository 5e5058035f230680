//! `--live-reload`: what the loop tells the pages open on ROOT when files
//! change, and what it appends to those pages so that they listen.
//!
//! The parts, in the order a change travels:
//!
//! 1. the watch ([`crate::watch`], read by the loop before anything else in a
//!    turn) reports paths; [`Live::note`] keeps those that matter (no hidden
//!    names, no editor swap files, no half-written files: `MODIFY` is not a
//!    change, `CLOSE_WRITE` is);
//! 2. a burst — an editor's save is several events, a build many files — is
//!    gathered into one [`Batch`] until it has been quiet for [`DEBOUNCE`]
//!    (or has waited [`MAX_WAIT`]); paths whose file is as it was when last
//!    reported are dropped;
//! 3. the loop sends the batch, as one message that lists every path, to
//!    each page's WebSocket ([`crate::conn::websocket`]), and the generation
//!    goes up by one;
//! 4. `live.js`, in the page, restyles in place when only stylesheets
//!    changed, and otherwise reloads if the page or something it loaded is
//!    among the paths.
//!
//! A page carries the boot id and generation it was served at (in the
//! `<script>` tag); the first message on its socket says the server's. A page
//! reloads on connect only when they differ — so a tab open across a restart
//! reloads once, and a tab that reconnects after a blip does not.
//!
//! The timing (step 2) is a pure function of the times passed in, so it is
//! unit-tested without a clock.

use crate::http::websocket::{write_frame, Opcode};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The script every injected page loads.
pub const SCRIPT: &str = include_str!("live.js");
/// A batch is sent once no event has come for this long: an editor's save
/// (write a temp file, rename it, touch a backup) is done well within it.
pub const DEBOUNCE: Duration = Duration::from_millis(60);
/// A stream of events that never pauses (a build writing for seconds) is
/// still sent this often, so the first files show.
pub const MAX_WAIT: Duration = Duration::from_millis(400);
/// Paths remembered with their file's identity, to drop "changes" that
/// changed nothing; forgotten all at once past this many.
const REMEMBERED_PATHS: usize = 10_000;
/// A batch with more paths than this (a `git checkout`, a build's output
/// folder replaced) is sent as "everything changed": every page reloads,
/// and neither the batch nor the message grows with the storm.
const MAX_PATHS: usize = 256;
/// A message longer than this (long names) is sent as "everything" too: it
/// must stay far below what a page may leave unread before it is dropped.
const MAX_MESSAGE: usize = 16 << 10;

/// The `/.rill/` addresses `--live-reload` adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/.rill/live.js`, the script.
    Script,
    /// `/.rill/live`, the WebSocket the script listens on.
    Socket,
}

/// Which live-reload address a request-target names, if any.
pub fn route(target: &str) -> Option<Route> {
    match target.split(['?', '#']).next().unwrap_or(target) {
        "/.rill/live.js" => Some(Route::Script),
        "/.rill/live" => Some(Route::Socket),
        _ => None,
    }
}

/// Changes gathered but not sent yet.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Paths relative to ROOT, each with whether it is a folder.
    paths: BTreeSet<(PathBuf, bool)>,
    /// Events were lost: every page reloads.
    everything: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Batch {
    /// When the batch is due, if it holds anything.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + DEBOUNCE).min(first + MAX_WAIT))
    }

    fn add(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
}

/// The live-reload state the loop keeps.
#[derive(Debug)]
pub struct Live {
    /// Differs on every start, so a page knows it outlived its server.
    pub boot: String,
    generation: Cell<u64>,
    batch: RefCell<Batch>,
    /// What each reported path was when last reported.
    remembered: RefCell<HashMap<PathBuf, Option<Identity>>>,
}

/// Enough of a file's metadata to tell a real change from a touch-less
/// close: inode, size, modification time.
type Identity = (u64, u64, i64, i64);

fn identity(root: &Path, path: &Path) -> Option<Identity> {
    let meta = std::fs::metadata(root.join(path)).ok()?;
    Some((meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec()))
}

impl Live {
    /// A fresh state, with a boot id made from the clock and the process id.
    pub fn new() -> Live {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Live {
            boot: format!("{:x}{:x}", nanos as u64, std::process::id()),
            generation: Cell::new(0),
            batch: RefCell::default(),
            remembered: RefCell::default(),
        }
    }

    /// How many batches have been sent.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// What is appended to an HTML page. An external script (not inline):
    /// it passes a `script-src 'self'` policy, and appended after the
    /// file's last byte it needs no search for `</body>` — which a regex gets
    /// wrong in comments, strings and pages without one.
    pub fn snippet(&self) -> String {
        format!(
            "\n<script src=\"/.rill/live.js\" data-boot=\"{}\" data-generation=\"{}\" defer></script>\n",
            self.boot,
            self.generation.get()
        )
    }

    /// The ETag of a page with the snippet: the file's, plus what the snippet
    /// says, so a page cached by the browser is never revalidated into one
    /// that carries an old generation (which would reload it again).
    pub fn etag(&self, file_etag: &str) -> String {
        let inner = file_etag.trim_matches('"');
        format!("\"{inner}-live-{}-{}\"", self.boot, self.generation.get())
    }

    /// The first message on a page's socket, as a frame.
    pub fn hello_frame(&self) -> Vec<u8> {
        let message = format!(
            "{{\"type\":\"hello\",\"boot\":\"{}\",\"generation\":{}}}",
            self.boot,
            self.generation.get()
        );
        let mut frame = Vec::with_capacity(message.len() + 4);
        write_frame(&mut frame, Opcode::Text, message.as_bytes());
        frame
    }

    /// Takes in what the watch reported; `mask` is inotify's.
    pub fn note(&self, path: &Path, mask: u32, now: Instant) {
        if ignored(path) {
            return;
        }
        let is_dir = mask & libc::IN_ISDIR != 0;
        let file_done = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO;
        let gone = libc::IN_DELETE | libc::IN_MOVED_FROM;
        // A new folder is a change (a listing shows it); a new file is one
        // only once written (its CLOSE_WRITE follows), and MODIFY or ATTRIB
        // alone never are: the file is still being written, or only touched
        // in its metadata.
        let counts = mask & (file_done | gone) != 0 || (is_dir && mask & libc::IN_CREATE != 0);
        if !counts {
            return;
        }
        let mut batch = self.batch.borrow_mut();
        if batch.paths.len() < MAX_PATHS {
            batch.paths.insert((path.to_path_buf(), is_dir));
        } else {
            batch.everything = true;
        }
        batch.add(now);
    }

    /// Events were lost: the next message reloads every page.
    pub fn note_everything(&self, now: Instant) {
        let mut batch = self.batch.borrow_mut();
        batch.everything = true;
        batch.add(now);
    }

    /// When the loop must wake to send the batch.
    pub fn deadline(&self) -> Option<Instant> {
        self.batch.borrow().due()
    }

    /// The message for the pages, if a batch is due at `now` and anything in
    /// it really changed; sending it is the caller's.
    pub fn take_due(&self, root: &Path, now: Instant) -> Option<String> {
        if self.batch.borrow().due().is_none_or(|due| due > now) {
            return None;
        }
        let batch = std::mem::take(&mut *self.batch.borrow_mut());
        let mut remembered = self.remembered.borrow_mut();
        if remembered.len() > REMEMBERED_PATHS {
            remembered.clear();
        }
        let mut changed = Vec::new();
        for (path, is_dir) in batch.paths {
            let now_is = if is_dir { None } else { identity(root, &path) };
            let before = remembered.insert(path.clone(), now_is);
            // Unchanged since the last report (a file opened for writing and
            // closed untouched): nothing for the pages.
            if !is_dir && now_is.is_some() && before == Some(now_is) {
                continue;
            }
            changed.push((path, is_dir));
        }
        if changed.is_empty() && !batch.everything {
            return None;
        }
        self.generation.set(self.generation.get() + 1);
        let generation = self.generation.get();
        if batch.everything {
            changed.clear(); // every page reloads: the list would say nothing more
        }
        let message = change_message(generation, &changed, batch.everything);
        if message.len() > MAX_MESSAGE {
            return Some(change_message(generation, &[], true));
        }
        Some(message)
    }
}

impl Default for Live {
    fn default() -> Live {
        Live::new()
    }
}

/// Names that are never a reason to reload: hidden ones (rill's upload temp
/// files among them) and editors' swap, backup and probe files.
pub fn ignored(path: &Path) -> bool {
    path.iter().any(|step| {
        let name = step.as_encoded_bytes();
        name.starts_with(b".")
            || name.ends_with(b"~")
            || name.ends_with(b".swp")
            || name.ends_with(b".swx")
            || name.ends_with(b".swo")
            || name == b"4913" // vim's "can I write here?" probe
            || (name.starts_with(b"#") && name.ends_with(b"#")) // emacs auto-save
    })
}

/// `{"type":"change","generation":N,"paths":["/a.css","/docs/"],"everything":false}`:
/// URL paths, decoded (the page compares them with its own, decoded too),
/// folders with a trailing slash.
pub fn change_message(generation: u64, paths: &[(PathBuf, bool)], everything: bool) -> String {
    let mut json = format!("{{\"type\":\"change\",\"generation\":{generation},\"paths\":[");
    for (i, (path, is_dir)) in paths.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let mut url = String::from("/");
        url.push_str(&path.to_string_lossy());
        if *is_dir {
            url.push('/');
        }
        push_json_string(&mut json, &url);
    }
    let _ = write!(json, "],\"everything\":{everything}}}");
    json
}

fn push_json_string(json: &mut String, text: &str) {
    json.push('"');
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(json, "\\u{:04x}", c as u32);
            }
            c => json.push(c),
        }
    }
    json.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITTEN: u32 = libc::IN_CLOSE_WRITE;

    #[test]
    fn a_burst_is_sent_once_it_has_been_quiet() {
        let live = Live::new();
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(live.deadline(), None);
        live.note(Path::new("a.html"), WRITTEN, t0);
        live.note(Path::new("b.css"), WRITTEN, t0 + DEBOUNCE / 2);
        assert_eq!(live.deadline(), Some(t0 + DEBOUNCE / 2 + DEBOUNCE));
        assert_eq!(
            live.take_due(dir.path(), t0 + DEBOUNCE),
            None,
            "not quiet yet"
        );
        let message = live.take_due(dir.path(), t0 + DEBOUNCE * 2).unwrap();
        assert_eq!(
            message,
            r#"{"type":"change","generation":1,"paths":["/a.html","/b.css"],"everything":false}"#
        );
        assert_eq!(live.generation(), 1);
        assert_eq!(live.deadline(), None);
    }

    #[test]
    fn a_stream_that_never_pauses_is_still_sent() {
        let live = Live::new();
        let t0 = Instant::now();
        let mut t = t0;
        while t < t0 + MAX_WAIT * 2 {
            live.note(Path::new("out.js"), WRITTEN, t);
            t += DEBOUNCE / 2;
        }
        assert_eq!(live.deadline(), Some(t0 + MAX_WAIT));
    }

    #[test]
    fn only_finished_writes_moves_deletions_and_new_folders_count() {
        let live = Live::new();
        let now = Instant::now();
        live.note(Path::new("a.txt"), libc::IN_MODIFY, now);
        live.note(Path::new("a.txt"), libc::IN_ATTRIB, now);
        live.note(Path::new("new.txt"), libc::IN_CREATE, now);
        assert_eq!(live.deadline(), None);
        live.note(Path::new("sub"), libc::IN_CREATE | libc::IN_ISDIR, now);
        live.note(Path::new("old.txt"), libc::IN_DELETE, now);
        live.note(Path::new("moved.txt"), libc::IN_MOVED_FROM, now);
        let message = live
            .take_due(Path::new("/nonexistent"), now + MAX_WAIT)
            .unwrap();
        assert!(
            message.contains(r#"["/moved.txt","/old.txt","/sub/"]"#),
            "{message}"
        );
    }

    #[test]
    fn hidden_names_and_editor_files_are_ignored() {
        for path in [
            ".git/index",
            "a/.page.html.swp",
            "page.html~",
            "4913",
            "#page.html#",
            "docs/.rill-upload-1",
        ] {
            assert!(ignored(Path::new(path)), "{path}");
        }
        for path in ["page.html", "docs/style.css", "4913.txt"] {
            assert!(!ignored(Path::new(path)), "{path}");
        }
    }

    #[test]
    fn a_file_closed_without_a_change_is_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.html"), "one").unwrap();
        let live = Live::new();
        let now = Instant::now();
        live.note(Path::new("a.html"), WRITTEN, now);
        assert!(live.take_due(dir.path(), now + MAX_WAIT).is_some());
        live.note(Path::new("a.html"), WRITTEN, now);
        assert_eq!(live.take_due(dir.path(), now + MAX_WAIT), None, "same file");
        std::fs::write(dir.path().join("a.html"), "two!").unwrap();
        live.note(Path::new("a.html"), WRITTEN, now);
        assert!(live.take_due(dir.path(), now + MAX_WAIT).is_some());
        assert_eq!(live.generation(), 2);
    }

    #[test]
    fn lost_events_reload_everything() {
        let live = Live::new();
        let now = Instant::now();
        live.note_everything(now);
        let message = live.take_due(Path::new("/"), now + DEBOUNCE).unwrap();
        assert!(
            message.ends_with(r#""paths":[],"everything":true}"#),
            "{message}"
        );
    }

    #[test]
    fn a_storm_of_changes_is_sent_as_everything() {
        let live = Live::new();
        let now = Instant::now();
        for i in 0..MAX_PATHS * 10 {
            live.note(&PathBuf::from(format!("f{i}")), libc::IN_DELETE, now);
        }
        assert_eq!(live.batch.borrow().paths.len(), MAX_PATHS, "bounded");
        let message = live.take_due(Path::new("/"), now + MAX_WAIT).unwrap();
        assert!(
            message.ends_with(r#""paths":[],"everything":true}"#),
            "{message}"
        );
        let long = "x".repeat(250);
        for i in 0..100 {
            live.note(&PathBuf::from(format!("{long}{i}")), libc::IN_DELETE, now);
        }
        let message = live.take_due(Path::new("/"), now + MAX_WAIT).unwrap();
        assert!(message.len() < MAX_MESSAGE, "long names: {}", message.len());
        assert!(message.ends_with(r#""everything":true}"#));
    }

    #[test]
    fn paths_are_json_strings() {
        let message = change_message(3, &[(PathBuf::from("a \"b\"\\c\nd é"), false)], false);
        assert!(message.contains(r#"["/a \"b\"\\c\u000ad é"]"#), "{message}");
    }

    #[test]
    fn the_snippet_and_the_etag_carry_boot_and_generation() {
        let live = Live::new();
        let snippet = live.snippet();
        assert!(snippet.starts_with("\n<script src=\"/.rill/live.js\""));
        assert!(snippet.contains(&format!("data-boot=\"{}\"", live.boot)));
        assert!(snippet.contains("data-generation=\"0\""));
        assert_eq!(
            live.etag("\"1-2-3\""),
            format!("\"1-2-3-live-{}-0\"", live.boot)
        );
        assert_ne!(Live::new().boot, "", "a boot id");
        assert_eq!(route("/.rill/live.js?x"), Some(Route::Script));
        assert_eq!(route("/.rill/live"), Some(Route::Socket));
        assert_eq!(route("/.rill/lives"), None);
    }
}
