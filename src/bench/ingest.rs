//! `pagesight bench ingest <folder> --model random:3b --transfer sync,async,async-u8 --quant nf4,none`:
//! every combination on the same first N pages, one process, a warm-up run first. Each run goes
//! through the engine's own pump into a discard sink (`engine::ab::run_side`), so the numbers are
//! the app's. Prints a table and writes JSON (`schema`, the card, per run the metrics series).

use anyhow::{bail, Context, Result};
use clap::Args;
use pagesight_engine::command::AbSide;
use pagesight_engine::control::RunControl;
use pagesight_engine::event::{AbSideResult, Event};
use pagesight_engine::settings::{Compute, DType, DeviceSet, IngestSettings, Quant, TransferMode};
use pagesight_engine::stage::Stage;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct IngestBenchArgs {
    /// Folder of PDFs (the first --pages pages in discovery order are used).
    pub folder: PathBuf,
    #[arg(long, default_value = "random:3b")]
    pub model: String,
    /// Transfer modes to compare (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "sync,async,async-u8")]
    pub transfer: Vec<TransferMode>,
    /// Quantisations to compare (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "nf4,none")]
    pub quant: Vec<Quant>,
    /// The NF4 layers' arithmetic to compare (comma-separated: dtype, fp8); fp8 runs only with
    /// nf4.
    #[arg(long, value_delimiter = ',', default_value = "dtype")]
    pub compute: Vec<Compute>,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 200)]
    pub pages: usize,
    /// Pages of the warm-up run before each quantisation's timed runs.
    #[arg(long, default_value_t = 16)]
    pub warmup_pages: usize,
    /// One device, a list (one model replica each: cuda:0,1; cpu,cpu) or cuda:all.
    #[arg(long, default_value = "cuda")]
    pub device: DeviceSet,
    #[arg(long, default_value = "bf16")]
    pub dtype: DType,
    /// Render workers (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Render resolution before the model's resize: the app's (the seed pipeline renders at
    /// 200; either is well above the 768-token budget on an A4 page, so the model's input is
    /// the same size).
    #[arg(long, default_value_t = pagesight_engine::settings::LoaderSettings::default().dpi)]
    pub dpi: f32,
    #[command(flatten)]
    pub worker_memory: crate::cli::args::WorkerMemoryArgs,
    #[command(flatten)]
    pub gpu_kernels: crate::cli::args::GpuKernelArgs,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn settings(
    a: &IngestBenchArgs,
    (quant, compute): (Quant, Compute),
    transfer: TransferMode,
) -> IngestSettings {
    let mut s = IngestSettings::with_defaults();
    s.model.model = a.model.clone();
    s.set_devices(&a.device);
    s.model.dtype = a.dtype;
    s.model.quant = quant;
    s.model.compute = compute;
    s.model.gpu_kernels = a.gpu_kernels.setting();
    s.live.batch_size = a.batch_size.max(1);
    s.live.transfer = transfer;
    s.loader.dpi = a.dpi;
    if let Some(w) = a.workers {
        s.loader.workers = w.max(1);
    }
    a.worker_memory.apply(&mut s.loader);
    s
}

/// Bytes over copy time across the whole series.
fn h2d_bytes_per_sec(r: &AbSideResult) -> f64 {
    let (bytes, secs) = r.series.iter().fold((0.0, 0.0), |(b, s), m| {
        (b + m.h2d_bytes_per_sec * m.h2d_secs, s + m.h2d_secs)
    });
    if secs > 0.0 {
        bytes / secs
    } else {
        0.0
    }
}

fn vram_peak_gib(r: &AbSideResult) -> Option<f64> {
    r.series
        .iter()
        .filter_map(|m| m.gpu.as_ref())
        .map(|g| g.memory_used_bytes as f64 / (1u64 << 30) as f64)
        .reduce(f64::max)
}

/// The card's pinned host-to-device peak when the runs used a GPU (a `cuda` build), else None.
fn pinned_h2d_peak(runs: &[AbSideResult]) -> Option<f64> {
    #[cfg(feature = "cuda")]
    if runs.iter().any(|r| r.gpu_busy.is_some()) {
        let measured = candle_core::Device::new_cuda(0)
            .map_err(anyhow::Error::from)
            .and_then(|d| {
                pagesight_engine::gpu::transfer::measure_pinned_h2d_peak(&d, 64 << 20, 8)
            });
        match measured {
            Ok(b) => return Some(b),
            Err(e) => eprintln!("could not measure the pinned H2D peak: {e:#}"),
        }
    }
    let _ = runs;
    None
}

/// The runs as JSON, each multi-device run with its replicas' total (`replica_total`: pages/s
/// summed, mean utilisation and summed memory of its cards), which readers may ignore.
fn runs_json(runs: &[AbSideResult]) -> Result<Vec<serde_json::Value>> {
    runs.iter()
        .map(|r| -> Result<serde_json::Value> {
            let mut v = serde_json::to_value(r)?;
            if let (false, Some(obj)) = (r.replicas.is_empty(), v.as_object_mut()) {
                let total = pagesight_engine::replica_figures::ReplicaTotal::of(&r.replicas);
                obj.insert("replica_total".into(), serde_json::to_value(total)?);
            }
            Ok(v)
        })
        .collect()
}

