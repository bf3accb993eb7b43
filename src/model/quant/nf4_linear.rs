//! A linear layer whose weight is NF4.
//!
//! Forward picks by the number of input rows: a few rows (a query) multiply straight from the
//! 4-bit codes ([`super::gemm`], CPU); more rows (a page batch) dequantise the weight into the
//! model's one shared scratch buffer and run the ordinary GEMM on it.

use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::{DType, Module, Tensor};

use super::gemm::{matmul_rows, matmul_rows_beside, Beside, Nf4View, Weight};
use super::nf4::Nf4Weight;
use super::scratch::{Nf4Scratch, ScratchWeight};
use crate::gpu::fused::with_cpu_weight;
use crate::settings::Compute;

/// At or below this many rows the CPU multiplies from the codes directly (`quant::gemm`, codes
/// decoded in registers, register-blocked over the rows): a query (~20 rows) reads each weight
/// once, where dequantising the whole layer into the scratch first writes and reads it again in
/// f32 for ~20 uses of each value. The old scalar direct product lost to the scratch from
/// about 8 rows on (`bench/gpu-notes.md`); the blocked kernel does not up to a query's length.
pub const DIRECT_ROWS_MAX: usize = 64;

#[derive(Clone, Debug)]
pub struct Nf4Linear {
    weight: Arc<Nf4Weight>,
    bias: Option<Tensor>,
    scratch: Arc<Nf4Scratch>,
    /// The codes and absmax state resident on the GPU (uploaded once), for the CUDA
    /// dequantisation kernel; None on the CPU.
    device_weight: Option<Arc<super::scratch::DeviceNf4>>,
    /// (out, in) of the product actually computed: the weight's shape, or larger with zero
    /// rows/columns (see `QLinear::padded`).
    gemm_shape: (usize, usize),
    /// Whether this layer's GEMMs run in FP8 (`QuantContext::fp8_for`).
    fp8: bool,
}

impl Nf4Linear {
    /// `bias` stays in its dtype on the scratch's device; `fp8`: whether the layer's GEMMs run
    /// in FP8 (only where the scratch's compute is FP8).
    pub fn new(
        weight: Nf4Weight,
        bias: Option<Tensor>,
        scratch: Arc<Nf4Scratch>,
        fp8: bool,
    ) -> Self {
        Self::from_shared(Arc::new(weight), bias, scratch, fp8)
    }

    /// As [`Self::new`] with a weight another owner (the quantised-weight cache) also holds.
    pub fn from_shared(
        weight: Arc<Nf4Weight>,
        bias: Option<Tensor>,
        scratch: Arc<Nf4Scratch>,
        fp8: bool,
    ) -> Self {
        let fp8 = fp8 && scratch.compute() == Compute::Fp8;
        scratch.reserve(weight.numel());
        let device_weight = scratch.upload(&weight, fp8);
        let gemm_shape = weight.shape;
        Nf4Linear {
            weight,
            bias,
            scratch,
            device_weight,
            gemm_shape,
            fp8,
        }
    }

    /// This layer computed as a `gemm_shape` product (≥ the weight's shape) with zero rows and
    /// columns; `bias` must already have `gemm_shape.0` entries.
    pub fn with_gemm_shape(self, gemm_shape: (usize, usize), bias: Option<Tensor>) -> Self {
        self.scratch.reserve(gemm_shape.0 * gemm_shape.1);
        Nf4Linear {
            gemm_shape,
            bias,
            ..self
        }
    }

    pub fn weight(&self) -> &Nf4Weight {
        &self.weight
    }
    /// The weight, shared (for the quantised-weight cache, without copying it).
    pub fn shared_weight(&self) -> &Arc<Nf4Weight> {
        &self.weight
    }
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    /// The codes on the GPU (None on the CPU).
    pub fn device_weight(&self) -> Option<&super::scratch::DeviceNf4> {
        self.device_weight.as_deref()
    }
    pub fn scratch(&self) -> &Arc<Nf4Scratch> {
        &self.scratch
    }
    /// Whether the product is the weight's own shape (not zero-padded).
    pub fn unpadded(&self) -> bool {
        self.gemm_shape == self.weight.shape
    }

