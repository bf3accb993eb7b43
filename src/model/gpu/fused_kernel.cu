
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

__device__ __forceinline__ unsigned short silu_mul1(unsigned short g, unsigned short u) {
    const float a = bf2f(g);
    return f2bf(a / (1.0f + expf(-a)) * bf2f(u));
}
// out[r, j] = bf16(silu(g[r·gs + j]) · u[r·us + j]) for rows r < rows and j < h, silu and product
// in f32: a stacked gate|up projection (u = g + h, both strides 2h) or two separate ones (strides
// h). Rows on the grid's y, so no thread divides to find its row; with `vec8` (h, the strides and
// both starts multiples of 8 values) each thread takes 8 values in 16-byte loads.
extern "C" __global__ void silu_mul_rows_bf16(const unsigned short* __restrict__ g,
    const unsigned short* __restrict__ u, unsigned short* __restrict__ out, unsigned int rows,
    unsigned int h, unsigned int gs, unsigned int us, int vec8) {
    const unsigned int step = gridDim.x * blockDim.x, first = blockIdx.x * blockDim.x + threadIdx.x;
    for (unsigned int r = blockIdx.y; r < rows; r += gridDim.y) {
        const unsigned short* gr = g + (unsigned long long)r * gs;
        const unsigned short* ur = u + (unsigned long long)r * us;
        unsigned short* o = out + (unsigned long long)r * h;
        if (vec8) {
            for (unsigned int j = 8 * first; j < h; j += 8 * step) {
                const uint4 a = *reinterpret_cast<const uint4*>(gr + j);
                const uint4 b = *reinterpret_cast<const uint4*>(ur + j);
                const unsigned int av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
                unsigned int ov[4];
#pragma unroll
                for (int k = 0; k < 4; k++)
                    ov[k] = silu_mul1(av[k] & 0xffffu, bv[k] & 0xffffu)
                        | ((unsigned int)silu_mul1(av[k] >> 16, bv[k] >> 16) << 16);
                *reinterpret_cast<uint4*>(o + j) = make_uint4(ov[0], ov[1], ov[2], ov[3]);
            }
        } else {
            for (unsigned int j = first; j < h; j += step) o[j] = silu_mul1(gr[j], ur[j]);
        }
    }
}

// The largest of every thread's `m` in the block (blockDim a multiple of 32, at most 1024).
__device__ __forceinline__ float block_max(float m, float* partial) {
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (threadIdx.x == 0) partial[0] = m;
    }
    __syncthreads();
    return partial[0];
}
// The largest magnitude among 8 bf16 in four words.
__device__ __forceinline__ float amax8(const unsigned int w[4]) {
    float m = 0.f;
    for (int k = 0; k < 4; k++)
        m = fmaxf(m, fmaxf(fabsf(bf2f(w[k] & 0xffffu)), fabsf(bf2f(w[k] >> 16))));
    return m;
}
// A row's scale amax / 448 into `scales[row]` (1 for an all-zero or non-finite row); returns the
// factor 448 / amax its values are multiplied by before rounding to E4M3.
__device__ __forceinline__ float fp8_row_scale(float amax, float* scales, unsigned int row) {
    const bool scaled = amax > 0.f && amax <= 3.402823466e38f;
    if (threadIdx.x == 0) scales[row] = scaled ? __fdiv_rn(amax, 448.f) : 1.f;
    return scaled ? __fdiv_rn(448.f, amax) : 1.f;
}
// 8 bf16 in four words, times `inv`, as 8 E4M3 codes.
__device__ __forceinline__ uint2 e4m3x8(const unsigned int w[4], float inv) {
    unsigned int q[4];
    for (int k = 0; k < 4; k++)
        q[k] = e4m3x2(__fmul_rn(bf2f(w[k] & 0xffffu), inv), __fmul_rn(bf2f(w[k] >> 16), inv));
    return make_uint2(q[0] | (q[1] << 16), q[2] | (q[3] << 16));
}
// Rows of at most 4 · RMS_VECS · blockDim values stay in registers between the sum and the scaling.
#define RMS_VECS 4
// One block per row of `dim` f32 values (a multiple of 4): with `h`, the residual stream's update
// x_out = x + f32(h) and the norm of that; without (`h` and `x_out` null), the norm of x:
// out = bf16(v * rsqrt(mean(v^2) + eps) * w), w f32. Fusing the add saves the update's re-read
// and a launch; the 16-byte loads cover a row in a quarter of the scalar accesses.
// With `codes` (and `scales`) instead of `out`, the normed row goes out as FP8 E4M3 codes and
// a scale, as `quantize_rows_fp8` would quantise the bf16 row: for an FP8 GEMM that reads it.
extern "C" __global__ void residual_rms_norm_f32_bf16(const float* __restrict__ x,
    const unsigned short* __restrict__ h, const float* __restrict__ w, float* __restrict__ x_out,
    unsigned short* __restrict__ out, unsigned char* __restrict__ codes,
    float* __restrict__ scales, unsigned int dim, float eps) {
    __shared__ float partial[32];
    const unsigned long long base = (unsigned long long)blockIdx.x * dim;
    const float4* xr = reinterpret_cast<const float4*>(x + base);
    const unsigned int nv = dim / 4;
    float4 v[RMS_VECS];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < RMS_VECS; k++) {
        const unsigned int j = threadIdx.x + k * blockDim.x;
        if (j < nv) {
            float4 a = xr[j];
            if (h != 0) {
                const uint2 hb = reinterpret_cast<const uint2*>(h + base)[j];
                a.x += bf2f(hb.x & 0xffffu);
                a.y += bf2f(hb.x >> 16);
                a.z += bf2f(hb.y & 0xffffu);
                a.w += bf2f(hb.y >> 16);
                reinterpret_cast<float4*>(x_out + base)[j] = a;
            }
            v[k] = a;
            s += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
        }
    }
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
    const float4* wr = reinterpret_cast<const float4*>(w);
    uint2 normed[RMS_VECS];
    float m = 0.f;
