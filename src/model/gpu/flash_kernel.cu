
// QT (query slots per block: 64 or 128, 16 per warp) comes with HD from the host; KT keys go
// through shared memory at a time.
#ifndef QT
#define QT 64
#endif
#define KT 64
// ROPE 1: q and k arrive unrotated and are rotated in shared memory as their tiles land (for
// attention where each K tile is read once: the windows); 0: they were rotated in place before.
#ifndef ROPE
#define ROPE 0
#endif
#define WARPS (QT / 16)
#define LDS (HD + 8)      // row stride (bf16) of the Q/K/V tiles in shared memory: conflict-free
#define NK (HD / 16)      // k-steps of Q·Kᵀ
#define NO (HD / 8)       // n-tiles of the output rows
typedef unsigned short bf;
#define NEG_INF (-__int_as_float(0x7f800000))


// Four 8×8 b16 matrices from shared memory; lane l gives the address of row l % 8 of matrix
// l / 8 and receives, of each matrix, row lane / 4, columns 2 (lane % 4) and + 1 (transposed
// with .trans).
__device__ __forceinline__ void ldsm_x4(unsigned* r, const bf* p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}
__device__ __forceinline__ void ldsm_x2(unsigned* r, const bf* p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1]) : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_trans(unsigned* r, const bf* p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

// Two floats to bf16 (round to nearest even) in one register, `lo` in the low half.
__device__ __forceinline__ unsigned cvt_bf16x2(float lo, float hi) {
    unsigned d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}
// The two bf16 of a packed register as floats, summed.
__device__ __forceinline__ float sum_bf16x2(unsigned v) {
    return __uint_as_float(v << 16) + __uint_as_float(v & 0xffff0000u);
}
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ unsigned ld32(const bf* p) { return *(const unsigned*)p; }

// Rows [first, first + ROWS) of one head's slice into a row-major shared tile, as 16-byte
// asynchronous copies (cp.async; the caller commits and waits); slots past `end` or mapping to
// no row are filled with zeros (and -inf in `bias` when given).
template <int ROWS>
__device__ __forceinline__ void load_tile_async(bf* dst, const bf* __restrict__ qkv,
    unsigned long long row_len, unsigned col, unsigned first, unsigned end,
    const unsigned* __restrict__ gather, unsigned n_rows, float* bias) {
    for (unsigned e = threadIdx.x; e < ROWS * (HD / 8); e += blockDim.x) {
        const unsigned r = e / (HD / 8), c = e % (HD / 8), slot = first + r;
        unsigned row = n_rows;
        if (slot < end) row = gather ? gather[slot] : slot;
        const bool valid = row < n_rows;
        const bf* src = valid ? qkv + row * row_len + col + c * 8 : qkv;
        const unsigned d = (unsigned)__cvta_generic_to_shared(dst + r * LDS + c * 8);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                     :: "r"(d), "l"(src), "r"(valid ? 16 : 0));
        if (bias && c == 0) bias[r] = valid ? 0.f : NEG_INF;
    }
}
// Rotates rows [first, first + ROWS) of a Q or K tile in shared memory by the rotate-half RoPE
// of each row's table (cos_sin [n_rows, HD]: cos then sin, HD/2 each), in f32 with one rounding
// to bf16: the values `rope_qk_bf16` would have written in place. Slots past `end` or mapping to
// no row hold zeros and stay so.
template <int ROWS>
__device__ __forceinline__ void rope_tile(bf* tile, const float* __restrict__ cos_sin,
    unsigned first, unsigned end, const unsigned* __restrict__ gather, unsigned n_rows) {
    for (unsigned e = threadIdx.x; e < ROWS * (HD / 2); e += blockDim.x) {
        const unsigned r = e / (HD / 2), f = e % (HD / 2), slot = first + r;
        if (slot >= end) continue;
        const unsigned row = gather ? gather[slot] : slot;
        if (row >= n_rows) continue;
        const float* c = cos_sin + (unsigned long long)row * HD;
        bf* x = tile + r * LDS;
        const float x1 = bf2f(x[f]), x2 = bf2f(x[f + HD / 2]);
        x[f] = f2bf(x1 * c[f] - x2 * c[HD / 2 + f]);
        x[f + HD / 2] = f2bf(x2 * c[f] + x1 * c[HD / 2 + f]);
    }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N));
}

