//! The AVX2+FMA+F16C, AVX-512F and AVX-512 BF16 primitives, and the entry points compiled for
//! each.

use super::job::{Job, Sums};
use super::simd::Simd;
use super::stream::Stream;
use crate::quant::nf4::NF4_CODE;
use std::arch::x86_64::*;

/// The vector part of a task with AVX2+FMA+F16C; returns where it stopped.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn avx2<W: Stream>(job: &Job, w: &W, sums: &mut Sums) -> usize {
    job.columns::<Avx2, W>(w, sums)
}

/// The vector part of a task with AVX-512F; returns where it stopped.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn avx512<W: Stream>(job: &Job, w: &W, sums: &mut Sums) -> usize {
    job.columns::<Avx512, W>(w, sums)
}

/// The vector part of a task with AVX-512 BF16 products; returns where it stopped.
#[target_feature(enable = "avx512bf16,avx512bw,avx512f,avx2,fma,f16c")]
pub(super) unsafe fn avx512bf16<W: Stream>(job: &Job, w: &W, sums: &mut Sums) -> usize {
    job.columns::<Avx512Bf16, W>(w, sums)
}

pub(super) struct Avx2;

/// Shift counts that put the first code of each byte (high nibble) in even lanes.
const NIBBLE_SHIFT: [i32; 16] = [4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0];

impl Simd for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    // 14 accumulators of the 16 registers, one for the weight and one for the input: a query of
    // 27–28 rows then takes two tiles, not three (each tile reads every weight vector again).
    const RMAX: usize = 14;
    tile_by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14);
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
    #[inline(always)]
    unsafe fn bf16(p: *const u16) -> __m256 {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
        _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
    }
    #[inline(always)]
    unsafe fn f16(p: *const u16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
    #[inline(always)]
    unsafe fn nf4(p: *const u8, table: *const f32) -> __m256 {
        // 4 bytes → each byte twice → 8 lanes of (byte >> 4, byte): the low 3 bits index
        // each half of the table, bit 3 (moved to the sign) picks the half.
        let b = _mm_cvtsi32_si128(p.cast::<i32>().read_unaligned());
        let idx = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
        let idx = _mm256_srlv_epi32(idx, _mm256_loadu_si256(NIBBLE_SHIFT.as_ptr().cast()));
        let lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), idx);
        let hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table.add(8)), idx);
        _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)))
    }
}

/// The primitives both 512-bit sets share: a vector is 16 f32 words either way (running sums,
/// packed rows, decoded chunks), whatever its values mean.
macro_rules! avx512_words {
    () => {
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }
    };
}

pub(super) struct Avx512;

impl Simd for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    // 24 accumulators of 32 registers.
    const RMAX: usize = 28;
    tile_by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28);
    avx512_words!();
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn bf16(p: *const u16) -> __m512 {
        let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
        _mm512_castsi512_ps(_mm512_slli_epi32(h, 16))
    }
    #[inline(always)]
    unsafe fn f16(p: *const u16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }
    #[inline(always)]
    unsafe fn nf4(p: *const u8, table: *const f32) -> __m512 {
        // 8 bytes → each byte twice → 16 lanes of (byte >> 4, byte); `vpermps` reads the
        // low 4 bits: the whole table in one register.
        let b = _mm_loadl_epi64(p.cast());
        let idx = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
        let idx = _mm512_srlv_epi32(idx, _mm512_loadu_si512(NIBBLE_SHIFT.as_ptr().cast()));
        _mm512_permutexvar_ps(idx, _mm512_loadu_ps(table))
    }
}

/// AVX-512 with BF16 products: `vdpbf16ps` multiplies 32 bf16 pairs into 16 f32 sums, two
/// multiply-adds per lane where `vfmadd231ps` does one. Operand vectors are 32 bf16 (the input
/// rows rounded once when packed, the weights rounded as decoded: stored bf16 as is, f32/f16 and
/// NF4's code × absmax rounded to nearest even); the products of two bf16 are exact in f32 and
/// only the sums round, in f32.
pub(super) struct Avx512Bf16;

/// 16 + 16 f32 as one operand vector of 32 bf16: `lo` the first 16 values (`vcvtne2ps2bf16`
/// puts its second operand in the low half).
#[inline(always)]
unsafe fn bf16_pair(lo: __m512, hi: __m512) -> __m512 {
    _mm512_castsi512_ps(std::mem::transmute::<__m512bh, __m512i>(
        _mm512_cvtne2ps_pbh(hi, lo),
    ))
}

#[inline(always)]
unsafe fn as_bh(v: __m512) -> __m512bh {
    std::mem::transmute::<__m512, __m512bh>(v)
}

/// `table[code]` of the 32 codes in the 16 bytes at `p` (first code in the high nibble), from
/// `table`: the 16 values as bf16, twice over (words 16–31 repeat 0–15). One `vpermw` looks up all
/// 32 (two `vpermps` and a conversion did it before): each byte widened to a dword gives its two
/// words, the low one `byte >> 4` (the first code) and the high one the byte itself, of which
/// `vpermw` reads the low 5 bits — the second code and one bit of the first, which the repeated
/// table makes no difference.
#[inline(always)]
unsafe fn nf4_bf16x32(p: *const u8, table: __m512i) -> __m512 {
    let d = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast()));
    let idx = _mm512_or_si512(_mm512_srli_epi32(d, 4), _mm512_slli_epi32(d, 16));
    _mm512_castsi512_ps(_mm512_permutexvar_epi16(idx, table))
}

/// 16 f32 as the repeated bf16 table [`nf4_bf16x32`] takes.
#[inline(always)]
unsafe fn bf16_table(values: __m512) -> __m512i {
    _mm512_castps_si512(bf16_pair(values, values))
}

impl Simd for Avx512Bf16 {
    type V = __m512;
    const LANES: usize = 32;
    const WORDS: usize = 16;
    // As AVX-512: 28 accumulators, the input and the weight of 32 registers.
    const RMAX: usize = 28;
    tile_by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28);
    avx512_words!();
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_dpbf16_ps(c, as_bh(a), as_bh(b))
    }
    #[inline(always)]
    unsafe fn f32(p: *const f32) -> __m512 {
        bf16_pair(_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)))
    }
    #[inline(always)]
    unsafe fn bf16(p: *const u16) -> __m512 {
        _mm512_loadu_ps(p.cast())
    }
    #[inline(always)]
    unsafe fn f16(p: *const u16) -> __m512 {
        bf16_pair(
            _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
            _mm512_cvtph_ps(_mm256_loadu_si256(p.add(16).cast())),
        )
    }
    #[inline(always)]
    unsafe fn nf4(p: *const u8, table: *const f32) -> __m512 {
        nf4_bf16x32(p, bf16_table(_mm512_loadu_ps(table)))
    }
    #[inline(always)]
    unsafe fn nf4_scaled(p: *const u8, scale: f32) -> __m512 {
        // The codes scaled in f32, then rounded: the value the f32 sets multiply by, rounded once.
        let table = _mm512_mul_ps(_mm512_loadu_ps(NF4_CODE.as_ptr()), _mm512_set1_ps(scale));
        nf4_bf16x32(p, bf16_table(table))
    }
}
