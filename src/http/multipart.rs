//! Parsing `multipart/form-data` bodies (RFC 7578, RFC 2046 §5.1) as they
//! arrive, without buffering a part.
//!
//! [`MultipartParser::next`] looks at the bytes the caller holds and returns one
//! [`Event`] plus how many of those bytes it used. The caller drops the used
//! bytes, keeps the rest, appends what arrives next, and calls again: that is
//! how a boundary split across two reads at any offset is still found. Only a
//! delimiter's length of bytes (plus a part's header block) is ever held back,
//! so memory stays bounded whatever the size of a part. Delimiters are found
//! with memchr's `memmem`, so each byte is looked at about once.

use memchr::memmem;

/// Largest header block of one part.
pub const MAX_PART_HEADERS: usize = 8 * 1024;
/// Longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// Why a multipart body cannot be parsed. The answer is 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartError(pub &'static str);

/// What a part's headers said about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartInfo {
    /// The form field's name.
    pub name: Option<String>,
    /// The file name, for a file part (`filename*` preferred over `filename`).
    pub filename: Option<String>,
}

/// One step of parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Nothing more can be said until more bytes arrive (or, after
    /// [`Event::End`], the epilogue was skipped).
    NeedMore,
    /// A part begins; its data follows.
    PartStart(PartInfo),
    /// Some of the current part's content.
    Data(&'a [u8]),
    /// The current part's content is complete.
    PartEnd,
    /// The closing delimiter: the form is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter; `at_start` while no byte has been skipped.
    Preamble { at_start: bool },
    /// Just after a delimiter: `--` (the end) or CRLF (a part) follows.
    AfterDelimiter,
    /// Reading a part's header block.
    Headers,
    /// Passing a part's content through.
    Data,
    /// After the closing delimiter; everything left is ignored.
    Epilogue,
}

/// A streaming multipart/form-data parser for one body.
pub struct MultipartParser {
    /// `\r\n--` followed by the boundary.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    state: State,
}

