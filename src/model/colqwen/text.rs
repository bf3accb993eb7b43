//! The Qwen2.5 language model: pre-norm decoder with GQA, q/k/v bias, M-RoPE, causal plus
//! left-padding mask; returns the final-normed hidden states.

use super::config::TextConfig;
use super::layers::{apply_rope, attention, GatedMlp, RmsNorm, MASKED};
use super::profile::mark;
use super::weights::Weights;
use crate::gpu::attention_tiles::{DeviceTiles, TileTable, SEGMENT_TILE};
use crate::gpu::fused;
use crate::quant::gemm::exact_products;
use crate::quant::QLinear;
use anyhow::Result;
use candle_core::{DType, Device, Module, Tensor};
// [b, kv_heads, s, d] → [b, kv_heads·n_rep, s, d], head h reading kv head h / n_rep: the
// reference's `repeat_kv`, an exact copy (see the test below).
use candle_transformers::utils::repeat_kv;

struct SelfAttention {
    /// q, k and v, which read the same input, as one layer (`QLinear::stack`): outputs
    /// `[q | k | v]`.
    qkv: QLinear,
    o: QLinear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn load(w: &Weights, p: &str, c: &TextConfig) -> Result<Self> {
        let hd = c.head_dim();
        let (h, kvh) = (c.num_attention_heads, c.num_key_value_heads);
        Ok(SelfAttention {
            qkv: QLinear::stack(vec![
                w.linear(&format!("{p}.q_proj"), c.hidden_size, h * hd, true)?,
                w.linear(&format!("{p}.k_proj"), c.hidden_size, kvh * hd, true)?,
                w.linear(&format!("{p}.v_proj"), c.hidden_size, kvh * hd, true)?,
            ])?,
            o: w.linear(&format!("{p}.o_proj"), h * hd, c.hidden_size, false)?,
            heads: h,
            kv_heads: kvh,
            head_dim: hd,
        })
    }

    fn forward(&self, x: &Tensor, t: &AttentionTables) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let qkv = self.qkv.forward(x)?;
        mark(x.device(), "lm.qkv")?;
        if let Some((cos_sin, tiles)) = &t.fused {
            let shape = fused::TiledAttentionShape {
                heads: self.heads,
                kv_heads: self.kv_heads,
                head_dim: self.head_dim,
                causal: true,
            };
            // On the GPU: RoPE in place, then GQA causal attention on tensor cores, each row
            // seeing keys from its first non-padding position (`AttentionTables::fused`).
            let rows = qkv.reshape((b * s, ()))?;
            if let Some(out) = fused::tiled_attention(rows, cos_sin, tiles, None, shape)? {
                mark(x.device(), "lm.attn_fused")?;
                let out = self.o.forward(&out.reshape((b, s, ()))?)?;
                mark(x.device(), "lm.o_proj")?;
                return Ok(out);
            }
        }
        let (cos, sin, mask) = (&t.cos, &t.sin, t.mask(x.device())?);
        let (nq, nkv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let (q, k, v) = (
            qkv.narrow(2, 0, nq)?,
            qkv.narrow(2, nq, nkv)?,
            qkv.narrow(2, nq + nkv, nkv)?,
        );
        let split = |t: Tensor, n: usize| {
            t.reshape((b, s, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (
            split(q, self.heads)?,
            split(k, self.kv_heads)?,
            split(v, self.kv_heads)?,
        );
        // Rotated in f32 (the reference rotates in the activation dtype; f32 is closer to the
        // f32 reference for half-precision runs and costs little).
        let q = apply_rope(&q, cos, sin, DType::F32)?;
        let k = apply_rope(&k, cos, sin, DType::F32)?;
        let rep = self.heads / self.kv_heads;
        let k = repeat_kv(k, rep)?;
        let v = repeat_kv(v, rep)?;
        mark(x.device(), "lm.rope+repeat_kv")?;
        let out = attention(&q, &k, &v, Some(mask), 1.0 / (self.head_dim as f64).sqrt())?;
        mark(x.device(), "lm.attn")?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, s, self.heads * self.head_dim))?;
        let out = self.o.forward(&out)?;
        mark(x.device(), "lm.o_proj")?;
        Ok(out)
    }
}

struct DecoderLayer {
    input_norm: RmsNorm,
    attn: SelfAttention,
    post_norm: RmsNorm,
    mlp: GatedMlp,
}

pub struct TextModel {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    cfg: TextConfig,
}

impl TextModel {
    pub fn load(w: &Weights, c: &TextConfig) -> Result<Self> {
        let embed_tokens = w.get("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size])?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(DecoderLayer {
                input_norm: RmsNorm::load(
                    w,
                    &format!("{p}.input_layernorm"),
                    c.hidden_size,
                    c.rms_norm_eps,
                )?,
                attn: SelfAttention::load(w, &format!("{p}.self_attn"), c)?,
                post_norm: RmsNorm::load(
                    w,
                    &format!("{p}.post_attention_layernorm"),
                    c.hidden_size,
                    c.rms_norm_eps,
                )?,
                mlp: GatedMlp::load(
                    w,
                    &format!("{p}.mlp"),
                    c.hidden_size,
                    c.intermediate_size,
                    false,
                )?,
            });
        }
        // The final hidden state feeds the small 128-wide head, which runs in f32.
        let norm =
            RmsNorm::load(w, "model.norm", c.hidden_size, c.rms_norm_eps)?.with_output(DType::F32);
        Ok(TextModel {
            embed_tokens,
            layers,
            norm,
            cfg: c.clone(),
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// Token embeddings [b, s, hidden] for ids [b, s] (u32).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let flat = self.embed_tokens.index_select(&ids.flatten_all()?, 0)?;
        Ok(flat.reshape((b, s, self.cfg.hidden_size))?)
    }

    /// Runs the decoder over input embeddings [b, s, hidden]. `attention_mask[b][s]` is 1 for real
    /// tokens, 0 for (left) padding; `positions[b][axis][s]` are the M-RoPE position ids.
    pub fn forward(
        &self,
        embeds: &Tensor,
        attention_mask: &[Vec<u32>],
        positions: &[[Vec<i64>; 3]],
    ) -> Result<Tensor> {
        let device = embeds.device();
        let c = &self.cfg;
        let (cos, sin) = super::rotary::mrope(
            positions,
            c.head_dim(),
            c.rope_theta,
            &c.mrope_section,
            device,
        )?;
        let fused = match left_padding(attention_mask) {
            Some(starts) if device.is_cuda() => {
                let (b, seq) = (attention_mask.len(), attention_mask[0].len());
                let mut tiles = TileTable::new(SEGMENT_TILE);
                for (row, start) in starts.iter().enumerate() {
                    let begin = row * seq;
                    tiles.push_segment(begin, begin + seq, begin + *start as usize);
                }
                Some((
                    Tensor::cat(&[&cos, &sin], 2)?.reshape((b * seq, c.head_dim()))?,
                    tiles.to_device(device)?,
                ))
            }
            _ => None,
        };
        let tables = AttentionTables {
            cos,
            sin,
            mask: std::cell::OnceCell::new(),
            attention_mask,
            fused,
        };
        mark(device, "lm.rope_tables+mask")?;
        // The residual stream stays f32 whatever the weight dtype: half-precision runs then
        // round only inside the layers, which keeps bf16 within 1e-2 of the f32 reference.
        let mut x = embeds.to_dtype(DType::F32)?;
        // Each layer's output is added to the stream by the norm that reads it next.
        let mut pending = None;
        for l in &self.layers {
            let normed;
            (x, normed) = l.input_norm.forward_after(x, pending.take())?;
            mark(device, "lm.residual+norm")?;
            // The attention's projections in f32 products on the CPU even where the MLP's are
            // bf16: they are a sixth of a query's time and most of what bf16 moves its vectors.
            let h = exact_products(|| l.attn.forward(&normed, &tables))?;
            let normed;
            (x, normed) = l.post_norm.forward_after(x, Some(h))?;
            mark(device, "lm.residual+norm")?;
            pending = Some(l.mlp.forward(&normed)?);
            mark(device, "lm.mlp")?;
        }
        let (_, out) = self.norm.forward_after(x, pending)?;
        mark(device, "lm.norm")?;
        Ok(out)
    }
}

/// What every layer's attention reads: the M-RoPE tables, the additive mask, and for the tiled
/// GPU kernel the tables side by side ([b·s, hd]) with its tile table: one segment per sequence,
/// keys from the row's first non-padding position.
struct AttentionTables<'a> {
    cos: Tensor,
    sin: Tensor,
    /// Built on first use: the fused kernel never needs it (b·s² floats made on the host).
    mask: std::cell::OnceCell<Tensor>,
    attention_mask: &'a [Vec<u32>],
    fused: Option<(Tensor, DeviceTiles)>,
}

