//! Turning a request-target into a safe path relative to ROOT, on strings only.
//!
//! The target is split from its query, percent-decoded exactly once, and
//! normalised segment by segment: empty and `.` segments vanish, `..` removes
//! the previous one. A `..` that would climb above ROOT, a NUL byte, and any
//! segment starting with a dot (a hidden file) are refused: the caller answers
//! 404 so nothing about what lies outside ROOT, or in hidden files, leaks.
//!
//! Symlinks cannot be judged from a string; `files` checks where they lead.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Characters escaped when a path segment is put back into a URL: everything
/// that is not safe to leave bare in a path segment of an `href` or `Location`.
pub const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A request path, decoded and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    /// The decoded segments joined by `/`, none empty, `.`, `..` or hidden,
    /// with no leading slash: `docs/a b.txt`. One buffer, so parsing a path
    /// costs one allocation.
    normalized: Vec<u8>,
    /// The target's path ended in `/` (or was `/`).
    pub trailing_slash: bool,
    /// The query asked for `download` (`?download` or `?download=...`).
    pub download: bool,
}

/// Why a path is refused. Every reason is answered with 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path would leave ROOT.
    Escapes,
    /// A NUL byte after decoding.
    Nul,
    /// A segment names a hidden file.
    Hidden,
    /// The target is not in origin form (`*`, authority-form).
    NotAPath,
}

impl RequestPath {
    /// Decodes and normalises an origin-form request-target.
    pub fn parse(target: &str) -> Result<RequestPath, PathError> {
        RequestPath::parse_into(target, Vec::new())
    }

    /// Like [`parse`](Self::parse), but decodes into `buffer` (whatever it
    /// held is dropped). A caller that takes the buffer back with
    /// [`into_buffer`](Self::into_buffer) parses every request's path in the
    /// same memory, without asking the allocator.
    pub fn parse_into(target: &str, mut buffer: Vec<u8>) -> Result<RequestPath, PathError> {
        if !target.starts_with('/') {
            return Err(PathError::NotAPath);
        }
        // One pass for both ends of the path: a query, or a fragment (which
        // clients should not send, and which ends the path if they do).
        let (path, query) = match target.bytes().position(|b| b == b'?' || b == b'#') {
            Some(end) if target.as_bytes()[end] == b'?' => {
                let query = &target[end + 1..];
                let query = query.split_once('#').map_or(query, |(before, _)| before);
                (&target[..end], Some(query))
            }
            Some(end) => (&target[..end], None),
            None => (target, None),
        };
        buffer.clear();
        buffer.reserve(path.len());
        buffer.extend(percent_decode_str(path));
        let mut decoded = buffer;
        if decoded.contains(&0) {
            return Err(PathError::Nul);
        }
        let trailing_slash =
            decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
        // Normalise in place: kept segments are copied down over what was
        // already read, each after a `/` that the input also had, so the
        // write position never passes the read position.
        let mut written = 0;
        let mut at = 0;
        while at <= decoded.len() {
            let end = decoded[at..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(decoded.len(), |i| at + i);
            match &decoded[at..end] {
                b"" | b"." => {}
                b".." if written == 0 => return Err(PathError::Escapes),
                b".." => {
                    written = decoded[..written]
                        .iter()
                        .rposition(|&b| b == b'/')
                        .unwrap_or(0);
                }
                hidden if hidden.starts_with(b".") => return Err(PathError::Hidden),
                _ => {
                    if written > 0 {
                        decoded[written] = b'/';
                        written += 1;
                    }
                    decoded.copy_within(at..end, written);
                    written += end - at;
                }
            }
            at = end + 1;
        }
        decoded.truncate(written);
        let download = query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("download"))
        });
        Ok(RequestPath {
            normalized: decoded,
            trailing_slash,
            download,
        })
    }

    /// A path made of the given (already safe) segments.
    pub fn from_segments<'a>(
        segments: impl IntoIterator<Item = &'a [u8]>,
        trailing_slash: bool,
    ) -> RequestPath {
        let mut normalized = Vec::new();
        for segment in segments {
            if !normalized.is_empty() {
                normalized.push(b'/');
            }
            normalized.extend_from_slice(segment);
        }
        RequestPath {
            normalized,
            trailing_slash,
            download: false,
        }
    }

    /// The decoded segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.normalized
            .split(|&b| b == b'/')
            .filter(|segment| !segment.is_empty())
    }

    /// The folder this path is in, and its last segment (`None` for `/`).
    pub fn split_last(&self) -> Option<(RequestPath, &[u8])> {
        let name = self.file_name()?;
        let parent_len = self.normalized.len() - name.len();
        let parent = RequestPath {
            normalized: self.normalized[..parent_len.saturating_sub(1)].to_vec(),
            trailing_slash: true,
            download: false,
        };
        Some((parent, name))
    }

    /// Gives back the buffer the path was decoded into, for the next
    /// [`parse_into`](Self::parse_into).
    pub fn into_buffer(self) -> Vec<u8> {
        self.normalized
    }

    /// The path relative to ROOT, for joining onto it (empty for ROOT).
    pub fn relative(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.normalized))
    }

    /// The canonical URL path, re-encoded: `/a%20b/c`, with `/` appended when
    /// `slash` is set. Built from the segments, never echoed from the client, so
    /// a redirect can never point off-site (`//evil.example/`).
    pub fn url(&self, slash: bool) -> String {
        let mut url = String::from("/");
        for (i, segment) in self.segments().enumerate() {
            if i > 0 {
                url.push('/');
            }
            url.extend(encode_segment(segment));
        }
        if slash && !self.normalized.is_empty() {
            url.push('/');
        }
        url
    }

    /// The last segment, the name a download is saved under.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.segments().last()
    }
}