// The Q tile goes through stage 1's K and V buffers, which lie end to end.
static_assert(QT % 16 == 0 && QT <= 2 * KT, "the Q tile must fit stage 1");

// At head dimensions up to 80 the registers fit 128 per thread, so 16 warps share an SM (four
// 64-slot blocks or two 128-slot ones); wider heads take what they need.
#if HD <= 80
#define LAUNCH_BOUNDS __launch_bounds__(WARPS * 32, 16 / WARPS)
#else
#define LAUNCH_BOUNDS __launch_bounds__(WARPS * 32)
#endif

extern "C" __global__ void LAUNCH_BOUNDS flash_attention_bf16(
    const bf* __restrict__ qkv,            // [n_rows, (H + 2 KVH) * HD]
    const uint4* __restrict__ tiles,       // [n_tiles] {q_begin, q_end, k_begin, k_end} in slots
    const unsigned* __restrict__ gather,   // slot → row, or null (slot = row)
    bf* __restrict__ out,                  // [n_rows, H * HD]
    const float* __restrict__ cos_sin,     // [n_rows, HD] RoPE tables (ROPE 1), else unused
    unsigned n_rows, unsigned H, unsigned KVH, float scale_log2, int causal)
{
    // Two stages of K and V tiles (row-major; V read transposed) and their key masks (0 for a
    // key, -inf for padding): tile i + 1 is copied in while tile i is computed. The Q tile goes
    // through stage 1's K buffer first.
    extern __shared__ __align__(16) unsigned char smem[];
    bf* const tiles_base = (bf*)smem;
    float* const bias_base = (float*)(tiles_base + 4 * KT * LDS);
#define K_STAGE(s) (tiles_base + (s) * 2 * KT * LDS)
#define V_STAGE(s) (tiles_base + (s) * 2 * KT * LDS + KT * LDS)
#define BIAS_STAGE(s) (bias_base + (s) * KT)
    const uint4 t = tiles[blockIdx.x];
    const unsigned h = blockIdx.y, kvh = h / (H / KVH);
    const unsigned long long row_len = (unsigned long long)(H + 2 * KVH) * HD;
    const unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const unsigned g = lane >> 2, tq = lane & 3;

    // Q tile → shared → this warp's A fragments in registers.
    const unsigned k_end = causal ? min(t.w, min(t.y, t.x + QT)) : t.w;
    const unsigned k_off = (H + kvh) * HD, v_off = (H + KVH + kvh) * HD;
    bf* const ks = K_STAGE(1);
    load_tile_async<QT>(ks, qkv, row_len, h * HD, t.x, t.y, gather, n_rows, 0);
    cp_async_commit();
    // The first K/V tile is on its way while the Q fragments are read.
    if (t.z < k_end) {
        load_tile_async<KT>(K_STAGE(0), qkv, row_len, k_off, t.z, k_end, gather, n_rows, BIAS_STAGE(0));
        load_tile_async<KT>(V_STAGE(0), qkv, row_len, v_off, t.z, k_end, gather, n_rows, 0);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (ROPE) {
        rope_tile<QT>(ks, cos_sin, t.x, t.y, gather, n_rows);
        __syncthreads();
    }
    unsigned qa[NK][4];
    const unsigned r0 = warp * 16 + g;
    #pragma unroll
    for (int kk = 0; kk < NK; kk++) {
        qa[kk][0] = ld32(ks + r0 * LDS + kk * 16 + 2 * tq);
        qa[kk][1] = ld32(ks + (r0 + 8) * LDS + kk * 16 + 2 * tq);
        qa[kk][2] = ld32(ks + r0 * LDS + kk * 16 + 8 + 2 * tq);
        qa[kk][3] = ld32(ks + (r0 + 8) * LDS + kk * 16 + 8 + 2 * tq);
    }
    const unsigned qslot0 = t.x + r0, qslot1 = qslot0 + 8;
    const unsigned warp_first_q = t.x + warp * 16;

    float o[NO][4];
    #pragma unroll
    for (int n = 0; n < NO; n++) { o[n][0] = 0.f; o[n][1] = 0.f; o[n][2] = 0.f; o[n][3] = 0.f; }
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;
    // (k_end: with the causal mask no key after the tile's last query is visible.)
    // ldmatrix row addresses: lane → (row within 8, which of the four matrices).
    const unsigned lr = lane & 7, lm = lane >> 3;

    unsigned stage = 0;
    for (unsigned kb = t.z; kb < k_end; kb += KT, stage ^= 1) {
        // Everyone is done with the other stage (the previous tile, or the Q tile): refill it
        // with the next tile, then wait for this one.
        __syncthreads();
        if (kb + KT < k_end) {
            load_tile_async<KT>(K_STAGE(stage ^ 1), qkv, row_len, k_off, kb + KT, k_end, gather,
                                n_rows, BIAS_STAGE(stage ^ 1));
            load_tile_async<KT>(V_STAGE(stage ^ 1), qkv, row_len, v_off, kb + KT, k_end, gather,
                                n_rows, 0);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (ROPE) {
            rope_tile<KT>(K_STAGE(stage), cos_sin, kb, k_end, gather, n_rows);
            __syncthreads();
        }
        // A warp whose rows are all past the tile's end, or (causal) all before this key tile,
        // has nothing to add from it; the block's other warps may.
        if (warp_first_q >= t.y || (causal && kb > warp_first_q + 15)) continue;
        const bf* ks = K_STAGE(stage);
        const bf* vs = V_STAGE(stage);
        const float* key_bias = BIAS_STAGE(stage);

        // S = Q·Kᵀ for this warp's 16 rows × 64 keys. B fragments by ldmatrix: matrices
        // (keys n·8.., dims kk·16 + {0, 8, 16, 24}) give b0, b1 of k-steps kk and kk + 1.
        float s[KT / 8][4];
        #pragma unroll
        for (int n = 0; n < KT / 8; n++) {
            s[n][0] = 0.f; s[n][1] = 0.f; s[n][2] = 0.f; s[n][3] = 0.f;
            const bf* krow = ks + (n * 8 + lr) * LDS;
            #pragma unroll
            for (int kk = 0; kk + 1 < NK; kk += 2) {
                unsigned b[4];
                ldsm_x4(b, krow + kk * 16 + lm * 8);
                mma_bf16_16816(s[n], qa[kk], b[0], b[1]);
                mma_bf16_16816(s[n], qa[kk + 1], b[2], b[3]);
            }
            if (NK % 2) {
                unsigned b[2];
                ldsm_x2(b, krow + (NK - 1) * 16 + (lm & 1) * 8);
                mma_bf16_16816(s[n], qa[NK - 1], b[0], b[1]);
            }
        }
        // Scale (log2 domain); mask only where some key of the tile may be invisible to this
        // warp (padding slots, the segment's end, the causal diagonal).
        const bool mask = gather != 0 || kb + KT > k_end || (causal && kb + KT - 1 > warp_first_q);
        float tmax0 = NEG_INF, tmax1 = NEG_INF;
        #pragma unroll
        for (int n = 0; n < KT / 8; n++) {
            #pragma unroll
            for (int e = 0; e < 4; e++) {
                float v = s[n][e] * scale_log2;
                if (mask) {
                    const unsigned kc = n * 8 + 2 * tq + (e & 1);
                    const unsigned key = kb + kc;
                    const unsigned q = e < 2 ? qslot0 : qslot1;
                    v += key_bias[kc];
                    if (key >= k_end || (causal && key > q)) v = NEG_INF;
                }
                s[n][e] = v;
            }
            tmax0 = fmaxf(tmax0, fmaxf(s[n][0], s[n][1]));
            tmax1 = fmaxf(tmax1, fmaxf(s[n][2], s[n][3]));
        }
        tmax0 = fmaxf(tmax0, __shfl_xor_sync(0xffffffffu, tmax0, 1));
        tmax0 = fmaxf(tmax0, __shfl_xor_sync(0xffffffffu, tmax0, 2));
        tmax1 = fmaxf(tmax1, __shfl_xor_sync(0xffffffffu, tmax1, 1));
        tmax1 = fmaxf(tmax1, __shfl_xor_sync(0xffffffffu, tmax1, 2));
        const float mn0 = fmaxf(m0, tmax0), mn1 = fmaxf(m1, tmax1);
        // A row with no visible key yet keeps zeros (exp2(-inf) = 0 everywhere).
        const float base0 = mn0 == NEG_INF ? 0.f : mn0, base1 = mn1 == NEG_INF ? 0.f : mn1;
        const float corr0 = fast_exp2(m0 - base0), corr1 = fast_exp2(m1 - base1);
        m0 = mn0; m1 = mn1;
        l0 *= corr0; l1 *= corr1;
        #pragma unroll
        for (int n = 0; n < NO; n++) {
            o[n][0] *= corr0; o[n][1] *= corr0; o[n][2] *= corr1; o[n][3] *= corr1;
        }
        // P (bf16) as A fragments, straight from the accumulator layout; the row sums add the
        // rounded weights. O += P·V with V's B fragments by transposed ldmatrix: matrices
        // (keys kk·16 + {0, 8}, dims n·8 and (n + 1)·8).
        #pragma unroll
        for (int kk = 0; kk < KT / 16; kk++) {
            unsigned pa[4];
            #pragma unroll
            for (int half = 0; half < 2; half++) {
                const float* sn = s[2 * kk + half];
                pa[2 * half] = cvt_bf16x2(fast_exp2(sn[0] - base0), fast_exp2(sn[1] - base0));
                pa[2 * half + 1] = cvt_bf16x2(fast_exp2(sn[2] - base1), fast_exp2(sn[3] - base1));
                l0 += sum_bf16x2(pa[2 * half]);
                l1 += sum_bf16x2(pa[2 * half + 1]);
            }
            // pa = {row g keys 0-7, row g+8 keys 0-7, row g keys 8-15, row g+8 keys 8-15}.
            const unsigned a[4] = {pa[0], pa[1], pa[2], pa[3]};
            const bf* vrow = vs + (kk * 16 + (lm & 1) * 8 + lr) * LDS + (lm >> 1) * 8;
            #pragma unroll
            for (int n = 0; n < NO; n += 2) {
                unsigned b[4];
                ldsm_x4_trans(b, vrow + n * 8);
                mma_bf16_16816(o[n], a, b[0], b[1]);
                mma_bf16_16816(o[n + 1], a, b[2], b[3]);
            }
        }
    }
    // Each lane summed its own columns: the row sum is the quad's.
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    #pragma unroll
    for (int half = 0; half < 2; half++) {
        const unsigned slot = half == 0 ? qslot0 : qslot1;
        if (slot >= t.y) continue;
        const unsigned row = gather ? gather[slot] : slot;
        if (row >= n_rows) continue;
        const float l = half == 0 ? l0 : l1;
        const float inv = l > 0.f ? 1.f / l : 0.f;
        bf* dst = out + (unsigned long long)row * H * HD + h * HD + 2 * tq;
        #pragma unroll
        for (int n = 0; n < NO; n++)
            *(unsigned*)(dst + n * 8) = cvt_bf16x2(o[n][2 * half] * inv, o[n][2 * half + 1] * inv);
    }
}
