//! Staging: packing a batch of pages into a reusable f32 buffer as the model's `pixel_values`
//! plus `grid_thw`. The buffers are generic (`AsMut<[f32]>`) so that the GPU path can use pinned
//! host memory instead of `Vec<f32>`.

use super::pipeline::RenderedPage;
use anyhow::{bail, Result};
use pagesight_model::preprocess::{patchify_with_table, PreprocessConfig};
use rayon::prelude::*;

/// A packed batch, borrowing the staging buffer it was written into.
#[derive(Debug)]
pub struct PixelBatch<'a> {
    /// `Σ patches × patch_dim` values, the pages one after another.
    pub pixel_values: &'a [f32],
    /// One `[t, h/14, w/14]` per page.
    pub grid_thw: Vec<[u32; 3]>,
}

impl PixelBatch<'_> {
    pub fn num_patches(&self) -> usize {
        self.grid_thw
            .iter()
            .map(|g| (g[0] * g[1] * g[2]) as usize)
            .sum()
    }
}

/// Values needed to pack `pages`.
pub fn batch_floats(pages: &[RenderedPage], cfg: &PreprocessConfig) -> usize {
    pages
        .iter()
        .map(|p| cfg.num_patches(p.height, p.width))
        .sum::<usize>()
        * cfg.patch_dim()
}

/// Values a staging buffer needs for any batch of `batch_size` pages.
pub fn max_batch_floats(cfg: &PreprocessConfig, batch_size: usize) -> usize {
    batch_size * cfg.max_patches_per_image() * cfg.patch_dim()
}

/// Normalises and patchifies `pages` straight into the front of `buf` (pages in parallel).
pub fn pack_batch<'b>(
    pages: &[RenderedPage],
    cfg: &PreprocessConfig,
    buf: &'b mut [f32],
) -> Result<PixelBatch<'b>> {
    let need = batch_floats(pages, cfg);
    if buf.len() < need {
        bail!(
            "staging buffer holds {} values but this batch of {} pages needs {need}",
            buf.len(),
            pages.len()
        );
    }
    let table = cfg.normalise_table();
    let (used, _) = buf.split_at_mut(need);
    let mut parts = Vec::with_capacity(pages.len());
    let mut rest = &mut *used;
    for p in pages {
        let (head, tail) = std::mem::take(&mut rest)
            .split_at_mut(cfg.num_patches(p.height, p.width) * cfg.patch_dim());
        parts.push((p, head));
        rest = tail;
    }
    parts.into_par_iter().try_for_each(|(p, out)| {
        patchify_with_table(&p.rgb, p.height, p.width, cfg, &table, out)
            .map_err(|e| anyhow::anyhow!("page {} of file #{}: {e:#}", p.page, p.file_index))
    })?;
    Ok(PixelBatch {
        pixel_values: &buf[..need],
        grid_thw: pages
            .iter()
            .map(|p| cfg.grid_thw(p.height, p.width))
            .collect(),
    })
}

/// K reusable staging buffers handed out round-robin, so the batch being packed never shares a
/// buffer with the K−1 batches before it (which may still be copying to the device).
pub struct StagingRing<B> {
    buffers: Vec<B>,
    next: usize,
}

impl<B: AsMut<[f32]>> StagingRing<B> {
    pub fn new(buffers: Vec<B>) -> Result<Self> {
        if buffers.is_empty() {
            bail!("a staging ring needs at least one buffer");
        }
        Ok(StagingRing { buffers, next: 0 })
    }

    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// The next buffer in turn and its slot number.
    pub fn next_buffer(&mut self) -> (usize, &mut B) {
        let i = self.next;
        self.next = (self.next + 1) % self.buffers.len();
        (i, &mut self.buffers[i])
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut B> {
        self.buffers.get_mut(slot)
    }
}

impl StagingRing<Vec<f32>> {
    /// `k` ordinary host buffers, each big enough for `batch_size` pages at the largest size.
    pub fn host(k: usize, cfg: &PreprocessConfig, batch_size: usize) -> Result<Self> {
        let n = max_batch_floats(cfg, batch_size);
        Self::new((0..k).map(|_| vec![0.0f32; n]).collect())
    }
}
