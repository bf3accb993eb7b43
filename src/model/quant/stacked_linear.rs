//! Linear layers that read the same input, computed as one: the outputs side by side
//! (`[.., Σ out_i]`), as the language model's q, k and v projections. Dense parts become one dense
//! layer (`QLinear::stack`); NF4 parts stay separate weights (each quantised on its own, as the
//! reference quantises each layer, and cached as such) but run as one product on the GPU — their
//! dequantised weights one under the other in the shared scratch and one GEMM, or, for a query's
//! few rows, one from-the-codes product per part into its columns of one output. Fewer launches and
//! one read of the input instead of one per layer; the CPU computes the parts one by one.

use anyhow::{bail, Result};
use candle_core::{Module, Tensor};

use super::linear::QLinear;
#[cfg(feature = "cuda")]
use super::nf4_linear::Nf4Linear;
#[cfg(feature = "cuda")]
use crate::gpu::fused;

#[derive(Clone, Debug)]
pub struct StackedLinear {
    parts: Vec<QLinear>,
    /// The parts' biases side by side (zeros for a part without one); None when none has one.
    bias: Option<Tensor>,
}

impl StackedLinear {
    /// At least two parts with the same input width.
    pub fn new(parts: Vec<QLinear>) -> Result<Self> {
        let Some(first) = parts.first() else {
            bail!("stacking no layers");
        };
        let inp = first.in_features();
        if parts.len() < 2 || parts.iter().any(|p| p.in_features() != inp) {
            bail!("stacked layers must be two or more with the same input width");
        }
        let bias = stacked_bias(&parts)?;
        Ok(StackedLinear { parts, bias })
    }

    pub fn parts(&self) -> &[QLinear] {
        &self.parts
    }

