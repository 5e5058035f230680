//! A folder as one download: `?tar` (POSIX tar) or `?zip` (stored, no
//! compression), streamed member by member.
//!
//! An [`ArchiveJob`] first walks the folder, [`SCAN_STEP`] entries per turn,
//! and writes down each member's path, size and time — nothing else — so
//! it can add up the exact `Content-Length` before the head goes out (the
//! browser shows real progress). Then [`ArchiveStream`] sends the members
//! in that order: headers rendered by [`crate::archive`], bodies as file
//! ranges — with `sendfile` for tar; copied for zip, whose CRC-32 must see
//! the bytes. Memory is the list of members plus one buffer, whatever the
//! files weigh.
//!
//! The walk sees what serving sees: hidden names left out, symlinks followed
//! only while they stay inside ROOT ([`Site::read_entries`]); a folder met
//! twice (a symlink to an ancestor) is archived once. Symlinked folders are
//! walked last, after every folder reached without one, so that the copy
//! kept of a folder met twice is the real one, where it is (`photos/`, not
//! `a_link/` beside it). A member that changed
//! size, or vanished, between the walk and its turn ends the answer there:
//! the client gets fewer bytes than `Content-Length` said and knows the
//! archive is broken, rather than a well-formed archive with wrong bytes.

use super::{FileBody, Piece, Prepared, Ready, Source, StepContext, PIECE_BYTES, SCAN_STEP};
use crate::archive::{tar, zip};
use crate::http::response::{HeadWriter, Status};
use crate::site::{DirReader, Missing, Site};
use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

/// Which archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tar,
    Zip,
}

impl Kind {
    /// `?tar` or `?zip` in a query.
    pub fn from_query(query: &str) -> Option<Kind> {
        query
            .split('&')
            .find_map(|pair| match pair.split('=').next() {
                Some("tar") => Some(Kind::Tar),
                Some("zip") => Some(Kind::Zip),
                _ => None,
            })
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Tar => "application/x-tar",
            Kind::Zip => "application/zip",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Kind::Tar => ".tar",
            Kind::Zip => ".zip",
        }
    }
}

/// Files up to this size are read into the buffer behind their header
/// rather than sent as a range of their own: one `pread` instead of a
/// `sendfile` and a separate write for the header, for the small files
/// that make up most of a source tree.
const INLINE_MEMBER: u64 = 16 * 1024;

/// Members all archives in flight may hold at once: about 90 bytes each
/// (path, size, time), so some 90 MB. One archive of a million files works;
/// a crowd of requests for huge folders — or the same request sent and
/// abandoned again and again — gets `503` instead of the server's memory.
pub const MEMBERS_IN_FLIGHT: usize = 1_000_000;

/// An archive's share of [`MEMBERS_IN_FLIGHT`], given back when it is
/// dropped (sent, failed, or abandoned by its client).
#[derive(Debug)]
struct Ledger {
    in_flight: Rc<Cell<usize>>,
    held: usize,
}

impl Ledger {
    /// Takes `more` members; `false` when that would pass the limit.
    fn take(&mut self, more: usize) -> bool {
        let total = self.in_flight.get() + more;
        if total > MEMBERS_IN_FLIGHT {
            return false;
        }
        self.in_flight.set(total);
        self.held += more;
        true
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.in_flight
            .set(self.in_flight.get().saturating_sub(self.held));
    }
}

/// One member, as the walk found it.
#[derive(Debug)]
struct Member {
    /// Its path below the archived folder (`sub/a.txt`; a folder's ends
    /// with `/`).
    within: Box<[u8]>,
    is_dir: bool,
    /// Reached through a symlink of its own name.
    is_link: bool,
    size: u64,
    mtime_secs: u64,
}

/// A member's path inside the archive: the top folder, then its path.
fn archive_name(top: &[u8], member: &Member) -> Vec<u8> {
    let mut name = Vec::with_capacity(top.len() + 1 + member.within.len());
    name.extend_from_slice(top);
    name.push(b'/');
    name.extend_from_slice(&member.within);
    name
}

