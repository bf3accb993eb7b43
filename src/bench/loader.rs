//! `pagesight bench loader <folder>`: pages/s of the loader (render workers → ordered queue →
//! normalise/patchify) for several worker counts, and where the time goes.

use anyhow::{bail, Result};
use clap::Args;
use pagesight_engine::SCHEMA_VERSION;
use pagesight_loader::LoaderSettings;
use pagesight_loader::{discover, Loader, LoaderEvent, PageJobFile};
use pagesight_model::preprocess::{patchify_with_table, PreprocessConfig};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct LoaderBenchArgs {
    /// Folder of PDFs (walked recursively).
    pub folder: PathBuf,
    /// Worker counts to measure, comma-separated (default: 1 up to the number of cores).
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<usize>,
    /// Stop each run after this many pages (the same first pages every run).
    #[arg(long)]
    pub max_pages: Option<usize>,
    /// Render resolution.
    #[arg(long, default_value_t = LoaderSettings::default().dpi)]
    pub dpi: f32,
    /// Upper bound on visual tokens per page (sets the model resolution).
    #[arg(long, default_value_t = 768)]
    pub max_visual_tokens: usize,
    /// Rendered pages buffered ahead of the consumer.
    #[arg(long, default_value_t = LoaderSettings::default().prefetch)]
    pub prefetch: usize,
    #[command(flatten)]
    pub worker_memory: crate::cli::args::WorkerMemoryArgs,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug)]
struct RunResult {
    workers: usize,
    pages: u64,
    wall_secs: f64,
    pages_per_sec: f64,
    /// Summed over pages (worker time for render/resize, consumer time for patchify).
    render_secs: f64,
    resize_secs: f64,
    patchify_secs: f64,
    /// Per page, milliseconds.
    render_ms_per_page: f64,
    resize_ms_per_page: f64,
    patchify_ms_per_page: f64,
    /// Consumer time spent waiting for the next page.
    wait_secs: f64,
}

#[derive(Serialize, Debug)]
struct FileError {
    file: PathBuf,
    page: Option<u32>,
    reason: String,
}

#[derive(Serialize, Debug)]
struct LoaderBenchReport {
    schema: u32,
    bench: &'static str,
    folder: PathBuf,
    files: usize,
    bytes: u64,
    discover_secs: f64,
    dpi: f32,
    max_visual_tokens: usize,
    cores: usize,
    runs: Vec<RunResult>,
    errors: Vec<FileError>,
}

