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

use crate::listing::Entry;
use crate::path::RequestPath;
use std::cell::Cell;
use std::ffi::CString;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The served folder.
#[derive(Debug)]
pub struct Site {
    root: PathBuf,
    /// ROOT opened as a directory, the anchor for `openat2`.
    root_dir: File,
    /// Cleared the first time the kernel says it has no `openat2`.
    has_openat2: Cell<bool>,
}

/// What a request path names under ROOT.
#[derive(Debug)]
pub enum Found {
    /// A regular file, open for reading, with its metadata.
    File(File, Metadata),
    /// A directory, by its path relative to ROOT.
    Dir(PathBuf),
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
    /// Serves `root`, which must be a directory.
    pub fn new(root: &Path) -> io::Result<Site> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let root_dir = File::open(&root)?;
        Ok(Site {
            root,
            root_dir,
            has_openat2: Cell::new(true),
        })
    }

    /// The canonical ROOT.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds what `path` names, following symlinks only while they stay in ROOT.
    pub fn find(&self, path: &RequestPath) -> Result<Found, Missing> {
        self.find_relative(path.relative())
    }

    /// Finds `index.html` in a directory found before.
    pub fn index_of(&self, dir: &Path) -> Result<Found, Missing> {
        match self.find_relative(dir.join("index.html"))? {
            Found::Dir(_) => Err(Missing::NotFound),
            file => Ok(file),
        }
    }

    fn find_relative(&self, relative: PathBuf) -> Result<Found, Missing> {
        let file = match self.open_beneath(&relative) {
            Some(Ok(file)) => file,
            Some(Err(e)) if e.raw_os_error() != Some(libc::EXDEV) => return Err(e.into()),
            // EXDEV: a step led outside ROOT, or was an absolute symlink;
            // None: no openat2. The slow path decides.
            _ => self.open_checked(&relative)?,
        };
        let meta = file.metadata()?;
        if meta.is_dir() {
            Ok(Found::Dir(relative))
        } else if meta.is_file() {
            Ok(Found::File(file, meta))
        } else {
            Err(Missing::NotFound)
        }
    }

    /// `openat2(ROOT, relative, RESOLVE_BENEATH)`, or `None` without openat2.
    fn open_beneath(&self, relative: &Path) -> Option<io::Result<File>> {
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
        how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
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
    fn open_checked(&self, relative: &Path) -> Result<File, Missing> {
        let real = self.root.join(relative).canonicalize()?;
        if !real.starts_with(&self.root) {
            return Err(Missing::NotFound);
        }
        Ok(OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&real)?)
    }

    /// The visible entries of a directory: hidden names left out, and symlinks
    /// described by what they point to (or left out when that is outside ROOT
    /// or missing, since following them would 404 anyway).
    pub fn list(&self, dir: &Path) -> Result<Vec<Entry>, Missing> {
        let mut entries = Vec::new();
        for item in fs::read_dir(self.root.join(dir))? {
            let item = item?;
            let name = item.file_name();
            if name.as_bytes().starts_with(b".") {
                continue;
            }
            let mut meta = item.metadata()?;
            if meta.file_type().is_symlink() {
                match item.path().canonicalize() {
                    Ok(target) if target.starts_with(&self.root) => match fs::metadata(&target) {
                        Ok(target_meta) => meta = target_meta,
                        Err(_) => continue,
                    },
                    _ => continue,
                }
            }
            if !meta.is_dir() && !meta.is_file() {
                continue;
            }
            entries.push(Entry {
                name: name.as_bytes().to_vec(),
                is_dir: meta.is_dir(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            });
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn kind(site: &Site, path: &str) -> &'static str {
        let path = RequestPath::parse(path).expect("valid path");
        match site.find(&path) {
            Ok(Found::File(..)) => "file",
            Ok(Found::Dir(_)) => "dir",
            Err(Missing::NotFound) => "not found",
            Err(Missing::Forbidden) => "forbidden",
            Err(Missing::Io(_)) => "io",
        }
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
        let mut names: Vec<String> = site
            .list(Path::new(""))
            .unwrap()
            .into_iter()
            .map(|entry| String::from_utf8(entry.name).unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["absolute-in", "dir-in", "relative-in", "sub"]);
    }
}
