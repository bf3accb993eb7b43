//! The raw cuBLASLt calls our GEMMs make, bf16 (`lt_gemm`) and FP8 (`lt_fp8`) alike. cudarc's
//! safe wrapper builds its descriptors and asks the library's heuristic for a kernel on every
//! call, and covers only same-type GEMMs. Here the descriptors are freed by their guards, and
//! the kernel choice is asked once per GEMM form and kept (`algo`): a query runs a few hundred
//! thin GEMMs that take the GPU microseconds each, so what the host spends choosing a kernel for
//! each is what the query waits for.

use super::lt_gemm::{LtHandle, RAW_WORKSPACE_BYTES};
use candle_core::cuda_backend::cudarc::cublaslt::{result, sys, MatmulShared};
use candle_core::cuda_backend::cudarc::driver::{CudaStream, DevicePtr};
use candle_core::Result;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, LazyLock, Mutex};

/// `r` as this crate's error, naming the step.
pub(super) fn check(what: &str, r: std::result::Result<(), result::CublasError>) -> Result<()> {
    r.map_err(|e| candle_core::Error::Msg(format!("cuBLASLt GEMM, {what}: {e:?}")))
}

/// A matmul descriptor, destroyed on drop.
pub(super) struct Desc(sys::cublasLtMatmulDesc_t);

impl Desc {
    /// f32 accumulation and f32 alpha/beta, as every GEMM of the model uses.
    pub(super) fn new() -> Result<Self> {
        Ok(Desc(
            result::create_matmul_desc(
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cudaDataType_t::CUDA_R_32F,
            )
            .map_err(|e| candle_core::Error::Msg(format!("cuBLASLt descriptor: {e:?}")))?,
        ))
    }

    /// Sets one attribute from a value of its documented type.
    ///
    /// # Safety
    /// `T` must be the attribute's type (`int32_t` for enums, `void*` for pointers).
    pub(super) unsafe fn set<T>(
        &self,
        attr: sys::cublasLtMatmulDescAttributes_t,
        value: &T,
    ) -> Result<()> {
        check(
            "setting an attribute",
            result::set_matmul_desc_attribute(
                self.0,
                attr,
                value as *const T as *const c_void,
                std::mem::size_of::<T>(),
            ),
        )
    }

    /// `op(A)` transposed and `op(B)` not: the "TN" form of every GEMM here, `Dᵀ (out × rows)
    /// = W (stored [out, inp] row-major, i.e. inp × out column-major) transposed · Xᵀ`.
    pub(super) fn transposed_a(self) -> Result<Self> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        // SAFETY: the transpose attributes are `int32_t` (`cublasOperation_t`).
        unsafe {
            self.set(A::CUBLASLT_MATMUL_DESC_TRANSA, &1i32)?;
            self.set(A::CUBLASLT_MATMUL_DESC_TRANSB, &0i32)?;
        }
        Ok(self)
    }

    /// The bias epilogue: `bias` (`out` values) added to every column of D before rounding.
    ///
    /// # Safety
    /// `bias` must be a live device pointer to `m` values of `ty` when the GEMM runs.
    pub(super) unsafe fn bias(&self, bias: u64, ty: Option<sys::cudaDataType_t>) -> Result<()> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        self.set(
            A::CUBLASLT_MATMUL_DESC_EPILOGUE,
            &(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS as i32),
        )?;
        self.set(
            A::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
            &(bias as *const c_void),
        )?;
        if let Some(ty) = ty {
            self.set(A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &(ty as i32))?;
        }
        Ok(())
    }
}

impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created by `create_matmul_desc`, destroyed once.
        let _ = unsafe { result::destroy_matmul_desc(self.0) };
    }
}

/// A column-major matrix layout, destroyed on drop.
pub(super) struct MatrixLayout(sys::cublasLtMatrixLayout_t);

impl MatrixLayout {
    pub(super) fn new(ty: sys::cudaDataType_t, rows: u64, cols: u64, ld: u64) -> Result<Self> {
        Ok(MatrixLayout(
            result::create_matrix_layout(ty, rows, cols, ld as i64)
                .map_err(|e| candle_core::Error::Msg(format!("cuBLASLt layout: {e:?}")))?,
        ))
    }
}

