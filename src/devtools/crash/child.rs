//! Child `pagesight` processes for the crash harness: the ingest command line every trial uses,
//! spawning with the commit trace on, killing, finding render workers, and reading the trace.

use anyhow::{bail, Context, Result};
use pagesight_index::env_vars::{COMMIT_TRACE, INDEX_FAULT};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How every trial runs `pagesight ingest`: the same corpus and settings, so a resumed index
/// can be compared page by page with an uninterrupted one.
#[derive(Clone, Debug)]
pub struct IngestSpec {
    pub exe: PathBuf,
    pub corpus: PathBuf,
    pub workers: usize,
    pub commit_every: usize,
    pub dpi: f32,
    pub max_visual_tokens: usize,
    pub batch_size: usize,
    /// Rendered pages buffered ahead of the model (small: workers wait on backpressure).
    pub prefetch: usize,
}

/// One spawned process and the files it writes its output, errors and commit trace to.
pub struct Running {
    pub child: Child,
    pub started: Instant,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub trace: PathBuf,
}

/// How a finished (or killed) child ended, with what it wrote.
pub struct Ended {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub trace: Trace,
    pub wall: Duration,
    /// Processes of the run still alive 2 s after it ended (then killed).
    pub survivors: Vec<u32>,
}

/// Extra conditions for one run.
#[derive(Clone, Debug, Default)]
pub struct RunOpts {
    /// `PAGESIGHT_INDEX_FAULT` value (e.g. `enospc:3`).
    pub write_fault: Option<String>,
    /// RLIMIT_FSIZE in bytes (SIGXFSZ ignored, so an oversized write fails with EFBIG).
    pub file_size_limit: Option<u64>,
    /// `--json` events on stdout.
    pub json: bool,
}

impl IngestSpec {
    fn ingest_args(&self, index: &Path, json: bool) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "ingest".into(),
            self.corpus.display().to_string(),
            "--index".into(),
            index.display().to_string(),
            "--model".into(),
            "random:tiny".into(),
            "--device".into(),
            "cpu".into(),
            "--workers".into(),
            self.workers.to_string(),
            "--commit-every".into(),
            self.commit_every.to_string(),
            "--dpi".into(),
            self.dpi.to_string(),
            "--max-visual-tokens".into(),
            self.max_visual_tokens.to_string(),
            "--batch-size".into(),
            self.batch_size.to_string(),
            "--prefetch".into(),
            self.prefetch.to_string(),
        ];
        if json {
            a.push("--json".into());
        }
        a
    }

    /// Starts `pagesight ingest` into `index`; `tag` names its output files in `work`.
    pub fn spawn(&self, index: &Path, work: &Path, tag: &str, opts: &RunOpts) -> Result<Running> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(self.ingest_args(index, opts.json));
        spawn_logged(cmd, work, tag, opts)
    }

    /// Runs an ingest to its end.
    pub fn run(&self, index: &Path, work: &Path, tag: &str, opts: &RunOpts) -> Result<Ended> {
        self.spawn(index, work, tag, opts)?.wait()
    }
}

/// Spawns `cmd` with stdout, stderr and the commit trace going to files named after `tag`.
fn spawn_logged(mut cmd: Command, work: &Path, tag: &str, opts: &RunOpts) -> Result<Running> {
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let stdout = work.join(format!("{tag}.out"));
    let stderr = work.join(format!("{tag}.err"));
    let trace = work.join(format!("{tag}.trace"));
    let _ = std::fs::remove_file(&trace);
    cmd.env(COMMIT_TRACE, &trace)
        .env_remove(INDEX_FAULT)
        .stdin(Stdio::null())
        .stdout(file_for(&stdout)?)
        .stderr(file_for(&stderr)?);
    if let Some(f) = &opts.write_fault {
        cmd.env(INDEX_FAULT, f);
    }
    if let Some(limit) = opts.file_size_limit {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec (signal, setrlimit; the
        // closure captures one integer and allocates nothing, and an OS error is built without
        // allocating). An ignored signal stays ignored across exec, so the child's oversized
        // writes fail with EFBIG instead of killing it with SIGXFSZ.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    Ok(Running {
        child,
        started: Instant::now(),
        stdout,
        stderr,
        trace,
    })
}

