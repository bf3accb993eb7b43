//! `pagesight bench embed`: model load time, time per page (vision and LM separately), query
//! time and peak resident memory.

use anyhow::{Context, Result};
use clap::Args;
use pagesight_engine::{
    DType, DeviceChoice, ModelSettings, Quant, QuantCacheSetting, QuantScope, SCHEMA_VERSION,
};
use pagesight_model::colqwen::{ColQwen, RANDOM_WARNING};
use pagesight_model::quant::QuantCacheReport;
use pagesight_model::settings::{Compute, LoraMode};
use std::path::PathBuf;
use std::time::Instant;

/// Timed query embeddings (after an untimed first one).
const QUERY_RUNS: usize = 7;

#[derive(Args, Debug)]
pub struct EmbedBenchArgs {
    #[arg(long, default_value = "random:3b")]
    pub model: String,
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long, default_value = "bf16")]
    pub dtype: DType,
    #[arg(long, default_value = "none")]
    pub quant: Quant,
    /// Which linear layers --quant applies to: all, or lm (the language model only).
    #[arg(long, default_value = "all")]
    pub quant_scope: QuantScope,
    /// Merge the adapter (when there is one) before quantising instead of running it beside
    /// the quantised weights.
    #[arg(long)]
    pub merge_lora: bool,
    /// The NF4 layers' arithmetic: dtype or fp8 (W4A8).
    #[arg(long, default_value = "dtype")]
    pub compute: Compute,
    /// Forward passes timed after loading (and, on a GPU, one untimed warm-up pass).
    #[arg(long, default_value_t = 1)]
    pub pages: usize,
    /// Pages per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Time the forward by section and print the table (on a GPU, the card's time between events
    /// recorded in its stream; nothing waits).
    #[arg(long)]
    pub profile: bool,
    /// Page size in patches (rows, cols); the default is an A4 page at 768 visual tokens.
    #[arg(long, default_value_t = 64)]
    pub grid_h: u32,
    #[arg(long, default_value_t = 46)]
    pub grid_w: u32,
    #[arg(long)]
    pub json: bool,
    /// Query-only mode: skip the pages, embed this many queries one at a time (after one untimed
    /// warm-up query) and report the time per query (min / median / max).
    #[arg(long, value_name = "N")]
    pub queries: Option<usize>,
    /// With --queries: also embed the first N queries through the general path (NF4 dequantised,
    /// half-precision widened, then candle's GEMM: the path before the few-row kernels) and
    /// report how far the vectors are apart.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub compare: usize,
    /// With --queries: run the queries once per instruction set listed (`avx512bf16,avx512,avx2,neon,scalar`;
    /// each capped to what the CPU runs) on the one loaded model. Default: the one
    /// `PAGESIGHT_CPU_ISA` allows.
    #[arg(long, value_delimiter = ',')]
    pub isas: Vec<String>,
    /// With --quant: the folder in which to measure the quantised-weight cache (a temporary
    /// subfolder, removed afterwards): one cold load (quantise, write the cache), then one warm
    /// load (read it). Default: the cache folder pagesight uses (`quant-cache` in the data dir).
    #[arg(long, value_name = "DIR", conflicts_with = "no_quant_cache")]
    pub quant_cache: Option<PathBuf>,
    /// With --quant: one load that quantises, without the cache.
    #[arg(long)]
    pub no_quant_cache: bool,
    #[command(flatten)]
    pub gpu_kernels: crate::cli::args::GpuKernelArgs,
}

/// The model loaded for the benchmark, and how long loading took.
struct Loaded {
    model: ColQwen,
    load_s: f64,
    /// With the cache measured: (cold load s, its report, warm load s, its report).
    cache: Option<(f64, QuantCacheReport, f64, QuantCacheReport)>,
}

fn load_timed(settings: &ModelSettings) -> Result<(ColQwen, f64)> {
    let t0 = Instant::now();
    let model = ColQwen::load(settings).context("loading the model")?;
    Ok((model, t0.elapsed().as_secs_f64()))
}

