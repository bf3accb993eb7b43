//! The published fused MaxSim kernels on the same card as pagesight's GPU scorer, for
//! `bench search --gpu-peers PYTHON`: bench/peer_maxsim_gpu.py runs each (flash-maxsim,
//! late-interaction-kernels, colpali-engine's `score_multi_vector`, torch's einsum) on exactly the
//! vectors pagesight searched; here each peer's top-10 is checked against exact MaxSim.

use super::search::SearchBenchArgs;
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

/// Whether `theirs` is exact's top-10 up to ties: every page it names scores, exactly, at least
/// the 10th best score less 1e-3 relative.
fn agrees(theirs: &[u64], exact_scores: &[f32], tenth: f32) -> bool {
    let floor = tenth - 1e-3 * tenth.abs().max(1e-6);
    theirs.len() == 10.min(exact_scores.len())
        && theirs
            .iter()
            .all(|&i| exact_scores.get(i as usize).is_some_and(|&s| s >= floor))
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
    let exact: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| {
            let mut all = q.clone();
            all.top_k = n;
            let mut scores = vec![f32::NEG_INFINITY; n];
            for (id, sc) in s.visual(&all, n)? {
                if let Some(x) = scores.get_mut(id as usize) {
                    *x = sc;
                }
            }
            Ok(scores)
        })
        .collect::<anyhow::Result<_>>()?;
    let tenth: Vec<f32> = exact
        .iter()
        .map(|sc| {
            let mut v = sc.clone();
            v.sort_by(|a, b| b.total_cmp(a));
            v.get(9).copied().unwrap_or(f32::NEG_INFINITY)
        })
        .collect();
    let mut runs = Vec::new();
    for (peer, r) in v["peers"].as_object().into_iter().flatten() {
        let tops: Vec<Vec<u64>> = serde_json::from_value(r["top10"].clone()).unwrap_or_default();
        let agreement = (!tops.is_empty()).then(|| {
            let ok = tops
                .iter()
                .enumerate()
                .filter(|(i, t)| agrees(t, &exact[i % exact.len()], tenth[i % tenth.len()]))
                .count();
            ok as f64 / tops.len() as f64
        });
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

#[cfg(test)]
mod tests {
    use super::agrees;

    #[test]
    fn ties_at_the_tenth_score_count_as_agreement() {
        let mut scores: Vec<f32> = (0..20).map(|i| 100.0 - i as f32).collect();
        scores[15] = 91.0 - 0.5e-3 * 91.0; // within 1e-3 of the 10th (91.0)
        let exact_top: Vec<u64> = (0..10).collect();
        assert!(agrees(&exact_top, &scores, 91.0));
        let mut swapped = exact_top.clone();
        swapped[9] = 15;
        assert!(
            agrees(&swapped, &scores, 91.0),
            "a tie may take the 10th place"
        );
        swapped[9] = 16; // 84: not a tie
        assert!(!agrees(&swapped, &scores, 91.0));
        assert!(
            !agrees(&exact_top[..9], &scores, 91.0),
            "ten results or it is not a top-10"
        );
    }
}
