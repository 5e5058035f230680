//! The HTML page for a directory without an `index.html`, rendered from a list
//! of entries (no file system access here).
//!
//! Folders come first, then files, each group sorted by name, case-insensitively.
//! Every name is HTML-escaped for display and percent-encoded for its link, so a
//! file called `<b>x.txt`, `a#b` or `100%.txt` shows and links as itself.

use crate::path::encode_segment;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// One visible entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The raw file name (bytes: Unix names need not be UTF-8).
    pub name: Vec<u8>,
    pub is_dir: bool,
    pub size: u64,
    pub modified: SystemTime,
}

/// Renders the listing of the directory at `url_path` (the decoded URL path,
/// ending in `/`, used for the title), with an upload form when `upload_form`.
pub fn render(url_path: &str, entries: &mut [Entry], upload_form: bool) -> String {
    entries.sort_by(|a, b| {
        b.is_dir.cmp(&a.is_dir).then_with(|| {
            let a_name = String::from_utf8_lossy(&a.name).to_lowercase();
            let b_name = String::from_utf8_lossy(&b.name).to_lowercase();
            a_name.cmp(&b_name).then_with(|| a.name.cmp(&b.name))
        })
    });
    let title = escape_html(url_path);
    let mut page = String::with_capacity(512 + entries.len() * 160);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Index of {title}</title>\n<style>\n\
         body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; }}\n\
         table {{ border-collapse: collapse; width: 100%; }}\n\
         th, td {{ text-align: left; padding: .25em .75em; border-bottom: 1px solid #ddd; }}\n\
         td.size {{ text-align: right; font-variant-numeric: tabular-nums; }}\n\
         </style>\n</head>\n<body>\n<h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n"
    );
    if url_path != "/" {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in entries.iter() {
        let shown = escape_html(&String::from_utf8_lossy(&entry.name));
        let slash = if entry.is_dir { "/" } else { "" };
        page.push_str("<tr><td><a href=\"./");
        page.extend(encode_segment(&entry.name));
        let size = if entry.is_dir {
            String::from("-")
        } else {
            human_size(entry.size)
        };
        let _ = writeln!(
            page,
            "{slash}\">{shown}{slash}</a></td><td class=\"size\">{size}</td><td>{}</td></tr>",
            civil_time(entry.modified)
        );
    }
    page.push_str("</table>\n");
    if upload_form {
        page.push_str(UPLOAD_FORM);
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// The upload form: a plain multipart form that works without JavaScript,
/// and a small inline script (no external resources) that sends the same form
/// with XMLHttpRequest to show percent and speed while it runs.
const UPLOAD_FORM: &str = r#"<form id="upload" method="post" action="./" enctype="multipart/form-data">
<p><label>Upload files here: <input type="file" name="file" multiple required></label>
<button type="submit">Upload</button></p>
<p><progress id="upload-bar" max="100" value="0" hidden></progress> <span id="upload-status"></span></p>
</form>
<script>
(function () {
  var form = document.getElementById("upload");
  var bar = document.getElementById("upload-bar");
  var status = document.getElementById("upload-status");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    var started = Date.now();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.floor(100 * e.loaded / e.total);
      var seconds = Math.max((Date.now() - started) / 1000, 0.001);
      var speed = e.loaded / seconds / 1048576;
      bar.hidden = false;
      bar.value = percent;
      status.textContent = percent + "% — " + speed.toFixed(1) + " MiB/s";
    };
    xhr.onload = function () {
      if (xhr.status === 201) { location.reload(); }
      else { status.textContent = "Upload failed: " + xhr.status + " " + xhr.responseText; }
    };
    xhr.onerror = function () { status.textContent = "Upload failed: connection lost"; };
    xhr.send(new FormData(form));
  });
})();
</script>
"#;

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

/// `YYYY-MM-DD HH:MM` in UTC, from days since the epoch (H. Hinnant's
/// civil-from-days), so no date crate is needed for one column.
fn civil_time(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

// ---- TEMPORARY: the row-wise API, replaced by the listing page work ----

/// One entry borrowed from a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub name: &'a [u8],
    pub is_dir: bool,
    pub size: u64,
    pub modified: SystemTime,
}

impl Entry {
    /// A borrowed view.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            name: &self.name,
            is_dir: self.is_dir,
            size: self.size,
            modified: self.modified,
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

/// A listing's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    pub key: SortKey,
    pub descending: bool,
}

impl Order {
    /// From a raw query string.
    pub fn from_query(query: &str) -> Order {
        let mut order = Order::default();
        for pair in query.split('&') {
            match pair {
                "sort=size" => order.key = SortKey::Size,
                "sort=mtime" => order.key = SortKey::Modified,
                "order=desc" => order.descending = true,
                _ => {}
            }
        }
        order
    }
}