    pub fn shape(&self) -> (usize, usize) {
        let out = self.parts.iter().map(|p| p.out_features()).sum();
        (out, self.parts[0].in_features())
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn weight_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.weight_bytes()).sum()
    }

    /// The parts as NF4 layers resident on the GPU, when every one is.
    #[cfg(feature = "cuda")]
    fn gpu_nf4_parts(&self, x: &Tensor) -> Option<Vec<&Nf4Linear>> {
        if !(x.device().is_cuda() && fused::accumulates_in_gemm(x, x)) {
            return None;
        }
        self.parts
            .iter()
            .map(|p| match p {
                QLinear::Nf4(l) if l.unpadded() && l.device_weight().is_some() => Some(l),
                _ => None,
            })
            .collect()
    }

    /// Whether `forward_onto` adds inside the GEMM (every part NF4 on the GPU, bf16).
    pub fn accumulates_onto(&self, x: &Tensor) -> bool {
        #[cfg(feature = "cuda")]
        return self.gpu_nf4_parts(x).is_some();
        #[cfg(not(feature = "cuda"))]
        {
            let _ = x;
            false
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(parts) = self.gpu_nf4_parts(x) {
            return self.gpu_product(&parts, x, None);
        }
        let ys = self
            .parts
            .iter()
            .map(|p| p.forward(x))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&ys, ys[0].rank() - 1)?)
    }

    /// A query's few rows on the CPU with an unmerged adapter over the whole stack (`down`
    /// `[Σ r, in]`, `up` the scaled B `[Σ out_i, Σ r]`, block-diagonal): A·x once, then each part
    /// from its codes with its rows of B added in the same pass. None where a part does not take
    /// the few-row kernels (then the caller adds the adapter as products of its own).
    pub fn forward_direct_beside(
        &self,
        x: &Tensor,
        down: &Tensor,
        up: &Tensor,
    ) -> Result<Option<Tensor>> {
        let parts: Option<Vec<&super::nf4_linear::Nf4Linear>> = self
            .parts
            .iter()
            .map(|p| match p {
                QLinear::Nf4(l) if l.takes_direct(x) => Some(l),
                _ => None,
            })
            .collect();
        let Some(parts) = parts else {
            return Ok(None);
        };
        let (rows, xs) = parts[0].direct_rows(x)?;
        let inp = xs.len() / rows.max(1);
        let low = super::nf4_linear::adapter_low(down, &xs, rows, inp)?;
        let mut ys = Vec::with_capacity(parts.len());
        let mut row = 0;
        for (p, part) in parts.iter().zip(&self.parts) {
            let n = part.out_features();
            let up_rows = up.narrow(0, row, n)?;
            ys.push(p.direct_product(x, rows, &xs, Some((&up_rows, &low)))?);
            row += n;
        }
        Ok(Some(Tensor::cat(&ys, ys[0].rank() - 1)?))
    }

    /// `c + x · Wᵀ` with `c` `[.., Σ out_i]` already holding the bias (see `QLinear::forward_onto`).
    pub fn forward_onto(&self, x: &Tensor, c: Tensor) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(parts) = self.gpu_nf4_parts(x) {
            return self.gpu_product(&parts, x, Some(c));
        }
        let last = c.rank() - 1;
        let mut column = 0;
        let mut ys = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let n = p.out_features();
            ys.push(p.forward_onto(x, c.narrow(last, column, n)?.contiguous()?)?);
            column += n;
        }
        Ok(Tensor::cat(&ys, last)?)
    }

    /// The GPU product of NF4 `parts`: onto `onto` (bias already there) or with the bias.
    #[cfg(feature = "cuda")]
    fn gpu_product(
        &self,
        parts: &[&Nf4Linear],
        x: &Tensor,
        onto: Option<Tensor>,
    ) -> Result<Tensor> {
        let (out, inp) = self.shape();
        let rows = x.elem_count() / inp.max(1);
        let mut out_dims = x.dims().to_vec();
        *out_dims.last_mut().unwrap_or(&mut 0) = out;
        let x2 = x.reshape((rows, inp))?.contiguous()?;
        if let Some(y) = self.rows_product(parts, &x2, onto.as_ref())? {
            return Ok(y.reshape(out_dims)?);
        }
        let mut lease = parts[0].scratch().lease();
        let stack: Vec<_> = parts
            .iter()
            .filter_map(|p| p.device_weight().map(|d| (p.weight(), d)))
            .collect();
        let w = lease.dequantize_stack(&stack, x.dtype(), x.device())?;
        let y = match onto {
            Some(c) => w.linear_onto(c.reshape((rows, out))?, &x2)?,
            None => w.linear(&x2, self.bias.as_ref())?,
        };
        drop(lease);
        Ok(y.reshape(out_dims)?)
    }

    /// A query's few rows: each part from its codes into its columns of one output
    /// (`Nf4RowsOp`), or None where the kernel does not take them.
    #[cfg(feature = "cuda")]
    fn rows_product(
        &self,
        parts: &[&Nf4Linear],
        x2: &Tensor,
        onto: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        use crate::gpu::nf4_kernel::Nf4Kernels;
        use crate::gpu::nf4_rows::Nf4RowsOp;
        use candle_core::DType;
        let rows = x2.dim(0)?;
        let (out, _) = self.shape();
        let fits = fused::nf4_rows_enabled()
            && x2.dtype() == DType::BF16
            && parts
                .iter()
                .all(|p| Nf4Kernels::rows_fit(rows, p.weight().shape))
            && self.bias.as_ref().is_none_or(|b| b.dtype() == DType::BF16)
            && onto.is_none_or(|c| c.dtype() == DType::BF16 && c.is_contiguous());
        if !fits {
            return Ok(None);
        }
        let y = match onto {
            Some(c) => c.reshape((rows, out))?,
            None => Tensor::zeros((rows, out), DType::BF16, x2.device())?,
        };
        let mut column = 0;
        for p in parts {
            let Some(weight) = p.device_weight() else {
                return Ok(None);
            };
            let bias = match (onto, p.bias()) {
                (None, Some(b)) => Some(b.to_dtype(DType::BF16)?.contiguous()?),
                _ => None,
            };
            y.inplace_op2(
                x2,
                &Nf4RowsOp {
                    kernels: p.scratch().kernels()?,
                    weight,
                    shape: p.weight().shape,
                    bias: bias.as_ref(),
                    column,
                },
            )?;
            column += p.weight().shape.0;
        }
        Ok(Some(y))
    }
}

/// The parts' biases side by side, zeros for a part without one; None when no part has one.
fn stacked_bias(parts: &[QLinear]) -> Result<Option<Tensor>> {
    let Some(like) = parts.iter().find_map(|p| p.bias_tensor()) else {
        return Ok(None);
    };
    let pieces = parts
        .iter()
        .map(|p| match p.bias_tensor() {
            Some(b) => b.to_dtype(like.dtype()),
            None => Tensor::zeros(p.out_features(), like.dtype(), like.device()),
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Some(Tensor::cat(&pieces, 0)?))
}

impl Module for StackedLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        StackedLinear::forward(self, x).map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }
}
