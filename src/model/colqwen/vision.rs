//! The Qwen2.5-VL vision tower: patch embedding, 2D RoPE, window / full attention blocks and the
//! patch merger. Output rows are merged tokens in raster order of the merged grid, image after
//! image (what replaces the `<|image_pad|>` embeddings).

use super::config::VisionConfig;
use super::layers::{apply_rope, attention, GatedMlp, RmsNorm};
use super::profile::mark;
use super::weights::Weights;
use super::window::{plan_windows, WindowPlan};
use crate::gpu::attention_tiles::{DeviceTiles, TileTable, SEGMENT_TILE, WINDOW_TILE};
use crate::gpu::fused;
use crate::quant::QLinear;
use anyhow::{bail, Result};
use candle_core::{DType, Module, Tensor};
use std::sync::{Arc, Mutex};

/// Full-attention blocks attend in query chunks of this many rows so the score matrix of a big
/// page stays bounded (heads × chunk × patches).
const FULL_ATTENTION_QUERY_CHUNK: usize = 1024;

struct VisionBlock {
    norm1: RmsNorm,
    qkv: QLinear,
    proj: QLinear,
    norm2: RmsNorm,
    mlp: GatedMlp,
}

pub struct VisionTower {
    patch_embed: QLinear,
    blocks: Vec<VisionBlock>,
    merger_norm: RmsNorm,
    merger_fc1: QLinear,
    merger_fc2: QLinear,
    cfg: VisionConfig,
    activation_dtype: DType,
    device: candle_core::Device,
    /// RoPE tables and window plans of recent batch shapes: a corpus's pages mostly share one
    /// size, and building them on the host for every batch kept the GPU waiting.
    tables: Mutex<TableCache>,
}

/// Recent batch shapes (the grids) with their tables, least recently used first.
type TableCache = Vec<(Vec<[u32; 3]>, Arc<BatchTables>)>;

/// Everything the blocks read that depends only on the batch's grids.
struct BatchTables {
    cos: Tensor,
    sin: Tensor,
    /// cos and sin side by side, per patch: the fused window attention's table.
    cos_sin: Tensor,
    plan: WindowPlan,
    /// The tiled attention's tables (`attention_tiles`): windows (slots through `plan.gather`)
    /// and whole images (slots are patch rows).
    window_tiles: DeviceTiles,
    full_tiles: DeviceTiles,
}

/// Batch shapes whose tables are kept.
const TABLE_CACHE_ENTRIES: usize = 4;

