//! What the GPU executor needs to know about a batch of pages and about the model, as traits,
//! plus their implementation for the loader's pages. Not CUDA-specific, so the CPU build and
//! its tests see the same types.

use anyhow::{bail, Result};
use candle_core::Tensor;
use pagesight_loader::{pack_batch, RenderedPage};
use pagesight_model::PreprocessConfig;

/// A batch of pages at model resolution, as the executor needs to see it.
pub trait StagePages {
    fn page_count(&self) -> usize;
    /// `(height, width)` of page `i` at model resolution.
    fn page_dims(&self, i: usize) -> (u32, u32);
    /// Packed 8-bit RGB of page `i`, `height · width · 3` bytes.
    fn page_rgb(&self, i: usize) -> &[u8];
    /// Writes the f32 patch rows of all pages back to back into `out` (exactly rows · row_len
    /// values): the loader's CPU rescale/normalise/patchify.
    fn pack_f32(&self, out: &mut [f32]) -> Result<()>;
}

/// The model as the executor drives it.
pub trait BatchModel {
    type Output;
    /// Queues the vision tower on the compute stream; must not wait for it.
    fn vision(&mut self, pixels: &Tensor, grid_thw: &[[u32; 3]]) -> Result<Tensor>;
    /// Queues the language model and head on the vision output; must not wait for it.
    fn lm(&mut self, vision: &Tensor, grid_thw: &[[u32; 3]]) -> Result<Tensor>;
    /// Brings the result back to the host (waits for the forward pass).
    fn fetch(&mut self, out: &Tensor, grid_thw: &[[u32; 3]]) -> Result<Self::Output>;
}

/// Geometry and normalisation of the model's image processor, as the GPU patchify needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchifyParams {
    pub patch: u32,
    pub merge: u32,
    pub temporal: u32,
    /// `PreprocessConfig::normalise_table()`: normalised f32 of every byte value per channel.
    pub table: [[f32; 256]; 3],
}

impl PatchifyParams {
    pub fn from_config(cfg: &PreprocessConfig) -> Self {
        PatchifyParams {
            patch: cfg.patch_size,
            merge: cfg.merge_size,
            temporal: cfg.temporal_patch_size,
            table: cfg.normalise_table(),
        }
    }
    pub fn row_len(&self) -> usize {
        (3 * self.temporal * self.patch * self.patch) as usize
    }
    /// Patch rows of one page at model resolution `h × w` (both multiples of patch·merge).
    pub fn rows(&self, h: u32, w: u32) -> Result<usize> {
        let f = self.patch * self.merge;
        if h == 0 || w == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            bail!("page of {h}×{w} is not at model resolution (sides must be positive multiples of {f})");
        }
        Ok(((h / self.patch) * (w / self.patch)) as usize)
    }
}

/// The loader's rendered pages with the model's preprocessing.
#[derive(Clone, Debug)]
pub struct LoaderBatch {
    pub pages: Vec<RenderedPage>,
    pub cfg: PreprocessConfig,
}

impl StagePages for LoaderBatch {
    fn page_count(&self) -> usize {
        self.pages.len()
    }
    fn page_dims(&self, i: usize) -> (u32, u32) {
        (self.pages[i].height, self.pages[i].width)
    }
    fn page_rgb(&self, i: usize) -> &[u8] {
        &self.pages[i].rgb
    }
    fn pack_f32(&self, out: &mut [f32]) -> Result<()> {
        let len = out.len();
        let packed = pack_batch(&self.pages, &self.cfg, out)?.pixel_values.len();
        if packed != len {
            bail!("packed {packed} values into a buffer of {len}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn params_follow_the_preprocess_config() {
        let cfg = PreprocessConfig::default();
        let p = PatchifyParams::from_config(&cfg);
        assert_eq!(p.row_len(), cfg.patch_dim());
        assert_eq!(p.rows(896, 644).unwrap(), cfg.num_patches(896, 644));
        assert!(p
            .rows(30, 28)
            .unwrap_err()
            .to_string()
            .contains("multiples of 28"));
    }
}
