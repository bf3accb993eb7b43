//! Fused steps of the forward pass: on a CUDA device with bf16 activations each is one kernel
//! (`fused_kernel`), elsewhere — the CPU, other dtypes, non-contiguous inputs, or with the
//! model's `GpuKernels::fused` off — the equivalent chain of candle ops. The CPU path is what the
//! reference-parity tests check; the GPU selftest checks the fused path against it.

use super::attention_tiles::DeviceTiles;
use candle_core::{DType, Result, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

// Process-wide, because every op of the forward pass consults them: `ColQwen::load` sets both
// from the model's `GpuKernels`, the benchmarks and the GPU selftest switch them for an A/B.
static FUSED: AtomicBool = AtomicBool::new(true);
static CUBLASLT: AtomicBool = AtomicBool::new(true);
static NF4_ROWS: AtomicBool = AtomicBool::new(true);
static FP8_CODES: AtomicBool = AtomicBool::new(true);

/// Whether the fused kernels serve CUDA tensors.
pub fn enabled() -> bool {
    FUSED.load(Ordering::Relaxed)
}

/// Turns the fused kernels on or off for the whole process.
pub fn set_enabled(on: bool) {
    FUSED.store(on, Ordering::Relaxed);
}

/// Whether linear layers on CUDA run on cuBLASLt with the bias in the GEMM's epilogue (off:
/// candle's matmul and a separate bias pass).
pub fn cublaslt_enabled() -> bool {
    CUBLASLT.load(Ordering::Relaxed)
}

/// Turns cuBLASLt linears on or off for the whole process.
pub fn set_cublaslt(on: bool) {
    CUBLASLT.store(on, Ordering::Relaxed);
}

/// Whether a few rows times an NF4 weight run from the codes (`nf4_rows::Nf4RowsOp`).
pub fn nf4_rows_enabled() -> bool {
    NF4_ROWS.load(Ordering::Relaxed)
}

/// Turns the NF4 few-rows kernel on or off for the whole process.
pub fn set_nf4_rows(on: bool) {
    NF4_ROWS.store(on, Ordering::Relaxed);
}

/// Whether kernels that make an FP8 GEMM's input write it as that GEMM's codes
/// ([`silu_mul_fp8`], [`residual_rms_norm_fp8`]); off: they write bf16 and the GEMM quantises.
pub fn fp8_codes_enabled() -> bool {
    FP8_CODES.load(Ordering::Relaxed)
}

/// Turns the producers' FP8 codes on or off for the whole process.
pub fn set_fp8_codes(on: bool) {
    FP8_CODES.store(on, Ordering::Relaxed);
}

/// `x` [.., in] · `w` [out, in]ᵀ (+ `bias` [out]): on CUDA in bf16 one cuBLASLt call (bias in
/// its epilogue), elsewhere candle's matmul and `add_bias`.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if cublaslt_enabled()
        && [x, w]
            .iter()
            .all(|t| t.device().is_cuda() && t.dtype() == DType::BF16 && t.is_contiguous())
        && w.rank() == 2
    {
        let (out, inp) = w.dims2()?;
        let mut dims = x.dims().to_vec();
        if dims.last() == Some(&inp) {
            let rows = x.elem_count() / inp.max(1);
            let x2 = x.reshape((rows, inp))?;
            let y = match bias {
                Some(b) => {
                    let b = b.to_dtype(DType::BF16)?.contiguous()?;
                    x2.apply_op3_no_bwd(w, &b, &super::lt_gemm::LtLinear)?
                }
                None => x2.apply_op2_no_bwd(w, &super::lt_gemm::LtLinear)?,
            };
            *dims.last_mut().unwrap_or(&mut 0) = out;
            return y.reshape(dims);
        }
    }
    use candle_core::Module;
    if let Some(y) = few_rows_weight(x, w)? {
        return add_bias(y, bias);
    }
    // Half-precision weights under f32 activations (the CPU path) multiply widened.
    let w = if w.dtype() == x.dtype() {
        w.clone()
    } else {
        w.to_dtype(x.dtype())?
    };
    add_bias(candle_nn::Linear::new(w, None).forward(x)?, bias)
}

