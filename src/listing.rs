//! The page for a directory without an `index.html`, and the same entries as
//! JSON for scripts, rendered from a list of entries (no file system access
//! here).
//!
//! Rendering is split into a top, one row per entry and a bottom, each
//! appended to a `Vec<u8>`, so a caller can stream a big folder row by row
//! from a sorted snapshot ([`html_top`], [`html_row`], [`html_bottom`];
//! [`json_top`], [`json_row`], [`json_bottom`]). Rows come out in the order
//! they are given; [`compare`] is the order to sort them in: folders first,
//! then by name ([`natural_cmp`]: `file2` before `file10`), size or
//! modification time, either way ([`Order`], from `?sort=...&order=...`).
//!
//! Every name is HTML-escaped for display and percent-encoded for its link,
//! so a file called `<b>x.txt`, `a#b` or `100%.txt` shows and links as
//! itself. The page needs nothing but itself: the stylesheet and script
//! (`listing.css`, `listing.js` beside this file) are inlined. Without
//! JavaScript it is a complete page (sorting by links, uploading with a plain
//! form POST); the script adds a filter box, drag and drop, and an upload
//! queue with progress and cancel.

use crate::path::encode_segment;
use std::cmp::Ordering;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The page's stylesheet, inlined into its `<head>`.
const CSS: &str = include_str!("listing.css");
/// The page's script (progressive enhancement), inlined at its end.
const JS: &str = include_str!("listing.js");

/// One visible entry of a directory, owned (the tests' form; the server
/// lends [`EntryRef`]s out of a snapshot).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The raw file name (bytes: Unix names need not be UTF-8).
    pub name: Vec<u8>,
    pub is_dir: bool,
    pub size: u64,
    pub modified: SystemTime,
}

/// One entry borrowed from a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub name: &'a [u8],
    pub is_dir: bool,
    pub size: u64,
    pub modified: SystemTime,
    /// It is a symlink, described by what it points to.
    pub is_link: bool,
}

#[cfg(test)]
impl Entry {
    /// This entry, borrowed.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            name: &self.name,
            is_dir: self.is_dir,
            size: self.size,
            modified: self.modified,
            is_link: false,
        }
    }
}

/// What a listing is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Name,
    Size,
    Modified,
}

impl SortKey {
    /// The `sort=` value.
    fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Modified => "mtime",
        }
    }
}

/// A listing's order: a key and a direction. The default is by name,
/// ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    pub key: SortKey,
    pub descending: bool,
}

impl Order {
    /// Reads `sort=name|size|mtime` and `order=asc|desc` from a raw query
    /// string (no leading `?`). Each one missing or unknown keeps its default
    /// (name, ascending), so junk gives name ascending; the last valid
    /// occurrence wins. Other parameters (`json`, `tar`, ...) are ignored.
    pub fn from_query(query: &str) -> Order {
        let mut order = Order::default();
        for (key, value) in query_pairs(query) {
            match (key, value) {
                ("sort", "name") => order.key = SortKey::Name,
                ("sort", "size") => order.key = SortKey::Size,
                ("sort", "mtime") => order.key = SortKey::Modified,
                ("order", "asc") => order.descending = false,
                ("order", "desc") => order.descending = true,
                _ => {}
            }
        }
        order
    }

    /// The query that selects this order, e.g. `sort=size&order=desc`.
    pub fn to_query(self) -> String {
        let direction = if self.descending { "desc" } else { "asc" };
        format!("sort={}&order={direction}", self.key.as_str())
    }

    /// The order a click on `key`'s column header asks for: the other
    /// direction for the active column; otherwise ascending names, and
    /// the biggest or newest first for sizes and times.
    fn clicked(self, key: SortKey) -> Order {
        if key == self.key {
            Order {
                key,
                descending: !self.descending,
            }
        } else {
            Order {
                key,
                descending: key != SortKey::Name,
            }
        }
    }
}

/// The `key=value` pairs of a query (`value` empty for a bare `key`).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The order of two entries: folders before files in both directions; within
/// each group by the key, reversed when descending. Ties (and folders when
/// sorting by size, since a folder's size says nothing) are broken by natural
/// name order, then raw bytes, always ascending, so equal sizes or times
/// read alphabetically either way. A total order: equal only for equal
/// entries.
pub fn compare(a: &EntryRef, b: &EntryRef, order: Order) -> Ordering {
    let directed = |ordering: Ordering| {
        if order.descending {
            ordering.reverse()
        } else {
            ordering
        }
    };
    b.is_dir
        .cmp(&a.is_dir)
        .then_with(|| match order.key {
            SortKey::Name => directed(natural_cmp(a.name, b.name)),
            SortKey::Size if a.is_dir => Ordering::Equal,
            SortKey::Size => directed(a.size.cmp(&b.size)),
            SortKey::Modified => directed(a.modified.cmp(&b.modified)),
        })
        .then_with(|| natural_cmp(a.name, b.name))
        .then_with(|| (a.size, a.modified).cmp(&(b.size, b.modified)))
}

