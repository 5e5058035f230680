//! Receiving uploads: a PUT body or the file parts of a `multipart/form-data`
//! POST, streamed to disk and kept whole or not at all.
//!
//! An [`Upload`] is created when a request head is accepted ([`begin`]) and is
//! then fed the body bytes as the connection reads them ([`Upload::feed`]).
//! The body is unframed (by `Content-Length` or the chunked decoder), then
//! passed to a sink: the PUT file, or the multipart parser whose file parts
//! each go to a file. Every file is first written to a hidden temp file in the
//! target folder (`.rill-upload-*`, which is never listed or served) and
//! renamed to its final name only when the whole body has arrived and parsed
//! correctly ([`Upload::finish`]). A [`TempFile`] deletes itself when dropped,
//! so an upload that is abandoned for any reason — the client disconnects,
//! the body is malformed or too large, the server shuts down — leaves nothing.
//! A PUT's preconditions (`If-Match`, `If-Unmodified-Since`, `If-None-Match`;
//! see [`WriteConditions`]) are checked against the file's current ETag —
//! the one a GET of the file itself sends (a precompressed sibling's, which
//! a GET with `Accept-Encoding` may get, does not match) — when the head
//! arrives, so a client waiting on
//! `100 Continue` is told 412 before it sends a byte, and once more just
//! before the rename: a 412 then discards the body, and the file stays as
//! the other writer left it.
//! Temp files are created, renamed and removed relative to the target folder's
//! open handle — the one [`Site`] checked lies inside ROOT — never by path, so
//! a folder swapped for a symlink meanwhile cannot send an upload elsewhere.
//!
//! Disk writes are plain blocking `write` calls: mio (like epoll) cannot poll
//! regular files, which are always "ready". To keep one fast upload from
//! starving every other connection, the connection hands at most
//! [`BUDGET_PER_TURN`] body bytes per turn of the loop to an upload, then lets
//! the others run; a form of many small files also pauses after
//! [`FILES_PER_FEED`] new files, since creating a file costs more than a
//! megabyte of body does. A form carries at most [`MAX_FORM_FILES`] files,
//! and each file's descriptor is closed as soon as its part ends.

use crate::config::Config;
use crate::http::chunked::{ChunkedDecoder, ChunkedError};
use crate::http::conditional::{PreconditionFailed, Validators, WriteConditions};
use crate::http::multipart::{form_data_boundary, Event, MultipartError, MultipartParser};
use crate::http::request::{BodyFraming, Method, Request};
use crate::http::response::{CommonHeaders, HeadWriter, Status};
use crate::listing::escape_html;
use crate::path::{encode_segment, PathError, RequestPath};
use crate::site::{Found, Missing, OpenDir, Site};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many bytes of an upload body are buffered at most: one `recv` from the
/// socket, then one `write` to the file. Large writes let the page cache take
/// the data in large folios; a 1 GiB PUT cost about half the CPU with 256 KiB
/// as with 64 KiB (1.0 → 1.7-1.9 GB/s), and 1 MiB gained little more.
pub const UPLOAD_INPUT: usize = 256 * 1024;
/// Body bytes an upload may process per turn of the loop.
pub const BUDGET_PER_TURN: usize = 1 << 20;
/// Most decoded bytes held between the chunked decoder and the sink: as much
/// as one read of the socket, so a chunked body is written in writes as large
/// as a plain one's.
const STAGING_MAX: usize = UPLOAD_INPUT;
/// Longest stored file name, in bytes (most file systems allow 255).
const MAX_NAME_BYTES: usize = 200;
/// Longest name a PUT may give its file: the file systems' limit, since a
/// PUT's name is taken as it is.
const MAX_PUT_NAME_BYTES: usize = 255;
/// Prefix of temp files; hidden, so never listed or served.
pub const TEMP_PREFIX: &str = ".rill-upload-";
/// Most files one form may carry, as Go's `net/http` allows 1000 parts:
/// each costs a temp file, a rename at the end and a line in the answer.
pub const MAX_FORM_FILES: usize = 1000;
/// Files a form may start per [`Upload::feed`]: a 1 MB form of 15 000 one-byte
/// files held the loop (and every other client) for 3.4 s in one turn.
pub const FILES_PER_FEED: usize = 32;

