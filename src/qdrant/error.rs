//! What can go wrong between Pagesight and a Qdrant server, each said with the server it concerns
//! and what to do about it.

use pagesight_index::IndexError;

/// The oldest Qdrant with multivectors (`MultiVectorConfig`, the `MAX_SIM` comparator).
pub const MIN_SERVER_VERSION: (u32, u32) = (1, 10);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "no Qdrant server answers at {url} ({detail}): start it, or check --url (Pagesight talks \
         gRPC: the gRPC port, 6334 by default, not the REST port 6333)"
    )]
    ServerDown { url: String, detail: String },
    #[error(
        "the Qdrant server at {url} refused the API key ({detail}): pass the server's key with \
         --api-key (none if the server has no key)"
    )]
    Unauthorized { url: String, detail: String },
    #[error(
        "the Qdrant server at {url} is version {version}, which has no multivectors (MAX_SIM needs \
         {}.{} or later): upgrade the server",
        MIN_SERVER_VERSION.0,
        MIN_SERVER_VERSION.1
    )]
    NoMultivectors { url: String, version: String },
    #[error(
        "the collection '{collection}' on {url} was deleted while pages were being exported: run \
         the export again (it recreates the collection and sends every page)"
    )]
    CollectionGone { url: String, collection: String },
    #[error(
        "there is no collection '{collection}' on {url}: export an index to it first \
         (pagesight export qdrant --index DIR --url URL --collection {collection})"
    )]
    NoCollection { url: String, collection: String },
    #[error(
        "the collection '{collection}' on {url} holds vectors from {theirs}; this index's are from \
         {ours}. Vectors of different models cannot be searched together: export to another \
         --collection, or delete that one first"
    )]
    OtherModel {
        url: String,
        collection: String,
        theirs: String,
        ours: String,
    },
    #[error(
        "the collection '{collection}' on {url} was not made by pagesight export ({why}): choose \
         another --collection"
    )]
    NotOurs {
        url: String,
        collection: String,
        why: String,
    },
    #[error("'{0}' is not a Qdrant address: expected http://host:port, https://host:port or qdrant://host:port/collection")]
    BadAddress(String),
    #[error("the Qdrant server at {url} answered {what} with an error: {detail}")]
    Server {
        url: String,
        what: String,
        detail: String,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
