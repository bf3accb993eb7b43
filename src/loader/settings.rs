//! The loader's settings: render workers, resolution, limits and the prefetch depth.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Loader settings: rendering and the prefetching pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoaderSettings {
    /// Number of render worker processes (default: number of cores).
    pub workers: usize,
    /// Rendered pages buffered ahead of the model (bounded queue; backpressure beyond it).
    pub prefetch: usize,
    /// Render resolution before the model's smart_resize.
    pub dpi: f32,
    /// Per-page render timeout; a worker over it is killed and replaced, the file marked failed.
    pub page_timeout_secs: f32,
    /// Cap on rendered pixels per page (memory bound for huge page boxes).
    pub max_render_pixels: u64,
    /// Path of the executable that runs render workers (`<exe> __render-worker`). Defaults to the
    /// current executable; tests point it at the built `pagesight` binary.
    pub worker_exe: Option<PathBuf>,
}

impl Default for LoaderSettings {
    fn default() -> Self {
        LoaderSettings {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            prefetch: 16,
            dpi: 144.0,
            page_timeout_secs: 60.0,
            max_render_pixels: 40_000_000,
            worker_exe: None,
        }
    }
}