/// Why an upload is refused or failed: the status and a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub detail: &'static str,
}

fn refuse(status: Status, detail: &'static str) -> Refusal {
    Refusal { status, detail }
}

impl From<ChunkedError> for Refusal {
    fn from(error: ChunkedError) -> Refusal {
        refuse(Status::BAD_REQUEST, error.0)
    }
}

impl From<PreconditionFailed> for Refusal {
    fn from(failed: PreconditionFailed) -> Refusal {
        refuse(Status::PRECONDITION_FAILED, failed.0)
    }
}

impl From<MultipartError> for Refusal {
    fn from(error: MultipartError) -> Refusal {
        refuse(Status::BAD_REQUEST, error.0)
    }
}

fn disk_refusal(error: &io::Error) -> Refusal {
    log::warn!("upload: {error}");
    match error.kind() {
        io::ErrorKind::PermissionDenied => refuse(Status::FORBIDDEN, "folder not writable"),
        _ if matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {
            refuse(Status::INSUFFICIENT_STORAGE, "disk full")
        }
        _ => refuse(Status::INTERNAL_SERVER_ERROR, "could not write the file"),
    }
}

/// How far [`Upload::feed`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All buffered body bytes were handled; more must be read.
    NeedInput,
    /// The body is complete: call [`Upload::finish`].
    Complete,
    /// Enough files were started for one turn: feed the rest of the input
    /// after the other connections had theirs.
    Paused,
}

/// A file being received in an open folder, deleted on drop unless persisted.
#[derive(Debug)]
pub struct TempFile {
    /// The folder, open; every operation names the file relative to it.
    dir: Rc<File>,
    name: CString,
    /// Open while bytes are written to it; closed once they all are (the
    /// name is what the rename and the removal use).
    file: Option<File>,
    persisted: bool,
}

impl TempFile {
    /// Creates a fresh hidden temp file in the open folder `dir`.
    pub fn create(dir: &Rc<File>) -> io::Result<TempFile> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = CString::new(format!("{TEMP_PREFIX}{}-{n}.part", std::process::id()))?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
            // SAFETY: `dir` is an open descriptor and `name` is NUL-terminated;
            // openat returns a new descriptor or -1.
            let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, 0o644) };
            if fd >= 0 {
                return Ok(TempFile {
                    dir: Rc::clone(dir),
                    name,
                    // SAFETY: fd is a fresh descriptor that nothing else owns.
                    file: Some(unsafe { File::from_raw_fd(fd) }),
                    persisted: false,
                });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::AlreadyExists {
                return Err(error);
            }
        }
    }

    /// Appends `data` to the file.
    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.write_all(data),
            None => Err(io::Error::other("the temp file is closed")),
        }
    }

    /// Closes the file's descriptor: a form of many files holds one at a
    /// time, not one per file until its end.
    pub fn close(&mut self) {
        self.file = None;
    }

    /// Gives the file its final name in its folder. With `replace` an existing
    /// file is swapped out atomically; without, an existing name fails with
    /// `AlreadyExists` and nothing is touched.
    pub fn persist(&mut self, target: &OsStr, replace: bool) -> io::Result<()> {
        let target = CString::new(target.as_bytes())?;
        let dir = self.dir.as_raw_fd();
        if replace {
            // SAFETY: an open descriptor and two NUL-terminated names.
            check(unsafe { libc::renameat(dir, self.name.as_ptr(), dir, target.as_ptr()) })?;
        } else {
            rename_no_replace(dir, &self.name, &target)?;
        }
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // SAFETY: an open descriptor and a NUL-terminated name.
            let removed =
                check(unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) });
            if let Err(e) = removed {
                log::warn!("could not remove {:?}: {e}", self.name);
            }
        }
    }
}