/// One unit of a name in natural order: a run of ASCII digits, or one
/// character (invalid UTF-8 counts as U+FFFD, one byte at a time).
#[derive(Clone, Copy)]
enum Token<'a> {
    Digits(&'a [u8]),
    Char(char),
}

impl Token<'_> {
    /// Compares two tokens: digit runs by value (leading zeros stripped, then
    /// longer is bigger, then digit by digit, so any length works), characters
    /// lower-cased, and a number where a character is sorts as the character
    /// `0` would (never equal: a character token is never a digit).
    fn cmp(self, other: Token) -> Ordering {
        match (self, other) {
            (Token::Digits(a), Token::Digits(b)) => {
                let a = strip_zeros(a);
                let b = strip_zeros(b);
                a.len().cmp(&b.len()).then_with(|| a.cmp(b))
            }
            (Token::Char(a), Token::Char(b)) => fold(a).cmp(&fold(b)),
            (Token::Digits(_), Token::Char(c)) => '0'.cmp(&fold(c)),
            (Token::Char(c), Token::Digits(_)) => fold(c).cmp(&'0'),
        }
    }
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

/// A character's case-insensitive stand-in: its first lower-case character.
fn fold(c: char) -> char {
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

/// The tokens of a name, in order.
struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let first = *self.rest.first()?;
        if first.is_ascii_digit() {
            let end = self
                .rest
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(self.rest.len());
            let (digits, rest) = self.rest.split_at(end);
            self.rest = rest;
            return Some(Token::Digits(digits));
        }
        let width = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 0,
        };
        let decoded = self
            .rest
            .get(..width)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|text| text.chars().next());
        match decoded {
            Some(c) => {
                self.rest = &self.rest[width..];
                Some(Token::Char(c))
            }
            None => {
                self.rest = &self.rest[1..];
                Some(Token::Char(char::REPLACEMENT_CHARACTER))
            }
        }
    }
}

/// Natural order of two names: digit runs compare by numeric value
/// (`file2` < `file10`, leading zeros and runs of any length without
/// overflow), letters case-insensitively (`a1` < `A2` < `a10`); names equal
/// that way (`a01` and `a1`, `A` and `a`) are ordered by their raw bytes, so
/// this is a total order, `Equal` only for equal names.
pub fn natural_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let mut left = Tokens { rest: a };
    let mut right = Tokens { rest: b };
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Equal => {}
                unequal => return unequal,
            },
        }
    }
}

/// What a listing is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Html,
    Json,
}

/// JSON when the query has `json` (`?json`, `?json=1`, next to `sort`...) or
/// the `Accept` header prefers `application/json` to `text/html`: by q-value,
/// and at equal q-values by how specifically each was named (`application/json`
/// over `application/*` over `*/*`), so `application/json, */*` is JSON and
/// `*/*` or a browser's `text/html,...,*/*;q=0.8` is HTML. No header: HTML.
pub fn format_for(accept: Option<&str>, query: &str) -> Format {
    if query_pairs(query).any(|(key, _)| key == "json") {
        return Format::Json;
    }
    let Some(accept) = accept else {
        return Format::Html;
    };
    let json = preference(accept, "application", "json");
    let html = preference(accept, "text", "html");
    if json > html {
        Format::Json
    } else {
        Format::Html
    }
}

/// How much `accept` wants `kind/subtype`: the (q-value in thousandths,
/// specificity) of the most specific media range that matches it, or
/// (0, 0) when none does or that one says `q=0` (not acceptable).
fn preference(accept: &str, kind: &str, subtype: &str) -> (u16, u8) {
    let mut best: Option<(u8, u16)> = None;
    for range in accept.split(',') {
        let mut params = range.split(';');
        let media = params.next().unwrap_or("").trim();
        let Some((t, s)) = media.split_once('/') else {
            continue;
        };
        let (t, s) = (t.trim(), s.trim());
        let specificity = if t.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) {
            3
        } else if t.eq_ignore_ascii_case(kind) && s == "*" {
            2
        } else if t == "*" && s == "*" {
            1
        } else {
            continue;
        };
        let q = params
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, value)| parse_q(value.trim()));
        if best.is_none_or(|(known, _)| specificity > known) {
            best = Some((specificity, q));
        }
    }
    match best {
        Some((specificity, q)) if q > 0 => (q, specificity),
        _ => (0, 0),
    }
}

