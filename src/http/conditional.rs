//! Deciding what a GET or HEAD of a file answers, and whether a PUT may
//! write one, from the file's validators and the request's `Range` and
//! conditional headers — no file is opened here.
//!
//! The order follows RFC 9110 §13.2.2: `If-Match` (or, without it,
//! `If-Unmodified-Since`) may fail the request with 412; then `If-None-Match`
//! (or, without it, `If-Modified-Since`) may turn the answer into 304; then
//! `If-Range` decides whether `Range` is looked at; then `Range` picks 206,
//! 416 or the whole file. A 412 comes before everything after it, a `Range`
//! included: the client asked for nothing unless its copy is current.
//!
//! A write ([`WriteConditions`]) takes the same first steps against the file
//! as it is (or its absence), with a matching `If-None-Match` a 412 too,
//! since a PUT has no 304 to answer with.
//!
//! Every form of `Range` is understood (see [`super::ranges`]): one range is
//! a plain 206, several are one 206 `multipart/byteranges` after overlapping
//! and nearly touching ranges are merged, and a request that looks like an
//! attack (too many ranges, or overlaps asking for more than the file) gets
//! the whole file (200), which RFC 9110 §14.2 allows.

use super::ranges::{self, ByteRange, Resolved};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the server knows about a file's version, for conditional requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quotes included, e.g. `"1a2b-5f3e9c-400"`.
    pub etag: String,
    /// Last modification, in whole seconds since the epoch (HTTP dates have no
    /// finer resolution, so comparisons are made at this one).
    pub modified_secs: u64,
}

impl Validators {
    /// Builds the validators from what `stat` says: inode, modification time
    /// (seconds and nanoseconds) and size. A file replaced by rename gets a new
    /// inode, and a file rewritten in place a new mtime, so either changes the tag.
    pub fn new(inode: u64, modified: SystemTime, size: u64) -> Validators {
        let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        Validators {
            etag: format!(
                "\"{:x}-{:x}{:08x}-{:x}\"",
                inode,
                since.as_secs(),
                since.subsec_nanos(),
                size
            ),
            modified_secs: since.as_secs(),
        }
    }

    /// The `Last-Modified` value.
    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(self.modified_secs))
    }
}

/// The request headers that bear on the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Preconditions<'a> {
    pub range: Option<&'a str>,
    pub if_match: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// Which precondition failed, for the 412's one-line body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreconditionFailed(pub &'static str);

/// The answer for a file of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAnswer {
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 206 `multipart/byteranges` with these parts: two or more, sorted,
    /// disjoint and at least [`ranges::COALESCE_GAP`] bytes apart.
    Multipart(Box<[ByteRange]>),
    /// 304: the client's copy is current.
    NotModified,
    /// 412: `If-Match` or `If-Unmodified-Since` is false.
    PreconditionFailed(PreconditionFailed),
    /// 416: no range asked for overlaps the file.
    Unsatisfiable,
}

/// Decides the answer to a GET or HEAD of a file, made at `now` (the
/// answer's `Date`).
pub fn decide(
    pre: &Preconditions,
    validators: &Validators,
    size: u64,
    now: SystemTime,
) -> FileAnswer {
    if let Err(failed) = unchanged(pre.if_match, pre.if_unmodified_since, Some(validators)) {
        return FileAnswer::PreconditionFailed(failed);
    }
    if let Some(tags) = pre.if_none_match {
        if etag_list_matches(tags, &validators.etag, Comparison::Weak) {
            return FileAnswer::NotModified;
        }
    } else if let Some(since) = pre.if_modified_since.and_then(parse_date_secs) {
        if validators.modified_secs <= since {
            return FileAnswer::NotModified;
        }
    }
    let Some(range) = pre.range else {
        return FileAnswer::Full;
    };
    if let Some(condition) = pre.if_range {
        if !if_range_holds(condition, validators, now) {
            return FileAnswer::Full;
        }
    }
    match ranges::resolve(range, size) {
        Resolved::Ignored => FileAnswer::Full,
        Resolved::Unsatisfiable => FileAnswer::Unsatisfiable,
        Resolved::Single(ByteRange { start, end }) => FileAnswer::Partial { start, end },
        Resolved::Multiple(parts) => FileAnswer::Multipart(parts),
    }
}

