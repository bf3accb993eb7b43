//! `pagesight bench search`: synthetic ColQwen-shaped pages (750 × 128, unit norm, stored f16)
//! through the real index; exact MaxSim per ISA and the binary prefilter (recall@10 vs exact):
//! p50/p99 latency, GFLOP/s against the machine's measured peak, bytes per page; and the
//! reference scorer (colpali-engine's `score_multi_vector`, torch f32 einsum) on the same vectors.

use crate::index::maxsim::{detected_isa, Isa};
use crate::index::search::{CpuExact, Query, Scorer, SearchMode};
use crate::index::synthetic::{Corpus, Rng};
use crate::index::{Index, PageRecord, Provenance};
use anyhow::Context;
use clap::Args;
use rayon::prelude::*;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct SearchBenchArgs {
    /// Corpus sizes in pages.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub pages: Vec<usize>,
    #[arg(long, default_value_t = 750)]
    pub tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Query tokens (ColQwen queries with their prompt are ~20–30).
    #[arg(long, default_value_t = 20)]
    pub query_tokens: usize,
    #[arg(long, default_value_t = 20)]
    pub queries: usize,
    /// Binary prefilter: candidates rescored exactly.
    #[arg(long, default_value_t = 200)]
    pub candidates: usize,
    /// Where the synthetic indexes go (reused across runs when complete).
    #[arg(long, default_value = "target/bench-search")]
    pub work_dir: PathBuf,
    /// Python with colpali-engine for the reference scorer; empty to skip it.
    #[arg(long, default_value = "/work/refenv/bin/python")]
    pub python: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    Latency {
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
    }
}

#[derive(Serialize, Debug)]
pub struct ExactRun {
    pub isa: Isa,
    pub latency: Latency,
    pub gflops: f64,
    pub peak_gflops: f64,
    pub fraction_of_peak: f64,
}

#[derive(Serialize, Debug)]
pub struct SizeResult {
    pub pages: usize,
    pub bytes_per_page: f64,
    pub build_secs: Option<f64>,
    pub open_verify_secs: f64,
    pub flops_per_query: f64,
    pub exact: Vec<ExactRun>,
    pub binary: Latency,
    pub binary_candidates: usize,
    pub binary_recall_at_10: f64,
    pub binary_speedup_vs_exact: f64,
    pub reference: Option<serde_json::Value>,
    pub reference_p50_ms: Option<f64>,
    pub reference_einsum_p50_ms: Option<f64>,
    pub speedup_vs_reference: Option<f64>,
    pub reference_top10_agreement: Option<f64>,
    pub reference_max_abs_score_diff: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub cpuinfo_mhz: Option<f64>,
    pub measured_ghz: f64,
    pub how: String,
}

#[derive(Serialize, Debug)]
pub struct SearchBench {
    pub schema: u32,
    pub machine: Machine,
    pub tokens: usize,
    pub dim: usize,
    pub query_tokens: usize,
    pub queries: usize,
    pub sizes: Vec<SizeResult>,
}

