//! The reference processor's image path after the resize: rescale by 1/255, normalise with the
//! CLIP mean/std, and patchify into rows of `3·2·14·14 = 1176` values in 2×2 merge-block order.

use super::resize::{resize_bicubic_rgb, smart_resize};
use anyhow::{bail, Result};

/// CLIP normalisation constants (OPENAI_CLIP_MEAN / OPENAI_CLIP_STD).
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
// The digits are the reference's (OPENAI_CLIP_STD), kept as written there.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Image preprocessing parameters of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    pub min_pixels: u32,
    pub max_pixels: u32,
    pub patch_size: u32,
    pub merge_size: u32,
    pub temporal_patch_size: u32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl Default for PreprocessConfig {
    /// ColQwen2.5: at most 768 visual tokens (max_pixels = 768·28·28), min_pixels 3136.
    fn default() -> Self {
        PreprocessConfig {
            min_pixels: 3136,
            max_pixels: 768 * 28 * 28,
            patch_size: 14,
            merge_size: 2,
            temporal_patch_size: 2,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
        }
    }
}

impl PreprocessConfig {
    /// Limits a page to `n` visual tokens (merged patches): max_pixels = n · factor².
    pub fn with_max_visual_tokens(mut self, n: usize) -> Self {
        let f = self.factor() as usize;
        self.max_pixels = (n * f * f).min(u32::MAX as usize) as u32;
        self
    }

    /// The most visual tokens (merged patches) a page gets: max_pixels / factor².
    pub fn visual_tokens(&self) -> usize {
        let f = self.factor() as usize;
        self.max_pixels as usize / (f * f).max(1)
    }

    /// Side lengths are multiples of this: patch_size · merge_size (28).
    pub fn factor(&self) -> u32 {
        self.patch_size * self.merge_size
    }

    /// Values per patch row: channels · temporal_patch_size · patch_size² (1176).
    pub fn patch_dim(&self) -> usize {
        3 * (self.temporal_patch_size * self.patch_size * self.patch_size) as usize
    }

    /// Model resolution `(height, width)` for an image of `h × w` (the reference's smart_resize).
    pub fn target_size(&self, h: u32, w: u32) -> Result<(u32, u32)> {
        smart_resize(h, w, self.factor(), self.min_pixels, self.max_pixels)
    }

    /// `[t, h/patch, w/patch]` for an image already at model resolution `h × w`.
    pub fn grid_thw(&self, h: u32, w: u32) -> [u32; 3] {
        [1, h / self.patch_size, w / self.patch_size]
    }

    /// Patch rows for an image at model resolution `h × w`.
    pub fn num_patches(&self, h: u32, w: u32) -> usize {
        let [t, gh, gw] = self.grid_thw(h, w);
        (t * gh * gw) as usize
    }

    /// Most patch rows one page can produce (sizes staging buffers).
    pub fn max_patches_per_image(&self) -> usize {
        (self.max_pixels / (self.patch_size * self.patch_size)) as usize
    }

    /// Normalised value of every byte for each channel, computed as the reference's fused
    /// rescale+normalise does it in f32: `(v − mean·255) / (std·255)`.
    pub fn normalise_table(&self) -> [[f32; 256]; 3] {
        let mut t = [[0.0f32; 256]; 3];
        // The reference folds the 1/255 rescale into mean and std (multiplying by 1/(1/255)).
        let inv_rescale = (1.0f64 / (1.0f64 / 255.0)) as f32;
        for (c, channel) in t.iter_mut().enumerate() {
            let mean = self.image_mean[c] * inv_rescale;
            let std = self.image_std[c] * inv_rescale;
            for (v, out) in channel.iter_mut().enumerate() {
                *out = (v as f32 - mean) / std;
            }
        }
        t
    }
}

/// Writes the patch rows of one image (packed 8-bit RGB at model resolution `h × w`) into
/// `out`, which must hold exactly `num_patches · patch_dim` values.
///
/// Row order (the reference's reshape/transpose): for each merged row, merged column, then the
/// `merge × merge` patches inside the block; within a row: channel, frame (the still image is
/// repeated `temporal_patch_size` times), patch row, patch column.
pub fn patchify_into(
    rgb: &[u8],
    h: u32,
    w: u32,
    cfg: &PreprocessConfig,
    out: &mut [f32],
) -> Result<()> {
    let table = cfg.normalise_table();
    patchify_with_table(rgb, h, w, cfg, &table, out)
}

