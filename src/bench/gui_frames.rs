//! `bench gui-frames`: the desktop app's frame time in a real window while it works. The window
//! opens (eframe, as `pagesight gui` opens it; it needs a display: `xvfb-run` on a machine
//! without one) with the autopilot of `ui::autopilot` driving it through the app's own actions:
//! idle, then an ingest of a copy of a folder (default: the repository's sample PDFs plus
//! generated ones) into a temporary index with the built-in `random:tiny` model on the CPU, the
//! folder watched, new PDFs written into it during the ingest and after it (watch events, watch
//! ingests), a model download from a mock Hugging Face hub on a local port (`HF_ENDPOINT`, into a
//! temporary `HF_HOME`), and searches in every mode. Every frame's time inside the app's `ui()`
//! (its own `FrameStats`) is kept by phase; p50 / p90 / p99 / max and the frame count per phase
//! and over all frames go to stdout as a table and, with `--json`, to a file.

use crate::ui::autopilot::{Autopilot, NewPdf, ScenarioPlan, ScenarioReport};
use crate::ui::AppOptions;
use anyhow::{bail, Context, Result};
use clap::Args;
use pagesight_devtools::hostile::pdf::{document, PageSpec};
use pagesight_devtools::mock_hub::{self, Faults, MockHub, SLOW_CHUNK};
use pagesight_engine::ModelSettings;
use pagesight_model::settings::DeviceChoice;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The repo id the mock hub serves the tiny fixture model under.
const HUB_REPO: &str = "pagesight-bench/colqwen-tiny";

const QUERIES: [&str; 6] = [
    "coral reef bleaching and sea temperature",
    "thermal conductivity of graphene",
    "hanseatic trade routes in the baltic",
    "sparse attention in transformers",
    "table of measurements by year",
    "generated document summary",
];

