//! Runs the real `pagesight ingest --json` as a child process over a corpus, under a wall-clock
//! guard, and collects what it said about every file. A child is used (not the engine in this
//! process) so that a crash or a hang of the ingest itself is observed, not suffered.

use super::corpus::Corpus;
use anyhow::{Context, Result};
use pagesight_engine::event::{Event, EventEnvelope, FileStatus, IngestSummary};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to run the ingest.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `pagesight` executable.
    pub exe: PathBuf,
    pub workers: usize,
    pub page_timeout_secs: f32,
    /// Render resolution and the per-page pixel cap (lower: faster, for CI).
    pub dpi: f32,
    pub max_render_megapixels: f64,
    /// The model's visual tokens per page (fewer: faster embedding).
    pub max_visual_tokens: usize,
    /// Each render worker's memory cap (the ingest's `--worker-memory-mb`); `None`: its default.
    pub worker_memory_mb: Option<u64>,
    /// The whole ingest is killed (and counted as a hang) after this long.
    pub guard_secs: f64,
}

/// The final word on one file: what the last `FileStatus` event said.
#[derive(Clone, Debug, PartialEq)]
pub enum FileResult {
    Done { pages: u32 },
    Failed { page: Option<u32>, reason: String },
    Skipped { pages: u32 },
    Duplicate { of: PathBuf },
}

/// What one ingest run showed.
#[derive(Debug)]
pub struct IngestRun {
    /// `None` when the guard killed it.
    pub exit: Option<ExitStatus>,
    pub hung: bool,
    pub wall_secs: f64,
    /// Final results per path relative to the corpus root; more than one means a file was
    /// reported twice.
    pub results: BTreeMap<PathBuf, Vec<FileResult>>,
    /// Seconds from a file's first event to its final one.
    pub file_secs: BTreeMap<PathBuf, f64>,
    pub notices: Vec<String>,
    pub summary: Option<IngestSummary>,
    /// Error events (the run as a whole failing).
    pub errors: Vec<String>,
    pub lines_unparsed: usize,
    pub stderr_tail: String,
}

/// Runs `exe ingest <corpus> --index <index> --model random:tiny --device cpu --json …` with the
/// corpus's fault-injection environment.
pub fn run_ingest(corpus: &Corpus, index: &Path, opts: &RunOptions) -> Result<IngestRun> {
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("ingest")
        .arg(&corpus.root)
        .arg("--index")
        .arg(index)
        .args(["--model", "random:tiny", "--device", "cpu", "--json"])
        .args(["--workers", &opts.workers.to_string()])
        .args(["--page-timeout", &opts.page_timeout_secs.to_string()])
        .args(["--dpi", &opts.dpi.to_string()])
        .args(["--max-visual-tokens", &opts.max_visual_tokens.to_string()])
        .args([
            "--max-render-megapixels",
            &opts.max_render_megapixels.to_string(),
        ])
        .args(
            opts.worker_memory_mb
                .iter()
                .flat_map(|mb| ["--worker-memory-mb".to_string(), mb.to_string()]),
        )
        .envs(corpus.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} ingest", opts.exe.display()))?;
    let stdout = child.stdout.take().context("ingest child has no stdout")?;
    let mut stderr = child.stderr.take().context("ingest child has no stderr")?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((started.elapsed().as_secs_f64(), line)).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = started + Duration::from_secs_f64(opts.guard_secs);
    let mut run = IngestRun {
        exit: None,
        hung: false,
        wall_secs: 0.0,
        results: BTreeMap::new(),
        file_secs: BTreeMap::new(),
        notices: Vec::new(),
        summary: None,
        errors: Vec::new(),
        lines_unparsed: 0,
        stderr_tail: String::new(),
    };
    let mut first_seen: BTreeMap<PathBuf, f64> = BTreeMap::new();
    loop {
        match rx.recv_deadline(deadline) {
            Ok((t, line)) => run.take_line(&corpus.root, t, &line, &mut first_seen),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                run.hung = true;
                let _ = child.kill();
                break;
            }
        }
    }
    // stdout closed: the process is exiting; give it the rest of the guard to do so.
    while !run.hung {
        match child.try_wait()? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                run.hung = true;
                let _ = child.kill();
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let status = child.wait().context("waiting for the ingest child")?;
    run.exit = (!run.hung).then_some(status);
    run.wall_secs = started.elapsed().as_secs_f64();
    let _ = reader.join();
    let err = err_reader.join().unwrap_or_default();
    let tail_start = err.len().saturating_sub(4000);
    let tail_start = (tail_start..err.len())
        .find(|&i| err.is_char_boundary(i))
        .unwrap_or(err.len());
    run.stderr_tail = err[tail_start..].to_string();
    Ok(run)
}

impl IngestRun {
    fn take_line(
        &mut self,
        root: &Path,
        t: f64,
        line: &str,
        first_seen: &mut BTreeMap<PathBuf, f64>,
    ) {
        let Ok(env) = serde_json::from_str::<EventEnvelope>(line) else {
            self.lines_unparsed += 1;
            return;
        };
        match env.event {
            Event::FileStatus(r) => {
                let rel = r.path.strip_prefix(root).unwrap_or(&r.path).to_path_buf();
                let start = *first_seen.entry(rel.clone()).or_insert(t);
                let result = match r.status {
                    FileStatus::Done { pages } => FileResult::Done { pages },
                    FileStatus::Failed { page, reason } => FileResult::Failed { page, reason },
                    FileStatus::SkippedUnchanged { pages } => FileResult::Skipped { pages },
                    FileStatus::Duplicate { of } => FileResult::Duplicate {
                        of: of.strip_prefix(root).unwrap_or(&of).to_path_buf(),
                    },
                    FileStatus::Queued | FileStatus::InProgress { .. } | FileStatus::Removed => {
                        return
                    }
                };
                self.file_secs.insert(rel.clone(), t - start);
                self.results.entry(rel).or_default().push(result);
            }
            Event::Notice { message } => self.notices.push(message),
            Event::IngestFinished(s) => self.summary = Some(s),
            Event::Error {
                context, message, ..
            } => self.errors.push(format!("{context}: {message}")),
            _ => {}
        }
    }

    /// The process ended on its own, without a signal and without a panic's exit code.
    pub fn exited_normally(&self) -> bool {
        self.exit
            .is_some_and(|s| s.code().is_some_and(|c| c == 0 || c == 1))
    }
}

/// Runs `exe index verify --index <index>`; `Ok(())` when it reports the index intact.
pub fn verify_index(exe: &Path, index: &Path) -> Result<()> {
    let out = Command::new(exe)
        .args(["index", "verify", "--index"])
        .arg(index)
        .output()
        .with_context(|| format!("cannot start {} index verify", exe.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "index verify failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
