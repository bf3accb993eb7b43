//! Events out of the engine thread. `--json` prints each as one line wrapped in an `EventEnvelope`
//! that carries `SCHEMA_VERSION`, so recorded runs can be read back by later versions.

use super::settings::{IngestSettings, TransferMode};
use super::stage::StageTimes;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Version of the JSON shape of events and benchmark results. Bump on incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileStatus {
    Queued,
    InProgress {
        pages_done: u32,
        pages_total: u32,
    },
    Done {
        pages: u32,
    },
    /// `page` is 1-based when the failure belongs to one page.
    Failed {
        page: Option<u32>,
        reason: String,
    },
    SkippedUnchanged {
        pages: u32,
    },
    /// Same content as another file of this run: its pages are indexed once, under `of`.
    Duplicate {
        of: PathBuf,
    },
    /// Removed from the index because it vanished from the folder (`--prune`).
    Removed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub pages_done: u64,
    /// Known once every file's page count is known; until then an estimate.
    pub pages_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub pages_per_sec: f64,
    pub eta_secs: Option<f64>,
}

/// One GPU sample from NVML; absent when there is no GPU or no NVML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    pub utilisation: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub pcie_tx_bytes_per_sec: Option<f64>,
    pub pcie_rx_bytes_per_sec: Option<f64>,
}

/// One card's NVML sample in a metrics tick: `ordinal` is CUDA's (`cuda:N`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardSample {
    pub ordinal: usize,
    pub sample: GpuSample,
}

/// Sent ~4× per second while pages flow. Definitions match the bench JSON:
/// `gpu_busy` = fraction of wall time the compute stream had work queued (CUDA events);
/// `copy_critical_secs` = time the compute stream waited for a copy; `stages` add up to wall time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Seconds since the run started.
    pub t: f64,
    pub pages_per_sec: f64,
    pub h2d_bytes_per_sec: f64,
    pub h2d_secs: f64,
    pub copy_critical_secs: f64,
    pub gpu_busy: Option<f64>,
    pub transfer: TransferMode,
    pub batch_size: usize,
    /// Stage times over the interval since the previous metrics event.
    pub stages: StageTimes,
    /// The first card of the run (the primary device's); with several cards see `gpus`.
    pub gpu: Option<GpuSample>,
    /// Why GPU numbers are missing, when they are.
    pub gpu_unavailable: Option<String>,
    /// Each card the run computes on, one sample per distinct CUDA ordinal (empty on the CPU,
    /// and in files recorded before the run sampled each card).
    #[serde(default)]
    pub gpus: Vec<CardSample>,
    /// Each model replica so far, in a multi-device run (empty with one device).
    #[serde(default)]
    pub replicas: Vec<ReplicaSummary>,
}

/// What one model replica of a multi-device run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSummary {
    /// Its place in the device list (0 = the first device).
    pub replica: usize,
    pub device: String,
    pub pages: u64,
    pub batches: u64,
    /// Its pages over the run's wall time so far: the replicas' figures add up to the run's.
    pub pages_per_sec: f64,
    /// Seconds it spent in its batches (the rest it waited for work), on its own clock.
    pub busy_secs: f64,
    /// Its host-to-device bytes over its copy time (0 when nothing was copied).
    pub h2d_bytes_per_sec: f64,
    /// Its own stage times (staging, copies and compute on its thread; waiting for work as
    /// `render`).
    pub stages: StageTimes,
    /// Its card's latest NVML sample (utilisation, memory used / total, PCIe rates); None on
    /// the CPU, without NVML, and in files recorded before the run sampled each card. Replicas
    /// that share a card show the same sample.
    #[serde(default)]
    pub gpu: Option<GpuSample>,
    /// Why it was dropped mid-run (its unfinished pages went to the others); None: it ran to
    /// the end.
    pub failed: Option<String>,
}