/// The conditional headers of a write (a PUT), owned: they are looked at
/// when the head arrives and again just before the upload commits, when
/// the head's bytes are long gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteConditions {
    pub if_match: Option<Box<str>>,
    pub if_unmodified_since: Option<Box<str>>,
    pub if_none_match: Option<Box<str>>,
}

impl WriteConditions {
    /// Whether the write may go ahead, given the file at the target as it
    /// is now (`None`: there is none). RFC 9110 §13.2.2 steps 1-3: `If-Match`
    /// (or `If-Unmodified-Since`), then `If-None-Match`, which for a write
    /// fails when it matches (`*`: when there is a file at all) — "only if
    /// absent" — by weak comparison (§13.1.2).
    pub fn check(&self, current: Option<&Validators>) -> Result<(), PreconditionFailed> {
        unchanged(
            self.if_match.as_deref(),
            self.if_unmodified_since.as_deref(),
            current,
        )?;
        let matches = match (self.if_none_match.as_deref(), current) {
            (Some(tags), _) if tags.trim() == "*" => current.is_some(),
            (Some(tags), Some(current)) => etag_list_matches(tags, &current.etag, Comparison::Weak),
            _ => false,
        };
        if matches {
            return Err(PreconditionFailed("the file matches If-None-Match"));
        }
        Ok(())
    }

    /// No condition at all: nothing to check.
    pub fn is_empty(&self) -> bool {
        self == &WriteConditions::default()
    }

    /// The write asked for the file to be absent (`If-None-Match: *`).
    pub fn wants_absent(&self) -> bool {
        self.if_none_match
            .as_deref()
            .is_some_and(|tags| tags.trim() == "*")
    }
}

/// Steps 1 and 2 of RFC 9110 §13.2.2, shared by reads and writes: `If-Match`
/// holds when the file exists and, unless the list is `*`, one of its tags
/// equals ours by strong comparison (§13.1.1); without `If-Match`,
/// `If-Unmodified-Since` holds unless the file changed after that date
/// (§13.1.4), and is ignored when it is no date or there is no file (there
/// is then no modification date to compare).
fn unchanged(
    if_match: Option<&str>,
    if_unmodified_since: Option<&str>,
    current: Option<&Validators>,
) -> Result<(), PreconditionFailed> {
    if let Some(tags) = if_match {
        let holds = current.is_some_and(|current| {
            tags.trim() == "*" || etag_list_matches(tags, &current.etag, Comparison::Strong)
        });
        if holds {
            return Ok(());
        }
        return Err(PreconditionFailed("the file does not match If-Match"));
    }
    let since = if_unmodified_since.and_then(parse_date_secs);
    match (since, current) {
        (Some(since), Some(current)) if current.modified_secs > since => Err(PreconditionFailed(
            "the file changed after If-Unmodified-Since",
        )),
        _ => Ok(()),
    }
}

fn parse_date_secs(text: &str) -> Option<u64> {
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// `If-Range` holds when its strong entity tag equals ours, or its date equals
/// our `Last-Modified` exactly and is a strong validator (RFC 9110 §13.1.5).
///
/// A date inside the current second is refused: a file written twice
/// within one second has one `Last-Modified` for both versions, and a range
/// of the second joined to a copy of the first would be corrupt; the whole
/// file is sent instead, which is always right. This is a defence, not the
/// rule of §8.8.2.2 (which looks at the `Date` of the answer that gave the
/// client its copy, a time rill does not know here): a client that sent a
/// date it got within that date's second can still be answered a range.
/// The rule that guards it is the client's (§13.1.5: send a date only when
/// it is strong).
fn if_range_holds(condition: &str, validators: &Validators, now: SystemTime) -> bool {
    if condition.starts_with('"') {
        condition == validators.etag
    } else if condition.starts_with("W/") {
        false
    } else {
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        parse_date_secs(condition) == Some(validators.modified_secs)
            && validators.modified_secs < now_secs
    }
}

/// How two entity tags are compared (RFC 9110 §8.8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Equal opaque tags, and neither weak: `If-Match`.
    Strong,
    /// Equal opaque tags, weak or not: `If-None-Match`.
    Weak,
}