/// The three largest stages as "name share%".
fn top_stages(r: &AbSideResult) -> String {
    let total = r.stages.total().max(1e-12);
    let mut v: Vec<(Stage, f64)> = Stage::ALL.iter().map(|&s| (s, r.stages.get(s))).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter()
        .take(3)
        .map(|(s, t)| format!("{} {:.0}%", s.name(), 100.0 * t / total))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(a: IngestBenchArgs) -> Result<()> {
    if a.transfer.is_empty() || a.quant.is_empty() || a.compute.is_empty() {
        bail!("give at least one --transfer mode, one --quant and one --compute");
    }
    let device = pagesight_engine::device_info::describe(a.device.primary());
    println!("device: {}", device.name);
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    // Drain events as they come (notices and errors are shown; metrics are kept in the results).
    let drain = std::thread::spawn(move || {
        for ev in rx {
            match ev {
                Event::Notice { message } => eprintln!("note: {message}"),
                Event::Error {
                    context, message, ..
                } => eprintln!("error: {context}: {message}"),
                Event::PreparingGpuKernels { done: true, secs } => {
                    eprintln!("GPU kernels ready in {secs:.1} s")
                }
                _ => {}
            }
        }
    });
    let control = RunControl::new();
    let mut runs: Vec<AbSideResult> = Vec::new();
    // Each quantisation with each arithmetic that applies to it (fp8: NF4 only).
    let precisions: Vec<(Quant, Compute)> = a
        .quant
        .iter()
        .flat_map(|&q| a.compute.iter().map(move |&c| (q, c)))
        .filter(|&(q, c)| c == Compute::Dtype || q == Quant::Nf4)
        .collect();
    for &precision in &precisions {
        let name = match precision {
            (quant, Compute::Dtype) => quant.name().to_string(),
            (quant, compute) => format!("{}+{}", quant.name(), compute.name()),
        };
        let warm = AbSide {
            label: format!("warm-up {name}"),
            settings: settings(&a, precision, a.transfer[0]),
        };
        pagesight_engine::ab::run_side(&a.folder, a.warmup_pages, &warm, &control, &tx)
            .with_context(|| format!("warm-up run ({name})"))?;
        for &transfer in &a.transfer {
            let side = AbSide {
                label: format!("{name} {}", transfer.name()),
                settings: settings(&a, precision, transfer),
            };
            let r = pagesight_engine::ab::run_side(&a.folder, a.pages, &side, &control, &tx)
                .with_context(|| format!("run '{}'", side.label))?;
            eprintln!(
                "{}: {:.2} pages/s over {} pages",
                r.label, r.pages_per_sec, r.pages
            );
            for line in pagesight_engine::replica_figures::lines(&r.replicas, r.wall_secs) {
                eprintln!("  {line}");
            }
            runs.push(r);
        }
    }
    drop(tx);
    let _ = drain.join();

    // "stages/wall": how much of the wall time the stage breakdown accounts for.
    println!("| run | pages/s | GPU-busy | GPU idle between batches | H2D GB/s | copy critical ms/batch | VRAM peak GiB | stages/wall | largest stages |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let batches = (r.pages as f64 / a.batch_size.max(1) as f64).max(1.0);
        println!(
            "| {} | {:.2} | {} | {} | {:.1} | {:.3} | {} | {:.1}% | {} |",
            r.label,
            r.pages_per_sec,
            r.gpu_busy
                .map(|b| format!("{:.1}%", b * 100.0))
                .unwrap_or_else(|| "-".into()),
            r.gpu_idle_between_batches
                .map(|b| format!("{:.2}%", b * 100.0))
                .unwrap_or_else(|| "-".into()),
            h2d_bytes_per_sec(r) / 1e9,
            r.copy_critical_secs * 1e3 / batches,
            vram_peak_gib(r)
                .map(|g| format!("{g:.2}"))
                .unwrap_or_else(|| "-".into()),
            100.0 * r.stages.total() / r.wall_secs.max(1e-9),
            top_stages(r),
        );
    }
    let h2d_peak = pinned_h2d_peak(&runs);
    if let Some(peak) = h2d_peak {
        let pct = runs
            .iter()
            .filter(|r| h2d_bytes_per_sec(r) > 0.0)
            .map(|r| format!("{} {:.0} %", r.label, 100.0 * h2d_bytes_per_sec(r) / peak))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "pinned H2D peak of this card: {:.1} GB/s (best of 8 rounds of 10 × 64 MiB); the runs' H2D: {pct}",
            peak / 1e9
        );
    }
    if let Some(path) = &a.json {
        let doc = json!({
            "pinned_h2d_peak_bytes_per_sec": h2d_peak,
            "schema": pagesight_engine::SCHEMA_VERSION,
            "kind": "bench_ingest",
            "device": device,
            "folder": a.folder,
            "pages": a.pages,
            "batch_size": a.batch_size,
            "model": a.model,
            "runs": runs_json(&runs)?,
        });
        pagesight_common::fs::write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
