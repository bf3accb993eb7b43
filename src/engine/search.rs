//! Searches run on their own thread: open the index's last commit, embed the query with the
//! model that made the index (loaded once and kept), score, and answer with the request's id.
//!
//! When that model runs on a GPU, MaxSim runs there too: the snapshot's page tiles are uploaded
//! once (`index::tensor_scorer`, the fused kernel) and kept until the index's next commit; an
//! index too big for the free VRAM, or a failed upload, is scored on the CPU and the answer says
//! why. Each answer names the scorer that ran.

use super::command::{SearchBackend, SearchMode, SearchRequest, VisualScorer};
use super::event::{Event, Heatmap, IndexStats, SearchHit, SearchTimings};
use super::open_indexes::OpenIndexes;
use super::settings::{DeviceChoice, ModelSettings};
use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use pagesight_index::search::{CpuExact, PageScorer, Searcher};
use pagesight_index::tensor_scorer::TensorScorer;
use pagesight_index::Provenance;
use pagesight_model::colqwen::ColQwen;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct SearchService {
    requests: Sender<SearchRequest>,
}

impl SearchService {
    pub fn spawn(events: Sender<Event>, indexes: OpenIndexes) -> SearchService {
        let mut state = SearchState::new(indexes);
        let requests = super::service::spawn("pagesight-search", events, move |req| {
            search(&req, &mut state).unwrap_or_else(|e| Event::Error {
                context: match &req.backend {
                    SearchBackend::Local => format!("search in {}", req.index.display()),
                    remote => format!("search in {}", remote.describe()),
                },
                message: format!("{e:#}"),
                request_id: Some(req.id),
            })
        });
        SearchService { requests }
    }

    pub fn submit(&self, req: SearchRequest) {
        let _ = self.requests.send(req);
    }
}

/// The query model for an index, loaded on first use and kept while the index's model stays the same.
#[derive(Default)]
pub struct QueryModels {
    loaded: Option<(ModelSettings, ColQwen)>,
}

impl QueryModels {
    pub fn for_index(&mut self, prov: &Provenance, device: DeviceChoice) -> Result<&ColQwen> {
        let want = model_settings_for(prov, device)?;
        if self
            .loaded
            .as_ref()
            .map(|(s, _)| s != &want)
            .unwrap_or(true)
        {
            let m = ColQwen::load(&want)
                .with_context(|| format!("loading the index's model '{}'", prov.model))?;
            self.loaded = Some((want, m));
        }
        Ok(&self.loaded.as_ref().unwrap().1)
    }
}

/// What the search thread keeps between queries.
pub struct SearchState {
    pub indexes: OpenIndexes,
    pub models: QueryModels,
    /// The Qdrant collection of the last request that named one (`search_remote`).
    pub remote: Option<super::search_remote::OpenRemote>,
    resident: Option<ResidentPages>,
    /// The snapshot whose tiles did not go to the GPU, and why: not tried again before the
    /// index's next commit.
    declined: Option<(PathBuf, u64, String)>,
}

/// One snapshot's page tiles on the query model's GPU.
struct ResidentPages {
    index: PathBuf,
    generation: u64,
    scorer: TensorScorer,
    label: String,
}

/// Page tiles may take at most this share of the GPU's free memory: an ingest may be sharing it.
const RESIDENT_SHARE_OF_FREE_VRAM: f64 = 0.5;

/// Pages per uploaded tile tensor.
const RESIDENT_CHUNK_PAGES: usize = 4096;

impl SearchState {
    pub fn new(indexes: OpenIndexes) -> SearchState {
        SearchState {
            indexes,
            models: QueryModels::default(),
            remote: None,
            resident: None,
            declined: None,
        }
    }

