//! A MaxSim search on the server: the query's token vectors as one multivector, scored exactly
//! against every point (HNSW is off in collections made by the export, and the request asks for
//! an exact search besides).

use super::collection;
use super::error::{RemoteError, Result};
use super::point::{key, VECTOR_NAME};
use super::server::{CallError, Server};
use pagesight_index::Provenance;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{Query, QueryPointsBuilder, SearchParamsBuilder, VectorInput};
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

/// A collection opened for searching: its address and the provenance of its vectors (the
/// model that must embed the queries).
pub struct RemoteCollection {
    pub server: Server,
    pub collection: String,
    pub provenance: Provenance,
}

impl RemoteCollection {
    pub fn open(server: Server, collection: &str) -> Result<RemoteCollection> {
        let provenance = collection::provenance(&server, collection)?;
        Ok(RemoteCollection {
            server,
            collection: collection.into(),
            provenance,
        })
    }

    /// The best `top_k` pages for `nq` query vectors of the collection's width (row-major).
    pub fn search(&self, query: &[f32], nq: usize, top_k: usize) -> Result<Vec<RemoteHit>> {
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
            .params(SearchParamsBuilder::default().exact(true))
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
