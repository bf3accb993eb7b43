//! `pagesight bench hostile`: generates the hostile-PDF corpus (`corpus.rs`, written by our own
//! PDF writer `pdf.rs`), ingests it with the real engine in a child `pagesight ingest` (`run.rs`)
//! and prints the figures: files tried, done, failed by reason, crashes, hangs, the slowest file,
//! and every way the outcome differed from what a correct ingest does.

pub mod corpus;
pub mod pdf;
pub mod render_pass;
pub mod run;

use anyhow::{Context, Result};
use clap::Args;
use corpus::{Corpus, Expect};
use run::{FileResult, IngestRun, RunOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct HostileBenchArgs {
    /// Folder for the corpus (`corpus/`) and its index (`index/`); must not exist or be empty.
    /// Default: a temporary folder, removed afterwards.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Damaged variants (truncations and byte flips); about 45 fixed cases come on top.
    #[arg(long, default_value_t = 170)]
    pub count: usize,
    #[arg(long, default_value_t = 8)]
    pub seed: u64,
    /// Render worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Per-page render timeout (the injected hang costs this long).
    #[arg(long, default_value_t = 10.0)]
    pub page_timeout: f32,
    /// Render resolution.
    #[arg(long, default_value_t = 144.0)]
    pub dpi: f32,
    /// Cap on rendered pixels per page.
    #[arg(long, default_value_t = 40.0)]
    pub max_render_megapixels: f64,
    /// The model's visual tokens per page.
    #[arg(long, default_value_t = 768)]
    pub max_visual_tokens: usize,
    /// Cap on each render worker's memory in MB (default: 1 GiB + 16 bytes per capped pixel).
    #[arg(long)]
    pub worker_memory_mb: Option<u64>,
    /// Kill the ingest (and count a hang) after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub guard: f64,
}

/// The reason classes a researcher sees, by the text that identifies them. A failure whose
/// reason matches none is a vague message and counts as a problem.
pub const REASON_CLASSES: &[(&str, &str)] = &[
    // First match wins: the process-level causes first (their text may mention damage).
    ("render worker crashed", "render worker crashed"),
    ("render timed out", "timed out"),
    ("encrypted: needs a password", "encrypted"),
    ("damaged page", "cannot be loaded"),
    ("truncated/damaged PDF", "damaged"),
    ("not a PDF", "not a pdf"),
    ("empty file", "empty"),
    ("no pages", "no pages"),
    ("page size unusable", "invalid size"),
    ("page size unusable", "aspect ratio"),
    ("rendering failed", "rendering failed"),
    ("unreadable file", "cannot read"),
    ("not a regular file", "not a regular file"),
];

/// The class of a failure reason, or `None` for an unspecific one.
pub fn classify(reason: &str) -> Option<&'static str> {
    let lower = reason.to_lowercase();
    REASON_CLASSES
        .iter()
        .find(|(_, needle)| lower.contains(needle))
        .map(|(class, _)| *class)
}

/// Everything in `run` that a correct ingest of `corpus` would not have done: missing or
/// duplicate results, files reported that are not in the corpus, outcomes against expectation,
/// unspecific reasons, a crash, a hang. Empty means the run was right.
pub fn problems(corpus: &Corpus, run: &IngestRun) -> Vec<String> {
    let mut out = Vec::new();
    if run.hung {
        out.push("the ingest hung: killed by the wall-clock guard".into());
    } else if !run.exited_normally() {
        out.push(format!("the ingest crashed or failed: {:?}", run.exit));
    }
    out.extend(run.errors.iter().map(|e| format!("error event: {e}")));
    if run.summary.is_none() {
        out.push("no IngestFinished event".into());
    }
    for e in &corpus.entries {
        let results = run
            .results
            .get(&e.path)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let name = e.path.display();
        let [result] = results else {
            out.push(format!(
                "{name} ({}): {} results, expected exactly one",
                e.kind,
                results.len()
            ));
            continue;
        };
        match (&e.expect, result) {
            (Expect::Ingested, FileResult::Done { .. }) => {}
            (Expect::Ingested, other) => out.push(format!(
                "{name} ({}): expected ingested, got {other:?}",
                e.kind
            )),
            (Expect::Fails(text), FileResult::Failed { reason, .. }) => {
                if !reason.to_lowercase().contains(&text.to_lowercase()) {
                    out.push(format!(
                        "{name} ({}): reason '{reason}' lacks '{text}'",
                        e.kind
                    ));
                }
            }
            (Expect::Fails(text), other) => out.push(format!(
                "{name} ({}): expected failure '{text}', got {other:?}",
                e.kind
            )),
            (Expect::DuplicateOf(first), FileResult::Duplicate { of })
                if of == Path::new(first) => {}
            (Expect::DuplicateOf(first), other) => out.push(format!(
                "{name} ({}): expected a duplicate of {first}, got {other:?}",
                e.kind
            )),
            (Expect::Either, _) => {}
        }
        if let FileResult::Failed { reason, .. } = result {
            if classify(reason).is_none() {
                out.push(format!("{name} ({}): unspecific reason '{reason}'", e.kind));
            }
        }
    }
    let known: std::collections::HashSet<&PathBuf> =
        corpus.entries.iter().map(|e| &e.path).collect();
    for p in run.results.keys().filter(|p| !known.contains(p)) {
        out.push(format!(
            "{} was reported but is not in the corpus (walked twice?)",
            p.display()
        ));
    }
    out
}