#[derive(Args, Debug)]
pub struct GuiFramesArgs {
    /// Folder whose PDFs are copied into the watched corpus folder (default: the repository's
    /// assets/samples).
    #[arg(long)]
    pub folder: Option<PathBuf>,
    /// PDFs generated into the copy besides the folder's.
    #[arg(long, default_value_t = 24)]
    pub generate: usize,
    /// Pages of each generated PDF.
    #[arg(long, default_value_t = 4)]
    pub pages: usize,
    /// PDFs written into the watched folder while the ingest runs, and again after it.
    #[arg(long, default_value_t = 3)]
    pub watch_files: usize,
    /// Seconds of the idle phase, the least the search phase keeps searching, and about what
    /// the download takes (the mock hub paces it).
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Frames asked for per second (a display's refresh; 0: one right after another).
    #[arg(long, default_value_t = 60.0)]
    pub fps: f64,
    /// The longest a phase that waits for work may take before the run notes it and goes on.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the temporary folder (corpus copy, index, settings, Hugging Face cache).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Serialize, Debug)]
struct GuiFramesJson {
    schema: u32,
    producer: String,
    cpu: String,
    cores: usize,
    /// "release" or "debug".
    build: &'static str,
    display: String,
    fps: f64,
    drain_budget_ms: f64,
    source_folder: PathBuf,
    files_copied: usize,
    files_generated: usize,
    pages_per_generated_file: usize,
    /// PDFs written into the watched folder during the ingest, and after it.
    watch_files: [usize; 2],
    model: String,
    device: &'static str,
    download_repo: String,
    /// What the hub served for the download, and its pause per 64 KiB.
    download_total_bytes: u64,
    download_pause_ms: f64,
    queries: Vec<String>,
    /// /proc/loadavg before and after (other work on the machine shows here).
    load_before: Option<String>,
    load_after: Option<String>,
    #[serde(flatten)]
    report: ScenarioReport,
}

/// The machine's CPU as /proc/cpuinfo names it.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn load_avg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Fails with what to do when no display is there to open a window on.
fn require_display() -> Result<String> {
    let display = std::env::var("DISPLAY").ok().filter(|d| !d.is_empty());
    let wayland = std::env::var("WAYLAND_DISPLAY")
        .ok()
        .filter(|d| !d.is_empty());
    match display.or(wayland) {
        Some(d) => Ok(d),
        None => bail!(
            "no display: DISPLAY (or WAYLAND_DISPLAY) is not set, and this benchmark opens a real \
             window. On a machine without a screen run it inside a virtual one: \
             xvfb-run -a -s \"-screen 0 1280x800x24\" pagesight bench gui-frames"
        ),
    }
}

/// A generated PDF of `pages` text pages.
fn generated_pdf(n: usize, pages: usize) -> Vec<u8> {
    const TOPICS: [&str; 6] = [
        "Sea surface temperature anomalies and coral reef bleaching events.",
        "Phonon transport and the thermal conductivity of suspended graphene.",
        "Hanseatic merchants, their trade routes and the Baltic grain trade.",
        "Sparse attention patterns that let transformers read long documents.",
        "A table of measurements by year, with the mean and the spread.",
        "Methods, results and a short summary of the generated document.",
    ];
    let specs: Vec<PageSpec> = (0..pages.max(1))
        .map(|p| {
            let mut lines = vec![format!("Generated document {n}, page {}", p + 1)];
            for k in 0..12 {
                lines.push(TOPICS[(n + p + k) % TOPICS.len()].to_string());
            }
            PageSpec::a4(lines)
        })
        .collect();
    document(&specs, None)
}

/// Copies the PDFs at the top of `from` into `to`; returns how many.
fn copy_pdfs(from: &Path, to: &Path) -> Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let e = e?;
        let path = e.path();
        if e.file_type()?.is_file() && pagesight_loader::discover::is_pdf_name(&path) {
            std::fs::copy(&path, to.join(e.file_name()))
                .with_context(|| format!("cannot copy {}", path.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Points the Hugging Face variables the app honours at the mock hub and a fresh cache, and
/// clears those that would send the download elsewhere.
fn hub_environment(endpoint: &str, hf_home: &Path) {
    use pagesight_model::env_vars as v;
    // Set before the engine and the window start; only the mock hub's thread runs, and it
    // reads no environment.
    std::env::set_var(v::HF_ENDPOINT, endpoint);
    std::env::set_var(v::HF_HOME, hf_home);
    for k in mock_hub::STEERING_VARS {
        std::env::remove_var(k);
    }
}

pub fn run(a: GuiFramesArgs) -> Result<()> {
    let display = require_display()?;
    let source = a
        .folder
        .clone()
        .unwrap_or_else(|| pagesight_common::paths::source_root().join("assets/samples"));
    let work = std::env::temp_dir().join(format!("pagesight-gui-frames-{}", std::process::id()));
    let result = run_in(&a, &source, &work, &display);
    if a.keep {
        eprintln!("kept {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn run_in(a: &GuiFramesArgs, source: &Path, work: &Path, display: &str) -> Result<()> {
    let corpus = work.join("library");
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    let copied = copy_pdfs(source, &corpus)?;
    for n in 0..a.generate {
        std::fs::write(
            corpus.join(format!("generated-{n:03}.pdf")),
            generated_pdf(n, a.pages),
        )?;
    }
    if copied + a.generate == 0 {
        bail!(
            "{} holds no PDFs and --generate is 0: nothing to ingest",
            source.display()
        );
    }
    let new_pdf = |tag: &str, k: usize| NewPdf {
        name: format!("watched-{tag}-{k:02}.pdf"),
        bytes: generated_pdf(1000 + k, a.pages),
    };
    let during: Vec<NewPdf> = (0..a.watch_files).map(|k| new_pdf("during", k)).collect();
    let after: Vec<NewPdf> = (0..a.watch_files)
        .map(|k| new_pdf("after", a.watch_files + k))
        .collect();

    // The mock hub serves the tiny fixture model, paced so the download lasts about --secs.
    let fixture = pagesight_common::paths::source_root().join("tests/fixtures/colqwen_tiny/model");
    let files = mock_hub::repo_from_folder(&fixture)
        .with_context(|| format!("cannot read the fixture model {}", fixture.display()))?;
    let total: u64 = files.values().map(|b| b.len() as u64).sum();
    let chunks: usize = files.values().map(|b| b.len().div_ceil(SLOW_CHUNK)).sum();
    let pause = Duration::from_secs(a.secs).div_f64(chunks.max(1) as f64);
    let hub = MockHub::serve_with(
        HashMap::from([(HUB_REPO.to_string(), files)]),
        Faults {
            slow: Some(pause),
            ..Faults::default()
        },
    )
    .context("cannot start the mock hub")?;
    hub_environment(&hub.endpoint(), &work.join("hf"));

    let model = ModelSettings {
        model: "random:tiny".into(),
        device: DeviceChoice::Cpu,
        ..ModelSettings::default()
    };
    let options = AppOptions {
        index: Some(work.join("index")),
        folder: Some(corpus.clone()),
        model: Some(model.clone()),
        export_dir: Some(work.join("exports")),
        ..AppOptions::default()
    };
    let drain_budget = options.drain_budget;
    let plan = ScenarioPlan {
        folder: corpus.clone(),
        phase_secs: Duration::from_secs(a.secs),
        during_ingest: during,
        after_ingest: after,
        download: Some(HUB_REPO.into()),
        queries: QUERIES.iter().map(|q| q.to_string()).collect(),
        fps: a.fps,
        view_every: Duration::from_secs(3),
        phase_timeout: Duration::from_secs(a.timeout),
        close_when_done: true,
    };
    let queries = plan.queries.clone();
    let slot = Arc::new(Mutex::new(None));
    let load_before = load_avg();
    eprintln!(
        "bench gui-frames: {copied} PDFs copied from {}, {} generated; window on {display}",
        source.display(),
        a.generate
    );
    {
        let slot = slot.clone();
        crate::ui::open_window(options, Some(work.join("settings")), move |app| {
            Box::new(Autopilot::new(app, plan).report_into(slot))
        })?;
    }
    drop(hub);
    let report = slot
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .context("the window closed before the scenario ended")?;
    let out = GuiFramesJson {
        schema: pagesight_engine::SCHEMA_VERSION,
        producer: format!("pagesight {} bench gui-frames", env!("CARGO_PKG_VERSION")),
        cpu: cpu_name(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        display: display.to_string(),
        fps: a.fps,
        drain_budget_ms: drain_budget.as_secs_f64() * 1e3,
        source_folder: source.to_path_buf(),
        files_copied: copied,
        files_generated: a.generate,
        pages_per_generated_file: a.pages,
        watch_files: [a.watch_files, a.watch_files],
        model: model.model.clone(),
        device: "cpu",
        download_repo: HUB_REPO.into(),
        download_total_bytes: total,
        download_pause_ms: pause.as_secs_f64() * 1e3,
        queries,
        load_before,
        load_after: load_avg(),
        report,
    };
    print!("{}", render(&out));
    if let Some(path) = &a.json {
        pagesight_common::fs::write_atomic(path, serde_json::to_string_pretty(&out)?.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

/// The table and what led to it.
fn render(o: &GuiFramesJson) -> String {
    let mut s = format!(
        "UI frame time: time inside the app's ui() per frame (event drain + layout), {} build, \
         {} ({} cores), display {}, {} fps asked\n\
         scenario: {} PDFs copied + {} generated ({} pages each), {} + {} written into the watched \
         folder, {} on the CPU, download of {} ({}), {} queries\n\n",
        o.build,
        o.cpu,
        o.cores,
        o.display,
        o.fps,
        o.files_copied,
        o.files_generated,
        o.pages_per_generated_file,
        o.watch_files[0],
        o.watch_files[1],
        o.model,
        o.download_repo,
        crate::ui::format::bytes(o.download_total_bytes),
        o.queries.len()
    );
    if let Some(r) = &o.report.renderer {
        s += &format!("painted by: {r} (outside ui(); not in these figures)\n");
    }
    s += &o.report.table();
    if let (Some(f), Some(p)) = (o.report.files_indexed, o.report.pages_indexed) {
        s += &format!(
            "index at the end: {f} files, {p} pages; {} searches\n",
            o.report.searches
        );
    }
    if !o.report.completed {
        s += "the scenario did not complete every phase (see the notes)\n";
    }
    for n in &o.report.notes {
        s += &format!("note: {n}\n");
    }
    s += "slowest frames:";
    for f in o.report.slowest_frames.iter().take(5) {
        s += &format!(
            " {:.2} ms ({}, {} view, t={:.1} s);",
            f.ms,
            f.phase.name(),
            f.view,
            f.at_secs
        );
    }
    s += "\n";
    if let (Some(b), Some(a)) = (&o.load_before, &o.load_after) {
        s += &format!("load average before: {b}; after: {a}\n");
    }
    s
}
