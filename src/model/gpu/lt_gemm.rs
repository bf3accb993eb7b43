//! Linear layers on cuBLASLt: `y = x·wᵀ + b` for bf16 in one call, the bias added in the GEMM's
//! epilogue (in f32, before the one rounding to bf16 — as PyTorch's `nn.Linear` does on the GPU)
//! instead of a second pass over the output, with the 32 MiB workspace NVIDIA recommends for
//! Hopper and the library's heuristic choosing the kernel per shape.

use super::custom_op::{view, view_mut, WithBias};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublaslt::{CudaBlasLT, Matmul, MatmulConfig};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, CudaView, DevicePtrMut};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{Layout, Result, Shape};
use half::bf16;
use std::sync::{Arc, Mutex, OnceLock};

/// cuBLASLt handles (each with its 32 MiB workspace) by context, stream and thread: candle's
/// devices share the per-thread default stream, so a handle serves every device made on one
/// thread, and a workspace is never used by two threads at once. The oldest is dropped beyond
/// `MAX_HANDLES` (a process that makes threads freely stays bounded).
type HandleKey = (usize, usize, std::thread::ThreadId);
static HANDLES: Mutex<Vec<(HandleKey, Arc<LtHandle>)>> = Mutex::new(Vec::new());
const MAX_HANDLES: usize = 8;

/// A cuBLASLt handle, and a workspace of its own for the GEMMs cudarc's wrapper does not run
/// (FP8, `lt_fp8`), allocated on first use: the wrapper's workspace is private to it.
pub(super) struct LtHandle {
    pub(super) blas: CudaBlasLT,
    raw_workspace: OnceLock<CudaSlice<u8>>,
}

impl LtHandle {
    /// The raw GEMMs' workspace: 32 MiB, NVIDIA's recommendation for Hopper.
    pub(super) fn raw_workspace(&self, stream: &Arc<CudaStream>) -> Result<&CudaSlice<u8>> {
        if let Some(w) = self.raw_workspace.get() {
            return Ok(w);
        }
        // SAFETY: a workspace is scratch for cuBLASLt, never read before it writes.
        let w = unsafe { stream.alloc::<u8>(RAW_WORKSPACE_BYTES) }.map_err(|e| {
            candle_core::Error::Msg(format!("allocating a cuBLASLt workspace: {e:?}"))
        })?;
        Ok(self.raw_workspace.get_or_init(|| w))
    }
}

pub(super) const RAW_WORKSPACE_BYTES: usize = 32 << 20;

pub(super) fn handle(stream: &Arc<CudaStream>) -> Result<Arc<LtHandle>> {
    let key = (
        stream.context().cu_ctx() as usize,
        stream.cu_stream() as usize,
        std::thread::current().id(),
    );
    let mut all = HANDLES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, h)) = all.iter().find(|(k, _)| *k == key) {
        return Ok(h.clone());
    }
    let blas = CudaBlasLT::new(stream.clone())
        .map_err(|e| candle_core::Error::Msg(format!("creating a cuBLASLt handle: {e:?}")))?;
    let h = Arc::new(LtHandle {
        blas,
        raw_workspace: OnceLock::new(),
    });
    if all.len() >= MAX_HANDLES {
        all.remove(0);
    }
    all.push((key, h.clone()));
    Ok(h)
}

/// `x` [rows, in] · `w` [out, in]ᵀ (+ `bias` [out]) → [rows, out], all bf16 and contiguous.
pub struct LtLinear;

/// `c += x · wᵀ` in place, `c` [rows, out] bf16 (the GEMM's beta = 1: `c` is read once and the
/// sum rounded once), for an output that already holds another term — a LoRA adapter's
/// `(scale·B)·(A·x) + bias`, so the base product lands on it without a separate add pass.
pub struct LtAccumulate;

