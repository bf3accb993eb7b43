//! The long-lived reader: checked once, reopened only by a commit, never serving a damaged segment.

use super::*;
use pagesight::index::IndexReader;

fn visual(corpus: &Corpus, dim: usize, page: u64) -> Query {
    let q = corpus.page(page, 20)[..4 * dim].to_vec();
    query(q, 4, "", SearchMode::Visual, Scorer::Exact)
}

#[test]
fn a_reader_checks_each_segment_once_and_reopens_only_after_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let dim = 32;
    let corpus = Corpus::new(5, dim, 8);
    let mut writer = Index::open_or_create(&dir, &prov(dim)).unwrap();
    add_file(&mut writer, &corpus, 1, 3, 20);
    writer.commit().unwrap();
    add_file(&mut writer, &corpus, 2, 2, 20);
    writer.commit().unwrap();

    let mut reader = IndexReader::open(&dir).unwrap();
    assert_eq!(reader.segments_checked(), 2);
    for _ in 0..3 {
        assert_eq!(reader.searcher().unwrap().num_pages(), 5);
    }
    assert_eq!(reader.reloads(), 0, "no commit, no reopen");

    // Pages the writer has not committed are not seen; its commit is, on the next search.
    add_file(&mut writer, &corpus, 3, 2, 20);
    assert_eq!(reader.searcher().unwrap().num_pages(), 5);
    writer.commit().unwrap();
    let s = reader.searcher().unwrap();
    assert_eq!(s.num_pages(), 7);
    assert_eq!(reader.reloads(), 1);
    assert_eq!(
        reader.segments_checked(),
        3,
        "only the new segment is mapped and checked again"
    );
    let hits = s.search(&visual(&corpus, dim, 3 * 100 + 2)).unwrap();
    assert_eq!(
        (hits[0].file_path.as_path(), hits[0].page),
        (Path::new("/docs/f3.pdf"), 2)
    );
    assert_eq!(reader.stats().pages, 7);

    // A removal is a commit too; a compaction replaces every segment.
    writer.remove_file(&hash(1)).unwrap();
    writer.commit().unwrap();
    assert_eq!(reader.searcher().unwrap().num_pages(), 4);
    writer.compact().unwrap();
    assert_eq!(reader.searcher().unwrap().num_pages(), 4);
    assert_eq!(reader.reloads(), 3);
    assert_eq!(reader.segments_checked(), 4);
}

/// The bytes of `dir`'s newest segment file and its path.
fn newest_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[test]
fn a_flipped_byte_in_a_segment_fails_verify_and_no_search_serves_its_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let dim = 32;
    let corpus = Corpus::new(6, dim, 8);
    let mut writer = Index::open_or_create(&dir, &prov(dim)).unwrap();
    add_file(&mut writer, &corpus, 1, 3, 20);
    writer.commit().unwrap();
    let mut reader = IndexReader::open(&dir).unwrap();
    let before = reader.searcher().unwrap();
    assert_eq!(before.num_pages(), 3);
    let ids: Vec<u64> = before.live_pages().iter().map(|p| p.0).collect();
    before.verify_pages(ids.iter().copied()).unwrap();

    // Bit rot under a searcher that checked its segment already: the page is refused when served.
    let seg = newest_segment(&dir);
    let clean = std::fs::read(&seg).unwrap();
    let mut rotten = clean.clone();
    let at = rotten.len() - 100;
    rotten[at] ^= 0x04;
    std::fs::write(&seg, &rotten).unwrap();
    let last = *ids.iter().max().unwrap();
    assert!(matches!(
        before.verify_pages([last]),
        Err(IndexError::Corrupt { .. })
    ));
    // …and the reader, seeing the file changed, maps and checks it again.
    assert!(matches!(reader.searcher(), Err(IndexError::Corrupt { .. })));
    std::fs::write(&seg, &clean).unwrap();
    assert_eq!(reader.searcher().unwrap().num_pages(), 3);

    // A commit brings a segment damaged on disk (one bit of a page's vectors).
    add_file(&mut writer, &corpus, 2, 2, 20);
    writer.commit().unwrap();
    let seg = newest_segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    let report = Index::verify(&dir).unwrap();
    assert!(!report.ok, "verify must flag the flipped byte");
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        report.problems.iter().any(|p| p.contains(&name)),
        "{:?}",
        report.problems
    );
    // The running reader refuses the new snapshot rather than serve its pages…
    let e = reader.searcher().err().expect("damaged segment refused");
    assert!(matches!(e, IndexError::Corrupt { .. }), "{e}");
    assert!(
        e.to_string().contains(&name) && e.to_string().contains("index verify"),
        "{e}"
    );
    // …and so does a fresh one.
    let e = IndexReader::open(&dir)
        .err()
        .expect("damaged segment refused");
    assert!(e.to_string().contains(&name), "{e}");
    drop(writer);
}