impl MultipartParser {
    /// A parser for the given boundary (from the `Content-Type`).
    pub fn new(boundary: &str) -> Result<MultipartParser, MultipartError> {
        if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
            return Err(MultipartError("boundary must be 1 to 70 characters"));
        }
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        let finder = memmem::Finder::new(&delimiter).into_owned();
        Ok(MultipartParser {
            delimiter,
            finder,
            state: State::Preamble { at_start: true },
        })
    }

    /// Whether the closing delimiter has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Epilogue
    }

    /// Parses from the start of `input`: returns the bytes used and the event.
    pub fn next<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Event<'a>), MultipartError> {
        match self.state {
            State::Preamble { at_start } => Ok(self.preamble(input, at_start)),
            State::AfterDelimiter => self.after_delimiter(input),
            State::Headers => self.headers(input),
            State::Data => Ok(self.data(input)),
            State::Epilogue => Ok((input.len(), Event::NeedMore)),
        }
    }

    fn preamble<'a>(&mut self, input: &'a [u8], at_start: bool) -> (usize, Event<'a>) {
        // The first delimiter may open the body without the CRLF before it.
        let dash_boundary = &self.delimiter[2..];
        if at_start {
            if input.len() < dash_boundary.len() && dash_boundary.starts_with(input) {
                return (0, Event::NeedMore);
            }
            if input.starts_with(dash_boundary) {
                self.state = State::AfterDelimiter;
                return (dash_boundary.len(), Event::NeedMore);
            }
        }
        match self.finder.find(input) {
            Some(at) => {
                self.state = State::AfterDelimiter;
                (at + self.delimiter.len(), Event::NeedMore)
            }
            None => {
                let keep = self.delimiter.len() - 1;
                let skip = input.len().saturating_sub(keep);
                if skip > 0 {
                    self.state = State::Preamble { at_start: false };
                }
                (skip, Event::NeedMore)
            }
        }
    }

    fn after_delimiter<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Event<'a>), MultipartError> {
        if input.len() < 2 {
            return Ok((0, Event::NeedMore));
        }
        if input.starts_with(b"--") {
            self.state = State::Epilogue;
            return Ok((2, Event::End));
        }
        // Transport padding (spaces, tabs) may precede the CRLF.
        let padding = input
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if padding > 256 {
            return Err(MultipartError("garbage after boundary"));
        }
        match input.get(padding..padding + 2) {
            None => Ok((0, Event::NeedMore)),
            Some(b"\r\n") => {
                self.state = State::Headers;
                Ok((padding + 2, Event::NeedMore))
            }
            Some(_) => Err(MultipartError("garbage after boundary")),
        }
    }

    fn headers<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Event<'a>), MultipartError> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        match httparse::parse_headers(input, &mut headers) {
            Ok(httparse::Status::Complete((length, headers))) => {
                let mut info = PartInfo::default();
                for header in headers {
                    if header.name.eq_ignore_ascii_case("content-disposition") {
                        let value = String::from_utf8_lossy(header.value);
                        info = disposition(&value);
                    }
                }
                self.state = State::Data;
                Ok((length, Event::PartStart(info)))
            }
            Ok(httparse::Status::Partial) if input.len() > MAX_PART_HEADERS => {
                Err(MultipartError("part headers too large"))
            }
            Ok(httparse::Status::Partial) => Ok((0, Event::NeedMore)),
            Err(_) => Err(MultipartError("malformed part headers")),
        }
    }

    fn data<'a>(&mut self, input: &'a [u8]) -> (usize, Event<'a>) {
        match self.finder.find(input) {
            Some(0) => {
                self.state = State::AfterDelimiter;
                (self.delimiter.len(), Event::PartEnd)
            }
            Some(at) => (at, Event::Data(&input[..at])),
            None => {
                // Only a CR in the last delimiter-length bytes can start a
                // delimiter that the next read completes; hold from there.
                let window = input.len().saturating_sub(self.delimiter.len() - 1);
                let safe = input[window..]
                    .iter()
                    .position(|&b| b == b'\r')
                    .map_or(input.len(), |cr| window + cr);
                if safe == 0 {
                    (0, Event::NeedMore)
                } else {
                    (safe, Event::Data(&input[..safe]))
                }
            }
        }
    }
}

/// `form-data; name="field"; filename="a.txt"` (or `filename*=UTF-8''...`).
fn disposition(value: &str) -> PartInfo {
    let mut info = PartInfo::default();
    let mut extended_name = None;
    for (name, value) in parse_params(value) {
        match name.as_str() {
            "name" => info.name = Some(value),
            "filename" => info.filename = Some(value),
            "filename*" => extended_name = decode_rfc2231(&value),
            _ => {}
        }
    }
    if extended_name.is_some() {
        info.filename = extended_name;
    }
    info
}

/// The `boundary` of a `multipart/form-data` content type, or `None` when the
/// type is something else or has no usable boundary.
pub fn form_data_boundary(content_type: &str) -> Option<String> {
    let (media_type, _) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !media_type
        .trim()
        .eq_ignore_ascii_case("multipart/form-data")
    {
        return None;
    }
    let mut boundary = None;
    for (name, value) in parse_params(content_type) {
        match name.as_str() {
            "boundary" if boundary.is_none() => boundary = Some(value),
            "boundary*" => boundary = decode_rfc2231(&value),
            _ => {}
        }
    }
    boundary.filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
}

/// Splits `type; a=1; b="x;y"` into lower-cased names and unquoted values.
/// Within quotes only `\"` and `\\` are escapes: browsers send Windows paths
/// with bare backslashes, which must survive.
pub fn parse_params(value: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = match value.find(';') {
        Some(at) => &value[at + 1..],
        None => return params,
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return params;
        }
        let Some(eq) = rest.find('=') else {
            return params;
        };
        let name = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let mut parsed = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices().peekable();
            let mut end = quoted.len();
            while let Some((at, c)) = chars.next() {
                match c {
                    '"' => {
                        end = at + 1;
                        break;
                    }
                    '\\' if matches!(chars.peek(), Some((_, '"' | '\\'))) => {
                        if let Some((_, escaped)) = chars.next() {
                            parsed.push(escaped);
                        }
                    }
                    c => parsed.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            parsed.push_str(rest[..end].trim());
            rest = &rest[end..];
        }
        params.push((name, parsed));
    }
}

