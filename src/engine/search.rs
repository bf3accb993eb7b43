//! Searches run on their own thread: open the index's last commit, embed the query with the
//! model that made the index (loaded once and kept), score, and answer with the request's id.
//!
//! When that model runs on a GPU, MaxSim runs there too: the snapshot's page tiles are uploaded
//! once (`index::tensor_scorer`, the fused kernel) and kept until the index's next commit; an
//! index too big for the free VRAM, or a failed upload, is scored on the CPU and the answer says
//! why. A request naming several devices (`devices`: `cuda:all`, `cuda:0,1`, `cpu,cpu`) shards
//! the tiles over them (`tile_shards`). Each answer names the scorer that ran.

use super::command::{SearchBackend, SearchMode, SearchRequest};
use super::event::{Event, Heatmap, IndexStats, SearchHit, SearchTimings};
use super::model_shelf::ModelShelf;
use super::open_indexes::OpenIndexes;
use super::resident_tiles::ResidentTiles;
use super::settings::{Compute, DeviceChoice, ModelSettings};
use super::tile_shards::ShardDevices;
use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use pagesight_index::Provenance;
use pagesight_model::colqwen::ColQwen;
use std::path::Path;
use std::time::Instant;

pub struct SearchService {
    requests: Sender<SearchRequest>,
}

impl SearchService {
    pub fn spawn(events: Sender<Event>, indexes: OpenIndexes, shelf: ModelShelf) -> SearchService {
        let mut state = SearchState::new(indexes, shelf);
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

/// The query model for an index: the engine's shelved model when it fits (the ingest that made
/// the index left it there), else loaded; either way back on the shelf after the query.
pub struct QueryModels {
    shelf: ModelShelf,
}

impl QueryModels {
    pub fn new(shelf: ModelShelf) -> QueryModels {
        QueryModels { shelf }
    }

    /// Runs `f` with the query model of the index `prov` describes, on `device`; also says how
    /// long getting the model took.
    pub fn with_model<T>(
        &self,
        prov: &Provenance,
        device: DeviceChoice,
        f: impl FnOnce(&ColQwen) -> Result<T>,
    ) -> Result<T> {
        let want = model_settings_for(prov, device)?;
        let (settings, model) = match self.shelf.take_fitting(&want) {
            Some(shelved) => shelved,
            None => {
                let m = ColQwen::load(&want)
                    .with_context(|| format!("loading the index's model '{}'", prov.model))?;
                (want, m)
            }
        };
        let out = f(&model);
        self.shelf.put(settings, model);
        out
    }
}

pub struct SearchState {
    pub indexes: OpenIndexes,
    pub models: QueryModels,
    tiles: ResidentTiles,
    /// The Qdrant collection of the last request that named one (`search_remote`).
    pub remote: Option<super::search_remote::OpenRemote>,
}

impl SearchState {
    pub fn new(indexes: OpenIndexes, shelf: ModelShelf) -> SearchState {
        SearchState {
            indexes,
            models: QueryModels::new(shelf),
            tiles: ResidentTiles::default(),
            remote: None,
        }
    }
}

/// A stopwatch of laps: each call gives the milliseconds since the previous one (or since it
/// was made), for the search's time by step.
pub(crate) fn laps() -> impl FnMut() -> f64 {
    let mut lap = Instant::now();
    move || {
        let ms = lap.elapsed().as_secs_f64() * 1e3;
        lap = Instant::now();
        ms
    }
}

/// The settings that reproduce the model recorded in the index.
pub fn model_settings_for(prov: &Provenance, device: DeviceChoice) -> Result<ModelSettings> {
    let mut settings = ModelSettings {
        model: prov.model.clone(),
        // A random model's adapter comes with the model.
        adapter: match prov.random_weights {
            true => None,
            false => prov.adapter.as_ref().map(Into::into),
        },
        device,
        max_visual_tokens: Some(prov.max_visual_tokens),
        ..ModelSettings::default()
    };
    super::settings::recorded_precision(prov)?.apply_to(&mut settings);
    if !device.will_use_cuda() {
        // fp8 on the CPU is an f32 emulation for checking the GPU, dequantising every layer per
        // query; the CPU's query kernels read the same NF4 codes in f32 instead.
        settings.compute = Compute::Dtype;
    }
    Ok(settings)
}

pub fn search(req: &SearchRequest, state: &mut SearchState) -> Result<Event> {
    if let SearchBackend::Qdrant { address, api_key } = &req.backend {
        return super::search_remote::search(req, address, api_key.as_deref(), state);
    }
    let t0 = Instant::now();
    let mut timings = SearchTimings::default();
    let mut took = laps();
    let open = state.indexes.snapshot(&req.index)?;
    let (searcher, prov) = (open.searcher, open.provenance);
    timings.open_ms = took();
    let (vectors, device) = if req.mode == SearchMode::Text {
        (Vec::new(), candle_core::Device::Cpu)
    } else {
        state.models.with_model(&prov, req.device, |model| {
            timings.model_load_ms = took();
            let v = model
                .embed_queries(std::slice::from_ref(&req.query))?
                .remove(0);
            timings.embed_ms = took();
            Ok((v, model.device().clone()))
        })?
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
        scorer: req.visual_scorer.for_pages(searcher.num_pages()),
    };
    let (scorer, scorer_label, scorer_note) = if req.mode == SearchMode::Text {
        let (s, l, n) =
            state
                .tiles
                .scorer(&req.index, &searcher, &candle_core::Device::Cpu, None, 0);
        (
            s,
            format!("BM25 text search (visual scorer unused: {l})"),
            n,
        )
    } else {
        let shards = ShardDevices::for_request(req.devices.as_ref())?;
        let (s, l, n) =
            state
                .tiles
                .scorer(&req.index, &searcher, &device, shards.as_ref(), q.n_tokens);
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
    let ids: Vec<u64> = hits.iter().map(|h| h.page_id).collect();
    let snippets = searcher.snippets(&ids, &req.query)?;
    let mut out = Vec::with_capacity(hits.len());
    for (rank, (h, snippet)) in hits.into_iter().zip(snippets).enumerate() {
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
            snippet,
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