/// Whether an `If-Match` or `If-None-Match` list names our tag (`*` names
/// any). A malformed list names nothing: for `If-None-Match` the full answer
/// is then sent, for `If-Match` the request fails, both the side that never
/// serves or overwrites on a guess.
fn etag_list_matches(list: &str, ours: &str, comparison: Comparison) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let (ours_weak, ours) = match ours.strip_prefix("W/") {
        Some(opaque) => (true, opaque),
        None => (false, ours),
    };
    if comparison == Comparison::Strong && ours_weak {
        return false;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let (weak, tag_start) = match rest.strip_prefix("W/") {
            Some(opaque) => (true, opaque),
            None => (false, rest),
        };
        if !tag_start.starts_with('"') {
            return false;
        }
        let Some(close) = tag_start[1..].find('"') else {
            return false;
        };
        let tag = &tag_start[..close + 2];
        if tag == ours && !(weak && comparison == Comparison::Strong) {
            return true;
        }
        rest = &tag_start[close + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators() -> Validators {
        Validators {
            etag: "\"abc\"".to_owned(),
            modified_secs: 784111777, // Sun, 06 Nov 1994 08:49:37 GMT
        }
    }

    /// A time well after [`validators`]' modification: its date is strong.
    fn long_after() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784111777 + 3600)
    }

    fn range(header: &str, size: u64) -> FileAnswer {
        let pre = Preconditions {
            range: Some(header),
            ..Default::default()
        };
        decide(&pre, &validators(), size, long_after())
    }

    #[test]
    fn single_ranges() {
        use FileAnswer::*;
        assert_eq!(range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(range("bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(range("bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(range("bytes=-1000", 100), Partial { start: 0, end: 99 });
        assert_eq!(range("bytes=50-1000", 100), Partial { start: 50, end: 99 });
        assert_eq!(range("BYTES = 5-5", 100), Partial { start: 5, end: 5 });
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(range("bytes=100-", 100), FileAnswer::Unsatisfiable);
        assert_eq!(range("bytes=100-200", 100), FileAnswer::Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), FileAnswer::Unsatisfiable);
        assert_eq!(range("bytes=0-", 0), FileAnswer::Unsatisfiable);
        assert_eq!(range("bytes=-5", 0), FileAnswer::Unsatisfiable);
    }

    #[test]
    fn invalid_ranges_are_ignored() {
        for header in [
            "bytes=9-0",
            "bytes=a-b",
            "bytes=-",
            "bytes=",
            "bytes 0-9",
            "items=0-9",
            "bytes=0-9,20-9",
            "bytes=+1-2",
            "bytes=1--2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(range(header, 100), FileAnswer::Full, "{header}");
        }
    }

    #[test]
    fn several_ranges_are_multipart() {
        let parts = |list: &[(u64, u64)]| {
            let parts: Vec<ByteRange> = list
                .iter()
                .map(|&(start, end)| ByteRange { start, end })
                .collect();
            FileAnswer::Multipart(parts.into_boxed_slice())
        };
        assert_eq!(
            range("bytes=0-9,500-509", 1000),
            parts(&[(0, 9), (500, 509)])
        );
        assert_eq!(
            range("bytes=0-9,10-19", 1000),
            FileAnswer::Partial { start: 0, end: 19 }
        );
        assert_eq!(range("bytes=2000-,3000-", 1000), FileAnswer::Unsatisfiable);
        // The rules before Range still come first.
        let v = validators();
        let with = |if_none_match, if_range| Preconditions {
            range: Some("bytes=0-9,500-509"),
            if_none_match,
            if_range,
            ..Default::default()
        };
        assert_eq!(
            decide(&with(Some("\"abc\""), None), &v, 1000, long_after()),
            FileAnswer::NotModified
        );
        assert_eq!(
            decide(&with(None, Some("\"old\"")), &v, 1000, long_after()),
            FileAnswer::Full
        );
        assert_eq!(
            decide(&with(None, Some("\"abc\"")), &v, 1000, long_after()),
            parts(&[(0, 9), (500, 509)])
        );
    }

    #[test]
    fn if_none_match() {
        let v = validators();
        let with = |tags| Preconditions {
            if_none_match: Some(tags),
            ..Default::default()
        };
        for matching in [
            "\"abc\"",
            "W/\"abc\"",
            "\"x\", \"abc\"",
            "*",
            "\"a,b\",\"abc\"",
        ] {
            assert_eq!(
                decide(&with(matching), &v, 10, long_after()),
                FileAnswer::NotModified,
                "{matching}"
            );
        }
        for other in ["\"abd\"", "abc", "\"x\"", ""] {
            assert_eq!(
                decide(&with(other), &v, 10, long_after()),
                FileAnswer::Full,
                "{other}"
            );
        }
    }

    #[test]
    fn if_modified_since() {
        let v = validators();
        let with = |date| Preconditions {
            if_modified_since: Some(date),
            ..Default::default()
        };
        let same = "Sun, 06 Nov 1994 08:49:37 GMT";
        let later = "Sun, 06 Nov 1994 08:49:38 GMT";
        let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert_eq!(
            decide(&with(same), &v, 10, long_after()),
            FileAnswer::NotModified
        );
        assert_eq!(
            decide(&with(later), &v, 10, long_after()),
            FileAnswer::NotModified
        );
        assert_eq!(
            decide(&with(earlier), &v, 10, long_after()),
            FileAnswer::Full
        );
        assert_eq!(
            decide(&with("yesterday"), &v, 10, long_after()),
            FileAnswer::Full
        );
        // If-None-Match takes precedence: a non-matching tag means a full answer.
        let both = Preconditions {
            if_none_match: Some("\"other\""),
            if_modified_since: Some(later),
            ..Default::default()
        };
        assert_eq!(decide(&both, &v, 10, long_after()), FileAnswer::Full);
    }

    #[test]
    fn if_range() {
        let v = validators();
        let with = |condition| Preconditions {
            range: Some("bytes=0-0"),
            if_range: Some(condition),
            ..Default::default()
        };
        let partial = FileAnswer::Partial { start: 0, end: 0 };
        assert_eq!(decide(&with("\"abc\""), &v, 10, long_after()), partial);
        assert_eq!(
            decide(&with("Sun, 06 Nov 1994 08:49:37 GMT"), &v, 10, long_after()),
            partial
        );
        assert_eq!(
            decide(&with("\"old\""), &v, 10, long_after()),
            FileAnswer::Full
        );
        assert_eq!(
            decide(&with("W/\"abc\""), &v, 10, long_after()),
            FileAnswer::Full
        );
        assert_eq!(
            decide(&with("Sun, 06 Nov 1994 08:49:36 GMT"), &v, 10, long_after()),
            FileAnswer::Full
        );
    }

    #[test]
    fn an_if_range_date_counts_only_once_its_second_is_over() {
        let v = validators();
        let pre = Preconditions {
            range: Some("bytes=0-0"),
            if_range: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            ..Default::default()
        };
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let partial = FileAnswer::Partial { start: 0, end: 0 };
        // Modified at 08:49:37: within that second the file may change
        // again under the same date, so the range is not trusted.
        assert_eq!(decide(&pre, &v, 10, at(784111777)), FileAnswer::Full);
        assert_eq!(
            decide(&pre, &v, 10, at(784111777) + Duration::from_millis(999)),
            FileAnswer::Full
        );
        assert_eq!(decide(&pre, &v, 10, at(784111778)), partial);
        // A clock behind the file's date never makes it strong.
        assert_eq!(decide(&pre, &v, 10, at(784111700)), FileAnswer::Full);
        assert_eq!(decide(&pre, &v, 10, UNIX_EPOCH), FileAnswer::Full);
        // An entity tag is strong whenever it was made.
        let by_tag = Preconditions {
            if_range: Some("\"abc\""),
            ..pre
        };
        assert_eq!(decide(&by_tag, &v, 10, at(784111777)), partial);
    }

    #[test]
    fn if_match_fails_a_read_with_412() {
        let v = validators();
        let with = |tags| Preconditions {
            if_match: Some(tags),
            ..Default::default()
        };
        for matching in ["\"abc\"", "*", " * ", "\"x\", \"abc\"", "\"a,b\",\"abc\""] {
            assert_eq!(
                decide(&with(matching), &v, 10, long_after()),
                FileAnswer::Full,
                "{matching}"
            );
        }
        // Strong comparison: a weak tag never matches, nor does a malformed list.
        for other in [
            "W/\"abc\"",
            "\"abd\"",
            "abc",
            "\"abc",
            "",
            "\"x\" junk \"abc\"",
        ] {
            assert!(
                matches!(
                    decide(&with(other), &v, 10, long_after()),
                    FileAnswer::PreconditionFailed(_)
                ),
                "{other}"
            );
        }
        // Nor does our own tag, were it weak.
        let weak = Validators {
            etag: "W/\"abc\"".to_owned(),
            ..validators()
        };
        assert!(matches!(
            decide(&with("W/\"abc\""), &weak, 10, long_after()),
            FileAnswer::PreconditionFailed(_)
        ));
        assert_eq!(
            decide(&with("*"), &weak, 10, long_after()),
            FileAnswer::Full
        );
    }

    #[test]
    fn if_unmodified_since_fails_a_read_with_412() {
        let v = validators();
        let with = |date| Preconditions {
            if_unmodified_since: Some(date),
            ..Default::default()
        };
        let same = "Sun, 06 Nov 1994 08:49:37 GMT";
        let later = "Sun, 06 Nov 1994 08:49:38 GMT";
        let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
        assert_eq!(decide(&with(same), &v, 10, long_after()), FileAnswer::Full);
        assert_eq!(decide(&with(later), &v, 10, long_after()), FileAnswer::Full);
        assert!(matches!(
            decide(&with(earlier), &v, 10, long_after()),
            FileAnswer::PreconditionFailed(_)
        ));
        // Not a date: ignored (RFC 9110 §13.1.4).
        assert_eq!(
            decide(&with("yesterday"), &v, 10, long_after()),
            FileAnswer::Full
        );
        // If-Match, when there, decides alone.
        let both = |if_match| Preconditions {
            if_match: Some(if_match),
            if_unmodified_since: Some(earlier),
            ..Default::default()
        };
        assert_eq!(
            decide(&both("\"abc\""), &v, 10, long_after()),
            FileAnswer::Full
        );
        assert!(matches!(
            decide(&both("\"old\""), &v, 10, long_after()),
            FileAnswer::PreconditionFailed(_)
        ));
    }

    #[test]
    fn a_failed_precondition_comes_before_304_and_ranges() {
        let v = validators();
        let failed = |pre: Preconditions| {
            matches!(
                decide(&pre, &v, 100, long_after()),
                FileAnswer::PreconditionFailed(_)
            )
        };
        let stale = Some("\"old\"");
        let early = Some("Sun, 06 Nov 1994 08:49:36 GMT");
        let base = Preconditions::default();
        // What would be a 304, a 206, a multipart 206 or a 416 is a 412.
        assert!(failed(Preconditions {
            if_match: stale,
            if_none_match: Some("\"abc\""),
            ..base
        }));
        assert!(failed(Preconditions {
            if_unmodified_since: early,
            if_modified_since: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            ..base
        }));
        for range in ["bytes=0-9", "bytes=0-9,50-59", "bytes=500-"] {
            assert!(failed(Preconditions {
                if_match: stale,
                range: Some(range),
                ..base
            }));
            assert!(failed(Preconditions {
                if_unmodified_since: early,
                range: Some(range),
                if_range: Some("\"abc\""),
                ..base
            }));
        }
        // A true one lets the rest decide.
        let current = Preconditions {
            if_match: Some("\"abc\""),
            if_none_match: Some("\"abc\""),
            ..base
        };
        assert_eq!(
            decide(&current, &v, 100, long_after()),
            FileAnswer::NotModified
        );
        let ranged = Preconditions {
            if_match: Some("\"abc\""),
            range: Some("bytes=0-9"),
            ..base
        };
        assert_eq!(
            decide(&ranged, &v, 100, long_after()),
            FileAnswer::Partial { start: 0, end: 9 }
        );
    }

    #[test]
    fn write_conditions() {
        let v = validators();
        let on = |conditions: &[(&str, &str)], current: Option<&Validators>| {
            let mut w = WriteConditions::default();
            for &(name, value) in conditions {
                let value = Some(value.into());
                match name {
                    "if-match" => w.if_match = value,
                    "if-unmodified-since" => w.if_unmodified_since = value,
                    "if-none-match" => w.if_none_match = value,
                    _ => unreachable!("{name}"),
                }
            }
            w.check(current).is_ok()
        };
        assert!(WriteConditions::default().is_empty());
        assert!(on(&[], Some(&v)) && on(&[], None));
        // If-None-Match: * — only if absent, whoever may overwrite.
        let absent = [("if-none-match", "*")];
        assert!(on(&absent, None));
        assert!(!on(&absent, Some(&v)));
        // A tag list fails only when it names the file (weak comparison).
        assert!(!on(&[("if-none-match", "\"abc\"")], Some(&v)));
        assert!(!on(&[("if-none-match", "W/\"abc\"")], Some(&v)));
        assert!(on(&[("if-none-match", "\"old\"")], Some(&v)));
        assert!(on(&[("if-none-match", "\"abc\"")], None));
        // If-Match: the file exists and, unless `*`, has that strong tag.
        assert!(on(&[("if-match", "\"abc\"")], Some(&v)));
        assert!(on(&[("if-match", "\"x\", \"abc\"")], Some(&v)));
        assert!(on(&[("if-match", "*")], Some(&v)));
        assert!(!on(&[("if-match", "\"old\"")], Some(&v)));
        assert!(!on(&[("if-match", "W/\"abc\"")], Some(&v)));
        assert!(!on(&[("if-match", "\"abc\"")], None));
        assert!(!on(&[("if-match", "*")], None));
        // If-Unmodified-Since: not after the date; ignored without a file
        // (no date to compare), when not a date, or beside If-Match.
        let early = "Sun, 06 Nov 1994 08:49:36 GMT";
        let same = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(on(&[("if-unmodified-since", same)], Some(&v)));
        assert!(!on(&[("if-unmodified-since", early)], Some(&v)));
        assert!(on(&[("if-unmodified-since", early)], None));
        assert!(on(&[("if-unmodified-since", "soon")], Some(&v)));
        let both = [("if-match", "\"abc\""), ("if-unmodified-since", early)];
        assert!(on(&both, Some(&v)));
        // Every condition must hold.
        assert!(!on(&[("if-match", "*"), ("if-none-match", "*")], Some(&v)));
        assert!(!on(
            &[("if-match", "\"abc\""), ("if-none-match", "\"abc\"")],
            Some(&v)
        ));
        assert!(WriteConditions {
            if_none_match: Some(" * ".into()),
            ..Default::default()
        }
        .wants_absent());
        assert!(!WriteConditions {
            if_none_match: Some("\"abc\"".into()),
            ..Default::default()
        }
        .wants_absent());
    }

    #[test]
    fn etag_changes_with_any_validator() {
        let t = UNIX_EPOCH + Duration::new(1000, 5);
        let base = Validators::new(7, t, 10);
        assert_ne!(base.etag, Validators::new(8, t, 10).etag);
        assert_ne!(
            base.etag,
            Validators::new(7, t + Duration::new(0, 1), 10).etag
        );
        assert_ne!(base.etag, Validators::new(7, t, 11).etag);
        assert!(base.etag.starts_with('"') && base.etag.ends_with('"'));
        assert_eq!(base.last_modified(), "Thu, 01 Jan 1970 00:16:40 GMT");
    }
}
