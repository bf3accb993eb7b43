//! Index store and search: commit/reopen, SIGKILL during ingest, corruption, exactness, recall,
//! refusals, concurrency, heatmaps, hybrid.

mod batch_add;
mod corruption;
mod kernels;
mod page_table;
mod reader;
mod shards;
mod snippets;
mod tensor;

use pagesight::devtools::index_stress::{stress_file_hash, stress_page_text, stress_provenance};
use pagesight::index::maxsim::maxsim_naive;
use pagesight::index::synthetic::{Corpus, Rng};
use pagesight::index::vectors::round_f16;
use pagesight::index::{Index, IndexError, PageRecord, Provenance, Query, Scorer, SearchMode};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) fn prov(dim: usize) -> Provenance {
    Provenance {
        model: "test-model".into(),
        adapter: None,
        checkpoint_hash: "abc123".into(),
        quant: "none".into(),
        quant_scope: "all".into(),
        dtype: "f32".into(),
        lora: None,
        compute: None,
        max_visual_tokens: 768,
        query_prompt: "Query: ".into(),
        dim,
        random_weights: false,
    }
}

pub(crate) fn hash(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// Adds `pages` synthetic pages of file `i` (page vectors `corpus.page(i*100+p)`).
pub(crate) fn add_file(ix: &mut Index, corpus: &Corpus, i: u64, pages: u32, tokens: usize) {
    let h = hash(i);
    ix.begin_file(
        &h,
        Path::new(&format!("/docs/f{i}.pdf")),
        Some(&format!("Title {i}")),
        pages,
    )
    .unwrap();
    for p in 1..=pages {
        let v = corpus.page(i * 100 + p as u64, tokens);
        let text = format!("alpha{i} beta{i}x{p} common words");
        ix.add_page(PageRecord {
            file_hash: h,
            page: p,
            text: &text,
            vectors: &v,
            n_tokens: tokens,
            image_rows: 0..tokens,
            merged_grid: (1, tokens as u32),
        })
        .unwrap();
    }
    ix.finish_file(&h).unwrap();
}

pub(crate) fn query(v: Vec<f32>, nq: usize, text: &str, mode: SearchMode, scorer: Scorer) -> Query {
    Query {
        vectors: v,
        n_tokens: nq,
        text: text.into(),
        mode,
        top_k: 5,
        visual_weight: 0.5,
        scorer,
    }
}

#[test]
fn commit_reopen_delete_compact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let dim = 32;
    let corpus = Corpus::new(3, dim, 8);
    {
        let mut ix = Index::open_or_create(&dir, &prov(dim)).unwrap();
        add_file(&mut ix, &corpus, 1, 3, 20);
        ix.commit().unwrap();
        add_file(&mut ix, &corpus, 2, 2, 20);
        // Uncommitted pages are invisible to searchers and lost when the handle drops.
        assert_eq!(ix.searcher().unwrap().num_pages(), 3);
        ix.commit().unwrap();
        add_file(&mut ix, &corpus, 3, 2, 20);
    }
    let ix = Index::open(&dir).unwrap();
    assert!(ix.warnings().is_empty(), "{:?}", ix.warnings());
    let st = ix.stats();
    assert_eq!((st.files, st.pages, st.vectors), (2, 5, 100));
    assert!(ix.file_state(&hash(3)).is_none());
    let s = ix.searcher().unwrap();
    let q = corpus.page(2 * 100 + 2, 20)[..4 * dim].to_vec();
    let hits = s
        .search(&query(q.clone(), 4, "", SearchMode::Visual, Scorer::Exact))
        .unwrap();
    assert_eq!(
        (hits[0].file_path.as_path(), hits[0].page),
        (Path::new("/docs/f2.pdf"), 2)
    );
    assert_eq!(hits[0].title.as_deref(), Some("Title 2"));
    let t = s
        .search(&query(
            vec![],
            0,
            "beta1x3",
            SearchMode::Text,
            Scorer::Exact,
        ))
        .unwrap();
    assert_eq!((t.len(), t[0].page), (1, 3));
    drop(ix);

    let mut ix = Index::open_or_create(&dir, &prov(dim)).unwrap();
    ix.remove_file(&hash(1)).unwrap();
    ix.commit().unwrap();
    let s = ix.searcher().unwrap();
    assert_eq!(s.num_pages(), 2);
    assert!(s
        .search(&query(
            vec![],
            0,
            "beta1x3",
            SearchMode::Text,
            Scorer::Exact
        ))
        .unwrap()
        .is_empty());
    let before = s
        .search(&query(q.clone(), 4, "", SearchMode::Visual, Scorer::Exact))
        .unwrap();
    assert_eq!(ix.stats().deleted_pages, 3);
    ix.compact().unwrap();
    assert_eq!(ix.stats().deleted_pages, 0);
    assert_eq!(ix.stats().segments, 1);
    let after = ix
        .searcher()
        .unwrap()
        .search(&query(q, 4, "", SearchMode::Visual, Scorer::Exact))
        .unwrap();
    assert_eq!(before, after);
    drop(ix);
    let r = Index::verify(&dir).unwrap();
    assert!(r.ok && r.notes.is_empty(), "{r:?}");
}

