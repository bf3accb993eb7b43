//! `pagesight bench search`: synthetic ColQwen-shaped pages (750 × 128, unit norm, stored f16,
//! clustered as `index::synthetic` describes) through the real index. Per corpus size: exact
//! MaxSim per ISA (p50/p99, GFLOP/s and fraction of the FMA peak measured in the same run), the
//! binary prefilter + exact rerank at several candidate counts (recall@10 vs exact, speed-up),
//! optionally the tensor scorer on a candle device (`--device cuda` in a CUDA build: the fused
//! MaxSim kernel and the cuBLAS path, `search_tensor`), and the
//! reference scorer (colpali-engine's `score_multi_vector`, torch f32 einsum) on the same vectors.

use super::cpu_peak::{self, IsaPeak};
use super::search_reference::add_reference;
use super::search_synthetic::{build, synthetic_queries, SyntheticCorpusArgs, CORPUS_VERSION};
use super::search_tensor::{tensor_runs, TensorResults};
use super::search_timing::{latency_line, overlap_at_10, time_queries, top10, Latency};
use anyhow::Context;
use clap::Args;
use pagesight_index::maxsim::{detected_isa, Isa, PreparedQuery, Scratch};
use pagesight_index::search::{CpuExact, Query, Scorer};
use pagesight_index::synthetic::Corpus;
use pagesight_index::Index;
use pagesight_model::settings::DeviceChoice;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct SearchBenchArgs {
    /// Corpus sizes in pages.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub pages: Vec<usize>,
    #[command(flatten)]
    pub synthetic: SyntheticCorpusArgs,
    /// Binary prefilter: candidate counts rescored exactly (one run each).
    #[arg(long, value_delimiter = ',', default_value = "100,200,400")]
    pub candidates: Vec<usize>,
    /// Python with colpali-engine for the reference scorer; empty to skip it.
    #[arg(long, default_value = "/work/refenv/bin/python")]
    pub python: String,
    /// The reference needs a raw f16 copy of the pages; it is written (and the reference run)
    /// only up to this many pages (100k pages are 19 GB more on disk).
    #[arg(long, default_value_t = 20_000)]
    pub reference_max_pages: usize,
    /// Python with the published GPU MaxSim kernels (flash-maxsim, late-interaction-kernels,
    /// colpali-engine): each is timed on the same vectors and card next to ours (needs --device
    /// cuda; sizes up to --reference-max-pages, whose raw f16 copy the peers read).
    #[arg(long, value_name = "PYTHON")]
    pub gpu_peers: Option<String>,
    /// Also score with the tensor scorer (batched matmuls on this candle device: cpu, cuda:N).
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// The tensor scorer's matmul dtype: f32 (exact) or f16; default f32 on the CPU, f16 on CUDA.
    #[arg(long)]
    pub tensor_compute: Option<String>,
    /// Pages per resident tensor of the tensor scorer (default 512 on the CPU, 4096 on CUDA:
    /// fewer kernel launches per query).
    #[arg(long)]
    pub tensor_chunk_pages: Option<usize>,
    /// Time exact MaxSim only with the best ISA (skips the AVX2 comparison; for 100k pages).
    #[arg(long)]
    pub only_best_isa: bool,
    /// Also time exact MaxSim (best ISA) with the segments in huge-page memory and/or the
    /// threads pinned: huge-pages, pinned, huge-pages-pinned.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub exact_variants: Vec<super::search_variants::ExactVariant>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct ExactRun {
    pub isa: Isa,
    /// The kernel that ran (`PreparedQuery::kernel_name`: on AVX-512, rows or tiles).
    pub kernel: String,
    /// Share of the CPUs' time the hypervisor gave to others during these queries.
    pub steal_fraction: Option<f64>,
    pub latency: Latency,
    /// Useful flops (2 · query tokens · page tokens · dim) / p50.
    pub gflops: f64,
    /// The same at the fastest query.
    pub gflops_at_min: f64,
    /// Useful flops of all timed queries / the CPU seconds the process was given meanwhile.
    pub gflops_per_cpu_second: f64,
    pub one_core_peak_gflops: f64,
    /// `gflops_per_cpu_second / one_core_peak_gflops`: the kernel's efficiency on the cycles it
    /// got, which other tenants of a shared machine do not change.
    pub fraction_of_peak_per_cpu_second: f64,
    /// All cores, measured FMA loop of this ISA (see `machine.how`).
    pub peak_gflops: f64,
    pub fraction_of_peak: f64,
    pub fraction_of_peak_at_min: f64,
    /// p50 against the best window in which every core ran the FMA loop at once
    /// (`IsaPeak::all_cores_together_gflops`).
    pub fraction_of_peak_together: f64,
    /// Each query against an all-cores FMA window just before it (`search_paired`); the best
    /// ISA only.
    pub paired: Option<super::search_paired::PairedPeak>,
    /// Stored page bytes read per query / p50.
    pub page_gb_per_s: f64,
    /// The roofline for this arithmetic intensity: min(FMA peak, read bandwidth × flop per byte).
    pub roofline_gflops: f64,
    pub fraction_of_roofline: f64,
}

