//! W4A8 on the GPU (`Compute::Fp8`): an NF4 weight dequantised into the shared scratch as FP8
//! E4M3 codes with a scale per output channel, the activations quantised to E4M3 with a scale
//! per token, and the product on FP8 tensor cores through cuBLASLt with both scale vectors and
//! the bias in its epilogue (`lt_fp8`), summed in f32 and rounded once to bf16.
//!
//! The scratch holds a weight's codes and its row scales in one byte buffer (`Fp8Layout`), so
//! a GEMM takes the weight as one tensor.

use super::custom_op::{view, view_mut, WithBias};
use super::fused_kernel::FusedKernels;
use super::lt_fp8::{self, Fp8Gemm, Fp8Output};
use super::nf4_kernel::{Nf4DeviceBuffers, Nf4Kernels};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{DType, Layout, Result, Shape, Tensor};
use half::bf16;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a `[out, inp]` FP8 weight lies in its byte buffer: `out · inp` codes (row-major), then,
/// from a 256-byte boundary, `out` f32 row scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fp8Layout {
    pub out: usize,
    pub inp: usize,
}

impl Fp8Layout {
    /// Byte offset of the row scales.
    pub fn scale_offset(&self) -> usize {
        (self.out * self.inp).next_multiple_of(256)
    }

    /// Bytes the weight takes.
    pub fn bytes(&self) -> usize {
        self.scale_offset() + 4 * self.out
    }
}

/// Activation rows as E4M3 codes with a scale per row, in one `u8` tensor laid out as a weight's
/// bytes (`layout.out` rows of `layout.inp` codes, then the row scales): what the kernel that
/// produced the activations wrote for the next FP8 GEMM, so the GEMM need not quantise them.
pub struct Fp8Rows {
    pub bytes: Tensor,
    pub layout: Fp8Layout,
}

/// An FP8 weight in the scratch: a `u8` tensor of `layout.bytes()` (a view of the buffer).
pub struct Fp8Weight {
    pub bytes: Tensor,
    pub layout: Fp8Layout,
}

impl Fp8Weight {
    /// The layout of a `gemm` = `(out, inp)` product's weight.
    pub fn layout((out, inp): (usize, usize)) -> Fp8Layout {
        Fp8Layout { out, inp }
    }

    /// `x2 · wᵀ + bias`, `x2` `[rows, inp]` bf16 → `[rows, out]` bf16.
    pub fn linear(&self, x2: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let op = Fp8Linear {
            layout: self.layout,
        };
        let x2 = aligned(x2)?;
        match bias {
            Some(b) => {
                let b = b.to_dtype(DType::BF16)?.contiguous()?;
                x2.apply_op3_no_bwd(&self.bytes, &b, &op)
            }
            None => x2.apply_op2_no_bwd(&self.bytes, &op),
        }
    }

    /// `rows · wᵀ + bias` for activations already quantised (`Fp8Rows`) → `[rows, out]` bf16.
    pub fn linear_rows(&self, rows: &Fp8Rows, bias: Option<&Tensor>) -> Result<Tensor> {
        let op = Fp8LinearRows {
            weight: self.layout,
            input: rows.layout,
        };
        match bias {
            Some(b) => {
                let b = b.to_dtype(DType::BF16)?.contiguous()?;
                rows.bytes.apply_op3_no_bwd(&self.bytes, &b, &op)
            }
            None => rows.bytes.apply_op2_no_bwd(&self.bytes, &op),
        }
    }

    /// `c + x2 · wᵀ`: in the GEMM (beta 1) when `c` is contiguous bf16, else a product and an add.
    pub fn linear_onto(&self, c: Tensor, x2: &Tensor) -> Result<Tensor> {
        if c.dtype() != DType::BF16 || !c.is_contiguous() {
            let y = self.linear(x2, None)?;
            let dtype = c.dtype();
            return c + y.to_dtype(dtype)?;
        }
        c.inplace_op3(
            &aligned(x2)?,
            &self.bytes,
            &Fp8Accumulate {
                layout: self.layout,
                codes: None,
            },
        )?;
        Ok(c)
    }

    /// `c + rows · wᵀ` for activations already quantised (`Fp8Rows`), in the GEMM (beta 1):
    /// `c` `[rows, out]` contiguous bf16 (an adapter's term, with the bias).
    pub fn linear_rows_onto(&self, c: Tensor, rows: &Fp8Rows) -> Result<Tensor> {
        if c.dtype() != DType::BF16 || !c.is_contiguous() {
            candle_core::bail!("fp8 accumulate: onto {:?} {:?}", c.dtype(), c.dims());
        }
        c.inplace_op3(
            &rows.bytes,
            &self.bytes,
            &Fp8Accumulate {
                layout: self.layout,
                codes: Some(rows.layout),
            },
        )?;
        Ok(c)
    }
}

