//! A search whose visual ranking comes from a Qdrant collection (`SearchBackend::Qdrant`): the
//! query is embedded here by the model the collection's provenance names (the same settings a
//! local search would use) and sent as one multivector; the server ranks by exact MaxSim.
//!
//! Text and hybrid modes use the local index's BM25 (tantivy) and the same RRF fusion as a local
//! hybrid search, joining the two rankings by page identity (content hash and page number, the
//! point id). Qdrant's sparse vectors were not used for text: they would need our own
//! tokenisation and IDF to match the local BM25, for a ranking the local index already gives;
//! the points carry the page text, so a server-side text index can come later.

use super::command::{SearchMode, SearchRequest};
use super::event::{Event, SearchHit, SearchTimings};
use super::search::SearchState;
use anyhow::{bail, Context, Result};
use pagesight_index::Scorer;
use pagesight_qdrant::point::point_id;
use pagesight_qdrant::{
    CollectionAddress, RemoteCollection, RemoteHit, RemoteScoring, RetryPolicy, Server,
};
use std::collections::HashMap;
use std::time::Instant;

/// A search is waited for by someone: a server that is down is said within a second or two
/// rather than after an export's half minute of retries.
const INTERACTIVE_RETRIES: RetryPolicy = RetryPolicy {
    attempts: 3,
    first_backoff: std::time::Duration::from_millis(200),
    max_backoff: std::time::Duration::from_millis(800),
};

/// The collection the search thread keeps connected, and how it was reached.
pub struct OpenRemote {
    address: CollectionAddress,
    api_key: Option<String>,
    collection: RemoteCollection,
}

/// Hits of the local text ranking or of Qdrant, by point id, before fusion.
struct Candidate {
    file: std::path::PathBuf,
    page: u32,
    title: Option<String>,
}

