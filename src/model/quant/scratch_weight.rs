//! What a layer's GEMM reads from the shared NF4 scratch: the weight in the activations' dtype,
//! or, under `Compute::Fp8`, its FP8 form (on the GPU, or the CPU's emulation of it).

use candle_core::{DType, Result, Tensor};

use crate::gpu::fused;

pub enum ScratchWeight {
    /// The weight in the activations' dtype, `[out, in]`.
    Dense(Tensor),
    /// The CPU's emulation of FP8: each weight row as its E4M3 codes times its scale, in f32;
    /// the activations are rounded per token the same way before an f32 product.
    EmulatedFp8(Tensor),
    /// E4M3 codes and row scales on the GPU, for the FP8 GEMM.
    #[cfg(feature = "cuda")]
    Fp8(crate::gpu::fp8::Fp8Weight),
}

impl ScratchWeight {
    /// `x2 · wᵀ + bias` for `x2` `[rows, in]`.
    pub fn linear(&self, x2: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        match self {
            ScratchWeight::Dense(w) => fused::linear(x2, w, bias),
            ScratchWeight::EmulatedFp8(w) => {
                let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
                fused::linear(&emulated_rows(x2)?, w, bias.as_ref())?.to_dtype(x2.dtype())
            }
            #[cfg(feature = "cuda")]
            ScratchWeight::Fp8(w) => w.linear(x2, bias),
        }
    }

    /// `c + x2 · wᵀ` (the bias, if any, already in `c`).
    pub fn linear_onto(&self, c: Tensor, x2: &Tensor) -> Result<Tensor> {
        match self {
            ScratchWeight::Dense(w) => fused::linear_onto(c, x2, w),
            ScratchWeight::EmulatedFp8(w) => {
                let y = fused::linear(&emulated_rows(x2)?, w, None)?;
                let dtype = c.dtype();
                c + y.to_dtype(dtype)?
            }
            #[cfg(feature = "cuda")]
            ScratchWeight::Fp8(w) => w.linear_onto(c, x2),
        }
    }
}

/// `x2`'s rows in f32 as the FP8 GEMM reads them (`fp8::round_rows`).
fn emulated_rows(x2: &Tensor) -> Result<Tensor> {
    let (rows, cols) = x2.dims2()?;
    let mut values = x2.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    super::fp8::round_rows(&mut values, cols);
    Tensor::from_vec(values, (rows, cols), x2.device())
}