/// Exact search equals naive MaxSim, also over a `resident` copy of the segments.
#[test]
fn search_scores_equal_naive_maxsim() {
    let tmp = tempfile::tempdir().unwrap();
    let dim = 64;
    let mut rng = Rng::new(11);
    let mut ix = Index::open_or_create(tmp.path(), &prov(dim)).unwrap();
    let h = hash(0);
    let n_pages = 25;
    ix.begin_file(&h, Path::new("/r.pdf"), None, n_pages)
        .unwrap();
    let mut pages = Vec::new();
    for p in 1..=n_pages {
        let n = 1 + rng.below(70) as usize;
        let v: Vec<f32> = (0..n * dim).map(|_| rng.normal()).collect();
        ix.add_page(PageRecord {
            file_hash: h,
            page: p,
            text: "",
            vectors: &v,
            n_tokens: n,
            image_rows: 0..0,
            merged_grid: (0, 0),
        })
        .unwrap();
        pages.push((p, n, round_f16(&v)));
    }
    ix.commit().unwrap();
    let nq = 13;
    let q: Vec<f32> = (0..nq * dim).map(|_| rng.normal()).collect();
    let mut want: Vec<(u32, f32)> = pages
        .iter()
        .map(|(p, n, v)| (*p, maxsim_naive(&q, nq, dim, v, *n)))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut qq = query(q, nq, "", SearchMode::Visual, Scorer::Exact);
    qq.top_k = n_pages as usize;
    // The mapped segments, and the same snapshot copied into huge-page memory.
    let mapped = ix.searcher().unwrap();
    let resident = mapped.resident().unwrap();
    for searcher in [&mapped, &resident] {
        let got = searcher.search(&qq).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.page, w.0);
            assert!((g.score - w.1).abs() < 1e-3, "{} vs {}", g.score, w.1);
        }
    }
}

