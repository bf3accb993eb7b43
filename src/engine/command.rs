//! Commands into the engine thread. The GUI, the CLI and the benchmarks only ever talk to the
//! engine through these (and read `Event`s back); nothing else crosses the boundary.

use super::settings::{IngestSettings, LiveSettings};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which scorer ranks pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// ColQwen2.5 multi-vector MaxSim.
    #[default]
    Visual,
    /// BM25 over the page text layer.
    Text,
    /// Reciprocal-rank fusion of both.
    Hybrid,
}

impl SearchMode {
    pub const ALL: [SearchMode; 3] = [SearchMode::Visual, SearchMode::Text, SearchMode::Hybrid];
    pub fn name(self) -> &'static str {
        match self {
            SearchMode::Visual => "visual",
            SearchMode::Text => "text",
            SearchMode::Hybrid => "hybrid",
        }
    }
}

impl std::str::FromStr for SearchMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        SearchMode::ALL
            .into_iter()
            .find(|m| m.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                anyhow::anyhow!("unknown search mode '{s}': expected visual, text or hybrid")
            })
    }
}

/// How visual MaxSim is computed: exactly over every page, or a sign-bit (Hamming) prefilter
/// whose best `candidates` pages are rescored exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VisualScorer {
    #[default]
    Exact,
    Binary {
        candidates: usize,
    },
}

impl VisualScorer {
    /// The scorer for a corpus of `pages`: a binary one with no count named takes the index's
    /// default for so many pages (`Scorer::binary_for_pages`).
    pub fn for_pages(self, pages: usize) -> pagesight_index::Scorer {
        match self {
            VisualScorer::Exact => pagesight_index::Scorer::Exact,
            VisualScorer::Binary { candidates: 0 } => {
                pagesight_index::Scorer::binary_for_pages(pages)
            }
            VisualScorer::Binary { candidates } => pagesight_index::Scorer::Binary { candidates },
        }
    }
}

impl std::str::FromStr for VisualScorer {
    type Err = anyhow::Error;
    /// `exact`, `binary` (the index's default candidate count) or `binary:N`.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || {
            anyhow::anyhow!(
                "unknown scorer '{s}': expected exact, binary or binary:N (N candidates rescored exactly)"
            )
        };
        match s.split_once(':') {
            None if s == "exact" => Ok(VisualScorer::Exact),
            None if s == "binary" => Ok(VisualScorer::Binary { candidates: 0 }),
            Some(("binary", n)) => match n.parse::<usize>() {
                Ok(c) if c > 0 => Ok(VisualScorer::Binary { candidates: c }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Where visual scoring runs: the local index, or a Qdrant collection the index was exported to
/// (`pagesight export qdrant`); the query is embedded locally either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackend {
    #[default]
    Local,
    Qdrant {
        address: pagesight_qdrant::CollectionAddress,
        api_key: Option<String>,
    },
}

impl SearchBackend {
    /// `local`, or the collection as `qdrant://host:port/collection` (`qdrants://` for TLS).
    pub fn describe(&self) -> String {
        match self {
            SearchBackend::Local => "local".into(),
            SearchBackend::Qdrant { address, .. } => address.backend_string(),
        }
    }
}

impl std::str::FromStr for SearchBackend {
    type Err = anyhow::Error;
    /// `local` or `qdrant://host:port/collection` (the API key is given separately).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("local") {
            return Ok(SearchBackend::Local);
        }
        let address = pagesight_qdrant::CollectionAddress::parse_backend(s)
            .map_err(|e| anyhow::anyhow!("unknown backend: {e}; or 'local'"))?;
        Ok(SearchBackend::Qdrant {
            address,
            api_key: None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Echoed in `Event::SearchResults` so callers can match answers to questions.
    pub id: u64,
    pub index: PathBuf,
    pub query: String,
    pub top_k: usize,
    pub mode: SearchMode,
    /// Weight of the visual ranking in hybrid fusion (text gets 1 − w).
    pub hybrid_visual_weight: f32,
    /// Also compute per-patch similarity maps for the results (for heatmaps).
    pub with_heatmaps: bool,
    /// Where the query model (and with it MaxSim) runs: `auto` is the GPU when there is one.
    #[serde(default)]
    pub device: super::settings::DeviceChoice,
    /// The devices the index's page tiles may be sharded over (`cuda:all`, `cuda:0,1`, `cpu,cpu`);
    /// `device` is the first of them. None (one device): the tiles stay on `device`.
    #[serde(default)]
    pub devices: Option<super::settings::DeviceSet>,
    /// Exact MaxSim, or the binary prefilter + exact rerank (`candidates` 0: the default count).
    #[serde(default)]
    pub visual_scorer: VisualScorer,
    /// Where visual scoring runs. With Qdrant, `index` is the local index whose text the text
    /// and hybrid modes use; it may be empty for a visual search.
    #[serde(default)]
    pub backend: SearchBackend,
}

impl SearchRequest {
    /// Searches on `set`: the query model on its first device; a list or `cuda:all` shards the
    /// page tiles over its devices (`engine::tile_shards`).
    pub fn set_devices(&mut self, set: &super::settings::DeviceSet) {
        self.device = set.primary();
        self.devices = match set {
            super::settings::DeviceSet::One(_) => None,
            several => Some(several.clone()),
        };
    }
}

/// One side of an A/B comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbSide {
    pub label: String,
    pub settings: IngestSettings,
}

// A few commands are sent per user action, so the A/B variant's size costs nothing; boxing it
// would change every place that builds or matches it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Ingest every PDF under `folder` into the index at `index` (created if missing).
    StartIngest {
        folder: PathBuf,
        index: PathBuf,
        settings: IngestSettings,
    },
    /// Stop taking new batches; what is in flight finishes.
    Pause,
    Resume,
    /// Stop the run; everything committed stays committed.
    Cancel,
    /// Change batch size / transfer mode; applied between batches.
    UpdateLive(LiveSettings),
    /// Run the same pages under two settings; vectors are not written to any index.
    AbCompare {
        folder: PathBuf,
        pages: usize,
        a: AbSide,
        b: AbSide,
    },
    Search(SearchRequest),
    /// Render a page thumbnail (off the UI thread).
    Thumbnail {
        id: u64,
        file: PathBuf,
        page: u32,
        max_side: u32,
    },
    /// Read index statistics.
    Stats {
        index: PathBuf,
    },
    /// Report the compute device, VRAM and driver.
    DeviceInfo,
    /// Is this model (a hub id, a folder or `random:*`; with its adapter) on disk? Answered by
    /// `Event::ModelStatus` from the cache alone, then again with the download size from the hub
    /// when it is not.
    CheckModel {
        model: String,
        adapter: Option<String>,
    },
    /// Download the model's hub repos (base and adapter) into the Hugging Face cache, resuming
    /// what an earlier download left: `DownloadProgress` events, then `DownloadFinished` or
    /// `DownloadFailed`.
    DownloadModel {
        model: String,
        adapter: Option<String>,
    },
    /// Stop the download (its partial files stay for the next one).
    CancelDownload,
    /// Finish and end the engine thread.
    Shutdown,
}
