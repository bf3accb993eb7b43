//! The autopilot's bookkeeping: which phase each frame belongs to, the frame times per phase (the
//! app's own `FrameStats` samples, one per frame), and the report — p50 / p90 / p99 / max and the
//! frame count per phase and over all frames — as a table and as JSON.

use crate::ui::FrameStats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The frame time the app must stay under at p99 in every phase.
pub const GOAL_P99_MS: f64 = 8.0;

/// What the scenario is doing while a frame is drawn, in the order it does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The window open, nothing running.
    Idle,
    /// The ingest the user started (new PDFs land in the watched folder meanwhile).
    Ingest,
    /// The watch's events and the ingests it queues, until the new files are indexed.
    Watch,
    /// A model download from the hub.
    Download,
    /// Searches, their thumbnails and a result's large view.
    Search,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Idle,
        Phase::Ingest,
        Phase::Watch,
        Phase::Download,
        Phase::Search,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Ingest => "ingest",
            Phase::Watch => "watch",
            Phase::Download => "download",
            Phase::Search => "search",
        }
    }

    /// The phase after this one; None after the last.
    pub fn next(self) -> Option<Phase> {
        let at = Phase::ALL.iter().position(|&p| p == self)?;
        Phase::ALL.get(at + 1).copied()
    }
}

/// One frame's sample, kept for the list of the slowest frames.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameSample {
    pub phase: Phase,
    /// The view shown ("ingest", "search", "performance").
    pub view: String,
    /// Seconds since the scenario began.
    pub at_secs: f64,
    pub ms: f64,
}

/// One row of the report: a phase, or `all`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRow {
    pub phase: String,
    pub frames: usize,
    /// Wall time spent in the phase.
    pub secs: f64,
    /// Frames drawn per second of it (below the rate asked when painting — tessellation and the
    /// rasteriser, outside `ui()` — or the machine's load takes longer).
    pub fps: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl PhaseRow {
    fn of(phase: &str, stats: &FrameStats, secs: f64) -> PhaseRow {
        PhaseRow {
            phase: phase.to_string(),
            frames: stats.len(),
            secs,
            fps: if secs > 0.0 {
                stats.len() as f64 / secs
            } else {
                0.0
            },
            p50_ms: stats.quantile_ms(0.5),
            p90_ms: stats.quantile_ms(0.9),
            p99_ms: stats.quantile_ms(0.99),
            max_ms: stats.max_ms(),
        }
    }

    /// Whether the phase met the goal (a phase without frames did not).
    pub fn meets_goal(&self) -> bool {
        self.p99_ms.is_some_and(|p| p < GOAL_P99_MS)
    }
}

/// The frame times of one scenario run, by phase.
#[derive(Clone, Debug, Default)]
pub struct PhaseFrames {
    by_phase: BTreeMap<Phase, FrameStats>,
    secs: BTreeMap<Phase, f64>,
    all: Option<FrameStats>,
    samples: Vec<FrameSample>,
}

impl PhaseFrames {
    /// Records one frame of `phase`.
    pub fn record(&mut self, phase: Phase, view: &str, at: Duration, frame: Duration) {
        self.by_phase
            .entry(phase)
            .or_insert_with(FrameStats::unbounded)
            .record(frame);
        self.all
            .get_or_insert_with(FrameStats::unbounded)
            .record(frame);
        self.samples.push(FrameSample {
            phase,
            view: view.to_string(),
            at_secs: at.as_secs_f64(),
            ms: frame.as_secs_f64() * 1e3,
        });
    }

    /// Adds wall time spent in `phase`.
    pub fn add_time(&mut self, phase: Phase, d: Duration) {
        *self.secs.entry(phase).or_default() += d.as_secs_f64();
    }

    pub fn frames(&self, phase: Phase) -> usize {
        self.by_phase.get(&phase).map_or(0, FrameStats::len)
    }

    pub fn total_frames(&self) -> usize {
        self.all.as_ref().map_or(0, FrameStats::len)
    }

    /// One row per phase, in order, then `all`.
    pub fn rows(&self) -> Vec<PhaseRow> {
        let empty = FrameStats::default();
        let mut rows: Vec<PhaseRow> = Phase::ALL
            .iter()
            .map(|p| {
                PhaseRow::of(
                    p.name(),
                    self.by_phase.get(p).unwrap_or(&empty),
                    self.secs.get(p).copied().unwrap_or(0.0),
                )
            })
            .collect();
        rows.push(PhaseRow::of(
            "all",
            self.all.as_ref().unwrap_or(&empty),
            self.secs.values().sum(),
        ));
        rows
    }

    /// The `n` slowest frames, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<FrameSample> {
        let mut v = self.samples.clone();
        v.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        v.truncate(n);
        v
    }
}

/// What a scenario run measured and what happened on the way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// idle, ingest, watch, download, search, then all.
    pub phases: Vec<PhaseRow>,
    /// The p99 every phase must stay under.
    pub goal_p99_ms: f64,
    /// Every phase had frames and its p99 was under the goal.
    pub goal_met: bool,
    /// Every phase reached its end (none timed out or failed).
    pub completed: bool,
    /// The slowest frames, slowest first, with their phase and view.
    pub slowest_frames: Vec<FrameSample>,
    /// Files and pages in the index at the end.
    pub files_indexed: Option<u64>,
    pub pages_indexed: Option<u64>,
    /// Searches answered.
    pub searches: usize,
    /// Bytes the download fetched.
    pub download_bytes: Option<u64>,
    /// What happened on the way (a phase that timed out, the CPU estimate answered, …).
    pub notes: Vec<String>,
    /// The OpenGL renderer that painted the frames (under Xvfb: Mesa's llvmpipe, on the CPU).
    #[serde(default)]
    pub renderer: Option<String>,
}

impl ScenarioReport {
    pub fn new(frames: &PhaseFrames, completed: bool, notes: Vec<String>) -> ScenarioReport {
        let phases = frames.rows();
        let goal_met = phases.iter().all(PhaseRow::meets_goal);
        ScenarioReport {
            phases,
            goal_p99_ms: GOAL_P99_MS,
            goal_met,
            completed,
            slowest_frames: frames.slowest(10),
            files_indexed: None,
            pages_indexed: None,
            searches: 0,
            download_bytes: None,
            notes,
            renderer: None,
        }
    }

    pub fn row(&self, phase: &str) -> Option<&PhaseRow> {
        self.phases.iter().find(|r| r.phase == phase)
    }

    /// The phases whose p99 reached the goal (or that had no frames).
    pub fn phases_missing_goal(&self) -> Vec<&str> {
        self.phases
            .iter()
            .filter(|r| !r.meets_goal())
            .map(|r| r.phase.as_str())
            .collect()
    }

    /// The report as a table: one row per phase and `all`, then the goal's verdict.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
        let mut out = format!(
            "{:<10} {:>7} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8}\n",
            "phase", "frames", "secs", "fps", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for r in &self.phases {
            out += &format!(
                "{:<10} {:>7} {:>8.1} {:>6.1} {:>8} {:>8} {:>8} {:>8}\n",
                r.phase,
                r.frames,
                r.secs,
                r.fps,
                ms(r.p50_ms),
                ms(r.p90_ms),
                ms(r.p99_ms),
                ms(r.max_ms)
            );
        }
        let missing = self.phases_missing_goal();
        out += &if missing.is_empty() {
            format!("goal p99 < {} ms in every phase: met\n", self.goal_p99_ms)
        } else {
            format!(
                "goal p99 < {} ms in every phase: MISSED in {}\n",
                self.goal_p99_ms,
                missing.join(", ")
            )
        };
        out
    }
}
