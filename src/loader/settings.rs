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
    /// Cap on each render worker's data memory, in MB; `None`: derived from the pixel cap
    /// (`worker_memory_cap_bytes`).
    #[serde(default)]
    pub worker_memory_mb: Option<u64>,
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
            worker_memory_mb: None,
            worker_exe: None,
        }
    }
}

impl LoaderSettings {
    /// The cap on a render worker's data memory (heap and private mappings, RLIMIT_DATA), in
    /// bytes: `worker_memory_mb` when set, else room for a page at the pixel cap in its three
    /// forms (PDFium's BGRA, our RGB, the resize's buffers) plus 1 GiB for PDFium's parsing and
    /// decoding. A file needing more (a decompression bomb, an image of gigapixels) makes an
    /// allocation fail: the worker dies, is replaced, and the file fails, instead of the machine
    /// swapping.
    pub fn worker_memory_cap_bytes(&self) -> u64 {
        match self.worker_memory_mb {
            Some(mb) => mb.saturating_mul(1 << 20),
            None => memory_cap_for_pixels(self.max_render_pixels),
        }
    }
}

/// A render worker's memory cap when it renders at most `pixels` per page: room for the page in
/// its three forms plus 1 GiB for PDFium (see `worker_memory_cap_bytes`).
pub fn memory_cap_for_pixels(pixels: u64) -> u64 {
    (1u64 << 30).saturating_add(pixels.saturating_mul(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_memory_cap_is_the_setting_or_derived_from_the_pixel_cap() {
        let mut s = LoaderSettings {
            max_render_pixels: 4_000_000,
            ..LoaderSettings::default()
        };
        assert_eq!(s.worker_memory_cap_bytes(), (1 << 30) + 64_000_000);
        s.worker_memory_mb = Some(400);
        assert_eq!(s.worker_memory_cap_bytes(), 400 << 20);
    }

    #[test]
    fn settings_saved_before_the_memory_cap_setting_still_load() {
        let mut v = serde_json::to_value(LoaderSettings::default()).unwrap();
        v.as_object_mut().unwrap().remove("worker_memory_mb");
        let s: LoaderSettings = serde_json::from_value(v).unwrap();
        assert_eq!(s.worker_memory_mb, None);
    }
}