/// A libc status (0 or -1) as a `Result`.
fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `renameat2(RENAME_NOREPLACE)` within one folder, or link+unlink where the
/// file system lacks it.
fn rename_no_replace(dir: RawFd, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: an open descriptor and two NUL-terminated names.
    let renamed = check(unsafe {
        libc::renameat2(dir, from.as_ptr(), dir, to.as_ptr(), libc::RENAME_NOREPLACE)
    });
    match renamed {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            // SAFETY: as above; linkat fails with EEXIST rather than replace.
            check(unsafe { libc::linkat(dir, from.as_ptr(), dir, to.as_ptr(), 0) })?;
            // SAFETY: as above.
            check(unsafe { libc::unlinkat(dir, from.as_ptr(), 0) })
        }
        other => other,
    }
}

/// How the body is framed on the wire.
enum BodyReader {
    Length {
        remaining: u64,
    },
    Chunked {
        decoder: ChunkedDecoder,
        /// Decoded bytes not yet taken by the sink.
        staging: Vec<u8>,
    },
}

/// A file part of a form, received so far.
struct FormFile {
    temp: TempFile,
    name: String,
    size: u64,
}

/// Where the body goes.
enum Sink {
    /// PUT: the raw body is the file.
    Put {
        temp: TempFile,
        name: Vec<u8>,
        size: u64,
        replace: bool,
        /// Checked when the head came, and again just before the commit.
        conditions: WriteConditions,
    },
    /// POST multipart/form-data: every file part is a file.
    Form {
        parser: Box<MultipartParser>,
        /// The folder the files go to, open.
        dir: Rc<File>,
        /// The file part being received (None inside a text field).
        current: Option<FormFile>,
        /// File parts received whole, waiting for the end of the form.
        complete: Vec<FormFile>,
    },
}

/// One stored file, for the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub name: String,
    pub size: u64,
    pub url: String,
}

/// An upload in progress.
pub struct Upload {
    body: BodyReader,
    sink: Sink,
    /// The target folder's URL (ending in `/`).
    dir_url: String,
    /// Answer in JSON rather than HTML.
    json: bool,
    max_body: u64,
    /// Body bytes received so far (after unchunking).
    received: u64,
}

/// Checks an upload request's head and prepares to receive its body. Every
/// refusal here happens before a single body byte is stored.
pub fn begin(request: &Request, site: &Site, config: &Config) -> Result<Upload, Refusal> {
    if request
        .expect
        .is_some_and(|expect| !expect.eq_ignore_ascii_case("100-continue"))
    {
        return Err(refuse(Status::EXPECTATION_FAILED, "unknown expectation"));
    }
    let body = match request.body {
        BodyFraming::None => {
            return Err(refuse(
                Status::LENGTH_REQUIRED,
                "an upload needs Content-Length or a chunked body",
            ))
        }
        BodyFraming::Length(length) if length > config.max_body => {
            return Err(refuse(
                Status::PAYLOAD_TOO_LARGE,
                "body larger than --max-body",
            ))
        }
        BodyFraming::Length(remaining) => BodyReader::Length { remaining },
        BodyFraming::Chunked => BodyReader::Chunked {
            decoder: ChunkedDecoder::new(),
            staging: Vec::new(),
        },
    };
    let path = RequestPath::parse(&request.target).map_err(|error| match error {
        // Never listed or served, so never stored either.
        PathError::Hidden => refuse(Status::FORBIDDEN, "hidden names are not stored"),
        _ => refuse(Status::NOT_FOUND, "no such folder"),
    })?;
    let json = request
        .accept
        .is_some_and(|accept| accept.contains("application/json"));
    let (dir_path, dir, sink) = match request.method {
        Method::Put => put_sink(&path, write_conditions(request), site, config)?,
        Method::Post => form_sink(request, &path, site)?,
        _ => return Err(refuse(Status::METHOD_NOT_ALLOWED, "not an upload method")),
    };
    let dir_url = dir_path.url(true);
    let dir = Rc::new(dir.into_handle());
    let sink = match sink {
        PendingSink::Put {
            name,
            replace,
            conditions,
        } => Sink::Put {
            temp: TempFile::create(&dir).map_err(|e| disk_refusal(&e))?,
            name,
            size: 0,
            replace,
            conditions,
        },
        PendingSink::Form(parser) => Sink::Form {
            parser,
            dir,
            current: None,
            complete: Vec::new(),
        },
    };
    Ok(Upload {
        body,
        sink,
        dir_url,
        json,
        max_body: config.max_body,
        received: 0,
    })
}

