// Compiled after `fused_common.cuh` (its bf16 conversion and tensor-core step).
__device__ __forceinline__ unsigned short f32_to_f16_rne(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// absmax of 64-weight block b: plain f32, or double-quantised.
__device__ __forceinline__ float block_absmax(unsigned long long b, const float* absmax_f32,
        const unsigned char* qabsmax, const float* absmax2, const float* code2, float offset) {
    if (absmax_f32 != 0) return absmax_f32[b];
    return __fadd_rn(__fmul_rn(code2[qabsmax[b]], absmax2[b >> 8]), offset);
}

#define NF4_KERNEL(NAME, OUT_T, STORE_VEC, CONVERT)                                               \
extern "C" __global__ void NAME(const unsigned char* __restrict__ packed,                       \
        const float* __restrict__ absmax_f32, const unsigned char* __restrict__ qabsmax,           \
        const float* __restrict__ absmax2, const float* __restrict__ code2, float offset,          \
        const float* __restrict__ nf4, OUT_T* __restrict__ out, unsigned long long n) {           \
    __shared__ float lut[16];                                                                     \
    if (threadIdx.x < 16) lut[threadIdx.x] = nf4[threadIdx.x];                                    \
    __syncthreads();                                                                              \
    unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;             \
    unsigned long long e0 = t * 16;                                                               \
    if (e0 >= n) return;                                                                          \
    float a = block_absmax(e0 >> 6, absmax_f32, qabsmax, absmax2, code2, offset);                 \
    if (e0 + 16 <= n) {                                                                           \
        uint2 q = *reinterpret_cast<const uint2*>(packed + (e0 >> 1));                            \
        unsigned int words[2] = {q.x, q.y};                                                       \
        float v[16];                                                                              \
        for (int k = 0; k < 8; k++) {                                                             \
            unsigned int byte = (words[k >> 2] >> ((k & 3) * 8)) & 0xffu;                         \
            v[2 * k] = __fmul_rn(lut[byte >> 4], a);                                              \
            v[2 * k + 1] = __fmul_rn(lut[byte & 15u], a);                                         \
        }                                                                                         \
        STORE_VEC                                                                                 \
    } else {                                                                                      \
        for (unsigned long long e = e0; e < n; e++) {                                             \
            unsigned int byte = packed[e >> 1];                                                   \
            unsigned int q4 = (e & 1) ? (byte & 15u) : (byte >> 4);                               \
            out[e] = CONVERT(__fmul_rn(lut[q4], a));                                              \
        }                                                                                         \
    }                                                                                             \
}

#define STORE_16BIT(CONV)                                                                         \
    uint4 lo, hi;                                                                                 \
    lo.x = CONV(v[0]) | ((unsigned int)CONV(v[1]) << 16);                                         \
    lo.y = CONV(v[2]) | ((unsigned int)CONV(v[3]) << 16);                                         \
    lo.z = CONV(v[4]) | ((unsigned int)CONV(v[5]) << 16);                                         \
    lo.w = CONV(v[6]) | ((unsigned int)CONV(v[7]) << 16);                                         \
    hi.x = CONV(v[8]) | ((unsigned int)CONV(v[9]) << 16);                                         \
    hi.y = CONV(v[10]) | ((unsigned int)CONV(v[11]) << 16);                                       \
    hi.z = CONV(v[12]) | ((unsigned int)CONV(v[13]) << 16);                                       \
    hi.w = CONV(v[14]) | ((unsigned int)CONV(v[15]) << 16);                                       \
    uint4* dst = reinterpret_cast<uint4*>(out + e0);                                              \
    dst[0] = lo; dst[1] = hi;

#define STORE_F32                                                                                 \
    float4* dst = reinterpret_cast<float4*>(out + e0);                                            \
    dst[0] = make_float4(v[0], v[1], v[2], v[3]);                                                 \
    dst[1] = make_float4(v[4], v[5], v[6], v[7]);                                                 \
    dst[2] = make_float4(v[8], v[9], v[10], v[11]);                                               \
    dst[3] = make_float4(v[12], v[13], v[14], v[15]);

#define IDENTITY(x) (x)

NF4_KERNEL(nf4_dequant_bf16, unsigned short, STORE_16BIT(f2bf), f2bf)
NF4_KERNEL(nf4_dequant_f16, unsigned short, STORE_16BIT(f32_to_f16_rne), f32_to_f16_rne)
NF4_KERNEL(nf4_dequant_f32, float, STORE_F32, IDENTITY)

// The same weights written into a zero-padded `rows_pad × cols_pad` matrix (row stride
// `cols_pad`, a multiple of 8): the GEMM shape that keeps cuBLAS on its 16-byte-aligned kernels.
// Element (r, c) is weight `r·cols + c` of the flat NF4 order inside `rows × cols`, else zero —
// the padding is rewritten every time because the scratch buffer is shared by every layer. One
// thread writes 8 consecutive outputs (one 16-byte store for 2-byte types).
#define NF4_PADDED_KERNEL(NAME, OUT_T, STORE8)                                           \
extern "C" __global__ void NAME(const unsigned char* __restrict__ packed,                       \
        const float* __restrict__ absmax_f32, const unsigned char* __restrict__ qabsmax,           \
        const float* __restrict__ absmax2, const float* __restrict__ code2, float offset,          \
        const float* __restrict__ nf4, OUT_T* __restrict__ out, unsigned long long rows,           \
        unsigned long long cols, unsigned long long rows_pad, unsigned long long cols_pad) {      \
    __shared__ float lut[16];                                                                     \
    if (threadIdx.x < 16) lut[threadIdx.x] = nf4[threadIdx.x];                                    \
    __syncthreads();                                                                              \
    unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;             \
    unsigned long long o0 = t * 8;                                                                \
    if (o0 >= rows_pad * cols_pad) return;                                                        \
    unsigned long long r = o0 / cols_pad, c0 = o0 % cols_pad;                                     \
    float v[8];                                                                                   \
    for (int k = 0; k < 8; k++) {                                                                 \
        unsigned long long c = c0 + k;                                                            \
        v[k] = 0.0f;                                                                              \
        if (r < rows && c < cols) {                                                               \
            unsigned long long e = r * cols + c;                                                  \
            unsigned int byte = packed[e >> 1];                                                   \
            unsigned int q4 = (e & 1) ? (byte & 15u) : (byte >> 4);                               \
            float a = block_absmax(e >> 6, absmax_f32, qabsmax, absmax2, code2, offset);          \
            v[k] = __fmul_rn(lut[q4], a);                                                         \
        }                                                                                         \
    }                                                                                             \
    STORE8                                                                                        \
}

#define STORE8_16BIT(CONV)                                                                        \
    uint4 w;                                                                                      \
    w.x = CONV(v[0]) | ((unsigned int)CONV(v[1]) << 16);                                          \
    w.y = CONV(v[2]) | ((unsigned int)CONV(v[3]) << 16);                                          \
    w.z = CONV(v[4]) | ((unsigned int)CONV(v[5]) << 16);                                          \
    w.w = CONV(v[6]) | ((unsigned int)CONV(v[7]) << 16);                                          \
    *reinterpret_cast<uint4*>(out + o0) = w;

#define STORE8_F32                                                                                \
    float4* dst = reinterpret_cast<float4*>(out + o0);                                            \
    dst[0] = make_float4(v[0], v[1], v[2], v[3]);                                                 \
    dst[1] = make_float4(v[4], v[5], v[6], v[7]);

NF4_PADDED_KERNEL(nf4_dequant_padded_bf16, unsigned short, STORE8_16BIT(f2bf))
NF4_PADDED_KERNEL(nf4_dequant_padded_f16, unsigned short, STORE8_16BIT(f32_to_f16_rne))
NF4_PADDED_KERNEL(nf4_dequant_padded_f32, float, STORE8_F32)

// ---------------------------------------------------------------------------------------------
// A few input rows (a query's tokens, M ≤ 32) times an NF4 weight [N, K], on tensor cores,
// straight from the 4-bit codes: y[m, n] = Σ_k x[m, k] · w[n, k] (+ bias[n]) (+ y[m, n] when
// `accumulate`), x and y bf16 row-major. Dequantising the whole weight first (the page path)
// writes and re-reads 2 bytes per weight for a product that needs half a byte.
//
// Each weight equals what `nf4_dequant_bf16` writes (nf4·absmax in f32, rounded to bf16), and
// the products accumulate in f32 (mma.m16n8k16), as the page path's GEMM does.
//
// A block of 8 warps owns 32 output features (four n8 tiles) and splits K between its warps in
// 64-wide chunks (one absmax block per row); the 8 partial tiles are summed in shared memory.
// Within a chunk the k order is permuted so that each thread's operands are contiguous: thread
// (g = lane/4, t = lane%4) takes physical weights 16t .. 16t+15 of the chunk (one 8-byte load
// per row) and uses physical 16t + 4j + s for the k-step j's logical k ∈ {2t, 2t+1, 2t+8,
// 2t+9}[s] — a bijection on the 64 positions, applied identically to x, so the sum is unchanged.
// Requires K % 64 == 0 and N % 32 == 0 (the language model's shapes); the caller checks. Row m
// of y starts `ldy` elements after row m-1 (≥ N): a part of a wider output, e.g. q of q|k|v.

extern "C" __global__ void __launch_bounds__(256) nf4_rows_bf16(const unsigned char* __restrict__ packed,
        const float* __restrict__ absmax_f32, const unsigned char* __restrict__ qabsmax,
        const float* __restrict__ absmax2, const float* __restrict__ code2, float offset,
        const float* __restrict__ nf4, const unsigned short* __restrict__ x,
        const unsigned short* __restrict__ bias, unsigned short* y, int accumulate,
        unsigned int M, unsigned int N, unsigned int K, unsigned int ldy) {
    __shared__ float lut[16];
    __shared__ float red[8][32][32];
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned g = lane >> 2, t = lane & 3;
    if (threadIdx.x < 16) lut[threadIdx.x] = nf4[threadIdx.x];
    __syncthreads();
    const unsigned n0 = blockIdx.x * 32;
    const bool two_tiles = M > 16;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int c = 0; c < 4; c++) acc[i][j][c] = 0.0f;
    const unsigned chunks = K / 64;
    for (unsigned ch = warp; ch < chunks; ch += 8) {
        const unsigned k0 = ch * 64;
        // x: rows g, g+8 (tile 0) and 16+g, 24+g (tile 1), physical k 16t .. 16t+15.
        unsigned xa[4][8];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            unsigned row = g + 8 * r;
            if (row < M && (r < 2 || two_tiles)) {
                const uint4* src = reinterpret_cast<const uint4*>(x + (unsigned long long)row * K + k0 + 16 * t);
                uint4 lo = src[0], hi = src[1];
                xa[r][0] = lo.x; xa[r][1] = lo.y; xa[r][2] = lo.z; xa[r][3] = lo.w;
                xa[r][4] = hi.x; xa[r][5] = hi.y; xa[r][6] = hi.z; xa[r][7] = hi.w;
            } else {
                for (int i = 0; i < 8; i++) xa[r][i] = 0u;
            }
        }
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            const unsigned long long n = n0 + nt * 8 + g;
            const unsigned long long e0 = n * K + k0;
            const float a = block_absmax(e0 >> 6, absmax_f32, qabsmax, absmax2, code2, offset);
            uint2 q = *reinterpret_cast<const uint2*>(packed + (e0 >> 1) + 8 * t);
            unsigned words[2] = {q.x, q.y};
            // The 16 weights of this thread, as 8 bf16 pairs (lower half: the even position).
            unsigned wb[8];
#pragma unroll
            for (int p = 0; p < 8; p++) {
                unsigned byte = (words[p >> 2] >> ((p & 3) * 8)) & 0xffu;
                unsigned hi = f2bf(__fmul_rn(lut[byte >> 4], a));
                unsigned lo = f2bf(__fmul_rn(lut[byte & 15u], a));
                wb[p] = hi | (lo << 16);
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                unsigned a0[4] = {xa[0][2 * j], xa[1][2 * j], xa[0][2 * j + 1], xa[1][2 * j + 1]};
                mma_bf16_16816(acc[0][nt], a0, wb[2 * j], wb[2 * j + 1]);
                if (two_tiles) {
                    unsigned a1[4] = {xa[2][2 * j], xa[3][2 * j], xa[2][2 * j + 1], xa[3][2 * j + 1]};
                    mma_bf16_16816(acc[1][nt], a1, wb[2 * j], wb[2 * j + 1]);
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int c = 0; c < 4; c++) red[warp][(i * 4 + j) * 4 + c][lane] = acc[i][j][c];
    __syncthreads();
    for (unsigned p = threadIdx.x; p < 1024; p += 256) {
        const unsigned idx = p >> 5, l = p & 31;
        float s = 0.0f;
        for (int w = 0; w < 8; w++) s += red[w][idx][l];
        const unsigned mt = idx >> 4, nt = (idx >> 2) & 3, c = idx & 3;
        const unsigned m = mt * 16 + (l >> 2) + (c >= 2 ? 8 : 0);
        const unsigned n = n0 + nt * 8 + 2 * (l & 3) + (c & 1);
        if (m >= M) continue;
        unsigned long long o = (unsigned long long)m * ldy + n;
        if (bias != 0) s += __uint_as_float((unsigned)bias[n] << 16);
        if (accumulate) s += __uint_as_float((unsigned)y[o] << 16);
        y[o] = f2bf(s);
    }
}

// NF4 weights as FP8 E4M3 codes `e4m3(w · inv_r)` in a zero-padded `rows_pad × cols_pad` block
// (row stride `cols_pad`, a multiple of 16), and each row's scale into `scale_out` (1 for padding
// rows). `row_scale` holds the rows' scales, then their inverses (`quant::fp8::weight_row_scales`,
// whose CPU emulation rounds alike). One thread writes 16 codes.
extern "C" __global__ void nf4_dequant_fp8(const unsigned char* __restrict__ packed,
        const float* __restrict__ absmax_f32, const unsigned char* __restrict__ qabsmax,
        const float* __restrict__ absmax2, const float* __restrict__ code2, float offset,
        const float* __restrict__ nf4, const float* __restrict__ row_scale,
        unsigned char* __restrict__ out, float* __restrict__ scale_out, unsigned long long rows,
        unsigned long long cols, unsigned long long rows_pad, unsigned long long cols_pad) {
    __shared__ float lut[16];
    if (threadIdx.x < 16) lut[threadIdx.x] = nf4[threadIdx.x];
    __syncthreads();
    unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long o0 = t * 16;
    if (o0 >= rows_pad * cols_pad) return;
    unsigned long long r = o0 / cols_pad, c0 = o0 % cols_pad;
    if (c0 == 0) scale_out[r] = r < rows ? row_scale[r] : 1.0f;
    const float inv = r < rows ? row_scale[rows + r] : 0.0f;
    float v[16];
    if (r < rows && c0 + 16 <= cols && cols % 16 == 0) {
        // 16 whole weights from a multiple of 16: one 64-block, 8 packed bytes in one load.
        unsigned long long e0 = r * cols + c0;
        float a = block_absmax(e0 >> 6, absmax_f32, qabsmax, absmax2, code2, offset);
        uint2 q = *reinterpret_cast<const uint2*>(packed + (e0 >> 1));
        unsigned int words[2] = {q.x, q.y};
        for (int k = 0; k < 8; k++) {
            unsigned int byte = (words[k >> 2] >> ((k & 3) * 8)) & 0xffu;
            v[2 * k] = __fmul_rn(__fmul_rn(lut[byte >> 4], a), inv);
            v[2 * k + 1] = __fmul_rn(__fmul_rn(lut[byte & 15u], a), inv);
        }
    } else {
        for (int k = 0; k < 16; k++) {
            unsigned long long c = c0 + k;
            v[k] = 0.0f;
            if (r < rows && c < cols) {
                unsigned long long e = r * cols + c;
                unsigned int byte = packed[e >> 1];
                unsigned int q4 = (e & 1) ? (byte & 15u) : (byte >> 4);
                float a = block_absmax(e >> 6, absmax_f32, qabsmax, absmax2, code2, offset);
                v[k] = __fmul_rn(__fmul_rn(lut[q4], a), inv);
            }
        }
    }
    uint4 w;
    w.x = e4m3x2(v[0], v[1]) | (e4m3x2(v[2], v[3]) << 16);
    w.y = e4m3x2(v[4], v[5]) | (e4m3x2(v[6], v[7]) << 16);
    w.z = e4m3x2(v[8], v[9]) | (e4m3x2(v[10], v[11]) << 16);
    w.w = e4m3x2(v[12], v[13]) | (e4m3x2(v[14], v[15]) << 16);
    *reinterpret_cast<uint4*>(out + o0) = w;
}