#[test]
fn binary_prefilter_recall_is_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let dim = 128;
    let corpus = Corpus::new(5, dim, 64);
    let mut ix = Index::open_or_create(tmp.path(), &prov(dim)).unwrap();
    let n_pages = 300;
    let h = hash(9);
    ix.begin_file(&h, Path::new("/big.pdf"), None, n_pages)
        .unwrap();
    for p in 1..=n_pages {
        let v = corpus.page(p as u64, 48);
        ix.add_page(PageRecord {
            file_hash: h,
            page: p,
            text: "",
            vectors: &v,
            n_tokens: 48,
            image_rows: 0..0,
            merged_grid: (0, 0),
        })
        .unwrap();
    }
    ix.commit().unwrap();
    let s = ix.searcher().unwrap();
    let mut found = 0;
    let queries = 10;
    for qi in 0..queries {
        let q = corpus.query(1 + qi * 29, 16, qi);
        let mut exact = query(q.clone(), 16, "", SearchMode::Visual, Scorer::Exact);
        exact.top_k = 10;
        let mut bin = exact.clone();
        bin.scorer = Scorer::Binary { candidates: 60 };
        let e: Vec<u64> = s
            .search(&exact)
            .unwrap()
            .iter()
            .map(|h| h.page_id)
            .collect();
        let b: Vec<u64> = s.search(&bin).unwrap().iter().map(|h| h.page_id).collect();
        found += e.iter().filter(|id| b.contains(id)).count();
    }
    let recall = found as f64 / (10 * queries) as f64;
    println!("binary prefilter (60 of 300 candidates) recall@10 vs exact: {recall:.3}");
    assert!(recall >= 0.9, "recall@10 {recall}");
}

#[test]
fn another_models_vectors_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    Index::open_or_create(tmp.path(), &prov(16)).unwrap();
    let mut other = prov(16);
    other.checkpoint_hash = "def456".into();
    other.model = "other-model".into();
    let err = Index::open_or_create(tmp.path(), &other)
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, IndexError::ModelMismatch(_)));
    assert!(
        msg.contains("abc123") && msg.contains("def456") && msg.contains("other-model"),
        "{msg}"
    );
    let mut moved = prov(16);
    moved.model = "/elsewhere/same-checkpoint".into();
    Index::open_or_create(tmp.path(), &moved).expect("same checkpoint at another path is fine");
}

#[test]
fn a_second_writer_is_refused_as_busy_and_the_first_keeps_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = Corpus::new(3, 16, 16);
    let mut first = Index::open_or_create(tmp.path(), &prov(16)).unwrap();
    let err = Index::open_or_create(tmp.path(), &prov(16))
        .err()
        .expect("a second writer is refused");
    let msg = err.to_string();
    assert!(matches!(err, IndexError::Busy { .. }), "{err:?}");
    assert!(msg.contains("being written by another process"), "{msg}");
    add_file(&mut first, &corpus, 1, 2, 20);
    assert_eq!(first.commit().unwrap().pages_total, 2);
    drop(first);
    let reopened = Index::open_or_create(tmp.path(), &prov(16)).expect("free again once dropped");
    assert_eq!(reopened.stats().pages, 2);
}

#[test]
fn newer_and_foreign_formats_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let corpus = Corpus::new(1, 16, 4);
    {
        let mut ix = Index::open_or_create(&dir, &prov(16)).unwrap();
        add_file(&mut ix, &corpus, 1, 1, 8);
        ix.commit().unwrap();
    }
    let mpath = dir.join("MANIFEST");
    let clean = std::fs::read(&mpath).unwrap();
    let newer = String::from_utf8(clean.clone())
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 7");
    std::fs::write(&mpath, newer).unwrap();
    let e = Index::open(&dir).err().expect("newer refused");
    assert!(
        matches!(e, IndexError::NewerVersion { found: 7, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade pagesight"), "{e}");
    std::fs::write(&mpath, br#"{"format":"someone-else","format_version":1}"#).unwrap();
    assert!(matches!(
        Index::open(&dir).err().expect("foreign refused"),
        IndexError::Foreign { .. }
    ));
    std::fs::write(&mpath, &clean).unwrap();
    // A newer segment inside an otherwise fine index.
    let seg = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8] = 9;
    let crc = crc32fast::hash(&bytes[..124]);
    bytes[124..128].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, bytes).unwrap();
    assert!(matches!(
        Index::open(&dir).err().expect("newer segment refused"),
        IndexError::NewerVersion { found: 9, .. }
    ));
    // A folder with other things in it is not taken over.
    let other = tmp.path().join("photos");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"x").unwrap();
    assert!(matches!(
        Index::open_or_create(&other, &prov(16))
            .err()
            .expect("refused"),
        IndexError::Foreign { .. }
    ));
}

