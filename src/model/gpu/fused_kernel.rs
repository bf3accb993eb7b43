//! Fused CUDA kernels for the model's memory-bound steps (bf16 activations).
//!
//! Measured with Nsight Compute on the H100 (random:3b, batch 4, bf16): candle's generic
//! broadcast add, dtype casts, copies and the f32 attention chain took ~78 % of the forward's
//! kernel time and the GEMMs ~22 %. Each kernel here replaces a chain of candle ops with one pass
//! over memory; the arithmetic is the same as the op chain it replaces (f32 inside, one rounding
//! to bf16 where the chain rounded), see `gpu::fused` for the wrappers and fallbacks.

use anyhow::Result;
use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaStream, LaunchConfig};
use pagesight_common::nvrtc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const COMMON: &str = r#"
__device__ __forceinline__ float bf2f(unsigned short v) {
    return __uint_as_float(((unsigned int)v) << 16);
}
// Round to nearest even, as every bf16 conversion in candle and torch.
__device__ __forceinline__ unsigned short f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
"#;

const ELEMENTWISE: &str = r#"
// y[r, c] += b[c] for a contiguous [rows, cols] y, in place (the GEMM's fresh output).
extern "C" __global__ void bias_add_bf16(unsigned short* __restrict__ y,
    const unsigned short* __restrict__ b, unsigned long long n, unsigned int cols) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        y[i] = f2bf(bf2f(y[i]) + bf2f(b[i % cols]));
}

// out = x + f32(h): the f32 residual stream plus a bf16 layer output.
extern "C" __global__ void residual_add_f32_bf16(const float* __restrict__ x,
    const unsigned short* __restrict__ h, float* __restrict__ out, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x)
        out[i] = x[i] + bf2f(h[i]);
}

// out = bf16(silu(g) * u), silu and product in f32.
extern "C" __global__ void silu_mul_bf16(const unsigned short* __restrict__ g,
    const unsigned short* __restrict__ u, unsigned short* __restrict__ out, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const float a = bf2f(g[i]);
        out[i] = f2bf(a / (1.0f + expf(-a)) * bf2f(u[i]));
    }
}

// One block per row: out = bf16(x * rsqrt(mean(x^2) + eps) * w), x f32, w f32.
extern "C" __global__ void rms_norm_f32_bf16(const float* __restrict__ x,
    const float* __restrict__ w, unsigned short* __restrict__ out, unsigned int dim, float eps) {
    __shared__ float partial[32];
    const float* row = x + (unsigned long long)blockIdx.x * dim;
    unsigned short* dst = out + (unsigned long long)blockIdx.x * dim;
    float s = 0.f;
    for (unsigned int i = threadIdx.x; i < dim; i += blockDim.x) s += row[i] * row[i];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) partial[0] = s;
    }
    __syncthreads();
    const float inv = rsqrtf(partial[0] / dim + eps);
    for (unsigned int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = f2bf(row[i] * inv * w[i]);
}
// In place on qkv rows [n, row_len]: rotates the first `heads_qk` heads (q heads, then k heads)
// by the rotate-half RoPE of each row's table (cos_sin [n, hd]: cos then sin, hd/2 each), in f32
// with one rounding to bf16, as the unfused path rotates.
extern "C" __global__ void rope_qk_bf16(unsigned short* __restrict__ qkv,
    const float* __restrict__ cos_sin, unsigned long long n_pairs, unsigned int heads_qk,
    unsigned int row_len, unsigned int hd) {
    const unsigned int half = hd / 2;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < n_pairs; i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int f = (unsigned int)(i % half);
        const unsigned long long rh = i / half;
        const unsigned long long row = rh / heads_qk;
        unsigned short* x = qkv + row * row_len + (unsigned int)(rh % heads_qk) * hd;
        const float* c = cos_sin + row * hd;
        const float x1 = bf2f(x[f]), x2 = bf2f(x[f + half]);
        x[f] = f2bf(x1 * c[f] - x2 * c[half + f]);
        x[f + half] = f2bf(x2 * c[f] + x1 * c[half + f]);
    }
}
"#;

pub struct ElementwiseKernels {
    pub bias_add_bf16: CudaFunction,
    pub residual_add_f32_bf16: CudaFunction,
    pub silu_mul_bf16: CudaFunction,
    pub rms_norm_f32_bf16: CudaFunction,
    pub rope_qk_bf16: CudaFunction,
}

/// Kernels compiled once per CUDA context (the attention kernel once per head dimension).
pub struct FusedKernels {
    pub elementwise: ElementwiseKernels,
    pub(super) flash_attention: Mutex<HashMap<usize, Arc<CudaFunction>>>,
    stream: Arc<CudaStream>,
}

static KERNELS: Mutex<Vec<(usize, Arc<FusedKernels>)>> = Mutex::new(Vec::new());

/// Launch shape for a grid-stride elementwise kernel over `n` elements.
pub fn elementwise_config(n: usize) -> LaunchConfig {
    let block = 256u32;
    LaunchConfig {
        grid_dim: ((n.div_ceil(block as usize)).clamp(1, 132 * 32) as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl FusedKernels {
    /// The kernels for `stream`'s context, compiled on first use.
    pub fn for_stream(stream: &Arc<CudaStream>) -> Result<Arc<FusedKernels>> {
        // By the driver's context: candle makes a new `CudaContext` value for each device it
        // creates, all on the same primary context.
        let key = stream.context().cu_ctx() as usize;
        let mut all = KERNELS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = all.iter().find(|(k, _)| *k == key) {
            return Ok(k.clone());
        }
        let src = format!("{COMMON}{ELEMENTWISE}");
        let m = nvrtc::load_module(stream.context(), "pagesight_fused", &src)?;
        let k = Arc::new(FusedKernels {
            elementwise: ElementwiseKernels {
                bias_add_bf16: nvrtc::function(&m, "bias_add_bf16")?,
                residual_add_f32_bf16: nvrtc::function(&m, "residual_add_f32_bf16")?,
                silu_mul_bf16: nvrtc::function(&m, "silu_mul_bf16")?,
                rms_norm_f32_bf16: nvrtc::function(&m, "rms_norm_f32_bf16")?,
                rope_qk_bf16: nvrtc::function(&m, "rope_qk_bf16")?,
            },
            flash_attention: Mutex::new(HashMap::new()),
            stream: stream.clone(),
        });
        all.push((key, k.clone()));
        Ok(k)
    }

    /// `kernel` (in `source`) compiled for one head dimension, cached in `cache`.
    pub(super) fn per_head_dim(
        &self,
        cache: &Mutex<HashMap<usize, Arc<CudaFunction>>>,
        source: &str,
        kernel: &str,
        head_dim: usize,
    ) -> Result<Arc<CudaFunction>> {
        let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = map.get(&head_dim) {
            return Ok(f.clone());
        }
        let src = format!("#define HD {head_dim}\n{COMMON}{source}");
        let m = nvrtc::load_module(
            self.stream.context(),
            &format!("pagesight_{kernel}_{head_dim}"),
            &src,
        )?;
        let f = Arc::new(nvrtc::function(&m, kernel)?);
        map.insert(head_dim, f.clone());
        Ok(f)
    }
}
