//! Exact MaxSim: for each query token the maximum dot product over the page's tokens, summed.
//!
//! Pages are stored as f16 in 16-token blocks, dimension-major inside a block, so a kernel loads
//! 16 tokens' values of one dimension with one vector load, widens them to f32 (F16C /
//! AVX-512F `vcvtph2ps`) and does one FMA per query token with that query value broadcast: a
//! register-blocked GEMM micro-kernel with the max folded in per tile. Products and sums are
//! f32 of the stored f16 values: this is the exact mode. Two AVX-512 kernels in inline assembly:
//! for queries of 9+ tokens (every ColQwen query) `maxsim_rows` runs all query rows at once
//! against one 16-token block, reading the page in one sequential pass; shorter queries take
//! `maxsim_avx512`, which widens each 64-token chunk once and runs 4-row query tiles over it
//! (`Avx512Kernel`). The AVX2 kernel (intrinsics) widens per tile. The ISA is picked at run time
//! (`detected_isa`); `Portable` runs anywhere. A GPU scorer plugs in at `search::PageScorer`.

use super::format::BLOCK_TOKENS;
use super::segment::n_blocks;
use half::f16;
use half::slice::HalfFloatSliceExt;
use serde::Serialize;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isa {
    /// 512-bit FMA with `vcvtph2ps` (AVX-512F).
    Avx512,
    /// 256-bit FMA with F16C conversion.
    Avx2F16c,
    /// 128-bit AArch64 NEON (every AArch64 CPU).
    Neon,
    /// Plain Rust; whatever the compiler vectorises.
    Portable,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2F16c => "avx2+fma+f16c",
            Isa::Neon => "neon",
            Isa::Portable => "portable",
        }
    }

    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Neon => cfg!(target_arch = "aarch64"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2F16c => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2F16c => false,
        }
    }

    /// f32 lanes per FMA instruction; the peak assumes two FMA ports per core (Intel server cores
    /// since Skylake-SP with two 512-bit units, Haswell and later for 256-bit).
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2F16c => 8,
            Isa::Neon | Isa::Portable => 4,
        }
    }

    pub fn all() -> [Isa; 4] {
        [Isa::Avx512, Isa::Avx2F16c, Isa::Neon, Isa::Portable]
    }
}

/// Where a kernel's look-ahead `offset` bytes from the start of a page of `page_bytes` lands: in
/// the page, or past its end in `next`, the page the thread scores after it (without one, past
/// the end: the page's own sign codes and metadata, harmless to prefetch).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) fn look_ahead(
    page: *const u8,
    page_bytes: usize,
    next: Option<&[u16]>,
    offset: usize,
) -> *const u8 {
    match next {
        Some(n) if offset >= page_bytes => {
            (n.as_ptr() as *const u8).wrapping_add(offset - page_bytes)
        }
        _ => page.wrapping_add(offset),
    }
}

/// The best ISA this CPU runs, detected once.
pub fn detected_isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        Isa::all()
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Portable)
    })
}

/// Query rows per tile of the AVX-512 micro-kernel.
pub const ROWS: usize = 4;

/// One cache line of f32 lanes; keeps the kernel's scratch and running maxima 64-byte aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Line(pub [f32; 16]);

/// Per-thread working memory of the kernel, reused across pages (`rayon`'s `map_init`). Only the
/// x86 kernels use it; other targets carry it empty.
#[derive(Default)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct Scratch {
    /// The widened chunk of page tokens, dimension-major.
    pub(super) chunk: Vec<Line>,
    /// One line per query row: running max per token lane.
    pub(super) runmax: Vec<Line>,
}

/// The query laid out for the micro-kernel: per tile of `ROWS` rows, per dimension the rows'
/// values side by side; rows past `nq` are zero (a zero row scores 0 and is left out of the sum).
pub struct QueryTiles {
    pub tiles: usize,
    pub nq: usize,
    pub dim: usize,
    data: Vec<f32>,
}

impl QueryTiles {
    pub fn new(q: &[f32], nq: usize, dim: usize) -> Self {
        let tiles = nq.div_ceil(ROWS);
        let mut data = vec![0f32; tiles * dim * ROWS];
        for i in 0..nq {
            for k in 0..dim {
                data[(i / ROWS) * dim * ROWS + k * ROWS + i % ROWS] = q[i * dim + k];
            }
        }
        QueryTiles {
            tiles,
            nq,
            dim,
            data,
        }
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

/// The two AVX-512 kernels: 4-row query tiles over a 64-token chunk widened into L1
/// (`maxsim_avx512`), or every query row at once against one 16-token block, the page read in
/// one sequential pass (`maxsim_rows`, for queries of 9+ tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Avx512Kernel {
    Tiles,
    Rows,
}

impl Avx512Kernel {
    /// The kernel the app runs: rows for queries long enough for it (`uses_rows`); the tiles
    /// stay for shorter queries and for the benchmarks' comparison.
    pub const DEFAULT: Avx512Kernel = Avx512Kernel::Rows;
}

/// Whether a query of `nq` tokens takes the row kernel on `isa` (available) with `kernel` asked.
fn uses_rows(isa: Isa, kernel: Avx512Kernel, nq: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return isa == Isa::Avx512
        && kernel == Avx512Kernel::Rows
        && nq >= super::maxsim_rows::MIN_ROWS;
    // The row kernel is AVX-512 code: no other target has it.
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, kernel, nq);
        false
    }
}

