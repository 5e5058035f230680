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
use std::path::PathBuf;

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
    /// The decoded segments, none empty, `.`, `..` or hidden.
    pub segments: Vec<Vec<u8>>,
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
        if !target.starts_with('/') {
            return Err(PathError::NotAPath);
        }
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let path = path.split_once('#').map_or(path, |(before, _)| before);
        let decoded: Vec<u8> = percent_decode_str(path).collect();
        if decoded.contains(&0) {
            return Err(PathError::Nul);
        }
        let mut segments: Vec<Vec<u8>> = Vec::new();
        for segment in decoded.split(|&b| b == b'/') {
            match segment {
                b"" | b"." => {}
                b".." => {
                    segments.pop().ok_or(PathError::Escapes)?;
                }
                hidden if hidden.starts_with(b".") => return Err(PathError::Hidden),
                name => segments.push(name.to_vec()),
            }
        }
        let trailing_slash =
            decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
        let download = query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some("download"))
        });
        Ok(RequestPath {
            segments,
            trailing_slash,
            download,
        })
    }

    /// The path relative to ROOT, for joining onto it.
    pub fn relative(&self) -> PathBuf {
        self.segments
            .iter()
            .map(|segment| OsStr::from_bytes(segment))
            .collect()
    }

    /// The canonical URL path, re-encoded: `/a%20b/c`, with `/` appended when
    /// `slash` is set. Built from the segments, never echoed from the client, so
    /// a redirect can never point off-site (`//evil.example/`).
    pub fn url(&self, slash: bool) -> String {
        let mut url = String::from("/");
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                url.push('/');
            }
            url.extend(encode_segment(segment));
        }
        if slash && !self.segments.is_empty() {
            url.push('/');
        }
        url
    }

    /// The last segment, the name a download is saved under.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.segments.last().map(Vec::as_slice)
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
            .segments
            .iter()
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
    fn url_is_canonical_and_encoded() {
        let path = RequestPath::parse("//evil.example/a%20b#x").unwrap();
        assert_eq!(path.url(true), "/evil.example/a%20b/");
        let odd = RequestPath::parse("/%5Bx%5D%2C%3F%25").unwrap();
        assert_eq!(odd.url(false), "/%5Bx%5D%2C%3F%25");
        assert_eq!(RequestPath::parse("/").unwrap().url(true), "/");
    }

    #[test]
    fn rfc8187() {
        assert_eq!(encode_rfc8187("naïve file.txt"), "na%C3%AFve%20file.txt");
    }
}
