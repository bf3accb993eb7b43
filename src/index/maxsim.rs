//! Exact MaxSim: for each query token the maximum dot product over the page's tokens, summed.
//!
//! Pages are stored as f16 in 16-token blocks, dimension-major inside a block, so a kernel loads
//! 16 tokens' values of one dimension with one vector load, widens them to f32 (F16C /
//! AVX-512F `vcvtph2ps`) and does one FMA per query token with that query value broadcast: a
//! register-blocked GEMM micro-kernel (query tile × 32 tokens) with the max folded in per tile.
//! The ISA is picked at run time (`detected_isa`); `Portable` runs anywhere. A GPU scorer plugs
//! in at `search::PageScorer`.

use super::format::BLOCK_TOKENS;
use super::segment::n_blocks;
use half::f16;
use serde::Serialize;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Isa {
    /// 512-bit FMA with `vcvtph2ps` (AVX-512F).
    Avx512,
    /// 256-bit FMA with F16C conversion.
    Avx2F16c,
    /// Plain Rust; whatever the compiler vectorises.
    Portable,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2F16c => "avx2+fma+f16c",
            Isa::Portable => "portable",
        }
    }

    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2F16c => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// f32 lanes per FMA instruction; the peak assumes two FMA ports per core (Intel server cores
    /// since Skylake-SP with two 512-bit units, Haswell and later for 256-bit).
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2F16c => 8,
            Isa::Portable => 4,
        }
    }

    pub fn all() -> [Isa; 3] {
        [Isa::Avx512, Isa::Avx2F16c, Isa::Portable]
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

/// MaxSim of `q` (`nq × dim` row-major f32) against a packed page of `n_tokens` tokens.
/// `isa` falls back to `Portable` where the CPU lacks it.
pub fn maxsim(isa: Isa, q: &[f32], nq: usize, dim: usize, packed: &[u16], n_tokens: usize) -> f32 {
    assert!(q.len() >= nq * dim && packed.len() >= n_blocks(n_tokens) * dim * BLOCK_TOKENS);
    if n_tokens == 0 || nq == 0 {
        return 0.0;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && isa.available() {
            // SAFETY: the CPU has AVX-512F (checked) and the slices are long enough (asserted).
            return unsafe { x86::maxsim_avx512(q, nq, dim, packed, n_tokens) };
        }
        if isa == Isa::Avx2F16c && isa.available() {
            // SAFETY: as above, for AVX2+FMA+F16C.
            return unsafe { x86::maxsim_avx2(q, nq, dim, packed, n_tokens) };
        }
    }
    let _ = isa;
    maxsim_portable(q, nq, dim, packed, n_tokens)
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

fn valid_lanes(block: usize, n_tokens: usize) -> usize {
    (n_tokens - block * BLOCK_TOKENS).min(BLOCK_TOKENS)
}

fn maxsim_portable(q: &[f32], nq: usize, dim: usize, packed: &[u16], n_tokens: usize) -> f32 {
    let mut runmax = vec![f32::NEG_INFINITY; nq];
    let mut block = vec![0f32; dim * BLOCK_TOKENS];
    for b in 0..n_blocks(n_tokens) {
        let src = &packed[b * dim * BLOCK_TOKENS..(b + 1) * dim * BLOCK_TOKENS];
        for (d, &s) in block.iter_mut().zip(src) {
            *d = f16::from_bits(s).to_f32();
        }
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

    /// Calls `$f::<N>` for the query-tile size `$n` (1..=$max).
    macro_rules! tile_dispatch {
        ($f:ident, $n:expr, $a:expr, $b:expr, $c:expr, $d:expr; $($N:literal)*) => {
            match $n { $($N => $f::<$N>($a, $b, $c, $d),)* _ => unreachable!("tile size") }
        };
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn maxsim_avx512(
        q: &[f32],
        nq: usize,
        dim: usize,
        packed: &[u16],
        n_tokens: usize,
    ) -> f32 {
        const QT: usize = 12;
        let mut total = 0.0;
        let mut i = 0;
        while i < nq {
            let t = (nq - i).min(QT);
            let qp = q.as_ptr().add(i * dim);
            let p = packed.as_ptr();
            total += tile_dispatch!(tile512, t, qp, dim, p, n_tokens; 1 2 3 4 5 6 7 8 9 10 11 12);
            i += t;
        }
        total
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn lane_mask(block: usize, n_tokens: usize) -> __mmask16 {
        let v = valid_lanes(block, n_tokens);
        if v >= 16 {
            0xFFFF
        } else {
            ((1u32 << v) - 1) as __mmask16
        }
    }

    /// `QT` query rows against the whole page, two blocks (32 tokens) per step:
    /// 2·QT accumulators + 2 doc registers fit the 32 zmm registers for QT ≤ 12.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile512<const QT: usize>(
        q: *const f32,
        dim: usize,
        packed: *const u16,
        n_tokens: usize,
    ) -> f32 {
        let nb = n_blocks(n_tokens);
        let mut runmax = [_mm512_set1_ps(f32::NEG_INFINITY); QT];
        let mut b = 0;
        while b + 2 <= nb {
            let p0 = packed.add(b * dim * B);
            let p1 = p0.add(dim * B);
            let mut acc0 = [_mm512_setzero_ps(); QT];
            let mut acc1 = [_mm512_setzero_ps(); QT];
            for k in 0..dim {
                let d0 = _mm512_cvtph_ps(_mm256_loadu_si256(p0.add(k * B) as *const __m256i));
                let d1 = _mm512_cvtph_ps(_mm256_loadu_si256(p1.add(k * B) as *const __m256i));
                for i in 0..QT {
                    let qv = _mm512_set1_ps(*q.add(i * dim + k));
                    acc0[i] = _mm512_fmadd_ps(qv, d0, acc0[i]);
                    acc1[i] = _mm512_fmadd_ps(qv, d1, acc1[i]);
                }
            }
            let (m0, m1) = (lane_mask(b, n_tokens), lane_mask(b + 1, n_tokens));
            for i in 0..QT {
                runmax[i] = _mm512_mask_max_ps(runmax[i], m0, runmax[i], acc0[i]);
                runmax[i] = _mm512_mask_max_ps(runmax[i], m1, runmax[i], acc1[i]);
            }
            b += 2;
        }
        if b < nb {
            let p0 = packed.add(b * dim * B);
            let mut acc0 = [_mm512_setzero_ps(); QT];
            for k in 0..dim {
                let d0 = _mm512_cvtph_ps(_mm256_loadu_si256(p0.add(k * B) as *const __m256i));
                for i in 0..QT {
                    acc0[i] = _mm512_fmadd_ps(_mm512_set1_ps(*q.add(i * dim + k)), d0, acc0[i]);
                }
            }
            let m0 = lane_mask(b, n_tokens);
            for i in 0..QT {
                runmax[i] = _mm512_mask_max_ps(runmax[i], m0, runmax[i], acc0[i]);
            }
        }
        let mut s = 0.0;
        for r in runmax {
            s += _mm512_reduce_max_ps(r);
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn maxsim_avx2(
        q: &[f32],
        nq: usize,
        dim: usize,
        packed: &[u16],
        n_tokens: usize,
    ) -> f32 {
        const QT: usize = 6;
        let mut total = 0.0;
        let mut i = 0;
        while i < nq {
            let t = (nq - i).min(QT);
            let qp = q.as_ptr().add(i * dim);
            let p = packed.as_ptr();
            total += tile_dispatch!(tile256, t, qp, dim, p, n_tokens; 1 2 3 4 5 6);
            i += t;
        }
        total
    }

    /// `QT` query rows, one block (two 8-lane halves) per step: 2·QT accumulators ≤ 12 of 16 ymm.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile256<const QT: usize>(
        q: *const f32,
        dim: usize,
        packed: *const u16,
        n_tokens: usize,
    ) -> f32 {
        let nb = n_blocks(n_tokens);
        let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
        let lane_lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let lane_hi = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
        let mut runmax = [neg_inf; QT];
        for b in 0..nb {
            let p = packed.add(b * dim * B);
            let mut lo = [_mm256_setzero_ps(); QT];
            let mut hi = [_mm256_setzero_ps(); QT];
            for k in 0..dim {
                let d0 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(k * B) as *const __m128i));
                let d1 = _mm256_cvtph_ps(_mm_loadu_si128(p.add(k * B + 8) as *const __m128i));
                for i in 0..QT {
                    let qv = _mm256_set1_ps(*q.add(i * dim + k));
                    lo[i] = _mm256_fmadd_ps(qv, d0, lo[i]);
                    hi[i] = _mm256_fmadd_ps(qv, d1, hi[i]);
                }
            }
            let valid = _mm256_set1_epi32(valid_lanes(b, n_tokens) as i32);
            let ok_lo = _mm256_castsi256_ps(_mm256_cmpgt_epi32(valid, lane_lo));
            let ok_hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(valid, lane_hi));
            for i in 0..QT {
                let l = _mm256_blendv_ps(neg_inf, lo[i], ok_lo);
                let h = _mm256_blendv_ps(neg_inf, hi[i], ok_hi);
                runmax[i] = _mm256_max_ps(runmax[i], _mm256_max_ps(l, h));
            }
        }
        let mut s = 0.0;
        for r in runmax {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), r);
            s += lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vectors::{pack_blocks, round_f16};

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn every_isa_matches_naive() {
        let mut seed = 7;
        for &(nq, n, dim) in &[
            (1, 1, 16),
            (3, 17, 32),
            (13, 33, 128),
            (20, 750, 128),
            (25, 47, 64),
            (7, 16, 8),
        ] {
            let q: Vec<f32> = (0..nq * dim).map(|_| lcg(&mut seed)).collect();
            let doc: Vec<f32> = (0..n * dim).map(|_| lcg(&mut seed)).collect();
            let packed = pack_blocks(&doc, n, dim);
            let want = maxsim_naive(&q, nq, dim, &round_f16(&doc), n);
            for isa in Isa::all() {
                let got = maxsim(isa, &q, nq, dim, &packed, n);
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{isa:?} nq{nq} n{n} dim{dim}: {got} vs {want}"
                );
            }
        }
    }
}