impl ReplicaSummary {
    /// One line for a terminal: the replica, its device, pages, pages/s, busy share, H2D.
    pub fn describe(&self, wall_secs: f64) -> String {
        let h2d = if self.h2d_bytes_per_sec > 0.0 {
            format!(", H2D {:.1} GB/s", self.h2d_bytes_per_sec / 1e9)
        } else {
            String::new()
        };
        let card = self
            .gpu
            .as_ref()
            .map(|g| format!(", {}", super::replica_figures::card_text(g)))
            .unwrap_or_default();
        let failed = match &self.failed {
            Some(e) => format!(", dropped: {e}"),
            None => String::new(),
        };
        format!(
            "replica {} ({}): {} pages in {} batches, {:.2} pages/s, busy {:.0}%{h2d}{card}{failed}",
            self.replica,
            self.device,
            self.pages,
            self.batches,
            self.pages_per_sec,
            100.0 * self.busy_secs / wall_secs.max(1e-9)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub status: FileStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestSummary {
    pub pages_ingested: u64,
    pub files_done: u64,
    pub files_failed: u64,
    pub files_skipped: u64,
    pub files_removed: u64,
    pub wall_secs: f64,
    pub pages_per_sec: f64,
    pub stages: StageTimes,
    pub cancelled: bool,
    /// Every file that failed, with its reason.
    pub failures: Vec<FileReport>,
    /// Each model replica, in a multi-device run (empty with one device).
    #[serde(default)]
    pub replicas: Vec<ReplicaSummary>,
}

/// One ranked page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub rank: usize,
    pub score: f32,
    pub file: PathBuf,
    /// 1-based page number.
    pub page: u32,
    pub title: Option<String>,
    /// Per-merged-patch similarity, row-major `grid_h × grid_w` (when heatmaps were asked for).
    pub heatmap: Option<Heatmap>,
    /// The page's text around the query's terms, the terms marked (None: the page has no text).
    #[serde(default)]
    pub snippet: Option<pagesight_index::Snippet>,
}

/// One search's time by step, in milliseconds; the steps add up to the search's `elapsed_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchTimings {
    /// Taking the index's last commit: a `stat` when it is open and unchanged; opening it (every
    /// segment checked) the first time, the new segments only after a commit.
    pub open_ms: f64,
    /// Loading the query model (only the first search with a model, or after a model change).
    pub model_load_ms: f64,
    /// Embedding the query.
    pub embed_ms: f64,
    /// Choosing the scorer; uploading the page tiles to the GPU after a commit.
    pub tiles_ms: f64,
    /// Scoring and ranking (MaxSim, BM25, fusion).
    pub score_ms: f64,
    /// Heatmaps (unless not asked for) and text snippets of the hits, and the answer's assembly.
    pub heatmap_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    pub grid_h: u32,
    pub grid_w: u32,
    pub values: Vec<f32>,
}

/// Whether a model is on disk, and what downloading it costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    pub model: String,
    pub adapter: Option<String>,
    /// Everything it needs is in the cache (or it is a folder / a random model).
    pub on_disk: bool,
    /// The hub repos not complete in the cache.
    pub missing: Vec<String>,
    /// Size of the missing repos, once the hub answered.
    pub total_bytes: Option<u64>,
    /// Of those, bytes already in the cache (whole files and kept partial ones).
    pub present_bytes: u64,
    /// Why the size is unknown (the hub could not be reached: what to copy where instead).
    pub size_note: Option<String>,
    /// The Hugging Face cache folder used.
    pub cache_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexStats {
    pub path: PathBuf,
    pub files: u64,
    pub pages: u64,
    pub vectors: u64,
    pub segments: u64,
    pub bytes_on_disk: u64,
    /// What made the vectors (model identity, quantisation, max visual tokens, query prompt).
    pub model: Option<String>,
    /// The same, field by field: what a run adding to this index must use.
    #[serde(default)]
    pub provenance: Option<pagesight_index::Provenance>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// e.g. "cpu" or "NVIDIA H100 80GB HBM3 (cuda:0)".
    pub name: String,
    pub cuda_built: bool,
    pub cuda_available: bool,
    pub vram_total_bytes: Option<u64>,
    pub vram_used_bytes: Option<u64>,
    pub driver: Option<String>,
    /// Why GPU features are unavailable, when they are.
    pub unavailable_reason: Option<String>,
    /// Each CUDA card of the machine (empty without CUDA; absent from older recordings).
    #[serde(default)]
    pub cards: Vec<CardInfo>,
}

/// One CUDA card as the driver lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardInfo {
    /// CUDA's ordinal: the N of `cuda:N`.
    pub ordinal: usize,
    pub name: String,
    pub memory_total_bytes: u64,
    /// Whether the card has FP8 tensor cores (compute capability 8.9 or later; absent from
    /// older recordings: no).
    #[serde(default)]
    pub fp8: bool,
}

