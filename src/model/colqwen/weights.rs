//! Where the model's tensors come from: safetensors files (single or sharded, memory-mapped) or
//! deterministic random values, plus an optional PEFT LoRA adapter merged at load.
//!
//! The model asks for every tensor by its canonical name (`model.layers.0.self_attn.q_proj.weight`,
//! `visual.blocks.0.attn.qkv.weight`, `custom_text_proj.weight`) with the shape it expects; this
//! file maps the name to whatever the checkpoint uses (`language_model.layers.*`,
//! `model.language_model.*`, `model.visual.*`), checks the shape, merges the LoRA delta (or, for
//! quantised layers under `LoraMode::Unmerged`, keeps it beside the layer) and casts.

use super::lora::LoraAdapter;
use crate::quant::cache::dense_bytes;
use crate::quant::linear::planned_storage;
use crate::quant::{
    CacheKey, LayerStorage, LoraLinear, QLinear, QuantCacheReport, QuantCacheSession, QuantContext,
    QuantScope,
};
use crate::settings::{Compute, LoraMode, Quant};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

enum Backing {
    Files {
        st: candle_core::safetensors::MmapedSafetensors,
        names: HashSet<String>,
        files: Vec<PathBuf>,
    },
    /// Fixed-seed random values, generated on request from the tensor's name and shape.
    Random { seed: u64 },
}

pub struct Weights {
    backing: Backing,
    lora: Option<LoraAdapter>,
    /// How the adapter meets quantised layers (dense layers always merge it: exact there).
    lora_mode: LoraMode,
    dtype: DType,
    device: Device,
    /// Canonical names of LoRA deltas already applied, merged or beside their layer (to find
    /// adapter entries that matched nothing).
    merged: Mutex<HashSet<String>>,
    /// Quantisation applied to each linear layer as it is loaded (so the dense copy of one layer
    /// at a time is all the extra memory quantising costs).
    quant: Option<(Quant, QuantContext)>,
    /// Where quantised layers are read from instead of quantised, when caching.
    cache: Option<QuantCacheSession>,
    /// Time spent quantising layers so far (the load's other part is reading them).
    quantize_time: Mutex<std::time::Duration>,
}

/// Every spelling of a canonical name that checkpoints use.
pub fn key_candidates(canonical: &str) -> Vec<String> {
    if let Some(rest) = canonical.strip_prefix("model.") {
        vec![
            canonical.to_string(),
            format!("language_model.{rest}"),
            format!("model.language_model.{rest}"),
        ]
    } else if let Some(rest) = canonical.strip_prefix("visual.") {
        vec![canonical.to_string(), format!("model.visual.{rest}")]
    } else {
        vec![canonical.to_string(), format!("model.{canonical}")]
    }
}

/// The canonical spelling of a checkpoint (or adapter) module/tensor name.
pub fn canonical_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.language_model.") {
        format!("model.{rest}")
    } else if let Some(rest) = name.strip_prefix("language_model.") {
        format!("model.{rest}")
    } else if let Some(rest) = name.strip_prefix("model.visual.") {
        format!("visual.{rest}")
    } else if let Some(rest) = name.strip_prefix("model.custom_text_proj.") {
        format!("custom_text_proj.{rest}")
    } else {
        name.to_string()
    }
}

/// The weight files of a snapshot dir: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("reading {}", index.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{} has no `weight_map` object", index.display()))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        for p in &paths {
            if !p.is_file() {
                bail!(
                    "shard {} listed in {} is missing",
                    p.display(),
                    index.display()
                );
            }
        }
        return Ok(paths);
    }
    bail!(
        "no model.safetensors or model.safetensors.index.json in {} (is this a ColQwen2.5 snapshot dir?)",
        dir.display()
    )
}

impl Weights {
    pub fn from_files(
        files: &[PathBuf],
        lora: Option<LoraAdapter>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        // SAFETY: the files are mapped read-only; like every safetensors loader we assume nobody
        // truncates them while the model is loading.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(files) }
            .with_context(|| format!("opening safetensors {:?}", files))?;
        let names = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok(Weights {
            backing: Backing::Files {
                st,
                names,
                files: files.to_vec(),
            },
            lora,
            lora_mode: LoraMode::default(),
            dtype,
            device: device.clone(),
            merged: Mutex::new(HashSet::new()),
            quant: None,
            cache: None,
            quantize_time: Mutex::new(std::time::Duration::ZERO),
        })
    }

