//! Pagesight: local visual retrieval over PDF pages with ColQwen2.5.
//!
//! Layers import downward only: `ui` and `cli` → `engine` → (`loader`, `index`) → `paths`.
//! See ARCHITECTURE.md for the data flow and the threads.

pub mod bench;
pub mod cli;
pub mod engine;
pub mod index;
pub mod loader;
pub mod paths;
pub mod ui;
