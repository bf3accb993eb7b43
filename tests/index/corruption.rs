//! Corrupted index files: every answer is refused or right, never a panic or a wrong one.

use super::*;

/// Per query, its hits as (page id, page, score · 1e4 or 0).
type Answers = Vec<Vec<(u64, u32, i64)>>;

/// Answers of a few fixed queries, for comparing a damaged index with the clean one.
fn answers(dir: &Path, corpus: &Corpus) -> Result<Answers, IndexError> {
    let ix = Index::open(dir)?;
    let s = ix.searcher()?;
    let mut out = Vec::new();
    for (qi, mode, scorer) in [
        (0u64, SearchMode::Visual, Scorer::Exact),
        (1, SearchMode::Visual, Scorer::Binary { candidates: 3 }),
        (2, SearchMode::Text, Scorer::Exact),
        (3, SearchMode::Hybrid, Scorer::Exact),
    ] {
        let q = corpus.query(100 + qi, 4, qi);
        let hits = s.search(&query(q, 4, "alpha1 beta2x1", mode, scorer))?;
        // BM25 scores depend on collection statistics that a rebuilt text index (without the
        // deleted documents) computes differently; ranks and pages must still agree.
        let keep_score = mode != SearchMode::Text;
        out.push(
            hits.iter()
                .map(|h| {
                    (
                        h.page_id,
                        h.page,
                        if keep_score {
                            (h.score * 1e4) as i64
                        } else {
                            0
                        },
                    )
                })
                .collect(),
        );
    }
    Ok(out)
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else if std::fs::metadata(&p).unwrap().len() > 0 {
            out.push(p);
        }
    }
}

/// Flips byte `at` of `f` (XOR `mask`), checks that verify and the fixed queries give an error
/// or exactly the clean answers (never a panic, never a different answer), and restores the
/// file. Returns (flagged by verify, refused by open/search).
fn flip_and_check(
    dir: &Path,
    corpus: &Corpus,
    clean: &[Vec<(u64, u32, i64)>],
    f: &Path,
    original: &[u8],
    at: usize,
    mask: u8,
) -> (bool, bool) {
    let mut bytes = original.to_vec();
    bytes[at] ^= mask;
    std::fs::write(f, &bytes).unwrap();
    let outcome =
        std::panic::catch_unwind(|| (Index::verify(dir).map(|r| r.ok), answers(dir, corpus)));
    std::fs::write(f, original).unwrap();
    let (verified_ok, got) = outcome.unwrap_or_else(|_| {
        panic!(
            "panic after flipping byte {at} (^{mask:#04x}) of {}",
            f.display()
        )
    });
    if let Ok(a) = &got {
        assert_eq!(
            a,
            clean,
            "wrong answers after flipping byte {at} (^{mask:#04x}) of {}",
            f.display()
        );
    }
    (verified_ok.map_or(true, |ok| !ok), got.is_err())
}

/// Every byte of every segment and of the manifest, and a seeded sample of the text index's
/// files: flipped one at a time, each gives a reported error or exactly the clean answers.
#[test]
fn flipped_bytes_are_reported_never_wrong_or_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let dim = 16;
    let corpus = Corpus::new(2, dim, 6);
    {
        let mut ix = Index::open_or_create(&dir, &prov(dim)).unwrap();
        add_file(&mut ix, &corpus, 1, 2, 12);
        ix.commit().unwrap();
        add_file(&mut ix, &corpus, 2, 2, 12);
        add_file(&mut ix, &corpus, 3, 1, 12);
        ix.commit().unwrap();
        ix.remove_file(&hash(3)).unwrap();
        ix.commit().unwrap();
    }
    let clean = answers(&dir, &corpus).unwrap();
    assert!(Index::verify(&dir).unwrap().ok);
    let mut files = Vec::new();
    all_files(&dir, &mut files);
    files.sort();
    let is_ours = |p: &Path| {
        p.file_name().is_some_and(|n| n == "MANIFEST") || p.extension().is_some_and(|e| e == "psv")
    };
    let mut rng = Rng::new(2024);
    let started = std::time::Instant::now();
    let (mut trials, mut flagged, mut refused) = (0usize, 0usize, 0usize);
    let (mut our_bytes, mut text_trials) = (0usize, 0usize);
    for f in &files {
        let original = std::fs::read(f).unwrap();
        // Our files: every byte, each with a seeded nonzero mask (one bit or several).
        // Tantivy's files (derived data, rebuilt from the manifest): a seeded sample.
        let positions: Vec<usize> = if is_ours(f) {
            our_bytes += original.len();
            (0..original.len()).collect()
        } else {
            let n = 6.min(original.len());
            text_trials += n;
            (0..n)
                .map(|_| rng.below(original.len() as u64) as usize)
                .collect()
        };
        for at in positions {
            let mask = if rng.below(2) == 0 {
                1 << rng.below(8)
            } else {
                1 + rng.below(255) as u8
            };
            let (fl, rf) = flip_and_check(&dir, &corpus, &clean, f, &original, at, mask);
            trials += 1;
            flagged += fl as usize;
            refused += rf as usize;
        }
    }
    let segments = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "psv"))
        .count();
    println!(
        "corruption: {trials} single-byte flips in {:.1} s: every byte of {segments} segments \
         and the manifest ({our_bytes} bytes) + {text_trials} in {} text-index files; \
         {flagged} flagged by verify, {refused} refused at open/search, 0 panics, 0 wrong answers",
        started.elapsed().as_secs_f64(),
        files.len() - segments - 1
    );
    assert!(segments >= 2 && our_bytes > 1000);
    assert!(flagged > trials / 2);
}