/// A sink decided on, before its temp file exists.
enum PendingSink {
    Put {
        name: Vec<u8>,
        replace: bool,
        conditions: WriteConditions,
    },
    Form(Box<MultipartParser>),
}

/// A PUT's conditional headers, kept for the check at the commit.
fn write_conditions(request: &Request) -> WriteConditions {
    WriteConditions {
        if_match: request.if_match.map(Box::from),
        if_unmodified_since: request.if_unmodified_since.map(Box::from),
        if_none_match: request.if_none_match.map(Box::from),
    }
}

/// Decides where a PUT goes. Its preconditions are checked against the
/// file as a GET would find it, and before `--overwrite` is: a client that
/// asked for "only if absent" or "only this version" learns that its
/// condition failed (412), whether or not rill would have replaced the file.
fn put_sink(
    path: &RequestPath,
    conditions: WriteConditions,
    site: &Site,
    config: &Config,
) -> Result<(RequestPath, OpenDir, PendingSink), Refusal> {
    let Some((parent_path, name)) = path.split_last() else {
        return Err(refuse(Status::METHOD_NOT_ALLOWED, "PUT needs a file URL"));
    };
    if path.trailing_slash {
        return Err(refuse(Status::METHOD_NOT_ALLOWED, "PUT needs a file URL"));
    }
    // A PUT names its file exactly, so what a form's name would be
    // sanitised of is refused instead: a line break in a name splits log
    // lines and shell loops; longer than NAME_MAX, the disk refuses it.
    if name.iter().any(u8::is_ascii_control) {
        return Err(refuse(
            Status::BAD_REQUEST,
            "control characters in the file name",
        ));
    }
    if name.len() > MAX_PUT_NAME_BYTES {
        return Err(refuse(
            Status::BAD_REQUEST,
            "file name longer than 255 bytes",
        ));
    }
    let dir = match site.find_uncached(&parent_path) {
        Ok(Found::Dir(dir)) => dir,
        Ok(Found::File(..)) => return Err(refuse(Status::CONFLICT, "parent is a file")),
        Err(Missing::NotFound) => return Err(refuse(Status::NOT_FOUND, "no such folder")),
        Err(Missing::Forbidden) => return Err(refuse(Status::FORBIDDEN, "folder not readable")),
        Err(Missing::Io(e)) => return Err(disk_refusal(&e)),
    };
    let current = match site.find_uncached(path) {
        Ok(Found::Dir(_)) => return Err(refuse(Status::CONFLICT, "a folder has that name")),
        Ok(Found::File(file)) => Some(file),
        Err(Missing::NotFound) => None,
        Err(Missing::Forbidden) => return Err(refuse(Status::FORBIDDEN, "file not readable")),
        Err(Missing::Io(e)) => return Err(disk_refusal(&e)),
    };
    conditions.check(current.as_ref().map(|file| &file.validators))?;
    let exists = current.is_some();
    if exists && !config.overwrite {
        return Err(refuse(
            Status::CONFLICT,
            "file exists (start rill with --overwrite to allow replacing it)",
        ));
    }
    Ok((
        parent_path,
        dir,
        PendingSink::Put {
            name: name.to_vec(),
            replace: exists,
            conditions,
        },
    ))
}