/// Folders first, then by key.
pub fn compare(a: &EntryRef, b: &EntryRef, order: Order) -> std::cmp::Ordering {
    b.is_dir.cmp(&a.is_dir).then_with(|| {
        let by_key = match order.key {
            SortKey::Name => a.name.cmp(b.name),
            SortKey::Size => a.size.cmp(&b.size).then(a.name.cmp(b.name)),
            SortKey::Modified => a.modified.cmp(&b.modified).then(a.name.cmp(b.name)),
        };
        if order.descending {
            by_key.reverse()
        } else {
            by_key
        }
    })
}

/// HTML or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

/// `?json` or an Accept header asking for JSON.
pub fn format_for(accept: Option<&str>, query: &str) -> Format {
    if query.split('&').any(|p| p == "json")
        || accept.is_some_and(|a| a.starts_with("application/json"))
    {
        Format::Json
    } else {
        Format::Html
    }
}

/// What the page around the rows needs.
pub struct PageInfo<'a> {
    pub url_path: &'a str,
    pub order: Order,
    pub uploads: bool,
    pub entries: usize,
}

/// Up to the first row.
pub fn html_top(info: &PageInfo, out: &mut Vec<u8>) {
    let page = render(info.url_path, &mut [], false);
    let end = page.find("</table>").unwrap_or(page.len());
    out.extend_from_slice(&page.as_bytes()[..end]);
}

/// One row.
pub fn html_row(entry: &EntryRef, out: &mut Vec<u8>) {
    let mut one = [Entry {
        name: entry.name.to_vec(),
        is_dir: entry.is_dir,
        size: entry.size,
        modified: entry.modified,
    }];
    let page = render("/", &mut one, false);
    let start = page.find("<tr><td><a href=\"./").unwrap_or(0);
    let end = page.find("</table>").unwrap_or(page.len());
    out.extend_from_slice(&page.as_bytes()[start..end]);
}

/// After the last row.
pub fn html_bottom(info: &PageInfo, out: &mut Vec<u8>) {
    out.extend_from_slice(b"</table>\n");
    if info.uploads {
        out.extend_from_slice(UPLOAD_FORM.as_bytes());
    }
    out.extend_from_slice(b"</body>\n</html>\n");
}

/// `[`
pub fn json_top(out: &mut Vec<u8>) {
    out.push(b'[');
}

/// One object.
pub fn json_row(entry: &EntryRef, first: bool, url_path: &str, out: &mut Vec<u8>) {
    if !first {
        out.push(b',');
    }
    let _ = write!(
        PushStr(out),
        "{{\"name\":\"{}\",\"type\":\"{}\",\"size\":{},\"url\":\"{}\"}}",
        String::from_utf8_lossy(entry.name),
        if entry.is_dir { "dir" } else { "file" },
        entry.size,
        url_path
    );
}

/// `]`
pub fn json_bottom(out: &mut Vec<u8>) {
    out.extend_from_slice(b"]\n");
}

struct PushStr<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for PushStr<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            is_dir,
            size: 2048,
            modified: UNIX_EPOCH + Duration::from_secs(784111777),
        }
    }

    #[test]
    fn escapes_names_and_encodes_links() {
        let mut entries = vec![entry("<b>x.txt", false), entry("a #?%,[]é.txt", false)];
        let page = render("/sub/", &mut entries, false);
        assert!(page.contains("href=\"./%3Cb%3Ex.txt\">&lt;b&gt;x.txt</a>"));
        assert!(page.contains("href=\"./a%20%23%3F%25%2C%5B%5D%C3%A9.txt\">a #?%,[]é.txt</a>"));
        assert!(!page.contains("<b>x"));
    }

    #[test]
    fn folders_first_then_names_and_parent_link() {
        let mut entries = vec![
            entry("b.txt", false),
            entry("Zdir", true),
            entry("A.txt", false),
            entry("adir", true),
        ];
        let page = render("/x/", &mut entries, false);
        let at = |needle: &str| page.find(needle).unwrap();
        assert!(at("../") < at("adir/"));
        assert!(at("adir/") < at("Zdir/"));
        assert!(at("Zdir/") < at("A.txt"));
        assert!(at("A.txt") < at("b.txt"));
        assert!(page.contains("2.0 KiB"));
        assert!(page.contains("1994-11-06 08:49"));
        let root = render("/", &mut [], false);
        assert!(!root.contains("../"));
    }

    #[test]
    fn title_is_escaped() {
        let page = render("/<script>/", &mut [], false);
        assert!(page.contains("Index of /&lt;script&gt;/"));
        assert!(!page.contains("<script>"));
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
    }
}
