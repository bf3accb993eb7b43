//! The candle tensor scorer (GPU MaxSim's code path) on the CPU device against exact MaxSim.

use super::{hash, prov, query};
use pagesight::index::search::CpuExact;
use pagesight::index::synthetic::{Corpus, Rng};
use pagesight::index::tensor_scorer::{TensorKernel, TensorScorer};
use pagesight::index::{maxsim, Index, PageRecord, PageScorer, Scorer, SearchMode};
use std::path::Path;

#[test]
fn tensor_scorer_on_cpu_equals_exact_maxsim() {
    let tmp = tempfile::tempdir().unwrap();
    let dim = 128;
    let corpus = Corpus::new(21, dim, 32);
    let mut rng = Rng::new(5);
    let mut ix = Index::open_or_create(tmp.path(), &prov(dim)).unwrap();
    let n_pages = 60;
    let h = hash(77);
    ix.begin_file(&h, Path::new("/t.pdf"), None, n_pages)
        .unwrap();
    for p in 1..=n_pages {
        // Lengths spread over several length groups, including 1 and group edges.
        let n = [1, 31, 32, 33, 64, 100, 750][p as usize % 7] + rng.below(3) as usize;
        let v = corpus.page(p as u64, n);
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
    let s = ix.searcher().unwrap();
    let views: Vec<_> = (0..s.num_pages()).map(|i| s.page_view(i)).collect();
    let nq = 13;
    let q = corpus.query(7, nq, 1);
    let cpu = CpuExact(maxsim::detected_isa())
        .score_all(&q, nq, dim, &views)
        .unwrap();
    let device = candle_core::Device::Cpu;
    // Small chunks: several chunks per length group.
    let mut exact = TensorScorer::new(&s, &device, candle_core::DType::F32, 7).unwrap();
    assert_eq!(exact.resident_pages(), n_pages as usize);
    // The fused kernel is CUDA-only: the CPU runs the matmul path and refuses to switch.
    assert_eq!(exact.kernel(), TensorKernel::Matmul);
    assert!(exact.fused_unavailable().unwrap().contains("CUDA"));
    assert!(exact.set_kernel(TensorKernel::Fused).is_err());
    exact.set_kernel(TensorKernel::Matmul).unwrap();
    assert!(exact.name().ends_with("-matmul"), "{}", exact.name());
    let got = exact.score_all(&q, nq, dim, &views).unwrap();
    for (g, w) in got.iter().zip(&cpu) {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "f32: {g} vs {w}");
    }
    // f16 matmul: each similarity rounded to f16 (~5e-4 relative) before the max.
    let half = TensorScorer::new(&s, &device, candle_core::DType::F16, 16).unwrap();
    let got = half.score_all(&q, nq, dim, &views).unwrap();
    for (g, w) in got.iter().zip(&cpu) {
        assert!((g - w).abs() <= 2e-3 * nq as f32, "f16: {g} vs {w}");
    }
    // Through the searcher: exact ranking, and the binary prefilter's rerank of a subset.
    for scorer in [Scorer::Exact, Scorer::Binary { candidates: 20 }] {
        let mut qq = query(q.clone(), nq, "", SearchMode::Visual, scorer);
        qq.top_k = 10;
        let want = s
            .visual_with(&qq, 10, &CpuExact(maxsim::detected_isa()))
            .unwrap();
        let got = s.visual_with(&qq, 10, &exact).unwrap();
        let ids = |v: &[(u64, f32)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&want), "{scorer:?}");
    }
}
