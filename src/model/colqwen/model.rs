//! ColQwen2.5: vision tower + Qwen2.5 LM + `custom_text_proj`, producing one L2-normalised
//! 128-dim vector per non-pad token of each page or query.

use super::image_input::load_preprocess_config;
use super::layers::l2_normalise_last;
use super::lora::LoraAdapter;
use super::processor::{Processor, QueryPrompt, TokenBatch};
use super::profile;
use super::source::{self, ResolvedModel, WeightSource};
use super::text::TextModel;
use super::vision::VisionTower;
use super::weights::Weights;
use crate::gpu::upload::upload;
use crate::quant::gemm::KernelContext;
use crate::quant::QLinear;
use crate::settings::{Compute, DType, LoraMode, ModelSettings, Quant, QuantScope};
use crate::PreprocessConfig;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Module, Tensor};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// One page's vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct PageEmbedding {
    /// n_tokens × dim, the non-pad tokens in sequence order (prompt tokens included).
    pub vectors: Vec<f32>,
    pub n_tokens: usize,
    /// Rows of `vectors` that are image tokens.
    pub image_rows: Range<usize>,
    /// Merged grid (rows, cols) of the image tokens.
    pub merged_grid: (u32, u32),
}

/// What made the vectors, so an index can refuse mixing models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// `--model` as given.
    pub name: String,
    /// blake3 of config.json's bytes plus each weight file's name and size (not the weight
    /// bytes: hashing 7.5 GB would take longer than loading); random models: of their name and seed.
    pub checkpoint_hash: String,
    /// blake3 of adapter_config.json + adapter_model.safetensors bytes.
    pub adapter_hash: Option<String>,
    /// The adapter as the index records it: its dir, or what a random model carries.
    #[serde(default)]
    pub adapter: Option<String>,
    pub dtype: DType,
    pub quant: Quant,
    /// Which layers `quant` applied to (`all` when unquantised: the scope changes nothing then).
    #[serde(default)]
    pub quant_scope: QuantScope,
    /// How the adapter met the weights: None without one; merged when the weights are dense
    /// (merging is exact there), else as `ModelSettings::lora` says.
    #[serde(default)]
    pub lora: Option<LoraMode>,
    /// The quantised layers' arithmetic (`Compute::Dtype` unless NF4 with fp8).
    #[serde(default)]
    pub compute: Compute,
    /// The page budget in force: the checkpoint's own, or the one asked for.
    pub max_visual_tokens: usize,
    pub query_prefix: String,
    pub query_augmentation: String,
    /// Random weights: vectors and rankings are meaningless.
    pub random: bool,
    pub embedding_dim: usize,
}

pub struct ColQwen {
    vision: VisionTower,
    text: TextModel,
    proj: QLinear,
    processor: Processor,
    image_input: PreprocessConfig,
    identity: ModelIdentity,
    device: Device,
    /// What quantisation did to the linear layers (None when unquantised).
    quant_summary: Option<crate::quant::context::QuantSummary>,
    /// What each linear layer became, in load order (empty when unquantised).
    quant_layers: Vec<crate::quant::LayerRecord>,
    /// What the quantised-weight cache did at load (None when unquantised or not caching).
    quant_cache: Option<crate::quant::QuantCacheReport>,
    /// Seconds of the load spent quantising, or reading and writing the quantised-weight cache.
    quantize_secs: f64,
}

/// The `OOM_ABOVE_PAGES` test hook: whether a batch of `pages` should fail as out of memory.
fn injected_out_of_memory(pages: usize) -> bool {
    static ABOVE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let above = ABOVE.get_or_init(|| {
        if !cfg!(feature = "test-hooks") {
            return None;
        }
        std::env::var(crate::env_vars::OOM_ABOVE_PAGES)
            .ok()?
            .parse()
            .ok()
    });
    above.is_some_and(|max| pages > max)
}

/// The vector width of the random models (ColQwen2.5's).
const RANDOM_EMBEDDING_DIM: usize = 128;