#[test]
fn concurrent_searches_see_whole_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    let dim = 16;
    let corpus = Corpus::new(4, dim, 4);
    let mut ix = Index::open_or_create(&dir, &prov(dim)).unwrap();
    let frozen = ix.searcher().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let mut looks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || looks == 0 {
                let s = Index::open(&dir).unwrap().searcher().unwrap();
                // Every file is committed with all its 3 pages at once: never a partial file.
                assert_eq!(s.num_pages() % 3, 0, "saw a partial commit");
                let t = s.text("common", 1000).unwrap();
                assert_eq!(t.len(), s.num_pages());
                looks += 1;
            }
            looks
        });
        for i in 0..8 {
            add_file(&mut ix, &corpus, i, 3, 10);
            let mid = ix.searcher().unwrap();
            assert_eq!(mid.num_pages(), 3 * i as usize, "uncommitted pages visible");
            ix.commit().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    });
    assert_eq!(frozen.num_pages(), 0, "a searcher is a snapshot");
    assert_eq!(ix.searcher().unwrap().num_pages(), 24);
}

#[test]
fn heatmaps_map_to_patches_also_when_pooled() {
    let dim = 16;
    let corpus = Corpus::new(8, dim, 6);
    let (gh, gw) = (3u32, 4u32);
    let n = 2 + 12 + 1;
    let v = corpus.page(77, n);
    for pool in [1, 2] {
        let tmp = tempfile::tempdir().unwrap();
        let mut ix = Index::open_or_create(tmp.path(), &prov(dim)).unwrap();
        ix.set_pool_factor(pool);
        let h = hash(1);
        ix.begin_file(&h, Path::new("/h.pdf"), None, 1).unwrap();
        ix.add_page(PageRecord {
            file_hash: h,
            page: 1,
            text: "",
            vectors: &v,
            n_tokens: n,
            image_rows: 2..14,
            merged_grid: (gh, gw),
        })
        .unwrap();
        ix.commit().unwrap();
        let s = ix.searcher().unwrap();
        let target = 7; // patch 7 = row 9
        let q = v[(2 + target) * dim..(3 + target) * dim].to_vec();
        let id = s
            .search(&query(q.clone(), 1, "", SearchMode::Visual, Scorer::Exact))
            .unwrap()[0]
            .page_id;
        let hm = s.heatmap(id, &q, 1).unwrap();
        assert_eq!(
            (
                hm.grid_h,
                hm.grid_w,
                hm.values.len(),
                hm.per_query_token.len()
            ),
            (gh, gw, 12, 1)
        );
        assert!(
            hm.values.iter().all(|x| x.is_finite()),
            "every patch covered: {:?}",
            hm.values
        );
        let best = hm.values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(hm.values[target], best, "pool {pool}: {:?}", hm.values);
        if pool == 1 {
            assert!((best - 1.0).abs() < 1e-2);
        }
    }
}

#[test]
fn hybrid_fuses_text_and_visual() {
    let tmp = tempfile::tempdir().unwrap();
    let dim = 32;
    let corpus = Corpus::new(6, dim, 12);
    let mut ix = Index::open_or_create(tmp.path(), &prov(dim)).unwrap();
    for i in 1..=6 {
        add_file(&mut ix, &corpus, i, 2, 16);
    }
    ix.commit().unwrap();
    let s = ix.searcher().unwrap();
    let q = corpus.page(4 * 100 + 1, 16)[..3 * dim].to_vec();
    let hits = s
        .search(&query(q, 3, "beta2x2", SearchMode::Hybrid, Scorer::Exact))
        .unwrap();
    let top2: Vec<(String, u32)> = hits
        .iter()
        .take(2)
        .map(|h| (h.file_path.display().to_string(), h.page))
        .collect();
    assert!(
        top2.contains(&("/docs/f4.pdf".into(), 1)) && top2.contains(&("/docs/f2.pdf".into(), 2)),
        "{top2:?}"
    );
}

