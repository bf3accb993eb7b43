//! `bench journey <folder>`: the app's path as a user walks it, driven through the same `Command`s
//! the GUI sends, into a real index: launch → model load, quantisation (or its cache), kernel
//! compilation (or its cache) → ingest of the folder with `pagesight ingest`'s defaults → warm
//! searches in every mode → thumbnails of the hits. Reports what the user waits for; the JSON's
//! `runs` (the ingest) loads in the Performance view.

use super::engine_search::{answer, print_table, run_modes, EngineSearchRun, SearchPlan};
use super::search_timing::{latency, Latency};
use crate::cli::args::IngestTargetArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use pagesight_engine::event::{AbSideResult, IngestSummary, Metrics};
use pagesight_engine::stage::Stage;
use pagesight_engine::{Command, EngineHandle, Event, IngestSettings, SearchMode, SearchRequest};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct JourneyArgs {
    /// The folder and `pagesight ingest`'s flags (and defaults). The index defaults to the
    /// corpus's own, as ingest's does: pass --index for a fresh one.
    #[command(flatten)]
    pub target: IngestTargetArgs,
    /// Warm searches per mode.
    #[arg(long, default_value_t = 20)]
    pub queries: usize,
    /// Also search with the query model and scorer on the CPU (when the model runs on a GPU).
    #[arg(long)]
    pub with_cpu: bool,
    /// Write the report as JSON here (its `runs` load in the Performance view).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
pub struct JourneyReport {
    pub schema: u32,
    pub producer: String,
    pub folder: PathBuf,
    pub settings: IngestSettings,
    /// Seconds from launch to each start-up stage's end, and the stages' own times.
    pub startup_secs: StartupTimes,
    /// Launch → the first commit with pages (the engine's `Committed` event).
    pub first_page_committed_secs: Option<f64>,
    /// Launch → a text search sent at that first commit answered with at least one page.
    pub first_page_searchable_secs: Option<f64>,
    pub ingest: IngestSummary,
    pub searches: Vec<EngineSearchRun>,
    /// Thumbnails of the last visual search's hits, asked one after another.
    pub thumbnails: Option<Latency>,
    pub thumbnail_failures: Vec<String>,
    /// The process's peak resident memory (VmHWM), render workers not included.
    pub peak_rss_bytes: Option<u64>,
    /// The largest device memory in use NVML reported during the ingest (the whole GPU, all
    /// processes).
    pub peak_device_memory_bytes: Option<u64>,
    /// This process's device memory at the end (NVML's per-process figure: CUDA context, weights,
    /// the allocator's pool, resident page tiles), after the searches.
    pub process_device_memory_bytes: Option<u64>,
    /// The ingest as a run the Performance view loads.
    pub runs: Vec<AbSideResult>,
}

#[derive(Serialize, Debug, Default)]
pub struct StartupTimes {
    pub model_load: f64,
    pub quantize: f64,
    pub kernel_compile: f64,
    pub discover: f64,
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the ingest phase saw.
struct IngestSeen {
    summary: IngestSummary,
    first_committed: Option<f64>,
    first_searchable: Option<f64>,
    series: Vec<Metrics>,
}

/// Runs the ingest through the engine; at the first commit with pages, sends a text search and
/// notes when it answers with a page.
fn ingest(
    engine: &EngineHandle,
    folder: &Path,
    index: &Path,
    settings: &IngestSettings,
    launch: Instant,
    next_id: &mut u64,
) -> Result<IngestSeen> {
    engine.send(Command::StartIngest {
        folder: folder.to_path_buf(),
        index: index.to_path_buf(),
        settings: settings.clone(),
    });
    let mut first_committed = None;
    let mut first_searchable = None;
    let mut probe: Option<u64> = None;
    let mut series = Vec::new();
    let mut finished: Option<IngestSummary> = None;
    // Until the ingest has finished and the probe search (if sent) has answered.
    while finished.is_none() || probe.is_some() {
        let ev = engine
            .events
            .recv_timeout(Duration::from_secs(3600))
            .context("the engine said nothing for an hour")?;
        match ev {
            Event::Committed { pages_total } if pages_total > 0 && first_committed.is_none() => {
                first_committed = Some(launch.elapsed().as_secs_f64());
                *next_id += 1;
                probe = Some(*next_id);
                engine.send(Command::Search(SearchRequest {
                    id: *next_id,
                    index: index.to_path_buf(),
                    query: "the".into(),
                    top_k: 1,
                    mode: SearchMode::Text,
                    hybrid_visual_weight: 0.5,
                    with_heatmaps: false,
                    device: settings.model.device,
                    devices: None,
                    visual_scorer: Default::default(),
                    backend: Default::default(),
                }));
            }
            Event::SearchResults { id, hits, .. } if Some(id) == probe => {
                if !hits.is_empty() {
                    first_searchable = Some(launch.elapsed().as_secs_f64());
                }
                probe = None;
            }
            Event::Error {
                request_id: Some(id),
                context,
                message,
            } if Some(id) == probe => {
                eprintln!("the search at the first commit failed: {context}: {message}");
                probe = None;
            }
            Event::Metrics(m) => series.push(m),
            Event::Notice { message } => eprintln!("note: {message}"),
            Event::IngestFinished(summary) => finished = Some(summary),
            Event::Error {
                context, message, ..
            } if context.starts_with("ingest") => bail!("{context}: {message}"),
            _ => {}
        }
    }
    Ok(IngestSeen {
        summary: finished.expect("the loop ends once the ingest has finished"),
        first_committed,
        first_searchable,
        series,
    })
}

/// The hits' thumbnails, one request at a time as the results grid asks for them.
fn thumbnails(
    engine: &EngineHandle,
    hits: &[(PathBuf, u32)],
    next_id: &mut u64,
) -> (Option<Latency>, Vec<String>) {
    let mut ms = Vec::new();
    let mut failures = Vec::new();
    for (file, page) in hits {
        *next_id += 1;
        let id = *next_id;
        let t = Instant::now();
        engine.send(Command::Thumbnail {
            id,
            file: file.clone(),
            page: *page,
            max_side: 256,
        });
        loop {
            match engine.events.recv_timeout(Duration::from_secs(120)) {
                Ok(Event::Thumbnail { id: i, .. }) if i == id => {
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                Ok(Event::Error {
                    request_id: Some(i),
                    message,
                    ..
                }) if i == id => {
                    failures.push(message);
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    failures.push(format!(
                        "no thumbnail of {} page {page} within 2 minutes",
                        file.display()
                    ));
                    break;
                }
            }
        }
    }
    ((!ms.is_empty()).then(|| latency(ms)), failures)
}

pub fn run(a: JourneyArgs) -> Result<()> {
    let launch = Instant::now();
    let folder = a.target.folder.clone();
    if !folder.is_dir() {
        bail!("{} is not a folder", folder.display());
    }
    let index = a.target.index_dir();
    let (settings, _) = a.target.settings()?;
    eprintln!(
        "journey: {} into {} with {} compute, {} weights, transfer {}, batch {}",
        folder.display(),
        index.display(),
        settings.model.dtype.name(),
        settings.model.quant.name(),
        settings.live.transfer.name(),
        settings.live.batch_size
    );
    let engine = EngineHandle::spawn();
    let mut next_id = 0;
    let seen = ingest(&engine, &folder, &index, &settings, launch, &mut next_id)?;
    let s = &seen.summary;
    let startup = StartupTimes {
        model_load: s.stages.get(Stage::ModelLoad),
        quantize: s.stages.get(Stage::Quantize),
        kernel_compile: s.stages.get(Stage::KernelCompile),
        discover: s.stages.get(Stage::Discover),
    };
    eprintln!(
        "ingest: {} pages in {:.1} s = {:.2} pages/s; start-up: model load {:.1} s, quantisation {:.1} s, kernels {:.1} s; first page committed at {:.1} s, searchable at {:.1} s after launch",
        s.pages_ingested,
        s.wall_secs,
        s.pages_per_sec,
        startup.model_load,
        startup.quantize,
        startup.kernel_compile,
        seen.first_committed.unwrap_or(f64::NAN),
        seen.first_searchable.unwrap_or(f64::NAN),
    );
    let peak_device_memory_bytes = seen
        .series
        .iter()
        .filter_map(|m| m.gpu.as_ref().map(|g| g.memory_used_bytes))
        .max();
    let plan = SearchPlan {
        device: settings.model.device.into(),
        queries: a.queries,
        with_cpu: a.with_cpu,
    };
    let searches = run_modes(
        &plan,
        &engine,
        &index,
        s.pages_ingested as usize,
        &mut next_id,
    )?;
    // The hits a user would see thumbnails of.
    next_id += 1;
    let hits = engine_search_hits(&engine, &index, &settings, next_id)?;
    let (thumbs, thumbnail_failures) = thumbnails(&engine, &hits, &mut next_id);
    let report = JourneyReport {
        schema: pagesight_engine::SCHEMA_VERSION,
        producer: format!("pagesight {} bench journey", env!("CARGO_PKG_VERSION")),
        folder: folder.clone(),
        settings: settings.clone(),
        startup_secs: startup,
        first_page_committed_secs: seen.first_committed,
        first_page_searchable_secs: seen.first_searchable,
        ingest: seen.summary.clone(),
        searches,
        thumbnails: thumbs,
        thumbnail_failures,
        peak_rss_bytes: peak_rss_bytes(),
        peak_device_memory_bytes,
        // The primary device's card (a multi-device run's first).
        process_device_memory_bytes: pagesight_engine::gpu_monitor::GpuMonitor::open_cuda(
            match settings.model.device {
                pagesight_engine::DeviceChoice::Cuda(n) => n,
                _ => 0,
            },
        )
        .and_then(|m| m.process_memory(std::process::id()))
        .ok()
        .flatten(),
        runs: vec![AbSideResult {
            label: "journey ingest".into(),
            settings,
            pages: s.pages_ingested,
            wall_secs: s.wall_secs,
            pages_per_sec: s.pages_per_sec,
            copy_critical_secs: seen.series.last().map_or(0.0, |m| m.copy_critical_secs),
            gpu_busy: seen.series.last().and_then(|m| m.gpu_busy),
            gpu_idle_between_batches: None,
            stages: s.stages,
            series: seen.series,
            replicas: s.replicas.clone(),
        }],
    };
    print_table(&report.searches);
    if let Some(t) = &report.thumbnails {
        println!(
            "thumbnails ({} hits): p50 {:.1} ms, p99 {:.1} ms{}",
            hits.len(),
            t.p50_ms,
            t.p99_ms,
            if report.thumbnail_failures.is_empty() {
                String::new()
            } else {
                format!("; {} failed", report.thumbnail_failures.len())
            }
        );
    }
    println!(
        "| ingest pages | wall s | pages/s | model load s | quantise s | kernels s | first committed s | first searchable s | peak RSS GiB | GPU peak (all) GiB | this process on GPU GiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let gib = |b: Option<u64>| {
        b.map_or("-".into(), |b| {
            format!("{:.2}", b as f64 / (1u64 << 30) as f64)
        })
    };
    println!(
        "| {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
        report.ingest.pages_ingested,
        report.ingest.wall_secs,
        report.ingest.pages_per_sec,
        report.startup_secs.model_load,
        report.startup_secs.quantize,
        report.startup_secs.kernel_compile,
        report.first_page_committed_secs.unwrap_or(f64::NAN),
        report.first_page_searchable_secs.unwrap_or(f64::NAN),
        gib(report.peak_rss_bytes),
        gib(report.peak_device_memory_bytes),
        gib(report.process_device_memory_bytes),
    );
    if let Some(path) = &a.json {
        pagesight_common::fs::write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The top 10 of one visual search: what the results grid shows thumbnails of.
fn engine_search_hits(
    engine: &EngineHandle,
    index: &Path,
    settings: &IngestSettings,
    id: u64,
) -> Result<Vec<(PathBuf, u32)>> {
    let results = answer(
        engine,
        SearchRequest {
            id,
            index: index.to_path_buf(),
            query: "a figure with results".into(),
            top_k: 10,
            mode: SearchMode::Visual,
            hybrid_visual_weight: 0.5,
            with_heatmaps: false,
            device: settings.model.device,
            devices: None,
            visual_scorer: Default::default(),
            backend: Default::default(),
        },
    )?;
    match results {
        Event::SearchResults { hits, .. } => {
            Ok(hits.into_iter().map(|h| (h.file, h.page)).collect())
        }
        _ => unreachable!("`answer` returns search results"),
    }
}