impl AttentionTables<'_> {
    fn mask(&self, device: &Device) -> Result<&Tensor> {
        if self.mask.get().is_none() {
            let m = causal_padding_mask(self.attention_mask, device)?;
            let _ = self.mask.set(m);
        }
        self.mask
            .get()
            .ok_or_else(|| anyhow::anyhow!("attention mask missing"))
    }
}

/// Each row's first attended position, when every row is left-padded (zeros, then only ones);
/// None for any other mask, which the fused kernel does not express.
fn left_padding(attention_mask: &[Vec<u32>]) -> Option<Vec<u32>> {
    attention_mask
        .iter()
        .map(|row| {
            let start = row.iter().position(|&m| m != 0).unwrap_or(row.len());
            row[start..].iter().all(|&m| m == 1).then_some(start as u32)
        })
        .collect()
}

/// Additive f32 mask [b, 1, s, s]: query i may see key j ≤ i whose attention_mask is 1.
fn causal_padding_mask(attention_mask: &[Vec<u32>], device: &Device) -> Result<Tensor> {
    let b = attention_mask.len();
    let s = attention_mask.first().map(Vec::len).unwrap_or(0);
    let mut m = vec![0f32; b * s * s];
    for (bi, row) in attention_mask.iter().enumerate() {
        for i in 0..s {
            for j in 0..s {
                if j > i || row[j] == 0 {
                    m[(bi * s + i) * s + j] = MASKED;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, s, s), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GQA as the reference does it: query head h attends with key/value head h / n_rep.
    #[test]
    fn repeat_kv_gives_each_query_head_its_group_kv_head() {
        let (b, kvh, s, d, rep) = (2, 3, 4, 5, 4);
        let x = Tensor::arange(0f32, (b * kvh * s * d) as f32, &Device::Cpu)
            .unwrap()
            .reshape((b, kvh, s, d))
            .unwrap();
        let r = repeat_kv(x.clone(), rep).unwrap();
        assert_eq!(r.dims4().unwrap(), (b, kvh * rep, s, d));
        let head = |t: &Tensor, bi: usize, h: usize| {
            t.get(bi).unwrap().get(h).unwrap().to_vec2::<f32>().unwrap()
        };
        for bi in 0..b {
            for h in 0..kvh * rep {
                assert_eq!(
                    head(&r, bi, h),
                    head(&x, bi, h / rep),
                    "batch {bi} head {h}"
                );
            }
        }
        assert_eq!(
            repeat_kv(x.clone(), 1).unwrap().dims4().unwrap(),
            (b, kvh, s, d)
        );
    }
}