/// The archive's length, added up member by member as the walk finds
/// them — with the same header functions that will write them — so no
/// step has to go over the whole list.
#[derive(Debug, Default, Clone, Copy)]
struct Length {
    /// Headers, bodies and what follows them (zip: local headers and
    /// descriptors).
    members: u64,
    /// Zip's central directory.
    central: u64,
    count: u64,
}

impl Length {
    fn add(&mut self, kind: Kind, name: &[u8], member: &Member) {
        self.count += 1;
        match kind {
            Kind::Tar => {
                let len = tar::member_len(name, member.is_dir, member.size);
                self.members = self.members.saturating_add(len);
            }
            Kind::Zip => {
                let central = zip::central_header_len(name, member.size, self.members);
                self.central = self.central.saturating_add(central);
                self.members = self
                    .members
                    .saturating_add(zip::local_header_len(name, member.size))
                    .saturating_add(member.size)
                    .saturating_add(zip::data_descriptor_len(member.size));
            }
        }
    }

    /// The whole archive's length (`u64::MAX` when it does not fit).
    fn total(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Tar => self.members.saturating_add(tar::end_len()),
            Kind::Zip => self
                .members
                .saturating_add(self.central)
                .saturating_add(zip::end_records_len(self.count, self.central, self.members)),
        }
    }
}

/// A folder on the walk's stack: its reader while names are still being
/// read, then its children, sorted, handed out one by one.
#[derive(Debug)]
struct Frame {
    reader: Option<DirReader>,
    /// Its path below the archived folder, empty or ending with `/`.
    within: Vec<u8>,
    children: Vec<Member>,
    next_child: usize,
}

/// An archive waiting for the walk that sizes it.
#[derive(Debug)]
pub struct ArchiveJob {
    kind: Kind,
    /// The archived folder, relative to ROOT.
    folder: PathBuf,
    /// The top folder inside the archive (the folder's own name).
    top: Vec<u8>,
    stack: Vec<Frame>,
    /// Folders already walked, by device and inode.
    visited: HashSet<(u64, u64)>,
    /// Symlinked folders met, walked once the real ones are.
    linked: VecDeque<Member>,
    members: Vec<Member>,
    /// The length of the members found so far.
    length: Length,
    /// Entries read from folders so far: what the ledger counts.
    found: usize,
    ledger: Ledger,
}

