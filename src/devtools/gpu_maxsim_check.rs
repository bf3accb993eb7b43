//! The fused MaxSim kernel on the GPU (selftest part), both ways of loading tokens, against the
//! CPU's exact MaxSim on the same stored pages: a real index in a temporary folder, pages of many
//! lengths (1 token, group edges, a full page) so that each warp walks several pages of
//! different lengths, for 64-, 96- and 128-d vectors (with and without the shared-memory
//! swizzle) and queries of one 16-row tile, one 32-row tile and two 32-row groups.

use super::gpu_nf4_check::Nf4Check as Check;
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use pagesight_index::provenance::Provenance;
use pagesight_index::search::{CpuExact, PageScorer, Query, Scorer, SearchMode};
use pagesight_index::synthetic::{Corpus, Rng};
use pagesight_index::tensor_scorer::{FusedLoads, TensorKernel, TensorScorer};
use pagesight_index::{maxsim, Index, PageRecord, Searcher};

/// Pages per index: enough that every warp of a full grid scores more than one.
const PAGES: usize = 6000;

fn build_index(dir: &std::path::Path, dim: usize, corpus: &Corpus) -> Result<Searcher> {
    let mut ix = Index::open_or_create(dir, &Provenance::synthetic(dim))?;
    let mut rng = Rng::new(dim as u64);
    let hash = [dim as u8; 32];
    ix.begin_file(
        &hash,
        std::path::Path::new("/selftest.pdf"),
        None,
        PAGES as u32,
    )?;
    for p in 1..=PAGES as u32 {
        let n = match p % 9 {
            0 => 750 + rng.below(40) as usize,
            1 => 1,
            2 => 31,
            3 => 32,
            4 => 33,
            _ => 2 + rng.below(120) as usize,
        };
        let v = corpus.page(p as u64, n);
        ix.add_page(PageRecord {
            file_hash: hash,
            page: p,
            text: "",
            vectors: &v,
            n_tokens: n,
            image_rows: 0..0,
            merged_grid: (0, 0),
        })?;
    }
    ix.commit()?;
    Ok(ix.searcher()?)
}

fn check_dim(device: &Device, dim: usize, out: &mut Vec<Check>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "pagesight-selftest-maxsim-{}-{dim}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let corpus = Corpus::new(dim as u64 + 3, dim, 24);
    let s = build_index(&dir, dim, &corpus).context("building the synthetic index")?;
    let mut scorer = TensorScorer::new(&s, device, DType::F16, 1024)?;
    if scorer.kernel() != TensorKernel::Fused {
        anyhow::bail!(
            "the fused kernel is not available: {}",
            scorer.fused_unavailable().unwrap_or("?")
        );
    }
    let views = s.page_views();
    for nq in [13usize, 27, 40] {
        let q = corpus.query(11, nq, nq as u64);
        let cpu = CpuExact(maxsim::detected_isa()).score_all(&q, nq, dim, &views)?;
        let mut by_loads = Vec::new();
        for loads in [FusedLoads::SharedRing, FusedLoads::Registers] {
            scorer.set_fused_loads(loads);
            by_loads.push(scorer.score_all(&q, nq, dim, &views)?);
        }
        // The query is rounded to f16: each similarity of unit vectors moves by ≤ 2⁻¹¹, and a
        // page's score by nq of them.
        let bound = nq as f64 / 1024.0;
        let worst = by_loads[0]
            .iter()
            .zip(&cpu)
            .map(|(g, w)| (g - w).abs() as f64)
            .fold(0.0, f64::max);
        let equal = by_loads[0]
            .iter()
            .zip(&by_loads[1])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        // The engine's path: the scorer built for this snapshot ranks without listing pages.
        scorer.set_fused_loads(FusedLoads::SharedRing);
        let query = Query {
            vectors: q.clone(),
            n_tokens: nq,
            text: String::new(),
            mode: SearchMode::Visual,
            scorer: Scorer::Exact,
            top_k: 10,
            visual_weight: 0.5,
        };
        let ranked: Vec<u64> = s
            .visual_with(&query, 10, &scorer)?
            .into_iter()
            .map(|x| x.0)
            .collect();
        let listed: Vec<u64> = scorer
            .top_k(&q, nq, dim, &views, 10)?
            .into_iter()
            .map(|x| x.0)
            .collect();
        out.push(Check {
            name: format!("maxsim_fused_{dim}d_{nq}q"),
            ok: worst <= bound && equal && ranked == listed,
            detail: format!(
                "{PAGES} pages: ring vs CPU exact max |diff| {worst:.2e} (bound {bound:.2e}); ring and register loads bit-identical: {equal}; snapshot top-10 = listed top-10: {}",
                ranked == listed
            ),
        });
    }
    drop(scorer);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub fn run(device: &Device) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for dim in [128, 96, 64] {
        check_dim(device, dim, &mut out).with_context(|| format!("{dim}-d pages"))?;
    }
    Ok(out)
}
