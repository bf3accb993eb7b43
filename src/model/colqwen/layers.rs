//! Building blocks shared by the vision tower and the language model.

use super::weights::Weights;
use crate::gpu::fused;
#[cfg(feature = "cuda")]
use crate::quant::nf4_linear::Nf4Linear;
use crate::quant::QLinear;
use candle_core::{DType, Module, Result, Tensor, D};

/// Qwen2 RMSNorm, computed in f32 whatever the model dtype (the reference upcasts too). Its
/// output is in the activation dtype (`Weights::activation_dtype`), ready for the linear layers
/// that follow; the residual stream it reads may be f32 (see `TextModel::forward`).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
    out_dtype: DType,
}

impl RmsNorm {
    pub fn load(w: &Weights, prefix: &str, dim: usize, eps: f64) -> anyhow::Result<Self> {
        Ok(RmsNorm {
            weight: w.norm(prefix, dim)?,
            eps: eps as f32,
            out_dtype: w.activation_dtype(),
        })
    }

    /// The same norm with another output dtype.
    pub fn with_output(self, out_dtype: DType) -> Self {
        RmsNorm { out_dtype, ..self }
    }
}

impl RmsNorm {
    /// The norm of the residual stream `x` after the layer output `pending` (when there is one) is
    /// added to it: the stream and the norm, in one pass on the GPU.
    pub fn forward_after(&self, x: Tensor, pending: Option<Tensor>) -> Result<(Tensor, Tensor)> {
        match pending {
            Some(h) => fused::residual_rms_norm(&x, &h, &self.weight, self.eps, self.out_dtype),
            None => {
                let normed = self.forward(&x)?;
                Ok((x, normed))
            }
        }
    }
}

#[cfg(feature = "cuda")]
impl RmsNorm {
    /// [`Self::forward_after`] with the norm as FP8 codes for GEMMs that read them
    /// (`fused::residual_rms_norm_fp8`); None where that does not apply.
    pub fn forward_after_fp8(
        &self,
        x: &Tensor,
        pending: &Tensor,
    ) -> Result<Option<(Tensor, crate::gpu::fp8::Fp8Rows)>> {
        if self.out_dtype != DType::BF16 {
            return Ok(None);
        }
        fused::residual_rms_norm_fp8(x, pending, &self.weight, self.eps)
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::rms_norm(x, &self.weight, self.eps, self.out_dtype)
    }
}

/// The MLP's hidden width is computed rounded up to a multiple of this (zero rows/columns), so
/// the GEMMs' row lengths suit cuBLAS's fast kernels (see `QLinear::padded`).
const MLP_HIDDEN_MULTIPLE: usize = 64;

/// down(silu(gate(x)) · up(x)).
#[derive(Clone, Debug)]
pub struct GatedMlp {
    projections: GateUp,
    down: QLinear,
}

/// The gate and up projections: one stacked layer `[gate | up]` where their width needs no
/// padding (the language model: one product, one LoRA pair), else two (padded) layers.
#[derive(Clone, Debug)]
enum GateUp {
    Stacked(QLinear),
    Separate { gate: QLinear, up: QLinear },
}

impl GatedMlp {
    pub fn load(
        w: &Weights,
        prefix: &str,
        dim: usize,
        hidden: usize,
        bias: bool,
    ) -> anyhow::Result<Self> {
        let gate = w.linear(&format!("{prefix}.gate_proj"), dim, hidden, bias)?;
        let up = w.linear(&format!("{prefix}.up_proj"), dim, hidden, bias)?;
        let down = w.linear(&format!("{prefix}.down_proj"), hidden, dim, bias)?;
        let padded = hidden.next_multiple_of(MLP_HIDDEN_MULTIPLE);
        if padded == hidden {
            return Ok(GatedMlp {
                projections: GateUp::Stacked(QLinear::stack(vec![gate, up])?),
                down,
            });
        }
        if !(gate.can_pad() && up.can_pad() && down.can_pad()) {
            return Ok(GatedMlp {
                projections: GateUp::Separate { gate, up },
                down,
            });
        }
        // Zero gate/up rows give silu(0)·0 = 0 in the extra columns, which meet zero columns of
        // down: the result is exactly that of the unpadded MLP.
        Ok(GatedMlp {
            projections: GateUp::Separate {
                gate: gate.padded(padded, dim)?,
                up: up.padded(padded, dim)?,
            },
            down: down.padded(dim, padded)?,
        })
    }
}

#[cfg(feature = "cuda")]
impl GatedMlp {
    /// The gate and up projections when they are two NF4 layers of their own (no adapter beside
    /// them: the vision tower's), which may take their input as FP8 codes.
    fn nf4_projections(&self) -> Option<(&Nf4Linear, &Nf4Linear)> {
        match &self.projections {
            GateUp::Separate {
                gate: QLinear::Nf4(gate),
                up: QLinear::Nf4(up),
            } => Some((gate, up)),
            _ => None,
        }
    }

