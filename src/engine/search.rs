//! Searches run on their own thread: open the index's last commit, embed the query with the
//! model that made the index (loaded once and kept), score, and answer with the request's id.

use super::colqwen::ColQwen;
use super::command::{SearchMode, SearchRequest};
use super::event::{Event, Heatmap, IndexStats, SearchHit};
use super::settings::{DeviceChoice, ModelSettings};
use crate::index::{Index, Provenance};
use anyhow::{Context, Result};
use crossbeam_channel::{unbounded, Sender};
use std::path::Path;
use std::time::Instant;

pub struct SearchService {
    requests: Sender<SearchRequest>,
}

impl SearchService {
    pub fn spawn(events: Sender<Event>) -> SearchService {
        let (tx, rx) = unbounded::<SearchRequest>();
        std::thread::Builder::new()
            .name("pagesight-search".into())
            .spawn(move || {
                let mut models = QueryModels::default();
                while let Ok(req) = rx.recv() {
                    let e = match search(&req, &mut models) {
                        Ok(e) => e,
                        Err(e) => Event::Error {
                            context: format!("search in {}", req.index.display()),
                            message: format!("{e:#}"),
                            request_id: Some(req.id),
                        },
                    };
                    if events.send(e).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn search thread");
        SearchService { requests: tx }
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
    pub fn for_index(&mut self, prov: &Provenance) -> Result<&ColQwen> {
        let want = model_settings_for(prov)?;
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

/// The settings that reproduce the model recorded in the index.
pub fn model_settings_for(prov: &Provenance) -> Result<ModelSettings> {
    Ok(ModelSettings {
        model: prov.model.clone(),
        adapter: prov.adapter.as_ref().map(Into::into),
        device: DeviceChoice::Auto,
        dtype: prov.dtype.parse()?,
        quant: prov.quant.parse()?,
        quant_scope: prov.quant_scope.parse()?,
        max_visual_tokens: prov.max_visual_tokens,
        quant_cache: super::settings::QuantCacheSetting::Default,
    })
}

pub fn search(req: &SearchRequest, models: &mut QueryModels) -> Result<Event> {
    let t0 = Instant::now();
    let index = Index::open(&req.index)
        .with_context(|| format!("opening index {}", req.index.display()))?;
    let prov = index.provenance().clone();
    let searcher = index.searcher()?;
    let vectors = if req.mode == SearchMode::Text {
        Vec::new()
    } else {
        let model = models.for_index(&prov)?;
        model
            .embed_queries(std::slice::from_ref(&req.query))?
            .remove(0)
    };
    let q = crate::index::Query {
        n_tokens: vectors.len() / prov.dim.max(1),
        vectors,
        text: req.query.clone(),
        mode: match req.mode {
            SearchMode::Visual => crate::index::SearchMode::Visual,
            SearchMode::Text => crate::index::SearchMode::Text,
            SearchMode::Hybrid => crate::index::SearchMode::Hybrid,
        },
        top_k: req.top_k,
        visual_weight: req.hybrid_visual_weight,
        scorer: crate::index::Scorer::Exact,
    };
    let hits = searcher.search(&q)?;
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
    let note = (prov.random_weights && req.mode != SearchMode::Text).then(|| {
        format!(
            "index made with random weights ('{}'): visual rankings are meaningless",
            prov.model
        )
    });
    Ok(Event::SearchResults {
        id: req.id,
        query: req.query.clone(),
        hits: out,
        elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
        note,
    })
}

pub fn stats_event(path: &Path, s: crate::index::IndexStatsLike) -> IndexStats {
    IndexStats {
        path: path.to_path_buf(),
        files: s.files,
        pages: s.pages,
        vectors: s.vectors,
        segments: s.segments,
        bytes_on_disk: s.bytes_on_disk,
        model: Some(s.model),
    }
}