    pub fn random(seed: u64, lora: Option<LoraAdapter>, dtype: DType, device: &Device) -> Self {
        Weights {
            backing: Backing::Random { seed },
            lora,
            lora_mode: LoraMode::default(),
            dtype,
            device: device.clone(),
            merged: Mutex::new(HashSet::new()),
            quant: None,
            cache: None,
            quantize_time: Mutex::new(std::time::Duration::ZERO),
        }
    }

    /// Quantise the linear layers within `scope` to `quant` as they load (`Quant::None` keeps
    /// them all dense), their GEMMs computed as `compute` says.
    pub fn with_quant(mut self, quant: Quant, scope: QuantScope, compute: Compute) -> Self {
        self.quant = (quant != Quant::None).then(|| {
            (
                quant,
                QuantContext::new(&self.device)
                    .with_scope(scope)
                    .with_compute(compute),
            )
        });
        self
    }

    /// How the adapter meets the layers that are quantised.
    pub fn with_lora_mode(mut self, mode: LoraMode) -> Self {
        self.lora_mode = mode;
        self
    }

    /// Reads quantised layers from (and at [`Self::finish_quant_cache`] writes them to) the cache
    /// file in `dir` for this checkpoint (`checkpoint_hash`, LoRA `adapter_hash`, `source`: a
    /// fingerprint of the weight files) and these quantisation settings. No effect unquantised.
    pub fn with_quant_cache(
        mut self,
        dir: &Path,
        checkpoint_hash: &str,
        adapter_hash: Option<&str>,
        source: String,
    ) -> Self {
        if let Some((quant, ctx)) = &self.quant {
            let key = CacheKey {
                checkpoint_hash: checkpoint_hash.to_string(),
                adapter_hash: adapter_hash.map(String::from),
                dtype: self.dtype.as_str().to_string(),
                quant: *quant,
                nf4_blocksize: ctx.nf4_blocksize,
                double_quant: ctx.double_quant,
                scope: format!("{:?}", ctx.scope),
                pagesight_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            self.cache = Some(QuantCacheSession::open(dir, key, source));
        }
        self
    }

    /// Writes the cache file if this load had to quantise, and says what the cache did (None
    /// when not caching).
    pub fn finish_quant_cache(&mut self) -> Option<QuantCacheReport> {
        self.cache.take().map(QuantCacheSession::finish)
    }

    /// Seconds spent quantising layers during this load (not reading them, not the cache).
    pub fn quantize_secs(&self) -> f64 {
        self.quantize_time
            .lock()
            .map(|t| t.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// The quantisation context, when quantising (for its per-layer records).
    pub fn quant_context(&self) -> Option<&QuantContext> {
        self.quant.as_ref().map(|(_, c)| c)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dtype activations flow in between layers. On a GPU, the weights' (bf16 tensor-core
    /// GEMMs); on the CPU always f32: half-precision arithmetic is no faster there, and rounding
    /// every layer's inputs and outputs to bf16 is what held bf16 runs above 1e-2 of the f32
    /// reference — bf16/f16 then only stores the weights (half the memory), each GEMM reading
    /// them widened.
    pub fn activation_dtype(&self) -> DType {
        if self.device.is_cpu() {
            DType::F32
        } else {
            self.dtype
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn files(&self) -> &[PathBuf] {
        match &self.backing {
            Backing::Files { files, .. } => files,
            Backing::Random { .. } => &[],
        }
    }

    /// The shape of a tensor in the checkpoint, if present (random weights: None).
    pub fn stored_shape(&self, canonical: &str) -> Option<Vec<usize>> {
        match &self.backing {
            Backing::Files { st, names, .. } => {
                let key = key_candidates(canonical)
                    .into_iter()
                    .find(|k| names.contains(k))?;
                st.get(&key).ok().map(|v| v.shape().to_vec())
            }
            Backing::Random { .. } => None,
        }
    }

    /// Loads `canonical` with the expected `shape`, LoRA-merged, in the model dtype on the device.
    pub fn get(&self, canonical: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_as(canonical, shape, self.dtype)
    }

    /// As `get`, in an explicit dtype (norm weights stay f32).
    pub fn get_as(&self, canonical: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.load(canonical, shape, dtype, true)
    }

    /// `canonical` as stored, with its LoRA delta merged when `merge_lora`.
    fn load(
        &self,
        canonical: &str,
        shape: &[usize],
        dtype: DType,
        merge_lora: bool,
    ) -> Result<Tensor> {
        let base = match &self.backing {
            Backing::Files { st, names, .. } => {
                let cands = key_candidates(canonical);
                let key = cands.iter().find(|k| names.contains(*k)).with_context(|| {
                    format!(
                        "tensor `{canonical}` is missing from the checkpoint (looked for {:?})",
                        cands
                    )
                })?;
                let t = st
                    .load(key, &Device::Cpu)
                    .with_context(|| format!("loading tensor `{key}`"))?;
                if t.dims() != shape {
                    bail!(
                        "tensor `{key}` has shape {:?}, the config implies {:?}",
                        t.dims(),
                        shape
                    );
                }
                t
            }
            Backing::Random { seed } => random_tensor(*seed, canonical, shape, dtype)?,
        };
        let delta = match (&self.lora, merge_lora) {
            (Some(l), true) => l.delta_for(canonical)?,
            _ => None,
        };
        let merged = match delta {
            Some(delta) => {
                if delta.dims() != shape {
                    bail!(
                        "LoRA delta for `{canonical}` has shape {:?}, the weight is {:?}",
                        delta.dims(),
                        shape
                    );
                }
                self.note_applied(canonical)?;
                (base.to_dtype(DType::F32)? + delta)?
            }
            None => base,
        };
        Ok(merged.to_dtype(dtype)?.to_device(&self.device)?)
    }

    /// A linear layer `prefix.weight` [out, in] (+ `prefix.bias` [out]), quantised as asked,
    /// or read already quantised from the cache.
    pub fn linear(
        &self,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<QLinear> {
        let layer = match &self.quant {
            None => self.dense_linear(prefix, in_dim, out_dim, bias, true)?,
            Some((q, ctx)) => {
                let storage = planned_storage(ctx.quant_for(prefix, *q), in_dim);
                let merge = storage == LayerStorage::Dense || self.lora_mode == LoraMode::Merged;
                let layer = self.quantised_linear(prefix, in_dim, out_dim, bias, storage, merge)?;
                if merge {
                    layer
                } else {
                    self.with_lora_beside(prefix, layer)?
                }
            }
        };
        if self.device.is_cpu() {
            layer.advise_huge_pages();
        }
        Ok(layer)
    }

    /// The layer `prefix` quantised to `storage` (read from the cache when it holds it), with the
    /// LoRA delta merged first when `merge`.
    fn quantised_linear(
        &self,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        storage: LayerStorage,
        merge: bool,
    ) -> Result<QLinear> {
        let Some((q, ctx)) = &self.quant else {
            bail!("layer {prefix:?}: quantising without a quantisation");
        };
        if let (Some(cache), true) = (&self.cache, storage != LayerStorage::Dense) {
            let shape = (out_dim, in_dim);
            if let Some(layer) = cache.read(prefix, storage, shape, bias, ctx, &self.device) {
                layer.record_in(ctx, prefix, *q, dense_bytes(shape, bias, self.dtype));
                if merge {
                    self.note_merged_in_cache(prefix)?;
                }
                cache.keep(prefix, &layer, false);
                return Ok(layer);
            }
        }
        let dense = self.dense_linear(prefix, in_dim, out_dim, bias, merge)?;
        let started = std::time::Instant::now();
        let layer = dense.quantize_named(prefix, *q, ctx)?;
        if let Ok(mut t) = self.quantize_time.lock() {
            *t += started.elapsed();
        }
        if let Some(cache) = &self.cache {
            cache.keep(prefix, &layer, true);
        }
        Ok(layer)
    }

    /// `layer` with the adapter's factors for `prefix.weight` beside it (itself when the adapter
    /// does not change it), in the activation dtype on the device.
    fn with_lora_beside(&self, prefix: &str, layer: QLinear) -> Result<QLinear> {
        let canonical = format!("{prefix}.weight");
        let Some((down, up)) = self
            .lora
            .as_ref()
            .map(|l| l.factors_for(&canonical))
            .transpose()?
            .flatten()
        else {
            return Ok(layer);
        };
        let on_device = |t: Tensor| -> Result<Tensor> {
            Ok(t.to_dtype(self.activation_dtype())?
                .to_device(&self.device)?)
        };
        let layer = LoraLinear::new(layer, on_device(down)?, on_device(up)?)
            .with_context(|| format!("LoRA adapter on `{prefix}`"))?;
        self.note_applied(&canonical)?;
        Ok(QLinear::Lora(layer))
    }

    fn note_applied(&self, canonical: &str) -> Result<()> {
        self.merged
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned lock"))?
            .insert(canonical.to_string());
        Ok(())
    }

    fn dense_linear(
        &self,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        merge_lora: bool,
    ) -> Result<QLinear> {
        let w = self.load(
            &format!("{prefix}.weight"),
            &[out_dim, in_dim],
            self.dtype,
            merge_lora,
        )?;
        let b = if bias {
            Some(self.get(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Ok(QLinear::dense(w, b))
    }

    /// A layer read from the cache carries the LoRA deltas merged when it was written (the
    /// cache key holds the adapter's hash): count them as merged.
    fn note_merged_in_cache(&self, prefix: &str) -> Result<()> {
        let Some(l) = &self.lora else { return Ok(()) };
        let mut merged = self
            .merged
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned lock"))?;
        for t in l.targets() {
            if t.strip_prefix(prefix)
                .is_some_and(|rest| rest == ".weight" || rest == ".bias")
            {
                merged.insert(t.clone());
            }
        }
        Ok(())
    }

    /// An RMSNorm weight, kept in f32 (the norm is computed in f32).
    pub fn norm(&self, prefix: &str, dim: usize) -> Result<Tensor> {
        self.get_as(&format!("{prefix}.weight"), &[dim], DType::F32)
    }

    /// Fails if the adapter carries a delta for a weight the model never loaded.
    pub fn check_adapter_fully_used(&self) -> Result<()> {
        let Some(l) = &self.lora else { return Ok(()) };
        let merged = self
            .merged
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned lock"))?;
        let unused: Vec<&String> = l.targets().filter(|t| !merged.contains(*t)).collect();
        if !unused.is_empty() {
            bail!(
                "LoRA adapter {} has deltas for {} weights the model does not have, e.g. {:?}",
                l.dir().display(),
                unused.len(),
                &unused[..unused.len().min(3)]
            );
        }
        Ok(())
    }
}

/// splitmix64: a fast, well-mixed hash of a counter, enough for reproducible random weights.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Deterministic values for one tensor: norm weights 1, biases and embeddings ±0.02, matrices
/// uniform with std ≈ 1/√fan_in so activations stay O(1) through deep stacks.
pub(crate) fn random_tensor(
    seed: u64,
    name: &str,
    shape: &[usize],
    dtype: DType,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let is_norm = name.contains("norm") || name.contains("ln_q");
    if is_norm {
        return Ok(Tensor::ones(shape, dtype, &Device::Cpu)?);
    }
    let amp = if name.ends_with(".bias") || name.contains("embed_tokens") || shape.len() == 1 {
        0.02f32
    } else {
        let fan_in = shape[1..].iter().product::<usize>().max(1) as f32;
        (3.0f32 / fan_in).sqrt()
    };
    let base = splitmix64(
        seed ^ u64::from_le_bytes(blake3::hash(name.as_bytes()).as_bytes()[..8].try_into()?),
    );
    let value = |i: usize| {
        let r = splitmix64(base.wrapping_add(i as u64));
        ((r >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
    };
    const CHUNK: usize = 1 << 16;
    let t = match dtype {
        DType::BF16 => {
            let mut v = vec![half::bf16::ZERO; n];
            v.par_chunks_mut(CHUNK).enumerate().for_each(|(c, s)| {
                for (j, x) in s.iter_mut().enumerate() {
                    *x = half::bf16::from_f32(value(c * CHUNK + j));
                }
            });
            Tensor::from_vec(v, shape, &Device::Cpu)?
        }
        DType::F16 => {
            let mut v = vec![half::f16::ZERO; n];
            v.par_chunks_mut(CHUNK).enumerate().for_each(|(c, s)| {
                for (j, x) in s.iter_mut().enumerate() {
                    *x = half::f16::from_f32(value(c * CHUNK + j));
                }
            });
            Tensor::from_vec(v, shape, &Device::Cpu)?
        }
        _ => {
            let mut v = vec![0f32; n];
            v.par_chunks_mut(CHUNK).enumerate().for_each(|(c, s)| {
                for (j, x) in s.iter_mut().enumerate() {
                    *x = value(c * CHUNK + j);
                }
            });
            Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)?
        }
    };
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in [
            "model.layers.3.mlp.up_proj.weight",
            "visual.blocks.0.attn.qkv.bias",
            "custom_text_proj.weight",
        ] {
            for c in key_candidates(k) {
                assert_eq!(canonical_name(&c), k, "{c}");
            }
        }
    }

    #[test]
    fn random_is_deterministic_and_dtype_independent_in_f32() {
        let a = random_tensor(7, "x.weight", &[3, 5], DType::F32).unwrap();
        let b = random_tensor(7, "x.weight", &[3, 5], DType::F32).unwrap();
        let c = random_tensor(8, "x.weight", &[3, 5], DType::F32).unwrap();
        let diff = |x: &Tensor, y: &Tensor| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&a, &b), 0.0);
        assert!(diff(&a, &c) > 0.0);
        let h = random_tensor(7, "x.weight", &[3, 5], DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(diff(&a, &h) < 0.05);
    }
}