fn cpuinfo(key: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

/// Core clock under load: a chain of dependent adds retires one per cycle, so adds / second is
/// the frequency. Run on every core at once (all-core turbo is what the scorer gets).
fn measure_ghz() -> f64 {
    #[cfg(target_arch = "x86_64")]
    fn spin(iters: u64) -> f64 {
        let t = Instant::now();
        let mut x = 0u64;
        let n = iters;
        // SAFETY: pure register arithmetic.
        unsafe {
            std::arch::asm!(
                "2:",
                "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                "dec {n}", "jnz 2b",
                x = inout(reg) x, n = inout(reg) n => _,
            );
        }
        std::hint::black_box(x);
        iters as f64 * 10.0 / t.elapsed().as_secs_f64() / 1e9
    }
    #[cfg(not(target_arch = "x86_64"))]
    fn spin(_: u64) -> f64 {
        0.0
    }
    let per_core: Vec<f64> = (0..rayon::current_num_threads())
        .into_par_iter()
        .map(|_| (0..3).map(|_| spin(50_000_000)).fold(0.0, f64::max))
        .collect();
    per_core.iter().sum::<f64>() / per_core.len().max(1) as f64
}

fn bench_provenance(dim: usize) -> Provenance {
    Provenance {
        model: "synthetic-colqwen-shaped".into(),
        adapter: None,
        checkpoint_hash: "synthetic".into(),
        quant: "none".into(),
        dtype: "f16".into(),
        max_visual_tokens: 768,
        query_prompt: String::new(),
        dim,
        random_weights: true,
    }
}

/// Builds (or reuses) the index of `n` pages and the raw f16 page file for the reference.
fn build(
    a: &SearchBenchArgs,
    corpus: &Corpus,
    n: usize,
    dir: &Path,
) -> anyhow::Result<Option<f64>> {
    let raw = dir.join("pages.f16");
    if let Ok(ix) = Index::open_with(dir, crate::index::OpenOptions { verify_data: false }) {
        let want = (n * a.tokens * a.dim * 2) as u64;
        if ix.stats().pages == n as u64
            && std::fs::metadata(&raw).map(|m| m.len()).ok() == Some(want)
        {
            return Ok(None);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let t0 = Instant::now();
    let mut ix = Index::open_or_create(dir, &bench_provenance(a.dim))?;
    let hash = *blake3::hash(format!("bench-{n}").as_bytes()).as_bytes();
    ix.begin_file(
        &hash,
        Path::new("/synthetic/corpus.pdf"),
        Some("synthetic"),
        n as u32,
    )?;
    let mut raw_out = std::io::BufWriter::new(std::fs::File::create(&raw)?);
    let chunk = 500;
    for start in (0..n).step_by(chunk) {
        let pages: Vec<Vec<f32>> = (start..(start + chunk).min(n))
            .into_par_iter()
            .map(|p| corpus.page(p as u64, a.tokens))
            .collect();
        for (i, v) in pages.iter().enumerate() {
            let text = format!("synthetic page {}", start + i);
            ix.add_page(PageRecord {
                file_hash: hash,
                page: (start + i + 1) as u32,
                text: &text,
                vectors: v,
                n_tokens: a.tokens,
                image_rows: 0..0,
                merged_grid: (0, 0),
            })?;
            let bits: Vec<u16> = v
                .iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect();
            raw_out.write_all(bytemuck::cast_slice(&bits))?;
        }
        ix.commit()?;
        eprint!("\r  built {} / {n} pages", (start + chunk).min(n));
    }
    eprintln!();
    ix.finish_file(&hash)?;
    ix.commit()?;
    raw_out.flush()?;
    Ok(Some(t0.elapsed().as_secs_f64()))
}

fn time_queries(
    queries: &[Query],
    mut f: impl FnMut(&Query) -> anyhow::Result<Vec<u64>>,
) -> anyhow::Result<(Vec<f64>, Vec<Vec<u64>>)> {
    f(&queries[0])?; // warm caches and the thread pool
    let mut ms = Vec::new();
    let mut tops = Vec::new();
    for q in queries {
        let t = Instant::now();
        let top = f(q)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        tops.push(top);
    }
    Ok((ms, tops))
}

pub fn run(a: SearchBenchArgs) -> anyhow::Result<()> {
    let cores = rayon::current_num_threads();
    let ghz = measure_ghz();
    let machine = Machine {
        cpu: cpuinfo("model name").unwrap_or_else(|| "unknown".into()),
        cores,
        cpuinfo_mhz: cpuinfo("cpu MHz").and_then(|s| s.parse().ok()),
        measured_ghz: ghz,
        how: "dependent 64-bit add chain (1 add/cycle) timed on every core at once; peak = cores × GHz × 2 FMA ports × f32 lanes × 2 flop".into(),
    };
    eprintln!(
        "{} × {} cores, measured {:.2} GHz (cpuinfo {:?} MHz)",
        machine.cpu, cores, ghz, machine.cpuinfo_mhz
    );
    let corpus = Corpus::new(42, a.dim, 256);
    let mut sizes = Vec::new();
    for &n in &a.pages {
        let dir = a.work_dir.join(format!("pages-{n}"));
        eprintln!("{n} pages in {}", dir.display());
        let build_secs =
            build(&a, &corpus, n, &dir).with_context(|| format!("building {}", dir.display()))?;
        let t = Instant::now();
        let ix = Index::open(&dir)?;
        let open_verify_secs = t.elapsed().as_secs_f64();
        let s = ix.searcher()?;
        let stats = ix.stats();
        let mut rng = Rng::new(7);
        let queries: Vec<Query> = (0..a.queries)
            .map(|qi| Query {
                vectors: corpus.query(rng.below(n as u64), a.query_tokens, qi as u64),
                n_tokens: a.query_tokens,
                text: String::new(),
                mode: SearchMode::Visual,
                top_k: 10,
                visual_weight: 1.0,
                scorer: Scorer::Exact,
            })
            .collect();
        let flops = 2.0 * a.query_tokens as f64 * stats.vectors as f64 * a.dim as f64;
        let mut exact = Vec::new();
        let mut exact_tops = Vec::new();
        for isa in [detected_isa(), Isa::Avx2F16c]
            .into_iter()
            .filter(|i| i.available())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let scorer = CpuExact(isa);
            let (ms, tops) = time_queries(&queries, |q| {
                Ok(s.visual_with(q, 10, &scorer)?
                    .into_iter()
                    .map(|x| x.0)
                    .collect())
            })?;
            if exact_tops.is_empty() {
                exact_tops = tops;
            }
            let lat = latency(ms);
            let gflops = flops / (lat.p50_ms / 1e3) / 1e9;
            let peak = cores as f64 * ghz * 2.0 * isa.f32_lanes() as f64 * 2.0;
            eprintln!(
                "  exact {:>14}: p50 {:8.2} ms  p99 {:8.2} ms  {:6.1} GFLOP/s = {:4.1} % of {:.0}",
                isa.name(),
                lat.p50_ms,
                lat.p99_ms,
                gflops,
                100.0 * gflops / peak,
                peak
            );
            exact.push(ExactRun {
                isa,
                latency: lat,
                gflops,
                peak_gflops: peak,
                fraction_of_peak: gflops / peak,
            });
        }
        let bq: Vec<Query> = queries
            .iter()
            .map(|q| Query {
                scorer: Scorer::Binary {
                    candidates: a.candidates,
                },
                ..q.clone()
            })
            .collect();
        let (bms, btops) = time_queries(&bq, |q| {
            Ok(s.visual(q, 10)?.into_iter().map(|x| x.0).collect())
        })?;
        let found: usize = exact_tops
            .iter()
            .zip(&btops)
            .map(|(e, b)| e.iter().filter(|x| b.contains(x)).count())
            .sum();
        let recall = found as f64 / (10 * queries.len()) as f64;
        let binary = latency(bms);
        let best_exact = exact
            .iter()
            .map(|e| e.latency.p50_ms)
            .fold(f64::INFINITY, f64::min);
        eprintln!("  binary ({} cand.): p50 {:8.2} ms  p99 {:8.2} ms  recall@10 {:.3}  {:.1}× faster than exact", a.candidates, binary.p50_ms, binary.p99_ms, recall, best_exact / binary.p50_ms);
        let mut r = SizeResult {
            pages: n,
            bytes_per_page: stats.bytes_per_page,
            build_secs,
            open_verify_secs,
            flops_per_query: flops,
            exact,
            binary_speedup_vs_exact: best_exact / binary.p50_ms,
            binary,
            binary_candidates: a.candidates,
            binary_recall_at_10: recall,
            reference: None,
            reference_p50_ms: None,
            reference_einsum_p50_ms: None,
            speedup_vs_reference: None,
            reference_top10_agreement: None,
            reference_max_abs_score_diff: None,
        };
        if !a.python.is_empty() {
            match reference(&a, &dir, n, &queries, &s) {
                Ok((v, diff)) => {
                    let p50 = |k: &str| {
                        v.get(k)
                            .and_then(|x| x.as_array())
                            .map(|a| latency(a.iter().filter_map(|x| x.as_f64()).collect()).p50_ms)
                    };
                    r.reference_p50_ms = p50("score_multi_vector_ms");
                    r.reference_einsum_p50_ms = p50("einsum_ms");
                    let fastest_ref = r
                        .reference_p50_ms
                        .into_iter()
                        .chain(r.reference_einsum_p50_ms)
                        .fold(f64::INFINITY, f64::min);
                    r.speedup_vs_reference = Some(fastest_ref / best_exact);
                    let tops: Vec<Vec<u64>> =
                        serde_json::from_value(v["top10"].clone()).unwrap_or_default();
                    // Reference indices are page positions; page ids equal positions in this single-file corpus.
                    let agree: usize = exact_tops
                        .iter()
                        .zip(&tops)
                        .map(|(e, t)| e.iter().filter(|x| t.contains(x)).count())
                        .sum();
                    r.reference_top10_agreement =
                        Some(agree as f64 / (10 * tops.len().max(1)) as f64);
                    r.reference_max_abs_score_diff = Some(diff);
                    eprintln!(
                        "  reference (colpali score_multi_vector, torch f32): p50 {:.2} ms, einsum alone p50 {:.2} ms → exact is {:.2}× the faster of them; top-10 agreement {:.3}, max |score diff| {:.2e}",
                        r.reference_p50_ms.unwrap_or(f64::NAN),
                        r.reference_einsum_p50_ms.unwrap_or(f64::NAN),
                        fastest_ref / best_exact,
                        r.reference_top10_agreement.unwrap_or(0.0),
                        diff
                    );
                    r.reference = Some(
                        serde_json::json!({"torch": v["torch"], "colpali_engine": v["colpali_engine"], "threads": v["threads"], "pages_in_memory_f32": v["pages_in_memory_f32"]}),
                    );
                }
                Err(e) => eprintln!("  reference scorer skipped: {e:#}"),
            }
        }
        sizes.push(r);
    }
    let out = SearchBench {
        schema: crate::engine::event::SCHEMA_VERSION,
        machine,
        tokens: a.tokens,
        dim: a.dim,
        query_tokens: a.query_tokens,
        queries: a.queries,
        sizes,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// Runs bench/ref_maxsim.py on the same vectors; returns its JSON and the largest difference
/// between its first-query scores and ours.
fn reference(
    a: &SearchBenchArgs,
    dir: &Path,
    n: usize,
    queries: &[Query],
    s: &crate::index::Searcher,
) -> anyhow::Result<(serde_json::Value, f64)> {
    let qpath = dir.join("queries.f32");
    let mut qf = std::io::BufWriter::new(std::fs::File::create(&qpath)?);
    for q in queries {
        qf.write_all(bytemuck::cast_slice(&q.vectors))?;
    }
    qf.flush()?;
    let out = dir.join("reference.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/ref_maxsim.py");
    let status = std::process::Command::new(&a.python)
        .arg(&script)
        .arg("--pages")
        .arg(dir.join("pages.f16"))
        .arg("--queries")
        .arg(&qpath)
        .args([
            "--n",
            &n.to_string(),
            "--tokens",
            &a.tokens.to_string(),
            "--dim",
            &a.dim.to_string(),
        ])
        .args([
            "--nq",
            &a.query_tokens.to_string(),
            "--num-queries",
            &queries.len().to_string(),
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .with_context(|| format!("running {} {}", a.python, script.display()))?;
    anyhow::ensure!(status.success(), "reference script failed ({status})");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let theirs: Vec<f64> = serde_json::from_value(v["scores_query0"].clone()).unwrap_or_default();
    let mut all = queries[0].clone();
    all.top_k = n;
    let ours = s.visual(&all, n)?;
    let diff = ours
        .iter()
        .filter_map(|&(id, sc)| theirs.get(id as usize).map(|t| (t - sc as f64).abs()))
        .fold(0.0, f64::max);
    Ok((v, diff))
}