fn stress(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pagesight"));
    c.args(["__index-stress", "--index"])
        .arg(dir)
        .args(["--files", "6", "--pages", "5", "--seed", "1"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

#[test]
fn sigkill_during_ingest_loses_nothing_committed_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ix");
    // How long an uninterrupted run takes, to spread the kills over it.
    let t0 = std::time::Instant::now();
    let out = stress(&tmp.path().join("full")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full_ms = t0.elapsed().as_millis() as u64;
    let mut rng = Rng::new(99);
    let mut committed_floor = 0u64;
    let trials = 12;
    let (mut mid_ingest, mut between_commits) = (0, 0);
    for _ in 0..trials {
        let mut child = stress(&dir).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.below(full_ms.max(20))));
        let _ = child.kill(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        let reported: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("committed ")?.parse().ok())
            .max()
            .unwrap_or(0);
        committed_floor = committed_floor.max(reported);
        if !dir.join("MANIFEST").exists() {
            continue; // killed before the first commit
        }
        // Reopen read-only: everything reported committed is there, each page exactly once.
        let ix = Index::open(&dir).unwrap_or_else(|e| panic!("reopen after kill: {e}"));
        let s = ix.searcher().unwrap();
        mid_ingest += usize::from(s.num_pages() < 30);
        between_commits += usize::from(!ix.warnings().is_empty());
        assert!(
            s.num_pages() as u64 >= committed_floor,
            "lost pages: {} < {committed_floor}",
            s.num_pages()
        );
        let mut seen = std::collections::HashSet::new();
        for (h, st) in ix.files() {
            assert_eq!(
                st.pages_committed,
                st.first_missing_page.map_or(st.page_count, |m| m - 1)
            );
            assert!(seen.insert(h));
        }
        let t = s
            .text("file0 OR file1 OR file2 OR file3 OR file4 OR file5", 1000)
            .unwrap();
        assert_eq!(t.len(), s.num_pages(), "text and vectors disagree");
        committed_floor = s.num_pages() as u64;
    }
    println!("sigkill: {trials} kills over a {full_ms} ms ingest, {mid_ingest} left it unfinished, {between_commits} between the text and manifest commits");
    let out = stress(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "resume: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Index::verify(&dir).unwrap();
    assert!(r.ok, "{r:?}");
    let resumed = Index::open(&dir).unwrap();
    let full = Index::open(&tmp.path().join("full")).unwrap();
    assert_eq!(resumed.stats().pages, 30);
    let (a, b) = (resumed.searcher().unwrap(), full.searcher().unwrap());
    for i in 0..6u64 {
        assert!(
            resumed
                .file_state(&stress_file_hash(1, i))
                .unwrap()
                .complete
        );
        for p in 1..=5u32 {
            let t = stress_page_text(i, p);
            let ha = a.text(t.split(' ').nth(2).unwrap(), 5).unwrap();
            let hb = b.text(t.split(' ').nth(2).unwrap(), 5).unwrap();
            assert_eq!(
                (ha.len(), hb.len()),
                (1, 1),
                "page {p} of file {i} present exactly once"
            );
            assert_eq!(a.page_text(ha[0].0).unwrap(), t);
        }
    }
    // Same vectors: the same query ranks the same pages with the same scores.
    let corpus = Corpus::new(1, 32, 16);
    let q = Query {
        vectors: corpus.query(2003, 6, 0),
        n_tokens: 6,
        text: String::new(),
        mode: SearchMode::Visual,
        top_k: 30,
        visual_weight: 0.5,
        scorer: Scorer::Exact,
    };
    let key = |hs: Vec<pagesight::index::Hit>| {
        hs.into_iter()
            .map(|h| (h.file_path, h.page, h.score))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(a.search(&q).unwrap()), key(b.search(&q).unwrap()));
    let _ = stress_provenance(32);
}