/// Loads once, or with --quant and the cache: cold (quantise + write) then warm (read), checking
/// that both give the same query vectors bit for bit.
fn load(args: &EmbedBenchArgs, settings: ModelSettings) -> Result<Loaded> {
    if args.quant == Quant::None || args.no_quant_cache {
        let (model, load_s) = load_timed(&ModelSettings {
            quant_cache: QuantCacheSetting::Off,
            ..settings
        })?;
        return Ok(Loaded {
            model,
            load_s,
            cache: None,
        });
    }
    let base = match &args.quant_cache {
        Some(d) => d.clone(),
        None => pagesight_common::paths::quant_cache_dir()
            .context("PAGESIGHT_QUANT_CACHE is off: give --quant-cache DIR or --no-quant-cache")?,
    };
    let scratch = base.join(format!(".bench-{}", std::process::id()));
    let settings = ModelSettings {
        quant_cache: QuantCacheSetting::Dir(scratch.clone()),
        ..settings
    };
    let measured = (|| {
        let query = ["what is the revenue of the company in 2023?".to_string()];
        let (cold, cold_s) = load_timed(&settings)?;
        let cold_report = cold.quant_cache_report().cloned().unwrap_or_default();
        eprintln!("cold load {cold_s:.1} s: {}", cold_report.describe());
        let cold_query = cold.embed_queries(&query)?;
        drop(cold);
        let (warm, warm_s) = load_timed(&settings)?;
        let warm_report = warm.quant_cache_report().cloned().unwrap_or_default();
        eprintln!("warm load {warm_s:.1} s: {}", warm_report.describe());
        anyhow::ensure!(
            warm_report.used(),
            "the warm load did not read the cache {}: {}",
            warm_report.file.display(),
            cold_report
                .write_error
                .iter()
                .chain(&warm_report.warnings)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        anyhow::ensure!(
            warm.embed_queries(&query)? == cold_query,
            "query vectors differ between the quantising load and the cached one"
        );
        Ok(Loaded {
            model: warm,
            load_s: warm_s,
            cache: Some((cold_s, cold_report, warm_s, warm_report)),
        })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    measured
}

/// Search queries of 20–25 tokens with the prompt ("Query: " and 10 augmentation tokens), as a
/// user types them.
const BENCH_QUERIES: [&str; 8] = [
    "what was the revenue of the company in 2023?",
    "diagram of the cooling circuit and the pump",
    "energy consumption of the three prototypes",
    "who signed the agreement for the district council",
    "monthly rainfall at the coastal stations",
    "how to replace the battery pack safely",
    "references cited in the introduction",
    "photo of the bridge under construction in 1932",
];

/// `--queries N`: the time of each query embedding, one query at a time, on a loaded model.
fn run_queries(args: &EmbedBenchArgs, model: &ColQwen, load_s: f64, n: usize) -> Result<()> {
    let one = |i: usize| -> Result<(f64, usize)> {
        let q = BENCH_QUERIES[i % BENCH_QUERIES.len()].to_string();
        let tokens = model.query_input_ids(&q)?.len();
        let t = Instant::now();
        let v = model.embed_queries(&[q])?;
        anyhow::ensure!(
            v.len() == 1 && !v[0].is_empty(),
            "no query vectors produced"
        );
        Ok((t.elapsed().as_secs_f64(), tokens))
    };
    one(BENCH_QUERIES.len() - 1)?;
    pagesight_model::colqwen::profile::enable(args.profile);
    let mut times = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..n.max(1) {
        let (s, t) = one(i)?;
        eprintln!("query {i}: {t} tokens, {:.1} ms", s * 1e3);
        times.push(s);
        tokens.push(t);
    }
    let sections = pagesight_model::colqwen::profile::take()?;
    pagesight_model::colqwen::profile::enable(false);
    let enqueue = enqueue_split(model, n.max(1))?;
    let compared = compare_paths(model, args.compare)?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let (min, median, max) = (
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
    );
    let threads = rayon::current_num_threads();
    if args.json {
        let doc = serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "bench": "embed-queries",
            "model": model.identity(),
            "device": format!("{:?}", model.device()),
            "load_s": load_s,
            "threads": threads,
            "cpu_isa": pagesight_model::quant::gemm::isa_name(),
            "query_tokens": tokens,
            "query_s": times,
            "query_min_s": min,
            "query_median_s": median,
            "query_max_s": max,
            "gpu_enqueue_median_s": enqueue.map(|e| e.0),
            "gpu_finished_median_s": enqueue.map(|e| e.1),
            "vs_general_path": compared.map(|(abs, rel, same)| serde_json::json!({"max_abs": abs, "max_rel_l2": rel, "same_top10_of_synthetic_pages": same})),
            "sections": sections.iter().map(|(l, s, n)| serde_json::json!({"label": l, "s": s, "calls": n})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "model            {} ({} {}, quant {})",
            args.model,
            args.dtype,
            format!("{:?}", model.device()).to_lowercase(),
            args.quant
        );
        println!("load             {load_s:.2} s");
        println!(
            "CPU kernels      {} on {threads} threads",
            pagesight_model::quant::gemm::isa_name()
        );
        println!(
            "query            {} queries of {}–{} tokens: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            times.len(),
            tokens.iter().min().unwrap_or(&0),
            tokens.iter().max().unwrap_or(&0),
            min * 1e3,
            median * 1e3,
            max * 1e3
        );
        if let Some((queued, finished)) = enqueue {
            println!(
                "GPU forward      host returns after {:.1} ms, the GPU finishes at {:.1} ms (medians)",
                queued * 1e3,
                finished * 1e3
            );
        }
        if let Some((abs, rel, same)) = compared {
            println!(
                "vs general path  {} queries: max |Δ| {abs:.2e}, max ‖Δ‖/‖v‖ {rel:.2e}, same top-10 of {COMPARE_PAGES} synthetic pages in {same}",
                args.compare
            );
        }
        let total: f64 = sections.iter().map(|s| s.1).sum();
        for (label, s, calls) in &sections {
            println!(
                "  {label:<28} {:>9.2} ms/query {:>5.1} %  ({calls} calls)",
                s * 1e3 / times.len() as f64,
                100.0 * s / total
            );
        }
    }
    Ok(())
}

/// On a GPU, whether a query waits on the host or on the card: the medians over `n` queries of
/// the time the LM's forward takes to return (the host has queued its kernels) and of the time
/// until the GPU has run them. Close together, the host's queueing is what a query waits for.
fn enqueue_split(model: &ColQwen, n: usize) -> Result<Option<(f64, f64)>> {
    let device = model.device();
    if !device.is_cuda() {
        return Ok(None);
    }
    let (mut queued, mut finished) = (Vec::new(), Vec::new());
    for i in 0..n {
        let q = BENCH_QUERIES[i % BENCH_QUERIES.len()].to_string();
        device.synchronize()?;
        let t = Instant::now();
        let (hidden, _) = model.query_last_hidden(&[q])?;
        queued.push(t.elapsed().as_secs_f64());
        device.synchronize()?;
        finished.push(t.elapsed().as_secs_f64());
        drop(hidden);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Some((median(&mut queued), median(&mut finished))))
}

/// Synthetic pages for the top-10 check: `COMPARE_PAGES` pages of 32 unit vectors of `dim`.
const COMPARE_PAGES: usize = 2000;

/// The first `n` bench queries embedded with the few-row kernels and through the general path:
/// (max |Δ| over all values, max over queries of ‖Δ‖ / ‖v‖, queries whose top-10 of
/// `COMPARE_PAGES` synthetic pages is the same in the same order), or None for `n = 0`.
fn compare_paths(model: &ColQwen, n: usize) -> Result<Option<(f32, f32, usize)>> {
    if n == 0 {
        return Ok(None);
    }
    let dim = model.identity().embedding_dim;
    let pages = pagesight_model::synthetic::unit_vector_pages(COMPARE_PAGES, 32, dim);
    let mut same_top10 = 0;
    let (mut abs, mut rel) = (0f32, 0f32);
    for q in BENCH_QUERIES.iter().cycle().take(n) {
        let q = [q.to_string()];
        let fast = model.embed_queries(&q)?.remove(0);
        let general =
            pagesight_model::quant::gemm::without_kernels(|| model.embed_queries(&q))?.remove(0);
        anyhow::ensure!(
            fast.len() == general.len(),
            "the two paths gave different lengths"
        );
        let (mut d2, mut v2) = (0f64, 0f64);
        for (a, b) in fast.iter().zip(&general) {
            abs = abs.max((a - b).abs());
            d2 += ((a - b) as f64).powi(2);
            v2 += (*b as f64).powi(2);
        }
        rel = rel.max((d2 / v2.max(1e-30)).sqrt() as f32);
        let top10 = |q: &[f32]| pagesight_model::synthetic::top10_maxsim(q, dim, &pages);
        same_top10 += usize::from(top10(&fast) == top10(&general));
    }
    Ok(Some((abs, rel, same_top10)))
}

/// The GPU memory pool's usage where the model runs on CUDA (a `cuda` build), else None.
fn vram_pool(model: &ColQwen) -> Result<Option<PoolUsage>> {
    #[cfg(feature = "cuda")]
    if let candle_core::DeviceLocation::Cuda { gpu_id } = model.device().location() {
        return pagesight_model::gpu::vram::pool_usage(gpu_id).map(Some);
    }
    let _ = model;
    Ok(None)
}

fn reset_vram_high(model: &ColQwen) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let candle_core::DeviceLocation::Cuda { gpu_id } = model.device().location() {
        return pagesight_model::gpu::vram::reset_pool_high(gpu_id);
    }
    let _ = model;
    Ok(())
}

#[cfg(feature = "cuda")]
use pagesight_model::gpu::vram::PoolUsage;
/// Where there is no GPU pool to read.
#[cfg(not(feature = "cuda"))]
#[derive(Clone, Copy)]
struct PoolUsage {
    used_bytes: u64,
    used_high_bytes: u64,
}

/// Peak resident set size of this process in bytes (VmHWM), where /proc exists.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(args: EmbedBenchArgs) -> Result<()> {
    let settings = ModelSettings {
        model: args.model.clone(),
        adapter: args.adapter.clone(),
        device: args.device,
        dtype: args.dtype,
        quant: args.quant,
        quant_scope: args.quant_scope,
        lora: if args.merge_lora {
            LoraMode::Merged
        } else {
            LoraMode::Unmerged
        },
        compute: args.compute,
        max_visual_tokens: Some(768),
        quant_cache: QuantCacheSetting::Off,
        gpu_kernels: args.gpu_kernels.setting(),
    };
    let Loaded {
        model,
        load_s,
        cache,
    } = load(&args, settings)?;
    let rss_after_load = peak_rss_bytes();
    eprintln!("loaded {} in {load_s:.1} s", args.model);
    if let Some(n) = args.queries {
        use pagesight_model::quant::gemm::{with_isa, CpuIsa};
        if args.isas.is_empty() {
            return run_queries(&args, &model, load_s, n);
        }
        for name in &args.isas {
            let cap = CpuIsa::parse(name)
                .with_context(|| format!("--isas: {name:?} is not one of {}", CpuIsa::names()))?;
            with_isa(cap, || run_queries(&args, &model, load_s, n))?;
        }
        return Ok(());
    }
    let grid = [1, args.grid_h, args.grid_w];
    let n = (args.grid_h * args.grid_w) as usize;
    let batch = args.batch.max(1);
    let (pixels, grids) =
        pagesight_model::synthetic::synthetic_pages(batch, args.grid_h, args.grid_w)?;
    // On the model's device before the clock starts, as the ingest pipeline hands a forward its
    // pixels: a page's time is the forward's, and the upload (which the pipeline overlaps and
    // `bench ingest` times) does not show as the patch embedding's.
    let pixels = pixels.to_device(model.device())?;
    let weights_vram = vram_pool(&model)?;
    if model.device().is_cuda() {
        // First use compiles kernels and makes cuBLAS handles: not part of a page's time.
        let v = model.vision_forward(&pixels, &grids)?;
        model.lm_forward(&v, &grids)?;
        reset_vram_high(&model)?;
    }
    pagesight_model::colqwen::profile::enable(args.profile);
    let mut vision_s = Vec::new();
    let mut lm_s = Vec::new();
    for _ in 0..args.pages.max(1) {
        let t = Instant::now();
        let v = model.vision_forward(&pixels, &grids)?;
        // Reading a value back waits for the device to finish.
        let _ = v
            .sum_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_scalar::<f32>()?;
        vision_s.push(t.elapsed().as_secs_f64() / batch as f64);
        eprintln!("vision tower: {:.3} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let pages = model.lm_forward(&v, &grids)?;
        lm_s.push(t.elapsed().as_secs_f64() / batch as f64);
        anyhow::ensure!(
            pages.len() == batch && pages[0].n_tokens > 0,
            "no vectors produced"
        );
    }
    let peak_vram = vram_pool(&model)?;
    let sections = pagesight_model::colqwen::profile::take()?;
    pagesight_model::colqwen::profile::enable(false);
    // One query as the search embeds it (the first call pays for its kernels' first use), then
    // the median of the timed ones.
    let query = ["what is the revenue of the company in 2023?".to_string()];
    model.embed_queries(&query)?;
    let mut query_times = Vec::new();
    for _ in 0..QUERY_RUNS {
        let t = Instant::now();
        model.embed_queries(&query)?;
        query_times.push(t.elapsed().as_secs_f64());
    }
    let query_s = pagesight_common::stats::median(query_times);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let peak = peak_rss_bytes();
    let gib = |b: Option<u64>| {
        b.map(|b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64))
            .unwrap_or("n/a".into())
    };
    if args.json {
        let doc = serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "bench": "embed",
            "model": model.identity(),
            "device": format!("{:?}", model.device()),
            "load_s": load_s,
            "quant_cache": cache.as_ref().map(|(cold_s, cold, warm_s, warm)| serde_json::json!({
                "cold_load_s": cold_s, "cold_write_s": cold.write_s,
                "bytes": cold.bytes_written, "warm_load_s": warm_s, "warm_read_s": warm.read_s,
            })),
            "page_grid": grid,
            "batch": batch,
            "quant": args.quant,
            "quant_scope": model.identity().quant_scope,
            "quant_layers": model.quant_summary().map(|s| serde_json::json!({
                "nf4": s.nf4_layers, "ggml": s.ggml_layers, "dense": s.dense_layers,
                "bytes_before": s.bytes_before, "bytes_after": s.bytes_after,
            })),
            "sections": sections.iter().map(|(l, s, n)| serde_json::json!({"label": l, "s": s, "calls": n})).collect::<Vec<_>>(),
            "visual_tokens": n / 4,
            "vision_s_per_page": mean(&vision_s),
            "lm_s_per_page": mean(&lm_s),
            "page_s": mean(&vision_s) + mean(&lm_s),
            "query_s": query_s,
            "peak_rss_after_load_bytes": rss_after_load,
            "peak_rss_bytes": peak,
            "vram_weights_bytes": weights_vram.map(|p| p.used_bytes),
            "vram_peak_bytes": peak_vram.map(|p| p.used_high_bytes),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "model            {} ({} {})",
            args.model,
            args.dtype,
            format!("{:?}", model.device()).to_lowercase()
        );
        if let Some(s) = model.quant_summary() {
            println!(
                "quant            {}, scope {}: {} nf4, {} ggml, {} dense layers; linear weights {} → {}",
                args.quant,
                model.identity().quant_scope,
                s.nf4_layers,
                s.ggml_layers,
                s.dense_layers,
                gib(Some(s.bytes_before as u64)),
                gib(Some(s.bytes_after as u64))
            );
        }
        match &cache {
            Some((cold_s, cold, warm_s, warm)) => {
                println!(
                    "load (cold)   {cold_s:>7.2} s  quantise, then write the cache ({} in {:.2} s)",
                    pagesight_model::quant::cache::size_text(cold.bytes_written.unwrap_or(0)),
                    cold.write_s
                );
                println!(
                    "load (warm)   {warm_s:>7.2} s  read the cache ({:.2} s with checksums): {:.1}× faster",
                    warm.read_s,
                    cold_s / warm_s.max(1e-9)
                );
            }
            None => println!("load             {load_s:.2} s"),
        }
        println!(
            "page             {}×{} patches, {} visual tokens",
            grid[1],
            grid[2],
            n / 4
        );
        println!("vision / page    {:.1} ms", mean(&vision_s) * 1e3);
        println!("LM+head / page   {:.1} ms", mean(&lm_s) * 1e3);
        println!(
            "total / page     {:.1} ms",
            (mean(&vision_s) + mean(&lm_s)) * 1e3
        );
        println!(
            "query            {:.2} ms (median of {QUERY_RUNS}, after one untimed)",
            query_s * 1e3
        );
        let total: f64 = sections.iter().map(|s| s.1).sum();
        for (label, s, calls) in &sections {
            println!(
                "  {label:<28} {:>9.2} ms/page {:>5.1} %  ({calls} calls)",
                s * 1e3 / (batch * args.pages.max(1)) as f64,
                100.0 * s / total
            );
        }
        println!(
            "peak RSS         {} after load, {} at end",
            gib(rss_after_load),
            gib(peak)
        );
        if let (Some(w), Some(p)) = (weights_vram, peak_vram) {
            // Our allocations only (the memory pool), as PyTorch's max_memory_allocated.
            println!(
                "VRAM allocated   {} after load (weights), peak {} at batch {batch}",
                gib(Some(w.used_bytes)),
                gib(Some(p.used_high_bytes))
            );
        }
    }
    #[cfg(feature = "cuda")]
    if args.compute == Compute::Fp8 && args.device.will_use_cuda() {
        // Whether cuBLASLt took the per-channel and per-token scales, or our kernel applied them.
        println!(
            "fp8 scales       {}",
            if pagesight_model::gpu::fp8::scaling_in_gemm() {
                "in the GEMM's epilogue"
            } else {
                "after the GEMM (cuBLASLt has no scaled FP8 kernel for this card)"
            }
        );
    }
    if model.is_random() {
        eprintln!(
            "note: {}: {RANDOM_WARNING} (timings are still real)",
            args.model
        );
    }
    Ok(())
}
