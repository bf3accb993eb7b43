//! Pagesight: local visual retrieval over PDF pages with ColQwen2.5. This is the app: the
//! command line (`cli`), the desktop front end (`ui`) and the user-facing benchmarks (`bench`).
//! The layers below are crates of their own, re-exported here under their short names; the
//! compiler keeps their imports downward (see ARCHITECTURE.md for the crate table, the data flow
//! and the threads).

pub mod bench;
pub mod cli;
pub mod env_vars;
pub mod export;
pub mod ui;

pub use pagesight_common as common;
#[cfg(feature = "dev-tools")]
pub use pagesight_devtools as devtools;
pub use pagesight_engine as engine;
pub use pagesight_index as index;
pub use pagesight_loader as loader;
pub use pagesight_model as model;
pub use pagesight_qdrant as qdrant;
