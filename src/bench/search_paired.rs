//! Exact MaxSim against the machine's peak measured around each query: every timed query follows
//! a window, about as long as a query, in which every core runs the ISA's FMA loop at once
//! (`cpu_peak::all_cores_windows`). On a shared host the FMA rate a window gets moves with the
//! other tenants by ±20 % within minutes; a peak taken once (the best of many short windows)
//! against the queries' median compares a quiet moment with a typical one. Pairing compares each
//! query with what the same cores delivered just before it.
//!
//! A memory-bound kernel may lose less than an FMA loop to a tenant sharing its physical cores,
//! which would flatter the ratio in busy windows: so the ratio is also given over the quieter
//! half of the pairs (windows at or above the median rate), where that cannot be the reason.

use super::cpu_peak::all_cores_windows;
use pagesight_index::maxsim::Isa;
use pagesight_index::search::Query;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Serialize, Debug, Clone)]
pub struct PairedPeak {
    pub pairs: usize,
    /// Each FMA window's length: the queries' p50 from the unpaired run, at least 2 ms.
    pub window_ms: f64,
    /// Median over pairs of the query's GFLOP/s / its window's GFLOP/s.
    pub fraction_median: f64,
    /// The same over the pairs whose window ran at or above the median window rate.
    pub fraction_quiet_half: f64,
    pub window_gflops_min: f64,
    pub window_gflops_median: f64,
    pub window_gflops_max: f64,
    /// The paired queries' own median GFLOP/s.
    pub query_gflops_median: f64,
}

impl PairedPeak {
    /// The lower of the median and the quieter half's: the figure least flattered by quiet moments.
    pub fn fraction(&self) -> f64 {
        self.fraction_median.min(self.fraction_quiet_half)
    }
}

/// Times each query right after an all-cores FMA window of `window` on `isa`.
pub fn run(
    isa: Isa,
    queries: &[Query],
    flops_per_query: f64,
    window: Duration,
    mut score: impl FnMut(&Query) -> anyhow::Result<Vec<u64>>,
) -> anyhow::Result<PairedPeak> {
    let window = window.max(Duration::from_millis(2));
    let mut query_gflops = Vec::with_capacity(queries.len());
    let mut window_gflops = Vec::with_capacity(queries.len());
    for q in queries {
        let rate = all_cores_windows(isa, window, 1);
        let t = Instant::now();
        score(q)?;
        query_gflops.push(flops_per_query / t.elapsed().as_secs_f64() / 1e9);
        window_gflops.push(rate.first().copied().unwrap_or(f64::NAN) / 1e9);
    }
    Ok(pair_up(
        &query_gflops,
        &window_gflops,
        window.as_secs_f64() * 1e3,
    ))
}

/// The statistics of `run` from each pair's (query, window) GFLOP/s.
fn pair_up(query_gflops: &[f64], window_gflops: &[f64], window_ms: f64) -> PairedPeak {
    let ratios: Vec<f64> = query_gflops
        .iter()
        .zip(window_gflops)
        .map(|(q, w)| q / w)
        .collect();
    let window_median = pagesight_common::stats::median(window_gflops.to_vec());
    let quiet: Vec<f64> = ratios
        .iter()
        .zip(window_gflops)
        .filter(|(_, &w)| w >= window_median)
        .map(|(r, _)| *r)
        .collect();
    let extreme = |f: fn(f64, f64) -> f64, start: f64| window_gflops.iter().copied().fold(start, f);
    PairedPeak {
        pairs: ratios.len(),
        window_ms,
        fraction_median: pagesight_common::stats::median(ratios),
        fraction_quiet_half: pagesight_common::stats::median(quiet),
        window_gflops_min: extreme(f64::min, f64::INFINITY),
        window_gflops_median: window_median,
        window_gflops_max: extreme(f64::max, 0.0),
        query_gflops_median: pagesight_common::stats::median(query_gflops.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_is_timed_after_a_window_of_at_least_2_ms() {
        use pagesight_index::search::{Scorer, SearchMode};
        let isa = pagesight_index::maxsim::detected_isa();
        let query = Query {
            vectors: vec![0.0; 4],
            n_tokens: 1,
            text: String::new(),
            mode: SearchMode::Visual,
            top_k: 1,
            visual_weight: 1.0,
            scorer: Scorer::Exact,
        };
        let mut scored = 0;
        let p = run(isa, &vec![query; 3], 1e6, Duration::ZERO, |_| {
            scored += 1;
            Ok(Vec::new())
        })
        .unwrap();
        assert_eq!((scored, p.pairs, p.window_ms), (3, 3, 2.0));
        if isa != Isa::Portable {
            // An FMA loop ran in every window, so every ratio is a finite positive number.
            assert!(p.window_gflops_min > 0.0, "{p:?}");
            assert!(p.fraction().is_finite() && p.fraction() > 0.0, "{p:?}");
        }
    }

    #[test]
    fn the_quiet_half_leaves_out_the_pairs_whose_window_ran_slow() {
        // Two quiet windows (2000) where the query ran at 50 %, two busy ones (1000) where the
        // same query speed is 100 % of the window: the median of all four ratios is flattered
        // (0.75), the quiet half (windows at or above the median 1500) is not.
        let p = pair_up(
            &[1000.0, 1000.0, 1000.0, 1000.0],
            &[2000.0, 1000.0, 2000.0, 1000.0],
            25.0,
        );
        assert_eq!(p.pairs, 4);
        assert_eq!(p.fraction_median, 0.75);
        assert_eq!(p.fraction_quiet_half, 0.5);
        assert_eq!(p.fraction(), 0.5);
        assert_eq!(
            (
                p.window_gflops_min,
                p.window_gflops_median,
                p.window_gflops_max
            ),
            (1000.0, 1500.0, 2000.0)
        );
        assert_eq!(p.query_gflops_median, 1000.0);
    }
}