    /// Whether [`Self::forward_fp8`] takes `rows` input rows as FP8 codes on `device`: the gate
    /// and up projections are NF4 layers computing in FP8 from their own input, so the norm
    /// before them may write its rows as codes.
    pub fn takes_fp8_input(&self, rows: usize, device: &candle_core::Device) -> bool {
        self.nf4_projections().is_some_and(|(gate, up)| {
            gate.takes_fp8_rows(rows, device) && up.takes_fp8_rows(rows, device)
        })
    }

    /// The MLP of input rows already as FP8 codes (see [`Self::takes_fp8_input`]) →
    /// `[rows, dim]`.
    pub fn forward_fp8(&self, x: &crate::gpu::fp8::Fp8Rows) -> Result<Tensor> {
        let Some((gate, up)) = self.nf4_projections() else {
            candle_core::bail!("MLP: FP8 input rows for projections that do not take them");
        };
        let product = |l: &Nf4Linear| {
            l.forward_fp8_rows(x)
                .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
        };
        let (gate, up) = (product(gate)?, product(up)?);
        let dims = [x.layout.out, x.layout.inp];
        self.down_of(gate, Some(up), &dims)
    }
}

impl GatedMlp {
    /// down(silu(gate) · up) for the gate and up projections' outputs (`up` None: `gate` is
    /// both, stacked), of an input of `dims`.
    fn down_of(&self, gate: Tensor, up: Option<Tensor>, dims: &[usize]) -> Result<Tensor> {
        // On the GPU, where the down projection computes in FP8 from its own input (an NF4
        // layer with no adapter beside it: the vision tower's), SiLU·mul writes the hidden rows
        // as that GEMM's FP8 codes: the widest activations of the block are never written out
        // in bf16 and read back.
        // With an adapter beside that GEMM (the language model's), SiLU·mul writes both the codes
        // and the bf16 rows the adapter reads: the rows are not read back to be quantised.
        #[cfg(feature = "cuda")]
        {
            let rows = dims[..dims.len().saturating_sub(1)].iter().product();
            // The down projection's `[rows, out]`, where its FP8 codes came from SiLU·mul.
            let y = match &self.down {
                QLinear::Nf4(down) if down.takes_fp8_rows(rows, gate.device()) => {
                    fused::silu_mul_fp8(&gate, up.as_ref())?
                        .map(|codes| down.forward_fp8_rows(&codes))
                }
                QLinear::Lora(down) if down.takes_fp8_rows(rows, gate.device()) => {
                    fused::silu_mul_fp8_beside(&gate, up.as_ref())?
                        .map(|(h, codes)| down.forward_fp8_beside(&h, &codes))
                }
                _ => None,
            };
            if let Some(y) = y {
                let y = y.map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
                let mut dims = dims.to_vec();
                *dims.last_mut().unwrap_or(&mut 0) = y.dim(1)?;
                return y.reshape(dims);
            }
        }
        #[cfg(not(feature = "cuda"))]
        let _ = dims;
        let h = match up {
            Some(up) => fused::silu_mul(&gate, &up)?,
            None => fused::silu_mul_halves(&gate)?,
        };
        self.down.forward(&h)
    }
}

impl Module for GatedMlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The gate and up projections: one stacked output, or two.
        let (gate, up) = match &self.projections {
            GateUp::Stacked(gate_up) => (gate_up.forward(x)?, None),
            GateUp::Separate { gate, up } => (gate.forward(x)?, Some(up.forward(x)?)),
        };
        self.down_of(gate, up, x.dims())
    }
}

/// softmax(q·kᵀ·scale + mask)·v for q, k, v [batch, heads, seq, head_dim] (k/v already expanded
/// to all heads). The mask is additive f32, broadcastable to [batch, heads, q_len, k_len], with a
/// large finite negative (not −∞) so fully masked rows stay finite.
///
/// Computed in f32 whatever the model dtype: a bf16 score of ~10 carries an error of ~0.04,
/// which softmax turns into a 4 % weight error; attention is a small share of the FLOPs.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let f32 = |t: &Tensor| t.to_dtype(DType::F32)?.contiguous();
    let scores = (f32(q)?.matmul(&f32(k)?.t()?)? * scale)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    probs.matmul(&f32(v)?)?.to_dtype(dtype)
}

/// Additive mask value for "may not attend" (finite: see `attention`).
pub const MASKED: f32 = -1e30;

/// Rotates q or k [batch, heads, seq, head_dim] by half-dimension tables broadcastable over
/// heads, computing in `compute` dtype and returning the input dtype.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor, compute: DType) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(compute)?.contiguous()?;
    candle_nn::rotary_emb::rope(&x, &cos.to_dtype(compute)?, &sin.to_dtype(compute)?)?
        .to_dtype(dtype)
}

/// Divides each row (last dim) by its L2 norm.
pub fn l2_normalise_last(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    // A zero vector stays zero instead of becoming NaN (the reference divides without a guard).
    let safe = norm.maximum(1e-12)?;
    x.broadcast_div(&safe)
}
