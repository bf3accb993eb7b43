//! CSV fields (RFC 4180): quoted when they hold a separator, a quote or a line break.

/// One field, quoted when it has to be.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A field of text that came from a document (a page's words, a title, a file name): as `field`,
/// and a leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'` first, so a spreadsheet
/// opening the file shows the text instead of running it as a formula.
pub fn text_field(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        field(&format!("'{s}"))
    } else {
        field(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\r"), "\"cr\r\"");
    }

    #[test]
    fn document_text_never_becomes_a_formula() {
        assert_eq!(
            text_field("=HYPERLINK(\"x\")"),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(text_field("-1 dB"), "'-1 dB");
        assert_eq!(text_field("@home"), "'@home");
        assert_eq!(text_field("a = b"), "a = b");
    }
}
