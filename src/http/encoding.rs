//! Choosing a precompressed sibling (`file.br`, `file.gz`) by the request's
//! `Accept-Encoding` (RFC 9110 §12.5.3), and which files may have one — no
//! file is looked at here.
//!
//! rill never compresses on the fly: it sends what is on disk, so a coding is
//! only ever chosen among the siblings that exist, and the answer is never
//! 406. When nothing acceptable is available the file itself goes out,
//! whatever `identity;q=0` says: since RFC 7231 the recommended answer when
//! no available coding is acceptable is one without a coding rather than a
//! 406 (RFC 9110 §12.5.3; the editors on why, httpwg/http-core#980), and it
//! is what servers do in practice.

/// A content coding rill can serve from a precompressed sibling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Brotli,
    Gzip,
}

impl Coding {
    /// The coding's name in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// What the sibling's name adds to the file's: `a.js` → `a.js.br`.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// Rank among codings the client likes equally: brotli first, since it
    /// is the smaller of the two for the same text.
    fn preference(self) -> u8 {
        match self {
            Coding::Brotli => 1,
            Coding::Gzip => 0,
        }
    }
}

/// A quality value in thousandths, 0 ("not acceptable") to 1000.
type Quality = u16;

/// What one `Accept-Encoding` says about the codings that matter here: the
/// explicit weight of each, and of `*`. A coding listed twice keeps its
/// lowest weight, so a `q=0` anywhere forbids it.
#[derive(Debug, Default)]
struct Weights {
    brotli: Option<Quality>,
    gzip: Option<Quality>,
    identity: Option<Quality>,
    any: Option<Quality>,
}

impl Weights {
    fn parse(header: &str) -> Weights {
        let mut weights = Weights::default();
        for element in header.split(',') {
            let Some((name, q)) = parse_element(element) else {
                continue;
            };
            let slot = if name.eq_ignore_ascii_case("br") {
                &mut weights.brotli
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                // x-gzip: RFC 9110 §8.4.1.3 says to treat it as gzip.
                &mut weights.gzip
            } else if name.eq_ignore_ascii_case("identity") {
                &mut weights.identity
            } else if name == "*" {
                &mut weights.any
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |seen| seen.min(q)));
        }
        weights
    }

    /// A coding's weight: its own if listed, else that of `*` (which "matches
    /// any available content coding not explicitly listed"), else 0.
    fn of(&self, coding: Coding) -> Quality {
        let explicit = match coding {
            Coding::Brotli => self.brotli,
            Coding::Gzip => self.gzip,
        };
        explicit.or(self.any).unwrap_or(0)
    }
}

/// Which of the `available` precompressed codings to send, by the client's
/// weights: the highest non-zero `q` wins, br before gzip on a tie; `q=0`
/// forbids a coding; `*` stands for codings not listed; `x-gzip` is gzip.
///
/// `None` means the file itself (identity). That is the answer without an
/// `Accept-Encoding` — RFC 9110 would allow any coding then, but a client
/// that says nothing (curl without `--compressed`, scripts) wants the bytes
/// as they are — and with an empty one. Identity competes only when listed
/// with a weight: `gzip;q=0.5, identity` prefers the file itself, while a bare
/// `gzip;q=0.5` still gets gzip, since identity's default acceptability is a
/// fallback rather than a preference. If identity is refused (`identity;q=0`,
/// or `*;q=0` without identity) and no coding is acceptable, this still
/// answers `None`: rill has nothing else to send, and does not answer 406.
/// Malformed elements are skipped.
pub fn choose(accept_encoding: Option<&str>, available: &[Coding]) -> Option<Coding> {
    let weights = Weights::parse(accept_encoding?);
    let (coding, q) = available
        .iter()
        .map(|&coding| (coding, weights.of(coding)))
        .filter(|&(_, q)| q > 0)
        .max_by_key(|&(coding, q)| (q, coding.preference()))?;
    // On a tie with identity the smaller coded bytes win.
    match weights.identity {
        Some(identity) if identity > q => None,
        _ => Some(coding),
    }
}