/// The kernel that scores a query of `nq` tokens on `isa` as configured: the ISA, and on AVX-512
/// which of its two kernels (for labels, before a query is prepared).
pub fn kernel_for(isa: Isa, nq: usize) -> &'static str {
    let isa = if isa.available() { isa } else { Isa::Portable };
    match (isa, uses_rows(isa, Avx512Kernel::DEFAULT, nq)) {
        (Isa::Avx512, true) => "avx512f rows",
        (Isa::Avx512, false) => "avx512f tiles",
        (isa, _) => isa.name(),
    }
}

/// A query ready to score many pages with one ISA: laid out once, not per page.
pub struct PreparedQuery<'a> {
    isa: Isa,
    q: &'a [f32],
    nq: usize,
    dim: usize,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    tiles: Option<QueryTiles>,
    #[cfg(target_arch = "x86_64")]
    rows: Option<super::maxsim_rows::QueryRows>,
}

impl<'a> PreparedQuery<'a> {
    /// `q` is `nq × dim` row-major f32. `isa` falls back to `Portable` where the CPU lacks it.
    pub fn new(isa: Isa, q: &'a [f32], nq: usize, dim: usize) -> Self {
        Self::with_kernel(isa, Avx512Kernel::DEFAULT, q, nq, dim)
    }

