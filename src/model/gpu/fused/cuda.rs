//! The CUDA side of `fused`: one custom op or launch per kernel of `fused_kernel.cu`, each
//! checking the shapes its kernel assumes. The public wrappers in `fused` decide when these apply.

use super::super::custom_op::{cuda_op, view, view_mut};
use super::super::flash_kernel::FlashShape;
use super::super::fused_kernel::{elementwise_config, FusedKernels};
use super::TiledAttentionShape;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{Layout, Result, Shape, Tensor};
use half::bf16;

fn kernels(s: &CudaStorage) -> Result<std::sync::Arc<FusedKernels>> {
    FusedKernels::for_stream(&s.device().cuda_stream())
        .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
}

/// `f(a, b, out, n)`, a grid-stride kernel over two inputs of one shape, into a fresh `O`.
fn binary_elementwise<A: CudaDType, B: CudaDType, O: CudaDType + DeviceRepr>(
    f: &CudaFunction,
    a: &CudaStorage,
    al: &Layout,
    b: &CudaStorage,
    bl: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = a.device().clone();
    let stream = dev.cuda_stream();
    let n = al.shape().elem_count();
    let (av, bv) = (view::<A>(a, al)?, view::<B>(b, bl)?);
    // SAFETY: allocated on the stream the kernel below runs on, and every one of its `n`
    // elements is written by that grid-stride kernel before the tensor is handed out.
    let mut out = unsafe { dev.alloc::<O>(n)? };
    let n64 = n as u64;
    let mut l = stream.launch_builder(f);
    l.arg(&av).arg(&bv).arg(&mut out).arg(&n64);
    // SAFETY: `f` is a `(const A*, const B*, O* out, unsigned long long n)` kernel
    // (`residual_add_f32_bf16`), called with the types it was compiled for.
    // Both inputs have `al`'s shape (the public wrappers check `x.shape() == h.shape()`), so
    // both views and `out` hold `n` elements, and the grid-stride loop stops at `i < n`.
    unsafe { l.launch(elementwise_config(n)) }.map_err(candle_core::Error::wrap)?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev), al.shape().clone()))
}

pub struct BiasAdd;
cuda_op!(inplace 2, BiasAdd, "fused-bias-add", cuda);
impl BiasAdd {
    fn cuda(&self, y: &mut CudaStorage, yl: &Layout, b: &CudaStorage, bl: &Layout) -> Result<()> {
        let k = kernels(y)?;
        let stream = y.device().cuda_stream();
        let cols = bl.shape().elem_count();
        let n = yl.shape().elem_count();
        if cols == 0 || !n.is_multiple_of(cols) || yl.dims().last() != Some(&cols) {
            candle_core::bail!("bias add: bias of {cols} for output {:?}", yl.dims());
        }
        let bv = view::<bf16>(b, bl)?;
        let mut yv = view_mut::<bf16>(y, yl)?;
        let (n64, c32) = (n as u64, cols as u32);
        let mut l = stream.launch_builder(&k.elementwise.bias_add_bf16);
        l.arg(&mut yv).arg(&bv).arg(&n64).arg(&c32);
        // SAFETY: `bias_add_bf16(bf16* y, const bf16* b, u64 n, u32 cols)` gets those types.
        // `yv` is the `n` elements of the contiguous output and `bv` the `cols` of the bias;
        // the kernel writes `y[i]`, `i < n`, and reads `b[i % cols]`, `cols > 0` (checked).
        unsafe { l.launch(elementwise_config(n)) }.map_err(candle_core::Error::wrap)?;
        Ok(())
    }
}

/// out (f32) from x (f32) and h (bf16) of the same shape.
pub struct ResidualAdd;
cuda_op!(2, ResidualAdd, "fused-residual-add", cuda);
impl ResidualAdd {
    fn cuda(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        h: &CudaStorage,
        hl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let k = kernels(x)?;
        binary_elementwise::<f32, bf16, f32>(&k.elementwise.residual_add_f32_bf16, x, xl, h, hl)
    }
}