/// Shown wherever random-weight output is produced.
pub const RANDOM_WARNING: &str = "random weights: vectors and rankings are meaningless";

impl ColQwen {
    pub fn load(settings: &ModelSettings) -> Result<ColQwen> {
        let resolved = source::resolve(&settings.model)?;
        let device = settings.device.open()?;
        crate::gpu::fused::set_enabled(settings.gpu_kernels.fused);
        crate::gpu::fused::set_cublaslt(settings.gpu_kernels.cublaslt);
        crate::gpu::fused::set_nf4_rows(settings.gpu_kernels.nf4_rows);
        crate::gpu::fused::set_fp8_codes(settings.gpu_kernels.fp8_codes);
        if device.is_cuda() {
            // The f32 parts (attention after the f32 RoPE, norms) run their matmuls on tensor
            // cores as TF32, several times plain f32's rate; bf16/NF4 weights are unaffected.
            candle_core::cuda::set_gemm_reduced_precision_f32(true);
        }
        crate::quant::fp8::check_device(settings, &device)?;
        let adapter = Self::adapter_for(settings, &resolved)?;
        Self::from_resolved(resolved, adapter, settings, &device)
    }

    /// The adapter `settings` names, else the one a random model carries, else none.
    fn adapter_for(
        settings: &ModelSettings,
        resolved: &ResolvedModel,
    ) -> Result<Option<LoraAdapter>> {
        Ok(match &settings.adapter {
            Some(dir) => {
                if resolved.is_random() {
                    bail!(
                        "--adapter cannot be combined with the random model {}",
                        settings.model
                    );
                }
                Some(LoraAdapter::load(&source::resolve_adapter(dir)?)?)
            }
            None => resolved
                .random_adapter_rank
                .map(|rank| {
                    LoraAdapter::random(
                        &resolved.config.text,
                        RANDOM_EMBEDDING_DIM,
                        rank,
                        source::RANDOM_SEED,
                    )
                })
                .transpose()?,
        })
    }