fn file_for(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

impl Running {
    /// SIGKILLs the process (if it still runs) and collects what it left.
    pub fn kill(mut self) -> Result<Ended> {
        let _ = self.child.kill();
        self.wait()
    }

    pub fn wait(mut self) -> Result<Ended> {
        let status = self.child.wait().context("waiting for a child pagesight")?;
        let wall = self.started.elapsed();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let survivors = survivors(&self.trace, Duration::from_secs(2));
        for &pid in &survivors {
            sigkill(pid);
        }
        Ok(Ended {
            survivors,
            status,
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
            trace: Trace::read(&self.trace)?,
            wall,
        })
    }

    /// Whether it has exited (without reaping it).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Render worker processes of this ingest (`__render-worker` children), found through /proc.
    pub fn render_workers(&self) -> Vec<u32> {
        child_processes(self.child.id(), "__render-worker")
    }
}

/// Processes whose parent is `parent` and whose command line contains `arg`.
pub fn child_processes(parent: u32, arg: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Processes still alive that a run started (its render workers, …), found by the commit-trace
/// path every process of the run inherits in its environment. After the run is killed they
/// must go too; waits up to `grace` for them to exit.
pub fn survivors(trace: &Path, grace: Duration) -> Vec<u32> {
    let needle = format!("{COMMIT_TRACE}={}", trace.display());
    let deadline = Instant::now() + grace;
    loop {
        let alive: Vec<u32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // A zombie has exited; only its parent's reaping is left.
                let zombie = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
                !zombie && env.split(|&b| b == 0).any(|v| v == needle.as_bytes())
            })
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGKILL to a process this harness's child started.
pub fn sigkill(pid: u32) -> bool {
    // SAFETY: kill takes no pointers and touches no memory of ours; the pid is one we found as
    // our child's child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}

/// One line of the commit trace (`index::hooks`).
#[derive(Clone, Debug, PartialEq)]
pub enum TraceLine {
    Begin { generation: u64, pages: u64 },
    Step(String),
    End { generation: u64, pages: u64 },
}

/// What a process's commit trace says about where it was.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub lines: Vec<TraceLine>,
}

/// A committed state: (generation, live pages).
pub type State = (u64, u64);

/// Where in the commit protocol a kill landed, from the trace it left.
#[derive(Clone, Debug, PartialEq)]
pub enum KillPoint {
    /// No commit had started (model loading, discovery, the first pages).
    BeforeFirstCommit,
    /// Between commits (rendering, embedding, buffering pages).
    BetweenCommits,
    /// Inside the commit to `to`, during `step` (`None`: before its first step).
    InCommit {
        from: Option<State>,
        to: State,
        step: Option<String>,
    },
}

impl KillPoint {
    /// The step wrote durable data: our fsyncs, or tantivy's commit (which fsyncs its files).
    pub fn in_fsync(&self) -> bool {
        matches!(self, KillPoint::InCommit { step: Some(s), .. }
            if s.starts_with("fsync") || s.starts_with("commit text"))
    }
}

impl Trace {
    pub fn read(path: &Path) -> Result<Trace> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => bail!("cannot read commit trace {}: {e}", path.display()),
        };
        let mut lines = Vec::new();
        for l in text.lines() {
            let mut w = l.split(' ');
            let kind = w.next().unwrap_or_default();
            let mut num = || w.next().and_then(|s| s.parse::<u64>().ok());
            lines.push(match kind {
                "commit-begin" | "commit-end" => {
                    let (Some(generation), Some(pages)) = (num(), num()) else {
                        bail!("commit trace {}: bad line {l:?}", path.display());
                    };
                    if kind == "commit-begin" {
                        TraceLine::Begin { generation, pages }
                    } else {
                        TraceLine::End { generation, pages }
                    }
                }
                "step" => TraceLine::Step(l["step ".len()..].to_string()),
                _ => bail!("commit trace {}: bad line {l:?}", path.display()),
            });
        }
        Ok(Trace { lines })
    }

    /// The last commit that finished.
    pub fn last_end(&self) -> Option<State> {
        self.lines.iter().rev().find_map(|l| match l {
            TraceLine::End { generation, pages } => Some((*generation, *pages)),
            _ => None,
        })
    }

    pub fn commits_ended(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l, TraceLine::End { .. }))
            .count()
    }

    /// Every state a commit of this run made (or was making) visible.
    pub fn states(&self) -> Vec<State> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                TraceLine::Begin { generation, pages } | TraceLine::End { generation, pages } => {
                    Some((*generation, *pages))
                }
                TraceLine::Step(_) => None,
            })
            .collect()
    }

    pub fn kill_point(&self) -> KillPoint {
        let from = self.last_end();
        let open = self
            .lines
            .iter()
            .rposition(|l| matches!(l, TraceLine::Begin { .. }))
            .filter(|&b| {
                !self.lines[b..]
                    .iter()
                    .any(|l| matches!(l, TraceLine::End { .. }))
            });
        match open {
            Some(b) => {
                let TraceLine::Begin { generation, pages } = self.lines[b] else {
                    unreachable!("found as a Begin line")
                };
                let step = self.lines[b..].iter().rev().find_map(|l| match l {
                    TraceLine::Step(s) => Some(s.clone()),
                    _ => None,
                });
                KillPoint::InCommit {
                    from,
                    to: (generation, pages),
                    step,
                }
            }
            None if from.is_none() => KillPoint::BeforeFirstCommit,
            None => KillPoint::BetweenCommits,
        }
    }

    /// The states the index may be in after a kill at this point: the last finished commit,
    /// or, once the manifest rename has started, the one in flight.
    pub fn allowed_after_kill(&self) -> Vec<Option<State>> {
        match self.kill_point() {
            KillPoint::InCommit { from, to, step } => {
                let steps: Vec<&str> = self
                    .lines
                    .iter()
                    .rev()
                    .take_while(|l| !matches!(l, TraceLine::Begin { .. }))
                    .filter_map(|l| match l {
                        TraceLine::Step(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                let renaming = step.as_deref() == Some("rename MANIFEST");
                let renamed = steps.contains(&"fsync index dir");
                if renamed {
                    vec![Some(to)]
                } else if renaming {
                    vec![from, Some(to)]
                } else {
                    vec![from]
                }
            }
            _ => vec![self.last_end()],
        }
    }
}