/// `x2` contiguous from a 16-byte boundary, as the quantising kernel's vector loads read it (a
/// view at an odd offset is copied).
fn aligned(x2: &Tensor) -> Result<Tensor> {
    let x2 = x2.contiguous()?;
    if (x2.layout().start_offset() * x2.dtype().size_in_bytes()).is_multiple_of(16) {
        Ok(x2)
    } else {
        x2.force_contiguous()
    }
}

/// Writes a device NF4 weight's FP8 codes and row scales into rows `block.0 ..` of an FP8
/// weight's byte buffer (`view.inplace_op1`): the `[rows, cols]` weight zero-padded to
/// `block.1` rows of `layout.inp`.
pub struct Fp8DequantOp<'a> {
    pub kernels: &'a Nf4Kernels,
    pub weight: &'a Nf4DeviceBuffers,
    pub shape: (usize, usize),
    /// (first row, rows written).
    pub block: (usize, usize),
    pub layout: Fp8Layout,
}

impl candle_core::InplaceOp1 for Fp8DequantOp<'_> {
    fn name(&self) -> &'static str {
        "nf4-to-fp8-cuda"
    }

    fn cpu_fwd(&self, _: &mut candle_core::CpuStorage, _: &Layout) -> Result<()> {
        super::custom_op::no_cpu("nf4-to-fp8-cuda")
    }

    fn cuda_fwd(&self, storage: &mut CudaStorage, layout: &Layout) -> Result<()> {
        let (first, rows_pad) = self.block;
        if !layout.is_contiguous()
            || layout.shape().elem_count() != self.layout.bytes()
            || first + rows_pad > self.layout.out
        {
            candle_core::bail!(
                "nf4-to-fp8-cuda: rows {first}..{} of a {:?} weight in a view of {:?}",
                first + rows_pad,
                self.layout,
                layout.dims()
            );
        }
        let stream = storage.device().cuda_stream();
        let base = storage.as_cuda_slice_mut::<u8>()?.device_ptr_mut(&stream).0
            + layout.start_offset() as u64;
        let codes = base + (first * self.layout.inp) as u64;
        let scales = base + (self.layout.scale_offset() + 4 * first) as u64;
        let (rows, cols) = self.shape;
        self.kernels
            .dequantise_fp8(
                &stream,
                self.weight,
                (codes, scales),
                (rows, cols, rows_pad, self.layout.inp),
            )
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }
}

/// `x` `[rows, inp]` bf16 times an FP8 weight's bytes (+ bias) → `[rows, out]` bf16.
struct Fp8Linear {
    layout: Fp8Layout,
}

/// `c += x · wᵀ` in place for an FP8 weight, `c` `[rows, out]` bf16; `x` bf16 rows, or with
/// `codes` the `Fp8Rows` bytes of that layout.
struct Fp8Accumulate {
    layout: Fp8Layout,
    codes: Option<Fp8Layout>,
}

/// Activation codes (`Fp8Rows`, laid out as `input`) times an FP8 weight's bytes (+ bias) →
/// `[input.out, weight.out]` bf16.
struct Fp8LinearRows {
    weight: Fp8Layout,
    input: Fp8Layout,
}

/// A GEMM's input rows: bf16, quantised before the GEMM, or codes and row scales already made.
#[derive(Clone, Copy)]
enum Fp8Input<'a> {
    Bf16(&'a CudaStorage, &'a Layout),
    Codes(&'a CudaStorage, &'a Layout, Fp8Layout),
}

impl Fp8Input<'_> {
    /// (rows, inputs per row).
    fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Fp8Input::Bf16(_, l) => l.shape().dims2(),
            Fp8Input::Codes(_, _, layout) => Ok((layout.out, layout.inp)),
        }
    }
}