fn form_sink(
    request: &Request,
    path: &RequestPath,
    site: &Site,
) -> Result<(RequestPath, OpenDir, PendingSink), Refusal> {
    let dir = match site.find_uncached(path) {
        Ok(Found::Dir(dir)) => dir,
        Ok(Found::File(..)) => {
            return Err(refuse(
                Status::METHOD_NOT_ALLOWED,
                "POST uploads go to a folder URL",
            ))
        }
        Err(Missing::NotFound) => return Err(refuse(Status::NOT_FOUND, "no such folder")),
        Err(Missing::Forbidden) => return Err(refuse(Status::FORBIDDEN, "folder not readable")),
        Err(Missing::Io(e)) => return Err(disk_refusal(&e)),
    };
    let boundary = request
        .content_type
        .and_then(form_data_boundary)
        .ok_or(refuse(
            Status::UNSUPPORTED_MEDIA_TYPE,
            "POST takes multipart/form-data with a boundary",
        ))?;
    let parser = Box::new(MultipartParser::new(&boundary)?);
    Ok((path.clone(), dir, PendingSink::Form(parser)))
}

impl Upload {
    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Hands buffered input to the upload. Used bytes are removed from
    /// `input`; bytes after the body (a pipelined request) are left there, and
    /// so are the last few bytes of a form that could start a delimiter.
    pub fn feed(&mut self, input: &mut Vec<u8>) -> Result<Progress, Refusal> {
        match &mut self.body {
            BodyReader::Length { remaining } => {
                let available =
                    usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                let is_rest_of_body = available as u64 == *remaining;
                let (used, paused) = self.sink.consume(&input[..available], is_rest_of_body)?;
                input.drain(..used);
                *remaining -= used as u64;
                self.received += used as u64;
                Ok(if *remaining == 0 {
                    Progress::Complete
                } else if paused {
                    Progress::Paused
                } else {
                    Progress::NeedInput
                })
            }
            BodyReader::Chunked { decoder, staging } => {
                let mut at = 0;
                while at < input.len() && staging.len() < STAGING_MAX && !decoder.is_done() {
                    let room = STAGING_MAX - staging.len();
                    let end = input.len().min(at + room);
                    let decoded = decoder.decode(&input[at..end])?;
                    staging.extend_from_slice(decoded.data);
                    self.received += decoded.data.len() as u64;
                    at += decoded.consumed;
                    if decoded.consumed == 0 {
                        break;
                    }
                }
                input.drain(..at);
                if self.received > self.max_body {
                    return Err(refuse(
                        Status::PAYLOAD_TOO_LARGE,
                        "body larger than --max-body",
                    ));
                }
                let (used, paused) = self.sink.consume(staging, decoder.is_done())?;
                staging.drain(..used);
                Ok(if decoder.is_done() && staging.is_empty() {
                    Progress::Complete
                } else if paused {
                    Progress::Paused
                } else {
                    Progress::NeedInput
                })
            }
        }
    }