impl ArchiveJob {
    /// An archive of the folder at `folder` (relative to ROOT).
    pub fn new(site: &Site, kind: Kind, folder: &Path) -> Result<ArchiveJob, Missing> {
        let (dir, meta) = site.open_dir(folder)?;
        let reader = site.read_dir(&dir)?;
        let mtime_secs = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok());
        let top = match folder.file_name().or_else(|| site.root().file_name()) {
            Some(name) => name.as_bytes().to_vec(),
            None => b"files".to_vec(),
        };
        let top_member = Member {
            within: Box::default(),
            is_dir: true,
            is_link: false,
            size: 0,
            mtime_secs: mtime_secs.map_or(0, |since| since.as_secs()),
        };
        let mut length = Length::default();
        length.add(kind, &archive_name(&top, &top_member), &top_member);
        Ok(ArchiveJob {
            kind,
            folder: folder.to_path_buf(),
            top,
            stack: vec![Frame {
                reader: Some(reader),
                within: Vec::new(),
                children: Vec::new(),
                next_child: 0,
            }],
            visited: HashSet::from([(meta.dev(), meta.ino())]),
            linked: VecDeque::new(),
            // The top folder itself is the first member.
            members: vec![top_member],
            length,
            found: 1,
            ledger: Ledger {
                in_flight: site.archive_members(),
                held: 0,
            },
        })
    }

    /// One step of the walk; once it is done, the head with the archive's
    /// exact length.
    pub fn step(&mut self, ctx: &StepContext, out: &mut Vec<u8>) -> Prepared {
        let before = self.found;
        let walked = self.walk(ctx.site, SCAN_STEP);
        if !self.ledger.take(self.found - before) {
            return Prepared::Busy("too many files are being archived right now");
        }
        match walked {
            Ok(false) => return Prepared::NotYet,
            Ok(true) => {}
            Err(missing) => return Prepared::Failed(missing),
        }
        let members = std::mem::take(&mut self.members);
        let ledger = Ledger {
            in_flight: Rc::clone(&self.ledger.in_flight),
            held: std::mem::take(&mut self.ledger.held),
        };
        let total_len = self.length.total(self.kind);
        let mut stream = ArchiveStream::new(self.kind, &self.folder, &self.top, members, total_len);
        stream.ledger = Some(ledger);
        if stream.total_len == u64::MAX {
            // Sizes that do not add up in 64 bits (sparse files of exabytes).
            let error = std::io::Error::other("the archive would be too big");
            return Prepared::Failed(Missing::Io(error));
        }
        let mut file_name = self.top.clone();
        file_name.extend_from_slice(self.kind.extension().as_bytes());
        HeadWriter::start(out, Status::OK, ctx.date)
            .header("Content-Type", self.kind.content_type())
            .content_length(stream.total_len)
            .header("Content-Disposition", &crate::mime::attachment(&file_name))
            .header("Cache-Control", "no-cache")
            .finish(ctx.common);
        Prepared::Ready(Ready {
            status: Status::OK,
            body_len: stream.total_len,
            source: (!ctx.head_only).then(|| Source::Archive(Box::new(stream))),
            close_after: false,
        })
    }

    /// Walks on for about `budget` entries; `Ok(true)` when every member is
    /// known.
    fn walk(&mut self, site: &Site, mut budget: usize) -> Result<bool, Missing> {
        while budget > 0 {
            let Some(frame) = self.stack.last_mut() else {
                // Every folder reached without a symlink is walked.
                let Some(linked) = self.linked.pop_front() else {
                    return Ok(true);
                };
                budget -= 1;
                self.enter(site, linked)?;
                continue;
            };
            if let Some(reader) = frame.reader.as_mut() {
                let children = &mut frame.children;
                let within = &frame.within;
                let before = children.len();
                let done = site.read_entries(reader, budget, |entry| {
                    let mut path = within.clone();
                    path.extend_from_slice(entry.name);
                    if entry.is_dir {
                        path.push(b'/');
                    }
                    children.push(Member {
                        within: path.into_boxed_slice(),
                        is_dir: entry.is_dir,
                        is_link: entry.is_link,
                        size: if entry.is_dir { 0 } else { entry.size },
                        mtime_secs: entry
                            .modified
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |since| since.as_secs()),
                    });
                })?;
                // Hidden names read cost about nothing; visible ones count.
                let read = children.len() - before;
                self.found += read;
                budget = budget.saturating_sub(read + 1);
                if done {
                    frame.reader = None;
                    // Names in byte order: the same folder gives the same
                    // archive, whatever order the file system lists it in.
                    frame
                        .children
                        .sort_unstable_by(|a, b| a.within.cmp(&b.within));
                }
                continue;
            }
            let Some(child) = frame.children.get_mut(frame.next_child) else {
                self.stack.pop();
                continue;
            };
            frame.next_child += 1;
            budget -= 1;
            let member = Member {
                within: std::mem::take(&mut child.within),
                ..*child
            };
            if !member.is_dir {
                self.length
                    .add(self.kind, &archive_name(&self.top, &member), &member);
                self.members.push(member);
            } else if member.is_link {
                self.linked.push_back(member);
            } else {
                self.enter(site, member)?;
            }
        }
        Ok(self.stack.is_empty() && self.linked.is_empty())
    }

    /// Adds the folder `member` and starts walking it, unless it was
    /// walked already (reached twice through symlinks) or is gone.
    fn enter(&mut self, site: &Site, member: Member) -> Result<(), Missing> {
        let relative = self.folder.join(OsStr::from_bytes(
            member.within.strip_suffix(b"/").unwrap_or(&member.within),
        ));
        // A folder gone or unreadable now is left out, as a listing would
        // not show it; any other failure fails the answer rather than leave
        // an archive silently incomplete.
        let (dir, meta) = match site.open_dir(&relative) {
            Ok(opened) => opened,
            Err(Missing::NotFound | Missing::Forbidden) => return Ok(()),
            Err(error) => return Err(error),
        };
        if !self.visited.insert((meta.dev(), meta.ino())) {
            return Ok(()); // met before, through a symlink
        }
        let reader = site.read_dir(&dir)?;
        let within = member.within.to_vec();
        self.length
            .add(self.kind, &archive_name(&self.top, &member), &member);
        self.members.push(member);
        self.stack.push(Frame {
            reader: Some(reader),
            within,
            children: Vec::new(),
            next_child: 0,
        });
        Ok(())
    }
}

