//! The FP8 GEMM on cuBLASLt: `D = scale_w ⊗ scale_x · (W · Xᵀ) (+ bias) + beta · C`, E4M3
//! inputs with one f32 scale per output channel and one per token (the library's outer-vector
//! scaling), f32 accumulation, bf16 output, the bias added in the epilogue before the one
//! rounding — or, where the library has no such kernel for the card, the raw f32 sums for a
//! kernel of ours to scale (`Fp8Output::Raw`). cudarc's safe wrapper covers only same-type
//! GEMMs, so this one goes through the raw calls of `lt_raw`.

use super::lt_gemm::handle;
use super::lt_raw::{algo, launch, Desc, GemmKey, GemmPointers, MatrixLayout};
use candle_core::cuda_backend::cudarc::cublaslt::sys;
use candle_core::cuda_backend::cudarc::driver::CudaStream;
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
    let desc = Desc::new()?.transposed_a()?;
    let (out, out_type, beta, form) = match g.output {
        Fp8Output::Scaled { out, bias, beta } => {
            let outer =
                sys::cublasLtMatmulMatrixScale_t::CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F as i32;
            desc.set(A::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer)?;
            desc.set(A::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer)?;
            desc.set(
                A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                &(g.weight.1 as *const c_void),
            )?;
            desc.set(
                A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                &(g.input.1 as *const c_void),
            )?;
            let form = match bias {
                Some(bias) => {
                    desc.bias(bias, Some(T::CUDA_R_16BF))?;
                    "fp8-scaled-bias"
                }
                None => "fp8-scaled",
            };
            (out, T::CUDA_R_16BF, beta, form)
        }
        Fp8Output::Raw { out } => (out, T::CUDA_R_32F, 0.0, "fp8-raw"),
    };
    let a = MatrixLayout::new(T::CUDA_R_8F_E4M3, k, m, k)?;
    let b = MatrixLayout::new(T::CUDA_R_8F_E4M3, k, n, k)?;
    let c = MatrixLayout::new(out_type, m, n, m)?;
    let mut pointers = vec![g.weight.0, g.weight.1, g.input.0, g.input.1, out];
    if let Fp8Output::Scaled { bias: Some(b), .. } = g.output {
        pointers.push(b);
    }
    let key = GemmKey::new(form, (m, n, k), &pointers);
    let chosen = algo(&lt, key, &desc, (&a, &b, &c), |e| {
        let what = match g.output {
            Fp8Output::Scaled { .. } => NO_SCALED_KERNEL,
            Fp8Output::Raw { .. } => "cuBLASLt has no FP8 GEMM on this card (use --compute dtype)",
        };
        candle_core::Error::Msg(format!(
            "{what} for {}×{}→{} ({e:?})",
            g.rows, g.inp, g.out_features
        ))
    })?;
    let p = GemmPointers {
        a: g.weight.0,
        b: g.input.0,
        c: out,
    };
    launch(&lt, stream, &desc, &chosen, (&a, &b, &c), p, beta)
}
