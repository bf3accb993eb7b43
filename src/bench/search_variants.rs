//! Exact MaxSim on the same index and queries under other memory and thread placements, to find
//! what holds the all-core kernel below its one-core efficiency: the segments copied into
//! huge-page memory (`Searcher::resident`), and the pool's threads pinned one per CPU.

use super::search_timing::{latency_line, overlap_at_10, time_queries, top10, Latency};
use anyhow::Context;
use pagesight_index::maxsim::Isa;
use pagesight_index::search::{CpuExact, Query};
use pagesight_index::Searcher;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExactVariant {
    /// Segments copied into anonymous memory advised for transparent huge pages.
    HugePages,
    /// A pool of as many threads as the global one, each pinned to its own CPU.
    Pinned,
    /// Both.
    HugePagesPinned,
}

#[derive(Serialize, Debug)]
pub struct VariantRun {
    pub variant: ExactVariant,
    pub isa: Isa,
    /// The kernel that ran (`maxsim::kernel_for`).
    pub kernel: &'static str,
    pub latency: Latency,
    pub gflops: f64,
    /// Of the all-core peak measured before and after all runs (set with the summary).
    pub fraction_of_peak: f64,
    /// Same top-10 as the plain run (must be 1.0: only placement changed).
    pub top10_agreement: f64,
    /// This process's anonymous memory in transparent huge pages after the copy (Linux).
    pub anon_huge_pages_bytes: Option<u64>,
}

impl ExactVariant {
    pub fn name(self) -> &'static str {
        match self {
            ExactVariant::HugePages => "huge pages",
            ExactVariant::Pinned => "pinned",
            ExactVariant::HugePagesPinned => "huge pages, pinned",
        }
    }
}

/// Runs each variant once over `queries`; the copies are made once and dropped at the end.
pub fn run(
    variants: &[ExactVariant],
    s: &Searcher,
    isa: Isa,
    queries: &[Query],
    flops: f64,
    exact_tops: &[Vec<u64>],
) -> anyhow::Result<Vec<VariantRun>> {
    if variants.is_empty() {
        return Ok(Vec::new());
    }
    let needs_copy = variants.iter().any(|v| *v != ExactVariant::Pinned);
    let resident = if needs_copy {
        Some(
            s.resident()
                .context("copying the segments into huge-page memory")?,
        )
    } else {
        None
    };
    let huge = anon_huge_pages_bytes();
    let pinned = pinned_pool(rayon::current_num_threads())?;
    let mut out = Vec::new();
    for &v in variants {
        let searcher = match v {
            ExactVariant::Pinned => s,
            _ => resident.as_ref().unwrap_or(s),
        };
        let timed = || time_queries(queries, |q| top10(searcher, q, &CpuExact(isa)));
        let (lat, tops, _) = match v {
            ExactVariant::HugePages => timed()?,
            _ => pinned.install(timed)?,
        };
        let gflops = flops / (lat.p50_ms / 1e3) / 1e9;
        let run = VariantRun {
            variant: v,
            isa,
            kernel: pagesight_index::maxsim::kernel_for(isa, queries[0].n_tokens),
            top10_agreement: overlap_at_10(exact_tops, &tops),
            anon_huge_pages_bytes: if v == ExactVariant::Pinned {
                None
            } else {
                huge
            },
            latency: lat,
            gflops,
            fraction_of_peak: f64::NAN,
        };
        eprintln!(
            "  exact {:>14} {:<19}: {}  {:6.1} GFLOP/s; top-10 as plain {:.3}{}",
            run.kernel,
            format!("({})", v.name()),
            latency_line(&run.latency),
            gflops,
            run.top10_agreement,
            run.anon_huge_pages_bytes
                .map(|b| format!("; {:.1} GiB in huge pages", b as f64 / (1u64 << 30) as f64))
                .unwrap_or_default()
        );
        out.push(run);
    }
    Ok(out)
}

/// A pool of `n` threads, thread `i` pinned to the `i`-th CPU this process may run on.
fn pinned_pool(n: usize) -> anyhow::Result<rayon::ThreadPool> {
    let cpus = allowed_cpus();
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .start_handler(move |i| {
            if let Some(&cpu) = cpus.get(i % cpus.len().max(1)) {
                pin_to(cpu);
            }
        })
        .build()?)
}

#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) {
    // SAFETY: as above, a zeroed set is valid; `cpu` comes from `allowed_cpus`, so it is below
    // CPU_SETSIZE, and pid 0 pins the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn pin_to(_: usize) {}

/// `AnonHugePages` of `/proc/self/smaps_rollup`, in bytes.
fn anon_huge_pages_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
