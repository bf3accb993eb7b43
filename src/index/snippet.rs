//! A result's text snippet: the part of its page's text where the query's terms are densest, with
//! the terms marked. The page text comes from the segments (each page's metadata blob, the
//! index's own copy, under the page checksum), so the tantivy side stores no text and every index
//! ever written has snippets. Terms are matched by the text index's own analyser (tantivy's
//! `SnippetGenerator`), so what is highlighted is what BM25 matched.

use serde::{Deserialize, Serialize};
use std::ops::Range;
use tantivy::snippet::SnippetGenerator;

/// Longest snippet, in characters (ellipses aside).
pub const SNIPPET_CHARS: usize = 240;

const ELLIPSIS: &str = "…";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snippet {
    /// One line of page text: whitespace runs collapsed to one space, "…" where it was cut.
    pub text: String,
    /// Byte ranges of `text` that are query terms, in order, not overlapping.
    pub highlighted: Vec<Range<usize>>,
}

impl Snippet {
    /// The text cut into pieces, each with whether it is a query term.
    pub fn pieces(&self) -> Vec<(&str, bool)> {
        let mut out = Vec::with_capacity(self.highlighted.len() * 2 + 1);
        let mut at = 0;
        for r in &self.highlighted {
            if r.start > at {
                out.push((&self.text[at..r.start], false));
            }
            out.push((&self.text[r.clone()], true));
            at = r.end;
        }
        if at < self.text.len() {
            out.push((&self.text[at..], false));
        }
        out
    }

    /// The text with each term between `open` and `close` (a terminal's bold, Markdown's `**`).
    pub fn marked(&self, open: &str, close: &str) -> String {
        self.pieces()
            .into_iter()
            .map(|(s, term)| {
                if term {
                    format!("{open}{s}{close}")
                } else {
                    s.to_owned()
                }
            })
            .collect()
    }
}

/// The snippet of one page's `text`: around the query's terms when `generator` finds any, else
/// the page's beginning (a page found by its picture, or by its title). None for a page without
/// text (a scan without a text layer).
pub(crate) fn page_snippet(generator: Option<&SnippetGenerator>, text: &str) -> Option<Snippet> {
    if text.trim().is_empty() {
        return None;
    }
    let found = generator.map(|g| g.snippet(text)).filter(|s| !s.is_empty());
    let (start, fragment, ranges) = match &found {
        Some(s) => {
            // tantivy hands back a copy of the fragment; where it sits tells whether it was cut
            // (a repeated passage may be placed at its first occurrence: only the "…" differ).
            let start = text.find(s.fragment()).unwrap_or(0);
            (start, s.fragment(), s.highlighted().to_vec())
        }
        None => {
            let end = text
                .char_indices()
                .nth(SNIPPET_CHARS)
                .map_or(text.len(), |(i, _)| i);
            (0, &text[..end], Vec::new())
        }
    };
    let cut_before = !text[..start].trim().is_empty();
    let cut_after = !text[start + fragment.len()..].trim().is_empty();
    Some(one_line(fragment, &ranges, cut_before, cut_after))
}

/// `fragment` with its whitespace runs collapsed (ends trimmed) and ellipses where it was cut;
/// `ranges` (byte ranges of `fragment`) are carried over to the new text.
fn one_line(fragment: &str, ranges: &[Range<usize>], cut_before: bool, cut_after: bool) -> Snippet {
    let mut text = String::with_capacity(fragment.len() + 8);
    if cut_before {
        text.push_str(ELLIPSIS);
    }
    // `map[i]`: where byte i of `fragment` lands in `text` (a collapsed space maps to the next
    // kept character), so a range keeps its ends.
    let mut map = vec![0usize; fragment.len() + 1];
    let prefix = text.len();
    let mut pending_space = false;
    for (i, c) in fragment.char_indices() {
        if c.is_whitespace() {
            pending_space = true;
            map[i] = text.len() + usize::from(text.len() > prefix);
            continue;
        }
        if pending_space && text.len() > prefix {
            text.push(' ');
        }
        pending_space = false;
        map[i] = text.len();
        text.push(c);
    }
    map[fragment.len()] = text.len();
    let highlighted = ranges
        .iter()
        .map(|r| map[r.start]..end_of(&map, fragment, r.end))
        .filter(|r| r.start < r.end)
        .collect();
    if cut_after {
        text.push_str(ELLIPSIS);
    }
    Snippet { text, highlighted }
}

/// Where the byte before `end` (the last of a term) ends in the new text.
fn end_of(map: &[usize], fragment: &str, end: usize) -> usize {
    match fragment[..end].char_indices().next_back() {
        Some((i, c)) => map[i] + c.len_utf8(),
        None => map[end],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(s: &Snippet) -> Vec<&str> {
        s.highlighted.iter().map(|r| &s.text[r.clone()]).collect()
    }

    #[test]
    fn whitespace_collapses_and_terms_keep_their_place() {
        let frag = "  the  Attention\n\nheads  of é-layer ";
        let a = frag.find("Attention").unwrap();
        let e = frag.find("é").unwrap();
        let s = one_line(frag, &[a..a + 9, e..e + 2], false, false);
        assert_eq!(s.text, "the Attention heads of é-layer");
        assert_eq!(terms(&s), ["Attention", "é"]);
        assert_eq!(s.marked("[", "]"), "the [Attention] heads of [é]-layer");
    }

    #[test]
    fn cuts_are_marked_with_ellipses() {
        let word = 0..4;
        let s = one_line("word here", &[word], true, true);
        assert_eq!(s.text, "…word here…");
        assert_eq!(terms(&s), ["word"]);
        assert_eq!(
            s.pieces(),
            [("…", false), ("word", true), (" here…", false)]
        );
    }

    #[test]
    fn a_page_without_a_match_shows_its_beginning_and_one_without_text_nothing() {
        let long = "word ".repeat(200);
        let s = page_snippet(None, &long).unwrap();
        assert!(s.text.ends_with('…'), "{}", s.text);
        assert!(s.text.chars().count() <= SNIPPET_CHARS + 1);
        assert!(s.highlighted.is_empty());
        assert_eq!(page_snippet(None, "short page").unwrap().text, "short page");
        assert_eq!(page_snippet(None, " \n "), None);
    }
}
