//! Content types and download names for files, from their names alone.

use crate::path::encode_rfc8187;

/// The `Content-Type` for a file name. Text types carry `charset=utf-8`, since
/// a browser otherwise guesses; JavaScript modules (`.js`, `.mjs`) are
/// `text/javascript` as RFC 9239 asks.
pub fn content_type(name: &[u8]) -> &'static str {
    let extension = name
        .rsplit(|&b| b == b'.')
        .next()
        .filter(|ext| ext.len() < name.len())
        .and_then(|ext| std::str::from_utf8(ext).ok())
        .unwrap_or("");
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "text" | "log" | "md" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "" => "application/octet-stream",
        other => match mime_guess::from_ext(other).first_raw() {
            Some("text/plain") => "text/plain; charset=utf-8",
            Some("text/csv") => "text/csv; charset=utf-8",
            Some("text/xml") => "text/xml; charset=utf-8",
            Some("text/markdown") => "text/markdown; charset=utf-8",
            Some(mime) if mime.starts_with("text/") => charset_utf8(mime),
            Some(mime) => mime,
            None => "application/octet-stream",
        },
    }
}

/// The few other text types mime_guess knows get the charset too; an unknown
/// one is sent as is rather than allocate per request.
fn charset_utf8(mime: &'static str) -> &'static str {
    match mime {
        "text/calendar" => "text/calendar; charset=utf-8",
        "text/x-c" => "text/x-c; charset=utf-8",
        "text/x-python" => "text/x-python; charset=utf-8",
        "text/x-rust" => "text/x-rust; charset=utf-8",
        "text/x-toml" => "text/x-toml; charset=utf-8",
        "text/tab-separated-values" => "text/tab-separated-values; charset=utf-8",
        other => other,
    }
}

/// `Content-Disposition: attachment` for a file name: a plain `filename` with
/// anything outside printable ASCII (and quotes, backslashes) replaced by `_`,
/// plus an RFC 8187 `filename*` with the exact name when it is not plain ASCII.
pub fn attachment(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    let fallback: String = text
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    if fallback == text {
        format!("attachment; filename=\"{fallback}\"")
    } else {
        format!(
            "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
            encode_rfc8187(&text)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_types() {
        for (name, expected) in [
            ("a.html", "text/html; charset=utf-8"),
            ("a.TXT", "text/plain; charset=utf-8"),
            ("a.css", "text/css; charset=utf-8"),
            ("a.js", "text/javascript; charset=utf-8"),
            ("a.mjs", "text/javascript; charset=utf-8"),
            ("a.wasm", "application/wasm"),
            ("a.webp", "image/webp"),
            ("a.mp4", "video/mp4"),
            ("a.svg", "image/svg+xml"),
            ("a.png", "image/png"),
            ("a.json", "application/json"),
            ("a.csv", "text/csv; charset=utf-8"),
            ("a.pdf", "application/pdf"),
            ("noext", "application/octet-stream"),
            ("a.unknownext", "application/octet-stream"),
            (".bashrc", "application/octet-stream"),
        ] {
            assert_eq!(content_type(name.as_bytes()), expected, "{name}");
        }
    }

    #[test]
    fn attachment_names() {
        assert_eq!(
            attachment(b"report.pdf"),
            "attachment; filename=\"report.pdf\""
        );
        assert_eq!(
            attachment("résumé \"v2\".pdf".as_bytes()),
            "attachment; filename=\"r_sum_ _v2_.pdf\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
    }
}