#pragma unroll
    for (int k = 0; k < RMS_VECS; k++) {
        const unsigned int j = threadIdx.x + k * blockDim.x;
        if (j < nv) {
            const float4 a = v[k], g = wr[j];
            normed[k] = make_uint2(
                f2bf(a.x * inv * g.x) | ((unsigned int)f2bf(a.y * inv * g.y) << 16),
                f2bf(a.z * inv * g.z) | ((unsigned int)f2bf(a.w * inv * g.w) << 16));
            const unsigned int four[4] = {normed[k].x, normed[k].y, 0u, 0u};
            m = fmaxf(m, amax8(four));
        }
    }
    if (codes == 0) {
        uint2* dst = reinterpret_cast<uint2*>(out + base);
#pragma unroll
        for (int k = 0; k < RMS_VECS; k++) {
            const unsigned int j = threadIdx.x + k * blockDim.x;
            if (j < nv) dst[j] = normed[k];
        }
        return;
    }
    // Every thread has read the sum out of `partial` before the maximum reuses it.
    __syncthreads();
    const float q = fp8_row_scale(block_max(m, partial), scales, blockIdx.x);
    unsigned int* dst = reinterpret_cast<unsigned int*>(codes + base);
#pragma unroll
    for (int k = 0; k < RMS_VECS; k++) {
        const unsigned int j = threadIdx.x + k * blockDim.x;
        if (j < nv) {
            const unsigned int four[4] = {normed[k].x, normed[k].y, 0u, 0u};
            dst[j] = e4m3x8(four, q).x;
        }
    }
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
// One block per row of bf16 activations [rows, cols] (cols a multiple of 8): the row as FP8 E4M3
// codes `e4m3(x · 448 / amax)` and its scale `amax / 448` (1 for an all-zero row), the rounding
// `quant::fp8::round_rows` emulates on the CPU.
extern "C" __global__ void quantize_rows_fp8(const unsigned short* __restrict__ x,
    unsigned char* __restrict__ out, float* __restrict__ scales, unsigned int cols) {
    __shared__ float partial[32];
    const unsigned short* row = x + (unsigned long long)blockIdx.x * cols;
    unsigned char* dst = out + (unsigned long long)blockIdx.x * cols;
    float m = 0.f;
    for (unsigned int i = 8 * threadIdx.x; i < cols; i += 8 * blockDim.x) {
        const uint4 v = *reinterpret_cast<const uint4*>(row + i);
        const unsigned int w[4] = {v.x, v.y, v.z, v.w};
        m = fmaxf(m, amax8(w));
    }
    const float inv = fp8_row_scale(block_max(m, partial), scales, blockIdx.x);
    for (unsigned int i = 8 * threadIdx.x; i < cols; i += 8 * blockDim.x) {
        const uint4 v = *reinterpret_cast<const uint4*>(row + i);
        const unsigned int w[4] = {v.x, v.y, v.z, v.w};
        *reinterpret_cast<uint2*>(dst + i) = e4m3x8(w, inv);
    }
}
// Steps of 8 values a thread of `silu_mul_fp8_rows` keeps in registers: rows of up to
// 8 · SILU_FP8_STEPS · blockDim values.
#define SILU_FP8_STEPS 6
// silu(g)·u of each row rounded to bf16 (as `silu_mul_rows_bf16` writes it), then quantised as
// `quantize_rows_fp8` quantises such a row: the E4M3 codes at out[r·h..] and the row's scale,
// for the next layer's FP8 GEMM, without reading the bf16 row back. With `hb` the bf16 rows
// [rows, h] are written there too (for an adapter beside that GEMM, which reads them), else
// never. One block per row; h, the strides and both starts are multiples of 8 values (16-byte
// loads).
extern "C" __global__ void silu_mul_fp8_rows(const unsigned short* __restrict__ g,
    const unsigned short* __restrict__ u, unsigned char* __restrict__ out,
    float* __restrict__ scales, unsigned short* __restrict__ hb, unsigned int h, unsigned int gs,
    unsigned int us) {
    __shared__ float partial[32];
    const unsigned int r = blockIdx.x;
    const unsigned short* gr = g + (unsigned long long)r * gs;
    const unsigned short* ur = u + (unsigned long long)r * us;
    unsigned int vals[SILU_FP8_STEPS][4];
    float m = 0.f;
#pragma unroll
    for (int s = 0; s < SILU_FP8_STEPS; s++) {
        const unsigned int j = 8 * (threadIdx.x + s * blockDim.x);
        if (j < h) {
            const uint4 a = *reinterpret_cast<const uint4*>(gr + j);
            const uint4 b = *reinterpret_cast<const uint4*>(ur + j);
            const unsigned int av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int k = 0; k < 4; k++)
                vals[s][k] = silu_mul1(av[k] & 0xffffu, bv[k] & 0xffffu)
                    | ((unsigned int)silu_mul1(av[k] >> 16, bv[k] >> 16) << 16);
            m = fmaxf(m, amax8(vals[s]));
            if (hb != 0)
                *reinterpret_cast<uint4*>(hb + (unsigned long long)r * h + j) =
                    make_uint4(vals[s][0], vals[s][1], vals[s][2], vals[s][3]);
        }
    }
    const float inv = fp8_row_scale(block_max(m, partial), scales, r);
    unsigned char* dst = out + (unsigned long long)r * h;
#pragma unroll
    for (int s = 0; s < SILU_FP8_STEPS; s++) {
        const unsigned int j = 8 * (threadIdx.x + s * blockDim.x);
        if (j < h) *reinterpret_cast<uint2*>(dst + j) = e4m3x8(vals[s], inv);
    }
}
// An FP8 GEMM's raw f32 sums [rows, cols] (scales not applied) to bf16: each scaled by its
// output channel's and its row's scale, plus the bias (or 0), plus the output's own value when
// `accumulate` — for cards whose cuBLASLt lacks per-channel and per-token scaling.
extern "C" __global__ void fp8_rescale_bf16(const float* __restrict__ raw,
    const float* __restrict__ col_scale, const float* __restrict__ row_scale,
    const unsigned short* __restrict__ bias, unsigned short* __restrict__ out,
    unsigned long long n, unsigned int cols, int accumulate) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned int c = (unsigned int)(i % cols);
        float v = raw[i] * (col_scale[c] * row_scale[i / cols]);
        if (bias != 0) v += bf2f(bias[c]);
        if (accumulate) v += bf2f(out[i]);
        out[i] = f2bf(v);
    }
}