    /// On CUDA, a few bf16 rows (a query's tokens) times the weight straight from its codes on
    /// tensor cores (`gpu::nf4_rows::Nf4RowsOp`), instead of dequantising the whole weight
    /// into the scratch and reading it back: `x2 · Wᵀ + bias`, or `onto + x2 · Wᵀ` (the bias
    /// then already in `onto`). None where it does not apply (the CPU, f32, an unpadded shape
    /// the kernel does not take, more rows, the kernel switched off: `GpuKernels::nf4_rows`).
    #[cfg(feature = "cuda")]
    fn forward_rows(&self, x2: &Tensor, onto: Option<&Tensor>) -> Result<Option<Tensor>> {
        use crate::gpu::nf4_kernel::Nf4Kernels;
        use crate::gpu::nf4_rows::Nf4RowsOp;
        let rows = x2.dim(0)?;
        let applies = x2.device().is_cuda()
            && x2.dtype() == DType::BF16
            && x2.is_contiguous()
            && crate::gpu::fused::nf4_rows_enabled()
            && self.gemm_shape == self.weight.shape
            && Nf4Kernels::rows_fit(rows, self.weight.shape)
            && onto.is_none_or(|c| c.dtype() == DType::BF16 && c.is_contiguous());
        let Some(device_weight) = self.device_weight.as_deref().filter(|_| applies) else {
            return Ok(None);
        };
        let bf16_bias = self
            .bias
            .as_ref()
            .filter(|b| b.dtype() == DType::BF16 && b.is_contiguous());
        let op = Nf4RowsOp {
            kernels: self.scratch.kernels()?,
            weight: device_weight,
            shape: self.weight.shape,
            bias: if onto.is_some() { None } else { bf16_bias },
            column: 0,
        };
        Ok(Some(match onto {
            Some(c) => {
                c.inplace_op2(x2, &op)?;
                c.clone()
            }
            None => {
                let y = x2.apply_op1_no_bwd(&op)?;
                match (&self.bias, bf16_bias) {
                    (Some(b), None) => crate::gpu::fused::add_bias(y, Some(b))?,
                    _ => y,
                }
            }
        }))
    }