/// `x`'s rows as FP8 codes and per-row scales in one fresh buffer: (buffer, scale offset).
fn quantize_rows(
    dev: &CudaDevice,
    x: &candle_core::cuda_backend::cudarc::driver::CudaView<'_, bf16>,
    rows: usize,
    cols: usize,
) -> Result<(
    candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>,
    usize,
)> {
    let stream = dev.cuda_stream();
    let scale_offset = (rows * cols).next_multiple_of(256);
    // SAFETY: the kernel writes every code and every scale before the GEMM reads them.
    let mut q = unsafe { dev.alloc::<u8>(scale_offset + 4 * rows)? };
    let kernels =
        FusedKernels::for_stream(&stream).map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
    let (xp, _) = x.device_ptr(&stream);
    let base = q.device_ptr_mut(&stream).0;
    let (codes, scales) = (base, base + scale_offset as u64);
    let cols32 = cols as u32;
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(&kernels.elementwise.quantize_rows_fp8);
    b.arg(&xp).arg(&codes).arg(&scales).arg(&cols32);
    // SAFETY: `quantize_rows_fp8(x, out, scales, cols)`: `x` holds `rows · cols` bf16 (checked
    // by the caller), `out` `rows · cols` bytes and `scales` `rows` floats inside `q`; `cols` is
    // a multiple of 16 (`Nf4Scratch::takes_fp8`), so every 16-byte load and 8-byte store is
    // aligned and in bounds; one block per row.
    unsafe { b.launch(cfg) }.map_err(|e| candle_core::Error::Msg(format!("{e:?}")))?;
    Ok((q, scale_offset))
}