/// Whether [`linear_onto`] adds in the GEMM itself for these operands (CUDA, bf16, cuBLASLt on):
/// callers that can put the other term (and the bias) into `c` first then skip a pass.
pub fn accumulates_in_gemm(x: &Tensor, w: &Tensor) -> bool {
    cfg!(feature = "cuda")
        && cublaslt_enabled()
        && [x, w]
            .iter()
            .all(|t| t.device().is_cuda() && t.dtype() == DType::BF16)
}

/// `c + x · wᵀ` for `x` [.., in], `w` [out, in] and `c` [.., out] (no bias: put it in `c`). On
/// CUDA in bf16 the GEMM adds onto `c` in place (its beta = 1: one rounding, no separate add
/// pass), so pass a fresh tensor that nothing else aliases; elsewhere a product and an add.
pub fn linear_onto(c: Tensor, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if accumulates_in_gemm(x, w)
        && c.dtype() == DType::BF16
        && c.is_contiguous()
        && w.is_contiguous()
    {
        let (out, inp) = w.dims2()?;
        let rows = x.elem_count() / inp.max(1);
        if x.dims().last() == Some(&inp) && c.elem_count() == rows * out {
            let dims = c.dims().to_vec();
            let x2 = x.contiguous()?.reshape((rows, inp))?;
            let c2 = c.reshape((rows, out))?;
            c2.inplace_op3(&x2, w, &super::lt_gemm::LtAccumulate)?;
            return c2.reshape(dims);
        }
    }
    let y = linear(x, w, None)?;
    let dtype = c.dtype();
    c + y.to_dtype(dtype)?
}

/// Up to this many rows (a query's tokens), a weight under f32 activations on the CPU is read
/// once, in its stored precision, by `quant::gemm` instead of candle's GEMM: widening a bf16/f16
/// weight writes it out at twice its size for the GEMM to read back, and the GEMM packs even an
/// f32 weight, costs that grow with the weight, not the rows, so a few rows cannot amortise them.
const FEW_ROWS: usize = crate::quant::DIRECT_ROWS_MAX;

/// `x · wᵀ` for a few f32 rows and an f32/bf16/f16 weight on the CPU, or None where it does not
/// apply.
fn few_rows_weight(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    use crate::quant::gemm::matmul_rows;
    if !x.device().is_cpu()
        || x.dtype() != DType::F32
        || w.rank() != 2
        || !w.is_contiguous()
        || !crate::quant::gemm::kernels_enabled()
    {
        return Ok(None);
    }
    let (out, inp) = w.dims2()?;
    let mut dims = x.dims().to_vec();
    if dims.last() != Some(&inp) {
        return Ok(None);
    }
    let rows = x.elem_count() / inp.max(1);
    if rows == 0 || rows > FEW_ROWS {
        return Ok(None);
    }
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let Some(y) = with_cpu_weight(w, |w| matmul_rows(w, out, inp, &xs, rows)) else {
        return Ok(None);
    };
    *dims.last_mut().unwrap_or(&mut 0) = out;
    Ok(Some(Tensor::from_vec(y, dims, x.device())?))
}

