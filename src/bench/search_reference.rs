//! The colpali-engine reference scorer for `pagesight bench search`: bench/ref_maxsim.py (torch
//! f32 einsum, as `score_multi_vector` scores) run on exactly the vectors pagesight searched.

use super::search::SearchBenchArgs;
use crate::index::Query;
use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Runs bench/ref_maxsim.py on the same vectors; returns its JSON and the largest difference
/// between its first-query scores and ours.
pub fn reference(
    a: &SearchBenchArgs,
    dir: &Path,
    n: usize,
    queries: &[Query],
    s: &crate::index::Searcher,
) -> anyhow::Result<(serde_json::Value, f64)> {
    let qpath = dir.join("queries.f32");
    let mut qf = std::io::BufWriter::new(std::fs::File::create(&qpath)?);
    for q in queries {
        qf.write_all(bytemuck::cast_slice(&q.vectors))?;
    }
    qf.flush()?;
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
            &a.tokens.to_string(),
            "--dim",
            &a.dim.to_string(),
        ])
        .args([
            "--nq",
            &a.query_tokens.to_string(),
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