    /// Moves every received file to its final name and writes the `201`
    /// answer (or `204` for a PUT that replaced a file) into `out`.
    /// Returns the status and the body length.
    pub fn finish(
        self,
        date: &str,
        common: CommonHeaders,
        head_only: bool,
        out: &mut Vec<u8>,
    ) -> Result<(Status, u64), Refusal> {
        let mut stored = Vec::new();
        let mut status = Status::CREATED;
        match self.sink {
            Sink::Put {
                temp,
                name,
                size,
                replace,
                conditions,
            } => {
                let mut temp = temp;
                if !conditions.is_empty() {
                    // Another upload on this loop may have replaced the file
                    // while this body arrived: what the head's check saw is
                    // stale. A refusal drops `temp`, which deletes it.
                    let current =
                        current_validators(&temp.dir, &name).map_err(|e| disk_refusal(&e))?;
                    conditions.check(current.as_ref())?;
                }
                match temp.persist(OsStr::from_bytes(&name), replace) {
                    Ok(()) => {}
                    // A file appeared after the check; the rename that
                    // refuses to replace it is what makes "only if absent"
                    // hold against other processes too.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if conditions.wants_absent() {
                            return Err(PreconditionFailed("the file matches If-None-Match").into());
                        }
                        return Err(refuse(Status::CONFLICT, "file exists"));
                    }
                    Err(e) => return Err(disk_refusal(&e)),
                }
                if replace {
                    status = Status::NO_CONTENT;
                }
                stored.push(Stored {
                    url: format!(
                        "{}{}",
                        self.dir_url,
                        encode_segment(&name).collect::<String>()
                    ),
                    name: String::from_utf8_lossy(&name).into_owned(),
                    size,
                });
            }
            Sink::Form {
                parser, complete, ..
            } => {
                if !parser.is_done() {
                    return Err(refuse(Status::BAD_REQUEST, "form ended early"));
                }
                if complete.is_empty() {
                    return Err(refuse(Status::BAD_REQUEST, "the form carried no file"));
                }
                for mut file in complete {
                    let name = persist_unique(&mut file.temp, &file.name)?;
                    stored.push(Stored {
                        url: format!(
                            "{}{}",
                            self.dir_url,
                            encode_segment(name.as_bytes()).collect::<String>()
                        ),
                        name,
                        size: file.size,
                    });
                }
            }
        }
        for file in &stored {
            log::info!("stored {} ({} bytes)", file.url, file.size);
        }
        let (content_type, body) = if self.json {
            ("application/json", json_answer(&stored))
        } else {
            (
                "text/html; charset=utf-8",
                html_answer(&stored, &self.dir_url),
            )
        };
        let body_len = if status.allows_body() { body.len() } else { 0 };
        let mut head = HeadWriter::start(out, status, date);
        if status == Status::CREATED {
            if let [only] = stored.as_slice() {
                head = head.header("Location", &only.url);
            }
            head = head.header("Content-Type", content_type);
        }
        head.content_length(body_len as u64).finish(common);
        if !head_only && body_len > 0 {
            out.extend_from_slice(body.as_bytes());
        }
        Ok((status, body_len as u64))
    }
}

impl Sink {
    /// Takes body bytes; returns how many it used, and whether it paused
    /// after [`FILES_PER_FEED`] new files with bytes left. With
    /// `is_rest_of_body` the slice is all that remains of the body, so
    /// holding bytes back for a delimiter that never completes means the
    /// form is broken.
    fn consume(&mut self, data: &[u8], is_rest_of_body: bool) -> Result<(usize, bool), Refusal> {
        match self {
            Sink::Put { temp, size, .. } => {
                temp.write_all(data).map_err(|e| disk_refusal(&e))?;
                *size += data.len() as u64;
                Ok((data.len(), false))
            }
            Sink::Form {
                parser,
                dir,
                current,
                complete,
            } => {
                let mut at = 0;
                let mut started = 0;
                loop {
                    let (used, event) = parser.next(&data[at..])?;
                    at += used;
                    match event {
                        Event::NeedMore if used == 0 => break,
                        Event::NeedMore => {}
                        Event::PartStart(info) => {
                            *current = match info.filename.as_deref() {
                                // A file input left empty sends filename="".
                                Some(raw) if !raw.is_empty() => {
                                    if complete.len() == MAX_FORM_FILES {
                                        return Err(refuse(
                                            Status::PAYLOAD_TOO_LARGE,
                                            "more than 1000 files in one form",
                                        ));
                                    }
                                    started += 1;
                                    Some(FormFile {
                                        temp: TempFile::create(dir)
                                            .map_err(|e| disk_refusal(&e))?,
                                        name: sanitize_filename(raw),
                                        size: 0,
                                    })
                                }
                                _ => None,
                            }
                        }
                        Event::Data(bytes) => {
                            if let Some(file) = current {
                                file.temp.write_all(bytes).map_err(|e| disk_refusal(&e))?;
                                file.size += bytes.len() as u64;
                            }
                        }
                        Event::PartEnd => {
                            if let Some(mut file) = current.take() {
                                file.temp.close();
                                complete.push(file);
                            }
                        }
                        Event::End => {}
                    }
                    if at == data.len() {
                        break;
                    }
                    if started == FILES_PER_FEED {
                        return Ok((at, true));
                    }
                }
                if is_rest_of_body && at < data.len() && !parser.is_done() {
                    return Err(refuse(Status::BAD_REQUEST, "form ended early"));
                }
                Ok((at, false))
            }
        }
    }
}

