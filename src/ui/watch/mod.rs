//! Watching the library's folders while the app is open: new, changed and deleted PDFs are
//! noticed off the UI thread, and once they have settled the app queues an ingest of their
//! corpus (one ingest at a time in the engine).

mod fs_kind;
pub mod scan;
mod service;
pub mod tracker;

pub use service::{WatchEvent, WatchService, WatchTimings};
