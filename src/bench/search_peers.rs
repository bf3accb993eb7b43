//! The published fused MaxSim kernels on the same card as pagesight's GPU scorer, for
//! `bench search --gpu-peers PYTHON`: bench/peer_maxsim_gpu.py runs each (flash-maxsim,
//! late-interaction-kernels, colpali-engine's `score_multi_vector`, torch's einsum) on exactly the
//! vectors pagesight searched; here each peer's top-10 is checked against exact MaxSim.

use super::search::SearchBenchArgs;
use super::search_timing::{tie_agreement, ExactScores};
use anyhow::Context;
use pagesight_index::{Query, Searcher};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize, Debug)]
pub struct PeerRun {
    pub peer: String,
    pub version: Option<String>,
    pub kernel_p50_ms: Option<f64>,
    pub end_to_end_p50_ms: Option<f64>,
    /// Share of queries whose top-10 equals exact MaxSim's (a page whose exact score is within
    /// 1e-3 relative of the 10th counts as equal: ties).
    pub top10_agreement: Option<f64>,
    /// Why the peer did not run.
    pub error: Option<String>,
}

pub fn run_peers(
    a: &SearchBenchArgs,
    python: &str,
    dir: &Path,
    n: usize,
    queries: &[Query],
    s: &Searcher,
) -> anyhow::Result<Vec<PeerRun>> {
    let qpath = super::search_reference::write_queries(dir, queries)?;
    let out = dir.join("peers.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peer_maxsim_gpu.py");
    let status = std::process::Command::new(python)
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
        ])
        .args([
            "--dim",
            &a.synthetic.dim.to_string(),
            "--nq",
            &a.synthetic.query_tokens.to_string(),
        ])
        .args(["--num-queries", &queries.len().to_string()])
        .arg("--out")
        .arg(&out)
        .status()
        .with_context(|| format!("running {python} {}", script.display()))?;
    anyhow::ensure!(status.success(), "the peers' script failed ({status})");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    // Exact scores of every page per query (page id = row of the raw file), for the tie rule.
    let exact: Vec<ExactScores> = queries
        .iter()
        .map(|q| {
            let mut all = q.clone();
            all.top_k = n;
            Ok(ExactScores::new(s.visual(&all, n)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut runs = Vec::new();
    for (peer, r) in v["peers"].as_object().into_iter().flatten() {
        let tops: Vec<Vec<u64>> = serde_json::from_value(r["top10"].clone()).unwrap_or_default();
        let agreement = (!tops.is_empty()).then(|| tie_agreement(&tops, &exact));
        let run = PeerRun {
            peer: peer.clone(),
            version: r["version"].as_str().map(String::from),
            kernel_p50_ms: r["kernel_p50_ms"].as_f64(),
            end_to_end_p50_ms: r["end_to_end_p50_ms"].as_f64(),
            top10_agreement: agreement,
            error: r["error"].as_str().map(String::from),
        };
        match &run.error {
            Some(e) => eprintln!("  peer {peer}: not run ({e})"),
            None => eprintln!(
                "  peer {peer} {}: kernel p50 {:.2} ms, end to end p50 {:.2} ms, top-10 agreement with exact {:.3}",
                run.version.as_deref().unwrap_or("?"),
                run.kernel_p50_ms.unwrap_or(f64::NAN),
                run.end_to_end_p50_ms.unwrap_or(f64::NAN),
                run.top10_agreement.unwrap_or(f64::NAN)
            ),
        }
        runs.push(run);
    }
    Ok(runs)
}
