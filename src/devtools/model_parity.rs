//! Embeddings of the committed reference fixture (tests/fixtures/colqwen_tiny: a tiny random
//! ColQwen2.5 + LoRA and what colpali-engine/transformers computed for it in f32) compared with
//! what a model built from it computes here, on any device and dtype. The CPU tests and the GPU
//! selftest both measure through this one function.

use anyhow::{anyhow, Context, Result};
use candle_core::{Device, Tensor};
use pagesight_engine::{DType, DeviceChoice, ModelSettings, Quant};
use pagesight_model::colqwen::ColQwen;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tolerance for bf16 against the f32 reference: the reference's own bf16 run is 1.28e-2 …
/// 1.41e-2 from its f32 output on this fixture (tests/model.rs says more).
pub const BF16_TOLERANCE: f64 = 1.5e-2;

pub struct ParityFixture {
    dir: PathBuf,
    expected: HashMap<String, Tensor>,
    queries: Vec<String>,
    n_images: usize,
}

/// A model's vectors for the fixture: (one per query, one per image).
pub type Embeddings = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// ‖a − b‖ / ‖b‖.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

impl ParityFixture {
    /// `dir` is the fixture folder (holding expected.safetensors, expected_nf4.safetensors,
    /// meta.json, model/, adapter/).
    pub fn load(dir: &Path) -> Result<Self> {
        let mut expected = HashMap::new();
        // The dense reference, and its NF4 models (`nf4_unmerged.*`, `nf4_merged.*`).
        for file in ["expected.safetensors", "expected_nf4.safetensors"] {
            expected.extend(
                candle_core::safetensors::load(dir.join(file), &Device::Cpu)
                    .with_context(|| format!("reading {}/{file}", dir.display()))?,
            );
        }
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("meta.json"))
                .with_context(|| format!("reading {}/meta.json", dir.display()))?,
        )?;
        let queries = meta["queries"]
            .as_array()
            .ok_or_else(|| anyhow!("meta.json: no queries"))?
            .iter()
            .filter_map(|q| q["text"].as_str().map(str::to_string))
            .collect();
        let n_images = meta["images"].as_array().map_or(0, Vec::len);
        Ok(ParityFixture {
            dir: dir.to_path_buf(),
            expected,
            queries,
            n_images,
        })
    }

    /// The fixture's model (with its adapter) on `device` in `dtype`.
    pub fn settings(&self, device: DeviceChoice, dtype: DType, quant: Quant) -> ModelSettings {
        ModelSettings {
            model: self.dir.join("model").to_string_lossy().into_owned(),
            adapter: Some(self.dir.join("adapter")),
            device,
            dtype,
            quant,
            // Callers that compare scopes set it on the result.
            quant_scope: pagesight_model::settings::QuantScope::AllLinear,
            // The reference's form over quantised weights; callers comparing forms set it.
            lora: pagesight_model::settings::LoraMode::Unmerged,
            compute: Default::default(),
            // The checkpoint's own: the fixture's processor says max_pixels 50176 = 64·28·28.
            max_visual_tokens: None,
            // Parity checks quantise afresh (and never write into the user's data dir).
            quant_cache: pagesight_model::settings::QuantCacheSetting::Off,
            gpu_kernels: Default::default(),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.expected
            .get(name)
            .ok_or_else(|| anyhow!("{name} missing from the fixture"))
    }

    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self
            .tensor(name)?
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?)
    }

    pub fn queries(&self) -> &[String] {
        &self.queries
    }

    /// Pixel rows of every fixture image, concatenated, and their grids.
    pub fn pixels(&self) -> Result<(Tensor, Vec<[u32; 3]>)> {
        let mut rows = Vec::new();
        let mut grids = Vec::new();
        for i in 0..self.n_images {
            rows.push(self.tensor(&format!("image_pixel_values.{i}"))?.clone());
            let g: Vec<i64> = self
                .tensor(&format!("image_grid_thw.{i}"))?
                .flatten_all()?
                .to_vec1()?;
            grids.push([g[0] as u32, g[1] as u32, g[2] as u32]);
        }
        Ok((Tensor::cat(&rows, 0)?, grids))
    }

    /// `model`'s embeddings of the fixture's queries and of its images, in order.
    pub fn embeddings(&self, model: &ColQwen) -> Result<Embeddings> {
        let queries = model.embed_queries(&self.queries)?;
        let (pixels, grids) = self.pixels()?;
        let pages = model.embed_images(&pixels, &grids)?;
        Ok((queries, pages.into_iter().map(|p| p.vectors).collect()))
    }

    /// (name, relative error) of every query and image embedding of `model` against the
    /// reference tensors named `{prefix}query.{i}` / `{prefix}image.{i}`.
    pub fn errors(&self, model: &ColQwen, prefix: &str) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        let (queries, pages) = self.embeddings(model)?;
        for (kind, vectors) in [("query", queries), ("image", pages)] {
            for (i, v) in vectors.iter().enumerate() {
                let name = format!("{prefix}{kind}.{i}");
                out.push((name.clone(), rel_err(v, &self.f32s(&name)?)));
            }
        }
        Ok(out)
    }
}