    /// `new` with the AVX-512 kernel named (`Rows` applies from `maxsim_rows::MIN_ROWS` query
    /// tokens; shorter queries take the tiles).
    pub fn with_kernel(
        isa: Isa,
        kernel: Avx512Kernel,
        q: &'a [f32],
        nq: usize,
        dim: usize,
    ) -> Self {
        assert!(q.len() >= nq * dim, "query shorter than nq × dim");
        let isa = if isa.available() { isa } else { Isa::Portable };
        let use_rows = uses_rows(isa, kernel, nq);
        #[cfg(target_arch = "x86_64")]
        let rows = use_rows.then(|| super::maxsim_rows::QueryRows::new(q, nq, dim));
        let tiles = (isa == Isa::Avx512 && !use_rows).then(|| QueryTiles::new(q, nq, dim));
        PreparedQuery {
            isa,
            q,
            nq,
            dim,
            tiles,
            #[cfg(target_arch = "x86_64")]
            rows,
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// MaxSim against a packed page of `n_tokens` tokens.
    pub fn score(&self, scratch: &mut Scratch, packed: &[u16], n_tokens: usize) -> f32 {
        self.score_then(scratch, packed, n_tokens, None)
    }

    /// `score`, told which page this thread scores next (its packed data): the AVX-512 kernels'
    /// look-ahead prefetches run on into it instead of into this page's sign codes.
    pub fn score_then(
        &self,
        scratch: &mut Scratch,
        packed: &[u16],
        n_tokens: usize,
        next: Option<&[u16]>,
    ) -> f32 {
        let (q, nq, dim) = (self.q, self.nq, self.dim);
        assert!(packed.len() >= n_blocks(n_tokens) * dim * BLOCK_TOKENS);
        if n_tokens == 0 || nq == 0 {
            return 0.0;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(r) = &self.rows {
                // SAFETY: `rows` exists only where AVX-512F was detected (`with_kernel`), and the
                // page slice is long enough (asserted).
                return unsafe { super::maxsim_rows::maxsim(r, scratch, packed, n_tokens, next) };
            }
            if let Some(t) = &self.tiles {
                // SAFETY: `tiles` exists only where AVX-512F was detected (`new`), and the page
                // slice is long enough (asserted).
                return unsafe { super::maxsim_avx512::maxsim(t, scratch, packed, n_tokens, next) };
            }
            if self.isa == Isa::Avx2F16c {
                // SAFETY: `isa` is `Avx2F16c` only where AVX2, FMA and F16C were detected
                // (`with_kernel` falls back to `Portable` otherwise); `q` holds `nq × dim` values
                // (asserted in `with_kernel`) and the page slice is long enough (asserted).
                return unsafe { x86::maxsim_avx2(q, nq, dim, packed, n_tokens) };
            }
        }
        #[cfg(target_arch = "aarch64")]
        if self.isa == Isa::Neon {
            // SAFETY: NEON is part of every AArch64 CPU; `q` holds `nq × dim` values (asserted in
            // `with_kernel`) and the page slice is long enough (asserted).
            return unsafe { super::maxsim_neon::maxsim(q, nq, dim, packed, n_tokens) };
        }
        let _ = (scratch, next);
        maxsim_portable(q, nq, dim, packed, n_tokens)
    }
}

/// MaxSim of `q` (`nq × dim` row-major f32) against a packed page of `n_tokens` tokens.
/// `isa` falls back to `Portable` where the CPU lacks it. For many pages use `PreparedQuery`.
pub fn maxsim(isa: Isa, q: &[f32], nq: usize, dim: usize, packed: &[u16], n_tokens: usize) -> f32 {
    PreparedQuery::new(isa, q, nq, dim).score(&mut Scratch::default(), packed, n_tokens)
}

/// Runs the register-only FMA loop of `isa` for `iters` iterations on this core: (flop done,
/// seconds taken). `None` where the ISA has no such loop here or the CPU lacks it.
pub fn fma_loop(isa: Isa, iters: u64) -> Option<(f64, f64)> {
    if !isa.available() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let t = std::time::Instant::now();
        let flop = match isa {
            // SAFETY: `isa.available()` (checked above) detected AVX-512F.
            Isa::Avx512 => unsafe { super::maxsim_avx512::fma_loop(iters) },
            // SAFETY: `isa.available()` (checked above) detected AVX2 and FMA (and F16C).
            Isa::Avx2F16c => unsafe { super::maxsim_avx512::fma_loop_avx2(iters) },
            Isa::Neon | Isa::Portable => return None,
        };
        return Some((flop, t.elapsed().as_secs_f64()));
    }
    #[allow(unreachable_code)]
    {
        let _ = iters;
        None
    }
}

/// Measured FMA throughput of one core for `isa` (FLOP/s): `fma_loop`'s flop / its seconds.
pub fn fma_peak_one_core(isa: Isa, iters: u64) -> Option<f64> {
    fma_loop(isa, iters).map(|(flop, secs)| flop / secs)
}

/// Straightforward reference: per query token, the max over tokens of the dot product (f64).
pub fn maxsim_naive(q: &[f32], nq: usize, dim: usize, doc: &[f32], n_tokens: usize) -> f32 {
    let mut total = 0.0f64;
    for i in 0..nq {
        let qi = &q[i * dim..(i + 1) * dim];
        let best = (0..n_tokens)
            .map(|t| {
                qi.iter()
                    .zip(&doc[t * dim..(t + 1) * dim])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            })
            .fold(f64::NEG_INFINITY, f64::max);
        total += best;
    }
    total as f32
}

/// Per query token, the similarity of every token of a packed page (`nq × n_tokens`); for heatmaps.
pub fn token_sims(q: &[f32], nq: usize, dim: usize, packed: &[u16], n_tokens: usize) -> Vec<f32> {
    let doc = super::vectors::unpack_all(packed, dim, n_tokens);
    let mut out = vec![0f32; nq * n_tokens];
    for i in 0..nq {
        let qi = &q[i * dim..(i + 1) * dim];
        for t in 0..n_tokens {
            out[i * n_tokens + t] = qi
                .iter()
                .zip(&doc[t * dim..(t + 1) * dim])
                .map(|(a, b)| a * b)
                .sum();
        }
    }
    out
}

/// Tokens of block `block` that are the page's (the last block's rest is padding).
pub(super) fn valid_lanes(block: usize, n_tokens: usize) -> usize {
    (n_tokens - block * BLOCK_TOKENS).min(BLOCK_TOKENS)
}

/// Block `b` of a packed page (`dim × 16` f16 values) widened into `block`. The slice conversion
/// uses the CPU's f16 instructions where it has them (F16C, the AArch64 FP16 extension), not one
/// value at a time.
pub(super) fn widen_block(packed: &[u16], b: usize, dim: usize, block: &mut [f32]) {
    let src = &packed[b * dim * BLOCK_TOKENS..(b + 1) * dim * BLOCK_TOKENS];
    bytemuck::cast_slice::<u16, f16>(src).convert_to_f32_slice(block);
}

fn maxsim_portable(q: &[f32], nq: usize, dim: usize, packed: &[u16], n_tokens: usize) -> f32 {
    let mut runmax = vec![f32::NEG_INFINITY; nq];
    let mut block = vec![0f32; dim * BLOCK_TOKENS];
    for b in 0..n_blocks(n_tokens) {
        widen_block(packed, b, dim, &mut block);
        let valid = valid_lanes(b, n_tokens);
        for (i, m) in runmax.iter_mut().enumerate() {
            let mut acc = [0f32; BLOCK_TOKENS];
            for (k, row) in block.chunks_exact(BLOCK_TOKENS).enumerate() {
                let qv = q[i * dim + k];
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += qv * x;
                }
            }
            *m = acc[..valid].iter().copied().fold(*m, f32::max);
        }
    }
    runmax.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{n_blocks, valid_lanes, BLOCK_TOKENS};
    use std::arch::x86_64::*;