/// Result of one side of an A/B comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbSideResult {
    pub label: String,
    pub settings: IngestSettings,
    pub pages: u64,
    pub wall_secs: f64,
    pub pages_per_sec: f64,
    pub copy_critical_secs: f64,
    pub gpu_busy: Option<f64>,
    /// Compute-stream idle between consecutive batches / span of the batches (device events).
    #[serde(default)]
    pub gpu_idle_between_batches: Option<f64>,
    pub stages: StageTimes,
    /// The metrics series, for overlaying the two runs.
    pub series: Vec<Metrics>,
    /// Each model replica, in a multi-device run (empty with one device).
    #[serde(default)]
    pub replicas: Vec<ReplicaSummary>,
}

// Events are few (per batch at most), so the A/B result variant's size costs nothing; boxing it
// would change every place that builds or matches it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    IngestStarted {
        folder: PathBuf,
        index: PathBuf,
        settings: IngestSettings,
        model_note: Option<String>,
    },
    /// Discovery finished: files found and how many are new, changed or unchanged.
    Discovered {
        files: u64,
        new_or_changed: u64,
        unchanged: u64,
    },
    FileStatus(FileReport),
    Progress(Progress),
    /// Per-batch wall time split into stages.
    BatchTimings {
        batch: u64,
        pages: usize,
        wall_secs: f64,
        stages: StageTimes,
    },
    Metrics(Metrics),
    /// The first GPU launch JIT-compiles kernels (slow while the driver's cache is cold); shown
    /// as its own stage so that time is not charged to the first batches.
    PreparingGpuKernels {
        done: bool,
        secs: f64,
    },
    Committed {
        pages_total: u64,
    },
    Paused,
    Resumed,
    LiveSettingsApplied(super::settings::LiveSettings),
    IngestFinished(IngestSummary),
    AbSideFinished(AbSideResult),
    AbFinished {
        a: AbSideResult,
        b: AbSideResult,
    },
    SearchResults {
        id: u64,
        query: String,
        hits: Vec<SearchHit>,
        elapsed_ms: f64,
        note: Option<String>,
        /// What computed the ranking (e.g. "GPU, fused MaxSim kernel (…)", "CPU exact MaxSim (…)").
        #[serde(default)]
        scorer: String,
        /// Where `elapsed_ms` went.
        #[serde(default)]
        timings: SearchTimings,
        /// Vectors of the embedded query (0 for a text search): what the visual scoring cost
        /// scales with.
        #[serde(default)]
        query_tokens: usize,
    },
    Thumbnail {
        id: u64,
        file: PathBuf,
        page: u32,
        width: u32,
        height: u32,
        rgba: Arc<Vec<u8>>,
    },
    Stats(IndexStats),
    Device(DeviceInfo),
    /// The answer to `CheckModel`.
    ModelStatus(ModelStatus),
    DownloadProgress(pagesight_model::hub::DownloadProgress),
    DownloadFinished {
        model: String,
        adapter: Option<String>,
    },
    /// `message` says what to do (offline: what to copy where; disk full: how much to free).
    DownloadFailed {
        model: String,
        adapter: Option<String>,
        message: String,
        /// Stopped by `CancelDownload`: the partial files are kept for a resume.
        cancelled: bool,
    },
    /// Something the user should know that is not an error (e.g. random weights: rankings meaningless).
    Notice {
        message: String,
    },
    /// `context` names what failed (a file, the index, the model); `message` says what to do.
    Error {
        context: String,
        message: String,
        request_id: Option<u64>,
    },
}

/// The JSON line form of an event.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub schema: u32,
    #[serde(flatten)]
    pub event: Event,
}

impl EventEnvelope {
    pub fn json_line(event: &Event) -> String {
        #[derive(Serialize)]
        struct Ref<'a> {
            schema: u32,
            #[serde(flatten)]
            event: &'a Event,
        }
        serde_json::to_string(&Ref {
            schema: SCHEMA_VERSION,
            event,
        })
        .expect("events serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn envelope_roundtrip_carries_schema() {
        let ev = Event::FileStatus(FileReport {
            path: "a.pdf".into(),
            status: FileStatus::Failed {
                page: Some(3),
                reason: "truncated".into(),
            },
        });
        let line = EventEnvelope::json_line(&ev);
        assert!(line.contains("\"schema\":1"), "{line}");
        let back: EventEnvelope = serde_json::from_str(&line).unwrap();
        assert_eq!(back.schema, SCHEMA_VERSION);
        assert_eq!(back.event, ev);
    }
}