/// A q-value (`0`, `0.8`, `1.000`) in thousandths; junk counts as 0.
fn parse_q(value: &str) -> u16 {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let fraction_ok = fraction.len() <= 3 && fraction.bytes().all(|b| b.is_ascii_digit());
    match whole {
        "1" if fraction_ok && fraction.bytes().all(|b| b == b'0') => 1000,
        "0" if fraction_ok => {
            let mut thousandths = 0;
            for i in 0..3 {
                let digit = fraction.as_bytes().get(i).map_or(0, |d| d - b'0');
                thousandths = thousandths * 10 + u16::from(digit);
            }
            thousandths
        }
        _ => 0,
    }
}

/// What the page around the rows shows.
#[derive(Debug, Clone, Copy)]
pub struct PageInfo<'a> {
    /// The folder's decoded URL path, starting and ending with `/`, e.g.
    /// `/photos/2024/`: the title and the breadcrumbs.
    pub url_path: &'a str,
    /// The order the rows are in (the active column, and its links).
    pub order: Order,
    /// Render the upload form and drop zone.
    pub uploads: bool,
    /// How many rows will follow, for the count line.
    pub entries: usize,
}

/// Everything up to the first row: head (inline stylesheet), breadcrumbs,
/// the toolbar (count, filter box, archive links), the table's opening and
/// header row, and the `../` row below the root.
pub fn html_top(info: &PageInfo, out: &mut Vec<u8>) {
    let title = escape_html(info.url_path);
    let order = info.order;
    let mut page = String::with_capacity(CSS.len() + 2048);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n\
         <body data-sort=\"{}\" data-order=\"{}\">\n<header>\n<h1 class=\"crumbs\">",
        order.key.as_str(),
        if order.descending { "desc" } else { "asc" },
    );
    breadcrumbs(info.url_path, &mut page);
    let count = match info.entries {
        1 => String::from("1 entry"),
        n => format!("{n} entries"),
    };
    let _ = write!(
        page,
        "</h1>\n<div class=\"bar\">\n<span id=\"count\" data-total=\"{}\">{count}</span>\n\
         <input id=\"filter\" type=\"search\" placeholder=\"Filter\" aria-label=\"Filter by name\" \
         autocomplete=\"off\" hidden>\n\
         <span class=\"archives\">Download: <a href=\"?tar\" download>.tar</a> \
         <a href=\"?zip\" download>.zip</a></span>\n</div>\n</header>\n\
         <main>\n<table id=\"listing\">\n<thead>\n<tr>",
        info.entries,
    );
    for (key, label) in [
        (SortKey::Name, "Name"),
        (SortKey::Size, "Size"),
        (SortKey::Modified, "Modified (UTC)"),
    ] {
        let class = key.as_str();
        let target = escape_html(&order.clicked(key).to_query());
        if key == order.key {
            let (sort, arrow) = if order.descending {
                ("descending", "↓")
            } else {
                ("ascending", "↑")
            };
            let _ = write!(
                page,
                "<th class=\"{class}\" aria-sort=\"{sort}\"><a href=\"?{target}\">{label}\
                 <span class=\"arrow\" aria-hidden=\"true\"> {arrow}</span></a></th>"
            );
        } else {
            let _ = write!(
                page,
                "<th class=\"{class}\"><a href=\"?{target}\">{label}</a></th>"
            );
        }
    }
    page.push_str("</tr>\n</thead>\n<tbody>\n");
    if info.url_path != "/" {
        page.push_str(
            "<tr class=\"up\"><td class=\"name\"><a href=\"../\">../</a></td>\
             <td class=\"size\"></td><td class=\"mtime\"></td></tr>\n",
        );
    }
    out.extend_from_slice(page.as_bytes());
}

/// The title's path as links: `/` to the root, then each folder's name to
/// that folder. The links are relative (`../../`, `../`, `./`), so they are
/// right however the path was spelled.
fn breadcrumbs(url_path: &str, page: &mut String) {
    let segments: Vec<&str> = url_path.split('/').filter(|s| !s.is_empty()).collect();
    let up = |levels: usize| {
        if levels == 0 {
            String::from("./")
        } else {
            "../".repeat(levels)
        }
    };
    let _ = write!(
        page,
        "<a href=\"{}\" title=\"The root folder\">/</a>",
        up(segments.len())
    );
    for (i, segment) in segments.iter().enumerate() {
        let _ = write!(
            page,
            "<a href=\"{}\">{}/</a>",
            up(segments.len() - 1 - i),
            escape_html(segment)
        );
    }
}

