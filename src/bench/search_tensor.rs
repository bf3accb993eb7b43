//! `bench search --device …`: the tensor scorer (`index::tensor_scorer`) on a candle device.
//! The page tiles are uploaded once; on CUDA with f16 both kernels run over them — the fused
//! MaxSim kernel (the default) and the cuBLAS matmul path (the fallback) — each with p50/p99 and
//! the rate it streamed the resident tiles, then a check that they agree: identical top-10 per
//! query and the largest score difference over every page of a few queries. The fused kernel
//! runs twice, with each way of loading tokens (`FusedLoads`), whose scores must be equal.

use super::search::SearchBenchArgs;
use super::search_timing::{latency, overlap_at_10, time_queries, top10, Latency};
use pagesight_index::search::{PageScorer, PageView, Query};
use pagesight_index::tensor_scorer::{FusedLoads, TensorKernel, TensorScorer};
use pagesight_index::Searcher;
use serde::Serialize;
use std::time::Instant;

#[derive(Serialize, Debug)]
pub struct TensorRun {
    pub scorer: String,
    pub upload_secs: f64,
    pub resident_bytes: u64,
    pub latency: Latency,
    /// Resident bytes / p50 (end to end: query upload, kernels, copy back, host top-k).
    pub resident_gb_per_s: f64,
    /// The fused kernel alone (CUDA events), p50 over a few launches; None for the matmul path.
    pub kernel_only_p50_ms: Option<f64>,
    pub kernel_only_gb_per_s: Option<f64>,
    pub top10_agreement_with_cpu_exact: f64,
    /// One query taken apart, p50 of 7 (ms).
    pub steps_ms: StepsMs,
}

#[derive(Serialize, Debug, Default)]
pub struct StepsMs {
    /// Listing the snapshot's pages (a scorer built for the snapshot skips it).
    pub list_pages: f64,
    /// The scorer's `score_all` over the listed pages (query upload, kernels, copy back).
    pub score_all: f64,
    /// The visual ranking as the engine asks for it (`Searcher::visual_with`, top 10).
    pub total: f64,
}

