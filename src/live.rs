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
//!    (or has waited [`MAX_WAIT`]); a file closed without being written to
//!    is no change;
//! 3. the loop sends the batch, as one message that lists every path, to
//!    each page's WebSocket ([`crate::conn::websocket`]), and the generation
//!    goes up by one;
//! 4. `live.js`, in the page, restyles in place when only stylesheets
//!    changed, and otherwise reloads if the page or something it loaded is
//!    among the paths.
//!
//! A page carries the boot id and generation it was served at (in the
//! `<script>` tag) and sends its generation when it connects; the first
//! message on its socket says the server's boot id, and a page behind is
//! then sent what it missed, judged like any change. A page reloads on
//! connect only when the boot id differs — so a tab open across a restart
//! reloads once, and a tab that connects late, or after a blip, reloads only
//! if a change it missed concerns it.
//!
//! The timing (step 2) is a pure function of the times passed in, so it is
//! unit-tested without a clock.

use crate::http::websocket::{write_frame, Opcode};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt::Write;
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

/// The generation a page says it was served at, from the query of its
/// socket's URL (`/.rill/live?generation=N`).
pub fn page_generation(target: &str) -> Option<u64> {
    let query = target.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("generation="))
        .and_then(|n| n.parse().ok())
}

/// Changes gathered but not sent yet.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Paths relative to ROOT, each with whether it is a folder, and what
    /// happened to it in this batch.
    paths: BTreeMap<(PathBuf, bool), Seen>,
    /// Events were lost, or too many paths changed: every page reloads.
    everything: bool,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// What a batch saw of one path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// It was created in this batch.
    created: bool,
    /// Its last event removed it (deleted, or renamed away).
    gone: bool,
    /// Something happened to it that pages care about.
    counts: bool,
}

impl Seen {
    /// A file created and gone again within one batch (`sed -i`'s temp
    /// file, `tmp.html` renamed over `page.html`) was never there for a
    /// page to show.
    fn reported(&self) -> bool {
        self.counts && !(self.created && self.gone)
    }
}

/// A storm (more paths than a message lists) waits for quiet up to this
/// long: pages reload once it is over, not once per [`MAX_WAIT`] of it.
pub const STORM_MAX_WAIT: Duration = Duration::from_secs(5);

impl Batch {
    /// When the batch is due, if it holds anything.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        let longest = if self.everything {
            STORM_MAX_WAIT
        } else {
            MAX_WAIT
        };
        Some((last + DEBOUNCE).min(first + longest))
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
    /// Files written to (or touched, or created) since they were last
    /// reported: a `CLOSE_WRITE` of any other file closed it unchanged.
    dirty: RefCell<HashSet<PathBuf>>,
    /// Too many files written at once to keep track: every `CLOSE_WRITE`
    /// counts until the next batch goes out.
    dirty_overflowed: Cell<bool>,
    /// The last batches sent, for a page that (re)connects behind: it is
    /// told what it missed rather than reloaded blindly.
    history: RefCell<VecDeque<Sent>>,
}

/// One batch as it was sent.
#[derive(Debug)]
struct Sent {
    generation: u64,
    paths: Vec<(PathBuf, bool)>,
    everything: bool,
}