/// `f` of a contiguous 2-D f32/bf16/f16 weight in host memory, as the few-row kernels take it;
/// None for any other tensor.
pub fn with_cpu_weight<R>(
    w: &Tensor,
    f: impl FnOnce(crate::quant::gemm::Weight) -> R,
) -> Option<R> {
    use crate::quant::gemm::Weight;
    use candle_core::{CpuStorage, Storage};
    if w.rank() != 2 || !w.is_contiguous() {
        return None;
    }
    let n = w.elem_count();
    let (storage, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let range = layout.start_offset()..layout.start_offset() + n;
    match cpu {
        CpuStorage::BF16(v) => Some(f(Weight::Bf16(&v[range]))),
        CpuStorage::F16(v) => Some(f(Weight::F16(&v[range]))),
        CpuStorage::F32(v) => Some(f(Weight::F32(&v[range]))),
        _ => None,
    }
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn fused_for(t: &Tensor, dtype: DType) -> bool {
    t.device().is_cuda() && t.dtype() == dtype && t.is_contiguous() && enabled()
}

/// `y + bias` broadcast over rows (`bias` [cols], `y` [.., cols]); in place on the GPU, so pass
/// a fresh tensor (a GEMM's output) that nothing else aliases.
pub fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let Some(bias) = bias else { return Ok(y) };
    let bias = bias.to_dtype(y.dtype())?;
    #[cfg(feature = "cuda")]
    if fused_for(&y, DType::BF16) && bias.is_contiguous() {
        y.inplace_op2(&bias, &cuda::BiasAdd)?;
        return Ok(y);
    }
    y.broadcast_add(&bias)
}

/// `x + h` for the f32 residual stream `x` and a layer output `h` of any float dtype.
pub fn residual_add(x: &Tensor, h: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if fused_for(x, DType::F32) && fused_for(h, DType::BF16) && x.shape() == h.shape() {
        return x.apply_op2_no_bwd(h, &cuda::ResidualAdd);
    }
    x + h.to_dtype(DType::F32)?
}

/// `silu(gate) · up`.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if fused_for(gate, DType::BF16) && fused_for(up, DType::BF16) && gate.shape() == up.shape() {
        return gate.apply_op2_no_bwd(up, &cuda::SiluMul(cuda::SiluOutput::Bf16));
    }
    if gate.shape() == up.shape() {
        if let Some(y) = silu_mul_cpu(gate, Some(up))? {
            return Ok(y);
        }
    }
    candle_nn::ops::silu(gate)? * up
}

/// `silu(gate) · up` for a stacked projection `gu` [.., 2h] = [gate | up] → [.., h].
pub fn silu_mul_halves(gu: &Tensor) -> Result<Tensor> {
    let last = gu.rank().saturating_sub(1);
    let h = gu.dim(last)? / 2;
    #[cfg(feature = "cuda")]
    if fused_for(gu, DType::BF16) {
        return gu.apply_op1_no_bwd(&cuda::SiluMulHalves(cuda::SiluOutput::Bf16));
    }
    if let Some(y) = silu_mul_cpu(gu, None)? {
        return Ok(y);
    }
    silu_mul(&gu.narrow(last, 0, h)?, &gu.narrow(last, h, h)?)
}

/// [`silu_mul`] (`up` given) or [`silu_mul_halves`] (`up` None: `gate` holds both halves) for
/// contiguous f32 tensors on the CPU, on every core; None for anything else. candle's silu and
/// mul took the halves' strided views on one core, and their `exp` was a query's largest step
/// outside the products. The same f32 operations in the same order as candle's (`g / (1 +
/// e^-g)` rounded, then `× u`): the same values.
fn silu_mul_cpu(gate: &Tensor, up: Option<&Tensor>) -> Result<Option<Tensor>> {
    use candle_core::{CpuStorage, Storage};
    let dense = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
    if !dense(gate) || !up.is_none_or(dense) || gate.rank() == 0 {
        return Ok(None);
    }
    let width = gate.dim(gate.rank() - 1)?;
    if up.is_none() && width % 2 != 0 {
        return Ok(None);
    }
    let h = if up.is_some() { width } else { width / 2 };
    let (gs, gl) = gate.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(g)) = &*gs else {
        return Ok(None);
    };
    let g = &g[gl.start_offset()..][..gate.elem_count()];
    let us = up.map(|u| u.storage_and_layout());
    let u = match &us {
        Some((s, ul)) => match &**s {
            Storage::Cpu(CpuStorage::F32(u)) => Some(&u[ul.start_offset()..][..gate.elem_count()]),
            _ => return Ok(None),
        },
        None => None,
    };
    let rows = gate.elem_count() / width.max(1);
    // Tasks of a row's `CHUNK` outputs: a query's 28 rows × 11008 spread over every core.
    const CHUNK: usize = 4096;
    let per_row = h.div_ceil(CHUNK);
    let mut y: Vec<f32> = Vec::with_capacity(rows * h);
    let out = crate::parallel::SharedOut::new(&mut y);
    let task = |t: usize| {
        let (r, c0) = (t / per_row, t % per_row * CHUNK);
        let n = CHUNK.min(h - c0);
        let (gate, up) = match u {
            Some(u) => (&g[r * width + c0..][..n], &u[r * width + c0..][..n]),
            None => (&g[r * width + c0..][..n], &g[r * width + h + c0..][..n]),
        };
        // SAFETY: row `r`'s outputs `c0 .. c0 + n`, inside `y`'s capacity, this task's only.
        let dst = unsafe { out.part(r * h + c0, n) };
        for ((d, &g), &u) in dst.iter_mut().zip(gate).zip(up) {
            *d = (g / (1.0 + (-g).exp())) * u;
        }
    };
    crate::parallel::for_each_over(rows * h, rows * per_row, task);
    // SAFETY: the tasks cover every row's `h` outputs once.
    unsafe { y.set_len(rows * h) };
    let mut dims = gate.dims().to_vec();
    *dims.last_mut().expect("rank ≥ 1") = h;
    Ok(Some(Tensor::from_vec(y, dims, gate.device())?))
}

