//! Image settings and a STOPGAP patchify for `pagesight embed --image`.
//!
//! The loader owns page preprocessing (src/loader/preprocess.rs, being written on another
//! branch). Until it lands, `stopgap_patchify` here turns one decoded image into the model's
//! pixel rows so the embed command can run; the two must be unified into the loader's version
//! (one function for every caller) when the branches merge.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// What the image processor needs (Qwen2-VL image processor fields).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInputConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub patch_size: usize,
    pub merge_size: usize,
    pub temporal_patch_size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for ImageInputConfig {
    /// ColQwen2.5 as colpali-engine configures it: max 768 visual tokens.
    fn default() -> Self {
        ImageInputConfig {
            min_pixels: 4 * 28 * 28,
            max_pixels: 768 * 28 * 28,
            patch_size: 14,
            merge_size: 2,
            temporal_patch_size: 2,
            mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            std: [0.268_629_54, 0.261_302_58, 0.275_777_1],
        }
    }
}

impl ImageInputConfig {
    /// Reads `preprocessor_config.json` (`min_pixels`/`max_pixels` or `size.shortest_edge`/
    /// `size.longest_edge`, patch/merge/temporal sizes, mean/std); absent fields keep defaults.
    /// `max_visual_tokens` then sets max_pixels, as colpali-engine's processor does.
    pub fn load(path: Option<&Path>, max_visual_tokens: usize) -> Result<Self> {
        let mut c = ImageInputConfig::default();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            let num = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
            let size = |k: &str| {
                v.get("size")
                    .and_then(|s| s.get(k))
                    .and_then(Value::as_u64)
                    .map(|x| x as usize)
            };
            if let Some(x) = num("min_pixels").or_else(|| size("shortest_edge")) {
                c.min_pixels = x;
            }
            if let Some(x) = num("max_pixels").or_else(|| size("longest_edge")) {
                c.max_pixels = x;
            }
            c.patch_size = num("patch_size").unwrap_or(c.patch_size);
            c.merge_size = num("merge_size").unwrap_or(c.merge_size);
            c.temporal_patch_size = num("temporal_patch_size").unwrap_or(c.temporal_patch_size);
            for (key, dst) in [("image_mean", &mut c.mean), ("image_std", &mut c.std)] {
                if let Some(a) = v.get(key) {
                    let vals: Vec<f32> = serde_json::from_value(a.clone()).with_context(|| {
                        format!("{}: field `{key}` must be 3 numbers", path.display())
                    })?;
                    if vals.len() != 3 {
                        bail!("{}: field `{key}` must be 3 numbers", path.display());
                    }
                    dst.copy_from_slice(&vals);
                }
            }
        }
        if max_visual_tokens == 0 {
            bail!("max visual tokens must be > 0");
        }
        let factor = c.patch_size * c.merge_size;
        c.max_pixels = max_visual_tokens * factor * factor;
        c.min_pixels = c.min_pixels.min(c.max_pixels);
        Ok(c)
    }

    /// transformers' `smart_resize`: (height, width) multiples of patch·merge, pixels within
    /// [min_pixels, max_pixels], aspect ratio kept.
    pub fn smart_resize(&self, height: usize, width: usize) -> Result<(usize, usize)> {
        let f = (self.patch_size * self.merge_size) as f64;
        let (h, w) = (height as f64, width as f64);
        if height == 0 || width == 0 || h.max(w) / h.min(w) > 200.0 {
            bail!("image {width}×{height} is empty or its aspect ratio exceeds 200");
        }
        // Python's round() rounds half to even.
        let round_to = |x: f64| f * (x / f).round_ties_even();
        let mut hb = f.max(round_to(h));
        let mut wb = f.max(round_to(w));
        if hb * wb > self.max_pixels as f64 {
            let beta = (h * w / self.max_pixels as f64).sqrt();
            hb = f.max((h / beta / f).floor() * f);
            wb = f.max((w / beta / f).floor() * f);
        } else if hb * wb < self.min_pixels as f64 {
            let beta = (self.min_pixels as f64 / (h * w)).sqrt();
            hb = (h * beta / f).ceil() * f;
            wb = (w * beta / f).ceil() * f;
        }
        Ok((hb as usize, wb as usize))
    }
}

/// STOPGAP (see module doc): resizes (bicubic), normalises and patchifies one RGB image into
/// rows of channel·temporal·patch² values in merge-block order; returns (rows, grid_thw).
pub fn stopgap_patchify(
    img: &image::RgbImage,
    cfg: &ImageInputConfig,
) -> Result<(Vec<f32>, [u32; 3])> {
    let (h, w) = cfg.smart_resize(img.height() as usize, img.width() as usize)?;
    let resized = if (h, w) == (img.height() as usize, img.width() as usize) {
        img.clone()
    } else {
        image::imageops::resize(
            img,
            w as u32,
            h as u32,
            image::imageops::FilterType::CatmullRom,
        )
    };
    let (ps, m, tp) = (cfg.patch_size, cfg.merge_size, cfg.temporal_patch_size);
    let (gh, gw) = (h / ps, w / ps);
    let row_len = 3 * tp * ps * ps;
    let mut out = Vec::with_capacity(gh * gw * row_len);
    let px = |c: usize, y: usize, x: usize| -> f32 {
        let v = resized.get_pixel(x as u32, y as u32)[c] as f32 / 255.0;
        (v - cfg.mean[c]) / cfg.std[c]
    };
    for mr in 0..gh / m {
        for mc in 0..gw / m {
            for iy in 0..m {
                for ix in 0..m {
                    let (y0, x0) = ((mr * m + iy) * ps, (mc * m + ix) * ps);
                    for c in 0..3 {
                        // The still image is repeated over the temporal patch.
                        for _ in 0..tp {
                            for py in 0..ps {
                                for pxx in 0..ps {
                                    out.push(px(c, y0 + py, x0 + pxx));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((out, [1, gh as u32, gw as u32]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_reference_examples() {
        let c = ImageInputConfig::default();
        // An A4 page rendered at 144 dpi (1191×1684) → 896×644 (reference.md).
        assert_eq!(c.smart_resize(1684, 1191).unwrap(), (896, 644));
        assert_eq!(c.smart_resize(224, 168).unwrap(), (224, 168));
        assert!(c.smart_resize(0, 10).is_err());
    }
}