    #[cfg(not(feature = "cuda"))]
    fn forward_rows(&self, _x2: &Tensor, _onto: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// The product through the shared scratch, whatever the row count.
    pub fn forward_dequantized(&self, x: &Tensor) -> Result<Tensor> {
        let (x2, lead) = flatten_rows(x, self.gemm_shape.1)?;
        if let Some(y) = self.forward_rows(&x2, None)? {
            return Ok(reshape_rows(y, lead, self.gemm_shape.0)?);
        }
        let y = self.with_scratch_weight(x2.dtype(), x2.device(), |w| {
            w.linear(&x2, self.bias.as_ref())
        })?;
        Ok(reshape_rows(y, lead, self.gemm_shape.0)?)
    }

    /// `product` of the weight dequantised into the shared scratch (for activations of `dtype`
    /// on `device`, in the GEMM shape; FP8 under `Compute::Fp8`), the scratch held only while it
    /// runs.
    fn with_scratch_weight(
        &self,
        dtype: DType,
        device: &candle_core::Device,
        product: impl FnOnce(&ScratchWeight) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor> {
        let mut lease = self.scratch.lease();
        let w = lease.dequantize(
            &self.weight,
            self.device_weight.as_deref(),
            dtype,
            device,
            self.gemm_shape,
            self.fp8,
        )?;
        Ok(product(&w)?)
    }

    /// Whether [`Self::forward`] takes the product from the codes directly for `x`: f32
    /// activations (the CPU's, `Weights::activation_dtype`) of a few rows while the few-row
    /// kernels are on. A half-precision input keeps the scratch path's half-precision GEMM.
    /// Under `Compute::Fp8` only a query's few rows (`fp8::FEW_ROWS`) do, as on the GPU; more
    /// rows take the scratch path's emulation of FP8.
    pub fn takes_direct(&self, x: &Tensor) -> bool {
        let rows = x.elem_count() / self.gemm_shape.1.max(1);
        let most = match self.fp8 {
            false => DIRECT_ROWS_MAX,
            true => super::fp8::FEW_ROWS,
        };
        x.device().is_cpu()
            && x.dtype() == DType::F32
            && rows <= most
            && super::gemm::kernels_enabled()
    }

    /// Whether [`Self::forward_fp8_rows`] takes `rows` activation rows on `device`: the layer
    /// computes in FP8 for so many rows (more than a query's, `fp8::FEW_ROWS`), its codes on
    /// the GPU carry their row scales and its GEMM shape suits the FP8 GEMM — so the kernel
    /// producing its input may quantise it (`fused::silu_mul_fp8`).
    #[cfg(feature = "cuda")]
    pub fn takes_fp8_rows(&self, rows: usize, device: &candle_core::Device) -> bool {
        // The scratch's own test of whether this layer's weight dequantises to FP8.
        self.fp8
            && rows > super::fp8::FEW_ROWS
            && self.device_weight.as_deref().is_some_and(|w| {
                self.scratch
                    .takes_fp8(DType::BF16, device, self.gemm_shape, std::iter::once(w))
            })
    }

    /// `rows · Wᵀ + bias` for activations already quantised to FP8 (see
    /// [`Self::takes_fp8_rows`]) → `[rows, out]` bf16.
    #[cfg(feature = "cuda")]
    pub fn forward_fp8_rows(&self, rows: &crate::gpu::fp8::Fp8Rows) -> Result<Tensor> {
        self.with_fp8_weight(rows, |w| w.linear_rows(rows, self.bias.as_ref()))
    }

    /// `c + rows · Wᵀ` for activations already quantised to FP8, added in the GEMM; the bias left
    /// out (the caller's `c`, an adapter's term, carries it) → `[rows, out]` bf16.
    #[cfg(feature = "cuda")]
    pub fn forward_fp8_rows_onto(
        &self,
        rows: &crate::gpu::fp8::Fp8Rows,
        c: Tensor,
    ) -> Result<Tensor> {
        let c = c.reshape((rows.layout.out, self.gemm_shape.0))?;
        self.with_fp8_weight(rows, |w| w.linear_rows_onto(c, rows))
    }

    /// `product` of FP8 activation rows and this layer's weight dequantised to FP8 in the
    /// scratch.
    #[cfg(feature = "cuda")]
    fn with_fp8_weight(
        &self,
        rows: &crate::gpu::fp8::Fp8Rows,
        product: impl FnOnce(&crate::gpu::fp8::Fp8Weight) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor> {
        anyhow::ensure!(
            rows.layout.inp == self.gemm_shape.1,
            "NF4 linear: FP8 rows of {} inputs for a {:?} product",
            rows.layout.inp,
            self.gemm_shape
        );
        self.with_scratch_weight(DType::BF16, rows.bytes.device(), |w| match w {
            ScratchWeight::Fp8(w) => product(w),
            _ => candle_core::bail!(
                "NF4 linear: FP8 rows for a layer whose weight did not dequantise to FP8"
            ),
        })
    }

    /// `c + x · Wᵀ` through the shared scratch, the bias left out (the caller's `c` carries it):
    /// on CUDA the GEMM adds onto `c` in place (`fused::linear_onto`).
    pub fn forward_onto(&self, x: &Tensor, c: Tensor) -> Result<Tensor> {
        let (x2, lead) = flatten_rows(x, self.gemm_shape.1)?;
        let rows = x2.dim(0)?;
        let c = c.reshape((rows, self.gemm_shape.0))?;
        if let Some(y) = self.forward_rows(&x2, Some(&c))? {
            return Ok(reshape_rows(y, lead, self.gemm_shape.0)?);
        }
        let y = self.with_scratch_weight(x2.dtype(), x2.device(), |w| w.linear_onto(c, &x2))?;
        Ok(reshape_rows(y, lead, self.gemm_shape.0)?)
    }

    /// The product from the codes directly (CPU).
    pub fn forward_direct(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_direct_beside(x, None)
    }

    /// [`Self::forward_direct`] plus an adapter's `up · (down · x)` in the same pass (`down`
    /// `[r, in]`, `up` scale·B `[out, r]`, both f32/bf16/f16 in host memory).
    pub fn forward_direct_beside(
        &self,
        x: &Tensor,
        adapter: Option<(&Tensor, &Tensor)>,
    ) -> Result<Tensor> {
        let (rows, xs) = self.direct_rows(x)?;
        let low = match adapter {
            Some((down, _)) => Some(adapter_low(down, &xs, rows, self.weight.shape.1)?),
            None => None,
        };
        let beside = adapter
            .zip(low.as_ref())
            .map(|((_, up), low)| (up, low.as_slice()));
        self.direct_product(x, rows, &xs, beside)
    }

    /// `x` as the few-row kernels read it: (rows, the rows' f32 values without padding).
    pub(crate) fn direct_rows(&self, x: &Tensor) -> Result<(usize, Vec<f32>)> {
        let (x2, _) = flatten_rows(x, self.gemm_shape.1)?;
        let x2 = x2.narrow(1, 0, self.weight.shape.1)?;
        let rows = x2.dim(0)?;
        Ok((
            rows,
            x2.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ))
    }

    /// The product of `xs` (from [`Self::direct_rows`] of `x`) from the codes, plus `up · low`
    /// in the same pass when `beside` gives them (`up` `[out, r]`, `low` `rows × r`).
    pub(crate) fn direct_product(
        &self,
        x: &Tensor,
        rows: usize,
        xs: &[f32],
        beside: Option<(&Tensor, &[f32])>,
    ) -> Result<Tensor> {
        let (_, lead) = flatten_rows(x, self.gemm_shape.1)?;
        let (out, inp) = self.weight.shape;
        let w = Weight::Nf4(Nf4View {
            packed: &self.weight.packed,
            absmax: &self.weight.absmax,
            blocksize: self.weight.blocksize,
        });
        let y = match beside {
            None => matmul_rows(w, out, inp, xs, rows),
            Some((up, low)) => {
                let (up_out, r) = up.dims2()?;
                anyhow::ensure!(
                    up_out == out && low.len() == rows * r,
                    "the adapter's B is {up_out}×{r} beside a {out}-output layer"
                );
                with_cpu_weight(up, |b| {
                    let beside = Beside {
                        weight: b,
                        x: low,
                        inp: r,
                    };
                    matmul_rows_beside(w, out, inp, xs, rows, beside)
                })
                .context("the adapter's B is not a host weight")?
            }
        };
        let y = Tensor::from_vec(y, (rows, out), x.device())?
            .to_dtype(x.dtype())?
            .pad_with_zeros(1, 0, self.gemm_shape.0 - self.weight.shape.0)?;
        self.finish(y, lead)
    }

    fn finish(&self, y: Tensor, lead: Vec<usize>) -> Result<Tensor> {
        let y = crate::gpu::fused::add_bias(y, self.bias.as_ref())?;
        Ok(reshape_rows(y, lead, self.gemm_shape.0)?)
    }
}

/// An adapter's `A · x` for the few-row kernels: `rows × r` f32 (`down` `[r, in]`, host memory).
pub(crate) fn adapter_low(down: &Tensor, xs: &[f32], rows: usize, inp: usize) -> Result<Vec<f32>> {
    let (r, down_in) = down.dims2()?;
    anyhow::ensure!(
        down_in == inp && xs.len() == rows * inp,
        "the adapter's A is {r}×{down_in} for {rows} rows of {inp} inputs"
    );
    with_cpu_weight(down, |a| matmul_rows(a, r, inp, xs, rows))
        .context("the adapter's A is not a host weight")
}

/// [rows, out] → [...lead, out].
fn reshape_rows(y: Tensor, mut lead: Vec<usize>, out: usize) -> candle_core::Result<Tensor> {
    lead.push(out);
    y.reshape(lead)
}

/// `[..., in] → ([rows, in], leading dims)`.
fn flatten_rows(x: &Tensor, in_features: usize) -> Result<(Tensor, Vec<usize>)> {
    let dims = x.dims();
    let Some((&last, lead)) = dims.split_last() else {
        anyhow::bail!("NF4 linear: input is a scalar, expected [..., {in_features}]");
    };
    anyhow::ensure!(
        last == in_features,
        "NF4 linear: input {:?} does not end in {in_features}",
        dims
    );
    let rows = lead.iter().product::<usize>();
    Ok((x.reshape((rows, in_features))?, lead.to_vec()))
}

impl Module for Nf4Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let r = if self.takes_direct(x) {
            self.forward_direct(x)
        } else {
            self.forward_dequantized(x)
        };
        r.map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }
}