/// Appends `?query` to the `Location` of a redirect rill makes itself (a
/// folder's slash, a mounted route's): `/photos?tar` still means the
/// archive at `/photos/`. Only a query of printable ASCII is kept: the
/// client's bytes go into a header line, and one that could not stand there
/// as it is is left out rather than rewritten.
pub fn push_query(location: &mut String, query: &str) {
    if !query.is_empty() && query.bytes().all(|b| b.is_ascii_graphic()) {
        location.push('?');
        location.push_str(query);
    }
}

/// Percent-encodes one path segment for use in a URL.
pub fn encode_segment(segment: &[u8]) -> impl Iterator<Item = &str> {
    percent_encoding::percent_encode(segment, SEGMENT)
}

/// Percent-encodes text for an RFC 8187 `filename*` value (`attr-char` kept).
pub fn encode_rfc8187(text: &str) -> String {
    const NOT_ATTR_CHAR: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    utf8_percent_encode(text, NOT_ATTR_CHAR).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(target: &str) -> Vec<String> {
        RequestPath::parse(target)
            .unwrap()
            .segments()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn normalises() {
        assert_eq!(segments("/"), Vec::<String>::new());
        assert_eq!(segments("/a/b"), ["a", "b"]);
        assert_eq!(segments("//a/./b/"), ["a", "b"]);
        assert_eq!(segments("/a/../b"), ["b"]);
        assert_eq!(segments("/a%20b/c%23d"), ["a b", "c#d"]);
        assert_eq!(segments("/%E2%9C%93.txt"), ["✓.txt"]);
        assert_eq!(segments("/a?x=/../.."), ["a"]);
    }

    #[test]
    fn decodes_once() {
        // %2525 is "%25" after one decode, not "%".
        assert_eq!(segments("/100%2525"), ["100%25"]);
    }

    #[test]
    fn refuses_escapes_nul_and_hidden() {
        for (target, error) in [
            ("/..", PathError::Escapes),
            ("/../etc/passwd", PathError::Escapes),
            ("/a/../../b", PathError::Escapes),
            ("/%2e%2e/x", PathError::Escapes),
            ("/%2E%2E%2Fx", PathError::Escapes),
            ("/a%2f..%2f..%2fb", PathError::Escapes),
            ("/a%00b", PathError::Nul),
            ("/.env", PathError::Hidden),
            ("/a/.git/config", PathError::Hidden),
            ("/%2egit", PathError::Hidden),
            ("*", PathError::NotAPath),
        ] {
            assert_eq!(RequestPath::parse(target), Err(error), "{target}");
        }
    }

    #[test]
    fn trailing_slash_and_download() {
        let dir = RequestPath::parse("/a/").unwrap();
        assert!(dir.trailing_slash && !dir.download);
        let file = RequestPath::parse("/a?download").unwrap();
        assert!(!file.trailing_slash && file.download);
        assert!(RequestPath::parse("/a?x=1&download=1").unwrap().download);
        assert!(!RequestPath::parse("/a?downloads").unwrap().download);
        assert!(RequestPath::parse("/a/b/..").unwrap().trailing_slash);
    }

    #[test]
    fn a_fragment_ends_the_path_and_the_query() {
        let fragment = RequestPath::parse("/a#b?download").unwrap();
        assert_eq!(fragment.normalized, b"a");
        assert!(!fragment.download);
        let query = RequestPath::parse("/a/?download#b").unwrap();
        assert_eq!(query.normalized, b"a");
        assert!(query.trailing_slash && query.download);
        assert_eq!(RequestPath::parse("/a%3Fb").unwrap().normalized, b"a?b");
    }

    #[test]
    fn url_is_canonical_and_encoded() {
        let path = RequestPath::parse("//evil.example/a%20b#x").unwrap();
        assert_eq!(path.url(true), "/evil.example/a%20b/");
        let odd = RequestPath::parse("/%5Bx%5D%2C%3F%25").unwrap();
        assert_eq!(odd.url(false), "/%5Bx%5D%2C%3F%25");
        assert_eq!(RequestPath::parse("/").unwrap().url(true), "/");
    }

    #[test]
    fn a_redirect_keeps_only_a_query_that_can_stand_in_its_field() {
        let with = |query: &str| {
            let mut location = String::from("/d/");
            push_query(&mut location, query);
            location
        };
        assert_eq!(with("tar"), "/d/?tar");
        assert_eq!(with("a=1&b=%20"), "/d/?a=1&b=%20");
        assert_eq!(with(""), "/d/");
        // A space, a control byte or a non-ASCII one: left out, never raw.
        for bad in ["a b", "a\tb", "a\r\nSet-Cookie:x", "caf\u{e9}"] {
            assert_eq!(with(bad), "/d/", "{bad:?}");
        }
    }

    #[test]
    fn relative_paths_and_parents() {
        let path = RequestPath::parse("/a/./b//c%20d/../e.txt").unwrap();
        assert_eq!(path.relative(), Path::new("a/b/e.txt"));
        assert_eq!(RequestPath::parse("/").unwrap().relative(), Path::new(""));
        let (parent, name) = path.split_last().unwrap();
        assert_eq!((parent.relative(), name), (Path::new("a/b"), &b"e.txt"[..]));
        let x = RequestPath::parse("/x").unwrap();
        let (top, name) = x.split_last().unwrap();
        assert_eq!((top.relative(), name), (Path::new(""), &b"x"[..]));
        assert!(RequestPath::parse("/").unwrap().split_last().is_none());
        let built = RequestPath::from_segments([&b"a b"[..], b"c"], true);
        assert_eq!(built.url(true), "/a%20b/c/");
    }

    #[test]
    fn rfc8187() {
        assert_eq!(encode_rfc8187("naïve file.txt"), "na%C3%AFve%20file.txt");
    }
}