pub fn search(
    req: &SearchRequest,
    address: &CollectionAddress,
    api_key: Option<&str>,
    state: &mut SearchState,
) -> Result<Event> {
    let t0 = Instant::now();
    let mut timings = SearchTimings::default();
    let mut took = super::search::laps();
    let local = if req.index.as_os_str().is_empty() {
        None
    } else {
        Some(state.indexes.snapshot(&req.index)?)
    };
    if req.mode != SearchMode::Visual && local.is_none() {
        bail!(
            "{} search with the Qdrant backend ranks text with the local index's BM25: say which \
             index (--index DIR)",
            req.mode.name()
        );
    }
    let depth = match req.mode {
        SearchMode::Hybrid => req.top_k.max(100),
        _ => req.top_k.max(1),
    };
    let mut candidates: HashMap<u64, Candidate> = HashMap::new();
    let mut visual: Vec<(u64, f32)> = Vec::new();
    let mut query_tokens = 0;
    let mut scorer =
        String::from("BM25 text search on the local index (Qdrant holds no text index)");
    if req.mode != SearchMode::Text {
        let remote = connected(state, address, api_key)?;
        timings.open_ms = took();
        let prov = remote.provenance.clone();
        if let Some(open) = &local {
            prov.check_compatible(&open.provenance, &req.index)
                .with_context(|| {
                    format!(
                        "the local index for text and the collection {}",
                        address.backend_string()
                    )
                })?;
        }
        let q = state.models.with_model(&prov, req.device, |model| {
            timings.model_load_ms = took();
            let q = model
                .embed_queries(std::slice::from_ref(&req.query))?
                .remove(0);
            timings.embed_ms = took();
            Ok(q)
        })?;
        query_tokens = q.len() / prov.dim.max(1);
        let remote = &state.remote.as_ref().expect("connected above").collection;
        // The scorer the user chose for the local index chooses the server's: exact, or its
        // binary-quantised vectors with the best candidates rescored exactly.
        // None named, as many candidates as the local prefilter takes for the collection's pages.
        let scoring =
            remote.scoring_for(match req.visual_scorer.for_pages(remote.points as usize) {
                Scorer::Exact => RemoteScoring::Exact,
                Scorer::Binary { candidates } => RemoteScoring::BinaryRescored { candidates },
            });
        let hits = match remote.search_scored(&q, query_tokens, depth, scoring) {
            Ok(h) => h,
            Err(e) => {
                // A server that failed may come back elsewhere: connect again next time.
                state.remote = None;
                return Err(e.into());
            }
        };
        timings.score_ms = took();
        scorer = format!(
            "Qdrant {} at {}",
            scoring.describe(),
            address.backend_string()
        );
        for h in hits {
            visual.push((h.point_id, h.score));
            candidates.insert(h.point_id, from_remote(h));
        }
    }
    let mut text: Vec<(u64, f32)> = Vec::new();
    if let (Some(open), true) = (&local, req.mode != SearchMode::Visual) {
        for (page_id, score) in open.searcher.text(&req.query, depth)? {
            let h = open.searcher.hit(page_id, score)?;
            let id = point_id(&h.file_hash, h.page);
            text.push((id, score));
            candidates.entry(id).or_insert(Candidate {
                file: h.file_path,
                page: h.page,
                title: h.title,
            });
        }
        timings.score_ms += took();
    }
    let ranked: Vec<(u64, f32)> = match req.mode {
        SearchMode::Visual => visual,
        SearchMode::Text => text,
        SearchMode::Hybrid => {
            let ids = |r: &[(u64, f32)]| r.iter().map(|x| x.0).collect::<Vec<_>>();
            scorer = format!("{scorer} fused (RRF) with the local index's BM25");
            pagesight_index::fusion::rrf(&ids(&visual), &ids(&text), req.hybrid_visual_weight)
        }
    };
    let hits: Vec<SearchHit> = ranked
        .into_iter()
        .take(req.top_k.max(1))
        .enumerate()
        .filter_map(|(rank, (id, score))| {
            let c = candidates.remove(&id)?;
            Some(SearchHit {
                rank: rank + 1,
                score,
                file: c.file,
                page: c.page,
                title: c.title,
                heatmap: None,
                // The payload's text would need the query's terms marked as tantivy does
                // locally; Qdrant's answers carry none yet.
                snippet: Default::default(),
            })
        })
        .collect();
    let mut notes = Vec::new();
    if req.with_heatmaps && req.mode != SearchMode::Text {
        notes.push(
            "no heatmaps for pages ranked by Qdrant (the vectors stay on the server)".to_string(),
        );
    }
    if let Some(r) = state
        .remote
        .as_ref()
        .filter(|r| r.collection.provenance.random_weights)
    {
        notes.push(format!(
            "collection made with random weights ('{}'): visual rankings are meaningless",
            r.collection.provenance.model
        ));
    }
    Ok(Event::SearchResults {
        id: req.id,
        query: req.query.clone(),
        hits,
        elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        scorer,
        timings,
        query_tokens,
    })
}

fn from_remote(h: RemoteHit) -> Candidate {
    Candidate {
        file: h.file_path,
        page: h.page,
        title: h.title,
    }
}

/// The collection at `address`, connected once and kept while requests name it.
fn connected<'a>(
    state: &'a mut SearchState,
    address: &CollectionAddress,
    api_key: Option<&str>,
) -> Result<&'a RemoteCollection> {
    let same = state
        .remote
        .as_ref()
        .is_some_and(|r| &r.address == address && r.api_key.as_deref() == api_key);
    if !same {
        state.remote = None;
        let server = Server::connect(&address.url, api_key, INTERACTIVE_RETRIES)?;
        let collection = RemoteCollection::open(server, &address.collection)?;
        state.remote = Some(OpenRemote {
            address: address.clone(),
            api_key: api_key.map(str::to_string),
            collection,
        });
    }
    Ok(&state.remote.as_ref().expect("set above").collection)
}
