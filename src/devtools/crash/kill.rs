//! SIGKILL trials: `pagesight ingest` killed at moments drawn uniformly over an uninterrupted
//! ingest, each from an empty index; after each kill the index is checked against the commit
//! trace, then resumed to completion and compared with the uninterrupted run.

use super::check::{compare_with_reference, differing_pages, inspect, Inspection};
use super::child::{IngestSpec, KillPoint, RunOpts, State};
use anyhow::Result;
use pagesight_index::synthetic::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The uninterrupted run every trial is compared with.
pub struct Reference {
    pub dir: PathBuf,
    pub inspection: Inspection,
    pub wall: Duration,
    pub commits: usize,
}

impl Reference {
    pub fn build(spec: &IngestSpec, work: &Path) -> Result<Reference> {
        let dir = work.join("reference");
        let _ = std::fs::remove_dir_all(&dir);
        let ended = spec.run(&dir, work, "reference", &RunOpts::default())?;
        if !ended.status.success() {
            anyhow::bail!("the uninterrupted ingest failed: {}", ended.stderr.trim());
        }
        let inspection = inspect(&dir)?;
        if !inspection.problems.is_empty() {
            anyhow::bail!(
                "the uninterrupted index is not clean: {:?}",
                inspection.problems
            );
        }
        Ok(Reference {
            dir,
            inspection,
            wall: ended.wall,
            commits: ended.trace.commits_ended(),
        })
    }
}