/// The validators of the file `name` in the open folder `dir` as it is now,
/// as a GET would give them, or `None` when there is no file by that name.
/// A symlink is followed, as GET follows it: what it leads to is only
/// compared here, never read, and the commit's rename replaces the link.
fn current_validators(dir: &File, name: &[u8]) -> io::Result<Option<Validators>> {
    let name = CString::new(name)?;
    // O_PATH: the file is looked at, not opened (a FIFO cannot block).
    // O_NOFOLLOW: a symlink planted meanwhile could lead out of ROOT; it is
    // no regular file here, so an If-Match fails safe (412).
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: an open descriptor and a NUL-terminated name; openat returns
    // a new descriptor or -1.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata()?;
    if !meta.is_file() {
        // GET answers 404 for anything but a regular file.
        return Ok(None);
    }
    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
    Ok(Some(Validators::new(meta.ino(), modified, meta.len())))
}

/// Persists `temp` as `name` in its folder, or `name-1`, `name-2`, ... when
/// taken.
/// The no-replace rename makes the check and the move one step, so a file
/// that appears meanwhile is never overwritten.
fn persist_unique(temp: &mut TempFile, name: &str) -> Result<String, Refusal> {
    let (stem, extension) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    for n in 0..10_000u32 {
        let candidate = if n == 0 {
            name.to_owned()
        } else {
            format!("{stem}-{n}{extension}")
        };
        match temp.persist(OsStr::new(&candidate), false) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(disk_refusal(&e)),
        }
    }
    Err(refuse(Status::CONFLICT, "too many files with that name"))
}

/// Makes a stored name safe: only the last path component (either separator),
/// no control characters, no leading dots (hidden files, `..`), no trailing
/// dots or spaces, at most 200 bytes with the extension kept.
pub fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned
        .trim()
        .trim_start_matches('.')
        .trim_end_matches(['.', ' '])
        .trim_start();
    if trimmed.is_empty() {
        return String::from("upload");
    }
    if trimmed.len() <= MAX_NAME_BYTES {
        return trimmed.to_owned();
    }
    let extension = match trimmed.rfind('.') {
        Some(dot) if trimmed.len() - dot <= 16 => &trimmed[dot..],
        _ => "",
    };
    let mut cut = MAX_NAME_BYTES - extension.len();
    while !trimmed.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{extension}", &trimmed[..cut])
}