/// `UTF-8''na%C3%AFve.txt` -> `naïve.txt` (RFC 2231 / RFC 8187).
fn decode_rfc2231(value: &str) -> Option<String> {
    let mut pieces = value.splitn(3, '\'');
    let (_charset, _language, encoded) = (pieces.next()?, pieces.next()?, pieces.next()?);
    Some(
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// One part as collected by [`parse_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub info: PartInfo,
    pub content: Vec<u8>,
}

/// Parses a whole body fed in the given slice sizes: for tests and fuzzing.
/// Returns the parts and whether the closing delimiter was seen.
pub fn parse_all(
    boundary: &str,
    body: &[u8],
    feed_sizes: &[usize],
) -> Result<(Vec<Part>, bool), MultipartError> {
    let mut parser = MultipartParser::new(boundary)?;
    let mut parts: Vec<Part> = Vec::new();
    let mut held: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut sizes = feed_sizes.iter().copied().cycle();
    loop {
        let (used, event) = parser.next(&held)?;
        let progressed = used > 0 || event != Event::NeedMore;
        match event {
            Event::PartStart(info) => parts.push(Part {
                info,
                content: Vec::new(),
            }),
            Event::Data(data) => match parts.last_mut() {
                Some(part) => part.content.extend_from_slice(data),
                None => return Err(MultipartError("data outside a part")),
            },
            Event::End => break,
            Event::PartEnd | Event::NeedMore => {}
        }
        held.drain(..used);
        if !progressed {
            if fed == body.len() {
                break;
            }
            let step = sizes
                .next()
                .unwrap_or(body.len())
                .max(1)
                .min(body.len() - fed);
            held.extend_from_slice(&body[fed..fed + step]);
            fed += step;
        }
    }
    Ok((parts, parser.is_done()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BROWSER_BODY: &[u8] = b"preamble to ignore\r\n\
------WebKitFormBoundaryAbC\r\n\
Content-Disposition: form-data; name=\"note\"\r\n\
\r\n\
hello\r\n\
------WebKitFormBoundaryAbC\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"a b.txt\"\r\n\
Content-Type: text/plain\r\n\
\r\n\
line one\r\n--not-a-boundary\r\n\r\n------WebKitFormBoundaryAb\r\nend\r\n\
------WebKitFormBoundaryAbC\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"\"\r\n\
\r\n\
\r\n\
------WebKitFormBoundaryAbC--\r\n\
epilogue\r\n";

    fn check_browser_body(parts: &[Part]) {
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].info.name.as_deref(), Some("note"));
        assert_eq!(parts[0].info.filename, None);
        assert_eq!(parts[0].content, b"hello");
        assert_eq!(parts[1].info.filename.as_deref(), Some("a b.txt"));
        assert_eq!(
            parts[1].content,
            b"line one\r\n--not-a-boundary\r\n\r\n------WebKitFormBoundaryAb\r\nend"
        );
        assert_eq!(parts[2].info.filename.as_deref(), Some(""));
        assert_eq!(parts[2].content, b"");
    }

    #[test]
    fn parses_a_browser_form_in_any_feed_size() {
        for size in [1, 2, 3, 5, 7, 16, 41, 1000] {
            let (parts, done) =
                parse_all("----WebKitFormBoundaryAbC", BROWSER_BODY, &[size]).unwrap();
            assert!(done, "feed size {size}");
            check_browser_body(&parts);
        }
    }

    #[test]
    fn body_may_start_with_the_delimiter() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--xyz--";
        let (parts, done) = parse_all("xyz", body, &[100]).unwrap();
        assert!(done);
        assert_eq!(parts[0].content, b"1");
        assert_eq!(parts[0].info.name.as_deref(), Some("a"));
    }

    #[test]
    fn truncated_body_is_not_done() {
        let cut = &BROWSER_BODY[..BROWSER_BODY.len() - 40];
        let (_, done) = parse_all("----WebKitFormBoundaryAbC", cut, &[64]).unwrap();
        assert!(!done);
    }

    #[test]
    fn rejects_garbage_after_a_boundary_and_huge_headers() {
        let body = b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--bjunk\r\n";
        assert!(parse_all("b", body, &[100]).is_err());
        let mut huge = b"--b\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_PART_HEADERS + 10));
        assert!(parse_all("b", &huge, &[1000]).is_err());
        assert!(MultipartParser::new("").is_err());
        assert!(MultipartParser::new(&"x".repeat(71)).is_err());
    }

    #[test]
    fn boundaries_from_content_type() {
        assert_eq!(
            form_data_boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            form_data_boundary("Multipart/Form-Data;boundary=\"a b;c\"").as_deref(),
            Some("a b;c")
        );
        assert_eq!(
            form_data_boundary("multipart/form-data; charset=utf-8; boundary*=utf-8''x%20y")
                .as_deref(),
            Some("x y")
        );
        assert_eq!(form_data_boundary("multipart/form-data"), None);
        assert_eq!(form_data_boundary("text/plain; boundary=abc"), None);
        assert_eq!(form_data_boundary("multipart/mixed; boundary=abc"), None);
    }

    #[test]
    fn filename_forms() {
        let cases = [
            ("form-data; name=f; filename=plain.txt", "plain.txt"),
            (
                "form-data; name=\"f\"; filename=\"q \\\"x\\\".txt\"",
                "q \"x\".txt",
            ),
            (
                "form-data; name=f; filename=\"C:\\Users\\me\\a.txt\"",
                "C:\\Users\\me\\a.txt",
            ),
            (
                "form-data; name=f; filename=\"fallback.txt\"; filename*=UTF-8''na%C3%AFve.txt",
                "naïve.txt",
            ),
            (
                "form-data; name=f; filename*=utf-8'en'%E2%82%AC.txt",
                "€.txt",
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(
                disposition(header).filename.as_deref(),
                Some(expected),
                "{header}"
            );
        }
    }

    fn build_body(boundary: &str, contents: &[Vec<u8>]) -> Vec<u8> {
        let mut body = b"some preamble\r\n".to_vec();
        for (i, content) in contents.iter().enumerate() {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"f{i}\"; filename=\"f{i}.bin\"\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\nepilogue").as_bytes());
        body
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_parts(
            contents in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b'X')],
                    0..400,
                ),
                1..4,
            ),
            sizes in proptest::collection::vec(1usize..50, 1..30),
        ) {
            let boundary = "XbX-boundary";
            let body = build_body(boundary, &contents);
            // Skip the rare content that contains the delimiter itself.
            prop_assume!(!contents.iter().any(|c| {
                let mut probe = b"\r\n".to_vec();
                probe.extend_from_slice(c);
                probe.windows(boundary.len() + 4).any(|w| w == format!("\r\n--{boundary}").as_bytes())
            }));
            let (parts, done) = parse_all(boundary, &body, &sizes).unwrap();
            prop_assert!(done);
            prop_assert_eq!(parts.len(), contents.len());
            for (part, content) in parts.iter().zip(&contents) {
                prop_assert_eq!(&part.content, content);
            }
            // One byte at a time gives the same parts.
            let (single, _) = parse_all(boundary, &body, &[1]).unwrap();
            prop_assert_eq!(single, parts);
        }

        #[test]
        fn arbitrary_bytes_parse_the_same_in_any_feed_size(
            body in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b'b')],
                0..500,
            ),
            size in 1usize..64,
        ) {
            // Valid or not, the verdict and the parts never depend on how the
            // body was split into reads.
            let whole = parse_all("b", &body, &[body.len().max(1)]);
            let split = parse_all("b", &body, &[size]);
            prop_assert_eq!(whole, split);
        }
    }
}
