//! A snapshot's pages sharded over several scorers (`ShardedScorer`, what several cards run):
//! the ranking is exactly the one a single scorer over every page gives, for an even split, an
//! uneven one and one with an empty shard, for the full scan and a prefilter's candidates (bit
//! for bit with the CPU kernels; the tensor scorer's CPU matmul may move a score's last bits).

use super::{hash, prov, query};
use pagesight::index::search::{CpuExact, PageView, Searcher};
use pagesight::index::sharded_scorer::{Shard, ShardedScorer};
use pagesight::index::shards::split;
use pagesight::index::synthetic::{Corpus, Rng};
use pagesight::index::tensor_scorer::TensorScorer;
use pagesight::index::{maxsim, Index, PageRecord, PageScorer, Scorer, SearchMode};
use std::ops::Range;
use std::path::Path;

const DIM: usize = 128;

/// An index of pages of many lengths (several length groups), some scoring alike.
fn snapshot(dir: &Path) -> (Searcher, Corpus) {
    let corpus = Corpus::new(33, DIM, 24);
    let mut rng = Rng::new(9);
    let mut ix = Index::open_or_create(dir, &prov(DIM)).unwrap();
    let n_pages = 90;
    let h = hash(5);
    ix.begin_file(&h, Path::new("/s.pdf"), None, n_pages)
        .unwrap();
    for p in 1..=n_pages {
        let n = [1, 17, 32, 33, 70, 130][p as usize % 6] + rng.below(4) as usize;
        // Every tenth page holds the same vectors: equal scores, ties broken by the page id.
        let (source, n) = if p % 10 == 0 { (1, 40) } else { (p as u64, n) };
        let v = corpus.page(source, n);
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
    }
    ix.commit().unwrap();
    (ix.searcher().unwrap(), corpus)
}

fn views(s: &Searcher) -> Vec<PageView<'_>> {
    (0..s.num_pages()).map(|i| s.page_view(i)).collect()
}

/// Shards over `runs`, each scored by what `make` builds from its pages.
fn sharded(
    s: &Searcher,
    runs: &[Range<usize>],
    make: impl Fn(&[PageView<'_>]) -> (Box<dyn PageScorer>, u64),
) -> ShardedScorer {
    let all = views(s);
    let shards = runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (scorer, bytes) = make(&all[r.clone()]);
            Shard {
                device: format!("stand-in {i}"),
                pages: r.clone(),
                bytes,
                scorer,
            }
        })
        .collect();
    ShardedScorer::new(all.iter().map(|v| v.page_id).collect(), shards).unwrap()
}

/// Exact ranking and the prefilter's rerank, top 10 and more than a shard holds, with `got`
/// against `want`: the same ids and scores within `ulps` units in the last place (0: bit for
/// bit).
fn assert_same_rankings(
    s: &Searcher,
    corpus: &Corpus,
    want: &dyn PageScorer,
    got: &dyn PageScorer,
    ulps: u32,
) {
    for (target, nq) in [(3u64, 13usize), (10, 24), (47, 5)] {
        let q = corpus.query(target, nq, target);
        for scorer in [Scorer::Exact, Scorer::Binary { candidates: 25 }] {
            for k in [1, 10, 60] {
                let qq = query(q.clone(), nq, "", SearchMode::Visual, scorer);
                let a = s.visual_with(&qq, k, want).unwrap();
                let b = s.visual_with(&qq, k, got).unwrap();
                let ids = |v: &[(u64, f32)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
                assert_eq!(ids(&b), ids(&a), "{scorer:?}, k = {k}, query {target}");
                let scores = |v: &[(u64, f32)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
                assert_close(&scores(&b), &scores(&a), ulps);
            }
        }
        // Every page's score, in the query's order, as one scorer gives them.
        let all = views(s);
        assert_close(
            &got.score_all(&q, nq, DIM, &all).unwrap(),
            &want.score_all(&q, nq, DIM, &all).unwrap(),
            ulps,
        );
    }
}

fn assert_close(got: &[f32], want: &[f32], ulps: u32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let apart = (g.to_bits() as i64 - w.to_bits() as i64).unsigned_abs();
        assert!(apart <= ulps as u64, "{g} against {w}: {apart} ulps apart");
    }
}

#[test]
fn cpu_shards_rank_exactly_as_the_cpu_kernels_over_every_page() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, corpus) = snapshot(tmp.path());
    let one = CpuExact(maxsim::detected_isa());
    let cpu = |_: &[PageView<'_>]| -> (Box<dyn PageScorer>, u64) {
        (Box::new(CpuExact(maxsim::detected_isa())), 0)
    };
    let bytes = TensorScorer::page_bytes_for(&s);
    let n = s.num_pages();
    let even = split(&bytes, &[u64::MAX / 2, u64::MAX / 2]).unwrap();
    assert_eq!(even.len(), 2);
    assert!(even[0].len().abs_diff(even[1].len()) < n / 5, "{even:?}");
    let need: u64 = bytes.iter().sum();
    let uneven = split(&bytes, &[need / 4, need]).unwrap();
    assert!(uneven[0].len() < uneven[1].len() / 2, "{uneven:?}");
    for runs in [even, uneven, vec![0..0, 0..n, n..n], vec![0..1, 1..2, 2..n]] {
        let got = sharded(&s, &runs, cpu);
        assert_eq!(got.shards().len(), runs.len());
        assert_same_rankings(&s, &corpus, &one, &got, 0);
    }
}

#[test]
fn tensor_scorer_shards_rank_exactly_as_one_tensor_scorer_over_every_page() {
    // What the cards run, on the CPU device: each shard's tiles in tensors of its own.
    let tmp = tempfile::tempdir().unwrap();
    let (s, corpus) = snapshot(tmp.path());
    let device = candle_core::Device::Cpu;
    let f32 = candle_core::DType::F32;
    let one = TensorScorer::new(&s, &device, f32, 16).unwrap();
    let bytes = TensorScorer::page_bytes_for(&s);
    let need: u64 = bytes.iter().sum();
    let runs = split(&bytes, &[need / 3, need / 3, need]).unwrap();
    let got = sharded(&s, &runs, |v| {
        let t = TensorScorer::from_views(v, DIM, &device, f32, 16).unwrap();
        let held = t.resident_bytes();
        (Box::new(t), held)
    });
    let held: u64 = got.shards().iter().map(|sh| sh.bytes).sum();
    assert_eq!(
        held,
        one.resident_bytes(),
        "the shards hold every page once"
    );
    // candle's CPU matmul sums a dot product in an order that depends on the shape of the
    // tensor it is in, so a page scored in a smaller chunk may differ in its last bits; the
    // ranking does not.
    assert_same_rankings(&s, &corpus, &one, &got, 8);
}

#[test]
fn shards_that_miss_pages_or_overlap_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (s, _) = snapshot(tmp.path());
    let ids: Vec<u64> = views(&s).iter().map(|v| v.page_id).collect();
    let shard = |pages: Range<usize>| Shard {
        device: "cpu".into(),
        pages,
        bytes: 0,
        scorer: Box::new(CpuExact(maxsim::detected_isa())),
    };
    let n = ids.len();
    assert!(ShardedScorer::new(ids.clone(), vec![shard(0..10), shard(11..n)]).is_err());
    assert!(ShardedScorer::new(ids.clone(), vec![shard(0..10), shard(5..n)]).is_err());
    assert!(ShardedScorer::new(ids.clone(), vec![shard(0..n - 1)]).is_err());
    assert!(ShardedScorer::new(ids, vec![shard(0..n)]).is_ok());
}