#[derive(Serialize, Debug)]
pub struct CompressedRun {
    pub mode: String,
    pub candidates: usize,
    pub latency: Latency,
    pub recall_at_10: f64,
    pub speedup_vs_exact: f64,
}

#[derive(Serialize, Debug)]
pub struct SizeResult {
    pub pages: usize,
    pub bytes_per_page: f64,
    pub build_secs: Option<f64>,
    pub open_verify_secs: f64,
    pub flops_per_query: f64,
    pub exact: Vec<ExactRun>,
    pub compressed: Vec<CompressedRun>,
    pub tensor: Option<TensorResults>,
    /// The published GPU kernels on the same vectors and card (`--gpu-peers`).
    pub gpu_peers: Vec<super::search_peers::PeerRun>,
    pub reference: Option<serde_json::Value>,
    pub reference_p50_ms: Option<f64>,
    pub reference_einsum_p50_ms: Option<f64>,
    pub speedup_vs_reference: Option<f64>,
    pub reference_top10_agreement: Option<f64>,
    pub reference_max_abs_score_diff: Option<f64>,
    /// All-core read bandwidth over this index's mmapped segment files (a plain sum).
    pub mapped_read_gb_per_s: Option<f64>,
    /// Exact MaxSim under other memory / thread placements (`--exact-variants`).
    pub exact_variants: Vec<super::search_variants::VariantRun>,
    /// Main-memory latency alone and while exact queries run on the other threads.
    pub memory_latency: Option<super::memory_latency::MemoryLatency>,
}

#[derive(Serialize, Debug)]
pub struct KernelRun {
    pub isa: Isa,
    pub gflops: f64,
    pub peak_gflops: f64,
    pub fraction_of_peak: f64,
}

#[derive(Serialize, Debug)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub peaks: Vec<IsaPeak>,
    /// All-core read bandwidth (`cpu_peak::read_bandwidth_gb_per_s`).
    pub read_gb_per_s: f64,
    pub how: String,
}

#[derive(Serialize, Debug)]
pub struct SearchBench {
    pub schema: u32,
    pub machine: Machine,
    /// One core scoring one L2-resident page over and over: the kernel's own efficiency, apart
    /// from memory bandwidth and thread scheduling.
    pub kernel_single_core: Vec<KernelRun>,
    /// The binary prefilter's kernel on one core, one L1-resident page: microseconds per page.
    pub binary_kernel_us_per_page: f64,
    pub synthetic_data: String,
    pub tokens: usize,
    pub dim: usize,
    pub query_tokens: usize,
    pub queries: usize,
    pub sizes: Vec<SizeResult>,
}

