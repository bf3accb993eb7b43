//! A quantised linear layer with its LoRA adapter beside it, unmerged:
//! `y = Q(W)·x + (scale·B)·(A·x)`. This is how the reference computes an adapter over 4-bit
//! weights (transformers quantises the base checkpoint, PEFT wraps each target layer); merging
//! first and quantising the sum gives a different model.

use anyhow::{bail, Result};
use candle_core::{Module, Tensor};

use super::linear::QLinear;
use crate::gpu::fused;

#[derive(Clone, Debug)]
pub struct LoraLinear {
    base: Box<QLinear>,
    /// A: `[r, in]`, in the activation dtype on the layer's device.
    down: Tensor,
    /// scale · B: `[out, r]`, the adapter's scale folded in.
    up: Tensor,
}

impl LoraLinear {
    /// `down` is A `[r, in]`, `up` is scale·B `[out, r]`, both already where and in the dtype
    /// the activations are.
    pub fn new(base: QLinear, down: Tensor, up: Tensor) -> Result<Self> {
        let (out, inp) = base.shape();
        let (r, down_in) = down.dims2()?;
        let (up_out, up_r) = up.dims2()?;
        if down_in != inp || up_out != out || up_r != r {
            bail!(
                "LoRA factors A {:?} and B {:?} do not fit a {out}×{inp} layer",
                down.dims(),
                up.dims()
            );
        }
        if matches!(base, QLinear::Lora(_)) {
            bail!("a layer carries one LoRA adapter");
        }
        Ok(LoraLinear {
            base: Box::new(base),
            down,
            up,
        })
    }

    pub fn base(&self) -> &QLinear {
        &self.base
    }

    /// A `[r, in]`.
    pub fn down(&self) -> &Tensor {
        &self.down
    }

    /// scale·B `[out, r]`.
    pub fn up(&self) -> &Tensor {
        &self.up
    }

    pub fn rank(&self) -> usize {
        self.down.dim(0).unwrap_or(0)
    }

    /// Bytes of the two factors.
    pub fn factor_bytes(&self) -> usize {
        [&self.down, &self.up]
            .iter()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// The same layer widened with zero rows and columns (see `QLinear::padded`): A gains zero
    /// input columns, B zero output rows, so the extra outputs stay exactly zero.
    pub fn padded(self, out_to: usize, in_to: usize) -> Result<LoraLinear> {
        let (out, inp) = self.base.shape();
        let down = self.down.pad_with_zeros(1, 0, in_to - inp)?;
        let up = self.up.pad_with_zeros(0, 0, out_to - out)?;
        LoraLinear::new(self.base.padded(out_to, in_to)?, down, up)
    }

    /// The adapter's term `(scale·B)·(A·x)` plus the base's bias: what the base product is added
    /// onto where its GEMM accumulates.
    fn term_with_bias(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let low = fused::linear(x, &self.down, None)?;
        fused::linear(&low, &self.up, self.base.bias_tensor())
    }
}

#[cfg(feature = "cuda")]
impl LoraLinear {
    /// Whether [`Self::forward_fp8_beside`] takes `rows` input rows on `device`: the base is an
    /// NF4 layer computing in FP8 from its own input for so many rows.
    pub fn takes_fp8_rows(&self, rows: usize, device: &candle_core::Device) -> bool {
        matches!(&*self.base, QLinear::Nf4(base) if base.takes_fp8_rows(rows, device))
    }

    /// The layer of input rows given twice, as bf16 `x` (for the adapter's A·x) and as the FP8
    /// codes of the same rows (for the base's GEMM, see [`Self::takes_fp8_rows`]): the adapter's
    /// term and the bias first, the base product added onto them in the GEMM → `[rows, out]`.
    pub fn forward_fp8_beside(
        &self,
        x: &Tensor,
        codes: &crate::gpu::fp8::Fp8Rows,
    ) -> Result<Tensor> {
        let QLinear::Nf4(base) = &*self.base else {
            bail!("LoRA layer: FP8 input rows for a base that does not take them");
        };
        base.forward_fp8_rows_onto(codes, self.term_with_bias(x)?)
    }
}

impl Module for LoraLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // A query's rows on the CPU: the adapter's product added inside the base's pass, not
        // written, transposed and added as products of their own.
        let direct = match &*self.base {
            QLinear::Nf4(base) if base.takes_direct(x) => base
                .forward_direct_beside(x, Some((&self.down, &self.up)))
                .map(Some),
            QLinear::Stack(base) => base.forward_direct_beside(x, &self.down, &self.up),
            _ => Ok(None),
        };
        if let Some(y) = direct.map_err(|e| candle_core::Error::Msg(format!("{e:#}")))? {
            return Ok(y);
        }
        // Where the base GEMM can add onto its output (CUDA, bf16), the adapter's term and the
        // bias go there first and the base product lands on them: two passes over the output
        // fewer than a product, a delta and an add.
        if self.base.accumulates_onto(x) {
            return self
                .base
                .forward_onto(x, self.term_with_bias(x)?)
                .map_err(|e| candle_core::Error::Msg(format!("{e:#}")));
        }
        let low = fused::linear(x, &self.down, None)?;
        let y = self.base.forward(x)?;
        let delta = fused::linear(&low, &self.up, None)?;
        let dtype = y.dtype();
        y + delta.to_dtype(dtype)?
    }
}
