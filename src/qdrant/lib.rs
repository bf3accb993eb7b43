//! An index's pages served by Qdrant, the distributed engine: `export` pushes them into a
//! collection (one point per page, its vectors as one f16 multivector compared with `MAX_SIM`,
//! its file, page, text and the index's provenance as payload), `search` ranks them there with
//! a query's multivector. Everything goes through the first-party gRPC client (`qdrant-client`);
//! calls block the caller's thread on a small runtime of their own (`server`).
//!
//! Kept out of the index and the engine so that the gRPC stack (tonic, prost, hyper) compiles
//! once and an edit elsewhere does not rebuild it.

pub mod address;
pub mod collection;
pub mod error;
pub mod export;
pub mod point;
pub mod search;
pub mod server;

pub use address::CollectionAddress;
pub use error::RemoteError;
pub use export::{export, ExportOptions, ExportProgress, ExportReport};
pub use search::{RemoteCollection, RemoteHit, RemoteScoring};
pub use server::{RetryPolicy, Server};