/// One row of the table, on its own line. It depends on nothing but the
/// entry: a link (`./name`, `./name/` for a folder), the size (exact in
/// `data-size` and the tooltip) and the time (RFC 3339 in `datetime`).
pub fn html_row(entry: &EntryRef, out: &mut Vec<u8>) {
    let shown = escape_html(&String::from_utf8_lossy(entry.name));
    let (class, slash) = if entry.is_dir {
        ("dir", "/")
    } else {
        ("file", "")
    };
    let mut row = String::with_capacity(3 * entry.name.len() + 220);
    let _ = write!(row, "<tr class=\"{class}\"><td class=\"name\"><a href=\"./");
    row.extend(encode_segment(entry.name));
    let _ = write!(row, "{slash}\">{shown}{slash}</a></td>");
    if entry.is_dir {
        row.push_str("<td class=\"size\" data-size=\"0\">—</td>");
    } else {
        let unit = if entry.size == 1 { "byte" } else { "bytes" };
        let _ = write!(
            row,
            "<td class=\"size\" data-size=\"{0}\" title=\"{0} {unit}\">{1}</td>",
            entry.size,
            human_size(entry.size)
        );
    }
    let _ = writeln!(
        row,
        "<td class=\"mtime\"><time datetime=\"{}\">{}</time></td></tr>",
        rfc3339(entry.modified),
        civil_time(entry.modified)
    );
    out.extend_from_slice(row.as_bytes());
}

/// Closes the table, then the upload form (when on) and the script.
pub fn html_bottom(info: &PageInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b"</tbody>\n</table>\n");
    if info.entries == 0 {
        out.extend_from_slice(b"<p class=\"empty\">This folder is empty.</p>\n");
    }
    if info.uploads {
        out.extend_from_slice(UPLOAD_FORM.as_bytes());
    }
    out.extend_from_slice(b"</main>\n<script>\n");
    out.extend_from_slice(JS.as_bytes());
    out.extend_from_slice(b"</script>\n</body>\n</html>\n");
}

/// The upload form: a plain multipart form that works without JavaScript
/// (one POST with every picked file, answered by rill's HTML page). The
/// script turns it into a queue (`#queue`, one row per file) and makes the
/// whole page a drop zone (`#drop` is its overlay).
const UPLOAD_FORM: &str = r#"<section id="uploads">
<form id="upload" method="post" action="./" enctype="multipart/form-data">
<label>Upload files here: <input type="file" name="file" multiple required></label>
<button type="submit">Upload</button>
<span class="hint" hidden>or drop them anywhere on this page</span>
</form>
<ul id="queue" aria-live="polite"></ul>
<div id="drop" hidden><p>Drop files to upload them here</p></div>
</section>
"#;

/// Opens the JSON answer: an array of [`json_row`] objects.
pub fn json_top(out: &mut Vec<u8>) {
    out.push(b'[');
}

/// One entry as a JSON object, preceded by a comma unless `first`:
/// `{"name":"a b.jpg","type":"file","size":2048,"modified":"1994-11-06T08:49:37Z","url":"/photos/a%20b.jpg"}`.
/// `type` is `file` or `dir`; a folder's `size` is 0 and its `url` ends in
/// `/`; `url` is the absolute, percent-encoded path (`url_path` is the
/// folder's decoded path, as in [`PageInfo`]). A name that is not UTF-8 is
/// given lossily (U+FFFD); its `url` still names the file exactly.
pub fn json_row(entry: &EntryRef, first: bool, url_path: &str, out: &mut Vec<u8>) {
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"\n{\"name\":");
    json_string(&String::from_utf8_lossy(entry.name), out);
    let (kind, size) = if entry.is_dir {
        ("dir", 0)
    } else {
        ("file", entry.size)
    };
    let mut url = String::with_capacity(url_path.len() + 3 * entry.name.len() + 2);
    url.push('/');
    for segment in url_path.split('/').filter(|s| !s.is_empty()) {
        url.extend(encode_segment(segment.as_bytes()));
        url.push('/');
    }
    url.extend(encode_segment(entry.name));
    if entry.is_dir {
        url.push('/');
    }
    let _ = write!(
        Utf8Out(out),
        ",\"type\":\"{kind}\",\"size\":{size},\"modified\":\"{}\",\"url\":",
        rfc3339(entry.modified)
    );
    json_string(&url, out);
    out.push(b'}');
}

/// Closes the JSON array.
pub fn json_bottom(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\n]\n");
}

/// `fmt::Write` onto a byte buffer.
struct Utf8Out<'a>(&'a mut Vec<u8>);

