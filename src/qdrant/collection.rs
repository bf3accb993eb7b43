//! The collection that holds an index's pages: created with one f16 multivector per point
//! (`MAX_SIM` over dot products, as the local scorer; HNSW off, so searches are exact scans),
//! and the index's provenance in the collection's metadata, so that pages of another model are
//! never mixed in and a search knows which model embeds its queries.

use super::error::{RemoteError, Result};
use super::point::VECTOR_NAME;
use super::server::{CallError, Server};
use pagesight_index::Provenance;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::{
    BinaryQuantizationBuilder, CreateCollectionBuilder, Datatype, Distance, HnswConfigDiffBuilder,
    MultiVectorComparator, MultiVectorConfigBuilder, ScrollPointsBuilder, VectorParamsBuilder,
    VectorsConfigBuilder,
};
use std::collections::{HashMap, HashSet};

/// The metadata key holding the provenance of the collection's vectors.
pub const PROVENANCE_KEY: &str = "pagesight_provenance";

/// The provenance recorded in `collection`'s metadata.
pub fn provenance(server: &Server, collection: &str) -> Result<Provenance> {
    Ok(settings(server, collection)?.provenance)
}

/// What a collection says of itself: the provenance of its vectors, and whether they have
/// binary-quantised copies (collections exported before those were configured have none).
pub struct CollectionSettings {
    pub provenance: Provenance,
    pub binary_vectors: bool,
    /// Points (pages) it held when asked.
    pub points: u64,
}

/// The collection's [`CollectionSettings`].
pub fn settings(server: &Server, collection: &str) -> Result<CollectionSettings> {
    let name = collection.to_string();
    let info = server
        .call_classified(|c| {
            let name = name.clone();
            async move { c.collection_info(name).await }
        })
        .map_err(|e| match e {
            CallError::NotFound(_) => RemoteError::NoCollection {
                url: server.url().into(),
                collection: collection.into(),
            },
            other => other.into_remote(server.url(), "reading the collection's settings"),
        })?;
    let not_ours = |why: &str| RemoteError::NotOurs {
        url: server.url().into(),
        collection: collection.into(),
        why: why.into(),
    };
    let result = info
        .result
        .ok_or_else(|| not_ours("the server sent no settings for it"))?;
    let points = result.points_count.unwrap_or(0);
    let config = result
        .config
        .ok_or_else(|| not_ours("the server sent no settings for it"))?;
    let value = config
        .metadata
        .get(PROVENANCE_KEY)
        .cloned()
        .ok_or_else(|| not_ours("its metadata has no provenance"))?;
    let provenance = serde_json::from_value(value.into_json())
        .map_err(|e| not_ours(&format!("its provenance does not read: {e}")))?;
    Ok(CollectionSettings {
        provenance,
        binary_vectors: binary_vectors(&config),
        points,
    })
}

/// Whether the page vectors have binary-quantised copies: set on the named vector (as the
/// export makes it) or for the whole collection.
fn binary_vectors(config: &qdrant_client::qdrant::CollectionConfig) -> bool {
    use qdrant_client::qdrant::quantization_config::Quantization;
    use qdrant_client::qdrant::vectors_config::Config;
    let is_binary = |q: Option<&qdrant_client::qdrant::QuantizationConfig>| {
        matches!(
            q.and_then(|q| q.quantization.as_ref()),
            Some(Quantization::Binary(_))
        )
    };
    let named = config
        .params
        .as_ref()
        .and_then(|p| p.vectors_config.as_ref())
        .and_then(|v| v.config.as_ref())
        .and_then(|c| match c {
            Config::ParamsMap(m) => m.map.get(VECTOR_NAME),
            Config::Params(_) => None,
        });
    is_binary(named.and_then(|p| p.quantization_config.as_ref()))
        || is_binary(config.quantization_config.as_ref())
}

/// Makes sure `collection` exists for vectors of `ours`: creates it if missing, else checks
/// that it was made for the same model. True when it was created now.
pub fn ensure(server: &Server, collection: &str, ours: &Provenance) -> Result<bool> {
    match provenance(server, collection) {
        Ok(theirs) => {
            ours.check_compatible(&theirs, std::path::Path::new(collection))
                .map_err(|_| RemoteError::OtherModel {
                    url: server.url().into(),
                    collection: collection.into(),
                    theirs: theirs.describe(),
                    ours: ours.describe(),
                })?;
            Ok(false)
        }
        Err(RemoteError::NoCollection { .. }) => {
            create(server, collection, ours)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn create(server: &Server, collection: &str, ours: &Provenance) -> Result<()> {
    let metadata: HashMap<String, serde_json::Value> = HashMap::from([(
        PROVENANCE_KEY.to_string(),
        serde_json::to_value(ours).expect("provenance serialises"),
    )]);
    let dim = ours.dim as u64;
    let name = collection.to_string();
    server.call("creating the collection", |c| {
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(
            VECTOR_NAME,
            VectorParamsBuilder::new(dim, Distance::Dot)
                .datatype(Datatype::Float16)
                .multivector_config(MultiVectorConfigBuilder::new(MultiVectorComparator::MaxSim))
                // m = 0: no graph. Every search is an exact scan, as the local exact scorer.
                .hnsw_config(HnswConfigDiffBuilder::default().m(0))
                // One bit per dimension beside the f16 vectors, held in RAM: the first stage of
                // a binary-rescored search (`RemoteScoring::BinaryRescored`), as the local
                // binary prefilter's sign codes.
                .quantization_config(BinaryQuantizationBuilder::new(true)),
        );
        let request = CreateCollectionBuilder::new(name.clone())
            .vectors_config(vectors)
            .metadata(metadata.clone());
        async move { c.create_collection(request).await }
    })?;
    Ok(())
}

/// Ids of every point in `collection` (ids only: no payload, no vectors).
pub fn point_ids(server: &Server, collection: &str) -> Result<HashSet<u64>> {
    const PAGE: u32 = 10_000;
    let mut out = HashSet::new();
    let mut offset = None;
    loop {
        let mut request = ScrollPointsBuilder::new(collection)
            .limit(PAGE)
            .with_payload(false)
            .with_vectors(false);
        if let Some(o) = offset.clone() {
            request = request.offset(o);
        }
        let page = server.call("listing the collection's points", |c| {
            let request = request.clone();
            async move { c.scroll(request).await }
        })?;
        for p in &page.result {
            if let Some(PointIdOptions::Num(n)) =
                p.id.as_ref().and_then(|i| i.point_id_options.clone())
            {
                out.insert(n);
            }
        }
        match page.next_page_offset {
            Some(o) => offset = Some(o),
            None => return Ok(out),
        }
    }
}

/// Deletes `collection` (tests, and a user who wants to start over).
pub fn delete(server: &Server, collection: &str) -> Result<()> {
    let name = collection.to_string();
    server.call("deleting the collection", |c| {
        let name = name.clone();
        async move { c.delete_collection(name).await }
    })?;
    Ok(())
}
