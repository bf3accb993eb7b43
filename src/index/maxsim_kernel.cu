
#define NC (DIM / 32)      // 16-byte chunks of one token per lane
typedef unsigned short h16;
#define NEG_INF (-__int_as_float(0x7f800000))

__device__ __forceinline__ void mma16816(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes read once per query: not kept in L1.
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// Tokens u·8 + g (u < UNR) from `tok`: this lane's chunks 4i + t.
template <int UNR>
__device__ __forceinline__ void load_tiles(uint4 (*b)[NC], const uint4* tok, unsigned g, unsigned t) {
    #pragma unroll
    for (int u = 0; u < UNR; u++)
        #pragma unroll
        for (int i = 0; i < NC; i++)
            b[u][i] = ld_stream(tok + (u * 8 + g) * (DIM / 8) + 4 * i + t);
}

// Similarities of the query rows with UNR 8-token tiles, folded into the running maxima:
// mx[m][0] covers row 16m + g, mx[m][1] row 16m + g + 8 (tokens 2t, 2t + 1 of each tile).
template <int MT, int UNR>
__device__ __forceinline__ void score_tiles(float (*mx)[2], const unsigned (*qa)[2 * NC][4],
                                            const uint4 (*b)[NC]) {
    #pragma unroll
    for (int u = 0; u < UNR; u++) {
        float c[MT][4];
        #pragma unroll
        for (int m = 0; m < MT; m++) { c[m][0] = 0.f; c[m][1] = 0.f; c[m][2] = 0.f; c[m][3] = 0.f; }
        #pragma unroll
        for (int i = 0; i < NC; i++) {
            #pragma unroll
            for (int m = 0; m < MT; m++) {
                mma16816(c[m], qa[m][2 * i], b[u][i].x, b[u][i].y);
                mma16816(c[m], qa[m][2 * i + 1], b[u][i].z, b[u][i].w);
            }
        }
        #pragma unroll
        for (int m = 0; m < MT; m++) {
            mx[m][0] = fmaxf(mx[m][0], fmaxf(c[m][0], c[m][1]));
            mx[m][1] = fmaxf(mx[m][1], fmaxf(c[m][2], c[m][3]));
        }
    }
}

// The query group's rows as A fragments, kept in registers for the whole launch: row 16m + g
// (+ 8), in the k order the token loads use (see `maxsim_kernel.rs`).
template <int MT>
__device__ __forceinline__ void load_query(unsigned (*qa)[2 * NC][4], const h16* qg, unsigned g,
                                           unsigned t) {
    #pragma unroll
    for (int m = 0; m < MT; m++)
        #pragma unroll
        for (int i = 0; i < NC; i++)
            #pragma unroll
            for (int j = 0; j < 2; j++) {
                const h16* r0 = qg + (m * 16 + g) * DIM + (4 * i + t) * 8 + 4 * j;
                const h16* r1 = r0 + 8 * DIM;
                qa[m][2 * i + j][0] = *(const unsigned*)r0;
                qa[m][2 * i + j][1] = *(const unsigned*)r1;
                qa[m][2 * i + j][2] = *(const unsigned*)(r0 + 2);
                qa[m][2 * i + j][3] = *(const unsigned*)(r1 + 2);
            }
}

// A page's score from the running maxima: the max over the quad's token columns, then the sum
// over rows, the quad's own rows, then across the eight row groups (every lane gets it).
// Zero-padded query rows add max(0, …) = 0.
template <int MT>
__device__ __forceinline__ float page_score(const float (*mx)[2]) {
    float s = 0.f;
    #pragma unroll
    for (int m = 0; m < MT; m++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {
            float v = mx[m][h];
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
            s += v;
        }
    s += __shfl_xor_sync(0xffffffffu, s, 4);
    s += __shfl_xor_sync(0xffffffffu, s, 8);
    s += __shfl_xor_sync(0xffffffffu, s, 16);
    return s;
}

// table: per page {address of its first token, len | out << 32}; len a multiple of 32.
// q: [gridDim.y groups][MT·16 rows][DIM] f16. out: [gridDim.y][n_out] f32.
template <int MT>
__device__ __forceinline__ void maxsim_pages(const unsigned long long* __restrict__ table,
    unsigned n, const h16* __restrict__ q, float* __restrict__ out, unsigned n_out) {
    const unsigned lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const unsigned warps = gridDim.x * (blockDim.x >> 5);
    const h16* qg = q + (unsigned long long)blockIdx.y * MT * 16 * DIM;
    unsigned qa[MT][2 * NC][4];
    load_query<MT>(qa, qg, g, t);
    for (unsigned e = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); e < n; e += warps) {
        const uint4* tok = (const uint4*)table[2 * e];
        const unsigned long long meta = table[2 * e + 1];
        const unsigned len = (unsigned)meta, slot = (unsigned)(meta >> 32);
        float mx[MT][2];
        #pragma unroll
        for (int m = 0; m < MT; m++) { mx[m][0] = NEG_INF; mx[m][1] = NEG_INF; }
        // Two register buffers of 16 tokens: one loads while the other is multiplied.
        uint4 b0[2][NC], b1[2][NC];
        load_tiles<2>(b0, tok, g, t);
        for (unsigned k = 0; k < len; k += 32) {
            load_tiles<2>(b1, tok + (k + 16) * (DIM / 8), g, t);
            score_tiles<MT, 2>(mx, qa, b0);
            if (k + 32 < len) load_tiles<2>(b0, tok + (k + 32) * (DIM / 8), g, t);
            score_tiles<MT, 2>(mx, qa, b1);
        }
        const float s = page_score<MT>(mx);
        if (lane == 0) out[(unsigned long long)blockIdx.y * n_out + slot] = s;
    }
}

// ---- The same product with page tokens staged through shared memory by cp.async ----
// Register double buffers are at ptxas's mercy: with the query fragments holding 64 registers
// it sinks the next buffer's loads down to their first use, and a warp then waits a full memory
// latency per 16 tokens. cp.async copies need no registers while in flight, so each warp keeps
// RING - 1 stages of RING_TOKENS tokens on their way while it multiplies the oldest one, and the
// ring runs on across the warp's pages (no drain and refill at a page boundary).
#define RING 3
#define RING_TOKENS 16
#define RING_WARPS 4
#define STAGE_CHUNKS (RING_TOKENS * DIM / 8)   // 16-byte chunks per stage
// Rows of 64 or 128 dims are a multiple of 128 bytes: tokens 2j and 2j + 1, read in the same
// 8-lane phase, would hit the same banks. Odd tokens store their chunks with bit 2 flipped.
#define SWZ(tok) ((DIM % 64 == 0) ? (((tok) & 1u) << 2) : 0u)

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    unsigned r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_ring() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(RING - 2) : "memory");
}