/// One list element, `coding [ OWS ";" OWS "q=" qvalue ]`: its name and
/// weight (1 when absent), or `None` for an empty or malformed element.
/// Parameters other than `q` are not defined for `Accept-Encoding`; they are
/// passed over rather than spoil the element.
fn parse_element(element: &str) -> Option<(&str, Quality)> {
    let mut pieces = element.split(';');
    let name = ows_trim(pieces.next()?);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return None;
    }
    let mut q = 1000;
    for parameter in pieces {
        if ows_trim(parameter).is_empty() {
            continue; // `gzip;` — nothing there
        }
        let (key, value) = parameter.split_once('=')?;
        if ows_trim(key).eq_ignore_ascii_case("q") {
            q = parse_qvalue(ows_trim(value))?;
        }
    }
    Some((name, q))
}

/// Parses a weight's value (RFC 9110 §12.4.2): `0`, `0.`, up to three
/// decimals, or `1` with up to three zeros, into thousandths. Anything else
/// — `1.5`, `.5`, `0.0001`, `-1`, spaces inside — is `None`.
pub fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether a file of this `Content-Type` may be answered from a precompressed
/// sibling — with a `Content-Encoding`, and ranges over the coded bytes.
///
/// Only text-like types qualify: they shrink well, and nothing seeks in them
/// by byte offset of the original. Media never does: a player seeking with
/// ranges needs offsets into the real file, and a `Content-Encoding` on its
/// 206 breaks it (actix-web#2815); images, audio, video, fonts in woff/woff2,
/// archives and PDFs are compressed already (and PDF viewers seek too). The
/// list:
/// - `text/*`;
/// - `application/javascript`, `ecmascript`, `x-javascript`, `json`, `xml`,
///   `wasm`, `x-sh`, `toml`, `yaml`, `sql`, `graphql`,
///   `vnd.ms-fontobject` (eot);
/// - any `+json` or `+xml` type (`manifest+json`, `ld+json`, `atom+xml`,
///   `rss+xml`, `xhtml+xml`, and `image/svg+xml`, the one image type);
/// - `font/ttf`, `font/otf`, `font/collection` (uncompressed outlines).
pub fn is_compressible(content_type: &str) -> bool {
    let essence = ows_trim(content_type.split(';').next().unwrap_or(""));
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    // Compared without lower-casing copies: this runs for every file
    // answer, and the answer to a cached file allocates nothing.
    let is = |text: &str, name: &str| text.eq_ignore_ascii_case(name);
    let ends = |text: &str, suffix: &str| {
        text.len() >= suffix.len()
            && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    if is(top, "text") {
        return !sub.is_empty();
    }
    if ends(sub, "+json") || ends(sub, "+xml") {
        return is(top, "application") || (is(top, "image") && is(sub, "svg+xml"));
    }
    if is(top, "application") {
        [
            "javascript",
            "ecmascript",
            "x-javascript",
            "json",
            "xml",
            "wasm",
            "x-sh",
            "toml",
            "yaml",
            "x-yaml",
            "sql",
            "graphql",
            "vnd.ms-fontobject",
        ]
        .iter()
        .any(|name| is(sub, name))
    } else if is(top, "font") {
        ["ttf", "otf", "collection"]
            .iter()
            .any(|name| is(sub, name))
    } else {
        false
    }
}

/// Strips optional whitespace (RFC 9110 §5.6.3: spaces and tabs).
fn ows_trim(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// A token character (RFC 9110 §5.6.2), `*` among them.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Coding::{Brotli, Gzip};

    const BOTH: &[Coding] = &[Gzip, Brotli];

    fn pick(header: &str) -> Option<Coding> {
        choose(Some(header), BOTH)
    }

    #[test]
    fn tokens_and_suffixes() {
        assert_eq!((Brotli.token(), Brotli.suffix()), ("br", ".br"));
        assert_eq!((Gzip.token(), Gzip.suffix()), ("gzip", ".gz"));
    }

    #[test]
    fn qvalues() {
        for (text, q) in [
            ("0", 0),
            ("0.", 0),
            ("0.5", 500),
            ("0.05", 50),
            ("0.001", 1),
            ("0.999", 999),
            ("1", 1000),
            ("1.", 1000),
            ("1.000", 1000),
        ] {
            assert_eq!(parse_qvalue(text), Some(q), "{text}");
        }
        for text in [
            "", "1.001", "1.5", "2", ".5", "0.0001", "-1", "0,5", "0. 5", "01", "0x1", "1e0", "½",
            "0.٣",
        ] {
            assert_eq!(parse_qvalue(text), None, "{text}");
        }
    }

    #[test]
    fn browsers_and_curl() {
        // Chrome, Firefox, Edge.
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Brotli));
        // Safari.
        assert_eq!(pick("gzip, deflate, br"), Some(Brotli));
        // curl --compressed (7.88, with brotli and zstd built in).
        assert_eq!(pick("deflate, gzip, br, zstd"), Some(Brotli));
        // curl --compressed built with zlib alone, and older clients.
        assert_eq!(pick("deflate, gzip"), Some(Gzip));
        assert_eq!(pick("gzip"), Some(Gzip));
        // Only what exists can be chosen.
        assert_eq!(choose(Some("gzip, br"), &[Gzip]), Some(Gzip));
        assert_eq!(choose(Some("br"), &[Gzip]), None);
        assert_eq!(choose(Some("gzip, br"), &[]), None);
    }

    #[test]
    fn rfc_9110_examples() {
        // §12.5.3's examples, one by one.
        assert_eq!(pick("compress, gzip"), Some(Gzip));
        assert_eq!(pick(""), None);
        assert_eq!(pick("*"), Some(Brotli));
        assert_eq!(pick("compress;q=0.5, gzip;q=1.0"), Some(Gzip));
        assert_eq!(pick("gzip;q=1.0, identity; q=0.5, *;q=0"), Some(Gzip));
    }

    #[test]
    fn weights_decide() {
        assert_eq!(pick("br;q=0.5, gzip"), Some(Gzip));
        assert_eq!(pick("br;q=0.5, gzip;q=0.5"), Some(Brotli));
        assert_eq!(pick("br;q=0, gzip"), Some(Gzip));
        assert_eq!(pick("br;q=0"), None);
        assert_eq!(pick("br;q=0, gzip;q=0"), None);
        // `*` covers what is not listed, and nothing that is.
        assert_eq!(pick("*;q=0.1, gzip"), Some(Gzip));
        assert_eq!(pick("*;q=0.1, gzip;q=0"), Some(Brotli));
        assert_eq!(pick("*;q=0, gzip"), Some(Gzip));
        assert_eq!(pick("*;q=0"), None);
        // x-gzip is gzip.
        assert_eq!(pick("x-gzip"), Some(Gzip));
        assert_eq!(pick("x-gzip;q=0, *"), Some(Brotli));
        // Listed twice: the lower weight holds.
        assert_eq!(pick("br, br;q=0, gzip;q=0.1"), Some(Gzip));
    }

    #[test]
    fn identity() {
        // Listed with a higher weight, the file itself is preferred.
        assert_eq!(pick("gzip;q=0.5, identity"), None);
        assert_eq!(pick("identity;q=0.8, br;q=0.9"), Some(Brotli));
        // On a tie the coded bytes, being smaller, win.
        assert_eq!(pick("gzip, identity"), Some(Gzip));
        // Not listed, it does not compete.
        assert_eq!(pick("gzip;q=0.5"), Some(Gzip));
        // Refused identity with nothing acceptable: still the file, not 406.
        assert_eq!(pick("identity;q=0"), None);
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("identity;q=0, gzip"), Some(Gzip));
        // No header at all: the bytes as they are.
        assert_eq!(choose(None, BOTH), None);
    }

    #[test]
    fn case_whitespace_and_junk() {
        assert_eq!(pick("GZIP"), Some(Gzip));
        assert_eq!(pick("Br;Q=1, gzip;q=0.9"), Some(Brotli));
        assert_eq!(pick(" \tgzip ; q=0.3 ,\tbr ; q = 0.2 "), Some(Gzip));
        assert_eq!(pick(",,, gzip,,"), Some(Gzip));
        // Malformed elements are skipped, the rest still count.
        assert_eq!(pick("br;q=2, gzip"), Some(Gzip));
        assert_eq!(pick("br;q=, gzip;q=0.1"), Some(Gzip));
        assert_eq!(pick("br;q, gzip;q=0.1"), Some(Gzip));
        assert_eq!(pick("b r, gzip;q=0.1"), Some(Gzip));
        assert_eq!(pick("\"br\", gzip;q=0.1"), Some(Gzip));
        assert_eq!(pick(";q=1, gzip;q=0.1"), Some(Gzip));
        assert_eq!(pick("brotli, gz"), None);
        // An unknown parameter, or an empty one, is passed over.
        assert_eq!(pick("br;level=5"), Some(Brotli));
        assert_eq!(pick("gzip;"), Some(Gzip));
    }

    #[test]
    fn compressible_types() {
        for ty in [
            "text/html; charset=utf-8",
            "text/css; charset=utf-8",
            "text/javascript; charset=utf-8",
            "text/plain",
            "TEXT/CSV",
            "application/javascript",
            "application/json",
            "application/xml",
            "application/manifest+json",
            "application/ld+json",
            "application/atom+xml",
            "application/xhtml+xml",
            "image/svg+xml",
            "application/wasm",
            "font/ttf",
            "font/otf",
            " application/json ; charset=utf-8",
        ] {
            assert!(is_compressible(ty), "{ty}");
        }
        for ty in [
            "video/mp4",
            "video/webm",
            "audio/mpeg",
            "audio/ogg",
            "image/png",
            "image/jpeg",
            "image/webp",
            "image/x+xml+png",
            "font/woff",
            "font/woff2",
            "application/zip",
            "application/gzip",
            "application/pdf",
            "application/octet-stream",
            "text/",
            "text",
            "",
            "multipart/byteranges; boundary=x",
            "video/vnd.foo+xml",
        ] {
            assert!(!is_compressible(ty), "{ty}");
        }
    }

    fn weight_of(header: &str, coding: Coding) -> Quality {
        Weights::parse(header).of(coding)
    }

    proptest! {
        #[test]
        fn choose_never_returns_what_was_not_offered_or_was_refused(
            elements in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("br"), Just("gzip"), Just("x-gzip"), Just("identity"),
                        Just("*"), Just("deflate"), Just("zstd"), Just("GZip"), Just("b r"),
                    ],
                    proptest::option::of(prop_oneof![
                        Just("0"), Just("0.0"), Just("0.001"), Just("0.5"), Just("1"),
                        Just("1.000"), Just("2"), Just(""), Just("0.5x"),
                    ]),
                ),
                0..8,
            ),
            offer in proptest::sample::subsequence(vec![Brotli, Gzip], 0..=2),
            junk in "\\PC{0,12}",
        ) {
            let mut header: Vec<String> = elements
                .iter()
                .map(|(name, q)| match q {
                    Some(q) => format!("{name};q={q}"),
                    None => (*name).to_owned(),
                })
                .collect();
            header.push(junk);
            let header = header.join(", ");
            if let Some(coding) = choose(Some(&header), &offer) {
                prop_assert!(offer.contains(&coding));
                prop_assert!(weight_of(&header, coding) > 0);
                // And no other offered coding was liked more.
                for &other in &offer {
                    prop_assert!(weight_of(&header, other) <= weight_of(&header, coding));
                }
            }
        }

        #[test]
        fn choose_never_panics(header in "\\PC{0,80}") {
            let _ = choose(Some(&header), BOTH);
            let _ = is_compressible(&header);
        }
    }
}