impl Reference {
    /// Runs the ingest into `dir` (left by a kill or a failure) to its end and compares the
    /// index with this uninterrupted run. The problems found, each tagged `tag, what`; empty
    /// when it ended equal.
    pub fn finish_and_compare(
        &self,
        spec: &IngestSpec,
        dir: &Path,
        work: &Path,
        what: &str,
        tag: &str,
    ) -> Result<Vec<String>> {
        let ended = spec.run(dir, work, "finish", &RunOpts::default())?;
        if !ended.status.success() {
            return Ok(vec![format!(
                "{tag}, {what}: failed: {}",
                ended.stderr.trim()
            )]);
        }
        Ok(compare_with_reference(dir, &self.dir, &self.inspection)?
            .into_iter()
            .map(|p| format!("{tag}, {what}: {p}"))
            .collect())
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KillFigures {
    pub trials: usize,
    /// Kills in all (trials whose recovering run was killed too count twice).
    pub kills: usize,
    /// Trials whose first resume was killed as well before the final resume.
    pub recoveries_killed: usize,
    pub uninterrupted_secs: f64,
    pub commits_in_uninterrupted_run: usize,
    pub pages: usize,
    /// Killed before any commit started (model load, discovery, first pages).
    pub before_first_commit: usize,
    pub between_commits: usize,
    /// Killed between `commit-begin` and `commit-end`.
    pub inside_commit: usize,
    /// Of those, inside an fsync (ours, or tantivy's commit).
    pub inside_fsync: usize,
    /// Draws that came after the process had finished (drawn again; not trials, not kills).
    pub finished_before_kill: usize,
    /// Kills per commit step they landed in.
    pub by_step: BTreeMap<String, usize>,
    /// Reopens that had to rebuild the text index (killed between the tantivy and manifest commits).
    pub text_rebuilt_on_open: usize,
    /// Pages committed before the kill and missing after it, summed over trials.
    pub pages_lost: u64,
    pub duplicates: u64,
    /// Resumed runs that ended equal to the uninterrupted one (pages, vectors, search results).
    pub resumed_equal: usize,
    pub problems: Vec<String>,
}

/// Runs `trials` kill trials (seeded).
pub fn kill_trials(
    spec: &IngestSpec,
    work: &Path,
    reference: &Reference,
    trials: usize,
    seed: u64,
) -> Result<KillFigures> {
    let mut f = KillFigures {
        trials,
        uninterrupted_secs: reference.wall.as_secs_f64(),
        commits_in_uninterrupted_run: reference.commits,
        pages: reference.inspection.pages.len(),
        ..Default::default()
    };
    let mut rng = Rng::new(seed);
    let dir = work.join("killed");
    // The ingest's length moves with the machine's load (CI runs tests side by side): a run
    // that finishes before its kill is an uninterrupted run measured now, and sets the window
    // the next moments are drawn from. Such a draw is not a trial and is drawn again.
    let mut window = reference.wall;
    let (mut trial, mut draws) = (0, 0);
    while trial < trials && draws < 3 * trials {
        draws += 1;
        let _ = std::fs::remove_dir_all(&dir);
        let at = window.mul_f64(rng.uniform() as f64);
        let tag = format!("trial {trial} (kill at {} ms)", at.as_millis());
        if let Some(wall) = kill_and_check(&mut f, spec, work, reference, &dir, at, &tag)? {
            window = wall;
            continue;
        }
        // Every 4th trial kills the recovering run too: a kill while open cleans up or rebuilds
        // after the first one.
        if trial % 4 == 3 {
            let again = window.mul_f64(rng.uniform() as f64);
            let tag = format!("{tag}, recovery killed at {} ms", again.as_millis());
            let finished = kill_and_check(&mut f, spec, work, reference, &dir, again, &tag)?;
            f.recoveries_killed += usize::from(finished.is_none());
        }
        trial += 1;
        let diff = reference.finish_and_compare(spec, &dir, work, "resumed", &tag)?;
        f.resumed_equal += usize::from(diff.is_empty());
        f.problems.extend(diff);
    }
    f.trials = trial;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(f)
}

/// One ingest into `dir` (empty or left by an earlier kill), SIGKILLed `at` after its start;
/// the index it leaves must hold exactly a state its commit trace allows. Returns the run's
/// wall time when it finished before the kill came.
fn kill_and_check(
    f: &mut KillFigures,
    spec: &IngestSpec,
    work: &Path,
    reference: &Reference,
    dir: &Path,
    at: Duration,
    tag: &str,
) -> Result<Option<Duration>> {
    let before = inspect(dir)?.state;
    let run = spec.spawn(dir, work, "kill", &RunOpts::default())?;
    std::thread::sleep(at.saturating_sub(run.started.elapsed()));
    let ended = run.kill()?;
    let finished = ended.status.code().is_some();
    f.kills += usize::from(!finished);
    if !ended.survivors.is_empty() {
        f.problems.push(format!(
            "{tag}: processes {:?} of the killed ingest outlived it",
            ended.survivors
        ));
    }
    if finished && !ended.status.success() {
        f.problems.push(format!(
            "{tag}: ingest failed on its own: {}",
            ended.stderr.trim()
        ));
    }
    let point = ended.trace.kill_point();
    // Before this run's first commit the index holds what the last run left.
    let or_before = |s: Option<State>| s.or(before);
    let allowed: Vec<Option<State>> = if finished {
        f.finished_before_kill += 1;
        vec![or_before(ended.trace.last_end())]
    } else {
        classify(f, &point);
        ended
            .trace
            .allowed_after_kill()
            .into_iter()
            .map(or_before)
            .collect()
    };
    let got = inspect(dir)?;
    f.text_rebuilt_on_open += usize::from(!got.warnings.is_empty());
    f.problems
        .extend(got.problems.iter().map(|p| format!("{tag}: {p}")));
    if !allowed.contains(&got.state) {
        f.problems.push(format!(
            "{tag}: index holds (generation, pages) {:?}, the trace allows {allowed:?} ({point:?})",
            got.state
        ));
    }
    let committed_before = or_before(ended.trace.last_end()).map_or(0, |s| s.1);
    let present = got.pages.len() as u64;
    f.pages_lost += committed_before.saturating_sub(present);
    f.duplicates += got.duplicates;
    f.problems.extend(
        differing_pages(&got, &reference.inspection)
            .into_iter()
            .map(|p| format!("{tag}: {p}")),
    );
    Ok(finished.then_some(ended.wall))
}

fn classify(f: &mut KillFigures, point: &KillPoint) {
    match point {
        KillPoint::BeforeFirstCommit => f.before_first_commit += 1,
        KillPoint::BetweenCommits => f.between_commits += 1,
        KillPoint::InCommit { step, .. } => {
            f.inside_commit += 1;
            f.inside_fsync += usize::from(point.in_fsync());
            let s = step
                .clone()
                .unwrap_or_else(|| "(before the first step)".into());
            *f.by_step.entry(s).or_default() += 1;
        }
    }
}
