//! Result snippets: the page text the segments hold, cut around the query's terms with the terms
//! marked, for every index (the text side stores none, so an index made before snippets has them).

use super::{hash, prov};
use pagesight::index::synthetic::Corpus;
use pagesight::index::{Index, PageRecord};
use std::path::Path;

const PAGES: [&str; 3] = [
    "Chapter 1\n\nIntroduction to   retrieval. Nothing here about the topic.",
    "Multi-head ATTENTION splits the model into heads; each attention head sees the whole \
     sequence. Later paragraphs discuss optimisers, schedules, data, evaluation and many other \
     things that have nothing to do with the query at all, so that the page is longer than one \
     snippet and the cut shows, with more words after the last term to make sure of it.",
    "",
];

fn one_file_index(dir: &Path) -> Index {
    let dim = 8;
    let corpus = Corpus::new(1, dim, 4);
    let mut ix = Index::open_or_create(dir, &prov(dim)).unwrap();
    let h = hash(1);
    ix.begin_file(&h, Path::new("/docs/paper.pdf"), None, PAGES.len() as u32)
        .unwrap();
    for (i, text) in PAGES.iter().enumerate() {
        let v = corpus.page(i as u64, 4);
        ix.add_page(PageRecord {
            file_hash: h,
            page: i as u32 + 1,
            text,
            vectors: &v,
            n_tokens: 4,
            image_rows: 0..4,
            merged_grid: (1, 4),
        })
        .unwrap();
    }
    ix.finish_file(&h).unwrap();
    ix.commit().unwrap();
    ix
}

fn terms(s: &pagesight::index::Snippet) -> Vec<&str> {
    s.highlighted.iter().map(|r| &s.text[r.clone()]).collect()
}

#[test]
fn text_hits_carry_their_terms_highlighted() {
    let tmp = tempfile::tempdir().unwrap();
    let ix = one_file_index(tmp.path());
    let s = ix.searcher().unwrap();
    let hits = s.text("attention heads", 5).unwrap();
    let ids: Vec<u64> = hits.iter().map(|h| h.0).collect();
    assert_eq!(ids.len(), 1, "{hits:?}");
    let sn = s
        .snippets(&ids, "attention heads")
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(sn.text.starts_with("Multi-head ATTENTION"), "{}", sn.text);
    assert!(sn.text.ends_with('…'), "cut, and says so: {}", sn.text);
    // Matched as BM25 matches: case-folded, the exact word (no stemming: "head" is not "heads").
    assert_eq!(terms(&sn), ["ATTENTION", "heads", "attention"]);
}

#[test]
fn pages_without_a_match_show_their_beginning_and_empty_pages_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ix = one_file_index(tmp.path());
    let s = ix.searcher().unwrap();
    let ids: Vec<u64> = s.live_pages().iter().map(|p| p.0).collect();
    let got = s.snippets(&ids, "attention").unwrap();
    let first = got[0].as_ref().unwrap();
    assert_eq!(
        first.text,
        "Chapter 1 Introduction to retrieval. Nothing here about the topic."
    );
    assert!(first.highlighted.is_empty());
    assert!(got[2].is_none(), "a page without text has no snippet");
}

#[test]
fn snippets_come_from_the_segments_when_the_text_index_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    drop(one_file_index(tmp.path()));
    // An index whose text side is gone (or was written by another version) is rebuilt from the
    // segments on open; the snippets are the same.
    std::fs::remove_dir_all(tmp.path().join("text")).unwrap();
    let ix = Index::open(tmp.path()).unwrap();
    assert!(
        ix.warnings().iter().any(|w| w.contains("rebuilt")),
        "{:?}",
        ix.warnings()
    );
    let s = ix.searcher().unwrap();
    let ids: Vec<u64> = s
        .text("retrieval", 5)
        .unwrap()
        .iter()
        .map(|h| h.0)
        .collect();
    let sn = s.snippets(&ids, "retrieval").unwrap().remove(0).unwrap();
    assert_eq!(terms(&sn), ["retrieval"]);
}
