//! The checkpoint's image settings (`preprocessor_config.json`) as the loader's
//! `PreprocessConfig`; the loader owns resizing, normalising and patchifying.

use crate::PreprocessConfig;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// Reads `preprocessor_config.json` (`min_pixels`/`max_pixels` or `size.shortest_edge`/
/// `size.longest_edge`, patch/merge/temporal sizes, mean/std); absent fields keep the ColQwen2.5
/// defaults. The checkpoint's max_pixels is the page budget unless `max_visual_tokens` overrides
/// it, as colpali-engine's processor does (since 0.3.10) when the caller passes
/// `max_num_visual_tokens`.
pub fn load_preprocess_config(
    path: Option<&Path>,
    max_visual_tokens: Option<usize>,
) -> Result<PreprocessConfig> {
    let mut c = PreprocessConfig::default();
    if let Some(path) = path {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let num = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .map(|x| x.min(u32::MAX as u64) as u32)
        };
        let size = |k: &str| {
            v.get("size")
                .and_then(|s| s.get(k))
                .and_then(Value::as_u64)
                .map(|x| x.min(u32::MAX as u64) as u32)
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
        for (key, dst) in [
            ("image_mean", &mut c.image_mean),
            ("image_std", &mut c.image_std),
        ] {
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
        if c.patch_size == 0 || c.merge_size == 0 || c.temporal_patch_size == 0 {
            bail!(
                "{}: patch_size, merge_size and temporal_patch_size must be > 0",
                path.display()
            );
        }
    }
    let c = match max_visual_tokens {
        Some(0) => bail!("max visual tokens must be > 0"),
        Some(n) => c.with_max_visual_tokens(n),
        None => c,
    };
    if c.visual_tokens() == 0 {
        bail!(
            "{}: max_pixels {} allows no visual token (one needs {} pixels)",
            path.map(|p| p.display().to_string()).unwrap_or_default(),
            c.max_pixels,
            c.factor() * c.factor()
        );
    }
    let min_pixels = c.min_pixels;
    Ok(PreprocessConfig {
        min_pixels: min_pixels.min(c.max_pixels),
        ..c
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_visual_tokens_sets_max_pixels_and_file_fields_are_read() {
        let c = load_preprocess_config(None, Some(768)).unwrap();
        assert_eq!(c.max_pixels, 768 * 28 * 28);
        assert_eq!(load_preprocess_config(None, None).unwrap(), c);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("preprocessor_config.json");
        std::fs::write(&p, r#"{"size": {"shortest_edge": 1000, "longest_edge": 99999}, "image_mean": [0.5, 0.5, 0.5]}"#).unwrap();
        let c = load_preprocess_config(Some(&p), Some(10)).unwrap();
        assert_eq!((c.min_pixels, c.max_pixels), (1000, 7840));
        let own = load_preprocess_config(Some(&p), None).unwrap();
        assert_eq!((own.max_pixels, own.visual_tokens()), (99999, 127));
        assert_eq!(c.image_mean, [0.5; 3]);
        std::fs::write(&p, r#"{"image_std": [1, 2]}"#).unwrap();
        let e = load_preprocess_config(Some(&p), Some(10))
            .unwrap_err()
            .to_string();
        assert!(e.contains("image_std"), "{e}");
    }
}