impl Drop for MatrixLayout {
    fn drop(&mut self) {
        // SAFETY: created by `create_matrix_layout`, destroyed once.
        let _ = unsafe { result::destroy_matrix_layout(self.0) };
    }
}

struct Pref(sys::cublasLtMatmulPreference_t);

impl Drop for Pref {
    fn drop(&mut self) {
        // SAFETY: created by `create_matmul_pref`, destroyed once.
        let _ = unsafe { result::destroy_matmul_pref(self.0) };
    }
}

/// What decides cuBLASLt's kernel for a GEMM on one handle: its form (types, epilogue, scale
/// modes: the caller's `form` tag), its shape, and how far its pointers are aligned (a kernel
/// chosen for 256-byte aligned operands may need them so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct GemmKey {
    pub form: &'static str,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    /// log2 of the alignment all pointers share, at most 8 (256 bytes).
    pub align: u32,
}

impl GemmKey {
    pub(super) fn new(form: &'static str, (m, n, k): (u64, u64, u64), pointers: &[u64]) -> Self {
        let align = pointers
            .iter()
            .map(|p| p.trailing_zeros().min(8))
            .min()
            .unwrap_or(8);
        GemmKey {
            form,
            m,
            n,
            k,
            align,
        }
    }
}

/// Kernel choices by cuBLASLt handle (its address) and GEMM.
type AlgoCache = HashMap<(usize, GemmKey), sys::cublasLtMatmulAlgo_t>;
static ALGOS: LazyLock<Mutex<AlgoCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// The kernel for `key` on `lt`: the heuristic's first choice for these descriptors, asked
/// the first time and kept for the process. `no_kernel` words the error when there is none.
pub(super) fn algo(
    lt: &LtHandle,
    key: GemmKey,
    desc: &Desc,
    (a, b, c): (&MatrixLayout, &MatrixLayout, &MatrixLayout),
    no_kernel: impl FnOnce(result::CublasError) -> candle_core::Error,
) -> Result<sys::cublasLtMatmulAlgo_t> {
    let handle = *lt.blas.handle();
    let cache_key = (handle as usize, key);
    if let Some(algo) = ALGOS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cache_key)
    {
        return Ok(*algo);
    }
    let pref = Pref(
        result::create_matmul_pref()
            .map_err(|e| candle_core::Error::Msg(format!("cuBLASLt preference: {e:?}")))?,
    );
    let size = RAW_WORKSPACE_BYTES as u64;
    // SAFETY: the attribute is a `uint64_t`, passed with its size.
    check("workspace size", unsafe {
        result::set_matmul_pref_attribute(
            pref.0,
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &size as *const u64 as *const c_void,
            std::mem::size_of::<u64>(),
        )
    })?;
    // SAFETY: every descriptor is live (their guards outlive this call).
    let heuristic =
        unsafe { result::get_matmul_algo_heuristic(handle, desc.0, a.0, b.0, c.0, c.0, pref.0) }
            .map_err(no_kernel)?;
    ALGOS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(cache_key, heuristic.algo);
    Ok(heuristic.algo)
}

/// The device pointers of one GEMM: `D = alpha·op(A)·op(B) + beta·C`, C and D the same matrix.
pub(super) struct GemmPointers {
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

/// Runs the GEMM with `algo` on `stream`, in the handle's workspace.
///
/// # Safety
/// The pointers must be live device allocations on `stream` holding what the layouts say (C
/// initialised when `beta` ≠ 0), and `algo` one that `algo` chose for these descriptors.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn launch(
    lt: &LtHandle,
    stream: &Arc<CudaStream>,
    desc: &Desc,
    algo: &sys::cublasLtMatmulAlgo_t,
    (a, b, c): (&MatrixLayout, &MatrixLayout, &MatrixLayout),
    p: GemmPointers,
    beta: f32,
) -> Result<()> {
    let alpha = 1.0f32;
    let workspace = lt.raw_workspace(stream)?;
    let (ws, _guard) = workspace.device_ptr(stream);
    check(
        "launch",
        result::matmul(
            *lt.blas.handle(),
            desc.0,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            p.a as *const c_void,
            a.0,
            p.b as *const c_void,
            b.0,
            p.c as *const c_void,
            c.0,
            p.c as *mut c_void,
            c.0,
            algo,
            ws as *mut c_void,
            RAW_WORKSPACE_BYTES,
            stream.cu_stream() as *mut _,
        ),
    )
}