impl VisionTower {
    pub fn load(w: &Weights, c: &VisionConfig) -> Result<Self> {
        let (hid, ps, tp) = (c.hidden_size, c.patch_size, c.temporal_patch_size);
        // Conv3d with stride = kernel over one patch is a linear layer over its flattened values.
        let conv = w.get(
            "visual.patch_embed.proj.weight",
            &[hid, c.in_channels, tp, ps, ps],
        )?;
        let patch_embed = QLinear::dense(conv.reshape((hid, c.patch_dim()))?, None);
        let eps = 1e-6;
        let mut blocks = Vec::with_capacity(c.depth);
        for i in 0..c.depth {
            let p = format!("visual.blocks.{i}");
            blocks.push(VisionBlock {
                norm1: RmsNorm::load(w, &format!("{p}.norm1"), hid, eps)?,
                qkv: w.linear(&format!("{p}.attn.qkv"), hid, 3 * hid, true)?,
                proj: w.linear(&format!("{p}.attn.proj"), hid, hid, true)?,
                norm2: RmsNorm::load(w, &format!("{p}.norm2"), hid, eps)?,
                mlp: GatedMlp::load(w, &format!("{p}.mlp"), hid, c.intermediate_size, true)?,
            });
        }
        let merged = hid * c.merge_unit();
        Ok(VisionTower {
            patch_embed,
            blocks,
            merger_norm: RmsNorm::load(w, "visual.merger.ln_q", hid, eps)?,
            merger_fc1: w.linear("visual.merger.mlp.0", merged, merged, true)?,
            merger_fc2: w.linear("visual.merger.mlp.2", merged, c.out_hidden_size, true)?,
            cfg: c.clone(),
            activation_dtype: w.activation_dtype(),
            device: w.device().clone(),
            tables: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// pixel_values [Σ patches, patch_dim] (any float dtype/device; moved to the model's),
    /// grids (t, h, w) in patches → merged tokens [Σ patches / merge², out_hidden].
    pub fn forward(&self, pixel_values: &Tensor, grids: &[[u32; 3]]) -> Result<Tensor> {
        let c = &self.cfg;
        let device = self.device.clone();
        let expected: usize = grids.iter().map(|g| (g[0] * g[1] * g[2]) as usize).sum();
        let (n, d) = pixel_values.dims2()?;
        if n != expected || d != c.patch_dim() {
            bail!(
                "pixel_values are [{n}, {d}], the grids {grids:?} need [{expected}, {}]",
                c.patch_dim()
            );
        }
        for g in grids {
            if !(g[1] as usize).is_multiple_of(c.spatial_merge_size)
                || !(g[2] as usize).is_multiple_of(c.spatial_merge_size)
            {
                bail!(
                    "image grid {g:?} is not a multiple of the merge size {}",
                    c.spatial_merge_size
                );
            }
        }
        super::profile::start(&device)?;
        let x = pixel_values
            .to_device(&device)?
            .to_dtype(self.activation_dtype)?;
        // f32 residual stream, as in the language model.
        let mut x = self.patch_embed.forward(&x)?.to_dtype(DType::F32)?;
        mark(&device, "vision.patch_embed")?;
        let tables = self.tables(grids)?;
        mark(&device, "vision.rope_tables+plan")?;
        // Each layer's output is added to the stream by the norm that reads it next.
        let mut pending = None;
        for (i, b) in self.blocks.iter().enumerate() {
            let full = c.fullatt_block_indexes.contains(&i);
            let normed;
            (x, normed) = b.norm1.forward_after(x, pending.take())?;
            mark(&device, "vision.residual+norm")?;
            let h = self.attention(b, &normed, &tables, full)?;
            let out;
            (x, out) = Self::mlp_after(b, x, h)?;
            pending = Some(out);
        }
        let (_, x) = self.merger_norm.forward_after(x, pending)?;
        let x = x.reshape((n / c.merge_unit(), c.hidden_size * c.merge_unit()))?;
        let x = self.merger_fc1.forward(&x)?.gelu_erf()?;
        let x = self.merger_fc2.forward(&x)?;
        mark(&device, "vision.merger")?;
        Ok(x)
    }

    /// The tables for `grids`, from the cache or built (and cached, oldest out).
    fn tables(&self, grids: &[[u32; 3]]) -> Result<Arc<BatchTables>> {
        let mut cache = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.iter().position(|(g, _)| g.as_slice() == grids) {
            let hit = cache.remove(i);
            let t = hit.1.clone();
            cache.push(hit);
            return Ok(t);
        }
        let c = &self.cfg;
        let (cos, sin) = super::rotary::vision_rope(
            grids,
            c.head_dim(),
            c.rope_theta(),
            c.spatial_merge_size,
            &self.device,
        )?;
        let cos_sin = Tensor::cat(&[&cos, &sin], 1)?;
        let plan = plan_windows(grids, c.merged_window(), c.spatial_merge_size, &self.device)?;
        // A window is one tile of its own; a whole image is cut into larger ones.
        let wl = plan.window_len;
        let mut window_tiles = TileTable::new(if wl <= WINDOW_TILE {
            WINDOW_TILE
        } else {
            SEGMENT_TILE
        });
        for w in 0..plan.n_windows {
            window_tiles.push_segment(w * wl, (w + 1) * wl, w * wl);
        }
        let mut full_tiles = TileTable::new(SEGMENT_TILE);
        for &(start, len) in &plan.frames {
            full_tiles.push_segment(start, start + len, start);
        }
        let t = Arc::new(BatchTables {
            cos,
            sin,
            cos_sin,
            plan,
            window_tiles: window_tiles.to_device(&self.device)?,
            full_tiles: full_tiles.to_device(&self.device)?,
        });
        if cache.len() >= TABLE_CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((grids.to_vec(), t.clone()));
        Ok(t)
    }

    /// The block's MLP after its attention output `h`: the stream `x + h` and the MLP's output.
    /// On the GPU, where the MLP's first GEMMs compute in FP8 from their own input, the norm
    /// between writes its rows as their FP8 codes.
    fn mlp_after(b: &VisionBlock, x: Tensor, h: Tensor) -> Result<(Tensor, Tensor)> {
        let device = x.device().clone();
        #[cfg(feature = "cuda")]
        {
            let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
            if b.mlp.takes_fp8_input(rows, &device) {
                if let Some((x, codes)) = b.norm2.forward_after_fp8(&x, &h)? {
                    mark(&device, "vision.residual+norm")?;
                    let out = b.mlp.forward_fp8(&codes)?;
                    mark(&device, "vision.mlp")?;
                    return Ok((x, out));
                }
            }
        }
        let (x, normed) = b.norm2.forward_after(x, Some(h))?;
        mark(&device, "vision.residual+norm")?;
        let out = b.mlp.forward(&normed)?;
        mark(&device, "vision.mlp")?;
        Ok((x, out))
    }

    fn attention(
        &self,
        b: &VisionBlock,
        x: &Tensor,
        tables: &BatchTables,
        full: bool,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (n, hid) = x.dims2()?;
        let (heads, hd) = (c.num_heads, c.head_dim());
        let (cos, sin, plan) = (&tables.cos, &tables.sin, &tables.plan);
        // qkv rows are laid out [3][heads][head_dim].
        let device = x.device();
        let qkv = b.qkv.forward(x)?;
        mark(device, "vision.qkv")?;
        // On the GPU: RoPE in place, then windowed or whole-image attention on tensor cores.
        let shape = fused::TiledAttentionShape {
            heads,
            kv_heads: heads,
            head_dim: hd,
            causal: false,
        };
        let (tiles, gather) = match full {
            true => (&tables.full_tiles, None),
            false => (&tables.window_tiles, Some(&plan.gather)),
        };
        if let Some(out) =
            fused::tiled_attention(qkv.clone(), &tables.cos_sin, tiles, gather, shape)?
        {
            mark(
                device,
                if full {
                    "vision.attn_full"
                } else {
                    "vision.attn_window"
                },
            )?;
            let out = b.proj.forward(&out)?;
            mark(device, "vision.proj")?;
            return Ok(out);
        }
        let qkv = qkv.reshape((n, 3, heads, hd))?;
        let part = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(1, i, 1)?
                .squeeze(1)?
                .transpose(0, 1)?
                .unsqueeze(0)?)
        };
        // [heads, n, hd]; the reference rotates in f32.
        let q = apply_rope(&part(0)?, cos, sin, DType::F32)?.squeeze(0)?;
        let k = apply_rope(&part(1)?, cos, sin, DType::F32)?.squeeze(0)?;
        let v = part(2)?.squeeze(0)?.contiguous()?;
        mark(device, "vision.rope")?;
        let scale = 1.0 / (hd as f64).sqrt();
        let out = if full {
            let mut parts = Vec::with_capacity(plan.frames.len());
            for &(start, len) in &plan.frames {
                let kf = k.narrow(1, start, len)?.unsqueeze(0)?.contiguous()?;
                let vf = v.narrow(1, start, len)?.unsqueeze(0)?.contiguous()?;
                let mut q0 = 0;
                while q0 < len {
                    let ql = FULL_ATTENTION_QUERY_CHUNK.min(len - q0);
                    let qf = q.narrow(1, start + q0, ql)?.unsqueeze(0)?.contiguous()?;
                    let o = attention(&qf, &kf, &vf, None, scale)?.squeeze(0)?;
                    parts.push(o);
                    q0 += ql;
                }
            }
            let out = Tensor::cat(&parts, 1)?;
            mark(device, "vision.attn_full")?;
            out
        } else {
            let (nw, wl) = (plan.n_windows, plan.window_len);
            let to_windows = |t: &Tensor| -> Result<Tensor> {
                let padded =
                    Tensor::cat(&[t, &t.narrow(1, 0, 1)?.zeros_like()?], 1)?.contiguous()?;
                Ok(padded
                    .index_select(&plan.gather, 1)?
                    .reshape((heads, nw, wl, hd))?
                    .transpose(0, 1)?
                    .contiguous()?)
            };
            let (qw, kw, vw) = (to_windows(&q)?, to_windows(&k)?, to_windows(&v)?);
            mark(device, "vision.window_gather")?;
            let o = attention(&qw, &kw, &vw, Some(&plan.key_mask), scale)?;
            mark(device, "vision.attn_window")?;
            let o = o
                .transpose(0, 1)?
                .reshape((heads, nw * wl, hd))?
                .contiguous()?
                .index_select(&plan.scatter, 1)?;
            mark(device, "vision.window_scatter")?;
            o
        };
        let out = out.transpose(0, 1)?.reshape((n, hid))?;
        let out = b.proj.forward(&out)?;
        mark(device, "vision.proj")?;
        Ok(out)
    }
}
