//! `bench engine-search`: searches as the app runs them, through the engine's `Command::Search`,
//! on synthetic pages stored in a real index whose provenance names a real model (default
//! `random:3b`), so the engine loads that model and embeds each query with it as it would for a
//! user. Reports the first search (index open, model load, page tiles) apart from the warm ones,
//! and the warm ones' p50/p99 end to end and by step, per mode and scorer.

use super::search_synthetic::{build_with, CORPUS_VERSION};
use super::search_timing::{latency, Latency};
use anyhow::{bail, Context, Result};
use clap::Args;
use pagesight_engine::event::SearchTimings;
use pagesight_engine::resident_tiles::UPLOADING_NOTE;
use pagesight_engine::settings::best_precision;
use pagesight_engine::{
    Command, DeviceChoice, DeviceSet, EngineHandle, Event, SearchMode, SearchRequest, VisualScorer,
};
use pagesight_index::synthetic::Corpus;
use pagesight_index::Provenance;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct EngineSearchArgs {
    /// Index sizes in pages.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub pages: Vec<usize>,
    /// Stored vectors per page.
    #[arg(long, default_value_t = 750)]
    pub tokens: usize,
    /// The model the index says made it: the engine embeds queries with it.
    #[arg(long, default_value = "random:3b")]
    pub model: String,
    /// Its embedding width.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Where the query model and MaxSim run: auto, cpu, cuda:N; or the cards the page tiles
    /// are sharded over, as `pagesight search --device` takes them (cuda:all, cuda:0,1; cpu,cpu
    /// for CPU stand-ins).
    #[arg(long, default_value = "auto")]
    pub device: DeviceSet,
    /// Warm searches per mode.
    #[arg(long, default_value_t = 20)]
    pub queries: usize,
    /// Also search once more with the query model and scorer on the CPU (when --device is a GPU).
    #[arg(long)]
    pub with_cpu: bool,
    #[arg(long, default_value = "target/bench-search")]
    pub work_dir: PathBuf,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
pub struct EngineSearchRun {
    pub pages: usize,
    pub mode: String,
    pub device: String,
    /// What ranked (the engine's own words).
    pub scorer: String,
    /// The first search of this mode: for the first mode, the index's open (every segment
    /// checked), the model's load and the page tiles' upload.
    pub first_ms: f64,
    pub first: SearchTimings,
    /// What ranked the first search (the CPU, while a large index's tiles upload).
    pub first_scorer: String,
    /// Launch of the first search → the first answer the GPU scored, when the CPU answered
    /// first while the tiles uploaded.
    pub gpu_ready_ms: Option<f64>,
    pub end_to_end: Latency,
    pub embed_p50_ms: f64,
    pub score_p50_ms: f64,
    pub open_p50_ms: f64,
    /// Vectors per embedded query (what scoring cost scales with).
    pub query_tokens: usize,
}

/// The provenance that makes the engine load `model` for queries, with the precision a user's
/// ingest on this device would have used.
fn provenance(a: &EngineSearchArgs) -> Provenance {
    // A query never computes in FP8 (a few rows skip it), so the cards' FP8 does not matter.
    let (dtype, quant, _) = best_precision(a.device.will_use_cuda(), false);
    Provenance {
        model: a.model.clone(),
        adapter: None,
        checkpoint_hash: format!("synthetic-pages-for:{}", a.model),
        quant: quant.name().into(),
        quant_scope: "all".into(),
        dtype: dtype.name().into(),
        lora: None,
        compute: None,
        max_visual_tokens: 768,
        query_prompt: String::new(),
        dim: a.dim,
        random_weights: true,
    }
}

/// One search through the engine: its `SearchResults` event, or its error.
pub fn answer(engine: &EngineHandle, req: SearchRequest) -> Result<Event> {
    let id = req.id;
    engine.send(Command::Search(req));
    loop {
        match engine.events.recv_timeout(Duration::from_secs(600)) {
            Ok(e @ Event::SearchResults { id: i, .. }) if i == id => return Ok(e),
            Ok(Event::Error {
                context,
                message,
                request_id: Some(i),
            }) if i == id => bail!("{context}: {message}"),
            Ok(_) => {}
            Err(_) => bail!("the engine gave no answer to search {id} within 10 minutes"),
        }
    }
}

/// One search's answer, as the benchmark keeps it.
struct Answered {
    elapsed_ms: f64,
    timings: SearchTimings,
    scorer: String,
    query_tokens: usize,
    /// The CPU answered because the index's GPU copy was still uploading.
    while_uploading: bool,
}

/// One search through the engine.
fn search_once(engine: &EngineHandle, req: SearchRequest) -> Result<Answered> {
    match answer(engine, req)? {
        Event::SearchResults {
            elapsed_ms,
            timings,
            scorer,
            query_tokens,
            note,
            ..
        } => Ok(Answered {
            elapsed_ms,
            timings,
            scorer,
            query_tokens,
            while_uploading: note.is_some_and(|n| n.contains(UPLOADING_NOTE)),
        }),
        _ => unreachable!("`answer` returns search results"),
    }
}

fn median_of(runs: &[Answered], f: impl Fn(&SearchTimings) -> f64) -> f64 {
    pagesight_common::stats::median(runs.iter().map(|r| f(&r.timings)).collect())
}

/// The longest the benchmark waits for the index's GPU copy before timing warm searches.
const GPU_UPLOAD_WAIT: Duration = Duration::from_secs(120);

/// How `run_modes` searches.
pub struct SearchPlan {
    /// One device, or the devices the page tiles are sharded over.
    pub device: DeviceSet,
    pub queries: usize,
    pub with_cpu: bool,
}

/// Every mode on one index, the first search of each apart.
pub fn run_modes(
    how: &SearchPlan,
    engine: &EngineHandle,
    index: &Path,
    pages: usize,
    next_id: &mut u64,
) -> Result<Vec<EngineSearchRun>> {
    let mut plan = vec![
        (
            "visual exact",
            SearchMode::Visual,
            VisualScorer::Exact,
            how.device.clone(),
        ),
        (
            "visual binary",
            SearchMode::Visual,
            VisualScorer::Binary { candidates: 0 },
            how.device.clone(),
        ),
        (
            "text",
            SearchMode::Text,
            VisualScorer::Exact,
            how.device.clone(),
        ),
        (
            "hybrid",
            SearchMode::Hybrid,
            VisualScorer::Exact,
            how.device.clone(),
        ),
    ];
    if how.with_cpu && how.device.will_use_cuda() {
        plan.push((
            "visual exact",
            SearchMode::Visual,
            VisualScorer::Exact,
            DeviceChoice::Cpu.into(),
        ));
    }
    let mut out = Vec::new();
    for (label, mode, scorer, device) in plan {
        let mut ask = |q: usize| {
            *next_id += 1;
            let mut req = SearchRequest {
                id: *next_id,
                index: index.to_path_buf(),
                query: format!("synthetic query {q}: results of experiment {}", q % 7),
                top_k: 10,
                mode,
                hybrid_visual_weight: 0.5,
                with_heatmaps: false,
                device: device.primary(),
                devices: None,
                visual_scorer: scorer,
                backend: Default::default(),
            };
            req.set_devices(&device);
            search_once(engine, req)
        };
        let first_answer = ask(0)?;
        let (first_ms, first) = (first_answer.elapsed_ms, first_answer.timings);
        // A large index's first answers come from the CPU while its tiles upload: the warm
        // searches start once the GPU answers, and how long that took is reported.
        let upload_started = Instant::now();
        let mut gpu_ready_ms = None;
        if first_answer.while_uploading {
            while upload_started.elapsed() < GPU_UPLOAD_WAIT {
                std::thread::sleep(Duration::from_millis(100));
                if !ask(0)?.while_uploading {
                    gpu_ready_ms = Some(first_ms + upload_started.elapsed().as_secs_f64() * 1e3);
                    break;
                }
            }
        }
        let warm: Vec<_> = (1..=how.queries).map(&mut ask).collect::<Result<_>>()?;
        let run = EngineSearchRun {
            pages,
            mode: label.into(),
            device: device.to_string(),
            scorer: warm.last().map(|w| w.scorer.clone()).unwrap_or_default(),
            first_ms,
            first,
            end_to_end: latency(warm.iter().map(|w| w.elapsed_ms).collect()),
            embed_p50_ms: median_of(&warm, |t| t.embed_ms),
            score_p50_ms: median_of(&warm, |t| t.score_ms),
            open_p50_ms: median_of(&warm, |t| t.open_ms),
            query_tokens: warm.last().map_or(0, |w| w.query_tokens),
            first_scorer: first_answer.scorer.clone(),
            gpu_ready_ms,
        };
        eprintln!(
            "{pages} pages, {label} ({}, {} query tokens): first {first_ms:.0} ms (open {:.0}, model {:.0}, tiles {:.0}; by {}{}); warm p50 {:.2} ms p99 {:.2} ms (query {:.2}, scoring {:.2}); {}",
            run.device,
            run.query_tokens,
            run.first.open_ms,
            run.first.model_load_ms,
            run.first.tiles_ms,
            run.first_scorer,
            run.gpu_ready_ms
                .map(|ms| format!("; the GPU answered from {ms:.0} ms"))
                .unwrap_or_default(),
            run.end_to_end.p50_ms,
            run.end_to_end.p99_ms,
            run.embed_p50_ms,
            run.score_p50_ms,
            run.scorer
        );
        out.push(run);
    }
    Ok(out)
}

pub fn run(a: EngineSearchArgs) -> Result<()> {
    let prov = provenance(&a);
    let corpus = Corpus::new(42, a.dim, 1024);
    let tag: String = a
        .model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let engine = EngineHandle::spawn();
    let mut next_id = 0;
    let mut runs = Vec::new();
    for &n in &a.pages {
        let dir = a
            .work_dir
            .join(format!("engine-{n}-{tag}-{}-v{CORPUS_VERSION}", prov.dtype));
        eprintln!(
            "{n} pages in {} (made by {})",
            dir.display(),
            prov.describe()
        );
        build_with(a.tokens, &corpus, n, &dir, false, &prov)
            .with_context(|| format!("building {}", dir.display()))?;
        let plan = SearchPlan {
            device: a.device.clone(),
            queries: a.queries,
            with_cpu: a.with_cpu,
        };
        runs.extend(run_modes(&plan, &engine, &dir, n, &mut next_id)?);
    }
    print_table(&runs);
    if let Some(path) = &a.json {
        let json = serde_json::json!({
            "schema": pagesight_engine::SCHEMA_VERSION,
            "bench": "engine-search",
            "model": a.model,
            "provenance": prov,
            "tokens_per_page": a.tokens,
            "runs": runs,
        });
        pagesight_common::fs::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The runs as a table (printed last, after the progress lines).
pub fn print_table(runs: &[EngineSearchRun]) {
    println!("| pages | mode | device | first ms | warm p50 ms | p99 ms | query p50 | scoring p50 | scorer |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            r.pages,
            r.mode,
            r.device,
            r.first_ms,
            r.end_to_end.p50_ms,
            r.end_to_end.p99_ms,
            r.embed_p50_ms,
            r.score_p50_ms,
            r.scorer
        );
    }
}