/// What `silu_mul_rows` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiluOutput {
    /// `[rows, h]` bf16.
    Bf16,
    /// The rows as FP8 E4M3 codes and row scales (`fp8::Fp8Rows`' layout), as the next FP8
    /// GEMM reads them: `silu_mul_fp8_rows`.
    Fp8Rows,
}

/// Threads of a `silu_mul_fp8_rows` block and the values each keeps (`SILU_FP8_STEPS` steps
/// of 8): the widest row it takes.
const SILU_FP8_THREADS: usize = 256;
pub const SILU_FP8_MAX_WIDTH: usize = SILU_FP8_THREADS * 8 * 6;

/// `silu_mul_rows_bf16` (or `silu_mul_fp8_rows`) into a fresh buffer: gate row `r` at
/// `g[r·gs..]`, up row at `u[r·us..]` (`*_start`: the views' first elements in their
/// allocations, for alignment). With FP8 output, `beside` (`rows · h` bf16) also receives the
/// bf16 rows.
#[allow(clippy::too_many_arguments)]
fn silu_mul_rows(
    dev: &candle_core::cuda_backend::CudaDevice,
    (g, g_start): (&CudaView<'_, bf16>, usize),
    (u, u_start): (&CudaView<'_, bf16>, usize),
    rows: usize,
    h: usize,
    gs: usize,
    us: usize,
    output: SiluOutput,
    beside: Option<&mut CudaSlice<bf16>>,
) -> Result<CudaStorage> {
    let k = FusedKernels::for_stream(&dev.cuda_stream())
        .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
    // Values from a view's start to the end of its last row.
    let span = |stride: usize| rows.saturating_sub(1) * stride + h;
    if rows == 0
        || h == 0
        || span(gs) > g.len()
        || span(us) > u.len()
        || u32::try_from(rows.max(h).max(gs).max(us)).is_err()
    {
        candle_core::bail!("silu·mul: {rows} rows of {h} with strides {gs}/{us}");
    }
    let vec8 = [h, gs, us, g_start, u_start]
        .iter()
        .all(|v| v.is_multiple_of(8));
    if output == SiluOutput::Fp8Rows {
        return silu_mul_fp8(dev, &k, (g, u), rows, (h, gs, us), vec8, beside);
    }
    if beside.is_some() {
        candle_core::bail!("silu·mul: bf16 rows beside bf16 rows");
    }
    let per_thread = if vec8 { 8 } else { 1 };
    let threads = 256u32;
    let cfg = LaunchConfig {
        grid_dim: (
            h.div_ceil(per_thread * threads as usize).clamp(1, 64) as u32,
            rows.min(65535) as u32,
            1,
        ),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: allocated on the stream the kernel below runs on, which writes all `h` values
    // of each of the `rows` rows before the tensor is handed out.
    let mut out = unsafe { dev.alloc::<bf16>(rows * h)? };
    let (r32, h32, gs32, us32, v) = (rows as u32, h as u32, gs as u32, us as u32, vec8 as i32);
    let stream = dev.cuda_stream();
    let mut l = stream.launch_builder(&k.elementwise.silu_mul_rows_bf16);
    l.arg(g)
        .arg(u)
        .arg(&mut out)
        .arg(&r32)
        .arg(&h32)
        .arg(&gs32)
        .arg(&us32)
        .arg(&v);
    // SAFETY: `silu_mul_rows_bf16(const u16* g, const u16* u, u16* out, u32 rows, u32 h,
    // u32 gs, u32 us, int vec8)` gets those types (all sizes fit u32, checked). Row `r <
    // rows` reads `g[r·gs + j]` and `u[r·us + j]` for `j < h`, within the views (checked
    // above), and writes `out[r·h + j]`, within its `rows·h`. With `vec8` every row start
    // is a multiple of 8 values from a 256-byte aligned allocation, so the 16-byte
    // accesses are aligned.
    unsafe { l.launch(cfg) }.map_err(candle_core::Error::wrap)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// `silu_mul_fp8_rows` into a fresh `Fp8Rows` buffer (the views checked by the caller), and
/// the bf16 rows into `beside` when given.
fn silu_mul_fp8(
    dev: &candle_core::cuda_backend::CudaDevice,
    k: &FusedKernels,
    (g, u): (&CudaView<'_, bf16>, &CudaView<'_, bf16>),
    rows: usize,
    (h, gs, us): (usize, usize, usize),
    vec8: bool,
    beside: Option<&mut CudaSlice<bf16>>,
) -> Result<CudaStorage> {
    if !vec8 || h > SILU_FP8_MAX_WIDTH || beside.as_ref().is_some_and(|b| b.len() < rows * h) {
        candle_core::bail!(
            "silu·mul to fp8: rows of {h} (strides {gs}/{us}) unaligned or too wide, or bf16 \
             rows beside it too short"
        );
    }
    let layout = super::super::fp8::Fp8Layout { out: rows, inp: h };
    // SAFETY: allocated on the stream the kernel below runs on, which writes every code and
    // every row scale before the buffer is handed out.
    let mut out = unsafe { dev.alloc::<u8>(layout.bytes())? };
    let stream = dev.cuda_stream();
    let base = {
        use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
        out.device_ptr_mut(&stream).0
    };
    let (codes, scales) = (base, base + layout.scale_offset() as u64);
    let hb = match beside {
        Some(b) => {
            use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
            b.device_ptr_mut(&stream).0
        }
        None => 0u64,
    };
    let (h32, gs32, us32) = (h as u32, gs as u32, us as u32);
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (SILU_FP8_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = stream.launch_builder(&k.elementwise.silu_mul_fp8_rows);
    l.arg(g)
        .arg(u)
        .arg(&codes)
        .arg(&scales)
        .arg(&hb)
        .arg(&h32)
        .arg(&gs32)
        .arg(&us32);
    // SAFETY: `silu_mul_fp8_rows(const u16* g, const u16* u, u8* out, float* scales, u16* hb,
    // u32 h, u32 gs, u32 us)` gets those types (sizes fit u32, checked by the caller). Block
    // `r < rows` reads `g[r·gs + j]` and `u[r·us + j]` for `j < h` (within the views, checked
    // by the caller) and writes codes `r·h + j` and scale `r` inside `out` (`layout.bytes()`:
    // the scales start at `scale_offset`, a multiple of 256), and `hb[r·h + j]` when `hb` is
    // not null (`beside`, at least `rows · h` values, checked above, a fresh 256-byte aligned
    // allocation). h, the strides and the starts are multiples of 8 values from 256-byte
    // aligned allocations (`vec8`), so the 16-byte loads and stores and 8-byte stores are
    // aligned; h ≤ SILU_FP8_MAX_WIDTH, the widest row its 256 threads keep.
    unsafe { l.launch(cfg) }.map_err(candle_core::Error::wrap)?;
    Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
}

/// The shape `silu_mul_rows` hands out: `dims` with the last one `h` (bf16), or the flat
/// `Fp8Rows` bytes of `rows × h`.
fn silu_shape(mut dims: Vec<usize>, rows: usize, h: usize, output: SiluOutput) -> Shape {
    match output {
        SiluOutput::Bf16 => {
            *dims.last_mut().unwrap_or(&mut 0) = h;
            Shape::from(dims)
        }
        SiluOutput::Fp8Rows => {
            Shape::from(super::super::fp8::Fp8Layout { out: rows, inp: h }.bytes())
        }
    }
}

/// `silu(gate) · up` of a stacked projection's halves.
pub struct SiluMulHalves(pub SiluOutput);
cuda_op!(1, SiluMulHalves, "fused-silu-mul-halves", cuda);
impl SiluMulHalves {
    fn cuda(&self, gu: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let dims = l.dims().to_vec();
        let width = dims.last().copied().unwrap_or(0);
        if width == 0 || width % 2 != 0 {
            candle_core::bail!("silu·mul of halves: last dim {width} is not even");
        }
        let h = width / 2;
        let rows = l.shape().elem_count() / width;
        let v = view::<bf16>(gu, l)?;
        let up = v.slice(h..);
        let start = l.start_offset();
        let out = silu_mul_rows(
            gu.device(),
            (&v, start),
            (&up, start + h),
            rows,
            h,
            width,
            width,
            self.0,
            None,
        )?;
        Ok((out, silu_shape(dims, rows, h, self.0)))
    }
}

/// `silu(gate) · up` of two projections of one shape.
pub struct SiluMul(pub SiluOutput);
cuda_op!(2, SiluMul, "fused-silu-mul", cuda);
impl SiluMul {
    fn cuda(
        &self,
        g: &CudaStorage,
        gl: &Layout,
        u: &CudaStorage,
        ul: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let h = gl.dims().last().copied().unwrap_or(0);
        if gl.shape() != ul.shape() || h == 0 {
            candle_core::bail!("silu·mul: gate {:?}, up {:?}", gl.dims(), ul.dims());
        }
        let rows = gl.shape().elem_count() / h;
        let (gv, uv) = (view::<bf16>(g, gl)?, view::<bf16>(u, ul)?);
        let out = silu_mul_rows(
            g.device(),
            (&gv, gl.start_offset()),
            (&uv, ul.start_offset()),
            rows,
            h,
            h,
            h,
            self.0,
            None,
        )?;
        Ok((out, silu_shape(gl.dims().to_vec(), rows, h, self.0)))
    }
}

/// `silu(gate) · up` both as bf16 rows (the shape of `gate`, last dim `h`) and as the `Fp8Rows`
/// bytes of the same rows, from one kernel: for a GEMM that reads the codes with an adapter
/// beside it that reads the rows. `up` None: `gate` is `[gate | up]` stacked. Two fresh outputs,
/// which candle's single-output custom ops cannot return. The caller checked dtypes,
/// contiguity, alignment and width (`fused::silu_mul_fp8`'s conditions).
pub fn silu_mul_fp8_beside(gate: &Tensor, up: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
    let (gs, gl) = gate.storage_and_layout();
    let g = cuda_storage(&gs, "silu·mul gate")?;
    let up_storage = up.map(|u| u.storage_and_layout());
    let width = gl.dims().last().copied().unwrap_or(0);
    let gv = view::<bf16>(g, gl)?;
    let (h, uv, u_start, stride) = match &up_storage {
        Some((us, ul)) => {
            if ul.shape() != gl.shape() {
                candle_core::bail!("silu·mul: gate {:?}, up {:?}", gl.dims(), ul.dims());
            }
            let uv = view::<bf16>(cuda_storage(us, "silu·mul up")?, ul)?;
            (width, uv, ul.start_offset(), width)
        }
        None => (
            width / 2,
            gv.slice(width / 2..),
            gl.start_offset() + width / 2,
            width,
        ),
    };
    if h == 0 {
        candle_core::bail!("silu·mul: rows of {width}");
    }
    let rows = gl.shape().elem_count() / width;
    let dev = g.device().clone();
    // SAFETY: allocated on the kernel's stream; `silu_mul_fp8_rows` writes all `h` values of
    // each of the `rows` rows into it before the tensor is handed out.
    let mut rows_bf16 = unsafe { dev.alloc::<bf16>(rows * h)? };
    let codes = silu_mul_rows(
        &dev,
        (&gv, gl.start_offset()),
        (&uv, u_start),
        rows,
        h,
        stride,
        stride,
        SiluOutput::Fp8Rows,
        Some(&mut rows_bf16),
    )?;
    let codes_shape = silu_shape(gl.dims().to_vec(), rows, h, SiluOutput::Fp8Rows);
    let codes = Tensor::from_storage(
        candle_core::Storage::Cuda(codes),
        codes_shape,
        BackpropOp::none(),
        false,
    );
    let bf16_shape = silu_shape(gl.dims().to_vec(), rows, h, SiluOutput::Bf16);
    Ok((tensor_of(rows_bf16, &dev, &bf16_shape), codes))
}

/// Threads per row of the norm kernel, and the widest row it holds (`RMS_VECS` 16-byte
/// vectors of f32 per thread).
const NORM_THREADS: u32 = 256;
pub const NORM_MAX_DIM: usize = NORM_THREADS as usize * 4 * 4;

/// The storage of a CUDA tensor, or an error naming `what`.
fn cuda_storage<'a>(s: &'a candle_core::Storage, what: &str) -> Result<&'a CudaStorage> {
    match s {
        candle_core::Storage::Cuda(c) => Ok(c),
        _ => candle_core::bail!("{what}: not a CUDA tensor"),
    }
}

/// A fresh tensor over `slice` with `shape`.
fn tensor_of<T: CudaDType>(
    slice: candle_core::cuda_backend::cudarc::driver::CudaSlice<T>,
    dev: &candle_core::cuda_backend::CudaDevice,
    shape: &Shape,
) -> Tensor {
    let storage = candle_core::Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, dev.clone()));
    Tensor::from_storage(storage, shape.clone(), BackpropOp::none(), false)
}

/// The stream (`x + h`, or `x` itself without `h`) and its norm: bf16 rows of `x`'s shape, or
/// with `fp8` the `Fp8Rows` bytes of its rows (a flat u8 tensor; `dim` a multiple of 16). With
/// `h` both are fresh outputs of one kernel, which candle's single-output custom ops cannot
/// return. The caller checked dtypes, contiguity, `dim` (`norm_fused_for`) and `h`'s shape.
pub fn rms_norm(
    x: &Tensor,
    h: Option<&Tensor>,
    w: &Tensor,
    eps: f32,
    fp8: bool,
) -> Result<(Tensor, Tensor)> {
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let xs = cuda_storage(&xs, "rms norm input")?;
    let ws = cuda_storage(&ws, "rms norm weight")?;
    let hs = h.map(|h| h.storage_and_layout());
    let k = kernels(xs)?;
    let dev = xs.device().clone();
    let stream = dev.cuda_stream();
    let dim = wl.shape().elem_count();
    let n = xl.shape().elem_count();
    if dim == 0 || xl.dims().last() != Some(&dim) || !dim.is_multiple_of(4) || dim > NORM_MAX_DIM {
        candle_core::bail!("rms norm: weight of {dim} for input {:?}", xl.dims());
    }
    if fp8 && !dim.is_multiple_of(16) {
        candle_core::bail!("rms norm to fp8: rows of {dim} are not whole 16-byte vectors");
    }
    let (xv, wv) = (view::<f32>(xs, xl)?, view::<f32>(ws, wl)?);
    let rows_layout = super::super::fp8::Fp8Layout {
        out: n / dim,
        inp: dim,
    };
    // SAFETY: allocated on the kernel's stream; each of the kernel's `n / dim` blocks writes
    // the `dim` values of its row of `out` — bf16, or codes and the row's scale — (and of
    // `x_out` when there is one).
    let mut out = unsafe {
        match fp8 {
            false => NormOut::Bf16(dev.alloc::<bf16>(n)?),
            true => NormOut::Fp8(dev.alloc::<u8>(rows_layout.bytes())?),
        }
    };
    // The kernel's outputs: bf16 values, or codes and scales (the others null).
    let (bf16_out, codes, scales) = {
        use candle_core::cuda_backend::cudarc::driver::DevicePtrMut;
        match &mut out {
            NormOut::Bf16(o) => (o.device_ptr_mut(&stream).0, 0u64, 0u64),
            NormOut::Fp8(o) => {
                let base = o.device_ptr_mut(&stream).0;
                (0u64, base, base + rows_layout.scale_offset() as u64)
            }
        }
    };
    let cfg = LaunchConfig {
        grid_dim: ((n / dim) as u32, 1, 1),
        block_dim: (NORM_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let (dim32, null) = (dim as u32, 0u64);
    let x_out = match &hs {
        Some((hs, hl)) => {
            let hv = view::<bf16>(cuda_storage(hs, "rms norm residual")?, hl)?;
            if hl.shape() != xl.shape() {
                candle_core::bail!("rms norm: residual {:?} for {:?}", hl.dims(), xl.dims());
            }
            // SAFETY: as `out`.
            let mut x_out = unsafe { dev.alloc::<f32>(n)? };
            let mut l = stream.launch_builder(&k.elementwise.residual_rms_norm_f32_bf16);
            l.arg(&xv).arg(&hv).arg(&wv).arg(&mut x_out);
            l.arg(&bf16_out).arg(&codes).arg(&scales);
            l.arg(&dim32).arg(&eps);
            // SAFETY: `residual_rms_norm_f32_bf16(const float* x, const bf16* h, const
            // float* w, float* x_out, bf16* out, u8* codes, float* scales, u32 dim, float
            // eps)` gets those types. `x`, `h` and `x_out` hold `n` values, `w` `dim`; `out`
            // (bf16) `n` values, or (fp8) `n` codes and from `scale_offset` `n / dim` scales,
            // the unused pointers null. `dim` (checked: > 0, a multiple of 4 — of 16 for fp8 —,
            // at most NORM_MAX_DIM = 4 vectors of 4 per each of the 256 threads) divides `n`,
            // so block `r < n / dim` touches row `r` only. `x` starts at a multiple of 4
            // floats (`norm_fused_for`) and the outputs are fresh, so every 16-, 8- and 4-byte
            // access is aligned; 256 threads fit `partial[32]`.
            unsafe { l.launch(cfg) }.map_err(candle_core::Error::wrap)?;
            Some(x_out)
        }
        None => {
            let mut l = stream.launch_builder(&k.elementwise.residual_rms_norm_f32_bf16);
            l.arg(&xv).arg(&null).arg(&wv).arg(&null);
            l.arg(&bf16_out).arg(&codes).arg(&scales);
            l.arg(&dim32).arg(&eps);
            // SAFETY: as above, with `h` and `x_out` null pointers, which the kernel reads
            // as "no residual" and never dereferences.
            unsafe { l.launch(cfg) }.map_err(candle_core::Error::wrap)?;
            None
        }
    };
    let shape = xl.shape().clone();
    let stream_out = match x_out {
        Some(s) => tensor_of(s, &dev, &shape),
        None => x.clone(),
    };
    let out = match out {
        NormOut::Bf16(o) => tensor_of(o, &dev, &shape),
        NormOut::Fp8(o) => tensor_of(o, &dev, &Shape::from(rows_layout.bytes())),
    };
    Ok((stream_out, out))
}

/// What the norm kernel writes.
enum NormOut {
    Bf16(candle_core::cuda_backend::cudarc::driver::CudaSlice<bf16>),
    Fp8(candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>),
}

/// Rotates the q and k heads of `qkv` in place (the tiled attention's input).
pub struct RopeQk(pub TiledAttentionShape);
cuda_op!(inplace 2, RopeQk, "fused-rope-qk", cuda);
impl RopeQk {
    fn cuda(&self, x: &mut CudaStorage, xl: &Layout, cs: &CudaStorage, cl: &Layout) -> Result<()> {
        let k = kernels(x)?;
        let stream = x.device().cuda_stream();
        let s = self.0;
        let (n, row) = xl.shape().dims2()?;
        if row != (s.heads + 2 * s.kv_heads) * s.head_dim || cl.shape().dims2()? != (n, s.head_dim)
        {
            candle_core::bail!(
                "rope: qkv {:?} and table {:?} for {s:?}",
                xl.dims(),
                cl.dims()
            );
        }
        let cv = view::<f32>(cs, cl)?;
        let mut xv = view_mut::<bf16>(x, xl)?;
        let heads_qk = (s.heads + s.kv_heads) as u32;
        let pairs = n * heads_qk as usize * (s.head_dim / 2);
        let (p64, r32, hd32) = (pairs as u64, row as u32, s.head_dim as u32);
        let mut l = stream.launch_builder(&k.elementwise.rope_qk_bf16);
        l.arg(&mut xv)
            .arg(&cv)
            .arg(&p64)
            .arg(&heads_qk)
            .arg(&r32)
            .arg(&hd32);
        // SAFETY: `rope_qk_bf16(bf16* qkv, const float* cos_sin, u64 n_pairs, u32 heads_qk,
        // u32 row_len, u32 hd)` gets those types. Shapes are checked above: `xv` is the
        // `n × row` contiguous qkv with `row = (heads + 2·kv_heads)·hd`, and `cv` is
        // `n × hd`. Pair `i < n_pairs = n·heads_qk·hd/2` touches row `i / (hd/2) / heads_qk
        // < n`, head `< heads + kv_heads` and offsets `< hd` within it: all in bounds.
        unsafe { l.launch(elementwise_config(pairs)) }.map_err(candle_core::Error::wrap)?;
        Ok(())
    }
}

/// The tiled attention over rotated `qkv`, with or without a gather table, for tiles of
/// `query_tile` query slots (the table's).
pub struct FlashAttention {
    pub shape: TiledAttentionShape,
    pub query_tile: usize,
    /// q and k's RoPE tables [n, head_dim] f32 (cos then sin) for the kernel to rotate them
    /// itself; None: they were rotated in place (`RopeQk`).
    pub rope: Option<Tensor>,
}
cuda_op!(2, FlashAttention, "fused-flash-attention", cuda);
cuda_op!(
    3,
    FlashAttention,
    "fused-flash-attention-gathered",
    cuda_gathered
);
impl FlashAttention {
    fn cuda(
        &self,
        qkv: &CudaStorage,
        ql: &Layout,
        t: &CudaStorage,
        tl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(qkv, ql, t, tl, None)
    }

    fn cuda_gathered(
        &self,
        qkv: &CudaStorage,
        ql: &Layout,
        t: &CudaStorage,
        tl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(qkv, ql, t, tl, Some((g, gl)))
    }

    fn run(
        &self,
        qkv: &CudaStorage,
        ql: &Layout,
        t: &CudaStorage,
        tl: &Layout,
        gather: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        let k = kernels(qkv)?;
        let dev = qkv.device().clone();
        let stream = dev.cuda_stream();
        let s = self.shape;
        let (n, row) = ql.shape().dims2()?;
        if row != (s.heads + 2 * s.kv_heads) * s.head_dim {
            candle_core::bail!("attention: qkv rows of {row} for {s:?}");
        }
        // The kernel reads rows as 16-byte vectors.
        if !(ql.start_offset() * 2).is_multiple_of(16) {
            candle_core::bail!(
                "attention: qkv starts mid-vector (offset {})",
                ql.start_offset()
            );
        }
        let hid = s.heads * s.head_dim;
        // SAFETY: allocated on the stream the attention kernel runs on, which writes the
        // `hid` outputs of every row a tile covers; the model's tile tables cover every row
        // (whole sequences in the language model, every window or image in the vision
        // tower). Any bits are a valid bf16, so a row no tile covered would hold wrong
        // values, never invalid ones.
        let mut out = unsafe { dev.alloc::<bf16>(n * hid)? };
        let gv = match gather {
            Some((g, gl)) => Some(view::<u32>(g, gl)?),
            None => None,
        };
        let rope = self.rope.as_ref().map(|r| r.storage_and_layout());
        let rv = match &rope {
            Some((rs, rl)) => {
                if rl.shape().dims2()? != (n, s.head_dim) {
                    candle_core::bail!("attention: RoPE table {:?} for {n} rows", rl.dims());
                }
                Some(view::<f32>(cuda_storage(rs, "attention RoPE table")?, rl)?)
            }
            None => None,
        };
        k.flash_attention(
            &stream,
            &view::<bf16>(qkv, ql)?,
            &view::<u32>(t, tl)?,
            gv.as_ref(),
            rv.as_ref(),
            &mut out,
            FlashShape {
                n_rows: n,
                heads: s.heads,
                kv_heads: s.kv_heads,
                head_dim: s.head_dim,
                causal: s.causal,
                query_tile: self.query_tile,
            },
        )
        .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev),
            Shape::from((n, hid)),
        ))
    }
}
