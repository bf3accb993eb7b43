//! Render workers SIGKILLed during a real ingest: the ingest must finish, the file whose page
//! was rendering is reported failed with the reason (the loader replaces the worker but does not
//! retry the page), nothing else is lost, and the next ingest picks that file up again.

use super::check::inspect;
use super::child::{sigkill, IngestSpec, RunOpts};
use super::kill::Reference;
use anyhow::Result;
use pagesight_engine::event::{Event, EventEnvelope, FileStatus};
use pagesight_index::synthetic::Rng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RenderKillFigures {
    pub trials: usize,
    /// The killed worker was rendering: its file was reported failed.
    pub mid_render: usize,
    /// The killed worker was idle: it was replaced and nothing failed.
    pub idle: usize,
    /// Kill moments drawn after the workers had finished, drawn again earlier.
    pub redrawn: usize,
    /// Ingests that still finished (exit 0, summary printed).
    pub ingests_finished: usize,
    /// Pages of files other than the reported one that were missing.
    pub other_pages_lost: u64,
    /// Re-runs that picked the failed file up and ended equal to the uninterrupted run.
    pub reruns_equal: usize,
    /// The reasons reported, one per mid-render kill.
    pub reasons: Vec<String>,
    pub problems: Vec<String>,
}

/// The state letter of /proc/<pid>/stat ('R' running, 'S' sleeping, …).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Trial `i` runs with `setups[i % setups.len()]`: a render-heavy setup (workers nearly always
/// mid-page) and a light one (workers often idle, waiting on backpressure) cover both cases.
/// Every other pair of trials prefers a worker on the CPU (likeliest mid-page), the others a
/// sleeping one (likeliest idle); else any. Which it was is judged from what the ingest
/// reports, not from this guess.
fn pick_victim(workers: &[u32], trial: usize, rng: &mut Rng) -> Option<u32> {
    let want_running = trial % 4 < 2;
    workers
        .iter()
        .copied()
        .find(|&p| (proc_state(p) == Some('R')) == want_running)
        .or_else(|| {
            workers
                .get(rng.below(workers.len().max(1) as u64) as usize)
                .copied()
        })
}

pub fn render_kill_trials(
    setups: &[(IngestSpec, Reference)],
    work: &Path,
    trials: usize,
    seed: u64,
) -> Result<RenderKillFigures> {
    let mut f = RenderKillFigures {
        trials,
        ..Default::default()
    };
    let mut rng = Rng::new(seed ^ 0x5eed);
    let dir = work.join("render-killed");
    let json = RunOpts {
        json: true,
        ..Default::default()
    };
    for trial in 0..trials {
        let (spec, reference) = &setups[trial % setups.len().max(1)];
        let tag = format!("render trial {trial} (dpi {})", spec.dpi);
        // The workers live from model load until the last page is rendered, which under load
        // can end well before the ingest does: a moment drawn past it is drawn again, earlier.
        let mut killed = None;
        for attempt in 0..4 {
            let _ = std::fs::remove_dir_all(&dir);
            let mut run = spec.spawn(&dir, work, "render-kill", &json)?;
            let deadline = Instant::now() + Duration::from_secs(120);
            while run.render_workers().is_empty() && !run.exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let at = reference
                .wall
                .mul_f64(0.6 * rng.uniform() as f64 / f64::from(1 << attempt));
            std::thread::sleep(at);
            match pick_victim(&run.render_workers(), trial, &mut rng) {
                Some(victim) if sigkill(victim) => {
                    killed = Some((run, victim));
                    break;
                }
                _ => {
                    f.redrawn += 1;
                    let _ = run.kill();
                }
            }
        }
        let Some((run, victim)) = killed else {
            f.problems
                .push(format!("{tag}: no render worker alive at any drawn moment"));
            continue;
        };
        let ended = run.wait()?;
        let summary = ended.stdout.lines().find_map(|l| {
            match serde_json::from_str::<EventEnvelope>(l).ok()?.event {
                Event::IngestFinished(s) => Some(s),
                _ => None,
            }
        });
        let Some(summary) = summary.filter(|_| ended.status.success()) else {
            f.problems.push(format!(
                "{tag}: the ingest did not finish after worker {victim} was killed: {}",
                ended.stderr.trim()
            ));
            continue;
        };
        f.ingests_finished += 1;
        let failed: Vec<PathBuf> = summary.failures.iter().map(|r| r.path.clone()).collect();
        for r in &summary.failures {
            match &r.status {
                FileStatus::Failed { reason, .. } if reason.contains("render worker crashed") => {
                    f.reasons.push(reason.clone())
                }
                other => f.problems.push(format!(
                    "{tag}: {} failed unexpectedly: {other:?}",
                    r.path.display()
                )),
            }
        }
        if failed.len() > 1 {
            f.problems.push(format!(
                "{tag}: one worker killed, {} files failed",
                failed.len()
            ));
        }
        if failed.is_empty() {
            f.idle += 1;
        } else {
            f.mid_render += 1;
        }
        let got = inspect(&dir)?;
        f.problems
            .extend(got.problems.iter().map(|p| format!("{tag}: {p}")));
        // Every page of every file not reported failed is there.
        let failed_hashes: Vec<[u8; 32]> = pagesight_index::Index::open(&reference.dir)?
            .files()
            .into_iter()
            .filter(|(_, s)| failed.contains(&s.path))
            .map(|(h, _)| h)
            .collect();
        f.other_pages_lost += reference
            .inspection
            .pages
            .keys()
            .filter(|k| !failed_hashes.contains(&k.0) && !got.pages.contains_key(k))
            .count() as u64;
        let diff = reference.finish_and_compare(spec, &dir, work, "re-run", &tag)?;
        f.reruns_equal += usize::from(diff.is_empty());
        f.problems.extend(diff);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(f)
}
