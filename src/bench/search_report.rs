//! The summary lines of `pagesight bench search`: each exact run against the peaks and the read
//! bandwidth measured around all runs (fraction of the all-core FMA peak, of its best
//! all-cores-together window and its sustained median, per CPU second, of the memory roofline),
//! and the `--exact-variants` runs likewise.

use super::cpu_peak::IsaPeak;
use super::search::SizeResult;
use pagesight_index::maxsim::Isa;

/// Fills in every run's fractions from the final `peaks` and prints them.
pub(super) fn fractions(
    sizes: &mut [SizeResult],
    peaks: &[IsaPeak],
    read_gb_per_s: f64,
    query_tokens: usize,
) {
    // One figure of this ISA's peaks (NaN where it was not measured).
    let peak_of = |isa: Isa, figure: fn(&IsaPeak) -> f64| {
        peaks.iter().find(|p| p.isa == isa).map_or(f64::NAN, figure)
    };
    // flop per stored byte of an exact MaxSim: 2 · query tokens per f16 value of 2 bytes.
    let intensity = query_tokens as f64;
    for size in sizes.iter_mut() {
        for e in &mut size.exact {
            e.peak_gflops = peak_of(e.isa, |p| p.all_cores_gflops);
            e.fraction_of_peak = e.gflops / e.peak_gflops;
            e.fraction_of_peak_at_min = e.gflops_at_min / e.peak_gflops;
            e.one_core_peak_gflops = peak_of(e.isa, |p| p.one_core_gflops);
            e.fraction_of_peak_per_cpu_second = e.gflops_per_cpu_second / e.one_core_peak_gflops;
            e.roofline_gflops = e.peak_gflops.min(read_gb_per_s * intensity);
            e.fraction_of_roofline = e.gflops / e.roofline_gflops;
            let sustained = peak_of(e.isa, |p| p.all_cores_sustained_gflops);
            let together = peak_of(e.isa, |p| p.all_cores_together_gflops);
            e.fraction_of_peak_together = e.gflops / together;
            eprintln!(
                "{} pages, exact {}: p50 = {:.1} % of the best window with all cores at once ({together:.0} GFLOP/s), {:.1} % of the all-core FMA loop's median trial ({sustained:.0} GFLOP/s); steal during the queries {}",
                size.pages,
                e.kernel,
                100.0 * e.fraction_of_peak_together,
                100.0 * e.gflops / sustained,
                e.steal_fraction
                    .map_or("unknown".to_string(), |f| format!("{:.1} %", 100.0 * f))
            );
            eprintln!(
                "{} pages, exact {}: p50 {:.1} GFLOP/s = {:.1} %, fastest query {:.1} GFLOP/s = {:.1} % of the measured all-core FMA peak {:.0}; per CPU second given {:.1} GFLOP/s = {:.1} % of the 1-core peak {:.0}",
                size.pages,
                e.kernel,
                e.gflops,
                100.0 * e.fraction_of_peak,
                e.gflops_at_min,
                100.0 * e.fraction_of_peak_at_min,
                e.peak_gflops,
                e.gflops_per_cpu_second,
                100.0 * e.fraction_of_peak_per_cpu_second,
                e.one_core_peak_gflops
            );
            if let Some(p) = &e.paired {
                eprintln!(
                    "{} pages, exact {}: against an all-cores FMA window of {:.1} ms just before each of {} queries: median {:.1} % of the window's rate, {:.1} % over the quieter half of the windows (windows {:.0} / {:.0} / {:.0} GFLOP/s min / median / max; the paired queries' median {:.1} GFLOP/s)",
                    size.pages,
                    e.kernel,
                    p.window_ms,
                    p.pairs,
                    100.0 * p.fraction_median,
                    100.0 * p.fraction_quiet_half,
                    p.window_gflops_min,
                    p.window_gflops_median,
                    p.window_gflops_max,
                    p.query_gflops_median
                );
            }
            if let Some(m) = size.mapped_read_gb_per_s {
                eprintln!(
                    "{} pages: a plain all-core sum over the index's mmapped segment files reads {m:.1} GB/s; exact {} reads {:.1} GB/s = {:.1} % of that",
                    size.pages,
                    e.kernel,
                    e.page_gb_per_s,
                    100.0 * e.page_gb_per_s / m
                );
            }
            if let Some(m) = &size.memory_latency {
                let cores = rayon::current_num_threads() as f64;
                let bound = m.core_gb_per_s_bound() * cores * intensity;
                eprintln!(
                    "{} pages: memory latency {:.0} ns alone, {:.0} ns while {} threads run exact queries (1 GiB chain, random within 2 MiB); at {} lines in flight a core reads ≤ {:.1} GB/s, all cores {bound:.0} GFLOP/s = {:.1} % of the peak; exact {} reads {:.1} GB/s per core",
                    size.pages,
                    m.idle_ns,
                    m.loaded_ns,
                    m.load_threads,
                    super::memory_latency::LINES_IN_FLIGHT,
                    m.core_gb_per_s_bound(),
                    100.0 * bound / e.peak_gflops,
                    e.kernel,
                    e.page_gb_per_s / cores
                );
            }
            eprintln!(
                "{} pages, exact {}: reads {:.1} GB/s of page data = {:.1} % of the read bandwidth; roofline at {intensity:.0} flop/byte = {:.0} GFLOP/s ({}), p50 at {:.1} % of it",
                size.pages,
                e.kernel,
                e.page_gb_per_s,
                100.0 * e.page_gb_per_s / read_gb_per_s,
                e.roofline_gflops,
                if e.roofline_gflops < e.peak_gflops { "memory-bound" } else { "compute-bound" },
                100.0 * e.fraction_of_roofline
            );
        }
        for v in &mut size.exact_variants {
            let peak = peak_of(v.isa, |p| p.all_cores_gflops);
            v.fraction_of_peak = v.gflops / peak;
            eprintln!(
                "{} pages, exact {} ({}): p50 {:.1} GFLOP/s = {:.1} % of the measured all-core FMA peak {peak:.0}",
                size.pages,
                v.kernel,
                v.variant.name(),
                v.gflops,
                100.0 * v.fraction_of_peak
            );
        }
    }
}