/// `silu(gate) · up` straight to FP8 E4M3 codes with a scale per row (`fp8::Fp8Rows`), for the
/// next layer's FP8 GEMM: the codes that GEMM would make from [`silu_mul`]'s bf16 rows, bit for
/// bit, without writing the rows out and reading them back. `gate` and `up` of one shape, or
/// with `up` None one stacked `[gate | up]` (as [`silu_mul_halves`]). None where the kernel does
/// not apply (see [`silu_fp8_rows_layout`]).
#[cfg(feature = "cuda")]
pub fn silu_mul_fp8(gate: &Tensor, up: Option<&Tensor>) -> Result<Option<super::fp8::Fp8Rows>> {
    let Some(layout) = silu_fp8_rows_layout(gate, up) else {
        return Ok(None);
    };
    let bytes = match up {
        Some(u) => gate.apply_op2_no_bwd(u, &cuda::SiluMul(cuda::SiluOutput::Fp8Rows))?,
        None => gate.apply_op1_no_bwd(&cuda::SiluMulHalves(cuda::SiluOutput::Fp8Rows))?,
    };
    Ok(Some(super::fp8::Fp8Rows { bytes, layout }))
}

/// [`silu_mul_fp8`]'s codes and [`silu_mul`]'s bf16 rows, from one pass: for a GEMM that reads
/// the codes with an adapter beside it that reads the rows (the language model's down
/// projection). The rows are read back once, by the adapter, instead of twice.
#[cfg(feature = "cuda")]
pub fn silu_mul_fp8_beside(
    gate: &Tensor,
    up: Option<&Tensor>,
) -> Result<Option<(Tensor, super::fp8::Fp8Rows)>> {
    let Some(layout) = silu_fp8_rows_layout(gate, up) else {
        return Ok(None);
    };
    let (rows, bytes) = cuda::silu_mul_fp8_beside(gate, up)?;
    Ok(Some((rows, super::fp8::Fp8Rows { bytes, layout })))
}

/// The layout of `silu(gate) · up`'s rows as FP8 codes, where the kernel that writes them
/// applies: switched on ([`fp8_codes_enabled`]), bf16 on CUDA, rows in whole 16-byte vectors, no
/// wider than it keeps.
#[cfg(feature = "cuda")]
fn silu_fp8_rows_layout(gate: &Tensor, up: Option<&Tensor>) -> Option<super::fp8::Fp8Layout> {
    let width = gate.dims().last().copied().unwrap_or(0);
    let h = if up.is_some() { width } else { width / 2 };
    let aligned = |t: &Tensor| t.layout().start_offset().is_multiple_of(8);
    let applies = fp8_codes_enabled()
        && fused_for(gate, DType::BF16)
        && aligned(gate)
        && up.is_none_or(|u| fused_for(u, DType::BF16) && aligned(u) && u.shape() == gate.shape())
        && h > 0
        && h.is_multiple_of(16)
        && h <= cuda::SILU_FP8_MAX_WIDTH;
    applies.then(|| super::fp8::Fp8Layout {
        out: gate.elem_count() / width,
        inp: h,
    })
}