impl Write for Utf8Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A JSON string literal: quotes and backslashes escaped, control
/// characters as `\u00XX`.
fn json_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(Utf8Out(out), "\\u{:04x}", c as u32);
            }
            c => {
                let mut buffer = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Sorts `entries` by `order` and renders the whole HTML page of the folder
/// at `url_path` (decoded, ending in `/`), with the upload form when
/// `upload_form`: what the server's streamed rows add up to.
#[cfg(test)]
pub fn render(url_path: &str, entries: &mut [Entry], upload_form: bool, order: Order) -> String {
    entries.sort_by(|a, b| compare(&a.as_ref(), &b.as_ref(), order));
    let info = PageInfo {
        url_path,
        order,
        uploads: upload_form,
        entries: entries.len(),
    };
    let mut out = Vec::with_capacity(CSS.len() + JS.len() + 4096 + entries.len() * 200);
    html_top(&info, &mut out);
    for entry in entries.iter() {
        html_row(&entry.as_ref(), &mut out);
    }
    html_bottom(&info, &mut out);
    String::from_utf8(out).expect("the page is built from str pieces")
}

/// Sorts `entries` by `order` and renders them as the JSON array.
#[cfg(test)]
pub fn render_json(url_path: &str, entries: &mut [Entry], order: Order) -> Vec<u8> {
    entries.sort_by(|a, b| compare(&a.as_ref(), &b.as_ref(), order));
    let mut out = Vec::with_capacity(16 + entries.len() * 160);
    json_top(&mut out);
    for (i, entry) in entries.iter().enumerate() {
        json_row(&entry.as_ref(), i == 0, url_path, &mut out);
    }
    json_bottom(&mut out);
    out
}

/// Escapes the five characters that matter in HTML text and attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1.5 KiB`-style sizes; bytes below 1 KiB are exact.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The UTC date and time of `time` (whole seconds; before 1970 counts as
/// 1970): (year, month, day, hour, minute, second), from days since the
/// epoch by H. Hinnant's civil-from-days, so no date crate is needed.
fn civil(time: SystemTime) -> (i64, i64, i64, u64, u64, u64) {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = (secs / 86_400) as i64;
    let (hour, minute, second) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour, minute, second)
}

