//! Fused CUDA kernels for the model's memory-bound steps (bf16 activations).
//!
//! Measured with Nsight Compute on the H100 (random:3b, batch 4, bf16): candle's generic
//! broadcast add, dtype casts, copies and the f32 attention chain took ~78 % of the forward's
//! kernel time and the GEMMs ~22 %. Each kernel here replaces a chain of candle ops with one pass
//! over memory; the arithmetic is the same as the op chain it replaces (f32 inside, one rounding
//! to bf16 where the chain rounded), see `engine::gpu::fused` for the wrappers and fallbacks.

use super::nvrtc;
use anyhow::{bail, Result};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg,
};
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

// Sum (or max) of v over the block; every thread gets the result. `red` holds 32 floats.
__device__ float block_reduce(float v, bool take_max, float* red) {
    for (int o = 16; o > 0; o >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, v, o);
        v = take_max ? fmaxf(v, other) : v + other;
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = (int)threadIdx.x < warps ? red[threadIdx.x] : (take_max ? -3.402823466e38f : 0.f);
    if (threadIdx.x < 32) {
        for (int o = 16; o > 0; o >>= 1) {
            const float other = __shfl_xor_sync(0xffffffffu, v, o);
            v = take_max ? fmaxf(v, other) : v + other;
        }
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    return red[0];
}

// One block per row: out = bf16(softmax(scale * x)), x f32 attention scores.
extern "C" __global__ void softmax_rows_f32_bf16(const float* __restrict__ x,
    unsigned short* __restrict__ out, unsigned int cols, float scale) {
    __shared__ float red[32];
    const float* row = x + (unsigned long long)blockIdx.x * cols;
    unsigned short* dst = out + (unsigned long long)blockIdx.x * cols;
    float m = -3.402823466e38f;
    for (unsigned int i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, row[i]);
    m = block_reduce(m, true, red);
    float s = 0.f;
    for (unsigned int i = threadIdx.x; i < cols; i += blockDim.x) s += expf((row[i] - m) * scale);
    s = block_reduce(s, false, red);
    const float inv = 1.f / s;
    for (unsigned int i = threadIdx.x; i < cols; i += blockDim.x)
        dst[i] = f2bf(expf((row[i] - m) * scale) * inv);
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
"#;

/// Window attention, one block per (window, head), four threads per query slot (each a quarter
/// of the head dimensions, partial dot products combined by lane shuffles). q and k are
/// rotated (2D RoPE, f32) and rounded to bf16 as the unfused path does, keys and values of the
/// window sit in shared memory, softmax runs online in f32 over chunks of 8 keys. Padding slots come last in each
/// window (`gather` = n_patches) and are neither queries nor keys.
const WINDOW_ATTENTION: &str = r#"
#define TPQ 4
#define SUB (HD / TPQ)
#define CH 8
extern "C" __global__ void window_attention_bf16(
    const unsigned short* __restrict__ qkv,   // [n_patches, 3, heads, HD]
    const float* __restrict__ cos_sin,        // [n_patches, HD]: cos then sin, HD/2 each
    const unsigned int* __restrict__ gather,  // [n_windows * window_len]
    unsigned short* __restrict__ out,         // [n_patches, heads, HD]
    unsigned int n_patches, unsigned int heads, float scale)
{
    extern __shared__ __align__(16) float shared[];
    // TPQ threads per slot, each holding SUB of the head dimensions.
    const unsigned int wl = blockDim.x / TPQ, h = blockIdx.y;
    const unsigned int slot = threadIdx.x / TPQ, part = threadIdx.x % TPQ;
    const unsigned int lane = threadIdx.x & 31;
    const unsigned int group = 0xfu << (lane & ~3u);   // the TPQ lanes of this slot
    float* ks = shared;
    float* vs = shared + wl * HD;
    const unsigned int hid = heads * HD, half = HD / 2;
    const unsigned int p = gather[blockIdx.x * wl + slot];
    const bool valid = p < n_patches;
    float q[SUB];
    if (valid) {
        const unsigned short* row = qkv + (unsigned long long)p * 3 * hid + h * HD;
        const float* c = cos_sin + (unsigned long long)p * HD;
        const float* s = c + half;
        #pragma unroll
        for (int i = 0; i < SUB; i++) {
            const int d = part * SUB + i;
            const int o = d < (int)half ? d + half : d - half;
            const float sign = d < (int)half ? -1.f : 1.f;
            const int f = d < (int)half ? d : d - half;
            q[i] = bf2f(f2bf(bf2f(row[d]) * c[f] + sign * bf2f(row[o]) * s[f]));
            ks[slot * HD + d] = bf2f(f2bf(bf2f(row[hid + d]) * c[f] + sign * bf2f(row[hid + o]) * s[f]));
            vs[slot * HD + d] = bf2f(row[2 * hid + d]);
        }
    }
    const int n_keys = __syncthreads_count(valid) / TPQ;
    if (!valid) return;
    float m = -3.402823466e38f, l = 0.f, acc[SUB];
    #pragma unroll
    for (int i = 0; i < SUB; i++) acc[i] = 0.f;
    for (int j0 = 0; j0 < n_keys; j0 += CH) {
        float sc[CH];
        float cmax = -3.402823466e38f;
        #pragma unroll
        for (int u = 0; u < CH; u++) {
            const int j = min(j0 + u, n_keys - 1);
            const float4* k = (const float4*)(ks + j * HD + part * SUB);
            float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
            #pragma unroll
            for (int i = 0; i < SUB / 4; i++) {
                const float4 kk = k[i];
                p0 += q[4 * i] * kk.x; p1 += q[4 * i + 1] * kk.y;
                p2 += q[4 * i + 2] * kk.z; p3 += q[4 * i + 3] * kk.w;
            }
            float pp = (p0 + p1) + (p2 + p3);
            pp += __shfl_xor_sync(group, pp, 1);
            pp += __shfl_xor_sync(group, pp, 2);
            sc[u] = j0 + u < n_keys ? pp * scale : -3.402823466e38f;
            cmax = fmaxf(cmax, sc[u]);
        }
        const float m_new = fmaxf(m, cmax);
        const float corr = expf(m - m_new);
        l *= corr;
        #pragma unroll
        for (int i = 0; i < SUB; i++) acc[i] *= corr;
        #pragma unroll
        for (int u = 0; u < CH; u++) {
            if (j0 + u >= n_keys) break;
            const float w = expf(sc[u] - m_new);
            l += w;
            const float4* v = (const float4*)(vs + (j0 + u) * HD + part * SUB);
            #pragma unroll
            for (int i = 0; i < SUB / 4; i++) {
                const float4 vv = v[i];
                acc[4 * i] += w * vv.x; acc[4 * i + 1] += w * vv.y;
                acc[4 * i + 2] += w * vv.z; acc[4 * i + 3] += w * vv.w;
            }
        }
        m = m_new;
    }
    unsigned short* dst = out + (unsigned long long)p * hid + h * HD + part * SUB;
    const float inv = 1.f / l;
    #pragma unroll
    for (int i = 0; i < SUB; i++) dst[i] = f2bf(acc[i] * inv);
}
"#;

/// Causal self-attention of the language model over a left-padded batch, flash style: one block
/// per (64-query tile, head, sequence), two threads per query (each holding half of the head
/// dimensions; four threads per query measured 2.5× slower on the H200: the per-key softmax work
/// is repeated by every thread of a query), key/value tiles of 32 in shared memory (f32, read 4 at a time), online softmax
/// in f32 over chunks
/// of 16 keys. q and k are rotated (M-RoPE tables) and rounded to bf16 as the unfused path does;
/// grouped-query heads read their shared k/v head. Query rows before `key_start` (padding) are
/// written as zeros; real rows see keys in [key_start, own position].
const CAUSAL_ATTENTION: &str = r#"
#define QT 64
#define KT 32
#define CH 16
#define HALF (HD / 2)
extern "C" __global__ void causal_attention_bf16(
    const unsigned short* __restrict__ qkv,        // [B, S, (H + 2 KVH) * HD]: q heads, k heads, v heads
    const float* __restrict__ cos_sin,             // [B, S, HD]: cos then sin, HD/2 each
    const unsigned int* __restrict__ key_start,    // [B]
    unsigned short* __restrict__ out,              // [B, S, H * HD]
    unsigned int S, unsigned int H, unsigned int KVH, float scale)
{
    __shared__ __align__(16) float ks[KT * HD];
    __shared__ __align__(16) float vs[KT * HD];
    const unsigned int b = blockIdx.z, h = blockIdx.y;
    const unsigned int kvh = h / (H / KVH);
    const unsigned int row_len = (H + 2 * KVH) * HD;
    const unsigned int q0 = blockIdx.x * QT;
    const unsigned int qi = q0 + threadIdx.x / 2;
    const unsigned int part = threadIdx.x & 1;      // dims [part*HALF, part*HALF + HALF)
    const unsigned int start = key_start[b];
    const bool active = qi < S && qi >= start;
    const unsigned short* seq = qkv + (unsigned long long)b * S * row_len;
    const float* tables = cos_sin + (unsigned long long)b * S * HD;
    // Every thread runs the key loop (the pair shuffle needs all 32 lanes); inactive ones (padding
    // rows, rows past the end) compute on zeros and write zeros.
    float q[HALF], acc[HALF];
    #pragma unroll
    for (int i = 0; i < HALF; i++) { q[i] = 0.f; acc[i] = 0.f; }
    if (active) {
        const unsigned short* row = seq + (unsigned long long)qi * row_len + h * HD;
        const float* c = tables + (unsigned long long)qi * HD;
        #pragma unroll
        for (int f = 0; f < HALF; f++) {   // dims f and f + HALF share frequency f
            const float x1 = bf2f(row[f]), x2 = bf2f(row[f + HALF]);
            const float r = part == 0 ? x1 * c[f] - x2 * c[HALF + f] : x2 * c[f] + x1 * c[HALF + f];
            q[f] = bf2f(f2bf(r));
        }
    }
    float m = -3.402823466e38f, l = 0.f;
    const unsigned int last = min(S, q0 + QT) - 1;   // the block's last query sees keys up to it
    for (unsigned int t0 = (start / KT) * KT; t0 <= last; t0 += KT) {
        __syncthreads();
        for (unsigned int e = threadIdx.x; e < KT * HD; e += blockDim.x) {
            const unsigned int j = t0 + e / HD, d = e % HD;
            float kv = 0.f, vv = 0.f;
            if (j < S) {
                const unsigned short* row = seq + (unsigned long long)j * row_len;
                const unsigned short* kr = row + (H + kvh) * HD;
                const float* c = tables + (unsigned long long)j * HD;
                const unsigned int f = d < HALF ? d : d - HALF;
                const float x1 = bf2f(kr[f]), x2 = bf2f(kr[f + HALF]);
                kv = bf2f(f2bf(d < HALF ? x1 * c[f] - x2 * c[HALF + f] : x2 * c[f] + x1 * c[HALF + f]));
                vv = bf2f(row[(H + KVH + kvh) * HD + d]);
            }
            ks[e] = kv;
            vs[e] = vv;
        }
        __syncthreads();
        for (unsigned int c0 = 0; c0 < KT; c0 += CH) {
            float sc[CH];
            float cmax = -3.402823466e38f;
            #pragma unroll
            for (int u = 0; u < CH; u++) {
                const unsigned int j = t0 + c0 + u;
                const float4* k4 = (const float4*)(ks + (c0 + u) * HD + part * HALF);
                float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
                #pragma unroll
                for (int i = 0; i < HALF / 4; i++) {
                    const float4 kk = k4[i];
                    p0 += q[4 * i] * kk.x; p1 += q[4 * i + 1] * kk.y;
                    p2 += q[4 * i + 2] * kk.z; p3 += q[4 * i + 3] * kk.w;
                }
                float p = (p0 + p1) + (p2 + p3);
                p += __shfl_xor_sync(0xffffffffu, p, 1);
                const bool ok = j >= start && j <= qi;
                sc[u] = ok ? p * scale : -3.402823466e38f;
                cmax = fmaxf(cmax, sc[u]);
            }
            if (cmax <= -3.0e38f) continue;          // no visible key in this chunk
            const float m_new = fmaxf(m, cmax);
            const float corr = __expf(m - m_new);
            l *= corr;
            #pragma unroll
            for (int i = 0; i < HALF; i++) acc[i] *= corr;
            #pragma unroll
            for (int u = 0; u < CH; u++) {
                const float w = sc[u] <= -3.0e38f ? 0.f : __expf(sc[u] - m_new);
                l += w;
                const float4* v4 = (const float4*)(vs + (c0 + u) * HD + part * HALF);
                #pragma unroll
                for (int i = 0; i < HALF / 4; i++) {
                    const float4 vv = v4[i];
                    acc[4 * i] += w * vv.x; acc[4 * i + 1] += w * vv.y;
                    acc[4 * i + 2] += w * vv.z; acc[4 * i + 3] += w * vv.w;
                }
            }
            m = m_new;
        }
    }
    if (qi >= S) return;
    unsigned short* dst = out + ((unsigned long long)b * S + qi) * H * HD + h * HD + part * HALF;
    const float inv = active && l > 0.f ? 1.f / l : 0.f;
    #pragma unroll
    for (int i = 0; i < HALF; i++) dst[i] = f2bf(active ? acc[i] * inv : 0.f);
}
"#;

pub struct ElementwiseKernels {
    pub bias_add_bf16: CudaFunction,
    pub residual_add_f32_bf16: CudaFunction,
    pub silu_mul_bf16: CudaFunction,
    pub rms_norm_f32_bf16: CudaFunction,
    pub softmax_rows_f32_bf16: CudaFunction,
}

/// Kernels compiled once per CUDA context (the attention kernel once per head dimension).
pub struct FusedKernels {
    pub elementwise: ElementwiseKernels,
    window_attention: Mutex<HashMap<usize, Arc<CudaFunction>>>,
    causal_attention: Mutex<HashMap<usize, Arc<CudaFunction>>>,
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
        let key = Arc::as_ptr(stream.context()) as usize;
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
                softmax_rows_f32_bf16: nvrtc::function(&m, "softmax_rows_f32_bf16")?,
            },
            window_attention: Mutex::new(HashMap::new()),
            causal_attention: Mutex::new(HashMap::new()),
            stream: stream.clone(),
        });
        all.push((key, k.clone()));
        Ok(k)
    }

    /// `kernel` (in `source`) compiled for one head dimension, cached in `cache`.
    fn per_head_dim(
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

    /// `out` [B, S, H·HD] from `qkv` [B, S, (H + 2·KVH)·HD] (bf16), `cos_sin` [B, S, HD] f32 and
    /// `key_start` [B] (first non-padding position of each sequence).
    #[allow(clippy::too_many_arguments)]
    pub fn causal_attention(
        &self,
        stream: &Arc<CudaStream>,
        qkv: &CudaView<half::bf16>,
        cos_sin: &CudaView<f32>,
        key_start: &CudaView<u32>,
        out: &mut CudaSlice<half::bf16>,
        shape: CausalShape,
    ) -> Result<()> {
        let CausalShape {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        } = shape;
        if head_dim % 2 != 0
            || kv_heads == 0
            || heads % kv_heads != 0
            || !Self::causal_fits(head_dim)
        {
            bail!("causal attention kernel: unsupported heads {heads}/{kv_heads} × {head_dim}");
        }
        if qkv.len() < batch * seq * (heads + 2 * kv_heads) * head_dim
            || cos_sin.len() < batch * seq * head_dim
            || key_start.len() < batch
            || out.len() < batch * seq * heads * head_dim
        {
            bail!("causal attention kernel: buffers too small for {batch} × {seq}");
        }
        let f = self.per_head_dim(
            &self.causal_attention,
            CAUSAL_ATTENTION,
            "causal_attention_bf16",
            head_dim,
        )?;
        let cfg = LaunchConfig {
            grid_dim: (seq.div_ceil(64) as u32, heads as u32, batch as u32),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (s, h, kvh, scale) = (
            seq as u32,
            heads as u32,
            kv_heads as u32,
            1.0f32 / (head_dim as f32).sqrt(),
        );
        let mut b = stream.launch_builder(&f);
        b.arg(qkv).arg(cos_sin).arg(key_start).arg(out);
        b.arg(&s).arg(&h).arg(&kvh).arg(&scale);
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// Whether the causal kernel takes `head_dim`: its static shared tiles (2 × 32 keys ×
    /// head_dim f32) fit 48 KiB, and each thread's half of a row is read as float4s.
    pub fn causal_fits(head_dim: usize) -> bool {
        head_dim % 8 == 0 && head_dim > 0 && 2 * 32 * head_dim * 4 <= 48 * 1024
    }

    /// Largest window the attention kernel takes for `head_dim` (keys and values in 48 KiB of
    /// shared memory, one thread per slot).
    pub fn max_window_len(head_dim: usize) -> usize {
        if head_dim % 16 != 0 || head_dim == 0 {
            return 0; // 4 threads per slot, each reading its quarter as float4s
        }
        (48 * 1024 / (2 * head_dim * 4)).min(256)
    }

    /// `out` [n_patches, heads, head_dim] from `qkv` [n_patches, 3, heads, head_dim] (bf16 bits).
    #[allow(clippy::too_many_arguments)]
    pub fn window_attention(
        &self,
        stream: &Arc<CudaStream>,
        qkv: &CudaView<half::bf16>,
        cos_sin: &CudaView<f32>,
        gather: &CudaView<u32>,
        out: &mut CudaSlice<half::bf16>,
        shape: WindowShape,
    ) -> Result<()> {
        let WindowShape {
            n_patches,
            n_windows,
            window_len,
            heads,
            head_dim,
        } = shape;
        if window_len == 0 || window_len > Self::max_window_len(head_dim) {
            bail!("window attention kernel: window of {window_len} slots is out of range for head_dim {head_dim}");
        }
        if qkv.len() < n_patches * 3 * heads * head_dim
            || out.len() < n_patches * heads * head_dim
            || gather.len() < n_windows * window_len
            || cos_sin.len() < n_patches * head_dim
        {
            bail!("window attention kernel: buffers too small for {n_patches} patches");
        }
        let f = self.per_head_dim(
            &self.window_attention,
            WINDOW_ATTENTION,
            "window_attention_bf16",
            head_dim,
        )?;
        let cfg = LaunchConfig {
            grid_dim: (n_windows as u32, heads as u32, 1),
            block_dim: (4 * window_len as u32, 1, 1),
            shared_mem_bytes: (2 * window_len * head_dim * 4) as u32,
        };
        let (n, h, scale) = (
            n_patches as u32,
            heads as u32,
            1.0f32 / (head_dim as f32).sqrt(),
        );
        let mut b = stream.launch_builder(&f);
        b.arg(qkv).arg(cos_sin).arg(gather).arg(out);
        b.arg(&n).arg(&h).arg(&scale);
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct WindowShape {
    pub n_patches: usize,
    pub n_windows: usize,
    pub window_len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct CausalShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}
