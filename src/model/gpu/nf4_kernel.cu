
__device__ __forceinline__ unsigned short f32_to_bf16_rne(float f) {
    unsigned int x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x0040u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short)(x >> 16);
}
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

NF4_KERNEL(nf4_dequant_bf16, unsigned short, STORE_16BIT(f32_to_bf16_rne), f32_to_bf16_rne)
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

NF4_PADDED_KERNEL(nf4_dequant_padded_bf16, unsigned short, STORE8_16BIT(f32_to_bf16_rne))
NF4_PADDED_KERNEL(nf4_dequant_padded_f16, unsigned short, STORE8_16BIT(f32_to_f16_rne))
NF4_PADDED_KERNEL(nf4_dequant_padded_f32, float, STORE8_F32)
