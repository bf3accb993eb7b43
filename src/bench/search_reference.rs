//! The colpali-engine reference scorer for `pagesight bench search`: bench/ref_maxsim.py (torch
//! f32 einsum, as `score_multi_vector` scores) run on exactly the vectors pagesight searched.

use super::search::SearchBenchArgs;
use anyhow::Context;
use pagesight_index::Query;
use std::io::Write;
use std::path::Path;

/// The queries as raw little-endian f32 `[q, nq, dim]` beside the index, for the Python scorers.
pub fn write_queries(dir: &Path, queries: &[Query]) -> anyhow::Result<std::path::PathBuf> {
    let qpath = dir.join("queries.f32");
    let mut qf = std::io::BufWriter::new(std::fs::File::create(&qpath)?);
    for q in queries {
        qf.write_all(bytemuck::cast_slice(&q.vectors))?;
    }
    qf.flush()?;
    Ok(qpath)
}

/// Runs bench/ref_maxsim.py on the same vectors; returns its JSON and the largest difference
/// between its first-query scores and ours.
pub fn reference(
    a: &SearchBenchArgs,
    dir: &Path,
    n: usize,
    queries: &[Query],
    s: &pagesight_index::Searcher,
) -> anyhow::Result<(serde_json::Value, f64)> {
    let qpath = write_queries(dir, queries)?;
    let out = dir.join("reference.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/ref_maxsim.py");
    let status = std::process::Command::new(&a.python)
        .arg(&script)
        .arg("--pages")
        .arg(dir.join("pages.f16"))
        .arg("--queries")
        .arg(&qpath)
        .args([
            "--n",
            &n.to_string(),
            "--tokens",
            &a.synthetic.tokens.to_string(),
            "--dim",
            &a.synthetic.dim.to_string(),
        ])
        .args([
            "--nq",
            &a.synthetic.query_tokens.to_string(),
            "--num-queries",
            &queries.len().to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .with_context(|| format!("running {} {}", a.python, script.display()))?;
    anyhow::ensure!(status.success(), "reference script failed ({status})");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let theirs: Vec<f64> = serde_json::from_value(v["scores_query0"].clone()).unwrap_or_default();
    let mut all = queries[0].clone();
    all.top_k = n;
    let ours = s.visual(&all, n)?;
    let diff = ours
        .iter()
        .filter_map(|&(id, sc)| theirs.get(id as usize).map(|t| (t - sc as f64).abs()))
        .fold(0.0, f64::max);
    Ok((v, diff))
}

/// Runs the reference on `queries` and records its timings and agreement with ours in `r`
/// (a skipped reference is reported, not an error).
#[allow(clippy::too_many_arguments)]
pub(super) fn add_reference(
    a: &SearchBenchArgs,
    dir: &Path,
    n: usize,
    queries: &[Query],
    s: &pagesight_index::Searcher,
    exact_tops: &[Vec<u64>],
    best_exact: f64,
    r: &mut super::search::SizeResult,
) {
    match reference(a, dir, n, queries, s) {
        Ok((v, diff)) => {
            let p50 = |k: &str| {
                v.get(k).and_then(|x| x.as_array()).map(|a| {
                    super::search_timing::latency(a.iter().filter_map(|x| x.as_f64()).collect())
                        .p50_ms
                })
            };
            r.reference_p50_ms = p50("score_multi_vector_ms");
            r.reference_einsum_p50_ms = p50("einsum_ms");
            let fastest_ref = r
                .reference_p50_ms
                .into_iter()
                .chain(r.reference_einsum_p50_ms)
                .fold(f64::INFINITY, f64::min);
            r.speedup_vs_reference = Some(fastest_ref / best_exact);
            let tops: Vec<Vec<u64>> =
                serde_json::from_value(v["top10"].clone()).unwrap_or_default();
            // Reference indices are page positions; page ids equal positions in this single-file corpus.
            r.reference_top10_agreement =
                Some(super::search_timing::overlap_at_10(exact_tops, &tops));
            r.reference_max_abs_score_diff = Some(diff);
            eprintln!(
                "  reference (colpali score_multi_vector, torch f32): p50 {:.2} ms, einsum alone p50 {:.2} ms → exact is {:.2}× the faster of them; top-10 agreement {:.3}, max |score diff| {:.2e}",
                r.reference_p50_ms.unwrap_or(f64::NAN),
                r.reference_einsum_p50_ms.unwrap_or(f64::NAN),
                fastest_ref / best_exact,
                r.reference_top10_agreement.unwrap_or(0.0),
                diff
            );
            r.reference = Some(
                serde_json::json!({"torch": v["torch"], "colpali_engine": v["colpali_engine"], "threads": v["threads"], "pages_in_memory_f32": v["pages_in_memory_f32"]}),
            );
        }
        Err(e) => eprintln!("  reference scorer skipped: {e:#}"),
    }
}