    /// The scorer for `searcher`'s snapshot of `index`: its tiles on the GPU when the query model
    /// is there and they fit, else the CPU kernels. The string says which ran; the note, why not
    /// the GPU when it was expected.
    fn scorer<'a>(
        &'a mut self,
        index: &Path,
        searcher: &Searcher,
        device: &candle_core::Device,
        query_tokens: usize,
    ) -> (ChosenScorer<'a>, String, Option<String>) {
        // The CPU kernels, with the note saying why not the GPU where it was expected.
        let cpu = |note: Option<String>| {
            let isa = pagesight_index::maxsim::detected_isa();
            let label = format!(
                "CPU exact MaxSim ({}, {} threads)",
                pagesight_index::maxsim::kernel_for(isa, query_tokens),
                rayon::current_num_threads()
            );
            (ChosenScorer::Cpu(CpuExact(isa)), label, note)
        };
        // Nothing to keep on the GPU for an empty index.
        if !device.is_cuda() || searcher.num_pages() == 0 {
            return cpu(None);
        }
        let generation = searcher.generation();
        if let Some((_, _, why)) = self
            .declined
            .as_ref()
            .filter(|(i, g, _)| i == index && *g == generation)
        {
            return cpu(Some(why.clone()));
        }
        let current = self
            .resident
            .as_ref()
            .is_some_and(|r| r.index == index && r.generation == generation);
        if !current {
            // The old snapshot's tiles go first: two copies may not fit.
            self.resident = None;
            match upload_pages(searcher, device) {
                Ok((scorer, label)) => {
                    self.declined = None;
                    self.resident = Some(ResidentPages {
                        index: index.to_path_buf(),
                        generation,
                        scorer,
                        label,
                    })
                }
                Err(why) => {
                    self.declined = Some((index.to_path_buf(), generation, why.clone()));
                    return cpu(Some(why));
                }
            }
        }
        let r = self.resident.as_ref().expect("set above");
        (ChosenScorer::Resident(&r.scorer), r.label.clone(), None)
    }
}

/// The CPU kernels, or the tiles resident on the GPU (kept in `SearchState`).
enum ChosenScorer<'a> {
    Cpu(CpuExact),
    Resident(&'a TensorScorer),
}

impl ChosenScorer<'_> {
    fn get(&self) -> &dyn PageScorer {
        match self {
            ChosenScorer::Cpu(s) => s,
            ChosenScorer::Resident(s) => *s,
        }
    }
}

/// Uploads `searcher`'s pages to `device` if they fit its free memory; the error is a sentence.
fn upload_pages(
    searcher: &Searcher,
    device: &candle_core::Device,
) -> Result<(TensorScorer, String), String> {
    let need = TensorScorer::resident_bytes_for(searcher);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let ordinal = match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id as u32,
        _ => 0,
    };
    // Memory only: a full sample also reads NVML's PCIe counters, each of which blocks for its
    // sampling window, and the search would wait for them.
    if let Ok((used, total)) =
        super::gpu_monitor::GpuMonitor::open(ordinal).and_then(|m| m.memory())
    {
        let free = total.saturating_sub(used);
        if need as f64 > RESIDENT_SHARE_OF_FREE_VRAM * free as f64 {
            return Err(format!(
                "the index's vectors need {:.2} GiB of GPU memory and {:.2} GiB is free \
                 (at most half of it is used for search): scored on the CPU",
                gib(need),
                gib(free)
            ));
        }
    }
    let scorer = TensorScorer::new(
        searcher,
        device,
        candle_core::DType::F16,
        RESIDENT_CHUNK_PAGES,
    )
    .map_err(|e| {
        format!("could not keep the index's vectors on the GPU ({e}): scored on the CPU")
    })?;
    let how = match scorer.kernel() {
        pagesight_index::tensor_scorer::TensorKernel::Fused => "fused MaxSim kernel",
        pagesight_index::tensor_scorer::TensorKernel::Matmul => "MaxSim as matmuls",
    };
    let label = format!(
        "GPU, {how} ({} pages, {:.2} GiB resident)",
        scorer.resident_pages(),
        gib(scorer.resident_bytes())
    );
    Ok((scorer, label))
}

/// The settings that reproduce the model recorded in the index.
pub fn model_settings_for(prov: &Provenance, device: DeviceChoice) -> Result<ModelSettings> {
    let (dtype, quant, quant_scope) = super::settings::recorded_precision(prov)?;
    Ok(ModelSettings {
        model: prov.model.clone(),
        adapter: prov.adapter.as_ref().map(Into::into),
        device,
        dtype,
        quant,
        quant_scope,
        max_visual_tokens: prov.max_visual_tokens,
        quant_cache: super::settings::QuantCacheSetting::Default,
        gpu_kernels: Default::default(),
    })
}

