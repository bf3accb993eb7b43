//! The FP8 GEMM on cuBLASLt: `D = scale_w ⊗ scale_x · (W · Xᵀ) (+ bias) + beta · C`, E4M3
//! inputs with one f32 scale per output channel and one per token (the library's outer-vector
//! scaling), f32 accumulation, bf16 output, the bias added in the epilogue before the one
//! rounding — or, where the library has no such kernel for the card, the raw f32 sums for a
//! kernel of ours to scale (`Fp8Output::Raw`). cudarc's safe wrapper covers only same-type
//! GEMMs, so this one goes through its raw calls; the descriptors are freed on every path by
//! their guards.

use super::lt_gemm::{handle, RAW_WORKSPACE_BYTES};
use candle_core::cuda_backend::cudarc::cublaslt::{result, sys};
use candle_core::cuda_backend::cudarc::driver::{CudaStream, DevicePtr};
use candle_core::Result;
use std::ffi::c_void;
use std::sync::Arc;

/// One FP8 product's device pointers and shape. The weight is `[out_features, inp]` codes with
/// `out_features` scales, the input `[rows, inp]` codes with `rows` scales, the output
/// `[rows, out_features]` (row-major, as the layers store them).
pub struct Fp8Gemm {
    /// (codes, scales).
    pub weight: (u64, u64),
    /// (codes, scales).
    pub input: (u64, u64),
    pub output: Fp8Output,
    pub out_features: usize,
    pub rows: usize,
    pub inp: usize,
}

/// What the GEMM writes.
pub enum Fp8Output {
    /// bf16, scaled in the epilogue, plus the bias (`out_features` bf16 values) when given;
    /// `beta` 1 adds the product onto the output's values, 0 only writes.
    Scaled {
        out: u64,
        bias: Option<u64>,
        beta: f32,
    },
    /// The raw f32 sums, unscaled (the scales are read by whoever finishes them).
    Raw { out: u64 },
}

/// The error `matmul` gives when cuBLASLt has no kernel for the scaled form on this card.
pub const NO_SCALED_KERNEL: &str = "cuBLASLt has no FP8 GEMM with per-channel and per-token scales";

fn check(what: &str, r: std::result::Result<(), result::CublasError>) -> Result<()> {
    r.map_err(|e| candle_core::Error::Msg(format!("cuBLASLt FP8 GEMM, {what}: {e:?}")))
}

struct Desc(sys::cublasLtMatmulDesc_t);
impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created by `create_matmul_desc`, destroyed once.
        let _ = unsafe { result::destroy_matmul_desc(self.0) };
    }
}
struct MatrixLayout(sys::cublasLtMatrixLayout_t);
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

/// Sets one descriptor attribute from a value of its documented type.
///
/// # Safety
/// `T` must be the attribute's type (`int32_t` for enums, `void*` for pointers).
unsafe fn set<T>(desc: &Desc, attr: sys::cublasLtMatmulDescAttributes_t, value: &T) -> Result<()> {
    check(
        "setting an attribute",
        result::set_matmul_desc_attribute(
            desc.0,
            attr,
            value as *const T as *const c_void,
            std::mem::size_of::<T>(),
        ),
    )
}