/// The figures of one run.
#[derive(Debug, serde::Serialize)]
pub struct Figures {
    pub files_tried: usize,
    pub done: usize,
    pub failed: usize,
    /// Same content as another file: indexed once.
    pub duplicates: usize,
    pub failed_by_reason: BTreeMap<String, usize>,
    /// The ingest process itself ended by a signal or a panic.
    pub process_crashes: usize,
    /// Render workers that crashed and were replaced (their files failed).
    pub worker_crashes_handled: usize,
    /// The ingest process killed by the wall-clock guard.
    pub process_hangs: usize,
    /// Pages over the per-page timeout: worker killed and replaced, file failed.
    pub page_timeouts_handled: usize,
    pub pages_capped: usize,
    /// Longest time from a file's first event to its result in the ingest (includes waiting
    /// for its batch).
    pub slowest_file: Option<(String, f64)>,
    /// The slowest files to render (worker time over their pages), from a loader-only pass.
    pub slowest_renders: Vec<(String, f64)>,
    pub wall_secs: f64,
    pub problems: Vec<String>,
}

pub fn figures(corpus: &Corpus, run: &IngestRun) -> Figures {
    let finals: Vec<&FileResult> = run.results.values().filter_map(|v| v.last()).collect();
    let reasons: Vec<&str> = finals
        .iter()
        .filter_map(|r| match r {
            FileResult::Failed { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    let mut failed_by_reason = BTreeMap::new();
    for r in &reasons {
        *failed_by_reason
            .entry(classify(r).unwrap_or("unspecific").to_string())
            .or_insert(0) += 1;
    }
    Figures {
        files_tried: corpus.entries.len(),
        done: finals
            .iter()
            .filter(|r| matches!(r, FileResult::Done { .. }))
            .count(),
        failed: reasons.len(),
        duplicates: finals
            .iter()
            .filter(|r| matches!(r, FileResult::Duplicate { .. }))
            .count(),
        process_crashes: usize::from(!run.hung && !run.exited_normally()),
        worker_crashes_handled: reasons
            .iter()
            .filter(|r| r.contains("render worker crashed"))
            .count(),
        process_hangs: usize::from(run.hung),
        page_timeouts_handled: reasons.iter().filter(|r| r.contains("timed out")).count(),
        failed_by_reason,
        pages_capped: run
            .notices
            .iter()
            .filter(|n| n.contains("page too large"))
            .count(),
        slowest_file: run
            .file_secs
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(p, s)| (p.display().to_string(), *s)),
        slowest_renders: Vec::new(),
        wall_secs: run.wall_secs,
        problems: problems(corpus, run),
    }
}

pub fn run(a: HostileBenchArgs) -> Result<()> {
    let (base, temporary) = match &a.out {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("pagesight-hostile-{}", std::process::id())),
            true,
        ),
    };
    let corpus = corpus::generate(&base.join("corpus"), a.count, a.seed)?;
    let index = base.join("index");
    let opts = RunOptions {
        exe: std::env::current_exe().context("cannot find the pagesight executable")?,
        workers: a.workers.max(1),
        page_timeout_secs: a.page_timeout,
        dpi: a.dpi,
        max_render_megapixels: a.max_render_megapixels,
        max_visual_tokens: a.max_visual_tokens,
        worker_memory_mb: a.worker_memory_mb,
        guard_secs: a.guard,
    };
    println!(
        "{} hostile files in {}; ingesting…",
        corpus.entries.len(),
        corpus.root.display()
    );
    let ingest = run::run_ingest(&corpus, &index, &opts)?;
    let mut f = figures(&corpus, &ingest);
    let loader = pagesight_loader::LoaderSettings {
        workers: opts.workers,
        dpi: opts.dpi,
        page_timeout_secs: opts.page_timeout_secs,
        max_render_pixels: (opts.max_render_megapixels * 1e6) as u64,
        worker_memory_mb: opts.worker_memory_mb,
        worker_exe: Some(opts.exe.clone()),
        ..Default::default()
    };
    let renders = render_pass::render_times(
        &corpus.root,
        &loader,
        std::time::Duration::from_secs_f64(a.guard),
    )?;
    f.slowest_renders = renders
        .into_iter()
        .take(3)
        .map(|(p, s)| (p.display().to_string(), s))
        .collect();
    if let Err(e) = run::verify_index(&opts.exe, &index) {
        f.problems.push(format!("{e:#}"));
    }
    print_figures(&f);
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    if !f.problems.is_empty() {
        eprintln!("stderr of the ingest (tail):\n{}", ingest.stderr_tail);
        anyhow::bail!("{} problems", f.problems.len());
    }
    Ok(())
}

fn print_figures(f: &Figures) {
    println!("files tried        {}", f.files_tried);
    println!("done               {}", f.done);
    println!("duplicates         {} (indexed once)", f.duplicates);
    println!("failed             {}", f.failed);
    for (class, n) in &f.failed_by_reason {
        println!("  {n:>4}  {class}");
    }
    println!("process crashes    {}", f.process_crashes);
    println!("process hangs      {}", f.process_hangs);
    println!(
        "worker crashes     {} (replaced; their files failed)",
        f.worker_crashes_handled
    );
    println!(
        "page timeouts      {} (worker killed and replaced)",
        f.page_timeouts_handled
    );
    println!("pages capped       {}", f.pages_capped);
    for (p, s) in &f.slowest_renders {
        println!("slow to render     {p} ({s:.2} s in the worker)");
    }
    if let Some((p, s)) = &f.slowest_file {
        println!("longest wait       {p} ({s:.1} s from opened to result, batching included)");
    }
    println!("wall time          {:.1} s", f.wall_secs);
    for p in &f.problems {
        println!("PROBLEM: {p}");
    }
    println!(
        "{}",
        if f.problems.is_empty() {
            "OK"
        } else {
            "PROBLEMS"
        }
    );
}