/// Any 8-bit RGB image (`h × w`) to model input: smart_resize, bicubic resize, normalise and
/// patchify. Returns the patch rows and `grid_thw`. (Render workers do the resize themselves and
/// the batcher patchifies; this serves single images, e.g. `pagesight embed --image`.)
pub fn preprocess_rgb(
    rgb: &[u8],
    h: u32,
    w: u32,
    cfg: &PreprocessConfig,
) -> Result<(Vec<f32>, [u32; 3])> {
    let (th, tw) = cfg.target_size(h, w)?;
    let mut resized = Vec::new();
    resize_bicubic_rgb(
        rgb,
        h as usize,
        w as usize,
        th as usize,
        tw as usize,
        &mut resized,
    )?;
    let mut out = vec![0f32; cfg.num_patches(th, tw) * cfg.patch_dim()];
    patchify_into(&resized, th, tw, cfg, &mut out)?;
    Ok((out, cfg.grid_thw(th, tw)))
}

/// [`patchify_into`] with a precomputed [`PreprocessConfig::normalise_table`] (batches reuse it).
pub fn patchify_with_table(
    rgb: &[u8],
    h: u32,
    w: u32,
    cfg: &PreprocessConfig,
    table: &[[f32; 256]; 3],
    out: &mut [f32],
) -> Result<()> {
    let f = cfg.factor();
    if h == 0 || w == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
        bail!(
            "image of {h}×{w} is not at model resolution (sides must be positive multiples of {f})"
        );
    }
    let (h, w) = (h as usize, w as usize);
    if rgb.len() != h * w * 3 {
        bail!("RGB buffer holds {} bytes, expected {h}×{w}×3", rgb.len());
    }
    let ps = cfg.patch_size as usize;
    let ms = cfg.merge_size as usize;
    let tps = cfg.temporal_patch_size as usize;
    let dim = cfg.patch_dim();
    let n = cfg.num_patches(h as u32, w as u32);
    if out.len() != n * dim {
        bail!(
            "patch buffer holds {} values, expected {n} patches × {dim}",
            out.len()
        );
    }
    let frame = ps * ps;
    let (gh, gw) = (h / ps, w / ps);
    let mut row_index = 0;
    for bh in 0..gh / ms {
        for bw in 0..gw / ms {
            for mh in 0..ms {
                for mw in 0..ms {
                    let (py0, px0) = ((bh * ms + mh) * ps, (bw * ms + mw) * ps);
                    let row = &mut out[row_index * dim..(row_index + 1) * dim];
                    row_index += 1;
                    for (c, lut) in table.iter().enumerate() {
                        let chan = &mut row[c * tps * frame..(c + 1) * tps * frame];
                        let (first, rest) = chan.split_at_mut(frame);
                        for y in 0..ps {
                            let src =
                                &rgb[((py0 + y) * w + px0) * 3..((py0 + y) * w + px0 + ps) * 3];
                            let dst = &mut first[y * ps..(y + 1) * ps];
                            for (d, px) in dst.iter_mut().zip(src.chunks_exact(3)) {
                                *d = lut[px[c] as usize];
                            }
                        }
                        for t in 0..tps - 1 {
                            rest[t * frame..(t + 1) * frame].copy_from_slice(first);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_colqwen25() {
        let c = PreprocessConfig::default();
        assert_eq!(c.max_pixels, 602112);
        assert_eq!(c.patch_dim(), 1176);
        assert_eq!(c.clone().with_max_visual_tokens(768), c);
        assert_eq!(c.target_size(1684, 1190).unwrap(), (896, 644));
        assert_eq!(c.grid_thw(896, 644), [1, 64, 46]);
    }

    #[test]
    fn rejects_wrong_sizes() {
        let c = PreprocessConfig::default();
        let mut out = vec![0.0; 4 * 1176];
        assert!(patchify_into(&[0; 28 * 28 * 3], 28, 28, &c, &mut out).is_ok());
        assert!(patchify_into(&[0; 28 * 28 * 3], 28, 28, &c, &mut out[..10]).is_err());
        assert!(patchify_into(&[0; 30 * 28 * 3], 30, 28, &c, &mut out).is_err());
    }
}