fn json_answer(stored: &[Stored]) -> String {
    let files: Vec<String> = stored
        .iter()
        .map(|file| {
            format!(
                "{{\"name\":{},\"size\":{},\"url\":{}}}",
                json_string(&file.name),
                file.size,
                json_string(&file.url)
            )
        })
        .collect();
    format!("{{\"files\":[{}]}}\n", files.join(","))
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn html_answer(stored: &[Stored], dir_url: &str) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Uploaded</title>\n</head>\n<body>\n<h1>Uploaded</h1>\n<ul>\n",
    );
    for file in stored {
        page.push_str(&format!(
            "<li><a href=\"{}\">{}</a> ({} bytes)</li>\n",
            escape_html(&file.url),
            escape_html(&file.name),
            file.size
        ));
    }
    page.push_str(&format!(
        "</ul>\n<p><a href=\"{}\">Back to the folder</a></p>\n</body>\n</html>\n",
        escape_html(dir_url)
    ));
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_full_disk_is_507_and_a_read_only_folder_403() {
        let status = |errno| disk_refusal(&io::Error::from_raw_os_error(errno)).status;
        assert_eq!(status(libc::ENOSPC), Status::INSUFFICIENT_STORAGE);
        assert_eq!(status(libc::EDQUOT), Status::INSUFFICIENT_STORAGE);
        assert_eq!(status(libc::EACCES), Status::FORBIDDEN);
        assert_eq!(status(libc::EIO), Status::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn filenames_are_neutralised() {
        for (raw, expected) in [
            ("photo.jpg", "photo.jpg"),
            ("../../etc/passwd", "passwd"),
            ("..\\..\\windows\\win.ini", "win.ini"),
            ("C:\\Users\\me\\report.pdf", "report.pdf"),
            ("/absolute/name.txt", "name.txt"),
            ("..", "upload"),
            ("...", "upload"),
            (".bashrc", "bashrc"),
            ("..hidden.txt", "hidden.txt"),
            ("a\u{0}b\u{1}c\n.txt", "abc.txt"),
            ("trailing. . ", "trailing"),
            ("", "upload"),
            ("dir/", "upload"),
            ("naïve 日本.txt", "naïve 日本.txt"),
        ] {
            assert_eq!(sanitize_filename(raw), expected, "{raw:?}");
        }
        let long = format!("{}.tar.gz", "é".repeat(300));
        let cleaned = sanitize_filename(&long);
        assert!(cleaned.len() <= MAX_NAME_BYTES, "{}", cleaned.len());
        assert!(cleaned.ends_with(".gz"));
    }

    #[test]
    fn json_answer_escapes() {
        let stored = [Stored {
            name: "a\"b\\c\n.txt".to_owned(),
            size: 3,
            url: "/x/a%22b".to_owned(),
        }];
        assert_eq!(
            json_answer(&stored),
            "{\"files\":[{\"name\":\"a\\\"b\\\\c\\u000a.txt\",\"size\":3,\"url\":\"/x/a%22b\"}]}\n"
        );
    }

    fn open(dir: &Path) -> Rc<File> {
        Rc::new(File::open(dir).unwrap())
    }

    #[test]
    fn temp_files_vanish_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let dropped = TempFile::create(&open(dir.path())).unwrap();
        let dropped_path = dir.path().join(OsStr::from_bytes(dropped.name.as_bytes()));
        assert!(dropped_path.exists());
        assert!(dropped_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(TEMP_PREFIX));
        drop(dropped);
        assert!(!dropped_path.exists());

        std::fs::write(dir.path().join("taken"), "old").unwrap();
        let mut kept = TempFile::create(&open(dir.path())).unwrap();
        kept.write_all(b"new").unwrap();
        let error = kept.persist(OsStr::new("taken"), false).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(dir.path().join("taken")).unwrap(), b"old");
        let name = persist_unique(&mut kept, "taken").unwrap();
        assert_eq!(name, "taken-1");
        drop(kept);
        assert_eq!(std::fs::read(dir.path().join("taken-1")).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "a temp file was left behind");
    }

    #[test]
    fn an_upload_lands_in_the_folder_that_was_checked_even_if_a_symlink_replaces_it() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("inbox")).unwrap();
        std::fs::create_dir_all(outer.path().join("elsewhere")).unwrap();
        let checked = open(&root.join("inbox"));
        let mut put = TempFile::create(&checked).unwrap();
        put.write_all(b"put").unwrap();
        // Between the check and the writes, the folder is swapped for a
        // symlink that leads out of ROOT.
        std::fs::rename(root.join("inbox"), root.join("moved")).unwrap();
        std::os::unix::fs::symlink(outer.path().join("elsewhere"), root.join("inbox")).unwrap();
        let mut form = TempFile::create(&checked).unwrap();
        form.write_all(b"form").unwrap();
        put.persist(OsStr::new("a.txt"), false).unwrap();
        assert_eq!(persist_unique(&mut form, "a.txt").unwrap(), "a-1.txt");

        assert_eq!(std::fs::read(root.join("moved/a.txt")).unwrap(), b"put");
        assert_eq!(std::fs::read(root.join("moved/a-1.txt")).unwrap(), b"form");
        let outside: Vec<_> = std::fs::read_dir(outer.path().join("elsewhere"))
            .unwrap()
            .collect();
        assert!(outside.is_empty(), "an upload escaped ROOT");
    }
}