// A warp's walk over its pages (e, e + warps, …), one stage of RING_TOKENS tokens at a time.
struct PageCursor {
    unsigned e, k, len, slot;
    const uint4* tok;
};
__device__ __forceinline__ void cursor_page(PageCursor& c, const unsigned long long* table, unsigned n) {
    if (c.e < n) {
        c.tok = (const uint4*)table[2 * c.e];
        const unsigned long long meta = table[2 * c.e + 1];
        c.len = (unsigned)meta;
        c.slot = (unsigned)(meta >> 32);
    }
    c.k = 0;
}
__device__ __forceinline__ void cursor_next(PageCursor& c, const unsigned long long* table,
                                            unsigned n, unsigned warps) {
    c.k += RING_TOKENS;
    if (c.k == c.len) { c.e += warps; cursor_page(c, table, n); }
}

// Issues the producer's next stage into ring slot `s` (an empty group past the warp's last page,
// so that every iteration commits exactly one group).
__device__ __forceinline__ void ring_fetch(uint4* ring, unsigned s, PageCursor& p,
    const unsigned long long* table, unsigned n, unsigned warps, unsigned lane) {
    if (p.e < n) {
        const uint4* src = p.tok + p.k * (DIM / 8);
        uint4* dst = ring + s * STAGE_CHUNKS;
        #pragma unroll
        for (unsigned i = lane; i < STAGE_CHUNKS; i += 32) {
            const unsigned tok = i / (DIM / 8), c = i % (DIM / 8);
            cp_async16(smem_addr(dst + tok * (DIM / 8) + (c ^ SWZ(tok))), src + i);
        }
        cursor_next(p, table, n, warps);
    }
    cp_async_commit();
}