/// `YYYY-MM-DD HH:MM` in UTC, the page's column.
fn civil_time(time: SystemTime) -> String {
    let (year, month, day, hour, minute, _) = civil(time);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

/// RFC 3339 in UTC with seconds: `1994-11-06T08:49:37Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second) = civil(time);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::time::Duration;

    const WHEN: u64 = 784_111_777; // 1994-11-06T08:49:37Z

    fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            is_dir,
            size: 2048,
            modified: UNIX_EPOCH + Duration::from_secs(WHEN),
        }
    }

    fn sized(name: &str, size: u64, secs: u64) -> Entry {
        Entry {
            size,
            modified: UNIX_EPOCH + Duration::from_secs(secs),
            ..entry(name, false)
        }
    }

    fn page(url_path: &str, entries: &mut [Entry]) -> String {
        render(url_path, entries, false, Order::default())
    }

    fn sorted(entries: &mut [Entry], order: Order) -> Vec<String> {
        entries.sort_by(|a, b| compare(&a.as_ref(), &b.as_ref(), order));
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect()
    }

    fn natural(names: &[&str]) -> Vec<String> {
        let mut names: Vec<&str> = names.to_vec();
        names.sort_by(|a, b| natural_cmp(a.as_bytes(), b.as_bytes()));
        names.into_iter().map(String::from).collect()
    }

    #[test]
    fn natural_order_compares_numbers_by_value() {
        assert_eq!(
            natural(&["file10", "file2", "file1", "file"]),
            ["file", "file1", "file2", "file10"]
        );
        assert_eq!(natural(&["a10", "A2", "a1"]), ["a1", "A2", "a10"]);
        assert_eq!(
            natural(&["x010", "x9", "x0010", "x10", "x1"]),
            ["x1", "x9", "x0010", "x010", "x10"]
        );
        // 30-digit runs: no overflow, by value.
        let big = "n123456789012345678901234567891";
        let bigger = "n123456789012345678901234567892";
        let longer = "n1234567890123456789012345678901";
        assert_eq!(natural(&[longer, bigger, big]), [big, bigger, longer]);
        assert_eq!(
            natural(&["n000000000000000000000000000001", "n2"])[0],
            "n000000000000000000000000000001"
        );
        // Case-insensitively, ties by raw bytes; non-ASCII too.
        assert_eq!(natural(&["b", "a", "B", "A"]), ["A", "a", "B", "b"]);
        assert_eq!(natural(&["Émile", "eve", "ézra"]), ["eve", "Émile", "ézra"]);
        assert_eq!(
            natural(&["a.txt", "a1.txt", "a-1"]),
            ["a-1", "a.txt", "a1.txt"]
        );
        assert_eq!(natural_cmp(b"same", b"same"), Ordering::Equal);
        assert_ne!(natural_cmp(b"a01", b"a1"), Ordering::Equal);
        assert_ne!(natural_cmp(b"\xff", b"\xfe"), Ordering::Equal);
        assert_eq!(natural_cmp(b"\xff", b"\xfe"), Ordering::Greater);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn natural_order_is_a_total_order(
            a in name_strategy(), b in name_strategy(), c in name_strategy()
        ) {
            let ab = natural_cmp(&a, &b);
            prop_assert_eq!(ab, natural_cmp(&b, &a).reverse());
            prop_assert_eq!(ab == Ordering::Equal, a == b);
            prop_assert_eq!(natural_cmp(&a, &a), Ordering::Equal);
            let bc = natural_cmp(&b, &c);
            if ab != Ordering::Greater && bc != Ordering::Greater {
                prop_assert_ne!(natural_cmp(&a, &c), Ordering::Greater);
            }
            if ab != Ordering::Less && bc != Ordering::Less {
                prop_assert_ne!(natural_cmp(&a, &c), Ordering::Less);
            }
        }
    }

    /// Names from a small alphabet, so that digits, case and ties meet often.
    fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            Just(b'0'),
            Just(b'1'),
            Just(b'9'),
            Just(b'a'),
            Just(b'A'),
            Just(b'b'),
            Just(b'.'),
            Just(b' '),
            Just(0xc3),
            Just(0xa9),
            Just(0xff),
            any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..8)
    }

    #[test]
    fn folders_first_in_both_directions_for_every_key() {
        let make = || {
            vec![
                sized("b10", 10, 300),
                sized("b9", 30, 100),
                sized("a", 20, 200),
                Entry {
                    size: 9999,
                    ..entry("zdir", true)
                },
                Entry {
                    size: 1,
                    modified: UNIX_EPOCH,
                    ..entry("Adir", true)
                },
            ]
        };
        let cases = [
            ("name", false, ["Adir", "zdir", "a", "b9", "b10"]),
            ("name", true, ["zdir", "Adir", "b10", "b9", "a"]),
            ("size", false, ["Adir", "zdir", "b10", "a", "b9"]),
            ("size", true, ["Adir", "zdir", "b9", "a", "b10"]),
            ("mtime", false, ["Adir", "zdir", "b9", "a", "b10"]),
            ("mtime", true, ["zdir", "Adir", "b10", "a", "b9"]),
        ];
        for (key, descending, expected) in cases {
            let direction = if descending { "desc" } else { "asc" };
            let order = Order::from_query(&format!("sort={key}&order={direction}"));
            assert_eq!(order.descending, descending);
            assert_eq!(sorted(&mut make(), order), expected, "{key} {direction}");
        }
        // Equal sizes read alphabetically either way.
        for descending in [false, true] {
            let order = Order {
                key: SortKey::Size,
                descending,
            };
            let mut same = vec![sized("c", 5, 0), sized("a", 5, 0), sized("b", 5, 0)];
            assert_eq!(sorted(&mut same, order), ["a", "b", "c"]);
        }
    }

    #[test]
    fn order_from_and_to_query() {
        assert_eq!(Order::from_query(""), Order::default());
        assert_eq!(Order::default().to_query(), "sort=name&order=asc");
        for key in [SortKey::Name, SortKey::Size, SortKey::Modified] {
            for descending in [false, true] {
                let order = Order { key, descending };
                assert_eq!(Order::from_query(&order.to_query()), order);
                assert_eq!(
                    Order::from_query(&format!("json&{}&x=1", order.to_query())),
                    order
                );
            }
        }
        assert_eq!(
            Order::from_query("sort=size&order=desc").to_query(),
            "sort=size&order=desc"
        );
        assert_eq!(
            Order::from_query("sort=mtime"),
            Order {
                key: SortKey::Modified,
                descending: false
            }
        );
        for junk in [
            "sort=",
            "sort=SIZE",
            "sort=size%00",
            "order=down",
            "&&&",
            "=",
            "sort",
            "%73ort=size",
            "sort=name=size",
        ] {
            assert_eq!(Order::from_query(junk), Order::default(), "{junk}");
        }
        // Each parameter on its own: unknown ones keep the default.
        assert_eq!(
            Order::from_query("sort=junk&order=desc"),
            Order {
                key: SortKey::Name,
                descending: true
            }
        );
    }

    #[test]
    fn format_follows_accept_and_query() {
        use Format::{Html, Json};
        let cases: &[(Option<&str>, &str, Format)] = &[
            (None, "", Html),
            (None, "json", Json),
            (None, "sort=size&json", Json),
            (None, "json=1", Json),
            (None, "jsonp", Html),
            (Some("*/*"), "", Html),
            (Some("application/json"), "", Json),
            (Some("Application/JSON; charset=utf-8"), "", Json),
            (Some("application/json, text/plain, */*"), "", Json),
            (Some("application/*"), "", Json),
            (Some("text/html"), "", Html),
            (Some("text/html, application/json"), "", Html),
            (Some("text/html;q=0.5, application/json"), "", Json),
            (Some("text/html, application/json;q=0.9"), "", Html),
            (Some("application/json;q=0.9, text/*;q=0.8"), "", Json),
            (Some("application/json;q=0, */*"), "", Html),
            (Some("application/json;q=0.001"), "", Json),
            (Some("application/json;q=junk"), "", Html),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                "",
                Html,
            ),
            (Some("text/html"), "json", Json),
            (Some(""), "", Html),
            (Some("garbage"), "", Html),
        ];
        for &(accept, query, expected) in cases {
            assert_eq!(format_for(accept, query), expected, "{accept:?} {query:?}");
        }
        assert_eq!(parse_q("1.000"), 1000);
        assert_eq!(parse_q("0.25"), 250);
        assert_eq!(parse_q("1.5"), 0);
        assert_eq!(parse_q("0.1234"), 0);
    }

    #[test]
    fn escapes_names_and_encodes_links() {
        let mut entries = vec![entry("<b>x.txt", false), entry("a #?%,[]é.txt", false)];
        let page = page("/sub/", &mut entries);
        assert!(page.contains("href=\"./%3Cb%3Ex.txt\">&lt;b&gt;x.txt</a>"));
        assert!(page.contains("href=\"./a%20%23%3F%25%2C%5B%5D%C3%A9.txt\">a #?%,[]é.txt</a>"));
        assert!(!page.contains("<b>x"));
        let mut quoted = vec![entry("\"q'&", true)];
        let page = render("/", &mut quoted, false, Order::default());
        assert!(page.contains("href=\"./%22q%27%26/\">&quot;q&#39;&amp;/</a>"));
    }

    #[test]
    fn folders_first_then_names_and_parent_link() {
        let mut entries = vec![
            entry("b.txt", false),
            entry("Zdir", true),
            entry("A.txt", false),
            entry("adir", true),
        ];
        let page = page("/x/", &mut entries);
        let at = |needle: &str| page.find(needle).unwrap();
        assert!(at("href=\"../\">../") < at("adir/"));
        assert!(at("adir/") < at("Zdir/"));
        assert!(at("Zdir/") < at("A.txt"));
        assert!(at("A.txt") < at("b.txt"));
        assert!(page.contains("2.0 KiB"));
        assert!(page.contains("title=\"2048 bytes\""));

        assert!(page.contains("<time datetime=\"1994-11-06T08:49:37Z\">1994-11-06 08:49</time>"));
        assert!(page.contains("4 entries"));
        let one = render(
            "/x/",
            &mut [sized("one.txt", 1, 0)],
            false,
            Order::default(),
        );
        assert!(one.contains("title=\"1 byte\""), "{one}");
        let root = render("/", &mut [], true, Order::default());
        assert!(!root.contains("href=\"../\">../"));
        assert!(root.contains("This folder is empty"));
        assert!(root.contains("enctype=\"multipart/form-data\""));
        assert!(root.contains("type=\"file\" name=\"file\" multiple"));
        assert!(!page.contains("enctype"));
        assert!(root.contains("href=\"?tar\"") && root.contains("href=\"?zip\""));
    }

    #[test]
    fn rows_stand_alone() {
        let mut one = Vec::new();
        html_row(&entry("a", false).as_ref(), &mut one);
        let row = String::from_utf8(one).unwrap();
        assert!(
            row.starts_with("<tr class=\"file\">") && row.ends_with("</tr>\n"),
            "{row}"
        );
        let mut dir = Vec::new();
        html_row(&entry("d", true).as_ref(), &mut dir);
        let dir = String::from_utf8(dir).unwrap();
        assert!(
            dir.contains("href=\"./d/\">d/</a>") && dir.contains("—"),
            "{dir}"
        );
    }

    #[test]
    fn header_links_sort_and_flip() {
        let page = render("/", &mut [], false, Order::default());
        // Name is active (ascending): its link flips; the others start
        // biggest or newest first.
        assert!(page.contains("<th class=\"name\" aria-sort=\"ascending\"><a href=\"?sort=name&amp;order=desc\">Name<span class=\"arrow\" aria-hidden=\"true\"> ↑</span></a></th>"), "{page}");
        assert!(
            page.contains("<th class=\"size\"><a href=\"?sort=size&amp;order=desc\">Size</a></th>")
        );
        assert!(page.contains("<th class=\"mtime\"><a href=\"?sort=mtime&amp;order=desc\">"));
        let order = Order::from_query("sort=size&order=desc");
        let page = render("/", &mut [], false, order);
        assert!(page.contains("<th class=\"size\" aria-sort=\"descending\"><a href=\"?sort=size&amp;order=asc\">Size<span class=\"arrow\" aria-hidden=\"true\"> ↓</span>"));
        assert!(
            page.contains("<th class=\"name\"><a href=\"?sort=name&amp;order=asc\">Name</a></th>")
        );
        assert!(page.contains("data-sort=\"size\" data-order=\"desc\""));
    }

    #[test]
    fn title_and_breadcrumbs() {
        let page = render("/<script>/", &mut [], false, Order::default());
        assert!(page.contains("<title>/&lt;script&gt;/</title>"));
        assert!(!page.contains("<script>/"));
        let crumbs = |url_path: &str| {
            let page = render(url_path, &mut [], false, Order::default());
            let start = page.find("<h1 class=\"crumbs\">").unwrap() + 19;
            let end = page[start..].find("</h1>").unwrap() + start;
            page[start..end].to_owned()
        };
        assert_eq!(
            crumbs("/"),
            "<a href=\"./\" title=\"The root folder\">/</a>"
        );
        assert_eq!(
            crumbs("/photos/2024 & more/"),
            "<a href=\"../../\" title=\"The root folder\">/</a>\
             <a href=\"../\">photos/</a><a href=\"./\">2024 &amp; more/</a>"
        );
        assert!(
            render("/a/b/c/", &mut [], false, Order::default()).contains("<title>/a/b/c/</title>")
        );
    }

    fn json(url_path: &str, entries: &mut [Entry]) -> Value {
        let bytes = render_json(url_path, entries, Order::default());
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&bytes));
        })
    }

    #[test]
    fn json_rows_parse_with_awkward_names() {
        let awkward = "q\"b\\s\nn\tt\u{1}\u{1f}\u{7f}é 日#%?.txt";
        let mut entries = vec![
            entry(awkward, false),
            entry("sub dir", true),
            Entry {
                name: b"bad\xff\xfe.bin".to_vec(),
                ..entry("", false)
            },
        ];
        let value = json("/photos/a b/", &mut entries);
        let rows = value.as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["name"], "sub dir");
        assert_eq!(rows[0]["type"], "dir");
        assert_eq!(rows[0]["size"], 0);
        assert_eq!(rows[0]["url"], "/photos/a%20b/sub%20dir/");
        let file = rows.iter().find(|r| r["name"] == awkward).expect("awkward");
        assert_eq!(file["type"], "file");
        assert_eq!(file["size"], 2048);
        assert_eq!(file["modified"], "1994-11-06T08:49:37Z");
        let url = file["url"].as_str().unwrap();
        assert!(
            url.starts_with(
                "/photos/a%20b/q%22b%5Cs%0An%09t%01%1F%7F%C3%A9%20%E6%97%A5%23%25%3F.txt"
            ),
            "{url}"
        );
        let bad = rows
            .iter()
            .find(|r| r["name"] == "bad\u{fffd}\u{fffd}.bin")
            .expect("lossy");
        assert_eq!(bad["url"], "/photos/a%20b/bad%FF%FE.bin");
        // Control characters travel as escapes, never raw.
        let raw = render_json("/", &mut entries, Order::default());
        assert!(!raw.iter().any(|&b| b < 0x20 && b != b'\n'));
        assert_eq!(json("/", &mut []), serde_json::json!([]));
        assert_eq!(json("/", &mut [entry("a", false)])[0]["url"], "/a");
    }

    #[test]
    fn sizes_and_dates() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(civil_time(UNIX_EPOCH), "1970-01-01 00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(civil_time(leap), "2000-02-29 00:00");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(WHEN)),
            "1994-11-06T08:49:37Z"
        );
        assert_eq!(
            rfc3339(leap + Duration::from_secs(86_399)),
            "2000-02-29T23:59:59Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(4_102_444_800_999)),
            "2100-01-01T00:00:00Z"
        );
        // Before the epoch counts as the epoch.
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn the_page_has_no_outside_resources() {
        let page = render("/", &mut [], true, Order::default());
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
        assert_eq!(page.matches("<link").count(), 1);
        assert!(page.contains("<link rel=\"icon\" href=\"data:,\">"));
        assert!(page.ends_with("</html>\n"));
    }
}
