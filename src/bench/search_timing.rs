//! Timing and comparing queries in `pagesight bench search`: each query's latency (after one
//! untimed warm-up), the CPU time the process was given meanwhile, and how far two rankings'
//! top 10s agree.

use pagesight_index::search::{PageScorer, Query};
use pagesight_index::Searcher;
use serde::Serialize;
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