/// The FP8 GEMM into `out` (`[rows, out]` bf16, read when `beta` ≠ 0).
fn gemm_into<O: DevicePtrMut<bf16>>(
    dev: &CudaDevice,
    layout: Fp8Layout,
    input: Fp8Input<'_>,
    (w, wl): (&CudaStorage, &Layout),
    bias: Option<(&CudaStorage, &Layout)>,
    out: &mut O,
    beta: f32,
) -> Result<()> {
    let (rows, inp) = input.dims()?;
    let codes_fit = match input {
        Fp8Input::Bf16(..) => true,
        Fp8Input::Codes(_, cl, rows_layout) => cl.shape().elem_count() == rows_layout.bytes(),
    };
    if inp != layout.inp
        || !codes_fit
        || wl.shape().elem_count() != layout.bytes()
        || out.len() != rows * layout.out
    {
        candle_core::bail!(
            "fp8 linear: input of {rows} × {inp}, weight bytes {:?}, for a {:?} weight",
            wl.dims(),
            layout
        );
    }
    let stream = dev.cuda_stream();
    let wv = view::<u8>(w, wl)?;
    let bv = match bias {
        Some((b, bl)) if bl.shape().elem_count() == layout.out => Some(view::<bf16>(b, bl)?),
        Some((_, bl)) => candle_core::bail!(
            "fp8 linear: bias {:?} for {} outputs",
            bl.dims(),
            layout.out
        ),
        None => None,
    };
    // Codes made here (`quantized`) live until the GEMM has been queued.
    let (quantized, qp, x_scale_offset) = match input {
        Fp8Input::Bf16(x, xl) => {
            let (q, offset) = quantize_rows(dev, &view::<bf16>(x, xl)?, rows, inp)?;
            let qp = q.device_ptr(&stream).0;
            (Some(q), qp, offset)
        }
        Fp8Input::Codes(c, cl, rows_layout) => (
            None,
            view::<u8>(c, cl)?.device_ptr(&stream).0,
            rows_layout.scale_offset(),
        ),
    };
    let (wp, _) = wv.device_ptr(&stream);
    let bias_ptr = bv.as_ref().map(|b| b.device_ptr(&stream).0);
    let (op, _) = out.device_ptr_mut(&stream);
    let (w_scales, x_scales) = (
        wp + layout.scale_offset() as u64,
        qp + x_scale_offset as u64,
    );
    let gemm = |output| Fp8Gemm {
        weight: (wp, w_scales),
        input: (qp, x_scales),
        output,
        out_features: layout.out,
        rows,
        inp,
    };
    if SCALING_IN_GEMM.load(Ordering::Relaxed) {
        let scaled = Fp8Output::Scaled {
            out: op,
            bias: bias_ptr,
            beta,
        };
        // SAFETY: the pointers are live device buffers on `stream` of the sizes the GEMM reads
        // (checked above: `out · inp` codes and `out` scales in the weight's bytes, `rows · inp`
        // codes and `rows` scales in the input's codes — made here, or an `Fp8Rows` of that
        // layout —, `out` bias values, `rows · out` outputs), and `out`
        // holds initialised values wherever `beta` ≠ 0 reads them (the caller's tensor).
        match unsafe { lt_fp8::matmul(&stream, &gemm(scaled)) } {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains(lt_fp8::NO_SCALED_KERNEL) => {
                SCALING_IN_GEMM.store(false, Ordering::Relaxed);
                tracing::info!("FP8 scales applied by a kernel of ours after the GEMM: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    // The raw sums in f32, then scaled, biased (and added on) in one pass to bf16.
    // SAFETY: the GEMM writes every one of the `rows · out` sums before the rescale reads them.
    let mut raw = unsafe { dev.alloc::<f32>(rows * layout.out)? };
    let (raw_ptr, _) = raw.device_ptr_mut(&stream);
    // SAFETY: as above, the raw output holding `rows · out` f32.
    unsafe { lt_fp8::matmul(&stream, &gemm(Fp8Output::Raw { out: raw_ptr })) }?;
    let kernels =
        FusedKernels::for_stream(&stream).map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
    let n = (rows * layout.out) as u64;
    let cols = layout.out as u32;
    let accumulate = i32::from(beta != 0.0);
    let bias_arg = bias_ptr.unwrap_or(0);
    let mut b = stream.launch_builder(&kernels.elementwise.fp8_rescale_bf16);
    b.arg(&raw_ptr)
        .arg(&w_scales)
        .arg(&x_scales)
        .arg(&bias_arg)
        .arg(&op)
        .arg(&n)
        .arg(&cols)
        .arg(&accumulate);
    // SAFETY: `fp8_rescale_bf16(raw, col_scale, row_scale, bias, out, n, cols, accumulate)`:
    // `raw` and `out` hold `n = rows · out` values, the scales `out` and `rows` floats, the
    // bias `out` bf16 or a null pointer; `out` is initialised where `accumulate` reads it.
    unsafe { b.launch(super::fused_kernel::elementwise_config(n as usize)) }
        .map_err(|e| candle_core::Error::Msg(format!("{e:?}")))?;
    drop(raw);
    drop(quantized);
    Ok(())
}

/// Whether the FP8 GEMM applies the scales and bias itself (cuBLASLt's outer-vector scaling);
/// off after the library refused once, or when a check turns it off to test the other way.
static SCALING_IN_GEMM: AtomicBool = AtomicBool::new(true);

/// Scales in the GEMM (`true`, tried first) or by our kernel after it: for the self-test,
/// which proves both.
pub fn set_scaling_in_gemm(on: bool) {
    SCALING_IN_GEMM.store(on, Ordering::Relaxed);
}

/// Whether the scales go into the GEMM (false once the library refused them).
pub fn scaling_in_gemm() -> bool {
    SCALING_IN_GEMM.load(Ordering::Relaxed)
}

impl WithBias for Fp8Linear {
    fn run(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        fresh_output(self.layout, Fp8Input::Bf16(x, xl), (w, wl), bias)
    }
}

impl WithBias for Fp8LinearRows {
    fn run(
        &self,
        codes: &CudaStorage,
        cl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        fresh_output(
            self.weight,
            Fp8Input::Codes(codes, cl, self.input),
            (w, wl),
            bias,
        )
    }
}

/// The FP8 GEMM of `input` into a fresh `[rows, out]` bf16 tensor (+ bias).
fn fresh_output(
    layout: Fp8Layout,
    input: Fp8Input<'_>,
    weight: (&CudaStorage, &Layout),
    bias: Option<(&CudaStorage, &Layout)>,
) -> Result<(CudaStorage, Shape)> {
    let dev = weight.0.device().clone();
    let (rows, _) = input.dims()?;
    // SAFETY: the GEMM (beta 0, so never read) writes all `rows × out` values.
    let mut y = unsafe { dev.alloc::<bf16>(rows * layout.out)? };
    gemm_into(&dev, layout, input, weight, bias, &mut y, 0.0)?;
    Ok((
        CudaStorage::wrap_cuda_slice(y, dev),
        Shape::from((rows, layout.out)),
    ))
}

impl Fp8Accumulate {
    fn cuda(
        &self,
        c: &mut CudaStorage,
        cl: &Layout,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
    ) -> Result<()> {
        let dev = x.device().clone();
        let input = match self.codes {
            Some(rows_layout) => Fp8Input::Codes(x, xl, rows_layout),
            None => Fp8Input::Bf16(x, xl),
        };
        let (rows, _) = input.dims()?;
        if cl.shape().elem_count() != rows * self.layout.out {
            candle_core::bail!(
                "fp8 accumulate: output {:?} for {rows} rows of {}",
                cl.dims(),
                self.layout.out
            );
        }
        let mut cv = view_mut::<bf16>(c, cl)?;
        gemm_into(&dev, self.layout, input, (w, wl), None, &mut cv, 1.0)
    }
}

super::custom_op::cuda_op!(linear, Fp8Linear, "fp8-linear", "fp8-linear-bias");
super::custom_op::cuda_op!(
    linear,
    Fp8LinearRows,
    "fp8-linear-rows",
    "fp8-linear-rows-bias"
);
super::custom_op::cuda_op!(inplace 3, Fp8Accumulate, "fp8-linear-accumulate", cuda);