/// The GEMM `c = x·wᵀ (+ bias) + beta·c` on the stream of `dev`, with the shapes checked.
#[allow(clippy::too_many_arguments)]
fn gemm_into<C: DevicePtrMut<bf16>>(
    dev: &CudaDevice,
    xv: &CudaView<'_, bf16>,
    wv: &CudaView<'_, bf16>,
    bias: Option<&CudaView<'_, bf16>>,
    c: &mut C,
    (rows, inp, out): (usize, usize, usize),
    beta: f32,
) -> Result<()> {
    let stream = dev.cuda_stream();
    if xv.len() != rows * inp || wv.len() != out * inp || c.len() != rows * out {
        candle_core::bail!("linear: buffers do not fit {rows}×{inp} · ({out}×{inp})ᵀ");
    }
    // Column-major view: yᵀ (out × rows) = w (stored in × out, transposed) · xᵀ (in × rows);
    // the bias runs along yᵀ's rows.
    let cfg = MatmulConfig {
        transa: true,
        transb: false,
        transc: false,
        m: out as u64,
        n: rows as u64,
        k: inp as u64,
        alpha: 1.0,
        lda: inp as i64,
        ldb: inp as i64,
        beta,
        ldc: out as i64,
        stride_a: None,
        stride_b: None,
        stride_c: None,
        stride_bias: None,
        batch_size: None,
    };
    // SAFETY: the dimensions describe the buffers exactly (checked above): `wv` is `out × inp`
    // (read as the column-major `inp × out` A, transposed, lda = inp), `xv` is `rows × inp`
    // (column-major `inp × rows` B, ldb = inp), `c` is `rows × out` (column-major `out × rows`
    // C, ldc = out), all bf16 and contiguous, and the bias has `out` values (checked by the
    // callers). `c` is read only when beta ≠ 0, and then holds initialised values (its
    // callers' tensor). The handle's workspace belongs to this thread and stream (`handle`).
    unsafe { handle(&stream)?.blas.matmul(cfg, wv, xv, c, bias, None) }.map_err(|e| {
        candle_core::Error::Msg(format!("cuBLASLt linear {rows}×{inp}→{out}: {e:?}"))
    })?;
    Ok(())
}

impl WithBias for LtLinear {
    fn run(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = x.device().clone();
        let (rows, inp) = xl.shape().dims2()?;
        let (out, w_in) = wl.shape().dims2()?;
        if inp != w_in {
            candle_core::bail!("linear: input {:?} for weight {:?}", xl.dims(), wl.dims());
        }
        let (xv, wv) = (view::<bf16>(x, xl)?, view::<bf16>(w, wl)?);
        let bv = match bias {
            Some((b, bl)) => {
                if bl.shape().elem_count() != out {
                    candle_core::bail!("linear: bias {:?} for {out} outputs", bl.dims());
                }
                Some(view::<bf16>(b, bl)?)
            }
            None => None,
        };
        // SAFETY: allocated on the device's stream, and the GEMM (beta 0, so `y` is never
        // read) writes all `rows × out` values before the tensor is handed out.
        let mut y = unsafe { dev.alloc::<bf16>(rows * out)? };
        gemm_into(&dev, &xv, &wv, bv.as_ref(), &mut y, (rows, inp, out), 0.0)?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((rows, out)),
        ))
    }
}

impl LtAccumulate {
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
        let (rows, inp) = xl.shape().dims2()?;
        let (out, w_in) = wl.shape().dims2()?;
        if inp != w_in || cl.shape().dims2()? != (rows, out) {
            candle_core::bail!(
                "linear accumulate: input {:?}, weight {:?}, output {:?}",
                xl.dims(),
                wl.dims(),
                cl.dims()
            );
        }
        let (xv, wv) = (view::<bf16>(x, xl)?, view::<bf16>(w, wl)?);
        let mut cv = view_mut::<bf16>(c, cl)?;
        gemm_into(&dev, &xv, &wv, None, &mut cv, (rows, inp, out), 1.0)
    }
}

super::custom_op::cuda_op!(inplace 3, LtAccumulate, "cublaslt-linear-accumulate", cuda);

super::custom_op::cuda_op!(linear, LtLinear, "cublaslt-linear", "cublaslt-linear-bias");
