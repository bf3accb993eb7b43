//! The machine's FP32 FMA peak per instruction set, measured in the same run as the scorers:
//! a register-only loop of independent FMAs (`maxsim::fma_peak_one_core`), on one core and on
//! every core of the pool at once. Formula: peak = Σ over cores of FMA instructions × lanes × 2
//! flop / elapsed, best of 200 trials of ~1 ms per core. On a shared machine this is what the cores gave us at that moment (turbo,
//! AVX-512 frequency licence and other tenants included), so the scorer is measured against the
//! same conditions; the bench measures it before and after and keeps the higher value.

use pagesight_index::maxsim::{fma_loop, fma_peak_one_core, Isa};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Serialize, Debug, Clone)]
pub struct IsaPeak {
    pub isa: Isa,
    pub one_core_gflops: f64,
    pub all_cores_gflops: f64,
    /// cores × /proc/cpuinfo MHz × 2 FMA ports × lanes × 2 flop, for comparison.
    pub nominal_gflops: Option<f64>,
    /// The same loop on every core at once, each core's median trial instead of its best: what
    /// the cores keep giving under sustained all-core load on this (possibly shared) host.
    pub all_cores_sustained_gflops: f64,
    /// The best of `WINDOWS` windows in which every core runs the loop at the same moment: the
    /// flop all cores did in the window / its length. `all_cores_gflops` adds up each core's best
    /// trial, and those come from different moments; this is a throughput the cores delivered
    /// together, as a query's threads do.
    pub all_cores_together_gflops: f64,
}

/// ~1 ms per trial (12 FMAs per iteration at 2 per cycle, ~2.5 GHz): short enough that the
/// best of many trials on a shared machine is one the scheduler did not interrupt.
const ITERS: u64 = 400_000;
const TRIALS: usize = 200;

/// (best, median) of `TRIALS` trials on this core.
fn best_and_median_of_trials(isa: Isa) -> Option<(f64, f64)> {
    let t: Vec<f64> = (0..TRIALS)
        .filter_map(|_| fma_peak_one_core(isa, ITERS))
        .collect();
    let best = t.iter().copied().reduce(f64::max)?;
    Some((best, pagesight_common::stats::median(t)))
}

pub fn cpuinfo(key: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

/// The reduced-precision matrix and vector extensions among /proc/cpuinfo's `flags`: present
/// but not an exact scorer's instruction set, so the bench names them rather than leave a reader
/// to wonder.
pub fn unused_isas(flags: &str) -> Vec<&'static str> {
    const REDUCED_PRECISION: [&str; 5] = [
        "amx_bf16",
        "amx_fp16",
        "amx_int8",
        "avx512_bf16",
        "avx512_fp16",
    ];
    let present: BTreeSet<&str> = flags.split_whitespace().collect();
    REDUCED_PRECISION
        .into_iter()
        .filter(|f| present.contains(f))
        .collect()
}

/// The peak of `isa`, or `None` where this build has no FMA loop for it or the CPU lacks it.
pub fn measure(isa: Isa) -> Option<IsaPeak> {
    let (one, _) = best_and_median_of_trials(isa)?;
    let per_core = rayon::broadcast(|_| best_and_median_of_trials(isa).unwrap_or((0.0, 0.0)));
    let together = best_window_all_cores(isa);
    let all: f64 = per_core.iter().map(|t| t.0).sum();
    let sustained: f64 = per_core.iter().map(|t| t.1).sum();
    let cores = rayon::current_num_threads() as f64;
    let lanes = isa.f32_lanes() as f64;
    let mhz: Option<f64> = cpuinfo("cpu MHz").and_then(|s| s.parse().ok());
    Some(IsaPeak {
        isa,
        one_core_gflops: one / 1e9,
        all_cores_gflops: all / 1e9,
        nominal_gflops: mhz.map(|m| cores * m / 1e3 * 2.0 * lanes * 2.0),
        all_cores_sustained_gflops: sustained / 1e9,
        all_cores_together_gflops: together / 1e9,
    })
}

/// The peak's all-cores windows: `WINDOWS` of `WINDOW` each.
const WINDOW: Duration = Duration::from_millis(2);
const WINDOWS: usize = 100;
/// ~60 µs per slice, so a thread overruns the window by little.
const SLICE_ITERS: u64 = ITERS / 16;

/// The best all-cores window (FLOP/s) of `WINDOWS` windows of `WINDOW`.
fn best_window_all_cores(isa: Isa) -> f64 {
    all_cores_windows(isa, WINDOW, WINDOWS)
        .into_iter()
        .fold(0.0, f64::max)
}

/// `count` windows of `window`, in each of which every thread of the pool leaves a barrier
/// together and runs slices of the FMA loop until `window` has passed on its own clock: each
/// window's throughput in FLOP/s (`window_rates`).
pub fn all_cores_windows(isa: Isa, window: Duration, count: usize) -> Vec<f64> {
    let barrier = std::sync::Barrier::new(rayon::current_num_threads());
    let per_thread: Vec<Vec<(Instant, Instant, f64)>> = rayon::broadcast(|_| {
        (0..count)
            .map(|_| {
                barrier.wait();
                let start = Instant::now();
                let mut flop = 0.0;
                while start.elapsed() < window {
                    flop += fma_loop(isa, SLICE_ITERS).map_or(0.0, |(f, _)| f);
                }
                (start, Instant::now(), flop)
            })
            .collect()
    });
    window_rates(&per_thread)
}