    fn from_resolved(
        r: ResolvedModel,
        adapter: Option<LoraAdapter>,
        s: &ModelSettings,
        device: &Device,
    ) -> Result<Self> {
        let cfg = &r.config;
        let processor = Processor::load(
            &r.tokenizer,
            cfg.vision.spatial_merge_size,
            QueryPrompt::default(),
        )?;
        if let Some(id) = cfg.special.image_token_id {
            if id != processor.special.image_pad {
                bail!(
                    "config.json says image_token_id {id}, but the tokenizer {} has `<|image_pad|>` = {}",
                    r.tokenizer.display(),
                    processor.special.image_pad
                );
            }
        }
        if processor.vocab_size() > cfg.text.vocab_size {
            bail!(
                "tokenizer {} has {} tokens, more than the model's vocab_size {}",
                r.tokenizer.display(),
                processor.vocab_size(),
                cfg.text.vocab_size
            );
        }
        let adapter_hash = adapter.as_ref().map(|a| a.hash.clone());
        let adapter_dir = adapter.as_ref().map(|a| a.dir().to_path_buf());
        // As the user named it (a dir or a hub id), else the random model's own.
        let adapter_name = match &s.adapter {
            Some(given) => Some(given.display().to_string()),
            None => adapter.as_ref().map(LoraAdapter::name),
        };
        // How the adapter meets the weights: merging is exact on dense weights.
        let lora = adapter.as_ref().map(|_| s.lora_in_effect());
        // Quantised layers are cached as they are stored: the base weights alone when the
        // adapter runs beside them, so every adapter of one base shares them.
        let cached_adapter_hash = match lora {
            Some(LoraMode::Merged) => adapter_hash.clone(),
            _ => None,
        };
        let dtype = s.dtype.candle();
        let (weights, checkpoint_hash, source) = match &r.weights {
            WeightSource::Files(files) => {
                let mut h = blake3::Hasher::new();
                h.update(&r.config_bytes);
                for f in files {
                    let len = std::fs::metadata(f)
                        .with_context(|| format!("reading {}", f.display()))?
                        .len();
                    h.update(
                        f.file_name()
                            .map(|n| n.as_encoded_bytes())
                            .unwrap_or_default(),
                    );
                    h.update(&len.to_le_bytes());
                }
                (
                    Weights::from_files(files, adapter, dtype, device)?,
                    h.finalize().to_hex().to_string(),
                    crate::quant::cache::source_fingerprint(files),
                )
            }
            WeightSource::Random { seed } => {
                let mut h = blake3::Hasher::new();
                h.update(&r.config_bytes);
                h.update(&seed.to_le_bytes());
                (
                    Weights::random(*seed, adapter, dtype, device),
                    h.finalize().to_hex().to_string(),
                    format!("random weights, seed {seed}"),
                )
            }
        };
        let weights = weights
            .with_quant(s.quant, s.quant_scope, s.compute_in_effect())
            .with_lora_mode(s.lora);
        let mut weights = match s.quant_cache.dir() {
            Some(dir) => weights.with_quant_cache(
                &dir,
                &checkpoint_hash,
                cached_adapter_hash.as_deref(),
                source,
            ),
            None => weights,
        };
        let vision = VisionTower::load(&weights, &cfg.vision)?;
        let text = TextModel::load(&weights, &cfg.text)?;
        let dim = weights
            .stored_shape("custom_text_proj.weight")
            .map(|s| s[0])
            .unwrap_or(RANDOM_EMBEDDING_DIM);
        // The head is tiny (dim × hidden) and sets the final precision: kept in f32.
        let proj = QLinear::dense(
            weights.get_as(
                "custom_text_proj.weight",
                &[dim, cfg.text.hidden_size],
                candle_core::DType::F32,
            )?,
            Some(weights.get_as("custom_text_proj.bias", &[dim], candle_core::DType::F32)?),
        );
        weights.check_adapter_fully_used()?;
        let quant_cache = weights.finish_quant_cache();
        if let Some(report) = &quant_cache {
            for w in &report.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!("{}", report.describe());
        }
        let quantize_secs = weights.quantize_secs()
            + quant_cache
                .as_ref()
                .map(|r| r.read_s + r.write_s)
                .unwrap_or(0.0);
        let quant_summary = weights.quant_context().map(|c| c.summary());
        let quant_layers = weights
            .quant_context()
            .map(|c| c.records())
            .unwrap_or_default();
        // colpali-engine loads the processor from the adapter's repo when there is one.
        let processor_config = adapter_dir
            .map(|d| d.join("preprocessor_config.json"))
            .filter(|p| p.is_file())
            .or(r.preprocessor_config.clone());
        let image_input = load_preprocess_config(processor_config.as_deref(), s.max_visual_tokens)?;
        let identity = ModelIdentity {
            name: r.name.clone(),
            checkpoint_hash,
            adapter_hash,
            adapter: adapter_name,
            dtype: s.dtype,
            quant: s.quant,
            quant_scope: s.effective_quant_scope(),
            lora,
            compute: s.compute_in_effect(),
            max_visual_tokens: image_input.visual_tokens(),
            query_prefix: processor.query.prefix.clone(),
            query_augmentation: processor
                .query
                .augmentation_token
                .repeat(processor.query.augmentation_count),
            random: r.is_random(),
            embedding_dim: dim,
        };
        if identity.random {
            tracing::warn!("{}: {RANDOM_WARNING}", r.name);
        }
        Ok(ColQwen {
            vision,
            text,
            proj,
            processor,
            image_input,
            identity,
            device: device.clone(),
            quant_summary,
            quant_layers,
            quant_cache,
            quantize_secs,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Layers quantised and bytes before/after, when loaded with `--quant`.
    pub fn quant_summary(&self) -> Option<&crate::quant::context::QuantSummary> {
        self.quant_summary.as_ref()
    }

    /// How each linear layer is stored, by name (empty when unquantised): which layers the
    /// quantisation scope reached.
    pub fn quant_layers(&self) -> &[crate::quant::LayerRecord] {
        &self.quant_layers
    }

    /// Whether the quantised weights came from the cache, were quantised (and cached), and
    /// why a cache file could not be used (None when unquantised or not caching).
    pub fn quant_cache_report(&self) -> Option<&crate::quant::QuantCacheReport> {
        self.quant_cache.as_ref()
    }

    /// Seconds of the load spent quantising, or reading and writing the quantised-weight cache.
    pub fn quantize_secs(&self) -> f64 {
        self.quantize_secs
    }

    pub fn identity(&self) -> ModelIdentity {
        self.identity.clone()
    }

    pub fn is_random(&self) -> bool {
        self.identity.random
    }

    pub fn embedding_dim(&self) -> usize {
        self.identity.embedding_dim
    }

    /// Image settings (smart_resize bounds, patch sizes, mean/std) for the preprocessor.
    pub fn preprocess_config(&self) -> PreprocessConfig {
        self.image_input.clone()
    }

    /// Changes how queries are written (prefix, augmentation tokens) for later calls.
    pub fn set_query_prompt(&mut self, prompt: QueryPrompt) {
        self.identity.query_prefix = prompt.prefix.clone();
        self.identity.query_augmentation =
            prompt.augmentation_token.repeat(prompt.augmentation_count);
        self.processor.query = prompt;
    }

    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// Unpadded token ids of the page prompt for an image of `grid` (t, h, w) patches.
    pub fn image_input_ids(&self, grid: [u32; 3]) -> Vec<u32> {
        self.processor.image_ids(grid)
    }

    /// Unpadded token ids of a query.
    pub fn query_input_ids(&self, query: &str) -> Result<Vec<u32>> {
        self.processor.query_ids(query)
    }

    /// Pages end to end: pixel rows [Σ patches, 1176] (f32, any device) with their grids.
    pub fn embed_images(
        &self,
        pixel_values: &Tensor,
        grids: &[[u32; 3]],
    ) -> Result<Vec<PageEmbedding>> {
        if grids.is_empty() {
            return Ok(Vec::new());
        }
        let vision = self.vision_forward(pixel_values, grids)?;
        self.lm_forward(&vision, grids)
    }

    /// The vision tower alone: merged image tokens [Σ patches/4, hidden], image after image.
    pub fn vision_forward(&self, pixel_values: &Tensor, grids: &[[u32; 3]]) -> Result<Tensor> {
        if injected_out_of_memory(grids.len()) {
            return Err(crate::error::ModelError::OutOfMemory { pages: grids.len() }.into());
        }
        self.vision.forward(pixel_values, grids)
    }

    /// The LM and head over a batch of pages whose vision output is `vision_embeds`, with the
    /// vectors brought to the host.
    pub fn lm_forward(
        &self,
        vision_embeds: &Tensor,
        grids: &[[u32; 3]],
    ) -> Result<Vec<PageEmbedding>> {
        let (projected, batch) = self.lm_project(vision_embeds, grids)?;
        self.page_embeddings(&projected, &batch, grids)
    }

    /// The LM and head, leaving the normalised vectors [b, s, dim] (f32) on the device, so the
    /// caller can time the copy back separately.
    pub fn lm_project(
        &self,
        vision_embeds: &Tensor,
        grids: &[[u32; 3]],
    ) -> Result<(Tensor, TokenBatch)> {
        let (hidden, batch) = self.image_last_hidden(vision_embeds, grids)?;
        Ok((self.project_device(&hidden)?, batch))
    }

    /// `page_embeddings` for a projection made by `lm_project` on these grids (the token batch is
    /// rebuilt from the grids: it is a pure function of them).
    pub fn page_embeddings_for(
        &self,
        projected: &Tensor,
        grids: &[[u32; 3]],
    ) -> Result<Vec<PageEmbedding>> {
        let seqs: Vec<Vec<u32>> = grids.iter().map(|&g| self.processor.image_ids(g)).collect();
        let batch = self.processor.batch(seqs, grids)?;
        self.page_embeddings(projected, &batch, grids)
    }

    /// Copies projected page vectors to the host and keeps each page's non-pad rows.
    pub fn page_embeddings(
        &self,
        projected: &Tensor,
        batch: &TokenBatch,
        grids: &[[u32; 3]],
    ) -> Result<Vec<PageEmbedding>> {
        let vectors = to_host_rows(projected)?;
        super::profile::mark(&self.device, "lm.head+fetch")?;
        let before_image = self.processor.tokens_before_image();
        let m = self.vision.config().spatial_merge_size as u32;
        let mut out = Vec::with_capacity(grids.len());
        for (row, grid) in grids.iter().enumerate() {
            let n_image =
                (grid[0] * grid[1] * grid[2]) as usize / self.vision.config().merge_unit();
            let (v, n) = self.real_rows(&vectors, batch, row)?;
            out.push(PageEmbedding {
                vectors: v,
                n_tokens: n,
                image_rows: before_image..before_image + n_image,
                merged_grid: (grid[1] / m, grid[2] / m),
            });
        }
        Ok(out)
    }

    /// Final-normed LM hidden states [b, s, hidden] of the page batch (left-padded) and the
    /// token batch they came from. Image features replace the `<|image_pad|>` embeddings in order.
    pub fn image_last_hidden(
        &self,
        vision_embeds: &Tensor,
        grids: &[[u32; 3]],
    ) -> Result<(Tensor, TokenBatch)> {
        let seqs: Vec<Vec<u32>> = grids.iter().map(|&g| self.processor.image_ids(g)).collect();
        let batch = self.processor.batch(seqs, grids)?;
        let (b, s) = (batch.len(), batch.seq_len());
        let ids = self.ids_tensor(&batch)?;
        let hidden = self.text.config().hidden_size;
        let embeds = self.text.embed(&ids)?.reshape((b * s, hidden))?;
        // On the CPU activations are f32 (`Weights::activation_dtype`): the image rows keep the
        // vision tower's f32 output instead of rounding it to the embedding table's dtype.
        let embeds = if self.device.is_cpu() {
            embeds.to_dtype(candle_core::DType::F32)?
        } else {
            embeds
        };
        // One gather: image-token rows read from the vision output appended after the text rows.
        let n_vision = vision_embeds.dim(0)?;
        let mut index = Vec::with_capacity(b * s);
        let mut next_vision = 0u32;
        for (i, &t) in batch.input_ids.iter().flatten().enumerate() {
            if t == self.processor.special.image_pad {
                index.push((b * s) as u32 + next_vision);
                next_vision += 1;
            } else {
                index.push(i as u32);
            }
        }
        if next_vision as usize != n_vision {
            bail!(
                "the prompts hold {next_vision} image tokens but the vision tower gave {n_vision}"
            );
        }
        let index = upload(index, b * s, &self.device)?;
        let vision_embeds = vision_embeds.to_dtype(embeds.dtype())?;
        let embeds = Tensor::cat(&[&embeds, &vision_embeds], 0)?
            .index_select(&index, 0)?
            .reshape((b, s, hidden))?;
        super::profile::mark(&self.device, "lm.embed")?;
        let last = self
            .text
            .forward(&embeds, &batch.attention_mask, &batch.positions)?;
        Ok((last, batch))
    }

    /// Queries: one Vec of n_tokens × dim values per query (non-pad tokens in order).
    pub fn embed_queries(&self, queries: &[String]) -> Result<Vec<Vec<f32>>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.query_batch(queries)?;
        let forward = || {
            crate::quant::gemm::for_queries(|| -> Result<_> {
                let hidden = self.last_hidden_of(&batch)?;
                to_host_rows(&self.project_device(&hidden)?)
            })
        };
        let rows = batch.len() * batch.seq_len();
        let context = KernelContext::here();
        let few_rows = rows <= crate::quant::fp8::FEW_ROWS && context.kernels_on();
        let vectors = if self.device.is_cpu() && few_rows {
            // The products spread over every core on their own pool; candle's other steps, too
            // small for a query's few rows to split, stay on one thread (`on_one_rayon_thread`),
            // which takes this thread's kernel settings and section timing along and gives the
            // timing back. More rows take candle's GEMM, which wants rayon's every core.
            let timing = profile::detach();
            let (out, timing) = crate::parallel::on_one_rayon_thread(move || {
                profile::attach(timing);
                let out = context.apply(forward);
                (out, profile::detach())
            });
            profile::attach(timing);
            out?
        } else {
            forward()?
        };
        (0..queries.len())
            .map(|row| Ok(self.real_rows(&vectors, &batch, row)?.0))
            .collect()
    }

    /// Final-normed LM hidden states of a left-padded query batch.
    pub fn query_last_hidden(&self, queries: &[String]) -> Result<(Tensor, TokenBatch)> {
        let batch = self.query_batch(queries)?;
        Ok((self.last_hidden_of(&batch)?, batch))
    }

    /// The queries' prompts tokenised and left-padded into one batch.
    fn query_batch(&self, queries: &[String]) -> Result<TokenBatch> {
        let seqs = queries
            .iter()
            .map(|q| self.processor.query_ids(q))
            .collect::<Result<Vec<_>>>()?;
        self.processor.batch(seqs, &[])
    }

    /// Final-normed LM hidden states of a query batch.
    fn last_hidden_of(&self, batch: &TokenBatch) -> Result<Tensor> {
        let embeds = self.text.embed(&self.ids_tensor(batch)?)?;
        self.text
            .forward(&embeds, &batch.attention_mask, &batch.positions)
    }

    fn ids_tensor(&self, batch: &TokenBatch) -> Result<Tensor> {
        let flat: Vec<u32> = batch.input_ids.iter().flatten().copied().collect();
        Ok(upload(flat, (batch.len(), batch.seq_len()), &self.device)?)
    }

    /// custom_text_proj → L2 normalise, f32, on the device: [b, s, dim].
    fn project_device(&self, hidden: &Tensor) -> Result<Tensor> {
        let p = crate::quant::gemm::exact_products(|| self.proj.forward(hidden))?
            .to_dtype(candle_core::DType::F32)?;
        Ok(l2_normalise_last(&p)?)
    }

    /// Runs one small page and one query so that first-use costs (CUDA's JIT compilation of
    /// kernel modules, cuBLAS handles) are paid before timing starts.
    pub fn warm_up(&self) -> Result<()> {
        let c = &self.image_input;
        let side = c.factor() * 2;
        let rgb = vec![128u8; (side * side * 3) as usize];
        let (rows, grid) = crate::preprocess_rgb(&rgb, side, side, c)?;
        let n = rows.len() / c.patch_dim();
        let pixels = Tensor::from_vec(rows, (n, c.patch_dim()), &self.device)?;
        self.embed_images(&pixels, &[grid])?;
        self.embed_queries(&["warm up".to_string()])?;
        self.device.synchronize()?;
        Ok(())
    }

    /// The non-pad rows of batch row `row` (pads are on the left), and their count.
    fn real_rows(
        &self,
        vectors: &[Vec<f32>],
        batch: &TokenBatch,
        row: usize,
    ) -> Result<(Vec<f32>, usize)> {
        let d = self.identity.embedding_dim;
        let pad = batch.pad_len(row);
        let n = batch.seq_len() - pad;
        Ok((vectors[row][pad * d..].to_vec(), n))
    }
}

/// [b, s, d] → per batch row, s·d host values.
fn to_host_rows(p: &Tensor) -> Result<Vec<Vec<f32>>> {
    let (b, s, d) = p.dims3()?;
    Ok(p.reshape((b, s * d))?.to_vec2::<f32>()?)
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
