//! Timing and comparing queries in `pagesight bench search`: each query's latency (after one
//! untimed warm-up), the CPU time the process was given meanwhile, and how far two rankings'
//! top 10s agree.

use pagesight_index::search::{PageScorer, Query};
use pagesight_index::Searcher;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Serialize, Debug)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// The fastest query: on a shared machine, the closest to an uncontended run.
    pub min_ms: f64,
}

/// "p50 … ms  p99 … ms  min … ms", aligned for the bench's tables.
pub(super) fn latency_line(l: &Latency) -> String {
    format!(
        "p50 {:8.2} ms  p99 {:8.2} ms  min {:8.2} ms",
        l.p50_ms, l.p99_ms, l.min_ms
    )
}

pub(super) fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    Latency {
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        min_ms: ms[0],
    }
}

/// CPU time this process has been given so far (all threads, user + system), in seconds.
fn process_cpu_seconds() -> f64 {
    // SAFETY: `rusage` is a plain C struct of integers, for which all zeroes is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we pass, a live local; no other memory is touched.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Runs every query once untimed (warms caches and the thread pool), then times each. Also
/// returns the CPU seconds the timed queries were given (on a shared machine, wall time also
/// counts other tenants' turns; CPU time does not).
pub(super) fn time_queries(
    queries: &[Query],
    mut f: impl FnMut(&Query) -> anyhow::Result<Vec<u64>>,
) -> anyhow::Result<(Latency, Vec<Vec<u64>>, f64)> {
    f(&queries[0])?;
    let mut ms = Vec::new();
    let mut tops = Vec::new();
    let cpu0 = process_cpu_seconds();
    for q in queries {
        let t = Instant::now();
        let top = f(q)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        tops.push(top);
    }
    Ok((latency(ms), tops, process_cpu_seconds() - cpu0))
}

pub(super) fn overlap_at_10(want: &[Vec<u64>], got: &[Vec<u64>]) -> f64 {
    let found: usize = want
        .iter()
        .zip(got)
        .map(|(e, b)| e.iter().filter(|x| b.contains(x)).count())
        .sum();
    found as f64 / (10 * want.len().max(1)) as f64
}

pub(super) fn top10(s: &Searcher, q: &Query, scorer: &dyn PageScorer) -> anyhow::Result<Vec<u64>> {
    Ok(s.visual_with(q, 10, scorer)?
        .into_iter()
        .map(|x| x.0)
        .collect())
}

/// One query's exact MaxSim score of every page, by id, and its 10th best: what a top-10 is held
/// to when ties count (the score a page reaches is exact whoever ranked it).
pub(super) struct ExactScores {
    by_id: HashMap<u64, f32>,
    tenth: f32,
}

impl ExactScores {
    pub(super) fn new(scores: impl IntoIterator<Item = (u64, f32)>) -> ExactScores {
        let by_id: HashMap<u64, f32> = scores.into_iter().collect();
        let mut sorted: Vec<f32> = by_id.values().copied().collect();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let tenth = sorted.get(9).copied().unwrap_or(f32::NEG_INFINITY);
        ExactScores { by_id, tenth }
    }

    /// Whether `theirs` is the exact top-10 up to ties: ten pages (or all there are), each
    /// scoring, exactly, at least the 10th best score less 1e-3 relative.
    pub(super) fn agrees(&self, theirs: &[u64]) -> bool {
        let floor = self.tenth - 1e-3 * self.tenth.abs().max(1e-6);
        theirs.len() == 10.min(self.by_id.len())
            && theirs
                .iter()
                .all(|id| self.by_id.get(id).is_some_and(|&s| s >= floor))
    }
}

/// Share of top-10s that are exact's up to ties: `tops[i]` answers query `i % exact.len()` (a
/// peer may run the queries more than once, in order).
pub(super) fn tie_agreement(tops: &[Vec<u64>], exact: &[ExactScores]) -> f64 {
    let ok = tops
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            exact
                .get(i % exact.len().max(1))
                .is_some_and(|e| e.agrees(t))
        })
        .count();
    ok as f64 / tops.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::{tie_agreement, ExactScores};

    #[test]
    fn ties_at_the_tenth_score_count_as_agreement() {
        let mut scores: Vec<f32> = (0..20).map(|i| 100.0 - i as f32).collect();
        scores[15] = 91.0 - 0.5e-3 * 91.0; // within 1e-3 of the 10th (91.0)
        let exact = ExactScores::new(scores.iter().enumerate().map(|(i, &s)| (i as u64, s)));
        let exact_top: Vec<u64> = (0..10).collect();
        assert!(exact.agrees(&exact_top));
        let mut swapped = exact_top.clone();
        swapped[9] = 15;
        assert!(exact.agrees(&swapped), "a tie may take the 10th place");
        swapped[9] = 16; // 84: not a tie
        assert!(!exact.agrees(&swapped));
        assert!(
            !exact.agrees(&exact_top[..9]),
            "ten results or it is not a top-10"
        );
        assert!(
            !exact.agrees(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 99]),
            "an unknown page"
        );
        let tops = vec![exact_top, swapped];
        let both = [
            exact,
            ExactScores::new(scores.iter().enumerate().map(|(i, &s)| (i as u64, s))),
        ];
        assert_eq!(tie_agreement(&tops, &both), 0.5);
    }
}
