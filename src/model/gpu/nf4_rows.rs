//! A query's few bf16 rows times an NF4 weight on the GPU, straight from its 4-bit codes on
//! tensor cores (`nf4_kernel.cu`'s `nf4_rows_bf16`), instead of dequantising the whole weight
//! into the scratch and reading it back: the launch, and the candle ops that put it in a
//! forward (a fresh output, or added onto columns of a wider one).

use super::nf4_kernel::{Nf4DeviceBuffers, Nf4DeviceWeight, Nf4Kernels, WeightArgs, ROWS_MAX};
use anyhow::{bail, Result};
use candle_core::cuda_backend::cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use std::sync::Arc;

impl Nf4Kernels {
    /// Whether [`Self::matmul_rows`] takes `rows` rows against an `(out, in)` weight.
    pub fn rows_fit(rows: usize, (out, inp): (usize, usize)) -> bool {
        (1..=ROWS_MAX).contains(&rows) && out.is_multiple_of(32) && inp.is_multiple_of(64)
    }

    /// `y = x · wᵀ (+ bias) (+ y when accumulate)` for `rows` (≤ 32) bf16 input rows, straight
    /// from the 4-bit codes on tensor cores (`nf4_rows_bf16`). Pointers are raw device
    /// addresses on `stream`: `x` `rows × in` (16-byte aligned), `bias` `out` values or 0, `y`
    /// `rows` rows of `out` values, `ldy` (≥ out) elements apart.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_rows(
        &self,
        stream: &Arc<CudaStream>,
        w: &Nf4DeviceWeight<'_>,
        shape: (usize, usize),
        rows: usize,
        x_ptr: u64,
        bias_ptr: u64,
        (y_ptr, ldy): (u64, usize),
        accumulate: bool,
    ) -> Result<()> {
        let (out, inp) = shape;
        if !Self::rows_fit(rows, shape) || out * inp != w.n || ldy < out {
            bail!("NF4 rows product: {rows} rows × a {out}×{inp} weight of {} values (≤ {ROWS_MAX} rows, out % 32, in % 64)", w.n);
        }
        if !x_ptr.is_multiple_of(16) || w.packed.len() < w.n / 2 {
            bail!("NF4 rows product: the input must be 16-byte aligned");
        }
        let weight = WeightArgs::new(stream, w)?;
        let cfg = LaunchConfig {
            grid_dim: ((out / 32) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let acc = accumulate as i32;
        let (m, n, k, ld) = (rows as u32, out as u32, inp as u32, ldy as u32);
        let mut b = stream.launch_builder(&self.rows_bf16);
        weight.push(&mut b);
        b.arg(&x_ptr)
            .arg(&bias_ptr)
            .arg(&y_ptr)
            .arg(&acc)
            .arg(&m)
            .arg(&n)
            .arg(&k)
            .arg(&ld);
        // SAFETY: the arguments match `nf4_rows_bf16`'s parameters in order and type. The
        // weight holds `out × in` codes (checked) with their absmax tables (`WeightArgs::new`
        // checks their lengths); every thread reads 8 code bytes at 8-byte-aligned offsets
        // inside them, and 32-byte runs of `x` rows below `rows` at 16-byte-aligned addresses
        // (`in` a multiple of 64, `x_ptr` checked), touches `y` only at `m·ldy + n` for rows
        // m below `rows` and columns n below `out ≤ ldy`, and reads `bias` (`out` values) only
        // when it is not null. The callers take the pointers from live buffers on `stream` of
        // those sizes.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

/// A few bf16 rows times a device-resident NF4 weight, from the codes (`Nf4Kernels::matmul_rows`):
/// `x.apply_op1_no_bwd(&op)` gives `x · wᵀ + bias`, `c.inplace_op2(&x, &op)` adds
/// `x · wᵀ (+ bias)` onto columns `column ..` of `c`.
pub struct Nf4RowsOp<'a> {
    pub kernels: &'a Nf4Kernels,
    pub weight: &'a Nf4DeviceBuffers,
    /// (out, in) of the weight.
    pub shape: (usize, usize),
    /// bf16 `[out]` on the same device, or None.
    pub bias: Option<&'a candle_core::Tensor>,
    /// Where this product goes in a wider output (`InplaceOp2` only): its first column there;
    /// the output's row length is the output tensor's own.
    pub column: usize,
}

impl Nf4RowsOp<'_> {
    fn launch(
        &self,
        x: &candle_core::cuda_backend::CudaStorage,
        xl: &candle_core::Layout,
        y: (u64, usize),
        accumulate: bool,
    ) -> candle_core::Result<()> {
        use candle_core::backend::BackendStorage;
        let (rows, inp) = xl.shape().dims2()?;
        if inp != self.shape.1 {
            candle_core::bail!(
                "NF4 rows product: input {:?} for a {:?} weight",
                xl.dims(),
                self.shape
            );
        }
        let stream = x.device().cuda_stream();
        let xv = super::custom_op::view::<half::bf16>(x, xl)?;
        let x_ptr = xv.device_ptr(&stream).0;
        let bias_guard = self.bias.map(|b| b.storage_and_layout());
        let bias_ptr = match &bias_guard {
            Some((storage, layout)) => {
                let candle_core::Storage::Cuda(cs) = &**storage else {
                    candle_core::bail!("NF4 rows product: the bias is not on the GPU");
                };
                if layout.shape().elem_count() != self.shape.0 {
                    candle_core::bail!(
                        "NF4 rows product: bias {:?} for {} outputs",
                        layout.dims(),
                        self.shape.0
                    );
                }
                super::custom_op::view::<half::bf16>(cs, layout)?
                    .device_ptr(&stream)
                    .0
            }
            None => 0,
        };
        let w = self.weight.view();
        self.kernels
            .matmul_rows(
                &stream, &w, self.shape, rows, x_ptr, bias_ptr, y, accumulate,
            )
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }
}

impl Nf4RowsOp<'_> {
    /// The product into a new `rows × out` tensor (`CustomOp1`).
    fn cuda_new(
        &self,
        x: &candle_core::cuda_backend::CudaStorage,
        xl: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::cuda_backend::CudaStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        let dev = x.device().clone();
        let rows = xl.shape().dims2()?.0;
        let out = self.shape.0;
        // SAFETY: the kernel writes every element of `rows × out` (each (m, n) with m < rows is
        // written by exactly one thread) before the tensor is handed out.
        let mut y = unsafe { dev.alloc::<half::bf16>(rows * out)? };
        let y_ptr = y.device_ptr_mut(&dev.cuda_stream()).0;
        self.launch(x, xl, (y_ptr, out), false)?;
        Ok((
            candle_core::cuda_backend::CudaStorage::wrap_cuda_slice(y, dev),
            candle_core::Shape::from((rows, out)),
        ))
    }

    /// The product added onto its columns of `c` (`InplaceOp2`).
    fn cuda_onto(
        &self,
        c: &mut candle_core::cuda_backend::CudaStorage,
        cl: &candle_core::Layout,
        x: &candle_core::cuda_backend::CudaStorage,
        xl: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::backend::BackendStorage;
        let rows = xl.shape().dims2()?.0;
        let (c_rows, ldy) = cl.shape().dims2()?;
        if c_rows != rows || self.column + self.shape.0 > ldy {
            candle_core::bail!(
                "NF4 rows accumulate: output {:?} for {rows} rows × {} outputs from column {}",
                cl.dims(),
                self.shape.0,
                self.column
            );
        }
        let (a, _) = cl.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("NF4 rows accumulate: output not contiguous".into())
        })?;
        let stream = c.device().cuda_stream();
        let first = (a + self.column) * 2;
        let y_ptr = c
            .as_cuda_slice_mut::<half::bf16>()?
            .device_ptr_mut(&stream)
            .0
            + first as u64;
        self.launch(x, xl, (y_ptr, ldy), true)
    }
}

super::custom_op::cuda_op!(1, Nf4RowsOp<'_>, "nf4-rows", cuda_new);
super::custom_op::cuda_op!(inplace 2, Nf4RowsOp<'_>, "nf4-rows-accumulate", cuda_onto);