/// RMSNorm over the last dim computed in f32 (`weight` f32), output in `out_dtype`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32, out_dtype: DType) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if norm_fused_for(x, weight, out_dtype) {
        return Ok(cuda::rms_norm(x, None, weight, eps, false)?.1);
    }
    candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?, weight, eps)?.to_dtype(out_dtype)
}

/// `x + h` for the f32 residual stream `x` and a layer output `h`, and the RMSNorm of that (as
/// [`rms_norm`]): the stream after the layer and the next layer's input. On CUDA one pass over
/// each row.
pub fn residual_rms_norm(
    x: &Tensor,
    h: &Tensor,
    weight: &Tensor,
    eps: f32,
    out_dtype: DType,
) -> Result<(Tensor, Tensor)> {
    #[cfg(feature = "cuda")]
    if norm_fused_for(x, weight, out_dtype) && fused_for(h, DType::BF16) && x.shape() == h.shape() {
        return cuda::rms_norm(x, Some(h), weight, eps, false);
    }
    let x = residual_add(x, h)?;
    let normed = rms_norm(&x, weight, eps, out_dtype)?;
    Ok((x, normed))
}

/// [`residual_rms_norm`] with the norm written straight as FP8 E4M3 codes and a scale per row
/// (`fp8::Fp8Rows`), for FP8 GEMMs that read it: the codes they would make from the bf16 norm,
/// bit for bit. None where the kernel does not apply (switched off, as for `residual_rms_norm`,
/// or rows not in whole 16-byte vectors of codes).
#[cfg(feature = "cuda")]
pub fn residual_rms_norm_fp8(
    x: &Tensor,
    h: &Tensor,
    weight: &Tensor,
    eps: f32,
) -> Result<Option<(Tensor, super::fp8::Fp8Rows)>> {
    let dim = weight.elem_count();
    if !(fp8_codes_enabled()
        && norm_fused_for(x, weight, DType::BF16)
        && fused_for(h, DType::BF16)
        && x.shape() == h.shape()
        && dim.is_multiple_of(16))
    {
        return Ok(None);
    }
    let (stream, bytes) = cuda::rms_norm(x, Some(h), weight, eps, true)?;
    let layout = super::fp8::Fp8Layout {
        out: x.elem_count() / dim,
        inp: dim,
    };
    Ok(Some((stream, super::fp8::Fp8Rows { bytes, layout })))
}

/// Whether the norm kernel serves `x` [.., dim] f32 with `weight` [dim] f32 into bf16: rows of
/// whole 16-byte vectors that fit the kernel's registers.
#[cfg(feature = "cuda")]
fn norm_fused_for(x: &Tensor, weight: &Tensor, out_dtype: DType) -> bool {
    let dim = weight.elem_count();
    out_dtype == DType::BF16
        && fused_for(x, DType::F32)
        && fused_for(weight, DType::F32)
        && x.dims().last() == Some(&dim)
        && dim.is_multiple_of(4)
        && dim <= cuda::NORM_MAX_DIM
        && x.layout().start_offset().is_multiple_of(4)
}

/// Attention on tensor cores (`flash_kernel`) for every attention of the model, when it applies:
/// `qkv` [n, (heads + 2·kv_heads)·hd] bf16, a fresh projection output (biases added) that is
/// rotated in place — its q and k heads by `cos_sin` [n, hd] f32 (cos then sin); `tiles` the
/// table of `{q_begin, q_end, k_begin, k_end}` in slots (see `attention_tiles::TileTable`), the
/// kernel launched for its tile size; `gather` [slots] u32 maps slots to rows (a slot
/// mapping to `n` is padding), or None when slots are rows. Returns [n, heads·hd] bf16; rows no
/// tile covers, or with no visible key, are zeros. None where the caller must run the unfused
/// path.
pub fn tiled_attention(
    qkv: Tensor,
    cos_sin: &Tensor,
    tiles: &DeviceTiles,
    gather: Option<&Tensor>,
    shape: TiledAttentionShape,
) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if fused_for(&qkv, DType::BF16)
        && fused_for(cos_sin, DType::F32)
        && fused_for(&tiles.tiles, DType::U32)
        && gather.is_none_or(|g| fused_for(g, DType::U32))
        && super::attention_tiles::fits(shape.head_dim)
    {
        // Where each K tile is read once (windows: one key tile per window), the kernel rotates
        // q and k as their tiles land and the pass over them in place is saved; elsewhere a K
        // tile serves many query tiles and is rotated once, in place, before.
        let rope = match gather {
            Some(_) => Some(cos_sin.clone()),
            None => {
                qkv.inplace_op2(cos_sin, &cuda::RopeQk(shape))?;
                None
            }
        };
        let op = cuda::FlashAttention {
            shape,
            query_tile: tiles.query_tile,
            rope,
        };
        let out = match gather {
            Some(g) => qkv.apply_op3_no_bwd(&tiles.tiles, g, &op)?,
            None => qkv.apply_op2_no_bwd(&tiles.tiles, &op)?,
        };
        return Ok(Some(out));
    }
    let _ = (qkv, cos_sin, tiles, gather, shape);
    Ok(None)
}