pub fn run(args: LoaderBenchArgs) -> Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers = if args.workers.is_empty() {
        (1..=cores).collect()
    } else {
        args.workers.clone()
    };
    if workers.contains(&0) {
        bail!("--workers: every count must be at least 1");
    }
    let t0 = Instant::now();
    let found = discover(&args.folder)?;
    let discover_secs = t0.elapsed().as_secs_f64();
    if found.files.is_empty() {
        bail!("no PDF files under {}", args.folder.display());
    }
    let mut errors: Vec<FileError> = found
        .errors
        .iter()
        .map(|(p, e)| FileError {
            file: p.clone(),
            page: None,
            reason: e.clone(),
        })
        .collect();
    let pre = PreprocessConfig::default().with_max_visual_tokens(args.max_visual_tokens);
    let jobs = PageJobFile::whole_files(found.files.iter().map(|f| f.path.as_path()));
    if !args.json {
        println!(
            "{} PDFs ({:.1} MB) under {}, discovered and hashed in {:.2} s; {} dpi, ≤{} visual tokens, {} cores",
            found.files.len(),
            found.files.iter().map(|f| f.size).sum::<u64>() as f64 / 1e6,
            args.folder.display(),
            discover_secs,
            args.dpi,
            args.max_visual_tokens,
            cores
        );
        println!(
            "{:>7} {:>7} {:>8} {:>8} {:>11} {:>11} {:>13} {:>9}",
            "workers",
            "pages",
            "wall s",
            "pages/s",
            "render ms",
            "resize ms",
            "patchify ms",
            "wait s"
        );
    }
    let mut runs = Vec::new();
    for (i, &n) in workers.iter().enumerate() {
        let mut settings = LoaderSettings {
            workers: n,
            dpi: args.dpi,
            prefetch: args.prefetch,
            ..LoaderSettings::default()
        };
        args.worker_memory.apply(&mut settings);
        let failures = if i == 0 { Some(&mut errors) } else { None };
        let r = one_run(
            &jobs,
            &found.files,
            &settings,
            &pre,
            args.max_pages,
            failures,
        )?;
        if !args.json {
            println!(
                "{:>7} {:>7} {:>8.2} {:>8.2} {:>11.2} {:>11.2} {:>13.2} {:>9.2}",
                r.workers,
                r.pages,
                r.wall_secs,
                r.pages_per_sec,
                r.render_ms_per_page,
                r.resize_ms_per_page,
                r.patchify_ms_per_page,
                r.wait_secs
            );
        }
        runs.push(r);
    }
    if args.json {
        let report = LoaderBenchReport {
            schema: SCHEMA_VERSION,
            bench: "loader",
            folder: args.folder.clone(),
            files: found.files.len(),
            bytes: found.files.iter().map(|f| f.size).sum(),
            discover_secs,
            dpi: args.dpi,
            max_visual_tokens: args.max_visual_tokens,
            cores,
            runs,
            errors,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if let Some(r) = runs.first() {
            let total = r.render_secs + r.resize_secs + r.patchify_secs;
            if total > 0.0 {
                println!(
                    "time split per page: render {:.0}%, resize {:.0}%, normalise/patchify {:.0}% \
                     (render and resize run in the workers, patchify in the consumer)",
                    100.0 * r.render_secs / total,
                    100.0 * r.resize_secs / total,
                    100.0 * r.patchify_secs / total
                );
            }
        }
        if !errors.is_empty() {
            println!("{} files failed:", errors.len());
            for e in &errors {
                let page = e.page.map(|p| format!(" page {p}")).unwrap_or_default();
                println!("  {}{page}: {}", e.file.display(), e.reason);
            }
        }
    }
    Ok(())
}

fn one_run(
    jobs: &[PageJobFile],
    files: &[pagesight_loader::PdfFile],
    settings: &LoaderSettings,
    pre: &PreprocessConfig,
    max_pages: Option<usize>,
    mut failures: Option<&mut Vec<FileError>>,
) -> Result<RunResult> {
    let table = pre.normalise_table();
    let mut buf = vec![0.0f32; pre.max_patches_per_image() * pre.patch_dim()];
    let start = Instant::now();
    let loader = Loader::start(jobs.to_vec(), settings, pre)?;
    let (mut pages, mut render, mut resize, mut patchify, mut wait) = (0u64, 0.0, 0.0, 0.0, 0.0);
    loop {
        let t = Instant::now();
        let Some(ev) = loader.recv() else { break };
        wait += t.elapsed().as_secs_f64();
        match ev {
            LoaderEvent::Page(p) => {
                let t = Instant::now();
                let n = pre.num_patches(p.height, p.width) * pre.patch_dim();
                patchify_with_table(&p.rgb, p.height, p.width, pre, &table, &mut buf[..n])?;
                patchify += t.elapsed().as_secs_f64();
                render += p.render_secs;
                resize += p.resize_secs;
                pages += 1;
                if max_pages.is_some_and(|m| pages as usize >= m) {
                    loader.cancel();
                    break;
                }
            }
            LoaderEvent::FileFailed {
                file_index,
                page,
                reason,
            } => {
                if let Some(f) = failures.as_deref_mut() {
                    f.push(FileError {
                        file: files[file_index].path.clone(),
                        page,
                        reason,
                    });
                }
            }
            LoaderEvent::FileOpened { .. } | LoaderEvent::FileFinished { .. } => {}
        }
    }
    let wall = start.elapsed().as_secs_f64();
    drop(loader);
    let per = |s: f64| {
        if pages > 0 {
            1000.0 * s / pages as f64
        } else {
            0.0
        }
    };
    Ok(RunResult {
        workers: settings.workers,
        pages,
        wall_secs: wall,
        pages_per_sec: if wall > 0.0 { pages as f64 / wall } else { 0.0 },
        render_secs: render,
        resize_secs: resize,
        patchify_secs: patchify,
        render_ms_per_page: per(render),
        resize_ms_per_page: per(resize),
        patchify_ms_per_page: per(patchify),
        wait_secs: wait,
    })
}