fn isas() -> Vec<Isa> {
    [detected_isa(), Isa::Avx2F16c]
        .into_iter()
        .filter(|i| i.available())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn kernel_single_core(a: &SearchBenchArgs, corpus: &Corpus) -> Vec<(Isa, f64)> {
    let page = corpus.page(1, a.synthetic.tokens);
    let packed = pagesight_index::vectors::pack_blocks(&page, a.synthetic.tokens, a.synthetic.dim);
    let q = corpus.query(1, a.synthetic.query_tokens, 0);
    // Many short trials (~1 ms): on a shared machine the best one is uninterrupted.
    let reps = 10;
    let flops = 2.0
        * (a.synthetic.query_tokens * a.synthetic.tokens * a.synthetic.dim) as f64
        * reps as f64;
    isas()
        .into_iter()
        .map(|isa| {
            let prepared = PreparedQuery::new(isa, &q, a.synthetic.query_tokens, a.synthetic.dim);
            let mut scratch = Scratch::default();
            let mut best = f64::INFINITY;
            for _ in 0..300 {
                let t = Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(prepared.score(
                        &mut scratch,
                        std::hint::black_box(&packed),
                        a.synthetic.tokens,
                    ));
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            (isa, flops / best / 1e9)
        })
        .collect()
}

fn binary_kernel_single_core(a: &SearchBenchArgs, corpus: &Corpus) -> f64 {
    use pagesight_index::binary::{hamming_maxsim, query_words, PageCodes};
    let page = corpus.page(1, a.synthetic.tokens);
    let codes = pagesight_index::vectors::sign_codes(&page, a.synthetic.tokens, a.synthetic.dim);
    let q = corpus.query(1, a.synthetic.query_tokens, 0);
    let qw = query_words(&q, a.synthetic.query_tokens, a.synthetic.dim);
    let reps = 50;
    let mut best = f64::INFINITY;
    for _ in 0..200 {
        let t = Instant::now();
        for _ in 0..reps {
            let page = PageCodes {
                codes: std::hint::black_box(&codes),
                n_tokens: a.synthetic.tokens,
                next: None,
            };
            std::hint::black_box(hamming_maxsim(
                &qw,
                a.synthetic.query_tokens,
                a.synthetic.dim,
                page,
            ));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best / reps as f64 * 1e6
}

pub fn run(a: SearchBenchArgs) -> anyhow::Result<()> {
    let cores = rayon::current_num_threads();
    let cpu = cpu_peak::cpuinfo("model name").unwrap_or_else(|| "unknown".into());
    let mut peaks = cpu_peak::measure_all(&isas());
    for p in &peaks {
        eprintln!(
            "{cpu} × {cores} threads; FMA peak {}: 1 core {:.0} GFLOP/s, all {:.0} (all cores together {:.0}, sustained {:.0}, nominal {:.0})",
            p.isa.name(),
            p.one_core_gflops,
            p.all_cores_gflops,
            p.all_cores_together_gflops,
            p.all_cores_sustained_gflops,
            p.nominal_gflops.unwrap_or(f64::NAN)
        );
    }
    let unused = cpu_peak::unused_isas(&cpu_peak::cpuinfo("flags").unwrap_or_default());
    if !unused.is_empty() {
        eprintln!(
            "also on this CPU, not used by exact MaxSim: {} (they multiply in bf16, fp16 or int8; exact MaxSim widens the f16 pages to f32)",
            unused.join(", ")
        );
    }
    let corpus = Corpus::new(42, a.synthetic.dim, 1024);
    let kernel = kernel_single_core(&a, &corpus);
    let binary_kernel_us_per_page = binary_kernel_single_core(&a, &corpus);
    eprintln!(
        "binary prefilter kernel, 1 core, one page: {binary_kernel_us_per_page:.2} µs per page ({})",
        if pagesight_index::binary::simd_available(a.synthetic.dim) { "avx512 vpopcntdq" } else { "portable" }
    );
    let chain = super::memory_latency::Chain::new()
        .map_err(|e| eprintln!("memory latency not measured: {e:#}"))
        .ok();
    let mut sizes = Vec::new();
    for &n in &a.pages {
        let dir = a
            .synthetic
            .work_dir
            .join(format!("pages-{n}-v{CORPUS_VERSION}"));
        eprintln!("{n} pages in {}", dir.display());
        let with_reference = !a.python.is_empty() && n <= a.reference_max_pages;
        let with_peers = a.gpu_peers.is_some() && n <= a.reference_max_pages;
        let build_secs = build(&a, &corpus, n, &dir, with_reference || with_peers)
            .with_context(|| format!("building {}", dir.display()))?;
        let t = Instant::now();
        let ix = Index::open(&dir)?;
        let open_verify_secs = t.elapsed().as_secs_f64();
        let s = ix.searcher()?;
        let stats = ix.stats();
        let queries = synthetic_queries(&corpus, n, a.synthetic.queries, a.synthetic.query_tokens);
        let flops =
            2.0 * a.synthetic.query_tokens as f64 * stats.vectors as f64 * a.synthetic.dim as f64;
        let mut exact = Vec::new();
        let mut exact_tops = Vec::new();
        let exact_isas = isas();
        let take = if a.only_best_isa { 1 } else { exact_isas.len() };
        for (i, &isa) in exact_isas.iter().take(take).enumerate() {
            let ticks = cpu_peak::cpu_ticks();
            let (lat, tops, cpu_secs) = time_queries(&queries, |q| top10(&s, q, &CpuExact(isa)))?;
            let steal_fraction = cpu_peak::steal_fraction(ticks, cpu_peak::cpu_ticks());
            // The best ISA (listed first) is also timed against the peak around each query.
            let paired = if i == 0 {
                let window = std::time::Duration::from_secs_f64(lat.p50_ms / 1e3);
                Some(super::search_paired::run(
                    isa,
                    &queries,
                    flops,
                    window,
                    |q| top10(&s, q, &CpuExact(isa)),
                )?)
            } else {
                None
            };
            let gflops_per_cpu_second = flops * queries.len() as f64 / cpu_secs / 1e9;
            if exact_tops.is_empty() {
                exact_tops = tops;
            }
            let gflops = flops / (lat.p50_ms / 1e3) / 1e9;
            let gflops_at_min = flops / (lat.min_ms / 1e3) / 1e9;
            let kernel = pagesight_index::maxsim::kernel_for(isa, a.synthetic.query_tokens);
            eprintln!(
                "  exact {:>14}: {}  {:6.1} GFLOP/s (at min {:6.1})",
                kernel,
                latency_line(&lat),
                gflops,
                gflops_at_min,
            );
            exact.push(ExactRun {
                isa,
                kernel: kernel.to_string(),
                steal_fraction,
                latency: lat,
                gflops,
                gflops_at_min,
                gflops_per_cpu_second,
                one_core_peak_gflops: 0.0,
                fraction_of_peak_per_cpu_second: 0.0,
                peak_gflops: 0.0,
                fraction_of_peak: 0.0,
                fraction_of_peak_at_min: 0.0,
                fraction_of_peak_together: 0.0,
                paired,
                // f16 storage: 2 bytes per value, each used by 2 · query tokens flops.
                page_gb_per_s: gflops / a.synthetic.query_tokens as f64,
                roofline_gflops: 0.0,
                fraction_of_roofline: 0.0,
            });
        }
        let best_exact = exact
            .iter()
            .map(|e| e.latency.p50_ms)
            .fold(f64::INFINITY, f64::min);
        let best_isa = CpuExact(
            exact
                .iter()
                .min_by(|x, y| x.latency.p50_ms.total_cmp(&y.latency.p50_ms))
                .map(|e| e.isa)
                .unwrap_or(Isa::Portable),
        );
        let exact_variants = super::search_variants::run(
            &a.exact_variants,
            &s,
            best_isa.0,
            &queries,
            flops,
            &exact_tops,
        )?;
        let memory_latency = chain.as_ref().and_then(|c| {
            c.measure(|| {
                let _ = top10(&s, &queries[0], &best_isa);
            })
            .map_err(|e| eprintln!("memory latency not measured: {e:#}"))
            .ok()
        });
        let mut compressed = Vec::new();
        for &c in &a.candidates {
            let bq: Vec<Query> = queries
                .iter()
                .map(|q| Query {
                    scorer: Scorer::Binary { candidates: c },
                    ..q.clone()
                })
                .collect();
            let (lat, tops, _) = time_queries(&bq, |q| top10(&s, q, &best_isa))?;
            let recall = overlap_at_10(&exact_tops, &tops);
            eprintln!(
                "  binary + rerank {c:>5}: p50 {:8.2} ms  p99 {:8.2} ms  recall@10 {:.3}  {:.1}× faster than exact",
                lat.p50_ms,
                lat.p99_ms,
                recall,
                best_exact / lat.p50_ms
            );
            compressed.push(CompressedRun {
                mode: if pagesight_index::binary::simd_available(a.synthetic.dim) {
                    "binary-avx512-vpopcntdq".into()
                } else {
                    "binary-portable".into()
                },
                candidates: c,
                speedup_vs_exact: best_exact / lat.p50_ms,
                latency: lat,
                recall_at_10: recall,
            });
        }
        let tensor = tensor_runs(&a, &s, &queries, &exact_tops)?;
        let gpu_peers = match (&a.gpu_peers, with_peers) {
            (Some(python), true) => super::search_peers::run_peers(
                &a, python, &dir, n, &queries, &s,
            )
            .unwrap_or_else(|e| {
                eprintln!("  GPU peers not run: {e:#}");
                Vec::new()
            }),
            (Some(_), false) => {
                eprintln!("  GPU peers skipped: {n} pages > --reference-max-pages");
                Vec::new()
            }
            _ => Vec::new(),
        };
        let mapped_read_gb_per_s = cpu_peak::mapped_read_gb_per_s(&dir.join("segments"));
        let mut r = SizeResult {
            memory_latency,
            mapped_read_gb_per_s,
            exact_variants,
            pages: n,
            bytes_per_page: stats.bytes_per_page,
            build_secs,
            open_verify_secs,
            flops_per_query: flops,
            exact,
            compressed,
            tensor,
            gpu_peers,
            reference: None,
            reference_p50_ms: None,
            reference_einsum_p50_ms: None,
            speedup_vs_reference: None,
            reference_top10_agreement: None,
            reference_max_abs_score_diff: None,
        };
        if with_reference {
            add_reference(&a, &dir, n, &queries, &s, &exact_tops, best_exact, &mut r);
        } else if !a.python.is_empty() {
            eprintln!("  reference skipped: {n} pages > --reference-max-pages");
        }
        sizes.push(r);
    }
    // Peak again after the runs; keep the higher value per ISA (never flatters the fraction).
    cpu_peak::merge_max(&mut peaks, &cpu_peak::measure_all(&isas()));
    let peak_of = |isa: Isa| peaks.iter().find(|p| p.isa == isa);
    let read_gb_per_s = cpu_peak::read_bandwidth_gb_per_s();
    eprintln!(
        "all-core read bandwidth: {read_gb_per_s:.1} GB/s (best of 5, {cores} threads){}",
        if cfg!(debug_assertions) {
            "; a debug build's read loop is not optimised and understates it: use a release build for the roofline"
        } else {
            ""
        }
    );
    super::search_report::fractions(&mut sizes, &peaks, read_gb_per_s, a.synthetic.query_tokens);
    let kernel: Vec<KernelRun> = kernel
        .into_iter()
        .map(|(isa, gflops)| {
            let peak = peak_of(isa).map_or(f64::NAN, |p| p.one_core_gflops);
            eprintln!(
                "kernel, 1 core, L2-resident page, {}: {gflops:.1} GFLOP/s = {:.1} % of the measured 1-core FMA peak {peak:.0}",
                isa.name(),
                100.0 * gflops / peak
            );
            KernelRun {
                isa,
                gflops,
                peak_gflops: peak,
                fraction_of_peak: gflops / peak,
            }
        })
        .collect();
    let out = SearchBench {
        schema: pagesight_engine::event::SCHEMA_VERSION,
        machine: Machine {
            cpu,
            cores,
            peaks,
            read_gb_per_s,
            how: "peak = sum over cores of FMA instructions x lanes x 2 flop / elapsed, from a register-only loop of independent FMAs of that ISA run on every core at once (and on one core for the kernel line), each core's best 1 ms trial; together = the best 2 ms window in which every core ran the loop at the same moment (all cores' flop / the window); both measured before and after the scorers, higher value kept".into(),
        },
        kernel_single_core: kernel,
        binary_kernel_us_per_page,
        synthetic_data: "index::synthetic::Corpus v2: Zipf-popular topics, per-page sub-centroids, 20-60 % shared background tokens, queries = 6 shared prompt tokens + tokens near the target page's sub-centroids".into(),
        tokens: a.synthetic.tokens,
        dim: a.synthetic.dim,
        query_tokens: a.synthetic.query_tokens,
        queries: a.synthetic.queries,
        sizes,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