#[derive(Clone, Copy, Debug)]
pub struct TiledAttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Slot j is visible to slot i only when j ≤ i.
    pub causal: bool,
}

#[cfg(feature = "cuda")]
mod cuda;

#[cfg(test)]
mod few_rows_tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn few_rows_with_a_half_weight_equal_the_widened_product() {
        let dev = Device::Cpu;
        // 37 inputs: not a multiple of the dot product's 16 lanes.
        let w = Tensor::randn(0f32, 1.0, (5, 37), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
        for dtype in [DType::BF16, DType::F16] {
            let wh = w.to_dtype(dtype).unwrap();
            let want_w = wh.to_dtype(DType::F32).unwrap();
            for rows in [1usize, 3, FEW_ROWS, FEW_ROWS + 1] {
                let x = Tensor::randn(0f32, 1.0, (1, rows, 37), &dev).unwrap();
                let got = linear(&x, &wh, Some(&b)).unwrap();
                let want = x
                    .broadcast_matmul(&want_w.t().unwrap())
                    .unwrap()
                    .broadcast_add(&b)
                    .unwrap();
                assert_eq!(got.dims(), &[1, rows, 5]);
                let diff = (got - want)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-4, "{dtype:?} rows {rows}: {diff}");
            }
        }
    }
}

#[cfg(test)]
mod silu_mul_cpu_tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn silu_mul_on_every_core_equals_candles_ops_bit_for_bit() {
        let dev = Device::Cpu;
        // 3 rows: under the pool's threshold; 28 rows × 3000: over it, the rows cut in chunks
        // with a short last one.
        for (rows, h) in [(3, 70), (28, 3000), (28, 4096 + 5)] {
            let gu = Tensor::randn(0f32, 3.0, (1, rows, 2 * h), &dev).unwrap();
            let (gate, up) = (gu.narrow(2, 0, h).unwrap(), gu.narrow(2, h, h).unwrap());
            let want = (candle_nn::ops::silu(&gate).unwrap() * &up).unwrap();
            let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
            let halves = silu_mul_cpu(&gu, None).unwrap().expect("the CPU path");
            assert_eq!(halves.dims(), &[1, rows, h]);
            let (gate, up) = (gate.contiguous().unwrap(), up.contiguous().unwrap());
            let pair = silu_mul_cpu(&gate, Some(&up))
                .unwrap()
                .expect("the CPU path");
            for got in [halves, pair] {
                let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{rows} × {h}: not candle's values");
            }
        }
    }

    #[test]
    fn silu_mul_leaves_other_tensors_to_candle() {
        let dev = Device::Cpu;
        let gu = Tensor::randn(0f32, 1.0, (2, 8), &dev).unwrap();
        // Strided, another dtype, an odd stacked width: not this path's.
        assert!(silu_mul_cpu(&gu.t().unwrap(), None).unwrap().is_none());
        let bf = gu.to_dtype(DType::BF16).unwrap();
        assert!(silu_mul_cpu(&bf, None).unwrap().is_none());
        assert!(
            silu_mul_cpu(&gu.narrow(1, 0, 7).unwrap().contiguous().unwrap(), None)
                .unwrap()
                .is_none()
        );
        // And the public functions still answer for them.
        assert_eq!(silu_mul_halves(&bf).unwrap().dims(), &[2, 4]);
    }
}