/// Where one query's time goes outside the kernel (p50 of 7 of each step).
fn steps(s: &Searcher, q: &Query, scorer: &TensorScorer, dim: usize) -> anyhow::Result<StepsMs> {
    let (mut list, mut score, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        let views = s.page_views();
        list.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        scorer.score_all(&q.vectors, q.n_tokens, dim, &views)?;
        score.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        top10(s, q, scorer)?;
        total.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let p50 = |v: Vec<f64>| latency(v).p50_ms;
    Ok(StepsMs {
        list_pages: p50(list),
        score_all: p50(score),
        total: p50(total),
    })
}

#[derive(Serialize, Debug)]
pub struct FusedCheck {
    /// Queries whose top-10 (ids, in order) the two kernels return identically.
    pub top10_identical: usize,
    pub queries: usize,
    pub top10_overlap: f64,
    /// Over every page of the first `score_queries` queries.
    pub max_abs_score_diff: f64,
    pub score_queries: usize,
    /// nq · 2⁻¹⁰: cuBLAS rounds each similarity (|s| ≤ 1 for unit vectors) to f16 before the max.
    pub f16_rounding_bound: f64,
}

#[derive(Serialize, Debug)]
pub struct TensorResults {
    /// The default kernel first, then the fused kernel's other loads and the fallback where
    /// they ran.
    pub runs: Vec<TensorRun>,
    /// Largest |ring − registers| over every page of a few queries (must be 0).
    pub fused_loads_max_diff: Option<f64>,
    pub fused_vs_matmul: Option<FusedCheck>,
    /// Why the fused kernel did not run, when it did not.
    pub fused_unavailable: Option<String>,
}

fn run_one(
    scorer: &TensorScorer,
    upload_secs: f64,
    s: &Searcher,
    queries: &[Query],
    exact_tops: &[Vec<u64>],
) -> anyhow::Result<(TensorRun, Vec<Vec<u64>>)> {
    let (lat, tops, _) = time_queries(queries, |q| top10(s, q, scorer))?;
    let bytes = scorer.resident_bytes() as f64;
    let kernel_only_p50_ms = if scorer.kernel() == TensorKernel::Fused {
        let q = &queries[0];
        let ms = (0..7)
            .filter_map(|_| scorer.fused_kernel_ms(&q.vectors, q.n_tokens))
            .collect::<Result<Vec<f64>, _>>()?;
        (!ms.is_empty()).then(|| latency(ms).p50_ms)
    } else {
        None
    };
    let steps_ms = steps(s, &queries[0], scorer, s.provenance().dim)?;
    let run = TensorRun {
        steps_ms,
        scorer: scorer.name(),
        upload_secs,
        resident_bytes: scorer.resident_bytes(),
        resident_gb_per_s: bytes / (lat.p50_ms / 1e3) / 1e9,
        kernel_only_gb_per_s: kernel_only_p50_ms.map(|ms| bytes / (ms / 1e3) / 1e9),
        kernel_only_p50_ms,
        latency: lat,
        top10_agreement_with_cpu_exact: overlap_at_10(exact_tops, &tops),
    };
    let kernel_only = match (run.kernel_only_p50_ms, run.kernel_only_gb_per_s) {
        (Some(ms), Some(gbs)) => format!(", kernel alone {ms:.2} ms = {gbs:.1} GB/s"),
        _ => String::new(),
    };
    eprintln!(
        "  {}: upload {:.1} s, p50 {:.2} ms p99 {:.2} ms, {:.1} GB/s of resident tiles{kernel_only}, top-10 agreement with CPU exact {:.3}",
        run.scorer, run.upload_secs, run.latency.p50_ms, run.latency.p99_ms, run.resident_gb_per_s, run.top10_agreement_with_cpu_exact
    );
    eprintln!(
        "    one query: top 10 end to end {:.2} ms; apart: listing pages {:.2} ms, score_all over them {:.2} ms",
        run.steps_ms.total, run.steps_ms.list_pages, run.steps_ms.score_all
    );
    Ok((run, tops))
}

/// Largest |fused − matmul| over every page, for each of `queries`.
fn max_score_diff(
    scorer: &mut TensorScorer,
    views: &[PageView<'_>],
    queries: &[Query],
    dim: usize,
) -> anyhow::Result<f64> {
    let mut diff = 0f64;
    for q in queries {
        scorer.set_kernel(TensorKernel::Fused)?;
        let fused = scorer.score_all(&q.vectors, q.n_tokens, dim, views)?;
        scorer.set_kernel(TensorKernel::Matmul)?;
        let matmul = scorer.score_all(&q.vectors, q.n_tokens, dim, views)?;
        for (a, b) in fused.iter().zip(&matmul) {
            diff = diff.max((a - b).abs() as f64);
        }
    }
    Ok(diff)
}

pub fn tensor_runs(
    a: &SearchBenchArgs,
    s: &Searcher,
    queries: &[Query],
    exact_tops: &[Vec<u64>],
) -> anyhow::Result<Option<TensorResults>> {
    let Some(choice) = a.device else {
        return Ok(None);
    };
    let device = choice.open()?;
    let compute = match a.tensor_compute.as_deref() {
        Some("f32") => candle_core::DType::F32,
        Some("f16") => candle_core::DType::F16,
        Some(other) => anyhow::bail!("--tensor-compute {other}: use f32 or f16"),
        None if device.is_cpu() => candle_core::DType::F32,
        None => candle_core::DType::F16,
    };
    let t = Instant::now();
    let chunk_pages = a
        .tensor_chunk_pages
        .unwrap_or(if device.is_cpu() { 512 } else { 4096 });
    let mut scorer = TensorScorer::new(s, &device, compute, chunk_pages)?;
    let upload_secs = t.elapsed().as_secs_f64();
    let fused_unavailable = scorer.fused_unavailable().map(str::to_string);
    // The scorer starts on the fused kernel where it exists; the bench runs it first, then the
    // matmul path over the same tiles, and compares them.
    if let (Some(why), true) = (&fused_unavailable, device.is_cuda()) {
        eprintln!("  fused MaxSim kernel not used: {why}");
    }
    let (first, first_tops) = run_one(&scorer, upload_secs, s, queries, exact_tops)?;
    let mut runs = vec![first];
    let mut fused_vs_matmul = None;
    let mut fused_loads_max_diff = None;
    if let Some(default_loads) = scorer.fused_loads() {
        let other = match default_loads {
            FusedLoads::SharedRing => FusedLoads::Registers,
            FusedLoads::Registers => FusedLoads::SharedRing,
        };
        scorer.set_fused_loads(other);
        let (run, _) = run_one(&scorer, upload_secs, s, queries, exact_tops)?;
        runs.push(run);
        let views = s.page_views();
        let mut diff = 0f64;
        for q in &queries[..queries.len().min(3)] {
            let theirs = scorer.score_all(&q.vectors, q.n_tokens, a.synthetic.dim, &views)?;
            scorer.set_fused_loads(default_loads);
            let ours = scorer.score_all(&q.vectors, q.n_tokens, a.synthetic.dim, &views)?;
            scorer.set_fused_loads(other);
            for (x, y) in ours.iter().zip(&theirs) {
                diff = diff.max((x - y).abs() as f64);
            }
        }
        scorer.set_fused_loads(default_loads);
        eprintln!(
            "  fused kernel, {} vs {}: max score diff {diff:.2e} over {} pages (must be 0: the same products in the same order)",
            default_loads.name(),
            other.name(),
            views.len()
        );
        fused_loads_max_diff = Some(diff);
    }
    if scorer.kernel() == TensorKernel::Fused {
        scorer.set_kernel(TensorKernel::Matmul)?;
        let (fallback, tops) = run_one(&scorer, upload_secs, s, queries, exact_tops)?;
        runs.push(fallback);
        let views = s.page_views();
        let score_queries = queries.len().min(3);
        let diff = max_score_diff(
            &mut scorer,
            &views,
            &queries[..score_queries],
            a.synthetic.dim,
        )?;
        let check = FusedCheck {
            top10_identical: first_tops.iter().zip(&tops).filter(|(x, y)| x == y).count(),
            queries: queries.len(),
            top10_overlap: overlap_at_10(&tops, &first_tops),
            max_abs_score_diff: diff,
            score_queries,
            f16_rounding_bound: a.synthetic.query_tokens as f64 / 1024.0,
        };
        eprintln!(
            "  fused vs cuBLAS: top-10 identical {}/{} (overlap {:.3}), max score diff {:.2e} over {} pages × {} queries (f16 rounding bound {:.2e})",
            check.top10_identical,
            check.queries,
            check.top10_overlap,
            check.max_abs_score_diff,
            views.len(),
            check.score_queries,
            check.f16_rounding_bound
        );
        fused_vs_matmul = Some(check);
    }
    Ok(Some(TensorResults {
        runs,
        fused_loads_max_diff,
        fused_vs_matmul,
        fused_unavailable,
    }))
}