/// How many sent batches are kept for pages that connect behind (at most
/// [`MAX_PATHS`] paths each).
const HISTORY: usize = 128;
/// Files tracked as written but not yet closed; past this, all count.
const MAX_DIRTY: usize = 10_000;

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
            dirty: RefCell::default(),
            dirty_overflowed: Cell::new(false),
            history: RefCell::default(),
        }
    }

    /// How many batches have been sent.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// What is appended to an HTML page. An external script (not inline):
    /// it passes a `script-src 'self'` policy, and appended after the
    /// file's last byte it needs no search for `</body>` — which a regex gets
    /// wrong in comments, strings and pages without one. A folder listing
    /// says it is one: it shows its folder's entries, so a change to any of
    /// them concerns it (a folder's `index.html` is only itself).
    pub fn snippet(&self, listing: bool) -> String {
        format!(
            "\n<script src=\"/.rill/live.js\" data-boot=\"{}\" data-generation=\"{}\"{} defer></script>\n",
            self.boot,
            self.generation.get(),
            if listing { " data-listing" } else { "" }
        )
    }

    /// The ETag of a page with the snippet: the file's, plus what the snippet
    /// says, so a page cached by the browser is never revalidated into one
    /// that carries an old generation.
    pub fn etag(&self, file_etag: &str) -> String {
        let inner = file_etag.trim_matches('"');
        format!("\"{inner}-live-{}-{}\"", self.boot, self.generation.get())
    }

    /// The first frames on a page's socket: the hello (boot id and
    /// generation), and, for a page served at an older generation of this
    /// boot, one change message with everything it missed — so a page never
    /// reloads for a change that does not touch it, however late it
    /// connects.
    pub fn hello_frames(&self, page_generation: Option<u64>) -> Vec<u8> {
        let generation = self.generation.get();
        let hello = format!(
            "{{\"type\":\"hello\",\"boot\":\"{}\",\"generation\":{generation}}}",
            self.boot
        );
        let mut frames = Vec::with_capacity(hello.len() + 4);
        write_frame(&mut frames, Opcode::Text, hello.as_bytes());
        if let Some(missed) = page_generation.filter(|&g| g < generation) {
            let message = self.changes_since(missed);
            write_frame(&mut frames, Opcode::Text, message.as_bytes());
        }
        frames
    }

    /// One change message covering every batch after `generation`.
    fn changes_since(&self, generation: u64) -> String {
        let history = self.history.borrow();
        let kept_from = history.front().map_or(u64::MAX, |sent| sent.generation);
        let missed: Vec<&Sent> = history
            .iter()
            .filter(|s| s.generation > generation)
            .collect();
        let current = self.generation.get();
        if kept_from > generation + 1 || missed.iter().any(|sent| sent.everything) {
            return change_message(current, &[], true);
        }
        let paths: BTreeSet<(PathBuf, bool)> = missed
            .iter()
            .flat_map(|sent| sent.paths.iter().cloned())
            .collect();
        let paths: Vec<_> = paths.into_iter().collect();
        let message = change_message(current, &paths, false);
        if message.len() > MAX_MESSAGE {
            return change_message(current, &[], true);
        }
        message
    }

    /// Takes in what the watch reported; `mask` is inotify's.
    pub fn note(&self, path: &Path, mask: u32, now: Instant) {
        if ignored(path) {
            return;
        }
        let is_dir = mask & libc::IN_ISDIR != 0;
        let written = libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_CREATE;
        let mut batch = self.batch.borrow_mut();
        if batch.paths.len() >= MAX_PATHS
            && !batch.paths.contains_key(&(path.to_path_buf(), is_dir))
        {
            batch.everything = true;
            batch.add(now);
            return;
        }
        if !is_dir && mask & written != 0 {
            // Not a change yet: the file is being written (or was only
            // touched); its CLOSE_WRITE says when it is done.
            let mut dirty = self.dirty.borrow_mut();
            if dirty.len() >= MAX_DIRTY {
                dirty.clear();
                self.dirty_overflowed.set(true);
            }
            dirty.insert(path.to_path_buf());
            if mask & libc::IN_CREATE != 0 {
                batch
                    .paths
                    .entry((path.to_path_buf(), false))
                    .or_default()
                    .created = true;
            }
            return;
        }
        let closed = mask & libc::IN_CLOSE_WRITE != 0;
        let was_written = self.dirty.borrow_mut().remove(path) || self.dirty_overflowed.get();
        let appeared = libc::IN_MOVED_TO | libc::IN_CREATE;
        let went = libc::IN_MOVED_FROM | libc::IN_DELETE;
        // A file opened for writing and closed untouched is no change; a
        // new folder is (a listing shows it), as are renames and deletions.
        if !(closed && was_written) && mask & (appeared | went) == 0 {
            return;
        }
        let seen = batch.paths.entry((path.to_path_buf(), is_dir)).or_default();
        seen.counts = true;
        seen.created |= is_dir && mask & libc::IN_CREATE != 0;
        seen.gone = mask & went != 0;
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

    /// The message for the pages, if a batch is due at `now`; sending it is
    /// the caller's.
    pub fn take_due(&self, now: Instant) -> Option<String> {
        if self.batch.borrow().due().is_none_or(|due| due > now) {
            return None;
        }
        let mut batch = std::mem::take(&mut *self.batch.borrow_mut());
        let mut paths: Vec<(PathBuf, bool)> = std::mem::take(&mut batch.paths)
            .into_iter()
            .filter(|(_, seen)| seen.reported())
            .map(|(path, _)| path)
            .collect();
        if paths.is_empty() && !batch.everything {
            return None;
        }
        self.dirty_overflowed.set(false);
        self.generation.set(self.generation.get() + 1);
        let generation = self.generation.get();
        if batch.everything {
            paths.clear(); // every page reloads: the list would say nothing more
        }
        let mut message = change_message(generation, &paths, batch.everything);
        if message.len() > MAX_MESSAGE {
            batch.everything = true;
            paths.clear();
            message = change_message(generation, &[], true);
        }
        let mut history = self.history.borrow_mut();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(Sent {
            generation,
            paths,
            everything: batch.everything,
        });
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
            || name.ends_with(b"___jb_tmp___") // JetBrains' safe write
            || name.ends_with(b"___jb_old___")
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
        match path.to_str() {
            Some(text) => url.push_str(text),
            // Not UTF-8: the page cannot decode its own URL either, and
            // compares it as the listing's link encoded it.
            None => {
                for (i, step) in path.iter().enumerate() {
                    if i > 0 {
                        url.push('/');
                    }
                    url.extend(crate::path::encode_segment(step.as_encoded_bytes()));
                }
            }
        }
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
        assert_eq!(live.deadline(), None);
        live.note(Path::new("a.html"), libc::IN_MODIFY, t0);
        live.note(Path::new("a.html"), WRITTEN, t0);
        live.note(Path::new("b.css"), libc::IN_MOVED_TO, t0 + DEBOUNCE / 2);
        assert_eq!(live.deadline(), Some(t0 + DEBOUNCE / 2 + DEBOUNCE));
        assert_eq!(live.take_due(t0 + DEBOUNCE), None, "not quiet yet");
        let message = live.take_due(t0 + DEBOUNCE * 2).unwrap();
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
            live.note(Path::new("out.js"), libc::IN_MOVED_TO, t);
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
        assert_eq!(live.deadline(), None, "still being written");
        live.note(Path::new("new.txt"), WRITTEN, now);
        live.note(Path::new("sub"), libc::IN_CREATE | libc::IN_ISDIR, now);
        live.note(Path::new("old.txt"), libc::IN_DELETE, now);
        live.note(Path::new("moved.txt"), libc::IN_MOVED_FROM, now);
        let message = live.take_due(now + MAX_WAIT).unwrap();
        assert!(
            message.contains(r#"["/moved.txt","/new.txt","/old.txt","/sub/"]"#),
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
            "style.css___jb_tmp___",
        ] {
            assert!(ignored(Path::new(path)), "{path}");
        }
        for path in ["page.html", "docs/style.css", "4913.txt"] {
            assert!(!ignored(Path::new(path)), "{path}");
        }
    }

    #[test]
    fn a_file_closed_without_a_write_is_no_change() {
        let live = Live::new();
        let now = Instant::now();
        live.note(Path::new("a.html"), WRITTEN, now); // opened, closed, untouched
        assert_eq!(live.take_due(now + MAX_WAIT), None);
        live.note(Path::new("a.html"), libc::IN_MODIFY, now);
        live.note(Path::new("a.html"), WRITTEN, now);
        assert!(live.take_due(now + MAX_WAIT).is_some());
        live.note(Path::new("a.html"), WRITTEN, now); // and again untouched
        assert_eq!(live.take_due(now + MAX_WAIT), None);
        assert_eq!(live.generation(), 1);
    }

    #[test]
    fn a_file_created_and_renamed_away_in_one_batch_is_not_reported() {
        let live = Live::new();
        let now = Instant::now();
        // sed -i: a temp file written, then renamed over the original.
        live.note(Path::new("css/sedAb12"), libc::IN_CREATE, now);
        live.note(Path::new("css/sedAb12"), libc::IN_MODIFY, now);
        live.note(Path::new("css/sedAb12"), WRITTEN, now);
        live.note(Path::new("css/sedAb12"), libc::IN_MOVED_FROM, now);
        live.note(Path::new("css/a.css"), libc::IN_MOVED_TO, now);
        let message = live.take_due(now + MAX_WAIT).unwrap();
        assert!(message.contains(r#""paths":["/css/a.css"]"#), "{message}");
        // A file that was there before and is deleted is reported.
        live.note(Path::new("old.txt"), libc::IN_DELETE, now);
        assert!(live.take_due(now + MAX_WAIT).unwrap().contains("/old.txt"));
        // Nothing that counts: no message at all.
        live.note(Path::new("t"), libc::IN_CREATE, now);
        live.note(Path::new("t"), libc::IN_DELETE, now);
        assert_eq!(live.take_due(now + MAX_WAIT), None);
    }

    #[test]
    fn a_page_that_connects_behind_is_told_what_it_missed() {
        let live = Live::new();
        let now = Instant::now();
        for name in ["a.css", "b.html", "a.css"] {
            live.note(Path::new(name), libc::IN_MOVED_TO, now);
            live.take_due(now + MAX_WAIT).unwrap();
        }
        let text = |frames: Vec<u8>| String::from_utf8_lossy(&frames).into_owned();
        let up_to_date = text(live.hello_frames(Some(3)));
        assert!(up_to_date.contains(r#""type":"hello""#));
        assert!(!up_to_date.contains("change"), "{up_to_date}");
        let behind = text(live.hello_frames(Some(1)));
        assert!(
            behind.contains(r#"{"type":"change","generation":3,"paths":["/a.css","/b.html"],"everything":false}"#),
            "{behind}"
        );
        for _ in 0..HISTORY {
            live.note(Path::new("x"), libc::IN_DELETE, now);
            live.take_due(now + MAX_WAIT).unwrap();
        }
        let far_behind = text(live.hello_frames(Some(1)));
        assert!(far_behind.contains(r#""everything":true"#), "{far_behind}");
        assert_eq!(page_generation("/.rill/live?generation=12"), Some(12));
        assert_eq!(page_generation("/.rill/live?x=1&generation=3"), Some(3));
        assert_eq!(page_generation("/.rill/live"), None);
    }

    #[test]
    fn lost_events_reload_everything() {
        let live = Live::new();
        let now = Instant::now();
        live.note_everything(now);
        let message = live.take_due(now + DEBOUNCE).unwrap();
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
        assert_eq!(
            live.deadline(),
            Some(now + DEBOUNCE),
            "a storm waits for quiet"
        );
        let message = live.take_due(now + MAX_WAIT).unwrap();
        assert!(
            message.ends_with(r#""paths":[],"everything":true}"#),
            "{message}"
        );
        let long = "x".repeat(250);
        for i in 0..100 {
            live.note(&PathBuf::from(format!("{long}{i}")), libc::IN_DELETE, now);
        }
        let message = live.take_due(now + MAX_WAIT).unwrap();
        assert!(message.len() < MAX_MESSAGE, "long names: {}", message.len());
        assert!(message.ends_with(r#""everything":true}"#));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_sent_as_its_link_encodes_it() {
        use std::os::unix::ffi::OsStrExt;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(
            b"caf\xc3\xa9/bad\xff name.html",
        ));
        let message = change_message(1, &[(path, false)], false);
        assert!(
            message.contains(r#"["/caf%C3%A9/bad%FF%20name.html"]"#),
            "{message}"
        );
    }

    #[test]
    fn paths_are_json_strings() {
        let message = change_message(3, &[(PathBuf::from("a \"b\"\\c\nd é"), false)], false);
        assert!(message.contains(r#"["/a \"b\"\\c\u000ad é"]"#), "{message}");
    }

    #[test]
    fn the_snippet_and_the_etag_carry_boot_and_generation() {
        let live = Live::new();
        let snippet = live.snippet(false);
        assert!(snippet.starts_with("\n<script src=\"/.rill/live.js\""));
        assert!(!snippet.contains("data-listing"));
        assert!(live.snippet(true).contains(" data-listing defer"));
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