template <int MT>
__device__ __forceinline__ void maxsim_pages_ring(const unsigned long long* __restrict__ table,
    unsigned n, const h16* __restrict__ q, float* __restrict__ out, unsigned n_out) {
    __shared__ uint4 rings[RING_WARPS][RING * STAGE_CHUNKS];
    const unsigned lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, w = threadIdx.x >> 5;
    const unsigned warps = gridDim.x * RING_WARPS;
    uint4* ring = rings[w];
    const h16* qg = q + (unsigned long long)blockIdx.y * MT * 16 * DIM;
    unsigned qa[MT][2 * NC][4];
    load_query<MT>(qa, qg, g, t);
    PageCursor prod, cons;
    prod.e = blockIdx.x * RING_WARPS + w;
    cursor_page(prod, table, n);
    cons = prod;
    #pragma unroll
    for (unsigned s = 0; s < RING - 1; s++) ring_fetch(ring, s, prod, table, n, warps, lane);
    float mx[MT][2];
    #pragma unroll
    for (int m = 0; m < MT; m++) { mx[m][0] = NEG_INF; mx[m][1] = NEG_INF; }
    for (unsigned stage = 0; cons.e < n; stage++) {
        cp_async_wait_ring();   // this lane's copies of the oldest stage have landed
        __syncwarp();           // … and every lane's; the slot read last iteration is free
        ring_fetch(ring, (stage + RING - 1) % RING, prod, table, n, warps, lane);
        const uint4* st = ring + (stage % RING) * STAGE_CHUNKS;
        uint4 b[RING_TOKENS / 8][NC];
        #pragma unroll
        for (int u = 0; u < RING_TOKENS / 8; u++) {
            const unsigned tok = u * 8 + g;
            #pragma unroll
            for (int i = 0; i < NC; i++) b[u][i] = st[tok * (DIM / 8) + ((4 * i + t) ^ SWZ(tok))];
        }
        score_tiles<MT, RING_TOKENS / 8>(mx, qa, b);
        if (cons.k + RING_TOKENS == cons.len) {
            // The page's last stage.
            const float s = page_score<MT>(mx);
            if (lane == 0) out[(unsigned long long)blockIdx.y * n_out + cons.slot] = s;
            #pragma unroll
            for (int m = 0; m < MT; m++) { mx[m][0] = NEG_INF; mx[m][1] = NEG_INF; }
        }
        cursor_next(cons, table, n, warps);
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
}

extern "C" __global__ void __launch_bounds__(128, 4) maxsim_f16_q16(
    const unsigned long long* __restrict__ table, unsigned n, const h16* __restrict__ q,
    float* __restrict__ out, unsigned n_out) {
    maxsim_pages<1>(table, n, q, out, n_out);
}
extern "C" __global__ void __launch_bounds__(128, 4) maxsim_f16_q32(
    const unsigned long long* __restrict__ table, unsigned n, const h16* __restrict__ q,
    float* __restrict__ out, unsigned n_out) {
    maxsim_pages<2>(table, n, q, out, n_out);
}
extern "C" __global__ void __launch_bounds__(128, 4) maxsim_f16_q16_ring(
    const unsigned long long* __restrict__ table, unsigned n, const h16* __restrict__ q,
    float* __restrict__ out, unsigned n_out) {
    maxsim_pages_ring<1>(table, n, q, out, n_out);
}
extern "C" __global__ void __launch_bounds__(128, 4) maxsim_f16_q32_ring(
    const unsigned long long* __restrict__ table, unsigned n, const h16* __restrict__ q,
    float* __restrict__ out, unsigned n_out) {
    maxsim_pages_ring<2>(table, n, q, out, n_out);
}