/// Each window's throughput (FLOP/s): `per_thread[t][w]` is thread `t`'s (start, end, flop) in
/// window `w`; a window's throughput is its flop over all threads / (last end − first start), so
/// a thread that started late or ran long stretches the window for all.
fn window_rates(per_thread: &[Vec<(Instant, Instant, f64)>]) -> Vec<f64> {
    let windows = per_thread.iter().map(Vec::len).min().unwrap_or(0);
    (0..windows)
        .map(|w| {
            let of_window = per_thread.iter().map(|t| t[w]);
            let start = of_window.clone().map(|t| t.0).min();
            let end = of_window.clone().map(|t| t.1).max();
            let flop: f64 = of_window.map(|t| t.2).sum();
            match (start, end) {
                (Some(s), Some(e)) if e > s => flop / (e - s).as_secs_f64(),
                _ => 0.0,
            }
        })
        .collect()
}

/// Keeps, per ISA, the higher of two measurements (the fraction of peak is never flattered by
/// one slow measurement on a busy machine).
pub fn merge_max(a: &mut [IsaPeak], b: &[IsaPeak]) {
    for p in a.iter_mut() {
        if let Some(q) = b.iter().find(|q| q.isa == p.isa) {
            p.one_core_gflops = p.one_core_gflops.max(q.one_core_gflops);
            p.all_cores_gflops = p.all_cores_gflops.max(q.all_cores_gflops);
            p.all_cores_sustained_gflops = p
                .all_cores_sustained_gflops
                .max(q.all_cores_sustained_gflops);
            p.all_cores_together_gflops =
                p.all_cores_together_gflops.max(q.all_cores_together_gflops);
        }
    }
}

pub fn measure_all(isas: &[Isa]) -> Vec<IsaPeak> {
    isas.iter().filter_map(|&i| measure(i)).collect()
}

/// Bytes each thread streams per bandwidth trial: 4 × 128 MiB over 16 threads is far past any L3.
const READ_BYTES_PER_THREAD: usize = 128 << 20;

/// The machine's all-core read bandwidth in GB/s (the other roof of an exact MaxSim over pages that
/// do not fit in cache): every thread of the pool sums its own buffer of u64 words (the compiler
/// vectorises the sum), best of 5 trials, all threads starting together.
pub fn read_bandwidth_gb_per_s() -> f64 {
    let words = READ_BYTES_PER_THREAD / 8;
    let per_thread: Vec<f64> = rayon::broadcast(|ctx| {
        // Distinct, non-zero contents per thread so no page is shared or left untouched.
        let buf: Vec<u64> = (0..words as u64).map(|i| i ^ ctx.index() as u64).collect();
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let s = buf.iter().fold(0u64, |a, &x| a.wrapping_add(x));
            std::hint::black_box(s);
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    });
    // Threads run side by side; the slowest one's best trial bounds the aggregate.
    let slowest = per_thread.iter().cloned().fold(0.0, f64::max);
    (per_thread.len() * READ_BYTES_PER_THREAD) as f64 / slowest / 1e9
}

/// All-core read bandwidth over the files in `dir` as the index reads them: memory-mapped
/// (page cache, 4 KiB pages), summed 4 MiB at a time by every thread of the pool; best of 3
/// passes, in GB/s. Against `read_bandwidth_gb_per_s` (anonymous memory) it shows what the
/// mapping itself costs; `None` when `dir` holds no readable file.
pub fn mapped_read_gb_per_s(dir: &std::path::Path) -> Option<f64> {
    use rayon::prelude::*;
    let maps: Vec<memmap2::Mmap> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::File::open(e.path()).ok())
        // SAFETY: read-only view of files nothing writes during the bench.
        .filter_map(|f| unsafe { memmap2::Mmap::map(&f) }.ok())
        .collect();
    const PIECE: usize = 4 << 20;
    let pieces: Vec<&[u8]> = maps.iter().flat_map(|m| m.chunks(PIECE)).collect();
    let bytes: usize = pieces.iter().map(|p| p.len()).sum();
    if bytes == 0 {
        return None;
    }
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let s: u64 = pieces
            .par_iter()
            .map(|p| {
                // SAFETY: any bytes are valid u64s; the unaligned ends are left out.
                let (_, words, _) = unsafe { p.align_to::<u64>() };
                words.iter().fold(0u64, |a, &x| a.wrapping_add(x))
            })
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(s);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Some(bytes as f64 / best / 1e9)
}

/// (steal, total) clock ticks of all CPUs from `/proc/stat`: steal is time the hypervisor ran
/// something else while this guest's virtual CPUs wanted to run.
pub fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    Some((*fields.get(7)?, fields.iter().take(8).sum()))
}

/// Share of all CPUs' time stolen by the hypervisor between two `cpu_ticks` readings.
pub fn steal_fraction(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, after?);
    (t1 > t0).then(|| (s1 - s0) as f64 / (t1 - t0) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn reduced_precision_extensions_are_named_from_the_cpu_flags() {
        let flags = "fpu avx512f amx_bf16 avx512_fp16 amx_tile avx512_vnni";
        assert_eq!(unused_isas(flags), ["amx_bf16", "avx512_fp16"]);
        assert!(unused_isas("fpu avx2 f16c").is_empty());
    }

    #[test]
    fn a_window_spans_from_the_first_start_to_the_last_end() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Window 0: two threads, 1 ms each but one starts 1 ms late → 2e9 flop over 2 ms.
        // Window 1: both run 10..12 ms, 4e9 flop each → 8e9 flop over 2 ms.
        let per_thread = vec![
            vec![(at(0), at(1), 1e9), (at(10), at(12), 4e9)],
            vec![(at(1), at(2), 1e9), (at(10), at(12), 4e9)],
        ];
        let rates = window_rates(&per_thread);
        assert_eq!(rates.len(), 2);
        assert!((rates[0] - 1e12).abs() < 1e6, "{rates:?}");
        assert!((rates[1] - 4e12).abs() < 1e6, "{rates:?}");
        assert!(window_rates(&[]).is_empty());
    }
}
