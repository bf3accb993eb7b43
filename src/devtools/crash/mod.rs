//! `pagesight bench crash`: crash consistency of a real `pagesight ingest`, measured from
//! outside the process — SIGKILL at uniformly drawn moments (classified by the store's commit
//! trace), render workers killed mid-render, disk full during commit, and searches during an
//! ingest. Prints the README's figures; `tests/crash/` runs the same harness in CI.

pub mod check;
pub mod child;
pub mod concurrent;
pub mod disk_full;
pub mod kill;
pub mod render_kill;

use anyhow::{Context, Result};
use child::IngestSpec;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct CrashBenchArgs {
    /// SIGKILL trials over the ingest (each from an empty index, then resumed).
    #[arg(long, default_value_t = 50)]
    pub trials: usize,
    /// Render-worker kill trials.
    #[arg(long, default_value_t = 6)]
    pub render_trials: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Copies of each sample PDF in the corpus (4 samples, 8 pages per copy).
    #[arg(long, default_value_t = 4)]
    pub copies: usize,
    /// Commit every N pages (small: many commits to land in).
    #[arg(long, default_value_t = 2)]
    pub commit_every: usize,
    /// Folder of PDFs the corpus copies (default: the repository's assets/samples).
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Scratch folder (default: a new folder in the system temp dir, removed afterwards).
    #[arg(long)]
    pub work: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Everything measured, for the README and the JSON output.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CrashReport {
    pub kills: Option<kill::KillFigures>,
    pub render_kills: Option<render_kill::RenderKillFigures>,
    pub disk_full: Option<disk_full::DiskFullFigures>,
    pub concurrency: Option<concurrent::ConcurrencyFigures>,
}

/// The repository's sample PDFs.
pub fn default_samples() -> PathBuf {
    pagesight_common::paths::source_root().join("assets/samples")
}

/// `copies` copies of every PDF in `samples`, each made distinct (so a file of its own to the
/// index) by a PDF comment appended after `%%EOF`, which readers ignore.
pub fn make_corpus(samples: &Path, copies: usize, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(samples)
        .with_context(|| format!("cannot read {}", samples.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    pdfs.sort();
    anyhow::ensure!(!pdfs.is_empty(), "no PDFs in {}", samples.display());
    for i in 0..copies {
        for p in &pdfs {
            let stem = p.file_stem().unwrap_or_default().to_string_lossy();
            let mut bytes = std::fs::read(p)?;
            bytes.extend_from_slice(format!("\n%copy {i}\n").as_bytes());
            std::fs::write(dest.join(format!("{stem}-{i}.pdf")), bytes)?;
        }
    }
    Ok(())
}

/// The settings every SIGKILL, disk-full and concurrency trial uses: small pages so the tiny
/// model is quick, a commit every `commit_every` pages.
pub fn fast_spec(exe: &Path, corpus: &Path, commit_every: usize) -> IngestSpec {
    IngestSpec {
        exe: exe.into(),
        corpus: corpus.into(),
        workers: 2,
        commit_every,
        dpi: 50.0,
        max_visual_tokens: 64,
        batch_size: 2,
        prefetch: 16,
    }
}

/// Render-heavy settings (high DPI) so that a worker is usually mid-page when it is killed.
pub fn render_spec(exe: &Path, corpus: &Path, commit_every: usize) -> IngestSpec {
    IngestSpec {
        dpi: 200.0,
        ..fast_spec(exe, corpus, commit_every)
    }
}

/// The render-kill setups with their uninterrupted runs: render-heavy, then light.
pub fn render_setups(
    exe: &Path,
    corpus: &Path,
    commit_every: usize,
    work: &Path,
) -> Result<Vec<(IngestSpec, kill::Reference)>> {
    [
        render_spec(exe, corpus, commit_every),
        // Light pages and a prefetch of 2: the workers spend most of the ingest idle, waiting
        // for the model to take pages, and live until its end.
        IngestSpec {
            prefetch: 2,
            ..fast_spec(exe, corpus, commit_every)
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, spec)| {
        let r = kill::Reference::build(&spec, &work.join(format!("setup-{i}")))?;
        Ok((spec, r))
    })
    .collect()
}

pub fn run(a: CrashBenchArgs) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the pagesight executable")?;
    let own_work = a.work.is_none();
    let work = a.work.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("pagesight-crash-{}", std::process::id()))
    });
    let samples = a.samples.clone().unwrap_or_else(default_samples);
    let corpus = work.join("corpus");
    let _ = std::fs::remove_dir_all(&corpus);
    make_corpus(&samples, a.copies, &corpus)?;
    let spec = fast_spec(&exe, &corpus, a.commit_every);
    let reference = kill::Reference::build(&spec, &work)?;
    let mut report = CrashReport {
        kills: Some(kill::kill_trials(
            &spec, &work, &reference, a.trials, a.seed,
        )?),
        ..Default::default()
    };
    report.disk_full = Some(disk_full::disk_full_cases(&spec, &work, &reference, 4)?);
    report.concurrency = Some(concurrent::concurrent_searches(&spec, &work)?);
    if a.render_trials > 0 {
        let rcorpus = work.join("render-corpus");
        let _ = std::fs::remove_dir_all(&rcorpus);
        make_corpus(&samples, a.copies.div_ceil(2), &rcorpus)?;
        let rwork = work.join("render");
        let setups = render_setups(&exe, &rcorpus, a.commit_every, &rwork)?;
        report.render_kills = Some(render_kill::render_kill_trials(
            &setups,
            &rwork,
            a.render_trials,
            a.seed,
        )?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    if own_work {
        let _ = std::fs::remove_dir_all(&work);
    }
    let problems = report.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "{} problems found:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}

impl CrashReport {
    /// Every invariant violation of every part.
    pub fn problems(&self) -> Vec<String> {
        [
            self.kills.as_ref().map(|k| &k.problems),
            self.render_kills.as_ref().map(|r| &r.problems),
            self.disk_full.as_ref().map(|d| &d.problems),
            self.concurrency.as_ref().map(|c| &c.problems),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .cloned()
        .collect()
    }

    /// The figures as the README shows them.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if let Some(k) = &self.kills {
            s += &format!(
                "SIGKILL: {} trials ({} kills, {} of them of a recovering run) over a {:.2} s ingest of {} pages ({} commits); kills landed: {} before the run's first commit, {} between commits, {} inside a commit ({} of them inside an fsync); {} moments fell after the run had finished and were drawn again\n",
                k.trials, k.kills, k.recoveries_killed, k.uninterrupted_secs, k.pages, k.commits_in_uninterrupted_run,
                k.before_first_commit, k.between_commits, k.inside_commit, k.inside_fsync, k.finished_before_kill
            );
            s += &format!(
                "  by commit step: {}\n",
                k.by_step
                    .iter()
                    .map(|(step, n)| format!("{step} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            s += &format!(
                "  pages lost {}, duplicates {}, text index rebuilt on reopen {}, resumed runs equal to the uninterrupted one {}/{}\n",
                k.pages_lost, k.duplicates, k.text_rebuilt_on_open, k.resumed_equal, k.trials
            );
        }
        if let Some(r) = &self.render_kills {
            s += &format!(
                "render workers killed: {} trials, {} mid-render (file reported failed, not retried), {} idle (replaced, nothing failed), {} moments redrawn (workers already done); ingests finished {}/{}, other pages lost {}, re-runs picked the file up and matched {}/{}\n",
                r.trials, r.mid_render, r.idle, r.redrawn, r.ingests_finished, r.trials, r.other_pages_lost, r.reruns_equal, r.trials
            );
            let mut reasons: Vec<&String> = r.reasons.iter().collect();
            reasons.sort();
            reasons.dedup();
            for reason in reasons {
                s += &format!("  reported: {reason}\n");
            }
        }
        if let Some(d) = &self.disk_full {
            s += &format!(
                "disk full during commit: {} cases, {} clean errors, previous commit intact {}, recovered with space back {}\n  message: {}\n",
                d.cases, d.clean_errors, d.previous_commit_intact, d.recovered, d.example_message
            );
        }
        if let Some(c) = &self.concurrency {
            s += &format!(
                "searches during ingest: {} CLI searches and {} opens ({} rebuilt the text index, found mid-commit) saw {} of {} committed states, {} before the first commit, {} inconsistent\n",
                c.cli_searches, c.opens, c.opens_rebuilt_text, c.states_seen, c.commits, c.no_index_yet, c.problems.len()
            );
        }
        s
    }
}