/// Runs `g` on `stream`.
///
/// # Safety
/// Every pointer in `g` must be a live device allocation on `stream` holding what `Fp8Gemm`
/// says, with `inp` a multiple of 16 and the code and scale pointers 16-byte aligned; `out`
/// must hold initialised values when `beta` ≠ 0.
pub unsafe fn matmul(stream: &Arc<CudaStream>, g: &Fp8Gemm) -> Result<()> {
    use sys::cublasLtMatmulDescAttributes_t as A;
    use sys::cudaDataType_t as T;
    let lt = handle(stream)?;
    let (m, n, k) = (g.out_features as u64, g.rows as u64, g.inp as u64);
    let desc = Desc(
        result::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, T::CUDA_R_32F)
            .map_err(|e| candle_core::Error::Msg(format!("cuBLASLt FP8 descriptor: {e:?}")))?,
    );
    // Column-major, as `lt_gemm`: Dᵀ (out × rows) = W (stored inp × out, transposed) · Xᵀ
    // (inp × rows) — the "TN" form FP8 GEMMs require.
    set(&desc, A::CUBLASLT_MATMUL_DESC_TRANSA, &1i32)?;
    set(&desc, A::CUBLASLT_MATMUL_DESC_TRANSB, &0i32)?;
    let (out, out_type, beta) = match g.output {
        Fp8Output::Scaled { out, bias, beta } => {
            let outer =
                sys::cublasLtMatmulMatrixScale_t::CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F as i32;
            set(&desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer)?;
            set(&desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer)?;
            set(
                &desc,
                A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                &(g.weight.1 as *const c_void),
            )?;
            set(
                &desc,
                A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                &(g.input.1 as *const c_void),
            )?;
            if let Some(bias) = bias {
                set(
                    &desc,
                    A::CUBLASLT_MATMUL_DESC_EPILOGUE,
                    &(sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS as i32),
                )?;
                set(
                    &desc,
                    A::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    &(bias as *const c_void),
                )?;
                set(
                    &desc,
                    A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                    &(T::CUDA_R_16BF as i32),
                )?;
            }
            (out, T::CUDA_R_16BF, beta)
        }
        Fp8Output::Raw { out } => (out, T::CUDA_R_32F, 0.0),
    };
    let layout = |ty: T, rows: u64, cols: u64, ld: u64| -> Result<MatrixLayout> {
        Ok(MatrixLayout(
            result::create_matrix_layout(ty, rows, cols, ld as i64)
                .map_err(|e| candle_core::Error::Msg(format!("cuBLASLt FP8 layout: {e:?}")))?,
        ))
    };
    let a = layout(T::CUDA_R_8F_E4M3, k, m, k)?;
    let b = layout(T::CUDA_R_8F_E4M3, k, n, k)?;
    let c = layout(out_type, m, n, m)?;
    let pref = Pref(
        result::create_matmul_pref()
            .map_err(|e| candle_core::Error::Msg(format!("cuBLASLt FP8 preference: {e:?}")))?,
    );
    let workspace = lt.raw_workspace(stream)?;
    let size = RAW_WORKSPACE_BYTES as u64;
    check(
        "workspace size",
        result::set_matmul_pref_attribute(
            pref.0,
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &size as *const u64 as *const c_void,
            std::mem::size_of::<u64>(),
        ),
    )?;
    let heuristic = result::get_matmul_algo_heuristic(
        *candle_core::cuda_backend::cudarc::cublaslt::MatmulShared::handle(&lt.blas),
        desc.0,
        a.0,
        b.0,
        c.0,
        c.0,
        pref.0,
    )
    .map_err(|e| {
        let what = match g.output {
            Fp8Output::Scaled { .. } => NO_SCALED_KERNEL,
            Fp8Output::Raw { .. } => "cuBLASLt has no FP8 GEMM on this card (use --compute dtype)",
        };
        candle_core::Error::Msg(format!(
            "{what} for {}×{}→{} ({e:?})",
            g.rows, g.inp, g.out_features
        ))
    })?;
    let alpha = 1.0f32;
    let (ws, _guard) = workspace.device_ptr(stream);
    check(
        "launch",
        result::matmul(
            *candle_core::cuda_backend::cudarc::cublaslt::MatmulShared::handle(&lt.blas),
            desc.0,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            g.weight.0 as *const c_void,
            a.0,
            g.input.0 as *const c_void,
            b.0,
            out as *const c_void,
            c.0,
            out as *mut c_void,
            c.0,
            &heuristic.algo,
            ws as *mut c_void,
            RAW_WORKSPACE_BYTES,
            stream.cu_stream() as *mut _,
        ),
    )
}
