//! A MaxSim search on the server: the query's token vectors as one multivector, scored exactly
//! against every point (HNSW is off in collections made by the export, and the request asks for
//! an exact search besides) — or, as the local binary prefilter does, a scan of the collection's
//! binary-quantised vectors whose best candidates the server rescores by exact MaxSim.

use super::collection;
use super::error::{RemoteError, Result};
use super::point::{key, VECTOR_NAME};
use super::server::{CallError, Server};
use pagesight_index::Provenance;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{
    QuantizationSearchParamsBuilder, Query, QueryPointsBuilder, SearchParamsBuilder, VectorInput,
};
use std::path::PathBuf;

/// One page found on the server, with what its payload says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteHit {
    pub point_id: u64,
    pub score: f32,
    pub file_hash: Option<[u8; 32]>,
    pub file_path: PathBuf,
    pub page: u32,
    pub title: Option<String>,
    pub text: Option<String>,
}

/// How the server ranks the points.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RemoteScoring {
    /// Exact MaxSim over every point's full vectors.
    #[default]
    Exact,
    /// MaxSim over the binary-quantised vectors (one bit per dimension, which the export
    /// configures) for every point, then exact MaxSim over the full vectors of the best
    /// `candidates` (at least the answer's length): Qdrant's own two stages. A collection made
    /// without binary vectors answers exactly.
    BinaryRescored { candidates: usize },
}

impl RemoteScoring {
    /// What ranked the pages, for the user.
    pub fn describe(&self) -> String {
        match self {
            RemoteScoring::Exact => "exact MaxSim".into(),
            RemoteScoring::BinaryRescored { candidates } => {
                format!("binary MaxSim, best {candidates} rescored exactly")
            }
        }
    }

    /// The request's search parameters for an answer of `top_k` points.
    fn params(&self, top_k: usize) -> SearchParamsBuilder {
        match *self {
            RemoteScoring::Exact => SearchParamsBuilder::default().exact(true),
            RemoteScoring::BinaryRescored { candidates } => {
                // Qdrant takes the candidates as a multiple of the answer's length.
                let oversampling = (candidates.max(top_k) as f64 / top_k.max(1) as f64).max(1.0);
                SearchParamsBuilder::default().exact(false).quantization(
                    QuantizationSearchParamsBuilder::default()
                        .ignore(false)
                        .rescore(true)
                        .oversampling(oversampling),
                )
            }
        }
    }
}

/// A collection opened for searching: its address and the provenance of its vectors (the
/// model that must embed the queries).
pub struct RemoteCollection {
    pub server: Server,
    pub collection: String,
    pub provenance: Provenance,
    /// Whether the collection holds binary-quantised copies of its vectors.
    pub binary_vectors: bool,
    /// Points (pages) it held when opened.
    pub points: u64,
}

impl RemoteCollection {
    pub fn open(server: Server, collection: &str) -> Result<RemoteCollection> {
        let settings = collection::settings(&server, collection)?;
        Ok(RemoteCollection {
            server,
            collection: collection.into(),
            provenance: settings.provenance,
            binary_vectors: settings.binary_vectors,
            points: settings.points,
        })
    }

    /// How the server ranks when asked for `requested`: a binary-rescored search on a
    /// collection without binary vectors is an exact one (and says so).
    pub fn scoring_for(&self, requested: RemoteScoring) -> RemoteScoring {
        match requested {
            RemoteScoring::BinaryRescored { .. } if !self.binary_vectors => RemoteScoring::Exact,
            other => other,
        }
    }

    /// The best `top_k` pages by exact MaxSim for `nq` query vectors of the collection's width
    /// (row-major).
    pub fn search(&self, query: &[f32], nq: usize, top_k: usize) -> Result<Vec<RemoteHit>> {
        self.search_scored(query, nq, top_k, RemoteScoring::Exact)
    }

    /// As [`Self::search`], ranked as `scoring` says.
    pub fn search_scored(
        &self,
        query: &[f32],
        nq: usize,
        top_k: usize,
        scoring: RemoteScoring,
    ) -> Result<Vec<RemoteHit>> {
        let scoring = self.scoring_for(scoring);
        let dim = self.provenance.dim;
        if nq == 0 || query.len() != nq * dim {
            return Err(RemoteError::Index(pagesight_index::IndexError::Invalid(
                format!(
                    "query has {} values for {nq} tokens; the collection holds {dim}-d vectors",
                    query.len()
                ),
            )));
        }
        let rows: Vec<Vec<f32>> = query.chunks_exact(dim).map(<[f32]>::to_vec).collect();
        let request = QueryPointsBuilder::new(self.collection.as_str())
            .query(Query::new_nearest(VectorInput::new_multi(rows)))
            .using(VECTOR_NAME)
            .params(scoring.params(top_k.max(1)))
            .limit(top_k.max(1) as u64)
            .with_payload(
                qdrant_client::qdrant::with_payload_selector::SelectorOptions::Include(
                    qdrant_client::qdrant::PayloadIncludeSelector {
                        fields: [
                            key::FILE_HASH,
                            key::FILE_PATH,
                            key::PAGE,
                            key::TITLE,
                            key::TEXT,
                        ]
                        .map(String::from)
                        .to_vec(),
                    },
                ),
            );
        let url = self.server.url().to_string();
        let answer = self
            .server
            .call_classified(|c| {
                let request = request.clone();
                async move { c.query(request).await }
            })
            .map_err(|e| match e {
                CallError::NotFound(_) => RemoteError::NoCollection {
                    url: url.clone(),
                    collection: self.collection.clone(),
                },
                other => other.into_remote(&url, "the search"),
            })?;
        Ok(answer.result.into_iter().map(to_hit).collect())
    }
}

fn to_hit(p: qdrant_client::qdrant::ScoredPoint) -> RemoteHit {
    let point_id = match p.id.and_then(|i| i.point_id_options) {
        Some(PointIdOptions::Num(n)) => n,
        _ => 0,
    };
    let text = |k: &str| p.payload.get(k).and_then(|v| v.as_str().cloned());
    RemoteHit {
        point_id,
        score: p.score,
        file_hash: text(key::FILE_HASH)
            .as_deref()
            .and_then(pagesight_index::format::parse_hash_hex),
        file_path: text(key::FILE_PATH).map(PathBuf::from).unwrap_or_default(),
        page: p
            .payload
            .get(key::PAGE)
            .and_then(|v| v.as_integer())
            .unwrap_or(0) as u32,
        title: text(key::TITLE),
        text: text(key::TEXT),
    }
}