pub fn search(req: &SearchRequest, state: &mut SearchState) -> Result<Event> {
    if let SearchBackend::Qdrant { address, api_key } = &req.backend {
        return super::search_remote::search(req, address, api_key.as_deref(), state);
    }
    let t0 = Instant::now();
    let mut timings = SearchTimings::default();
    let mut lap = Instant::now();
    let mut took = || {
        let ms = lap.elapsed().as_secs_f64() * 1e3;
        lap = Instant::now();
        ms
    };
    let open = state.indexes.snapshot(&req.index)?;
    let (searcher, prov) = (open.searcher, open.provenance);
    timings.open_ms = took();
    let (vectors, device) = if req.mode == SearchMode::Text {
        (Vec::new(), candle_core::Device::Cpu)
    } else {
        let model = state.models.for_index(&prov, req.device)?;
        timings.model_load_ms = took();
        let v = model
            .embed_queries(std::slice::from_ref(&req.query))?
            .remove(0);
        timings.embed_ms = took();
        (v, model.device().clone())
    };
    let q = pagesight_index::Query {
        n_tokens: vectors.len() / prov.dim.max(1),
        vectors,
        text: req.query.clone(),
        mode: match req.mode {
            SearchMode::Visual => pagesight_index::SearchMode::Visual,
            SearchMode::Text => pagesight_index::SearchMode::Text,
            SearchMode::Hybrid => pagesight_index::SearchMode::Hybrid,
        },
        top_k: req.top_k,
        visual_weight: req.hybrid_visual_weight,
        scorer: match req.visual_scorer {
            VisualScorer::Exact => pagesight_index::Scorer::Exact,
            VisualScorer::Binary { candidates: 0 } => {
                pagesight_index::Scorer::binary_for_pages(searcher.num_pages())
            }
            VisualScorer::Binary { candidates } => pagesight_index::Scorer::Binary { candidates },
        },
    };
    let (scorer, scorer_label, scorer_note) = if req.mode == SearchMode::Text {
        let (s, l, n) = state.scorer(&req.index, &searcher, &candle_core::Device::Cpu, 0);
        (
            s,
            format!("BM25 text search (visual scorer unused: {l})"),
            n,
        )
    } else {
        let (s, l, n) = state.scorer(&req.index, &searcher, &device, q.n_tokens);
        let l = match q.scorer {
            pagesight_index::Scorer::Exact => l,
            pagesight_index::Scorer::Binary { candidates } => {
                format!("sign-bit prefilter (CPU), best {candidates} rescored by {l}")
            }
        };
        (s, l, n)
    };
    timings.tiles_ms = took();
    let hits = searcher.search_with(&q, scorer.get())?;
    // Damage that came after the segment was checked (the disk, not a write) is caught here.
    searcher.verify_pages(hits.iter().map(|h| h.page_id))?;
    timings.score_ms = took();
    let mut out = Vec::with_capacity(hits.len());
    for (rank, h) in hits.into_iter().enumerate() {
        let heatmap = if req.with_heatmaps && q.n_tokens > 0 {
            let m = searcher.heatmap(h.page_id, &q.vectors, q.n_tokens)?;
            Some(Heatmap {
                grid_h: m.grid_h,
                grid_w: m.grid_w,
                values: m.values,
            })
        } else {
            None
        };
        out.push(SearchHit {
            rank: rank + 1,
            score: h.score,
            file: h.file_path,
            page: h.page,
            title: h.title,
            heatmap,
        });
    }
    timings.heatmap_ms = took();
    let random = (prov.random_weights && req.mode != SearchMode::Text).then(|| {
        format!(
            "index made with random weights ('{}'): visual rankings are meaningless",
            prov.model
        )
    });
    let notes: Vec<String> = random.into_iter().chain(scorer_note).collect();
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(Event::SearchResults {
        id: req.id,
        query: req.query.clone(),
        hits: out,
        elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
        note,
        scorer: scorer_label,
        timings,
        query_tokens: q.n_tokens,
    })
}

pub fn stats_event(path: &Path, s: pagesight_index::IndexStatsLike) -> IndexStats {
    IndexStats {
        path: path.to_path_buf(),
        files: s.files,
        pages: s.pages,
        vectors: s.vectors,
        segments: s.segments,
        bytes_on_disk: s.bytes_on_disk,
        model: Some(s.model),
        provenance: Some(s.provenance),
    }
}
