//! Markdown (CommonMark) text: user and document text escaped so it renders as itself, inside a
//! table cell too, and `file://` links that survive spaces and other odd characters in a path.

/// `s` as literal inline text: every character Markdown could read as syntax is backslash-escaped
/// (a cell's `|` included) and line breaks become spaces, so one value stays in one cell.
pub fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' | '!' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A `file://` URL for `path`, percent-encoded (RFC 3986: everything but unreserved characters,
/// `/` and a drive's `:`), so a viewer opens it whatever the path holds.
pub fn file_url(path: &std::path::Path) -> String {
    let mut p = path.to_string_lossy().into_owned();
    if cfg!(windows) {
        p = p.replace('\\', "/");
    }
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    let mut out = String::from("file://");
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_is_escaped_and_lines_joined() {
        assert_eq!(inline("a|b *c* [d](e)"), r"a\|b \*c\* \[d\](e)");
        assert_eq!(inline("x_1 <b> `c` \\"), r"x\_1 \<b\> \`c\` \\");
        assert_eq!(inline("two\nlines"), "two lines");
        assert_eq!(inline("plain words, 3.5 %"), "plain words, 3.5 %");
    }

    #[test]
    fn file_urls_are_percent_encoded() {
        let p = std::path::Path::new("/home/me/My Papers/ü (draft)#2.pdf");
        assert_eq!(
            file_url(p),
            "file:///home/me/My%20Papers/%C3%BC%20%28draft%29%232.pdf"
        );
    }
}
