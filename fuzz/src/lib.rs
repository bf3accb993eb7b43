//! The index's on-disk readers, compiled from the project's own sources (by path, not copied) so
//! the fuzz targets build without the app's heavy dependencies (tantivy, candle, egui). They sit
//! at the crate root, where their `super::` imports find each other.
#![allow(dead_code)]

#[path = "../../src/index/format.rs"]
pub mod format;
#[path = "../../src/index/hooks.rs"]
pub mod hooks;
#[path = "../../src/index/manifest.rs"]
pub mod manifest;
#[path = "../../src/index/provenance.rs"]
pub mod provenance;
#[path = "../../src/index/segment.rs"]
pub mod segment;
#[path = "../../src/index/vectors.rs"]
pub mod vectors;