/// Where an [`ArchiveStream`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sending member `next`'s header and body.
    Members,
    /// The member whose body was just sent needs what follows it: tar's
    /// padding, zip's data descriptor.
    AfterBody,
    /// Zip's central directory, entry `next`.
    Central,
    /// The end of the archive.
    End,
    Done,
}

/// An archive being sent.
#[derive(Debug)]
pub struct ArchiveStream {
    kind: Kind,
    folder: PathBuf,
    top: Vec<u8>,
    members: Vec<Member>,
    /// Per member, for zip's central directory: (CRC-32, local header
    /// offset).
    zip_entries: Vec<(u32, u64)>,
    next: usize,
    stage: Stage,
    /// Archive bytes produced so far (zip's offsets).
    produced: u64,
    /// The CRC of the member whose body was just sent.
    last_crc: u32,
    /// Where zip's central directory starts.
    central_offset: u64,
    /// The exact length of the whole archive.
    pub total_len: u64,
    /// Its members' share of [`MEMBERS_IN_FLIGHT`].
    ledger: Option<Ledger>,
}

impl ArchiveStream {
    fn new(
        kind: Kind,
        folder: &Path,
        top: &[u8],
        members: Vec<Member>,
        total_len: u64,
    ) -> ArchiveStream {
        ArchiveStream {
            kind,
            folder: folder.to_path_buf(),
            top: top.to_vec(),
            zip_entries: Vec::with_capacity(if kind == Kind::Zip { members.len() } else { 0 }),
            members,
            next: 0,
            stage: Stage::Members,
            produced: 0,
            last_crc: 0,
            central_offset: 0,
            total_len,
            ledger: None,
        }
    }

    /// The member's path inside the archive: the top folder, then its path.
    fn name(&self, member: &Member) -> Vec<u8> {
        archive_name(&self.top, member)
    }

    /// The next piece: headers and small members into `out`, a big
    /// member's body as a file range.
    pub fn next(&mut self, site: &Site, out: &mut Vec<u8>) -> Piece {
        let start = out.len();
        while out.len() - start < PIECE_BYTES {
            match self.stage {
                Stage::Members => {
                    let Some(member) = self.members.get(self.next) else {
                        self.stage = match self.kind {
                            Kind::Tar => Stage::End,
                            Kind::Zip => Stage::Central,
                        };
                        self.central_offset = self.produced;
                        self.next = 0;
                        continue;
                    };
                    let (is_dir, size, mtime) = (member.is_dir, member.size, member.mtime_secs);
                    let name = self.name(member);
                    if is_dir {
                        self.header(&name, true, 0, mtime, out);
                        self.trailer(0, 0, out);
                        self.next += 1;
                        continue;
                    }
                    let relative = self.folder.join(OsStr::from_bytes(&member.within));
                    let file = match site.open_file(&relative) {
                        Ok(file) if file.size == size => file,
                        _ => return Piece::Failed("a file changed while it was being archived"),
                    };
                    self.header(&name, false, size, mtime, out);
                    self.next += 1;
                    if let Some(bytes) = file.bytes.as_deref().filter(|_| size <= INLINE_MEMBER) {
                        out.extend_from_slice(bytes);
                        self.produced += size;
                        self.trailer(size, crc32fast::hash(bytes), out);
                        continue;
                    }
                    self.stage = Stage::AfterBody;
                    let mut body = FileBody::range(file, 0, size);
                    if self.kind == Kind::Zip {
                        body.checksum = Some(crc32fast::Hasher::new());
                    }
                    return Piece::File(body);
                }
                Stage::AfterBody => {
                    let size = self.members.get(self.next - 1).map_or(0, |m| m.size);
                    self.produced += size;
                    self.trailer(size, self.last_crc, out);
                    self.stage = Stage::Members;
                }
                Stage::Central => {
                    let Some(member) = self.members.get(self.next) else {
                        self.stage = Stage::End;
                        continue;
                    };
                    let (crc, offset) =
                        self.zip_entries.get(self.next).copied().unwrap_or_default();
                    let entry = zip::ZipEntry {
                        name: self.name(member),
                        is_dir: member.is_dir,
                        size: member.size,
                        mtime_secs: member.mtime_secs,
                        crc,
                        offset,
                    };
                    let before = out.len();
                    zip::central_header(&entry, out);
                    self.produced += (out.len() - before) as u64;
                    self.next += 1;
                }
                Stage::End => {
                    match self.kind {
                        Kind::Tar => tar::end(out),
                        Kind::Zip => {
                            let entries = self.members.len() as u64;
                            let central = self.produced - self.central_offset;
                            zip::end_records(entries, central, self.central_offset, out);
                        }
                    }
                    self.stage = Stage::Done;
                }
                Stage::Done => break,
            }
        }
        if out.len() == start {
            Piece::Done
        } else {
            Piece::Queued
        }
    }