    const B: usize = BLOCK_TOKENS;

    /// The query is zero-padded to whole tiles: a zero query row scores 0 against every token,
    /// so padding adds exactly 0 to the sum.
    fn padded_query(q: &[f32], nq: usize, dim: usize, multiple: usize) -> (Vec<f32>, usize) {
        let rows = nq.div_ceil(multiple) * multiple;
        let mut out = vec![0f32; rows * dim];
        out[..nq * dim].copy_from_slice(&q[..nq * dim]);
        (out, rows)
    }

    /// MaxSim of `q` against a packed page with AVX2, FMA and F16C.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, `q` must hold `nq × dim` values, and `packed` must
    /// hold `n_blocks(n_tokens) × dim × 16` values: the tiles read it through raw pointers.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn maxsim_avx2(
        q: &[f32],
        nq: usize,
        dim: usize,
        packed: &[u16],
        n_tokens: usize,
    ) -> f32 {
        let (qp, rows) = padded_query(q, nq, dim, 2);
        let mut total = 0.0;
        let mut i = 0;
        while i < rows {
            let left = rows - i;
            let qi = qp.as_ptr().add(i * dim);
            let p = packed.as_ptr();
            let t = if left >= 6 {
                6
            } else if left >= 4 {
                4
            } else {
                2
            };
            total += match t {
                6 => tile256_6(qi, dim, p, n_tokens),
                4 => tile256_4(qi, dim, p, n_tokens),
                _ => tile256_2(qi, dim, p, n_tokens),
            };
            i += t;
        }
        total
    }

    /// `$n` query rows, one block (two 8-lane halves) per step: 2·$n accumulators ≤ 12 of 16 ymm.
    macro_rules! tile256 {
        ($name:ident, $n:literal; $($i:literal)+) => {
            /// One tile of query rows (`q`, row-major, `dim` values each; as many rows as the
            /// name's number) against a packed page.
            ///
            /// # Safety
            /// The CPU must have AVX2, FMA and F16C; `q` must point at that many rows of `dim`
            /// readable f32s, and `packed` at `n_blocks(n_tokens) × dim × 16` readable u16s.
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn $name(q: *const f32, dim: usize, packed: *const u16, n_tokens: usize) -> f32 {
                let nb = n_blocks(n_tokens);
                let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
                let lane_lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let lane_hi = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
                let mut runmax = [neg_inf; $n];
                let mut b = 0;
                while b < nb {
                    let p = packed.add(b * dim * B);
                    let mut lo = [_mm256_setzero_ps(); $n];
                    let mut hi = [_mm256_setzero_ps(); $n];
                    let mut k = 0;
                    while k < dim {
                        let d0 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(k * B) as *const __m128i));
                        let d1 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(k * B + 8) as *const __m128i));
                        $(
                            let qv = _mm256_set1_ps(*q.add($i * dim + k));
                            lo[$i] = _mm256_fmadd_ps(qv, d0, lo[$i]);
                            hi[$i] = _mm256_fmadd_ps(qv, d1, hi[$i]);
                        )+
                        k += 1;
                    }
                    let valid = _mm256_set1_epi32(valid_lanes(b, n_tokens) as i32);
                    let ok_lo = _mm256_castsi256_ps(_mm256_cmpgt_epi32(valid, lane_lo));
                    let ok_hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(valid, lane_hi));
                    $(
                        let l = _mm256_blendv_ps(neg_inf, lo[$i], ok_lo);
                        let h = _mm256_blendv_ps(neg_inf, hi[$i], ok_hi);
                        runmax[$i] = _mm256_max_ps(runmax[$i], _mm256_max_ps(l, h));
                    )+
                    b += 1;
                }
                let mut s = 0.0;
                $(
                    let mut lanes = [0f32; 8];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), runmax[$i]);
                    s += lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                )+
                s
            }
        };
    }
    tile256!(tile256_6, 6; 0 1 2 3 4 5);
    tile256!(tile256_4, 4; 0 1 2 3);
    tile256!(tile256_2, 2; 0 1);
}
