//! The Qwen2.5 language model: pre-norm decoder with GQA, q/k/v bias, M-RoPE, causal plus
//! left-padding mask; returns the final-normed hidden states.

use super::config::TextConfig;
use super::layers::{apply_rope, attention, repeat_kv, GatedMlp, RmsNorm, MASKED};
use super::weights::Weights;
use crate::engine::quant::QLinear;
use anyhow::Result;
use candle_core::{DType, Device, Module, Tensor};

struct SelfAttention {
    q: QLinear,
    k: QLinear,
    v: QLinear,
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
            q: w.linear(&format!("{p}.q_proj"), c.hidden_size, h * hd, true)?,
            k: w.linear(&format!("{p}.k_proj"), c.hidden_size, kvh * hd, true)?,
            v: w.linear(&format!("{p}.v_proj"), c.hidden_size, kvh * hd, true)?,
            o: w.linear(&format!("{p}.o_proj"), h * hd, c.hidden_size, false)?,
            heads: h,
            kv_heads: kvh,
            head_dim: hd,
        })
    }

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let split = |t: Tensor, n: usize| {
            t.reshape((b, s, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q.forward(x)?, self.heads)?;
        let k = split(self.k.forward(x)?, self.kv_heads)?;
        let v = split(self.v.forward(x)?, self.kv_heads)?;
        // Rotated in f32 (the reference rotates in the activation dtype; f32 is closer to the
        // f32 reference for half-precision runs and costs little).
        let q = apply_rope(&q, cos, sin, DType::F32)?;
        let k = apply_rope(&k, cos, sin, DType::F32)?;
        let rep = self.heads / self.kv_heads;
        let k = repeat_kv(&k, rep)?;
        let v = repeat_kv(&v, rep)?;
        let out = attention(&q, &k, &v, Some(mask), 1.0 / (self.head_dim as f64).sqrt())?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, s, self.heads * self.head_dim))?;
        Ok(self.o.forward(&out)?)
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
        let mask = causal_padding_mask(attention_mask, device)?;
        // The residual stream stays f32 whatever the weight dtype: half-precision runs then
        // round only inside the layers, which keeps bf16 within 1e-2 of the f32 reference.
        let mut x = embeds.to_dtype(DType::F32)?;
        for l in &self.layers {
            let h = l
                .attn
                .forward(&l.input_norm.forward(&x)?, &cos, &sin, &mask)?;
            x = (x + h.to_dtype(DType::F32)?)?;
            let h = l.mlp.forward(&l.post_norm.forward(&x)?)?;
            x = (x + h.to_dtype(DType::F32)?)?;
        }
        Ok(self.norm.forward(&x)?)
    }
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