    /// A member's header; for zip, where its local header starts is noted
    /// for the central directory.
    fn header(&mut self, name: &[u8], is_dir: bool, size: u64, mtime: u64, out: &mut Vec<u8>) {
        let before = out.len();
        match self.kind {
            Kind::Tar => tar::member_head(name, is_dir, size, mtime, out),
            Kind::Zip => {
                self.zip_entries.push((0, self.produced));
                zip::local_header(name, size, mtime, out);
            }
        }
        self.produced += (out.len() - before) as u64;
    }

    /// What follows a member's data: tar's padding, zip's descriptor.
    fn trailer(&mut self, size: u64, crc: u32, out: &mut Vec<u8>) {
        let before = out.len();
        match self.kind {
            Kind::Tar => tar::padding(size, out),
            Kind::Zip => {
                if let Some(entry) = self.zip_entries.last_mut() {
                    entry.0 = crc;
                }
                zip::data_descriptor(crc, size, out);
            }
        }
        self.produced += (out.len() - before) as u64;
    }

    /// A member's body has been sent: its CRC is kept for the descriptor,
    /// and a file that changed meanwhile ends the answer.
    pub fn file_done(&mut self, body: FileBody) -> Result<(), &'static str> {
        self.last_crc = body.checksum.map_or(0, |crc| crc.finalize());
        let unchanged = body.file.file.metadata().is_ok_and(|meta| {
            meta.len() == body.file.size && meta.modified().ok() == Some(body.file.modified)
        });
        if unchanged {
            Ok(())
        } else {
            Err("a file changed while it was being archived")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_share_one_bound_on_members_and_give_it_back() {
        let in_flight = Rc::new(Cell::new(0));
        let mut first = Ledger {
            in_flight: Rc::clone(&in_flight),
            held: 0,
        };
        assert!(first.take(MEMBERS_IN_FLIGHT - 10));
        let mut second = Ledger {
            in_flight: Rc::clone(&in_flight),
            held: 0,
        };
        assert!(second.take(10));
        assert!(!second.take(1), "past the bound");
        assert_eq!(in_flight.get(), MEMBERS_IN_FLIGHT);
        drop(first);
        assert_eq!(in_flight.get(), 10);
        assert!(second.take(1000));
        drop(second);
        assert_eq!(in_flight.get(), 0);
    }

    #[test]
    fn the_query_names_the_format() {
        assert_eq!(Kind::from_query("tar"), Some(Kind::Tar));
        assert_eq!(Kind::from_query("sort=name&zip"), Some(Kind::Zip));
        assert_eq!(Kind::from_query("zip=1"), Some(Kind::Zip));
        assert_eq!(Kind::from_query("tarball"), None);
        assert_eq!(Kind::from_query(""), None);
    }
}
