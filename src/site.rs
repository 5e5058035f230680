//! The folder being served: finding a request's file or directory under ROOT
//! without ever stepping outside it.
//!
//! [`crate::path`] has already refused `..` escapes, NUL bytes and hidden names
//! on the string; what is left to check is where symlinks lead. A path is
//! resolved with `canonicalize` and must still lie under the canonical ROOT, so a
//! link to `/etc/passwd` answers 404 exactly like a missing file.
//!
//! Files are opened with `O_NONBLOCK` and checked to be regular after opening,
//! so a FIFO or device node under ROOT can never block the loop.

use crate::listing::Entry;
use crate::path::RequestPath;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The served folder.
#[derive(Debug, Clone)]
pub struct Site {
    root: PathBuf,
}

/// What a request path names under ROOT.
#[derive(Debug)]
pub enum Found {
    /// A regular file, open for reading, with its metadata.
    File(File, Metadata),
    /// A directory, by its real path.
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
        Ok(Site { root })
    }

    /// The canonical ROOT.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds what `path` names, following symlinks only while they stay in ROOT.
    pub fn find(&self, path: &RequestPath) -> Result<Found, Missing> {
        let real = self.root.join(path.relative()).canonicalize()?;
        if !real.starts_with(&self.root) {
            return Err(Missing::NotFound);
        }
        self.open(real)
    }

    /// Finds `index.html` in a directory found before.
    pub fn index_of(&self, dir: &Path) -> Result<Found, Missing> {
        let index = dir.join("index.html");
        let real = index.canonicalize()?;
        if !real.starts_with(&self.root) {
            return Err(Missing::NotFound);
        }
        match self.open(real)? {
            Found::File(file, meta) => Ok(Found::File(file, meta)),
            Found::Dir(_) => Err(Missing::NotFound),
        }
    }

    fn open(&self, real: PathBuf) -> Result<Found, Missing> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&real)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            Ok(Found::Dir(real))
        } else if meta.is_file() {
            Ok(Found::File(file, meta))
        } else {
            Err(Missing::NotFound)
        }
    }

    /// The visible entries of a directory: hidden names left out, and symlinks
    /// described by what they point to (or left out when that is outside ROOT
    /// or missing, since following them would 404 anyway).
    pub fn list(&self, dir: &Path) -> Result<Vec<Entry>, Missing> {
        let mut entries = Vec::new();
        for item in fs::read_dir(dir)? {
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
